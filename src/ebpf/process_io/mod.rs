//! Per-process network and block I/O from `bpf/process_io.bpf.c`.
//!
//! [`ProcessIo`] is one long-lived service (`BuildContext::service`) that
//! loads the programs once, attaches the parts switched on
//! (`enable_ebpf_network` → "network", `enable_ebpf_disk` → "disk"), and
//! records each part's state in the shared [`Status`](super::Status). It
//! never fails the exporter's build: a part that cannot run is `Failed` with
//! a reason and its series are absent.
//!
//! Once per scrape ([`ProcessIo::view`]) it reads the live per-process
//! counters from the BPF maps, joins them with the process table (pid →
//! comm, group, subgroup) and adds to each subgroup the final counters of
//! members that exited, which the kernel side hands over through a ring
//! buffer when a process's last thread exits. A poller thread drains that
//! ring buffer every [`POLL`] so it cannot overflow between scrapes; the
//! scrape drains it too, after reading the maps, so a process that exits
//! mid-scrape is counted once (its final record supersedes its live entry).
//!
//! The service is started with its [`Settings`], a typed value made from
//! the configuration: the part switches, and the map sizes the user sets in
//! the `ebpf_io` collector's section ([`ProcessIoConfig`]). Whichever
//! collector asks for the service first, the settings are the same.
//!
//! The files: `records.rs` decodes what the kernel side hands over (the C
//! structs), `loader.rs` is the libbpf side (loading, attaching, reading
//! the maps, the exit poller), `stub.rs` stands in for it in a build
//! without the `ebpf` feature, and this file is the service the collectors
//! read.

mod records;

#[cfg(feature = "ebpf")]
mod loader;
#[cfg(not(feature = "ebpf"))]
mod stub;
#[cfg(not(feature = "ebpf"))]
use stub as loader;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herakles_core::{BuildContext, Paths, Result, ScrapeContext};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PartState, Status};
use crate::classify::Classifier;
use crate::config::Config;
use crate::process::{self, ProcessTable};
pub use records::{
    devname_from_uevent, major_minor, parse_exit_record, parse_io, parse_net, DevIo, Exited, Net,
};

/// Part names in `/health` and `check --ebpf`.
pub const NETWORK: &str = "network";
pub const DISK: &str = "disk";

/// How often the poller thread drains the exit ring buffer.
pub const POLL: Duration = Duration::from_millis(100);

/// How often the poller samples the event counters for `/health`'s rate,
/// and how far back that rate looks: long enough to smooth bursts, short
/// enough that a change shows within seconds.
pub const RATE_SAMPLE: Duration = Duration::from_secs(1);
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The `ebpf_io` collector's section: sizes of the kernel-side maps. The
/// maps are LRU hashes, so these bound memory however many processes run;
/// past them the least recently active process loses its counters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessIoConfig {
    /// Processes tracked at once, per map (network and block I/O each):
    /// about 48 bytes (network) and 160 bytes (block) per entry. Entries of
    /// exited processes are removed when they exit, so this is the number of
    /// live processes that do I/O, with headroom.
    #[schemars(range(min = 1, max = 4194304))]
    pub max_processes: u32,
    /// Ring buffer for the final counters of exiting processes, in KiB
    /// (rounded up to a power of two); 232 bytes per exit.
    /// Drained every 100 ms, so the default holds about 4,500 exits in
    /// that time; an exit that finds it full is counted in
    /// herakles_ebpf_events_dropped_total.
    #[schemars(range(min = 4, max = 262144))]
    pub exit_buffer_kb: u32,
    /// Switch on the kernel's BPF run-time statistics (BPF_ENABLE_STATS)
    /// while the exporter runs, for herakles_ebpf_cpu_seconds_total. Off by
    /// default because the switch is host-wide and not free: every run of
    /// every BPF program on the host then reads the clock twice. Measured on
    /// a 2-core VM (docs/benchmarks.md), a 64-byte UDP storm lost about 4%
    /// with an empty program on its tracepoints and 13% with statistics on.
    pub cpu_stats: bool,
}

impl Default for ProcessIoConfig {
    fn default() -> ProcessIoConfig {
        ProcessIoConfig {
            max_processes: 10240,
            exit_buffer_kb: 1024,
            cpu_stats: false,
        }
    }
}

/// What the service is started with; see the module documentation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `enable_ebpf`: the master switch.
    pub enable_ebpf: bool,
    /// `enable_ebpf_network` and `enable_ebpf_disk`: the parts' switches.
    pub network: bool,
    pub disk: bool,
    /// Sizes of the kernel-side maps, from the `ebpf_io` section.
    pub sizes: ProcessIoConfig,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        Settings {
            enable_ebpf: c.enable_ebpf,
            network: c.enable_ebpf_network,
            disk: c.enable_ebpf_disk,
            sizes: c
                .collectors
                .section::<ProcessIoConfig>()
                .unwrap_or_default(),
        }
    }
}

/// One process's counters as the collectors see them.
#[derive(Clone, Debug)]
pub struct ProcIo {
    pub pid: u32,
    pub comm: String,
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    /// `None` when the network part is off or the process did no socket I/O.
    pub net: Option<Net>,
    /// (device name, counters), empty when the disk part is off or the
    /// process did no block I/O.
    pub io: Vec<(Arc<str>, DevIo)>,
}

/// Network totals of one subgroup, live members plus exited ones.
#[derive(Clone, Debug)]
pub struct GroupNet {
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    pub net: Net,
}

/// Self-monitoring counters of the programs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub processed: u64,
    pub dropped: u64,
    pub maps: u64,
    /// Present while run-time statistics are on (`cpu_stats`).
    pub cpu_seconds: Option<f64>,
}

/// The event counters at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Instant,
    /// The same moment as Unix time, for `/health`.
    pub unix: f64,
    pub processed: u64,
}

/// Samples of the last [`RATE_WINDOW`], oldest first, from which `/health`
/// computes events per second. Sampled by the poller thread on its own
/// clock, so the rate does not depend on who reads `/health` or how often.
#[derive(Debug, Default)]
pub struct EventRate {
    samples: VecDeque<Sample>,
}

/// Events over the window the samples span.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Window {
    /// Unix times of the first and last sample.
    pub from: f64,
    pub to: f64,
    pub seconds: f64,
    /// Events processed between the two.
    pub events: u64,
    pub per_second: f64,
}

impl EventRate {
    pub fn push(&mut self, sample: Sample) {
        self.samples.push_back(sample);
        while self
            .samples
            .front()
            .is_some_and(|first| sample.at.duration_since(first.at) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// The rate over the samples kept; `None` until two samples apart in
    /// time exist.
    pub fn window(&self) -> Option<Window> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        let seconds = last.at.duration_since(first.at).as_secs_f64();
        if seconds <= 0.0 {
            return None;
        }
        let events = last.processed.saturating_sub(first.processed);
        Some(Window {
            from: first.unix,
            to: last.unix,
            seconds,
            events,
            per_second: events as f64 / seconds,
        })
    }
}

/// What `/health` shows of the programs' own activity.
#[derive(Clone, Debug)]
pub struct Activity {
    /// The counters now: herakles_ebpf_events_{processed,dropped}_total.
    pub stats: Stats,
    pub window: Option<Window>,
    /// Usage of each hash map.
    pub maps: Vec<super::MapUsage>,
}

/// Everything one scrape exports, after search_mode/disable_others.
#[derive(Debug, Default)]
pub struct IoView {
    pub network: bool,
    pub disk: bool,
    pub procs: Vec<ProcIo>,
    pub groups: Vec<GroupNet>,
    pub stats: Stats,
}

/// Raw map contents of one scrape, keyed by tgid.
#[derive(Debug, Default)]
pub struct Raw {
    pub net: HashMap<u32, Net>,
    pub io: HashMap<u32, Vec<DevIo>>,
    /// Final counters of processes that exited, in arrival order.
    pub exited: Vec<Exited>,
    pub stats: Stats,
}

/// Per-subgroup network totals kept between scrapes.
#[derive(Default)]
struct Groups {
    /// Final counters of members that exited.
    exited: HashMap<(Arc<str>, Arc<str>), Net>,
    /// The last totals exported, so a member briefly missing from both the
    /// process table and the exit records (it exited between the /proc scan
    /// and our map read) never makes a counter go down.
    last: HashMap<(Arc<str>, Arc<str>), Net>,
    /// tgid → (group, subgroup) of processes seen in the last scrape, for
    /// classifying their exit records after /proc has forgotten them.
    known: HashMap<u32, (Arc<str>, Arc<str>)>,
}

/// The loader service; see the module documentation.
pub struct ProcessIo {
    table: Arc<ProcessTable>,
    classifier: Arc<Classifier>,
    loader: loader::Loader,
    groups: Arc<Mutex<Groups>>,
    devices: Mutex<HashMap<u64, Arc<str>>>,
    sysfs: std::path::PathBuf,
}

/// The exporter's one [`ProcessIo`], loading the programs on first request
/// with the [`Settings`] of the exporter's configuration.
pub fn service(ctx: &BuildContext) -> Result<Arc<ProcessIo>> {
    let table = process::table(ctx)?;
    let classifier = process::classifier(ctx)?;
    let status = super::status(ctx);
    ctx.service(|ctx| {
        let config = ctx.globals::<Config>().cloned().unwrap_or_default();
        let settings = Settings::from_config(&config);
        Ok(ProcessIo::start(
            &settings,
            table,
            classifier,
            &status,
            ctx.paths(),
        ))
    })
}

/// Add exit records to their subgroups' carried totals.
fn fold_exited(
    groups: &Mutex<Groups>,
    classifier: &Classifier,
    table: &ProcessTable,
    records: Vec<Exited>,
) {
    let mut g = groups.lock().unwrap_or_else(|e| e.into_inner());
    for r in records {
        // Forgotten on every exit, network or not: the pid is free now, and
        // a process that gets it next must not inherit this one's group.
        let known = g.known.remove(&r.tgid);
        let Some(net) = r.net else { continue };
        let key = match known {
            Some(k) => k,
            // Lived and died between two scrapes: only its comm is left.
            None => {
                let c = classifier.classify(&r.comm, &r.comm, "");
                (c.group, c.subgroup)
            }
        };
        if table.settings.exported(&key.0) {
            g.exited.entry(key).or_default().add(&net);
        }
    }
}

/// A scrape's view, shared by every collector reading it.
struct Shared(Option<Arc<IoView>>);

impl ProcessIo {
    /// Load and attach the parts `settings` switch on, recording each
    /// part's state in `status`.
    pub fn start(
        settings: &Settings,
        table: Arc<ProcessTable>,
        classifier: Arc<Classifier>,
        status: &Status,
        paths: &Paths,
    ) -> ProcessIo {
        let groups = Arc::new(Mutex::new(Groups::default()));
        let fold = {
            let groups = groups.clone();
            let classifier = classifier.clone();
            let table = table.clone();
            move |records: Vec<Exited>| fold_exited(&groups, &classifier, &table, records)
        };
        let loader = loader::Loader::start(settings, paths, status, Box::new(fold));
        ProcessIo {
            table,
            classifier,
            loader,
            groups,
            devices: Mutex::default(),
            sysfs: paths.sysfs.clone(),
        }
    }

    /// Whether per-process series are wanted (`per_process_metrics`).
    pub fn per_process(&self) -> bool {
        self.table.settings.per_process
    }

    /// Whether any part runs.
    pub fn active(&self) -> bool {
        self.loader.active()
    }

    /// The programs' activity for `/health`; `None` when no part runs.
    pub fn activity(&self) -> Option<Activity> {
        self.loader.activity()
    }

    /// The tgids in the network and block maps now, for tests and the
    /// bench to check that exited processes are gone.
    pub fn tracked(&self) -> Option<(Vec<u32>, Vec<u32>)> {
        let raw = self.read()?;
        Some((
            raw.net.keys().copied().collect(),
            raw.io.keys().copied().collect(),
        ))
    }

    /// The maps' contents with this read's exit records folded into the
    /// group totals (they supersede the live entries read just before).
    fn read(&self) -> Option<Raw> {
        let mut raw = self.loader.read()?;
        let exited = std::mem::take(&mut raw.exited);
        for e in &exited {
            raw.net.remove(&e.tgid);
            raw.io.remove(&e.tgid);
        }
        fold_exited(&self.groups, &self.classifier, &self.table, exited);
        Some(raw)
    }

    /// This scrape's view, computed by the first collector that asks;
    /// `None` when no part runs.
    pub fn view(&self, ctx: &ScrapeContext) -> Option<Arc<IoView>> {
        ctx.shared(|ctx| Shared(self.compute(ctx).map(Arc::new)))
            .0
            .clone()
    }

    fn compute(&self, ctx: &ScrapeContext) -> Option<IoView> {
        let procs = self.table.view(ctx);
        let raw = self.read()?;
        let mut g = self.groups.lock().unwrap_or_else(|e| e.into_inner());

        let mut out = Vec::new();
        let mut live: HashMap<(Arc<str>, Arc<str>), Net> = HashMap::new();
        let mut known = HashMap::new();
        for p in &procs.procs {
            let net = raw.net.get(&p.pid).copied();
            let io = raw.io.get(&p.pid);
            if net.is_none() && io.is_none() {
                continue;
            }
            known.insert(p.pid, (p.group.clone(), p.subgroup.clone()));
            if let Some(n) = &net {
                live.entry((p.group.clone(), p.subgroup.clone()))
                    .or_default()
                    .add(n);
            }
            let io = io
                .map(|v| v.iter().map(|d| (self.device(d.dev), *d)).collect())
                .unwrap_or_default();
            out.push(ProcIo {
                pid: p.pid,
                comm: p.comm.clone(),
                group: p.group.clone(),
                subgroup: p.subgroup.clone(),
                net,
                io,
            });
        }
        // Processes gone from /proc whose exit record has not arrived yet
        // keep their group for when it does.
        for (pid, k) in std::mem::take(&mut g.known) {
            if raw.net.contains_key(&pid) && !known.contains_key(&pid) {
                known.insert(pid, k);
            }
        }
        g.known = known;
        let mut totals = g.exited.clone();
        for (k, n) in live {
            totals.entry(k).or_default().add(&n);
        }
        let mut groups: Vec<GroupNet> = Vec::with_capacity(totals.len());
        for (k, mut n) in totals {
            let last = g.last.entry(k.clone()).or_default();
            n.rx_bytes = n.rx_bytes.max(last.rx_bytes);
            n.tx_bytes = n.tx_bytes.max(last.tx_bytes);
            *last = n;
            groups.push(GroupNet {
                group: k.0,
                subgroup: k.1,
                net: n,
            });
        }
        groups.sort_by(|a, b| (&a.group, &a.subgroup).cmp(&(&b.group, &b.subgroup)));
        Some(IoView {
            network: self.loader.network(),
            disk: self.loader.disk(),
            procs: out,
            groups,
            stats: raw.stats,
        })
    }

    /// The block device name of `dev` (`vda`), from sysfs, cached; `MAJ:MIN`
    /// when sysfs does not know it.
    fn device(&self, dev: u64) -> Arc<str> {
        let mut cache = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(dev)
            .or_insert_with(|| {
                let (major, minor) = major_minor(dev);
                let path = self.sysfs.join(format!("dev/block/{major}:{minor}/uevent"));
                // A uevent is a few short lines.
                herakles_core::read_text(path, 64 << 10)
                    .ok()
                    .and_then(|t| devname_from_uevent(&t).map(Arc::from))
                    .unwrap_or_else(|| Arc::from(format!("{major}:{minor}")))
            })
            .clone()
    }

    /// Detach the programs and free the maps; later views are `None`.
    pub fn shutdown(&self) {
        self.loader.shutdown();
    }
}

/// State of a part the config switched off or the build left out.
fn off(settings: &Settings, paths: &Paths, enabled: bool, switch: &str) -> Option<PartState> {
    super::preflight(settings.enable_ebpf, paths, enabled, switch).err()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate is over the samples of the last window, whoever reads it
    /// and whenever.
    #[test]
    fn the_rate_spans_the_last_window_of_samples() {
        let t0 = Instant::now();
        let mut r = EventRate::default();
        let sample = |secs: u64, processed: u64| Sample {
            at: t0 + Duration::from_secs(secs),
            unix: 1000.0 + secs as f64,
            processed,
        };
        r.push(sample(0, 50));
        assert_eq!(r.window(), None, "one sample is no rate");
        r.push(sample(1, 150));
        let w = r.window().unwrap();
        assert_eq!((w.events, w.seconds, w.per_second), (100, 1.0, 100.0));
        for s in 2..=12 {
            r.push(sample(s, 150 + (s - 1) * 30));
        }
        // Samples 2 to 12: the window is the last ten seconds.
        let w = r.window().unwrap();
        assert_eq!((w.from, w.to, w.seconds), (1002.0, 1012.0, 10.0));
        assert_eq!(w.events, 300);
        assert_eq!(w.per_second, 30.0);
    }

    /// The map sizes come from the `ebpf_io` section, found by its type.
    #[test]
    fn settings_take_the_sizes_the_user_set() {
        let mut c = Config::default();
        assert_eq!(Settings::from_config(&c).sizes.max_processes, 10240);
        c.collectors.0.get_mut("ebpf_io").unwrap().config = Box::new(ProcessIoConfig {
            max_processes: 7,
            ..ProcessIoConfig::default()
        });
        assert_eq!(Settings::from_config(&c).sizes.max_processes, 7);
    }

    /// A pid freed by a process that only did disk I/O and reused by one
    /// that lived between two scrapes: the second one's bytes go to its
    /// own subgroup, not the first one's.
    #[test]
    fn a_reused_pid_does_not_inherit_a_group() {
        let classifier = crate::classify::Classifier::builtin();
        let table = ProcessTable::new(
            crate::process::Settings::from_config(&Config::default()),
            Arc::new(crate::classify::Classifier::builtin()),
        );
        let groups = Mutex::new(Groups::default());
        let db: (Arc<str>, Arc<str>) = (Arc::from("db"), Arc::from("postgres"));
        groups.lock().unwrap().known.insert(300, db.clone());
        let exit = |comm: &str, net: Option<Net>| Exited {
            tgid: 300,
            comm: comm.into(),
            net,
            io: Vec::new(),
        };
        let net = Net {
            tx_bytes: 1,
            ..Net::default()
        };
        fold_exited(
            &groups,
            &classifier,
            &table,
            vec![exit("postgres", None), exit("curl", Some(net))],
        );
        let c = classifier.classify("curl", "curl", "");
        assert_ne!((&*c.group, &*c.subgroup), ("db", "postgres"));
        let g = groups.lock().unwrap();
        assert_eq!(g.exited[&(c.group, c.subgroup)].tx_bytes, 1);
        assert!(!g.exited.contains_key(&db));
        assert!(g.known.is_empty());
    }
}
