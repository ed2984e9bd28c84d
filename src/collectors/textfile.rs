//! Metrics from `*.prom` files in a directory: the textfile collector, as
//! in node_exporter.
//!
//! Cron jobs and scripts that have something to report but no server of
//! their own (a backup's last success, packages awaiting upgrade) write it
//! in the text exposition format to `<directory>/<name>.prom`; every scrape
//! reads every such file and serves its samples with ours.
//!
//! The rules follow node_exporter's, so files written for it work here:
//!
//! * Only names ending in `.prom` are read, so a writer can fill
//!   `name.prom.tmp` and rename it into place: a rename is atomic, a file
//!   rewritten in place can be read half-written.
//! * A file that does not parse, or whose samples carry timestamps (a
//!   scraped sample gets the scrape's time; node_exporter refuses them too),
//!   costs that file's samples and nothing else. It sets
//!   `herakles_textfile_scrape_error` to 1, counts in
//!   `herakles_collector_parse_errors_total{collector="textfile"}`, is logged
//!   once (and again when the problem changes) and is named in `/health`.
//! * `herakles_textfile_mtime_seconds{file}` is the modification time of
//!   each file read successfully, so an alert can tell a stale file from a
//!   fresh one. A failed file has none: a failure must not look fresh.
//! * Families of the same name in several files are merged when their type
//!   and help agree; otherwise the later file's family is dropped.
//!
//! Where we differ, we are stricter, because here a bad file must never cost
//! the scrape:
//!
//! * The exporter owns the `herakles_`, `netprobe_` and `process_`
//!   namespaces and the series Prometheus adds itself (`up`, `scrape_*`).
//!   A file's family with such a name is dropped (the rest of the file is
//!   kept): merged into ours it would duplicate or contradict a series.
//!   node_exporter's registry drops such collisions at gather time too.
//! * A file larger than `max_file_kb`, a last line without its line feed
//!   (a writer cut short), a size or mtime that changed while we read (twice
//!   in a row), or a series repeated within a file make the file invalid.
//! * A histogram or summary is checked whole: a histogram needs its `+Inf`
//!   bucket equal to its `_count`, and both need a `_sum` and a `_count`
//!   per series; a series missing one drops its family.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use herakles_core::{
    inventory, valid_label_name, valid_metric_name, BuildCollector, BuildContext, Collector, Desc,
    MetricSink, MetricType, Registration, Result, ScrapeContext,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const MTIME: Desc = Desc::gauge(
    "herakles_textfile_mtime_seconds",
    "Modification time (Unix seconds) of each textfile read successfully in this scrape.",
);
const SCRAPE_ERROR: Desc = Desc::gauge(
    "herakles_textfile_scrape_error",
    "1 if the textfile directory or one of its files could not be read, parsed or merged in this scrape, 0 otherwise.",
);

/// Name prefixes of the families the exporter itself serves.
const RESERVED_PREFIXES: &[&str] = &["herakles_", "netprobe_", "process_"];
/// Series Prometheus attaches to every scrape; a sample of the same name
/// from a file would collide with them in the server.
const RESERVED_NAMES: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "scrape_timeout_seconds",
    "scrape_sample_limit",
    "scrape_body_size_bytes",
];

/// The `collectors.textfile` config section.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TextfileConfig {
    /// Directory whose `*.prom` files are read on every scrape (not
    /// recursively), like node_exporter's `--collector.textfile.directory`.
    /// Empty (the default): nothing is read and the collector emits no
    /// series. Write a file under another name and rename it to `*.prom`,
    /// so a scrape never sees it half-written.
    pub directory: String,
    /// Largest file read, in KiB. A larger file is skipped as an error
    /// rather than read in part; this bounds what one runaway writer can
    /// cost a scrape. At most 1 GiB: past that a textfile is the wrong
    /// tool.
    #[schemars(range(min = 1, max = 1048576))]
    pub max_file_kb: u64,
}

impl Default for TextfileConfig {
    fn default() -> TextfileConfig {
        TextfileConfig {
            directory: String::new(),
            max_file_kb: 1024,
        }
    }
}

/// See the module documentation.
pub struct Textfile {
    directory: Option<PathBuf>,
    max_bytes: u64,
    /// The problem of each path in the last scrape, to log a problem when it
    /// appears or changes instead of on every scrape, and for `/health`.
    problems: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Collector for Textfile {
    fn collect(&self, _: &ScrapeContext, out: &mut MetricSink) -> Result<()> {
        let Some(dir) = &self.directory else {
            return Ok(());
        };
        let mut merged = Merged::default();
        let mut mtimes = Vec::new();
        let mut problems = BTreeMap::new();
        match prom_files(dir) {
            Err(e) => {
                problems.insert(dir.display().to_string(), e);
            }
            Ok(files) => {
                for path in files {
                    let name = path.display().to_string();
                    let read = read_whole(&path, self.max_bytes)
                        .and_then(|(text, mtime)| Ok((parse(&text)?, mtime)));
                    match read {
                        Err(e) => {
                            out.parse_error();
                            problems.insert(name, e);
                        }
                        Ok((families, mtime)) => {
                            let dropped = merged.add(&name, families);
                            if !dropped.is_empty() {
                                out.parse_error();
                                problems.insert(name.clone(), dropped.join("; "));
                            }
                            mtimes.push((name, mtime));
                        }
                    }
                }
            }
        }
        merged.write(out);
        let mut family = out.family(&MTIME);
        for (file, mtime) in &mtimes {
            family.sample(&[("file", file)], *mtime);
        }
        let failed = if problems.is_empty() { 0.0 } else { 1.0 };
        out.single(&SCRAPE_ERROR, failed);
        self.report(problems);
        Ok(())
    }
}

impl Textfile {
    /// Log what changed since the last scrape and keep it for `/health`.
    fn report(&self, now: BTreeMap<String, String>) {
        let mut last = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        for (file, problem) in &now {
            if last.get(file) != Some(problem) {
                tracing::warn!(
                    collector = "textfile",
                    file,
                    problem,
                    "textfile samples dropped"
                );
            }
        }
        for file in last.keys().filter(|f| !now.contains_key(*f)) {
            tracing::info!(collector = "textfile", file, "textfile problem gone");
        }
        *last = now;
    }
}

impl BuildCollector for Textfile {
    type Config = TextfileConfig;
    fn build(config: TextfileConfig, ctx: &BuildContext) -> Result<Self> {
        let directory = (!config.directory.is_empty()).then(|| PathBuf::from(&config.directory));
        let problems: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        if directory.is_some() {
            let shown = problems.clone();
            let dir = config.directory.clone();
            ctx.health_section("textfile", move || {
                let errors = shown.lock().unwrap_or_else(|e| e.into_inner()).clone();
                herakles_core::serde_json::json!({ "directory": dir, "errors": errors })
            });
        }
        Ok(Textfile {
            directory,
            max_bytes: config.max_file_kb.saturating_mul(1024),
            problems,
        })
    }
}

inventory::submit! {
    Registration::new::<Textfile>(
        "textfile",
        "Metrics from *.prom files in collectors.textfile.directory (idle until it is set)",
        true,
        env!("CARGO_PKG_NAME"),
    )
}

/// The `*.prom` entries of `dir`, sorted so the merge order (and so which
/// file wins a conflict) does not depend on the directory's layout.
fn prom_files(dir: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read directory: {e}"))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".prom"))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

/// The whole text of `path` and its mtime, read so that a file being
/// rewritten is noticed: the size and mtime must be the same before and
/// after the read and match what was read. One retry, then it is an error.
///
/// The change time is deliberately not compared: it also moves when the
/// file loses a link, which is exactly what happens to a file we are
/// reading when a writer renames the next version over it. Its content is
/// still whole (an open file's data stays), and a write moves the mtime
/// anyway, so ctime would only turn safe replacements into errors.
fn read_whole(path: &Path, max: u64) -> std::result::Result<(String, f64), String> {
    let unchanged = |a: &Metadata, b: &Metadata| {
        (a.len(), a.mtime(), a.mtime_nsec()) == (b.len(), b.mtime(), b.mtime_nsec())
    };
    for _ in 0..2 {
        let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let before = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
        if !before.is_file() {
            return Err("not a regular file".into());
        }
        let too_big = || format!("larger than max_file_kb ({} KiB)", max / 1024);
        if before.len() > max {
            return Err(too_big());
        }
        let mut buf = Vec::with_capacity(before.len() as usize);
        (&file)
            .take(max + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read: {e}"))?;
        if buf.len() as u64 > max {
            return Err(too_big());
        }
        let after = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
        if unchanged(&before, &after) && buf.len() as u64 == after.len() {
            let text = String::from_utf8(buf).map_err(|_| "not UTF-8 text".to_string())?;
            // Whole seconds, as node_exporter reports them.
            let mtime = after
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs() as f64);
            return Ok((text, mtime));
        }
    }
    Err("changed while being read; write a temporary file and rename it into place".into())
}

/// Label pairs in file order.
type Labels = Vec<(String, String)>;

/// One parsed family of one file.
#[derive(Debug, Clone, PartialEq)]
struct ParsedFamily {
    name: String,
    help: Option<String>,
    kind: Kind,
    /// Whether a TYPE line declared `kind`.
    typed: bool,
    /// (name suffix: "", "_bucket", "_sum" or "_count"; labels; value)
    samples: Vec<(&'static str, Labels, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Untyped,
    Histogram,
    Summary,
}

impl Kind {
    fn from_type(word: &str) -> Option<Kind> {
        Some(match word {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "untyped" => Kind::Untyped,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            _ => return None,
        })
    }

    /// Sample-name suffixes that belong to a family of this kind.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Kind::Histogram => &["_bucket", "_sum", "_count"],
            Kind::Summary => &["_sum", "_count"],
            _ => &[],
        }
    }

    fn metric_type(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
            Kind::Summary => MetricType::Summary,
            Kind::Untyped => MetricType::Untyped,
        }
    }
}

/// Parse one file in the text exposition format (version 0.0.4) as
/// node_exporter's parser reads it. Errors name the line.
fn parse(text: &str) -> std::result::Result<Vec<ParsedFamily>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line has no line feed (was the file cut short?)".into());
    }
    let mut families: Vec<ParsedFamily> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", i + 1);
        if line.trim_matches([' ', '\t']).is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            meta_line(comment, &mut families, &mut by_name).map_err(at)?;
            continue;
        }
        let (name, labels, value) = sample_line(line).map_err(at)?;
        // A histogram's `x_bucket`, `x_sum` and `x_count` belong to `x`
        // when `x` was declared with a TYPE line; anything else is a family
        // of its own name.
        let (idx, suffix) = match by_name.get(&name) {
            Some(&idx) => (idx, ""),
            None => {
                let parent = ["_bucket", "_sum", "_count"].into_iter().find_map(|s| {
                    let idx = *by_name.get(name.strip_suffix(s)?)?;
                    families[idx]
                        .kind
                        .suffixes()
                        .contains(&s)
                        .then_some((idx, s))
                });
                match parent {
                    Some(found) => found,
                    None => (new_family(&name, &mut families, &mut by_name), ""),
                }
            }
        };
        let family = &mut families[idx];
        let quantile = labels.iter().any(|(k, _)| k == "quantile");
        let bare = match family.kind {
            Kind::Histogram => suffix.is_empty(),
            Kind::Summary => suffix.is_empty() && !quantile,
            _ => false,
        };
        if bare {
            return Err(at(format!(
                "sample {name} of a histogram or summary needs a _bucket, _sum or _count suffix or a quantile"
            )));
        }
        family.samples.push((suffix, labels, value));
    }
    for family in &families {
        check_unique(family)?;
    }
    Ok(families)
}

fn new_family(
    name: &str,
    families: &mut Vec<ParsedFamily>,
    by_name: &mut HashMap<String, usize>,
) -> usize {
    families.push(ParsedFamily {
        name: name.to_string(),
        help: None,
        kind: Kind::Untyped,
        typed: false,
        samples: Vec::new(),
    });
    by_name.insert(name.to_string(), families.len() - 1);
    families.len() - 1
}

/// A `# HELP`, `# TYPE` or plain comment line (without its `#`).
fn meta_line(
    comment: &str,
    families: &mut Vec<ParsedFamily>,
    by_name: &mut HashMap<String, usize>,
) -> std::result::Result<(), String> {
    let rest = comment.trim_start_matches([' ', '\t']);
    let (keyword, rest) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(());
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    let (name, arg) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name {name:?} in {keyword} line"));
    }
    let idx = match by_name.get(name) {
        Some(&idx) => idx,
        None => new_family(name, families, by_name),
    };
    let family = &mut families[idx];
    if keyword == "HELP" {
        if family.help.is_some() {
            return Err(format!("second HELP line for {name}"));
        }
        family.help = Some(unescape_help(arg.trim_start_matches([' ', '\t']))?);
    } else {
        let word = arg.trim_matches([' ', '\t']);
        let kind = Kind::from_type(word).ok_or_else(|| format!("unknown type {word:?}"))?;
        if family.typed || !family.samples.is_empty() {
            return Err(format!(
                "TYPE line for {name} after its samples or a second TYPE"
            ));
        }
        family.kind = kind;
        family.typed = true;
    }
    Ok(())
}

/// `name{label="value",...} value [timestamp]`.
fn sample_line(line: &str) -> std::result::Result<(String, Labels, f64), String> {
    let blank = |c: char| c == ' ' || c == '\t';
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..end];
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = line[end..].trim_start_matches(blank);
    let mut labels = Labels::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    let mut fields = rest.split(blank).filter(|f| !f.is_empty());
    let value = fields
        .next()
        .ok_or_else(|| format!("sample {name} has no value"))?;
    let value: f64 = value
        .parse()
        .map_err(|_| format!("invalid value {value:?} for {name}"))?;
    match (fields.next(), fields.next()) {
        (None, _) => Ok((name.to_string(), labels, value)),
        (Some(ts), None) if ts.parse::<i64>().is_ok() => Err(format!(
            "sample {name} has a timestamp; timestamps are not supported (node_exporter refuses them too)"
        )),
        _ => Err(format!("unexpected text after the value of {name}")),
    }
}

/// The label pairs after `{`, up to and including `}`; returns what follows.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Labels) -> std::result::Result<&'a str, String> {
    let blank = |c: char| c == ' ' || c == '\t';
    loop {
        s = s.trim_start_matches(blank);
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("unterminated label set")?;
        let key = &s[..end];
        if !valid_label_name(key) {
            return Err(format!("invalid label name {key:?}"));
        }
        if key.starts_with("__") {
            return Err(format!("label name {key:?} is reserved (starts with __)"));
        }
        if labels.iter().any(|(k, _)| k == key) {
            return Err(format!("label {key:?} appears twice"));
        }
        s = s[end..].trim_start_matches(blank);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("expected '=' after label {key:?}"))?;
        s = s.trim_start_matches(blank);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("expected '\"' to open the value of label {key:?}"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {key:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => {
                        let c = other.map_or(String::new(), |(_, c)| c.to_string());
                        return Err(format!("invalid escape \\{c} in label {key:?}"));
                    }
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = s[close + 1..].trim_start_matches(blank);
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {key:?}"));
        }
    }
}

fn unescape_help(s: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, false) => out.push(c),
            (_, true) => match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => {
                    let c = other.map_or(String::new(), |c| c.to_string());
                    return Err(format!("invalid escape \\{c} in HELP"));
                }
            },
        }
    }
    Ok(out)
}

/// Sorted label pairs: the identity of a series.
fn series_key(name: &str, suffix: &str, labels: &Labels) -> (String, Labels) {
    let mut sorted = labels.clone();
    sorted.sort();
    (format!("{name}{suffix}"), sorted)
}

/// A series twice in one file is not a valid exposition.
fn check_unique(family: &ParsedFamily) -> std::result::Result<(), String> {
    let mut seen = HashSet::new();
    for (suffix, labels, _) in &family.samples {
        if !seen.insert(series_key(&family.name, suffix, labels)) {
            return Err(format!(
                "series {}{suffix}{labels:?} appears twice",
                family.name
            ));
        }
    }
    Ok(())
}

/// One histogram series rebuilt from its `_bucket`, `_sum` and `_count`
/// samples, for [`herakles_core::Family::histogram`].
struct Histogram {
    labels: Labels,
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

/// One summary series rebuilt from its quantile, `_sum` and `_count`
/// samples, for [`herakles_core::Family::summary`].
struct Summary {
    labels: Labels,
    quantiles: Vec<(f64, f64)>,
    sum: f64,
    count: u64,
}

/// A histogram or summary series as its samples arrive (the sum may come
/// before the buckets): its points (`le` bound or quantile, value) in
/// increasing order, its sum and its count.
#[derive(Default)]
struct Partial {
    points: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<u64>,
}

/// Group the samples of a histogram or summary into series, by their labels
/// without `point_label` (`le` or `quantile`), which the samples named
/// with `point_suffix` (`_bucket`, or none) carry.
fn gather(
    family: &ParsedFamily,
    point_suffix: &str,
    point_label: &str,
) -> std::result::Result<Vec<(Labels, Partial)>, String> {
    let mut series: Vec<(Labels, Partial)> = Vec::new();
    for (suffix, labels, value) in &family.samples {
        let mut labels = labels.clone();
        let point = labels
            .iter()
            .position(|(k, _)| k == point_label)
            .map(|i| labels.remove(i).1);
        let idx = match series.iter().position(|(l, _)| *l == labels) {
            Some(i) => i,
            None => {
                series.push((labels, Partial::default()));
                series.len() - 1
            }
        };
        let entry = &mut series[idx].1;
        match (*suffix, point) {
            (s, Some(at)) if s == point_suffix => {
                let at: f64 = at
                    .parse()
                    .map_err(|_| format!("{}: invalid {point_label} {at:?}", family.name))?;
                entry.points.push((at, *value));
            }
            ("_sum", None) => entry.sum = Some(*value),
            ("_count", None) => entry.count = Some(whole_count(&family.name, *value)?),
            _ => return Err(format!("{}: misplaced {point_label} label", family.name)),
        }
    }
    for (_, p) in &mut series {
        p.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(series)
}

fn histograms(family: &ParsedFamily) -> std::result::Result<Vec<Histogram>, String> {
    gather(family, "_bucket", "le")?
        .into_iter()
        .map(|(labels, p)| {
            let mut buckets = p
                .points
                .iter()
                .map(|&(bound, n)| Ok((bound, whole_count(&family.name, n)?)))
                .collect::<std::result::Result<Vec<_>, String>>()?;
            let inf = buckets.pop().filter(|b| b.0 == f64::INFINITY);
            match (inf, p.sum, p.count) {
                (Some((_, n)), Some(sum), Some(count)) if n == count => Ok(Histogram {
                    labels,
                    buckets,
                    sum,
                    count,
                }),
                _ => Err(format!(
                    "{}{labels:?}: a histogram needs a +Inf bucket equal to its _count, and a _sum",
                    family.name
                )),
            }
        })
        .collect()
}

fn summaries(family: &ParsedFamily) -> std::result::Result<Vec<Summary>, String> {
    gather(family, "", "quantile")?
        .into_iter()
        .map(|(labels, p)| {
            if let Some((q, _)) = p.points.iter().find(|(q, _)| !(0.0..=1.0).contains(q)) {
                return Err(format!("{}: quantile {q} is not in 0..1", family.name));
            }
            match (p.sum, p.count) {
                (Some(sum), Some(count)) => Ok(Summary {
                    labels,
                    quantiles: p.points,
                    sum,
                    count,
                }),
                _ => Err(format!(
                    "{}{labels:?}: a summary needs a _sum and a _count",
                    family.name
                )),
            }
        })
        .collect()
}

/// An observation count: a whole number a float holds exactly.
fn whole_count(family: &str, v: f64) -> std::result::Result<u64, String> {
    if v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53) {
        Ok(v as u64)
    } else {
        Err(format!("{family}: count {v} is not a whole number"))
    }
}

/// `labels` borrowed as the sink takes them.
fn label_refs(labels: &Labels) -> Vec<(&str, &str)> {
    labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Families of all files of one scrape, merged by name.
#[derive(Default)]
struct Merged {
    families: Vec<(ParsedFamily, String)>,
    by_name: HashMap<String, usize>,
    series: HashSet<(String, Labels)>,
}

impl Merged {
    /// Add one file's families; returns why any of them (or any of their
    /// samples) was dropped.
    fn add(&mut self, file: &str, families: Vec<ParsedFamily>) -> Vec<String> {
        let mut dropped = Vec::new();
        for family in families {
            let name = family.name.clone();
            if family.samples.is_empty() {
                continue;
            }
            if RESERVED_NAMES.contains(&name.as_str())
                || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
            {
                dropped.push(format!(
                    "family {name} dropped: the name belongs to the exporter or to Prometheus"
                ));
                continue;
            }
            let whole = match family.kind {
                Kind::Histogram => histograms(&family).map(drop),
                Kind::Summary => summaries(&family).map(drop),
                _ => Ok(()),
            };
            if let Err(e) = whole {
                dropped.push(format!("family {name} dropped: {e}"));
                continue;
            }
            let idx = match self.by_name.get(&name) {
                None => None,
                Some(&idx) => {
                    let (first, first_file) = &self.families[idx];
                    if first.kind != family.kind {
                        dropped.push(format!(
                            "family {name} dropped: it is {:?} here but {:?} in {first_file}",
                            family.kind, first.kind
                        ));
                        continue;
                    }
                    if family.help.is_some() && first.help.is_some() && family.help != first.help {
                        dropped.push(format!(
                            "family {name} dropped: its HELP differs from {first_file}"
                        ));
                        continue;
                    }
                    Some(idx)
                }
            };
            // A series an earlier file already gave is dropped whole: for a
            // histogram that is all its buckets, its sum and its count; for
            // a summary its quantiles, sum and count.
            let key = |suffix: &str, labels: &Labels| {
                let whole = |label: &str| {
                    let rest = labels.iter().filter(|(k, _)| k != label).cloned();
                    series_key(&name, "", &rest.collect())
                };
                match family.kind {
                    Kind::Histogram => whole("le"),
                    Kind::Summary => whole("quantile"),
                    _ => series_key(&name, suffix, labels),
                }
            };
            let earlier: HashSet<_> = family
                .samples
                .iter()
                .map(|(suffix, labels, _)| key(suffix, labels))
                .filter(|k| self.series.contains(k))
                .collect();
            let (kept, repeated): (Vec<_>, Vec<_>) = family
                .samples
                .iter()
                .cloned()
                .partition(|(suffix, labels, _)| !earlier.contains(&key(suffix, labels)));
            for (suffix, labels, _) in &kept {
                self.series.insert(key(suffix, labels));
            }
            let repeated = repeated.len();
            if repeated > 0 {
                dropped.push(format!(
                    "{repeated} sample(s) of {name} dropped: the series came from an earlier file"
                ));
            }
            match idx {
                Some(idx) => self.families[idx].0.samples.extend(kept),
                None => {
                    self.by_name.insert(name, self.families.len());
                    let family = ParsedFamily {
                        samples: kept,
                        ..family
                    };
                    self.families.push((family, file.to_string()));
                }
            }
        }
        dropped
    }

    fn write(&self, out: &mut MetricSink) {
        for (family, file) in &self.families {
            let help = match &family.help {
                Some(h) => h.clone(),
                None => format!("Metric read from {file}"),
            };
            let desc = Desc {
                name: Cow::Owned(family.name.clone()),
                help: Cow::Owned(help),
                kind: family.kind.metric_type(),
            };
            let mut f = out.family(&desc);
            if family.kind == Kind::Histogram {
                // Each file's part was checked in `add`, and series are
                // merged whole, so the merged family is valid too.
                for h in histograms(family).unwrap_or_default() {
                    f.histogram(&label_refs(&h.labels), &h.buckets, h.sum, h.count);
                }
                continue;
            }
            if family.kind == Kind::Summary {
                for q in summaries(family).unwrap_or_default() {
                    f.summary(&label_refs(&q.labels), &q.quantiles, q.sum, q.count);
                }
                continue;
            }
            for (_, labels, value) in &family.samples {
                f.sample(&label_refs(labels), *value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::example_config;
    use herakles_core::testing::{collect_once, Collected};
    use herakles_core::Paths;

    fn collect(dir: &Path) -> Collected {
        let config = TextfileConfig {
            directory: dir.display().to_string(),
            ..TextfileConfig::default()
        };
        collect_once::<Textfile>(config, Paths::default()).unwrap()
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err()
    }

    #[test]
    fn parses_types_help_escapes_and_blank_lines() {
        let text = "# HELP job_last_success_seconds Last success,\\nin \\\\ seconds.\n\
                    # TYPE job_last_success_seconds gauge\n\
                    job_last_success_seconds{job=\"backup\",path=\"C:\\\\x \\\"y\\\"\\n\"} 1.7e9\n\
                    \n\
                    # a plain comment\n\
                    apt_upgrades_pending { origin = \"debian\" , } 3\n\
                    odd_values{v=\"a\"} NaN\n\
                    odd_values{v=\"b\"} -Inf\n";
        let f = parse(text).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].kind, Kind::Gauge);
        assert_eq!(f[0].help.as_deref(), Some("Last success,\nin \\ seconds."));
        assert_eq!(
            f[0].samples[0].1,
            vec![
                ("job".to_string(), "backup".to_string()),
                ("path".to_string(), "C:\\x \"y\"\n".to_string())
            ]
        );
        assert_eq!(f[0].samples[0].2, 1.7e9);
        assert_eq!(f[1].kind, Kind::Untyped);
        assert_eq!(f[1].samples[0].1[0].1, "debian");
        assert!(f[2].samples[0].2.is_nan());
        assert_eq!(f[2].samples[1].2, f64::NEG_INFINITY);
    }

    #[test]
    fn histogram_samples_join_their_family() {
        let text = "# TYPE rq_seconds histogram\n\
                    rq_seconds_bucket{le=\"0.5\"} 1\n\
                    rq_seconds_bucket{le=\"+Inf\"} 4\n\
                    rq_seconds_sum 2.5\n\
                    rq_seconds_count 4\n";
        let f = parse(text).unwrap();
        assert_eq!(f.len(), 1);
        let h = histograms(&f[0]).unwrap();
        assert_eq!(h[0].buckets, vec![(0.5, 1)]);
        assert_eq!((h[0].sum, h[0].count), (2.5, 4));
        // Without a TYPE line the same names are three untyped families.
        let untyped = parse(&text.replace("# TYPE rq_seconds histogram\n", "")).unwrap();
        assert_eq!(untyped.len(), 3);
    }

    #[test]
    fn malformed_input_is_an_error_naming_the_line() {
        let cases = [
            ("a 1\nb{x=\"1\" 2\n", "line 2"),
            ("a 1\n1abc 2\n", "line 2: invalid metric name"),
            ("a{x=\"1\",x=\"2\"} 1\n", "appears twice"),
            ("a{__name__=\"b\"} 1\n", "reserved"),
            ("a{x=\"\\t\"} 1\n", "invalid escape"),
            ("a one\n", "invalid value"),
            ("a 1 2 3\n", "unexpected text"),
            ("a 1\n# TYPE a gauge\n", "after its samples"),
            ("# TYPE a gauge\n# TYPE a counter\n", "second TYPE"),
            ("# HELP a x\n# HELP a y\n", "second HELP"),
            ("# TYPE a meter\n", "unknown type"),
            ("a{x=\"1\"} 1\na{x=\"1\"} 2\n", "appears twice"),
            ("# TYPE h histogram\nh 1\n", "needs a _bucket"),
            ("a 1", "no line feed"),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn timestamps_make_the_file_invalid_as_in_node_exporter() {
        let e = err("ok 1\nwith_ts 1 1700000000000\n");
        assert!(e.starts_with("line 2:") && e.contains("timestamp"), "{e}");
    }

    #[test]
    fn valid_files_are_merged_with_help_and_mtime() {
        let dir = dir_with(&[
            (
                "a.prom",
                "# HELP jobs_total Jobs run.\n# TYPE jobs_total counter\njobs_total{job=\"a\"} 5\n",
            ),
            (
                "b.prom",
                "# TYPE jobs_total counter\njobs_total{job=\"b\"} 7\nplain 1\n",
            ),
            ("ignored.txt", "not_read 1\n"),
            ("c.prom.tmp", "half written"),
        ]);
        let c = collect(dir.path());
        assert_eq!(c.value("jobs_total", &[("job", "a")]), Some(5.0));
        assert_eq!(c.value("jobs_total", &[("job", "b")]), Some(7.0));
        assert_eq!(c.value("plain", &[]), Some(1.0));
        assert!(c.absent("not_read"));
        assert!(c
            .text
            .contains("# HELP jobs_total Jobs run.\n# TYPE jobs_total counter\n"));
        let b = dir.path().join("b.prom");
        assert!(c
            .text
            .contains(&format!("# HELP plain Metric read from {}\n", b.display())));
        let mtime = std::fs::metadata(&b)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as f64;
        let file = b.display().to_string();
        assert_eq!(
            c.value("herakles_textfile_mtime_seconds", &[("file", &file)]),
            Some(mtime)
        );
        assert_eq!(c.count("herakles_textfile_mtime_seconds"), 2);
        assert_eq!(c.value("herakles_textfile_scrape_error", &[]), Some(0.0));
        assert_eq!(c.parse_errors, 0);
    }

    #[test]
    fn a_bad_file_costs_only_its_own_samples() {
        let dir = dir_with(&[
            ("good.prom", "good_metric 1\n"),
            ("bad.prom", "bad_metric 1\nbad_metric{ 2\n"),
            ("stamped.prom", "stamped 1 1700000000000\n"),
        ]);
        let c = collect(dir.path());
        assert_eq!(c.value("good_metric", &[]), Some(1.0));
        assert!(c.absent("bad_metric"), "{}", c.text);
        assert!(c.absent("stamped"));
        assert_eq!(c.count("herakles_textfile_mtime_seconds"), 1);
        assert_eq!(c.value("herakles_textfile_scrape_error", &[]), Some(1.0));
        assert_eq!(c.parse_errors, 2);
    }

    #[test]
    fn our_namespaces_and_conflicting_families_are_dropped_alone() {
        let dir = dir_with(&[
            (
                "a.prom",
                "# TYPE shared gauge\nshared{x=\"1\"} 1\nshared_help 1\n",
            ),
            (
                "b.prom",
                "herakles_system_cpu_load_1 999\nup 0\nprocess_open_fds 3\n\
                 # TYPE shared counter\nshared{x=\"2\"} 2\nkept 4\n",
            ),
            (
                "c.prom",
                "# HELP shared_help other\nshared_help{y=\"1\"} 1\nshared{x=\"1\"} 9\n",
            ),
        ]);
        let c = collect(dir.path());
        for gone in ["herakles_system_cpu_load_1", "up", "process_open_fds"] {
            assert!(c.absent(gone), "{gone} leaked: {}", c.text);
        }
        assert_eq!(c.value("kept", &[]), Some(4.0));
        // The counter in b.prom disagrees with a.prom's gauge: dropped.
        assert_eq!(c.count("shared"), 1);
        assert_eq!(c.value("shared", &[("x", "1")]), Some(1.0));
        // c.prom's extra series of an untyped family with new help: the
        // help differs only if a.prom had one, which it has not: merged.
        assert_eq!(c.value("shared_help", &[("y", "1")]), Some(1.0));
        assert_eq!(c.value("herakles_textfile_scrape_error", &[]), Some(1.0));
        // Every file was read, so every file has its mtime.
        assert_eq!(c.count("herakles_textfile_mtime_seconds"), 3);
    }

    #[test]
    fn histograms_survive_the_merge_whole() {
        let h = "# TYPE rq_seconds histogram\n\
                 rq_seconds_bucket{path=\"/\",le=\"1\"} 2\n\
                 rq_seconds_bucket{path=\"/\",le=\"+Inf\"} 3\n\
                 rq_seconds_sum{path=\"/\"} 4.5\n\
                 rq_seconds_count{path=\"/\"} 3\n";
        let dir = dir_with(&[("a.prom", h), ("b.prom", &h.replace("4.5", "9"))]);
        let c = collect(dir.path());
        assert_eq!(
            c.value("rq_seconds_bucket", &[("path", "/"), ("le", "+Inf")]),
            Some(3.0)
        );
        assert_eq!(c.value("rq_seconds_sum", &[("path", "/")]), Some(4.5));
        assert_eq!(c.count("rq_seconds_sum"), 1);
        assert!(c.text.contains("# TYPE rq_seconds histogram\n"));
    }

    #[test]
    fn summaries_are_served_whole() {
        let s = "# HELP rq_seconds Request time.\n# TYPE rq_seconds summary\n\
                 rq_seconds{path=\"/\",quantile=\"0.99\"} 0.75\n\
                 rq_seconds{path=\"/\",quantile=\"0.5\"} 0.25\n\
                 rq_seconds_sum{path=\"/\"} 4.5\n\
                 rq_seconds_count{path=\"/\"} 12\n\
                 rq_seconds_sum{path=\"/x\"} 1\n\
                 rq_seconds_count{path=\"/x\"} 1\n";
        // The second file repeats the "/" series (dropped whole, quantiles
        // and all) and adds one of its own.
        let other = "# TYPE rq_seconds summary\n\
                     rq_seconds{path=\"/\",quantile=\"0.5\"} 9\n\
                     rq_seconds_sum{path=\"/\"} 9\nrq_seconds_count{path=\"/\"} 9\n\
                     rq_seconds_sum{path=\"/y\"} 2\nrq_seconds_count{path=\"/y\"} 3\n";
        let dir = dir_with(&[("a.prom", s), ("b.prom", other)]);
        let c = collect(dir.path());
        assert!(
            c.text.contains(
                "# TYPE rq_seconds summary\n\
             rq_seconds{path=\"/\",quantile=\"0.5\"} 0.25\n\
             rq_seconds{path=\"/\",quantile=\"0.99\"} 0.75\n\
             rq_seconds_sum{path=\"/\"} 4.5\n\
             rq_seconds_count{path=\"/\"} 12\n\
             rq_seconds_sum{path=\"/x\"} 1\n\
             rq_seconds_count{path=\"/x\"} 1\n\
             rq_seconds_sum{path=\"/y\"} 2\n\
             rq_seconds_count{path=\"/y\"} 3\n"
            ),
            "{}",
            c.text
        );
    }

    #[test]
    fn inconsistent_histograms_and_summaries_are_dropped() {
        for summary in [
            "s{quantile=\"0.5\"} 1\ns_sum 1\n",
            "s{quantile=\"1.5\"} 1\ns_sum 1\ns_count 1\n",
            "s{quantile=\"0.5\"} 1\ns_sum 1\ns_count 0.5\n",
        ] {
            let dir = dir_with(&[(
                "a.prom",
                &format!(
                    "# TYPE h histogram\nh_bucket{{le=\"+Inf\"}} 3\nh_sum 1\nh_count 2\n\
                     # TYPE s summary\n{summary}fine 1\n"
                ),
            )]);
            let c = collect(dir.path());
            assert!(
                c.absent("h_bucket") && c.absent("s") && c.absent("s_sum"),
                "{summary}: {}",
                c.text
            );
            assert_eq!(c.value("fine", &[]), Some(1.0));
            assert_eq!(c.value("herakles_textfile_scrape_error", &[]), Some(1.0));
        }
    }

    #[test]
    fn oversized_files_are_not_read() {
        let big = "x 1\n".repeat(300);
        let dir = dir_with(&[("big.prom", &big), ("small.prom", "y 1\n")]);
        let config = TextfileConfig {
            directory: dir.path().display().to_string(),
            max_file_kb: 1,
        };
        let c = collect_once::<Textfile>(config, Paths::default()).unwrap();
        assert!(c.absent("x"));
        assert_eq!(c.value("y", &[]), Some(1.0));
        assert_eq!(c.value("herakles_textfile_scrape_error", &[]), Some(1.0));
    }

    #[test]
    fn missing_directory_is_an_error_gauge_not_a_failure() {
        let c = collect(Path::new("/nonexistent/herakles-textfile"));
        assert_eq!(c.value("herakles_textfile_scrape_error", &[]), Some(1.0));
        assert!(c.absent("herakles_textfile_mtime_seconds"));
    }

    #[test]
    fn without_a_directory_nothing_is_emitted() {
        let c = collect_once::<Textfile>(TextfileConfig::default(), Paths::default()).unwrap();
        assert_eq!(c.text, "");
    }

    #[test]
    fn example_config_loads() {
        let config: TextfileConfig = example_config("textfile");
        assert_eq!(config.directory, "/var/lib/herakles/textfile");
        assert_eq!(config.max_file_kb, TextfileConfig::default().max_file_kb);
    }
}
