//! Load averages from `/proc/loadavg`.
//!
//! The kernel's load average counts runnable *and* uninterruptible tasks, so
//! a host stuck on I/O shows load without CPU use; read it next to the CPU
//! and PSI series before calling a host CPU-bound.

use herakles_core::{inventory, Collector, Desc, MetricSink, Registration, Result, ScrapeContext};

const LOAD1: Desc = Desc::gauge(
    "herakles_system_cpu_load_1",
    "Load average over the last minute.",
);
const LOAD5: Desc = Desc::gauge(
    "herakles_system_cpu_load_5",
    "Load average over the last 5 minutes.",
);
const LOAD15: Desc = Desc::gauge(
    "herakles_system_cpu_load_15",
    "Load average over the last 15 minutes.",
);

/// See the module documentation.
#[derive(Default)]
pub struct LoadAvg;

impl Collector for LoadAvg {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let path = ctx.paths().proc("loadavg");
        let text = ctx.read_proc("loadavg")?;
        let mut fields = text.split_whitespace().map(str::parse::<f64>);
        for desc in [&LOAD1, &LOAD5, &LOAD15] {
            match fields.next() {
                Some(Ok(v)) => out.single(desc, v),
                _ => {
                    return Err(herakles_core::Error::at(
                        &path,
                        format!("expected three load averages, got {:?}", text.trim()),
                    ))
                }
            }
        }
        Ok(())
    }
}

inventory::submit! {
    Registration::plain::<LoadAvg>(
        "loadavg",
        "Load averages from /proc/loadavg",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::fixture;
    use herakles_core::{testing::collect_with, Paths};

    #[test]
    fn exact_values_from_fixture() {
        let c = collect_with(&LoadAvg, fixture("basic")).unwrap();
        assert_eq!(c.value("herakles_system_cpu_load_1", &[]), Some(0.52));
        assert_eq!(c.value("herakles_system_cpu_load_5", &[]), Some(1.25));
        assert_eq!(c.value("herakles_system_cpu_load_15", &[]), Some(2.5));
    }

    #[test]
    fn truncated_file_is_an_error_naming_it() {
        let err = collect_with(&LoadAvg, fixture("garbage")).unwrap_err();
        assert!(err.to_string().contains("loadavg"), "{err}");
    }

    #[test]
    fn live_values_match_the_file() {
        let c = collect_with(&LoadAvg, Paths::default()).unwrap();
        let text = std::fs::read_to_string("/proc/loadavg").unwrap();
        let want: f64 = text.split_whitespace().nth(2).unwrap().parse().unwrap();
        // The 15-minute average moves by far less than 0.5 between two reads.
        let got = c.value("herakles_system_cpu_load_15", &[]).unwrap();
        assert!((got - want).abs() < 0.5, "{got} vs {want}");
    }
}
