//! The process collectors against real processes on this host.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use herakles_core::testing::{parse_text, Collected};
use herakles_core::{
    BuildCollector, BuildContext, Collector, MetricSink, NoConfig, Paths, ScrapeContext,
};
use herakles_node_exporter::collectors::{
    process::Process, process_groups::ProcessGroups, process_top::ProcessTop,
};
use herakles_node_exporter::config::{Config, SmapsMode};

/// The three process collectors, built on one shared table.
struct Exporter(Vec<Box<dyn Collector>>);

impl Exporter {
    fn new(config: Config) -> Exporter {
        let ctx = BuildContext::new(Paths::default(), Arc::new(config));
        Exporter(vec![
            Box::new(Process::build(NoConfig {}, &ctx).unwrap()),
            Box::new(ProcessGroups::build(NoConfig {}, &ctx).unwrap()),
            Box::new(ProcessTop::build(NoConfig {}, &ctx).unwrap()),
        ])
    }

    fn scrape(&self) -> Collected {
        let ctx = ScrapeContext::new(Arc::new(Paths::default()));
        let mut sink = MetricSink::new();
        for c in &self.0 {
            c.collect(&ctx, &mut sink).unwrap();
        }
        parse_text(&sink.to_text())
    }
}

fn all_smaps() -> Config {
    Config {
        smaps_mode: SmapsMode::All,
        smaps_budget_ms: 60_000,
        ..Config::default()
    }
}

/// Kills the child when the test ends, pass or fail.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` and wait for it to print a line (its "ready" signal).
fn start_ready(cmd: &mut Command) -> (Kid, String) {
    let mut child = Kid(cmd.stdout(Stdio::piped()).spawn().unwrap());
    let mut line = String::new();
    let out = child.0.stdout.take().unwrap();
    BufReader::new(out).read_line(&mut line).unwrap();
    (child, line)
}

/// A copy of `sleep` under another name, so its comm is that name.
fn renamed_sleep(dir: &std::path::Path, name: &str) -> Kid {
    let bin = dir.join(name);
    std::fs::copy("/bin/sleep", &bin).unwrap();
    let child = Command::new(&bin).arg("300").spawn().unwrap();
    // Wait for exec to complete: comm changes at exec.
    let comm = format!("/proc/{}/comm", child.id());
    for _ in 0..200 {
        if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == name) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Kid(child)
}

fn labels_of(c: &Collected, metric: &str, pid: u32) -> Option<Vec<(String, String)>> {
    let pid = pid.to_string();
    c.samples
        .iter()
        .find(|(n, l, _)| n == metric && l.iter().any(|(k, v)| k == "pid" && *v == pid))
        .map(|(_, l, _)| l.clone())
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn value_of(c: &Collected, metric: &str, pid: u32) -> Option<f64> {
    let pid = pid.to_string();
    c.samples
        .iter()
        .find(|(n, l, _)| n == metric && l.iter().any(|(k, v)| k == "pid" && *v == pid))
        .map(|(_, _, v)| *v)
}

#[test]
fn daemons_are_classified_by_comm() {
    let dir = tempfile::tempdir().unwrap();
    let pg = renamed_sleep(dir.path(), "postgres");
    let web = renamed_sleep(dir.path(), "nginx");
    let c = Exporter::new(Config::default()).scrape();
    let l = labels_of(&c, "herakles_mem_process_rss_bytes", web.0.id()).expect("nginx exported");
    assert_eq!(
        (label(&l, "group"), label(&l, "subgroup")),
        ("web", "nginx")
    );
    let l = labels_of(&c, "herakles_mem_process_rss_bytes", pg.0.id()).expect("postgres exported");
    assert_eq!(label(&l, "name"), "postgres");
    assert_eq!(
        (label(&l, "group"), label(&l, "subgroup")),
        ("db", "postgres")
    );
    assert!(
        c.value(
            "herakles_group_processes",
            &[("group", "db"), ("subgroup", "postgres")]
        )
        .unwrap()
            >= 1.0
    );
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn private_memory_shows_in_rss_and_uss() {
    let (kid, _) = start_ready(Command::new("python3").args([
        "-c",
        "import sys,time\nb=bytearray(64*1024*1024)\nfor i in range(0,len(b),4096): b[i]=1\nprint('ready',flush=True)\ntime.sleep(300)",
    ]));
    let c = Exporter::new(all_smaps()).scrape();
    let pid = kid.0.id();
    let rss = value_of(&c, "herakles_mem_process_rss_bytes", pid).unwrap();
    let pss = value_of(&c, "herakles_mem_process_pss_bytes", pid).unwrap();
    let uss = value_of(&c, "herakles_mem_process_uss_bytes", pid).unwrap();
    assert!(uss <= pss && pss <= rss, "uss {uss} pss {pss} rss {rss}");
    // 64 MiB touched, plus the interpreter (some MiB, mostly private).
    assert!((64.0 * MIB..90.0 * MIB).contains(&uss), "uss {uss}");
    assert!((64.0 * MIB..100.0 * MIB).contains(&rss), "rss {rss}");
}

/// Kills a grandchild (not ours to wait for) when the test ends.
struct PidGuard(u32);

impl Drop for PidGuard {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid we were told by the process we started.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
    }
}

#[test]
fn shared_pages_are_split_in_pss() {
    // Parent and child both touch the same 64 MiB of anonymous shared
    // memory; the parent reports once the child has.
    let (kid, line) = start_ready(Command::new("python3").args([
        "-c",
        "import mmap,os,time\nm=mmap.mmap(-1,64<<20,flags=mmap.MAP_SHARED)\nfor i in range(0,len(m),4096): m[i]=1\nr,w=os.pipe()\npid=os.fork()\nif pid==0:\n    s=sum(m[i] for i in range(0,len(m),4096))\n    os.write(w,b'x'); time.sleep(300); os._exit(0)\nos.read(r,1)\nprint(pid,flush=True)\ntime.sleep(300)",
    ]));
    let child = PidGuard(line.trim().parse().unwrap());
    let c = Exporter::new(all_smaps()).scrape();
    for pid in [kid.0.id(), child.0] {
        let rss = value_of(&c, "herakles_mem_process_rss_bytes", pid).unwrap();
        let pss = value_of(&c, "herakles_mem_process_pss_bytes", pid).unwrap();
        let uss = value_of(&c, "herakles_mem_process_uss_bytes", pid).unwrap();
        assert!(uss <= pss && pss <= rss, "uss {uss} pss {pss} rss {rss}");
        assert!(rss >= 64.0 * MIB, "rss {rss}");
        // The 64 MiB are shared: not unique to either, and half in each PSS.
        assert!(
            uss < rss - 60.0 * MIB,
            "shared pages counted as unique: {uss}"
        );
        let shared_share = pss - uss;
        assert!(
            (shared_share - 32.0 * MIB).abs() < 8.0 * MIB,
            "pss {pss} - uss {uss} is not half of the shared 64 MiB"
        );
    }
}

#[test]
fn hostile_names_yield_valid_exposition() {
    // comm (15 bytes max) and cmdline with quotes, backslash, newline,
    // braces and invalid UTF-8.
    let (_kid, _) = start_ready(Command::new("python3").args([
        "-c",
        "import ctypes,sys,time\nctypes.CDLL(None).prctl(15, b'q\"b\\\\{}\\n\\xff\\xfez', 0, 0, 0)\nprint('ready',flush=True)\ntime.sleep(300)",
        "arg\"with\\back{slash}\nnewline",
    ]));
    let text = {
        let e = Exporter::new(all_smaps());
        let ctx = ScrapeContext::new(Arc::new(Paths::default()));
        let mut sink = MetricSink::new();
        for c in &e.0 {
            c.collect(&ctx, &mut sink).unwrap();
        }
        sink.to_text()
    };
    assert!(
        text.contains("q\\\"b\\\\{}\\n"),
        "hostile comm not exported escaped"
    );
    assert_eq!(common::promtool_check(&text), "");
}

#[test]
fn second_scrape_has_cpu_rates_and_monotonic_group_counters() {
    let e = Exporter::new(Config::default());
    let a = e.scrape();
    let (kid, _) = start_ready(Command::new("python3").args([
        "-c",
        "import time\nprint('ready',flush=True)\nt=time.time()\nwhile time.time()-t<0.3: pass\ntime.sleep(300)",
    ]));
    std::thread::sleep(std::time::Duration::from_millis(400));
    let b = e.scrape();
    drop(kid);
    let c = e.scrape();
    let user = |x: &Collected| {
        x.value(
            "herakles_group_cpu_seconds_total",
            &[
                ("group", "other"),
                ("subgroup", "unknown"),
                ("mode", "user"),
            ],
        )
        .unwrap_or(0.0)
    };
    assert!(
        user(&a) <= user(&b) && user(&b) <= user(&c),
        "{} {} {}",
        user(&a),
        user(&b),
        user(&c)
    );
    assert!(b.count("herakles_cpu_process_usage_percent") > 0);
}

fn exporter_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herakles-node-exporter"))
        .arg("--no-config")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn subgroups_subcommand_lists_and_explains() {
    let out = exporter_cmd(&["subgroups"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("postgres"));
    let out = exporter_cmd(&["subgroups", "--explain", "postgres"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("db") && text.contains("postgres"), "{text}");
}

#[test]
fn subgroups_page_is_served() {
    let e = common::Running::start(&[]);
    let r = e.get("/subgroups");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("postgres"));
}

#[test]
fn processes_exiting_during_scans_are_not_errors() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = Command::new("true").status();
            }
        })
    };
    let e = Exporter::new(all_smaps());
    let mut last = None;
    for _ in 0..30 {
        last = Some(e.scrape());
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    let c = last.unwrap();
    for file in ["stat", "cmdline"] {
        assert_eq!(
            c.value("herakles_process_read_errors_total", &[("file", file)]),
            Some(0.0),
            "{file}"
        );
    }
}

#[test]
fn broken_rules_file_is_a_config_error() {
    let out = exporter_cmd(&[
        "--check-config",
        "--subgroups-file",
        "/nonexistent/rules.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/rules.toml"), "{err}");
}

#[test]
fn daemons_are_classified_by_cmdline() {
    // A JVM-like command line: the comm says nothing, the main class does.
    let (kid, _) = start_ready(Command::new("bash").args([
        "-c",
        "exec -a java python3 -c 'import time; print(\"ready\", flush=True); time.sleep(300)' -cp /opt/kafka/libs kafka.Kafka /etc/kafka/server.properties",
    ]));
    let c = Exporter::new(Config::default()).scrape();
    let l = labels_of(&c, "herakles_mem_process_rss_bytes", kid.0.id()).expect("exported");
    assert_eq!(
        (label(&l, "group"), label(&l, "subgroup")),
        ("messaging", "kafka")
    );
}
