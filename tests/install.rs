//! `install` / `uninstall` into staging roots: what is written, that the
//! unit verifies, and that uninstall leaves the tree exactly as it found it.
//!
//! The real-root path (creating the user) runs in tests/package.rs, inside
//! a Debian root of its own.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");
const UNIT: &str = "/etc/systemd/system/herakles-node-exporter.service";
const CONFIG: &str = "/etc/herakles/herakles-node-exporter.yaml";

/// Every path under `root` with its type, mode and content.
fn snapshot(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let content = if md.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.insert(rel, (md.mode(), content));
        }
    }
    out
}

fn run(args: &[&str], root: &Path) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .arg("--root")
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "$ {args:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(args: &[&str], root: &Path) -> String {
    let out = run(args, root);
    assert!(out.status.success(), "{args:?} failed: {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

fn at(root: &Path, abs: &str) -> std::path::PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// A root with something in it already, so "as found" is not just "empty".
fn lived_in_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for d in ["etc/default", "usr/local/share/man", "opt/other"] {
        std::fs::create_dir_all(root.path().join(d)).unwrap();
    }
    std::fs::write(root.path().join("etc/default/ssh"), "SSHD_OPTS=\n").unwrap();
    std::fs::write(root.path().join("opt/other/tool"), "#!/bin/sh\n").unwrap();
    root
}

#[test]
fn install_then_uninstall_leaves_the_tree_as_found() {
    let root = lived_in_root();
    let before = snapshot(root.path());

    let dry = ok(&["install", "--dry-run"], root.path());
    assert_eq!(snapshot(root.path()), before, "--dry-run changed the tree");
    assert!(dry.contains(&format!("would write {}", at(root.path(), UNIT).display())));

    ok(&["install"], root.path());
    let installed = snapshot(root.path());
    let binary = &installed["opt/herakles/bin/herakles-node-exporter"];
    assert_eq!(
        binary.1,
        std::fs::read(BIN).unwrap(),
        "installed binary differs"
    );
    assert_eq!(binary.0 & 0o777, 0o755);
    for f in [
        "etc/herakles/herakles-node-exporter.yaml",
        "etc/default/herakles-node-exporter",
        "etc/systemd/system/herakles-node-exporter.service",
        "usr/local/share/man/man1/herakles-node-exporter.1",
        "usr/local/share/bash-completion/completions/herakles-node-exporter",
        "usr/local/share/zsh/site-functions/_herakles-node-exporter",
        "usr/local/share/fish/vendor_completions.d/herakles-node-exporter.fish",
        "var/lib/herakles/install-manifest.json",
    ] {
        assert!(installed.contains_key(f), "{f} not installed");
    }
    // The installed config is the documented default and loads.
    let check = Command::new(BIN)
        .arg("-c")
        .arg(at(root.path(), CONFIG))
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    // A second install changes nothing and says why.
    let again = ok(&["install"], root.path());
    assert!(again.contains("already installed"), "{again}");
    assert_eq!(snapshot(root.path()), installed);

    let dry = ok(&["uninstall", "--dry-run"], root.path());
    assert_eq!(
        snapshot(root.path()),
        installed,
        "uninstall --dry-run changed the tree"
    );
    assert!(dry.contains("would remove"), "{dry}");

    ok(&["uninstall", "--yes"], root.path());
    assert_eq!(
        snapshot(root.path()),
        before,
        "uninstall left the tree changed"
    );

    // Idempotent: nothing to do, exit 0.
    let again = ok(&["uninstall", "--yes"], root.path());
    assert!(again.contains("nothing to uninstall"), "{again}");
}

#[test]
fn an_edited_config_survives_uninstall_unless_purged() {
    let root = tempfile::tempdir().unwrap();
    ok(&["install"], root.path());
    let config = at(root.path(), CONFIG);
    let edited = format!(
        "{}\nport: 9300\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &edited).unwrap();

    // A forced reinstall rewrites the program files but not the config.
    ok(&["install", "--force"], root.path());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);

    let out = ok(&["uninstall", "--yes"], root.path());
    assert!(out.contains("edited since install"), "{out}");
    let left: Vec<String> = snapshot(root.path()).into_keys().collect();
    assert_eq!(
        left,
        [
            "etc",
            "etc/herakles",
            "etc/herakles/herakles-node-exporter.yaml"
        ]
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);

    let root = tempfile::tempdir().unwrap();
    ok(&["install"], root.path());
    std::fs::write(at(root.path(), CONFIG), "port: 9300\n").unwrap();
    ok(&["uninstall", "--yes", "--purge"], root.path());
    assert!(snapshot(root.path()).is_empty(), "--purge left files");
}

#[test]
fn refuses_to_overwrite_files_it_did_not_install() {
    let root = tempfile::tempdir().unwrap();
    let unit = at(root.path(), UNIT);
    std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
    std::fs::write(&unit, "[Service]\nExecStart=/bin/true\n").unwrap();
    let before = snapshot(root.path());
    let out = run(&["install"], root.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not installed by `install`"), "{err}");
    assert_eq!(snapshot(root.path()), before);

    ok(&["install", "--force"], root.path());
    assert!(std::fs::read_to_string(&unit)
        .unwrap()
        .contains("herakles-node-exporter"));
}

#[test]
fn uninstall_without_yes_and_no_answer_removes_nothing() {
    let root = tempfile::tempdir().unwrap();
    ok(&["install"], root.path());
    let installed = snapshot(root.path());
    let out = run(&["uninstall"], root.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("aborted"));
    assert_eq!(snapshot(root.path()), installed);
}

/// A root `systemd-analyze verify` can load the unit in: the staged tree
/// (hard links, so the check sees the installed binary) plus the host's
/// own units, which the default dependencies (sysinit.target...) name, and
/// `/bin/kill`, which `ExecReload=` runs.
fn verify_root(staged: &Path) -> tempfile::TempDir {
    let v = tempfile::tempdir().unwrap();
    let st = Command::new("cp")
        .arg("-al")
        .arg(format!("{}/.", staged.display()))
        .arg(v.path())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::create_dir_all(v.path().join("usr/lib/systemd")).unwrap();
    let st = Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(v.path().join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(st.success(), "the host's systemd units are needed");
    // verify checks that every Exec*= command exists: ExecReload= runs the
    // host's kill.
    std::fs::create_dir_all(v.path().join("bin")).unwrap();
    std::fs::copy("/bin/kill", v.path().join("bin/kill")).unwrap();
    v
}

fn systemd_analyze(root: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(format!("--root={}", root.display()))
        .arg(UNIT)
        .output()
        .expect("systemd-analyze not found: run scripts/setup.sh (package systemd)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_unit_verifies_and_its_capabilities_follow_the_config() {
    let root = tempfile::tempdir().unwrap();
    ok(&["install"], root.path());
    let v = verify_root(root.path());
    // verify exits 0 on unknown keys and bad values, so its complaints are
    // the test: there must be none.
    let (ok_, _, err) = systemd_analyze(v.path(), &["verify", "--man=no"]);
    assert!(
        ok_ && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );

    // The check is real: a broken unit fails it.
    let unit = at(v.path(), UNIT);
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::remove_file(&unit).unwrap();
    std::fs::write(
        &unit,
        text.replace("ProtectSystem=strict", "ProtectSystem=bogus"),
    )
    .unwrap();
    let (_, _, err) = systemd_analyze(v.path(), &["verify", "--man=no"]);
    assert!(err.contains("bogus"), "{err}");
    std::fs::write(&unit, &text).unwrap();

    let (_, out, err) = systemd_analyze(v.path(), &["security", "--offline=yes", "--no-pager"]);
    let score = format!("{out}{err}")
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for herakles-node-exporter.service: ")
                .nth(1)
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no exposure score in:\n{out}{err}"));
    eprintln!("systemd-analyze security --offline=yes: {score}");
    let value: f64 = score.split_whitespace().next().unwrap().parse().unwrap();
    assert!(value < 4.0, "exposure {score}: the sandbox lost settings");

    for cap in [
        "CAP_SYS_PTRACE",
        "CAP_DAC_READ_SEARCH",
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_ADMIN",
    ] {
        assert!(text.contains(cap), "{cap} missing from the default unit");
    }
    assert!(!text.contains("CAP_NET_ADMIN"));

    // With -c, that config is installed and the unit follows it.
    let config = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(
        config.path(),
        "enable_ebpf: false\ncollectors:\n  bpf_inventory:\n    enabled: false\n  netprobe:\n    enabled: true\n",
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("-c")
        .arg(config.path())
        .args(["install", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(at(root.path(), CONFIG)).unwrap(),
        std::fs::read(config.path()).unwrap()
    );
    let unit = std::fs::read_to_string(at(root.path(), UNIT)).unwrap();
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .unwrap();
    assert_eq!(
        caps,
        "CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_BPF CAP_NET_ADMIN"
    );
    let v = verify_root(root.path());
    let (ok_, _, err) = systemd_analyze(v.path(), &["verify", "--man=no"]);
    assert!(
        ok_ && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
}

#[test]
fn package_layout_writes_a_compressed_man_page_and_no_manifest() {
    let root = tempfile::tempdir().unwrap();
    ok(
        &["install", "--layout", "package", "--no-service"],
        root.path(),
    );
    let tree = snapshot(root.path());
    assert!(!tree.keys().any(|k| k.contains("manifest")), "{tree:?}");
    let man = &tree["usr/share/man/man1/herakles-node-exporter.1.gz"].1;
    assert_eq!(&man[..2], b"\x1f\x8b", "not gzip");
    assert!(tree.contains_key("usr/bin/herakles-node-exporter"));
    let unit = String::from_utf8(
        tree["lib/systemd/system/herakles-node-exporter.service"]
            .1
            .clone(),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/herakles-node-exporter --config"));
    let mode = std::fs::metadata(at(root.path(), "/usr/bin/herakles-node-exporter"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    // Not on the real root: a package layout is for staging only.
    let out = Command::new(BIN)
        .args(["install", "--layout", "package", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// systemd's syscall groups: `@name` -> member names and nested groups.
fn syscall_groups() -> std::collections::HashMap<String, Vec<String>> {
    let out = Command::new("systemd-analyze")
        .arg("syscall-filter")
        .output()
        .expect("systemd-analyze");
    let mut groups = std::collections::HashMap::new();
    let mut current = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('@') {
            current = line.trim().to_string();
        } else if line.starts_with("    ")
            && !line.trim_start().starts_with('#')
            && !current.is_empty()
        {
            groups
                .entry(current.clone())
                .or_insert_with(Vec::new)
                .push(line.trim().to_string());
        } else if line.trim().is_empty() {
            current.clear();
        }
    }
    groups
}

/// The system calls `SystemCallFilter=` allows, its groups expanded.
fn allowed_syscalls(filter: &str) -> BTreeMap<String, ()> {
    let groups = syscall_groups();
    let mut allowed = BTreeMap::new();
    let mut todo: Vec<String> = filter.split_whitespace().map(str::to_string).collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(item) = todo.pop() {
        if !seen.insert(item.clone()) {
            continue;
        }
        if item.starts_with('@') {
            todo.extend(
                groups
                    .get(&item)
                    .unwrap_or_else(|| panic!("unknown group {item}"))
                    .clone(),
            );
        } else {
            allowed.insert(item, ());
        }
    }
    allowed
}

/// The unit's seccomp filter cannot be exercised without systemd running,
/// so check it against what the exporter really calls: start it under
/// strace (eBPF loading, a scrape of every collector, /health, systemd
/// notifications, a reload, a clean stop) and require every system call
/// made to be in the filter's set.
#[test]
fn the_unit_syscall_filter_allows_every_call_the_exporter_makes() {
    let root = tempfile::tempdir().unwrap();
    ok(&["install"], root.path());
    let unit = std::fs::read_to_string(at(root.path(), UNIT)).unwrap();
    let filter = unit
        .lines()
        .find_map(|l| l.strip_prefix("SystemCallFilter="))
        .unwrap();
    let allowed = allowed_syscalls(filter);
    assert!(allowed.contains_key("read") && allowed.contains_key("bpf"));

    let trace = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-c", "-o"])
        .arg(trace.path())
        .arg(BIN)
        .arg("-c")
        .arg(at(root.path(), CONFIG))
        .args(["-p", "0", "--bind", "127.0.0.1"]);
    // Under systemd it notifies (Type=notify) and reloads on SIGHUP
    // (ExecReload=): both are traced too.
    let notify = tempfile::tempdir().unwrap();
    let socket = notify.path().join("notify");
    let _listening = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    cmd.env("NOTIFY_SOCKET", &socket);
    let mut exp = common::Running::spawn(cmd);
    exp.get("/metrics");
    exp.get("/metrics");
    exp.get("/health");
    // Signals go to the exporter itself (strace's child).
    let strace = exp.child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children")).unwrap();
    let pid =
        nix::unistd::Pid::from_raw(children.split_whitespace().next().unwrap().parse().unwrap());
    let config = at(root.path(), CONFIG);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\ncache_ttl: 0\n"));
    std::fs::write(
        &config,
        text.replace("\ncache_ttl: 0\n", "\ncache_ttl: 1\n"),
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    exp.wait_log("previous collectors are shut down", 1);
    exp.get("/metrics");
    // SIGTERM, so the shutdown is traced too, then let strace write its
    // summary.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = exp.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let summary = std::fs::read_to_string(trace.path()).unwrap();
    let made: Vec<&str> = summary
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 5 && cols[0].parse::<f64>().is_ok()).then(|| *cols.last().unwrap())
        })
        .filter(|s| *s != "total")
        .collect();
    eprintln!("system calls made: {made:?}");
    assert!(
        made.contains(&"bpf") && made.contains(&"openat"),
        "{summary}"
    );
    let refused: Vec<&&str> = made.iter().filter(|s| !allowed.contains_key(**s)).collect();
    assert!(
        refused.is_empty(),
        "the unit's filter would refuse {refused:?}"
    );
}
