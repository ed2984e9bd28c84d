//! Every herakles configuration block printed in the spec's documents is a
//! fixture in `tests/fixtures/spec_configs/`, copied unchanged and named by
//! document (000 the main spec, 001 its predecessor) and section. Operators
//! copy these blocks, so each must pass `--check-config` and mean what it
//! says: every key it sets is in the effective configuration.
//!
//! The one normalisation is a file path that must exist: the TLS blocks name
//! certificate files under `/etc/herakles/certs/`, which the test replaces
//! by a certificate and key it generates with openssl.
//!
//! `--check-config` builds every enabled collector, eBPF programs included,
//! so run this file under the suite lock.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");

/// The blocks: every yaml/toml block of 000 and 001 that is a herakles
/// config or rules file (the others are Prometheus, Docker Compose and
/// systemd files).
const FIXTURES: &[&str] = &[
    "000-configuration-high-performance.yaml",
    "000-configuration-minimal.yaml",
    "000-configuration-production.yaml",
    "000-ebpf-config-file.yaml",
    "000-ebpf-metrics-disable-ebpf.yaml",
    "000-subgroups-custom.toml",
    "000-tls-config-file.yaml",
    "000-troubleshooting-ebpf-enabled.yaml",
    "001-configuration-high-performance.yaml",
    "001-configuration-minimal.yaml",
    "001-configuration-production.yaml",
    "001-subgroups-custom.toml",
    "001-tls-config-file.yaml",
];

/// Where the spec's TLS blocks keep the certificate and key.
const SPEC_CERTS: &str = "/etc/herakles/certs/";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec_configs")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A self-signed certificate and its key in `dir`, made as the spec says
/// (with a smaller key, for speed).
fn certificates(dir: &Path) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .arg("-keyout")
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(dir.join("server.crt"))
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .output()
        .expect("openssl missing: run scripts/setup.sh");
    assert!(out.status.success(), "openssl: {}", stderr(&out));
}

/// The fixture as a config file to run with: itself, or for a TLS block a
/// copy in `tmp` whose certificate paths point at generated files.
fn config_file(name: &str, tmp: &Path) -> PathBuf {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    if !text.contains(SPEC_CERTS) {
        return path;
    }
    certificates(tmp);
    let copy = tmp.join(name);
    let certs = format!("{}/", tmp.display());
    std::fs::write(&copy, text.replace(SPEC_CERTS, &certs)).unwrap();
    copy
}

#[test]
fn the_fixtures_are_every_block() {
    let mut found: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, FIXTURES);
}

#[test]
fn every_spec_config_block_passes_check_config_and_takes_effect() {
    let tmp = tempfile::tempdir().unwrap();
    for name in FIXTURES.iter().filter(|n| n.ends_with(".yaml")) {
        let file = config_file(name, tmp.path());
        let file = file.to_str().unwrap();
        let out = run(&["-c", file, "--check-config"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{name}: {err}");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("configuration OK"),
            "{name}"
        );
        assert!(!err.contains(" WARN "), "{name} warns: {err}");

        // Every key the block sets has its value in the effective config.
        let shown = run(&["-c", file, "--show-config", "--config-format", "json"]);
        assert_eq!(shown.status.code(), Some(0), "{name}: {}", stderr(&shown));
        let effective: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        let block: serde_json::Value = serde_norway::from_str(&text).unwrap();
        for (key, value) in block.as_object().unwrap() {
            assert_eq!(&effective[key], value, "{name}: key {key}");
        }
    }
}

/// The custom rules blocks load as a rules file and define their three
/// subgroups.
#[test]
fn every_spec_subgroups_block_loads() {
    for name in FIXTURES.iter().filter(|n| n.ends_with(".toml")) {
        let file = dir().join(name);
        let file = file.to_str().unwrap();
        let out = run(&["--no-config", "--subgroups-file", file, "--check-config"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let out = run(&[
            "--no-config",
            "--subgroups-file",
            file,
            "subgroups",
            "--group",
            "myapp",
        ]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let table = String::from_utf8_lossy(&out.stdout);
        for sub in ["api", "worker", "frontend"] {
            assert!(
                table
                    .lines()
                    .any(|l| l.split_whitespace().take(2).eq(["myapp", sub])),
                "{name}: myapp/{sub} missing:\n{table}"
            );
        }
    }
}

/// The spec's TLS blocks serve what they say: `/metrics` over HTTPS with
/// the certificate they name (here the generated one), trusted by curl as
/// its own CA, and nothing over plain HTTP.
#[test]
fn spec_tls_blocks_serve_https() {
    let tmp = tempfile::tempdir().unwrap();
    for name in FIXTURES.iter().filter(|n| n.contains("-tls-")) {
        let file = config_file(name, tmp.path());
        let mut cmd = Command::new(BIN);
        cmd.args([
            "-c",
            file.to_str().unwrap(),
            "-p",
            "0",
            "--bind",
            "127.0.0.1",
        ]);
        let exp = common::Running::spawn(cmd);
        let log = exp.log.lock().unwrap().join("\n");
        assert!(log.contains("listening on https://"), "{name}: {log}");
        let port = exp.addr.port();
        let cert = tmp.path().join("server.crt");
        let (code, body, err) = common::tls::curl(
            &format!("https://localhost:{port}/metrics"),
            &[
                "--cacert",
                cert.to_str().unwrap(),
                "--resolve",
                &format!("localhost:{port}:127.0.0.1"),
            ],
        );
        assert_eq!(code, 200, "{name}: {err}");
        assert!(body.contains("herakles_exporter_build_info"), "{name}");
        let (code, _, _) = common::tls::curl(&format!("http://127.0.0.1:{port}/metrics"), &[]);
        assert_ne!(code, 200, "{name}: plain HTTP on the HTTPS port");
    }
}
