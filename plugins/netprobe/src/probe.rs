//! The long-lived part: one thread that owns the eBPF programs, keeps a TC
//! filter on every selected interface and reads the counters every
//! collection interval.
//!
//! Everything that touches the kernel happens on this one thread, for two
//! reasons. The skeleton borrows its object storage and is not `Send`, so
//! keeping it on the thread that loaded it needs no leaked storage and no
//! unsafe `Send`. And TC attachment goes through rtnetlink, which works in
//! the network namespace of the calling thread: attach, rescan and detach
//! must all see the same namespace, the one the collector was built in.
//!
//! Scrapes never touch the kernel; they copy the latest [`Snapshot`].

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{
    AsRawLibbpf, Link, MapCore, MapFlags, OpenObject, ProgramAttachType, TcHook, TC_EGRESS,
    TC_INGRESS,
};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/netprobe.skel.rs"));
}
use skel::{NetprobeSkel, NetprobeSkelBuilder};

/// The handle of our filters, in both directions ("NP"). Fixed, so a filter
/// at this handle and our priority with one of our program names can only
/// be ours, left behind by an instance that was killed before it could clean
/// up (a clsact filter outlives the process that attached it).
pub const FILTER_HANDLE: u32 = 0x4e50;

/// Our program names as the kernel stores them (at most 15 bytes), to
/// recognise our own leftover filters.
const PROGRAM_NAMES: [&str; 2] = ["netprobe_ingres", "netprobe_egress"];

pub const INGRESS: usize = 0;
pub const EGRESS: usize = 1;

/// Packets and bytes one way through one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub packets: f64,
    pub bytes: f64,
}

/// One interface as of the last collection.
#[derive(Debug, Clone)]
pub struct Interface {
    pub ifindex: u32,
    pub name: String,
    /// Totals since our filter was attached, by direction.
    pub totals: [Counts; 2],
    /// Per-second rates over the last collection interval; `None` until the
    /// interface has been read twice.
    pub rates: Option<[Counts; 2]>,
    /// Whether a packet passed either way during the last interval (since
    /// attachment, on the first reading).
    pub active: bool,
}

/// What a scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The programs are loaded and the last collection read the counters.
    pub up: bool,
    pub collections: u64,
    pub last_collection_unix: f64,
    pub interfaces: Vec<Interface>,
}

/// How the programs hook into TC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A filter in the interface's clsact qdisc (netlink; any kernel).
    Clsact,
    /// A tcx link (kernel 6.6+): no qdisc at all, and the kernel detaches
    /// it when our file descriptor closes, even if we are killed.
    Tcx,
}

/// What the thread needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// Exact interface names; empty selects every interface.
    pub interfaces: Vec<String>,
    pub interval: Duration,
    pub priority: u16,
    /// `<sysfs>/kernel/btf/vmlinux`.
    pub btf: PathBuf,
}

/// The running probe: the thread and how to stop it.
pub struct Probe {
    stop: SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Probe {
    /// Start the thread and wait for its first collection, so the first
    /// scrape already has interfaces. `Err` carries the reason the programs
    /// could not run; `snapshot` then stays at `up = false`.
    pub fn start(settings: Settings, snapshot: Arc<Mutex<Snapshot>>) -> Result<Probe, String> {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let (stop, stop_rx) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("netprobe".into())
            .spawn(move || run(settings, snapshot, ready_tx, stop_rx))
            .map_err(|e| format!("cannot start the netprobe thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Probe { stop, thread }),
            Ok(Err(reason)) => {
                let _ = thread.join();
                Err(reason)
            }
            Err(_) => {
                let _ = thread.join();
                Err("the netprobe thread died while loading".into())
            }
        }
    }

    /// Stop collecting, detach every filter we attached, remove every
    /// clsact qdisc we created, unload the programs.
    pub fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("the netprobe thread panicked; its TC filters may be left attached");
        }
    }
}

fn run(
    settings: Settings,
    snapshot: Arc<Mutex<Snapshot>>,
    ready: SyncSender<Result<(), String>>,
    stop: Receiver<()>,
) {
    if !settings.btf.is_file() {
        let _ = ready.send(Err(format!(
            "{} is missing: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF), which the CO-RE \
             TC programs need",
            settings.btf.display()
        )));
        return;
    }
    let mut storage = MaybeUninit::<OpenObject>::uninit();
    let skel = match load(&mut storage) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "loading the TC programs failed: {e} (needs root, or CAP_BPF with \
                 CAP_NET_ADMIN)"
            )));
            return;
        }
    };
    let mut state = State {
        settings,
        attached: BTreeMap::new(),
        failed: BTreeMap::new(),
        previous: BTreeMap::new(),
        collections: 0,
    };
    state.collect(&skel, &snapshot);
    let _ = ready.send(Ok(()));
    // A message or a dropped sender both mean stop.
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(state.settings.interval) {
        state.collect(&skel, &snapshot);
    }
    state.detach_all();
    snapshot.lock().unwrap_or_else(|e| e.into_inner()).up = false;
    // Dropping the skeleton closes the programs and the map.
    drop(skel);
}

fn load(storage: &mut MaybeUninit<OpenObject>) -> libbpf_rs::Result<NetprobeSkel<'_>> {
    let mut open = NetprobeSkelBuilder::default().open(storage)?;
    // tcx attaches by the program's expected attach type. clsact ignores it,
    // so the same two programs serve both modes.
    open.progs
        .netprobe_ingress
        .set_attach_type(ProgramAttachType::TcxIngress);
    open.progs
        .netprobe_egress
        .set_attach_type(ProgramAttachType::TcxEgress);
    open.load()
}

/// Our hooks on one interface.
struct Attached {
    name: String,
    hooks: Hooks,
}

enum Hooks {
    Clsact {
        filters: [TcHook; 2],
        /// We created its clsact qdisc, so we remove it again.
        created_qdisc: bool,
    },
    /// Dropping a link detaches it.
    Tcx([Link; 2]),
}

/// Counters of one interface at one reading, for the next rate.
struct Reading {
    at: Instant,
    totals: [Counts; 2],
}

struct State {
    settings: Settings,
    attached: BTreeMap<u32, Attached>,
    /// Interfaces we could not attach to and why, so the reason is logged
    /// once rather than every interval. Retried every interval all the same:
    /// the cause (a foreign filter in our slot, say) may go away.
    failed: BTreeMap<u32, String>,
    previous: BTreeMap<u32, Reading>,
    collections: u64,
}

impl State {
    /// One collection: follow interfaces coming and going, read the
    /// counters, publish a snapshot.
    fn collect(&mut self, skel: &NetprobeSkel<'_>, snapshot: &Mutex<Snapshot>) {
        self.rescan(skel);
        let now = Instant::now();
        let mut up = true;
        let mut interfaces = Vec::with_capacity(self.attached.len());
        for (&ifindex, a) in &self.attached {
            let totals = match read_counters(skel, ifindex) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(interface = a.name, ifindex, error = %e, "reading netprobe counters");
                    up = false;
                    continue;
                }
            };
            let previous = self.previous.get(&ifindex);
            let rates = previous.map(|p| {
                let dt = now.duration_since(p.at).as_secs_f64().max(f64::EPSILON);
                [INGRESS, EGRESS].map(|d| Counts {
                    packets: (totals[d].packets - p.totals[d].packets).max(0.0) / dt,
                    bytes: (totals[d].bytes - p.totals[d].bytes).max(0.0) / dt,
                })
            });
            let before = previous.map_or([Counts::default(); 2], |p| p.totals);
            let active = (0..2).any(|d| totals[d].packets > before[d].packets);
            interfaces.push(Interface {
                ifindex,
                name: a.name.clone(),
                totals,
                rates,
                active,
            });
            self.previous.insert(ifindex, Reading { at: now, totals });
        }
        self.collections += 1;
        let last = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        *snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Snapshot {
            up,
            collections: self.collections,
            last_collection_unix: last,
            interfaces,
        };
    }

    /// Attach to selected interfaces that appeared, forget those that went.
    fn rescan(&mut self, skel: &NetprobeSkel<'_>) {
        let present = match list_interfaces() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "listing interfaces; keeping the previous set");
                return;
            }
        };
        let selected = |name: &str| {
            self.settings.interfaces.is_empty()
                || self.settings.interfaces.iter().any(|n| n == name)
        };
        // Gone (or renamed out of the selection): a vanished interface took
        // its qdisc and filters with it; a renamed one keeps ours until
        // shutdown would remove them, so detach it now.
        let gone: Vec<u32> = self
            .attached
            .keys()
            .copied()
            .filter(|i| !present.get(i).is_some_and(|n| selected(n)))
            .collect();
        for ifindex in gone {
            let a = self.attached.remove(&ifindex).expect("key listed above");
            if present.contains_key(&ifindex) {
                detach(ifindex, a);
            } else {
                tracing::debug!(interface = a.name, ifindex, "interface removed");
            }
            self.previous.remove(&ifindex);
            // Zeroes the count for an interface that might reuse the index.
            let _ = skel.maps.netprobe_counters.delete(&ifindex.to_ne_bytes());
        }
        self.failed.retain(|i, _| present.contains_key(i));
        for (&ifindex, name) in &present {
            if !selected(name) {
                continue;
            }
            if let Some(a) = self.attached.get_mut(&ifindex) {
                a.name.clone_from(name);
                continue;
            }
            let attached = match self.settings.mode {
                Mode::Clsact => attach_clsact(skel, ifindex, self.settings.priority),
                Mode::Tcx => attach_tcx(skel, ifindex),
            };
            match attached {
                Ok(hooks) => {
                    let a = Attached {
                        name: name.clone(),
                        hooks,
                    };
                    tracing::info!(interface = name, ifindex, mode = ?self.settings.mode, "netprobe attached");
                    self.failed.remove(&ifindex);
                    self.attached.insert(ifindex, a);
                }
                Err(reason) => {
                    if self.failed.get(&ifindex) != Some(&reason) {
                        tracing::warn!(
                            interface = name,
                            ifindex,
                            reason,
                            "netprobe cannot attach; interface not counted"
                        );
                        self.failed.insert(ifindex, reason);
                    }
                }
            }
        }
    }

    fn detach_all(&mut self) {
        for (ifindex, a) in std::mem::take(&mut self.attached) {
            detach(ifindex, a);
        }
    }
}

/// Every interface of this thread's network namespace, by ifindex.
///
/// `if_nameindex(3)` asks rtnetlink, so it sees the namespace of the calling
/// thread; `/sys/class/net` would show the namespace sysfs was mounted in.
fn list_interfaces() -> Result<BTreeMap<u32, String>, String> {
    // SAFETY: if_nameindex returns a heap array terminated by a zero entry,
    // which we only read before handing it back to if_freenameindex.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let mut out = BTreeMap::new();
        let mut entry = list;
        while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
            let name = CStr::from_ptr((*entry).if_name)
                .to_string_lossy()
                .into_owned();
            out.insert((*entry).if_index, name);
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
        Ok(out)
    }
}

/// Sum the per-CPU counters of one interface; zeros when the program has
/// not seen a packet there yet.
fn read_counters(skel: &NetprobeSkel<'_>, ifindex: u32) -> Result<[Counts; 2], String> {
    let per_cpu = skel
        .maps
        .netprobe_counters
        .lookup_percpu(&ifindex.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| e.to_string())?;
    let mut totals = [Counts::default(); 2];
    for value in per_cpu.unwrap_or_default() {
        // struct counters { u64 packets[2]; u64 bytes[2]; }
        let word = |i: usize| -> Result<u64, String> {
            value
                .get(i * 8..i * 8 + 8)
                .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
                .ok_or_else(|| format!("counter value of {} bytes, expected 32", value.len()))
        };
        for d in [INGRESS, EGRESS] {
            totals[d].packets += word(d)? as f64;
            totals[d].bytes += word(2 + d)? as f64;
        }
    }
    Ok(totals)
}

/// Create clsact on `ifindex` if it has none; `Ok(true)` when we created it.
///
/// libbpf-rs's `TcHook::create` treats "already exists" as success, which
/// hides exactly what we must know to leave the host as we found it, so
/// this calls libbpf directly.
fn create_clsact(ifindex: u32) -> Result<bool, String> {
    let mut hook = clsact_hook(ifindex);
    // SAFETY: `hook` is a fully initialised bpf_tc_hook with `sz` set, as
    // libbpf requires; it is only read during the call.
    let err = unsafe { libbpf_sys::bpf_tc_hook_create(&mut hook) };
    match -err {
        0 => Ok(true),
        libc::EEXIST => Ok(false),
        errno => Err(format!(
            "creating the clsact qdisc: {}",
            std::io::Error::from_raw_os_error(errno)
        )),
    }
}

fn attach_clsact(skel: &NetprobeSkel<'_>, ifindex: u32, priority: u16) -> Result<Hooks, String> {
    let created_qdisc = create_clsact(ifindex)?;
    let progs = [
        skel.progs.netprobe_ingress.as_fd(),
        skel.progs.netprobe_egress.as_fd(),
    ];
    let mut hooks: Vec<TcHook> = Vec::with_capacity(2);
    for (point, prog) in [TC_INGRESS, TC_EGRESS].into_iter().zip(progs) {
        let mut hook = TcHook::new(prog);
        hook.ifindex(ifindex as i32)
            .attach_point(point)
            .handle(FILTER_HANDLE)
            .priority(u32::from(priority));
        match attach_one(&mut hook) {
            Ok(()) => hooks.push(hook),
            Err(e) => {
                // Leave the interface exactly as it was.
                for mut h in hooks {
                    let _ = h.detach();
                }
                if created_qdisc {
                    destroy_clsact(ifindex);
                }
                return Err(e);
            }
        }
    }
    Ok(Hooks::Clsact {
        filters: [hooks[0], hooks[1]],
        created_qdisc,
    })
}

/// Attach both programs as tcx links, in front of any other tcx program so
/// we count every packet; ours returns TCX_NEXT, so the others still run
/// and decide.
fn attach_tcx(skel: &NetprobeSkel<'_>, ifindex: u32) -> Result<Hooks, String> {
    let link = |prog: &libbpf_rs::Program<'_>| -> Result<Link, String> {
        let opts = libbpf_sys::bpf_tcx_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_tcx_opts>() as libbpf_sys::size_t,
            flags: libbpf_sys::BPF_F_BEFORE,
            ..Default::default()
        };
        // SAFETY: a loaded program of ours and initialised opts; libbpf
        // returns a new link or NULL with errno set.
        let ptr = unsafe {
            libbpf_sys::bpf_program__attach_tcx(
                prog.as_libbpf_object().as_ptr(),
                ifindex as i32,
                &opts,
            )
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            format!(
                "attaching the tcx link: {}",
                std::io::Error::last_os_error()
            )
        })?;
        // SAFETY: a valid link from libbpf, owned by nothing else.
        Ok(unsafe { Link::from_ptr(ptr) })
    };
    // If the egress link fails, the ingress one is dropped, so detached.
    let ingress = link(&skel.progs.netprobe_ingress)?;
    let egress = link(&skel.progs.netprobe_egress)?;
    Ok(Hooks::Tcx([ingress, egress]))
}

/// Attach one filter. Our slot (handle and priority) already taken by one of
/// our own programs means a killed instance left it behind: take it over.
/// Taken by anything else: refuse, rather than replace a stranger's filter.
fn attach_one(hook: &mut TcHook) -> Result<(), String> {
    let err = match hook.attach() {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let existing = hook.query().ok().filter(|&id| id != 0);
    match existing.map(program_name) {
        Some(Ok(name)) if PROGRAM_NAMES.contains(&name.as_str()) => {
            tracing::info!(
                handle = FILTER_HANDLE,
                "replacing a netprobe filter left behind by an earlier run"
            );
            hook.replace(true);
            let res = hook.attach().map(|_| ()).map_err(|e| e.to_string());
            hook.replace(false);
            res
        }
        Some(Ok(name)) => Err(format!(
            "filter handle {FILTER_HANDLE:#x} at our priority belongs to program {name:?}; \
             choose another tc_priority"
        )),
        _ => Err(format!("attaching the TC filter: {err}")),
    }
}

/// The name of a loaded program, by id.
fn program_name(id: u32) -> Result<String, String> {
    // SAFETY: plain syscalls on an fd we own and close; `info` is a zeroed
    // bpf_prog_info and `len` its size, as the kernel expects.
    unsafe {
        let fd = libbpf_sys::bpf_prog_get_fd_by_id(id);
        if fd < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let mut info = libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
        let err = libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len);
        libc::close(fd);
        if err != 0 {
            return Err(std::io::Error::from_raw_os_error(-err).to_string());
        }
        Ok(CStr::from_ptr(info.name.as_ptr())
            .to_string_lossy()
            .into_owned())
    }
}

fn detach(ifindex: u32, a: Attached) {
    match a.hooks {
        Hooks::Clsact {
            filters,
            created_qdisc,
        } => {
            for mut hook in filters {
                if let Err(e) = hook.detach() {
                    tracing::warn!(interface = a.name, ifindex, error = %e, "detaching a netprobe filter");
                }
            }
            if created_qdisc {
                destroy_clsact(ifindex);
            }
        }
        Hooks::Tcx(links) => drop(links),
    }
    tracing::debug!(interface = a.name, ifindex, "netprobe detached");
}

/// Remove the clsact qdisc we created, unless someone put filters of their
/// own into it meanwhile: removing it would remove those too.
fn destroy_clsact(ifindex: u32) {
    match count_filters(ifindex) {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(
                ifindex,
                filters = n,
                "leaving the clsact qdisc we created: it now holds other filters"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(ifindex, error = %e, "leaving the clsact qdisc we created: cannot list its filters");
            return;
        }
    }
    let mut hook = clsact_hook(ifindex);
    // SAFETY: as in `create_clsact`.
    let err = unsafe { libbpf_sys::bpf_tc_hook_destroy(&mut hook) };
    if err != 0 {
        let e = std::io::Error::from_raw_os_error(-err);
        tracing::warn!(ifindex, error = %e, "removing the clsact qdisc we created");
    }
}

/// `struct tcmsg` of `<linux/rtnetlink.h>`, which libc does not define.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TcMsg {
    family: u8,
    pad1: u8,
    pad2: u16,
    ifindex: i32,
    handle: u32,
    parent: u32,
    info: u32,
}

/// How many TC filters the clsact qdisc of `ifindex` holds, both
/// directions together, as `tc filter show` would list them.
///
/// libbpf can only ask about one filter whose handle and priority are
/// known, so this is a plain rtnetlink dump (`RTM_GETTFILTER`).
fn count_filters(ifindex: u32) -> Result<usize, String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const TC_H_CLSACT: u32 = 0xffff_fff1;
    const TC_H_MAJ_MASK: u32 = 0xffff_0000;
    const HEADER: usize = std::mem::size_of::<libc::nlmsghdr>();
    #[repr(C)]
    struct Request {
        header: libc::nlmsghdr,
        tcm: TcMsg,
    }
    let os_error = || std::io::Error::last_os_error().to_string();
    // SAFETY: socket(2) has no memory preconditions; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut count = 0;
    for (seq, min) in [(1u32, 0xfff2u32), (2, 0xfff3)] {
        let request = Request {
            header: libc::nlmsghdr {
                nlmsg_len: std::mem::size_of::<Request>() as u32,
                nlmsg_type: libc::RTM_GETTFILTER,
                nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
                nlmsg_seq: seq,
                nlmsg_pid: 0,
            },
            tcm: TcMsg {
                ifindex: ifindex as i32,
                parent: (TC_H_CLSACT & TC_H_MAJ_MASK) | min,
                ..TcMsg::default()
            },
        };
        // SAFETY: sends the bytes of a fully initialised repr(C) struct.
        let sent = unsafe {
            libc::send(
                fd.as_raw_fd(),
                (&request as *const Request).cast(),
                std::mem::size_of::<Request>(),
                0,
            )
        };
        if sent < 0 {
            return Err(os_error());
        }
        let mut buf = vec![0u8; 32 * 1024];
        'dump: loop {
            // SAFETY: receives into a buffer of the length given.
            let got = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if got < 0 {
                return Err(os_error());
            }
            let data = &buf[..got as usize];
            let mut at = 0;
            while at + HEADER <= data.len() {
                // SAFETY: HEADER bytes are in bounds; read_unaligned copes
                // with any alignment.
                let header: libc::nlmsghdr =
                    unsafe { std::ptr::read_unaligned(data[at..].as_ptr().cast()) };
                let len = header.nlmsg_len as usize;
                if len < HEADER || at + len > data.len() {
                    return Err("malformed rtnetlink reply".into());
                }
                match i32::from(header.nlmsg_type) {
                    libc::NLMSG_DONE => break 'dump,
                    libc::NLMSG_ERROR => {
                        let errno = data
                            .get(at + HEADER..at + HEADER + 4)
                            .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                        if errno != 0 {
                            return Err(std::io::Error::from_raw_os_error(-errno).to_string());
                        }
                    }
                    t if t == i32::from(libc::RTM_NEWTFILTER)
                        && len >= HEADER + std::mem::size_of::<TcMsg>() =>
                    {
                        // SAFETY: the length was checked by the guard.
                        let tcm: TcMsg = unsafe {
                            std::ptr::read_unaligned(data[at + HEADER..].as_ptr().cast())
                        };
                        // Handle 0 is the per-priority classifier instance,
                        // not a filter.
                        if tcm.handle != 0 {
                            count += 1;
                        }
                    }
                    _ => {}
                }
                at += (len + 3) & !3;
            }
        }
    }
    Ok(count)
}

/// The libbpf description of the clsact qdisc itself (both directions).
fn clsact_hook(ifindex: u32) -> libbpf_sys::bpf_tc_hook {
    libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as libbpf_sys::size_t,
        ifindex: ifindex as i32,
        attach_point: libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS,
        ..Default::default()
    }
}
