//! The heaviest processes: host-wide (`herakles_top_*`, `top_n` of them)
//! and per subgroup (`herakles_mem_top_process_*`,
//! `herakles_cpu_top_process_*`, `top_n_subgroup` each, `top_n_others` for
//! the catch-all group).
//!
//! These answer "who is it?" when a group series moves, at a cardinality
//! bounded by N times the number of subgroups. They stay on with
//! `per_process_metrics: false`, which is their point.
//!
//! A process's rank moves between scrapes, and with it the `rank` label; a
//! query over time should aggregate `by (pid, comm)` rather than follow a
//! rank. CPU ratios here are shares of the whole machine (0 to 1), unlike
//! the per-process percent of one CPU.

use std::cmp::Ordering;
use std::sync::Arc;

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, NoConfig, Registration,
    Result, ScrapeContext,
};

use crate::ebpf::process_io::{self, ProcIo, ProcessIo};
use crate::process::{self, ProcView, ProcessTable};

const TOP_CPU_RATIO: Desc = Desc::gauge(
    "herakles_top_cpu_process_usage_ratio",
    "Processes using the most CPU since the previous scrape, as a share of all online CPUs.",
);
const TOP_CPU_SECONDS: Desc = Desc::counter(
    "herakles_top_cpu_process_seconds_total",
    "CPU time since start of the processes in herakles_top_cpu_process_usage_ratio.",
);
const TOP_RSS: Desc = Desc::gauge(
    "herakles_top_mem_process_rss_bytes",
    "Processes with the largest RSS.",
);
const TOP_PSS: Desc = Desc::gauge(
    "herakles_top_mem_process_pss_bytes",
    "Processes with the largest PSS, among those whose smaps data is known.",
);
const TOP_READ: Desc = Desc::counter(
    "herakles_top_blkio_process_read_bytes_total",
    "Processes that caused the most bytes read from storage since they started.",
);
const TOP_WRITE: Desc = Desc::counter(
    "herakles_top_blkio_process_write_bytes_total",
    "Processes that caused the most bytes written to storage since they started.",
);
const TOP_NET_RX: Desc = Desc::counter(
    "herakles_top_net_process_rx_bytes_total",
    "Processes that received the most TCP and UDP bytes since they started (eBPF).",
);
const TOP_NET_TX: Desc = Desc::counter(
    "herakles_top_net_process_tx_bytes_total",
    "Processes that sent the most TCP and UDP bytes since they started (eBPF).",
);
const SUB_RSS: Desc = Desc::gauge(
    "herakles_mem_top_process_rss_bytes",
    "RSS of the largest processes (by RSS) of each subgroup.",
);
const SUB_PSS: Desc = Desc::gauge(
    "herakles_mem_top_process_pss_bytes",
    "PSS of the largest processes (by RSS) of each subgroup, when known.",
);
const SUB_USS: Desc = Desc::gauge(
    "herakles_mem_top_process_uss_bytes",
    "USS of the largest processes (by RSS) of each subgroup, when known.",
);
const SUB_CPU_RATIO: Desc = Desc::gauge(
    "herakles_cpu_top_process_usage_ratio",
    "CPU use of the busiest processes of each subgroup, as a share of all online CPUs.",
);
const SUB_CPU_SECONDS: Desc = Desc::counter(
    "herakles_cpu_top_process_seconds_total",
    "CPU time since start of the processes in herakles_cpu_top_process_usage_ratio.",
);

/// See the module documentation.
pub struct ProcessTop {
    table: Arc<ProcessTable>,
    io: Arc<ProcessIo>,
}

/// The host-wide network top-N from the eBPF service, with the label shape
/// of the other `herakles_top_*` rows; absent when its network part does not
/// run.
fn emit_net(io: &ProcessIo, ctx: &ScrapeContext, n: usize, out: &mut MetricSink) {
    let Some(view) = io.view(ctx).filter(|v| v.network) else {
        return;
    };
    type Get = fn(&process_io::Net) -> u64;
    let rows: [(&Desc, Get); 2] = [(&TOP_NET_RX, |n| n.rx_bytes), (&TOP_NET_TX, |n| n.tx_bytes)];
    for (desc, get) in rows {
        let mut ranked: Vec<(u64, &ProcIo)> = view
            .procs
            .iter()
            .filter_map(|p| p.net.as_ref().map(|net| (get(net), p)))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.pid.cmp(&b.1.pid)));
        let mut f = out.family(desc);
        for (i, (v, p)) in ranked.into_iter().take(n).enumerate() {
            let rank = (i + 1).to_string();
            let pid = p.pid.to_string();
            f.sample(
                &[
                    ("group", &p.group),
                    ("subgroup", &p.subgroup),
                    ("rank", &rank),
                    ("pid", &pid),
                    ("comm", &p.comm),
                ],
                v as f64,
            );
        }
    }
}

type Key = fn(&ProcView) -> Option<f64>;
type Value = fn(&ProcView, f64, f64) -> Option<f64>;

fn cpu_seconds(p: &ProcView, tck: f64) -> f64 {
    p.totals.utime.saturating_add(p.totals.stime) as f64 / tck
}

/// The `n` processes with the largest `key`, largest first; processes
/// without a value are not ranked.
fn top<'a>(procs: impl Iterator<Item = &'a ProcView>, n: usize, key: Key) -> Vec<&'a ProcView> {
    let mut ranked: Vec<(f64, &ProcView)> = procs.filter_map(|p| key(p).map(|k| (k, p))).collect();
    ranked.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(Ordering::Equal)
            .then(a.1.pid.cmp(&b.1.pid))
    });
    ranked.into_iter().take(n).map(|(_, p)| p).collect()
}

fn emit(
    out: &mut MetricSink,
    desc: &Desc,
    ranked: &[&ProcView],
    value: Value,
    tck: f64,
    cpus: f64,
) {
    let mut f = out.family(desc);
    for (i, p) in ranked.iter().enumerate() {
        if let Some(v) = value(p, tck, cpus) {
            let rank = (i + 1).to_string();
            let pid = p.pid.to_string();
            f.sample(
                &[
                    ("group", &p.group),
                    ("subgroup", &p.subgroup),
                    ("rank", &rank),
                    ("pid", &pid),
                    ("comm", &p.comm),
                ],
                v,
            );
        }
    }
}

impl Collector for ProcessTop {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let view = self.table.view(ctx);
        let s = &self.table.settings;
        let (tck, cpus) = (self.table.host.clk_tck, self.table.host.cpus);
        let all = || view.procs.iter();
        let rss: Key = |p| (p.rss > 0).then_some(p.rss as f64);
        let cpu: Key = |p| p.cpu_rate;

        let host_wide: [(&Desc, Key, Value); 6] = [
            (&TOP_CPU_RATIO, cpu, |p, _, c| p.cpu_rate.map(|r| r / c)),
            (&TOP_CPU_SECONDS, cpu, |p, t, _| Some(cpu_seconds(p, t))),
            (&TOP_RSS, rss, |p, _, _| Some(p.rss as f64)),
            (
                &TOP_PSS,
                |p| p.pss().map(|v| v as f64),
                |p, _, _| p.pss().map(|v| v as f64),
            ),
            (
                &TOP_READ,
                |p| p.has_io.then_some(p.totals.io.read_bytes as f64),
                |p, _, _| Some(p.totals.io.read_bytes as f64),
            ),
            (
                &TOP_WRITE,
                |p| p.has_io.then_some(p.totals.io.write_bytes as f64),
                |p, _, _| Some(p.totals.io.write_bytes as f64),
            ),
        ];
        for (desc, key, value) in host_wide {
            let ranked = top(all(), s.top_n, key);
            emit(out, desc, &ranked, value, tck, cpus);
        }

        let mut by_sub: Vec<(&str, &str, Vec<&ProcView>)> = Vec::new();
        for g in &view.groups {
            if g.members == 0 {
                continue;
            }
            let members: Vec<&ProcView> = all()
                .filter(|p| p.group == g.group && p.subgroup == g.subgroup)
                .collect();
            by_sub.push((&g.group, &g.subgroup, members));
        }
        let per_sub: [(&Desc, Key, Value); 5] = [
            (&SUB_RSS, rss, |p, _, _| Some(p.rss as f64)),
            (&SUB_PSS, rss, |p, _, _| p.pss().map(|v| v as f64)),
            (&SUB_USS, rss, |p, _, _| p.uss().map(|v| v as f64)),
            (&SUB_CPU_RATIO, cpu, |p, _, c| p.cpu_rate.map(|r| r / c)),
            (&SUB_CPU_SECONDS, cpu, |p, t, _| Some(cpu_seconds(p, t))),
        ];
        for (desc, key, value) in per_sub {
            let mut ranked = Vec::new();
            for (group, _, members) in &by_sub {
                ranked.push(top(members.iter().copied(), s.top_n_for(group), key));
            }
            for r in ranked {
                emit(out, desc, &r, value, tck, cpus);
            }
        }
        emit_net(&self.io, ctx, s.top_n, out);
        Ok(())
    }
}

impl BuildCollector for ProcessTop {
    type Config = NoConfig;
    fn build(_: NoConfig, ctx: &BuildContext) -> Result<Self> {
        Ok(ProcessTop {
            table: process::table(ctx)?,
            io: process_io::service(ctx)?,
        })
    }
}

inventory::submit! {
    Registration::new::<ProcessTop>(
        "process_top",
        "The top-N processes by CPU, memory and block I/O, host-wide and per subgroup",
        true,
        env!("CARGO_PKG_NAME"),
    )
}
