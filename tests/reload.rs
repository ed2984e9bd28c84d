//! SIGHUP reloads the configuration, the rule files and what they build,
//! on the real binary: a valid change takes effect, an invalid one is
//! logged with its position and the running configuration stays, garbage
//! never stops the daemon, and twenty reloads with eBPF and netprobe leave
//! no descriptor, BPF link or TC filter behind. systemd hears READY=1,
//! RELOADING=1 and STOPPING=1 on NOTIFY_SOCKET.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::tls::{htpasswd_hash, Pki};
use common::{get, get_with, in_netns, parse, promtool_check, sh, value, Running};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use proptest::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");

const SUCCESSFUL: &str = "herakles_exporter_config_last_reload_successful";
const SUCCESS_TIME: &str = "herakles_exporter_config_last_reload_success_timestamp_seconds";
const RELOADS: &str = "herakles_exporter_config_reloads_total";

/// A scratch directory holding the config file the exporter runs with.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: impl AsRef<[u8]>) {
        // Written whole and renamed over, as an editor or config management
        // does, so a reload never reads half a file.
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(name)).unwrap();
    }

    /// The exporter on `c.yaml` plus `args`, with this directory as its
    /// working directory (so no `./subgroups.toml` of ours is read).
    fn start(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .arg("-c")
            .arg(self.path("c.yaml"))
            .args(["-p", "0", "--bind", "127.0.0.1"])
            .args(args)
            .envs(env.iter().copied());
        Running::spawn(cmd)
    }
}

fn pid(e: &Running) -> Pid {
    Pid::from_raw(e.child.id() as i32)
}

fn metrics(e: &Running) -> prometheus_parse::Scrape {
    metrics_as(e, None)
}

/// The scrape, with `authorization` as the Authorization header.
fn metrics_as(e: &Running, authorization: Option<&str>) -> prometheus_parse::Scrape {
    let r = get_with(e.addr, "/metrics", &header(authorization));
    assert_eq!(r.status, 200);
    parse(&r.text())
}

fn header(authorization: Option<&str>) -> Vec<(&'static str, &str)> {
    authorization
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// Reloads so far, by result.
fn reloads(s: &prometheus_parse::Scrape) -> (f64, f64) {
    let n = |result| value(s, RELOADS, &[("result", result)]).unwrap();
    (n("success"), n("failure"))
}

/// Send SIGHUP and wait until the reload it starts has finished (its
/// outcome counted); the scrape after it.
fn hup(e: &Running) -> prometheus_parse::Scrape {
    let (ok, failed) = reloads(&metrics(e));
    kill(pid(e), Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(alive(e), "the exporter died on SIGHUP:\n{}", log(e));
        let (ok2, failed2) = reloads(&metrics(e));
        if ok2 + failed2 > ok + failed {
            // The count moves once the new collectors serve, but a scrape
            // already running on the old ones renders it too (the reload
            // metrics are read when the scrape ends): only a scrape begun
            // after seeing the count is sure to come from the new set.
            return metrics(e);
        }
        assert!(Instant::now() < deadline, "no reload counted:\n{}", log(e));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log(e: &Running) -> String {
    e.log.lock().unwrap().join("\n")
}

/// Whether the exporter is still running (not a zombie): `Running` reaps
/// it only when dropped.
fn alive(e: &Running) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", e.child.id()))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// `sleep` run through a symbolic link called `name`, so that its comm is
/// that name (the kernel takes it from the path executed); killed on drop.
/// A link rather than a copy: executing a file just written fails with
/// ETXTBSY when another test thread forks while it is still open.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn start(dir: &Path, name: &str) -> Sleeper {
        let bin = dir.join(name);
        std::os::unix::fs::symlink("/bin/sleep", &bin).unwrap();
        let child = Command::new(&bin).arg("300").spawn().unwrap();
        let comm = format!("/proc/{}/comm", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == name) {
            assert!(Instant::now() < deadline, "{name} never ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        Sleeper(child)
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The group and subgroup the exporter gives process `pid`.
fn group_of(s: &prometheus_parse::Scrape, pid: u32) -> (String, String) {
    let pid = pid.to_string();
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == "herakles_mem_process_rss_bytes" && x.labels.get("pid") == Some(&pid))
        .unwrap_or_else(|| panic!("pid {pid} not exported"));
    let l = |k| sample.labels.get(k).unwrap().to_string();
    (l("group"), l("subgroup"))
}

fn rule(name: &str, group: &str, subgroup: &str) -> String {
    format!(
        "subgroups = [\n  {{ group = \"{group}\", subgroup = \"{subgroup}\", matches = [\"{name}\"] }},\n]\n"
    )
}

fn has_family(s: &prometheus_parse::Scrape, name: &str) -> bool {
    s.samples.iter().any(|x| x.metric == name)
}

const MEMORY: &str = "herakles_system_memory_total_bytes";

/// A valid change takes effect: a collector switched off disappears, a
/// changed rule file reclassifies a running process, and the reload
/// metrics move (successful 1, the timestamp advances). The variables and
/// flags stay on top of the file, as at start-up.
#[test]
fn a_valid_change_takes_effect() {
    let site = Site::new();
    site.write("rules.toml", rule("hrk-reload-a", "alpha", "one"));
    site.write(
        "c.yaml",
        "subgroups_file: rules.toml\ncache_ttl: 0\ncollectors:\n  memory:\n    enabled: true\n",
    );
    let sleeper = Sleeper::start(site.dir.path(), "hrk-reload-a");
    // The variable sets top_n, a flag turns eBPF off: both must outlive
    // reloads although the file never names them.
    let e = site.start(&["--disable-ebpf"], &[("HERAKLES_TOP_N", "7")]);
    let s = metrics(&e);
    assert!(has_family(&s, MEMORY));
    assert_eq!(group_of(&s, sleeper.0.id()), ("alpha".into(), "one".into()));
    assert_eq!(value(&s, SUCCESSFUL, &[]), Some(1.0));
    assert_eq!(reloads(&s), (0.0, 0.0));
    let started = value(&s, SUCCESS_TIME, &[]).unwrap();
    let complaints = promtool_check(&e.get("/metrics").text());
    assert!(complaints.trim().is_empty(), "promtool: {complaints}");

    // The config file: memory off.
    site.write(
        "c.yaml",
        "subgroups_file: rules.toml\ncache_ttl: 0\ncollectors:\n  memory:\n    enabled: false\n",
    );
    let s = hup(&e);
    assert!(!has_family(&s, MEMORY), "memory still collected");
    assert_eq!(value(&s, SUCCESSFUL, &[]), Some(1.0));
    assert_eq!(reloads(&s), (1.0, 0.0));
    let first = value(&s, SUCCESS_TIME, &[]).unwrap();
    assert!(first > started, "{first} <= {started}");
    let config = e.get("/config").text();
    assert!(config.contains("top_n: 7"), "the variable was lost");
    assert!(config.contains("enable_ebpf: false"), "the flag was lost");
    let health: serde_json::Value = serde_json::from_str(&e.get("/health").text()).unwrap();
    assert!(health["collectors"].get("memory").is_none(), "{health}");
    assert!(health["collectors"].get("process").is_some(), "{health}");

    // Only the rule file changes: the process is classified anew.
    site.write("rules.toml", rule("hrk-reload-a", "beta", "two"));
    let s = hup(&e);
    assert_eq!(group_of(&s, sleeper.0.id()), ("beta".into(), "two".into()));
    assert_eq!(reloads(&s), (2.0, 0.0));
    assert!(value(&s, SUCCESS_TIME, &[]).unwrap() > first);
    assert!(e.get("/subgroups").text().contains("beta"));

    // Nothing changed: successful, and nothing rebuilt.
    let s = hup(&e);
    assert_eq!(reloads(&s), (3.0, 0.0));
    e.wait_log("configuration reloaded: no collector changed", 1);
    e.wait_log("the previous collectors are shut down", 2);
}

/// An invalid file (config or rules) is logged with file and line, the
/// running configuration keeps being served, successful goes to 0 and the
/// timestamp stays; a fixed file then reloads.
#[test]
fn an_invalid_change_keeps_the_running_configuration() {
    let site = Site::new();
    site.write("rules.toml", rule("hrk-reload-b", "alpha", "one"));
    let good = "subgroups_file: rules.toml\ncollectors:\n  memory:\n    enabled: true\n";
    site.write("c.yaml", good);
    let e = site.start(&["--disable-ebpf"], &[]);
    let before = value(&metrics(&e), SUCCESS_TIME, &[]).unwrap();

    // A bad value on line 4, with memory switched off above it.
    site.write(
        "c.yaml",
        "subgroups_file: rules.toml\ncollectors:\n  memory:\n    enabled: flase\n",
    );
    let s = hup(&e);
    assert_eq!(value(&s, SUCCESSFUL, &[]), Some(0.0));
    assert_eq!(reloads(&s), (0.0, 1.0));
    assert_eq!(value(&s, SUCCESS_TIME, &[]), Some(before));
    assert!(has_family(&s, MEMORY), "the running config was dropped");
    e.wait_log("c.yaml:4:", 1);
    e.wait_log("reload failed, the running configuration stays", 1);

    // A valid file with a bad range, and a rules file with a bad regex.
    site.write("c.yaml", format!("{good}cache_ttl: 999999\n"));
    let s = hup(&e);
    assert_eq!(reloads(&s), (0.0, 2.0));
    e.wait_log("c.yaml:5:", 1);
    site.write("c.yaml", good);
    site.write(
        "rules.toml",
        "subgroups = [\n  { group = \"g\", subgroup = \"s\", cmdline_matches = ['(unclosed'] },\n]\n",
    );
    let s = hup(&e);
    assert_eq!(reloads(&s), (0.0, 3.0));
    assert_eq!(value(&s, SUCCESSFUL, &[]), Some(0.0));
    e.wait_log("rules.toml:2:", 1);
    assert!(has_family(&s, MEMORY));

    // Fixed: it reloads (the config is as at start, the rules are not).
    site.write("rules.toml", rule("hrk-reload-b", "beta", "two"));
    let s = hup(&e);
    assert_eq!(value(&s, SUCCESSFUL, &[]), Some(1.0));
    assert_eq!(reloads(&s), (1.0, 3.0));
    assert!(value(&s, SUCCESS_TIME, &[]).unwrap() > before);
}

/// Settings bound at start-up are kept, with a log line saying a restart
/// is needed; the rest of the file applies.
#[test]
fn restart_only_settings_are_kept_and_named() {
    let site = Site::new();
    site.write("c.yaml", "port: 0\nbind: 127.0.0.1\n");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(site.dir.path())
        .arg("-c")
        .arg(site.path("c.yaml"))
        .arg("--disable-ebpf");
    let e = Running::spawn(cmd);
    site.write(
        "c.yaml",
        "port: 1\nbind: 127.0.0.1\nlog_format: json\ncache_ttl: 3\n",
    );
    let s = hup(&e);
    assert_eq!(value(&s, SUCCESSFUL, &[]), Some(1.0));
    e.wait_log(
        "port changed to 1 in the configuration: that needs a restart",
        1,
    );
    e.wait_log("log_format changed to Json", 1);
    assert!(e.get("/config").text().contains("cache_ttl: 3"));
    // Still text logs, on the same address.
    assert!(!log(&e).contains("{\""), "{}", log(&e));
    assert_eq!(get(e.addr, "/metrics").status, 200);
}

/// SIGHUP reloads the web config: changed users and headers apply to the
/// next connections; an invalid one fails the reload with its file and
/// line, and the users in force stay; switching TLS on needs a restart and
/// is refused with a warning, the rest of the reload going through.
#[test]
fn the_web_config_reloads() {
    let site = Site::new();
    Pki::new().server("server").write(site.dir.path(), "server");
    let users =
        |password: &str| format!("basic_auth_users:\n  alice: {}\n", htpasswd_hash(password));
    site.write("web.yml", users("s3cret"));
    site.write("c.yaml", "collectors:\n  memory:\n    enabled: true\n");
    let web = site.path("web.yml");
    let e = site.start(
        &["--disable-ebpf", "--web.config.file", web.to_str().unwrap()],
        &[],
    );
    let (old, new) = (basic("alice", "s3cret"), basic("alice", "n3w"));
    let status = |auth: Option<&str>| get_with(e.addr, "/metrics", &header(auth));
    assert_eq!(status(None).status, 401);
    assert_eq!(status(Some(&old)).status, 200);
    assert_eq!(status(Some(&new)).status, 401);

    site.write(
        "web.yml",
        format!(
            "{}http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            users("n3w")
        ),
    );
    kill(pid(&e), Signal::SIGHUP).unwrap();
    e.wait_log("web config reloaded", 1);
    assert_eq!(status(Some(&old)).status, 401);
    let ok = status(Some(&new));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-frame-options"), Some("deny"));
    let s = metrics_as(&e, Some(&new));
    assert_eq!(value(&s, SUCCESSFUL, &[]), Some(1.0));
    assert_eq!(reloads(&s), (1.0, 0.0));

    // Not a bcrypt hash, on line 2.
    site.write("web.yml", "basic_auth_users:\n  alice: plaintext\n");
    kill(pid(&e), Signal::SIGHUP).unwrap();
    e.wait_log("reload failed, the running configuration stays", 1);
    e.wait_log("web.yml:2", 1);
    assert_eq!(status(Some(&new)).status, 200);
    let s = metrics_as(&e, Some(&new));
    assert_eq!(value(&s, SUCCESSFUL, &[]), Some(0.0));
    assert_eq!(reloads(&s), (1.0, 1.0));

    // TLS on: a restart's business; the reload itself succeeds.
    site.write(
        "web.yml",
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{}",
            users("n3w")
        ),
    );
    kill(pid(&e), Signal::SIGHUP).unwrap();
    e.wait_log("switches from HTTP to HTTPS: that needs a restart", 1);
    e.wait_log("configuration reloaded: no collector changed", 2);
    assert_eq!(status(Some(&new)).status, 200, "no longer plain HTTP");
    assert_eq!(
        value(&metrics_as(&e, Some(&new)), SUCCESSFUL, &[]),
        Some(1.0)
    );
}

/// Whatever the files hold, a reload never stops the daemon: random bytes,
/// valid files cut short or with a byte changed, deep nesting, known keys
/// with wild values, in the config file and in the rules file. After each
/// the daemon answers, and the reload is counted.
#[test]
fn garbage_files_never_stop_the_daemon() {
    let site = Site::new();
    let good_config = "subgroups_file: rules.toml\ncache_ttl: 0\ntop_n: 4\ncollectors:\n  \
                       memory:\n    enabled: true\n  textfile:\n    enabled: false\n";
    let good_rules = rule("hrk-reload-c", "alpha", "one");
    site.write("c.yaml", good_config);
    site.write("rules.toml", &good_rules);
    // eBPF stays off through every reload, whatever the file says: the
    // flag is applied on top of it each time.
    let e = site.start(&["--disable-ebpf"], &[]);

    let keys = [
        "port",
        "cache_ttl",
        "collector_timeout",
        "max_requests",
        "top_n",
        "search_mode",
        "paths",
        "collectors",
        "subgroups_file",
        "enable_ebpf",
        "smaps_mode",
        "log_level",
    ];
    let values = [
        "-1",
        "1e400",
        "0",
        "[]",
        "{}",
        "~",
        "\"\"",
        "'x'",
        "true",
        "18446744073709551616",
        "[[[[",
        "{a: {b: {c: 1}}}",
        "!!binary aGVsbG8=",
        "&a [*a]",
        "\"\\u0000\"",
    ];
    let text = (
        prop::sample::subsequence(keys.to_vec(), 1..4),
        prop::collection::vec(prop::sample::select(values.to_vec()), 4),
    )
        .prop_map(|(ks, vs)| {
            ks.iter()
                .zip(vs.iter().cycle())
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect::<String>()
                .into_bytes()
        });
    let cut = |good: &'static str| (0..good.len()).prop_map(move |n| good.as_bytes()[..n].to_vec());
    let flip = |good: String| {
        let len = good.len();
        (0..len, any::<u8>()).prop_map(move |(i, b)| {
            let mut v = good.clone().into_bytes();
            v[i] = b;
            v
        })
    };
    // libyaml's scanner is quadratic in the depth of an unclosed flow
    // sequence (20,000 levels take seconds); the daemon serves meanwhile,
    // but the test keeps it short.
    let deep =
        (1usize..3_000).prop_map(|n| format!("search_groups: {}", "[".repeat(n)).into_bytes());
    let contents = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        text,
        cut(good_config),
        flip(good_config.to_string()),
        deep,
    ];
    let rules = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        flip(good_rules.clone()),
        (1usize..200_000).prop_map(|n| format!("subgroups = {}", "[".repeat(n)).into_bytes()),
    ];
    let case = prop_oneof![
        contents.prop_map(|bytes| Case {
            file: "c.yaml",
            bytes
        }),
        rules.prop_map(|bytes| Case {
            file: "rules.toml",
            bytes
        }),
    ];

    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 48,
        // Each case is a reload of a live daemon: report the case that
        // failed, not a shrunk one that fails because of it.
        max_shrink_iters: 0,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    });
    runner
        .run(&case, |Case { file, bytes }| {
            let (ok, failed) = reloads(&metrics(&e));
            site.write(file, &bytes);
            let s = hup(&e);
            let (ok2, failed2) = reloads(&s);
            prop_assert_eq!(ok2 + failed2, ok + failed + 1.0, "one reload per SIGHUP");
            prop_assert_eq!(e.get("/health").status, 200);
            // Put the good files back for the next case.
            site.write("c.yaml", good_config);
            site.write("rules.toml", &good_rules);
            Ok(())
        })
        .unwrap();
    let s = hup(&e);
    assert_eq!(value(&s, SUCCESSFUL, &[]), Some(1.0));
    assert!(has_family(&s, MEMORY));
    assert!(!log(&e).contains("panicked"), "{}", log(&e));
    assert!(!e.get("/config").text().contains("enable_ebpf: true"));
}

/// A file's new contents, shown short when a case fails.
#[derive(Clone)]
struct Case {
    file: &'static str,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = &self.bytes[..self.bytes.len().min(120)];
        write!(
            f,
            "{}: {} bytes, starting {:?}",
            self.file,
            self.bytes.len(),
            String::from_utf8_lossy(head)
        )
    }
}

/// A stop does not wait for a reload still reading its files: a YAML file
/// of 100,000 unclosed brackets keeps libyaml's scanner busy for minutes
/// (it is quadratic in the depth), and SIGTERM meanwhile still ends the
/// exporter cleanly within seconds.
#[test]
fn a_stop_does_not_wait_for_a_slow_reload() {
    let site = Site::new();
    site.write("c.yaml", "collectors:\n  memory:\n    enabled: true\n");
    let mut e = site.start(&["--disable-ebpf"], &[]);
    site.write("c.yaml", format!("search_groups: {}", "[".repeat(100_000)));
    kill(pid(&e), Signal::SIGHUP).unwrap();
    e.wait_log("SIGHUP: reloading the configuration", 1);
    assert_eq!(
        get(e.addr, "/metrics").status,
        200,
        "serving during the reload"
    );
    let asked = Instant::now();
    kill(pid(&e), Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = e.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM:\n{}",
            log(&e)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    e.wait_log("stopping while a reload is still being prepared", 1);
}

/// Receive one notification within `timeout`.
fn receive(sock: &UnixDatagram, timeout: Duration) -> String {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification within {timeout:?}: {e}"));
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn monotonic_usec() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
}

/// `Type=notify`: READY=1 once the port answers, RELOADING=1 with the
/// monotonic time and READY=1 around a reload, STOPPING=1 on SIGTERM.
#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let site = Site::new();
    site.write("c.yaml", "collectors:\n  memory:\n    enabled: true\n");
    let socket_path = site.path("notify");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    let notify = socket_path.to_str().unwrap();
    let mut e = site.start(&["--disable-ebpf"], &[("NOTIFY_SOCKET", notify)]);

    let ready = receive(&sock, Duration::from_secs(30));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=serving on http://{}", e.addr)),
        "{ready:?}"
    );
    assert_eq!(get(e.addr, "/metrics").status, 200);

    site.write("c.yaml", "collectors:\n  memory:\n    enabled: false\n");
    let before = monotonic_usec();
    kill(pid(&e), Signal::SIGHUP).unwrap();
    let reloading = receive(&sock, Duration::from_secs(30));
    let after = monotonic_usec();
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "{before} <= {usec} <= {after}"
    );
    let ready = receive(&sock, Duration::from_secs(60));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        !has_family(&metrics(&e), MEMORY),
        "READY=1 before the reload applied"
    );

    // A failed reload is over too: READY=1, with the reason.
    site.write("c.yaml", "collectors: 3\n");
    kill(pid(&e), Signal::SIGHUP).unwrap();
    assert!(receive(&sock, Duration::from_secs(30)).contains("RELOADING=1"));
    let ready = receive(&sock, Duration::from_secs(30));
    assert!(
        ready.contains("READY=1") && ready.contains("reload failed"),
        "{ready:?}"
    );

    kill(pid(&e), Signal::SIGTERM).unwrap();
    let stopping = receive(&sock, Duration::from_secs(30));
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(e.child.wait().unwrap().success());
}

/// Open descriptors of `pid` by kind: BPF links, programs and maps (from
/// fdinfo), and all.
fn fds(pid: u32) -> (usize, usize, usize, usize) {
    let (mut links, mut progs, mut maps, mut all) = (0, 0, 0, 0);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(info) = std::fs::read_to_string(entry.unwrap().path()) else {
            continue;
        };
        all += 1;
        if info.contains("link_id:") {
            links += 1;
        } else if info.contains("prog_id:") {
            progs += 1;
        } else if info.contains("map_id:") {
            maps += 1;
        }
    }
    (links, progs, maps, all)
}

/// Threads of `pid` by name, but the runtime's own ("herakles"), whose
/// blocking pool grows and shrinks with the work, and the process table's
/// readers ("herakles-proc"), which live for one scan.
fn threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| c != "herakles" && c != "herakles-proc")
        .collect();
    names.sort();
    names
}

/// Twenty reloads with every eBPF part and netprobe on: each builds new
/// programs and filters and shuts the old ones down, so afterwards the
/// process holds as many descriptors, BPF links, programs and maps and
/// (bar the runtime's pool) threads as before, and `lo` has one filter per
/// direction. Runs in a network namespace of its own: the filters never
/// touch the host. Under the suite lock (it loads eBPF programs).
#[test]
fn twenty_reloads_with_ebpf_leak_nothing() {
    if !common::can_load_ebpf() {
        return;
    }
    in_netns(|| {
        let site = Site::new();
        let config = |top_n: u32| {
            format!(
                "top_n: {top_n}\ncollectors:\n  netprobe:\n    enabled: true\n    \
                 interfaces: [lo]\n    collection_interval: 0.5\n"
            )
        };
        site.write("c.yaml", config(3));
        let e = site.start(&[], &[]);
        let pid = e.child.id();
        let s = metrics(&e);
        assert_eq!(value(&s, "netprobe_up", &[]), Some(1.0), "{}", log(&e));
        let health: serde_json::Value = serde_json::from_str(&e.get("/health").text()).unwrap();
        common::assert_all_healthy(&health);
        let filters = || {
            let f = |dir| {
                sh(&format!("tc filter show dev lo {dir}"))
                    .matches("handle")
                    .count()
            };
            (f("ingress"), f("egress"))
        };
        let host_links = || sh("bpftool link show").matches("prog ").count();
        // The server closes its side of a connection just after the client
        // saw the response end: readings count once two in a row agree.
        let measure = || (fds(pid), threads(pid), filters(), host_links());
        let settled = || {
            let mut last = measure();
            loop {
                std::thread::sleep(Duration::from_millis(50));
                let now = measure();
                if now == last {
                    return now;
                }
                last = now;
            }
        };
        let before = settled();
        assert!(before.0 .0 > 0, "no BPF link open: {:?}", before.0);
        assert_eq!(before.2, (1, 1));

        let started = Instant::now();
        for i in 0..20 {
            site.write("c.yaml", config(4 + i % 2));
            let s = hup(&e);
            assert_eq!(value(&s, SUCCESSFUL, &[]), Some(1.0), "{}", log(&e));
            e.wait_log("the previous collectors are shut down", i as usize + 1);
        }
        let took = started.elapsed();
        let s = metrics(&e);
        assert_eq!(value(&s, "netprobe_up", &[]), Some(1.0));
        let health: serde_json::Value = serde_json::from_str(&e.get("/health").text()).unwrap();
        common::assert_all_healthy(&health);
        let after = settled();
        eprintln!(
            "20 reloads in {took:.1?}; before (links, progs, maps, fds), threads, filters, host \
             links: {before:?}; after: {after:?}"
        );
        assert_eq!(after, before);
        drop(e);
        assert_eq!(filters(), (0, 0), "filters left on lo after SIGTERM");
    });
}
