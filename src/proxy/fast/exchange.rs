//! One request on the fast path, from its parsed head to the end of its
//! response: the decision (`Proxy::decide_forward`, shared with hyper's
//! path), the upstream's head written with the rewrite applied
//! (`rewrite`), then the upstream exchange inside the request's own
//! task — the request head written with the body's first bytes in one
//! vectored write, the rest of the body relayed while the response is
//! awaited (an upstream may answer before it has read everything), and
//! the response relayed back.
//!
//! A pooled connection the upstream had closed is found before use when
//! the socket says so (`pool::still_open`); if it shows only once the
//! request was sent (no byte of a response came back), the request is sent
//! again on a new connection when that is safe: it has no body and its
//! method is idempotent, or writing it failed outright.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName};
use http::{HeaderValue, Method, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::{chunk_header, Chunked};
use super::parse::{Framing, Head};
use super::rewrite;
use super::upstream::{self, Failure};
use super::write::{self, write_all_vectored};
use super::{Client, Scratch};
use crate::contract::{ProxyCode, X_REQUEST_ID};
use crate::identity::X_KEYGATE_IDENTITY;
use crate::proxy::body::ProxyBody;
use crate::proxy::forward::ForwardError;
use crate::proxy::live::Live;
use crate::proxy::{headers, Admitted, ClientConn, Decided, Proxy};
use crate::telemetry::context::PROPAGATED;

/// How a request ended, for metrics, telemetry and the connection.
struct Answered {
    route: usize,
    status: StatusCode,
    /// The client connection may carry another request.
    keep: bool,
    /// The proxy's own answer's code, if it gave one.
    code: Option<ProxyCode>,
    /// The `X-Request-Id` the client got, when telemetry is on.
    request_id: Option<HeaderValue>,
}

/// Writes the proxy's own answer (a refusal, an upstream failure) to the
/// client; the connection is kept when it was sent and `close` is not set.
async fn own_answer(
    client: &mut Client,
    scratch: &mut Scratch,
    route: usize,
    response: &Response<ProxyBody>,
    close: bool,
    request_id: Option<HeaderValue>,
) -> Answered {
    write::own_response(&mut scratch.out, response, close);
    let sent = client.stream.write_all(&scratch.out).await.is_ok();
    Answered {
        route,
        status: response.status(),
        keep: sent && !close,
        code: response.extensions().get::<ProxyCode>().copied(),
        request_id,
    }
}

/// Why the client's body stopped going upstream.
#[derive(Debug)]
enum SendError {
    TooLarge(u64),
    Timeout(Duration),
    /// Bad chunked framing, or the client left mid-body.
    Client,
    /// Writing to the upstream failed.
    Upstream(io::Error),
}

/// One try on one upstream connection.
enum Attempt {
    Answered {
        status: StatusCode,
        reusable: bool,
        body_done: bool,
    },
    /// Safe to send again on a new connection.
    Retry,
    /// Nothing went to the client: answer with the problem.
    Failed {
        error: ForwardError,
        body_done: bool,
    },
    /// Part of a response went to the client: the connection is cut.
    Cut {
        status: Option<StatusCode>,
    },
}

impl Proxy {
    /// Answers one request whose head the fast path parsed; returns whether
    /// the connection stays open for the next one.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn fast_request(
        &self,
        live: &Live,
        conn: &ClientConn,
        client: &mut Client,
        head: &Head,
        draining: bool,
        scratch: &mut Scratch,
    ) -> bool {
        let started = Instant::now();
        let mut record = self.telemetry.as_ref().map(|telemetry| telemetry.begin(&head.to_request()));
        let (method, framing) = (&head.method, head.framing);
        let head_request = method == Method::HEAD;
        let idempotent = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE);
        let close = head.flags.close || draining;
        let answered = match self.decide_forward(live, head.view(), conn, record.as_mut()) {
            Err(refused) => {
                let (route, response) = *refused;
                // The body, if any, was not read: the connection ends.
                let close = close || framing != Framing::Empty;
                let request_id = response.headers().get(X_REQUEST_ID).cloned();
                own_answer(client, scratch, route, &response, close, request_id).await
            }
            Ok(decided) => {
                let shape = Shape { framing, head_request, idempotent, close };
                self.forward(live, conn, client, head, decided, shape, scratch, started, record.as_mut()).await
            }
        };
        let elapsed = started.elapsed();
        live.durations.observe(answered.route, answered.status.as_u16(), elapsed);
        if let (Some(telemetry), Some(record)) = (&self.telemetry, record) {
            let mut response = Response::new(());
            *response.status_mut() = answered.status;
            if let Some(code) = answered.code {
                response.extensions_mut().insert(code);
            }
            if let Some(id) = answered.request_id {
                response.headers_mut().insert(X_REQUEST_ID, id);
            }
            telemetry.finish(record, &response, elapsed);
        }
        answered.keep
    }

    /// Sends a decided request upstream and relays the answer.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        live: &Live,
        conn: &ClientConn,
        client: &mut Client,
        head: &Head,
        decided: Decided<'_>,
        shape: Shape,
        scratch: &mut Scratch,
        started: Instant,
        mut record: Option<&mut crate::telemetry::Record>,
    ) -> Answered {
        let Decided { uri, target, request_id, grpc, admitted } = decided;
        let Admitted { identity, found_in, rate, quota, identity_token } = admitted;
        let route = target.index;
        // What is set after the rewrite (no allocation when empty).
        let mut extra = HeaderMap::new();
        if let Some(token) = identity_token {
            extra.insert(X_KEYGATE_IDENTITY, token);
        }
        if let Some(record) = record.as_deref_mut() {
            record.forwarding(&mut extra);
        }
        let rewrite = conn.rewrite(live, &identity, &request_id, target.upstream);
        let stripped = |name: &[u8]| live.strip_credentials && live.credentials.strips(name, found_in);
        let chunked = shape.framing == Framing::Chunked;
        let owned: &[HeaderName] = if record.is_some() { &PROPAGATED } else { &[] };
        let extra = rewrite::Extra { fields: &extra, owned };
        write::request_head(&mut scratch.head, &head.method, &uri, chunked, |out| {
            rewrite::request_fields(out, &head.fields, &rewrite, stripped, &extra)
        });
        // The response head's own fields, worked out before the request goes.
        let own = &mut scratch.own;
        own.clear();
        write::line(own, &X_REQUEST_ID, request_id.as_str().as_bytes());
        headers::limit_lines(own, rate.as_ref(), quota.as_ref());
        let limits = rate.is_some() || quota.is_some();
        let forwarder = &live.forwarder;
        let deadline = tokio::time::Instant::from_std(started) + forwarder.response_timeout();
        let mut tries = 0;
        let attempt = loop {
            tries += 1;
            let mut pooled = None;
            while let Some(stream) = forwarder.pool().checkout_tcp(route, Instant::now()) {
                if crate::proxy::pool::still_open(&stream) {
                    pooled = Some(stream);
                    break;
                }
            }
            let was_pooled = pooled.is_some();
            let mut stream = match pooled {
                Some(stream) => stream,
                None => match tokio::time::timeout_at(
                    deadline,
                    upstream::connect(target.upstream, forwarder.connect_timeout()),
                )
                .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        let error = ForwardError::Connect(e.into());
                        break Attempt::Failed { error, body_done: shape.framing == Framing::Empty };
                    }
                    Err(_) => {
                        let error = ForwardError::Timeout(forwarder.response_timeout());
                        break Attempt::Failed { error, body_done: shape.framing == Framing::Empty };
                    }
                },
            };
            let attempt =
                exchange(&mut stream, client, scratch, shape, limits, target.body_limit, live, deadline).await;
            match attempt {
                Attempt::Retry if was_pooled && tries < 3 => continue,
                Attempt::Retry => {
                    let error = ForwardError::Upstream("the upstream closed the connection".into());
                    break Attempt::Failed { error, body_done: shape.framing == Framing::Empty };
                }
                Attempt::Answered { reusable: true, status, body_done } => {
                    forwarder.pool().put_tcp(route, stream, Instant::now());
                    break Attempt::Answered { status, reusable: true, body_done };
                }
                other => break other,
            }
        };
        // Telemetry's: a generated id is not made a header value otherwise.
        let telemetry = record.is_some();
        if let Some(record) = record {
            let status = match &attempt {
                Attempt::Answered { status, .. } => Some(status.as_u16()),
                Attempt::Cut { status } => status.map(|s| s.as_u16()),
                _ => None,
            };
            record.upstream_answered(status);
        }
        match attempt {
            Attempt::Answered { status, body_done, .. } => Answered {
                route,
                status,
                keep: body_done && !shape.close,
                code: None,
                request_id: telemetry.then(|| request_id.into_header_value()),
            },
            Attempt::Cut { status } => Answered {
                route,
                status: status.unwrap_or(StatusCode::BAD_GATEWAY),
                keep: false,
                code: None,
                request_id: telemetry.then(|| request_id.into_header_value()),
            },
            Attempt::Failed { error, body_done } => {
                let response = self.upstream_failed(live, error, route, &request_id, conn.peer, grpc);
                let close = shape.close || !body_done;
                own_answer(client, scratch, route, &response, close, Some(request_id.into_header_value())).await
            }
            Attempt::Retry => {
                Answered { route, status: StatusCode::BAD_GATEWAY, keep: false, code: None, request_id: None }
            }
        }
    }
}

/// What the exchange needs to know of the request.
#[derive(Debug, Clone, Copy)]
struct Shape {
    framing: Framing,
    head_request: bool,
    idempotent: bool,
    /// The client connection closes after this request.
    close: bool,
}

/// One try of the exchange on `stream`: the request head (in
/// `scratch.head`) and body go up while the response is awaited, then the
/// response is relayed with the proxy's fields (`scratch.own`; `limits`:
/// they include the `RateLimit` fields).
#[allow(clippy::too_many_arguments)]
async fn exchange(
    stream: &mut TcpStream,
    client: &mut Client,
    scratch: &mut Scratch,
    shape: Shape,
    limits: bool,
    body_limit: Option<u64>,
    live: &Live,
    deadline: tokio::time::Instant,
) -> Attempt {
    let Scratch { upstream: ubuf, out, head, own, deadline: timer } = scratch;
    let (mut up_read, mut up_write) = stream.split();
    let Client { stream: client_stream, buf, start, .. } = client;
    let (mut client_read, mut client_write) = client_stream.split();
    // The head, with whatever of a `Content-Length` body is already here.
    let (first, mut remaining) = match shape.framing {
        Framing::Length(n) => {
            let k = n.min((buf.len() - *start) as u64) as usize;
            (k, n - k as u64)
        }
        _ => (0, 0),
    };
    if let Err(e) = write_all_vectored(&mut up_write, &[&head[..], &buf[*start..*start + first]]).await {
        // Nothing of a response can come: safe to send again unless the
        // body went with it.
        return match shape.framing {
            Framing::Empty => Attempt::Retry,
            _ => Attempt::Failed { error: ForwardError::Upstream(e.into()), body_done: false },
        };
    }
    *start += first;
    let mut body: Option<Result<(), SendError>> = match shape.framing {
        Framing::Empty => Some(Ok(())),
        Framing::Length(_) if remaining == 0 => Some(Ok(())),
        _ => None,
    };
    let written = AtomicBool::new(false);
    let status = AtomicU16::new(0);
    let result = {
        let send = send_body(
            &mut client_read,
            buf,
            start,
            &mut up_write,
            shape.framing,
            &mut remaining,
            body_limit,
            live.body_read_timeout,
        );
        let receive = async {
            let response =
                upstream::read_head(&mut up_read, ubuf, shape.head_request, limits, out, timer, deadline).await?;
            status.store(response.status.as_u16(), Ordering::Relaxed);
            upstream::relay(&mut up_read, &mut client_write, ubuf, out, &response, own, shape.close, &written).await
        };
        tokio::pin!(send);
        tokio::pin!(receive);
        loop {
            tokio::select! {
                sent = &mut send, if body.is_none() => match sent {
                    Ok(()) => body = Some(Ok(())),
                    // The upstream stopped reading: its answer may still come.
                    Err(SendError::Upstream(e)) => body = Some(Err(SendError::Upstream(e))),
                    Err(e) => break Err(e),
                },
                received = &mut receive => break Ok(received),
            }
        }
    };
    let status = StatusCode::from_u16(status.load(Ordering::Relaxed)).ok();
    let body_done = matches!(body, Some(Ok(())));
    let written = written.load(Ordering::Acquire);
    match result {
        Err(_) if written => Attempt::Cut { status },
        Err(e) => {
            let error = match e {
                SendError::TooLarge(limit) => ForwardError::BodyTooLarge { limit },
                SendError::Timeout(after) => ForwardError::BodyTimeout(after),
                SendError::Client | SendError::Upstream(_) => ForwardError::ClientBody,
            };
            Attempt::Failed { error, body_done: false }
        }
        Ok(Ok(reusable)) => {
            Attempt::Answered { status: status.unwrap_or(StatusCode::OK), reusable: reusable && body_done, body_done }
        }
        Ok(Err(Failure::Closed(_))) if shape.idempotent && shape.framing == Framing::Empty => Attempt::Retry,
        Ok(Err(Failure::Closed(e) | Failure::Broken(e))) => {
            Attempt::Failed { error: ForwardError::Upstream(e.into()), body_done }
        }
        Ok(Err(Failure::Timeout)) => {
            Attempt::Failed { error: ForwardError::Timeout(live.forwarder.response_timeout()), body_done }
        }
        Ok(Err(Failure::BrokeAfterHead(e) | Failure::Client(e))) => {
            tracing::debug!(error = %e, "response cut short");
            Attempt::Cut { status }
        }
    }
}

/// Relays the rest of the client's body to the upstream: `remaining`
/// bytes of a `Content-Length` body, or a chunked body judged as it goes
/// (and counted against `limit`). Every wait for the client is bounded by
/// `read_timeout`. The client's bytes after the body stay in `buf`.
#[allow(clippy::too_many_arguments)]
async fn send_body<R, W>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    start: &mut usize,
    writer: &mut W,
    framing: Framing,
    remaining: &mut u64,
    limit: Option<u64>,
    read_timeout: Duration,
) -> Result<(), SendError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunked = Chunked::default();
    let mut seen = 0u64;
    let mut header = [0u8; 20];
    loop {
        if *start < buf.len() {
            let available = &buf[*start..];
            match framing {
                Framing::Empty => return Ok(()),
                Framing::Length(_) => {
                    let k = (*remaining).min(available.len() as u64) as usize;
                    writer.write_all(&available[..k]).await.map_err(SendError::Upstream)?;
                    *remaining -= k as u64;
                    *start += k;
                    if *remaining == 0 {
                        return Ok(());
                    }
                }
                Framing::Chunked => {
                    // Re-framed: the upstream gets the data in chunks of
                    // keygate's, without extensions or trailers.
                    let step = chunked.step(available).map_err(|_| SendError::Client)?;
                    seen = seen.saturating_add(step.data);
                    if let Some(limit) = limit.filter(|&l| seen > l) {
                        return Err(SendError::TooLarge(limit));
                    }
                    if step.data > 0 {
                        let data = &available[step.consumed - step.data as usize..step.consumed];
                        let n = chunk_header(data.len(), &mut header);
                        write_all_vectored(writer, &[&header[..n], data, b"\r\n"])
                            .await
                            .map_err(SendError::Upstream)?;
                    }
                    *start += step.consumed;
                    if step.done {
                        writer.write_all(b"0\r\n\r\n").await.map_err(SendError::Upstream)?;
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        if *start == buf.len() {
            buf.clear();
            *start = 0;
        }
        match tokio::time::timeout(read_timeout, super::read_more(reader, buf)).await {
            Err(_) => return Err(SendError::Timeout(read_timeout)),
            Ok(Ok(0) | Err(_)) => return Err(SendError::Client),
            Ok(Ok(_)) => {}
        }
    }
}
