//! The filters the router holds. rumqttd keeps every filter it was ever given until restart and
//! scans them all for a topic it has no cached answer for, so the edge records who made each:
//! one user makes at most `max_per_user`. Only the operator's topics reach the router; Roost's
//! own are routed by the hub.

use roost_auth::ANONYMOUS;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Every filter given to the router, and who made it.
pub(crate) struct RouterFilters {
    max_per_user: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The filters the router has.
    filters: HashSet<String>,
    /// User -> filters it was the first to give the router.
    made_by: HashMap<String, usize>,
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
        if state.filters.contains(filter) {
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
        state.filters.insert(filter.to_owned());
        metrics::gauge!("roost_router_filters").set(state.filters.len() as f64);
        true
    }
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
}
