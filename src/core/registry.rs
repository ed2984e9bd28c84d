//! Collector registration.
//!
//! There is no central list of collectors. Each collector file ends with
//!
//! ```ignore
//! herakles_core::inventory::submit! {
//!     Registration::new::<MyCollector>("name", "One line.", true, env!("CARGO_PKG_NAME"))
//! }
//! ```
//!
//! (`Registration::plain::<MyCollector>(...)` for a collector without
//! settings), and the exporter finds every submitted registration at
//! start-up through [`registrations`]. The CLI flags, the `collectors`
//! listing, config validation and the generated config reference are all
//! derived from these registrations, so adding a collector touches only its
//! own file.

use std::any::Any;
use std::fmt;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::{BuildCollector, BuildContext, Collector, NoConfig, Result};

/// A collector's config section, type-erased so the registry can hold
/// sections of different types side by side.
pub trait AnyConfig: erased_serde::Serialize + fmt::Debug + Send + Sync + 'static {
    fn as_any(&self) -> &dyn Any;
    fn clone_box(&self) -> Box<dyn AnyConfig>;
}

impl<T> AnyConfig for T
where
    T: serde::Serialize + fmt::Debug + Clone + Send + Sync + 'static,
{
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn clone_box(&self) -> Box<dyn AnyConfig> {
        Box::new(self.clone())
    }
}

impl Clone for Box<dyn AnyConfig> {
    fn clone(&self) -> Self {
        (**self).clone_box()
    }
}

erased_serde::serialize_trait_object!(AnyConfig);

type ParseFn = fn(
    &mut dyn erased_serde::Deserializer<'_>,
) -> std::result::Result<Box<dyn AnyConfig>, erased_serde::Error>;
type BuildFn = fn(&dyn AnyConfig, &BuildContext) -> Result<Box<dyn Collector>>;

/// Everything the exporter knows about a collector before building it.
///
/// Created with [`Registration::new`] inside `inventory::submit!`.
pub struct Registration {
    /// The collector's name: its config key, its `--collector.<name>` flag and
    /// the `collector` label of the scrape meta-metrics. Lowercase
    /// `[a-z0-9_]`; unique across all linked crates.
    pub name: &'static str,
    /// One line for `herakles-node-exporter collectors`.
    pub description: &'static str,
    /// Whether the collector runs when neither config nor flags mention it.
    pub default_enabled: bool,
    /// The crate that provides it; pass `env!("CARGO_PKG_NAME")`.
    pub crate_name: &'static str,
    default_config: fn() -> Box<dyn AnyConfig>,
    parse_config: ParseFn,
    schema: fn() -> schemars::Schema,
    build: BuildFn,
}

impl Registration {
    /// Describe collector `C`. `const` so it can be used in `inventory::submit!`.
    pub const fn new<C: BuildCollector>(
        name: &'static str,
        description: &'static str,
        default_enabled: bool,
        crate_name: &'static str,
    ) -> Registration {
        Registration::of::<C::Config>(name, description, default_enabled, crate_name, build::<C>)
    }

    /// Describe collector `C`, which has no settings and needs nothing from
    /// the [`BuildContext`]: its section holds `enabled` alone (its config
    /// is [`NoConfig`]) and it is built as `C::default()`. This spares such
    /// a collector a [`BuildCollector`] impl that would say only that.
    pub const fn plain<C: Collector + Default>(
        name: &'static str,
        description: &'static str,
        default_enabled: bool,
        crate_name: &'static str,
    ) -> Registration {
        Registration::of::<NoConfig>(
            name,
            description,
            default_enabled,
            crate_name,
            build_default::<C>,
        )
    }

    /// A collector whose section is a `T`, built by `build`.
    const fn of<T: AnyConfig + Default + DeserializeOwned + JsonSchema>(
        name: &'static str,
        description: &'static str,
        default_enabled: bool,
        crate_name: &'static str,
        build: BuildFn,
    ) -> Registration {
        Registration {
            name,
            description,
            default_enabled,
            crate_name,
            default_config: default_config::<T>,
            parse_config: parse_config::<T>,
            schema: schema::<T>,
            build,
        }
    }

    /// The collector's config section with every key at its default.
    pub fn default_config(&self) -> Box<dyn AnyConfig> {
        (self.default_config)()
    }

    /// Parse the collector's config section from any serde format.
    ///
    /// Taking the format's own deserializer (rather than an intermediate
    /// value) keeps the format's error positions, so a wrong key type is
    /// reported at its file line.
    pub fn parse_config(
        &self,
        de: &mut dyn erased_serde::Deserializer<'_>,
    ) -> std::result::Result<Box<dyn AnyConfig>, erased_serde::Error> {
        (self.parse_config)(de)
    }

    /// The JSON schema of the config section, with the doc comments of its
    /// fields as descriptions. Used for the commented config template and the
    /// reference documentation.
    pub fn config_schema(&self) -> schemars::Schema {
        (self.schema)()
    }

    /// Build the collector from a config produced by this registration.
    pub fn build(&self, config: &dyn AnyConfig, ctx: &BuildContext) -> Result<Box<dyn Collector>> {
        (self.build)(config, ctx)
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("name", &self.name)
            .field("crate_name", &self.crate_name)
            .field("default_enabled", &self.default_enabled)
            .finish()
    }
}

inventory::collect!(Registration);

/// Every registration linked into this binary, sorted by name.
pub fn registrations() -> Vec<&'static Registration> {
    let mut all: Vec<_> = inventory::iter::<Registration>.into_iter().collect();
    all.sort_by_key(|r| r.name);
    all
}

fn default_config<T: AnyConfig + Default>() -> Box<dyn AnyConfig> {
    Box::new(T::default())
}

fn parse_config<T: AnyConfig + DeserializeOwned>(
    de: &mut dyn erased_serde::Deserializer<'_>,
) -> std::result::Result<Box<dyn AnyConfig>, erased_serde::Error> {
    let config: T = erased_serde::deserialize(de)?;
    Ok(Box::new(config))
}

fn schema<T: JsonSchema>() -> schemars::Schema {
    schemars::schema_for!(T)
}

fn build<C: BuildCollector>(
    config: &dyn AnyConfig,
    ctx: &BuildContext,
) -> Result<Box<dyn Collector>> {
    let config = config
        .as_any()
        .downcast_ref::<C::Config>()
        .ok_or("config section of the wrong type for this collector")?
        .clone();
    Ok(Box::new(C::build(config, ctx)?))
}

fn build_default<C: Collector + Default>(
    _: &dyn AnyConfig,
    _: &BuildContext,
) -> Result<Box<dyn Collector>> {
    Ok(Box::new(C::default()))
}
