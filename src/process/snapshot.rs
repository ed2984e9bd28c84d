//! One pass over `<procfs>/<pid>` per scrape.
//!
//! Every process collector works from the same [`Snapshot`], built once per
//! scrape through `ScrapeContext::shared`, so no file of a process is read
//! twice in one scrape however many collectors run. Per process it reads
//! `stat` (comm, CPU ticks, start time, RSS), `cmdline`, the `exe` link and
//! `io`: three reads and a readlink. `statm` and `comm` are skipped because
//! `stat` already carries both RSS and comm.
//!
//! The pid list is split into chunks scanned by `parallelism` scoped
//! threads; each keeps one read buffer for all its processes, so a scan of
//! thousands of processes allocates per process only what it keeps.
//!
//! Processes come and go during the scan. One that vanishes (`ENOENT`,
//! `ESRCH`) is skipped silently: it simply was not there. A file we may not
//! read (`io` and `exe` of other users' processes when not root) is counted
//! per file kind, never logged per process: on a busy host that would be
//! thousands of lines per scrape.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::parse::{cmdline_to_string, parse_io, parse_stat, Io};

/// The per-process files whose failures are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Stat,
    Cmdline,
    Exe,
    Io,
    Smaps,
}

impl FileKind {
    pub const ALL: [FileKind; 5] = [
        FileKind::Stat,
        FileKind::Cmdline,
        FileKind::Exe,
        FileKind::Io,
        FileKind::Smaps,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FileKind::Stat => "stat",
            FileKind::Cmdline => "cmdline",
            FileKind::Exe => "exe",
            FileKind::Io => "io",
            FileKind::Smaps => "smaps",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

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

    fn merge(&mut self, other: &ReadErrors) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
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

/// Scan every numeric directory under `procfs` with `workers` threads, each
/// starting with a `buffer_bytes` read buffer.
pub fn scan(procfs: &Path, host: Host, workers: usize, buffer_bytes: usize) -> Snapshot {
    let mut pids: Vec<u32> = match std::fs::read_dir(procfs) {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return Snapshot::default(),
    };
    pids.sort_unstable();
    let workers = workers.clamp(1, pids.len().max(1));
    let chunk = pids.len().div_ceil(workers).max(1);
    let parts: Vec<Snapshot> = std::thread::scope(|s| {
        let handles: Vec<_> = pids
            .chunks(chunk)
            .map(|pids| s.spawn(move || scan_chunk(procfs, host, pids, buffer_bytes)))
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut out = Snapshot {
        processes: Vec::with_capacity(pids.len()),
        errors: ReadErrors::default(),
    };
    for part in parts {
        out.processes.extend(part.processes);
        out.errors.merge(&part.errors);
    }
    out
}

fn scan_chunk(procfs: &Path, host: Host, pids: &[u32], buffer_bytes: usize) -> Snapshot {
    let mut buf = Vec::with_capacity(buffer_bytes);
    let mut snap = Snapshot::default();
    for &pid in pids {
        let dir = procfs.join(pid.to_string());
        match read_process(&dir, pid, host, &mut buf, &mut snap.errors) {
            Ok(Some(p)) => snap.processes.push(p),
            Ok(None) => {}
            Err(e) if gone(&e) => {}
            Err(_) => snap.errors.add(FileKind::Stat),
        }
    }
    snap
}

/// The errors that mean the process exited while we looked.
pub fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// Read `path` into `buf`, replacing its contents.
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    File::open(path)?.read_to_end(buf)?;
    Ok(())
}

/// One process. `Err` only for `stat`; `Ok(None)` when the process
/// vanished part-way or its `stat` is unparsable (counted).
fn read_process(
    dir: &Path,
    pid: u32,
    host: Host,
    buf: &mut Vec<u8>,
    errors: &mut ReadErrors,
) -> io::Result<Option<Process>> {
    read_into(&dir.join("stat"), buf)?;
    let Some(stat) = parse_stat(buf) else {
        errors.add(FileKind::Stat);
        return Ok(None);
    };
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
        return Ok(Some(p));
    }
    match read_into(&dir.join("cmdline"), buf) {
        Ok(()) => p.cmdline = cmdline_to_string(buf),
        Err(e) if gone(&e) => return Ok(None),
        Err(_) => errors.add(FileKind::Cmdline),
    }
    match std::fs::read_link(dir.join("exe")) {
        Ok(target) => {
            let bytes = target.as_os_str().as_encoded_bytes();
            let bytes = bytes.strip_suffix(b" (deleted)").unwrap_or(bytes);
            let base = bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes);
            if !base.is_empty() {
                p.exe = String::from_utf8_lossy(base).into_owned();
            }
        }
        Err(e) if gone(&e) => return Ok(None),
        Err(_) => errors.add(FileKind::Exe),
    }
    match read_into(&dir.join("io"), buf) {
        Ok(()) => match parse_io(buf) {
            Some(io) => p.io = Some(io),
            None => errors.add(FileKind::Io),
        },
        Err(e) if gone(&e) => return Ok(None),
        Err(_) => errors.add(FileKind::Io),
    }
    Ok(Some(p))
}
