//! Retention: on a timer, prunes history by age and per-room count, and deletes expired
//! refresh tokens.

use crate::contract::{Retention, Store};
use roost_protocol::now_millis;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// What history keeps, and how often it is pruned.
#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    /// Messages older than this go.
    pub max_age: Option<Duration>,
    /// Each room keeps only its newest this many messages.
    pub max_messages: Option<u64>,
    pub every: Duration,
}

impl RetentionPolicy {
    /// True when some limit is set.
    pub fn limits_history(&self) -> bool {
        self.max_age.is_some() || self.max_messages.is_some()
    }

    async fn prune_history(&self, store: &dyn Store) {
        let retention = Retention {
            older_than: self.max_age.map(|age| now_millis() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
            keep_per_room: self.max_messages,
        };
        match store.prune(retention).await {
            Ok(0) => {}
            Ok(pruned) => {
                info!(pruned, "history pruned by retention");
                metrics::counter!("roost_messages_pruned_total").increment(pruned);
            }
            Err(e) => warn!(error = %e, "retention could not prune history; retrying next round"),
        }
    }

    /// Prunes now and then every `every`, until `shutdown`. With several processes on one
    /// store, one at a time prunes: the one holding the `retention` lease, `holder` names this one.
    pub async fn run(self, store: Arc<dyn Store>, holder: String, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut timer = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = timer.tick() => {}
            }
            // held for two rounds: a holder that stops renewing it hands over within them
            let until = now_millis() + 2 * i64::try_from(self.every.as_millis()).unwrap_or(i64::MAX / 4);
            match store.hold_lease("retention", &holder, until).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    warn!(error = %e, "retention could not take its lease; retrying next round");
                    continue;
                }
            }
            if self.limits_history() {
                self.prune_history(store.as_ref()).await;
            }
            match store.purge_refresh_tokens(now_millis()).await {
                Ok(purged) => metrics::counter!("roost_refresh_tokens_purged_total").increment(purged),
                Err(e) => warn!(error = %e, "could not delete expired refresh tokens; retrying next round"),
            }
        }
    }
}
