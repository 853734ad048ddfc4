//! One client publish: its topic checked, then a chat topic handed to the chat pipeline and
//! any other topic to the operator's rules, and a refusal told to the sender.

use super::exit::Exit;
use super::inbound::{Admission, Routed};
use super::Session;
use crate::chat::Outcome;
use crate::hub::{Kinds, Message};
use crate::route_tag::RouteTag;
use crate::stamp::{Invalid, Rejection};
use bytes::Bytes;
use roost_auth::ANONYMOUS;
use roost_protocol::{now_millis, to_payload, InboxNotice, Topic};
use rumqttd::protocol::{Packet, Publish, PublishProperties};
use tracing::debug;

impl Session {
    pub(super) async fn on_publish(
        &mut self,
        publish: Publish,
        properties: Option<PublishProperties>,
        qos: u8,
        pkid: u16,
    ) -> Result<(), Exit> {
        if let Admission::Resent(ack) = self.inbound.admit(qos, pkid)? {
            self.io.write(ack.packet());
            return Ok(());
        }
        let routed = self.route(publish, properties, qos).await?;
        if qos > 0 {
            self.inbound.routed(pkid, qos, routed);
        }
        Ok(())
    }

    /// Resolves the topic, authorizes, validates and, on chat topics, stamps one client
    /// publish, and queues it for the router.
    async fn route(
        &mut self,
        publish: Publish,
        mut properties: Option<PublishProperties>,
        qos: u8,
    ) -> Result<Routed, Exit> {
        let topic = self.inbound.topic(&publish.topic, &mut properties)?;
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
            let publish = Publish::new(topic, publish.payload, publish.retain);
            self.edge.carry_operator(&publish, &properties);
            self.out.push(Packet::Publish(publish, properties));
            return Ok(Routed::Accepted(None));
        };
        let (payload, seq, stored) = match self
            .edge
            .chat
            .publish(&self.identity.user, &self.identity.client_id, &chat_topic, &publish.payload)
            .await
        {
            Outcome::Deliver { payload, seq, stored } => (payload, seq, stored),
            Outcome::Again { stored } => return Ok(Routed::Accepted(Some(stored))),
            Outcome::Dropped => return Ok(Routed::Accepted(None)),
            Outcome::Refused(why) => return Ok(self.refuse(&raw_topic, why)),
        };
        let origin = Some(self.identity.generation);
        let message = Message { topic, payload: Bytes::from(payload), properties, expires_at, origin };
        match chat_topic {
            Topic::Device { user, .. } => {
                self.edge.hub.publish_presence(user, message);
            }
            Topic::Messages(room) => self.edge.publish_room(room, Kinds::MESSAGES, seq, message),
            Topic::Typing(room) => self.edge.publish_room(room, Kinds::TYPING, None, message),
            Topic::Receipts(room) => self.edge.publish_room(room, Kinds::RECEIPTS, None, message),
            // the chat pipeline refuses the rest: only the server writes them
            Topic::Events(_) | Topic::Presence(_) | Topic::Inbox(_) => {}
        }
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
            // nobody reading the inbox: no notice is made; a flood of refused publishes gets the
            // first notices of each second, not a queue
            if self.edge.hub.follows_inbox(self.user()) {
                if self.notice_budget.take() {
                    let message = Message::server(inbox, to_payload(&notice));
                    self.edge.hub.publish_inbox(self.user(), message);
                } else {
                    metrics::counter!("roost_inbox_notices_dropped_total").increment(1);
                }
            }
        }
        Routed::Refused(rejection)
    }
}
