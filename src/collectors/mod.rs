//! Built-in collectors, one file each.
//!
//! Nothing here lists them: every file registers itself with
//! `inventory::submit!`, and the exporter discovers them at start-up.

pub mod cpu;
pub mod disk;
pub mod filesystem;
pub mod host;
pub mod hwmon;
pub mod kernel;
pub mod loadavg;
pub mod memory;
pub mod netdev;
pub mod process;
pub mod process_groups;
pub mod process_top;
pub mod tcp;
pub mod thermal;
