//! System memory from `/proc/meminfo`, and memory pressure from
//! `/proc/pressure/memory`.
//!
//! "Used" is `MemTotal - MemAvailable`, the kernel's own estimate of memory
//! that cannot be reclaimed without swapping; `MemTotal - MemFree` would count
//! the page cache as used and alarm on every healthy file server.

use herakles_core::{inventory, Collector, Desc, MetricSink, Registration, Result, ScrapeContext};

use super::helpers::psi;

const TOTAL: Desc = Desc::gauge(
    "herakles_system_memory_total_bytes",
    "Total usable memory (MemTotal).",
);
const AVAILABLE: Desc = Desc::gauge(
    "herakles_system_memory_available_bytes",
    "Memory available for new work without swapping (MemAvailable).",
);
const FREE: Desc = Desc::gauge(
    "herakles_system_memory_free_bytes",
    "Memory not used for anything (MemFree).",
);
const USED_RATIO: Desc = Desc::gauge(
    "herakles_system_memory_used_ratio",
    "Share of memory in use, (MemTotal - MemAvailable) / MemTotal.",
);
const CACHED: Desc = Desc::gauge(
    "herakles_system_memory_cached_bytes",
    "Page cache (Cached).",
);
const BUFFERS: Desc = Desc::gauge(
    "herakles_system_memory_buffers_bytes",
    "Block device buffers (Buffers).",
);
const SWAP_TOTAL: Desc = Desc::gauge(
    "herakles_system_swap_total_bytes",
    "Total swap space (SwapTotal).",
);
const SWAP_FREE: Desc = Desc::gauge(
    "herakles_system_swap_free_bytes",
    "Unused swap space (SwapFree).",
);
const SWAP_USED_RATIO: Desc = Desc::gauge(
    "herakles_system_swap_used_ratio",
    "Share of swap in use; absent when the host has no swap.",
);
const PSI_WAIT: Desc = Desc::counter(
    "herakles_system_memory_psi_wait_seconds_total",
    "Time in which at least one task stalled on memory (PSI 'some' total).",
);
const PSI_FULL_WAIT: Desc = Desc::counter(
    "herakles_system_memory_psi_full_wait_seconds_total",
    "Time in which all non-idle tasks stalled on memory at once (PSI 'full' total).",
);

/// See the module documentation.
#[derive(Default)]
pub struct Memory;

impl Collector for Memory {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let text = ctx.read_proc("meminfo")?;
        let info = parse_meminfo(&text, out);
        let total = info.get("MemTotal").ok_or("meminfo has no MemTotal")?;
        out.single(&TOTAL, total);
        for (desc, key) in [
            (&AVAILABLE, "MemAvailable"),
            (&FREE, "MemFree"),
            (&CACHED, "Cached"),
            (&BUFFERS, "Buffers"),
            (&SWAP_TOTAL, "SwapTotal"),
            (&SWAP_FREE, "SwapFree"),
        ] {
            if let Some(v) = info.get(key) {
                out.single(desc, v);
            }
        }
        if let (Some(avail), true) = (info.get("MemAvailable"), total > 0.0) {
            out.single(&USED_RATIO, (total - avail) / total);
        }
        if let (Some(st), Some(sf)) = (info.get("SwapTotal"), info.get("SwapFree")) {
            // 0/0 is not a ratio: without swap the series is absent.
            if st > 0.0 {
                out.single(&SWAP_USED_RATIO, (st - sf) / st);
            }
        }
        psi::emit(
            ctx.read_proc("pressure/memory"),
            out,
            Some(&PSI_WAIT),
            Some(&PSI_FULL_WAIT),
        );
        Ok(())
    }
}

/// `/proc/meminfo` as (key, bytes) pairs.
struct MemInfo(Vec<(String, f64)>);

impl MemInfo {
    fn get(&self, key: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Parse `Key:   value kB` lines; unparsable lines are skipped and counted.
fn parse_meminfo(text: &str, out: &mut MetricSink) -> MemInfo {
    let mut fields = Vec::with_capacity(64);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = line.split_once(':').and_then(|(key, rest)| {
            let mut it = rest.split_whitespace();
            let value: f64 = it.next()?.parse().ok()?;
            let scale = match it.next() {
                None => 1.0,
                Some("kB") => 1024.0,
                Some(_) => return None,
            };
            Some((key.trim().to_string(), value * scale))
        });
        match parsed {
            Some(kv) => fields.push(kv),
            None => out.parse_error(),
        }
    }
    MemInfo(fields)
}

inventory::submit! {
    Registration::plain::<Memory>(
        "memory",
        "System memory and swap from /proc/meminfo, memory pressure (PSI)",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::fixture;
    use herakles_core::testing::collect_with;
    use proptest::prelude::*;

    #[test]
    fn exact_values_from_fixture() {
        let c = collect_with(&Memory, fixture("basic")).unwrap();
        assert_eq!(
            c.value("herakles_system_memory_total_bytes", &[]),
            Some(16_303_424.0 * 1024.0)
        );
        assert_eq!(
            c.value("herakles_system_memory_available_bytes", &[]),
            Some(9_875_432.0 * 1024.0)
        );
        assert_eq!(
            c.value("herakles_system_memory_cached_bytes", &[]),
            Some(5_123_456.0 * 1024.0)
        );
        assert_eq!(
            c.value("herakles_system_memory_buffers_bytes", &[]),
            Some(234_567.0 * 1024.0)
        );
        let used = c.value("herakles_system_memory_used_ratio", &[]).unwrap();
        assert!((used - (16_303_424.0 - 9_875_432.0) / 16_303_424.0).abs() < 1e-12);
        let swap = c.value("herakles_system_swap_used_ratio", &[]).unwrap();
        assert!((swap - (2_097_148.0 - 1_048_574.0) / 2_097_148.0).abs() < 1e-12);
        assert_eq!(
            c.value("herakles_system_memory_psi_wait_seconds_total", &[]),
            Some(12.345678)
        );
        assert_eq!(
            c.value("herakles_system_memory_psi_full_wait_seconds_total", &[]),
            Some(6.5)
        );
        assert_eq!(c.parse_errors, 0);
    }

    #[test]
    fn garbage_lines_are_counted_and_no_swap_means_no_ratio() {
        let c = collect_with(&Memory, fixture("garbage")).unwrap();
        assert_eq!(
            c.value("herakles_system_memory_total_bytes", &[]),
            Some(1000.0 * 1024.0)
        );
        assert!(c.absent("herakles_system_swap_used_ratio"));
        assert_eq!(c.value("herakles_system_swap_total_bytes", &[]), Some(0.0));
        // No pressure directory in this fixture: PSI series are absent.
        assert!(c.absent("herakles_system_memory_psi_wait_seconds_total"));
        assert_eq!(c.parse_errors, 3);
    }

    #[test]
    fn missing_meminfo_fails_the_collector() {
        let err = collect_with(&Memory, fixture("does-not-exist")).unwrap_err();
        assert!(err.to_string().contains("meminfo"), "{err}");
    }

    proptest! {
        /// Any bytes, read the way the collector reads them: no panic, and
        /// at most one field or one parse error per line.
        #[test]
        fn meminfo_parser_takes_anything(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let text = String::from_utf8_lossy(&bytes);
            let lines = text.lines().count();
            let mut out = MetricSink::new();
            let info = parse_meminfo(&text, &mut out);
            prop_assert!(info.0.len() + out.parse_errors() as usize <= lines);
        }

        /// Every `Key: value [kB]` line reads exactly, in bytes.
        #[test]
        fn meminfo_round_trips(
            fields in prop::collection::btree_map("[A-Za-z][A-Za-z0-9_()]{0,19}", (any::<u32>(), any::<bool>()), 1..30),
        ) {
            let text: String = fields
                .iter()
                .map(|(k, (v, kb))| format!("{k}:{:>16}{}\n", v, if *kb { " kB" } else { "" }))
                .collect();
            let mut out = MetricSink::new();
            let info = parse_meminfo(&text, &mut out);
            prop_assert_eq!(out.parse_errors(), 0);
            for (k, (v, kb)) in &fields {
                let want = f64::from(*v) * if *kb { 1024.0 } else { 1.0 };
                prop_assert_eq!(info.get(k), Some(want));
            }
        }
    }
}
