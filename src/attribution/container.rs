//! Containers and Kubernetes pods, read from the shape of one cgroup path.
//!
//! Runtimes name a container's cgroup after its id, in a shape of their
//! own, and those shapes are stable because other tools (cAdvisor, the
//! kubelet, systemd) depend on them:
//!
//! | runtime | systemd driver | cgroupfs driver |
//! |---|---|---|
//! | Docker | `docker-<id>.scope` | `/docker/<id>` |
//! | containerd (CRI) | `cri-containerd-<id>.scope` | `pod<uid>/<id>` |
//! | containerd (nerdctl) | `nerdctl-<id>.scope` | `/<namespace>/<id>` |
//! | CRI-O | `crio-<id>.scope` | `crio-<id>` |
//! | Podman | `libpod-<id>.scope` | `/libpod_parent/libpod-<id>` |
//! | LXC, LXD | `lxc.payload.<name>` | `/lxc/<name>` |
//!
//! `<id>` is always 64 lowercase hex digits; anything else is not taken
//! for an id, so a unit that merely starts with `docker-` is not a
//! container. A runtime may nest cgroups below the container's own (CRI-O
//! puts the workload in `crio-<id>.scope/container`, a container running
//! systemd has its own slices): the container is the innermost component
//! that names one, and [`Container::cgroup`] is the path up to it, where
//! the kernel accounts the whole container.
//!
//! The runtimes' supervisors (`conmon` for CRI-O and Podman, LXC's monitor)
//! sit in cgroups named after the container but are not part of it: they
//! are reported as a [`Monitor`], so that a container's process count and
//! memory are its own.
//!
//! Kubernetes puts each pod in a cgroup named after its uid below
//! `kubepods`, one level deeper for the burstable and best-effort QoS
//! classes; the systemd driver spells the whole ancestry into each slice
//! name and turns the uid's dashes into underscores (a dash separates
//! levels in a slice name).

/// The container runtime a cgroup path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    Lxc,
    /// Below a Kubernetes pod with the cgroupfs driver, where containerd,
    /// cri-dockerd and other CRI runtimes all use the bare id.
    Cri,
    /// A bare 64-hex-digit id somewhere else (containerd namespaces such
    /// as `/default/<id>`, ECS tasks): a container, runtime unknown.
    Unknown,
}

impl Runtime {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Lxc => "lxc",
            Runtime::Cri => "cri",
            Runtime::Unknown => "unknown",
        }
    }
}

/// A container found in a cgroup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub runtime: Runtime,
    /// The full id (64 hex digits), or the container's name for LXC.
    pub id: String,
    /// The container's own cgroup: the path up to the component naming it.
    pub cgroup: String,
}

/// A runtime's supervisor process cgroup (`conmon`, `lxc.monitor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Monitor {
    pub runtime: Runtime,
    /// The container it supervises, when the cgroup says (Podman with the
    /// cgroupfs manager puts every `conmon` in one shared cgroup).
    pub container_id: Option<String>,
}

/// Kubernetes pod QoS class, from the level of the pod's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    /// The label value, spelt as in the pod's `status.qosClass`, lowercased.
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "guaranteed",
            Qos::Burstable => "burstable",
            Qos::BestEffort => "besteffort",
        }
    }
}

/// A Kubernetes pod found in a cgroup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// `metadata.uid`, with dashes (the systemd driver's underscores are
    /// turned back), as `kubectl get pod -o jsonpath='{.metadata.uid}'`
    /// prints it. Static pods have a 32-hex-digit uid without dashes.
    pub uid: String,
    pub qos: Qos,
    /// The pod's own cgroup.
    pub cgroup: String,
}

/// What a cgroup path says about containers and pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub container: Option<Container>,
    pub monitor: Option<Monitor>,
    pub pod: Option<Pod>,
}

impl Found {
    pub fn is_empty(&self) -> bool {
        self.container.is_none() && self.monitor.is_none() && self.pod.is_none()
    }
}

/// Read containers, runtime monitors and pods out of `path`.
///
/// The innermost match wins, so Docker-in-Docker and nested Kubernetes
/// (kind) attribute a process to the container it runs in, not to the
/// outer one. A container and a monitor exclude each other (whichever is
/// innermost); the pod is independent of both.
pub fn find(path: &str) -> Found {
    let mut found = Found::default();
    let mut prev = "";
    let mut prev2 = "";
    let mut prev_is_pod = false;
    for (end, comp) in components(path) {
        let prefix = &path[..end];
        let matched = component(comp, prev, prev2, prev_is_pod);
        prev_is_pod = matches!(matched, Some(Match::Pod(..)));
        match matched {
            Some(Match::Container(runtime, id)) => {
                found.container = Some(Container {
                    runtime,
                    id: id.to_string(),
                    cgroup: prefix.to_string(),
                });
                found.monitor = None;
            }
            Some(Match::Monitor(runtime, id)) => {
                found.monitor = Some(Monitor {
                    runtime,
                    container_id: id.map(str::to_string),
                });
                found.container = None;
            }
            Some(Match::Pod(uid, qos)) => {
                found.pod = Some(Pod {
                    uid,
                    qos,
                    cgroup: prefix.to_string(),
                });
            }
            None => {}
        }
        prev2 = prev;
        prev = comp;
    }
    found
}

/// The non-empty components of `path` with the byte offset each ends at.
fn components(path: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = 0;
    path.split('/').filter_map(move |comp| {
        let end = start + comp.len();
        start = end + 1;
        (!comp.is_empty()).then_some((end, comp))
    })
}

enum Match<'a> {
    Container(Runtime, &'a str),
    Monitor(Runtime, Option<&'a str>),
    Pod(String, Qos),
}

/// What one component names, given the two before it and whether the one
/// before it is a pod.
fn component<'a>(comp: &'a str, prev: &str, prev2: &str, prev_is_pod: bool) -> Option<Match<'a>> {
    // Supervisors first: `crio-conmon-<id>` also starts with `crio-`.
    for (prefix, runtime) in [
        ("crio-conmon-", Runtime::CriO),
        ("libpod-conmon-", Runtime::Podman),
    ] {
        if let Some(id) = id_after(comp, prefix) {
            return Some(Match::Monitor(runtime, Some(id)));
        }
    }
    for (prefix, runtime) in [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("nerdctl-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("libpod-", Runtime::Podman),
    ] {
        if let Some(id) = id_after(comp, prefix) {
            return Some(Match::Container(runtime, id));
        }
    }
    if is_container_id(comp) {
        let runtime = match prev {
            "docker" => Runtime::Docker,
            _ if prev_is_pod => Runtime::Cri,
            _ => Runtime::Unknown,
        };
        return Some(Match::Container(runtime, comp));
    }
    if let Some(name) = lxc(comp, prev) {
        return Some(name);
    }
    if comp == "conmon" && prev == "libpod_parent" {
        return Some(Match::Monitor(Runtime::Podman, None));
    }
    pod_systemd(comp)
        .or_else(|| pod_cgroupfs(comp, prev, prev2))
        .map(|(uid, qos)| Match::Pod(uid, qos))
}

/// The id in `<prefix><id>` or `<prefix><id>.scope`.
fn id_after<'a>(comp: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = comp.strip_prefix(prefix)?;
    let id = rest.strip_suffix(".scope").unwrap_or(rest);
    is_container_id(id).then_some(id)
}

/// 64 lowercase hex digits: the id Docker, containerd, CRI-O and Podman
/// all generate (a SHA-256).
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// LXC and LXD: `lxc.payload.<name>` (LXC 4 and later), `lxc.payload/<name>`
/// (LXC 3), `lxc/<name>` (LXC 1 and 2), and the matching monitor cgroups.
fn lxc<'a>(comp: &'a str, prev: &str) -> Option<Match<'a>> {
    if let Some(name) = comp.strip_prefix("lxc.payload.") {
        return (!name.is_empty()).then_some(Match::Container(Runtime::Lxc, name));
    }
    if let Some(name) = comp.strip_prefix("lxc.monitor.") {
        return (!name.is_empty()).then_some(Match::Monitor(Runtime::Lxc, Some(name)));
    }
    match prev {
        "lxc" | "lxc.payload" => Some(Match::Container(Runtime::Lxc, comp)),
        "lxc.monitor" => Some(Match::Monitor(Runtime::Lxc, Some(comp))),
        _ => None,
    }
}

/// A pod slice of the systemd driver:
/// `[<root>-]kubepods[-burstable|-besteffort]-pod<uid_with_underscores>.slice`,
/// where `<root>-` appears when the kubelet runs with `--cgroup-root`
/// (kind: `kubelet-kubepods-...`).
fn pod_systemd(comp: &str) -> Option<(String, Qos)> {
    let stem = comp.strip_suffix(".slice")?;
    let at = stem.rfind("kubepods-")?;
    if at > 0 && !stem[..at].ends_with('-') {
        return None;
    }
    let rest = &stem[at + "kubepods-".len()..];
    let (qos, uid) = if let Some(uid) = rest.strip_prefix("burstable-pod") {
        (Qos::Burstable, uid)
    } else if let Some(uid) = rest.strip_prefix("besteffort-pod") {
        (Qos::BestEffort, uid)
    } else {
        (Qos::Guaranteed, rest.strip_prefix("pod")?)
    };
    pod_uid(uid).map(|uid| (uid, qos))
}

/// A pod directory of the cgroupfs driver: `kubepods/pod<uid>` or
/// `kubepods/<qos>/pod<uid>`.
fn pod_cgroupfs(comp: &str, prev: &str, prev2: &str) -> Option<(String, Qos)> {
    let qos = match (prev, prev2) {
        ("kubepods", _) => Qos::Guaranteed,
        ("burstable", "kubepods") => Qos::Burstable,
        ("besteffort", "kubepods") => Qos::BestEffort,
        _ => return None,
    };
    pod_uid(comp.strip_prefix("pod")?).map(|uid| (uid, qos))
}

/// A pod uid with dashes: a UUID (36 characters) or a static pod's hash
/// (32 hex digits). The systemd driver's underscores become dashes.
fn pod_uid(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-");
    let dashes_ok = match uid.len() {
        36 => uid
            .bytes()
            .enumerate()
            .all(|(i, b)| (b == b'-') == matches!(i, 8 | 13 | 18 | 23)),
        32 => !uid.contains('-'),
        _ => false,
    };
    let hex = uid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit());
    (dashes_ok && hex).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31";
    const ID2: &str = "0853fad78812e955b92d871d8d597d9bc598e34320c9edbfab0a73eacf150145";
    const UID: &str = "73dc8baf-43a0-413e-aac2-5eb0868f6c1a";
    const UID_: &str = "73dc8baf_43a0_413e_aac2_5eb0868f6c1a";

    fn container(path: &str) -> Option<(Runtime, String, String)> {
        find(path).container.map(|c| (c.runtime, c.id, c.cgroup))
    }

    fn pod(path: &str) -> Option<(String, Qos, String)> {
        find(path).pod.map(|p| (p.uid, p.qos, p.cgroup))
    }

    /// Every runtime and driver, with the path its container's processes
    /// are in and the container cgroup expected.
    #[test]
    fn runtimes_and_drivers() {
        let cases: Vec<(String, Runtime, String)> = vec![
            // Docker, systemd driver.
            (
                format!("/system.slice/docker-{ID}.scope"),
                Runtime::Docker,
                format!("/system.slice/docker-{ID}.scope"),
            ),
            // Docker, cgroupfs driver; and a container running systemd.
            (format!("/docker/{ID}"), Runtime::Docker, format!("/docker/{ID}")),
            (
                format!("/docker/{ID}/init.scope"),
                Runtime::Docker,
                format!("/docker/{ID}"),
            ),
            (
                format!("/system.slice/docker-{ID}.scope/system.slice/nginx.service"),
                Runtime::Docker,
                format!("/system.slice/docker-{ID}.scope"),
            ),
            // Rootless Docker under the user's manager.
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope"),
                Runtime::Docker,
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope"),
            ),
            // containerd with the kubelet's systemd driver.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                Runtime::Containerd,
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"),
            ),
            // containerd (or any CRI runtime) with the cgroupfs driver.
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                Runtime::Cri,
                format!("/kubepods/burstable/pod{UID}/{ID}"),
            ),
            (
                format!("/kubepods/pod{UID}/{ID}"),
                Runtime::Cri,
                format!("/kubepods/pod{UID}/{ID}"),
            ),
            // nerdctl: systemd and cgroupfs (a containerd namespace).
            (
                format!("/system.slice/nerdctl-{ID}.scope"),
                Runtime::Containerd,
                format!("/system.slice/nerdctl-{ID}.scope"),
            ),
            (format!("/default/{ID}"), Runtime::Unknown, format!("/default/{ID}")),
            // CRI-O, systemd driver, workload in the `container` sub-cgroup.
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope/container"),
                Runtime::CriO,
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"),
            ),
            // CRI-O, cgroupfs driver.
            (
                format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
                Runtime::CriO,
                format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
            ),
            // Podman: systemd (rootful in machine.slice, rootless in the
            // user's manager, in a podman pod) and cgroupfs as it runs on
            // this machine's hybrid hierarchy (seen with `podman run`).
            (
                format!("/machine.slice/libpod-{ID}.scope"),
                Runtime::Podman,
                format!("/machine.slice/libpod-{ID}.scope"),
            ),
            (
                format!("/machine.slice/machine-libpod_pod_{ID2}.slice/libpod-{ID}.scope/container"),
                Runtime::Podman,
                format!("/machine.slice/machine-libpod_pod_{ID2}.slice/libpod-{ID}.scope"),
            ),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
                Runtime::Podman,
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            ),
            (
                format!("/libpod_parent/libpod-{ID}"),
                Runtime::Podman,
                format!("/libpod_parent/libpod-{ID}"),
            ),
            // LXC 4+ and LXD; LXC 3; LXC 1 and 2; a systemd inside.
            ("/lxc.payload.web1".into(), Runtime::Lxc, "/lxc.payload.web1".into()),
            (
                "/lxc.payload.web1/system.slice/nginx.service".into(),
                Runtime::Lxc,
                "/lxc.payload.web1".into(),
            ),
            ("/lxc.payload/web1".into(), Runtime::Lxc, "/lxc.payload/web1".into()),
            ("/lxc/web1".into(), Runtime::Lxc, "/lxc/web1".into()),
            ("/lxc/web1/init.scope".into(), Runtime::Lxc, "/lxc/web1".into()),
        ];
        for (path, runtime, cgroup) in cases {
            let id = if runtime == Runtime::Lxc { "web1" } else { ID };
            assert_eq!(
                container(&path),
                Some((runtime, id.to_string(), cgroup)),
                "{path}"
            );
            assert_eq!(find(&path).monitor, None, "{path}");
        }
    }

    #[test]
    fn nested_containers_take_the_innermost() {
        // Docker in Docker.
        let path = format!("/docker/{ID2}/docker/{ID}");
        assert_eq!(
            container(&path),
            Some((Runtime::Docker, ID.into(), path.clone()))
        );
        // A kind node (a Docker container) running pods with containerd.
        let path = format!("/docker/{ID2}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope");
        let f = find(&path);
        assert_eq!(f.container.unwrap().id, ID);
        assert_eq!(f.pod.unwrap().uid, UID);
    }

    #[test]
    fn runtime_supervisors_are_not_containers() {
        let pod_slice =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        for (path, runtime, id) in [
            (
                format!("{pod_slice}/crio-conmon-{ID}.scope"),
                Runtime::CriO,
                Some(ID),
            ),
            (
                format!("/kubepods/burstable/pod{UID}/crio-conmon-{ID}"),
                Runtime::CriO,
                Some(ID),
            ),
            (
                format!("/machine.slice/libpod-conmon-{ID}.scope"),
                Runtime::Podman,
                Some(ID),
            ),
            // Podman's cgroupfs manager, as on this machine: one shared cgroup.
            ("/libpod_parent/conmon".into(), Runtime::Podman, None),
            ("/lxc.monitor.web1".into(), Runtime::Lxc, Some("web1")),
            ("/lxc.monitor/web1".into(), Runtime::Lxc, Some("web1")),
        ] {
            let f = find(&path);
            assert_eq!(f.container, None, "{path}");
            assert_eq!(
                f.monitor,
                Some(Monitor {
                    runtime,
                    container_id: id.map(str::to_string)
                }),
                "{path}"
            );
        }
        // The supervisor still belongs to its pod.
        let f = find(&format!("{pod_slice}/crio-conmon-{ID}.scope"));
        assert_eq!(f.pod.unwrap().uid, UID);
    }

    #[test]
    fn pods_of_every_qos_and_driver() {
        let static_uid = "b53dfa9e2dc9b890f7fadb2770857b03";
        let cases = [
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
                UID,
                Qos::Burstable,
            ),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"),
                UID,
                Qos::BestEffort,
            ),
            (
                format!("/kubepods.slice/kubepods-pod{UID_}.slice"),
                UID,
                Qos::Guaranteed,
            ),
            (format!("/kubepods/burstable/pod{UID}"), UID, Qos::Burstable),
            (format!("/kubepods/besteffort/pod{UID}"), UID, Qos::BestEffort),
            (format!("/kubepods/pod{UID}"), UID, Qos::Guaranteed),
            // A static (mirror) pod: its uid is the manifest's hash.
            (format!("/kubepods/pod{static_uid}"), static_uid, Qos::Guaranteed),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{static_uid}.slice"),
                static_uid,
                Qos::Burstable,
            ),
            // kind: the kubelet runs with --cgroup-root=/kubelet.
            (
                format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice"),
                UID,
                Qos::BestEffort,
            ),
            (format!("/kubelet/kubepods/burstable/pod{UID}"), UID, Qos::Burstable),
        ];
        for (path, uid, qos) in cases {
            assert_eq!(
                pod(&path),
                Some((uid.to_string(), qos, path.clone())),
                "{path}"
            );
            // The container below it keeps the pod and its cgroup.
            let below = format!("{path}/cri-containerd-{ID}.scope");
            assert_eq!(pod(&below), Some((uid.to_string(), qos, path.clone())));
            assert_eq!(find(&below).container.unwrap().cgroup, below);
        }
    }

    #[test]
    fn look_alikes_are_nothing() {
        for path in [
            "/",
            "",
            "/system.slice/docker.service",
            "/system.slice/docker-cleanup.scope",
            "/system.slice/containerd.service",
            "/kubepods.slice",
            "/kubepods.slice/kubepods-burstable.slice",
            "/kubepods/burstable",
            "/kubepods/burstable/podnotauid",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice",
            // A uid with dashes in the wrong places, or not hex.
            "/kubepods/pod73dc8baf43a0-413e-aac2-5eb0868f6c1a-",
            "/kubepods/podzzzzzzzz-43a0-413e-aac2-5eb0868f6c1a",
            // Almost ids: 63 digits, upper case, not hex.
            "/docker/f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e3",
            "/docker/F52987FBDCC7B29175FB52E01C7917E9D6D2E14550E3A2A7ABF739DA5A067E31",
            "/system.slice/docker-g52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31.scope",
            // Not kubepods at all.
            "/system.slice/notkubepods-pod73dc8baf_43a0_413e_aac2_5eb0868f6c1a.slice",
            "/other/burstable/pod73dc8baf-43a0-413e-aac2-5eb0868f6c1a",
            "/lxc.payload.",
            "/user.slice/user-1000.slice/session-3.scope",
            "/process_api/f3a53e5294e6e0ee9f3d202ed5680673",
        ] {
            assert!(find(path).is_empty(), "{path}: {:?}", find(path));
        }
    }

    #[test]
    fn outside_the_namespace_still_reads_what_is_there() {
        // A process in another container, seen from a private cgroup
        // namespace: the path climbs out with `..`.
        let path = format!("/../docker-{ID}.scope");
        assert_eq!(container(&path).unwrap().0, Runtime::Docker);
    }

    #[test]
    fn labels() {
        let all = [
            Runtime::Docker,
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Podman,
            Runtime::Lxc,
            Runtime::Cri,
            Runtime::Unknown,
        ];
        let names: Vec<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "docker",
                "containerd",
                "cri-o",
                "podman",
                "lxc",
                "cri",
                "unknown"
            ]
        );
        assert_eq!(Qos::BestEffort.as_str(), "besteffort");
    }

    proptest! {
        #[test]
        fn never_panics(path in "(/[a-z0-9._@:-]{0,70}){0,8}") {
            let f = find(&path);
            if let Some(c) = f.container {
                prop_assert!(path.starts_with(&c.cgroup));
            }
            if let Some(p) = f.pod {
                prop_assert!(path.starts_with(&p.cgroup));
            }
        }

        #[test]
        fn never_panics_on_any_text(path in any::<String>()) {
            let _ = find(&path);
        }
    }
}
