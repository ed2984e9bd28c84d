//! State kept between scrapes, and the per-scrape [`View`] every process
//! collector reads.
//!
//! [`ProcessTable`] is one long-lived service (`BuildContext::service`)
//! shared by the process collectors. Once per scrape (`ScrapeContext::shared`)
//! it scans `/proc`, learns where new and due processes run
//! ([`super::placement`]), classifies, computes CPU rates, refreshes smaps
//! data and aggregates groups, containers, pods, units and users
//! ([`super::aggregate`]) into a [`View`]; the collectors only format it.
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
//!
//! Context switches are counted per thread, and a thread's counts vanish
//! with it. So a process's count grows, from one scrape to the next, by
//! each live thread's increase (all of a new thread's counts), and a
//! thread that exited takes only its last increments with it: the count
//! never goes down.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herakles_core::ScrapeContext;

use super::aggregate::{self, Carried};
use super::parse::{CtxSwitches, FileKind, Key};
use super::placement::{self, Due, Interner, Placed};
use super::pool::{self, Stuck};
use super::smaps::{Limits, Refreshed, SmapsCache};
use super::snapshot::{scan, Host, Process, ReadErrors, Reads};
use super::view::{ProcView, Totals, View};
use crate::classify::{Classification, Classifier, OTHER_GROUP};
use crate::config::{Config, Dimension, SearchMode, SmapsMode};

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
    pub max_process_series: usize,
    pub process_labels: Vec<Dimension>,
    pub attribution: bool,
    pub recheck_scrapes: u64,
    pub aggregates: Vec<Dimension>,
    pub open_fds: bool,
    pub ctx_switches: bool,
    /// Where the host's `/etc/passwd` is, under `--path.rootfs`.
    pub rootfs: PathBuf,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        let on = |dims: &[Dimension]| {
            let mut dims = dims.to_vec();
            dims.sort();
            dims.dedup();
            if c.attribution {
                dims
            } else {
                Vec::new()
            }
        };
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
            max_process_series: c.max_process_series,
            process_labels: on(&c.process_labels),
            attribution: c.attribution,
            recheck_scrapes: c.attribution_recheck_scrapes.max(1),
            aggregates: on(&c.attribution_aggregates),
            open_fds: c.process_open_fds,
            ctx_switches: c.process_context_switches,
            rootfs: c.paths.rootfs.clone(),
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

struct Seen {
    /// [`placement::exec_stamp`] of its comm and exe, to notice an exec.
    stamp: u64,
    group: Arc<str>,
    subgroup: Arc<str>,
    totals: Totals,
    /// Each thread's context switches as read last.
    ctx_read: Option<Vec<(u32, CtxSwitches)>>,
    placed: Placed,
}

struct State {
    seen: HashMap<Key, Seen>,
    last: Option<Instant>,
    smaps: SmapsCache,
    exited: HashMap<(Arc<str>, Arc<str>), Totals>,
    carried: Carried,
    errors: ReadErrors,
    timeouts: ReadErrors,
    /// Scrapes so far, for taking turns at rereading placement.
    scrapes: u64,
    /// What the next scan reads placement for.
    due: Arc<Due>,
    interner: Interner,
    capped_total: u64,
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
        let state = State {
            seen: HashMap::new(),
            last: None,
            smaps: SmapsCache::default(),
            exited: HashMap::new(),
            carried: Carried::default(),
            errors: ReadErrors::default(),
            timeouts: ReadErrors::default(),
            scrapes: 0,
            due: Arc::new(Due {
                period: settings.recheck_scrapes,
                cgroup: settings.attribution,
                uid: settings.attribution,
                limits: settings.open_fds,
                ..Due::default()
            }),
            interner: Interner::new(&settings.rootfs),
            capped_total: 0,
        };
        ProcessTable {
            settings,
            host: Host::current(),
            classifier,
            state: Mutex::new(state),
            stuck: Stuck::default(),
        }
    }

    /// This scrape's view, computed by the first collector that asks.
    pub fn view(&self, ctx: &ScrapeContext) -> Arc<View> {
        ctx.shared(|ctx| self.compute(&ctx.paths().procfs))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        let reads = Reads {
            open_fds: s.open_fds,
            fds_by_size: s.open_fds && crate::attribution::fds::is_procfs(procfs),
            ctx_switches: s.ctx_switches,
            placement: self.lock().due.clone(),
        };
        let snap = scan(procfs, self.host, limits, s.io_buffer, &self.stuck, &reads);
        let scan_seconds = started.elapsed().as_secs_f64();
        let mut st = self.lock();
        let st = &mut *st;
        for k in FileKind::ALL {
            st.errors.0[k as usize] += snap.errors.get(k);
            st.timeouts.0[k as usize] += snap.timeouts.get(k);
        }
        let now = Instant::now();
        let wall = st.last.map(|t| now.duration_since(t).as_secs_f64());
        st.last = Some(now);
        let users_changed = st.interner.refresh_users();
        for file in snap
            .processes
            .iter()
            .filter_map(|p| p.placement.as_ref()?.cgroup.as_ref())
        {
            st.interner.learn(file);
        }

        let mut procs = Vec::with_capacity(snap.processes.len());
        let mut keys = Vec::with_capacity(snap.processes.len());
        let mut next_seen = HashMap::with_capacity(snap.processes.len());
        for p in snap.processes {
            let key = p.key();
            let prev = st.seen.remove(&key);
            let stamp = placement::exec_stamp(&p.comm, &p.exe);
            let placed = self.place(&mut st.interner, prev.as_ref(), &p, users_changed);
            let (group, subgroup) = match &prev {
                Some(o) if o.stamp == stamp && self.same_rules(&o.placed, &placed) => {
                    (o.group.clone(), o.subgroup.clone())
                }
                _ => {
                    let c = self.classify(&p, &placed);
                    (c.group, c.subgroup)
                }
            };
            let has_ctx = p.ctx_switches.is_some();
            let ctx = match &p.ctx_switches {
                Some(now) => {
                    let before = prev.as_ref().and_then(|o| o.ctx_read.as_deref());
                    let reported = prev.as_ref().map(|o| o.totals.ctx).unwrap_or_default();
                    grow(reported, before, now)
                }
                None => CtxSwitches::default(),
            };
            let totals = Totals {
                utime: p.utime,
                stime: p.stime,
                io: p.io.unwrap_or_default(),
                minflt: p.minflt,
                majflt: p.majflt,
                ctx,
            };
            let mut cpu_rate = None;
            if let Some(o) = &prev {
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
                if s.exported(&o.group) {
                    // Moved (or exec'd into another user): the entity left
                    // keeps what it saw.
                    for &dim in &s.aggregates {
                        let old = aggregate::entity_id(dim, &o.placed);
                        if old.is_some() && old != aggregate::entity_id(dim, &placed) {
                            st.carried.retire(dim, old.unwrap_or_default(), &o.totals);
                        }
                    }
                }
            }
            // Remembered even when not exported, so that filtered processes
            // are not classified again on every scrape.
            next_seen.insert(
                key,
                Seen {
                    stamp,
                    group: group.clone(),
                    subgroup: subgroup.clone(),
                    totals,
                    ctx_read: p.ctx_switches,
                    placed: placed.clone(),
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
                    state: p.state,
                    threads: p.num_threads,
                    vsize: p.vsize,
                    starttime: p.starttime,
                    open_fds: p.open_fds,
                    has_ctx,
                    placed,
                },
            ));
        }
        // Whatever is left in `seen` exited since the last scrape.
        for (_, o) in st.seen.drain() {
            if s.exported(&o.group) {
                for &dim in &s.aggregates {
                    if let Some(id) = aggregate::entity_id(dim, &o.placed) {
                        st.carried.retire(dim, id, &o.totals);
                    }
                }
            }
            retire(s, &mut st.exited, o.group, o.subgroup, &o.totals);
        }
        st.scrapes += 1;
        st.seen = next_seen;
        st.due = Arc::new(Due {
            known: st.seen.iter().map(|(k, o)| (*k, o.stamp)).collect(),
            scrape: st.scrapes,
            period: s.recheck_scrapes,
            cgroup: s.attribution,
            uid: s.attribution,
            limits: s.open_fds,
            files: Mutex::new(st.interner.collect()),
        });

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
        let groups = aggregate::groups(&procs, &st.exited);
        let entities = aggregate::entities(&procs, &s.aggregates, &mut st.carried);
        let (shown, capped) = self.shown(&procs);
        st.capped_total += capped as u64;
        View {
            procs,
            groups,
            entities,
            shown,
            capped,
            capped_total: st.capped_total,
            boot_time: boot_time(procfs),
            errors: st.errors,
            timeouts: st.timeouts,
            blocked: self.stuck.blocked(),
            scan_seconds,
            smaps: refreshed,
        }
    }

    /// Where `p` runs: what is known of it, updated by what this scan read.
    fn place(
        &self,
        interner: &mut Interner,
        prev: Option<&Seen>,
        p: &Process,
        users_changed: bool,
    ) -> Placed {
        let mut placed = prev.map(|o| o.placed.clone()).unwrap_or_default();
        if let Some(read) = &p.placement {
            interner.apply(&mut placed, read);
        }
        if self.settings.attribution && p.kernel_thread && placed.uid.is_none() {
            // Kernel threads all run as root; nothing to read.
            placed.uid = Some(0);
            placed.user = Some(interner.user(0));
        }
        if users_changed {
            if let Some(uid) = placed.uid {
                placed.user = Some(interner.user(uid));
            }
        }
        placed
    }

    /// Whether the rules see no difference between two placements.
    fn same_rules(&self, a: &Placed, b: &Placed) -> bool {
        !self.classifier.uses_placement() || a.same_place(b)
    }

    fn classify(&self, p: &Process, placed: &Placed) -> Classification {
        if self.classifier.uses_placement() {
            let view = placed.rule_view();
            self.classifier
                .classify_placed(&p.comm, &p.exe, &p.cmdline, &view)
        } else {
            self.classifier.classify(&p.comm, &p.exe, &p.cmdline)
        }
    }

    /// The processes that get per-process series, and how many more would
    /// have but for `max_process_series`: those using the most memory are
    /// kept, as they are the ones worth a series of their own.
    fn shown(&self, procs: &[ProcView]) -> (Vec<usize>, usize) {
        let s = &self.settings;
        if !s.per_process {
            return (Vec::new(), 0);
        }
        let mut shown: Vec<usize> = (0..procs.len())
            .filter(|&i| procs[i].memory() >= s.min_uss)
            .collect();
        let capped = shown.len().saturating_sub(s.max_process_series);
        if capped > 0 {
            shown.sort_by_key(|&i| (std::cmp::Reverse(procs[i].memory()), procs[i].pid));
            shown.truncate(s.max_process_series);
            shown.sort_unstable();
        }
        (shown, capped)
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

/// A process's context switch count, given the count `reported` last time
/// and each thread's counts read then (`before`, `None` the first time)
/// and now: see the module documentation.
fn grow(
    reported: CtxSwitches,
    before: Option<&[(u32, CtxSwitches)]>,
    now: &[(u32, CtxSwitches)],
) -> CtxSwitches {
    let Some(before) = before else {
        return now.iter().fold(CtxSwitches::default(), |mut sum, (_, c)| {
            sum.voluntary = sum.voluntary.saturating_add(c.voluntary);
            sum.involuntary = sum.involuntary.saturating_add(c.involuntary);
            sum
        });
    };
    let mut out = reported;
    for (tid, c) in now {
        let was = match before.binary_search_by_key(tid, |(t, _)| *t) {
            Ok(i) => before[i].1,
            Err(_) => CtxSwitches::default(),
        };
        // Less than before: the thread id was reused; count from zero.
        let (v, i) = if c.voluntary < was.voluntary || c.involuntary < was.involuntary {
            (c.voluntary, c.involuntary)
        } else {
            (c.voluntary - was.voluntary, c.involuntary - was.involuntary)
        };
        out.voluntary = out.voluntary.saturating_add(v);
        out.involuntary = out.involuntary.saturating_add(i);
    }
    out
}

/// `btime` of `<procfs>/stat`: when the host booted, in seconds since the
/// epoch, which start times in clock ticks after boot are relative to.
fn boot_time(procfs: &Path) -> Option<f64> {
    // A line per CPU and a dozen more: a megabyte is some 10,000 CPUs.
    let text = herakles_core::read_text(procfs.join("stat"), 1 << 20).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::view::{EntityView, GroupView};
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

    // ------------------------------------------------------------ placement

    const CID: &str = "4f1ab5d3c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5";
    const CID2: &str = "0853fad78812e955b92d871d8d597d9bc598e34320c9edbfab0a73eacf150145";
    const POD: &str = "73dc8baf-43a0-413e-aac2-5eb0868f6c1a";

    /// A process that is only what placement tests need: `comm`, a stat
    /// with `state`, threads and faults, and the placement files.
    fn placed_proc(root: &Path, pid: u32, comm: &str, cgroup: &str, uid: u32) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("stat"),
            format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 30 0 2 0 10 5 0 0 20 0 4 0 {} 1000000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n", 1000 + pid),
        )
        .unwrap();
        fs::write(dir.join("cmdline"), format!("{comm}\0")).unwrap();
        let _ = fs::remove_file(dir.join("exe"));
        std::os::unix::fs::symlink(format!("/usr/bin/{comm}"), dir.join("exe")).unwrap();
        fs::write(dir.join("io"), IO).unwrap();
        fs::write(dir.join("cgroup"), cgroup).unwrap();
        fs::write(
            dir.join("status"),
            format!("Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
        )
        .unwrap();
    }

    /// A table reading `rootfs/etc/passwd`, with `config` applied.
    fn placing_table(rootfs: &Path, config: impl FnOnce(&mut Config)) -> ProcessTable {
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        let mut c = Config::default();
        c.paths.rootfs = rootfs.to_path_buf();
        config(&mut c);
        ProcessTable::new(Settings::from_config(&c), Arc::new(Classifier::builtin()))
    }

    fn entity<'a>(v: &'a View, dim: Dimension, id: &str) -> Option<&'a EntityView> {
        v.entities
            .iter()
            .find(|e| e.dim == dim && e.labels.iter().any(|(_, v)| v == id))
    }

    #[test]
    fn placement_per_runtime_format() {
        let proc_dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let p = proc_dir.path();
        let kube = format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope\n", POD.replace('-', "_"));
        placed_proc(p, 10, "app", &kube, 1000);
        placed_proc(p, 11, "app", &kube, 1000);
        let docker = format!("9:name=systemd:/docker/{CID2}\n4:memory:/docker/{CID2}\n0::/system.slice/containerd.service\n");
        placed_proc(p, 12, "nginx", &docker, 0);
        placed_proc(
            p,
            13,
            "cron",
            "1:name=systemd:/system.slice/cron.service\n0::/system.slice/cron.service\n",
            0,
        );
        placed_proc(p, 14, "sh", "0::/\n", 4242);
        let v = placing_table(root.path(), |_| {}).compute(p);

        let a = find(&v, 10).unwrap().placed.attribution.clone().unwrap();
        let c = a.identity.container.as_ref().unwrap();
        assert_eq!((c.runtime.as_str(), c.id.as_str()), ("containerd", CID));
        assert_eq!(a.identity.pod.as_ref().unwrap().uid, POD);
        let b = find(&v, 11).unwrap().placed.attribution.clone().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one attribution per distinct file");

        let pod = entity(&v, Dimension::Pod, POD).unwrap();
        assert_eq!(pod.members, 2);
        assert!(pod.labels.contains(&("qos_class", "burstable".into())));
        assert_eq!(pod.totals.utime, 20);
        let docker = v
            .entities
            .iter()
            .find(|e| e.labels.contains(&("container_runtime", "docker".into())))
            .unwrap();
        assert_eq!(docker.members, 1);
        let containerd = entity(&v, Dimension::Container, CID).unwrap();
        assert!(containerd
            .labels
            .contains(&("container_runtime", "containerd".into())));
        assert!(containerd.labels.contains(&("pod_uid", POD.into())));
        assert_eq!(
            v.entities
                .iter()
                .filter(|e| e.dim == Dimension::Container)
                .count(),
            2
        );
        assert_eq!(
            entity(&v, Dimension::Unit, "cron.service").unwrap().members,
            1
        );
        assert_eq!(
            entity(&v, Dimension::Unit, "containerd.service")
                .unwrap()
                .members,
            1,
            "a hybrid host tracks units by the v2 path"
        );
        assert_eq!(entity(&v, Dimension::User, "alice").unwrap().members, 2);
        assert_eq!(entity(&v, Dimension::User, "root").unwrap().members, 2);
        assert_eq!(entity(&v, Dimension::User, "4242").unwrap().members, 1);
        assert_eq!(v.errors, ReadErrors::default());
    }

    #[test]
    fn exec_rereads_at_once_a_move_within_the_period() {
        let proc_dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let p = proc_dir.path();
        let (a, b) = (
            "0::/system.slice/a.service\n",
            "0::/system.slice/b.service\n",
        );
        // pid 17: 17 mod 3 = 2, so its turn comes at scrape numbers 2, 5...
        placed_proc(p, 17, "runc", a, 0);
        let t = placing_table(root.path(), |c| c.attribution_recheck_scrapes = 3);
        let unit = |v: &View| {
            let a = find(v, 17).unwrap().placed.attribution.clone().unwrap();
            a.unit().unwrap().to_string()
        };
        assert_eq!(unit(&t.compute(p)), "a.service");
        // Moved without exec: seen at its turn, not before.
        placed_proc(p, 17, "runc", b, 0);
        assert_eq!(unit(&t.compute(p)), "a.service", "scrape 1: not its turn");
        assert_eq!(unit(&t.compute(p)), "b.service", "scrape 2: its turn");
        // Exec (a new comm and exe): read at once.
        placed_proc(p, 17, "app", a, 1000);
        let v = t.compute(p);
        assert_eq!(unit(&v), "a.service");
        assert_eq!(find(&v, 17).unwrap().placed.user.as_deref(), Some("alice"));
        // The unit left keeps the counters of what left it; a unit with no
        // live member is forgotten.
        assert!(entity(&v, Dimension::Unit, "b.service").is_none());
        assert_eq!(
            entity(&v, Dimension::Unit, "a.service")
                .unwrap()
                .totals
                .utime,
            10
        );
    }

    #[test]
    fn placement_rules_reclassify_on_a_move() {
        let proc_dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let rules = root.path().join("rules.toml");
        fs::write(
            &rules,
            "subgroups = [{ group = \"batch\", subgroup = \"backup\", unit_matches = ['backup\\.service'] }]\n",
        )
        .unwrap();
        let classifier = Classifier::load(&crate::classify::RuleSources {
            explicit: Some(rules),
            search_default_locations: false,
        })
        .unwrap();
        let mut c = Config::default();
        c.paths.rootfs = root.path().to_path_buf();
        c.attribution_recheck_scrapes = 1;
        let t = ProcessTable::new(Settings::from_config(&c), Arc::new(classifier));
        let p = proc_dir.path();
        placed_proc(p, 20, "zz-tar", "0::/system.slice/other.service\n", 0);
        let v = t.compute(p);
        assert_eq!(&*find(&v, 20).unwrap().group, "other");
        placed_proc(p, 20, "zz-tar", "0::/system.slice/backup.service\n", 0);
        let v = t.compute(p);
        assert_eq!(
            (
                &*find(&v, 20).unwrap().group,
                &*find(&v, 20).unwrap().subgroup
            ),
            ("batch", "backup")
        );
        // The group it left keeps its counters.
        assert_eq!(group(&v, "other", "unknown").totals.utime, 10);
    }

    #[test]
    fn attribution_off_reads_nothing() {
        let proc_dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let p = proc_dir.path();
        placed_proc(p, 10, "app", "0::/system.slice/a.service\n", 0);
        // Unreadable placement files would count as errors if read.
        fs::remove_file(p.join("10/cgroup")).unwrap();
        fs::create_dir(p.join("10/cgroup")).unwrap();
        let t = placing_table(root.path(), |c| {
            c.attribution = false;
            c.process_open_fds = false;
        });
        let v = t.compute(p);
        assert!(find(&v, 10).unwrap().placed.attribution.is_none());
        assert!(v.entities.is_empty());
        assert_eq!(v.errors, ReadErrors::default());
        // On, the same file is an error of its kind.
        let v = placing_table(root.path(), |_| {}).compute(p);
        assert_eq!(v.errors.get(FileKind::Cgroup), 1);
    }

    #[test]
    fn zombies_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        placed_proc(dir.path(), 30, "defunct", "0::/\n", 0);
        let stat = dir.path().join("30/stat");
        let text = fs::read_to_string(&stat).unwrap().replace(") S ", ") Z ");
        fs::write(&stat, text).unwrap();
        // A zombie's exe link is gone: ENOENT, though the process is there.
        fs::remove_file(dir.path().join("30/exe")).unwrap();
        let v = placing_table(root.path(), |_| {}).compute(dir.path());
        let z = find(&v, 30).expect("the zombie is in the table");
        assert_eq!(z.state, b'Z');
        assert_eq!(group(&v, &z.group, &z.subgroup).states, [0, 0, 0, 1, 0]);
        assert_eq!(v.errors, ReadErrors::default());
    }

    #[test]
    fn group_facts_like_process_exporter() {
        let dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let p = dir.path();
        for pid in [40, 41] {
            placed_proc(p, pid, "zz-svc", "0::/\n", 0);
            fs::write(
                p.join(format!("{pid}/limits")),
                format!(
                    "Max open files            {}                 4096                 files\n",
                    100 * (pid - 39)
                ),
            )
            .unwrap();
            let fd = p.join(format!("{pid}/fd"));
            fs::create_dir(&fd).unwrap();
            for n in 0..(pid - 30) {
                fs::write(fd.join(n.to_string()), "").unwrap();
            }
        }
        let v = placing_table(root.path(), |_| {}).compute(p);
        let g = group(&v, "other", "unknown");
        assert_eq!((g.members, g.threads, g.vsize), (2, 8, 2_000_000));
        assert_eq!((g.totals.minflt, g.totals.majflt), (60, 4));
        assert_eq!(g.states, [0, 2, 0, 0, 0]);
        // A fixture directory's size is not its entry count: listed.
        assert_eq!(g.open_fds, Some(10 + 11));
        // 10 of 100 and 11 of 200: the worse of the two.
        assert_eq!(g.worst_fd_ratio, Some(0.1));
        assert_eq!(g.oldest_start, Some(1040));
    }

    #[test]
    fn context_switches_sum_threads_and_never_drop() {
        let dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let p = dir.path();
        placed_proc(p, 50, "zz-mt", "0::/\n", 0);
        // Four threads in stat; their counts in task/<tid>/status.
        let thread = |tid: u32, vol: u64, invol: u64| {
            let d = p.join(format!("50/task/{tid}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(
                d.join("status"),
                format!("Name:\tzz-mt\nUid:\t7\t7\t7\t7\nvoluntary_ctxt_switches:\t{vol}\nnonvoluntary_ctxt_switches:\t{invol}\n"),
            )
            .unwrap();
        };
        for tid in 50..54 {
            thread(tid, 10, 1);
        }
        let t = placing_table(root.path(), |c| c.process_context_switches = true);
        let v = t.compute(p);
        let ctx = |v: &View| {
            let c = find(v, 50).unwrap().totals.ctx;
            (c.voluntary, c.involuntary)
        };
        assert_eq!(ctx(&v), (40, 4));
        assert_eq!(find(&v, 50).unwrap().placed.uid, Some(7), "from the leader");
        // A thread exits, another one switches 5 times more, a new one
        // starts: the sum over live threads drops, the count does not.
        fs::remove_dir_all(p.join("50/task/53")).unwrap();
        thread(52, 15, 1);
        thread(60, 3, 2);
        assert_eq!(ctx(&t.compute(p)), (48, 6));
        let v = t.compute(p);
        assert_eq!(ctx(&v), (48, 6));
        assert_eq!(group(&v, "other", "unknown").totals.ctx.voluntary, 48);
    }

    #[test]
    fn the_cap_keeps_the_largest_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        for pid in 100..110u32 {
            let mut pr = postgres(pid, 5000 + u64::from(pid), (1, 1));
            pr.rss_pages = u64::from(pid);
            pr.rollup = None;
            write(dir.path(), &pr);
        }
        let c = Config {
            max_process_series: 3,
            smaps_mode: SmapsMode::Off,
            ..Config::default()
        };
        let t = ProcessTable::new(Settings::from_config(&c), Arc::new(Classifier::builtin()));
        let v = t.compute(dir.path());
        let pids: Vec<u32> = v.shown.iter().map(|&i| v.procs[i].pid).collect();
        assert_eq!(pids, [107, 108, 109]);
        assert_eq!((v.capped, v.capped_total), (7, 7));
        let v = t.compute(dir.path());
        assert_eq!((v.capped, v.capped_total), (7, 14));
        // Groups still count every process.
        assert_eq!(group(&v, "db", "postgres").members, 10);
    }
}
