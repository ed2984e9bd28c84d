//! Settings from outside the config file: `HERAKLES_*` environment variables
//! and command-line flags.
//!
//! Both are overrides: a key path and the text the operator wrote. They are
//! merged over the file through [`merge`], the one place that turns text
//! into a typed value, so a setting has one name, one conversion and one
//! validation whichever way it comes in; only the error message differs, by
//! naming the variable or flag.

use std::ffi::OsString;
use std::fmt;

use serde_json::Value;

use super::format::ConfigError;
use super::load::{unknown_message, LoadedFile};
use super::{locate, validate, Config};
use crate::util::did_you_mean;

/// Where an override came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The variable's name, `HERAKLES_PORT`.
    Env(String),
    /// The flag as documented, `--web.max-requests`.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env(name) => write!(f, "environment variable {name}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One key set from outside the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Key path, `["collectors", "disk", "device_exclude"]`.
    pub key: Vec<String>,
    /// The value as written. Read as a YAML scalar, except that a string key
    /// keeps the text as is and a list key also takes `a,b,c`.
    pub raw: String,
    pub source: Source,
}

impl Override {
    /// An override of dotted `key`.
    pub fn new(key: &str, raw: impl Into<String>, source: Source) -> Override {
        Override {
            key: key.split('.').map(str::to_string).collect(),
            raw: raw.into(),
            source,
        }
    }

    fn dotted(&self) -> String {
        self.key.join(".")
    }

    /// Whether this override set `path` or a key inside or around it.
    fn covers(&self, path: &str) -> bool {
        let key = self.dotted();
        path == key
            || path.starts_with(&format!("{key}."))
            || path.starts_with(&format!("{key}["))
            || key.starts_with(&format!("{path}."))
    }
}

const PREFIX: &str = "HERAKLES_";

/// The `HERAKLES_*` variables among `vars` as overrides, and a note for
/// each variable set aside as a Kubernetes service link.
///
/// `HERAKLES_PORT=9300` sets `port`; a double underscore descends into a
/// section: `HERAKLES_PATHS__PROCFS=/host/proc`,
/// `HERAKLES_COLLECTORS__DISK__ENABLED=false`.
///
/// Kubernetes gives every pod variables for each Service in its namespace,
/// named after the Service: one called `herakles` yields
/// `HERAKLES_PORT=tcp://10.0.0.7:9215`, `HERAKLES_PORT_9215_TCP_ADDR=...`,
/// `HERAKLES_SERVICE_HOST=...`. They share our prefix by accident, so a
/// variable of that shape is not read as a setting when it names no key, or
/// when it is `*_PORT` holding a `tcp://` (or `udp://`, `sctp://`) address,
/// which no port setting can be. See [`service_link`].
pub fn env_overrides(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<(Vec<Override>, Vec<String>), ConfigError> {
    let keys =
        serde_json::to_value(Config::default()).map_err(|e| ConfigError::msg(e.to_string()))?;
    let mut found = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str().filter(|n| n.starts_with(PREFIX)) else {
            continue;
        };
        let Some(value) = value.to_str() else {
            return Err(ConfigError::msg(format!(
                "environment variable {name}: value is not valid UTF-8"
            )));
        };
        found.push((name.to_string(), value.to_string()));
    }
    // A stable order, so that which error is reported first never depends
    // on the order the environment happens to be in.
    found.sort();
    let mut overrides = Vec::new();
    let mut notes = Vec::new();
    for (name, raw) in found {
        let key: Vec<String> = name[PREFIX.len()..]
            .to_ascii_lowercase()
            .split("__")
            .map(str::to_string)
            .collect();
        if let Some(why) = service_link(&name, &raw, names_key(&keys, &key)) {
            notes.push(format!("ignoring environment variable {name}: {why}"));
            continue;
        }
        overrides.push(Override {
            key,
            raw,
            source: Source::Env(name),
        });
    }
    Ok((overrides, notes))
}

fn names_key(tree: &Value, key: &[String]) -> bool {
    key.iter().try_fold(tree, |node, k| node.get(k)).is_some()
}

/// Why `name=value` looks like a variable Kubernetes made for a Service
/// (see [`env_overrides`]), or `None` if it may be a setting.
///
/// The shapes, for a Service whose name upper-cased with `-` as `_` is
/// `SVC`: `SVC_SERVICE_HOST`, `SVC_SERVICE_PORT`, `SVC_SERVICE_PORT_<NAME>`,
/// `SVC_PORT`, `SVC_PORT_<N>_<PROTO>`, `SVC_PORT_<N>_<PROTO>_{PROTO,PORT,ADDR}`.
pub fn service_link(name: &str, value: &str, is_key: bool) -> Option<&'static str> {
    const WHY: &str = "a Kubernetes service link variable, not a setting";
    let address = ["tcp://", "udp://", "sctp://"]
        .iter()
        .any(|scheme| value.starts_with(scheme));
    if name.ends_with("_PORT") && address {
        return Some(WHY);
    }
    if is_key {
        return None;
    }
    let parts: Vec<&str> = name.split('_').collect();
    let n = parts.len();
    let is_proto = |p: &str| matches!(p, "TCP" | "UDP" | "SCTP");
    let is_number = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let shaped = name.ends_with("_SERVICE_HOST")
        || name.ends_with("_SERVICE_PORT")
        || parts.windows(2).any(|w| w == ["SERVICE", "PORT"])
        || (n >= 3 && parts[n - 3] == "PORT" && is_number(parts[n - 2]) && is_proto(parts[n - 1]))
        || (n >= 4
            && parts[n - 4] == "PORT"
            && is_number(parts[n - 3])
            && is_proto(parts[n - 2])
            && matches!(parts[n - 1], "PROTO" | "PORT" | "ADDR"));
    shaped.then_some(WHY)
}

/// Apply `overrides` over `config`, later ones winning, and validate the
/// result. An error names the variable or flag that set the key; a problem
/// with a key that came from `file` is reported at its position there.
pub fn merge(
    config: Config,
    overrides: &[Override],
    file: Option<&LoadedFile>,
) -> Result<Config, ConfigError> {
    let merged = if overrides.is_empty() {
        config
    } else {
        let mut tree =
            serde_json::to_value(&config).map_err(|e| ConfigError::msg(e.to_string()))?;
        for o in overrides {
            let node = find(&mut tree, o)?;
            *node = value_for(node, &o.raw);
        }
        let mut merged = serde_path_to_error::deserialize::<_, Config>(tree).map_err(|e| {
            let path = e.path().to_string();
            blame(overrides, &path, &e.into_inner().to_string())
        })?;
        keep_explicit_collectors(&config, &mut merged, overrides);
        merged.settle_collectors();
        merged
    };
    if let Err(invalid) = validate::check(&merged) {
        if overrides.iter().any(|o| o.covers(&invalid.key)) {
            return Err(blame(overrides, &invalid.key, &invalid.message));
        }
        let mut e = ConfigError::msg(invalid.to_string());
        if let Some(f) = file {
            e.file = Some(f.path.clone());
            if let Some((line, col)) = locate::locate(&f.text, f.format, &invalid.key) {
                (e.line, e.column) = (Some(line), Some(col));
            }
        }
        return Err(e);
    }
    Ok(merged)
}

/// The tree `merged` was parsed from has every section's `enabled`, so
/// parsing marks them all as set explicitly. Put back what `base` knew,
/// except for the sections an override set (or replaced), whose parse is
/// right: `disable_default_collectors` must still tell a collector the
/// operator named from one that is on by default.
fn keep_explicit_collectors(base: &Config, merged: &mut Config, overrides: &[Override]) {
    for (name, section) in &mut merged.collectors.0 {
        let enabled_key = ["collectors", name, "enabled"];
        let overridden = overrides.iter().any(|o| {
            o.key.len() <= enabled_key.len() && o.key.iter().zip(enabled_key).all(|(a, b)| a == b)
        });
        if !overridden {
            section.set_explicitly = base
                .collectors
                .0
                .get(name)
                .is_some_and(|b| b.set_explicitly);
        }
    }
}

/// The node `o` sets; an unknown key is an error with a suggestion.
fn find<'a>(tree: &'a mut Value, o: &Override) -> Result<&'a mut Value, ConfigError> {
    let mut node = tree;
    for (i, key) in o.key.iter().enumerate() {
        let Value::Object(map) = node else {
            return Err(ConfigError::msg(format!(
                "{}: \"{}\" is not a section",
                o.source,
                o.key[..i].join(".")
            )));
        };
        if !map.contains_key(key) {
            let hint = did_you_mean(key, map.keys().map(String::as_str))
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            return Err(ConfigError::msg(format!(
                "{}: unknown key \"{}\"{hint}",
                o.source,
                o.key[..=i].join(".")
            )));
        }
        node = map.get_mut(key).expect("checked above");
    }
    Ok(node)
}

/// The typed value of `raw` for a key whose current value is `target`.
fn value_for(target: &Value, raw: &str) -> Value {
    let yaml = || serde_norway::from_str::<Value>(raw).ok();
    match target {
        // Strings stay strings even when they look like numbers, so that
        // `HERAKLES_BIND=127.0.0.1` or a numeric file name keeps its type.
        Value::String(_) => Value::String(raw.to_string()),
        // `a,b,c`, or a YAML list `[a, b]`.
        Value::Array(_) => match yaml() {
            Some(list @ Value::Array(_)) => list,
            _ => Value::Array(
                raw.split(',')
                    .map(|s| Value::String(s.trim().to_string()))
                    .collect(),
            ),
        },
        _ => match yaml() {
            Some(Value::Null) | None => Value::String(raw.to_string()),
            Some(v) => v,
        },
    }
}

/// An error about `path`, naming the last override that set it.
fn blame(overrides: &[Override], path: &str, message: &str) -> ConfigError {
    let message = match unknown_message(message) {
        Some((_, text)) => text,
        None => message.to_string(),
    };
    match overrides.iter().rev().find(|o| o.covers(path)) {
        Some(o) => ConfigError::msg(format!("{}: key \"{path}\": {message}", o.source)),
        None => ConfigError::msg(format!("key \"{path}\": {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn apply_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let (overrides, _) = env_overrides(env(pairs))?;
        merge(Config::default(), &overrides, None)
    }

    #[test]
    fn env_overrides_and_rejects_unknown() {
        let c = apply_env(&[
            ("HERAKLES_PORT", "9300"),
            ("HERAKLES_BIND", "127.0.0.1"),
            ("HERAKLES_COLLECTORS__MEMORY__ENABLED", "false"),
            ("HERAKLES_SEARCH_GROUPS", "db, web"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(c.port, 9300);
        assert_eq!(c.bind, "127.0.0.1");
        assert!(!c.collectors.0["memory"].enabled);
        assert_eq!(c.search_groups, ["db", "web"]);
        let e = apply_env(&[("HERAKLES_PROT", "1")]).unwrap_err();
        assert!(e.message.contains("did you mean \"port\""), "{e}");
        let e = apply_env(&[("HERAKLES_PORT", "x")]).unwrap_err();
        assert!(
            e.message
                .starts_with("environment variable HERAKLES_PORT: key \"port\": invalid type"),
            "{e}"
        );
        let e = apply_env(&[("HERAKLES_LOG_LEVEL", "verbose")]).unwrap_err();
        assert!(e.message.contains("unknown value \"verbose\""), "{e}");
    }

    #[test]
    fn env_values_are_validated_like_the_file() {
        let e = apply_env(&[("HERAKLES_MAX_REQUESTS", "2305843009213693952")]).unwrap_err();
        assert_eq!(
            e.message,
            "environment variable HERAKLES_MAX_REQUESTS: key \"max_requests\": \
             2305843009213693952 is out of range: must be between 1 and 65536"
        );
        let e = apply_env(&[("HERAKLES_COLLECTORS__DISK__DEVICE_EXCLUDE", "(")]).unwrap_err();
        assert!(
            e.message.starts_with(
                "environment variable HERAKLES_COLLECTORS__DISK__DEVICE_EXCLUDE: \
                 key \"collectors.disk.device_exclude\": invalid regex"
            ),
            "{e}"
        );
    }

    /// The variables Kubernetes injects for a Service named `herakles`
    /// (and one named `herakles-node-exporter`) are not settings.
    #[test]
    fn kubernetes_service_links_are_ignored() {
        let links = [
            ("HERAKLES_PORT", "tcp://10.96.12.34:9215"),
            ("HERAKLES_PORT_9215_TCP", "tcp://10.96.12.34:9215"),
            ("HERAKLES_PORT_9215_TCP_PROTO", "tcp"),
            ("HERAKLES_PORT_9215_TCP_PORT", "9215"),
            ("HERAKLES_PORT_9215_TCP_ADDR", "10.96.12.34"),
            ("HERAKLES_SERVICE_HOST", "10.96.12.34"),
            ("HERAKLES_SERVICE_PORT", "9215"),
            ("HERAKLES_SERVICE_PORT_METRICS", "9215"),
            ("HERAKLES_NODE_EXPORTER_SERVICE_HOST", "10.96.0.9"),
            ("HERAKLES_NODE_EXPORTER_PORT", "udp://10.96.0.9:9215"),
            ("HERAKLES_NODE_EXPORTER_PORT_9215_UDP_ADDR", "10.96.0.9"),
        ];
        let (overrides, notes) = env_overrides(env(&links)).unwrap();
        assert!(overrides.is_empty(), "{overrides:?}");
        assert_eq!(notes.len(), links.len());
        assert!(notes[0].contains("Kubernetes service link"), "{notes:?}");
        // Next to them, a real setting still applies.
        let mut with_setting = links.to_vec();
        with_setting.push(("HERAKLES_PORT_X", "1"));
        let e = apply_env(&with_setting).unwrap_err();
        assert!(e.message.contains("HERAKLES_PORT_X"), "{e}");
        let mut with_setting = links.to_vec();
        with_setting[0] = ("HERAKLES_PORT", "9300");
        assert_eq!(apply_env(&with_setting).unwrap().port, 9300);
    }

    #[test]
    fn later_overrides_win_and_errors_name_the_flag() {
        let flag = |key: &str, raw: &str, flag: &str| {
            Override::new(key, raw, Source::Flag(flag.to_string()))
        };
        let c = merge(
            Config::default(),
            &[
                Override::new("port", "1", Source::Env("HERAKLES_PORT".into())),
                flag("port", "2", "--port"),
                flag(
                    "collectors.disk.device_exclude",
                    "^sd",
                    "--collector.disk.device-exclude",
                ),
            ],
            None,
        )
        .unwrap();
        assert_eq!(c.port, 2);
        let e = merge(
            Config::default(),
            &[flag("collector_timeout", "1e20", "--collector-timeout")],
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "flag --collector-timeout: key \"collector_timeout\": \
             1e+20 is out of range: must be between 0.001 and 3600"
        );
        let e = merge(
            Config::default(),
            &[flag("collectors.disk.bogus", "1", "--collector.disk.bogus")],
            None,
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("flag --collector.disk.bogus: unknown key"),
            "{e}"
        );
    }

    #[test]
    fn invalid_env_bytes_are_an_error_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let vars = vec![(
            OsString::from("HERAKLES_BIND"),
            OsString::from_vec(vec![0xff, 0xfe]),
        )];
        let e = env_overrides(vars).unwrap_err();
        assert!(e.message.contains("HERAKLES_BIND"), "{e}");
        let other = vec![(OsString::from_vec(vec![0xff]), OsString::from("x"))];
        assert!(env_overrides(other).unwrap().0.is_empty());
    }
}
