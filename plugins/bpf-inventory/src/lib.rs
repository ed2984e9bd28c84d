//! Every eBPF program and map on the host: how many of each type, how much
//! memory the kernel charges for them, and optionally one series per object.
//!
//! The walk is the one bpftool does: `BPF_{PROG,MAP}_GET_NEXT_ID` lists the
//! ids, `*_GET_FD_BY_ID` opens each object, `BPF_OBJ_GET_INFO_BY_FD` reads
//! its type, name and (for programs) the maps it uses, and the fd's
//! `/proc/self/fdinfo` entry gives the `memlock` bytes. Each fd is closed as
//! soon as its object has been read.
//!
//! The host's objects change under us: an object unloaded between its id
//! being listed and being opened is skipped, not counted as an error. The
//! walk needs `CAP_SYS_ADMIN` (or `CAP_BPF`); without it the collector fails
//! with the kernel's reason and nothing else in the exporter is affected.
//!
//! The metric names follow spec 004 (`odigos.ebpf.*`) under the prefix
//! `herakles_bpf_inventory_`, the collector's name, which keeps them apart
//! from the exporter's own `herakles_ebpf_*` series about the programs it
//! loads itself. Gauges lose the spec's `_total` (a Prometheus name ending
//! in `_total` is a counter), and the duration is in seconds, the
//! Prometheus base unit.

mod sys;

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, Registration, Result,
    ScrapeContext,
};
use serde::{Deserialize, Serialize};

pub use sys::{type_name, Kind};

const PROGRAMS: Desc = Desc::gauge(
    "herakles_bpf_inventory_programs",
    "eBPF programs loaded on the host, by program type.",
);
const PROGRAMS_MEMORY: Desc = Desc::gauge(
    "herakles_bpf_inventory_programs_memory_bytes",
    "Memory the kernel charges for eBPF programs (fdinfo memlock), by program type.",
);
const MAPS: Desc = Desc::gauge(
    "herakles_bpf_inventory_maps",
    "eBPF maps on the host, by map type.",
);
const MAPS_MEMORY: Desc = Desc::gauge(
    "herakles_bpf_inventory_maps_memory_bytes",
    "Memory the kernel charges for eBPF maps (fdinfo memlock), by map type.",
);
const PROGRAM_MEMORY: Desc = Desc::gauge(
    "herakles_bpf_inventory_program_memory_bytes",
    "Memory the kernel charges for one eBPF program (fdinfo memlock).",
);
const MAP_MEMORY: Desc = Desc::gauge(
    "herakles_bpf_inventory_map_memory_bytes",
    "Memory the kernel charges for one eBPF map (fdinfo memlock).",
);
const ERRORS: Desc = Desc::counter(
    "herakles_bpf_inventory_collection_errors_total",
    "Objects that could not be read, and walks that failed as a whole.",
);
const DURATION: Desc = Desc::histogram(
    "herakles_bpf_inventory_collection_duration_seconds",
    "Time taken to walk the host's eBPF programs and maps.",
);
const LIMIT_HIT: Desc = Desc::counter(
    "herakles_bpf_inventory_collection_limit_hit_total",
    "Collections that stopped inspecting objects of a kind at max_programs or max_maps.",
);
const SKIPPED: Desc = Desc::gauge(
    "herakles_bpf_inventory_collection_skipped_objects",
    "Objects of a kind left uninspected by the last collection because of the cap.",
);

/// Upper bounds of the duration histogram, in seconds: a walk costs a few
/// syscalls per object, from tens of microseconds on an idle host to tens
/// of milliseconds with thousands of objects.
const BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// The `collectors.bpf_inventory` config section.
#[derive(Debug, Clone, Serialize, Deserialize, herakles_core::schemars::JsonSchema)]
#[schemars(crate = "herakles_core::schemars")]
#[serde(default, deny_unknown_fields)]
pub struct BpfInventoryConfig {
    /// Also expose one `herakles_bpf_inventory_program_memory_bytes` series per
    /// program, labelled with its id, name, type and the ids of the maps it
    /// uses. Off by default: ids change on every reload, so each reload
    /// starts new series.
    pub per_program: bool,
    /// Also expose one `herakles_bpf_inventory_map_memory_bytes` series per map,
    /// labelled with its id, name, type, key and value size and max entries.
    /// Off by default for the same reason as `per_program`.
    pub per_map: bool,
    /// Only count programs whose kernel name (at most 15 bytes) starts with
    /// one of these, and the maps those programs use or whose own name
    /// starts with one of these. Empty counts every object on the host.
    pub name_prefixes: Vec<String>,
    /// Inspect at most this many programs per collection. Each costs three
    /// syscalls and a small file read; past the cap the ids are only
    /// counted, as `herakles_bpf_inventory_collection_skipped_objects`.
    #[schemars(range(min = 0, max = 1048576))]
    pub max_programs: usize,
    /// Inspect at most this many maps per collection; see `max_programs`.
    #[schemars(range(min = 0, max = 1048576))]
    pub max_maps: usize,
}

impl Default for BpfInventoryConfig {
    fn default() -> Self {
        BpfInventoryConfig {
            per_program: false,
            per_map: false,
            name_prefixes: Vec::new(),
            max_programs: 4096,
            max_maps: 4096,
        }
    }
}

/// See the crate documentation.
pub struct BpfInventory {
    config: BpfInventoryConfig,
    state: Mutex<State>,
}

/// What outlives a collection: the counters and the histogram.
#[derive(Default)]
struct State {
    errors: u64,
    limit_hits: [u64; 2],
    durations: [u64; BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
}

impl State {
    fn observe(&mut self, seconds: f64) {
        for (bound, n) in BUCKETS.iter().zip(self.durations.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.duration_sum += seconds;
        self.duration_count += 1;
    }
}

/// One collection's findings.
#[derive(Default)]
struct Walk {
    programs: Vec<(sys::ProgInfo, u64)>,
    maps: Vec<(sys::MapInfo, u64)>,
    /// Ids seen past the cap, by kind (program, map).
    skipped: [u64; 2],
    /// Objects that could be opened but not read.
    errors: u64,
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Program => 0,
        Kind::Map => 1,
    }
}

impl BpfInventoryConfig {
    fn name_matches(&self, name: &str) -> bool {
        self.name_prefixes.is_empty() || self.name_prefixes.iter().any(|p| name.starts_with(p))
    }
}

/// Walk the ids of `kind`, inspecting at most `cap` objects with `read` and
/// passing each to `keep`. Fails only when the id walk itself fails.
fn walk_kind<T>(
    kind: Kind,
    cap: usize,
    walk: &mut Walk,
    read: impl Fn(&std::os::fd::OwnedFd) -> std::io::Result<T>,
    mut keep: impl FnMut(T, u64),
) -> Result<()> {
    let mut inspected = 0usize;
    let mut id = 0;
    while let Some(next) = sys::next_id(kind, id)
        .map_err(|e| herakles_core::Error::msg(format!("listing eBPF {}s: {e}", kind.label())))?
    {
        // Ids only grow; a kernel that wrapped around (asking past u32::MAX
        // restarts at the first id) must not make the walk endless.
        if next <= id {
            break;
        }
        id = next;
        if inspected >= cap {
            walk.skipped[kind_index(kind)] += 1;
            continue;
        }
        let fd = match sys::open(kind, id) {
            Ok(Some(fd)) => fd,
            Ok(None) => continue,
            Err(_) => {
                walk.errors += 1;
                continue;
            }
        };
        inspected += 1;
        match read(&fd).and_then(|info| Ok((info, sys::memlock(&fd)?))) {
            Ok((info, memlock)) => keep(info, memlock),
            Err(_) => walk.errors += 1,
        }
    }
    Ok(())
}

fn walk(config: &BpfInventoryConfig) -> Result<Walk> {
    let mut walk = Walk::default();
    let mut programs = Vec::new();
    walk_kind(
        Kind::Program,
        config.max_programs,
        &mut walk,
        sys::prog_info,
        |p, m| {
            if config.name_matches(&p.name) {
                programs.push((p, m));
            }
        },
    )?;
    // With a filter, the maps that matter are those the chosen programs use,
    // whatever they are called (spec 004: maps found through programs).
    let used: HashSet<u32> = programs
        .iter()
        .flat_map(|(p, _)| p.map_ids.iter().copied())
        .collect();
    let mut maps = Vec::new();
    walk_kind(
        Kind::Map,
        config.max_maps,
        &mut walk,
        sys::map_info,
        |m, b| {
            if config.name_matches(&m.name) || used.contains(&m.id) {
                maps.push((m, b));
            }
        },
    )?;
    walk.programs = programs;
    walk.maps = maps;
    Ok(walk)
}

/// Count and memory per type name, sorted by name for a stable output.
fn by_type<'a>(
    kind: Kind,
    objects: impl Iterator<Item = (u32, u64)> + 'a,
) -> BTreeMap<std::borrow::Cow<'static, str>, (u64, u64)> {
    let mut totals = BTreeMap::new();
    for (t, bytes) in objects {
        let e = totals.entry(type_name(kind, t)).or_insert((0, 0));
        e.0 += 1;
        e.1 += bytes;
    }
    totals
}

impl Collector for BpfInventory {
    fn collect(&self, _ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let started = Instant::now();
        let walked = walk(&self.config);
        let elapsed = started.elapsed().as_secs_f64();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.observe(elapsed);
        let walk = match walked {
            Ok(w) => w,
            Err(e) => {
                state.errors += 1;
                return Err(e);
            }
        };
        state.errors += walk.errors;
        for (hits, skipped) in state.limit_hits.iter_mut().zip(walk.skipped) {
            if skipped > 0 {
                *hits += 1;
            }
        }

        let programs = by_type(
            Kind::Program,
            walk.programs.iter().map(|(p, b)| (p.prog_type, *b)),
        );
        for (t, (count, bytes)) in &programs {
            out.family(&PROGRAMS).sample(&[("type", t)], *count as f64);
            out.family(&PROGRAMS_MEMORY)
                .sample(&[("type", t)], *bytes as f64);
        }
        let maps = by_type(Kind::Map, walk.maps.iter().map(|(m, b)| (m.map_type, *b)));
        for (t, (count, bytes)) in &maps {
            out.family(&MAPS).sample(&[("type", t)], *count as f64);
            out.family(&MAPS_MEMORY)
                .sample(&[("type", t)], *bytes as f64);
        }

        if self.config.per_program {
            let mut fam = out.family(&PROGRAM_MEMORY);
            for (p, bytes) in &walk.programs {
                let maps: Vec<String> = p.map_ids.iter().map(u32::to_string).collect();
                fam.sample(
                    &[
                        ("program_id", &p.id.to_string()),
                        ("program_name", &p.name),
                        ("program_type", &type_name(Kind::Program, p.prog_type)),
                        ("associated_maps", &maps.join(",")),
                    ],
                    *bytes as f64,
                );
            }
        }
        if self.config.per_map {
            let mut fam = out.family(&MAP_MEMORY);
            for (m, bytes) in &walk.maps {
                fam.sample(
                    &[
                        ("map_id", &m.id.to_string()),
                        ("map_name", &m.name),
                        ("map_type", &type_name(Kind::Map, m.map_type)),
                        ("key_size", &m.key_size.to_string()),
                        ("value_size", &m.value_size.to_string()),
                        ("max_entries", &m.max_entries.to_string()),
                    ],
                    *bytes as f64,
                );
            }
        }

        out.single(&ERRORS, state.errors as f64);
        for kind in [Kind::Program, Kind::Map] {
            let i = kind_index(kind);
            let labels = [("kind", kind.label())];
            out.family(&LIMIT_HIT)
                .sample(&labels, state.limit_hits[i] as f64);
            out.family(&SKIPPED).sample(&labels, walk.skipped[i] as f64);
        }
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .zip(state.durations.iter().copied())
            .collect();
        out.family(&DURATION)
            .histogram(&[], &buckets, state.duration_sum, state.duration_count);
        Ok(())
    }
}

impl BuildCollector for BpfInventory {
    type Config = BpfInventoryConfig;

    fn build(config: BpfInventoryConfig, _: &BuildContext) -> Result<Self> {
        Ok(BpfInventory {
            config,
            state: Mutex::default(),
        })
    }
}

inventory::submit! {
    Registration::new::<BpfInventory>(
        "bpf_inventory",
        "Every eBPF program and map on the host: counts and locked memory by type",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_filter_names() {
        let mut c = BpfInventoryConfig::default();
        assert!(c.name_matches("anything"));
        assert!(c.name_matches(""));
        c.name_prefixes = vec!["herakles_".into(), "cil_".into()];
        assert!(c.name_matches("cil_from_netdev"));
        assert!(!c.name_matches("sd_devices"));
        assert!(!c.name_matches(""));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut s = State::default();
        s.observe(0.0002);
        s.observe(0.003);
        s.observe(5.0);
        assert_eq!(s.durations[0], 0); // le 0.0001
        assert_eq!(s.durations[1], 1); // le 0.00025
        assert_eq!(s.durations[5], 2); // le 0.005
        assert_eq!(s.durations[9], 2); // le 1: 5 s is only in +Inf
        assert_eq!(s.duration_count, 3);
    }
}
