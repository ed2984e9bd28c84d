//! `collectors`: every registered collector, whether it runs with this
//! config, its default, its crate and what it does.

use herakles_core::registrations;

use crate::config::Config;

/// The table `collectors` prints.
pub fn collectors_table(config: &Config) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "ENABLED".to_string(),
        "DEFAULT".to_string(),
        "CRATE".to_string(),
        "DESCRIPTION".to_string(),
    ]];
    for r in registrations() {
        let enabled = config.collectors.0.get(r.name).is_some_and(|s| s.enabled);
        rows.push([
            r.name.to_string(),
            yes_no(enabled).to_string(),
            yes_no(r.default_enabled).to_string(),
            r.crate_name.to_string(),
            r.description.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        for (i, w) in widths.iter().enumerate() {
            out.push_str(&format!("{:<w$}  ", r[i], w = *w));
        }
        out.push_str(&r[4]);
        out.push('\n');
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
