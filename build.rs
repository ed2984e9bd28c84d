//! Build metadata for `herakles_exporter_build_info`, and (feature `ebpf`)
//! the eBPF skeletons.
//!
//! Every `bpf/*.bpf.c` is compiled by clang against the committed
//! `bpf/vmlinux.h` (CO-RE: field offsets are relocated at load time against
//! the running kernel's BTF, so one object serves every kernel) and turned
//! into `$OUT_DIR/<stem>.skel.rs` by libbpf-cargo. The libbpf headers
//! (`bpf_helpers.h`, ...) come from libbpf-cargo itself, so no libbpf-dev or
//! bpftool is needed to build.

use std::path::Path;
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    let revision =
        output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BUILD_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=BUILD_GIT_REVISION={revision}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=build.rs");

    #[cfg(feature = "ebpf")]
    ebpf::build(Path::new("bpf"));
    #[cfg(not(feature = "ebpf"))]
    let _ = Path::new("bpf");
}

#[cfg(feature = "ebpf")]
mod ebpf {
    use libbpf_cargo::SkeletonBuilder;
    use std::path::{Path, PathBuf};

    /// Compiles each `*.bpf.c` in `dir` into a skeleton in `OUT_DIR`.
    pub fn build(dir: &Path) {
        println!("cargo:rerun-if-changed={}", dir.display());
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
            Ok("x86_64") => "x86",
            Ok("aarch64") => "arm64",
            Ok("riscv64") => "riscv",
            Ok("powerpc64") => "powerpc",
            Ok("s390x") => "s390",
            Ok(other) => panic!(
                "eBPF programs: no __TARGET_ARCH for {other}; build with --no-default-features"
            ),
            Err(_) => "x86",
        };
        if std::process::Command::new("clang")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!(
                "the `ebpf` feature needs clang to compile bpf/*.bpf.c: run scripts/setup.sh \
                 (installs clang, libelf-dev, zlib1g-dev, pkg-config) or build with \
                 --no-default-features"
            );
        }
        let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
            .collect();
        sources.sort();
        for src in sources {
            println!("cargo:rerun-if-changed={}", src.display());
            let name = src.file_name().unwrap().to_string_lossy();
            let stem = name.trim_end_matches(".bpf.c");
            let skel = out.join(format!("{stem}.skel.rs"));
            if let Err(e) = SkeletonBuilder::new()
                .source(&src)
                .clang_args([
                    format!("-I{}", dir.display()),
                    format!("-D__TARGET_ARCH_{arch}"),
                    "-Wall".to_string(),
                    "-O2".to_string(),
                ])
                .build_and_generate(&skel)
            {
                panic!("compiling {}: {e:#}", src.display());
            }
        }
    }
}
