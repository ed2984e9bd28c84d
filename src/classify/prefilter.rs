//! Finding which of a set of literals occur anywhere in a cmdline.
//!
//! This is the hot loop of cmdline classification: a JVM's cmdline is a
//! classpath of kilobytes, and it is scanned in full (a main class comes
//! last). The obvious tool, one Aho-Corasick automaton searched with
//! overlapping semantics, walks the automaton byte by byte: overlapping
//! search requires [`MatchKind::Standard`], and the crate only accelerates
//! leftmost searches with its SIMD "Teddy" prefilter. Teddy in turn handles
//! at most 64 literals (and is at its best with 32), and the built-in
//! rules have well over a hundred.
//!
//! So the literals are split into chunks of at most 32, each searched with a
//! Teddy-backed [`packed::Searcher`] (or, where Teddy is unavailable, a
//! leftmost-first automaton). A leftmost search reports one literal per
//! start position and skips past it, which would lose literals that overlap
//! or share a start; two adjustments make the scan exhaustive:
//!
//! * after a match at `p`, the next search starts at `p + 1`, so every
//!   position where some literal starts is visited;
//! * at each such position, every literal of the chunk with that first byte
//!   is compared directly, so literals sharing a start are all found.
//!
//! Matches are rare in practice (a handful per cmdline), so the verification
//! costs little and the scan runs at Teddy speed, several times faster than
//! the automaton walk.

use aho_corasick::{packed, AhoCorasick, AhoCorasickKind, Input, MatchKind, Span};

/// Literals per Teddy searcher. Teddy takes up to 64, but past 32 it
/// switches to its "fat" variant, which scans half as many bytes per step
/// and shares each fingerprint bucket among more literals (so more false
/// candidates to verify). On classpath-heavy cmdlines, several slim
/// searchers measured faster than fewer fat ones.
const CHUNK_MAX: usize = 32;

/// Length of the prefix ("key") the searchers look for; see `new`.
const KEY_LEN: usize = 8;

/// A searchable set of non-empty literals, identified by their index in the
/// vector they were built from.
pub(crate) struct LiteralSet {
    literals: Vec<Box<[u8]>>,
    chunks: Vec<Chunk>,
    /// No literal fits in a shorter haystack (kernel threads have empty
    /// cmdlines), so such haystacks skip the searchers altogether.
    shortest: usize,
}

struct Chunk {
    engine: Engine,
    /// This chunk's literal ids grouped by first byte: the ids starting with
    /// byte `b` are `ids[bucket[b]..bucket[b + 1]]`.
    bucket: Box<[u32]>,
    ids: Box<[u32]>,
}

enum Engine {
    Packed(packed::Searcher),
    Automaton(AhoCorasick),
}

impl Engine {
    fn build(literals: &[&[u8]]) -> Option<Engine> {
        let mut packed = packed::Config::new()
            .match_kind(packed::MatchKind::LeftmostFirst)
            .builder();
        packed.extend(literals);
        if let Some(searcher) = packed.build() {
            return Some(Engine::Packed(searcher));
        }
        let automaton = |kind| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .kind(kind)
                .build(literals)
                .ok()
        };
        automaton(Some(AhoCorasickKind::DFA))
            .or_else(|| automaton(None))
            .map(Engine::Automaton)
    }

    /// The leftmost position at or after `at` where some literal starts.
    fn next_start(&self, haystack: &[u8], at: usize) -> Option<usize> {
        let span = Span::from(at..haystack.len());
        let found = match self {
            Engine::Packed(searcher) => searcher.find_in(haystack, span),
            Engine::Automaton(ac) => ac.find(Input::new(haystack).span(span)),
        };
        found.map(|m| m.start())
    }
}

impl LiteralSet {
    /// Builds the set. `None` if no search engine could be built for the
    /// literals (only conceivable for absurdly many); callers then have to
    /// assume every literal may be present.
    pub fn new(literals: Vec<Vec<u8>>) -> Option<LiteralSet> {
        debug_assert!(literals.iter().all(|l| !l.is_empty()));
        let literals: Vec<Box<[u8]>> = literals.into_iter().map(Vec::into_boxed_slice).collect();

        // Searchers look for literal *prefixes* ("keys"), and the bucket
        // check below confirms whole literals. Literals sharing a key (two
        // dozen built-in main classes start with `org.apache.`) then cost
        // one searcher pattern, not one each.
        let mut groups: Vec<(&[u8], Vec<u32>)> = Vec::new();
        for (id, literal) in literals.iter().enumerate() {
            let key = &literal[..literal.len().min(KEY_LEN)];
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, ids)) => ids.push(id as u32),
                None => groups.push((key, vec![id as u32])),
            }
        }
        // Teddy fingerprints the first bytes of the shortest key in its set,
        // so ordering by length keeps long keys together in selective chunks.
        groups.sort_by_key(|(key, _)| std::cmp::Reverse(key.len()));
        let chunk_count = groups.len().div_ceil(CHUNK_MAX);
        let chunk_len = groups.len().div_ceil(chunk_count.max(1)).max(1);

        let mut chunks = Vec::with_capacity(chunk_count);
        for chunk_groups in groups.chunks(chunk_len) {
            let keys: Vec<&[u8]> = chunk_groups.iter().map(|(key, _)| *key).collect();
            let engine = Engine::build(&keys)?;
            let mut ids: Vec<u32> = chunk_groups
                .iter()
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect();
            ids.sort_by_key(|&id| literals[id as usize][0]);
            let mut bucket = vec![0u32; 257];
            for &id in &ids {
                bucket[usize::from(literals[id as usize][0]) + 1] += 1;
            }
            for b in 0..256 {
                bucket[b + 1] += bucket[b];
            }
            chunks.push(Chunk {
                engine,
                bucket: bucket.into_boxed_slice(),
                ids: ids.into_boxed_slice(),
            });
        }
        let shortest = literals.iter().map(|l| l.len()).min().unwrap_or(0);
        Some(LiteralSet {
            literals,
            chunks,
            shortest,
        })
    }

    /// Calls `found` with the id of every literal occurring in `haystack`,
    /// once per occurrence.
    pub fn for_each_present(&self, haystack: &[u8], mut found: impl FnMut(usize)) {
        if haystack.len() < self.shortest {
            return;
        }
        for chunk in &self.chunks {
            let mut at = 0;
            while let Some(start) = chunk.engine.next_start(haystack, at) {
                let rest = &haystack[start..];
                let b = usize::from(rest[0]);
                let same_first_byte = chunk.bucket[b] as usize..chunk.bucket[b + 1] as usize;
                for &id in &chunk.ids[same_first_byte] {
                    if rest.starts_with(&self.literals[id as usize]) {
                        found(id as usize);
                    }
                }
                at = start + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(literals: &[&str], haystack: &str) -> Vec<usize> {
        let set =
            LiteralSet::new(literals.iter().map(|l| l.as_bytes().to_vec()).collect()).unwrap();
        let mut ids = Vec::new();
        set.for_each_present(haystack.as_bytes(), |id| ids.push(id));
        ids.sort();
        ids.dedup();
        ids
    }

    #[test]
    fn finds_overlapping_and_shared_start_literals() {
        let lits = ["java", "javaagent", "agent", "gen", "x"];
        assert_eq!(present(&lits, "-javaagent:/a.jar"), [0, 1, 2, 3]);
        assert_eq!(present(&lits, "xx"), [4]);
        assert_eq!(present(&lits, ""), Vec::<usize>::new());
        assert_eq!(present(&lits, "jav"), Vec::<usize>::new());
    }

    #[test]
    fn literals_sharing_a_key_are_told_apart() {
        let lits = [
            "org.apache.kafka.Kafka",
            "org.apache.zookeeper.Main",
            "org.apache",
            "org.a",
            "rg.apache.zoo",
        ];
        assert_eq!(
            present(&lits, "x org.apache.zookeeper.Main y"),
            [1, 2, 3, 4]
        );
        assert_eq!(present(&lits, "org.apache.kafka"), [2, 3]);
        let set = LiteralSet::new(lits.iter().map(|l| l.as_bytes().to_vec()).collect()).unwrap();
        assert_eq!(set.chunks.len(), 1);
    }

    #[test]
    fn many_literals_are_split_into_chunks() {
        let lits: Vec<String> = (0..300).map(|i| format!("lit{i:03}_")).collect();
        let refs: Vec<&str> = lits.iter().map(String::as_str).collect();
        let set = LiteralSet::new(lits.iter().map(|l| l.as_bytes().to_vec()).collect()).unwrap();
        assert_eq!(set.chunks.len(), 300usize.div_ceil(CHUNK_MAX));
        assert_eq!(present(&refs, "a lit299_ b lit000_ lit150_"), [0, 150, 299]);
    }

    #[test]
    fn short_literals_still_work() {
        // One-byte literals defeat Teddy; the automaton takes over.
        let lits: Vec<String> = (b'a'..=b'z').map(|b| (b as char).to_string()).collect();
        let refs: Vec<&str> = lits.iter().map(String::as_str).collect();
        assert_eq!(present(&refs, "zebra"), [0, 1, 4, 17, 25]);
    }
}
