//! The exporter assembled from its configuration: the build context and
//! its services, the collectors, the scrape coordinator and the server, and
//! the daemon's run and shutdown.
//!
//! This is the one place that puts the layers together. The CLI parses and
//! dispatches; `check`, `test`, `--check-config` and the integration tests
//! build exporters here, so they build exactly what the daemon runs. A
//! reload (SIGHUP, `reload.rs`) builds here too, the same way.

mod reload;

use std::sync::Arc;
use std::time::Duration;

use herakles_core::{BuildContext, Collector};

use crate::classify::Classifier;
use crate::config::{Config, ConfigError, Resolved};
use crate::serve::health::Health;
use crate::serve::http;
use crate::serve::notify;
use crate::serve::scrape::Scraper;
use crate::testdata::{Source, TestDataCollector};
use crate::util::Swap;

/// Resolves the configuration again, from the same file choice, variables
/// and flags as at start-up (`crate::config::resolve`); a reload calls it.
pub type Resolve = Arc<dyn Fn() -> Result<Resolved, ConfigError> + Send + Sync>;

/// Built collectors, with their names, in run order.
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

/// The async runtime of a daemon (or `test` run).
pub fn runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    // Room for `parallelism` active collections plus one stuck thread per
    // collector (a collector never runs twice at once), so hung collectors
    // can never exhaust the pool; counted for every collector there is,
    // twice, because a reload may enable any of them while the set it
    // replaces still has a thread stuck in each. Threads start only when
    // needed, so the room costs nothing.
    let collectors = herakles_core::registrations().len();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(config.effective_parallelism() + 2 * collectors + 2)
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
    pub subgroups: Option<http::SubgroupsPage>,
}

impl Exporter {
    pub fn new(config: Config, collectors: Built) -> Exporter {
        let names: Vec<&'static str> = collectors.iter().map(|(n, _)| *n).collect();
        Exporter::with_health(config, collectors, Arc::new(Health::new(&names)))
    }

    /// An exporter recording into `health`, which a reload carries over
    /// from the exporter it replaces (uptime, collectors' history).
    fn with_health(config: Config, collectors: Built, health: Arc<Health>) -> Exporter {
        let scraper = Scraper::new(
            collectors,
            config.paths.to_paths(),
            Duration::from_secs_f64(config.collector_timeout),
            Duration::from_secs(config.cache_ttl),
            config.effective_parallelism(),
            health.clone(),
            config.enable_telemetry,
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
    /// [`BuildContext::health_check`]) in `/health`. These replace the
    /// sections of the exporter it replaces, on a reload.
    pub fn with_health_sections(self, ctx: &BuildContext) -> Exporter {
        self.health.set_sections(ctx.health_checks());
        self
    }

    /// What the routes serve from.
    pub fn app(&self) -> http::App {
        http::App {
            scraper: self.scraper.clone(),
            health: self.health.clone(),
            limiter: Arc::new(tokio::sync::Semaphore::new(self.config.max_requests)),
            config: self.config.clone(),
            subgroups: self.subgroups.clone(),
        }
    }
}

/// Bind the address `config` names and serve the current `App` of `routes`
/// until `shutdown` resolves. Returns the bound address through `on_bound`
/// once the socket listens (port 0 picks a free port).
///
/// It holds nothing of the exporter but `routes`, so that a reload that
/// replaces the `App` there leaves nothing of the old one in use.
pub async fn serve(
    config: Arc<Config>,
    routes: Arc<Swap<http::App>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    let ip: std::net::IpAddr = config
        .bind
        .parse()
        .map_err(|_| format!("invalid bind address {:?}", config.bind))?;
    let addr = std::net::SocketAddr::new(ip, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let serving = http::serve(listener, routes, shutdown);
    on_bound(bound);
    serving.await;
    Ok(())
}

/// The collectors to serve: the test data's when there is a file, else the
/// enabled built-in ones.
pub fn collectors_or_build(
    source: Option<Source>,
    ctx: &BuildContext,
    config: &Config,
) -> Result<Built, String> {
    match source {
        Some(s) => Ok(vec![("testdata", Box::new(TestDataCollector::new(s)))]),
        None => build_collectors_in(ctx, config),
    }
}

/// Run the daemon: build the collectors (or serve `test_data`), serve
/// until SIGTERM or SIGINT, then stop within five seconds; on SIGHUP,
/// reload the configuration with `resolve` (see `reload.rs`). Returns the
/// exit code.
pub fn run(
    config: Config,
    ctx: BuildContext,
    classifier: Arc<Classifier>,
    test_data: Option<Source>,
    resolve: Resolve,
) -> i32 {
    crate::logging::init(config.log_level, config.log_format);
    crate::serve::listener::raise_fd_limit();
    if config.enable_tls {
        tracing::error!("TLS is not supported by this build; terminate TLS in a proxy");
        return 2;
    }
    let test_data_file = test_data.as_ref().map(|s| s.file.clone());
    let collectors = match collectors_or_build(test_data, &ctx, &config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let rt = match runtime(&config) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    crate::ebpf::register_health(&ctx, &config);
    let exporter = Exporter::new(config.clone(), collectors)
        .with_subgroups_page(&classifier)
        .with_health_sections(&ctx);
    drop(classifier);
    let routes = Arc::new(Swap::new(Arc::new(exporter.app())));
    let mut reloader = reload::Reloader::new(
        resolve,
        test_data_file,
        routes.clone(),
        exporter.health.clone(),
        config,
        ctx,
    );
    let config = exporter.config.clone();
    drop(exporter);
    let reloading = &mut reloader;
    let code = rt.block_on(async move {
        // Handlers first: a SIGTERM sent as soon as "listening on" is
        // logged must stop the exporter cleanly (netprobe's filters come
        // off), not kill it with the default action; likewise SIGHUP, whose
        // default action is to terminate, must reload.
        let mut stop = std::pin::pin!(shutdown_signal());
        let mut hangup = hangup_signal();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let mut server = tokio::spawn(serve(
            config,
            routes,
            async move {
                let mut rx = rx;
                let _ = rx.wait_for(|stop| *stop).await;
            },
            |addr| {
                tracing::info!(
                    version = env!("CARGO_PKG_VERSION"),
                    "listening on http://{addr}"
                );
                let _ = bound_tx.send(addr);
            },
        ));
        let server_ended = |res: Result<Result<(), String>, tokio::task::JoinError>| match res {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                tracing::error!("{e}");
                1
            }
            Err(e) => {
                tracing::error!("server task failed: {e}");
                1
            }
        };
        // Ready once the socket listens: connections from then on are
        // queued and answered. A SIGHUP before that waits until then.
        let signal = tokio::select! {
            res = &mut server => return server_ended(res),
            sig = &mut stop => Some(sig),
            bound = bound_rx => {
                if let Ok(addr) = bound {
                    notify::ready(&format!("serving on http://{addr}"));
                }
                None
            }
        };
        let signal = match signal {
            Some(sig) => sig,
            None => loop {
                tokio::select! {
                    res = &mut server => return server_ended(res),
                    sig = &mut stop => break sig,
                    () = hangup.recv() => {
                        if let Some(sig) = reloading.reload(stop.as_mut()).await {
                            break sig;
                        }
                    }
                }
            },
        };
        tracing::info!(signal, "shutting down");
        notify::stopping();
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
    reloader.shutdown();
    rt.shutdown_timeout(Duration::from_millis(500));
    code
}

/// SIGHUP, installed now (see [`shutdown_signal`]); never fires if it
/// cannot be installed.
fn hangup_signal() -> reload::Hangup {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => reload::Hangup(Some(s)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP: no configuration reload");
            reload::Hangup(None)
        }
    }
}

/// Install the SIGTERM and SIGINT handlers now and return a future that
/// resolves with the first of them to arrive. Registering is synchronous
/// (not in the future's first poll) so that no signal can arrive between
/// the listener coming up and the handlers being in place.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            (Ok(mut term), Err(_)) => {
                term.recv().await;
                "SIGTERM"
            }
            (Err(_), Ok(mut int)) => {
                int.recv().await;
                "SIGINT"
            }
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}
