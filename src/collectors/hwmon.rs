//! Hardware sensors from `/sys/class/hwmon`: temperatures, fans, voltages,
//! power and current, and CPU temperatures picked out of them.
//!
//! # Naming chips
//!
//! `hwmonN` numbers follow the order in which drivers happened to load, so
//! they can change between boots and make poor labels. Driver names are
//! stable but not unique: a two-socket host has two `coretemp` chips, a host
//! with two NVMe drives two `nvme` chips. So, like node_exporter, a chip is
//! named after the device it sits on: the last two components of the
//! resolved `device` link, lowercased with everything but `[a-z0-9:_]`
//! replaced, e.g. `/sys/devices/platform/coretemp.0` becomes
//! `platform_coretemp_0`. Chips with no device (virtual ones such as
//! `acpitz`) fall back to the driver name, then to `hwmonN`; if a name is
//! still taken, `_hwmonN` is appended, so no two chips ever share a label.
//! The driver name is exposed in `herakles_system_hwmon_chip_info` for
//! joins.
//!
//! # Naming sensors
//!
//! A sensor is named by its `*_label` file ("Core 0", "Vcore") when it has
//! one, because `temp3` means nothing on a dashboard. Some drivers give two
//! sensors the same label; then every sensor of that kind on that chip is
//! named by its file index (`temp1`, `temp2`) instead, so series stay unique
//! and their names do not depend on which duplicate happened to come first.
//!
//! # Failing sensors
//!
//! Reading a sensor file asks the hardware. Sensors that are asleep, absent
//! or broken refuse with EIO, ENODATA or EAGAIN, some permanently; such a
//! sensor is skipped quietly, as nothing malformed was read. A file that
//! reads but holds no integer is skipped and counted as a parse error, and
//! so is one longer than any attribute can be (a sparse file or a device
//! in a tree that is not sysfs); a link where sysfs has a file is refused
//! like a sensor that does not answer. No sensor can fail the collector,
//! and a host without hwmon has no series.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, Error, MetricSink, Registration,
    Result, ScrapeContext,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::helpers::sysfs::{read_text, read_value};

const TEMP: Desc = Desc::gauge(
    "herakles_system_hwmon_temp_celsius",
    "Temperature reported by a hardware monitoring chip.",
);
const TEMP_CRIT: Desc = Desc::gauge(
    "herakles_system_hwmon_temp_crit_celsius",
    "Critical temperature threshold of a sensor, as the chip reports it.",
);
const TEMP_MAX: Desc = Desc::gauge(
    "herakles_system_hwmon_temp_max_celsius",
    "Maximum temperature threshold of a sensor, as the chip reports it.",
);
const FAN: Desc = Desc::gauge(
    "herakles_system_hwmon_fan_rpm",
    "Fan speed in revolutions per minute.",
);
const VOLTAGE: Desc = Desc::gauge(
    "herakles_system_hwmon_voltage_volts",
    "Voltage reported by a hardware monitoring chip.",
);
const POWER: Desc = Desc::gauge(
    "herakles_system_hwmon_power_watts",
    "Power reported by a hardware monitoring chip (instantaneous, else the chip's average).",
);
const CURRENT: Desc = Desc::gauge(
    "herakles_system_hwmon_current_amps",
    "Current reported by a hardware monitoring chip.",
);
const CHIP_INFO: Desc = Desc::gauge(
    "herakles_system_hwmon_chip_info",
    "The driver name of each chip; always 1.",
);
const CPU_TEMP: Desc = Desc::gauge(
    "herakles_system_cpu_temp_celsius",
    "CPU temperature, from the chips listed in the hwmon collector's cpu_temp_chips.",
);

/// The sensor attributes read; hwmon has many more (alarms, limits, offsets)
/// that say little without the board's documentation.
const ATTRIBUTES: [&str; 5] = ["input", "crit", "max", "average", "label"];

/// The `collectors.hwmon` config section.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HwmonConfig {
    /// Driver names (the chip's `name` file) whose temperatures are CPU
    /// temperatures and are also exposed as `herakles_system_cpu_temp_celsius`.
    /// The default covers the Intel and AMD x86 drivers and `cpu_thermal`,
    /// the thermal-zone bridge most ARM boards use; add your board's driver
    /// if it differs.
    pub cpu_temp_chips: Vec<String>,
}

impl Default for HwmonConfig {
    fn default() -> HwmonConfig {
        HwmonConfig {
            cpu_temp_chips: [
                "coretemp",
                "k10temp",
                "k8temp",
                "zenpower",
                "via_cputemp",
                "cpu_thermal",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// See the module documentation.
pub struct Hwmon {
    cpu_temp_chips: Vec<String>,
}

impl Collector for Hwmon {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let class = ctx.paths().sys("class/hwmon");
        let entries = match fs::read_dir(&class) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&class, e)),
        };
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        dirs.sort_by_key(|d| hwmon_number(d));
        let mut taken = HashSet::new();
        for dir in dirs {
            let name = read_text(&dir.join("name")).or_else(|| read_text(&dir.join("device/name")));
            let mut chip = chip_id(&dir, name.as_deref());
            if taken.contains(&chip) {
                chip = format!("{chip}_{}", file_name(&dir));
            }
            taken.insert(chip.clone());
            if let Some(name) = &name {
                out.family(&CHIP_INFO)
                    .sample(&[("chip", &chip), ("chip_name", name)], 1.0);
            }
            let is_cpu = name
                .as_deref()
                .is_some_and(|n| self.cpu_temp_chips.iter().any(|c| c == n));
            let sensors = sensor_files(&dir);
            let names = sensor_names(&sensors);
            for (key @ (kind, _), files) in &sensors {
                let labels = [("chip", chip.as_str()), ("sensor", names[key].as_str())];
                let mut value = |attribute: &str| read_value(files.get(attribute)?, out);
                match kind {
                    Kind::Temp => {
                        let input = value("input");
                        let crit = value("crit");
                        let max = value("max");
                        if let Some(v) = input {
                            out.family(&TEMP).sample(&labels, v / 1000.0);
                            if is_cpu {
                                out.family(&CPU_TEMP).sample(&labels, v / 1000.0);
                            }
                        }
                        if let Some(v) = crit {
                            out.family(&TEMP_CRIT).sample(&labels, v / 1000.0);
                        }
                        if let Some(v) = max {
                            out.family(&TEMP_MAX).sample(&labels, v / 1000.0);
                        }
                    }
                    Kind::Fan => {
                        if let Some(v) = value("input") {
                            out.family(&FAN).sample(&labels, v);
                        }
                    }
                    Kind::In => {
                        if let Some(v) = value("input") {
                            out.family(&VOLTAGE).sample(&labels, v / 1000.0);
                        }
                    }
                    Kind::Power => {
                        if let Some(v) = value("input").or_else(|| value("average")) {
                            out.family(&POWER).sample(&labels, v / 1e6);
                        }
                    }
                    Kind::Curr => {
                        if let Some(v) = value("input") {
                            out.family(&CURRENT).sample(&labels, v / 1000.0);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The sensor types read, by file name prefix. Units in sysfs: millidegrees
/// Celsius, RPM, millivolts, microwatts, milliamperes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Temp,
    Fan,
    In,
    Power,
    Curr,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Temp => "temp",
            Kind::Fan => "fan",
            Kind::In => "in",
            Kind::Power => "power",
            Kind::Curr => "curr",
        }
    }
}

/// A chip's sensors, by kind and index, each with its attribute files.
type Sensors = BTreeMap<(Kind, u32), BTreeMap<&'static str, PathBuf>>;

/// `temp3_input` → (Temp, 3, "input"), for the attributes in [`ATTRIBUTES`].
fn parse_file_name(name: &str) -> Option<(Kind, u32, &'static str)> {
    let (sensor, attribute) = name.split_once('_')?;
    let attribute = ATTRIBUTES.into_iter().find(|a| *a == attribute)?;
    let digits = sensor.find(|c: char| c.is_ascii_digit())?;
    let (prefix, index) = sensor.split_at(digits);
    let kind = [Kind::Temp, Kind::Fan, Kind::In, Kind::Power, Kind::Curr]
        .into_iter()
        .find(|k| k.prefix() == prefix)?;
    Some((kind, index.parse().ok()?, attribute))
}

/// The sensor files of a chip. Drivers older than the hwmon device API put
/// them on the parent device instead, so `device/` is searched too; a file
/// in the chip's own directory wins.
fn sensor_files(dir: &Path) -> Sensors {
    let mut sensors = Sensors::new();
    for base in [dir.to_path_buf(), dir.join("device")] {
        let Ok(entries) = fs::read_dir(&base) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some((kind, index, attribute)) = file.to_str().and_then(parse_file_name) else {
                continue;
            };
            sensors
                .entry((kind, index))
                .or_default()
                .entry(attribute)
                .or_insert_with(|| entry.path());
        }
    }
    sensors
}

/// The `sensor` label of each sensor; see the module documentation.
fn sensor_names(sensors: &Sensors) -> HashMap<(Kind, u32), String> {
    let indexed = |(kind, index): (Kind, u32)| format!("{}{index}", kind.prefix());
    let mut names: HashMap<(Kind, u32), String> = sensors
        .iter()
        .map(|(&key, files)| {
            let label = files.get("label").and_then(|p| read_text(p));
            (key, label.unwrap_or_else(|| indexed(key)))
        })
        .collect();
    let mut seen = HashSet::new();
    let clashing: HashSet<Kind> = sensors
        .keys()
        .filter(|&&(kind, index)| !seen.insert((kind, names[&(kind, index)].clone())))
        .map(|&(kind, _)| kind)
        .collect();
    for (key, name) in &mut names {
        if clashing.contains(&key.0) {
            *name = indexed(*key);
        }
    }
    names
}

/// The chip's label; see the module documentation.
fn chip_id(dir: &Path, name: Option<&str>) -> String {
    if let Ok(device) = fs::canonicalize(dir.join("device")) {
        let device_name = device.file_name().map(|n| clean(&n.to_string_lossy()));
        let bus = device
            .parent()
            .and_then(Path::file_name)
            .map(|n| clean(&n.to_string_lossy()));
        match (bus, device_name) {
            (Some(bus), Some(dev)) if !bus.is_empty() && !dev.is_empty() => {
                return format!("{bus}_{dev}")
            }
            (_, Some(dev)) if !dev.is_empty() => return dev,
            _ => {}
        }
    }
    match name.map(clean) {
        Some(name) if !name.is_empty() => name,
        _ => clean(&file_name(dir)),
    }
}

/// Lowercase, with anything outside `[a-z0-9:_]` made `_` and `_` trimmed
/// from the ends: node_exporter's rule, so chip labels match between the two.
fn clean(s: &str) -> String {
    let replaced: String = s
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| match c {
            'a'..='z' | '0'..='9' | ':' | '_' => c,
            _ => '_',
        })
        .collect();
    replaced.trim_matches('_').to_string()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `hwmon12` → 12, so chips are visited (and keep their names on a clash)
/// in numeric order; other entries sort last.
fn hwmon_number(dir: &Path) -> (u64, String) {
    let name = file_name(dir);
    let number = name
        .strip_prefix("hwmon")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    (number, name)
}

impl BuildCollector for Hwmon {
    type Config = HwmonConfig;
    fn build(config: HwmonConfig, _: &BuildContext) -> Result<Self> {
        Ok(Hwmon {
            cpu_temp_chips: config.cpu_temp_chips,
        })
    }
}

inventory::submit! {
    Registration::new::<Hwmon>(
        "hwmon",
        "Temperatures, fans, voltages, power and current from /sys/class/hwmon, CPU temperature",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    // In the `hwmon` fixture the chip directories sit under `class/hwmon`
    // and link to their devices, rather than sitting under the devices as in
    // real sysfs: the real layout is a symlink loop, which tools walking the
    // source tree (cargo among them) warn about.
    use crate::collectors::{example_config, fixture};
    use herakles_core::testing::{collect_once, Collected};
    use herakles_core::Paths;

    fn get(c: &Collected, metric: &str, chip: &str, sensor: &str) -> Option<f64> {
        c.value(metric, &[("chip", chip), ("sensor", sensor)])
    }

    fn temp(c: &Collected, chip: &str, sensor: &str) -> Option<f64> {
        get(c, "herakles_system_hwmon_temp_celsius", chip, sensor)
    }

    fn chips(c: &Collected, metric: &str) -> Vec<(String, String)> {
        c.samples
            .iter()
            .filter(|(n, _, _)| n == metric)
            .map(|(_, l, _)| (l[0].1.clone(), l[1].1.clone()))
            .collect()
    }

    #[test]
    fn exact_values_from_fixture() {
        let c = collect_once::<Hwmon>(HwmonConfig::default(), fixture("hwmon")).unwrap();
        let core0 = "platform_coretemp_0";
        assert_eq!(temp(&c, core0, "Package id 0"), Some(45.0));
        assert_eq!(temp(&c, core0, "Core 0"), Some(43.5));
        assert_eq!(
            get(
                &c,
                "herakles_system_hwmon_temp_crit_celsius",
                core0,
                "Package id 0"
            ),
            Some(100.0)
        );
        assert_eq!(
            get(
                &c,
                "herakles_system_hwmon_temp_max_celsius",
                core0,
                "Package id 0"
            ),
            Some(80.0)
        );
        // A label with a quote and a line break survives escaping.
        assert_eq!(temp(&c, core0, "Core \"5\"\nhot"), Some(50.0));
        assert!(c.text.contains(r#"sensor="Core \"5\"\nhot""#), "{}", c.text);
        // temp3 holds "N/A", temp4's input is a dangling link: both skipped.
        assert!(temp(&c, core0, "Core 1").is_none());
        assert!(temp(&c, core0, "Core 2").is_none());

        // The second socket has the same driver and the same sensor labels,
        // and stays apart through its device path.
        assert_eq!(temp(&c, "platform_coretemp_1", "Core 0"), Some(47.0));

        let nct = "platform_nct6775_656";
        assert_eq!(
            get(&c, "herakles_system_hwmon_fan_rpm", nct, "fan1"),
            Some(1200.0)
        );
        assert_eq!(
            get(&c, "herakles_system_hwmon_fan_rpm", nct, "fan2"),
            Some(0.0)
        );
        assert_eq!(c.count("herakles_system_hwmon_fan_rpm"), 2);
        assert_eq!(
            get(&c, "herakles_system_hwmon_voltage_volts", nct, "Vcore"),
            Some(1.104)
        );
        assert_eq!(
            get(&c, "herakles_system_hwmon_voltage_volts", nct, "+12V"),
            Some(12.096)
        );
        // power1 has only an average; power2's input wins over its average.
        assert_eq!(
            get(&c, "herakles_system_hwmon_power_watts", nct, "power1"),
            Some(15.5)
        );
        assert_eq!(
            get(&c, "herakles_system_hwmon_power_watts", nct, "power2"),
            Some(3.0)
        );
        assert_eq!(
            get(&c, "herakles_system_hwmon_current_amps", nct, "curr1"),
            Some(2.5)
        );
        // Both temperatures are labelled SYSTIN: named by index instead.
        assert_eq!(temp(&c, nct, "temp1"), Some(30.0));
        assert_eq!(temp(&c, nct, "temp2"), Some(31.0));
        assert_eq!(
            get(&c, "herakles_system_hwmon_temp_max_celsius", nct, "temp2"),
            Some(70.0)
        );

        // No device: the driver name, made unique with hwmonN on a clash,
        // then hwmonN alone.
        assert_eq!(temp(&c, "acpitz", "temp1"), Some(27.8));
        assert_eq!(
            get(
                &c,
                "herakles_system_hwmon_temp_crit_celsius",
                "acpitz",
                "temp1"
            ),
            Some(105.0)
        );
        assert_eq!(temp(&c, "acpitz_hwmon5", "temp1"), Some(28.0));
        assert_eq!(temp(&c, "hwmon6", "temp1"), Some(1.0));

        // Old layout with the sensors on the device; the chip's own label
        // file wins over the device's.
        let k10 = "pci0000:00_0000:00:18_3";
        assert_eq!(temp(&c, k10, "Tctl"), Some(38.125));

        assert_eq!(c.count("herakles_system_hwmon_temp_celsius"), 10);
        assert_eq!(
            chips(&c, "herakles_system_hwmon_chip_info"),
            [
                (core0.to_string(), "coretemp".to_string()),
                ("platform_coretemp_1".into(), "coretemp".into()),
                (nct.into(), "nct6798".into()),
                ("acpitz".into(), "acpitz".into()),
                (k10.into(), "k10temp".into()),
                ("acpitz_hwmon5".into(), "acpitz".into()),
            ]
        );

        // CPU temperatures: the coretemp and k10temp chips only.
        assert_eq!(
            chips(&c, "herakles_system_cpu_temp_celsius"),
            [
                (core0.to_string(), "Package id 0".to_string()),
                (core0.into(), "Core 0".into()),
                (core0.into(), "Core \"5\"\nhot".into()),
                ("platform_coretemp_1".into(), "Core 0".into()),
                (k10.into(), "Tctl".into()),
            ]
        );
        assert_eq!(
            get(&c, "herakles_system_cpu_temp_celsius", k10, "Tctl"),
            Some(38.125)
        );

        // temp3's "N/A" and fan3's empty file.
        assert_eq!(c.parse_errors, 2);
    }

    #[test]
    fn cpu_temp_chips_is_configurable() {
        let config = HwmonConfig {
            cpu_temp_chips: vec!["acpitz".into()],
        };
        let c = collect_once::<Hwmon>(config, fixture("hwmon")).unwrap();
        assert_eq!(
            chips(&c, "herakles_system_cpu_temp_celsius"),
            [
                ("acpitz".to_string(), "temp1".to_string()),
                ("acpitz_hwmon5".into(), "temp1".into()),
            ]
        );
    }

    #[test]
    fn refusing_sensors_are_skipped_without_parse_errors() {
        let dir = tempfile::tempdir().unwrap();
        let chip = dir.path().join("class/hwmon/hwmon0");
        fs::create_dir_all(chip.join("temp2_input")).unwrap();
        fs::write(chip.join("name"), "coretemp\n").unwrap();
        // A directory fails with EISDIR and a link is refused (ELOOP: no
        // sysfs attribute is a link), as a sensor that does not answer
        // fails with EIO.
        std::os::unix::fs::symlink("/proc/self/mem", chip.join("temp1_input")).unwrap();
        fs::write(chip.join("temp3_input"), "42000\n").unwrap();
        let paths = Paths {
            sysfs: dir.path().to_path_buf(),
            ..Paths::default()
        };
        let c = collect_once::<Hwmon>(HwmonConfig::default(), paths).unwrap();
        assert_eq!(c.count("herakles_system_hwmon_temp_celsius"), 1);
        assert_eq!(temp(&c, "coretemp", "temp3"), Some(42.0));
        assert_eq!(
            get(&c, "herakles_system_cpu_temp_celsius", "coretemp", "temp3"),
            Some(42.0)
        );
        assert_eq!(c.parse_errors, 0);
    }

    #[test]
    fn no_hwmon_class_means_no_series() {
        let c = collect_once::<Hwmon>(HwmonConfig::default(), fixture("does-not-exist")).unwrap();
        assert!(c.samples.is_empty());
        assert_eq!(c.parse_errors, 0);
    }

    #[test]
    fn live_chips_match_sys_class_hwmon() {
        let c = collect_once::<Hwmon>(HwmonConfig::default(), Paths::default()).unwrap();
        let named = fs::read_dir("/sys/class/hwmon")
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| {
                        e.path().join("name").exists() || e.path().join("device/name").exists()
                    })
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(c.count("herakles_system_hwmon_chip_info"), named);
        if named == 0 {
            assert!(c.absent("herakles_system_hwmon_temp_celsius"));
        }
    }

    #[test]
    fn example_config_loads() {
        let config: HwmonConfig = example_config("hwmon");
        assert!(config.cpu_temp_chips.iter().any(|c| c == "soc_thermal"));
    }

    proptest! {
        /// File names of any shape parse or not, without panic.
        #[test]
        fn names_take_anything(name in ".{0,30}") {
            if let Some((kind, _, attribute)) = parse_file_name(&name) {
                prop_assert!(name.starts_with(kind.prefix()));
                let suffix = format!("_{attribute}");
                prop_assert!(name.ends_with(&suffix));
            }
        }
    }
}
