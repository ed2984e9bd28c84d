//! The exporter binary serving HTTPS, client certificates and basic auth,
//! to real clients: curl, openssl s_client and Debian's Prometheus server
//! scraping it; the spec's `--enable-tls` flags; certificate renewal
//! without a restart; `--web.listen-address`; systemd socket activation;
//! and bad web configs stopping the start and `--check-config`.
//!
//! Certificates are made here (rcgen). Every exporter runs with eBPF off
//! on loopback ports the kernel picks, so nothing here needs the suite
//! lock.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::tls::{curl, htpasswd_hash, path_str, rogue_client, run, Site};
use common::Running;

const BIN: &str = env!("CARGO_BIN_EXE_herakles-node-exporter");

/// No eBPF programs: nothing host-wide, no lock.
const QUIET: &[&str] = &["--disable-ebpf"];

/// The argument curl needs to trust `site`'s CA.
fn cacert(site: &Site) -> [String; 2] {
    ["--cacert".into(), site.arg("ca.pem")]
}

/// `site`'s web config file as an argument.
fn web_config(site: &Site, tls_extra: &str, extra: &str) -> String {
    path_str(&site.web_config(tls_extra, extra)).to_string()
}

fn https(addr: SocketAddr, path: &str) -> String {
    format!("https://{addr}{path}")
}

/// curl with `args` (owned or borrowed) after the CA.
fn curl_ca(site: &Site, url: &str, args: &[&str]) -> (u16, String, String) {
    let ca = cacert(site);
    let all: Vec<&str> = ca
        .iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect();
    curl(url, &all)
}

/// MemTotal from /proc/meminfo in bytes: what the exporter must report.
fn mem_total_bytes() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    kib * 1024.0
}

/// The body holds the memory total the kernel reports: a real series,
/// not merely a 200.
fn assert_real_series(body: &str) {
    let scrape = common::parse(body);
    let total = common::value(&scrape, "herakles_system_memory_total_bytes", &[]);
    assert_eq!(total, Some(mem_total_bytes()), "memory total in the scrape");
}

/// The serial number of the certificate the server at `addr` presents, as
/// `openssl s_client` sees it.
fn served_serial(site: &Site, addr: SocketAddr) -> String {
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "openssl s_client -connect {addr} -servername localhost -CAfile '{}' </dev/null \
         2>/dev/null | openssl x509 -noout -serial",
        site.arg("ca.pem")
    )));
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(text.starts_with("serial="), "s_client: {text:?}");
    text
}

/// When the certificate in `path` expires, in Unix seconds, as openssl
/// and date(1) read it.
fn file_not_after(path: &Path) -> f64 {
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "date -u -d \"$(openssl x509 -noout -enddate -in '{}' | cut -d= -f2)\" +%s",
        path.display()
    )));
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("notAfter of {}: {text:?}: {e}", path.display()))
}

/// The exporter's own TLS certificate series, scraped over HTTPS (which is
/// also a handshake, so a changed file is looked at first).
fn certificate_series(site: &Site, addr: SocketAddr) -> (Option<f64>, Option<f64>, Option<f64>) {
    let (code, text, err) = curl_ca(site, &https(addr, "/metrics"), &[]);
    assert_eq!(code, 200, "{err}");
    let scrape = common::parse(text.split_once("\r\n\r\n").unwrap().1);
    let reloads = |result| {
        common::value(
            &scrape,
            "herakles_tls_certificate_reloads_total",
            &[("result", result)],
        )
    };
    (
        common::value(
            &scrape,
            "herakles_tls_certificate_expiry_timestamp_seconds",
            &[],
        ),
        reloads("success"),
        reloads("failure"),
    )
}

fn file_serial(path: &Path) -> String {
    let out = run(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(path));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Replace a file the way certbot and cert-manager do: a complete new file
/// renamed over the old one.
fn replace(site: &Site, name: &str, text: &str) {
    let tmp = site.path(&format!(".{name}.new"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, site.path(name)).unwrap();
}

fn output(args: &[&str]) -> Output {
    run(Command::new(BIN).arg("--no-config").args(QUIET).args(args))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn spec_tls_flags_serve_https_and_a_renewed_certificate_without_restart() {
    let site = Site::new();
    let (cert, key) = (site.arg("server.crt"), site.arg("server.key"));
    let mut exp = Running::start(
        &[
            QUIET,
            &["--enable-tls", "--tls-cert", &cert, "--tls-key", &key],
        ]
        .concat(),
    );
    let log = exp.log.lock().unwrap().join("\n");
    assert!(
        log.contains(&format!("listening on https://{}", exp.addr)),
        "{log}"
    );

    let (code, body, err) = curl_ca(&site, &https(exp.addr, "/metrics"), &[]);
    assert_eq!(code, 200, "{err}");
    assert_real_series(body.split_once("\r\n\r\n").unwrap().1);
    // No plain HTTP on the HTTPS port.
    let (code, _, _) = curl(&format!("http://{}/metrics", exp.addr), &[]);
    assert_ne!(code, 200);

    // TLS 1.1 is refused (openssl at security level 0 may offer it);
    // TLS 1.2 from the same client is served.
    let addr = exp.addr.to_string();
    let tls11 = run(Command::new("openssl").args([
        "s_client",
        "-connect",
        &addr,
        "-tls1_1",
        "-cipher",
        "DEFAULT@SECLEVEL=0",
    ]));
    let text = String::from_utf8_lossy(&tls11.stdout).into_owned() + &stderr(&tls11);
    assert!(!tls11.status.success(), "{text}");
    assert!(text.contains("SSL alert number"), "{text}");
    let (code, _, err) = curl_ca(&site, &https(exp.addr, "/health"), &["--tls-max", "1.2"]);
    assert_eq!(code, 200, "TLS 1.2: {err}");

    // Renewal: a new certificate and key renamed over the old ones are
    // served from the next connection on, by the same process.
    // The expiry metric follows the certificate served, and renewals are
    // counted.
    let first = served_serial(&site, exp.addr);
    assert_eq!(first, file_serial(&site.path("server.crt")));
    let expiry = file_not_after(&site.path("server.crt"));
    assert_eq!(
        certificate_series(&site, exp.addr),
        (Some(expiry), Some(0.0), Some(0.0))
    );
    let renewed = site.pki.server_until("renewed", (2031, 5, 17));
    replace(&site, "server.key", &renewed.key);
    replace(&site, "server.crt", &renewed.cert);
    let second = served_serial(&site, exp.addr);
    assert_ne!(second, first, "the renewed certificate is served");
    assert_eq!(second, file_serial(&site.path("server.crt")));
    assert!(matches!(exp.child.try_wait(), Ok(None)), "no restart");
    let renewed_expiry = file_not_after(&site.path("server.crt"));
    assert_ne!(renewed_expiry, expiry);
    assert_eq!(
        certificate_series(&site, exp.addr),
        (Some(renewed_expiry), Some(1.0), Some(0.0))
    );
    // A renewal that does not load: the served certificate, and so the
    // expiry, stay; the failure is counted.
    replace(
        &site,
        "server.crt",
        "-----BEGIN CERTIFICATE-----\ntruncated\n",
    );
    assert_eq!(
        certificate_series(&site, exp.addr),
        (Some(renewed_expiry), Some(1.0), Some(1.0))
    );
    replace(&site, "server.crt", &renewed.cert);

    // /config names the files, never their contents.
    let (code, config, _) = curl_ca(&site, &https(exp.addr, "/config"), &[]);
    assert_eq!(code, 200);
    assert!(config.contains(&format!("cert_file: {cert}")), "{config}");
    assert!(config.contains("tls_key_path: "), "{config}");
    assert!(!config.contains("PRIVATE KEY"), "{config}");
}

#[test]
fn basic_auth_and_headers_on_every_answer_from_the_web_config_file() {
    let site = Site::new();
    let hash = htpasswd_hash("s3cret");
    let web = web_config(
        &site,
        "",
        &format!(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    \
             X-Content-Type-Options: nosniff\nbasic_auth_users:\n  alice: {hash}\n"
        ),
    );
    let exp = Running::start(&[QUIET, &["--web.config.file", &web]].concat());
    let cases: [(&str, &[&str], u16); 6] = [
        ("/metrics", &["-u", "alice:s3cret"], 200),
        ("/metrics", &["-u", "alice:wrong"], 401),
        ("/metrics", &["-u", "mallory:s3cret"], 401),
        ("/metrics", &[], 401),
        ("/no-such-page", &["-u", "alice:s3cret"], 404),
        ("/no-such-page", &[], 401),
    ];
    for (path, creds, want) in cases {
        let (code, head, err) = curl_ca(&site, &https(exp.addr, path), creds);
        assert_eq!(code, want, "{path} {creds:?}: {head}{err}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("x-frame-options: deny"), "{head}");
        assert!(lower.contains("x-content-type-options: nosniff"), "{head}");
        assert_eq!(
            lower.contains("www-authenticate: basic"),
            want == 401,
            "{path} {creds:?}: {head}"
        );
        if want == 200 {
            assert_real_series(head.split_once("\r\n\r\n").unwrap().1);
        }
    }
    let (code, head, _) = curl_ca(
        &site,
        &https(exp.addr, "/metrics"),
        &["-u", "alice:s3cret", "-X", "POST"],
    );
    assert_eq!(code, 405, "{head}");
    assert!(head.to_ascii_lowercase().contains("x-frame-options: deny"));

    // /config shows the user, not the hash.
    let (code, config, _) = curl_ca(&site, &https(exp.addr, "/config"), &["-u", "alice:s3cret"]);
    assert_eq!(code, 200);
    assert!(config.contains("alice: &lt;secret&gt;"), "{config}");
    assert!(!config.contains(&hash[7..]), "{config}");
    assert!(
        config.contains(&format!("web_config_file: {web}")),
        "{config}"
    );
}

#[test]
fn client_certificates_are_required_and_checked() {
    let site = Site::new();
    site.pki.client().write(site.dir.path(), "client");
    rogue_client().write(site.dir.path(), "rogue");
    let web = web_config(
        &site,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        "",
    );
    let exp = Running::start(&[QUIET, &["--web.config.file", &web]].concat());
    let url = https(exp.addr, "/metrics");
    let with = |name: &str| {
        let (cert, key) = (
            site.arg(&format!("{name}.crt")),
            site.arg(&format!("{name}.key")),
        );
        curl_ca(&site, &url, &["--cert", &cert, "--key", &key])
    };
    let (code, body, err) = with("client");
    assert_eq!(code, 200, "{err}");
    assert_real_series(body.split_once("\r\n\r\n").unwrap().1);
    // Without a certificate, or with one our CA did not issue: the
    // handshake is refused, no HTTP answer at all.
    let (code, _, err) = curl_ca(&site, &url, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("alert"), "{err}");
    let (code, _, err) = with("rogue");
    assert_eq!(code, 0, "{err}");
}

/// A Prometheus job scraping `target` over HTTPS.
fn job(name: &str, target: SocketAddr, tls: &str, auth: Option<(&str, &str)>) -> String {
    let auth = auth.map_or(String::new(), |(u, p)| {
        format!("    basic_auth:\n      username: {u}\n      password: {p}\n")
    });
    format!(
        "  - job_name: {name}\n    scheme: https\n    tls_config:\n{tls}{auth}    \
         static_configs:\n      - targets: ['{target}']\n"
    )
}

/// Prometheus' view of every target: job to (health, last error).
fn targets(prom: &Prometheus) -> Vec<(String, String, String)> {
    let (_, body) = prom.get("/api/v1/targets");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["labels"]["job"].as_str().unwrap().to_string(),
                t["health"].as_str().unwrap().to_string(),
                t["lastError"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn prometheus_scrapes_over_https_with_basic_auth_and_a_client_certificate() {
    let site = Site::new();
    site.pki.client().write(site.dir.path(), "client");
    let web = web_config(
        &site,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        &format!(
            "basic_auth_users:\n  prometheus: {}\n",
            htpasswd_hash("scrape-pw")
        ),
    );
    let exp = Running::start(&[QUIET, &["--web.config.file", &web]].concat());
    let ca = format!("      ca_file: {}\n", site.arg("ca.pem"));
    let client = format!(
        "{ca}      cert_file: {}\n      key_file: {}\n",
        site.arg("client.crt"),
        site.arg("client.key")
    );
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}",
        job("good", exp.addr, &client, Some(("prometheus", "scrape-pw"))),
        job(
            "wrong_password",
            exp.addr,
            &client,
            Some(("prometheus", "nope"))
        ),
        job(
            "no_client_cert",
            exp.addr,
            &ca,
            Some(("prometheus", "scrape-pw"))
        ),
    );
    let prom = Prometheus::start(&config);

    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let seen = targets(&prom);
        if seen.len() == 3 && seen.iter().all(|(_, health, _)| health != "unknown") {
            break seen;
        }
        assert!(Instant::now() < deadline, "{seen:?}\n{}", prom.log());
        std::thread::sleep(Duration::from_millis(250));
    };
    for (job, health, error) in &seen {
        match job.as_str() {
            "good" => assert_eq!(health, "up", "{error}"),
            "wrong_password" => {
                assert_eq!(health, "down");
                assert!(error.contains("401"), "{error}");
            }
            "no_client_cert" => {
                assert_eq!(health, "down");
                assert!(error.contains("certificate"), "{error}");
            }
            other => panic!("job {other}"),
        }
    }
    let up = prom.query("up");
    let up_of = |job: &str| {
        up.iter()
            .find(|s| s["metric"]["job"] == job)
            .map(|s| s["value"][1].as_str().unwrap().to_string())
    };
    assert_eq!(up_of("good").as_deref(), Some("1"), "{up:?}");
    assert_eq!(up_of("wrong_password").as_deref(), Some("0"), "{up:?}");
    assert_eq!(up_of("no_client_cert").as_deref(), Some("0"), "{up:?}");
    let total = prom.query("herakles_system_memory_total_bytes{job=\"good\"}");
    assert_eq!(total.len(), 1, "{total:?}");
    let value: f64 = total[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(value, mem_total_bytes());
}

/// Every "listening on" address the exporter logged, once it has logged
/// `n` of them.
fn listening(exp: &Running, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<String> = exp
            .log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.split("listening on ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_listen_address_is_served() {
    let site = Site::new();
    let web = web_config(&site, "", "");
    let mut cmd = Command::new(BIN);
    cmd.arg("--no-config").args(QUIET).args([
        "--web.config.file",
        &web,
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.listen-address=[::1]:0",
    ]);
    let exp = Running::spawn(cmd);
    let urls = listening(&exp, 2);
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert!(urls[0].starts_with("https://127.0.0.1:"), "{urls:?}");
    assert!(urls[1].starts_with("https://[::1]:"), "{urls:?}");
    for url in &urls {
        let (code, body, err) = curl_ca(&site, &format!("{url}/metrics"), &[]);
        assert_eq!(code, 200, "{url}: {err}");
        assert_real_series(body.split_once("\r\n\r\n").unwrap().1);
    }
    drop(exp);

    // :port is every interface, IPv4 and IPv6.
    let mut cmd = Command::new(BIN);
    cmd.arg("--no-config")
        .args(QUIET)
        .args(["--web.listen-address", ":0"]);
    let exp = Running::spawn(cmd);
    let port = exp.addr.port();
    for host in ["127.0.0.1", "[::1]"] {
        let (code, _, err) = curl(&format!("http://{host}:{port}/health"), &[]);
        assert_eq!(code, 200, "{host}: {err}");
    }
}

#[test]
fn listen_addresses_with_port_or_bind_is_an_error_naming_both() {
    let out = output(&["-p", "9300", "--web.listen-address", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "flag --web.listen-address: key \"listen_addresses\": cannot be combined with port 9300"
        ),
        "{}",
        stderr(&out)
    );
    let out = output(&["--web.listen-address", "::1:9100", "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("[::1]:9100"), "{}", stderr(&out));
}

/// A free loopback port, for a listener another program opens.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn systemd_socket_activation_serves_on_the_passed_socket() {
    let site = Site::new();
    let web = web_config(&site, "", "");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // systemd-socket-activate listens, and on the first connection execs
    // the exporter with the socket as fd 3 and LISTEN_PID/LISTEN_FDS set,
    // as systemd does for a .socket unit.
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.args(["-l", &addr.to_string(), BIN, "--no-config"])
        .args(QUIET)
        .args(["--web.systemd-socket", "--web.config.file", &web]);
    let ca = site.arg("ca.pem");
    let first = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "nothing listens on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        curl(
            &format!("https://{addr}/metrics"),
            &["--cacert", &ca, "--max-time", "30"],
        )
    });
    let exp = Running::spawn(cmd);
    assert_eq!(exp.addr, addr, "served on the socket systemd passed");
    let (code, body, err) = first.join().unwrap();
    assert_eq!(code, 200, "{err}");
    assert_real_series(body.split_once("\r\n\r\n").unwrap().1);
    let (code, _, err) = curl_ca(&site, &https(addr, "/health"), &[]);
    assert_eq!(code, 200, "{err}");
}

#[test]
fn systemd_socket_without_socket_activation_says_so() {
    let out = output(&["--web.systemd-socket"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no sockets from systemd (LISTEN_PID and LISTEN_FDS are not set)"),
        "{}",
        stderr(&out)
    );
    // A descriptor 3 that is no socket, passed as if by systemd.
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "export LISTEN_PID=$$ LISTEN_FDS=1; exec {BIN} --no-config --disable-ebpf \
         --web.systemd-socket 3</dev/null"
    )));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("descriptor 3 from systemd is not a socket"),
        "{}",
        stderr(&out)
    );
    // With bind or port too: which one would win is not guessed.
    let out = output(&["--web.systemd-socket", "-p", "9300"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot be combined with port 9300"));
}

#[test]
fn bad_web_configs_stop_the_start_and_check_config_with_file_and_line() {
    let site = Site::new();
    let good = web_config(&site, "  min_version: TLS13\n", "");
    let out = output(&["--check-config", "--web.config.file", &good]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web configuration OK: HTTPS with"), "{text}");

    site.write(
        "bad.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         min_version: TLS11\n",
    );
    let bad = site.arg("bad.yml");
    for extra in [&["--check-config"][..], &["-p", "0", "--bind", "127.0.0.1"]] {
        let out = output(&[&["--web.config.file", bad.as_str()][..], extra].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(
            err.contains(&format!(
                "{bad}:4:16: key \"tls_server_config.min_version\""
            )),
            "{extra:?}: {err}"
        );
    }

    // The spec's keys: a key that is not the certificate's.
    let other = site.pki.server("other");
    site.write("other.key", &other.key);
    let (cert, other_key) = (site.arg("server.crt"), site.arg("other.key"));
    let spec = |key: &str| {
        let args = [
            "--check-config",
            "--enable-tls",
            "--tls-cert",
            &cert,
            "--tls-key",
            key,
        ];
        args.map(String::from).to_vec()
    };
    let out = output(
        &spec(&other_key)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("key \"tls_key_path\"")
            && stderr(&out).contains("does not belong to the certificate"),
        "{}",
        stderr(&out)
    );

    // Both ways of configuring HTTPS at once.
    let mut both = spec(&site.arg("server.key"));
    both.extend(["--web.config.file".to_string(), good]);
    let out = output(&both.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot be combined with web_config_file"),
        "{}",
        stderr(&out)
    );
}

/// The spec's HTTPS example, as its Prometheus integration document has
/// it: a self-signed certificate made with openssl, `--enable-tls`, and a
/// client trusting that certificate.
#[test]
fn the_specs_openssl_example_serves() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new("openssl")
        .current_dir(dir.path())
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .args(["-keyout", "server.key", "-out", "server.crt", "-days", "1"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .stderr(Stdio::piped()));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir.path())
        .args([
            "--no-config",
            "--disable-ebpf",
            "-p",
            "0",
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--enable-tls",
            "--tls-cert",
            "server.crt",
            "--tls-key",
            "server.key",
        ]);
    let exp = Running::spawn(cmd);
    let crt = dir.path().join("server.crt");
    let (code, _, err) = curl(&https(exp.addr, "/metrics"), &["--cacert", path_str(&crt)]);
    assert_eq!(code, 200, "{err}");
}
