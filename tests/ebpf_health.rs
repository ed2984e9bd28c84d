//! What `/health` says about eBPF, against independent sources: the events
//! per second against the counters' delta and the traffic the test itself
//! made, the lost events against `herakles_ebpf_events_dropped_total`, each
//! hash map's usage against `bpftool`; and the status, which a failed eBPF
//! part or a failed netprobe makes `degraded`.
//!
//! These load eBPF programs: run them under the suite lock.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{can_load_ebpf, parse, value, Running};
use serde_json::Value;

fn unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn health(exp: &Running) -> Value {
    serde_json::from_slice(&exp.get("/health").body).unwrap()
}

/// The exporter with the `ebpf_io` collector, `extra` and nothing else;
/// `None` (having said why) where eBPF cannot load.
fn start_with_ebpf_io(extra: &str) -> Option<Running> {
    if !can_load_ebpf() {
        return None;
    }
    Some(Running::start(&[
        "--collector.disable-defaults",
        "--collector.ebpf_io",
        extra,
    ]))
}

/// herakles_ebpf_events_processed_total and _dropped_total now.
fn counters(exp: &Running) -> (f64, f64) {
    let s = parse(&exp.get("/metrics").text());
    let get = |name: &str| value(&s, name, &[]).unwrap_or_else(|| panic!("{name} missing"));
    (
        get("herakles_ebpf_events_processed_total"),
        get("herakles_ebpf_events_dropped_total"),
    )
}

/// Start and end (Unix time) of each send or receive one thread made.
type Calls = Arc<Mutex<Vec<(f64, f64)>>>;

/// UDP datagrams over loopback, one every 2 ms, until dropped: each send
/// and each receive is one event of the network programs.
struct Traffic {
    stop: Arc<AtomicBool>,
    sends: Calls,
    recvs: Calls,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start() -> Traffic {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (sends, recvs): (Calls, Calls) = Default::default();
        let sender = {
            let (stop, sends) = (stop.clone(), sends.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let t0 = unix();
                    tx.send(b"herakles").unwrap();
                    sends.lock().unwrap().push((t0, unix()));
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let receiver = {
            let (stop, recvs) = (stop.clone(), recvs.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    let t0 = unix();
                    if rx.recv(&mut buf).is_ok() {
                        recvs.lock().unwrap().push((t0, unix()));
                    }
                }
            })
        };
        Traffic {
            stop,
            sends,
            recvs,
            threads: vec![sender, receiver],
        }
    }

    /// Sends and receives made wholly between `from` and `to`.
    fn within(&self, from: f64, to: f64) -> usize {
        [&self.sends, &self.recvs]
            .iter()
            .map(|c| {
                let calls = c.lock().unwrap();
                calls.iter().filter(|(a, b)| *a > from && *b < to).count()
            })
            .sum()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn events_per_second_and_lost_events_agree_with_the_counters() {
    let Some(exp) = start_with_ebpf_io("--disable-tcp-tracking") else {
        return;
    };
    let traffic = Traffic::start();
    let (p0, d0) = counters(&exp);
    let w0 = unix();
    // Until the rate's window lies wholly after the first reading of the
    // counters (it spans the last ten seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    let h = loop {
        let h = health(&exp);
        let w = &h["ebpf"]["events_window"];
        if w["from"].as_f64().is_some_and(|from| from > w0) && w["seconds"].as_f64() >= Some(5.0) {
            break h;
        }
        assert!(Instant::now() < deadline, "no window after {w0}: {h}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let (p1, d1) = counters(&exp);

    let e = &h["ebpf"];
    let w = &e["events_window"];
    let (from, to) = (w["from"].as_f64().unwrap(), w["to"].as_f64().unwrap());
    let seconds = w["seconds"].as_f64().unwrap();
    let events = w["events"].as_u64().unwrap() as f64;
    let rate = e["events_per_sec"].as_f64().unwrap();
    println!(
        "window {seconds:.3}s: {events} events, {rate:.1}/s; counters moved {}",
        p1 - p0
    );
    assert_eq!(w["per_second"].as_f64(), Some(rate));
    assert!(
        (rate * seconds - events).abs() < 1e-6 * events.max(1.0),
        "{e}"
    );
    // The window lies between the two readings of the counters, so its
    // events are some of the counters' delta...
    assert!(
        events <= p1 - p0,
        "{events} events in the window, {} between",
        p1 - p0
    );
    // ...and include every send and receive the test made inside it
    // (half a second's margin for when each sample was read).
    let ours = traffic.within(from + 0.5, to - 0.5);
    drop(traffic);
    assert!(ours > 1000, "the test's traffic did not run: {ours} calls");
    assert!(
        events >= ours as f64,
        "{events} events, but the test alone made {ours}"
    );
    // Lost and processed events are the counters' current values.
    let lost = e["lost_events"].as_f64().unwrap();
    assert!(d0 <= lost && lost <= d1, "lost {lost}, counter {d0}..{d1}");
    let processed = e["events_processed"].as_f64().unwrap();
    assert!(
        p0 <= processed && processed <= p1,
        "{processed}, counter {p0}..{p1}"
    );
    assert_eq!(health(&exp)["status"], "ok");
}

/// Processes that each sent a datagram (so each has an entry in the
/// network map) and then wait, until dropped.
struct Senders(Vec<Child>);

impl Senders {
    fn start(n: usize) -> Senders {
        let mut kids = Vec::new();
        for _ in 0..n {
            // bash's /dev/udp: a write on a UDP socket, then the same
            // process (exec keeps the pid) waits.
            let mut child = Command::new("bash")
                .args([
                    "-c",
                    "echo x > /dev/udp/127.0.0.1/9 && echo sent && exec sleep 600",
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "sent");
            kids.push(child);
        }
        Senders(kids)
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        for k in &mut self.0 {
            let _ = k.kill();
            let _ = k.wait();
        }
    }
}

fn bpftool(args: &[&str]) -> Value {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("bpftool missing: run scripts/setup.sh");
    assert!(
        out.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Entries in map `id`, as `bpftool map dump` lists them.
fn dumped(id: u64) -> u64 {
    let dump = bpftool(&["map", "dump", "id", &id.to_string()]);
    dump.as_array().expect("a dump is a list").len() as u64
}

/// The ids of the hash maps process `pid` holds a descriptor of, from the
/// kernel's `fdinfo` of each (bpftool here is built without `pids`).
fn hash_maps_held_by(pid: u32) -> BTreeSet<u64> {
    // BPF_MAP_TYPE_HASH, _PERCPU_HASH, _LRU_HASH, _LRU_PERCPU_HASH.
    const HASHES: [u64; 4] = [1, 5, 9, 10];
    let mut ids = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let fd = fd.unwrap();
        let link = std::fs::read_link(fd.path()).unwrap_or_default();
        if link.to_str() != Some("anon_inode:bpf-map") {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let field = |key: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(kind), Some(id)) = (field("map_type:"), field("map_id:")) {
            if HASHES.contains(&kind) {
                ids.insert(id);
            }
        }
    }
    ids
}

#[test]
fn map_usage_agrees_with_bpftool() {
    let Some(exp) = start_with_ebpf_io("--collector.tcp") else {
        return;
    };
    let senders = Senders::start(40);

    let theirs = hash_maps_held_by(exp.child.id());
    let e = health(&exp)["ebpf"].clone();
    let maps = e["maps"].as_array().unwrap();
    let ours: BTreeSet<u64> = maps.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ours, theirs, "{e}");
    let names: BTreeSet<&str> = maps.iter().map(|m| m["name"].as_str().unwrap()).collect();
    for name in ["net_stats", "io_stats", "conn_by_owner", "listener_owner"] {
        assert!(names.contains(name), "{name} missing: {names:?}");
    }

    let mut fullest: f64 = 0.0;
    for m in maps {
        let id = m["id"].as_u64().unwrap();
        let name = m["name"].as_str().unwrap();
        let shown = bpftool(&["map", "show", "id", &id.to_string()]);
        assert_eq!(shown["name"], name);
        assert_eq!(shown["max_entries"], m["max_entries"], "{name}");
        // Entries change as the host runs: ours, read between two dumps,
        // is between them, give or take what came and went meanwhile.
        let before = dumped(id);
        let now = health(&exp)["ebpf"]["maps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .cloned()
            .unwrap();
        let after = dumped(id);
        let entries = now["entries"].as_u64().unwrap();
        let (low, high) = (before.min(after), before.max(after));
        println!("{name}: {entries} entries; bpftool {before}, then {after}");
        assert!(
            entries + 5 >= low && entries <= high + 5,
            "{name}: {entries} entries, bpftool {before} then {after}"
        );
        let max = now["max_entries"].as_f64().unwrap();
        let percent = now["usage_percent"].as_f64().unwrap();
        assert!(
            (percent - entries as f64 * 100.0 / max).abs() < 1e-9,
            "{now}"
        );
        if name == "net_stats" {
            assert!(entries >= 40, "the 40 senders are in net_stats: {now}");
        }
        fullest = fullest.max(m["usage_percent"].as_f64().unwrap());
    }
    assert_eq!(e["map_usage_percent"].as_f64(), Some(fullest));
    drop(senders);
}

/// A part the operator enabled that cannot run makes the status degraded,
/// and `problems` says which and why; one switched off does not. With
/// `--path.sysfs` on an empty directory there is no kernel BTF to load
/// with, so both eBPF and netprobe fail before touching the kernel.
#[test]
fn failed_ebpf_parts_and_netprobe_degrade_the_status() {
    let empty = tempfile::tempdir().unwrap();
    let sysfs = empty.path().to_str().unwrap();
    let status = |extra: &[&str]| -> Value {
        let mut args = vec![
            "--path.sysfs",
            sysfs,
            "--collector.disable-defaults",
            "--collector.loadavg",
        ];
        args.extend_from_slice(extra);
        let exp = Running::start(&args);
        assert_eq!(exp.get("/metrics").status, 200);
        let h = health(&exp);
        assert_eq!(h["collectors"]["loadavg"]["healthy"], true, "{h}");
        h
    };

    let h = status(&["--collector.ebpf_io"]);
    assert_eq!(h["status"], "degraded", "{h}");
    let why = h["problems"]["ebpf"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("disk: ") && why.contains("; network: ") && why.contains("BTF"),
        "{h}"
    );
    assert_eq!(h["ebpf"]["parts"]["network"]["state"], "failed", "{h}");

    let h = status(&["--collector.netprobe"]);
    assert_eq!(h["status"], "degraded", "{h}");
    let why = h["problems"]["netprobe"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("not running: ") && why.contains("BTF"),
        "{h}"
    );
    assert!(h["problems"].get("ebpf").is_none(), "{h}");

    // Switched off: the parts say so, and all is well.
    let h = status(&["--collector.ebpf_io", "--disable-ebpf"]);
    assert_eq!(h["ebpf"]["parts"]["network"]["state"], "disabled", "{h}");
    assert_eq!(h["status"], "ok", "{h}");
    assert!(h.get("problems").is_none(), "{h}");
}
