//! Roost's wire contract, shared by the broker edge, the history service and the tests.

pub mod claims;
pub mod envelope;
pub mod names;
pub mod topic;

pub use claims::Claims;
pub use envelope::{
    mentioned_names, to_payload, Attachment, AttachmentRef, ClientMessage, DeviceStatus, Envelope, InboxNotice,
    MessageKind, PresenceAggregate, PresenceStatus, ReceiptIn, ReceiptStamped, RoomEvent, TypingIn, TypingStamped,
};
pub use names::{Name, NameError};
pub use topic::Topic;

/// Milliseconds since the Unix epoch: the unit of every `ts` and `last_seen` on the wire.
pub fn now_millis() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
