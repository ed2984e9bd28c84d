//! Debian's Prometheus server, started by a test on a free loopback port
//! with a temporary data directory and the configuration it is given;
//! stopped with SIGTERM when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

pub struct Prometheus {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start it with `config` (prometheus.yml) and wait until it is ready.
    pub fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus not found: run scripts/setup.sh (Debian package 'prometheus')");
        let mut p = Prometheus {
            child,
            base: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited with {status}: {}", p.log());
            }
            if std::net::TcpStream::connect(&p.base).is_ok() && p.get("/-/ready").0 == 200 {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let r = super::get(self.base.parse().unwrap(), path);
        (r.status, r.text())
    }

    /// The result of an instant query; panics on a query error.
    pub fn query(&self, expr: &str) -> Vec<Json> {
        let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let (status, body) = self.get(&format!("/api/v1/query?query={q}"));
        let json: Json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{expr}: HTTP {status}, {e}: {body}"));
        assert_eq!(json["status"], "success", "{expr}: {body}");
        match json["data"]["resultType"].as_str() {
            Some("vector") | Some("matrix") => json["data"]["result"].as_array().unwrap().clone(),
            _ => vec![json["data"]["result"].clone()],
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
