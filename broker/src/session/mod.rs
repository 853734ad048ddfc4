//! An established session: its event loop, reading the client's packets and the router's
//! notifications and reacting to membership changes. Each part of its state has a module:
//! [`inbound`] the client's publishes in flight, [`publish`] what becomes of one, [`grants`]
//! its subscriptions, [`delivery`] what the client receives, [`exit`] how it ends.

mod delivery;
mod exit;
mod grants;
mod inbound;
mod publish;

pub(crate) use delivery::ClientLimits;
pub(crate) use exit::Exit;

use crate::acks::RouterAcks;
use crate::codec::{self, Frame, Version};
use crate::edge::Edge;
use crate::framed::Framed;
use crate::hub::{Mailbox, Message, Notice};
use crate::links::send_batch;
use crate::registry::Claim;
use crate::route_tag::RouteTag;
use crate::subscriptions::{Subscription, Subscriptions};
use delivery::{is_edge_pkid, Delivery, Forwarded, Source, Verdict};
use grants::{Granted, Grants, Subscriber};
use inbound::Inbound;
use roost_auth::acl::is_roost_namespace;
use roost_auth::rate::TokenBucket;
use roost_protocol::now_millis;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{
    DisconnectReasonCode, Packet, PingResp, PubAck, PubComp, PubRec, PubRel, PubRelReason, Publish,
};
use rumqttd::{Forward, Notification};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Inbox notices of refused publishes one connection causes per second (burst as many); the
/// MQTT 5 reason code still answers every refusal.
const NOTICES_PER_SECOND: u32 = 20;

/// Who a session belongs to and what it agreed at CONNECT.
pub(crate) struct Identity {
    pub(crate) user: String,
    pub(crate) client_id: String,
    /// The generation of the connection's claim: the origin no-local compares against.
    pub(crate) generation: u64,
    pub(crate) limits: ClientLimits,
    /// How long the session outlives the connection.
    pub(crate) session_expiry: Duration,
    /// The id a bot's token carries (`None`: a user's token).
    pub(crate) bot_token: Option<String>,
}

/// The state of an established session.
pub(crate) struct Session {
    edge: Arc<Edge>,
    identity: Identity,
    io: Framed,
    tx: LinkTx,
    /// Packets for the router, sent once per event.
    out: Vec<Packet>,
    inbound: Inbound,
    grants: Grants,
    subscriptions: Subscriptions,
    delivery: Delivery,
    router_acks: RouterAcks,
    /// Inbox notices of refused publishes this connection may still cause now.
    notice_budget: TokenBucket,
    /// What the edge's own routing hands this session (Roost's topics).
    mailbox: Mailbox,
    /// The ACL's last answer for a delivered topic.
    last_verdict: Verdict,
}

impl Session {
    pub(crate) fn new(
        edge: Arc<Edge>,
        identity: Identity,
        io: Framed,
        tx: LinkTx,
        subscriptions: Subscriptions,
    ) -> Self {
        let mailbox = edge.hub.enter(identity.generation, &identity.user);
        // Roost's topics are followed in the hub again; rumqttd restores a resumed session's
        // other filters but not their identifiers
        let out = subscriptions
            .iter()
            .filter(|(path, _)| !edge.hub.follow(identity.generation, path))
            .map(|(path, subscription)| grants::router_subscribe(0, path, subscription))
            .collect();
        Self {
            mailbox,
            last_verdict: Verdict::default(),
            inbound: Inbound::new(io.version() == Version::V5, edge.config.max_publish_rate),
            notice_budget: TokenBucket::new(NOTICES_PER_SECOND),
            delivery: Delivery::new(identity.generation, identity.limits),
            grants: Grants::default(),
            edge,
            identity,
            io,
            tx,
            out,
            subscriptions,
            router_acks: RouterAcks::default(),
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
                server_going = claim.kicked.stopped() => {
                    Err(if server_going { Exit::ShuttingDown } else { Exit::TakenOver })
                }
                _ = &mut token_expired => Err(Exit::TokenExpired),
                read = self.io.fill() => match read {
                    Ok(0) => Err(Exit::Closed),
                    Ok(_) => {
                        last_read = Instant::now();
                        // boxed: the packet handling's state is kept only while it runs, not
                        // in every idle connection's task
                        Box::pin(self.on_bytes()).await
                    }
                    Err(e) => Err(Exit::Socket(e)),
                },
                notification = rx.next() => match notification {
                    Ok(first) => Box::pin(self.on_notifications(&mut rx, first)).await,
                    Err(_) => Err(Exit::RouterGone),
                },
                ack = self.inbound.next_ack(), if self.inbound.awaiting() => {
                    if let Some(ack) = ack {
                        self.io.write(ack);
                    }
                    Ok(())
                }
                Some(message) = self.mailbox.messages.recv() => self.on_messages(message),
                Some(notice) = self.mailbox.notices.recv() => self.on_notice(notice),
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
        Ok(self.io.flush().await?)
    }

    /// Handles every complete packet in the read buffer.
    async fn on_bytes(&mut self) -> Result<(), Exit> {
        let mut published = false;
        loop {
            match self.io.next_frame()? {
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
            Packet::PubAck(PubAck { pkid, .. }, _) | Packet::PubComp(PubComp { pkid, .. }, _) if is_edge_pkid(pkid) => {
                self.delivery.edge_done(pkid, &mut self.io)
            }
            Packet::PubRec(PubRec { pkid, .. }, _) if is_edge_pkid(pkid) => {
                self.io.write(Packet::PubRel(PubRel { pkid, reason: PubRelReason::Success }, None))
            }
            Packet::PubAck(PubAck { pkid, .. }, _) => {
                self.router_acks.acknowledged(pkid, &mut self.out);
                self.delivery.acknowledged(&mut self.io);
            }
            Packet::PubRec(PubRec { pkid, .. }, _) => self.router_acks.acknowledged(pkid, &mut self.out),
            Packet::PubComp(complete, _) => {
                self.router_acks.completed(complete.pkid, &mut self.out);
                self.delivery.acknowledged(&mut self.io);
            }
            Packet::PubRel(release, _) => {
                let complete = self.inbound.released(release.pkid);
                self.io.write(complete);
            }
            Packet::Subscribe(subscribe, properties) => {
                let subscriber = subscriber(&self.edge, &self.identity, &self.io);
                let granted =
                    self.grants.subscribe(&subscriber, &mut self.subscriptions, subscribe, properties, &mut self.out);
                if let Some(granted) = granted {
                    self.on_granted(granted);
                }
            }
            Packet::Unsubscribe(unsubscribe, _) => {
                let subscriber = subscriber(&self.edge, &self.identity, &self.io);
                let unsuback = grants::unsubscribe(&subscriber, &mut self.subscriptions, unsubscribe, &mut self.out);
                self.io.write(unsuback);
            }
            Packet::PingReq(_) => self.io.write(Packet::PingResp(PingResp)),
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

    /// Delivers a forward as the subscription it matched asks ([`delivery`]), checking
    /// membership on every delivery. Forwards the client does not get at the router's QoS are
    /// acknowledged to the router in its place. Messages the router dropped before this
    /// subscriber read them are counted; for a QoS 1 or 2 subscription they end the connection,
    /// a gap its client hears of.
    fn deliver(&mut self, forward: Forward) -> Result<(), Exit> {
        let Forward { cursor, publish, mut properties, .. } = forward;
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
        let Some(subscription) = subscription.cloned() else {
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
        let (policy, user) = (&self.edge.policy, &self.identity.user);
        let allowed = self.last_verdict.allowed(policy.membership().version(), &publish.topic, |topic| {
            std::str::from_utf8(topic).is_ok_and(|t| policy.may_receive(user, t))
        });
        let topic = std::str::from_utf8(&publish.topic).unwrap_or_default();
        let may_overlap = tag.is_some_and(|t| t.message.is_some()) && self.subscriptions.len() > 1;
        let overlapping = if may_overlap { self.subscriptions.all_matching(topic).collect() } else { Vec::new() };
        let forwarded = Forwarded { subscription: &subscription, overlapping, tag, snapshot: publish.retain, allowed };
        let router_qos = subscription.router_qos;
        let (client_qos, pkid) = match self.delivery.decide(&forwarded, now_millis) {
            Some(decision) => {
                self.delivery.write(publish, properties, Source::Router { qos: router_qos }, decision, &mut self.io)
            }
            None => (None, if router_qos > 0 { codec::outgoing_qos_pkid(&publish).1 } else { 0 }),
        };
        if router_qos > 0 {
            self.router_acks.forwarded(pkid, router_qos, client_qos, &mut self.out);
        }
        Ok(())
    }

    /// The router released a QoS 2 forward: the client completes it, unless the edge does.
    fn on_router_release(&mut self, release: PubRel) {
        if self.router_acks.router_released(release.pkid, &mut self.out) {
            self.io.write(Packet::PubRel(release, None));
        }
    }

    /// The router took one filter of SUBSCRIBE `pkid`; once it took them all, the SUBACK is due.
    fn on_router_suback(&mut self, pkid: u16) {
        if let Some(granted) = self.grants.router_took(pkid) {
            self.on_granted(granted);
        }
    }

    /// Sends a SUBACK, then the presence state the client subscribed to.
    fn on_granted(&mut self, granted: Granted) {
        self.io.write(granted.suback);
        for filter in granted.presence_replays {
            for (topic, payload) in self.edge.presence.retained(self.user(), &filter) {
                self.io.write(Packet::Publish(codec::publish(topic, payload, true), None));
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

    /// Delivers what the hub handed over, draining what is already queued.
    fn on_messages(&mut self, first: Arc<Message>) -> Result<(), Exit> {
        let dropped = self.mailbox.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            warn!(user = self.user(), dropped, "a slow subscriber lost messages of Roost's topics");
            let reliable = self.subscriptions.iter().any(|(filter, s)| s.qos > 0 && is_roost_namespace(filter));
            if reliable {
                return Err(Exit::SlowSubscriber(dropped));
            }
        }
        let mut next = Some(first);
        while let Some(message) = next.take() {
            self.mailbox.queued.fetch_sub(message.size(), std::sync::atomic::Ordering::Relaxed);
            self.deliver_edge(&message);
            next = self.mailbox.messages.try_recv().ok();
        }
        Ok(())
    }

    /// Delivers a message of Roost's topics once, as the session's subscriptions matching it
    /// ask together (the highest QoS, every identifier), checking membership again.
    fn deliver_edge(&mut self, message: &Message) {
        let topic = std::str::from_utf8(&message.topic).unwrap_or_default();
        let mut matching = self.subscriptions.all_matching(topic);
        let Some(subscription) = matching.next() else { return };
        // the list of every match is made only when there are several (no allocation otherwise)
        let overlapping: Vec<&Subscription> = match matching.next() {
            Some(second) => [subscription, second].into_iter().chain(matching).collect(),
            None => Vec::new(),
        };
        let (policy, user) = (&self.edge.policy, &self.identity.user);
        let allowed = self.last_verdict.allowed(policy.membership().version(), &message.topic, |topic| {
            std::str::from_utf8(topic).is_ok_and(|t| policy.may_receive(user, t))
        });
        // stamped messages go out at the subscription's QoS
        let tag =
            RouteTag { qos: 2, retain: false, origin: message.origin, expires_at: message.expires_at, message: None };
        let forwarded = Forwarded { subscription, overlapping, tag: Some(tag), snapshot: false, allowed };
        if let Some(decision) = self.delivery.decide(&forwarded, now_millis) {
            let publish = Publish::new(message.topic.clone(), message.payload.clone(), false);
            self.delivery.write(publish, message.properties.clone(), Source::Edge, decision, &mut self.io);
        }
    }

    /// A membership change of this session's user: subscriptions to a room left go at once; a
    /// revoked bot's connection ends.
    fn on_notice(&mut self, notice: Notice) -> Result<(), Exit> {
        match notice {
            Notice::Revoked => Err(Exit::Revoked),
            Notice::LeftRoom(room) => {
                for filter in self.subscriptions.filters_starting_with(&format!("rooms/{room}/")) {
                    self.subscriptions.remove(&filter);
                }
                debug!(user = self.user(), room, "subscriptions revoked");
                Ok(())
            }
        }
    }
}

/// The session's user as a subscriber, borrowing only what it needs.
fn subscriber<'a>(edge: &'a Edge, identity: &'a Identity, io: &Framed) -> Subscriber<'a> {
    Subscriber { edge, user: &identity.user, session: identity.generation, v5: io.version() == Version::V5 }
}
