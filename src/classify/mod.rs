//! Process classification into groups and subgroups.
//!
//! Every process the exporter reports carries a `group` (`db`, `web`,
//! `container`, ...) and a `subgroup` (`postgres`, `nginx`, `kubelet`, ...)
//! label, and the per-group aggregates and top-N metrics are keyed by them.
//! This module decides those labels from what the process collectors read
//! out of `/proc/<pid>`: the `comm` (kernel task name, truncated to 15
//! bytes), the basename of the `exe` link, the `cmdline`, and where the
//! process runs (its [`Placement`]: systemd unit, container, cgroup, user).
//!
//! # Rules
//!
//! A rule names a group and subgroup and gives patterns of three kinds:
//!
//! * `matches`: names compared *exactly* (case-sensitively) with the comm
//!   and, separately, with the exe basename. Because the kernel truncates
//!   comm, a long program name is listed both in full (matching the exe) and
//!   cut to 15 bytes (matching the comm), e.g. `clickhouse-server` and
//!   `clickhouse-serv`.
//! * `cmdline_matches`: regexes searched for anywhere in the cmdline, whose
//!   NUL separators have been replaced by spaces. This is how processes that
//!   share one runtime binary are told apart: every JVM's comm is `java`, so
//!   Kafka is recognised by `kafka.Kafka` in its cmdline.
//! * placement: `unit_matches`, `container_matches`, `cgroup_matches` and
//!   `user_matches`, regexes that must match the *whole* systemd unit
//!   (`nginx.service`), container (`<runtime>://<id>`, as Kubernetes
//!   writes a container id: `containerd://4f1a...`), cgroup path or user
//!   name. They classify by where a process was put rather than what it
//!   is: every process of `backup.service`, of any Docker container
//!   (`docker://.*`), of user `postgres`.
//!
//! The patterns of one rule are alternatives: the rule matches when any of
//! them does.
//!
//! Rules come from TOML files, in the shape
//!
//! ```toml
//! subgroups = [
//!   { group = "myapp", subgroup = "api", matches = ["myapp-api"] },
//!   { group = "myapp", subgroup = "web", cmdline_matches = ['node .*myapp-web'] },
//! ]
//! ```
//!
//! or, equivalently, as `[[subgroups]]` tables. The built-in rules are
//! `config/subgroups.toml`, compiled in; [`RuleSources`] says which user
//! files are added on top. A file with any problem is rejected as a whole
//! with a [`RulesError`] pointing at the line and rule.
//!
//! # Precedence
//!
//! Several rules may match one process (a JVM running Kafka matches both the
//! Kafka rule and the generic Java rule). The winner is decided by, in order:
//!
//! 1. **Source.** Rules from user files beat built-in rules, and an earlier
//!    file (see [`RuleSources`]) beats a later one. An operator can therefore
//!    re-label anything, including with a cmdline rule against a built-in
//!    name rule.
//! 2. **Kind.** Within one file, any `matches` rule beats any placement
//!    rule, which beats any `cmdline_matches` rule: a name is the process's
//!    own claim about what it is; where the operator or the system put it
//!    is the next best evidence; a cmdline pattern is circumstantial.
//! 3. **Order.** Within one file and kind, the earlier rule wins, and within
//!    one rule the earlier pattern (placement patterns in the order unit,
//!    container, cgroup, user). Comm and exe basename are equal partners:
//!    whichever names the earlier rule wins (the comm on a tie).
//!
//! So in the built-in file, generic runtime rules (`java`, `python`, `node`,
//! ...) are written as cmdline rules placed *last*: an application matched by
//! name or by a more specific cmdline rule always wins over them.
//!
//! A process no rule matches is group [`OTHER_GROUP`], subgroup
//! [`UNKNOWN_SUBGROUP`].
//!
//! # Cost
//!
//! Classification runs for every new process, so it is built to be cheap:
//! one hash probe per name, and only when no name matches (or only a weaker
//! one does) a single multi-literal scan of the cmdline (Aho-Corasick's
//! SIMD Teddy searcher) that selects the few regexes worth running; see
//! `matcher.rs` and `prefilter.rs` for the design. Placement patterns are
//! few and their values short; they are tried in precedence order, and only
//! when they could beat the name match. Labels are `Arc<str>` interned at
//! load, so a [`Classification`] is two reference count increments and no
//! allocation. Results depend only on the inputs, so callers may cache them
//! per (pid, start time) until the process execs or moves.

mod literals;
mod matcher;
mod prefilter;
mod render;
mod rules;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use regex::Regex;

use matcher::{Matcher, MatcherBuilder, Target};
use rules::{ParsedFile, BUILTIN_RULES};

pub use render::{explain_target, render_list};
pub use rules::{RuleOrigin, RuleSources, RulesError, RulesWarning};

/// The group of processes no rule matches.
pub const OTHER_GROUP: &str = "other";
/// The subgroup of processes no rule matches.
pub const UNKNOWN_SUBGROUP: &str = "unknown";

/// A compiled rule set. Immutable once built: share it in an `Arc`.
pub struct Classifier {
    rules: Vec<Rule>,
    origins: Vec<RuleOrigin>,
    matcher: Matcher,
    other: Arc<str>,
    unknown: Arc<str>,
    warnings: Vec<RulesWarning>,
}

/// One rule as kept after loading: labels interned, regexes compiled, and
/// its place in the precedence order fixed.
struct Rule {
    /// Index into `Classifier::origins`.
    origin: usize,
    number: usize,
    line: usize,
    group: Arc<str>,
    subgroup: Arc<str>,
    matches: Vec<Box<str>>,
    /// Placement patterns: the attribute, the source as written, and the
    /// anchored regex.
    placement: Vec<(Attribute, Box<str>, Regex)>,
    cmdline_matches: Vec<Regex>,
    /// Priority shared by all of this rule's `matches` patterns.
    exact_priority: u32,
    /// Priority of the first placement pattern; pattern `j` has this
    /// plus `j`.
    placement_priority: u32,
    /// Priority of the first `cmdline_matches` pattern; pattern `j` has
    /// this plus `j`.
    cmdline_priority: u32,
}

/// A fact about where a process runs, which placement rules match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attribute {
    /// The systemd unit, `nginx.service`.
    Unit,
    /// The container, `<runtime>://<id>`.
    Container,
    /// The cgroup path, `/system.slice/nginx.service`.
    Cgroup,
    /// The user name (or the uid, for a user the passwd file lacks).
    User,
}

impl Attribute {
    /// In precedence order within a rule.
    pub const ALL: [Attribute; 4] = [
        Attribute::Unit,
        Attribute::Container,
        Attribute::Cgroup,
        Attribute::User,
    ];

    /// The rule file key.
    pub fn key(self) -> &'static str {
        match self {
            Attribute::Unit => "unit_matches",
            Attribute::Container => "container_matches",
            Attribute::Cgroup => "cgroup_matches",
            Attribute::User => "user_matches",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Attribute::Unit => "unit",
            Attribute::Container => "container",
            Attribute::Cgroup => "cgroup",
            Attribute::User => "user",
        }
    }
}

/// Where a process runs, for placement rules. A fact that is `None`
/// (unknown, or the process has none: no container, no unit) matches no
/// pattern, not even `.*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement<'a> {
    pub unit: Option<&'a str>,
    /// `<runtime>://<id>`.
    pub container: Option<&'a str>,
    pub cgroup: Option<&'a str>,
    pub user: Option<&'a str>,
}

impl<'a> Placement<'a> {
    pub fn get(&self, attribute: Attribute) -> Option<&'a str> {
        match attribute {
            Attribute::Unit => self.unit,
            Attribute::Container => self.container,
            Attribute::Cgroup => self.cgroup,
            Attribute::User => self.user,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Placement::default()
    }
}

/// The labels chosen for a process, and the rule that chose them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classification {
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    /// `None` when no rule matched and the labels are the fallback.
    pub rule: Option<RuleRef>,
}

/// Identifies the rule and pattern behind a [`Classification`]. Only
/// meaningful for the [`Classifier`] that produced it; resolve it with
/// [`Classifier::rule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleRef {
    rule: u32,
    pattern: u32,
    matched_by: MatchedBy,
}

impl RuleRef {
    /// Which input the winning pattern matched.
    pub fn matched_by(&self) -> MatchedBy {
        self.matched_by
    }

    /// The pattern's index within its rule's `matches` (for
    /// [`MatchedBy::Comm`] and [`MatchedBy::Exe`]), its placement patterns
    /// (in the order unit, container, cgroup, user) or `cmdline_matches`.
    pub fn pattern_index(&self) -> usize {
        self.pattern as usize
    }
}

/// The input a rule matched on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatchedBy {
    /// A `matches` name equal to the comm.
    Comm,
    /// A `matches` name equal to the exe basename.
    Exe,
    /// A placement regex matching the whole attribute.
    Placement(Attribute),
    /// A `cmdline_matches` regex found in the cmdline.
    Cmdline,
}

impl fmt::Display for MatchedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchedBy::Comm => "comm",
            MatchedBy::Exe => "exe basename",
            MatchedBy::Placement(a) => a.name(),
            MatchedBy::Cmdline => "cmdline",
        })
    }
}

/// A subgroup and every rule that leads to it, for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubgroupInfo {
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    /// In precedence order. Several rules (say, a built-in one and a user
    /// one adding names) may share a subgroup.
    pub rules: Vec<RuleInfo>,
}

impl SubgroupInfo {
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

/// One rule, as written in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    pub origin: RuleOrigin,
    /// 1-based position in the file's `subgroups` array.
    pub number: usize,
    /// 1-based line the rule starts on.
    pub line: usize,
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    pub matches: Vec<String>,
    /// Placement patterns as written, in precedence order.
    pub placement: Vec<(Attribute, String)>,
    pub cmdline_matches: Vec<String>,
}

/// One matching pattern, found by the exhaustive (slow) search that backs
/// `explain` and checks the fast path in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RuleMatch {
    priority: u32,
    rule_ref: RuleRef,
}

impl Classifier {
    /// The built-in rules alone.
    ///
    /// Never panics: the built-in file is checked by this module's tests, and
    /// if it were somehow broken anyway the exporter would rather run with
    /// every process in `other/unknown` (and say so in the log) than not run.
    pub fn builtin() -> Classifier {
        match rules::parse_rules(&RuleOrigin::Builtin, BUILTIN_RULES) {
            Ok(file) => Self::from_files(vec![(RuleOrigin::Builtin, file)]),
            Err(err) => {
                tracing::error!(%err, "built-in subgroup rules are invalid; using none");
                Self::from_files(Vec::new())
            }
        }
    }

    /// User rules from `sources`, then the built-in rules.
    pub fn load(sources: &RuleSources) -> Result<Classifier, RulesError> {
        let mut files = sources.read()?;
        files.push((
            RuleOrigin::Builtin,
            rules::parse_rules(&RuleOrigin::Builtin, BUILTIN_RULES)?,
        ));
        Ok(Self::from_files(files))
    }

    /// Assembles a classifier from parsed files, highest precedence first.
    fn from_files(files: Vec<(RuleOrigin, ParsedFile)>) -> Classifier {
        let mut interned: HashMap<String, Arc<str>> = HashMap::new();
        let mut intern = |s: String| -> Arc<str> {
            interned
                .entry(s)
                .or_insert_with_key(|s| Arc::from(s.as_str()))
                .clone()
        };

        let mut origins = Vec::with_capacity(files.len());
        let mut rules: Vec<Rule> = Vec::new();
        let mut warnings = Vec::new();
        let mut priority: u32 = 0;
        for (origin_index, (origin, parsed)) in files.into_iter().enumerate() {
            origins.push(origin);
            warnings.extend(parsed.warnings);
            let first = rules.len();
            for rule in parsed.rules {
                rules.push(Rule {
                    origin: origin_index,
                    number: rule.number,
                    line: rule.line,
                    group: intern(rule.group),
                    subgroup: intern(rule.subgroup),
                    matches: rule.matches.into_iter().map(Into::into).collect(),
                    placement: rule
                        .placement
                        .into_iter()
                        .map(|(a, source, re)| (a, source.into(), re))
                        .collect(),
                    cmdline_matches: rule.cmdline_matches.into_iter().map(|(_, re)| re).collect(),
                    exact_priority: 0,
                    placement_priority: 0,
                    cmdline_priority: 0,
                });
            }
            // All of a file's name rules, then all of its placement rules,
            // then all of its cmdline rules.
            for rule in &mut rules[first..] {
                rule.exact_priority = priority;
                priority += 1;
            }
            for rule in &mut rules[first..] {
                rule.placement_priority = priority;
                priority += rule.placement.len() as u32;
            }
            for rule in &mut rules[first..] {
                rule.cmdline_priority = priority;
                priority += rule.cmdline_matches.len() as u32;
            }
        }

        let mut builder = MatcherBuilder::default();
        for (index, rule) in rules.iter().enumerate() {
            let index = index as u32;
            for (j, name) in rule.matches.iter().enumerate() {
                builder.exact(
                    name,
                    Target {
                        priority: rule.exact_priority,
                        rule: index,
                        pattern: j as u32,
                    },
                );
            }
            for (j, (attribute, _, regex)) in rule.placement.iter().enumerate() {
                builder.placement(
                    *attribute,
                    regex.clone(),
                    Target {
                        priority: rule.placement_priority + j as u32,
                        rule: index,
                        pattern: j as u32,
                    },
                );
            }
            for (j, regex) in rule.cmdline_matches.iter().enumerate() {
                builder.cmdline(
                    regex.clone(),
                    Target {
                        priority: rule.cmdline_priority + j as u32,
                        rule: index,
                        pattern: j as u32,
                    },
                );
            }
        }

        Classifier {
            rules,
            origins,
            matcher: builder.build(),
            other: intern(OTHER_GROUP.to_string()),
            unknown: intern(UNKNOWN_SUBGROUP.to_string()),
            warnings,
        }
    }

    /// What loaded but looks like a mistake (a group/subgroup given twice in
    /// one file), for the caller to log once logging is set up.
    pub fn warnings(&self) -> &[RulesWarning] {
        &self.warnings
    }

    /// Classifies one process.
    ///
    /// `cmdline` may be given raw (NUL-separated, as read from
    /// `/proc/<pid>/cmdline`) or already joined with spaces; trailing NULs
    /// and spaces are ignored either way. Raw input costs one allocation to
    /// convert, joined input none. A trailing newline on `comm` (as read
    /// from `/proc/<pid>/comm`) is ignored too.
    pub fn classify(&self, comm: &str, exe_basename: &str, cmdline: &str) -> Classification {
        self.classify_placed(comm, exe_basename, cmdline, &Placement::default())
    }

    /// Classifies one process whose [`Placement`] is known, so that
    /// placement rules can match it.
    pub fn classify_placed(
        &self,
        comm: &str,
        exe_basename: &str,
        cmdline: &str,
        placement: &Placement,
    ) -> Classification {
        match self
            .matcher
            .find(normalize_comm(comm), exe_basename, cmdline, placement)
        {
            Some((target, matched_by)) => {
                let rule = &self.rules[target.rule as usize];
                Classification {
                    group: rule.group.clone(),
                    subgroup: rule.subgroup.clone(),
                    rule: Some(RuleRef {
                        rule: target.rule,
                        pattern: target.pattern,
                        matched_by,
                    }),
                }
            }
            None => Classification {
                group: self.other.clone(),
                subgroup: self.unknown.clone(),
                rule: None,
            },
        }
    }

    /// Says in prose which rule classifies this process and why, what else
    /// matched but lost on precedence, or that nothing matched.
    pub fn explain(&self, comm: &str, exe_basename: &str, cmdline: &str) -> String {
        render::explain(self, comm, exe_basename, cmdline, None)
    }

    /// [`Classifier::explain`] for a process whose placement is known,
    /// which the report shows.
    pub fn explain_placed(
        &self,
        comm: &str,
        exe_basename: &str,
        cmdline: &str,
        placement: &Placement,
    ) -> String {
        render::explain(self, comm, exe_basename, cmdline, Some(placement))
    }

    /// Whether any rule matches on placement: without, a caller need not
    /// learn where processes run to classify them.
    pub fn uses_placement(&self) -> bool {
        self.rules.iter().any(|r| !r.placement.is_empty())
    }

    /// Every subgroup with its rules, sorted by group then subgroup.
    pub fn subgroups(&self) -> Vec<SubgroupInfo> {
        let mut by_label: BTreeMap<(Arc<str>, Arc<str>), Vec<RuleInfo>> = BTreeMap::new();
        for index in 0..self.rules.len() {
            let info = self.rule_info(index);
            by_label
                .entry((info.group.clone(), info.subgroup.clone()))
                .or_default()
                .push(info);
        }
        by_label
            .into_iter()
            .map(|((group, subgroup), rules)| SubgroupInfo {
                group,
                subgroup,
                rules,
            })
            .collect()
    }

    /// The distinct groups rules assign, sorted. The fallback
    /// [`OTHER_GROUP`] is included only if some rule names it.
    pub fn groups(&self) -> Vec<Arc<str>> {
        let groups: BTreeSet<&Arc<str>> = self.rules.iter().map(|r| &r.group).collect();
        groups.into_iter().cloned().collect()
    }

    /// The rule a [`RuleRef`] from this classifier points at.
    pub fn rule(&self, rule: RuleRef) -> Option<RuleInfo> {
        let index = rule.rule as usize;
        (index < self.rules.len()).then(|| self.rule_info(index))
    }

    /// The rule sources in effect, highest precedence first.
    pub fn sources(&self) -> &[RuleOrigin] {
        &self.origins
    }

    fn rule_info(&self, index: usize) -> RuleInfo {
        let rule = &self.rules[index];
        RuleInfo {
            origin: self.origins[rule.origin].clone(),
            number: rule.number,
            line: rule.line,
            group: rule.group.clone(),
            subgroup: rule.subgroup.clone(),
            matches: rule.matches.iter().map(|m| m.to_string()).collect(),
            placement: rule
                .placement
                .iter()
                .map(|(a, source, _)| (*a, source.to_string()))
                .collect(),
            cmdline_matches: rule
                .cmdline_matches
                .iter()
                .map(|re| re.as_str().to_string())
                .collect(),
        }
    }

    /// The text of the pattern a [`RuleRef`] names.
    fn pattern_text(&self, rule: RuleRef) -> &str {
        let r = &self.rules[rule.rule as usize];
        match rule.matched_by {
            MatchedBy::Comm | MatchedBy::Exe => &r.matches[rule.pattern as usize],
            MatchedBy::Placement(_) => &r.placement[rule.pattern as usize].1,
            MatchedBy::Cmdline => r.cmdline_matches[rule.pattern as usize].as_str(),
        }
    }

    /// Every matching pattern, best first, found by trying every pattern of
    /// every rule. Its first element is by definition the right answer, which
    /// makes it the reference the fast path is tested against.
    pub(crate) fn all_matches(
        &self,
        comm: &str,
        exe: &str,
        cmdline: &str,
        placement: &Placement,
    ) -> Vec<RuleMatch> {
        let comm = normalize_comm(comm);
        let cmdline = normalize_cmdline(cmdline);
        let mut found = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let mut hit = |priority: u32, pattern: usize, matched_by| {
                found.push(RuleMatch {
                    priority,
                    rule_ref: RuleRef {
                        rule: index as u32,
                        pattern: pattern as u32,
                        matched_by,
                    },
                })
            };
            for (j, name) in rule.matches.iter().enumerate() {
                if **name == *comm {
                    hit(rule.exact_priority, j, MatchedBy::Comm);
                }
                if **name == *exe {
                    hit(rule.exact_priority, j, MatchedBy::Exe);
                }
            }
            for (j, (attribute, _, regex)) in rule.placement.iter().enumerate() {
                if placement.get(*attribute).is_some_and(|v| regex.is_match(v)) {
                    let matched_by = MatchedBy::Placement(*attribute);
                    hit(rule.placement_priority + j as u32, j, matched_by);
                }
            }
            for (j, regex) in rule.cmdline_matches.iter().enumerate() {
                if regex.is_match(&cmdline) {
                    hit(rule.cmdline_priority + j as u32, j, MatchedBy::Cmdline);
                }
            }
        }
        found.sort_by_key(|m| (m.priority, m.rule_ref.matched_by, m.rule_ref.pattern));
        found
    }
}

/// `/proc/<pid>/comm` ends in a newline.
fn normalize_comm(comm: &str) -> &str {
    comm.strip_suffix('\n').unwrap_or(comm)
}

/// Trailing NULs and spaces dropped, inner NULs turned into spaces.
fn normalize_cmdline(cmdline: &str) -> Cow<'_, str> {
    let cmdline = cmdline.trim_end_matches(['\0', ' ']);
    if cmdline.contains('\0') {
        Cow::Owned(cmdline.replace('\0', " "))
    } else {
        Cow::Borrowed(cmdline)
    }
}

#[cfg(test)]
mod tests;
