//! Forward auth (`authz.listen`, docs/authz.md), black-box: a real proxy
//! and forward-auth listener on 127.0.0.1:0 over the kit's keys, asked the
//! way an ingress asks. Each refusal is compared with the proxy's own
//! answer to the same original request; the spoofing tests try to get a
//! decision about something other than the request the ingress forwards.
//! `authz/ingress.rs` puts real nginx and Caddy in front;
//! `authz/recorded.rs` sends the exact requests of Traefik's `forwardAuth`
//! and Envoy's HTTP `ext_authz`.

mod kit;

#[path = "authz/grpc.rs"]
mod grpc;
#[path = "authz/ingress.rs"]
mod ingress;
#[path = "authz/recorded.rs"]
mod recorded;

use http::{Method, Request, StatusCode};
use keygate::config::QuotaConfig;
use keygate::keys::{generate, KeyPolicy, Restrictions, RouteRule, Secret};
use kit::http::{empty, fetch, send, Reply};
use kit::upstream::Upstream;
use kit::{AdminCalls, ProxyGateway, TestGateway};

/// A proxy with forward auth on, and its upstream.
async fn gateway(edit: impl FnOnce(&mut keygate::config::Config)) -> (Upstream, ProxyGateway) {
    let upstream = Upstream::start().await;
    let gw = TestGateway::new()
        .upstream(upstream.url(""))
        .config(|c| c.authz.listen = Some("127.0.0.1:0".parse().expect("addr")))
        .config(edit)
        .proxy()
        .await;
    (upstream, gw)
}

/// An auth subrequest for `method uri` with `key` in `X-API-Key` and `extra` headers.
async fn ask(gw: &ProxyGateway, key: Option<&str>, method: &str, uri: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("x-forwarded-method", method), ("x-forwarded-uri", uri)];
    headers.extend(key.map(|k| ("x-api-key", k)));
    headers.extend_from_slice(extra);
    fetch(Method::GET, &gw.authz_url("/auth"), &headers, "").await
}

/// The same original request sent to the proxy itself.
async fn through_proxy(gw: &ProxyGateway, key: Option<&str>, method: Method, uri: &str) -> Reply {
    let mut req = Request::builder().method(method).uri(gw.url(uri));
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    send(req.body(empty()).expect("request")).await
}

fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    assert_eq!(reply.code(), code);
}

#[tokio::test]
async fn an_allowed_request_is_200_with_the_identity_and_no_body() {
    let (upstream, gw) = gateway(|_| {}).await;
    let r = ask(&gw, Some(gw.keys.read.expose()), "GET", "/v1/things?page=2", &[("x-keygate-key-id", "forged")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty(), "{:?}", r.body);
    assert_eq!(r.header("x-keygate-key-id"), Some("key_read"));
    assert_eq!(r.header("x-keygate-account-id"), Some("acc_main"));
    assert_eq!(r.header("x-keygate-permission"), Some("read"));
    assert!(r.header("x-request-id").is_some());
    assert_eq!(upstream.hits(), 0, "forward auth never calls the upstream");
}

#[tokio::test]
async fn every_refusal_is_the_proxys_own_answer() {
    let (_upstream, gw) = gateway(|_| {}).await;
    let k = &gw.keys;
    let cases: Vec<(Option<&str>, Method, u16, &str)> = vec![
        (None, Method::GET, 401, "missing_key"),
        (Some("kg_live_0000000000000000000000000000000000"), Method::GET, 401, "invalid_key"),
        (Some(k.expired.expose()), Method::GET, 401, "key_expired"),
        (Some(k.disabled.expose()), Method::GET, 401, "key_disabled"),
        (Some(k.revoked.expose()), Method::GET, 401, "key_revoked"),
        (Some(k.no_access.expose()), Method::GET, 403, "api_access_disabled"),
        (Some(k.read.expose()), Method::DELETE, 403, "insufficient_permission"),
    ];
    for (key, method, status, code) in cases {
        let proxied = through_proxy(&gw, key, method.clone(), "/v1/x").await;
        let asked = ask(&gw, key, method.as_str(), "/v1/x", &[]).await;
        assert_problem(&proxied, status, code);
        assert_problem(&asked, status, code);
        assert_eq!(asked.header("www-authenticate"), proxied.header("www-authenticate"), "{code}");
        let (mut a, mut p) = (asked.json(), proxied.json());
        for body in [&mut a, &mut p] {
            body.as_object_mut().expect("object").remove("request_id");
        }
        assert_eq!(a, p, "{code}");
    }
    let r = ask(&gw, None, "GET", "/", &[]).await;
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"keygate\""));
}

#[tokio::test]
async fn the_original_method_and_uri_are_decided_not_the_subrequests() {
    let (_upstream, gw) = gateway(|_| {}).await;
    let read = gw.keys.read.expose();
    // The subrequest is a GET; the original is a DELETE.
    assert_problem(&ask(&gw, Some(read), "DELETE", "/v1/x", &[]).await, 403, "insufficient_permission");
    let original = [("x-original-method", "POST"), ("x-original-uri", "/v1/x")];
    let r = fetch(Method::GET, &gw.authz_url("/"), &[original[0], original[1], ("x-api-key", read)], "").await;
    assert_problem(&r, 403, "insufficient_permission");
    let r = fetch(
        Method::POST,
        &gw.authz_url("/"),
        &[("x-original-method", "GET"), ("x-original-uri", "/v1/x"), ("x-api-key", read)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_cannot_put_its_own_method_or_uri_beside_the_ingresss() {
    let (_upstream, gw) = gateway(|_| {}).await;
    let read = gw.keys.read.expose();
    // The ingress sets X-Original-*; the client adds the other spelling.
    let spoofs: [&[(&str, &str)]; 2] = [
        &[("x-original-method", "DELETE"), ("x-forwarded-method", "GET"), ("x-original-uri", "/v1/x")],
        &[("x-original-method", "GET"), ("x-original-uri", "/admin"), ("x-forwarded-uri", "/v1/x")],
    ];
    for headers in spoofs {
        let mut all = headers.to_vec();
        all.push(("x-api-key", read));
        let r = fetch(Method::GET, &gw.authz_url("/"), &all, "").await;
        assert_problem(&r, 400, "bad_request");
        assert!(r.json()["detail"].as_str().expect("detail").contains("different"), "{}", r.json());
    }
}

#[tokio::test]
async fn a_missing_or_garbled_original_request_is_a_clear_400() {
    let (_upstream, gw) = gateway(|_| {}).await;
    let key = gw.keys.write.expose();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("x-forwarded-uri", "/a")], "X-Forwarded-Method"),
        (&[("x-forwarded-method", "GET")], "X-Forwarded-Uri"),
        (&[("x-forwarded-method", "G(E)T"), ("x-forwarded-uri", "/a")], "not an HTTP method"),
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "https://evil.example/a")], "starting with /"),
        (&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a b")], "starting with /"),
    ];
    for (headers, says) in cases {
        let mut req = Request::builder().uri(gw.authz_url("/")).header("x-api-key", key);
        for (name, value) in headers {
            req = req.header(*name, http::HeaderValue::from_bytes(value.as_bytes()).expect("value"));
        }
        let r = send(req.body(empty()).expect("request")).await;
        assert_problem(&r, 400, "bad_request");
        assert!(r.json()["detail"].as_str().expect("detail").contains(says), "{says}: {}", r.json());
    }
}

#[tokio::test]
async fn an_original_grpc_request_is_refused_with_a_4xx_never_a_grpc_200() {
    let (_upstream, gw) = gateway(|_| {}).await;
    let r = ask(&gw, None, "POST", "/pkg.Svc/Call", &[("content-type", "application/grpc")]).await;
    assert_problem(&r, 401, "missing_key");
    assert!(r.header("grpc-status").is_none());
}

#[tokio::test]
async fn the_key_may_come_from_the_original_query_string() {
    let (_upstream, gw) = gateway(|c| c.proxy.key_query_param = Some("api_key".into())).await;
    let uri = format!("/v1/x?api_key={}", gw.keys.write.expose());
    let r = ask(&gw, None, "GET", &uri, &[]).await;
    assert_eq!((r.status, r.header("x-keygate-key-id")), (StatusCode::OK, Some("key_write")));
}

#[tokio::test]
async fn rate_limits_are_shared_with_the_proxy_and_shown_in_ratelimit_headers() {
    let (_upstream, gw) =
        gateway(|c| c.limits.default_per_key = Some(QuotaConfig { requests: 3, per_seconds: 60 })).await;
    let key = gw.keys.write.expose();
    assert_eq!(through_proxy(&gw, Some(key), Method::GET, "/").await.status, StatusCode::OK);
    let r = ask(&gw, Some(key), "GET", "/", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("ratelimit-policy"), Some("\"key\";q=3;w=60"));
    assert!(r.header("ratelimit").expect("ratelimit").starts_with("\"key\";r=1;"), "{:?}", r.header("ratelimit"));
    assert_eq!(ask(&gw, Some(key), "GET", "/", &[]).await.status, StatusCode::OK);
    let refused = ask(&gw, Some(key), "GET", "/", &[]).await;
    assert_problem(&refused, 429, "rate_limited");
    assert!(refused.header("retry-after").is_some() && refused.header("ratelimit").is_some());
    assert_problem(&through_proxy(&gw, Some(key), Method::GET, "/").await, 429, "rate_limited");
}

/// A proxy whose one extra key is limited to `ips` and `routes`.
async fn restricted(ips: &[&str], routes: Vec<RouteRule>, trusted: &[&str]) -> (ProxyGateway, Secret) {
    let secret = generate("kg_live");
    let ips: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
    let restrictions = Restrictions::parse(&ips, &routes).expect("restrictions").expect("some");
    let row = KeyPolicy::builder("key_limited", "acc_main").restrictions((*restrictions).clone()).row(secret.hash());
    let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
    let upstream = Upstream::start().await;
    let gw = TestGateway::new()
        .upstream(upstream.url(""))
        .config(move |c| {
            c.authz.listen = Some("127.0.0.1:0".parse().expect("addr"));
            c.proxy.trusted_proxies = trusted;
        })
        .key(row)
        .proxy()
        .await;
    (gw, secret)
}

#[tokio::test]
async fn an_untrusted_peer_cannot_spoof_the_client_address() {
    let (gw, key) = restricted(&["203.0.113.7/32"], vec![], &[]).await;
    let spoofed = [("x-forwarded-for", "203.0.113.7"), ("x-real-ip", "203.0.113.7"), ("forwarded", "for=203.0.113.7")];
    assert_problem(&ask(&gw, Some(key.expose()), "GET", "/", &spoofed).await, 403, "ip_not_allowed");

    // The same header from a trusted ingress is the client's address.
    let (gw, key) = restricted(&["203.0.113.7/32"], vec![], &["127.0.0.1/32"]).await;
    let r = ask(&gw, Some(key.expose()), "GET", "/", &[("x-forwarded-for", "203.0.113.7")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = ask(&gw, Some(key.expose()), "GET", "/", &[("x-forwarded-for", "203.0.113.7, 198.51.100.9")]).await;
    assert_problem(&r, 403, "ip_not_allowed");
}

#[tokio::test]
async fn x_forwarded_host_counts_only_from_a_trusted_ingress() {
    let route = RouteRule { path_prefix: "/".into(), methods: vec![], host: Some("api.example.com".into()) };
    let host = [("x-forwarded-host", "api.example.com")];
    let (gw, key) = restricted(&[], vec![route.clone()], &[]).await;
    assert_problem(&ask(&gw, Some(key.expose()), "GET", "/", &host).await, 403, "route_not_allowed");
    let (gw, key) = restricted(&[], vec![route], &["127.0.0.1/32"]).await;
    assert_eq!(ask(&gw, Some(key.expose()), "GET", "/", &host).await.status, StatusCode::OK);
    let r = ask(&gw, Some(key.expose()), "GET", "/", &[("x-forwarded-host", "other.example.com")]).await;
    assert_problem(&r, 403, "route_not_allowed");
}

#[tokio::test]
async fn usage_and_metrics_count_forward_auth_like_the_proxy() {
    let gw = TestGateway::new()
        .config(|c| {
            c.authz.listen = Some("127.0.0.1:0".parse().expect("addr"));
            c.usage.flush_interval_ms = 600_000;
        })
        .start()
        .await;
    let authz = gw.gateway.authz_addr.expect("forward auth on");
    let acc = gw.admin.account("A").await;
    let (id, secret) = gw.admin.key(&acc, "read").await;
    let headers = [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/v1/x"), ("x-api-key", secret.as_str())];
    for _ in 0..4 {
        assert_eq!(fetch(Method::GET, &format!("http://{authz}/"), &headers, "").await.status, StatusCode::OK);
    }
    let refused = [("x-forwarded-method", "POST"), ("x-forwarded-uri", "/v1/x"), ("x-api-key", secret.as_str())];
    assert_eq!(fetch(Method::GET, &format!("http://{authz}/"), &refused, "").await.status, StatusCode::FORBIDDEN);
    gw.gateway.flusher.flush().await.expect("flush");
    let key = gw.admin.get(&format!("/v1/keys/{id}")).await.expect("key");
    assert_eq!(key["usage_count"], 4, "{key}");
    let scrape = fetch(Method::GET, &format!("http://{}/metrics", gw.gateway.admin_addr), &[], "").await;
    let text = String::from_utf8_lossy(&scrape.body);
    let line = |outcome: &str| {
        text.lines()
            .find(|l| l.starts_with("keygate_key_requests_total{") && l.contains(&id) && l.contains(outcome))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
    };
    assert_eq!(line("\"allowed\"").as_deref(), Some("4"), "{text}");
    assert_eq!(line("\"insufficient_permission\"").as_deref(), Some("1"), "{text}");
    gw.gateway.stop().await;
}
