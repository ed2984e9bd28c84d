//! One process's attribution: the cgroup that names its workload, and the
//! container, pod and systemd unit read from it.
//!
//! A process has one cgroup path per hierarchy, and on v1 and hybrid hosts
//! they need not agree: a runtime with the cgroupfs driver may move a
//! container into `/docker/<id>` in every v1 controller while its v2 path
//! stays in `containerd.service`. So the container and pod come from the
//! first candidate path (see [`ProcCgroup::candidates`]) in which anything
//! is recognised, and that path is the one reported as the process's
//! cgroup. The unit comes from the path systemd tracks, whatever the
//! container: a Docker container's processes belong to both
//! `docker-<id>.scope` and container `<id>`.

use super::container::{self, Container, Monitor, Pod};
use super::proc_cgroup::ProcCgroup;
use super::systemd::{self, Unit};

/// What a process's cgroups say about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The cgroup path that names the workload; `/` for a process in no
    /// cgroup but the root.
    pub cgroup: String,
    pub container: Option<Container>,
    /// Set for a runtime's supervisor (conmon, LXC's monitor) instead of
    /// `container`.
    pub monitor: Option<Monitor>,
    pub pod: Option<Pod>,
    pub unit: Option<Unit>,
    /// Some path climbs above the root with `..`: the exporter runs in a
    /// cgroup namespace of its own (`--cgroupns=private`, the default of
    /// Docker and Podman on cgroup v2) and sees other processes' cgroups
    /// only relative to its own. What the path still shows is used, but
    /// the kernel accounting of these cgroups cannot be found.
    pub outside_namespace: bool,
}

impl Identity {
    /// Attribute a process from its parsed `/proc/<pid>/cgroup`.
    pub fn of(cg: &ProcCgroup) -> Identity {
        let candidates = cg.candidates();
        let outside_namespace = candidates.iter().any(|p| climbs_out(p));
        let found = candidates
            .iter()
            .map(|p| (*p, container::find(p)))
            .find(|(_, f)| !f.is_empty());
        let (cgroup, found) = match found {
            Some((p, found)) => (p, found),
            None => (
                candidates.first().copied().unwrap_or("/"),
                Default::default(),
            ),
        };
        Identity {
            cgroup: cgroup.to_string(),
            container: found.container,
            monitor: found.monitor,
            pod: found.pod,
            unit: cg.systemd_path().and_then(systemd::unit),
            outside_namespace,
        }
    }
}

/// Whether `path` has a `..` component.
fn climbs_out(path: &str) -> bool {
    path.split('/').any(|c| c == "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::container::{Qos, Runtime};

    const ID: &str = "f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31";
    const UID: &str = "73dc8baf-43a0-413e-aac2-5eb0868f6c1a";

    fn of(text: &str) -> Identity {
        Identity::of(&ProcCgroup::parse(text.as_bytes()))
    }

    #[test]
    fn unified_kubernetes_container() {
        let path = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope", UID.replace('-', "_"));
        let id = of(&format!("0::{path}\n"));
        assert_eq!(id.cgroup, path);
        let c = id.container.unwrap();
        assert_eq!((c.runtime, c.id.as_str()), (Runtime::Containerd, ID));
        let p = id.pod.unwrap();
        assert_eq!((p.uid.as_str(), p.qos), (UID, Qos::Burstable));
        assert_eq!(id.unit.unwrap().unit, format!("cri-containerd-{ID}.scope"));
        assert!(!id.outside_namespace);
    }

    #[test]
    fn hybrid_host_with_the_container_in_v1_only() {
        // runc with the cgroupfs driver, v2 left in containerd's service.
        let text = format!(
            "9:name=systemd:/docker/{ID}\n4:memory:/docker/{ID}\n1:cpu,cpuacct:/docker/{ID}\n0::/system.slice/containerd.service\n"
        );
        let id = of(&text);
        assert_eq!(id.cgroup, format!("/docker/{ID}"));
        assert_eq!(id.container.unwrap().runtime, Runtime::Docker);
        // systemd tracks the process by its v2 path on a hybrid host.
        assert_eq!(id.unit.unwrap().unit, "containerd.service");
    }

    #[test]
    fn podman_on_this_machine() {
        // Verbatim from `podman run --runtime runc` here (hybrid, cgroupfs).
        let text = format!("9:name=systemd:/libpod_parent/libpod-{ID}\n8:pids:/libpod_parent/libpod-{ID}\n4:memory:/libpod_parent/libpod-{ID}\n1:cpu:/libpod_parent/libpod-{ID}\n0::/libpod_parent/libpod-{ID}\n");
        let id = of(&text);
        assert_eq!(id.container.unwrap().id, ID);
        assert_eq!(id.unit, None);
        let conmon = of("9:name=systemd:/\n8:pids:/libpod_parent/conmon\n4:memory:/libpod_parent/conmon\n0::/\n");
        assert_eq!(conmon.cgroup, "/libpod_parent/conmon");
        assert_eq!(conmon.container, None);
        assert_eq!(conmon.monitor.unwrap().runtime, Runtime::Podman);
    }

    #[test]
    fn plain_units_and_the_root() {
        let id = of("1:name=systemd:/system.slice/cron.service\n0::/system.slice/cron.service\n");
        assert_eq!(id.cgroup, "/system.slice/cron.service");
        assert_eq!(id.container, None);
        assert_eq!(id.unit.unwrap().unit, "cron.service");
        // This machine: no systemd, the harness's memory cgroup.
        let id = of("9:name=systemd:/\n4:memory:/process_api/f3a5\n0::/\n");
        assert_eq!(id.cgroup, "/process_api/f3a5");
        assert_eq!((id.container, id.unit), (None, None));
        let id = of("0::/\n");
        assert_eq!(id.cgroup, "/");
        assert_eq!(of("").cgroup, "/");
    }

    #[test]
    fn private_cgroup_namespace() {
        let id = of(&format!("0::/../../system.slice/docker-{ID}.scope\n"));
        assert!(id.outside_namespace);
        assert_eq!(id.container.unwrap().id, ID);
        // systemd's view is lost: the path no longer starts at its root.
        assert_eq!(id.unit, None);
    }
}
