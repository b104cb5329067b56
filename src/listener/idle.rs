//! Idle HTTP/2 connections are closed. hyper's HTTP/1.1 server applies the
//! header read timeout to an idle keep-alive connection, but its HTTP/2
//! server has no such limit: a client could open connections, never start a
//! request, and hold `max_connections` slots for ever. Here a connection
//! that started no request during a whole `idle` period gets a GOAWAY
//! (graceful: streams still open — a long download, a gRPC stream — finish
//! first) and closes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::Tapped;
use crate::shutdown::GracefulConnection;

/// A connection's service that notes, in `seen`, each request it starts.
pub fn marked<S>(service: S, seen: Arc<AtomicBool>) -> Tapped<S, impl Fn(&mut Request<Incoming>) + Send + 'static> {
    Tapped::new(service, move |_: &mut Request<Incoming>| seen.store(true, Ordering::Relaxed))
}

/// A connection that is shut down gracefully once a whole `idle` period
/// passes without a request (`seen` stays false).
pub struct IdleClose<C> {
    conn: Pin<Box<C>>,
    seen: Arc<AtomicBool>,
    idle: Duration,
    tick: Pin<Box<Sleep>>,
    closing: bool,
}

impl<C> IdleClose<C> {
    pub fn new(conn: C, seen: Arc<AtomicBool>, idle: Duration) -> Self {
        IdleClose { conn: Box::pin(conn), seen, idle, tick: Box::pin(tokio::time::sleep(idle)), closing: false }
    }
}

impl<C: GracefulConnection> Future for IdleClose<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        while !this.closing && this.tick.as_mut().poll(cx).is_ready() {
            if this.seen.swap(false, Ordering::Relaxed) {
                this.tick.as_mut().reset(Instant::now() + this.idle);
            } else {
                this.closing = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

impl<C: GracefulConnection> GracefulConnection for IdleClose<C> {
    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        self.closing = true;
        self.conn.as_mut().graceful_shutdown();
    }
}
