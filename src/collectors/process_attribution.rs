//! Sums over processes per container, Kubernetes pod, systemd unit and
//! user: "which container is eating memory" without cAdvisor.
//!
//! The process table learns where each process runs from its
//! `/proc/<pid>/cgroup` and uid (see `docs/attribution.md`); here its
//! memory, CPU and I/O are summed per container (`container_id`,
//! `container_runtime`, and `pod_uid` when in a pod), per pod (`pod_uid`,
//! `qos_class`), per unit (`unit`) and per user (`user`), for the
//! dimensions in `attribution_aggregates`. A process counts in each
//! dimension it has: a Docker container's processes are in their
//! container, their `docker-<id>.scope` unit and their user.
//!
//! These are sums over processes, what the processes themselves hold. The
//! kernel's own accounting of the same cgroups, which also counts page
//! cache and kernel memory, is the `cgroup` collector's.
//!
//! With eBPF, the network bytes and block I/O per disk the processes did
//! (what `herakles_net_process_*` and `herakles_io_process_*` count per
//! process) are summed the same way.
//!
//! Counters include what processes that left (exited, moved) did while
//! there, so they never go down; a container, pod, unit or user with no
//! live process left has no series. Processes hidden by `search_mode` or
//! `disable_others` are not counted, as in every other series.

use std::collections::HashMap;
use std::sync::Arc;

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, NoConfig, Registration,
    Result, ScrapeContext,
};

use crate::config::Dimension;
use crate::ebpf::process_io::{self, EntityIo, IoView, ProcessIo};
use crate::process::{self, EntityView, ProcessTable};

/// The families of one dimension.
struct Sums {
    processes: Desc,
    rss: Desc,
    pss: Desc,
    uss: Desc,
    swap: Desc,
    cpu: Desc,
    read: Desc,
    write: Desc,
    net_rx: Desc,
    net_tx: Desc,
    io_bytes: Desc,
    io_ops: Desc,
}

macro_rules! sums {
    ($dim:literal, $what:literal) => {
        Sums {
            processes: Desc::gauge(
                concat!("herakles_", $dim, "_processes"),
                concat!("Live processes of the ", $what, "."),
            ),
            rss: Desc::gauge(
                concat!("herakles_", $dim, "_memory_rss_bytes"),
                concat!("Sum of the RSS of the ", $what, "'s processes."),
            ),
            pss: Desc::gauge(
                concat!("herakles_", $dim, "_memory_pss_bytes"),
                concat!(
                    "Sum of the PSS of the ",
                    $what,
                    "'s processes whose smaps data is known."
                ),
            ),
            uss: Desc::gauge(
                concat!("herakles_", $dim, "_memory_uss_bytes"),
                concat!(
                    "Sum of the USS of the ",
                    $what,
                    "'s processes whose smaps data is known."
                ),
            ),
            swap: Desc::gauge(
                concat!("herakles_", $dim, "_memory_swap_bytes"),
                concat!(
                    "Sum of the swap of the ",
                    $what,
                    "'s processes whose smaps data is known."
                ),
            ),
            cpu: Desc::counter(
                concat!("herakles_", $dim, "_cpu_seconds_total"),
                concat!(
                    "CPU time of the ",
                    $what,
                    "'s processes, including those that left."
                ),
            ),
            read: Desc::counter(
                concat!("herakles_", $dim, "_blkio_read_bytes_total"),
                concat!(
                    "Bytes the ",
                    $what,
                    "'s processes caused to be read from storage, including those that left."
                ),
            ),
            write: Desc::counter(
                concat!("herakles_", $dim, "_blkio_write_bytes_total"),
                concat!(
                    "Bytes the ",
                    $what,
                    "'s processes caused to be written to storage, including those that left."
                ),
            ),
            net_rx: Desc::counter(
                concat!("herakles_", $dim, "_net_rx_bytes_total"),
                concat!(
                    "TCP and UDP bytes the ",
                    $what,
                    "'s processes received, including those that left (eBPF)."
                ),
            ),
            net_tx: Desc::counter(
                concat!("herakles_", $dim, "_net_tx_bytes_total"),
                concat!(
                    "TCP and UDP bytes the ",
                    $what,
                    "'s processes sent, including those that left (eBPF)."
                ),
            ),
            io_bytes: Desc::counter(
                concat!("herakles_", $dim, "_io_bytes_total"),
                concat!(
                    "Bytes of block I/O requests the ",
                    $what,
                    "'s processes submitted to each device, including those that left (eBPF)."
                ),
            ),
            io_ops: Desc::counter(
                concat!("herakles_", $dim, "_io_operations_total"),
                concat!(
                    "Block I/O requests the ",
                    $what,
                    "'s processes submitted to each device, including those that left (eBPF)."
                ),
            ),
        }
    };
}

static CONTAINER: Sums = sums!("container", "container");
static POD: Sums = sums!("pod", "Kubernetes pod");
static UNIT: Sums = sums!("unit", "systemd unit");
static USER: Sums = sums!("user", "user");

fn sums(dim: Dimension) -> &'static Sums {
    match dim {
        Dimension::Container => &CONTAINER,
        Dimension::Pod => &POD,
        Dimension::Unit => &UNIT,
        Dimension::User => &USER,
    }
}

/// See the module documentation.
pub struct ProcessAttribution {
    table: Arc<ProcessTable>,
    io: Arc<ProcessIo>,
}

fn labels(e: &EntityView) -> Vec<(&str, &str)> {
    e.labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

impl Collector for ProcessAttribution {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let view = self.table.view(ctx);
        let io = self.io.view(ctx);
        let tck = self.table.host.clk_tck;
        for &dim in &self.table.settings.aggregates {
            let d = sums(dim);
            let entities: Vec<(&EntityView, Vec<(&str, &str)>)> = view
                .entities
                .iter()
                .filter(|e| e.dim == dim)
                .map(|e| (e, labels(e)))
                .collect();
            type Get = fn(&EntityView) -> f64;
            let rows: [(&Desc, Get); 7] = [
                (&d.processes, |e| e.members as f64),
                (&d.rss, |e| e.rss as f64),
                (&d.pss, |e| e.pss as f64),
                (&d.uss, |e| e.uss as f64),
                (&d.swap, |e| e.swap as f64),
                (&d.read, |e| e.totals.io.read_bytes as f64),
                (&d.write, |e| e.totals.io.write_bytes as f64),
            ];
            for (desc, get) in rows {
                let mut f = out.family(desc);
                for (e, l) in &entities {
                    f.sample(l, get(e));
                }
            }
            {
                let mut f = out.family(&d.cpu);
                for (e, l) in &entities {
                    for (mode, ticks) in [("user", e.totals.utime), ("system", e.totals.stime)] {
                        let mut l = l.clone();
                        l.push(("mode", mode));
                        f.sample(&l, ticks as f64 / tck);
                    }
                }
            }
            if let Some(io) = &io {
                emit_ebpf(d, dim, io, &entities, out);
            }
        }
        Ok(())
    }
}

/// The eBPF sums of `dim`'s entities, labelled as the process table
/// labels them.
fn emit_ebpf(
    d: &Sums,
    dim: Dimension,
    io: &IoView,
    entities: &[(&EntityView, Vec<(&str, &str)>)],
    out: &mut MetricSink,
) {
    let by_id: HashMap<&str, &Vec<(&str, &str)>> =
        entities.iter().map(|(e, l)| (e.id.as_str(), l)).collect();
    let rows: Vec<(&EntityIo, &Vec<(&str, &str)>)> = io
        .entities
        .iter()
        .filter(|e| e.dim == dim)
        .filter_map(|e| Some((e, *by_id.get(&*e.id)?)))
        .collect();
    if io.network {
        for (desc, rx) in [(&d.net_rx, true), (&d.net_tx, false)] {
            let mut f = out.family(desc);
            for (e, l) in &rows {
                let v = if rx { e.net.rx_bytes } else { e.net.tx_bytes };
                f.sample(l, v as f64);
            }
        }
    }
    if io.disk {
        for (desc, bytes) in [(&d.io_bytes, true), (&d.io_ops, false)] {
            let mut f = out.family(desc);
            for (e, l) in &rows {
                for (device, c) in &e.disk {
                    let v = if bytes { c.bytes } else { c.ops };
                    for (direction, v) in [("read", v[0]), ("write", v[1])] {
                        let mut l = (*l).clone();
                        l.extend([("device", &**device), ("direction", direction)]);
                        f.sample(&l, v as f64);
                    }
                }
            }
        }
    }
}

impl BuildCollector for ProcessAttribution {
    type Config = NoConfig;
    fn build(_: NoConfig, ctx: &BuildContext) -> Result<Self> {
        Ok(ProcessAttribution {
            table: process::table(ctx)?,
            io: process_io::service(ctx)?,
        })
    }
}

inventory::submit! {
    Registration::new::<ProcessAttribution>(
        "process_attribution",
        "Memory, CPU and block I/O summed per container, pod, systemd unit and user",
        true,
        env!("CARGO_PKG_NAME"),
    )
}
