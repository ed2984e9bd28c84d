//! `/proc/<pid>/cgroup`: the cgroups a process is in, one line per mounted
//! hierarchy.
//!
//! Each line is `hierarchy-id:controllers:path`. On a cgroup v2 host there
//! is one line, `0::/path`. A v1 host has one line per v1 hierarchy
//! (`4:memory:/docker/<id>`, `1:name=systemd:/...`), and a hybrid host
//! such as systemd's default before v252 has both: the v1 controllers plus
//! `0::` for the v2 hierarchy mounted at `/sys/fs/cgroup/unified`, which
//! then usually holds no controllers and only tracks processes.
//!
//! Which line names the workload depends on the host, so this module keeps
//! them all; [`super::identity`] chooses. The kernel writes the path
//! verbatim, without escaping, and cgroup directory names may hold any
//! byte but `/`: the path is decoded lossily and a line that does not have
//! the three fields is skipped, never trusted.

use std::path::Path;

/// The most of the file that is read. A line per hierarchy, each path at
/// most `PATH_MAX`: real files are well under a kilobyte.
pub const MAX_BYTES: usize = 64 * 1024;

/// The most lines kept; the kernel has 16 hierarchy slots.
const MAX_LINES: usize = 32;

/// One v1 hierarchy a process is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Membership {
    /// Comma-separated controllers, as the kernel lists them: `memory`,
    /// `cpu,cpuacct`, or `name=systemd` for a named hierarchy.
    pub controllers: String,
    /// The cgroup path, from the root of that hierarchy.
    pub path: String,
}

impl V1Membership {
    /// Whether this hierarchy has `controller` (`memory`, `name=systemd`).
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.split(',').any(|c| c == controller)
    }
}

/// A parsed `/proc/<pid>/cgroup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcCgroup {
    /// The path in the v2 hierarchy (`0::<path>`), when one is mounted.
    pub unified: Option<String>,
    /// The v1 hierarchies, in file order.
    pub v1: Vec<V1Membership>,
}

/// v1 controllers whose path best names a workload, most telling first.
/// `name=systemd` is where systemd and container runtimes put a process
/// deliberately; `memory` and `cpu` are the controllers every runtime
/// configures. The rest follow in file order.
const V1_PREFERENCE: [&str; 5] = ["name=systemd", "memory", "cpu", "cpuacct", "pids"];

impl ProcCgroup {
    /// Parse the file. Lines that are not `id:controllers:/path` are
    /// skipped; a file with none of them, or longer than [`MAX_BYTES`]
    /// (no kernel writes one), parses to the empty value.
    pub fn parse(buf: &[u8]) -> ProcCgroup {
        if buf.len() > MAX_BYTES {
            return ProcCgroup::default();
        }
        let text = String::from_utf8_lossy(buf);
        let mut out = ProcCgroup::default();
        for line in text.lines().take(MAX_LINES) {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || !path.starts_with('/') {
                continue;
            }
            if controllers.is_empty() {
                // Only the v2 hierarchy has no controllers in this file.
                if out.unified.is_none() {
                    out.unified = Some(path.to_string());
                }
            } else {
                out.v1.push(V1Membership {
                    controllers: controllers.to_string(),
                    path: path.to_string(),
                });
            }
        }
        out
    }

    /// Read and parse `<pid_dir>/cgroup`; a file longer than
    /// [`MAX_BYTES`] is an error.
    pub fn read(pid_dir: &Path, buf: &mut Vec<u8>) -> std::io::Result<ProcCgroup> {
        herakles_core::read_bytes(&pid_dir.join("cgroup"), MAX_BYTES, buf)?;
        Ok(ProcCgroup::parse(buf))
    }

    /// The path in the v1 hierarchy that has `controller`.
    pub fn v1_path(&self, controller: &str) -> Option<&str> {
        self.v1
            .iter()
            .find(|m| m.has(controller))
            .map(|m| m.path.as_str())
    }

    /// The path systemd tracks the process by: the v2 one when the process
    /// is placed in v2 (unified and hybrid hosts), else `name=systemd`
    /// (legacy hosts, where v2 is absent or unused).
    pub fn systemd_path(&self) -> Option<&str> {
        match self.unified.as_deref() {
            Some(p) if p != "/" => Some(p),
            unified => self.v1_path("name=systemd").or(unified),
        }
    }

    /// Every distinct path other than the root, the most telling first:
    /// v2, then the v1 controllers in [`V1_PREFERENCE`] order, then the
    /// other v1 hierarchies in file order.
    ///
    /// On a hybrid host a container runtime may place a process in the v1
    /// controllers only (its v2 path then stays in the runtime's own
    /// service), so no single line can be trusted to name the container:
    /// callers try these in turn.
    pub fn candidates(&self) -> Vec<&str> {
        let preferred = V1_PREFERENCE.iter().filter_map(|c| self.v1_path(c));
        let rest = self.v1.iter().map(|m| m.path.as_str());
        let mut out: Vec<&str> = Vec::new();
        for p in self
            .unified
            .as_deref()
            .into_iter()
            .chain(preferred)
            .chain(rest)
        {
            if p != "/" && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// This machine's own file (a hybrid host without systemd).
    const HYBRID: &[u8] = b"9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n4:memory:/process_api/f3a53e5294e6e0ee9f3d202ed5680673\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    #[test]
    fn hybrid_host_keeps_every_hierarchy() {
        let cg = ProcCgroup::parse(HYBRID);
        assert_eq!(cg.unified.as_deref(), Some("/"));
        assert_eq!(cg.v1.len(), 9);
        assert_eq!(
            cg.v1_path("memory"),
            Some("/process_api/f3a53e5294e6e0ee9f3d202ed5680673")
        );
        assert_eq!(cg.v1_path("name=systemd"), Some("/"));
        assert_eq!(cg.v1_path("hugetlb"), None);
        assert_eq!(
            cg.candidates(),
            ["/process_api/f3a53e5294e6e0ee9f3d202ed5680673"]
        );
        assert_eq!(cg.systemd_path(), Some("/"));
    }

    #[test]
    fn unified_host_has_one_line() {
        let cg = ProcCgroup::parse(b"0::/system.slice/nginx.service\n");
        assert_eq!(cg.unified.as_deref(), Some("/system.slice/nginx.service"));
        assert!(cg.v1.is_empty());
        assert_eq!(cg.candidates(), ["/system.slice/nginx.service"]);
        assert_eq!(cg.systemd_path(), Some("/system.slice/nginx.service"));
    }

    #[test]
    fn comounted_controllers_and_named_hierarchies() {
        let text = b"12:cpu,cpuacct:/docker/abc\n1:name=systemd:/system.slice/docker.service\n0::/system.slice/docker.service\n";
        let cg = ProcCgroup::parse(text);
        assert_eq!(cg.v1_path("cpu"), Some("/docker/abc"));
        assert_eq!(cg.v1_path("cpuacct"), Some("/docker/abc"));
        assert!(cg.v1[0].has("cpu") && !cg.v1[0].has("cpu,cpuacct"));
        assert_eq!(
            cg.candidates(),
            ["/system.slice/docker.service", "/docker/abc"]
        );
    }

    #[test]
    fn legacy_host_tracks_units_in_name_systemd() {
        let text =
            b"5:memory:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n";
        let cg = ProcCgroup::parse(text);
        assert_eq!(cg.unified, None);
        assert_eq!(cg.systemd_path(), Some("/system.slice/cron.service"));
        // Hybrid, v2 left at the root: systemd's path is name=systemd's.
        let text = b"1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n0::/\n";
        let cg = ProcCgroup::parse(text);
        assert_eq!(
            cg.systemd_path(),
            Some("/user.slice/user-1000.slice/session-2.scope")
        );
    }

    #[test]
    fn colons_in_paths_and_malformed_lines() {
        let text = b"garbage\n:memory:/x\nx:memory:/x\n3:memory:relative\n4:memory:/a:b:c\n\n0::/first\n0::/second\n";
        let cg = ProcCgroup::parse(text);
        assert_eq!(cg.v1.len(), 1);
        assert_eq!(cg.v1_path("memory"), Some("/a:b:c"));
        assert_eq!(cg.unified.as_deref(), Some("/first"));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let cg = ProcCgroup::parse(b"0::/odd\xffname\n");
        assert_eq!(cg.unified.as_deref(), Some("/odd\u{fffd}name"));
    }

    #[test]
    fn bounded_in_lines_and_bytes() {
        let mut text = String::new();
        for i in 1..=100 {
            text.push_str(&format!("{i}:c{i}:/p\n"));
        }
        assert_eq!(ProcCgroup::parse(text.as_bytes()).v1.len(), MAX_LINES);
        // Longer than any real file: nothing, rather than a path cut short
        // that would name another cgroup.
        let long = format!("1:memory:/a\n0::/{}\n", "a".repeat(MAX_BYTES));
        assert_eq!(ProcCgroup::parse(long.as_bytes()), ProcCgroup::default());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup"), &long).unwrap();
        let err = ProcCgroup::read(dir.path(), &mut Vec::new()).unwrap_err();
        assert!(herakles_core::is_too_large(&err));
    }

    #[test]
    fn reads_this_process() {
        let mut buf = Vec::new();
        let cg = ProcCgroup::read(Path::new("/proc/self"), &mut buf).unwrap();
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let v2 = text.lines().find_map(|l| l.strip_prefix("0::"));
        assert_eq!(cg.unified.as_deref(), v2);
        assert_eq!(
            cg.v1.len(),
            text.lines().filter(|l| !l.starts_with("0::")).count()
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let cg = ProcCgroup::parse(&bytes);
            let _ = cg.candidates();
            let _ = cg.systemd_path();
        }

        #[test]
        fn line_shaped_input_never_panics(lines in proptest::collection::vec("[0-9]{0,2}:[a-z=,]{0,12}:[/a-z.:-]{0,30}", 0..20)) {
            let cg = ProcCgroup::parse(lines.join("\n").as_bytes());
            for p in cg.candidates() {
                prop_assert!(p.starts_with('/') && p != "/");
            }
        }
    }
}
