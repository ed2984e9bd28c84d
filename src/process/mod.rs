//! The process table: one scan of `/proc/<pid>` per scrape, classified and
//! aggregated, shared by the `process`, `process_groups` and `process_top`
//! collectors. See `docs/process.md` for the costs and trade-offs.

pub mod aggregate;
pub mod parse;
pub mod placement;
pub mod pool;
pub mod smaps;
pub mod snapshot;
pub mod state;
pub mod view;

use std::sync::Arc;

use herakles_core::{BuildContext, Error, Result};

use crate::classify::{Classifier, RuleSources};
use crate::config::Config;
pub use state::{ProcessTable, Settings};
pub use view::{EntityView, GroupView, ProcView, View};

/// Load the classification rules `config` names: the built-in ones, the
/// default locations, and `subgroups_file` when set (which must exist).
pub fn load_classifier(config: &Config) -> std::result::Result<Classifier, String> {
    let sources = RuleSources {
        explicit: (!config.subgroups_file.is_empty()).then(|| config.subgroups_file.clone().into()),
        search_default_locations: true,
    };
    Classifier::load(&sources).map_err(|e| e.to_string())
}

/// The one compiled [`Classifier`] of this exporter. Rules are parsed and
/// compiled once per process: the start-up check, the process table and the
/// `/subgroups` page all get this same instance.
pub fn classifier(ctx: &BuildContext) -> Result<Arc<Classifier>> {
    ctx.service(|ctx| {
        let config = ctx.globals::<Config>().cloned().unwrap_or_default();
        load_classifier(&config).map_err(Error::msg)
    })
}

/// The one [`ProcessTable`] of this exporter, created by the first process
/// collector built.
pub fn table(ctx: &BuildContext) -> Result<Arc<ProcessTable>> {
    let classifier = classifier(ctx)?;
    ctx.service(|ctx| {
        let config = ctx.globals::<Config>().cloned().unwrap_or_default();
        Ok(ProcessTable::new(
            Settings::from_config(&config),
            classifier,
        ))
    })
}
