//! What several collectors share, so that no collector reaches into
//! another: the PSI file format, include/exclude name filters, sysfs
//! attribute readers and the `key value` lines of `/proc/stat`.
//!
//! Like node_exporter's `*_common.go` files, each helper is here because at
//! least two collectors parse or filter the same thing the same way; a
//! helper with one user belongs back in that collector's file.

pub mod name_filter;
pub mod proc_stat;
pub mod psi;
pub mod sysfs;
