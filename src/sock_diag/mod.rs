//! TCP sockets as the kernel's `NETLINK_SOCK_DIAG` dump lists them (what
//! `ss` uses), and the TCP state table ([`state`]).
//!
//! A dump hands over small binary records, which are read into one buffer
//! the caller keeps, without allocating per socket: on a host with 100 000
//! sockets that is far cheaper than `/proc/net/tcp`, which the kernel
//! formats as text and re-walks its hash tables for every page read.
//!
//! The `tcp` collector counts states from a dump; the eBPF TCP tracking
//! (`crate::ebpf::tcp_state`) seeds its counts from one, with the sockets'
//! cookies. A dump always answers for the network namespace of the thread
//! that asks: it cannot see a fixture tree or another namespace's `/proc`.

pub mod state;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol};

pub use state::{Counts, TcpState};

/// Netlink message types and flags (`include/uapi/linux/netlink.h`,
/// `sock_diag.h`).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
/// `struct nlmsghdr` followed by `struct inet_diag_req_v2`.
const REQUEST_LEN: usize = NLMSG_HDRLEN + 56;

/// The kernel caps one dump datagram at 32 KiB less overhead; a buffer this
/// size can never be too small for one.
const RECV_BUFFER: usize = 32 * 1024;

/// Count TCP sockets in the states of `mask` (see [`state::mask`]) of the
/// current network namespace, both address families. `buf` is the receive
/// buffer, kept by the caller between dumps.
pub fn counts(mask: u32, buf: &mut Vec<u8>) -> io::Result<Counts> {
    let mut counts = Counts::default();
    netlink_each(mask, buf, &mut |record| match record.get(1) {
        // inet_diag_msg starts with idiag_family, idiag_state.
        Some(&state) => counts.add(state),
        None => counts.unknown += 1,
    })?;
    Ok(counts)
}

/// A socket as the kernel's dump describes it: its state and its cookie
/// (the number `bpf_get_socket_cookie` gives the same socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    pub state: u8,
    pub cookie: u64,
}

/// Every TCP socket in the states of `mask` of the current network
/// namespace, with its cookie; records too short to hold one are skipped.
pub fn sockets(mask: u32, buf: &mut Vec<u8>) -> io::Result<Vec<DiagSocket>> {
    let mut out = Vec::new();
    netlink_each(mask, buf, &mut |record| {
        // inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid
        // (ports 4, addresses 32, interface 4, cookie as two u32 halves).
        if let (Some(&state), Some(c)) = (record.get(1), record.get(44..52)) {
            let lo = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            let hi = u32::from_ne_bytes([c[4], c[5], c[6], c[7]]);
            out.push(DiagSocket {
                state,
                cookie: u64::from(hi) << 32 | u64::from(lo),
            });
        }
    })?;
    Ok(out)
}

/// Dump the TCP sockets in the states of `mask`, IPv4 then IPv6, handing
/// each `inet_diag_msg` record to `f`.
fn netlink_each(mask: u32, buf: &mut Vec<u8>, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
    // A fresh socket per scrape: it costs one syscall, and it belongs to the
    // network namespace of the thread collecting, never to a stale one.
    let fd = socket::socket(
        AddressFamily::Netlink,
        socket::SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    buf.resize(RECV_BUFFER, 0);
    dump(&fd, libc::AF_INET as u8, 1, mask, buf, f)?;
    match dump(&fd, libc::AF_INET6 as u8, 2, mask, buf, f) {
        // The kernel has no IPv6 (no handler for the family): no v6 sockets.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Send one dump request and pass the replies to `f` until the kernel's DONE.
fn dump(
    fd: &OwnedFd,
    family: u8,
    seq: u32,
    mask: u32,
    buf: &mut [u8],
    f: &mut dyn FnMut(&[u8]),
) -> io::Result<()> {
    let request = dump_request(family, seq, mask);
    socket::sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    loop {
        // MSG_TRUNC makes recv report a datagram's full length, so one that
        // did not fit is an error rather than silently lost sockets.
        let n = match socket::recv(fd.as_raw_fd(), buf, MsgFlags::MSG_TRUNC) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let datagram = buf.get(..n).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "netlink datagram of {n} bytes exceeds the {} byte buffer",
                    buf.len()
                ),
            )
        })?;
        if each_record(datagram, seq, f)? {
            return Ok(());
        }
    }
}

/// `nlmsghdr` + `inet_diag_req_v2` asking for every TCP socket of `family`
/// in the states of `mask`: an all-zero socket id matches any address and
/// port.
fn dump_request(family: u8, seq: u32, mask: u32) -> [u8; REQUEST_LEN] {
    let mut r = [0u8; REQUEST_LEN];
    r[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid stays 0: the kernel fills in our port id.
    r[16] = family;
    r[17] = libc::IPPROTO_TCP as u8;
    // idiag_ext and padding stay 0: no extensions, just the base record.
    r[20..24].copy_from_slice(&mask.to_ne_bytes());
    r
}

/// Pass the `inet_diag_msg` records of one datagram to `f`. True once the
/// dump is complete. Messages of another sequence number are ignored; a
/// malformed message is an error, since the rest of the datagram cannot be
/// trusted.
fn each_record(mut data: &[u8], seq: u32, f: &mut dyn FnMut(&[u8])) -> io::Result<bool> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {what}"));
    while !data.is_empty() {
        let header = data
            .get(..NLMSG_HDRLEN)
            .ok_or_else(|| bad("truncated message header"))?;
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        let msg_seq = u32::from_ne_bytes([header[8], header[9], header[10], header[11]]);
        let payload = data
            .get(NLMSG_HDRLEN..len)
            .ok_or_else(|| bad("message length out of bounds"))?;
        if msg_seq == seq {
            match kind {
                SOCK_DIAG_BY_FAMILY => f(payload),
                NLMSG_DONE => {
                    // A dump that ended in error carries a negative errno.
                    return match payload.get(..4) {
                        Some(&[a, b, c, d]) if i32::from_ne_bytes([a, b, c, d]) < 0 => {
                            Err(io::Error::from_raw_os_error(-i32::from_ne_bytes([
                                a, b, c, d,
                            ])))
                        }
                        _ => Ok(true),
                    };
                }
                NLMSG_ERROR => {
                    let errno = match payload.get(..4) {
                        Some(&[a, b, c, d]) => i32::from_ne_bytes([a, b, c, d]),
                        _ => return Err(bad("truncated error message")),
                    };
                    return Err(if errno < 0 {
                        io::Error::from_raw_os_error(-errno)
                    } else {
                        bad("unexpected acknowledgement")
                    });
                }
                _ => {}
            }
        }
        // Messages are padded to 4 bytes; the last one may omit its padding.
        let next = (len + 3) & !3;
        data = data.get(next..).unwrap_or(&[]);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One datagram counted the way [`counts`] counts it.
    fn count_datagram(data: &[u8], seq: u32, counts: &mut Counts) -> io::Result<bool> {
        each_record(data, seq, &mut |r| match r.get(1) {
            Some(&state) => counts.add(state),
            None => counts.unknown += 1,
        })
    }

    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize((len + 3) & !3, 0);
        m
    }

    #[test]
    fn netlink_datagrams_parse_and_reject_malformed_input() {
        let mut counts = Counts::default();
        let mut d = message(SOCK_DIAG_BY_FAMILY, 7, &[2, 1, 0, 0, 9, 9]);
        d.extend(message(SOCK_DIAG_BY_FAMILY, 7, &[2, 12]));
        d.extend(message(SOCK_DIAG_BY_FAMILY, 8, &[2, 10]));
        d.extend(message(SOCK_DIAG_BY_FAMILY, 7, &[2, 99]));
        assert!(!count_datagram(&d, 7, &mut counts).unwrap());
        assert!(
            count_datagram(&message(NLMSG_DONE, 7, &0i32.to_ne_bytes()), 7, &mut counts).unwrap()
        );
        assert_eq!(counts.by_state[1], 1);
        assert_eq!(counts.by_state[3], 1, "NEW_SYN_RECV counts as SYN_RECV");
        assert_eq!(counts.by_state[10], 0, "other sequence ignored");
        assert_eq!(counts.unknown, 1);

        let err = count_datagram(
            &message(NLMSG_ERROR, 7, &(-libc::EPERM).to_ne_bytes()),
            7,
            &mut counts,
        );
        assert_eq!(err.unwrap_err().raw_os_error(), Some(libc::EPERM));
        let err = count_datagram(
            &message(NLMSG_DONE, 7, &(-libc::EINTR).to_ne_bytes()),
            7,
            &mut counts,
        );
        assert_eq!(err.unwrap_err().raw_os_error(), Some(libc::EINTR));
        // Truncated header, length past the end, length below the header.
        let full = message(SOCK_DIAG_BY_FAMILY, 7, &[2, 1]);
        for bad in [&full[..10], &full[..17]] {
            assert!(count_datagram(bad, 7, &mut counts).is_err());
        }
        let mut short = full.clone();
        short[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(count_datagram(&short, 7, &mut counts).is_err());
    }
}
