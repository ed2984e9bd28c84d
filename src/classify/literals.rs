//! Required-literal extraction for the cmdline prefilter.
//!
//! For a cmdline regex we want a small set of literal strings such that
//! *every* match of the regex contains at least one of them. Then a single
//! multi-pattern scan over the cmdline tells us which regexes could possibly
//! match, and the rest are never run.
//!
//! The only property that matters is soundness: a set we return must really
//! be required, otherwise a rule would silently stop matching. So the
//! analysis is deliberately simple and answers "no usable literal" (`None`)
//! whenever it is unsure; such a regex is simply run on every cmdline. It
//! works on the regex's HIR rather than its text, so escapes, classes, flags
//! and nesting are already resolved by the same parser the regex crate uses.

use regex_syntax::hir::{Hir, HirKind};

/// A regex whose requirement is an alternation of more literals than this is
/// treated as having none: a big alternation hits often and bloats the
/// automaton, while running the regex directly costs about the same.
const MAX_ALTERNATES: usize = 16;

/// Returns literals of which every match of `pattern` contains at least one,
/// or `None` when no useful set is known.
pub(crate) fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    // Same defaults as `regex::Regex::new`, so the HIR describes exactly the
    // language the compiled regex matches.
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    required(&hir).filter(|set| usable(set))
}

fn usable(set: &[Vec<u8>]) -> bool {
    !set.is_empty() && set.iter().all(|lit| !lit.is_empty())
}

fn required(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Literal(lit) => Some(vec![lit.0.to_vec()]),
        HirKind::Capture(capture) => required(&capture.sub),
        // At least one repetition of `sub` occurs in every match, so whatever
        // `sub` requires is required here too.
        HirKind::Repetition(rep) if rep.min >= 1 => required(&rep.sub),
        // Every match goes through some branch, so the union of what each
        // branch requires is required; one unconstrained branch spoils it.
        HirKind::Alternation(branches) => {
            let mut union = Vec::new();
            for branch in branches {
                union.extend(required(branch)?);
                if union.len() > MAX_ALTERNATES {
                    return None;
                }
            }
            union.sort();
            union.dedup();
            Some(union)
        }
        // Every item of a concatenation occurs in every match, so any one
        // item's requirement will do; pick the most selective. Adjacent
        // literal items occur contiguously, so they are joined first.
        HirKind::Concat(items) => {
            let mut best = None;
            let mut run: Vec<u8> = Vec::new();
            for item in items {
                if let HirKind::Literal(lit) = item.kind() {
                    run.extend_from_slice(&lit.0);
                    continue;
                }
                if !run.is_empty() {
                    consider(&mut best, vec![std::mem::take(&mut run)]);
                }
                if let Some(set) = required(item) {
                    consider(&mut best, set);
                }
            }
            if !run.is_empty() {
                consider(&mut best, vec![run]);
            }
            best
        }
        // Empty, classes, look-arounds and optional repetitions require
        // nothing in particular.
        _ => None,
    }
}

/// Keeps the candidate set that is least likely to occur by accident. Up to
/// about eight bytes, a longer shortest literal is what makes a set
/// selective; beyond that, every extra alternative is one more string that
/// can turn up by accident, so fewer alternatives win.
fn consider(best: &mut Option<Vec<Vec<u8>>>, candidate: Vec<Vec<u8>>) {
    const SELECTIVE_LEN: usize = 8;
    if !usable(&candidate) {
        return;
    }
    let score = |set: &[Vec<u8>]| {
        let shortest = set.iter().map(Vec::len).min().unwrap_or(0);
        (
            shortest.min(SELECTIVE_LEN),
            std::cmp::Reverse(set.len()),
            shortest,
        )
    };
    if best.as_ref().map_or(true, |b| score(&candidate) > score(b)) {
        *best = Some(candidate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(pattern: &str) -> Option<Vec<String>> {
        required_literals(pattern).map(|set| {
            set.into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect()
        })
    }

    #[test]
    fn picks_the_longest_required_run() {
        assert_eq!(lits(r"kafka\.Kafka"), Some(vec!["kafka.Kafka".into()]));
        assert_eq!(
            lits(r"node.*myapp-frontend"),
            Some(vec!["myapp-frontend".into()])
        );
        assert_eq!(
            lits(r"\sorg\.apache\.catalina\.startup\.Bootstrap(?:\s|$)"),
            Some(vec!["org.apache.catalina.startup.Bootstrap".into()])
        );
        assert_eq!(lits(r"^(?:\S*/)?java(?:\s|$)"), Some(vec!["java".into()]));
    }

    #[test]
    fn alternations_yield_one_literal_per_branch() {
        assert_eq!(
            lits(r"(?:org|com)\.neo4j\.server\."),
            Some(vec![".neo4j.server.".into()])
        );
        assert_eq!(
            lits(r"-s rabbit\b|/rabbitmq"),
            Some(vec!["-s rabbit".into(), "/rabbitmq".into()])
        );
        assert_eq!(
            lits(r"(?:foo|bar)+x"),
            Some(vec!["bar".into(), "foo".into()])
        );
    }

    #[test]
    fn gives_up_rather_than_guess() {
        assert_eq!(lits(r".*"), None);
        assert_eq!(lits(r"(?i)kafka"), None);
        assert_eq!(lits(r"(?:kafka)?\d+"), None);
        assert_eq!(lits(r"kafka|\d+"), None);
        assert_eq!(lits(r"a|"), None);
        assert_eq!(lits(r"("), None);
        let wide = (0..20)
            .map(|i| format!("w{i:02}"))
            .collect::<Vec<_>>()
            .join("|");
        assert_eq!(lits(&wide), None);
    }
}
