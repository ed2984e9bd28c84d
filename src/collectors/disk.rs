//! Block device I/O from `/proc/diskstats`, and I/O pressure from
//! `/proc/pressure/io`.
//!
//! The file has grown over the years: eleven counters per device up to
//! Linux 4.17, four more for discards since 4.18, two more for flushes since
//! 5.5. Each group is exposed when the line has all of it, so one binary
//! serves old and new kernels, and columns added by kernels newer than this
//! code are ignored rather than refused.
//!
//! Sector counts are multiplied by 512 whatever the device's logical block
//! size: the block layer accounts every request as its byte length shifted
//! right by 9, so a "sector" in this file is 512 bytes even on a 4Kn disk.
//! Multiplying by `queue/logical_block_size` would overstate such a disk's
//! traffic eightfold.

use std::str::SplitWhitespace;

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, Registration, Result,
    ScrapeContext,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::helpers::name_filter::NameFilter;
use super::helpers::psi;

const READ_BYTES: Desc = Desc::counter(
    "herakles_system_disk_read_bytes_total",
    "Bytes read from the device.",
);
const WRITE_BYTES: Desc = Desc::counter(
    "herakles_system_disk_write_bytes_total",
    "Bytes written to the device.",
);
const IO_TIME: Desc = Desc::counter(
    "herakles_system_disk_io_time_seconds_total",
    "Time during which the device had I/O in flight; its rate is the utilisation.",
);
const QUEUE_DEPTH: Desc = Desc::gauge(
    "herakles_system_disk_queue_depth",
    "I/Os issued to the device and not yet completed.",
);
const READS: Desc = Desc::counter(
    "herakles_system_disk_reads_completed_total",
    "Reads completed.",
);
const READS_MERGED: Desc = Desc::counter(
    "herakles_system_disk_reads_merged_total",
    "Adjacent reads merged into one before reaching the device.",
);
const READ_TIME: Desc = Desc::counter(
    "herakles_system_disk_read_time_seconds_total",
    "Time reads spent in flight, summed over all reads.",
);
const WRITES: Desc = Desc::counter(
    "herakles_system_disk_writes_completed_total",
    "Writes completed.",
);
const WRITES_MERGED: Desc = Desc::counter(
    "herakles_system_disk_writes_merged_total",
    "Adjacent writes merged into one before reaching the device.",
);
const WRITE_TIME: Desc = Desc::counter(
    "herakles_system_disk_write_time_seconds_total",
    "Time writes spent in flight, summed over all writes.",
);
const IO_TIME_WEIGHTED: Desc = Desc::counter(
    "herakles_system_disk_io_time_weighted_seconds_total",
    "Time in flight summed over all I/Os; its rate is the average queue length.",
);
const DISCARDS: Desc = Desc::counter(
    "herakles_system_disk_discards_completed_total",
    "Discards completed (Linux 4.18+).",
);
const DISCARDS_MERGED: Desc = Desc::counter(
    "herakles_system_disk_discards_merged_total",
    "Adjacent discards merged into one (Linux 4.18+).",
);
const DISCARDED_BYTES: Desc = Desc::counter(
    "herakles_system_disk_discarded_bytes_total",
    "Bytes discarded (Linux 4.18+).",
);
const DISCARD_TIME: Desc = Desc::counter(
    "herakles_system_disk_discard_time_seconds_total",
    "Time discards spent in flight, summed over all discards (Linux 4.18+).",
);
const FLUSHES: Desc = Desc::counter(
    "herakles_system_disk_flush_requests_total",
    "Cache flush requests completed (Linux 5.5+).",
);
const FLUSH_TIME: Desc = Desc::counter(
    "herakles_system_disk_flush_time_seconds_total",
    "Time flush requests spent in flight, summed over all flushes (Linux 5.5+).",
);
const PSI_WAIT: Desc = Desc::counter(
    "herakles_system_disk_psi_wait_seconds_total",
    "Time in which at least one task stalled on block I/O (PSI 'some' total).",
);
const PSI_FULL_WAIT: Desc = Desc::counter(
    "herakles_system_disk_psi_full_wait_seconds_total",
    "Time in which all non-idle tasks stalled on block I/O at once (PSI 'full' total).",
);

/// `/proc/diskstats` counts 512-byte units; see the module documentation.
const SECTOR_BYTES: f64 = 512.0;

/// The column groups of a line after major, minor and name, each exposed
/// only when complete.
const BASE_COLUMNS: usize = 11;
const DISCARD_COLUMNS: usize = 4;
const FLUSH_COLUMNS: usize = 2;

/// The `collectors.disk` config section.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DiskConfig {
    /// Only devices whose name matches this regex are reported; empty
    /// reports all. The regex is unanchored: use `^...$` to match whole
    /// names.
    #[schemars(extend("format" = "regex"))]
    pub device_include: String,
    /// Devices whose name matches this regex are not reported, even when
    /// `device_include` matches. The default leaves out loop, RAM and floppy
    /// devices, which are noise on most hosts; partitions are kept. Empty
    /// leaves nothing out.
    #[schemars(extend("format" = "regex"))]
    pub device_exclude: String,
}

impl Default for DiskConfig {
    fn default() -> DiskConfig {
        DiskConfig {
            device_include: String::new(),
            device_exclude: r"^(loop|ram|zram|fd)\d+$".to_string(),
        }
    }
}

/// See the module documentation.
pub struct Disk {
    filter: NameFilter,
}

impl Collector for Disk {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let text = ctx.read_proc("diskstats")?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Some(stats) = parse_line(line, out) else {
                out.parse_error();
                continue;
            };
            if self.filter.allows(stats.device) {
                stats.write(out);
            }
        }
        psi::emit(
            ctx.read_proc_shared("pressure/io"),
            out,
            Some(&PSI_WAIT),
            Some(&PSI_FULL_WAIT),
        );
        Ok(())
    }
}

/// One device's line of `/proc/diskstats`.
struct DiskStats<'a> {
    device: &'a str,
    base: [u64; BASE_COLUMNS],
    discard: Option<[u64; DISCARD_COLUMNS]>,
    flush: Option<[u64; FLUSH_COLUMNS]>,
}

impl DiskStats<'_> {
    fn write(&self, out: &mut MetricSink) {
        let labels = [("device", self.device)];
        let ms = |v: u64| v as f64 / 1000.0;
        let sectors = |v: u64| v as f64 * SECTOR_BYTES;
        let [reads, reads_merged, read_sectors, read_ms, writes, writes_merged, write_sectors, write_ms, in_flight, io_ms, weighted_ms] =
            self.base;
        for (desc, value) in [
            (&READS, reads as f64),
            (&READS_MERGED, reads_merged as f64),
            (&READ_BYTES, sectors(read_sectors)),
            (&READ_TIME, ms(read_ms)),
            (&WRITES, writes as f64),
            (&WRITES_MERGED, writes_merged as f64),
            (&WRITE_BYTES, sectors(write_sectors)),
            (&WRITE_TIME, ms(write_ms)),
            (&QUEUE_DEPTH, in_flight as f64),
            (&IO_TIME, ms(io_ms)),
            (&IO_TIME_WEIGHTED, ms(weighted_ms)),
        ] {
            out.family(desc).sample(&labels, value);
        }
        if let Some([discards, merged, discard_sectors, discard_ms]) = self.discard {
            for (desc, value) in [
                (&DISCARDS, discards as f64),
                (&DISCARDS_MERGED, merged as f64),
                (&DISCARDED_BYTES, sectors(discard_sectors)),
                (&DISCARD_TIME, ms(discard_ms)),
            ] {
                out.family(desc).sample(&labels, value);
            }
        }
        if let Some([flushes, flush_ms]) = self.flush {
            out.family(&FLUSHES).sample(&labels, flushes as f64);
            out.family(&FLUSH_TIME).sample(&labels, ms(flush_ms));
        }
    }
}

/// Parse one line, or `None` if it lacks the eleven base counters.
///
/// An optional group that is cut short or not numeric is dropped and counted
/// as a parse error on its own, so a damaged tail does not cost the counters
/// before it.
fn parse_line<'a>(line: &'a str, out: &mut MetricSink) -> Option<DiskStats<'a>> {
    let mut words = line.split_whitespace();
    let (_major, _minor, device) = (words.next()?, words.next()?, words.next()?);
    let base = group::<BASE_COLUMNS>(&mut words)?.ok()?;
    let discard = optional_group(&mut words, out);
    let flush = discard.and_then(|_| optional_group(&mut words, out));
    Some(DiskStats {
        device,
        base,
        discard,
        flush,
    })
}

/// The next `N` columns if they are all there; `None` if the line ended
/// before them, and also if they are damaged, which is then counted.
fn optional_group<const N: usize>(
    words: &mut SplitWhitespace<'_>,
    out: &mut MetricSink,
) -> Option<[u64; N]> {
    match group(words)? {
        Ok(values) => Some(values),
        Err(()) => {
            out.parse_error();
            None
        }
    }
}

/// The next `N` columns: `None` if there are none left at all, an error if
/// only some are there or one is not a number.
fn group<const N: usize>(
    words: &mut SplitWhitespace<'_>,
) -> Option<std::result::Result<[u64; N], ()>> {
    let mut values = [0u64; N];
    for (i, value) in values.iter_mut().enumerate() {
        match words.next() {
            None if i == 0 => return None,
            None => return Some(Err(())),
            Some(w) => match w.parse() {
                Ok(v) => *value = v,
                Err(_) => return Some(Err(())),
            },
        }
    }
    Some(Ok(values))
}

impl BuildCollector for Disk {
    type Config = DiskConfig;
    fn build(config: DiskConfig, _: &BuildContext) -> Result<Self> {
        let filter = NameFilter::new(
            &config.device_include,
            &config.device_exclude,
            ("device_include", "device_exclude"),
        )?;
        Ok(Disk { filter })
    }
}

inventory::submit! {
    Registration::new::<Disk>(
        "disk",
        "Block device I/O from /proc/diskstats, I/O pressure (PSI)",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::{example_config, fixture};
    use herakles_core::testing::{collect_once, collect_with, Collected};
    use herakles_core::Paths;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn get(c: &Collected, metric: &str, device: &str) -> Option<f64> {
        c.value(
            &format!("herakles_system_disk_{metric}"),
            &[("device", device)],
        )
    }

    fn devices(c: &Collected) -> Vec<&str> {
        c.samples
            .iter()
            .filter(|(n, _, _)| n == "herakles_system_disk_read_bytes_total")
            .map(|(_, l, _)| l[0].1.as_str())
            .collect()
    }

    #[test]
    fn exact_values_from_fixture() {
        let c = collect_once::<Disk>(DiskConfig::default(), fixture("disk")).unwrap();
        // sda: an 18-column line from a 4.18 kernel.
        assert_eq!(get(&c, "reads_completed_total", "sda"), Some(12060.0));
        assert_eq!(get(&c, "reads_merged_total", "sda"), Some(4806.0));
        assert_eq!(
            get(&c, "read_bytes_total", "sda"),
            Some(2_595_570.0 * 512.0)
        );
        assert_eq!(get(&c, "read_time_seconds_total", "sda"), Some(12.496));
        assert_eq!(get(&c, "writes_completed_total", "sda"), Some(2950.0));
        assert_eq!(get(&c, "writes_merged_total", "sda"), Some(19883.0));
        assert_eq!(
            get(&c, "write_bytes_total", "sda"),
            Some(2_717_792.0 * 512.0)
        );
        assert_eq!(get(&c, "write_time_seconds_total", "sda"), Some(10.155));
        assert_eq!(get(&c, "queue_depth", "sda"), Some(3.0));
        assert_eq!(get(&c, "io_time_seconds_total", "sda"), Some(3.952));
        assert_eq!(
            get(&c, "io_time_weighted_seconds_total", "sda"),
            Some(23.041)
        );
        assert_eq!(get(&c, "discards_completed_total", "sda"), Some(52.0));
        assert_eq!(get(&c, "discards_merged_total", "sda"), Some(7.0));
        assert_eq!(
            get(&c, "discarded_bytes_total", "sda"),
            Some(137_080.0 * 512.0)
        );
        assert_eq!(get(&c, "discard_time_seconds_total", "sda"), Some(0.385));
        assert!(get(&c, "flush_requests_total", "sda").is_none());

        // nvme0n1: 20 columns, flushes too.
        assert_eq!(get(&c, "flush_requests_total", "nvme0n1"), Some(70.0));
        assert_eq!(get(&c, "flush_time_seconds_total", "nvme0n1"), Some(0.003));
        // hda: 14 columns from an old kernel, no discard series.
        assert_eq!(get(&c, "read_bytes_total", "hda"), Some(1024.0));
        assert!(get(&c, "discards_completed_total", "hda").is_none());
        // vdb: columns from a kernel newer than this code are ignored.
        assert_eq!(get(&c, "flush_requests_total", "vdb"), Some(9.0));
        // sdb: a broken discard group is dropped, the base counters stay.
        assert_eq!(get(&c, "reads_completed_total", "sdb"), Some(5.0));
        assert!(get(&c, "discards_completed_total", "sdb").is_none());

        // Partitions stay; loop, ram and zram are excluded by default; the
        // truncated, non-numeric and nameless lines are skipped.
        assert_eq!(
            devices(&c),
            ["sda", "sda1", "nvme0n1", "hda", "vdb", "sdb", "sr0"]
        );
        // short line, non-numeric base column, one bare word, sdb's discard
        // group.
        assert_eq!(c.parse_errors, 4);

        assert_eq!(
            c.value("herakles_system_disk_psi_wait_seconds_total", &[]),
            Some(3.5)
        );
        assert_eq!(
            c.value("herakles_system_disk_psi_full_wait_seconds_total", &[]),
            Some(2.25)
        );
    }

    #[test]
    fn include_and_exclude() {
        let config = DiskConfig {
            device_include: "^(sd|loop)".into(),
            device_exclude: "1$".into(),
        };
        let c = collect_once::<Disk>(config, fixture("disk")).unwrap();
        assert_eq!(devices(&c), ["sda", "sdb", "loop0"]);

        let config = DiskConfig {
            device_include: String::new(),
            device_exclude: String::new(),
        };
        let c = collect_once::<Disk>(config, fixture("disk")).unwrap();
        assert_eq!(devices(&c).len(), 10);
    }

    #[test]
    fn invalid_regex_names_the_key() {
        let config = DiskConfig {
            device_include: String::new(),
            device_exclude: "(".into(),
        };
        let err = collect_once::<Disk>(config, fixture("disk")).unwrap_err();
        assert!(err.to_string().starts_with("device_exclude: "), "{err}");
    }

    #[test]
    fn vanished_devices_have_no_series() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            procfs: dir.path().to_path_buf(),
            ..Paths::default()
        };
        let disk = Disk::build(
            DiskConfig::default(),
            &BuildContext::new(paths.clone(), Arc::new(())),
        )
        .unwrap();
        let line = |name: &str| format!("8 0 {name} 1 2 3 4 5 6 7 8 9 10 11\n");
        std::fs::write(dir.path().join("diskstats"), line("sda") + &line("sdb")).unwrap();
        assert_eq!(
            devices(&collect_with(&disk, paths.clone()).unwrap()),
            ["sda", "sdb"]
        );
        std::fs::write(dir.path().join("diskstats"), line("sdb")).unwrap();
        let c = collect_with(&disk, paths).unwrap();
        assert_eq!(devices(&c), ["sdb"]);
        assert!(get(&c, "queue_depth", "sda").is_none());
        // Without a pressure file there is no PSI series.
        assert!(c.absent("herakles_system_disk_psi_wait_seconds_total"));
    }

    #[test]
    fn missing_diskstats_fails_naming_the_file() {
        let err =
            collect_once::<Disk>(DiskConfig::default(), fixture("does-not-exist")).unwrap_err();
        assert!(err.to_string().contains("diskstats"), "{err}");
    }

    #[test]
    fn live_read_bytes_match_proc_diskstats() {
        fn read() -> Vec<(String, u64)> {
            std::fs::read_to_string("/proc/diskstats")
                .unwrap()
                .lines()
                .map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    (w[2].to_string(), w[5].parse().unwrap())
                })
                .collect()
        }
        let before = read();
        let config = DiskConfig {
            device_include: String::new(),
            device_exclude: String::new(),
        };
        let c = collect_once::<Disk>(config, Paths::default()).unwrap();
        let after = read();
        assert_eq!(c.parse_errors, 0);
        for (device, sectors) in &before {
            let Some((_, later)) = after.iter().find(|(d, _)| d == device) else {
                continue;
            };
            let got = get(&c, "read_bytes_total", device).unwrap();
            assert!(
                (*sectors as f64 * 512.0..=*later as f64 * 512.0).contains(&got),
                "{device}: {got}"
            );
        }
        assert!(!before.is_empty());
    }

    #[test]
    fn example_config_loads() {
        let config: DiskConfig = example_config("disk");
        assert_eq!(config.device_exclude, DiskConfig::default().device_exclude);
        assert!(!config.device_include.is_empty());
    }

    proptest! {
        #[test]
        fn line_parser_takes_anything(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&bytes);
            let mut out = MetricSink::new();
            for line in text.lines() {
                let _ = parse_line(line, &mut out);
            }
        }

        /// Lines of every kernel generation (11, 15 or 17 counters, or
        /// more) read exactly; a cut-short optional group is dropped alone.
        #[test]
        fn lines_of_any_generation_round_trip(
            name in "[a-z][a-z0-9_-]{0,15}",
            values in prop::collection::vec(any::<u64>(), 11..22),
        ) {
            let line = format!(
                "{:4} {:7} {name} {}",
                8,
                0,
                values.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
            );
            let mut out = MetricSink::new();
            let d = parse_line(&line, &mut out).unwrap();
            prop_assert_eq!(d.device, name.as_str());
            prop_assert_eq!(&d.base[..], &values[..11]);
            let n = values.len();
            prop_assert_eq!(d.discard.map(|g| g.to_vec()), (n >= 15).then(|| values[11..15].to_vec()));
            prop_assert_eq!(d.flush.map(|g| g.to_vec()), (n >= 17).then(|| values[15..17].to_vec()));
            // 12 to 14 or 16 columns: a group cut short, counted.
            let cut = (12..15).contains(&n) || n == 16;
            prop_assert_eq!(out.parse_errors(), u64::from(cut));
        }
    }
}
