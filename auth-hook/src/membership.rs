//! The in-memory view of room membership that every ACL check reads, and the live token ids of
//! bots: no I/O on the hot path.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

#[derive(Default)]
struct Rooms {
    members: HashMap<String, HashSet<String>>,
    rooms_of: HashMap<String, HashSet<String>>,
}

/// Who is in which room, kept in memory; the store is the source it is loaded from.
pub struct MembershipView {
    rooms: RwLock<Rooms>,
    /// Bot name -> the id its live token carries.
    bots: RwLock<HashMap<String, String>>,
    /// Moves with every change of `rooms`, so a reader may keep an answer while it stands still.
    version: AtomicU64,
}

impl Default for MembershipView {
    fn default() -> Self {
        Self { rooms: RwLock::default(), bots: RwLock::default(), version: AtomicU64::new(0) }
    }
}

impl MembershipView {
    /// A view holding the given `(room, user)` pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let view = Self::default();
        {
            let mut rooms = view.rooms.write().expect("membership lock");
            for (room, user) in pairs {
                rooms.insert(room, user);
            }
        }
        view
    }

    /// The view's version: answers read at one version hold until it moves. Read it before the
    /// answer it labels.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn add(&self, room: &str, user: &str) {
        self.change(|rooms| rooms.insert(room.to_owned(), user.to_owned()));
    }

    pub fn remove(&self, room: &str, user: &str) {
        self.change(|rooms| rooms.remove(room, user));
    }

    /// Applies `edit` under the write lock and moves the version when it changed something.
    fn change(&self, edit: impl FnOnce(&mut Rooms) -> bool) -> bool {
        let mut rooms = self.rooms.write().expect("membership lock");
        let changed = edit(&mut rooms);
        if changed {
            self.version.fetch_add(1, Ordering::Release);
        }
        changed
    }

    /// Drops a room and all its members.
    pub fn remove_room(&self, room: &str) {
        let members: Vec<String> = self
            .rooms
            .read()
            .expect("membership lock")
            .members
            .get(room)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        for user in members {
            self.remove(room, &user);
        }
    }

    /// Makes `token_id` the bot `name`'s live token.
    pub fn enroll_bot(&self, name: &str, token_id: &str) {
        self.bots.write().expect("membership lock").insert(name.to_owned(), token_id.to_owned());
    }

    /// Revokes the bot `name`'s token: [`MembershipView::admits`] refuses it from now on.
    pub fn revoke_bot(&self, name: &str) {
        self.bots.write().expect("membership lock").remove(name);
    }

    /// False for a bot token (`bot_token`: the id it carries) that is not `user`'s live one
    /// (revoked); true for users' tokens.
    pub fn admits(&self, user: &str, bot_token: Option<&str>) -> bool {
        bot_token.is_none_or(|id| self.bots.read().expect("membership lock").get(user).map(String::as_str) == Some(id))
    }

    /// True for a bot with a live token.
    pub fn is_bot(&self, name: &str) -> bool {
        self.bots.read().expect("membership lock").contains_key(name)
    }

    pub fn is_member(&self, room: &str, user: &str) -> bool {
        self.rooms.read().expect("membership lock").members.get(room).is_some_and(|m| m.contains(user))
    }

    /// True when `a` and `b` are the same user or have a room in common.
    pub fn shares_room(&self, a: &str, b: &str) -> bool {
        if a == b {
            return true;
        }
        let rooms = self.rooms.read().expect("membership lock");
        match (rooms.rooms_of.get(a), rooms.rooms_of.get(b)) {
            (Some(ra), Some(rb)) => {
                let (small, large) = if ra.len() <= rb.len() { (ra, rb) } else { (rb, ra) };
                small.iter().any(|room| large.contains(room))
            }
            _ => false,
        }
    }

    /// The rooms `user` is a member of.
    pub fn rooms_of(&self, user: &str) -> Vec<String> {
        let rooms = self.rooms.read().expect("membership lock");
        rooms.rooms_of.get(user).map(|of| of.iter().cloned().collect()).unwrap_or_default()
    }

    /// The users sharing a room with `user` (`user` among them when it has a room).
    pub fn peers_of(&self, user: &str) -> HashSet<String> {
        let rooms = self.rooms.read().expect("membership lock");
        let Some(of) = rooms.rooms_of.get(user) else { return HashSet::new() };
        of.iter().filter_map(|room| rooms.members.get(room)).flatten().cloned().collect()
    }

    /// What collecting `user`'s peers ([`Self::peers_of`]) walks: the member counts of their
    /// rooms, summed (someone in two of them counts twice).
    pub fn peer_bound(&self, user: &str) -> usize {
        let rooms = self.rooms.read().expect("membership lock");
        let Some(of) = rooms.rooms_of.get(user) else { return 0 };
        of.iter().filter_map(|room| rooms.members.get(room)).map(|members| members.len()).sum()
    }

    /// How many members `room` has.
    pub fn member_count(&self, room: &str) -> usize {
        self.rooms.read().expect("membership lock").members.get(room).map_or(0, |members| members.len())
    }

    /// The members of `room`, sorted.
    pub fn members(&self, room: &str) -> Vec<String> {
        let rooms = self.rooms.read().expect("membership lock");
        let mut members: Vec<String> = rooms.members.get(room).map(|m| m.iter().cloned().collect()).unwrap_or_default();
        members.sort();
        members
    }
}

impl Rooms {
    fn insert(&mut self, room: String, user: String) -> bool {
        self.rooms_of.entry(user.clone()).or_default().insert(room.clone());
        self.members.entry(room).or_default().insert(user)
    }

    fn remove(&mut self, room: &str, user: &str) -> bool {
        if let Some(rooms) = self.rooms_of.get_mut(user) {
            rooms.remove(room);
            if rooms.is_empty() {
                self.rooms_of.remove(user);
            }
        }
        match self.members.get_mut(room) {
            Some(members) => {
                let removed = members.remove(user);
                if members.is_empty() {
                    self.members.remove(room);
                }
                removed
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_moves_with_every_change_and_only_then() {
        let view = MembershipView::default();
        let start = view.version();
        view.add("a", "alice");
        view.add("a", "alice");
        assert_eq!(view.version(), start + 1, "a repeated add changes nothing");
        view.remove("a", "bob");
        assert_eq!(view.version(), start + 1, "removing a non-member changes nothing");
        view.remove("a", "alice");
        assert_eq!(view.version(), start + 2);
    }

    #[test]
    fn tracks_membership_and_shared_rooms() {
        let view = MembershipView::from_pairs([("a".into(), "alice".into()), ("a".into(), "bob".into())]);
        assert!(view.is_member("a", "alice"));
        assert!(view.shares_room("alice", "bob"));
        assert!(!view.shares_room("alice", "carol"));
        view.remove("a", "bob");
        assert!(!view.is_member("a", "bob"));
        assert!(!view.shares_room("alice", "bob"));
        view.remove_room("a");
        assert_eq!(view.members("a"), Vec::<String>::new());
    }
}
