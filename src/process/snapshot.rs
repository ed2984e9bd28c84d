//! One pass over `<procfs>/<pid>` per scrape.
//!
//! Every process collector works from the same [`Snapshot`], built once per
//! scrape through `ScrapeContext::shared`, so no file of a process is read
//! twice in one scrape however many collectors run. Per process it reads
//! `stat` (comm, CPU ticks, start time, RSS), `cmdline`, the `exe` link and
//! `io`: three reads and a readlink. `statm` and `comm` are skipped because
//! `stat` already carries both.
//!
//! The pids are read by `parallelism` threads taking them one at a time from
//! a shared queue ([`super::pool`]); each keeps one read buffer for all its
//! processes, so a scan of thousands of processes allocates per process
//! only what it keeps. A read that blocks past the deadline costs that
//! process, not the scan: see the pool's documentation.
//!
//! Every read is capped at a size that fits its file (`read_bytes` in
//! herakles-core): a file longer than that, which no kernel writes, counts
//! as a failed read of that file instead of filling memory.
//!
//! Processes come and go during the scan. One that vanishes (`ENOENT`,
//! `ESRCH`) is skipped silently: it simply was not there. A file we may not
//! read (`io` and `exe` of other users' processes when not root) is counted
//! per file kind, never logged per process: on a busy host that would be
//! thousands of lines per scrape.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use herakles_core::read_bytes;

use super::parse::{cmdline_to_string, parse_io, parse_stat, FileKind, Io};
use super::pool::{self, Skip, Stuck, Task};

/// Failed reads per [`FileKind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadErrors(pub [u64; 5]);

impl ReadErrors {
    pub fn add(&mut self, kind: FileKind) {
        self.0[kind.index()] += 1;
    }

    pub fn get(&self, kind: FileKind) -> u64 {
        self.0[kind.index()]
    }
}

/// What one scan learned about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// Start time in clock ticks after boot; with `pid`, the process's
    /// identity (see [`Process::key`]).
    pub starttime: u64,
    /// `comm`, lossily decoded.
    pub comm: String,
    /// Basename of the `exe` link; `comm` when the link cannot be read
    /// (kernel threads, other users' processes when not root).
    pub exe: String,
    /// Arguments joined by spaces, lossily decoded; empty for kernel threads.
    pub cmdline: String,
    /// Kernel threads are kept (they are classifiable and use CPU) but have
    /// no user memory: RSS 0, and no `io` or smaps reads are spent on them.
    pub kernel_thread: bool,
    pub rss_bytes: u64,
    /// CPU time in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// `None` when `io` could not be read.
    pub io: Option<Io>,
}

/// A process's identity across scrapes: pids are reused, (pid, start time)
/// pairs are not, so state keyed by this never mixes two processes.
pub type Key = (u32, u64);

impl Process {
    pub fn key(&self) -> Key {
        (self.pid, self.starttime)
    }
}

/// The process table as seen by one scan.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub processes: Vec<Process>,
    pub errors: ReadErrors,
    /// Reads given up on after the deadline, per file kind.
    pub timeouts: ReadErrors,
}

/// Host constants the scan and the collectors convert with.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    pub page_size: u64,
    pub clk_tck: f64,
    pub cpus: f64,
}

impl Host {
    pub fn current() -> Host {
        // SAFETY: sysconf only reads constants.
        let (page, tck, cpus) = unsafe {
            (
                libc::sysconf(libc::_SC_PAGESIZE),
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
            )
        };
        Host {
            page_size: if page > 0 { page as u64 } else { 4096 },
            clk_tck: if tck > 0 { tck as f64 } else { 100.0 },
            cpus: if cpus > 0 { cpus as f64 } else { 1.0 },
        }
    }
}

/// The most the scan reads of each file. `stat` is one line of about fifty
/// numbers and `io` seven short lines; `cmdline` can be as large as the
/// arguments the kernel accepts at exec (at most 6 MiB: three quarters of
/// the 8 MiB cap on the stack that holds them).
pub const STAT_LIMIT: usize = 4 << 10;
pub const IO_LIMIT: usize = 4 << 10;
pub const CMDLINE_LIMIT: usize = 8 << 20;

/// What reading one process gave.
struct Read {
    process: Option<Process>,
    /// Bit `FileKind as usize` set for each file that failed.
    failed: u8,
}

/// Scan every numeric directory under `procfs` on `limits.workers` threads,
/// each starting with a `buffer_bytes` read buffer. Processes with a read
/// still blocked in `stuck` are skipped; reads that block past
/// `limits.deadline` are added to it.
pub fn scan(
    procfs: &Path,
    host: Host,
    limits: pool::Limits,
    buffer_bytes: usize,
    stuck: &Stuck,
) -> Snapshot {
    let mut pids: Vec<pool::Ident> = match std::fs::read_dir(procfs) {
        Ok(dir) => dir
            .filter_map(|e| Some((e.ok()?.file_name().to_str()?.parse().ok()?, None)))
            .collect(),
        Err(_) => return Snapshot::default(),
    };
    pids.sort_unstable();
    let n = pids.len();
    let skip = Arc::new(stuck.skip_set());
    let root = Arc::new(procfs.to_path_buf());
    let run = pool::run(
        pids.into(),
        limits,
        stuck,
        Arc::new(move || Vec::with_capacity(buffer_bytes)),
        Arc::new(move |(pid, _), buf: &mut Vec<u8>, task: &Task| {
            let read = read_process(&root, pid, host, buf, &skip, task);
            // A long command line grows the buffer; a thread that blocks
            // later would hold on to it.
            if buf.capacity() > buffer_bytes {
                buf.clear();
                buf.shrink_to(buffer_bytes);
            }
            read
        }),
        Arc::new(|_, _| {}),
    );
    let mut out = Snapshot {
        processes: Vec::with_capacity(n),
        ..Snapshot::default()
    };
    for (_, read) in run.results {
        for kind in FileKind::ALL {
            if read.failed & (1 << kind.index()) != 0 {
                out.errors.add(kind);
            }
        }
        out.processes.extend(read.process);
    }
    for (_, kind) in run.abandoned {
        out.timeouts.add(kind);
    }
    // In pid order, as the series come out, whichever thread read what.
    out.processes.sort_unstable_by_key(|p| p.pid);
    out
}

/// The errors that mean the process exited while we looked.
pub fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// One process; `process` is `None` when it vanished part-way, is skipped
/// as stuck, or its `stat` is unreadable (counted) or the scan gave up on it.
fn read_process(
    procfs: &Path,
    pid: u32,
    host: Host,
    buf: &mut Vec<u8>,
    skip: &Skip,
    task: &Task,
) -> Read {
    let mut failed = 0u8;
    let mut fail = |kind: FileKind| failed |= 1 << kind.index();
    let process = (|| {
        if skip.contains(pid, None) {
            return None;
        }
        let mut path = procfs.join(pid.to_string());
        let file = |path: &mut PathBuf, kind: FileKind| {
            path.push(kind.name());
            task.reading(kind)
        };
        if !file(&mut path, FileKind::Stat) {
            return None;
        }
        match read_bytes(&path, STAT_LIMIT, buf) {
            Ok(()) => {}
            Err(e) if gone(&e) => return None,
            Err(_) => {
                fail(FileKind::Stat);
                return None;
            }
        }
        path.pop();
        let Some(stat) = parse_stat(buf) else {
            fail(FileKind::Stat);
            return None;
        };
        task.identify(stat.starttime);
        if skip.contains(pid, Some(stat.starttime)) {
            return None;
        }
        let comm = String::from_utf8_lossy(&stat.comm).into_owned();
        let kernel_thread = stat.is_kernel_thread();
        let mut p = Process {
            pid,
            starttime: stat.starttime,
            exe: comm.clone(),
            comm,
            cmdline: String::new(),
            kernel_thread,
            rss_bytes: stat.rss_pages.saturating_mul(host.page_size),
            utime: stat.utime,
            stime: stat.stime,
            io: None,
        };
        if kernel_thread {
            return Some(p);
        }
        if !file(&mut path, FileKind::Cmdline) {
            return None;
        }
        match read_bytes(&path, CMDLINE_LIMIT, buf) {
            Ok(()) => p.cmdline = cmdline_to_string(buf),
            Err(e) if gone(&e) => return None,
            Err(_) => fail(FileKind::Cmdline),
        }
        path.pop();
        if !file(&mut path, FileKind::Exe) {
            return None;
        }
        match std::fs::read_link(&path) {
            Ok(target) => {
                let bytes = target.as_os_str().as_encoded_bytes();
                let bytes = bytes.strip_suffix(b" (deleted)").unwrap_or(bytes);
                let base = bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes);
                if !base.is_empty() {
                    p.exe = String::from_utf8_lossy(base).into_owned();
                }
            }
            Err(e) if gone(&e) => return None,
            Err(_) => fail(FileKind::Exe),
        }
        path.pop();
        if !file(&mut path, FileKind::Io) {
            return None;
        }
        match read_bytes(&path, IO_LIMIT, buf) {
            Ok(()) => match parse_io(buf) {
                Some(io) => p.io = Some(io),
                None => fail(FileKind::Io),
            },
            Err(e) if gone(&e) => return None,
            Err(_) => fail(FileKind::Io),
        }
        Some(p)
    })();
    Read { process, failed }
}
