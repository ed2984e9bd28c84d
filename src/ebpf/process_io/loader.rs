//! The libbpf side: open, size, load and attach the programs of
//! `bpf/process_io.bpf.c`, read their maps, and drain the exit ring buffer,
//! on a poller thread between scrapes and on the scraping thread at each
//! read. Built with the `ebpf` feature only (`stub.rs` stands in without
//! it).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use herakles_core::Paths;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, OpenObject, RingBuffer, RingBufferBuilder};

use super::{
    off, parse_exit_record, parse_io, parse_net, Activity, EventRate, Exited, PartState,
    ProcessIoConfig, Raw, Sample, Settings, Stats, Status, DISK, NETWORK, POLL, RATE_SAMPLE,
};

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
    /// Samples of the event counters, taken by the poller.
    rate: Arc<Mutex<EventRate>>,
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
    pub fn start(settings: &Settings, paths: &Paths, status: &Status, fold: Fold) -> Loader {
        let net_off = off(settings, paths, settings.network, "enable_ebpf_network");
        let disk_off = off(settings, paths, settings.disk, "enable_ebpf_disk");
        let loaded = if net_off.is_some() && disk_off.is_some() {
            None
        } else {
            match load(&settings.sizes, net_off.is_none(), disk_off.is_none(), fold) {
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

    pub fn activity(&self) -> Option<Activity> {
        self.with(|l| Activity {
            stats: stats(l),
            window: l.rate.lock().unwrap_or_else(|e| e.into_inner()).window(),
            maps: crate::ebpf::hash_map_usage(l.skel.object()),
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
    let (processed, dropped) = event_counters(&l.skel.maps.stats);
    let mut s = Stats {
        maps: l.skel.object().maps().count() as u64,
        processed,
        dropped,
        ..Stats::default()
    };
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

/// The `stats` map's processed and dropped events, summed over CPUs.
fn event_counters(map: &dyn MapCore) -> (u64, u64) {
    let sum = |index: u32| -> u64 {
        match map.lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY) {
            Ok(Some(per_cpu)) => per_cpu
                .iter()
                .filter_map(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
                .sum(),
            _ => 0,
        }
    };
    (sum(0), sum(1))
}

/// A sample of the event counters now.
fn sample(stats: &dyn MapCore) -> Sample {
    let at = std::time::Instant::now();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Sample {
        at,
        unix,
        processed: event_counters(stats).0,
    }
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
        let handle =
            MapHandle::try_from(&skel.maps.exits).map_err(|e| format!("exit ring buffer: {e}"))?;
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
    let stats_map =
        MapHandle::try_from(&skel.maps.stats).map_err(|e| format!("event counters: {e}"))?;
    let rate = Arc::new(Mutex::new(EventRate::default()));
    rate.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(sample(&stats_map));
    let poller = {
        let (ring, stop, rate) = (ring.clone(), stop.clone(), rate.clone());
        std::thread::Builder::new()
            .name("ebpf-exits".into())
            .spawn(move || {
                let mut next_sample = std::time::Instant::now() + RATE_SAMPLE;
                while !stop.load(Ordering::Relaxed) {
                    let records = ring.lock().unwrap_or_else(|e| e.into_inner()).drain();
                    if !records.is_empty() {
                        fold(records);
                    }
                    let now = std::time::Instant::now();
                    if now >= next_sample {
                        next_sample = now + RATE_SAMPLE;
                        let s = sample(&stats_map);
                        rate.lock().unwrap_or_else(|e| e.into_inner()).push(s);
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
            rate,
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
