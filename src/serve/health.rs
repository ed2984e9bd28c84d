//! State behind `/health`: when the last scrape ran, how long it took, and
//! for each collector when it last succeeded and why it last failed.
//!
//! A collector that fails once and recovers keeps its `last_error` so an
//! operator can see what happened between two Prometheus scrapes; the
//! `last_success` timestamp says whether it has recovered since.
//!
//! The status is `degraded` while a collector's last run failed, or while a
//! section (the eBPF parts, a plugin's probe) reports a problem with what
//! the operator asked for; `problems` then says which and why.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How one collector fared in one scrape.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    pub duration: Duration,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectorHealth {
    /// Unix time of the last successful run.
    pub last_success: Option<f64>,
    /// Unix time of the last failed run.
    pub last_failure: Option<f64>,
    /// Why the last failed run failed.
    pub last_error: Option<String>,
    /// Seconds the last run took.
    pub last_duration_seconds: Option<f64>,
    /// Whether the last run succeeded.
    pub healthy: bool,
}

#[derive(Default)]
struct Inner {
    last_scrape: Option<f64>,
    last_scrape_duration: Option<f64>,
    collectors: BTreeMap<&'static str, CollectorHealth>,
}

/// Shared health state; cheap to update once per scrape.
pub struct Health {
    started: Instant,
    inner: Mutex<Inner>,
    notes: Mutex<BTreeMap<String, String>>,
    sections: Mutex<Vec<(String, Section)>>,
}

/// A part of the `/health` document computed when it is served, e.g. the
/// state of the eBPF programs, with whether that part works.
pub use herakles_core::HealthCheck as Section;

#[derive(Serialize)]
struct Report<'a> {
    status: &'static str,
    version: &'static str,
    uptime_seconds: f64,
    last_scrape: Option<f64>,
    last_scrape_duration_seconds: Option<f64>,
    collectors: &'a BTreeMap<&'static str, CollectorHealth>,
    /// Section key → why it degrades the status.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    problems: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    notes: &'a BTreeMap<String, String>,
    #[serde(flatten)]
    sections: BTreeMap<String, serde_json::Value>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Health {
    pub fn new(collectors: &[&'static str]) -> Health {
        let inner = Inner {
            collectors: collectors
                .iter()
                .map(|n| (*n, CollectorHealth::default()))
                .collect(),
            ..Inner::default()
        };
        Health {
            started: Instant::now(),
            inner: Mutex::new(inner),
            notes: Mutex::default(),
            sections: Mutex::default(),
        }
    }

    /// Record a scrape that finished at `finished` after `duration`.
    pub fn record(&self, finished: SystemTime, duration: Duration, outcomes: &[Outcome]) {
        let now = unix(finished);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.last_scrape = Some(now);
        inner.last_scrape_duration = Some(duration.as_secs_f64());
        for o in outcomes {
            // A scrape that started before a reload can finish after it,
            // with collectors the reload removed: they stay removed.
            let Some(h) = inner.collectors.get_mut(o.name) else {
                continue;
            };
            h.last_duration_seconds = Some(o.duration.as_secs_f64());
            h.healthy = o.error.is_none();
            match &o.error {
                None => h.last_success = Some(now),
                Some(e) => {
                    h.last_failure = Some(now);
                    h.last_error = Some(e.clone());
                }
            }
        }
    }

    /// The collectors are now `collectors` (after a reload): those that
    /// stay keep their history, new ones start empty, removed ones go.
    pub fn set_collectors(&self, collectors: &[&'static str]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut old = std::mem::take(&mut inner.collectors);
        inner.collectors = collectors
            .iter()
            .map(|n| (*n, old.remove(n).unwrap_or_default()))
            .collect();
    }

    /// Replace every section added with [`Health::section`] (a reload
    /// builds new services, which report their own state).
    pub fn set_sections(&self, sections: Vec<(String, Section)>) {
        *self.sections.lock().unwrap_or_else(|e| e.into_inner()) = sections;
    }

    /// Attach a named note (e.g. why eBPF is off) to the report.
    pub fn note(&self, key: impl Into<String>, text: impl Into<String>) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        notes.insert(key.into(), text.into());
    }

    /// Add a top-level key to the report whose value, and whether it
    /// degrades the status, `f` computes each time `/health` is served.
    pub fn section(&self, key: impl Into<String>, f: Section) {
        let mut sections = self.sections.lock().unwrap_or_else(|e| e.into_inner());
        sections.push((key.into(), f));
    }

    /// The `/health` JSON document.
    pub fn report_json(&self) -> String {
        // Sections first, without our locks: they read eBPF maps and take
        // locks of their own.
        let checks = self
            .sections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut sections = BTreeMap::new();
        let mut problems = BTreeMap::new();
        for (key, check) in checks {
            let report = check();
            if let Some(problem) = report.problem {
                problems.insert(key.clone(), problem);
            }
            sections.insert(key, report.detail);
        }
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        let failing = inner
            .collectors
            .values()
            .any(|c| !c.healthy && c.last_failure.is_some());
        let report = Report {
            status: if failing || !problems.is_empty() {
                "degraded"
            } else {
                "ok"
            },
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            last_scrape: inner.last_scrape,
            last_scrape_duration_seconds: inner.last_scrape_duration,
            collectors: &inner.collectors,
            problems,
            notes: &notes,
            sections,
        };
        serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use herakles_core::HealthReport;

    use super::*;

    fn report(h: &Health) -> serde_json::Value {
        serde_json::from_str(&h.report_json()).unwrap()
    }

    /// A section's problem degrades the status while it lasts, and says
    /// which section and why; a plain section never does.
    #[test]
    fn a_section_with_a_problem_degrades_the_status() {
        let h = Health::new(&["memory"]);
        let broken = Arc::new(AtomicBool::new(false));
        let b = broken.clone();
        h.section(
            "probe",
            Arc::new(move || {
                let detail = serde_json::json!({"up": !b.load(Ordering::SeqCst)});
                if b.load(Ordering::SeqCst) {
                    HealthReport::degraded(detail, "could not attach")
                } else {
                    HealthReport::ok(detail)
                }
            }),
        );
        h.section(
            "plain",
            Arc::new(|| HealthReport::ok(serde_json::json!({"n": 1}))),
        );
        let r = report(&h);
        assert_eq!(r["status"], "ok");
        assert!(r.get("problems").is_none(), "{r}");
        assert_eq!(r["probe"]["up"], true);
        assert_eq!(r["plain"]["n"], 1);

        broken.store(true, Ordering::SeqCst);
        let r = report(&h);
        assert_eq!(r["status"], "degraded");
        assert_eq!(
            r["problems"],
            serde_json::json!({"probe": "could not attach"})
        );
        assert_eq!(r["probe"]["up"], false);

        broken.store(false, Ordering::SeqCst);
        assert_eq!(report(&h)["status"], "ok");
    }
}
