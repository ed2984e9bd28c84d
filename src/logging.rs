//! Logging set-up: `tracing` to standard error, as text, JSON or logfmt
//! lines.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
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
        LogFormat::Logfmt => builder.with_ansi(false).event_format(Logfmt).try_init(),
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

/// node_exporter's default log format, which log shippers (Loki, Vector)
/// parse without configuration: one line of `key=value` pairs per event,
/// `ts`, `level`, `target` and `msg` first, then the event's own fields.
/// Span context is left out: the exporter's events carry their context as
/// fields.
struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(128);
        pair(&mut line, "ts", &ts);
        pair(
            &mut line,
            "level",
            &meta.level().as_str().to_ascii_lowercase(),
        );
        pair(&mut line, "target", meta.target());
        pair(
            &mut line,
            "msg",
            fields.message.as_deref().unwrap_or_default(),
        );
        for (key, value) in &fields.others {
            pair(&mut line, key, value);
        }
        writeln!(writer, "{line}")
    }
}

/// An event's fields as text, the message apart.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    others: Vec<(&'static str, String)>,
}

impl Fields {
    fn add(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = Some(value),
            name => self.others.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, format!("{value:?}"));
    }
}

/// Append ` key=value`, quoting the value when logfmt needs it: empty, or
/// holding a space, `=`, `"`, a backslash or a control character. The
/// escapes are Rust's (`\"`, `\\`, `\n`, `\u{1b}`), which logfmt parsers
/// read as Go's strconv quoting does for all but the rarest controls.
fn pair(line: &mut String, key: &str, value: &str) {
    use std::fmt::Write;
    if !line.is_empty() {
        line.push(' ');
    }
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    let _ = if plain {
        write!(line, "{key}={value}")
    } else {
        write!(line, "{key}={value:?}")
    };
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

#[cfg(test)]
mod tests {
    use super::pair;

    #[test]
    fn logfmt_values_are_quoted_only_when_needed() {
        let mut line = String::new();
        for (k, v) in [
            ("level", "info"),
            ("msg", "listening on http://127.0.0.1:9215"),
            ("empty", ""),
            ("eq", "a=b"),
            ("quote", "say \"hi\""),
            ("nl", "two\nlines"),
            ("path", "/proc/1/stat"),
        ] {
            pair(&mut line, k, v);
        }
        assert_eq!(
            line,
            r#"level=info msg="listening on http://127.0.0.1:9215" empty="" eq="a=b" quote="say \"hi\"" nl="two\nlines" path=/proc/1/stat"#
        );
    }
}
