//! Pressure stall information: `/proc/pressure/{cpu,io,memory}`.
//!
//! Each file has a `some` line (time in which at least one task stalled)
//! and, except on old kernels for `cpu`, a `full` line (time in which all
//! non-idle tasks stalled at once), each ending in a `total=` counter in
//! microseconds.

use herakles_core::{Desc, MetricSink, Result};

/// Write the `total=` counters of a PSI file, in seconds: the `some` line's
/// to `some`, the `full` line's to `full` (a line whose family is `None`
/// is not exported).
///
/// `read` is the result of reading the file. A kernel without PSI (or with
/// `psi=0`) has no file, or one that refuses reads with EOPNOTSUPP: both
/// mean absent series, not failure. A file too long to be PSI, and a line
/// without a readable total, are counted as parse errors.
pub fn emit(
    read: Result<impl AsRef<str>>,
    out: &mut MetricSink,
    some: Option<&Desc>,
    full: Option<&Desc>,
) {
    let text = match read {
        Ok(text) => text,
        Err(e) if e.is_too_large() => return out.parse_error(),
        Err(_) => return,
    };
    for (kind, total_us) in totals(text.as_ref(), out) {
        let desc = match kind {
            "some" => some,
            "full" => full,
            _ => None,
        };
        if let Some(desc) = desc {
            out.single(desc, total_us / 1e6);
        }
    }
}

/// The `total=` microsecond counters of a PSI file, keyed by line kind;
/// a line without one is skipped and counted.
pub fn totals<'a>(text: &'a str, out: &mut MetricSink) -> Vec<(&'a str, f64)> {
    let mut totals = Vec::with_capacity(2);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let total = words
            .find_map(|w| w.strip_prefix("total="))
            .and_then(|v| v.parse::<f64>().ok());
        match total {
            Some(t) => totals.push((kind, t)),
            None => out.parse_error(),
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes: no panic, and at most one total or one parse error
        /// per line.
        #[test]
        fn totals_take_anything(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let text = String::from_utf8_lossy(&bytes);
            let lines = text.lines().count();
            let mut out = MetricSink::new();
            let totals = totals(&text, &mut out);
            prop_assert!(totals.len() + out.parse_errors() as usize <= lines);
        }
    }
}
