//! Command line: the flags and subcommands, and the dispatch to what each
//! one does (`crate::commands`, and `crate::exporter` for the daemon).
//!
//! A flag that sets a config key is not a setting of its own: it becomes an
//! [`Override`] of that key, merged with the config file and `HERAKLES_*`
//! variables by `crate::config::resolve`, so every setting has one name and
//! one validation whichever way it comes in.
//!
//! Exit codes: 0 success; 1 a runtime failure (port in use, a collector that
//! cannot be built); 2 invalid configuration or usage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use herakles_core::{registrations, Registration};

use crate::commands;
use crate::config::{self, FileChoice, Format, Override, Resolved, Source};
use crate::exporter;

#[derive(Debug, Parser)]
#[command(
    name = "herakles-node-exporter",
    version,
    about = "Prometheus exporter for Linux: per-process, per-group and whole-machine metrics",
    after_help = "Every collector also has --collector.NAME and --no-collector.NAME flags, and \
                  --collector.NAME.KEY=VALUE for each key of its config section (dashes or \
                  underscores); `herakles-node-exporter collectors` lists the collectors."
)]
pub struct Cli {
    /// Config file (.yaml, .yml, .json or .toml)
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Load no config file at all
    #[arg(long, conflicts_with = "config")]
    pub no_config: bool,
    /// Print the effective merged config and exit
    #[arg(long)]
    pub show_config: bool,
    /// Print the config file as loaded and exit
    #[arg(long)]
    pub show_user_config: bool,
    /// Format for --show-config and --show-user-config
    #[arg(long, value_enum, default_value = "yaml")]
    pub config_format: Format,
    /// Validate the config (and build every enabled collector), then exit
    #[arg(long)]
    pub check_config: bool,
    /// Serve the metrics in this test data file instead of collecting (see generate-testdata)
    #[arg(short = 't', long, value_name = "FILE")]
    pub test_data_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A flag that sets a config key. Its value is not parsed here: it becomes
/// an [`Override`] and goes through the same conversion and validation as
/// the key in a file or a `HERAKLES_*` variable.
struct KeyFlag {
    long: &'static str,
    short: Option<char>,
    /// Other spellings, node_exporter's (`--log.level` for `--log-level`).
    alias: Option<&'static str>,
    /// Dotted config key path.
    key: &'static str,
    value: FlagValue,
    help: &'static str,
}

enum FlagValue {
    /// Takes a value, shown as this placeholder in the help.
    Takes(&'static str),
    /// A list key: values may be repeated and comma-separated.
    List(&'static str),
    /// A switch that sets the key to this value.
    Sets(&'static str),
}

const fn flag(
    long: &'static str,
    key: &'static str,
    value: FlagValue,
    help: &'static str,
) -> KeyFlag {
    KeyFlag {
        long,
        short: None,
        alias: None,
        key,
        value,
        help,
    }
}

/// Every flag that sets a global key. Two switches of one key (`--enable-X`,
/// `--disable-X`) override each other: the last one given wins.
const KEY_FLAGS: &[KeyFlag] = {
    use FlagValue::{List, Sets, Takes};
    &[
        KeyFlag {
            short: Some('p'),
            ..flag(
                "port",
                "port",
                Takes("PORT"),
                "HTTP listen port [default: 9215]",
            )
        },
        flag(
            "bind",
            "bind",
            Takes("ADDR"),
            "Address to listen on [default: 0.0.0.0]",
        ),
        KeyFlag {
            alias: Some("log.level"),
            ..flag(
                "log-level",
                "log_level",
                Takes("LEVEL"),
                "Log level: error, warn, info, debug or trace",
            )
        },
        KeyFlag {
            alias: Some("log.format"),
            ..flag(
                "log-format",
                "log_format",
                Takes("FORMAT"),
                "Log format: text, json or logfmt",
            )
        },
        flag(
            "cache-ttl",
            "cache_ttl",
            Takes("SECONDS"),
            "Serve a cached scrape for N seconds (0: collect on every scrape)",
        ),
        flag(
            "collector-timeout",
            "collector_timeout",
            Takes("SECONDS"),
            "Seconds a collector may take per scrape",
        ),
        flag(
            "web.telemetry-path",
            "telemetry_path",
            Takes("PATH"),
            "Path the metrics are served at [default: /metrics]",
        ),
        flag(
            "web.disable-exporter-metrics",
            "enable_telemetry",
            Sets("false"),
            "Leave the exporter's own metrics (process_*, herakles_http_*, scrape cache) out",
        ),
        flag(
            "collector.disable-defaults",
            "disable_default_collectors",
            Sets("true"),
            "Run only the collectors enabled explicitly (--collector.NAME or the config file)",
        ),
        flag(
            "web.max-requests",
            "max_requests",
            Takes("N"),
            "Concurrent /metrics requests before answering 503",
        ),
        flag(
            "parallelism",
            "parallelism",
            Takes("N"),
            "Worker threads for collection (0: one per CPU)",
        ),
        flag(
            "path.procfs",
            "paths.procfs",
            Takes("PATH"),
            "procfs mount point [default: /proc]",
        ),
        flag(
            "path.sysfs",
            "paths.sysfs",
            Takes("PATH"),
            "sysfs mount point [default: /sys]",
        ),
        flag(
            "path.rootfs",
            "paths.rootfs",
            Takes("PATH"),
            "Root of the host filesystem [default: /]",
        ),
        flag(
            "enable-tls",
            "enable_tls",
            Sets("true"),
            "Serve HTTPS (needs --tls-cert and --tls-key)",
        ),
        flag(
            "tls-cert",
            "tls_cert_path",
            Takes("FILE"),
            "TLS certificate chain (PEM)",
        ),
        flag(
            "tls-key",
            "tls_key_path",
            Takes("FILE"),
            "TLS private key (PEM)",
        ),
        flag(
            "web.config.file",
            "web_config_file",
            Takes("FILE"),
            "Web config file (exporter-toolkit format): HTTPS, client certificates, basic auth, headers",
        ),
        flag(
            "web.listen-address",
            "listen_addresses",
            List("ADDR"),
            "Listen on host:port, [IPv6]:port or :port; repeat for more (instead of --bind and --port)",
        ),
        flag(
            "web.systemd-socket",
            "systemd_socket",
            Sets("true"),
            "Serve on the sockets systemd passes (socket activation) instead of listening",
        ),
        flag(
            "min-uss-kb",
            "min_uss_kb",
            Takes("KB"),
            "Per-process series only for USS >= KB",
        ),
        flag(
            "top-n-subgroup",
            "top_n_subgroup",
            Takes("N"),
            "Top-N processes per subgroup",
        ),
        flag(
            "top-n-others",
            "top_n_others",
            Takes("N"),
            "Top-N processes for the \"other\" group",
        ),
        flag(
            "search-mode",
            "search_mode",
            Takes("MODE"),
            "include: export only --search-groups; exclude: never export them",
        ),
        flag(
            "search-groups",
            "search_groups",
            List("GROUPS"),
            "Groups for --search-mode (comma-separated)",
        ),
        flag(
            "disable-others",
            "disable_others",
            Sets("true"),
            "Drop unclassified processes (group \"other\")",
        ),
        flag(
            "no-per-process-metrics",
            "per_process_metrics",
            Sets("false"),
            "Keep only group and top-N series, no per-process series",
        ),
        flag(
            "max-process-series",
            "max_process_series",
            Takes("N"),
            "Per-process series for at most N processes, the largest [default: 1000]",
        ),
        flag(
            "process-labels",
            "process_labels",
            List("DIMS"),
            "Add container, pod, unit and/or user labels to per-process series",
        ),
        flag(
            "no-attribution",
            "attribution",
            Sets("false"),
            "Do not read processes' cgroups and users (no container/pod/unit/user series)",
        ),
        flag(
            "attribution-aggregates",
            "attribution_aggregates",
            List("DIMS"),
            "Sum processes per container, pod, unit and/or user [default: all four]",
        ),
        flag(
            "process-context-switches",
            "process_context_switches",
            Sets("true"),
            "Read every thread's context switches each scrape",
        ),
        flag(
            "enable-ebpf",
            "enable_ebpf",
            Sets("true"),
            "Turn the eBPF programs on (enable_ebpf)",
        ),
        flag(
            "disable-ebpf",
            "enable_ebpf",
            Sets("false"),
            "Turn the eBPF programs off (enable_ebpf: false)",
        ),
        flag(
            "enable-ebpf-network",
            "enable_ebpf_network",
            Sets("true"),
            "Per-process network I/O from eBPF on",
        ),
        flag(
            "disable-ebpf-network",
            "enable_ebpf_network",
            Sets("false"),
            "Per-process network I/O from eBPF off",
        ),
        flag(
            "enable-ebpf-disk",
            "enable_ebpf_disk",
            Sets("true"),
            "Per-process block I/O from eBPF on",
        ),
        flag(
            "disable-ebpf-disk",
            "enable_ebpf_disk",
            Sets("false"),
            "Per-process block I/O from eBPF off",
        ),
        flag(
            "enable-tcp-tracking",
            "enable_tcp_tracking",
            Sets("true"),
            "TCP state counts from eBPF state-change events on",
        ),
        flag(
            "disable-tcp-tracking",
            "enable_tcp_tracking",
            Sets("false"),
            "TCP state counts from eBPF off (a netlink dump per scrape instead)",
        ),
        flag(
            "subgroups-file",
            "subgroups_file",
            Takes("FILE"),
            "Custom classification rules file (TOML)",
        ),
        flag(
            "smaps-mode",
            "smaps_mode",
            Takes("MODE"),
            "Which processes get PSS/USS/swap from smaps_rollup: all, top or off",
        ),
        flag(
            "smaps-budget-ms",
            "smaps_budget_ms",
            Takes("MS"),
            "Milliseconds per scrape for smaps reads",
        ),
    ]
};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the collectors: name, enabled now, default, crate, description
    Collectors,
    /// Check runtime requirements: one pass/fail line each
    #[command(alias = "check-requirements")]
    Check {
        /// Run every check
        #[arg(long)]
        all: bool,
        /// Run the eBPF checks (BTF, CAP_BPF, CAP_PERFMON)
        #[arg(long)]
        ebpf: bool,
    },
    /// Write a config file with every key at its default
    Config {
        #[arg(long, value_enum, default_value = "yaml")]
        format: Format,
        /// Document each key with a comment (YAML and TOML)
        #[arg(long)]
        commented: bool,
        /// Output file (default: standard output)
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the process classification subgroups, or explain one process
    Subgroups {
        /// Only this group
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// Show every rule's patterns and where it is defined
        #[arg(long)]
        verbose: bool,
        /// Explain how a running process (PID) or a process name is classified
        #[arg(long, value_name = "PID|NAME")]
        explain: Option<String>,
    },
    /// Run the collectors once (or N times) and report, without HTTP
    Test {
        /// Iterations
        #[arg(short = 'n', long, default_value_t = 1)]
        iterations: u32,
        /// Print the exposition text too
        #[arg(long)]
        verbose: bool,
    },
    /// Install as a systemd service: binary, config, unit, man page, completions
    Install(commands::install::InstallArgs),
    /// Remove what `install` installed (a config edited since is kept)
    Uninstall(commands::install::UninstallArgs),
    /// Write a synthetic host's metrics to a test data file for -t
    GenerateTestdata(crate::testdata::GenerateArgs),
    /// Print the shell completion script for SHELL
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff)
    Man,
}

/// Entry point of the binary; returns the exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    main_with(args)
}

/// Entry point with explicit arguments (for custom builds and tests).
pub fn main_with(args: Vec<String>) -> i32 {
    if let Err(e) = check_collector_flags(&args) {
        eprintln!("error: {e}");
        return 2;
    }
    let matches = match command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return 2;
        }
    };

    if let Some(Command::Config {
        format,
        commented,
        output,
    }) = &cli.command
    {
        return commands::config::write_template(*format, *commented, output.as_ref());
    }
    match &cli.command {
        Some(Command::Install(a)) => {
            return commands::install::install(a, cli.config.as_deref(), &command())
        }
        Some(Command::Uninstall(a)) => return commands::install::uninstall(a),
        Some(Command::Completions { shell }) => {
            return commands::dist::print_completions(&command(), *shell)
        }
        Some(Command::Man) => return commands::dist::print_man(&command()),
        _ => {}
    }

    let flags = flag_overrides(&matches);
    // What start-up resolves, a reload (SIGHUP) resolves again: the same
    // file choice, variables and flags.
    let resolve: exporter::Resolve = {
        let (file, no_config) = (cli.config.clone(), cli.no_config);
        Arc::new(move || {
            let choice = file_choice_of(file.as_deref(), no_config);
            config::resolve(choice, &flags, std::env::vars_os())
        })
    };
    let Resolved {
        config,
        file,
        notes,
    } = match resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    crate::logging::init(config.log_level, config.log_format);
    for note in &notes {
        tracing::debug!("{note}");
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }

    // Classification rules are part of the configuration: a broken rules
    // file is a usage error (exit 2) that --check-config must report, not a
    // runtime failure found when the first process collector is built.
    let build_ctx = exporter::build_context(&config);
    let classifier = match crate::process::classifier(&build_ctx) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: classification rules: {e}");
            return 2;
        }
    };
    for warning in classifier.warnings() {
        tracing::warn!("classification rules: {warning}");
    }
    if classifier.uses_placement() && !config.attribution {
        tracing::warn!(
            "classification rules match on unit, container, cgroup or user, but attribution \
             is off: those rules match no process"
        );
    }

    let test_data = match cli.test_data_file.as_deref().map(crate::testdata::load) {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return 2;
        }
        loaded => loaded.and_then(Result::ok),
    };

    if cli.show_user_config {
        return commands::config::show_user_config(file.as_ref(), cli.config_format);
    }
    if cli.show_config {
        return commands::config::print_formatted(&config, cli.config_format);
    }

    match &cli.command {
        Some(Command::Collectors) => {
            print!("{}", commands::collectors::collectors_table(&config));
            0
        }
        Some(Command::Subgroups {
            group,
            verbose,
            explain,
        }) => commands::subgroups::run(
            &config,
            &classifier,
            group.as_deref(),
            *verbose,
            explain.as_deref(),
        ),
        Some(Command::Check { all, ebpf }) => commands::check::run(&config, *all, *ebpf),
        Some(Command::Test {
            iterations,
            verbose,
        }) => commands::test::run(config, &build_ctx, *iterations, *verbose, test_data),
        Some(Command::GenerateTestdata(a)) => crate::testdata::generate(a, &classifier),
        Some(
            Command::Config { .. }
            | Command::Install(_)
            | Command::Uninstall(_)
            | Command::Completions { .. }
            | Command::Man,
        ) => unreachable!("handled above"),
        None if cli.check_config => commands::config::check(&build_ctx, &config),
        None => exporter::run(config, build_ctx, classifier, test_data, resolve),
    }
}

/// The config file `--config` and `--no-config` ask for.
fn file_choice_of(config: Option<&Path>, no_config: bool) -> FileChoice<'_> {
    match (config, no_config) {
        (_, true) => FileChoice::Without,
        (Some(path), false) => FileChoice::Named(path),
        (None, false) => FileChoice::Search,
    }
}

/// The clap command: [`Cli`], a flag per entry of [`KEY_FLAGS`], and for
/// every registered collector `--collector.NAME`, `--no-collector.NAME` and
/// `--collector.NAME.KEY` per key of its section, generated from the
/// registry and the section's schema.
pub(crate) fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for f in KEY_FLAGS {
        let mut arg = Arg::new(f.long).long(f.long).help(f.help);
        if let Some(c) = f.short {
            arg = arg.short(c);
        }
        if let Some(alias) = f.alias {
            arg = arg.visible_alias(alias);
        }
        arg = match f.value {
            FlagValue::Takes(name) => arg.value_name(name).action(ArgAction::Set),
            FlagValue::List(name) => arg.value_name(name).action(ArgAction::Append),
            FlagValue::Sets(_) => {
                let partners = KEY_FLAGS
                    .iter()
                    .filter(|o| o.key == f.key && o.long != f.long)
                    .map(|o| o.long);
                arg.action(ArgAction::SetTrue).overrides_with_all(partners)
            }
        };
        cmd = cmd.arg(arg);
    }
    for r in registrations() {
        let (on, off) = (
            format!("collector.{}", r.name),
            format!("no-collector.{}", r.name),
        );
        cmd = cmd
            .arg(
                Arg::new(on.clone())
                    .long(on.clone())
                    .action(ArgAction::SetTrue)
                    .overrides_with(off.clone())
                    .help(format!("Enable the {} collector", r.name))
                    .hide(true),
            )
            .arg(
                Arg::new(off.clone())
                    .long(off)
                    .action(ArgAction::SetTrue)
                    .overrides_with(on)
                    .help(format!("Disable the {} collector", r.name))
                    .hide(true),
            );
        for (key, list) in section_keys(r) {
            // Dashes as node_exporter writes its flags; underscores, as the
            // key is spelt in the file, are accepted too.
            let long = format!("collector.{}.{}", r.name, key.replace('_', "-"));
            let mut arg = Arg::new(format!("collector.{}.{key}", r.name))
                .long(long)
                .value_name("VALUE")
                .help(format!("Set collectors.{}.{key}", r.name))
                .hide(true)
                .action(if list {
                    ArgAction::Append
                } else {
                    ArgAction::Set
                });
            if key.contains('_') {
                arg = arg.alias(format!("collector.{}.{key}", r.name));
            }
            cmd = cmd.arg(arg);
        }
    }
    cmd
}

/// The keys of a collector's config section, and whether each is a list.
fn section_keys(r: &Registration) -> Vec<(String, bool)> {
    let schema = r.config_schema().to_value();
    schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, s)| (key.clone(), s["type"] == "array"))
        .collect()
}

/// Check the collector names (and keys) in `--collector.NAME[.KEY]` and
/// `--no-collector.NAME` before clap does, so that a misspelt one gets the
/// list of valid names rather than clap's generic message.
fn check_collector_flags(args: &[String]) -> Result<(), String> {
    for a in args.iter().skip(1) {
        let flag = a.split('=').next().unwrap_or(a);
        // A global flag spelt like a collector's (--collector.disable-defaults).
        if KEY_FLAGS
            .iter()
            .any(|f| flag.strip_prefix("--") == Some(f.long))
        {
            continue;
        }
        let (name, key) = if let Some(n) = flag.strip_prefix("--collector.") {
            match n.split_once('.') {
                Some((name, key)) => (name, Some(key)),
                None => (n, None),
            }
        } else if let Some(n) = flag.strip_prefix("--no-collector.") {
            (n, None)
        } else {
            continue;
        };
        let Some(r) = registrations().into_iter().find(|r| r.name == name) else {
            return Err(config::unknown_collector(name));
        };
        let Some(key) = key else { continue };
        let keys = section_keys(r);
        let key = key.replace('-', "_");
        if !keys.iter().any(|(k, _)| *k == key) {
            let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
            let hint = crate::util::did_you_mean(&key, names.iter().copied())
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            let valid = if names.is_empty() {
                format!("collector \"{name}\" has no settings")
            } else {
                format!("valid: {}", names.join(", "))
            };
            return Err(format!(
                "flag {flag}: unknown key \"collectors.{name}.{key}\"{hint}; {valid}"
            ));
        }
    }
    Ok(())
}

/// The config keys the command line sets, as overrides.
fn flag_overrides(m: &ArgMatches) -> Vec<Override> {
    let mut out = Vec::new();
    let mut set = |key: &str, raw: String, flag: String| {
        out.push(Override::new(key, raw, Source::Flag(flag)));
    };
    for f in KEY_FLAGS {
        let raw = match f.value {
            FlagValue::Sets(v) => m.get_flag(f.long).then(|| v.to_string()),
            FlagValue::Takes(_) => m.get_one::<String>(f.long).cloned(),
            FlagValue::List(_) => m
                .get_many::<String>(f.long)
                .map(|vs| vs.cloned().collect::<Vec<_>>().join(",")),
        };
        if let Some(raw) = raw {
            set(f.key, raw, format!("--{}", f.long));
        }
    }
    for r in registrations() {
        for (flag, on) in [("collector", "true"), ("no-collector", "false")] {
            let id = format!("{flag}.{}", r.name);
            if m.get_flag(&id) {
                set(
                    &format!("collectors.{}.enabled", r.name),
                    on.into(),
                    format!("--{id}"),
                );
            }
        }
        for (key, _) in section_keys(r) {
            let id = format!("collector.{}.{key}", r.name);
            if let Some(vs) = m.get_many::<String>(&id) {
                let raw = vs.cloned().collect::<Vec<_>>().join(",");
                let flag = format!("--collector.{}.{}", r.name, key.replace('_', "-"));
                set(&format!("collectors.{}.{key}", r.name), raw, flag);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        resolve_from(None, args, env)
    }

    /// Like `resolve`, with the config file `file` (YAML) instead of none.
    fn resolve_from(
        file: Option<&str>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let mut argv = vec!["herakles-node-exporter".to_string()];
        match file {
            Some(text) => {
                std::fs::write(&path, text).unwrap();
                argv.extend(["-c".to_string(), path.display().to_string()]);
            }
            None => argv.push("--no-config".into()),
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        let args = argv;
        check_collector_flags(&args).map_err(ConfigError::msg)?;
        let m = command().try_get_matches_from(&args).unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        let env = env.iter().map(|(k, v)| (k.into(), v.into()));
        config::resolve(
            file_choice_of(cli.config.as_deref(), cli.no_config),
            &flag_overrides(&m),
            env,
        )
        .map(|r| r.config)
    }

    #[test]
    fn every_flag_names_a_key() {
        let tree = serde_json::to_value(Config::default()).unwrap();
        for f in KEY_FLAGS {
            let found = f.key.split('.').try_fold(&tree, |node, k| node.get(k));
            assert!(found.is_some(), "--{} sets unknown key {}", f.long, f.key);
        }
    }

    /// A flag and the variable of the same key are one setting: the same
    /// value gives the same config, and the same bad value the same error,
    /// but for the name of where it came from.
    #[test]
    fn flags_and_variables_go_through_one_layer() {
        for (flag, var, value) in [
            ("--web.max-requests", "HERAKLES_MAX_REQUESTS", "7"),
            ("--web.max-requests", "HERAKLES_MAX_REQUESTS", "0"),
            ("--collector-timeout", "HERAKLES_COLLECTOR_TIMEOUT", "1e20"),
            ("--log-level", "HERAKLES_LOG_LEVEL", "debgu"),
            ("--path.procfs", "HERAKLES_PATHS__PROCFS", "/host/proc"),
            ("--search-groups", "HERAKLES_SEARCH_GROUPS", "db,web"),
            (
                "--collector.disk.device-exclude",
                "HERAKLES_COLLECTORS__DISK__DEVICE_EXCLUDE",
                "^(loop",
            ),
            (
                "--collector.netprobe.tc-priority",
                "HERAKLES_COLLECTORS__NETPROBE__TC_PRIORITY",
                "0",
            ),
        ] {
            let by_flag = resolve(&[flag, value], &[]);
            let by_env = resolve(&[], &[(var, value)]);
            match (by_flag, by_env) {
                (Ok(a), Ok(b)) => assert_eq!(
                    serde_json::to_value(a).unwrap(),
                    serde_json::to_value(b).unwrap()
                ),
                (Err(a), Err(b)) => {
                    let a = a.message.replace(&format!("flag {flag}"), "SOURCE");
                    let b = b
                        .message
                        .replace(&format!("environment variable {var}"), "SOURCE");
                    assert_eq!(a, b);
                    assert!(a.starts_with("SOURCE: key "), "{a}");
                }
                (a, b) => panic!("{flag} gave {a:?}, {var} gave {b:?}"),
            }
        }
    }

    #[test]
    fn a_flag_keeps_the_variable_of_its_key_from_being_read() {
        let c = resolve(&["-p", "9301"], &[("HERAKLES_PORT", "not a port")]).unwrap();
        assert_eq!(c.port, 9301);
        assert!(resolve(&[], &[("HERAKLES_PORT", "not a port")]).is_err());
    }

    #[test]
    fn switches_and_toggles_last_one_wins() {
        let c = resolve(&["--disable-ebpf", "--enable-ebpf"], &[]).unwrap();
        assert!(c.enable_ebpf);
        let c = resolve(&["--enable-ebpf", "--disable-ebpf"], &[]).unwrap();
        assert!(!c.enable_ebpf);
        let c = resolve(&["--collector.memory", "--no-collector.memory"], &[]).unwrap();
        assert!(!c.collectors.0["memory"].enabled);
        let c = resolve(
            &[
                "--collector.netprobe.interfaces=eth0",
                "--collector.netprobe.interfaces",
                "lo,wg0",
            ],
            &[],
        )
        .unwrap();
        let netprobe = serde_json::to_value(&c.collectors.0["netprobe"].config).unwrap();
        assert_eq!(
            netprobe["interfaces"],
            serde_json::json!(["eth0", "lo", "wg0"])
        );
    }

    /// With disable_default_collectors, a collector runs only when it is
    /// enabled explicitly, by the file, a variable or a flag, whichever of
    /// them switched the defaults off; settings alone do not enable it.
    #[test]
    fn disabling_defaults_keeps_only_the_collectors_named() {
        let enabled = |c: Config| -> Vec<&str> {
            c.collectors
                .enabled()
                .map(|s| s.registration.name)
                .collect()
        };
        let c = resolve(
            &[
                "--collector.disable-defaults",
                "--collector.netprobe",
                "--collector.cpu",
            ],
            &[],
        )
        .unwrap();
        assert!(c.disable_default_collectors);
        assert_eq!(enabled(c), ["cpu", "netprobe"]);

        let file = "collectors:\n  memory: true\n  disk:\n    device_exclude: '^sd'\n  \
                    loadavg:\n    enabled: true\n  cpu:\n    enabled: false\n";
        let c = resolve_from(Some(file), &["--collector.disable-defaults"], &[]).unwrap();
        assert_eq!(enabled(c), ["loadavg", "memory"]);
        // A flag turns one of the file's off, a variable turns another on.
        let c = resolve_from(
            Some(file),
            &["--collector.disable-defaults", "--no-collector.memory"],
            &[("HERAKLES_COLLECTORS__HOST__ENABLED", "true")],
        )
        .unwrap();
        assert_eq!(enabled(c), ["host", "loadavg"]);
        // The file switches the defaults off, a variable back on.
        let off = format!("disable_default_collectors: true\n{file}");
        let c = resolve_from(Some(&off), &[], &[]).unwrap();
        assert_eq!(enabled(c), ["loadavg", "memory"]);
        let c = resolve_from(
            Some(&off),
            &[],
            &[("HERAKLES_DISABLE_DEFAULT_COLLECTORS", "false")],
        )
        .unwrap();
        let on = enabled(c);
        assert!(on.contains(&"disk") && !on.contains(&"cpu"), "{on:?}");
        assert_eq!(on.len(), Config::default().collectors.enabled().count() - 1);
        // Without it, nothing changes for collectors left alone.
        let c = resolve(&["--collector.netprobe"], &[]).unwrap();
        assert_eq!(
            enabled(c).len(),
            Config::default().collectors.enabled().count() + 1
        );
    }

    /// node_exporter's spellings set the same keys as ours.
    #[test]
    fn node_exporter_flags_set_our_keys() {
        let c = resolve(
            &[
                "--web.telemetry-path=/node/metrics",
                "--web.disable-exporter-metrics",
                "--log.level=debug",
                "--log.format=logfmt",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.telemetry_path, "/node/metrics");
        assert!(!c.enable_telemetry);
        assert_eq!(c.log_level, crate::config::LogLevel::Debug);
        assert_eq!(c.log_format, crate::config::LogFormat::Logfmt);
        let e = resolve(&["--web.telemetry-path", "/health"], &[]).unwrap_err();
        assert_eq!(
            e.message,
            "flag --web.telemetry-path: key \"telemetry_path\": \"/health\" is the path of \
             another endpoint"
        );
        let e = resolve(&["--log.level", "verbose"], &[]).unwrap_err();
        assert!(
            e.message.starts_with("flag --log-level: key \"log_level\""),
            "{e}"
        );
        let e = resolve(&["--collector.meminfo"], &[]).unwrap_err();
        assert!(e.message.contains("is \"memory\" here"), "{e}");
    }

    #[test]
    fn unknown_collector_keys_list_the_valid_ones() {
        let e = resolve(&["--collector.disk.device-exclud=x"], &[]).unwrap_err();
        assert_eq!(
            e.message,
            "flag --collector.disk.device-exclud: unknown key \
             \"collectors.disk.device_exclud\" (did you mean \"device_exclude\"?); \
             valid: device_exclude, device_include"
        );
        let e = resolve(&["--collector.nonesuch.x=1"], &[]).unwrap_err();
        assert!(e.message.contains("valid collectors"), "{e}");
    }

    #[test]
    fn man_page_documents_every_visible_flag_and_subcommand() {
        let man = String::from_utf8(commands::dist::man_page(&command())).unwrap();
        assert!(man.starts_with(".ie"), "{}", &man[..80]);
        let cmd = command();
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                // roff escapes '-' as '\-'.
                let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(man.contains(&escaped), "--{long} missing from the man page");
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            assert!(
                man.contains(&sub.get_name().replace('-', "\\-")),
                "{} missing",
                sub.get_name()
            );
        }
    }

    #[test]
    fn completions_offer_subcommands_and_flags() {
        use clap_complete::Shell;
        use commands::dist::completions;
        let bash = String::from_utf8(completions(&command(), Shell::Bash)).unwrap();
        for word in [
            "install",
            "uninstall",
            "generate-testdata",
            "--test-data-file",
        ] {
            assert!(bash.contains(word), "{word} missing from bash completions");
        }
        let zsh = String::from_utf8(completions(&command(), Shell::Zsh)).unwrap();
        assert!(zsh.starts_with("#compdef herakles-node-exporter"));
        let fish = String::from_utf8(completions(&command(), Shell::Fish)).unwrap();
        assert!(fish.contains("-l test-data-file"), "{fish}");
    }
}
