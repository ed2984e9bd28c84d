//! IPv4 and IPv6 TCP sockets counted per connection state.
//!
//! The counts come from a `NETLINK_SOCK_DIAG` dump (what `ss` uses, see
//! `crate::sock_diag`) rather than `/proc/net/tcp`: the kernel formats
//! `/proc/net/tcp` as text, one line per socket, and re-walks its hash
//! tables for every page the reader asks for, so on a host with 100 000
//! sockets reading it costs tens of megabytes of formatting and noticeable
//! CPU. The netlink dump hands over small binary records instead, and we
//! read them into one reused buffer without allocating per socket.
//!
//! Both sources show the same sockets: listeners, connections, half-open
//! connections in SYN_RECV (the kernel's request sockets) and TIME_WAIT.
//! Sockets that are only bound are in neither (`ss` hides them too).
//!
//! `/proc/net/tcp` remains as a fallback for systems where netlink is
//! refused (a seccomp profile, a kernel without `inet_diag`) and for
//! `--path.procfs` pointing elsewhere than `/proc`: netlink always answers
//! for the exporter's own network namespace, so it cannot see a fixture tree
//! or another namespace's `/proc`.
//!
//! With eBPF TCP state tracking active (`enable_tcp_tracking`, see
//! `crate::ebpf::tcp_state` and docs/ebpf.md, "TCP state tracking"), the
//! states whose every change fires the `inet_sock_set_state` tracepoint come from the
//! program's counts, and the dump is filtered by the kernel to the states it
//! cannot track (SYN_RECV, FIN_WAIT2, TIME_WAIT, CLOSE), which makes a
//! scrape of a host with many connections much cheaper. The tracked scrape
//! also exports `herakles_system_tcp_transitions_total{from,to}`.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use herakles_core::{
    for_each_line, inventory, BuildCollector, BuildContext, Collector, Desc, Error, MetricSink,
    Registration, Result, ScrapeContext,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ebpf::tcp_state::{self, TcpTracking, EVENT_STATES, NETLINK_STATES};
use crate::sock_diag::state::{TcpState, COUNTED_MASK, NSTATES};
use crate::sock_diag::{self, Counts};

/// One gauge per kernel TCP state, indexed by the state number minus one
/// (`include/net/tcp_states.h`: ESTABLISHED is 1, CLOSING is 11).
const STATE_DESCS: [Desc; 11] = [
    Desc::gauge(
        "herakles_system_tcp_connections_established",
        "TCP sockets in ESTABLISHED state (IPv4 and IPv6).",
    ),
    Desc::gauge(
        "herakles_system_tcp_connections_syn_sent",
        "TCP sockets in SYN_SENT state (IPv4 and IPv6).",
    ),
    Desc::gauge(
        "herakles_system_tcp_connections_syn_recv",
        "TCP sockets in SYN_RECV state, including half-open request sockets (IPv4 and IPv6).",
    ),
    Desc::gauge(
        "herakles_system_tcp_connections_fin_wait1",
        "TCP sockets in FIN_WAIT1 state (IPv4 and IPv6).",
    ),
    Desc::gauge(
        "herakles_system_tcp_connections_fin_wait2",
        "TCP sockets in FIN_WAIT2 state (IPv4 and IPv6).",
    ),
    Desc::gauge(
        "herakles_system_tcp_connections_time_wait",
        "TCP sockets in TIME_WAIT state (IPv4 and IPv6).",
    ),
    Desc::gauge(
        "herakles_system_tcp_connections_close",
        "TCP sockets in CLOSE state (IPv4 and IPv6).",
    ),
    Desc::gauge(
        "herakles_system_tcp_connections_close_wait",
        "TCP sockets in CLOSE_WAIT state (IPv4 and IPv6).",
    ),
    Desc::gauge(
        "herakles_system_tcp_connections_last_ack",
        "TCP sockets in LAST_ACK state (IPv4 and IPv6).",
    ),
    Desc::gauge(
        "herakles_system_tcp_connections_listen",
        "TCP sockets in LISTEN state (IPv4 and IPv6).",
    ),
    Desc::gauge(
        "herakles_system_tcp_connections_closing",
        "TCP sockets in CLOSING state (IPv4 and IPv6).",
    ),
];

const TRANSITIONS: Desc = Desc::counter(
    "herakles_system_tcp_transitions_total",
    "TCP state changes the kernel reported since the exporter started (eBPF, enable_tcp_tracking).",
);
const UNATTRIBUTED: Desc = Desc::counter(
    "herakles_system_tcp_connections_unattributed_total",
    "Established TCP connections not credited to any process group (eBPF map full, or listener unknown).",
);

/// Where the counts come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Netlink, falling back to /proc/net/tcp if netlink fails; /proc/net/tcp
    /// alone when --path.procfs is not /proc.
    #[default]
    Auto,
    /// NETLINK_SOCK_DIAG only; a failure fails the collector.
    Netlink,
    /// <procfs>/net/tcp and <procfs>/net/tcp6 only.
    Procfs,
}

/// Config section `collectors.tcp`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    /// Where to count sockets: "auto" (netlink, falling back to
    /// /proc/net/tcp{,6} on error; /proc/net/tcp{,6} alone when
    /// --path.procfs is not /proc, since netlink cannot see another tree),
    /// "netlink" or "procfs". netlink is much cheaper with many sockets.
    pub source: Source,
}

/// See the module documentation.
pub struct Tcp {
    /// `Auto` only when netlink may be tried; resolved at build time.
    source: Source,
    /// The netlink receive buffer, kept between scrapes so a scrape of a
    /// busy host does not reallocate it.
    buffers: Mutex<Buffers>,
    fallback_logged: AtomicBool,
    /// The eBPF state counts, when netlink may be used and tracking runs.
    tracking: Option<Arc<TcpTracking>>,
    tracking_error_logged: AtomicBool,
}

#[derive(Default)]
struct Buffers {
    netlink: Vec<u8>,
}

impl Collector for Tcp {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tracked) = self.tracked(&mut buffers.netlink) {
            emit(&tracked.0, out);
            let c = &tracked.1;
            {
                let mut f = out.family(&TRANSITIONS);
                for (i, n) in c.transitions.iter().enumerate().filter(|(_, n)| **n > 0) {
                    f.sample(
                        &[
                            ("from", TcpState::name_of((i / NSTATES) as u8)),
                            ("to", TcpState::name_of((i % NSTATES) as u8)),
                        ],
                        *n as f64,
                    );
                }
            }
            out.single(&UNATTRIBUTED, c.connections_lost as f64);
            return Ok(());
        }
        let counts = match self.source {
            Source::Netlink => sock_diag::counts(COUNTED_MASK, &mut buffers.netlink)
                .map_err(|e| Error::msg(format!("netlink sock_diag: {e}")))?,
            Source::Procfs => procfs_counts(ctx, out)?,
            Source::Auto => match sock_diag::counts(COUNTED_MASK, &mut buffers.netlink) {
                Ok(c) => c,
                Err(e) => {
                    if !self.fallback_logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            error = %e,
                            "netlink sock_diag failed; counting TCP states from /proc/net/tcp instead"
                        );
                    }
                    procfs_counts(ctx, out)?
                }
            },
        };
        emit(&counts, out);
        Ok(())
    }

    fn shutdown(&self) {
        if let Some(t) = &self.tracking {
            t.shutdown();
        }
    }
}

impl Tcp {
    /// With tracking: the event-tracked states from the eBPF counts, the
    /// others from a netlink dump of just those states. `None` when tracking
    /// is off or this scrape could not use it (the caller then dumps all
    /// states, so a failing map read costs speed, never correctness).
    fn tracked(&self, buf: &mut Vec<u8>) -> Option<(Counts, tcp_state::Counts)> {
        let tracking = self.tracking.as_ref()?;
        let result = tracking.counts()?.and_then(|c| {
            let mut counts = sock_diag::counts(NETLINK_STATES, buf)
                .map_err(|e| format!("netlink sock_diag: {e}"))?;
            for s in EVENT_STATES {
                let s = s as usize;
                // A negative count would mean a missed event; never export it.
                counts.by_state[s] = c.sockets[s].max(0) as u64;
            }
            Ok((counts, c))
        });
        match result {
            Ok(r) => Some(r),
            Err(e) => {
                if !self.tracking_error_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "TCP state tracking unreadable; dumping all sockets");
                }
                None
            }
        }
    }
}

fn emit(counts: &Counts, out: &mut MetricSink) {
    for _ in 0..counts.unknown {
        out.parse_error();
    }
    for (desc, n) in STATE_DESCS.iter().zip(&counts.by_state[1..]) {
        out.single(desc, *n as f64);
    }
}

/// Count `<procfs>/net/tcp` and `tcp6`. A missing `tcp6` means a kernel
/// without IPv6: zero IPv6 sockets, not an error.
///
/// The tables are read a line at a time: at about 150 bytes per socket, a
/// host with a million connections has a 150 MB table, which must cost the
/// exporter time but not memory. Past [`TABLE_LIMIT`] the file is taken
/// for something that is not a kernel table and the collection fails.
fn procfs_counts(ctx: &ScrapeContext, out: &mut MetricSink) -> Result<Counts> {
    let mut counts = Counts::default();
    for (file, optional) in [("net/tcp", false), ("net/tcp6", true)] {
        let path = ctx.paths().proc(file);
        match for_each_line(&path, TABLE_LIMIT, |line| {
            count_line(line, &mut counts, out)
        }) {
            Ok(()) => {}
            Err(e) if optional && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(counts)
}

/// The most read of one table: three and a half million sockets.
const TABLE_LIMIT: usize = 512 << 20;

/// Count the states of a `/proc/net/tcp` table:
///
/// ```text
///   sl  local_address rem_address   st tx_queue rx_queue ...
///    0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 ...
/// ```
#[cfg(test)]
fn count_proc_net_tcp(text: &[u8], counts: &mut Counts, out: &mut MetricSink) {
    for line in text.split(|&b| b == b'\n') {
        count_line(line, counts, out);
    }
}

/// Count one line of a `/proc/net/tcp` table. Works on bytes, so a line of
/// garbage (even invalid UTF-8) costs that line and not the file.
/// Unparsable lines are skipped and counted; nothing is allocated.
fn count_line(line: &[u8], counts: &mut Counts, out: &mut MetricSink) {
    let mut fields = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let Some(slot) = fields.next() else {
        return; // blank line
    };
    if slot == b"sl" {
        return; // header
    }
    let state = if slot.ends_with(b":") {
        line_state(fields)
    } else {
        None
    };
    match state {
        Some(s) => counts.add(s),
        None => out.parse_error(),
    }
}

/// The state column of a table line, after its slot number: two hex digits
/// behind the local and remote `address:port` columns.
fn line_state<'a>(mut fields: impl Iterator<Item = &'a [u8]>) -> Option<u8> {
    let local = fields.next()?;
    let remote = fields.next()?;
    if !local.contains(&b':') || !remote.contains(&b':') {
        return None;
    }
    match fields.next()? {
        [hi, lo] => Some((hex_digit(*hi)? << 4) | hex_digit(*lo)?),
        _ => None,
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

impl BuildCollector for Tcp {
    type Config = TcpConfig;
    fn build(config: TcpConfig, ctx: &BuildContext) -> Result<Self> {
        let source = match config.source {
            Source::Auto if ctx.paths().procfs != Path::new("/proc") => Source::Procfs,
            s => s,
        };
        // Tracking answers for our own network namespace, like netlink; a
        // /proc/net/tcp source (another tree) gets no use from it.
        let tracking = (source != Source::Procfs)
            .then(|| TcpTracking::get(ctx))
            .filter(|t| t.active());
        Ok(Tcp {
            source,
            buffers: Mutex::default(),
            fallback_logged: AtomicBool::new(false),
            tracking,
            tracking_error_logged: AtomicBool::new(false),
        })
    }
}

inventory::submit! {
    Registration::new::<Tcp>(
        "tcp",
        "TCP sockets per connection state, IPv4 and IPv6 (netlink sock_diag or /proc/net/tcp)",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::{example_config, fixture};
    use herakles_core::testing::{collect_once, Collected};
    use herakles_core::Paths;
    use proptest::prelude::*;
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const NAMES: [&str; 11] = [
        "established",
        "syn_sent",
        "syn_recv",
        "fin_wait1",
        "fin_wait2",
        "time_wait",
        "close",
        "close_wait",
        "last_ack",
        "listen",
        "closing",
    ];

    /// The state gauges' names follow the state table, in number order.
    #[test]
    fn gauges_follow_the_state_table() {
        for ((desc, state), name) in STATE_DESCS.iter().zip(TcpState::COUNTED).zip(NAMES) {
            assert_eq!(state.name(), name);
            assert_eq!(desc.name, format!("herakles_system_tcp_connections_{name}"));
        }
    }

    /// The 11 gauges as (state, value), asserting that each is present once.
    fn states(c: &Collected) -> Vec<(&'static str, f64)> {
        NAMES
            .iter()
            .map(|s| {
                let name = format!("herakles_system_tcp_connections_{s}");
                assert_eq!(c.count(&name), 1, "{name}");
                (*s, c.value(&name, &[]).unwrap())
            })
            .collect()
    }

    fn expect(pairs: &[(&'static str, f64)]) -> Vec<(&'static str, f64)> {
        NAMES
            .iter()
            .map(|s| {
                (
                    *s,
                    pairs.iter().find(|(n, _)| n == s).map_or(0.0, |(_, v)| *v),
                )
            })
            .collect()
    }

    #[test]
    fn fixture_counts_both_families_and_counts_garbage() {
        // auto with a procfs root other than /proc reads the fixture tree.
        let c = collect_once::<Tcp>(TcpConfig::default(), fixture("tcp")).unwrap();
        assert_eq!(
            states(&c),
            expect(&[
                ("established", 5.0),
                ("syn_sent", 1.0),
                ("syn_recv", 1.0),
                ("fin_wait1", 1.0),
                ("fin_wait2", 1.0),
                ("time_wait", 2.0),
                ("close", 1.0),
                ("close_wait", 1.0),
                ("last_ack", 1.0),
                ("listen", 3.0),
                ("closing", 1.0),
            ])
        );
        assert_eq!(c.parse_errors, 5);
    }

    #[test]
    fn missing_tcp6_is_zero_ipv6_and_missing_tcp_names_the_file() {
        let config = TcpConfig {
            source: Source::Procfs,
        };
        let c = collect_once::<Tcp>(config.clone(), fixture("tcp-v4only")).unwrap();
        assert_eq!(states(&c), expect(&[("established", 1.0), ("listen", 1.0)]));
        let err = collect_once::<Tcp>(config, fixture("does-not-exist")).unwrap_err();
        assert!(
            err.to_string().contains("does-not-exist/proc/net/tcp: "),
            "{err}"
        );
    }

    #[test]
    fn large_table_parses_fast() {
        let mut text = Vec::with_capacity(100_000 * 160);
        text.extend_from_slice(b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n");
        for i in 0..100_000u32 {
            let state = [1u8, 1, 1, 6, 10][i as usize % 5];
            writeln!(
                text,
                "{i:6}: 0100007F:{:04X} 0100007F:1F90 {state:02X} 00000000:00000000 00:00000000 00000000  1000        0 {} 1 0000000000000000 20 4 30 10 -1",
                i % 65536,
                100_000 + i
            )
            .unwrap();
        }
        let mut counts = Counts::default();
        let mut out = MetricSink::new();
        let start = Instant::now();
        count_proc_net_tcp(&text, &mut counts, &mut out);
        let took = start.elapsed();
        eprintln!(
            "parsed 100000 lines ({} MB) in {took:?}",
            text.len() / 1_000_000
        );
        assert_eq!(counts.by_state[1], 60_000);
        assert_eq!(counts.by_state[6], 20_000);
        assert_eq!(counts.by_state[10], 20_000);
        assert_eq!(out.parse_errors(), 0);
    }

    /// Run `body` on a thread of its own, in a new network namespace whose
    /// `lo` is up. Network namespaces are per thread, so the rest of the
    /// test process is unaffected. `None` when unsharing is not permitted.
    fn in_new_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        std::thread::spawn(move || {
            // SAFETY: unshare has no memory-safety preconditions.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                herakles_core::testing::skip(&format!(
                    "cannot unshare a network namespace ({}); the live TCP test needs root",
                    io::Error::last_os_error()
                ));
                return None;
            }
            lo_up().expect("bring lo up in the new namespace");
            Some(body())
        })
        .join()
        .expect("netns test thread panicked")
    }

    /// `ip link set lo up`, by ioctl.
    fn lo_up() -> io::Result<()> {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: both ioctls read and write only `req`, a valid ifreq.
        unsafe {
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
                return Err(io::Error::last_os_error());
            }
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    fn connect_pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        (client, server)
    }

    /// Close the client, wait for the server to see the FIN, so the server
    /// is in CLOSE_WAIT and the client (orphaned) in FIN_WAIT2.
    fn half_close(l: &TcpListener) -> TcpStream {
        let (client, mut server) = connect_pair(l);
        drop(client);
        let mut byte = [0u8; 1];
        assert_eq!(server.read(&mut byte).unwrap(), 0);
        server
    }

    fn collect(source: Source, procfs: &str) -> Vec<(&'static str, f64)> {
        let paths = Paths {
            procfs: procfs.into(),
            ..Paths::default()
        };
        let c = collect_once::<Tcp>(TcpConfig { source }, paths).unwrap();
        assert_eq!(c.parse_errors, 0);
        states(&c)
    }

    /// Poll the netlink counts until they equal `want` (loopback delivers
    /// in softirq context, possibly just after a syscall returned).
    fn settle(want: &[(&'static str, f64)]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = collect(Source::Netlink, "/proc");
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "states never settled:\n got {got:?}\nwant {want:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ss -tan` from this thread (a child inherits the thread's network
    /// namespace), counted per state; `None` when `ss` is not installed.
    fn ss_counts() -> Option<Vec<(&'static str, f64)>> {
        let output = match std::process::Command::new("ss").arg("-tan").output() {
            Ok(o) => o,
            Err(e) => {
                herakles_core::testing::skip(&format!(
                    "ss cross-check: cannot run ss ({e}); install iproute2"
                ));
                return None;
            }
        };
        assert!(output.status.success(), "ss -tan failed: {output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        let mut counts = expect(&[]);
        for line in text.lines().skip(1) {
            let name = match line.split_whitespace().next() {
                Some("ESTAB") => "established",
                Some("SYN-SENT") => "syn_sent",
                Some("SYN-RECV") => "syn_recv",
                Some("FIN-WAIT-1") => "fin_wait1",
                Some("FIN-WAIT-2") => "fin_wait2",
                Some("TIME-WAIT") => "time_wait",
                Some("UNCONN") => "close",
                Some("CLOSE-WAIT") => "close_wait",
                Some("LAST-ACK") => "last_ack",
                Some("LISTEN") => "listen",
                Some("CLOSING") => "closing",
                other => panic!("unexpected ss state {other:?} in {line:?}"),
            };
            counts.iter_mut().find(|(n, _)| *n == name).unwrap().1 += 1.0;
        }
        Some(counts)
    }

    /// Sockets in seven known states in a private network namespace, then
    /// exact counts from netlink, from /proc/thread-self/net/tcp{,6} (the
    /// thread's namespace; /proc/self/net would follow the main thread's)
    /// and from `ss -tan`.
    #[test]
    fn live_states_in_private_netns_match_exactly() {
        let Some(()) = in_new_netns(|| {
            let v4: SocketAddr = "127.0.0.1:0".parse().unwrap();
            let v6: SocketAddr = "[::1]:0".parse().unwrap();
            let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();

            // Listeners: 3 on IPv4, 2 on IPv6 when the kernel has it.
            let listeners4: Vec<TcpListener> =
                (0..3).map(|_| TcpListener::bind(v4).unwrap()).collect();
            let listeners6: Vec<TcpListener> = match TcpListener::bind(v6) {
                Ok(l) => vec![l, TcpListener::bind(v6).unwrap()],
                Err(e) => {
                    eprintln!("no IPv6 loopback ({e}); testing IPv4 only");
                    Vec::new()
                }
            };
            let mut established = 0.0;
            // 2 established pairs per family.
            for l in listeners4.iter().take(1).chain(listeners6.first()) {
                for _ in 0..2 {
                    keep.push(Box::new(connect_pair(l)));
                    established += 2.0;
                }
            }
            // 3 TIME_WAIT: the client closes first, then the server; the
            // server's FIN finds the client in FIN_WAIT2 and sends it to
            // TIME_WAIT, the server's side vanishes after LAST_ACK.
            for _ in 0..3 {
                drop(half_close(&listeners4[1]));
            }
            // 2 half-closed: client FIN_WAIT2, server CLOSE_WAIT.
            for _ in 0..2 {
                keep.push(Box::new(half_close(&listeners4[2])));
            }
            // 2 SYN_RECV: with TCP_DEFER_ACCEPT the listener ignores the
            // handshake's bare ACK, so its request socket stays half-open
            // while the client is already ESTABLISHED.
            let deferring = TcpListener::bind(v4).unwrap();
            let secs: libc::c_int = 30;
            // SAFETY: setsockopt reads `secs`, a c_int, of the given size.
            let rc = unsafe {
                libc::setsockopt(
                    deferring.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_DEFER_ACCEPT,
                    (&secs as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "TCP_DEFER_ACCEPT: {}", io::Error::last_os_error());
            for _ in 0..2 {
                keep.push(Box::new(
                    TcpStream::connect(deferring.local_addr().unwrap()).unwrap(),
                ));
                established += 1.0;
            }
            // A listener with backlog 1 whose accept queue two unaccepted
            // connections fill; further SYNs are dropped and stay SYN_SENT.
            let full =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            full.bind(&v4.into()).unwrap();
            full.listen(1).unwrap();
            let full_addr = full.local_addr().unwrap().as_socket().unwrap();
            for _ in 0..2 {
                keep.push(Box::new(TcpStream::connect(full_addr).unwrap()));
                established += 2.0;
            }
            let listen = (listeners4.len() + listeners6.len() + 2) as f64;
            let mut want = expect(&[
                ("established", established),
                ("syn_recv", 2.0),
                ("fin_wait2", 2.0),
                ("time_wait", 3.0),
                ("close_wait", 2.0),
                ("listen", listen),
            ]);
            // The queue must be full before the SYN_SENT clients knock.
            settle(&want);
            for _ in 0..2 {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.set_nonblocking(true).unwrap();
                match s.connect(&full_addr.into()) {
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
                    other => panic!("nonblocking connect: {other:?}"),
                }
                keep.push(Box::new(s));
            }
            want.iter_mut().find(|(n, _)| *n == "syn_sent").unwrap().1 = 2.0;
            settle(&want);

            assert_eq!(collect(Source::Netlink, "/proc"), want, "netlink");
            assert_eq!(collect(Source::Procfs, "/proc/thread-self"), want, "procfs");
            if let Some(ss) = ss_counts() {
                assert_eq!(ss, want, "ss -tan");
            }
            eprintln!("live TCP states: {want:?}");
            drop((listeners4, listeners6, deferring, full, keep));
        }) else {
            return;
        };
    }

    #[test]
    fn auto_uses_netlink_on_the_real_proc() {
        let ctx = BuildContext::new(Paths::default(), Arc::new(()));
        let tcp = Tcp::build(TcpConfig::default(), &ctx).unwrap();
        assert_eq!(tcp.source, Source::Auto);
        let ctx = BuildContext::new(fixture("tcp"), Arc::new(()));
        assert_eq!(
            Tcp::build(TcpConfig::default(), &ctx).unwrap().source,
            Source::Procfs
        );
    }

    #[test]
    fn example_config_loads() {
        let config: TcpConfig = example_config("tcp");
        assert_eq!(config.source, Source::Auto);
    }

    proptest! {
        /// Any bytes: no panic, and each line is one socket or one parse
        /// error at most.
        #[test]
        fn table_parser_takes_anything(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let mut counts = Counts::default();
            let mut out = MetricSink::new();
            count_proc_net_tcp(&bytes, &mut counts, &mut out);
            let sockets: u64 = counts.by_state.iter().sum::<u64>() + counts.unknown;
            let lines = bytes.split(|&b| b == b'\n').count() as u64;
            prop_assert!(sockets + out.parse_errors() <= lines);
        }

        /// Every state of a well-formed table is counted exactly.
        #[test]
        fn states_are_counted_exactly(states in prop::collection::vec(1u8..12, 0..50)) {
            let mut text = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n".to_vec();
            for (i, st) in states.iter().enumerate() {
                writeln!(text, "{i:4}: 0100007F:1F90 00000000:0000 {st:02X} 00000000:00000000 00:00000000 00000000     0        0 1 1").unwrap();
            }
            let mut counts = Counts::default();
            let mut out = MetricSink::new();
            count_proc_net_tcp(&text, &mut counts, &mut out);
            prop_assert_eq!(out.parse_errors(), 0);
            for s in 1u8..12 {
                let n = states.iter().filter(|x| **x == s).count() as u64;
                prop_assert_eq!(counts.by_state[usize::from(s)], n);
            }
        }
    }
}
