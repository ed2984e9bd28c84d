//! Cgroups made by a test, shaped like a container runtime's or systemd's,
//! and processes moved into them; all removed however the test ends.
//!
//! Used by the attribution tests (which check what is read from them) and
//! by the monitoring test (which needs containers, pods and units for the
//! dashboards to show).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The cgroups the test made, removed deepest first when dropped. Declare
/// it before the processes moved into them, so that it is dropped after
/// them: a cgroup can only be removed once its processes are gone.
#[derive(Default)]
pub struct Made(Vec<PathBuf>);

impl Made {
    /// Make `dir` and any missing parent below `root`, enabling in each
    /// new parent (not in `dir` itself, which is to hold processes) the v2
    /// controllers its own parent offers, so leaves get memory, cpu and io
    /// files where the kernel has them on v2.
    pub fn make(&mut self, root: &Path, dir: &Path) {
        let mut missing = Vec::new();
        let mut d = dir;
        while !d.exists() {
            missing.push(d.to_path_buf());
            d = d.parent().unwrap();
            assert!(d.starts_with(root));
        }
        for d in missing.into_iter().rev() {
            fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            self.0.push(d.clone());
            if d == dir {
                continue;
            }
            let offered = fs::read_to_string(d.join("cgroup.controllers")).unwrap_or_default();
            for c in offered.split_whitespace() {
                if ["memory", "cpu", "io"].contains(&c) {
                    let _ = fs::write(d.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
        }
    }

    /// Every directory made, parents first.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.0
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            // An emptied cgroup can be busy for a moment while the kernel
            // finishes taking its last process out.
            for _ in 0..500 {
                match fs::remove_dir(d) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => break,
                }
            }
            if d.exists() {
                eprintln!("could not remove cgroup {}", d.display());
            }
        }
    }
}

/// A spawned process, killed and reaped when dropped.
pub struct Kid(pub std::process::Child);

impl Kid {
    pub fn pid(&self) -> libc::pid_t {
        self.0.id() as libc::pid_t
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn move_to(pid: libc::pid_t, dir: &Path) {
    fs::write(dir.join("cgroup.procs"), pid.to_string())
        .unwrap_or_else(|e| panic!("move {pid} to {}: {e}", dir.display()));
}

/// A slice name of the test's own, `herakles-test-<pid>-<nonce>.slice`.
pub fn test_slice() -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("herakles-test-{}-{nonce}.slice", std::process::id())
}

/// The whole disk holding `file` (block I/O is accounted per disk, not
/// per partition).
pub fn disk_of(file: &Path) -> (u32, u32) {
    let dev = fs::metadata(file).unwrap().dev();
    let sys = PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        libc::major(dev),
        libc::minor(dev)
    ));
    let disk = if sys.join("partition").exists() {
        sys.join("../dev")
    } else {
        sys.join("dev")
    };
    let text = fs::read_to_string(&disk).unwrap();
    let (major, minor) = text.trim().split_once(':').unwrap();
    (major.parse().unwrap(), minor.parse().unwrap())
}
