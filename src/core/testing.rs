//! Helpers for testing collectors against fixture trees.
//!
//! A collector test builds the collector, runs it once against a fixture
//! `/proc` or `/sys` tree, and asserts exact values:
//!
//! ```ignore
//! let paths = Paths { procfs: "tests/fixtures/proc".into(), ..Paths::default() };
//! let out = herakles_core::testing::collect_once::<MyCollector>(Default::default(), paths).unwrap();
//! assert_eq!(out.value("my_metric", &[("device", "sda")]), Some(42.0));
//! ```

use std::sync::Arc;

use crate::{BuildCollector, BuildContext, Collector, MetricSink, Paths, Result, ScrapeContext};

/// The variable naming the file [`skip`] appends to. `scripts/test.sh`
/// sets it and lists the file after the run. Not `HERAKLES_*`: those are
/// the exporter's configuration, and the exporters the tests start inherit
/// the variable.
pub const SKIP_LOG_VARIABLE: &str = "TEST_SKIP_LOG";

/// Say that the running test cannot do its work here and returns early
/// (no BTF, no privilege, no tool): on standard error, and as a line of
/// the file named by [`SKIP_LOG_VARIABLE`] when it is set.
///
/// A test that returns early passes, and the test harness hides the output
/// of passing tests, so a skip would otherwise go unseen in a green run;
/// the file lets the test script print every skip after the run. Call it,
/// then return from the test.
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let line = format!("SKIPPED {test}: {reason}");
    eprintln!("\n*** {line} ***\n");
    if let Some(path) = std::env::var_os(SKIP_LOG_VARIABLE) {
        use std::io::Write as _;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            eprintln!("cannot record the skip in {}: {e}", path.to_string_lossy());
        }
    }
}

/// One sample: metric name, labels in output order, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// The samples of one collection, parsed back from the exposition text.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The raw exposition text.
    pub text: String,
    /// Every sample: name, labels (in output order), value.
    pub samples: Vec<Sample>,
    /// Parse errors the collector recorded.
    pub parse_errors: u64,
}

impl Collected {
    /// The value of the sample with exactly these labels (any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
    }

    /// How many samples a family has.
    pub fn count(&self, name: &str) -> usize {
        self.samples.iter().filter(|(n, _, _)| n == name).count()
    }

    /// True when no sample of the family exists.
    pub fn absent(&self, name: &str) -> bool {
        self.count(name) == 0
    }
}

/// Build collector `C` with `config` and run it once under `paths`.
pub fn collect_once<C: BuildCollector>(config: C::Config, paths: Paths) -> Result<Collected> {
    let ctx = BuildContext::new(paths.clone(), Arc::new(()));
    let collector = C::build(config, &ctx)?;
    collect_with(&collector, paths)
}

/// Run an already built collector once under `paths`.
pub fn collect_with(collector: &dyn Collector, paths: Paths) -> Result<Collected> {
    let ctx = ScrapeContext::new(Arc::new(paths));
    let mut sink = MetricSink::new();
    collector.collect(&ctx, &mut sink)?;
    Ok(parse(sink.to_text(), sink.parse_errors()))
}

/// Parse exposition text as written by [`MetricSink`] (the exact inverse of
/// its escaping), e.g. a whole scrape body.
pub fn parse_text(text: &str) -> Collected {
    parse(text.to_string(), 0)
}

fn parse(text: String, parse_errors: u64) -> Collected {
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(parse_line)
        .collect();
    Collected {
        text,
        samples,
        parse_errors,
    }
}

/// Parse one sample line of our own output (label values escaped as the
/// writer escapes them).
fn parse_line(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().expect("sample value parses"),
    };
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_string(), Vec::new(), value);
    };
    let mut labels = Vec::new();
    let mut chars = rest.strip_suffix('}').expect("closing brace").chars();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(c) => val.push(c),
                    None => break,
                },
                '"' => break,
                c => val.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_string(), val));
    }
    (name.to_string(), labels, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Desc;

    #[test]
    fn parses_back_escaped_labels() {
        let mut sink = MetricSink::new();
        sink.family(&Desc::gauge("m", "h"))
            .sample(&[("a", "x\"y,z=\\w\nv"), ("b", "")], 2.5);
        let c = parse(sink.to_text(), 0);
        assert_eq!(
            c.value("m", &[("b", ""), ("a", "x\"y,z=\\w\nv")]),
            Some(2.5)
        );
    }
}
