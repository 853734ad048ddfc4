//! Operator ACL rules: what connections may do outside Roost's own topics, from configuration.

use serde::{Deserialize, Serialize};

/// The user of a connection without credentials, on a listener that allows that. No
/// registered name is empty, so chat rules never grant it anything.
pub const ANONYMOUS: &str = "";

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// Which operations a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Publish,
    Subscribe,
    All,
}

/// One rule: `effect` `access` on topics matching `topic`, an MQTT filter in which `%u`
/// stands for the connection's user name (rules with `%u` never match anonymous connections).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub effect: Effect,
    pub access: Access,
    pub topic: String,
}

/// The operator's rules, first match wins; nothing matching means denied.
#[derive(Debug, Clone, Default)]
pub struct OperatorRules {
    rules: Vec<Rule>,
}

impl OperatorRules {
    pub fn new(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// May `user` publish on `topic`?
    pub fn may_publish(&self, user: &str, topic: &str) -> bool {
        self.decide(user, Access::Publish, |pattern| matches(pattern, topic))
    }

    /// May `user` subscribe to `filter`? A rule decides when its pattern covers every topic
    /// the filter can match.
    pub fn may_subscribe(&self, user: &str, filter: &str) -> bool {
        self.decide(user, Access::Subscribe, |pattern| covers(pattern, filter))
    }

    /// May `user` receive a message on `topic` (checked on every delivery, so a deny rule
    /// inside a broader allowed filter still holds)?
    pub fn may_receive(&self, user: &str, topic: &str) -> bool {
        self.decide(user, Access::Subscribe, |pattern| matches(pattern, topic))
    }

    fn decide(&self, user: &str, access: Access, applies: impl Fn(&str) -> bool) -> bool {
        self.rules
            .iter()
            .filter(|rule| rule.access == access || rule.access == Access::All)
            .find(|rule| match rule.topic.contains("%u") {
                true => user != ANONYMOUS && applies(&rule.topic.replace("%u", user)),
                false => applies(&rule.topic),
            })
            .is_some_and(|rule| rule.effect == Effect::Allow)
    }
}

/// Does filter `pattern` match topic name `topic`? Wildcards never match a leading `$` level.
fn matches(pattern: &str, topic: &str) -> bool {
    if topic.starts_with('$') && pattern.starts_with(['+', '#']) {
        return false;
    }
    let mut topic = topic.split('/');
    for level in pattern.split('/') {
        match (level, topic.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (literal, Some(name)) if literal == name => {}
            _ => return false,
        }
    }
    topic.next().is_none()
}

/// Does filter `pattern` match every topic filter `filter` matches?
fn covers(pattern: &str, filter: &str) -> bool {
    let mut filter = filter.split('/');
    for level in pattern.split('/') {
        match (level, filter.next()) {
            ("#", _) => return true,
            ("+", Some(inner)) if inner != "#" => {}
            (literal, Some(inner)) if literal == inner && inner != "+" && inner != "#" => {}
            _ => return false,
        }
    }
    filter.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(effect: Effect, access: Access, topic: &str) -> Rule {
        Rule { effect, access, topic: topic.into() }
    }

    #[test]
    fn first_matching_rule_wins_and_nothing_matching_denies() {
        let rules = OperatorRules::new(vec![
            rule(Effect::Deny, Access::Subscribe, "test/nosubscribe"),
            rule(Effect::Allow, Access::All, "#"),
        ]);
        assert!(!rules.may_subscribe("a", "test/nosubscribe"));
        assert!(rules.may_subscribe("a", "test/#"));
        assert!(!rules.may_receive("a", "test/nosubscribe"));
        assert!(rules.may_receive("a", "test/other"));
        assert!(rules.may_publish("a", "test/nosubscribe"));
        assert!(!OperatorRules::default().may_publish("a", "x"));
    }

    #[test]
    fn user_placeholder_binds_to_the_connection() {
        let rules = OperatorRules::new(vec![rule(Effect::Allow, Access::All, "devices/%u/#")]);
        assert!(rules.may_publish("alice", "devices/alice/temp"));
        assert!(!rules.may_publish("alice", "devices/bob/temp"));
        assert!(rules.may_subscribe("alice", "devices/alice/+"));
        assert!(!rules.may_subscribe("alice", "devices/+/temp"));
        assert!(!rules.may_publish(ANONYMOUS, "devices//temp"));
    }

    #[test]
    fn wildcards_follow_mqtt_matching() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("+/+", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+"));
    }
}
