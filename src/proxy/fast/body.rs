//! Bodies the fast path frames itself: the chunk header it writes. The
//! chunked walker that judges bodies is `listener::chunked`'s, shared with
//! the strict-framing tracker.

pub use crate::listener::chunked::Chunked;

/// The chunk header of `len` bytes of data (`{len:x}\r\n`), written into
/// `out`; returns its length. For bodies the fast path frames itself.
pub fn chunk_header(len: usize, out: &mut [u8; 20]) -> usize {
    let digits = if len == 0 { 1 } else { (usize::BITS - len.leading_zeros()).div_ceil(4) as usize };
    for (i, digit) in out[..digits].iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    digits + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_headers_are_lowercase_hex() {
        let mut out = [0u8; 20];
        for (len, text) in [(0, "0\r\n"), (10, "a\r\n"), (16, "10\r\n"), (8192, "2000\r\n"), (255, "ff\r\n")] {
            let n = chunk_header(len, &mut out);
            assert_eq!(&out[..n], text.as_bytes());
        }
    }
}
