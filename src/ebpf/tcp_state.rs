//! TCP state tracking (`bpf/tcp_state.bpf.c`): per-state socket counts kept
//! current by the `inet_sock_set_state` tracepoint, so that a scrape of a
//! host with many connections need not dump every socket over netlink.
//!
//! The tracepoint sees every state change of a full socket, and nothing of
//! the two kinds of mini-socket: request sockets (SYN_RECV) and timewait
//! sockets (TIME_WAIT, and orphaned FIN_WAIT2, which the kernel also parks
//! in a timewait socket). So the states split in two:
//!
//! * [`EVENT_STATES`] are counted here: a seed taken at start plus the net
//!   change the program has recorded since it was attached.
//! * the rest ([`NETLINK_STATES`]: SYN_RECV, FIN_WAIT2, TIME_WAIT and CLOSE,
//!   which only sockets caught mid-teardown are in) still come from a
//!   netlink dump, filtered by the kernel to just those states, which on a
//!   busy server are a small share of the sockets.
//!
//! Seeding without a race: the program is attached before the seeding dump,
//! and while `seeding` is set it remembers, per socket cookie, the state each
//! socket had when it *first* changed after attach. A socket's state at
//! attach time is that remembered state if it changed, else what the dump
//! saw. The seed is therefore the count at attach time, exactly the point
//! from which the program's deltas run. The dump is taken twice and merged
//! by cookie, because a dump that spans several reads can skip a socket
//! whose hash bucket changed between reads; the residual error is a socket
//! skipped by both dumps, and is logged if the cookie map ever overflowed.
//!
//! The module also counts connections established per process, for
//! `herakles_group_net_connections_total`: active opens are credited to the
//! task that called `connect()` (recorded at SYN_SENT, in its context),
//! passive opens to the task that called `listen()` on the local port.

use std::sync::{Arc, Mutex};

use herakles_core::BuildContext;

use super::{preflight, status, PartState};
use crate::config::Config;
use crate::sock_diag::state::{mask, TcpState, NSTATES};

/// The part's name in [`super::Status`].
pub const PART: &str = "tcp_tracking";

/// States whose every entry and exit fires the tracepoint.
pub const EVENT_STATES: [TcpState; 7] = [
    TcpState::Established,
    TcpState::SynSent,
    TcpState::FinWait1,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::Listen,
    TcpState::Closing,
];

/// The states counted from netlink even while tracking runs: those of
/// mini-sockets, which the tracepoint never sees, and CLOSE, which only
/// sockets caught mid-teardown are in.
pub const NETLINK_STATES: u32 = mask(&[
    TcpState::SynRecv,
    TcpState::FinWait2,
    TcpState::TimeWait,
    TcpState::Close,
    TcpState::NewSynRecv,
]);

/// What the program has counted, read at one scrape.
#[derive(Debug, Clone)]
pub struct Counts {
    /// Current sockets per state number; meaningful for [`EVENT_STATES`]
    /// only.
    pub sockets: [i64; NSTATES],
    /// Tracepoint events per (old, new) state, `old * NSTATES + new`.
    pub transitions: Vec<u64>,
    /// Connections whose owner could not be recorded (a map was full, or a
    /// passive connection's listener was unknown).
    pub connections_lost: u64,
}

/// Connections established by one process since tracking started.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub tgid: u32,
    /// Start time of the process in ns since boot, so a reused pid is a
    /// different owner.
    pub start_ns: u64,
    pub comm: String,
}

/// The loaded program, or the reason it is not.
pub struct TcpTracking {
    loaded: Mutex<Option<imp::Loaded>>,
}

impl TcpTracking {
    /// The exporter's one instance: loaded, attached and seeded on first
    /// request. Never fails: when tracking cannot run, [`super::Status`]
    /// says why and every reader gets `None`.
    pub fn get(ctx: &BuildContext) -> Arc<TcpTracking> {
        ctx.service(|ctx| {
            let status = status(ctx);
            let Some(config) = ctx.globals::<Config>() else {
                status.set(
                    PART,
                    PartState::Disabled {
                        reason: "no exporter configuration (embedded collector)".into(),
                    },
                );
                return Ok(TcpTracking::off());
            };
            if let Err(state) = preflight(
                config.enable_ebpf,
                ctx.paths(),
                config.enable_tcp_tracking,
                "enable_tcp_tracking",
            ) {
                status.set(PART, state);
                return Ok(TcpTracking::off());
            }
            match imp::Loaded::start() {
                Ok((loaded, detail)) => {
                    status.set(PART, PartState::Active { detail });
                    Ok(TcpTracking {
                        loaded: Mutex::new(Some(loaded)),
                    })
                }
                Err(reason) => {
                    status.set(PART, PartState::Failed { reason });
                    Ok(TcpTracking::off())
                }
            }
        })
        .expect("TcpTracking init never fails")
    }

    fn off() -> TcpTracking {
        TcpTracking {
            loaded: Mutex::new(None),
        }
    }

    /// Whether the program runs.
    pub fn active(&self) -> bool {
        self.lock().is_some()
    }

    /// Current counts, `None` when inactive; an error reading a map.
    pub fn counts(&self) -> Option<Result<Counts, String>> {
        self.lock().as_ref().map(imp::Loaded::counts)
    }

    /// Every process's connection count. Entries of processes for which
    /// `alive(tgid)` is false are removed after being read, so the map holds
    /// live processes only; a later connection credited to such a process
    /// (a listener that outlived its owner) starts a fresh entry from zero.
    pub fn connections(
        &self,
        alive: &dyn Fn(u32) -> bool,
    ) -> Option<Result<Vec<(Owner, u64)>, String>> {
        self.lock().as_ref().map(|l| l.connections(alive))
    }

    /// How full each of the program's hash maps is; empty when inactive.
    pub fn map_usage(&self) -> Vec<super::MapUsage> {
        self.lock()
            .as_ref()
            .map(imp::Loaded::map_usage)
            .unwrap_or_default()
    }

    /// Detach the program and free its maps.
    pub fn shutdown(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<imp::Loaded>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(feature = "ebpf")]
mod imp {
    use std::collections::HashMap;
    use std::mem::MaybeUninit;
    use std::os::unix::fs::MetadataExt;

    use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
    use libbpf_rs::{MapCore, MapFlags, OpenObject};

    use super::{Counts, Owner, EVENT_STATES, NSTATES};
    use crate::sock_diag::state::mask;
    use crate::sock_diag::{self, DiagSocket};

    mod skel {
        include!(concat!(env!("OUT_DIR"), "/tcp_state.skel.rs"));
    }
    use skel::{TcpStateSkel, TcpStateSkelBuilder};

    /// `struct counters` in the C source: transitions, deltas, two losses.
    const COUNTERS_LEN: usize = (NSTATES * NSTATES + NSTATES + 2) * 8;

    pub struct Loaded {
        skel: TcpStateSkel<'static>,
        seed: [i64; NSTATES],
    }

    fn u64_at(b: &[u8], i: usize) -> u64 {
        b.get(i * 8..i * 8 + 8)
            .map(|s| u64::from_ne_bytes(s.try_into().expect("8 bytes")))
            .unwrap_or(0)
    }

    impl Loaded {
        /// Load, attach, seed. The `String` on success describes what runs.
        pub fn start() -> Result<(Loaded, String), String> {
            // Our namespace, as the thread building us sees it: the program
            // counts sockets of this namespace only, like netlink does.
            let netns = std::fs::metadata("/proc/thread-self/ns/net")
                .map_err(|e| format!("cannot read our network namespace: {e}"))?
                .ino();
            // The skeleton borrows its object storage for as long as it
            // lives; it lives as long as the exporter, so leak it once.
            let storage: &'static mut MaybeUninit<OpenObject> =
                Box::leak(Box::new(MaybeUninit::uninit()));
            let mut open = TcpStateSkelBuilder::default()
                .open(storage)
                .map_err(|e| format!("opening the tcp_state program: {e}"))?;
            open.maps
                .rodata_data
                .as_mut()
                .ok_or("tcp_state program has no rodata")?
                .netns_ino = netns as u32;
            let mut skel = open
                .load()
                .map_err(|e| format!("loading the tcp_state program: {e}"))?;
            skel.attach()
                .map_err(|e| format!("attaching tp_btf/inet_sock_set_state: {e}"))?;

            let mut buf = Vec::new();
            let tracked = mask(&EVENT_STATES);
            let mut at_attach: HashMap<u64, u8> = HashMap::new();
            for _ in 0..2 {
                let dump = sock_diag::sockets(tracked, &mut buf)
                    .map_err(|e| format!("seeding from netlink sock_diag: {e}"))?;
                at_attach.extend(
                    dump.into_iter()
                        .map(|DiagSocket { state, cookie }| (cookie, state)),
                );
            }
            // SAFETY: `seeding` is a u32 in the program's mmapped .data; the
            // program only reads it. A volatile store makes it visible now.
            unsafe {
                let data = skel
                    .maps
                    .data_data
                    .as_deref_mut()
                    .ok_or("tcp_state program has no data section")?;
                std::ptr::write_volatile(&mut data.seeding, 0);
            }
            let mut changed = 0usize;
            for key in skel.maps.seed_first.keys().collect::<Vec<_>>() {
                if let Ok(Some(v)) = skel.maps.seed_first.lookup(&key, MapFlags::ANY) {
                    let cookie = u64_at(&key, 0);
                    let first = u32::from_ne_bytes(v[..4].try_into().expect("u32 value"));
                    at_attach.insert(cookie, first as u8);
                    changed += 1;
                }
                let _ = skel.maps.seed_first.delete(&key);
            }
            let mut seed = [0i64; NSTATES];
            for state in at_attach.into_values() {
                if EVENT_STATES.iter().any(|s| *s as u8 == state) {
                    seed[usize::from(state)] += 1;
                }
            }
            let loaded = Loaded { skel, seed };
            let lost = loaded.counters_raw()?.1;
            if lost > 0 {
                tracing::warn!(
                    lost,
                    "TCP state seeding: {lost} sockets changed state faster than they could be \
                     recorded; the state gauges may be off by that many until restart"
                );
            }
            let seeded: i64 = seed.iter().sum();
            Ok((
                loaded,
                format!(
                    "tp_btf/inet_sock_set_state; seeded {seeded} sockets, {changed} changed \
                     state while seeding"
                ),
            ))
        }

        /// The per-CPU counters summed: all fields, and the seeding losses.
        fn counters_raw(&self) -> Result<(Vec<u64>, u64), String> {
            let cpus = self
                .skel
                .maps
                .tcp_state_map
                .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| format!("reading tcp_state_map: {e}"))?
                .ok_or("tcp_state_map has no entry 0")?;
            let mut sum = vec![0u64; COUNTERS_LEN / 8];
            for cpu in &cpus {
                for (i, s) in sum.iter_mut().enumerate() {
                    // Deltas are signed; wrapping addition sums them right.
                    *s = s.wrapping_add(u64_at(cpu, i));
                }
            }
            let seed_lost = sum[NSTATES * NSTATES + NSTATES];
            Ok((sum, seed_lost))
        }

        pub fn counts(&self) -> Result<Counts, String> {
            let (sum, _) = self.counters_raw()?;
            let base = NSTATES * NSTATES;
            let mut sockets = [0i64; NSTATES];
            for s in EVENT_STATES {
                let s = s as usize;
                sockets[s] = self.seed[s].wrapping_add(sum[base + s] as i64);
            }
            Ok(Counts {
                sockets,
                transitions: sum[..base].to_vec(),
                connections_lost: sum[base + NSTATES + 1],
            })
        }

        pub fn map_usage(&self) -> Vec<crate::ebpf::MapUsage> {
            crate::ebpf::hash_map_usage(self.skel.object())
        }

        pub fn connections(
            &self,
            alive: &dyn Fn(u32) -> bool,
        ) -> Result<Vec<(Owner, u64)>, String> {
            let map = &self.skel.maps.conn_by_owner;
            let mut out = Vec::new();
            for key in map.keys().collect::<Vec<_>>() {
                let Some(value) = map
                    .lookup(&key, MapFlags::ANY)
                    .map_err(|e| format!("reading conn_by_owner: {e}"))?
                else {
                    continue;
                };
                let tgid = u64_at(&key, 0) as u32;
                let comm = value.get(8..24).unwrap_or(&[]);
                let comm = comm.split(|&b| b == 0).next().unwrap_or(&[]);
                let owner = Owner {
                    tgid,
                    start_ns: u64_at(&key, 1),
                    comm: String::from_utf8_lossy(comm).into_owned(),
                };
                out.push((owner, u64_at(&value, 0)));
                if !alive(tgid) {
                    let _ = map.delete(&key);
                }
            }
            Ok(out)
        }
    }
}

#[cfg(not(feature = "ebpf"))]
mod imp {
    use super::{Counts, Owner};

    /// Never constructed: preflight stops a build without the feature.
    pub enum Loaded {}

    impl Loaded {
        pub fn start() -> Result<(Loaded, String), String> {
            Err("this binary was built without the `ebpf` feature".into())
        }
        pub fn counts(&self) -> Result<Counts, String> {
            match *self {}
        }
        pub fn map_usage(&self) -> Vec<crate::ebpf::MapUsage> {
            match *self {}
        }
        pub fn connections(&self, _: &dyn Fn(u32) -> bool) -> Result<Vec<(Owner, u64)>, String> {
            match *self {}
        }
    }
}
