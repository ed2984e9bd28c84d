//! The golden exposition test, as node_exporter's end-to-end test: the real
//! binary reads the committed fixture trees `tests/fixtures/golden/proc` and
//! `sys` (processes included), is scraped over HTTP like Prometheus scrapes
//! it, and the exposition is compared line by line with the committed
//! `tests/fixtures/golden/metrics.txt`.
//!
//! Value assertions elsewhere check that a number is right; this catches
//! what they miss: a family renamed, a label added or dropped, a help text
//! or type changed, a series that appeared or vanished, an order that moved.
//! A change of output that is meant must show up as a change of that file.
//!
//! Regenerate the file after an intended change of output with
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test --test golden
//! ```
//!
//! and review its diff like code.
//!
//! Every collector that reads only the trees it is pointed at runs:
//! cpu, disk, filesystem (its mount table: statfs goes to a root that does
//! not exist, so every mount reports `device_error 1`), host, hwmon, kernel,
//! loadavg, memory, netdev, process, process_groups, process_top,
//! process_attribution (the processes have no `cgroup` or `status` files,
//! so only kernel threads, as root, are placed), cgroup (no cgroup tree:
//! nothing), tcp (the `/proc/net/tcp` tables: netlink cannot see a fixture
//! tree) and thermal.
//! textfile runs with no directory set, so only its scrape series show
//! (its own tests cover the files it reads, whose mtimes are run-dependent).
//! eBPF is off, so `ebpf_io` runs and has nothing to say; `bpf_inventory`
//! (the host's loaded BPF programs) is left out, and `netprobe` is off by
//! default. Classification uses the built-in rules and the tree's own
//! `subgroups.toml`.
//!
//! The exposition is the second scrape's: rates over the interval since
//! the previous scrape (`herakles_cpu_process_usage_percent`, the CPU
//! ratios) only exist from the second one on, and with fixture counters
//! that do not move they are exactly 0.
//!
//! Normalised, and only these, because their values depend on the run and
//! not on the fixture (the names and labels of the series are still
//! compared):
//!
//! * `herakles_scrape_collector_duration_seconds`,
//!   `herakles_process_scan_duration_seconds`: time taken;
//! * `herakles_mem_process_smaps_age_seconds`: time since smaps was read;
//! * `herakles_exporter_build_info`: version, git revision and compiler
//!   (its labels too);
//! * `herakles_http_connections`: the first scrape's connection may still
//!   be closing while the second is served;
//! * `herakles_http_connections_limit`: follows the open-file limit the
//!   test runs under;
//! * `herakles_exporter_config_last_reload_success_timestamp_seconds`: when
//!   the exporter started;
//! * `process_*`: the exporter's own process (memory, CPU, descriptors,
//!   start time).

mod common;

use common::Running;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden");
const EXPECTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/golden/metrics.txt"
);

/// Families whose sample values are replaced; see the module docs.
const RUN_DEPENDENT_VALUES: &[&str] = &[
    "herakles_scrape_collector_duration_seconds",
    "herakles_process_scan_duration_seconds",
    "herakles_mem_process_smaps_age_seconds",
    "herakles_http_connections",
    "herakles_http_connections_limit",
    "herakles_exporter_config_last_reload_success_timestamp_seconds",
];

/// Families whose labels and values are both replaced.
const RUN_DEPENDENT_SERIES: &[&str] = &["herakles_exporter_build_info"];

/// The exporter's own process metrics: every family with this prefix.
const SELF_PREFIX: &str = "process_";

fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let name = if line.starts_with('#') {
            None
        } else {
            line.split(['{', ' ']).next()
        };
        match name {
            Some(n) if RUN_DEPENDENT_SERIES.contains(&n) => {
                out.push_str(&format!("{n}{{<run-dependent>}} <run-dependent>"));
            }
            Some(n) if RUN_DEPENDENT_VALUES.contains(&n) || n.starts_with(SELF_PREFIX) => {
                let (series, _) = line.rsplit_once(' ').expect("a sample has a value");
                out.push_str(&format!("{series} <run-dependent>"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The lines of `want` and `got` that differ, in a form a person can read:
/// where they first part, and every line only one of them has.
fn describe_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let first = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    let mut s = format!("first difference at line {}:\n", first + 1);
    s.push_str(&format!("  want: {}\n", w.get(first).unwrap_or(&"<end>")));
    s.push_str(&format!("  got:  {}\n", g.get(first).unwrap_or(&"<end>")));
    let missing: Vec<&&str> = w.iter().filter(|l| !g.contains(l)).collect();
    let extra: Vec<&&str> = g.iter().filter(|l| !w.contains(l)).collect();
    for l in missing {
        s.push_str(&format!("- {l}\n"));
    }
    for l in extra {
        s.push_str(&format!("+ {l}\n"));
    }
    s
}

#[test]
fn fixture_trees_give_the_committed_exposition() {
    let procfs = format!("{GOLDEN}/proc");
    let sysfs = format!("{GOLDEN}/sys");
    let rootfs = format!("{GOLDEN}/no-rootfs");
    let rules = format!("{GOLDEN}/subgroups.toml");
    let exp = Running::start(&[
        "--path.procfs",
        &procfs,
        "--path.sysfs",
        &sysfs,
        "--path.rootfs",
        &rootfs,
        "--subgroups-file",
        &rules,
        "--disable-ebpf",
        "--no-collector.bpf_inventory",
        "--cache-ttl",
        "0",
        // Generous bounds, so a loaded machine cannot make a fixture read
        // time out or leave smaps unread: both would change the output.
        "--collector-timeout",
        "120",
        "--smaps-budget-ms",
        "60000",
    ]);
    let first = exp.get("/metrics");
    assert_eq!(first.status, 200);
    let second = exp.get("/metrics");
    assert_eq!(second.status, 200);
    let got = normalise(&second.text());

    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(EXPECTED, &got).unwrap();
        eprintln!("wrote {EXPECTED}");
        return;
    }
    let want = std::fs::read_to_string(EXPECTED)
        .unwrap_or_else(|e| panic!("{EXPECTED}: {e} (UPDATE_GOLDEN=1 writes it)"));
    assert!(
        want == got,
        "the exposition differs from {EXPECTED}; if the change is intended, \
         regenerate it with UPDATE_GOLDEN=1 cargo test --test golden\n{}",
        describe_difference(&want, &got)
    );
}

#[test]
fn normalising_keeps_names_and_labels() {
    let text = "# TYPE process_open_fds gauge\n\
                process_open_fds 12\n\
                herakles_exporter_build_info{version=\"0.1.0\",revision=\"abc\"} 1\n\
                herakles_scrape_collector_duration_seconds{collector=\"cpu\"} 0.0012\n\
                herakles_system_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 13932.8\n";
    assert_eq!(
        normalise(text),
        "# TYPE process_open_fds gauge\n\
         process_open_fds <run-dependent>\n\
         herakles_exporter_build_info{<run-dependent>} <run-dependent>\n\
         herakles_scrape_collector_duration_seconds{collector=\"cpu\"} <run-dependent>\n\
         herakles_system_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 13932.8\n"
    );
}
