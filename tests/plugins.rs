//! The third-party path, checked on the real binary for every plugin crate
//! in `plugins/`: it is listed with its crate, its config section is
//! validated like a built-in one, and `--no-collector.<name>` removes it.

mod common;

use std::process::Command;

use common::Running;

/// A plugin crate linked into the stock binary.
struct Plugin {
    collector: &'static str,
    crate_name: &'static str,
    /// Prefix of every metric name it writes.
    prefix: &'static str,
    /// Whether this build contains it: `cfg!(feature = ...)` of its feature.
    linked: bool,
}

const PLUGINS: &[Plugin] = &[
    Plugin {
        collector: "bpf_inventory",
        crate_name: "herakles-bpf-inventory",
        prefix: "herakles_bpf_inventory_",
        linked: cfg!(feature = "bpf-inventory"),
    },
    Plugin {
        collector: "netprobe",
        crate_name: "herakles-netprobe",
        prefix: "netprobe_",
        linked: cfg!(feature = "netprobe"),
    },
];

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herakles-node-exporter"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The plugins this binary contains, each checked against its listing row.
fn linked() -> Vec<&'static Plugin> {
    let (code, listing, _) = run(&["--no-config", "collectors"]);
    assert_eq!(code, 0);
    let mut found = Vec::new();
    for p in PLUGINS {
        let row = listing
            .lines()
            .find(|l| l.split_whitespace().next() == Some(p.collector));
        match (row, p.linked) {
            (Some(row), true) => {
                let cols: Vec<&str> = row.split_whitespace().collect();
                assert_eq!(cols[3], p.crate_name, "crate column of {row:?}");
                found.push(p);
            }
            (None, true) => panic!("{} is not listed:\n{listing}", p.collector),
            (Some(row), false) => panic!("{} is listed without its feature: {row}", p.collector),
            (None, false) => eprintln!("NOTE: {} is not linked in this build", p.collector),
        }
    }
    found
}

#[test]
fn each_plugin_is_listed_with_its_crate() {
    let found = linked();
    for p in PLUGINS.iter().filter(|p| p.linked) {
        assert!(found.iter().any(|f| f.collector == p.collector));
    }
}

#[test]
fn unknown_key_in_a_plugin_section_is_an_error_at_its_line() {
    for p in linked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(
            &file,
            format!("collectors:\n  {}:\n    bogus: 1\n", p.collector),
        )
        .unwrap();
        let (code, _, err) = run(&["-c", file.to_str().unwrap(), "--check-config"]);
        assert_eq!(code, 2, "{}: {err}", p.collector);
        let at = format!("{}:3:", file.display());
        let key = format!("collectors.{}.bogus", p.collector);
        assert!(
            err.contains(&at) && err.contains(&key),
            "{}: want {at} and {key} in {err:?}",
            p.collector
        );
    }
}

/// Every interface's qdiscs and the TC programs attached anywhere.
fn host_tc_state() -> String {
    let out = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("{cmd}: {e}"))
    };
    out("tc", &["qdisc", "show"]) + &out("bpftool", &["net", "show"])
}

#[test]
fn no_collector_flag_removes_its_series() {
    for p in linked() {
        let on = format!("--collector.{}", p.collector);
        let off = format!("--no-collector.{}", p.collector);
        let success = format!(
            "herakles_scrape_collector_success{{collector=\"{}\"}}",
            p.collector
        );

        let host_before = host_tc_state();
        let body = Running::start(&[&on]).get("/metrics").text();
        // Stopping the exporter (SIGTERM) undoes what a plugin did to the
        // host: netprobe's filters and any clsact qdisc it created.
        assert_eq!(
            host_tc_state(),
            host_before,
            "{} changed the host",
            p.collector
        );
        assert!(body.contains(&success), "{} did not run", p.collector);
        // Without the privileges its source needs, a plugin fails with a
        // reason and writes nothing; its own series are only checked when it
        // succeeded.
        if body.contains(&format!("{success} 1")) {
            assert!(
                body.lines().any(|l| l.starts_with(p.prefix)),
                "{} succeeded without {}* series",
                p.collector,
                p.prefix
            );
        } else {
            eprintln!(
                "NOTE: {} failed here; checking only its removal",
                p.collector
            );
        }

        let body = Running::start(&[&off]).get("/metrics").text();
        assert!(!body.contains(&success), "{} still ran", p.collector);
        let left: Vec<&str> = body.lines().filter(|l| l.contains(p.prefix)).collect();
        assert!(left.is_empty(), "{} left {left:?}", p.collector);
    }
}

#[test]
fn example_config_section_passes_check_config() {
    for p in linked() {
        let file = format!(
            "{}/config/collectors/{}.yaml",
            env!("CARGO_MANIFEST_DIR"),
            p.collector
        );
        assert!(
            std::path::Path::new(&file).is_file(),
            "{} has no example section at {file}",
            p.collector
        );
        let (code, out, err) = run(&["-c", &file, "--check-config"]);
        assert_eq!(code, 0, "{file}: {out}{err}");
    }
}
