//! A session's subscriptions as the edge keeps them: the MQTT 5 options rumqttd does not apply,
//! and the internal subscription identifier that tells which filter a forward matched.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// One granted subscription (handed to another node as it is when a session moves there).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

/// A granted subscription with its filter and the router's read position in its log.
#[derive(Debug)]
struct Held {
    filter: String,
    subscription: Subscription,
    /// The offset in the router's log of the filter the next forward should come from.
    next_offset: Option<u64>,
}

/// The subscriptions of one session, kept across connections while the session lives. Indexed
/// by internal identifier: every forward is looked up by it.
#[derive(Default)]
pub(crate) struct Subscriptions {
    by_internal_id: HashMap<usize, Held>,
    internal_ids: HashMap<String, usize>,
    last_internal_id: usize,
}

impl Subscriptions {
    /// A session's subscriptions as another node handed them over.
    pub(crate) fn from_handed_over(handed: Vec<(String, Subscription)>) -> Self {
        let mut subscriptions = Self::default();
        for (filter, subscription) in handed {
            subscriptions.grant(&filter, subscription);
        }
        subscriptions
    }

    pub(crate) fn len(&self) -> usize {
        self.by_internal_id.len()
    }

    pub(crate) fn get(&self, filter: &str) -> Option<&Subscription> {
        self.by_internal_id(*self.internal_ids.get(filter)?)
    }

    /// Grants `filter`, keeping the internal identifier of a filter already held. The caller
    /// fills in everything but `internal_id`.
    pub(crate) fn grant(&mut self, filter: &str, mut subscription: Subscription) -> &Subscription {
        let internal_id = match self.internal_ids.get(filter) {
            Some(&held) => held,
            None => {
                self.last_internal_id += 1;
                self.internal_ids.insert(filter.to_owned(), self.last_internal_id);
                self.last_internal_id
            }
        };
        subscription.internal_id = internal_id;
        match self.by_internal_id.entry(internal_id) {
            Entry::Occupied(held) => {
                let held = held.into_mut();
                held.subscription = subscription;
                &held.subscription
            }
            Entry::Vacant(slot) => {
                &slot.insert(Held { filter: filter.to_owned(), subscription, next_offset: None }).subscription
            }
        }
    }

    pub(crate) fn remove(&mut self, filter: &str) -> bool {
        match self.internal_ids.remove(filter) {
            Some(internal_id) => self.by_internal_id.remove(&internal_id).is_some(),
            None => false,
        }
    }

    /// The router reads `filter` afresh (it was subscribed there again): its offsets restart.
    pub(crate) fn reread(&mut self, filter: &str) {
        if let Some(held) = self.internal_ids.get(filter).and_then(|id| self.by_internal_id.get_mut(id)) {
            held.next_offset = None;
        }
    }

    /// Follows the router's read position in the log of the filter tagged `internal_id`; returns
    /// how many messages before `offset` the session never got. rumqttd's logs are bounded and
    /// drop what a slow subscriber has not read yet: its read cursor then jumps (brief bug g).
    /// Shared subscriptions read a cursor shared by the group and never count.
    pub(crate) fn skipped_before(&mut self, internal_id: usize, offset: u64) -> u64 {
        match self.by_internal_id.get_mut(&internal_id) {
            Some(held) if !held.filter.starts_with("$share/") => {
                held.next_offset.replace(offset + 1).map_or(0, |expected| offset.saturating_sub(expected))
            }
            _ => 0,
        }
    }

    /// The subscription a forward tagged with `internal_id` matched.
    pub(crate) fn by_internal_id(&self, internal_id: usize) -> Option<&Subscription> {
        self.by_internal_id.get(&internal_id).map(|held| &held.subscription)
    }

    /// Every subscription whose filter matches `topic` (the first also serves forwards the
    /// router sent a resumed session before it knew the session's identifiers again).
    pub(crate) fn all_matching<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a Subscription> + 'a {
        self.iter().filter(move |(filter, _)| rumqttd::protocol::matches(topic, filter)).map(|(_, s)| s)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Subscription)> {
        self.by_internal_id.values().map(|held| (&held.filter, &held.subscription))
    }

    pub(crate) fn any_no_local(&self) -> bool {
        self.by_internal_id.values().any(|held| held.subscription.no_local)
    }

    pub(crate) fn filters_starting_with(&self, prefix: &str) -> Vec<String> {
        self.internal_ids.keys().filter(|f| f.starts_with(prefix)).cloned().collect()
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

    #[test]
    fn a_jump_in_the_router_log_counts_the_messages_skipped() {
        let mut subs = Subscriptions::default();
        let room = subs.grant("rooms/a/messages", subscription(1)).internal_id;
        let shared = subs.grant("$share/g/jobs", subscription(1)).internal_id;
        assert_eq!(subs.skipped_before(room, 40), 0, "the first forward sets the position");
        assert_eq!(subs.skipped_before(room, 41), 0);
        assert_eq!(subs.skipped_before(room, 39), 0, "a resumed session rereads unacknowledged ones");
        assert_eq!(subs.skipped_before(room, 40), 0);
        assert_eq!(subs.skipped_before(room, 251), 210);
        assert_eq!(subs.skipped_before(shared, 1), 0);
        assert_eq!(subs.skipped_before(shared, 9), 0, "the group shares one cursor");
        subs.reread("rooms/a/messages");
        assert_eq!(subs.skipped_before(room, 500), 0, "a filter subscribed afresh starts over");
        assert_eq!(subs.skipped_before(9999, 1), 0, "a filter no longer held");
    }
}
