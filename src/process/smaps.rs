//! The second, budgeted tier: PSS, USS and swap from `smaps_rollup`.
//!
//! `stat` is cheap and constant-cost; `smaps_rollup` is neither. The kernel
//! walks every mapping of the target while holding its mmap lock, so on a
//! process with a hundred gigabytes mapped one read can take many
//! milliseconds and briefly stall the target's own page faults and `mmap`
//! calls. Reading it for every process on every scrape would make the
//! exporter's cost, and its interference, grow with the host's memory.
//!
//! So smaps data is cached per process (keyed by pid and start time) and
//! refreshed within a per-scrape time budget, stalest first: entries never
//! read come before old ones, and entries younger than `smaps_max_age_secs`
//! are not read at all. Whatever does not fit in the budget keeps its older
//! value, and the exported age says how old it is. `smaps_mode` chooses the
//! candidates (see `Config::smaps_mode`).
//!
//! Kernels before 4.14 have no `smaps_rollup`; there the full `smaps` is
//! read and summed, which costs more but gives the same numbers.
//!
//! Reads run on `parallelism` threads taking keys from the stalest-first
//! list one at a time, so a cut-off budget leaves the freshest entries. The
//! kernel holds the target's mmap lock for the walk, and a process stuck
//! with that lock held makes the read block: the read is given up after
//! the deadline like any other `/proc` read ([`super::pool`]), and if it
//! returns later its result is kept for the next refresh.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herakles_core::{for_each_line, read_bytes};

use super::parse::{parse_smaps, FileKind, Smaps, SmapsSum};
use super::pool::{self, Stuck, Task};
use super::snapshot::{gone, Key};

/// The most read of `smaps_rollup` (one block of about twenty lines) and of
/// a full `smaps`, which has a block per mapping: 65,530 mappings (the
/// default `vm.max_map_count`) make about 80 MiB, and hosts running
/// Elasticsearch raise that fourfold. The full file is parsed as it is
/// read, so its size costs time, not memory.
pub const ROLLUP_LIMIT: usize = 64 << 10;
pub const SMAPS_LIMIT: usize = 1 << 30;

/// Why a smaps read produced nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum SmapsFail {
    /// The process exited: not an error.
    Gone,
    /// Permission denied, or a file we do not understand: counted.
    Unreadable,
}

/// Read one process's smaps data, preferring `smaps_rollup`.
pub fn read(procfs: &Path, pid: u32, buf: &mut Vec<u8>) -> Result<Smaps, SmapsFail> {
    let dir = procfs.join(pid.to_string());
    let result = match read_bytes(&dir.join("smaps_rollup"), ROLLUP_LIMIT, buf) {
        Ok(()) => Ok(parse_smaps(buf)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.exists() => {
            let mut sum = SmapsSum::default();
            for_each_line(&dir.join("smaps"), SMAPS_LIMIT, |line| sum.line(line))
                .map(|()| sum.finish())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(parsed) => parsed.ok_or(SmapsFail::Unreadable),
        Err(e) if gone(&e) => Err(SmapsFail::Gone),
        Err(_) => Err(SmapsFail::Unreadable),
    }
}

/// How much one refresh may do.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Entries younger than this are not read again.
    pub max_age: Duration,
    /// Wall time for the whole refresh.
    pub budget: Duration,
    /// Threads reading in parallel.
    pub workers: usize,
    /// How long one read may block before it is given up.
    pub deadline: Duration,
    /// Initial read buffer per thread.
    pub buffer_bytes: usize,
}

/// Results of reads given up on that returned later.
type Late = Arc<Mutex<Vec<(Key, Smaps, Instant)>>>;

/// Cached smaps data per process.
#[derive(Default)]
pub struct SmapsCache {
    entries: HashMap<Key, (Smaps, Instant)>,
    late: Late,
}

/// What one refresh did, for the caller to count.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub read: usize,
    pub unreadable: usize,
    /// Candidates left stale (or unread) because the budget ran out.
    pub deferred: usize,
    /// Reads given up on after the deadline.
    pub timed_out: usize,
}

impl SmapsCache {
    /// Refresh `candidates` (pid, start time) within the limits, stalest
    /// first, and forget processes that are not in `alive`. Candidates
    /// with a read still blocked in `stuck` keep their older value.
    pub fn refresh(
        &mut self,
        procfs: &Path,
        candidates: &[Key],
        alive: &dyn Fn(&Key) -> bool,
        limits: Limits,
        stuck: &Stuck,
    ) -> Refreshed {
        let Limits {
            max_age,
            budget,
            workers,
            deadline,
            buffer_bytes,
        } = limits;
        let late = std::mem::take(&mut *self.late.lock().unwrap_or_else(|e| e.into_inner()));
        for (key, smaps, at) in late {
            self.entries.insert(key, (smaps, at));
        }
        self.entries.retain(|k, _| alive(k));
        let skip = stuck.skip_set();
        let now = Instant::now();
        let mut stale: Vec<(Option<Instant>, Key)> = candidates
            .iter()
            .filter(|(pid, start)| !skip.contains(*pid, Some(*start)))
            .filter_map(|k| match self.entries.get(k) {
                Some((_, at)) if now.duration_since(*at) < max_age => None,
                Some((_, at)) => Some((Some(*at), *k)),
                None => Some((None, *k)),
            })
            .collect();
        // None (never read) sorts before any instant: new processes first.
        stale.sort_unstable();
        let keys: Vec<pool::Ident> = stale.into_iter().map(|(_, (p, s))| (p, Some(s))).collect();
        let root = Arc::new(procfs.to_path_buf());
        let late = self.late.clone();
        let run = pool::run(
            keys.into(),
            pool::Limits {
                workers,
                deadline,
                stop_at: Some(Instant::now() + budget),
            },
            stuck,
            Arc::new(move || Vec::with_capacity(buffer_bytes)),
            Arc::new(move |(pid, _), buf: &mut Vec<u8>, task: &Task| {
                if !task.reading(FileKind::Smaps) {
                    return Err(SmapsFail::Gone);
                }
                read(&root, pid, buf)
            }),
            Arc::new(move |(pid, start), result| {
                if let (Some(start), Ok(smaps)) = (start, result) {
                    let mut late = late.lock().unwrap_or_else(|e| e.into_inner());
                    late.push(((pid, start), smaps, Instant::now()));
                }
            }),
        );
        let mut done = Refreshed {
            deferred: run.unstarted,
            timed_out: run.abandoned.len(),
            ..Refreshed::default()
        };
        let read_at = Instant::now();
        for ((pid, start), result) in run.results {
            let key = (pid, start.unwrap_or_default());
            match result {
                Ok(s) => {
                    self.entries.insert(key, (s, read_at));
                    done.read += 1;
                }
                Err(SmapsFail::Gone) => {
                    self.entries.remove(&key);
                }
                Err(SmapsFail::Unreadable) => done.unreadable += 1,
            }
        }
        done
    }

    /// Cached data and its age.
    pub fn get(&self, key: &Key, now: Instant) -> Option<(Smaps, Duration)> {
        self.entries
            .get(key)
            .map(|(s, at)| (*s, now.saturating_duration_since(*at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const ROLLUP: &str =
        "Rss: 8 kB\nPss: 6 kB\nPrivate_Clean: 1 kB\nPrivate_Dirty: 3 kB\nSwap: 2 kB\n";

    #[test]
    fn falls_back_to_smaps_and_tells_exit_from_denial() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("1")).unwrap();
        fs::write(p.join("1/smaps_rollup"), ROLLUP).unwrap();
        fs::create_dir_all(p.join("2")).unwrap();
        fs::write(p.join("2/smaps"), ROLLUP).unwrap();
        fs::create_dir_all(p.join("3")).unwrap();
        fs::write(p.join("3/smaps_rollup"), "Rss: many\n").unwrap();
        let mut buf = Vec::new();
        let want = Smaps {
            rss: 8192,
            pss: 6144,
            uss: 4096,
            swap: 2048,
        };
        assert_eq!(read(p, 1, &mut buf), Ok(want));
        assert_eq!(read(p, 2, &mut buf), Ok(want));
        assert_eq!(read(p, 3, &mut buf), Err(SmapsFail::Unreadable));
        assert_eq!(read(p, 4, &mut buf), Err(SmapsFail::Gone));
    }

    fn limits(max_age: Duration, budget: Duration) -> Limits {
        Limits {
            max_age,
            budget,
            workers: 2,
            deadline: Duration::from_secs(60),
            buffer_bytes: 64,
        }
    }

    #[test]
    fn zero_budget_defers_everything_and_cache_ages() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("1")).unwrap();
        fs::write(dir.path().join("1/smaps_rollup"), ROLLUP).unwrap();
        let mut cache = SmapsCache::default();
        let stuck = Stuck::default();
        let keys = [(1, 10)];
        let alive = |_: &Key| true;
        let refresh = |cache: &mut SmapsCache, keys: &[Key], alive: &dyn Fn(&Key) -> bool, l| {
            cache.refresh(dir.path(), keys, alive, l, &stuck)
        };
        let r = refresh(
            &mut cache,
            &keys,
            &alive,
            limits(Duration::ZERO, Duration::ZERO),
        );
        assert_eq!((r.read, r.deferred), (0, 1));
        let big = Duration::from_secs(60);
        let r = refresh(&mut cache, &keys, &alive, limits(big, big));
        assert_eq!(r.read, 1);
        // Fresh: not read again.
        let r = refresh(&mut cache, &keys, &alive, limits(big, big));
        assert_eq!((r.read, r.deferred), (0, 0));
        assert!(cache.get(&(1, 10), Instant::now()).is_some());
        // A process that is gone is forgotten.
        refresh(&mut cache, &[], &|_| false, limits(big, big));
        assert!(cache.get(&(1, 10), Instant::now()).is_none());
    }
}
