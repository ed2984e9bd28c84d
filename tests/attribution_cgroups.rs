//! Attribution and cgroup accounting against real cgroups and a real
//! container runtime.
//!
//! The test creates cgroups with the shapes runtimes use (a CRI container
//! in a burstable Kubernetes pod, a Docker scope, a systemd service) in
//! this machine's v2 hierarchy and in the v1 memory, cpu, cpuacct and
//! blkio hierarchies, moves a forked child through them, and checks that
//! the child's `/proc/<pid>/cgroup` is attributed exactly and that the
//! accounting read for its cgroup equals the kernel's files and what the
//! child did: 32 MiB touched, 100 ms of CPU burnt, 1 MiB written and read
//! with O_DIRECT, one process killed by the OOM killer.
//!
//! v2 cgroups are made at the top of the hierarchy, so the systemd shapes
//! are real ones; v1 cgroups below the test's own, so that a harness
//! limiting the test's memory keeps limiting the child. Everything made is
//! removed however the test ends. Needs root; run under the suite lock.

use std::ffi::{c_char, c_int, c_void, CString};
use std::fmt::Debug;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use herakles_node_exporter::attribution::accounting::{self, CgroupStats, Source};
use herakles_node_exporter::attribution::container::{Qos, Runtime};
use herakles_node_exporter::attribution::hierarchy::{CgroupDirs, Hierarchy};
use herakles_node_exporter::attribution::identity::Identity;
use herakles_node_exporter::attribution::proc_cgroup::ProcCgroup;

mod common;

use common::cgroups::{disk_of, is_root, move_to, test_slice, Kid, Made};

const MIB: usize = 1 << 20;
const CID: &str = "4f1ab5d3c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5";
const CID2: &str = "0853fad78812e955b92d871d8d597d9bc598e34320c9edbfab0a73eacf150145";
const UID: &str = "73dc8baf-43a0-413e-aac2-5eb0868f6c1a";

// ---------------------------------------------------------------------
// A forked child that does what it is told and then blocks.

/// A child process driven over two pipes. Between commands it blocks in
/// `read`, so its counters are still while they are compared.
struct Child {
    pid: libc::pid_t,
    cmd: c_int,
    ack: c_int,
    reaped: Option<c_int>,
}

impl Child {
    /// Fork. The child touches only raw system calls: after `fork` in a
    /// multi-threaded test binary, nothing that may allocate or lock is
    /// safe.
    fn spawn(io_path: &CString) -> Child {
        let (mut cmd, mut ack) = ([0; 2], [0; 2]);
        // SAFETY: the arrays are valid for two descriptors each.
        unsafe {
            assert_eq!(libc::pipe2(cmd.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::pipe2(ack.as_mut_ptr(), libc::O_CLOEXEC), 0);
        }
        let path = io_path.as_ptr();
        // SAFETY: the child runs `child_main` only, which never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: our own pipe ends; see child_main.
            unsafe {
                libc::close(cmd[1]);
                libc::close(ack[0]);
                child_main(cmd[0], ack[1], path)
            }
        }
        // SAFETY: the child's ends, which we no longer need.
        unsafe {
            libc::close(cmd[0]);
            libc::close(ack[1]);
        }
        Child {
            pid,
            cmd: cmd[1],
            ack: ack[0],
            reaped: None,
        }
    }

    /// Send a command; the reply byte, or `None` if the child died.
    fn ask(&self, what: u8) -> Option<u8> {
        let mut reply = 0u8;
        // SAFETY: one byte from and to valid locals, on our descriptors.
        unsafe {
            assert_eq!(
                libc::write(self.cmd, &what as *const u8 as *const c_void, 1),
                1
            );
            (libc::read(self.ack, &mut reply as *mut u8 as *mut c_void, 1) == 1).then_some(reply)
        }
    }

    /// Run a command that must succeed, then wait until the child is
    /// asleep in its next `read`: only then are its counters final.
    fn run(&self, what: u8) {
        assert_eq!(self.ask(what), Some(b'k'), "child command {}", what as char);
        let stat = format!("/proc/{}/stat", self.pid);
        for _ in 0..1000 {
            let text = fs::read_to_string(&stat).unwrap();
            let state = text.rsplit_once(')').unwrap().1.split_whitespace().next();
            if state == Some("S") {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("child {} never went back to sleep", self.pid);
    }

    /// Wait for the child to end; its wait status.
    fn reap(&mut self) -> c_int {
        if let Some(status) = self.reaped {
            return status;
        }
        let mut status = 0;
        // SAFETY: our own child; status is a valid int.
        assert_eq!(unsafe { libc::waitpid(self.pid, &mut status, 0) }, self.pid);
        self.reaped = Some(status);
        status
    }

    /// Run time in nanoseconds, from `/proc/<pid>/schedstat`.
    fn runtime_ns(&self) -> u64 {
        let text = fs::read_to_string(format!("/proc/{}/schedstat", self.pid)).unwrap();
        text.split_whitespace().next().unwrap().parse().unwrap()
    }

    fn cgroup(&self) -> ProcCgroup {
        ProcCgroup::read(Path::new(&format!("/proc/{}", self.pid)), &mut Vec::new()).unwrap()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            // SAFETY: our own child, not yet reaped, so the pid is ours.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.reap();
        }
        // SAFETY: our descriptors, closed once.
        unsafe {
            libc::close(self.cmd);
            libc::close(self.ack);
        }
    }
}

/// The child: `m` touches 32 MiB, `o` touches 256 MiB (to be OOM-killed),
/// `c` burns 100 ms of CPU, `i` writes and reads 1 MiB with O_DIRECT.
/// Replies `k` (done) or `e` (failed); exits on end of file.
unsafe fn child_main(cmd: c_int, ack: c_int, io_path: *const c_char) -> ! {
    loop {
        let mut c = 0u8;
        if libc::read(cmd, &mut c as *mut u8 as *mut c_void, 1) != 1 {
            libc::_exit(0);
        }
        let ok = match c {
            b'm' => touch(32 * MIB),
            b'o' => touch(256 * MIB),
            b'c' => burn(100_000_000),
            b'i' => direct_io(io_path),
            _ => false,
        };
        let reply = if ok { b'k' } else { b'e' };
        libc::write(ack, &reply as *const u8 as *const c_void, 1);
    }
}

/// Map and write to every page of `len` bytes, kept until exit.
unsafe fn touch(len: usize) -> bool {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let p = libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0);
    if p == libc::MAP_FAILED {
        return false;
    }
    let p = p as *mut u8;
    let mut off = 0;
    while off < len {
        std::ptr::write_volatile(p.add(off), 1);
        off += 4096;
    }
    true
}

unsafe fn thread_cpu_ns() -> i64 {
    let mut ts: libc::timespec = std::mem::zeroed();
    libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

unsafe fn burn(ns: i64) -> bool {
    let start = thread_cpu_ns();
    while thread_cpu_ns() - start < ns {
        std::hint::spin_loop();
    }
    true
}

unsafe fn direct_io(path: *const c_char) -> bool {
    let fd = libc::open(path, libc::O_RDWR | libc::O_DIRECT);
    if fd < 0 {
        return false;
    }
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let buf = libc::mmap(std::ptr::null_mut(), MIB, prot, flags, -1, 0);
    if buf == libc::MAP_FAILED {
        libc::close(fd);
        return false;
    }
    std::ptr::write_bytes(buf as *mut u8, 0xab, MIB);
    let wrote = libc::pwrite(fd, buf, MIB, 0);
    let read = libc::pread(fd, buf, MIB, 0);
    libc::munmap(buf, MIB);
    libc::close(fd);
    wrote == MIB as isize && read == MIB as isize
}

// ---------------------------------------------------------------------
// Cgroups made by the test, removed on drop.

/// One hierarchy the test uses: its root directory, and the cgroup path
/// (within it) below which the test makes its own.
#[derive(Clone, Debug)]
struct Place {
    root: PathBuf,
    parent: String,
}

impl Place {
    /// The cgroup path of `rel` (relative to the test's base) here.
    fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.parent.trim_end_matches('/'))
    }

    fn dir(&self, rel: &str) -> PathBuf {
        self.root.join(self.path(rel).trim_start_matches('/'))
    }

    fn dir_of(&self, cgroup_path: &str) -> PathBuf {
        self.root.join(cgroup_path.trim_start_matches('/'))
    }
}

// ---------------------------------------------------------------------
// The kernel's files, read here independently of the code under test.

fn num(path: PathBuf) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn key(path: PathBuf, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// (major, minor, read, write) byte counts per device from the files.
fn io_bytes(dirs: &CgroupDirs, source: Source) -> Vec<(u32, u32, u64, u64)> {
    let mut out: Vec<(u32, u32, u64, u64)> = Vec::new();
    let dev = |s: &str| {
        let (a, b) = s.split_once(':')?;
        Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
    };
    if source == Source::Unified {
        let text = fs::read_to_string(dirs.unified.as_ref().unwrap().join("io.stat")).unwrap();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (major, minor) = dev(f.next().unwrap()).unwrap();
            let get = |k: &str| {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                    .unwrap_or(0)
            };
            out.push((major, minor, get("rbytes"), get("wbytes")));
        }
    } else {
        let path = dirs
            .blkio
            .as_ref()
            .unwrap()
            .join("blkio.throttle.io_service_bytes_recursive");
        for line in fs::read_to_string(path).unwrap().lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some((major, minor)) = f.first().and_then(|d| dev(d)) else {
                continue;
            };
            let i = match out.iter().position(|d| (d.0, d.1) == (major, minor)) {
                Some(i) => i,
                None => {
                    out.push((major, minor, 0, 0));
                    out.len() - 1
                }
            };
            match f[1] {
                "Read" => out[i].2 = f[2].parse().unwrap(),
                "Write" => out[i].3 = f[2].parse().unwrap(),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// What the reader should have returned, from the files.
#[derive(Debug, PartialEq)]
struct Files {
    memory: Option<[Option<u64>; 5]>,
    cpu_ns: Option<u64>,
    io: Option<Vec<(u32, u32, u64, u64)>>,
}

fn files(dirs: &CgroupDirs, stats: &CgroupStats) -> Files {
    let memory = stats.memory.as_ref().map(|m| match m.source {
        Source::Unified => {
            let d = dirs.unified.clone().unwrap();
            [
                num(d.join("memory.current")),
                key(d.join("memory.stat"), "anon"),
                key(d.join("memory.stat"), "file"),
                key(d.join("memory.stat"), "kernel"),
                key(d.join("memory.events"), "oom_kill"),
            ]
        }
        Source::V1 => {
            let d = dirs.memory.clone().unwrap();
            [
                num(d.join("memory.usage_in_bytes")),
                key(d.join("memory.stat"), "total_rss"),
                key(d.join("memory.stat"), "total_cache"),
                num(d.join("memory.kmem.usage_in_bytes")),
                key(d.join("memory.oom_control"), "oom_kill"),
            ]
        }
    });
    let cpu_ns = stats.cpu.as_ref().map(|c| match c.source {
        Source::Unified => {
            key(dirs.unified.clone().unwrap().join("cpu.stat"), "usage_usec").unwrap() * 1000
        }
        Source::V1 => num(dirs.cpuacct.clone().unwrap().join("cpuacct.usage")).unwrap(),
    });
    let io = stats.io.as_ref().map(|io| io_bytes(dirs, io.source));
    Files { memory, cpu_ns, io }
}

fn view(stats: &CgroupStats) -> Files {
    Files {
        memory: stats
            .memory
            .as_ref()
            .map(|m| [Some(m.current), m.anon, m.file, m.kernel, m.oom_kills]),
        cpu_ns: stats.cpu.as_ref().map(|c| c.usage_ns),
        io: stats.io.as_ref().map(|io| {
            io.devices
                .iter()
                .map(|d| (d.major, d.minor, d.read_bytes, d.write_bytes))
                .collect()
        }),
    }
}

/// The reader's result, once the files read just before and just after it
/// agree: the kernel may move a counter at any time (memory charged in
/// per-CPU batches is returned when another cgroup needs it), and a
/// comparison is only meaningful across a quiet moment.
fn read_quietly(dirs: &CgroupDirs) -> (CgroupStats, Files) {
    for _ in 0..100 {
        let probe = accounting::read(dirs, &mut Vec::new());
        let before = files(dirs, &probe);
        let stats = accounting::read(dirs, &mut Vec::new());
        let after = files(dirs, &stats);
        if before == after {
            return (stats, after);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("cgroup files under {dirs:?} never held still");
}

fn assert_eq_dbg<T: PartialEq + Debug>(got: T, want: T, what: &str) {
    assert_eq!(got, want, "{what}");
}

/// Where the tests make cgroups: v2 at the top of its hierarchy, v1 below
/// the test's own cgroup in each hierarchy.
struct Places {
    h: Hierarchy,
    own: ProcCgroup,
    unified: Option<Place>,
    memory: Option<Place>,
    cpu: Option<Place>,
    cpuacct: Option<Place>,
    blkio: Option<Place>,
}

impl Places {
    fn detect() -> Places {
        let h = Hierarchy::detect(Path::new("/sys"));
        let own = ProcCgroup::read(Path::new("/proc/self"), &mut Vec::new()).unwrap();
        let v1_place = |controller: &str| {
            Some(Place {
                root: h.v1_root(controller)?.to_path_buf(),
                parent: own.v1_path(controller)?.to_string(),
            })
        };
        let unified = h.unified.clone().map(|root| Place {
            root,
            parent: "/".into(),
        });
        let (memory, cpu) = (v1_place("memory"), v1_place("cpu"));
        let (cpuacct, blkio) = (v1_place("cpuacct"), v1_place("blkio"));
        assert!(
            unified.is_some() || memory.is_some(),
            "no cgroup hierarchy under /sys/fs/cgroup: {h:?}"
        );
        Places {
            h,
            own,
            unified,
            memory,
            cpu,
            cpuacct,
            blkio,
        }
    }

    fn all(&self) -> Vec<&Place> {
        [
            &self.unified,
            &self.memory,
            &self.cpu,
            &self.cpuacct,
            &self.blkio,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

// ---------------------------------------------------------------------

#[test]
fn synthetic_cgroups_attribution_and_accounting() {
    if !is_root() {
        herakles_core::testing::skip("cgroup attribution test: needs root to create cgroups");
        return;
    }
    let Places {
        h,
        own,
        unified,
        memory,
        cpu,
        cpuacct,
        blkio,
    } = Places::detect();
    let places: Vec<&Place> = [&unified, &memory, &cpu, &cpuacct, &blkio]
        .into_iter()
        .flatten()
        .collect();
    let base = test_slice();
    let pod = format!("{base}/kubepods/burstable/pod{UID}");
    let kube = format!("{pod}/{CID}");
    let docker = format!("{base}/docker-{CID2}.scope");
    let service = format!("{base}/herakles-probe.service");
    let oom = format!("{base}/oom");

    let io_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let io_file = io_dir.path().join("direct");
    fs::write(&io_file, vec![0u8; MIB]).unwrap();
    fs::File::open(&io_file).unwrap().sync_all().unwrap();
    let io_path = CString::new(io_file.as_os_str().as_bytes()).unwrap();

    // Declared before the children so that it is dropped after them: a
    // cgroup can only be removed once its processes are gone.
    let mut made = Made::default();
    for place in &places {
        for rel in [&kube, &docker, &service, &oom] {
            made.make(&place.root, &place.dir(rel));
        }
    }
    let child = Child::spawn(&io_path);
    let before = Identity::of(&child.cgroup());
    assert_eq!(
        before,
        Identity::of(&own),
        "a fork starts in its parent's cgroups"
    );

    // 1. A CRI container in a burstable pod.
    for place in &places {
        move_to(child.pid, &place.dir(&kube));
    }
    let cg = child.cgroup();
    for (place, controller) in [(&memory, "memory"), (&cpu, "cpu"), (&blkio, "blkio")] {
        if let Some(place) = place {
            assert_eq!(cg.v1_path(controller), Some(place.path(&kube).as_str()));
        }
    }
    if let Some(u) = &unified {
        assert_eq!(cg.unified.as_deref(), Some(u.path(&kube).as_str()));
    }
    let primary = unified.as_ref().or(memory.as_ref()).unwrap();
    let id = Identity::of(&cg);
    assert_eq!(id.cgroup, primary.path(&kube));
    let c = id.container.clone().expect("container");
    assert_eq!((c.runtime, c.id.as_str()), (Runtime::Cri, CID));
    assert_eq!(c.cgroup, primary.path(&kube));
    let p = id.pod.clone().expect("pod");
    assert_eq!((p.uid.as_str(), p.qos), (UID, Qos::Burstable));
    assert_eq!(p.cgroup, primary.path(&pod));
    assert_eq!(id.monitor, None);
    assert!(!id.outside_namespace);
    if unified.is_some() {
        assert_eq!(id.unit, None, "kubepods below a slice is no unit");
    }

    // The directories resolved are the ones made.
    let dirs = h.dirs(&cg);
    let want = CgroupDirs {
        unified: unified.as_ref().map(|p| p.dir(&kube)),
        memory: memory.as_ref().map(|p| p.dir(&kube)),
        cpu: cpu.as_ref().map(|p| p.dir(&kube)),
        cpuacct: cpuacct.as_ref().map(|p| p.dir(&kube)),
        blkio: blkio.as_ref().map(|p| p.dir(&kube)),
    };
    assert_eq!(dirs, want);
    // And the container's cgroup is the same one (no sub-cgroup here).
    let container_dirs = h.dirs_with(&cg, |p| {
        herakles_node_exporter::attribution::container::find(p)
            .container
            .map(|c| c.cgroup)
    });
    assert_eq!(container_dirs, want);

    // 2. Work, then accounting.
    child.run(b'm');
    let cpu_before = child.runtime_ns();
    child.run(b'c');
    let burnt = child.runtime_ns() - cpu_before;
    assert!(burnt >= 100_000_000, "burnt {burnt} ns");
    // v1 blkio counts a device's I/O only once throttling is set up on it
    // (recent kernels set it up lazily, on the first rule), so give the
    // disk a rule that never throttles: 1 TiB/s.
    let (major, minor) = disk_of(&io_file);
    if let Some(b) = &blkio {
        for rule in ["read_bps_device", "write_bps_device"] {
            let file = b.dir(&kube).join(format!("blkio.throttle.{rule}"));
            fs::write(&file, format!("{major}:{minor} {}", 1u64 << 40)).unwrap();
        }
    }
    child.run(b'i');

    let (stats, from_files) = read_quietly(&dirs);
    assert_eq_dbg(view(&stats), from_files, "reader vs the cgroup's files");

    let m = stats.memory.as_ref().expect("memory accounting");
    let memory_on_v2 = dirs
        .unified
        .as_ref()
        .is_some_and(|d| d.join("memory.current").exists());
    assert_eq!(
        m.source,
        if memory_on_v2 {
            Source::Unified
        } else {
            Source::V1
        }
    );
    let anon = m.anon.expect("anon");
    assert!(
        anon >= 32 * MIB as u64,
        "anon {anon}: the child touched 32 MiB"
    );
    assert!(m.current >= anon, "{m:?}");
    assert_eq!(m.oom_kills, Some(0));

    // Everything the child ran since it joined is charged to the cgroup:
    // at least the 100 ms it burnt.
    let c = stats.cpu.as_ref().expect("cpu accounting");
    assert!(
        c.usage_ns >= burnt,
        "cgroup {} ns < child burnt {burnt} ns",
        c.usage_ns
    );
    if let Some(u) = &dirs.unified {
        // v2's cpu.stat is there even without the cpu controller.
        let v2 = accounting::cpu_v2(u, &mut Vec::new()).expect("v2 cpu.stat");
        let file = key(u.join("cpu.stat"), "usage_usec").unwrap() * 1000;
        assert_eq!(v2.usage_ns, file);
        assert!(v2.usage_ns >= burnt - burnt % 1000);
    }

    let io = stats.io.as_ref().expect("io accounting");
    let wrote: u64 = io.devices.iter().map(|d| d.write_bytes).sum();
    let read: u64 = io.devices.iter().map(|d| d.read_bytes).sum();
    assert!(wrote >= MIB as u64 && read >= MIB as u64, "{io:?}");
    let disk = io
        .devices
        .iter()
        .find(|d| (d.major, d.minor) == (major, minor));
    assert!(
        disk.is_some_and(|d| d.write_bytes >= MIB as u64 && d.writes >= 1),
        "no write to {major}:{minor} in {io:?}"
    );

    // 3. Moved: a Docker scope, then a service, then back out.
    for place in &places {
        move_to(child.pid, &place.dir(&docker));
    }
    let id = Identity::of(&child.cgroup());
    let c = id.container.expect("docker container");
    assert_eq!((c.runtime, c.id.as_str()), (Runtime::Docker, CID2));
    assert_eq!(id.pod, None);
    if unified.is_some() {
        let unit = id.unit.expect("unit");
        assert_eq!(
            (unit.slice.as_str(), unit.unit.as_str()),
            (base.as_str(), format!("docker-{CID2}.scope").as_str())
        );
    }

    for place in &places {
        move_to(child.pid, &place.dir(&service));
    }
    let id = Identity::of(&child.cgroup());
    assert_eq!((id.container, id.pod), (None, None));
    assert_eq!(id.cgroup, primary.path(&service));
    if unified.is_some() {
        let unit = id.unit.expect("unit");
        assert_eq!(
            (unit.slice.as_str(), unit.unit.as_str()),
            (base.as_str(), "herakles-probe.service")
        );
    }

    for place in &places {
        move_to(child.pid, &place.dir_of(&place.parent));
    }
    assert_eq!(Identity::of(&child.cgroup()), before);

    // 4. The OOM killer, in a cgroup of its own with a 16 MiB limit.
    let memory_place = if memory_on_v2 {
        unified.as_ref()
    } else {
        memory.as_ref()
    };
    let memory_place = memory_place.unwrap();
    let oom_dir = memory_place.dir(&oom);
    if memory_on_v2 {
        fs::write(oom_dir.join("memory.max"), (16 * MIB).to_string()).unwrap();
        let _ = fs::write(oom_dir.join("memory.swap.max"), "0");
    } else {
        fs::write(
            oom_dir.join("memory.limit_in_bytes"),
            (16 * MIB).to_string(),
        )
        .unwrap();
        let _ = fs::write(
            oom_dir.join("memory.memsw.limit_in_bytes"),
            (16 * MIB).to_string(),
        );
    }
    let mut victim = Child::spawn(&io_path);
    move_to(victim.pid, &oom_dir);
    assert_eq!(
        victim.ask(b'o'),
        None,
        "the victim survived 256 MiB in 16 MiB"
    );
    let status = victim.reap();
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "victim status {status:#x}"
    );
    let oom_dirs = CgroupDirs {
        unified: memory_on_v2.then(|| oom_dir.clone()),
        memory: (!memory_on_v2).then(|| oom_dir.clone()),
        ..CgroupDirs::default()
    };
    let oom_stats = accounting::read(&oom_dirs, &mut Vec::new());
    assert_eq!(oom_stats.memory.unwrap().oom_kills, Some(1));
    // v2 counts a kill in every ancestor; v1 only where it happened.
    let base_dir = memory_place.dir(&base);
    let base_dirs = CgroupDirs {
        unified: memory_on_v2.then(|| base_dir.clone()),
        memory: (!memory_on_v2).then(|| base_dir.clone()),
        ..CgroupDirs::default()
    };
    let base_stats = accounting::read(&base_dirs, &mut Vec::new());
    let expected = if memory_on_v2 { 1 } else { 0 };
    assert_eq!(base_stats.memory.unwrap().oom_kills, Some(expected));

    drop(victim);
    drop(child);
    drop(made);
    for place in &places {
        assert!(
            !place.dir(&base).exists(),
            "left behind: {}",
            place.dir(&base).display()
        );
    }
}

/// A real Podman container (the runtime and cgroup manager this machine
/// has): the container's processes are attributed to it by its full id,
/// conmon is its supervisor, not part of it, and the container's
/// accounting equals its cgroup's files.
#[test]
fn podman_container_and_its_supervisor() {
    if !is_root() {
        herakles_core::testing::skip("podman attribution test: needs root");
        return;
    }
    // runc: crun refuses hybrid hosts. The host's root as an overlay is
    // a root filesystem with `sleep` in it, and nothing written reaches
    // the host. Explicit rlimits: raising podman's defaults needs
    // CAP_SYS_RESOURCE, which a sandboxed runner may lack.
    let out = Command::new("podman")
        .args([
            "run",
            "-d",
            "--rm",
            "--runtime",
            "runc",
            "--network",
            "none",
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
            "--rootfs",
            "/:O",
            "/bin/sleep",
            "120",
        ])
        .output()
        .expect("run podman (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Command::new("podman")
                .args(["rm", "--force", "--time", "0", &self.0])
                .output();
        }
    }
    let _remove = Remove(id.clone());
    let out = Command::new("podman")
        .args([
            "inspect",
            "--format",
            "{{.State.Pid}} {{.State.ConmonPid}}",
            &id,
        ])
        .output()
        .unwrap();
    let pids = String::from_utf8(out.stdout).unwrap();
    let (pid, conmon) = pids.trim().split_once(' ').unwrap();

    let read =
        |pid: &str| ProcCgroup::read(&Path::new("/proc").join(pid), &mut Vec::new()).unwrap();
    let cg = read(pid);
    let identity = Identity::of(&cg);
    let c = identity.container.expect("the container");
    assert_eq!((c.runtime, c.id.as_str()), (Runtime::Podman, id.as_str()));
    assert!(
        identity.cgroup.contains(&format!("libpod-{id}")),
        "{}",
        identity.cgroup
    );

    let supervisor = Identity::of(&read(conmon));
    assert_eq!(supervisor.container, None, "conmon is not in the container");
    let m = supervisor.monitor.expect("conmon is a supervisor");
    assert_eq!(m.runtime, Runtime::Podman);
    if let Some(of) = m.container_id {
        assert_eq!(of, id);
    }

    let h = Hierarchy::detect(Path::new("/sys"));
    let dirs = h.dirs_with(&cg, |p| {
        herakles_node_exporter::attribution::container::find(p)
            .container
            .map(|c| c.cgroup)
    });
    let (stats, from_files) = read_quietly(&dirs);
    assert_eq_dbg(view(&stats), from_files, "reader vs the container's files");
    let memory = stats.memory.expect("memory accounting");
    assert!(memory.current > 0 && memory.anon.is_some(), "{memory:?}");
    assert!(stats.cpu.expect("cpu").usage_ns > 0);
}

/// The exporter itself, on real cgroups: a process in a CRI container of a
/// burstable pod is attributed exactly in /metrics, the container's
/// accounting there equals its cgroup's files, a move without exec is seen
/// within `attribution_recheck_scrapes` scrapes, and an exec at once.
#[test]
fn the_exporter_follows_real_cgroups_moves_and_execs() {
    if !is_root() {
        herakles_core::testing::skip("exporter cgroup test: needs root to create cgroups");
        return;
    }
    use std::io::Write;
    let places = Places::detect();
    let base = test_slice();
    let kube = format!("{base}/kubepods/burstable/pod{UID}/{CID}");
    let docker = format!("{base}/docker-{CID2}.scope");
    let mut made = Made::default();
    for place in places.all() {
        for rel in [&kube, &docker] {
            made.make(&place.root, &place.dir(rel));
        }
    }
    // A shell that execs `sleep` when told to; meanwhile it waits in read.
    let mut kid = Kid(Command::new("bash")
        .args(["-c", "read line; exec sleep 300"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap());
    let pid = kid.0.id() as libc::pid_t;
    for place in places.all() {
        move_to(pid, &place.dir(&kube));
    }
    const PERIOD: u64 = 4;
    let exp = common::Running::start_env(
        &[
            "--disable-ebpf",
            "--no-collector.bpf_inventory",
            "--collector-timeout",
            "60",
        ],
        &[("HERAKLES_ATTRIBUTION_RECHECK_SCRAPES", &PERIOD.to_string())],
    );
    let scrapes = std::cell::Cell::new(0u64);
    let scrape = || {
        scrapes.set(scrapes.get() + 1);
        common::parse(&exp.get("/metrics").text())
    };

    // Attributed exactly, summed, and the container's cgroup accounting
    // equals its files (compared across a quiet moment).
    let dirs = places
        .h
        .dirs(&ProcCgroup::read(Path::new(&format!("/proc/{pid}")), &mut Vec::new()).unwrap());
    let kube_labels = [
        ("container_id", CID),
        ("container_runtime", "cri"),
        ("pod_uid", UID),
    ];
    let mut agreed = false;
    for _ in 0..50 {
        let probe = accounting::read(&dirs, &mut Vec::new());
        let before = files(&dirs, &probe);
        let m = scrape();
        let after = files(&dirs, &probe);
        assert_eq!(
            common::value(&m, "herakles_container_processes", &kube_labels),
            Some(1.0)
        );
        assert_eq!(
            common::value(
                &m,
                "herakles_pod_processes",
                &[("pod_uid", UID), ("qos_class", "burstable")]
            ),
            Some(1.0)
        );
        if before != after {
            continue;
        }
        let got = |name: &str| common::value(&m, name, &[("container_id", CID)]);
        let memory = before.memory.expect("memory accounting");
        assert_eq!(
            got("herakles_container_cgroup_memory_usage_bytes"),
            memory[0].map(|v| v as f64)
        );
        assert_eq!(
            got("herakles_container_cgroup_cpu_usage_seconds_total"),
            before.cpu_ns.map(|ns| ns as f64 / 1e9)
        );
        agreed = true;
        break;
    }
    assert!(agreed, "the cgroup files never held still");

    // Moved without exec: seen within PERIOD scrapes.
    for place in places.all() {
        move_to(pid, &place.dir(&docker));
    }
    let docker_labels = [("container_id", CID2), ("container_runtime", "docker")];
    let moved_after = (1..=PERIOD).find(|_| {
        let m = scrape();
        common::value(&m, "herakles_container_processes", &docker_labels) == Some(1.0)
    });
    assert!(
        moved_after.is_some(),
        "not re-attributed within {PERIOD} scrapes"
    );
    let m = scrape();
    assert_eq!(
        common::value(&m, "herakles_container_processes", &kube_labels),
        None,
        "the container left has no process: no series"
    );

    // Moved back, then exec'd right away: re-attributed at the next
    // scrape although it is not the process's turn. (The table takes
    // turns by scrape count: pid mod PERIOD = scrapes done mod PERIOD.)
    while u64::from(pid as u32) % PERIOD == scrapes.get() % PERIOD {
        scrape();
    }
    for place in places.all() {
        move_to(pid, &place.dir(&kube));
    }
    kid.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let comm = format!("/proc/{pid}/comm");
    for _ in 0..500 {
        if fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let m = scrape();
    assert_eq!(
        common::value(&m, "herakles_container_processes", &kube_labels),
        Some(1.0)
    );
    assert_eq!(
        common::value(&m, "herakles_container_processes", &docker_labels),
        None
    );

    drop(exp);
    drop(kid);
    drop(made);
    for place in places.all() {
        assert!(
            !place.dir(&base).exists(),
            "left behind: {}",
            place.dir(&base).display()
        );
    }
}
