//! Reloading the configuration on SIGHUP, the way Prometheus does.
//!
//! A reload resolves the configuration exactly as start-up did (the same
//! file choice, then the `HERAKLES_*` variables and the flags on top) and
//! reads the classification rule files again. Then:
//!
//! * Anything invalid (a parse error, a value out of range, a bad rule, a
//!   collector that cannot be built) is logged with its file and line, and
//!   the running configuration stays: nothing a file holds can stop the
//!   exporter or interrupt serving.
//! * Settings read once at start-up ([`keep_restart_only`]: the listen
//!   address, the log set-up, the size of the thread pool) are logged as
//!   needing a restart and keep their running values.
//! * Nothing changed (configuration, rule files, test data): nothing is
//!   rebuilt, so counters and process state carry on.
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

/// What a reload prepared.
enum Prepared {
    Unchanged,
    Rebuilt(Box<(Exporter, Running)>),
}

/// Reloads the exporter serving through `routes`.
pub struct Reloader {
    resolve: Resolve,
    test_data: Option<PathBuf>,
    routes: Arc<Swap<App>>,
    health: Arc<Health>,
    status: Arc<Status>,
    running: Running,
}

impl Reloader {
    /// For the exporter now in `routes`, built from `config` in `ctx`. Adds
    /// the reload metrics to its scraper (and so to every later one).
    pub fn new(
        resolve: Resolve,
        test_data: Option<PathBuf>,
        routes: Arc<Swap<App>>,
        health: Arc<Health>,
        config: Config,
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
        }
    }

    /// Reload; see the module docs. Returns the signal name if `stop`
    /// resolved while the old collectors were finishing their scrapes (they
    /// are shut down all the same).
    pub async fn reload(
        &mut self,
        stop: Pin<&mut impl Future<Output = &'static str>>,
    ) -> Option<&'static str> {
        notify::reloading();
        let started = Instant::now();
        tracing::info!("SIGHUP: reloading the configuration");
        let prepared = {
            let resolve = self.resolve.clone();
            let running = (self.running.config.clone(), self.running.inputs.clone());
            let test_data = self.test_data.clone();
            let health = self.health.clone();
            tokio::task::spawn_blocking(move || {
                prepare(
                    &resolve,
                    &running.0,
                    &running.1,
                    test_data.as_deref(),
                    health,
                )
            })
            .await
            .unwrap_or_else(|e| Err(format!("the reload failed: {e}")))
        };
        let (exporter, running) = match prepared {
            Err(e) => {
                tracing::error!("reload failed, the running configuration stays: {e}");
                self.status.record(false);
                notify::ready(&format!("serving; the last reload failed: {e}"));
                return None;
            }
            Ok(Prepared::Unchanged) => {
                tracing::info!("configuration reloaded: nothing changed");
                self.status.record(true);
                notify::ready("serving; configuration reloaded");
                return None;
            }
            Ok(Prepared::Rebuilt(next)) => *next,
        };

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
            sig = stop => Some(sig),
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

/// Resolve and build the next exporter; see the module docs. Runs on the
/// blocking pool: building loads eBPF programs and reads files.
fn prepare(
    resolve: &Resolve,
    running: &Config,
    running_inputs: &Inputs,
    test_data: Option<&Path>,
    health: Arc<Health>,
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
    let inputs = Inputs::read(&config, test_data);
    let same = |a: &Config, b: &Config| match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(&config, running) && inputs == *running_inputs {
        return Ok(Prepared::Unchanged);
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
    let exporter =
        Exporter::with_health(config.clone(), collectors, health).with_subgroups_page(&classifier);
    Ok(Prepared::Rebuilt(Box::new((
        exporter,
        Running {
            config,
            ctx,
            inputs,
        },
    ))))
}

/// Put back the settings that only take effect at start-up; returns each
/// one that differed: key, the new file's value, the running value.
///
/// The listen address is bound once; the log format and level are the
/// process-wide logger's; `parallelism` sized the runtime's thread pool;
/// TLS is decided when the listener starts.
pub fn keep_restart_only(
    running: &Config,
    new: &mut Config,
) -> Vec<(&'static str, String, String)> {
    fn keep<T: PartialEq + Clone + std::fmt::Debug>(
        key: &'static str,
        running: &T,
        new: &mut T,
        changed: &mut Vec<(&'static str, String, String)>,
    ) {
        if running != new {
            changed.push((key, format!("{new:?}"), format!("{running:?}")));
            *new = running.clone();
        }
    }
    let mut changed = Vec::new();
    keep("port", &running.port, &mut new.port, &mut changed);
    keep("bind", &running.bind, &mut new.bind, &mut changed);
    keep(
        "log_level",
        &running.log_level,
        &mut new.log_level,
        &mut changed,
    );
    keep(
        "log_format",
        &running.log_format,
        &mut new.log_format,
        &mut changed,
    );
    keep(
        "parallelism",
        &running.parallelism,
        &mut new.parallelism,
        &mut changed,
    );
    keep(
        "enable_tls",
        &running.enable_tls,
        &mut new.enable_tls,
        &mut changed,
    );
    keep(
        "tls_cert_path",
        &running.tls_cert_path,
        &mut new.tls_cert_path,
        &mut changed,
    );
    keep(
        "tls_key_path",
        &running.tls_key_path,
        &mut new.tls_key_path,
        &mut changed,
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
