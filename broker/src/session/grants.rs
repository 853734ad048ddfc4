//! Which filters of a SUBSCRIBE a session is granted, what each asks of the router, and the
//! SUBACKs that wait for the router to take them; UNSUBSCRIBE answered by the edge.

use crate::edge::Edge;
use crate::hub::SessionId;
use crate::subscriptions::{Subscription, Subscriptions};
use roost_auth::acl::is_roost_namespace;
use rumqttd::protocol::{
    valid_filter, Filter, Packet, QoS, RetainForwardRule, SubAck, Subscribe, SubscribeProperties, SubscribeReasonCode,
    UnsubAck, UnsubAckReason, Unsubscribe,
};
use std::collections::HashMap;
use tracing::debug;

/// A SUBSCRIBE waiting for the router to take its filters.
struct PendingSubscribe {
    codes: Vec<SubscribeReasonCode>,
    awaiting: usize,
    /// Presence filters whose retained state the edge replays after the SUBACK.
    presence_replays: Vec<String>,
}

/// A SUBACK due to the client, with the presence filters whose state follows it.
pub(crate) struct Granted {
    pub(crate) suback: Packet,
    pub(crate) presence_replays: Vec<String>,
}

/// The SUBSCRIBEs of one session the router has not taken yet, by packet id.
#[derive(Default)]
pub(crate) struct Grants {
    pending: HashMap<u16, PendingSubscribe>,
}

/// Who subscribes.
pub(crate) struct Subscriber<'a> {
    pub(crate) edge: &'a Edge,
    pub(crate) user: &'a str,
    /// The session, as the hub knows it.
    pub(crate) session: SessionId,
    pub(crate) v5: bool,
}

impl Subscriber<'_> {
    /// Why `path` is refused, for a filter the session holds already (`held`) or not.
    fn refusal(&self, path: &str, held: bool, subscriptions: &Subscriptions) -> Option<SubscribeReasonCode> {
        let quota = if self.v5 { SubscribeReasonCode::QuotaExceeded } else { SubscribeReasonCode::Failure };
        if !held && subscriptions.len() >= self.edge.config.max_subscriptions {
            return Some(quota);
        }
        if !valid_filter(path) || !self.edge.policy.subscribe(self.user, path) || !self.names_a_live_device(path) {
            // chat rules answer 0x87; the operator's rules 0x80, what generic clients (the Paho
            // interoperability suite among them) expect of a broker ACL
            return Some(if self.v5 && is_roost_namespace(path) {
                SubscribeReasonCode::NotAuthorized
            } else {
                SubscribeReasonCode::Failure
            });
        }
        // Roost's topics are routed by the hub and never grow the router
        let grows_router = !held && !is_roost_namespace(path);
        (grows_router && !self.edge.router_filters.admit(self.user, path)).then_some(quota)
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
}

impl Grants {
    /// Grants or refuses each filter of `subscribe`: Roost's filters are followed in the hub at
    /// once, what the router must do for the others is appended to `router`. Returns the SUBACK
    /// when no filter waits for the router.
    pub(crate) fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        subscriptions: &mut Subscriptions,
        subscribe: Subscribe,
        properties: Option<SubscribeProperties>,
        router: &mut Vec<Packet>,
    ) -> Option<Granted> {
        let client_id = properties.and_then(|p| p.id);
        let mut pending = PendingSubscribe { codes: Vec::new(), awaiting: 0, presence_replays: Vec::new() };
        for filter in subscribe.filters {
            let path = filter.path;
            let held = subscriptions.get(&path).map(|held| held.router_qos);
            if let Some(code) = subscriber.refusal(&path, held.is_some(), subscriptions) {
                debug!(user = subscriber.user, filter = path, ?code, "subscription denied");
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
            let in_hub = is_roost_namespace(&path);
            let renew_in_router = held.is_some() && send_retained && !in_hub;
            let qos = filter.qos as u8;
            let router_qos = match held {
                Some(router_qos) if !renew_in_router && !in_hub => router_qos,
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
            let granted = subscriptions.grant(&path, subscription);
            if path.starts_with("presence/") && send_retained {
                pending.presence_replays.push(path.clone());
            }
            pending.codes.push(SubscribeReasonCode::Success(filter.qos));
            if subscriber.edge.hub.follow(subscriber.session, &path) {
                continue;
            }
            let router_subscribe = router_subscribe(subscribe.pkid, &path, granted);
            if renew_in_router {
                subscriptions.reread(&path);
                let unsubscribe = Unsubscribe { pkid: subscribe.pkid, filters: vec![path.clone()] };
                router.push(Packet::Unsubscribe(unsubscribe, None));
            }
            router.push(router_subscribe);
            pending.awaiting += 1;
        }
        if pending.awaiting == 0 {
            let suback = Packet::SubAck(SubAck { pkid: subscribe.pkid, return_codes: pending.codes }, None);
            return Some(Granted { suback, presence_replays: pending.presence_replays });
        }
        self.pending.insert(subscribe.pkid, pending);
        None
    }

    /// The router took one filter of SUBSCRIBE `pkid`: once it took them all, the SUBACK is due.
    pub(crate) fn router_took(&mut self, pkid: u16) -> Option<Granted> {
        let pending = self.pending.get_mut(&pkid)?;
        pending.awaiting -= 1;
        if pending.awaiting > 0 {
            return None;
        }
        let pending = self.pending.remove(&pkid)?;
        let suback = Packet::SubAck(SubAck { pkid, return_codes: pending.codes }, None);
        Some(Granted { suback, presence_replays: pending.presence_replays })
    }
}

/// Drops the filters of `unsubscribe` the session holds, in the hub or, passed on in `router`,
/// in the router, and returns the UNSUBACK: the router acks only filters it knew, so the edge
/// answers every UNSUBSCRIBE itself.
pub(crate) fn unsubscribe(
    subscriber: &Subscriber<'_>,
    subscriptions: &mut Subscriptions,
    mut unsubscribe: Unsubscribe,
    router: &mut Vec<Packet>,
) -> Packet {
    let reasons = unsubscribe
        .filters
        .iter()
        .map(|filter| match subscriptions.remove(filter) {
            true => UnsubAckReason::Success,
            false => UnsubAckReason::NoSubscriptionExisted,
        })
        .collect();
    let unsuback = Packet::UnsubAck(UnsubAck { pkid: unsubscribe.pkid, reasons }, None);
    unsubscribe.filters.retain(|filter| !subscriber.edge.hub.unfollow(subscriber.session, filter));
    if !unsubscribe.filters.is_empty() {
        router.push(Packet::Unsubscribe(unsubscribe, None));
    }
    unsuback
}

/// The router's SUBSCRIBE for one filter, tagged with the filter's internal identifier.
pub(crate) fn router_subscribe(pkid: u16, path: &str, subscription: &Subscription) -> Packet {
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
