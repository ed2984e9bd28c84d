//! The systemd unit, generated from the configuration it will run with.
//!
//! The service runs as a dedicated system user, not root, and gets through
//! `AmbientCapabilities` only the capabilities the features enabled in that
//! configuration need ([`capabilities`]); everything else systemd can take
//! away is taken away. The sandbox settings were chosen by what the
//! collectors read and where:
//!
//! * `ProtectSystem=strict`: the exporter writes nowhere.
//! * `ProtectHome=read-only`, not `yes`: with `yes` systemd mounts an empty
//!   tmpfs over `/home`, and the filesystem collector would report that
//!   tmpfs instead of the real `/home` filesystem.
//! * `ProtectProc=default`, `ProcSubset=all` (the defaults, not set): every
//!   process and `/proc/stat`, `/proc/meminfo`... are what we export.
//! * `PrivateNetwork` is not set: we serve on the host's network and read
//!   its interfaces and sockets.
//! * `RestrictAddressFamilies` keeps `AF_NETLINK`: the `tcp` collector reads
//!   socket states with sock_diag and netprobe attaches its TC filter over
//!   rtnetlink.
//! * `SystemCallFilter=@system-service bpf`: `bpf` loads the programs and
//!   reads their maps; `tp_btf` programs attach through `bpf` too, so no
//!   `perf_event_open`. tests/install.rs runs the exporter under strace and
//!   checks every system call it makes is in this set.
//!
//! `Type=notify` ([`SERVICE_TYPE`]): the exporter sends `READY=1` once its
//! socket listens, so units ordered after it start when it answers, not when
//! it has forked; `RELOADING=1` and `READY=1` frame a reload and
//! `STOPPING=1` starts a stop (`crate::serve::notify`). `ExecReload=` sends
//! SIGHUP, which reloads the configuration; `Type=notify-reload`, which
//! sends it without an `ExecReload=`, needs systemd 253 (Debian 12 has 252).

use crate::config::Config;

/// The unit's `Type=`: the exporter tells systemd when it is ready.
pub const SERVICE_TYPE: &str = "notify";

/// The service's name, its user and its group.
pub const SERVICE: &str = "herakles-node-exporter";
pub const USER: &str = "herakles";

/// Where the unit points the exporter.
pub struct UnitPaths<'a> {
    pub binary: &'a str,
    pub config: &'a str,
    /// `EnvironmentFile=` holding `ARGS=` for extra flags.
    pub defaults: &'a str,
}

/// A capability the service needs, and the features that need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub name: &'static str,
    pub why: Vec<&'static str>,
}

/// The capabilities `config` needs, in a fixed order, each with the reasons.
///
/// Found by starting the exporter as an unprivileged user with candidate
/// sets and checking what each collector reports (docs/install.md has the
/// table, tests/package.rs re-checks it):
///
/// * reading another user's `/proc/PID/smaps_rollup` and `exe` is a ptrace
///   access check: CAP_SYS_PTRACE;
/// * `/proc/PID/io` of another user is mode 0400: CAP_DAC_READ_SEARCH;
/// * loading tracing programs (`tp_btf`) needs CAP_BPF and CAP_PERFMON.
///   Their maps and ring buffer are charged to the memory cgroup (kernel
///   5.11 and later), so no RLIMIT_MEMLOCK raise and no CAP_SYS_RESOURCE;
/// * netprobe's TC program: CAP_BPF to load, CAP_NET_ADMIN to attach;
/// * bpf_inventory walks every program and map id on the host, which the
///   kernel allows to CAP_SYS_ADMIN only.
pub fn capabilities(config: &Config) -> Vec<Capability> {
    let enabled = |name: &str| config.collectors.0.get(name).is_some_and(|s| s.enabled);
    let processes = ["process", "process_groups", "process_top"]
        .iter()
        .any(|n| enabled(n));
    let ebpf = config.enable_ebpf
        && (enabled("ebpf_io")
            || (config.enable_tcp_tracking && enabled("tcp"))
            || (processes && (config.enable_ebpf_network || config.enable_ebpf_disk)));
    let mut caps: Vec<Capability> = Vec::new();
    let mut need =
        |name: &'static str, why: &'static str| match caps.iter_mut().find(|c| c.name == name) {
            Some(c) => c.why.push(why),
            None => caps.push(Capability {
                name,
                why: vec![why],
            }),
        };
    if processes {
        need(
            "CAP_SYS_PTRACE",
            "other users' /proc/PID/smaps_rollup and exe (PSS, USS, swap)",
        );
        need(
            "CAP_DAC_READ_SEARCH",
            "other users' /proc/PID/io (block I/O per process)",
        );
    }
    if ebpf {
        need("CAP_BPF", "eBPF per-process I/O and TCP state tracking");
        need(
            "CAP_PERFMON",
            "eBPF per-process I/O and TCP state tracking (tracing programs)",
        );
    }
    if enabled("netprobe") {
        need("CAP_BPF", "netprobe (loads its TC program)");
        need("CAP_NET_ADMIN", "netprobe (attaches its TC program)");
    }
    if enabled("bpf_inventory") {
        need(
            "CAP_SYS_ADMIN",
            "bpf_inventory (walking every eBPF program and map id on the host)",
        );
    }
    caps
}

/// The unit file text.
pub fn render(config: &Config, paths: &UnitPaths) -> String {
    let caps = capabilities(config);
    let names: Vec<&str> = caps.iter().map(|c| c.name).collect();
    let mut why = String::new();
    for c in &caps {
        why.push_str(&format!("#   {}: {}\n", c.name, c.why.join("; ")));
    }
    if caps.is_empty() {
        why.push_str("#   none: no enabled feature needs one\n");
    }
    format!(
        "\
# Generated by `herakles-node-exporter install` {version}; regenerate rather
# than edit (install --force), or override with `systemctl edit {service}`.
[Unit]
Description=herakles-node-exporter: Prometheus metrics for Linux processes and the host
Documentation=man:herakles-node-exporter(1)
After=network-online.target
Wants=network-online.target

[Service]
Type={service_type}
User={user}
Group={user}
EnvironmentFile=-{defaults}
ExecStart={binary} --config {config} $ARGS
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s

# Capabilities the enabled features need, and nothing else:
{why}CapabilityBoundingSet={caps}
AmbientCapabilities={caps}
NoNewPrivileges=yes

# The exporter reads /proc and /sys and writes nowhere.
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
DevicePolicy=closed
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
KeyringMode=private
UMask=0077
SystemCallArchitectures=native
SystemCallFilter=@system-service bpf
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
",
        version = env!("CARGO_PKG_VERSION"),
        service = SERVICE,
        service_type = SERVICE_TYPE,
        user = USER,
        defaults = paths.defaults,
        binary = paths.binary,
        config = paths.config,
        caps = names.join(" "),
    )
}

/// The `EnvironmentFile=` the unit reads: extra flags for the daemon.
pub fn defaults_file() -> String {
    format!(
        "\
# Extra command-line flags for the {SERVICE} service, e.g.
#   ARGS=\"--log-format json --web.max-requests 8\"
# Settings belong in the config file; a flag here overrides it.
ARGS=\"\"
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(config: &Config) -> Vec<&'static str> {
        capabilities(config).iter().map(|c| c.name).collect()
    }

    #[test]
    fn capabilities_follow_the_enabled_features() {
        let mut c = Config::default();
        assert_eq!(
            names(&c),
            [
                "CAP_SYS_PTRACE",
                "CAP_DAC_READ_SEARCH",
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_SYS_ADMIN"
            ]
        );
        c.collectors.set_enabled("bpf_inventory", false).unwrap();
        c.enable_ebpf = false;
        assert_eq!(names(&c), ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"]);
        c.collectors.set_enabled("netprobe", true).unwrap();
        assert_eq!(
            names(&c),
            [
                "CAP_SYS_PTRACE",
                "CAP_DAC_READ_SEARCH",
                "CAP_BPF",
                "CAP_NET_ADMIN"
            ]
        );
        for p in ["process", "process_groups", "process_top", "netprobe"] {
            c.collectors.set_enabled(p, false).unwrap();
        }
        assert!(names(&c).is_empty());
        assert!(render(
            &c,
            &UnitPaths {
                binary: "/b",
                config: "/c",
                defaults: "/d"
            }
        )
        .contains("AmbientCapabilities=\n"));
    }

    #[test]
    fn unit_names_the_paths_and_type() {
        let text = render(
            &Config::default(),
            &UnitPaths {
                binary: "/opt/herakles/bin/herakles-node-exporter",
                config: "/etc/herakles/herakles-node-exporter.yaml",
                defaults: "/etc/default/herakles-node-exporter",
            },
        );
        assert!(text.contains(
            "ExecStart=/opt/herakles/bin/herakles-node-exporter --config \
             /etc/herakles/herakles-node-exporter.yaml $ARGS\n"
        ));
        assert!(text.contains("\nType=notify\n"));
        assert!(text.contains("\nExecReload=/bin/kill -HUP $MAINPID\n"));
        assert!(text.contains("\nUser=herakles\n"));
        assert!(text.contains("#   CAP_SYS_ADMIN: bpf_inventory"));
    }
}
