//! Reading sysfs attributes: one value per file, formatted by the kernel
//! into a single page. `hwmon` and `thermal` read their sensors this way.
//!
//! Reading a sensor attribute asks the hardware. Sensors that are asleep,
//! absent or broken refuse with EIO, ENODATA or EAGAIN, some permanently;
//! such a read is `None` and nothing is counted, as nothing malformed was
//! read. A file that reads but holds no integer is `None` and counted as a
//! parse error, and so is one longer than any attribute can be (a sparse
//! file, or a device in a tree that is not sysfs). A link where sysfs has a
//! file is refused like a sensor that does not answer.

use std::path::Path;

use herakles_core::{is_too_large, read_bytes, MetricSink};

/// The most read of one attribute: the kernel formats each into a single
/// page (`sysfs_emit`), so a longer file is no sysfs attribute.
const ATTRIBUTE_LIMIT: usize = 64 << 10;

/// A text attribute (name, label), trimmed; `None` if unreadable or empty.
pub fn read_text(path: &Path) -> Option<String> {
    let mut bytes = Vec::new();
    read_bytes(path, ATTRIBUTE_LIMIT, &mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// A numeric attribute: `None` when the sensor refuses the read or,
/// counted, when the content is no integer or longer than
/// [`ATTRIBUTE_LIMIT`] (see the module documentation).
pub fn read_value(path: &Path, out: &mut MetricSink) -> Option<f64> {
    let mut bytes = Vec::new();
    match read_bytes(path, ATTRIBUTE_LIMIT, &mut bytes) {
        Ok(()) => {}
        Err(e) if is_too_large(&e) => {
            out.parse_error();
            return None;
        }
        Err(_) => return None,
    }
    let value = parse_value(&bytes);
    if value.is_none() {
        out.parse_error();
    }
    value
}

/// An attribute's integer, surrounded by whitespace at most.
fn parse_value(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.trim().parse::<i64>().ok().map(|v| v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A value is an integer with whitespace around it, or nothing.
        #[test]
        fn values_take_anything(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let got = parse_value(&bytes);
            let want = std::str::from_utf8(&bytes).ok().and_then(|s| s.trim().parse::<i64>().ok());
            prop_assert_eq!(got, want.map(|v| v as f64));
        }

        #[test]
        fn values_round_trip(v in any::<i64>(), pad in "[ \t\n]{0,3}") {
            let text = format!("{pad}{v}{pad}");
            prop_assert_eq!(parse_value(text.as_bytes()), Some(v as f64));
        }
    }
}
