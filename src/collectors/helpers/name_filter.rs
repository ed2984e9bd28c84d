//! Include and exclude regexes over names: block devices in `disk`,
//! interfaces in `netdev` (node_exporter's `device_filter.go`).

use herakles_core::{Error, Result};
use regex::Regex;

/// An include and an exclude regex over names (devices here, interfaces in
/// `netdev`), compiled once at build time so a bad pattern stops start-up
/// with the name of its key instead of failing every scrape.
///
/// An empty pattern means "no filter" rather than "match everything": for an
/// exclude that is the only useful reading, and a string (unlike an optional
/// one) can be written the same way in YAML, JSON and TOML.
pub struct NameFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl NameFilter {
    /// Compile the patterns; `keys` are their config key names, for errors.
    pub fn new(include: &str, exclude: &str, keys: (&str, &str)) -> Result<NameFilter> {
        let compile = |pattern: &str, key: &str| {
            (!pattern.is_empty())
                .then(|| Regex::new(pattern).map_err(|e| Error::msg(format!("{key}: {e}"))))
                .transpose()
        };
        Ok(NameFilter {
            include: compile(include, keys.0)?,
            exclude: compile(exclude, keys.1)?,
        })
    }

    /// Whether `name` is to be reported.
    pub fn allows(&self, name: &str) -> bool {
        let included = match &self.include {
            Some(re) => re.is_match(name),
            None => true,
        };
        included && !self.exclude.as_ref().is_some_and(|re| re.is_match(name))
    }
}
