//! The scrape coordinator: one path from "a scrape was asked for" to the
//! exposition text, shared by `/metrics`, `?collect[]=` and the `test`
//! command.
//!
//! For each scrape it runs the selected collectors concurrently, each on the
//! bounded blocking pool and under `collector_timeout`, inside
//! `catch_unwind`. A collector that errors, panics or hangs loses its own
//! series for that scrape and reports `herakles_scrape_collector_success 0`;
//! everyone else's series still go out.
//!
//! Three rules keep a misbehaving collector from hurting the exporter:
//!
//! * Worker permits are held by the *waiting* side, so a hung collector's
//!   thread stops counting against `parallelism` once its scrape gave up.
//! * A collector never runs twice at once: the next scrape waits (within its
//!   own timeout) for the previous run to finish, so a collector that hangs
//!   forever occupies one thread, not one per scrape.
//! * Concurrent scrapes of the same selection share one collection
//!   (single-flight), which runs as its own task so that a client hanging up
//!   does not cancel work another client waits for.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use herakles_core::{Collector, Desc, MetricSink, Paths, ScrapeContext};
use tokio::sync::Semaphore;

use crate::health::Health;

const DURATION: Desc = Desc::gauge(
    "herakles_scrape_collector_duration_seconds",
    "Time the collector took in this scrape.",
);
const SUCCESS: Desc = Desc::gauge(
    "herakles_scrape_collector_success",
    "1 when the collector succeeded in this scrape; 0 when it failed, panicked or timed out.",
);
const PARSE_ERRORS: Desc = Desc::counter(
    "herakles_collector_parse_errors_total",
    "Input lines or files the collector skipped because it could not parse them.",
);
const BUILD_INFO: Desc = Desc::gauge(
    "herakles_exporter_build_info",
    "Version information of the exporter; the value is always 1.",
);

/// A collector the coordinator can run.
struct Slot {
    name: &'static str,
    collector: Arc<dyn Collector>,
    /// Held while the collector runs; see the module docs.
    running: Arc<tokio::sync::Mutex<()>>,
    parse_errors: AtomicU64,
}

/// Which collectors a scrape runs: indices into the slot list, sorted.
pub type Selection = Vec<usize>;

/// How one collector fared in one scrape.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    pub duration: Duration,
    pub error: Option<String>,
}

/// The result of one collection, shared by every client that asked for it.
pub struct ScrapeOutput {
    pub text: Bytes,
    gzip: OnceLock<Bytes>,
    pub finished: SystemTime,
    pub duration: Duration,
    pub outcomes: Vec<Outcome>,
}

impl ScrapeOutput {
    /// The gzip-compressed body, compressed once however many clients want it.
    pub fn gzip(&self) -> Bytes {
        self.gzip
            .get_or_init(|| {
                use std::io::Write;
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.text.len() / 6),
                    flate2::Compression::fast(),
                );
                // Writing to a Vec cannot fail.
                let _ = enc.write_all(&self.text);
                Bytes::from(enc.finish().unwrap_or_default())
            })
            .clone()
    }
}

type SharedScrape = Shared<BoxFuture<'static, Arc<ScrapeOutput>>>;

#[derive(Default)]
struct State {
    inflight: HashMap<Selection, SharedScrape>,
    cache: HashMap<Selection, Arc<ScrapeOutput>>,
}

/// Coordinates scrapes; see the module docs.
pub struct Scraper {
    slots: Vec<Slot>,
    paths: Arc<Paths>,
    timeout: Duration,
    cache_ttl: Duration,
    workers: Arc<Semaphore>,
    state: Mutex<State>,
    health: Arc<Health>,
    build_info: String,
}

impl Scraper {
    pub fn new(
        collectors: Vec<(&'static str, Box<dyn Collector>)>,
        paths: Paths,
        timeout: Duration,
        cache_ttl: Duration,
        parallelism: usize,
        health: Arc<Health>,
    ) -> Arc<Scraper> {
        let slots = collectors
            .into_iter()
            .map(|(name, c)| Slot {
                name,
                collector: Arc::from(c),
                running: Arc::default(),
                parse_errors: AtomicU64::new(0),
            })
            .collect();
        let mut build = MetricSink::new();
        build.family(&BUILD_INFO).sample(
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", env!("BUILD_GIT_REVISION")),
                ("rustc_version", env!("BUILD_RUSTC_VERSION")),
            ],
            1.0,
        );
        Arc::new(Scraper {
            slots,
            paths: Arc::new(paths),
            timeout,
            cache_ttl,
            workers: Arc::new(Semaphore::new(parallelism.max(1))),
            state: Mutex::default(),
            health,
            build_info: build.to_text(),
        })
    }

    /// Names of the enabled collectors, in run order.
    pub fn names(&self) -> Vec<&'static str> {
        self.slots.iter().map(|s| s.name).collect()
    }

    /// Every enabled collector.
    pub fn all(&self) -> Selection {
        (0..self.slots.len()).collect()
    }

    /// The selection for `?collect[]=` / `?exclude[]=`, node_exporter style:
    /// both at once, or a name that is not an enabled collector, is an error.
    pub fn select(&self, collect: &[String], exclude: &[String]) -> Result<Selection, String> {
        if !collect.is_empty() && !exclude.is_empty() {
            return Err("collect[] and exclude[] cannot be used together".into());
        }
        let index = |name: &str| -> Result<usize, String> {
            self.slots
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| {
                    if herakles_core::registrations()
                        .iter()
                        .any(|r| r.name == name)
                    {
                        format!("collector \"{name}\" is not enabled")
                    } else {
                        crate::config::unknown_collector(name)
                    }
                })
        };
        let mut sel: Selection = if collect.is_empty() {
            let excluded = exclude
                .iter()
                .map(|n| index(n))
                .collect::<Result<Vec<_>, _>>()?;
            self.all()
                .into_iter()
                .filter(|i| !excluded.contains(i))
                .collect()
        } else {
            collect.iter().map(|n| index(n)).collect::<Result<_, _>>()?
        };
        sel.sort_unstable();
        sel.dedup();
        Ok(sel)
    }

    /// Collect (or join an in-flight collection, or serve the cache).
    pub async fn scrape(self: &Arc<Self>, sel: Selection) -> Arc<ScrapeOutput> {
        let fut = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !self.cache_ttl.is_zero() {
                if let Some(c) = st.cache.get(&sel) {
                    if c.finished.elapsed().unwrap_or(Duration::MAX) < self.cache_ttl {
                        return c.clone();
                    }
                }
            }
            match st.inflight.get(&sel) {
                Some(f) => f.clone(),
                None => {
                    let me = Arc::clone(self);
                    let key = sel.clone();
                    let task = tokio::spawn(async move {
                        let out = Arc::new(me.collect(&key).await);
                        me.finish(key, &out);
                        out
                    });
                    let shared = async move {
                        task.await
                            .expect("scrape task never panics: collector panics are caught")
                    }
                    .boxed()
                    .shared();
                    st.inflight.insert(sel, shared.clone());
                    shared
                }
            }
        };
        fut.await
    }

    fn finish(&self, key: Selection, out: &Arc<ScrapeOutput>) {
        self.health.record(out);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.inflight.remove(&key);
        if !self.cache_ttl.is_zero() {
            st.cache.insert(key, out.clone());
        }
    }

    async fn collect(self: &Arc<Self>, sel: &Selection) -> ScrapeOutput {
        let started = Instant::now();
        let ctx = Arc::new(ScrapeContext::new(self.paths.clone()));
        let runs = sel.iter().map(|&i| self.run_one(i, ctx.clone()));
        let results = futures::future::join_all(runs).await;

        let mut merged = MetricSink::new();
        let mut meta = MetricSink::new();
        let mut outcomes = Vec::with_capacity(results.len());
        for (&i, (sink, outcome)) in sel.iter().zip(results) {
            let slot = &self.slots[i];
            if let Some(sink) = sink {
                slot.parse_errors
                    .fetch_add(sink.parse_errors(), Ordering::Relaxed);
                for name in merged.merge(sink) {
                    tracing::error!(
                        collector = slot.name,
                        family = name,
                        "metric family emitted by two collectors with different types; dropped"
                    );
                }
            }
            let labels = [("collector", slot.name)];
            meta.family(&DURATION)
                .sample(&labels, outcome.duration.as_secs_f64());
            meta.family(&SUCCESS)
                .sample(&labels, if outcome.error.is_none() { 1.0 } else { 0.0 });
            meta.family(&PARSE_ERRORS)
                .sample(&labels, slot.parse_errors.load(Ordering::Relaxed) as f64);
            outcomes.push(outcome);
        }

        let mut text = String::with_capacity(64 * 1024);
        merged.encode(&mut text);
        meta.encode(&mut text);
        text.push_str(&self.build_info);
        text.push_str(&self_metrics());
        ScrapeOutput {
            text: Bytes::from(text),
            gzip: OnceLock::new(),
            finished: SystemTime::now(),
            duration: started.elapsed(),
            outcomes,
        }
    }

    async fn run_one(
        self: &Arc<Self>,
        i: usize,
        ctx: Arc<ScrapeContext>,
    ) -> (Option<MetricSink>, Outcome) {
        let slot = &self.slots[i];
        let started = Instant::now();
        let work = async {
            let _permit = self.workers.acquire().await.ok();
            let running = slot.running.clone().lock_owned().await;
            let collector = slot.collector.clone();
            tokio::task::spawn_blocking(move || {
                let _running = running;
                let ran = Instant::now();
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    let mut sink = MetricSink::new();
                    collector.collect(&ctx, &mut sink).map(|()| sink)
                }));
                (result, ran.elapsed())
            })
            .await
        };
        // The reported duration is the collector's own run time, not the
        // time it queued for a worker; a timeout reports the time waited.
        let mut duration = None;
        let (sink, error) = match tokio::time::timeout(self.timeout, work).await {
            Err(_) => (
                None,
                Some(format!(
                    "timed out after {:.1}s",
                    self.timeout.as_secs_f64()
                )),
            ),
            Ok(Err(join)) => (None, Some(format!("collector task failed: {join}"))),
            Ok(Ok((result, ran))) => {
                duration = Some(ran);
                match result {
                    Err(panic) => (None, Some(format!("panicked: {}", panic_message(&*panic)))),
                    Ok(Err(e)) => (None, Some(e.to_string())),
                    Ok(Ok(sink)) => (Some(sink), None),
                }
            }
        };
        if let Some(e) = &error {
            tracing::warn!(collector = slot.name, error = %e, "collector failed");
        }
        let outcome = Outcome {
            name: slot.name,
            duration: duration.unwrap_or_else(|| started.elapsed()),
            error,
        };
        (sink, outcome)
    }

    /// Release every collector's long-lived resources.
    pub fn shutdown(&self) {
        for slot in &self.slots {
            let c = slot.collector.clone();
            if std::panic::catch_unwind(AssertUnwindSafe(|| c.shutdown())).is_err() {
                tracing::error!(collector = slot.name, "collector panicked during shutdown");
            }
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// The exporter's own process metrics (`process_*`), the same families every
/// Prometheus client exposes, from the `prometheus` crate's process
/// collector.
fn self_metrics() -> String {
    use prometheus::Encoder;
    static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(|| {
        let r = prometheus::Registry::new();
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = r.register(Box::new(pc)) {
            tracing::warn!(error = %e, "process self-metrics unavailable");
        }
        r
    });
    let mut buf = Vec::new();
    match prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf) {
        Ok(()) => String::from_utf8(buf).unwrap_or_default(),
        Err(_) => String::new(),
    }
}
