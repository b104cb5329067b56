//! The protobuf subset of Envoy's `envoy.service.auth.v3` that the gRPC
//! `ext_authz` service reads and writes, by hand: decoding the parts of a
//! `CheckRequest` keygate decides on, encoding a `CheckResponse`. Field
//! numbers are the wire contract (envoy/service/auth/v3/external_auth.proto,
//! attribute_context.proto; envoy/config/core/v3/{address,base}.proto;
//! envoy/type/v3/http_status.proto; google/rpc/status.proto). A handful of
//! messages do not justify a protobuf code generator in the runtime tree.
//! Unknown fields are skipped, as protobuf requires.

/// What keygate needs of a `CheckRequest`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// `attributes.source.address.socket_address.address`.
    pub source: Option<String>,
    /// `attributes.request.http.method`.
    pub method: String,
    /// `attributes.request.http.path`: path and query, as on the request line.
    pub path: String,
    /// `attributes.request.http.host` (the `:authority`).
    pub host: String,
    /// `attributes.request.http.headers` (lowercase names), or
    /// `header_map` when Envoy sends raw headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Decodes a `CheckRequest`.
pub fn decode_check(message: &[u8]) -> Result<Check, Malformed> {
    let mut check = Check::default();
    for_each(message, |field, value| {
        if let (1, Value::Bytes(attributes)) = (field, value) {
            attribute_context(attributes, &mut check)?;
        }
        Ok(())
    })?;
    Ok(check)
}

fn attribute_context(message: &[u8], check: &mut Check) -> Result<(), Malformed> {
    for_each(message, |field, value| match (field, value) {
        // source: Peer { address: Address { socket_address: SocketAddress { address = 2 } } }
        (1, Value::Bytes(peer)) => {
            let address = first_bytes(peer, 1)?;
            let socket = address.map(|a| first_bytes(a, 1)).transpose()?.flatten();
            if let Some(ip) = socket.map(|s| first_bytes(s, 2)).transpose()?.flatten() {
                check.source = Some(text(ip)?);
            }
            Ok(())
        }
        // request: Request { http = 2 }
        (4, Value::Bytes(request)) => match first_bytes(request, 2)? {
            Some(http) => http_request(http, check),
            None => Ok(()),
        },
        _ => Ok(()),
    })
}

fn http_request(message: &[u8], check: &mut Check) -> Result<(), Malformed> {
    for_each(message, |field, value| {
        match (field, value) {
            (2, Value::Bytes(b)) => check.method = text(b)?,
            (3, Value::Bytes(entry)) => {
                let (key, value) = (first_bytes(entry, 1)?.unwrap_or(b""), first_bytes(entry, 2)?.unwrap_or(b""));
                check.headers.push((text(key)?, value.to_vec()));
            }
            (4, Value::Bytes(b)) => check.path = text(b)?,
            (5, Value::Bytes(b)) => check.host = text(b)?,
            // header_map: HeaderMap { repeated HeaderValue headers = 1 }, each
            // { key = 1, value = 2, raw_value = 3 }.
            (13, Value::Bytes(map)) => for_each(map, |field, value| {
                if let (1, Value::Bytes(header)) = (field, value) {
                    let key = first_bytes(header, 1)?.unwrap_or(b"");
                    let value = match first_bytes(header, 3)? {
                        Some(raw) => raw,
                        None => first_bytes(header, 2)?.unwrap_or(b""),
                    };
                    check.headers.push((text(key)?, value.to_vec()));
                }
                Ok(())
            })?,
            _ => {}
        }
        Ok(())
    })
}

/// One decoded field value.
enum Value<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

/// Calls `f` with each field of `message` in order.
fn for_each<'a>(
    mut message: &'a [u8],
    mut f: impl FnMut(u64, Value<'a>) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let value = match key & 7 {
            0 => {
                varint(&mut message)?;
                Value::Varint
            }
            1 => Value::Fixed.skip(&mut message, 8)?,
            2 => {
                let len = usize::try_from(varint(&mut message)?).map_err(|_| Malformed)?;
                if len > message.len() {
                    return Err(Malformed);
                }
                let (bytes, rest) = message.split_at(len);
                message = rest;
                Value::Bytes(bytes)
            }
            5 => Value::Fixed.skip(&mut message, 4)?,
            _ => return Err(Malformed),
        };
        f(key >> 3, value)?;
    }
    Ok(())
}

impl<'a> Value<'a> {
    fn skip(self, message: &mut &'a [u8], n: usize) -> Result<Self, Malformed> {
        *message = message.get(n..).ok_or(Malformed)?;
        Ok(self)
    }
}

/// The first length-delimited value of field `number`.
fn first_bytes(message: &[u8], number: u64) -> Result<Option<&[u8]>, Malformed> {
    let mut found = None;
    for_each(message, |field, value| {
        if let (true, None, Value::Bytes(b)) = (field == number, found, value) {
            found = Some(b);
        }
        Ok(())
    })?;
    Ok(found)
}

fn varint(message: &mut &[u8]) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for (i, byte) in message.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *message = &message[i + 1..];
            return Ok(value);
        }
    }
    Err(Malformed)
}

fn text(bytes: &[u8]) -> Result<String, Malformed> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Malformed)
}

/// A `CheckResponse`: allowed with headers to set on the upstream request,
/// or denied with the HTTP answer for the client.
pub enum Verdict<'a> {
    Ok { headers: &'a [(&'a str, &'a [u8])] },
    Denied { rpc_code: u32, status: u16, headers: &'a [(&'a str, &'a [u8])], body: &'a [u8] },
}

/// Encodes a `CheckResponse`.
pub fn encode_response(verdict: &Verdict<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    match verdict {
        Verdict::Ok { headers } => {
            // status = 1: google.rpc.Status { code = 1 } with code 0 is empty.
            message(&mut out, 1, &[]);
            // ok_response = 3: OkHttpResponse { repeated HeaderValueOption headers = 2 }
            message(&mut out, 3, &header_options(2, headers));
        }
        Verdict::Denied { rpc_code, status, headers, body } => {
            let mut rpc_status = Vec::new();
            uint(&mut rpc_status, 1, u64::from(*rpc_code));
            message(&mut out, 1, &rpc_status);
            // denied_response = 2: DeniedHttpResponse { status = 1 (HttpStatus
            // { code = 1 }), headers = 2, body = 3 }
            let mut http_status = Vec::new();
            uint(&mut http_status, 1, u64::from(*status));
            let mut denied = Vec::new();
            message(&mut denied, 1, &http_status);
            denied.extend(header_options(2, headers));
            message(&mut denied, 3, body);
            message(&mut out, 2, &denied);
        }
    }
    out
}

/// Repeated `HeaderValueOption { header = 1: HeaderValue { key = 1, value =
/// 2 }, append = 2: BoolValue }` as field `number`, each with `append`
/// false: the value replaces any the client sent.
fn header_options(number: u64, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in headers {
        let mut header = Vec::new();
        message(&mut header, 1, key.as_bytes());
        message(&mut header, 2, value);
        let mut option = Vec::new();
        message(&mut option, 1, &header);
        message(&mut option, 2, &[]);
        message(&mut out, number, &option);
    }
    out
}

fn message(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, number << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn uint(out: &mut Vec<u8>, number: u64, value: u64) {
    if value != 0 {
        put_varint(out, number << 3);
        put_varint(out, value);
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_garbled_input_is_malformed_not_a_panic() {
        for bad in [&[0x0a, 0x05, 0x01][..], &[0xff; 11], &[0x0b], &[0x09, 1, 2]] {
            assert_eq!(decode_check(bad), Err(Malformed), "{bad:?}");
        }
        assert_eq!(decode_check(&[]), Ok(Check::default()));
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(varint(&mut out.as_slice()), Ok(v));
        }
    }
}
