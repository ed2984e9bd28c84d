//! Open file descriptors of a process and their limit: process-exporter's
//! `open_filedesc` and `worst_fd_ratio`, the early warning for a service
//! about to fail with `EMFILE`.
//!
//! Counting by listing `/proc/<pid>/fd` costs one directory entry per
//! descriptor, and a busy server has tens of thousands. Since Linux 6.2 a
//! `stat` of that directory answers in one call: its size is the number of
//! open descriptors. Older kernels report size 0, as does a process with no
//! descriptors open; only then is the directory listed.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The number of open file descriptors of the process at `pid_dir`.
///
/// Listing another user's descriptors needs ptrace access; the `stat`
/// shortcut does not, so an unprivileged exporter on a new kernel still
/// gets counts.
pub fn count_open_fds(pid_dir: &Path) -> io::Result<u64> {
    let fd_dir = pid_dir.join("fd");
    let size = std::fs::metadata(&fd_dir)?.size();
    if size > 0 {
        return Ok(size);
    }
    list_open_fds(&fd_dir)
}

/// Count the entries of an `fd` directory.
pub fn list_open_fds(fd_dir: &Path) -> io::Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(fd_dir)? {
        // A descriptor closed while listing is simply not counted.
        if entry.is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// One resource limit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Value(u64),
    Unlimited,
}

/// The soft and hard limits of one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The limit the kernel enforces; what a usage ratio is taken against.
    pub soft: Limit,
    /// The most the process may raise `soft` to without privilege.
    pub hard: Limit,
}

/// The row of `/proc/<pid>/limits` for open files.
pub const OPEN_FILES: &str = "Max open files";

/// The most of `/proc/<pid>/limits` read: 17 rows of 80 bytes.
pub const MAX_BYTES: usize = 4096;

/// Read the open-files limits of the process at `pid_dir`.
pub fn read_open_files_limit(pid_dir: &Path, buf: &mut Vec<u8>) -> io::Result<Option<Limits>> {
    herakles_core::read_bytes(&pid_dir.join("limits"), MAX_BYTES, buf)?;
    Ok(parse_limit(buf, OPEN_FILES))
}

/// The limits in the row named `resource` of `/proc/<pid>/limits`.
///
/// The file is a table: a header, then per resource its name padded to a
/// column, the soft and hard limits (a number or `unlimited`), and usually
/// a unit. Names contain spaces, so a row is found by its name prefix.
pub fn parse_limit(buf: &[u8], resource: &str) -> Option<Limits> {
    let text = std::str::from_utf8(buf).ok()?;
    let rest = text.lines().find_map(|line| {
        let rest = line.strip_prefix(resource)?;
        rest.starts_with([' ', '\t']).then_some(rest)
    })?;
    let mut f = rest.split_ascii_whitespace();
    let value = |v: &str| match v {
        "unlimited" => Some(Limit::Unlimited),
        v => v.parse().ok().map(Limit::Value),
    };
    Some(Limits {
        soft: value(f.next()?)?,
        hard: value(f.next()?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::{Command, Stdio};

    /// A real file (kernel 6.18).
    const LIMITS: &[u8] =
        b"Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max file size             unlimited            unlimited            bytes     \n\
Max open files            20000                1048576              files     \n\
Max locked memory         8388608              8388608              bytes     \n\
Max realtime timeout      unlimited            unlimited            us        \n";

    #[test]
    fn limits_rows() {
        assert_eq!(
            parse_limit(LIMITS, OPEN_FILES),
            Some(Limits {
                soft: Limit::Value(20000),
                hard: Limit::Value(1048576)
            })
        );
        assert_eq!(
            parse_limit(LIMITS, "Max cpu time"),
            Some(Limits {
                soft: Limit::Unlimited,
                hard: Limit::Unlimited
            })
        );
        // "Max file" is a prefix of a name, not a row.
        assert_eq!(parse_limit(LIMITS, "Max file"), None);
        assert_eq!(parse_limit(b"Max open files 10\n", OPEN_FILES), None);
        assert_eq!(
            parse_limit(b"Max open files x 10 files\n", OPEN_FILES),
            None
        );
        assert_eq!(parse_limit(b"", OPEN_FILES), None);
    }

    #[test]
    fn this_process_limit_matches_getrlimit() {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: rl is a valid rlimit to fill.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
        let got = read_open_files_limit(Path::new("/proc/self"), &mut Vec::new())
            .unwrap()
            .unwrap();
        let as_limit = |v: libc::rlim_t| {
            if v == libc::RLIM_INFINITY {
                Limit::Unlimited
            } else {
                Limit::Value(v)
            }
        };
        assert_eq!(got.soft, as_limit(rl.rlim_cur));
        assert_eq!(got.hard, as_limit(rl.rlim_max));
    }

    /// A `sleep` holding exactly `extra` descriptors beyond stdin, stdout
    /// and stderr (bash opens them; `exec` keeps them across). Whatever
    /// else the test runner has open without close-on-exec (cargo's
    /// jobserver pipe) is closed before bash starts.
    fn sleeper(extra: u32) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let script = format!(
            "for i in $(seq 3 {}); do eval \"exec $i</dev/null\"; done; exec sleep 60",
            2 + extra
        );
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: close_range is async-signal-safe and touches only the
        // child's descriptor table.
        unsafe {
            cmd.pre_exec(|| {
                if libc::close_range(3, u32::MAX, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    /// Wait until `pid` is `sleep` asleep in its system call: right after
    /// the exec the dynamic loader and locale set-up still open and close
    /// files of their own.
    fn wait_asleep(pid: u32) {
        let syscall = format!("/proc/{pid}/syscall");
        let sleeping = [libc::SYS_nanosleep, libc::SYS_clock_nanosleep].map(|n| n.to_string());
        for _ in 0..2000 {
            let text = std::fs::read_to_string(&syscall).unwrap_or_default();
            let nr = text.split_whitespace().next().unwrap_or("");
            if sleeping.iter().any(|s| s == nr) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("{pid} never went to sleep");
    }

    #[test]
    fn counts_exactly_by_stat_and_by_listing() {
        for extra in [0, 50] {
            let mut child = sleeper(extra);
            wait_asleep(child.id());
            let dir = Path::new("/proc").join(child.id().to_string());
            let want = 3 + u64::from(extra);
            assert_eq!(count_open_fds(&dir).unwrap(), want);
            assert_eq!(list_open_fds(&dir.join("fd")).unwrap(), want);
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn a_gone_process_is_an_error() {
        let err = count_open_fds(Path::new("/proc/999999999")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_limit(&bytes, OPEN_FILES);
        }

        #[test]
        fn rows_never_panic(soft in "[0-9a-z]{0,25}", hard in "[0-9a-z]{0,25}") {
            let row = format!("Max open files            {soft} {hard} files\n");
            let _ = parse_limit(row.as_bytes(), OPEN_FILES);
        }
    }
}
