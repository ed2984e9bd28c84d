//! Per-process network and block I/O from `bpf/process_io.bpf.c`.
//!
//! [`ProcessIo`] is one long-lived service (`BuildContext::service`) that
//! loads the programs once, attaches the parts switched on
//! (`enable_ebpf_network` → "network", `enable_ebpf_disk` → "disk"), and
//! records each part's state in the shared [`Status`](super::Status). It
//! never fails the exporter's build: a part that cannot run is `Failed` with
//! a reason and its series are absent.
//!
//! Once per scrape ([`ProcessIo::view`]) it reads the live per-process
//! counters from the BPF maps, joins them with the process table (pid →
//! comm, group, subgroup) and adds to each subgroup the final counters of
//! members that exited, which the kernel side hands over through a ring
//! buffer when a process's last thread exits. A poller thread drains that
//! ring buffer every [`POLL`] so it cannot overflow between scrapes; the
//! scrape drains it too, after reading the maps, so a process that exits
//! mid-scrape is counted once (its final record supersedes its live entry).
//!
//! Map sizes come from the `ebpf_io` collector's section
//! ([`ProcessIoConfig`]), read from the global config whichever collector
//! builds the service first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herakles_core::{BuildContext, Result, ScrapeContext};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PartState;
use crate::config::Config;
use crate::process::{self, ProcessTable};

/// Part names in `/health` and `check --ebpf`.
pub const NETWORK: &str = "network";
pub const DISK: &str = "disk";

/// How often the poller thread drains the exit ring buffer.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The `ebpf_io` collector's section: sizes of the kernel-side maps. The
/// maps are LRU hashes, so these bound memory however many processes run;
/// past them the least recently active process loses its counters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessIoConfig {
    /// Processes tracked at once, per map (network and block I/O each):
    /// about 48 bytes (network) and 160 bytes (block) per entry. Entries of
    /// exited processes are removed when they exit, so this is the number of
    /// live processes that do I/O, with headroom.
    #[schemars(range(min = 1, max = 4194304))]
    pub max_processes: u32,
    /// Ring buffer for the final counters of exiting processes, in KiB
    /// (rounded up to a power of two); 232 bytes per exit.
    /// Drained every 100 ms, so the default holds about 4,500 exits in
    /// that time; an exit that finds it full is counted in
    /// herakles_ebpf_events_dropped_total.
    #[schemars(range(min = 4, max = 262144))]
    pub exit_buffer_kb: u32,
    /// Switch on the kernel's BPF run-time statistics (BPF_ENABLE_STATS)
    /// while the exporter runs, for herakles_ebpf_cpu_seconds_total. Off by
    /// default because the switch is host-wide and not free: every run of
    /// every BPF program on the host then reads the clock twice. Measured on
    /// a 2-core VM (docs/benchmarks.md), a 64-byte UDP storm lost about 4%
    /// with an empty program on its tracepoints and 13% with statistics on.
    pub cpu_stats: bool,
}

impl Default for ProcessIoConfig {
    fn default() -> ProcessIoConfig {
        ProcessIoConfig {
            max_processes: 10240,
            exit_buffer_kb: 1024,
            cpu_stats: false,
        }
    }
}

/// Network counters of one process (or sum of processes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Net {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub drops: u64,
}

impl Net {
    fn add(&mut self, o: &Net) {
        self.rx_bytes = self.rx_bytes.saturating_add(o.rx_bytes);
        self.tx_bytes = self.tx_bytes.saturating_add(o.tx_bytes);
        self.rx_packets = self.rx_packets.saturating_add(o.rx_packets);
        self.tx_packets = self.tx_packets.saturating_add(o.tx_packets);
        self.drops = self.drops.saturating_add(o.drops);
    }
}

/// Block I/O of one process on one device; index 0 read, 1 write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevIo {
    /// The kernel's `MKDEV(major, minor)`: `(major << 20) | minor`.
    pub dev: u64,
    pub bytes: [u64; 2],
    pub ops: [u64; 2],
}

/// One process's counters as the collectors see them.
#[derive(Clone, Debug)]
pub struct ProcIo {
    pub pid: u32,
    pub comm: String,
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    /// `None` when the network part is off or the process did no socket I/O.
    pub net: Option<Net>,
    /// (device name, counters), empty when the disk part is off or the
    /// process did no block I/O.
    pub io: Vec<(Arc<str>, DevIo)>,
}

/// Network totals of one subgroup, live members plus exited ones.
#[derive(Clone, Debug)]
pub struct GroupNet {
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    pub net: Net,
}

/// Self-monitoring counters of the programs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub processed: u64,
    pub dropped: u64,
    pub maps: u64,
    /// Present while run-time statistics are on (`cpu_stats`).
    pub cpu_seconds: Option<f64>,
}

/// Everything one scrape exports, after search_mode/disable_others.
#[derive(Debug, Default)]
pub struct IoView {
    pub network: bool,
    pub disk: bool,
    pub procs: Vec<ProcIo>,
    pub groups: Vec<GroupNet>,
    pub stats: Stats,
}

/// Raw map contents of one scrape, keyed by tgid.
#[derive(Debug, Default)]
pub struct Raw {
    pub net: HashMap<u32, Net>,
    pub io: HashMap<u32, Vec<DevIo>>,
    /// Final counters of processes that exited, in arrival order.
    pub exited: Vec<Exited>,
    pub stats: Stats,
}

/// What the kernel hands over when a process's last thread exits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exited {
    pub tgid: u32,
    pub comm: String,
    pub net: Option<Net>,
    pub io: Vec<DevIo>,
}

/// Decode an `exit_record` (`bpf/process_io.bpf.c`); `None` if short.
pub fn parse_exit_record(b: &[u8]) -> Option<Exited> {
    const NET: usize = 24;
    const IO: usize = NET + 40;
    const LEN: usize = IO + 4 * 8 + 4 * 16 + 4 * 16;
    if b.len() < LEN {
        return None;
    }
    let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
    let comm = &b[8..24];
    let end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    let net = (b[4] != 0).then(|| Net {
        rx_bytes: u64_at(NET),
        tx_bytes: u64_at(NET + 8),
        rx_packets: u64_at(NET + 16),
        tx_packets: u64_at(NET + 24),
        drops: u64_at(NET + 32),
    });
    let io = if b[5] != 0 {
        parse_io(&b[IO..LEN])
    } else {
        Vec::new()
    };
    Some(Exited {
        tgid: u32_at(0),
        comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
        net,
        io,
    })
}

/// Decode a `struct io_counts`: four device slots, used ones only.
pub fn parse_io(b: &[u8]) -> Vec<DevIo> {
    let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
    if b.len() < 160 {
        return Vec::new();
    }
    (0..4)
        .map(|i| DevIo {
            dev: u64_at(i * 8),
            bytes: [u64_at(32 + i * 16), u64_at(32 + i * 16 + 8)],
            ops: [u64_at(96 + i * 16), u64_at(96 + i * 16 + 8)],
        })
        .filter(|d| d.dev != 0)
        .collect()
}

/// Decode a `struct net_counts`.
pub fn parse_net(b: &[u8]) -> Option<Net> {
    let u64_at = |o: usize| Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?));
    Some(Net {
        rx_bytes: u64_at(0)?,
        tx_bytes: u64_at(8)?,
        rx_packets: u64_at(16)?,
        tx_packets: u64_at(24)?,
        drops: u64_at(32)?,
    })
}

/// `MAJ:MIN` of a kernel `MKDEV` value.
pub fn major_minor(dev: u64) -> (u64, u64) {
    (dev >> 20, dev & 0xfffff)
}

/// The `DEVNAME=` of a `/sys/dev/block/MAJ:MIN/uevent` file.
pub fn devname_from_uevent(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

/// Per-subgroup network totals kept between scrapes.
#[derive(Default)]
struct Groups {
    /// Final counters of members that exited.
    exited: HashMap<(Arc<str>, Arc<str>), Net>,
    /// The last totals exported, so a member briefly missing from both the
    /// process table and the exit records (it exited between the /proc scan
    /// and our map read) never makes a counter go down.
    last: HashMap<(Arc<str>, Arc<str>), Net>,
    /// tgid → (group, subgroup) of processes seen in the last scrape, for
    /// classifying their exit records after /proc has forgotten them.
    known: HashMap<u32, (Arc<str>, Arc<str>)>,
}

/// The loader service; see the module documentation.
pub struct ProcessIo {
    table: Arc<ProcessTable>,
    classifier: Arc<crate::classify::Classifier>,
    loader: imp::Loader,
    groups: Arc<Mutex<Groups>>,
    devices: Mutex<HashMap<u64, Arc<str>>>,
    sysfs: std::path::PathBuf,
}

/// The exporter's one [`ProcessIo`], loading the programs on first request.
pub fn service(ctx: &BuildContext) -> Result<Arc<ProcessIo>> {
    service_sized(ctx, None)
}

/// [`service`], with the map sizes of the `ebpf_io` section when the
/// caller has them (otherwise they are read from the global config).
pub fn service_sized(ctx: &BuildContext, sizes: Option<ProcessIoConfig>) -> Result<Arc<ProcessIo>> {
    let table = process::table(ctx)?;
    let classifier = process::classifier(ctx)?;
    let status = super::status(ctx);
    ctx.service(|ctx| {
        let config = ctx.globals::<Config>().cloned().unwrap_or_default();
        let sizes = sizes
            .or_else(|| {
                config
                    .collectors
                    .0
                    .get("ebpf_io")
                    .and_then(|s| s.config.as_any().downcast_ref::<ProcessIoConfig>().cloned())
            })
            .unwrap_or_default();
        let groups = Arc::new(Mutex::new(Groups::default()));
        let fold = {
            let groups = groups.clone();
            let classifier = classifier.clone();
            let table = table.clone();
            move |records: Vec<Exited>| fold_exited(&groups, &classifier, &table, records)
        };
        let loader = imp::Loader::start(&config, ctx, &sizes, &status, Box::new(fold));
        Ok(ProcessIo {
            table,
            classifier,
            loader,
            groups,
            devices: Mutex::default(),
            sysfs: ctx.paths().sysfs.clone(),
        })
    })
}

/// Add exit records to their subgroups' carried totals.
fn fold_exited(
    groups: &Mutex<Groups>,
    classifier: &crate::classify::Classifier,
    table: &ProcessTable,
    records: Vec<Exited>,
) {
    let mut g = groups.lock().unwrap_or_else(|e| e.into_inner());
    for r in records {
        // Forgotten on every exit, network or not: the pid is free now, and
        // a process that gets it next must not inherit this one's group.
        let known = g.known.remove(&r.tgid);
        let Some(net) = r.net else { continue };
        let key = match known {
            Some(k) => k,
            // Lived and died between two scrapes: only its comm is left.
            None => {
                let c = classifier.classify(&r.comm, &r.comm, "");
                (c.group, c.subgroup)
            }
        };
        if table.settings.exported(&key.0) {
            g.exited.entry(key).or_default().add(&net);
        }
    }
}

/// A scrape's view, shared by every collector reading it.
struct Shared(Option<Arc<IoView>>);

impl ProcessIo {
    /// Whether per-process series are wanted (`per_process_metrics`).
    pub fn per_process(&self) -> bool {
        self.table.settings.per_process
    }

    /// Whether any part runs.
    pub fn active(&self) -> bool {
        self.loader.active()
    }

    /// The tgids in the network and block maps now, for tests and the
    /// bench to check that exited processes are gone.
    pub fn tracked(&self) -> Option<(Vec<u32>, Vec<u32>)> {
        let raw = self.read()?;
        Some((
            raw.net.keys().copied().collect(),
            raw.io.keys().copied().collect(),
        ))
    }

    /// The maps' contents with this read's exit records folded into the
    /// group totals (they supersede the live entries read just before).
    fn read(&self) -> Option<Raw> {
        let mut raw = self.loader.read()?;
        let exited = std::mem::take(&mut raw.exited);
        for e in &exited {
            raw.net.remove(&e.tgid);
            raw.io.remove(&e.tgid);
        }
        fold_exited(&self.groups, &self.classifier, &self.table, exited);
        Some(raw)
    }

    /// This scrape's view, computed by the first collector that asks;
    /// `None` when no part runs.
    pub fn view(&self, ctx: &ScrapeContext) -> Option<Arc<IoView>> {
        ctx.shared(|ctx| Shared(self.compute(ctx).map(Arc::new)))
            .0
            .clone()
    }

    fn compute(&self, ctx: &ScrapeContext) -> Option<IoView> {
        let procs = self.table.view(ctx);
        let raw = self.read()?;
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());

        let mut out = Vec::new();
        let mut live: HashMap<(Arc<str>, Arc<str>), Net> = HashMap::new();
        let mut known = HashMap::new();
        for p in &procs.procs {
            let net = raw.net.get(&p.pid).copied();
            let io = raw.io.get(&p.pid);
            if net.is_none() && io.is_none() {
                continue;
            }
            known.insert(p.pid, (p.group.clone(), p.subgroup.clone()));
            if let Some(n) = &net {
                live.entry((p.group.clone(), p.subgroup.clone()))
                    .or_default()
                    .add(n);
            }
            let io = io
                .map(|v| v.iter().map(|d| (self.device(d.dev), *d)).collect())
                .unwrap_or_default();
            out.push(ProcIo {
                pid: p.pid,
                comm: p.comm.clone(),
                group: p.group.clone(),
                subgroup: p.subgroup.clone(),
                net,
                io,
            });
        }
        // Processes gone from /proc whose exit record has not arrived yet
        // keep their group for when it does.
        for (pid, k) in std::mem::take(&mut g.known) {
            if raw.net.contains_key(&pid) && !known.contains_key(&pid) {
                known.insert(pid, k);
            }
        }
        g.known = known;
        let mut totals = g.exited.clone();
        for (k, n) in live {
            totals.entry(k).or_default().add(&n);
        }
        let mut groups: Vec<GroupNet> = Vec::with_capacity(totals.len());
        for (k, mut n) in totals {
            let last = g.last.entry(k.clone()).or_default();
            n.rx_bytes = n.rx_bytes.max(last.rx_bytes);
            n.tx_bytes = n.tx_bytes.max(last.tx_bytes);
            *last = n;
            groups.push(GroupNet {
                group: k.0,
                subgroup: k.1,
                net: n,
            });
        }
        groups.sort_by(|a, b| (&a.group, &a.subgroup).cmp(&(&b.group, &b.subgroup)));
        Some(IoView {
            network: self.loader.network(),
            disk: self.loader.disk(),
            procs: out,
            groups,
            stats: raw.stats,
        })
    }

    /// The block device name of `dev` (`vda`), from sysfs, cached; `MAJ:MIN`
    /// when sysfs does not know it.
    fn device(&self, dev: u64) -> Arc<str> {
        let mut cache = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(dev)
            .or_insert_with(|| {
                let (major, minor) = major_minor(dev);
                let path = self.sysfs.join(format!("dev/block/{major}:{minor}/uevent"));
                // A uevent is a few short lines.
                herakles_core::read_text(path, 64 << 10)
                    .ok()
                    .and_then(|t| devname_from_uevent(&t).map(Arc::from))
                    .unwrap_or_else(|| Arc::from(format!("{major}:{minor}")))
            })
            .clone()
    }

    /// Detach the programs and free the maps; later views are `None`.
    pub fn shutdown(&self) {
        self.loader.shutdown();
    }
}

/// State of a part the config switched off or the build left out.
fn off(config: &Config, ctx: &BuildContext, enabled: bool, switch: &str) -> Option<PartState> {
    super::preflight(config, ctx.paths(), enabled, switch).err()
}

#[cfg(not(feature = "ebpf"))]
mod imp {
    use super::*;

    /// Without the `ebpf` feature nothing loads; preflight says why.
    pub struct Loader;

    impl Loader {
        pub fn start(
            config: &Config,
            ctx: &BuildContext,
            _: &ProcessIoConfig,
            status: &super::super::Status,
            _: Box<dyn Fn(Vec<Exited>) + Send + Sync>,
        ) -> Loader {
            for (part, on, switch) in [
                (NETWORK, config.enable_ebpf_network, "enable_ebpf_network"),
                (DISK, config.enable_ebpf_disk, "enable_ebpf_disk"),
            ] {
                if let Some(s) = off(config, ctx, on, switch) {
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
        pub fn shutdown(&self) {}
    }
}

#[cfg(feature = "ebpf")]
mod imp {
    use std::mem::MaybeUninit;
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::JoinHandle;

    use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
    use libbpf_rs::{
        Link, MapCore, MapFlags, MapHandle, OpenObject, RingBuffer, RingBufferBuilder,
    };

    use super::super::Status;
    use super::*;

    #[allow(clippy::all, dead_code, non_camel_case_types, unused_imports)]
    mod skel {
        include!(concat!(env!("OUT_DIR"), "/process_io.skel.rs"));
    }
    use skel::{ProcessIoSkel, ProcessIoSkelBuilder};

    type Fold = Box<dyn Fn(Vec<Exited>) + Send + Sync>;
    /// Each attempted part and how it went.
    type Reports = Vec<(&'static str, PartState)>;

    /// The exit ring buffer and the records its callback collected.
    struct Ring {
        ring: RingBuffer<'static>,
        pending: Arc<Mutex<Vec<Exited>>>,
    }

    impl Ring {
        /// Consume what the kernel wrote; the records it held.
        fn drain(&self) -> Vec<Exited> {
            let _ = self.ring.consume();
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
        }
    }

    struct Loaded {
        // Field order is drop order: links detach before the object closes.
        _links: Vec<Link>,
        skel: ProcessIoSkel<'static>,
        ring: Arc<Mutex<Ring>>,
        stop: Arc<AtomicBool>,
        poller: Option<JoinHandle<()>>,
        /// BPF_ENABLE_STATS: run-time accounting lasts while this fd is open.
        /// Holds BPF run-time statistics on (`cpu_stats`) while it lives.
        stats_fd: Option<OwnedFd>,
        network: bool,
        disk: bool,
    }

    impl Drop for Loaded {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.poller.take() {
                let _ = t.join();
            }
        }
    }

    pub struct Loader {
        loaded: Mutex<Option<Loaded>>,
    }

    impl Loader {
        pub fn start(
            config: &Config,
            ctx: &BuildContext,
            sizes: &ProcessIoConfig,
            status: &Status,
            fold: Fold,
        ) -> Loader {
            let net_off = off(
                config,
                ctx,
                config.enable_ebpf_network,
                "enable_ebpf_network",
            );
            let disk_off = off(config, ctx, config.enable_ebpf_disk, "enable_ebpf_disk");
            let loaded = if net_off.is_some() && disk_off.is_some() {
                None
            } else {
                match load(sizes, net_off.is_none(), disk_off.is_none(), fold) {
                    Ok((l, reports)) => {
                        for (part, state) in reports {
                            status.set(part, state);
                        }
                        (l.network || l.disk).then_some(l)
                    }
                    Err(reason) => {
                        for (part, o) in [(NETWORK, &net_off), (DISK, &disk_off)] {
                            if o.is_none() {
                                let reason = reason.clone();
                                status.set(part, PartState::Failed { reason });
                            }
                        }
                        None
                    }
                }
            };
            for (part, o) in [(NETWORK, net_off), (DISK, disk_off)] {
                if let Some(s) = o {
                    status.set(part, s);
                }
            }
            Loader {
                loaded: Mutex::new(loaded),
            }
        }

        fn with<T>(&self, f: impl FnOnce(&Loaded) -> T) -> Option<T> {
            let l = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            l.as_ref().map(f)
        }

        pub fn active(&self) -> bool {
            self.with(|_| ()).is_some()
        }
        pub fn network(&self) -> bool {
            self.with(|l| l.network).unwrap_or(false)
        }
        pub fn disk(&self) -> bool {
            self.with(|l| l.disk).unwrap_or(false)
        }

        /// Read the maps, then drain the exit ring (in that order: see the
        /// module documentation), holding the ring's lock throughout so the
        /// poller cannot take records in between.
        pub fn read(&self) -> Option<Raw> {
            self.with(|l| {
                let ring = l.ring.lock().unwrap_or_else(|e| e.into_inner());
                let maps = &l.skel.maps;
                let mut raw = Raw::default();
                if l.network {
                    for (k, v) in entries(&maps.net_stats) {
                        if let (Some(k), Some(n)) = (tgid(&k), parse_net(&v)) {
                            raw.net.insert(k, n);
                        }
                    }
                }
                if l.disk {
                    for (k, v) in entries(&maps.io_stats) {
                        if let Some(k) = tgid(&k) {
                            raw.io.insert(k, parse_io(&v));
                        }
                    }
                }
                raw.exited = ring.drain();
                raw.stats = stats(l);
                raw
            })
        }

        pub fn shutdown(&self) {
            let l = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(l);
        }
    }

    fn tgid(k: &[u8]) -> Option<u32> {
        Some(u32::from_ne_bytes(k.get(..4)?.try_into().ok()?))
    }

    /// Every (key, value) of a hash map. Keys are listed first and looked
    /// up one by one: an entry deleted in between is simply skipped.
    fn entries(map: &dyn MapCore) -> Vec<(Vec<u8>, Vec<u8>)> {
        map.keys()
            .filter_map(|k| {
                let v = map.lookup(&k, MapFlags::ANY).ok()??;
                Some((k, v))
            })
            .collect()
    }

    fn stats(l: &Loaded) -> Stats {
        let mut s = Stats {
            maps: l.skel.object().maps().count() as u64,
            ..Stats::default()
        };
        for (index, slot) in [(0u32, &mut s.processed), (1, &mut s.dropped)] {
            if let Ok(Some(per_cpu)) = l
                .skel
                .maps
                .stats
                .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)
            {
                *slot = per_cpu
                    .iter()
                    .filter_map(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
                    .sum();
            }
        }
        if l.stats_fd.is_some() {
            let ns: u64 = l
                .skel
                .object()
                .progs()
                .map(|p| run_time_ns(p.as_fd()))
                .sum();
            s.cpu_seconds = Some(ns as f64 / 1e9);
        }
        s
    }

    /// Nanoseconds the program has run since BPF_ENABLE_STATS was turned on.
    fn run_time_ns(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        // SAFETY: `info` is a bpf_prog_info of `len` bytes with every
        // pointer field zero, so the kernel writes only into `info`.
        let ret = unsafe {
            libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len)
        };
        if ret == 0 {
            info.run_time_ns
        } else {
            0
        }
    }

    /// Turn on run-time accounting of BPF programs for as long as the fd
    /// lives; `None` if the kernel refuses (then the cpu seconds are absent).
    fn enable_stats() -> Option<OwnedFd> {
        // SAFETY: plain syscall wrapper; a non-negative return is a new fd
        // we own.
        let fd = unsafe {
            libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
        };
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Open, size, load and attach. Drops need a kfree_skb with the `rx_sk`
    /// argument (6.12+): if the object does not load with them, it is loaded
    /// again without, and the network part says so.
    fn load(
        sizes: &ProcessIoConfig,
        network: bool,
        disk: bool,
        fold: Fold,
    ) -> std::result::Result<(Loaded, Reports), String> {
        let mut drop_error = None;
        let attempt = |drops: bool| -> std::result::Result<ProcessIoSkel<'static>, String> {
            // The skeleton borrows its object storage for as long as it
            // lives; one leak per load attempt (a few hundred bytes, at
            // start-up only) gives it a 'static home.
            let storage: &'static mut MaybeUninit<OpenObject> =
                Box::leak(Box::new(MaybeUninit::uninit()));
            let mut open = ProcessIoSkelBuilder::default()
                .open(storage)
                .map_err(|e| format!("opening the BPF object: {e}"))?;
            let m = &mut open.maps;
            let size = |r: libbpf_rs::Result<()>| r.map_err(|e| format!("sizing maps: {e}"));
            size(m.net_stats.set_max_entries(sizes.max_processes.max(1)))?;
            size(m.io_stats.set_max_entries(sizes.max_processes.max(1)))?;
            let ring = (sizes.exit_buffer_kb.max(4) as usize * 1024).next_power_of_two();
            size(m.exits.set_max_entries(ring as u32))?;
            if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
                ro.track_drops = network && drops;
            }
            let p = &mut open.progs;
            p.on_send.set_autoload(network);
            p.on_recv.set_autoload(network);
            p.on_drop.set_autoload(network && drops);
            p.on_io_start.set_autoload(disk);
            p.on_backmerge.set_autoload(disk);
            p.on_frontmerge.set_autoload(disk);
            open.load()
                .map_err(|e| format!("loading the BPF programs: {e}"))
        };
        let skel = match attempt(network) {
            Ok(s) => s,
            Err(e) if network => {
                drop_error = Some(e);
                attempt(false)?
            }
            Err(e) => return Err(e),
        };
        let drops = network && drop_error.is_none();
        let mut reports = Vec::new();
        let mut links = Vec::new();
        let progs = &skel.progs;
        let mut part = |name: &'static str, on: bool, list: Vec<(&libbpf_rs::ProgramMut, &str)>| {
            if !on {
                return false;
            }
            let mut got = Vec::new();
            for (prog, hook) in &list {
                match prog.attach() {
                    Ok(l) => got.push(l),
                    Err(e) => {
                        let reason = format!("attaching {hook}: {e}");
                        reports.push((name, PartState::Failed { reason }));
                        return false;
                    }
                }
            }
            links.extend(got);
            let hooks: Vec<&str> = list.iter().map(|(_, h)| *h).collect();
            let mut detail = hooks.join(", ");
            if name == NETWORK {
                if let Some(e) = &drop_error {
                    detail.push_str(&format!("; drops unavailable ({e})"));
                }
            }
            reports.push((name, PartState::Active { detail }));
            true
        };
        let mut net_list = vec![
            (&progs.on_send, "tp_btf/sock_send_length"),
            (&progs.on_recv, "tp_btf/sock_recv_length"),
        ];
        if drops {
            net_list.push((&progs.on_drop, "tp_btf/kfree_skb"));
        }
        let network = part(NETWORK, network, net_list);
        let disk = part(
            DISK,
            disk,
            vec![
                (&progs.on_io_start, "tp_btf/block_io_start"),
                (&progs.on_backmerge, "tp_btf/block_bio_backmerge"),
                (&progs.on_frontmerge, "tp_btf/block_bio_frontmerge"),
            ],
        );
        if network || disk {
            match progs.on_exit.attach() {
                Ok(l) => links.push(l),
                Err(e) => {
                    // Without exit cleanup the maps would fill with dead
                    // processes: better no data than wrong data.
                    return Err(format!("attaching tp_btf/sched_process_exit: {e}"));
                }
            }
        }
        let pending = Arc::new(Mutex::new(Vec::new()));
        let ring = {
            let handle = MapHandle::try_from(&skel.maps.exits)
                .map_err(|e| format!("exit ring buffer: {e}"))?;
            let sink = pending.clone();
            let mut b = RingBufferBuilder::new();
            b.add(&handle, move |data: &[u8]| {
                if let Some(r) = parse_exit_record(data) {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                }
                0
            })
            .map_err(|e| format!("exit ring buffer: {e}"))?;
            b.build().map_err(|e| format!("exit ring buffer: {e}"))?
        };
        let ring = Arc::new(Mutex::new(Ring { ring, pending }));
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (ring, stop) = (ring.clone(), stop.clone());
            std::thread::Builder::new()
                .name("ebpf-exits".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let records = ring.lock().unwrap_or_else(|e| e.into_inner()).drain();
                        if !records.is_empty() {
                            fold(records);
                        }
                        std::thread::sleep(POLL);
                    }
                })
                .map_err(|e| format!("starting the exit poller: {e}"))?
        };
        Ok((
            Loaded {
                _links: links,
                skel,
                ring,
                stop,
                poller: Some(poller),
                stats_fd: if sizes.cpu_stats {
                    enable_stats()
                } else {
                    None
                },
                network,
                disk,
            },
            reports,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tgid: u32, comm: &[u8], net: Option<[u64; 5]>, io: Option<DevIo>) -> Vec<u8> {
        let mut b = vec![0u8; 24 + 40 + 160];
        b[..4].copy_from_slice(&tgid.to_ne_bytes());
        b[8..8 + comm.len()].copy_from_slice(comm);
        if let Some(n) = net {
            b[4] = 1;
            for (i, v) in n.iter().enumerate() {
                b[24 + i * 8..32 + i * 8].copy_from_slice(&v.to_ne_bytes());
            }
        }
        if let Some(d) = io {
            b[5] = 1;
            let o = 64;
            b[o + 8..o + 16].copy_from_slice(&d.dev.to_ne_bytes());
            b[o + 32 + 16..o + 32 + 24].copy_from_slice(&d.bytes[0].to_ne_bytes());
            b[o + 32 + 24..o + 32 + 32].copy_from_slice(&d.bytes[1].to_ne_bytes());
            b[o + 96 + 16..o + 96 + 24].copy_from_slice(&d.ops[0].to_ne_bytes());
            b[o + 96 + 24..o + 96 + 32].copy_from_slice(&d.ops[1].to_ne_bytes());
        }
        b
    }

    #[test]
    fn exit_record_round_trip() {
        let d = DevIo {
            dev: (253 << 20) | 16,
            bytes: [4096, 1 << 20],
            ops: [1, 8],
        };
        let b = record(4242, b"curl", Some([10, 20, 3, 4, 5]), Some(d));
        let e = parse_exit_record(&b).unwrap();
        assert_eq!(e.tgid, 4242);
        assert_eq!(e.comm, "curl");
        let n = e.net.unwrap();
        assert_eq!(
            (n.rx_bytes, n.tx_bytes, n.rx_packets, n.tx_packets, n.drops),
            (10, 20, 3, 4, 5)
        );
        // Slot 1 was used, slot 0 free: only the used one comes back.
        assert_eq!(e.io, vec![d]);
        assert_eq!(major_minor(d.dev), (253, 16));
    }

    #[test]
    fn exit_record_without_parts_or_too_short() {
        let e = parse_exit_record(&record(7, b"0123456789abcdef", None, None)).unwrap();
        assert_eq!(e.comm, "0123456789abcdef");
        assert!(e.net.is_none() && e.io.is_empty());
        assert!(parse_exit_record(&[0u8; 100]).is_none());
    }

    #[test]
    fn uevent_devname() {
        let t = "MAJOR=253\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=9\n";
        assert_eq!(devname_from_uevent(t), Some("vda"));
        assert_eq!(devname_from_uevent("MAJOR=1\nDEVNAME=\n"), None);
    }

    /// A pid freed by a process that only did disk I/O and reused by one
    /// that lived between two scrapes: the second one's bytes go to its
    /// own subgroup, not the first one's.
    #[test]
    fn a_reused_pid_does_not_inherit_a_group() {
        let classifier = crate::classify::Classifier::builtin();
        let table = ProcessTable::new(
            crate::process::Settings::from_config(&Config::default()),
            Arc::new(crate::classify::Classifier::builtin()),
        );
        let groups = Mutex::new(Groups::default());
        let db: (Arc<str>, Arc<str>) = (Arc::from("db"), Arc::from("postgres"));
        groups.lock().unwrap().known.insert(300, db.clone());
        let exit = |comm: &str, net: Option<Net>| Exited {
            tgid: 300,
            comm: comm.into(),
            net,
            io: Vec::new(),
        };
        let net = Net {
            tx_bytes: 1,
            ..Net::default()
        };
        fold_exited(
            &groups,
            &classifier,
            &table,
            vec![exit("postgres", None), exit("curl", Some(net))],
        );
        let c = classifier.classify("curl", "curl", "");
        assert_ne!((&*c.group, &*c.subgroup), ("db", "postgres"));
        let g = groups.lock().unwrap();
        assert_eq!(g.exited[&(c.group, c.subgroup)].tx_bytes, 1);
        assert!(!g.exited.contains_key(&db));
        assert!(g.known.is_empty());
    }

    #[test]
    fn exit_record_length() {
        // sizeof(struct exit_record): 4 + 1 + 1 + 2 + 16 + 5*8 + 4*8 + 2*4*2*8.
        assert!(parse_exit_record(&[0u8; 224]).is_some());
        assert!(parse_exit_record(&[0u8; 223]).is_none());
    }
}
