//! Command line: flags, subcommands, config resolution and the daemon's
//! start and stop.
//!
//! Exit codes: 0 success; 1 a runtime failure (port in use, a collector that
//! cannot be built); 2 invalid configuration or usage.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use herakles_core::{registrations, BuildContext, Collector, Registration};

use crate::classify::Classifier;
use crate::config::{self, Config, ConfigError, Format, LoadedFile, Override, Source};
use crate::serve::health::Health;
use crate::serve::scrape::Scraper;

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
        flag(
            "log-level",
            "log_level",
            Takes("LEVEL"),
            "Log level: error, warn, info, debug or trace",
        ),
        flag(
            "log-format",
            "log_format",
            Takes("FORMAT"),
            "Log format: text or json",
        ),
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
    Install(crate::install::InstallArgs),
    /// Remove what `install` installed (a config edited since is kept)
    Uninstall(crate::install::UninstallArgs),
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
        return write_template(*format, *commented, output.as_ref());
    }
    match &cli.command {
        Some(Command::Install(a)) => return crate::install::install(a, cli.config.as_deref()),
        Some(Command::Uninstall(a)) => return crate::install::uninstall(a),
        Some(Command::Completions { shell }) => return crate::dist::print_completions(*shell),
        Some(Command::Man) => return crate::dist::print_man(),
        _ => {}
    }

    let flags = flag_overrides(&matches);
    let Resolved {
        config,
        file,
        notes,
    } = match resolve_config(&cli, &flags, std::env::vars_os()) {
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

    // Classification rules are part of the configuration: a broken rules
    // file is a usage error (exit 2) that --check-config must report, not a
    // runtime failure found when the first process collector is built.
    let build_ctx = build_context(&config);
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

    let test_data = match cli.test_data_file.as_deref().map(crate::testdata::load) {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return 2;
        }
        loaded => loaded.and_then(Result::ok),
    };

    if cli.show_user_config {
        return show_user_config(file.as_ref(), cli.config_format);
    }
    if cli.show_config {
        return print_formatted(&config, cli.config_format);
    }

    match &cli.command {
        Some(Command::Collectors) => {
            print!("{}", collectors_table(&config));
            0
        }
        Some(Command::Subgroups {
            group,
            verbose,
            explain,
        }) => subgroups(
            &config,
            &classifier,
            group.as_deref(),
            *verbose,
            explain.as_deref(),
        ),
        Some(Command::Check { all, ebpf }) => crate::check::run(&config, *all, *ebpf),
        Some(Command::Test {
            iterations,
            verbose,
        }) => run_test(config, &build_ctx, *iterations, *verbose, test_data),
        Some(Command::GenerateTestdata(a)) => crate::testdata::generate(a, &classifier),
        Some(
            Command::Config { .. }
            | Command::Install(_)
            | Command::Uninstall(_)
            | Command::Completions { .. }
            | Command::Man,
        ) => unreachable!("handled above"),
        None if cli.check_config => match build_collectors_in(&build_ctx, &config) {
            Ok(built) => {
                for (_, c) in &built {
                    c.shutdown();
                }
                println!("configuration OK ({} collectors enabled)", built.len());
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        None => run_daemon(config, &build_ctx, &classifier, test_data),
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

/// The effective config and where it came from.
pub struct Resolved {
    pub config: Config,
    /// The config file, if one was loaded.
    pub file: Option<LoadedFile>,
    /// Debug notes for the log once it is set up: variables set aside.
    pub notes: Vec<String>,
}

/// Defaults, then the file, then `HERAKLES_*` from `env`, then `flags`.
///
/// A key a flag sets is not read from the environment at all: its variable
/// is never parsed, so a stray value there cannot stop a start that names
/// the key on the command line.
pub fn resolve_config(
    cli: &Cli,
    flags: &[Override],
    env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Resolved, ConfigError> {
    let file = if cli.no_config {
        None
    } else {
        config::find_config_file(cli.config.as_deref())?
            .map(|p| config::load_file(&p))
            .transpose()?
    };
    let base = file.as_ref().map(|f| f.config.clone()).unwrap_or_default();
    let (env, mut notes) = config::env_overrides(env)?;
    let mut overrides = Vec::with_capacity(env.len() + flags.len());
    for o in env {
        match flags.iter().find(|f| f.key == o.key) {
            Some(f) => notes.push(format!("ignoring {}: {} is given", o.source, f.source)),
            None => overrides.push(o),
        }
    }
    overrides.extend_from_slice(flags);
    let config = config::merge(base, &overrides, file.as_ref())?;
    Ok(Resolved {
        config,
        file,
        notes,
    })
}

fn write_template(format: Format, commented: bool, output: Option<&PathBuf>) -> i32 {
    let text = if commented {
        config::commented_template(format)
    } else {
        format.to_string(&Config::default())
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match output {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                1
            }
        },
        None => {
            print!("{text}");
            0
        }
    }
}

fn print_formatted<T: serde::Serialize>(value: &T, format: Format) -> i32 {
    match format.to_string(value) {
        Ok(t) => {
            print!("{t}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn show_user_config(file: Option<&LoadedFile>, format: Format) -> i32 {
    let Some(file) = file else {
        println!("# no config file loaded");
        return 0;
    };
    println!("# {}", file.path.display());
    if format == file.format {
        print!("{}", file.text);
        return 0;
    }
    // Re-encode only what the user wrote, not the defaults around it.
    let value: Result<serde_json::Value, String> = match file.format {
        Format::Yaml => serde_norway::from_str(&file.text).map_err(|e| e.to_string()),
        Format::Json => serde_json::from_str(&file.text).map_err(|e| e.to_string()),
        Format::Toml => toml::from_str(&file.text).map_err(|e| e.to_string()),
    };
    match value {
        Ok(v) => print_formatted(&v, format),
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn collectors_table(config: &Config) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "ENABLED".to_string(),
        "DEFAULT".to_string(),
        "CRATE".to_string(),
        "DESCRIPTION".to_string(),
    ]];
    for r in registrations() {
        let enabled = config.collectors.0.get(r.name).is_some_and(|s| s.enabled);
        rows.push([
            r.name.to_string(),
            yes_no(enabled).to_string(),
            yes_no(r.default_enabled).to_string(),
            r.crate_name.to_string(),
            r.description.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, w) in widths.iter().enumerate() {
            out.push_str(&format!("{:<w$}  ", r[i], w = *w));
        }
        out.push_str(&r[4]);
        out.push('\n');
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub type Built = Vec<(&'static str, Box<dyn Collector>)>;

/// The context collectors are built in; its services (the classifier, the
/// process table) are shared by everything built from it.
pub fn build_context(config: &Config) -> BuildContext {
    BuildContext::new(config.paths.to_paths(), Arc::new(config.clone()))
}

/// Build every enabled collector in a fresh context; the error names the
/// collector.
pub fn build_collectors(config: &Config) -> Result<Built, String> {
    build_collectors_in(&build_context(config), config)
}

/// Build every enabled collector in `ctx`; the error names the collector.
pub fn build_collectors_in(ctx: &BuildContext, config: &Config) -> Result<Built, String> {
    let mut built = Vec::new();
    for section in config.collectors.enabled() {
        let r = section.registration;
        match r.build(section.config.as_ref(), ctx) {
            Ok(c) => built.push((r.name, c)),
            Err(e) => {
                for (_, c) in &built {
                    c.shutdown();
                }
                return Err(format!("collector \"{}\": {e}", r.name));
            }
        }
    }
    Ok(built)
}

fn runtime(config: &Config, collectors: usize) -> std::io::Result<tokio::runtime::Runtime> {
    // Room for `parallelism` active collections plus one stuck thread per
    // collector (a collector never runs twice at once), so hung collectors
    // can never exhaust the pool.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(config.effective_parallelism() + collectors + 2)
        .thread_name("herakles")
        .enable_all()
        .build()
}

/// Everything needed to serve, built from a config.
pub struct Exporter {
    pub scraper: Arc<Scraper>,
    pub health: Arc<Health>,
    pub config: Arc<Config>,
    /// The `/subgroups` page, when classification rules were loaded.
    pub subgroups: Option<crate::serve::http::SubgroupsPage>,
}

impl Exporter {
    pub fn new(config: Config, collectors: Built) -> Exporter {
        let names: Vec<&'static str> = collectors.iter().map(|(n, _)| *n).collect();
        let health = Arc::new(Health::new(&names));
        let scraper = Scraper::new(
            collectors,
            config.paths.to_paths(),
            Duration::from_secs_f64(config.collector_timeout),
            Duration::from_secs(config.cache_ttl),
            config.effective_parallelism(),
            health.clone(),
        );
        Exporter {
            scraper,
            health,
            config: Arc::new(config),
            subgroups: None,
        }
    }

    /// Serve `/subgroups` from `classifier`: the `subgroups --verbose` table,
    /// escaped. Rules are fixed at start-up, so it is rendered once here.
    pub fn with_subgroups_page(mut self, classifier: &Classifier) -> Exporter {
        let table = crate::classify::render_list(classifier, None, true);
        let html = format!("<pre>{}</pre>", crate::util::html_escape(&table));
        self.subgroups = Some(Arc::new(move || html.clone()));
        self
    }

    /// Show the sections collectors and services registered in `ctx` (see
    /// [`BuildContext::health_section`]) in `/health`.
    pub fn with_health_sections(self, ctx: &BuildContext) -> Exporter {
        for (key, f) in ctx.health_sections() {
            self.health.section(key, f);
        }
        self
    }

    /// Bind and serve until `shutdown` resolves. Returns the bound address
    /// through `on_bound` before serving (port 0 picks a free port).
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        on_bound: impl FnOnce(std::net::SocketAddr),
    ) -> Result<(), String> {
        let ip: std::net::IpAddr = self
            .config
            .bind
            .parse()
            .map_err(|_| format!("invalid bind address {:?}", self.config.bind))?;
        let addr = std::net::SocketAddr::new(ip, self.config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        on_bound(bound);
        let app = Arc::new(crate::serve::http::App {
            scraper: self.scraper.clone(),
            health: self.health.clone(),
            limiter: Arc::new(tokio::sync::Semaphore::new(self.config.max_requests)),
            config: self.config.clone(),
            subgroups: self.subgroups.clone(),
        });
        crate::serve::http::serve(listener, app, shutdown).await;
        Ok(())
    }
}

/// `subgroups`: the rules the exporter would use with this config.
fn subgroups(
    config: &Config,
    classifier: &Classifier,
    group: Option<&str>,
    verbose: bool,
    explain: Option<&str>,
) -> i32 {
    match explain {
        Some(target) => {
            match crate::classify::explain_target(classifier, &config.paths.procfs, target) {
                Ok(text) => {
                    print!("{text}");
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
        None => {
            print!(
                "{}",
                crate::classify::render_list(classifier, group, verbose)
            );
            0
        }
    }
}

fn run_daemon(
    config: Config,
    ctx: &BuildContext,
    classifier: &Classifier,
    test_data: Option<crate::testdata::Source>,
) -> i32 {
    crate::logging::init(config.log_level, config.log_format);
    crate::serve::listener::raise_fd_limit();
    if config.enable_tls {
        tracing::error!("TLS is not supported by this build; terminate TLS in a proxy");
        return 2;
    }
    let collectors = match crate::testdata::collectors_or_build(test_data, ctx, &config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let rt = match runtime(&config, collectors.len()) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    crate::ebpf::register_health(ctx, &config);
    let exporter = Exporter::new(config, collectors)
        .with_subgroups_page(classifier)
        .with_health_sections(ctx);
    let scraper = exporter.scraper.clone();
    let code = rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut server = tokio::spawn(exporter.serve(
            async move {
                let mut rx = rx;
                let _ = rx.wait_for(|stop| *stop).await;
            },
            |addr| {
                tracing::info!(
                    version = env!("CARGO_PKG_VERSION"),
                    "listening on http://{addr}"
                );
            },
        ));
        tokio::select! {
            res = &mut server => return match res {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => { tracing::error!("{e}"); 1 }
                Err(e) => { tracing::error!("server task failed: {e}"); 1 }
            },
            sig = shutdown_signal() => tracing::info!(signal = sig, "shutting down"),
        }
        let _ = tx.send(true);
        // In-flight scrapes get to finish; the whole stop stays under 5 s.
        if tokio::time::timeout(Duration::from_secs(4), server)
            .await
            .is_err()
        {
            tracing::warn!("connections still open after 4s; closing them");
        }
        0
    });
    scraper.shutdown();
    rt.shutdown_timeout(Duration::from_millis(500));
    code
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

fn run_test(
    config: Config,
    ctx: &BuildContext,
    iterations: u32,
    verbose: bool,
    test_data: Option<crate::testdata::Source>,
) -> i32 {
    crate::logging::init(config.log_level, config.log_format);
    let collectors = match crate::testdata::collectors_or_build(test_data, ctx, &config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let rt = match runtime(&config, collectors.len()) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let exporter = Exporter::new(config, collectors);
    let mut failed = false;
    for i in 1..=iterations {
        let scraper = exporter.scraper.clone();
        let out = rt.block_on(async move { scraper.scrape(scraper.all()).await });
        println!(
            "iteration {i}: {} bytes in {:.3}s",
            out.text.len(),
            out.duration.as_secs_f64()
        );
        for o in &out.outcomes {
            match &o.error {
                None => println!("  ok    {:<12} {:.4}s", o.name, o.duration.as_secs_f64()),
                Some(e) => {
                    failed = true;
                    println!(
                        "  FAIL  {:<12} {:.4}s  {e}",
                        o.name,
                        o.duration.as_secs_f64()
                    );
                }
            }
        }
        if verbose {
            print!("{}", String::from_utf8_lossy(&out.text));
        }
    }
    exporter.scraper.shutdown();
    i32::from(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let args: Vec<String> = std::iter::once("herakles-node-exporter")
            .chain(["--no-config"])
            .chain(args.iter().copied())
            .map(str::to_string)
            .collect();
        check_collector_flags(&args).map_err(ConfigError::msg)?;
        let m = command().try_get_matches_from(&args).unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        let env = env.iter().map(|(k, v)| (k.into(), v.into()));
        resolve_config(&cli, &flag_overrides(&m), env).map(|r| r.config)
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
}
