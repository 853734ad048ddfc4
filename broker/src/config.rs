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
    /// Largest accepted application payload, in bytes.
    pub max_payload: usize,
    /// Largest accepted MQTT packet, in bytes.
    pub max_packet: usize,
    /// Most concurrent client connections.
    pub max_connections: usize,
    /// How long a new socket may take to send CONNECT.
    pub connect_timeout: Duration,
}
