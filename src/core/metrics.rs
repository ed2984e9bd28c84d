//! Writing samples in the Prometheus text exposition format (0.0.4).
//!
//! We write text directly instead of building `prometheus::proto` structures:
//! a scrape of a busy host emits tens of thousands of per-process samples, and
//! one `String` per family with in-place escaping costs far less than an
//! allocation per label pair.
//!
//! All escaping happens here, once. Label values may come from anything a
//! process controls (its name, its command line), so every value goes through
//! [`escape_label_value`]; nothing else is needed for the output to stay valid.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The type line of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    /// Written with [`Family::histogram`]: `_bucket`, `_sum` and `_count`
    /// samples under one family name.
    Histogram,
    /// Written with [`Family::summary`]: quantile, `_sum` and `_count`
    /// samples under one family name. The exporter's own collectors use
    /// histograms (they aggregate across hosts); summaries exist for what
    /// others computed, such as textfile input.
    Summary,
    Untyped,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }
}

/// The name, help and type of a metric family.
///
/// Usually a `const` next to the collector that emits it, so the names a
/// collector exposes can be read at the top of its file.
#[derive(Debug, Clone)]
pub struct Desc {
    pub name: Cow<'static, str>,
    pub help: Cow<'static, str>,
    pub kind: MetricType,
}

impl Desc {
    /// A gauge: a value that can go up and down.
    pub const fn gauge(name: &'static str, help: &'static str) -> Desc {
        Desc {
            name: Cow::Borrowed(name),
            help: Cow::Borrowed(help),
            kind: MetricType::Gauge,
        }
    }

    /// A counter: monotonic since some start; its name should end in `_total`.
    pub const fn counter(name: &'static str, help: &'static str) -> Desc {
        Desc {
            name: Cow::Borrowed(name),
            help: Cow::Borrowed(help),
            kind: MetricType::Counter,
        }
    }

    /// A histogram: a distribution of observations, written with
    /// [`Family::histogram`]; its name should carry the unit (`_seconds`).
    pub const fn histogram(name: &'static str, help: &'static str) -> Desc {
        Desc {
            name: Cow::Borrowed(name),
            help: Cow::Borrowed(help),
            kind: MetricType::Histogram,
        }
    }

    /// A summary: quantiles computed by whoever observed, written with
    /// [`Family::summary`].
    pub const fn summary(name: &'static str, help: &'static str) -> Desc {
        Desc {
            name: Cow::Borrowed(name),
            help: Cow::Borrowed(help),
            kind: MetricType::Summary,
        }
    }
}

struct FamilyBuf {
    name: Cow<'static, str>,
    help: Cow<'static, str>,
    kind: MetricType,
    body: String,
}

/// Where a collector writes its samples.
///
/// Samples of one family are kept together however the collector interleaves
/// its writes, because the text format requires a family's samples to be
/// contiguous.
#[derive(Default)]
pub struct MetricSink {
    families: Vec<FamilyBuf>,
    parse_errors: u64,
}

impl MetricSink {
    pub fn new() -> MetricSink {
        MetricSink::default()
    }

    /// Open (or reopen) a family to add samples to it.
    pub fn family(&mut self, desc: &Desc) -> Family<'_> {
        debug_assert!(
            valid_metric_name(&desc.name),
            "invalid metric name {}",
            desc.name
        );
        // Collectors emit a handful of families each; a linear scan beats
        // hashing at this size.
        let idx = match self.families.iter().position(|f| f.name == desc.name) {
            Some(i) => i,
            None => {
                self.families.push(FamilyBuf {
                    name: desc.name.clone(),
                    help: desc.help.clone(),
                    kind: desc.kind,
                    body: String::new(),
                });
                self.families.len() - 1
            }
        };
        Family {
            buf: &mut self.families[idx],
        }
    }

    /// Write one unlabelled sample.
    pub fn single(&mut self, desc: &Desc, value: f64) {
        self.family(desc).sample(&[], value);
    }

    /// Record that an input line or file could not be parsed and was skipped.
    ///
    /// The exporter exposes the running count as
    /// `herakles_collector_parse_errors_total{collector}`, so skipped input is
    /// visible without making the whole collector fail.
    pub fn parse_error(&mut self) {
        self.parse_errors += 1;
    }

    /// How many parse errors were recorded.
    pub fn parse_errors(&self) -> u64 {
        self.parse_errors
    }

    /// Names of the families with at least one sample.
    pub fn family_names(&self) -> impl Iterator<Item = &str> {
        self.families
            .iter()
            .filter(|f| !f.body.is_empty())
            .map(|f| f.name.as_ref())
    }

    /// Move all families of `other` into `self`. A family present in both
    /// gets `other`'s samples appended (types must agree; a family whose type
    /// disagrees is dropped and reported in the returned list).
    pub fn merge(&mut self, other: MetricSink) -> Vec<String> {
        let mut conflicts = Vec::new();
        self.parse_errors += other.parse_errors;
        for fam in other.families {
            match self.families.iter_mut().find(|f| f.name == fam.name) {
                Some(existing) if existing.kind == fam.kind => existing.body.push_str(&fam.body),
                Some(_) => conflicts.push(fam.name.into_owned()),
                None => self.families.push(fam),
            }
        }
        conflicts
    }

    /// Append the exposition text of every non-empty family to `out`.
    ///
    /// A family without samples writes nothing at all: an unavailable source
    /// means absent series, not a lonely `# TYPE` line.
    pub fn encode(&self, out: &mut String) {
        for fam in &self.families {
            if fam.body.is_empty() {
                continue;
            }
            out.push_str("# HELP ");
            out.push_str(&fam.name);
            out.push(' ');
            escape_help(&fam.help, out);
            out.push_str("\n# TYPE ");
            out.push_str(&fam.name);
            out.push(' ');
            out.push_str(fam.kind.as_str());
            out.push('\n');
            out.push_str(&fam.body);
        }
    }

    /// The exposition text of this sink alone.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.encode(&mut s);
        s
    }
}

/// An open family; see [`MetricSink::family`].
pub struct Family<'a> {
    buf: &'a mut FamilyBuf,
}

impl Family<'_> {
    /// Add a sample with the given labels.
    ///
    /// Label names must be valid Prometheus label names (they are constants in
    /// collector code); label values may be any string and are escaped here.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.line("", labels, None, value);
    }

    /// Add one summary series: `quantiles` are (quantile in 0..=1, value)
    /// pairs, written in the order given. Open the family with a
    /// [`Desc::summary`].
    pub fn summary(
        &mut self,
        labels: &[(&str, &str)],
        quantiles: &[(f64, f64)],
        sum: f64,
        count: u64,
    ) {
        debug_assert_eq!(self.buf.kind, MetricType::Summary);
        let mut q = String::new();
        for &(quantile, value) in quantiles {
            q.clear();
            write_value(quantile, &mut q);
            self.line("", labels, Some(("quantile", &q)), value);
        }
        self.line("_sum", labels, None, sum);
        self.line("_count", labels, None, count as f64);
    }

    /// Add one histogram series: `buckets` are (upper bound, cumulative
    /// count) pairs in increasing bound order, without the `+Inf` bucket,
    /// which is written from `count`. Open the family with a
    /// [`Desc::histogram`].
    pub fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) {
        debug_assert_eq!(self.buf.kind, MetricType::Histogram);
        let mut le = String::new();
        for &(bound, n) in buckets {
            le.clear();
            write_value(bound, &mut le);
            self.line("_bucket", labels, Some(("le", &le)), n as f64);
        }
        self.line("_bucket", labels, Some(("le", "+Inf")), count as f64);
        self.line("_sum", labels, None, sum);
        self.line("_count", labels, None, count as f64);
    }

    /// One sample line: the family name plus `suffix`, the labels and, for
    /// histogram buckets and summary quantiles, `le` or `quantile` last.
    fn line(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        last: Option<(&str, &str)>,
        value: f64,
    ) {
        let body = &mut self.buf.body;
        body.push_str(&self.buf.name);
        body.push_str(suffix);
        if !labels.is_empty() || last.is_some() {
            body.push('{');
            for (i, (k, v)) in labels.iter().chain(last.iter()).enumerate() {
                debug_assert!(valid_label_name(k), "invalid label name {k}");
                if i > 0 {
                    body.push(',');
                }
                body.push_str(k);
                body.push_str("=\"");
                escape_into(v, body);
                body.push('"');
            }
            body.push('}');
        }
        body.push(' ');
        write_value(value, body);
        body.push('\n');
    }
}

fn write_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Whole numbers (byte and event counts, the common case) print
        // without a trailing ".0" and without float formatting cost.
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Escape a label value for the text format: backslash, double quote and
/// line feed are the only characters that need it.
pub fn escape_label_value(v: &str) -> Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(v);
    }
    let mut s = String::with_capacity(v.len() + 8);
    escape_into(v, &mut s);
    Cow::Owned(s)
}

fn escape_into(v: &str, out: &mut String) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`), for
/// names that come from input rather than from code (the textfile
/// collector's files).
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`); see
/// [`valid_metric_name`].
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Desc = Desc::gauge("test_gauge", "A gauge.\nSecond line \\ here.");
    const C: Desc = Desc::counter("test_total", "A counter.");

    #[test]
    fn families_stay_contiguous_and_escape() {
        let mut sink = MetricSink::new();
        sink.family(&G).sample(&[("name", "a\"b\\c\nd")], 1.5);
        sink.single(&C, 3.0);
        sink.family(&G).sample(&[("name", "plain")], f64::NAN);
        let text = sink.to_text();
        assert_eq!(
            text,
            "# HELP test_gauge A gauge.\\nSecond line \\\\ here.\n\
             # TYPE test_gauge gauge\n\
             test_gauge{name=\"a\\\"b\\\\c\\nd\"} 1.5\n\
             test_gauge{name=\"plain\"} NaN\n\
             # HELP test_total A counter.\n\
             # TYPE test_total counter\n\
             test_total 3\n"
        );
    }

    #[test]
    fn empty_families_are_omitted() {
        let mut sink = MetricSink::new();
        sink.family(&G);
        assert_eq!(sink.to_text(), "");
    }

    #[test]
    fn values_format() {
        let mut s = String::new();
        for v in [0.0, -2.0, 1e20, 0.25, f64::INFINITY, f64::NEG_INFINITY] {
            write_value(v, &mut s);
            s.push(' ');
        }
        assert_eq!(s, "0 -2 100000000000000000000 0.25 +Inf -Inf ");
    }

    #[test]
    fn histogram_writes_buckets_sum_and_count() {
        let mut sink = MetricSink::new();
        sink.family(&Desc::histogram("test_seconds", "H."))
            .histogram(&[("k", "v")], &[(0.5, 1), (1.0, 3)], 2.25, 4);
        assert_eq!(
            sink.to_text(),
            "# HELP test_seconds H.\n\
             # TYPE test_seconds histogram\n\
             test_seconds_bucket{k=\"v\",le=\"0.5\"} 1\n\
             test_seconds_bucket{k=\"v\",le=\"1\"} 3\n\
             test_seconds_bucket{k=\"v\",le=\"+Inf\"} 4\n\
             test_seconds_sum{k=\"v\"} 2.25\n\
             test_seconds_count{k=\"v\"} 4\n"
        );
    }

    #[test]
    fn summary_writes_quantiles_sum_and_count() {
        let mut sink = MetricSink::new();
        let mut f = sink.family(&Desc::summary("test_seconds", "S."));
        f.summary(&[("k", "v")], &[(0.5, 0.125), (0.99, 2.0)], 9.5, 40);
        f.summary(&[], &[], 1.0, 1);
        assert_eq!(
            sink.to_text(),
            "# HELP test_seconds S.\n\
             # TYPE test_seconds summary\n\
             test_seconds{k=\"v\",quantile=\"0.5\"} 0.125\n\
             test_seconds{k=\"v\",quantile=\"0.99\"} 2\n\
             test_seconds_sum{k=\"v\"} 9.5\n\
             test_seconds_count{k=\"v\"} 40\n\
             test_seconds_sum 1\n\
             test_seconds_count 1\n"
        );
    }

    #[test]
    fn merge_appends_and_reports_type_conflicts() {
        let mut a = MetricSink::new();
        a.single(&G, 1.0);
        let mut b = MetricSink::new();
        b.family(&G).sample(&[("x", "y")], 2.0);
        b.single(&Desc::gauge("test_total", "wrong type"), 1.0);
        let mut c = MetricSink::new();
        c.single(&C, 1.0);
        a.merge(c);
        let conflicts = a.merge(b);
        assert_eq!(conflicts, vec!["test_total".to_string()]);
        assert!(a
            .to_text()
            .contains("test_gauge 1\ntest_gauge{x=\"y\"} 2\n"));
    }
}
