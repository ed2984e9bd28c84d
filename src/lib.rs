//! herakles-node-exporter as a library: the built-in collectors, process
//! classification, configuration, the scrape coordinator and the HTTP server.
//!
//! The binary is a thin `main` over [`cli::main`]; a third party builds its
//! own exporter the same way, linking extra collector crates (see
//! `examples/custom_build.rs`).

pub mod classify;
pub mod collectors;

pub use herakles_core as core;

// Nothing calls into the netprobe plugin: it only submits a registration to
// `inventory`. A crate nothing references is not linked at all, and its
// registration would vanish with it; this `use` keeps it in the binary.
#[cfg(feature = "netprobe")]
use herakles_netprobe as _;
pub mod check;
pub mod cli;
pub mod config;
pub mod ebpf;
pub mod health;
pub mod http;
pub mod logging;
pub mod process;
pub mod scrape;
pub mod util;
