//! End-to-end tests: the real binary on an ephemeral loopback port, scraped
//! over HTTP, checked against the live /proc files and promtool.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{parse, promtool_check, value, Running};

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");

fn meminfo_bytes(key: &str) -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap()
        * 1024.0
}

#[test]
fn live_scrape_matches_proc_and_passes_promtool() {
    let exp = Running::start(&[]);
    let ctxt_before = common::proc_stat("ctxt");
    let forks_before = common::proc_stat("processes");
    let resp = exp.get("/metrics");
    let ctxt_after = common::proc_stat("ctxt");
    let forks_after = common::proc_stat("processes");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = resp.text();
    let complaints = promtool_check(&text);
    assert!(complaints.trim().is_empty(), "promtool: {complaints}");

    let s = parse(&text);
    assert_eq!(
        value(&s, "herakles_system_memory_total_bytes", &[]),
        Some(meminfo_bytes("MemTotal"))
    );
    let ctxt = value(&s, "herakles_system_context_switches_total", &[]).unwrap();
    assert!(
        ctxt >= ctxt_before && ctxt <= ctxt_after,
        "{ctxt_before} <= {ctxt} <= {ctxt_after}"
    );
    let forks = value(&s, "herakles_system_forks_total", &[]).unwrap();
    assert!(forks >= forks_before && forks <= forks_after);
    assert_eq!(
        value(&s, "herakles_system_boot_time_seconds", &[]),
        Some(common::proc_stat("btime"))
    );
    let load: Vec<f64> = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    let got = value(&s, "herakles_system_cpu_load_15", &[]).unwrap();
    assert!((got - load[2]).abs() < 0.5, "load15 {got} vs {}", load[2]);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(value(
        &s,
        "herakles_system_uname_info",
        &[("release", release.trim())]
    )
    .is_some());

    for c in ["memory", "loadavg", "host", "kernel"] {
        assert_eq!(
            value(&s, "herakles_scrape_collector_success", &[("collector", c)]),
            Some(1.0),
            "collector {c}"
        );
    }
    assert!(value(
        &s,
        "herakles_exporter_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))]
    )
    .is_some());
    assert!(value(&s, "process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
}

#[test]
fn collectors_listing_shows_every_builtin() {
    let out = Command::new(BIN)
        .args(["--no-config", "collectors"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in ["memory", "loadavg", "host", "kernel"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"));
        assert!(line.contains("herakles-node-exporter"), "{line}");
    }
    let out = Command::new(BIN)
        .args(["--no-config", "--no-collector.memory", "collectors"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("memory ")).unwrap();
    assert!(line.split_whitespace().nth(1) == Some("no"), "{line}");
}

#[test]
fn disabling_by_flag_config_and_env_removes_series() {
    let exp = Running::start(&["--no-collector.memory"]);
    let text = exp.get("/metrics").text();
    assert!(!text.contains("herakles_system_memory_total_bytes"));
    assert!(text.contains("herakles_system_cpu_load_1 "));
    assert!(!text.contains("collector=\"memory\""));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, "collectors:\n  loadavg:\n    enabled: false\n").unwrap();
    let exp = Running::start(&["-c", cfg.to_str().unwrap()]);
    let text = exp.get("/metrics").text();
    assert!(!text.contains("herakles_system_cpu_load_1 "));
    assert!(text.contains("herakles_system_memory_total_bytes "));

    // The flag wins over the file.
    let exp = Running::start(&["-c", cfg.to_str().unwrap(), "--collector.loadavg"]);
    assert!(exp
        .get("/metrics")
        .text()
        .contains("herakles_system_cpu_load_1 "));

    let exp = Running::start_env(&[], &[("HERAKLES_COLLECTORS__KERNEL__ENABLED", "false")]);
    let text = exp.get("/metrics").text();
    assert!(!text.contains("herakles_system_forks_total"));
    assert!(text.contains("herakles_system_cpu_load_1 "));
}

#[test]
fn collect_and_exclude_select_collectors() {
    let exp = Running::start(&[]);
    let text = exp
        .get("/metrics?collect[]=loadavg&collect%5B%5D=host")
        .text();
    assert!(text.contains("herakles_system_cpu_load_1 "));
    assert!(text.contains("herakles_system_uptime_seconds "));
    assert!(!text.contains("herakles_system_memory_total_bytes"));
    assert!(!text.contains("collector=\"memory\""));

    let text = exp.get("/metrics?exclude[]=loadavg").text();
    assert!(!text.contains("herakles_system_cpu_load_1 "));
    assert!(text.contains("herakles_system_memory_total_bytes "));

    assert_eq!(
        exp.get("/metrics?collect[]=loadavg&exclude[]=host").status,
        400
    );
    let bad = exp.get("/metrics?collect[]=nonesuch");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("valid collectors"), "{}", bad.text());
}

#[test]
fn gzip_when_accepted() {
    let exp = Running::start(&[]);
    let resp = common::get_with(exp.addr, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&resp.body[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert!(plain.contains("# TYPE herakles_system_memory_total_bytes gauge"));
    let resp = exp.get("/metrics");
    assert_eq!(resp.header("content-encoding"), None);
}

#[test]
fn other_endpoints() {
    let exp = Running::start(&[]);
    exp.get("/metrics");
    let health = exp.get("/health");
    assert_eq!(health.status, 200);
    let h: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(h["status"], "ok");
    assert!(h["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert!(h["last_scrape"].as_f64().is_some());
    assert!(h["collectors"]["memory"]["last_success"].as_f64().is_some());

    let index = exp.get("/");
    assert!(index.text().contains("href=\"/metrics\""));
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let config = exp.get("/config");
    assert!(config.text().contains("collector_timeout"));
    assert_eq!(exp.get("/subgroups").status, 200);
    let doc = exp.get("/doc");
    assert!(doc.text().contains("COLLECTORS"));
    assert!(doc.text().contains("memory"));
    assert_eq!(exp.get("/nope").status, 404);
    assert_eq!(exp.get("/metrics/extra").status, 404);
}

#[test]
fn head_answers_like_get_and_other_methods_get_405() {
    let exp = Running::start(&[]);
    for path in ["/", "/metrics", "/health", "/config", "/subgroups", "/doc"] {
        common::assert_get_and_head_only(exp.addr, path);
    }
    assert_eq!(common::request(exp.addr, "HEAD", "/nope", &[]).status, 404);
    assert_eq!(common::request(exp.addr, "POST", "/nope", &[]).status, 404);
}

#[test]
fn malformed_requests_do_not_log_errors() {
    let exp = Running::start(&[]);
    let garbage: [&[u8]; 4] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost",
        // The start of a TLS ClientHello: HTTPS to the plain-HTTP port.
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ];
    for request in garbage.iter().cycle().take(40) {
        let mut s = TcpStream::connect(exp.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(request).unwrap();
        let _ = s.shutdown(Shutdown::Write);
        // Until the exporter closes it: it logs before it closes.
        let _ = s.read_to_end(&mut Vec::new());
    }
    assert_eq!(exp.get("/metrics").status, 200);
    // Let the thread that reads the exporter's stderr catch up.
    std::thread::sleep(Duration::from_millis(300));
    let log = exp.log.lock().unwrap();
    let errors: Vec<_> = log.iter().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn unreadable_procfs_fails_collectors_but_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let exp = Running::start(&["--path.procfs", dir.path().to_str().unwrap()]);
    let resp = exp.get("/metrics");
    assert_eq!(resp.status, 200);
    let s = parse(&resp.text());
    assert_eq!(
        value(
            &s,
            "herakles_scrape_collector_success",
            &[("collector", "memory")]
        ),
        Some(0.0)
    );
    assert!(value(&s, "herakles_system_memory_total_bytes", &[]).is_none());
    let h: serde_json::Value = serde_json::from_slice(&exp.get("/health").body).unwrap();
    assert_eq!(h["status"], "degraded");
    assert!(h["collectors"]["memory"]["last_error"]
        .as_str()
        .unwrap()
        .contains("meminfo"));
}

#[test]
fn sigterm_exits_zero_quickly() {
    let mut exp = Running::start(&[]);
    exp.get("/metrics");
    let pid = nix::unistd::Pid::from_raw(exp.child.id() as i32);
    let t = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(s) = exp.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

/// The handlers are in place by the time the address is logged: a
/// supervisor (or a test) that sends SIGTERM the moment it sees "listening
/// on" gets a clean stop (exit 0, "shutting down" logged), never the
/// default action that would skip clean-up.
#[test]
fn sigterm_the_moment_it_listens_is_a_clean_stop() {
    for _ in 0..10 {
        let mut exp = Running::start(&[]);
        let pid = nix::unistd::Pid::from_raw(exp.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = exp.child.wait().unwrap();
        assert!(status.success(), "{status}");
        let deadline = Instant::now() + Duration::from_secs(2);
        while !exp
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("shutting down"))
        {
            assert!(Instant::now() < deadline, "{:?}", exp.log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn port_in_use_is_one_clear_line_and_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(BIN)
        .args(["--no-config", "--bind", "127.0.0.1", "-p", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen on 127.0.0.1:") && err.contains("in use"),
        "{err}"
    );
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_files_exit_2_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("a.yaml", "port: 9300\nbind: [oops\n", "a.yaml:"),
        (
            "b.yaml",
            "port: 9300\ncache_tll: 3\n",
            "b.yaml:2:1: key \"cache_tll\": unknown key (did you mean \"cache_ttl\"?)",
        ),
        ("c.toml", "port = \"nine\"\n", "c.toml:1:"),
        (
            "d.json",
            "{\"port\": 1,\n \"collectors\": {\"memory\": {\"enabled\": \"yes\"}}}",
            "d.json:2:",
        ),
        (
            "e.yaml",
            "collectors:\n  memroy: {}\n",
            "did you mean \"memory\"",
        ),
    ];
    for (name, body, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let (code, _, err) = run(&["-c", path.to_str().unwrap(), "--check-config"]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(want), "{name}: want {want:?} in {err:?}");
    }
    let (code, _, err) = run(&["--no-config", "--no-collector.nonesuch"]);
    assert_eq!(code, 2);
    assert!(err.contains("valid collectors"), "{err}");
}

#[test]
fn config_template_and_show_config_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["yaml", "toml", "json"] {
        let path = dir.path().join(format!("t.{ext}"));
        let mut args = vec!["config", "--format", ext, "-o", path.to_str().unwrap()];
        if ext != "json" {
            args.push("--commented");
        }
        let (code, _, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = run(&["-c", path.to_str().unwrap(), "--check-config"]);
        assert_eq!(code, 0, "{ext}: {err}");
        assert!(out.contains("configuration OK"));
    }
    let (code, out, _) = run(&[
        "--no-config",
        "--show-config",
        "--config-format",
        "json",
        "-p",
        "9999",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["port"], 9999);
    assert_eq!(v["collectors"]["memory"]["enabled"], true);
    let (code, out, _) = run(&["--no-config", "--show-config", "--config-format", "toml"]);
    assert_eq!(code, 0);
    assert!(out.contains("[collectors.memory]"), "{out}");

    let path = dir.path().join("u.yaml");
    std::fs::write(&path, "port: 9400\n").unwrap();
    let (code, out, _) = run(&[
        "-c",
        path.to_str().unwrap(),
        "--show-user-config",
        "--config-format",
        "json",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\"port\": 9400") && !out.contains("collectors"),
        "{out}"
    );
}

#[test]
fn check_command_reports_each_requirement() {
    let (code, out, _) = run(&["--no-config", "check", "--all"]);
    assert!(out.contains("/proc readable"), "{out}");
    assert!(out.contains("kernel BTF present"), "{out}");
    let failed = out.lines().filter(|l| l.starts_with("FAIL")).count();
    assert_eq!(code == 0, failed == 0, "{out}");
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&[
        "--no-config",
        "--path.procfs",
        dir.path().to_str().unwrap(),
        "check",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FAIL"), "{out}");
}

#[test]
fn test_command_runs_collectors_without_http() {
    let (code, out, err) = run(&["--no-config", "test", "-n", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("iteration").count(), 2);
    assert!(out.contains("ok    memory"), "{out}");
}
