//! The kernel's own accounting of each container's, pod's and systemd
//! unit's cgroup: memory in use (with page cache and kernel memory, which
//! no process sum sees), OOM kills, CPU time and throttling, block I/O per
//! disk.
//!
//! The containers, pods and units are the ones the process table found
//! processes in (`attribution_aggregates`; see `docs/attribution.md`), so
//! a cgroup without a live process, or one of a process hidden by
//! `search_mode`, has no series. Each cgroup is located from one of its
//! processes' `/proc/<pid>/cgroup` under `--path.sysfs`, and its files are
//! read once per scrape: six to eight small files per cgroup, on v2 or v1
//! (each family from the hierarchy where its controller is; see
//! `attribution::accounting` for the mapping and where v1 and v2 differ).
//! A family whose controller is enabled in neither hierarchy for that
//! cgroup is absent, as is everything for a process whose cgroups are
//! outside the exporter's cgroup namespace.
//!
//! Counters count the cgroup and everything below it, processes that
//! exited included, since the cgroup was created.

use std::sync::Arc;

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, NoConfig, Registration,
    Result, ScrapeContext,
};

use crate::attribution::accounting::{self, CgroupStats};
use crate::attribution::container;
use crate::attribution::hierarchy::Hierarchy;
use crate::attribution::systemd;
use crate::config::Dimension;
use crate::process::{self, EntityView, ProcessTable};
use crate::util::BlockDevices;

/// The families of one dimension.
struct Families {
    usage: Desc,
    stat: Desc,
    oom: Desc,
    cpu: Desc,
    periods: Desc,
    throttled: Desc,
    throttled_seconds: Desc,
    io_bytes: Desc,
    io_ops: Desc,
}

macro_rules! families {
    ($dim:literal, $what:literal) => {
        Families {
            usage: Desc::gauge(
                concat!("herakles_", $dim, "_cgroup_memory_usage_bytes"),
                concat!(
                    "Memory charged to the ",
                    $what,
                    "'s cgroup: anonymous, page cache, kernel (memory.current, v1 memory.usage_in_bytes)."
                ),
            ),
            stat: Desc::gauge(
                concat!("herakles_", $dim, "_cgroup_memory_stat_bytes"),
                concat!(
                    "Memory of the ",
                    $what,
                    "'s cgroup by type: anon, file (page cache), kernel (memory.stat)."
                ),
            ),
            oom: Desc::counter(
                concat!("herakles_", $dim, "_cgroup_oom_kills_total"),
                concat!(
                    "Processes the OOM killer killed in the ",
                    $what,
                    "'s cgroup (v2: and below it)."
                ),
            ),
            cpu: Desc::counter(
                concat!("herakles_", $dim, "_cgroup_cpu_usage_seconds_total"),
                concat!("CPU time charged to the ", $what, "'s cgroup."),
            ),
            periods: Desc::counter(
                concat!("herakles_", $dim, "_cgroup_cpu_periods_total"),
                concat!(
                    "CFS enforcement periods of the ",
                    $what,
                    "'s cgroup with a CPU quota set."
                ),
            ),
            throttled: Desc::counter(
                concat!("herakles_", $dim, "_cgroup_cpu_throttled_periods_total"),
                concat!(
                    "Enforcement periods in which the ",
                    $what,
                    "'s cgroup was throttled."
                ),
            ),
            throttled_seconds: Desc::counter(
                concat!("herakles_", $dim, "_cgroup_cpu_throttled_seconds_total"),
                concat!("Time the ", $what, "'s cgroup was throttled."),
            ),
            io_bytes: Desc::counter(
                concat!("herakles_", $dim, "_cgroup_io_bytes_total"),
                concat!(
                    "Bytes the ",
                    $what,
                    "'s cgroup read from and wrote to each disk (io.stat, v1 blkio throttle statistics)."
                ),
            ),
            io_ops: Desc::counter(
                concat!("herakles_", $dim, "_cgroup_io_operations_total"),
                concat!(
                    "Read and write requests of the ",
                    $what,
                    "'s cgroup to each disk."
                ),
            ),
        }
    };
}

static CONTAINER: Families = families!("container", "container");
static POD: Families = families!("pod", "Kubernetes pod");
static UNIT: Families = families!("unit", "systemd unit");

/// See the module documentation.
pub struct Cgroup {
    table: Arc<ProcessTable>,
    hierarchy: Hierarchy,
    devices: BlockDevices,
}

/// One cgroup read this scrape, with the labels of its entity.
struct Read<'a> {
    labels: Vec<(&'static str, &'a str)>,
    stats: CgroupStats,
}

impl Cgroup {
    /// The accounting of the cgroup of entity `e`, if it can be located.
    fn read(&self, e: &EntityView, buf: &mut Vec<u8>) -> Option<CgroupStats> {
        let a = e.attribution.as_deref()?;
        if a.identity.outside_namespace {
            return None;
        }
        let dirs = match e.dim {
            Dimension::Container => self.hierarchy.dirs_with(&a.cgroups, |p| {
                container::find(p).container.map(|c| c.cgroup)
            }),
            Dimension::Pod => self
                .hierarchy
                .dirs_with(&a.cgroups, |p| container::find(p).pod.map(|p| p.cgroup)),
            Dimension::Unit => self
                .hierarchy
                .dirs_with(&a.cgroups, |p| systemd::unit(p).map(|u| u.cgroup)),
            Dimension::User => return None,
        };
        Some(accounting::read(&dirs, buf))
    }
}

/// `labels` and then `more`.
fn with<'a>(
    labels: &[(&'static str, &'a str)],
    more: &[(&'static str, &'a str)],
) -> Vec<(&'static str, &'a str)> {
    let mut l = labels.to_vec();
    l.extend_from_slice(more);
    l
}

fn families(dim: Dimension) -> Option<&'static Families> {
    match dim {
        Dimension::Container => Some(&CONTAINER),
        Dimension::Pod => Some(&POD),
        Dimension::Unit => Some(&UNIT),
        Dimension::User => None,
    }
}

impl Collector for Cgroup {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let view = self.table.view(ctx);
        let mut buf = Vec::new();
        for &dim in &self.table.settings.aggregates {
            let Some(f) = families(dim) else { continue };
            let reads: Vec<Read> = view
                .entities
                .iter()
                .filter(|e| e.dim == dim)
                .filter_map(|e| {
                    Some(Read {
                        labels: e.labels.iter().map(|(k, v)| (*k, v.as_str())).collect(),
                        stats: self.read(e, &mut buf)?,
                    })
                })
                .collect();
            self.emit(f, &reads, out);
        }
        Ok(())
    }
}

impl Cgroup {
    fn emit(&self, f: &Families, reads: &[Read], out: &mut MetricSink) {
        {
            let mut usage = out.family(&f.usage);
            for r in reads {
                if let Some(m) = &r.stats.memory {
                    usage.sample(&r.labels, m.current as f64);
                }
            }
        }
        {
            let mut stat = out.family(&f.stat);
            for r in reads {
                if let Some(m) = &r.stats.memory {
                    for (kind, v) in [("anon", m.anon), ("file", m.file), ("kernel", m.kernel)] {
                        if let Some(v) = v {
                            stat.sample(&with(&r.labels, &[("type", kind)]), v as f64);
                        }
                    }
                }
            }
        }
        {
            let mut oom = out.family(&f.oom);
            for r in reads {
                if let Some(n) = r.stats.memory.as_ref().and_then(|m| m.oom_kills) {
                    oom.sample(&r.labels, n as f64);
                }
            }
        }
        type Get = fn(&accounting::Cpu) -> Option<f64>;
        let cpu: [(&Desc, Get); 4] = [
            (&f.cpu, |c| Some(c.usage_ns as f64 / 1e9)),
            (&f.periods, |c| c.periods.map(|n| n as f64)),
            (&f.throttled, |c| c.throttled_periods.map(|n| n as f64)),
            (&f.throttled_seconds, |c| {
                c.throttled_ns.map(|n| n as f64 / 1e9)
            }),
        ];
        for (desc, get) in cpu {
            let mut fam = out.family(desc);
            for r in reads {
                if let Some(v) = r.stats.cpu.as_ref().and_then(get) {
                    fam.sample(&r.labels, v);
                }
            }
        }
        for (desc, bytes) in [(&f.io_bytes, true), (&f.io_ops, false)] {
            let mut fam = out.family(desc);
            for r in reads {
                let Some(io) = &r.stats.io else { continue };
                for d in &io.devices {
                    let device = self.devices.name(d.major, d.minor);
                    let (read, write) = if bytes {
                        (d.read_bytes, d.write_bytes)
                    } else {
                        (d.reads, d.writes)
                    };
                    for (direction, v) in [("read", read), ("write", write)] {
                        let l = with(&r.labels, &[("device", &*device), ("direction", direction)]);
                        fam.sample(&l, v as f64);
                    }
                }
            }
        }
    }
}

impl BuildCollector for Cgroup {
    type Config = NoConfig;
    fn build(_: NoConfig, ctx: &BuildContext) -> Result<Self> {
        let sysfs = &ctx.paths().sysfs;
        Ok(Cgroup {
            table: process::table(ctx)?,
            hierarchy: Hierarchy::detect(sysfs),
            devices: BlockDevices::new(sysfs),
        })
    }
}

inventory::submit! {
    Registration::new::<Cgroup>(
        "cgroup",
        "The kernel's memory, CPU and block I/O accounting of each container, pod and systemd unit cgroup",
        true,
        env!("CARGO_PKG_NAME"),
    )
}
