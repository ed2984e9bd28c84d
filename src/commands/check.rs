//! `check`: can this exporter see what it needs on this host?
//!
//! One pass/fail line per requirement and a non-zero exit when any fails, so
//! it can gate a deployment script.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use herakles_core::{read_bytes, read_text, READ_LIMIT};

use crate::config::Config;
use crate::process::parse::status_uid;
use crate::process::smaps::ROLLUP_LIMIT;
use crate::process::snapshot::CMDLINE_LIMIT;
use crate::util::caps::{self, CAP_BPF, CAP_DAC_READ_SEARCH, CAP_PERFMON, CAP_SYS_PTRACE};

struct Check {
    name: String,
    result: Result<String, String>,
}

pub fn run(config: &Config, all: bool, ebpf: bool) -> i32 {
    let procfs = &config.paths.procfs;
    let mut checks = Vec::new();
    let caps = caps::effective();
    if all || !ebpf {
        checks.push(Check {
            name: format!("{} readable", procfs.display()),
            result: within_deadline(procfs, proc_readable),
        });
        checks.push(Check {
            name: "other users' smaps_rollup readable".into(),
            result: within_deadline(procfs, others_smaps_readable),
        });
        checks.push(cap_check(&caps, CAP_SYS_PTRACE, "CAP_SYS_PTRACE"));
        checks.push(cap_check(&caps, CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"));
    }
    if all || ebpf {
        let btf = config.paths.sysfs.join("kernel/btf/vmlinux");
        checks.push(Check {
            name: "kernel BTF present".into(),
            result: if btf.is_file() {
                Ok(btf.display().to_string())
            } else {
                Err(format!(
                    "{} missing (kernel built without CONFIG_DEBUG_INFO_BTF)",
                    btf.display()
                ))
            },
        });
        checks.push(cap_check(&caps, CAP_BPF, "CAP_BPF"));
        checks.push(cap_check(&caps, CAP_PERFMON, "CAP_PERFMON"));
    }
    let mut skipped = Vec::new();
    if all || ebpf {
        let (parts, off) = ebpf_parts(config);
        checks.extend(parts);
        skipped = off;
    }
    let mut failed = 0;
    for c in &checks {
        match &c.result {
            Ok(detail) => println!("PASS  {}: {detail}", c.name),
            Err(why) => {
                failed += 1;
                println!("FAIL  {}: {why}", c.name);
            }
        }
    }
    for (name, why) in &skipped {
        println!("SKIP  {name}: {why}");
    }
    println!("{} passed, {} failed", checks.len() - failed, failed);
    i32::from(failed > 0)
}

/// Load and attach the eBPF programs exactly as the exporter would, report
/// each part, then detach them. Parts switched off are returned apart
/// (name, reason): they neither pass nor fail.
fn ebpf_parts(config: &Config) -> (Vec<Check>, Vec<(String, String)>) {
    use crate::ebpf::PartState;
    let ctx = crate::exporter::build_context(config);
    let mut checks = Vec::new();
    let mut off = Vec::new();
    match crate::ebpf::process_io::service(&ctx) {
        Ok(io) => io.shutdown(),
        Err(e) => checks.push(Check {
            name: "eBPF process I/O".into(),
            result: Err(e.to_string()),
        }),
    }
    crate::ebpf::tcp_state::TcpTracking::get(&ctx).shutdown();
    for (part, state) in crate::ebpf::status(&ctx).parts() {
        let name = format!("eBPF {part} programs load and attach");
        match state {
            PartState::Active { detail } => checks.push(Check {
                name,
                result: Ok(detail),
            }),
            PartState::Failed { reason } => checks.push(Check {
                name,
                result: Err(reason),
            }),
            PartState::Disabled { reason } => off.push((name, reason)),
        }
    }
    (checks, off)
}

/// How long a check that reads other processes' files may take.
const PROC_DEADLINE: Duration = Duration::from_secs(5);

/// Run a check that reads `/proc/<pid>/…` files on a thread of its own and
/// give up after [`PROC_DEADLINE`]. Reading a process's `cmdline` or
/// `smaps_rollup` blocks for as long as that process is stuck holding its
/// memory map lock (a hung FUSE or NFS page fault); the daemon skips such a
/// process, and `check`, which gates deployment scripts, must end too. The
/// stuck thread is left behind: the command exits right after.
fn within_deadline(
    procfs: &Path,
    check: fn(&Path) -> Result<String, String>,
) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    let procfs = procfs.to_path_buf();
    std::thread::Builder::new()
        .name("check".into())
        .spawn(move || {
            let _ = tx.send(check(&procfs));
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.recv_timeout(PROC_DEADLINE).unwrap_or_else(|_| {
        Err(format!(
            "no answer within {} s: some process's /proc files block when read \
             (a process stuck in the kernel); the exporter skips such a process",
            PROC_DEADLINE.as_secs()
        ))
    })
}

/// The most read of `/proc/<pid>/status`: some fifty short lines.
const STATUS_LIMIT: usize = 64 << 10;

fn proc_readable(procfs: &Path) -> Result<String, String> {
    let pids = std::fs::read_dir(procfs)
        .map_err(|e| format!("{}: {e}", procfs.display()))?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count();
    read_text(procfs.join("stat"), READ_LIMIT).map_err(|e| e.to_string())?;
    Ok(format!("{pids} processes visible"))
}

/// Reading another user's `smaps_rollup` needs ptrace-read access; without
/// it PSS and USS are unavailable for those processes. Kernel threads (no
/// command line) and non-dumpable processes are not representative, so the
/// check tries user-space processes, other users' first.
fn others_smaps_readable(procfs: &Path) -> Result<String, String> {
    let me = std::process::id();
    let my_uid = nix::unistd::getuid().as_raw();
    let mut candidates: Vec<(bool, u32)> = std::fs::read_dir(procfs)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let mut cmdline = Vec::new();
            read_bytes(
                &procfs.join(format!("{pid}/cmdline")),
                CMDLINE_LIMIT,
                &mut cmdline,
            )
            .is_ok()
                && !cmdline.is_empty()
        })
        .map(|pid| {
            let mut status = Vec::new();
            let uid = read_bytes(
                &procfs.join(format!("{pid}/status")),
                STATUS_LIMIT,
                &mut status,
            )
            .ok()
            .and_then(|()| status_uid(&status));
            (uid == Some(my_uid), pid)
        })
        .collect();
    candidates.sort();
    let others = candidates.iter().filter(|(same, _)| !same).count();
    let mut first_error = None;
    let tries = if others > 0 { others.min(8) } else { 8 };
    for (same, pid) in candidates.iter().take(tries) {
        let path = procfs.join(format!("{pid}/smaps_rollup"));
        match read_text(&path, ROLLUP_LIMIT) {
            Ok(_) if !same => return Ok(format!("read {}", path.display())),
            Ok(_) => {
                return Ok(format!(
                    "read {} (no other user's process to test)",
                    path.display()
                ))
            }
            Err(e) => {
                first_error.get_or_insert(format!("{}: {e}", path.display()));
            }
        }
    }
    Err(first_error.unwrap_or_else(|| "no other process to test with".into()))
}

fn cap_check(caps: &Result<u64, String>, bit: u32, name: &str) -> Check {
    let result = match caps {
        Ok(c) if caps::has(*c, bit) => Ok("held".to_string()),
        Ok(_) => Err("not held".to_string()),
        Err(e) => Err(format!("cannot read capabilities: {e}")),
    };
    Check {
        name: name.to_string(),
        result,
    }
}
