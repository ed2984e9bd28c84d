//! `/proc/stat` beyond its `cpu` lines: single `key value` lines (`btime`,
//! `ctxt`, `processes`), read by the `host` and `kernel` collectors.

/// The value of a `key value` line of `/proc/stat`.
pub fn field(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some(key) {
            return None;
        }
        words.next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The `key value` lines of /proc/stat (btime, ctxt, processes)
        /// are found among any other lines, damaged ones included.
        #[test]
        fn stat_fields_among_anything(
            noise in prop::collection::vec(any::<u8>(), 0..300),
            btime in any::<u32>(),
        ) {
            let noise: Vec<u8> = noise.into_iter().filter(|&b| b != b'b').collect();
            let mut file = noise.clone();
            file.extend_from_slice(format!("\nbtime {btime}\n").as_bytes());
            file.extend_from_slice(&noise);
            let text = String::from_utf8_lossy(&file);
            prop_assert_eq!(field(&text, "btime"), Some(f64::from(btime)));
        }
    }
}
