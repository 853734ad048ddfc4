//! The broker's settings: the `[mqtt]` section of the configuration as it is deserialized
//! (figment, `ROOST_MQTT__*`), and the MQTT limits the edge announces.

use roost_auth::Rule;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Listener addresses and connection limits of the MQTT edge (`[mqtt]`; durations in seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerConfig {
    /// MQTT over TCP (`ROOST_MQTT__TCP`), e.g. `127.0.0.1:1883`.
    pub tcp: String,
    /// MQTT over WebSocket, path `/mqtt`, subprotocol `mqtt` (`ROOST_MQTT__WS`).
    pub ws: String,
    /// MQTT over TLS (`ROOST_MQTT__TLS`), e.g. `0.0.0.0:8883`; needs `tls_cert` and `tls_key`.
    pub tls: Option<String>,
    /// MQTT over WebSocket over TLS, `wss://.../mqtt` (`ROOST_MQTT__WSS`); same certificate.
    pub wss: Option<String>,
    /// PEM certificate chain of the TLS listeners (`ROOST_MQTT__TLS_CERT`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS listeners (`ROOST_MQTT__TLS_KEY`).
    pub tls_key: Option<PathBuf>,
    /// The longest keepalive a client may ask for; longer (or 0) is clamped to it
    /// (`ROOST_MQTT__KEEPALIVE_MAX`).
    #[serde(with = "seconds")]
    pub keepalive_max: Duration,
    /// The longest a session outlives its connection: longer MQTT 5 expiries are clamped to
    /// it, and 3.1.1 persistent sessions end after it (`ROOST_MQTT__SESSION_EXPIRY_MAX`).
    #[serde(with = "seconds")]
    pub session_expiry_max: Duration,
    /// Largest accepted application payload, in bytes (`ROOST_MQTT__MAX_PAYLOAD`).
    pub max_payload: usize,
    /// Largest accepted MQTT packet, in bytes (`ROOST_MQTT__MAX_PACKET`).
    pub max_packet: usize,
    /// Most concurrent client connections (`ROOST_MQTT__MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Most client ids one user may have connected at once; more are refused with CONNACK
    /// 0x03 (MQTT 5: 0x97) (`ROOST_MQTT__MAX_CONNECTIONS_PER_USER`).
    pub max_connections_per_user: usize,
    /// The same for a bot (`ROOST_MQTT__MAX_CONNECTIONS_PER_BOT`).
    pub max_connections_per_bot: usize,
    /// Most subscriptions one connection may hold; SUBSCRIBEs past it get 0x80
    /// (`ROOST_MQTT__MAX_SUBSCRIPTIONS`).
    pub max_subscriptions: usize,
    /// Most filters one user may be the first to subscribe to while the process runs (the
    /// router keeps each until restart); SUBSCRIBEs past it get 0x80 (MQTT 5: 0x97)
    /// (`ROOST_MQTT__MAX_FILTERS_PER_USER`).
    pub max_filters_per_user: usize,
    /// Most publishes per second one connection may send (burst: one second's worth); a
    /// connection that sends faster is disconnected (`ROOST_MQTT__MAX_PUBLISH_RATE`). Unset: no
    /// limit.
    pub max_publish_rate: Option<u32>,
    /// Most CONNECTs per second the edge accepts (burst: one second's worth); more are refused
    /// with CONNACK 0x03 (MQTT 5: 0x9F) (`ROOST_MQTT__MAX_CONNECT_RATE`). Unset: no limit.
    pub max_connect_rate: Option<u32>,
    /// How long a new socket may take to finish its handshakes and send CONNECT
    /// (`ROOST_MQTT__CONNECT_TIMEOUT`).
    #[serde(with = "seconds")]
    pub connect_timeout: Duration,
    /// Listeners (`tcp`, `ws`, `tls`, `wss`) where a CONNECT without credentials is accepted
    /// (`ROOST_MQTT__ANONYMOUS='["tcp"]'`). They get nothing of the chat, only what `rules` allow.
    pub anonymous: Vec<String>,
    /// Operator ACL rules for topics outside Roost's namespaces, first match wins; none:
    /// everything outside the chat is denied.
    pub rules: Vec<Rule>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            tcp: "127.0.0.1:1883".into(),
            ws: "127.0.0.1:8083".into(),
            tls: None,
            wss: None,
            tls_cert: None,
            tls_key: None,
            keepalive_max: Duration::from_secs(300),
            session_expiry_max: Duration::from_secs(7 * 24 * 3600),
            max_payload: 64 * 1024,
            max_packet: 256 * 1024,
            max_connections: 100_000,
            max_connections_per_user: 32,
            max_connections_per_bot: 8,
            max_subscriptions: 100,
            max_filters_per_user: 2000,
            max_publish_rate: None,
            max_connect_rate: None,
            connect_timeout: Duration::from_secs(10),
            anonymous: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// Durations in the configuration are whole seconds.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

/// The most QoS 1 and 2 publishes a v5 client may have unacknowledged; one more is a protocol
/// violation (DISCONNECT 0x93).
pub(crate) const RECEIVE_MAXIMUM: u16 = 256;
/// The most topic aliases a v5 client may set.
pub(crate) const TOPIC_ALIAS_MAXIMUM: u16 = 64;
