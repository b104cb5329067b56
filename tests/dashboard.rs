//! The web dashboard on the admin router: its files are served from the
//! binary with the right types, and every admin response (dashboard, API,
//! errors) carries the security headers. The browser tests in `e2e/` drive
//! the page itself.

mod kit;

use http::{Method, StatusCode};
use kit::{Admin, TOKEN};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn header<'a>(res: &'a http::Response<bytes::Bytes>, name: &str) -> &'a str {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

fn assert_security_headers(res: &http::Response<bytes::Bytes>, what: &str) {
    assert_eq!(header(res, "content-security-policy"), CSP, "{what}");
    assert_eq!(header(res, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(res, "referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header(res, "x-frame-options"), "DENY", "{what}");
}

#[tokio::test]
async fn root_serves_the_dashboard_html_with_the_security_headers() {
    let admin = Admin::new().await;
    let res = admin.raw(Method::GET, "/", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&res, "cache-control"), "no-cache");
    assert_security_headers(&res, "/");
    let html = std::str::from_utf8(res.body()).expect("utf-8");
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains(r#"<script type="module" src="/app.js"></script>"#));
    assert!(!html.contains("<script>"), "no inline script: the CSP would refuse it");
    assert!(!html.contains("style="), "no inline style: the CSP would refuse it");
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from another origin");
}

#[tokio::test]
async fn scripts_styles_and_icon_are_served_with_their_types() {
    let admin = Admin::new().await;
    for (path, ty) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/js/api.js", "text/javascript; charset=utf-8"),
        ("/js/keys.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let res = admin.raw(Method::GET, path, &[]).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&res, "content-type"), ty, "{path}");
        assert!(!res.body().is_empty(), "{path}");
        assert_security_headers(&res, path);
    }
}

#[tokio::test]
async fn an_unchanged_file_is_revalidated_with_its_etag() {
    let admin = Admin::new().await;
    let first = admin.raw(Method::GET, "/app.js", &[]).await;
    let etag = header(&first, "etag").to_owned();
    let again = admin.raw(Method::GET, "/app.js", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.body().is_empty());
    let other = admin.raw(Method::GET, "/app.js", &[("if-none-match", "\"stale\"")]).await;
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test]
async fn api_responses_and_errors_carry_the_security_headers_too() {
    let admin = Admin::new().await;
    let auth = format!("Bearer {TOKEN}");
    let cases = [
        (Method::GET, "/v1/accounts", Some(auth.as_str()), StatusCode::OK),
        (Method::GET, "/v1/keys", None, StatusCode::UNAUTHORIZED),
        (Method::GET, "/healthz", None, StatusCode::OK),
        (Method::GET, "/openapi.json", None, StatusCode::OK),
        (Method::GET, "/no/such/page", None, StatusCode::NOT_FOUND),
        (Method::POST, "/", None, StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (method, path, token, status) in cases {
        let headers: Vec<(&str, &str)> = token.map(|t| ("authorization", t)).into_iter().collect();
        let res = admin.raw(method.clone(), path, &headers).await;
        assert_eq!(res.status(), status, "{method} {path}");
        assert_security_headers(&res, path);
    }
}

#[tokio::test]
async fn metrics_on_the_running_gateway_carry_the_security_headers() {
    let gw = kit::Gateway::start().await;
    let mut stream = tokio::net::TcpStream::connect(gw.gateway.admin_addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "{head}");
    gw.gateway.stop().await;
}
