//! The kernel's own accounting of a cgroup: memory, CPU and block I/O.
//!
//! These are not sums over the cgroup's processes. The kernel charges a
//! cgroup for page cache its processes brought in, kernel memory allocated
//! on their behalf and I/O written back for them, including what processes
//! that have since exited left behind; so a container's memory here is
//! right where a sum of process RSS is not. They answer a different
//! question than the per-process sums and are exported under different
//! names.
//!
//! cgroup v2 and v1 expose the same facts under different names and units,
//! mapped here to one shape (bytes, nanoseconds):
//!
//! | fact | v2 | v1 |
//! |---|---|---|
//! | memory in use | `memory.current` | `memory.usage_in_bytes` |
//! | anonymous | `memory.stat` `anon` | `memory.stat` `total_rss` |
//! | page cache | `memory.stat` `file` | `memory.stat` `total_cache` |
//! | kernel | `memory.stat` `kernel` | `memory.kmem.usage_in_bytes` |
//! | OOM kills | `memory.events` `oom_kill` | `memory.oom_control` `oom_kill` |
//! | CPU time | `cpu.stat` `usage_usec` | `cpuacct.usage` (ns) |
//! | throttling | `cpu.stat` `nr_periods`, `nr_throttled`, `throttled_usec` | `cpu.stat` `nr_periods`, `nr_throttled`, `throttled_time` (ns) |
//! | I/O per device | `io.stat` `rbytes`, `wbytes`, `rios`, `wios` | `blkio.throttle.io_service{_bytes,d}_recursive` |
//!
//! Everything counts the cgroup and its descendants, with one exception
//! the kernel keeps for compatibility: v1's `oom_kill` counts only kills
//! in the cgroup itself, while v2's counts kills anywhere below it. A v1
//! field the kernel does not provide (`kmem` files are gone from some
//! builds; `oom_kill` appeared in 4.13; v2's `kernel` is recent) is `None`.
//!
//! On a hybrid host a controller is enabled in one hierarchy only, so each
//! family is read from the hierarchy where its controller is: v2 when the
//! v2 files are there, v1 otherwise. v2's `cpu.stat` exists even without
//! the cpu controller (usage only, no throttling); it is used then only
//! when there is no v1 `cpuacct`.

use std::path::Path;

use super::hierarchy::CgroupDirs;

/// The most read of any one file; a longer one is not read at all.
/// `memory.stat` is about 2 KiB; `io.stat` grows by a line of about 90
/// bytes per device that saw I/O, so this holds some ten thousand.
pub const MAX_BYTES: usize = 1 << 20;

/// Which hierarchy a family was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Unified,
    V1,
}

/// Memory accounting, in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Memory {
    pub source: Source,
    /// All memory charged to the cgroup (anonymous, page cache, kernel).
    pub current: u64,
    pub anon: Option<u64>,
    pub file: Option<u64>,
    pub kernel: Option<u64>,
    /// Processes killed by the OOM killer for this cgroup's limit (see the
    /// module documentation for v1's narrower count).
    pub oom_kills: Option<u64>,
}

/// CPU accounting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    pub source: Source,
    /// CPU time used, in nanoseconds (v2 has microseconds: multiplied).
    pub usage_ns: u64,
    /// Enforcement periods with a quota set, periods throttled, and time
    /// throttled in nanoseconds. `None` without the cpu controller.
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_ns: Option<u64>,
}

/// Block I/O of one device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// Block I/O accounting, per device that saw I/O, sorted by device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Io {
    pub source: Source,
    pub devices: Vec<DeviceIo>,
}

/// One cgroup's accounting; a family is `None` when no hierarchy has its
/// controller for this cgroup (or the cgroup is gone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub memory: Option<Memory>,
    pub cpu: Option<Cpu>,
    pub io: Option<Io>,
}

/// Read the accounting of the cgroup at `dirs`, reusing `buf`.
pub fn read(dirs: &CgroupDirs, buf: &mut Vec<u8>) -> CgroupStats {
    let unified = dirs.unified.as_deref();
    let memory = unified
        .and_then(|d| memory_v2(d, buf))
        .or_else(|| memory_v1(dirs.memory.as_deref()?, buf));
    let cpu_v2 = unified.and_then(|d| cpu_v2(d, buf));
    let cpu = match cpu_v2 {
        Some(c) if c.periods.is_some() => Some(c),
        other => dirs
            .cpuacct
            .as_deref()
            .and_then(|d| cpu_v1(d, dirs.cpu.as_deref(), buf))
            .or(other),
    };
    let io = unified
        .and_then(|d| io_v2(d, buf))
        .or_else(|| io_v1(dirs.blkio.as_deref()?, buf));
    CgroupStats { memory, cpu, io }
}

/// v2 memory, if the memory controller is enabled for `dir`.
pub fn memory_v2(dir: &Path, buf: &mut Vec<u8>) -> Option<Memory> {
    let current = read_u64(&dir.join("memory.current"), buf)?;
    let stat = read_keyed(&dir.join("memory.stat"), buf, &["anon", "file", "kernel"]);
    let events = read_keyed(&dir.join("memory.events"), buf, &["oom_kill"]);
    Some(Memory {
        source: Source::Unified,
        current,
        anon: stat[0],
        file: stat[1],
        kernel: stat[2],
        oom_kills: events[0],
    })
}

/// v1 memory from the memory controller's directory.
pub fn memory_v1(dir: &Path, buf: &mut Vec<u8>) -> Option<Memory> {
    let current = read_u64(&dir.join("memory.usage_in_bytes"), buf)?;
    let stat = read_keyed(&dir.join("memory.stat"), buf, &["total_rss", "total_cache"]);
    let oom = read_keyed(&dir.join("memory.oom_control"), buf, &["oom_kill"]);
    Some(Memory {
        source: Source::V1,
        current,
        anon: stat[0],
        file: stat[1],
        kernel: read_u64(&dir.join("memory.kmem.usage_in_bytes"), buf),
        oom_kills: oom[0],
    })
}

/// v2 CPU; every v2 cgroup has `cpu.stat`, throttling only with the cpu
/// controller enabled.
pub fn cpu_v2(dir: &Path, buf: &mut Vec<u8>) -> Option<Cpu> {
    let keys = ["usage_usec", "nr_periods", "nr_throttled", "throttled_usec"];
    let s = read_keyed(&dir.join("cpu.stat"), buf, &keys);
    Some(Cpu {
        source: Source::Unified,
        usage_ns: s[0]?.saturating_mul(1000),
        periods: s[1],
        throttled_periods: s[2],
        throttled_ns: s[3].map(|us| us.saturating_mul(1000)),
    })
}

/// v1 CPU: usage from cpuacct, throttling from the cpu controller (the
/// same directory when they are co-mounted).
pub fn cpu_v1(cpuacct: &Path, cpu: Option<&Path>, buf: &mut Vec<u8>) -> Option<Cpu> {
    let usage_ns = read_u64(&cpuacct.join("cpuacct.usage"), buf)?;
    let keys = ["nr_periods", "nr_throttled", "throttled_time"];
    let s = match cpu {
        Some(dir) => read_keyed(&dir.join("cpu.stat"), buf, &keys),
        None => vec![None; keys.len()],
    };
    Some(Cpu {
        source: Source::V1,
        usage_ns,
        periods: s[0],
        throttled_periods: s[1],
        throttled_ns: s[2],
    })
}

/// v2 I/O, if the io controller is enabled for `dir`.
pub fn io_v2(dir: &Path, buf: &mut Vec<u8>) -> Option<Io> {
    let text = read_text(&dir.join("io.stat"), buf)?;
    Some(Io {
        source: Source::Unified,
        devices: parse_io_stat(text.as_bytes()),
    })
}

/// v1 I/O from the blkio controller's recursive throttle statistics, which
/// count every request issued (the CFQ-era `blkio.io_*` files are gone).
pub fn io_v1(dir: &Path, buf: &mut Vec<u8>) -> Option<Io> {
    let bytes = read_text(&dir.join("blkio.throttle.io_service_bytes_recursive"), buf)?;
    let ops = read_text(&dir.join("blkio.throttle.io_serviced_recursive"), buf);
    Some(Io {
        source: Source::V1,
        devices: parse_blkio(bytes.as_bytes(), ops.as_deref().unwrap_or("").as_bytes()),
    })
}

/// A file holding one number.
pub fn parse_u64(buf: &[u8]) -> Option<u64> {
    std::str::from_utf8(buf).ok()?.trim().parse().ok()
}

/// The values of `keys` in a flat-keyed file (`key value` lines), in the
/// order asked; a key absent or not a number is `None`.
pub fn parse_keyed(buf: &[u8], keys: &[&str]) -> Vec<Option<u64>> {
    let mut out = vec![None; keys.len()];
    let Ok(text) = std::str::from_utf8(buf) else {
        return out;
    };
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(k), Some(v), None) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let Some(i) = keys.iter().position(|&key| key == k) {
            out[i] = v.parse().ok();
        }
    }
    out
}

/// `major:minor`.
fn parse_device(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Entry for device `dev` in `devices`, created if new.
fn entry(devices: &mut Vec<DeviceIo>, (major, minor): (u32, u32)) -> &mut DeviceIo {
    let i = match devices
        .iter()
        .position(|d| (d.major, d.minor) == (major, minor))
    {
        Some(i) => i,
        None => {
            devices.push(DeviceIo {
                major,
                minor,
                ..DeviceIo::default()
            });
            devices.len() - 1
        }
    };
    &mut devices[i]
}

/// v2 `io.stat`: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N`,
/// possibly with more keys (`cost.*` with iocost); unknown keys are skipped.
pub fn parse_io_stat(buf: &[u8]) -> Vec<DeviceIo> {
    let mut devices = Vec::new();
    let Ok(text) = std::str::from_utf8(buf) else {
        return devices;
    };
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(dev) = f.next().and_then(parse_device) else {
            continue;
        };
        let d = entry(&mut devices, dev);
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let slot = match k {
                "rbytes" => &mut d.read_bytes,
                "wbytes" => &mut d.write_bytes,
                "rios" => &mut d.reads,
                "wios" => &mut d.writes,
                _ => continue,
            };
            *slot = v.parse().unwrap_or(*slot);
        }
    }
    devices.sort_by_key(|d| (d.major, d.minor));
    devices
}

/// v1 `blkio.throttle.io_service_bytes_recursive` and
/// `io_serviced_recursive`: `MAJ:MIN Read N` lines (also `Write`, `Sync`,
/// `Async`, `Discard`, `Total`) and a last `Total N`.
pub fn parse_blkio(bytes: &[u8], ops: &[u8]) -> Vec<DeviceIo> {
    let mut devices = Vec::new();
    for (buf, is_bytes) in [(bytes, true), (ops, false)] {
        let Ok(text) = std::str::from_utf8(buf) else {
            continue;
        };
        for line in text.lines() {
            let mut f = line.split_ascii_whitespace();
            let (Some(dev), Some(op), Some(v), None) = (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let (Some(dev), Ok(v)) = (parse_device(dev), v.parse::<u64>()) else {
                continue;
            };
            let d = entry(&mut devices, dev);
            match (op, is_bytes) {
                ("Read", true) => d.read_bytes = v,
                ("Write", true) => d.write_bytes = v,
                ("Read", false) => d.reads = v,
                ("Write", false) => d.writes = v,
                _ => {}
            }
        }
    }
    devices.sort_by_key(|d| (d.major, d.minor));
    devices
}

fn read_text(path: &Path, buf: &mut Vec<u8>) -> Option<String> {
    herakles_core::read_bytes(path, MAX_BYTES, buf).ok()?;
    String::from_utf8(buf.clone()).ok()
}

fn read_u64(path: &Path, buf: &mut Vec<u8>) -> Option<u64> {
    herakles_core::read_bytes(path, MAX_BYTES, buf).ok()?;
    parse_u64(buf)
}

fn read_keyed(path: &Path, buf: &mut Vec<u8>, keys: &[&str]) -> Vec<Option<u64>> {
    match herakles_core::read_bytes(path, MAX_BYTES, buf) {
        Ok(()) => parse_keyed(buf, keys),
        Err(_) => vec![None; keys.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;
    use std::path::PathBuf;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    /// A v2 cgroup with the memory, cpu and io controllers, as written by a
    /// 6.x kernel (trimmed of keys not read).
    fn v2_files(dir: &Path) {
        write(
            dir,
            &[
                ("memory.current", "127512576\n"),
                (
                    "memory.stat",
                    "anon 52199424\nfile 70410240\nkernel 4538368\nkernel_stack 311296\npagetables 1081344\nsock 0\nshmem 1486848\nfile_mapped 30543872\n",
                ),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 17\noom 3\noom_kill 2\noom_group_kill 0\n",
                ),
                (
                    "cpu.stat",
                    "usage_usec 8123456\nuser_usec 6000000\nsystem_usec 2123456\nnr_periods 1200\nnr_throttled 37\nthrottled_usec 912345\nnr_bursts 0\nburst_usec 0\n",
                ),
                (
                    "io.stat",
                    "254:0 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n8:16 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0 cost.vrate=100.00 cost.usage=5\n",
                ),
            ],
        );
    }

    /// The same cgroup under v1: memory, co-mounted cpu,cpuacct, blkio.
    fn v1_dirs(root: &Path) -> CgroupDirs {
        let memory = root.join("memory/c");
        let cpu = root.join("cpu,cpuacct/c");
        let blkio = root.join("blkio/c");
        write(
            &memory,
            &[
                ("memory.usage_in_bytes", "127512576\n"),
                (
                    "memory.stat",
                    "cache 1000\nrss 2000\nrss_huge 0\nshmem 0\ntotal_cache 70410240\ntotal_rss 52199424\ntotal_rss_huge 2097152\n",
                ),
                ("memory.kmem.usage_in_bytes", "4538368\n"),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            ],
        );
        write(
            &cpu,
            &[
                ("cpuacct.usage", "8123456789\n"),
                (
                    "cpu.stat",
                    "nr_periods 1200\nnr_throttled 37\nthrottled_time 912345678\nnr_bursts 0\nburst_time 0\n",
                ),
            ],
        );
        write(
            &blkio,
            &[
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "254:0 Read 1459200\n254:0 Write 314773504\n254:0 Sync 300000000\n254:0 Async 16232704\n254:0 Discard 0\n254:0 Total 316232704\n8:16 Read 4096\n8:16 Write 0\n8:16 Sync 4096\n8:16 Async 0\n8:16 Discard 0\n8:16 Total 4096\nTotal 316236800\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "254:0 Read 192\n254:0 Write 353\n254:0 Total 545\n8:16 Read 1\n8:16 Write 0\n8:16 Total 1\nTotal 546\n",
                ),
            ],
        );
        CgroupDirs {
            unified: None,
            memory: Some(memory),
            cpu: Some(cpu.clone()),
            cpuacct: Some(cpu),
            blkio: Some(blkio),
        }
    }

    fn expected_devices() -> Vec<DeviceIo> {
        vec![
            DeviceIo {
                major: 8,
                minor: 16,
                read_bytes: 4096,
                write_bytes: 0,
                reads: 1,
                writes: 0,
            },
            DeviceIo {
                major: 254,
                minor: 0,
                read_bytes: 1459200,
                write_bytes: 314773504,
                reads: 192,
                writes: 353,
            },
        ]
    }

    fn expected(source: Source) -> CgroupStats {
        CgroupStats {
            memory: Some(Memory {
                source,
                current: 127512576,
                anon: Some(52199424),
                file: Some(70410240),
                kernel: Some(4538368),
                oom_kills: Some(2),
            }),
            cpu: Some(Cpu {
                source,
                usage_ns: if source == Source::V1 {
                    8123456789
                } else {
                    8123456000
                },
                periods: Some(1200),
                throttled_periods: Some(37),
                throttled_ns: Some(if source == Source::V1 {
                    912345678
                } else {
                    912345000
                }),
            }),
            io: Some(Io {
                source,
                devices: expected_devices(),
            }),
        }
    }

    #[test]
    fn unified_cgroup_exact() {
        let t = tempfile::tempdir().unwrap();
        v2_files(t.path());
        let dirs = CgroupDirs {
            unified: Some(t.path().to_path_buf()),
            ..CgroupDirs::default()
        };
        assert_eq!(read(&dirs, &mut Vec::new()), expected(Source::Unified));
    }

    #[test]
    fn v1_cgroup_exact_and_mapped_to_the_same_shape() {
        let t = tempfile::tempdir().unwrap();
        let dirs = v1_dirs(t.path());
        assert_eq!(read(&dirs, &mut Vec::new()), expected(Source::V1));
    }

    /// This machine's shape: v2 mounted beside v1 with no controllers, so
    /// its `cpu.stat` has usage but no throttling and no memory files.
    #[test]
    fn hybrid_reads_each_family_where_its_controller_is() {
        let t = tempfile::tempdir().unwrap();
        let mut dirs = v1_dirs(t.path());
        let unified = t.path().join("unified/c");
        write(
            &unified,
            &[(
                "cpu.stat",
                "usage_usec 1\nuser_usec 1\nsystem_usec 0\nnice_usec 0\n",
            )],
        );
        dirs.unified = Some(unified.clone());
        assert_eq!(read(&dirs, &mut Vec::new()), expected(Source::V1));

        // Without v1 cpuacct, v2's usage is better than nothing.
        dirs.cpuacct = None;
        let cpu = read(&dirs, &mut Vec::new()).cpu.unwrap();
        assert_eq!(
            cpu,
            Cpu {
                source: Source::Unified,
                usage_ns: 1000,
                periods: None,
                throttled_periods: None,
                throttled_ns: None,
            }
        );
    }

    #[test]
    fn missing_files_and_fields() {
        let t = tempfile::tempdir().unwrap();
        // A gone cgroup: nothing.
        let gone = CgroupDirs {
            unified: Some(t.path().join("gone")),
            memory: Some(t.path().join("gone")),
            cpu: None,
            cpuacct: Some(t.path().join("gone")),
            blkio: Some(t.path().join("gone")),
        };
        assert_eq!(read(&gone, &mut Vec::new()), CgroupStats::default());

        // An old v1 kernel: no oom_kill line, no kmem file, no cpu dir.
        let memory = t.path().join("memory");
        write(
            &memory,
            &[
                ("memory.usage_in_bytes", "4096\n"),
                ("memory.stat", "total_rss 4096\n"),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n"),
                ("cpuacct.usage", "5\n"),
            ],
        );
        let dirs = CgroupDirs {
            memory: Some(memory.clone()),
            cpuacct: Some(memory),
            ..CgroupDirs::default()
        };
        let s = read(&dirs, &mut Vec::new());
        let m = s.memory.unwrap();
        assert_eq!(
            (m.current, m.anon, m.file, m.kernel, m.oom_kills),
            (4096, Some(4096), None, None, None)
        );
        let c = s.cpu.unwrap();
        assert_eq!((c.usage_ns, c.periods), (5, None));
        assert_eq!(s.io, None);
    }

    #[test]
    fn unparsable_values_are_none_not_zero() {
        assert_eq!(parse_u64(b"max\n"), None);
        assert_eq!(parse_u64(b" 42 \n"), Some(42));
        assert_eq!(
            parse_keyed(
                b"anon x\nfile 5\nkernel 1 2\nanon\n",
                &["anon", "file", "kernel"]
            ),
            [None, Some(5), None]
        );
        assert_eq!(parse_keyed(b"anon \xff\n", &["anon"]), [None]);
    }

    #[test]
    fn io_stat_odd_lines() {
        let d = parse_io_stat(b"bad line\n8:0\n8:0 rbytes=x wbytes=7 junk\n1:x rbytes=1\n");
        assert_eq!(
            d,
            [DeviceIo {
                major: 8,
                minor: 0,
                write_bytes: 7,
                ..DeviceIo::default()
            }]
        );
        assert_eq!(parse_blkio(b"Total 0\n", b""), []);
        assert_eq!(parse_blkio(b"\xff", b"8:0 Read 3\n")[0].reads, 3);
    }

    #[test]
    fn files_past_the_limit_are_not_read() {
        let t = tempfile::tempdir().unwrap();
        let line = "8:0 rbytes=1 wbytes=2 rios=3 wios=4\n";
        write(
            t.path(),
            &[("io.stat", &line.repeat(MAX_BYTES / line.len()))],
        );
        let io = io_v2(t.path(), &mut Vec::new()).unwrap();
        assert_eq!(io.devices.len(), 1);
        assert_eq!(io.devices[0].write_bytes, 2);
        write(
            t.path(),
            &[("io.stat", &line.repeat(MAX_BYTES / line.len() + 1))],
        );
        assert_eq!(io_v2(t.path(), &mut Vec::new()), None);
        // A symbolic link where the kernel has a file is refused.
        std::os::unix::fs::symlink("/dev/zero", t.path().join("memory.current")).unwrap();
        assert_eq!(memory_v2(t.path(), &mut Vec::new()), None);
    }

    #[test]
    fn this_hosts_root_cgroups_read_without_error() {
        let h = super::super::hierarchy::Hierarchy::detect(Path::new("/sys"));
        let root = |p: Option<&Path>| p.map(PathBuf::from);
        let dirs = CgroupDirs {
            unified: h.unified.clone(),
            memory: root(h.v1_root("memory")),
            cpu: root(h.v1_root("cpu")),
            cpuacct: root(h.v1_root("cpuacct")),
            blkio: root(h.v1_root("blkio")),
        };
        // Whatever the host has, reading never panics, and a CPU figure is
        // found wherever a hierarchy is mounted.
        let s = read(&dirs, &mut Vec::new());
        if h.unified.is_some() || h.v1_root("cpuacct").is_some() {
            assert!(s.cpu.is_some(), "{h:?}");
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_u64(&bytes);
            let _ = parse_keyed(&bytes, &["anon", "file"]);
            let _ = parse_io_stat(&bytes);
            let _ = parse_blkio(&bytes, &bytes);
        }

        #[test]
        fn io_lines_never_panic(lines in proptest::collection::vec("[0-9]{0,4}:[0-9]{0,4}( [a-z]{1,6}=[0-9a-z]{0,22}){0,6}", 0..10)) {
            let _ = parse_io_stat(lines.join("\n").as_bytes());
        }
    }
}
