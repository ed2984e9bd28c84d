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
//! Four rules keep a misbehaving collector from hurting the others:
//!
//! * A worker permit (`parallelism`) is held only while a collector really
//!   runs, and for at most `collector_timeout`: a run that overruns it is
//!   abandoned by its scrape, and its thread stops counting against
//!   `parallelism` although it goes on. `collector_timeout` is the
//!   collector's own run time; waiting for a permit does not count (that
//!   wait is bounded by the other collectors' timeouts).
//! * A collector never runs twice at once. A scrape that finds it running
//!   for another scrape waits for that run, holding no permit. If that run
//!   has overrun its timeout (it is stuck, say in a read that never
//!   returns), the scrape fails the collector at once instead: a stuck
//!   collector costs one thread, not one per scrape, and every scrape
//!   reports it failed until it returns.
//! * Concurrent scrapes of the same selection share one collection
//!   (single-flight), which runs as its own task so that a client hanging up
//!   does not cancel work another client waits for.
//! * With `cache_ttl`, a result is reused for that long, for at most
//!   [`CACHE_MAX_ENTRIES`] selections and [`CACHE_MAX_BYTES`] bytes; an
//!   expired result is dropped when it expires, whether or not another
//!   request comes. Anyone can ask for any of the 2^n `collect[]`/`exclude[]`
//!   selections, so an unbounded cache was unbounded memory.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use herakles_core::{Collector, Desc, MetricSink, Paths, ScrapeContext};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant as TokioInstant;

use super::health::{Health, Outcome};

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
const CACHE_ENTRIES: Desc = Desc::gauge(
    "herakles_scrape_cache_entries",
    "Scrape results kept for cache_ttl, one per collect[]/exclude[] selection.",
);
const CACHE_EVICTIONS: Desc = Desc::counter(
    "herakles_scrape_cache_evictions_total",
    "Scrape results dropped from the cache: expired (older than cache_ttl) or limit \
     (the cache was full, or the result alone was larger than the cache).",
);

/// At most this many selections are cached. A Prometheus server asks for
/// one or two; more means someone is walking through selections.
pub const CACHE_MAX_ENTRIES: usize = 16;

/// At most this many bytes of cached bodies (text, and gzip once a client
/// asked for it).
pub const CACHE_MAX_BYTES: usize = 32 << 20;

/// Renders metrics about the exporter itself (its HTTP listener, say) into
/// every scrape. Shared, so that a reload's new scraper renders the same
/// sources ([`Scraper::meta_sources`]).
pub type MetaSource = Arc<dyn Fn(&mut MetricSink) + Send + Sync>;

/// A collector the coordinator can run.
struct Slot {
    name: &'static str,
    collector: Arc<dyn Collector>,
    /// Whether a run is in progress; see the module docs. A watch channel,
    /// so that scrapes waiting for the collector see every change.
    phase: Arc<watch::Sender<Phase>>,
    /// Numbers runs, so that a late change by an old run is told apart.
    runs: AtomicU64,
    parse_errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Claimed by run `run`: waiting for a worker permit, or running.
    Busy {
        run: u64,
    },
    /// Run `run`, started at `since`, overran the timeout and its thread is
    /// still inside the collector.
    Stuck {
        run: u64,
        since: Instant,
    },
}

impl Slot {
    /// Claim the collector for one run, waiting (with no permit) while
    /// another scrape's run is in progress. Fails at once, with how long it
    /// has been running, when that run is stuck.
    async fn claim(&self) -> Result<Claim, Duration> {
        let mut changes = self.phase.subscribe();
        loop {
            let mut outcome = None;
            self.phase.send_if_modified(|phase| match *phase {
                Phase::Idle => {
                    let run = self.runs.fetch_add(1, Ordering::Relaxed);
                    *phase = Phase::Busy { run };
                    outcome = Some(Ok(run));
                    true
                }
                Phase::Busy { .. } => false,
                Phase::Stuck { since, .. } => {
                    outcome = Some(Err(since.elapsed()));
                    false
                }
            });
            match outcome {
                Some(Ok(run)) => {
                    return Ok(Claim {
                        phase: self.phase.clone(),
                        run,
                    })
                }
                Some(Err(stuck_for)) => return Err(stuck_for),
                // The slot owns a sender, so the channel never closes.
                None => changes.changed().await.unwrap_or_default(),
            }
        }
    }
}

/// One run's claim on its collector. It travels with the run onto its
/// thread and frees the collector when the run returns, however late.
struct Claim {
    phase: Arc<watch::Sender<Phase>>,
    run: u64,
}

impl Claim {
    /// Mark the run stuck: it overran the timeout and has not returned.
    fn mark_stuck(phase: &watch::Sender<Phase>, run: u64, since: Instant) {
        phase.send_if_modified(|p| {
            let ours = *p == Phase::Busy { run };
            if ours {
                *p = Phase::Stuck { run, since };
            }
            ours
        });
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let run = self.run;
        self.phase.send_if_modified(|p| {
            let ours =
                matches!(*p, Phase::Busy { run: r } | Phase::Stuck { run: r, .. } if r == run);
            if ours {
                *p = Phase::Idle;
            }
            ours
        });
    }
}

/// Which collectors a scrape runs: indices into the slot list, sorted.
pub type Selection = Vec<usize>;

/// The result of one collection, shared by every client that asked for it.
pub struct ScrapeOutput {
    pub text: Bytes,
    gzip: OnceLock<Bytes>,
    pub finished: SystemTime,
    pub duration: Duration,
    pub outcomes: Vec<Outcome>,
}

impl ScrapeOutput {
    /// Bytes held: the text, and the gzip body once computed.
    fn size(&self) -> usize {
        self.text.len() + self.gzip.get().map_or(0, |g| g.len())
    }

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
    cache: Cache,
}

/// Scrape results for `cache_ttl`, bounded; see the module docs.
#[derive(Default)]
struct Cache {
    entries: HashMap<Selection, Cached>,
    evicted_expired: u64,
    evicted_limit: u64,
    /// A task is dropping entries as they expire.
    sweeping: bool,
}

struct Cached {
    out: Arc<ScrapeOutput>,
    /// tokio's clock, which the sweeper sleeps on (and tests can pause).
    expires: TokioInstant,
}

impl Cache {
    fn get(&mut self, sel: &Selection, now: TokioInstant) -> Option<Arc<ScrapeOutput>> {
        let cached = self.entries.get(sel)?;
        if cached.expires > now {
            return Some(cached.out.clone());
        }
        self.entries.remove(sel);
        self.evicted_expired += 1;
        None
    }

    /// Keep `out` until `expires`, first dropping what expired and then, to
    /// stay within the bounds, what expires soonest.
    fn insert(
        &mut self,
        sel: Selection,
        out: Arc<ScrapeOutput>,
        now: TokioInstant,
        expires: TokioInstant,
    ) {
        self.remove_expired(now);
        self.entries.remove(&sel);
        let size = out.size();
        if size > CACHE_MAX_BYTES {
            self.evicted_limit += 1;
            return;
        }
        while self.entries.len() >= CACHE_MAX_ENTRIES || self.bytes() + size > CACHE_MAX_BYTES {
            let Some(soonest) = self
                .entries
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(sel, _)| sel.clone())
            else {
                break;
            };
            self.entries.remove(&soonest);
            self.evicted_limit += 1;
        }
        self.entries.insert(sel, Cached { out, expires });
    }

    fn remove_expired(&mut self, now: TokioInstant) {
        let before = self.entries.len();
        self.entries.retain(|_, c| c.expires > now);
        self.evicted_expired += (before - self.entries.len()) as u64;
    }

    fn bytes(&self) -> usize {
        self.entries.values().map(|c| c.out.size()).sum()
    }

    fn next_expiry(&self) -> Option<TokioInstant> {
        self.entries.values().map(|c| c.expires).min()
    }

    fn render(&self, out: &mut MetricSink) {
        out.single(&CACHE_ENTRIES, self.entries.len() as f64);
        let mut evictions = out.family(&CACHE_EVICTIONS);
        evictions.sample(&[("reason", "expired")], self.evicted_expired as f64);
        evictions.sample(&[("reason", "limit")], self.evicted_limit as f64);
    }
}

/// Drop cache entries as they expire, so that selections nobody asks for
/// again do not stay in memory; ends when the cache is empty (the next
/// insert starts another).
async fn sweep(scraper: Weak<Scraper>) {
    loop {
        let next = {
            let Some(scraper) = scraper.upgrade() else {
                return;
            };
            let mut st = scraper.state();
            st.cache.remove_expired(TokioInstant::now());
            match st.cache.next_expiry() {
                Some(t) => t,
                None => {
                    st.cache.sweeping = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(next).await;
    }
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
    /// Whether the exporter's own metrics go out (`enable_telemetry`): its
    /// `process_*`, the cache's and the meta sources' (the HTTP server's).
    exporter_metrics: bool,
    meta_sources: Mutex<Vec<MetaSource>>,
}

impl Scraper {
    pub fn new(
        collectors: Vec<(&'static str, Box<dyn Collector>)>,
        paths: Paths,
        timeout: Duration,
        cache_ttl: Duration,
        parallelism: usize,
        health: Arc<Health>,
        exporter_metrics: bool,
    ) -> Arc<Scraper> {
        let slots = collectors
            .into_iter()
            .map(|(name, c)| Slot {
                name,
                collector: Arc::from(c),
                phase: Arc::new(watch::Sender::new(Phase::Idle)),
                runs: AtomicU64::new(0),
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
            exporter_metrics,
            meta_sources: Mutex::default(),
        })
    }

    /// Add `source`'s metrics to every scrape from now on.
    pub fn add_meta_source(&self, source: MetaSource) {
        self.meta_sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(source);
    }

    /// Every source added, to hand to a scraper that replaces this one.
    pub fn meta_sources(&self) -> Vec<MetaSource> {
        self.meta_sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
            let mut st = self.state();
            if !self.cache_ttl.is_zero() {
                if let Some(out) = st.cache.get(&sel, TokioInstant::now()) {
                    return out;
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

    fn finish(self: &Arc<Self>, key: Selection, out: &Arc<ScrapeOutput>) {
        self.health
            .record(out.finished, out.duration, &out.outcomes);
        let mut st = self.state();
        st.inflight.remove(&key);
        if self.cache_ttl.is_zero() {
            return;
        }
        let now = TokioInstant::now();
        st.cache.insert(key, out.clone(), now, now + self.cache_ttl);
        if !st.cache.sweeping {
            st.cache.sweeping = true;
            tokio::spawn(sweep(Arc::downgrade(self)));
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
        if self.exporter_metrics {
            if !self.cache_ttl.is_zero() {
                self.state().cache.render(&mut meta);
            }
            for source in self
                .meta_sources
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                source(&mut meta);
            }
        }

        let mut text = String::with_capacity(64 * 1024);
        merged.encode(&mut text);
        meta.encode(&mut text);
        text.push_str(&self.build_info);
        if self.exporter_metrics {
            text.push_str(&self_metrics());
        }
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
        let (result, duration) = self.run_slot(slot, ctx).await;
        let (sink, error) = match result {
            Ok(sink) => (Some(sink), None),
            Err(e) => (None, Some(e)),
        };
        if let Some(e) = &error {
            tracing::warn!(collector = slot.name, error = %e, "collector failed");
        }
        let outcome = Outcome {
            name: slot.name,
            duration,
            error,
        };
        (sink, outcome)
    }

    /// Claim the collector, take a worker permit, and run it on the
    /// blocking pool for at most the timeout. The duration is the
    /// collector's own run time (the time waited, for a timeout).
    async fn run_slot(
        &self,
        slot: &Slot,
        ctx: Arc<ScrapeContext>,
    ) -> (Result<MetricSink, String>, Duration) {
        let claim = match slot.claim().await {
            Ok(claim) => claim,
            Err(stuck_for) => {
                return (
                    Err(format!(
                        "still stuck in a run that started {:.1}s ago",
                        stuck_for.as_secs_f64()
                    )),
                    Duration::ZERO,
                )
            }
        };
        let (phase, run) = (claim.phase.clone(), claim.run);
        // The semaphore is never closed. Dropped when this returns, so a run
        // that overruns the timeout stops holding it.
        let _worker = self.workers.acquire().await.ok();
        let started = Instant::now();
        let collector = slot.collector.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _claim = claim;
            let ran = Instant::now();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut sink = MetricSink::new();
                collector.collect(&ctx, &mut sink).map(|()| sink)
            }));
            (result, ran.elapsed())
        });
        match tokio::time::timeout(self.timeout, task).await {
            Err(_) => {
                Claim::mark_stuck(&phase, run, started);
                let e = format!("timed out after {:.1}s", self.timeout.as_secs_f64());
                (Err(e), started.elapsed())
            }
            Ok(Err(join)) => (
                Err(format!("collector task failed: {join}")),
                started.elapsed(),
            ),
            Ok(Ok((result, ran))) => {
                let result = match result {
                    Err(panic) => Err(format!("panicked: {}", panic_message(&*panic))),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(sink)) => Ok(sink),
                };
                (result, ran)
            }
        }
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
/// Prometheus client exposes.
fn self_metrics() -> String {
    let mut out = MetricSink::new();
    super::self_metrics::render(&mut out);
    out.to_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(bytes: usize) -> Arc<ScrapeOutput> {
        Arc::new(ScrapeOutput {
            text: Bytes::from(vec![b'x'; bytes]),
            gzip: OnceLock::new(),
            finished: SystemTime::now(),
            duration: Duration::ZERO,
            outcomes: Vec::new(),
        })
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_cache_drops_what_expires_soonest_to_stay_within_its_entries() {
        let mut cache = Cache::default();
        let now = TokioInstant::now();
        let n = CACHE_MAX_ENTRIES + 5;
        for i in 0..n {
            cache.insert(vec![i], output(10), now, now + secs(60 + i as u64));
        }
        assert_eq!(cache.entries.len(), CACHE_MAX_ENTRIES);
        assert_eq!(cache.evicted_limit, 5);
        assert!((0..5).all(|i| cache.get(&vec![i], now).is_none()));
        assert!((5..n).all(|i| cache.get(&vec![i], now).is_some()));
    }

    #[test]
    fn the_cache_stays_within_its_bytes_and_refuses_what_alone_exceeds_them() {
        let mut cache = Cache::default();
        let now = TokioInstant::now();
        let third = CACHE_MAX_BYTES / 3 + 1;
        for i in 0..3 {
            cache.insert(vec![i], output(third), now, now + secs(60 + i as u64));
        }
        assert_eq!(cache.entries.len(), 2);
        assert!(cache.get(&vec![0], now).is_none());
        assert!(cache.bytes() <= CACHE_MAX_BYTES);
        cache.insert(vec![9], output(CACHE_MAX_BYTES + 1), now, now + secs(60));
        assert!(cache.get(&vec![9], now).is_none());
        assert_eq!(cache.entries.len(), 2);
        assert_eq!(cache.evicted_limit, 2);
    }

    #[test]
    fn the_cache_neither_serves_nor_keeps_expired_results() {
        let mut cache = Cache::default();
        let now = TokioInstant::now();
        cache.insert(vec![0], output(10), now, now + secs(1));
        cache.insert(vec![1], output(10), now, now + secs(5));
        assert!(cache.get(&vec![0], now + secs(2)).is_none());
        assert_eq!(cache.evicted_expired, 1);
        // Inserting drops the expired ones first, and replaces its own key.
        cache.insert(vec![2], output(10), now + secs(6), now + secs(66));
        cache.insert(vec![2], output(20), now + secs(6), now + secs(66));
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.evicted_expired, 2);
        assert_eq!(cache.get(&vec![2], now + secs(7)).unwrap().text.len(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_results_are_dropped_without_further_requests() {
        let scraper = Scraper::new(
            Vec::new(),
            Paths::default(),
            secs(8),
            secs(60),
            2,
            Arc::new(Health::new(&[])),
            true,
        );
        scraper.finish(vec![0], &output(10));
        tokio::time::sleep(secs(30)).await;
        scraper.finish(vec![1], &output(10));
        tokio::time::sleep(secs(31)).await;
        assert_eq!(scraper.state().cache.entries.len(), 1, "the first expired");
        tokio::time::sleep(secs(30)).await;
        let st = scraper.state();
        assert!(st.cache.entries.is_empty());
        assert_eq!(st.cache.evicted_expired, 2);
        assert!(!st.cache.sweeping, "the sweeper ends with the cache empty");
    }
}
