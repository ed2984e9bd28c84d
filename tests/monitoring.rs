//! The monitoring mixin in `monitoring/`: rules, alerts and dashboards.
//!
//! * promtool checks every rule file and runs the rule unit tests.
//! * Every query (rules, dashboard panels, dashboard variables) names only
//!   families the exporter declares, recording rules of the mixin, or
//!   series Prometheus makes itself.
//! * Dashboards are well formed: unique ids, a datasource variable, every
//!   variable used is defined, panels do not overlap.
//! * Live: a real Prometheus (Debian's `prometheus`) scrapes two exporters,
//!   one with default settings and one with every option on, and evaluates
//!   every recording rule and every panel query for each. Each must return
//!   data, unless it needs a family that exporter does not emit for a
//!   documented reason ([`MAY_BE_ABSENT`]) or is quiet on an idle host
//!   ([`QUIET_ON_IDLE_HOST`]). A test host has no containers, pods or
//!   units, so the test makes their cgroups and puts processes in them
//!   ([`TestContainers`]).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cgroups::{disk_of, move_to, test_slice, Kid, Made};
use common::prometheus::Prometheus;
use common::Running;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(path(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.{ext} in {dir}");
    v
}

fn yaml(p: &Path) -> Yaml {
    serde_norway::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool not found: run scripts/setup.sh (Debian package 'prometheus')");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every rule of a rule file: (record or alert name, the rule).
fn rules(file: &str) -> Vec<(String, Yaml)> {
    let doc = yaml(&path(file));
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule
                .get("record")
                .or_else(|| rule.get("alert"))
                .and_then(Yaml::as_str)
                .unwrap();
            out.push((name.to_string(), rule.clone()));
        }
    }
    out
}

#[test]
fn rule_files_pass_promtool_check() {
    for f in files("monitoring/rules", "yml") {
        let (ok, text) = promtool(&["check", "rules", f.to_str().unwrap()]);
        assert!(ok, "{text}");
    }
}

#[test]
fn rule_unit_tests_pass() {
    for f in files("monitoring/tests", "yml") {
        let (ok, text) = promtool(&["test", "rules", f.to_str().unwrap()]);
        assert!(ok, "{text}");
    }
}

/// Each alert has a severity, the three annotations, and in the unit tests
/// a moment where it must be quiet and one where it must fire.
#[test]
fn every_alert_has_a_runbook_and_is_tested_firing_and_quiet() {
    let tests = yaml(&path("monitoring/tests/alerts_test.yml"));
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in tests["tests"].as_sequence().unwrap() {
        let Some(exprs) = case.get("promql_expr_test") else {
            continue;
        };
        for t in exprs.as_sequence().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let samples = t["exp_samples"].as_sequence().unwrap();
            let name = expr
                .split("alertname=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("test expression {expr} names no alert"));
            if samples.is_empty() {
                quiet.insert(name.to_string());
            }
            for s in samples {
                let labels = s["labels"].as_str().unwrap();
                if labels.contains(&format!("alertname=\"{name}\"")) {
                    fires.insert(name.to_string());
                }
            }
        }
    }
    let alerts = rules("monitoring/rules/alerts.yml");
    assert!(alerts.len() >= 20, "{} alerts", alerts.len());
    for (name, rule) in &alerts {
        let severity = rule["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook"] {
            let text = rule["annotations"][key].as_str().unwrap_or("");
            assert!(!text.trim().is_empty(), "{name} has no {key}");
        }
        assert!(fires.contains(name), "no test where {name} fires");
        assert!(quiet.contains(name), "no test where {name} stays quiet");
    }
}

/// Metric families the exporter can emit: every `Desc::gauge`,
/// `Desc::counter` and `Desc::histogram` in the sources (histograms with
/// their `_bucket`, `_sum` and `_count` series), and the `process_*`
/// families of the `prometheus` crate's process collector.
fn declared_families() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let mut sources = Vec::new();
    walk(&path("src"), &mut sources);
    for plugin in std::fs::read_dir(path("plugins")).unwrap() {
        walk(&plugin.unwrap().path().join("src"), &mut sources);
    }
    let desc =
        regex::Regex::new(r#"Desc::(gauge|counter|histogram)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)""#)
            .unwrap();
    // Families declared once per dimension by a macro:
    // `Desc::gauge(concat!("herakles_", $dim, "_processes"), ..)` in its
    // body, `static POD: Sums = sums!("pod", ..)` for each dimension.
    let templated = regex::Regex::new(
        r#"Desc::(gauge|counter)\(\s*concat!\(\s*"(\w*)",\s*\$dim,\s*"(\w*)"\s*\)"#,
    )
    .unwrap();
    let expanded = regex::Regex::new(r#"=\s*\w+!\(\s*"(\w+)","#).unwrap();
    let mut names = BTreeSet::new();
    for file in sources {
        let text = std::fs::read_to_string(&file).unwrap();
        for t in templated.captures_iter(&text) {
            for dim in expanded.captures_iter(&text) {
                names.insert(format!("{}{}{}", &t[2], &dim[1], &t[3]));
            }
        }
        for c in desc.captures_iter(&text) {
            let name = c[2].to_string();
            if &c[1] == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            names.insert(name);
        }
    }
    for p in [
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_virtual_memory_bytes",
        "process_virtual_memory_max_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_threads",
    ] {
        names.insert(p.to_string());
    }
    names
}

/// Series Prometheus records itself for every target.
const PROMETHEUS_SERIES: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// The metric names a PromQL expression selects. Strings, label matchers,
/// grouping clauses, ranges and Grafana variables are removed first; what
/// remains that looks like a name and is not called like a function or
/// used as a keyword is a metric name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let strip = [
        r#""(?:[^"\\]|\\.)*""#,
        r"\$\{?\w+\}?",
        r"\{[^}]*\}",
        r"\[[^\]]*\]",
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
    ];
    let mut e = expr.to_string();
    for pattern in strip {
        e = regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&e, " ")
            .into_owned();
    }
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "Inf",
        "NaN",
    ];
    let token = regex::Regex::new(r"[A-Za-z0-9_:.]+(\s*\()?").unwrap();
    token
        .captures_iter(&e)
        .filter(|c| c.get(1).is_none())
        .map(|c| c[0].to_string())
        .filter(|t| t.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_' || ch == ':'))
        .filter(|t| !KEYWORDS.contains(&t.as_str()))
        .collect()
}

#[test]
fn metric_names_finds_names_and_only_names() {
    let got = metric_names(
        r#"sum by (instance, job) (rate(herakles_group_cpu_seconds_total{mode="user", group=~"$group"}[5m])) * 100
           / on (instance) group_left herakles:proc_count_by_group:count offset 1h > bool 80
           and histogram_quantile(0.95, x_bucket) or vector(0) unless up"#,
    );
    let want: BTreeSet<String> = [
        "herakles_group_cpu_seconds_total",
        "herakles:proc_count_by_group:count",
        "x_bucket",
        "up",
    ]
    .map(String::from)
    .into();
    assert_eq!(got, want);
}

/// Every expression of the mixin: (where, expression). Grafana's
/// `label_values(selector, label)` variables contribute their selector.
fn all_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in files("monitoring/rules", "yml") {
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        for (name, rule) in rules(&format!("monitoring/rules/{file}")) {
            out.push((
                format!("{file}: {name}"),
                rule["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for d in dashboards() {
        for q in panel_queries(&d) {
            out.push((q.place(), q.expr));
        }
        for (name, selector, _) in variable_queries(&d) {
            out.push((format!("{}: variable {name}", d.uid), selector));
        }
    }
    out
}

fn recorded_names() -> BTreeSet<String> {
    rules("monitoring/rules/recording.yml")
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn queries_name_only_families_the_exporter_declares() {
    let mut known = declared_families();
    // The check is only as good as the list: a name the spec uses but we
    // do not emit must not be in it.
    assert!(known.contains("herakles_group_memory_rss_bytes"));
    assert!(known.contains("herakles_pod_cgroup_cpu_throttled_periods_total"));
    assert!(known.contains("herakles_user_memory_uss_bytes"));
    assert!(!known.contains("herakles_user_cgroup_memory_usage_bytes"));
    assert!(!known.contains("herakles_mem_group_rss_bytes"));
    known.extend(recorded_names());
    known.extend(PROMETHEUS_SERIES.iter().map(|s| s.to_string()));
    let mut unknown = Vec::new();
    for (place, expr) in all_expressions() {
        for name in metric_names(&expr) {
            if !known.contains(&name) {
                unknown.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(unknown.is_empty(), "unknown names:\n{}", unknown.join("\n"));
}

struct Dashboard {
    uid: String,
    file: PathBuf,
    json: Json,
}

fn dashboards() -> Vec<Dashboard> {
    files("monitoring/dashboards", "json")
        .into_iter()
        .map(|file| {
            let json: Json = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let uid = json["uid"].as_str().unwrap().to_string();
            Dashboard { uid, file, json }
        })
        .collect()
}

/// Every panel, rows and the panels inside collapsed rows included.
fn panels(d: &Dashboard) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in d.json["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

struct PanelQuery {
    dashboard: String,
    panel: String,
    ref_id: String,
    expr: String,
}

impl PanelQuery {
    fn place(&self) -> String {
        format!("{} / {} / {}", self.dashboard, self.panel, self.ref_id)
    }
}

fn panel_queries(d: &Dashboard) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(PanelQuery {
                dashboard: d.uid.clone(),
                panel: p["title"].as_str().unwrap().to_string(),
                ref_id: t["refId"].as_str().unwrap_or("").to_string(),
                expr: t["expr"].as_str().unwrap_or("").to_string(),
            });
        }
    }
    out
}

/// The `label_values(selector, label)` query variables: (name, selector, label).
fn variable_queries(d: &Dashboard) -> Vec<(String, String, String)> {
    let re = regex::Regex::new(r"^label_values\((.*),\s*(\w+)\)$").unwrap();
    d.json["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"].as_str().unwrap();
            let c = re
                .captures(q)
                .unwrap_or_else(|| panic!("{}: variable query {q} is not label_values", d.uid));
            (
                v["name"].as_str().unwrap().to_string(),
                c[1].to_string(),
                c[2].to_string(),
            )
        })
        .collect()
}

/// Grafana's own variables, which need no definition.
const GRAFANA_VARIABLES: &[&str] = &["__rate_interval", "__interval", "__range"];

#[test]
fn dashboards_are_well_formed() {
    let all = dashboards();
    assert!(all.len() >= 6);
    let mut uids = BTreeSet::new();
    let var = regex::Regex::new(r"\$\{?(\w+)\}?").unwrap();
    for d in &all {
        let at = d.file.display();
        assert!(uids.insert(d.uid.clone()), "{at}: uid {} twice", d.uid);
        let vars = d.json["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{at}: no Prometheus datasource variable"
        );
        let defined: BTreeSet<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(i64, i64, i64, i64, String)> = Vec::new();
        for p in panels(d) {
            let title = p["title"].as_str().unwrap();
            let id = p["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{at}: {title} has no id"));
            assert!(ids.insert(id), "{at}: panel id {id} twice");
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_i64().unwrap());
            assert!(x >= 0 && w > 0 && x + w <= 24 && h > 0, "{at}: {title} {g}");
            for (bx, by, bw, bh, other) in &boxes {
                let apart = x >= bx + bw || bx >= &(x + w) || y >= by + bh || by >= &(y + h);
                assert!(apart, "{at}: {title} overlaps {other}");
            }
            boxes.push((x, y, w, h, title.to_string()));
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{at}: {title} does not use the datasource variable"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{at}: {title} has no query");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert!(refs.insert(t["refId"].as_str().unwrap()), "{at}: {title}");
                let expr = t["expr"].as_str().unwrap();
                assert!(!expr.trim().is_empty(), "{at}: {title} has an empty query");
            }
        }
        let mut uses = Vec::new();
        for q in panel_queries(d) {
            uses.push(q.expr);
        }
        for v in vars {
            uses.push(v["query"].as_str().unwrap_or("").to_string());
        }
        for text in uses {
            for c in var.captures_iter(&text) {
                let name = &c[1];
                assert!(
                    defined.contains(name) || GRAFANA_VARIABLES.contains(&name),
                    "{at}: ${name} is not defined in {text}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Live: Prometheus scraping real exporters.

/// Families a query may need that an exporter does not emit, and why: a
/// query needing one of these is excused on that exporter when the
/// condition holds (and listed in the output); any other missing family
/// fails the test.
const MAY_BE_ABSENT: &[Absence] = &[
    Absence::new("herakles_system_hwmon_", "no hwmon sensors here (most VMs)"),
    Absence::new(
        "herakles_system_thermal_zone_",
        "no thermal zones here (most VMs)",
    ),
    Absence::new(
        "herakles_system_cpu_temp_celsius",
        "no CPU temperature sensor here",
    ),
    Absence::default_off(
        "netprobe_",
        "netprobe is off by default (collectors.netprobe)",
    ),
    Absence::default_off(
        "herakles_bpf_inventory_program_memory_bytes",
        "off by default (collectors.bpf_inventory.per_program)",
    ),
    Absence::default_off(
        "herakles_bpf_inventory_map_memory_bytes",
        "off by default (collectors.bpf_inventory.per_map)",
    ),
    Absence::default_off(
        "herakles_ebpf_cpu_seconds_total",
        "off by default (collectors.ebpf_io.cpu_stats)",
    ),
    Absence::default_off("herakles_textfile_", "no textfile directory by default"),
    Absence::default_off(
        "herakles_group_context_switches_total",
        "off by default (process_context_switches)",
    ),
    Absence::without_test_cgroups("herakles_container_"),
    Absence::without_test_cgroups("herakles_pod_"),
    Absence::without_test_cgroups("herakles_unit_"),
    Absence::without_block_device("herakles_container_cgroup_io_"),
    Absence::without_block_device("herakles_unit_cgroup_io_"),
    Absence::without_block_device("herakles_io_process_"),
    Absence::without_btf("herakles_net_process_"),
    Absence::without_btf("herakles_io_process_"),
    Absence::without_btf("herakles_group_net_"),
    Absence::without_btf("herakles_top_net_"),
    Absence::without_btf("herakles_ebpf_"),
    Absence::without_btf("herakles_container_net_"),
    Absence::without_btf("herakles_unit_net_"),
    Absence::without_btf("herakles_user_net_"),
    Absence::without_btf("herakles_system_tcp_transitions_total"),
    Absence::without_btf("herakles_system_tcp_connections_unattributed_total"),
    Absence::without_btf("netprobe_tc_"),
    Absence::without_btf("netprobe_interface_active"),
];

struct Absence {
    prefix: &'static str,
    reason: &'static str,
    /// Only the default exporter may lack it: the other has every option on.
    default_only: bool,
    when: When,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    Always,
    WithoutBtf,
    WithoutBlockDevice,
    /// The test could not make its containers, pod and unit (it says why,
    /// loudly, on standard error).
    WithoutTestCgroups,
}

impl Absence {
    const fn new(prefix: &'static str, reason: &'static str) -> Absence {
        Absence {
            prefix,
            reason,
            default_only: false,
            when: When::Always,
        }
    }
    const fn default_off(prefix: &'static str, reason: &'static str) -> Absence {
        Absence {
            default_only: true,
            ..Absence::new(prefix, reason)
        }
    }
    const fn without_btf(prefix: &'static str) -> Absence {
        Absence {
            when: When::WithoutBtf,
            ..Absence::new(prefix, "no kernel BTF: the eBPF programs cannot load")
        }
    }
    const fn without_test_cgroups(prefix: &'static str) -> Absence {
        Absence {
            when: When::WithoutTestCgroups,
            ..Absence::new(
                prefix,
                "the test could not make container-shaped cgroups here (see its standard error)",
            )
        }
    }
    const fn without_block_device(prefix: &'static str) -> Absence {
        Absence {
            when: When::WithoutBlockDevice,
            ..Absence::new(
                prefix,
                "the test's O_DIRECT I/O found no block device under CARGO_TARGET_TMPDIR",
            )
        }
    }
}

/// Queries that name only families the exporter emits but select nothing
/// on an idle, healthy host: (dashboard uid, panel title, refId, reason).
const QUIET_ON_IDLE_HOST: &[(&str, &str, &str, &str)] = &[(
    "herakles-host",
    "Filesystems",
    "D",
    "days until full: only filesystems whose free space shrinks have a value",
)];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Exporter {
    Default,
    AllOn,
    Both,
}

/// A Prometheus server scraping `targets` every `interval` with the
/// mixin's rule files.
fn start_prometheus(targets: &[String], interval: &str) -> Prometheus {
    let rule_files: Vec<String> = files("monitoring/rules", "yml")
        .iter()
        .map(|p| format!("  - {}\n", p.display()))
        .collect();
    Prometheus::start(&format!(
        "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  \
         evaluation_interval: {interval}\nrule_files:\n{}scrape_configs:\n  \
         - job_name: herakles\n    static_configs:\n      - targets: [{}]\n",
        rule_files.concat(),
        targets.join(", ")
    ))
}

/// Run `f` on a thread in a new network namespace with `lo` and a veth
/// pair up (a host has more than loopback; the host rules leave `lo`
/// out). The exporters and Prometheus it starts live there, so netprobe's
/// TC filters on `lo` never touch the host's.
fn in_netns<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        // SAFETY: CLONE_NEWNET alone affects only the calling thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        for cmd in [
            "ip link set lo up",
            "ip link add herakles0 type veth peer name herakles1",
            "ip link set herakles0 up",
            "ip link set herakles1 up",
        ] {
            let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{cmd}: {err}");
        }
        f();
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// Write 1 MiB with O_DIRECT from this process, so the per-process block
/// I/O series (which follow live processes) have a member: this test.
/// Returns false when the directory's filesystem has no block device under
/// it (tmpfs refuses O_DIRECT).
fn direct_write(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    const MIB: usize = 1 << 20;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.join("direct"))
    else {
        return false;
    };
    let layout = std::alloc::Layout::from_size_align(MIB, 4096).unwrap();
    // SAFETY: non-zero size; freed below with the same layout.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!ptr.is_null());
    // SAFETY: ptr points at MIB initialised bytes we own.
    let ok = f
        .write_all(unsafe { std::slice::from_raw_parts(ptr, MIB) })
        .is_ok()
        && f.sync_all().is_ok();
    // SAFETY: allocated above with `layout`.
    unsafe { std::alloc::dealloc(ptr, layout) };
    ok
}

/// What one live check evaluates.
struct Check {
    place: String,
    expr: String,
    /// For recording rules: every exporter's instance must appear in the
    /// result when the rule keeps `instance`.
    instances: Vec<String>,
    names: BTreeSet<String>,
    exporter: Exporter,
    quiet_reason: Option<&'static str>,
}

#[test]
fn live_prometheus_evaluates_every_rule_and_panel() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        herakles_core::testing::skip("needs root for a network namespace and the eBPF programs");
        return;
    }
    in_netns(live);
}

fn live() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let textfiles = work.path().join("textfile");
    std::fs::create_dir(&textfiles).unwrap();
    std::fs::write(
        textfiles.join("mixin.prom"),
        "# HELP mixin_test_info Written by the mixin test.\nmixin_test_info 1\n",
    )
    .unwrap();
    let config = work.path().join("all-on.yaml");
    std::fs::write(
        &config,
        format!(
            "smaps_mode: all\ncollectors:\n  netprobe:\n    enabled: true\n    interfaces: [lo]\n    \
             collection_interval: 1\n  bpf_inventory:\n    per_program: true\n    per_map: true\n  \
             ebpf_io:\n    cpu_stats: true\n  textfile:\n    directory: {}\n\
             process_context_switches: true\n",
            textfiles.display()
        ),
    )
    .unwrap();
    // Whether O_DIRECT reaches a block device here; the write that the
    // per-process series need comes again below, once the exporters' eBPF
    // programs are loaded.
    let block_device = direct_write(work.path());
    if !block_device {
        herakles_core::testing::skip(&format!(
            "no O_DIRECT write under {}: the block I/O queries are excused",
            work.path().display()
        ));
    }
    // Made before the exporters start, so that they find the processes
    // already in place.
    let containers = TestContainers::make(work.path(), block_device)
        .map_err(|why| {
            herakles_core::testing::skip(&format!(
                "no test containers ({why}): the container, pod and unit queries are excused"
            ))
        })
        .ok();
    let default = Running::start(&[]);
    let all_on = Running::start(&["-c", config.to_str().unwrap()]);
    let block_io = block_device && direct_write(work.path());
    if let Some(c) = &containers {
        c.go(default.addr.port());
    }
    let btf = Path::new("/sys/kernel/btf/vmlinux").is_file();
    let instance = |e: Exporter| match e {
        Exporter::AllOn => all_on.addr.to_string(),
        _ => default.addr.to_string(),
    };
    let prom = start_prometheus(
        &[instance(Exporter::Default), instance(Exporter::AllOn)],
        "2s",
    );

    let mut checks = Vec::new();
    for (name, rule) in rules("monitoring/rules/recording.yml") {
        let expr = rule["expr"].as_str().unwrap();
        checks.push(Check {
            place: format!("recording rule {name}"),
            expr: format!("count by (instance) ({name})"),
            instances: vec![instance(Exporter::Default), instance(Exporter::AllOn)],
            names: metric_names(expr),
            exporter: Exporter::Both,
            quiet_reason: None,
        });
    }
    for e in [Exporter::Default, Exporter::AllOn] {
        let inst = instance(e);
        let substitute = |text: &str| {
            text.replace("$job", "herakles")
                .replace("$instance", &inst)
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "2s")
                .replace("$__range", "5m")
                .replace("$group", ".+")
                .replace("$subgroup", ".+")
                .replace("$interface", ".+")
        };
        for d in dashboards() {
            for q in panel_queries(&d) {
                let quiet = QUIET_ON_IDLE_HOST
                    .iter()
                    .find(|(uid, panel, r, _)| {
                        *uid == q.dashboard && *panel == q.panel && *r == q.ref_id
                    })
                    .map(|(_, _, _, reason)| *reason);
                checks.push(Check {
                    place: format!("{} [{e:?}]", q.place()),
                    expr: substitute(&q.expr),
                    instances: Vec::new(),
                    names: metric_names(&q.expr),
                    exporter: e,
                    quiet_reason: quiet,
                });
            }
            for (name, selector, label) in variable_queries(&d) {
                checks.push(Check {
                    place: format!("{} / variable {name} [{e:?}]", d.uid),
                    expr: format!("count by ({label}) ({})", substitute(&selector)),
                    instances: Vec::new(),
                    names: metric_names(&selector),
                    exporter: e,
                    quiet_reason: None,
                });
            }
        }
    }

    // Families each exporter has delivered, from Prometheus itself.
    let families = |e: Exporter| -> BTreeSet<String> {
        let q = format!("count by (__name__) ({{instance=\"{}\"}})", instance(e));
        prom.query(&q)
            .iter()
            .filter_map(|r| r["metric"]["__name__"].as_str().map(String::from))
            .collect()
    };
    let recorded = recorded_names();
    // The families a check needs that its exporter has not delivered.
    let missing = |c: &Check, have: &BTreeSet<String>| -> Vec<String> {
        c.names
            .iter()
            .filter(|n| !recorded.contains(*n) && !have.contains(*n))
            .cloned()
            .collect()
    };
    // Why an empty panel query is fine: every family it lacks is one that
    // exporter may lack, for a documented reason.
    let excuse = |c: &Check, have: &BTreeSet<String>| -> Option<String> {
        if let Some(reason) = c.quiet_reason {
            return Some(reason.to_string());
        }
        let missing = missing(c, have);
        if missing.is_empty() || c.exporter == Exporter::Both {
            return None;
        }
        let applies = |a: &&Absence| match a.when {
            When::Always => true,
            When::WithoutBtf => !btf,
            When::WithoutBlockDevice => !block_io,
            When::WithoutTestCgroups => containers.is_none(),
        };
        let reasons: Option<Vec<String>> = missing
            .iter()
            .map(|n| {
                MAY_BE_ABSENT
                    .iter()
                    .filter(applies)
                    .find(|a| {
                        n.starts_with(a.prefix)
                            && (!a.default_only || c.exporter == Exporter::Default)
                    })
                    .map(|a| format!("{n}: {}", a.reason))
            })
            .collect();
        reasons.map(|r| r.join("; "))
    };

    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    let mut pending: Vec<usize> = (0..checks.len()).collect();
    let mut rounds = 0;
    let mut have = BTreeMap::new();
    loop {
        rounds += 1;
        pending.retain(|&i| {
            let c = &checks[i];
            let result = prom.query(&c.expr);
            if c.instances.is_empty() {
                return result.is_empty();
            }
            let seen: BTreeSet<&str> = result
                .iter()
                .filter_map(|r| r["metric"]["instance"].as_str())
                .collect();
            // Rules that aggregate `instance` away give one unlabelled row.
            let whole = !result.is_empty() && seen.is_empty();
            !(whole || c.instances.iter().all(|i| seen.contains(i.as_str())))
        });
        for e in [Exporter::Default, Exporter::AllOn] {
            have.insert(format!("{e:?}"), families(e));
        }
        let have_for = |c: &Check| &have[&format!("{:?}", c.exporter)];
        let blocking: Vec<&Check> = pending
            .iter()
            .map(|&i| &checks[i])
            .filter(|c| c.exporter == Exporter::Both || excuse(c, have_for(c)).is_none())
            .collect();
        if blocking.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let list: Vec<String> = blocking
                .iter()
                .map(|c| {
                    let lacking = if c.exporter == Exporter::Both {
                        Vec::new()
                    } else {
                        missing(c, have_for(c))
                    };
                    format!(
                        "{}\n    {}\n    not delivered: {lacking:?}",
                        c.place, c.expr
                    )
                })
                .collect();
            panic!(
                "{} of {} queries returned no data after {rounds} rounds:\n{}\n\nprometheus log:\n{}",
                list.len(),
                checks.len(),
                list.join("\n"),
                prom.log()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }

    // Every rule loaded and evaluated without error.
    let (_, body) = prom.get("/api/v1/rules");
    let json: Json = serde_json::from_str(&body).unwrap();
    let mut evaluated = 0;
    for g in json["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "{}: {}", r["name"], r["lastError"]);
            evaluated += 1;
        }
    }
    assert_eq!(
        evaluated,
        rules("monitoring/rules/recording.yml").len() + rules("monitoring/rules/alerts.yml").len()
    );

    let mut report: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for &i in &pending {
        let c = &checks[i];
        let why = excuse(c, &have[&format!("{:?}", c.exporter)]).unwrap_or_default();
        report.entry(why).or_default().push(c.place.clone());
    }
    println!(
        "{} checks on {} rules, {} dashboards, 2 exporters (block I/O written: {block_io}); \
         data for {} after {:.0?} ({rounds} rounds); quiet:",
        checks.len(),
        recorded.len(),
        dashboards().len(),
        checks.len() - pending.len(),
        started.elapsed(),
    );
    for (why, places) in &report {
        println!("  {why}\n    {}", places.join("\n    "));
    }
    drop(prom);
    drop(default);
    drop(all_on);
    if let Some(c) = containers {
        let dirs = c.dirs();
        drop(c);
        let left: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }
}

/// A Docker container's and a Kubernetes pod's cgroups, shaped as the
/// runtimes make them, with a process in each, for the container, pod and
/// unit panels to show: on a test host there are none otherwise. Made at
/// the top of each hierarchy (v2, and on a hybrid or v1 host the v1
/// memory, cpu, cpuacct and blkio ones, where this host's kernel
/// accounting is), below a slice of the test's own, so the systemd shapes
/// are real ones: the docker scope is a unit too. Processes are killed and
/// the cgroups removed when dropped, however the test ends.
struct TestContainers {
    // Dropped in this order: the processes, then their cgroups.
    kids: Vec<Kid>,
    made: Made,
    go: PathBuf,
}

const DOCKER_ID: &str = "5d1b6c0a9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b";
const CRI_ID: &str = "e3a9c0b18d7f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918e7d6c5b";
const POD_UID: &str = "0b6f3f4e-2a1d-4c5b-9e8f-7a6b5c4d3e2f";

/// What the container's process does once it is in its cgroups (`$1` is a
/// file that holds the exporter's port once it is up, `$2` a file for
/// O_DIRECT I/O, empty when there is no block device): a read and a write
/// to disk, an HTTP request to the exporter (network in and out, by bash
/// itself), then spin for ever, under a CPU quota of 1 ms per 100 ms, so
/// that its cgroup is throttled in every period at 1% of one CPU.
const CONTAINER_SCRIPT: &str = r#"
until [ -s "$1" ]; do sleep 0.05; done
read -r port < "$1"
if [ -n "$2" ]; then
  dd if=/dev/zero of="$2" bs=64k count=16 oflag=direct conv=fsync status=none
  dd if="$2" of=/dev/null bs=64k iflag=direct status=none
fi
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /health HTTP/1.0

' >&3
while read -r -u 3 line; do :; done
exec 3<&-
while :; do :; done
"#;

impl TestContainers {
    fn make(work: &Path, block_io: bool) -> Result<TestContainers, String> {
        use herakles_node_exporter::attribution::hierarchy::Hierarchy;
        let h = Hierarchy::detect(Path::new("/sys"));
        let mut roots: Vec<PathBuf> = Vec::new();
        let v1 = ["memory", "cpu", "cpuacct", "blkio"].map(|c| h.v1_root(c));
        for root in std::iter::once(h.unified.as_deref()).chain(v1).flatten() {
            let root = root
                .canonicalize()
                .map_err(|e| format!("{}: {e}", root.display()))?;
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        if roots.is_empty() {
            return Err(format!("no cgroup hierarchy found: {h:?}"));
        }
        let base = test_slice();
        let probe = roots[0].join(&base);
        std::fs::create_dir(&probe)
            .and_then(|()| std::fs::remove_dir(&probe))
            .map_err(|e| format!("cannot make a cgroup {}: {e}", probe.display()))?;
        let docker = format!("{base}/docker-{DOCKER_ID}.scope");
        let kube = format!("{base}/kubepods/burstable/pod{POD_UID}/{CRI_ID}");
        let io_file = work.join("container-io");
        let mut made = Made::default();
        for root in &roots {
            for rel in [&docker, &kube] {
                made.make(root, &root.join(rel));
            }
            let d = root.join(&docker);
            for (file, quota) in [("cpu.max", "1000 100000"), ("cpu.cfs_quota_us", "1000")] {
                if d.join(file).exists() {
                    std::fs::write(d.join(file), quota)
                        .unwrap_or_else(|e| panic!("{}: {e}", d.join(file).display()));
                }
            }
        }
        if block_io {
            // v1 blkio counts a disk only once it has a throttle rule: give
            // it one that never throttles, 1 TiB/s.
            std::fs::write(&io_file, []).unwrap();
            let (major, minor) = disk_of(&io_file);
            for root in &roots {
                for rule in ["read_bps_device", "write_bps_device"] {
                    let f = root.join(&docker).join(format!("blkio.throttle.{rule}"));
                    if f.exists() {
                        std::fs::write(&f, format!("{major}:{minor} {}", 1u64 << 40))
                            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                    }
                }
            }
        }
        let go = work.join("container-go");
        let spawn =
            |cmd: &mut Command| Kid(cmd.stdin(std::process::Stdio::null()).spawn().unwrap());
        let mut c = TestContainers {
            kids: Vec::new(),
            made,
            go,
        };
        let io_arg = if block_io {
            io_file.to_str().unwrap()
        } else {
            ""
        };
        let script = spawn(Command::new("bash").args([
            "-c",
            CONTAINER_SCRIPT,
            "container",
            c.go.to_str().unwrap(),
            io_arg,
        ]));
        let sleep = spawn(Command::new("sleep").arg("600"));
        for root in &roots {
            move_to(script.pid(), &root.join(&docker));
            move_to(sleep.pid(), &root.join(&kube));
        }
        c.kids.extend([script, sleep]);
        Ok(c)
    }

    /// Let the container's process go on, to the exporter at `port`.
    fn go(&self, port: u16) {
        let tmp = self.go.with_extension("tmp");
        std::fs::write(&tmp, format!("{port}\n")).unwrap();
        std::fs::rename(&tmp, &self.go).unwrap();
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.made.dirs().to_vec()
    }
}
