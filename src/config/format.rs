//! A config file's format, and the error that points into a file.
//!
//! Both sit below the loader (`load.rs`) and the key locator (`locate.rs`),
//! which each need them and neither of which should depend on the other's
//! insides.

use std::fmt;
use std::path::{Path, PathBuf};

/// A config file format, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
    Toml,
}

impl Format {
    pub fn from_path(path: &Path) -> Result<Format, ConfigError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Ok(Format::Yaml),
            Some("json") => Ok(Format::Json),
            Some("toml") => Ok(Format::Toml),
            _ => Err(ConfigError::in_file(
                path,
                "unknown config format: the file name must end in .yaml, .yml, .json or .toml",
            )),
        }
    }

    /// Serialize any value in this format.
    pub fn to_string<T: serde::Serialize>(self, value: &T) -> Result<String, String> {
        match self {
            Format::Yaml => serde_norway::to_string(value).map_err(|e| e.to_string()),
            Format::Json => serde_json::to_string_pretty(value)
                .map(|s| s + "\n")
                .map_err(|e| e.to_string()),
            Format::Toml => toml::to_string(value).map_err(|e| e.to_string()),
        }
    }
}

/// A config problem, with as much position as the format gave us.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub fn msg(message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(super) fn in_file(path: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: Some(path.to_path_buf()),
            ..ConfigError::msg(message)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.column {
                    write!(f, ":{col}")?;
                }
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
