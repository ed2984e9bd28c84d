//! Size, free space and inodes of mounted filesystems: the mount table from
//! `/proc/1/mountinfo`, the numbers from `statvfs(3)` on each mount point.
//!
//! The mount table is PID 1's rather than our own because in a container with
//! the host's `/proc` at `--path.procfs`, PID 1 is the host's init and its
//! mount namespace is the host's; our own table would list the container's
//! overlay root and bind mounts. Mount points are then reached under
//! `--path.rootfs`, where the host's `/` is expected to be mounted.
//!
//! `statvfs` on a dead NFS server (or a wedged FUSE daemon) blocks in the
//! kernel, uninterruptibly, for as long as the server is gone. One such mount
//! must not hang the scrape, so every call runs on a helper thread and the
//! collector waits for it only `statfs_timeout_ms`. A mount whose call timed
//! out is reported with `device_error 1`; while that call is still stuck the
//! mount is skipped instead of getting another thread, so a dead server costs
//! one blocked thread in total, not one per scrape. When the stuck call
//! returns, the next scrape measures the mount again as usual.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use herakles_core::{
    inventory, read_bytes, BuildCollector, BuildContext, Collector, Desc, Error, MetricSink,
    Registration, Result, ScrapeContext, READ_LIMIT,
};
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const SIZE: Desc = Desc::gauge(
    "herakles_system_filesystem_size_bytes",
    "Filesystem size in bytes (f_blocks * f_frsize).",
);
const FREE: Desc = Desc::gauge(
    "herakles_system_filesystem_free_bytes",
    "Free space in bytes, including blocks reserved for root (f_bfree * f_frsize).",
);
const AVAIL: Desc = Desc::gauge(
    "herakles_system_filesystem_avail_bytes",
    "Space available to unprivileged users in bytes (f_bavail * f_frsize).",
);
const FILES: Desc = Desc::gauge(
    "herakles_system_filesystem_files",
    "Total file nodes (inodes) of the filesystem.",
);
const FILES_FREE: Desc = Desc::gauge(
    "herakles_system_filesystem_files_free",
    "Free file nodes (inodes) of the filesystem.",
);
const READONLY: Desc = Desc::gauge(
    "herakles_system_filesystem_readonly",
    "1 when the filesystem is mounted read-only, else 0.",
);
const DEVICE_ERROR: Desc = Desc::gauge(
    "herakles_system_filesystem_device_error",
    "1 when statfs on the mount point failed, timed out or is still stuck from an earlier scrape, else 0.",
);

/// The node_exporter default: kernel trees, systemd credential mounts and the
/// per-container mounts of Docker and Podman, which would otherwise add a
/// series set per container.
const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";

/// Pseudo filesystems, whose sizes are zero or meaningless, plus read-only
/// images (`iso9660`, `squashfs`, `erofs`: always full by construction) and
/// `overlay`, which on a container host is one mount per running container,
/// each reporting the numbers of the filesystem underneath. `tmpfs` is kept:
/// `/run` and `/dev/shm` filling up are real outages.
const DEFAULT_FS_TYPES_EXCLUDE: &str = concat!(
    "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|erofs|fusectl|",
    "hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|",
    "selinuxfs|squashfs|sysfs|tracefs)$"
);

/// At most this many statfs calls run at once. A handful is enough to hide
/// one slow mount behind the fast ones without starting a thread burst on a
/// host with hundreds of mounts.
const MAX_IN_FLIGHT: usize = 8;

/// Config section `collectors.filesystem`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Mount points matching this regex (searched anywhere in the path, so
    /// anchor it) are not reported. The default skips kernel trees and
    /// per-container mounts.
    #[schemars(extend("format" = "regex"))]
    pub mount_points_exclude: String,
    /// Filesystem types matching this regex are not reported. The default
    /// skips pseudo filesystems, read-only images and `overlay` (container
    /// roots); `tmpfs` is reported. Remove `overlay` when the host's own root
    /// is an overlay.
    #[schemars(extend("format" = "regex"))]
    pub fs_types_exclude: String,
    /// How long one statfs call may take, in milliseconds, before its mount
    /// is reported with `device_error 1`. The call keeps running in the
    /// background and the mount is skipped until it returns.
    #[schemars(range(min = 1, max = 60000))]
    pub statfs_timeout_ms: u64,
}

impl Default for FilesystemConfig {
    fn default() -> FilesystemConfig {
        FilesystemConfig {
            mount_points_exclude: DEFAULT_MOUNT_POINTS_EXCLUDE.to_string(),
            fs_types_exclude: DEFAULT_FS_TYPES_EXCLUDE.to_string(),
            statfs_timeout_ms: 1000,
        }
    }
}

/// What one statfs call reports, already scaled to bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FsStat {
    size: u64,
    free: u64,
    avail: u64,
    files: u64,
    files_free: u64,
    readonly: bool,
}

/// The statfs implementation; a plain function pointer so tests can swap in
/// one that fails or blocks.
type StatFn = fn(&Path) -> io::Result<FsStat>;

/// See the module documentation.
pub struct Filesystem {
    mount_points_exclude: Regex,
    fs_types_exclude: Regex,
    timeout: Duration,
    statfs: StatFn,
    /// Paths with a statfs call that has not returned yet. A path is added
    /// before its thread starts and removed by that thread when the call
    /// returns, so membership at the start of a scrape means "stuck since an
    /// earlier scrape" without any race against a late answer.
    in_flight: Arc<Mutex<HashSet<PathBuf>>>,
}

/// One line of mountinfo, with escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// Raw bytes: a mount point need not be UTF-8, and statfs must get the
    /// exact path even when the label shows it lossily.
    mount_point: Vec<u8>,
    fstype: String,
    device: String,
    readonly: bool,
}

/// Why a mount has (or lacks) numbers this scrape.
enum Outcome {
    Stat(FsStat),
    /// The call failed, timed out now, or is still stuck from before.
    Error,
}

impl Collector for Filesystem {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        // Bytes, not text: a mount point need not be UTF-8, and statfs
        // needs it exact.
        let mut text = Vec::new();
        if read_bytes(&ctx.paths().proc("1/mountinfo"), READ_LIMIT, &mut text).is_err() {
            let path = ctx.paths().proc("self/mountinfo");
            read_bytes(&path, READ_LIMIT, &mut text).map_err(|e| Error::io(&path, e))?;
        }
        let mounts: Vec<Mount> = parse_mountinfo(&text, out)
            .into_iter()
            .filter(|m| !self.excluded(m))
            .collect();
        let targets: Vec<PathBuf> = mounts
            .iter()
            .map(|m| ctx.paths().root(OsString::from_vec(m.mount_point.clone())))
            .collect();
        let outcomes = self.stat_all(&targets);
        for (m, outcome) in mounts.iter().zip(outcomes) {
            let mount_point = String::from_utf8_lossy(&m.mount_point);
            let labels = [
                ("device", m.device.as_str()),
                ("mountpoint", mount_point.as_ref()),
                ("fstype", m.fstype.as_str()),
            ];
            let (error, readonly) = match outcome {
                Outcome::Stat(s) => {
                    out.family(&SIZE).sample(&labels, s.size as f64);
                    out.family(&FREE).sample(&labels, s.free as f64);
                    out.family(&AVAIL).sample(&labels, s.avail as f64);
                    out.family(&FILES).sample(&labels, s.files as f64);
                    out.family(&FILES_FREE).sample(&labels, s.files_free as f64);
                    (0.0, m.readonly || s.readonly)
                }
                Outcome::Error => (1.0, m.readonly),
            };
            out.family(&DEVICE_ERROR).sample(&labels, error);
            out.family(&READONLY)
                .sample(&labels, if readonly { 1.0 } else { 0.0 });
        }
        Ok(())
    }
}

impl Filesystem {
    fn excluded(&self, m: &Mount) -> bool {
        self.fs_types_exclude.is_match(&m.fstype)
            || self
                .mount_points_exclude
                .is_match(&String::from_utf8_lossy(&m.mount_point))
    }

    /// statfs every target on helper threads, at most [`MAX_IN_FLIGHT`] at
    /// once, each given `self.timeout` from its start. Returns one outcome per
    /// target, in order.
    fn stat_all(&self, targets: &[PathBuf]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = targets.iter().map(|_| None).collect();
        let (tx, rx) = mpsc::channel::<(usize, io::Result<FsStat>)>();
        // (index, deadline) of calls this scrape still waits for.
        let mut waiting: Vec<(usize, Instant)> = Vec::with_capacity(MAX_IN_FLIGHT);
        let mut next = 0;
        loop {
            while waiting.len() < MAX_IN_FLIGHT && next < targets.len() {
                let idx = next;
                next += 1;
                if self.start(idx, &targets[idx], &tx) {
                    waiting.push((idx, Instant::now() + self.timeout));
                } else {
                    outcomes[idx] = Some(Outcome::Error);
                }
            }
            let Some(&(_, first_deadline)) = waiting.iter().min_by_key(|(_, d)| *d) else {
                break;
            };
            let wait = first_deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok((idx, result)) => {
                    // A late answer from a call already given up on this
                    // scrape is ignored; its thread has cleared the stuck
                    // mark, so the next scrape measures the mount again.
                    if let Some(pos) = waiting.iter().position(|(i, _)| *i == idx) {
                        waiting.swap_remove(pos);
                        outcomes[idx] = Some(match result {
                            Ok(stat) => Outcome::Stat(stat),
                            Err(e) => {
                                tracing::debug!(
                                    path = %targets[idx].display(),
                                    error = %e,
                                    "statfs failed"
                                );
                                Outcome::Error
                            }
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    waiting.retain(|&(idx, deadline)| {
                        if deadline > now {
                            return true;
                        }
                        tracing::warn!(
                            path = %targets[idx].display(),
                            timeout_ms = self.timeout.as_millis() as u64,
                            "statfs timed out; skipping this mount until the call returns"
                        );
                        outcomes[idx] = Some(Outcome::Error);
                        false
                    });
                }
                // Every sender is alive in `tx` until this function returns.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Error))
            .collect()
    }

    /// Start a statfs of `path` on its own thread, reporting to `tx`. False
    /// when the path is still stuck from an earlier scrape or no thread could
    /// be started.
    fn start(
        &self,
        idx: usize,
        path: &Path,
        tx: &mpsc::Sender<(usize, io::Result<FsStat>)>,
    ) -> bool {
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if !in_flight.insert(path.to_path_buf()) {
                tracing::debug!(path = %path.display(), "statfs still stuck; skipping mount");
                return false;
            }
        }
        let statfs = self.statfs;
        let in_flight = Arc::clone(&self.in_flight);
        let owned = path.to_path_buf();
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("herakles-statfs".into())
            // statvfs needs next to no stack; many of these may sit blocked.
            .stack_size(64 * 1024)
            .spawn(move || {
                let result = statfs(&owned);
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&owned);
                // The collector may have stopped listening; that is fine.
                let _ = tx.send((idx, result));
            });
        match spawned {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start statfs thread");
                self.in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(path);
                false
            }
        }
    }
}

/// The real statfs: `statvfs(3)`, whose block counts are in `f_frsize` units.
fn statvfs(path: &Path) -> io::Result<FsStat> {
    let s = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let unit = s.fragment_size() as u64;
    Ok(FsStat {
        size: (s.blocks() as u64).saturating_mul(unit),
        free: (s.blocks_free() as u64).saturating_mul(unit),
        avail: (s.blocks_available() as u64).saturating_mul(unit),
        files: s.files() as u64,
        files_free: s.files_free() as u64,
        readonly: s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
    })
}

/// Parse mountinfo (see `proc_pid_mountinfo(5)`):
///
/// ```text
/// 36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
/// ```
///
/// Mounts stacked on one mount point collapse to the last one listed, the one
/// on top: statfs of the path reaches only that one, so reporting the lower
/// mounts would repeat the top one's numbers under the wrong device. Lines
/// that do not parse are skipped and counted.
fn parse_mountinfo(text: &[u8], out: &mut MetricSink) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    let mut by_point: HashMap<Vec<u8>, usize> = HashMap::new();
    for line in text
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
    {
        let Some(mount) = parse_mount_line(line) else {
            out.parse_error();
            continue;
        };
        match by_point.get(&mount.mount_point) {
            Some(&i) => mounts[i] = mount,
            None => {
                by_point.insert(mount.mount_point.clone(), mounts.len());
                mounts.push(mount);
            }
        }
    }
    mounts
}

fn parse_mount_line(line: &[u8]) -> Option<Mount> {
    let mut fields = line.split(|&b| b == b' ');
    // Mount ID, parent ID, major:minor, root.
    fields.nth(3)?;
    let mount_point = unescape(fields.next()?);
    let options = fields.next()?;
    // Optional fields (`shared:1`, `master:2`...) up to the lone "-".
    fields.by_ref().find(|f| *f == b"-")?;
    let fstype = fields.next()?;
    let source = fields.next()?;
    let super_options = fields.next().unwrap_or(b"");
    if mount_point.is_empty() || fstype.is_empty() {
        return None;
    }
    let ro = |opts: &[u8]| opts.split(|&b| b == b',').any(|o| o == b"ro");
    Some(Mount {
        mount_point,
        fstype: String::from_utf8_lossy(&unescape(fstype)).into_owned(),
        device: String::from_utf8_lossy(&unescape(source)).into_owned(),
        readonly: ro(options) || ro(super_options),
    })
}

/// Undo the kernel's octal escaping of space, tab, newline and backslash
/// (`\040`, `\011`, `\012`, `\134`) in mountinfo fields. A backslash not
/// followed by three octal digits is kept as it is.
fn unescape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(code) = bytes.get(i + 1..i + 4).and_then(octal_byte) {
                out.push(code);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Three octal digits as one byte; `None` for anything else, including
/// values above 0o377.
fn octal_byte(digits: &[u8]) -> Option<u8> {
    let mut v: u16 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        v = v * 8 + u16::from(d - b'0');
    }
    u8::try_from(v).ok()
}

fn compile(key: &str, pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| Error::msg(format!("collectors.filesystem.{key}: {e}")))
}

impl BuildCollector for Filesystem {
    type Config = FilesystemConfig;
    fn build(config: FilesystemConfig, _: &BuildContext) -> Result<Self> {
        Ok(Filesystem {
            mount_points_exclude: compile("mount_points_exclude", &config.mount_points_exclude)?,
            fs_types_exclude: compile("fs_types_exclude", &config.fs_types_exclude)?,
            timeout: Duration::from_millis(config.statfs_timeout_ms),
            statfs: statvfs,
            in_flight: Arc::default(),
        })
    }
}

inventory::submit! {
    Registration::new::<Filesystem>(
        "filesystem",
        "Size, free space and inodes per mounted filesystem (statfs on /proc/1/mountinfo)",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::example_config;
    use herakles_core::testing::{collect_with, Collected};
    use herakles_core::Paths;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fixture(name: &str) -> Paths {
        Paths {
            procfs: format!("{}/tests/fixtures/{name}/proc", env!("CARGO_MANIFEST_DIR")).into(),
            // statfs never sees a real path in fixture tests; a root that does
            // not exist makes sure of it.
            rootfs: "/nonexistent-herakles-root".into(),
            ..Paths::default()
        }
    }

    fn build(config: FilesystemConfig, statfs: StatFn) -> Filesystem {
        let ctx = BuildContext::new(Paths::default(), Arc::new(()));
        let mut c = Filesystem::build(config, &ctx).unwrap();
        c.statfs = statfs;
        c
    }

    /// The value of `name` for the mount at `mountpoint`, whatever its other
    /// labels.
    fn at(c: &Collected, name: &str, mountpoint: &str) -> Option<f64> {
        c.samples
            .iter()
            .find(|(n, l, _)| {
                n == name && l.iter().any(|(k, v)| k == "mountpoint" && v == mountpoint)
            })
            .map(|(_, _, v)| *v)
    }

    fn mountpoints(c: &Collected) -> Vec<String> {
        let mut v: Vec<String> = c
            .samples
            .iter()
            .filter(|(n, _, _)| n == "herakles_system_filesystem_device_error")
            .filter_map(|(_, l, _)| {
                l.iter()
                    .find(|(k, _)| k == "mountpoint")
                    .map(|(_, v)| v.clone())
            })
            .collect();
        v.sort();
        v
    }

    /// A fake statfs with numbers derived from the last path component's
    /// length, so each mount gets different, predictable values; a path
    /// ending in "broken" fails.
    fn fake_statfs(path: &Path) -> io::Result<FsStat> {
        if path.ends_with("broken") {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        let n = path.file_name().map_or(1, |f| f.len() as u64);
        Ok(FsStat {
            size: n * 4096 * 1000,
            free: n * 4096 * 500,
            avail: n * 4096 * 400,
            files: n * 100,
            files_free: n * 60,
            readonly: false,
        })
    }

    #[test]
    fn fixture_mounts_escapes_duplicates_and_exclusions() {
        let fs = build(FilesystemConfig::default(), fake_statfs);
        let c = collect_with(&fs, fixture("filesystem")).unwrap();
        assert_eq!(
            mountpoints(&c),
            vec![
                "/",
                "/data/broken",
                "/mnt/back\\slash",
                "/mnt/my disk",
                "/mnt/tab\there",
                "/mnt/two\nlines",
                "/run",
                "/srv/stacked",
            ]
        );
        let root = [
            ("device", "/dev/sda1"),
            ("mountpoint", "/"),
            ("fstype", "ext4"),
        ];
        // "/" is statted at the fake root itself, whose name is 25 bytes long.
        let n = "nonexistent-herakles-root".len() as f64;
        assert_eq!(
            c.value("herakles_system_filesystem_size_bytes", &root),
            Some(n * 4096.0 * 1000.0)
        );
        assert_eq!(
            c.value("herakles_system_filesystem_free_bytes", &root),
            Some(n * 4096.0 * 500.0)
        );
        assert_eq!(
            c.value("herakles_system_filesystem_avail_bytes", &root),
            Some(n * 4096.0 * 400.0)
        );
        assert_eq!(
            c.value("herakles_system_filesystem_files", &root),
            Some(n * 100.0)
        );
        assert_eq!(
            c.value("herakles_system_filesystem_files_free", &root),
            Some(n * 60.0)
        );
        assert_eq!(
            c.value("herakles_system_filesystem_device_error", &root),
            Some(0.0)
        );
        assert_eq!(
            c.value("herakles_system_filesystem_readonly", &root),
            Some(0.0)
        );

        let disk = [
            ("device", "/dev/sdb 1"),
            ("mountpoint", "/mnt/my disk"),
            ("fstype", "xfs"),
        ];
        assert_eq!(
            c.value("herakles_system_filesystem_size_bytes", &disk),
            Some(7.0 * 4096.0 * 1000.0)
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_files", "/mnt/tab\there"),
            Some(800.0)
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_files", "/mnt/two\nlines"),
            Some(900.0)
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_files", "/mnt/back\\slash"),
            Some(1000.0)
        );

        // Mounted read-only per mount options and per superblock options.
        assert_eq!(
            at(&c, "herakles_system_filesystem_readonly", "/mnt/my disk"),
            Some(1.0)
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_readonly", "/run"),
            Some(1.0)
        );

        // The last of the stacked mounts wins.
        let stacked = [
            ("device", "/dev/sdc2"),
            ("mountpoint", "/srv/stacked"),
            ("fstype", "btrfs"),
        ];
        assert_eq!(
            c.value("herakles_system_filesystem_device_error", &stacked),
            Some(0.0)
        );
        assert_eq!(c.count("herakles_system_filesystem_size_bytes"), 7);

        // A failing statfs: error series and readonly only, no numbers.
        assert_eq!(
            at(
                &c,
                "herakles_system_filesystem_device_error",
                "/data/broken"
            ),
            Some(1.0)
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_readonly", "/data/broken"),
            Some(0.0)
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_size_bytes", "/data/broken"),
            None
        );

        // Two garbage lines.
        assert_eq!(c.parse_errors, 2);
    }

    #[test]
    fn unescape_decodes_octal_and_keeps_stray_backslashes() {
        assert_eq!(unescape(br"a\040b\011c\012d\134e"), b"a b\tc\nd\\e");
        assert_eq!(unescape(br"\\x\04"), b"\\\\x\\04");
        assert_eq!(unescape(br"\777"), b"\\777");
        assert_eq!(unescape(br"\303\251"), "é".as_bytes());
    }

    #[test]
    fn empty_excludes_report_everything_and_bad_regex_names_key() {
        let config = FilesystemConfig {
            mount_points_exclude: "^$".into(),
            fs_types_exclude: "^$".into(),
            ..FilesystemConfig::default()
        };
        let c = collect_with(&build(config, fake_statfs), fixture("filesystem")).unwrap();
        assert!(mountpoints(&c).contains(&"/proc".to_string()));
        assert!(mountpoints(&c).contains(&"/var/lib/docker/overlay2/abc/merged".to_string()));

        let ctx = BuildContext::new(Paths::default(), Arc::new(()));
        let bad = FilesystemConfig {
            fs_types_exclude: "(".into(),
            ..FilesystemConfig::default()
        };
        let err = Filesystem::build(bad, &ctx).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("collectors.filesystem.fs_types_exclude: "),
            "{err}"
        );
    }

    #[test]
    fn falls_back_to_self_mountinfo() {
        let c = collect_with(
            &build(FilesystemConfig::default(), fake_statfs),
            fixture("filesystem-self"),
        )
        .unwrap();
        assert_eq!(mountpoints(&c), vec!["/"]);
    }

    static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);

    /// The first call on the "nfs" mount blocks for 2 s, like statfs on an
    /// NFS server that went away and came back; later calls answer at once.
    fn hanging_statfs(path: &Path) -> io::Result<FsStat> {
        if path.ends_with("nfs") && SLOW_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_secs(2));
        }
        fake_statfs(path)
    }

    #[test]
    fn hung_statfs_times_out_is_not_repeated_and_recovers() {
        let config = FilesystemConfig {
            statfs_timeout_ms: 500,
            ..FilesystemConfig::default()
        };
        let fs = build(config, hanging_statfs);
        let paths = fixture("filesystem-hung");
        let start = Instant::now();

        let c = collect_with(&fs, paths.clone()).unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_device_error", "/mnt/nfs"),
            Some(1.0)
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_size_bytes", "/mnt/nfs"),
            None
        );
        // The healthy mount is unaffected.
        assert_eq!(
            at(&c, "herakles_system_filesystem_device_error", "/data"),
            Some(0.0)
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_files", "/data"),
            Some(400.0)
        );
        assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 1);

        // While the first call is stuck, the mount is skipped at once: no
        // second thread, no second wait.
        let again = Instant::now();
        let c = collect_with(&fs, paths.clone()).unwrap();
        assert!(
            again.elapsed() < Duration::from_millis(500),
            "{:?}",
            again.elapsed()
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_device_error", "/mnt/nfs"),
            Some(1.0)
        );
        assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 1);

        // Once the call has returned, the mount is measured again.
        let mut c = c;
        while start.elapsed() < Duration::from_secs(5) {
            c = collect_with(&fs, paths.clone()).unwrap();
            if at(&c, "herakles_system_filesystem_device_error", "/mnt/nfs") == Some(0.0) {
                break;
            }
            assert_eq!(
                SLOW_CALLS.load(Ordering::SeqCst),
                1,
                "a stuck mount got a second call"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert_eq!(
            at(&c, "herakles_system_filesystem_device_error", "/mnt/nfs"),
            Some(0.0)
        );
        assert_eq!(
            at(&c, "herakles_system_filesystem_files", "/mnt/nfs"),
            Some(300.0)
        );
        assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), 2);
    }

    /// Parse `/proc/1/mounts` (an independent rendering of the mount table)
    /// into mount point -> (device, fstype, read-only), last mount winning.
    fn live_mounts() -> HashMap<String, (String, String, bool)> {
        let text = std::fs::read_to_string("/proc/1/mounts").unwrap();
        let mut map = HashMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let dec = |s: &str| String::from_utf8_lossy(&unescape(s.as_bytes())).into_owned();
            let ro = f[3].split(',').any(|o| o == "ro");
            map.insert(dec(f[1]), (dec(f[0]), dec(f[2]), ro));
        }
        map
    }

    #[test]
    fn live_mount_table_matches_proc_mounts() {
        let config = FilesystemConfig::default();
        let mp = Regex::new(&config.mount_points_exclude).unwrap();
        let ft = Regex::new(&config.fs_types_exclude).unwrap();
        let c = collect_with(&build(config, statvfs), Paths::default()).unwrap();
        let mut expected: Vec<String> = live_mounts()
            .into_iter()
            .filter(|(point, (_, fstype, _))| !mp.is_match(point) && !ft.is_match(fstype))
            .map(|(point, (device, fstype, ro))| {
                let labels = [
                    ("device", device.as_str()),
                    ("mountpoint", point.as_str()),
                    ("fstype", fstype.as_str()),
                ];
                assert!(
                    c.value("herakles_system_filesystem_device_error", &labels)
                        .is_some(),
                    "{labels:?} missing"
                );
                if ro {
                    assert_eq!(
                        c.value("herakles_system_filesystem_readonly", &labels),
                        Some(1.0),
                        "{point}"
                    );
                }
                point
            })
            .collect();
        expected.sort();
        assert!(expected.iter().any(|p| p == "/"), "{expected:?}");
        assert_eq!(mountpoints(&c), expected);
    }

    #[test]
    fn live_root_matches_statvfs() {
        let c = collect_with(
            &build(FilesystemConfig::default(), statvfs),
            Paths::default(),
        )
        .unwrap();
        let Some((device, fstype, _)) = live_mounts().get("/").cloned() else {
            panic!("no / in /proc/1/mounts");
        };
        let labels = [
            ("device", device.as_str()),
            ("mountpoint", "/"),
            ("fstype", fstype.as_str()),
        ];
        let get = |name: &str| {
            c.value(name, &labels)
                .unwrap_or_else(|| panic!("{name} missing for / ({device}, {fstype})"))
        };
        let s = nix::sys::statvfs::statvfs("/").unwrap();
        let frsize = s.fragment_size() as f64;
        assert_eq!(get("herakles_system_filesystem_device_error"), 0.0);
        assert_eq!(
            get("herakles_system_filesystem_size_bytes"),
            s.blocks() as f64 * frsize
        );
        assert_eq!(get("herakles_system_filesystem_files"), s.files() as f64);
        // Free space and inodes move on a live filesystem between the two
        // calls; 64 MiB and 10 000 inodes of drift is far more than a test
        // run causes and far less than any unit or field mix-up.
        let close = |ours: f64, theirs: f64, slack: f64, what: &str| {
            assert!((ours - theirs).abs() <= slack, "{what}: {ours} vs {theirs}");
        };
        close(
            get("herakles_system_filesystem_avail_bytes"),
            s.blocks_available() as f64 * frsize,
            64.0 * 1048576.0,
            "avail",
        );
        close(
            get("herakles_system_filesystem_free_bytes"),
            s.blocks_free() as f64 * frsize,
            64.0 * 1048576.0,
            "free",
        );
        close(
            get("herakles_system_filesystem_files_free"),
            s.files_free() as f64,
            10_000.0,
            "files_free",
        );
        let ro = s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
        assert_eq!(
            get("herakles_system_filesystem_readonly"),
            if ro { 1.0 } else { 0.0 }
        );
    }

    #[test]
    fn example_config_loads() {
        example_config::<FilesystemConfig>("filesystem");
    }

    /// Escape a mount point as the kernel does in mountinfo.
    fn escape(path: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in path {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
                out.extend_from_slice(format!("\\{b:03o}").as_bytes());
            } else {
                out.push(b);
            }
        }
        out
    }

    proptest! {
        /// Any bytes: no panic, never more mounts than lines.
        #[test]
        fn mountinfo_parser_takes_anything(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let mut out = MetricSink::new();
            let mounts = parse_mountinfo(&bytes, &mut out);
            let lines = bytes.split(|&b| b == b'\n').count();
            prop_assert!(mounts.len() + out.parse_errors() as usize <= lines);
        }

        /// A mount point of any bytes (not UTF-8, spaces, backslashes,
        /// newlines) comes back exactly as statfs needs it.
        #[test]
        fn mount_points_round_trip(
            path in prop::collection::vec(any::<u8>(), 1..40),
            optional in prop::collection::vec("[a-z]{1,8}:[0-9]{1,3}", 0..3),
            ro in any::<bool>(),
        ) {
            let mut line = b"36 35 98:0 / /".to_vec();
            line.extend(escape(&path));
            line.extend_from_slice(if ro { b" ro,noatime" } else { b" rw,noatime" });
            for o in &optional {
                line.push(b' ');
                line.extend_from_slice(o.as_bytes());
            }
            line.extend_from_slice(b" - ext4 /dev/sda1 rw\n");
            let mut out = MetricSink::new();
            let mounts = parse_mountinfo(&line, &mut out);
            prop_assert_eq!(out.parse_errors(), 0);
            let mut want = b"/".to_vec();
            want.extend(&path);
            prop_assert_eq!(&mounts[0].mount_point, &want);
            prop_assert_eq!(mounts[0].readonly, ro);
            prop_assert_eq!(mounts[0].fstype.as_str(), "ext4");
        }
    }
}
