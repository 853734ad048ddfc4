//! Flow control of a client's publishes: the rate limit, the receive maximum, QoS 2 resends,
//! topic aliases, and the acknowledgements, sent in the order the publishes arrived and only
//! once the store confirmed a chat message.

use super::exit::Exit;
use crate::config::{RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM};
use crate::stamp::Rejection;
use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use roost_auth::rate::TokenBucket;
use rumqttd::protocol::{
    Packet, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, PublishProperties,
};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::oneshot;

/// An acknowledgement owed to the client.
/// Reason codes only: the Paho interoperability client rejects acknowledgements that carry
/// properties, and the reason reaches users on their inbox anyway.
#[derive(Debug, PartialEq)]
pub(crate) struct Ack {
    pkid: u16,
    qos: u8,
    reason: PubAckReason,
}

impl Ack {
    pub(crate) fn packet(self) -> Packet {
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
pub(crate) enum Routed {
    /// Handed to the router; for a chat message, with the store's confirmation.
    Accepted(Option<oneshot::Receiver<()>>),
    /// Dropped, for this reason.
    Refused(Rejection),
}

/// Whether a publish is processed.
#[derive(Debug, PartialEq)]
pub(crate) enum Admission {
    /// A new publish.
    New,
    /// A QoS 2 publish received before and not released yet: acknowledged again, not processed.
    Resent(Ack),
}

/// The state of the client's publishes in flight.
pub(crate) struct Inbound {
    /// Whether the client agreed to the receive maximum (MQTT 5).
    receive_maximum: bool,
    /// Publishes the client may still send now (`None`: no rate limit).
    budget: Option<TokenBucket>,
    pending_acks: FuturesOrdered<PendingAck>,
    /// QoS 1 publishes not acknowledged yet.
    unacked_qos1: usize,
    /// QoS 2 packet ids received and not yet released: a resend is not processed twice.
    qos2_received: HashSet<u16>,
    /// The client's topic aliases (MQTT 5).
    topic_aliases: HashMap<u16, Bytes>,
}

impl Inbound {
    /// `receive_maximum`: the client speaks MQTT 5 and was given [`RECEIVE_MAXIMUM`];
    /// `max_rate`: publishes per second per connection.
    pub(crate) fn new(receive_maximum: bool, max_rate: Option<u32>) -> Self {
        Self {
            receive_maximum,
            budget: max_rate.map(TokenBucket::new),
            pending_acks: FuturesOrdered::new(),
            unacked_qos1: 0,
            qos2_received: HashSet::new(),
            topic_aliases: HashMap::new(),
        }
    }

    /// Decides whether publish `pkid` at `qos` is processed, or ends the connection when the
    /// client exceeds its rate or its receive maximum.
    pub(crate) fn admit(&mut self, qos: u8, pkid: u16) -> Result<Admission, Exit> {
        if qos == 2 && self.qos2_received.contains(&pkid) {
            return Ok(Admission::Resent(Ack { pkid, qos, reason: PubAckReason::Success }));
        }
        if let Some(budget) = &mut self.budget {
            if !budget.take() {
                metrics::counter!("roost_mqtt_rate_limited_total").increment(1);
                return Err(Exit::RateLimited(budget.rate));
            }
        }
        let in_flight = self.unacked_qos1 + self.qos2_received.len();
        if qos > 0 && self.receive_maximum && in_flight >= usize::from(RECEIVE_MAXIMUM) {
            return Err(Exit::ReceiveMaximum);
        }
        Ok(Admission::New)
    }

    /// The topic a publish goes to, resolving and recording MQTT 5 topic aliases.
    pub(crate) fn topic(&mut self, topic: &Bytes, properties: &mut Option<PublishProperties>) -> Result<Bytes, Exit> {
        let Some(properties) = properties.as_mut() else { return Ok(topic.clone()) };
        if !properties.subscription_identifiers.is_empty() {
            return Err(Exit::Protocol("a client PUBLISH carries a subscription identifier".into()));
        }
        let Some(alias) = properties.topic_alias.take() else { return Ok(topic.clone()) };
        if alias == 0 || alias > TOPIC_ALIAS_MAXIMUM {
            return Err(Exit::TopicAlias);
        }
        if topic.is_empty() {
            return self.topic_aliases.get(&alias).cloned().ok_or(Exit::TopicAlias);
        }
        self.topic_aliases.insert(alias, topic.clone());
        Ok(topic.clone())
    }

    /// Queues the acknowledgement of publish `pkid` at `qos` (> 0), sent once what `routed`
    /// waits for is done and every earlier acknowledgement went.
    pub(crate) fn routed(&mut self, pkid: u16, qos: u8, routed: Routed) {
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
                Box::pin(std::future::ready((Ack { reason: rejection.reason(), ..success }, true)))
            }
        };
        if qos == 1 {
            self.unacked_qos1 += 1;
        }
        self.pending_acks.push_back(pending);
    }

    /// Whether acknowledgements are pending.
    pub(crate) fn awaiting(&self) -> bool {
        !self.pending_acks.is_empty()
    }

    /// The next acknowledgement due, in order; `None` when it may not be sent (its message
    /// was not stored). Cancel-safe; never resolves while nothing is pending.
    pub(crate) async fn next_ack(&mut self) -> Option<Packet> {
        let Some((ack, send)) = self.pending_acks.next().await else { return std::future::pending().await };
        if ack.qos == 1 {
            self.unacked_qos1 -= 1;
        }
        send.then(|| ack.packet())
    }

    /// The client released QoS 2 publish `pkid`: the PUBCOMP that completes it.
    pub(crate) fn released(&mut self, pkid: u16) -> Packet {
        self.qos2_received.remove(&pkid);
        Packet::PubComp(PubComp { pkid, reason: PubCompReason::Success }, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next_now(inbound: &mut Inbound) -> Option<Option<Packet>> {
        inbound.next_ack().now_or_never()
    }

    #[test]
    fn a_qos2_resend_is_acknowledged_again_and_not_processed_until_released() {
        let mut inbound = Inbound::new(true, None);
        assert_eq!(inbound.admit(2, 7).unwrap(), Admission::New);
        inbound.routed(7, 2, Routed::Accepted(None));
        let resent = inbound.admit(2, 7).unwrap();
        assert_eq!(resent, Admission::Resent(Ack { pkid: 7, qos: 2, reason: PubAckReason::Success }));
        inbound.released(7);
        assert_eq!(inbound.admit(2, 7).unwrap(), Admission::New);
    }

    #[test]
    fn publishes_past_the_receive_maximum_end_an_mqtt5_connection_only() {
        let mut v5 = Inbound::new(true, None);
        let mut v311 = Inbound::new(false, None);
        for pkid in 1..=RECEIVE_MAXIMUM {
            for inbound in [&mut v5, &mut v311] {
                inbound.admit(1, pkid).unwrap();
                inbound.routed(pkid, 1, Routed::Accepted(Some(oneshot::channel().1)));
            }
        }
        assert!(matches!(v5.admit(1, 0), Err(Exit::ReceiveMaximum)));
        assert!(v311.admit(1, 0).is_ok());
        assert!(v5.admit(0, 0).is_ok(), "QoS 0 is not counted");
    }

    #[test]
    fn acknowledgements_go_in_arrival_order_and_only_once_stored() {
        let mut inbound = Inbound::new(true, None);
        let (stored, confirmation) = oneshot::channel();
        inbound.routed(1, 1, Routed::Accepted(Some(confirmation)));
        inbound.routed(2, 1, Routed::Refused(Rejection::Forbidden));
        assert!(next_now(&mut inbound).is_none(), "the first waits for the store, so the second waits too");
        stored.send(()).unwrap();
        let first = next_now(&mut inbound).flatten();
        assert!(matches!(first, Some(Packet::PubAck(PubAck { pkid: 1, reason: PubAckReason::Success }, _))));
        let second = next_now(&mut inbound).flatten();
        assert!(matches!(second, Some(Packet::PubAck(PubAck { pkid: 2, reason: PubAckReason::NotAuthorized }, _))));
        let (lost, confirmation) = oneshot::channel::<()>();
        inbound.routed(3, 1, Routed::Accepted(Some(confirmation)));
        drop(lost);
        assert_eq!(next_now(&mut inbound), Some(None), "a message the store never confirmed is not acknowledged");
        assert!(!inbound.awaiting());
    }

    #[test]
    fn topic_aliases_are_recorded_resolved_and_bounded() {
        let mut inbound = Inbound::new(true, None);
        let with_alias = |alias| Some(PublishProperties { topic_alias: Some(alias), ..Default::default() });
        let topic = Bytes::from_static(b"rooms/lobby/messages");
        assert_eq!(inbound.topic(&topic, &mut with_alias(3)).unwrap(), topic);
        assert_eq!(inbound.topic(&Bytes::new(), &mut with_alias(3)).unwrap(), topic);
        assert!(matches!(inbound.topic(&Bytes::new(), &mut with_alias(4)), Err(Exit::TopicAlias)));
        assert!(matches!(inbound.topic(&topic, &mut with_alias(TOPIC_ALIAS_MAXIMUM + 1)), Err(Exit::TopicAlias)));
        assert!(matches!(inbound.topic(&topic, &mut with_alias(0)), Err(Exit::TopicAlias)));
    }
}
