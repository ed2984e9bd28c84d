//! Collector isolation, single-flight, cache and request limits, tested
//! in-process with collectors that exist only in this test binary: one that
//! panics, one that hangs past the timeout, two that hang until the test
//! ends, one that counts its calls, one that records overlapping runs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, NoConfig, Registration,
    Result, ScrapeContext,
};
use herakles_node_exporter::config::Config;
use herakles_node_exporter::exporter::{build_collectors, Exporter};

struct Panicky;
impl Collector for Panicky {
    fn collect(&self, _: &ScrapeContext, _: &mut MetricSink) -> Result<()> {
        panic!("deliberate test panic");
    }
}
impl BuildCollector for Panicky {
    type Config = NoConfig;
    fn build(_: NoConfig, _: &BuildContext) -> Result<Self> {
        Ok(Panicky)
    }
}
inventory::submit! { Registration::new::<Panicky>("test_panicky", "panics", false, "tests") }

struct Sleepy;
impl Collector for Sleepy {
    fn collect(&self, _: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        std::thread::sleep(Duration::from_secs(3));
        out.single(&Desc::gauge("test_sleepy_done", "never seen"), 1.0);
        Ok(())
    }
}
impl BuildCollector for Sleepy {
    type Config = NoConfig;
    fn build(_: NoConfig, _: &BuildContext) -> Result<Self> {
        Ok(Sleepy)
    }
}
inventory::submit! { Registration::new::<Sleepy>("test_sleepy", "hangs", false, "tests") }

static COUNTED_CALLS: AtomicUsize = AtomicUsize::new(0);
const CALLS: Desc = Desc::counter("test_counted_calls_total", "Calls so far.");

/// Takes 300 ms and counts its calls, to observe sharing and caching.
struct Counted;
impl Collector for Counted {
    fn collect(&self, _: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let n = COUNTED_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        std::thread::sleep(Duration::from_millis(300));
        out.single(&CALLS, n as f64);
        Ok(())
    }
}
impl BuildCollector for Counted {
    type Config = NoConfig;
    fn build(_: NoConfig, _: &BuildContext) -> Result<Self> {
        Ok(Counted)
    }
}
inventory::submit! { Registration::new::<Counted>("test_counted", "counts calls", false, "tests") }

/// Blocks its collector's thread until the test that uses it ends (a read
/// that never returns, as far as the exporter can tell).
static HANG: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

fn hang() {
    let (released, cv) = &HANG;
    let mut released = released.lock().unwrap();
    while !*released {
        released = cv.wait(released).unwrap();
    }
}

/// Lets every hung collector return when dropped, so that the runtime
/// (which waits for its blocking threads) can stop.
struct ReleaseHung;
impl Drop for ReleaseHung {
    fn drop(&mut self) {
        *HANG.0.lock().unwrap() = true;
        HANG.1.notify_all();
    }
}

/// Hangs until the test ends; two of them (`ID` 0 and 1) are registered.
struct Hung<const ID: u8>;
impl<const ID: u8> Collector for Hung<ID> {
    fn collect(&self, _: &ScrapeContext, _: &mut MetricSink) -> Result<()> {
        hang();
        Ok(())
    }
}
impl<const ID: u8> BuildCollector for Hung<ID> {
    type Config = NoConfig;
    fn build(_: NoConfig, _: &BuildContext) -> Result<Self> {
        Ok(Hung)
    }
}
inventory::submit! { Registration::new::<Hung<0>>("test_hung_a", "hangs until the test ends", false, "tests") }
inventory::submit! { Registration::new::<Hung<1>>("test_hung_b", "hangs until the test ends", false, "tests") }

/// Sorts after the hung collectors, so it queues behind them for a worker.
struct Steady;
impl Collector for Steady {
    fn collect(&self, _: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        out.single(&Desc::gauge("test_steady_up", "Always 1."), 1.0);
        Ok(())
    }
}
impl BuildCollector for Steady {
    type Config = NoConfig;
    fn build(_: NoConfig, _: &BuildContext) -> Result<Self> {
        Ok(Steady)
    }
}
inventory::submit! { Registration::new::<Steady>("test_steady", "always succeeds", false, "tests") }

static OVERLAP_NOW: AtomicUsize = AtomicUsize::new(0);
static OVERLAP_MAX: AtomicUsize = AtomicUsize::new(0);

/// Takes 100 ms and records how many of its runs overlapped.
struct Overlap;
impl Collector for Overlap {
    fn collect(&self, _: &ScrapeContext, _: &mut MetricSink) -> Result<()> {
        let now = OVERLAP_NOW.fetch_add(1, Ordering::SeqCst) + 1;
        OVERLAP_MAX.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        OVERLAP_NOW.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}
impl BuildCollector for Overlap {
    type Config = NoConfig;
    fn build(_: NoConfig, _: &BuildContext) -> Result<Self> {
        Ok(Overlap)
    }
}
inventory::submit! { Registration::new::<Overlap>("test_overlap", "records overlapping runs", false, "tests") }

/// `config` with exactly the collectors `names` enabled.
fn only(mut config: Config, names: &[&str]) -> Config {
    for r in herakles_core::registrations() {
        config
            .collectors
            .set_enabled(r.name, names.contains(&r.name))
            .unwrap();
    }
    config
}

/// Serve `config` in-process on a loopback port; returns the address and a
/// guard that stops the server when dropped.
fn serve(mut config: Config, enable: &[&str]) -> (std::net::SocketAddr, tokio::runtime::Runtime) {
    config.bind = "127.0.0.1".into();
    config.port = 0;
    for name in enable {
        config.collectors.set_enabled(name, true).unwrap();
    }
    let collectors = build_collectors(&config).unwrap();
    let exporter = Exporter::new(config, collectors);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listeners = herakles_node_exporter::serve::sockets::listen(&exporter.config).unwrap();
    let addr = listeners[0].local_addr().unwrap();
    rt.spawn(async move {
        let _ = exporter.serve(listeners, std::future::pending()).await;
    });
    (addr, rt)
}

fn success(text: &str, collector: &str) -> Option<f64> {
    common::value(
        &common::parse(text),
        "herakles_scrape_collector_success",
        &[("collector", collector)],
    )
}

#[test]
fn panicking_collector_fails_alone() {
    let (addr, _rt) = serve(Config::default(), &["test_panicky"]);
    for _ in 0..2 {
        let resp = common::get(addr, "/metrics");
        assert_eq!(resp.status, 200);
        let text = resp.text();
        assert_eq!(success(&text, "test_panicky"), Some(0.0));
        assert_eq!(success(&text, "memory"), Some(1.0));
        assert!(text.contains("herakles_system_memory_total_bytes "));
    }
    let health = common::get(addr, "/health").text();
    assert!(health.contains("deliberate test panic"), "{health}");
}

#[test]
fn hanging_collector_times_out_without_piling_up() {
    let config = Config {
        collector_timeout: 0.5,
        ..Config::default()
    };
    let (addr, _rt) = serve(config, &["test_sleepy"]);
    for _ in 0..3 {
        let t = Instant::now();
        let resp = common::get(addr, "/metrics");
        let took = t.elapsed();
        assert_eq!(resp.status, 200);
        let text = resp.text();
        assert_eq!(success(&text, "test_sleepy"), Some(0.0));
        assert_eq!(success(&text, "loadavg"), Some(1.0));
        assert!(!text.contains("test_sleepy_done"));
        assert!(took < Duration::from_secs(2), "scrape took {took:?}");
    }
}

#[test]
fn concurrent_scrapes_share_one_collection_and_cache_serves_repeats() {
    let config = Config {
        cache_ttl: 60,
        ..Config::default()
    };
    let (addr, _rt) = serve(config, &["test_counted"]);
    let before = COUNTED_CALLS.load(Ordering::SeqCst);
    let scrapes: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || common::get(addr, "/metrics?collect[]=test_counted")))
        .collect();
    for s in scrapes {
        assert_eq!(s.join().unwrap().status, 200);
    }
    assert_eq!(
        COUNTED_CALLS.load(Ordering::SeqCst) - before,
        1,
        "single-flight"
    );
    // Within cache_ttl a later scrape is served from the cache.
    common::get(addr, "/metrics?collect[]=test_counted");
    assert_eq!(
        COUNTED_CALLS.load(Ordering::SeqCst) - before,
        1,
        "cache_ttl"
    );
    // A different selection is a different collection.
    let text = common::get(addr, "/metrics").text();
    assert!(text.contains("test_counted_calls_total"));
    assert_eq!(COUNTED_CALLS.load(Ordering::SeqCst) - before, 2);
}

#[test]
fn requests_past_max_requests_get_503() {
    let config = Config {
        max_requests: 1,
        ..Config::default()
    };
    let (addr, _rt) = serve(config, &["test_counted"]);
    let slow = std::thread::spawn(move || common::get(addr, "/metrics?collect[]=test_counted"));
    std::thread::sleep(Duration::from_millis(100));
    let second = common::get(addr, "/metrics?collect[]=loadavg");
    assert_eq!(second.status, 503);
    assert_eq!(slow.join().unwrap().status, 200);
    assert_eq!(common::get(addr, "/metrics?collect[]=loadavg").status, 200);
}

#[test]
fn hostile_label_values_stay_valid_exposition() {
    struct Hostile;
    impl Collector for Hostile {
        fn collect(&self, _: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
            out.family(&Desc::gauge(
                "test_hostile",
                "Labels a process could choose.",
            ))
            .sample(&[("name", "a\"b\\c\nd}{=,\u{fffd}")], 1.0);
            Ok(())
        }
    }
    let collectors: Vec<(&'static str, Box<dyn Collector>)> = vec![("hostile", Box::new(Hostile))];
    let exporter = Exporter::new(Config::default(), collectors);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scraper = exporter.scraper.clone();
    let out = rt.block_on(async move { scraper.scrape(scraper.all()).await });
    let text = String::from_utf8(out.text.to_vec()).unwrap();
    let complaints = common::promtool_check(&text);
    assert!(complaints.trim().is_empty(), "{complaints}\n{text}");
    let parsed = herakles_core::testing::parse_text(&text);
    assert_eq!(
        parsed.value("test_hostile", &[("name", "a\"b\\c\nd}{=,\u{fffd}")]),
        Some(1.0)
    );
}

#[test]
fn hung_collectors_never_hold_a_worker_another_collector_needs() {
    // Two collectors stuck for good and two workers: each hung run holds a
    // worker only until its timeout, and once stuck, later scrapes fail it
    // at once instead of queueing a worker behind it.
    let config = Config {
        collector_timeout: 1.0,
        parallelism: 2,
        ..Config::default()
    };
    let config = only(config, &["test_hung_a", "test_hung_b", "test_steady"]);
    let (addr, _rt) = serve(config, &[]);
    let _release = ReleaseHung;
    for scrape in 1..=4 {
        let t = Instant::now();
        let resp = common::get(addr, "/metrics");
        let took = t.elapsed();
        assert_eq!(resp.status, 200);
        let text = resp.text();
        assert_eq!(success(&text, "test_steady"), Some(1.0), "scrape {scrape}");
        assert!(text.contains("test_steady_up 1"), "scrape {scrape}");
        assert_eq!(success(&text, "test_hung_a"), Some(0.0), "scrape {scrape}");
        assert_eq!(success(&text, "test_hung_b"), Some(0.0), "scrape {scrape}");
        // About one timeout (the first scrape waits it out once); a bound,
        // not a measurement: queueing behind stuck runs would be 2 s more.
        assert!(
            took < Duration::from_secs(3),
            "scrape {scrape} took {took:?}"
        );
    }
    let health: serde_json::Value =
        serde_json::from_slice(&common::get(addr, "/health").body).unwrap();
    let why = health["collectors"]["test_hung_a"]["last_error"]
        .as_str()
        .unwrap();
    assert!(why.contains("still stuck in a run that started"), "{why}");
}

#[test]
fn a_collector_never_runs_twice_at_once() {
    // Scrapes of different selections overlap on test_overlap: the later
    // one waits for the run in progress (holding no worker) and then runs
    // it, rather than running it alongside or failing it.
    let config = Config {
        collector_timeout: 5.0,
        parallelism: 4,
        ..Config::default()
    };
    let config = only(config, &["test_overlap", "loadavg", "host"]);
    let (addr, _rt) = serve(config, &[]);
    let paths: [&'static str; 4] = [
        "/metrics?collect[]=test_overlap",
        "/metrics?collect[]=test_overlap&collect[]=loadavg",
        "/metrics?collect[]=test_overlap&collect[]=host",
        "/metrics",
    ];
    let scrapes: Vec<_> = paths
        .iter()
        .cycle()
        .take(12)
        .map(|&path| std::thread::spawn(move || common::get(addr, path).text()))
        .collect();
    for s in scrapes {
        assert_eq!(success(&s.join().unwrap(), "test_overlap"), Some(1.0));
    }
    assert_eq!(OVERLAP_MAX.load(Ordering::SeqCst), 1);
}
