//! The Debian package and `install` on a real root, in a clean Debian
//! bookworm root built by debootstrap (cached as a tarball under
//! target/tmp, so only the first run downloads it).
//!
//! Also the capability test: the exporter started in that root the way the
//! unit starts it (its user, exactly its `AmbientCapabilities`, no new
//! privileges) serves every collector, eBPF included.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::Running;

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");
const TMP: &str = env!("CARGO_TARGET_TMPDIR");

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}{stderr}");
    stdout
}

fn chroot(root: &Path, args: &[&str]) -> String {
    run(Command::new("chroot").arg(root).args(args))
}

/// A fresh Debian bookworm root: debootstrap's minbase (Essential packages
/// and apt) plus the two libraries the binary links that minbase lacks.
fn debian_root() -> tempfile::TempDir {
    static BUILD: Mutex<()> = Mutex::new(());
    let tarball = Path::new(TMP).join("bookworm-minbase.tar");
    {
        let _one_builder = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        if !tarball.exists() {
            let build = tempfile::tempdir_in(TMP).unwrap();
            let root = build.path().join("root");
            eprintln!("debootstrap: building a bookworm root (cached in {TMP})");
            run(Command::new("debootstrap").args([
                "--variant=minbase",
                "--include=libelf1,zlib1g",
                "bookworm",
                root.to_str().unwrap(),
                "http://deb.debian.org/debian",
            ]));
            chroot(&root, &["apt-get", "clean"]);
            let partial = tarball.with_extension("partial");
            run(Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&partial)
                .arg("."));
            std::fs::rename(&partial, &tarball).unwrap();
        }
    }
    let root = tempfile::tempdir_in(TMP).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .arg("-xf")
        .arg(&tarball));
    root
}

/// Paths whose change is bookkeeping, not something left on the host:
/// dpkg's database and log, and the `-` backups shadow's tools keep of
/// the files they edit (the files themselves are compared by content).
fn bookkeeping(rel: &str) -> bool {
    rel.starts_with("var/lib/dpkg/")
        || rel == "var/log/dpkg.log"
        || matches!(
            rel,
            "etc/passwd-" | "etc/group-" | "etc/shadow-" | "etc/gshadow-"
        )
}

/// Every path with its mode and size, and the content of the account files.
fn snapshot(root: &Path) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if bookkeeping(&rel) {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                stack.push(p.clone());
            }
            let content = if rel.starts_with("etc/") && md.is_file() && md.len() < 1 << 20 {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.insert(
                rel,
                (md.mode(), if md.is_dir() { 0 } else { md.len() }, content),
            );
        }
    }
    out
}

fn assert_same(
    before: &BTreeMap<String, (u32, u64, Vec<u8>)>,
    after: &BTreeMap<String, (u32, u64, Vec<u8>)>,
) {
    let mut diff = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => diff.push(format!("left behind: {k}")),
            Some(b) if b != v => diff.push(format!("changed: {k}")),
            _ => {}
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        diff.push(format!("removed: {k}"));
    }
    assert!(
        diff.is_empty(),
        "the root is not as found:\n{}",
        diff.join("\n")
    );
}

fn user_exists(root: &Path, user: &str) -> bool {
    std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .lines()
        .any(|l| l.starts_with(&format!("{user}:")))
}

/// How the unit starts the exporter: its user, capabilities and argv.
struct Exec {
    user: String,
    caps: Vec<String>,
    argv: Vec<String>,
}

fn unit_exec(unit: &str) -> Exec {
    let key = |k: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k}= missing from the unit"))
            .to_string()
    };
    assert_eq!(key("NoNewPrivileges"), "yes");
    assert_eq!(key("CapabilityBoundingSet"), key("AmbientCapabilities"));
    Exec {
        user: key("User"),
        caps: key("AmbientCapabilities")
            .split_whitespace()
            .map(|c| c.trim_start_matches("CAP_").to_lowercase())
            .collect(),
        argv: key("ExecStart")
            .split_whitespace()
            .filter(|a| *a != "$ARGS")
            .map(str::to_string)
            .collect(),
    }
}

/// A command run chrooted in `root` with /proc and /sys mounted, in a mount
/// namespace of its own: the mounts go when the command exits.
fn in_root(root: &Path) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t proc proc \"$1/proc\" && mount --rbind /sys \"$1/sys\" && \
             r=$1 && shift && exec chroot \"$r\" \"$@\"",
        )
        .arg("sh")
        .arg(root);
    cmd
}

/// Start the exporter inside `root` as the unit would.
fn start_in_root(root: &Path, exec: &Exec, extra: &[&str]) -> Running {
    let caps: String = std::iter::once("-all".to_string())
        .chain(exec.caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = in_root(root);
    cmd.args([
        "setpriv",
        "--reuid",
        &exec.user,
        "--regid",
        &exec.user,
        "--init-groups",
        "--no-new-privs",
    ])
    .arg(format!("--inh-caps={caps}"))
    .arg(format!("--ambient-caps={caps}"))
    .arg(format!("--bounding-set={caps}"))
    .arg("--")
    .args(&exec.argv)
    .args(["-p", "0", "--bind", "127.0.0.1"])
    .args(extra);
    Running::spawn(cmd)
}

fn health(exp: &Running) -> serde_json::Value {
    exp.get("/metrics");
    // The second scrape has the series that need a previous sample.
    let _ = exp.get("/metrics");
    serde_json::from_str(&exp.get("/health").text()).unwrap()
}

fn build_deb(out: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-deb.sh");
    let printed = run(Command::new(script)
        .args(["--binary", BIN, "--out"])
        .arg(out));
    PathBuf::from(printed.trim())
}

#[test]
fn deb_is_lint_clean_installs_runs_with_the_unit_capabilities_and_purges() {
    let work = tempfile::tempdir_in(TMP).unwrap();
    let deb = build_deb(work.path());
    eprintln!(
        "{}: {} bytes",
        deb.display(),
        std::fs::metadata(&deb).unwrap().len()
    );
    let lint = Command::new("lintian")
        .args(["--fail-on", "error"])
        .arg(&deb)
        .output()
        .expect("lintian not found: run scripts/setup.sh");
    let text = String::from_utf8_lossy(&lint.stdout);
    eprintln!("lintian:\n{text}");
    assert!(
        lint.status.success() && !text.contains("\nE: ") && !text.starts_with("E: "),
        "{text}"
    );

    let root = debian_root();
    let r = root.path();
    let before = snapshot(r);
    std::fs::copy(&deb, r.join("tmp/pkg.deb")).unwrap();
    chroot(r, &["dpkg", "-i", "/tmp/pkg.deb"]);
    std::fs::remove_file(r.join("tmp/pkg.deb")).unwrap();

    assert!(
        user_exists(r, "herakles"),
        "postinst did not create the user"
    );
    let version = chroot(r, &["herakles-node-exporter", "--version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    for f in [
        "etc/herakles/herakles-node-exporter.yaml",
        "etc/default/herakles-node-exporter",
        "lib/systemd/system/herakles-node-exporter.service",
        "usr/share/man/man1/herakles-node-exporter.1.gz",
        "usr/share/bash-completion/completions/herakles-node-exporter",
    ] {
        assert!(r.join(f).is_file(), "{f} not installed");
    }
    // Nothing enabled that the operator did not ask for.
    assert!(!r
        .join("etc/systemd/system/multi-user.target.wants/herakles-node-exporter.service")
        .exists());

    // Depends names the package of every shared library the binary loads.
    let control = chroot(
        r,
        &[
            "dpkg-query",
            "-W",
            "-f=${Depends}",
            "herakles-node-exporter",
        ],
    );
    let ldd = chroot(r, &["ldd", "/usr/bin/herakles-node-exporter"]);
    for lib in ldd
        .lines()
        .filter_map(|l| l.split("=>").nth(1)?.split_whitespace().next())
    {
        // Matched by name: with merged /usr, ldd's /lib path is not the
        // path the package registered.
        let name = lib.rsplit('/').next().unwrap();
        let owner = chroot(r, &["dpkg", "-S", &format!("*/{name}")]);
        let pkg = owner.split(':').next().unwrap();
        assert!(
            control.contains(pkg),
            "{lib} from {pkg}, not in Depends: {control}"
        );
    }

    // The capability test: the unit's user and capabilities, nothing more.
    let unit = std::fs::read_to_string(r.join("lib/systemd/system/herakles-node-exporter.service"))
        .unwrap();
    let exec = unit_exec(&unit);
    eprintln!("unit capabilities: {:?}", exec.caps);
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    // smaps_mode all: the small sleeper gets PSS too (as with ARGS= in
    // /etc/default/herakles-node-exporter).
    let exp = start_in_root(r, &exec, &["--smaps-mode", "all"]);
    let h = health(&exp);
    let metrics = exp.get("/metrics").text();
    drop(exp);
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", sleeper.id())).unwrap();
    let pss_kb: f64 = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    common::assert_all_healthy(&h);
    // A root-owned process's PSS (smaps_rollup needs CAP_SYS_PTRACE) and
    // the eBPF-fed group series.
    let pid = sleeper.id().to_string();
    let s = common::parse(&metrics);
    let pss = common::value(&s, "herakles_mem_process_pss_bytes", &[("pid", &pid)])
        .unwrap_or_else(|| panic!("no PSS for root-owned pid {pid}"));
    // Shared pages' PSS moves as other processes map and unmap them.
    assert!(
        (pss - pss_kb * 1024.0).abs() <= pss_kb * 1024.0 * 0.2,
        "PSS {pss} vs smaps_rollup {pss_kb} kB"
    );
    for name in [
        "herakles_group_net_rx_bytes_total",
        "herakles_bpf_inventory_programs",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }

    // netprobe with the unit generated for a config enabling it.
    let cfg = r.join("tmp/netprobe.yaml");
    std::fs::write(
        &cfg,
        "collectors:\n  netprobe:\n    enabled: true\n    interfaces: [lo]\n    attach: tcx\n    collection_interval: 0.2\n  bpf_inventory:\n    enabled: false\n",
    )
    .unwrap();
    let staged = tempfile::tempdir_in(TMP).unwrap();
    run(Command::new(BIN)
        .arg("-c")
        .arg(&cfg)
        .args(["install", "--layout", "package", "--root"])
        .arg(staged.path()));
    let unit = std::fs::read_to_string(
        staged
            .path()
            .join("lib/systemd/system/herakles-node-exporter.service"),
    )
    .unwrap();
    let mut exec = unit_exec(&unit);
    assert!(
        exec.caps.contains(&"net_admin".to_string()),
        "{:?}",
        exec.caps
    );
    assert!(
        !exec.caps.contains(&"sys_admin".to_string()),
        "{:?}",
        exec.caps
    );
    let at = exec.argv.iter().position(|a| a == "--config").unwrap();
    exec.argv[at + 1] = "/tmp/netprobe.yaml".into();
    let exp = start_in_root(r, &exec, &[]);
    let h = health(&exp);
    assert_eq!(h["collectors"]["netprobe"]["healthy"], true, "{h}");
    // The scrapes themselves cross lo; netprobe reads its counters every
    // 0.2 s, so wait for a reading taken after them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let counted = loop {
        let s = common::parse(&exp.get("/metrics").text());
        assert_eq!(
            common::value(&s, "netprobe_up", &[]),
            Some(1.0),
            "netprobe not up"
        );
        let packets = common::value(
            &s,
            "netprobe_tc_packets_total",
            &[("interface", "lo"), ("direction", "egress")],
        );
        if packets.is_some_and(|v| v > 0.0) || std::time::Instant::now() > deadline {
            break packets;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    drop(exp);
    std::fs::remove_file(&cfg).unwrap();
    assert!(
        counted.is_some_and(|v| v > 0.0),
        "no packets counted on lo: {counted:?}"
    );

    chroot(r, &["dpkg", "--purge", "herakles-node-exporter"]);
    assert!(!user_exists(r, "herakles"), "purge left the user");
    assert_same(&before, &snapshot(r));
}

#[test]
fn install_on_a_real_root_creates_the_user_and_uninstall_removes_everything() {
    let root = debian_root();
    let r = root.path();
    let before = snapshot(r);
    std::fs::copy(BIN, r.join("tmp/hne")).unwrap();
    let out = run(in_root(r).args(["/tmp/hne", "install"]));
    assert!(out.contains("systemd is not running"), "{out}");
    assert!(user_exists(r, "herakles"));
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    let entry = passwd.lines().find(|l| l.starts_with("herakles:")).unwrap();
    assert!(
        entry.ends_with(":/nonexistent:/usr/sbin/nologin"),
        "{entry}"
    );
    let uid: u32 = entry.split(':').nth(2).unwrap().parse().unwrap();
    assert!(uid < 1000, "not a system user: {entry}");
    assert!(r.join("opt/herakles/bin/herakles-node-exporter").is_file());
    assert!(r
        .join("etc/systemd/system/herakles-node-exporter.service")
        .is_file());

    let out = run(in_root(r).args(["/tmp/hne", "install"]));
    assert!(out.contains("already installed"), "{out}");

    run(in_root(r).args(["/tmp/hne", "uninstall", "--yes"]));
    std::fs::remove_file(r.join("tmp/hne")).unwrap();
    assert!(!user_exists(r, "herakles"));
    assert_same(&before, &snapshot(r));
}
