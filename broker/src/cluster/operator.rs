//! The operator's topics (outside Roost's namespaces, routed by each node's rumqttd router)
//! across nodes: what this node's clients publish there, and their wills, go to every other
//! node, which hands them to its router as its server link's own publishes. Every node's router
//! then keeps the same retained messages. The API's server messages on those topics reach every
//! node through the outbox and are not carried.

use super::{wire, Carrier};
use crate::background::Background;
use crate::links::ServerLink;
use crate::route_tag::RouteTag;
use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use rumqttd::protocol::{Publish, PublishProperties};
use tracing::warn;

pub(super) struct Operator {
    carrier: Carrier,
}

impl Operator {
    pub(super) fn start(client: Client, carrier: Carrier, server: ServerLink, background: &Background) -> Self {
        background.spawn_until_stop(receive(client, server));
        Self { carrier }
    }

    /// `properties` carry the publish's route tag (QoS, retain, expiry).
    pub(super) fn publish(&self, publish: &Publish, properties: &Option<PublishProperties>) {
        let Ok(topic) = std::str::from_utf8(&publish.topic) else { return };
        let headers = wire::operator_headers(topic, properties);
        self.carrier.send(wire::OPERATOR.to_owned(), headers, publish.payload.clone());
    }
}

/// Hands what the other nodes' clients publish on the operator's topics to this node's router.
async fn receive(client: Client, server: ServerLink) {
    let mut carried = match client.subscribe(wire::OPERATOR).await {
        Ok(carried) => carried,
        Err(e) => return warn!(error = %e, "cannot follow the operator's topics of the other nodes"),
    };
    while let Some(message) = carried.next().await {
        let Some((topic, mut properties)) = wire::operator_publish(message.headers.as_ref()) else { continue };
        // the tag's origin and message number belong to the publishing node's connections
        let Some(tag) = RouteTag::take(&mut properties) else { continue };
        RouteTag { origin: None, message: None, ..tag }.attach(&mut properties);
        server.publish_with(Publish::new(Bytes::from(topic), message.payload, tag.retain), properties);
    }
}
