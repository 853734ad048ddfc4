//! A session's subscriptions as the edge keeps them: the MQTT 5 options rumqttd does not apply,
//! and the internal subscription identifier that tells which filter a forward matched.

use std::collections::HashMap;

/// One granted subscription.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    /// The QoS granted to the client.
    pub(crate) qos: u8,
    /// The QoS the router forwards at: fixed when the router first saw the filter.
    pub(crate) router_qos: u8,
    pub(crate) no_local: bool,
    pub(crate) retain_as_published: bool,
    /// Whether the retained messages the router replays for this subscribe reach the client.
    pub(crate) send_retained: bool,
    /// The client's own subscription identifier (MQTT 5).
    pub(crate) client_id: Option<usize>,
    /// The identifier the router tags this filter's forwards with.
    pub(crate) internal_id: usize,
}

/// The subscriptions of one session, kept across connections while the session lives.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    by_filter: HashMap<String, Subscription>,
    by_internal_id: HashMap<usize, String>,
    last_internal_id: usize,
}

impl Subscriptions {
    pub(crate) fn len(&self) -> usize {
        self.by_filter.len()
    }

    pub(crate) fn get(&self, filter: &str) -> Option<&Subscription> {
        self.by_filter.get(filter)
    }

    /// Grants `filter`, keeping the internal identifier of a filter already held. The caller
    /// fills in everything but `internal_id`.
    pub(crate) fn grant(&mut self, filter: &str, mut subscription: Subscription) -> &Subscription {
        subscription.internal_id = match self.by_filter.get(filter) {
            Some(held) => held.internal_id,
            None => {
                self.last_internal_id += 1;
                self.by_internal_id.insert(self.last_internal_id, filter.to_owned());
                self.last_internal_id
            }
        };
        self.by_filter.entry(filter.to_owned()).insert_entry(subscription).into_mut()
    }

    pub(crate) fn remove(&mut self, filter: &str) -> bool {
        match self.by_filter.remove(filter) {
            Some(removed) => {
                self.by_internal_id.remove(&removed.internal_id);
                true
            }
            None => false,
        }
    }

    /// The subscription a forward tagged with `internal_id` matched.
    pub(crate) fn by_internal_id(&self, internal_id: usize) -> Option<&Subscription> {
        self.by_filter.get(self.by_internal_id.get(&internal_id)?)
    }

    /// Every subscription whose filter matches `topic` (the first also serves forwards the
    /// router sent a resumed session before it knew the session's identifiers again).
    pub(crate) fn all_matching<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a Subscription> + 'a {
        self.by_filter.iter().filter(move |(filter, _)| rumqttd::protocol::matches(topic, filter)).map(|(_, s)| s)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Subscription)> {
        self.by_filter.iter()
    }

    pub(crate) fn any_no_local(&self) -> bool {
        self.by_filter.values().any(|s| s.no_local)
    }

    pub(crate) fn filters_starting_with(&self, prefix: &str) -> Vec<String> {
        self.by_filter.keys().filter(|f| f.starts_with(prefix)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(qos: u8) -> Subscription {
        Subscription {
            qos,
            router_qos: qos,
            no_local: false,
            retain_as_published: false,
            send_retained: true,
            client_id: None,
            internal_id: 0,
        }
    }

    #[test]
    fn a_renewed_filter_keeps_its_internal_id() {
        let mut subs = Subscriptions::default();
        let first = subs.grant("a/+", subscription(1)).internal_id;
        let other = subs.grant("b", subscription(0)).internal_id;
        assert_ne!(first, other);
        assert_eq!(subs.grant("a/+", subscription(2)).internal_id, first);
        assert_eq!(subs.by_internal_id(first).map(|s| s.qos), Some(2));
        assert!(subs.remove("a/+"));
        assert!(subs.by_internal_id(first).is_none());
        assert_eq!(subs.len(), 1);
    }
}
