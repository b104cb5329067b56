//! Streaming through the proxy (issue 9, part 3): a server-sent-events style
//! response reaches the client chunk by chunk, not buffered, and a client
//! that goes away cancels the upstream exchange.

mod kit;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kit::AdminCalls;
use kit::{Gateway, TestGateway};
use tokio::sync::mpsc;

type Chunks = StreamBody<stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// An upstream whose every response streams: one event at once, then one
/// every 400 ms, until the receiving side goes away — which it records.
async fn streaming_upstream(cancelled: Arc<AtomicBool>) -> SocketAddr {
    kit::upstream::serve(move |tcp, _| {
        let cancelled = Arc::clone(&cancelled);
        async move {
            let service = service_fn(move |_req: Request<Incoming>| {
                let cancelled = Arc::clone(&cancelled);
                async move {
                    let (tx, rx) = mpsc::channel::<Bytes>(1);
                    tokio::spawn(async move {
                        for n in 0.. {
                            if tx.send(Bytes::from(format!("data: {n}\n\n"))).await.is_err() {
                                cancelled.store(true, Ordering::SeqCst);
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(400)).await;
                        }
                    });
                    let events =
                        stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(Frame::data(b)), rx)) });
                    let body: Chunks = StreamBody::new(Box::pin(events) as stream::BoxStream<'static, _>);
                    Ok::<_, Infallible>(
                        Response::builder().header("content-type", "text/event-stream").body(body).expect("response"),
                    )
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        }
    })
    .await
    .addr
}

async fn gateway_in_front_of(upstream: SocketAddr) -> Gateway {
    TestGateway::new().config(move |c| c.upstream.url = format!("http://{upstream}")).start().await
}

#[tokio::test]
async fn server_sent_events_flow_without_buffering() {
    let cancelled = Arc::new(AtomicBool::new(false));
    let upstream = streaming_upstream(Arc::clone(&cancelled)).await;
    let gw = gateway_in_front_of(upstream).await;
    let acc = gw.admin.account("A").await;
    let (_, secret) = gw.admin.key(&acc, "read").await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{}/events", gw.proxy()))
        .header("x-api-key", &secret)
        .body(Empty::new())
        .expect("request");
    let started = Instant::now();
    let res = client.request(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let first = body.frame().await.expect("frame").expect("ok").into_data().expect("data");
    assert_eq!(first, Bytes::from("data: 0\n\n"));
    assert!(started.elapsed() < Duration::from_millis(300), "the first event arrived before the second was sent");
    let second = body.frame().await.expect("frame").expect("ok").into_data().expect("data");
    assert_eq!(second, Bytes::from("data: 1\n\n"));
    assert!(started.elapsed() >= Duration::from_millis(350));
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_exchange() {
    let cancelled = Arc::new(AtomicBool::new(false));
    let upstream = streaming_upstream(Arc::clone(&cancelled)).await;
    let gw = gateway_in_front_of(upstream).await;
    let acc = gw.admin.account("A").await;
    let (_, secret) = gw.admin.key(&acc, "read").await;
    {
        // A raw connection, so that dropping it closes the socket at once.
        let tcp = tokio::net::TcpStream::connect(gw.proxy()).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
        let driver = tokio::spawn(conn);
        let req = Request::builder()
            .uri("/events")
            .header("host", "x")
            .header("x-api-key", &secret)
            .body(Empty::<Bytes>::new());
        let res = sender.send_request(req.expect("request")).await.expect("response");
        let mut body = res.into_body();
        body.frame().await.expect("frame").expect("ok");
        driver.abort();
    }
    let started = Instant::now();
    while !cancelled.load(Ordering::SeqCst) {
        assert!(started.elapsed() < Duration::from_secs(3), "the upstream kept streaming to a client that left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
