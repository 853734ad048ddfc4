//! The edge's own routing for Roost's namespaces (room topics, presence, inboxes): which
//! sessions follow what, kept in step with membership, so that a room message costs work per
//! follower and a presence change work per peer. None of it reaches the router: rumqttd keeps
//! every filter it was ever given and scans them all, so it routes only the operator's topics
//! (ARCHITECTURE.md, "Routing").

use bytes::Bytes;
use roost_auth::MembershipView;
use rumqttd::protocol::PublishProperties;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// The bytes of messages waiting for one session; past that it is too slow and they are
/// dropped (PROTOCOL.md, section 8).
const QUEUE_BYTES: usize = 10 * 1024 * 1024;
/// The most messages waiting for one session, however small.
const QUEUE: usize = 65_536;

/// A connection, as the hub knows it: the generation of its claim.
pub(crate) type SessionId = u64;

/// One message on a Roost topic, shared by every session it goes to.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) topic: Bytes,
    pub(crate) payload: Bytes,
    /// The publisher's MQTT 5 properties that travel with it (user properties, content type,
    /// response topic, correlation data, payload format).
    pub(crate) properties: Option<PublishProperties>,
    /// When it expires (MQTT 5 message expiry), milliseconds since the epoch.
    pub(crate) expires_at: Option<i64>,
    /// The connection that published it (its claim's generation), for no-local; `None`: the server.
    pub(crate) origin: Option<SessionId>,
}

impl Message {
    /// A server message on `topic`: no properties, no expiry.
    pub(crate) fn server(topic: impl Into<Bytes>, payload: impl Into<Bytes>) -> Self {
        Self { topic: topic.into(), payload: payload.into(), properties: None, expires_at: None, origin: None }
    }

    /// What it holds in a session's queue.
    pub(crate) fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// What changed for a session, beside messages. Never dropped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// The user is no longer a member of this room: its subscriptions there go.
    LeftRoom(String),
    /// The bot's token was revoked.
    Revoked,
}

/// Room topic kinds, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Kinds(u8);

impl Kinds {
    pub(crate) const MESSAGES: Kinds = Kinds(1);
    pub(crate) const TYPING: Kinds = Kinds(2);
    pub(crate) const RECEIPTS: Kinds = Kinds(4);
    pub(crate) const EVENTS: Kinds = Kinds(8);
    const ALL: Kinds = Kinds(15);
    const NONE: Kinds = Kinds(0);

    /// The kind a topic's last level names (`+`: all of them).
    pub(crate) fn named(level: &str) -> Option<Kinds> {
        Some(match level {
            "messages" => Kinds::MESSAGES,
            "typing" => Kinds::TYPING,
            "receipts" => Kinds::RECEIPTS,
            "events" => Kinds::EVENTS,
            "+" => Kinds::ALL,
            _ => return None,
        })
    }

    fn has(self, kind: Kinds) -> bool {
        self.0 & kind.0 != 0
    }

    fn with(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A filter in Roost's namespaces, as the hub follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Interest {
    /// `rooms/{room}/{kind}`; `room` `None`: `rooms/+/{kind}`, every room of the user, now and later.
    Room { room: Option<String>, kinds: Kinds },
    /// A `presence/...` filter.
    Presence(String),
    /// `users/{user}/inbox`.
    Inbox,
}

impl Interest {
    /// `None`: not a filter the hub serves (the router does).
    fn of(filter: &str) -> Option<Interest> {
        let levels: Vec<&str> = filter.split('/').collect();
        match levels.as_slice() {
            ["rooms", room, kind] => {
                let kinds = Kinds::named(kind)?;
                Some(Interest::Room { room: (*room != "+").then(|| (*room).to_owned()), kinds })
            }
            ["presence", ..] => Some(Interest::Presence(filter.to_owned())),
            ["users", _, "inbox"] => Some(Interest::Inbox),
            _ => None,
        }
    }
}

/// A session's end of the hub.
pub(crate) struct Mailbox {
    pub(crate) messages: mpsc::Receiver<Arc<Message>>,
    pub(crate) notices: mpsc::UnboundedReceiver<Notice>,
    /// Messages dropped because the session did not read them in time.
    pub(crate) dropped: Arc<AtomicU64>,
    /// The bytes of the messages waiting: the session takes off what it reads.
    pub(crate) queued: Arc<AtomicUsize>,
}

/// A session and what it follows.
struct Follower {
    user: Arc<str>,
    messages: mpsc::Sender<Arc<Message>>,
    notices: mpsc::UnboundedSender<Notice>,
    dropped: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    /// Filters held, each once.
    interests: Vec<Interest>,
}

impl Follower {
    /// The kinds of `room` it follows, given that its user is a member.
    fn kinds_in(&self, room: &str) -> Kinds {
        self.interests.iter().fold(Kinds::NONE, |kinds, interest| match interest {
            Interest::Room { room: None, kinds: these } => kinds.with(*these),
            Interest::Room { room: Some(named), kinds: these } if named == room => kinds.with(*these),
            _ => kinds,
        })
    }

    fn follows_every_room(&self) -> bool {
        self.interests.iter().any(|interest| matches!(interest, Interest::Room { room: None, .. }))
    }

    /// Hands `message` over; a session too slow to take it loses it (and hears of it).
    fn send(&self, message: &Arc<Message>) -> bool {
        let size = message.size();
        let fits = self.queued.fetch_add(size, Ordering::Relaxed) + size <= QUEUE_BYTES;
        let sent = match fits {
            true => self.messages.try_send(message.clone()),
            false => Err(mpsc::error::TrySendError::Full(message.clone())),
        };
        match sent {
            Ok(()) => true,
            Err(refused) => {
                self.queued.fetch_sub(size, Ordering::Relaxed);
                if matches!(refused, mpsc::error::TrySendError::Full(_)) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("roost_mqtt_messages_skipped_total").increment(1);
                }
                false
            }
        }
    }
}

/// A room this node's sessions began or stopped following (several nodes: what this node
/// asks NATS for).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RoomInterest {
    Followed(String),
    Unfollowed(String),
}

#[derive(Default)]
struct Index {
    followers: HashMap<SessionId, Follower>,
    by_user: HashMap<Arc<str>, Vec<SessionId>>,
    /// Room -> the sessions following it, with the kinds each wants.
    rooms: HashMap<String, HashMap<SessionId, Kinds>>,
    /// The sessions holding a presence filter.
    presence_watchers: HashSet<SessionId>,
    /// Told when a room gains its first follower or loses its last.
    interest: Option<mpsc::UnboundedSender<RoomInterest>>,
}

impl Index {
    /// Sets what session `id` follows in `room` (nothing: it stops following it).
    fn set_room(&mut self, room: &str, id: SessionId, kinds: Kinds) {
        if kinds.is_empty() {
            if let Some(followers) = self.rooms.get_mut(room) {
                followers.remove(&id);
                if followers.is_empty() {
                    self.rooms.remove(room);
                    self.tell(RoomInterest::Unfollowed(room.to_owned()));
                }
            }
        } else if let Some(followers) = self.rooms.get_mut(room) {
            followers.insert(id, kinds);
        } else {
            self.rooms.insert(room.to_owned(), HashMap::from([(id, kinds)]));
            self.tell(RoomInterest::Followed(room.to_owned()));
        }
    }

    fn tell(&self, change: RoomInterest) {
        if let Some(interest) = &self.interest {
            let _ = interest.send(change);
        }
    }

    /// Recomputes what session `id` follows in each of `rooms` (rooms its user is a member of).
    fn refresh(&mut self, id: SessionId, rooms: &[String]) {
        let Some(follower) = self.followers.get(&id) else { return };
        let kinds: Vec<Kinds> = rooms.iter().map(|room| follower.kinds_in(room)).collect();
        for (room, kinds) in rooms.iter().zip(kinds) {
            self.set_room(room, id, kinds);
        }
    }

    fn sessions_of(&self, user: &str) -> &[SessionId] {
        self.by_user.get(user).map_or(&[], Vec::as_slice)
    }

    /// The sessions of `user` that follow their inbox.
    fn inbox_followers(&self, user: &str) -> impl Iterator<Item = &Follower> {
        self.sessions_of(user)
            .iter()
            .filter_map(|id| self.followers.get(id))
            .filter(|follower| follower.interests.contains(&Interest::Inbox))
    }
}

/// The routing table of Roost's namespaces.
pub(crate) struct Hub {
    index: RwLock<Index>,
    membership: Arc<MembershipView>,
}

impl Hub {
    pub(crate) fn new(membership: Arc<MembershipView>) -> Self {
        Self { index: RwLock::default(), membership }
    }

    /// Tells of every room this node's sessions begin or stop following from now on, after
    /// the rooms they follow already.
    pub(crate) fn watch_rooms(&self) -> mpsc::UnboundedReceiver<RoomInterest> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut index = self.index.write().expect("hub lock");
        for room in index.rooms.keys() {
            let _ = tx.send(RoomInterest::Followed(room.clone()));
        }
        index.interest = Some(tx);
        rx
    }

    /// Opens session `id` of `user`; it follows nothing yet.
    pub(crate) fn enter(&self, id: SessionId, user: &str) -> Mailbox {
        let (messages_tx, messages) = mpsc::channel(QUEUE);
        let (notices_tx, notices) = mpsc::unbounded_channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let user: Arc<str> = Arc::from(user);
        let follower = Follower {
            user: user.clone(),
            messages: messages_tx,
            notices: notices_tx,
            dropped: dropped.clone(),
            queued: queued.clone(),
            interests: Vec::new(),
        };
        let mut index = self.index.write().expect("hub lock");
        index.followers.insert(id, follower);
        index.by_user.entry(user).or_default().push(id);
        Mailbox { messages, notices, dropped, queued }
    }

    /// Closes session `id`: it follows nothing any more.
    pub(crate) fn leave(&self, id: SessionId) {
        let mut index = self.index.write().expect("hub lock");
        let Some(follower) = index.followers.remove(&id) else { return };
        index.presence_watchers.remove(&id);
        if let Some(sessions) = index.by_user.get_mut(&follower.user) {
            sessions.retain(|session| *session != id);
            if sessions.is_empty() {
                index.by_user.remove(&follower.user);
            }
        }
        // it follows rooms its user is a member of, and only those (`joined` and `left` keep it so)
        let mut rooms = self.membership.rooms_of(&follower.user);
        rooms.extend(follower.interests.iter().filter_map(|interest| match interest {
            Interest::Room { room: Some(room), .. } => Some(room.clone()),
            _ => None,
        }));
        for room in rooms {
            index.set_room(&room, id, Kinds::NONE);
        }
    }

    /// Session `id` follows `filter`, which the policy granted. False when the filter is not
    /// in Roost's namespaces (the router serves it).
    pub(crate) fn follow(&self, id: SessionId, filter: &str) -> bool {
        self.change(id, filter, |interests, interest| {
            if !interests.contains(&interest) {
                interests.push(interest);
            }
        })
    }

    /// Session `id` no longer follows `filter`. False when the filter is not in Roost's
    /// namespaces.
    pub(crate) fn unfollow(&self, id: SessionId, filter: &str) -> bool {
        self.change(id, filter, |interests, interest| interests.retain(|held| *held != interest))
    }

    fn change(&self, id: SessionId, filter: &str, edit: impl FnOnce(&mut Vec<Interest>, Interest)) -> bool {
        let Some(interest) = Interest::of(filter) else { return false };
        let mut index = self.index.write().expect("hub lock");
        let Some(follower) = index.followers.get_mut(&id) else { return true };
        let touched_rooms = match &interest {
            Interest::Room { room: Some(room), .. } => Some(vec![room.clone()]),
            // read under the hub's lock: a join applied meanwhile waits for it (see `joined`)
            Interest::Room { room: None, .. } => Some(self.membership.rooms_of(&follower.user)),
            _ => None,
        };
        let presence = matches!(interest, Interest::Presence(_));
        edit(&mut follower.interests, interest);
        if presence {
            match follower.interests.iter().any(|held| matches!(held, Interest::Presence(_))) {
                true => index.presence_watchers.insert(id),
                false => index.presence_watchers.remove(&id),
            };
        } else if let Some(rooms) = touched_rooms {
            let user = follower.user.clone();
            let member_rooms: Vec<String> =
                rooms.into_iter().filter(|room| self.membership.is_member(room, &user)).collect();
            index.refresh(id, &member_rooms);
        }
        true
    }

    /// `user` became a member of `room` (already in the membership view): its sessions that
    /// follow every room of theirs follow this one too.
    pub(crate) fn joined(&self, room: &str, user: &str) {
        let mut index = self.index.write().expect("hub lock");
        let sessions = index.sessions_of(user).to_vec();
        for id in sessions {
            if index.followers.get(&id).is_some_and(Follower::follows_every_room) {
                index.refresh(id, &[room.to_owned()]);
            }
        }
    }

    /// `user` is no longer a member of `room`: its sessions stop following it and drop their
    /// subscriptions to it.
    pub(crate) fn left(&self, room: &str, user: &str) {
        let mut index = self.index.write().expect("hub lock");
        let sessions = index.sessions_of(user).to_vec();
        for id in sessions {
            index.set_room(room, id, Kinds::NONE);
            let Some(follower) = index.followers.get_mut(&id) else { continue };
            let before = follower.interests.len();
            follower
                .interests
                .retain(|interest| !matches!(interest, Interest::Room { room: Some(named), .. } if named == room));
            if follower.interests.len() != before {
                let _ = follower.notices.send(Notice::LeftRoom(room.to_owned()));
            }
        }
    }

    /// The bot `user`'s token was revoked: its sessions end.
    pub(crate) fn revoked(&self, user: &str) {
        let index = self.index.read().expect("hub lock");
        for id in index.sessions_of(user) {
            if let Some(follower) = index.followers.get(id) {
                let _ = follower.notices.send(Notice::Revoked);
            }
        }
    }

    /// Hands a message on `room`'s topic of `kind` to every session following it; returns
    /// how many took it.
    pub(crate) fn publish_room(&self, room: &str, kind: Kinds, message: Message) -> usize {
        let message = Arc::new(message);
        let index = self.index.read().expect("hub lock");
        let Some(followers) = index.rooms.get(room) else { return 0 };
        followers
            .iter()
            .filter(|(_, kinds)| kinds.has(kind))
            .filter_map(|(id, _)| index.followers.get(id))
            .filter(|follower| follower.send(&message))
            .count()
    }

    /// Whether any session follows `room`'s topic of `kind`.
    pub(crate) fn follows_room(&self, room: &str, kind: Kinds) -> bool {
        let index = self.index.read().expect("hub lock");
        index.rooms.get(room).is_some_and(|followers| followers.values().any(|kinds| kinds.has(kind)))
    }

    /// Hands a presence message of `owner` to the sessions of `owner` and of the users sharing a
    /// room with them whose presence filters match. The work is the smaller of the owner's
    /// peers (members of their rooms, each asked for sessions) and the sessions watching
    /// presence at all (each asked whether it shares a room with the owner): a member of a
    /// room of 19,000 costs a scan of 19,000 names only while more sessions than that watch.
    pub(crate) fn publish_presence(&self, owner: &str, message: Message) -> usize {
        let message = Arc::new(message);
        let topic = std::str::from_utf8(&message.topic).unwrap_or_default();
        let index = self.index.read().expect("hub lock");
        let recipients: Vec<&Follower> = if index.presence_watchers.len() < self.membership.peer_bound(owner) {
            let watchers = index.presence_watchers.iter().filter_map(|id| index.followers.get(id));
            watchers.filter(|follower| self.membership.shares_room(owner, &follower.user)).collect()
        } else {
            let peers = self.membership.peers_of(owner);
            std::iter::once(owner)
                .chain(peers.iter().map(String::as_str).filter(|peer| *peer != owner))
                .flat_map(|user| index.sessions_of(user))
                .filter_map(|id| index.followers.get(id))
                .collect()
        };
        let sent = recipients
            .into_iter()
            .filter(|follower| {
                follower.interests.iter().any(|interest| {
                    matches!(interest, Interest::Presence(filter) if rumqttd::protocol::matches(topic, filter))
                })
            })
            .filter(|follower| follower.send(&message))
            .count();
        metrics::counter!("roost_presence_deliveries_total").increment(sent as u64);
        sent
    }

    /// Hands a message on `user`'s inbox to their sessions that follow it.
    pub(crate) fn publish_inbox(&self, user: &str, message: Message) -> usize {
        let message = Arc::new(message);
        let index = self.index.read().expect("hub lock");
        index.inbox_followers(user).filter(|follower| follower.send(&message)).count()
    }

    /// Whether any session of `user` follows their inbox.
    pub(crate) fn follows_inbox(&self, user: &str) -> bool {
        self.index.read().expect("hub lock").inbox_followers(user).next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str) -> Message {
        Message::server(Bytes::copy_from_slice(topic.as_bytes()), Bytes::from_static(b"{}"))
    }

    fn hub(pairs: &[(&str, &str)]) -> Hub {
        let view =
            MembershipView::from_pairs(pairs.iter().map(|(room, user)| ((*room).to_owned(), (*user).to_owned())));
        Hub::new(Arc::new(view))
    }

    fn received(mailbox: &mut Mailbox) -> Vec<String> {
        let mut topics = Vec::new();
        while let Ok(message) = mailbox.messages.try_recv() {
            topics.push(String::from_utf8(message.topic.to_vec()).unwrap());
        }
        topics
    }

    #[test]
    fn every_room_of_mine_follows_membership_as_it_changes() {
        let hub = hub(&[("a", "ann"), ("b", "ann"), ("c", "bob")]);
        let mut ann = hub.enter(1, "ann");
        assert!(hub.follow(1, "rooms/+/messages"));
        for room in ["a", "b", "c"] {
            hub.publish_room(room, Kinds::MESSAGES, message(&format!("rooms/{room}/messages")));
        }
        hub.publish_room("a", Kinds::TYPING, message("rooms/a/typing"));
        assert_eq!(received(&mut ann), ["rooms/a/messages", "rooms/b/messages"]);
        hub.membership.add("c", "ann");
        hub.joined("c", "ann");
        hub.membership.remove("a", "ann");
        hub.left("a", "ann");
        for room in ["a", "c"] {
            hub.publish_room(room, Kinds::MESSAGES, message(&format!("rooms/{room}/messages")));
        }
        assert_eq!(received(&mut ann), ["rooms/c/messages"]);
        assert_eq!(ann.notices.try_recv().ok(), None, "a wildcard alone has no subscription to drop");
    }

    #[test]
    fn a_concrete_room_filter_goes_with_the_membership() {
        let hub = hub(&[("a", "ann")]);
        let mut ann = hub.enter(1, "ann");
        hub.follow(1, "rooms/a/+");
        assert!(hub.follows_room("a", Kinds::TYPING));
        hub.membership.remove("a", "ann");
        hub.left("a", "ann");
        assert_eq!(ann.notices.try_recv().ok(), Some(Notice::LeftRoom("a".into())));
        assert!(!hub.follows_room("a", Kinds::TYPING));
        hub.membership.add("a", "ann");
        hub.joined("a", "ann");
        assert!(!hub.follows_room("a", Kinds::TYPING), "a dropped subscription does not come back");
        assert_eq!(hub.publish_room("a", Kinds::MESSAGES, message("rooms/a/messages")), 0);
        assert!(received(&mut ann).is_empty());
    }

    #[test]
    fn presence_reaches_peers_only() {
        let hub = hub(&[("a", "ann"), ("a", "bob"), ("z", "cat")]);
        let (mut bob, mut cat) = (hub.enter(1, "bob"), hub.enter(2, "cat"));
        hub.follow(1, "presence/+");
        hub.follow(2, "presence/+");
        assert_eq!(hub.publish_presence("ann", message("presence/ann")), 1);
        assert_eq!(received(&mut bob), ["presence/ann"]);
        assert!(received(&mut cat).is_empty());
        assert_eq!(hub.publish_presence("loner", message("presence/loner")), 0);
    }

    #[test]
    fn in_a_big_room_presence_asks_the_few_watchers_and_reaches_the_same_sessions() {
        let crowd: Vec<(String, String)> = (0..100).map(|n| ("big".to_owned(), format!("u{n}"))).collect();
        let mut pairs: Vec<(&str, &str)> = crowd.iter().map(|(room, user)| (room.as_str(), user.as_str())).collect();
        pairs.extend([("big", "ann"), ("small", "ann"), ("small", "bob"), ("elsewhere", "cat")]);
        let hub = hub(&pairs);
        let (mut bob, mut cat, mut u7) = (hub.enter(1, "bob"), hub.enter(2, "cat"), hub.enter(3, "u7"));
        for id in 1..=3 {
            hub.follow(id, "presence/+");
        }
        assert_eq!(hub.publish_presence("ann", message("presence/ann")), 2, "bob and u7, not cat");
        assert_eq!(received(&mut bob), ["presence/ann"]);
        assert_eq!(received(&mut u7), ["presence/ann"]);
        assert!(received(&mut cat).is_empty());
        hub.unfollow(1, "presence/+");
        hub.leave(3);
        assert_eq!(hub.publish_presence("ann", message("presence/ann")), 0, "nobody watching any more");
        assert!(received(&mut bob).is_empty());
    }

    #[test]
    fn a_session_that_reads_too_slowly_loses_messages_and_knows_how_many() {
        let hub = hub(&[("a", "ann")]);
        let mut ann = hub.enter(1, "ann");
        hub.follow(1, "rooms/a/messages");
        let big = || Message::server("rooms/a/messages", vec![b'x'; QUEUE_BYTES / 4]);
        let sent = (0..6).filter(|_| hub.publish_room("a", Kinds::MESSAGES, big()) == 1);
        assert_eq!(sent.count(), 3, "a quarter of the queue each, with their topics");
        assert_eq!(ann.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(received(&mut ann).len(), 3);
    }

    #[test]
    fn a_closed_session_follows_nothing_and_others_are_untouched() {
        let hub = hub(&[("a", "ann")]);
        let _first = hub.enter(1, "ann");
        let mut second = hub.enter(2, "ann");
        hub.follow(1, "rooms/a/messages");
        hub.follow(2, "rooms/+/messages");
        hub.leave(1);
        assert_eq!(hub.publish_room("a", Kinds::MESSAGES, message("rooms/a/messages")), 1);
        assert_eq!(received(&mut second).len(), 1);
        assert!(!hub.follow(2, "sensors/+"), "the router serves the operator's topics");
    }
}
