//! The Kubernetes manifests: valid against the API schemas (offline, with
//! the validators scripts/setup.sh puts in target/venv), consistent with
//! each other, and granting the capabilities the unit grants.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

fn validate(files: &[&Path]) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run scripts/setup.sh (it installs the validators)",
        python.display()
    );
    let out = Command::new(python)
        .arg(root.join("scripts/validate-manifests.py"))
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn manifest(name: &str) -> String {
    std::fs::read_to_string(Path::new(DIR).join(name)).unwrap()
}

#[test]
fn manifests_validate_against_the_api_schemas() {
    let files: Vec<_> = ["daemonset.yaml", "service.yaml", "servicemonitor.yaml"]
        .iter()
        .map(|f| Path::new(DIR).join(f))
        .collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (ok, text) = validate(&refs);
    eprintln!("{text}");
    assert!(ok, "{text}");
    assert_eq!(text.matches("PASS").count(), 3, "{text}");

    // The validators are strict: a misspelt field fails each kind.
    let dir = tempfile::tempdir().unwrap();
    for (file, from, to) in [
        ("daemonset.yaml", "hostPID: true", "hostPid: true"),
        ("service.yaml", "clusterIP: None", "clusterIp: None"),
        ("servicemonitor.yaml", "interval: 30s", "intervall: 30s"),
    ] {
        let broken = dir.path().join(file);
        let text = manifest(file);
        assert!(text.contains(from), "{file}: {from}");
        std::fs::write(&broken, text.replace(from, to)).unwrap();
        let (ok, out) = validate(&[&broken]);
        assert!(
            !ok && out.contains("FAIL"),
            "{file} with {to} passed:\n{out}"
        );
    }
}

#[test]
fn daemonset_grants_the_capabilities_of_the_default_unit() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--no-config", "install", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let unit = std::fs::read_to_string(
        root.path()
            .join("etc/systemd/system/herakles-node-exporter.service"),
    )
    .unwrap();
    let mut unit_caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .unwrap()
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .collect();
    let ds = manifest("daemonset.yaml");
    let add = ds
        .lines()
        .find_map(|l| l.trim().strip_prefix("add: "))
        .expect("capabilities add line");
    let mut ds_caps: Vec<String> = serde_json::from_str(add).unwrap();
    unit_caps.sort();
    ds_caps.sort();
    assert_eq!(ds_caps, unit_caps);
    assert!(ds.contains("drop: [\"ALL\"]"));
    // The image scripts/build-image.sh tags for this version.
    assert!(
        ds.contains(concat!(
            "image: herakles-node-exporter:",
            env!("CARGO_PKG_VERSION"),
            "\n"
        )),
        "DaemonSet image is not this version's"
    );
}
