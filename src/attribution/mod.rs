//! Attribution: which container, pod, systemd unit and user a process
//! belongs to, what the kernel accounts to its cgroup, and the per-process
//! facts process-exporter reports per group (context switches, open file
//! descriptors and their limit).
//!
//! Everything here is a building block with no state of its own beyond a
//! cache of user names: parsers over bytes, and readers that take a
//! directory. The process table decides when to call them. See
//! `docs/attribution.md` for the formats recognised and the labels they
//! produce.
//!
//! Reading order: [`proc_cgroup`] parses `/proc/<pid>/cgroup`;
//! [`container`] and [`systemd`] read a container, pod or unit out of one
//! cgroup path; [`identity`] combines them for one process; [`hierarchy`]
//! finds that process's cgroup directories under `--path.sysfs` and
//! [`accounting`] reads the kernel's counters there. [`users`] maps uids to
//! names, [`status`] and [`fds`] are the per-process readers.

pub mod accounting;
pub mod container;
pub mod fds;
pub mod hierarchy;
pub mod identity;
pub mod proc_cgroup;
pub mod status;
pub mod systemd;
pub mod users;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Read at most `limit` bytes of `path` into `buf`, replacing its contents.
/// Returns whether the file held more.
///
/// Every file read here is bounded: a cgroup path, a passwd file or an
/// `io.stat` with thousands of devices must cost the scrape a known amount
/// of memory however large it grows. A truncated read is never an error;
/// the parsers ignore a last line that was cut.
pub fn read_bounded(path: &Path, limit: usize, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    let file = File::open(path)?;
    file.take(limit as u64 + 1).read_to_end(buf)?;
    let truncated = buf.len() > limit;
    buf.truncate(limit);
    Ok(truncated)
}

/// The complete lines of `buf`: everything when it was read whole, and
/// everything up to the last newline when it was cut short, so a truncated
/// read never yields half a record.
fn complete_lines(buf: &[u8], truncated: bool) -> &[u8] {
    if !truncated {
        return buf;
    }
    match buf.iter().rposition(|&b| b == b'\n') {
        Some(end) => &buf[..=end],
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_read_cuts_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one\ntwo\nthree\n").unwrap();
        let mut buf = vec![b'x'; 3];
        assert!(!read_bounded(&path, 14, &mut buf).unwrap());
        assert_eq!(buf, b"one\ntwo\nthree\n");
        assert!(read_bounded(&path, 10, &mut buf).unwrap());
        assert_eq!(buf, b"one\ntwo\nth");
        assert_eq!(complete_lines(&buf, true), b"one\ntwo\n");
        assert_eq!(complete_lines(b"no newline", true), b"");
        assert_eq!(complete_lines(b"whole", false), b"whole");
        let missing = read_bounded(&dir.path().join("nope"), 10, &mut buf);
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
