//! What travels over NATS between nodes: subject names, room messages (their payload as
//! published, what the edge knows beside it in headers), device changes, heartbeats and
//! presence snapshots. Core NATS only: at most once, so every receiver can tell what it missed.

use crate::hub::{Kinds, Message};
use crate::presence::Device;
use async_nats::HeaderMap;
use bytes::Bytes;
use rumqttd::protocol::PublishProperties;
use serde::{Deserialize, Serialize};

/// Every node's device changes.
pub(super) const PRESENCE: &str = "roost.presence";
/// Every node's heartbeats.
pub(super) const HEARTBEAT: &str = "roost.heartbeat";
/// Requests for a session by id (request and reply: every node answers).
pub(super) const SESSIONS: &str = "roost.sessions";
/// Publishes on the operator's topics (outside Roost's namespaces).
pub(super) const OPERATOR: &str = "roost.operator";

const TOPIC: &str = "Roost-Topic";

const SEQ: &str = "Roost-Seq";
const EXPIRES_AT: &str = "Roost-Expires-At";
const PROPERTIES: &str = "Roost-Properties";

/// Names may hold `.`, NATS's token separator; `~` is never part of a name.
fn token(name: &str) -> String {
    name.replace('.', "~")
}

fn untoken(token: &str) -> String {
    token.replace('~', ".")
}

/// The subject of `room`'s messages of `kind` (`messages`, `typing` or `receipts`).
pub(super) fn room_subject(room: &str, kind: &str) -> String {
    format!("roost.room.{}.{kind}", token(room))
}

/// Every kind of `room`: what a node follows while one of its sessions follows the room.
pub(super) fn room_filter(room: &str) -> String {
    format!("roost.room.{}.*", token(room))
}

/// Where `node` answers for its devices.
pub(super) fn snapshot_subject(node: &str) -> String {
    format!("roost.node.{}.snapshot", token(node))
}

/// The room and kind a room subject names.
pub(super) fn room_of(subject: &str) -> Option<(String, &str, Kinds)> {
    let rest = subject.strip_prefix("roost.room.")?;
    let (room, kind) = rest.rsplit_once('.')?;
    Some((untoken(room), kind, Kinds::named(kind)?))
}

/// The MQTT 5 properties that travel with a message; topic aliases and subscription
/// identifiers belong to one connection and stay behind.
#[derive(Serialize, Deserialize)]
struct CarriedProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_format_indicator: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_data: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    user_properties: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
}

/// The headers carrying what the edge knows of `message` beside its payload.
pub(super) fn headers_of(message: &Message, seq: Option<i64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(seq) = seq {
        headers.insert(SEQ, seq.to_string());
    }
    if let Some(at) = message.expires_at {
        headers.insert(EXPIRES_AT, at.to_string());
    }
    insert_properties(&mut headers, &message.properties);
    headers
}

fn insert_properties(headers: &mut HeaderMap, properties: &Option<PublishProperties>) {
    if let Some(p) = properties {
        let carried = CarriedProperties {
            payload_format_indicator: p.payload_format_indicator,
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.as_ref().map(|data| data.to_vec()),
            user_properties: p.user_properties.clone(),
            content_type: p.content_type.clone(),
        };
        headers.insert(PROPERTIES, serde_json::to_string(&carried).expect("properties serialize"));
    }
}

fn properties_from(headers: Option<&HeaderMap>) -> Option<PublishProperties> {
    let json = headers?.get(PROPERTIES)?.as_str();
    let carried: CarriedProperties = serde_json::from_str(json).ok()?;
    Some(PublishProperties {
        payload_format_indicator: carried.payload_format_indicator,
        response_topic: carried.response_topic,
        correlation_data: carried.correlation_data.map(Bytes::from),
        user_properties: carried.user_properties,
        content_type: carried.content_type,
        ..PublishProperties::default()
    })
}

/// The headers of a publish on an operator's topic: the topic, and its properties (the route
/// tag among their user properties).
pub(super) fn operator_headers(topic: &str, properties: &Option<PublishProperties>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(TOPIC, topic);
    insert_properties(&mut headers, properties);
    headers
}

/// The topic and properties of a carried publish on an operator's topic.
pub(super) fn operator_publish(headers: Option<&HeaderMap>) -> Option<(String, Option<PublishProperties>)> {
    let topic = headers?.get(TOPIC)?.as_str().to_owned();
    Some((topic, properties_from(headers)))
}

/// A message another node carried: its sequence number (room messages) and the message as
/// this node's sessions receive it.
pub(super) fn message_from(topic: String, payload: Bytes, headers: Option<&HeaderMap>) -> (Option<i64>, Message) {
    let header = |name: &str| headers.and_then(|headers| headers.get(name)).map(|value| value.as_str());
    let seq = header(SEQ).and_then(|seq| seq.parse().ok());
    let expires_at = header(EXPIRES_AT).and_then(|at| at.parse().ok());
    let properties =
        header(PROPERTIES).and_then(|json| serde_json::from_str::<CarriedProperties>(json).ok()).map(|carried| {
            PublishProperties {
                payload_format_indicator: carried.payload_format_indicator,
                response_topic: carried.response_topic,
                correlation_data: carried.correlation_data.map(Bytes::from),
                user_properties: carried.user_properties,
                content_type: carried.content_type,
                ..PublishProperties::default()
            }
        });
    (seq, Message { topic: topic.into(), payload, properties, expires_at, origin: None })
}

/// A device that came online or went offline on `node`, the `n`th change of its run `epoch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DeviceChange {
    pub(super) node: String,
    pub(super) epoch: u64,
    pub(super) n: u64,
    pub(super) online: bool,
    pub(super) device: Device,
    pub(super) ts: i64,
}

/// A node is alive: its run and how many device changes it has published in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Heartbeat {
    pub(super) node: String,
    pub(super) epoch: u64,
    pub(super) changes: u64,
    pub(super) ts: i64,
}

/// Every device a node holds, as of its `changes`th change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub(super) epoch: u64,
    pub(super) changes: u64,
    pub(super) devices: Vec<Device>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_with_dots_are_one_token() {
        let subject = room_subject("team.dev-1", "messages");
        assert_eq!(subject, "roost.room.team~dev-1.messages");
        let (room, kind, kinds) = room_of(&subject).unwrap();
        assert_eq!((room.as_str(), kind, kinds), ("team.dev-1", "messages", Kinds::MESSAGES));
        assert!(room_of("roost.presence").is_none());
    }

    #[test]
    fn a_message_keeps_its_number_expiry_and_properties() {
        let properties = PublishProperties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            topic_alias: Some(3),
            ..PublishProperties::default()
        };
        let message = Message {
            topic: "rooms/lobby/messages".into(),
            payload: Bytes::from_static(b"{}"),
            properties: Some(properties),
            expires_at: Some(42),
            origin: Some(7),
        };
        let headers = headers_of(&message, Some(9));
        let (seq, carried) = message_from("rooms/lobby/messages".into(), message.payload.clone(), Some(&headers));
        assert_eq!((seq, carried.expires_at, carried.origin), (Some(9), Some(42), None));
        let properties = carried.properties.unwrap();
        assert_eq!(properties.content_type.as_deref(), Some("text/plain"));
        assert_eq!(properties.user_properties, vec![("k".to_owned(), "v".to_owned())]);
        assert_eq!(properties.topic_alias, None, "aliases belong to one connection");
    }
}
