//! Test data: a synthetic host's metrics, written by `generate-testdata` and
//! served by `-t FILE`, so dashboards and alert rules can be built and shown
//! without a busy host.
//!
//! The file is JSON: metric families, each a name, type, help text and
//! samples (labels and a value). A sample may carry a `rate`: while served,
//! its value grows by `rate` per second, so `rate()` and `increase()` in a
//! dashboard show that figure instead of a flat zero. Nothing else is
//! invented at serve time: `-t` serves exactly the file's samples, plus
//! `herakles_testdata_info` saying the data is synthetic.
//!
//! `-t` does not bypass the exporter: the file becomes a collector that
//! replaces the built-in ones, and is served through the same coordinator,
//! HTTP server, gzip and meta-metrics as live data.
//!
//! The generator builds a consistent host, not independent random numbers:
//! processes in every subgroup of the classification rules, group series
//! that are the sums of their members (rates included), top-N series that
//! rank those same processes, and CPU and memory totals that contain them.
//! It is deterministic: the same `--seed` gives the same file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use herakles_core::{Collector, Desc, MetricSink, MetricType, ScrapeContext};
use serde::{Deserialize, Serialize};

use crate::classify::Classifier;

/// `generate-testdata` flags.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Output file
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// Seed for the synthetic values (the same seed gives the same file)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Processes per subgroup, at most
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_per_subgroup: u32,
}

/// A test data file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawTestData")]
pub struct TestData {
    /// Shown in `herakles_testdata_info`.
    pub description: String,
    pub families: Vec<FamilyData>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestData {
    description: String,
    families: Vec<FamilyData>,
}

/// One metric family.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawFamily")]
pub struct FamilyData {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub help: String,
    pub samples: Vec<SampleData>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFamily {
    name: String,
    #[serde(rename = "type")]
    kind: Kind,
    help: String,
    samples: Vec<SampleData>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Gauge,
    Counter,
}

/// One sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleData {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// Growth per second while served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

/// Families the exporter writes itself in every scrape; a file may not
/// define them, or the output would have them twice.
const RESERVED: &[&str] = &[
    "herakles_testdata_info",
    "herakles_scrape_collector_duration_seconds",
    "herakles_scrape_collector_success",
    "herakles_collector_parse_errors_total",
    "herakles_exporter_build_info",
];

const INFO: Desc = Desc::gauge(
    "herakles_testdata_info",
    "Present when the exporter serves synthetic test data (-t) instead of this host's metrics; \
     the value is always 1.",
);

fn valid_name(name: &str, colon: bool) -> bool {
    let mut chars = name.chars();
    let first_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    chars.next().is_some_and(first_ok) && chars.all(|c| first_ok(c) || c.is_ascii_digit())
}

impl TryFrom<RawFamily> for FamilyData {
    type Error = String;
    fn try_from(f: RawFamily) -> Result<FamilyData, String> {
        let name = &f.name;
        if !valid_name(name, true) {
            return Err(format!("invalid metric name {name:?}"));
        }
        if RESERVED.contains(&name.as_str()) || name.starts_with("process_") {
            return Err(format!(
                "family {name}: the exporter writes this family itself"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in f.samples.iter().enumerate() {
            let at = format!("family {name}, sample {i}");
            for label in s.labels.keys() {
                if !valid_name(label, false) || label.starts_with("__") {
                    return Err(format!("{at}: invalid label name {label:?}"));
                }
            }
            if !s.value.is_finite() {
                return Err(format!("{at}: value must be a finite number"));
            }
            match s.rate {
                Some(r) if !r.is_finite() => {
                    return Err(format!("{at}: rate must be a finite number"))
                }
                Some(r) if f.kind == Kind::Counter && r < 0.0 => {
                    return Err(format!("{at}: a counter's rate cannot be negative"))
                }
                _ => {}
            }
            if f.kind == Kind::Counter && s.value < 0.0 {
                return Err(format!("{at}: a counter cannot be negative"));
            }
            if !seen.insert(&s.labels) {
                return Err(format!("{at}: the same labels as an earlier sample"));
            }
        }
        Ok(FamilyData {
            name: f.name,
            kind: f.kind,
            help: f.help,
            samples: f.samples,
        })
    }
}

impl TryFrom<RawTestData> for TestData {
    type Error = String;
    fn try_from(d: RawTestData) -> Result<TestData, String> {
        let mut seen = std::collections::HashSet::new();
        for f in &d.families {
            if !seen.insert(&f.name) {
                return Err(format!("family {} is defined twice", f.name));
            }
        }
        Ok(TestData {
            description: d.description,
            families: d.families,
        })
    }
}

/// A test data file, loaded.
#[derive(Debug)]
pub struct Source {
    pub data: TestData,
    pub file: PathBuf,
}

/// Read and check a test data file. Errors name the file, line, column and
/// the key path (`families[3].samples[0].value`).
pub fn load(path: &Path) -> Result<Source, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let data: TestData = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        format!(
            "{}:{}:{}: {}: {}",
            path.display(),
            inner.line(),
            inner.column(),
            e.path(),
            inner
        )
    })?;
    Ok(Source {
        data,
        file: path.to_path_buf(),
    })
}

/// What `-t` serves: the file's families as a collector.
pub struct TestDataCollector {
    families: Vec<(Desc, FamilyData)>,
    description: String,
    file: String,
    started: Instant,
}

impl TestDataCollector {
    pub fn new(source: Source) -> TestDataCollector {
        let families = source
            .data
            .families
            .into_iter()
            .map(|f| {
                let desc = Desc {
                    name: f.name.clone().into(),
                    help: f.help.clone().into(),
                    kind: match f.kind {
                        Kind::Gauge => MetricType::Gauge,
                        Kind::Counter => MetricType::Counter,
                    },
                };
                (desc, f)
            })
            .collect();
        TestDataCollector {
            families,
            description: source.data.description,
            file: source.file.display().to_string(),
            started: Instant::now(),
        }
    }
}

impl Collector for TestDataCollector {
    fn collect(&self, _: &ScrapeContext, out: &mut MetricSink) -> herakles_core::Result<()> {
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut labels: Vec<(&str, &str)> = Vec::new();
        for (desc, f) in &self.families {
            let mut fam = out.family(desc);
            for s in &f.samples {
                labels.clear();
                labels.extend(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                fam.sample(&labels, s.value + s.rate.unwrap_or(0.0) * elapsed);
            }
        }
        out.family(&INFO).sample(
            &[
                ("file", self.file.as_str()),
                ("description", self.description.as_str()),
            ],
            1.0,
        );
        Ok(())
    }
}

/// `generate-testdata`.
pub fn generate(args: &GenerateArgs, classifier: &Classifier) -> i32 {
    let data = synthetic_host(classifier, args.seed, args.max_per_subgroup as usize);
    let text = match serde_json::to_string_pretty(&data) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if let Err(e) = std::fs::write(&args.output, text + "\n") {
        eprintln!("error: {}: {e}", args.output.display());
        return 1;
    }
    let samples: usize = data.families.iter().map(|f| f.samples.len()).sum();
    println!(
        "wrote {}: {} families, {} samples",
        args.output.display(),
        data.families.len(),
        samples
    );
    0
}

/// xorshift64*: deterministic, dependency-free, good enough for plausible
/// numbers.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Log-uniform: as many small values as large ones per decade.
    fn log_range(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.unit()).exp()
    }
}

/// Families in the order they are first written.
#[derive(Default)]
struct Families {
    list: Vec<FamilyData>,
    index: HashMap<&'static str, usize>,
}

/// A family's name and help, as the real collectors write them.
type Name = (&'static str, &'static str);

impl Families {
    fn add(
        &mut self,
        (name, help): Name,
        kind: Kind,
        labels: &[(&str, &str)],
        value: f64,
        rate: Option<f64>,
    ) {
        let i = *self.index.entry(name).or_insert_with(|| {
            self.list.push(FamilyData {
                name: name.to_string(),
                kind,
                help: help.to_string(),
                samples: Vec::new(),
            });
            self.list.len() - 1
        });
        self.list[i].samples.push(SampleData {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
            rate: rate.map(|r| (r * 1000.0).round() / 1000.0),
        });
    }
    /// A gauge in whole units (bytes, counts).
    fn gauge(&mut self, n: Name, labels: &[(&str, &str)], value: f64) {
        self.add(n, Kind::Gauge, labels, value.round(), None);
    }
    /// A gauge holding a ratio or fraction, to 4 decimals.
    fn ratio(&mut self, n: Name, labels: &[(&str, &str)], value: f64) {
        let v = (value * 10_000.0).round() / 10_000.0;
        self.add(n, Kind::Gauge, labels, v, None);
    }
    /// A counter in whole units that grows by `rate` per second.
    fn counter(&mut self, n: Name, labels: &[(&str, &str)], value: f64, rate: f64) {
        self.add(n, Kind::Counter, labels, value.round(), Some(rate));
    }
}

struct Proc {
    pid: String,
    name: String,
    group: String,
    subgroup: String,
    rss: f64,
    pss: f64,
    uss: f64,
    swap: f64,
    /// CPUs busy (1.0 = one CPU).
    cpu: f64,
    cpu_seconds: f64,
    read: (f64, f64),
    write: (f64, f64),
}

const HOST_CPUS: usize = 8;
const MEM_TOTAL: f64 = 64.0 * 1024.0 * 1024.0 * 1024.0;
const SWAP_TOTAL: f64 = 8.0 * 1024.0 * 1024.0 * 1024.0;
const UPTIME: f64 = 12.5 * 86_400.0;
/// 2026-01-01T00:00:00Z; the host booted UPTIME before it.
const NOW: f64 = 1_767_225_600.0;

const M_RSS: Name = (
    "herakles_mem_process_rss_bytes",
    "Resident set size of the process.",
);
const M_PSS: Name = (
    "herakles_mem_process_pss_bytes",
    "Proportional set size of the process.",
);
const M_USS: Name = (
    "herakles_mem_process_uss_bytes",
    "Unique set size of the process.",
);
const M_SWAP: Name = (
    "herakles_mem_process_swap_bytes",
    "Swapped-out memory of the process.",
);
const CPU_PCT: Name = (
    "herakles_cpu_process_usage_percent",
    "CPU use since the previous scrape, in percent of one CPU.",
);
const CPU_TIME: Name = (
    "herakles_cpu_process_time_seconds",
    "CPU time of the process since it started.",
);
const G_RSS: Name = (
    "herakles_group_memory_rss_bytes",
    "Sum of the RSS of the subgroup's processes.",
);
const G_PSS: Name = (
    "herakles_group_memory_pss_bytes",
    "Sum of the PSS of the subgroup's processes.",
);
const G_SWAP: Name = (
    "herakles_group_memory_swap_bytes",
    "Sum of the swap of the subgroup's processes.",
);
const G_PROCS: Name = (
    "herakles_group_processes",
    "Live processes in the subgroup.",
);
const G_CPU_RATIO: Name = (
    "herakles_group_cpu_usage_ratio",
    "CPU use of the subgroup, as a share of all online CPUs.",
);
const G_CPU: Name = (
    "herakles_group_cpu_seconds_total",
    "CPU time of the subgroup's processes.",
);
const G_READ: Name = (
    "herakles_group_blkio_read_bytes_total",
    "Bytes the subgroup's processes read from storage.",
);
const G_WRITE: Name = (
    "herakles_group_blkio_write_bytes_total",
    "Bytes the subgroup's processes wrote to storage.",
);
const T_RSS: Name = (
    "herakles_mem_top_process_rss_bytes",
    "RSS of the largest processes of each subgroup.",
);
const T_PSS: Name = (
    "herakles_mem_top_process_pss_bytes",
    "PSS of the largest processes of each subgroup.",
);
const T_USS: Name = (
    "herakles_mem_top_process_uss_bytes",
    "USS of the largest processes of each subgroup.",
);
const H_RSS: Name = (
    "herakles_top_mem_process_rss_bytes",
    "Processes with the largest RSS.",
);
const H_PSS: Name = (
    "herakles_top_mem_process_pss_bytes",
    "Processes with the largest PSS.",
);
const PROCESSES: Name = ("herakles_processes", "Processes seen in the last scan.");

/// The synthetic host; see the module documentation.
pub fn synthetic_host(classifier: &Classifier, seed: u64, max_per_subgroup: usize) -> TestData {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut procs = Vec::new();
    let mut pid = 1000u32;
    for sub in classifier.subgroups() {
        let name = sub
            .rules
            .iter()
            .flat_map(|r| r.matches.iter())
            .next()
            .cloned()
            .unwrap_or_else(|| sub.subgroup.to_string());
        let name: String = name.chars().take(15).collect();
        let count = 1 + (rng.unit() * max_per_subgroup as f64) as usize;
        for _ in 0..count.min(max_per_subgroup) {
            pid += 1 + (rng.unit() * 40.0) as u32;
            let rss = rng.log_range(4e6, 1.2e9);
            let pss = rss * rng.range(0.55, 0.95);
            let uss = pss * rng.range(0.5, 0.9);
            let swap = if rng.unit() < 0.7 {
                0.0
            } else {
                rss * rng.range(0.0, 0.1)
            };
            let cpu = rng.log_range(0.0005, 0.2);
            let age = UPTIME * rng.range(0.05, 1.0);
            let read = rng.log_range(100.0, 2e6);
            let write = rng.log_range(100.0, 1e6);
            procs.push(Proc {
                pid: pid.to_string(),
                name: name.clone(),
                group: sub.group.to_string(),
                subgroup: sub.subgroup.to_string(),
                rss,
                pss,
                uss,
                swap,
                cpu,
                cpu_seconds: cpu * age,
                read: (read * age, read),
                write: (write * age, write),
            });
        }
    }

    let mut f = Families::default();
    for p in &procs {
        let l = [
            ("pid", p.pid.as_str()),
            ("name", p.name.as_str()),
            ("group", p.group.as_str()),
            ("subgroup", p.subgroup.as_str()),
        ];
        f.gauge(M_RSS, &l, p.rss);
        f.gauge(M_PSS, &l, p.pss);
        f.gauge(M_USS, &l, p.uss);
        f.gauge(M_SWAP, &l, p.swap);
        f.ratio(CPU_PCT, &l, p.cpu * 100.0);
        f.counter(CPU_TIME, &l, p.cpu_seconds, p.cpu);
    }
    f.gauge(PROCESSES, &[], procs.len() as f64);

    // Groups: sums of their members, rates included.
    let mut groups: BTreeMap<(&str, &str), Vec<&Proc>> = BTreeMap::new();
    for p in &procs {
        groups
            .entry((p.group.as_str(), p.subgroup.as_str()))
            .or_default()
            .push(p);
    }
    for ((group, subgroup), members) in &groups {
        let l = [("group", *group), ("subgroup", *subgroup)];
        let sum = |k: fn(&Proc) -> f64| members.iter().map(|p| k(p)).sum::<f64>();
        f.gauge(G_RSS, &l, sum(|p| p.rss));
        f.gauge(G_PSS, &l, sum(|p| p.pss));
        f.gauge(G_SWAP, &l, sum(|p| p.swap));
        f.gauge(G_PROCS, &l, members.len() as f64);
        f.ratio(G_CPU_RATIO, &l, sum(|p| p.cpu) / HOST_CPUS as f64);
        for (mode, share) in [("user", 0.7), ("system", 0.3)] {
            let lm = [l[0], l[1], ("mode", mode)];
            f.counter(
                G_CPU,
                &lm,
                sum(|p| p.cpu_seconds) * share,
                sum(|p| p.cpu) * share,
            );
        }
        f.counter(G_READ, &l, sum(|p| p.read.0), sum(|p| p.read.1));
        f.counter(G_WRITE, &l, sum(|p| p.write.0), sum(|p| p.write.1));
        let mut ranked: Vec<&&Proc> = members.iter().collect();
        ranked.sort_by(|a, b| b.rss.total_cmp(&a.rss));
        for (i, p) in ranked.iter().take(3).enumerate() {
            let rank = (i + 1).to_string();
            let lt = [
                l[0],
                l[1],
                ("rank", &rank),
                ("pid", &p.pid),
                ("comm", &p.name),
            ];
            f.gauge(T_RSS, &lt, p.rss);
            f.gauge(T_PSS, &lt, p.pss);
            f.gauge(T_USS, &lt, p.uss);
        }
    }
    for (name, key) in [
        (H_RSS, (|p: &Proc| p.rss) as fn(&Proc) -> f64),
        (H_PSS, |p| p.pss),
    ] {
        let mut ranked: Vec<&Proc> = procs.iter().collect();
        ranked.sort_by(|a, b| key(b).total_cmp(&key(a)));
        for (i, p) in ranked.iter().take(10).enumerate() {
            let rank = (i + 1).to_string();
            let l = [
                ("group", p.group.as_str()),
                ("subgroup", p.subgroup.as_str()),
                ("rank", &rank),
                ("pid", &p.pid),
                ("comm", &p.name),
            ];
            f.gauge(name, &l, key(p));
        }
    }

    let busy: f64 = procs.iter().map(|p| p.cpu).sum::<f64>();
    let used: f64 = procs.iter().map(|p| p.pss).sum::<f64>();
    system(&mut f, &mut rng, busy, used);

    TestData {
        description: format!(
            "synthetic host from herakles-node-exporter {} generate-testdata --seed {seed}: \
             {} processes in {} subgroups",
            env!("CARGO_PKG_VERSION"),
            procs.len(),
            groups.len()
        ),
        families: f.list,
    }
}

/// Whole-machine series around the processes: CPU time that contains their
/// CPU use, memory that contains their PSS, disks, filesystems, network.
fn system(f: &mut Families, rng: &mut Rng, busy_cpus: f64, used_bytes: f64) {
    let per_cpu_busy = (busy_cpus / HOST_CPUS as f64).min(0.9);
    for cpu in 0..HOST_CPUS {
        let c = cpu.to_string();
        let busy = (per_cpu_busy * rng.range(0.8, 1.2)).min(0.95);
        let iowait = rng.range(0.001, 0.02);
        let steal = rng.range(0.0, 0.005);
        let idle = (1.0 - busy - iowait - steal).max(0.0);
        let modes = [
            ("user", busy * 0.68),
            ("nice", busy * 0.02),
            ("system", busy * 0.25),
            ("irq", busy * 0.01),
            ("softirq", busy * 0.04),
            ("idle", idle),
            ("iowait", iowait),
            ("steal", steal),
        ];
        for (mode, share) in modes {
            f.counter(
                (
                    "herakles_system_cpu_seconds_total",
                    "CPU time per CPU and mode.",
                ),
                &[("cpu", &c), ("mode", mode)],
                share * UPTIME,
                share,
            );
        }
        let l = [("cpu", c.as_str())];
        f.ratio(
            (
                "herakles_system_cpu_usage_ratio",
                "Share of time the CPU was busy.",
            ),
            &l,
            busy,
        );
        f.ratio(
            (
                "herakles_system_cpu_idle_ratio",
                "Share of time the CPU was idle.",
            ),
            &l,
            idle,
        );
        f.ratio(
            (
                "herakles_system_cpu_iowait_ratio",
                "Share of time the CPU waited for I/O.",
            ),
            &l,
            iowait,
        );
        f.ratio(
            (
                "herakles_system_cpu_steal_ratio",
                "Share of time stolen by the hypervisor.",
            ),
            &l,
            steal,
        );
    }
    let load = busy_cpus.max(0.1);
    for (name, factor) in [
        ("herakles_system_cpu_load_1", 1.1),
        ("herakles_system_cpu_load_5", 1.0),
        ("herakles_system_cpu_load_15", 0.9),
    ] {
        f.ratio((name, "Load average."), &[], load * factor);
    }
    f.counter(
        (
            "herakles_system_cpu_psi_wait_seconds_total",
            "Time some task waited for a CPU (PSI).",
        ),
        &[],
        UPTIME * 0.004,
        0.004,
    );

    let available = (MEM_TOTAL - used_bytes * 1.3).max(MEM_TOTAL * 0.05);
    let cached = (available * 0.6).round();
    let buffers = (available * 0.03).round();
    let free = (available - cached - buffers).max(0.0);
    for (name, help, v) in [
        (
            "herakles_system_memory_total_bytes",
            "Total usable memory.",
            MEM_TOTAL,
        ),
        (
            "herakles_system_memory_available_bytes",
            "Memory available for new work.",
            available,
        ),
        ("herakles_system_memory_free_bytes", "Unused memory.", free),
        ("herakles_system_memory_cached_bytes", "Page cache.", cached),
        (
            "herakles_system_memory_buffers_bytes",
            "Block device buffers.",
            buffers,
        ),
        (
            "herakles_system_swap_total_bytes",
            "Total swap.",
            SWAP_TOTAL,
        ),
        (
            "herakles_system_swap_free_bytes",
            "Unused swap.",
            SWAP_TOTAL * 0.93,
        ),
    ] {
        f.gauge((name, help), &[], v);
    }
    f.ratio(
        (
            "herakles_system_memory_used_ratio",
            "Share of memory not available.",
        ),
        &[],
        1.0 - available / MEM_TOTAL,
    );
    for (name, rate) in [
        ("herakles_system_memory_psi_wait_seconds_total", 0.0008),
        ("herakles_system_memory_psi_full_wait_seconds_total", 0.0002),
    ] {
        f.counter(
            (name, "Time tasks waited for memory (PSI)."),
            &[],
            UPTIME * rate,
            rate,
        );
    }

    for (dev, scale) in [("nvme0n1", 1.0), ("sda", 0.2)] {
        let l = [("device", dev)];
        let reads = rng.range(200.0, 800.0) * scale;
        let writes = rng.range(100.0, 500.0) * scale;
        let per_disk = [
            (
                "herakles_system_disk_reads_completed_total",
                "Reads completed.",
                reads,
            ),
            (
                "herakles_system_disk_writes_completed_total",
                "Writes completed.",
                writes,
            ),
            (
                "herakles_system_disk_read_bytes_total",
                "Bytes read.",
                reads * 16_384.0,
            ),
            (
                "herakles_system_disk_write_bytes_total",
                "Bytes written.",
                writes * 24_576.0,
            ),
            (
                "herakles_system_disk_io_time_seconds_total",
                "Time the device was busy.",
                0.05 * scale,
            ),
            (
                "herakles_system_disk_read_time_seconds_total",
                "Time spent reading.",
                reads * 0.0002,
            ),
            (
                "herakles_system_disk_write_time_seconds_total",
                "Time spent writing.",
                writes * 0.0004,
            ),
        ];
        for (name, help, rate) in per_disk {
            f.counter((name, help), &l, rate * UPTIME, rate);
        }
        f.ratio(
            ("herakles_system_disk_queue_depth", "I/Os in progress."),
            &l,
            (2.0 * scale).round(),
        );
    }
    for (name, rate) in [
        ("herakles_system_disk_psi_wait_seconds_total", 0.003),
        ("herakles_system_disk_psi_full_wait_seconds_total", 0.001),
    ] {
        f.counter(
            (name, "Time tasks waited for I/O (PSI)."),
            &[],
            UPTIME * rate,
            rate,
        );
    }

    for (device, mountpoint, fstype, size_gib, used_share) in [
        ("/dev/nvme0n1p2", "/", "ext4", 480.0, 0.42),
        ("/dev/nvme0n1p1", "/boot/efi", "vfat", 0.5, 0.01),
        ("/dev/sda1", "/var/lib/postgresql", "xfs", 2000.0, 0.71),
        ("tmpfs", "/run", "tmpfs", 6.4, 0.002),
    ] {
        let l = [
            ("device", device),
            ("mountpoint", mountpoint),
            ("fstype", fstype),
        ];
        let size: f64 = size_gib * 1024.0 * 1024.0 * 1024.0;
        let free = size * (1.0 - used_share);
        let files = (size / 16_384.0).round();
        let per_fs = [
            (
                "herakles_system_filesystem_size_bytes",
                "Filesystem size.",
                size,
            ),
            ("herakles_system_filesystem_free_bytes", "Free bytes.", free),
            (
                "herakles_system_filesystem_avail_bytes",
                "Bytes available to unprivileged users.",
                free * 0.95,
            ),
            ("herakles_system_filesystem_files", "Inodes.", files),
            (
                "herakles_system_filesystem_files_free",
                "Free inodes.",
                files * (1.0 - used_share / 3.0),
            ),
            (
                "herakles_system_filesystem_readonly",
                "1 if mounted read-only.",
                0.0,
            ),
            (
                "herakles_system_filesystem_device_error",
                "1 if statfs failed.",
                0.0,
            ),
        ];
        for (name, help, v) in per_fs {
            f.gauge((name, help), &l, v);
        }
    }

    for (iface, rx, tx) in [("eth0", 4.2e6, 1.9e6), ("lo", 3.0e5, 3.0e5)] {
        let l = [("iface", iface)];
        let per_iface = [
            ("herakles_system_net_rx_bytes_total", "Bytes received.", rx),
            ("herakles_system_net_tx_bytes_total", "Bytes sent.", tx),
            (
                "herakles_system_net_rx_packets_total",
                "Packets received.",
                rx / 900.0,
            ),
            (
                "herakles_system_net_tx_packets_total",
                "Packets sent.",
                tx / 700.0,
            ),
            (
                "herakles_system_net_rx_errors_total",
                "Receive errors.",
                0.0,
            ),
            (
                "herakles_system_net_tx_errors_total",
                "Transmit errors.",
                0.0,
            ),
        ];
        for (name, help, rate) in per_iface {
            f.counter((name, help), &l, rate * UPTIME, rate);
        }
        for (direction, rate) in [("rx", rx / 9e8), ("tx", 0.0)] {
            f.counter(
                (
                    "herakles_system_net_drops_total",
                    "Packets dropped, by direction.",
                ),
                &[("iface", iface), ("direction", direction)],
                rate * UPTIME,
                rate,
            );
        }
    }

    for (state, n) in [
        ("established", 184.0),
        ("syn_sent", 1.0),
        ("syn_recv", 0.0),
        ("fin_wait1", 0.0),
        ("fin_wait2", 3.0),
        ("time_wait", 57.0),
        ("close", 0.0),
        ("close_wait", 2.0),
        ("last_ack", 0.0),
        ("listen", 31.0),
        ("closing", 0.0),
    ] {
        let name: &'static str = match state {
            "established" => "herakles_system_tcp_connections_established",
            "syn_sent" => "herakles_system_tcp_connections_syn_sent",
            "syn_recv" => "herakles_system_tcp_connections_syn_recv",
            "fin_wait1" => "herakles_system_tcp_connections_fin_wait1",
            "fin_wait2" => "herakles_system_tcp_connections_fin_wait2",
            "time_wait" => "herakles_system_tcp_connections_time_wait",
            "close" => "herakles_system_tcp_connections_close",
            "close_wait" => "herakles_system_tcp_connections_close_wait",
            "last_ack" => "herakles_system_tcp_connections_last_ack",
            "listen" => "herakles_system_tcp_connections_listen",
            _ => "herakles_system_tcp_connections_closing",
        };
        f.gauge((name, "TCP sockets in this state."), &[], n);
    }

    f.gauge(
        (
            "herakles_system_boot_time_seconds",
            "Boot time, seconds since the epoch.",
        ),
        &[],
        NOW - UPTIME,
    );
    f.add(
        ("herakles_system_uptime_seconds", "Seconds since boot."),
        Kind::Gauge,
        &[],
        UPTIME,
        Some(1.0),
    );
    f.gauge(
        (
            "herakles_system_uname_info",
            "Kernel identification; the value is always 1.",
        ),
        &[
            ("sysname", "Linux"),
            ("release", "6.1.0-synthetic"),
            ("version", "#1 SMP PREEMPT_DYNAMIC synthetic"),
            ("machine", "x86_64"),
        ],
        1.0,
    );
    f.counter(
        (
            "herakles_system_context_switches_total",
            "Context switches.",
        ),
        &[],
        9_000.0 * UPTIME,
        9_000.0,
    );
    f.counter(
        ("herakles_system_forks_total", "Processes created."),
        &[],
        12.0 * UPTIME,
        12.0,
    );
    f.gauge(
        ("herakles_system_entropy_bits", "Entropy available."),
        &[],
        256.0,
    );
    for (state, v) in [("allocated", 9_824.0), ("max", 9.223_372_036_854_776e18)] {
        f.gauge(
            ("herakles_system_open_fds", "Open file handles."),
            &[("state", state)],
            v,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier() -> Classifier {
        Classifier::builtin()
    }

    #[test]
    fn every_subgroup_has_processes_and_groups_sum_their_members() {
        let c = classifier();
        let data = synthetic_host(&c, 7, 3);
        let fam = |n: &str| data.families.iter().find(|f| f.name == n).unwrap();
        let rss = fam("herakles_mem_process_rss_bytes");
        for sub in c.subgroups() {
            let members: Vec<&SampleData> = rss
                .samples
                .iter()
                .filter(|s| {
                    s.labels["group"] == *sub.group && s.labels["subgroup"] == *sub.subgroup
                })
                .collect();
            assert!(
                !members.is_empty(),
                "{}/{} has no process",
                sub.group,
                sub.subgroup
            );
            let sum: f64 = members.iter().map(|s| s.value).sum();
            let group = fam("herakles_group_memory_rss_bytes")
                .samples
                .iter()
                .find(|s| s.labels["group"] == *sub.group && s.labels["subgroup"] == *sub.subgroup)
                .unwrap();
            // Each value is rounded separately; the sum may differ by one per member.
            assert!(
                (group.value - sum).abs() <= members.len() as f64,
                "{} vs {sum}",
                group.value
            );
        }
    }

    #[test]
    fn same_seed_same_file_and_round_trip() {
        let c = classifier();
        let a = serde_json::to_string(&synthetic_host(&c, 3, 2)).unwrap();
        assert_eq!(a, serde_json::to_string(&synthetic_host(&c, 3, 2)).unwrap());
        assert_ne!(a, serde_json::to_string(&synthetic_host(&c, 4, 2)).unwrap());
        let back: TestData = serde_json::from_str(&a).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), a);
    }

    fn load_str(text: &str) -> Result<Source, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        std::fs::write(&p, text).unwrap();
        load(&p).map_err(|e| e.replace(&p.display().to_string(), "FILE"))
    }

    #[test]
    fn bad_files_name_line_and_key() {
        let err = load_str(
            "{\"description\": \"x\",\n \"families\": [{\"name\": \"a\", \"type\": \"gauge\", \
             \"help\": \"h\",\n \"samples\": [{\"value\": \"high\"}]}]}",
        )
        .unwrap_err();
        assert!(err.starts_with("FILE:3:"), "{err}");
        assert!(err.contains("families[0].samples[0].value"), "{err}");

        let err = load_str(
            "{\"description\": \"x\", \"families\": [{\"name\": \"a-b\", \"type\": \"gauge\", \
             \"help\": \"h\", \"samples\": []}]}",
        )
        .unwrap_err();
        assert!(
            err.contains("families[0]") && err.contains("invalid metric name"),
            "{err}"
        );

        for (body, want) in [
            (
                r#"{"name":"c_total","type":"counter","help":"","samples":[{"value":-1}]}"#,
                "cannot be negative",
            ),
            (
                r#"{"name":"c_total","type":"counter","help":"","samples":[{"value":1,"rate":-2}]}"#,
                "rate cannot be negative",
            ),
            (
                r#"{"name":"g","type":"gauge","help":"","samples":[{"value":1},{"value":2}]}"#,
                "same labels",
            ),
            (
                r#"{"name":"g","type":"gauge","help":"","samples":[{"labels":{"__x":"1"},"value":1}]}"#,
                "invalid label name",
            ),
            (
                r#"{"name":"process_open_fds","type":"gauge","help":"","samples":[]}"#,
                "writes this family itself",
            ),
            (
                r#"{"name":"g","type":"summary","help":"","samples":[]}"#,
                "unknown variant",
            ),
            (
                r#"{"name":"g","type":"gauge","help":"","samples":[],"extra":1}"#,
                "unknown field",
            ),
        ] {
            let err =
                load_str(&format!("{{\"description\":\"x\",\"families\":[{body}]}}")).unwrap_err();
            assert!(err.contains(want), "{body}: {err}");
            assert!(err.starts_with("FILE:1:"), "{err}");
        }
        let err = load_str(
            r#"{"description":"x","families":[{"name":"g","type":"gauge","help":"","samples":[]},{"name":"g","type":"gauge","help":"","samples":[]}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("defined twice"), "{err}");
    }
}
