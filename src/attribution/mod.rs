//! Attribution: which container, pod, systemd unit and user a process
//! belongs to, what the kernel accounts to its cgroup, and the per-process
//! facts process-exporter reports per group (context switches, open file
//! descriptors and their limit).
//!
//! Everything here is a building block with no state of its own beyond a
//! cache of user names: parsers over bytes, and readers that take a
//! directory. The process table decides when to call them. See
//! `docs/attribution.md` for the formats recognised and the labels they
//! produce.
//!
//! Reading order: [`proc_cgroup`] parses `/proc/<pid>/cgroup`;
//! [`container`] and [`systemd`] read a container, pod or unit out of one
//! cgroup path; [`identity`] combines them for one process; [`hierarchy`]
//! finds that process's cgroup directories under `--path.sysfs` and
//! [`accounting`] reads the kernel's counters there. [`users`] maps uids to
//! names, [`status`] and [`fds`] are the per-process readers.
//!
//! Every file is read with `herakles_core::read_bytes` and a limit chosen
//! for it: a cgroup path, a passwd file or an `io.stat` must cost a known
//! amount of memory however large a hostile or broken tree makes it, and
//! a file longer than its limit is an error, never half-parsed.

pub mod accounting;
pub mod container;
pub mod fds;
pub mod hierarchy;
pub mod identity;
pub mod proc_cgroup;
pub mod status;
pub mod systemd;
pub mod users;
