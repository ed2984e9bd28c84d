//! herakles-node-exporter as a library: the built-in collectors, process
//! classification, configuration, the scrape coordinator and the HTTP server.
//!
//! The binary is a thin `main` over [`cli::main`]; a third party builds its
//! own exporter the same way, linking extra collector crates (see
//! `examples/custom_build.rs`).

pub mod classify;
pub mod collectors;

pub use herakles_core as core;

// A plugin crate is referenced by nothing but its `inventory::submit!`, and
// the linker drops a crate nothing references, registration included. This
// `use` is the reference that keeps it (see docs/plugins.md, "Linking").
#[cfg(feature = "bpf-inventory")]
use herakles_bpf_inventory as _;
#[cfg(feature = "netprobe")]
use herakles_netprobe as _;

pub mod attribution;
pub mod check;
pub mod cli;
pub mod config;
pub mod dist;
pub mod ebpf;
pub mod health;
pub mod http;
pub mod install;
pub mod listener;
pub mod logging;
pub mod process;
pub mod scrape;
pub mod testdata;
pub mod unit;
pub mod util;
pub mod web;
