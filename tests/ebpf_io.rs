//! The eBPF per-process I/O programs against real traffic on this host.
//!
//! The workloads run in child processes with known pids: this test binary
//! re-executed with `EBPF_IO_ROLE` set (see [`role`]), so each child's
//! traffic is exactly what the test asked for. These tests load real BPF
//! programs; without BTF or the privilege to load them they skip loudly.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;

use common::can_load_ebpf as can_run;
use herakles_core::testing::{parse_text, Collected};
use herakles_core::{
    BuildCollector, BuildContext, Collector, MetricSink, NoConfig, Paths, ScrapeContext,
};
use herakles_node_exporter::collectors::{
    ebpf_io::EbpfIo, process_groups::ProcessGroups, process_top::ProcessTop,
};
use herakles_node_exporter::config::Config;
use herakles_node_exporter::ebpf::process_io::{self, ProcessIo, ProcessIoConfig};

const MIB: u64 = 1 << 20;
const NET_BYTES: u64 = 16 * MIB;
const UDP_DATAGRAMS: u64 = 1024;
const DIRECT_BYTES: u64 = 64 * MIB;

/// Held by every test: each measures "everyone else's traffic" and group
/// totals, which a concurrent test in this binary would disturb.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ebpf_io, process_groups and process_top collectors on one context,
/// in this process.
struct Exporter {
    collectors: Vec<Box<dyn Collector>>,
    io: Arc<ProcessIo>,
}

impl Exporter {
    fn new() -> Exporter {
        Exporter::with(ProcessIoConfig::default())
    }

    /// The exporter with `config` as the `ebpf_io` section, where the
    /// service reads its settings from whichever collector asks first.
    fn with(config: ProcessIoConfig) -> Exporter {
        let mut global = Config::default();
        global.collectors.0.get_mut("ebpf_io").unwrap().config = Box::new(config.clone());
        let ctx = BuildContext::new(Paths::default(), Arc::new(global));
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(ProcessTop::build(NoConfig {}, &ctx).unwrap()),
            Box::new(EbpfIo::build(config, &ctx).unwrap()),
            Box::new(ProcessGroups::build(NoConfig {}, &ctx).unwrap()),
        ];
        let io = process_io::service(&ctx).unwrap();
        let status = herakles_node_exporter::ebpf::status(&ctx);
        assert!(io.active(), "eBPF did not load: {:?}", status.parts());
        Exporter { collectors, io }
    }

    fn scrape(&self) -> Collected {
        let ctx = ScrapeContext::new(Arc::new(Paths::default()));
        let mut sink = MetricSink::new();
        for c in &self.collectors {
            c.collect(&ctx, &mut sink).unwrap();
        }
        parse_text(&sink.to_text())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for c in &self.collectors {
            c.shutdown();
        }
    }
}

/// `metric{pid=..,direction=..}` of every pid, summed over other labels.
fn per_pid(c: &Collected, name: &str, direction: &str) -> HashMap<u32, f64> {
    let mut out = HashMap::new();
    for (n, labels, v) in &c.samples {
        let get = |k: &str| {
            labels
                .iter()
                .find(|(lk, _)| lk == k)
                .map(|(_, v)| v.as_str())
        };
        if n == name && get("direction") == Some(direction) {
            let pid: u32 = get("pid").unwrap().parse().unwrap();
            *out.entry(pid).or_default() += v;
        }
    }
    out
}

/// A child running [`role`] `name`, killed when dropped. Its stdin stays
/// open so it lives until the test lets it go.
struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<std::process::ChildStdout>,
}

impl Kid {
    fn start(name: &str, args: &[&str]) -> Kid {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "role", "--nocapture", "--test-threads=1"])
            .env("EBPF_IO_ROLE", name)
            .env("EBPF_IO_ARGS", args.join(" "))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        Kid { child, stdin, out }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the role printed with the `ROLE ` prefix (the test
    /// harness prints its own lines too).
    fn line(&mut self) -> String {
        loop {
            let mut l = String::new();
            assert!(self.out.read_line(&mut l).unwrap() > 0, "child ended early");
            // The harness may print "test role ... " before it on the line.
            if let Some((_, v)) = l.split_once("ROLE ") {
                return v.trim().to_string();
            }
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn say(s: impl std::fmt::Display) {
    println!("ROLE {s}");
    std::io::stdout().flush().unwrap();
}

/// Wait until the test closes our stdin, so we are alive while scraped.
fn hold() {
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// The child side: does nothing unless started by [`Kid::start`].
#[test]
fn role() {
    let Ok(role) = std::env::var("EBPF_IO_ROLE") else {
        return;
    };
    let args = std::env::var("EBPF_IO_ARGS").unwrap_or_default();
    let args: Vec<&str> = args.split_whitespace().collect();
    match role.as_str() {
        "tcp_recv" => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            say(l.local_addr().unwrap().port());
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                match s.read(&mut buf).unwrap() {
                    0 => break,
                    n => total += n as u64,
                }
            }
            say(total);
            hold();
        }
        "tcp_send" => {
            let mut s = TcpStream::connect(("127.0.0.1", args[0].parse::<u16>().unwrap())).unwrap();
            let buf = vec![7u8; MIB as usize];
            for _ in 0..NET_BYTES / MIB {
                s.write_all(&buf).unwrap();
            }
            s.shutdown(std::net::Shutdown::Write).unwrap();
            say("sent");
            hold();
        }
        "udp_recv" => {
            // Acknowledges each datagram so the sender never overruns the
            // receive buffer: every datagram sent is received.
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            say(s.local_addr().unwrap().port());
            let mut buf = vec![0u8; 65536];
            let mut total = 0u64;
            for _ in 0..UDP_DATAGRAMS {
                let (n, from) = s.recv_from(&mut buf).unwrap();
                total += n as u64;
                s.send_to(b"k", from).unwrap();
            }
            say(total);
            hold();
        }
        "udp_send" => {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect(("127.0.0.1", args[0].parse::<u16>().unwrap()))
                .unwrap();
            let buf = vec![7u8; (NET_BYTES / UDP_DATAGRAMS) as usize];
            let mut ack = [0u8; 8];
            for _ in 0..UDP_DATAGRAMS {
                s.send(&buf).unwrap();
                s.recv(&mut ack).unwrap();
            }
            say("sent");
            hold();
        }
        "udp_sink" => {
            // Reads one datagram (so the socket is known to be ours), then
            // stops reading; prints the kernel's drop count for the socket
            // when asked (any line on stdin).
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = s.local_addr().unwrap().port();
            say(port);
            s.recv(&mut [0u8; 64]).unwrap();
            say("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            say(udp_socket_drops(port));
            hold();
        }
        "direct_write" => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(args[0])
                .unwrap();
            let layout = std::alloc::Layout::from_size_align(MIB as usize, 4096).unwrap();
            // SAFETY: non-zero size; freed below with the same layout.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            assert!(!ptr.is_null());
            // SAFETY: ptr points at MIB initialised bytes we own.
            let buf = unsafe { std::slice::from_raw_parts(ptr, MIB as usize) };
            for _ in 0..DIRECT_BYTES / MIB {
                f.write_all(buf).unwrap();
            }
            f.sync_all().unwrap();
            // SAFETY: allocated above with `layout`.
            unsafe { std::alloc::dealloc(ptr, layout) };
            say("written");
            hold();
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// The `drops` column of the IPv4 UDP socket bound to `port`, from
/// `/proc/net/udp` (the kernel's own per-socket drop counter).
fn udp_socket_drops(port: u16) -> u64 {
    let local = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .skip(1)
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&local))
        })
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .expect("our socket in /proc/net/udp")
}

/// A sender/receiver pair moving exactly 16 MiB; checks each side's bytes
/// and that nobody else is credited with them. Returns the final scrape and
/// the pair's pids.
fn transfer(proto: &str) -> Option<(Collected, u32, u32)> {
    let _serial = serial();
    if !can_run() {
        return None;
    }
    let exporter = Exporter::new();
    let before = exporter.scrape();
    let mut recv = Kid::start(&format!("{proto}_recv"), &[]);
    let port = recv.line();
    let mut send = Kid::start(&format!("{proto}_send"), &[&port]);
    assert_eq!(send.line(), "sent");
    let received: u64 = recv.line().parse().unwrap();
    assert_eq!(received, NET_BYTES, "the receiver got every byte");
    let after = exporter.scrape();
    let (s, r) = (send.pid(), recv.pid());

    let tx = per_pid(&after, "herakles_net_process_bytes_total", "tx");
    let rx = per_pid(&after, "herakles_net_process_bytes_total", "rx");
    let within = |v: f64| (v - NET_BYTES as f64).abs() <= NET_BYTES as f64 * 0.05;
    let sent = tx.get(&s).copied().unwrap_or(0.0);
    let got = rx.get(&r).copied().unwrap_or(0.0);
    println!("{proto}: sender {s} tx {sent}, receiver {r} rx {got}");
    assert!(within(sent), "{proto} sender tx {sent}, want 16 MiB ±5%");
    assert!(within(got), "{proto} receiver rx {got}, want 16 MiB ±5%");

    // Everyone else's traffic in the same interval stays far below the
    // transfer: it was not credited to another process.
    let tx0 = per_pid(&before, "herakles_net_process_bytes_total", "tx");
    let rx0 = per_pid(&before, "herakles_net_process_bytes_total", "rx");
    let others = |now: &HashMap<u32, f64>, then: &HashMap<u32, f64>| -> f64 {
        now.iter()
            .filter(|(p, _)| **p != s && **p != r)
            .map(|(p, v)| v - then.get(p).copied().unwrap_or(0.0))
            .sum()
    };
    let (otx, orx) = (others(&tx, &tx0), others(&rx, &rx0));
    println!("{proto}: all other processes meanwhile: tx {otx}, rx {orx}");
    assert!(
        otx < NET_BYTES as f64 / 4.0,
        "others credited with tx {otx}"
    );
    assert!(
        orx < NET_BYTES as f64 / 4.0,
        "others credited with rx {orx}"
    );
    Some((after, s, r))
}

#[test]
fn tcp_bytes_credited_to_sender_and_receiver() {
    let Some((after, s, _)) = transfer("tcp") else {
        return;
    };
    // The sender is the top transmitter with the same bytes.
    let pid = s.to_string();
    let top = after
        .samples
        .iter()
        .find(|(n, l, _)| {
            n == "herakles_top_net_process_tx_bytes_total"
                && l.iter().any(|(k, v)| k == "pid" && *v == pid)
        })
        .map(|(_, _, v)| *v);
    let tx = per_pid(&after, "herakles_net_process_bytes_total", "tx")[&s];
    assert_eq!(top, Some(tx), "sender in the top-N tx rows");
}

#[test]
fn udp_bytes_and_datagrams_exact() {
    let Some((after, s, r)) = transfer("udp") else {
        return;
    };
    let packets = |dir: &str, pid: u32| {
        per_pid(&after, "herakles_net_process_packets_total", dir)
            .get(&pid)
            .copied()
            .unwrap_or(0.0)
    };
    // One datagram per send/receive call: counts are exact, acks included.
    assert_eq!(packets("tx", s), UDP_DATAGRAMS as f64);
    assert_eq!(packets("rx", r), UDP_DATAGRAMS as f64);
    assert_eq!(packets("rx", s), UDP_DATAGRAMS as f64);
    assert_eq!(packets("tx", r), UDP_DATAGRAMS as f64);
    let tx = per_pid(&after, "herakles_net_process_bytes_total", "tx");
    assert_eq!(tx[&s], NET_BYTES as f64, "UDP payload bytes are exact");
    assert_eq!(tx[&r], UDP_DATAGRAMS as f64, "one-byte acks");
}

/// The whole-disk name of the block device holding `dir`, if it is a real
/// one (not tmpfs or overlay).
fn disk_of(dir: &std::path::Path) -> Option<String> {
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    // A partition's sysfs directory sits inside its disk's.
    let disk = if sys.join("partition").exists() {
        sys.parent()?.to_path_buf()
    } else {
        sys
    };
    Some(disk.file_name()?.to_string_lossy().into_owned())
}

#[test]
fn direct_writes_credited_to_writer_and_device() {
    let _serial = serial();
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let Some(device) = disk_of(dir.path()) else {
        herakles_core::testing::skip(&format!(
            "{} is not on a real block device (tmpfs or overlay?)",
            dir.path().display()
        ));
        return;
    };
    let exporter = Exporter::new();
    let file = dir.path().join("direct");
    let mut w = Kid::start("direct_write", &[file.to_str().unwrap()]);
    assert_eq!(w.line(), "written");
    let after = exporter.scrape();
    let pid = w.pid().to_string();
    let value = |name: &str, dir: &str| {
        after.samples.iter().find_map(|(n, l, v)| {
            let has = |k: &str, want: &str| l.iter().any(|(lk, lv)| lk == k && lv == want);
            (n == name && has("pid", &pid) && has("device", &device) && has("direction", dir))
                .then_some(*v)
        })
    };
    let bytes = value("herakles_io_process_bytes_total", "write").unwrap_or(0.0);
    let ops = value("herakles_io_process_iops_total", "write").unwrap_or(0.0);
    println!("O_DIRECT writer {pid} on {device}: {bytes} bytes in {ops} requests");
    assert!(bytes >= DIRECT_BYTES as f64, "write bytes {bytes} < 64 MiB");
    // 64 requests of 1 MiB at the most (a device may split them further).
    assert!(ops >= 64.0, "write requests {ops}");
}

#[test]
fn exited_processes_leave_the_maps_and_stay_in_their_group() {
    let _serial = serial();
    if !can_run() {
        return;
    }
    const PROCESSES: usize = 100_000;
    const PARALLEL: usize = 32;
    let exporter = Exporter::new();
    let me = std::process::id().to_string();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = sink.local_addr().unwrap();
    // Drain the sink so its buffer never fills; its rx is its own.
    let drain = sink.try_clone().unwrap();
    drain
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    let drainer = std::thread::spawn(move || {
        let mut b = [0u8; 16];
        while !stopper.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = drain.recv(&mut b);
        }
    });
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.connect(target).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sender);

    // One byte from this process puts it in the per-process rows, which
    // tell its (group, subgroup): the forked children share its comm, so
    // their exit records land in the same subgroup.
    sender.send(b"x").unwrap();
    let first = exporter.scrape();
    let labels = first
        .samples
        .iter()
        .find(|(n, l, _)| {
            n == "herakles_net_process_bytes_total" && l.iter().any(|(k, v)| k == "pid" && *v == me)
        })
        .map(|(_, l, _)| l.clone())
        .expect("this process in the per-process rows");
    let get = |k: &str| labels.iter().find(|(lk, _)| lk == k).unwrap().1.clone();
    let (group, subgroup) = (get("group"), get("subgroup"));
    let group_tx = |c: &Collected| {
        c.value(
            "herakles_group_net_tx_bytes_total",
            &[("group", &group), ("subgroup", &subgroup)],
        )
        .unwrap_or(0.0)
    };
    let started = std::time::Instant::now();
    let mut running = 0;
    let mut children = Vec::with_capacity(PROCESSES);
    for _ in 0..PROCESSES {
        if running == PARALLEL {
            // SAFETY: plain waitpid for any child.
            unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) };
            running -= 1;
        }
        // SAFETY: the child only calls async-signal-safe functions (send,
        // _exit) before exiting.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            unsafe {
                libc::send(fd, b"x".as_ptr().cast(), 1, 0);
                libc::_exit(0);
            }
        }
        children.push(pid as u32);
        running += 1;
    }
    while running > 0 {
        // SAFETY: as above.
        unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) };
        running -= 1;
    }
    let spent = started.elapsed();
    println!("{PROCESSES} processes forked and reaped in {spent:.1?}");
    // Let the exit poller run, then read.
    std::thread::sleep(process_io::POLL * 3);
    let after = exporter.scrape();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drainer.join().unwrap();

    let (net, io) = exporter.io.tracked().unwrap();
    // With pid_max below 100,000 (32768 is common) every pid was some
    // child's, and any process started since, anywhere on the host, may
    // hold one and do network I/O: its entry is no child's. So an entry
    // is stale only if no process holds its pid now, and it is still in
    // the map after that check (an owner that exited in between took its
    // entry with it).
    let dead: std::collections::HashSet<u32> = children.iter().copied().collect();
    let unowned: Vec<u32> = net
        .iter()
        .copied()
        .filter(|p| dead.contains(p) && !std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    let (still, _) = exporter.io.tracked().unwrap();
    let stale = unowned.iter().filter(|p| still.contains(p)).count();
    println!(
        "after {PROCESSES} short-lived processes: {} network and {} block entries, {stale} of dead children",
        net.len(),
        io.len()
    );
    assert_eq!(stale, 0, "entries of exited processes left in the map");
    assert!(net.len() < 5_000, "network map holds {} entries", net.len());

    // Their bytes went to their subgroup's counter on exit.
    let dropped = after
        .value("herakles_ebpf_events_dropped_total", &[])
        .unwrap();
    let grew = group_tx(&after) - group_tx(&first);
    println!("{group}/{subgroup} tx grew by {grew} bytes; events dropped: {dropped}");
    assert!(
        grew >= PROCESSES as f64 - dropped,
        "children's {PROCESSES} bytes not all in group counters ({grew})"
    );
}

#[test]
fn without_privilege_ebpf_is_absent_and_the_rest_serves() {
    let _serial = serial();
    if !can_run() {
        return;
    }
    if std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_err()
    {
        herakles_core::testing::skip("setpriv (util-linux) is not installed");
        return;
    }
    // Started through setpriv with the BPF capabilities dropped from every
    // set, so loading must fail.
    let exe = env!("CARGO_BIN_EXE_herakles-node-exporter");
    let caps = "-bpf,-perfmon,-sys_admin";
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--inh-caps", caps, "--bounding-set", caps, "--", exe])
        .args(["--no-config", "-p", "0", "--bind", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: std::net::SocketAddr = loop {
        let line = lines.next().expect("exporter exited early").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let metrics = common::get(addr, "/metrics").text();
    let health: serde_json::Value =
        serde_json::from_str(&common::get(addr, "/health").text()).unwrap();
    let _ = child.kill();
    let _ = child.wait();

    for name in [
        "herakles_net_process_bytes_total",
        "herakles_io_process_bytes_total",
        "herakles_ebpf_events_processed_total",
        "herakles_group_net_rx_bytes_total",
        "herakles_top_net_process_tx_bytes_total",
    ] {
        assert!(!metrics.contains(name), "{name} present without eBPF");
    }
    for name in [
        "herakles_mem_process_rss_bytes",
        "herakles_group_memory_rss_bytes",
        "herakles_system_net_rx_bytes_total",
    ] {
        assert!(metrics.contains(name), "{name} missing without eBPF");
    }
    for part in ["network", "disk"] {
        let p = &health["ebpf"]["parts"][part];
        assert_eq!(p["state"], "failed", "{part}: {p}");
        let reason = p["reason"].as_str().unwrap();
        assert!(reason.contains("CAP_BPF"), "{part} reason: {reason}");
    }
    assert_part_states_match_health(&common::parse(&metrics), &health);
}

/// `herakles_ebpf_part_state` has, for every part `/health` lists, 1 for
/// the state `/health` gives and 0 for the two others; returns the states.
fn assert_part_states_match_health(
    scrape: &prometheus_parse::Scrape,
    health: &serde_json::Value,
) -> BTreeMap<String, String> {
    let parts = health["ebpf"]["parts"].as_object().unwrap();
    assert!(!parts.is_empty(), "{health}");
    let mut states = BTreeMap::new();
    for (part, p) in parts {
        let now = p["state"].as_str().unwrap();
        for state in ["active", "disabled", "failed"] {
            let v = common::value(
                scrape,
                "herakles_ebpf_part_state",
                &[("part", part), ("state", state)],
            );
            assert_eq!(
                v,
                Some(f64::from(u8::from(state == now))),
                "{part} {state}: {p}"
            );
        }
        states.insert(part.clone(), now.to_string());
    }
    states
}

/// A part switched off on purpose is `disabled`, not `failed`: what lets
/// an alert fire on failures only.
#[test]
fn part_states_tell_switched_off_from_failed() {
    let _serial = serial();
    if !can_run() {
        return;
    }
    let exporter = common::Running::start(&["--disable-ebpf-disk"]);
    let scrape = common::parse(&exporter.get("/metrics").text());
    let health: serde_json::Value = serde_json::from_str(&exporter.get("/health").text()).unwrap();
    let states = assert_part_states_match_health(&scrape, &health);
    let want: BTreeMap<String, String> = [
        ("disk", "disabled"),
        ("network", "active"),
        ("tcp_tracking", "active"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(states, want);
}

#[test]
fn check_ebpf_loads_and_attaches_each_part() {
    let _serial = serial();
    if !can_run() {
        return;
    }
    let exe = env!("CARGO_BIN_EXE_herakles-node-exporter");
    let out = Command::new(exe)
        .args(["--no-config", "--disable-ebpf-disk", "check", "--ebpf"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("PASS  eBPF network") && l.contains("tp_btf/sock_send_length")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("SKIP  eBPF disk") && l.contains("enable_ebpf_disk")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("PASS  eBPF tcp_tracking")
                && l.contains("tp_btf/inet_sock_set_state")),
        "{text}"
    );
}

#[test]
fn udp_receive_buffer_drops_credited_to_the_receiver() {
    let _serial = serial();
    if !can_run() {
        return;
    }
    let exporter = Exporter::new();
    let mut sink = Kid::start("udp_sink", &[]);
    let port: u16 = sink.line().parse().unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(("127.0.0.1", port)).unwrap();
    s.send(b"hello").unwrap();
    assert_eq!(sink.line(), "ready");
    // Far more than any receive buffer holds: most of these are dropped.
    let datagram = [0u8; 1024];
    for _ in 0..20_000 {
        s.send(&datagram).unwrap();
    }
    writeln!(sink.stdin.as_ref().unwrap(), "count").unwrap();
    let kernel: f64 = sink.line().parse().unwrap();
    let after = exporter.scrape();
    let pid = sink.pid().to_string();
    let ours = after
        .value(
            "herakles_net_process_dropped_total",
            &[
                ("pid", &pid),
                ("comm", &comm_of(sink.pid())),
                ("group", &label_of(&after, &pid, "group")),
                ("subgroup", &label_of(&after, &pid, "subgroup")),
            ],
        )
        .unwrap_or(0.0);
    println!("udp sink {pid}: kernel counted {kernel} drops on the socket, we credited {ours}");
    assert!(kernel > 1000.0, "the test did not overflow the buffer");
    assert_eq!(ours, kernel, "every drop credited to the receiver");
}

fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap()
        .trim()
        .to_string()
}

/// Label `key` of the per-process network series of `pid`.
fn label_of(c: &Collected, pid: &str, key: &str) -> String {
    c.samples
        .iter()
        .find_map(|(n, l, _)| {
            (n == "herakles_net_process_dropped_total"
                && l.iter().any(|(k, v)| k == "pid" && v == pid))
            .then(|| l.iter().find(|(k, _)| k == key).unwrap().1.clone())
        })
        .unwrap_or_default()
}

/// herakles_ebpf_cpu_seconds_total needs the host-wide run-time statistics
/// switch, so it is there only with `cpu_stats: true`, and then it counts
/// the programs' time on traffic we make.
#[test]
fn cpu_seconds_only_with_cpu_stats() {
    let _serial = serial();
    if !can_run() {
        return;
    }
    let quiet = Exporter::new();
    let c = quiet.scrape();
    assert!(c
        .value("herakles_ebpf_events_processed_total", &[])
        .is_some());
    assert!(c.absent("herakles_ebpf_cpu_seconds_total"), "{}", c.text);
    drop(quiet);

    let exporter = Exporter::with(ProcessIoConfig {
        cpu_stats: true,
        ..ProcessIoConfig::default()
    });
    let cpu = |c: &Collected| c.value("herakles_ebpf_cpu_seconds_total", &[]).unwrap();
    let before = cpu(&exporter.scrape());
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..10_000 {
        tx.send_to(&buf[..32], rx.local_addr().unwrap()).unwrap();
        rx.recv(&mut buf).unwrap();
    }
    let after = cpu(&exporter.scrape());
    println!("cpu seconds {before} -> {after} for 20,000 events");
    // 20,000 program runs take at least a microsecond in all, and far less
    // than a second.
    assert!(after - before > 1e-6, "{before} -> {after}");
    assert!(after - before < 1.0, "{before} -> {after}");
}
