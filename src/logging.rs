//! Logging set-up: `tracing` to standard error, as text or JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel};

/// Install the global subscriber. `RUST_LOG`, when set, overrides `level`
/// (it allows per-module filters the flag cannot express).
pub fn init(level: LogLevel, format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_ok() {
        // A panicking collector is caught and reported by the coordinator;
        // route the panic message through the log instead of raw stderr.
        std::panic::set_hook(Box::new(|info| {
            tracing::error!(target: "panic", "{info}");
        }));
        #[cfg(any(feature = "ebpf", feature = "netprobe"))]
        libbpf::route_to_log();
    }
}

/// libbpf prints its warnings ("failed to load BPF skeleton", verifier
/// logs) straight to standard error unless given a print function, which
/// would put raw lines between our JSON ones.
///
/// The print function is process-wide: libbpf is one C library however many
/// crates load programs through it, so this one call also covers the
/// plugins (netprobe) that depend on herakles-core alone and know nothing
/// of our logger.
#[cfg(any(feature = "ebpf", feature = "netprobe"))]
mod libbpf {
    use libbpf_rs::PrintLevel;

    pub fn route_to_log() {
        // libbpf formats each message before handing it over, so ask only
        // for the levels the log would keep (`RUST_LOG=libbpf=debug` shows
        // its debug output).
        let min = match tracing::level_filters::LevelFilter::current() {
            f if f >= tracing::Level::DEBUG => PrintLevel::Debug,
            f if f >= tracing::Level::INFO => PrintLevel::Info,
            _ => PrintLevel::Warn,
        };
        libbpf_rs::set_print(Some((min, print)));
    }

    fn print(level: PrintLevel, message: String) {
        let message = message.trim_end();
        let message = message.strip_prefix("libbpf: ").unwrap_or(message);
        match level {
            PrintLevel::Warn => tracing::warn!(target: "libbpf", "{message}"),
            PrintLevel::Info => tracing::info!(target: "libbpf", "{message}"),
            PrintLevel::Debug => tracing::debug!(target: "libbpf", "{message}"),
        }
    }
}
