//! `scripts/fleet.sh` with three hosts: three exporters, each in its own
//! network namespace, found by one Prometheus through file_sd. Checks that
//! Prometheus sees three distinct hosts, that the per-host recording rules
//! have a series per host and that the fleet-wide rules add them up, and
//! that the script leaves no namespace, link or process behind.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");

struct Host {
    addr: String,
    iface: String,
    ns: String,
    pid: String,
}

struct Prometheus {
    addr: std::net::SocketAddr,
}

impl Prometheus {
    /// The result vector of an instant query at `time` (Unix seconds) or now.
    fn query_at(&self, expr: &str, time: Option<f64>) -> Vec<Json> {
        let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let at = time.map(|t| format!("&time={t}")).unwrap_or_default();
        let body = common::get(self.addr, &format!("/api/v1/query?query={q}{at}")).text();
        let json: Json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(json["status"], "success", "{expr}: {body}");
        json["data"]["result"].as_array().unwrap().clone()
    }

    fn query(&self, expr: &str) -> Vec<Json> {
        self.query_at(expr, None)
    }
}

fn value(sample: &Json) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

fn label<'a>(sample: &'a Json, name: &str) -> &'a str {
    sample["metric"][name].as_str().unwrap_or("")
}

#[test]
fn three_hosts_aggregate_per_host_and_fleet_wide() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        herakles_core::testing::skip("the fleet needs root for network namespaces");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fleet.sh");
    let mut child = Command::new(script)
        .args(["-n", "3", "-i", "1s", "--hold", "--bin", BIN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut hosts = Vec::new();
    let (url, tag, prometheus_pid) = loop {
        let line = lines
            .next()
            .expect("fleet.sh exited before it was ready")
            .unwrap();
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{key}=")))
                .unwrap()
                .to_string()
        };
        if line.starts_with("host ") {
            hosts.push(Host {
                addr: field("addr"),
                iface: field("iface"),
                ns: field("ns"),
                pid: field("pid"),
            });
        } else if line.starts_with("ready ") {
            break (field("prometheus"), field("tag"), field("pid"));
        }
    };
    assert_eq!(hosts.len(), 3);
    let prom = Prometheus {
        addr: url.trim_start_matches("http://").parse().unwrap(),
    };

    // The script says ready once every host is up; the rules need a few
    // evaluations more (rates need two scrapes).
    const PER_HOST: [&str; 3] = [
        "herakles:proc_count_by_group:count",
        "herakles:proc_mem_rss_bytes_by_group:sum",
        "herakles:proc_cpu_percent_by_group:sum",
    ];
    let deadline = Instant::now() + Duration::from_secs(120);
    let fleet_hosts = loop {
        let r = prom.query("herakles:fleet_hosts:count");
        let covered = PER_HOST
            .iter()
            .all(|rule| prom.query(&format!("count by (instance) ({rule})")).len() == 3);
        if covered && r.len() == 1 && value(&r[0]) == 3.0 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "rules never covered 3 hosts: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Read everything at the instant the fleet rules were last recorded:
    // they are evaluated after the per-host rules of the same group, and
    // `fleet_hosts` is the group's last rule, so every series of that
    // evaluation is written. Not the query's own time: an evaluation
    // stamped before it may still be writing, and a later read at that
    // time would then see its per-host series beside the previous fleet
    // sums.
    assert_eq!(value(&fleet_hosts[0]), 3.0);
    let stamp = prom.query("timestamp(herakles:fleet_hosts:count)");
    let at = value(&stamp[0]);

    // Three distinct hosts: each answers on its own address, carries its
    // file_sd label, and reports only its own namespace's interfaces.
    let up = prom.query_at(r#"up{job="herakles"}"#, Some(at));
    assert_eq!(up.len(), 3);
    for (i, h) in hosts.iter().enumerate() {
        let s = up
            .iter()
            .find(|s| label(s, "instance") == h.addr)
            .unwrap_or_else(|| panic!("{} not scraped", h.addr));
        assert_eq!(value(s), 1.0);
        assert_eq!(label(s, "host"), format!("fleet-{}", i + 1));
        let ifaces: Vec<String> = prom
            .query_at(
                &format!(
                    r#"herakles_system_net_rx_bytes_total{{instance="{}"}}"#,
                    h.addr
                ),
                Some(at),
            )
            .iter()
            .map(|s| label(s, "iface").to_string())
            .collect();
        let mut want = vec!["lo".to_string(), h.iface.clone()];
        let mut got = ifaces.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{} ({})", h.addr, h.ns);
    }

    // Per host: one series per host and group.
    for rule in PER_HOST {
        let by_host = prom.query_at(&format!("count by (instance) ({rule})"), Some(at));
        assert_eq!(by_host.len(), 3, "{rule}: {by_host:?}");
    }
    // Fleet-wide: the sum of the per-host series, group by group, at the
    // same evaluation.
    for (fleet, host) in [
        (
            "herakles:fleet_proc_count_by_group:sum",
            "herakles:proc_count_by_group:count",
        ),
        (
            "herakles:fleet_mem_rss_bytes_by_group:sum",
            "herakles:proc_mem_rss_bytes_by_group:sum",
        ),
        (
            "herakles:fleet_cpu_percent_by_group:sum",
            "herakles:proc_cpu_percent_by_group:sum",
        ),
    ] {
        let totals = prom.query_at(fleet, Some(at));
        let parts = prom.query_at(host, Some(at));
        assert!(!totals.is_empty(), "{fleet}");
        for t in &totals {
            let group = label(t, "group");
            let members: Vec<&Json> = parts
                .iter()
                .filter(|p| label(p, "group") == group)
                .collect();
            let sum: f64 = members.iter().map(|p| value(p)).sum();
            let total = value(t);
            assert!(
                (total - sum).abs() <= 1e-9 * total.abs().max(1.0),
                "{fleet}{{group={group}}} = {total}, per-host sum {sum}"
            );
        }
        // Every host contributes to the fleet's "monitoring" group: each
        // sees the exporters (theirs and the others') as processes.
        let monitoring = parts
            .iter()
            .filter(|p| label(p, "group") == "monitoring")
            .count();
        assert_eq!(monitoring, 3, "{host}");
    }
    // Closing its input ends the script: figures, then cleanup.
    drop(child.stdin.take());
    let figures: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "fleet.sh: {status}\n{}",
        figures.join("\n")
    );
    println!("{}", figures.join("\n"));
    let figure = |key: &str| {
        figures
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no figure {key}"))
    };
    assert_eq!(figure("hosts up now"), "3");
    assert_eq!(figure("failed scrapes"), "0");
    assert_eq!(figure("hosts in herakles:fleet_hosts:count"), "3");

    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let links = Command::new("ip").args(["-br", "link"]).output().unwrap();
    let left = format!(
        "{}{}",
        String::from_utf8_lossy(&netns.stdout),
        String::from_utf8_lossy(&links.stdout)
    );
    assert!(
        !left.contains(&format!("hfleet{tag}-")) && !left.contains(&format!("hf{tag}r")),
        "left behind:\n{left}"
    );
    let ours = |pid: &str| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.ends_with("herakles-node-exporter") || exe.ends_with("prometheus"))
    };
    for pid in hosts.iter().map(|h| &h.pid).chain([&prometheus_pid]) {
        assert!(!ours(pid), "process {pid} still runs");
    }
}
