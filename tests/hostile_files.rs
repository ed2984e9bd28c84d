//! The exporter binary against procfs and sysfs trees that misbehave the
//! way a real host, or an unvetted bind mount, can: a per-process file whose
//! read blocks, files far longer than any the kernel writes, links to
//! `/dev/zero`, an invalid byte in `/proc/stat`. Each misbehaving file must
//! cost its own series and nothing else.
//!
//! The trees are built in temporary directories: a FIFO or a 3 GiB sparse
//! file has no place in git.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Instant;

use common::Running;

const GIB: u64 = 1 << 30;

/// A procfs (and sysfs) tree in a temporary directory.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let tree = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(tree.proc()).unwrap();
        fs::create_dir_all(tree.sys()).unwrap();
        tree
    }

    fn proc(&self) -> PathBuf {
        self.dir.path().join("proc")
    }

    fn sys(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    /// A user-space process with the files the process table reads.
    fn process(&self, pid: u32, comm: &str, rss_pages: u64) {
        let dir = self.proc().join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        let stat = format!(
            "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 30 20 0 0 20 0 1 0 {start} 1000000 {rss_pages} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
            start = 1000 + pid
        );
        fs::write(dir.join("stat"), stat).unwrap();
        fs::write(dir.join("cmdline"), format!("{comm}\0--flag\0")).unwrap();
        std::os::unix::fs::symlink(format!("/usr/bin/{comm}"), dir.join("exe")).unwrap();
        fs::write(
            dir.join("io"),
            "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 0\ncancelled_write_bytes: 0\n",
        )
        .unwrap();
        fs::write(
            dir.join("smaps_rollup"),
            "00-ff ---p 0 00:00 0 [rollup]\nRss: 400 kB\nPss: 300 kB\nPrivate_Clean: 0 kB\nPrivate_Dirty: 100 kB\nSwap: 0 kB\n",
        )
        .unwrap();
    }

    /// Replace `rel` (under the tree) by a sparse file of `len` bytes.
    fn sparse(&self, rel: &str, len: u64) {
        let path = self.dir.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&path);
        fs::File::create(&path).unwrap().set_len(len).unwrap();
    }

    /// Replace `rel` by a symbolic link to `target`.
    fn link(&self, rel: &str, target: &str) {
        let path = self.dir.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    fn write(&self, rel: &str, content: &[u8]) {
        let path = self.dir.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

/// `--no-collector.*` for every collector but `keep`.
fn only(keep: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herakles-node-exporter"))
        .args(["--no-config", "collectors"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| !keep.contains(c))
        .map(|c| format!("--no-collector.{c}"))
        .collect()
}

fn page_size() -> f64 {
    // SAFETY: sysconf only reads a constant.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) as f64
}

fn success(s: &prometheus_parse::Scrape, collector: &str) -> Option<f64> {
    common::value(
        s,
        "herakles_scrape_collector_success",
        &[("collector", collector)],
    )
}

fn rss_of(s: &prometheus_parse::Scrape, pid: u32) -> Option<f64> {
    common::value(
        s,
        "herakles_mem_process_rss_bytes",
        &[("pid", &pid.to_string())],
    )
}

/// Peak resident memory of a process, from its `VmHWM`.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib * 1024
}

const TIMEOUT_SECS: u64 = 4;

/// `check` reads other processes' files too: a blocked read must end in a
/// failed line naming the reason, not a command that never returns (it
/// gates deployment scripts).
#[test]
fn check_ends_when_a_process_blocks_its_reads() {
    let tree = Tree::new();
    tree.process(100, "postgres", 100);
    tree.process(101, "nginx", 101);
    tree.write("proc/stat", b"cpu  1 2 3 4 5 6 7 0 0 0\nbtime 1700000000\n");
    let fifo = tree.proc().join("100/cmdline");
    fs::remove_file(&fifo).unwrap();
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herakles-node-exporter"))
        .args(["--no-config", "--path.procfs"])
        .arg(tree.proc())
        .arg("check")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("check still running after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PASS  ") && text.contains("proc readable: 2 processes visible"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  other users' smaps_rollup readable: no answer within 5 s"),
        "{text}"
    );
}

/// Issue 10, fault 2: a process whose `cmdline` read blocks (a FIFO here;
/// on a real host, a process stuck while holding its mmap lock) made every
/// scrape wait for `collector_timeout`, cost every process series, and
/// starved the unrelated thermal collector of its worker.
#[test]
fn a_blocked_cmdline_costs_one_process_and_nothing_else() {
    let tree = Tree::new();
    let pids = [100, 101, 102, 103, 104];
    for (pid, comm) in pids
        .iter()
        .zip(["postgres", "nginx", "sshd", "redis-server", "cron"])
    {
        tree.process(*pid, comm, u64::from(*pid));
    }
    let fifo = tree.proc().join("103/cmdline");
    fs::remove_file(&fifo).unwrap();
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();

    let thermal = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/thermal/sys");
    let procfs = tree.proc();
    let timeout = TIMEOUT_SECS.to_string();
    let mut args = vec![
        "--path.procfs",
        procfs.to_str().unwrap(),
        "--path.sysfs",
        thermal,
        "--collector-timeout",
        &timeout,
        "--disable-ebpf",
    ];
    let collectors = [
        "process",
        "process_groups",
        "process_top",
        "ebpf_io",
        "thermal",
    ];
    let off = only(&collectors);
    args.extend(off.iter().map(String::as_str));
    let exporter = Running::start(&args);

    for scrape in 1..=3 {
        let started = Instant::now();
        let resp = exporter.get("/metrics");
        let took = started.elapsed();
        assert_eq!(resp.status, 200);
        let s = common::parse(&resp.text());
        println!("scrape {scrape}: {took:?}");
        for c in collectors {
            assert_eq!(success(&s, c), Some(1.0), "scrape {scrape}: {c} failed");
        }
        // Every other process is there, with its exact RSS; the blocked
        // one is not.
        for pid in [100, 101, 102, 104] {
            assert_eq!(
                rss_of(&s, pid),
                Some(f64::from(pid) * page_size()),
                "scrape {scrape}: pid {pid}"
            );
        }
        assert_eq!(rss_of(&s, 103), None, "scrape {scrape}");
        assert_eq!(
            common::value(
                &s,
                "herakles_group_processes",
                &[("group", "db"), ("subgroup", "postgres")]
            ),
            Some(1.0)
        );
        assert_eq!(
            common::value(
                &s,
                "herakles_system_thermal_zone_temp_celsius",
                &[("zone", "0"), ("type", "x86_pkg_temp")]
            ),
            Some(52.0)
        );
        // Given up once, then skipped while it stays blocked: one timeout,
        // one blocked read, however many scrapes.
        assert_eq!(
            common::value(
                &s,
                "herakles_process_read_timeouts_total",
                &[("file", "cmdline")]
            ),
            Some(1.0),
            "scrape {scrape}"
        );
        assert_eq!(
            common::value(&s, "herakles_process_reads_blocked", &[]),
            Some(1.0)
        );
        if scrape > 1 {
            // The blocked process is skipped, not waited for again.
            let process = common::value(
                &s,
                "herakles_scrape_collector_duration_seconds",
                &[("collector", "process")],
            )
            .unwrap();
            assert!(
                process < TIMEOUT_SECS as f64 / 2.0,
                "scrape {scrape}: the process collector took {process} s"
            );
        }
    }
}

/// Issue 10, fault 8: a 3 GiB sparse file or a link to `/dev/zero` under
/// `--path.procfs` was read whole (RSS 1.5 GB, or without end). Fault 9: one
/// invalid byte in `/proc/stat` failed the whole cpu and kernel collectors.
///
/// The exporter runs with its address space capped at 4 GiB, so that code
/// without read caps fails this test by aborting instead of taking the
/// machine's memory.
#[test]
fn huge_and_endless_files_cost_only_themselves() {
    let tree = Tree::new();
    // RSS ranks the smaps candidates (smaps_mode top, three host-wide):
    // 103, whose smaps_rollup is the sparse one, and 100 are among them.
    let pages = |pid: u32| match pid {
        100 => 50,
        103 => 60,
        _ => 10,
    };
    for pid in [100, 101, 102, 103] {
        tree.process(pid, "postgres", pages(pid));
    }
    tree.sparse("proc/101/cmdline", 3 * GIB);
    tree.link("proc/102/io", "/dev/zero");
    tree.sparse("proc/103/smaps_rollup", 3 * GIB);
    tree.sparse("proc/meminfo", 3 * GIB);
    tree.link("proc/net/dev", "/dev/zero");
    tree.write("proc/loadavg", b"0.25 0.50 1.00 2/300 4000\n");
    tree.write("proc/uptime", b"1234.5 100.0\n");
    // One byte that is not UTF-8, on cpu1's line only.
    tree.write(
        "proc/stat",
        b"cpu  40 0 20 100 0 0 0 0 0 0\ncpu0 20 0 10 50 0 0 0 0 0 0\ncpu1 20 0 10 5\xff0 0 0 0 0 0 0\nintr 1 2\nctxt 777\nbtime 1700000000\nprocesses 4242\n",
    );
    tree.write("sys/class/thermal/thermal_zone0/type", b"acpitz\n");
    tree.write("sys/class/thermal/thermal_zone0/temp", b"42000\n");
    tree.write("sys/class/thermal/thermal_zone1/type", b"acpitz\n");
    tree.link("sys/class/thermal/thermal_zone1/temp", "/dev/zero");
    tree.write("sys/class/thermal/thermal_zone2/type", b"acpitz\n");
    tree.sparse("sys/class/thermal/thermal_zone2/temp", 3 * GIB);

    let (procfs, sysfs) = (tree.proc(), tree.sys());
    let mut args = vec![
        "--path.procfs",
        procfs.to_str().unwrap(),
        "--path.sysfs",
        sysfs.to_str().unwrap(),
        "--disable-ebpf",
    ];
    let collectors = [
        "process",
        "process_groups",
        "process_top",
        "memory",
        "netdev",
        "cpu",
        "kernel",
        "host",
        "loadavg",
        "thermal",
    ];
    let off = only(&collectors);
    args.extend(off.iter().map(String::as_str));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_herakles-node-exporter"));
    cmd.args(["--no-config", "-p", "0", "--bind", "127.0.0.1"])
        .args(&args);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 4 * GIB,
                rlim_max: 4 * GIB,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.env("MALLOC_ARENA_MAX", "2");
    let exporter = Running::spawn(cmd);

    let resp = exporter.get("/metrics");
    assert_eq!(resp.status, 200);
    let s = common::parse(&resp.text());
    let parse_errors = |c: &str| {
        common::value(
            &s,
            "herakles_collector_parse_errors_total",
            &[("collector", c)],
        )
    };
    let read_errors =
        |file: &str| common::value(&s, "herakles_process_read_errors_total", &[("file", file)]);

    // Per-process files: each bad file is one counted read error, and its
    // process keeps every series the file does not feed.
    assert_eq!(read_errors("cmdline"), Some(1.0));
    assert_eq!(read_errors("io"), Some(1.0));
    assert_eq!(read_errors("smaps"), Some(1.0));
    assert_eq!(read_errors("stat"), Some(0.0));
    for pid in [100, 101, 102, 103] {
        let rss = pages(pid) as f64 * page_size();
        assert_eq!(rss_of(&s, pid), Some(rss), "pid {pid}");
    }
    let pss = |pid: &str| common::value(&s, "herakles_mem_process_pss_bytes", &[("pid", pid)]);
    assert_eq!(pss("100"), Some(300.0 * 1024.0));
    assert_eq!(pss("103"), None);

    // A collector whose one input is endless fails alone, naming the file.
    assert_eq!(success(&s, "memory"), Some(0.0));
    assert_eq!(success(&s, "netdev"), Some(0.0));
    let health = exporter.get("/health").text();
    assert!(
        health.contains("meminfo") && health.contains("longer than"),
        "{health}"
    );

    // The invalid byte costs cpu1's line: one parse error; the rest of
    // /proc/stat serves cpu, kernel and host.
    for c in ["cpu", "kernel", "host", "loadavg", "thermal", "process"] {
        assert_eq!(success(&s, c), Some(1.0), "{c}");
    }
    assert_eq!(parse_errors("cpu"), Some(1.0));
    let hz = (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64;
    assert_eq!(
        common::value(
            &s,
            "herakles_system_cpu_seconds_total",
            &[("cpu", "0"), ("mode", "idle")]
        ),
        Some(50.0 / hz)
    );
    assert_eq!(
        common::value(&s, "herakles_system_cpu_seconds_total", &[("cpu", "1")]),
        None
    );
    assert_eq!(
        common::value(&s, "herakles_system_context_switches_total", &[]),
        Some(777.0)
    );
    assert_eq!(
        common::value(&s, "herakles_system_boot_time_seconds", &[]),
        Some(1_700_000_000.0)
    );

    // A sensor that reads as a device is refused; one that is far too long
    // is a parse error; the good zone is there.
    assert_eq!(parse_errors("thermal"), Some(1.0));
    let zone = |z: &str| {
        common::value(
            &s,
            "herakles_system_thermal_zone_temp_celsius",
            &[("zone", z)],
        )
    };
    assert_eq!(zone("0"), Some(42.0));
    assert_eq!(zone("1"), None);
    assert_eq!(zone("2"), None);

    let peak = peak_rss_bytes(exporter.child.id());
    println!("exporter peak RSS: {} MiB", peak >> 20);
    assert!(peak < 128 << 20, "peak RSS {} MiB", peak >> 20);
}
