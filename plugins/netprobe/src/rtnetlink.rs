//! The rtnetlink requests for TC that libbpf does not offer, or not quietly.
//!
//! libbpf can ask about one TC filter whose handle and priority it already
//! knows; sharing a clsact qdisc safely needs the whole list (who else is in
//! it, what did a dead netprobe leave behind) and TC chains, which mark a
//! qdisc as created by netprobe (see `clsact.rs`). These are a handful of
//! plain requests, so they are written out here rather than pulling in a
//! netlink framework. Attaching and detaching our own filters stays with
//! libbpf.
//!
//! Every request goes out on a fresh `NETLINK_ROUTE` socket created by the
//! calling thread, so it sees that thread's network namespace, the one the
//! probe attaches in.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The ingress and egress parents of a clsact qdisc (`ffff:fff2`,
/// `ffff:fff3`), as `tc` and libbpf address them.
pub const CLSACT_INGRESS: u32 = 0xffff_fff2;
pub const CLSACT_EGRESS: u32 = 0xffff_fff3;

/// `<linux/rtnetlink.h>` chain messages, which libc does not define.
const RTM_NEWCHAIN: u16 = 100;
const RTM_GETCHAIN: u16 = 102;
/// Attributes of a TC message (`enum` in `<linux/rtnetlink.h>`).
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_CHAIN: u16 = 11;
/// Inside `TCA_OPTIONS` of a `bpf` filter (`<linux/pkt_cls.h>`).
const TCA_BPF_ID: u16 = 11;
/// The type bits of an attribute, without the nested/byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLMSG_HEADER: usize = 16;
const TCMSG: usize = 20;

/// One TC filter as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// [`CLSACT_INGRESS`] or [`CLSACT_EGRESS`].
    pub parent: u32,
    pub priority: u16,
    pub handle: u32,
    pub chain: u32,
    /// The classifier (`bpf`, `u32`, `flower`, ...).
    pub kind: String,
    /// The eBPF program a `bpf` filter runs (absent for classic BPF).
    pub prog_id: Option<u32>,
}

/// Every filter of the clsact qdisc of `ifindex`, both directions, every
/// chain; empty when the interface has no clsact qdisc.
pub fn filters(ifindex: u32) -> io::Result<Vec<Filter>> {
    let mut out = Vec::new();
    for parent in [CLSACT_INGRESS, CLSACT_EGRESS] {
        let replies = request(
            libc::RTM_GETTFILTER,
            libc::NLM_F_DUMP,
            TcMsg::new(ifindex, parent),
            &[],
        )?;
        for (kind, payload) in replies {
            if kind != libc::RTM_NEWTFILTER {
                continue;
            }
            let Some(tcm) = TcMsg::parse(&payload) else {
                continue;
            };
            // Handle 0 is the classifier instance of one priority, listed
            // before its filters; it is not a filter.
            if tcm.handle == 0 {
                continue;
            }
            let mut filter = Filter {
                parent,
                priority: (tcm.info >> 16) as u16,
                handle: tcm.handle,
                chain: 0,
                kind: String::new(),
                prog_id: None,
            };
            for (ty, value) in attributes(&payload[TCMSG..]) {
                match ty {
                    TCA_KIND => {
                        let name = value.split(|&b| b == 0).next().unwrap_or_default();
                        filter.kind = String::from_utf8_lossy(name).into_owned();
                    }
                    TCA_CHAIN => filter.chain = u32_of(value).unwrap_or(0),
                    TCA_OPTIONS => {
                        filter.prog_id = attributes(value)
                            .find(|&(t, _)| t == TCA_BPF_ID)
                            .and_then(|(_, v)| u32_of(v));
                    }
                    _ => {}
                }
            }
            out.push(filter);
        }
    }
    Ok(out)
}

/// The chain indexes of one block (`parent`) of the clsact qdisc of
/// `ifindex`, including chains created empty with `tc chain add`.
pub fn chains(ifindex: u32, parent: u32) -> io::Result<Vec<u32>> {
    let replies = request(
        RTM_GETCHAIN,
        libc::NLM_F_DUMP,
        TcMsg::new(ifindex, parent),
        &[],
    )?;
    Ok(replies
        .iter()
        .filter(|(kind, _)| *kind == RTM_NEWCHAIN)
        .filter_map(|(_, payload)| {
            attributes(payload.get(TCMSG..)?)
                .find(|&(t, _)| t == TCA_CHAIN)
                .and_then(|(_, v)| u32_of(v))
        })
        .collect())
}

/// Create the empty chain `index` in one block of the clsact qdisc of
/// `ifindex` (`tc chain add`). Nothing jumps to it, so no packet ever runs
/// through it; it lives exactly as long as the qdisc.
pub fn add_chain(ifindex: u32, parent: u32, index: u32) -> io::Result<()> {
    request(
        RTM_NEWCHAIN,
        libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK,
        TcMsg::new(ifindex, parent),
        &[(TCA_CHAIN, &index.to_ne_bytes())],
    )
    .map(drop)
}

/// Create a clsact qdisc on `ifindex` (`tc qdisc add dev <if> clsact`);
/// `Ok(false)` when the interface has one already.
///
/// libbpf can do this too, but it logs the kernel's "cannot modify" as a
/// warning when the qdisc exists, which for us is the ordinary case.
pub fn add_clsact(ifindex: u32) -> io::Result<bool> {
    match request(
        libc::RTM_NEWQDISC,
        libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK,
        TcMsg::clsact(ifindex),
        &[(TCA_KIND, b"clsact\0")],
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Delete the clsact qdisc of `ifindex`, and every filter and chain in it.
pub fn del_clsact(ifindex: u32) -> io::Result<()> {
    request(
        libc::RTM_DELQDISC,
        libc::NLM_F_ACK,
        TcMsg::clsact(ifindex),
        &[(TCA_KIND, b"clsact\0")],
    )
    .map(drop)
}

/// `struct tcmsg`.
struct TcMsg {
    ifindex: u32,
    handle: u32,
    parent: u32,
    info: u32,
}

impl TcMsg {
    fn new(ifindex: u32, parent: u32) -> TcMsg {
        TcMsg {
            ifindex,
            handle: 0,
            parent,
            info: 0,
        }
    }

    /// The clsact qdisc itself: handle `ffff:` under the pseudo-parent
    /// `ffff:fff1` (`TC_H_CLSACT`).
    fn clsact(ifindex: u32) -> TcMsg {
        TcMsg {
            ifindex,
            handle: 0xffff_0000,
            parent: 0xffff_fff1,
            info: 0,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        // family (AF_UNSPEC) and two bytes of padding, then four words.
        out.extend_from_slice(&[0; 4]);
        for word in [self.ifindex, self.handle, self.parent, self.info] {
            out.extend_from_slice(&word.to_ne_bytes());
        }
    }

    fn parse(payload: &[u8]) -> Option<TcMsg> {
        let word = |at: usize| u32_of(payload.get(at..at + 4)?);
        Some(TcMsg {
            ifindex: word(4)?,
            handle: word(8)?,
            parent: word(12)?,
            info: word(16)?,
        })
    }
}

fn u32_of(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?))
}

fn u16_of(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?))
}

/// The `(type, value)` pairs of a run of netlink attributes; stops at the
/// first malformed one.
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_of(data)?);
        let ty = u16_of(data.get(2..)?)?;
        let value = data.get(4..len)?;
        data = data.get(align(len)..).unwrap_or_default();
        Some((ty & NLA_TYPE_MASK, value))
    })
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Send one request and collect the replies as `(type, payload)`: every
/// message of a dump up to `NLMSG_DONE`, or up to the acknowledgement of a
/// request sent with `NLM_F_ACK`. An error reply becomes `Err`.
fn request(
    kind: u16,
    flags: libc::c_int,
    tcm: TcMsg,
    attrs: &[(u16, &[u8])],
) -> io::Result<Vec<(u16, Vec<u8>)>> {
    let mut message = vec![0u8; NLMSG_HEADER];
    tcm.encode(&mut message);
    for (ty, value) in attrs {
        let len = 4 + value.len();
        message.extend_from_slice(&(len as u16).to_ne_bytes());
        message.extend_from_slice(&ty.to_ne_bytes());
        message.extend_from_slice(value);
        message.resize(align(message.len()), 0);
    }
    let total = message.len() as u32;
    message[0..4].copy_from_slice(&total.to_ne_bytes());
    message[4..6].copy_from_slice(&kind.to_ne_bytes());
    message[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | flags) as u16).to_ne_bytes());
    message[8..12].copy_from_slice(&1u32.to_ne_bytes());

    // SAFETY: socket(2) has no memory preconditions; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sends the bytes of an initialised buffer of the given length.
    let sent = unsafe { libc::send(fd.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let dump = flags & libc::NLM_F_DUMP == libc::NLM_F_DUMP;
    let mut replies = Vec::new();
    // The kernel fills a dump datagram up to 32 KiB; twice that leaves room.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receives into a buffer of the length given. MSG_TRUNC
        // makes it return the datagram's real length, to detect truncation.
        let got = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        if got > buf.len() {
            return Err(io::Error::other(format!(
                "rtnetlink reply of {got} bytes does not fit the buffer"
            )));
        }
        let mut data = &buf[..got];
        while data.len() >= NLMSG_HEADER {
            let malformed = || io::Error::other("malformed rtnetlink reply");
            let len = u32_of(data).ok_or_else(malformed)? as usize;
            let ty = u16_of(&data[4..]).ok_or_else(malformed)?;
            let payload = data.get(NLMSG_HEADER..len).ok_or_else(malformed)?;
            match i32::from(ty) {
                libc::NLMSG_DONE => {
                    // A dump that failed half-way says so here.
                    let errno = payload.get(..4).and_then(u32_of).unwrap_or(0) as i32;
                    if errno < 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    return Ok(replies);
                }
                libc::NLMSG_ERROR => {
                    let errno = u32_of(payload).ok_or_else(malformed)? as i32;
                    if errno < 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    if !dump {
                        return Ok(replies);
                    }
                }
                _ => replies.push((ty, payload.to_vec())),
            }
            data = data.get(align(len)..).unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_stop_at_a_malformed_one() {
        let mut data = Vec::new();
        // kind "bpf\0" (len 8), then chain 5 (len 8), then a length past the end.
        data.extend_from_slice(&8u16.to_ne_bytes());
        data.extend_from_slice(&TCA_KIND.to_ne_bytes());
        data.extend_from_slice(b"bpf\0");
        data.extend_from_slice(&8u16.to_ne_bytes());
        data.extend_from_slice(&(TCA_CHAIN | 0x8000).to_ne_bytes());
        data.extend_from_slice(&5u32.to_ne_bytes());
        data.extend_from_slice(&200u16.to_ne_bytes());
        data.extend_from_slice(&TCA_OPTIONS.to_ne_bytes());
        let found: Vec<(u16, Vec<u8>)> = attributes(&data).map(|(t, v)| (t, v.to_vec())).collect();
        assert_eq!(
            found,
            [
                (TCA_KIND, b"bpf\0".to_vec()),
                (TCA_CHAIN, 5u32.to_ne_bytes().to_vec())
            ]
        );
        // A length below the header's own size ends the run too.
        let short = [2u8, 0, 1, 0, 0, 0, 0, 0];
        assert_eq!(attributes(&short).count(), 0);
    }
}
