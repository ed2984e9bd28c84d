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
//! * [`register_health`]: the `ebpf` section of `/health`, with the parts'
//!   states, the programs' event rate and lost events, and how full each
//!   hash map is; a part that failed degrades the exporter's status.

pub mod process_io;
pub mod tcp_state;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use herakles_core::{BuildContext, HealthReport, Paths};
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

/// How full one hash map is: `bpftool map show` gives its id and
/// `max_entries`, `bpftool map dump id ID` its entries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapUsage {
    pub name: String,
    pub id: u32,
    pub entries: u64,
    pub max_entries: u32,
    pub usage_percent: f64,
}

/// The usage of every hash map of `object`. Arrays are always full and ring
/// buffers report their losses as dropped events, so only hashes, which
/// fill as processes and connections come, are listed.
///
/// Entries are counted by walking the keys, one `bpf()` call each, and only
/// when `/health` is served: less than `bpftool map dump` of the same map,
/// which also reads every value (30 to 40 ms for 10,240 entries here). A
/// walk that the kernel restarts (its current key was deleted) sees keys
/// again, so keys are counted once each.
#[cfg(feature = "ebpf")]
pub fn hash_map_usage(object: &libbpf_rs::Object) -> Vec<MapUsage> {
    use libbpf_rs::{MapCore, MapType};
    let mut out = Vec::new();
    for map in object.maps() {
        if !matches!(
            map.map_type(),
            MapType::Hash | MapType::LruHash | MapType::PercpuHash | MapType::LruPercpuHash
        ) {
            continue;
        }
        let max_entries = map.max_entries();
        let keys: std::collections::HashSet<Vec<u8>> =
            map.keys().take(2 * max_entries as usize + 1).collect();
        let entries = keys.len() as u64;
        out.push(MapUsage {
            name: map.name().to_string_lossy().into_owned(),
            id: map.info().map_or(0, |i| i.info.id),
            entries,
            max_entries,
            usage_percent: if max_entries == 0 {
                0.0
            } else {
                entries as f64 * 100.0 / f64::from(max_entries)
            },
        });
    }
    out
}

/// Put the `ebpf` section in `/health`: whether eBPF is compiled in and
/// switched on; each part's state; the per-process I/O programs' events per
/// second (over the last [`process_io::RATE_WINDOW`]), events processed and
/// lost (the counters of herakles_ebpf_events_{processed,dropped}_total);
/// and each hash map's usage, with the fullest as `map_usage_percent`.
///
/// Call it once the collectors are built: it reports the services they
/// started. A part that failed is a problem that degrades the status; a
/// part switched off is not.
pub fn register_health(ctx: &BuildContext, config: &Config) {
    let status = status(ctx);
    let compiled = cfg!(feature = "ebpf");
    let enabled = config.enable_ebpf;
    let io = find_service::<process_io::ProcessIo>(ctx);
    let tcp = find_service::<tcp_state::TcpTracking>(ctx);
    ctx.health_check("ebpf", move || {
        let parts = status.parts();
        let activity = io.as_ref().and_then(|io| io.activity());
        let mut maps = activity
            .as_ref()
            .map(|a| a.maps.clone())
            .unwrap_or_default();
        maps.extend(tcp.as_ref().map(|t| t.map_usage()).unwrap_or_default());
        let fullest = maps.iter().map(|m| m.usage_percent).reduce(f64::max);
        let detail = serde_json::json!({
            "compiled_in": compiled,
            "enabled": enabled,
            "parts": parts,
            "events_per_sec": activity.as_ref().and_then(|a| a.window).map(|w| w.per_second),
            "events_window": activity.as_ref().and_then(|a| a.window),
            "events_processed": activity.as_ref().map(|a| a.stats.processed),
            "lost_events": activity.as_ref().map(|a| a.stats.dropped),
            "map_usage_percent": fullest,
            "maps": maps,
        });
        let failed: Vec<String> = parts
            .iter()
            .filter_map(|(part, state)| match state {
                PartState::Failed { reason } => Some(format!("{part}: {reason}")),
                _ => None,
            })
            .collect();
        if failed.is_empty() {
            HealthReport::ok(detail)
        } else {
            HealthReport::degraded(detail, failed.join("; "))
        }
    });
}

/// The service of type `T` if something built it.
fn find_service<T: Send + Sync + 'static>(ctx: &BuildContext) -> Option<Arc<T>> {
    ctx.services()
        .into_iter()
        .find_map(|s| s.downcast::<T>().ok())
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
