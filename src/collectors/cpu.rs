//! System CPU time from `/proc/stat`, and CPU pressure from
//! `/proc/pressure/cpu`.
//!
//! The kernel only keeps CPU time as counters since boot. They are passed on
//! as `herakles_system_cpu_seconds_total` for `rate()`, and turned into
//! ratios over the interval since the previous collection for consumers that
//! want "how busy was the CPU lately" without a query language.
//!
//! Three properties of these counters shape the code:
//!
//! * `guest` and `guest_nice` are already part of `user` and `nice` (the
//!   kernel adds guest time to both), so they are neither exposed as modes nor
//!   added to a CPU's total. Adding them would count virtual machine time
//!   twice.
//! * On tickless kernels a CPU's `iowait` (and with it `idle`) can go
//!   backwards by a few ticks, because idle time that was first attributed to
//!   I/O wait is re-attributed when the waiting task wakes up elsewhere. Small
//!   steps back are held at the previous value, so the exposed counters stay
//!   monotonic and an interval never has a negative share.
//! * A larger step back means the counters were reset, which happens when a
//!   CPU goes offline and comes back on some kernels. Then the previous values
//!   say nothing about the current ones, and the CPU starts from a fresh
//!   baseline, exactly as a CPU seen for the first time (after start-up or
//!   hotplug) does: its ratios are taken over everything its counters hold.

use std::collections::HashMap;
use std::sync::Mutex;

use herakles_core::{
    inventory, Collector, Desc, Error, MetricSink, Registration, Result, ScrapeContext,
};

use super::helpers::psi;

const SECONDS: Desc = Desc::counter(
    "herakles_system_cpu_seconds_total",
    "Time each CPU spent in each mode since boot; guest time is part of user and nice.",
);
const USAGE: Desc = Desc::gauge(
    "herakles_system_cpu_usage_ratio",
    "Share of time neither idle nor in iowait since the previous collection (steal counts as used).",
);
const IDLE: Desc = Desc::gauge(
    "herakles_system_cpu_idle_ratio",
    "Share of time idle since the previous collection.",
);
const IOWAIT: Desc = Desc::gauge(
    "herakles_system_cpu_iowait_ratio",
    "Share of time idle with I/O outstanding since the previous collection.",
);
const STEAL: Desc = Desc::gauge(
    "herakles_system_cpu_steal_ratio",
    "Share of time taken by the hypervisor for other guests since the previous collection.",
);
const PSI_WAIT: Desc = Desc::counter(
    "herakles_system_cpu_psi_wait_seconds_total",
    "Time in which at least one runnable task waited for a CPU (PSI 'some' total).",
);

/// The columns of a `cpu` line that are exposed, in file order. The two that
/// follow (`guest`, `guest_nice`) are left out; see the module documentation.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];
const IDLE_COLUMN: usize = 3;
const IOWAIT_COLUMN: usize = 4;
const STEAL_COLUMN: usize = 7;

/// Kernels since 2.6 print at least seven columns; fewer than the first four
/// (through `idle`) cannot give any ratio.
const MIN_COLUMNS: usize = 4;

/// How far, in seconds, a counter may step back and still be taken for the
/// tickless iowait re-attribution rather than a reset. Re-attribution moves
/// at most the length of one idle period; resets drop counters to near zero,
/// which on any host up for more than a few seconds is far more than this.
const JITTER_SECONDS: u64 = 3;

/// See the module documentation.
pub struct Cpu {
    ticks_per_second: f64,
    jitter_ticks: u64,
    /// The counters and ratios of each CPU at the previous collection, keyed
    /// by the `cpu` label.
    previous: Mutex<HashMap<String, CpuState>>,
}

impl Cpu {
    fn new(ticks_per_second: u64) -> Cpu {
        Cpu {
            ticks_per_second: ticks_per_second as f64,
            jitter_ticks: JITTER_SECONDS.saturating_mul(ticks_per_second),
            previous: Mutex::default(),
        }
    }
}

impl Collector for Cpu {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let text = ctx.read_proc_shared("stat")?;
        let lines = parse_stat(&text, out);
        if lines.is_empty() {
            return Err(Error::at(ctx.paths().proc("stat"), "no cpu lines"));
        }
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let mut current = HashMap::with_capacity(lines.len());
        for line in lines {
            let state = CpuState::advance(previous.get(&line.cpu), &line, self.jitter_ticks);
            let cpu = line.cpu.as_str();
            // The aggregate line only feeds the `total` ratios. Its seconds
            // would duplicate the per-CPU series, which `sum()` adds up.
            if cpu != TOTAL {
                let mut seconds = out.family(&SECONDS);
                for (mode, ticks) in MODES.iter().zip(&state.ticks).take(line.columns) {
                    seconds.sample(
                        &[("cpu", cpu), ("mode", mode)],
                        *ticks as f64 / self.ticks_per_second,
                    );
                }
            }
            if let Some(r) = state.ratios {
                let labels = [("cpu", cpu)];
                out.family(&USAGE).sample(&labels, r.usage);
                out.family(&IDLE).sample(&labels, r.idle);
                out.family(&IOWAIT).sample(&labels, r.iowait);
                out.family(&STEAL).sample(&labels, r.steal);
            }
            current.insert(line.cpu, state);
        }
        // CPUs missing from this collection are forgotten, so one that comes
        // back starts from a fresh baseline.
        *previous = current;
        drop(previous);
        // CPU PSI. The system-wide "full" line is always zero for CPUs (a
        // CPU is never stalled for all tasks while it runs one), so only
        // "some" is exposed.
        psi::emit(
            ctx.read_proc_shared("pressure/cpu"),
            out,
            Some(&PSI_WAIT),
            None,
        );
        Ok(())
    }
}

/// The `cpu` label of the aggregate line.
const TOTAL: &str = "total";

/// One `cpu` line of `/proc/stat`.
struct StatLine {
    /// `"total"` for the aggregate line, the CPU number otherwise.
    cpu: String,
    /// The exposed columns in ticks; those beyond `columns` are zero.
    ticks: [u64; MODES.len()],
    /// How many of [`MODES`] the line had.
    columns: usize,
}

/// The `cpu` lines of `/proc/stat`. Lines of other kinds belong to other
/// collectors and are passed over; malformed or repeated `cpu` lines are
/// skipped and counted.
fn parse_stat(text: &str, out: &mut MetricSink) -> Vec<StatLine> {
    let mut lines: Vec<StatLine> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(id) = words.next().and_then(|w| w.strip_prefix("cpu")) else {
            continue;
        };
        let cpu = if id.is_empty() {
            TOTAL
        } else if id.bytes().all(|b| b.is_ascii_digit()) {
            id
        } else {
            out.parse_error();
            continue;
        };
        let mut ticks = [0u64; MODES.len()];
        let mut columns = 0;
        let mut numeric = true;
        for word in words.take(MODES.len()) {
            match word.parse() {
                Ok(v) => {
                    ticks[columns] = v;
                    columns += 1;
                }
                Err(_) => {
                    numeric = false;
                    break;
                }
            }
        }
        if !numeric || columns < MIN_COLUMNS || lines.iter().any(|l| l.cpu == cpu) {
            out.parse_error();
            continue;
        }
        lines.push(StatLine {
            cpu: cpu.to_string(),
            ticks,
            columns,
        });
    }
    lines
}

/// What is remembered of one CPU between collections.
#[derive(Debug, Clone, PartialEq)]
struct CpuState {
    /// The counters as exposed: the kernel's, except where a small step back
    /// was held at the previous value.
    ticks: [u64; MODES.len()],
    /// The ratios of the latest interval in which any time passed.
    ratios: Option<Ratios>,
}

impl CpuState {
    /// The state after reading `line`, given the state at the previous
    /// collection (if the CPU was there).
    fn advance(previous: Option<&CpuState>, line: &StatLine, jitter_ticks: u64) -> CpuState {
        let Some(previous) = previous else {
            return CpuState::baseline(line);
        };
        let mut ticks = line.ticks;
        let mut delta = [0u64; MODES.len()];
        for i in 0..ticks.len() {
            match ticks[i].checked_sub(previous.ticks[i]) {
                Some(d) => delta[i] = d,
                None if previous.ticks[i] - ticks[i] <= jitter_ticks => {
                    ticks[i] = previous.ticks[i];
                }
                None => return CpuState::baseline(line),
            }
        }
        // Two collections within one tick leave nothing to divide; the last
        // interval that had time in it is still the best answer.
        let ratios = Ratios::over(&delta).or(previous.ratios);
        CpuState { ticks, ratios }
    }

    /// A CPU without usable history: its counters count from zero (boot or
    /// reset), so they are themselves the interval.
    fn baseline(line: &StatLine) -> CpuState {
        CpuState {
            ticks: line.ticks,
            ratios: Ratios::over(&line.ticks),
        }
    }
}

/// Shares of one interval.
///
/// Usage is `1 - idle - iowait`. A tick in iowait is a tick in which the CPU
/// had nothing to run (the task waiting for I/O is asleep), so it is not
/// usage. Steal is: the guest had work and wanted the CPU then, and from
/// inside the guest that looks like a busy CPU, not an idle one. It is also
/// exposed on its own so the two kinds of "busy" can be told apart.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ratios {
    usage: f64,
    idle: f64,
    iowait: f64,
    steal: f64,
}

impl Ratios {
    /// The shares of tick deltas, or `None` if no time passed.
    ///
    /// The sum is taken in `u128` so no input can overflow it, and each share
    /// is a part divided by a whole that contains it, so every ratio lies in
    /// [0, 1] (float rounding is monotonic and cannot push a part above the
    /// whole).
    fn over(delta: &[u64; MODES.len()]) -> Option<Ratios> {
        let total: u128 = delta.iter().map(|&d| u128::from(d)).sum();
        if total == 0 {
            return None;
        }
        let idle = u128::from(delta[IDLE_COLUMN]);
        let iowait = u128::from(delta[IOWAIT_COLUMN]);
        let share = |part: u128| part as f64 / total as f64;
        Some(Ratios {
            usage: share(total - idle - iowait),
            idle: share(idle),
            iowait: share(iowait),
            steal: share(u128::from(delta[STEAL_COLUMN])),
        })
    }
}

impl Default for Cpu {
    /// The collector for this host's `USER_HZ`.
    fn default() -> Cpu {
        Cpu::new(ticks_per_second())
    }
}

/// `USER_HZ`, the unit of `/proc/stat`. It has been 100 on every mainstream
/// architecture for decades, which is the fallback should `sysconf` fail.
fn ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as u64,
        _ => 100,
    }
}

inventory::submit! {
    Registration::plain::<Cpu>(
        "cpu",
        "CPU time and busy/idle/iowait/steal ratios from /proc/stat, CPU pressure (PSI)",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::{example_config, fixture};
    use herakles_core::testing::{collect_with, Collected};
    use herakles_core::Paths;
    use proptest::prelude::*;

    fn hz() -> f64 {
        ticks_per_second() as f64
    }

    fn ratio(c: &Collected, name: &str, cpu: &str) -> Option<f64> {
        c.value(
            &format!("herakles_system_cpu_{name}_ratio"),
            &[("cpu", cpu)],
        )
    }

    fn seconds(c: &Collected, cpu: &str, mode: &str) -> Option<f64> {
        c.value(
            "herakles_system_cpu_seconds_total",
            &[("cpu", cpu), ("mode", mode)],
        )
    }

    /// Whether any `herakles_system_cpu_seconds_total` sample has this label.
    fn has_label(c: &Collected, key: &str, value: &str) -> bool {
        c.samples.iter().any(|(name, labels, _)| {
            name == "herakles_system_cpu_seconds_total"
                && labels.iter().any(|(k, v)| k == key && v == value)
        })
    }

    /// A procfs root in a temporary directory whose `stat` the test rewrites
    /// between collections.
    struct Proc {
        dir: tempfile::TempDir,
    }

    impl Proc {
        fn new() -> Proc {
            Proc {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn collect(&self, cpu: &Cpu, stat: &str) -> Collected {
            std::fs::write(self.dir.path().join("stat"), stat).unwrap();
            let paths = Paths {
                procfs: self.dir.path().to_path_buf(),
                ..Paths::default()
            };
            collect_with(cpu, paths).unwrap()
        }
    }

    #[test]
    fn exact_values_from_fixture() {
        let c = collect_with(&Cpu::default(), fixture("cpu")).unwrap();
        assert_eq!(seconds(&c, "0", "user"), Some(60.0 / hz()));
        assert_eq!(seconds(&c, "0", "idle"), Some(390.0 / hz()));
        assert_eq!(seconds(&c, "1", "steal"), Some(20.0 / hz()));
        assert_eq!(seconds(&c, "1", "softirq"), Some(5.0 / hz()));
        // Two CPUs times eight modes; the aggregate line has no seconds and
        // guest columns are not modes.
        assert_eq!(c.count("herakles_system_cpu_seconds_total"), 16);
        assert!(!has_label(&c, "cpu", "total"));
        assert!(!has_label(&c, "mode", "guest"));

        // First collection: shares of everything since boot. Guest ticks
        // (30 in total) are inside user and must not be added to the whole.
        assert_eq!(ratio(&c, "idle", "total"), Some(0.8));
        assert_eq!(ratio(&c, "iowait", "total"), Some(0.04));
        assert_eq!(ratio(&c, "steal", "total"), Some(0.02));
        assert_eq!(ratio(&c, "usage", "total"), Some(0.16));
        assert_eq!(ratio(&c, "idle", "0"), Some(0.78));
        assert_eq!(ratio(&c, "usage", "0"), Some(0.17));
        assert_eq!(ratio(&c, "steal", "1"), Some(0.04));
        assert_eq!(c.count("herakles_system_cpu_usage_ratio"), 3);

        assert_eq!(
            c.value("herakles_system_cpu_psi_wait_seconds_total", &[]),
            Some(1.234567)
        );
        assert_eq!(c.parse_errors, 0);
    }

    /// One byte that is not UTF-8 used to fail the whole file, and with it
    /// the cpu, kernel and host collectors.
    #[test]
    fn an_invalid_byte_costs_only_its_line() {
        let c = collect_with(&Cpu::default(), fixture("stat_bad_byte")).unwrap();
        assert_eq!(seconds(&c, "0", "idle"), Some(50.0 / hz()));
        assert_eq!(seconds(&c, "0", "user"), Some(20.0 / hz()));
        assert!(seconds(&c, "1", "idle").is_none());
        assert_eq!(ratio(&c, "idle", "total"), Some(100.0 / 160.0));
        assert_eq!(c.parse_errors, 1);
    }

    #[test]
    fn malformed_cpu_lines_are_skipped_and_counted() {
        let c = collect_with(&Cpu::default(), fixture("cpu_garbage")).unwrap();
        // Only cpu0 and the aggregate survive: cpu1 has a non-numeric
        // column, cpu2 is truncated to three columns, "cpux" is no CPU and
        // the second cpu0 line is a duplicate.
        assert_eq!(c.count("herakles_system_cpu_usage_ratio"), 2);
        assert_eq!(c.parse_errors, 4);
        // A seven-column line from an old kernel: no steal column, so no
        // steal seconds, and steal counts as zero in the ratios.
        assert_eq!(c.count("herakles_system_cpu_seconds_total"), 7);
        assert!(seconds(&c, "0", "steal").is_none());
        assert_eq!(seconds(&c, "0", "softirq"), Some(10.0 / hz()));
        assert_eq!(ratio(&c, "steal", "0"), Some(0.0));
        assert_eq!(ratio(&c, "idle", "0"), Some(0.5));
        // No pressure directory in this fixture: PSI is absent.
        assert!(c.absent("herakles_system_cpu_psi_wait_seconds_total"));
    }

    #[test]
    fn stat_without_cpu_lines_fails_naming_the_file() {
        let p = Proc::new();
        std::fs::write(p.dir.path().join("stat"), "ctxt 5\nbtime 7\n").unwrap();
        let paths = Paths {
            procfs: p.dir.path().to_path_buf(),
            ..Paths::default()
        };
        let err = collect_with(&Cpu::default(), paths).unwrap_err();
        assert!(err.to_string().contains("stat: no cpu lines"), "{err}");
    }

    #[test]
    fn missing_stat_fails_naming_the_file() {
        let err = collect_with(&Cpu::default(), fixture("does-not-exist")).unwrap_err();
        assert!(err.to_string().contains("stat"), "{err}");
    }

    #[test]
    fn second_collection_covers_only_the_interval() {
        let cpu = Cpu::new(100);
        let p = Proc::new();
        p.collect(&cpu, "cpu 1000 0 1000 8000 0 0 0 0\n");
        // +100 user, +50 iowait, +25 steal, +825 idle: 1000 ticks.
        let c = p.collect(&cpu, "cpu 1100 0 1000 8825 50 0 0 25\n");
        assert_eq!(ratio(&c, "idle", "total"), Some(0.825));
        assert_eq!(ratio(&c, "iowait", "total"), Some(0.05));
        assert_eq!(ratio(&c, "steal", "total"), Some(0.025));
        assert_eq!(ratio(&c, "usage", "total"), Some(0.125));
    }

    #[test]
    fn no_time_passed_repeats_the_last_ratios() {
        let cpu = Cpu::new(100);
        let p = Proc::new();
        let stat = "cpu 10 0 10 80 0 0 0 0\ncpu0 10 0 10 80 0 0 0 0\n";
        let first = p.collect(&cpu, stat);
        let again = p.collect(&cpu, stat);
        assert_eq!(ratio(&again, "usage", "0"), Some(0.2));
        assert_eq!(ratio(&first, "usage", "0"), ratio(&again, "usage", "0"));
        // A CPU that has never had a tick has no ratios at all.
        let idle = p.collect(&Cpu::new(100), "cpu0 0 0 0 0 0 0 0 0\n");
        assert!(idle.absent("herakles_system_cpu_usage_ratio"));
        assert_eq!(seconds(&idle, "0", "user"), Some(0.0));
    }

    #[test]
    fn iowait_stepping_back_is_held() {
        let cpu = Cpu::new(100);
        let p = Proc::new();
        p.collect(&cpu, "cpu0 100 0 100 700 100 0 0 0\n");
        // iowait back by 20 ticks (re-attributed to idle), user +100.
        let c = p.collect(&cpu, "cpu0 200 0 100 780 80 0 0 0\n");
        assert_eq!(seconds(&c, "0", "iowait"), Some(1.0));
        assert_eq!(ratio(&c, "iowait", "0"), Some(0.0));
        assert_eq!(ratio(&c, "idle", "0"), Some(80.0 / 180.0));
        assert_eq!(ratio(&c, "usage", "0"), Some(100.0 / 180.0));
        // Once iowait passes the held value it counts from there.
        let c = p.collect(&cpu, "cpu0 200 0 100 780 130 0 0 0\n");
        assert_eq!(seconds(&c, "0", "iowait"), Some(1.3));
        assert_eq!(ratio(&c, "iowait", "0"), Some(1.0));
    }

    #[test]
    fn reset_counters_start_a_fresh_baseline() {
        let cpu = Cpu::new(100);
        let p = Proc::new();
        p.collect(&cpu, "cpu0 90000 0 10000 900000 0 0 0 0\n");
        let c = p.collect(&cpu, "cpu0 30 0 10 50 10 0 0 0\n");
        assert_eq!(seconds(&c, "0", "user"), Some(0.3));
        assert_eq!(ratio(&c, "idle", "0"), Some(0.5));
        assert_eq!(ratio(&c, "iowait", "0"), Some(0.1));
        assert_eq!(ratio(&c, "usage", "0"), Some(0.4));
        // And the interval after the reset is measured from the new values.
        let c = p.collect(&cpu, "cpu0 130 0 10 50 10 0 0 0\n");
        assert_eq!(ratio(&c, "usage", "0"), Some(1.0));
    }

    #[test]
    fn hotplugged_cpus_vanish_and_return_with_a_fresh_baseline() {
        let cpu = Cpu::new(100);
        let p = Proc::new();
        let both = "cpu 200 0 0 200 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0\ncpu1 100 0 0 100 0 0 0 0\n";
        p.collect(&cpu, both);
        let c = p.collect(&cpu, "cpu 300 0 0 300 0 0 0 0\ncpu0 200 0 0 200 0 0 0 0\n");
        assert_eq!(ratio(&c, "usage", "total"), Some(0.5));
        assert!(ratio(&c, "usage", "1").is_none());
        assert!(!has_label(&c, "cpu", "1"));
        // cpu1 is back with counters that moved while it was offline. Had its
        // old state been kept, the interval would be 400 user ticks and no
        // idle; as a new CPU its ratios cover its whole history.
        let c = p.collect(
            &cpu,
            "cpu 900 0 0 500 0 0 0 0\ncpu0 400 0 0 400 0 0 0 0\ncpu1 500 0 0 100 0 0 0 0\n",
        );
        assert_eq!(ratio(&c, "usage", "1"), Some(500.0 / 600.0));
        assert_eq!(ratio(&c, "idle", "1"), Some(100.0 / 600.0));
    }

    #[test]
    fn live_seconds_match_proc_stat() {
        fn read() -> HashMap<String, [u64; MODES.len()]> {
            let text = std::fs::read_to_string("/proc/stat").unwrap();
            let mut sink = MetricSink::new();
            let lines = parse_stat(&text, &mut sink);
            assert_eq!(sink.parse_errors(), 0, "{text}");
            lines.into_iter().map(|l| (l.cpu, l.ticks)).collect()
        }
        let before = read();
        let c = collect_with(&Cpu::default(), Paths::default()).unwrap();
        let after = read();
        let hz = hz();
        for (cpu, ticks) in &before {
            if cpu == TOTAL || !after.contains_key(cpu) {
                continue;
            }
            for (i, mode) in MODES.iter().enumerate() {
                let got = seconds(&c, cpu, mode).unwrap() * hz;
                // idle and iowait may step back between reads (see module
                // docs); the others only grow.
                let slack = if i == IDLE_COLUMN || i == IOWAIT_COLUMN {
                    JITTER_SECONDS as f64 * hz
                } else {
                    0.5
                };
                let low = ticks[i] as f64 - slack;
                let high = after[cpu][i] as f64 + slack;
                assert!(
                    (low..=high).contains(&got),
                    "cpu{cpu} {mode}: {got} not in {low}..={high}"
                );
            }
            for name in ["usage", "idle", "iowait", "steal"] {
                let r = ratio(&c, name, cpu).unwrap();
                assert!((0.0..=1.0).contains(&r), "{name} {r}");
            }
        }
        let cores = before.keys().filter(|k| k.as_str() != TOTAL).count();
        assert_eq!(c.count("herakles_system_cpu_idle_ratio"), cores + 1);
    }

    fn stat_line(ticks: [u64; MODES.len()]) -> StatLine {
        StatLine {
            cpu: "0".into(),
            ticks,
            columns: MODES.len(),
        }
    }

    proptest! {
        /// Whatever sequence of counters the kernel (or a corrupted file)
        /// produces, every ratio stays in [0, 1] and nothing panics.
        #[test]
        fn ratios_stay_in_bounds(
            snapshots in prop::collection::vec(
                prop::array::uniform8(prop_oneof![0u64..1000, any::<u64>()]),
                1..8,
            ),
        ) {
            let mut state: Option<CpuState> = None;
            for ticks in snapshots {
                let next = CpuState::advance(state.as_ref(), &stat_line(ticks), 300);
                if let Some(r) = next.ratios {
                    for v in [r.usage, r.idle, r.iowait, r.steal] {
                        prop_assert!((0.0..=1.0).contains(&v), "{r:?}");
                    }
                }
                state = Some(next);
            }
        }
    }

    #[test]
    fn example_config_loads() {
        example_config::<herakles_core::NoConfig>("cpu");
    }

    proptest! {
        /// Any bytes, read the way the collector reads them (invalid UTF-8
        /// replaced): no panic, never more CPUs than lines.
        #[test]
        fn stat_parser_takes_anything(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let text = String::from_utf8_lossy(&bytes);
            let mut out = MetricSink::new();
            let lines = parse_stat(&text, &mut out);
            prop_assert!(lines.len() + out.parse_errors() as usize <= text.lines().count());
        }

        /// One line of a valid file replaced by garbage costs that line:
        /// every other CPU is read exactly.
        #[test]
        fn one_bad_line_costs_one_cpu(
            ticks in prop::collection::vec(prop::array::uniform8(any::<u64>()), 1..6),
            bad in any::<prop::sample::Index>(),
            junk in prop::collection::vec(any::<u8>(), 0..60),
        ) {
            prop_assume!(!junk.starts_with(b"cpu"));
            let mut file: Vec<Vec<u8>> = ticks
                .iter()
                .enumerate()
                .map(|(i, t)| format!("cpu{i} {} 0 0\n", t.map(|v| v.to_string()).join(" ")).into_bytes())
                .collect();
            let at = bad.index(file.len());
            file[at] = junk.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect();
            file[at].push(b'\n');
            let text = String::from_utf8_lossy(&file.concat()).into_owned();
            let mut out = MetricSink::new();
            let lines = parse_stat(&text, &mut out);
            for (i, t) in ticks.iter().enumerate().filter(|(i, _)| *i != at) {
                let line = lines.iter().find(|l| l.cpu == i.to_string()).unwrap();
                prop_assert_eq!(&line.ticks, t);
            }
            prop_assert!(lines.len() >= ticks.len() - 1);
            prop_assert!(out.parse_errors() <= 1);
        }
    }
}
