//! Correctness against a peer: Debian's prometheus-node-exporter runs on a
//! loopback port beside ours and the series both expose must agree.
//!
//! Counters are compared by sandwiching: ours, then the peer's, then ours
//! again; the peer's value must lie between our two (the scrapes themselves
//! move loopback and context-switch counters, so exact equality would be
//! wrong, and a plain tolerance would be guesswork). Gauges get a stated
//! tolerance for the time between scrapes.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{parse, value, Running};
use prometheus_parse::Scrape;

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

struct Peer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_peer() -> Peer {
    assert!(
        std::path::Path::new(NODE_EXPORTER).exists(),
        "{NODE_EXPORTER} missing: run scripts/setup.sh"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let peer = Peer {
        addr,
        child: Command::new(NODE_EXPORTER)
            .args([
                &format!("--web.listen-address={addr}"),
                "--collector.disable-defaults",
                "--collector.netdev",
                "--collector.filesystem",
                "--collector.meminfo",
                "--collector.diskstats",
                "--collector.loadavg",
                "--collector.stat",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return peer;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("node_exporter did not start on {addr}");
}

fn scrape(addr: SocketAddr) -> Scrape {
    let resp = common::get(addr, "/metrics");
    assert_eq!(resp.status, 200);
    parse(&resp.text())
}

/// Every (label value, value) of a family.
fn series(s: &Scrape, name: &str, label: &str) -> Vec<(String, f64)> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter_map(|x| {
            let v = match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            Some((x.labels.get(label)?.to_string(), v))
        })
        .collect()
}

#[test]
fn overlapping_series_agree_with_node_exporter() {
    let peer = start_peer();
    let ours = Running::start(&[]);
    // Warm both up (first scrapes allocate, and node_exporter logs its setup).
    scrape(peer.addr);
    scrape(ours.addr);

    let before = scrape(ours.addr);
    let theirs = scrape(peer.addr);
    let after = scrape(ours.addr);

    let sandwich = |ours_name: &str, ours_label: &str, their_name: &str, their_label: &str| {
        let theirs = series(&theirs, their_name, their_label);
        assert!(!theirs.is_empty(), "node_exporter has no {their_name}");
        let mut compared = 0;
        for (key, peer_v) in theirs {
            let b = value(&before, ours_name, &[(ours_label, &key)]);
            let a = value(&after, ours_name, &[(ours_label, &key)]);
            let (Some(b), Some(a)) = (b, a) else {
                continue; // filtered out by our default excludes
            };
            assert!(
                b <= peer_v && peer_v <= a,
                "{ours_name}{{{ours_label}={key}}}: ours {b}..{a}, node_exporter {peer_v}"
            );
            compared += 1;
        }
        assert!(compared > 0, "nothing compared for {ours_name}");
        compared
    };

    let ifaces = sandwich(
        "herakles_system_net_rx_bytes_total",
        "iface",
        "node_network_receive_bytes_total",
        "device",
    );
    assert_eq!(
        ifaces,
        series(&theirs, "node_network_receive_bytes_total", "device").len(),
        "every interface node_exporter sees must be compared"
    );
    sandwich(
        "herakles_system_net_tx_bytes_total",
        "iface",
        "node_network_transmit_bytes_total",
        "device",
    );
    sandwich(
        "herakles_system_disk_read_bytes_total",
        "device",
        "node_disk_read_bytes_total",
        "device",
    );
    sandwich(
        "herakles_system_disk_write_bytes_total",
        "device",
        "node_disk_written_bytes_total",
        "device",
    );

    let one =
        |s: &Scrape, name: &str| value(s, name, &[]).unwrap_or_else(|| panic!("{name} missing"));
    let ctxt = one(&theirs, "node_context_switches_total");
    assert!(
        one(&before, "herakles_system_context_switches_total") <= ctxt
            && ctxt <= one(&after, "herakles_system_context_switches_total")
    );

    assert_eq!(
        one(&before, "herakles_system_memory_total_bytes"),
        one(&theirs, "node_memory_MemTotal_bytes")
    );
    // Available memory moves with every allocation on the host (a linker
    // or a test running beside us can take hundreds of MiB between two
    // scrapes), so it is not a counter to sandwich. Compare one scrape of
    // each back to back, and try again when the host moved in between: a
    // real mismatch (a wrong field, a unit error) fails every attempt.
    let gaps: Vec<f64> = (0..5)
        .map(|_| {
            let ours_now = one(&scrape(ours.addr), "herakles_system_memory_available_bytes");
            let theirs_now = one(&scrape(peer.addr), "node_memory_MemAvailable_bytes");
            (ours_now - theirs_now).abs()
        })
        .collect();
    assert!(
        gaps.iter().any(|gap| *gap < 64.0 * 1048576.0),
        "MemAvailable differs by more than 64 MiB in every attempt: {gaps:?}"
    );

    // The kernel recomputes load averages every 5 s; one update can move
    // load1 by 8% of (runnable tasks - load1), so with a parallel test run
    // on 2 cores a step of about one is possible between the two scrapes.
    for (ours_name, their_name, tolerance) in [
        ("herakles_system_cpu_load_1", "node_load1", 1.5),
        ("herakles_system_cpu_load_5", "node_load5", 0.5),
        ("herakles_system_cpu_load_15", "node_load15", 0.2),
    ] {
        let (o, t) = (one(&before, ours_name), one(&theirs, their_name));
        assert!(
            (o - t).abs() < tolerance,
            "{ours_name} {o} vs {their_name} {t}"
        );
    }

    let root = [("mountpoint", "/")];
    assert_eq!(
        value(&before, "herakles_system_filesystem_size_bytes", &root),
        value(&theirs, "node_filesystem_size_bytes", &root),
    );
    let (o, t) = (
        value(&before, "herakles_system_filesystem_avail_bytes", &root).unwrap(),
        value(&theirs, "node_filesystem_avail_bytes", &root).unwrap(),
    );
    // Builds write to / while the tests run; 256 MiB covers that.
    assert!((o - t).abs() < 256.0 * 1048576.0, "avail {o} vs {t}");
}
