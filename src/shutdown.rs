//! Shutdown signalling: one `Shutdown` handle is cloned into every listener
//! and background task; `trigger` (or SIGTERM/SIGINT through
//! `on_signal`) tells them all to stop accepting work. Owns no draining
//! policy itself: each listener bounds its own drain.

use tokio::sync::watch;

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

    /// Triggers on SIGTERM or SIGINT.
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
