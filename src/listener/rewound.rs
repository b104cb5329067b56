//! The first bytes of a connection read before its server gets it: the
//! sniffed start of an HTTP/2 preface, or what the proxy's fast path read
//! before it handed the connection to hyper. `Rewound` reads them again
//! first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::H2_PREFACE;

/// The first bytes of a plain connection, read to tell HTTP/2 with prior
/// knowledge from HTTP/1.1: up to the preface's length, and no further
/// than the first byte that differs from it.
pub(super) struct Sniffed {
    pub(super) bytes: [u8; H2_PREFACE.len()],
    pub(super) len: usize,
}

impl Sniffed {
    pub(super) async fn read_preface(stream: &mut TcpStream) -> io::Result<Sniffed> {
        let mut sniffed = Sniffed { bytes: [0; H2_PREFACE.len()], len: 0 };
        while sniffed.len < H2_PREFACE.len() {
            let n = stream.read(&mut sniffed.bytes[sniffed.len..]).await?;
            if n == 0 {
                break;
            }
            sniffed.len += n;
            if sniffed.bytes[..sniffed.len] != H2_PREFACE[..sniffed.len] {
                break;
            }
        }
        Ok(sniffed)
    }

    pub(super) fn is_http2(&self) -> bool {
        self.bytes[..self.len] == H2_PREFACE[..]
    }

    /// `stream` with these bytes put back in front.
    pub(super) fn around<T>(self, stream: T) -> Rewound<T> {
        Rewound::new(self.bytes[..self.len].to_vec(), stream)
    }
}

/// A stream whose first bytes were already read (sniffed, or read by the
/// fast path before it handed the connection over): they are read again
/// first.
pub(super) struct Rewound<T> {
    read: Vec<u8>,
    start: usize,
    inner: T,
}

impl<T> Rewound<T> {
    pub(super) fn new(read: Vec<u8>, inner: T) -> Self {
        Rewound { read, start: 0, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewound<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.start < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.start);
            buf.put_slice(&this.read[this.start..this.start + n]);
            this.start += n;
            if this.start == this.read.len() {
                this.read = Vec::new();
                this.start = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewound<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
