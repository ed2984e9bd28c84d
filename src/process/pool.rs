//! Reading many processes' files on a few threads, when any one read may
//! never return.
//!
//! A read of `/proc/<pid>/cmdline` (or `environ`, `smaps_rollup`...) takes
//! the target's mmap lock; if that process is stuck holding it (a page
//! fault on a dead NFS server, a hung FUSE daemon), the read blocks until
//! the lock is released, with no timeout, and only a fatal signal to the
//! exporter would end it. A scan that waits for it waits forever, and every
//! collector built on the process table goes down with it.
//!
//! So the work runs on `workers` threads of our own (not scoped: a scan must
//! be able to return while one of them is still blocked) that take items
//! from a shared queue, one at a time. Each thread publishes which item and
//! which file it is on and since when. The scanning thread collects results
//! and checks those marks; a read older than the deadline is *abandoned*:
//! its process is given up for this scan, recorded in the [`Stuck`]
//! registry, and a new thread takes the abandoned one's place in the queue.
//! The abandoned thread stays blocked in the kernel; when its read finally
//! returns, it removes its registry entry and ends. Until then the scans
//! skip that process, so one stuck process costs one blocked thread, not
//! one per scrape, and its series are all it loses.
//!
//! The normal path pays for this with one atomic compare-and-swap per file
//! and one uncontended lock per process (each worker keeps its results in a
//! list of its own), next to three reads and a readlink; the scanning
//! thread sleeps until a worker ends or a deadline check is due.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::parse::FileKind;

/// A process as far as the pool knows it: its pid, and its start time once
/// read (a stuck `stat` leaves it unknown).
pub type Ident = (u32, Option<u64>);

/// At most this many threads are left blocked at once. Past it, a stuck
/// worker is still given up on but not replaced, so a host where every
/// process hangs costs a bounded number of threads, and the scan finishes
/// (with fewer processes) on the workers that remain.
pub const MAX_BLOCKED: usize = 64;

/// Processes with a read that was abandoned and has not returned yet, with
/// the file it is blocked in. Shared by every scan (and the smaps refresh)
/// of one process table.
#[derive(Clone, Default)]
pub struct Stuck(Arc<Mutex<Vec<(Ident, FileKind)>>>);

impl Stuck {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Ident, FileKind)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads blocked right now.
    pub fn blocked(&self) -> usize {
        self.lock().len()
    }

    /// The processes a scan starting now must leave alone.
    pub fn skip_set(&self) -> Skip {
        Skip(self.lock().iter().map(|(id, _)| *id).collect())
    }
}

/// What a scan skips: a snapshot of [`Stuck`] taken when it starts, so the
/// workers look it up without a lock.
#[derive(Default)]
pub struct Skip(HashSet<Ident>);

impl Skip {
    /// Whether the process is blocked in an earlier read: a pid blocked in
    /// `stat` (start time unknown) matches whatever its start time.
    pub fn contains(&self, pid: u32, starttime: Option<u64>) -> bool {
        !self.0.is_empty()
            && (self.0.contains(&(pid, None))
                || starttime.is_some_and(|s| self.0.contains(&(pid, Some(s)))))
    }
}

/// No item: the worker is between items.
const IDLE: u64 = 0;
/// Set by the scanning thread on a worker it gave up on.
const ABANDONED: u64 = u64::MAX;
const UNKNOWN_START: u64 = u64::MAX;

/// One worker's progress, read by the scanning thread.
///
/// `state` packs the item (index + 1, high 32 bits), the file being read (4
/// bits) and when that read started (milliseconds since the run started, 28
/// bits: three days, far beyond any scan). Changing it by compare-and-swap
/// is what makes "the worker finished" and "the scan gave up on it" exclude
/// each other.
struct Slot {
    state: AtomicU64,
    /// The start time of the current item once known, for the registry.
    starttime: AtomicU64,
}

impl Slot {
    fn pack(index: usize, file: FileKind, ms: u64) -> u64 {
        ((index as u64 + 1) << 32) | ((file as u64) << 28) | (ms & 0x0fff_ffff)
    }

    fn unpack(state: u64) -> Option<(usize, FileKind, u64)> {
        if state == IDLE || state == ABANDONED {
            return None;
        }
        let index = (state >> 32) as usize - 1;
        let file = FileKind::ALL[((state >> 28) & 0xf) as usize];
        Some((index, file, state & 0x0fff_ffff))
    }
}

/// The handle a job reports its progress through.
pub struct Task<'a> {
    slot: &'a Slot,
    index: usize,
    epoch: Instant,
    state: std::cell::Cell<u64>,
}

impl Task<'_> {
    /// About to read `file`: restarts the deadline. False when the scan
    /// has given up on this item; the job should then return at once (its
    /// result is dropped).
    pub fn reading(&self, file: FileKind) -> bool {
        let ms = self.epoch.elapsed().as_millis() as u64;
        let next = Slot::pack(self.index, file, ms);
        match self.slot.state.compare_exchange(
            self.state.get(),
            next,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                self.state.set(next);
                true
            }
            Err(_) => false,
        }
    }

    /// The item's start time, once `stat` told it.
    pub fn identify(&self, starttime: u64) {
        self.slot.starttime.store(starttime, Ordering::Release);
    }
}

/// Limits of one [`run`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub workers: usize,
    /// How long one read may take before its item is abandoned.
    pub deadline: Duration,
    /// No item is started after this (the smaps budget); `None` for a scan,
    /// which reads everything.
    pub stop_at: Option<Instant>,
}

/// What one [`run`] did.
pub struct Outcome<R> {
    /// Results, in no particular order.
    pub results: Vec<(Ident, R)>,
    /// Items given up on, with the file each was blocked in.
    pub abandoned: Vec<(Ident, FileKind)>,
    /// Items never started: `stop_at` passed, or every worker was stuck
    /// and [`MAX_BLOCKED`] reached.
    pub unstarted: usize,
}

/// A worker as the scanning thread sees it.
struct Worker<R> {
    slot: Arc<Slot>,
    /// What it finished, collected when the run ends: sending each result
    /// would wake the scanning thread once per process.
    done: Arc<Mutex<Vec<(Ident, R)>>>,
    /// Joined when the run ends, so that a scan leaves no thread behind
    /// but the blocked ones (and the next scan's threads reuse the
    /// allocator arenas of these); a worker given up on is let go.
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Sent by a worker that ran out of items (or of time) and ended.
struct Exit;

/// A job: read one process, with a worker's scratch state, reporting
/// progress through the [`Task`].
pub type Job<S, R> = Arc<dyn Fn(Ident, &mut S, &Task) -> R + Send + Sync>;

/// The part of a run every worker thread holds.
struct Shared<S, R> {
    items: Arc<[Ident]>,
    next: Arc<AtomicUsize>,
    epoch: Instant,
    stop_at: Option<Instant>,
    stuck: Stuck,
    state: Arc<dyn Fn() -> S + Send + Sync>,
    job: Job<S, R>,
    late: Arc<dyn Fn(Ident, R) + Send + Sync>,
}

impl<S: 'static, R: Send + 'static> Shared<S, R> {
    fn clone(&self) -> Shared<S, R> {
        Shared {
            items: self.items.clone(),
            next: self.next.clone(),
            epoch: self.epoch,
            stop_at: self.stop_at,
            stuck: self.stuck.clone(),
            state: self.state.clone(),
            job: self.job.clone(),
            late: self.late.clone(),
        }
    }

    /// Start a worker; `None` if the system refused a thread.
    fn spawn(&self, tx: &mpsc::Sender<Exit>) -> Option<Worker<R>> {
        let mut worker = Worker {
            slot: Arc::new(Slot {
                state: AtomicU64::new(IDLE),
                starttime: AtomicU64::new(UNKNOWN_START),
            }),
            done: Arc::default(),
            thread: None,
        };
        let (slot, done) = (worker.slot.clone(), worker.done.clone());
        let shared = self.clone();
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("herakles-proc".into())
            // Parsing needs little stack, and an abandoned thread keeps its
            // stack for as long as its read blocks.
            .stack_size(256 * 1024)
            .spawn(move || {
                shared.work(&slot, &done);
                // Not sent by a worker given up on: it was counted then.
                if slot.state.load(Ordering::Acquire) != ABANDONED {
                    let _ = tx.send(Exit);
                }
            });
        match spawned {
            Ok(thread) => {
                worker.thread = Some(thread);
                Some(worker)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a /proc reader thread");
                None
            }
        }
    }

    fn work(&self, slot: &Slot, done: &Mutex<Vec<(Ident, R)>>) {
        let mut scratch = (self.state)();
        loop {
            if self.stop_at.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            let index = self.next.fetch_add(1, Ordering::AcqRel);
            let Some(&ident) = self.items.get(index) else {
                break;
            };
            slot.starttime
                .store(ident.1.unwrap_or(UNKNOWN_START), Ordering::Release);
            let ms = self.epoch.elapsed().as_millis() as u64;
            let state = Slot::pack(index, FileKind::Stat, ms);
            // Only this thread moves the slot out of IDLE.
            slot.state.store(state, Ordering::Release);
            let task = Task {
                slot,
                index,
                epoch: self.epoch,
                state: std::cell::Cell::new(state),
            };
            // A panicking job (a parser bug) costs its item, not the
            // worker: a dead worker would look blocked forever.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (self.job)(ident, &mut scratch, &task)
            }));
            let finished = slot
                .state
                .compare_exchange(task.state.get(), IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            let result = match result {
                Ok(r) => Some(r),
                Err(_) => {
                    tracing::error!(pid = ident.0, "reading a process panicked; skipped");
                    None
                }
            };
            if !finished {
                // Given up on while blocked: the read has returned now.
                let start = slot.starttime.load(Ordering::Acquire);
                let ident = (ident.0, (start != UNKNOWN_START).then_some(start));
                // The result first: a scan that no longer skips the process
                // must find it.
                if let Some(result) = result {
                    (self.late)(ident, result);
                }
                let mut registry = self.stuck.lock();
                if let Some(i) = registry.iter().position(|(id, _)| *id == ident) {
                    registry.swap_remove(i);
                }
                drop(registry);
                tracing::info!(pid = ident.0, "blocked /proc read returned");
                return;
            }
            if let Some(result) = result {
                let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                done.push((ident, result));
            }
        }
    }
}

/// Run `job` over `items` under `limits`; see the module documentation.
///
/// `state` makes each worker's scratch state (a read buffer). `late` gets
/// the result of an abandoned item when its read finally returns, just
/// before its registry entry goes; most callers drop it.
pub fn run<S, R>(
    items: Arc<[Ident]>,
    limits: Limits,
    stuck: &Stuck,
    state: Arc<dyn Fn() -> S + Send + Sync>,
    job: Job<S, R>,
    late: Arc<dyn Fn(Ident, R) + Send + Sync>,
) -> Outcome<R>
where
    S: 'static,
    R: Send + 'static,
{
    let n = items.len();
    let mut out = Outcome {
        results: Vec::with_capacity(n),
        abandoned: Vec::new(),
        unstarted: 0,
    };
    if n == 0 {
        return out;
    }
    let epoch = Instant::now();
    let shared = Shared {
        items,
        next: Arc::new(AtomicUsize::new(0)),
        epoch,
        stop_at: limits.stop_at,
        stuck: stuck.clone(),
        state,
        job,
        late,
    };
    // Kept here (not only in the workers) to hand to replacements.
    let (tx, rx) = mpsc::channel::<Exit>();
    let mut workers: Vec<Worker<R>> = (0..limits.workers.clamp(1, n))
        .filter_map(|_| shared.spawn(&tx))
        .collect();
    // Given up on, with the results they finished before.
    let mut gone: Vec<Worker<R>> = Vec::new();
    let deadline_ms = (limits.deadline.as_millis() as u64).max(1);
    let tick = (limits.deadline / 4).clamp(Duration::from_millis(1), Duration::from_millis(250));
    let mut next_check = Instant::now() + tick;
    // Workers that will still send `Exit`.
    let mut live = workers.len();
    while live > 0 {
        let now = Instant::now();
        if now >= next_check {
            next_check = now + tick;
            let elapsed_ms = epoch.elapsed().as_millis() as u64;
            let mut replace = 0;
            let mut i = 0;
            while i < workers.len() {
                let slot = &workers[i].slot;
                let state = slot.state.load(Ordering::Acquire);
                let Some((index, file, since)) = Slot::unpack(state) else {
                    i += 1;
                    continue;
                };
                if elapsed_ms.saturating_sub(since) < deadline_ms {
                    i += 1;
                    continue;
                }
                // The registry lock is taken before the swap and held until
                // the entry is in, so a worker whose read returns right
                // after the swap (it takes the same lock) finds its entry.
                let mut registry = stuck.lock();
                if slot
                    .state
                    .compare_exchange(state, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    i += 1;
                    continue; // it just finished that read
                }
                let start = slot.starttime.load(Ordering::Acquire);
                let ident = (
                    shared.items[index].0,
                    (start != UNKNOWN_START).then_some(start),
                );
                registry.push((ident, file));
                let blocked = registry.len();
                drop(registry);
                tracing::warn!(
                    pid = ident.0,
                    file = file.name(),
                    deadline_ms,
                    "a /proc read blocked past the deadline; \
                     leaving the process out until it returns"
                );
                out.abandoned.push((ident, file));
                live -= 1;
                if blocked < MAX_BLOCKED {
                    replace += 1;
                }
                gone.push(workers.swap_remove(i));
            }
            for _ in 0..replace {
                if shared.next.load(Ordering::Acquire) >= n {
                    break;
                }
                if let Some(worker) = shared.spawn(&tx) {
                    workers.push(worker);
                    live += 1;
                }
            }
        }
        match rx.recv_timeout(next_check.saturating_duration_since(Instant::now())) {
            Ok(Exit) => live -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Cannot happen while `tx` is alive here.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    out.unstarted = n - shared.next.swap(n, Ordering::AcqRel).min(n);
    for w in &mut workers {
        // Every one of these has sent `Exit`: it is returning.
        if let Some(thread) = w.thread.take() {
            let _ = thread.join();
        }
    }
    for w in workers.iter().chain(&gone) {
        let mut done = w.done.lock().unwrap_or_else(|e| e.into_inner());
        out.results.append(&mut done);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Condvar;

    fn items(n: u32) -> Arc<[Ident]> {
        (0..n).map(|pid| (pid, None)).collect::<Vec<_>>().into()
    }

    fn limits(workers: usize, deadline_ms: u64) -> Limits {
        Limits {
            workers,
            deadline: Duration::from_millis(deadline_ms),
            stop_at: None,
        }
    }

    #[test]
    fn a_panicking_job_costs_its_item() {
        let stuck = Stuck::default();
        let out = run(
            items(10),
            limits(2, 60_000),
            &stuck,
            Arc::new(|| ()),
            Arc::new(|(pid, _), _: &mut (), _: &Task| {
                assert_ne!(pid, 3, "deliberate test panic");
                pid
            }),
            Arc::new(|_, _| {}),
        );
        let mut got: Vec<u32> = out.results.iter().map(|(_, r)| *r).collect();
        got.sort();
        assert_eq!(got, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
        assert!(out.abandoned.is_empty());
        assert_eq!(stuck.blocked(), 0);
    }

    #[test]
    fn a_blocked_item_is_given_up_replaced_and_delivered_late() {
        let stuck = Stuck::default();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let late = Arc::new(Mutex::new(Vec::new()));
        let (g, l) = (gate.clone(), late.clone());
        // One worker: the scan only finishes if the stuck one is replaced.
        let out = run(
            items(6),
            limits(1, 20),
            &stuck,
            Arc::new(|| ()),
            Arc::new(move |(pid, _), _: &mut (), task: &Task| {
                assert!(task.reading(FileKind::Cmdline));
                if pid == 2 {
                    task.identify(77);
                    let (open, cv) = &*g;
                    let mut open = open.lock().unwrap();
                    while !*open {
                        open = cv.wait(open).unwrap();
                    }
                }
                pid
            }),
            Arc::new(move |ident, r| l.lock().unwrap().push((ident, r))),
        );
        let mut got: Vec<u32> = out.results.iter().map(|(_, r)| *r).collect();
        got.sort();
        assert_eq!(got, [0, 1, 3, 4, 5]);
        assert_eq!(out.abandoned, [((2, Some(77)), FileKind::Cmdline)]);
        assert_eq!(out.unstarted, 0);
        assert_eq!(stuck.blocked(), 1);
        let skip = stuck.skip_set();
        assert!(skip.contains(2, Some(77)));
        assert!(!skip.contains(2, Some(78)), "a reused pid is not skipped");

        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        for _ in 0..1000 {
            if stuck.blocked() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(stuck.blocked(), 0);
        assert_eq!(*late.lock().unwrap(), [((2, Some(77)), 2)]);
    }
}
