//! Group parity with Debian's prometheus-process-exporter, run beside ours
//! on the same processes.
//!
//! The test starts a set of processes with known facts, each in a group of
//! its own in both exporters (by comm): one with 7 threads, one with
//! exactly 50 open descriptors, a zombie and its parent. Between two pairs
//! of scrapes they do a known amount of work (page faults, context
//! switches on every thread) and otherwise block, so both exporters read
//! the same still counters.
//!
//! Gauges must be equal, and the known counts. Counters are compared by
//! their increase between the two scrapes: process-exporter counts from
//! when it first saw a process, we from the process's start. One stated
//! difference: process-exporter counts threads per state, the main thread
//! twice for a multi-threaded process; we count processes by the state
//! their main thread is in.
//!
//! Runs under the suite lock: it is timing-free, but other helpers'
//! processes must not wake ours.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::{parse, value, Peer, Running};
use prometheus_parse::Scrape;

const PROCESS_EXPORTER: &str = "/usr/bin/prometheus-process-exporter";

/// The helper: sets its comm, makes the threads, descriptors or zombie it
/// is told to, prints "ready"; then, per line on stdin, every thread
/// switches context 20 times and the main thread touches 300 new pages,
/// and it prints "done" once every thread is blocked again.
const HELPER: &str = r#"
import os, sys, threading, time
os.closerange(3, 65536)
name, threads, fds, zombie = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
def comm(n):
    with open("/proc/self/comm", "w") as f:
        f.write(n)
if zombie:
    comm("pe-zombie")
    if os.fork() == 0:
        os._exit(0)
comm(name)
held = []
if fds:
    # 0, 1 and 2 are open; nothing else is (closed above).
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(fds - 3)]
go = [threading.Event() for _ in range(threads - 1)]
done = [threading.Event() for _ in range(threads - 1)]
def work(i):
    while True:
        go[i].wait()
        go[i].clear()
        for _ in range(20):
            time.sleep(0.001)
        done[i].set()
for i in range(threads - 1):
    threading.Thread(target=work, args=(i,), daemon=True).start()
pages = []
print("ready", flush=True)
for line in sys.stdin:
    for e in go:
        e.set()
    for _ in range(20):
        time.sleep(0.001)
    pages.append(bytearray(300 * 4096))
    for e in done:
        e.wait()
        e.clear()
    print("done", flush=True)
"#;

struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    fn start(name: &str, threads: u32, fds: u32, zombie: bool) -> Helper {
        let mut child = Command::new("python3")
            .args(["-c", HELPER, name])
            .args([threads.to_string(), fds.to_string()])
            .arg(if zombie { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{name}");
        Helper {
            child,
            stdin,
            stdout,
        }
    }

    fn work(&mut self) {
        self.stdin.write_all(b"go\n").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "done");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every thread of `pid` asleep, and its context switch counts the same
/// twice in a row: nothing of it runs, so both exporters see the same.
fn wait_still(pid: u32) {
    let snapshot = || -> Vec<String> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return out;
        };
        for t in dir.flatten() {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let keep = |l: &&str| {
                l.starts_with("State:") || l.contains("ctxt_switches") || l.starts_with("Threads")
            };
            out.push(status.lines().filter(keep).collect::<Vec<_>>().join(" "));
        }
        out.sort();
        out
    };
    for _ in 0..500 {
        let a = snapshot();
        std::thread::sleep(Duration::from_millis(20));
        let b = snapshot();
        let asleep = a
            .iter()
            .all(|s| s.contains("State:\tS") || s.contains("State:\tZ"));
        if a == b && asleep {
            return;
        }
    }
    panic!("process {pid} never held still");
}

fn start_peer(config: &std::path::Path) -> Peer {
    let config = config.to_str().unwrap().to_string();
    Peer::start(PROCESS_EXPORTER, |addr| {
        vec![
            "-config.path".into(),
            config,
            "-web.listen-address".into(),
            addr.to_string(),
        ]
    })
}

fn scrape(addr: SocketAddr) -> Scrape {
    parse(&common::get(addr, "/metrics").text())
}

const GROUPS: [&str; 4] = ["pe-threads", "pe-fds", "pe-zombie", "pe-zparent"];

/// One group's facts, from either exporter.
#[derive(Debug, PartialEq)]
struct Facts {
    procs: f64,
    threads: f64,
    open_fds: f64,
    worst_fd_ratio: f64,
    resident: f64,
    virt: f64,
    oldest_start: f64,
    /// running, sleeping, disk sleep, zombie, other.
    states: [f64; 5],
    minor: f64,
    major: f64,
    voluntary: f64,
    involuntary: f64,
}

fn theirs(m: &Scrape, g: &str) -> Facts {
    let get = |name: &str, more: &[(&str, &str)]| {
        let mut l = vec![("groupname", g)];
        l.extend_from_slice(more);
        value(m, &format!("namedprocess_namegroup_{name}"), &l)
            .unwrap_or_else(|| panic!("process-exporter has no {name} for {g}"))
    };
    let state = |s| get("states", &[("state", s)]);
    Facts {
        procs: get("num_procs", &[]),
        threads: get("num_threads", &[]),
        open_fds: get("open_filedesc", &[]),
        worst_fd_ratio: get("worst_fd_ratio", &[]),
        resident: get("memory_bytes", &[("memtype", "resident")]),
        virt: get("memory_bytes", &[("memtype", "virtual")]),
        oldest_start: get("oldest_start_time_seconds", &[]),
        states: [
            state("Running"),
            state("Sleeping"),
            state("Waiting"),
            state("Zombie"),
            state("Other"),
        ],
        minor: get("minor_page_faults_total", &[]),
        major: get("major_page_faults_total", &[]),
        voluntary: get("context_switches_total", &[("ctxswitchtype", "voluntary")]),
        involuntary: get(
            "context_switches_total",
            &[("ctxswitchtype", "nonvoluntary")],
        ),
    }
}

fn ours(m: &Scrape, g: &str) -> Facts {
    let get = |name: &str, more: &[(&str, &str)]| {
        let mut l = vec![("group", "pe"), ("subgroup", g)];
        l.extend_from_slice(more);
        value(m, &format!("herakles_group_{name}"), &l)
            .unwrap_or_else(|| panic!("we have no herakles_group_{name} for {g}"))
    };
    let state = |s| get("process_states", &[("state", s)]);
    Facts {
        procs: get("processes", &[]),
        threads: get("threads", &[]),
        open_fds: get("open_fds", &[]),
        worst_fd_ratio: get("worst_fd_ratio", &[]),
        resident: get("memory_rss_bytes", &[]),
        virt: get("memory_virtual_bytes", &[]),
        oldest_start: get("oldest_start_time_seconds", &[]),
        states: [
            state("running"),
            state("sleeping"),
            state("disk_sleep"),
            state("zombie"),
            state("other"),
        ],
        minor: get("page_faults_total", &[("type", "minor")]),
        major: get("page_faults_total", &[("type", "major")]),
        voluntary: get("context_switches_total", &[("type", "voluntary")]),
        involuntary: get("context_switches_total", &[("type", "involuntary")]),
    }
}

#[test]
fn groups_agree_with_process_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let mut threads = Helper::start("pe-threads", 7, 0, false);
    let mut fds = Helper::start("pe-fds", 1, 50, false);
    let mut zparent = Helper::start("pe-zparent", 1, 0, true);
    let helpers = [threads.pid(), fds.pid(), zparent.pid()];
    for pid in helpers {
        wait_still(pid);
    }
    // The known facts, from /proc, before either exporter looks.
    let tasks = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count()
    };
    assert_eq!(tasks(threads.pid()), 7);
    let open = std::fs::read_dir(format!("/proc/{}/fd", fds.pid()))
        .unwrap()
        .count();
    assert_eq!(open, 50);

    let config = dir.path().join("pe.yaml");
    std::fs::write(
        &config,
        format!(
            "process_names:\n  - name: \"{{{{.Comm}}}}\"\n    comm: [{}]\n",
            GROUPS.join(", ")
        ),
    )
    .unwrap();
    let rules = dir.path().join("rules.toml");
    let rule_lines: Vec<String> = GROUPS
        .iter()
        .map(|g| format!("  {{ group = \"pe\", subgroup = \"{g}\", matches = [\"{g}\"] }},"))
        .collect();
    std::fs::write(
        &rules,
        format!("subgroups = [\n{}\n]\n", rule_lines.join("\n")),
    )
    .unwrap();
    let peer = start_peer(&config);
    let exp = Running::start(&[
        "--disable-ebpf",
        "--no-collector.bpf_inventory",
        "--subgroups-file",
        rules.to_str().unwrap(),
        "--process-context-switches",
        "--collector-timeout",
        "60",
    ]);

    let both = || (scrape(peer.addr), scrape(exp.addr));
    let (their1, our1) = both();
    for h in [&mut threads, &mut fds, &mut zparent] {
        h.work();
    }
    for pid in helpers {
        wait_still(pid);
    }
    let (their2, our2) = both();

    let mut increases: HashMap<&str, [f64; 4]> = HashMap::new();
    for g in GROUPS {
        let (t1, t2, o1, o2) = (
            theirs(&their1, g),
            theirs(&their2, g),
            ours(&our1, g),
            ours(&our2, g),
        );
        // Gauges: equal (the processes did not change between scrapes but
        // for the work, which the second pair of scrapes both see).
        let gauges = |f: &Facts| {
            (
                f.procs,
                f.threads,
                f.open_fds,
                f.worst_fd_ratio,
                f.resident,
                f.virt,
            )
        };
        assert_eq!(gauges(&o2), gauges(&t2), "{g}");
        // process-exporter truncates to whole seconds; we keep the ticks.
        assert_eq!(
            o2.oldest_start.floor(),
            t2.oldest_start,
            "{g}: oldest start"
        );
        // States: the same, but for the threads process-exporter counts.
        let mut want = t2.states;
        if g == "pe-threads" {
            want[1] -= t2.threads;
        }
        assert_eq!(o2.states, want, "{g}");
        // Counters: the same increase.
        let inc = |a: &Facts, b: &Facts| {
            [
                b.minor - a.minor,
                b.major - a.major,
                b.voluntary - a.voluntary,
                b.involuntary - a.involuntary,
            ]
        };
        assert_eq!(
            inc(&o1, &o2),
            inc(&t1, &t2),
            "{g}: minor, major, voluntary, involuntary"
        );
        increases.insert(g, inc(&o1, &o2));
    }
    // The known facts.
    let facts = |g| ours(&our2, g);
    assert_eq!(
        (facts("pe-threads").procs, facts("pe-threads").threads),
        (1.0, 7.0)
    );
    assert_eq!(facts("pe-fds").open_fds, 50.0);
    assert_eq!(facts("pe-zombie").states, [0.0, 0.0, 0.0, 1.0, 0.0]);
    // 300 new pages touched: at least that many minor faults; every one of
    // the 7 threads slept 20 times: at least 140 voluntary switches.
    let t = increases["pe-threads"];
    assert!(t[0] >= 300.0 && t[2] >= 140.0, "{t:?}");
    assert_eq!(increases["pe-zombie"], [0.0; 4], "a zombie does nothing");
}
