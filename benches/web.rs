//! What the web security layer costs per request and per connection.
//!
//! * basic auth: a bcrypt verification at cost 10 (what `htpasswd -nBC 10`
//!   writes), against the same credentials found in the verification cache;
//! * the certificate check the acceptor makes before every handshake (a few
//!   `stat` calls);
//! * a full TLS handshake, server side only (rustls driven in memory, so
//!   the client's work is not counted): TLS 1.3 and 1.2, with and without
//!   a client certificate;
//! * a whole HTTPS connection over loopback through `TlsAcceptor::accept`
//!   (handshake, both sides, in one process).
//!
//! Run with `cargo bench --bench web`; `-- 2000` runs that many handshakes
//! per line instead of 500.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use herakles_node_exporter::web::{Access, BasicAuth, WebConfig, WebSecurity};
use http::HeaderValue;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn per(total: Duration, n: usize) -> String {
    let us = total.as_secs_f64() * 1e6 / n as f64;
    if us >= 1000.0 {
        format!("{:>9.2} ms", us / 1000.0)
    } else {
        format!("{us:>9.2} µs")
    }
}

/// A CA, a server certificate and a client certificate, written to `dir`.
fn certificates(dir: &std::path::Path) -> (String, (String, String)) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let issue = |usage| {
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        (p.signed_by(&key, &ca).unwrap().pem(), key.serialize_pem())
    };
    let server = issue(ExtendedKeyUsagePurpose::ServerAuth);
    let client = issue(ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), &server.0).unwrap();
    std::fs::write(dir.join("server.key"), &server.1).unwrap();
    (ca.pem(), client)
}

fn client_config(
    ca: &str,
    cert: Option<&(String, String)>,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let b = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match cert {
        None => b.with_no_client_auth(),
        Some((c, k)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    // Full handshakes: Go's HTTP client (Prometheus) keeps no TLS session
    // cache unless configured to, so each new connection is one.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Move one side's pending TLS bytes to the other.
fn pump(from: &mut dyn FnMut(&mut Vec<u8>), to: &mut dyn FnMut(&[u8])) {
    let mut buf = Vec::new();
    from(&mut buf);
    if !buf.is_empty() {
        to(&buf);
    }
}

/// Time spent in the server's calls for `n` complete handshakes.
fn server_handshakes(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>, n: usize) -> Duration {
    let mut server_time = Duration::ZERO;
    for _ in 0..n {
        let mut c = ClientConnection::new(
            Arc::clone(client),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut s = {
            let start = Instant::now();
            let s = ServerConnection::new(Arc::clone(server)).unwrap();
            server_time += start.elapsed();
            s
        };
        while c.is_handshaking() || s.is_handshaking() {
            pump(
                &mut |buf| {
                    while c.wants_write() {
                        c.write_tls(buf).unwrap();
                    }
                },
                &mut |bytes| {
                    let start = Instant::now();
                    let mut r = bytes;
                    while !r.is_empty() {
                        s.read_tls(&mut r).unwrap();
                        s.process_new_packets().unwrap();
                    }
                    server_time += start.elapsed();
                },
            );
            pump(
                &mut |buf| {
                    let start = Instant::now();
                    while s.wants_write() {
                        s.write_tls(buf).unwrap();
                    }
                    server_time += start.elapsed();
                },
                &mut |bytes| {
                    let mut r = bytes;
                    while !r.is_empty() {
                        c.read_tls(&mut r).unwrap();
                        c.process_new_packets().unwrap();
                    }
                },
            );
        }
        // The client's first application data would follow; the handshake
        // is what we measure.
        let _ = c.writer().write_all(b"x");
        let _ = s.reader().read(&mut [0u8; 1]);
    }
    server_time
}

fn main() {
    let handshakes: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let (ca, client_cert) = certificates(dir.path());

    // Basic auth at cost 10.
    let hash = bcrypt::hash("scrape-password", 10).unwrap();
    let web_yml = dir.path().join("auth.yml");
    std::fs::write(
        &web_yml,
        format!("basic_auth_users:\n  prometheus: {hash}\n"),
    )
    .unwrap();
    let config = WebConfig::load(&web_yml).unwrap();
    let header = HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("prometheus:scrape-password")
    ))
    .unwrap();
    let n = 10;
    let start = Instant::now();
    for _ in 0..n {
        // A fresh checker has an empty cache: every check runs bcrypt.
        let auth = BasicAuth::new(&config.users).unwrap();
        assert_eq!(auth.check_blocking(Some(&header)), Access::Granted);
    }
    println!(
        "web: basic auth, bcrypt cost 10, no cache      {} per check ({n} checks)",
        per(start.elapsed(), n)
    );
    let auth = BasicAuth::new(&config.users).unwrap();
    auth.check_blocking(Some(&header));
    let n = 100_000;
    let start = Instant::now();
    for _ in 0..n {
        assert_eq!(auth.check_blocking(Some(&header)), Access::Granted);
    }
    println!(
        "web: basic auth, verification cache hit        {} per check ({n} checks, {} bcrypt runs)",
        per(start.elapsed(), n),
        auth.bcrypt_runs()
    );

    // The per-handshake certificate check.
    let tls_yml = dir.path().join("tls.yml");
    std::fs::write(
        &tls_yml,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let plain = WebSecurity::new(&WebConfig::load(&tls_yml).unwrap()).unwrap();
    let acceptor = plain.tls().unwrap();
    // Files younger than two seconds are compared by content; wait so the
    // figure is the steady state (stat only).
    std::thread::sleep(Duration::from_millis(2100));
    let n = 100_000;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(acceptor.server_config());
    }
    println!(
        "web: certificate file check before a handshake {} per handshake ({n} checks)",
        per(start.elapsed(), n)
    );

    // Server-side handshake cost.
    let mtls_yml = dir.path().join("mtls.yml");
    std::fs::write(
        &mtls_yml,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    )
    .unwrap();
    let mtls = WebSecurity::new(&WebConfig::load(&mtls_yml).unwrap()).unwrap();
    let server = acceptor.server_config();
    let server_mtls = mtls.tls().unwrap().server_config();
    for (label, server, cert, version) in [
        ("TLS 1.3", &server, None, &rustls::version::TLS13),
        ("TLS 1.2", &server, None, &rustls::version::TLS12),
        (
            "TLS 1.3, client certificate",
            &server_mtls,
            Some(&client_cert),
            &rustls::version::TLS13,
        ),
        (
            "TLS 1.2, client certificate",
            &server_mtls,
            Some(&client_cert),
            &rustls::version::TLS12,
        ),
    ] {
        let client = client_config(&ca, cert, version);
        server_handshakes(server, &client, 20);
        let took = server_handshakes(server, &client, handshakes);
        println!(
            "web: handshake, server side, {label:<28} {} ({handshakes} handshakes, ECDSA P-256)",
            per(took, handshakes)
        );
    }

    // Whole connections over loopback through the acceptor.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let web = Arc::new(plain);
    let client = client_config(&ca, None, &rustls::version::TLS13);
    let took = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::clone(&web);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let web = Arc::clone(&served);
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    if let Ok(mut tls) = web.tls().unwrap().accept(tcp).await {
                        let _ = tls.write_all(b"ok").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        let connector = tokio_rustls::TlsConnector::from(client);
        let start = Instant::now();
        for _ in 0..handshakes {
            use tokio::io::AsyncReadExt;
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut tls = connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let mut buf = Vec::new();
            let _ = tls.read_to_end(&mut buf).await;
            assert_eq!(buf, b"ok");
        }
        start.elapsed()
    });
    println!(
        "web: HTTPS connection over loopback, TLS 1.3   {} per connection, both sides ({handshakes} connections)",
        per(took, handshakes)
    );
}
