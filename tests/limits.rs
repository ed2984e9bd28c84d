//! Resource bounds of the real binary under attack: distinct scrape
//! selections against the cache, idle connections against the file
//! descriptor limit. Each started as an unbounded-resource fault.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{parse, value, Running};

/// A keep-alive HTTP/1.1 client: thousands of requests without a
/// connection each.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.reader.get_mut().write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, body)
    }
}

/// The first number after `key` in `/proc/<pid>/<file>`.
fn proc_figure(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    proc_figure(pid, "status", "VmRSS:")
}

/// `count` distinct `collect[]` selections of `names`, fewest collectors
/// first (cheap scrapes), in a scrambled order so that early and late ones
/// are alike in size.
fn selections(names: &[String], count: usize) -> Vec<String> {
    assert!(names.len() < 32 && (1usize << names.len()) > count);
    let mut masks: Vec<u32> = (1..1u32 << names.len()).collect();
    masks.sort_by_key(|m| m.count_ones());
    masks.truncate(count);
    masks.sort_by_key(|m| m.wrapping_mul(2_654_435_761));
    masks
        .iter()
        .map(|m| {
            let mut path = "/metrics?".to_string();
            for (i, name) in names.iter().enumerate() {
                if m & (1 << i) != 0 {
                    path.push_str(&format!("collect[]={name}&"));
                }
            }
            path
        })
        .collect()
}

/// Scrape every path in `paths` over `clients` keep-alive connections.
fn scrape_all(addr: SocketAddr, paths: &[String], clients: usize) {
    std::thread::scope(|s| {
        for part in paths.chunks(paths.len().div_ceil(clients)) {
            s.spawn(move || {
                let mut client = Client::connect(addr);
                for path in part {
                    assert_eq!(client.get(path).0, 200, "{path}");
                }
            });
        }
    });
}

#[test]
fn ten_thousand_distinct_selections_leave_memory_where_it_was() {
    // Per-process series off and two workers, so that neither the number
    // of processes on the host nor its cores change what is measured.
    let exp = Running::start(&[
        "--cache-ttl",
        "60",
        "--no-per-process-metrics",
        "--parallelism",
        "2",
    ]);
    let pid = exp.child.id();
    let full = parse(&exp.get("/metrics").text());
    let names: Vec<String> = full
        .samples
        .iter()
        .filter(|s| s.metric == "herakles_scrape_collector_success")
        .map(|s| s.labels.get("collector").unwrap().to_string())
        .collect();
    let paths = selections(&names, 11_000);
    let (warm_up, bomb) = paths.split_at(1_000);

    // Fill the cache to its bound and let the allocator settle, then
    // measure.
    scrape_all(exp.addr, warm_up, 2);
    let before = rss_kib(pid);
    scrape_all(exp.addr, bomb, 2);
    let after = rss_kib(pid);
    eprintln!("RSS {before} KiB after warm-up, {after} KiB after 10,000 more selections");

    let meta = parse(&exp.get("/metrics?collect[]=loadavg").text());
    let entries = value(&meta, "herakles_scrape_cache_entries", &[]).unwrap();
    let dropped = value(
        &meta,
        "herakles_scrape_cache_evictions_total",
        &[("reason", "limit")],
    )
    .unwrap();
    assert!(entries <= 16.0, "{entries} cache entries");
    assert!(dropped >= 10_000.0, "{dropped} evicted at the bound");
    // A bound with room for the allocator's own slack (about 3 MiB here);
    // unbounded, 10,000 results of tens of KiB each were hundreds of MiB.
    let grew = after.saturating_sub(before);
    assert!(
        grew < 8 * 1024,
        "RSS {before} KiB after warm-up, {after} KiB after 10,000 more selections"
    );
}

/// Open `n` connections that never send a byte.
fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect()
}

/// Wait until the exporter has closed every one of `conns`.
fn wait_closed(conns: &mut [TcpStream], within: Duration) {
    let deadline = Instant::now() + within;
    for (i, conn) in conns.iter_mut().enumerate() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        conn.set_read_timeout(Some(left)).unwrap();
        match conn.read(&mut [0; 64]) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("idle connection {i} still open after {within:?}: {other:?}"),
        }
    }
}

/// Under a 256 soft descriptor limit (hard limit `hard`), 300 idle
/// connections must not lock scrapes out, and the exporter closes them.
fn idle_connections_do_not_lock_out_scrapes(hard: u32) -> Running {
    let nofile = format!("--nofile=256:{hard}");
    let exp = Running::start_under(&["prlimit", &nofile, "--"], &[], &[]);
    let mut idle = idle_connections(exp.addr, 300);
    for scrape in 1..=5 {
        // common::get waits up to 30 s for an answer: generous, and far
        // below "never".
        let resp = exp.get("/metrics");
        assert_eq!(resp.status, 200, "scrape {scrape}");
        let s = parse(&resp.text());
        for collector in ["memory", "process", "filesystem"] {
            assert_eq!(
                value(
                    &s,
                    "herakles_scrape_collector_success",
                    &[("collector", collector)]
                ),
                Some(1.0),
                "scrape {scrape}: {collector}"
            );
        }
    }
    // Closed by the header-read timeout (10 s), or earlier to make room.
    wait_closed(&mut idle, Duration::from_secs(60));
    let s = parse(&exp.get("/metrics").text());
    let closed = |reason| {
        value(
            &s,
            "herakles_http_connections_closed_total",
            &[("reason", reason)],
        )
        .unwrap()
    };
    assert_eq!(closed("header_timeout") + closed("limit"), 300.0);
    assert_eq!(closed("idle_timeout"), 0.0);
    exp
}

fn soft_fd_limit(pid: u32) -> u64 {
    proc_figure(pid, "limits", "Max open files")
}

#[test]
fn idle_connections_under_a_256_descriptor_limit() {
    let exp = idle_connections_do_not_lock_out_scrapes(256);
    assert_eq!(soft_fd_limit(exp.child.id()), 256);
    let s = parse(&exp.get("/metrics").text());
    let bound = value(&s, "herakles_http_connections_limit", &[]).unwrap();
    assert!(
        bound < 128.0,
        "connection bound {bound} under 256 descriptors"
    );
}

#[test]
fn idle_connections_with_room_to_raise_the_descriptor_limit() {
    let exp = idle_connections_do_not_lock_out_scrapes(4096);
    // Raised to the hard limit at start, as node_exporter does.
    assert_eq!(soft_fd_limit(exp.child.id()), 4096);
}
