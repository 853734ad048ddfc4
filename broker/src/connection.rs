//! One client connection up to its session: CONNECT in MQTT 3.1.1 or 5, authentication, the
//! will, takeover and session resumption. [`crate::session`] serves the session itself.

use crate::codec::Version;
use crate::config::{RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM};
use crate::edge::Edge;
use crate::framed::{BeforeConnect, ConnectPacket, Framed};
use crate::links::{router_disconnect, send_batch, Link, LinkFailed};
use crate::registry::Stored;
use crate::session::{ClientLimits, Identity, Session};
use crate::slots::{Full, Holder};
use crate::subscriptions::Subscriptions;
use crate::transport::{Protocol, Transport};
use crate::will::Will;
use roost_auth::{TokenError, ANONYMOUS};
use roost_protocol::{names, now_millis, Claims, Topic};
use rumqttd::protocol::{
    ConnAck, ConnAckProperties, Connect, ConnectProperties, ConnectReturnCode, LastWill, LastWillProperties, Login,
    Packet,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Why a CONNECT is refused; the code sent depends on the version.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    ProtocolVersion,
    ClientId,
    BadCredentials,
    NotAuthorized,
    Busy,
    Unavailable,
    RateExceeded,
    /// The user's own connection cap.
    Quota,
}

impl Refusal {
    fn code(self, version: Version) -> ConnectReturnCode {
        match (self, version) {
            (Refusal::ProtocolVersion, Version::V311) => ConnectReturnCode::RefusedProtocolVersion,
            (Refusal::ProtocolVersion, Version::V5) => ConnectReturnCode::UnsupportedProtocolVersion,
            (Refusal::ClientId, _) => ConnectReturnCode::ClientIdentifierNotValid,
            (Refusal::BadCredentials, _) => ConnectReturnCode::BadUserNamePassword,
            (Refusal::NotAuthorized, _) => ConnectReturnCode::NotAuthorized,
            (Refusal::Busy | Refusal::Unavailable | Refusal::RateExceeded | Refusal::Quota, Version::V311) => {
                ConnectReturnCode::ServiceUnavailable
            }
            (Refusal::RateExceeded, Version::V5) => ConnectReturnCode::ConnectionRateExceeded,
            (Refusal::Busy, Version::V5) => ConnectReturnCode::ServerBusy,
            (Refusal::Quota, Version::V5) => ConnectReturnCode::QuotaExceeded,
            (Refusal::Unavailable, Version::V5) => ConnectReturnCode::ServerUnavailable,
        }
    }
}

/// Serves one socket of listener `protocol` until it closes.
pub(crate) async fn serve(edge: Arc<Edge>, transport: Transport, protocol: Protocol) {
    let mut io = Framed::new(transport, edge.config.max_packet);
    let connect = tokio::time::timeout(edge.config.connect_timeout, io.read_connect()).await;
    let ConnectPacket { connect, properties, will, will_properties, login } = match connect {
        Ok(Ok(packet)) => packet,
        Ok(Err(BeforeConnect::ProtocolLevel(level))) => {
            debug!(level, "unsupported protocol level");
            return send_refusal(&mut io, Refusal::ProtocolVersion, "protocol level").await;
        }
        Ok(Err(e)) => return debug!(error = %e, "connection refused before CONNECT"),
        Err(_) => return debug!("no CONNECT within the connect timeout"),
    };
    let version = io.version();
    if !edge.admit_connect() {
        metrics::counter!("roost_mqtt_connect_rate_limited_total").increment(1);
        return send_refusal(&mut io, Refusal::RateExceeded, "connect rate").await;
    }
    if edge.registry.fenced() {
        return send_refusal(&mut io, Refusal::Unavailable, "cut off from the cluster").await;
    }
    let anonymous_allowed = edge.config.anonymous.iter().any(|name| name == protocol.name());
    let (user, claims) = match authenticate(&edge, login, anonymous_allowed) {
        Ok(identity) => identity,
        Err(refusal) => return send_refusal(&mut io, refusal, "authentication").await,
    };
    let mut assigned_client_id = None;
    let client_id = match connect.client_id.as_str() {
        "" if connect.clean_session || version == Version::V5 => {
            let id = format!("auto-{}", uuid::Uuid::new_v4().simple());
            assigned_client_id = (version == Version::V5).then(|| id.clone());
            id
        }
        id if roost_protocol::topic::is_client_id(id) => id.to_owned(),
        _ => return send_refusal(&mut io, Refusal::ClientId, "client id").await,
    };
    let will = match will {
        None => None,
        Some(will) => match authorize_will(&edge, &user, &client_id, will, will_properties) {
            Ok(will) => will,
            Err(()) => return send_refusal(&mut io, Refusal::NotAuthorized, "will").await,
        },
    };
    let holder = match claims.as_ref() {
        Some(claims) => Holder::User { user: &user, client_id: &client_id, bot: claims.bot.is_some() },
        None => Holder::Anonymous,
    };
    let _slot = match edge.slots.occupy(holder) {
        Ok(slot) => slot,
        Err(Full::Broker) => return send_refusal(&mut io, Refusal::Busy, "max connections").await,
        Err(Full::User) => return send_refusal(&mut io, Refusal::Quota, "max connections per user").await,
    };
    // Session ids carry the user, so equal client ids of different users never collide.
    let claim = edge.registry.claim(&format!("{user}:{client_id}")).await;
    let session_expiry = session_expiry(version, &connect, properties.as_ref(), edge.config.session_expiry_max);
    let stored = match edge.registry.take(&claim.session_id) {
        // a session kept on another node moves here
        Stored::None(router_id) if !connect.clean_session => {
            match Box::pin(edge.session_elsewhere(&claim.session_id)).await {
                Some(subscriptions) => Stored::Live(subscriptions, router_id),
                None => Stored::None(router_id),
            }
        }
        stored => stored,
    };
    let resumed = !connect.clean_session && matches!(stored, Stored::Live(..));
    edge.registry.settle_will(&claim.session_id, resumed);
    let (subscriptions, router_id, router_may_hold_state) = match stored {
        Stored::Live(subscriptions, router_id) if resumed => (subscriptions, router_id, false),
        Stored::Live(_, router_id) | Stored::Expired(router_id) => (Subscriptions::default(), router_id, true),
        Stored::None(router_id) => (Subscriptions::default(), router_id, false),
    };
    let persistent = !session_expiry.is_zero();
    let (tx, rx, _) = match open_link(&edge, &router_id, resumed, persistent, router_may_hold_state).await {
        Ok(link) => link,
        Err(e) => {
            warn!(%user, %client_id, error = %e, "router refused the link");
            edge.registry.give_back(router_id);
            return send_refusal(&mut io, Refusal::Unavailable, "router").await;
        }
    };
    let keepalive = match connect.keep_alive {
        0 => edge.config.keepalive_max,
        requested => Duration::from_secs(requested.into()).min(edge.config.keepalive_max),
    };
    let connack_properties = (version == Version::V5).then(|| ConnAckProperties {
        // a client that asked for longer than the server keeps sessions is told what it got
        session_expiry_interval: properties
            .as_ref()
            .and_then(|p| p.session_expiry_interval)
            .filter(|&asked| Duration::from_secs(asked.into()) > session_expiry)
            .map(|_| u32::try_from(session_expiry.as_secs()).unwrap_or(u32::MAX)),
        receive_max: Some(RECEIVE_MAXIMUM),
        max_qos: None,
        retain_available: Some(1),
        max_packet_size: Some(u32::try_from(edge.config.max_packet).unwrap_or(u32::MAX)),
        assigned_client_identifier: assigned_client_id,
        topic_alias_max: Some(TOPIC_ALIAS_MAXIMUM),
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: Some(1),
        subscription_identifiers_available: Some(1),
        shared_subscription_available: Some(1),
        server_keep_alive: (u64::from(connect.keep_alive) != keepalive.as_secs())
            .then(|| u16::try_from(keepalive.as_secs()).unwrap_or(u16::MAX)),
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    });
    let connack = ConnAck { session_present: resumed, code: ConnectReturnCode::Success };
    if io.send(Packet::ConnAck(connack, connack_properties)).await.is_err() {
        let mut tx = tx;
        let _ = send_batch(&mut tx, [router_disconnect()]).await;
        let kept = (persistent || resumed).then_some((subscriptions, session_expiry));
        return edge.registry.release(&claim.session_id, router_id, kept);
    }
    if user != ANONYMOUS {
        edge.presence.connected(&user, &client_id, claim.generation);
    }
    metrics::counter!("roost_mqtt_connections_total").increment(1);
    info!(%user, %client_id, ?version, "connected");
    let token_deadline = claims.as_ref().map(|claims| {
        Instant::now() + Duration::from_millis(u64::try_from(claims.exp * 1000 - now_millis()).unwrap_or(0))
    });
    let limits = ClientLimits {
        max_packet: properties.as_ref().and_then(|p| p.max_packet_size).map(|size| size as usize),
        receive_max: properties.as_ref().and_then(|p| p.receive_maximum).map_or(usize::MAX, usize::from),
        topic_alias_max: properties.as_ref().and_then(|p| p.topic_alias_max).unwrap_or(0),
    };
    let identity = Identity {
        user,
        client_id,
        generation: claim.generation,
        limits,
        session_expiry,
        bot_token: claims.and_then(|claims| claims.bot),
    };
    let mut session = Session::new(edge, identity, io, tx, subscriptions);
    let exit = session.run(rx, &claim, keepalive, token_deadline).await;
    // the rare paths boxed (here and the session asked of other nodes): their state would
    // otherwise size every connection's task for its whole life
    let told = Box::pin(session.teardown(exit, &claim, router_id, will, persistent || resumed)).await;
    drop(claim);
    if let Some(io) = told {
        io.linger(LINGER).await;
    }
}

/// How long a socket stays open after the server's DISCONNECT.
const LINGER: Duration = Duration::from_secs(1);

/// The user the credentials prove, with its token's claims, or the refusal. Without
/// credentials, on a listener that allows it: [`ANONYMOUS`], no token.
fn authenticate(
    edge: &Edge,
    login: Option<Login>,
    anonymous_allowed: bool,
) -> Result<(String, Option<Claims>), Refusal> {
    let login = match login {
        Some(login) => login,
        None if anonymous_allowed => return Ok((ANONYMOUS.to_owned(), None)),
        None => return Err(Refusal::BadCredentials),
    };
    if !names::is_valid(&login.username) {
        return Err(Refusal::BadCredentials);
    }
    match edge.tokens.verify_for(&login.username, &login.password) {
        Ok(claims) if !edge.policy.membership().admits(&claims.sub, claims.bot.as_deref()) => {
            debug!(user = login.username, "revoked bot token");
            Err(Refusal::BadCredentials)
        }
        Ok(claims) => Ok((login.username, Some(claims))),
        Err(TokenError::WrongUser) => Err(Refusal::NotAuthorized),
        Err(e) => {
            debug!(user = login.username, error = %e, "token refused");
            Err(Refusal::BadCredentials)
        }
    }
}

/// A will is allowed on the connection's own device presence topic (the presence board then
/// stands in for it) or where the operator rules let the user publish.
fn authorize_will(
    edge: &Edge,
    user: &str,
    client_id: &str,
    will: LastWill,
    properties: Option<LastWillProperties>,
) -> Result<Option<Will>, ()> {
    let topic = std::str::from_utf8(&will.topic).map_err(drop)?;
    if Topic::parse(topic) == Some(Topic::Device { user, client_id }) {
        return Ok(None);
    }
    if edge.policy.publish_other(user, topic) && !rumqttd::protocol::has_wildcards(topic) {
        return Ok(Some(Will::new(will, properties)));
    }
    Err(())
}

/// How long the session outlives its connection: MQTT 5 as the client asks (0 by default: it
/// ends with the connection), 3.1.1 persistent sessions as long as `max` allows, like MQTT 5
/// sessions that ask for longer.
fn session_expiry(
    version: Version,
    connect: &Connect,
    properties: Option<&ConnectProperties>,
    max: Duration,
) -> Duration {
    let asked = match version {
        Version::V311 if connect.clean_session => Duration::ZERO,
        Version::V311 => Duration::MAX,
        Version::V5 => match properties.and_then(|p| p.session_expiry_interval).unwrap_or(0) {
            u32::MAX => Duration::MAX,
            seconds => Duration::from_secs(seconds.into()),
        },
    };
    asked.min(max)
}

/// Builds the router link of a session: resumed, fresh and kept, or fresh and clean. State the
/// router may still hold for an expired session is cleared first.
async fn open_link(
    edge: &Edge,
    router_id: &str,
    resumed: bool,
    persistent: bool,
    router_may_hold_state: bool,
) -> Result<Link, LinkFailed> {
    if router_may_hold_state && persistent {
        edge.links.clear(router_id).await?;
    }
    edge.links.build(router_id.to_owned(), !(resumed || persistent)).await
}

async fn send_refusal(io: &mut Framed, refusal: Refusal, why: &str) {
    debug!(?refusal, why, "CONNECT refused");
    metrics::counter!("roost_mqtt_connect_refused_total").increment(1);
    let connack = ConnAck { session_present: false, code: refusal.code(io.version()) };
    let _ = io.send(Packet::ConnAck(connack, None)).await;
}
