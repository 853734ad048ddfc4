//! The store contract every backend implements, and its shared types.

use crate::outbox::Directive;
use async_trait::async_trait;
use roost_protocol::{Envelope, PresenceAggregate, ReceiptStamped};
use serde::Serialize;
use std::future::Future;
use std::time::Duration;
use tracing::warn;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key (user name, room id) is taken.
    #[error("already exists")]
    Conflict,
    /// The backend failed or cannot be reached; the message is for logs only.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// First and longest pause between attempts of [`retry_until_ok`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs `attempt` until the store accepts it, pausing 50 ms, doubling up to 2 s, between
/// failures, each logged with `what`. For work that must not be dropped (accepted messages,
/// sequence leases, presence); whoever waits on it waits out a store outage.
pub async fn retry_until_ok<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = RETRY_FIRST;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) => {
                warn!(error = %e, "{what}; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}

/// How long a stored message's pushes are left to the process that wrote it before anyone may
/// claim them (ms).
pub const PUSH_DUE_HOLD_MS: i64 = 5_000;

/// How long an outbox follower that stopped recording itself still holds back the pruning of
/// entries it has not applied (ms): a node paused or cut off for less catches up without a gap.
pub const OUTBOX_FOLLOWER_KEEP_MS: i64 = 10 * 60 * 1000;

/// Where the ids starting with `prefix` end: names are `[a-z0-9_.-]`, every one of them below
/// `{`, so no name starting with `prefix` reaches `prefix` followed by `{`.
pub(crate) fn name_prefix_end(prefix: &str) -> String {
    format!("{prefix}{{")
}

/// The most unread messages counted per room: a badge says "999+" past it, not the number.
pub const UNREAD_CAP: u64 = 1000;

/// A room as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Room {
    pub id: String,
    pub private: bool,
    pub owner: String,
    /// True for the direct-message room of two users.
    pub direct: bool,
    pub created_at: i64,
}

/// A refresh token as stored (by its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub user: String,
    /// The sign-in it descends from: every refresh keeps it, and a replayed token revokes all
    /// of them.
    pub family: String,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// Its first use.
    First(RefreshToken),
    /// A token that was used before: a stolen copy, or a replay.
    Again(RefreshToken),
    Unknown,
}

impl Presented {
    /// From a token as stored and how often it has now been used.
    pub(crate) fn after_uses(token: RefreshToken, uses: i64) -> Self {
        if uses <= 1 {
            Self::First(token)
        } else {
            Self::Again(token)
        }
    }
}

/// A bot account: a user that signs in only with the token its owner got for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bot {
    pub name: String,
    /// The user who created it.
    pub owner: String,
    /// The id its live token carries; a token with another id is refused.
    pub token_id: String,
    pub created_at: i64,
}

/// An upload to a room: the facts about its bytes, which live in the blob store under `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub id: String,
    pub room: String,
    pub uploader: String,
    /// As sniffed from the bytes, never as declared.
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 of the bytes as stored.
    pub sha256: String,
    pub filename: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// The newest message of its room that references it; `None` while none does.
    pub referenced_by: Option<i64>,
}

impl Media {
    /// What a message shows of it.
    pub fn attachment(&self) -> roost_protocol::Attachment {
        roost_protocol::Attachment {
            media: self.id.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            filename: self.filename.clone(),
            width: self.width,
            height: self.height,
        }
    }
}

/// Where a push reaches one device of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PushTarget {
    /// A browser's (or UnifiedPush distributor's) push subscription: its push service's
    /// endpoint and the keys its payloads are encrypted to (RFC 8291).
    Webpush { endpoint: String, p256dh: String, auth: String },
    /// A Firebase Cloud Messaging registration token.
    Fcm { token: String },
    /// An Apple Push Notification service device token.
    Apns { token: String },
}

/// One device of a user registered for pushes; one per (user, device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDevice {
    pub id: String,
    pub user: String,
    /// The client's name for the device (e.g. its MQTT client id).
    pub device: String,
    pub target: PushTarget,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// A push owed to one device for one room: the newest message it tells of. Messages that come
/// while it waits fold into it (one push per burst per room).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushJob {
    /// The registration ([`PushDevice::id`]) it goes to.
    pub device: String,
    pub room: String,
    /// Whose device it is.
    pub user: String,
    pub seq: i64,
    pub from: String,
    /// When the message was stamped (ms since the epoch).
    pub ts: i64,
    /// The start of the body.
    pub preview: String,
    /// A direct message or a mention: delivered at once by the push service.
    pub urgent: bool,
    /// Not sent before this time (ms since the epoch): the burst it waits for, or a back-off.
    pub not_before: i64,
    /// Given up after this time (ms since the epoch).
    pub expires_at: i64,
    /// Attempts that failed so far.
    pub attempts: u32,
}

/// How much of a room a member wants pushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NotificationLevel {
    #[default]
    All,
    /// Only messages that mention the member.
    Mentions,
    None,
}

/// A member's notification setting for one room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notifications {
    pub level: NotificationLevel,
    /// Nothing is pushed before this time (ms since the epoch), whatever the level.
    #[serde(default)]
    pub muted_until: Option<i64>,
}

/// How many reacted to a message with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    pub seq: i64,
    pub key: String,
    pub count: u64,
    /// The reader is one of them.
    pub me: bool,
}

/// Where a search looks, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchScope<'a> {
    /// One room: its messages with `seq < before`.
    Room { room: &'a str, before: Option<i64> },
    /// Every room `user` is a member of now: messages after `before` in the order of
    /// [`SearchCursor`].
    RoomsOf { user: &'a str, before: Option<&'a SearchCursor> },
}

/// Where a search across rooms goes on: results come by `ts`, then `room`, then `seq`, each
/// descending; the next page starts below the last result's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchCursor {
    pub ts: i64,
    pub room: String,
    pub seq: i64,
}

/// Which slice of a room's history to read. Every page shows messages as their events left
/// them; only `After` lists the events too (what a reconnecting client missed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages, newest first.
    Latest { limit: u32 },
    /// Messages with `seq < before`, newest first.
    Before { before: i64, limit: u32 },
    /// Messages and events with `seq > after` (and `seq < before` when given), oldest first.
    After { after: i64, before: Option<i64>, limit: u32 },
}

/// Which messages history keeps; `None` keeps everything on that count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Messages older than this (ms since the epoch) go.
    pub older_than: Option<i64>,
    /// Only the newest this many messages of each room stay.
    pub keep_per_room: Option<u64>,
}

/// Persistence for users, rooms, membership and history. Every method is one atomic step.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<(), StoreError>;
    async fn password_hash(&self, name: &str) -> Result<Option<String>, StoreError>;
    async fn user_exists(&self, name: &str) -> Result<bool, StoreError>;

    /// Keeps a refresh token by its hash until it expires.
    async fn put_refresh_token(&self, token_hash: &str, token: &RefreshToken) -> Result<(), StoreError>;
    /// Marks the refresh token used and says whether it was used before. A used token is kept
    /// until it expires, so that its replay is recognised.
    async fn use_refresh_token(&self, token_hash: &str) -> Result<Presented, StoreError>;
    /// Deletes every refresh token of `family` and remembers it revoked until `until` (ms), so
    /// a token of it stored concurrently is caught ([`Store::refresh_family_revoked`]); returns
    /// how many tokens went.
    async fn revoke_refresh_family(&self, family: &str, until: i64) -> Result<u64, StoreError>;
    async fn refresh_family_revoked(&self, family: &str) -> Result<bool, StoreError>;
    /// Deletes the refresh tokens, and revocations, that expired before `now` (ms); returns how
    /// many tokens went.
    async fn purge_refresh_tokens(&self, now: i64) -> Result<u64, StoreError>;

    /// Creates the room with its owner as the first member; `Conflict` when the id is taken.
    async fn create_room(&self, room: &Room) -> Result<(), StoreError>;
    async fn room(&self, id: &str) -> Result<Option<Room>, StoreError>;
    async fn rooms_of(&self, user: &str) -> Result<Vec<Room>, StoreError>;
    /// The directory: public rooms (neither private nor direct) whose id starts with `prefix`,
    /// in id order after `after`, at most `limit`, each with the time of its newest message.
    async fn public_rooms(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Room, Option<i64>)>, StoreError>;
    /// Deletes the room, its members, receipts and history. Its sequence counter stays, so a
    /// room re-created under the same name continues numbering instead of repeating it, and
    /// every number reserved so far becomes the room's floor: [`Store::messages`] never serves
    /// a message below it (one in flight at the delete, written after it).
    async fn delete_room(&self, id: &str) -> Result<(), StoreError>;
    /// True when `user` was not a member before.
    async fn add_member(&self, room: &str, user: &str) -> Result<bool, StoreError>;
    /// True when `user` was a member before.
    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError>;
    /// Every `(room, user)` membership, to load the in-memory view at start-up.
    async fn memberships(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Keeps a bot; `Conflict` when one of that name exists.
    async fn create_bot(&self, bot: &Bot) -> Result<(), StoreError>;
    /// Every bot, to load the live token ids at start-up.
    async fn bots(&self) -> Result<Vec<Bot>, StoreError>;
    /// The bot `name`, if there is one.
    async fn bot(&self, name: &str) -> Result<Option<Bot>, StoreError>;
    /// Deletes the bot `name` and returns it, if it existed.
    async fn delete_bot(&self, name: &str) -> Result<Option<Bot>, StoreError>;

    /// Reserves `count` sequence numbers for `room` and returns the first. Reservations are
    /// durable before they return, so numbers never repeat, even across crashes.
    async fn reserve_seq(&self, room: &str, count: i64) -> Result<i64, StoreError>;
    /// Gives back the unused numbers `unused..end` of a reservation ending at `end`, when
    /// nothing was reserved after it and the room was not deleted since (a graceful stop, so a
    /// restart does not make `seq` jump). Returns whether they were taken back.
    async fn return_seq(&self, room: &str, unused: i64, end: i64) -> Result<bool, StoreError>;
    /// Stores stamped messages and receipts. A message whose (room, seq) is stored, or whose
    /// (room, from, id) is (a client's retry after a reconnect), is skipped: stored once.
    /// An event is stored like a message and applied to its target, unless that is deleted: an
    /// edit replaces its body (the newest edit wins) and sets `edited_at`; a delete erases its
    /// body, attachments, data and mentions, the bodies of its edits and its reactions, and makes
    /// it a tombstone (`deleted`, `deleted_by`); a reaction adds or takes back its sender's key.
    async fn write_batch(&self, messages: &[Envelope], receipts: &[ReceiptStamped]) -> Result<(), StoreError>;
    async fn messages(&self, room: &str, page: Page) -> Result<Vec<Envelope>, StoreError>;
    /// The message or event `from` sent to `room` with client id `id`, if the store has it.
    async fn message_with_id(&self, room: &str, from: &str, id: &str) -> Result<Option<Envelope>, StoreError>;
    /// The seq of the newest message or event `room`'s history holds; 0 when none.
    async fn last_seq(&self, room: &str) -> Result<i64, StoreError>;
    /// The messages of `room` numbered `seqs` that history still serves, in seq order.
    async fn messages_at(&self, room: &str, seqs: &[i64]) -> Result<Vec<Envelope>, StoreError>;
    /// Messages in `scope` with every one of `words` ([`crate::words`] of their current body):
    /// neither events nor deleted messages, at most `limit`, newest first.
    async fn search(&self, scope: SearchScope<'_>, words: &[String], limit: u32) -> Result<Vec<Envelope>, StoreError>;
    /// The reactions to the messages of `room` numbered `seqs`: per message, each key with how
    /// many reacted with it and whether `reader` did, in seq order and then in the order the
    /// keys were first given.
    async fn reactions(&self, room: &str, seqs: &[i64], reader: &str) -> Result<Vec<ReactionCount>, StoreError>;
    async fn last_read(&self, room: &str, user: &str) -> Result<Option<i64>, StoreError>;
    /// Deletes the messages `retention` no longer keeps, in every room; returns how many.
    async fn prune(&self, retention: Retention) -> Result<u64, StoreError>;

    /// Keeps the record of an upload; `Conflict` when the id is taken.
    async fn put_media(&self, media: &Media) -> Result<(), StoreError>;
    /// The upload `id`, unless its room was deleted since.
    async fn media(&self, id: &str) -> Result<Option<Media>, StoreError>;
    /// Records that message `seq` of the upload's room shows it (the newest reference counts).
    async fn reference_media(&self, id: &str, seq: i64) -> Result<(), StoreError>;
    /// Bytes of the uploads of `uploader` still kept: what counts against their quota.
    async fn media_bytes_of(&self, uploader: &str) -> Result<u64, StoreError>;
    /// Uploads whose bytes may go, at most `limit`: never referenced and made before
    /// `unused_before`, of a deleted room, or referenced last by a message that history no
    /// longer keeps (referenced before `referenced_before`, so a message still on its way to
    /// the store is not mistaken for a pruned one).
    async fn sweepable_media(
        &self,
        unused_before: i64,
        referenced_before: i64,
        limit: u32,
    ) -> Result<Vec<Media>, StoreError>;
    /// Forgets the upload `id`; true when it was kept.
    async fn delete_media(&self, id: &str) -> Result<bool, StoreError>;

    /// Keeps the registration, replacing the one of the same (user, device) (a rotated token).
    async fn put_push_device(&self, device: &PushDevice) -> Result<(), StoreError>;
    /// Every device `user` registered.
    async fn push_devices_of(&self, user: &str) -> Result<Vec<PushDevice>, StoreError>;
    /// Forgets the registration `id` of `user`; true when there was one.
    async fn delete_push_device(&self, user: &str, id: &str) -> Result<bool, StoreError>;
    /// Keeps `user`'s notification setting for `room`.
    async fn set_notifications(&self, room: &str, user: &str, setting: &Notifications) -> Result<(), StoreError>;
    /// `user`'s notification setting for `room`, if they made one.
    async fn notifications(&self, room: &str, user: &str) -> Result<Option<Notifications>, StoreError>;

    /// Forgets every registration of `user` and the pushes owed to them; returns how many went.
    async fn delete_push_devices_of(&self, user: &str) -> Result<u64, StoreError>;
    /// The registration `id`, if it is kept.
    async fn push_device(&self, id: &str) -> Result<Option<PushDevice>, StoreError>;
    /// Forgets the registration `id` (its push service says it is gone) and the pushes owed to it.
    async fn drop_push_device(&self, id: &str) -> Result<(), StoreError>;
    /// Claims, until `lease_until` (ms), up to `limit` stored messages nobody has yet planned
    /// pushes for, whose claim lapsed. Every stored message starts due, held by the process
    /// that wrote it for [`PUSH_DUE_HOLD_MS`] (it plans what it wrote as it is written); what
    /// that process does not plan in time (it died) is anyone's after.
    async fn claim_push_due(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<Envelope>, StoreError>;
    /// The pushes of these `(room, seq)` messages are queued: they are due no more.
    async fn push_planned(&self, messages: &[(String, i64)]) -> Result<(), StoreError>;
    /// Queues `job`, or folds it into the one queued for its (device, room): the newer message
    /// wins, the wait for the burst stays as it was.
    async fn queue_push(&self, job: &PushJob) -> Result<(), StoreError>;
    /// Claims, until `lease_until` (ms), up to `limit` queued pushes due by `now`.
    async fn claim_pushes(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<PushJob>, StoreError>;
    /// The push for (device, room) up to `seq` is done (sent or given up): it goes, unless a
    /// newer message folded into it meanwhile, which is then due at once.
    async fn finish_push(&self, device: &str, room: &str, seq: i64) -> Result<(), StoreError>;
    /// The push for (device, room) failed for now: tried again at `not_before`.
    async fn retry_push(&self, device: &str, room: &str, not_before: i64) -> Result<(), StoreError>;
    /// Queued pushes, for the queue depth gauge.
    async fn push_queue_depth(&self) -> Result<u64, StoreError>;
    /// Per room of `user`, the messages of others after their read receipt (counted up to
    /// [`UNREAD_CAP`]); rooms with none are left out.
    async fn unread(&self, user: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// Keeps `presence` as `user`'s current status (the broker writes, the API reads).
    async fn set_presence(&self, user: &str, presence: &PresenceAggregate) -> Result<(), StoreError>;
    async fn presence(&self, user: &str) -> Result<Option<PresenceAggregate>, StoreError>;
    /// Marks every user offline with no devices, keeping last seen: a starting broker holds
    /// no connections, whatever a crashed one left behind.
    async fn reset_presence(&self) -> Result<(), StoreError>;

    /// Appends a directive to the outbox the broker follows (split deployment); returns its
    /// position.
    async fn append_outbox(&self, directive: &Directive) -> Result<i64, StoreError>;
    /// Outbox entries after position `after`, oldest first, at most `limit`. Positions
    /// increase; a gap is a position reserved by a writer that has not (or never) written.
    async fn outbox_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Directive)>, StoreError>;
    /// The newest outbox position, written or applied; 0 when nothing was ever appended.
    async fn outbox_head(&self) -> Result<i64, StoreError>;
    /// Records that broker `node` has applied the outbox through `position` (never moves back)
    /// and is alive now. Entries every node seen in the last [`OUTBOX_FOLLOWER_KEEP_MS`] has
    /// applied are no longer kept.
    async fn set_outbox_applied(&self, node: &str, position: i64) -> Result<(), StoreError>;
    /// The outbox position every broker that recorded itself alive since `live_since`
    /// (milliseconds since the epoch) has applied; 0 when none did.
    async fn outbox_applied(&self, live_since: i64) -> Result<i64, StoreError>;

    /// Takes, or keeps, the lease on `job` for `holder` until `until` (ms): true when `holder`
    /// holds it now (nobody did, it was `holder`'s, or its holder let it lapse). Several nodes
    /// run a job of which one at a time is enough (retention, the media sweep) under it.
    async fn hold_lease(&self, job: &str, holder: &str, until: i64) -> Result<bool, StoreError>;

    /// Cheap round trip for health checks.
    async fn ping(&self) -> Result<(), StoreError>;
}
