//! One client connection: CONNECT and authentication, then the session loop that authorizes,
//! stamps and routes client packets and delivers the router's forwards.

use crate::codec::{self, Frame};
use crate::listener::Edge;
use crate::registry::Claim;
use crate::stamp::{self, Accepted, Invalid};
use crate::transport::Transport;
use bytes::BytesMut;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use roost_auth::{Decision, MembershipChange, TokenError};
use roost_history::Record;
use roost_protocol::{names, now_millis, to_payload, InboxNotice, Topic};
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{
    valid_filter, ConnAck, Connect, ConnectReturnCode, Disconnect, DisconnectReasonCode, Filter, LastWill, Login,
    Packet, PingResp, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, Publish, QoS,
    RetainForwardRule, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use rumqttd::Notification;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum Exit {
    #[error("client sent DISCONNECT")]
    Clean,
    #[error("socket closed: {0}")]
    Closed(String),
    #[error("keepalive expired")]
    KeepAlive,
    /// Another connection took the client id, or the server is shutting down.
    #[error("taken over or shut down")]
    Kicked,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("router dropped the link")]
    RouterGone,
    /// The access token the connection authenticated with has expired.
    #[error("token expired")]
    TokenExpired,
    #[error("publish rate above {0} per second")]
    RateLimited(u32),
}

/// An acknowledgement owed to the client, sent in the order the publishes arrived.
enum Ack {
    PubAck(u16),
    PubRec(u16),
}

impl Ack {
    fn packet(self) -> Packet {
        match self {
            Ack::PubAck(pkid) => Packet::PubAck(PubAck { pkid, reason: PubAckReason::Success }, None),
            Ack::PubRec(pkid) => Packet::PubRec(PubRec { pkid, reason: PubRecReason::Success }, None),
        }
    }
}

type PendingAck = Pin<Box<dyn Future<Output = Option<Ack>> + Send>>;

/// Serves one socket until it closes.
pub(crate) async fn serve(edge: Arc<Edge>, mut transport: Transport) {
    let mut rbuf = BytesMut::with_capacity(4096);
    let connect =
        tokio::time::timeout(edge.config.connect_timeout, read_connect(&edge, &mut transport, &mut rbuf)).await;
    let (connect, will, login) = match connect {
        Ok(Ok(Some(parts))) => parts,
        Ok(Ok(None)) => return,
        Ok(Err(reason)) => return debug!(reason, "connection refused before CONNECT"),
        Err(_) => return debug!("no CONNECT within the connect timeout"),
    };
    let (user, token_expiry) = match authenticate(&edge, login) {
        Ok(authenticated) => authenticated,
        Err(code) => return refuse(&mut transport, code, "authentication").await,
    };
    let client_id = match connect.client_id.as_str() {
        "" if connect.clean_session => format!("auto-{}", uuid::Uuid::new_v4().simple()),
        id if roost_protocol::topic::is_client_id(id) => id.to_owned(),
        _ => return refuse(&mut transport, ConnectReturnCode::ClientIdentifierNotValid, "client id").await,
    };
    if let Some(will) = &will {
        if !own_will(&user, &client_id, will) {
            return refuse(&mut transport, ConnectReturnCode::NotAuthorized, "will topic").await;
        }
    }
    let Some(_slot) = edge.occupy_slot() else {
        return refuse(&mut transport, ConnectReturnCode::ServiceUnavailable, "max connections").await;
    };
    // Link ids carry the user, so equal client ids of different users never collide.
    let link_id = format!("{user}:{client_id}");
    let claim = edge.registry.claim(&link_id).await;
    let (tx, rx, ack) = match edge.links.build(link_id, connect.clean_session).await {
        Ok(link) => link,
        Err(e) => {
            warn!(%user, %client_id, error = %e, "router refused the link");
            return refuse(&mut transport, ConnectReturnCode::ServiceUnavailable, "router").await;
        }
    };
    let session_present = matches!(Option::<Packet>::from(ack), Some(Packet::ConnAck(a, _)) if a.session_present);
    let mut wbuf = BytesMut::new();
    codec::write(Packet::ConnAck(ConnAck { session_present, code: ConnectReturnCode::Success }, None), &mut wbuf);
    if transport.write_all(&wbuf).await.is_err() {
        let mut tx = tx;
        let _ = crate::links::send_batch(&mut tx, [disconnect_packet()]).await;
        return;
    }
    wbuf.clear();
    edge.presence.connected(&user, &client_id, claim.generation);
    metrics::counter!("roost_mqtt_connections_total").increment(1);
    info!(%user, %client_id, "connected");

    let keepalive = match connect.keep_alive {
        0 => edge.config.keepalive_max,
        requested => Duration::from_secs(requested.into()).min(edge.config.keepalive_max),
    };
    let publish_budget = edge.config.max_publish_rate.map(TokenBucket::new);
    let mut session = Session {
        changes: edge.policy.membership().changes(),
        edge,
        user,
        client_id,
        transport,
        tx,
        rbuf,
        wbuf,
        out: Vec::new(),
        pending_subs: HashMap::new(),
        pending_acks: FuturesOrdered::new(),
        qos2_received: HashSet::new(),
        subscriptions: HashSet::new(),
        publish_budget,
    };
    let token_left = Duration::from_millis(u64::try_from(token_expiry * 1000 - now_millis()).unwrap_or(0));
    let exit = session.run(rx, &claim, keepalive, Instant::now() + token_left).await;
    session.teardown(exit, &claim).await;
}

/// Reads up to the CONNECT packet. `Ok(None)` when the client was refused (answered already).
async fn read_connect(
    edge: &Edge,
    transport: &mut Transport,
    rbuf: &mut BytesMut,
) -> Result<Option<(Connect, Option<LastWill>, Option<Login>)>, String> {
    loop {
        match codec::next_frame(rbuf, edge.config.max_packet) {
            Ok(Some(Frame::Other(packet))) => match *packet {
                Packet::Connect(connect, _, will, _, login) => return Ok(Some((connect, will, login))),
                _ => return Err("the first packet must be CONNECT".into()),
            },
            Ok(Some(Frame::Publish { .. })) => return Err("the first packet must be CONNECT".into()),
            Ok(None) => {}
            Err(rumqttd::protocol::Error::InvalidProtocolLevel(level)) => {
                refuse(transport, ConnectReturnCode::RefusedProtocolVersion, "protocol level").await;
                return Err(format!("unsupported protocol level {level}"));
            }
            Err(e) => return Err(e.to_string()),
        }
        if transport.read(rbuf).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed before CONNECT".into());
        }
    }
}

/// The user the credentials prove with its token's expiry (seconds since the epoch), or the
/// CONNACK refusal code.
fn authenticate(edge: &Edge, login: Option<Login>) -> Result<(String, i64), ConnectReturnCode> {
    let login = login.ok_or(ConnectReturnCode::BadUserNamePassword)?;
    if !names::is_valid(&login.username) {
        return Err(ConnectReturnCode::BadUserNamePassword);
    }
    match edge.tokens.verify_for(&login.username, &login.password) {
        Ok(claims) => Ok((login.username, claims.exp)),
        Err(TokenError::WrongUser) => Err(ConnectReturnCode::NotAuthorized),
        Err(e) => {
            debug!(user = login.username, error = %e, "token refused");
            Err(ConnectReturnCode::BadUserNamePassword)
        }
    }
}

/// A will is allowed only on the connection's own device presence topic.
fn own_will(user: &str, client_id: &str, will: &LastWill) -> bool {
    std::str::from_utf8(&will.topic).ok().and_then(Topic::parse) == Some(Topic::Device { user, client_id })
}

async fn refuse(transport: &mut Transport, code: ConnectReturnCode, why: &str) {
    debug!(?code, why, "CONNECT refused");
    metrics::counter!("roost_mqtt_connect_refused_total").increment(1);
    let mut buf = BytesMut::new();
    codec::write(Packet::ConnAck(ConnAck { session_present: false, code }, None), &mut buf);
    let _ = transport.write_all(&buf).await;
}

fn disconnect_packet() -> Packet {
    Packet::Disconnect(Disconnect { reason_code: DisconnectReasonCode::NormalDisconnection }, None)
}

/// The state of an established session.
struct Session {
    edge: Arc<Edge>,
    user: String,
    client_id: String,
    transport: Transport,
    tx: LinkTx,
    rbuf: BytesMut,
    /// Bytes for the client, written once per event.
    wbuf: BytesMut,
    /// Packets for the router, sent once per event.
    out: Vec<Packet>,
    /// SUBSCRIBEs awaiting the router's SUBACK: per filter the edge's own refusal (or `None`
    /// for the router to fill in), and the presence filters to replay retained state for.
    pending_subs: HashMap<u16, (Vec<Option<SubscribeReasonCode>>, Vec<String>)>,
    pending_acks: FuturesOrdered<PendingAck>,
    /// QoS 2 packet ids received and not yet released: a resend is not processed twice.
    qos2_received: HashSet<u16>,
    subscriptions: HashSet<String>,
    /// Publishes this connection may still send now (`None`: no rate limit).
    publish_budget: Option<TokenBucket>,
    changes: broadcast::Receiver<MembershipChange>,
}

/// A token bucket: `rate` tokens per second, holding at most one second's worth.
struct TokenBucket {
    rate: u32,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        Self { rate, tokens: f64::from(rate), refilled: Instant::now() }
    }

    /// Takes one token; false when none is left.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.rate);
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Session {
    /// Serves the session until it ends: at the latest when the token expires at `token_expiry`.
    async fn run(&mut self, mut rx: LinkRx, claim: &Claim, keepalive: Duration, token_expiry: Instant) -> Exit {
        let grace = keepalive + keepalive / 2;
        let mut last_read = Instant::now();
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        let token_expired = tokio::time::sleep_until(token_expiry);
        tokio::pin!(token_expired);
        loop {
            let step = tokio::select! {
                _ = claim.kicked.notified() => Err(Exit::Kicked),
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
                Some(ack) = self.pending_acks.next(), if !self.pending_acks.is_empty() => {
                    self.on_ack(ack);
                    Ok(())
                }
                change = self.changes.recv() => {
                    self.on_membership(change);
                    Ok(())
                }
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
            crate::links::send_batch(&mut self.tx, self.out.drain(..)).await.map_err(|_| Exit::RouterGone)?;
        }
        if !self.wbuf.is_empty() {
            self.transport.write_all(&self.wbuf).await.map_err(|e| Exit::Closed(e.to_string()))?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Handles every complete packet in the read buffer.
    async fn on_bytes(&mut self) -> Result<(), Exit> {
        loop {
            let frame = codec::next_frame(&mut self.rbuf, self.edge.config.max_packet)
                .map_err(|e| Exit::Protocol(e.to_string()))?;
            match frame {
                None => return Ok(()),
                Some(Frame::Publish { publish, qos, pkid, dup }) => self.on_publish(publish, qos, pkid, dup).await?,
                Some(Frame::Other(packet)) => self.on_packet(*packet)?,
            }
        }
    }

    fn on_packet(&mut self, packet: Packet) -> Result<(), Exit> {
        match packet {
            // the client acknowledges a QoS 1 delivery: the router tracks those
            Packet::PubAck(ack, _) => self.out.push(Packet::PubAck(ack, None)),
            Packet::PubRel(release, _) => {
                self.qos2_received.remove(&release.pkid);
                let complete = PubComp { pkid: release.pkid, reason: PubCompReason::Success };
                codec::write(Packet::PubComp(complete, None), &mut self.wbuf);
            }
            Packet::Subscribe(subscribe, _) => self.on_subscribe(subscribe),
            Packet::Unsubscribe(unsubscribe, _) => {
                // the router acks only filters it knew; the edge answers every UNSUBSCRIBE itself
                codec::write(
                    Packet::UnsubAck(UnsubAck { pkid: unsubscribe.pkid, reasons: vec![] }, None),
                    &mut self.wbuf,
                );
                for filter in &unsubscribe.filters {
                    self.subscriptions.remove(filter);
                }
                self.out.push(Packet::Unsubscribe(unsubscribe, None));
            }
            Packet::PingReq(_) => codec::write(Packet::PingResp(PingResp), &mut self.wbuf),
            Packet::Disconnect(..) => return Err(Exit::Clean),
            other => return Err(Exit::Protocol(format!("unexpected packet {other:?}"))),
        }
        Ok(())
    }

    async fn on_publish(&mut self, publish: Publish, qos: u8, pkid: u16, dup: bool) -> Result<(), Exit> {
        if qos == 2 && dup && self.qos2_received.contains(&pkid) {
            codec::write(Ack::PubRec(pkid).packet(), &mut self.wbuf);
            return Ok(());
        }
        if let Some(budget) = &mut self.publish_budget {
            if !budget.take() {
                metrics::counter!("roost_mqtt_rate_limited_total").increment(1);
                return Err(Exit::RateLimited(budget.rate));
            }
        }
        let stored = self.route(publish).await?;
        let ack = match qos {
            0 => return Ok(()),
            1 => Ack::PubAck(pkid),
            _ => {
                self.qos2_received.insert(pkid);
                Ack::PubRec(pkid)
            }
        };
        let pending: PendingAck = match stored {
            // the durability promise: acknowledged means stored
            Some(stored) => Box::pin(stored.map(|done| done.ok().map(|()| ack))),
            None => Box::pin(std::future::ready(Some(ack))),
        };
        self.pending_acks.push_back(pending);
        Ok(())
    }

    /// Authorizes, validates and stamps one client publish and queues it for the router.
    /// Returns the store confirmation for a chat message.
    async fn route(&mut self, publish: Publish) -> Result<Option<tokio::sync::oneshot::Receiver<()>>, Exit> {
        let Ok(raw_topic) = std::str::from_utf8(&publish.topic) else {
            return Err(Exit::Protocol("topic is not UTF-8".into()));
        };
        if raw_topic.is_empty() || rumqttd::protocol::has_wildcards(raw_topic) {
            return Err(Exit::Protocol(format!("invalid topic name '{raw_topic}'")));
        }
        let raw_topic = raw_topic.to_owned();
        let Some(topic) = Topic::parse(&raw_topic) else {
            self.reject(&raw_topic, None, Invalid { code: "forbidden", message: "not a Roost topic".into() });
            return Ok(None);
        };
        match self.edge.policy.publish(&self.user, &self.client_id, &topic) {
            Decision::Allow => {}
            Decision::Forbidden => {
                let why = Invalid { code: "forbidden", message: "you may not publish on this topic".into() };
                self.reject(&raw_topic, None, why);
                return Ok(None);
            }
            Decision::NotMember => {
                let why = Invalid { code: "not_member", message: "you are not a member of this room".into() };
                self.reject(&raw_topic, None, why);
                return Ok(None);
            }
        }
        if publish.payload.len() > self.edge.config.max_payload {
            let message = format!("payloads are limited to {} bytes", self.edge.config.max_payload);
            self.reject(&raw_topic, None, Invalid { code: "payload_too_large", message });
            return Ok(None);
        }
        let accepted = match stamp::validate(&topic, &publish.payload) {
            Ok(accepted) => accepted,
            Err(invalid) => {
                self.reject(&raw_topic, None, invalid);
                return Ok(None);
            }
        };
        let user = self.user.clone();
        let (payload, stored) = match (accepted, topic.room()) {
            (Accepted::Message(message), Some(room)) => {
                let seq = self.edge.sequencer.next(room).await;
                let envelope = stamp::envelope(room, &user, seq, message);
                let payload = to_payload(&envelope);
                metrics::counter!("roost_messages_total").increment(1);
                (payload, Some(self.edge.ingest.submit_confirmed(Record::Message(envelope)).await))
            }
            (Accepted::Typing(typing), Some(room)) => (stamp::typing(room, &user, typing), None),
            (Accepted::Receipt(receipt), Some(room)) => {
                let receipt = stamp::receipt(room, &user, receipt);
                let payload = to_payload(&receipt);
                self.edge.ingest.submit(Record::Receipt(receipt)).await;
                (payload, None)
            }
            (Accepted::Device(status), _) => (stamp::device(status), None),
            _ => return Ok(None),
        };
        self.out.push(Packet::Publish(codec::publish(raw_topic, payload, false), None));
        Ok(stored)
    }

    /// Tells the sender, on its inbox, that a publish was dropped and why.
    fn reject(&self, topic: &str, id: Option<String>, why: Invalid) {
        debug!(user = self.user, topic, code = why.code, "publish rejected");
        metrics::counter!("roost_publishes_rejected_total", "code" => why.code).increment(1);
        let notice = InboxNotice::Rejected {
            topic: topic.to_owned(),
            id,
            code: why.code.into(),
            message: why.message,
            ts: now_millis(),
        };
        self.edge.server.publish(Topic::Inbox(&self.user).to_string(), to_payload(&notice));
    }

    fn on_subscribe(&mut self, subscribe: Subscribe) {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut allowed = Vec::new();
        let mut presence_filters = Vec::new();
        for filter in subscribe.filters {
            let path = filter.path;
            // granted filters join `subscriptions` as they are granted, this SUBSCRIBE's too
            let full =
                !self.subscriptions.contains(&path) && self.subscriptions.len() >= self.edge.config.max_subscriptions;
            if full || !valid_filter(&path) || !self.edge.policy.subscribe(&self.user, &path) {
                debug!(user = self.user, filter = path, "subscription denied");
                metrics::counter!("roost_subscriptions_denied_total").increment(1);
                codes.push(Some(SubscribeReasonCode::Failure));
                continue;
            }
            codes.push(None);
            if path.starts_with("presence/") {
                presence_filters.push(path.clone());
            }
            self.subscriptions.insert(path.clone());
            let qos = if filter.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
            allowed.push(Filter {
                path,
                qos,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: RetainForwardRule::Never,
            });
        }
        if allowed.is_empty() {
            let return_codes = codes.into_iter().flatten().collect();
            codec::write(Packet::SubAck(SubAck { pkid: subscribe.pkid, return_codes }, None), &mut self.wbuf);
        } else {
            self.pending_subs.insert(subscribe.pkid, (codes, presence_filters));
            self.out.push(Packet::Subscribe(Subscribe { pkid: subscribe.pkid, filters: allowed }, None));
        }
    }

    /// Writes the router's notifications to the client, draining what is already queued.
    async fn on_notifications(&mut self, rx: &mut LinkRx, first: Option<Notification>) -> Result<(), Exit> {
        let mut next = first;
        let mut parked = false;
        loop {
            match next.take() {
                Some(Notification::Forward(forward)) => self.deliver(forward.publish),
                Some(Notification::DeviceAck(ack)) => {
                    if let Packet::SubAck(suback, _) = Packet::from(ack) {
                        self.on_router_suback(suback);
                    }
                }
                Some(Notification::Unschedule) => parked = true,
                Some(Notification::Disconnect(..)) => return Err(Exit::RouterGone),
                Some(_) | None => {}
            }
            match rx.recv_deadline(std::time::Instant::now()) {
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

    /// Delivers a forward if the user may still receive it (membership is checked on every
    /// delivery); a refused QoS 1 forward is acknowledged to the router in the client's place.
    fn deliver(&mut self, publish: Publish) {
        let allowed =
            std::str::from_utf8(&publish.topic).is_ok_and(|topic| self.edge.policy.may_receive(&self.user, topic));
        if allowed {
            codec::write(Packet::Publish(publish, None), &mut self.wbuf);
        } else if let Some(pkid) = codec::outgoing_pkid(&publish) {
            self.out.push(Packet::PubAck(PubAck { pkid, reason: PubAckReason::Success }, None));
        }
    }

    fn on_router_suback(&mut self, suback: SubAck) {
        let Some((codes, presence_filters)) = self.pending_subs.remove(&suback.pkid) else {
            return;
        };
        let mut granted = suback.return_codes.into_iter();
        let return_codes = codes
            .into_iter()
            .map(|own| own.or_else(|| granted.next()).unwrap_or(SubscribeReasonCode::Failure))
            .collect();
        codec::write(Packet::SubAck(SubAck { pkid: suback.pkid, return_codes }, None), &mut self.wbuf);
        for filter in presence_filters {
            for (topic, payload) in self.edge.presence.retained(&self.user, &filter) {
                codec::write(Packet::Publish(codec::publish(topic, payload, true), None), &mut self.wbuf);
            }
        }
    }

    fn on_ack(&mut self, ack: Option<Ack>) {
        if let Some(ack) = ack {
            codec::write(ack.packet(), &mut self.wbuf);
        }
    }

    /// A member removed from a room loses its subscriptions to the room at once.
    fn on_membership(&mut self, change: Result<MembershipChange, broadcast::error::RecvError>) {
        let Ok(MembershipChange::Removed { room, user }) = change else {
            return;
        };
        if user != self.user {
            return;
        }
        let prefix = format!("rooms/{room}/");
        let revoked: Vec<String> = self.subscriptions.iter().filter(|f| f.starts_with(&prefix)).cloned().collect();
        for filter in &revoked {
            self.subscriptions.remove(filter);
        }
        if !revoked.is_empty() {
            debug!(user, room, "subscriptions revoked");
            self.out.push(Packet::Unsubscribe(Unsubscribe { pkid: 0, filters: revoked }, None));
        }
    }

    /// Marks the device offline and releases the router link.
    async fn teardown(mut self, exit: Exit, claim: &Claim) {
        self.edge.presence.disconnected(&self.user, &self.client_id, claim.generation);
        if !matches!(exit, Exit::RouterGone) {
            self.out.push(disconnect_packet());
            let _ = crate::links::send_batch(&mut self.tx, self.out.drain(..)).await;
        }
        if !self.wbuf.is_empty() {
            let _ = self.transport.write_all(&self.wbuf).await;
        }
        info!(user = self.user, client_id = self.client_id, reason = %exit, "disconnected");
    }
}
