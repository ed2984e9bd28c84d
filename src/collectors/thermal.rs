//! Thermal zone temperatures from `/sys/class/thermal`.
//!
//! Thermal zones are the kernel's view of temperatures it acts on (throttling,
//! fans, emergency shutdown). They overlap with hwmon on PCs, but on many ARM
//! boards and in some laptops' ACPI tables they are the only temperatures
//! there are, which is why this is a collector of its own.
//!
//! A zone is labelled by its number and its `type` ("x86_pkg_temp",
//! "cpu-thermal"). Types repeat (several `acpitz` zones are common), so the
//! number is what keeps series apart. Zones whose sensor refuses the read
//! (EIO, ENODATA and EAGAIN are common while a sensor is powered down) are
//! skipped quietly; unparsable values are skipped and counted, and so is a
//! file longer than any attribute can be. Values are read the way `hwmon`
//! reads its sensors.

use std::fs;
use std::io::ErrorKind;

use herakles_core::{
    inventory, Collector, Desc, Error, MetricSink, Registration, Result, ScrapeContext,
};

use super::helpers::sysfs::{read_text, read_value};

const TEMP: Desc = Desc::gauge(
    "herakles_system_thermal_zone_temp_celsius",
    "Temperature of a thermal zone.",
);

/// See the module documentation.
#[derive(Default)]
pub struct Thermal;

impl Collector for Thermal {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let class = ctx.paths().sys("class/thermal");
        let entries = match fs::read_dir(&class) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&class, e)),
        };
        // Cooling devices share the directory; only zones are read.
        let mut zones: Vec<(u64, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let number = name.strip_prefix("thermal_zone")?.parse().ok()?;
                Some((number, name))
            })
            .collect();
        zones.sort();
        for (number, name) in zones {
            let dir = class.join(&name);
            let Some(millidegrees) = read_value(&dir.join("temp"), out) else {
                continue;
            };
            // A zone without a readable type still has a temperature worth
            // having; the number alone identifies it.
            let kind = read_text(&dir.join("type")).unwrap_or_default();
            out.family(&TEMP).sample(
                &[("zone", &number.to_string()), ("type", &kind)],
                millidegrees / 1000.0,
            );
        }
        Ok(())
    }
}

inventory::submit! {
    Registration::plain::<Thermal>(
        "thermal",
        "Thermal zone temperatures from /sys/class/thermal",
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

    fn temp(c: &Collected, zone: &str, kind: &str) -> Option<f64> {
        c.value(
            "herakles_system_thermal_zone_temp_celsius",
            &[("zone", zone), ("type", kind)],
        )
    }

    #[test]
    fn exact_values_from_fixture() {
        let c = collect_with(&Thermal, fixture("thermal")).unwrap();
        assert_eq!(temp(&c, "0", "x86_pkg_temp"), Some(52.0));
        assert_eq!(temp(&c, "3", ""), Some(30.5));
        assert_eq!(temp(&c, "4", "acpitz"), Some(-5.0));
        assert_eq!(temp(&c, "10", "cpu \"big\"\ncluster"), Some(61.25));
        assert!(
            c.text.contains(r#"type="cpu \"big\"\ncluster""#),
            "{}",
            c.text
        );
        // Zone 1 holds garbage and zone 2's temp is a dangling link; the
        // cooling device is not a zone.
        assert_eq!(c.count("herakles_system_thermal_zone_temp_celsius"), 4);
        let zones: Vec<&str> = c.samples.iter().map(|(_, l, _)| l[0].1.as_str()).collect();
        assert_eq!(zones, ["0", "3", "4", "10"]);
        assert_eq!(c.parse_errors, 1);
    }

    #[test]
    fn refusing_sensors_are_skipped_without_parse_errors() {
        let dir = tempfile::tempdir().unwrap();
        let class = dir.path().join("class/thermal");
        for zone in ["thermal_zone0", "thermal_zone1"] {
            fs::create_dir_all(class.join(zone)).unwrap();
            fs::write(class.join(zone).join("type"), "acpitz\n").unwrap();
        }
        // A link is refused (ELOOP: no sysfs attribute is a link), as a
        // sensor that does not answer fails with EIO.
        std::os::unix::fs::symlink("/proc/self/mem", class.join("thermal_zone0/temp")).unwrap();
        fs::write(class.join("thermal_zone1/temp"), "27800\n").unwrap();
        let paths = Paths {
            sysfs: dir.path().to_path_buf(),
            ..Paths::default()
        };
        let c = collect_with(&Thermal, paths).unwrap();
        assert_eq!(c.count("herakles_system_thermal_zone_temp_celsius"), 1);
        assert_eq!(temp(&c, "1", "acpitz"), Some(27.8));
        assert_eq!(c.parse_errors, 0);
    }

    #[test]
    fn no_thermal_class_means_no_series() {
        let c = collect_with(&Thermal, fixture("does-not-exist")).unwrap();
        assert!(c.samples.is_empty());
    }

    #[test]
    fn live_zones_match_sys_class_thermal() {
        let c = collect_with(&Thermal, Paths::default()).unwrap();
        let readable = fs::read_dir("/sys/class/thermal")
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
                    .filter(|e| fs::read_to_string(e.path().join("temp")).is_ok())
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(
            c.count("herakles_system_thermal_zone_temp_celsius") as u64 + c.parse_errors,
            readable as u64
        );
    }

    #[test]
    fn example_config_loads() {
        example_config::<herakles_core::NoConfig>("thermal");
    }
}
