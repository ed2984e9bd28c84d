//! State kept between scrapes, and the per-scrape [`View`] every process
//! collector reads.
//!
//! [`ProcessTable`] is one long-lived service (`BuildContext::service`)
//! shared by the process collectors. Once per scrape (`ScrapeContext::shared`)
//! it scans `/proc`, classifies, computes CPU rates, refreshes smaps data and
//! aggregates groups into a [`View`]; the collectors only format it.
//!
//! Everything remembered about a process is keyed by (pid, start time), so
//! a reused pid starts with no CPU history and its own classification.
//!
//! Group counters are kept honest: a group's `*_total` is the sum over its
//! live members plus, for members that exited (or were reclassified away),
//! the last values seen for them. Without that carry-over every exit would
//! make the counter drop, which `rate()` reads as a reset and turns into a
//! spike. A group with no live members keeps its counters (they are still
//! true totals) but loses its gauges, which would otherwise report zero
//! memory for something that no longer exists.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herakles_core::ScrapeContext;

use super::parse::{FileKind, Io, Smaps};
use super::pool::{self, Stuck};
use super::smaps::{Limits, Refreshed, SmapsCache};
use super::snapshot::{scan, Host, Key, ReadErrors};
use crate::classify::{Classifier, OTHER_GROUP};
use crate::config::{Config, SearchMode, SmapsMode};

/// The process-related global settings, copied out of [`Config`].
#[derive(Clone, Debug)]
pub struct Settings {
    pub workers: usize,
    /// How long one `/proc/<pid>` read may block before its process is
    /// left out; see [`Settings::read_deadline_for`].
    pub read_deadline: Duration,
    pub io_buffer: usize,
    pub smaps_buffer: usize,
    pub smaps_mode: SmapsMode,
    pub smaps_min_rss: u64,
    pub smaps_budget: Duration,
    pub smaps_max_age: Duration,
    pub top_n: usize,
    pub top_n_subgroup: usize,
    pub top_n_others: usize,
    pub search_mode: SearchMode,
    pub search_groups: Vec<String>,
    pub disable_others: bool,
    pub per_process: bool,
    pub min_uss: u64,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            workers: c.effective_parallelism(),
            read_deadline: Settings::read_deadline_for(c.collector_timeout),
            io_buffer: c.io_buffer_kb.max(1) * 1024,
            smaps_buffer: c.smaps_buffer_kb.max(1) * 1024,
            smaps_mode: c.smaps_mode,
            smaps_min_rss: c.smaps_min_rss_kb.saturating_mul(1024),
            smaps_budget: Duration::from_millis(c.smaps_budget_ms),
            smaps_max_age: Duration::from_secs(c.smaps_max_age_secs),
            top_n: c.top_n,
            top_n_subgroup: c.top_n_subgroup,
            top_n_others: c.top_n_others,
            search_mode: c.search_mode,
            search_groups: c.search_groups.clone(),
            disable_others: c.disable_others,
            per_process: c.per_process_metrics,
            min_uss: c.min_uss_kb.saturating_mul(1024),
        }
    }

    /// An eighth of `collector_timeout` (1 s at the default 8 s). A read of
    /// a live process takes microseconds; a `smaps_rollup` of a process
    /// with a terabyte mapped, a few hundred milliseconds. One that takes
    /// longer is blocked, and a scan can meet several of those in a row on
    /// each thread and still finish within the timeout.
    pub fn read_deadline_for(collector_timeout: f64) -> Duration {
        let secs = collector_timeout / 8.0;
        if secs.is_finite() && secs > 0.0 {
            Duration::from_secs_f64(secs.min(3600.0)).max(Duration::from_millis(1))
        } else {
            Duration::from_secs(1)
        }
    }

    /// Whether processes of `group` appear in any series.
    pub fn exported(&self, group: &str) -> bool {
        if self.disable_others && group == OTHER_GROUP {
            return false;
        }
        let listed = self.search_groups.iter().any(|g| g == group);
        match self.search_mode {
            SearchMode::Include => self.search_groups.is_empty() || listed,
            SearchMode::Exclude => !listed,
        }
    }

    /// Ranked processes per subgroup of `group`.
    pub fn top_n_for(&self, group: &str) -> usize {
        if group == OTHER_GROUP {
            self.top_n_others
        } else {
            self.top_n_subgroup
        }
    }
}

/// Cumulative per-process counters, in clock ticks and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub utime: u64,
    pub stime: u64,
    pub io: Io,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.utime = self.utime.saturating_add(o.utime);
        self.stime = self.stime.saturating_add(o.stime);
        self.io.read_bytes = self.io.read_bytes.saturating_add(o.io.read_bytes);
        self.io.write_bytes = self.io.write_bytes.saturating_add(o.io.write_bytes);
        self.io.syscr = self.io.syscr.saturating_add(o.io.syscr);
        self.io.syscw = self.io.syscw.saturating_add(o.io.syscw);
    }
}

/// One process as the collectors see it.
#[derive(Clone, Debug)]
pub struct ProcView {
    pub pid: u32,
    pub comm: String,
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    pub rss: u64,
    /// PSS/USS/swap and the age of that data, when smaps was read.
    pub smaps: Option<(Smaps, Duration)>,
    pub totals: Totals,
    /// Whether `io` was readable (else `totals.io` is zeros).
    pub has_io: bool,
    /// CPU seconds per wall second since the previous scrape; `None` on a
    /// process's first scrape.
    pub cpu_rate: Option<f64>,
}

impl ProcView {
    pub fn pss(&self) -> Option<u64> {
        self.smaps.map(|(s, _)| s.pss)
    }
    pub fn uss(&self) -> Option<u64> {
        self.smaps.map(|(s, _)| s.uss)
    }
}

/// One (group, subgroup).
#[derive(Clone, Debug)]
pub struct GroupView {
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    /// Live members; 0 for a group kept only for its counters.
    pub members: usize,
    pub rss: u64,
    /// Sums over the members whose smaps data is known.
    pub pss: u64,
    pub swap: u64,
    pub cpu_rate: f64,
    /// Live members plus exited ones.
    pub totals: Totals,
}

/// Everything the process collectors export for one scrape.
#[derive(Debug, Default)]
pub struct View {
    pub procs: Vec<ProcView>,
    pub groups: Vec<GroupView>,
    /// Cumulative failed reads per file kind.
    pub errors: ReadErrors,
    /// Cumulative reads given up on after the deadline, per file kind.
    pub timeouts: ReadErrors,
    /// Reads given up on that are still blocked, each costing one thread
    /// and one process left out of the series.
    pub blocked: usize,
    pub scan_seconds: f64,
    pub smaps: Refreshed,
}

struct Seen {
    comm: String,
    exe: String,
    group: Arc<str>,
    subgroup: Arc<str>,
    totals: Totals,
}

#[derive(Default)]
struct State {
    seen: HashMap<Key, Seen>,
    last: Option<Instant>,
    smaps: SmapsCache,
    exited: HashMap<(Arc<str>, Arc<str>), Totals>,
    errors: ReadErrors,
    timeouts: ReadErrors,
}

/// The long-lived process service; see the module documentation.
pub struct ProcessTable {
    pub settings: Settings,
    pub host: Host,
    classifier: Arc<Classifier>,
    state: Mutex<State>,
    /// Reads given up on and still blocked, across scans.
    stuck: Stuck,
}

impl ProcessTable {
    pub fn new(settings: Settings, classifier: Arc<Classifier>) -> ProcessTable {
        ProcessTable {
            settings,
            host: Host::current(),
            classifier,
            state: Mutex::default(),
            stuck: Stuck::default(),
        }
    }

    /// This scrape's view, computed by the first collector that asks.
    pub fn view(&self, ctx: &ScrapeContext) -> Arc<View> {
        ctx.shared(|ctx| self.compute(&ctx.paths().procfs))
    }

    /// Scan and update the state. Runs once per scrape.
    pub fn compute(&self, procfs: &Path) -> View {
        let s = &self.settings;
        let started = Instant::now();
        let limits = pool::Limits {
            workers: s.workers,
            deadline: s.read_deadline,
            stop_at: None,
        };
        let snap = scan(procfs, self.host, limits, s.io_buffer, &self.stuck);
        let scan_seconds = started.elapsed().as_secs_f64();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *st;
        for k in FileKind::ALL {
            st.errors.0[k as usize] += snap.errors.get(k);
            st.timeouts.0[k as usize] += snap.timeouts.get(k);
        }
        let now = Instant::now();
        let wall = st.last.map(|t| now.duration_since(t).as_secs_f64());
        st.last = Some(now);

        let mut procs = Vec::with_capacity(snap.processes.len());
        let mut keys = Vec::with_capacity(snap.processes.len());
        let mut next_seen = HashMap::with_capacity(snap.processes.len());
        for p in snap.processes {
            let key = p.key();
            let prev = st.seen.remove(&key);
            let (group, subgroup) = match &prev {
                Some(o) if o.comm == p.comm && o.exe == p.exe => {
                    (o.group.clone(), o.subgroup.clone())
                }
                _ => {
                    let c = self.classifier.classify(&p.comm, &p.exe, &p.cmdline);
                    (c.group, c.subgroup)
                }
            };
            let totals = Totals {
                utime: p.utime,
                stime: p.stime,
                io: p.io.unwrap_or_default(),
            };
            let mut cpu_rate = None;
            if let Some(o) = prev {
                if o.group != group || o.subgroup != subgroup {
                    // Reclassified (exec): the old group keeps what it saw.
                    retire(
                        s,
                        &mut st.exited,
                        o.group.clone(),
                        o.subgroup.clone(),
                        &o.totals,
                    );
                } else if let Some(w) = wall.filter(|w| *w > 0.0) {
                    let before = o.totals.utime.saturating_add(o.totals.stime);
                    let after = p.utime.saturating_add(p.stime);
                    if after >= before {
                        cpu_rate = Some((after - before) as f64 / self.host.clk_tck / w);
                    }
                }
            }
            // Remembered even when not exported, so that filtered processes
            // are not classified again on every scrape.
            next_seen.insert(
                key,
                Seen {
                    comm: p.comm.clone(),
                    exe: p.exe,
                    group: group.clone(),
                    subgroup: subgroup.clone(),
                    totals,
                },
            );
            if !s.exported(&group) {
                continue;
            }
            if !p.kernel_thread {
                keys.push(key);
            }
            procs.push((
                key,
                ProcView {
                    pid: p.pid,
                    comm: p.comm,
                    group,
                    subgroup,
                    rss: p.rss_bytes,
                    smaps: None,
                    totals,
                    has_io: p.io.is_some(),
                    cpu_rate,
                },
            ));
        }
        // Whatever is left in `seen` exited since the last scrape.
        for (_, o) in st.seen.drain() {
            retire(s, &mut st.exited, o.group, o.subgroup, &o.totals);
        }
        st.seen = next_seen;

        let mut refreshed = Refreshed::default();
        if s.smaps_mode != SmapsMode::Off {
            let candidates = match s.smaps_mode {
                SmapsMode::All => keys,
                _ => self.smaps_candidates(&procs),
            };
            let alive: HashSet<Key> = procs.iter().map(|(k, _)| *k).collect();
            refreshed = st.smaps.refresh(
                procfs,
                &candidates,
                &|k| alive.contains(k),
                Limits {
                    max_age: s.smaps_max_age,
                    budget: s.smaps_budget,
                    workers: s.workers,
                    deadline: s.read_deadline,
                    buffer_bytes: s.smaps_buffer,
                },
                &self.stuck,
            );
            st.errors.0[FileKind::Smaps as usize] += refreshed.unreadable as u64;
            st.timeouts.0[FileKind::Smaps as usize] += refreshed.timed_out as u64;
            let now = Instant::now();
            for (k, p) in &mut procs {
                p.smaps = st.smaps.get(k, now);
            }
        }
        let procs: Vec<ProcView> = procs.into_iter().map(|(_, p)| p).collect();
        let groups = aggregate(&procs, &st.exited);
        View {
            procs,
            groups,
            errors: st.errors,
            timeouts: st.timeouts,
            blocked: self.stuck.blocked(),
            scan_seconds,
            smaps: refreshed,
        }
    }

    /// `smaps_mode: top`: members of some top-N by RSS (per subgroup and
    /// host-wide), processes over `smaps_min_rss`, and every member of a
    /// group named in `search_groups` under `search_mode: include`. RSS
    /// ranks here because PSS is what we are about to learn.
    fn smaps_candidates(&self, procs: &[(Key, ProcView)]) -> Vec<Key> {
        let s = &self.settings;
        let mut pick: HashSet<Key> = HashSet::new();
        let mut by_rss: Vec<&(Key, ProcView)> = procs.iter().filter(|(_, p)| p.rss > 0).collect();
        by_rss.sort_by_key(|e| std::cmp::Reverse(e.1.rss));
        pick.extend(by_rss.iter().take(s.top_n).map(|(k, _)| *k));
        let mut per_sub: HashMap<(&str, &str), usize> = HashMap::new();
        for (k, p) in &by_rss {
            let n = per_sub.entry((&p.group, &p.subgroup)).or_default();
            if *n < s.top_n_for(&p.group) {
                *n += 1;
                pick.insert(*k);
            }
            let searched = s.search_mode == SearchMode::Include
                && s.search_groups.iter().any(|g| **g == *p.group);
            if p.rss >= s.smaps_min_rss || searched {
                pick.insert(*k);
            }
        }
        pick.into_iter().collect()
    }
}

/// Carry a departed member's last values into its group's counters, unless
/// the group is filtered out and so has no counters.
fn retire(
    s: &Settings,
    exited: &mut HashMap<(Arc<str>, Arc<str>), Totals>,
    group: Arc<str>,
    subgroup: Arc<str>,
    t: &Totals,
) {
    if s.exported(&group) {
        exited.entry((group, subgroup)).or_default().add(t);
    }
}

fn aggregate(procs: &[ProcView], exited: &HashMap<(Arc<str>, Arc<str>), Totals>) -> Vec<GroupView> {
    let mut groups: HashMap<(Arc<str>, Arc<str>), GroupView> = HashMap::new();
    let empty = |g: &Arc<str>, s: &Arc<str>| GroupView {
        group: g.clone(),
        subgroup: s.clone(),
        members: 0,
        rss: 0,
        pss: 0,
        swap: 0,
        cpu_rate: 0.0,
        totals: Totals::default(),
    };
    for p in procs {
        let g = groups
            .entry((p.group.clone(), p.subgroup.clone()))
            .or_insert_with(|| empty(&p.group, &p.subgroup));
        g.members += 1;
        g.rss = g.rss.saturating_add(p.rss);
        if let Some((sm, _)) = p.smaps {
            g.pss = g.pss.saturating_add(sm.pss);
            g.swap = g.swap.saturating_add(sm.swap);
        }
        g.cpu_rate += p.cpu_rate.unwrap_or(0.0);
        g.totals.add(&p.totals);
    }
    for ((gr, sg), t) in exited {
        groups
            .entry((gr.clone(), sg.clone()))
            .or_insert_with(|| empty(gr, sg))
            .totals
            .add(t);
    }
    let mut out: Vec<GroupView> = groups.into_values().collect();
    out.sort_by(|a, b| (&a.group, &a.subgroup).cmp(&(&b.group, &b.subgroup)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    /// A `stat` line with the fields the parser reads set.
    fn stat(pid: u32, comm: &str, utime: u64, stime: u64, start: u64, rss_pages: u64) -> String {
        format!(
            "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 {start} 1000000 {rss_pages} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
        )
    }

    struct Proc<'a> {
        pid: u32,
        comm: &'a str,
        exe: &'a str,
        cmdline: &'a [u8],
        ticks: (u64, u64),
        start: u64,
        rss_pages: u64,
        io: Option<&'a str>,
        rollup: Option<&'a str>,
    }

    fn write(root: &Path, p: &Proc) {
        let dir = root.join(p.pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        let s = stat(p.pid, p.comm, p.ticks.0, p.ticks.1, p.start, p.rss_pages);
        fs::write(dir.join("stat"), s).unwrap();
        fs::write(dir.join("cmdline"), p.cmdline).unwrap();
        std::os::unix::fs::symlink(p.exe, dir.join("exe")).unwrap();
        fs::write(dir.join("io"), p.io.unwrap_or("garbage\n")).unwrap();
        if let Some(r) = p.rollup {
            fs::write(dir.join("smaps_rollup"), r).unwrap();
        }
    }

    const IO: &str = "rchar: 1\nwchar: 2\nsyscr: 10\nsyscw: 20\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
    const ROLLUP: &str = "00-ff ---p 0 00:00 0 [rollup]\nRss: 400 kB\nPss: 300 kB\nPrivate_Clean: 50 kB\nPrivate_Dirty: 150 kB\nSwap: 12 kB\n";

    fn postgres(pid: u32, start: u64, ticks: (u64, u64)) -> Proc<'static> {
        Proc {
            pid,
            comm: "postgres",
            exe: "/usr/lib/postgresql/16/bin/postgres (deleted)",
            cmdline: b"postgres: checkpointer\0",
            ticks,
            start,
            rss_pages: 100,
            io: Some(IO),
            rollup: Some(ROLLUP),
        }
    }

    fn table() -> ProcessTable {
        ProcessTable::new(
            Settings::from_config(&Config::default()),
            Arc::new(Classifier::builtin()),
        )
    }

    fn find(v: &View, pid: u32) -> Option<&ProcView> {
        v.procs.iter().find(|p| p.pid == pid)
    }

    fn group<'a>(v: &'a View, g: &str, s: &str) -> &'a GroupView {
        v.groups
            .iter()
            .find(|x| &*x.group == g && &*x.subgroup == s)
            .unwrap()
    }

    #[test]
    fn exact_values_and_classification() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &postgres(100, 5000, (300, 100)));
        write(
            dir.path(),
            &Proc {
                pid: 101,
                comm: "we\"ird) (x",
                exe: "/tmp/a\\b",
                cmdline: b"we\"ird\0--x\xff\0",
                ticks: (1, 2),
                start: 6000,
                rss_pages: 3,
                io: None,
                rollup: Some("garbage\n"),
            },
        );
        let t = table();
        let v = t.compute(dir.path());
        let page = t.host.page_size;
        let p = find(&v, 100).unwrap();
        assert_eq!((&*p.group, &*p.subgroup), ("db", "postgres"));
        assert_eq!(p.rss, 100 * page);
        let (sm, _) = p.smaps.unwrap();
        assert_eq!(
            (sm.rss, sm.pss, sm.uss, sm.swap),
            (400 * 1024, 300 * 1024, 200 * 1024, 12 * 1024)
        );
        assert_eq!(p.totals.io.read_bytes, 4096);
        assert_eq!(p.totals.io.syscw, 20);
        assert_eq!(p.cpu_rate, None, "no rate on first sight");
        let q = find(&v, 101).unwrap();
        assert_eq!(q.comm, "we\"ird) (x");
        assert!(!q.has_io);
        // 101 has garbage io and smaps_rollup.
        assert_eq!(v.errors.get(FileKind::Io), 1);
        assert_eq!(v.errors.get(FileKind::Smaps), 1);
        let g = group(&v, "db", "postgres");
        assert_eq!(
            (g.members, g.rss, g.pss, g.swap),
            (1, 100 * page, 300 * 1024, 12 * 1024)
        );
        assert_eq!((g.totals.utime, g.totals.stime), (300, 100));
    }

    #[test]
    fn pid_reuse_exits_and_honest_counters() {
        let a = tempfile::tempdir().unwrap();
        write(a.path(), &postgres(100, 5000, (300, 100)));
        write(a.path(), &postgres(200, 5100, (1000, 0)));
        let t = table();
        t.compute(a.path());

        // Scrape 2: pid 100 is a new process (new start time, fewer ticks);
        // pid 200 exited.
        let b = tempfile::tempdir().unwrap();
        write(b.path(), &postgres(100, 9000, (5, 5)));
        let v = t.compute(b.path());
        let p = find(&v, 100).unwrap();
        assert_eq!(p.cpu_rate, None, "a reused pid inherits no CPU history");
        let g = group(&v, "db", "postgres");
        assert_eq!(g.members, 1);
        // Live 5+5, exited: first pid 100 (300+100) and pid 200 (1000+0).
        assert_eq!((g.totals.utime, g.totals.stime), (5 + 300 + 1000, 5 + 100));
        assert_eq!(g.totals.io.read_bytes, 3 * 4096);

        // Scrape 3: the same process accumulates ticks: a rate, never negative.
        let c = tempfile::tempdir().unwrap();
        write(c.path(), &postgres(100, 9000, (55, 5)));
        let v = t.compute(c.path());
        assert!(find(&v, 100).unwrap().cpu_rate.unwrap() > 0.0);

        // Scrape 4: the group is empty; its counters remain.
        let d = tempfile::tempdir().unwrap();
        let v = t.compute(d.path());
        let g = group(&v, "db", "postgres");
        assert_eq!(g.members, 0);
        assert_eq!((g.totals.utime, g.totals.stime), (55 + 300 + 1000, 5 + 100));
    }

    #[test]
    fn vanished_process_is_skipped_silently() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &postgres(100, 5000, (1, 1)));
        // A pid directory whose files are gone, as when a process exits
        // between readdir and open.
        fs::create_dir_all(dir.path().join("300")).unwrap();
        let v = table().compute(dir.path());
        assert_eq!(v.procs.len(), 1);
        assert_eq!(v.errors, ReadErrors::default());
    }

    #[test]
    fn search_mode_and_disable_others() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &postgres(100, 5000, (1, 1)));
        let mut other = postgres(101, 5000, (1, 1));
        other.comm = "zzz-unknown";
        other.exe = "/bin/zzz-unknown";
        other.cmdline = b"zzz-unknown\0";
        write(dir.path(), &other);
        let mut c = Config {
            disable_others: true,
            ..Config::default()
        };
        let only = |c: &Config| {
            let t = ProcessTable::new(Settings::from_config(c), Arc::new(Classifier::builtin()));
            let mut pids: Vec<u32> = t.compute(dir.path()).procs.iter().map(|p| p.pid).collect();
            pids.sort();
            pids
        };
        assert_eq!(only(&c), [100]);
        c.disable_others = false;
        c.search_mode = SearchMode::Exclude;
        c.search_groups = vec!["db".into()];
        assert_eq!(only(&c), [101]);
        c.search_mode = SearchMode::Include;
        assert_eq!(only(&c), [100]);
    }

    /// A table whose reads are given up after 100 ms.
    fn impatient(smaps_mode: SmapsMode) -> ProcessTable {
        let c = Config {
            collector_timeout: 0.8,
            smaps_mode,
            smaps_budget_ms: 60_000,
            smaps_max_age_secs: 600,
            ..Config::default()
        };
        let t = ProcessTable::new(Settings::from_config(&c), Arc::new(Classifier::builtin()));
        assert_eq!(t.settings.read_deadline, Duration::from_millis(100));
        t
    }

    /// Replace the FIFO at `path` by a file holding `then`, and release
    /// the reader blocked on it with `now`: the way a blocked read of a
    /// live process returns once the lock it waits for is free.
    fn release(path: &Path, now: &[u8], then: &[u8]) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: fails at once (ENXIO) rather than hang if no
        // reader is waiting.
        let mut writer = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap();
        fs::remove_file(path).unwrap();
        fs::write(path, then).unwrap();
        writer.write_all(now).unwrap();
    }

    /// Wait, without asserting on time, for the blocked reads to return.
    fn until_unblocked(t: &ProcessTable) {
        for _ in 0..1000 {
            if t.stuck.blocked() == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the released read did not return");
    }

    #[test]
    fn a_blocked_read_costs_its_process_until_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        for pid in [100, 101, 102] {
            write(dir.path(), &postgres(pid, 5000 + u64::from(pid), (1, 1)));
        }
        let cmdline = dir.path().join("101/cmdline");
        fs::remove_file(&cmdline).unwrap();
        nix::unistd::mkfifo(&cmdline, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let t = impatient(SmapsMode::Off);
        let pids = |v: &View| {
            let mut p: Vec<u32> = v.procs.iter().map(|p| p.pid).collect();
            p.sort();
            p
        };
        // The scan gives up on 101 and finishes with the others.
        let v = t.compute(dir.path());
        assert_eq!(pids(&v), [100, 102]);
        assert_eq!(v.timeouts.get(FileKind::Cmdline), 1);
        assert_eq!(v.blocked, 1);
        // Later scans skip it without waiting again.
        let v = t.compute(dir.path());
        assert_eq!(pids(&v), [100, 102]);
        assert_eq!(v.timeouts.get(FileKind::Cmdline), 1);
        assert_eq!(v.blocked, 1);
        // Once the read returns, the process is back.
        release(&cmdline, b"", b"postgres: walwriter\0");
        until_unblocked(&t);
        let v = t.compute(dir.path());
        assert_eq!(pids(&v), [100, 101, 102]);
        assert_eq!(v.blocked, 0);
        assert_eq!(v.errors, ReadErrors::default());
    }

    #[test]
    fn a_blocked_smaps_read_delivers_late() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &postgres(100, 5000, (1, 1)));
        write(dir.path(), &postgres(101, 5001, (1, 1)));
        let rollup = dir.path().join("101/smaps_rollup");
        fs::remove_file(&rollup).unwrap();
        nix::unistd::mkfifo(&rollup, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let t = impatient(SmapsMode::All);
        let v = t.compute(dir.path());
        assert!(find(&v, 100).unwrap().smaps.is_some());
        assert!(find(&v, 101).unwrap().smaps.is_none());
        assert_eq!(v.timeouts.get(FileKind::Smaps), 1);
        // While its smaps read blocks, the process is left out: its other
        // files take the same lock.
        let v = t.compute(dir.path());
        assert!(find(&v, 101).is_none());
        let late = "Rss: 40 kB\nPss: 30 kB\nPrivate_Clean: 1 kB\nPrivate_Dirty: 2 kB\nSwap: 3 kB\n";
        release(&rollup, late.as_bytes(), ROLLUP.as_bytes());
        until_unblocked(&t);
        // The late answer is used, and being fresh, not read again.
        let v = t.compute(dir.path());
        let (sm, _) = find(&v, 101).unwrap().smaps.unwrap();
        assert_eq!((sm.pss, sm.uss, sm.swap), (30 * 1024, 3 * 1024, 3 * 1024));
        assert_eq!(v.timeouts.get(FileKind::Smaps), 1);
        assert_eq!(v.errors, ReadErrors::default());
    }
}
