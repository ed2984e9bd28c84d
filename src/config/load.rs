//! Finding, parsing and merging config files, and reporting their errors.
//!
//! An operator who mistypes a key should be told the file, the line and the
//! likely intended key, then the exporter should exit, never silently ignore
//! the key. The three formats report positions differently; this file turns
//! them into one `file:line:column: key: message` shape.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;

use super::format::{line_col, ConfigError, Format};
use super::{locate, validate, Config};
use crate::util::did_you_mean;

/// A config file as found and parsed.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub format: Format,
    pub text: String,
    pub config: Config,
}

/// Where a config file is looked for when none is given, in order: the
/// spec's three places, then the file `install` and the Debian package
/// write, so that `--check-config` on a packaged host checks the file the
/// service runs with instead of the defaults.
pub fn default_locations(home: Option<&Path>) -> Vec<PathBuf> {
    let mut candidates = vec![PathBuf::from("herakles-node-exporter.yaml")];
    if let Some(home) = home {
        candidates.push(home.join(".config/herakles/config.yaml"));
    }
    candidates.push(PathBuf::from("/etc/herakles/config.yaml"));
    candidates.push(PathBuf::from("/etc/herakles/herakles-node-exporter.yaml"));
    candidates
}

/// The file to load: `explicit` if given (it must exist), else the first
/// of [`default_locations`] that exists.
///
/// Whether the file can be read, and is a regular file, is found out when it
/// is loaded; a default location where something other than a missing file
/// is (a directory, a FIFO, a link loop) is chosen too, so that the operator
/// hears about it instead of getting the defaults silently.
pub fn find_config_file(explicit: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(p) = explicit {
        return Ok(Some(p.to_path_buf()));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    Ok(default_locations(home.as_deref()).into_iter().find(|p| {
        // symlink_metadata: a dangling or looping link is there, not absent.
        std::fs::symlink_metadata(p).is_ok()
    }))
}

/// Read and parse one config file.
pub fn load_file(path: &Path) -> Result<LoadedFile, ConfigError> {
    let format = Format::from_path(path)?;
    let text = crate::util::read_regular_file(path).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::NotFound => "config file not found".to_string(),
            _ if e.raw_os_error().is_none() => format!("config file {e}"),
            _ => format!("cannot read config file: {e}"),
        };
        ConfigError::in_file(path, message)
    })?;
    let config = parse_str(&text, format, Some(path))?;
    Ok(LoadedFile {
        path: path.to_path_buf(),
        format,
        text,
        config,
    })
}

/// Parse config text; `file` only labels errors.
pub fn parse_str(text: &str, format: Format, file: Option<&Path>) -> Result<Config, ConfigError> {
    let with_file = |mut e: ConfigError| {
        e.file = file.map(Path::to_path_buf);
        e
    };
    let result: Result<Config, ConfigError> = match format {
        Format::Yaml => {
            // An empty or comment-only YAML file is a null document: defaults.
            if matches!(
                serde_norway::from_str::<serde_norway::Value>(text),
                Ok(serde_norway::Value::Null)
            ) {
                return Ok(Config::default());
            }
            let de = serde_norway::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let loc = inner.location().map(|l| (l.line(), l.column()));
                describe(text, format, &path, &inner.to_string(), loc)
            })
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let loc = (inner.line() > 0).then(|| (inner.line(), inner.column()));
                describe(text, format, &path, &inner.to_string(), loc)
            })
        }
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, &e, ""));
            match de {
                Ok(de) => serde_path_to_error::deserialize(de).map_err(|e| {
                    let path = e.path().to_string();
                    toml_error(text, &e.into_inner(), &path)
                }),
                Err(e) => Err(e),
            }
        }
    };
    let mut config = result.map_err(with_file)?;
    config.settle_collectors();
    validate::check(&config).map_err(|invalid| {
        let loc = locate::locate(text, format, &invalid.key);
        with_file(ConfigError {
            file: None,
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            message: invalid.to_string(),
        })
    })?;
    Ok(config)
}

fn toml_error(text: &str, e: &toml::de::Error, path: &str) -> ConfigError {
    let loc = e.span().map(|s| line_col(text, s.start));
    describe(text, Format::Toml, path, e.message(), loc)
}

/// Turn a format's error into our shape: strip the position suffixes the
/// formats append (taking the innermost as the position), prefix the key
/// path, and add a did-you-mean to unknown keys and values.
fn describe(
    text: &str,
    format: Format,
    path: &str,
    raw: &str,
    loc: Option<(usize, usize)>,
) -> ConfigError {
    static POS: OnceLock<Regex> = OnceLock::new();
    let pos =
        POS.get_or_init(|| Regex::new(r",? at line (\d+),? column (\d+)").expect("valid regex"));
    let mut loc = pos
        .captures(raw)
        .and_then(|c| Some((c[1].parse().ok()?, c[2].parse().ok()?)))
        .or(loc);
    let message = pos.replace_all(raw, "").trim().to_string();
    let path = if path == "." { "" } else { path };
    // serde_norway prefixes messages with the key path; we print it ourselves.
    let message = message
        .strip_prefix(&format!("{path}: "))
        .map(str::to_string)
        .unwrap_or(message);
    let (key_path, message) = match unknown_message(&message) {
        Some((Unknown::Key(name), what)) => {
            // Serde reports unknown fields at the enclosing map; point at
            // the key's own line instead.
            if let Some((line, _)) = loc {
                if let Some(l) = find_key_line(text, format, line, &name) {
                    loc = Some(l);
                }
            }
            let full = if path.is_empty() || path == name || path.ends_with(&format!(".{name}")) {
                if path.is_empty() {
                    name.clone()
                } else {
                    path.to_string()
                }
            } else {
                format!("{path}.{name}")
            };
            (full, what)
        }
        Some((Unknown::Value, what)) => (path.to_string(), what),
        None => (path.to_string(), message),
    };
    ConfigError {
        file: None,
        line: loc.map(|l| l.0),
        column: loc.map(|l| l.1),
        message: if key_path.is_empty() {
            message
        } else {
            format!("key \"{key_path}\": {message}")
        },
    }
}

/// What serde's "unknown field" and "unknown variant" messages were about.
pub(super) enum Unknown {
    /// A key, with its name.
    Key(String),
    /// A value of an enumerated key.
    Value,
}

/// Recognise serde's "unknown field `x`, expected one of `a`, `b`" and
/// "unknown variant ..." messages, and say the same with a suggestion:
/// `unknown key (did you mean "a"?); valid: a, b`.
pub(super) fn unknown_message(message: &str) -> Option<(Unknown, String)> {
    let field = if message.starts_with("unknown field") {
        true
    } else if message.starts_with("unknown variant") {
        false
    } else {
        return None;
    };
    let mut ticked = message.split('`').skip(1).step_by(2).map(str::to_string);
    let name = ticked.next()?;
    let candidates: Vec<String> = ticked.collect();
    let hint = did_you_mean(&name, candidates.iter().map(String::as_str))
        .map(|s| format!(" (did you mean \"{s}\"?)"))
        .unwrap_or_default();
    let valid = if candidates.is_empty() {
        String::new()
    } else {
        format!("; valid: {}", candidates.join(", "))
    };
    Some(if field {
        (Unknown::Key(name), format!("unknown key{hint}{valid}"))
    } else {
        (
            Unknown::Value,
            format!("unknown value \"{name}\"{hint}{valid}"),
        )
    })
}

/// The line (and column) at or after `from_line` where `key` is written as
/// a key in `format`.
fn find_key_line(
    text: &str,
    format: Format,
    from_line: usize,
    key: &str,
) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find_map(|(i, line)| {
            let trimmed = line.trim_start().trim_start_matches("- ");
            let indent = line.len() - trimmed.len();
            let unquoted = trimmed.trim_start_matches(['"', '\'']);
            let rest = unquoted.strip_prefix(key)?;
            let rest = rest.trim_start_matches(['"', '\'']).trim_start();
            let sep = if format == Format::Toml { '=' } else { ':' };
            rest.starts_with(sep).then_some((i + 1, indent + 1))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, format: Format) -> ConfigError {
        parse_str(text, format, Some(Path::new("c.yaml"))).unwrap_err()
    }

    #[test]
    fn process_keys_parse_and_validate() {
        let text = "min_uss_kb: 1024\ntop_n_subgroup: 5\ntop_n_others: 20\nsearch_mode: exclude\nsearch_groups: [db, web]\ndisable_others: true\nper_process_metrics: false\nsmaps_mode: all\nsmaps_budget_ms: 50\nio_buffer_kb: 256\nsmaps_buffer_kb: 512\n";
        let c = parse_str(text, Format::Yaml, None).unwrap();
        assert_eq!(
            (c.min_uss_kb, c.top_n_subgroup, c.top_n_others),
            (1024, 5, 20)
        );
        assert_eq!(c.search_mode, crate::config::SearchMode::Exclude);
        assert_eq!(c.search_groups, ["db", "web"]);
        assert!(c.disable_others && !c.per_process_metrics);
        assert_eq!(c.smaps_mode, crate::config::SmapsMode::All);
        assert!(err("smaps_mode: some\n", Format::Yaml)
            .message
            .contains("smaps_mode"));
        assert!(err("io_buffer_kb: 0\n", Format::Yaml)
            .message
            .contains("io_buffer_kb"));
        assert!(err("smaps_budget_ms: 0\n", Format::Yaml)
            .message
            .contains("smaps_budget_ms"));
        assert!(err("search_groups: ['']\n", Format::Yaml)
            .message
            .contains("search_groups"));
    }

    #[test]
    fn yaml_unknown_key_points_at_its_line_with_suggestion() {
        let e = err("port: 9300\ncache_tll: 5\n", Format::Yaml);
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("key \"cache_tll\""), "{e}");
        assert!(e.message.contains("did you mean \"cache_ttl\""), "{e}");
    }

    #[test]
    fn yaml_unknown_key_inside_collector_section() {
        let text = "port: 9300\ncollectors:\n  memory:\n    enabled: true\n    bogus: 1\n";
        let e = err(text, Format::Yaml);
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("collectors.memory.bogus"), "{e}");
    }

    #[test]
    fn yaml_wrong_type_names_key_and_type() {
        let e = err("port: many\n", Format::Yaml);
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("key \"port\""), "{e}");
        assert!(e.message.contains("u16"), "{e}");
    }

    #[test]
    fn yaml_syntax_error_has_line_and_column() {
        let e = err("port: 9300\nbind: [unclosed\n", Format::Yaml);
        assert!(e.line.is_some() && e.column.is_some(), "{e}");
        assert!(e.to_string().starts_with("c.yaml:"), "{e}");
    }

    #[test]
    fn unknown_collector_lists_valid_names() {
        let e = err("collectors:\n  memroy:\n    enabled: false\n", Format::Yaml);
        assert!(e.message.contains("did you mean \"memory\""), "{e}");
        assert!(e.message.contains("valid collectors:"), "{e}");
    }

    #[test]
    fn json_and_toml_errors_have_positions() {
        let e = err("{\n  \"port\": \"x\"\n}", Format::Json);
        assert_eq!(e.line, Some(2), "{e}");
        let e = err("port = 1\ncache_tll = 2\n", Format::Toml);
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("did you mean \"cache_ttl\""), "{e}");
        let e = err("port = \"x\"\n", Format::Toml);
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("key \"port\""), "{e}");
    }

    #[test]
    fn sections_parse_in_every_format() {
        let y = parse_str(
            "collectors:\n  memory: false\n  loadavg: {}\n",
            Format::Yaml,
            None,
        )
        .unwrap();
        assert!(!y.collectors.0["memory"].enabled);
        assert!(y.collectors.0["loadavg"].enabled);
        let t = parse_str("[collectors.memory]\nenabled = false\n", Format::Toml, None).unwrap();
        assert!(!t.collectors.0["memory"].enabled);
        let j = parse_str(
            r#"{"collectors": {"memory": {"enabled": false}}}"#,
            Format::Json,
            None,
        )
        .unwrap();
        assert!(!j.collectors.0["memory"].enabled);
    }

    #[test]
    fn empty_yaml_is_defaults() {
        let c = parse_str("# nothing here\n", Format::Yaml, None).unwrap();
        assert_eq!(c.port, 9215);
    }

    /// Values that passed the check once and then crashed the daemon are
    /// rejected at their position, in every format, with the key path.
    #[test]
    fn out_of_range_values_point_at_their_position() {
        let cases = [
            (
                "port: 9300\ncollector_timeout: 1e20\n",
                Format::Yaml,
                (2, 20),
                "key \"collector_timeout\": 1e+20 is out of range: must be between 0.001 and 3600",
            ),
            (
                "port = 9300\nparallelism = 9223372036854775807\n",
                Format::Toml,
                (2, 15),
                "key \"parallelism\": 9223372036854775807 is out of range: must be between 0 and 256",
            ),
            (
                "{\n  \"max_requests\": 2305843009213693952\n}",
                Format::Json,
                (2, 37),
                "key \"max_requests\": 2305843009213693952 is out of range: must be between 1 and 65536",
            ),
            (
                "collectors:\n  filesystem:\n    statfs_timeout_ms: 0\n",
                Format::Yaml,
                (3, 24),
                "key \"collectors.filesystem.statfs_timeout_ms\": 0 is out of range: must be between 1 and 60000",
            ),
        ];
        for (text, format, (line, col), message) in cases {
            let e = err(text, format);
            assert_eq!((e.line, e.column), (Some(line), Some(col)), "{e}");
            assert_eq!(e.message, message);
        }
    }

    #[test]
    fn bad_filter_regexes_point_at_their_position() {
        let yaml = "collectors:\n  disk:\n    device_exclude: '^(loop'\n";
        let e = err(yaml, Format::Yaml);
        assert_eq!((e.line, e.column), (Some(3), Some(21)), "{e}");
        assert_eq!(
            e.message,
            "key \"collectors.disk.device_exclude\": invalid regex \"^(loop\": unclosed group"
        );
        let toml = "[collectors.netdev]\ninterface_include = \"[\"\n";
        let e = err(toml, Format::Toml);
        assert_eq!((e.line, e.column), (Some(2), Some(21)), "{e}");
        assert!(
            e.message.contains("collectors.netdev.interface_include"),
            "{e}"
        );
        let json = "{\"collectors\": {\n \"filesystem\": {\"fs_types_exclude\": \"*\"}}}";
        let e = err(json, Format::Json);
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            e.message.contains("collectors.filesystem.fs_types_exclude"),
            "{e}"
        );
    }

    #[test]
    fn combination_errors_point_at_the_key() {
        let e = err("port: 1\nenable_tls: true\n", Format::Yaml);
        assert_eq!((e.line, e.column), (Some(2), Some(13)), "{e}");
        assert!(e.message.contains("tls_cert_path"), "{e}");
    }

    /// A directory, a FIFO or a symbolic link loop as config file is named
    /// for what it is, and the FIFO does not block.
    #[test]
    fn config_file_that_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("dir.yaml");
        std::fs::create_dir(&d).unwrap();
        let fifo = dir.path().join("fifo.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let loop_a = dir.path().join("a.yaml");
        std::os::unix::fs::symlink(dir.path().join("b.yaml"), &loop_a).unwrap();
        std::os::unix::fs::symlink(&loop_a, dir.path().join("b.yaml")).unwrap();
        let missing = dir.path().join("missing.yaml");
        for (path, want) in [
            (&d, "config file is a directory, not a regular file"),
            (
                &fifo,
                "config file is a FIFO (named pipe), not a regular file",
            ),
            (&loop_a, "config file is a symbolic link loop"),
            (&missing, "config file not found"),
        ] {
            let e = load_file(path).unwrap_err();
            assert_eq!(e.file.as_deref(), Some(path.as_path()));
            assert_eq!(e.message, want);
        }
    }

    proptest::proptest! {
        /// Any text in any format is a config or an error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}", format in 0..3usize) {
            let format = [Format::Yaml, Format::Json, Format::Toml][format];
            let _ = parse_str(&text, format, Some(Path::new("p")));
        }

        /// Text shaped like a config: real keys, odd values, nesting.
        #[test]
        fn config_shaped_text_never_panics(
            entries in proptest::collection::vec(
                (
                    "port|bind|cache_ttl|collector_timeout|max_requests|parallelism|paths|collectors|disk|memory|device_exclude|enabled|top_n|search_groups|log_level|\\PC{1,8}",
                    "-?[0-9]{1,25}(\\.[0-9]{0,5})?(e[+-]?[0-9]{1,4})?|\\.nan|\\.inf|-\\.inf|true|null|~|\\[\\]|\\{\\}|'\\PC{0,6}'|\\PC{0,6}",
                    0..4usize,
                ),
                0..10,
            ),
        ) {
            let mut yaml = String::new();
            let mut toml = String::new();
            let mut json = String::from("{");
            for (i, (key, value, depth)) in entries.iter().enumerate() {
                yaml.push_str(&format!("{}{key}: {value}\n", "  ".repeat(*depth)));
                toml.push_str(&format!("{key} = {value}\n"));
                if i > 0 {
                    json.push(',');
                }
                json.push_str(&format!("{key:?}: {value}"));
            }
            json.push('}');
            for (text, format) in [(yaml, Format::Yaml), (toml, Format::Toml), (json, Format::Json)] {
                let _ = parse_str(&text, format, Some(Path::new("p")));
            }
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        let e = err("collector_timeout: 0\n", Format::Yaml);
        assert!(e.message.contains("collector_timeout"), "{e}");
        let e = err("bind: not-an-ip\n", Format::Yaml);
        assert!(e.message.contains("bind"), "{e}");
    }
}
