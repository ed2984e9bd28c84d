//! Built-in collectors, one file each.
//!
//! Nothing here lists them: every file registers itself with
//! `inventory::submit!`, and the exporter discovers them at start-up.

pub mod cgroup;
pub mod cpu;
pub mod disk;
pub mod ebpf_io;
pub mod filesystem;
pub mod host;
pub mod hwmon;
pub mod kernel;
pub mod loadavg;
pub mod memory;
pub mod netdev;
pub mod process;
pub mod process_attribution;
pub mod process_groups;
pub mod process_top;
pub mod tcp;
pub mod textfile;
pub mod thermal;

/// Roots of the fixture tree `tests/fixtures/<name>`: its `proc` and `sys`
/// directories stand in for `/proc` and `/sys` in collector unit tests.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> herakles_core::Paths {
    let root = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    herakles_core::Paths {
        procfs: format!("{root}/proc").into(),
        sysfs: format!("{root}/sys").into(),
        ..herakles_core::Paths::default()
    }
}
