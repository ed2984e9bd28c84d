//! The exporter's configuration: global keys, and one section per collector.
//!
//! Values are merged in this order, later winning: built-in defaults, the
//! config file, `HERAKLES_*` environment variables, command-line flags.
//!
//! Every key is declared once, as a typed field with a doc comment. The doc
//! comments are the documentation: `config --commented` writes them as
//! comments, and `/doc` lists them, so they cannot drift apart.

mod collectors;
mod load;
mod template;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use collectors::{unknown_collector, CollectorSection, Collectors};
pub use load::{
    apply_env, find_config_file, load_file, parse_str, ConfigError, Format, LoadedFile,
};
pub use template::commented_template;

/// Global settings (everything but the `collectors` sections).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// TCP port of the HTTP server. 0 picks a free port (it is logged).
    pub port: u16,
    /// Address to listen on; "0.0.0.0" for all IPv4 interfaces, "::" for all.
    pub bind: String,
    /// Log verbosity: error, warn, info, debug or trace.
    pub log_level: LogLevel,
    /// Log line format: text for people, json for log shippers.
    pub log_format: LogFormat,
    /// Serve a cached scrape for this many seconds; 0 collects on every scrape.
    pub cache_ttl: u64,
    /// Seconds one collector may take before it is abandoned for this scrape
    /// and reported with success 0. Keep it below Prometheus' scrape_timeout.
    pub collector_timeout: f64,
    /// Concurrent /metrics requests served at once; past this, 503.
    pub max_requests: usize,
    /// Worker threads for collection (blocking reads of /proc and /sys).
    /// 0 means one per CPU, at least 2.
    pub parallelism: usize,
    /// Serve the /health endpoint.
    pub enable_health: bool,
    /// Serve HTTPS instead of HTTP, with tls_cert_path and tls_key_path.
    pub enable_tls: bool,
    /// PEM certificate chain for TLS.
    pub tls_cert_path: String,
    /// PEM private key for TLS.
    pub tls_key_path: String,
    /// Roots of the filesystems collectors read, for running in a container
    /// with the host's trees mounted elsewhere.
    pub paths: PathsConfig,
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
            enable_tls: false,
            tls_cert_path: String::new(),
            tls_key_path: String::new(),
            paths: PathsConfig::default(),
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
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Check what types alone cannot: value ranges and key combinations.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.collector_timeout > 0.0 && self.collector_timeout.is_finite()) {
            return Err(format!(
                "collector_timeout: must be a positive number of seconds, got {}",
                self.collector_timeout
            ));
        }
        if self.max_requests == 0 {
            return Err("max_requests: must be at least 1".into());
        }
        if self.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("bind: {:?} is not an IP address", self.bind));
        }
        if self.enable_tls && (self.tls_cert_path.is_empty() || self.tls_key_path.is_empty()) {
            return Err("enable_tls: needs both tls_cert_path and tls_key_path".into());
        }
        Ok(())
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
