//! The relay: membership changes and server messages the HTTP API makes, carried to the broker
//! in order. In one process they go straight to the broker; split, through the store's outbox.

use crate::store::{Store, StoreError};
use async_trait::async_trait;
use roost_auth::MembershipView;
use roost_protocol::{to_payload, Topic};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

/// How long a relayed change waits for the broker to apply it before the API answers anyway.
const APPLY_WAIT: Duration = Duration::from_secs(1);
/// How often it looks.
const APPLY_POLL: Duration = Duration::from_millis(10);

/// One thing the broker must do for the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Directive {
    /// `user` is now a member of `room`.
    Admit { room: String, user: String },
    /// `user` is no longer a member of `room`: its deliveries and subscriptions there stop.
    Dismiss { room: String, user: String },
    /// `room` is gone with all its members.
    CloseRoom { room: String },
    /// The bot `bot` signs in with tokens carrying `token_id`.
    EnrollBot { bot: String, token_id: String },
    /// The bot `bot`'s token is revoked: its connections end, its CONNECTs are refused.
    RevokeBot { bot: String },
    /// A server message (room event, inbox notice); `payload` is its JSON text.
    Publish { topic: String, payload: String },
}

impl Directive {
    /// Publishes `message` on `topic`.
    pub fn publish(topic: Topic<'_>, message: &impl Serialize) -> Self {
        let payload = String::from_utf8(to_payload(message)).expect("JSON is UTF-8");
        Self::Publish { topic: topic.to_string(), payload }
    }

    /// Applies the membership part to `view`; a publish leaves it alone.
    pub fn apply_to(&self, view: &MembershipView) {
        match self {
            Self::Admit { room, user } => view.add(room, user),
            Self::Dismiss { room, user } => view.remove(room, user),
            Self::CloseRoom { room } => view.remove_room(room),
            Self::EnrollBot { bot, token_id } => view.enroll_bot(bot, token_id),
            Self::RevokeBot { bot } => view.revoke_bot(bot),
            Self::Publish { .. } => {}
        }
    }
}

/// Carries directives to the broker. Returns once the broker has them or, split, once they
/// are durable in the outbox it follows.
#[async_trait]
pub trait Relay: Send + Sync + 'static {
    async fn relay(&self, directive: Directive) -> Result<(), StoreError>;
}

/// The split deployment's relay: appends to the store's outbox, which the broker follows, and
/// keeps this process's own membership view current.
pub struct OutboxRelay {
    store: Arc<dyn Store>,
    view: Arc<MembershipView>,
}

impl OutboxRelay {
    pub fn new(store: Arc<dyn Store>, view: Arc<MembershipView>) -> Self {
        Self { store, view }
    }
}

#[async_trait]
impl Relay for OutboxRelay {
    /// Appends `directive`; for a membership change, then waits (bounded) until the broker has
    /// applied it, so a client that joins over HTTP may subscribe over MQTT as soon as the
    /// response arrives. A publish does not wait: the outbox keeps it in order all the same.
    async fn relay(&self, directive: Directive) -> Result<(), StoreError> {
        let position = self.store.append_outbox(&directive).await?;
        directive.apply_to(&self.view);
        if matches!(directive, Directive::Publish { .. }) {
            return Ok(());
        }
        let deadline = Instant::now() + APPLY_WAIT;
        while self.store.outbox_applied().await? < position {
            if Instant::now() >= deadline {
                warn!(position, "the broker has not applied a membership change in time; is `roost broker` running?");
                break;
            }
            tokio::time::sleep(APPLY_POLL).await;
        }
        Ok(())
    }
}
