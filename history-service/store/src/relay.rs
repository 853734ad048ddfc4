//! The relay: membership changes and server messages the HTTP API makes, carried to the broker
//! in order. In one process they go straight to the broker; split, through the store's outbox.

use crate::contract::{Store, StoreError};
use crate::outbox::Directive;
use async_trait::async_trait;
use roost_auth::MembershipView;
use roost_protocol::now_millis;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

/// How long a relayed change waits for the broker to apply it before the API answers anyway.
const APPLY_WAIT: Duration = Duration::from_secs(1);
/// How often it looks.
const APPLY_POLL: Duration = Duration::from_millis(10);

/// Carries directives to the broker. Returns once the broker has them or, split, once they
/// are durable in the outbox it follows.
#[async_trait]
pub trait Relay: Send + Sync + 'static {
    async fn relay(&self, directive: Directive) -> Result<(), StoreError>;
}

/// The relay of the split deployment and of several nodes: appends to the store's outbox, which
/// every broker follows, and keeps this process's own membership view current when no broker
/// in this process does.
pub struct OutboxRelay {
    store: Arc<dyn Store>,
    /// `None`: a broker in this process applies the outbox to the view (several nodes), and
    /// must see the view as it was before each change (a room's members before its deletion).
    view: Option<Arc<MembershipView>>,
    /// A broker that has not recorded itself in the outbox for this long is not waited for.
    broker_ttl: Duration,
}

impl OutboxRelay {
    pub fn new(store: Arc<dyn Store>, view: Option<Arc<MembershipView>>, broker_ttl: Duration) -> Self {
        Self { store, view, broker_ttl }
    }
}

#[async_trait]
impl Relay for OutboxRelay {
    /// Appends `directive`; for a membership change, then waits (bounded) until every live
    /// broker has applied it, so a client that joins over HTTP may subscribe over MQTT as soon as the
    /// response arrives. A publish does not wait: the outbox keeps it in order all the same.
    async fn relay(&self, directive: Directive) -> Result<(), StoreError> {
        let position = self.store.append_outbox(&directive).await?;
        if let Some(view) = &self.view {
            directive.apply_to(view);
        }
        if matches!(directive, Directive::Publish { .. }) {
            return Ok(());
        }
        let deadline = Instant::now() + APPLY_WAIT;
        let live_since = now_millis() - self.broker_ttl.as_millis() as i64;
        while self.store.outbox_applied(live_since).await? < position {
            if Instant::now() >= deadline {
                warn!(position, "the broker has not applied a membership change in time; is `roost broker` running?");
                break;
            }
            tokio::time::sleep(APPLY_POLL).await;
        }
        Ok(())
    }
}
