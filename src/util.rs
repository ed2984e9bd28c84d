//! Small helpers shared by the CLI, config and HTTP layers.

/// The candidate closest to `input`, if it is close enough to be a likely
/// typo. Used for every "unknown name" error so that a misspelt key or
/// collector gets a suggestion instead of a wall of valid names.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Escape text for inclusion in HTML element content or attribute values.
///
/// Every HTML page the exporter serves shows strings that whoever runs a
/// process chooses (names, command lines), so nothing reaches a page
/// without passing through here.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["memory", "loadavg", "filesystem"];
        assert_eq!(did_you_mean("memroy", names), Some("memory"));
        assert_eq!(did_you_mean("filesytem", names), Some("filesystem"));
        assert_eq!(did_you_mean("zzz", names), None);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            html_escape("<script>alert('x')&\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;"
        );
    }
}
