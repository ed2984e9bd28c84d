//! node_exporter's command line on our binary: Debian's
//! prometheus-node-exporter unit and defaults file start it (with our
//! collector names), and each of node_exporter's flags does here what it
//! does there.
//!
//! Nothing here loads eBPF programs (the defaults-file run turns eBPF off
//! through the environment, which is ours, not the unit's), so these tests
//! need no suite lock.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{parse, value, Running};

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");
const UNIT: &str = "/lib/systemd/system/prometheus-node-exporter.service";
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// What an operator writes in `/etc/default/prometheus-node-exporter`:
/// only some collectors, their settings, and the web and log flags. No
/// `$` and no backslash, which systemd and the init script's shell would
/// read differently. `DIR` is a textfile directory.
const NODE_ARGS: &str = "--collector.disable-defaults --collector.cpu --collector.meminfo \
    --collector.diskstats --collector.filesystem --collector.loadavg --collector.netdev \
    --collector.textfile --collector.textfile.directory=DIR \
    --collector.filesystem.fs-types-exclude=^(tmpfs|devtmpfs) \
    --collector.diskstats.device-exclude=^(ram|loop|fd)[0-9]+ \
    --web.telemetry-path=/node-metrics --web.disable-exporter-metrics \
    --log.level=info --log.format=logfmt";

/// node_exporter's collector names and the names of ours with the same
/// series (the error for the others says so; see `unknown_node_exporter_
/// collectors_are_an_error_that_names_ours`).
const OUR_NAMES: &[(&str, &str)] = &[("meminfo", "memory"), ("diskstats", "disk")];

/// `NODE_ARGS` with our collector names.
fn our_args(dir: &str) -> String {
    let mut args = NODE_ARGS.replace("DIR", dir);
    for (theirs, ours) in OUR_NAMES {
        args = args.replace(&format!("collector.{theirs}"), &format!("collector.{ours}"));
    }
    args
}

/// The unit's `EnvironmentFile=` and `ExecStart=` values.
fn unit() -> (String, String) {
    let text = std::fs::read_to_string(UNIT)
        .unwrap_or_else(|e| panic!("{UNIT}: {e}: run scripts/setup.sh"));
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("{UNIT} has no {key}"))
            .trim_start_matches('-')
            .to_string()
    };
    (value("EnvironmentFile="), value("ExecStart="))
}

/// Start what the unit's `ExecStart` runs, with `binary` in place of
/// node_exporter's, after reading `env_file` as the init script does (a
/// shell's `.`, then `$ARGS` split into words), plus `extra` flags.
fn start_as_unit(binary: &str, env_file: &std::path::Path, extra: &str) -> Command {
    let (_, exec) = unit();
    let args = exec
        .strip_prefix(NODE_EXPORTER)
        .unwrap_or_else(|| panic!("ExecStart does not run {NODE_EXPORTER}: {exec}"));
    let command = format!("{binary}{args}");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("set -a; . \"$0\"; set +a; exec {command} {extra}"))
        .arg(env_file)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd
}

/// The defaults file the package installed, with its `ARGS=` line replaced
/// by `args` (kept as it is when `None`), in `dir`.
fn defaults_file(dir: &std::path::Path, args: Option<&str>) -> std::path::PathBuf {
    let (env_file, _) = unit();
    let text = std::fs::read_to_string(&env_file)
        .unwrap_or_else(|e| panic!("{env_file}: {e}: run scripts/setup.sh"));
    assert!(
        text.lines().any(|l| l.starts_with("ARGS=")),
        "{env_file} has no ARGS= line:\n{text}"
    );
    let text: String = text
        .lines()
        .map(|l| match args {
            Some(a) if l.starts_with("ARGS=") => format!("ARGS=\"{a}\"\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    let path = dir.join("prometheus-node-exporter");
    std::fs::write(&path, text).unwrap();
    path
}

fn collectors_run(text: &str) -> BTreeSet<String> {
    parse(text)
        .samples
        .iter()
        .filter(|s| s.metric == "herakles_scrape_collector_success")
        .filter_map(|s| s.labels.get("collector").map(str::to_string))
        .collect()
}

#[test]
fn debian_unit_and_defaults_file_start_the_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let ours = "--no-config -p 0 --bind 127.0.0.1";

    // The defaults file as installed.
    let pristine = defaults_file(dir.path(), None);
    let mut cmd = start_as_unit(BIN, &pristine, ours);
    cmd.env("HERAKLES_ENABLE_EBPF", "false");
    let exp = Running::spawn(cmd);
    let resp = exp.get("/metrics");
    assert_eq!(resp.status, 200);
    assert!(collectors_run(&resp.text()).contains("memory"));
    drop(exp);

    // An operator's ARGS, with our collector names.
    let textfiles = dir.path().join("textfile");
    std::fs::create_dir(&textfiles).unwrap();
    let textfiles = textfiles.to_str().unwrap();
    let args = our_args(textfiles);
    let env_file = defaults_file(dir.path(), Some(&args));
    let exp = Running::spawn(start_as_unit(BIN, &env_file, ours));
    let resp = exp.get("/node-metrics");
    assert_eq!(resp.status, 200);
    assert_eq!(exp.get("/metrics").status, 404);
    let text = resp.text();
    let want: BTreeSet<String> = [
        "cpu",
        "disk",
        "filesystem",
        "loadavg",
        "memory",
        "netdev",
        "textfile",
    ]
    .map(String::from)
    .into();
    assert_eq!(collectors_run(&text), want, "only the collectors named");
    let scrape = parse(&text);
    for c in &want {
        let ok = value(
            &scrape,
            "herakles_scrape_collector_success",
            &[("collector", c)],
        );
        assert_eq!(ok, Some(1.0), "collector {c}");
    }
    for sample in scrape.samples {
        assert!(
            !sample.metric.starts_with("process_") && !sample.metric.starts_with("herakles_http_"),
            "{} served with --web.disable-exporter-metrics",
            sample.metric
        );
    }
    let config = exp.get("/config").text();
    for line in [
        "fs_types_exclude: ^(tmpfs|devtmpfs)",
        "device_exclude: ^(ram|loop|fd)[0-9]+",
        &format!("directory: {textfiles}"),
    ] {
        assert!(config.contains(line), "{line} missing from /config");
    }
    // Every line logged so far is logfmt, starting as node_exporter's do.
    let log = exp.log.lock().unwrap().clone();
    assert!(!log.is_empty());
    for line in &log {
        assert!(
            line.starts_with("ts=") && line.contains(" level=") && line.contains(" msg="),
            "not logfmt: {line}"
        );
    }
    assert!(
        log.iter().any(|l| l.contains(" level=info ")
            && l.contains(&format!("msg=\"listening on http://{}\"", exp.addr))),
        "{log:#?}"
    );
    drop(exp);

    // The same ARGS with node_exporter's names are node_exporter's own
    // flags: its binary, started the same way, takes them.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env_file = defaults_file(dir.path(), Some(&NODE_ARGS.replace("DIR", textfiles)));
    let mut node = start_as_unit(
        NODE_EXPORTER,
        &env_file,
        &format!("--web.listen-address=127.0.0.1:{port}"),
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut served = None;
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            served = Some(common::get(addr, "/node-metrics"));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = node.kill();
    let _ = node.wait();
    let served = served.expect("node_exporter took the same flags and served");
    assert_eq!(served.status, 200);
    let text = served.text();
    assert!(text.contains("node_scrape_collector_success{collector=\"meminfo\"} 1"));
    assert!(!text.contains("go_goroutines"), "exporter metrics disabled");
}

#[test]
fn unknown_node_exporter_collectors_are_an_error_that_names_ours() {
    for (flag, hint) in [
        (
            "--collector.meminfo",
            "(node_exporter's \"meminfo\" is \"memory\" here)",
        ),
        (
            "--no-collector.diskstats",
            "(node_exporter's \"diskstats\" is \"disk\" here)",
        ),
        (
            "--collector.pressure",
            "is \"cpu\", \"memory\" and \"disk\" here",
        ),
        (
            "--collector.arp",
            "unknown collector \"arp\"; valid collectors: ",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["--no-config", "--check-config", flag])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains(hint), "{flag}: {err}");
    }
}

/// The metrics move to `--web.telemetry-path`; every endpoint, that one
/// included, answers GET and HEAD alike and refuses other methods.
#[test]
fn every_endpoint_answers_get_and_head_at_the_telemetry_path_too() {
    let exp = Running::start(&[
        "--web.telemetry-path=/node/metrics",
        "--collector.disable-defaults",
        "--collector.loadavg",
    ]);
    for path in [
        "/",
        "/node/metrics",
        "/health",
        "/config",
        "/subgroups",
        "/doc",
    ] {
        common::assert_get_and_head_only(exp.addr, path);
    }
    let metrics = exp.get("/node/metrics").text();
    assert!(metrics.contains("herakles_system_cpu_load_1 "), "{metrics}");
    for method in ["GET", "HEAD", "POST"] {
        let resp = common::request(exp.addr, method, "/metrics", &[]);
        assert_eq!(resp.status, 404, "{method} /metrics");
    }
    assert!(exp.get("/").text().contains("href=\"/node/metrics\""));
    assert!(exp
        .get("/doc")
        .text()
        .contains("  /node/metrics Prometheus metrics"));
}

/// The exporter's own families, which `--web.disable-exporter-metrics` and
/// `enable_telemetry: false` leave out, and the ones that stay.
const OWN: &[&str] = &[
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "herakles_http_connections",
    "herakles_scrape_cache_entries",
];
const KEPT: &[&str] = &[
    "herakles_exporter_build_info",
    "herakles_scrape_collector_success",
    "herakles_scrape_collector_duration_seconds",
    "herakles_system_cpu_load_1",
];

#[test]
fn exporter_metrics_are_served_unless_disabled() {
    let families = |exp: &Running| -> BTreeSet<String> {
        // Twice: the cache's series appear once a result is cached.
        exp.get("/metrics");
        parse(&exp.get("/metrics").text())
            .samples
            .into_iter()
            .map(|s| s.metric)
            .collect()
    };
    let base = [
        "--collector.disable-defaults",
        "--collector.loadavg",
        "--cache-ttl=1",
    ];
    let on = families(&Running::start(&base));
    for f in OWN.iter().chain(KEPT) {
        assert!(on.contains(*f), "{f} missing by default");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, "enable_telemetry: false\n").unwrap();
    let file = file.to_str().unwrap();
    let flag: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--web.disable-exporter-metrics"])
        .collect();
    let key: Vec<&str> = base.iter().copied().chain(["-c", file]).collect();
    for args in [flag, key] {
        let off = families(&Running::start(&args));
        for f in OWN {
            assert!(!off.contains(*f), "{f} served with {args:?}");
        }
        for f in KEPT {
            assert!(off.contains(*f), "{f} missing with {args:?}");
        }
    }
}

#[test]
fn enable_pprof_is_accepted_and_warns_when_true() {
    let dir = tempfile::tempdir().unwrap();
    for (value, warns) in [("true", true), ("false", false)] {
        let file = dir.path().join(format!("{value}.yaml"));
        std::fs::write(&file, format!("enable_pprof: {value}\n")).unwrap();
        let out = Command::new(BIN)
            .args(["-c", file.to_str().unwrap(), "--check-config"])
            .args(["--collector.disable-defaults", "--collector.loadavg"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "enable_pprof: {value}: {err}");
        let warned = err
            .lines()
            .any(|l| l.contains("WARN") && l.contains("enable_pprof: there is no pprof endpoint"));
        assert_eq!(warned, warns, "enable_pprof: {value}: {err}");
    }
}
