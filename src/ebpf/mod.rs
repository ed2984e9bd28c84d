//! eBPF programs: per-process network and block I/O, TCP state tracking.
//!
//! Each program set ("part") lives in its own module with its C source in
//! `bpf/` and is loaded once per exporter as a [`BuildContext`] service, so
//! every collector that reads it shares one set of maps. This module holds
//! what the parts share:
//!
//! * [`Status`]: the one place each part records whether it runs and, if not,
//!   why. `/health` shows it and `check --ebpf` prints it, because an eBPF
//!   failure must never stop the exporter: the part's series are simply
//!   absent, and an operator needs somewhere to read the reason.
//! * [`preflight`]: the reasons we can tell before asking libbpf (compiled
//!   out, switched off, no BTF, missing capabilities), worded as sentences
//!   rather than the errno a failed `bpf()` call would give.

pub mod process_io;
pub mod tcp_state;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use herakles_core::{BuildContext, Paths};
use serde::Serialize;

use crate::config::Config;
use crate::util::caps::{self, CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN};

/// Whether one part runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PartState {
    /// Loaded and attached; `detail` names the hooks.
    Active { detail: String },
    /// Not attempted: compiled out or switched off by configuration.
    Disabled { reason: String },
    /// Attempted and failed; its series are absent.
    Failed { reason: String },
}

/// The state of every eBPF part, keyed by part name.
#[derive(Default)]
pub struct Status {
    parts: Mutex<BTreeMap<&'static str, PartState>>,
}

impl Status {
    /// Record `part`'s state. A failure is logged once, as a warning naming
    /// the reason; a part switched off by configuration only at debug level.
    pub fn set(&self, part: &'static str, state: PartState) {
        match &state {
            PartState::Active { detail } => tracing::info!(part, detail, "eBPF active"),
            PartState::Disabled { reason } => tracing::debug!(part, reason, "eBPF off"),
            PartState::Failed { reason } => {
                tracing::warn!(part, reason, "eBPF unavailable; its series are absent")
            }
        }
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.insert(part, state);
    }

    /// The recorded state of `part`, if it was built.
    pub fn get(&self, part: &str) -> Option<PartState> {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.get(part).cloned()
    }

    /// Every part and its state, for `/health` and `check --ebpf`.
    pub fn parts(&self) -> BTreeMap<&'static str, PartState> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The exporter's one [`Status`].
pub fn status(ctx: &BuildContext) -> Arc<Status> {
    ctx.service(|_| Ok(Status::default()))
        .expect("creating Status cannot fail")
}

/// Put the `ebpf` section in `/health`: whether eBPF is compiled in and
/// switched on, and each part's state.
pub fn register_health(ctx: &BuildContext, config: &Config) {
    let status = status(ctx);
    let compiled = cfg!(feature = "ebpf");
    let enabled = config.enable_ebpf;
    ctx.health_section("ebpf", move || {
        serde_json::json!({
            "compiled_in": compiled,
            "enabled": enabled,
            "parts": status.parts(),
        })
    });
}

/// Why a part cannot be loaded here, if a reason can be told without trying:
/// `Err(Disabled)` when the build, `enable_ebpf` or `enabled` rules it out,
/// `Err(Failed)` when the host lacks BTF or the process lacks capabilities.
/// `switch` names the configuration key behind `enabled` for the message.
pub fn preflight(
    enable_ebpf: bool,
    paths: &Paths,
    enabled: bool,
    switch: &str,
) -> Result<(), PartState> {
    if !cfg!(feature = "ebpf") {
        return Err(PartState::Disabled {
            reason: "this binary was built without the `ebpf` feature".into(),
        });
    }
    if !enable_ebpf {
        return Err(PartState::Disabled {
            reason: "enable_ebpf is false".into(),
        });
    }
    if !enabled {
        return Err(PartState::Disabled {
            reason: format!("{switch} is false"),
        });
    }
    let btf = paths.sys("kernel/btf/vmlinux");
    if !btf.is_file() {
        return Err(PartState::Failed {
            reason: format!(
                "{} is missing: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF), which these \
                 CO-RE programs need",
                btf.display()
            ),
        });
    }
    let caps = caps::effective().map_err(|e| PartState::Failed {
        reason: format!("cannot read our capabilities: {e}"),
    })?;
    let has = |bit: u32| caps::has(caps, bit);
    if !(has(CAP_SYS_ADMIN) || has(CAP_BPF) && has(CAP_PERFMON)) {
        return Err(PartState::Failed {
            reason: "missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root or \
                     `setcap cap_bpf,cap_perfmon+ep` the binary"
                .into(),
        });
    }
    Ok(())
}
