//! Parsers for the per-process files under `/proc/<pid>`.
//!
//! They take bytes, not `&str`: a process chooses its own `comm`, and nothing
//! stops it from choosing invalid UTF-8, so decoding happens only where a
//! label is produced. Every parser returns `None` rather than panicking on a
//! file it does not understand; the caller counts that as a read error.

/// The per-process files whose failures are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Stat,
    Cmdline,
    Exe,
    Io,
    Smaps,
}

impl FileKind {
    pub const ALL: [FileKind; 5] = [
        FileKind::Stat,
        FileKind::Cmdline,
        FileKind::Exe,
        FileKind::Io,
        FileKind::Smaps,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FileKind::Stat => "stat",
            FileKind::Cmdline => "cmdline",
            FileKind::Exe => "exe",
            FileKind::Io => "io",
            FileKind::Smaps => "smaps",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// The fields of `/proc/<pid>/stat` the exporter uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The `comm` between the parentheses, raw.
    pub comm: Vec<u8>,
    pub state: u8,
    pub ppid: u32,
    /// `flags` (field 9); carries `PF_KTHREAD`.
    pub flags: u64,
    /// User and system CPU time in clock ticks (fields 14 and 15).
    pub utime: u64,
    pub stime: u64,
    /// Start time after boot in clock ticks (field 22). Together with the
    /// pid it identifies a process for its whole life: pids are reused,
    /// (pid, starttime) pairs are not.
    pub starttime: u64,
    /// Resident set size in pages (field 24).
    pub rss_pages: u64,
}

/// `PF_KTHREAD` from `include/linux/sched.h`.
const PF_KTHREAD: u64 = 0x0020_0000;

impl Stat {
    /// Kernel threads have no user memory, no exe and no cmdline.
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// Parse `/proc/<pid>/stat`.
///
/// `comm` may contain spaces and `)` (a process can name itself `a) b (c`),
/// so the fields after it are located from the *last* `)` in the line, which
/// the kernel always writes right after `comm`.
pub fn parse_stat(buf: &[u8]) -> Option<Stat> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = buf[open + 1..close].to_vec();
    let rest = std::str::from_utf8(buf.get(close + 1..)?).ok()?;
    // `rest` starts at field 3 (state).
    let mut f = rest.split_ascii_whitespace();
    let state = *f.next()?.as_bytes().first()?;
    let ppid = f.next()?.parse().ok()?;
    // Fields 5..=8: pgrp session tty_nr tpgid.
    let mut f = f.skip(4);
    let flags = f.next()?.parse().ok()?;
    // Fields 10..=13: minflt cminflt majflt cmajflt.
    let mut f = f.skip(4);
    let utime = f.next()?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    // Fields 16..=21: cutime cstime priority nice num_threads itrealvalue.
    let mut f = f.skip(6);
    let starttime = f.next()?.parse().ok()?;
    // Field 23: vsize. rss may be negative in theory (it is a signed long).
    let mut f = f.skip(1);
    let rss: i64 = f.next()?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        flags,
        utime,
        stime,
        starttime,
        rss_pages: rss.max(0) as u64,
    })
}

/// Block I/O counters from `/proc/<pid>/io`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Io {
    /// Bytes this process caused to be fetched from storage.
    pub read_bytes: u64,
    /// Bytes this process caused to be sent to storage.
    pub write_bytes: u64,
    pub syscr: u64,
    pub syscw: u64,
}

/// Parse `/proc/<pid>/io`. All four keys must be present: a partial record
/// would make counters jump when the missing key reappears.
pub fn parse_io(buf: &[u8]) -> Option<Io> {
    let text = std::str::from_utf8(buf).ok()?;
    let (mut rb, mut wb, mut cr, mut cw) = (None, None, None, None);
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let slot = match k.trim() {
            "read_bytes" => &mut rb,
            "write_bytes" => &mut wb,
            "syscr" => &mut cr,
            "syscw" => &mut cw,
            _ => continue,
        };
        *slot = Some(v.trim().parse().ok()?);
    }
    Some(Io {
        read_bytes: rb?,
        write_bytes: wb?,
        syscr: cr?,
        syscw: cw?,
    })
}

/// Memory accounting from `/proc/<pid>/smaps_rollup` (or `smaps`), in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Smaps {
    pub rss: u64,
    pub pss: u64,
    /// Private_Clean + Private_Dirty: what the process alone holds, and what
    /// its exit would free.
    pub uss: u64,
    pub swap: u64,
}

/// Parse `smaps_rollup`, or sum a full `smaps`: both are `Key: N kB` lines,
/// the rollup having one block and `smaps` one per mapping, so summing
/// every matching line serves both.
pub fn parse_smaps(buf: &[u8]) -> Option<Smaps> {
    let mut sum = SmapsSum::default();
    for line in buf.split(|&b| b == b'\n') {
        sum.line(line);
    }
    sum.finish()
}

/// [`parse_smaps`] a line at a time, for a full `smaps` read as a stream:
/// it grows with the number of mappings, which the process chooses.
///
/// Lines are bytes: the header line of a mapping names the mapped file,
/// and a file name need not be UTF-8. Only the `Key: N kB` lines are
/// decoded, and one of those that does not parse spoils the whole result,
/// as a partial sum would be a wrong number rather than a missing one.
#[derive(Debug, Default)]
pub struct SmapsSum {
    sum: Smaps,
    seen: bool,
    bad: bool,
}

impl SmapsSum {
    pub fn line(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let slot = match &line[..colon] {
            b"Rss" => &mut self.sum.rss,
            b"Pss" => &mut self.sum.pss,
            b"Private_Clean" | b"Private_Dirty" => &mut self.sum.uss,
            b"Swap" => &mut self.sum.swap,
            _ => return,
        };
        let kb = std::str::from_utf8(&line[colon + 1..])
            .ok()
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok());
        match kb {
            Some(kb) => {
                *slot = slot.saturating_add(kb.saturating_mul(1024));
                self.seen = true;
            }
            None => self.bad = true,
        }
    }

    /// The sums, or `None` if no key line was seen or one was damaged.
    pub fn finish(self) -> Option<Smaps> {
        (self.seen && !self.bad).then_some(self.sum)
    }
}

/// The real uid of `/proc/<pid>/status` (the first number of its `Uid:`
/// line). The file is bytes: its `Name:` line is the process's own choice.
pub fn status_uid(buf: &[u8]) -> Option<u32> {
    let line = buf
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"Uid:"))?;
    std::str::from_utf8(line)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `/proc/<pid>/cmdline` as one line: NUL separators become spaces, the
/// trailing NUL is dropped, invalid UTF-8 is replaced.
pub fn cmdline_to_string(buf: &[u8]) -> String {
    let trimmed = buf.strip_suffix(&[0]).unwrap_or(buf);
    let spaced: Vec<u8> = trimmed
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&spaced).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STAT: &[u8] = b"1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_with_parens_and_spaces_in_comm() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.comm, b"a) b (c)");
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.flags, 4194560);
        assert_eq!((s.utime, s.stime), (250, 75));
        assert_eq!(s.starttime, 98765);
        assert_eq!(s.rss_pages, 2048);
        assert!(!s.is_kernel_thread());
    }

    #[test]
    fn kernel_thread_flag() {
        let line = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 3 0 0 20 0 1 0 1 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 0 0 0 0 0 0\n";
        assert!(parse_stat(line).unwrap().is_kernel_thread());
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(parse_stat(b"1 (x) S 1 1"), None);
        assert_eq!(parse_stat(b")("), None);
        assert_eq!(parse_stat(b""), None);
    }

    #[test]
    fn io_exact_and_partial() {
        let text = b"rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_io(text),
            Some(Io {
                read_bytes: 4096,
                write_bytes: 8192,
                syscr: 3,
                syscw: 4
            })
        );
        assert_eq!(parse_io(b"rchar: 10\nsyscr: 3\n"), None);
    }

    #[test]
    fn smaps_rollup_and_full_smaps() {
        let rollup = b"55a0-7ffd ---p 00000000 00:00 0 [rollup]\nRss: 1000 kB\nPss: 600 kB\nPss_Anon: 500 kB\nShared_Clean: 300 kB\nPrivate_Clean: 100 kB\nPrivate_Dirty: 400 kB\nSwap: 8 kB\nSwapPss: 8 kB\n";
        assert_eq!(
            parse_smaps(rollup),
            Some(Smaps {
                rss: 1000 * 1024,
                pss: 600 * 1024,
                uss: 500 * 1024,
                swap: 8 * 1024
            })
        );
        let full = b"00400000-00401000 r-xp 0 08:01 1 /bin/x\nRss: 4 kB\nPss: 2 kB\nPrivate_Clean: 0 kB\nPrivate_Dirty: 0 kB\nSwap: 0 kB\nVmFlags: rd ex\n00600000-00700000 rw-p 0 00:00 0\nRss: 96 kB\nPss: 96 kB\nPrivate_Clean: 0 kB\nPrivate_Dirty: 96 kB\nSwap: 4 kB\nVmFlags: rd wr\n";
        assert_eq!(
            parse_smaps(full),
            Some(Smaps {
                rss: 100 * 1024,
                pss: 98 * 1024,
                uss: 96 * 1024,
                swap: 4 * 1024
            })
        );
        assert_eq!(parse_smaps(b""), None);
        assert_eq!(parse_smaps(b"Rss: lots\n"), None);
    }

    #[test]
    fn cmdline_nuls_and_bad_utf8() {
        assert_eq!(cmdline_to_string(b"java\0-cp\0x.jar\0"), "java -cp x.jar");
        assert_eq!(cmdline_to_string(b"a\xffb\0"), "a\u{fffd}b");
        assert_eq!(cmdline_to_string(b""), "");
    }

    /// A `stat` line as the kernel prints it, with the fields the parser
    /// reads taken from `f`: (ppid, flags, utime, stime, starttime, rss).
    fn stat_line(comm: &[u8], f: (u32, u64, u64, u64, u64, i64)) -> Vec<u8> {
        let (ppid, flags, utime, stime, start, rss) = f;
        let mut line = b"4321 (".to_vec();
        line.extend_from_slice(comm);
        line.extend_from_slice(
            format!(
                ") R {ppid} 1 1 0 -1 {flags} 5 0 0 0 {utime} {stime} 0 0 20 0 1 0 {start} 999 {rss} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
            )
            .as_bytes(),
        );
        line
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    proptest! {
        #[test]
        fn stat_never_panics(bytes in bytes(400)) {
            if let Some(s) = parse_stat(&bytes) {
                prop_assert!(s.comm.len() < bytes.len());
            }
        }

        #[test]
        fn stat_like_lines_never_panic(comm in ".{0,20}", tail in "[ 0-9a-z()-]{0,200}") {
            let line = format!("1 ({comm}) {tail}");
            let _ = parse_stat(line.as_bytes());
        }

        /// Whatever bytes a process names itself (parentheses, spaces,
        /// newlines, invalid UTF-8; the kernel allows 15 of them, a
        /// kernel thread up to 63), the fields after it are read exactly.
        #[test]
        fn stat_fields_survive_any_comm(
            comm in bytes(64),
            f in (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<i64>()),
        ) {
            let s = parse_stat(&stat_line(&comm, f)).unwrap();
            prop_assert_eq!(&s.comm, &comm);
            prop_assert_eq!(s.state, b'R');
            prop_assert_eq!((s.ppid, s.flags, s.utime, s.stime, s.starttime), (f.0, f.1, f.2, f.3, f.4));
            prop_assert_eq!(s.rss_pages, f.5.max(0) as u64);
        }

        /// One word of a valid line replaced by anything but a parenthesis
        /// or a space (only `comm` can hold those: the kernel writes the
        /// rest): the parse fails or reads the same numbers, never others.
        #[test]
        fn stat_with_a_mutated_word(word in 0usize..52, junk in "[^\\s()]{0,24}") {
            let f = (1, 2, 3, 4, 5, 6);
            let line = String::from_utf8(stat_line(b"x", f)).unwrap();
            let mut words: Vec<&str> = line.split(' ').collect();
            let at = word % words.len();
            words[at] = &junk;
            if let Some(s) = parse_stat(words.join(" ").as_bytes()) {
                let want = parse_stat(line.as_bytes()).unwrap();
                let fields = |s: &Stat| (s.ppid, s.flags, s.utime, s.stime, s.starttime, s.rss_pages);
                // A replacement that is itself a number may change that
                // one field; every other field is unchanged.
                let (a, b) = (fields(&s), fields(&want));
                let same = [a.0 == b.0, a.1 == b.1, a.2 == b.2, a.3 == b.3, a.4 == b.4, a.5 == b.5];
                prop_assert!(same.iter().filter(|x| !**x).count() <= 1, "{:?} vs {:?}", a, b);
            }
        }

        #[test]
        fn io_status_and_smaps_never_panic(bytes in bytes(400)) {
            let _ = parse_io(&bytes);
            let _ = parse_smaps(&bytes);
            let _ = status_uid(&bytes);
        }

        /// `io` in any key order, among other keys, reads exactly.
        #[test]
        fn io_round_trips(
            v in (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
            order in Just([0usize, 1, 2, 3, 4, 5]).prop_shuffle(),
        ) {
            let lines = [
                format!("read_bytes: {}", v.0),
                format!("write_bytes: {}", v.1),
                format!("syscr: {}", v.2),
                format!("syscw: {}", v.3),
                "rchar: 7".to_string(),
                "cancelled_write_bytes: 9".to_string(),
            ];
            let text: String = order.iter().map(|&i| format!("{}\n", lines[i])).collect();
            prop_assert_eq!(
                parse_io(text.as_bytes()),
                Some(Io { read_bytes: v.0, write_bytes: v.1, syscr: v.2, syscw: v.3 })
            );
        }

        /// Sums over any number of mappings, saturating rather than
        /// wrapping; one damaged value spoils the result.
        #[test]
        fn smaps_sums_and_damage(
            maps in proptest::collection::vec((any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()), 1..20),
            name in bytes(40),
            damage in proptest::option::of(0usize..100),
        ) {
            let mut text = Vec::new();
            let mut want = Smaps::default();
            for (i, (rss, pss, private, swap)) in maps.iter().enumerate() {
                // The header names a file: any bytes but a newline.
                text.extend_from_slice(b"7f00-7f01 r--p 0 08:01 1 /");
                text.extend(name.iter().map(|&b| if b == b'\n' { b'_' } else { b }));
                text.push(b'\n');
                let bad = damage == Some(i);
                let rss_text = if bad { "12x kB".to_string() } else { format!("{rss} kB") };
                text.extend_from_slice(
                    format!("Rss: {rss_text}\nPss: {pss} kB\nPrivate_Clean: {private} kB\nPrivate_Dirty: 1 kB\nSwap: {swap} kB\n").as_bytes(),
                );
                let kb = |v: u32| u64::from(v) * 1024;
                want.rss += kb(*rss);
                want.pss += kb(*pss);
                want.uss += kb(*private) + 1024;
                want.swap += kb(*swap);
            }
            let damaged = damage.is_some_and(|d| d < maps.len());
            prop_assert_eq!(parse_smaps(&text), (!damaged).then_some(want));
        }

        /// Whatever the command line, one line of bounded size comes out.
        #[test]
        fn cmdline_is_one_bounded_line(bytes in bytes(400)) {
            let s = cmdline_to_string(&bytes);
            prop_assert!(!s.contains('\0'));
            prop_assert!(s.len() <= 3 * bytes.len());
        }

        /// The uid is found whatever the process called itself.
        #[test]
        fn status_uid_after_any_name(name in bytes(64), uid in any::<u32>()) {
            let mut text = b"Name:\t".to_vec();
            text.extend(name.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
            text.extend_from_slice(format!("\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t{uid}\t{uid}\t0\t0\nGid:\t0\t0\t0\t0\n").as_bytes());
            prop_assert_eq!(status_uid(&text), Some(uid));
        }
    }
}
