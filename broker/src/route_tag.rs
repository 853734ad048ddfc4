//! What the edge needs to know about a publish when the router forwards it, carried through the
//! router as a user property that is never delivered to a client.
//!
//! rumqttd forwards at the subscription's QoS, clears the retain flag and keeps no origin or
//! arrival time. Publishes outside Roost's stamped topics carry their QoS, retain flag, origin
//! connection and expiry deadline here, so delivery can honour MQTT: the lower of the two QoS,
//! retain-as-published, no-local, message expiry and one delivery for overlapping filters.

use rumqttd::protocol::PublishProperties;

/// The user property key; clients cannot send it (the edge removes it from every publish).
const KEY: &str = "roost:route";

/// The facts about a publish the router does not keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteTag {
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    /// The generation of the connection that published it, when that connection holds a
    /// no-local subscription.
    pub(crate) origin: Option<u64>,
    /// When the message expires, milliseconds since the epoch.
    pub(crate) expires_at: Option<i64>,
    /// A number unique to the publish, so a session whose filters overlap delivers it once.
    pub(crate) message: Option<u64>,
}

impl RouteTag {
    /// When a publish with `properties` expires (its message expiry interval from now), in
    /// milliseconds since the epoch.
    pub(crate) fn deadline(properties: &Option<PublishProperties>) -> Option<i64> {
        let seconds = properties.as_ref()?.message_expiry_interval?;
        Some(roost_protocol::now_millis() + i64::from(seconds) * 1000)
    }

    /// Adds the tag to `properties`.
    pub(crate) fn attach(self, properties: &mut Option<PublishProperties>) {
        let mut value = format!("q{}", self.qos);
        if self.retain {
            value.push_str(";r");
        }
        if let Some(origin) = self.origin {
            value.push_str(&format!(";o{origin}"));
        }
        if let Some(expires_at) = self.expires_at {
            value.push_str(&format!(";x{expires_at}"));
        }
        if let Some(message) = self.message {
            value.push_str(&format!(";m{message}"));
        }
        properties.get_or_insert_with(Default::default).user_properties.push((KEY.to_owned(), value));
    }

    /// Removes every tag from `properties` and returns the one the edge attached, if any.
    pub(crate) fn take(properties: &mut Option<PublishProperties>) -> Option<RouteTag> {
        let list = &mut properties.as_mut()?.user_properties;
        let at = list.iter().rposition(|(key, _)| key == KEY)?;
        let (_, value) = list.remove(at);
        list.retain(|(key, _)| key != KEY);
        let mut tag = RouteTag { qos: 0, retain: false, origin: None, expires_at: None, message: None };
        for field in value.split(';') {
            match field.split_at_checked(1) {
                Some(("q", qos)) => tag.qos = qos.parse().ok()?,
                Some(("r", "")) => tag.retain = true,
                Some(("o", origin)) => tag.origin = origin.parse().ok(),
                Some(("x", at)) => tag.expires_at = at.parse().ok(),
                Some(("m", message)) => tag.message = message.parse().ok(),
                _ => return None,
            }
        }
        Some(tag)
    }

    /// Removes tags a client put on its own publish.
    pub(crate) fn strip(properties: &mut Option<PublishProperties>) {
        if let Some(properties) = properties {
            properties.user_properties.retain(|(key, _)| key != KEY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_the_trip_and_leaves_other_properties_alone() {
        let mut properties =
            Some(PublishProperties { user_properties: vec![("a".into(), "1".into())], ..Default::default() });
        let tag =
            RouteTag { qos: 2, retain: true, origin: Some(7), expires_at: Some(1_700_000_000_000), message: Some(9) };
        tag.attach(&mut properties);
        assert_eq!(RouteTag::take(&mut properties), Some(tag));
        assert_eq!(properties.unwrap().user_properties, [("a".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn a_client_cannot_forge_one() {
        let forged = vec![(KEY.to_owned(), "q2;o1".to_owned())];
        let mut properties = Some(PublishProperties { user_properties: forged, ..Default::default() });
        RouteTag::strip(&mut properties);
        assert_eq!(RouteTag::take(&mut properties), None);
    }
}
