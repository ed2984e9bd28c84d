//! The compiled form of a rule set: what `classify` actually runs.
//!
//! Every pattern of every rule becomes a *target* carrying a priority; lower
//! wins. Priorities encode the whole precedence order (source, then kind,
//! then rule, then pattern), so "which rule wins" is always "the matching
//! target with the smallest priority", whatever order the search structures
//! happen to report matches in. That matters because neither a hash lookup
//! nor an Aho-Corasick scan reports matches in rule order.
//!
//! # Exact names
//!
//! `matches` patterns are compared for equality with the comm and the exe
//! basename. Equality against a fixed set is a hash lookup, and nothing beats
//! it: one probe per name, independent of the number of rules. Each name maps
//! straight to its best target, resolved once at build time.
//!
//! # Cmdline regexes
//!
//! Running every cmdline regex on every process would cost one regex search
//! per rule. Instead, each regex contributes a set of *required literals*
//! (see [`super::literals`]), all of which go into one [`LiteralSet`]. A
//! single scan of the cmdline marks the regexes whose literals occur; only
//! those run, in priority order, stopping at the first that matches. Regexes
//! without a usable literal are always candidates.
//!
//! The cmdline is not even looked at when a name match already beats every
//! cmdline target that could match, which with the built-in rules is every
//! process found by name: all built-in name rules outrank all built-in
//! cmdline rules.
//!
//! # Placement regexes
//!
//! `unit_matches` and the other placement patterns are matched against
//! short values (a unit name, a cgroup path) and rules using them are few,
//! so they are simply tried in priority order, and only those that could
//! beat the name match.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use regex::Regex;

use super::literals::required_literals;
use super::prefilter::LiteralSet;
use super::{normalize_cmdline, Attribute, MatchedBy, Placement};

/// A pattern's place in the precedence order plus what to report when it
/// wins. Lower `priority` wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub priority: u32,
    pub rule: u32,
    pub pattern: u32,
}

/// Collects targets, in any order, and compiles them.
#[derive(Default)]
pub(crate) struct MatcherBuilder {
    exact: NameMap,
    placement: Vec<PlacementTarget>,
    cmdline: Vec<CmdlineTarget>,
}

struct CmdlineTarget {
    regex: Regex,
    target: Target,
}

struct PlacementTarget {
    attribute: Attribute,
    regex: Regex,
    target: Target,
}

impl MatcherBuilder {
    /// Adds an exact comm/exe name. If the name is already known, the
    /// higher-precedence target is kept: the other one can never win.
    pub fn exact(&mut self, name: &str, target: Target) {
        self.exact
            .entry(name.into())
            .and_modify(|t| {
                if target.priority < t.priority {
                    *t = target;
                }
            })
            .or_insert(target);
    }

    pub fn cmdline(&mut self, regex: Regex, target: Target) {
        self.cmdline.push(CmdlineTarget { regex, target });
    }

    /// Adds a placement regex, which must match the whole value of
    /// `attribute` (the caller anchors it).
    pub fn placement(&mut self, attribute: Attribute, regex: Regex, target: Target) {
        self.placement.push(PlacementTarget {
            attribute,
            regex,
            target,
        });
    }

    pub fn build(mut self) -> Matcher {
        self.cmdline.sort_by_key(|c| c.target.priority);
        self.placement.sort_by_key(|p| p.target.priority);

        // Literal -> cmdline target indices, ascending (so priority order).
        let mut literal_ids: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut candidates: Vec<Vec<u32>> = Vec::new();
        let mut always = Vec::new();
        for (index, entry) in self.cmdline.iter().enumerate() {
            let index = index as u32;
            match required_literals(entry.regex.as_str()) {
                Some(set) => {
                    for literal in set {
                        let id = *literal_ids.entry(literal.clone()).or_insert_with(|| {
                            literals.push(literal);
                            candidates.push(Vec::new());
                            literals.len() - 1
                        });
                        if candidates[id].last() != Some(&index) {
                            candidates[id].push(index);
                        }
                    }
                }
                None => always.push(index),
            }
        }

        let prefilter = if literals.is_empty() {
            None
        } else {
            match LiteralSet::new(literals) {
                Some(set) => Some(set),
                // No scanner could be built (it would have to be absurdly
                // large): degrade to running every regex, slow but correct.
                None => {
                    always = (0..self.cmdline.len() as u32).collect();
                    candidates.clear();
                    None
                }
            }
        };

        let first_cmdline_priority = self.cmdline.first().map_or(u32::MAX, |c| c.target.priority);
        let first_placement_priority = self
            .placement
            .first()
            .map_or(u32::MAX, |p| p.target.priority);
        Matcher {
            exact: self.exact,
            placement: self.placement,
            first_placement_priority,
            regexes: self.cmdline.iter().map(|c| c.regex.clone()).collect(),
            cmdline_targets: self.cmdline.iter().map(|c| c.target).collect(),
            first_cmdline_priority,
            prefilter,
            candidates: candidates.into_iter().map(Vec::into_boxed_slice).collect(),
            always,
        }
    }
}

/// The compiled matcher. Immutable, so it is shared between threads freely.
pub(crate) struct Matcher {
    exact: NameMap,
    /// In priority order.
    placement: Vec<PlacementTarget>,
    first_placement_priority: u32,
    /// Cmdline regexes and their targets, parallel, in priority order.
    regexes: Vec<Regex>,
    cmdline_targets: Vec<Target>,
    first_cmdline_priority: u32,
    prefilter: Option<LiteralSet>,
    /// For each prefilter literal, the cmdline indices it makes candidates.
    candidates: Vec<Box<[u32]>>,
    /// Cmdline indices with no usable literal: always candidates.
    always: Vec<u32>,
}

impl Matcher {
    /// Finds the winning target. `cmdline` may be raw; it is normalized
    /// (see `Classifier::classify`) only if it has to be looked at.
    pub fn find(
        &self,
        comm: &str,
        exe: &str,
        cmdline: &str,
        placement: &Placement,
    ) -> Option<(Target, MatchedBy)> {
        let mut best = self.find_name(comm, exe);
        let mut limit = best.map_or(u32::MAX, |(t, _)| t.priority);
        if self.first_placement_priority < limit && !placement.is_empty() {
            if let Some(found) = self.find_placement(placement, limit) {
                best = Some(found);
                limit = found.0.priority;
            }
        }
        if !self.cmdline_can_beat(limit) {
            return best;
        }
        let cmdline = normalize_cmdline(cmdline);
        self.find_cmdline(&cmdline, limit)
            .map(|t| (t, MatchedBy::Cmdline))
            .or(best)
    }

    /// The best target matched by name, if any.
    fn find_name(&self, comm: &str, exe: &str) -> Option<(Target, MatchedBy)> {
        let by_comm = self.exact.get(comm).map(|t| (*t, MatchedBy::Comm));
        // Usually the exe basename is the comm; one probe then suffices.
        let by_exe = if exe == comm {
            None
        } else {
            self.exact.get(exe).map(|t| (*t, MatchedBy::Exe))
        };
        // On a tie (two names of one rule) report the comm.
        match (by_comm, by_exe) {
            (Some(c), Some(e)) if e.0.priority < c.0.priority => Some(e),
            (Some(c), _) => Some(c),
            (None, e) => e,
        }
    }

    /// The best placement target with priority below `limit`, if any
    /// matches.
    fn find_placement(&self, placement: &Placement, limit: u32) -> Option<(Target, MatchedBy)> {
        self.placement
            .iter()
            .take_while(|p| p.target.priority < limit)
            .find(|p| {
                placement
                    .get(p.attribute)
                    .is_some_and(|v| p.regex.is_match(v))
            })
            .map(|p| (p.target, MatchedBy::Placement(p.attribute)))
    }

    /// Whether some cmdline target outranks `limit`, i.e. whether looking at
    /// the cmdline can change the outcome at all.
    fn cmdline_can_beat(&self, limit: u32) -> bool {
        self.first_cmdline_priority < limit
    }

    /// The best cmdline target with priority below `limit`, if any matches.
    /// `cmdline` must be normalized (no NULs); see `Classifier::classify`.
    fn find_cmdline(&self, cmdline: &str, limit: u32) -> Option<Target> {
        // Only targets that could beat `limit` are worth a regex search;
        // since they are sorted, that is a prefix.
        let n = self.cmdline_targets.partition_point(|t| t.priority < limit);
        let mut marked = Bits::new(n);
        for &i in self.always.iter().take_while(|&&i| (i as usize) < n) {
            marked.set(i as usize);
        }
        if let Some(prefilter) = &self.prefilter {
            prefilter.for_each_present(cmdline.as_bytes(), |literal| {
                let targets = &self.candidates[literal];
                for &i in targets.iter().take_while(|&&i| (i as usize) < n) {
                    marked.set(i as usize);
                }
            });
        }
        let winner = marked.ones().find(|&i| self.regexes[i].is_match(cmdline));
        winner.map(|i| self.cmdline_targets[i])
    }

    /// The cmdline patterns the prefilter cannot rule out, which therefore
    /// run on every cmdline. Tests keep this empty for the built-ins.
    #[cfg(test)]
    pub fn unfiltered_cmdline_patterns(&self) -> Vec<&str> {
        self.always
            .iter()
            .map(|&i| self.regexes[i as usize].as_str())
            .collect()
    }
}

/// A bit per cmdline target. Lives on the stack for up to 512 targets (the
/// built-ins use a fraction), so classifying allocates nothing; a huge user
/// rule set spills to the heap rather than failing.
enum Bits {
    Inline([u64; INLINE_WORDS]),
    Heap(Vec<u64>),
}

const INLINE_WORDS: usize = 8;

impl Bits {
    fn new(bits: usize) -> Bits {
        let words = bits.div_ceil(64);
        if words <= INLINE_WORDS {
            Bits::Inline([0; INLINE_WORDS])
        } else {
            Bits::Heap(vec![0; words])
        }
    }

    fn words(&self) -> &[u64] {
        match self {
            Bits::Inline(words) => words,
            Bits::Heap(words) => words,
        }
    }

    fn set(&mut self, i: usize) {
        let words = match self {
            Bits::Inline(words) => &mut words[..],
            Bits::Heap(words) => &mut words[..],
        };
        words[i / 64] |= 1 << (i % 64);
    }

    /// Set bits in ascending order, i.e. candidates in priority order.
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words().iter().enumerate().flat_map(|(index, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(index * 64 + bit)
            })
        })
    }
}

type NameMap = HashMap<Box<str>, Target, BuildHasherDefault<NameHasher>>;

/// A small multiplicative hash for process names.
///
/// SipHash, the std default, defends against attackers who choose the keys
/// *inserted* into a table. Here the keys are fixed at load time and the
/// attacker-controlled names (any user can pick a comm) are only looked up,
/// which cannot lengthen a probe sequence, so the defence buys nothing and
/// SipHash would cost more than the rest of a classification.
#[derive(Default)]
struct NameHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl NameHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        // The table indexes buckets with the low bits and tags with the top
        // ones; a multiply only mixes upwards, so fold the high half down.
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(SEED) ^ (h >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Matcher {
        fn find_any(&self, comm: &str, exe: &str, cmdline: &str) -> Option<(Target, MatchedBy)> {
            self.find(comm, exe, cmdline, &Placement::default())
        }
    }

    fn target(priority: u32) -> Target {
        Target {
            priority,
            rule: priority,
            pattern: 0,
        }
    }

    #[test]
    fn smallest_priority_wins_whatever_the_insertion_order() {
        let mut b = MatcherBuilder::default();
        b.cmdline(Regex::new("kafka").unwrap(), target(7));
        b.cmdline(Regex::new(r"kafka\.Kafka").unwrap(), target(3));
        b.exact("java", target(5));
        b.exact("java", target(9));
        let m = b.build();
        let cmd = "java -cp kafka.jar kafka.Kafka";
        assert_eq!(
            m.find_any("java", "", cmd),
            Some((target(3), MatchedBy::Cmdline))
        );
        assert_eq!(
            m.find_any("java", "", "java Foo"),
            Some((target(5), MatchedBy::Comm))
        );
        assert_eq!(
            m.find_any("x", "java", "kafka"),
            Some((target(5), MatchedBy::Exe))
        );
        assert_eq!(
            m.find_any("x", "y", "kafka"),
            Some((target(7), MatchedBy::Cmdline))
        );
        assert_eq!(m.find_any("x", "y", "z"), None);
    }

    #[test]
    fn placement_ranks_by_priority_and_needs_a_value() {
        let anchored = |s: &str| Regex::new(&format!("^(?:{s})$")).unwrap();
        let mut b = MatcherBuilder::default();
        b.exact("nginx", target(2));
        b.placement(Attribute::Unit, anchored("web.*"), target(1));
        b.placement(Attribute::User, anchored("www-data"), target(4));
        b.placement(Attribute::Cgroup, anchored("/.*"), target(6));
        b.cmdline(Regex::new("nginx").unwrap(), target(3));
        let m = b.build();
        let unit = Placement {
            unit: Some("web-1.service"),
            user: Some("www-data"),
            ..Placement::default()
        };
        // A better placement beats the name; a worse one does not.
        assert_eq!(
            m.find("nginx", "nginx", "nginx", &unit),
            Some((target(1), MatchedBy::Placement(Attribute::Unit)))
        );
        let user = Placement {
            user: Some("www-data"),
            ..Placement::default()
        };
        assert_eq!(
            m.find("nginx", "nginx", "", &user),
            Some((target(2), MatchedBy::Comm))
        );
        // Placement beats a worse cmdline pattern, loses to a better one.
        assert_eq!(
            m.find("x", "x", "nginx", &user),
            Some((target(3), MatchedBy::Cmdline))
        );
        assert_eq!(
            m.find("x", "x", "", &user),
            Some((target(4), MatchedBy::Placement(Attribute::User)))
        );
        // Whole values only, and an unknown value matches nothing.
        let partial = Placement {
            user: Some("www-data2"),
            unit: Some("a-web.service"),
            ..Placement::default()
        };
        assert_eq!(m.find("x", "x", "", &partial), None);
        let cgroup = Placement {
            cgroup: Some("/system.slice"),
            ..Placement::default()
        };
        assert_eq!(
            m.find("x", "x", "", &cgroup),
            Some((target(6), MatchedBy::Placement(Attribute::Cgroup)))
        );
    }

    #[test]
    fn overlapping_literals_are_all_seen() {
        // "abcd" and "bc" overlap; a non-overlapping scan would report only
        // one of them.
        let mut b = MatcherBuilder::default();
        b.cmdline(Regex::new("abcd").unwrap(), target(2));
        b.cmdline(Regex::new("bc$").unwrap(), target(1));
        let m = b.build();
        assert_eq!(m.find_any("", "", "xabcd").map(|h| h.0), Some(target(2)));
        assert_eq!(m.find_any("", "", "xabc").map(|h| h.0), Some(target(1)));
    }

    #[test]
    fn regexes_without_literals_always_run() {
        let mut b = MatcherBuilder::default();
        b.cmdline(Regex::new(r"(?i)KAFKA").unwrap(), target(1));
        let m = b.build();
        assert_eq!(m.unfiltered_cmdline_patterns(), ["(?i)KAFKA"]);
        assert_eq!(m.find_any("", "", "kafka").map(|h| h.0), Some(target(1)));
    }

    #[test]
    fn many_targets_spill_to_the_heap() {
        let mut b = MatcherBuilder::default();
        for i in 0..1000 {
            b.cmdline(Regex::new(&format!("needle{i:04}x")).unwrap(), target(i));
        }
        let m = b.build();
        assert_eq!(
            m.find_any("", "", "a needle0999x b").map(|h| h.0),
            Some(target(999))
        );
        assert_eq!(
            m.find_any("", "", "needle0998x needle0042x").map(|h| h.0),
            Some(target(42))
        );
    }

    #[test]
    fn bits_iterate_in_order() {
        let mut bits = Bits::new(600);
        for i in [599, 0, 64, 63, 300] {
            bits.set(i);
        }
        assert_eq!(bits.ones().collect::<Vec<_>>(), [0, 63, 64, 300, 599]);
    }
}
