//! Per (group, subgroup) aggregates of the process table.
//!
//! These series are bounded by the classification rules, not by the number
//! of processes, so they stay on when per-process series are turned off.
//!
//! Counters (`*_total`) include the last values of members that exited, so
//! they never go down (see `process::state`). Gauges cover live members
//! only, and a subgroup with none has no gauges. PSS and swap sum the
//! members whose smaps data is known: with `smaps_mode: top` that is the
//! large processes, which hold most of the memory but not all of it.
//!
//! `herakles_group_cpu_usage_ratio` is a share of the whole machine (CPU
//! seconds per wall second, divided by online CPUs), so 1.0 means every CPU
//! busy with this subgroup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, NoConfig, Registration,
    Result, ScrapeContext,
};

use crate::classify::Classifier;
use crate::ebpf::process_io::{self, ProcessIo};
use crate::ebpf::tcp_state::{Owner, TcpTracking};
use crate::process::{self, GroupView, ProcessTable, View};

const RSS: Desc = Desc::gauge(
    "herakles_group_memory_rss_bytes",
    "Sum of the RSS of the subgroup's processes.",
);
const PSS: Desc = Desc::gauge(
    "herakles_group_memory_pss_bytes",
    "Sum of the PSS of the subgroup's processes whose smaps data is known.",
);
const SWAP: Desc = Desc::gauge(
    "herakles_group_memory_swap_bytes",
    "Sum of the swap of the subgroup's processes whose smaps data is known.",
);
const PROCESSES: Desc = Desc::gauge(
    "herakles_group_processes",
    "Live processes in the subgroup.",
);
const CPU_RATIO: Desc = Desc::gauge(
    "herakles_group_cpu_usage_ratio",
    "CPU use of the subgroup since the previous scrape, as a share of all online CPUs.",
);
const CPU_SECONDS: Desc = Desc::counter(
    "herakles_group_cpu_seconds_total",
    "CPU time of the subgroup's processes, including exited ones.",
);
const READ_BYTES: Desc = Desc::counter(
    "herakles_group_blkio_read_bytes_total",
    "Bytes the subgroup's processes caused to be read from storage.",
);
const WRITE_BYTES: Desc = Desc::counter(
    "herakles_group_blkio_write_bytes_total",
    "Bytes the subgroup's processes caused to be written to storage.",
);
const READ_CALLS: Desc = Desc::counter(
    "herakles_group_blkio_read_syscalls_total",
    "Read system calls of the subgroup's processes.",
);
const WRITE_CALLS: Desc = Desc::counter(
    "herakles_group_blkio_write_syscalls_total",
    "Write system calls of the subgroup's processes.",
);
const NET_RX: Desc = Desc::counter(
    "herakles_group_net_rx_bytes_total",
    "TCP and UDP bytes the subgroup's processes received, including exited ones (eBPF).",
);
const NET_TX: Desc = Desc::counter(
    "herakles_group_net_tx_bytes_total",
    "TCP and UDP bytes the subgroup's processes sent, including exited ones (eBPF).",
);

const NET_CONNECTIONS: Desc = Desc::counter(
    "herakles_group_net_connections_total",
    "TCP connections established by the subgroup's processes since the exporter started (eBPF, enable_tcp_tracking).",
);

/// See the module documentation.
pub struct ProcessGroups {
    table: Arc<ProcessTable>,
    /// Present when TCP state tracking runs.
    connections: Option<Connections>,
    io: Arc<ProcessIo>,
}

/// Network rows from the eBPF service; absent when its network part does
/// not run.
fn emit_net(io: &ProcessIo, ctx: &ScrapeContext, out: &mut MetricSink) {
    let Some(view) = io.view(ctx).filter(|v| v.network) else {
        return;
    };
    type Get = fn(&process_io::Net) -> u64;
    let rows: [(&Desc, Get); 2] = [(&NET_RX, |n| n.rx_bytes), (&NET_TX, |n| n.tx_bytes)];
    for (desc, get) in rows {
        let mut f = out.family(desc);
        for g in &view.groups {
            f.sample(
                &[("group", &g.group), ("subgroup", &g.subgroup)],
                get(&g.net) as f64,
            );
        }
    }
}

impl Collector for ProcessGroups {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let view = self.table.view(ctx);
        let host = self.table.host;
        let live: Vec<&GroupView> = view.groups.iter().filter(|g| g.members > 0).collect();
        type Get = fn(&GroupView, f64) -> f64;
        let gauges: [(&Desc, Get); 5] = [
            (&RSS, |g, _| g.rss as f64),
            (&PSS, |g, _| g.pss as f64),
            (&SWAP, |g, _| g.swap as f64),
            (&PROCESSES, |g, _| g.members as f64),
            (&CPU_RATIO, |g, cpus| g.cpu_rate / cpus),
        ];
        for (desc, get) in gauges {
            let mut f = out.family(desc);
            for g in &live {
                f.sample(&labels(g), get(g, host.cpus));
            }
        }
        {
            let mut f = out.family(&CPU_SECONDS);
            for g in &view.groups {
                let [a, b] = labels(g);
                f.sample(
                    &[a, b, ("mode", "user")],
                    g.totals.utime as f64 / host.clk_tck,
                );
                f.sample(
                    &[a, b, ("mode", "system")],
                    g.totals.stime as f64 / host.clk_tck,
                );
            }
        }
        let counters: [(&Desc, Get); 4] = [
            (&READ_BYTES, |g, _| g.totals.io.read_bytes as f64),
            (&WRITE_BYTES, |g, _| g.totals.io.write_bytes as f64),
            (&READ_CALLS, |g, _| g.totals.io.syscr as f64),
            (&WRITE_CALLS, |g, _| g.totals.io.syscw as f64),
        ];
        for (desc, get) in counters {
            let mut f = out.family(desc);
            for g in &view.groups {
                f.sample(&labels(g), get(g, 0.0));
            }
        }
        if let Some(c) = &self.connections {
            c.collect(ctx, &self.table, &view, out);
        }
        emit_net(&self.io, ctx, out);
        Ok(())
    }

    fn shutdown(&self) {
        if let Some(c) = &self.connections {
            c.tracking.shutdown();
        }
    }
}

/// `herakles_group_net_connections_total`: the eBPF program counts
/// connections per process (pid and start time); here they are credited to
/// the process's subgroup.
///
/// A process is placed by the process table when this scrape's view has it,
/// else by where an earlier scrape saw it, else (it lived and died between
/// two scrapes) by classifying the command name the program recorded, the
/// only thing left of it (as exe name and command line too); rules that
/// need the real exe or arguments then miss it.
/// Totals keep what exited processes contributed, so the counter never
/// decreases. Only TCP is counted: no hook that exists here sees UDP
/// connect() without tracing every system call.
struct Connections {
    tracking: Arc<TcpTracking>,
    classifier: Arc<Classifier>,
    state: Mutex<ConnectionState>,
}

/// (group, subgroup).
type Subgroup = (Arc<str>, Arc<str>);

#[derive(Default)]
struct ConnectionState {
    /// Per process: its count at the last scrape and its subgroup.
    seen: HashMap<(u32, u64), (u64, Option<Subgroup>)>,
    totals: HashMap<Subgroup, u64>,
}

impl Connections {
    fn collect(
        &self,
        ctx: &ScrapeContext,
        table: &ProcessTable,
        view: &View,
        out: &mut MetricSink,
    ) {
        let live: HashMap<u32, (&Arc<str>, &Arc<str>)> = view
            .procs
            .iter()
            .map(|p| (p.pid, (&p.group, &p.subgroup)))
            .collect();
        let procfs = &ctx.paths().procfs;
        let alive = |tgid: u32| live.contains_key(&tgid) || procfs.join(tgid.to_string()).exists();
        let owners = match self.tracking.connections(&alive) {
            Some(Ok(o)) => o,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "reading per-process TCP connections");
                Vec::new()
            }
            None => Vec::new(),
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *st;
        for (owner, count) in owners {
            let Owner {
                tgid,
                start_ns,
                comm,
            } = owner;
            let key = (tgid, start_ns);
            let (last, place) = st.seen.entry(key).or_insert((0, None));
            // A smaller count is a fresh map entry (the old one was removed).
            let delta = count.checked_sub(*last).unwrap_or(count);
            *last = count;
            if let Some((g, s)) = live.get(&tgid) {
                *place = Some(((*g).clone(), (*s).clone()));
            }
            let (group, subgroup) = place
                .get_or_insert_with(|| {
                    // The exe name usually starts as the comm does.
                    let c = self.classifier.classify(&comm, &comm, &comm);
                    (c.group, c.subgroup)
                })
                .clone();
            if !alive(tgid) {
                st.seen.remove(&key);
            }
            if delta > 0 && table.settings.exported(&group) {
                *st.totals.entry((group, subgroup)).or_default() += delta;
            }
        }
        let mut rows: Vec<_> = st.totals.iter().collect();
        rows.sort();
        let mut f = out.family(&NET_CONNECTIONS);
        for ((group, subgroup), n) in rows {
            f.sample(
                &[("group", group), ("subgroup", subgroup), ("proto", "tcp")],
                *n as f64,
            );
        }
    }
}

fn labels(g: &GroupView) -> [(&'static str, &str); 2] {
    [("group", &g.group), ("subgroup", &g.subgroup)]
}

impl BuildCollector for ProcessGroups {
    type Config = NoConfig;
    fn build(_: NoConfig, ctx: &BuildContext) -> Result<Self> {
        let connections = Some(TcpTracking::get(ctx))
            .filter(|t| t.active())
            .map(|tracking| -> Result<Connections> {
                Ok(Connections {
                    tracking,
                    classifier: process::classifier(ctx)?,
                    state: Mutex::default(),
                })
            })
            .transpose()?;
        Ok(ProcessGroups {
            table: process::table(ctx)?,
            connections,
            io: process_io::service(ctx)?,
        })
    }
}

inventory::submit! {
    Registration::new::<ProcessGroups>(
        "process_groups",
        "Memory, CPU and block I/O per process group and subgroup",
        true,
        env!("CARGO_PKG_NAME"),
    )
}
