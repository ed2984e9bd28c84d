//! The enumerated values of a web config file: TLS versions, cipher suites,
//! curves and client authentication policies, by the names Go's crypto/tls
//! gives them (exporter-toolkit's file uses those names).
//!
//! Each value is checked while the file is read, so an error points at the
//! value itself. A name Go knows but rustls does not implement is refused
//! with the reason, never dropped: an operator who asked for a cipher suite
//! or curve must not get a server that quietly negotiates another.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use rustls::crypto::ring::{cipher_suite, kx_group};
use rustls::crypto::SupportedKxGroup;
use rustls::SupportedCipherSuite;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::util::did_you_mean;

/// A protocol version rustls speaks. TLS 1.0 and 1.1 are refused when the
/// file is read: rustls has neither, and both are deprecated (RFC 8996).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        }
    }

    pub(crate) fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }
}

impl FromStr for TlsVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            "TLS10" | "TLS11" => Err(format!(
                "{s} is not supported: this exporter speaks TLS 1.2 and 1.3 only \
                 (rustls has no TLS 1.0 or 1.1, both deprecated by RFC 8996); use TLS12 or TLS13"
            )),
            _ => Err(unknown("TLS version", s, &["TLS12", "TLS13"])),
        }
    }
}

/// A cipher suite rustls (with the ring provider) implements, under its Go
/// name.
#[derive(Clone, Copy)]
pub struct CipherSuite {
    name: &'static str,
    pub(crate) suite: SupportedCipherSuite,
}

impl CipherSuite {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The protocol version this suite belongs to: a TLS 1.3 suite is used
    /// only by TLS 1.3, a TLS 1.2 suite only by TLS 1.2.
    pub fn version(&self) -> TlsVersion {
        match self.suite {
            SupportedCipherSuite::Tls12(_) => TlsVersion::Tls12,
            SupportedCipherSuite::Tls13(_) => TlsVersion::Tls13,
        }
    }
}

impl fmt::Debug for CipherSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for CipherSuite {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Every suite the ring provider has, by Go name, TLS 1.3 first, each
/// version's in rustls' order of preference.
pub(crate) fn supported_suites() -> [CipherSuite; 9] {
    let s = |name, suite| CipherSuite { name, suite };
    [
        s(
            "TLS_AES_256_GCM_SHA384",
            cipher_suite::TLS13_AES_256_GCM_SHA384,
        ),
        s(
            "TLS_AES_128_GCM_SHA256",
            cipher_suite::TLS13_AES_128_GCM_SHA256,
        ),
        s(
            "TLS_CHACHA20_POLY1305_SHA256",
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ),
        s(
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        s(
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        s(
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        s(
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        s(
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        s(
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ]
}

/// Suites Go's crypto/tls knows (its `CipherSuites()` and
/// `InsecureCipherSuites()`) that rustls does not implement: CBC modes,
/// RC4, 3DES and RSA key exchange, all without forward secrecy or with
/// known attacks. A file naming one is valid for node_exporter but cannot
/// be honoured here.
const GO_ONLY_SUITES: &[&str] = &[
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
];

impl FromStr for CipherSuite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let all = supported_suites();
        if let Some(found) = all.iter().find(|c| c.name == s) {
            return Ok(*found);
        }
        let names: Vec<&str> = all.iter().map(|c| c.name).collect();
        if GO_ONLY_SUITES.contains(&s) {
            return Err(format!(
                "cipher suite {s} is not supported: rustls implements only AEAD suites with \
                 forward secrecy (ECDHE with AES-GCM or ChaCha20-Poly1305); supported: {}",
                names.join(", ")
            ));
        }
        Err(unknown("cipher suite", s, &names))
    }
}

/// A key exchange group, under the name Go gives the curve.
#[derive(Clone, Copy)]
pub struct Curve {
    name: &'static str,
    pub(crate) group: &'static dyn SupportedKxGroup,
}

impl Curve {
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Debug for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Curve {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

const CURVE_NAMES: [&str; 3] = ["X25519", "CurveP256", "CurveP384"];

impl FromStr for Curve {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let group: &'static dyn SupportedKxGroup =
            match s {
                "X25519" => kx_group::X25519,
                "CurveP256" => kx_group::SECP256R1,
                "CurveP384" => kx_group::SECP384R1,
                "CurveP521" => return Err(
                    "CurveP521 is not supported: rustls with the ring provider has no P-521 key \
                     exchange; use X25519, CurveP256 or CurveP384"
                        .into(),
                ),
                _ => return Err(unknown("curve", s, &CURVE_NAMES)),
            };
        let name = CURVE_NAMES
            .into_iter()
            .find(|n| *n == s)
            .expect("matched above");
        Ok(Curve { name, group })
    }
}

/// Whether and how the server asks for client certificates; the names and
/// meanings of Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Ask for none.
    #[default]
    NoClientCert,
    /// Ask for one; accept the connection without it, and accept any
    /// certificate whose key signed the handshake, without checking who
    /// issued it.
    RequestClientCert,
    /// As `RequestClientCert`, but a connection without one is refused.
    RequireAnyClientCert,
    /// Accept a connection without a certificate; one that is sent must
    /// chain to `client_ca_file`.
    VerifyClientCertIfGiven,
    /// Refuse a connection without a certificate that chains to
    /// `client_ca_file`: the one policy that authenticates clients.
    RequireAndVerifyClientCert,
}

const CLIENT_AUTH_NAMES: [&str; 5] = [
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
];

impl ClientAuth {
    pub fn name(self) -> &'static str {
        CLIENT_AUTH_NAMES[self as usize]
    }

    /// Whether a client certificate is checked against `client_ca_file`.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

impl FromStr for ClientAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            // exporter-toolkit keeps the old name working.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return Err(unknown("client_auth_type", s, &CLIENT_AUTH_NAMES)),
        })
    }
}

/// `unknown <what> "<s>" (did you mean "x"?); valid: a, b`, the shape the
/// main config file's errors have.
pub(crate) fn unknown(what: &str, s: &str, valid: &[&str]) -> String {
    let hint = did_you_mean(s, valid.iter().copied())
        .map(|m| format!(" (did you mean \"{m}\"?)"))
        .unwrap_or_default();
    format!("unknown {what} \"{s}\"{hint}; valid: {}", valid.join(", "))
}

/// Deserializes a string through `FromStr`, failing inside the
/// deserializer's visit so that the YAML error carries the value's line
/// and column.
pub(crate) struct ParseStr<T>(&'static str, PhantomData<T>);

impl<T> ParseStr<T> {
    pub(crate) fn new(expecting: &'static str) -> Self {
        ParseStr(expecting, PhantomData)
    }
}

impl<T: FromStr<Err = String>> Visitor<'_> for ParseStr<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

macro_rules! deserialize_from_str {
    ($($ty:ty => $expecting:literal),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(ParseStr::<$ty>::new($expecting))
            }
        }
    )*};
}

deserialize_from_str! {
    TlsVersion => "a TLS version (TLS12 or TLS13)",
    CipherSuite => "a cipher suite name",
    Curve => "a curve name",
    ClientAuth => "a client_auth_type",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_below_tls12_are_refused_with_the_reason() {
        assert_eq!("TLS12".parse(), Ok(TlsVersion::Tls12));
        assert_eq!("TLS13".parse(), Ok(TlsVersion::Tls13));
        for old in ["TLS10", "TLS11"] {
            let e = old.parse::<TlsVersion>().unwrap_err();
            assert!(e.contains("not supported") && e.contains(old), "{e}");
        }
        let e = "TLS111".parse::<TlsVersion>().unwrap_err();
        assert!(e.starts_with("unknown TLS version \"TLS111\""), "{e}");
        assert!(TlsVersion::Tls12 < TlsVersion::Tls13);
    }

    #[test]
    fn every_supported_suite_is_in_the_ring_provider() {
        // If rustls drops or renames a suite, this fails before a config
        // that names it starts negotiating something else.
        let provider = rustls::crypto::ring::default_provider();
        let all = supported_suites();
        assert_eq!(all.len(), provider.cipher_suites.len());
        for s in all {
            assert!(
                provider
                    .cipher_suites
                    .iter()
                    .any(|p| p.suite() == s.suite.suite()),
                "{}",
                s.name
            );
            // The Go name and the IANA name rustls prints agree.
            let iana = format!("{:?}", s.suite.suite());
            assert_eq!(iana.replace("TLS13_", "TLS_"), s.name, "{iana}");
        }
    }

    #[test]
    fn go_only_suites_and_curves_are_refused_not_dropped() {
        let e = "TLS_RSA_WITH_AES_128_CBC_SHA"
            .parse::<CipherSuite>()
            .unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let e = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA257"
            .parse::<CipherSuite>()
            .unwrap_err();
        assert!(
            e.contains("did you mean \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\""),
            "{e}"
        );
        let e = "CurveP521".parse::<Curve>().unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        assert_eq!("CurveP384".parse::<Curve>().unwrap().name(), "CurveP384");
        assert!("P256".parse::<Curve>().is_err());
    }

    #[test]
    fn client_auth_names_round_trip() {
        for name in CLIENT_AUTH_NAMES {
            assert_eq!(name.parse::<ClientAuth>().unwrap().name(), name);
        }
        assert_eq!(
            "RequireClientCert".parse(),
            Ok(ClientAuth::RequireAnyClientCert)
        );
        assert!("requireandverifyclientcert".parse::<ClientAuth>().is_err());
    }
}
