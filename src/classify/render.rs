//! Human-readable views of a rule set: the `subgroups` listing and the
//! `subgroups --explain` report.
//!
//! Both print user-controlled strings (process names, cmdlines, patterns
//! from files). Process data is shown Debug-quoted so a newline or escape
//! sequence in a cmdline cannot forge lines of the report.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use super::{
    Attribute, Classifier, MatchedBy, Placement, RuleRef, SubgroupInfo, OTHER_GROUP,
    UNKNOWN_SUBGROUP,
};

/// Longest cmdline shown verbatim in an explanation; JVM classpaths run to
/// tens of kilobytes and would bury the answer.
const CMDLINE_SHOWN: usize = 400;

/// Renders the `subgroups` command's output: one row per subgroup, or with
/// `verbose` every rule's patterns and where it is defined. `group` limits
/// the listing to one group.
pub fn render_list(c: &Classifier, group: Option<&str>, verbose: bool) -> String {
    let subgroups: Vec<SubgroupInfo> = c
        .subgroups()
        .into_iter()
        .filter(|s| group.map_or(true, |g| *s.group == *g))
        .collect();

    let mut out = String::new();
    if subgroups.is_empty() {
        let known: Vec<String> = c.groups().iter().map(|g| g.to_string()).collect();
        let _ = writeln!(
            out,
            "no subgroups in group {:?}; groups: {}",
            group.unwrap_or(""),
            known.join(", ")
        );
        return out;
    }

    let group_width = column_width("GROUP", subgroups.iter().map(|s| &*s.group));
    let subgroup_width = column_width("SUBGROUP", subgroups.iter().map(|s| &*s.subgroup));
    let _ = writeln!(
        out,
        "{:group_width$}  {:subgroup_width$}  {:>5}  {:>9}  {:>7}  SOURCE",
        "GROUP", "SUBGROUP", "NAMES", "PLACEMENT", "CMDLINE"
    );
    for s in &subgroups {
        let names: usize = s.rules.iter().map(|r| r.matches.len()).sum();
        let placed: usize = s.rules.iter().map(|r| r.placement.len()).sum();
        let cmdlines: usize = s.rules.iter().map(|r| r.cmdline_matches.len()).sum();
        let mut sources: Vec<String> = Vec::new();
        for rule in &s.rules {
            let origin = rule.origin.to_string();
            if !sources.contains(&origin) {
                sources.push(origin);
            }
        }
        let _ = writeln!(
            out,
            "{:group_width$}  {:subgroup_width$}  {names:>5}  {placed:>9}  {cmdlines:>7}  {}",
            s.group,
            s.subgroup,
            sources.join(", ")
        );
        if verbose {
            for rule in &s.rules {
                let _ = writeln!(
                    out,
                    "    rule {} ({}:{})",
                    rule.number, rule.origin, rule.line
                );
                if !rule.matches.is_empty() {
                    let _ = writeln!(out, "      names:   {}", rule.matches.join(" "));
                }
                for (attribute, pattern) in &rule.placement {
                    let _ = writeln!(out, "      {:<8} {pattern}", label(*attribute));
                }
                for pattern in &rule.cmdline_matches {
                    let _ = writeln!(out, "      cmdline: {pattern}");
                }
            }
        }
    }
    let groups: std::collections::BTreeSet<&str> = subgroups.iter().map(|s| &*s.group).collect();
    let _ = writeln!(
        out,
        "{} subgroups in {} groups; unmatched processes are {OTHER_GROUP}/{UNKNOWN_SUBGROUP}",
        subgroups.len(),
        groups.len()
    );
    out
}

fn column_width<'a>(title: &str, values: impl Iterator<Item = &'a str>) -> usize {
    values
        .map(|v| v.chars().count())
        .max()
        .unwrap_or(0)
        .max(title.len())
}

/// Backs [`Classifier::explain`] and [`Classifier::explain_placed`].
pub(super) fn explain(
    c: &Classifier,
    comm: &str,
    exe: &str,
    cmdline: &str,
    placement: Option<&Placement>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "comm:    {comm:?}");
    let _ = writeln!(out, "exe:     {exe:?}");
    let _ = writeln!(out, "cmdline: {}", shorten(cmdline));
    if let Some(placement) = placement {
        for attribute in Attribute::ALL {
            let value = match placement.get(attribute) {
                Some(v) => format!("{v:?}"),
                None => "none".to_string(),
            };
            let _ = writeln!(out, "{:<8} {value}", label(attribute));
        }
    }
    let placement = placement.copied().unwrap_or_default();

    let found = c.all_matches(comm, exe, cmdline, &placement);
    let Some(winner) = found.first() else {
        let _ = writeln!(
            out,
            "result:  {OTHER_GROUP}/{UNKNOWN_SUBGROUP}: no rule matches the comm, \
             the exe basename, the placement or the cmdline ({} rules from: {})",
            c.rules.len(),
            sources(c)
        );
        return out;
    };
    debug_assert_eq!(
        c.classify_placed(comm, exe, cmdline, &placement).rule,
        Some(winner.rule_ref),
        "fast path disagrees with the exhaustive search"
    );

    let rule = &c.rules[winner.rule_ref.rule as usize];
    let _ = writeln!(out, "result:  {}/{}", rule.group, rule.subgroup);
    let _ = writeln!(out, "  because {}", describe(c, winner.rule_ref));

    // Later matches of the winning rule add nothing; list each other rule
    // once, at its best pattern.
    let mut shown = vec![winner.rule_ref.rule];
    let mut losers = Vec::new();
    for m in &found[1..] {
        if !shown.contains(&m.rule_ref.rule) {
            shown.push(m.rule_ref.rule);
            losers.push(m.rule_ref);
        }
    }
    if !losers.is_empty() {
        let _ = writeln!(out, "also matched, but lower precedence:");
        for loser in losers {
            let r = &c.rules[loser.rule as usize];
            let _ = writeln!(out, "  {}/{}: {}", r.group, r.subgroup, describe(c, loser));
        }
    }
    let _ = writeln!(
        out,
        "precedence: user files before built-in rules; within a file, name \
         (comm/exe) rules, then placement (unit/container/cgroup/user) rules, \
         then cmdline rules; then the earlier rule"
    );
    out
}

/// `unit:`, padded with the other labels of a report.
fn label(attribute: Attribute) -> String {
    format!("{}:", attribute.name())
}

fn describe(c: &Classifier, rule_ref: RuleRef) -> String {
    let rule = &c.rules[rule_ref.rule as usize];
    let pattern = c.pattern_text(rule_ref);
    let how = match rule_ref.matched_by {
        MatchedBy::Comm => format!("the comm equals name {pattern:?}"),
        MatchedBy::Exe => format!("the exe basename equals name {pattern:?}"),
        MatchedBy::Placement(a) => format!("the {} matches regex {pattern:?}", a.name()),
        MatchedBy::Cmdline => format!("the cmdline matches regex {pattern:?}"),
    };
    format!(
        "{how} of rule {} ({}:{})",
        rule.number, c.origins[rule.origin], rule.line
    )
}

fn sources(c: &Classifier) -> String {
    let names: Vec<String> = c.origins.iter().map(|o| o.to_string()).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn shorten(cmdline: &str) -> String {
    if cmdline.len() <= CMDLINE_SHOWN {
        return format!("{cmdline:?}");
    }
    let mut end = CMDLINE_SHOWN;
    while !cmdline.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &cmdline[..end], cmdline.len())
}

/// Backs `subgroups --explain <PID|NAME>`.
///
/// A number is a PID: its comm, cmdline and exe are read from
/// `<procfs>/<pid>/`. Anything else is taken as a process name and tried as
/// both comm and exe basename, with an empty cmdline, which answers "what
/// would a process called this be?".
///
/// `placement` is where the process runs, when the caller could tell (see
/// `process::placement`); placement rules are tried only then.
///
/// Errors (no such process, unreadable comm) are returned as the message to
/// print. An unreadable exe link is not an error: it is normal for other
/// users' processes and for kernel threads, and is reported in the output.
pub fn explain_target(
    c: &Classifier,
    procfs: &Path,
    target: &str,
    placement: Option<&Placement>,
) -> Result<String, String> {
    let target = target.trim();
    if target.is_empty() {
        return Err("nothing to explain: give a PID or a process name".to_string());
    }
    let Ok(pid) = target.parse::<u32>() else {
        return Ok(c.explain(target, target, ""));
    };

    let dir = procfs.join(pid.to_string());
    let comm = fs::read(dir.join("comm"))
        .map_err(|e| format!("cannot read process {pid} from {}: {e}", dir.display()))?;
    let comm = String::from_utf8_lossy(&comm);
    let comm = comm.strip_suffix('\n').unwrap_or(&comm);
    let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let (exe, exe_note) = match fs::read_link(dir.join("exe")) {
        Ok(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // The kernel marks a replaced or removed binary this way; the
            // rules name the binary, not the marker.
            let name = name.strip_suffix(" (deleted)").unwrap_or(&name).to_string();
            (name, None)
        }
        Err(e) => (String::new(), Some(format!("exe link unreadable: {e}"))),
    };

    let mut out = format!("pid:     {pid}\n");
    if let Some(note) = exe_note {
        let _ = writeln!(out, "note:    {note}");
    }
    out.push_str(&explain(c, comm, &exe, &cmdline, placement));
    Ok(out)
}
