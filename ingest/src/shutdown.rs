//! A shutdown signal shared by every long-lived task: set once, awaited anywhere.

use tokio::sync::watch;

/// The triggering side, held by whoever decides to stop.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// The waiting side, cloned into every task that must stop.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and signal.
pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Tells every task to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when shutdown is triggered, or when the trigger is dropped (its owner is gone, so
    /// nobody could trigger it any more).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|&stop| stop).await;
    }
}
