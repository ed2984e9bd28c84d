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
use crate::web::{WebConfig, WebSecurity, WebSlot};

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
    /// TLS, basic auth and headers for new connections (see
    /// [`Exporter::web_slot`]).
    web: WebSlot,
}

impl Exporter {
    pub fn new(config: Config, collectors: Built) -> Exporter {
        let names: Vec<&'static str> = collectors.iter().map(|(n, _)| *n).collect();
        let web = WebSlot::new(WebSecurity::plain_http());
        Exporter::sharing(config, collectors, Arc::new(Health::new(&names)), web)
    }

    /// An exporter recording into `health` and serving with `web`, which a
    /// reload carries over from the exporter it replaces (uptime,
    /// collectors' history; the web security, which it reloads in place).
    fn sharing(config: Config, collectors: Built, health: Arc<Health>, web: WebSlot) -> Exporter {
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
            web,
        }
    }

    /// Serve with `web` (from [`crate::web::configured`]) instead of plain
    /// HTTP.
    pub fn with_web(self, web: WebSecurity) -> Exporter {
        self.web.replace(web);
        self
    }

    /// The slot holding the web security new connections get. Take it
    /// before [`Exporter::serve`] consumes the exporter; a reload puts a
    /// new [`WebSecurity`] in with [`WebSlot::replace`], and every
    /// connection accepted after that uses it (kept-alive ones finish with
    /// what they started with).
    pub fn web_slot(&self) -> WebSlot {
        self.web.clone()
    }

    /// Serve `/subgroups` from `classifier`: the `subgroups --verbose` table,
    /// escaped. The rules change only with a rebuild, so it is rendered once
    /// here.
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
            web: self.web.clone(),
        }
    }

    /// Serve on `listeners` (from [`crate::serve::sockets::listen`]) until
    /// `shutdown` resolves.
    pub async fn serve(
        self,
        listeners: Vec<std::net::TcpListener>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let routes = Arc::new(Swap::new(Arc::new(self.app())));
        drop(self);
        serving(listeners, routes, shutdown)?.await;
        Ok(())
    }
}

/// Serving the current `App` of `routes` on `listeners` until `shutdown`
/// resolves. Must be called within the runtime (the sockets register with
/// it); the listener's metrics join the scraper's before this returns.
///
/// It holds nothing of the exporter but `routes`, so that a reload that
/// replaces the `App` there leaves nothing of the old one in use.
fn serving(
    listeners: Vec<std::net::TcpListener>,
    routes: Arc<Swap<http::App>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<impl std::future::Future<Output = ()>, String> {
    let listeners = listeners
        .into_iter()
        .map(tokio::net::TcpListener::from_std)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot serve the listening socket: {e}"))?;
    Ok(http::serve(listeners, routes, shutdown))
}

/// The web security `config` asks for (its web config file, or the spec's
/// TLS keys), ready to serve; the error names the file and line or key.
fn web_security(config: &Config) -> Result<(WebConfig, WebSecurity), String> {
    let web = crate::web::configured(config).map_err(|e| e.to_string())?;
    let security = WebSecurity::new(&web).map_err(|e| e.to_string())?;
    Ok((web, security))
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
    let (web_config, web) = match web_security(&config) {
        Ok(web) => web,
        Err(e) => {
            tracing::error!("{e}");
            return 2;
        }
    };
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
        .with_web(web)
        .with_subgroups_page(&classifier)
        .with_health_sections(&ctx);
    drop(classifier);
    let routes = Arc::new(Swap::new(Arc::new(exporter.app())));
    let mut reloader = reload::Reloader::new(
        resolve,
        test_data_file,
        routes.clone(),
        exporter.health.clone(),
        (config, web_config),
        ctx,
    );
    drop(exporter);
    let reloading = &mut reloader;
    let code = rt.block_on(async move {
        // Handlers first: a SIGTERM sent as soon as "listening on" is
        // logged must stop the exporter cleanly (netprobe's filters come
        // off), not kill it with the default action; likewise SIGHUP, whose
        // default action is to terminate, must reload.
        let mut stop = std::pin::pin!(shutdown_signal());
        let mut hangup = hangup_signal();
        let current = routes.load();
        let listeners = match crate::serve::sockets::listen(&current.config) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{e}");
                return 1;
            }
        };
        let scheme = match current.web.current().tls() {
            Some(_) => "https",
            None => "http",
        };
        drop(current);
        let mut serving_on = Vec::new();
        for addr in listeners.iter().filter_map(|l| l.local_addr().ok()) {
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                "listening on {scheme}://{addr}"
            );
            serving_on.push(format!("{scheme}://{addr}"));
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        let server = serving(listeners, routes, async move {
            let mut rx = rx;
            let _ = rx.wait_for(|stop| *stop).await;
        });
        let mut server = match server {
            Ok(server) => tokio::spawn(server),
            Err(e) => {
                tracing::error!("{e}");
                return 1;
            }
        };
        // The sockets listen: connections from now on are queued and
        // answered.
        notify::ready(&format!("serving on {}", serving_on.join(", ")));
        let signal = loop {
            tokio::select! {
                res = &mut server => return match res {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::error!("server task failed: {e}");
                        1
                    }
                },
                sig = &mut stop => break sig,
                () = hangup.recv() => {
                    if let Some(sig) = reloading.reload(stop.as_mut()).await {
                        break sig;
                    }
                }
            }
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
