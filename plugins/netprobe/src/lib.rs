//! netprobe: packets and bytes per network interface and direction, counted
//! by a TC eBPF program (see `README.md` in this crate).
//!
//! A collector crate of herakles-node-exporter: it depends on
//! `herakles-core` alone, declares its config section (`collectors.netprobe`)
//! and registers through `inventory`. The exporter links it behind its
//! `netprobe` feature.
//!
//! It is off by default although compiled in: it puts a TC filter on every
//! selected interface of the host, which an operator should decide to do.
//!
//! The counting happens in the kernel; a thread of ours ([`probe`]) reads the
//! counters every `collection_interval`, attaches to interfaces that appeared
//! and forgets those that went. A scrape reports the latest reading, so the
//! values belong to `netprobe_last_collection_timestamp_seconds`, and the
//! rates are over exactly one interval.

mod clsact;
mod probe;
mod rtnetlink;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herakles_core::schemars::JsonSchema;
use herakles_core::serde_json;
use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, HealthReport, MetricSink,
    Registration, Result, ScrapeContext,
};
use serde::{Deserialize, Serialize};

pub use clsact::{FILTER_HANDLE, MARKER_CHAIN};
use probe::{Mode, Probe, Settings, Snapshot, EGRESS, INGRESS};

const PACKETS: Desc = Desc::counter(
    "netprobe_tc_packets_total",
    "Packets seen by the netprobe TC filter since it was attached to the interface.",
);
const BYTES: Desc = Desc::counter(
    "netprobe_tc_bytes_total",
    "Bytes (link-layer frame lengths) seen by the netprobe TC filter since it was attached.",
);
const PACKET_RATE: Desc = Desc::gauge(
    "netprobe_tc_packets_per_second",
    "Packets per second over the last collection interval.",
);
const BYTE_RATE: Desc = Desc::gauge(
    "netprobe_tc_bytes_per_second",
    "Bytes per second over the last collection interval.",
);
const ACTIVE: Desc = Desc::gauge(
    "netprobe_interface_active",
    "1 if the interface carried a packet during the last collection interval, else 0.",
);
const UP: Desc = Desc::gauge(
    "netprobe_up",
    "1 if the netprobe TC programs are loaded and every selected interface was counted \
     throughout the last collection interval, else 0.",
);
const LOST: Desc = Desc::counter(
    "netprobe_filters_lost_total",
    "Times a TC filter or tcx link of ours was found removed or replaced by someone else \
     (the interface is then attached again).",
);
const COLLECTIONS: Desc = Desc::counter(
    "netprobe_collection_total",
    "Readings of the kernel counters since the exporter started.",
);
const LAST_COLLECTION: Desc = Desc::gauge(
    "netprobe_last_collection_timestamp_seconds",
    "Unix time of the last reading of the kernel counters.",
);

/// The `collectors.netprobe` config section.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "herakles_core::schemars")]
#[serde(default, deny_unknown_fields)]
pub struct NetprobeConfig {
    /// Interfaces to count, by exact name; empty counts every interface.
    /// Only these get a TC filter: an interface left out is never touched.
    /// Names that do not exist yet are picked up when they appear.
    /// A name is 1 to 15 bytes, the kernel's limit.
    #[schemars(inner(length(min = 1, max = 15)))]
    pub interfaces: Vec<String>,
    /// Report only interfaces that carried a packet during the last
    /// collection interval. Idle interfaces keep their filter and their
    /// counts; their series come back with their next packet.
    pub active_only: bool,
    /// Seconds between two readings of the kernel counters. The
    /// `*_per_second` rates are over this interval, and new or removed
    /// interfaces are noticed within it.
    #[schemars(range(min = 0.1, max = 3600))]
    pub collection_interval: f64,
    /// How the programs hook into TC. `clsact`: a filter in the interface's
    /// clsact qdisc, created if missing and removed again by the last
    /// netprobe to leave it; works on any kernel with BTF. `tcx`: a tcx
    /// link (kernel 6.6 or later), no qdisc involved, and the kernel
    /// removes it if the exporter is killed.
    pub attach: Attach,
    /// Priority of our clsact filters (1-65535; lower runs earlier). Packets a
    /// filter of lower priority drops or redirects never reach ours. Change
    /// it only if another filter already holds our handle (0x4e500000 and
    /// up, one per running netprobe) at this priority; the exporter logs
    /// that case.
    #[schemars(range(min = 1, max = 65535))]
    pub tc_priority: u16,
}

/// See [`NetprobeConfig::attach`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "herakles_core::schemars")]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    Clsact,
    Tcx,
}

impl Default for NetprobeConfig {
    fn default() -> Self {
        NetprobeConfig {
            interfaces: Vec::new(),
            active_only: false,
            collection_interval: 5.0,
            attach: Attach::Clsact,
            // Before tc's automatic priorities (49152 and down) and away
            // from 1, which libbpf and most tools take by default.
            tc_priority: 7,
        }
    }
}

/// See the crate documentation.
pub struct Netprobe {
    active_only: bool,
    snapshot: Arc<Mutex<Snapshot>>,
    /// `None` once stopped, or when the programs never ran.
    probe: Mutex<Option<Probe>>,
}

impl Collector for Netprobe {
    fn collect(&self, _: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let snap = self
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.single(&UP, f64::from(u8::from(snap.up)));
        if snap.collections == 0 {
            return Ok(());
        }
        out.single(&COLLECTIONS, snap.collections as f64);
        out.single(&LOST, snap.hooks_lost as f64);
        out.single(&LAST_COLLECTION, snap.last_collection_unix);
        for iface in &snap.interfaces {
            if self.active_only && !iface.active {
                continue;
            }
            let ifindex = iface.ifindex.to_string();
            out.family(&ACTIVE).sample(
                &[("interface", &iface.name), ("ifindex", &ifindex)],
                f64::from(u8::from(iface.active)),
            );
            for (d, direction) in [(INGRESS, "ingress"), (EGRESS, "egress")] {
                let labels = [
                    ("interface", iface.name.as_str()),
                    ("ifindex", &ifindex),
                    ("direction", direction),
                ];
                out.family(&PACKETS)
                    .sample(&labels, iface.totals[d].packets);
                out.family(&BYTES).sample(&labels, iface.totals[d].bytes);
                if let Some(rates) = &iface.rates {
                    out.family(&PACKET_RATE).sample(&labels, rates[d].packets);
                    out.family(&BYTE_RATE).sample(&labels, rates[d].bytes);
                }
            }
        }
        Ok(())
    }

    fn shutdown(&self) {
        let probe = self.probe.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = probe {
            p.stop();
        }
    }
}

impl Drop for Netprobe {
    /// A collector dropped without `shutdown` (a test, an error path) must
    /// still take its filters off the host.
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl BuildCollector for Netprobe {
    type Config = NetprobeConfig;

    /// Only a config error fails the build. The programs failing to load
    /// (no BTF, no privileges) leaves `netprobe_up 0` and a logged reason,
    /// and the rest of the exporter runs as usual.
    ///
    /// The ranges of `collection_interval` and `tc_priority` (0 would let the
    /// kernel pick a priority, and then our filter could not be found again)
    /// and the length of interface names are declared on the config fields
    /// and checked when the config is loaded, with the file position.
    fn build(config: NetprobeConfig, ctx: &BuildContext) -> Result<Self> {
        let settings = Settings {
            mode: match config.attach {
                Attach::Clsact => Mode::Clsact,
                Attach::Tcx => Mode::Tcx,
            },
            interfaces: config.interfaces,
            interval: Duration::from_secs_f64(config.collection_interval),
            priority: config.tc_priority,
            btf: ctx.paths().sys("kernel/btf/vmlinux"),
        };
        let mode = format!("{:?}", config.attach).to_lowercase();
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let (probe, failure) = match Probe::start(settings, snapshot.clone()) {
            Ok(p) => (Some(p), None),
            Err(reason) => {
                tracing::warn!(reason, "netprobe unavailable: netprobe_up is 0");
                (None, Some(reason))
            }
        };
        // netprobe_up says whether it works; /health says why not, and where
        // it is attached when it does. The operator enabled netprobe (it is
        // off by default), so while it is down the exporter is degraded.
        let shown = snapshot.clone();
        ctx.health_check("netprobe", move || {
            let snap = shown.lock().unwrap_or_else(|e| e.into_inner());
            let interfaces: Vec<&str> = snap.interfaces.iter().map(|i| i.name.as_str()).collect();
            let last_loss = snap.last_loss.as_ref().map(|l| {
                serde_json::json!({
                    "interface": l.interface,
                    "what": l.what,
                    "unix_time": l.unix,
                })
            });
            let detail = serde_json::json!({
                "up": snap.up,
                "attach": mode,
                "filter_handle": snap.filter_handle.map(|h| format!("{h:#x}")),
                "interfaces": interfaces,
                "not_counted": snap.not_counted,
                "filters_lost": snap.hooks_lost,
                "last_filter_lost": last_loss,
                "error": failure,
            });
            match down_because(&snap, failure.as_deref()) {
                Some(why) => HealthReport::degraded(detail, why),
                None => HealthReport::ok(detail),
            }
        });
        Ok(Netprobe {
            active_only: config.active_only,
            snapshot,
            probe: Mutex::new(probe),
        })
    }
}

/// Why `netprobe_up` is 0, for `/health`'s list of problems; `None` while
/// it is 1.
fn down_because(snap: &Snapshot, failure: Option<&str>) -> Option<String> {
    if snap.up {
        return None;
    }
    if let Some(f) = failure {
        return Some(format!("not running: {f}"));
    }
    if !snap.not_counted.is_empty() {
        let list: Vec<String> = snap
            .not_counted
            .iter()
            .map(|(name, why)| format!("{name}: {why}"))
            .collect();
        return Some(format!("interfaces not counted: {}", list.join("; ")));
    }
    Some(
        "the last collection interval was not counted in full (a filter was lost or a \
         counter could not be read; see the log)"
            .into(),
    )
}

inventory::submit! {
    Registration::new::<Netprobe>(
        "netprobe",
        "Packets and bytes per interface and direction, counted by a TC eBPF program",
        false,
        env!("CARGO_PKG_NAME"),
    )
}
