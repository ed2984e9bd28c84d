//! systemd's readiness protocol (`sd_notify`, `Type=notify`): tell the
//! service manager when the exporter serves, reloads and stops.
//!
//! systemd passes a datagram socket in `NOTIFY_SOCKET`, a path or, with a
//! leading `@`, an abstract name; each state is one datagram of
//! `KEY=value` lines. Without the variable (not under systemd, or another
//! `Type=`) every call does nothing.
//!
//! A few lines over std's `UnixDatagram`, which speaks abstract addresses
//! since Rust 1.70, rather than a crate: the protocol is one `sendto`, and
//! `MONOTONIC_USEC`, which a reload needs, is one `clock_gettime`.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Send `state` (newline-separated `KEY=value` assignments) to the service
/// manager, if there is one. Failures are logged, never fatal: systemd
/// going away must not take the exporter with it.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&target, state) {
        tracing::warn!(
            socket = %target.to_string_lossy(),
            error = %e,
            "cannot notify systemd"
        );
    }
}

fn send(target: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = target.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(target)?,
    };
    UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// The exporter serves: `READY=1` with `status` shown by `systemctl status`.
pub fn ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={}", one_line(status)));
}

/// A reload starts. systemd wants `MONOTONIC_USEC`, the monotonic clock
/// when the reload began, so it can tell this reload from a later one;
/// [`ready`] ends it.
pub fn reloading() {
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
        monotonic_usec()
    ));
}

/// The exporter is shutting down.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=shutting down");
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares with.
fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
    })
}

/// A `STATUS=` value ends at the newline.
fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let at_path = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1\nSTATUS=x").unwrap();
        assert_eq!(receive(&at_path), "READY=1\nSTATUS=x");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("herakles-notify-test-{}", std::process::id());
        let abstract_ =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&abstract_), "STOPPING=1");
    }
}
