//! The accept loop shared by the proxy and admin ports: TCP (and optionally
//! TLS) connections served as HTTP/1.1 by hyper, with the head limits and
//! timeouts of DESIGN.md §3 and a bounded graceful drain.
//!
//! It owns connection-level concerns only — TCP_NODELAY, TLS handshakes,
//! header read timeout, head size ceiling, shutdown — and knows nothing of
//! what the service does with a request. A failing connection (bad
//! handshake, slow client) is logged at debug and never stops the loop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::shutdown::{Drain, Shutdown};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper refuses to read heads into a buffer smaller than this.
const HYPER_MIN_HEAD_LIMIT: usize = 8192;
/// Pause after an accept error such as EMFILE, so the loop does not spin
/// while the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Pending connections the kernel queues per listening socket (capped by
/// `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

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
}

impl ListenerOptions {
    pub fn new(name: &'static str) -> Self {
        ListenerOptions {
            name,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
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
    let acceptor = tls.map(TlsAcceptor::from);
    let mut builder = http1::Builder::new();
    // `max_header_size` bounds the head alone; `max_buf_size` would also
    // shrink the read buffer that streams bodies.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_header_size(hyper_head_limit(opts.max_header_bytes));
    let drain = Arc::new(Drain::default());
    // Each connection is its own task; the set aborts what is left when the
    // drain runs out.
    let mut connections = JoinSet::new();
    let local = listener.local_addr().ok();
    tracing::info!(listener = opts.name, addr = ?local, tls = acceptor.is_some(), "listening");

    loop {
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
        connections.spawn(serve_connection(
            stream,
            peer,
            acceptor.clone(),
            make_service(peer, acceptor.is_some()),
            builder.clone(),
            Arc::clone(&drain),
            &opts,
        ));
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

/// One connection: the TLS handshake if any, then HTTP/1.1 until the client
/// leaves or the drain closes it.
fn serve_connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    service: S,
    builder: http1::Builder,
    drain: Arc<Drain>,
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
    async move {
        let result = match acceptor {
            None => drain.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
            Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => drain.watch(builder.serve_connection(TokioIo::new(tls), service)).await,
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
    use super::*;

    #[test]
    fn hyper_limit_leaves_room_above_the_configured_one() {
        assert_eq!(hyper_head_limit(1024), HYPER_MIN_HEAD_LIMIT);
        let limit = hyper_head_limit(32 * 1024);
        assert!(limit > 32 * 1024 + 4096, "{limit}");
        assert!(limit < 64 * 1024, "{limit}");
    }
}
