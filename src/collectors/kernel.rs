//! Kernel activity counters: context switches and forks from `/proc/stat`,
//! the system-wide file handle table from `/proc/sys/fs/file-nr`, and the
//! entropy pool from `/proc/sys/kernel/random/entropy_avail`.
//!
//! `/proc/stat` is read through the scrape's shared cache: the cpu and host
//! collectors parse the same file in the same scrape.

use herakles_core::{inventory, Collector, Desc, MetricSink, Registration, Result, ScrapeContext};

use super::helpers::proc_stat;

const CONTEXT_SWITCHES: Desc = Desc::counter(
    "herakles_system_context_switches_total",
    "Context switches since boot (ctxt in /proc/stat).",
);
const FORKS: Desc = Desc::counter(
    "herakles_system_forks_total",
    "Processes and threads created since boot (processes in /proc/stat).",
);
const OPEN_FDS: Desc = Desc::gauge(
    "herakles_system_open_fds",
    "System-wide file handles: state=\"allocated\" in use, state=\"max\" the limit (fs.file-max).",
);
const ENTROPY: Desc = Desc::gauge(
    "herakles_system_entropy_bits",
    "Entropy available in the kernel's random pool, in bits.",
);

/// See the module documentation.
#[derive(Default)]
pub struct Kernel;

impl Collector for Kernel {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let stat = ctx.read_proc_shared("stat")?;
        for (desc, key) in [(&CONTEXT_SWITCHES, "ctxt"), (&FORKS, "processes")] {
            match proc_stat::field(&stat, key) {
                Some(v) => out.single(desc, v),
                None => out.parse_error(),
            }
        }

        // file-nr is "allocated unused max"; "unused" has been 0 since 2.6.
        // Both files are optional; one too long to be theirs is a parse
        // error.
        let mut optional = |rel: &str| match ctx.read_proc(rel) {
            Ok(text) => Some(text),
            Err(e) if e.is_too_large() => {
                out.parse_error();
                None
            }
            Err(_) => None,
        };
        let file_nr = optional("sys/fs/file-nr");
        let entropy = optional("sys/kernel/random/entropy_avail");
        if let Some(text) = file_nr {
            let fields: Vec<Option<f64>> =
                text.split_whitespace().map(|w| w.parse().ok()).collect();
            match fields.as_slice() {
                [Some(allocated), Some(_), Some(max)] => {
                    let mut fam = out.family(&OPEN_FDS);
                    fam.sample(&[("state", "allocated")], *allocated);
                    fam.sample(&[("state", "max")], *max);
                }
                _ => out.parse_error(),
            }
        }

        if let Some(text) = entropy {
            match text.trim().parse::<f64>() {
                Ok(v) => out.single(&ENTROPY, v),
                Err(_) => out.parse_error(),
            }
        }
        Ok(())
    }
}

inventory::submit! {
    Registration::plain::<Kernel>(
        "kernel",
        "Context switches, forks, open file handles and entropy",
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
        let c = collect_with(&Kernel, fixture("basic")).unwrap();
        assert_eq!(
            c.value("herakles_system_context_switches_total", &[]),
            Some(112_233_445_566.0)
        );
        assert_eq!(c.value("herakles_system_forks_total", &[]), Some(987_654.0));
        assert_eq!(
            c.value("herakles_system_open_fds", &[("state", "allocated")]),
            Some(4128.0)
        );
        assert_eq!(
            c.value("herakles_system_open_fds", &[("state", "max")]),
            Some(9_223_372_036_854_775_807.0)
        );
        assert_eq!(c.value("herakles_system_entropy_bits", &[]), Some(256.0));
        assert_eq!(c.parse_errors, 0);
    }

    /// An invalid byte on another line of /proc/stat costs nothing here.
    #[test]
    fn an_invalid_byte_elsewhere_in_stat_is_harmless() {
        let c = collect_with(&Kernel, fixture("stat_bad_byte")).unwrap();
        assert_eq!(
            c.value("herakles_system_context_switches_total", &[]),
            Some(777.0)
        );
        assert_eq!(c.value("herakles_system_forks_total", &[]), Some(4242.0));
        assert_eq!(c.parse_errors, 0);
    }

    #[test]
    fn live_forks_move_forward_when_we_fork() {
        let before = collect_with(&Kernel, Paths::default()).unwrap();
        std::process::Command::new("true").status().unwrap();
        let after = collect_with(&Kernel, Paths::default()).unwrap();
        let f = |c: &herakles_core::testing::Collected| {
            c.value("herakles_system_forks_total", &[]).unwrap()
        };
        assert!(f(&after) >= f(&before) + 1.0);
    }
}
