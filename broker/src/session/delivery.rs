//! Delivery of the router's forwards to one client, as the subscription it matched asks: the
//! lower of the two QoS, no-local, message expiry, retain handling and one delivery for
//! overlapping filters; then the client's own limits: topic aliases, its receive maximum and
//! its maximum packet size.

use crate::codec;
use crate::framed::Framed;
use crate::route_tag::RouteTag;
use crate::subscriptions::Subscription;
use bytes::Bytes;
use rumqttd::protocol::{Packet, Publish, PublishProperties};
use std::collections::{HashMap, HashSet, VecDeque};

/// How many publishes delivered once for overlapping filters a session remembers: the other
/// filters' copies arrive right behind the first.
const DELIVERED_ONCE_KEPT: usize = 256;

/// What the client agreed to receive (MQTT 5; 3.1.1 clients set no limits).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientLimits {
    /// The largest packet the client accepts.
    pub(crate) max_packet: Option<usize>,
    /// The most unacknowledged QoS 1 and 2 deliveries the client accepts.
    pub(crate) receive_max: usize,
    /// The most topic aliases the client accepts from the server (0: none).
    pub(crate) topic_alias_max: u16,
}

/// One forward as the router handed it to the session.
pub(crate) struct Forwarded<'a> {
    /// The subscription the router matched.
    pub(crate) subscription: &'a Subscription,
    /// Every subscription of the session that matches the topic, when the forward may be a
    /// copy for overlapping filters (more than one); empty otherwise.
    pub(crate) overlapping: Vec<&'a Subscription>,
    pub(crate) tag: Option<RouteTag>,
    /// Whether the router replays it as a retained message.
    pub(crate) snapshot: bool,
    /// Whether the user may receive on its topic now.
    pub(crate) allowed: bool,
}

/// How a forward reaches the client.
#[derive(Debug, PartialEq)]
pub(crate) struct Decision {
    pub(crate) qos: u8,
    /// The client's subscription identifiers of the filters it matched.
    pub(crate) subscription_ids: Vec<usize>,
    /// Seconds left before it expires.
    pub(crate) expiry_left: Option<u32>,
    /// The retain flag as delivered.
    pub(crate) retain: bool,
}

/// The ACL's last answer for a delivered topic: may the user receive on `topic` as of
/// membership `version` (`None`: not asked yet).
#[derive(Default)]
pub(crate) struct Verdict {
    version: Option<u64>,
    topic: Vec<u8>,
    allowed: bool,
}

impl Verdict {
    /// The answer for `topic` as of membership `version`, asked of `ask` only when the topic or
    /// the membership moved since the last delivery: a fan-out delivers run after run on one topic.
    pub(crate) fn allowed(&mut self, version: u64, topic: &[u8], ask: impl FnOnce(&[u8]) -> bool) -> bool {
        if self.version != Some(version) || self.topic != topic {
            self.allowed = ask(topic);
            self.version = Some(version);
            self.topic.clear();
            self.topic.extend_from_slice(topic);
        }
        self.allowed
    }
}

/// Where a delivery comes from, which decides its packet id.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    /// A forward the router sent at `qos`, numbered by the router.
    Router { qos: u8 },
    /// A message the edge routed itself (the hub), numbered by the edge.
    Edge,
}

/// Whether `pkid` numbers a delivery of the edge's own routing: rumqttd numbers a link's
/// forwards 1..=100 (`MAX_PKID` in rumqttd 0.20's `router/iobufs.rs`), the edge above that, so
/// one client sees one space of packet ids.
pub(crate) fn is_edge_pkid(pkid: u16) -> bool {
    pkid > ROUTER_MAX_PKID
}

const ROUTER_MAX_PKID: u16 = 100;

/// The packet ids of the edge's deliveries in flight to the client.
#[derive(Default)]
struct EdgePkids {
    in_flight: HashSet<u16>,
    last: u16,
}

impl EdgePkids {
    /// A free packet id; `None` when every one is in flight.
    fn take(&mut self) -> Option<u16> {
        if self.in_flight.len() >= usize::from(u16::MAX - ROUTER_MAX_PKID) {
            return None;
        }
        loop {
            self.last =
                if self.last <= ROUTER_MAX_PKID || self.last == u16::MAX { ROUTER_MAX_PKID + 1 } else { self.last + 1 };
            if self.in_flight.insert(self.last) {
                return Some(self.last);
            }
        }
    }

    /// True when `pkid` was in flight.
    fn release(&mut self, pkid: u16) -> bool {
        self.in_flight.remove(&pkid)
    }
}

/// The delivery state of one connection.
pub(crate) struct Delivery {
    /// The generation of the connection's claim: the origin no-local compares against.
    generation: u64,
    limits: ClientLimits,
    /// Topic aliases the edge set for the client, by topic.
    aliases: HashMap<Bytes, u16>,
    /// QoS 1 and 2 deliveries the client has not acknowledged yet.
    in_flight: usize,
    /// Encoded QoS 1 and 2 deliveries waiting for the client's receive maximum to allow them.
    held: VecDeque<Bytes>,
    /// The newest publishes delivered once for several overlapping filters.
    delivered_once: VecDeque<u64>,
    edge_pkids: EdgePkids,
}

impl Delivery {
    pub(crate) fn new(generation: u64, limits: ClientLimits) -> Self {
        Self {
            generation,
            limits,
            aliases: HashMap::new(),
            in_flight: 0,
            held: VecDeque::new(),
            delivered_once: VecDeque::new(),
            edge_pkids: EdgePkids::default(),
        }
    }

    /// Whether and how the client gets a forward, at `now` (milliseconds since the epoch; read
    /// only for messages that expire): `None` for messages it may not or does not want to
    /// receive, expired ones, its own on a no-local filter, and copies for overlapping filters.
    pub(crate) fn decide(&mut self, forward: &Forwarded<'_>, now: impl FnOnce() -> i64) -> Option<Decision> {
        let Forwarded { subscription, ref overlapping, tag, snapshot, allowed } = *forward;
        // overlapping filters: one delivery, at the highest QoS granted, with every identifier
        let (mut granted_qos, mut subscription_ids) = (subscription.qos, Vec::from_iter(subscription.client_id));
        let mut duplicate = false;
        if overlapping.len() > 1 {
            granted_qos = overlapping.iter().map(|s| s.qos).max().unwrap_or(granted_qos);
            subscription_ids = overlapping.iter().filter_map(|s| s.client_id).collect();
            // the router forwards a copy per filter: the first is delivered
            if let Some(message) = tag.and_then(|t| t.message) {
                duplicate = self.delivered_once.contains(&message);
                if !duplicate {
                    if self.delivered_once.len() == DELIVERED_ONCE_KEPT {
                        self.delivered_once.pop_front();
                    }
                    self.delivered_once.push_back(message);
                }
            }
        }
        let expires_at = tag.and_then(|t| t.expires_at);
        let now = expires_at.map(|_| now());
        let wanted = allowed
            && expires_at.zip(now).is_none_or(|(at, now)| at > now)
            && !(subscription.no_local && tag.and_then(|t| t.origin) == Some(self.generation))
            && (!snapshot || subscription.send_retained)
            && !duplicate;
        wanted.then(|| Decision {
            qos: subscription.router_qos.min(granted_qos).min(tag.map_or(2, |t| t.qos)),
            subscription_ids,
            expiry_left: expires_at
                .zip(now)
                .map(|(at, now)| u32::try_from((at - now + 999) / 1000).unwrap_or(u32::MAX)),
            retain: snapshot || (subscription.retain_as_published && tag.is_some_and(|t| t.retain)),
        })
    }

    /// Writes `publish` from `source` to `io` as `decision` says. Returns the QoS the client got
    /// it at (`None`: not sent, too large for the client) and its packet id.
    pub(crate) fn write(
        &mut self,
        mut publish: Publish,
        mut properties: Option<PublishProperties>,
        source: Source,
        decision: Decision,
        io: &mut Framed,
    ) -> (Option<u8>, u16) {
        let Decision { qos, subscription_ids, expiry_left, retain } = decision;
        if !subscription_ids.is_empty() {
            properties.get_or_insert_with(Default::default).subscription_identifiers = subscription_ids;
        }
        if expiry_left.is_some() {
            properties.get_or_insert_with(Default::default).message_expiry_interval = expiry_left;
        }
        publish.retain = retain;
        let hold = qos > 0 && self.in_flight >= self.limits.receive_max;
        if !hold {
            self.alias_topic(&mut publish, &mut properties);
        }
        let start = io.unsent().len();
        let pkid = match source {
            Source::Router { qos: router_qos } if qos == router_qos => {
                io.write(Packet::Publish(publish, properties));
                codec::encoded_qos_pkid(&io.unsent()[start..]).1
            }
            Source::Router { .. } => {
                let pkid = codec::outgoing_qos_pkid(&publish).1;
                io.write(Packet::Publish(codec::with_qos(&publish, qos, pkid), properties));
                pkid
            }
            Source::Edge if qos == 0 => {
                io.write(Packet::Publish(publish, properties));
                0
            }
            Source::Edge => {
                let Some(pkid) = self.edge_pkids.take() else {
                    metrics::counter!("roost_mqtt_messages_skipped_total").increment(1);
                    return (None, 0);
                };
                io.write(Packet::Publish(codec::with_qos(&publish, qos, pkid), properties));
                pkid
            }
        };
        let unsent = io.unsent();
        if self.limits.max_packet.is_some_and(|max| unsent.len() - start > max) {
            unsent.truncate(start);
            if matches!(source, Source::Edge) {
                self.edge_pkids.release(pkid);
            }
            return (None, pkid);
        }
        if hold {
            self.held.push_back(unsent.split_off(start).freeze());
        } else if qos > 0 {
            self.in_flight += 1;
        }
        (Some(qos), pkid)
    }

    /// The client acknowledged (PUBACK) or completed (PUBCOMP) the edge's delivery `pkid`.
    pub(crate) fn edge_done(&mut self, pkid: u16, io: &mut Framed) {
        if self.edge_pkids.release(pkid) {
            self.acknowledged(io);
        }
    }

    /// The client acknowledged a delivery: those held back by its receive maximum may go.
    pub(crate) fn acknowledged(&mut self, io: &mut Framed) {
        self.in_flight = self.in_flight.saturating_sub(1);
        while self.in_flight < self.limits.receive_max {
            let Some(frame) = self.held.pop_front() else { break };
            io.unsent().extend_from_slice(&frame);
            self.in_flight += 1;
        }
    }

    /// Replaces the topic of a delivery by an alias when the client accepts them (MQTT 5): the
    /// first delivery on a topic sets the alias, later ones send it alone.
    fn alias_topic(&mut self, publish: &mut Publish, properties: &mut Option<PublishProperties>) {
        let alias = match self.aliases.get(&publish.topic) {
            Some(&alias) => {
                publish.topic = Bytes::new();
                alias
            }
            None if self.aliases.len() < usize::from(self.limits.topic_alias_max) => {
                let alias = self.aliases.len() as u16 + 1;
                self.aliases.insert(publish.topic.clone(), alias);
                alias
            }
            None => return,
        };
        properties.get_or_insert_with(Default::default).topic_alias = Some(alias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENERATION: u64 = 9;

    fn delivery() -> Delivery {
        Delivery::new(GENERATION, ClientLimits { max_packet: None, receive_max: usize::MAX, topic_alias_max: 0 })
    }

    fn subscription(qos: u8, router_qos: u8, client_id: Option<usize>) -> Subscription {
        Subscription {
            qos,
            router_qos,
            no_local: false,
            retain_as_published: false,
            send_retained: true,
            client_id,
            internal_id: 1,
        }
    }

    fn tag(qos: u8) -> RouteTag {
        RouteTag { qos, retain: false, origin: None, expires_at: None, message: None }
    }

    fn forward<'a>(subscription: &'a Subscription, tag: Option<RouteTag>) -> Forwarded<'a> {
        Forwarded { subscription, overlapping: Vec::new(), tag, snapshot: false, allowed: true }
    }

    fn no_clock() -> i64 {
        panic!("the clock is read only for messages that expire")
    }

    #[test]
    fn the_client_gets_the_lowest_of_the_publish_the_subscription_and_the_router_qos() {
        let mut delivery = delivery();
        let granted_1 = subscription(1, 2, None);
        assert_eq!(delivery.decide(&forward(&granted_1, Some(tag(2))), no_clock).unwrap().qos, 1);
        assert_eq!(delivery.decide(&forward(&granted_1, Some(tag(0))), no_clock).unwrap().qos, 0);
        let router_1 = subscription(2, 1, None);
        assert_eq!(delivery.decide(&forward(&router_1, Some(tag(2))), no_clock).unwrap().qos, 1);
        // stamped chat messages carry no QoS of their own: the subscription's applies
        assert_eq!(delivery.decide(&forward(&router_1, None), no_clock).unwrap().qos, 1);
    }

    #[test]
    fn no_local_drops_only_this_connections_own_publishes() {
        let mut delivery = delivery();
        let no_local = Subscription { no_local: true, ..subscription(1, 1, None) };
        let own = RouteTag { origin: Some(GENERATION), ..tag(1) };
        let earlier_connection = RouteTag { origin: Some(GENERATION - 1), ..tag(1) };
        assert_eq!(delivery.decide(&forward(&no_local, Some(own)), no_clock), None);
        assert!(delivery.decide(&forward(&no_local, Some(earlier_connection)), no_clock).is_some());
        assert!(delivery.decide(&forward(&subscription(1, 1, None), Some(own)), no_clock).is_some());
    }

    #[test]
    fn expired_messages_are_dropped_and_the_rest_carry_the_seconds_left() {
        let mut delivery = delivery();
        let granted = subscription(1, 1, None);
        let expiring = RouteTag { expires_at: Some(10_000), ..tag(1) };
        assert_eq!(delivery.decide(&forward(&granted, Some(expiring)), || 10_000), None);
        let decision = delivery.decide(&forward(&granted, Some(expiring)), || 7_500).unwrap();
        assert_eq!(decision.expiry_left, Some(3), "rounded up: the client never sees 0 for a live message");
    }

    #[test]
    fn retained_replays_and_retain_as_published_follow_the_subscription() {
        let mut delivery = delivery();
        let retained = RouteTag { retain: true, ..tag(1) };
        let plain = subscription(1, 1, None);
        let as_published = Subscription { retain_as_published: true, ..plain.clone() };
        assert!(!delivery.decide(&forward(&plain, Some(retained)), no_clock).unwrap().retain);
        assert!(delivery.decide(&forward(&as_published, Some(retained)), no_clock).unwrap().retain);
        let no_replay = Subscription { send_retained: false, ..plain.clone() };
        let replay = Forwarded { snapshot: true, ..forward(&no_replay, Some(tag(1))) };
        assert_eq!(delivery.decide(&replay, no_clock), None);
        let replay = Forwarded { snapshot: true, ..forward(&plain, Some(tag(1))) };
        assert!(delivery.decide(&replay, no_clock).unwrap().retain);
    }

    #[test]
    fn overlapping_filters_deliver_once_at_the_highest_qos_with_every_identifier() {
        let mut delivery = delivery();
        let (narrow, wide) = (subscription(0, 0, Some(1)), subscription(1, 1, Some(2)));
        let message = RouteTag { message: Some(42), ..tag(1) };
        let first = Forwarded { overlapping: vec![&narrow, &wide], ..forward(&wide, Some(message)) };
        let decision = delivery.decide(&first, no_clock).unwrap();
        assert_eq!((decision.qos, decision.subscription_ids), (1, vec![1, 2]));
        let copy = Forwarded { overlapping: vec![&narrow, &wide], ..forward(&narrow, Some(message)) };
        assert_eq!(delivery.decide(&copy, no_clock), None);
        let next = RouteTag { message: Some(43), ..message };
        let other = Forwarded { overlapping: vec![&narrow, &wide], ..forward(&narrow, Some(next)) };
        assert!(delivery.decide(&other, no_clock).is_some());
    }

    #[test]
    fn the_acl_is_asked_again_only_when_the_topic_or_the_membership_moved() {
        let mut verdict = Verdict::default();
        let mut asked = 0;
        let mut ask = |version, topic: &[u8]| {
            verdict.allowed(version, topic, |_| {
                asked += 1;
                true
            })
        };
        assert!(ask(1, b"rooms/a/messages"));
        assert!(ask(1, b"rooms/a/messages"));
        assert!(ask(2, b"rooms/a/messages"));
        assert!(ask(2, b"rooms/b/messages"));
        assert_eq!(asked, 3);
    }

    #[test]
    fn the_edge_numbers_its_deliveries_above_the_routers_ids_and_reuses_freed_ones() {
        let mut pkids = EdgePkids::default();
        let first = pkids.take().unwrap();
        assert_eq!(first, ROUTER_MAX_PKID + 1);
        assert!(is_edge_pkid(first) && !is_edge_pkid(ROUTER_MAX_PKID));
        pkids.last = u16::MAX - 1;
        assert_eq!(pkids.take(), Some(u16::MAX));
        assert_eq!(pkids.take(), Some(ROUTER_MAX_PKID + 2), "wraps past the one still in flight");
        assert!(pkids.release(first));
        assert!(!pkids.release(first), "released once");
    }

    #[test]
    fn a_user_who_may_not_receive_gets_nothing() {
        let mut delivery = delivery();
        let granted = subscription(1, 1, None);
        assert_eq!(delivery.decide(&Forwarded { allowed: false, ..forward(&granted, None) }, no_clock), None);
    }
}
