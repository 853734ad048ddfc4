//! The broker's background tasks (presence write-behind, the server link's feeder, deferred
//! wills): spawned against one stop signal and awaited when the broker stops.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tracing::warn;

/// Spawns background tasks and stops them together. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Background {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    /// Runs `task`, which finishes its own work once [`Background::stopping`] resolves.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// Runs `task` until it ends or the broker stops, whichever comes first.
    pub(crate) fn spawn_until_stop(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stopping = self.stopping();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = stopping => {}
                _ = task => {}
            }
        });
    }

    /// Resolves when the broker stops.
    pub(crate) fn stopping(&self) -> WaitForCancellationFutureOwned {
        self.stop.clone().cancelled_owned()
    }

    /// Tells every task to stop and waits for them, at most `within`.
    pub(crate) async fn stop(&self, within: Duration) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(within, self.tracker.wait()).await.is_err() {
            warn!(tasks = self.tracker.len(), "background tasks did not stop in time");
        }
    }
}
