//! The netprobe plugin inside the stock exporter: its example config
//! section loads, the binary counts known traffic and leaves the interface
//! as it found it on SIGTERM, and without privileges it reports
//! `netprobe_up 0` while every other collector keeps working.
//!
//! The plugin's own tests (plugins/netprobe/tests) cover counting and host
//! hygiene in detail; these check the wiring. The exporter runs in a network
//! namespace of the test thread's own, so its filters never touch the host.
#![cfg(feature = "netprobe")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, parse, value, Running};
use herakles_netprobe::NetprobeConfig;

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");

fn able() -> bool {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").is_file() {
        eprintln!("SKIPPED: no kernel BTF at /sys/kernel/btf/vmlinux");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: netprobe tests need root (BPF, TC and network namespaces)");
        return false;
    }
    true
}

/// Run `f` on a thread in a fresh network namespace with `lo` up; programs
/// it starts inherit the namespace.
fn in_netns<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        // SAFETY: CLONE_NEWNET alone affects only the calling thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        sh("ip link set lo up");
        f();
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tc_state(dev: &str) -> String {
    sh(&format!(
        "tc qdisc show dev {dev}; tc filter show dev {dev} ingress; tc filter show dev {dev} egress"
    ))
}

/// A config file enabling netprobe on `lo` with a short interval.
fn config_file() -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(
        file.path(),
        "collectors:\n  netprobe:\n    enabled: true\n    interfaces: [lo]\n    \
         collection_interval: 0.2\n",
    )
    .unwrap();
    file
}

#[test]
fn example_config_section_loads() {
    let path = format!(
        "{}/config/collectors/netprobe.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let file = herakles_node_exporter::config::load_file(path.as_ref()).unwrap();
    let section = &file.config.collectors.0["netprobe"];
    assert!(section.enabled);
    let config = section
        .config
        .as_any()
        .downcast_ref::<NetprobeConfig>()
        .unwrap();
    assert_eq!(config.interfaces, ["eth0", "eth1"]);
    assert_eq!(config.collection_interval, 10.0);
    assert_eq!(config.attach, herakles_netprobe::Attach::Tcx);
}

#[test]
fn exporter_counts_lo_traffic_and_cleans_up_on_sigterm() {
    if !able() {
        return;
    }
    in_netns(|| {
        let pristine = tc_state("lo");
        let config = config_file();
        let exporter = Running::start(&["-c", config.path().to_str().unwrap()]);
        assert!(tc_state("lo").contains("netprobe_egress"));

        let scrape = || parse(&exporter.get("/metrics").text());
        let egress = |s: &prometheus_parse::Scrape, metric: &str| {
            value(
                s,
                metric,
                &[
                    ("interface", "lo"),
                    ("ifindex", "1"),
                    ("direction", "egress"),
                ],
            )
        };
        let collections = |s: &prometheus_parse::Scrape| {
            value(s, "netprobe_collection_total", &[]).expect("netprobe_collection_total")
        };
        // Wait until a collection happened after `after` collections: its
        // reading includes everything done before.
        let settle = |after: f64| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let s = scrape();
                if collections(&s) >= after + 2.0 {
                    return s;
                }
                assert!(Instant::now() < deadline, "netprobe stopped collecting");
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let first = scrape();
        assert_eq!(value(&first, "netprobe_up", &[]), Some(1.0));
        let before = settle(collections(&first));
        let packets_before = egress(&before, "netprobe_tc_packets_total").unwrap();
        let bytes_before = egress(&before, "netprobe_tc_bytes_total").unwrap();

        // 50 datagrams of 500 bytes, plus whatever the scrapes themselves
        // send over lo (TCP to the exporter), which is why the comparison
        // is a lower bound here; the plugin's tests measure it exactly on a
        // quiet lo.
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 1024];
        for _ in 0..50 {
            tx.send_to(&[7; 500], rx.local_addr().unwrap()).unwrap();
            rx.recv(&mut buf).unwrap();
        }
        let after = settle(collections(&before));
        let packets = egress(&after, "netprobe_tc_packets_total").unwrap() - packets_before;
        let bytes = egress(&after, "netprobe_tc_bytes_total").unwrap() - bytes_before;
        assert!(packets >= 50.0, "{packets}");
        assert!(bytes >= 50.0 * 542.0, "{bytes}");
        // Other collectors are unaffected.
        assert!(value(&after, "herakles_system_memory_total_bytes", &[]).unwrap() > 0.0);

        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(exporter.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let mut exporter = exporter;
        let status = exporter.child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert_eq!(tc_state("lo"), pristine);
    });
}

#[test]
fn exporter_without_privileges_reports_netprobe_down() {
    if !able() {
        return;
    }
    in_netns(|| {
        let pristine = tc_state("lo");
        let config = config_file();
        // No capabilities at all, although still uid 0.
        let mut child = Command::new("setpriv")
            .args([
                "--bounding-set=-all",
                "--inh-caps=-all",
                "--ambient-caps=-all",
                BIN,
                "-c",
                config.path().to_str().unwrap(),
                "-p",
                "0",
                "--bind",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut reason = None;
        let addr: SocketAddr = loop {
            let line = lines.next().expect("exporter exited early").unwrap();
            if line.contains("netprobe unavailable") {
                reason = Some(line.clone());
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        let reason = reason.expect("a logged reason");
        assert!(
            reason.contains("loading the TC programs failed"),
            "{reason}"
        );
        let s = parse(&get(addr, "/metrics").text());
        assert_eq!(value(&s, "netprobe_up", &[]), Some(0.0));
        assert_eq!(value(&s, "netprobe_collection_total", &[]), None);
        assert!(value(&s, "herakles_system_memory_total_bytes", &[]).unwrap() > 0.0);
        let health: serde_json::Value = serde_json::from_str(&get(addr, "/health").text()).unwrap();
        assert_eq!(health["netprobe"]["up"], false, "{health}");
        let why = health["netprobe"]["error"].as_str().unwrap_or_default();
        assert!(why.contains("loading the TC programs failed"), "{health}");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tc_state("lo"), pristine);
    });
}
