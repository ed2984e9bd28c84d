//! Per-process network and block I/O counted by eBPF programs
//! (`src/ebpf/process_io/`, `bpf/process_io.bpf.c`), and the programs'
//! own cost.
//!
//! Unlike `/proc/<pid>/io`, which counts bytes a process asked the page
//! cache for, these count what reached a socket or a block device, per
//! device, and include UDP and TCP separately from file I/O. See
//! `docs/ebpf.md` for what each hook sees and who is credited.
//!
//! The per-process series follow `per_process_metrics`, `min_uss_kb`,
//! `max_process_series` and the group filters like the other process
//! collectors (the same processes have them); a process appears once it
//! did some I/O, and its series vanish when it exits (its subgroup's
//! `herakles_group_net_*_bytes_total` keep its bytes). When the eBPF part
//! behind a series cannot run, the series are absent and `/health` says
//! why.

use std::sync::Arc;

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, Registration, Result,
    ScrapeContext,
};

use crate::ebpf::process_io::{self, IoView, Net, ProcIo, ProcessIo, ProcessIoConfig};
use crate::ebpf::{PartState, Status};

const NET_BYTES: Desc = Desc::counter(
    "herakles_net_process_bytes_total",
    "TCP and UDP payload bytes the process sent (tx) or received (rx), from eBPF.",
);
const NET_PACKETS: Desc = Desc::counter(
    "herakles_net_process_packets_total",
    "Socket messages the process sent or received: datagrams for UDP, send/receive calls for TCP (eBPF).",
);
const NET_DROPPED: Desc = Desc::counter(
    "herakles_net_process_dropped_total",
    "Packets the kernel dropped on sockets last used by the process (kfree_skb, eBPF).",
);
const IO_BYTES: Desc = Desc::counter(
    "herakles_io_process_bytes_total",
    "Bytes of block I/O requests the process submitted to the device, from eBPF.",
);
const IO_OPS: Desc = Desc::counter(
    "herakles_io_process_iops_total",
    "Block I/O requests the process submitted to the device, from eBPF.",
);
const PROCESSED: Desc = Desc::counter(
    "herakles_ebpf_events_processed_total",
    "Kernel events the eBPF programs counted.",
);
const DROPPED: Desc = Desc::counter(
    "herakles_ebpf_events_dropped_total",
    "Kernel events the eBPF programs could not record (map full, ring buffer full).",
);
const MAPS: Desc = Desc::gauge(
    "herakles_ebpf_maps_count",
    "BPF maps the exporter's programs hold.",
);
const PART_STATE: Desc = Desc::gauge(
    "herakles_ebpf_part_state",
    "1 for the state each eBPF part (network, disk, tcp_tracking) is in: active, disabled \
     (compiled out or switched off by configuration) or failed (/health says why); 0 for the others.",
);
const CPU: Desc = Desc::counter(
    "herakles_ebpf_cpu_seconds_total",
    "CPU time spent in the exporter's eBPF programs (kernel run-time statistics; only with cpu_stats: true).",
);

/// See the module documentation.
pub struct EbpfIo {
    io: Arc<ProcessIo>,
    status: Arc<Status>,
}

/// Every part's state, so that an alert can tell a part that failed from
/// one switched off on purpose (both leave its series absent).
fn emit_part_states(status: &Status, out: &mut MetricSink) {
    let mut f = out.family(&PART_STATE);
    for (part, state) in status.parts() {
        let now = match state {
            PartState::Active { .. } => "active",
            PartState::Disabled { .. } => "disabled",
            PartState::Failed { .. } => "failed",
        };
        for name in ["active", "disabled", "failed"] {
            f.sample(
                &[("part", part), ("state", name)],
                f64::from(u8::from(name == now)),
            );
        }
    }
}

fn emit_processes(view: &IoView, out: &mut MetricSink) {
    // The processes the process table gives per-process series.
    let shown: Vec<&ProcIo> = view.procs.iter().filter(|p| p.shown).collect();
    if view.network {
        type Get = fn(&Net) -> [u64; 2];
        let rows: [(&Desc, Get); 2] = [
            (&NET_BYTES, |n| [n.rx_bytes, n.tx_bytes]),
            (&NET_PACKETS, |n| [n.rx_packets, n.tx_packets]),
        ];
        for (desc, get) in rows {
            let mut f = out.family(desc);
            for p in &shown {
                if let Some(n) = &p.net {
                    let pid = p.pid.to_string();
                    let [a, b, c, d] = labels(p, &pid);
                    let [rx, tx] = get(n);
                    f.sample(&[a, b, c, d, ("direction", "rx")], rx as f64);
                    f.sample(&[a, b, c, d, ("direction", "tx")], tx as f64);
                }
            }
        }
        let mut f = out.family(&NET_DROPPED);
        for p in &shown {
            if let Some(n) = &p.net {
                let pid = p.pid.to_string();
                f.sample(&labels(p, &pid), n.drops as f64);
            }
        }
    }
    if view.disk {
        for (desc, bytes) in [(&IO_BYTES, true), (&IO_OPS, false)] {
            let mut f = out.family(desc);
            for p in &shown {
                let pid = p.pid.to_string();
                let l = labels(p, &pid);
                for (device, d) in &p.io {
                    let v = if bytes { d.bytes } else { d.ops };
                    for (dir, value) in [("read", v[0]), ("write", v[1])] {
                        f.sample(
                            &[
                                l[0],
                                l[1],
                                ("device", device),
                                l[2],
                                l[3],
                                ("direction", dir),
                            ],
                            value as f64,
                        );
                    }
                }
            }
        }
    }
}

fn labels<'a>(p: &'a process_io::ProcIo, pid: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("pid", pid),
        ("comm", &p.comm),
        ("group", &p.group),
        ("subgroup", &p.subgroup),
    ]
}

impl Collector for EbpfIo {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        emit_part_states(&self.status, out);
        let Some(view) = self.io.view(ctx) else {
            return Ok(());
        };
        let s = view.stats;
        out.single(&PROCESSED, s.processed as f64);
        out.single(&DROPPED, s.dropped as f64);
        out.single(&MAPS, s.maps as f64);
        if let Some(cpu) = s.cpu_seconds {
            out.single(&CPU, cpu);
        }
        if self.io.per_process() {
            emit_processes(&view, out);
        }
        Ok(())
    }

    fn shutdown(&self) {
        self.io.shutdown();
    }
}

impl BuildCollector for EbpfIo {
    type Config = ProcessIoConfig;
    /// The section holds the service's map sizes: the service reads them
    /// from the configuration ([`process_io::Settings`]), the same whichever
    /// collector asks for it first, so `build` has no use for them.
    fn build(_: ProcessIoConfig, ctx: &BuildContext) -> Result<Self> {
        Ok(EbpfIo {
            io: process_io::service(ctx)?,
            status: crate::ebpf::status(ctx),
        })
    }
}

inventory::submit! {
    Registration::new::<EbpfIo>(
        "ebpf_io",
        "Per-process network and block I/O from eBPF, and the programs' own cost",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::example_config;

    #[test]
    fn example_config_loads() {
        let config: ProcessIoConfig = example_config("ebpf_io");
        assert_eq!(config.max_processes, 20480);
        assert_eq!(config.exit_buffer_kb, 2048);
    }
}
