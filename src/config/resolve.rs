//! The effective configuration: built-in defaults, then the config file,
//! then `HERAKLES_*` variables, then command-line flags.

use std::ffi::OsString;
use std::path::Path;

use super::format::ConfigError;
use super::load::{find_config_file, load_file, LoadedFile};
use super::overrides::{env_overrides, merge, Override};
use super::Config;

/// Which config file to read.
#[derive(Debug, Clone, Copy)]
pub enum FileChoice<'a> {
    /// This one (`--config`), which must exist.
    Named(&'a Path),
    /// The first of the default locations that exists, if any.
    Search,
    /// None at all (`--no-config`).
    Without,
}

/// The effective config and where it came from.
pub struct Resolved {
    pub config: Config,
    /// The config file, if one was loaded.
    pub file: Option<LoadedFile>,
    /// Debug notes for the log once it is set up: variables set aside.
    pub notes: Vec<String>,
}

/// Defaults, then the file, then `HERAKLES_*` from `env`, then `flags`.
///
/// A key a flag sets is not read from the environment at all: its variable
/// is never parsed, so a stray value there cannot stop a start that names
/// the key on the command line.
pub fn resolve(
    file: FileChoice,
    flags: &[Override],
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Resolved, ConfigError> {
    let file = match file {
        FileChoice::Without => None,
        FileChoice::Named(p) => Some(load_file(p)?),
        FileChoice::Search => find_config_file(None)?.map(|p| load_file(&p)).transpose()?,
    };
    let base = file.as_ref().map(|f| f.config.clone()).unwrap_or_default();
    let (env, mut notes) = env_overrides(env)?;
    let mut overrides = Vec::with_capacity(env.len() + flags.len());
    for o in env {
        match flags.iter().find(|f| f.key == o.key) {
            Some(f) => notes.push(format!("ignoring {}: {} is given", o.source, f.source)),
            None => overrides.push(o),
        }
    }
    overrides.extend_from_slice(flags);
    let config = merge(base, &overrides, file.as_ref())?;
    Ok(Resolved {
        config,
        file,
        notes,
    })
}
