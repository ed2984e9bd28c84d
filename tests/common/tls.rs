//! Certificates made in the test (rcgen) and the command-line TLS clients
//! (curl, openssl) that tests/web.rs and tests/tls.rs talk to servers with.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl Pem {
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert.as_bytes()).unwrap()
    }

    /// Write the certificate and key to `dir/NAME.crt` and `dir/NAME.key`.
    pub fn write(&self, dir: &Path, name: &str) {
        std::fs::write(dir.join(format!("{name}.crt")), &self.cert).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), &self.key).unwrap();
    }
}

/// A test CA and the certificates it issues.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "herakles test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A certificate for `localhost`, 127.0.0.1 and ::1, valid until
    /// `until` (year, month, day) or rcgen's default (4096).
    fn issue(
        &self,
        name: &str,
        usage: ExtendedKeyUsagePurpose,
        until: Option<(i32, u8, u8)>,
    ) -> Pem {
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        if let Some((y, m, d)) = until {
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    pub fn server(&self, name: &str) -> Pem {
        self.issue(name, ExtendedKeyUsagePurpose::ServerAuth, None)
    }

    /// A server certificate that expires at the start of `until`.
    pub fn server_until(&self, name: &str, until: (i32, u8, u8)) -> Pem {
        self.issue(name, ExtendedKeyUsagePurpose::ServerAuth, Some(until))
    }

    pub fn client(&self) -> Pem {
        self.issue("prometheus", ExtendedKeyUsagePurpose::ClientAuth, None)
    }
}

/// A client certificate no configured CA issued.
pub fn rogue_client() -> Pem {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "rogue");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    Pem {
        cert: params.self_signed(&key).unwrap().pem(),
        key: key.serialize_pem(),
    }
}

/// A bcrypt hash as `htpasswd -nB` writes it (`$2y$`).
pub fn htpasswd_hash(password: &str) -> String {
    bcrypt::hash_with_result(password, 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// `curl` of `url` with `args`; the status code (0 when no HTTP response
/// came), the response headers and body, and curl's stderr.
pub fn curl(url: &str, args: &[&str]) -> (u16, String, String) {
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (text, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (
        code.trim().parse().unwrap_or(0),
        text.to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A directory with a test CA (`ca.pem`) and a server certificate it issued
/// (`server.crt`, `server.key`), where a test writes its web config.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
}

impl Site {
    pub fn new() -> Site {
        let site = Site {
            dir: tempfile::tempdir().unwrap(),
            pki: Pki::new(),
        };
        site.write("ca.pem", &site.pki.ca_pem());
        site.pki.server("server").write(site.dir.path(), "server");
        site
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// [`Site::path`] as a command-line argument.
    pub fn arg(&self, name: &str) -> String {
        path_str(&self.path(name)).to_string()
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    /// `web.yml` serving `server.crt` (named relative to the config), with
    /// `tls_extra` in `tls_server_config` and `extra` top-level keys.
    pub fn web_config(&self, tls_extra: &str, extra: &str) -> PathBuf {
        self.write(
            "web.yml",
            &format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
                 {tls_extra}{extra}"
            ),
        );
        self.path("web.yml")
    }
}
