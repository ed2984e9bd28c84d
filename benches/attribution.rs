//! What the per-process reads of attribution cost, on this machine's live
//! `/proc`, beside the reads the process table makes today.
//!
//! For every process it times, over several scans: the table's current
//! reads (`stat`, `cmdline`, the `exe` link, `io`), then each new read on
//! its own: `cgroup` parsed and attributed (and only read), `status`, the open descriptor
//! count by `stat` and by listing, `limits`. Medians per scan and per
//! process are printed, and what reading `cgroup` every scrape would add
//! to a scan. Run through `scripts/bench_attribution.sh`, which first
//! populates the machine with processes in container-shaped cgroups.
//!
//!   cargo bench --bench attribution [-- ROUNDS]

use std::collections::HashSet;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use herakles_core::read_bytes;
use herakles_node_exporter::attribution::identity::Identity;
use herakles_node_exporter::attribution::proc_cgroup::ProcCgroup;
use herakles_node_exporter::attribution::{fds, status};

type Read = fn(&Path, &mut Vec<u8>) -> usize;

/// What the table reads per process today.
fn table_today(dir: &Path, buf: &mut Vec<u8>) -> usize {
    let mut n = 0;
    for file in ["stat", "cmdline", "io"] {
        if read_bytes(&dir.join(file), 1 << 20, buf).is_ok() {
            n += buf.len();
        }
    }
    n + std::fs::read_link(dir.join("exe")).map_or(0, |p| p.as_os_str().len())
}

fn cgroup_read(dir: &Path, buf: &mut Vec<u8>) -> usize {
    read_bytes(&dir.join("cgroup"), 1 << 16, buf).map_or(0, |_| buf.len())
}

fn cgroup(dir: &Path, buf: &mut Vec<u8>) -> usize {
    ProcCgroup::read(dir, buf).map_or(0, |cg| Identity::of(&cg).cgroup.len())
}

fn status(dir: &Path, buf: &mut Vec<u8>) -> usize {
    status::read(dir, buf)
        .ok()
        .flatten()
        .and_then(|s| s.voluntary_ctxt_switches)
        .unwrap_or(0) as usize
}

fn fd_stat(dir: &Path, _: &mut Vec<u8>) -> usize {
    fds::count_open_fds(dir).unwrap_or(0) as usize
}

fn fd_list(dir: &Path, _: &mut Vec<u8>) -> usize {
    fds::list_open_fds(&dir.join("fd")).unwrap_or(0) as usize
}

fn limits(dir: &Path, buf: &mut Vec<u8>) -> usize {
    fds::read_open_files_limit(dir, buf)
        .ok()
        .flatten()
        .is_some() as usize
}

/// Median milliseconds of `rounds` scans of `dirs` with `read`.
fn time(dirs: &[PathBuf], rounds: usize, read: Read) -> f64 {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut ms: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for dir in dirs {
                black_box(read(dir, &mut buf));
            }
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(7);
    let dirs: Vec<PathBuf> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| {
            let e = e.ok()?;
            e.file_name().to_str()?.parse::<u32>().ok()?;
            Some(e.path())
        })
        .collect();
    let n = dirs.len() as f64;

    let mut buf = Vec::new();
    let mut paths = HashSet::new();
    let mut lines = 0;
    for dir in &dirs {
        if let Ok(cg) = ProcCgroup::read(dir, &mut buf) {
            lines = lines.max(cg.v1.len() + cg.unified.is_some() as usize);
            paths.insert(Identity::of(&cg).cgroup);
        }
    }
    println!(
        "{} processes, {} lines in /proc/<pid>/cgroup, {} distinct workload cgroups, {rounds} scans each (median)",
        dirs.len(),
        lines,
        paths.len()
    );

    let cases: [(&str, Read); 7] = [
        ("table today: stat, cmdline, exe, io", table_today),
        ("cgroup: read, parse, attribute", cgroup),
        ("cgroup: read only", cgroup_read),
        ("status: read, parse", status),
        ("open fds: stat of fd/", fd_stat),
        ("open fds: listing fd/", fd_list),
        ("limits: read, parse", limits),
    ];
    let mut base = 0.0;
    let mut cg = 0.0;
    println!(
        "{:<38} {:>10} {:>14}",
        "per process", "ms/scan", "us/process"
    );
    for (i, (name, read)) in cases.iter().enumerate() {
        let ms = time(&dirs, rounds, *read);
        match i {
            0 => base = ms,
            1 => cg = ms,
            _ => {}
        }
        println!("{name:<38} {ms:>10.2} {:>14.2}", ms * 1e3 / n);
    }
    println!(
        "reading cgroup every scrape adds {:.0}% to the table's reads ({:.2} ms per scan of {} processes)",
        cg / base * 100.0,
        cg,
        dirs.len()
    );
}
