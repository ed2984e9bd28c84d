//! Reloading the configuration on SIGHUP, the way Prometheus does.
//!
//! A reload resolves the configuration exactly as start-up did (the same
//! file choice, then the `HERAKLES_*` variables and the flags on top) and
//! reads the classification rule files and the web config file again.
//! Then:
//!
//! * Anything invalid (a parse error, a value out of range, a bad rule, a
//!   bad web config, a collector that cannot be built) is logged with its
//!   file and line, and the running configuration stays, all of it:
//!   nothing a file holds can stop the exporter or interrupt serving.
//! * Settings read once at start-up ([`keep_restart_only`]: the listen
//!   addresses, the log set-up, the size of the thread pool; and whether
//!   TLS is on at all) are logged as needing a restart and keep their
//!   running values.
//! * A changed web config (users, headers, TLS settings) goes into the web
//!   slot: connections accepted from then on use it.
//! * Nothing else changed (configuration, rule files, test data): no
//!   collector is rebuilt, so counters and process state carry on.
//! * Otherwise a new build context and new collectors are built off to the
//!   side, on the blocking pool while the running ones keep serving, and
//!   swapped in whole. A request in flight finishes on the set it started
//!   with; once none is left (or after as long as a scrape can take), the
//!   old collectors and their services (eBPF programs, netprobe's TC
//!   filters, threads) are shut down.
//!
//! One reload runs at a time; SIGHUPs that arrive meanwhile make one more.
//! `herakles_exporter_config_last_reload_successful` and
//! `herakles_exporter_config_last_reload_success_timestamp_seconds` have
//! Prometheus's meaning, and systemd hears `RELOADING=1` and `READY=1`
//! around each reload.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herakles_core::{BuildContext, Desc, MetricSink};

use super::{build_context, collectors_or_build, Exporter, Resolve};
use crate::classify::RuleSources;
use crate::config::{Config, Resolved};
use crate::serve::health::Health;
use crate::serve::http::App;
use crate::serve::notify;
use crate::util::Swap;
use crate::web::{WebConfig, WebSecurity};

const SUCCESSFUL: Desc = Desc::gauge(
    "herakles_exporter_config_last_reload_successful",
    "1 if the last configuration reload succeeded (or none was tried since start-up); \
     0 if it failed and the previous configuration is still in use.",
);
const SUCCESS_TIME: Desc = Desc::gauge(
    "herakles_exporter_config_last_reload_success_timestamp_seconds",
    "Unix time of the last successful configuration load, at start-up or on reload.",
);
const RELOADS: Desc = Desc::counter(
    "herakles_exporter_config_reloads_total",
    "Configuration reloads (SIGHUP) since start-up, by result: success or failure.",
);

/// SIGHUP, or nothing when its handler could not be installed.
pub struct Hangup(pub Option<tokio::signal::unix::Signal>);

impl Hangup {
    /// The next SIGHUP; several sent meanwhile count as one.
    pub async fn recv(&mut self) {
        if let Some(s) = &mut self.0 {
            if s.recv().await.is_some() {
                return;
            }
            self.0 = None;
        }
        std::future::pending().await
    }
}

/// The reload metrics.
struct Status(Mutex<Counts>);

struct Counts {
    successful: bool,
    last_success: f64,
    succeeded: u64,
    failed: u64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Status {
    /// Start-up loaded the configuration: a success, as Prometheus counts it.
    fn new() -> Status {
        Status(Mutex::new(Counts {
            successful: true,
            last_success: unix_now(),
            succeeded: 0,
            failed: 0,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, ok: bool) {
        let mut c = self.lock();
        c.successful = ok;
        if ok {
            c.last_success = unix_now();
            c.succeeded += 1;
        } else {
            c.failed += 1;
        }
    }

    fn render(&self, out: &mut MetricSink) {
        let c = self.lock();
        out.single(&SUCCESSFUL, f64::from(u8::from(c.successful)));
        out.single(&SUCCESS_TIME, c.last_success);
        let mut reloads = out.family(&RELOADS);
        reloads.sample(&[("result", "success")], c.succeeded as f64);
        reloads.sample(&[("result", "failure")], c.failed as f64);
    }
}

/// The files besides the configuration that a build reads, with their
/// contents (`None`: absent or unreadable), to tell whether a reload
/// changes anything.
#[derive(Clone, PartialEq)]
struct Inputs(Vec<(PathBuf, Option<Vec<u8>>)>);

impl Inputs {
    /// The rule files the classifier would read for `config` (see
    /// [`RuleSources`]) and the test data file.
    fn read(config: &Config, test_data: Option<&Path>) -> Inputs {
        let explicit =
            (!config.subgroups_file.is_empty()).then(|| PathBuf::from(&config.subgroups_file));
        let paths = explicit
            .into_iter()
            .chain(RuleSources::DEFAULT_LOCATIONS.iter().map(PathBuf::from))
            .chain(test_data.map(Path::to_path_buf));
        Inputs(
            paths
                .map(|p| {
                    let contents = std::fs::read(&p).ok();
                    (p, contents)
                })
                .collect(),
        )
    }
}

/// What the running exporter was built from.
struct Running {
    config: Config,
    ctx: BuildContext,
    inputs: Inputs,
}

/// What a reload prepared: each part `None` when it did not change.
struct Prepared {
    web: Option<(WebConfig, WebSecurity)>,
    rebuilt: Option<Box<(Exporter, Running)>>,
}

/// Reloads the exporter serving through `routes`.
pub struct Reloader {
    resolve: Resolve,
    test_data: Option<PathBuf>,
    routes: Arc<Swap<App>>,
    health: Arc<Health>,
    status: Arc<Status>,
    running: Running,
    /// The web config in the routes' web slot.
    web: WebConfig,
}

impl Reloader {
    /// For the exporter now in `routes`, built from `config` in `ctx` and
    /// serving with `web`. Adds the reload metrics to its scraper (and so to
    /// every later one).
    pub fn new(
        resolve: Resolve,
        test_data: Option<PathBuf>,
        routes: Arc<Swap<App>>,
        health: Arc<Health>,
        (config, web): (Config, WebConfig),
        ctx: BuildContext,
    ) -> Reloader {
        let status = Arc::new(Status::new());
        let shown = status.clone();
        routes
            .load()
            .scraper
            .add_meta_source(Arc::new(move |out| shown.render(out)));
        let inputs = Inputs::read(&config, test_data.as_deref());
        Reloader {
            resolve,
            test_data,
            routes,
            health,
            status,
            running: Running {
                config,
                ctx,
                inputs,
            },
            web,
        }
    }

    /// Reload; see the module docs. Returns the signal name if `stop`
    /// resolved while the old collectors were finishing their scrapes (they
    /// are shut down all the same).
    pub async fn reload(
        &mut self,
        mut stop: Pin<&mut impl Future<Output = &'static str>>,
    ) -> Option<&'static str> {
        notify::reloading();
        let started = Instant::now();
        tracing::info!("SIGHUP: reloading the configuration");
        let mut job = {
            let resolve = self.resolve.clone();
            let running = (self.running.config.clone(), self.running.inputs.clone());
            let (test_data, health) = (self.test_data.clone(), self.health.clone());
            let web = self.web.clone();
            let web_slot = self.routes.load().web.clone();
            tokio::task::spawn_blocking(move || {
                let running = (&running.0, &running.1, &web);
                prepare(&resolve, running, test_data.as_deref(), health, web_slot)
            })
        };
        let prepared = tokio::select! {
            res = &mut job => res.unwrap_or_else(|e| Err(format!("the reload failed: {e}"))),
            sig = stop.as_mut() => {
                abandon(job).await;
                return Some(sig);
            }
        };
        let Prepared { web, rebuilt } = match prepared {
            Err(e) => {
                tracing::error!("reload failed, the running configuration stays: {e}");
                self.status.record(false);
                notify::ready(&format!("serving; the last reload failed: {e}"));
                return None;
            }
            Ok(p) => p,
        };
        if let Some((config, security)) = web {
            self.routes.load().web.replace(security);
            self.web = config;
            tracing::info!("web config reloaded: new connections use it");
        }
        let Some(next) = rebuilt else {
            tracing::info!("configuration reloaded: no collector changed");
            self.status.record(true);
            notify::ready("serving; configuration reloaded");
            return None;
        };
        let (exporter, running) = *next;

        // The swap. The new scraper renders what the old one did besides
        // its collectors (the listener's and these reload metrics).
        let current = self.routes.load();
        for source in current.scraper.meta_sources() {
            exporter.scraper.add_meta_source(source);
        }
        drop(current);
        let names = exporter.scraper.names();
        self.health.set_collectors(&names);
        let exporter = exporter.with_health_sections(&running.ctx);
        let old = self.routes.replace(Arc::new(exporter.app()));
        let old = Retiring {
            patience: patience(&self.running.config, old.scraper.names().len()),
            app: old,
            ctx: std::mem::replace(&mut self.running, running).ctx,
        };
        self.status.record(true);
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            collectors = names.join(","),
            "configuration reloaded"
        );
        notify::ready("serving; configuration reloaded");

        let signal = tokio::select! {
            () = old.idle() => None,
            sig = stop.as_mut() => Some(sig),
        };
        old.shut_down().await;
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "the previous collectors are shut down"
        );
        signal
    }

    /// Shut the running collectors down (the daemon is stopping).
    pub fn shutdown(&self) {
        self.routes.load().scraper.shutdown();
    }
}

/// The daemon stops while a reload is still being prepared. A build that
/// ends within a second is shut down, so that nothing it started (netprobe's
/// TC filters) outlives the exporter. One that takes longer is left to the
/// runtime's shutdown: it is still reading its files (a pathological YAML
/// file can keep libyaml busy for minutes), not holding kernel objects, and
/// the stop must stay within seconds.
async fn abandon(job: tokio::task::JoinHandle<Result<Prepared, String>>) {
    match tokio::time::timeout(Duration::from_secs(1), job).await {
        Ok(Ok(Ok(Prepared {
            rebuilt: Some(next),
            ..
        }))) => {
            let (exporter, running) = *next;
            let _ = tokio::task::spawn_blocking(move || {
                exporter.scraper.shutdown();
                drop(running);
            })
            .await;
        }
        Ok(_) => {}
        Err(_) => tracing::warn!("stopping while a reload is still being prepared"),
    }
}

/// Resolve and build the next exporter; see the module docs. Runs on the
/// blocking pool: building loads eBPF programs and reads files. `running`
/// is what the exporter runs with: configuration, files, web config.
fn prepare(
    resolve: &Resolve,
    (running, running_inputs, running_web): (&Config, &Inputs, &WebConfig),
    test_data: Option<&Path>,
    health: Arc<Health>,
    web_slot: crate::web::WebSlot,
) -> Result<Prepared, String> {
    let Resolved {
        mut config, notes, ..
    } = resolve().map_err(|e| e.to_string())?;
    for note in notes {
        tracing::debug!("{note}");
    }
    for (key, wanted, kept) in keep_restart_only(running, &mut config) {
        tracing::warn!(
            "{key} changed to {wanted} in the configuration: that needs a restart; \
             still running with {kept}"
        );
    }
    let web = reload_web(running, running_web, &mut config)?;
    let inputs = Inputs::read(&config, test_data);
    let same = |a: &Config, b: &Config| match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(&config, running) && inputs == *running_inputs {
        return Ok(Prepared { web, rebuilt: None });
    }
    let ctx = build_context(&config);
    let classifier =
        crate::process::classifier(&ctx).map_err(|e| format!("classification rules: {e}"))?;
    for warning in classifier.warnings() {
        tracing::warn!("classification rules: {warning}");
    }
    let source = test_data.map(crate::testdata::load).transpose()?;
    let collectors = collectors_or_build(source, &ctx, &config)?;
    crate::ebpf::register_health(&ctx, &config);
    let exporter = Exporter::sharing(config.clone(), collectors, health, web_slot)
        .with_subgroups_page(&classifier);
    let running = Running {
        config,
        ctx,
        inputs,
    };
    Ok(Prepared {
        web,
        rebuilt: Some(Box::new((exporter, running))),
    })
}

/// The web config `config` names, loaded and made ready to serve if it
/// differs from the running one. TLS cannot be switched on or off by a
/// reload (the listener's scheme, the log and systemd's status name it):
/// then the web settings of `config` go back to the running ones and the
/// running web config stays, with a warning.
fn reload_web(
    running: &Config,
    running_web: &WebConfig,
    config: &mut Config,
) -> Result<Option<(WebConfig, WebSecurity)>, String> {
    let web = crate::web::configured(config).map_err(|e| e.to_string())?;
    if web == *running_web {
        return Ok(None);
    }
    if web.tls.is_some() != running_web.tls.is_some() {
        let (from, to) = match running_web.tls {
            Some(_) => ("HTTPS", "HTTP"),
            None => ("HTTP", "HTTPS"),
        };
        tracing::warn!(
            "the configuration switches from {from} to {to}: that needs a restart; \
             still serving {from} with the running web config"
        );
        config.web_config_file = running.web_config_file.clone();
        config.enable_tls = running.enable_tls;
        config.tls_cert_path = running.tls_cert_path.clone();
        config.tls_key_path = running.tls_key_path.clone();
        return Ok(None);
    }
    let security = WebSecurity::new(&web).map_err(|e| e.to_string())?;
    Ok(Some((web, security)))
}

/// Put back the settings that only take effect at start-up; returns each
/// one that differed: key, the new file's value, the running value.
///
/// The listening sockets are opened once; the log format and level are the
/// process-wide logger's; `parallelism` sized the runtime's thread pool.
pub fn keep_restart_only(
    running: &Config,
    new: &mut Config,
) -> Vec<(&'static str, String, String)> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($key:ident),*) => {$(
            if running.$key != new.$key {
                let (wanted, kept) = (format!("{:?}", new.$key), format!("{:?}", running.$key));
                changed.push((stringify!($key), wanted, kept));
                new.$key = running.$key.clone();
            }
        )*};
    }
    keep!(
        port,
        bind,
        listen_addresses,
        systemd_socket,
        log_level,
        log_format,
        parallelism
    );
    changed
}

/// How long to wait for the scrapes of a set of `collectors` built from
/// `config` to finish: a scrape runs them `parallelism` at a time, each
/// for at most `collector_timeout`, after waiting at most as long for a run
/// of another scrape.
fn patience(config: &Config, collectors: usize) -> Duration {
    let rounds = collectors.div_ceil(config.effective_parallelism().max(1)) + 1;
    Duration::from_secs_f64(config.collector_timeout * rounds as f64) + Duration::from_secs(1)
}

/// The set a reload replaced, until it is shut down.
struct Retiring {
    app: Arc<App>,
    ctx: BuildContext,
    patience: Duration,
}

impl Retiring {
    /// Resolves once no request or scrape holds the old set, or after
    /// `patience`.
    async fn idle(&self) {
        let deadline = Instant::now() + self.patience;
        while Arc::strong_count(&self.app) > 1 || Arc::strong_count(&self.app.scraper) > 1 {
            if Instant::now() >= deadline {
                tracing::warn!(
                    "scrapes of the previous collectors still running after {:.0?}; \
                     shutting them down anyway",
                    self.patience
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Shut the collectors down and drop them with their services, on the
    /// blocking pool (stopping a probe joins its thread).
    async fn shut_down(self) {
        let Retiring { app, ctx, .. } = self;
        let done = tokio::task::spawn_blocking(move || {
            app.scraper.shutdown();
            drop(app);
            drop(ctx);
        });
        if let Err(e) = done.await {
            tracing::error!("shutting the previous collectors down failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_keep_their_running_values() {
        let running = Config::default();
        let mut new = Config {
            port: 9300,
            bind: "127.0.0.1".into(),
            parallelism: 7,
            cache_ttl: 5,
            ..Config::default()
        };
        let changed = keep_restart_only(&running, &mut new);
        let keys: Vec<&str> = changed.iter().map(|c| c.0).collect();
        assert_eq!(keys, ["port", "bind", "parallelism"]);
        assert_eq!(changed[0], ("port", "9300".into(), "9215".into()));
        assert_eq!(
            (new.port, new.bind.as_str(), new.parallelism),
            (9215, "0.0.0.0", 0)
        );
        assert_eq!(new.cache_ttl, 5, "a reloadable key takes the new value");
    }

    #[test]
    fn reload_metrics_move_as_prometheus_does() {
        let status = Status::new();
        let render = |s: &Status| {
            let mut out = MetricSink::new();
            s.render(&mut out);
            out.to_text()
        };
        let start = status.lock().last_success;
        assert!(render(&status).contains("herakles_exporter_config_last_reload_successful 1\n"));
        status.record(false);
        let text = render(&status);
        assert!(
            text.contains("herakles_exporter_config_last_reload_successful 0\n"),
            "{text}"
        );
        assert!(text.contains("herakles_exporter_config_reloads_total{result=\"failure\"} 1\n"));
        assert_eq!(
            status.lock().last_success,
            start,
            "a failure keeps the timestamp"
        );
        std::thread::sleep(Duration::from_millis(5));
        status.record(true);
        assert!(status.lock().last_success > start);
        assert!(render(&status)
            .contains("herakles_exporter_config_reloads_total{result=\"success\"} 1\n"));
    }

    #[test]
    fn patience_covers_a_whole_scrape() {
        let config = Config {
            collector_timeout: 2.0,
            parallelism: 4,
            ..Config::default()
        };
        // 9 collectors, 4 at a time: 3 rounds, plus one of waiting.
        assert_eq!(patience(&config, 9), Duration::from_secs(9));
    }
}
