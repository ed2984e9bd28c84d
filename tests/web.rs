//! The web security module (`src/web`) against real clients over loopback:
//! tokio-rustls, curl, openssl s_client, a hand-written TLS 1.1 ClientHello,
//! and Debian's node_exporter reading the same web config file.
//!
//! Certificates are made here with rcgen: a CA, server certificates it
//! signs, a client certificate it signs and a self-signed "rogue" client
//! certificate. The server is a few lines of hyper over
//! [`TlsAcceptor::accept`], [`WebSecurity::authorize`] and
//! [`WebSecurity::finish`], as the exporter's listener uses them.
//!
//! No test here needs the suite lock: loopback ports are chosen by the
//! kernel (bind :0), no eBPF, nothing host-wide.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herakles_node_exporter::web::{TlsAcceptor, WebConfig, WebSecurity};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::tls::{curl, htpasswd_hash, path_str, rogue_client, run, Pem, Site};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// Our web security from `site`'s web config (see [`Site::web_config`]),
/// served.
fn serve(site: &Site, tls_extra: &str, extra: &str) -> Server {
    let config = WebConfig::load(&site.web_config(tls_extra, extra)).expect("web config loads");
    Server::start(WebSecurity::new(&config).unwrap())
}

/// Our web security behind hyper on a loopback port, in its own runtime.
struct Server {
    addr: SocketAddr,
    web: Arc<WebSecurity>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(web: WebSecurity) -> Server {
        let web = Arc::new(web);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let served = Arc::clone(&web);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = stopped => {}
                    _ = accept_loop(listener, served) => {}
                }
            });
        });
        Server {
            addr,
            web,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn tls(&self) -> &TlsAcceptor {
        self.web.tls().unwrap()
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/metrics", self.addr.port())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, web: Arc<WebSecurity>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let web = Arc::clone(&web);
        tokio::spawn(async move {
            let Some(tls) = web.tls() else { return };
            let Ok(stream) = tls.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let web = Arc::clone(&web);
                async move {
                    let response = match web.authorize(request.headers()).await {
                        Err(denied) => denied,
                        Ok(()) => {
                            let mut ok = hyper::Response::new(Full::new(Bytes::from_static(
                                b"# scrape body\n",
                            )));
                            web.finish(ok.headers_mut());
                            ok
                        }
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A rustls client trusting `ca`, offering `versions`, with an optional
/// client certificate.
fn client(
    ca: &str,
    cert: Option<&Pem>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
    Arc::new(match cert {
        None => builder.with_no_client_auth(),
        Some(p) => builder
            .with_client_auth_cert(
                vec![p.der()],
                PrivateKeyDer::from_pem_slice(p.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// What one HTTPS request over a fresh connection saw.
#[derive(Debug)]
struct Seen {
    version: ProtocolVersion,
    suite: rustls::CipherSuite,
    group: Option<rustls::NamedGroup>,
    server_cert: CertificateDer<'static>,
    response: String,
}

/// GET /metrics over a new TLS connection; `Err` carries the TLS or I/O
/// error (a refused handshake, an alert after it).
fn fetch(addr: SocketAddr, config: Arc<ClientConfig>, auth: Option<&str>) -> Result<Seen, String> {
    block_on(async move {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio::time::timeout(Duration::from_secs(20), connector.connect(name, tcp))
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let mut request =
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_string();
        if let Some(a) = auth {
            request.push_str(&format!("Authorization: {a}\r\n"));
        }
        request.push_str("\r\n");
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut response))
            .await
            .map_err(|_| "response timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        if response.is_empty() {
            return Err("connection closed without a response".into());
        }
        Ok(Seen {
            version: conn.protocol_version().unwrap(),
            suite: conn.negotiated_cipher_suite().unwrap().suite(),
            group: conn.negotiated_key_exchange_group().map(|g| g.name()),
            server_cert: conn.peer_certificates().unwrap()[0].clone(),
            response: String::from_utf8_lossy(&response).into_owned(),
        })
    })
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

#[test]
fn tls12_and_tls13_with_basic_auth_and_headers_over_rustls_and_curl() {
    let site = Site::new();
    let users = format!(
        "basic_auth_users:\n  alice: {}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n",
        htpasswd_hash("s3cret")
    );
    let server = serve(&site, "", &users);
    let ca = site.pki.ca_pem();
    let alice = basic("alice", "s3cret");

    let tls13 = fetch(server.addr, client(&ca, None, BOTH), Some(&alice)).unwrap();
    assert_eq!(tls13.version, ProtocolVersion::TLSv1_3);
    assert!(tls13.response.starts_with("HTTP/1.1 200"), "{tls13:?}");
    assert!(
        tls13.response.contains("x-frame-options: deny"),
        "{tls13:?}"
    );
    let tls12 = fetch(
        server.addr,
        client(&ca, None, &[&rustls::version::TLS12]),
        Some(&alice),
    )
    .unwrap();
    assert_eq!(tls12.version, ProtocolVersion::TLSv1_2);
    assert!(tls12.response.starts_with("HTTP/1.1 200"), "{tls12:?}");

    let ca_file = site.path("ca.pem");
    let cacert = ["--cacert", path_str(&ca_file)];
    let (code, head, err) = curl(
        &server.url(),
        &[&cacert[..], &["-u", "alice:s3cret"]].concat(),
    );
    assert_eq!(code, 200, "{head}{err}");
    assert!(head.contains("# scrape body"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    let (code, _, err) = curl(
        &server.url(),
        &[&cacert[..], &["--tls-max", "1.2", "-u", "alice:s3cret"]].concat(),
    );
    assert_eq!(code, 200, "curl over TLS 1.2: {err}");

    // A wrong password, an unknown user and no credentials: 401 with the
    // challenge, and the security headers still on.
    for creds in [&["-u", "alice:wrong"][..], &["-u", "bob:s3cret"], &[]] {
        let (code, head, err) = curl(&server.url(), &[&cacert[..], creds].concat());
        assert_eq!(code, 401, "{creds:?}: {head}{err}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("www-authenticate: basic"), "{head}");
        assert!(lower.contains("x-frame-options: deny"), "{head}");
        assert!(!head.contains("# scrape body"), "{head}");
    }
    // The right password, four more times: still the one bcrypt run of the
    // first success (cache), plus one for each failure above.
    let auth = server.web.basic_auth().unwrap();
    let before = auth.bcrypt_runs();
    for _ in 0..4 {
        let (code, _, _) = curl(
            &server.url(),
            &[&cacert[..], &["-u", "alice:s3cret"]].concat(),
        );
        assert_eq!(code, 200);
    }
    assert_eq!(
        auth.bcrypt_runs(),
        before,
        "cached verifications run no bcrypt"
    );
}

/// A TLS 1.1 ClientHello (no supported_versions extension), offering
/// suites TLS 1.1 has.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend([7u8; 32]); // random
    body.push(0); // session id
    let suites: [u16; 4] = [0xc013, 0xc014, 0x002f, 0x0035];
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]); // compression: null
                         // signature_algorithms (rustls wants it before it looks at versions):
                         // ecdsa_secp256r1_sha256, rsa_pkcs1_sha256.
    let schemes: [u16; 2] = [0x0403, 0x0401];
    let mut ext = vec![0x00, 0x0d];
    ext.extend(((schemes.len() * 2 + 2) as u16).to_be_bytes());
    ext.extend(((schemes.len() * 2) as u16).to_be_bytes());
    for s in schemes {
        ext.extend(s.to_be_bytes());
    }
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut handshake = vec![1u8]; // client_hello
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

#[test]
fn tls_1_1_is_refused() {
    let site = Site::new();
    let server = serve(&site, "", "");

    // By hand: the server answers a TLS 1.1 hello with a fatal
    // protocol_version alert (RFC 8446: 70).
    let reply = block_on(async {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&tls11_client_hello()).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply)).await;
        reply
    });
    assert!(reply.len() >= 7, "{reply:?}");
    assert_eq!(reply[0], 0x15, "an alert record: {reply:?}");
    assert_eq!(&reply[5..7], &[2, 70], "fatal protocol_version: {reply:?}");

    // openssl, allowed to speak TLS 1.1 itself (security level 0), is
    // refused by the server: the alert it reports is the server's (its
    // TLS 1.1 hello has no signature_algorithms, so rustls refuses it one
    // step before the version check, with handshake_failure).
    let out = run(Command::new("openssl").args([
        "s_client",
        "-connect",
        &server.addr.to_string(),
        "-tls1_1",
        "-cipher",
        "DEFAULT@SECLEVEL=0",
    ]));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("SSL alert number"), "{text}");
    assert!(!text.contains("no protocols available"), "{text}");

    // The same openssl with TLS 1.2 connects: the refusal was the version.
    let out = run(Command::new("openssl").args([
        "s_client",
        "-connect",
        &server.addr.to_string(),
        "-tls1_2",
        "-CAfile",
        path_str(&site.path("ca.pem")),
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Protocol  : TLSv1.2"), "{text}");
}

#[test]
fn min_version_cipher_suites_and_curves_are_honoured() {
    let site = Site::new();
    let ca = site.pki.ca_pem();
    {
        let server = serve(&site, "  min_version: TLS13\n", "");
        let e = fetch(
            server.addr,
            client(&ca, None, &[&rustls::version::TLS12]),
            None,
        )
        .unwrap_err();
        assert!(e.contains("ProtocolVersion"), "{e}");
        let seen = fetch(server.addr, client(&ca, None, BOTH), None).unwrap();
        assert_eq!(seen.version, ProtocolVersion::TLSv1_3);
    }
    {
        let server = serve(&site,
            "  max_version: TLS12\n  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\n  curve_preferences: [CurveP384]\n",
            "",
        );
        let seen = fetch(server.addr, client(&ca, None, BOTH), None).unwrap();
        assert_eq!(seen.version, ProtocolVersion::TLSv1_2);
        assert_eq!(
            seen.suite,
            rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        );
        assert_eq!(seen.group, Some(rustls::NamedGroup::secp384r1));
        // A client without that suite is refused, not served another.
        let (code, _, err) = curl(
            &server.url(),
            &[
                "--cacert",
                path_str(&site.path("ca.pem")),
                "--ciphers",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("handshake failure"), "{err}");
    }
}

#[test]
fn client_certificates_by_policy() {
    let site = Site::new();
    let ca = site.pki.ca_pem();
    let good = site.pki.client();
    let rogue = rogue_client();

    let server = serve(
        &site,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        "",
    );
    let e = fetch(server.addr, client(&ca, None, BOTH), None).unwrap_err();
    assert!(e.contains("CertificateRequired"), "{e}");
    let e = fetch(server.addr, client(&ca, Some(&rogue), BOTH), None).unwrap_err();
    assert!(
        e.contains("UnknownCA") || e.contains("BadCertificate"),
        "{e}"
    );
    let e = fetch(
        server.addr,
        client(&ca, None, &[&rustls::version::TLS12]),
        None,
    )
    .unwrap_err();
    assert!(e.contains("alert") || e.contains("Alert"), "{e}");
    let ok = fetch(server.addr, client(&ca, Some(&good), BOTH), None).unwrap();
    assert!(ok.response.starts_with("HTTP/1.1 200"), "{ok:?}");

    // curl: no certificate, no response; the client's certificate, 200.
    site.write("client.crt", &good.cert);
    site.write("client.key", &good.key);
    let ca_file = site.path("ca.pem");
    let (code, _, err) = curl(&server.url(), &["--cacert", path_str(&ca_file)]);
    assert_eq!(code, 0, "{err}");
    let (code, head, err) = curl(
        &server.url(),
        &[
            "--cacert",
            path_str(&ca_file),
            "--cert",
            path_str(&site.path("client.crt")),
            "--key",
            path_str(&site.path("client.key")),
        ],
    );
    assert_eq!(code, 200, "{head}{err}");
    drop(server);

    let server = serve(
        &site,
        "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n",
        "",
    );
    assert!(fetch(server.addr, client(&ca, None, BOTH), None).is_ok());
    assert!(fetch(server.addr, client(&ca, Some(&rogue), BOTH), None).is_err());
    assert!(fetch(server.addr, client(&ca, Some(&good), BOTH), None).is_ok());
    drop(server);

    // Any certificate whose key the client holds, none refused.
    let server = serve(&site, "  client_auth_type: RequireAnyClientCert\n", "");
    let e = fetch(server.addr, client(&ca, None, BOTH), None).unwrap_err();
    assert!(e.contains("CertificateRequired"), "{e}");
    assert!(fetch(server.addr, client(&ca, Some(&rogue), BOTH), None).is_ok());
    drop(server);

    let server = serve(&site, "  client_auth_type: RequestClientCert\n", "");
    assert!(fetch(server.addr, client(&ca, None, BOTH), None).is_ok());
    assert!(fetch(server.addr, client(&ca, Some(&rogue), BOTH), None).is_ok());
}

#[test]
fn a_renewed_certificate_is_served_without_restart() {
    let site = Site::new();
    let ca = site.pki.ca_pem();
    let server = serve(&site, "", "");
    let first = std::fs::read_to_string(site.path("server.crt")).unwrap();
    let seen = fetch(server.addr, client(&ca, None, BOTH), None).unwrap();
    assert_eq!(
        seen.server_cert,
        CertificateDer::from_pem_slice(first.as_bytes()).unwrap()
    );

    // Renewed in place, certificate first, then key, as a script would.
    let renewed = site.pki.server("renewed");
    site.write("server.crt", &renewed.cert);
    site.write("server.key", &renewed.key);
    let seen = fetch(server.addr, client(&ca, None, BOTH), None).unwrap();
    assert_eq!(seen.server_cert, renewed.der(), "the renewed certificate");
    assert_eq!(server.tls().certificate_state().ok, 1);

    // A broken renewal: the last good certificate stays, the failure is
    // counted (and logged) once however many handshakes follow.
    site.write("server.crt", "-----BEGIN CERTIFICATE-----\ntruncated\n");
    for _ in 0..3 {
        let seen = fetch(server.addr, client(&ca, None, BOTH), None).unwrap();
        assert_eq!(seen.server_cert, renewed.der());
    }
    assert_eq!(server.tls().certificate_state().failed, 1);

    // A key that belongs to another certificate is a broken renewal too.
    let other = site.pki.server("other");
    site.write("server.crt", &other.cert);
    let seen = fetch(server.addr, client(&ca, None, BOTH), None).unwrap();
    assert_eq!(seen.server_cert, renewed.der());
    assert_eq!(server.tls().certificate_state().failed, 2);

    // Renewed by replacing the files (rename over them), as certbot and
    // cert-manager do: picked up.
    site.write("new.key", &other.key);
    std::fs::rename(site.path("new.key"), site.path("server.key")).unwrap();
    let seen = fetch(server.addr, client(&ca, None, BOTH), None).unwrap();
    assert_eq!(seen.server_cert, other.der());
    assert_eq!(server.tls().certificate_state().ok, 2);
}

#[test]
fn bad_web_config_files_name_file_line_and_key() {
    let site = Site::new();
    let other = site.pki.server("other");
    site.write("other.key", &other.key);
    site.write("empty.pem", "");
    let cases: [(&str, &str, usize, &str); 5] = [
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
            "tls_server_config.key_file",
            3,
            "does not belong to the certificate",
        ),
        (
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
            "tls_server_config.cert_file",
            2,
            "no PEM certificate",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: empty.pem\n",
            "tls_server_config.client_ca_file",
            5,
            "no PEM certificate",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_auth_type",
            4,
            "not set",
        ),
        (
            // An RSA-only TLS 1.2 suite list with an ECDSA certificate would
            // refuse every TLS 1.2 client.
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n",
            "tls_server_config.cipher_suites",
            4,
            "ECDSA key",
        ),
    ];
    let file = site.path("web.yml");
    for (text, key, line, what) in cases {
        site.write("web.yml", text);
        let e = WebConfig::load(&file).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{}:{line}:", file.display())),
            "{text}\n=> {shown}"
        );
        assert!(shown.contains(&format!("key \"{key}\"")), "{shown}");
        assert!(shown.contains(what), "{shown}");
    }
    let e = WebConfig::load(&site.path("missing.yml")).unwrap_err();
    assert!(
        e.to_string()
            .contains("missing.yml: web config file not found"),
        "{e}"
    );
}

/// Debian's node_exporter on a loopback port with `--web.config.file`.
struct NodeExporter {
    child: std::process::Child,
    url: String,
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start node_exporter with `web_config`; it must come up serving HTTPS
/// (`probe` is a curl that gets a 200 once it listens).
fn start_node_exporter(web_config: &Path, probe: &[&str]) -> NodeExporter {
    assert!(
        Path::new(NODE_EXPORTER).exists(),
        "{NODE_EXPORTER} missing: run scripts/setup.sh"
    );
    // The port is free when asked; another process may take it before
    // node_exporter binds, so try a few.
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(NODE_EXPORTER)
            .args([
                &format!("--web.listen-address=127.0.0.1:{port}"),
                &format!("--web.config.file={}", web_config.display()),
                "--collector.disable-defaults",
                "--collector.loadavg",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("https://127.0.0.1:{port}/metrics");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if curl(&url, probe).0 == 200 {
                return NodeExporter { child, url };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!(
        "node_exporter did not come up with {}",
        web_config.display()
    );
}

#[test]
fn node_exporter_reads_the_same_web_config_with_the_same_outcomes() {
    let site = Site::new();
    let good = site.pki.client();
    site.write("client.crt", &good.cert);
    site.write("client.key", &good.key);
    let config = site.web_config(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS12\n  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n  curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: true\n",
        &format!(
            "http_server_config:\n  http2: false\n  headers:\n    X-Content-Type-Options: nosniff\n    X-Frame-Options: sameorigin\nbasic_auth_users:\n  prometheus: {}\n",
            htpasswd_hash("scrape-pw")
        ),
    );
    let ours = Server::start(WebSecurity::new(&WebConfig::load(&config).unwrap()).unwrap());

    let ca_file = site.path("ca.pem");
    let (cert, key) = (site.path("client.crt"), site.path("client.key"));
    let tls = [
        "--cacert",
        path_str(&ca_file),
        "--cert",
        path_str(&cert),
        "--key",
        path_str(&key),
    ];
    let with = |extra: &[&'static str]| -> Vec<String> {
        tls.iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let good_creds = with(&["-u", "prometheus:scrape-pw"]);
    let probe: Vec<&str> = good_creds.iter().map(String::as_str).collect();
    let theirs = start_node_exporter(&config, &probe);

    let cases: Vec<(&str, Vec<String>, u16)> = vec![
        ("certificate and password", good_creds.clone(), 200),
        ("wrong password", with(&["-u", "prometheus:nope"]), 401),
        ("no password", with(&[]), 401),
        (
            "no client certificate",
            vec![
                "--cacert".into(),
                path_str(&ca_file).into(),
                "-u".into(),
                "prometheus:scrape-pw".into(),
            ],
            0,
        ),
        (
            // Security level 0 lets curl's OpenSSL offer TLS 1.1 at all.
            "TLS 1.1",
            with(&[
                "-u",
                "prometheus:scrape-pw",
                "--tlsv1.1",
                "--tls-max",
                "1.1",
                "--ciphers",
                "DEFAULT@SECLEVEL=0",
            ]),
            0,
        ),
    ];
    for (what, args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for (who, url) in [("node_exporter", &theirs.url), ("ours", &ours.url())] {
            let (code, head, err) = curl(url, &args);
            assert_eq!(code, want, "{who}, {what}: {head}{err}");
            if code != 0 {
                let lower = head.to_ascii_lowercase();
                assert!(
                    lower.contains("x-content-type-options: nosniff"),
                    "{who}: {head}"
                );
                assert!(
                    lower.contains("x-frame-options: sameorigin"),
                    "{who}: {head}"
                );
            }
            if code == 401 {
                assert!(
                    head.to_ascii_lowercase()
                        .contains("www-authenticate: basic"),
                    "{who}: {head}"
                );
            }
        }
    }
}
