//! Attribution end to end on fixture trees: the real binary reads a
//! `/proc` whose processes sit in cgroups of every runtime's shape (Docker
//! and containerd with the systemd driver on v2, CRI-O and Podman with the
//! cgroupfs driver on v1, a plain systemd service, LXC) and a `/sys` with a
//! hybrid cgroup layout holding each cgroup's accounting files, and is
//! scraped over HTTP.
//!
//! The labels must be exactly the ids, runtimes, pod uids, QoS classes,
//! units and users the fixture encodes; the kernel accounting must equal
//! the numbers written to the files (v2 files for the v2 cgroups, v1 files
//! for the v1 ones). eBPF is off, so nothing touches the host.

mod common;

use std::fs;
use std::path::Path;

use common::{parse, promtool_check, value, Running};

const DOCKER: &str = "4f1ab5d3c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5";
const KUBE: &str = "0853fad78812e955b92d871d8d597d9bc598e34320c9edbfab0a73eacf150145";
const CRIO: &str = "9e1c1b4a2f0d3e5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c";
const PODMAN: &str = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
const POD: &str = "73dc8baf-43a0-413e-aac2-5eb0868f6c1a";
const POD2: &str = "c2a1a7e5-7d3f-4f5e-9a0b-1c2d3e4f5a6b";

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A process: stat (utime 100 ticks, rss 10 pages, 2 threads), cmdline,
/// exe, io, status (uid), cgroup, limits and `fds` descriptors.
fn process(proc: &Path, pid: u32, comm: &str, uid: u32, cgroup: &str, fds: u32) {
    let d = proc.join(pid.to_string());
    write(
        &d.join("stat"),
        &format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 50 0 3 0 100 20 0 0 20 0 2 0 {start} 4096000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n", start = 500 + pid),
    );
    write(&d.join("comm"), &format!("{comm}\n"));
    write(&d.join("cmdline"), &format!("/usr/bin/{comm}\0"));
    std::os::unix::fs::symlink(format!("/usr/bin/{comm}"), d.join("exe")).unwrap();
    write(
        &d.join("io"),
        "rchar: 0\nwchar: 0\nsyscr: 1\nsyscw: 1\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n",
    );
    write(
        &d.join("status"),
        &format!("Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
    );
    write(&d.join("cgroup"), cgroup);
    write(
        &d.join("limits"),
        "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 4096                 files     \n",
    );
    for n in 0..fds {
        write(&d.join(format!("fd/{n}")), "");
    }
}

/// v2 accounting files in `dir`, every number derived from `n`.
fn v2_files(dir: &Path, n: u64) {
    write(&dir.join("memory.current"), &format!("{}\n", n * 1000));
    write(
        &dir.join("memory.stat"),
        &format!(
            "anon {}\nfile {}\nkernel {}\nshmem 0\n",
            n * 100,
            n * 200,
            n * 30
        ),
    );
    write(
        &dir.join("memory.events"),
        &format!("low 0\nhigh 0\nmax 0\noom 0\noom_kill {n}\n"),
    );
    write(
        &dir.join("cpu.stat"),
        &format!(
            "usage_usec {}\nuser_usec 1\nsystem_usec 1\nnr_periods {}\nnr_throttled {}\nthrottled_usec {}\n",
            n * 1_000_000,
            n * 10,
            n,
            n * 500_000
        ),
    );
    write(
        &dir.join("io.stat"),
        &format!(
            "8:0 rbytes={} wbytes={} rios={} wios={} dbytes=0 dios=0\n254:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n",
            n * 4096,
            n * 8192,
            n,
            n * 2
        ),
    );
}

/// v1 accounting files for cgroup `path` under the hierarchies of `cg`.
fn v1_files(cg: &Path, path: &str, n: u64) {
    let memory = cg.join("memory").join(path);
    write(
        &memory.join("memory.usage_in_bytes"),
        &format!("{}\n", n * 1000),
    );
    write(
        &memory.join("memory.stat"),
        &format!(
            "cache 1\nrss 2\ntotal_cache {}\ntotal_rss {}\n",
            n * 200,
            n * 100
        ),
    );
    write(
        &memory.join("memory.oom_control"),
        &format!("oom_kill_disable 0\nunder_oom 0\noom_kill {n}\n"),
    );
    let cpu = cg.join("cpu,cpuacct").join(path);
    write(
        &cpu.join("cpuacct.usage"),
        &format!("{}\n", n * 1_000_000_000),
    );
    write(
        &cpu.join("cpu.stat"),
        &format!(
            "nr_periods {}\nnr_throttled {}\nthrottled_time {}\n",
            n * 10,
            n,
            n * 500_000_000
        ),
    );
    let blkio = cg.join("blkio").join(path);
    write(
        &blkio.join("blkio.throttle.io_service_bytes_recursive"),
        &format!(
            "8:0 Read {}\n8:0 Write {}\n8:0 Total 0\nTotal 0\n",
            n * 4096,
            n * 8192
        ),
    );
    write(
        &blkio.join("blkio.throttle.io_serviced_recursive"),
        &format!("8:0 Read {n}\n8:0 Write {}\nTotal 0\n", n * 2),
    );
}

struct Tree {
    _dir: tempfile::TempDir,
    proc: String,
    sys: String,
    root: String,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    let sys = dir.path().join("sys");
    let root = dir.path().join("root");
    write(
        &proc.join("stat"),
        "cpu  1 0 1 1 0 0 0 0 0 0\nbtime 1700000000\n",
    );
    write(
        &root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    );

    let kube_pod = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        POD.replace('-', "_")
    );
    let crio = format!("/kubepods/besteffort/pod{POD2}/crio-{CRIO}");
    let podman = format!("/libpod_parent/libpod-{PODMAN}");
    let v1 = |path: &str| {
        format!("9:name=systemd:/\n7:blkio:{path}\n4:memory:{path}\n2:cpu,cpuacct:{path}\n0::/\n")
    };
    process(
        &proc,
        100,
        "dockerd-app",
        0,
        &format!("0::/system.slice/docker-{DOCKER}.scope\n"),
        5,
    );
    process(
        &proc,
        101,
        "kube-app",
        1000,
        &format!("0::{kube_pod}/cri-containerd-{KUBE}.scope\n"),
        7,
    );
    process(&proc, 102, "crio-app", 1000, &v1(&crio), 0);
    process(&proc, 103, "podman-app", 0, &v1(&podman), 0);
    let nginx = "1:name=systemd:/system.slice/nginx.service\n0::/system.slice/nginx.service\n";
    process(&proc, 104, "nginx", 33, nginx, 300);
    process(&proc, 105, "nginx", 33, nginx, 12);
    process(
        &proc,
        106,
        "lxc-app",
        0,
        "0::/lxc.payload.web1/system.slice/a.service\n",
        0,
    );

    // A hybrid layout: v2 at unified (here with the controllers, so that
    // v2 cgroups have their files), v1 memory, cpu,cpuacct and blkio.
    let cg = sys.join("fs/cgroup");
    write(&cg.join("unified/cgroup.controllers"), "cpu io memory\n");
    for h in ["memory", "cpu,cpuacct", "blkio", "systemd"] {
        write(&cg.join(h).join("cgroup.procs"), "");
    }
    std::os::unix::fs::symlink("cpu,cpuacct", cg.join("cpu")).unwrap();
    std::os::unix::fs::symlink("cpu,cpuacct", cg.join("cpuacct")).unwrap();
    let unified = cg.join("unified");
    v2_files(
        &unified.join(format!("system.slice/docker-{DOCKER}.scope")),
        1,
    );
    v2_files(
        &unified.join(format!("{}/cri-containerd-{KUBE}.scope", &kube_pod[1..])),
        2,
    );
    v2_files(&unified.join(&kube_pod[1..]), 3);
    v2_files(&unified.join("system.slice/nginx.service"), 4);
    v1_files(&cg, &crio[1..], 5);
    v1_files(&cg, &format!("kubepods/besteffort/pod{POD2}"), 6);
    v1_files(&cg, &podman[1..], 7);
    write(
        &sys.join("dev/block/8:0/uevent"),
        "MAJOR=8\nMINOR=0\nDEVNAME=sda\n",
    );

    let s = |p: &Path| p.to_str().unwrap().to_string();
    Tree {
        proc: s(&proc),
        sys: s(&sys),
        root: s(&root),
        _dir: dir,
    }
}

fn start(t: &Tree, extra: &[&str]) -> Running {
    let mut args = vec![
        "--path.procfs",
        &t.proc,
        "--path.sysfs",
        &t.sys,
        "--path.rootfs",
        &t.root,
        "--disable-ebpf",
        "--no-collector.bpf_inventory",
        "--collector-timeout",
        "60",
    ];
    args.extend_from_slice(extra);
    Running::start(&args)
}

#[test]
fn every_runtime_shape_is_attributed_exactly() {
    let t = tree();
    let exp = start(&t, &["--process-labels", "container,pod,unit,user"]);
    let text = exp.get("/metrics").text();
    let m = parse(&text);
    let get = |name: &str, labels: &[(&str, &str)]| value(&m, name, labels);

    let containers = [
        (DOCKER, "docker", None),
        (KUBE, "containerd", Some(POD)),
        (CRIO, "cri-o", Some(POD2)),
        (PODMAN, "podman", None),
        ("web1", "lxc", None),
    ];
    for (id, runtime, pod) in containers {
        let mut l = vec![("container_id", id), ("container_runtime", runtime)];
        if let Some(pod) = pod {
            l.push(("pod_uid", pod));
        }
        assert_eq!(get("herakles_container_processes", &l), Some(1.0), "{id}");
        assert_eq!(
            get(
                "herakles_container_cpu_seconds_total",
                &[("container_id", id), ("mode", "user")]
            ),
            Some(1.0),
            "{id}: 100 ticks"
        );
    }
    let series = |name: &str| m.samples.iter().filter(|s| s.metric == name).count();
    assert_eq!(series("herakles_container_processes"), 5);
    assert_eq!(
        get(
            "herakles_pod_processes",
            &[("pod_uid", POD), ("qos_class", "burstable")]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "herakles_pod_processes",
            &[("pod_uid", POD2), ("qos_class", "besteffort")]
        ),
        Some(1.0)
    );
    assert_eq!(
        get("herakles_unit_processes", &[("unit", "nginx.service")]),
        Some(2.0)
    );
    let scope = format!("docker-{DOCKER}.scope");
    assert_eq!(
        get("herakles_unit_processes", &[("unit", &scope)]),
        Some(1.0)
    );
    assert_eq!(
        get("herakles_user_processes", &[("user", "www-data")]),
        Some(2.0)
    );
    assert_eq!(
        get("herakles_user_processes", &[("user", "alice")]),
        Some(2.0)
    );
    assert_eq!(
        get("herakles_user_processes", &[("user", "root")]),
        Some(3.0)
    );
    assert_eq!(
        get(
            "herakles_unit_blkio_write_bytes_total",
            &[("unit", "nginx.service")]
        ),
        Some(2.0 * 8192.0)
    );
    // A unit inside an LXC container is the container's business.
    assert_eq!(
        get("herakles_unit_processes", &[("unit", "a.service")]),
        None
    );

    // Per-process labels.
    let labels = m
        .samples
        .iter()
        .find(|s| {
            s.metric == "herakles_mem_process_rss_bytes" && s.labels.get("pid") == Some("101")
        })
        .unwrap()
        .labels
        .clone();
    assert_eq!(labels.get("container_id"), Some(KUBE));
    assert_eq!(labels.get("container_runtime"), Some("containerd"));
    assert_eq!(labels.get("pod_uid"), Some(POD));
    assert_eq!(
        labels.get("unit"),
        Some(&*format!("cri-containerd-{KUBE}.scope"))
    );
    assert_eq!(labels.get("user"), Some("alice"));

    // Open descriptors and the worst ratio, by subgroup (nginx: 300 of
    // 1024 is the worse of its two).
    let nginx = [("group", "web"), ("subgroup", "nginx")];
    assert_eq!(get("herakles_group_open_fds", &nginx), Some(312.0));
    assert_eq!(
        get("herakles_group_worst_fd_ratio", &nginx),
        Some(300.0 / 1024.0)
    );
    assert_eq!(get("herakles_group_threads", &nginx), Some(4.0));
    assert_eq!(
        get("herakles_group_oldest_start_time_seconds", &nginx),
        Some(1_700_000_000.0 + 604.0 / 100.0)
    );

    let complaints = promtool_check(&text);
    assert!(complaints.is_empty(), "{complaints}");
}

#[test]
fn cgroup_accounting_equals_the_files() {
    let t = tree();
    let exp = start(&t, &[]);
    let m = parse(&exp.get("/metrics").text());
    let get = |name: &str, labels: &[(&str, &str)]| value(&m, name, labels);
    let kube_unit = format!("cri-containerd-{KUBE}.scope");
    let docker_unit = format!("docker-{DOCKER}.scope");
    // (family prefix, labels, n): the n the files were written with.
    type Cgroup<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);
    let cgroups: [Cgroup; 8] = [
        ("container", vec![("container_id", DOCKER)], 1.0),
        ("unit", vec![("unit", &docker_unit)], 1.0),
        ("container", vec![("container_id", KUBE)], 2.0),
        ("unit", vec![("unit", &kube_unit)], 2.0),
        ("pod", vec![("pod_uid", POD)], 3.0),
        ("unit", vec![("unit", "nginx.service")], 4.0),
        ("container", vec![("container_id", CRIO)], 5.0),
        ("pod", vec![("pod_uid", POD2)], 6.0),
    ];
    for (dim, l, n) in &cgroups {
        let f = |what: &str| format!("herakles_{dim}_cgroup_{what}");
        let with = |more: &[(&'static str, &'static str)]| {
            let mut l = l.clone();
            l.extend_from_slice(more);
            l
        };
        let at = format!("{dim} {l:?}");
        assert_eq!(get(&f("memory_usage_bytes"), l), Some(n * 1000.0), "{at}");
        assert_eq!(
            get(&f("memory_stat_bytes"), &with(&[("type", "anon")])),
            Some(n * 100.0),
            "{at}"
        );
        assert_eq!(
            get(&f("memory_stat_bytes"), &with(&[("type", "file")])),
            Some(n * 200.0),
            "{at}"
        );
        assert_eq!(get(&f("oom_kills_total"), l), Some(*n), "{at}");
        assert_eq!(get(&f("cpu_usage_seconds_total"), l), Some(*n), "{at}");
        assert_eq!(get(&f("cpu_periods_total"), l), Some(n * 10.0), "{at}");
        assert_eq!(get(&f("cpu_throttled_periods_total"), l), Some(*n), "{at}");
        assert_eq!(
            get(&f("cpu_throttled_seconds_total"), l),
            Some(n * 0.5),
            "{at}"
        );
        let disk = |direction| with(&[("device", "sda"), ("direction", direction)]);
        assert_eq!(
            get(&f("io_bytes_total"), &disk("read")),
            Some(n * 4096.0),
            "{at}"
        );
        assert_eq!(
            get(&f("io_bytes_total"), &disk("write")),
            Some(n * 8192.0),
            "{at}"
        );
        assert_eq!(
            get(&f("io_operations_total"), &disk("write")),
            Some(n * 2.0),
            "{at}"
        );
    }
    // v2 only: the kernel memory and a disk sysfs does not name.
    let docker = [("container_id", DOCKER), ("type", "kernel")];
    assert_eq!(
        get("herakles_container_cgroup_memory_stat_bytes", &docker),
        Some(30.0)
    );
    let other = [
        ("container_id", DOCKER),
        ("device", "254:0"),
        ("direction", "write"),
    ];
    assert_eq!(
        get("herakles_container_cgroup_io_operations_total", &other),
        Some(4.0)
    );
    // v1 here has no kmem file: no kernel series, rather than a zero.
    let crio = [("container_id", CRIO), ("type", "kernel")];
    assert_eq!(
        get("herakles_container_cgroup_memory_stat_bytes", &crio),
        None
    );
}

#[test]
fn explain_shows_where_a_process_runs() {
    let t = tree();
    let rules = Path::new(&t.root).join("rules.toml");
    write(
        &rules,
        "subgroups = [{ group = \"tenants\", subgroup = \"alice\", user_matches = ['alice'] }]\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herakles-node-exporter"))
        .args([
            "--no-config",
            "--path.procfs",
            &t.proc,
            "--path.rootfs",
            &t.root,
            "--subgroups-file",
            rules.to_str().unwrap(),
            "subgroups",
            "--explain",
            "101",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("container: \"containerd://{KUBE}\"")),
        "{text}"
    );
    assert!(text.contains("user:    \"alice\""), "{text}");
    assert!(text.contains("result:  tenants/alice"), "{text}");
    assert!(text.contains("the user matches regex \"alice\""), "{text}");
}

#[test]
fn the_cap_bounds_per_process_series_at_five_thousand_processes() {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    for pid in 1..=5000u32 {
        let d = proc.join(pid.to_string());
        fs::create_dir_all(&d).unwrap();
        // RSS grows with the pid: the cap keeps the 1,000 highest pids.
        fs::write(
            d.join("stat"),
            format!("{pid} (w{pid}) S 1 1 1 0 -1 4194560 0 0 0 0 1 1 0 0 20 0 1 0 {pid} 1000 {pid} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"),
        )
        .unwrap();
        fs::write(d.join("cmdline"), "w\0").unwrap();
        fs::write(
            d.join("io"),
            "read_bytes: 0\nwrite_bytes: 0\nsyscr: 0\nsyscw: 0\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/bin/w", d.join("exe")).unwrap();
    }
    let p = proc.to_str().unwrap();
    let exp = Running::start(&[
        "--path.procfs",
        p,
        "--disable-ebpf",
        "--no-collector.bpf_inventory",
        "--no-attribution",
        "--smaps-mode",
        "off",
        "--collector-timeout",
        "120",
        "--max-process-series",
        "1000",
    ]);
    let m = parse(&exp.get("/metrics").text());
    let rss: Vec<u32> = m
        .samples
        .iter()
        .filter(|s| s.metric == "herakles_mem_process_rss_bytes")
        .map(|s| s.labels.get("pid").unwrap().parse().unwrap())
        .collect();
    assert_eq!(rss.len(), 1000);
    assert_eq!(rss.iter().min(), Some(&4001));
    assert_eq!(
        value(&m, "herakles_process_series_dropped_total", &[]),
        Some(4000.0)
    );
    assert_eq!(value(&m, "herakles_processes", &[]), Some(5000.0));
    let m = parse(&exp.get("/metrics").text());
    assert_eq!(
        value(&m, "herakles_process_series_dropped_total", &[]),
        Some(8000.0)
    );
}
