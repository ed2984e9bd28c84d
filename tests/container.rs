//! The container image: built FROM scratch by scripts/build-image.sh, run
//! under podman with the host's /proc, /sys and / mounted read-only and only
//! the unit's capabilities, it reports a process this test started on the
//! host, with eBPF working.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::Running;

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");

/// Removes the image when the test ends, however it ends.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "--force", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn podman_image_size(tag: &str) -> u64 {
    let out = Command::new("podman")
        .args(["image", "inspect", "--format", "{{.Size}}", tag])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The RSS of `pid` from /proc/PID/status, in bytes.
fn vm_rss(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap()
        * 1024.0
}

#[test]
fn image_from_scratch_reports_a_host_process() {
    let tag = format!(
        "localhost/herakles-node-exporter:test-{}",
        std::process::id()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-image.sh");
    let out = Command::new(&script)
        .args(["--binary", BIN, "--tag", &tag])
        .output()
        .expect("scripts/build-image.sh");
    assert!(
        out.status.success(),
        "build-image.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = Image(tag);
    eprintln!("image {}: {} bytes", image.0, podman_image_size(&image.0));

    // A host process with a name of its own: a copy of sleep.
    let dir = tempfile::tempdir().unwrap();
    let probe_exe = dir.path().join("hne-probe");
    std::fs::copy("/bin/sleep", &probe_exe).unwrap();
    let mut probe = Command::new(&probe_exe).arg("120").spawn().unwrap();
    let pid = probe.id().to_string();

    // The capabilities of the default unit, as a DaemonSet grants them;
    // host network so it serves on (and reports) the host's interfaces.
    // runc: crun refuses hosts with hybrid cgroups. The rlimits are set
    // explicitly because raising podman's defaults needs CAP_SYS_RESOURCE,
    // which a sandboxed runner may lack.
    let mut cmd = Command::new("podman");
    cmd.args([
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--network",
        "host",
        "--read-only",
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
        "--cap-drop",
        "all",
        "--cap-add",
        "SYS_PTRACE,DAC_READ_SEARCH,BPF,PERFMON,SYS_ADMIN",
        "-v",
        "/proc:/host/proc:ro",
        "-v",
        "/sys:/host/sys:ro",
        "-v",
        "/:/host/root:ro",
        &image.0,
        "-p",
        "0",
        "--bind",
        "127.0.0.1",
    ]);
    let started = Instant::now();
    let exp = Running::spawn(cmd);
    let metrics = exp.get("/metrics");
    eprintln!(
        "podman run to first scrape: {:.2}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(metrics.status, 200);
    let s = common::parse(&exp.get("/metrics").text());
    let health: serde_json::Value = serde_json::from_str(&exp.get("/health").text()).unwrap();
    let rss_now = vm_rss(probe.id());
    drop(exp);
    let _ = probe.kill();
    let _ = probe.wait();

    let rss = common::value(
        &s,
        "herakles_mem_process_rss_bytes",
        &[("pid", &pid), ("name", "hne-probe")],
    )
    .unwrap_or_else(|| panic!("host process {pid} not reported"));
    assert!(
        (rss - rss_now).abs() <= rss_now * 0.2,
        "RSS {rss} vs /proc {rss_now}"
    );
    common::assert_all_healthy(&health);
    // The host's root filesystem, through the /host/root mount.
    assert!(
        common::value(
            &s,
            "herakles_system_filesystem_size_bytes",
            &[("mountpoint", "/")]
        )
        .is_some_and(|v| v > 0.0),
        "no size for the host's /"
    );
}
