//! The records the kernel side (`bpf/process_io.bpf.c`) hands over, decoded
//! from bytes: `struct net_counts` and `struct io_counts` (the values of
//! the two per-process maps) and `struct exit_record` (what the exit ring
//! buffer carries). The layouts mirror the C structs; their tests build
//! records byte by byte, as the kernel lays them out.

/// Network counters of one process (or sum of processes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Net {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub drops: u64,
}

impl Net {
    pub fn add(&mut self, o: &Net) {
        self.rx_bytes = self.rx_bytes.saturating_add(o.rx_bytes);
        self.tx_bytes = self.tx_bytes.saturating_add(o.tx_bytes);
        self.rx_packets = self.rx_packets.saturating_add(o.rx_packets);
        self.tx_packets = self.tx_packets.saturating_add(o.tx_packets);
        self.drops = self.drops.saturating_add(o.drops);
    }
}

/// Block I/O of one process on one device; index 0 read, 1 write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevIo {
    /// The kernel's `MKDEV(major, minor)`: `(major << 20) | minor`.
    pub dev: u64,
    pub bytes: [u64; 2],
    pub ops: [u64; 2],
}

/// What the kernel hands over when a process's last thread exits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exited {
    pub tgid: u32,
    pub comm: String,
    pub net: Option<Net>,
    pub io: Vec<DevIo>,
}

/// Decode an `exit_record` (`bpf/process_io.bpf.c`); `None` if short.
pub fn parse_exit_record(b: &[u8]) -> Option<Exited> {
    const NET: usize = 24;
    const IO: usize = NET + 40;
    const LEN: usize = IO + 4 * 8 + 4 * 16 + 4 * 16;
    if b.len() < LEN {
        return None;
    }
    let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
    let comm = &b[8..24];
    let end = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    let net = (b[4] != 0).then(|| Net {
        rx_bytes: u64_at(NET),
        tx_bytes: u64_at(NET + 8),
        rx_packets: u64_at(NET + 16),
        tx_packets: u64_at(NET + 24),
        drops: u64_at(NET + 32),
    });
    let io = if b[5] != 0 {
        parse_io(&b[IO..LEN])
    } else {
        Vec::new()
    };
    Some(Exited {
        tgid: u32_at(0),
        comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
        net,
        io,
    })
}

/// Decode a `struct io_counts`: four device slots, used ones only.
pub fn parse_io(b: &[u8]) -> Vec<DevIo> {
    let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
    if b.len() < 160 {
        return Vec::new();
    }
    (0..4)
        .map(|i| DevIo {
            dev: u64_at(i * 8),
            bytes: [u64_at(32 + i * 16), u64_at(32 + i * 16 + 8)],
            ops: [u64_at(96 + i * 16), u64_at(96 + i * 16 + 8)],
        })
        .filter(|d| d.dev != 0)
        .collect()
}

/// Decode a `struct net_counts`.
pub fn parse_net(b: &[u8]) -> Option<Net> {
    let u64_at = |o: usize| Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?));
    Some(Net {
        rx_bytes: u64_at(0)?,
        tx_bytes: u64_at(8)?,
        rx_packets: u64_at(16)?,
        tx_packets: u64_at(24)?,
        drops: u64_at(32)?,
    })
}

/// `MAJ:MIN` of a kernel `MKDEV` value.
pub fn major_minor(dev: u64) -> (u64, u64) {
    (dev >> 20, dev & 0xfffff)
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

    fn record(tgid: u32, comm: &[u8], net: Option<[u64; 5]>, io: Option<DevIo>) -> Vec<u8> {
        let mut b = vec![0u8; 24 + 40 + 160];
        b[..4].copy_from_slice(&tgid.to_ne_bytes());
        b[8..8 + comm.len()].copy_from_slice(comm);
        if let Some(n) = net {
            b[4] = 1;
            for (i, v) in n.iter().enumerate() {
                b[24 + i * 8..32 + i * 8].copy_from_slice(&v.to_ne_bytes());
            }
        }
        if let Some(d) = io {
            b[5] = 1;
            let o = 64;
            b[o + 8..o + 16].copy_from_slice(&d.dev.to_ne_bytes());
            b[o + 32 + 16..o + 32 + 24].copy_from_slice(&d.bytes[0].to_ne_bytes());
            b[o + 32 + 24..o + 32 + 32].copy_from_slice(&d.bytes[1].to_ne_bytes());
            b[o + 96 + 16..o + 96 + 24].copy_from_slice(&d.ops[0].to_ne_bytes());
            b[o + 96 + 24..o + 96 + 32].copy_from_slice(&d.ops[1].to_ne_bytes());
        }
        b
    }

    #[test]
    fn exit_record_round_trip() {
        let d = DevIo {
            dev: (253 << 20) | 16,
            bytes: [4096, 1 << 20],
            ops: [1, 8],
        };
        let b = record(4242, b"curl", Some([10, 20, 3, 4, 5]), Some(d));
        let e = parse_exit_record(&b).unwrap();
        assert_eq!(e.tgid, 4242);
        assert_eq!(e.comm, "curl");
        let n = e.net.unwrap();
        assert_eq!(
            (n.rx_bytes, n.tx_bytes, n.rx_packets, n.tx_packets, n.drops),
            (10, 20, 3, 4, 5)
        );
        // Slot 1 was used, slot 0 free: only the used one comes back.
        assert_eq!(e.io, vec![d]);
        assert_eq!(major_minor(d.dev), (253, 16));
    }

    #[test]
    fn exit_record_without_parts_or_too_short() {
        let e = parse_exit_record(&record(7, b"0123456789abcdef", None, None)).unwrap();
        assert_eq!(e.comm, "0123456789abcdef");
        assert!(e.net.is_none() && e.io.is_empty());
        assert!(parse_exit_record(&[0u8; 100]).is_none());
    }

    #[test]
    fn uevent_devname() {
        let t = "MAJOR=253\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=9\n";
        assert_eq!(devname_from_uevent(t), Some("vda"));
        assert_eq!(devname_from_uevent("MAJOR=1\nDEVNAME=\n"), None);
    }

    #[test]
    fn exit_record_length() {
        // sizeof(struct exit_record): 4 + 1 + 1 + 2 + 16 + 5*8 + 4*8 + 2*4*2*8.
        assert!(parse_exit_record(&[0u8; 224]).is_some());
        assert!(parse_exit_record(&[0u8; 223]).is_none());
    }
}
