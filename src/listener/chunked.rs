//! Chunked framing (RFC 9112 §7.1) walked in place, with the strict rules
//! of `framing`: hex sizes, extensions of visible ASCII, SP and HTAB only,
//! CRLF after every line and every chunk's data, trailer lines ending in
//! CRLF. The one walker of chunked bodies: the strict-framing tracker
//! (`framing::Tracker`) follows a request's chunked body with it, and the
//! fast path (`proxy::fast`) relays request and response bodies with it.
//! It never copies and never allocates: each step ends after a run of
//! chunk data (which is then the last bytes it consumed), so the caller can
//! re-frame the data (request bodies: the upstream never sees the client's
//! extensions or trailers) or relay the judged bytes as they are (response
//! bodies), and count the data against a limit.

use memchr::memchr;

use super::framing::Fault;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A chunk size line; `ws` once whitespace followed the digits.
    Size {
        size: u64,
        digits: bool,
        ws: bool,
    },
    Ext {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine {
        cr: bool,
    },
    TrailerEnd,
    Done,
}

/// The walker of one chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunked {
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: State::Size { size: 0, digits: false, ws: false } }
    }
}

/// What one `step` judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input that belong to the body (all of it, or up to the
    /// body's end).
    pub consumed: usize,
    /// Of those, chunk data.
    pub data: u64,
    /// The body ended within them.
    pub done: bool,
}

impl Chunked {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Judges `input`, the next bytes of the body, up to its end or the
    /// end of the first run of chunk data in it (whose bytes are then the
    /// last `data` of the `consumed` ones).
    pub fn step(&mut self, input: &[u8]) -> Result<Step, Fault> {
        let mut pos = 0;
        let mut data = 0u64;
        while pos < input.len() {
            let b = input[pos];
            match self.state {
                State::Done => break,
                State::Size { size, digits, ws } => {
                    pos += 1;
                    self.state = match b {
                        b'\r' if digits => State::SizeLf { size },
                        b'\n' => return Err(Fault::LineEnd),
                        b';' if digits => State::Ext { size },
                        b' ' | b'\t' if digits => State::Size { size, digits, ws: true },
                        _ if !ws => {
                            let digit = char::from(b).to_digit(16).ok_or(Fault::BadChunkSize)?;
                            let size = size.checked_mul(16).and_then(|s| s.checked_add(u64::from(digit)));
                            State::Size { size: size.ok_or(Fault::BadChunkSize)?, digits: true, ws }
                        }
                        _ => return Err(Fault::BadChunkSize),
                    };
                }
                State::Ext { size } => {
                    let rest = &input[pos..];
                    let end = rest.iter().position(|&c| !is_extension_byte(c)).unwrap_or(rest.len());
                    pos += end;
                    match rest.get(end) {
                        None => {}
                        Some(b'\r') => {
                            pos += 1;
                            self.state = State::SizeLf { size };
                        }
                        Some(b'\n') => return Err(Fault::LineEnd),
                        Some(_) => return Err(Fault::BadChunkExtension),
                    }
                }
                State::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(Fault::LineEnd);
                    }
                    pos += 1;
                    self.state = if size == 0 { State::TrailerStart } else { State::Data(size) };
                }
                State::Data(left) => {
                    let n = left.min((input.len() - pos) as u64);
                    // `n` is at most the bytes left in `input`.
                    pos += n as usize;
                    data += n;
                    self.state = if n == left { State::DataCr } else { State::Data(left - n) };
                    break;
                }
                State::DataCr | State::DataLf | State::TrailerEnd => {
                    let (want, next) = match self.state {
                        State::DataCr => (b'\r', State::DataLf),
                        State::DataLf => (b'\n', State::Size { size: 0, digits: false, ws: false }),
                        _ => (b'\n', State::Done),
                    };
                    if b != want {
                        return Err(Fault::LineEnd);
                    }
                    pos += 1;
                    self.state = next;
                }
                State::TrailerStart => match b {
                    b'\r' => {
                        pos += 1;
                        self.state = State::TrailerEnd;
                    }
                    b'\n' => return Err(Fault::LineEnd),
                    _ => self.state = State::TrailerLine { cr: false },
                },
                State::TrailerLine { cr } => {
                    let rest = &input[pos..];
                    match memchr(b'\n', rest) {
                        Some(i) => {
                            let ends_in_cr = if i > 0 { rest[i - 1] == b'\r' } else { cr };
                            if !ends_in_cr {
                                return Err(Fault::LineEnd);
                            }
                            pos += i + 1;
                            self.state = State::TrailerStart;
                        }
                        None => {
                            self.state = State::TrailerLine { cr: rest.last() == Some(&b'\r') };
                            pos = input.len();
                        }
                    }
                }
            }
        }
        Ok(Step { consumed: pos, data, done: self.state == State::Done })
    }
}

/// A byte that may appear in a chunk extension: visible ASCII, SP, HTAB.
fn is_extension_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps over all of `input` (or up to the body's end).
    fn whole(input: &[u8]) -> Result<Step, Fault> {
        let mut chunked = Chunked::default();
        let mut total = Step { consumed: 0, data: 0, done: false };
        while total.consumed < input.len() && !total.done {
            let step = chunked.step(&input[total.consumed..])?;
            total = Step { consumed: total.consumed + step.consumed, data: total.data + step.data, done: step.done };
        }
        Ok(total)
    }

    #[test]
    fn a_step_ends_after_a_run_of_data() {
        let mut chunked = Chunked::default();
        let input = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let step = chunked.step(input).expect("valid");
        assert_eq!(step, Step { consumed: 6, data: 3, done: false });
        assert_eq!(&input[step.consumed - 3..step.consumed], b"abc");
        let step = chunked.step(&input[6..]).expect("valid");
        assert_eq!((step.consumed, step.data), (7, 2));
        let step = chunked.step(&input[13..]).expect("valid");
        assert_eq!(step, Step { consumed: 7, data: 0, done: true });
    }

    fn bytewise(input: &[u8]) -> Result<(usize, u64, bool), Fault> {
        let mut chunked = Chunked::default();
        let (mut consumed, mut data) = (0, 0);
        for b in input {
            let step = chunked.step(std::slice::from_ref(b))?;
            consumed += step.consumed;
            data += step.data;
            if step.done {
                return Ok((consumed, data, true));
            }
        }
        Ok((consumed, data, false))
    }

    #[test]
    fn bodies_end_where_their_last_chunk_and_trailers_do() {
        for (body, data, len) in [
            (&b"3\r\nabc\r\n0\r\n\r\nGET"[..], 3, 13),
            (b"3;x=1\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n", 13, 32),
            (b"0\r\nX-T: 1\r\nY: 2\r\n\r\nrest", 0, 19),
            (b"3 \t\r\nabc\r\n0\r\n\r\n", 3, 15),
        ] {
            let step = whole(body).expect("valid");
            assert_eq!((step.consumed, step.data, step.done), (len, data, true), "{body:?}");
            assert_eq!(bytewise(body), Ok((len, data, true)), "{body:?}");
        }
    }

    #[test]
    fn strict_faults_are_refused_however_the_body_is_cut() {
        for (body, fault) in [
            (&b"zz\r\nabc\r\n0\r\n\r\n"[..], Fault::BadChunkSize),
            (b"-1\r\nabc\r\n", Fault::BadChunkSize),
            (b" 3\r\nabc\r\n", Fault::BadChunkSize),
            (b"3\nabc\r\n", Fault::LineEnd),
            (b"ffffffffffffffffff\r\nabc\r\n", Fault::BadChunkSize),
            (b"3\r\nabcXX0\r\n\r\n", Fault::LineEnd),
            (b"3;\0\r\nabc\r\n0\r\n\r\n", Fault::BadChunkExtension),
            (b"3;a=\x01\r\nabc\r\n", Fault::BadChunkExtension),
            (b"3;a=\x7f\r\nabc\r\n", Fault::BadChunkExtension),
            (b"3;a=\xc3\xa9\r\nabc\r\n", Fault::BadChunkExtension),
            (b"3;a\rb\r\nabc\r\n", Fault::LineEnd),
            (b"\r\nabc\r\n", Fault::BadChunkSize),
            (b"0\r\nX: 1\n\r\n", Fault::LineEnd),
            (b"3 3\r\nabc\r\n", Fault::BadChunkSize),
        ] {
            assert_eq!(whole(body), Err(fault), "{body:?}");
            assert_eq!(bytewise(body), Err(fault), "{body:?}");
        }
    }

    #[test]
    fn partial_bodies_are_consumed_up_to_their_data() {
        let step = whole(b"a\r\n01234").expect("valid so far");
        assert_eq!(step, Step { consumed: 8, data: 5, done: false });
    }
}
