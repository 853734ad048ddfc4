//! The topic rules of the contract: who may publish, subscribe to and receive what. Roost's
//! own namespaces (`rooms/`, `presence/`, `users/`, `$`) follow the chat rules only; the
//! operator's rules decide everything else.

use crate::membership::MembershipView;
use crate::rules::OperatorRules;
use roost_protocol::names::is_valid;
use roost_protocol::Topic;
use std::sync::Arc;

/// The outcome of a publish check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Not a topic of the contract, or one only the server writes.
    Forbidden,
    /// A room topic of a room the user is not a member of.
    NotMember,
}

/// Topic policy over the membership view.
#[derive(Clone)]
pub struct Policy {
    membership: Arc<MembershipView>,
    rules: Arc<OperatorRules>,
}

/// Is `topic` (a name or a filter) in one of Roost's own namespaces?
pub fn is_roost_namespace(topic: &str) -> bool {
    topic.starts_with('$') || matches!(topic.split('/').next(), Some("rooms" | "presence" | "users"))
}

impl Policy {
    pub fn new(membership: Arc<MembershipView>, rules: OperatorRules) -> Self {
        Self { membership, rules: Arc::new(rules) }
    }

    pub fn membership(&self) -> &Arc<MembershipView> {
        &self.membership
    }

    /// May connection (`user`, `client_id`) publish on `topic`?
    pub fn publish(&self, user: &str, client_id: &str, topic: &Topic<'_>) -> Decision {
        match *topic {
            Topic::Messages(room) | Topic::Typing(room) | Topic::Receipts(room) => {
                if self.membership.is_member(room, user) {
                    Decision::Allow
                } else {
                    Decision::NotMember
                }
            }
            Topic::Device { user: owner, client_id: device } if owner == user && device == client_id => Decision::Allow,
            _ => Decision::Forbidden,
        }
    }

    /// May `user` publish on `topic`, outside Roost's namespaces (operator rules)?
    pub fn publish_other(&self, user: &str, topic: &str) -> bool {
        !is_roost_namespace(topic) && self.rules.may_publish(user, topic)
    }

    /// May `user` subscribe to `filter`? Room filters need membership of a named room, or
    /// `+` for the room (every room of the user, now and later: the edge follows membership);
    /// presence filters may use `+` for the user level (deliveries are then filtered by
    /// [`Policy::may_receive`]); other `$`-filters and anything else in Roost's namespaces are
    /// denied. Filters outside them, wildcards at the first level included, and shared
    /// subscriptions of those (`$share/group/filter`) follow the operator rules.
    pub fn subscribe(&self, user: &str, filter: &str) -> bool {
        if let Some(shared) = filter.strip_prefix("$share/") {
            let inner = shared.split_once('/').map(|(_, inner)| inner).unwrap_or_default();
            return !is_roost_namespace(inner) && self.rules.may_subscribe(user, inner);
        }
        if !is_roost_namespace(filter) {
            return self.rules.may_subscribe(user, filter);
        }
        let levels: Vec<&str> = filter.split('/').collect();
        match levels.as_slice() {
            ["rooms", room, kind] => {
                matches!(*kind, "messages" | "typing" | "receipts" | "events" | "+")
                    && (*room == "+" || (is_valid(room) && self.membership.is_member(room, user)))
            }
            ["presence", "+"] | ["presence", "+", "+"] => true,
            ["presence", owner] | ["presence", owner, _] if !is_valid(owner) => false,
            ["presence", owner] => self.membership.shares_room(user, owner),
            ["presence", owner, device] => {
                (*device == "+" || roost_protocol::topic::is_client_id(device))
                    && self.membership.shares_room(user, owner)
            }
            ["users", owner, "inbox"] => *owner == user,
            _ => false,
        }
    }

    /// May `user` receive a message published on `topic`? Checked on every delivery, so a
    /// removed member stops receiving at once and wildcard presence filters see only peers.
    pub fn may_receive(&self, user: &str, topic: &str) -> bool {
        match Topic::parse(topic) {
            Some(Topic::Messages(room) | Topic::Typing(room) | Topic::Receipts(room) | Topic::Events(room)) => {
                self.membership.is_member(room, user)
            }
            Some(Topic::Device { user: owner, .. } | Topic::Presence(owner)) => {
                self.membership.shares_room(user, owner)
            }
            Some(Topic::Inbox(owner)) => owner == user,
            None => !is_roost_namespace(topic) && self.rules.may_receive(user, topic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(
            Arc::new(MembershipView::from_pairs([
                ("lobby".into(), "alice".into()),
                ("lobby".into(), "bob".into()),
                ("secret".into(), "carol".into()),
            ])),
            OperatorRules::default(),
        )
    }

    #[test]
    fn members_publish_in_their_rooms_only() {
        let p = policy();
        let t = |s| Topic::parse(s).unwrap();
        assert_eq!(p.publish("alice", "c1", &t("rooms/lobby/messages")), Decision::Allow);
        assert_eq!(p.publish("alice", "c1", &t("rooms/secret/messages")), Decision::NotMember);
        assert_eq!(p.publish("alice", "c1", &t("rooms/lobby/events")), Decision::Forbidden);
        assert_eq!(p.publish("alice", "c1", &t("presence/alice/c1")), Decision::Allow);
        assert_eq!(p.publish("alice", "c1", &t("presence/alice/c2")), Decision::Forbidden);
        assert_eq!(p.publish("alice", "c1", &t("presence/bob/c1")), Decision::Forbidden);
        assert_eq!(p.publish("alice", "c1", &t("presence/alice")), Decision::Forbidden);
        assert_eq!(p.publish("alice", "c1", &t("users/alice/inbox")), Decision::Forbidden);
    }

    #[test]
    fn subscriptions_follow_the_topic_table() {
        let p = policy();
        for allowed in [
            "rooms/lobby/messages",
            "rooms/lobby/+",
            "rooms/+/messages",
            "rooms/+/+",
            "presence/+",
            "presence/bob",
            "presence/+/+",
            "users/alice/inbox",
        ] {
            assert!(p.subscribe("alice", allowed), "{allowed}");
        }
        for denied in [
            "#",
            "rooms/#",
            "rooms/+/#",
            "rooms/+/other",
            "rooms/secret/messages",
            "$share/x/rooms/+/messages",
            "$share/x/rooms/lobby/messages",
            "presence/carol",
            "presence/#",
            "users/bob/inbox",
            "users/+/inbox",
            "$SYS/#",
        ] {
            assert!(!p.subscribe("alice", denied), "{denied}");
        }
    }

    #[test]
    fn deliveries_need_membership_or_a_shared_room() {
        let p = policy();
        assert!(p.may_receive("alice", "rooms/lobby/messages"));
        assert!(!p.may_receive("alice", "rooms/secret/messages"));
        assert!(p.may_receive("alice", "presence/bob/phone"));
        assert!(!p.may_receive("alice", "presence/carol"));
        assert!(!p.may_receive("alice", "users/bob/inbox"));
    }

    #[test]
    fn operator_rules_never_open_roost_namespaces() {
        use crate::rules::{Access, Effect, Rule};
        let open = Rule { effect: Effect::Allow, access: Access::All, topic: "#".into() };
        let p = Policy::new(Arc::new(MembershipView::default()), OperatorRules::new(vec![open]));
        assert!(p.publish_other("alice", "sensors/1"));
        assert!(!p.publish_other("alice", "rooms/lobby/messages"));
        assert!(!p.publish_other("alice", "$SYS/x"));
        assert!(p.subscribe("alice", "#"));
        assert!(p.subscribe("alice", "$share/g/sensors/+"));
        assert!(!p.subscribe("alice", "$share/g/rooms/lobby/messages"));
        assert!(!p.subscribe("alice", "rooms/lobby/messages"));
        assert!(p.may_receive("alice", "sensors/1"));
        assert!(!p.may_receive("alice", "rooms/lobby/messages"));
    }
}
