//! Opening the listening sockets: `bind` and `port` (the spec's flags),
//! `listen_addresses` (node_exporter's `--web.listen-address`, one socket
//! per address), or the sockets systemd passes with socket activation
//! (`--web.systemd-socket`). Config validation lets only one of the three
//! be set.
//!
//! Sockets are opened here, before serving, so that an address in use or
//! a host name that does not resolve stops the start with a message
//! naming it, and the log can say every address served.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{FromRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, ListenAddress};

/// Connections the kernel queues before they are accepted: tokio's choice
/// (std's 128 is small for a scrape burst from several servers).
const BACKLOG: i32 = 1024;

/// The sockets `config` says to serve on, listening, non-blocking.
pub fn listen(config: &Config) -> Result<Vec<TcpListener>, String> {
    if config.systemd_socket {
        return systemd_listeners(
            std::env::var("LISTEN_PID").ok().as_deref(),
            std::env::var("LISTEN_FDS").ok().as_deref(),
        );
    }
    if config.listen_addresses.is_empty() {
        let ip: IpAddr = config
            .bind
            .parse()
            .map_err(|_| format!("invalid bind address {:?}", config.bind))?;
        let addr = SocketAddr::new(ip, config.port);
        return Ok(vec![open(addr).map_err(|e| cannot(addr, &e))?]);
    }
    let mut out = Vec::new();
    for text in &config.listen_addresses {
        let address: ListenAddress = text.parse()?;
        out.extend(open_address(&address)?);
    }
    Ok(out)
}

fn cannot(addr: SocketAddr, e: &io::Error) -> String {
    format!("cannot listen on {addr}: {e}")
}

/// One `listen_addresses` entry's sockets: one for an IP address; for
/// `:port`, one that takes IPv6 and IPv4 (as Go's `:port` does); for a
/// host name, one per address it resolves to.
fn open_address(address: &ListenAddress) -> Result<Vec<TcpListener>, String> {
    let port = address.port;
    match (&address.host, address.ip()) {
        (None, _) => {
            let any = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port);
            match open(any) {
                Ok(l) => Ok(vec![l]),
                // A host with IPv6 off: every IPv4 interface.
                Err(e) if unavailable(&e) => {
                    let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port);
                    Ok(vec![open(any).map_err(|e| cannot(any, &e))?])
                }
                Err(e) => Err(cannot(any, &e)),
            }
        }
        (Some(_), Some(ip)) => {
            let addr = SocketAddr::new(ip, port);
            Ok(vec![open(addr).map_err(|e| cannot(addr, &e))?])
        }
        (Some(name), None) => {
            let resolved = (name.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("listen address {address}: cannot resolve {name:?}: {e}"))?;
            let mut seen = HashSet::new();
            let mut bound = Vec::new();
            let mut skipped = Vec::new();
            for addr in resolved.filter(|a| seen.insert(*a)) {
                match open(addr) {
                    Ok(l) => bound.push(l),
                    // `localhost` also names ::1 on a host with IPv6 off.
                    Err(e) if unavailable(&e) => skipped.push((addr, e)),
                    Err(e) => return Err(format!("{} ({address})", cannot(addr, &e))),
                }
            }
            if bound.is_empty() {
                let tried: Vec<String> = skipped.iter().map(|(a, e)| format!("{a}: {e}")).collect();
                return Err(format!(
                    "listen address {address}: none of the addresses of {name:?} can be \
                     listened on here ({})",
                    tried.join("; ")
                ));
            }
            for (addr, e) in skipped {
                tracing::warn!(%address, %addr, error = %e, "not listening on one address of the name");
            }
            Ok(bound)
        }
    }
}

/// The address family or address is not available on this host.
fn unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
    )
}

/// A listening TCP socket on `addr`. An IPv6 socket takes IPv4 too
/// (`IPV6_V6ONLY` off, whatever the host's default), so `[::]:port` is
/// every interface of both families.
fn open(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // Restarting must not wait out the old process's TIME_WAIT sockets.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// The listening sockets systemd passed, as `sd_listen_fds(3)` reads them:
/// `LISTEN_PID` must be this process, and `LISTEN_FDS` descriptors from
/// fd 3 on are ours. Each must be a listening TCP socket (a `.socket`
/// unit's `ListenStream=` with an address and port).
///
/// A few lines against the protocol rather than a crate: it is two
/// variables and a descriptor range, and the checks that matter (the
/// type, the family, that it listens) are one `getsockopt` each.
fn systemd_listeners(pid: Option<&str>, fds: Option<&str>) -> Result<Vec<TcpListener>, String> {
    const HOW: &str = "start the exporter from a systemd .socket unit (or \
                       systemd-socket-activate), or drop --web.systemd-socket and listen with \
                       --web.listen-address";
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Err(format!(
            "--web.systemd-socket: no sockets from systemd (LISTEN_PID and LISTEN_FDS are not \
             set): {HOW}"
        ));
    };
    let me = std::process::id();
    if pid.trim().parse::<u32>() != Ok(me) {
        return Err(format!(
            "--web.systemd-socket: the sockets systemd passed are for process {pid} \
             (LISTEN_PID), not this one ({me}): {HOW}"
        ));
    }
    let count: RawFd = match fds.trim().parse() {
        Ok(n) if n > 0 => n,
        _ => {
            return Err(format!(
                "--web.systemd-socket: LISTEN_FDS is {fds:?}, no socket to serve on: {HOW}"
            ))
        }
    };
    (LISTEN_FDS_START..LISTEN_FDS_START + count)
        .map(systemd_listener)
        .collect()
}

fn systemd_listener(fd: RawFd) -> Result<TcpListener, String> {
    let bad = |what: String| {
        format!(
            "--web.systemd-socket: descriptor {fd} from systemd {what}; the .socket unit's \
             ListenStream= must be a TCP address and port"
        )
    };
    // Only a descriptor that is open may be owned (and closed on error).
    nix::fcntl::fcntl(
        // SAFETY: only borrowed for the call; F_GETFD has no effect.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .map_err(|e| bad(format!("is not open ({e})")))?;
    // SAFETY: LISTEN_PID names this process, so systemd passed descriptors
    // LISTEN_FDS_START.. to us; each is taken once, here.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let kind = socket
        .r#type()
        .map_err(|e| bad(format!("is not a socket ({e})")))?;
    if kind != Type::STREAM {
        return Err(bad("is not a stream socket".into()));
    }
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| bad("is not an IPv4 or IPv6 socket".into()))?;
    if !socket.is_listener().unwrap_or(false) {
        return Err(bad(format!("({addr}) is not listening")));
    }
    // systemd passes them inheritable; nothing we start needs them.
    socket
        .set_cloexec(true)
        .and_then(|()| socket.set_nonblocking(true))
        .map_err(|e| bad(format!("({addr}): {e}")))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(addresses: &[&str]) -> Config {
        Config {
            listen_addresses: addresses.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
    }

    fn local(listeners: &[TcpListener]) -> Vec<SocketAddr> {
        listeners.iter().map(|l| l.local_addr().unwrap()).collect()
    }

    #[test]
    fn one_socket_per_address_and_per_resolved_address() {
        let got = local(&listen(&config(&["127.0.0.1:0", "[::1]:0"])).unwrap());
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].ip(), IpAddr::from(Ipv4Addr::LOCALHOST));
        assert_eq!(got[1].ip(), IpAddr::from(Ipv6Addr::LOCALHOST));
        assert!(got.iter().all(|a| a.port() != 0));

        // Every address the name resolves to, once each.
        let resolved: HashSet<IpAddr> = ("localhost", 0)
            .to_socket_addrs()
            .unwrap()
            .map(|a| a.ip())
            .collect();
        let got = local(&listen(&config(&["localhost:0"])).unwrap());
        assert_eq!(got.len(), resolved.len(), "{got:?} vs {resolved:?}");
        assert_eq!(got.iter().map(|a| a.ip()).collect::<HashSet<_>>(), resolved);
    }

    #[test]
    fn every_interface_takes_ipv4_and_ipv6() {
        let got = listen(&config(&[":0"])).unwrap();
        let port = got[0].local_addr().unwrap().port();
        assert_eq!(got.len(), 1);
        for ip in [
            IpAddr::from(Ipv4Addr::LOCALHOST),
            Ipv6Addr::LOCALHOST.into(),
        ] {
            std::net::TcpStream::connect((ip, port))
                .unwrap_or_else(|e| panic!("{ip} port {port}: {e}"));
        }
    }

    #[test]
    fn bind_and_port_when_no_address_is_listed() {
        let c = Config {
            bind: "127.0.0.1".into(),
            port: 0,
            ..Config::default()
        };
        let got = local(&listen(&c).unwrap());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ip(), IpAddr::from(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn failures_name_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let e = listen(&config(&[&addr])).unwrap_err();
        assert!(e.starts_with(&format!("cannot listen on {addr}: ")), "{e}");
        let e = listen(&config(&["no-such-host.invalid:9100"])).unwrap_err();
        assert!(e.contains("cannot resolve \"no-such-host.invalid\""), "{e}");
    }

    #[test]
    fn systemd_sockets_only_for_this_process() {
        let e = systemd_listeners(None, None).unwrap_err();
        assert!(e.contains("LISTEN_PID and LISTEN_FDS are not set"), "{e}");
        let other = (std::process::id() + 1).to_string();
        let e = systemd_listeners(Some(&other), Some("1")).unwrap_err();
        assert!(e.contains("not this one"), "{e}");
        let me = std::process::id().to_string();
        let e = systemd_listeners(Some(&me), Some("0")).unwrap_err();
        assert!(e.contains("no socket to serve on"), "{e}");
    }
}
