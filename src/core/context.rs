use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::{read_text, Result, READ_LIMIT};

/// The filesystem roots every collector reads under.
///
/// They default to `/proc`, `/sys` and `/`, and are changed with
/// `--path.procfs`, `--path.sysfs` and `--path.rootfs` so the exporter can run
/// in a container with the host's trees mounted elsewhere, and so tests can
/// point it at fixture trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub rootfs: PathBuf,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths {
            procfs: PathBuf::from("/proc"),
            sysfs: PathBuf::from("/sys"),
            rootfs: PathBuf::from("/"),
        }
    }
}

impl Paths {
    /// `rel` under the procfs root (`"meminfo"` → `/proc/meminfo`).
    pub fn proc(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.procfs.join(rel)
    }

    /// `rel` under the sysfs root (`"class/net"` → `/sys/class/net`).
    pub fn sys(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.sysfs.join(rel)
    }

    /// An absolute host path under the root filesystem (`"/home"` →
    /// `<rootfs>/home`).
    pub fn root(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.rootfs.join(abs.strip_prefix("/").unwrap_or(abs))
    }
}

type SharedCell = Arc<OnceLock<Arc<dyn Any + Send + Sync>>>;
type FileCell = Arc<OnceLock<Result<Arc<str>>>>;

/// What one scrape's collectors share.
///
/// A context lives for exactly one scrape. Files read through
/// [`ScrapeContext::read_proc_shared`] and values computed through
/// [`ScrapeContext::shared`] are produced once, by whichever collector asks
/// first, and handed to every other collector that asks during the same
/// scrape: `/proc/stat` is read once even though several collectors need it,
/// and the process table is walked once however many process collectors run.
pub struct ScrapeContext {
    paths: Arc<Paths>,
    started: Instant,
    shared: Mutex<HashMap<TypeId, SharedCell>>,
    files: Mutex<HashMap<PathBuf, FileCell>>,
}

impl ScrapeContext {
    pub fn new(paths: Arc<Paths>) -> ScrapeContext {
        ScrapeContext {
            paths,
            started: Instant::now(),
            shared: Mutex::default(),
            files: Mutex::default(),
        }
    }

    /// The `--path.*` roots.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// When this scrape started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Read a file under the procfs root, for this collector alone.
    ///
    /// Like every read here it is bounded: at most [`READ_LIMIT`] bytes (a
    /// longer file is an error for which [`Error::is_too_large`] is true),
    /// the last path component is not followed if it is a link, and invalid
    /// UTF-8 is replaced rather than failing the file; see
    /// [`read_text`](crate::read_text).
    ///
    /// [`Error::is_too_large`]: crate::Error::is_too_large
    pub fn read_proc(&self, rel: impl AsRef<Path>) -> Result<String> {
        read_text(self.paths.proc(rel), READ_LIMIT)
    }

    /// Read a file under the sysfs root, for this collector alone; bounded
    /// like [`ScrapeContext::read_proc`].
    pub fn read_sys(&self, rel: impl AsRef<Path>) -> Result<String> {
        read_text(self.paths.sys(rel), READ_LIMIT)
    }

    /// Read a file under the procfs root at most once per scrape, sharing its
    /// contents with every collector that asks for the same file.
    ///
    /// Use it for files several collectors parse (`stat`, `pressure/*`), not
    /// for files only one collector reads: the cache costs a lock and a copy.
    pub fn read_proc_shared(&self, rel: impl AsRef<Path>) -> Result<Arc<str>> {
        let path = self.paths.proc(rel);
        let cell = {
            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            files.entry(path.clone()).or_default().clone()
        };
        cell.get_or_init(|| read_text(&path, READ_LIMIT).map(Arc::from))
            .clone()
    }

    /// Compute a value at most once per scrape and share it.
    ///
    /// The first caller runs `init`; callers that arrive while it runs wait
    /// for its result instead of computing their own.
    pub fn shared<T, F>(&self, init: F) -> Arc<T>
    where
        T: Send + Sync + 'static,
        F: FnOnce(&ScrapeContext) -> T,
    {
        let cell = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            shared.entry(TypeId::of::<T>()).or_default().clone()
        };
        let any = cell.get_or_init(|| Arc::new(init(self)) as Arc<dyn Any + Send + Sync>);
        Arc::clone(any)
            .downcast::<T>()
            .expect("shared map is keyed by TypeId")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn shared_runs_once() {
        let ctx = ScrapeContext::new(Arc::new(Paths::default()));
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            let v: Arc<u32> = ctx.shared(|_| {
                calls.fetch_add(1, Ordering::SeqCst);
                7
            });
            assert_eq!(*v, 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn root_joins_absolute_paths() {
        let p = Paths {
            rootfs: PathBuf::from("/host"),
            ..Paths::default()
        };
        assert_eq!(p.root("/var/lib"), PathBuf::from("/host/var/lib"));
        assert_eq!(p.proc("1/stat"), PathBuf::from("/proc/1/stat"));
    }

    #[test]
    fn missing_file_error_names_path() {
        let e = read_text("/nonexistent/herakles", 10).unwrap_err();
        assert_eq!(e.path(), Some(Path::new("/nonexistent/herakles")));
        assert!(e.to_string().starts_with("/nonexistent/herakles: "));
        assert!(e.is_not_found());
    }
}
