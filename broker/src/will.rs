//! A client's last will on a topic outside Roost's namespaces, published by the edge itself
//! (rumqttd's own will never fires for an embedder).

use crate::edge::Edge;
use crate::route_tag::RouteTag;
use rumqttd::protocol::{LastWill, LastWillProperties, Publish, PublishProperties};
use std::time::Duration;

/// A will on a topic outside Roost's namespaces (a will on the connection's own presence
/// topic is the presence board's job: the server publishes the device's offline status).
pub(crate) struct Will {
    will: LastWill,
    properties: Option<LastWillProperties>,
}

impl Will {
    pub(crate) fn new(will: LastWill, properties: Option<LastWillProperties>) -> Self {
        Self { will, properties }
    }

    pub(crate) fn delay(&self) -> Duration {
        Duration::from_secs(self.properties.as_ref().and_then(|p| p.delay_interval).unwrap_or(0).into())
    }

    /// Publishes the will through the server link, with its properties (and, with several
    /// nodes, through the other nodes' too).
    pub(crate) fn publish(self, edge: &Edge) {
        let Will { will, properties } = self;
        let mut publish_properties = properties.map(|p| PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            topic_alias: None,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            subscription_identifiers: Vec::new(),
            content_type: p.content_type,
        });
        let expires_at = RouteTag::deadline(&publish_properties);
        RouteTag { qos: will.qos as u8, retain: will.retain, origin: None, expires_at, message: None }
            .attach(&mut publish_properties);
        let publish = Publish::new(will.topic, will.message, will.retain);
        edge.carry_operator(&publish, &publish_properties);
        edge.server.publish_with(publish, publish_properties);
    }
}
