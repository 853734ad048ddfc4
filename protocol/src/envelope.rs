//! Payloads: what clients send, and the stamped envelopes the server delivers and stores.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a publish on `rooms/{room}/messages` is: a message, or an event that changes an
/// earlier message (`target`). Events are numbered and stored like messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    #[default]
    Message,
    /// The sender's new body for `target`.
    Edit,
    /// `target` erased, by its sender or the room's owner.
    Delete,
    /// `key` (an emoji) added to `target` or taken back: each one toggles.
    Reaction,
}

impl MessageKind {
    pub fn is_message(&self) -> bool {
        *self == Self::Message
    }
}

/// A chat message, or an event on one, as a client publishes it on `rooms/{room}/messages`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClientMessage {
    /// Client-chosen id (for retries and local echo); the server makes one when absent.
    pub id: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: MessageKind,
    /// The `seq` of the message an event changes.
    pub target: Option<i64>,
    /// A reaction's emoji.
    pub key: Option<String>,
    #[serde(default)]
    pub body: String,
    /// Uploads (`POST /v1/rooms/{id}/media`) this message shows; the server expands each.
    #[serde(default)]
    pub attachments: Option<Vec<AttachmentRef>>,
    pub reply_to: Option<i64>,
    /// Machine-readable content beside the body, e.g. a sensor reading.
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
}

/// An attachment as a client sends it: the id of an upload to the same room.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    pub media: String,
}

/// An attachment as members receive it: the upload's facts, from the server's record of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attachment {
    /// The upload's id: `GET /v1/media/{media}` serves it.
    pub media: String,
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    pub filename: String,
    /// Pixels, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// A stamped chat message or event: what every subscriber receives and history stores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Envelope {
    pub id: String,
    pub room: String,
    /// Per-room sequence number: increases with every message and event, never repeats.
    pub seq: i64,
    /// Absent for a message.
    #[serde(rename = "type", default, skip_serializing_if = "MessageKind::is_message")]
    pub kind: MessageKind,
    /// The message an event changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<i64>,
    /// A reaction's emoji.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A reaction's outcome: true when it added `key`, false when it took it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<bool>,
    /// The authenticated sender.
    pub from: String,
    /// Server time, milliseconds since the Unix epoch.
    pub ts: i64,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<Attachment>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    /// The sender's machine-readable content (a JSON object), passed through as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<Map<String, Value>>,
    /// The room's members the message mentions, sorted, found once when it is stamped
    /// ([`mentioned_names`]); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
    /// When the body was last edited (ms since the epoch); set by the store, never stamped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// A tombstone: the message was deleted and its content erased.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Who deleted it: its sender, or the room's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
}

impl Envelope {
    /// A message that is still there: not an event (edit, delete, reaction), not a tombstone.
    /// Only such a one is answered, changed, reacted to, pushed or unread.
    pub fn is_live_message(&self) -> bool {
        self.kind.is_message() && !self.deleted
    }
}

/// The names a message mentions: each `@name` word of the body (not inside an address such as
/// `a@user`; case aside; a full stop after it ends the sentence) and each name listed in
/// `data.mentions`, in order of appearance, each once. Which of them are members is the
/// stamper's call.
pub fn mentioned_names(body: &str, data: Option<&Map<String, Value>>) -> Vec<String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    // every message passes here: nothing is copied unless there is an `@`
    let in_body = body.match_indices('@').filter_map(|(at, _)| {
        let before = body[..at].chars().next_back();
        let rest = &body[at + 1..];
        let word = rest[..rest.find(|c| !name_char(c)).unwrap_or(rest.len())].trim_end_matches('.');
        (!before.is_some_and(name_char) && !word.is_empty()).then(|| word.to_ascii_lowercase())
    });
    let listed = data.and_then(|data| data.get("mentions")).and_then(Value::as_array).into_iter().flatten();
    let mut seen = std::collections::HashSet::new();
    in_body
        .chain(listed.filter_map(Value::as_str).map(str::to_owned))
        .filter(|name| seen.insert(name.clone()))
        .collect()
}

/// `{"typing":bool}` as a client sends it on `rooms/{room}/typing`.
#[derive(Debug, Clone, Deserialize)]
pub struct TypingIn {
    pub typing: bool,
}

/// A typing indicator as members receive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TypingStamped {
    pub room: String,
    pub from: String,
    pub typing: bool,
    pub ts: i64,
}

/// `{"read_seq":N}` as a client sends it on `rooms/{room}/receipts`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceiptIn {
    pub read_seq: i64,
}

/// A read receipt as members receive it and the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptStamped {
    pub room: String,
    pub from: String,
    pub read_seq: i64,
    pub ts: i64,
}

/// A device's or a user's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Offline,
}

/// A device's status on `presence/{user}/{client_id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub status: PresenceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
}

/// The retained aggregate on `presence/{user}`, also served by `GET /v1/users/{name}/presence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceAggregate {
    pub status: PresenceStatus,
    /// Connections currently online.
    pub devices: u32,
    /// When the user was last connected (ms since the epoch); `null` when never seen.
    pub last_seen: Option<i64>,
}

/// A membership event on `rooms/{room}/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RoomEvent {
    Joined { room: String, user: String, ts: i64 },
    Left { room: String, user: String, ts: i64 },
    Removed { room: String, user: String, by: String, ts: i64 },
    Deleted { room: String, by: String, ts: i64 },
}

/// A notification on `users/{user}/inbox`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboxNotice {
    /// The user was added to a room by its owner.
    AddedToRoom { room: String, by: String, ts: i64 },
    /// Another user opened a direct-message room with this user.
    NewDm { room: String, with: String, ts: i64 },
    /// A publish of this user's was refused and neither delivered nor stored.
    Rejected {
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        code: String,
        message: String,
        ts: i64,
    },
}

/// Serializes any stamped payload; every type here has infallible JSON.
pub fn to_payload<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("stamped payloads serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mentioned(body: &str, data: Option<Value>) -> Vec<String> {
        mentioned_names(body, data.as_ref().and_then(Value::as_object))
    }

    #[test]
    fn a_mention_is_an_at_word_or_a_listed_name() {
        for body in ["@bob", "hi @bob!", "hi @Bob.", "(@bob)", "@bob, @bob"] {
            assert_eq!(mentioned(body, None), ["bob"], "{body}");
        }
        for body in ["bob", "mail bob@bob.org", "@ bob", "@."] {
            assert!(mentioned(body, None).is_empty(), "{body}: {:?}", mentioned(body, None));
        }
        assert_eq!(mentioned("@bobby and @bob_2", None), ["bobby", "bob_2"]);
        assert_eq!(mentioned("@bob.smith", None), ["bob.smith"]);
        assert_eq!(mentioned("psst @carol", Some(serde_json::json!({"mentions": ["bob", "carol"]}))), ["carol", "bob"]);
        assert!(mentioned("psst", Some(serde_json::json!({"mentions": "bob"}))).is_empty(), "a list of names");
    }
}
