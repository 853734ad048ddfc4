//! Live presence as the broker in this process knows it, for the HTTP API to read.

use roost_protocol::PresenceAggregate;

/// Live presence, for users the broker in this process has seen since it started.
pub trait PresenceSource: Send + Sync + 'static {
    fn presence(&self, user: &str) -> Option<PresenceAggregate>;
}
