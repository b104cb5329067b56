//! The HTTP/1.1 fast path (issue 18): plain proxy connections served
//! without hyper, each message parsed once.
//!
//! A connection is read into one buffer. Each request head is parsed there
//! by `parse` (strict framing built in: what `listener::strict` refuses is
//! refused here with the same 400 and a closed connection); the decision is
//! the proxy's own (`Proxy::decide_forward`, shared with hyper's path), and
//! the upstream's head is written from the parsed fields with the rewrite
//! of hyper's path applied on the way (`rewrite`); the upstream exchange
//! runs in the connection's own task on a plain `TcpStream` from this
//! thread's shelf (`pool`), with no connection task or channel (`exchange`,
//! `upstream`). Requests are answered one after the other, so pipelined
//! requests are simply read from the buffer in turn: a response is always
//! complete before the next request's head is parsed.
//!
//! What the fast path does not do is handed to hyper with the connection,
//! from the start of the request that needs it (the bytes already read
//! are replayed, see `listener::Rewound`): HTTP/1.0, `Upgrade`/`CONNECT`,
//! `Expect`, gRPC, and routes to `https://` or HTTP/2 upstreams. HTTP/2
//! (the h2c preface) and TLS never reach it.

pub mod body;
pub mod deadline;
mod exchange;
pub mod parse;
mod rewrite;
pub mod upstream;
pub mod write;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use self::deadline::Deadline;
use self::parse::{Framing, Head, Parsed};
use super::decision::request_host;
use super::{client_ip, problem, ClientConn, Proxy};
use crate::contract::{ProxyCode, RequestId};
use crate::listener::{self, Handover};
use crate::shutdown::{Drain, DrainWatcher};

/// The client connection's read buffer starts this large.
const BUFFER: usize = 8 * 1024;

/// The client's side: its stream and the bytes read from it that no
/// request has used yet (`buf[start..]`).
pub(super) struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    /// Bounds the wait for each request head.
    deadline: Deadline,
    /// What one head leaves for the next to use.
    reuse: parse::Reuse,
}

/// Buffers a connection reuses from request to request.
pub(super) struct Scratch {
    /// What the upstream sent.
    upstream: Vec<u8>,
    /// The client's response head (or the proxy's whole answer).
    out: Vec<u8>,
    /// The upstream's request head.
    head: Vec<u8>,
    /// The fields the proxy adds to the client's response head.
    own: Vec<u8>,
    /// Bounds the wait for each response head.
    deadline: Deadline,
}

/// Reads more into `buf`, growing it if it is nearly full; 0 at the end.
pub(super) async fn read_more<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < BUFFER / 2 {
        buf.reserve(BUFFER);
    }
    reader.read_buf(buf).await
}

/// What came of waiting for the next request head.
#[allow(clippy::large_enum_variant)] // as `Parsed`: one allocation fewer a request
enum Next {
    Head(Head),
    /// The client left, was too slow, or the drain started while it was
    /// idle.
    Closed,
    /// Framing a strict reading refuses.
    Refused,
    /// A head past the hard limit, or with too many fields.
    TooLarge,
}

impl Client {
    fn unread(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads until a whole head is buffered, within `timeout` from now.
    async fn next_head(&mut self, timeout: std::time::Duration, limit: usize, drain: &mut DrainWatcher) -> Next {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.unread().is_empty() {
                match parse::parse_request_with(&self.buf[self.start..], &mut self.reuse) {
                    Parsed::Complete(head) => return Next::Head(head),
                    Parsed::Refused(fault) => {
                        tracing::debug!(?fault, "request framing refused");
                        return Next::Refused;
                    }
                    Parsed::TooManyHeaders => return Next::TooLarge,
                    Parsed::Partial if self.unread().len() >= limit => return Next::TooLarge,
                    Parsed::Partial => {}
                }
            }
            if self.start > 0 {
                // Keep the head's start at the buffer's start.
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let idle = self.buf.is_empty();
            tokio::select! {
                biased;
                () = drain.started(), if idle => return Next::Closed,
                read = self.deadline.bound(deadline, read_more(&mut self.stream, &mut self.buf)) => match read {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(Ok(_)) | Ok(Err(_)) => return Next::Closed,
                    Err(_) => {
                        tracing::debug!("no request head within the header read timeout");
                        return Next::Closed;
                    }
                },
            }
        }
    }

    /// Writes `bytes` (an answer that ends the connection) and closes.
    async fn finish(mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.shutdown().await;
    }
}

/// Whether the start of a chunked body that came with its head is well
/// framed (so far).
fn chunked_so_far_valid(mut bytes: &[u8]) -> bool {
    let mut chunked = body::Chunked::default();
    while !bytes.is_empty() && !chunked.is_done() {
        match chunked.step(bytes) {
            Ok(step) => bytes = &bytes[step.consumed..],
            Err(fault) => {
                tracing::debug!(?fault, "request framing refused");
                return false;
            }
        }
    }
    true
}

impl Proxy {
    /// Serves a plain HTTP/1.1 connection on the fast path; `read` is what
    /// was already read from it. Returns the connection, with the bytes
    /// not yet used, when a request needs hyper.
    pub async fn serve_fast(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        read: Vec<u8>,
        drain: Arc<Drain>,
    ) -> Option<Handover> {
        // Decided per connection, as on hyper's path.
        let trusted = client_ip::is_trusted(peer.ip(), &self.live.load().trusted_proxies);
        let conn = ClientConn::new(peer, false, trusted);
        let mut buf = read;
        buf.reserve(BUFFER);
        let reuse = parse::Reuse::default();
        let mut client = Client { stream, buf, start: 0, deadline: Deadline::default(), reuse };
        let mut scratch = Scratch {
            upstream: Vec::new(),
            out: Vec::new(),
            head: Vec::new(),
            own: Vec::new(),
            deadline: Deadline::default(),
        };
        let mut watcher = drain.watcher();
        let limit = listener::hyper_head_limit(self.max_header_bytes);
        let timeout = self.listener.header_read_timeout;
        loop {
            let head = match client.next_head(timeout, limit, &mut watcher).await {
                Next::Head(head) => head,
                Next::Closed => {
                    let _ = client.stream.shutdown().await;
                    return None;
                }
                Next::Refused => {
                    client.finish(&problem::framing_refusal()).await;
                    return None;
                }
                Next::TooLarge => {
                    let detail = format!("The request head may be at most {} bytes.", self.max_header_bytes);
                    let id = RequestId::generate();
                    let response = problem::answer(ProxyCode::HeaderTooLarge, Some(&detail), &id, false);
                    write::own_response(&mut scratch.out, &response, true);
                    client.finish(&scratch.out).await;
                    return None;
                }
            };
            let live = self.live.load();
            if head.flags.unusual()
                || problem::is_grpc(&head.fields)
                || live.routes.needs_other_than_http1(head.uri.path(), || request_host(head.view()))
            {
                let Client { stream, mut buf, start, .. } = client;
                buf.drain(..start);
                return Some(Handover { stream, read: buf });
            }
            client.consume(head.len);
            if head.framing == Framing::Chunked && !chunked_so_far_valid(client.unread()) {
                // As `listener::strict` does for a fault in the read that
                // brought the head: refused before anything goes upstream.
                client.finish(&problem::framing_refusal()).await;
                return None;
            }
            let keep = self.fast_request(&live, &conn, &mut client, &head, watcher.is_draining(), &mut scratch).await;
            client.reuse.recycle(head);
            if !keep || watcher.is_draining() {
                let _ = client.stream.shutdown().await;
                return None;
            }
        }
    }
}
