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

use common::{get, in_netns, parse, sh, value, Running};
use herakles_netprobe::NetprobeConfig;
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");

fn able() -> bool {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").is_file() {
        herakles_core::testing::skip("no kernel BTF at /sys/kernel/btf/vmlinux");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        herakles_core::testing::skip("netprobe tests need root (BPF, TC and network namespaces)");
        return false;
    }
    true
}

fn tc_state(dev: &str) -> String {
    sh(&format!(
        "tc qdisc show dev {dev}; tc filter show dev {dev} ingress; tc filter show dev {dev} egress"
    ))
}

/// A config file enabling netprobe on `lo` with a short interval.
fn config_file() -> tempfile::NamedTempFile {
    config_file_for("[lo]")
}

/// A config file enabling netprobe on `interfaces` (YAML list).
fn config_file_for(interfaces: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(
        file.path(),
        format!(
            "collectors:\n  netprobe:\n    enabled: true\n    interfaces: {interfaces}\n    \
             collection_interval: 0.2\n"
        ),
    )
    .unwrap();
    file
}

/// The exporter without any capability (although still uid 0), its stderr
/// piped.
fn spawn_unprivileged(config: &tempfile::NamedTempFile, args: &[&str]) -> std::process::Child {
    Command::new("setpriv")
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
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
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

        let status = stop(exporter, Signal::SIGTERM);
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
        let mut child = spawn_unprivileged(&config, &[]);
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

/// libbpf's own messages (here: why the netprobe skeleton did not load)
/// are log lines in the chosen format, not raw text between them.
#[test]
fn libbpf_messages_are_log_lines_in_the_chosen_format() {
    if !able() {
        return;
    }
    in_netns(|| {
        let config = config_file();
        for format in ["json", "text"] {
            let mut child = spawn_unprivileged(&config, &["--log-format", format]);
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let mut seen = Vec::new();
            for line in lines.by_ref() {
                let line = line.unwrap();
                let listening = line.contains("listening on http://");
                seen.push(line);
                if listening {
                    break;
                }
            }
            wait_for_sigterm_handler(child.id());
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                Signal::SIGTERM,
            )
            .unwrap();
            // Everything it logs until it exits.
            seen.extend(lines.map(Result::unwrap));
            assert!(child.wait().unwrap().success());
            let all = seen.join("\n");
            let from_libbpf: Vec<&String> = if format == "json" {
                for line in &seen {
                    let v: serde_json::Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}\n{all}"));
                    assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
                }
                seen.iter()
                    .filter(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).unwrap();
                        v["target"] == "libbpf" && v["level"] == "WARN"
                    })
                    .collect()
            } else {
                for line in &seen {
                    assert!(
                        !line.starts_with("libbpf"),
                        "raw libbpf output: {line}\n{all}"
                    );
                }
                seen.iter()
                    .filter(|l| l.contains(" WARN libbpf: "))
                    .collect()
            };
            assert!(
                from_libbpf
                    .iter()
                    .any(|l| l.contains("failed to load BPF skeleton 'netprobe_bpf'")),
                "{format}: no libbpf warning about the netprobe skeleton in:\n{all}"
            );
        }
    });
}

/// Wait until process `pid` catches SIGTERM. The exporter logs "listening"
/// from its server task, a moment before its main task installs the
/// handler; a SIGTERM in between would kill it the default way, with no
/// chance to take its filters off.
fn wait_for_sigterm_handler(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .map(|mask| u64::from_str_radix(mask.trim(), 16).unwrap())
            .unwrap();
        if caught & (1 << (libc::SIGTERM - 1)) != 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no SIGTERM handler after 10s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Send `signal` to the exporter and wait for it to exit.
fn stop(exporter: Running, signal: Signal) -> std::process::ExitStatus {
    let mut exporter = std::mem::ManuallyDrop::new(exporter);
    if signal == Signal::SIGTERM {
        wait_for_sigterm_handler(exporter.child.id());
    }
    let pid = nix::unistd::Pid::from_raw(exporter.child.id() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
    // Not dropped: its Drop would signal a pid that is no longer its.
    exporter.child.wait().unwrap()
}

/// The qdisc and filter lists of every interface of the namespace.
fn tc_state_all() -> String {
    let mut state = sh("tc qdisc show");
    // `ip`, not /sys/class/net: sysfs shows the namespace it was mounted in.
    for dev in sh("ip -o link show | cut -d: -f2 | cut -d@ -f1").split_whitespace() {
        state.push_str(&tc_state(dev));
    }
    state
}

/// Exporters killed with SIGKILL cannot take their filters off; the next
/// one to start clears what they left, and when it stops, no clsact qdisc
/// and no filter of ours remains on any interface.
#[test]
fn sigkilled_instances_leave_nothing_after_a_clean_restart_and_stop() {
    if !able() {
        return;
    }
    in_netns(|| {
        sh("ip link add np0 type veth peer name np0p");
        sh("ip link add np1 type veth peer name np1p");
        // One interface with a clsact qdisc and a filter of someone else's.
        sh("tc qdisc add dev np1 clsact");
        sh("tc filter add dev np1 ingress pref 3 bpf bytecode '1,6 0 0 0,'");
        let pristine = tc_state_all();
        // Every interface: lo, both veth pairs.
        let config = config_file_for("[]");
        let args = ["-c", config.path().to_str().unwrap()];
        // Two overlapping instances, both killed.
        let first = Running::start(&args);
        let second = Running::start(&args);
        for dev in ["lo", "np0", "np0p", "np1", "np1p"] {
            let state = tc_state(dev);
            assert_eq!(state.matches("netprobe_egress:[").count(), 2, "{state}");
        }
        stop(first, Signal::SIGKILL);
        stop(second, Signal::SIGKILL);
        let left = tc_state_all();
        assert!(left.contains("netprobe_ingres:["), "{left}");

        let clean = Running::start(&args);
        for dev in ["lo", "np0", "np0p", "np1", "np1p"] {
            let state = tc_state(dev);
            assert_eq!(state.matches("netprobe_ingres:[").count(), 1, "{state}");
            assert_eq!(state.matches("netprobe_egress:[").count(), 1, "{state}");
        }
        let s = parse(&clean.get("/metrics").text());
        assert_eq!(value(&s, "netprobe_up", &[]), Some(1.0));
        assert!(stop(clean, Signal::SIGTERM).success());
        assert_eq!(tc_state_all(), pristine);
    });
}
