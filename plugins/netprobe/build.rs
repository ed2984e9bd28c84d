//! Compiles `bpf/netprobe.bpf.c` into `$OUT_DIR/netprobe.skel.rs`.
//!
//! Mirrors the exporter's own build.rs: clang against the exporter's
//! committed `bpf/vmlinux.h` (CO-RE, so one object serves every kernel with
//! BTF), libbpf headers from libbpf-cargo. Unlike the exporter this crate
//! has no switch to build without clang: the crate is nothing but its eBPF
//! program, and the exporter leaves it out with `--no-default-features`.

use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCE: &str = "bpf/netprobe.bpf.c";
/// The exporter's `bpf/` directory, home of the one `vmlinux.h`.
const VMLINUX_DIR: &str = "../../bpf";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed={VMLINUX_DIR}/vmlinux.h");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") | Err(_) => "x86",
        Ok("aarch64") => "arm64",
        Ok("riscv64") => "riscv",
        Ok("powerpc64") => "powerpc",
        Ok("s390x") => "s390",
        Ok(other) => panic!(
            "netprobe: no __TARGET_ARCH for {other}; build the exporter without the \
             `netprobe` feature"
        ),
    };
    if std::process::Command::new("clang")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!(
            "netprobe needs clang to compile {SOURCE}: run scripts/setup.sh or build the \
             exporter without the `netprobe` feature"
        );
    }
    if let Err(e) = SkeletonBuilder::new()
        .source(SOURCE)
        .clang_args([
            format!("-I{VMLINUX_DIR}"),
            format!("-D__TARGET_ARCH_{arch}"),
            "-Wall".to_string(),
            "-O2".to_string(),
        ])
        .build_and_generate(out.join("netprobe.skel.rs"))
    {
        panic!("compiling {SOURCE}: {e:#}");
    }
}
