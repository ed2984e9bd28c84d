//! Helpers shared by the integration tests: a minimal HTTP/1.1 client (the
//! tests talk to the exporter exactly as Prometheus does, over loopback) and
//! a handle on a running exporter binary.
#![allow(dead_code)]

pub mod cgroups;
pub mod prometheus;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `path` with extra request headers.
pub fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers)
}

/// A `method` request for `path` with extra request headers.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect to exporter");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    get_with(addr, path, &[])
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// A running exporter binary on an ephemeral loopback port.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line it wrote to standard error so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Start the binary with `--no-config -p 0 --bind 127.0.0.1` plus `args`.
    pub fn start(args: &[&str]) -> Running {
        Running::start_env(args, &[])
    }

    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Running {
        Running::start_under(&[], args, env)
    }

    /// Start it through `wrapper`, a command that execs the binary given as
    /// its last argument (`prlimit --nofile=256:256 --`), so that the child
    /// is the exporter itself.
    pub fn start_under(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Running {
        let bin = env!("CARGO_BIN_EXE_herakles-node-exporter");
        let mut cmd = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut cmd = Command::new(program);
                cmd.args(wrapper_args).arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        if !args.iter().any(|a| *a == "-c" || a.starts_with("--config")) {
            cmd.arg("--no-config");
        }
        cmd.args(["-p", "0", "--bind", "127.0.0.1"])
            .args(args)
            .envs(env.iter().copied());
        Running::spawn(cmd)
    }

    /// Start `cmd`, an exporter (possibly behind a wrapper such as setpriv
    /// or chroot that execs it) told to listen on port 0, and wait until it
    /// logs its address.
    pub fn spawn(mut cmd: Command) -> Running {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start exporter");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().unwrap();
                panic!(
                    "exporter exited ({status}) before listening:\n{}",
                    log.lock().unwrap().join("\n")
                );
            };
            log.lock().unwrap().push(line.clone());
            let rest = ["listening on http://", "listening on https://"]
                .iter()
                .find_map(|scheme| line.split(scheme).nth(1));
            if let Some(rest) = rest {
                // Up to the end of the address, whatever the log format
                // puts after it (a space, logfmt's closing quote, JSON's).
                let a: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
                    .collect();
                break a.parse().unwrap();
            }
        };
        // Keep draining stderr so the exporter never blocks on a full pipe.
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Running { child, addr, log }
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.addr, path)
    }

    /// Wait (at most a minute) until `n` lines it logged contain `needle`.
    pub fn wait_log(&self, needle: &str, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.log.lock().unwrap();
            if log.iter().filter(|l| l.contains(needle)).count() >= n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {n}x {needle:?} in:\n{}",
                log.join("\n")
            );
            drop(log);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    /// Stop it the way an operator would, with SIGTERM, so collectors that
    /// change the host (netprobe's TC filters) undo it; SIGKILL only if it
    /// has not exited after 10 s (it must within 5 s; a test checks that).
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Another exporter (Debian's node_exporter, process-exporter) on a free
/// loopback port, to compare with; killed when dropped.
pub struct Peer {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Peer {
    /// Start `program` with the arguments `args` makes for the address it
    /// is to listen on, and wait until it accepts connections.
    pub fn start(program: &str, args: impl FnOnce(SocketAddr) -> Vec<String>) -> Peer {
        assert!(
            std::path::Path::new(program).exists(),
            "{program} missing: run scripts/setup.sh"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let peer = Peer {
            addr,
            child: Command::new(program)
                .args(args(addr))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        };
        for _ in 0..200 {
            if TcpStream::connect(addr).is_ok() {
                return peer;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{program} did not start on {addr}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Assert that `path` answers GET and HEAD alike (HEAD: same status and
/// headers, no body) and refuses other methods with 405 and `Allow`.
pub fn assert_get_and_head_only(addr: SocketAddr, path: &str) {
    let get = get(addr, path);
    assert_eq!(get.status, 200, "GET {path}");
    let head = request(addr, "HEAD", path, &[]);
    assert_eq!(head.status, 200, "HEAD {path}");
    assert!(head.body.is_empty(), "HEAD {path} sent a body");
    assert_eq!(head.header("content-type"), get.header("content-type"));
    let length: usize = head.header("content-length").unwrap().parse().unwrap();
    assert!(length > 0, "HEAD {path}: Content-Length {length}");
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let resp = request(addr, method, path, &[]);
        assert_eq!(resp.status, 405, "{method} {path}");
        assert_eq!(resp.header("allow"), Some("GET, HEAD"), "{method} {path}");
    }
}

/// Run `f` on a thread in a fresh network namespace with `lo` up; programs
/// it starts inherit the namespace, so TC filters they attach never touch
/// the host's interfaces.
pub fn in_netns<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        // SAFETY: CLONE_NEWNET alone affects only the calling thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        sh("ip link set lo up");
        f();
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// Run `cmd` with `sh -c`; its standard output. Fails the test if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether the exporter's eBPF programs can load here; prints why not.
pub fn can_load_ebpf() -> bool {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").is_file() {
        herakles_core::testing::skip(
            "no /sys/kernel/btf/vmlinux, the eBPF programs cannot load here",
        );
        return false;
    }
    let caps = herakles_node_exporter::util::caps::effective().unwrap_or(0);
    if caps & (1 << 39) == 0 && caps & (1 << 21) == 0 {
        herakles_core::testing::skip(
            "no CAP_BPF/CAP_SYS_ADMIN, the eBPF programs cannot load here",
        );
        return false;
    }
    true
}

/// promtool lints we accept, each for a stated reason.
///
/// `herakles_system_entropy_bits` is a name the spec fixes; promtool's
/// heuristic reads "bits" as a data-size unit that should be bytes, but
/// entropy bits are not a data size.
///
/// `herakles_cpu_process_time_seconds` is also a spec name; it is a counter
/// because it is one, and `_total` cannot be appended without renaming it.
///
/// `herakles_ebpf_maps_count` is a spec name too: a gauge counting maps,
/// whose `_count` suffix promtool reserves for histograms and summaries.
const ACCEPTED_LINTS: &[&str] = &[
    "herakles_system_entropy_bits use base unit \"bytes\" instead of \"bits\"",
    "herakles_cpu_process_time_seconds counter metrics should have \"_total\" suffix",
    "herakles_ebpf_maps_count non-histogram and non-summary metrics should not have \"_count\" suffix",
];

/// Run `promtool check metrics` on an exposition; returns its complaints
/// other than [`ACCEPTED_LINTS`].
pub fn promtool_check(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run scripts/setup.sh (Debian package 'prometheus')");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let complaints: String = complaints
        .lines()
        .filter(|l| !ACCEPTED_LINTS.contains(&l.trim()))
        .map(|l| format!("{l}\n"))
        .collect();
    let only_accepted = complaints.trim().is_empty();
    if !out.status.success() && !only_accepted {
        return format!("promtool exited with {}: {complaints}", out.status);
    }
    complaints
}

/// Parse an exposition with a real parser (prometheus-parse).
pub fn parse(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("exposition parses")
}

/// The value of the sample `name` whose labels include all of `labels`.
pub fn value(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// A `key value` field of /proc/stat.
pub fn proc_stat(key: &str) -> f64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Assert that a `/health` report shows every collector healthy and every
/// eBPF part loaded and attached.
pub fn assert_all_healthy(health: &serde_json::Value) {
    for (name, c) in health["collectors"].as_object().expect("collectors") {
        assert_eq!(c["healthy"], true, "collector {name}: {c}");
    }
    for part in ["network", "disk", "tcp_tracking"] {
        assert_eq!(
            health["ebpf"]["parts"][part]["state"], "active",
            "eBPF {part}: {}",
            health["ebpf"]
        );
    }
}
