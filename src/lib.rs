//! herakles-node-exporter as a library: the built-in collectors, process
//! classification, configuration, the scrape coordinator and the HTTP server.
//!
//! The binary is a thin `main` over [`cli::main`]; a third party builds its
//! own exporter the same way, linking extra collector crates (see
//! `examples/custom_build.rs`).
//!
//! The modules are layers, one block of `pub mod` lines each below; a
//! module uses its own layer and those before it, never in a loop, and no
//! collector uses another (`layering.rs` tests all three; see
//! `docs/architecture.md`):
//!
//! 1. herakles-core (`core`): the collector API, also what plugins see;
//! 2. the foundation: `util`, `config`, `logging`;
//! 3. shared parts: `classify`, the process table (`process`),
//!    attribution readers (`attribution`), netlink sock_diag and the TCP
//!    state table (`sock_diag`);
//! 4. the eBPF services (`ebpf`);
//! 5. the collectors (`collectors`, with the helpers they share), and
//!    `testdata`, which stands in for them;
//! 6. serving (`serve`): health state, scrape coordinator, routes, listener;
//!    and web security (`web`): TLS, client certificates, basic auth;
//! 7. the assembly (`exporter`): build and run an exporter from a config;
//! 8. the subcommands (`commands`) and the command line (`cli`).

pub use herakles_core as core;

pub mod config;
pub mod logging;
pub mod util;

pub mod attribution;
pub mod classify;
pub mod process;
pub mod sock_diag;

pub mod ebpf;

pub mod collectors;
pub mod testdata;

pub mod serve;
pub mod web;

pub mod exporter;

pub mod cli;
pub mod commands;

// A plugin crate is referenced by nothing but its `inventory::submit!`, and
// the linker drops a crate nothing references, registration included. This
// `use` is the reference that keeps it (see docs/plugins.md, "Linking").
#[cfg(feature = "bpf-inventory")]
use herakles_bpf_inventory as _;
#[cfg(feature = "netprobe")]
use herakles_netprobe as _;

#[cfg(test)]
mod layering;
