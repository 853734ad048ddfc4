//! Connection slots: at most `max_connections` in all, and a cap per user (bots have their
//! own), counted by client id so that a takeover of one's own client id is never refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Who connects, as the slots count it.
pub(crate) enum Holder<'a> {
    /// A signed-in person or bot, with its client id.
    User { user: &'a str, client_id: &'a str, bot: bool },
    /// A connection without credentials: only the total counts.
    Anonymous,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The broker holds `max_connections`.
    Broker,
    /// The user holds its cap of distinct client ids.
    User,
}

/// The connection counts of an edge.
pub(crate) struct Slots {
    max_total: usize,
    max_per_user: usize,
    max_per_bot: usize,
    total: AtomicUsize,
    /// Per user: its connected client ids, each with how many connections hold it (two
    /// during a takeover).
    per_user: Mutex<HashMap<String, HashMap<String, usize>>>,
}

impl Slots {
    pub(crate) fn new(max_total: usize, max_per_user: usize, max_per_bot: usize) -> Self {
        Self { max_total, max_per_user, max_per_bot, total: AtomicUsize::new(0), per_user: Mutex::default() }
    }

    /// Takes a slot for `holder`, or says which cap is reached.
    pub(crate) fn occupy(self: &Arc<Self>, holder: Holder<'_>) -> Result<Slot, Full> {
        let previous = self.total.fetch_add(1, Ordering::Relaxed);
        let mut slot = Slot { slots: self.clone(), held: None };
        if previous >= self.max_total {
            return Err(Full::Broker);
        }
        if let Holder::User { user, client_id, bot } = holder {
            let cap = if bot { self.max_per_bot } else { self.max_per_user };
            let mut per_user = self.per_user.lock().expect("slot table lock");
            let ids = per_user.entry(user.to_owned()).or_default();
            if !ids.contains_key(client_id) && ids.len() >= cap {
                if ids.is_empty() {
                    per_user.remove(user);
                }
                return Err(Full::User);
            }
            *ids.entry(client_id.to_owned()).or_default() += 1;
            slot.held = Some((user.to_owned(), client_id.to_owned()));
        }
        Ok(slot)
    }
}

/// One connection's place in [`Slots`]; given back on drop.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    held: Option<(String, String)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.total.fetch_sub(1, Ordering::Relaxed);
        let Some((user, client_id)) = self.held.take() else { return };
        let mut per_user = self.slots.per_user.lock().expect("slot table lock");
        let Some(ids) = per_user.get_mut(&user) else { return };
        if let Some(count) = ids.get_mut(&client_id) {
            *count -= 1;
            if *count == 0 {
                ids.remove(&client_id);
            }
        }
        if ids.is_empty() {
            per_user.remove(&user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person<'a>(user: &'a str, client_id: &'a str) -> Holder<'a> {
        Holder::User { user, client_id, bot: false }
    }

    #[test]
    fn a_user_holds_at_most_its_cap_of_client_ids_and_may_take_over_its_own() {
        let slots = Arc::new(Slots::new(10, 2, 1));
        let a = slots.occupy(person("mallory", "a")).unwrap();
        let _b = slots.occupy(person("mallory", "b")).unwrap();
        assert_eq!(slots.occupy(person("mallory", "c")).err(), Some(Full::User));
        let takeover = slots.occupy(person("mallory", "a")).expect("its own client id again");
        let _alice = slots.occupy(person("alice", "a")).expect("other users are not affected");
        drop(a);
        assert_eq!(slots.occupy(person("mallory", "c")).err(), Some(Full::User), "the takeover still holds 'a'");
        drop(takeover);
        let _c = slots.occupy(person("mallory", "c")).unwrap();
        let _bot = slots.occupy(Holder::User { user: "sensor", client_id: "1", bot: true }).unwrap();
        let second = slots.occupy(Holder::User { user: "sensor", client_id: "2", bot: true });
        assert_eq!(second.err(), Some(Full::User), "bots have their own cap");
    }

    #[test]
    fn the_total_cap_counts_everyone_and_refusals_give_back() {
        let slots = Arc::new(Slots::new(2, 5, 5));
        let _one = slots.occupy(Holder::Anonymous).unwrap();
        let _two = slots.occupy(person("alice", "x")).unwrap();
        assert_eq!(slots.occupy(person("bob", "y")).err(), Some(Full::Broker));
        assert_eq!(slots.total.load(Ordering::Relaxed), 2);
        assert!(!slots.per_user.lock().unwrap().contains_key("bob"));
    }
}
