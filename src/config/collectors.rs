//! The `collectors:` section: one entry per registered collector.
//!
//! Each entry is `enabled` plus the collector's own typed keys. The set of
//! valid names and the type of each section come from the registry, so this
//! file never changes when a collector is added.
//!
//! Sections are parsed with the config format's own deserializer (through
//! `erased_serde`) instead of an intermediate value, so that a wrong type deep
//! inside a collector's section is still reported at its line in the file.

use std::collections::BTreeMap;
use std::fmt;

use herakles_core::{registrations, AnyConfig, Registration};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One collector's effective settings.
#[derive(Debug, Clone)]
pub struct CollectorSection {
    pub registration: &'static Registration,
    /// Whether it runs: the value set explicitly, or else its default
    /// (which `disable_default_collectors` turns off).
    pub enabled: bool,
    /// Whether `enabled` was set by the file, a variable or a flag rather
    /// than taken from the default; see [`super::Config::settle_collectors`].
    pub set_explicitly: bool,
    pub config: Box<dyn AnyConfig>,
}

/// Every registered collector's section, keyed by name.
#[derive(Debug, Clone)]
pub struct Collectors(pub BTreeMap<&'static str, CollectorSection>);

impl Default for Collectors {
    fn default() -> Collectors {
        Collectors(
            registrations()
                .into_iter()
                .map(|r| {
                    let section = CollectorSection {
                        registration: r,
                        enabled: r.default_enabled,
                        set_explicitly: false,
                        config: r.default_config(),
                    };
                    (r.name, section)
                })
                .collect(),
        )
    }
}

impl Collectors {
    /// Names of the collectors that will run.
    pub fn enabled(&self) -> impl Iterator<Item = &CollectorSection> {
        self.0.values().filter(|s| s.enabled)
    }

    /// The settings of type `T`, whichever collector's section holds them:
    /// a service whose user-facing keys sit in one collector's section
    /// (the eBPF map sizes in `ebpf_io`'s) reads them by type, not by that
    /// collector's name. `None` unless exactly one section is a `T`.
    pub fn section<T: Clone + 'static>(&self) -> Option<T> {
        let mut found = self
            .0
            .values()
            // `*`: the section's own type, not the Box's (which is an
            // `AnyConfig` too).
            .filter_map(|s| (*s.config).as_any().downcast_ref::<T>());
        match (found.next(), found.next()) {
            (Some(t), None) => Some(t.clone()),
            _ => None,
        }
    }

    /// Turn a collector on or off; an unknown name is an error listing the
    /// valid ones.
    pub fn set_enabled(&mut self, name: &str, enabled: bool) -> Result<(), String> {
        match self.0.get_mut(name) {
            Some(s) => {
                s.enabled = enabled;
                s.set_explicitly = true;
                Ok(())
            }
            None => Err(unknown_collector(name)),
        }
    }
}

/// node_exporter's collectors whose series come from a collector of
/// another name here, so that an operator carrying over node_exporter's
/// `--collector.NAME` flags is told what to write instead. Names that are
/// the same in both (cpu, filesystem, hwmon, loadavg, netdev, textfile)
/// need no entry.
const NODE_EXPORTER_NAMES: &[(&str, &[&str])] = &[
    ("diskstats", &["disk"]),
    ("entropy", &["kernel"]),
    ("filefd", &["kernel"]),
    ("meminfo", &["memory"]),
    ("pressure", &["cpu", "memory", "disk"]),
    ("stat", &["kernel", "host"]),
    ("tcpstat", &["tcp"]),
    ("thermal_zone", &["thermal"]),
    ("time", &["host"]),
    ("uname", &["host"]),
];

/// The error for a collector name nobody registered.
pub fn unknown_collector(name: &str) -> String {
    let names: Vec<&str> = registrations().iter().map(|r| r.name).collect();
    let renamed = NODE_EXPORTER_NAMES
        .iter()
        .find(|(theirs, _)| *theirs == name)
        .map(|(_, ours)| {
            let quoted: Vec<String> = ours.iter().map(|n| format!("\"{n}\"")).collect();
            let list = match quoted.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
                _ => quoted.concat(),
            };
            format!(" (node_exporter's \"{name}\" is {list} here)")
        });
    let hint = renamed
        .or_else(|| {
            crate::util::did_you_mean(name, names.iter().copied())
                .map(|s| format!(" (did you mean \"{s}\"?)"))
        })
        .unwrap_or_default();
    format!(
        "unknown collector \"{name}\"{hint}; valid collectors: {}",
        names.join(", ")
    )
}

impl Serialize for Collectors {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, section) in &self.0 {
            map.serialize_entry(name, &SectionSer(section))?;
        }
        map.end()
    }
}

/// A section as `enabled` followed by the collector's own keys, flattened.
struct SectionSer<'a>(&'a CollectorSection);

impl Serialize for SectionSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let own = serde_json::to_value(&self.0.config).map_err(serde::ser::Error::custom)?;
        let own = match own {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let mut map = s.serialize_map(Some(own.len() + 1))?;
        map.serialize_entry("enabled", &self.0.enabled)?;
        for (k, v) in &own {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Collectors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Collectors, D::Error> {
        d.deserialize_map(CollectorsVisitor)
    }
}

struct CollectorsVisitor;

impl<'de> Visitor<'de> for CollectorsVisitor {
    type Value = Collectors;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of collector names to sections")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Collectors, E> {
        Ok(Collectors::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Collectors, A::Error> {
        let mut all = Collectors::default();
        while let Some(name) = map.next_key::<String>()? {
            let Some(section) = all.0.get_mut(name.as_str()) else {
                return Err(de::Error::custom(unknown_collector(&name)));
            };
            let (enabled, config) = map.next_value_seed(SectionSeed(section.registration))?;
            if let Some(e) = enabled {
                section.enabled = e;
                section.set_explicitly = true;
            }
            section.config = config;
        }
        Ok(all)
    }
}

/// Parses one section for a known registration.
struct SectionSeed(&'static Registration);

impl<'de> DeserializeSeed<'de> for SectionSeed {
    type Value = (Option<bool>, Box<dyn AnyConfig>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(SectionVisitor(self.0))
    }
}

struct SectionVisitor(&'static Registration);

impl<'de> Visitor<'de> for SectionVisitor {
    type Value = (Option<bool>, Box<dyn AnyConfig>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a map of settings for collector \"{}\", or true/false",
            self.0.name
        )
    }

    /// `disk: false` is accepted as shorthand for `disk: {enabled: false}`.
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok((Some(v), self.0.default_config()))
    }

    /// An empty YAML section (`disk:`) means "all defaults".
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((None, self.0.default_config()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut enabled = None;
        let filtered = WithoutEnabled {
            inner: map,
            enabled: &mut enabled,
        };
        let de = de::value::MapAccessDeserializer::new(filtered);
        let mut erased = <dyn erased_serde::Deserializer>::erase(de);
        let config = self
            .0
            .parse_config(&mut erased)
            .map_err(de::Error::custom)?;
        Ok((enabled, config))
    }
}

/// A map access that takes the `enabled` key out of a section before the
/// collector's own config type sees it, so collector config types need not
/// declare `enabled` and can still deny unknown keys.
struct WithoutEnabled<'a, A> {
    inner: A,
    enabled: &'a mut Option<bool>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutEnabled<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<String>()? else {
                return Ok(None);
            };
            if key == "enabled" {
                *self.enabled = Some(self.inner.next_value()?);
                continue;
            }
            let key_de: de::value::StringDeserializer<A::Error> = key.into_deserializer();
            return seed.deserialize(key_de).map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A settings type no registered collector uses.
    #[derive(Debug, Clone, Serialize)]
    struct Sizes(u32);

    /// The names node_exporter's collectors have here are real collectors,
    /// and the error for one of node_exporter's names gives them.
    #[test]
    fn node_exporter_names_point_at_registered_collectors() {
        let ours: Vec<&str> = registrations().iter().map(|r| r.name).collect();
        for (theirs, names) in NODE_EXPORTER_NAMES {
            assert!(!ours.contains(theirs), "{theirs} is registered here");
            for n in *names {
                assert!(ours.contains(n), "{theirs} points at unknown {n}");
            }
        }
        let e = unknown_collector("meminfo");
        assert!(
            e.starts_with("unknown collector \"meminfo\" (node_exporter's \"meminfo\" is \"memory\" here); valid collectors: "),
            "{e}"
        );
        let e = unknown_collector("pressure");
        assert!(
            e.contains("is \"cpu\", \"memory\" and \"disk\" here"),
            "{e}"
        );
        // Not one of node_exporter's: the usual suggestion.
        assert!(unknown_collector("memroy").contains("did you mean \"memory\"?"));
    }

    #[test]
    fn a_section_is_found_by_its_type_when_the_type_is_its_own() {
        let mut c = Collectors::default();
        assert!(c.section::<Sizes>().is_none());
        c.0.get_mut("loadavg").unwrap().config = Box::new(Sizes(7));
        assert_eq!(c.section::<Sizes>().unwrap().0, 7);
        // Two sections of the type name no one section.
        c.0.get_mut("kernel").unwrap().config = Box::new(Sizes(8));
        assert!(c.section::<Sizes>().is_none());
        // Many collectors have no settings: NoConfig names no one section.
        assert!(c.section::<herakles_core::NoConfig>().is_none());
        assert!(c.section::<String>().is_none());
    }
}
