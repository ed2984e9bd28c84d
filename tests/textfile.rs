//! The textfile collector in the real binary: fixture files served beside
//! our own families, and files rewritten while scrapes run.
//!
//! Only the textfile, loadavg and memory collectors run (`collect[]`) and
//! eBPF is off, so these tests change nothing on the host and need no lock.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use common::{parse, promtool_check, value, Running};

const SCRAPE: &str = "/metrics?collect[]=textfile&collect[]=loadavg&collect[]=memory";

fn start(dir: &Path) -> Running {
    Running::start_env(
        &["--disable-ebpf"],
        &[(
            "HERAKLES_COLLECTORS__TEXTFILE__DIRECTORY",
            dir.to_str().unwrap(),
        )],
    )
}

fn mtime(path: &Path) -> f64 {
    let t = std::fs::metadata(path).unwrap().modified().unwrap();
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as f64
}

#[test]
fn fixture_files_merge_with_ours_and_bad_ones_cost_only_themselves() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/textfile");
    let exp = start(&dir);
    let resp = exp.get(SCRAPE);
    assert_eq!(resp.status, 200);
    let text = resp.text();
    let complaints = promtool_check(&text);
    assert!(complaints.trim().is_empty(), "promtool: {complaints}");
    let s = parse(&text);

    // Valid files, exactly as written: escapes, a histogram, a summary, and a HELP
    // line made up for the family that has none.
    let has = |line: &str| text.lines().any(|l| l == line);
    for line in [
        r#"backup_last_success_timestamp_seconds{target="home \"users\" \\ share"} 1700000300"#,
        r#"backup_duration_seconds_bucket{target="db",le="600"} 5"#,
        r#"backup_duration_seconds_bucket{target="db",le="+Inf"} 6"#,
        r#"backup_duration_seconds_count{target="db"} 6"#,
        "# TYPE backup_duration_seconds histogram",
        "# TYPE backup_chunk_upload_seconds summary",
        r#"backup_chunk_upload_seconds{target="db",quantile="0.99"} 0.31"#,
        r#"backup_chunk_upload_seconds_sum{target="db"} 51.2"#,
        r#"backup_chunk_upload_seconds_count{target="db"} 1024"#,
    ] {
        assert!(has(line), "missing {line}");
    }
    let made_up = format!(
        "# HELP backup_duration_seconds Metric read from {}",
        dir.join("backup.prom").display()
    );
    assert!(has(&made_up), "{made_up}");
    assert_eq!(
        value(
            &s,
            "apt_upgrades_pending",
            &[("origin", "Debian:bookworm/stable")]
        ),
        Some(12.0)
    );
    assert_eq!(value(&s, "node_reboot_required", &[]), Some(0.0));
    assert_eq!(value(&s, "collision_neighbour", &[]), Some(42.0));

    // The malformed and the timestamped file cost their own samples.
    assert!(!text.contains("malformed_metric"), "{text}");
    assert!(!text.contains("stamped_metric"));
    assert!(!text.contains("not_a_prom_file"));

    // A colliding family never replaces or duplicates ours.
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ours = value(&s, "herakles_system_cpu_load_1", &[]).unwrap();
    assert!((ours - load).abs() < 2.0, "{ours} vs /proc/loadavg {load}");
    for family in [
        "herakles_system_cpu_load_1",
        "herakles_system_memory_total_bytes",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {family} gauge\n")).count(),
            1,
            "{family}"
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(&format!("{family} ")))
                .count(),
            1,
            "{family}"
        );
    }

    // mtime for the files read, none for the ones that failed.
    for ok in ["backup.prom", "packages.prom", "collision.prom"] {
        let path = dir.join(ok);
        let file = path.to_str().unwrap();
        assert_eq!(
            value(&s, "herakles_textfile_mtime_seconds", &[("file", file)]),
            Some(mtime(&path)),
            "{ok}"
        );
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("herakles_textfile_mtime_seconds{"))
            .count(),
        3
    );
    assert_eq!(value(&s, "herakles_textfile_scrape_error", &[]), Some(1.0));
    // malformed, stamped, and collision (its dropped families).
    assert_eq!(
        value(
            &s,
            "herakles_collector_parse_errors_total",
            &[("collector", "textfile")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &s,
            "herakles_scrape_collector_success",
            &[("collector", "textfile")]
        ),
        Some(1.0)
    );

    // /health names each problem with its file and line.
    let health: serde_json::Value = serde_json::from_slice(&exp.get("/health").body).unwrap();
    let errors = &health["textfile"]["errors"];
    let malformed = errors[dir.join("malformed.prom").to_str().unwrap()]
        .as_str()
        .unwrap();
    assert!(malformed.starts_with("line 4:"), "{malformed}");
    let stamped = errors[dir.join("stamped.prom").to_str().unwrap()]
        .as_str()
        .unwrap();
    assert!(stamped.contains("timestamp"), "{stamped}");
    assert!(errors[dir.join("collision.prom").to_str().unwrap()]
        .as_str()
        .unwrap()
        .contains("herakles_system_cpu_load_1"));
    assert!(errors
        .get(dir.join("backup.prom").to_str().unwrap())
        .is_none());
}

/// The lines of a file of `n` samples of `name`, sample `i` = `i * factor`.
fn lines(name: &str, n: usize, factor: usize) -> String {
    let mut s = format!("# TYPE {name} gauge\n");
    for i in 0..n {
        s.push_str(&format!("{name}{{n=\"{i}\"}} {}\n", i * factor));
    }
    s
}

/// Two writers rewrite their files as fast as they can while we scrape:
/// one the right way (temporary file, then rename), one in place, a few
/// bytes per write. Whatever the interleaving, every scrape is a valid
/// exposition, the renamed file is always whole and of one generation, and
/// the in-place file contributes only samples it really contains.
#[test]
fn files_rewritten_during_scrapes_never_break_the_exposition() {
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let renamer = {
        let (dir, stop) = (dir.path().to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            let mut generation = 1;
            while !stop.load(Ordering::Relaxed) {
                let tmp = dir.join("atomic.prom.tmp");
                std::fs::write(
                    &tmp,
                    lines("atomic_metric", 50, 0).replace(" 0\n", &format!(" {generation}\n")),
                )
                .unwrap();
                std::fs::rename(&tmp, dir.join("atomic.prom")).unwrap();
                generation += 1;
            }
            generation
        })
    };
    let in_place = {
        let (dir, stop) = (dir.path().to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            let body = lines("inplace_metric", 50, 3);
            let mut rewrites = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut f = std::fs::File::create(dir.join("inplace.prom")).unwrap();
                for chunk in body.as_bytes().chunks(7) {
                    f.write_all(chunk).unwrap();
                }
                rewrites += 1;
            }
            rewrites
        })
    };
    while !dir.path().join("atomic.prom").exists() {
        std::thread::yield_now();
    }

    let exp = start(dir.path());
    let (mut partial, mut skipped) = (0, 0);
    for round in 0..150 {
        let resp = exp.get(SCRAPE);
        assert_eq!(resp.status, 200);
        let text = resp.text();
        if round % 25 == 0 {
            let complaints = promtool_check(&text);
            assert!(complaints.trim().is_empty(), "promtool: {complaints}");
        }
        let s = parse(&text);
        let samples = |name: &str| -> Vec<(String, f64)> {
            s.samples
                .iter()
                .filter(|x| x.metric == name)
                .map(|x| {
                    let v = match x.value {
                        prometheus_parse::Value::Gauge(v) => v,
                        ref other => panic!("{name} is {other:?}"),
                    };
                    (x.labels.get("n").unwrap().to_string(), v)
                })
                .collect()
        };
        let atomic = samples("atomic_metric");
        assert_eq!(atomic.len(), 50, "round {round}: {atomic:?}");
        assert!(atomic.iter().all(|(_, v)| *v == atomic[0].1 && *v >= 1.0));
        let inplace = samples("inplace_metric");
        for (n, v) in &inplace {
            assert_eq!(n.parse::<f64>().unwrap() * 3.0, *v, "round {round}");
        }
        match inplace.len() {
            50 => {}
            0 => skipped += 1,
            _ => partial += 1,
        }
        let error = value(&s, "herakles_textfile_scrape_error", &[]).unwrap();
        assert!(error == 0.0 || error == 1.0);
    }
    stop.store(true, Ordering::Relaxed);
    let generations = renamer.join().unwrap();
    let rewrites = in_place.join().unwrap();
    println!(
        "150 scrapes against {generations} renames and {rewrites} in-place rewrites: \
         in-place file skipped {skipped} times, seen cut at a line end {partial} times"
    );
}
