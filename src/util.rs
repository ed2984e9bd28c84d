//! Small helpers shared by the CLI, config and HTTP layers.

/// The candidate closest to `input`, if it is close enough to be a likely
/// typo. Used for every "unknown name" error so that a misspelt key or
/// collector gets a suggestion instead of a wall of valid names.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Escape text for inclusion in HTML element content or attribute values.
///
/// Every HTML page the exporter serves shows strings that whoever runs a
/// process chooses (names, command lines), so nothing reaches a page
/// without passing through here.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Block device names by device number (`8:0` → `sda`), from
/// `<sysfs>/dev/block/MAJ:MIN/uevent`, read once per device: the names
/// `/proc/diskstats` and the disk collector use, for series that come with
/// a device number (eBPF block I/O, cgroup `io.stat`).
pub struct BlockDevices {
    sysfs: std::path::PathBuf,
    names: std::sync::Mutex<std::collections::HashMap<(u32, u32), std::sync::Arc<str>>>,
}

impl BlockDevices {
    pub fn new(sysfs: &std::path::Path) -> BlockDevices {
        BlockDevices {
            sysfs: sysfs.to_path_buf(),
            names: std::sync::Mutex::default(),
        }
    }

    /// The name of device `major:minor`, or `major:minor` itself when
    /// sysfs does not know it.
    pub fn name(&self, major: u32, minor: u32) -> std::sync::Arc<str> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names
            .entry((major, minor))
            .or_insert_with(|| {
                let path = self.sysfs.join(format!("dev/block/{major}:{minor}/uevent"));
                // A uevent is a few short lines.
                herakles_core::read_text(path, 64 << 10)
                    .ok()
                    .and_then(|t| devname_from_uevent(&t).map(std::sync::Arc::from))
                    .unwrap_or_else(|| std::sync::Arc::from(format!("{major}:{minor}")))
            })
            .clone()
    }
}

/// The `DEVNAME=` of a `/sys/dev/block/MAJ:MIN/uevent` file.
pub fn devname_from_uevent(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["memory", "loadavg", "filesystem"];
        assert_eq!(did_you_mean("memroy", names), Some("memory"));
        assert_eq!(did_you_mean("filesytem", names), Some("filesystem"));
        assert_eq!(did_you_mean("zzz", names), None);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            html_escape("<script>alert('x')&\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;"
        );
    }

    #[test]
    fn uevent_devname() {
        let t = "MAJOR=253\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=9\n";
        assert_eq!(devname_from_uevent(t), Some("vda"));
        assert_eq!(devname_from_uevent("MAJOR=1\nDEVNAME=\n"), None);
    }

    #[test]
    fn block_device_names_from_sysfs() {
        let sys = tempfile::tempdir().unwrap();
        let dev = sys.path().join("dev/block/8:0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("uevent"), "MAJOR=8\nMINOR=0\nDEVNAME=sda\n").unwrap();
        let names = BlockDevices::new(sys.path());
        assert_eq!(&*names.name(8, 0), "sda");
        assert_eq!(&*names.name(8, 16), "8:16");
    }
}

/// Linux capabilities of this process, for `check` and the eBPF preflight.
pub mod caps {
    /// Capability numbers (`include/uapi/linux/capability.h`).
    pub const CAP_DAC_READ_SEARCH: u32 = 2;
    pub const CAP_SYS_PTRACE: u32 = 19;
    pub const CAP_SYS_ADMIN: u32 = 21;
    pub const CAP_PERFMON: u32 = 38;
    pub const CAP_BPF: u32 = 39;

    /// This process's effective set from `/proc/self/status`. Always the
    /// real `/proc`, never `--path.procfs`: a host's procfs mounted in a
    /// container describes the host's processes, not the exporter.
    pub fn effective() -> Result<u64, String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .ok_or("no CapEff line in /proc/self/status")?;
        u64::from_str_radix(hex.trim(), 16).map_err(|e| e.to_string())
    }

    /// Whether `caps` holds capability `bit`.
    pub fn has(caps: u64, bit: u32) -> bool {
        caps & (1u64 << bit) != 0
    }
}

/// The regex crate renders syntax errors as a multi-line diagram. Only its
/// final `error: ...` line carries the meaning; keeping just that preserves
/// the one-line `file:line:col: message` shape.
pub fn regex_error_line(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Read a file an operator named (a config or rule file) as text, refusing
/// anything but a regular file.
///
/// The file is opened with `O_NONBLOCK` and checked on the open descriptor,
/// so a FIFO is reported instead of blocking start-up until someone writes
/// to it, and a directory, device or symbolic link loop is named for what it
/// is. A missing file keeps [`std::io::ErrorKind::NotFound`], so callers can
/// still skip optional files.
pub fn read_regular_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Error::other("is a symbolic link loop"),
            // open(2) of a Unix socket fails with ENXIO.
            Some(libc::ENXIO) => Error::other("is a socket, not a regular file"),
            _ => e,
        })?;
    let kind = file.metadata()?.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else {
        Some("a socket")
    };
    if let Some(what) = what {
        let message = format!("is {what}, not a regular file");
        return Err(Error::new(ErrorKind::InvalidInput, message));
    }
    let mut text = String::new();
    (&file).read_to_string(&mut text)?;
    Ok(text)
}

/// What identifies one version of a file: device, inode, size,
/// modification and change times. Two reads with equal stamps saw the
/// same contents, unless the file was rewritten within one timestamp tick
/// without changing size (see `web::tls` for a caller that guards against
/// that); an in-place edit and the rename of a new file over the old one
/// both change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    pub fn of(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A value readers take a cheap handle on and a writer replaces whole: a
/// reader keeps the version it loaded for as long as it needs it (a request
/// in flight finishes on the configuration it started with), and the next
/// reader sees the new one. The lock is held only to clone or swap the
/// `Arc`, never while the value is used.
#[derive(Debug)]
pub struct Swap<T>(std::sync::RwLock<std::sync::Arc<T>>);

impl<T> Swap<T> {
    pub fn new(value: std::sync::Arc<T>) -> Swap<T> {
        Swap(std::sync::RwLock::new(value))
    }

    /// The current version.
    pub fn load(&self) -> std::sync::Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Make `value` current; returns the version it replaces.
    pub fn replace(&self, value: std::sync::Arc<T>) -> std::sync::Arc<T> {
        std::mem::replace(
            &mut *self.0.write().unwrap_or_else(|e| e.into_inner()),
            value,
        )
    }
}
