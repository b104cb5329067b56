//! The few Redis commands the fleet limiter sends, spoken in RESP over one
//! TCP connection: `redis://[user[:password]@]host[:port][/db]` parsed and
//! checked for the config, connect with AUTH and SELECT, and one command at a
//! time with its reply.
//!
//! Why not the `redis` crate: with minimal features it still pulls eight
//! crates (one under a license `deny.toml` does not allow) for what is here
//! about two hundred lines. This module knows nothing of rate limits; it
//! never logs the password (`RedisUrl`'s `Debug` hides it).

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A parsed `redis://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub db: u32,
    user: Option<String>,
    password: Option<String>,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl RedisUrl {
    /// Parses `redis://[user[:password]@]host[:port][/db]`; the error says
    /// what is wrong without repeating the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let Some(rest) = url.strip_prefix("redis://") else {
            return Err("must be a redis:// URL (TLS and unix sockets are not supported)".into());
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, db)) => (h, db.parse::<u32>().map_err(|_| "the database after / must be a number".to_owned())?),
            None => (rest, 0),
        };
        if hostport.contains(['?', '#']) || rest.contains(['?', '#']) {
            return Err("must not have a query string or fragment".into());
        }
        let (host, port) = match hostport.strip_prefix('[') {
            // [::1]:6379
            Some(v6) => match v6.split_once(']') {
                Some((h, "")) => (h, 6379),
                Some((h, p)) => (h, port(p.strip_prefix(':').unwrap_or("x"))?),
                None => return Err("unclosed [ in the host".into()),
            },
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, port(p)?),
                None => (hostport, 6379),
            },
        };
        if host.is_empty() {
            return Err("has no host".into());
        }
        let decode = |s: &str| percent_decode(s).ok_or_else(|| "bad %-escape in the user or password".to_owned());
        let (user, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) => ((!u.is_empty()).then(|| decode(u)).transpose()?, Some(decode(p)?)),
                None => ((!a.is_empty()).then(|| decode(a)).transpose()?, None),
            },
        };
        Ok(RedisUrl { host: host.to_owned(), port, db, user, password })
    }
}

fn port(p: &str) -> Result<u16, String> {
    p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| "the port must be a number from 1 to 65535".to_owned())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A reply, as far as this client needs to read one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("redis: {0}")]
    Io(#[from] std::io::Error),
    /// An error reply (`-ERR …`, `-NOSCRIPT …`).
    #[error("redis answered an error: {0}")]
    Server(String),
    #[error("redis: malformed reply")]
    Protocol,
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

/// One connection; commands go one at a time.
pub struct Connection {
    stream: BufReader<TcpStream>,
    out: Vec<u8>,
}

impl Connection {
    /// Connects, authenticates and selects the database, all within `limit`.
    pub async fn open(url: &RedisUrl, limit: Duration) -> Result<Connection, RespError> {
        let connect = TcpStream::connect((url.host.as_str(), url.port));
        let tcp = tokio::time::timeout(limit, connect).await.map_err(|_| RespError::Timeout(limit))??;
        tcp.set_nodelay(true)?;
        let mut conn = Connection { stream: BufReader::new(tcp), out: Vec::with_capacity(4096) };
        match (&url.user, &url.password) {
            (Some(u), Some(p)) => conn.call(&[b"AUTH", u.as_bytes(), p.as_bytes()], limit).await.map(drop)?,
            (None, Some(p)) => conn.call(&[b"AUTH", p.as_bytes()], limit).await.map(drop)?,
            _ => {}
        }
        if url.db != 0 {
            conn.call(&[b"SELECT", url.db.to_string().as_bytes()], limit).await?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply; an error reply is `Server`.
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A], limit: Duration) -> Result<Reply, RespError> {
        self.out.clear();
        encode(&mut self.out, args);
        let exchange = async {
            self.stream.get_mut().write_all(&self.out).await?;
            read_reply(&mut self.stream).await
        };
        tokio::time::timeout(limit, exchange).await.map_err(|_| RespError::Timeout(limit))?
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Largest bulk string or array accepted: the replies here are small, and a
/// broken peer must not make the gateway allocate gigabytes.
const MAX_LEN: i64 = 64 * 1024 * 1024;

async fn read_line(r: &mut BufReader<TcpStream>) -> Result<String, RespError> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(RespError::Protocol);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| RespError::Protocol)
}

fn read_reply(r: &mut BufReader<TcpStream>) -> futures_util::future::BoxFuture<'_, Result<Reply, RespError>> {
    Box::pin(async move {
        let line = read_line(r).await?;
        let (kind, rest) = line.split_at_checked(1).ok_or(RespError::Protocol)?;
        let number = || rest.parse::<i64>().map_err(|_| RespError::Protocol);
        match kind {
            "+" => Ok(Reply::Status(rest.to_owned())),
            "-" => Err(RespError::Server(rest.to_owned())),
            ":" => Ok(Reply::Int(number()?)),
            "$" => match number()? {
                -1 => Ok(Reply::Bulk(None)),
                n if (0..=MAX_LEN).contains(&n) => {
                    let mut buf = vec![0; n as usize + 2];
                    r.read_exact(&mut buf).await?;
                    buf.truncate(n as usize);
                    Ok(Reply::Bulk(Some(buf)))
                }
                _ => Err(RespError::Protocol),
            },
            "*" => match number()? {
                -1 => Ok(Reply::Array(Vec::new())),
                n if (0..=MAX_LEN).contains(&n) => {
                    let mut items = Vec::with_capacity((n as usize).min(4096));
                    for _ in 0..n {
                        items.push(read_reply(r).await?);
                    }
                    Ok(Reply::Array(items))
                }
                _ => Err(RespError::Protocol),
            },
            _ => Err(RespError::Protocol),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_name_their_fault() {
        let u = RedisUrl::parse("redis://127.0.0.1:6379/0").expect("valid");
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6379, 0));
        let u = RedisUrl::parse("redis://cache").expect("valid");
        assert_eq!((u.host.as_str(), u.port, u.db), ("cache", 6379, 0));
        let u = RedisUrl::parse("redis://app:p%40ss@[::1]:7000/3").expect("valid");
        assert_eq!((u.host.as_str(), u.port, u.db), ("::1", 7000, 3));
        assert_eq!((u.user.as_deref(), u.password.as_deref()), (Some("app"), Some("p@ss")));
        assert!(!format!("{u:?}").contains("p@ss"), "Debug hides the password");
        let u = RedisUrl::parse("redis://:secret@h/").expect("valid");
        assert_eq!((u.user, u.password.as_deref()), (None, Some("secret")));
        for bad in [
            "http://h:6379",
            "rediss://h",
            "redis://",
            "redis://h:0",
            "redis://h:99999",
            "redis://h:x",
            "redis://h/db",
            "redis://h?x=1",
            "redis://[::1",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
        let e = RedisUrl::parse("rediss://u:hunter2@h").expect_err("tls");
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[&b"GET"[..], b"k"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
