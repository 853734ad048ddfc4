//! An established session: authorizes, stamps and routes the client's packets, and delivers the
//! router's forwards with the client's subscription options, in MQTT 3.1.1 or 5.

use crate::acks::RouterAcks;
use crate::chat::Outcome;
use crate::codec::{self, Frame, Version};
use crate::config::{RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM};
use crate::edge::Edge;
use crate::links::{router_disconnect, send_batch};
use crate::registry::Claim;
use crate::route_tag::RouteTag;
use crate::stamp::{Invalid, Rejection};
use crate::subscriptions::{Subscription, Subscriptions};
use crate::transport::Transport;
use crate::will::Will;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use roost_auth::acl::is_roost_namespace;
use roost_auth::rate::TokenBucket;
use roost_auth::{MembershipChange, ANONYMOUS};
use roost_protocol::{now_millis, to_payload, InboxNotice, Topic};
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{
    valid_filter, Disconnect, DisconnectProperties, DisconnectReasonCode, Filter, Packet, PingResp, PubAck,
    PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, PubRel, Publish, PublishProperties, QoS,
    RetainForwardRule, SubAck, Subscribe, SubscribeProperties, SubscribeReasonCode, UnsubAck, UnsubAckReason,
    Unsubscribe,
};
use rumqttd::{Forward, Notification};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Exit {
    /// The client sent DISCONNECT; MQTT 5 reason 0x04 asks for the will all the same.
    #[error("client sent DISCONNECT")]
    Disconnected { with_will: bool },
    #[error("socket closed: {0}")]
    Closed(String),
    #[error("keepalive expired")]
    KeepAlive,
    #[error("another connection took the client id")]
    TakenOver,
    #[error("server shutting down")]
    ShuttingDown,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("malformed packet: {0}")]
    Malformed(String),
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

impl Exit {
    /// What an MQTT 5 client is told in the server's DISCONNECT; `None`: no DISCONNECT.
    fn reason(&self) -> Option<(DisconnectReasonCode, &'static str)> {
        use DisconnectReasonCode as Code;
        Some(match self {
            Exit::Disconnected { .. } | Exit::Closed(_) => return None,
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

/// How many publishes delivered once for overlapping filters a session remembers: the other
/// filters' copies arrive right behind the first.
const DELIVERED_ONCE_KEPT: usize = 256;

/// Inbox notices of refused publishes one connection causes per second (burst as many); the
/// MQTT 5 reason code still answers every refusal.
const NOTICES_PER_SECOND: u32 = 20;

/// An acknowledgement owed to the client, sent in the order the publishes arrived.
/// Reason codes only: the Paho interoperability client rejects acknowledgements that carry
/// properties, and the reason reaches users on their inbox anyway.
struct Ack {
    pkid: u16,
    qos: u8,
    reason: PubAckReason,
}

impl Ack {
    fn packet(self) -> Packet {
        let Ack { pkid, qos, reason } = self;
        if qos == 1 {
            return Packet::PubAck(PubAck { pkid, reason }, None);
        }
        let reason = match reason {
            PubAckReason::Success => PubRecReason::Success,
            PubAckReason::NotAuthorized => PubRecReason::NotAuthorized,
            PubAckReason::QuotaExceeded => PubRecReason::QuotaExceeded,
            PubAckReason::PayloadFormatInvalid => PubRecReason::PayloadFormatInvalid,
            _ => PubRecReason::UnspecifiedError,
        };
        Packet::PubRec(PubRec { pkid, reason }, None)
    }
}

/// A pending acknowledgement: resolves to the ack and whether it may be sent (a message the
/// store never confirmed is not acknowledged; the client sends it again).
type PendingAck = Pin<Box<dyn Future<Output = (Ack, bool)> + Send>>;

/// What became of a client publish.
enum Routed {
    /// Handed to the router; for a chat message, with the store's confirmation.
    Accepted(Option<oneshot::Receiver<()>>),
    /// Dropped, for this reason.
    Refused(Rejection),
}

/// A SUBSCRIBE waiting for the router to take its filters.
struct PendingSubscribe {
    codes: Vec<SubscribeReasonCode>,
    awaiting: usize,
    /// Presence filters whose retained state the edge replays after the SUBACK.
    presence_replays: Vec<String>,
}

/// Who a session belongs to and what it agreed at CONNECT.
pub(crate) struct Identity {
    pub(crate) version: Version,
    pub(crate) user: String,
    pub(crate) client_id: String,
    /// The generation of the connection's claim: the origin no-local compares against.
    pub(crate) generation: u64,
    /// The largest packet the client accepts (MQTT 5).
    pub(crate) client_max_packet: Option<usize>,
    /// The most unacknowledged QoS 1 and 2 deliveries the client accepts (MQTT 5; 3.1.1: no limit).
    pub(crate) client_receive_max: usize,
    /// The most topic aliases the client accepts from the server (MQTT 5; 0: none).
    pub(crate) client_topic_alias_max: u16,
    /// How long the session outlives the connection.
    pub(crate) session_expiry: Duration,
    /// The id a bot's token carries (`None`: a user's token).
    pub(crate) bot_token: Option<String>,
}

/// The state of an established session.
pub(crate) struct Session {
    edge: Arc<Edge>,
    identity: Identity,
    transport: Transport,
    tx: LinkTx,
    rbuf: BytesMut,
    /// Bytes for the client, written once per event.
    wbuf: BytesMut,
    /// Packets for the router, sent once per event.
    out: Vec<Packet>,
    pending_subs: HashMap<u16, PendingSubscribe>,
    pending_acks: FuturesOrdered<PendingAck>,
    /// QoS 1 publishes of the client not yet acknowledged.
    unacked_qos1: usize,
    /// QoS 2 packet ids received and not yet released: a resend is not processed twice.
    qos2_received: HashSet<u16>,
    subscriptions: Subscriptions,
    router_acks: RouterAcks,
    topic_aliases: HashMap<u16, Bytes>,
    /// Topic aliases the edge set for the client (MQTT 5), by topic.
    client_aliases: HashMap<Bytes, u16>,
    /// QoS 1 and 2 deliveries the client has not acknowledged yet.
    client_in_flight: usize,
    /// Encoded QoS 1 and 2 deliveries waiting for the client's receive maximum to allow them.
    held: VecDeque<Bytes>,
    /// The newest publishes delivered once for several overlapping filters.
    delivered_once: VecDeque<u64>,
    /// Publishes this connection may still send now (`None`: no rate limit).
    publish_budget: Option<TokenBucket>,
    /// Inbox notices of refused publishes this connection may still cause now.
    notice_budget: TokenBucket,
    changes: broadcast::Receiver<MembershipChange>,
    /// The ACL's last answer for a delivered topic.
    last_verdict: Verdict,
}

/// May this session's user receive on `topic`, as of membership `version` (`None`: not asked yet).
#[derive(Default)]
struct Verdict {
    version: Option<u64>,
    topic: Vec<u8>,
    allowed: bool,
}

impl Session {
    pub(crate) fn new(
        edge: Arc<Edge>,
        identity: Identity,
        transport: Transport,
        tx: LinkTx,
        rbuf: BytesMut,
        subscriptions: Subscriptions,
    ) -> Self {
        // rumqttd restores a resumed session's filters but not their identifiers
        let out = subscriptions.iter().map(|(path, subscription)| router_subscribe(0, path, subscription)).collect();
        Self {
            changes: edge.policy.membership().changes(),
            last_verdict: Verdict::default(),
            publish_budget: edge.config.max_publish_rate.map(TokenBucket::new),
            notice_budget: TokenBucket::new(NOTICES_PER_SECOND),
            edge,
            identity,
            transport,
            tx,
            rbuf,
            wbuf: BytesMut::new(),
            out,
            pending_subs: HashMap::new(),
            pending_acks: FuturesOrdered::new(),
            unacked_qos1: 0,
            qos2_received: HashSet::new(),
            subscriptions,
            router_acks: RouterAcks::default(),
            topic_aliases: HashMap::new(),
            client_aliases: HashMap::new(),
            client_in_flight: 0,
            held: VecDeque::new(),
            delivered_once: VecDeque::new(),
        }
    }

    fn user(&self) -> &str {
        &self.identity.user
    }

    /// Serves the session until it ends: at the latest at `token_expiry`, when there is one.
    pub(crate) async fn run(
        &mut self,
        mut rx: LinkRx,
        claim: &Claim,
        keepalive: Duration,
        token_expiry: Option<Instant>,
    ) -> Exit {
        let grace = keepalive + keepalive / 2;
        let mut last_read = Instant::now();
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        let token_expired = async move {
            match token_expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(token_expired);
        // a revocation between the CONNECT's check and `new` subscribing to changes shows here
        if let Err(exit) = self.admitted() {
            return exit;
        }
        loop {
            let step = tokio::select! {
                _ = claim.kicked.notified() => {
                    Err(if self.edge.registry.shutting_down() { Exit::ShuttingDown } else { Exit::TakenOver })
                }
                _ = &mut token_expired => Err(Exit::TokenExpired),
                read = self.transport.read(&mut self.rbuf) => match read {
                    Ok(0) => Err(Exit::Closed("closed by client".into())),
                    Ok(_) => {
                        last_read = Instant::now();
                        self.on_bytes().await
                    }
                    Err(e) => Err(Exit::Closed(e.to_string())),
                },
                notification = rx.next() => match notification {
                    Ok(first) => self.on_notifications(&mut rx, first).await,
                    Err(_) => Err(Exit::RouterGone),
                },
                Some((ack, send)) = self.pending_acks.next(), if !self.pending_acks.is_empty() => {
                    self.on_ack(ack, send);
                    Ok(())
                }
                change = self.changes.recv() => self.on_membership(change),
                _ = &mut deadline => {
                    if last_read.elapsed() >= grace {
                        Err(Exit::KeepAlive)
                    } else {
                        deadline.as_mut().reset(last_read + grace);
                        Ok(())
                    }
                }
            };
            let flushed = self.flush().await;
            if let Err(exit) = step.and(flushed) {
                return exit;
            }
        }
    }

    /// Sends what the last event produced: router packets first, then bytes for the client.
    async fn flush(&mut self) -> Result<(), Exit> {
        if !self.out.is_empty() {
            send_batch(&mut self.tx, self.out.drain(..)).await.map_err(|_| Exit::RouterGone)?;
        }
        if !self.wbuf.is_empty() {
            self.transport.write_all(&self.wbuf).await.map_err(|e| Exit::Closed(e.to_string()))?;
            self.wbuf.clear();
        }
        Ok(())
    }

    fn write(&mut self, packet: Packet) {
        codec::write(packet, &mut self.wbuf, self.identity.version);
    }

    /// Handles every complete packet in the read buffer.
    async fn on_bytes(&mut self) -> Result<(), Exit> {
        let mut published = false;
        loop {
            let frame =
                codec::next_frame(&mut self.rbuf, self.edge.config.max_packet, self.identity.version).map_err(|e| {
                    match e {
                        rumqttd::protocol::Error::PayloadSizeLimitExceeded(_) => Exit::PacketTooLarge,
                        e => Exit::Malformed(e.to_string()),
                    }
                })?;
            match frame {
                None if published => {
                    // Sockets that became readable together wake their connections together, and
                    // tokio polls the last one woken first. Publishes wait one turn, so that a
                    // SUBSCRIBE that arrived just before them on another connection reaches the
                    // router first, as it would on a broker reading its sockets in order.
                    tokio::task::yield_now().await;
                    return Ok(());
                }
                None => return Ok(()),
                Some(Frame::Publish { publish, properties, qos, pkid }) => {
                    published = true;
                    self.on_publish(publish, properties, qos, pkid).await?
                }
                Some(Frame::Other(packet)) => self.on_packet(packet)?,
            }
        }
    }

    fn on_packet(&mut self, packet: Packet) -> Result<(), Exit> {
        match packet {
            Packet::PubAck(PubAck { pkid, .. }, _) => {
                self.router_acks.acknowledged(pkid, &mut self.out);
                self.release_held();
            }
            Packet::PubRec(PubRec { pkid, .. }, _) => self.router_acks.acknowledged(pkid, &mut self.out),
            Packet::PubComp(complete, _) => {
                self.router_acks.completed(complete.pkid, &mut self.out);
                self.release_held();
            }
            Packet::PubRel(release, _) => {
                self.qos2_received.remove(&release.pkid);
                let complete = PubComp { pkid: release.pkid, reason: PubCompReason::Success };
                self.write(Packet::PubComp(complete, None));
            }
            Packet::Subscribe(subscribe, properties) => self.on_subscribe(subscribe, properties),
            Packet::Unsubscribe(unsubscribe, _) => {
                // the router acks only filters it knew; the edge answers every UNSUBSCRIBE itself
                let reasons = unsubscribe
                    .filters
                    .iter()
                    .map(|filter| match self.subscriptions.remove(filter) {
                        true => UnsubAckReason::Success,
                        false => UnsubAckReason::NoSubscriptionExisted,
                    })
                    .collect();
                self.write(Packet::UnsubAck(UnsubAck { pkid: unsubscribe.pkid, reasons }, None));
                self.out.push(Packet::Unsubscribe(unsubscribe, None));
            }
            Packet::PingReq(_) => self.write(Packet::PingResp(PingResp)),
            Packet::Disconnect(disconnect, properties) => {
                if let Some(seconds) = properties.and_then(|p| p.session_expiry_interval) {
                    self.identity.session_expiry =
                        Duration::from_secs(seconds.into()).min(self.edge.config.session_expiry_max);
                }
                let with_will = disconnect.reason_code == DisconnectReasonCode::DisconnectWithWillMessage;
                return Err(Exit::Disconnected { with_will });
            }
            other => return Err(Exit::Protocol(format!("unexpected packet {other:?}"))),
        }
        Ok(())
    }

    async fn on_publish(
        &mut self,
        publish: Publish,
        properties: Option<PublishProperties>,
        qos: u8,
        pkid: u16,
    ) -> Result<(), Exit> {
        if qos == 2 && self.qos2_received.contains(&pkid) {
            let ack = Ack { pkid, qos, reason: PubAckReason::Success };
            self.write(ack.packet());
            return Ok(());
        }
        if let Some(budget) = &mut self.publish_budget {
            if !budget.take() {
                metrics::counter!("roost_mqtt_rate_limited_total").increment(1);
                return Err(Exit::RateLimited(budget.rate));
            }
        }
        let in_flight = self.unacked_qos1 + self.qos2_received.len();
        if qos > 0 && self.identity.version == Version::V5 && in_flight >= usize::from(RECEIVE_MAXIMUM) {
            return Err(Exit::ReceiveMaximum);
        }
        let routed = self.route(publish, properties, qos).await?;
        if qos == 0 {
            return Ok(());
        }
        let success = Ack { pkid, qos, reason: PubAckReason::Success };
        let pending: PendingAck = match routed {
            Routed::Accepted(stored) => {
                if qos == 2 {
                    self.qos2_received.insert(pkid);
                }
                match stored {
                    // the durability promise: acknowledged means stored
                    Some(stored) => Box::pin(stored.map(|done| (success, done.is_ok()))),
                    None => Box::pin(std::future::ready((success, true))),
                }
            }
            Routed::Refused(rejection) => {
                let ack = Ack { pkid, qos, reason: rejection.reason() };
                Box::pin(std::future::ready((ack, true)))
            }
        };
        if qos == 1 {
            self.unacked_qos1 += 1;
        }
        self.pending_acks.push_back(pending);
        Ok(())
    }

    fn on_ack(&mut self, ack: Ack, send: bool) {
        if ack.qos == 1 {
            self.unacked_qos1 -= 1;
        }
        if send {
            self.write(ack.packet());
        }
    }

    /// Resolves the topic (MQTT 5 topic aliases first), authorizes, validates and, on chat
    /// topics, stamps one client publish, and queues it for the router.
    async fn route(
        &mut self,
        publish: Publish,
        mut properties: Option<PublishProperties>,
        qos: u8,
    ) -> Result<Routed, Exit> {
        let mut topic = publish.topic.clone();
        if let Some(properties) = properties.as_mut() {
            if !properties.subscription_identifiers.is_empty() {
                return Err(Exit::Protocol("a client PUBLISH carries a subscription identifier".into()));
            }
            if let Some(alias) = properties.topic_alias.take() {
                if alias == 0 || alias > TOPIC_ALIAS_MAXIMUM {
                    return Err(Exit::TopicAlias);
                }
                if topic.is_empty() {
                    topic = self.topic_aliases.get(&alias).cloned().ok_or(Exit::TopicAlias)?;
                } else {
                    self.topic_aliases.insert(alias, topic.clone());
                }
            }
        }
        RouteTag::strip(&mut properties);
        let Ok(raw_topic) = std::str::from_utf8(&topic) else {
            return Err(Exit::Protocol("topic is not UTF-8".into()));
        };
        if raw_topic.is_empty() || rumqttd::protocol::has_wildcards(raw_topic) {
            return Err(Exit::Protocol(format!("invalid topic name '{raw_topic}'")));
        }
        let raw_topic = raw_topic.to_owned();
        let expires_at = RouteTag::deadline(&properties);
        if publish.payload.len() > self.edge.config.max_payload {
            let message = format!("payloads are limited to {} bytes", self.edge.config.max_payload);
            return Ok(self.refuse(&raw_topic, Invalid::new(Rejection::PayloadTooLarge, message)));
        }
        let Some(chat_topic) = Topic::parse(&raw_topic) else {
            if !self.edge.policy.publish_other(self.user(), &raw_topic) {
                let why = Invalid::new(Rejection::Forbidden, "no rule lets you publish on this topic");
                return Ok(self.refuse(&raw_topic, why));
            }
            let origin = self.subscriptions.any_no_local().then_some(self.identity.generation);
            let message = Some(self.edge.next_message_id());
            RouteTag { qos, retain: publish.retain, origin, expires_at, message }.attach(&mut properties);
            self.out.push(Packet::Publish(Publish::new(topic, publish.payload, publish.retain), properties));
            return Ok(Routed::Accepted(None));
        };
        let (payload, stored) = match self
            .edge
            .chat
            .publish(&self.identity.user, &self.identity.client_id, &chat_topic, &raw_topic, &publish.payload)
            .await
        {
            Outcome::Deliver { payload, stored } => (payload, stored),
            Outcome::Again { stored } => return Ok(Routed::Accepted(Some(stored))),
            Outcome::Dropped => return Ok(Routed::Accepted(None)),
            Outcome::Refused(why) => return Ok(self.refuse(&raw_topic, why)),
        };
        if expires_at.is_some() {
            // stamped messages go out at the subscription's QoS; only the deadline travels
            RouteTag { qos: 2, retain: false, origin: None, expires_at, message: None }.attach(&mut properties);
        }
        self.out.push(Packet::Publish(codec::publish(raw_topic, payload, false), properties));
        Ok(Routed::Accepted(stored))
    }

    /// Drops a publish and tells the sender why: an MQTT 5 reason code on its acknowledgement
    /// and, for users, a notice on its inbox (the only signal 3.1.1 and QoS 0 have).
    fn refuse(&mut self, topic: &str, why: Invalid) -> Routed {
        let rejection = why.rejection;
        debug!(user = self.user(), topic, code = rejection.code(), "publish rejected");
        metrics::counter!("roost_publishes_rejected_total", "code" => rejection.code()).increment(1);
        if self.user() != ANONYMOUS {
            let notice = InboxNotice::Rejected {
                topic: topic.to_owned(),
                id: None,
                code: rejection.code().into(),
                message: why.message,
                ts: now_millis(),
            };
            let inbox = Topic::Inbox(self.user()).to_string();
            // nobody reading the inbox: the router is not asked to match a topic for no one; a
            // flood of refused publishes gets the first notices of each second, not a queue
            if self.edge.router_filters.wanted(&inbox) {
                if self.notice_budget.take() {
                    self.edge.server.publish(inbox, to_payload(&notice));
                } else {
                    metrics::counter!("roost_inbox_notices_dropped_total").increment(1);
                }
            }
        }
        Routed::Refused(rejection)
    }

    /// A filter on one device's status (`presence/{user}/{client_id}`) must name a device that
    /// is connected now: the distinct filters anyone can make are bounded by live devices
    /// (`presence/{user}/+` follows every device of a user, present and future).
    fn names_a_live_device(&self, filter: &str) -> bool {
        match filter.split('/').collect::<Vec<_>>().as_slice() {
            ["presence", owner, device] if *device != "+" => self.edge.presence.is_online(owner, device),
            _ => true,
        }
    }

    fn on_subscribe(&mut self, subscribe: Subscribe, properties: Option<SubscribeProperties>) {
        let client_id = properties.and_then(|p| p.id);
        let v5 = self.identity.version == Version::V5;
        let mut pending = PendingSubscribe { codes: Vec::new(), awaiting: 0, presence_replays: Vec::new() };
        for filter in subscribe.filters {
            let path = filter.path;
            let held = self.subscriptions.get(&path).map(|held| held.router_qos);
            let full = held.is_none() && self.subscriptions.len() >= self.edge.config.max_subscriptions;
            let refused = if full {
                Some(if v5 { SubscribeReasonCode::QuotaExceeded } else { SubscribeReasonCode::Failure })
            } else if !valid_filter(&path)
                || !self.edge.policy.subscribe(self.user(), &path)
                || !self.names_a_live_device(&path)
            {
                // chat rules answer 0x87; the operator's rules 0x80, what generic clients (the Paho
                // interoperability suite among them) expect of a broker ACL
                Some(if v5 && is_roost_namespace(&path) {
                    SubscribeReasonCode::NotAuthorized
                } else {
                    SubscribeReasonCode::Failure
                })
            } else if held.is_none() && !self.edge.router_filters.admit(self.user(), &path) {
                Some(if v5 { SubscribeReasonCode::QuotaExceeded } else { SubscribeReasonCode::Failure })
            } else {
                None
            };
            if let Some(code) = refused {
                debug!(user = self.user(), filter = path, ?code, "subscription denied");
                metrics::counter!("roost_subscriptions_denied_total").increment(1);
                pending.codes.push(code);
                continue;
            }
            let send_retained = match filter.retain_forward_rule {
                RetainForwardRule::OnEverySubscribe => true,
                RetainForwardRule::OnNewSubscribe => held.is_none(),
                RetainForwardRule::Never => false,
            };
            // rumqttd replays retained messages only to a filter it did not hold, and keeps the
            // QoS it first saw: renewing elsewhere than Roost's topics (whose retained state the
            // edge replays) starts the filter afresh in the router
            let renew_in_router = held.is_some() && send_retained && !is_roost_namespace(&path);
            let qos = filter.qos as u8;
            let router_qos = match held {
                Some(router_qos) if !renew_in_router => router_qos,
                _ => qos,
            };
            let subscription = Subscription {
                qos,
                router_qos,
                no_local: filter.nolocal,
                retain_as_published: filter.preserve_retain,
                send_retained,
                client_id,
                internal_id: 0,
            };
            let router_subscribe =
                router_subscribe(subscribe.pkid, &path, self.subscriptions.grant(&path, subscription));
            if renew_in_router {
                self.subscriptions.reread(&path);
                let unsubscribe = Unsubscribe { pkid: subscribe.pkid, filters: vec![path.clone()] };
                self.out.push(Packet::Unsubscribe(unsubscribe, None));
            }
            if path.starts_with("presence/") && send_retained {
                pending.presence_replays.push(path);
            }
            self.out.push(router_subscribe);
            pending.awaiting += 1;
            pending.codes.push(SubscribeReasonCode::Success(filter.qos));
        }
        if pending.awaiting == 0 {
            self.write(Packet::SubAck(SubAck { pkid: subscribe.pkid, return_codes: pending.codes }, None));
        } else {
            self.pending_subs.insert(subscribe.pkid, pending);
        }
    }

    /// Writes the router's notifications to the client, draining what is already queued.
    async fn on_notifications(&mut self, rx: &mut LinkRx, first: Option<Notification>) -> Result<(), Exit> {
        let mut next = first;
        let mut parked = false;
        // a deadline already past: take only what is queued
        let queued_only = std::time::Instant::now();
        loop {
            match next.take() {
                Some(Notification::Forward(forward)) => self.deliver(forward)?,
                Some(Notification::DeviceAck(ack)) => match Packet::from(ack) {
                    Packet::SubAck(suback, _) => self.on_router_suback(suback.pkid),
                    Packet::PubRel(release, _) => self.on_router_release(release),
                    _ => {}
                },
                Some(Notification::Unschedule) => parked = true,
                Some(Notification::Disconnect(..)) => return Err(Exit::RouterGone),
                Some(_) | None => {}
            }
            match rx.recv_deadline(queued_only) {
                Ok(Some(notification)) => next = Some(notification),
                _ => break,
            }
        }
        // the router parked this link; resume only once the bytes reached the socket
        self.flush().await?;
        if parked {
            rx.wake().await.map_err(|_| Exit::RouterGone)?;
        }
        Ok(())
    }

    /// Delivers a forward as the subscription it matched asks: at the lower of the publish's and
    /// the subscription's QoS, without the client's own publishes on no-local filters, expired
    /// messages or unwanted retained ones. Membership is checked on every delivery. Forwards the
    /// client does not get at the router's QoS are acknowledged to the router in its place.
    /// Messages the router dropped before this subscriber read them are counted; for a QoS 1 or
    /// 2 subscription they end the connection, a gap its client hears of.
    fn deliver(&mut self, forward: Forward) -> Result<(), Exit> {
        let Forward { cursor, mut publish, mut properties, .. } = forward;
        let tag = RouteTag::take(&mut properties);
        // the router's identifiers are the edge's internal ones: taken off before the client sees them
        let internal_id =
            properties.as_mut().and_then(|p| std::mem::take(&mut p.subscription_identifiers).first().copied());
        let subscription = match internal_id {
            Some(id) => self.subscriptions.by_internal_id(id),
            None => {
                std::str::from_utf8(&publish.topic).ok().and_then(|topic| self.subscriptions.all_matching(topic).next())
            }
        };
        let subscription = subscription.cloned();
        let Some(subscription) = subscription else {
            // a forward for a filter the session no longer holds
            metrics::counter!("roost_mqtt_unheld_forwards_total").increment(1);
            let (router_qos, pkid) = codec::outgoing_qos_pkid(&publish);
            if router_qos > 0 {
                self.router_acks.forwarded(pkid, router_qos, None, &mut self.out);
            }
            return Ok(());
        };
        if let (Some((_, offset)), Some(id)) = (cursor, internal_id) {
            let skipped = self.subscriptions.skipped_before(id, offset);
            if skipped > 0 {
                metrics::counter!("roost_mqtt_messages_skipped_total").increment(skipped);
                warn!(
                    user = self.user(),
                    skipped,
                    qos = subscription.qos,
                    "the router dropped messages of a slow subscriber"
                );
                if subscription.qos > 0 {
                    return Err(Exit::SlowSubscriber(skipped));
                }
            }
        }
        let router_qos = subscription.router_qos;
        // overlapping filters: one delivery, at the highest QoS granted, with every identifier
        let (mut granted_qos, mut client_ids) = (subscription.qos, Vec::from_iter(subscription.client_id));
        let mut duplicate = false;
        if let (Some(message), true) = (tag.and_then(|t| t.message), self.subscriptions.len() > 1) {
            let topic = std::str::from_utf8(&publish.topic).unwrap_or_default();
            let overlapping: Vec<&Subscription> = self.subscriptions.all_matching(topic).collect();
            if overlapping.len() > 1 {
                duplicate = self.delivered_once.contains(&message);
                granted_qos = overlapping.iter().map(|s| s.qos).max().unwrap_or(granted_qos);
                client_ids = overlapping.iter().filter_map(|s| s.client_id).collect();
                if !duplicate {
                    if self.delivered_once.len() == DELIVERED_ONCE_KEPT {
                        self.delivered_once.pop_front();
                    }
                    self.delivered_once.push_back(message);
                }
            }
        }
        let expires_at = tag.and_then(|t| t.expires_at);
        // the clock is read only for messages that expire
        let now = if expires_at.is_some() { now_millis() } else { 0 };
        let snapshot = publish.retain;
        let wanted = self.may_receive(&publish.topic)
            && expires_at.is_none_or(|at| at > now)
            && !(subscription.no_local && tag.and_then(|t| t.origin) == Some(self.identity.generation))
            && (!snapshot || subscription.send_retained)
            && !duplicate;
        let mut client_qos = wanted.then(|| router_qos.min(granted_qos).min(tag.map_or(2, |t| t.qos)));
        let mut pkid = 0;
        if let Some(qos) = client_qos {
            if !client_ids.is_empty() {
                properties.get_or_insert_with(Default::default).subscription_identifiers = client_ids;
            }
            if let Some(at) = expires_at {
                let left = u32::try_from((at - now + 999) / 1000).unwrap_or(u32::MAX);
                properties.get_or_insert_with(Default::default).message_expiry_interval = Some(left);
            }
            if !snapshot && subscription.retain_as_published && tag.is_some_and(|t| t.retain) {
                publish.retain = true;
            }
            let hold = qos > 0 && self.client_in_flight >= self.identity.client_receive_max;
            if !hold {
                self.alias_topic(&mut publish, &mut properties);
            }
            let start = self.wbuf.len();
            if qos == router_qos {
                self.write(Packet::Publish(publish, properties));
                pkid = codec::encoded_qos_pkid(&self.wbuf[start..]).1;
            } else {
                pkid = codec::outgoing_qos_pkid(&publish).1;
                self.write(Packet::Publish(codec::with_qos(&publish, qos, pkid), properties));
            }
            if self.identity.client_max_packet.is_some_and(|max| self.wbuf.len() - start > max) {
                self.wbuf.truncate(start);
                client_qos = None;
            } else if hold {
                let frame = self.wbuf.split_off(start).freeze();
                self.held.push_back(frame);
            } else if qos > 0 {
                self.client_in_flight += 1;
            }
        } else if router_qos > 0 {
            pkid = codec::outgoing_qos_pkid(&publish).1;
        }
        if router_qos > 0 {
            self.router_acks.forwarded(pkid, router_qos, client_qos, &mut self.out);
        }
        Ok(())
    }

    /// The ACL's answer for a delivery on `topic`, asked again only when the topic or the
    /// membership view moved since the last delivery: a fan-out delivers run after run on one topic.
    fn may_receive(&mut self, topic: &[u8]) -> bool {
        let version = self.edge.policy.membership().version();
        let last = &mut self.last_verdict;
        if last.version != Some(version) || last.topic != topic {
            last.allowed =
                std::str::from_utf8(topic).is_ok_and(|t| self.edge.policy.may_receive(&self.identity.user, t));
            last.version = Some(version);
            last.topic.clear();
            last.topic.extend_from_slice(topic);
        }
        last.allowed
    }

    /// Replaces the topic of a delivery by an alias when the client accepts them (MQTT 5): the
    /// first delivery on a topic sets the alias, later ones send it alone.
    fn alias_topic(&mut self, publish: &mut Publish, properties: &mut Option<PublishProperties>) {
        let max = self.identity.client_topic_alias_max;
        let alias = match self.client_aliases.get(&publish.topic) {
            Some(&alias) => {
                publish.topic = Bytes::new();
                alias
            }
            None if self.client_aliases.len() < usize::from(max) => {
                let alias = self.client_aliases.len() as u16 + 1;
                self.client_aliases.insert(publish.topic.clone(), alias);
                alias
            }
            None => return,
        };
        properties.get_or_insert_with(Default::default).topic_alias = Some(alias);
    }

    /// The client acknowledged a delivery: one held back by its receive maximum may go.
    fn release_held(&mut self) {
        self.client_in_flight = self.client_in_flight.saturating_sub(1);
        while self.client_in_flight < self.identity.client_receive_max {
            let Some(frame) = self.held.pop_front() else { break };
            self.wbuf.extend_from_slice(&frame);
            self.client_in_flight += 1;
        }
    }

    /// The router released a QoS 2 forward: the client completes it, unless the edge does.
    fn on_router_release(&mut self, release: PubRel) {
        if self.router_acks.router_released(release.pkid, &mut self.out) {
            self.write(Packet::PubRel(release, None));
        }
    }

    /// The router took one filter of SUBSCRIBE `pkid`; once it took them all, the client
    /// gets its SUBACK and the presence state it subscribed to.
    fn on_router_suback(&mut self, pkid: u16) {
        let Some(pending) = self.pending_subs.get_mut(&pkid) else { return };
        pending.awaiting -= 1;
        if pending.awaiting > 0 {
            return;
        }
        let Some(pending) = self.pending_subs.remove(&pkid) else { return };
        self.write(Packet::SubAck(SubAck { pkid, return_codes: pending.codes }, None));
        for filter in pending.presence_replays {
            for (topic, payload) in self.edge.presence.retained(self.user(), &filter) {
                self.write(Packet::Publish(codec::publish(topic, payload, true), None));
            }
        }
    }

    /// `Exit::Revoked` once a bot's token is no longer the live one.
    fn admitted(&self) -> Result<(), Exit> {
        let membership = self.edge.policy.membership();
        if membership.admits(&self.identity.user, self.identity.bot_token.as_deref()) {
            Ok(())
        } else {
            Err(Exit::Revoked)
        }
    }

    /// A member removed from a room loses its subscriptions to the room at once.
    fn on_membership(&mut self, change: Result<MembershipChange, broadcast::error::RecvError>) -> Result<(), Exit> {
        // a bot's connection ends with its token, whichever change it missed
        self.admitted()?;
        let Ok(MembershipChange::Removed { room, user }) = change else {
            return Ok(());
        };
        if user != self.identity.user {
            return Ok(());
        }
        let revoked = self.subscriptions.filters_starting_with(&format!("rooms/{room}/"));
        for filter in &revoked {
            self.subscriptions.remove(filter);
        }
        if !revoked.is_empty() {
            debug!(user, room, "subscriptions revoked");
            self.out.push(Packet::Unsubscribe(Unsubscribe { pkid: 0, filters: revoked }, None));
        }
        Ok(())
    }

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
    ) -> Option<Transport> {
        let Identity { version, ref user, ref client_id, session_expiry, .. } = self.identity;
        if user != ANONYMOUS {
            self.edge.presence.disconnected(user, client_id, claim.generation);
        }
        if let Some(will) = will.filter(|_| exit.publishes_will()) {
            let delay = will.delay().min(session_expiry);
            if delay.is_zero() {
                will.publish(&self.edge.server);
            } else {
                let server = self.edge.server.clone();
                self.edge.registry.defer_will(&claim.session_id, delay, move || will.publish(&server));
            }
        }
        if !matches!(exit, Exit::RouterGone) {
            self.out.push(router_disconnect());
            let _ = send_batch(&mut self.tx, self.out.drain(..)).await;
        }
        let kept = kept.then(|| (std::mem::take(&mut self.subscriptions), session_expiry));
        self.edge.registry.release(&claim.session_id, router_id, kept);
        let told = match (version, exit.reason()) {
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
                self.write(Packet::Disconnect(Disconnect { reason_code }, Some(properties)));
                true
            }
            _ => false,
        };
        if !self.wbuf.is_empty() {
            let _ = self.transport.write_all(&self.wbuf).await;
        }
        info!(user = self.identity.user, client_id = self.identity.client_id, reason = %exit, "disconnected");
        told.then_some(self.transport)
    }
}

/// The router's SUBSCRIBE for one filter, tagged with the filter's internal identifier.
fn router_subscribe(pkid: u16, path: &str, subscription: &Subscription) -> Packet {
    let qos = rumqttd::protocol::qos(subscription.router_qos).unwrap_or(QoS::AtMostOnce);
    let filter = Filter {
        path: path.to_owned(),
        qos,
        nolocal: false,
        preserve_retain: false,
        retain_forward_rule: RetainForwardRule::OnNewSubscribe,
    };
    let tag = SubscribeProperties { id: Some(subscription.internal_id), user_properties: Vec::new() };
    Packet::Subscribe(Subscribe { pkid, filters: vec![filter] }, Some(tag))
}
