//! The HTTP listener: accepts TCP connections, keeps their number and their
//! idle time bounded, and serves each with hyper's HTTP/1.1 and the routes.
//!
//! This is the only code that serves sockets (`sockets.rs` opens them).
//! The routes ([`super::http`]) take a `Request<()>` and return a
//! response; a [`Connection`] is served over any byte stream.
//!
//! Web security ([`crate::web`]) is applied here, around the routes, so no
//! route can be reached without it: each connection takes the current
//! [`WebSecurity`] from the [`WebSlot`] when it is accepted; with TLS on,
//! the handshake runs first, under the header-read timeout below; then
//! every request passes basic auth before it is routed, and every response
//! the routes or the auth check give gets the configured headers.
//!
//! Why our own accept loop rather than `warp::serve`: that one has no
//! header-read or idle timeout and no bound on connections, and 300 idle
//! connections under a 256 file-descriptor limit locked out every scrape.
//! Three rules here keep connections from taking what scrapes need:
//!
//! * A new connection must complete its TLS handshake, if any, and deliver
//!   its first request head within [`HEADER_READ_TIMEOUT`] of its accept; a
//!   later request head must be complete within the same time of its first
//!   byte (a client that trickles headers is cut off). So a client that
//!   never finishes a handshake holds one connection until then, like one
//!   that never sends a request.
//! * A kept-alive connection that sends no request for [`IDLE_TIMEOUT`] is
//!   closed; that outlasts Prometheus' default one-minute interval, so a
//!   Prometheus server keeps reusing its connection.
//! * At most `max_connections` are open, half of the descriptors left when
//!   serving starts (see [`Limits::for_fd_budget`]). At the bound, a new
//!   connection closes the one that has been idle longest: it has nothing
//!   in flight and its client reconnects when it needs to. Only when every
//!   connection is answering a request is the new one refused.
//!
//! Connections the exporter closes are counted by reason in
//! `herakles_http_connections_closed_total`; client errors (malformed
//! requests, resets) are logged at debug level, never one ERROR each.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use herakles_core::{Desc, MetricSink};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::web::{TlsAcceptor, WebSecurity, WebSlot};

/// Time for a request head to arrive: from accepting a connection to its
/// first complete head, and from the first byte of any later head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a kept-alive connection may wait for its next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Bounds on the connection bound derived from the descriptor budget.
const MIN_CONNECTIONS: usize = 4;
const MAX_CONNECTIONS: usize = 1024;

/// The largest request head we read; hyper's default is 400 KiB per
/// connection, which a thousand connections could turn into 400 MiB.
const MAX_REQUEST_HEAD: usize = 32 * 1024;

/// How long an accept loop that ran out of descriptors waits before trying
/// again, and how often it says so.
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(50);
const EXHAUSTED_WARN_EVERY: Duration = Duration::from_secs(60);

/// The listener's timeouts and connection bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The connection bound for a process whose soft descriptor limit is
    /// `soft_limit` and which has `open` descriptors now: half of those
    /// left, so that collectors (which open `/proc` files, netlink and BPF
    /// descriptors per scrape) keep the other half, within
    /// [`MIN_CONNECTIONS`]..=[`MAX_CONNECTIONS`].
    pub fn for_fd_budget(soft_limit: u64, open: u64) -> Limits {
        let spare = soft_limit.saturating_sub(open) / 2;
        let max_connections = usize::try_from(spare)
            .unwrap_or(usize::MAX)
            .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS);
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_connections,
        }
    }

    /// [`Limits::for_fd_budget`] for this process, now.
    pub fn for_this_process() -> Limits {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        // Not knowing how many are open, assume a daemon's usual handful.
        let open = std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count() as u64);
        Limits::for_fd_budget(soft, open)
    }
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit, as node_exporter does.
/// systemd starts services with a soft limit of 1024 (and a hard one in
/// the hundreds of thousands) so that old `select()` users keep working;
/// we use none, and every connection and open `/proc` file takes one.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(
                from = soft,
                to = hard,
                "raised the soft file descriptor limit (RLIMIT_NOFILE) to the hard limit"
            ),
            Err(e) => tracing::warn!(
                soft,
                hard,
                error = %e,
                "cannot raise the soft file descriptor limit (RLIMIT_NOFILE)"
            ),
        },
        Ok((soft, _)) => tracing::debug!(
            limit = soft,
            "file descriptor limit (RLIMIT_NOFILE) is already at the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read the file descriptor limit"),
    }
}

/// Why the exporter closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    HeaderTimeout,
    IdleTimeout,
    Limit,
}

impl Reason {
    const ALL: [Reason; 3] = [Reason::HeaderTimeout, Reason::IdleTimeout, Reason::Limit];

    fn label(self) -> &'static str {
        match self {
            Reason::HeaderTimeout => "header_timeout",
            Reason::IdleTimeout => "idle_timeout",
            Reason::Limit => "limit",
        }
    }
}

const OPEN: Desc = Desc::gauge("herakles_http_connections", "HTTP connections open now.");
const LIMIT: Desc = Desc::gauge(
    "herakles_http_connections_limit",
    "HTTP connections the exporter keeps open at most; past it the longest-idle one is closed.",
);
const CLOSED: Desc = Desc::counter(
    "herakles_http_connections_closed_total",
    "HTTP connections the exporter closed: header_timeout (no complete request head in time), \
     idle_timeout (no request on a kept-alive connection), limit (closed or refused at the connection bound).",
);

/// What the listener has done, for the exporter's own metrics.
#[derive(Debug, Default)]
pub struct Stats {
    limit: AtomicU64,
    open: AtomicU64,
    closed: [AtomicU64; 3],
}

impl Stats {
    fn count(&self, reason: Reason) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The `herakles_http_connections*` families.
    pub fn render(&self, out: &mut MetricSink) {
        out.single(&OPEN, self.open.load(Ordering::Relaxed) as f64);
        out.single(&LIMIT, self.limit.load(Ordering::Relaxed) as f64);
        let mut closed = out.family(&CLOSED);
        for reason in Reason::ALL {
            closed.sample(
                &[("reason", reason.label())],
                self.closed[reason as usize].load(Ordering::Relaxed) as f64,
            );
        }
    }
}

/// Serve `handler` on every connection the `listeners` accept, each with
/// the web security in `web` when it is accepted, until `shutdown`
/// resolves; then stop accepting, let requests in flight finish, and
/// return once every connection is closed. All listeners share one
/// connection bound.
pub async fn serve(
    listeners: Vec<TcpListener>,
    web: WebSlot,
    handler: impl Handler,
    limits: Limits,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) {
    let registry = Registry::new(limits, stats);
    let (stop_tx, stop_rx) = watch::channel(false);
    {
        // The accept loops never end on their own; dropping them closes
        // the listening sockets.
        let accepting = futures::future::join_all(
            listeners
                .into_iter()
                .map(|l| accept_loop(l, &registry, &web, &handler, &stop_rx)),
        );
        tokio::select! {
            () = shutdown => {}
            _ = accepting => {}
        }
    }
    let _ = stop_tx.send(true);
    registry.wait_empty().await;
}

/// Accept on `listener` until dropped, each connection in a task of its
/// own with the slot's current web security.
async fn accept_loop(
    listener: TcpListener,
    registry: &Arc<Registry>,
    web: &WebSlot,
    handler: &impl Handler,
    stop: &watch::Receiver<bool>,
) {
    let mut last_warned: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(admitted) = registry.admit() else {
                    tracing::debug!(%peer, "connection refused: every connection is answering a request");
                    continue;
                };
                // Responses go out whole; do not hold their last segment back.
                let _ = stream.set_nodelay(true);
                let conn = Connection {
                    peer: Some(peer),
                    web: web.current(),
                    handler: handler.clone(),
                    admitted,
                    stop: stop.clone(),
                };
                tokio::spawn(conn.serve(stream));
            }
            Err(e) if is_descriptor_exhaustion(&e) => {
                // Out of descriptors despite the bound (collectors hold
                // many): free one an idle connection holds, and back off
                // rather than spin on the pending connection.
                let freed = registry.evict_idlest();
                if last_warned.map_or(true, |t| t.elapsed() >= EXHAUSTED_WARN_EVERY) {
                    tracing::warn!(
                        error = %e,
                        closed_idle_connection = freed,
                        "cannot accept connections: out of file descriptors"
                    );
                    last_warned = Some(Instant::now());
                }
                tokio::time::sleep(EXHAUSTED_BACKOFF).await;
            }
            Err(e) => tracing::debug!(error = %e, "accept failed"),
        }
    }
}

/// What answers a request: the routes, for the exporter.
pub trait Handler: Fn(Request<()>) -> Self::Answer + Clone + Send + Sync + 'static {
    type Answer: Future<Output = Response<Full<Bytes>>> + Send + 'static;
}

impl<H, F> Handler for H
where
    H: Fn(Request<()>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    type Answer = F;
}

/// A connection's bytes: a TCP socket, a TLS stream over one, or an
/// in-memory stream in tests.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

fn is_descriptor_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// An accepted connection and what serving it takes.
struct Connection<H> {
    peer: Option<SocketAddr>,
    /// What it is served with: the slot's value at the accept.
    web: Arc<WebSecurity>,
    handler: H,
    admitted: Admitted,
    /// Turns true when the server stops.
    stop: watch::Receiver<bool>,
}

impl<H: Handler> Connection<H> {
    /// Serve the connection's byte stream: the TLS handshake if TLS is on,
    /// then HTTP/1.1 until the client closes it, a timeout or the
    /// connection bound closes it, or `stop` turns true (then the request
    /// in flight, if any, is answered first).
    async fn serve(mut self, stream: impl Stream) {
        let web = Arc::clone(&self.web);
        let Some(tls) = web.tls() else {
            return self.serve_http(stream).await;
        };
        if let Some(stream) = self.handshake(tls, stream).await {
            self.serve_http(stream).await;
        }
    }

    /// The server side of the TLS handshake, within the header-read timeout
    /// counted from the accept (the first request head must arrive in what
    /// is left of it). `None`: the handshake failed, timed out, or the
    /// connection was closed to make room or to stop.
    async fn handshake<S>(
        &mut self,
        tls: &TlsAcceptor,
        stream: S,
    ) -> Option<tokio_rustls::server::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (peer, admitted) = (self.peer, &self.admitted);
        let conn = &admitted.conn;
        let deadline = conn.accepted + admitted.registry.limits.header_read_timeout;
        tokio::select! {
            done = tls.accept(stream) => match done {
                Ok(stream) => Some(stream),
                Err(e) => {
                    tracing::debug!(peer = ?peer, error = %e, "TLS handshake failed");
                    None
                }
            },
            () = tokio::time::sleep_until(deadline) => {
                admitted.registry.stats.count(Reason::HeaderTimeout);
                tracing::debug!(peer = ?peer, "closing connection: TLS handshake not done in time");
                None
            }
            () = conn.evict.notified() => {
                tracing::debug!(peer = ?peer, "closing handshaking connection: at the connection bound");
                None
            }
            _ = self.stop.wait_for(|stop| *stop) => None,
        }
    }

    /// HTTP/1.1 on the connection (plain, or TLS after the handshake):
    /// basic auth before the routes, the configured headers on what they
    /// answer.
    async fn serve_http(self, stream: impl Stream) {
        let Connection {
            peer,
            web,
            handler,
            admitted,
            mut stop,
        } = self;
        let conn = admitted.conn.clone();
        let limits = admitted.registry.limits;
        let service = {
            let conn = conn.clone();
            hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answering = Answering::start(conn.clone());
                // The routes read no request body; dropping it makes hyper close
                // the connection after the response if a client sent one.
                let req = req.map(|_| ());
                let (web, handler) = (web.clone(), handler.clone());
                async move {
                    let response = match web.authorize(req.headers()).await {
                        Ok(()) => {
                            let mut response = handler(req).await;
                            web.finish(response.headers_mut());
                            response
                        }
                        Err(denied) => denied,
                    };
                    drop(answering);
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let io = TokioIo::new(Tracked {
            inner: stream,
            conn: conn.clone(),
        });
        let http = hyper::server::conn::http1::Builder::new()
            .max_buf_size(MAX_REQUEST_HEAD)
            .serve_connection(io, service);
        let mut http = pin!(http);
        let mut stopping = false;
        loop {
            let deadline = conn.deadline(&limits);
            let expiry = async {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = http.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = ?peer, error = %e, "HTTP connection ended with an error");
                    }
                    return;
                }
                () = conn.changed.notified() => {}
                () = expiry => {
                    if let Some((at, reason)) = conn.deadline(&limits) {
                        if at <= Instant::now() {
                            admitted.registry.stats.count(reason);
                            tracing::debug!(peer = ?peer, reason = reason.label(), "closing HTTP connection");
                            return;
                        }
                    }
                }
                () = conn.evict.notified() => {
                    tracing::debug!(peer = ?peer, "closing idle HTTP connection: at the connection bound");
                    return;
                }
                _ = stop.wait_for(|stop| *stop), if !stopping => {
                    http.as_mut().graceful_shutdown();
                    stopping = true;
                }
            }
        }
    }
}

/// The open connections.
struct Registry {
    limits: Limits,
    stats: Arc<Stats>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    emptied: Notify,
}

impl Registry {
    fn new(limits: Limits, stats: Arc<Stats>) -> Arc<Registry> {
        stats
            .limit
            .store(limits.max_connections as u64, Ordering::Relaxed);
        Arc::new(Registry {
            limits,
            stats,
            conns: Mutex::default(),
            next_id: AtomicU64::new(0),
            emptied: Notify::new(),
        })
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a new connection, closing the longest-idle one at the
    /// bound; `None` when every open connection is answering a request.
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut conns = self.conns();
        if conns.len() >= self.limits.max_connections && !self.evict_idlest_of(&mut conns) {
            self.stats.count(Reason::Limit);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(Instant::now()));
        conns.insert(id, conn.clone());
        self.stats.open.store(conns.len() as u64, Ordering::Relaxed);
        Some(Admitted {
            registry: self.clone(),
            id,
            conn,
        })
    }

    /// Close the connection idle for longest; false when none is idle.
    fn evict_idlest(&self) -> bool {
        self.evict_idlest_of(&mut self.conns())
    }

    fn evict_idlest_of(&self, conns: &mut HashMap<u64, Arc<Conn>>) -> bool {
        let idlest = conns
            .iter()
            .filter_map(|(id, c)| Some((c.idle_since()?, *id)))
            .min();
        let Some(conn) = idlest.and_then(|(_, id)| conns.remove(&id)) else {
            return false;
        };
        conn.evict.notify_one();
        self.stats.count(Reason::Limit);
        self.stats.open.store(conns.len() as u64, Ordering::Relaxed);
        true
    }

    async fn wait_empty(&self) {
        loop {
            let mut emptied = pin!(self.emptied.notified());
            emptied.as_mut().enable();
            if self.conns().is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

/// A connection's place in the registry; leaving it frees the place.
struct Admitted {
    registry: Arc<Registry>,
    id: u64,
    conn: Arc<Conn>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut conns = self.registry.conns();
        conns.remove(&self.id);
        let open = conns.len();
        drop(conns);
        self.registry
            .stats
            .open
            .store(open as u64, Ordering::Relaxed);
        if open == 0 {
            self.registry.emptied.notify_waiters();
        }
    }
}

/// One connection's activity, from which its deadline follows.
struct Conn {
    accepted: Instant,
    activity: Mutex<Activity>,
    /// The activity changed in a way that may move the deadline earlier.
    changed: Notify,
    /// Close now: the registry needs the place.
    evict: Notify,
}

#[derive(Debug, Clone, Copy)]
struct Activity {
    /// A request is being answered (HTTP/1.1: one at a time).
    answering: bool,
    /// At least one response was sent.
    served: bool,
    /// Since when it waits for a request: its accept or its last response.
    ready_since: Instant,
    /// When the first byte of the next request head arrived.
    head_started: Option<Instant>,
    /// The last time response bytes went out.
    last_write: Instant,
}

impl Conn {
    fn new(now: Instant) -> Conn {
        Conn {
            accepted: now,
            activity: Mutex::new(Activity {
                answering: false,
                served: false,
                ready_since: now,
                head_started: None,
                last_write: now,
            }),
            changed: Notify::new(),
            evict: Notify::new(),
        }
    }

    fn activity(&self) -> MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the connection is to be closed and why; `None` while it
    /// answers a request (the coordinator bounds how long that takes).
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Reason)> {
        let a = *self.activity();
        if a.answering {
            None
        } else if !a.served {
            Some((
                self.accepted + limits.header_read_timeout,
                Reason::HeaderTimeout,
            ))
        } else if let Some(t) = a.head_started {
            Some((t + limits.header_read_timeout, Reason::HeaderTimeout))
        } else {
            Some((
                a.ready_since.max(a.last_write) + limits.idle_timeout,
                Reason::IdleTimeout,
            ))
        }
    }

    /// Since when nothing has happened on it; `None` while it answers.
    fn idle_since(&self) -> Option<Instant> {
        let a = self.activity();
        (!a.answering).then(|| a.ready_since.max(a.last_write))
    }

    fn read_some(&self) {
        let mut a = self.activity();
        if !a.answering && a.head_started.is_none() {
            a.head_started = Some(Instant::now());
            drop(a);
            self.changed.notify_one();
        }
    }

    fn wrote_some(&self) {
        self.activity().last_write = Instant::now();
    }
}

/// Marks a connection as answering for as long as it lives.
struct Answering(Arc<Conn>);

impl Answering {
    fn start(conn: Arc<Conn>) -> Answering {
        {
            let mut a = conn.activity();
            a.answering = true;
            a.head_started = None;
        }
        conn.changed.notify_one();
        Answering(conn)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        {
            let mut a = self.0.activity();
            a.answering = false;
            a.served = true;
            a.ready_since = Instant::now();
            a.head_started = None;
        }
        self.0.changed.notify_one();
    }
}

/// A byte stream that reports reads and writes to its connection's
/// activity, so that timeouts see the bytes and not only the requests.
struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.read_some();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.wrote_some();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.wrote_some();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    //! The timeouts and the bound, on in-memory streams and tokio's paused
    //! clock: no sockets, and the clock jumps straight to each deadline.

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

    async fn ok(_: Request<()>) -> Response<Full<Bytes>> {
        Response::new(Full::new(Bytes::from_static(b"ok")))
    }

    async fn slow(_: Request<()>) -> Response<Full<Bytes>> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        ok(Request::new(())).await
    }

    struct Server {
        registry: Arc<Registry>,
        stop: watch::Sender<bool>,
        web: WebSlot,
    }

    impl Server {
        fn new(max_connections: usize) -> Server {
            let limits = Limits {
                max_connections,
                ..Limits::for_fd_budget(0, 0)
            };
            Server {
                registry: Registry::new(limits, Arc::default()),
                stop: watch::channel(false).0,
                web: WebSlot::new(WebSecurity::plain_http()),
            }
        }

        fn connect(&self, handler: impl Handler) -> Option<DuplexStream> {
            let admitted = self.registry.admit()?;
            let (client, server) = tokio::io::duplex(64 * 1024);
            let conn = Connection {
                peer: None,
                web: self.web.current(),
                handler,
                admitted,
                stop: self.stop.subscribe(),
            };
            tokio::spawn(conn.serve(server));
            Some(client)
        }

        fn closed(&self, reason: Reason) -> u64 {
            self.registry.stats.closed[reason as usize].load(Ordering::Relaxed)
        }
    }

    /// Send one request and read its whole response.
    async fn exchange(client: &mut DuplexStream) -> String {
        client.write_all(REQUEST).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 1024];
        while !got.ends_with(b"\r\n\r\nok") {
            let n = client.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    }

    /// How long until the server closes the stream.
    async fn time_to_close(client: &mut DuplexStream) -> Duration {
        let t = Instant::now();
        let mut buf = [0; 1024];
        while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
        t.elapsed()
    }

    /// `d` within the timer's millisecond granularity of `want`.
    fn about(d: Duration, want: Duration) -> bool {
        d >= want && d <= want + Duration::from_millis(5)
    }

    #[test]
    fn connection_bound_is_half_the_spare_descriptors() {
        assert_eq!(Limits::for_fd_budget(256, 40).max_connections, 108);
        assert_eq!(Limits::for_fd_budget(1024, 24).max_connections, 500);
        assert_eq!(Limits::for_fd_budget(1 << 20, 40).max_connections, 1024);
        assert_eq!(Limits::for_fd_budget(30, 40).max_connections, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_closes_at_the_header_timeout() {
        let server = Server::new(8);
        let mut client = server.connect(ok).unwrap();
        let took = time_to_close(&mut client).await;
        assert!(about(took, HEADER_READ_TIMEOUT), "{took:?}");
        assert_eq!(server.closed(Reason::HeaderTimeout), 1);
        assert!(server.registry.conns().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_closes_at_the_idle_timeout() {
        let server = Server::new(8);
        let mut client = server.connect(ok).unwrap();
        for _ in 0..2 {
            assert!(exchange(&mut client).await.starts_with("HTTP/1.1 200 OK"));
            // Longer than the header timeout: idle is not a slow header.
            tokio::time::sleep(HEADER_READ_TIMEOUT * 2).await;
        }
        let took = time_to_close(&mut client).await + HEADER_READ_TIMEOUT * 2;
        assert!(about(took, IDLE_TIMEOUT), "{took:?}");
        assert_eq!(server.closed(Reason::IdleTimeout), 1);
        assert_eq!(server.closed(Reason::HeaderTimeout), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_request_head_is_cut_off_after_the_header_timeout() {
        let server = Server::new(8);
        let mut client = server.connect(ok).unwrap();
        exchange(&mut client).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let took = time_to_close(&mut client).await;
        assert!(about(took, HEADER_READ_TIMEOUT), "{took:?}");
        assert_eq!(server.closed(Reason::HeaderTimeout), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_bound_the_longest_idle_connection_makes_room() {
        let server = Server::new(2);
        let mut first = server.connect(ok).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut second = server.connect(ok).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut third = server.connect(ok).unwrap();
        assert_eq!(time_to_close(&mut first).await, Duration::ZERO);
        assert!(exchange(&mut second).await.contains("200 OK"));
        assert!(exchange(&mut third).await.contains("200 OK"));
        assert_eq!(server.closed(Reason::Limit), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn connections_answering_a_request_are_never_closed_to_make_room() {
        let server = Server::new(2);
        let mut busy: Vec<_> = (0..2).map(|_| server.connect(slow).unwrap()).collect();
        for c in &mut busy {
            c.write_all(REQUEST).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(server.connect(ok).is_none(), "refused while both answer");
        assert_eq!(server.closed(Reason::Limit), 1);
        for c in &mut busy {
            let mut got = Vec::new();
            while !got.ends_with(b"ok") {
                let mut buf = [0; 256];
                let n = c.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_answers_requests_in_flight_and_closes_idle_connections() {
        let server = Server::new(8);
        let mut idle = server.connect(ok).unwrap();
        let mut busy = server.connect(slow).unwrap();
        busy.write_all(REQUEST).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        server.stop.send_replace(true);
        assert_eq!(time_to_close(&mut idle).await, Duration::ZERO);
        let mut got = String::new();
        busy.read_to_string(&mut got).await.unwrap();
        assert!(
            got.starts_with("HTTP/1.1 200 OK") && got.ends_with("ok"),
            "{got}"
        );
        tokio::time::timeout(Duration::from_secs(1), server.registry.wait_empty())
            .await
            .expect("every connection closed");
    }

    /// A web security from web config `yaml`, its files in `dir`.
    fn security(dir: &std::path::Path, yaml: &str) -> WebSecurity {
        let path = dir.join("web.yml");
        std::fs::write(&path, yaml).unwrap();
        WebSecurity::new(&crate::web::WebConfig::load(&path).unwrap()).unwrap()
    }

    /// A self-signed certificate for `localhost` in `dir`, and a web config
    /// serving it.
    fn tls_security(dir: &std::path::Path) -> (WebSecurity, String) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.join("c.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("k.pem"), made.signing_key.serialize_pem()).unwrap();
        let web = security(
            dir,
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n",
        );
        (web, made.cert.pem())
    }

    /// Read one response on a kept-alive connection: the head and a body
    /// of its Content-Length.
    async fn response(client: &mut (impl AsyncRead + Unpin)) -> String {
        let mut got = Vec::new();
        let mut buf = [0; 1024];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |n| n.trim().parse().unwrap());
                if got.len() >= end + 4 + length {
                    return String::from_utf8(got).unwrap();
                }
            }
            let n = tokio::io::AsyncReadExt::read(client, &mut buf)
                .await
                .unwrap();
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tls_handshake_that_never_finishes_closes_at_the_header_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::new(8);
        server.web.replace(tls_security(dir.path()).0);
        let mut client = server.connect(ok).unwrap();
        // The start of a ClientHello record, and nothing more.
        client.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
        let took = tokio::time::timeout(HEADER_READ_TIMEOUT * 3, time_to_close(&mut client))
            .await
            .expect("closed, not left handshaking");
        assert!(about(took, HEADER_READ_TIMEOUT), "{took:?}");
        assert_eq!(server.closed(Reason::HeaderTimeout), 1);
        assert!(server.registry.conns().is_empty());
    }

    #[tokio::test]
    async fn tls_connections_are_served_after_the_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::new(8);
        let (web, cert) = tls_security(dir.path());
        server.web.replace(web);
        let client = server.connect(ok).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::pem::PemObject::from_pem_slice(cert.as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, client)
            .await
            .unwrap();
        for _ in 0..2 {
            tls.write_all(REQUEST).await.unwrap();
            let got = response(&mut tls).await;
            assert!(
                got.starts_with("HTTP/1.1 200 OK") && got.ends_with("ok"),
                "{got}"
            );
        }
    }

    #[tokio::test]
    async fn basic_auth_comes_before_the_routes_and_headers_go_on_every_answer() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let server = Server::new(8);
        server.web.replace(security(
            dir.path(),
            &format!(
                "basic_auth_users:\n  alice: {hash}\nhttp_server_config:\n  headers:\n    \
                 X-Frame-Options: deny\n"
            ),
        ));
        let routed = Arc::new(AtomicU64::new(0));
        let handler = {
            let routed = routed.clone();
            move |_: Request<()>| {
                routed.fetch_add(1, Ordering::Relaxed);
                ok(Request::new(()))
            }
        };
        let mut client = server.connect(handler).unwrap();
        for (authorization, status) in [
            ("", "401 Unauthorized"),
            (
                "Authorization: Basic YWxpY2U6d3Jvbmc=\r\n",
                "401 Unauthorized",
            ),
            ("Authorization: Basic YWxpY2U6cHc=\r\n", "200 OK"),
        ] {
            let request = format!("GET / HTTP/1.1\r\nHost: test\r\n{authorization}\r\n");
            client.write_all(request.as_bytes()).await.unwrap();
            let got = response(&mut client).await;
            assert!(got.starts_with(&format!("HTTP/1.1 {status}")), "{got}");
            assert!(got.contains("x-frame-options: deny"), "{got}");
            if status.starts_with("401") {
                assert!(got.contains("www-authenticate: Basic"), "{got}");
            }
        }
        assert_eq!(
            routed.load(Ordering::Relaxed),
            1,
            "only the authorized request was routed"
        );
    }

    #[tokio::test]
    async fn a_replaced_web_security_applies_to_new_connections_only() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::new(8);
        let mut before = server.connect(ok).unwrap();
        assert!(exchange(&mut before).await.starts_with("HTTP/1.1 200 OK"));
        let hash = bcrypt::hash("pw", 4).unwrap();
        let old = server.web.replace(security(
            dir.path(),
            &format!("basic_auth_users:\n  alice: {hash}\n"),
        ));
        assert!(old.basic_auth().is_none());
        // The kept-alive connection keeps what it was accepted with.
        assert!(exchange(&mut before).await.starts_with("HTTP/1.1 200 OK"));
        let mut after = server.connect(ok).unwrap();
        after.write_all(REQUEST).await.unwrap();
        let got = response(&mut after).await;
        assert!(got.starts_with("HTTP/1.1 401"), "{got}");
    }

    /// Through the accept loops: every listener is served, and each accept
    /// takes what is in the slot at that moment.
    #[tokio::test]
    async fn every_listener_is_served_and_each_accept_takes_the_slot_then() {
        let dir = tempfile::tempdir().unwrap();
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let listeners = vec![bind().await, bind().await];
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let web = WebSlot::new(WebSecurity::plain_http());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listeners,
            web.clone(),
            ok,
            Limits::for_fd_budget(1024, 0),
            Arc::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let mut first = tokio::net::TcpStream::connect(addrs[0]).await.unwrap();
        first.write_all(REQUEST).await.unwrap();
        assert!(response(&mut first).await.starts_with("HTTP/1.1 200 OK"));

        let hash = bcrypt::hash("pw", 4).unwrap();
        web.replace(security(
            dir.path(),
            &format!("basic_auth_users:\n  alice: {hash}\n"),
        ));
        for addr in &addrs {
            let mut later = tokio::net::TcpStream::connect(addr).await.unwrap();
            later.write_all(REQUEST).await.unwrap();
            let got = response(&mut later).await;
            assert!(got.starts_with("HTTP/1.1 401"), "{addr}: {got}");
        }
        first.write_all(REQUEST).await.unwrap();
        assert!(response(&mut first).await.starts_with("HTTP/1.1 200 OK"));
        drop(first);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("stops")
            .unwrap();
    }
}
