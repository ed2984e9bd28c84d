//! The fields of `/proc/<pid>/status` that `stat` does not carry.
//!
//! `status` repeats much of `stat` in a friendlier format (`State`,
//! `Threads`, `VmSize`, `VmRSS`); those are read from `stat`, which the
//! process table reads anyway (fields 3, 20 and 23). Only `status` has the
//! context switch counts and the uids, so only those are parsed here.
//!
//! One trap: the context switch counts in `/proc/<pid>/status` are those
//! of the process's main thread only, not of the whole process (the
//! kernel reports each thread's own counters; `getrusage` sums them, procfs
//! does not). A process's total is the sum over `/proc/<pid>/task/*/status`,
//! which is what process-exporter reads when it tracks threads.
//!
//! The kernel escapes the one field a process chooses (`Name`), so a line
//! cannot be forged; parsing is still by exact key, and a value that is not
//! a number leaves its field `None`.

/// Context switches and uids from one `status` file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// `voluntary_ctxt_switches`: the thread gave up the CPU (blocked).
    pub voluntary_ctxt_switches: Option<u64>,
    /// `nonvoluntary_ctxt_switches`: the scheduler took the CPU away.
    pub nonvoluntary_ctxt_switches: Option<u64>,
    /// `Uid`: real, effective, saved set and filesystem uid. The effective
    /// uid is the one `ps` shows as USER, and the one to attribute by.
    pub uids: Option<[u32; 4]>,
}

impl Status {
    /// The effective uid.
    pub fn euid(&self) -> Option<u32> {
        self.uids.map(|u| u[1])
    }
}

/// The most of the file that is read. It is about 1.5 KiB, but the
/// `Groups` line before the fields wanted lists every supplementary group,
/// up to 65,536 of them: a megabyte holds that line whole.
pub const MAX_BYTES: usize = 1 << 20;

/// Read and parse `<pid_dir>/status`; a file longer than [`MAX_BYTES`] is
/// an error.
pub fn read(pid_dir: &std::path::Path, buf: &mut Vec<u8>) -> std::io::Result<Option<Status>> {
    herakles_core::read_bytes(&pid_dir.join("status"), MAX_BYTES, buf)?;
    Ok(parse_status(buf))
}

/// Parse `status`; `None` when none of its fields is found.
pub fn parse_status(buf: &[u8]) -> Option<Status> {
    let mut s = Status::default();
    for line in buf.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = (&line[..colon], &line[colon + 1..]);
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        match key {
            b"voluntary_ctxt_switches" => s.voluntary_ctxt_switches = value.trim().parse().ok(),
            b"nonvoluntary_ctxt_switches" => {
                s.nonvoluntary_ctxt_switches = value.trim().parse().ok()
            }
            b"Uid" => s.uids = parse_ids(value),
            _ => {}
        }
    }
    (s != Status::default()).then_some(s)
}

/// Four whitespace-separated ids.
fn parse_ids(value: &str) -> Option<[u32; 4]> {
    let mut f = value.split_ascii_whitespace().map(|v| v.parse().ok());
    let ids = [f.next()??, f.next()??, f.next()??, f.next()??];
    f.next().is_none().then_some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A real file (kernel 6.18), with a process name that tries to forge
    /// lines: the kernel escapes the newline.
    const STATUS: &[u8] = b"Name:\tevil\\nUid:\\t0\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4242\nPPid:\t1\nTracerPid:\t0\nUid:\t1000\t1001\t1002\t1003\nGid:\t1000\t1000\t1000\t1000\nFDSize:\t64\nGroups:\t27 1000 \nVmPeak:\t   10240 kB\nVmSize:\t   10240 kB\nThreads:\t7\nSigQ:\t0/96365\nCpus_allowed_list:\t0-1\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t3\n";

    #[test]
    fn real_file() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.voluntary_ctxt_switches, Some(150));
        assert_eq!(s.nonvoluntary_ctxt_switches, Some(3));
        assert_eq!(s.uids, Some([1000, 1001, 1002, 1003]));
        assert_eq!(s.euid(), Some(1001));
    }

    #[test]
    fn partial_and_broken() {
        assert_eq!(parse_status(b""), None);
        assert_eq!(parse_status(b"Name:\tx\nState:\tR\n"), None);
        let s = parse_status(
            b"voluntary_ctxt_switches:\tlots\nUid:\t1 2 3\nnonvoluntary_ctxt_switches: 9\n",
        )
        .unwrap();
        assert_eq!(
            s,
            Status {
                voluntary_ctxt_switches: None,
                nonvoluntary_ctxt_switches: Some(9),
                uids: None,
            }
        );
        assert_eq!(parse_ids("1 2 3 4 5"), None);
        assert_eq!(parse_ids("1 2 3 -4"), None);
    }

    #[test]
    fn this_process_agrees_with_getrusage_for_one_thread() {
        // A fresh thread is alone in being counted by RUSAGE_THREAD, and
        // its /proc/self/task/<tid>/status counts the same switches.
        let (from_status, from_rusage) = std::thread::spawn(|| {
            for _ in 0..20 {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let dir = std::path::PathBuf::from(format!("/proc/self/task/{tid}"));
            let status = read(&dir, &mut Vec::new()).unwrap().unwrap();
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: ru is a valid rusage to fill.
            assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
            (status, ru.ru_nvcsw as u64)
        })
        .join()
        .unwrap();
        let voluntary = from_status.voluntary_ctxt_switches.unwrap();
        // getrusage ran after the read, and the read itself may block.
        assert!(voluntary >= 20, "{voluntary}");
        assert!(from_rusage >= voluntary && from_rusage - voluntary <= 2);
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            parse_status(&std::fs::read("/proc/self/status").unwrap())
                .unwrap()
                .euid(),
            Some(unsafe { libc::geteuid() })
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_status(&bytes);
        }

        #[test]
        fn key_value_lines_never_panic(lines in proptest::collection::vec("(Uid|voluntary_ctxt_switches|nonvoluntary_ctxt_switches|Name):[ \t0-9a-z-]{0,30}", 0..10)) {
            let _ = parse_status(lines.join("\n").as_bytes());
        }
    }
}
