//! Broker settings.

use std::path::PathBuf;
use std::time::Duration;

/// Listener addresses and connection limits of the MQTT edge.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// MQTT over TCP, e.g. `127.0.0.1:1883`.
    pub tcp: String,
    /// MQTT over WebSocket (path `/mqtt`, subprotocol `mqtt`), e.g. `127.0.0.1:8083`.
    pub ws: String,
    /// MQTT over TLS, e.g. `0.0.0.0:8883`; needs `tls_cert` and `tls_key`.
    pub tls: Option<String>,
    /// MQTT over WebSocket over TLS (`wss://.../mqtt`), e.g. `0.0.0.0:8084`; same certificate.
    pub wss: Option<String>,
    /// PEM certificate chain of the TLS listeners.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS listeners.
    pub tls_key: Option<PathBuf>,
    /// The longest keepalive a client may ask for; longer (or 0) is clamped to it.
    pub keepalive_max: Duration,
    /// The longest a session outlives its connection: longer MQTT 5 expiries are clamped to
    /// it, and 3.1.1 persistent sessions end after it.
    pub session_expiry_max: Duration,
    /// Largest accepted application payload, in bytes.
    pub max_payload: usize,
    /// Largest accepted MQTT packet, in bytes.
    pub max_packet: usize,
    /// Most concurrent client connections.
    pub max_connections: usize,
    /// Most client ids one user may have connected at once; more are refused (0x03 / 0x97).
    pub max_connections_per_user: usize,
    /// The same for a bot.
    pub max_connections_per_bot: usize,
    /// Most subscriptions one connection may hold; SUBSCRIBEs past it get 0x80.
    pub max_subscriptions: usize,
    /// Most filters one user may be the first to subscribe to (the router keeps each until
    /// restart); SUBSCRIBEs past it get 0x80 (MQTT 5: 0x97).
    pub max_filters_per_user: usize,
    /// Most publishes per second one connection may send (burst: one second's worth); a
    /// connection that sends faster is disconnected. `None`: no limit.
    pub max_publish_rate: Option<u32>,
    /// Most CONNECTs per second the edge accepts (burst: one second's worth); more are refused
    /// with CONNACK 0x03 (MQTT 5: 0x9F). `None`: no limit.
    pub max_connect_rate: Option<u32>,
    /// How long a new socket may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Listeners (`tcp`, `ws`, `tls`, `wss`) where a CONNECT without credentials is accepted.
    pub anonymous: Vec<String>,
}

/// The most QoS 1 and 2 publishes a v5 client may have unacknowledged; one more is a protocol
/// violation (DISCONNECT 0x93).
pub(crate) const RECEIVE_MAXIMUM: u16 = 256;
/// The most topic aliases a v5 client may set.
pub(crate) const TOPIC_ALIAS_MAXIMUM: u16 = 64;
