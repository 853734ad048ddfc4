//! The rooms service: who may see, join, leave and manage a room or a DM, and who is told.

use roost_auth::tokens::hex;
use roost_auth::MembershipView;
use roost_protocol::{now_millis, InboxNotice, RoomEvent, Topic};
use roost_store::{Directive, Relay, Room, Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use utoipa::ToSchema;

/// The prefix of direct-message room ids, reserved: no one creates a room under it.
const DIRECT_PREFIX: &str = "dm.";

/// The name `GET /v1/rooms/{name}` would share with the room directory, reserved.
const DIRECTORY: &str = "public";

/// Rooms per page of the directory.
pub(crate) const DIRECTORY_PAGE: u32 = 50;

/// Why the rooms service refused or failed an operation; the message is the one the client reads.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RoomError {
    /// The room does not exist, or it is private and the caller is not a member.
    #[error("no room '{0}'")]
    NoRoom(String),
    #[error("join the room first")]
    JoinFirst,
    #[error("room names starting with '{prefix}' are reserved for direct messages (POST /v1/dms)", prefix = DIRECT_PREFIX)]
    ReservedName,
    #[error("'{DIRECTORY}' names the room directory (GET /v1/rooms/{DIRECTORY}); choose another name")]
    DirectoryName,
    #[error("you own {0} rooms, the most one may; delete one first")]
    TooManyOwned(usize),
    #[error("room '{0}' exists")]
    Exists(String),
    #[error("the owner cannot leave the room; delete it instead")]
    OwnerCannotLeave,
    #[error("a direct-message room has no owner; its two users may only leave it")]
    DirectHasNoOwner,
    #[error("only the room's owner may do this")]
    NotOwner,
    #[error("no user '{0}'")]
    NoUser(String),
    #[error("only the owner of the bot '{0}' may add it to a room")]
    NotBotOwner(String),
    #[error("the owner cannot be removed; delete the room instead")]
    OwnerCannotBeRemoved,
    #[error("'{0}' is not a member")]
    NotMember(String),
    #[error("a direct-message room needs another user")]
    DmWithSelf,
    #[error("'{0}' is a bot; bots have no direct-message rooms")]
    DmWithBot(String),
    /// A room that is not a DM (made before the prefix was reserved) holds the pair's DM id.
    #[error("a room that is not a direct-message room holds this id; its owner must delete it")]
    DmIdTaken,
    #[error("no user '{0}' shares a room with you")]
    NoSharedRoom(String),
    /// A bot is made only for rooms its owner owns.
    #[error("you do not own '{0}'")]
    NotYours(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A room with its members.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomDetail {
    #[serde(flatten)]
    room: Room,
    members: Vec<String>,
}

/// A public room as the directory lists it.
#[derive(Serialize, ToSchema)]
pub(crate) struct ListedRoom {
    id: String,
    owner: String,
    created_at: i64,
    members: usize,
    /// The time of its newest message, or of its creation while it has none (ms).
    last_activity: i64,
}

/// A direct-message room as [`Rooms::open_dm`] leaves it.
pub(crate) struct OpenedDm {
    pub(crate) room: RoomDetail,
    /// This call created it (else it existed and is reopened).
    pub(crate) created: bool,
}

/// The room rules over the store, this process's membership view and the relay to the broker.
#[derive(Clone)]
pub(crate) struct Rooms {
    store: Arc<dyn Store>,
    membership: Arc<MembershipView>,
    relay: Arc<dyn Relay>,
    /// Rooms one user may own at once.
    max_owned: usize,
}

impl Rooms {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        membership: Arc<MembershipView>,
        relay: Arc<dyn Relay>,
        max_owned: usize,
    ) -> Self {
        Self { store, membership, relay, max_owned }
    }

    /// The rooms `user` is a member of.
    pub(crate) async fn of_user(&self, user: &str) -> Result<Vec<Room>, RoomError> {
        Ok(self.store.rooms_of(user).await?)
    }

    /// Creates the room `name` owned by `owner`, its first member.
    pub(crate) async fn create(&self, owner: &str, name: &str, private: bool) -> Result<RoomDetail, RoomError> {
        if name.starts_with(DIRECT_PREFIX) {
            return Err(RoomError::ReservedName);
        }
        if name == DIRECTORY {
            return Err(RoomError::DirectoryName);
        }
        let owned = self.store.rooms_of(owner).await?.iter().filter(|room| room.owner == owner && !room.direct).count();
        if owned >= self.max_owned {
            return Err(RoomError::TooManyOwned(owned));
        }
        let room =
            Room { id: name.to_owned(), private, owner: owner.to_owned(), direct: false, created_at: now_millis() };
        self.store.create_room(&room).await.map_err(|e| match e {
            StoreError::Conflict => RoomError::Exists(room.id.clone()),
            other => other.into(),
        })?;
        self.grant(&room.id, owner).await?;
        Ok(self.detail(room))
    }

    /// A page of the directory: the public rooms whose name starts with `prefix`, after the
    /// room `after`, and the name to continue after when there may be more.
    pub(crate) async fn directory(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> Result<(Vec<ListedRoom>, Option<String>), RoomError> {
        let listed = self.store.public_rooms(prefix, after, DIRECTORY_PAGE).await?;
        let next = match listed.last() {
            Some((room, _)) if listed.len() == DIRECTORY_PAGE as usize => Some(room.id.clone()),
            _ => None,
        };
        let rooms = listed
            .into_iter()
            .map(|(room, newest)| ListedRoom {
                members: self.membership.member_count(&room.id),
                last_activity: newest.unwrap_or(room.created_at),
                id: room.id,
                owner: room.owner,
                created_at: room.created_at,
            })
            .collect();
        Ok((rooms, next))
    }

    /// The room `id` with its members, when `user` may see it.
    pub(crate) async fn get(&self, id: &str, user: &str) -> Result<RoomDetail, RoomError> {
        Ok(self.detail(self.visible(id, user).await?))
    }

    /// Makes `user` a member of the room `id`, which it may see.
    pub(crate) async fn join(&self, id: &str, user: &str) -> Result<RoomDetail, RoomError> {
        let room = self.visible(id, user).await?;
        self.admit(id, user).await?;
        Ok(self.detail(room))
    }

    /// Takes `user` out of the room `id`; the owner of a room cannot leave it (only delete it).
    pub(crate) async fn leave(&self, id: &str, user: &str) -> Result<(), RoomError> {
        let room = self.of_member(id, user).await?;
        if room.owner == user && !room.direct {
            return Err(RoomError::OwnerCannotLeave);
        }
        if self.dismiss(id, user).await? {
            self.announce(id, &RoomEvent::Left { room: id.to_owned(), user: user.to_owned(), ts: now_millis() })
                .await?;
        }
        Ok(())
    }

    /// The owner `by` adds the user `added` to the room `id`; only a bot's owner adds the bot.
    pub(crate) async fn add_member(&self, id: &str, by: &str, added: &str) -> Result<RoomDetail, RoomError> {
        let room = self.owned(id, by).await?;
        if !self.store.user_exists(added).await? {
            return Err(RoomError::NoUser(added.to_owned()));
        }
        if self.store.bot(added).await?.is_some_and(|bot| bot.owner != by) {
            return Err(RoomError::NotBotOwner(added.to_owned()));
        }
        if self.admit(id, added).await? {
            let notice = InboxNotice::AddedToRoom { room: id.to_owned(), by: by.to_owned(), ts: now_millis() };
            self.notify(added, &notice).await?;
        }
        Ok(self.detail(room))
    }

    /// The owner `by` removes the member `removed` (not itself) from the room `id`.
    pub(crate) async fn remove_member(&self, id: &str, by: &str, removed: &str) -> Result<(), RoomError> {
        let room = self.owned(id, by).await?;
        if removed == room.owner {
            return Err(RoomError::OwnerCannotBeRemoved);
        }
        if !self.dismiss(id, removed).await? {
            return Err(RoomError::NotMember(removed.to_owned()));
        }
        let event =
            RoomEvent::Removed { room: id.to_owned(), user: removed.to_owned(), by: by.to_owned(), ts: now_millis() };
        self.announce(id, &event).await
    }

    /// The owner `by` deletes the room `id`.
    pub(crate) async fn delete(&self, id: &str, by: &str) -> Result<(), RoomError> {
        self.owned(id, by).await?;
        self.announce(id, &RoomEvent::Deleted { room: id.to_owned(), by: by.to_owned(), ts: now_millis() }).await?;
        // the broker stops the room first (no member left, its seq lease dropped), then the store
        // deletes it and raises its floor over every number leased: a publish still in flight is
        // refused or numbered below the floor, never shown in a room re-created under the name
        self.relay.relay(Directive::CloseRoom { room: id.to_owned() }).await?;
        Ok(self.store.delete_room(id).await?)
    }

    /// The direct-message room of `user` and `peer` (a person, not `user`), created on first
    /// use; both are members of it afterwards, and no one else.
    pub(crate) async fn open_dm(&self, user: &str, peer: &str) -> Result<OpenedDm, RoomError> {
        if peer == user {
            return Err(RoomError::DmWithSelf);
        }
        if !self.store.user_exists(peer).await? {
            return Err(RoomError::NoUser(peer.to_owned()));
        }
        if self.store.bot(peer).await?.is_some() {
            return Err(RoomError::DmWithBot(peer.to_owned()));
        }
        let id = dm_room_id(user, peer);
        let room =
            Room { id: id.clone(), private: true, owner: user.to_owned(), direct: true, created_at: now_millis() };
        let (created, room) = match self.store.room(&id).await? {
            Some(existing) => (false, existing),
            None => match self.store.create_room(&room).await {
                Ok(()) => (true, room),
                Err(StoreError::Conflict) => (false, self.existing(&id).await?),
                Err(e) => return Err(e.into()),
            },
        };
        // a room under the id that is not a DM (made before the prefix was reserved) is never
        // handed out: its owner deletes it
        if !room.direct {
            return Err(RoomError::DmIdTaken);
        }
        // a third member (added before DMs lost their owner powers) leaves: only the pair reads it
        for stranger in self.membership.members(&id).into_iter().filter(|member| member != user && member != peer) {
            if self.dismiss(&id, &stranger).await? {
                let removed =
                    RoomEvent::Removed { room: id.clone(), user: stranger, by: user.to_owned(), ts: now_millis() };
                self.announce(&id, &removed).await?;
            }
        }
        // both are members again, whichever of them left (the creator of a new one is in the store
        // already, not yet in the live view); reopening a DM both are in changes nothing
        if !self.membership.is_member(&id, user) {
            self.admit(&id, user).await?;
        }
        if !self.membership.is_member(&id, peer) && self.admit(&id, peer).await? {
            self.notify(peer, &InboxNotice::NewDm { room: id, with: user.to_owned(), ts: now_millis() }).await?;
        }
        Ok(OpenedDm { room: self.detail(room), created })
    }

    /// The room `id` when `user` is a member, else [`RoomError::NoRoom`] (private) or
    /// [`RoomError::JoinFirst`].
    pub(crate) async fn of_member(&self, id: &str, user: &str) -> Result<Room, RoomError> {
        let room = self.existing(id).await?;
        if self.membership.is_member(id, user) {
            Ok(room)
        } else if room.private {
            Err(RoomError::NoRoom(id.to_owned()))
        } else {
            Err(RoomError::JoinFirst)
        }
    }

    /// The members of the room `id`, for a member of it.
    pub(crate) async fn members_for(&self, id: &str, user: &str) -> Result<Vec<String>, RoomError> {
        self.of_member(id, user).await?;
        Ok(self.membership.members(id))
    }

    /// Ok when `user` shares a room with `other`: only they see each other's presence.
    pub(crate) fn shares_room(&self, user: &str, other: &str) -> Result<(), RoomError> {
        if self.membership.shares_room(user, other) {
            Ok(())
        } else {
            Err(RoomError::NoSharedRoom(other.to_owned()))
        }
    }

    /// Ok when every one of `rooms` exists and `owner` owns it (a direct-message room has no
    /// owner): the rooms a bot of `owner`'s may be made for.
    pub(crate) async fn check_bot_rooms(&self, owner: &str, rooms: &[String]) -> Result<(), RoomError> {
        for room in rooms {
            let room = self.existing(room).await?;
            if room.owner != owner || room.direct {
                return Err(RoomError::NotYours(room.id));
            }
        }
        Ok(())
    }

    /// Adds `user` to `room` in the store and the live view, and tells the room; false when it
    /// was a member already.
    pub(crate) async fn admit(&self, room: &str, user: &str) -> Result<bool, RoomError> {
        let added = self.store.add_member(room, user).await?;
        self.grant(room, user).await?;
        if added {
            self.announce(room, &RoomEvent::Joined { room: room.into(), user: user.into(), ts: now_millis() }).await?;
        }
        Ok(added)
    }

    /// Takes `user` out of every room it is a member of (revoking its subscriptions).
    pub(crate) async fn dismiss_everywhere(&self, user: &str) -> Result<(), RoomError> {
        for room in self.store.rooms_of(user).await? {
            self.dismiss(&room.id, user).await?;
        }
        Ok(())
    }

    /// The room `id`, or [`RoomError::NoRoom`].
    async fn existing(&self, id: &str) -> Result<Room, RoomError> {
        self.store.room(id).await?.ok_or_else(|| RoomError::NoRoom(id.to_owned()))
    }

    /// The room `id` when `user` may see it (public, or private with `user` a member).
    async fn visible(&self, id: &str, user: &str) -> Result<Room, RoomError> {
        let room = self.existing(id).await?;
        if room.private && !self.membership.is_member(id, user) {
            return Err(RoomError::NoRoom(id.to_owned()));
        }
        Ok(room)
    }

    /// The room `id` when `user` owns it. A direct-message room has no owner powers: neither of
    /// its two users may add a third, remove the other or delete it.
    async fn owned(&self, id: &str, user: &str) -> Result<Room, RoomError> {
        let room = self.of_member(id, user).await?;
        if room.direct {
            Err(RoomError::DirectHasNoOwner)
        } else if room.owner == user {
            Ok(room)
        } else {
            Err(RoomError::NotOwner)
        }
    }

    fn detail(&self, room: Room) -> RoomDetail {
        let members = self.membership.members(&room.id);
        RoomDetail { room, members }
    }

    async fn announce(&self, room: &str, event: &RoomEvent) -> Result<(), RoomError> {
        Ok(self.relay.relay(Directive::publish(Topic::Events(room), event)).await?)
    }

    async fn notify(&self, user: &str, notice: &InboxNotice) -> Result<(), RoomError> {
        Ok(self.relay.relay(Directive::publish(Topic::Inbox(user), notice)).await?)
    }

    /// Tells the broker (and this process's view) that `user` is a member of `room`.
    async fn grant(&self, room: &str, user: &str) -> Result<(), RoomError> {
        Ok(self.relay.relay(Directive::Admit { room: room.into(), user: user.into() }).await?)
    }

    /// Removes `user` from `room` in the store and the live view (revoking its subscriptions);
    /// false when it was not a member.
    async fn dismiss(&self, room: &str, user: &str) -> Result<bool, RoomError> {
        let removed = self.store.remove_member(room, user).await?;
        self.relay.relay(Directive::Dismiss { room: room.into(), user: user.into() }).await?;
        Ok(removed)
    }
}

/// The id of the direct-message room of two users: the same whichever of them asks.
fn dm_room_id(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let digest = Sha256::digest(format!("{first}\n{second}").as_bytes());
    format!("{DIRECT_PREFIX}{}", &hex(&digest)[..32])
}

#[cfg(test)]
mod tests {
    #[test]
    fn dm_room_id_is_symmetric_and_a_valid_name() {
        let id = super::dm_room_id("alice", "bob");
        assert_eq!(id, super::dm_room_id("bob", "alice"));
        assert!(roost_protocol::names::is_valid(&id));
        assert_ne!(id, super::dm_room_id("alice", "carol"));
    }
}
