//! The filters the router holds. rumqttd keeps every filter it was ever given until restart and
//! scans them all for a topic it has no cached answer for, so the edge records who made each
//! (one user makes at most `max_per_user`) and which are held now, to publish nothing into the
//! router that no one would receive.

use roost_auth::ANONYMOUS;
use std::collections::HashMap;
use std::sync::Mutex;

/// Topics of more levels than this are taken as wanted without looking (no Roost topic has).
const MAX_LEVELS: usize = 4;

/// Every filter given to the router, with how many sessions hold it now.
pub(crate) struct RouterFilters {
    max_per_user: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Filter -> sessions holding it now (0: the router still has it, nobody holds it).
    holders: HashMap<String, usize>,
    /// User -> filters it was the first to give the router.
    made_by: HashMap<String, usize>,
    /// Held filters whose matches cannot be listed (a wildcard first level, shared
    /// subscriptions): while there is one, every topic is taken as wanted.
    unlisted: usize,
}

impl Default for RouterFilters {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl RouterFilters {
    pub(crate) fn new(max_per_user: usize) -> Self {
        Self { max_per_user, state: Mutex::default() }
    }

    /// May `user` subscribe to `filter`? One the router has costs nothing; a new one counts
    /// against the user's cap (anonymous clients have none) and is recorded as made.
    pub(crate) fn admit(&self, user: &str, filter: &str) -> bool {
        let mut state = self.state.lock().expect("router filters lock");
        if state.holders.contains_key(filter) {
            return true;
        }
        if user != ANONYMOUS {
            let made = state.made_by.entry(user.to_owned()).or_default();
            if *made >= self.max_per_user {
                metrics::counter!("roost_router_filters_refused_total").increment(1);
                return false;
            }
            *made += 1;
        }
        state.holders.insert(filter.to_owned(), 0);
        metrics::gauge!("roost_router_filters").set(state.holders.len() as f64);
        true
    }

    /// A session holds `filter` now.
    pub(crate) fn hold(&self, filter: &str) {
        let mut state = self.state.lock().expect("router filters lock");
        let holders = state.holders.entry(filter.to_owned()).or_default();
        *holders += 1;
        if *holders == 1 && is_unlisted(filter) {
            state.unlisted += 1;
        }
    }

    /// A session no longer holds `filter` (the router keeps it all the same).
    pub(crate) fn release(&self, filter: &str) {
        let mut state = self.state.lock().expect("router filters lock");
        let Some(holders) = state.holders.get_mut(filter).filter(|holders| **holders > 0) else { return };
        *holders -= 1;
        if *holders == 0 && is_unlisted(filter) {
            state.unlisted -= 1;
        }
    }

    /// Does a session hold a filter matching `topic`? Every filter that could match it is
    /// looked up: each level itself or `+`, possibly cut short by `#`.
    pub(crate) fn wanted(&self, topic: &str) -> bool {
        let state = self.state.lock().expect("router filters lock");
        let levels: Vec<&str> = topic.split('/').collect();
        if state.unlisted > 0 || levels.len() > MAX_LEVELS {
            return true;
        }
        let held = |filter: &str| state.holders.get(filter).is_some_and(|&n| n > 0);
        (0..=levels.len()).any(|cut| {
            (0..1u32 << cut).any(|mask| {
                let mut filter: Vec<&str> =
                    levels[..cut].iter().enumerate().map(|(i, l)| if mask & 1 << i != 0 { "+" } else { l }).collect();
                let exact = cut == levels.len() && held(&filter.join("/"));
                filter.push("#");
                exact || held(&filter.join("/"))
            })
        })
    }
}

/// A filter whose matches [`RouterFilters::wanted`] cannot list.
fn is_unlisted(filter: &str) -> bool {
    filter.starts_with('+') || filter.starts_with('#') || filter.starts_with("$share/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_makes_at_most_its_cap_of_new_filters_and_reuses_any_number() {
        let filters = RouterFilters::new(2);
        assert!(filters.admit("mallory", "presence/mallory/a"));
        assert!(filters.admit("mallory", "presence/mallory/b"));
        assert!(!filters.admit("mallory", "presence/mallory/c"), "a third new filter");
        assert!(filters.admit("mallory", "presence/mallory/a"), "one it made before");
        assert!(filters.admit("alice", "presence/mallory/c"), "others have their own cap");
        assert!(filters.admit("mallory", "presence/mallory/c"), "made by someone else");
        assert!(filters.admit(ANONYMOUS, "devices/1") && filters.admit(ANONYMOUS, "devices/2"));
        assert!(filters.admit(ANONYMOUS, "devices/3"), "anonymous clients are capped by the operator's rules");
    }

    #[test]
    fn a_topic_is_wanted_while_a_matching_filter_is_held() {
        let filters = RouterFilters::default();
        assert!(!filters.wanted("users/bob/inbox"));
        filters.hold("users/bob/inbox");
        assert!(filters.wanted("users/bob/inbox"));
        assert!(!filters.wanted("users/carol/inbox"));
        filters.release("users/bob/inbox");
        assert!(!filters.wanted("users/bob/inbox"), "nobody holds it any more");
        filters.hold("$share/g/jobs");
        filters.release("$share/g/jobs");
        filters.release("$share/g/jobs");
        assert!(!filters.wanted("users/bob/inbox"), "a release too many changes nothing");

        for filter in ["rooms/lobby/+", "rooms/+/typing", "rooms/#", "rooms/lobby/typing/#", "+/lobby/typing"] {
            filters.hold(filter);
            assert!(filters.wanted("rooms/lobby/typing"), "{filter}");
            filters.release(filter);
            assert!(!filters.wanted("rooms/lobby/typing"), "{filter} released");
        }
        filters.hold("rooms/annex/+");
        assert!(!filters.wanted("rooms/lobby/typing"));
        filters.hold("$share/g/jobs");
        assert!(filters.wanted("rooms/lobby/typing"), "a shared subscription's matches are not listed");
    }
}
