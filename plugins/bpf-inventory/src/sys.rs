//! The bpf(2) commands the inventory needs, on the kernel's uapi structs
//! (`include/uapi/linux/bpf.h`), plus the one number only fdinfo has.
//!
//! Every fd is an [`OwnedFd`], so it is closed when the object has been
//! read, on every path: a scrape leaves no descriptor behind.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `enum bpf_cmd` values.
const BPF_PROG_GET_NEXT_ID: libc::c_int = 11;
const BPF_MAP_GET_NEXT_ID: libc::c_int = 12;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_int = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;

/// The two kinds of object the inventory walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Program,
    Map,
}

impl Kind {
    /// The `kind` label value.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Program => "program",
            Kind::Map => "map",
        }
    }
}

/// The `bpf_attr` member shared by `*_GET_NEXT_ID` and `*_GET_FD_BY_ID`:
/// `start_id` (a union with `prog_id`/`map_id`), `next_id`, `open_flags`.
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// The `bpf_attr` member of `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The leading fields of `struct bpf_prog_info`. The kernel fills at most
/// `info_len` bytes, so a prefix of the struct is a valid request on every
/// kernel that has these fields (all since 4.15).
#[repr(C)]
#[derive(Default)]
struct RawProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// The leading fields of `struct bpf_map_info`.
#[repr(C)]
#[derive(Default)]
struct RawMapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
}

/// What the inventory reports of one program.
#[derive(Debug, Clone)]
pub struct ProgInfo {
    pub id: u32,
    pub prog_type: u32,
    /// The kernel's object name: at most 15 bytes, empty when the loader
    /// gave none.
    pub name: String,
    /// Ids of the maps the program uses, ascending.
    pub map_ids: Vec<u32>,
}

/// What the inventory reports of one map.
#[derive(Debug, Clone)]
pub struct MapInfo {
    pub id: u32,
    pub map_type: u32,
    pub name: String,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed `#[repr(C)]` prefix of
    // `union bpf_attr` for `cmd`, and the size passed is its size; the kernel
    // reads and writes only within it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn is_enoent(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOENT)
}

/// The first id above `after` that exists, or `None` past the last one.
pub fn next_id(kind: Kind, after: u32) -> io::Result<Option<u32>> {
    let cmd = match kind {
        Kind::Program => BPF_PROG_GET_NEXT_ID,
        Kind::Map => BPF_MAP_GET_NEXT_ID,
    };
    let mut attr = IdAttr {
        id: after,
        ..IdAttr::default()
    };
    match bpf(cmd, &mut attr) {
        Ok(_) => Ok(Some(attr.next_id)),
        Err(e) if is_enoent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A new fd on object `id`, or `None` when it was unloaded since its id was
/// listed: objects come and go on a live host, and that is not an error.
pub fn open(kind: Kind, id: u32) -> io::Result<Option<OwnedFd>> {
    let cmd = match kind {
        Kind::Program => BPF_PROG_GET_FD_BY_ID,
        Kind::Map => BPF_MAP_GET_FD_BY_ID,
    };
    let mut attr = IdAttr {
        id,
        ..IdAttr::default()
    };
    match bpf(cmd, &mut attr) {
        // SAFETY: on success the kernel returned a new fd that nothing else
        // owns.
        Ok(fd) => Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })),
        Err(e) if is_enoent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn get_info<T>(fd: &OwnedFd, info: &mut T) -> io::Result<()> {
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<T>() as u32,
        info: info as *mut T as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
}

/// The program behind `fd`.
pub fn prog_info(fd: &OwnedFd) -> io::Result<ProgInfo> {
    // Most programs use a handful of maps; ask again only when the kernel
    // says there are more than the buffer held.
    let mut map_ids = vec![0u32; 16];
    loop {
        let mut raw = RawProgInfo {
            nr_map_ids: map_ids.len() as u32,
            map_ids: map_ids.as_mut_ptr() as u64,
            ..RawProgInfo::default()
        };
        get_info(fd, &mut raw)?;
        let n = raw.nr_map_ids as usize;
        if n > map_ids.len() {
            map_ids = vec![0; n];
            continue;
        }
        map_ids.truncate(n);
        map_ids.sort_unstable();
        return Ok(ProgInfo {
            id: raw.id,
            prog_type: raw.prog_type,
            name: c_name(&raw.name),
            map_ids,
        });
    }
}

/// The map behind `fd`.
pub fn map_info(fd: &OwnedFd) -> io::Result<MapInfo> {
    let mut raw = RawMapInfo::default();
    get_info(fd, &mut raw)?;
    Ok(MapInfo {
        id: raw.id,
        map_type: raw.map_type,
        name: c_name(&raw.name),
        key_size: raw.key_size,
        value_size: raw.value_size,
        max_entries: raw.max_entries,
    })
}

/// The bytes the kernel charges for the object behind `fd`.
///
/// `bpf_*_info` has no such field; the kernel prints it as `memlock:` in the
/// fd's fdinfo, which is where bpftool's `bytes_memlock` comes from too. The
/// fd is ours, so this is always the real `/proc`, never `--path.procfs`.
pub fn memlock(fd: &OwnedFd) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    parse_memlock(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "fdinfo has no parsable memlock line",
        )
    })
}

fn parse_memlock(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

fn c_name(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// `enum bpf_prog_type`, named as libbpf (and so bpftool) names it: the
/// enumerator without `BPF_PROG_TYPE_`, lowercased.
const PROG_TYPES: &[&str] = &[
    "unspec",
    "socket_filter",
    "kprobe",
    "sched_cls",
    "sched_act",
    "tracepoint",
    "xdp",
    "perf_event",
    "cgroup_skb",
    "cgroup_sock",
    "lwt_in",
    "lwt_out",
    "lwt_xmit",
    "sock_ops",
    "sk_skb",
    "cgroup_device",
    "sk_msg",
    "raw_tracepoint",
    "cgroup_sock_addr",
    "lwt_seg6local",
    "lirc_mode2",
    "sk_reuseport",
    "flow_dissector",
    "cgroup_sysctl",
    "raw_tracepoint_writable",
    "cgroup_sockopt",
    "tracing",
    "struct_ops",
    "ext",
    "lsm",
    "sk_lookup",
    "syscall",
    "netfilter",
];

/// `enum bpf_map_type`, named as libbpf names it.
const MAP_TYPES: &[&str] = &[
    "unspec",
    "hash",
    "array",
    "prog_array",
    "perf_event_array",
    "percpu_hash",
    "percpu_array",
    "stack_trace",
    "cgroup_array",
    "lru_hash",
    "lru_percpu_hash",
    "lpm_trie",
    "array_of_maps",
    "hash_of_maps",
    "devmap",
    "sockmap",
    "cpumap",
    "xskmap",
    "sockhash",
    "cgroup_storage",
    "reuseport_sockarray",
    "percpu_cgroup_storage",
    "queue",
    "stack",
    "sk_storage",
    "devmap_hash",
    "struct_ops",
    "ringbuf",
    "inode_storage",
    "task_storage",
    "bloom_filter",
    "user_ringbuf",
    "cgrp_storage",
    "arena",
];

/// The name of a program or map type; a type newer than this table is
/// reported by number (as bpftool does) rather than dropped.
pub fn type_name(kind: Kind, t: u32) -> std::borrow::Cow<'static, str> {
    let table = match kind {
        Kind::Program => PROG_TYPES,
        Kind::Map => MAP_TYPES,
    };
    match table.get(t as usize) {
        Some(name) => (*name).into(),
        None => t.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uapi_layouts() {
        // Offsets of the last field we read, from include/uapi/linux/bpf.h.
        assert_eq!(std::mem::offset_of!(RawProgInfo, map_ids), 56);
        assert_eq!(std::mem::offset_of!(RawProgInfo, name), 64);
        assert_eq!(std::mem::offset_of!(RawMapInfo, name), 24);
        assert_eq!(size_of::<InfoAttr>(), 16);
    }

    #[test]
    fn memlock_line() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1055\n\
                      map_type:\t1\nkey_size:\t4\nvalue_size:\t8\nmax_entries:\t64\n\
                      map_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t4096\nmap_id:\t7\nfrozen:\t0\n";
        assert_eq!(parse_memlock(fdinfo), Some(4096));
        assert_eq!(parse_memlock("pos:\t0\n"), None);
        assert_eq!(parse_memlock("memlock:\tlots\n"), None);
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name(Kind::Program, 26), "tracing");
        assert_eq!(type_name(Kind::Map, 27), "ringbuf");
        assert_eq!(type_name(Kind::Map, 500), "500");
    }

    #[test]
    fn vanished_ids_are_none_not_errors() {
        match open(Kind::Map, u32::MAX) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("SKIPPED: needs CAP_SYS_ADMIN or CAP_BPF to open BPF objects");
            }
            r => {
                assert!(matches!(r, Ok(None)), "{r:?}");
                assert!(matches!(open(Kind::Program, u32::MAX), Ok(None)));
            }
        }
    }

    #[test]
    fn names_stop_at_nul() {
        assert_eq!(c_name(b"abc\0\0\0"), "abc");
        assert_eq!(c_name(b"0123456789abcdef"), "0123456789abcdef");
    }
}
