//! The exporter's own `process_*` metrics: the families every Prometheus
//! client library exposes about its process, with the same names, types and
//! meaning, read from `/proc/self` at each scrape.
//!
//! Why not the `prometheus` crate's process collector, which we used
//! before: it keeps CPU time in an integer counter, so
//! `process_cpu_seconds_total` moved in whole seconds and a `rate()` over
//! it was zero or a multiple of 1/interval, however busy the exporter was.
//! Reading the few fields ourselves costs one `stat` read, one directory
//! listing and two `getrlimit` calls per scrape.
//!
//! Always `/proc`, never `paths.procfs`: `self` in a procfs mounted from
//! another namespace is not this process.

use std::os::unix::ffi::OsStrExt;

use herakles_core::{Desc, MetricSink};

const CPU: Desc = Desc::counter(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
);
const RESIDENT: Desc = Desc::gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
);
const VIRTUAL: Desc = Desc::gauge(
    "process_virtual_memory_bytes",
    "Virtual memory size in bytes.",
);
const VIRTUAL_MAX: Desc = Desc::gauge(
    "process_virtual_memory_max_bytes",
    "Maximum amount of virtual memory available in bytes.",
);
const START_TIME: Desc = Desc::gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
);
const OPEN_FDS: Desc = Desc::gauge("process_open_fds", "Number of open file descriptors.");
const MAX_FDS: Desc = Desc::gauge(
    "process_max_fds",
    "Maximum number of open file descriptors.",
);
const THREADS: Desc = Desc::gauge("process_threads", "Number of OS threads in the process.");

/// The fields of `/proc/self/stat` we export, converted to the units of
/// the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Clock ticks after boot at which the process started.
    pub start_ticks: u64,
    pub threads: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parse a `stat` line. The fields are counted from the last `)`, since
/// the command name before it may hold spaces and parentheses.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (_, rest) = line.rsplit_once(')')?;
    // `rest` starts at field 3 (state); field N is at index N - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
    let unsigned = |n: usize| field(n).map(|v| v.max(0) as u64);
    Some(Stat {
        cpu_ticks: unsigned(14)? + unsigned(15)?,
        threads: unsigned(20)?,
        start_ticks: unsigned(22)?,
        vsize_bytes: unsigned(23)?,
        rss_pages: unsigned(24)?,
    })
}

/// Host constants the fields are converted with.
struct Host {
    clk_tck: f64,
    page_size: f64,
    /// Boot time, Unix seconds (`btime` of `/proc/stat`).
    boot_time: Option<f64>,
}

fn host() -> &'static Host {
    static HOST: std::sync::OnceLock<Host> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let sysconf = |v| nix::unistd::sysconf(v).ok().flatten().filter(|&n| n > 0);
        Host {
            clk_tck: sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap_or(100) as f64,
            page_size: sysconf(nix::unistd::SysconfVar::PAGE_SIZE).unwrap_or(4096) as f64,
            boot_time: std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse().ok())
            }),
        }
    })
}

/// A soft resource limit as the client libraries export it: "unlimited"
/// is the largest 64-bit value.
fn soft_limit(resource: nix::sys::resource::Resource) -> Option<f64> {
    nix::sys::resource::getrlimit(resource)
        .ok()
        .map(|(soft, _)| soft as f64)
}

/// Open descriptors: the entries of `/proc/self/fd`, less the one the
/// listing itself holds open.
fn open_fds() -> Option<usize> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let n = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_name().as_bytes().iter().all(u8::is_ascii_digit))
        .count();
    Some(n.saturating_sub(1))
}

/// Write the `process_*` families into `out`. A file that cannot be read
/// leaves its families out; nothing here fails a scrape.
pub fn render(out: &mut MetricSink) {
    use nix::sys::resource::Resource;
    let host = host();
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(parse_stat);
    if let Some(s) = stat {
        out.single(&CPU, s.cpu_ticks as f64 / host.clk_tck);
    }
    if let Some(n) = open_fds() {
        out.single(&OPEN_FDS, n as f64);
    }
    if let Some(max) = soft_limit(Resource::RLIMIT_NOFILE) {
        out.single(&MAX_FDS, max);
    }
    if let Some(s) = stat {
        out.single(&VIRTUAL, s.vsize_bytes as f64);
    }
    if let Some(max) = soft_limit(Resource::RLIMIT_AS) {
        out.single(&VIRTUAL_MAX, max);
    }
    if let Some(s) = stat {
        out.single(&RESIDENT, s.rss_pages as f64 * host.page_size);
        if let Some(boot) = host.boot_time {
            out.single(&START_TIME, boot + s.start_ticks as f64 / host.clk_tck);
        }
        out.single(&THREADS, s.threads as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> std::collections::HashMap<String, f64> {
        let mut sink = MetricSink::new();
        render(&mut sink);
        sink.to_text()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    }

    fn proc_self_stat() -> Vec<String> {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let rest = &text[text.rfind(')').unwrap() + 1..];
        // Index 0 is field 3.
        rest.split_whitespace().map(str::to_string).collect()
    }

    fn clk_tck() -> u64 {
        // SAFETY: sysconf only reads a constant.
        unsafe { libc::sysconf(libc::_SC_CLK_TCK) as u64 }
    }

    /// Ticks of CPU this process has used, from /proc/self/stat read here
    /// independently of the code under test.
    fn cpu_ticks() -> u64 {
        let f = proc_self_stat();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    fn limit(name: &str) -> f64 {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        match line[name.len()..].split_whitespace().next().unwrap() {
            "unlimited" => u64::MAX as f64,
            v => v.parse().unwrap(),
        }
    }

    /// The CPU time has the clock tick's resolution, not whole seconds:
    /// measured while this process's own tick count, read before and
    /// after, stays between two multiples of a second's ticks, the value
    /// lies in that window. The `prometheus` crate's collector rounded it
    /// down to the whole second below the window.
    #[test]
    fn cpu_seconds_have_fractions() {
        let tck = clk_tck();
        let mut spin = 0u64;
        for _ in 0..10_000 {
            // Burn a little CPU so the tick count moves off a multiple.
            for i in 0..200_000u64 {
                spin = spin.wrapping_mul(31).wrapping_add(i);
            }
            let before = cpu_ticks();
            let value = rendered()["process_cpu_seconds_total"];
            let after = cpu_ticks();
            if before % tck == 0 || before / tck != after / tck {
                continue;
            }
            assert!(
                before as f64 / tck as f64 <= value && value <= after as f64 / tck as f64,
                "{value} outside {before}..={after} ticks at {tck}/s"
            );
            assert_ne!(value.fract(), 0.0);
            std::hint::black_box(spin);
            return;
        }
        panic!("never measured between two whole seconds");
    }

    #[test]
    fn values_match_proc_self() {
        let m = rendered();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_virtual_memory_max_bytes",
            "process_start_time_seconds",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
        ] {
            assert!(m.contains_key(name), "{name} missing: {m:?}");
        }
        assert_eq!(m["process_max_fds"], limit("Max open files"));
        assert_eq!(
            m["process_virtual_memory_max_bytes"],
            limit("Max address space")
        );

        // Start time: boot time plus field 22, to the tick.
        let f = proc_self_stat();
        let btime: f64 = std::fs::read_to_string("/proc/stat")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let start = btime + f[19].parse::<f64>().unwrap() / clk_tck() as f64;
        assert!((m["process_start_time_seconds"] - start).abs() < 1e-6);

        // The others move while the test runs; they must be close.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kb = |key: &str| -> f64 {
            let line = status.lines().find(|l| l.starts_with(key)).unwrap();
            line[key.len()..]
                .trim()
                .trim_end_matches(" kB")
                .parse::<f64>()
                .unwrap()
                * 1024.0
        };
        let near = |name: &str, want: f64, slack: f64| {
            let got = m[name];
            assert!(
                (got - want).abs() <= slack,
                "{name}: {got}, /proc says {want}"
            );
        };
        near(
            "process_virtual_memory_bytes",
            kb("VmSize:"),
            64.0 * 1024.0 * 1024.0,
        );
        near(
            "process_resident_memory_bytes",
            kb("VmRSS:"),
            16.0 * 1024.0 * 1024.0,
        );
        let threads = std::fs::read_dir("/proc/self/task").unwrap().count() as f64;
        near("process_threads", threads, 64.0);
        let fds = std::fs::read_dir("/proc/self/fd").unwrap().count() as f64;
        near("process_open_fds", fds, 64.0);
    }

    /// Opening descriptors moves the count by exactly as many. Other
    /// tests open files concurrently, so this looks for one undisturbed
    /// round among many; a count that is off is never undisturbed.
    #[test]
    fn open_fds_counts_what_is_opened() {
        for _ in 0..200 {
            let before = open_fds().unwrap();
            let files: Vec<_> = (0..7)
                .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
                .collect();
            let during = open_fds().unwrap();
            drop(files);
            let after = open_fds().unwrap();
            if before == after && during == before + 7 {
                return;
            }
        }
        panic!("never counted 7 more descriptors while 7 were open");
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0 \
                    12345 1000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                cpu_ticks: 287,
                start_ticks: 12345,
                threads: 9,
                vsize_bytes: 1_000_000,
                rss_pages: 300,
            })
        );
        assert_eq!(parse_stat("42 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }
}
