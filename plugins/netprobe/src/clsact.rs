//! clsact mode: our two filters in the interface's clsact qdisc, and the
//! rules that let several netprobes (other exporters on the host, a restart
//! overlapping the old process, one killed with SIGKILL) and other TC users
//! share that qdisc without taking each other's filters away.
//!
//! A clsact filter and its qdisc outlive the process that made them, and
//! the kernel records neither who made them nor whether that process is
//! still alive. So netprobe records both itself, in places that live and
//! die with what they describe:
//!
//! - **Who owns a filter.** Each running netprobe claims a *slot*, a name in
//!   the abstract unix-socket namespace of its network namespace
//!   (`herakles-netprobe/<n>`), held by an open socket. Its filters carry the
//!   handle [`FILTER_HANDLE`]` + n`. The kernel releases the name when the
//!   process exits, however it exits, so "is slot n's owner alive?" is "is
//!   the name still taken?". Two live instances never share a handle, and a
//!   filter with a netprobe handle and program whose slot is free was left
//!   by a dead instance: it is removed by the next netprobe that attaches to
//!   that interface.
//! - **Who created the qdisc.** Whoever creates the clsact qdisc adds an
//!   empty TC chain, [`MARKER_CHAIN`], to its ingress block. No filter jumps
//!   there, so no packet ever runs through it, and it goes when the qdisc
//!   goes. A qdisc without it was there before netprobe (an operator's, or
//!   another tool's) and is never removed.
//! - **When the qdisc goes.** A netprobe leaving an interface removes a
//!   marked qdisc once no filter of anyone is left in it, in any chain or
//!   direction. A netprobe still counting there has its filters in it, so it
//!   keeps the qdisc; the last one out, or the next one to start after a
//!   crash, removes it.
//!
//! Attaching and leaving run under a lock per network namespace (another
//! abstract socket name), so one instance's "no filters left, remove the
//! qdisc" cannot interleave with another's "qdisc exists, add my filters".
//! A filter someone else removes anyway (`tc filter del`, `tc qdisc del`) is
//! noticed by [`Filters::check`] at the next collection and re-attached.

use std::io;
use std::os::fd::BorrowedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{TcHook, TC_EGRESS, TC_INGRESS};

use crate::rtnetlink::{self, Filter, CLSACT_EGRESS, CLSACT_INGRESS};

/// The handle of the filters of slot 0; slot `n` uses `FILTER_HANDLE + n`.
/// "NP" in the upper half makes ours easy to spot in `tc filter show`.
pub const FILTER_HANDLE: u32 = 0x4e50_0000;

/// How many netprobes can count one network namespace at once.
const SLOTS: u32 = 256;

/// The empty chain that marks a clsact qdisc created by netprobe
/// (`tc chain show dev <if> ingress` lists it as chain 20048).
pub const MARKER_CHAIN: u32 = 0x4e50;

/// Our program names as the kernel stores them (at most 15 bytes), to
/// recognise filters left behind by a dead netprobe.
const PROGRAM_NAMES: [&str; 2] = ["netprobe_ingres", "netprobe_egress"];

/// How long to wait for another netprobe's attach or detach to finish.
/// Those are a few netlink round trips; a holder can only take this long
/// if it is stopped in a debugger, and then we go ahead without it.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Our slot in this network namespace, held for as long as this lives.
pub struct Slot {
    index: u32,
    _claim: UnixDatagram,
}

impl Slot {
    /// Claim the lowest free slot of the calling thread's network namespace.
    pub fn claim() -> Result<Slot, String> {
        for index in 0..SLOTS {
            match claim(&slot_name(index)) {
                Ok(Some(claim)) => {
                    return Ok(Slot {
                        index,
                        _claim: claim,
                    })
                }
                Ok(None) => continue,
                Err(e) => return Err(format!("claiming a netprobe slot: {e}")),
            }
        }
        Err(format!(
            "{SLOTS} netprobes already count this network namespace"
        ))
    }

    /// The handle of our filters.
    pub fn handle(&self) -> u32 {
        FILTER_HANDLE + self.index
    }
}

fn slot_name(index: u32) -> String {
    format!("herakles-netprobe/{index}")
}

/// Take `name` in the abstract unix-socket namespace of the calling thread's
/// network namespace; `None` if someone holds it. Closing the socket (or
/// the process ending) releases it.
fn claim(name: &str) -> io::Result<Option<UnixDatagram>> {
    let addr = SocketAddr::from_abstract_name(name)?;
    match UnixDatagram::bind_addr(&addr) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the netprobe that claimed slot `index` still runs.
fn slot_alive(index: u32) -> bool {
    // Taking the name for a moment proves it was free; a netprobe starting
    // right now then picks another slot, which is harmless. On an error we
    // cannot tell, and must not remove a live instance's filters.
    !matches!(claim(&slot_name(index)), Ok(Some(_)))
}

/// Held while attaching or leaving; see the module documentation. Dropping
/// it releases the lock.
struct Lock {
    _held: Option<UnixDatagram>,
}

fn lock() -> Lock {
    let start = Instant::now();
    loop {
        match claim("herakles-netprobe/tc-lock") {
            Ok(Some(held)) => return Lock { _held: Some(held) },
            Ok(None) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(None) => {
                tracing::warn!(
                    waited = ?LOCK_WAIT,
                    "another netprobe holds the TC lock; going ahead without it"
                );
                return Lock { _held: None };
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the netprobe TC lock; going ahead without it");
                return Lock { _held: None };
            }
        }
    }
}

/// Our two filters on one interface.
pub struct Filters {
    hooks: [TcHook; 2],
    /// The program ids the kernel must report for them.
    prog_ids: [u32; 2],
    priority: u16,
    handle: u32,
}

/// Attach our programs (`[ingress, egress]`, with their kernel ids) to
/// `ifindex` as clsact filters at `priority` with our slot's handle,
/// creating (and marking) the qdisc if the interface has none, and first
/// clearing filters dead netprobes left there.
///
/// A filter that is not ours in our place is never replaced: the interface
/// is refused instead, and left as it was.
pub fn attach(
    progs: [BorrowedFd<'_>; 2],
    prog_ids: [u32; 2],
    slot: &Slot,
    ifindex: u32,
    priority: u16,
) -> Result<Filters, String> {
    let _lock = lock();
    let created =
        rtnetlink::add_clsact(ifindex).map_err(|e| format!("creating the clsact qdisc: {e}"))?;
    if created {
        if let Err(e) = rtnetlink::add_chain(ifindex, CLSACT_INGRESS, MARKER_CHAIN) {
            // Unmarked, nobody would ever remove it: undo it now.
            destroy_qdisc(ifindex);
            return Err(format!("marking the clsact qdisc we created: {e}"));
        }
    }
    let handle = slot.handle();
    let mut hooks: Vec<TcHook> = Vec::with_capacity(2);
    let mut attach_both = || -> Result<(), String> {
        let present = remove_leftovers(ifindex, slot)
            .map_err(|e| format!("cannot list the TC filters: {e}"))?;
        // Checked first rather than left to the kernel's "exists", which
        // libbpf would log as a warning at every retry.
        for parent in [CLSACT_INGRESS, CLSACT_EGRESS] {
            if let Some(f) = present.iter().find(|f| {
                f.parent == parent && f.chain == 0 && f.priority == priority && f.handle == handle
            }) {
                let who = match f.prog_id {
                    Some(id) => program_name(id).unwrap_or_else(|_| format!("id {id}")),
                    None => format!("a {} filter", f.kind),
                };
                return Err(format!(
                    "filter handle {handle:#x} at priority {priority} is taken by {who:?}; \
                     choose another tc_priority"
                ));
            }
        }
        for (point, prog) in [TC_INGRESS, TC_EGRESS].into_iter().zip(progs) {
            let mut hook = TcHook::new(prog);
            hook.ifindex(ifindex as i32)
                .attach_point(point)
                .handle(handle)
                .priority(u32::from(priority));
            hook.attach()
                .map_err(|e| format!("attaching the TC filter: {e}"))?;
            hooks.push(hook);
        }
        Ok(())
    };
    if let Err(reason) = attach_both() {
        // Leave the interface exactly as it was.
        for mut h in hooks {
            let _ = h.detach();
        }
        remove_qdisc_if_unused(ifindex);
        return Err(reason);
    }
    Ok(Filters {
        hooks: [hooks[0], hooks[1]],
        prog_ids,
        priority,
        handle,
    })
}

impl Filters {
    /// What is wrong, if our two filters are no longer in place on `ifindex`
    /// running our programs: someone deleted one (`tc filter del`), replaced
    /// it, or deleted the whole qdisc. `Err` when the kernel cannot tell us.
    pub fn check(&self, ifindex: u32) -> io::Result<Option<String>> {
        let present = rtnetlink::filters(ifindex)?;
        for (parent, direction) in [(CLSACT_INGRESS, "ingress"), (CLSACT_EGRESS, "egress")] {
            match self.find(&present, parent) {
                Some(f) if self.runs_ours(f) => {}
                Some(_) => return Ok(Some(format!("our {direction} filter was replaced"))),
                None => return Ok(Some(format!("our {direction} filter was removed"))),
            }
        }
        Ok(None)
    }

    /// Take off `ifindex` those of our filters that are still in place
    /// running our programs (a filter someone put in our place is theirs),
    /// then the qdisc when netprobe created it and nothing else is left in
    /// it. Used when leaving an interface, and to clear what is left of
    /// filters [`Filters::check`] found broken before [`attach`]ing afresh.
    pub fn detach(self, ifindex: u32) {
        let _lock = lock();
        let present = match rtnetlink::filters(ifindex) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(ifindex, error = %e, "cannot list TC filters; leaving ours attached");
                return;
            }
        };
        for (mut hook, parent) in self.hooks.into_iter().zip([CLSACT_INGRESS, CLSACT_EGRESS]) {
            if !self
                .find(&present, parent)
                .is_some_and(|f| self.runs_ours(f))
            {
                continue;
            }
            if let Err(e) = hook.detach() {
                tracing::warn!(ifindex, error = %e, "detaching a netprobe filter");
            }
        }
        remove_qdisc_if_unused(ifindex);
    }

    /// The filter at our place in one direction, whoever's it is.
    fn find<'a>(&self, present: &'a [Filter], parent: u32) -> Option<&'a Filter> {
        present.iter().find(|f| {
            f.parent == parent
                && f.chain == 0
                && f.priority == self.priority
                && f.handle == self.handle
        })
    }

    fn runs_ours(&self, f: &Filter) -> bool {
        f.prog_id.is_some_and(|id| self.prog_ids.contains(&id))
    }
}

/// Remove filters that dead netprobes left on `ifindex`: a netprobe handle,
/// one of our program names, and a slot nobody holds (or our own slot: we
/// hold no filter here, so one at our handle is an earlier owner's).
/// Returns the filters that remain.
fn remove_leftovers(ifindex: u32, slot: &Slot) -> io::Result<Vec<Filter>> {
    let mut filters = rtnetlink::filters(ifindex)?;
    filters.retain(|f| {
        let index = f.handle.wrapping_sub(FILTER_HANDLE);
        if index >= SLOTS || f.kind != "bpf" || f.chain != 0 {
            return true;
        }
        let ours = f
            .prog_id
            .and_then(|id| program_name(id).ok())
            .is_some_and(|name| PROGRAM_NAMES.contains(&name.as_str()));
        if !ours || (index != slot.index && slot_alive(index)) {
            return true;
        }
        let point = if f.parent == CLSACT_INGRESS {
            libbpf_sys::BPF_TC_INGRESS
        } else {
            libbpf_sys::BPF_TC_EGRESS
        };
        let hook = hook_at(ifindex, point);
        let opts = libbpf_sys::bpf_tc_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as libbpf_sys::size_t,
            handle: f.handle,
            priority: u32::from(f.priority),
            ..Default::default()
        };
        // SAFETY: initialised hook and opts with `sz` set, only read by
        // libbpf; detaching needs no program fd.
        let err = unsafe { libbpf_sys::bpf_tc_detach(&hook, &opts) };
        if err != 0 {
            let e = io::Error::from_raw_os_error(-err);
            tracing::warn!(ifindex, handle = f.handle, error = %e, "removing a netprobe filter left behind");
            return true;
        }
        tracing::info!(
            ifindex,
            handle = format_args!("{:#x}", f.handle),
            priority = f.priority,
            "removed a netprobe filter left behind by an instance that is gone"
        );
        false
    });
    Ok(filters)
}

/// The name of a loaded program, by id.
fn program_name(id: u32) -> io::Result<String> {
    // SAFETY: plain syscalls on an fd we own and close; `info` is a zeroed
    // bpf_prog_info and `len` its size, as the kernel expects.
    unsafe {
        let fd = libbpf_sys::bpf_prog_get_fd_by_id(id);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut info = libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
        let err = libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len);
        libc::close(fd);
        if err != 0 {
            return Err(io::Error::from_raw_os_error(-err));
        }
        Ok(std::ffi::CStr::from_ptr(info.name.as_ptr())
            .to_string_lossy()
            .into_owned())
    }
}

/// Remove the clsact qdisc of `ifindex` if netprobe created it (it carries
/// [`MARKER_CHAIN`]) and no filter of anyone is left in it. Called with the
/// lock held.
fn remove_qdisc_if_unused(ifindex: u32) {
    match rtnetlink::chains(ifindex, CLSACT_INGRESS) {
        Ok(chains) if chains.contains(&MARKER_CHAIN) => {}
        // Not ours, or no qdisc at all (which lists as an error).
        _ => return,
    }
    match rtnetlink::filters(ifindex) {
        Ok(f) if f.is_empty() => destroy_qdisc(ifindex),
        Ok(f) => tracing::debug!(
            ifindex,
            filters = f.len(),
            "keeping the clsact qdisc netprobe created: it holds other filters"
        ),
        Err(e) => {
            tracing::warn!(ifindex, error = %e, "keeping the clsact qdisc netprobe created: cannot list its filters");
        }
    }
}

fn destroy_qdisc(ifindex: u32) {
    if let Err(e) = rtnetlink::del_clsact(ifindex) {
        tracing::warn!(ifindex, error = %e, "removing the clsact qdisc netprobe created");
    }
}

/// The libbpf description of one direction of a clsact qdisc.
fn hook_at(ifindex: u32, point: libbpf_sys::bpf_tc_attach_point) -> libbpf_sys::bpf_tc_hook {
    libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as libbpf_sys::size_t,
        ifindex: ifindex as i32,
        attach_point: point,
        ..Default::default()
    }
}
