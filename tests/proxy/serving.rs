//! Serving (docs/proxy.md#tls-and-shutdown): TLS on the proxy listener, certificates reloaded
//! without restart, and a graceful shutdown that lets in-flight requests
//! finish.

use std::path::Path;
use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use rustls::pki_types::CertificateDer;

use crate::gateway;
use crate::kit::http::{empty, raw, send, send_tls, TestBody};
use crate::kit::upstream::Upstream;
use crate::kit::{config, ProxyGateway};

fn write_certificate(dir: &Path) -> CertificateDer<'static> {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    // Key first, then the certificate, each replaced atomically, as
    // certificate tools do.
    for (name, pem) in [("key.pem", pair.key_pair.serialize_pem()), ("cert.pem", pair.cert.pem())] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, pem).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
    }
    pair.cert.der().clone()
}

async fn tls_gateway(dir: &Path) -> (ProxyGateway, CertificateDer<'static>) {
    let first = write_certificate(dir);
    let upstream = Upstream::start().await;
    let tls = keygate::config::TlsConfig {
        cert_file: dir.join("cert.pem").display().to_string(),
        key_file: dir.join("key.pem").display().to_string(),
    };
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.tls = Some(tls.clone());
    let shutdown = keygate::shutdown::Shutdown::new();
    let server =
        keygate::tls::server_config(&tls, keygate::tls::Alpn::Http2AndHttp1, Duration::from_millis(100), &shutdown)
            .expect("tls config");
    (ProxyGateway::start_tls(cfg, Some(server)).await, first)
}

fn request(gw: &ProxyGateway) -> Request<TestBody> {
    Request::get("/tls")
        .header("host", "localhost")
        .header("x-api-key", gw.keys.write.expose())
        .body(empty())
        .expect("request")
}

#[tokio::test]
async fn tls_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, cert) = tls_gateway(dir.path()).await;
    let (reply, presented) = send_tls(gw.addr, std::slice::from_ref(&cert), request(&gw)).await.expect("TLS exchange");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(presented, cert);
    assert_eq!(reply.json()["headers"]["x-forwarded-proto"][0], "https");
    // A plain-text client on the TLS port fails its own exchange and the listener lives on.
    raw(gw.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(2)).await;
    assert!(send_tls(gw.addr, &[cert], request(&gw)).await.is_ok());
}

#[tokio::test]
async fn certificate_reloads_without_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, first) = tls_gateway(dir.path()).await;
    let (_, presented) = send_tls(gw.addr, std::slice::from_ref(&first), request(&gw)).await.expect("TLS exchange");
    assert_eq!(presented, first);
    // Stamps compare modification times: let the clock move on.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = write_certificate(dir.path());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let roots = [first.clone(), second.clone()];
        let (reply, presented) = send_tls(gw.addr, &roots, request(&gw)).await.expect("TLS exchange");
        assert_eq!(reply.status, StatusCode::OK);
        if presented == second {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn graceful_shutdown_lets_the_in_flight_request_finish() {
    let (upstream, gw) = gateway().await;
    let req = gw.request(Method::GET, "/slow", &gw.keys.write).header("x-delay-ms", "700");
    let in_flight = tokio::spawn(send(req.body(empty()).expect("request")));
    while upstream.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.shutdown.trigger();
    let reply = in_flight.await.expect("request task");
    assert_eq!(reply.status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), gw.task).await.expect("serve returned").expect("serve task");
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err(), "no longer accepting");
}
