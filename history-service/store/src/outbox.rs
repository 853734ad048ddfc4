//! The outbox record: one thing the HTTP API asks of the broker (a membership change, a bot
//! enrolled or revoked, a server message), as the store keeps it for the split deployment.

use roost_auth::MembershipView;
use roost_protocol::{to_payload, Topic};
use serde::{Deserialize, Serialize};

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
