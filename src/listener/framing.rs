//! An incremental tracker of HTTP/1.1 request framing (RFC 9112), fed the
//! bytes a client sends, in whatever pieces they arrive, before hyper parses
//! them. It exists for what hyper accepts but a strict reading must refuse,
//! because a front proxy may read it another way (request smuggling):
//!
//! - a line in a head, in chunked framing or in a trailer section that ends
//!   in a bare LF instead of CRLF;
//! - a head with both `Content-Length` and `Transfer-Encoding`, a
//!   `Transfer-Encoding` whose last coding is not `chunked`, or a
//!   `Content-Length` that is not one decimal number;
//! - a chunk size that is not hex, or a chunk extension with bytes other than
//!   visible ASCII, space and tab (NUL, controls), or chunk data not followed
//!   by CRLF.
//!
//! It follows each request to its end (a `Content-Length` body is skipped by
//! count and never scanned; chunked bodies are walked size line by size
//! line by `chunked::Chunked`, the fast path's walker too) to find the next
//! head. After a request that may switch protocols (`Upgrade`, or
//! `CONNECT`) it keeps reading HTTP until told the switch happened
//! (`switched`), then looks at nothing more.
//!
//! It never copies the stream and never allocates: lines are scanned in
//! place with `memchr`; only a head line that straddles two reads keeps its
//! first `LINE_KEEP` bytes, enough for the names and values it judges. It
//! does not validate what hyper validates itself (tokens, bare CR, sizes).

use memchr::memchr;

use super::chunked::Chunked;

/// What of a head line split across reads is kept: the longest name judged
/// is 18 bytes, and a `Content-Length` or `Transfer-Encoding` line this long
/// or longer is refused, whole or split.
pub const LINE_KEEP: usize = 128;

/// Why a request's framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A line ended in a bare LF, or a CR was not followed by LF.
    LineEnd,
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// A `Content-Length` that is not one decimal number.
    BadLength,
    /// A `Transfer-Encoding` whose last coding is not `chunked`.
    BadTransferEncoding,
    /// A chunk size line that is not hex digits.
    BadChunkSize,
    /// A chunk extension with bytes other than visible ASCII, SP and HTAB.
    BadChunkExtension,
}

/// A refused request, and how much of it went before the read that showed
/// the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub fault: Fault,
    /// Where in the bytes just fed the request at fault begins, if there.
    pub request_start: Option<usize>,
    /// The request's whole head was in an earlier read: it has been handed
    /// on, and only its body is at fault.
    pub head_passed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between two requests, nothing of the next one seen yet.
    Ready,
    /// Before a request line: empty lines (CRLF) may precede it.
    Idle,
    /// After a CR before the request line.
    IdleLf,
    /// Inside a head.
    Head,
    /// A `Content-Length` body with this much left.
    Body(u64),
    /// A chunked body, walked by `chunked::Chunked`.
    Chunked(Chunked),
    /// After a protocol switch: nothing more is HTTP.
    Opaque,
    /// After a violation.
    Broken,
}

/// What the head seen so far says about framing.
#[derive(Debug, Clone, Copy, Default)]
struct Head {
    request_line_done: bool,
    length: Option<u64>,
    transfer_encoding: bool,
    chunked: bool,
    upgrade: bool,
}

/// The framing tracker of one connection.
#[derive(Debug, Clone)]
pub struct Tracker {
    state: State,
    head: Head,
    /// The current request's head ended (in this read or an earlier one).
    head_done: bool,
    /// A request that may switch protocols was seen; see `switched`.
    awaiting_switch: bool,
    /// The start of a head line that straddles reads.
    line: [u8; LINE_KEEP],
    line_len: usize,
    /// The straddling line is longer than what `line` kept.
    line_cut: bool,
    /// There is a straddling line (possibly empty so far, after a CR).
    partial: bool,
    /// The straddling line's last byte was CR.
    partial_cr: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            state: State::Ready,
            head: Head::default(),
            head_done: false,
            awaiting_switch: false,
            line: [0; LINE_KEEP],
            line_len: 0,
            line_cut: false,
            partial: false,
            partial_cr: false,
        }
    }
}

impl Tracker {
    /// Whether a request that may switch protocols has been seen, so that
    /// the responses written should be watched for the switch.
    pub fn awaiting_switch(&self) -> bool {
        self.awaiting_switch
    }

    /// The protocol switched (a `101` went out): the rest is not HTTP.
    pub fn switched(&mut self) {
        self.awaiting_switch = false;
        if self.state != State::Broken {
            self.state = State::Opaque;
        }
    }

    /// Judges the next bytes of the stream. After a violation every call
    /// reports it again.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        let mut started = None;
        let mut head_ended_here = false;
        match self.walk(bytes, &mut started, &mut head_ended_here) {
            Ok(()) => Ok(()),
            Err(fault) => {
                let head_passed = self.head_done && !head_ended_here && started.is_none();
                self.state = State::Broken;
                Err(Violation { fault, request_start: started, head_passed })
            }
        }
    }

    fn walk(&mut self, bytes: &[u8], started: &mut Option<usize>, head_ended_here: &mut bool) -> Result<(), Fault> {
        let mut pos = 0;
        while pos < bytes.len() {
            let b = bytes[pos];
            match self.state {
                State::Opaque => return Ok(()),
                State::Broken => return Err(Fault::LineEnd),
                State::Ready => {
                    *started = Some(pos);
                    self.head = Head::default();
                    self.head_done = false;
                    self.state = State::Idle;
                }
                State::Idle => match b {
                    b'\r' => {
                        self.state = State::IdleLf;
                        pos += 1;
                    }
                    b'\n' => return Err(Fault::LineEnd),
                    _ => self.state = State::Head,
                },
                State::IdleLf => {
                    if b != b'\n' {
                        return Err(Fault::LineEnd);
                    }
                    self.state = State::Idle;
                    pos += 1;
                }
                State::Head => {
                    pos = self.head_lines(bytes, pos)?;
                    if self.state != State::Head {
                        self.head_done = true;
                        *head_ended_here = true;
                    }
                }
                State::Body(left) => {
                    let n = left.min((bytes.len() - pos) as u64);
                    // `n` is at most the bytes left in this read.
                    pos += n as usize;
                    self.state = if n == left { State::Ready } else { State::Body(left - n) };
                }
                State::Chunked(mut chunked) => {
                    let step = chunked.step(&bytes[pos..])?;
                    pos += step.consumed;
                    self.state = if step.done { State::Ready } else { State::Chunked(chunked) };
                }
            }
        }
        Ok(())
    }

    /// Scans head lines from `pos`; returns where it stopped: the end of
    /// `bytes`, or just after the head's final CRLF (the state then says
    /// what follows).
    fn head_lines(&mut self, bytes: &[u8], mut pos: usize) -> Result<usize, Fault> {
        loop {
            let rest = &bytes[pos..];
            let Some(i) = memchr(b'\n', rest) else {
                self.keep(rest);
                return Ok(bytes.len());
            };
            let segment = &rest[..i];
            pos += i + 1;
            let ends_in_cr = match segment.last() {
                Some(&c) => c == b'\r',
                None => self.partial && self.partial_cr,
            };
            if !ends_in_cr {
                return Err(Fault::LineEnd);
            }
            let end_of_head = if self.partial {
                self.keep(segment);
                let cut = self.line_cut;
                // Without its CR, which `keep` stored unless the line was cut.
                let kept = self.line_len - usize::from(!cut);
                let (line, head) = (&self.line[..kept], &mut self.head);
                let end = kept == 0 && !cut;
                if !end {
                    inspect(head, line, cut)?;
                }
                self.partial = false;
                self.line_len = 0;
                self.line_cut = false;
                end
            } else {
                let line = &segment[..segment.len() - 1];
                if !line.is_empty() {
                    inspect(&mut self.head, line, false)?;
                }
                line.is_empty()
            };
            if end_of_head {
                self.state = self.after_head()?;
                return Ok(pos);
            }
        }
    }

    /// Keeps the start of a line that continues in the next read.
    fn keep(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.partial = true;
        self.partial_cr = bytes.last() == Some(&b'\r');
        let room = LINE_KEEP - self.line_len;
        let n = room.min(bytes.len());
        self.line[self.line_len..self.line_len + n].copy_from_slice(&bytes[..n]);
        self.line_len += n;
        self.line_cut |= n < bytes.len();
    }

    /// What follows a complete head.
    fn after_head(&mut self) -> Result<State, Fault> {
        let head = self.head;
        if head.upgrade {
            self.awaiting_switch = true;
        }
        match (head.transfer_encoding, head.length) {
            (true, Some(_)) => Err(Fault::LengthAndChunked),
            (true, None) if !head.chunked => Err(Fault::BadTransferEncoding),
            (true, None) => Ok(State::Chunked(Chunked::default())),
            (false, Some(n)) if n > 0 => Ok(State::Body(n)),
            (false, _) => Ok(State::Ready),
        }
    }
}

/// Notes what one head line (without its CRLF) says about framing. `cut`:
/// only the line's start is known.
fn inspect(head: &mut Head, line: &[u8], cut: bool) -> Result<(), Fault> {
    if !head.request_line_done {
        head.request_line_done = true;
        // hyper treats CONNECT like an upgrade.
        head.upgrade = line.starts_with(b"CONNECT ");
        return Ok(());
    }
    // A line as long as what a straddling line keeps is judged as cut
    // whether it came in one read or several, so the verdict never depends
    // on where the client's reads end.
    let cut = cut || line.len() >= LINE_KEEP;
    let value = match line[0] | 0x20 {
        b'c' => named(line, b"content-length:"),
        b't' => named(line, b"transfer-encoding:"),
        b'u' => {
            head.upgrade |= named(line, b"upgrade:").is_some();
            None
        }
        _ => None,
    };
    let Some(value) = value else { return Ok(()) };
    if line[0] | 0x20 == b'c' {
        let length = if cut { None } else { content_length(value) };
        match (length, head.length) {
            (None, _) => return Err(Fault::BadLength),
            (Some(n), Some(seen)) if n != seen => return Err(Fault::BadLength),
            (Some(n), _) => head.length = Some(n),
        }
    } else {
        if cut {
            return Err(Fault::BadTransferEncoding);
        }
        head.transfer_encoding = true;
        // The last `Transfer-Encoding` line's last coding decides.
        let last = value.rsplit(|&b| b == b',').next().map_or(&b""[..], trim);
        head.chunked = last.eq_ignore_ascii_case(b"chunked");
    }
    Ok(())
}

/// The value of `line` if its field name (with the colon) is `name`.
fn named<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (start, value) = line.split_at_checked(name.len())?;
    start.eq_ignore_ascii_case(name).then_some(value)
}

/// A `Content-Length` value: one number, or a list of the same number.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for part in value.split(|&b| b == b',') {
        let part = trim(part);
        if part.is_empty() {
            return None;
        }
        let mut n: u64 = 0;
        for &b in part {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// Without leading and trailing SP and HTAB.
fn trim(bytes: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
