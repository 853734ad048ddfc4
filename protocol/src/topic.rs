//! Topic grammar: the concrete topics of the contract, parsed from and printed to strings.

use crate::names::is_valid;

/// A concrete topic of the Roost contract. Anything else is outside the contract and denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic<'a> {
    /// `rooms/{room}/messages`: chat messages, stamped and stored.
    Messages(&'a str),
    /// `rooms/{room}/typing`: typing indicators, stamped, never stored.
    Typing(&'a str),
    /// `rooms/{room}/receipts`: read receipts, stamped, stored as the reader's last read.
    Receipts(&'a str),
    /// `rooms/{room}/events`: membership events, published by the server only.
    Events(&'a str),
    /// `presence/{user}/{client_id}`: one device's status.
    Device { user: &'a str, client_id: &'a str },
    /// `presence/{user}`: the aggregate over a user's devices, published by the server only.
    Presence(&'a str),
    /// `users/{user}/inbox`: server notifications to one user.
    Inbox(&'a str),
}

impl<'a> Topic<'a> {
    /// Parses a concrete (wildcard-free) topic; `None` when it is outside the contract.
    pub fn parse(topic: &'a str) -> Option<Self> {
        let mut levels = topic.split('/');
        let parsed = match (levels.next()?, levels.next(), levels.next(), levels.next()) {
            ("rooms", Some(room), Some(kind), None) if is_valid(room) => match kind {
                "messages" => Topic::Messages(room),
                "typing" => Topic::Typing(room),
                "receipts" => Topic::Receipts(room),
                "events" => Topic::Events(room),
                _ => return None,
            },
            ("presence", Some(user), None, None) if is_valid(user) => Topic::Presence(user),
            ("presence", Some(user), Some(client_id), None) if is_valid(user) && is_client_id(client_id) => {
                Topic::Device { user, client_id }
            }
            ("users", Some(user), Some("inbox"), None) if is_valid(user) => Topic::Inbox(user),
            _ => return None,
        };
        Some(parsed)
    }

    /// The room this topic belongs to, for room topics.
    pub fn room(&self) -> Option<&'a str> {
        match *self {
            Topic::Messages(r) | Topic::Typing(r) | Topic::Receipts(r) | Topic::Events(r) => Some(r),
            _ => None,
        }
    }
}

impl std::fmt::Display for Topic<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topic::Messages(r) => write!(f, "rooms/{r}/messages"),
            Topic::Typing(r) => write!(f, "rooms/{r}/typing"),
            Topic::Receipts(r) => write!(f, "rooms/{r}/receipts"),
            Topic::Events(r) => write!(f, "rooms/{r}/events"),
            Topic::Device { user, client_id } => write!(f, "presence/{user}/{client_id}"),
            Topic::Presence(u) => write!(f, "presence/{u}"),
            Topic::Inbox(u) => write!(f, "users/{u}/inbox"),
        }
    }
}

/// A client id usable as one topic level: non-empty, at most 128 bytes, no `/ + # $`, no NUL.
pub fn is_client_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && !id.contains(['/', '+', '#', '$', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_contract_topic_and_round_trips() {
        for raw in [
            "rooms/lobby/messages",
            "rooms/lobby/typing",
            "rooms/lobby/receipts",
            "rooms/lobby/events",
            "presence/alice/phone-1",
            "presence/alice",
            "users/alice/inbox",
        ] {
            let topic = Topic::parse(raw).unwrap_or_else(|| panic!("{raw}"));
            assert_eq!(topic.to_string(), raw);
        }
    }

    #[test]
    fn rejects_everything_else() {
        for raw in [
            "",
            "rooms",
            "rooms/lobby",
            "rooms/lobby/other",
            "rooms/Lobby/messages",
            "rooms/lobby/messages/x",
            "rooms/+/messages",
            "presence/alice/a/b",
            "presence/alice/$x",
            "users/alice/outbox",
            "$SYS/broker",
            "other",
        ] {
            assert_eq!(Topic::parse(raw), None, "{raw}");
        }
    }
}
