//! `subgroups`: the classification rules in effect, or how one process is
//! classified.

use crate::classify::{explain_target, render_list, Classifier};
use crate::config::Config;

/// `subgroups`: the rules the exporter would use with this config.
pub fn run(
    config: &Config,
    classifier: &Classifier,
    group: Option<&str>,
    verbose: bool,
    explain: Option<&str>,
) -> i32 {
    match explain {
        Some(target) => match explain_target(classifier, &config.paths.procfs, target) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        None => {
            print!("{}", render_list(classifier, group, verbose));
            0
        }
    }
}
