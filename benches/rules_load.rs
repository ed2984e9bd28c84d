//! Load time of large classification rule files.
//!
//! Generates rule files of 10,000 and 100,000 rules in the `[[subgroups]]`
//! form (nine name rules to one cmdline rule, as sites that generate rules
//! from an inventory write them), loads each with `Classifier::load` the way
//! the exporter does at start-up, and prints the time. Loading must grow
//! linearly with the number of rules: compare the two lines.
//!
//! Run with `cargo bench --bench rules_load`; `-- 1000 20000` loads other
//! sizes instead.

use std::fmt::Write as _;
use std::time::Instant;

use herakles_node_exporter::classify::{Classifier, RuleSources};

/// A rule file of `n` rules, each with its own subgroup.
fn rules(n: usize) -> String {
    let mut out = String::with_capacity(n * 90);
    for i in 0..n {
        let _ = writeln!(out, "[[subgroups]]\ngroup = \"bench{}\"", i % 97);
        let _ = writeln!(out, "subgroup = \"app-{i}\"");
        if i % 10 == 9 {
            let _ = writeln!(out, "cmdline_matches = ['--service=app-{i}\\b']\n");
        } else {
            let _ = writeln!(out, "matches = [\"app-{i}\", \"app-{i}-worker\"]\n");
        }
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; any numbers are sizes to load.
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000];
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    for n in sizes {
        let path = dir.path().join(format!("rules-{n}.toml"));
        let text = rules(n);
        std::fs::write(&path, &text).expect("write rule file");
        let sources = RuleSources {
            explicit: Some(path),
            search_default_locations: false,
        };
        let start = Instant::now();
        let classifier = Classifier::load(&sources).expect("generated rules load");
        let took = start.elapsed();
        let loaded: usize = classifier.subgroups().iter().map(|s| s.rule_count()).sum();
        println!(
            "rules_load: {n:>7} rules ({:.1} MiB) loaded in {:>8.3} s ({loaded} rules with the built-in ones)",
            text.len() as f64 / (1 << 20) as f64,
            took.as_secs_f64()
        );
    }
}
