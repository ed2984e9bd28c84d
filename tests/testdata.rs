//! `generate-testdata` and `-t`: the exporter serves exactly the file's
//! samples through its normal HTTP path, marked synthetic, and the
//! generated families are the ones the real collectors emit.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::time::Instant;

use common::{parse, promtool_check, Running};

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");

fn generate(dir: &std::path::Path, seed: &str) -> (std::path::PathBuf, serde_json::Value) {
    let file = dir.join(format!("testdata-{seed}.json"));
    let out = Command::new(BIN)
        .args(["--no-config", "generate-testdata", "--seed", seed, "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let data = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    (file, data)
}

type Labels = BTreeMap<String, String>;

/// Samples by (family, labels).
fn samples(s: &prometheus_parse::Scrape) -> HashMap<(String, Labels), f64> {
    s.samples
        .iter()
        .map(|x| {
            let labels: Labels = x
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let v = match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            ((x.metric.clone(), labels), v)
        })
        .collect()
}

/// Families the exporter adds to every scrape, test data or not.
fn exporter_own(name: &str) -> bool {
    name.starts_with("process_")
        || name.starts_with("herakles_scrape_")
        || name.starts_with("herakles_http_")
        || name.starts_with("herakles_exporter_config_")
        || name == "herakles_collector_parse_errors_total"
        || name == "herakles_exporter_build_info"
        || name == "herakles_testdata_info"
}

#[test]
fn serves_exactly_the_file_and_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = generate(dir.path(), "5");
    let file_arg = file.to_str().unwrap();
    let spawned = Instant::now();
    let exp = Running::start(&["-t", file_arg]);
    let resp = exp.get("/metrics");
    let bound = spawned.elapsed().as_secs_f64();
    assert_eq!(resp.status, 200);
    let text = resp.text();
    let complaints = promtool_check(&text);
    assert!(complaints.trim().is_empty(), "promtool: {complaints}");

    let scrape = parse(&text);
    let mut got = samples(&scrape);
    let mut expected_families = BTreeSet::new();
    for fam in data["families"].as_array().unwrap() {
        let name = fam["name"].as_str().unwrap();
        expected_families.insert(name.to_string());
        assert!(
            text.contains(&format!(
                "# TYPE {name} {}\n",
                fam["type"].as_str().unwrap()
            )),
            "{name}: type line"
        );
        for s in fam["samples"].as_array().unwrap() {
            let labels: Labels = s["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let v = got
                .remove(&(name.to_string(), labels.clone()))
                .unwrap_or_else(|| panic!("{name}{labels:?} not served"));
            let base = s["value"].as_f64().unwrap();
            let rate = s["rate"].as_f64().unwrap_or(0.0);
            // Served at some moment between the exporter's start and now.
            let (lo, hi) = (base, base + rate * bound);
            let eps = 1e-9 * base.abs().max(1.0);
            assert!(
                v >= lo - eps && v <= hi + eps,
                "{name}{labels:?}: {v} not in [{lo}, {hi}]"
            );
        }
    }
    // Nothing else but the exporter's own families.
    let extra: BTreeSet<&str> = got
        .keys()
        .map(|(n, _)| n.as_str())
        .filter(|n| !exporter_own(n))
        .collect();
    assert!(extra.is_empty(), "served beyond the file: {extra:?}");

    // Marked synthetic, and the coordinator ran it as one collector.
    let info = scrape
        .samples
        .iter()
        .find(|s| s.metric == "herakles_testdata_info")
        .expect("herakles_testdata_info");
    assert_eq!(info.labels.get("file"), Some(file_arg));
    assert!(info
        .labels
        .get("description")
        .unwrap()
        .contains("synthetic"));
    assert_eq!(
        common::value(
            &scrape,
            "herakles_scrape_collector_success",
            &[("collector", "testdata")]
        ),
        Some(1.0)
    );
    // Through the normal path: gzip and /health work as for live data.
    let gz = common::get_with(exp.addr, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let health: serde_json::Value = serde_json::from_str(&exp.get("/health").text()).unwrap();
    assert_eq!(
        health["collectors"]["testdata"]["healthy"], true,
        "{health}"
    );

    // Counters keep growing at their rate, as a dashboard's rate() expects.
    let rate_sample = data["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "herakles_system_context_switches_total")
        .unwrap()["samples"][0]
        .clone();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let later = common::value(
        &parse(&exp.get("/metrics").text()),
        "herakles_system_context_switches_total",
        &[],
    )
    .unwrap();
    assert!(
        later > rate_sample["value"].as_f64().unwrap(),
        "counter did not grow"
    );
}

#[test]
fn bad_test_data_exits_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        "{\"description\": \"x\",\n\"families\": [\n{\"name\": \"g\", \"type\": \"gauge\", \"help\": \"\",\n\"samples\": [{\"value\": 1, \"labels\": {\"a\": 3}}]}]}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--no-config", "-p", "0", "-t"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:4:", file.display())),
        "no file:line in {err}"
    );
    assert!(err.contains("families[0].samples[0].labels.a"), "{err}");
}

/// The generator writes the real collectors' family names, types and label
/// names: a collector renaming a family or a label fails here, not in a
/// dashboard built on test data.
#[test]
fn generated_families_match_what_the_collectors_emit() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = generate(dir.path(), "1");
    // eBPF and the BPF inventory add nothing the generator writes.
    let exp = Running::start(&["--disable-ebpf", "--no-collector.bpf_inventory"]);
    exp.get("/metrics");
    // The second scrape has the per-process CPU percent (a difference).
    let real = parse(&exp.get("/metrics").text());
    let mut real_families: HashMap<String, (String, BTreeSet<BTreeSet<String>>)> = HashMap::new();
    for s in &real.samples {
        let kind = match s.value {
            prometheus_parse::Value::Counter(_) => "counter",
            prometheus_parse::Value::Gauge(_) => "gauge",
            _ => "other",
        };
        let e = real_families
            .entry(s.metric.clone())
            .or_insert_with(|| (kind.to_string(), BTreeSet::new()));
        e.1.insert(s.labels.keys().cloned().collect());
    }
    let mut wrong = Vec::new();
    for fam in data["families"].as_array().unwrap() {
        let name = fam["name"].as_str().unwrap();
        let Some((kind, label_sets)) = real_families.get(name) else {
            wrong.push(format!("{name}: not emitted by the exporter"));
            continue;
        };
        if kind != fam["type"].as_str().unwrap() {
            wrong.push(format!("{name}: type {kind} vs {}", fam["type"]));
        }
        for s in fam["samples"].as_array().unwrap() {
            let labels: BTreeSet<String> = s["labels"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            if !label_sets.contains(&labels) {
                wrong.push(format!("{name}: labels {labels:?}, real {label_sets:?}"));
                break;
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
