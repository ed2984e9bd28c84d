//! `subgroups`: the classification rules in effect, or how one process is
//! classified.

use crate::classify::{explain_target, render_list, Classifier};
use crate::config::Config;
use crate::process::placement;

/// `subgroups`: the rules the exporter would use with this config.
pub fn run(
    config: &Config,
    classifier: &Classifier,
    group: Option<&str>,
    verbose: bool,
    explain: Option<&str>,
) -> i32 {
    match explain {
        Some(target) => match explain_pid_or_name(config, classifier, target) {
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

/// `--explain`: for a pid, with where the process runs when attribution is
/// on, so that placement rules are tried as the exporter tries them.
fn explain_pid_or_name(
    config: &Config,
    classifier: &Classifier,
    target: &str,
) -> Result<String, String> {
    let paths = &config.paths;
    let placed = target
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|_| config.attribution)
        .and_then(|pid| placement::read_one(&paths.procfs, &paths.rootfs, pid));
    let view = placed.as_ref().map(|p| p.rule_view());
    explain_target(classifier, &paths.procfs, target, view.as_ref())
}
