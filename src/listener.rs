//! The accept loop shared by the proxy and admin ports: TCP (and optionally
//! TLS) connections served by hyper, with the head limits and timeouts of
//! docs/proxy.md#limits-and-timeouts and a bounded graceful drain.
//!
//! Which protocol a connection speaks is decided once, when it opens: over
//! TLS, by ALPN (`h2` is only ever chosen when the TLS config offers it, see
//! `tls::Alpn`); on plain TCP, HTTP/1.1 — or, when `http2_cleartext` is set,
//! HTTP/2 if the client starts with the HTTP/2 connection preface (prior
//! knowledge, RFC 9113 §3.3). A plain listener without `http2_cleartext`
//! hands the socket to hyper's HTTP/1.1 server as it is, with no sniffing.
//! HTTP/1.1 connections serve upgrades (`Connection: upgrade`); what to do
//! with one is the service's business.
//!
//! HTTP/1.1 connections (plain or TLS, never HTTP/2) may be served over
//! `strict::Strict`, which refuses requests whose framing hyper would accept
//! but a strict reading of RFC 9112 must not (`framing`): the listener's
//! `strict_http1` answer is written and the connection closed.
//!
//! It owns connection-level concerns only — TCP_NODELAY, TLS handshakes,
//! header read timeout, head size ceiling, strict HTTP/1.1 framing, HTTP/2
//! stream limits, shutdown —
//! and knows nothing of what the service does with a request. A failing
//! connection (bad handshake, slow client) is logged at debug and never
//! stops the loop.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use self::rewound::{Rewound, Sniffed};
use self::strict::{Refusal, Strict};
use crate::shutdown::{Drain, Shutdown};

pub mod chunked;
pub mod framing;
mod idle;
mod rewound;
pub mod strict;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper refuses to read heads into a buffer smaller than this.
const HYPER_MIN_HEAD_LIMIT: usize = 8192;
/// Pause after an accept error such as EMFILE, so the loop does not spin
/// while the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Pending connections the kernel queues per listening socket (capped by
/// `net.core.somaxconn`).
const BACKLOG: i32 = 4096;
/// Streams an HTTP/2 client may have open at once on one connection (nginx
/// allows 128).
const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a listener treats its connections.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// Names the listener in logs (`proxy`, `admin`).
    pub name: &'static str,
    /// A client must send a whole request head (and finish its TLS
    /// handshake) within this time, or the connection is closed.
    pub header_read_timeout: Duration,
    /// The head size the service enforces itself (431 as problem+json);
    /// hyper's own, cruder limit is set above it. See `hyper_head_limit`.
    pub max_header_bytes: usize,
    /// After shutdown fires, in-flight requests get this long to finish.
    pub drain_timeout: Duration,
    /// On plain TCP, also serve HTTP/2 to clients that start with its
    /// preface (h2c with prior knowledge).
    pub http2_cleartext: bool,
    /// Judge HTTP/1.1 request framing strictly, and answer a refused request
    /// with this response (then close). `None`: hyper's parsing alone.
    pub strict_http1: Option<Refusal>,
    /// One permit per open connection, shared by every listener given these
    /// options (the proxy's per-thread sockets share one limit). With none
    /// left, accepting pauses until a connection closes: new clients wait
    /// in the kernel's backlog, and the connections already open (slow ones
    /// are cut by the timeouts) keep being served.
    pub connections: Arc<Semaphore>,
}

impl ListenerOptions {
    pub fn new(name: &'static str) -> Self {
        ListenerOptions {
            name,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            drain_timeout: Duration::from_secs(30),
            http2_cleartext: false,
            strict_http1: None,
            connections: connection_limit(DEFAULT_MAX_CONNECTIONS),
        }
    }
}

/// The admin port's limit, and the default of `ListenerOptions::new`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// How often, at most, reaching the connection limit is logged.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(10);

/// A limit of `max` connections open at once, for `ListenerOptions`.
pub fn connection_limit(max: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)))
}

/// The head size at which hyper itself gives up (with a bare 431 and a
/// closed connection). It sits above `max_header_bytes` by the framing the
/// service's own count leaves out (request line, `: ` and CRLFs) plus some
/// slack, so that heads a little too large reach the service and get a
/// proper problem+json answer, while a flood is still cut off early.
pub fn hyper_head_limit(max_header_bytes: usize) -> usize {
    (max_header_bytes + max_header_bytes / 4 + 4096).max(HYPER_MIN_HEAD_LIMIT)
}

/// Binds `n` listening sockets to `addr` with SO_REUSEPORT, one per
/// single-threaded runtime: the kernel spreads new connections across them.
/// Port 0 is resolved by the first socket and shared by the others. The
/// sockets are non-blocking, for `TcpListener::from_std` on each runtime.
pub fn bind_reuseport(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let listener = std::net::TcpListener::from(socket);
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// A connection the fast path hands back for hyper to serve, with the
/// bytes it read from it and did not use (the start of the request that
/// needs hyper), which hyper reads first.
#[derive(Debug)]
pub struct Handover {
    pub stream: TcpStream,
    pub read: Vec<u8>,
}

/// A server for plain HTTP/1.1 connections that takes them before hyper
/// (the proxy's fast path): given the stream, the peer, what was already
/// read from it and the listener's drain, it serves the connection to its
/// end, or hands it back.
pub type FastPath = Arc<
    dyn Fn(
            TcpStream,
            SocketAddr,
            Vec<u8>,
            Arc<Drain>,
        ) -> Pin<Box<dyn std::future::Future<Output = Option<Handover>> + Send>>
        + Send
        + Sync,
>;

/// Serves connections from `listener` until `shutdown` fires, then drains.
///
/// `make_service` is called once per connection with the peer address and
/// whether the connection is TLS, and returns the hyper service for it: a
/// closure returning `hyper::service::service_fn(..)`, or an axum `Router`
/// wrapped in `hyper_util::service::TowerToHyperService`. After shutdown the
/// listener stops accepting, lets in-flight requests finish for at most
/// `opts.drain_timeout`, closes what is left, and returns.
pub async fn serve<M, S>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    make_service: M,
    opts: ListenerOptions,
    shutdown: Shutdown,
) where
    M: Fn(SocketAddr, bool) -> S + Send + Sync + 'static,
    S: HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<BoxError>,
{
    serve_with(listener, tls, make_service, None, opts, shutdown).await;
}

/// `serve`, with plain connections going to `fast` first when given (TLS
/// connections and HTTP/2 ones never do).
pub async fn serve_with<M, S>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    make_service: M,
    fast: Option<FastPath>,
    opts: ListenerOptions,
    shutdown: Shutdown,
) where
    M: Fn(SocketAddr, bool) -> S + Send + Sync + 'static,
    S: HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<BoxError>,
{
    let acceptor = tls.map(TlsAcceptor::from);
    let drain = Arc::new(Drain::default());
    let builders = Arc::new(Builders::new(&opts, Arc::clone(&drain)));
    // Each connection is its own task; the set aborts what is left when the
    // drain runs out.
    let mut connections = JoinSet::new();
    let local = listener.local_addr().ok();
    tracing::info!(listener = opts.name, addr = ?local, tls = acceptor.is_some(), "listening");

    let mut warned_at: Option<Instant> = None;
    loop {
        let permit = match Arc::clone(&opts.connections).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned_at.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_EVERY) {
                    tracing::warn!(listener = opts.name, "connection limit reached; accepting paused until one closes");
                    warned_at = Some(Instant::now());
                }
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => break,
                    permit = Arc::clone(&opts.connections).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(listener = opts.name, error = %e, "connection failed before accept");
                continue;
            }
            Err(e) => {
                tracing::warn!(listener = opts.name, error = %e, "accept failed; pausing");
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        // Small request/response exchanges must not wait for Nagle.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(listener = opts.name, error = %e, "cannot set TCP_NODELAY");
        }
        let connection = serve_connection(
            stream,
            permit,
            peer,
            acceptor.clone(),
            make_service(peer, acceptor.is_some()),
            Arc::clone(&builders),
            fast.clone(),
            &opts,
        );
        connections.spawn(connection);
        // Forget the connections that have ended since the last accept.
        while connections.try_join_next().is_some() {}
    }

    drop(listener);
    tracing::info!(listener = opts.name, connections = connections.len(), "stopped accepting; draining");
    drain.start();
    let drained =
        tokio::time::timeout(opts.drain_timeout, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(listener = opts.name, "drain timed out; closing the remaining connections");
        connections.shutdown().await;
    }
    tracing::info!(listener = opts.name, "listener stopped");
}

/// The connection builders of one listener, shared by its connections.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// An HTTP/2 connection without a new request for this long is closed
    /// (what `header_read_timeout` is to an idle HTTP/1.1 connection).
    http2_idle: Duration,
    /// The listener's drain, which every connection watches.
    drain: Arc<Drain>,
}

impl Builders {
    fn new(opts: &ListenerOptions, drain: Arc<Drain>) -> Self {
        let head_limit = hyper_head_limit(opts.max_header_bytes);
        let mut http1 = http1::Builder::new();
        // `max_header_size` bounds the head alone; `max_buf_size` would also
        // shrink the read buffer that streams bodies.
        http1.timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout).max_header_size(head_limit);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        // The header list counts 32 bytes per field on top of names and
        // values (RFC 9113 §6.5.2); the slack in `head_limit` covers it, so
        // heads a little too large still get the service's own 431.
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_header_list_size(u32::try_from(head_limit).unwrap_or(u32::MAX));
        Builders { http1, http2, http2_idle: opts.header_read_timeout, drain }
    }

    /// Serves `io` as HTTP/2 or HTTP/1.1 (with upgrades) until it ends or
    /// the drain closes it. `permit` is the connection's slot: it goes with
    /// the stream, so a connection handed over to an upgrade tunnel keeps
    /// holding it until the tunnel closes.
    async fn serve<I, S>(
        &self,
        io: I,
        permit: OwnedSemaphorePermit,
        http2: bool,
        strict: Option<Refusal>,
        service: S,
    ) -> Result<(), hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: HttpService<Incoming> + Send + 'static,
        S::Future: Send + 'static,
        S::ResBody: Send + 'static,
        <S::ResBody as Body>::Data: Send,
        <S::ResBody as Body>::Error: Into<BoxError>,
    {
        let drain = Arc::clone(&self.drain);
        match (http2, strict) {
            (true, _) => {
                let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let conn = self.http2.serve_connection(TokioIo::new(io), idle::marked(service, Arc::clone(&seen)));
                drain.watch(idle::IdleClose::new(conn, seen, self.http2_idle)).await
            }
            (false, Some(refusal)) => {
                let strict = Strict::new(io, refusal).holding(permit);
                let service = strict::signalled(service, strict.signal());
                drain.watch(self.http1.serve_connection(TokioIo::new(strict), service).with_upgrades()).await
            }
            (false, None) => drain.watch(self.http1.serve_connection(TokioIo::new(io), service).with_upgrades()).await,
        }
    }
}

/// One connection: the TLS handshake if any, then HTTP/1.1 or HTTP/2 until
/// the client leaves or the drain closes it. A plain HTTP/1.1 connection
/// goes to `fast` first, if given, and to hyper if `fast` hands it back.
#[allow(clippy::too_many_arguments)]
fn serve_connection<S>(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    service: S,
    builders: Arc<Builders>,
    fast: Option<FastPath>,
    opts: &ListenerOptions,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    S: HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<BoxError>,
{
    let name = opts.name;
    let handshake_timeout = opts.header_read_timeout;
    let cleartext_h2 = opts.http2_cleartext;
    let strict = opts.strict_http1;
    async move {
        let result = match acceptor {
            None if cleartext_h2 => {
                let mut stream = stream;
                match tokio::time::timeout(handshake_timeout, Sniffed::read_preface(&mut stream)).await {
                    Ok(Ok(sniffed)) => {
                        let http2 = sniffed.is_http2();
                        match fast {
                            Some(fast) if !http2 => {
                                let read = sniffed.bytes[..sniffed.len].to_vec();
                                match fast(stream, peer, read, Arc::clone(&builders.drain)).await {
                                    None => return,
                                    Some(Handover { stream, read }) => {
                                        builders.serve(Rewound::new(read, stream), permit, false, strict, service).await
                                    }
                                }
                            }
                            _ => builders.serve(sniffed.around(stream), permit, http2, strict, service).await,
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(listener = name, %peer, error = %e, "connection failed before a request");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(listener = name, %peer, "no request within the header read timeout");
                        return;
                    }
                }
            }
            None => match fast {
                Some(fast) => match fast(stream, peer, Vec::new(), Arc::clone(&builders.drain)).await {
                    None => return,
                    Some(Handover { stream, read }) => {
                        builders.serve(Rewound::new(read, stream), permit, false, strict, service).await
                    }
                },
                None => builders.serve(stream, permit, false, strict, service).await,
            },
            Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    builders.serve(tls, permit, http2, strict, service).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                    return;
                }
            },
        };
        if let Err(e) = result {
            // Clients that leave mid-request or time out are routine.
            tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
        }
    }
}

/// A connection's service with `tap` run on every request before it. hyper
/// calls a connection's service from that connection's task only, one call
/// at a time, and `HttpService::call` takes `&mut self`: hence the
/// `RefCell`, which is never borrowed twice.
pub struct Tapped<S, F> {
    inner: RefCell<S>,
    tap: F,
}

impl<S, F> Tapped<S, F> {
    pub fn new(inner: S, tap: F) -> Self {
        Tapped { inner: RefCell::new(inner), tap }
    }
}

impl<S: HttpService<Incoming>, F: Fn(&mut Request<Incoming>)> Service<Request<Incoming>> for Tapped<S, F> {
    type Response = Response<S::ResBody>;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: Request<Incoming>) -> S::Future {
        (self.tap)(&mut request);
        self.inner.borrow_mut().call(request)
    }
}

/// Accept errors that concern one connection that is already gone, as
/// opposed to the listener or the process (EMFILE, ENOBUFS, …).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[test]
    fn hyper_limit_leaves_room_above_the_configured_one() {
        assert_eq!(hyper_head_limit(1024), HYPER_MIN_HEAD_LIMIT);
        let limit = hyper_head_limit(32 * 1024);
        assert!(limit > 32 * 1024 + 4096, "{limit}");
        assert!(limit < 64 * 1024, "{limit}");
    }

    /// A connected pair of sockets on loopback.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn sniffing_tells_http2_and_gives_the_bytes_back() {
        use tokio::io::AsyncWriteExt;
        for (sent, http2) in [
            (&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"[..], true),
            (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], false),
            (&b"PRI * HTTP/1.1\r\n\r\n"[..], false),
        ] {
            let (mut client, mut server) = pair().await;
            client.write_all(sent).await.expect("write");
            client.shutdown().await.expect("shutdown");
            let sniffed = Sniffed::read_preface(&mut server).await.expect("sniff");
            assert_eq!(sniffed.is_http2(), http2, "{sent:?}");
            let mut again = Vec::new();
            sniffed.around(server).read_to_end(&mut again).await.expect("read");
            assert_eq!(again, sent);
        }
    }
}
