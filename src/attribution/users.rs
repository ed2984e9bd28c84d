//! User names for uids, from the host's `/etc/passwd`.
//!
//! The exporter may run in a container whose own `/etc/passwd` knows none
//! of the host's users, so names come from `<--path.rootfs>/etc/passwd`,
//! not from `getpwuid(3)`. That also keeps NSS (LDAP, sssd) out of the
//! scrape path: a directory server that hangs must not hang a scrape.
//! Users only NSS knows get their numeric uid as the name, as `ps` shows
//! them when it cannot resolve one.
//!
//! The file is parsed once and again only when it changes: [`Users::refresh`]
//! compares its device, inode, size, modification and change times, which
//! catches both an in-place edit and the rename of a new file over it
//! (what `useradd` and `vipw` do).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::util::FileStamp as Stamp;

/// The most of the file that is read. 16 MiB is some 200,000 users; a
/// longer file is not read (an error), and the names read before stay.
pub const MAX_BYTES: usize = 16 << 20;

/// A cache of uid → name from one passwd file.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    limit: usize,
    stamp: Option<Stamp>,
    names: HashMap<u32, Arc<str>>,
}

impl Users {
    /// Names from `<rootfs>/etc/passwd`. Nothing is read until
    /// [`Users::refresh`].
    pub fn new(rootfs: &Path) -> Users {
        Users::with_file(rootfs.join("etc/passwd"), MAX_BYTES)
    }

    /// Names from `path`, reading at most `limit` bytes of it.
    pub fn with_file(path: PathBuf, limit: usize) -> Users {
        Users {
            path,
            limit,
            stamp: None,
            names: HashMap::new(),
        }
    }

    /// Reread the file if it changed since the last read; returns whether
    /// it did. Meant to be called once per scrape: when nothing changed it
    /// costs one `stat`.
    ///
    /// A missing file is not an error: there are no names (a container
    /// without the host's root mounted), and every uid is shown by number.
    /// Any other error keeps the names read before and is returned.
    pub fn refresh(&mut self) -> io::Result<bool> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let changed = self.stamp.is_some() || !self.names.is_empty();
                self.stamp = None;
                self.names.clear();
                return Ok(changed);
            }
            Err(e) => return Err(e),
        };
        let stamp = Stamp::of(&meta);
        if self.stamp == Some(stamp) {
            return Ok(false);
        }
        let mut buf = Vec::new();
        herakles_core::read_bytes(&self.path, self.limit, &mut buf)?;
        self.names = parse_passwd(&buf);
        self.stamp = Some(stamp);
        Ok(true)
    }

    /// The name of `uid`, or the uid itself as a decimal string.
    pub fn name(&self, uid: u32) -> Arc<str> {
        match self.names.get(&uid) {
            Some(name) => Arc::clone(name),
            None => Arc::from(uid.to_string()),
        }
    }

    /// How many users the file names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Parse passwd lines, `name:password:uid:gid:gecos:home:shell`, into
/// uid → name. Comments, NIS compatibility entries (`+`, `-`) and lines
/// without a numeric uid are skipped. When several names share a uid the
/// first wins, as with `getpwuid(3)`. Names are decoded lossily.
pub fn parse_passwd(buf: &[u8]) -> HashMap<u32, Arc<str>> {
    let mut names = HashMap::new();
    for line in buf.split(|&b| b == b'\n') {
        let mut fields = line.splitn(4, |&b| b == b':');
        let (Some(name), Some(_password), Some(uid)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if name.is_empty() || matches!(name[0], b'#' | b'+' | b'-') {
            continue;
        }
        let Some(uid) = std::str::from_utf8(uid).ok().and_then(|u| u.parse().ok()) else {
            continue;
        };
        names
            .entry(uid)
            .or_insert_with(|| Arc::from(String::from_utf8_lossy(name).as_ref()));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, SystemTime};

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        # a comment:x:5:5\n\
        +nisuser:x:6:6::/:/bin/sh\n\
        -other::7:7::/:\n\
        broken line\n\
        nouid:x::9::/:\n\
        toolarge:x:4294967296:1::/:\n\
        alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
        alias:x:1000:1000::/home/alice:/bin/bash\n\
        j\u{f6}rg:x:1001:1001::/home/j:/bin/sh\n";

    #[test]
    fn parses_names_and_skips_the_rest() {
        let names = parse_passwd(PASSWD.as_bytes());
        let mut got: Vec<(u32, &str)> = names.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        got.sort();
        assert_eq!(
            got,
            [
                (0, "root"),
                (1, "daemon"),
                (1000, "alice"),
                (1001, "j\u{f6}rg")
            ]
        );
        let bad = parse_passwd(b"n\xffame:x:5:5::/:\n");
        assert_eq!(bad[&5].as_ref(), "n\u{fffd}ame");
    }

    #[test]
    fn rootfs_layout_and_numeric_fallback() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/passwd"), PASSWD).unwrap();
        let mut users = Users::new(root.path());
        assert_eq!(users.name(0).as_ref(), "0", "nothing read before refresh");
        assert!(users.refresh().unwrap());
        assert_eq!(users.name(0).as_ref(), "root");
        assert_eq!(users.name(65534).as_ref(), "65534");
        assert_eq!(users.len(), 4);
        assert!(!users.refresh().unwrap(), "unchanged file is not reread");
    }

    #[test]
    fn rereads_on_every_kind_of_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let pinned = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let write = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(pinned).unwrap();
        };
        write("a:x:1:1::/:\n");
        let mut users = Users::with_file(path.clone(), MAX_BYTES);
        assert!(users.refresh().unwrap());
        assert_eq!(users.name(1).as_ref(), "a");

        // Same size, same mtime, rewritten in place: the change time moves.
        // File times come from a clock that ticks every few milliseconds,
        // so rewrite until it has.
        let before = std::fs::metadata(&path).unwrap();
        loop {
            write("b:x:1:1::/:\n");
            let now = std::fs::metadata(&path).unwrap();
            if (now.ctime(), now.ctime_nsec()) != (before.ctime(), before.ctime_nsec()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(users.refresh().unwrap());
        assert_eq!(users.name(1).as_ref(), "b");

        // A new file renamed over it, same size and times: a new inode.
        let new = dir.path().join("passwd.new");
        std::fs::write(&new, "c:x:1:1::/:\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let f = std::fs::File::options().write(true).open(&new).unwrap();
        f.set_modified(meta.modified().unwrap()).unwrap();
        std::fs::rename(&new, &path).unwrap();
        assert!(users.refresh().unwrap());
        assert_eq!(users.name(1).as_ref(), "c");

        // Removed: numbers only. Back again: names again.
        std::fs::remove_file(&path).unwrap();
        assert!(users.refresh().unwrap());
        assert_eq!(users.name(1).as_ref(), "1");
        assert!(!users.refresh().unwrap());
        write("d:x:1:1::/:\n");
        assert!(users.refresh().unwrap());
        assert_eq!(users.name(1).as_ref(), "d");
    }

    #[test]
    fn a_file_past_the_limit_is_an_error_and_keeps_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, "aa:x:1:1::/:\n").unwrap();
        let mut users = Users::with_file(path.clone(), 20);
        users.refresh().unwrap();
        // Cut at 20 bytes, "bb:x:2" would name uid 2 when the file says
        // 22: the file is refused whole instead.
        std::fs::write(&path, "aa:x:1:1::/:\nbb:x:22:2::/:\n").unwrap();
        let err = users.refresh().unwrap_err();
        assert!(herakles_core::is_too_large(&err));
        assert_eq!(users.name(1).as_ref(), "aa");
        assert_eq!(users.name(22).as_ref(), "22");
    }

    #[test]
    fn unreadable_file_keeps_names_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, "a:x:1:1::/:\n").unwrap();
        let mut users = Users::with_file(path.clone(), MAX_BYTES);
        users.refresh().unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(users.refresh().is_err(), "a directory cannot be read");
        assert_eq!(users.name(1).as_ref(), "a");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_passwd(&bytes);
        }
    }
}
