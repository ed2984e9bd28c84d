//! Where a process's cgroups are under `--path.sysfs`.
//!
//! The kernel's own accounting of a cgroup (memory, CPU, I/O) is read from
//! files in its directory. That directory is the path from
//! `/proc/<pid>/cgroup` joined to the mount point of its hierarchy, and the
//! mount points follow the layout systemd (and every distribution and
//! container image since) uses under `/sys/fs/cgroup`:
//!
//! - unified (cgroup v2 only): the v2 hierarchy is `/sys/fs/cgroup` itself;
//! - hybrid: v1 controllers in `/sys/fs/cgroup/<controller>` and v2 in
//!   `/sys/fs/cgroup/unified`, usually without controllers;
//! - legacy: v1 only.
//!
//! Co-mounted controllers have one directory (`cpu,cpuacct`) and a
//! symbolic link per controller (`cpu`, `cpuacct`); named hierarchies
//! (`name=systemd`) are mounted at their name. The layout is probed, not
//! read from `/proc/self/mountinfo`: the exporter in a container sees the
//! host's `/sys` at `--path.sysfs`, and its own mount table says nothing
//! about where the host mounted what.

use std::path::{Component, Path, PathBuf};

use super::proc_cgroup::ProcCgroup;

/// The cgroup hierarchies mounted under one sysfs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hierarchy {
    /// The v2 hierarchy's root directory.
    pub unified: Option<PathBuf>,
    /// v1 hierarchies: (directory name, root), e.g. `("cpu,cpuacct", ...)`.
    pub v1: Vec<(String, PathBuf)>,
}

/// A process's (or container's) cgroup directories, for each hierarchy
/// whose accounting is read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupDirs {
    pub unified: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub blkio: Option<PathBuf>,
}

impl Hierarchy {
    /// Probe `<sysfs>/fs/cgroup`. A host with no cgroups mounted there
    /// (or a fixture without them) yields an empty hierarchy.
    pub fn detect(sysfs: &Path) -> Hierarchy {
        let base = sysfs.join("fs/cgroup");
        if base.join("cgroup.controllers").is_file() {
            return Hierarchy {
                unified: Some(base),
                v1: Vec::new(),
            };
        }
        let unified = base.join("unified");
        let unified = unified
            .join("cgroup.controllers")
            .is_file()
            .then_some(unified);
        let mut v1: Vec<(String, PathBuf)> = std::fs::read_dir(&base)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                // A hierarchy root always has cgroup.procs; this also
                // follows the per-controller symbolic links.
                let is_root = name != "unified" && e.path().join("cgroup.procs").is_file();
                is_root.then(|| (name, e.path()))
            })
            .collect();
        v1.sort();
        Hierarchy { unified, v1 }
    }

    /// The root of the v1 hierarchy with `controller` (`memory`,
    /// `name=systemd`): its own directory, or else the co-mounted one
    /// whose name lists it.
    pub fn v1_root(&self, controller: &str) -> Option<&Path> {
        let name = controller.strip_prefix("name=").unwrap_or(controller);
        let exact = self.v1.iter().find(|(n, _)| n == name);
        let listed = || {
            self.v1
                .iter()
                .find(|(n, _)| n.split(',').any(|c| c == name))
        };
        exact.or_else(listed).map(|(_, p)| p.as_path())
    }

    /// The directories of the cgroups `cg` names.
    pub fn dirs(&self, cg: &ProcCgroup) -> CgroupDirs {
        self.dirs_with(cg, |p| Some(p.to_string()))
    }

    /// The directories of the cgroups `select` picks from each of `cg`'s
    /// paths: given [`super::container::find`]'s `Container::cgroup`, the
    /// container's own cgroup rather than the process's (which may be a
    /// sub-cgroup such as CRI-O's `container`). A path `select` rejects,
    /// or one that climbs out with `..`, resolves to nothing.
    pub fn dirs_with(
        &self,
        cg: &ProcCgroup,
        select: impl Fn(&str) -> Option<String>,
    ) -> CgroupDirs {
        let resolve = |root: Option<&Path>, path: Option<&str>| join_cgroup(root?, &select(path?)?);
        let v1 = |controller| resolve(self.v1_root(controller), cg.v1_path(controller));
        CgroupDirs {
            unified: resolve(self.unified.as_deref(), cg.unified.as_deref()),
            memory: v1("memory"),
            cpu: v1("cpu"),
            cpuacct: v1("cpuacct"),
            blkio: v1("blkio"),
        }
    }
}

/// `root` joined with a cgroup path, or `None` if the path has anything
/// but plain names (`..`, `.`): such a path is relative to another cgroup
/// namespace's root, and joining it would leave the hierarchy.
pub fn join_cgroup(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A sysfs with cgroup roots: `dirs` get a `cgroup.procs`, and
    /// `links` are (name, target) symbolic links.
    fn sysfs(dirs: &[&str], links: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let cg = t.path().join("fs/cgroup");
        fs::create_dir_all(&cg).unwrap();
        for d in dirs {
            fs::create_dir_all(cg.join(d)).unwrap();
            fs::write(cg.join(d).join("cgroup.procs"), "").unwrap();
        }
        for (name, target) in links {
            std::os::unix::fs::symlink(target, cg.join(name)).unwrap();
        }
        t
    }

    #[test]
    fn unified_host() {
        let t = sysfs(&[], &[]);
        fs::write(
            t.path().join("fs/cgroup/cgroup.controllers"),
            "cpu io memory\n",
        )
        .unwrap();
        let h = Hierarchy::detect(t.path());
        assert_eq!(h.unified, Some(t.path().join("fs/cgroup")));
        assert!(h.v1.is_empty());
        let cg = ProcCgroup::parse(b"0::/system.slice/a.service\n");
        let dirs = h.dirs(&cg);
        assert_eq!(
            dirs.unified,
            Some(t.path().join("fs/cgroup/system.slice/a.service"))
        );
        assert_eq!((dirs.memory, dirs.cpu), (None, None));
    }

    #[test]
    fn hybrid_host_with_comounted_controllers() {
        let t = sysfs(
            &["unified", "cpu,cpuacct", "memory", "blkio", "systemd"],
            &[("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct")],
        );
        let cg = t.path().join("fs/cgroup");
        fs::write(cg.join("unified/cgroup.controllers"), "").unwrap();
        let h = Hierarchy::detect(t.path());
        assert_eq!(h.unified, Some(cg.join("unified")));
        let names: Vec<&str> = h.v1.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "blkio",
                "cpu",
                "cpu,cpuacct",
                "cpuacct",
                "memory",
                "systemd"
            ]
        );
        assert_eq!(
            h.v1_root("name=systemd"),
            Some(cg.join("systemd").as_path())
        );

        let text = b"9:name=systemd:/s\n4:memory:/m/x\n3:blkio:/b\n2:cpu,cpuacct:/c\n0::/u\n";
        let dirs = h.dirs(&ProcCgroup::parse(text));
        assert_eq!(dirs.unified, Some(cg.join("unified/u")));
        assert_eq!(dirs.memory, Some(cg.join("memory/m/x")));
        assert_eq!(dirs.cpu, Some(cg.join("cpu/c")));
        assert_eq!(dirs.cpuacct, Some(cg.join("cpuacct/c")));
        assert_eq!(dirs.blkio, Some(cg.join("blkio/b")));
    }

    #[test]
    fn comounted_without_links() {
        let t = sysfs(&["cpu,cpuacct"], &[]);
        let h = Hierarchy::detect(t.path());
        assert_eq!(h.unified, None);
        let dirs = h.dirs(&ProcCgroup::parse(b"2:cpu,cpuacct:/c\n"));
        let root = t.path().join("fs/cgroup/cpu,cpuacct");
        assert_eq!(dirs.cpu, Some(root.join("c")));
        assert_eq!(dirs.cpuacct, Some(root.join("c")));
    }

    #[test]
    fn no_cgroups_at_all() {
        let t = tempfile::tempdir().unwrap();
        let h = Hierarchy::detect(t.path());
        assert_eq!(h, Hierarchy::default());
        let dirs = h.dirs(&ProcCgroup::parse(b"0::/a\n4:memory:/a\n"));
        assert_eq!(dirs, CgroupDirs::default());
        // A v1 hierarchy the process is not in, or a directory that is not
        // a hierarchy root, resolves to nothing.
        let t = sysfs(&["memory"], &[]);
        fs::create_dir(t.path().join("fs/cgroup/stray")).unwrap();
        let h = Hierarchy::detect(t.path());
        assert_eq!(h.v1.len(), 1);
        assert_eq!(h.dirs(&ProcCgroup::parse(b"3:cpu:/a\n")).memory, None);
    }

    #[test]
    fn selecting_the_container_cgroup() {
        let t = sysfs(&["memory"], &[]);
        let h = Hierarchy::detect(t.path());
        let id = "f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31";
        let text = format!("4:memory:/kubepods/besteffort/pod73dc8baf-43a0-413e-aac2-5eb0868f6c1a/crio-{id}.scope/container\n");
        let cg = ProcCgroup::parse(text.as_bytes());
        let container = |p: &str| super::super::container::find(p).container.map(|c| c.cgroup);
        let dirs = h.dirs_with(&cg, container);
        assert_eq!(
            dirs.memory,
            Some(t.path().join(format!("fs/cgroup/memory/kubepods/besteffort/pod73dc8baf-43a0-413e-aac2-5eb0868f6c1a/crio-{id}.scope")))
        );
        assert_eq!(h.dirs_with(&cg, |_| None).memory, None);
    }

    #[test]
    fn paths_never_leave_the_hierarchy() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(join_cgroup(root, "/"), Some(root.to_path_buf()));
        assert_eq!(join_cgroup(root, "/a/b"), Some(root.join("a/b")));
        assert_eq!(join_cgroup(root, "/../../etc"), None);
        assert_eq!(join_cgroup(root, "/a/../../b"), None);
        assert_eq!(join_cgroup(root, "/a/./b"), Some(root.join("a/b")));
    }
}
