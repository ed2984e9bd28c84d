//! What the subcommands do, one file each. `crate::cli` parses the
//! command line and calls into these; they build what they need through
//! `crate::exporter` and the layers below, never through the CLI.

pub mod check;
pub mod collectors;
pub mod config;
pub mod dist;
pub mod install;
pub mod subgroups;
pub mod test;
pub mod unit;
