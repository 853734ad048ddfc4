//! The production store: MongoDB through the official driver. Portable to any mongod: no
//! transactions, no change streams; duplicates are recognised by error code 11000 only.

use crate::contract::{
    name_prefix_end, Bot, Media, Notifications, Page, Presented, PushDevice, PushJob, PushTarget, ReactionCount,
    RefreshToken, Retention, Room, SearchScope, Store, StoreError, OUTBOX_FOLLOWER_KEEP_MS, PUSH_DUE_HOLD_MS,
    UNREAD_CAP,
};
use crate::outbox::Directive;
use crate::words::words;
use async_trait::async_trait;
use mongodb::bson::{doc, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{IndexOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, Collection, Database, IndexModel};
use roost_protocol::{
    now_millis, Attachment, Envelope, MessageKind, PresenceAggregate, PresenceStatus, ReceiptStamped,
};
use serde::{Deserialize, Serialize};

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

#[derive(Serialize, Deserialize)]
struct UserDoc {
    #[serde(rename = "_id")]
    name: String,
    password_hash: String,
    created_at: i64,
}

#[derive(Serialize, Deserialize)]
struct RefreshDoc {
    #[serde(rename = "_id")]
    token_hash: String,
    user: String,
    expires_at: i64,
    /// The sign-in it descends from; older tokens have none and are their own family.
    #[serde(default)]
    family: Option<String>,
    /// How often it was presented.
    #[serde(default)]
    uses: i64,
}

#[derive(Serialize, Deserialize)]
struct RoomDoc {
    #[serde(rename = "_id")]
    id: String,
    private: bool,
    owner: String,
    direct: bool,
    created_at: i64,
}

#[derive(Serialize, Deserialize)]
struct BotDoc {
    #[serde(rename = "_id")]
    name: String,
    owner: String,
    token_id: String,
    created_at: i64,
}

impl From<BotDoc> for Bot {
    fn from(doc: BotDoc) -> Self {
        Bot { name: doc.name, owner: doc.owner, token_id: doc.token_id, created_at: doc.created_at }
    }
}

/// An upload; `room_gone`: its room was deleted, or the one message showing it: the bytes await
/// the sweeper.
#[derive(Serialize, Deserialize)]
struct MediaDoc {
    #[serde(rename = "_id")]
    id: String,
    room: String,
    uploader: String,
    content_type: String,
    /// BSON has no unsigned integers.
    size: i64,
    sha256: String,
    filename: String,
    width: Option<u32>,
    height: Option<u32>,
    created_at: i64,
    referenced_by: Option<i64>,
    referenced_at: Option<i64>,
    #[serde(default)]
    room_gone: bool,
}

impl From<MediaDoc> for Media {
    fn from(d: MediaDoc) -> Self {
        Media {
            id: d.id,
            room: d.room,
            uploader: d.uploader,
            content_type: d.content_type,
            size: u64::try_from(d.size).unwrap_or_default(),
            sha256: d.sha256,
            filename: d.filename,
            width: d.width,
            height: d.height,
            created_at: d.created_at,
            referenced_by: d.referenced_by,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PushDeviceDoc {
    #[serde(rename = "_id")]
    id: String,
    user: String,
    device: String,
    target: PushTarget,
    created_at: i64,
}

/// A message as written: due for push planning until a planner queues its pushes, held by its
/// writer until `push_due` (then by whoever claims it, `push_claim`). Events are never due.
#[derive(Serialize)]
struct NewMessageDoc<'a> {
    #[serde(flatten)]
    envelope: &'a Envelope,
    #[serde(skip_serializing_if = "Option::is_none")]
    push_due: Option<i64>,
    /// What search matches ([`words`] of the current body): messages only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    words: Vec<String>,
}

/// One user's reaction with one key to a message; `ts`: the message's, for retention.
#[derive(Serialize, Deserialize)]
struct ReactionDoc {
    room: String,
    seq: i64,
    key: String,
    user: String,
    ts: i64,
}

/// A queued push; `lease_until`: a sender holds it until then.
#[derive(Serialize, Deserialize)]
struct PushJobDoc {
    device: String,
    room: String,
    user: String,
    seq: i64,
    from: String,
    ts: i64,
    preview: String,
    urgent: bool,
    not_before: i64,
    expires_at: i64,
    attempts: u32,
    lease_until: i64,
}

impl From<PushJobDoc> for PushJob {
    fn from(d: PushJobDoc) -> Self {
        PushJob {
            device: d.device,
            room: d.room,
            user: d.user,
            seq: d.seq,
            from: d.from,
            ts: d.ts,
            preview: d.preview,
            urgent: d.urgent,
            not_before: d.not_before,
            expires_at: d.expires_at,
            attempts: d.attempts,
        }
    }
}

impl From<PushDeviceDoc> for PushDevice {
    fn from(d: PushDeviceDoc) -> Self {
        PushDevice { id: d.id, user: d.user, device: d.device, target: d.target, created_at: d.created_at }
    }
}

#[derive(Serialize, Deserialize)]
struct NotificationsDoc {
    room: String,
    user: String,
    #[serde(flatten)]
    setting: Notifications,
}

#[derive(Serialize, Deserialize)]
struct MemberDoc {
    room: String,
    user: String,
}

#[derive(Serialize, Deserialize)]
struct CounterDoc {
    #[serde(rename = "_id")]
    room: String,
    /// The last sequence number reserved.
    last: i64,
    /// Numbers below it belong to an earlier room of the same name (deleted), whatever is
    /// written under them later.
    #[serde(default)]
    floor: i64,
}

/// The `room_seq` counter of outbox positions; `$` keeps it apart from every room name.
const OUTBOX_COUNTER: &str = "$outbox";
/// The `room_seq` entry that says the messages stored before search have their words.
const WORDS_BACKFILLED: &str = "$words";
#[derive(Serialize, Deserialize)]
struct OutboxDoc {
    #[serde(rename = "_id")]
    position: i64,
    directive: Directive,
}

/// A broker following the outbox: how far it applied it, and when it last said so.
#[derive(Serialize, Deserialize)]
struct OutboxFollowerDoc {
    #[serde(rename = "_id")]
    node: String,
    position: i64,
    at: i64,
}

#[derive(Serialize, Deserialize)]
struct PresenceDoc {
    #[serde(rename = "_id")]
    user: String,
    #[serde(flatten)]
    presence: PresenceAggregate,
}

#[derive(Serialize, Deserialize)]
struct ReceiptDoc {
    room: String,
    user: String,
    read_seq: i64,
    ts: i64,
}

/// MongoDB-backed [`Store`]; cheap to clone.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
}

fn unavailable(e: mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// True when `e` is a duplicate-key error, and nothing else.
fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(failure) => {
            failure
                .write_errors
                .as_ref()
                .is_some_and(|errors| !errors.is_empty() && errors.iter().all(|w| w.code == DUPLICATE_KEY))
                && failure.write_concern_error.is_none()
        }
        _ => false,
    }
}

fn conflict_or_unavailable(e: mongodb::error::Error) -> StoreError {
    if is_duplicate(&e) {
        StoreError::Conflict
    } else {
        unavailable(e)
    }
}

impl From<RoomDoc> for Room {
    fn from(d: RoomDoc) -> Self {
        Room { id: d.id, private: d.private, owner: d.owner, direct: d.direct, created_at: d.created_at }
    }
}

impl MongoStore {
    /// Connects to `uri` (its database, or `roost`) and creates the indexes.
    pub async fn connect(uri: &str) -> Result<Self, StoreError> {
        let client = Client::with_uri_str(uri).await.map_err(unavailable)?;
        let db = client.default_database().unwrap_or_else(|| client.database("roost"));
        let store = Self { db };
        store.create_indexes().await?;
        store.backfill_words().await?;
        Ok(store)
    }

    /// Gives the messages stored before search their `words`, once: a store that did it says so
    /// in `room_seq`. Several processes starting together each set the same words.
    async fn backfill_words(&self) -> Result<(), StoreError> {
        if self.counters().find_one(doc! {"_id": WORDS_BACKFILLED}).await.map_err(unavailable)?.is_some() {
            return Ok(());
        }
        let before = doc! {"words": {"$exists": false}, "type": null, "deleted_by": null};
        let mut older = self.messages().find(before).await.map_err(unavailable)?;
        while older.advance().await.map_err(unavailable)? {
            let message = older.deserialize_current().map_err(unavailable)?;
            let found = words(&message.body);
            if !found.is_empty() {
                self.messages()
                    .update_one(doc! {"room": &message.room, "seq": message.seq}, doc! {"$set": {"words": found}})
                    .await
                    .map_err(unavailable)?;
            }
        }
        let done = CounterDoc { room: WORDS_BACKFILLED.to_owned(), last: 0, floor: 0 };
        match self.counters().insert_one(done).await {
            Err(e) if !is_duplicate(&e) => Err(unavailable(e)),
            _ => Ok(()),
        }
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let unique = |keys: Document| {
            IndexModel::builder().keys(keys).options(IndexOptions::builder().unique(true).build()).build()
        };
        let plain = |keys: Document| IndexModel::builder().keys(keys).build();
        self.messages()
            .create_indexes([
                unique(doc! {"room": 1, "seq": 1}),
                plain(doc! {"room": 1, "ts": 1}),
                // a client's retry of a message (same id) after a reconnect is stored once
                unique(doc! {"room": 1, "from": 1, "id": 1}),
                // only messages whose pushes are unplanned have the field
                IndexModel::builder()
                    .keys(doc! {"push_due": 1})
                    .options(IndexOptions::builder().sparse(true).build())
                    .build(),
                // search: one entry per word of each message (events and tombstones have none)
                IndexModel::builder()
                    .keys(doc! {"words": 1})
                    .options(IndexOptions::builder().sparse(true).build())
                    .build(),
            ])
            .await
            .map_err(unavailable)?;
        self.members()
            .create_indexes([unique(doc! {"room": 1, "user": 1}), plain(doc! {"user": 1})])
            .await
            .map_err(unavailable)?;
        self.receipts().create_index(unique(doc! {"room": 1, "user": 1})).await.map_err(unavailable)?;
        self.reactions_docs()
            .create_index(unique(doc! {"room": 1, "seq": 1, "key": 1, "user": 1}))
            .await
            .map_err(unavailable)?;
        self.media_docs()
            .create_indexes([plain(doc! {"room": 1}), plain(doc! {"uploader": 1})])
            .await
            .map_err(unavailable)?;
        self.push_devices().create_index(unique(doc! {"user": 1, "device": 1})).await.map_err(unavailable)?;
        self.notification_settings().create_index(unique(doc! {"room": 1, "user": 1})).await.map_err(unavailable)?;
        self.push_jobs()
            .create_indexes([
                unique(doc! {"device": 1, "room": 1}),
                plain(doc! {"not_before": 1}),
                plain(doc! {"user": 1}),
            ])
            .await
            .map_err(unavailable)?;
        self.refresh_tokens()
            .create_indexes([plain(doc! {"family": 1}), plain(doc! {"expires_at": 1})])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn users(&self) -> Collection<UserDoc> {
        self.db.collection("users")
    }
    fn refresh_tokens(&self) -> Collection<RefreshDoc> {
        self.db.collection("refresh_tokens")
    }
    /// `{_id: family, until}`: sign-in families revoked until their tokens expire.
    fn revoked_families(&self) -> Collection<Document> {
        self.db.collection("revoked_refresh_families")
    }
    fn rooms(&self) -> Collection<RoomDoc> {
        self.db.collection("rooms")
    }
    fn bots(&self) -> Collection<BotDoc> {
        self.db.collection("bots")
    }
    fn members(&self) -> Collection<MemberDoc> {
        self.db.collection("members")
    }
    fn counters(&self) -> Collection<CounterDoc> {
        self.db.collection("room_seq")
    }
    fn messages(&self) -> Collection<Envelope> {
        self.db.collection("messages")
    }
    fn reactions_docs(&self) -> Collection<ReactionDoc> {
        self.db.collection("reactions")
    }
    fn receipts(&self) -> Collection<ReceiptDoc> {
        self.db.collection("receipts")
    }
    fn presence_docs(&self) -> Collection<PresenceDoc> {
        self.db.collection("presence")
    }
    fn push_devices(&self) -> Collection<PushDeviceDoc> {
        self.db.collection("push_devices")
    }
    fn push_jobs(&self) -> Collection<PushJobDoc> {
        self.db.collection("push_jobs")
    }
    fn notification_settings(&self) -> Collection<NotificationsDoc> {
        self.db.collection("notification_settings")
    }
    fn media_docs(&self) -> Collection<MediaDoc> {
        self.db.collection("media")
    }
    fn outbox(&self) -> Collection<OutboxDoc> {
        self.db.collection("outbox")
    }
    fn outbox_followers(&self) -> Collection<OutboxFollowerDoc> {
        self.db.collection("outbox_followers")
    }

    /// The lowest position the followers alive since `since` have applied.
    async fn applied_since(&self, since: i64) -> Result<Option<i64>, StoreError> {
        let lowest = self
            .outbox_followers()
            .find_one(doc! {"at": {"$gte": since}})
            .sort(doc! {"position": 1})
            .await
            .map_err(unavailable)?;
        Ok(lowest.map(|follower| follower.position))
    }

    /// Adds `count` to the counter `key` and returns the first of the numbers reserved. With
    /// majority write concern a single-document update is linearizable (Jepsen, MongoDB 3.6.4):
    /// no number is handed out twice, across nodes or a failover.
    /// The numbers below which `room`'s messages belong to an earlier room of the name.
    async fn floor(&self, room: &str) -> Result<i64, StoreError> {
        Ok(self.counters().find_one(doc! {"_id": room}).await.map_err(unavailable)?.map_or(0, |c| c.floor))
    }

    /// The message `seq` of `room` unless it is deleted (or an event).
    async fn live_message(&self, room: &str, seq: i64) -> Result<Option<Envelope>, StoreError> {
        let live = doc! {"room": room, "seq": seq, "type": null, "deleted_by": null};
        self.messages().find_one(live).await.map_err(unavailable)
    }

    /// Applies stored event `event` to the message it targets (the contract's
    /// [`Store::write_batch`]), in steps that can each be done again.
    async fn apply_event(&self, event: &Envelope) -> Result<(), StoreError> {
        let (room, Some(target)) = (event.room.as_str(), event.target) else { return Ok(()) };
        let live = doc! {"room": room, "seq": target, "type": null, "deleted_by": null};
        match event.kind {
            MessageKind::Message => {}
            MessageKind::Edit => {
                let mut newer = live.clone();
                newer.insert("$or", vec![doc! {"edited_seq": null}, doc! {"edited_seq": {"$lt": event.seq}}]);
                let edit = doc! {"$set": {
                    "body": &event.body, "edited_at": event.ts, "edited_seq": event.seq, "words": words(&event.body),
                }};
                self.messages().update_one(newer, edit).await.map_err(unavailable)?;
                // an edit that lost the race with a delete keeps no text either
                if self.live_message(room, target).await?.is_none() {
                    let own = doc! {"room": room, "seq": event.seq};
                    self.messages().update_one(own, doc! {"$set": {"body": ""}}).await.map_err(unavailable)?;
                }
            }
            MessageKind::Delete => {
                // the mark first: an edit or reaction written after it finds no live target and
                // keeps nothing; what follows can each be done again, so a replay of this delete
                // (or a delete racing it) finishes what a failure left, attachments included
                let message = doc! {"room": room, "seq": target, "type": null};
                let Some(message) = self.messages().find_one(message.clone()).await.map_err(unavailable)? else {
                    return Ok(());
                };
                let mark = doc! {"$set": {"deleted": true, "deleted_by": &event.from}, "$unset": {"words": ""}};
                self.messages().update_one(live, mark).await.map_err(unavailable)?;
                for Attachment { media, .. } in message.attachments.into_iter().flatten() {
                    self.release_media(room, target, &media).await?;
                }
                self.messages()
                    .update_many(doc! {"room": room, "target": target, "type": "edit"}, doc! {"$set": {"body": ""}})
                    .await
                    .map_err(unavailable)?;
                self.reactions_docs().delete_many(doc! {"room": room, "seq": target}).await.map_err(unavailable)?;
                let erase = doc! {
                    "$set": {"body": ""},
                    "$unset": {"attachments": "", "data": "", "mentions": "", "reply_to": "", "edited_at": "",
                               "push_due": "", "push_claim": ""},
                };
                self.messages()
                    .update_one(doc! {"room": room, "seq": target, "type": null}, erase)
                    .await
                    .map_err(unavailable)?;
            }
            MessageKind::Reaction => {
                let (Some(key), Some(on)) = (event.key.as_deref(), event.on) else { return Ok(()) };
                let mine = doc! {"room": room, "seq": target, "key": key, "user": &event.from};
                if !on {
                    self.reactions_docs().delete_one(mine).await.map_err(unavailable)?;
                } else if let Some(message) = self.live_message(room, target).await? {
                    self.reactions_docs()
                        .update_one(mine, doc! {"$setOnInsert": {"ts": message.ts}})
                        .upsert(true)
                        .await
                        .map(drop)
                        .or_else(|e| if is_duplicate(&e) { Ok(()) } else { Err(unavailable(e)) })?;
                }
            }
        }
        Ok(())
    }

    /// Message `seq` of `room`, which showed upload `media`, is being deleted: an older message
    /// still showing it keeps it; otherwise it goes at once, as with its room (`room_gone`), and
    /// the sweeper deletes its bytes.
    async fn release_media(&self, room: &str, seq: i64, media: &str) -> Result<(), StoreError> {
        let older =
            doc! {"room": room, "seq": {"$lt": seq}, "type": null, "deleted_by": null, "attachments.media": media};
        let still_shown = self.messages().find_one(older).sort(doc! {"seq": -1}).await.map_err(unavailable)?;
        let change = match still_shown {
            Some(shown) => doc! {"$set": {"referenced_by": shown.seq}},
            None => doc! {"$set": {"room_gone": true}},
        };
        self.media_docs().update_one(doc! {"_id": media, "referenced_by": seq}, change).await.map_err(unavailable)?;
        Ok(())
    }

    async fn reserve(&self, key: &str, count: i64) -> Result<i64, StoreError> {
        let counter = self
            .counters()
            .find_one_and_update(doc! {"_id": key}, doc! {"$inc": {"last": count}})
            .write_concern(WriteConcern::majority())
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| StoreError::Unavailable("upsert returned no counter".into()))?;
        Ok(counter.last - count + 1)
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn create_user(&self, name: &str, password_hash: &str) -> Result<(), StoreError> {
        let user = UserDoc {
            name: name.to_owned(),
            password_hash: password_hash.to_owned(),
            created_at: roost_protocol::now_millis(),
        };
        self.users().insert_one(user).await.map(drop).map_err(conflict_or_unavailable)
    }

    async fn password_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        let user = self.users().find_one(doc! {"_id": name}).await.map_err(unavailable)?;
        Ok(user.map(|u| u.password_hash))
    }

    async fn user_exists(&self, name: &str) -> Result<bool, StoreError> {
        let count = self.users().count_documents(doc! {"_id": name}).await.map_err(unavailable)?;
        Ok(count > 0)
    }

    async fn put_refresh_token(&self, token_hash: &str, token: &RefreshToken) -> Result<(), StoreError> {
        let token = RefreshDoc {
            token_hash: token_hash.to_owned(),
            user: token.user.clone(),
            expires_at: token.expires_at,
            family: Some(token.family.clone()),
            uses: 0,
        };
        self.refresh_tokens().insert_one(token).await.map(drop).map_err(conflict_or_unavailable)
    }

    async fn use_refresh_token(&self, token_hash: &str) -> Result<Presented, StoreError> {
        let used = self
            .refresh_tokens()
            .find_one_and_update(doc! {"_id": token_hash}, doc! {"$inc": {"uses": 1}})
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?;
        Ok(match used {
            Some(doc) => {
                let family = doc.family.unwrap_or_else(|| doc.token_hash.clone());
                Presented::after_uses(RefreshToken { user: doc.user, family, expires_at: doc.expires_at }, doc.uses)
            }
            None => Presented::Unknown,
        })
    }

    async fn revoke_refresh_family(&self, family: &str, until: i64) -> Result<u64, StoreError> {
        let filter = doc! {"$or": [{"family": family}, {"_id": family, "family": null}]};
        let deleted = self.refresh_tokens().delete_many(filter).await.map_err(unavailable)?;
        self.revoked_families()
            .update_one(doc! {"_id": family}, doc! {"$max": {"until": until}})
            .upsert(true)
            .await
            .map_err(unavailable)?;
        Ok(deleted.deleted_count)
    }

    async fn refresh_family_revoked(&self, family: &str) -> Result<bool, StoreError> {
        let found = self.revoked_families().find_one(doc! {"_id": family}).await.map_err(unavailable)?;
        Ok(found.is_some())
    }

    async fn purge_refresh_tokens(&self, now: i64) -> Result<u64, StoreError> {
        self.revoked_families().delete_many(doc! {"until": {"$lt": now}}).await.map_err(unavailable)?;
        let deleted =
            self.refresh_tokens().delete_many(doc! {"expires_at": {"$lt": now}}).await.map_err(unavailable)?;
        Ok(deleted.deleted_count)
    }

    async fn create_room(&self, room: &Room) -> Result<(), StoreError> {
        let doc = RoomDoc {
            id: room.id.clone(),
            private: room.private,
            owner: room.owner.clone(),
            direct: room.direct,
            created_at: room.created_at,
        };
        self.rooms().insert_one(doc).await.map_err(conflict_or_unavailable)?;
        self.add_member(&room.id, &room.owner).await.map(drop)
    }

    async fn room(&self, id: &str) -> Result<Option<Room>, StoreError> {
        Ok(self.rooms().find_one(doc! {"_id": id}).await.map_err(unavailable)?.map(Room::from))
    }

    async fn rooms_of(&self, user: &str) -> Result<Vec<Room>, StoreError> {
        let mut ids = Vec::new();
        let mut members = self.members().find(doc! {"user": user}).await.map_err(unavailable)?;
        while members.advance().await.map_err(unavailable)? {
            ids.push(members.deserialize_current().map_err(unavailable)?.room);
        }
        let mut rooms = Vec::new();
        let mut cursor =
            self.rooms().find(doc! {"_id": {"$in": ids}}).sort(doc! {"_id": 1}).await.map_err(unavailable)?;
        while cursor.advance().await.map_err(unavailable)? {
            rooms.push(cursor.deserialize_current().map_err(unavailable)?.into());
        }
        Ok(rooms)
    }

    async fn public_rooms(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Room, Option<i64>)>, StoreError> {
        let ids = doc! {"$gte": prefix, "$lt": name_prefix_end(prefix), "$gt": after.unwrap_or_default()};
        let filter = doc! {"private": false, "direct": false, "_id": ids};
        let mut cursor =
            self.rooms().find(filter).sort(doc! {"_id": 1}).limit(i64::from(limit)).await.map_err(unavailable)?;
        let mut rooms: Vec<Room> = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            rooms.push(cursor.deserialize_current().map_err(unavailable)?.into());
        }
        let mut listed = Vec::with_capacity(rooms.len());
        for room in rooms {
            let newest =
                self.messages().find_one(doc! {"room": &room.id}).sort(doc! {"seq": -1}).await.map_err(unavailable)?;
            listed.push((room, newest.map(|message| message.ts)));
        }
        Ok(listed)
    }

    async fn delete_room(&self, id: &str) -> Result<(), StoreError> {
        self.members().delete_many(doc! {"room": id}).await.map_err(unavailable)?;
        self.receipts().delete_many(doc! {"room": id}).await.map_err(unavailable)?;
        self.messages().delete_many(doc! {"room": id}).await.map_err(unavailable)?;
        self.reactions_docs().delete_many(doc! {"room": id}).await.map_err(unavailable)?;
        self.rooms().delete_one(doc! {"_id": id}).await.map_err(unavailable)?;
        self.media_docs()
            .update_many(doc! {"room": id}, doc! {"$set": {"room_gone": true}})
            .await
            .map_err(unavailable)?;
        self.notification_settings().delete_many(doc! {"room": id}).await.map_err(unavailable)?;
        self.push_jobs().delete_many(doc! {"room": id}).await.map_err(unavailable)?;
        // everything numbered so far belongs to the deleted room: a message in flight that is
        // written after this never shows in a room re-created under the name
        let floor = self.reserve(id, 0).await?;
        self.counters().update_one(doc! {"_id": id}, doc! {"$max": {"floor": floor}}).await.map_err(unavailable)?;
        Ok(())
    }

    async fn add_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        match self.members().insert_one(MemberDoc { room: room.to_owned(), user: user.to_owned() }).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let deleted = self.members().delete_one(doc! {"room": room, "user": user}).await.map_err(unavailable)?;
        Ok(deleted.deleted_count == 1)
    }

    async fn memberships(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut pairs = Vec::new();
        let mut cursor = self.members().find(doc! {}).await.map_err(unavailable)?;
        while cursor.advance().await.map_err(unavailable)? {
            let member = cursor.deserialize_current().map_err(unavailable)?;
            pairs.push((member.room, member.user));
        }
        Ok(pairs)
    }

    async fn create_bot(&self, bot: &Bot) -> Result<(), StoreError> {
        let doc = BotDoc {
            name: bot.name.clone(),
            owner: bot.owner.clone(),
            token_id: bot.token_id.clone(),
            created_at: bot.created_at,
        };
        self.bots().insert_one(doc).await.map(drop).map_err(conflict_or_unavailable)
    }

    async fn bots(&self) -> Result<Vec<Bot>, StoreError> {
        let mut bots = Vec::new();
        let mut cursor = self.bots().find(doc! {}).await.map_err(unavailable)?;
        while cursor.advance().await.map_err(unavailable)? {
            bots.push(cursor.deserialize_current().map_err(unavailable)?.into());
        }
        Ok(bots)
    }

    async fn bot(&self, name: &str) -> Result<Option<Bot>, StoreError> {
        Ok(self.bots().find_one(doc! {"_id": name}).await.map_err(unavailable)?.map(Bot::from))
    }

    async fn delete_bot(&self, name: &str) -> Result<Option<Bot>, StoreError> {
        Ok(self.bots().find_one_and_delete(doc! {"_id": name}).await.map_err(unavailable)?.map(Bot::from))
    }

    async fn reserve_seq(&self, room: &str, count: i64) -> Result<i64, StoreError> {
        self.reserve(room, count).await
    }

    async fn return_seq(&self, room: &str, unused: i64, end: i64) -> Result<bool, StoreError> {
        let unchanged = doc! {"_id": room, "last": end - 1, "floor": {"$not": {"$gt": unused}}};
        let returned =
            self.counters().update_one(unchanged, doc! {"$set": {"last": unused - 1}}).await.map_err(unavailable)?;
        Ok(returned.modified_count == 1)
    }

    async fn write_batch(&self, messages: &[Envelope], receipts: &[ReceiptStamped]) -> Result<(), StoreError> {
        if !messages.is_empty() {
            let held_until = now_millis() + PUSH_DUE_HOLD_MS;
            let docs = messages.iter().map(|envelope| {
                let message = envelope.kind.is_message();
                NewMessageDoc {
                    envelope,
                    push_due: message.then_some(held_until),
                    words: if message { words(&envelope.body) } else { Vec::new() },
                }
            });
            match self.db.collection::<NewMessageDoc>("messages").insert_many(docs).ordered(false).await {
                Ok(_) => {}
                // a replayed batch: the stored copies stand
                Err(e) if is_duplicate(&e) => {}
                Err(e) => return Err(unavailable(e)),
            }
            for event in messages.iter().filter(|envelope| !envelope.kind.is_message()) {
                // what was stored at its seq is applied: again when a failed batch is replayed
                // (each step can be), and never the content of a retry under the same id, which
                // was neither checked nor stored
                let stored = doc! {"room": &event.room, "seq": event.seq, "id": &event.id};
                if let Some(stored) = self.messages().find_one(stored).await.map_err(unavailable)? {
                    self.apply_event(&stored).await?;
                }
            }
        }
        for r in receipts {
            self.receipts()
                .update_one(
                    doc! {"room": &r.room, "user": &r.from},
                    doc! {"$max": {"read_seq": r.read_seq}, "$set": {"ts": r.ts}},
                )
                .upsert(true)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn messages(&self, room: &str, page: Page) -> Result<Vec<Envelope>, StoreError> {
        let floor = self.floor(room).await?;
        let (range, order, limit) = match page {
            Page::Latest { limit } => (doc! {"$gte": floor}, -1, limit),
            Page::Before { before, limit } => (doc! {"$gte": floor, "$lt": before}, -1, limit),
            Page::After { after, before: Some(before), limit } => {
                (doc! {"$gte": floor, "$gt": after, "$lt": before}, 1, limit)
            }
            Page::After { after, before: None, limit } => (doc! {"$gte": floor, "$gt": after}, 1, limit),
        };
        let mut filter = doc! {"room": room, "seq": range};
        if !matches!(page, Page::After { .. }) {
            filter.insert("type", mongodb::bson::Bson::Null);
        }
        let mut cursor = self
            .messages()
            .find(filter)
            .sort(doc! {"seq": order})
            .limit(i64::from(limit))
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            out.push(cursor.deserialize_current().map_err(unavailable)?);
        }
        Ok(out)
    }

    async fn message_with_id(&self, room: &str, from: &str, id: &str) -> Result<Option<Envelope>, StoreError> {
        self.messages().find_one(doc! {"room": room, "from": from, "id": id}).await.map_err(unavailable)
    }

    async fn last_seq(&self, room: &str) -> Result<i64, StoreError> {
        let floor = self.floor(room).await?;
        let newest = self
            .messages()
            .find_one(doc! {"room": room, "seq": {"$gte": floor}})
            .sort(doc! {"seq": -1})
            .await
            .map_err(unavailable)?;
        Ok(newest.map_or(0, |newest| newest.seq))
    }

    async fn messages_at(&self, room: &str, seqs: &[i64]) -> Result<Vec<Envelope>, StoreError> {
        let floor = self.floor(room).await?;
        let filter = doc! {"room": room, "seq": {"$gte": floor, "$in": seqs}};
        let mut cursor = self.messages().find(filter).sort(doc! {"seq": 1}).await.map_err(unavailable)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            out.push(cursor.deserialize_current().map_err(unavailable)?);
        }
        Ok(out)
    }

    async fn search(&self, scope: SearchScope<'_>, words: &[String], limit: u32) -> Result<Vec<Envelope>, StoreError> {
        let (mut filter, order) = match scope {
            SearchScope::Room { room, before } => {
                let floor = self.floor(room).await?;
                let seq = match before {
                    Some(before) => doc! {"$gte": floor, "$lt": before},
                    None => doc! {"$gte": floor},
                };
                (doc! {"room": room, "seq": seq}, doc! {"seq": -1})
            }
            SearchScope::RoomsOf { user, before } => {
                let mut rooms = Vec::new();
                let mut members = self.members().find(doc! {"user": user}).await.map_err(unavailable)?;
                while members.advance().await.map_err(unavailable)? {
                    rooms.push(members.deserialize_current().map_err(unavailable)?.room);
                }
                let mut within = Vec::with_capacity(rooms.len());
                for room in rooms {
                    within.push(doc! {"room": &room, "seq": {"$gte": self.floor(&room).await?}});
                }
                if within.is_empty() {
                    return Ok(Vec::new());
                }
                let mut all = vec![doc! {"$or": within}];
                if let Some(b) = before {
                    all.push(doc! {"$or": [
                        {"ts": {"$lt": b.ts}},
                        {"ts": b.ts, "room": {"$lt": &b.room}},
                        {"ts": b.ts, "room": &b.room, "seq": {"$lt": b.seq}},
                    ]});
                }
                (doc! {"$and": all}, doc! {"ts": -1, "room": -1, "seq": -1})
            }
        };
        filter.extend(doc! {"words": {"$all": words}, "type": null, "deleted_by": null});
        let mut cursor = self.messages().find(filter).sort(order).limit(i64::from(limit)).await.map_err(unavailable)?;
        let mut found = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            found.push(cursor.deserialize_current().map_err(unavailable)?);
        }
        Ok(found)
    }

    async fn reactions(&self, room: &str, seqs: &[i64], reader: &str) -> Result<Vec<ReactionCount>, StoreError> {
        let filter = doc! {"room": room, "seq": {"$in": seqs}};
        let mut cursor =
            self.reactions_docs().find(filter).sort(doc! {"seq": 1, "_id": 1}).await.map_err(unavailable)?;
        let mut counts: Vec<ReactionCount> = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            let reaction = cursor.deserialize_current().map_err(unavailable)?;
            let me = reaction.user == reader;
            // sorted by seq: only the counts of the same message are looked through
            let same_message = counts.iter_mut().rev().take_while(|count| count.seq == reaction.seq);
            match same_message.into_iter().find(|count| count.key == reaction.key) {
                Some(count) => {
                    count.count += 1;
                    count.me |= me;
                }
                None => counts.push(ReactionCount { seq: reaction.seq, key: reaction.key, count: 1, me }),
            }
        }
        Ok(counts)
    }

    async fn last_read(&self, room: &str, user: &str) -> Result<Option<i64>, StoreError> {
        let receipt = self.receipts().find_one(doc! {"room": room, "user": user}).await.map_err(unavailable)?;
        Ok(receipt.map(|r| r.read_seq))
    }

    async fn prune(&self, retention: Retention) -> Result<u64, StoreError> {
        let mut pruned = 0;
        if let Some(cutoff) = retention.older_than {
            pruned +=
                self.messages().delete_many(doc! {"ts": {"$lt": cutoff}}).await.map_err(unavailable)?.deleted_count;
            self.reactions_docs().delete_many(doc! {"ts": {"$lt": cutoff}}).await.map_err(unavailable)?;
        }
        if let Some(keep) = retention.keep_per_room {
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            let mut rooms = self.counters().find(doc! {}).await.map_err(unavailable)?;
            let mut names = Vec::new();
            while rooms.advance().await.map_err(unavailable)? {
                names.push(rooms.deserialize_current().map_err(unavailable)?.room);
            }
            // counters of rooms (never deleted, so no room's history is missed) and `$` entries
            for room in names.into_iter().filter(|name| !name.starts_with('$')) {
                let newest_gone = self
                    .messages()
                    .find_one(doc! {"room": &room})
                    .sort(doc! {"seq": -1})
                    .skip(u64::try_from(keep).unwrap_or(u64::MAX))
                    .await
                    .map_err(unavailable)?;
                if let Some(newest_gone) = newest_gone {
                    let filter = doc! {"room": &room, "seq": {"$lte": newest_gone.seq}};
                    pruned += self.messages().delete_many(filter.clone()).await.map_err(unavailable)?.deleted_count;
                    self.reactions_docs().delete_many(filter).await.map_err(unavailable)?;
                }
            }
        }
        Ok(pruned)
    }

    async fn put_media(&self, media: &Media) -> Result<(), StoreError> {
        let m = media.clone();
        let doc = MediaDoc {
            id: m.id,
            room: m.room,
            uploader: m.uploader,
            content_type: m.content_type,
            size: i64::try_from(m.size).unwrap_or(i64::MAX),
            sha256: m.sha256,
            filename: m.filename,
            width: m.width,
            height: m.height,
            created_at: m.created_at,
            referenced_by: m.referenced_by,
            referenced_at: None,
            room_gone: false,
        };
        self.media_docs().insert_one(doc).await.map(drop).map_err(conflict_or_unavailable)
    }

    async fn media(&self, id: &str) -> Result<Option<Media>, StoreError> {
        let found = self.media_docs().find_one(doc! {"_id": id, "room_gone": false}).await.map_err(unavailable)?;
        Ok(found.map(Media::from))
    }

    async fn reference_media(&self, id: &str, seq: i64) -> Result<(), StoreError> {
        let update = doc! {"$max": {"referenced_by": seq}, "$set": {"referenced_at": roost_protocol::now_millis()}};
        self.media_docs().update_one(doc! {"_id": id}, update).await.map(drop).map_err(unavailable)
    }

    async fn media_bytes_of(&self, uploader: &str) -> Result<u64, StoreError> {
        let mut cursor = self.media_docs().find(doc! {"uploader": uploader}).await.map_err(unavailable)?;
        let mut total = 0u64;
        while cursor.advance().await.map_err(unavailable)? {
            total += u64::try_from(cursor.deserialize_current().map_err(unavailable)?.size).unwrap_or_default();
        }
        Ok(total)
    }

    async fn sweepable_media(
        &self,
        unused_before: i64,
        referenced_before: i64,
        limit: u32,
    ) -> Result<Vec<Media>, StoreError> {
        // no joins on every mongod: a referenced upload's message is looked up one by one
        let filter = doc! {"$or": [
            {"room_gone": true},
            {"referenced_by": null, "created_at": {"$lt": unused_before}},
            {"referenced_by": {"$gt": 0}, "referenced_at": {"$lt": referenced_before}},
        ]};
        let mut cursor = self.media_docs().find(filter).await.map_err(unavailable)?;
        let mut sweepable = Vec::new();
        while sweepable.len() < limit as usize && cursor.advance().await.map_err(unavailable)? {
            let media = cursor.deserialize_current().map_err(unavailable)?;
            let gone = match (media.room_gone, media.referenced_by) {
                (false, Some(seq)) => self
                    .messages()
                    .find_one(doc! {"room": &media.room, "seq": seq, "deleted_by": null})
                    .await
                    .map_err(unavailable)?
                    .is_none(),
                _ => true,
            };
            if gone {
                sweepable.push(Media::from(media));
            }
        }
        Ok(sweepable)
    }

    async fn delete_media(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self.media_docs().delete_one(doc! {"_id": id}).await.map_err(unavailable)?;
        Ok(deleted.deleted_count == 1)
    }

    async fn put_push_device(&self, device: &PushDevice) -> Result<(), StoreError> {
        // its id changes with a new registration: the one before goes first
        let filter = doc! {"user": &device.user, "device": &device.device};
        self.push_devices().delete_one(filter).await.map_err(unavailable)?;
        let d = device.clone();
        let doc =
            PushDeviceDoc { id: d.id, user: d.user, device: d.device, target: d.target, created_at: d.created_at };
        self.push_devices().insert_one(doc).await.map(drop).map_err(conflict_or_unavailable)
    }

    async fn push_devices_of(&self, user: &str) -> Result<Vec<PushDevice>, StoreError> {
        let mut cursor =
            self.push_devices().find(doc! {"user": user}).sort(doc! {"device": 1}).await.map_err(unavailable)?;
        let mut devices = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            // a target that no longer parses is no device to push to
            if let Ok(device) = cursor.deserialize_current() {
                devices.push(device.into());
            }
        }
        Ok(devices)
    }

    async fn delete_push_device(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        let deleted = self.push_devices().delete_one(doc! {"_id": id, "user": user}).await.map_err(unavailable)?;
        self.push_jobs().delete_many(doc! {"device": id, "user": user}).await.map_err(unavailable)?;
        Ok(deleted.deleted_count == 1)
    }

    async fn delete_push_devices_of(&self, user: &str) -> Result<u64, StoreError> {
        let deleted = self.push_devices().delete_many(doc! {"user": user}).await.map_err(unavailable)?;
        self.push_jobs().delete_many(doc! {"user": user}).await.map_err(unavailable)?;
        Ok(deleted.deleted_count)
    }

    async fn push_device(&self, id: &str) -> Result<Option<PushDevice>, StoreError> {
        let mut cursor = self.push_devices().find(doc! {"_id": id}).await.map_err(unavailable)?;
        if !cursor.advance().await.map_err(unavailable)? {
            return Ok(None);
        }
        // a target that no longer parses is no device to push to
        Ok(cursor.deserialize_current().ok().map(PushDevice::from))
    }

    async fn drop_push_device(&self, id: &str) -> Result<(), StoreError> {
        self.push_devices().delete_one(doc! {"_id": id}).await.map_err(unavailable)?;
        self.push_jobs().delete_many(doc! {"device": id}).await.map(drop).map_err(unavailable)
    }

    async fn claim_push_due(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<Envelope>, StoreError> {
        // without transactions: pick candidates, mark those still due with a claim of ours,
        // and read back what carries it (another planner's claim wins the ones it marked)
        let raw = self.db.collection::<Document>("messages");
        let mut due = raw
            .find(doc! {"push_due": {"$lte": now}})
            .projection(doc! {"_id": 1})
            .sort(doc! {"push_due": 1})
            .limit(i64::from(limit))
            .await
            .map_err(unavailable)?;
        let mut ids = Vec::new();
        while due.advance().await.map_err(unavailable)? {
            ids.extend(due.deserialize_current().map_err(unavailable)?.get("_id").cloned());
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let claim = mongodb::bson::oid::ObjectId::new();
        raw.update_many(
            doc! {"_id": {"$in": ids.clone()}, "push_due": {"$lte": now}},
            doc! {"$set": {"push_due": lease_until, "push_claim": claim}},
        )
        .await
        .map_err(unavailable)?;
        let mut claimed = self
            .messages()
            .find(doc! {"_id": {"$in": ids}, "push_claim": claim})
            .sort(doc! {"push_due": 1})
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while claimed.advance().await.map_err(unavailable)? {
            out.push(claimed.deserialize_current().map_err(unavailable)?);
        }
        Ok(out)
    }

    async fn push_planned(&self, messages: &[(String, i64)]) -> Result<(), StoreError> {
        let mut by_room: std::collections::BTreeMap<&str, Vec<i64>> = std::collections::BTreeMap::new();
        for (room, seq) in messages {
            by_room.entry(room).or_default().push(*seq);
        }
        for (room, seqs) in by_room {
            self.messages()
                .update_many(
                    doc! {"room": room, "seq": {"$in": seqs}},
                    doc! {"$unset": {"push_due": "", "push_claim": ""}},
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn queue_push(&self, job: &PushJob) -> Result<(), StoreError> {
        let newer = self
            .push_jobs()
            .update_one(
                doc! {"device": &job.device, "room": &job.room, "seq": {"$lt": job.seq}},
                doc! {
                    "$set": {"seq": job.seq, "from": &job.from, "ts": job.ts, "preview": &job.preview,
                             "expires_at": job.expires_at},
                    "$max": {"urgent": job.urgent},
                },
            )
            .await
            .map_err(unavailable)?;
        if newer.matched_count == 1 {
            return Ok(());
        }
        let j = job.clone();
        let doc = PushJobDoc {
            device: j.device,
            room: j.room,
            user: j.user,
            seq: j.seq,
            from: j.from,
            ts: j.ts,
            preview: j.preview,
            urgent: j.urgent,
            not_before: j.not_before,
            expires_at: j.expires_at,
            attempts: 0,
            lease_until: 0,
        };
        match self.push_jobs().insert_one(doc).await {
            // one for this (device, room) with this message or a newer one is queued
            Err(e) if is_duplicate(&e) => Ok(()),
            done => done.map(drop).map_err(unavailable),
        }
    }

    async fn claim_pushes(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<PushJob>, StoreError> {
        let mut claimed = Vec::new();
        while claimed.len() < limit as usize {
            let job = self
                .push_jobs()
                .find_one_and_update(
                    doc! {"not_before": {"$lte": now}, "lease_until": {"$lte": now}},
                    doc! {"$set": {"lease_until": lease_until}},
                )
                .sort(doc! {"not_before": 1})
                .await
                .map_err(unavailable)?;
            match job {
                Some(job) => claimed.push(job.into()),
                None => break,
            }
        }
        Ok(claimed)
    }

    async fn finish_push(&self, device: &str, room: &str, seq: i64) -> Result<(), StoreError> {
        self.push_jobs()
            .delete_one(doc! {"device": device, "room": room, "seq": {"$lte": seq}})
            .await
            .map_err(unavailable)?;
        self.push_jobs()
            .update_one(doc! {"device": device, "room": room}, doc! {"$set": {"lease_until": 0}})
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn retry_push(&self, device: &str, room: &str, not_before: i64) -> Result<(), StoreError> {
        self.push_jobs()
            .update_one(
                doc! {"device": device, "room": room},
                doc! {"$set": {"not_before": not_before, "lease_until": 0}, "$inc": {"attempts": 1}},
            )
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn push_queue_depth(&self) -> Result<u64, StoreError> {
        self.push_jobs().count_documents(doc! {}).await.map_err(unavailable)
    }

    async fn unread(&self, user: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut rooms = Vec::new();
        let mut members = self.members().find(doc! {"user": user}).await.map_err(unavailable)?;
        while members.advance().await.map_err(unavailable)? {
            rooms.push(members.deserialize_current().map_err(unavailable)?.room);
        }
        let mut unread = Vec::new();
        for room in rooms {
            let read = self.last_read(&room, user).await?.unwrap_or(0);
            let count = self
                .messages()
                .count_documents(doc! {
                    "room": &room, "seq": {"$gt": read}, "from": {"$ne": user}, "type": null, "deleted_by": null,
                })
                .limit(UNREAD_CAP)
                .await
                .map_err(unavailable)?;
            if count > 0 {
                unread.push((room, count));
            }
        }
        Ok(unread)
    }

    async fn set_notifications(&self, room: &str, user: &str, setting: &Notifications) -> Result<(), StoreError> {
        let doc = NotificationsDoc { room: room.to_owned(), user: user.to_owned(), setting: *setting };
        self.notification_settings()
            .replace_one(doc! {"room": room, "user": user}, doc)
            .upsert(true)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn notifications(&self, room: &str, user: &str) -> Result<Option<Notifications>, StoreError> {
        let found =
            self.notification_settings().find_one(doc! {"room": room, "user": user}).await.map_err(unavailable)?;
        Ok(found.map(|d| d.setting))
    }

    async fn set_presence(&self, user: &str, presence: &PresenceAggregate) -> Result<(), StoreError> {
        let doc = PresenceDoc { user: user.to_owned(), presence: presence.clone() };
        self.presence_docs().replace_one(doc! {"_id": user}, doc).upsert(true).await.map(drop).map_err(unavailable)
    }

    async fn presence(&self, user: &str) -> Result<Option<PresenceAggregate>, StoreError> {
        let found = self.presence_docs().find_one(doc! {"_id": user}).await.map_err(unavailable)?;
        Ok(found.map(|d| d.presence))
    }

    async fn reset_presence(&self) -> Result<(), StoreError> {
        let offline =
            mongodb::bson::to_bson(&PresenceStatus::Offline).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.presence_docs()
            .update_many(doc! {"status": {"$ne": &offline}}, doc! {"$set": {"status": offline, "devices": 0}})
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn append_outbox(&self, directive: &Directive) -> Result<i64, StoreError> {
        let position = self.reserve(OUTBOX_COUNTER, 1).await?;
        let entry = OutboxDoc { position, directive: directive.clone() };
        self.outbox().insert_one(entry).await.map_err(unavailable)?;
        Ok(position)
    }

    async fn outbox_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Directive)>, StoreError> {
        let mut cursor = self
            .outbox()
            .find(doc! {"_id": {"$gt": after}})
            .sort(doc! {"_id": 1})
            .limit(i64::from(limit))
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            let entry = cursor.deserialize_current().map_err(unavailable)?;
            out.push((entry.position, entry.directive));
        }
        Ok(out)
    }

    async fn outbox_head(&self) -> Result<i64, StoreError> {
        let newest = self.outbox().find_one(doc! {}).sort(doc! {"_id": -1}).await.map_err(unavailable)?;
        let furthest =
            self.outbox_followers().find_one(doc! {}).sort(doc! {"position": -1}).await.map_err(unavailable)?;
        Ok(newest.map_or(0, |d| d.position).max(furthest.map_or(0, |f| f.position)))
    }

    async fn set_outbox_applied(&self, node: &str, position: i64) -> Result<(), StoreError> {
        let now = now_millis();
        self.outbox_followers()
            .update_one(doc! {"_id": node}, doc! {"$max": {"position": position}, "$set": {"at": now}})
            .upsert(true)
            .await
            .map_err(unavailable)?;
        if let Some(applied) = self.applied_since(now - OUTBOX_FOLLOWER_KEEP_MS).await? {
            self.outbox().delete_many(doc! {"_id": {"$lte": applied}}).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn outbox_applied(&self, live_since: i64) -> Result<i64, StoreError> {
        Ok(self.applied_since(live_since).await?.unwrap_or(0))
    }

    async fn hold_lease(&self, job: &str, holder: &str, until: i64) -> Result<bool, StoreError> {
        let free = doc! {"_id": job, "$or": [{"holder": holder}, {"until": {"$lt": now_millis()}}]};
        let taken = self
            .db
            .collection::<Document>("leases")
            .update_one(free, doc! {"$set": {"holder": holder, "until": until}})
            .upsert(true)
            .await;
        match taken {
            Ok(_) => Ok(true),
            // held by another: the upsert's insert meets the lease's _id
            Err(e) if is_duplicate(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.run_command(doc! {"ping": 1}).await.map(drop).map_err(unavailable)
    }
}
