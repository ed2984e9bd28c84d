use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{MetricSink, Paths, Result, ScrapeContext};

/// A source of metrics.
///
/// `collect` is called once per scrape, on a thread of the exporter's bounded
/// blocking pool and never on the async runtime, so it may do ordinary
/// blocking reads of `/proc` and `/sys`. It runs under a timeout and inside
/// `catch_unwind`: a collector that errors, panics or hangs costs its own
/// series and nothing else.
///
/// The exporter never runs two `collect` calls of the same collector at once,
/// so state kept between scrapes (previous counter values for a rate, say)
/// needs a lock only to satisfy `Sync`, never for real contention.
pub trait Collector: Send + Sync + 'static {
    /// Write this scrape's samples into `out`.
    ///
    /// Return an error only when the collector as a whole failed; a single
    /// unparsable line should be skipped and counted with
    /// [`MetricSink::parse_error`] instead, so one odd file does not blank a
    /// whole collector.
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()>;

    /// Release long-lived resources (threads, kernel objects) at shutdown.
    fn shutdown(&self) {}
}

/// How a collector is constructed from its typed config section.
///
/// This is split from [`Collector`] because a trait with an associated type
/// cannot be used as `dyn Collector`; the registry needs both.
pub trait BuildCollector: Collector + Sized {
    /// The collector's own config section (`collectors.<name>` in the file).
    ///
    /// `#[serde(default, deny_unknown_fields)]` is expected: every key has a
    /// default, and a misspelt key is an error rather than silently ignored.
    /// Doc comments on its fields become the comments of the generated config
    /// template and the reference in `/doc`.
    type Config: Serialize
        + DeserializeOwned
        + JsonSchema
        + Default
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static;

    /// Build the collector. Called once at start-up; an error here stops the
    /// exporter with a message naming the collector.
    fn build(config: Self::Config, ctx: &BuildContext) -> Result<Self>;
}

/// The config of a collector that has no keys besides `enabled`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

/// What a collector gets at construction time.
///
/// Besides the filesystem roots, it offers [`BuildContext::service`]: one
/// instance per type, shared by every collector that asks, for long-lived
/// parts several collectors read (a process table, loaded eBPF programs).
#[derive(Clone)]
pub struct BuildContext {
    paths: Arc<Paths>,
    globals: Arc<dyn Any + Send + Sync>,
    services: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
    health: Arc<Mutex<Vec<(String, HealthCheck)>>>,
}

/// Computes one top-level key of the exporter's `/health` document; see
/// [`BuildContext::health_section`].
pub type HealthSection = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Computes one top-level key of `/health` and whether the part it
/// describes works; see [`BuildContext::health_check`].
pub type HealthCheck = Arc<dyn Fn() -> HealthReport + Send + Sync>;

/// What a [`BuildContext::health_check`] reports each time `/health` is
/// served.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// The section's JSON, shown under its key.
    pub detail: serde_json::Value,
    /// Why the part does not work as the operator configured it, if it
    /// does not. The exporter's `/health` status is then `degraded`, and
    /// this reason is listed under `problems`.
    pub problem: Option<String>,
}

impl HealthReport {
    /// A part that works.
    pub fn ok(detail: serde_json::Value) -> HealthReport {
        HealthReport {
            detail,
            problem: None,
        }
    }

    /// A part that was asked for and does not work, and why.
    pub fn degraded(detail: serde_json::Value, problem: impl Into<String>) -> HealthReport {
        HealthReport {
            detail,
            problem: Some(problem.into()),
        }
    }
}

impl BuildContext {
    /// A context for the given roots. `globals` is the exporter's own global
    /// config; built-in collectors downcast it, plugins ignore it.
    pub fn new(paths: Paths, globals: Arc<dyn Any + Send + Sync>) -> BuildContext {
        BuildContext {
            paths: Arc::new(paths),
            globals,
            services: Arc::default(),
            health: Arc::default(),
        }
    }

    /// The `--path.*` roots.
    pub fn paths(&self) -> &Arc<Paths> {
        &self.paths
    }

    /// The exporter's global config, if it is of type `T`.
    pub fn globals<T: Any>(&self) -> Option<&T> {
        self.globals.downcast_ref::<T>()
    }

    /// The one shared instance of `T`, created by `init` on first request.
    pub fn service<T, F>(&self, init: F) -> Result<Arc<T>>
    where
        T: Send + Sync + 'static,
        F: FnOnce(&BuildContext) -> Result<T>,
    {
        let existing = |services: &HashMap<TypeId, Arc<dyn Any + Send + Sync>>| {
            services.get(&TypeId::of::<T>()).map(|s| {
                Arc::clone(s)
                    .downcast::<T>()
                    .expect("service map is keyed by TypeId")
            })
        };
        if let Some(s) = existing(&self.services.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(s);
        }
        // `init` runs without the lock so it may ask for other services.
        // Building is single-threaded, so a second `init` of the same type
        // cannot race; if one ever did, the first stored instance wins.
        let created: Arc<T> = Arc::new(init(self)?);
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = existing(&services) {
            return Ok(s);
        }
        services.insert(TypeId::of::<T>(), created.clone());
        Ok(created)
    }

    /// Show `f()` under `key` in `/health` each time it is served.
    ///
    /// For state a metric cannot explain: why eBPF programs did not load,
    /// what a probe attached to. A failing part should still serve its
    /// metrics it can (an `up` gauge at 0, say) and put the reason here;
    /// [`BuildContext::health_check`] also lets it mark the exporter
    /// degraded.
    pub fn health_section(
        &self,
        key: impl Into<String>,
        f: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) {
        self.health_check(key, move || HealthReport::ok(f()));
    }

    /// Like [`BuildContext::health_section`], for a part that can tell
    /// whether it works: while `f()` reports a problem, `/health` says
    /// `"status": "degraded"` and lists the problem under `problems`, as it
    /// does for a failing collector. Report one only for what the operator
    /// asked for and is not getting (a probe that could not attach), never
    /// for a part switched off by configuration.
    pub fn health_check(
        &self,
        key: impl Into<String>,
        f: impl Fn() -> HealthReport + Send + Sync + 'static,
    ) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health.push((key.into(), Arc::new(f)));
    }

    /// Every section registered with [`BuildContext::health_section`] or
    /// [`BuildContext::health_check`].
    pub fn health_checks(&self) -> Vec<(String, HealthCheck)> {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health.clone()
    }

    /// Every service created so far, for shutdown.
    pub fn services(&self) -> Vec<Arc<dyn Any + Send + Sync>> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.values().cloned().collect()
    }
}
