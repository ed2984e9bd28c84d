//! What the process table hands the collectors each scrape: processes,
//! groups, and containers, pods, units and users, with the sums over them
//! (made in [`super::aggregate`]).

use std::sync::Arc;
use std::time::Duration;

use super::parse::{CtxSwitches, Io, Smaps};
use super::placement::{Attribution, Placed};
use super::smaps::Refreshed;
use super::snapshot::ReadErrors;
use crate::attribution::fds::Limit;
use crate::config::Dimension;

/// Cumulative per-process counters, in clock ticks, bytes and events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub utime: u64,
    pub stime: u64,
    pub io: Io,
    pub minflt: u64,
    pub majflt: u64,
    /// Grown only by increases; see the module documentation.
    pub ctx: CtxSwitches,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.utime = self.utime.saturating_add(o.utime);
        self.stime = self.stime.saturating_add(o.stime);
        self.io.read_bytes = self.io.read_bytes.saturating_add(o.io.read_bytes);
        self.io.write_bytes = self.io.write_bytes.saturating_add(o.io.write_bytes);
        self.io.syscr = self.io.syscr.saturating_add(o.io.syscr);
        self.io.syscw = self.io.syscw.saturating_add(o.io.syscw);
        self.minflt = self.minflt.saturating_add(o.minflt);
        self.majflt = self.majflt.saturating_add(o.majflt);
        self.ctx.voluntary = self.ctx.voluntary.saturating_add(o.ctx.voluntary);
        self.ctx.involuntary = self.ctx.involuntary.saturating_add(o.ctx.involuntary);
    }
}

/// One process as the collectors see it.
#[derive(Clone, Debug)]
pub struct ProcView {
    pub pid: u32,
    pub comm: String,
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    pub rss: u64,
    /// PSS/USS/swap and the age of that data, when smaps was read.
    pub smaps: Option<(Smaps, Duration)>,
    pub totals: Totals,
    /// Whether `io` was readable (else `totals.io` is zeros).
    pub has_io: bool,
    /// CPU seconds per wall second since the previous scrape; `None` on a
    /// process's first scrape.
    pub cpu_rate: Option<f64>,
    /// The `stat` state letter.
    pub state: u8,
    pub threads: u64,
    pub vsize: u64,
    /// Start time in clock ticks after boot.
    pub starttime: u64,
    /// Open file descriptors, when counted.
    pub open_fds: Option<u64>,
    /// Whether `totals.ctx` was read.
    pub has_ctx: bool,
    /// Where it runs, as far as known.
    pub placed: Placed,
}

impl ProcView {
    pub fn pss(&self) -> Option<u64> {
        self.smaps.map(|(s, _)| s.pss)
    }
    pub fn uss(&self) -> Option<u64> {
        self.smaps.map(|(s, _)| s.uss)
    }

    /// Open descriptors over the open-files limit, when both are known and
    /// the limit is finite and not zero.
    pub fn fd_ratio(&self) -> Option<f64> {
        match (self.open_fds, self.placed.fd_limit) {
            (Some(open), Some(Limit::Value(limit))) if limit > 0 => {
                Some(open as f64 / limit as f64)
            }
            _ => None,
        }
    }

    /// What per-process series and the cap rank by: USS, else RSS (USS
    /// never exceeds it).
    pub fn memory(&self) -> u64 {
        self.uss().unwrap_or(self.rss)
    }
}

/// Everything the process collectors export for one scrape.
#[derive(Debug, Default)]
pub struct View {
    pub procs: Vec<ProcView>,
    pub groups: Vec<GroupView>,
    /// Per container, pod, unit and user, for `attribution_aggregates`.
    pub entities: Vec<EntityView>,
    /// Indices into `procs` of the processes that get per-process series:
    /// none without `per_process_metrics`, else those past `min_uss_kb`,
    /// the largest `max_process_series` of them. In pid order.
    pub shown: Vec<usize>,
    /// Processes left out of per-process series by `max_process_series`,
    /// in this scrape and summed over every scrape so far.
    pub capped: usize,
    pub capped_total: u64,
    /// Boot time, seconds since the epoch (`btime` of `/proc/stat`).
    pub boot_time: Option<f64>,
    /// Cumulative failed reads per file kind.
    pub errors: ReadErrors,
    /// Cumulative reads given up on after the deadline, per file kind.
    pub timeouts: ReadErrors,
    /// Reads given up on that are still blocked, each costing one thread
    /// and one process left out of the series.
    pub blocked: usize,
    pub scan_seconds: f64,
    pub smaps: Refreshed,
}

/// Process states as process-exporter names them, from the state letter of
/// `stat`.
pub const STATES: [&str; 5] = ["running", "sleeping", "disk_sleep", "zombie", "other"];

/// The index into [`STATES`] of a `stat` state letter.
pub fn state_index(state: u8) -> usize {
    match state {
        b'R' => 0,
        b'S' => 1,
        b'D' => 2,
        b'Z' => 3,
        // T stopped, t traced, I idle (kernel), X dead, W, P: rare.
        _ => 4,
    }
}

/// One (group, subgroup).
#[derive(Clone, Debug)]
pub struct GroupView {
    pub group: Arc<str>,
    pub subgroup: Arc<str>,
    /// Live members; 0 for a group kept only for its counters.
    pub members: usize,
    pub rss: u64,
    /// Sums over the members whose smaps data is known.
    pub pss: u64,
    pub swap: u64,
    pub cpu_rate: f64,
    /// Live members plus exited ones.
    pub totals: Totals,
    pub threads: u64,
    pub vsize: u64,
    /// Live members per state, indexed like [`STATES`].
    pub states: [u64; 5],
    /// Open descriptors of the members whose count is known (`None` when
    /// no member's is), and the highest ratio of open descriptors to the
    /// open-files limit among the members whose limit is known too.
    pub open_fds: Option<u64>,
    pub worst_fd_ratio: Option<f64>,
    /// Start time (clock ticks after boot) of the oldest live member.
    pub oldest_start: Option<u64>,
}

/// One container, pod, unit or user.
#[derive(Clone, Debug)]
pub struct EntityView {
    pub dim: Dimension,
    /// The container or pod id, the unit or user name.
    pub id: String,
    /// The labels naming it: `container_id` and `container_runtime` (and
    /// `pod_uid` when in a pod), `pod_uid` and `qos_class`, `unit`,
    /// `user`.
    pub labels: Vec<(&'static str, String)>,
    pub members: usize,
    pub rss: u64,
    /// Sums over the members whose smaps data is known.
    pub pss: u64,
    pub uss: u64,
    pub swap: u64,
    /// Live members plus members that left.
    pub totals: Totals,
    /// A member's attribution, to find the container's, pod's or unit's
    /// cgroup; `None` for users.
    pub attribution: Option<Arc<Attribution>>,
}
