//! What types alone cannot check: value ranges, regexes and combinations of
//! keys.
//!
//! Ranges and regex keys are declared where the key is, on its field:
//! `#[schemars(range(min = 1, max = 65536))]` and
//! `#[schemars(extend("format" = "regex"))]`. The JSON schema that documents
//! the key (`config --commented`, `/doc`) is therefore also what checks it,
//! for the global keys and for every collector's section alike, plugins
//! included, and the two cannot disagree.
//!
//! [`check`] is the one validation: `--check-config`, the daemon, the config
//! file, `HERAKLES_*` variables and flags all go through it. It names the key
//! path; the caller turns that into a file position or the variable or flag
//! that set it.

use std::fmt;

use serde_json::Value;

use super::{Config, ListenAddress, SmapsMode};

/// A key whose value is not acceptable.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// Dotted key path, `collectors.disk.device_exclude`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key \"{}\": {}", self.key, self.message)
    }
}

/// Check every key of `config` against its declared range or format, then
/// the rules that tie keys together.
pub fn check(config: &Config) -> Result<(), Invalid> {
    let tree = to_value(config, "")?;
    let root = schemars::schema_for!(Config).to_value();
    check_value(&tree, &root, &root, "")?;
    for (name, section) in &config.collectors.0 {
        let path = format!("collectors.{name}");
        let schema = section.registration.config_schema().to_value();
        check_value(&to_value(&section.config, &path)?, &schema, &schema, &path)?;
    }
    combinations(config)
}

fn to_value<T: serde::Serialize + ?Sized>(value: &T, key: &str) -> Result<Value, Invalid> {
    serde_json::to_value(value).map_err(|e| Invalid {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// Follow a local `$ref` to its definition.
pub(super) fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/")
            .map(|p| p.split('/').fold(root, |node, key| &node[key]))
            .unwrap_or(schema),
        None => schema,
    }
}

/// Whether `schema` declares JSON type `name` (alone or in a list).
fn has_type(schema: &Value, name: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == name,
        Some(Value::Array(ts)) => ts.iter().any(|t| t == name),
        _ => false,
    }
}

fn check_value(value: &Value, schema: &Value, root: &Value, path: &str) -> Result<(), Invalid> {
    let schema = resolve(schema, root);
    let invalid = |message: String| Invalid {
        key: path.to_string(),
        message,
    };
    if let (Some(props), Value::Object(map)) = (schema.get("properties"), value) {
        for (key, sub) in props.as_object().into_iter().flatten() {
            if let Some(v) = map.get(key) {
                let sub_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                check_value(v, sub, root, &sub_path)?;
            }
        }
    }
    if has_type(schema, "number") || has_type(schema, "integer") {
        let Some(n) = value.as_f64() else {
            // serde_json writes NaN and the infinities as null.
            if value.is_null() && !has_type(schema, "null") {
                return Err(invalid(format!(
                    "must be a finite number, {}",
                    range(schema)
                )));
            }
            return Ok(());
        };
        let below = schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|min| n < min);
        let above = schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|max| n > max);
        if below || above {
            return Err(invalid(format!(
                "{value} is out of range: {}",
                range(schema)
            )));
        }
    }
    if let Some(text) = value.as_str() {
        // In bytes, not characters as in JSON Schema: the one length limit
        // declared, on interface names, is the kernel's, and it counts bytes.
        let short = schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|min| (text.len() as u64) < min);
        let long = schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|max| (text.len() as u64) > max);
        if short || long {
            let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            let max = schema
                .get("maxLength")
                .map_or("any".into(), Value::to_string);
            return Err(invalid(format!(
                "{text:?} is {} bytes long: must be {min} to {max}",
                text.len()
            )));
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("regex") {
        if let Some(pattern) = value.as_str() {
            if let Err(e) = regex::Regex::new(pattern) {
                return Err(invalid(format!(
                    "invalid regex {pattern:?}: {}",
                    crate::util::regex_error_line(&e)
                )));
            }
        }
    }
    if let (Some(items), Value::Array(values)) = (schema.get("items"), value) {
        for v in values {
            check_value(v, items, root, path)?;
        }
    }
    Ok(())
}

/// "must be between 1 and 65536", from a schema's bounds.
pub(super) fn range(schema: &Value) -> String {
    match (schema.get("minimum"), schema.get("maximum")) {
        (Some(min), Some(max)) => format!("must be between {min} and {max}"),
        (Some(min), None) => format!("must be at least {min}"),
        (None, Some(max)) => format!("must be at most {max}"),
        (None, None) => "must be a number".to_string(),
    }
}

/// Rules that involve more than one key, or a format no schema keyword
/// describes.
fn combinations(c: &Config) -> Result<(), Invalid> {
    let invalid = |key: &str, message: String| {
        Err(Invalid {
            key: key.to_string(),
            message,
        })
    };
    if c.bind.parse::<std::net::IpAddr>().is_err() {
        return invalid("bind", format!("{:?} is not an IP address", c.bind));
    }
    if let Err(why) = telemetry_path(&c.telemetry_path) {
        return invalid("telemetry_path", why);
    }
    if c.enable_tls && (c.tls_cert_path.is_empty() || c.tls_key_path.is_empty()) {
        return invalid(
            "enable_tls",
            "needs both tls_cert_path and tls_key_path".into(),
        );
    }
    if c.enable_tls && !c.web_config_file.is_empty() {
        return invalid(
            "enable_tls",
            "cannot be combined with web_config_file: both configure HTTPS. Use one; in the \
             web config file, tls_server_config's cert_file and key_file take what \
             tls_cert_path and tls_key_path say"
                .into(),
        );
    }
    for a in &c.listen_addresses {
        if let Err(e) = a.parse::<ListenAddress>() {
            return invalid("listen_addresses", e);
        }
    }
    listening(c).map_err(|message| Invalid {
        key: if c.systemd_socket {
            "systemd_socket"
        } else {
            "listen_addresses"
        }
        .into(),
        message,
    })?;
    if c.smaps_mode != SmapsMode::Off && c.smaps_budget_ms == 0 {
        return invalid(
            "smaps_budget_ms",
            "must be at least 1 unless smaps_mode is off".into(),
        );
    }
    if let Some(g) = c.search_groups.iter().find(|g| g.trim().is_empty()) {
        return invalid("search_groups", format!("empty group name {g:?}"));
    }
    Ok(())
}

/// Where to listen is said one way: by systemd's sockets, by
/// `listen_addresses`, or by `bind` and `port`. A second way set too would
/// be ignored, so it is an error instead (a `bind` or `port` at its default
/// counts as not set).
fn listening(c: &Config) -> Result<(), String> {
    let defaults = Config::default();
    let mut also = Vec::new();
    if c.systemd_socket && !c.listen_addresses.is_empty() {
        also.push("listen_addresses".to_string());
    }
    if c.systemd_socket || !c.listen_addresses.is_empty() {
        if c.bind != defaults.bind {
            also.push(format!("bind {:?}", c.bind));
        }
        if c.port != defaults.port {
            also.push(format!("port {}", c.port));
        }
    }
    if also.is_empty() {
        return Ok(());
    }
    let what = if c.systemd_socket {
        "the listening sockets come from systemd (the .socket unit's ListenStream=)"
    } else {
        "listen_addresses says where to listen (host:port each)"
    };
    Err(format!(
        "cannot be combined with {}: {what}; remove one",
        also.join(" or ")
    ))
}

/// The paths of the endpoints other than the metrics.
const OTHER_ENDPOINTS: [&str; 5] = ["/", "/health", "/config", "/subgroups", "/doc"];

/// Why `path` cannot be where the metrics are served. A request's path is
/// matched as sent, so the path must be one a client sends unchanged:
/// printable ASCII with no query, fragment or percent-escape.
fn telemetry_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with /"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '?' | '#' | '%'))
    {
        return Err(format!(
            "{path:?} contains {c:?}: only printable ASCII without ?, # or %"
        ));
    }
    if OTHER_ENDPOINTS.contains(&path) {
        return Err(format!("{path:?} is the path of another endpoint"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every numeric key, global or in any collector's section, has both
    /// bounds: a key without them is how `parallelism:
    /// 18446744073709551615` once passed the check and crashed the daemon.
    #[test]
    fn every_numeric_key_has_a_range() {
        let mut missing = Vec::new();
        let mut seen = 0;
        let mut visit = |path: String, schema: &Value| {
            if has_type(schema, "number") || has_type(schema, "integer") {
                seen += 1;
                if schema.get("minimum").is_none() || schema.get("maximum").is_none() {
                    missing.push(path);
                }
            }
        };
        walk_all(&mut visit);
        assert!(seen >= 17, "only {seen} numeric keys found");
        assert!(missing.is_empty(), "keys without a range: {missing:?}");
    }

    /// Keys named like filters hold regexes and are checked as such.
    #[test]
    fn every_filter_key_is_a_checked_regex() {
        let mut filters = Vec::new();
        let mut visit = |path: String, schema: &Value| {
            let name = path.rsplit('.').next().unwrap_or_default();
            if name.ends_with("_include") || name.ends_with("_exclude") {
                filters.push(path.clone());
                assert_eq!(schema["format"], "regex", "{path}");
            }
        };
        walk_all(&mut visit);
        assert!(
            filters.len() >= 6,
            "disk, netdev and filesystem filters: {filters:?}"
        );
    }

    /// Visit every key of the global schema and of every collector's.
    fn walk_all(visit: &mut impl FnMut(String, &Value)) {
        let root = schemars::schema_for!(Config).to_value();
        walk(&root, &root, String::new(), visit);
        for r in herakles_core::registrations() {
            let schema = r.config_schema().to_value();
            walk(&schema, &schema, format!("collectors.{}", r.name), visit);
        }
    }

    fn walk(schema: &Value, root: &Value, path: String, visit: &mut impl FnMut(String, &Value)) {
        let schema = resolve(schema, root);
        visit(path.clone(), schema);
        for (key, sub) in schema["properties"].as_object().into_iter().flatten() {
            let sub_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk(sub, root, sub_path, visit);
        }
    }

    #[test]
    fn telemetry_path_is_a_path_no_other_endpoint_has() {
        for ok in ["/metrics", "/node/metrics", "/m_1-x.y~"] {
            assert_eq!(telemetry_path(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("metrics", "must start with /"),
            ("/a b", "contains ' '"),
            ("/m?x=1", "contains '?'"),
            ("/m%20", "contains '%'"),
            ("/métriques", "contains 'é'"),
            ("/health", "another endpoint"),
            ("/", "another endpoint"),
        ] {
            let e = telemetry_path(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn out_of_range_names_the_key_and_the_range() {
        let c = Config {
            collector_timeout: 1e20,
            ..Config::default()
        };
        assert_eq!(
            check(&c).unwrap_err().to_string(),
            "key \"collector_timeout\": 1e+20 is out of range: must be between 0.001 and 3600"
        );
        let c = Config {
            collector_timeout: f64::NAN,
            ..Config::default()
        };
        let e = check(&c).unwrap_err();
        assert_eq!(e.key, "collector_timeout");
        assert!(e.message.starts_with("must be a finite number"), "{e}");
        let c = Config {
            parallelism: usize::MAX,
            ..Config::default()
        };
        assert_eq!(check(&c).unwrap_err().key, "parallelism");
        assert_eq!(check(&Config::default()), Ok(()));
    }

    /// Where to listen and whether to serve HTTPS are each said one way; a
    /// second way set too is an error naming both, never one ignored.
    #[test]
    fn one_way_to_say_where_to_listen_and_how_to_serve_https() {
        let c = |f: &dyn Fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            check(&c)
        };
        let addresses = |c: &mut Config| c.listen_addresses = vec![":9100".into()];
        assert_eq!(c(&addresses), Ok(()));
        let e = c(&|c| {
            addresses(c);
            c.port = 9300;
        })
        .unwrap_err();
        assert_eq!(e.key, "listen_addresses");
        assert!(
            e.message.starts_with("cannot be combined with port 9300"),
            "{e}"
        );
        let e = c(&|c| {
            c.systemd_socket = true;
            addresses(c);
            c.bind = "127.0.0.1".into();
        })
        .unwrap_err();
        assert_eq!(e.key, "systemd_socket");
        assert!(
            e.message
                .starts_with("cannot be combined with listen_addresses or bind \"127.0.0.1\""),
            "{e}"
        );
        assert_eq!(c(&|c| c.systemd_socket = true), Ok(()));
        let e = c(&|c| c.listen_addresses = vec![":9100".into(), "::1:9100".into()]).unwrap_err();
        assert_eq!(e.key, "listen_addresses");
        assert!(e.message.contains("goes in brackets"), "{e}");

        let e = c(&|c| {
            c.enable_tls = true;
            c.tls_cert_path = "c.pem".into();
            c.tls_key_path = "k.pem".into();
            c.web_config_file = "web.yml".into();
        })
        .unwrap_err();
        assert_eq!(e.key, "enable_tls");
        assert!(
            e.message
                .contains("cannot be combined with web_config_file"),
            "{e}"
        );
    }
}
