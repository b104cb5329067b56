//! An upstream that believes `X-Keygate-Identity` only once it has checked
//! it: the signature against keygate's JWKS, the algorithm, the expiry.
//! A sketch of what a service behind keygate does when the network between
//! them is not trusted (docs/proxy.md#signed-identity).
//!
//! ```text
//! cargo run --example identity_check -- 127.0.0.1:3000 http://127.0.0.1:9090/.well-known/jwks.json
//! ```
//!
//! Point keygate's `upstream.url` at it and turn on `proxy.identity_token`.
//! Each request is answered 200 with the verified claims as JSON, or 401
//! with the reason. The JWKS is fetched at start and again when a token
//! names a `kid` it does not know (a rotation), at most once a second (a
//! cooldown, so tokens with made-up `kid`s cannot make it hammer the JWKS).
//! Only keygate's own crates are used here; any JWT library that speaks
//! EdDSA (PyJWT, jose, jsonwebtoken) does the same job.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

/// Raw Ed25519 public keys by `kid`.
type PublicKeys = HashMap<String, Vec<u8>>;

/// The JWKS's keys, and when they were last fetched.
struct Keys {
    jwks_url: String,
    by_kid: Mutex<(PublicKeys, Option<Instant>)>,
}

impl Keys {
    /// The public key `kid`, fetching the JWKS again if it is unknown and
    /// the last fetch is more than a second old.
    async fn get(&self, kid: &str) -> anyhow::Result<Vec<u8>> {
        let stale = {
            let keys = self.by_kid.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            if let Some(key) = keys.0.get(kid) {
                return Ok(key.clone());
            }
            keys.1.is_none_or(|at| at.elapsed() > Duration::from_secs(1))
        };
        if stale {
            let fetched = fetch_jwks(&self.jwks_url).await?;
            let mut keys = self.by_kid.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            *keys = (fetched, Some(Instant::now()));
            if let Some(key) = keys.0.get(kid) {
                return Ok(key.clone());
            }
        }
        bail!("no key {kid} in the JWKS")
    }
}

/// `{ kid: raw Ed25519 public key }` of the JWKS at `url`.
async fn fetch_jwks(url: &str) -> anyhow::Result<PublicKeys> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client.get(url.parse().context("the JWKS URL")?).await.context("fetching the JWKS")?;
    let body = response.into_body().collect().await?.to_bytes();
    let jwks: Value = serde_json::from_slice(&body).context("the JWKS is not JSON")?;
    let mut keys = HashMap::new();
    for jwk in jwks["keys"].as_array().into_iter().flatten() {
        if jwk["kty"] == "OKP" && jwk["crv"] == "Ed25519" {
            if let (Some(kid), Some(x)) = (jwk["kid"].as_str(), jwk["x"].as_str()) {
                keys.insert(kid.to_owned(), URL_SAFE_NO_PAD.decode(x)?);
            }
        }
    }
    Ok(keys)
}

/// The claims of `token` once its signature, algorithm and lifetime hold.
async fn verify(keys: &Keys, token: &str) -> anyhow::Result<Value> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("not a compact JWS");
    };
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header)?)?;
    // Never trust the token's own choice of algorithm beyond this one.
    if header["alg"] != "EdDSA" {
        bail!("alg must be EdDSA");
    }
    let kid = header["kid"].as_str().context("no kid")?;
    let public = keys.get(kid).await?;
    // What was signed: `header.payload`, as it came.
    let signed = &token[..token.rfind('.').unwrap_or(0)];
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(signature)?)
        .map_err(|_| anyhow::anyhow!("bad signature"))?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    match claims["exp"].as_i64() {
        Some(exp) if exp > now => Ok(claims),
        Some(_) => bail!("expired"),
        None => bail!("no exp"),
    }
}

async fn answer(keys: Arc<Keys>, request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let token = request.headers().get("x-keygate-identity").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, body) = match token {
        None => (StatusCode::UNAUTHORIZED, json!({ "error": "no X-Keygate-Identity" })),
        Some(token) => match verify(&keys, &token).await {
            Ok(claims) => (StatusCode::OK, json!({ "verified": true, "claims": claims })),
            Err(e) => (StatusCode::UNAUTHORIZED, json!({ "error": e.to_string() })),
        },
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    Ok(response)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(jwks_url)) = (args.next(), args.next()) else {
        bail!("usage: identity_check <listen address> <JWKS URL>");
    };
    let listen: SocketAddr = listen.parse().context("the listen address")?;
    let keys = Arc::new(Keys { by_kid: Mutex::new((fetch_jwks(&jwks_url).await?, Some(Instant::now()))), jwks_url });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("checking X-Keygate-Identity on {listen}");
    loop {
        let (tcp, _) = listener.accept().await?;
        let keys = Arc::clone(&keys);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&keys), request));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}
