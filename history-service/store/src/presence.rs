//! Where presence is read: the broker's live board in this process when it knows the user,
//! else the status the broker wrote to the store.

use crate::contract::{Store, StoreError};
use roost_protocol::{PresenceAggregate, PresenceStatus};
use std::sync::Arc;

/// Live presence, for users the broker in this process has seen since it started.
pub trait PresenceSource: Send + Sync + 'static {
    fn presence(&self, user: &str) -> Option<PresenceAggregate>;
}

/// Presence as the HTTP API and push delivery read it; cheap to clone.
#[derive(Clone)]
pub struct PresenceReader {
    /// The broker's own board in one process; split, presence is read from the store.
    board: Option<Arc<dyn PresenceSource>>,
    store: Arc<dyn Store>,
}

impl PresenceReader {
    pub fn new(board: Option<Arc<dyn PresenceSource>>, store: Arc<dyn Store>) -> Self {
        Self { board, store }
    }

    /// Live presence when this process's broker knows the user, else the stored status, else
    /// offline and never seen.
    pub async fn presence_of(&self, user: &str) -> Result<PresenceAggregate, StoreError> {
        if let Some(live) = self.board.as_ref().and_then(|board| board.presence(user)) {
            return Ok(live);
        }
        let stored = self.store.presence(user).await?;
        Ok(stored.unwrap_or(PresenceAggregate { status: PresenceStatus::Offline, devices: 0, last_seen: None }))
    }

    /// True while `user` has a device connected.
    pub async fn is_online(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self.presence_of(user).await?.devices > 0)
    }
}
