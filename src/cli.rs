//! Command line: flags, subcommands, config resolution and the daemon's
//! start and stop.
//!
//! Exit codes: 0 success; 1 a runtime failure (port in use, a collector that
//! cannot be built); 2 invalid configuration or usage.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};
use herakles_core::{registrations, BuildContext, Collector};

use crate::classify::Classifier;
use crate::config::{
    self, Config, ConfigError, Format, LoadedFile, LogFormat, LogLevel, SearchMode, SmapsMode,
};
use crate::health::Health;
use crate::scrape::Scraper;

#[derive(Debug, Parser)]
#[command(
    name = "herakles-node-exporter",
    version,
    about = "Prometheus exporter for Linux: per-process, per-group and whole-machine metrics",
    after_help = "Every collector also has --collector.NAME and --no-collector.NAME flags; \
                  `herakles-node-exporter collectors` lists them."
)]
pub struct Cli {
    /// HTTP listen port [default: 9215]
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Address to listen on [default: 0.0.0.0]
    #[arg(long)]
    pub bind: Option<String>,
    /// Log level
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Log format
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
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
    /// Serve a cached scrape for N seconds (0: collect on every scrape)
    #[arg(long, value_name = "SECONDS")]
    pub cache_ttl: Option<u64>,
    /// Seconds a collector may take per scrape
    #[arg(long, value_name = "SECONDS")]
    pub collector_timeout: Option<f64>,
    /// Concurrent /metrics requests before answering 503
    #[arg(long = "web.max-requests", value_name = "N")]
    pub max_requests: Option<usize>,
    /// Worker threads for collection (0: one per CPU)
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
    /// procfs mount point [default: /proc]
    #[arg(long = "path.procfs", value_name = "PATH")]
    pub procfs: Option<PathBuf>,
    /// sysfs mount point [default: /sys]
    #[arg(long = "path.sysfs", value_name = "PATH")]
    pub sysfs: Option<PathBuf>,
    /// Root of the host filesystem [default: /]
    #[arg(long = "path.rootfs", value_name = "PATH")]
    pub rootfs: Option<PathBuf>,
    /// Serve HTTPS (needs --tls-cert and --tls-key)
    #[arg(long)]
    pub enable_tls: bool,
    /// TLS certificate chain (PEM)
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,
    /// Per-process series only for USS >= KB
    #[arg(long, value_name = "KB")]
    pub min_uss_kb: Option<u64>,
    /// Top-N processes per subgroup
    #[arg(long, value_name = "N")]
    pub top_n_subgroup: Option<usize>,
    /// Top-N processes for the "other" group
    #[arg(long, value_name = "N")]
    pub top_n_others: Option<usize>,
    /// include: export only --search-groups; exclude: never export them
    #[arg(long, value_enum)]
    pub search_mode: Option<SearchMode>,
    /// Groups for --search-mode (comma-separated)
    #[arg(long, value_name = "GROUPS", value_delimiter = ',')]
    pub search_groups: Option<Vec<String>>,
    /// Drop unclassified processes (group "other")
    #[arg(long)]
    pub disable_others: bool,
    /// Keep only group and top-N series, no per-process series
    #[arg(long)]
    pub no_per_process_metrics: bool,
    /// Turn the eBPF programs on (enable_ebpf)
    #[arg(long, overrides_with = "disable_ebpf")]
    pub enable_ebpf: bool,
    /// Turn the eBPF programs off (enable_ebpf: false)
    #[arg(long, overrides_with = "enable_ebpf")]
    pub disable_ebpf: bool,
    /// Per-process network I/O from eBPF on
    #[arg(long, overrides_with = "disable_ebpf_network")]
    pub enable_ebpf_network: bool,
    /// Per-process network I/O from eBPF off
    #[arg(long, overrides_with = "enable_ebpf_network")]
    pub disable_ebpf_network: bool,
    /// Per-process block I/O from eBPF on
    #[arg(long, overrides_with = "disable_ebpf_disk")]
    pub enable_ebpf_disk: bool,
    /// Per-process block I/O from eBPF off
    #[arg(long, overrides_with = "enable_ebpf_disk")]
    pub disable_ebpf_disk: bool,
    /// TCP state counts from eBPF state-change events on
    #[arg(long, overrides_with = "disable_tcp_tracking")]
    pub enable_tcp_tracking: bool,
    /// TCP state counts from eBPF off (a netlink dump per scrape instead)
    #[arg(long, overrides_with = "enable_tcp_tracking")]
    pub disable_tcp_tracking: bool,
    /// Custom classification rules file (TOML)
    #[arg(long, value_name = "FILE")]
    pub subgroups_file: Option<String>,
    /// Which processes get PSS/USS/swap from smaps_rollup
    #[arg(long, value_enum)]
    pub smaps_mode: Option<SmapsMode>,
    /// Milliseconds per scrape for smaps reads
    #[arg(long, value_name = "MS")]
    pub smaps_budget_ms: Option<u64>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

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
}

/// Entry point of the binary; returns the exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    main_with(args)
}

/// Entry point with explicit arguments (for custom builds and tests).
pub fn main_with(args: Vec<String>) -> i32 {
    let toggles = match collector_toggles(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
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

    let (config, file) = match resolve_config(&cli, &toggles) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };

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
        }) => run_test(config, &build_ctx, *iterations, *verbose),
        Some(Command::Config { .. }) => unreachable!("handled above"),
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
        None => run_daemon(config, &build_ctx, &classifier),
    }
}

/// The clap command with one `--collector.NAME` / `--no-collector.NAME` pair
/// per registered collector, generated from the registry.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for r in registrations() {
        cmd = cmd
            .arg(
                Arg::new(format!("collector.{}", r.name))
                    .long(format!("collector.{}", r.name))
                    .action(ArgAction::SetTrue)
                    .help(format!("Enable the {} collector", r.name))
                    .hide(true),
            )
            .arg(
                Arg::new(format!("no-collector.{}", r.name))
                    .long(format!("no-collector.{}", r.name))
                    .action(ArgAction::SetTrue)
                    .help(format!("Disable the {} collector", r.name))
                    .hide(true),
            );
    }
    cmd
}

/// `--collector.X` / `--no-collector.X` in command-line order (the last one
/// for a name wins). Checked before clap so that an unknown name gets the
/// list of valid collectors rather than clap's generic message.
fn collector_toggles(args: &[String]) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    for a in args.iter().skip(1) {
        let (name, on) = if let Some(n) = a.strip_prefix("--collector.") {
            (n, true)
        } else if let Some(n) = a.strip_prefix("--no-collector.") {
            (n, false)
        } else {
            continue;
        };
        if !registrations().iter().any(|r| r.name == name) {
            return Err(config::unknown_collector(name));
        }
        out.push((name.to_string(), on));
    }
    Ok(out)
}

/// Defaults, then the file, then `HERAKLES_*`, then flags.
pub fn resolve_config(
    cli: &Cli,
    toggles: &[(String, bool)],
) -> Result<(Config, Option<LoadedFile>), ConfigError> {
    let file = if cli.no_config {
        None
    } else {
        config::find_config_file(cli.config.as_deref())?
            .map(|p| config::load_file(&p))
            .transpose()?
    };
    let base = file.as_ref().map(|f| f.config.clone()).unwrap_or_default();
    let mut c = config::apply_env(base, std::env::vars())?;

    if let Some(v) = cli.port {
        c.port = v;
    }
    if let Some(v) = &cli.bind {
        c.bind = v.clone();
    }
    if let Some(v) = cli.log_level {
        c.log_level = v;
    }
    if let Some(v) = cli.log_format {
        c.log_format = v;
    }
    if let Some(v) = cli.cache_ttl {
        c.cache_ttl = v;
    }
    if let Some(v) = cli.collector_timeout {
        c.collector_timeout = v;
    }
    if let Some(v) = cli.max_requests {
        c.max_requests = v;
    }
    if let Some(v) = cli.parallelism {
        c.parallelism = v;
    }
    if let Some(v) = cli.min_uss_kb {
        c.min_uss_kb = v;
    }
    if let Some(v) = cli.top_n_subgroup {
        c.top_n_subgroup = v;
    }
    if let Some(v) = cli.top_n_others {
        c.top_n_others = v;
    }
    if let Some(v) = cli.search_mode {
        c.search_mode = v;
    }
    if let Some(v) = &cli.search_groups {
        c.search_groups = v.clone();
    }
    if cli.disable_others {
        c.disable_others = true;
    }
    if cli.no_per_process_metrics {
        c.per_process_metrics = false;
    }
    for (on, off, key) in [
        (cli.enable_ebpf, cli.disable_ebpf, &mut c.enable_ebpf),
        (
            cli.enable_ebpf_network,
            cli.disable_ebpf_network,
            &mut c.enable_ebpf_network,
        ),
        (
            cli.enable_ebpf_disk,
            cli.disable_ebpf_disk,
            &mut c.enable_ebpf_disk,
        ),
        (
            cli.enable_tcp_tracking,
            cli.disable_tcp_tracking,
            &mut c.enable_tcp_tracking,
        ),
    ] {
        if on {
            *key = true;
        }
        if off {
            *key = false;
        }
    }
    if let Some(v) = &cli.subgroups_file {
        c.subgroups_file = v.clone();
    }
    if let Some(v) = cli.smaps_mode {
        c.smaps_mode = v;
    }
    if let Some(v) = cli.smaps_budget_ms {
        c.smaps_budget_ms = v;
    }
    if let Some(v) = &cli.procfs {
        c.paths.procfs = v.clone();
    }
    if let Some(v) = &cli.sysfs {
        c.paths.sysfs = v.clone();
    }
    if let Some(v) = &cli.rootfs {
        c.paths.rootfs = v.clone();
    }
    if cli.enable_tls {
        c.enable_tls = true;
    }
    if let Some(v) = &cli.tls_cert {
        c.tls_cert_path = v.clone();
    }
    if let Some(v) = &cli.tls_key {
        c.tls_key_path = v.clone();
    }
    for (name, on) in toggles {
        c.collectors
            .set_enabled(name, *on)
            .map_err(ConfigError::msg)?;
    }
    c.validate().map_err(ConfigError::msg)?;
    Ok((c, file))
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

type Built = Vec<(&'static str, Box<dyn Collector>)>;

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
    pub subgroups: Option<crate::http::SubgroupsPage>,
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
        let app = Arc::new(crate::http::App {
            scraper: self.scraper.clone(),
            health: self.health.clone(),
            limiter: Arc::new(tokio::sync::Semaphore::new(self.config.max_requests)),
            config: self.config.clone(),
            subgroups: self.subgroups.clone(),
        });
        crate::http::serve(listener, app, shutdown).await;
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

fn run_daemon(config: Config, ctx: &BuildContext, classifier: &Classifier) -> i32 {
    crate::logging::init(config.log_level, config.log_format);
    crate::listener::raise_fd_limit();
    if config.enable_tls {
        tracing::error!("TLS is not supported by this build; terminate TLS in a proxy");
        return 2;
    }
    let collectors = match build_collectors_in(ctx, &config) {
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

fn run_test(config: Config, ctx: &BuildContext, iterations: u32, verbose: bool) -> i32 {
    crate::logging::init(config.log_level, config.log_format);
    let collectors = match build_collectors_in(ctx, &config) {
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
