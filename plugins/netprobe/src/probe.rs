//! The long-lived part: one thread that owns the eBPF programs, keeps our
//! hooks on every selected interface and reads the counters every
//! collection interval.
//!
//! Everything that touches the kernel happens on this one thread, for two
//! reasons. The skeleton borrows its object storage and is not `Send`, so
//! keeping it on the thread that loaded it needs no leaked storage and no
//! unsafe `Send`. And TC attachment goes through rtnetlink, which works in
//! the network namespace of the calling thread: attach, rescan and detach
//! must all see the same namespace, the one the collector was built in.
//!
//! Each collection also checks that our hooks are still in place: anyone
//! with `CAP_NET_ADMIN` can delete a clsact filter (`tc filter del`, or the
//! whole qdisc), and a program that is no longer attached counts nothing
//! while its map still reads fine. A lost hook is re-attached at once,
//! counted in `netprobe_filters_lost_total`, shown in `/health`, and the
//! collection that found it reports `netprobe_up 0`, since its interval
//! missed packets.
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
use libbpf_rs::query::{LinkInfo, LinkTypeInfo};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{AsRawLibbpf, Link, MapCore, MapFlags, OpenObject, Program, ProgramAttachType};

use crate::clsact::{self, Filters, Slot};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/netprobe.skel.rs"));
}
use skel::{NetprobeSkel, NetprobeSkelBuilder};

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

/// A hook of ours that someone else removed.
#[derive(Debug, Clone)]
pub struct Loss {
    pub interface: String,
    pub what: String,
    pub unix: f64,
}

/// What a scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The programs are loaded, and throughout the last interval every
    /// selected interface was counted and its counters read.
    pub up: bool,
    pub collections: u64,
    pub last_collection_unix: f64,
    pub interfaces: Vec<Interface>,
    /// Selected interfaces that exist but are not counted, and why.
    pub not_counted: BTreeMap<String, String>,
    /// Hooks found removed by someone else since the start.
    pub hooks_lost: u64,
    pub last_loss: Option<Loss>,
    /// The handle of our clsact filters (clsact mode).
    pub filter_handle: Option<u32>,
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

impl Settings {
    fn selects(&self, name: &str) -> bool {
        self.interfaces.is_empty() || self.interfaces.iter().any(|n| n == name)
    }
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

    /// Stop collecting, take our hooks off every interface (and clsact
    /// qdiscs netprobe created that nobody else uses), unload the programs.
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
    let prog_ids = match [&skel.progs.netprobe_ingress, &skel.progs.netprobe_egress]
        .map(|p| Program::id_from_fd(p.as_fd()))
    {
        [Ok(i), Ok(e)] => [i, e],
        [Err(e), _] | [_, Err(e)] => {
            let _ = ready.send(Err(format!("reading our program ids: {e}")));
            return;
        }
    };
    // Claimed in the namespace we attach in, for as long as we run.
    let slot = match settings.mode {
        Mode::Clsact => match Slot::claim() {
            Ok(s) => Some(s),
            Err(reason) => {
                let _ = ready.send(Err(reason));
                return;
            }
        },
        Mode::Tcx => None,
    };
    let mut state = State {
        settings,
        slot,
        prog_ids,
        attached: BTreeMap::new(),
        failed: BTreeMap::new(),
        previous: BTreeMap::new(),
        collections: 0,
        hooks_lost: 0,
        last_loss: None,
    };
    state.collect(&skel, &snapshot);
    let _ = ready.send(Ok(()));
    // A message or a dropped sender both mean stop.
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(state.settings.interval) {
        state.collect(&skel, &snapshot);
    }
    state.detach_all();
    snapshot.lock().unwrap_or_else(|e| e.into_inner()).up = false;
    // Dropping the skeleton closes the programs and the map; the slot goes
    // with `state`, after our filters.
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
    Clsact(Filters),
    /// Dropping a link detaches it.
    Tcx([Link; 2]),
}

impl Hooks {
    /// What is wrong, if our hooks on `ifindex` are no longer in place.
    fn broken(&self, ifindex: u32) -> Option<String> {
        match self {
            Hooks::Clsact(filters) => match filters.check(ifindex) {
                Ok(broken) => broken,
                Err(e) => {
                    tracing::warn!(ifindex, error = %e, "cannot check the netprobe filters");
                    None
                }
            },
            Hooks::Tcx(links) => links.iter().find_map(|link| {
                // The kernel keeps a link someone detached (`bpftool link
                // detach`) for as long as we hold it, with no interface.
                match LinkInfo::from_fd(link.as_fd()).map(|i| i.info) {
                    Ok(LinkTypeInfo::Tcx(t)) if t.ifindex == ifindex => None,
                    Ok(_) => Some("our tcx link was detached".to_string()),
                    Err(e) => {
                        tracing::warn!(ifindex, error = %e, "cannot check the netprobe tcx link");
                        None
                    }
                }
            }),
        }
    }

    fn detach(self, ifindex: u32) {
        match self {
            Hooks::Clsact(filters) => filters.detach(ifindex),
            Hooks::Tcx(links) => drop(links),
        }
    }
}

/// Counters of one interface at one reading, for the next rate.
struct Reading {
    at: Instant,
    totals: [Counts; 2],
}

struct State {
    settings: Settings,
    /// Ours in clsact mode; see `clsact.rs`.
    slot: Option<Slot>,
    /// The kernel ids of our `[ingress, egress]` programs.
    prog_ids: [u32; 2],
    attached: BTreeMap<u32, Attached>,
    /// Selected interfaces we could not attach to and why, so the reason is
    /// logged once rather than every interval. Retried every interval all
    /// the same: the cause (a foreign filter in our slot, say) may go away.
    failed: BTreeMap<u32, (String, String)>,
    previous: BTreeMap<u32, Reading>,
    collections: u64,
    hooks_lost: u64,
    last_loss: Option<Loss>,
}

impl State {
    /// One collection: follow interfaces coming and going, check and repair
    /// our hooks, read the counters, publish a snapshot.
    fn collect(&mut self, skel: &NetprobeSkel<'_>, snapshot: &Mutex<Snapshot>) {
        // Whether every selected interface was counted all interval long.
        let mut complete = true;
        match list_interfaces() {
            Ok(present) => {
                self.forget_gone(skel, &present);
                complete &= self.check_hooks();
                self.attach_missing(skel, &present);
            }
            Err(e) => tracing::warn!(error = %e, "listing interfaces; keeping the previous set"),
        }
        complete &= self.failed.is_empty();
        let now = Instant::now();
        let mut interfaces = Vec::with_capacity(self.attached.len());
        for (&ifindex, a) in &self.attached {
            let totals = match read_counters(skel, ifindex) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(interface = a.name, ifindex, error = %e, "reading netprobe counters");
                    complete = false;
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
        *snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Snapshot {
            up: complete,
            collections: self.collections,
            last_collection_unix: unix_now(),
            interfaces,
            not_counted: self.failed.values().cloned().collect(),
            hooks_lost: self.hooks_lost,
            last_loss: self.last_loss.clone(),
            filter_handle: self.slot.as_ref().map(Slot::handle),
        };
    }

    /// Forget interfaces that went (or were renamed out of the selection).
    fn forget_gone(&mut self, skel: &NetprobeSkel<'_>, present: &BTreeMap<u32, String>) {
        // A vanished interface took its qdisc and filters with it; a renamed
        // one keeps ours until shutdown would remove them, so detach it now.
        let gone: Vec<u32> = self
            .attached
            .keys()
            .copied()
            .filter(|i| !present.get(i).is_some_and(|n| self.settings.selects(n)))
            .collect();
        for ifindex in gone {
            let a = self.attached.remove(&ifindex).expect("key listed above");
            if present.contains_key(&ifindex) {
                a.hooks.detach(ifindex);
            } else {
                tracing::debug!(interface = a.name, ifindex, "interface removed");
            }
            self.previous.remove(&ifindex);
            // Zeroes the count for an interface that might reuse the index.
            let _ = skel.maps.netprobe_counters.delete(&ifindex.to_ne_bytes());
        }
        self.failed
            .retain(|i, _| present.get(i).is_some_and(|n| self.settings.selects(n)));
    }

    /// Drop hooks someone else removed, so that `attach_missing` puts them
    /// back; `false` if there were any (their interval missed packets).
    fn check_hooks(&mut self) -> bool {
        let broken: Vec<(u32, String)> = self
            .attached
            .iter()
            .filter_map(|(&ifindex, a)| a.hooks.broken(ifindex).map(|what| (ifindex, what)))
            .collect();
        for (ifindex, what) in &broken {
            let a = self.attached.remove(ifindex).expect("key listed above");
            // An interface deleted since we listed them is no loss.
            if interface_exists(*ifindex) {
                tracing::warn!(
                    interface = a.name,
                    ifindex,
                    what,
                    "netprobe hook removed by someone else; attaching again"
                );
                self.hooks_lost += 1;
                self.last_loss = Some(Loss {
                    interface: a.name.clone(),
                    what: what.clone(),
                    unix: unix_now(),
                });
            }
            a.hooks.detach(*ifindex);
        }
        broken.is_empty()
    }

    /// Attach to selected interfaces we do not count yet: new ones, lost
    /// hooks, earlier failures.
    fn attach_missing(&mut self, skel: &NetprobeSkel<'_>, present: &BTreeMap<u32, String>) {
        for (&ifindex, name) in present {
            if !self.settings.selects(name) {
                continue;
            }
            if let Some(a) = self.attached.get_mut(&ifindex) {
                a.name.clone_from(name);
                continue;
            }
            let progs = [
                skel.progs.netprobe_ingress.as_fd(),
                skel.progs.netprobe_egress.as_fd(),
            ];
            let attached = match &self.slot {
                Some(slot) => {
                    clsact::attach(progs, self.prog_ids, slot, ifindex, self.settings.priority)
                        .map(Hooks::Clsact)
                }
                None => attach_tcx(skel, ifindex),
            };
            match attached {
                Ok(hooks) => {
                    tracing::info!(interface = name, ifindex, mode = ?self.settings.mode, "netprobe attached");
                    self.failed.remove(&ifindex);
                    let a = Attached {
                        name: name.clone(),
                        hooks,
                    };
                    self.attached.insert(ifindex, a);
                }
                Err(reason) => {
                    if self.failed.get(&ifindex).map(|(_, r)| r) != Some(&reason) {
                        tracing::warn!(
                            interface = name,
                            ifindex,
                            reason,
                            "netprobe cannot attach; interface not counted"
                        );
                    }
                    self.failed.insert(ifindex, (name.clone(), reason));
                }
            }
        }
    }

    fn detach_all(&mut self) {
        for (ifindex, a) in std::mem::take(&mut self.attached) {
            a.hooks.detach(ifindex);
            tracing::debug!(interface = a.name, ifindex, "netprobe detached");
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whether `ifindex` still names an interface of this thread's namespace.
fn interface_exists(ifindex: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname writes at most.
    !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
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
