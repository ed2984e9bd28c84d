//! Reading a web config file: exporter-toolkit's `web-config.yml`, the file
//! node_exporter reads with `--web.config.file`, unchanged.
//!
//! The keys are node_exporter 1.5's (exporter-toolkit 0.8): an operator who
//! secures a fleet of exporters with one file can point this exporter at
//! the same file. What differs is what rustls cannot do (TLS 1.0/1.1,
//! CBC and RSA key exchange suites, P-521) and newer toolkit keys this
//! exporter does not implement; each is an error naming the key, never
//! something quietly left out.
//!
//! Errors have the main config file's shape, `file:line:column: key "k":
//! message`. Values are checked while they are read, so their errors carry
//! the value's own position; checks across keys and of the files a key
//! names are placed with [`crate::config::locate`], as the main config's
//! range checks are.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::auth::Users;
use super::headers::ResponseHeaders;
use super::tls::{Origin, TlsError, TlsSettings};
use super::values::{CipherSuite, ClientAuth, Curve, TlsVersion};
use crate::config::locate::locate;
use crate::config::{ConfigError, Format};
use crate::util::did_you_mean;

/// A web configuration: TLS, basic authentication users and response
/// headers, checked (files included) and ready to serve with
/// [`super::WebSecurity::new`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// `http_server_config.http2`: accepted for compatibility; the exporter
    /// serves HTTP/1.1 (scrapes gain nothing from HTTP/2).
    pub http2: bool,
    pub headers: ResponseHeaders,
    pub users: Users,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<Users>,
    rate_limit: Option<Unsupported>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<ClientAuth>,
    client_ca_file: Option<String>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    cipher_suites: Option<Vec<CipherSuite>>,
    curve_preferences: Option<Vec<Curve>>,
    prefer_server_cipher_suites: Option<bool>,
    cert: Option<Unsupported>,
    key: Option<Unsupported>,
    client_ca: Option<Unsupported>,
    client_allowed_sans: Option<Unsupported>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<ResponseHeaders>,
}

/// A key of newer exporter-toolkit versions that this exporter does not
/// implement: reading it is an error rather than a setting ignored.
struct Unsupported;

impl<'de> Deserialize<'de> for Unsupported {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnsupportedVisitor)
    }
}

/// Fails on whatever value it is given, from inside the visit, so that the
/// error carries the value's position.
struct UnsupportedVisitor;

impl UnsupportedVisitor {
    fn refuse<T, E: de::Error>(self) -> Result<T, E> {
        Err(E::custom(
            "not supported by this exporter (it reads the keys of node_exporter 1.5's web \
             config: certificates and keys as files, no rate limit, no SAN filter); see \
             docs/security.md",
        ))
    }
}

impl<'de> Visitor<'de> for UnsupportedVisitor {
    type Value = Unsupported;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing")
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Unsupported, A::Error> {
        self.refuse()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Unsupported, A::Error> {
        self.refuse()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Unsupported, E> {
        self.refuse()
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Unsupported, E> {
        self.refuse()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Unsupported, E> {
        self.refuse()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Unsupported, E> {
        self.refuse()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Unsupported, E> {
        self.refuse()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Unsupported, E> {
        self.refuse()
    }
}

/// A problem found after the file was read, at a dotted key.
struct Problem {
    key: &'static str,
    message: String,
}

fn problem(key: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        key,
        message: message.into(),
    }
}

impl From<TlsError> for Problem {
    fn from(e: TlsError) -> Problem {
        problem(e.key, e.message)
    }
}

impl WebConfig {
    /// Read and check the web config file at `path` (`--web.config.file`):
    /// its syntax, keys and values, and that the certificate, key and CA
    /// files it names load. Relative file names are relative to the
    /// directory of `path`, as exporter-toolkit has them.
    pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
        let text = crate::util::read_regular_file(path).map_err(|e| ConfigError {
            file: Some(path.to_path_buf()),
            ..ConfigError::msg(match e.kind() {
                std::io::ErrorKind::NotFound => "web config file not found".to_string(),
                _ => format!("cannot read web config file: {e}"),
            })
        })?;
        Self::parse(&text, path)
    }

    /// [`WebConfig::load`] of `text`, as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, ConfigError> {
        let at = |key: &str, message: String| {
            let position = locate(text, Format::Yaml, key);
            ConfigError {
                file: Some(path.to_path_buf()),
                line: position.map(|p| p.0),
                column: position.map(|p| p.1),
                message: format!("key \"{key}\": {message}"),
            }
        };
        // An empty or comment-only file is a null document: plain HTTP,
        // as exporter-toolkit has it.
        let raw = if matches!(
            serde_norway::from_str::<serde_norway::Value>(text),
            Ok(serde_norway::Value::Null)
        ) {
            RawWebConfig::default()
        } else {
            let de = serde_norway::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| syntax_error(text, path, e))?
        };
        let dir = path.parent().unwrap_or(Path::new(""));
        let config = Self::from_raw(raw, dir).map_err(|p| at(p.key, p.message))?;
        if let Some(tls) = &config.tls {
            tls.server_config().map_err(|e| at(e.key, e.message))?;
        }
        Ok(config)
    }

    fn from_raw(raw: RawWebConfig, dir: &Path) -> Result<WebConfig, Problem> {
        let http = raw.http_server_config.unwrap_or_default();
        Ok(WebConfig {
            tls: raw
                .tls_server_config
                .map(|t| tls_settings(t, dir))
                .transpose()?
                .flatten(),
            http2: http.http2.unwrap_or(true),
            headers: http.headers.unwrap_or_default(),
            users: raw.basic_auth_users.unwrap_or_default(),
        })
    }

    /// The main config's own TLS keys (`enable_tls`, `tls_cert_path`,
    /// `tls_key_path`, and the `--enable-tls --tls-cert --tls-key` flags)
    /// as a web config: TLS 1.2 and 1.3 with that certificate, nothing
    /// else. The files are checked; an error names `tls_cert_path` or
    /// `tls_key_path`.
    pub fn from_spec_keys(
        enable_tls: bool,
        tls_cert_path: &str,
        tls_key_path: &str,
    ) -> Result<WebConfig, TlsError> {
        if !enable_tls {
            return Ok(WebConfig::plain_http());
        }
        for (key, value) in [
            ("tls_cert_path", tls_cert_path),
            ("tls_key_path", tls_key_path),
        ] {
            if value.is_empty() {
                return Err(TlsError {
                    key,
                    message: "enable_tls needs both tls_cert_path and tls_key_path".into(),
                });
            }
        }
        let tls =
            TlsSettings::with_files(tls_cert_path.into(), tls_key_path.into(), Origin::SpecKeys);
        tls.server_config()?;
        Ok(WebConfig {
            tls: Some(tls),
            ..WebConfig::plain_http()
        })
    }

    /// No TLS, no users, no headers: what serving without a web config
    /// means.
    pub fn plain_http() -> WebConfig {
        WebConfig {
            http2: true,
            ..WebConfig::default()
        }
    }

    /// The configuration as `/config` may show it: file names and settings,
    /// user names, never a hash or a key's contents.
    pub fn redacted(&self) -> Redacted {
        Redacted {
            tls_server_config: self.tls.as_ref().map(|t| RedactedTls {
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
                client_auth_type: t.client_auth.name(),
                client_ca_file: t.client_ca_file.clone(),
                min_version: t.min_version.name(),
                max_version: t.max_version.name(),
                cipher_suites: t.cipher_suites.iter().map(|c| c.name()).collect(),
                curve_preferences: t.curve_preferences.iter().map(|c| c.name()).collect(),
                prefer_server_cipher_suites: t.prefer_server_cipher_suites,
            }),
            http_server_config: RedactedHttp {
                http2: self.http2,
                headers: self
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            },
            basic_auth_users: self
                .users
                .names()
                .map(|n| (n.to_string(), SECRET))
                .collect(),
        }
    }
}

/// What a secret is shown as, as Prometheus shows one.
const SECRET: &str = "<secret>";

/// [`WebConfig::redacted`]: serializes in the web config's own layout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Redacted {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_config: Option<RedactedTls>,
    pub http_server_config: RedactedHttp,
    pub basic_auth_users: std::collections::BTreeMap<String, &'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedactedTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    pub min_version: &'static str,
    pub max_version: &'static str,
    pub cipher_suites: Vec<&'static str>,
    pub curve_preferences: Vec<&'static str>,
    pub prefer_server_cipher_suites: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedactedHttp {
    pub http2: bool,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// `tls_server_config` checked: `None` when it turns TLS off.
fn tls_settings(raw: RawTls, dir: &Path) -> Result<Option<TlsSettings>, Problem> {
    let set = |s: Option<String>| s.filter(|s| !s.is_empty());
    let cert_file = set(raw.cert_file);
    let key_file = set(raw.key_file);
    let client_ca_file = set(raw.client_ca_file);
    // exporter-toolkit serves TLS when any of these four is set.
    let enabled = cert_file.is_some()
        || key_file.is_some()
        || raw.client_auth_type.is_some()
        || client_ca_file.is_some();
    if !enabled {
        let stray = [
            ("tls_server_config.min_version", raw.min_version.is_some()),
            ("tls_server_config.max_version", raw.max_version.is_some()),
            (
                "tls_server_config.cipher_suites",
                raw.cipher_suites.is_some(),
            ),
            (
                "tls_server_config.curve_preferences",
                raw.curve_preferences.is_some(),
            ),
            (
                "tls_server_config.prefer_server_cipher_suites",
                raw.prefer_server_cipher_suites.is_some(),
            ),
        ];
        return match stray.into_iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(problem(
                key,
                "has no effect: TLS is off without cert_file and key_file",
            )),
            None => Ok(None),
        };
    }
    let Some(cert_file) = cert_file else {
        return Err(problem(
            "tls_server_config.cert_file",
            "missing: TLS needs cert_file and key_file",
        ));
    };
    let Some(key_file) = key_file else {
        return Err(problem(
            "tls_server_config.key_file",
            "missing: TLS needs cert_file and key_file",
        ));
    };
    let client_auth = raw.client_auth_type.unwrap_or_default();
    if client_ca_file.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(problem(
            "tls_server_config.client_ca_file",
            "is set, but client_auth_type asks for no client certificate; set \
             client_auth_type: RequireAndVerifyClientCert to require certificates it issued",
        ));
    }
    if client_ca_file.is_none() && client_auth.verifies() {
        return Err(problem(
            "tls_server_config.client_auth_type",
            format!(
                "{} checks client certificates against client_ca_file, which is not set",
                client_auth.name()
            ),
        ));
    }
    let min_version = raw.min_version.unwrap_or(TlsVersion::Tls12);
    let max_version = raw.max_version.unwrap_or(TlsVersion::Tls13);
    if min_version > max_version {
        return Err(problem(
            "tls_server_config.min_version",
            format!(
                "{} is above max_version {}",
                min_version.name(),
                max_version.name()
            ),
        ));
    }
    let cipher_suites = raw.cipher_suites.unwrap_or_default();
    if let Some(off) = cipher_suites
        .iter()
        .find(|s| !(min_version..=max_version).contains(&s.version()))
    {
        return Err(problem(
            "tls_server_config.cipher_suites",
            format!(
                "{} is a {} suite, but min_version..max_version is {}..{}",
                off.name(),
                off.version().name(),
                min_version.name(),
                max_version.name()
            ),
        ));
    }
    let join = |f: String| {
        let p = PathBuf::from(f);
        if p.is_absolute() {
            p
        } else {
            dir.join(p)
        }
    };
    Ok(Some(TlsSettings {
        cert_file: join(cert_file),
        key_file: join(key_file),
        client_auth,
        client_ca_file: client_ca_file.map(join),
        min_version,
        max_version,
        cipher_suites,
        curve_preferences: raw.curve_preferences.unwrap_or_default(),
        prefer_server_cipher_suites: raw.prefer_server_cipher_suites.unwrap_or(true),
        origin: Origin::WebConfig,
    }))
}

/// A YAML error as `file:line:column: key "k": message`, unknown keys with
/// a suggestion.
fn syntax_error(
    text: &str,
    path: &Path,
    e: serde_path_to_error::Error<serde_norway::Error>,
) -> ConfigError {
    let key = e.path().to_string();
    let key = if key == "." { String::new() } else { key };
    let inner = e.into_inner();
    let mut position = inner.location().map(|l| (l.line(), l.column()));
    let mut message = inner.to_string();
    // serde_norway writes "<path>: <message> at line L column C"; the
    // position and key go in their own places.
    if let Some((line, column)) = position {
        let suffix = format!(" at line {line} column {column}");
        if let Some(m) = message.strip_suffix(&suffix) {
            message = m.to_string();
        }
    }
    // serde_norway's own path may stop short of ours (for an unknown key
    // it names the map, we name the key).
    if let Some((prefix, rest)) = message.split_once(": ") {
        if !key.is_empty() && key.starts_with(prefix) {
            message = rest.to_string();
        }
    }
    if let Some((name, valid)) = unknown_field(&message) {
        let hint = did_you_mean(&name, valid.iter().map(String::as_str))
            .map(|m| format!(" (did you mean \"{m}\"?)"))
            .unwrap_or_default();
        message = format!("unknown key{hint}; valid: {}", valid.join(", "));
    }
    if position.is_none() && !key.is_empty() {
        position = locate(text, Format::Yaml, &key);
    }
    ConfigError {
        file: Some(path.to_path_buf()),
        line: position.map(|p| p.0),
        column: position.map(|p| p.1),
        message: if key.is_empty() {
            message
        } else {
            format!("key \"{key}\": {message}")
        },
    }
}

/// The field and the valid names of serde's "unknown field `x`, expected
/// one of `a`, `b`".
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    if !message.starts_with("unknown field") {
        return None;
    }
    let mut ticked = message.split('`').skip(1).step_by(2).map(str::to_string);
    let name = ticked.next()?;
    Some((name, ticked.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebConfig, ConfigError> {
        WebConfig::parse(text, Path::new("/nonexistent/web.yml"))
    }

    fn err(text: &str) -> ConfigError {
        parse(text).unwrap_err()
    }

    #[test]
    fn empty_file_and_sections_serve_plain_http() {
        for text in [
            "",
            "# nothing\n",
            "tls_server_config:\n",
            "tls_server_config: {}\n",
        ] {
            let c = parse(text).unwrap();
            assert_eq!(c.tls, None, "{text:?}");
            assert!(c.http2 && c.users.is_empty() && c.headers.is_empty());
        }
        let c = parse("http_server_config:\n  http2: false\n").unwrap();
        assert!(!c.http2);
    }

    #[test]
    fn unknown_keys_name_line_key_and_suggestion() {
        let e = err("tls_server_config:\n  cert_fil: a.crt\n");
        assert_eq!((e.line, e.column), (Some(2), Some(3)), "{e}");
        assert!(
            e.message.contains("key \"tls_server_config.cert_fil\""),
            "{e}"
        );
        assert!(e.message.contains("did you mean \"cert_file\""), "{e}");
        assert!(e.to_string().starts_with("/nonexistent/web.yml:2:"), "{e}");
        let e = err("basic_auth_user:\n  a: b\n");
        assert_eq!(e.line, Some(1), "{e}");
        assert!(
            e.message.contains("did you mean \"basic_auth_users\""),
            "{e}"
        );
    }

    #[test]
    fn values_rustls_cannot_honour_are_errors_at_the_value() {
        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n");
        assert_eq!((e.line, e.column), (Some(4), Some(16)), "{e}");
        assert!(e.message.contains("tls_server_config.min_version"), "{e}");
        assert!(e.message.contains("TLS11 is not supported"), "{e}");

        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites:\n    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n    - TLS_RSA_WITH_AES_128_CBC_SHA\n");
        assert_eq!((e.line, e.column), (Some(6), Some(7)), "{e}");
        assert!(
            e.message.contains("tls_server_config.cipher_suites[1]"),
            "{e}"
        );

        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [X25519, CurveP521]\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("CurveP521 is not supported"), "{e}");

        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerify\n");
        assert!(
            e.message
                .contains("did you mean \"RequireAndVerifyClientCert\""),
            "{e}"
        );
    }

    #[test]
    fn combinations_are_placed_with_locate() {
        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(
            e.message.contains("TLS13 is above max_version TLS12"),
            "{e}"
        );

        let e =
            err("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca.pem\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("client_auth_type"), "{e}");

        let e = err("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("is a TLS12 suite"), "{e}");

        // A key that is missing: the section's position.
        let e = err("tls_server_config:\n  cert_file: a\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            e.message.contains("tls_server_config.key_file\": missing"),
            "{e}"
        );

        let e = err("tls_server_config:\n  min_version: TLS13\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("has no effect"), "{e}");
    }

    #[test]
    fn files_are_read_relative_to_the_config_and_named_on_error() {
        let e = err("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("tls_server_config.cert_file"), "{e}");
        assert!(
            e.message.contains("cannot read /nonexistent/server.crt"),
            "{e}"
        );
    }

    #[test]
    fn newer_toolkit_keys_are_refused_not_ignored() {
        let e = err("rate_limit:\n  interval: 1s\n  burst: 5\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            e.message.contains("key \"rate_limit\": not supported"),
            "{e}"
        );
        let e = err("tls_server_config:\n  cert: |\n    -----BEGIN CERTIFICATE-----\n");
        assert!(e.message.contains("tls_server_config.cert\""), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn users_and_headers_errors_point_at_the_value() {
        let e = err("basic_auth_users:\n  alice: hunter2\n");
        assert_eq!((e.line, e.column), (Some(2), Some(10)), "{e}");
        assert!(e.message.contains("basic_auth_users.alice"), "{e}");
        assert!(e.message.contains("not a bcrypt hash"), "{e}");
        assert!(!e.message.contains("hunter2"), "the value is a secret: {e}");
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("http_server_config.headers"), "{e}");
    }

    #[test]
    fn redacted_shows_names_not_secrets() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let text = format!(
            "basic_auth_users:\n  alice: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        );
        let c = parse(&text).unwrap();
        let shown = serde_norway::to_string(&c.redacted()).unwrap();
        assert!(shown.contains("alice: <secret>"), "{shown}");
        assert!(shown.contains("X-Frame-Options: deny"), "{shown}");
        assert!(!shown.contains(&hash[7..]), "{shown}");
        assert!(!shown.contains("tls_server_config"), "{shown}");
    }

    #[test]
    fn spec_keys_name_themselves_in_errors() {
        assert_eq!(
            WebConfig::from_spec_keys(false, "", "").unwrap(),
            WebConfig::plain_http()
        );
        let e = WebConfig::from_spec_keys(true, "/nonexistent/c.pem", "/nonexistent/k.pem")
            .unwrap_err();
        assert_eq!(e.key, "tls_cert_path", "{e}");
        let e = WebConfig::from_spec_keys(true, "c.pem", "").unwrap_err();
        assert_eq!(e.key, "tls_key_path", "{e}");
    }
}
