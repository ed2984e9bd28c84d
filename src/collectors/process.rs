//! Per-process memory and CPU, from the shared process table.
//!
//! One series per process and metric is the most useful and the most
//! expensive thing this exporter can do: a host with 5,000 processes gets
//! 5,000 series per metric, and every exit and start churns them. Hence
//! `per_process_metrics: false` (keep only group and top-N series) and
//! `min_uss_kb` (skip small processes). Series of an exited process vanish
//! at the next scrape; nothing is remembered per pid beyond its life.
//!
//! `herakles_cpu_process_usage_percent` is in percent of one CPU, as `top`
//! shows it: a process busy on four threads reads 400. It is absent on a
//! process's first scrape, when there is no earlier sample to difference.

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, NoConfig, Registration,
    Result, ScrapeContext,
};

use crate::process::parse::FileKind;
use crate::process::{self, ProcessTable};
use std::sync::Arc;

const RSS: Desc = Desc::gauge(
    "herakles_mem_process_rss_bytes",
    "Resident set size of the process.",
);
const PSS: Desc = Desc::gauge(
    "herakles_mem_process_pss_bytes",
    "Proportional set size: private pages plus a share of shared ones (smaps).",
);
const USS: Desc = Desc::gauge(
    "herakles_mem_process_uss_bytes",
    "Unique set size: private pages, freed when the process exits (smaps).",
);
const SWAP: Desc = Desc::gauge(
    "herakles_mem_process_swap_bytes",
    "Swapped-out memory of the process (smaps).",
);
const SMAPS_AGE: Desc = Desc::gauge(
    "herakles_mem_process_smaps_age_seconds",
    "Age of the PSS, USS and swap values of the process; smaps is refreshed under a time budget.",
);
const CPU_PERCENT: Desc = Desc::gauge(
    "herakles_cpu_process_usage_percent",
    "CPU use since the previous scrape, in percent of one CPU (over 100 for multithreaded work).",
);
const CPU_TIME: Desc = Desc::counter(
    "herakles_cpu_process_time_seconds",
    "User plus system CPU time of the process since it started.",
);
const READ_ERRORS: Desc = Desc::counter(
    "herakles_process_read_errors_total",
    "Per-process files that could not be read or parsed (not counting exited processes).",
);
const READ_TIMEOUTS: Desc = Desc::counter(
    "herakles_process_read_timeouts_total",
    "Per-process reads given up on after the read deadline (collector_timeout / 8), by file; the process is left out until the read returns.",
);
const READS_BLOCKED: Desc = Desc::gauge(
    "herakles_process_reads_blocked",
    "Per-process reads given up on that have not returned yet; each holds one thread, and its process is left out of every series.",
);
const SCAN: Desc = Desc::gauge(
    "herakles_process_scan_duration_seconds",
    "Time the last scan of /proc/<pid> took.",
);
const PROCESSES: Desc = Desc::gauge(
    "herakles_processes",
    "Processes seen by the last scan and exported (after search_mode and disable_others).",
);

/// See the module documentation.
pub struct Process {
    table: Arc<ProcessTable>,
}

impl Collector for Process {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let view = self.table.view(ctx);
        let s = &self.table.settings;
        let tck = self.table.host.clk_tck;
        out.single(&SCAN, view.scan_seconds);
        out.single(&PROCESSES, view.procs.len() as f64);
        {
            let mut f = out.family(&READ_ERRORS);
            for k in FileKind::ALL {
                f.sample(&[("file", k.name())], view.errors.get(k) as f64);
            }
        }
        {
            let mut f = out.family(&READ_TIMEOUTS);
            for k in FileKind::ALL {
                f.sample(&[("file", k.name())], view.timeouts.get(k) as f64);
            }
        }
        out.single(&READS_BLOCKED, view.blocked as f64);
        if !s.per_process {
            return Ok(());
        }
        let shown: Vec<_> = view
            .procs
            .iter()
            .filter(|p| p.uss().unwrap_or(p.rss) >= s.min_uss)
            .map(|p| (p, p.pid.to_string()))
            .collect();
        type Get = fn(&process::ProcView, f64) -> Option<f64>;
        let families: [(&Desc, Get); 7] = [
            (&RSS, |p, _| Some(p.rss as f64)),
            (&PSS, |p, _| p.smaps.map(|(m, _)| m.pss as f64)),
            (&USS, |p, _| p.smaps.map(|(m, _)| m.uss as f64)),
            (&SWAP, |p, _| p.smaps.map(|(m, _)| m.swap as f64)),
            (&SMAPS_AGE, |p, _| p.smaps.map(|(_, a)| a.as_secs_f64())),
            (&CPU_PERCENT, |p, _| p.cpu_rate.map(|r| r * 100.0)),
            (&CPU_TIME, |p, tck| {
                Some(p.totals.utime.saturating_add(p.totals.stime) as f64 / tck)
            }),
        ];
        for (desc, get) in families {
            let mut f = out.family(desc);
            for (p, pid) in &shown {
                if let Some(v) = get(p, tck) {
                    let labels = [
                        ("pid", pid.as_str()),
                        ("name", &p.comm),
                        ("group", &p.group),
                        ("subgroup", &p.subgroup),
                    ];
                    f.sample(&labels, v);
                }
            }
        }
        Ok(())
    }
}

impl BuildCollector for Process {
    type Config = NoConfig;
    fn build(_: NoConfig, ctx: &BuildContext) -> Result<Self> {
        Ok(Process {
            table: process::table(ctx)?,
        })
    }
}

inventory::submit! {
    Registration::new::<Process>(
        "process",
        "Per-process RSS, PSS, USS, swap and CPU, labelled with group and subgroup",
        true,
        env!("CARGO_PKG_NAME"),
    )
}
