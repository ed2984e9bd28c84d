//! The exporter's configuration: global keys, and one section per collector.
//!
//! Values are merged in this order, later winning: built-in defaults, the
//! config file, `HERAKLES_*` environment variables, command-line flags
//! (`overrides.rs`: variables and flags are the same kind of override).
//!
//! Every key is declared once, as a typed field with a doc comment and, for
//! numbers, its range. The doc comments are the documentation: `config
//! --commented` writes them as comments, and `/doc` lists them, so they
//! cannot drift apart; the ranges are checked (`validate.rs`) from the same
//! schema that documents them.

mod collectors;
mod format;
mod listen;
mod load;
pub(crate) mod locate;
mod overrides;
mod resolve;
mod template;
mod validate;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use collectors::{unknown_collector, CollectorSection, Collectors};
pub use format::{ConfigError, Format};
pub use listen::ListenAddress;
pub use load::{default_locations, find_config_file, load_file, parse_str, LoadedFile};
pub use overrides::{env_overrides, merge, Override, Source};
pub use resolve::{resolve, FileChoice, Resolved};
pub use template::commented_template;
pub use validate::Invalid;

/// The largest size in KiB a size threshold accepts: 1 PiB, past any
/// process's memory, and small enough that converting to bytes cannot
/// overflow.
const MAX_KB: u64 = 1 << 40;

/// The longest top-N list: each entry is a set of series per scrape.
const MAX_TOP_N: usize = 10_000;

/// Global settings (everything but the `collectors` sections).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// TCP port of the HTTP server. 0 picks a free port (it is logged).
    #[schemars(range(min = 0, max = 65535))]
    pub port: u16,
    /// Address to listen on; "0.0.0.0" for all IPv4 interfaces, "::" for all.
    pub bind: String,
    /// Log verbosity: error, warn, info, debug or trace.
    pub log_level: LogLevel,
    /// Log line format: text for people; json, or logfmt (key=value pairs,
    /// node_exporter's default), for log shippers.
    pub log_format: LogFormat,
    /// Serve a cached scrape for this many seconds; 0 collects on every scrape.
    #[schemars(range(min = 0, max = 86400))]
    pub cache_ttl: u64,
    /// Seconds one collector may take before it is abandoned for this scrape
    /// and reported with success 0. Keep it below Prometheus' scrape_timeout.
    #[schemars(range(min = 0.001, max = 3600))]
    pub collector_timeout: f64,
    /// Concurrent /metrics requests served at once; past this, 503.
    #[schemars(range(min = 1, max = 65536))]
    pub max_requests: usize,
    /// Worker threads for collection (blocking reads of /proc and /sys).
    /// 0 means one per CPU, at least 2.
    #[schemars(range(min = 0, max = 256))]
    pub parallelism: usize,
    /// Serve the /health endpoint.
    pub enable_health: bool,
    /// The path the metrics are served at (node_exporter's
    /// --web.telemetry-path). The other endpoints keep theirs, so it cannot
    /// be one of /, /health, /config, /subgroups or /doc.
    pub telemetry_path: String,
    /// Serve the exporter's own metrics with every scrape: its process_*
    /// series, its HTTP server's (herakles_http_*) and its scrape cache's
    /// (herakles_scrape_cache_*). False is node_exporter's
    /// --web.disable-exporter-metrics. The build info and the per-collector
    /// success, duration and parse-error series stay: they describe the
    /// data, not the exporter.
    pub enable_telemetry: bool,
    /// Accepted so that configs written for the Go exporters load: there is
    /// no pprof endpoint in this Rust build. True only logs a warning at
    /// start-up; profile with perf (docs/operators.md) instead.
    pub enable_pprof: bool,
    /// Run only the collectors enabled explicitly, by `enabled: true` (or
    /// `NAME: true`) in their section, a HERAKLES_COLLECTORS__NAME__ENABLED
    /// variable or --collector.NAME; every other collector is off whatever
    /// its default. node_exporter's --collector.disable-defaults.
    pub disable_default_collectors: bool,
    /// Serve HTTPS instead of HTTP, with tls_cert_path and tls_key_path
    /// (TLS 1.2 and 1.3, no client certificates). For client certificates,
    /// basic auth or TLS settings use web_config_file instead; the two
    /// cannot be combined.
    pub enable_tls: bool,
    /// PEM certificate chain for TLS.
    pub tls_cert_path: String,
    /// PEM private key for TLS.
    pub tls_key_path: String,
    /// Web config file in the Prometheus exporter-toolkit format, the one
    /// node_exporter reads with --web.config.file: HTTPS, client
    /// certificates, basic auth users and response headers (see
    /// docs/security.md). Empty: none.
    pub web_config_file: String,
    /// Addresses to listen on, each host:port, [IPv6 address]:port or :port
    /// (every interface); a host name is resolved at start and each of its
    /// addresses is listened on. Empty: bind and port say where. Set, it
    /// replaces them, and bind and port must be left at their defaults.
    pub listen_addresses: Vec<String>,
    /// Serve on the listening sockets systemd passes (socket activation,
    /// the .socket unit's ListenStream=) instead of opening any; then
    /// listen_addresses, bind and port cannot be set.
    pub systemd_socket: bool,
    /// Roots of the filesystems collectors read, for running in a container
    /// with the host's trees mounted elsewhere.
    pub paths: PathsConfig,
    /// Per-process series only for processes whose USS is at least this many
    /// KiB (RSS stands in while USS is unknown: USS never exceeds it).
    /// Group and top-N series count every process regardless.
    #[schemars(range(min = 0, max = MAX_KB))]
    pub min_uss_kb: u64,
    /// Processes ranked per subgroup in the herakles_*_top_process_* series.
    #[schemars(range(min = 0, max = MAX_TOP_N))]
    pub top_n_subgroup: usize,
    /// Like top_n_subgroup, for the catch-all "other" group, which gathers
    /// unrelated processes and so deserves a longer list.
    #[schemars(range(min = 0, max = MAX_TOP_N))]
    pub top_n_others: usize,
    /// Processes ranked host-wide in the herakles_top_* series.
    #[schemars(range(min = 0, max = MAX_TOP_N))]
    pub top_n: usize,
    /// Whether search_groups lists the only groups exported (include) or
    /// groups never exported (exclude).
    pub search_mode: SearchMode,
    /// Groups for search_mode. Empty with include means every group.
    pub search_groups: Vec<String>,
    /// Drop processes no rule matches (group "other") from every series.
    pub disable_others: bool,
    /// Export per-process series. False keeps only group and top-N series,
    /// bounding cardinality by the number of subgroups, not processes.
    pub per_process_metrics: bool,
    /// The most processes given per-process series (after min_uss_kb); past
    /// it the ones using the least memory are left out and counted in
    /// herakles_process_series_dropped_total. About 7 series per process,
    /// so the default bounds them at some 7,000 however many processes
    /// run. 0 exports none.
    #[schemars(range(min = 0, max = 10_000_000))]
    pub max_process_series: usize,
    /// Labels naming where a process runs added to its per-process series:
    /// any of container (container_id, container_runtime), pod (pod_uid),
    /// unit, user. Each process has one value, so they add no series, but
    /// they make every series longer; none by default.
    pub process_labels: Vec<Dimension>,
    /// Learn each process's cgroup (and from it its container, Kubernetes
    /// pod and systemd unit) and its user, for the aggregates in
    /// attribution_aggregates, for process_labels and for classification
    /// rules matching on them. Read when a process is first seen, when it
    /// execs, and every attribution_recheck_scrapes scrapes.
    pub attribution: bool,
    /// A process's cgroup, user and open-files limit are read again every
    /// this many scrapes (a tenth of the processes each scrape at 10), so
    /// a process moved to another cgroup without an exec is seen within
    /// this many scrapes. 1 rereads every process every scrape.
    #[schemars(range(min = 1, max = 1000))]
    pub attribution_recheck_scrapes: u64,
    /// Sum processes per container, pod, unit and user (herakles_container_*,
    /// herakles_pod_*, herakles_unit_*, herakles_user_*), and read the
    /// kernel's own accounting of the container, pod and unit cgroups (the
    /// cgroup collector). About 10 series per container, pod, unit and user
    /// for the sums, and 9 plus 4 per disk for each cgroup's accounting.
    pub attribution_aggregates: Vec<Dimension>,
    /// Count each process's open file descriptors (a stat of
    /// /proc/<pid>/fd, one call) and read its open-files limit (with its
    /// placement), for herakles_group_open_fds and
    /// herakles_group_worst_fd_ratio.
    pub process_open_fds: bool,
    /// Read context switch counts for herakles_group_context_switches_total.
    /// The kernel counts them per thread, so this reads
    /// /proc/<pid>/task/<tid>/status for every thread on every scrape: a
    /// host with many threads (JVMs, Go services) pays for each. Off by
    /// default.
    pub process_context_switches: bool,
    /// Custom classification rules (TOML), on top of the built-in ones.
    /// Empty: only ./subgroups.toml and /etc/herakles/subgroups.toml, if
    /// present.
    pub subgroups_file: String,
    /// Which processes get PSS, USS and swap from smaps_rollup, which takes
    /// each target's memory-map lock: all, top (top-N members, processes over
    /// smaps_min_rss_kb, members of search_groups) or off.
    pub smaps_mode: SmapsMode,
    /// With smaps_mode top, processes with at least this RSS (KiB) are read.
    #[schemars(range(min = 0, max = MAX_KB))]
    pub smaps_min_rss_kb: u64,
    /// Milliseconds per scrape spent refreshing smaps data, stalest first;
    /// what does not fit keeps its older value (see the age metric).
    #[schemars(range(min = 0, max = 60000))]
    pub smaps_budget_ms: u64,
    /// Seconds a process's smaps data is reused before it is read again.
    #[schemars(range(min = 0, max = 86400))]
    pub smaps_max_age_secs: u64,
    /// Initial read buffer (KiB) per scan thread for stat, cmdline and io.
    #[schemars(range(min = 1, max = 65536))]
    pub io_buffer_kb: usize,
    /// Initial read buffer (KiB) for smaps files, which grow with mappings.
    #[schemars(range(min = 1, max = 65536))]
    pub smaps_buffer_kb: usize,
    /// Master switch for the eBPF programs (per-process network and block
    /// I/O, TCP state tracking). Off, or unavailable on this host, those
    /// series are absent and /health says why; everything else still works.
    pub enable_ebpf: bool,
    /// Count socket bytes and packets per process (needs enable_ebpf).
    pub enable_ebpf_network: bool,
    /// Count block I/O per process and device (needs enable_ebpf).
    pub enable_ebpf_disk: bool,
    /// Keep TCP state counts from state-change events instead of a netlink
    /// dump per scrape (needs enable_ebpf).
    pub enable_tcp_tracking: bool,
    /// Per-collector sections: `enabled` plus the collector's own keys.
    #[schemars(skip)]
    pub collectors: Collectors,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            port: 9215,
            bind: "0.0.0.0".into(),
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            cache_ttl: 0,
            collector_timeout: 8.0,
            max_requests: 40,
            parallelism: 0,
            enable_health: true,
            telemetry_path: "/metrics".into(),
            enable_telemetry: true,
            enable_pprof: false,
            disable_default_collectors: false,
            enable_tls: false,
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
            web_config_file: String::new(),
            listen_addresses: Vec::new(),
            systemd_socket: false,
            paths: PathsConfig::default(),
            min_uss_kb: 0,
            top_n_subgroup: 3,
            top_n_others: 10,
            top_n: 3,
            search_mode: SearchMode::Include,
            search_groups: Vec::new(),
            disable_others: false,
            per_process_metrics: true,
            max_process_series: 1000,
            process_labels: Vec::new(),
            attribution: true,
            attribution_recheck_scrapes: 10,
            attribution_aggregates: Dimension::ALL.to_vec(),
            process_open_fds: true,
            process_context_switches: false,
            subgroups_file: String::new(),
            smaps_mode: SmapsMode::Top,
            smaps_min_rss_kb: 100 * 1024,
            smaps_budget_ms: 200,
            smaps_max_age_secs: 60,
            io_buffer_kb: 16,
            smaps_buffer_kb: 64,
            enable_ebpf: true,
            enable_ebpf_network: true,
            enable_ebpf_disk: true,
            enable_tcp_tracking: true,
            collectors: Collectors::default(),
        }
    }
}

/// Filesystem roots; see `--path.procfs`, `--path.sysfs`, `--path.rootfs`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    /// Mount point of procfs.
    pub procfs: PathBuf,
    /// Mount point of sysfs.
    pub sysfs: PathBuf,
    /// The host's root filesystem (for filesystem statistics).
    pub rootfs: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> PathsConfig {
        let p = herakles_core::Paths::default();
        PathsConfig {
            procfs: p.procfs,
            sysfs: p.sysfs,
            rootfs: p.rootfs,
        }
    }
}

impl PathsConfig {
    pub fn to_paths(&self) -> herakles_core::Paths {
        herakles_core::Paths {
            procfs: self.procfs.clone(),
            sysfs: self.sysfs.clone(),
            rootfs: self.rootfs.clone(),
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    Include,
    Exclude,
}

/// A way of grouping processes by where they run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// A container, by id (any runtime recognised in its cgroup path).
    Container,
    /// A Kubernetes pod, by uid.
    Pod,
    /// A systemd service or scope.
    Unit,
    /// A user, by name.
    User,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::Container,
        Dimension::Pod,
        Dimension::Unit,
        Dimension::User,
    ];

    /// The word in metric names and config values.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Container => "container",
            Dimension::Pod => "pod",
            Dimension::Unit => "unit",
            Dimension::User => "user",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SmapsMode {
    All,
    Top,
    Off,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
    Logfmt,
}

impl Config {
    /// Check what types alone cannot: value ranges, regexes and key
    /// combinations. The one validation every way in goes through.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate::check(self)
    }

    /// Turn every collector whose `enabled` was not set explicitly on or
    /// off by its default and `disable_default_collectors`. Run whenever
    /// the keys may have changed: after a file is parsed and after
    /// overrides are merged.
    pub(crate) fn settle_collectors(&mut self) {
        let defaults_off = self.disable_default_collectors;
        for section in self.collectors.0.values_mut() {
            if !section.set_explicitly {
                section.enabled = section.registration.default_enabled && !defaults_off;
            }
        }
    }

    /// What is accepted but worth telling the operator at start-up: keys
    /// that do nothing here, and settings that leave nothing to collect.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.enable_pprof {
            out.push(
                "enable_pprof: there is no pprof endpoint in this build (the key is accepted \
                 for configs written for the Go exporters); profile with perf instead"
                    .to_string(),
            );
        }
        if self.collectors.enabled().next().is_none() {
            let why = if self.disable_default_collectors {
                "disable_default_collectors is on and no collector is enabled explicitly"
            } else {
                "every collector is disabled"
            };
            out.push(format!("no collector will run: {why}"));
        }
        out
    }

    /// Worker threads to use for collection.
    pub fn effective_parallelism(&self) -> usize {
        if self.parallelism > 0 {
            return self.parallelism;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2)
    }
}
