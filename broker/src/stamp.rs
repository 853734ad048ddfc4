//! Validation and stamping of client payloads: the sender, server time and, for messages,
//! the room's next sequence number.

use roost_protocol::{
    mentioned_names, now_millis, to_payload, Attachment, ClientMessage, DeviceStatus, Envelope, MessageKind, ReceiptIn,
    ReceiptStamped, Topic, TypingIn, TypingStamped,
};
use rumqttd::protocol::PubAckReason;
use serde_json::{Map, Value};

/// Why a publish is refused: each has its stable code (the inbox notice's `code`, PROTOCOL.md
/// section 5) and its MQTT 5 reason, here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    Forbidden,
    NotMember,
    PayloadTooLarge,
    InvalidPayload,
    EmptyMessage,
    InvalidId,
    InvalidReplyTo,
    InvalidTarget,
    TooManyReactions,
    UnstorableValue,
    InvalidReadSeq,
    UnknownMedia,
}

impl Rejection {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::NotMember => "not_member",
            Self::PayloadTooLarge => "payload_too_large",
            Self::InvalidPayload => "invalid_payload",
            Self::EmptyMessage => "empty_message",
            Self::InvalidId => "invalid_id",
            Self::InvalidReplyTo => "invalid_reply_to",
            Self::InvalidTarget => "invalid_target",
            Self::TooManyReactions => "too_many_reactions",
            Self::UnstorableValue => "unstorable_value",
            Self::InvalidReadSeq => "invalid_read_seq",
            Self::UnknownMedia => "unknown_media",
        }
    }

    /// The reason code of the refused publish's PUBACK (PUBREC for QoS 2) in MQTT 5.
    pub(crate) fn reason(self) -> PubAckReason {
        match self {
            Self::Forbidden | Self::NotMember => PubAckReason::NotAuthorized,
            Self::PayloadTooLarge | Self::TooManyReactions => PubAckReason::QuotaExceeded,
            Self::InvalidPayload
            | Self::EmptyMessage
            | Self::InvalidId
            | Self::InvalidReplyTo
            | Self::InvalidTarget
            | Self::UnstorableValue
            | Self::InvalidReadSeq
            | Self::UnknownMedia => PubAckReason::PayloadFormatInvalid,
        }
    }
}

/// A refused publish: why, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) rejection: Rejection,
    pub(crate) message: String,
}

impl Invalid {
    pub(crate) fn new(rejection: Rejection, message: impl Into<String>) -> Self {
        Self { rejection, message: message.into() }
    }

    /// A room topic of a room the publisher is not (or no longer) a member of.
    pub(crate) fn not_member() -> Self {
        Self::new(Rejection::NotMember, "you are not a member of this room")
    }
}

/// A validated payload, ready to be stamped.
#[derive(Debug)]
pub(crate) enum Accepted {
    Message(ClientMessage),
    Typing(TypingIn),
    Receipt(ReceiptIn),
    Device(DeviceStatus),
}

const MAX_ID: usize = 64;
/// Nesting allowed in a message's `data` (MongoDB refuses documents past 100).
const MAX_DEPTH: usize = 32;
/// Attachments one message may carry.
pub(crate) const MAX_ATTACHMENTS: usize = 10;
/// Bytes of a reaction's key: an emoji, skin tone and joiners included.
const MAX_REACTION_KEY: usize = 32;
/// Distinct reaction keys one message may carry.
pub(crate) const MAX_REACTION_KEYS: usize = 20;

/// Parses and checks `payload` for `topic`, a topic the sender may publish on.
pub(crate) fn validate(topic: &Topic<'_>, payload: &[u8]) -> Result<Accepted, Invalid> {
    fn parse<'a, T: serde::Deserialize<'a>>(payload: &'a [u8]) -> Result<T, Invalid> {
        serde_json::from_slice(payload).map_err(|e| Invalid::new(Rejection::InvalidPayload, e.to_string()))
    }
    match topic {
        Topic::Messages(_) => {
            let message: ClientMessage = parse(payload)?;
            if let Some(id) = &message.id {
                let valid = (1..=MAX_ID).contains(&id.len())
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
                if !valid {
                    return Err(Invalid::new(
                        Rejection::InvalidId,
                        format!("id must be 1 to {MAX_ID} of A-Z a-z 0-9 - _ . :"),
                    ));
                }
            }
            if message.kind.is_message() {
                validate_message(&message)?;
            } else {
                validate_event(&message)?;
            }
            Ok(Accepted::Message(message))
        }
        Topic::Typing(_) => parse(payload).map(Accepted::Typing),
        Topic::Receipts(_) => {
            let receipt: ReceiptIn = parse(payload)?;
            if receipt.read_seq < 0 {
                return Err(Invalid::new(Rejection::InvalidReadSeq, "read_seq is a seq, 0 or more"));
            }
            Ok(Accepted::Receipt(receipt))
        }
        Topic::Device { .. } => parse(payload).map(Accepted::Device),
        Topic::Events(_) | Topic::Presence(_) | Topic::Inbox(_) => {
            Err(Invalid::new(Rejection::Forbidden, "only the server publishes here"))
        }
    }
}

fn validate_message(message: &ClientMessage) -> Result<(), Invalid> {
    if message.target.is_some() || message.key.is_some() {
        return Err(Invalid::new(Rejection::InvalidPayload, "target and key belong to edits, deletes and reactions"));
    }
    if message.body.trim().is_empty() && message.attachments.as_ref().is_none_or(Vec::is_empty) {
        return Err(Invalid::new(Rejection::EmptyMessage, "a message needs a body or attachments"));
    }
    if message.reply_to.is_some_and(|seq| seq < 1) {
        return Err(Invalid::new(Rejection::InvalidReplyTo, "reply_to is the seq of an earlier message"));
    }
    if message.attachments.as_ref().is_some_and(|attachments| attachments.len() > MAX_ATTACHMENTS) {
        return Err(Invalid::new(
            Rejection::InvalidPayload,
            format!("a message carries at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    match &message.data {
        Some(data) => storable(data, 1),
        None => Ok(()),
    }
}

/// An edit carries a new body, a delete nothing, a reaction its key; each names its target.
fn validate_event(event: &ClientMessage) -> Result<(), Invalid> {
    if event.target.is_none_or(|seq| seq < 1) {
        return Err(Invalid::new(Rejection::InvalidTarget, "target is the seq of an earlier message"));
    }
    if event.attachments.is_some() || event.reply_to.is_some() || event.data.is_some() {
        return Err(Invalid::new(Rejection::InvalidPayload, "an event carries no attachments, reply_to or data"));
    }
    let has_body = !event.body.is_empty();
    let fits = match event.kind {
        MessageKind::Edit => event.key.is_none(),
        MessageKind::Delete => event.key.is_none() && !has_body,
        MessageKind::Reaction => !has_body && event.key.as_deref().is_some_and(is_reaction_key),
        MessageKind::Message => unreachable!("messages are validated apart"),
    };
    if !fits {
        return Err(Invalid::new(
            Rejection::InvalidPayload,
            format!(
                "an edit carries a body, a delete nothing, a reaction a key of 1 to {MAX_REACTION_KEY} bytes without spaces"
            ),
        ));
    }
    if event.kind == MessageKind::Edit && event.body.trim().is_empty() {
        return Err(Invalid::new(Rejection::EmptyMessage, "an edit needs a body; delete the message instead"));
    }
    Ok(())
}

/// An emoji (or any short word): no spaces or control characters.
fn is_reaction_key(key: &str) -> bool {
    (1..=MAX_REACTION_KEY).contains(&key.len()) && !key.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks JSON passed through to the stores for what every store keeps as sent: BSON has no
/// unsigned integers and no NUL in keys, and MongoDB caps nesting. Refused here, such a message
/// would stay unstorable and hold up the ingest behind it.
fn storable(fields: &Map<String, Value>, depth: usize) -> Result<(), Invalid> {
    fields.iter().try_for_each(|(key, value)| {
        if key.contains('\0') {
            return Err(Invalid::new(Rejection::UnstorableValue, "keys cannot contain NUL"));
        }
        storable_value(value, depth + 1)
    })
}

fn storable_value(value: &Value, depth: usize) -> Result<(), Invalid> {
    match value {
        Value::Object(_) | Value::Array(_) if depth > MAX_DEPTH => {
            Err(Invalid::new(Rejection::UnstorableValue, format!("data nests at most {MAX_DEPTH} levels")))
        }
        Value::Number(n) if !n.is_i64() && !n.is_f64() => {
            Err(Invalid::new(Rejection::UnstorableValue, format!("{n} is beyond a signed 64-bit integer")))
        }
        Value::Object(fields) => storable(fields, depth),
        Value::Array(items) => items.iter().try_for_each(|item| storable_value(item, depth + 1)),
        _ => Ok(()),
    }
}

/// A stamped message envelope, its attachments expanded from the uploads they name and the
/// room's members it mentions found.
pub(crate) fn envelope(
    room: &str,
    from: &str,
    seq: i64,
    message: ClientMessage,
    attachments: Option<Vec<Attachment>>,
    is_member: impl Fn(&str) -> bool,
) -> Envelope {
    let mut mentions: Vec<String> = match message.kind {
        MessageKind::Message => {
            mentioned_names(&message.body, message.data.as_ref()).into_iter().filter(|name| is_member(name)).collect()
        }
        // an event notifies nobody: its target did
        _ => Vec::new(),
    };
    mentions.sort_unstable();
    Envelope {
        // time-ordered, so the store's (room, from, id) index grows at its end: random ids
        // there cut SQLite ingest 3.5x (16k instead of 56k msg/s)
        id: message.id.unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string()),
        room: room.to_owned(),
        seq,
        kind: message.kind,
        target: message.target,
        key: message.key,
        from: from.to_owned(),
        ts: now_millis(),
        body: message.body,
        attachments,
        reply_to: message.reply_to,
        data: message.data,
        mentions,
        ..Envelope::default()
    }
}

pub(crate) fn typing(room: &str, from: &str, typing: TypingIn) -> Vec<u8> {
    to_payload(&TypingStamped { room: room.to_owned(), from: from.to_owned(), typing: typing.typing, ts: now_millis() })
}

pub(crate) fn receipt(room: &str, from: &str, receipt: ReceiptIn) -> ReceiptStamped {
    ReceiptStamped { room: room.to_owned(), from: from.to_owned(), read_seq: receipt.read_seq, ts: now_millis() }
}

pub(crate) fn device(status: DeviceStatus) -> Vec<u8> {
    to_payload(&DeviceStatus { status: status.status, ts: Some(now_millis()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_need_content_and_a_sane_id() {
        let topic = Topic::Messages("lobby");
        assert!(validate(&topic, br#"{"body":"hi","from":"mallory"}"#).is_ok());
        assert_eq!(validate(&topic, b"not json").unwrap_err().rejection, Rejection::InvalidPayload);
        assert_eq!(validate(&topic, br#"{"body":"  "}"#).unwrap_err().rejection, Rejection::EmptyMessage);
        assert_eq!(validate(&topic, br#"{"body":"x","id":"a/b"}"#).unwrap_err().rejection, Rejection::InvalidId);
        assert_eq!(validate(&topic, br#"{"body":7}"#).unwrap_err().rejection, Rejection::InvalidPayload);
    }

    #[test]
    fn passed_through_json_must_be_storable_everywhere() {
        let topic = Topic::Messages("lobby");
        let code = |payload: String| validate(&topic, payload.as_bytes()).err().map(|e| e.rejection.code());
        let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(code(r#"{"body":"21.4 C","data":{"celsius":21.4,"n":-9223372036854775808}}"#.into()), None);
        assert_eq!(code(r#"{"body":"x","data":{"n":18446744073709551615}}"#.into()), Some("unstorable_value"));
        assert_eq!(code(r#"{"body":"x","data":{"a\u0000b":1}}"#.into()), Some("unstorable_value"));
        assert_eq!(code(format!(r#"{{"body":"x","data":{{"d":{}}}}}"#, nested(31))), None);
        assert_eq!(code(format!(r#"{{"body":"x","data":{{"d":{}}}}}"#, nested(32))), Some("unstorable_value"));
        assert_eq!(code(r#"{"body":"x","data":[1]}"#.into()), Some("invalid_payload"), "data is an object");
    }

    #[test]
    fn attachments_name_uploads_and_nothing_else() {
        let topic = Topic::Messages("lobby");
        let code = |payload: String| validate(&topic, payload.as_bytes()).err().map(|e| e.rejection.code());
        assert_eq!(code(r#"{"body":"","attachments":[{"media":"m1"}]}"#.into()), None);
        // the server says what an upload is; a client's own facts are not taken
        assert_eq!(code(r#"{"body":"x","attachments":[{"media":"m1","size":1}]}"#.into()), Some("invalid_payload"));
        assert_eq!(code(r#"{"body":"x","attachments":[{"url":"http://x"}]}"#.into()), Some("invalid_payload"));
        let many = [r#"{"media":"m"}"#; MAX_ATTACHMENTS + 1].join(",");
        assert_eq!(code(format!(r#"{{"body":"x","attachments":[{many}]}}"#)), Some("invalid_payload"));
    }

    #[test]
    fn events_name_a_target_and_carry_only_their_part() {
        let topic = Topic::Messages("lobby");
        let code = |payload: &str| validate(&topic, payload.as_bytes()).err().map(|e| e.rejection.code());
        assert_eq!(code(r#"{"type":"edit","target":3,"body":"fixed"}"#), None);
        assert_eq!(code(r#"{"type":"delete","target":3}"#), None);
        assert_eq!(code(r#"{"type":"reaction","target":3,"key":"👍🏽"}"#), None);
        assert_eq!(code(r#"{"type":"edit","body":"fixed"}"#), Some("invalid_target"));
        assert_eq!(code(r#"{"type":"delete","target":0}"#), Some("invalid_target"));
        assert_eq!(code(r#"{"type":"edit","target":3,"body":" "}"#), Some("empty_message"));
        assert_eq!(code(r#"{"type":"delete","target":3,"body":"why"}"#), Some("invalid_payload"));
        assert_eq!(code(r#"{"type":"reaction","target":3}"#), Some("invalid_payload"));
        assert_eq!(code(r#"{"type":"reaction","target":3,"key":"thumbs up"}"#), Some("invalid_payload"));
        assert_eq!(
            code(&format!(r#"{{"type":"reaction","target":3,"key":"{}"}}"#, "x".repeat(33))),
            Some("invalid_payload")
        );
        assert_eq!(code(r#"{"type":"edit","target":3,"body":"x","data":{}}"#), Some("invalid_payload"));
        assert_eq!(code(r#"{"type":"edit","target":3,"body":"x","reply_to":1}"#), Some("invalid_payload"));
        assert_eq!(code(r#"{"type":"shout","target":3}"#), Some("invalid_payload"));
        assert_eq!(code(r#"{"body":"hi","target":3}"#), Some("invalid_payload"), "a message names no target");
    }

    #[test]
    fn stamping_overwrites_the_sender() {
        let Ok(Accepted::Message(m)) = validate(&Topic::Messages("lobby"), br#"{"body":"hi","from":"mallory"}"#) else {
            panic!("valid message refused");
        };
        let stamped = envelope("lobby", "alice", 7, m, None, |_| true);
        assert_eq!((stamped.from.as_str(), stamped.seq, stamped.room.as_str()), ("alice", 7, "lobby"));
    }

    #[test]
    fn mentions_are_the_members_named_sorted() {
        let Ok(Accepted::Message(m)) =
            validate(&Topic::Messages("lobby"), br#"{"body":"@erin @carol @bob","data":{"mentions":["dave","bob"]}}"#)
        else {
            panic!("valid message refused");
        };
        let stamped = envelope("lobby", "alice", 1, m, None, |name| name != "erin");
        assert_eq!(stamped.mentions, ["bob", "carol", "dave"], "a non-member is not mentioned");
    }
}
