//! A small JSON-over-HTTP client for the admin API, used by the CLI subcommands.
//!
//! It owns the transport (hyper-util's pooled client over rustls, `http://` and
//! `https://`), the `Authorization: Bearer` header, and the translation of every
//! failure into a [`CliError`] that knows its exit code. It must not print
//! anything (the caller decides what goes to stdout and stderr) and never puts
//! the admin token in an error, a log line or a `Debug` output.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The whole exchange is bounded so that a hung admin listener cannot hang a script.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Admin answers are small JSON documents; anything larger is a wrong URL.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Everything that can stop a CLI command, each with its exit code.
#[derive(Debug)]
pub enum CliError {
    /// Bad invocation found after argument parsing (no token, missing `--yes`, …).
    Usage(String),
    /// The admin API could not be reached at all.
    Unreachable { url: String, cause: String },
    /// The admin API refused the request (4xx).
    Refused(Box<Problem>),
    /// The admin API answered, and the answer is no: `keys verify` of a
    /// secret that would be refused. Same exit code as a refusal, so
    /// `if keygate keys verify …` reads naturally in a script.
    NotValid(String),
    /// The admin API failed (5xx) or answered something that is not JSON.
    Server(String),
}

impl CliError {
    /// The process exit code documented in the module doc of `cli`.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused(_) | CliError::NotValid(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::Server(_) => 4,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(msg) | CliError::Server(msg) | CliError::NotValid(msg) => f.write_str(msg),
            CliError::Unreachable { url, cause } => {
                write!(f, "cannot reach the admin API at {url}: {cause}")
            }
            CliError::Refused(problem) => write!(f, "{problem}"),
        }
    }
}

/// The admin API's problem document, read by `Problem::from_response`.
pub type Problem = crate::contract::Problem<'static>;

/// A connection to one admin API with one token.
pub struct AdminClient {
    base: String,
    token: HeaderValue,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Hand-written so that the token can never reach a debug print.
impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl AdminClient {
    /// Checks the URL and token up front so that a typo is a usage error (exit 2),
    /// not a confusing transport failure.
    pub fn new(admin_url: &str, token: Option<&str>) -> Result<AdminClient, CliError> {
        let token = match token.map(str::trim) {
            Some(t) if !t.is_empty() => t,
            _ => return Err(CliError::Usage("no admin token: pass --token or set KEYGATE_ADMIN_TOKEN".into())),
        };
        let mut token = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| CliError::Usage("the admin token contains characters not allowed in a header".into()))?;
        token.set_sensitive(true);

        let base = admin_url.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|e| CliError::Usage(format!("invalid --admin-url {admin_url:?}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(CliError::Usage(format!(
                "invalid --admin-url {admin_url:?}: expected http://host:port or https://host:port"
            )));
        }
        if uri.query().is_some() {
            return Err(CliError::Usage(format!("invalid --admin-url {admin_url:?}: must not have a query")));
        }

        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| CliError::Usage(format!("TLS set-up failed: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(AdminClient { base, token, http })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::DELETE, path, None).await
    }

    /// Sends one request and returns the JSON answer (`Null` for an empty 2xx body).
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let (status, bytes) = self.request(method, path, body).await?;
        let url = format!("{}{path}", self.base);
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                CliError::Server(format!("{status} from {url} is not JSON ({e}); is --admin-url the admin port?"))
            });
        }
        let problem = Problem::from_response(status, &bytes);
        if status.is_server_error() {
            Err(CliError::Server(problem.to_string()))
        } else {
            Err(CliError::Refused(Box::new(problem)))
        }
    }

    /// Sends one request and returns the status and body as they came, error
    /// answers included; only a failed exchange is an error. For callers that
    /// look at refusals themselves (the test kit checks status and `code`).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder()
            .method(method)
            .uri(&url)
            .header(AUTHORIZATION, self.token.clone())
            .header(ACCEPT, "application/json, application/problem+json")
            .header(USER_AGENT, concat!("keygate-cli/", env!("CARGO_PKG_VERSION")));
        let payload = match body {
            Some(value) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| CliError::Usage(format!("cannot build a request for {url}: {e}")))?;

        let unreachable = |cause: String| CliError::Unreachable { url: self.base.clone(), cause };
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request)).await {
            Err(_) => return Err(unreachable(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))),
            Ok(Err(e)) => return Err(unreachable(root_cause(&e))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let bytes =
            match tokio::time::timeout(REQUEST_TIMEOUT, Limited::new(response.into_body(), MAX_BODY_BYTES).collect())
                .await
            {
                Err(_) => return Err(unreachable("the answer stalled".into())),
                Ok(Err(e)) => return Err(CliError::Server(format!("reading the answer from {url} failed: {e}"))),
                Ok(Ok(collected)) => collected.to_bytes(),
            };
        Ok((status, bytes))
    }
}

/// The innermost error says what went wrong ("Connection refused"); the
/// wrappers around it ("client error (Connect)") add nothing for a user.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Builds `?a=1&b=x` from the pairs that are set; empty when none are.
pub fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={}", encode_query_value(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_documented_table() {
        let refused = CliError::Refused(Box::new(Problem::from_response(http::StatusCode::UNAUTHORIZED, b"")));
        assert_eq!(refused.exit_code(), 1);
        assert_eq!(CliError::NotValid("key_revoked".into()).exit_code(), 1);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Unreachable { url: "u".into(), cause: "c".into() }.exit_code(), 3);
        assert_eq!(CliError::Server("x".into()).exit_code(), 4);
    }

    #[test]
    fn missing_or_blank_token_is_a_usage_error() {
        for token in [None, Some(""), Some("   ")] {
            let err = AdminClient::new("http://127.0.0.1:9090", token).expect_err("no token");
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("KEYGATE_ADMIN_TOKEN"));
        }
    }

    #[test]
    fn bad_admin_urls_are_usage_errors() {
        for url in ["127.0.0.1:9090", "ftp://host", "http://", "http://h/?x=1"] {
            let err = AdminClient::new(url, Some("t")).expect_err(url);
            assert_eq!(err.exit_code(), 2, "{url}");
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let client = AdminClient::new("https://admin.example/", Some("very-secret-token")).expect("client");
        let shown = format!("{client:?}");
        assert!(!shown.contains("very-secret-token"), "{shown}");
        assert!(shown.contains("https://admin.example"), "{shown}");
    }

    #[test]
    fn query_values_are_percent_encoded_and_unset_ones_skipped() {
        let q = query_string(&[("q", Some("a b&c/é".into())), ("limit", None), ("status", Some("active".into()))]);
        assert_eq!(q, "?q=a%20b%26c%2F%C3%A9&status=active");
        assert_eq!(query_string(&[("q", None)]), "");
    }
}
