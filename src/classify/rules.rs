//! Reading and validating rule files.
//!
//! Everything that can be wrong with a rule is found here, at load time, so
//! that the matcher never has to cope with a bad rule at scrape time. A rule
//! file is all-or-nothing: one bad rule rejects the whole file with an error
//! that points at it, because a silently skipped rule looks exactly like a
//! process that "just isn't classified" and is very hard to notice.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::Attribute;

/// The built-in rules, compiled into the binary so the exporter classifies
/// well with no files installed at all.
pub(crate) const BUILTIN_RULES: &str = include_str!("../../config/subgroups.toml");

/// Where a rule came from. Shown in listings, `--explain` output and errors.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuleOrigin {
    /// The rule table compiled into the binary (`config/subgroups.toml`).
    Builtin,
    /// A user rule file, as the path it was found under.
    File(PathBuf),
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleOrigin::Builtin => f.write_str("built-in"),
            RuleOrigin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Which rule files to read in addition to the built-in rules.
///
/// Files are consulted in this order, and a rule from an earlier file takes
/// precedence over any rule from a later one:
///
/// 1. `explicit` (the `subgroups_file` config key), which must exist;
/// 2. `./subgroups.toml`, if `search_default_locations` and it exists;
/// 3. `/etc/herakles/subgroups.toml`, likewise;
/// 4. the built-in rules.
///
/// All files found are loaded (not just the first), so a site-wide file in
/// `/etc` and a local override in the working directory compose. A path that
/// names the same file as an earlier one is read only once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSources {
    /// A file the operator named explicitly. Unlike the default locations,
    /// it is an error for this file to be missing.
    pub explicit: Option<PathBuf>,
    /// Whether to look in [`RuleSources::DEFAULT_LOCATIONS`].
    pub search_default_locations: bool,
}

impl RuleSources {
    /// The well-known locations searched when `search_default_locations` is
    /// set, highest precedence first.
    pub const DEFAULT_LOCATIONS: [&'static str; 2] =
        ["./subgroups.toml", "/etc/herakles/subgroups.toml"];

    /// Built-in rules only.
    pub fn builtin_only() -> RuleSources {
        RuleSources::default()
    }

    /// Reads every configured file, in precedence order, returning each
    /// file's validated rules. Missing default files are skipped; anything
    /// else that goes wrong is an error.
    pub(crate) fn read(&self) -> Result<Vec<(RuleOrigin, ParsedFile)>, RulesError> {
        let mut candidates: Vec<(PathBuf, bool)> = Vec::new();
        if let Some(path) = &self.explicit {
            candidates.push((path.clone(), true));
        }
        if self.search_default_locations {
            for path in Self::DEFAULT_LOCATIONS {
                candidates.push((PathBuf::from(path), false));
            }
        }

        read_files(candidates)
    }
}

/// Reads `(path, required)` candidates in order. Missing optional files are
/// skipped; a file reached through two spellings is read once, at its first
/// (highest-precedence) position.
fn read_files(
    candidates: Vec<(PathBuf, bool)>,
) -> Result<Vec<(RuleOrigin, ParsedFile)>, RulesError> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut files = Vec::new();
    for (path, required) in candidates {
        let origin = RuleOrigin::File(path.clone());
        let text = match crate::util::read_regular_file(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound && !required => continue,
            Err(err) => return Err(RulesError::io(origin, &err)),
        };
        // Canonicalizing can only fail in a race with deletion; falling back
        // to the literal path then merely risks reading the file twice.
        let identity = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if seen.contains(&identity) {
            continue;
        }
        seen.push(identity);
        let rules = parse_rules(&origin, &text)?;
        files.push((origin, rules));
    }
    Ok(files)
}

/// A rule file that could not be used.
///
/// It displays as `file:line:col: message (rule N: group/subgroup)`, the
/// shape editors and CI logs already know how to link to. The position and
/// the rule are omitted when they are unknown (an unreadable file has
/// neither; a TOML syntax error outside any rule has no rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesError(Box<ErrorDetail>);

// Boxed so that `Result<_, RulesError>` stays one pointer wide on the
// success path.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ErrorDetail {
    origin: RuleOrigin,
    position: Option<(usize, usize)>,
    message: String,
    rule: Option<RuleLabel>,
}

/// Identifies the offending rule in an error: its 1-based position in the
/// file, plus its labels when they could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RuleLabel {
    number: usize,
    labels: Option<(String, String)>,
}

impl RulesError {
    fn new(
        origin: RuleOrigin,
        position: Option<(usize, usize)>,
        message: String,
        rule: Option<RuleLabel>,
    ) -> RulesError {
        RulesError(Box::new(ErrorDetail {
            origin,
            position,
            message,
            rule,
        }))
    }

    fn io(origin: RuleOrigin, err: &io::Error) -> RulesError {
        RulesError::new(origin, None, format!("cannot read rule file: {err}"), None)
    }

    /// The file (or the built-in table) the error is in.
    pub fn origin(&self) -> &RuleOrigin {
        &self.0.origin
    }

    /// 1-based line of the problem, if known.
    pub fn line(&self) -> Option<usize> {
        self.0.position.map(|(line, _)| line)
    }

    /// 1-based column (in characters) of the problem, if known.
    pub fn column(&self) -> Option<usize> {
        self.0.position.map(|(_, col)| col)
    }

    /// 1-based index of the offending rule within its file, if known.
    pub fn rule_number(&self) -> Option<usize> {
        self.0.rule.as_ref().map(|r| r.number)
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        write!(f, "{}", e.origin)?;
        if let Some((line, col)) = e.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": {}", e.message)?;
        if let Some(rule) = &e.rule {
            write!(f, " (rule {}", rule.number)?;
            if let Some((group, subgroup)) = &rule.labels {
                write!(f, ": {group}/{subgroup}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for RulesError {}

/// Something in a rule file that loads but is probably not what its author
/// meant. Logged as a warning; displays as `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesWarning {
    origin: RuleOrigin,
    position: (usize, usize),
    message: String,
}

impl RulesWarning {
    /// 1-based line the warning is about.
    pub fn line(&self) -> usize {
        self.position.0
    }

    /// What is odd, without the location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RulesWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, col) = self.position;
        write!(f, "{}:{line}:{col}: {}", self.origin, self.message)
    }
}

/// One rule file's validated rules, and what is odd about them.
#[derive(Clone, Debug, Default)]
pub(crate) struct ParsedFile {
    pub rules: Vec<ParsedRule>,
    pub warnings: Vec<RulesWarning>,
}

/// One validated rule, with its regexes compiled.
#[derive(Clone, Debug)]
pub(crate) struct ParsedRule {
    /// 1-based position in the file's `subgroups` array.
    pub number: usize,
    /// 1-based line the rule starts on.
    pub line: usize,
    pub group: String,
    pub subgroup: String,
    pub matches: Vec<String>,
    /// Placement patterns, in the order unit, container, cgroup, user,
    /// each kind in file order: the source as written, and the regex
    /// anchored to match the whole value.
    pub placement: Vec<(Attribute, String, Regex)>,
    pub cmdline_matches: Vec<(String, Regex)>,
}

// The strict schema. `deny_unknown_fields` is what turns a misspelt key
// (`cmdline_match`, `subgroup` at top level) into an error instead of a rule
// that quietly never matches.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    subgroups: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    group: Spanned<String>,
    subgroup: Spanned<String>,
    #[serde(default)]
    matches: Vec<Spanned<String>>,
    #[serde(default)]
    cmdline_matches: Vec<Spanned<String>>,
    #[serde(default)]
    unit_matches: Vec<Spanned<String>>,
    #[serde(default)]
    container_matches: Vec<Spanned<String>>,
    #[serde(default)]
    cgroup_matches: Vec<Spanned<String>>,
    #[serde(default)]
    user_matches: Vec<Spanned<String>>,
}

impl RawRule {
    fn placement(&self, attribute: Attribute) -> &[Spanned<String>] {
        match attribute {
            Attribute::Unit => &self.unit_matches,
            Attribute::Container => &self.container_matches,
            Attribute::Cgroup => &self.cgroup_matches,
            Attribute::User => &self.user_matches,
        }
    }
}

// A forgiving view of the same document, used only after the strict parse
// failed, to find which rule the error's byte offset falls in and what it
// is called.
#[derive(Deserialize)]
struct LenientFile {
    #[serde(default)]
    subgroups: Vec<Spanned<toml::Value>>,
}

/// Parses and validates one rule file.
///
/// Linear in the size of the file: positions come from one [`LineIndex`]
/// and duplicates from one hash map, so a generated file of 100,000 rules
/// loads in about the time it takes to compile its regexes.
pub(crate) fn parse_rules(origin: &RuleOrigin, text: &str) -> Result<ParsedFile, RulesError> {
    let lines = LineIndex::new(text);
    let file: RulesFile = match toml::from_str(text) {
        Ok(file) => file,
        Err(err) => {
            let offset = err.span().map(|span| span.start);
            return Err(RulesError::new(
                origin.clone(),
                offset.map(|o| lines.locate(o)),
                err.message().trim_end().to_string(),
                offset.and_then(|o| rule_at_offset(text, o)),
            ));
        }
    };

    let mut rules = Vec::with_capacity(file.subgroups.len());
    let mut warnings = Vec::new();
    // (group, subgroup) -> (rule number, position) of its first rule.
    let mut first_of: HashMap<(String, String), (usize, (usize, usize))> = HashMap::new();
    for (index, spanned) in file.subgroups.into_iter().enumerate() {
        let number = index + 1;
        let rule_start = spanned.span().start;
        let raw = spanned.into_inner();
        let label = RuleLabel {
            number,
            labels: Some((raw.group.get_ref().clone(), raw.subgroup.get_ref().clone())),
        };
        let fail = |offset: usize, message: String| {
            RulesError::new(
                origin.clone(),
                Some(lines.locate(offset)),
                message,
                Some(label.clone()),
            )
        };

        for (field, value) in [("group", &raw.group), ("subgroup", &raw.subgroup)] {
            let name = value.get_ref();
            if name.trim().is_empty() {
                return Err(fail(
                    value.span().start,
                    format!("`{field}` must not be empty"),
                ));
            }
            if name.chars().any(char::is_control) {
                return Err(fail(
                    value.span().start,
                    format!("`{field}` must not contain control characters"),
                ));
            }
        }
        let no_placement = Attribute::ALL.iter().all(|a| raw.placement(*a).is_empty());
        if raw.matches.is_empty() && raw.cmdline_matches.is_empty() && no_placement {
            return Err(fail(
                rule_start,
                "rule has no pattern (`matches`, `cmdline_matches`, `unit_matches`, \
                 `container_matches`, `cgroup_matches` or `user_matches`), so it can never match"
                    .to_string(),
            ));
        }

        let mut matches = Vec::with_capacity(raw.matches.len());
        for pattern in &raw.matches {
            if pattern.get_ref().is_empty() {
                return Err(fail(
                    pattern.span().start,
                    "empty `matches` pattern: no process has an empty name".to_string(),
                ));
            }
            matches.push(pattern.get_ref().clone());
        }

        let mut cmdline_matches = Vec::with_capacity(raw.cmdline_matches.len());
        for pattern in &raw.cmdline_matches {
            let source = pattern.get_ref();
            if source.is_empty() {
                return Err(fail(
                    pattern.span().start,
                    "empty `cmdline_matches` pattern would match every process".to_string(),
                ));
            }
            match Regex::new(source) {
                Ok(regex) => cmdline_matches.push((source.clone(), regex)),
                Err(err) => {
                    return Err(fail(
                        pattern.span().start,
                        format!(
                            "invalid regex `{source}`: {}",
                            crate::util::regex_error_line(&err)
                        ),
                    ))
                }
            }
        }

        let mut placement = Vec::new();
        for attribute in Attribute::ALL {
            for pattern in raw.placement(attribute) {
                let source = pattern.get_ref();
                if source.is_empty() {
                    return Err(fail(
                        pattern.span().start,
                        format!(
                            "empty `{}` pattern: use \".*\" to match any",
                            attribute.key()
                        ),
                    ));
                }
                // Compiled alone first: a pattern that is not a regex by
                // itself (`a)|(b`) could turn valid once wrapped below, and
                // then mean something else than anchored.
                if let Err(err) = Regex::new(source) {
                    return Err(fail(
                        pattern.span().start,
                        format!(
                            "invalid regex `{source}`: {}",
                            crate::util::regex_error_line(&err)
                        ),
                    ));
                }
                // The whole value must match: `root` is not `rootless`,
                // `nginx.service` not `nginx.service.d`.
                match Regex::new(&format!("^(?:{source})$")) {
                    Ok(regex) => placement.push((attribute, source.clone(), regex)),
                    Err(err) => {
                        return Err(fail(
                            pattern.span().start,
                            format!(
                                "invalid regex `{source}`: {}",
                                crate::util::regex_error_line(&err)
                            ),
                        ))
                    }
                }
            }
        }

        let position = lines.locate(rule_start);
        let key = (raw.group.get_ref().clone(), raw.subgroup.get_ref().clone());
        match first_of.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert((number, position));
            }
            Entry::Occupied(first) => {
                let ((group, subgroup), (first_number, (line, col))) = (first.key(), first.get());
                warnings.push(RulesWarning {
                    origin: origin.clone(),
                    position,
                    message: format!(
                        "rule {number} repeats {group}/{subgroup}, already the labels of rule \
                         {first_number} at {origin}:{line}:{col}; merge them into one rule"
                    ),
                });
            }
        }

        rules.push(ParsedRule {
            number,
            line: position.0,
            group: raw.group.into_inner(),
            subgroup: raw.subgroup.into_inner(),
            matches,
            placement,
            cmdline_matches,
        });
    }
    Ok(ParsedFile { rules, warnings })
}

/// Finds the rule that byte `offset` belongs to, for errors reported by the
/// strict parse (which cannot say which array element it was in).
fn rule_at_offset(text: &str, offset: usize) -> Option<RuleLabel> {
    let file: LenientFile = toml::from_str(text).ok()?;
    let rules = &file.subgroups;
    // An inline table's span covers the whole table.
    let containing = rules.iter().position(|rule| rule.span().contains(&offset));
    // A `[[subgroups]]` table's span covers only its header; its keys are
    // the lines up to the next header.
    let under_header = || {
        rules.iter().rposition(|rule| {
            let span = rule.span();
            span.start <= offset && text[span].starts_with("[[")
        })
    };
    let index = containing.or_else(under_header)?;
    let rule = &rules[index];
    let field = |key: &str| rule.get_ref().get(key)?.as_str().map(str::to_string);
    Some(RuleLabel {
        number: index + 1,
        labels: field("group").zip(field("subgroup")),
    })
}

/// Maps byte offsets (what TOML spans are) to the 1-based line and
/// character column people and editors use.
///
/// The line starts are found once, so locating every rule of a large file
/// costs a binary search each rather than a rescan of the text before it.
struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    fn locate(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // The last line start at or before `offset`; `starts[0]` is 0, so
        // there always is one.
        let line = self.starts.partition_point(|&s| s <= offset);
        let column = self.text[self.starts[line - 1]..offset].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> RuleOrigin {
        RuleOrigin::File(PathBuf::from("test.toml"))
    }

    fn err(text: &str) -> RulesError {
        parse_rules(&origin(), text).expect_err("rule file should be rejected")
    }

    #[test]
    fn inline_array_form_loads() {
        let text = r#"
subgroups = [
  { group = "db", subgroup = "postgres", matches = ["postgres", "postmaster"] },
  { group = "messaging", subgroup = "kafka", cmdline_matches = ["kafka\\.Kafka"] },
]
"#;
        let rules = parse_rules(&origin(), text).unwrap().rules;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].matches, ["postgres", "postmaster"]);
        assert_eq!(rules[1].cmdline_matches[0].0, r"kafka\.Kafka");
        assert_eq!((rules[0].line, rules[1].line), (3, 4));
    }

    #[test]
    fn table_array_form_loads() {
        let text = r#"
[[subgroups]]
group = "db"
subgroup = "postgres"
matches = ["postgres"]

[[subgroups]]
group = "web"
subgroup = "nginx"
matches = ["nginx"]
"#;
        let rules = parse_rules(&origin(), text).unwrap().rules;
        assert_eq!(rules.len(), 2);
        assert_eq!((rules[1].number, rules[1].line), (2, 7));
    }

    #[test]
    fn empty_file_has_no_rules() {
        assert!(parse_rules(&origin(), "").unwrap().rules.is_empty());
        assert!(parse_rules(&origin(), "# nothing yet\n")
            .unwrap()
            .rules
            .is_empty());
    }

    #[test]
    fn malformed_toml_names_file_and_line() {
        let e =
            err("subgroups = [\n  { group = \"db\", subgroup = \"pg\", matches = [\"pg\" },\n]\n");
        assert_eq!(e.line(), Some(2), "{e}");
        assert!(e.to_string().starts_with("test.toml:2:"), "{e}");
    }

    #[test]
    fn invalid_regex_names_file_line_and_rule() {
        let text = r#"subgroups = [
  { group = "db", subgroup = "postgres", matches = ["postgres"] },
  { group = "messaging", subgroup = "kafka", cmdline_matches = ["kafka\\.(Kafka"] },
]
"#;
        let e = err(text);
        assert_eq!(e.line(), Some(3));
        assert_eq!(e.column(), Some(65));
        assert_eq!(e.rule_number(), Some(2));
        assert_eq!(
            e.to_string(),
            r"test.toml:3:65: invalid regex `kafka\.(Kafka`: unclosed group (rule 2: messaging/kafka)"
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_rule() {
        let text = r#"subgroups = [
  { group = "db", subgroup = "postgres", matches = ["postgres"] },
  { group = "web", subgroup = "nginx", matchs = ["nginx"] },
]
"#;
        let e = err(text);
        assert_eq!(e.line(), Some(3), "{e}");
        assert_eq!(e.rule_number(), Some(2), "{e}");
        let shown = e.to_string();
        assert!(shown.starts_with("test.toml:3:"), "{shown}");
        assert!(shown.contains("matchs"), "{shown}");
        assert!(shown.ends_with("(rule 2: web/nginx)"), "{shown}");
    }

    #[test]
    fn errors_in_table_form_name_the_rule() {
        let text = "[[subgroups]]\ngroup = \"a\"\nsubgroup = \"b\"\nmatches = [\"x\"]\n\n\
                    [[subgroups]]\ngroup = \"c\"\nsubgroup = \"d\"\nmatches = [\"y\"]\ncolour = \"red\"\n";
        let e = err(text);
        assert_eq!(e.line(), Some(10), "{e}");
        assert!(e.to_string().ends_with("(rule 2: c/d)"), "{e}");
    }

    #[test]
    fn unknown_top_level_key_is_an_error() {
        let e = err("subgroup = []\n");
        assert_eq!(e.line(), Some(1), "{e}");
        assert!(e.to_string().contains("subgroup"), "{e}");
    }

    #[test]
    fn empty_rule_names_file_line_and_rule() {
        let text = "[[subgroups]]\ngroup = \"db\"\nsubgroup = \"pg\"\nmatches = [\"pg\"]\n\n\
                    [[subgroups]]\ngroup = \"db\"\nsubgroup = \"ghost\"\n";
        let e = err(text);
        assert_eq!(e.rule_number(), Some(2));
        assert!(
            e.to_string()
                .starts_with("test.toml:6:1: rule has no pattern (`matches`, `cmdline_matches`"),
            "{e}"
        );
        assert!(e.to_string().ends_with("(rule 2: db/ghost)"), "{e}");
    }

    #[test]
    fn empty_patterns_and_labels_are_errors() {
        let e = err(r#"subgroups = [{ group = "db", subgroup = "x", matches = [""] }]"#);
        assert!(e.message().contains("empty `matches`"), "{e}");
        let e = err(r#"subgroups = [{ group = "db", subgroup = "x", cmdline_matches = [""] }]"#);
        assert!(e.message().contains("every process"), "{e}");
        let e = err(r#"subgroups = [{ group = " ", subgroup = "x", matches = ["x"] }]"#);
        assert!(e.message().contains("`group` must not be empty"), "{e}");
    }

    #[test]
    fn missing_and_mistyped_fields_are_errors() {
        let e = err(r#"subgroups = [{ subgroup = "x", matches = ["x"] }]"#);
        assert!(e.message().contains("group"), "{e}");
        assert_eq!(e.line(), Some(1));
        let e = err("subgroups = [\n{ group = \"db\", subgroup = \"x\", matches = \"x\" },\n]");
        assert_eq!(e.line(), Some(2), "{e}");
        assert_eq!(e.rule_number(), Some(1), "{e}");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text =
            "# ü\nsubgroups = [{ group = \"ä\", subgroup = \"ö\", cmdline_matches = [\"(\"] }]";
        let e = err(text);
        assert_eq!((e.line(), e.column()), (Some(2), Some(64)), "{e}");
    }

    #[test]
    fn duplicate_labels_warn_naming_both_rules() {
        let text = r#"subgroups = [
  { group = "db", subgroup = "pg", matches = ["postgres"] },
  { group = "web", subgroup = "nginx", matches = ["nginx"] },
  { group = "db", subgroup = "pg", cmdline_matches = ["pg_ctl"] },
]
"#;
        let file = parse_rules(&origin(), text).unwrap();
        assert_eq!(file.rules.len(), 3, "a duplicate still loads");
        let shown: Vec<String> = file.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            shown,
            [
                "test.toml:4:3: rule 3 repeats db/pg, already the labels of rule 1 \
                 at test.toml:2:3; merge them into one rule"
            ]
        );
        let distinct = "[[subgroups]]\ngroup = \"a\"\nsubgroup = \"b\"\nmatches = [\"x\"]\n\n\
                        [[subgroups]]\ngroup = \"a\"\nsubgroup = \"c\"\nmatches = [\"y\"]\n";
        assert!(parse_rules(&origin(), distinct)
            .unwrap()
            .warnings
            .is_empty());
        assert!(parse_rules(&RuleOrigin::Builtin, BUILTIN_RULES)
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn rule_lines_are_right_in_a_large_file() {
        // Every rule's line, as the one-pass index computes it, against the
        // text counted by hand.
        let mut text = String::from("# generated\n");
        for i in 0..500 {
            text.push_str(&format!(
                "[[subgroups]]\ngroup = \"g\"\nsubgroup = \"s{i}\"\nmatches = [\"n{i}\"]\n\n"
            ));
        }
        let rules = parse_rules(&origin(), &text).unwrap().rules;
        for (i, rule) in rules.iter().enumerate() {
            assert_eq!(rule.line, 2 + 5 * i, "rule {}", rule.number);
        }
    }

    proptest::proptest! {
        #[test]
        fn line_index_agrees_with_counting(text in "(\\PC|\n){0,80}", at in 0usize..400) {
            let lines = LineIndex::new(&text);
            let mut offset = at.min(text.len());
            while !text.is_char_boundary(offset) {
                offset -= 1;
            }
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
            proptest::prop_assert_eq!(lines.locate(at), (line, col));
        }

        /// Any text is a rule set or an error, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse_rules(&origin(), &text);
        }

        /// Text shaped like rule files, with the pieces that trip parsers
        /// (unclosed groups, huge repeats, control characters, odd keys).
        #[test]
        fn rule_shaped_text_never_panics(
            rules in proptest::collection::vec(
                (
                    "[a-z]{0,3}|\\PC{0,4}",
                    "[a-z]{0,3}|\\PC{0,4}",
                    proptest::collection::vec("\\PC{0,6}|[(){}*+?\\[\\]\\\\]{1,4}|\\(x\\{1000\\}\\)\\{1000\\}", 0..3),
                    proptest::collection::vec("\\PC{0,6}", 0..3),
                    "|colour = 1|matches = 3|\\[\\[x\\]\\]",
                ),
                0..6,
            )
        ) {
            let mut text = String::new();
            for (group, subgroup, cmdline, names, extra) in &rules {
                text.push_str(&format!(
                    "[[subgroups]]\ngroup = {group:?}\nsubgroup = {subgroup:?}\n\
                     matches = {names:?}\ncmdline_matches = {cmdline:?}\n{extra}\n"
                ));
            }
            let _ = parse_rules(&origin(), &text);
        }
    }

    #[test]
    fn missing_explicit_file_is_an_error_but_missing_defaults_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let e = RuleSources {
            explicit: Some(missing.clone()),
            search_default_locations: false,
        }
        .read()
        .unwrap_err();
        assert_eq!(e.origin(), &RuleOrigin::File(missing));
        assert!(e.message().starts_with("cannot read rule file"), "{e}");
        assert!(RuleSources::builtin_only().read().unwrap().is_empty());
    }

    #[test]
    fn the_same_file_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        let text = "subgroups = [{ group = \"a\", subgroup = \"b\", matches = [\"c\"] }]";
        fs::write(&path, text).unwrap();
        let other_spelling = dir.path().join(".").join("rules.toml");
        let missing = dir.path().join("absent.toml");
        let files = read_files(vec![
            (path.clone(), true),
            (missing, false),
            (other_spelling, false),
        ])
        .unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, RuleOrigin::File(path));
    }
}
