//! One entry of `listen_addresses` (`--web.listen-address`), in
//! node_exporter's spelling: `host:port`, `[IPv6 address]:port`, or `:port`
//! for every interface.
//!
//! Only the syntax is checked here, with the rest of the configuration; a
//! host name is resolved when the exporter starts listening
//! (`crate::serve::sockets`), so `--check-config` does not depend on DNS.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Where to listen, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// An IP address or a host name; `None` for every interface (`:port`).
    pub host: Option<String>,
    /// 0 picks a free port (it is logged).
    pub port: u16,
}

impl ListenAddress {
    /// The host as an IP address, when it is one rather than a name.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.as_deref().and_then(|h| h.parse().ok())
    }
}

impl FromStr for ListenAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<ListenAddress, String> {
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!(
                "{s:?} has no port: write host:port, [IPv6 address]:port, or :port for every \
                 interface"
            ));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: the port {port:?} is not a number from 0 to 65535"))?;
        let host = if host.is_empty() {
            None
        } else if let Some(inner) = host.strip_prefix('[') {
            let Some(v6) = inner.strip_suffix(']') else {
                return Err(format!("{s:?}: unbalanced '[' around the address"));
            };
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{s:?}: {v6:?} in brackets is not an IPv6 address"));
            }
            Some(v6.to_string())
        } else if host.contains(':') {
            return Err(format!(
                "{s:?}: an IPv6 address goes in brackets, as in [::1]:{port}"
            ));
        } else if host.contains(char::is_whitespace) || host.contains(['[', ']', '/']) {
            return Err(format!(
                "{s:?}: {host:?} is neither an IP address nor a host name"
            ));
        } else {
            Some(host.to_string())
        };
        Ok(ListenAddress { host, port })
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.ip()) {
            (None, _) => write!(f, ":{}", self.port),
            (Some(h), Some(IpAddr::V6(_))) => write!(f, "[{h}]:{}", self.port),
            (Some(h), _) => write!(f, "{h}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ListenAddress, String> {
        s.parse()
    }

    #[test]
    fn node_exporter_spellings() {
        for (text, host, port) in [
            (":9100", None, 9100),
            ("127.0.0.1:9215", Some("127.0.0.1"), 9215),
            ("[::1]:0", Some("::1"), 0),
            ("[::]:9100", Some("::"), 9100),
            ("localhost:9100", Some("localhost"), 9100),
            ("node1.example.org:65535", Some("node1.example.org"), 65535),
        ] {
            let a = parse(text).unwrap();
            assert_eq!((a.host.as_deref(), a.port), (host, port), "{text}");
            assert_eq!(a.to_string(), text, "shown as written");
        }
        assert_eq!(parse("[::1]:1").unwrap().ip(), Some("::1".parse().unwrap()));
        assert_eq!(parse("localhost:1").unwrap().ip(), None);
    }

    #[test]
    fn mistakes_say_what_to_write() {
        for (text, says) in [
            ("9100", "has no port"),
            ("localhost", "has no port"),
            (":http", "is not a number"),
            (":65536", "is not a number"),
            ("::1:9100", "goes in brackets"),
            ("[::1:9100", "unbalanced"),
            ("[localhost]:1", "not an IPv6 address"),
            ("a b:1", "neither"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
