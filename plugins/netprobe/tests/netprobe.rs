//! netprobe against the real kernel.
//!
//! Each test runs in a network namespace of its own, created by `unshare` on
//! a thread of its own: the interfaces it makes with `ip` and the qdiscs and
//! filters it checks with `tc` are invisible to the host and to the other
//! tests, and vanish with the thread even if an assertion fails half-way.
//! The collector's thread is started from that thread, so it lives in the
//! same namespace (a thread inherits its creator's namespaces).
//!
//! They need root (or CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF) and kernel BTF;
//! without them they say so on stderr and pass.

use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herakles_core::testing::{collect_with, Collected};
use herakles_core::{BuildCollector, BuildContext, Collector, Paths};
use herakles_netprobe::{Attach, Netprobe, NetprobeConfig, FILTER_HANDLE, MARKER_CHAIN};

/// Ethernet (14) + IPv4 (20) + UDP (8): what TC counts on top of a UDP
/// payload sent over loopback. IPv4 options are never set by the kernel for
/// an ordinary socket, so this is exact.
const UDP_OVER_LO_OVERHEAD: u64 = 14 + 20 + 8;

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

/// Run `f` on a thread in a fresh network namespace.
fn in_netns<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        // SAFETY: unshare affects only the calling thread here (CLONE_NEWNET
        // alone); it has no memory-safety preconditions.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        f();
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// Run a command (in the calling thread's namespace) and return its stdout;
/// panics with its stderr if it fails.
fn run(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What `tc` shows of an interface: its qdiscs and both filter lists.
fn tc_state(dev: &str) -> String {
    format!(
        "{}--\n{}--\n{}",
        run(&format!("tc qdisc show dev {dev}")),
        run(&format!("tc filter show dev {dev} ingress")),
        run(&format!("tc filter show dev {dev} egress")),
    )
}

fn config(interfaces: &[&str]) -> NetprobeConfig {
    NetprobeConfig {
        interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
        collection_interval: 0.1,
        ..NetprobeConfig::default()
    }
}

fn build(config: NetprobeConfig) -> Netprobe {
    let ctx = BuildContext::new(Paths::default(), Arc::new(()));
    Netprobe::build(config, &ctx).unwrap()
}

fn scrape(n: &Netprobe) -> Collected {
    collect_with(n, Paths::default()).unwrap()
}

/// Scrape once at least two more collections have happened, so the
/// snapshot was read wholly after everything the caller did before.
fn scrape_fresh(n: &Netprobe) -> Collected {
    let start = scrape(n)
        .value("netprobe_collection_total", &[])
        .expect("netprobe is up");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = scrape(n);
        if c.value("netprobe_collection_total", &[]).unwrap() >= start + 2.0 {
            return c;
        }
        assert!(Instant::now() < deadline, "no collection for 10s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn series(c: &Collected, metric: &str, dev: &str, direction: &str) -> Option<f64> {
    let ifindex = c
        .samples
        .iter()
        .find(|(n, l, _)| n == "netprobe_interface_active" && l[0].1 == dev)
        .map(|(_, l, _)| l[1].1.clone())?;
    c.value(
        metric,
        &[
            ("interface", dev),
            ("ifindex", &ifindex),
            ("direction", direction),
        ],
    )
}

/// `ip -s link` counters of `dev`: (rx_packets, rx_bytes, tx_packets, tx_bytes).
fn link_stats(dev: &str) -> [u64; 4] {
    let text = run(&format!("ip -s -o link show dev {dev}"));
    // "... RX: bytes packets errors ... \    <bytes> <packets> ... TX: ..."
    let fields: Vec<&str> = text.split_whitespace().collect();
    let after = |marker: &str| -> (u64, u64) {
        let i = fields.iter().position(|f| *f == marker).unwrap();
        let values: Vec<u64> = fields[i..]
            .iter()
            .filter_map(|f| f.parse().ok())
            .take(2)
            .collect();
        (values[0], values[1])
    };
    let (rx_bytes, rx_packets) = after("RX:");
    let (tx_bytes, tx_packets) = after("TX:");
    [rx_packets, rx_bytes, tx_packets, tx_bytes]
}

/// Send `count` UDP datagrams of `payload` bytes from one socket on
/// 127.0.0.1 to another, each received before the next is sent so none is
/// dropped on a full socket buffer.
fn send_udp_over_lo(count: u64, payload: usize) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = vec![0u8; payload + 1];
    for _ in 0..count {
        tx.send_to(&vec![0x5a; payload], rx.local_addr().unwrap())
            .unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), payload);
    }
}

/// Assert that `probe` counts exactly `count` datagrams of `payload` bytes
/// sent over `lo` now, in both directions, and stays up.
fn counts_udp_over_lo_exactly(probe: &Netprobe, count: u64, payload: usize) {
    let before = scrape_fresh(probe);
    send_udp_over_lo(count, payload);
    let after = scrape_fresh(probe);
    assert_eq!(after.value("netprobe_up", &[]), Some(1.0), "{}", after.text);
    for dir in ["ingress", "egress"] {
        let delta = |metric: &str| {
            let value = |c: &Collected| {
                series(c, metric, "lo", dir).unwrap_or_else(|| panic!("no {metric}: {}", c.text))
            };
            value(&after) - value(&before)
        };
        assert_eq!(
            delta("netprobe_tc_packets_total"),
            count as f64,
            "{dir} packets"
        );
        assert_eq!(
            delta("netprobe_tc_bytes_total"),
            (count * (payload as u64 + UDP_OVER_LO_OVERHEAD)) as f64,
            "{dir} bytes"
        );
    }
}

/// Scrape until `done` holds; panics after 10 s.
fn scrape_until(n: &Netprobe, what: &str, done: impl Fn(&Collected) -> bool) -> Collected {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = scrape(n);
        if done(&c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "waited 10s for {what}: {}",
            c.text
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counts_known_udp_traffic_on_loopback_exactly() {
    counts_exactly(Attach::Clsact);
}

#[test]
fn counts_known_udp_traffic_on_loopback_exactly_with_tcx() {
    counts_exactly(Attach::Tcx);
}

fn counts_exactly(attach: Attach) {
    if !able() {
        return;
    }
    in_netns(move || {
        run("ip link set lo up");
        let probe = build(NetprobeConfig {
            attach,
            ..config(&["lo"])
        });
        let before = scrape_fresh(&probe);
        assert_eq!(before.value("netprobe_up", &[]), Some(1.0));
        let link_before = link_stats("lo");

        const DATAGRAMS: u64 = 200;
        const PAYLOAD: usize = 1000;
        send_udp_over_lo(DATAGRAMS, PAYLOAD);

        let after = scrape_fresh(&probe);
        let link_after = link_stats("lo");
        let delta = |dir: &str, metric: &str| {
            series(&after, metric, "lo", dir).unwrap() - series(&before, metric, "lo", dir).unwrap()
        };
        let bytes = DATAGRAMS * (PAYLOAD as u64 + UDP_OVER_LO_OVERHEAD);
        for dir in ["ingress", "egress"] {
            assert_eq!(
                delta(dir, "netprobe_tc_packets_total"),
                DATAGRAMS as f64,
                "{dir} packets"
            );
            assert_eq!(
                delta(dir, "netprobe_tc_bytes_total"),
                bytes as f64,
                "{dir} bytes"
            );
        }
        // The kernel's own interface counters saw the same frames. Loopback
        // counts its bytes after stripping the Ethernet header
        // (loopback_xmit runs eth_type_trans first), TC before.
        let link: Vec<u64> = (0..4).map(|i| link_after[i] - link_before[i]).collect();
        let link_bytes = bytes - 14 * DATAGRAMS;
        assert_eq!(link, [DATAGRAMS, link_bytes, DATAGRAMS, link_bytes]);
        assert_eq!(
            after.value(
                "netprobe_interface_active",
                &[("interface", "lo"), ("ifindex", "1")]
            ),
            Some(0.0),
            "no traffic during the last interval"
        );

        // Rates are deltas over one interval: non-negative, and while idle 0.
        assert_eq!(
            series(&after, "netprobe_tc_packets_per_second", "lo", "egress"),
            Some(0.0)
        );
        assert!(
            after
                .value("netprobe_last_collection_timestamp_seconds", &[])
                .unwrap()
                > 1.6e9
        );
        probe.shutdown();
        assert_eq!(scrape(&probe).value("netprobe_up", &[]), Some(0.0));
    });
}

#[test]
fn rates_follow_traffic_during_the_interval() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link set lo up");
        let mut c = config(&["lo"]);
        c.collection_interval = 1.0;
        let probe = build(c);
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 256];
        // Steady traffic for three intervals: 100 datagrams a second.
        let start = Instant::now();
        let mut sent = 0u32;
        while start.elapsed() < Duration::from_secs(3) {
            tx.send_to(&[1; 58], rx.local_addr().unwrap()).unwrap();
            rx.recv(&mut buf).unwrap();
            sent += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        let c = scrape(&probe);
        let pps = series(&c, "netprobe_tc_packets_per_second", "lo", "egress").unwrap();
        let bps = series(&c, "netprobe_tc_bytes_per_second", "lo", "egress").unwrap();
        let expected_pps = f64::from(sent) / start.elapsed().as_secs_f64();
        eprintln!("sent {sent} datagrams: {pps:.1} packets/s, {bps:.1} bytes/s (expected ~{expected_pps:.1} packets/s)");
        // One datagram is 58 + 42 = 100 bytes on the wire, so the two rates
        // are tied exactly; the packet rate itself is whatever the sleeping
        // loop managed, within a wide margin.
        assert!((bps - pps * 100.0).abs() < 1e-6, "{bps} vs {pps}");
        assert!(
            pps > expected_pps * 0.5 && pps < expected_pps * 1.5,
            "{pps}"
        );
        assert_eq!(
            c.value(
                "netprobe_interface_active",
                &[("interface", "lo"), ("ifindex", "1")]
            ),
            Some(1.0)
        );
    });
}

#[test]
fn creates_and_removes_its_own_clsact_qdisc() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link add np0 type veth peer name np0p");
        let pristine = tc_state("np0");
        assert!(!pristine.contains("clsact"), "{pristine}");
        let probe = build(config(&["np0"]));
        let during = tc_state("np0");
        assert!(during.contains("qdisc clsact ffff:"), "{during}");
        let ours = format!("pref 7 bpf chain 0 handle {FILTER_HANDLE:#x}");
        assert!(
            during.contains(&format!("{ours} netprobe_ingres")),
            "{during}"
        );
        assert!(
            during.contains(&format!("{ours} netprobe_egress")),
            "{during}"
        );
        // Marked as ours by an empty chain no packet visits.
        let chains = run("tc chain show dev np0 ingress");
        assert!(
            chains.contains(&format!("chain {MARKER_CHAIN} ")),
            "{chains}"
        );
        // The peer was not selected and is not touched.
        assert!(!tc_state("np0p").contains("clsact"));
        drop(probe);
        assert_eq!(tc_state("np0"), pristine);
    });
}

#[test]
fn keeps_its_qdisc_when_someone_else_moved_in() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link add np6 type veth peer name np6p");
        let probe = build(config(&["np6"]));
        // Someone adds a filter to the clsact qdisc we created.
        run("tc filter add dev np6 egress pref 9 bpf bytecode '1,6 0 0 0,'");
        drop(probe);
        let after = tc_state("np6");
        assert!(!after.contains("netprobe_"), "{after}");
        assert!(after.contains("qdisc clsact ffff:"), "{after}");
        assert!(after.contains("pref 9 bpf chain 0 handle 0x1"), "{after}");
    });
}

#[test]
fn leaves_an_existing_clsact_and_foreign_filters_alone() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link add np1 type veth peer name np1p");
        run("tc qdisc add dev np1 clsact");
        // Classic-BPF filters "return 0": foreign filters in both
        // directions, one before ours and one after.
        run("tc filter add dev np1 ingress pref 3 bpf bytecode '1,6 0 0 0,'");
        run("tc filter add dev np1 egress pref 9 bpf bytecode '1,6 0 0 0,'");
        let before = tc_state("np1");
        let probe = build(config(&["np1"]));
        let during = tc_state("np1");
        assert!(during.contains("netprobe_ingres"), "{during}");
        assert!(during.contains("netprobe_egress"), "{during}");
        assert!(during.contains("pref 3 bpf"), "{during}");
        assert!(during.contains("pref 9 bpf"), "{during}");
        probe.shutdown();
        assert_eq!(tc_state("np1"), before);
        drop(probe);
        assert_eq!(tc_state("np1"), before);
    });
}

/// Two netprobes counting the same interfaces (two exporters, or a restart
/// overlapping the old process) each keep their own filters: stopping the
/// first takes away neither the second's filters nor the qdisc holding
/// them, and the last one out leaves the host as it found it.
#[test]
fn overlapping_instances_keep_each_others_filters_and_qdisc() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link set lo up");
        run("ip link add np5 type veth peer name np5p");
        let pristine = [tc_state("lo"), tc_state("np5")];
        let first = build(config(&["lo", "np5"]));
        let second = build(config(&["lo", "np5"]));
        for dev in ["lo", "np5"] {
            let during = tc_state(dev);
            assert_eq!(during.matches("qdisc clsact").count(), 1, "{during}");
            assert_eq!(during.matches("netprobe_ingres:[").count(), 2, "{during}");
            assert_eq!(during.matches("netprobe_egress:[").count(), 2, "{during}");
        }
        // Both count the same traffic.
        counts_udp_over_lo_exactly(&first, 20, 100);
        counts_udp_over_lo_exactly(&second, 20, 100);

        first.shutdown();
        for dev in ["lo", "np5"] {
            let after_first = tc_state(dev);
            assert!(after_first.contains("qdisc clsact"), "{after_first}");
            let second_handle = format!("handle {:#x}", FILTER_HANDLE + 1);
            assert_eq!(
                after_first.matches(&second_handle).count(),
                2,
                "{after_first}"
            );
            let first_handle = format!("handle {FILTER_HANDLE:#x} ");
            assert!(!after_first.contains(&first_handle), "{after_first}");
        }
        counts_udp_over_lo_exactly(&second, 200, 1000);

        drop(second);
        assert_eq!([tc_state("lo"), tc_state("np5")], pristine);
        drop(first);
        assert_eq!([tc_state("lo"), tc_state("np5")], pristine);
    });
}

/// Someone deletes or replaces our filter, or the whole qdisc, while we run:
/// the next collection notices, attaches again (or, when a stranger now
/// holds our place, says it cannot), and counting resumes.
#[test]
fn a_filter_removed_by_someone_else_is_noticed_and_attached_again() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link set lo up");
        let pristine = tc_state("lo");
        let ctx = BuildContext::new(Paths::default(), Arc::new(()));
        let probe = Netprobe::build(config(&["lo"]), &ctx).unwrap();
        // The section, and the problem it reports to the exporter's status.
        let report = || {
            let (_, check) = ctx
                .health_checks()
                .into_iter()
                .find(|(k, _)| k == "netprobe")
                .expect("a netprobe /health section");
            check()
        };
        let health = || report().detail;
        let lost = |c: &Collected| c.value("netprobe_filters_lost_total", &[]).unwrap();
        let up = |c: &Collected| c.value("netprobe_up", &[]) == Some(1.0);
        let ours = format!("pref 7 handle {FILTER_HANDLE:#x} bpf");
        assert_eq!(lost(&scrape(&probe)), 0.0);
        assert_eq!(health()["filters_lost"], 0, "{}", health());
        assert_eq!(report().problem, None);

        // 1. Our ingress filter is deleted.
        run(&format!("tc filter del dev lo ingress {ours}"));
        scrape_until(&probe, "the loss to be noticed", |c| lost(c) == 1.0);
        let h = health();
        assert_eq!(h["last_filter_lost"]["interface"], "lo", "{h}");
        assert_eq!(
            h["last_filter_lost"]["what"], "our ingress filter was removed",
            "{h}"
        );
        let state = tc_state("lo");
        assert_eq!(state.matches("netprobe_ingres:[").count(), 1, "{state}");
        assert_eq!(state.matches("netprobe_egress:[").count(), 1, "{state}");
        scrape_until(&probe, "netprobe_up 1", up);
        counts_udp_over_lo_exactly(&probe, 200, 1000);

        // 2. A stranger's filter takes our place: we must not remove it, so
        //    lo is not counted, and both the gauge and /health say so.
        run(&format!(
            "tc filter replace dev lo ingress {ours} bytecode '1,6 0 0 0,'"
        ));
        let c = scrape_until(&probe, "the replacement to be noticed", |c| lost(c) == 2.0);
        assert_eq!(c.value("netprobe_up", &[]), Some(0.0), "{}", c.text);
        let c = scrape_fresh(&probe);
        assert_eq!(c.value("netprobe_up", &[]), Some(0.0), "{}", c.text);
        assert!(c.absent("netprobe_tc_packets_total"), "{}", c.text);
        let h = health();
        assert_eq!(h["up"], false, "{h}");
        assert_eq!(
            h["last_filter_lost"]["what"], "our ingress filter was replaced",
            "{h}"
        );
        let why = h["not_counted"]["lo"].as_str().unwrap_or_default();
        assert!(why.contains("choose another tc_priority"), "{h}");
        let problem = report().problem.expect("netprobe down is a problem");
        assert_eq!(problem, format!("interfaces not counted: lo: {why}"));
        let state = tc_state("lo");
        assert!(state.contains("bytecode '1,6 0 0 0'"), "{state}");
        assert!(!state.contains("netprobe_"), "{state}");

        // 3. The stranger leaves: counting resumes.
        run(&format!("tc filter del dev lo ingress {ours}"));
        scrape_until(&probe, "netprobe_up 1 again", up);
        assert_eq!(
            health()["not_counted"],
            herakles_core::serde_json::json!({})
        );
        assert_eq!(report().problem, None);
        counts_udp_over_lo_exactly(&probe, 200, 1000);

        // 4. The whole qdisc is deleted: we create it again, and so remove
        //    it again when we stop.
        run("tc qdisc del dev lo clsact");
        scrape_until(&probe, "the lost qdisc to be noticed", |c| lost(c) == 3.0);
        scrape_until(&probe, "netprobe_up 1 again", up);
        counts_udp_over_lo_exactly(&probe, 50, 10);
        drop(probe);
        assert_eq!(tc_state("lo"), pristine);
    });
}

/// Names of the programs attached to `dev` by tcx, in `direction`, as the
/// kernel reports them (BPF_PROG_QUERY; bpftool 7.1 does not list tcx).
fn tcx_programs(dev: &str, direction: u32) -> Vec<String> {
    tcx_attached(dev, direction)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// `(program name, link id)` of every tcx link on `dev` in `direction`.
fn tcx_attached(dev: &str, direction: u32) -> Vec<(String, u32)> {
    let ifindex: i32 = run(&format!("ip -o link show dev {dev} | cut -d: -f1"))
        .trim()
        .parse()
        .unwrap();
    let mut ids = [0u32; 16];
    let mut links = [0u32; 16];
    let mut opts = libbpf_rs::libbpf_sys::bpf_prog_query_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_prog_query_opts>() as _,
        prog_ids: ids.as_mut_ptr(),
        link_ids: links.as_mut_ptr(),
        ..Default::default()
    };
    opts.__bindgen_anon_1.prog_cnt = ids.len() as u32;
    // SAFETY: `prog_ids` and `link_ids` point at `prog_cnt` writable u32s.
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_prog_query_opts(ifindex, direction, &mut opts) };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_QUERY {dev}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the kernel set the count it wrote.
    let count = unsafe { opts.__bindgen_anon_1.prog_cnt } as usize;
    ids[..count]
        .iter()
        .zip(links)
        .map(|(id, link)| {
            let text = run(&format!("bpftool prog show id {id}"));
            let name = text.split_whitespace().skip_while(|w| *w != "name").nth(1);
            (name.unwrap_or("?").to_string(), link)
        })
        .collect()
}

/// tcx programs on `dev`, both directions.
fn tcx_links(dev: &str) -> Vec<String> {
    let mut all = tcx_programs(dev, libbpf_rs::libbpf_sys::BPF_TCX_INGRESS);
    all.extend(tcx_programs(dev, libbpf_rs::libbpf_sys::BPF_TCX_EGRESS));
    all
}

#[test]
fn tcx_needs_no_qdisc_and_leaves_clsact_filters_alone() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link add np7 type veth peer name np7p");
        run("ip link add np8 type veth peer name np8p");
        run("tc qdisc add dev np8 clsact");
        run("tc filter add dev np8 ingress pref 7 bpf bytecode '1,6 0 0 0,'");
        let before = [tc_state("np7"), tc_state("np8")];
        let probe = build(NetprobeConfig {
            attach: Attach::Tcx,
            ..config(&["np7", "np8"])
        });
        let c = scrape(&probe);
        assert!(
            series(&c, "netprobe_tc_packets_total", "np7", "ingress").is_some(),
            "{}",
            c.text
        );
        assert!(
            series(&c, "netprobe_tc_packets_total", "np8", "egress").is_some(),
            "{}",
            c.text
        );
        for dev in ["np7", "np8"] {
            assert_eq!(tcx_links(dev), ["netprobe_ingress", "netprobe_egress"]);
        }
        // No qdisc created, the foreign clsact filter untouched.
        assert_eq!([tc_state("np7"), tc_state("np8")], before);
        drop(probe);
        assert!(tcx_links("np7").is_empty());
        assert!(tcx_links("np8").is_empty());
        assert_eq!([tc_state("np7"), tc_state("np8")], before);
    });
}

/// A tcx link can be detached by anyone holding `CAP_NET_ADMIN` (`bpftool
/// link detach`); the kernel then keeps it, attached to nothing, for as
/// long as we hold it. The next collection notices and attaches again.
#[test]
fn a_detached_tcx_link_is_noticed_and_attached_again() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link set lo up");
        let probe = build(NetprobeConfig {
            attach: Attach::Tcx,
            ..config(&["lo"])
        });
        let ingress = tcx_attached("lo", libbpf_rs::libbpf_sys::BPF_TCX_INGRESS);
        assert_eq!(ingress.len(), 1, "{ingress:?}");
        run(&format!("bpftool link detach id {}", ingress[0].1));
        assert!(tcx_programs("lo", libbpf_rs::libbpf_sys::BPF_TCX_INGRESS).is_empty());
        scrape_until(&probe, "the detached link to be noticed", |c| {
            c.value("netprobe_filters_lost_total", &[]) == Some(1.0)
        });
        assert_eq!(tcx_links("lo"), ["netprobe_ingress", "netprobe_egress"]);
        scrape_until(&probe, "netprobe_up 1 again", |c| {
            c.value("netprobe_up", &[]) == Some(1.0)
        });
        counts_udp_over_lo_exactly(&probe, 20, 100);
    });
}

#[test]
fn refuses_a_slot_held_by_a_foreign_filter() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link add np2 type veth peer name np2p");
        run("tc qdisc add dev np2 clsact");
        run(&format!(
            "tc filter add dev np2 ingress pref 7 handle {FILTER_HANDLE:#x} bpf bytecode '1,6 0 0 0,'"
        ));
        let before = tc_state("np2");
        let probe = build(config(&["np2"]));
        // Not replaced, and no half-attached egress filter either.
        assert_eq!(tc_state("np2"), before);
        // A selected interface goes uncounted: not up.
        let c = scrape(&probe);
        assert_eq!(c.value("netprobe_up", &[]), Some(0.0));
        assert!(c.absent("netprobe_tc_packets_total"), "{}", c.text);
        drop(probe);
        assert_eq!(tc_state("np2"), before);
    });
}

#[test]
fn follows_interfaces_coming_and_going() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link set lo up");
        let lo_before = tc_state("lo");
        let probe = build(config(&[]));
        let c = scrape_fresh(&probe);
        assert!(series(&c, "netprobe_tc_packets_total", "lo", "ingress").is_some());
        assert!(series(&c, "netprobe_tc_packets_total", "np3", "ingress").is_none());

        run("ip link add np3 type veth peer name np3p");
        run("ip link set np3 up");
        run("ip link set np3p up");
        let c = scrape_fresh(&probe);
        for dev in ["np3", "np3p"] {
            assert!(
                series(&c, "netprobe_tc_bytes_total", dev, "egress").is_some(),
                "{}",
                c.text
            );
            assert!(tc_state(dev).contains("netprobe_egress"));
        }

        run("ip link del np3");
        let c = scrape_fresh(&probe);
        assert!(
            series(&c, "netprobe_tc_bytes_total", "np3", "egress").is_none(),
            "{}",
            c.text
        );
        assert!(series(&c, "netprobe_tc_bytes_total", "np3p", "egress").is_none());
        assert!(series(&c, "netprobe_tc_bytes_total", "lo", "egress").is_some());
        drop(probe);
        assert_eq!(tc_state("lo"), lo_before);
    });
}

#[test]
fn active_only_hides_idle_interfaces() {
    if !able() {
        return;
    }
    in_netns(|| {
        run("ip link set lo up");
        run("ip link add np4 type veth peer name np4p");
        let mut c = config(&["lo", "np4"]);
        c.active_only = true;
        let probe = build(c);
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Keep lo busy across a whole interval.
        let start = Instant::now();
        let mut buf = [0u8; 64];
        while start.elapsed() < Duration::from_millis(400) {
            tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
            rx.recv(&mut buf).unwrap();
        }
        let c = scrape(&probe);
        assert!(
            series(&c, "netprobe_tc_packets_total", "lo", "egress").is_some(),
            "{}",
            c.text
        );
        assert!(!c.text.contains("np4"), "{}", c.text);
    });
}

#[test]
fn no_btf_means_down_not_broken() {
    let empty = tempfile::tempdir().unwrap();
    let paths = Paths {
        sysfs: empty.path().to_path_buf(),
        ..Paths::default()
    };
    let ctx = BuildContext::new(paths.clone(), Arc::new(()));
    let probe = Netprobe::build(config(&["lo"]), &ctx).unwrap();
    let c = collect_with(&probe, paths).unwrap();
    assert_eq!(c.value("netprobe_up", &[]), Some(0.0));
    assert_eq!(c.samples.len(), 1, "{}", c.text);
}

#[test]
fn no_privileges_means_down_not_broken() {
    if !able() {
        return;
    }
    in_netns(|| {
        let before = tc_state("lo");
        drop_thread_capabilities();
        let probe = build(config(&["lo"]));
        let c = scrape(&probe);
        assert_eq!(c.value("netprobe_up", &[]), Some(0.0));
        assert_eq!(c.samples.len(), 1, "{}", c.text);
        assert_eq!(tc_state("lo"), before);
    });
}

/// Empty the calling thread's effective capability set. Capabilities are
/// per thread, so this leaves the rest of the test process privileged.
fn drop_thread_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget/capset with a v3 header and two data words, as
    // capget(2) documents.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        for d in &mut data {
            d.effective = 0;
        }
        assert_eq!(libc::syscall(libc::SYS_capset, &header, data.as_ptr()), 0);
    }
}
