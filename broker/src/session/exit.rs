//! How a session ends: why (and what an MQTT 5 client is told), and the teardown that marks the
//! device offline, fires or defers the will, keeps or drops the session and releases the link.

use super::{Identity, Session};
use crate::codec::Version;
use crate::framed::{Framed, Unreadable};
use crate::links::{router_disconnect, send_batch};
use crate::registry::Claim;
use crate::will::Will;
use roost_auth::ANONYMOUS;
use rumqttd::protocol::{Disconnect, DisconnectProperties, DisconnectReasonCode, Packet};
use tracing::info;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Exit {
    /// The client sent DISCONNECT; MQTT 5 reason 0x04 asks for the will all the same.
    #[error("client sent DISCONNECT")]
    Disconnected { with_will: bool },
    #[error("socket closed by the client")]
    Closed,
    #[error("socket error: {0}")]
    Socket(#[from] std::io::Error),
    #[error("keepalive expired")]
    KeepAlive,
    #[error("another connection took the client id")]
    TakenOver,
    #[error("server shutting down")]
    ShuttingDown,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("malformed packet: {0}")]
    Malformed(rumqttd::protocol::Error),
    #[error("packet larger than mqtt.max_packet")]
    PacketTooLarge,
    #[error("router dropped the link")]
    RouterGone,
    /// The access token the connection authenticated with has expired.
    #[error("token expired")]
    TokenExpired,
    #[error("publish rate above {0} per second")]
    RateLimited(u32),
    #[error("more unacknowledged publishes than the receive maximum")]
    ReceiveMaximum,
    #[error("topic alias out of range")]
    TopicAlias,
    /// The router dropped messages of a QoS 1 or 2 subscription before this client read them.
    #[error("subscriber fell behind: {0} messages dropped")]
    SlowSubscriber(u64),
    /// The bot's token was revoked.
    #[error("bot token revoked")]
    Revoked,
}

impl From<Unreadable> for Exit {
    fn from(unreadable: Unreadable) -> Self {
        match unreadable {
            Unreadable::TooLarge => Exit::PacketTooLarge,
            Unreadable::Malformed(e) => Exit::Malformed(e),
        }
    }
}

impl Exit {
    /// What an MQTT 5 client is told in the server's DISCONNECT; `None`: no DISCONNECT.
    fn reason(&self) -> Option<(DisconnectReasonCode, &'static str)> {
        use DisconnectReasonCode as Code;
        Some(match self {
            Exit::Disconnected { .. } | Exit::Closed | Exit::Socket(_) => return None,
            Exit::KeepAlive => (Code::KeepAliveTimeout, "keepalive expired"),
            Exit::TakenOver => (Code::SessionTakenOver, "another connection took the client id"),
            Exit::ShuttingDown => (Code::ServerShuttingDown, "server shutting down"),
            Exit::Protocol(_) => (Code::ProtocolError, "protocol error"),
            Exit::Malformed(_) => (Code::MalformedPacket, "malformed packet"),
            Exit::PacketTooLarge => (Code::PacketTooLarge, "packet too large"),
            Exit::RouterGone => (Code::UnspecifiedError, "router unavailable"),
            Exit::TokenExpired => (Code::MaximumConnectTime, "access token expired"),
            Exit::RateLimited(_) => (Code::MessageRateTooHigh, "publish rate too high"),
            Exit::ReceiveMaximum => (Code::ReceiveMaximumExceeded, "receive maximum exceeded"),
            Exit::TopicAlias => (Code::TopicAliasInvalid, "topic alias invalid"),
            Exit::SlowSubscriber(_) => (Code::QuotaExceeded, "too slow: messages were dropped"),
            Exit::Revoked => (Code::NotAuthorized, "token revoked"),
        })
    }

    fn publishes_will(&self) -> bool {
        !matches!(self, Exit::Disconnected { with_will: false })
    }
}

impl Session {
    /// Ends the connection: marks the device offline, fires or defers the will, keeps the
    /// session if it outlives the connection, releases the router link and tells an MQTT 5
    /// client why.
    /// Returns the socket when an MQTT 5 client was sent a DISCONNECT, to be closed gently.
    pub(crate) async fn teardown(
        mut self,
        exit: Exit,
        claim: &Claim,
        router_id: String,
        will: Option<Will>,
        kept: bool,
    ) -> Option<Framed> {
        let Identity { ref user, ref client_id, session_expiry, generation, .. } = self.identity;
        self.edge.hub.leave(generation);
        if user != ANONYMOUS {
            self.edge.presence.disconnected(user, client_id, claim.generation);
        }
        if let Some(will) = will.filter(|_| exit.publishes_will()) {
            let delay = will.delay().min(session_expiry);
            if delay.is_zero() {
                will.publish(&self.edge);
            } else {
                let edge = self.edge.clone();
                self.edge.registry.defer_will(&claim.session_id, delay, move || will.publish(&edge));
            }
        }
        if !matches!(exit, Exit::RouterGone) {
            self.out.push(router_disconnect());
            let _ = send_batch(&mut self.tx, self.out.drain(..)).await;
        }
        let kept = kept.then(|| (std::mem::take(&mut self.subscriptions), session_expiry));
        self.edge.registry.release(&claim.session_id, router_id, kept);
        let told = match (self.io.version(), exit.reason()) {
            (Version::V5, Some((reason_code, why))) => {
                // short reason strings only: rumqttd's writer drops the reason code of a
                // DISCONNECT without properties, Paho's Python reader ignores it in one without
                // them, and the interoperability suite's reader misreads long ones
                let properties = DisconnectProperties {
                    session_expiry_interval: None,
                    reason_string: Some(why.to_owned()),
                    user_properties: Vec::new(),
                    server_reference: None,
                };
                self.io.write(Packet::Disconnect(Disconnect { reason_code }, Some(properties)));
                true
            }
            _ => false,
        };
        let _ = self.io.flush().await;
        info!(user = self.identity.user, client_id = self.identity.client_id, reason = %exit, "disconnected");
        told.then_some(self.io)
    }
}
