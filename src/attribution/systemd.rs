//! The systemd unit of a process, read from its cgroup path.
//!
//! systemd places every process it starts in a cgroup named after its unit,
//! below the slices that group units: `/system.slice/nginx.service`,
//! `/user.slice/user-1000.slice/session-3.scope`. The unit reported here is
//! the one systemd itself reports for the process (`systemctl status
//! <pid>`, `ps -o unit`, the journal's `_SYSTEMD_UNIT`): the first
//! component after the leading slices, if it is a service or scope. What
//! lies below it is the unit's own business: a service with `Delegate=`
//! (a container runtime, a systemd inside a container) creates cgroups
//! there that systemd does not know as units, so they are never taken for
//! one. Operators filter on these names; a label that disagreed with
//! `systemctl` would be useless.
//!
//! Processes of a user's own service manager live below its
//! `user@<uid>.service`. For them the system unit is that service, and the
//! unit inside the user manager (`ps -o uunit`) is reported beside it.

/// The unit a process belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// The innermost slice above the unit; `-.slice` (the root slice) for
    /// a unit at the top, such as `init.scope`.
    pub slice: String,
    /// The system manager's unit: a `.service` or `.scope`.
    pub unit: String,
    /// Set when the unit is a user manager (`user@<uid>.service`).
    pub user: Option<UserUnit>,
}

/// A unit inside a user's service manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserUnit {
    /// The uid in `user@<uid>.service`.
    pub uid: u32,
    /// The innermost slice inside the user manager; `-.slice` at its top.
    pub slice: String,
    /// The user manager's unit; `None` when the path stops at
    /// `user@<uid>.service` itself (v1, where the manager's own process
    /// may sit there).
    pub unit: Option<String>,
}

const ROOT_SLICE: &str = "-.slice";

/// The unit of a process in cgroup `path` (the path systemd tracks:
/// [`super::proc_cgroup::ProcCgroup::systemd_path`]).
pub fn unit(path: &str) -> Option<Unit> {
    let mut comps = path.split('/').filter(|c| !c.is_empty()).peekable();
    let slice = leading_slices(&mut comps);
    let unit = comps.next().filter(|c| is_process_unit(c))?;
    let user = user_manager_uid(unit).map(|uid| {
        let slice = leading_slices(&mut comps);
        let unit = comps
            .next()
            .filter(|c| is_process_unit(c))
            .map(str::to_string);
        UserUnit { uid, slice, unit }
    });
    Some(Unit {
        slice,
        unit: unit.to_string(),
        user,
    })
}

/// Consume the slices at the front; the last one, or the root slice.
fn leading_slices<'a>(comps: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>) -> String {
    let mut slice = ROOT_SLICE;
    while let Some(c) = comps.next_if(|c| is_unit_name(c, &["slice"])) {
        slice = c;
    }
    slice.to_string()
}

/// The uid of a user manager unit, `user@<uid>.service`.
fn user_manager_uid(unit: &str) -> Option<u32> {
    let uid = unit.strip_prefix("user@")?.strip_suffix(".service")?;
    if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    uid.parse().ok()
}

/// The unit types that hold processes.
fn is_process_unit(name: &str) -> bool {
    is_unit_name(name, &["service", "scope"])
}

/// Whether `name` is a valid systemd unit name with one of `kinds` as its
/// type: at most 255 bytes, a non-empty prefix of the characters systemd
/// allows (others are `\xNN`-escaped, so a backslash is allowed), at most
/// one `@` and not first (a template instance, `getty@tty1.service`).
pub fn is_unit_name(name: &str, kinds: &[&str]) -> bool {
    let Some((prefix, kind)) = name.rsplit_once('.') else {
        return false;
    };
    if name.len() > 255 || prefix.is_empty() || !kinds.contains(&kind) {
        return false;
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b);
    let ats = prefix.bytes().filter(|&b| b == b'@').count();
    prefix.bytes().all(allowed) && ats <= 1 && !prefix.starts_with('@')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sys(path: &str) -> Option<(String, String)> {
        unit(path).map(|u| {
            assert_eq!(u.user, None, "{path}");
            (u.slice, u.unit)
        })
    }

    #[test]
    fn system_units() {
        let cases = [
            ("/system.slice/nginx.service", "system.slice", "nginx.service"),
            ("/init.scope", ROOT_SLICE, "init.scope"),
            (
                "/system.slice/system-getty.slice/getty@tty1.service",
                "system-getty.slice",
                "getty@tty1.service",
            ),
            (
                "/user.slice/user-1000.slice/session-3.scope",
                "user-1000.slice",
                "session-3.scope",
            ),
            // Escaped characters, as systemd writes them.
            (
                "/machine.slice/machine-qemu\\x2d1\\x2dvm.scope",
                "machine.slice",
                "machine-qemu\\x2d1\\x2dvm.scope",
            ),
            (
                "/system.slice/system-systemd\\x2dfsck.slice/systemd-fsck@dev-vda1.service",
                "system-systemd\\x2dfsck.slice",
                "systemd-fsck@dev-vda1.service",
            ),
            // Below the unit: a delegated subtree, not units systemd knows.
            (
                "/system.slice/containerd.service/kubepods-besteffort.slice",
                "system.slice",
                "containerd.service",
            ),
            (
                "/system.slice/docker-f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31.scope/system.slice/nginx.service",
                "system.slice",
                "docker-f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31.scope",
            ),
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod73dc8baf_43a0_413e_aac2_5eb0868f6c1a.slice/cri-containerd-f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31.scope",
                "kubepods-burstable-pod73dc8baf_43a0_413e_aac2_5eb0868f6c1a.slice",
                "cri-containerd-f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31.scope",
            ),
        ];
        for (path, slice, unit) in cases {
            assert_eq!(sys(path), Some((slice.into(), unit.into())), "{path}");
        }
    }

    #[test]
    fn no_unit() {
        for path in [
            "/",
            "",
            "/system.slice",
            "/system.slice/user-1000.slice",
            // Not systemd's: cgroupfs drivers and this machine's harness.
            "/docker/f52987fbdcc7b29175fb52e01c7917e9d6d2e14550e3a2a7abf739da5a067e31",
            "/kubepods/burstable/pod73dc8baf-43a0-413e-aac2-5eb0868f6c1a",
            "/process_api/f3a53e5294e6e0ee9f3d202ed5680673",
            "/lxc.payload.web1/system.slice/nginx.service",
            // A unit of a type that holds no processes, or none at all.
            "/system.slice/dev-sda.device",
            "/system.slice/.service",
            "/system.slice/@x.service",
            "/system.slice/a@b@c.service",
            "/system.slice/bad name.service",
        ] {
            assert_eq!(unit(path), None, "{path}");
        }
    }

    #[test]
    fn user_manager_units() {
        let u = unit("/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/vte-spawn-1b2c.scope").unwrap();
        assert_eq!(u.slice, "user-1000.slice");
        assert_eq!(u.unit, "user@1000.service");
        assert_eq!(
            u.user,
            Some(UserUnit {
                uid: 1000,
                slice: "app-org.gnome.Terminal.slice".into(),
                unit: Some("vte-spawn-1b2c.scope".into()),
            })
        );
        // The manager itself.
        let u = unit("/user.slice/user-0.slice/user@0.service/init.scope").unwrap();
        assert_eq!(u.unit, "user@0.service");
        let user = u.user.unwrap();
        assert_eq!((user.uid, user.slice.as_str()), (0, ROOT_SLICE));
        assert_eq!(user.unit.as_deref(), Some("init.scope"));
        // A rootless container runtime's scope inside the user manager.
        let u = unit("/user.slice/user-1000.slice/user@1000.service/user.slice/podman-1234.scope")
            .unwrap();
        assert_eq!(u.user.unwrap().unit.as_deref(), Some("podman-1234.scope"));
        // v1: processes directly in the user manager's cgroup.
        let u = unit("/user.slice/user-1000.slice/user@1000.service").unwrap();
        let user = u.user.unwrap();
        assert_eq!((user.uid, user.unit), (1000, None));
        // Not a user manager: an instance that is not a number.
        let u = unit("/system.slice/user@x.service").unwrap();
        assert_eq!(u.user, None);
        assert_eq!(user_manager_uid("user@99999999999.service"), None);
    }

    #[test]
    fn unit_names() {
        assert!(is_unit_name("a.service", &["service"]));
        assert!(is_unit_name("getty@tty1.service", &["service"]));
        assert!(is_unit_name("getty@.service", &["service"]));
        assert!(!is_unit_name("a.service", &["slice"]));
        assert!(!is_unit_name("service", &["service"]));
        assert!(!is_unit_name(
            &format!("{}.service", "a".repeat(250)),
            &["service"]
        ));
        assert!(!is_unit_name("a/b.service", &["service"]));
    }

    proptest! {
        #[test]
        fn never_panics(path in "(/[a-z0-9.@\\\\-]{0,20}){0,8}") {
            if let Some(u) = unit(&path) {
                prop_assert!(path.contains(&u.unit));
            }
        }

        #[test]
        fn never_panics_on_any_text(path in any::<String>()) {
            let _ = unit(&path);
        }
    }
}
