//! Broker settings.

use std::time::Duration;

/// Listener addresses and connection limits of the MQTT edge.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// MQTT over TCP, e.g. `127.0.0.1:1883`.
    pub tcp: String,
    /// MQTT over WebSocket (path `/mqtt`, subprotocol `mqtt`), e.g. `127.0.0.1:8083`.
    pub ws: String,
    /// The longest keepalive a client may ask for; longer (or 0) is clamped to it.
    pub keepalive_max: Duration,
    /// Largest accepted application payload, in bytes.
    pub max_payload: usize,
    /// Largest accepted MQTT packet, in bytes.
    pub max_packet: usize,
    /// Most concurrent client connections.
    pub max_connections: usize,
    /// How long a new socket may take to send CONNECT.
    pub connect_timeout: Duration,
}
