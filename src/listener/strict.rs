//! The stream an HTTP/1.1 connection is served over when framing is judged
//! strictly: every read is shown to a `framing::Tracker` in place before
//! hyper gets it, and a request the tracker refuses never reaches hyper.
//!
//! A refused request is answered here, with the listener's canned response
//! (the proxy's 400 problem+json with `Connection: close`), and the stream
//! is shut down. The answer must not cut into a response hyper is still
//! writing for an earlier, pipelined request, so it is written only when
//! hyper is known to be idle: when hyper reads the next head. To make that
//! the next thing hyper does, the refused request is replaced by one LF —
//! an empty line, which hyper skips, but which keeps its read buffer
//! non-empty so it does not poll the socket for end-of-stream while busy.
//! If hyper still has response bytes to flush (the client is not reading),
//! the answer waits for the write side to drain.
//!
//! A request whose head hyper already has (a fault in its chunked body) is
//! hyper's: the read fails, hyper ends the body with an error, and the
//! proxy answers 400 itself.
//!
//! Writes pass through untouched; while a protocol switch may be coming
//! they are watched for the `101` that makes the rest of the stream opaque.
//! A `101` counts only if the service said it relayed one (`SwitchSignal`,
//! handed to it in the request's extensions by `signalled`): a response
//! body that merely starts with `HTTP/1.1 101 ` does not end the check.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::header::UPGRADE;
use http::{Method, Request};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::framing::{Tracker, Violation};
use super::Tapped;

/// Builds the bytes of the answer to a refused request, a whole HTTP/1.1
/// response that closes the connection.
pub type Refusal = fn() -> Vec<u8>;

const SWITCHING: &[u8] = b"HTTP/1.1 101 ";

enum Mode {
    /// Judging reads.
    Judging,
    /// A request was refused; the answer is written when hyper is idle.
    Owed { answer: Vec<u8>, written: usize },
    /// The answer is written and the stream shut down: hyper reads the end.
    Answered,
    /// A request whose head hyper has was refused: its reads fail.
    Failed,
}

/// A client stream whose HTTP/1.1 request framing is judged strictly.
pub struct Strict<T> {
    inner: T,
    tracker: Tracker,
    refusal: Refusal,
    mode: Mode,
    /// The last write to `inner` was pending: hyper may have unflushed bytes.
    write_blocked: bool,
    /// hyper's task, waiting for `write_blocked` to clear.
    waiting: Option<Waker>,
    /// The listener's connection slot, held for as long as the stream is
    /// open — also inside an upgrade tunnel, which outlives hyper's task.
    _permit: Option<OwnedSemaphorePermit>,
    /// Set by the service when it answers a switch with `101`.
    switching: Arc<AtomicBool>,
}

/// The service's word that it is relaying a `101` on this connection.
#[derive(Debug, Clone)]
pub struct SwitchSignal(Arc<AtomicBool>);

impl SwitchSignal {
    pub fn switching(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl<T> Strict<T> {
    pub fn new(inner: T, refusal: Refusal) -> Self {
        Strict {
            inner,
            tracker: Tracker::default(),
            refusal,
            mode: Mode::Judging,
            write_blocked: false,
            waiting: None,
            _permit: None,
            switching: Arc::new(AtomicBool::new(false)),
        }
    }

    /// What the service sets when it relays a `101` on this stream.
    pub fn signal(&self) -> SwitchSignal {
        SwitchSignal(Arc::clone(&self.switching))
    }

    /// The stream, holding `permit` until it is dropped.
    pub fn holding(mut self, permit: OwnedSemaphorePermit) -> Self {
        self._permit = Some(permit);
        self
    }

    fn wrote<R>(&mut self, result: &Poll<R>) {
        self.write_blocked = result.is_pending();
        if !self.write_blocked {
            if let Some(waker) = self.waiting.take() {
                waker.wake();
            }
        }
    }

    fn watch_for_switch(&mut self, bytes: &[u8]) {
        if self.tracker.awaiting_switch() && bytes.starts_with(SWITCHING) && self.switching.load(Ordering::Acquire) {
            self.tracker.switched();
        }
    }
}

fn framing_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "request framing refused")
}

impl<T: AsyncRead + AsyncWrite + Unpin> Strict<T> {
    /// Writes the owed answer, then shuts the stream down.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_blocked {
            self.waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let Mode::Owed { answer, written } = &mut self.mode else { return Poll::Ready(Ok(())) };
        while *written < answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let shut = match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        };
        match shut {
            Poll::Pending => Poll::Pending,
            // The client may be gone already; either way, this is the end.
            Poll::Ready(_) => {
                self.mode = Mode::Answered;
                Poll::Ready(Ok(()))
            }
        }
    }

    fn refused(
        &mut self,
        cx: &mut Context<'_>,
        violation: Violation,
        buf: &mut ReadBuf<'_>,
        before: usize,
    ) -> Poll<io::Result<()>> {
        tracing::debug!(fault = ?violation.fault, "request framing refused");
        if violation.head_passed {
            buf.set_filled(before);
            self.mode = Mode::Failed;
            return Poll::Ready(Err(framing_error()));
        }
        self.mode = Mode::Owed { answer: (self.refusal)(), written: 0 };
        match violation.request_start {
            Some(start) => {
                let at = before + start;
                buf.filled_mut()[at] = b'\n';
                buf.set_filled(at + 1);
                Poll::Ready(Ok(()))
            }
            // hyper holds the start of this head, so it is reading for the
            // rest of it: idle.
            None => {
                buf.set_filled(before);
                self.poll_answer(cx)
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Strict<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.mode {
            Mode::Judging => {}
            Mode::Owed { .. } => return this.poll_answer(cx),
            Mode::Answered => return Poll::Ready(Ok(())),
            Mode::Failed => return Poll::Ready(Err(framing_error())),
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        match this.tracker.feed(&buf.filled()[before..]) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(violation) => this.refused(cx, violation, buf, before),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Strict<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if matches!(this.mode, Mode::Answered) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        this.watch_for_switch(buf);
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if matches!(this.mode, Mode::Answered) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if this.tracker.awaiting_switch() {
            for buf in bufs {
                this.watch_for_switch(buf);
            }
        }
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.mode, Mode::Answered) {
            return Poll::Ready(Ok(()));
        }
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.wrote(&result);
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.mode, Mode::Answered) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A connection's service that finds the stream's `SwitchSignal` in the
/// extensions of every request that may switch protocols (`Upgrade`, or
/// `CONNECT`), and only those: the common request carries nothing extra.
pub fn signalled<S>(service: S, signal: SwitchSignal) -> Tapped<S, impl Fn(&mut Request<Incoming>) + Send + 'static> {
    Tapped::new(service, move |request: &mut Request<Incoming>| {
        if request.headers().contains_key(UPGRADE) || request.method() == Method::CONNECT {
            request.extensions_mut().insert(signal.clone());
        }
    })
}
