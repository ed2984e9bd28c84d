//! The exporter assembled from its configuration: the build context and
//! its services, the collectors, the scrape coordinator and the server, and
//! the daemon's run and shutdown.
//!
//! This is the one place that puts the layers together. The CLI parses and
//! dispatches; `check`, `test`, `--check-config` and the integration tests
//! build exporters here, so they build exactly what the daemon runs.

use std::sync::Arc;
use std::time::Duration;

use herakles_core::{BuildContext, Collector};

use crate::classify::Classifier;
use crate::config::Config;
use crate::serve::health::Health;
use crate::serve::http;
use crate::serve::scrape::Scraper;
use crate::testdata::{Source, TestDataCollector};
use crate::web::{WebSecurity, WebSlot};

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

/// The async runtime of a daemon (or `test` run) with `collectors`.
pub fn runtime(config: &Config, collectors: usize) -> std::io::Result<tokio::runtime::Runtime> {
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
    pub subgroups: Option<http::SubgroupsPage>,
    /// TLS, basic auth and headers for new connections (see
    /// [`Exporter::web_slot`]).
    web: WebSlot,
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
            config.enable_telemetry,
        );
        Exporter {
            scraper,
            health,
            config: Arc::new(config),
            subgroups: None,
            web: WebSlot::new(WebSecurity::plain_http()),
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
    /// escaped. Rules are fixed at start-up, so it is rendered once here.
    pub fn with_subgroups_page(mut self, classifier: &Classifier) -> Exporter {
        let table = crate::classify::render_list(classifier, None, true);
        let html = format!("<pre>{}</pre>", crate::util::html_escape(&table));
        self.subgroups = Some(Arc::new(move || html.clone()));
        self
    }

    /// Show the sections collectors and services registered in `ctx` (see
    /// [`BuildContext::health_check`]) in `/health`.
    pub fn with_health_sections(self, ctx: &BuildContext) -> Exporter {
        for (key, f) in ctx.health_checks() {
            self.health.section(key, f);
        }
        self
    }

    /// Serve on `listeners` (from [`crate::serve::sockets::listen`]) until
    /// `shutdown` resolves.
    pub async fn serve(
        self,
        listeners: Vec<std::net::TcpListener>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let listeners = listeners
            .into_iter()
            .map(tokio::net::TcpListener::from_std)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot serve the listening socket: {e}"))?;
        let app = Arc::new(http::App {
            scraper: self.scraper.clone(),
            health: self.health.clone(),
            limiter: Arc::new(tokio::sync::Semaphore::new(self.config.max_requests)),
            config: self.config.clone(),
            subgroups: self.subgroups.clone(),
            web: self.web.clone(),
        });
        http::serve(listeners, app, shutdown).await;
        Ok(())
    }
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

/// Run the daemon: build the collectors (or serve `test_data`), serve until
/// SIGTERM or SIGINT, then stop within five seconds. Returns the exit code.
pub fn run(
    config: Config,
    ctx: &BuildContext,
    classifier: &Classifier,
    test_data: Option<Source>,
) -> i32 {
    crate::logging::init(config.log_level, config.log_format);
    crate::serve::listener::raise_fd_limit();
    let web = match crate::web::configured(&config) {
        Ok(web) => web,
        Err(e) => {
            tracing::error!("{e}");
            return 2;
        }
    };
    let web = match WebSecurity::new(&web) {
        Ok(web) => web,
        Err(e) => {
            tracing::error!("{e}");
            return 2;
        }
    };
    let collectors = match collectors_or_build(test_data, ctx, &config) {
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
        .with_web(web)
        .with_subgroups_page(classifier)
        .with_health_sections(ctx);
    let scraper = exporter.scraper.clone();
    let code = rt.block_on(async move {
        // Handlers first: a SIGTERM sent as soon as "listening on" is
        // logged must stop the exporter cleanly (netprobe's filters come
        // off), not kill it with the default action.
        let stop = shutdown_signal();
        let listeners = match crate::serve::sockets::listen(&exporter.config) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{e}");
                return 1;
            }
        };
        let scheme = match exporter.web.current().tls() {
            Some(_) => "https",
            None => "http",
        };
        for addr in listeners.iter().filter_map(|l| l.local_addr().ok()) {
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                "listening on {scheme}://{addr}"
            );
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut server = tokio::spawn(exporter.serve(listeners, async move {
            let mut rx = rx;
            let _ = rx.wait_for(|stop| *stop).await;
        }));
        tokio::select! {
            res = &mut server => return match res {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => { tracing::error!("{e}"); 1 }
                Err(e) => { tracing::error!("server task failed: {e}"); 1 }
            },
            sig = stop => tracing::info!(signal = sig, "shutting down"),
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
