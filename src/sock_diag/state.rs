//! The TCP states, once: their numbers (`include/net/tcp_states.h`), the
//! names the metrics spell, the `idiag_states` masks a netlink dump is
//! filtered by, and socket counts per state.
//!
//! Both sources of counts and the eBPF tracking use this table, so a state
//! is named, masked and folded in one place.

/// A kernel TCP state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    /// The state of request sockets in the kernel's tables; reported as
    /// SYN_RECV (see [`Counts::add`]).
    NewSynRecv = 12,
    /// A socket that is only bound (kernel 6.7+); in neither source's
    /// counts, like `ss` hides it.
    BoundInactive = 13,
}

/// State numbers fit in 4 bits; arrays indexed by state have this length.
pub const NSTATES: usize = 16;

impl TcpState {
    /// The states a socket is counted in: ESTABLISHED to CLOSING, in
    /// number order.
    pub const COUNTED: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// Lower case, as the metric names and labels spell it.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn_sent",
            TcpState::SynRecv => "syn_recv",
            TcpState::FinWait1 => "fin_wait1",
            TcpState::FinWait2 => "fin_wait2",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
            TcpState::NewSynRecv => "new_syn_recv",
            TcpState::BoundInactive => "bound_inactive",
        }
    }

    /// The name of state number `n`; "unknown" for a number that is no
    /// state.
    pub fn name_of(n: u8) -> &'static str {
        TcpState::try_from(n).map_or("unknown", TcpState::name)
    }
}

impl TryFrom<u8> for TcpState {
    type Error = u8;

    fn try_from(n: u8) -> Result<TcpState, u8> {
        Ok(match n {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            12 => TcpState::NewSynRecv,
            13 => TcpState::BoundInactive,
            _ => return Err(n),
        })
    }
}

/// An `idiag_states` bitmask: bit N selects state N.
pub const fn mask(states: &[TcpState]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < states.len() {
        m |= 1 << states[i] as u32;
        i += 1;
    }
    m
}

/// What a dump of every counted socket asks for: the counted states plus
/// NEW_SYN_RECV, for request sockets. BOUND_INACTIVE is left out so the
/// counts match `/proc/net/tcp` and `ss -ta`.
pub const COUNTED_MASK: u32 = mask(&TcpState::COUNTED) | mask(&[TcpState::NewSynRecv]);

/// Sockets per state number; index 0 and numbers past CLOSING are unknown.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub by_state: [u64; 12],
    pub unknown: u64,
}

impl Counts {
    /// Count a socket in state number `state`. NEW_SYN_RECV is counted as
    /// SYN_RECV: `/proc/net/tcp` and netlink both report request sockets
    /// that way, and this folds them there too in case a kernel ever
    /// reports one as it is.
    pub fn add(&mut self, state: u8) {
        let state = if state == TcpState::NewSynRecv as u8 {
            TcpState::SynRecv as u8
        } else {
            state
        };
        match self.by_state.get_mut(usize::from(state)) {
            Some(n) if state != 0 => *n += 1,
            _ => self.unknown += 1,
        }
    }

    /// The sockets in `state`.
    pub fn get(&self, state: TcpState) -> u64 {
        self.by_state[state as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_name_the_rest_unknown() {
        for n in 0..=u8::MAX {
            match TcpState::try_from(n) {
                Ok(s) => assert_eq!(s as u8, n),
                Err(e) => {
                    assert_eq!(e, n);
                    assert_eq!(TcpState::name_of(n), "unknown");
                }
            }
        }
        assert_eq!(TcpState::name_of(6), "time_wait");
        assert_eq!(
            TcpState::COUNTED.map(|s| s as u8),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
        );
    }

    #[test]
    fn masks_and_folding() {
        assert_eq!(COUNTED_MASK, 0x1ffe);
        let mut c = Counts::default();
        for n in [0, 1, 3, 12, 13, 99] {
            c.add(n);
        }
        assert_eq!(c.get(TcpState::Established), 1);
        assert_eq!(
            c.get(TcpState::SynRecv),
            2,
            "NEW_SYN_RECV counts as SYN_RECV"
        );
        assert_eq!(c.unknown, 3);
    }
}
