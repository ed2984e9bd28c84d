//! Built-in collectors, one file each.
//!
//! Nothing here lists them: every file registers itself with
//! `inventory::submit!`, and the exporter discovers them at start-up.
//!
//! A collector imports herakles-core, the shared parts below the
//! collectors (the process table, classification, netlink sock_diag, the
//! eBPF services, the configuration) and [`helpers`], and never another
//! collector: what two collectors share goes into [`helpers`], so each file
//! can be read, changed and tested alone.

pub mod cpu;
pub mod disk;
pub mod ebpf_io;
pub mod filesystem;
pub mod helpers;
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

/// The section of collector `name` in its example file
/// `config/collectors/<name>.yaml`, as type `T`. The file is loaded the way
/// the exporter loads a config file (so it must parse and validate), must
/// enable the collector, and the collector must build from the section
/// (with eBPF off, so that no test loads programs by the way).
#[cfg(test)]
pub(crate) fn example_config<T: Clone + 'static>(name: &str) -> T {
    let path = format!(
        "{}/config/collectors/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let file = crate::config::load_file(path.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let section = &file.config.collectors.0[name];
    assert!(section.enabled, "{path} does not enable {name}");
    let globals = crate::config::Config {
        enable_ebpf: false,
        ..crate::config::Config::default()
    };
    let ctx = herakles_core::BuildContext::new(
        herakles_core::Paths::default(),
        std::sync::Arc::new(globals),
    );
    if let Err(e) = section.registration.build(section.config.as_ref(), &ctx) {
        panic!("{name} does not build from {path}: {e}");
    }
    section
        .config
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("the {name} section is not a {}", std::any::type_name::<T>()))
        .clone()
}
