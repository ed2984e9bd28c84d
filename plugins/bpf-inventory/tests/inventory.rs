//! The inventory against the kernel, on the real host.
//!
//! The test makes its own objects through libbpf (independent of the
//! crate's syscall code), then checks the collector reports exactly their
//! attributes, and that counts and memlock bytes agree with bpftool, which
//! reads the same kernel but through its own code.
//!
//! The host is shared: other programs may load or unload objects while we
//! look. Each comparison therefore takes bpftool's view before and after our
//! collection and is only made when the two are identical, retrying a few
//! times; with identical views before and after, the objects we saw in
//! between are exactly those, so the comparison is exact.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use herakles_bpf_inventory::{BpfInventory, BpfInventoryConfig};
use herakles_core::testing::{collect_with, Collected};
use herakles_core::{BuildCollector, BuildContext, Paths};
use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapHandle, MapType};
use serde_json::Value;

/// The tests create and drop objects; run one at a time so each sees only
/// the churn of other processes, and the fd count only its own fds.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// True when we may walk and create BPF objects; says loudly why not.
fn privileged() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    if caps & (1 << CAP_SYS_ADMIN | 1 << CAP_BPF) == 0 {
        herakles_core::testing::skip("needs CAP_SYS_ADMIN or CAP_BPF to walk BPF objects");
        return false;
    }
    true
}

fn map(name: &str, ty: MapType, key: u32, value: u32, entries: u32) -> MapHandle {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    MapHandle::create(ty, Some(name), key, value, entries, &opts).expect("create map")
}

fn map_id(m: &MapHandle) -> u32 {
    m.info().expect("map info").info.id
}

/// Load a socket filter named `name` that references each map in `uses`
/// (a `ld_imm64` of the map fd apiece) and returns 0.
fn program(name: &str, uses: &[&MapHandle]) -> OwnedFd {
    const BPF_LD_IMM64: u8 = 0x18; // BPF_LD | BPF_DW | BPF_IMM
    const BPF_MOV64_IMM: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const BPF_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    const BPF_PSEUDO_MAP_FD: u8 = 1;
    let insn = |code: u8, dst: u8, src: u8, imm: i32| libbpf_sys::bpf_insn {
        code,
        _bitfield_1: libbpf_sys::bpf_insn::new_bitfield_1(dst, src),
        imm,
        ..Default::default()
    };
    let mut insns = Vec::new();
    for m in uses {
        insns.push(insn(
            BPF_LD_IMM64,
            1,
            BPF_PSEUDO_MAP_FD,
            m.as_fd().as_raw_fd(),
        ));
        insns.push(insn(0, 0, 0, 0));
    }
    insns.push(insn(BPF_MOV64_IMM, 0, 0, 0));
    insns.push(insn(BPF_EXIT, 0, 0, 0));
    let name = CString::new(name).unwrap();
    let license = CString::new("GPL").unwrap();
    // SAFETY: the pointers are valid for the call; a null opts is allowed.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            std::ptr::null_mut(),
        )
    };
    assert!(
        fd >= 0,
        "bpf_prog_load: {}",
        std::io::Error::from_raw_os_error(-fd)
    );
    // SAFETY: a new fd we alone own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn build(config: BpfInventoryConfig) -> BpfInventory {
    let ctx = BuildContext::new(Paths::default(), std::sync::Arc::new(()));
    BpfInventory::build(config, &ctx).unwrap()
}

/// One object as bpftool shows it: type name and memlock bytes.
type Shown = BTreeMap<u64, (String, u64)>;

fn bpftool(what: &str) -> Shown {
    let out = Command::new("bpftool")
        .args([what, "show", "--json"])
        .output()
        .expect("bpftool not found: run scripts/setup.sh (Debian package 'bpftool')");
    assert!(out.status.success(), "bpftool {what} show failed");
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let ty = match &o["type"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (
                o["id"].as_u64().unwrap(),
                (ty, o["bytes_memlock"].as_u64().unwrap()),
            )
        })
        .collect()
}

/// Collect once between two identical bpftool views; returns both.
fn stable_collect(c: &BpfInventory) -> (Collected, Shown, Shown) {
    for _ in 0..20 {
        let (progs, maps) = (bpftool("prog"), bpftool("map"));
        let got = collect_with(c, Paths::default()).expect("collect");
        if progs == bpftool("prog") && maps == bpftool("map") {
            return (got, progs, maps);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the host's BPF objects changed during 20 collections in a row");
}

/// Per-type (count, memlock) totals of a bpftool view.
fn totals(shown: &Shown) -> BTreeMap<String, (f64, f64)> {
    let mut t = BTreeMap::new();
    for (ty, bytes) in shown.values() {
        let e = t.entry(ty.clone()).or_insert((0.0, 0.0));
        e.0 += 1.0;
        e.1 += *bytes as f64;
    }
    t
}

/// The same totals from our output.
fn our_totals(got: &Collected, count: &str, bytes: &str) -> BTreeMap<String, (f64, f64)> {
    got.samples
        .iter()
        .filter(|(n, _, _)| n == count)
        .map(|(_, labels, v)| {
            let ty = labels[0].1.clone();
            let b = got.value(bytes, &[("type", &ty)]).expect("memory by type");
            (ty, (*v, b))
        })
        .collect()
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> &'a str {
    &labels.iter().find(|(k, _)| k == key).unwrap().1
}

#[test]
fn matches_what_we_created_and_bpftool() {
    let _serial = serial();
    if !privileged() {
        return;
    }
    let hash = map("hk_inv_hash", MapType::Hash, 4, 8, 64);
    let array = map("hk_inv_array", MapType::Array, 4, 16, 10);
    let prog = program("hk_inv_prog", &[&hash, &array]);
    let (hash_id, array_id) = (map_id(&hash), map_id(&array));
    let c = build(BpfInventoryConfig {
        per_program: true,
        per_map: true,
        ..BpfInventoryConfig::default()
    });
    let (got, progs, maps) = stable_collect(&c);

    // Our objects, with exactly the attributes we gave them.
    let mine: Vec<_> = got
        .samples
        .iter()
        .filter(|(n, l, _)| {
            n == "herakles_bpf_inventory_map_memory_bytes"
                && label(l, "map_name").starts_with("hk_inv_")
        })
        .collect();
    assert_eq!(mine.len(), 2, "{}", got.text);
    let hash_bytes = maps[&(hash_id as u64)].1 as f64;
    assert_eq!(
        got.value(
            "herakles_bpf_inventory_map_memory_bytes",
            &[
                ("map_id", &hash_id.to_string()),
                ("map_name", "hk_inv_hash"),
                ("map_type", "hash"),
                ("key_size", "4"),
                ("value_size", "8"),
                ("max_entries", "64"),
            ]
        ),
        Some(hash_bytes)
    );
    assert!(hash_bytes > 0.0);
    assert_eq!(
        got.value(
            "herakles_bpf_inventory_map_memory_bytes",
            &[
                ("map_id", &array_id.to_string()),
                ("map_name", "hk_inv_array"),
                ("map_type", "array"),
                ("key_size", "4"),
                ("value_size", "16"),
                ("max_entries", "10"),
            ]
        ),
        Some(maps[&(array_id as u64)].1 as f64)
    );
    let prog_id = progs
        .keys()
        .copied()
        .find(|id| {
            got.samples.iter().any(|(n, l, _)| {
                n == "herakles_bpf_inventory_program_memory_bytes"
                    && label(l, "program_name") == "hk_inv_prog"
                    && label(l, "program_id") == id.to_string()
            })
        })
        .expect("our program is reported under an id bpftool knows");
    let mut assoc = [hash_id, array_id];
    assoc.sort_unstable();
    assert_eq!(
        got.value(
            "herakles_bpf_inventory_program_memory_bytes",
            &[
                ("program_id", &prog_id.to_string()),
                ("program_name", "hk_inv_prog"),
                ("program_type", "socket_filter"),
                ("associated_maps", &format!("{},{}", assoc[0], assoc[1])),
            ]
        ),
        Some(progs[&prog_id].1 as f64)
    );

    // Every object on the host: per type, counts and memlock as bpftool.
    assert_eq!(
        our_totals(
            &got,
            "herakles_bpf_inventory_programs",
            "herakles_bpf_inventory_programs_memory_bytes"
        ),
        totals(&progs)
    );
    assert_eq!(
        our_totals(
            &got,
            "herakles_bpf_inventory_maps",
            "herakles_bpf_inventory_maps_memory_bytes"
        ),
        totals(&maps)
    );
    // And per object: the same ids, types and bytes.
    let per_object = |name: &str, id: &str, ty: &str| -> Shown {
        got.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| {
                (
                    label(l, id).parse().unwrap(),
                    (label(l, ty).to_string(), *v as u64),
                )
            })
            .collect()
    };
    assert_eq!(
        per_object(
            "herakles_bpf_inventory_program_memory_bytes",
            "program_id",
            "program_type"
        ),
        progs
    );
    assert_eq!(
        per_object(
            "herakles_bpf_inventory_map_memory_bytes",
            "map_id",
            "map_type"
        ),
        maps
    );
    assert_eq!(
        got.value("herakles_bpf_inventory_collection_errors_total", &[]),
        Some(0.0)
    );
    drop(prog);
}

#[test]
fn prefix_filter_keeps_matching_programs_and_their_maps() {
    let _serial = serial();
    if !privileged() {
        return;
    }
    let used = map("hkf_used", MapType::Array, 4, 4, 1);
    let used = [used];
    let lone = map("hkp_lone", MapType::Hash, 8, 8, 4);
    let _unrelated = map("hkf_unrelated", MapType::Array, 4, 4, 1);
    let _prog = program("hkp_prog", &[&used[0]]);
    let _other = program("hkf_other", &[]);
    let c = build(BpfInventoryConfig {
        per_program: true,
        per_map: true,
        name_prefixes: vec!["hkp_".into()],
        ..BpfInventoryConfig::default()
    });
    let got = collect_with(&c, Paths::default()).unwrap();
    let names = |name: &str, key: &str| -> Vec<String> {
        let mut v: Vec<String> = got
            .samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, _)| label(l, key).to_string())
            .collect();
        v.sort();
        v
    };
    // Objects named hkp_* elsewhere on the host would show here too; no one
    // else uses that prefix.
    assert_eq!(
        names(
            "herakles_bpf_inventory_program_memory_bytes",
            "program_name"
        ),
        ["hkp_prog"]
    );
    assert_eq!(
        names("herakles_bpf_inventory_map_memory_bytes", "map_name"),
        ["hkf_used", "hkp_lone"]
    );
    assert_eq!(
        got.value(
            "herakles_bpf_inventory_programs",
            &[("type", "socket_filter")]
        ),
        Some(1.0)
    );
    assert_eq!(
        got.value("herakles_bpf_inventory_maps", &[("type", "array")]),
        Some(1.0)
    );
    assert_eq!(
        got.value("herakles_bpf_inventory_maps", &[("type", "hash")]),
        Some(1.0)
    );
    drop(lone);
}

#[test]
fn cap_counts_what_it_skips() {
    let _serial = serial();
    if !privileged() {
        return;
    }
    let _maps: Vec<_> = (0..3)
        .map(|i| map(&format!("hk_cap_{i}"), MapType::Array, 4, 4, 1))
        .collect();
    let c = build(BpfInventoryConfig {
        max_maps: 1,
        ..BpfInventoryConfig::default()
    });
    // Ids past the cap are counted without being opened, so a map another
    // test just closed counts as skipped until the kernel's deferred free
    // drops its id, while bpftool (which opens each id) no longer shows it.
    // Such a map is gone within milliseconds; retry until then.
    let mut tries = 0;
    let (got, maps) = loop {
        let (got, _, maps) = stable_collect(&c);
        let skipped = got.value(
            "herakles_bpf_inventory_collection_skipped_objects",
            &[("kind", "map")],
        );
        tries += 1;
        if skipped == Some(maps.len() as f64 - 1.0) || tries == 20 {
            break (got, maps);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let inspected: f64 = got
        .samples
        .iter()
        .filter(|(n, _, _)| n == "herakles_bpf_inventory_maps")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(inspected, 1.0);
    assert_eq!(
        got.value(
            "herakles_bpf_inventory_collection_skipped_objects",
            &[("kind", "map")],
        ),
        Some(maps.len() as f64 - 1.0)
    );
    assert_eq!(
        got.value(
            "herakles_bpf_inventory_collection_limit_hit_total",
            &[("kind", "map")]
        ),
        // Every collection hit the cap: we hold three maps ourselves.
        got.value(
            "herakles_bpf_inventory_collection_duration_seconds_count",
            &[]
        )
    );
    assert_eq!(
        got.value(
            "herakles_bpf_inventory_collection_limit_hit_total",
            &[("kind", "program")]
        ),
        Some(0.0)
    );
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn no_fd_leak_and_histogram_counts_every_collection() {
    let _serial = serial();
    if !privileged() {
        return;
    }
    let m = map("hk_fd_map", MapType::Hash, 4, 4, 8);
    let p = program("hk_fd_prog", &[&m]);
    let c = build(BpfInventoryConfig {
        per_program: true,
        per_map: true,
        ..BpfInventoryConfig::default()
    });
    collect_with(&c, Paths::default()).unwrap();
    // A leak would grow by at least one fd per object per collection.
    let before = open_fds();
    let mut got = None;
    for _ in 0..100 {
        got = Some(collect_with(&c, Paths::default()).unwrap());
    }
    let after = open_fds();
    assert_eq!(before, after, "fds before and after 100 collections");
    let got = got.unwrap();
    assert_eq!(
        got.value(
            "herakles_bpf_inventory_collection_duration_seconds_count",
            &[]
        ),
        Some(101.0)
    );
    assert_eq!(
        got.value(
            "herakles_bpf_inventory_collection_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        Some(101.0)
    );
    drop(p);
}
