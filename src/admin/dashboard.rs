//! The web dashboard at `/`: a handful of static files compiled into the
//! binary (no separate server, no CDN: the admin host may have no internet),
//! and the security headers every admin response carries.
//!
//! The page holds no data and needs no token; it signs in from the browser
//! with an admin token kept in session storage and sent as a Bearer header
//! to `/v1`, so there is no cookie and no CSRF to defend against. It must
//! not grow server-side templating: everything it shows comes from the API
//! and is rendered as text by the scripts.

use std::sync::LazyLock;

use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One file of the dashboard.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset { path: $path, content_type: $type, body: include_bytes!(concat!("dashboard/", $file)) }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("/", "index.html", HTML),
    asset!("/app.css", "app.css", CSS),
    asset!("/app.js", "app.js", JS),
    asset!("/js/api.js", "js/api.js", JS),
    asset!("/js/ui.js", "js/ui.js", JS),
    asset!("/js/format.js", "js/format.js", JS),
    asset!("/js/keys.js", "js/keys.js", JS),
    asset!("/js/forms.js", "js/forms.js", JS),
    asset!("/js/detail.js", "js/detail.js", JS),
    asset!("/js/chart.js", "js/chart.js", JS),
    asset!("/js/plans.js", "js/plans.js", JS),
    asset!("/js/webhooks.js", "js/webhooks.js", JS),
    asset!("/favicon.svg", "favicon.svg", "image/svg+xml"),
];

/// Strong validators, so a browser revalidates (`no-cache`) and gets a 304
/// instead of the file: the names carry no version, and a new binary must
/// never run with yesterday's scripts.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let hash = blake3::hash(a.body).to_hex();
            HeaderValue::from_str(&format!("\"{}\"", &hash[..32])).unwrap_or(HeaderValue::from_static("\"0\""))
        })
        .collect()
});

/// The dashboard's routes. Not under `/v1` and not in the OpenAPI document:
/// they serve files, not API operations.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().enumerate().fold(Router::new(), |router, (i, asset)| {
        router.route(asset.path, get(move |headers: HeaderMap| async move { serve(i, &headers) }))
    })
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let etag = ETAGS[i].clone();
    let cache = HeaderValue::from_static("no-cache");
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag.to_str().unwrap_or_default() || t.trim() == "*"));
    if fresh {
        return (StatusCode::NOT_MODIFIED, [(ETAG, etag), (CACHE_CONTROL, cache)]).into_response();
    }
    ([(CONTENT_TYPE, HeaderValue::from_static(asset.content_type)), (ETAG, etag), (CACHE_CONTROL, cache)], asset.body)
        .into_response()
}

/// The policy of every admin response. Scripts and styles only from this
/// origin (no inline code, so an injected string can never run), no
/// framing, no form posts, and API calls only back to this origin.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static SECURITY_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (HeaderName::from_static("content-security-policy"), HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
    (HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff")),
    (HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer")),
    (HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY")),
];

/// Middleware adding the security headers to every response, whatever
/// produced it (API, dashboard, `/metrics`, errors, the fallback).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in &SECURITY_HEADERS {
        headers.insert(name.clone(), value.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_known_type_and_a_body() {
        for a in ASSETS {
            assert!([HTML, JS, CSS, "image/svg+xml"].contains(&a.content_type), "{}", a.path);
            assert!(!a.body.is_empty(), "{}", a.path);
        }
    }

    #[test]
    fn no_asset_sets_html_from_strings() {
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(a.body).expect("utf-8");
            for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
                assert!(!text.contains(sink), "{} uses {sink}", a.path);
            }
        }
    }
}
