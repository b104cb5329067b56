//! The HTTP client deliveries go out with: hyper-util's pooled HTTP/1.1
//! client over the same rustls setup as `https://` upstreams (public roots),
//! with one deadline for the whole exchange. It reads at most a few KiB of
//! an answer: only its status matters.

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The header deliveries are signed in.
pub const SIGNATURE_HEADER: &str = "keygate-signature";

/// The most of a receiver's answer read (and thrown away) so its
/// connection can be reused.
const MAX_ANSWER: usize = 16 * 1024;

pub struct Sender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Sender {
    pub fn new(timeout: Duration) -> anyhow::Result<Sender> {
        let mut http = HttpConnector::new();
        // https:// receivers go through the TLS layer wrapped around this.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let tls = crate::tls::upstream_client_config(None)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(https);
        Ok(Sender { client, timeout })
    }

    /// POSTs `body` to `url` signed with `signature`: the answer's status,
    /// or why there was none.
    pub async fn post(&self, url: &str, body: Bytes, signature: &str) -> Result<StatusCode, String> {
        let request = Request::post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("keygate-webhooks/", env!("CARGO_PKG_VERSION")))
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(body))
            .map_err(|e| format!("invalid request: {e}"))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| describe(&e))?;
            let status = response.status();
            // Whatever the body holds (or however it fails), the status is
            // the answer.
            let _ = Limited::new(response.into_body(), MAX_ANSWER).collect().await;
            Ok(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }
}

/// The error and its causes, innermost last: hyper-util's own message alone
/// ("client error (Connect)") does not say what went wrong.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
