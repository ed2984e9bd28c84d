//! TCP state tracking (eBPF) against independent counts: the exporter runs
//! in a private network namespace with sockets this test opened and closed,
//! and its gauges, transitions and per-subgroup connections are compared
//! with what the test did and with `ss -tan`.
//!
//! The namespace keeps the host's own sockets out. The test thread unshares
//! it and starts the exporter from that thread, so the exporter is born in
//! it and its BPF namespace filter tracks it, as in production an exporter
//! tracks the namespace it runs in.

mod common;

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{parse, value, Running};

const STATES: [(&str, &str); 11] = [
    ("ESTAB", "established"),
    ("SYN-SENT", "syn_sent"),
    ("SYN-RECV", "syn_recv"),
    ("FIN-WAIT-1", "fin_wait1"),
    ("FIN-WAIT-2", "fin_wait2"),
    ("TIME-WAIT", "time_wait"),
    ("UNCONN", "close"),
    ("CLOSE-WAIT", "close_wait"),
    ("LAST-ACK", "last_ack"),
    ("LISTEN", "listen"),
    ("CLOSING", "closing"),
];

/// Why eBPF tests cannot run here, if they cannot.
fn cannot_run() -> Option<String> {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("no /sys/kernel/btf/vmlinux (kernel without BTF)".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (needs CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)".into());
    }
    None
}

/// Run `body` on a thread in a new network namespace with `lo` up.
fn in_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    if let Some(why) = cannot_run() {
        herakles_core::testing::skip(&format!("eBPF TCP test: {why}"));
        return None;
    }
    std::thread::spawn(move || {
        // SAFETY: unshare has no memory-safety preconditions; it affects
        // only this thread, and children it spawns inherit it.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            panic!(
                "unshare(CLONE_NEWNET) as root: {}",
                io::Error::last_os_error()
            );
        }
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("run ip (iproute2)");
        assert!(up.success());
        body()
    })
    .join()
    .expect("netns test thread panicked")
    .into()
}

fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// `ss -tan` per state, leaving out sockets with `skip_port` at either end.
fn ss_counts(skip_port: u16) -> HashMap<&'static str, f64> {
    let out = Command::new("ss").arg("-tan").output().expect("run ss");
    assert!(out.status.success());
    let mut counts: HashMap<&str, f64> = STATES.iter().map(|(_, n)| (*n, 0.0)).collect();
    let skip = format!(":{skip_port}");
    for line in String::from_utf8(out.stdout).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[3].ends_with(&skip) || f[4].ends_with(&skip) {
            continue;
        }
        let name = STATES
            .iter()
            .find(|(ss, _)| *ss == f[0])
            .unwrap_or_else(|| panic!("unknown ss state in {line:?}"))
            .1;
        *counts.get_mut(name).unwrap() += 1.0;
    }
    counts
}

/// Wait until no socket outside `skip_port` is mid-teardown.
fn settle(skip_port: u16) -> HashMap<&'static str, f64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = ss_counts(skip_port);
        let moving: f64 = ["fin_wait1", "close_wait", "last_ack", "closing", "syn_sent"]
            .iter()
            .map(|s| c[s])
            .sum();
        if moving == 0.0 {
            return c;
        }
        assert!(Instant::now() < deadline, "sockets never settled: {c:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gauges(s: &prometheus_parse::Scrape) -> HashMap<&'static str, f64> {
    STATES
        .iter()
        .map(|(_, n)| {
            let v = value(s, &format!("herakles_system_tcp_connections_{n}"), &[]);
            (*n, v.unwrap_or_else(|| panic!("gauge {n} missing")))
        })
        .collect()
}

fn transition(s: &prometheus_parse::Scrape, from: &str, to: &str) -> f64 {
    value(
        s,
        "herakles_system_tcp_transitions_total",
        &[("from", from), ("to", to)],
    )
    .unwrap_or(0.0)
}

fn group_connections(s: &prometheus_parse::Scrape) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == "herakles_group_net_connections_total")
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum()
}

/// What the exporter's own port adds at the moment it collects: its
/// listener, both ends of the scrape connection, and one TIME_WAIT per
/// earlier scrape (all younger than the 60 s TIME_WAIT period).
fn with_exporter(
    mut ss: HashMap<&'static str, f64>,
    scrapes_before: f64,
) -> HashMap<&'static str, f64> {
    *ss.get_mut("listen").unwrap() += 1.0;
    *ss.get_mut("established").unwrap() += 2.0;
    *ss.get_mut("time_wait").unwrap() += scrapes_before;
    ss
}

#[test]
fn tracked_states_transitions_and_group_connections_match() {
    in_netns(|| {
        // Sockets older than the exporter: the seed must count them.
        let old_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let old: Vec<_> = (0..3).map(|_| pair(&old_listener)).collect();

        let exp = Running::start(&[]);
        let port = exp.addr.port();
        let health = exp.get("/health").text();
        let health: serde_json::Value = serde_json::from_str(&health).unwrap();
        assert_eq!(
            health["ebpf"]["parts"]["tcp_tracking"]["state"], "active",
            "{health}"
        );

        let before = settle(port);
        assert_eq!(before["established"], 6.0);
        assert_eq!(before["listen"], 1.0);
        let s1 = parse(&exp.get("/metrics").text());
        // The /health request above is one earlier connection.
        assert_eq!(
            gauges(&s1),
            with_exporter(before.clone(), 1.0),
            "seeded gauges"
        );

        // 20 connections opened and closed (client first), 5 kept open.
        let (n, m) = (20.0, 5.0);
        let listener = TcpListener::bind("[::1]:0")
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        for _ in 0..n as usize {
            let (c, mut s) = pair(&listener);
            drop(c);
            assert_eq!(s.read(&mut [0u8; 1]).unwrap(), 0);
        }
        let kept: Vec<_> = (0..m as usize).map(|_| pair(&listener)).collect();
        let after = settle(port);
        assert_eq!(after["established"], 6.0 + 2.0 * m);
        assert_eq!(after["time_wait"], n);
        let s2 = parse(&exp.get("/metrics").text());
        assert_eq!(
            gauges(&s2),
            with_exporter(after.clone(), 2.0),
            "gauges after traffic"
        );

        // Exact transition deltas: the test's connections, plus the teardown
        // of scrape 1's connection and the setup of scrape 2's.
        let d = |from, to| transition(&s2, from, to) - transition(&s1, from, to);
        assert_eq!(d("close", "listen"), 1.0);
        assert_eq!(d("close", "syn_sent"), n + m + 1.0);
        assert_eq!(d("syn_sent", "established"), n + m + 1.0);
        assert_eq!(d("listen", "syn_recv"), n + m + 1.0);
        assert_eq!(d("syn_recv", "established"), n + m + 1.0);
        assert_eq!(d("established", "fin_wait1"), n + 1.0);
        assert_eq!(d("established", "close_wait"), n + 1.0);
        assert_eq!(d("close_wait", "last_ack"), n + 1.0);
        assert_eq!(d("last_ack", "close"), n + 1.0);
        assert_eq!(d("fin_wait2", "close"), n + 1.0);

        // Each connection credited twice (connect() and listen() callers),
        // and scrape 2's connection too.
        let opened = group_connections(&s2) - group_connections(&s1);
        assert_eq!(opened, 2.0 * (n + m) + 2.0, "group connections");
        assert_eq!(
            value(
                &s2,
                "herakles_system_tcp_connections_unattributed_total",
                &[]
            ),
            Some(0.0)
        );
        eprintln!("tracked gauges after traffic: {:?}", gauges(&s2));
        drop((old, kept, old_listener, listener));
    });
}

#[test]
fn disabled_tracking_still_reports_states_from_netlink() {
    in_netns(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let pairs: Vec<_> = (0..2).map(|_| pair(&l)).collect();
        let exp = Running::start(&["--disable-tcp-tracking"]);
        let port = exp.addr.port();
        let before = settle(port);
        let s = parse(&exp.get("/metrics").text());
        assert_eq!(gauges(&s), with_exporter(before.clone(), 0.0));
        assert_eq!(before["established"], 4.0);
        assert!(value(&s, "herakles_system_tcp_transitions_total", &[]).is_none());
        assert!(!s
            .samples
            .iter()
            .any(|x| x.metric == "herakles_group_net_connections_total"));
        let health: serde_json::Value = serde_json::from_str(&exp.get("/health").text()).unwrap();
        let part = &health["ebpf"]["parts"]["tcp_tracking"];
        assert_eq!(part["state"], "disabled", "{health}");
        assert_eq!(part["reason"], "enable_tcp_tracking is false");
        drop((pairs, l));
    });
}
