//! Host identity and clock: uptime, boot time and `uname`.
//!
//! `uname` fields come from `/proc/sys/kernel/*` rather than the `uname(2)`
//! syscall so that `--path.procfs` pointing at a host's `/proc` describes
//! that host. Only the machine architecture falls back to the syscall, on
//! kernels older than 6.1 that lack `/proc/sys/kernel/arch` (a container
//! shares its host's kernel, so the answer is the same).

use herakles_core::{
    inventory, Collector, Desc, Error, MetricSink, Registration, Result, ScrapeContext,
};

use super::helpers::proc_stat;

const UPTIME: Desc = Desc::gauge(
    "herakles_system_uptime_seconds",
    "Seconds since boot (first field of /proc/uptime).",
);
const BOOT_TIME: Desc = Desc::gauge(
    "herakles_system_boot_time_seconds",
    "Boot time as a Unix timestamp (btime in /proc/stat).",
);
const UNAME: Desc = Desc::gauge(
    "herakles_system_uname_info",
    "Kernel identification; the value is always 1.",
);

/// See the module documentation.
#[derive(Default)]
pub struct Host;

impl Collector for Host {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let mut failures = Vec::new();

        match ctx.read_proc("uptime").map(|t| first_number(&t)) {
            Ok(Some(v)) => out.single(&UPTIME, v),
            Ok(None) => out.parse_error(),
            Err(e) => failures.push(e),
        }

        match ctx
            .read_proc_shared("stat")
            .map(|t| proc_stat::field(&t, "btime"))
        {
            Ok(Some(v)) => out.single(&BOOT_TIME, v),
            Ok(None) => out.parse_error(),
            Err(e) => failures.push(e),
        }

        match uname(ctx) {
            Ok(labels) => {
                let [sysname, release, version, machine] = &labels;
                out.family(&UNAME).sample(
                    &[
                        ("sysname", sysname),
                        ("release", release),
                        ("version", version),
                        ("machine", machine),
                    ],
                    1.0,
                );
            }
            Err(e) => failures.push(e),
        }

        // Each part stands alone; the collector fails only when nothing worked,
        // and then says why. A file too long to be the kernel's is also a
        // parse error.
        for _ in failures.iter().filter(|e| e.is_too_large()) {
            out.parse_error();
        }
        if failures.len() == 3 {
            return Err(failures.remove(0));
        }
        for e in failures {
            tracing::debug!(error = %e, "host: partial failure");
        }
        Ok(())
    }
}

fn first_number(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

fn uname(ctx: &ScrapeContext) -> Result<[String; 4]> {
    let read = |name: &str| -> Result<String> {
        Ok(ctx
            .read_proc(format!("sys/kernel/{name}"))?
            .trim_end()
            .to_string())
    };
    let machine = match read("arch") {
        Ok(m) => m,
        Err(e) if e.is_not_found() => nix::sys::utsname::uname()
            .map_err(|e| Error::msg(format!("uname(2): {e}")))?
            .machine()
            .to_string_lossy()
            .into_owned(),
        Err(e) => return Err(e),
    };
    Ok([
        read("ostype")?,
        read("osrelease")?,
        read("version")?,
        machine,
    ])
}

inventory::submit! {
    Registration::plain::<Host>(
        "host",
        "Uptime, boot time and uname of the host",
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
        let c = collect_with(&Host, fixture("basic")).unwrap();
        assert_eq!(
            c.value("herakles_system_uptime_seconds", &[]),
            Some(123456.78)
        );
        assert_eq!(
            c.value("herakles_system_boot_time_seconds", &[]),
            Some(1_700_000_000.0)
        );
        assert_eq!(
            c.value(
                "herakles_system_uname_info",
                &[
                    ("sysname", "Linux"),
                    ("release", "6.1.0-test"),
                    ("version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.0 \"quoted\""),
                    ("machine", "x86_64"),
                ]
            ),
            Some(1.0)
        );
    }

    /// An invalid byte on another line of /proc/stat costs nothing here.
    #[test]
    fn an_invalid_byte_elsewhere_in_stat_is_harmless() {
        let c = collect_with(&Host, fixture("stat_bad_byte")).unwrap();
        assert_eq!(
            c.value("herakles_system_boot_time_seconds", &[]),
            Some(1_700_000_000.0)
        );
        assert_eq!(c.parse_errors, 0);
    }

    #[test]
    fn nothing_readable_is_an_error() {
        assert!(collect_with(&Host, fixture("does-not-exist")).is_err());
    }

    #[test]
    fn live_boot_time_matches_uptime() {
        let c = collect_with(&Host, Paths::default()).unwrap();
        let boot = c.value("herakles_system_boot_time_seconds", &[]).unwrap();
        let up = c.value("herakles_system_uptime_seconds", &[]).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // btime is whole seconds and the clock may have been stepped since
        // boot; a few seconds of disagreement is normal, minutes are a bug.
        assert!(
            (boot + up - now).abs() < 5.0,
            "boot {boot} + up {up} vs now {now}"
        );
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert!(c.text.contains(&format!("release=\"{}\"", release.trim())));
    }
}
