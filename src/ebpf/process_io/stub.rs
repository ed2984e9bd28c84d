//! The loader of a build without the `ebpf` feature: nothing loads, and
//! each part switched on says why in the shared status.

use herakles_core::Paths;

use super::{off, Activity, Exited, Raw, Settings, Status, DISK, NETWORK};

/// Without the `ebpf` feature nothing loads; preflight says why.
pub struct Loader;

impl Loader {
    pub fn start(
        settings: &Settings,
        paths: &Paths,
        status: &Status,
        _: Box<dyn Fn(Vec<Exited>) + Send + Sync>,
    ) -> Loader {
        for (part, on, switch) in [
            (NETWORK, settings.network, "enable_ebpf_network"),
            (DISK, settings.disk, "enable_ebpf_disk"),
        ] {
            if let Some(s) = off(settings, paths, on, switch) {
                status.set(part, s);
            }
        }
        Loader
    }
    pub fn active(&self) -> bool {
        false
    }
    pub fn network(&self) -> bool {
        false
    }
    pub fn disk(&self) -> bool {
        false
    }
    pub fn read(&self) -> Option<Raw> {
        None
    }
    pub fn activity(&self) -> Option<Activity> {
        None
    }
    pub fn shutdown(&self) {}
}
