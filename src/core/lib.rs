//! The core API of herakles-node-exporter.
//!
//! This crate is everything a collector needs and nothing more: the
//! [`Collector`] trait, the [`Registration`] that a collector submits through
//! [`inventory`], the [`MetricSink`] it writes samples into, and the
//! [`ScrapeContext`] that carries the filesystem roots and the data shared by
//! all collectors within one scrape.
//!
//! It is deliberately small. Built-in collectors and third-party collector
//! crates depend on it alone, so its surface is what we promise to keep
//! stable (see `docs/plugins.md`).
//!
//! # Writing a collector
//!
//! ```
//! use herakles_core::{Collector, Desc, MetricSink, Registration, ScrapeContext};
//!
//! /// Exposes the number of entries in `/proc/loadavg`... as an example.
//! #[derive(Default)]
//! struct Example;
//!
//! const ANSWER: Desc = Desc::gauge("example_answer", "The answer, from the kernel.");
//!
//! impl Collector for Example {
//!     fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> herakles_core::Result<()> {
//!         let text = ctx.read_proc("loadavg")?;
//!         out.single(&ANSWER, text.split_whitespace().count() as f64);
//!         Ok(())
//!     }
//! }
//!
//! // No settings and nothing from the build context: built as
//! // `Example::default()`. A collector with settings implements
//! // `BuildCollector` and registers with `Registration::new`.
//! herakles_core::inventory::submit! {
//!     Registration::plain::<Example>("example", "An example collector", false, env!("CARGO_PKG_NAME"))
//! }
//! ```

mod collector;
mod context;
mod error;
mod metrics;
mod read;
mod registry;
pub mod testing;

pub use collector::{
    BuildCollector, BuildContext, Collector, HealthCheck, HealthReport, HealthSection, NoConfig,
};
pub use context::{Paths, ScrapeContext};
pub use error::{Error, Result};
pub use metrics::{
    escape_label_value, valid_label_name, valid_metric_name, Desc, Family, MetricSink, MetricType,
};
pub use read::{for_each_line, is_too_large, read_bytes, read_text, MAX_LINE, READ_LIMIT};
pub use registry::{registrations, AnyConfig, Registration};

/// Re-exported so collector crates register with the exact `inventory` version
/// the exporter collects from; a second copy of `inventory` would keep its own,
/// invisible, list.
pub use inventory;
/// Re-exported for the same reason as [`inventory`]: config types derive
/// `JsonSchema` from the copy the exporter reads docs from.
pub use schemars;
/// Re-exported so a [`BuildContext::health_section`] returns the exact
/// `serde_json::Value` type the exporter serialises.
pub use serde_json;
