use std::fmt;
use std::path::{Path, PathBuf};

/// The result type of collector code.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a collection (or a collector's construction) failed.
///
/// It carries a message and, where one exists, the file it concerns, because
/// an operator reading `herakles_scrape_collector_success 0` wants to know
/// *which* file misbehaved, not just that one did.
#[derive(Debug, Clone)]
pub struct Error {
    path: Option<PathBuf>,
    message: String,
    io_kind: Option<std::io::ErrorKind>,
    too_large: bool,
}

impl Error {
    /// An error with a free-form message.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error {
            path: None,
            message: message.to_string(),
            io_kind: None,
            too_large: false,
        }
    }

    /// An error about one file.
    pub fn at(path: impl AsRef<Path>, message: impl fmt::Display) -> Error {
        Error {
            path: Some(path.as_ref().to_path_buf()),
            message: message.to_string(),
            io_kind: None,
            too_large: false,
        }
    }

    /// An I/O error on one file; keeps the error kind for [`Error::is_not_found`]
    /// and [`Error::is_too_large`].
    pub fn io(path: impl AsRef<Path>, err: std::io::Error) -> Error {
        Error {
            io_kind: Some(err.kind()),
            too_large: crate::is_too_large(&err),
            ..Error::at(path, err)
        }
    }

    /// The file this error concerns, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// True when the error says a file does not exist. Collectors use it to
    /// treat a missing optional kernel file as "no series" rather than failure.
    pub fn is_not_found(&self) -> bool {
        self.io_kind == Some(std::io::ErrorKind::NotFound)
    }

    /// True when a file was longer than the limit it was read with (see
    /// [`read_bytes`](crate::read_bytes)). Collectors count it as a parse
    /// error where the file is one of many, and fail where it is their
    /// only input.
    pub fn is_too_large(&self) -> bool {
        self.too_large
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error {
            io_kind: Some(e.kind()),
            too_large: crate::is_too_large(&e),
            ..Error::msg(e)
        }
    }
}

impl From<String> for Error {
    fn from(s: String) -> Error {
        Error::msg(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Error {
        Error::msg(s)
    }
}
