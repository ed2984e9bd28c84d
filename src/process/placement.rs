//! Where each process runs (its cgroup, container, pod, systemd unit and
//! user) and its file descriptor limit: facts that change rarely, read
//! once per process and then only now and again.
//!
//! A scan reads `stat`, `cmdline`, `exe` and `io` of every process on every
//! scrape. `cgroup` would add about half again to that (it has a line per
//! hierarchy, ten on a hybrid host, and the kernel builds each under the
//! cgroup core's global lock, which container runtimes also take), and
//! `status` (for the uid) and `limits` as much again. But these facts
//! change only at `exec` (a setuid program; runc moves a container's first
//! process into its cgroup before it execs the entrypoint), or when
//! something moves a process (`echo $pid > cgroup.procs`, `systemd-run
//! --scope`, `setuid` without exec in a daemon dropping privileges), which
//! is rare.
//!
//! So the scan reads them for a process only when it is **due**:
//!
//! - the first time it is seen, identified by (pid, start time);
//! - when its `comm` or `exe` changed since the last scrape (an exec);
//! - and otherwise in turn: every scrape, the processes whose pid is
//!   congruent to the scrape's number modulo `attribution_recheck_scrapes`
//!   (N). Each process is reread every N scrapes, so a move without exec
//!   is seen within N scrapes (at the default 10 and a 15 s scrape
//!   interval, within 150 s), at a tenth of the cost of rereading all.
//!
//! Steady state costs one hash lookup per process and the reads of a
//! tenth of them. The reads happen inside the scan, on its threads and
//! under its read deadline, so a read that blocks costs its process only.
//!
//! The `cgroup` file is attributed here, on the table's thread: on a host
//! with thousands of processes there are a few hundred distinct files
//! (every process of a container has the same one), so identical files are
//! parsed once and share one [`Attribution`]. The scan does not even copy
//! a file it has seen: it hashes it, and returns the bytes only the first
//! time a hash turns up (in this scan, or known from earlier ones), the
//! hash alone after that. A 64-bit hash over a few hundred distinct files
//! collides with a probability around 10⁻¹⁴; it would attribute one
//! process to another's cgroup. The hash is keyed at random (see
//! [`file_hash`]), so a collision cannot be searched for in advance.

use std::collections::hash_map::{DefaultHasher, RandomState};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use crate::attribution::fds::{self, Limit};
use crate::attribution::identity::Identity;
use crate::attribution::proc_cgroup::{self, ProcCgroup};
use crate::attribution::status;
use crate::attribution::users::Users;
use crate::classify::Placement;

use super::parse::{absent, vanished, FileKind, Key};

/// What a process's cgroup file says, shared by every process with the
/// same file.
#[derive(Debug, PartialEq, Eq)]
pub struct Attribution {
    /// The parsed file, for locating the cgroup directories whose
    /// accounting the kernel keeps.
    pub cgroups: ProcCgroup,
    pub identity: Identity,
    /// `<runtime>://<id>`, what `container_matches` rules see.
    pub container_ref: Option<String>,
}

impl Attribution {
    pub fn of(cgroups: ProcCgroup) -> Attribution {
        let identity = Identity::of(&cgroups);
        let container_ref = identity
            .container
            .as_ref()
            .map(|c| format!("{}://{}", c.runtime.as_str(), c.id));
        Attribution {
            cgroups,
            identity,
            container_ref,
        }
    }

    pub fn unit(&self) -> Option<&str> {
        self.identity.unit.as_ref().map(|u| u.unit.as_str())
    }
}

/// A `cgroup` file as the scan returns it: see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupFile {
    /// A file whose hash is known, from earlier scans or another process
    /// of this one.
    Known(u64),
    /// The first of its kind: its hash and bytes.
    New(u64, Box<[u8]>),
}

/// The hash identifying a `cgroup` file. Keyed at random once per exporter
/// process: cgroup names are partly chosen by users (a delegated subtree
/// under `user@.service`), and with a fixed key someone could search
/// offline for a name whose file hashes like another's.
pub fn file_hash(bytes: &[u8]) -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new).hash_one(bytes)
}

/// What the scan read for a process that was due.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Read {
    /// The `cgroup` file; `None` when attribution is off or it could not
    /// be read.
    pub cgroup: Option<CgroupFile>,
    /// The effective uid, from `status`.
    pub uid: Option<u32>,
    /// The soft limit on open files, from `limits`; `None` when file
    /// descriptors are not counted or it could not be read,
    /// `Some(Limit::Unlimited)` for no limit.
    pub fd_limit: Option<Limit>,
}

/// Which processes the scan reads placement for; built once per scrape
/// from what the last scrape saw.
#[derive(Debug, Default)]
pub struct Due {
    /// (pid, start time) → [`exec_stamp`] of the processes seen last time.
    pub known: HashMap<Key, u64>,
    /// This scrape's number.
    pub scrape: u64,
    /// `attribution_recheck_scrapes`.
    pub period: u64,
    /// Read `cgroup` (attribution is on).
    pub cgroup: bool,
    /// Read `status` for the uid (attribution is on).
    pub uid: bool,
    /// Read `limits` (file descriptors are counted).
    pub limits: bool,
    /// Hashes of the `cgroup` files the table knows, and those this scan
    /// has returned the bytes of.
    pub files: Mutex<HashSet<u64>>,
}

impl Due {
    /// Whether process `key`, whose `comm` and `exe` hash to `stamp`, is
    /// read this scrape: see the module documentation.
    pub fn wants(&self, key: Key, stamp: u64) -> bool {
        if !(self.cgroup || self.uid || self.limits) {
            return false;
        }
        match self.known.get(&key) {
            None => true,
            Some(known) if *known != stamp => true,
            Some(_) => u64::from(key.0) % self.period.max(1) == self.scrape % self.period.max(1),
        }
    }
}

/// A hash of what an exec changes, to notice one cheaply.
pub fn exec_stamp(comm: &str, exe: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (comm, exe).hash(&mut h);
    h.finish()
}

/// Read `cgroup`, `status` and `limits` of the process at `dir`, as `due`
/// asks; `None` if the process exited meanwhile or `reading` (told of each
/// file before it is read) says the scan gave up on it. A file that does
/// not exist for a live process is left out silently. `uid` is the uid
/// when the scan already read `status` (for the context switches). A file
/// that cannot be read or parsed is passed to `fail` and left out.
pub fn read(
    dir: &Path,
    due: &Due,
    uid: Option<u32>,
    buf: &mut Vec<u8>,
    reading: &dyn Fn(FileKind) -> bool,
    fail: &mut dyn FnMut(FileKind),
) -> Option<Read> {
    let mut out = Read {
        uid,
        ..Read::default()
    };
    if due.cgroup {
        if !reading(FileKind::Cgroup) {
            return None;
        }
        match herakles_core::read_bytes(&dir.join("cgroup"), proc_cgroup::MAX_BYTES, buf) {
            Ok(()) => {
                let h = file_hash(buf);
                let mut files = due.files.lock().unwrap_or_else(|e| e.into_inner());
                out.cgroup = Some(if files.insert(h) {
                    CgroupFile::New(h, buf.as_slice().into())
                } else {
                    CgroupFile::Known(h)
                });
            }
            Err(e) if vanished(&e, dir) => return None,
            Err(e) if absent(&e) => {}
            Err(_) => fail(FileKind::Cgroup),
        }
    }
    if due.uid && out.uid.is_none() {
        if !reading(FileKind::Status) {
            return None;
        }
        match status::read(dir, buf) {
            Ok(s) => match s.and_then(|s| s.euid()) {
                Some(u) => out.uid = Some(u),
                None => fail(FileKind::Status),
            },
            Err(e) if vanished(&e, dir) => return None,
            Err(e) if absent(&e) => {}
            Err(_) => fail(FileKind::Status),
        }
    }
    if due.limits {
        if !reading(FileKind::Limits) {
            return None;
        }
        match fds::read_open_files_limit(dir, buf) {
            Ok(Some(l)) => out.fd_limit = Some(l.soft),
            Ok(None) => fail(FileKind::Limits),
            Err(e) if vanished(&e, dir) => return None,
            Err(e) if absent(&e) => {}
            Err(_) => fail(FileKind::Limits),
        }
    }
    Some(out)
}

/// What is known about one process's placement.
#[derive(Clone, Debug, Default)]
pub struct Placed {
    pub attribution: Option<Arc<Attribution>>,
    pub uid: Option<u32>,
    /// The user's name, or the uid in decimal.
    pub user: Option<Arc<str>>,
    pub fd_limit: Option<Limit>,
}

impl Placed {
    /// The facts placement rules match.
    pub fn rule_view(&self) -> Placement<'_> {
        let a = self.attribution.as_deref();
        Placement {
            unit: a.and_then(Attribution::unit),
            container: a.and_then(|a| a.container_ref.as_deref()),
            cgroup: a.map(|a| a.identity.cgroup.as_str()),
            user: self.user.as_deref(),
        }
    }

    /// Whether a placement rule could see a difference between `self` and
    /// `other` (a move, or a change of user).
    pub fn same_place(&self, other: &Placed) -> bool {
        self.rule_view() == other.rule_view()
    }
}

/// Attributions of the distinct cgroup files seen, and user names.
pub struct Interner {
    by_hash: HashMap<u64, Arc<Attribution>>,
    users: Users,
}

impl Interner {
    pub fn new(rootfs: &Path) -> Interner {
        Interner {
            by_hash: HashMap::new(),
            users: Users::new(rootfs),
        }
    }

    /// Once per scrape: reread the passwd file if it changed (a `stat`
    /// otherwise). Returns whether user names may have changed.
    pub fn refresh_users(&mut self) -> bool {
        match self.users.refresh() {
            Ok(changed) => changed,
            Err(e) => {
                tracing::debug!(error = %e, "reading the passwd file for user names");
                false
            }
        }
    }

    /// Forget the attributions no process holds any more, and return the
    /// hashes of those left, for the next scan's [`Due::files`].
    pub fn collect(&mut self) -> HashSet<u64> {
        self.by_hash.retain(|_, a| Arc::strong_count(a) > 1);
        self.by_hash.keys().copied().collect()
    }

    /// Attribute every new file a scan returned. Done for all of a scan's
    /// processes before [`Interner::apply`], since a process may name by
    /// hash a file another process (later in pid order) returned.
    pub fn learn(&mut self, file: &CgroupFile) {
        if let CgroupFile::New(h, bytes) = file {
            self.by_hash
                .entry(*h)
                .or_insert_with(|| Arc::new(Attribution::of(ProcCgroup::parse(bytes))));
        }
    }

    fn attribution(&self, file: &CgroupFile) -> Option<Arc<Attribution>> {
        let (CgroupFile::Known(h) | CgroupFile::New(h, _)) = file;
        self.by_hash.get(h).cloned()
    }

    pub fn user(&self, uid: u32) -> Arc<str> {
        self.users.name(uid)
    }

    /// Distinct cgroup files held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Update `placed` with what a scan read (after [`Interner::learn`]):
    /// what was read replaces what was known, what could not be read
    /// keeps it.
    pub fn apply(&mut self, placed: &mut Placed, read: &Read) {
        if let Some(a) = read.cgroup.as_ref().and_then(|f| self.attribution(f)) {
            placed.attribution = Some(a);
        }
        if let Some(uid) = read.uid {
            placed.uid = Some(uid);
            placed.user = Some(self.user(uid));
        }
        if read.fd_limit.is_some() {
            placed.fd_limit = read.fd_limit;
        }
    }
}

/// Where process `pid` runs, read from `procfs` now, with user names from
/// `rootfs`: for `subgroups --explain`. `None` when its cgroup cannot be
/// read.
pub fn read_one(procfs: &Path, rootfs: &Path, pid: u32) -> Option<Placed> {
    let dir = procfs.join(pid.to_string());
    let mut buf = Vec::new();
    let mut interner = Interner::new(rootfs);
    interner.refresh_users();
    let due = Due {
        cgroup: true,
        uid: true,
        ..Due::default()
    };
    let read = read(&dir, &due, None, &mut buf, &|_| true, &mut |_| {})?;
    interner.learn(read.cgroup.as_ref()?);
    let mut placed = Placed::default();
    interner.apply(&mut placed, &read);
    Some(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31";

    #[test]
    fn due_first_sight_exec_and_rotation() {
        let stamp = exec_stamp("nginx", "nginx");
        let mut due = Due {
            period: 10,
            scrape: 3,
            cgroup: true,
            ..Due::default()
        };
        assert!(due.wants((100, 1), stamp), "first sight");
        due.known.insert((100, 1), stamp);
        due.known.insert((103, 1), stamp);
        assert!(!due.wants((100, 1), stamp));
        assert!(due.wants((100, 1), exec_stamp("nginx", "bash")), "exec");
        assert!(due.wants((100, 2), stamp), "a reused pid is a new process");
        assert!(due.wants((103, 1), stamp), "its turn: 103 = 3 mod 10");
        // Over `period` scrapes every known process has its turn once.
        let turns = (0..10)
            .filter(|n| {
                due.scrape = *n;
                due.wants((100, 1), stamp)
            })
            .count();
        assert_eq!(turns, 1);
        // With nothing to read, nothing is due.
        let off = Due {
            period: 10,
            ..Due::default()
        };
        assert!(!off.wants((100, 1), stamp));
    }

    #[test]
    fn identical_files_share_one_attribution_and_are_copied_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = format!("0::/system.slice/docker-{ID}.scope\n");
        for pid in ["1", "2"] {
            std::fs::create_dir(dir.path().join(pid)).unwrap();
            std::fs::write(dir.path().join(pid).join("cgroup"), &file).unwrap();
        }
        let due = Due {
            cgroup: true,
            ..Due::default()
        };
        let read = |pid: &str| {
            let r = read(
                &dir.path().join(pid),
                &due,
                None,
                &mut Vec::new(),
                &|_| true,
                &mut |_| {},
            );
            r.unwrap().cgroup.unwrap()
        };
        let (first, second) = (read("1"), read("2"));
        let h = file_hash(file.as_bytes());
        assert_eq!(first, CgroupFile::New(h, file.as_bytes().into()));
        assert_eq!(second, CgroupFile::Known(h), "the bytes are returned once");

        let mut i = Interner::new(dir.path());
        // The process naming the file by hash may come first.
        i.learn(&second);
        i.learn(&first);
        let (mut a, mut b) = (Placed::default(), Placed::default());
        let with = |f: &CgroupFile| Read {
            cgroup: Some(f.clone()),
            ..Read::default()
        };
        i.apply(&mut a, &with(&second));
        i.apply(&mut b, &with(&first));
        let (a, b) = (a.attribution.unwrap(), b.attribution.unwrap());
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.container_ref.as_deref(), Some(&*format!("docker://{ID}")));
        assert_eq!(a.unit(), Some(&*format!("docker-{ID}.scope")));
        assert_eq!(i.collect(), HashSet::from([h]), "held: kept");
        drop((a, b));
        assert!(i.collect().is_empty(), "no process holds it any more");
    }

    #[test]
    fn reads_what_is_due_and_keeps_what_fails() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("cgroup"), "0::/system.slice/cron.service\n").unwrap();
        std::fs::write(p.join("status"), "Name:\tcron\nUid:\t0\t33\t0\t0\n").unwrap();
        std::fs::write(
            p.join("limits"),
            "Limit Soft Limit Hard Limit Units\nMax open files            1024                 4096                 files\n",
        )
        .unwrap();
        let due = Due {
            cgroup: true,
            uid: true,
            limits: true,
            ..Due::default()
        };
        let files = std::cell::RefCell::new(Vec::new());
        let reading = |f| {
            files.borrow_mut().push(f);
            true
        };
        let r = read(p, &due, None, &mut Vec::new(), &reading, &mut |_| {}).unwrap();
        assert_eq!(
            files.into_inner(),
            [FileKind::Cgroup, FileKind::Status, FileKind::Limits]
        );
        assert_eq!(r.uid, Some(33), "the effective uid");
        assert_eq!(r.fd_limit, Some(Limit::Value(1024)));
        let mut i = Interner::new(p);
        let mut placed = Placed::default();
        i.learn(r.cgroup.as_ref().unwrap());
        i.apply(&mut placed, &r);
        assert_eq!(
            placed.attribution.as_ref().unwrap().unit(),
            Some("cron.service")
        );
        assert_eq!(placed.user.as_deref(), Some("33"), "no passwd: the number");

        // The uid known from the scan's own status read is not read again;
        // a cgroup file that fails keeps the attribution known before.
        std::fs::remove_file(p.join("cgroup")).unwrap();
        std::fs::create_dir(p.join("cgroup")).unwrap();
        let mut failed = Vec::new();
        let r = read(p, &due, Some(7), &mut Vec::new(), &|_| true, &mut |f| {
            failed.push(f)
        })
        .unwrap();
        assert_eq!(failed, [FileKind::Cgroup]);
        assert_eq!((r.cgroup.is_none(), r.uid), (true, Some(7)));
        i.apply(&mut placed, &r);
        assert_eq!(
            placed.attribution.as_ref().unwrap().unit(),
            Some("cron.service")
        );
        assert_eq!(placed.uid, Some(7));

        // A process that exits part-way yields nothing.
        let gone = tempfile::tempdir().unwrap();
        let r = read(
            gone.path(),
            &due,
            None,
            &mut Vec::new(),
            &|_| true,
            &mut |_| {},
        );
        assert_eq!(r, None);
        // Nor does one the scan gave up on.
        let r = read(p, &due, None, &mut Vec::new(), &|_| false, &mut |_| {});
        assert_eq!(r, None);
    }

    #[test]
    fn rule_view_and_moves() {
        let root = tempfile::tempdir().unwrap();
        let mut i = Interner::new(root.path());
        let mut a = Placed::default();
        assert!(a.rule_view().is_empty());
        let new = |text: &str| CgroupFile::New(file_hash(text.as_bytes()), text.as_bytes().into());
        let read = Read {
            cgroup: Some(new(&format!("0::/system.slice/docker-{ID}.scope\n"))),
            uid: Some(0),
            fd_limit: None,
        };
        i.learn(read.cgroup.as_ref().unwrap());
        i.apply(&mut a, &read);
        let v = a.rule_view();
        assert_eq!(v.cgroup, Some(&*format!("/system.slice/docker-{ID}.scope")));
        assert_eq!(v.user, Some("0"));
        let mut b = a.clone();
        assert!(a.same_place(&b));
        let moved = Read {
            cgroup: Some(new("0::/system.slice/cron.service\n")),
            ..Read::default()
        };
        i.learn(moved.cgroup.as_ref().unwrap());
        i.apply(&mut b, &moved);
        assert!(!a.same_place(&b));
    }
}
