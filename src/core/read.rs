//! Bounded reads of kernel files.
//!
//! Everything a collector reads lives under the `--path.*` roots, and those
//! may point at a tree nobody vetted: a container's bind mount, a fixture, a
//! copy someone edited. A kernel file is small and is never a symbolic link,
//! but a file in such a tree can be a 3 GiB sparse file or a link to
//! `/dev/zero`, and `std::fs::read_to_string` would read either until memory
//! runs out. So every read here:
//!
//! * stops after a limit chosen for the file's purpose, and reports a file
//!   longer than that as an error that [`is_too_large`] recognises (the
//!   caller counts it as a parse error or fails, never reads on);
//! * opens the last path component with `O_NOFOLLOW`, so a link where the
//!   kernel has a regular file is refused (`ELOOP`). Links *before* the last
//!   component are followed as usual: `/proc/self` and the entries of
//!   `/sys/class/*` are links, and that is how the kernel lays them out.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::{Error, Result};

/// The limit of [`ScrapeContext::read_proc`](crate::ScrapeContext::read_proc)
/// and its siblings: far above any table the kernel prints (a `mountinfo` of
/// ten thousand mounts is 2 MiB), far below what hurts the exporter.
pub const READ_LIMIT: usize = 16 << 20;

/// Lines passed to [`for_each_line`] are cut at this length.
pub const MAX_LINE: usize = 64 << 10;

/// The error inside an [`io::Error`] for a file longer than its limit.
#[derive(Debug)]
struct TooLarge {
    limit: usize,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "longer than {} bytes, the limit for this file; not read",
            self.limit
        )
    }
}

impl std::error::Error for TooLarge {}

fn too_large(limit: usize) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TooLarge { limit })
}

/// Whether `e` says a file was longer than the limit it was read with.
pub fn is_too_large(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
}

/// Open `path` for reading, refusing a symbolic link as its last component.
fn open(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Read `path` into `buf` (cleared first): at most `limit` bytes.
///
/// A longer file is an error for which [`is_too_large`] is true; `buf` then
/// holds its first `limit` bytes. A link as the last component of `path` is
/// refused (see the module documentation).
pub fn read_bytes(path: &Path, limit: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    // One byte more than allowed tells "exactly at the limit" from "longer".
    open(path)?
        .take((limit as u64).saturating_add(1))
        .read_to_end(buf)?;
    if buf.len() > limit {
        buf.truncate(limit);
        return Err(too_large(limit));
    }
    Ok(())
}

/// Read `path` as text: at most `limit` bytes, with invalid UTF-8 replaced
/// by U+FFFD instead of failing the whole file, so one bad byte costs the
/// line it is on. Errors name the file.
pub fn read_text(path: impl AsRef<Path>, limit: usize) -> Result<String> {
    let path = path.as_ref();
    let mut buf = Vec::new();
    read_bytes(path, limit, &mut buf).map_err(|e| Error::io(path, e))?;
    Ok(match String::from_utf8(buf) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Call `line` with each line of `path` (without its `\n`), holding at most
/// [`MAX_LINE`] bytes in memory however large the file: for tables that can
/// legitimately be hundreds of megabytes (`/proc/net/tcp` on a busy host,
/// `smaps` of a process with many mappings), where reading the whole file
/// first would make the exporter's memory grow with them.
///
/// Lines longer than [`MAX_LINE`] are passed cut to that length. At most
/// `limit` bytes are read; a longer file is an error for which
/// [`is_too_large`] is true, after every line that ended within the limit
/// was passed.
pub fn for_each_line(path: &Path, limit: usize, mut line: impl FnMut(&[u8])) -> io::Result<()> {
    let mut file = open(path)?;
    let mut buf = vec![0u8; MAX_LINE];
    // `buf[..end]` holds bytes read and not yet passed on; `cut` is set
    // while skipping the rest of a line already passed cut short.
    let (mut end, mut total, mut cut) = (0usize, 0usize, false);
    loop {
        // Never more than one byte past the limit: that byte only tells
        // "exactly at the limit" from "longer".
        let want = (buf.len() - end).min((limit - total).saturating_add(1));
        let n = match file.read(&mut buf[end..end + want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n;
        let over = total > limit;
        let filled = end + n - usize::from(over);
        let mut start = 0;
        while let Some(nl) = buf[start..filled].iter().position(|&b| b == b'\n') {
            if !cut {
                line(&buf[start..start + nl]);
            }
            cut = false;
            start += nl + 1;
        }
        if over {
            return Err(too_large(limit));
        }
        if start == 0 && filled == buf.len() {
            // A line as long as the buffer: pass what we have, drop the rest.
            if !cut {
                line(&buf[..filled]);
            }
            cut = true;
            end = 0;
        } else {
            buf.copy_within(start..filled, 0);
            end = filled - start;
        }
    }
    if end > 0 && !cut {
        line(&buf[..end]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limit_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let mut buf = Vec::new();
        read_bytes(&path, 5, &mut buf).unwrap();
        assert_eq!(buf, b"12345");
        let e = read_bytes(&path, 4, &mut buf).unwrap_err();
        assert!(is_too_large(&e), "{e}");
        assert_eq!(buf, b"1234");
        let e = read_text(&path, 4).unwrap_err();
        assert!(e.is_too_large());
        assert!(e.to_string().contains("longer than 4 bytes"), "{e}");
        assert!(!e.is_not_found());
    }

    #[test]
    fn final_links_are_refused_inner_links_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/f"), b"x\n").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("dirlink")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        assert_eq!(read_text(dir.path().join("dirlink/f"), 10).unwrap(), "x\n");
        let e = read_text(dir.path().join("zero"), 10).unwrap_err();
        assert!(!e.is_too_large() && !e.is_not_found(), "{e}");
        assert!(read_text("/proc/self/stat", READ_LIMIT).is_ok());
    }

    #[test]
    fn devices_and_sparse_files_stop_at_the_limit() {
        let mut buf = Vec::new();
        let e = read_bytes(Path::new("/dev/zero"), 1000, &mut buf).unwrap_err();
        assert!(is_too_large(&e));
        assert_eq!(buf.len(), 1000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        File::create(&path).unwrap().set_len(1 << 40).unwrap();
        let mut lines = 0;
        let e = for_each_line(&path, 1 << 20, |_| lines += 1).unwrap_err();
        assert!(is_too_large(&e));
        // One endless line, cut: passed once.
        assert_eq!(lines, 1);
    }

    #[test]
    fn invalid_utf8_costs_only_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"good 1\nb\xffd 2\n").unwrap();
        assert_eq!(read_text(&path, 100).unwrap(), "good 1\nb\u{fffd}d 2\n");
    }

    fn lines_of(content: &[u8], limit: usize) -> (Vec<Vec<u8>>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, content).unwrap();
        let mut got = Vec::new();
        let r = for_each_line(&path, limit, |l| got.push(l.to_vec()));
        (got, r.is_err_and(|e| is_too_large(&e)))
    }

    #[test]
    fn long_lines_are_cut_and_the_next_line_is_whole() {
        let mut content = vec![b'a'; MAX_LINE * 2 + 10];
        content.extend_from_slice(b"\nnext\nlast");
        let (got, over) = lines_of(&content, usize::MAX - 1);
        assert!(!over);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(got[1], b"next");
        assert_eq!(got[2], b"last");
    }

    proptest! {
        /// Under the limit, the lines are exactly those of `split('\n')`
        /// (without the empty piece after a final newline); over it, a
        /// prefix of them.
        #[test]
        fn lines_match_split(
            content in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'a'), any::<u8>()], 0..2000),
            limit in 0usize..2500,
        ) {
            let (got, over) = lines_of(&content, limit);
            prop_assert_eq!(over, content.len() > limit);
            // Over the limit, the lines whose newline lies within it.
            let seen = if over { &content[..limit] } else { &content[..] };
            let mut want: Vec<Vec<u8>> = seen.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            // The piece after the last newline: empty, or cut by the limit,
            // or (under it) a last line without a newline.
            let tail = want.pop().unwrap_or_default();
            if !over && !tail.is_empty() {
                want.push(tail);
            }
            prop_assert_eq!(got, want);
        }
    }
}
