//! Finding where a key is written in a config file, for errors found after
//! the file was parsed (a value out of range, a bad regex, two keys that do
//! not go together).
//!
//! Rather than a second, hand-written parser per format, the file is parsed
//! again by its own format's deserializer with a visitor that walks down the
//! key path and fails on purpose when it reaches the value. Each format
//! attaches its position to that failure exactly as it does to a type error,
//! so the position is the one the format itself would report.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::format::{line_col, Format};

/// The marker our deliberate failure carries, to tell it from a real error.
const FOUND: &str = "\u{1}herakles-key-found\u{1}";

/// Line and column (1-based) of the value of dotted `key` in `text`, or of
/// the deepest enclosing key that is written there (a key left at its
/// default is not in the file, but its section may be).
pub fn locate(text: &str, format: Format, key: &str) -> Option<(usize, usize)> {
    let path: Vec<&str> = key.split('.').filter(|s| !s.is_empty()).collect();
    (1..=path.len())
        .rev()
        .find_map(|n| seek(text, format, &path[..n]))
}

fn seek(text: &str, format: Format, path: &[&str]) -> Option<(usize, usize)> {
    let seed = Seek(path);
    match format {
        Format::Yaml => {
            let e = seed
                .deserialize(serde_norway::Deserializer::from_str(text))
                .err()?;
            let at = e.location()?;
            e.to_string()
                .contains(FOUND)
                .then(|| (at.line(), at.column()))
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let e = seed.deserialize(&mut de).err()?;
            (e.to_string().contains(FOUND) && e.line() > 0).then(|| (e.line(), e.column()))
        }
        Format::Toml => {
            let de = toml::Deserializer::parse(text).ok()?;
            let e = seed.deserialize(de).err()?;
            let span = e.span()?;
            e.message()
                .contains(FOUND)
                .then(|| line_col(text, span.start))
        }
    }
}

/// Walks down the remaining `path`; at its end, fails with [`FOUND`].
struct Seek<'a>(&'a [&'a str]);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0.split_first() {
            // Every visit of `Found` fails with its `expecting` text, FOUND.
            None => d.deserialize_any(Found),
            Some((first, rest)) => d.deserialize_map(SeekMap { key: first, rest }),
        }
    }
}

struct SeekMap<'a> {
    key: &'a str,
    rest: &'a [&'a str],
}

impl<'de> Visitor<'de> for SeekMap<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == self.key {
                return map.next_value_seed(Seek(self.rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

struct Found;

impl Visitor<'_> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FOUND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_in_every_format() {
        let yaml = "port: 1\ncollectors:\n  disk:\n    device_exclude: '('\n";
        assert_eq!(
            locate(yaml, Format::Yaml, "collectors.disk.device_exclude"),
            Some((4, 21))
        );
        assert_eq!(locate(yaml, Format::Yaml, "port"), Some((1, 7)));
        let toml = "port = 1\n\n[collectors.disk]\ndevice_exclude = \"(\"\n";
        assert_eq!(
            locate(toml, Format::Toml, "collectors.disk.device_exclude"),
            Some((4, 18))
        );
        let json =
            "{\n  \"port\": 1,\n  \"collectors\": {\"disk\": {\"device_exclude\": \"(\"}}\n}";
        let (line, _) = locate(json, Format::Json, "collectors.disk.device_exclude").unwrap();
        assert_eq!(line, 3);
    }

    #[test]
    fn falls_back_to_the_enclosing_key() {
        let yaml = "collectors:\n  disk: false\n";
        assert_eq!(
            locate(yaml, Format::Yaml, "collectors.disk.device_exclude"),
            Some((2, 9))
        );
        assert_eq!(locate("port: 1\n", Format::Yaml, "bind"), None);
        assert_eq!(locate("[oops", Format::Toml, "port"), None);
    }
}
