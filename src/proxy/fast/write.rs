//! Heads as bytes, and vectored writes: the upstream's request head, the
//! client's response head, and the answers the proxy makes itself.

use std::io::{self, IoSlice};

use http::header::{HeaderMap, HeaderName};
use http::{Method, Response, StatusCode, Uri};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::proxy::ProxyBody;

/// Appends `name: value\r\n` for every field of `headers`.
fn fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        line(out, name, value.as_bytes());
    }
}

/// Appends one head line, `name: value\r\n`.
pub fn line(out: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
    raw_line(out, name.as_str().as_bytes(), value);
}

/// `line`, for a name held as bytes.
pub fn raw_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The upstream's request head, into `out` (cleared first): the request
/// line, what `fields` appends, the framing. `chunked`: the body follows in
/// chunked framing (`Transfer-Encoding` is hop-by-hop, so the rewritten
/// fields no longer say so).
pub fn request_head(out: &mut Vec<u8>, method: &Method, uri: &Uri, chunked: bool, fields: impl FnOnce(&mut Vec<u8>)) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if target.is_empty() { b"/" } else { target.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    fields(out);
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How the client's response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimit {
    /// By the headers as they are (`Content-Length`, or no body at all).
    AsIs,
    /// Chunked: the upstream's chunked body relayed, or a body that ended
    /// with the upstream's connection framed chunk by chunk.
    Chunked,
}

/// A response head for the client, into `out` (cleared first).
/// `reason`: the upstream's reason phrase, if not the usual one.
pub fn response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    reason: Option<&[u8]>,
    headers: &HeaderMap,
    delimit: Delimit,
    close: bool,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    let reason = reason.unwrap_or_else(|| status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    fields(out, headers);
    end_head(out, &[], delimit, close);
}

/// Ends a response head whose status line and fields are in `out`: the
/// proxy's own `fields` (whole `name: value\r\n` lines), the framing, the
/// empty line.
pub fn end_head(out: &mut Vec<u8>, fields: &[u8], delimit: Delimit, close: bool) {
    out.extend_from_slice(fields);
    if delimit == Delimit::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// One of the proxy's own answers (a problem), whole: head and body.
pub fn own_response(out: &mut Vec<u8>, response: &Response<ProxyBody>, close: bool) {
    let body: &[u8] = match response.body() {
        ProxyBody::Full(Some(bytes)) => bytes,
        _ => &[],
    };
    response_head(out, response.status(), None, response.headers(), Delimit::AsIs, false);
    // Back over the head's final CRLF, to add the framing.
    out.truncate(out.len() - 2);
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Writes all of `parts`, as few writes as the socket takes (one, usually).
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(writer: &mut W, parts: &[&[u8]]) -> io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < parts.len() {
        if parts[index].len() == offset {
            index += 1;
            offset = 0;
            continue;
        }
        let mut slices = [IoSlice::new(&[]); 4];
        let mut n = 0;
        for (i, part) in parts[index..].iter().enumerate().take(slices.len()) {
            slices[n] = IoSlice::new(if i == 0 { &part[offset..] } else { part });
            n += 1;
        }
        let mut written = writer.write_vectored(&slices[..n]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 && index < parts.len() {
            let left = parts[index].len() - offset;
            if written >= left {
                written -= left;
                index += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    Ok(())
}

/// Writes all of `bytes`.
pub async fn write_all<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn heads_carry_every_field_and_the_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("up:80"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        request_head(&mut out, &Method::POST, &"/a?b=c".parse().expect("uri"), true, |out| fields(out, &headers));
        assert_eq!(
            out,
            b"POST /a?b=c HTTP/1.1\r\nhost: up:80\r\nx-a: 1\r\nx-a: 2\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        response_head(&mut out, StatusCode::OK, Some(b"Fine"), &headers, Delimit::AsIs, true);
        assert!(out.starts_with(b"HTTP/1.1 200 Fine\r\nhost: up:80\r\n"));
        assert!(out.ends_with(b"connection: close\r\n\r\n"));
        let response = Response::builder().status(404).body(ProxyBody::full("nope")).expect("response");
        own_response(&mut out, &response, false);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope");
    }

    #[tokio::test]
    async fn vectored_writes_write_everything() {
        let (mut a, mut b) = tokio::io::duplex(7);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut all).await.expect("read");
            all
        });
        let parts: [&[u8]; 6] = [b"he", b"", b"llo ", b"wor", b"ld", b"!"];
        write_all_vectored(&mut a, &parts).await.expect("write");
        drop(a);
        assert_eq!(reader.await.expect("reader"), b"hello world!");
    }
}
