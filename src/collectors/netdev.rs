//! Network interface traffic from `/proc/net/dev`.
//!
//! The file is per network namespace: the exporter reports the interfaces of
//! the namespace it runs in, so in a container it needs the host's network
//! namespace (or the host's procfs) to see the host's interfaces.
//!
//! Interface names are whatever an administrator chose and may contain
//! quotes or backslashes; they go into labels unchanged and the metric sink
//! escapes them.

use herakles_core::{
    inventory, BuildCollector, BuildContext, Collector, Desc, MetricSink, Registration, Result,
    ScrapeContext,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::helpers::name_filter::NameFilter;

const RX_BYTES: Desc = Desc::counter(
    "herakles_system_net_rx_bytes_total",
    "Bytes received by the interface.",
);
const TX_BYTES: Desc = Desc::counter(
    "herakles_system_net_tx_bytes_total",
    "Bytes transmitted by the interface.",
);
const RX_PACKETS: Desc = Desc::counter(
    "herakles_system_net_rx_packets_total",
    "Packets received by the interface.",
);
const TX_PACKETS: Desc = Desc::counter(
    "herakles_system_net_tx_packets_total",
    "Packets transmitted by the interface.",
);
const RX_ERRORS: Desc = Desc::counter(
    "herakles_system_net_rx_errors_total",
    "Receive errors reported by the driver.",
);
const TX_ERRORS: Desc = Desc::counter(
    "herakles_system_net_tx_errors_total",
    "Transmit errors reported by the driver.",
);
const DROPS: Desc = Desc::counter(
    "herakles_system_net_drops_total",
    "Packets dropped, by direction (rx or tx).",
);

/// Columns per interface: eight receive counters, then eight transmit ones.
/// Every kernel since 2.6 prints exactly these; more are ignored.
const COLUMNS: usize = 16;
const TX: usize = 8;
const BYTES: usize = 0;
const PACKETS: usize = 1;
const ERRORS: usize = 2;
const DROPPED: usize = 3;

/// The `collectors.netdev` config section.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NetdevConfig {
    /// Only interfaces whose name matches this regex are reported; empty
    /// reports all. The regex is unanchored: use `^...$` to match whole
    /// names.
    #[schemars(extend("format" = "regex"))]
    pub interface_include: String,
    /// Interfaces whose name matches this regex are not reported, even when
    /// `interface_include` matches; empty leaves nothing out.
    #[schemars(extend("format" = "regex"))]
    pub interface_exclude: String,
}

/// See the module documentation.
pub struct Netdev {
    filter: NameFilter,
}

impl Collector for Netdev {
    fn collect(&self, ctx: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let text = ctx.read_proc("net/dev")?;
        // The two header lines are the only ones with a '|'.
        for line in text
            .lines()
            .filter(|l| !l.contains('|') && !l.trim().is_empty())
        {
            let Some((iface, counters)) = parse_line(line) else {
                out.parse_error();
                continue;
            };
            if !self.filter.allows(iface) {
                continue;
            }
            let labels = [("iface", iface)];
            for (desc, column) in [
                (&RX_BYTES, BYTES),
                (&RX_PACKETS, PACKETS),
                (&RX_ERRORS, ERRORS),
                (&TX_BYTES, TX + BYTES),
                (&TX_PACKETS, TX + PACKETS),
                (&TX_ERRORS, TX + ERRORS),
            ] {
                out.family(desc).sample(&labels, counters[column] as f64);
            }
            let mut drops = out.family(&DROPS);
            drops.sample(
                &[("iface", iface), ("direction", "rx")],
                counters[DROPPED] as f64,
            );
            drops.sample(
                &[("iface", iface), ("direction", "tx")],
                counters[TX + DROPPED] as f64,
            );
        }
        Ok(())
    }
}

/// `name: sixteen counters`, or `None` if the line is not that.
///
/// The name ends at the first colon, which the kernel forbids in interface
/// names; old kernels printed no space after it once the byte count grew
/// wide, which splitting at the colon handles too.
fn parse_line(line: &str) -> Option<(&str, [u64; COLUMNS])> {
    let (name, rest) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut counters = [0u64; COLUMNS];
    let mut words = rest.split_whitespace();
    for counter in &mut counters {
        *counter = words.next()?.parse().ok()?;
    }
    Some((name, counters))
}

impl BuildCollector for Netdev {
    type Config = NetdevConfig;
    fn build(config: NetdevConfig, _: &BuildContext) -> Result<Self> {
        let filter = NameFilter::new(
            &config.interface_include,
            &config.interface_exclude,
            ("interface_include", "interface_exclude"),
        )?;
        Ok(Netdev { filter })
    }
}

inventory::submit! {
    Registration::new::<Netdev>(
        "netdev",
        "Network interface bytes, packets, errors and drops from /proc/net/dev",
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

    fn get(c: &Collected, metric: &str, iface: &str) -> Option<f64> {
        c.value(
            &format!("herakles_system_net_{metric}"),
            &[("iface", iface)],
        )
    }

    fn drops(c: &Collected, iface: &str, direction: &str) -> Option<f64> {
        c.value(
            "herakles_system_net_drops_total",
            &[("iface", iface), ("direction", direction)],
        )
    }

    fn interfaces(c: &Collected) -> Vec<&str> {
        c.samples
            .iter()
            .filter(|(n, _, _)| n == "herakles_system_net_rx_bytes_total")
            .map(|(_, l, _)| l[0].1.as_str())
            .collect()
    }

    #[test]
    fn exact_values_from_fixture() {
        let c = collect_once::<Netdev>(NetdevConfig::default(), fixture("netdev")).unwrap();
        assert_eq!(get(&c, "rx_bytes_total", "eth0"), Some(79_828_833.0));
        assert_eq!(get(&c, "rx_packets_total", "eth0"), Some(4049.0));
        assert_eq!(get(&c, "rx_errors_total", "eth0"), Some(3.0));
        assert_eq!(drops(&c, "eth0", "rx"), Some(4.0));
        assert_eq!(get(&c, "tx_bytes_total", "eth0"), Some(276_727.0));
        assert_eq!(get(&c, "tx_packets_total", "eth0"), Some(2424.0));
        assert_eq!(get(&c, "tx_errors_total", "eth0"), Some(11.0));
        assert_eq!(drops(&c, "eth0", "tx"), Some(12.0));
        // No space after the colon, as old kernels wrote wide counters.
        assert_eq!(
            get(&c, "rx_bytes_total", "wlan0"),
            Some(18_446_744_073_709_551_615.0)
        );
        // Columns beyond the sixteen known ones are ignored.
        assert_eq!(get(&c, "tx_bytes_total", "veth1"), Some(9.0));
        // A name with a quote and a backslash is escaped in the text and
        // reads back intact.
        assert_eq!(get(&c, "rx_bytes_total", "we\"ird\\0"), Some(1.0));
        assert!(c.text.contains(r#"iface="we\"ird\\0""#), "{}", c.text);
        assert_eq!(
            interfaces(&c),
            ["lo", "eth0", "wlan0", "veth1", "we\"ird\\0"]
        );
        // Truncated, non-numeric, nameless and colonless lines.
        assert_eq!(c.parse_errors, 4);
    }

    #[test]
    fn include_and_exclude() {
        let config = NetdevConfig {
            interface_include: "^(lo|eth|veth)".into(),
            interface_exclude: "^veth".into(),
        };
        let c = collect_once::<Netdev>(config, fixture("netdev")).unwrap();
        assert_eq!(interfaces(&c), ["lo", "eth0"]);
        assert_eq!(c.count("herakles_system_net_drops_total"), 4);
    }

    #[test]
    fn invalid_regex_names_the_key() {
        let config = NetdevConfig {
            interface_include: "[".into(),
            interface_exclude: String::new(),
        };
        let err = collect_once::<Netdev>(config, fixture("netdev")).unwrap_err();
        assert!(err.to_string().starts_with("interface_include: "), "{err}");
    }

    #[test]
    fn vanished_interfaces_have_no_series() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        let paths = Paths {
            procfs: dir.path().to_path_buf(),
            ..Paths::default()
        };
        let ctx = BuildContext::new(paths.clone(), Arc::new(()));
        let netdev = Netdev::build(NetdevConfig::default(), &ctx).unwrap();
        let header = "Inter-|   Receive\n face |bytes\n";
        let line = |name: &str| format!("{name}: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n");
        let file = dir.path().join("net/dev");
        std::fs::write(&file, format!("{header}{}{}", line("eth0"), line("tun0"))).unwrap();
        let c = collect_with(&netdev, paths.clone()).unwrap();
        assert_eq!(interfaces(&c), ["eth0", "tun0"]);
        std::fs::write(&file, format!("{header}{}", line("eth0"))).unwrap();
        let c = collect_with(&netdev, paths).unwrap();
        assert_eq!(interfaces(&c), ["eth0"]);
        assert!(drops(&c, "tun0", "rx").is_none());
        assert_eq!(drops(&c, "eth0", "tx"), Some(12.0));
    }

    #[test]
    fn missing_file_fails_naming_it() {
        let err =
            collect_once::<Netdev>(NetdevConfig::default(), fixture("does-not-exist")).unwrap_err();
        assert!(err.to_string().contains("net/dev"), "{err}");
    }

    #[test]
    fn live_counters_match_proc_net_dev() {
        fn read() -> Vec<(String, [u64; COLUMNS])> {
            std::fs::read_to_string("/proc/net/dev")
                .unwrap()
                .lines()
                .filter(|l| !l.contains('|'))
                .map(|l| {
                    let (name, counters) = parse_line(l).unwrap();
                    (name.to_string(), counters)
                })
                .collect()
        }
        let before = read();
        let c = collect_once::<Netdev>(NetdevConfig::default(), Paths::default()).unwrap();
        let after = read();
        assert_eq!(c.parse_errors, 0);
        assert!(before.iter().any(|(name, _)| name == "lo"));
        for (iface, early) in &before {
            let Some((_, late)) = after.iter().find(|(i, _)| i == iface) else {
                continue;
            };
            for (metric, column) in [
                ("rx_bytes_total", BYTES),
                ("tx_packets_total", TX + PACKETS),
            ] {
                let got = get(&c, metric, iface).unwrap();
                let range = early[column] as f64..=late[column] as f64;
                assert!(
                    range.contains(&got),
                    "{iface} {metric}: {got} not in {range:?}"
                );
            }
        }
    }

    #[test]
    fn example_config_loads() {
        let config: NetdevConfig = example_config("netdev");
        assert!(config.interface_include.is_empty());
        assert!(!config.interface_exclude.is_empty());
    }

    proptest! {
        #[test]
        fn line_parser_takes_anything(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines() {
                let _ = parse_line(line);
            }
        }

        /// Any name the kernel allows (no colon, slash or whitespace; the
        /// quotes and backslashes go to the sink to escape) and sixteen
        /// counters read exactly, with or without a space after the colon.
        #[test]
        fn lines_round_trip(
            name in "[^:/\\s]{1,15}",
            counters in prop::array::uniform16(any::<u64>()),
            spaced in any::<bool>(),
        ) {
            let line = format!(
                "{name:>6}:{}{}",
                if spaced { " " } else { "" },
                counters.map(|c| c.to_string()).join(" ")
            );
            let (iface, got) = parse_line(&line).unwrap();
            prop_assert_eq!(iface, name.trim());
            prop_assert_eq!(got, counters);
        }
    }
}
