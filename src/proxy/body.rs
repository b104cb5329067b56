//! Bodies through the proxy. Request bodies are limited per route: a
//! declared `Content-Length` over the limit is refused before the upstream
//! is contacted; a body without one (chunked) is counted while it streams
//! and cut with an error when it passes the limit, which the proxy then
//! answers as 413. Response bodies are the upstream's, or a document the
//! proxy made itself (`ProxyBody`).
//!
//! Request bodies are also timed, like nginx's `client_body_timeout`: the
//! wait for each next piece of the body (not the whole body) is bounded by
//! `proxy.body_read_timeout_ms`; past it the body ends with an error, which
//! ends the upstream exchange (hyper closes an upstream connection whose
//! request body failed, so it never returns to the pool) and is answered
//! 408 if the response has not started.
//!
//! Bodies are never collected: `LimitedBody` passes frames through as they
//! arrive and only counts their length. Its timer is made the first time the
//! body is found not ready, and reused after that: a request without a body,
//! or whose body is already there, never makes one.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::fields::{text, Fields};

/// Why a request body stopped before its end.
#[derive(Debug)]
pub enum BodyError {
    /// The body passed the route's limit of this many bytes.
    TooLarge { limit: u64 },
    /// The client sent nothing more of its body for this long.
    Timeout(Duration),
    /// Reading from the client failed (it left, or sent bad framing).
    Client(hyper::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "request body larger than {limit} bytes"),
            BodyError::Timeout(after) => write!(f, "no request body data for {} ms", after.as_millis()),
            BodyError::Client(e) => write!(f, "reading the request body failed: {e}"),
        }
    }
}

impl StdError for BodyError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            BodyError::TooLarge { .. } | BodyError::Timeout(_) => None,
            BodyError::Client(e) => Some(e),
        }
    }
}

/// Every response body the proxy sends: the upstream's, streamed, or one
/// the proxy made itself (a problem document). An enum rather than a boxed
/// body: one allocation less per response.
#[derive(Debug)]
pub enum ProxyBody {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(bytes.into()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// Refuses a declared body length over `limit`; returns the limit if so.
pub fn check_content_length<F: Fields>(headers: &F, limit: Option<u64>) -> Result<(), u64> {
    let Some(limit) = limit else { return Ok(()) };
    // The parser has already refused malformed or conflicting lengths.
    let declared = headers.first(&CONTENT_LENGTH).and_then(text).and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > limit => Err(limit),
        _ => Ok(()),
    }
}

/// The client's body on its way to the upstream, counted against a limit,
/// each wait for it bounded by a read timeout.
#[derive(Debug)]
pub struct LimitedBody {
    inner: Incoming,
    limit: Option<u64>,
    seen: u64,
    failed: bool,
    read_timeout: Duration,
    /// The deadline of the current wait for the client; boxed (a `Sleep` is
    /// not `Unpin`) and made only once the body is first found not ready.
    wait: Option<Pin<Box<Sleep>>>,
    /// `wait` is set for the current wait; a frame disarms it.
    armed: bool,
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: Option<u64>, read_timeout: Duration) -> Self {
        LimitedBody { inner, limit, seen: 0, failed: false, read_timeout, wait: None, armed: false }
    }

    /// Starts timing a wait for the client, or goes on timing it; whether
    /// its deadline has passed.
    fn waited_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let wait = match &mut self.wait {
            Some(wait) => {
                if !self.armed {
                    wait.as_mut().reset(Instant::now() + self.read_timeout);
                }
                wait
            }
            None => self.wait.insert(Box::pin(tokio::time::sleep(self.read_timeout))),
        };
        self.armed = true;
        wait.as_mut().poll(cx).is_ready()
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                if self.waited_too_long(cx) {
                    self.failed = true;
                    return Poll::Ready(Some(Err(BodyError::Timeout(self.read_timeout))));
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => {
                self.failed = true;
                return Poll::Ready(Some(Err(BodyError::Client(e))));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        self.armed = false;
        if let (Some(limit), Some(data)) = (self.limit, frame.data_ref()) {
            self.seen = self.seen.saturating_add(data.len() as u64);
            if self.seen > limit {
                self.failed = true;
                return Poll::Ready(Some(Err(BodyError::TooLarge { limit })));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body error somewhere in an error's source chain, if the failure of an
/// upstream exchange was caused by the request body.
pub fn body_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a BodyError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(body) = e.downcast_ref::<BodyError>() {
            return Some(body);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::HeaderValue;

    #[test]
    fn declared_length_over_the_limit_is_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(check_content_length(&h, Some(10)), Ok(()));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert_eq!(check_content_length(&h, Some(10)), Ok(()));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert_eq!(check_content_length(&h, Some(10)), Err(10));
        assert_eq!(check_content_length(&h, None), Ok(()));
    }

    #[test]
    fn body_error_is_found_through_wrappers() {
        #[derive(Debug)]
        struct Outer(BodyError);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let outer = Outer(BodyError::TooLarge { limit: 5 });
        assert!(matches!(body_error(&outer), Some(BodyError::TooLarge { limit: 5 })));
        assert!(body_error(&std::io::Error::other("x")).is_none());
    }
}
