//! Shutdown signalling: one `Shutdown` handle is cloned into every listener
//! and background task; `trigger` (or SIGTERM/SIGINT through
//! `on_signal`) tells them all to stop accepting work (SIGHUP reloads the
//! configuration instead: see `reconfigure`). A listener tells its
//! open connections to finish through a `Drain`. Owns no draining policy
//! itself: each listener bounds its own drain.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use hyper::body::{Body, Incoming};
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use tokio::sync::watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown { tx, rx }
    }

    /// Asks everything holding a clone to stop.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once `trigger` has been called (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which only happens when no
        // `Shutdown` is left to trigger: treat it as a shutdown too.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Triggers on SIGTERM or SIGINT. SIGHUP is not a stop signal
    /// (`systemctl reload` sends it): `reconfigure` watches it.
    pub fn on_signal(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = ctrl_c => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = ctrl_c.await;
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = ctrl_c.await;
            }
            tracing::info!("shutdown signal received: draining");
            this.trigger();
        });
    }
}

/// Tells a listener's connections to finish the request in flight and
/// close. Unlike a channel receiver polled alongside each connection, a
/// watched connection pays one atomic load per poll: its task's waker is
/// registered once and only woken when the drain starts.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    next: AtomicU64,
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl Drain {
    /// Flags the drain and wakes every watched connection.
    pub fn start(&self) {
        let Ok(wakers) = self.wakers.lock() else { return };
        // Set under the lock, so that a connection registering concurrently
        // either sees the flag or is in the map when it is woken.
        self.draining.store(true, Ordering::Release);
        for waker in wakers.values() {
            waker.wake_by_ref();
        }
    }

    /// Runs `conn` until it ends, shutting it down gracefully (the request
    /// in flight finishes, keep-alive ends) once the drain starts.
    pub async fn watch<C: GracefulConnection>(self: Arc<Self>, conn: C) -> C::Output {
        let mut conn = pin!(conn);
        let mut slot = Slot { drain: self, id: None, waker: None };
        let mut graceful = false;
        std::future::poll_fn(|cx| {
            if !graceful && slot.draining(cx.waker()) {
                graceful = true;
                conn.as_mut().graceful_shutdown();
            }
            conn.as_mut().poll(cx)
        })
        .await
    }
}

impl Drain {
    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// A connection's own watch on the drain, for a server loop that is not
    /// one of hyper's (the proxy's fast path): its waker is registered
    /// once, like `watch`'s.
    pub fn watcher(self: &Arc<Self>) -> DrainWatcher {
        DrainWatcher { slot: Slot { drain: Arc::clone(self), id: None, waker: None } }
    }
}

/// See `Drain::watcher`.
pub struct DrainWatcher {
    slot: Slot,
}

impl DrainWatcher {
    /// Resolves once the drain has started.
    pub async fn started(&mut self) {
        std::future::poll_fn(|cx| if self.slot.draining(cx.waker()) { Poll::Ready(()) } else { Poll::Pending }).await
    }

    pub fn is_draining(&self) -> bool {
        self.slot.drain.is_draining()
    }
}

/// A served connection that can be asked to finish gracefully: hyper's
/// HTTP/1.1 connection (with or without upgrades) and its HTTP/2 one.
/// hyper-util has such a trait, but sealed and without the HTTP/1.1
/// connection that serves upgrades.
pub trait GracefulConnection: Future {
    /// Finish the request in flight (HTTP/1.1) or the open streams (HTTP/2,
    /// after a GOAWAY), then close.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConnection for http1::Connection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

impl<I, S, B> GracefulConnection for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B, E> GracefulConnection for http2::Connection<I, S, E>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: Read + Write + Unpin,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// A connection's place in its drain's waker map.
struct Slot {
    drain: Arc<Drain>,
    id: Option<u64>,
    /// The waker last registered, to skip the lock while it stays the same.
    waker: Option<Waker>,
}

impl Slot {
    /// Whether the drain has started; registers `waker` when it has not.
    fn draining(&mut self, waker: &Waker) -> bool {
        if self.drain.draining.load(Ordering::Acquire) {
            return true;
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return false;
        }
        let Ok(mut wakers) = self.drain.wakers.lock() else { return false };
        if self.drain.draining.load(Ordering::Acquire) {
            return true;
        }
        let id = *self.id.get_or_insert_with(|| self.drain.next.fetch_add(1, Ordering::Relaxed));
        wakers.insert(id, waker.clone());
        self.waker = Some(waker.clone());
        false
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            if let Ok(mut wakers) = self.drain.wakers.lock() {
                wakers.remove(&id);
            }
        }
    }
}
