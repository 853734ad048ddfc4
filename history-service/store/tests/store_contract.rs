//! One contract, every store: the same tests run against the embedded SQLite store and against
//! MongoDB (the MongoDB-wire test server `secantusd-rs`, started per test on a free port).
//!
//! The MongoDB half needs `secantusd-rs` (see `tests/support/mongo.rs`).

use roost_protocol::{
    now_millis, Attachment, Envelope, MessageKind, PresenceAggregate, PresenceStatus, ReceiptStamped,
};
use roost_store::{
    Bot, Directive, Media, MongoStore, NotificationLevel, Notifications, Page, Presented, PushDevice, PushJob,
    PushTarget, ReactionCount, RefreshToken, Retention, Room, SearchCursor, SearchScope, SqliteStore, Store,
    StoreError, PUSH_DUE_HOLD_MS,
};
use std::sync::Arc;

/// A place a store lives; `open` can be called again to reach the same data afresh.
trait Backend: Send + Sync {
    async fn open(&self) -> Arc<dyn Store>;
    /// Stops and starts the server behind the store, where there is one.
    async fn restart(&mut self);
}

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.0.path().join("roost.db")).expect("open sqlite"))
    }

    async fn restart(&mut self) {}
}

async fn sqlite() -> Option<Sqlite> {
    Some(Sqlite(tempfile::tempdir().expect("temp dir")))
}

#[path = "../../../tests/support/mongo.rs"]
mod support;
use support::MongoServer;

struct Mongo(MongoServer);

impl Backend for Mongo {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(MongoStore::connect(&self.0.uri()).await.expect("connect to the test server"))
    }

    async fn restart(&mut self) {
        self.0.stop().await;
        self.0.resume().await;
    }
}

async fn mongo() -> Option<Mongo> {
    MongoServer::start("the store contract").await.map(Mongo)
}

fn envelope(room: &str, seq: i64) -> Envelope {
    Envelope {
        id: format!("m{seq}"),
        room: room.into(),
        seq,
        from: "alice".into(),
        ts: 1_700_000_000_000 + seq,
        body: format!("hello {seq}"),
        attachments: None,
        ..Envelope::default()
    }
}

/// Event `seq` of alice's (unless `from` says otherwise) on message `target` of `room`.
fn event(room: &str, seq: i64, kind: MessageKind, target: i64, from: &str) -> Envelope {
    Envelope { kind, target: Some(target), from: from.into(), body: String::new(), ..envelope(room, seq) }
}

fn room(id: &str, owner: &str) -> Room {
    Room { id: id.into(), private: false, owner: owner.into(), direct: false, created_at: 1 }
}

async fn users(backend: impl Backend) {
    let store = backend.open().await;
    store.create_user("alice", "hash-a").await.unwrap();
    assert!(matches!(store.create_user("alice", "other").await, Err(StoreError::Conflict)));
    assert_eq!(store.password_hash("alice").await.unwrap().as_deref(), Some("hash-a"));
    assert_eq!(store.password_hash("nobody").await.unwrap(), None);
    assert!(store.user_exists("alice").await.unwrap());
    assert!(!store.user_exists("nobody").await.unwrap());
    store.ping().await.unwrap();
}

async fn bots_are_kept_until_deleted(mut backend: impl Backend) {
    let store = backend.open().await;
    let bot = |name: &str, token_id: &str| Bot {
        name: name.into(),
        owner: "alice".into(),
        token_id: token_id.into(),
        created_at: 7,
    };
    store.create_bot(&bot("sensor", "t1")).await.unwrap();
    assert!(matches!(store.create_bot(&bot("sensor", "t2")).await, Err(StoreError::Conflict)));
    store.create_bot(&bot("helper", "t3")).await.unwrap();
    backend.restart().await;
    let store = backend.open().await;
    let mut bots = store.bots().await.unwrap();
    bots.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(bots, [bot("helper", "t3"), bot("sensor", "t1")]);
    assert_eq!(store.bot("sensor").await.unwrap(), Some(bot("sensor", "t1")));
    assert_eq!(store.bot("alice").await.unwrap(), None);
    assert_eq!(store.delete_bot("sensor").await.unwrap(), Some(bot("sensor", "t1")));
    assert_eq!(store.delete_bot("sensor").await.unwrap(), None);
    assert_eq!(store.bots().await.unwrap(), [bot("helper", "t3")]);
}

async fn presence_survives_and_resets(backend: impl Backend) {
    let store = backend.open().await;
    let status = |status, devices, last_seen| PresenceAggregate { status, devices, last_seen };
    assert_eq!(store.presence("alice").await.unwrap(), None);
    store.set_presence("alice", &status(PresenceStatus::Online, 2, Some(10))).await.unwrap();
    store.set_presence("bob", &status(PresenceStatus::Offline, 0, Some(5))).await.unwrap();
    let store = backend.open().await;
    assert_eq!(store.presence("alice").await.unwrap(), Some(status(PresenceStatus::Online, 2, Some(10))));
    store.reset_presence().await.unwrap();
    assert_eq!(store.presence("alice").await.unwrap(), Some(status(PresenceStatus::Offline, 0, Some(10))));
    assert_eq!(store.presence("bob").await.unwrap(), Some(status(PresenceStatus::Offline, 0, Some(5))));
}

async fn the_outbox_keeps_order(backend: impl Backend) {
    let store = backend.open().await;
    assert_eq!(store.outbox_head().await.unwrap(), 0);
    let directives = [
        Directive::Admit { room: "lobby".into(), user: "bob".into() },
        Directive::Publish { topic: "rooms/lobby/events".into(), payload: r#"{"type":"joined"}"#.into() },
        Directive::Dismiss { room: "lobby".into(), user: "bob".into() },
        Directive::CloseRoom { room: "lobby".into() },
    ];
    let mut positions = Vec::new();
    for directive in &directives {
        positions.push(store.append_outbox(directive).await.unwrap());
    }
    let store = backend.open().await;
    let head = store.outbox_head().await.unwrap();
    let all = store.outbox_after(0, 10).await.unwrap();
    assert_eq!(all.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(), directives);
    assert_eq!(all.iter().map(|(p, _)| *p).collect::<Vec<_>>(), positions);
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions increase: {positions:?}");
    assert_eq!(head, all[3].0);
    assert_eq!(store.outbox_after(all[1].0, 1).await.unwrap(), vec![all[2].clone()]);
    assert!(store.outbox_after(head, 10).await.unwrap().is_empty());
    let everyone = 0;
    assert_eq!(store.outbox_applied(everyone).await.unwrap(), 0);
    store.set_outbox_applied("a", positions[2]).await.unwrap();
    store.set_outbox_applied("a", positions[1]).await.unwrap();
    assert_eq!(store.outbox_applied(everyone).await.unwrap(), positions[2], "the applied position never moves back");
    assert_eq!(store.outbox_after(0, 10).await.unwrap(), vec![all[3].clone()], "applied entries are dropped");
    assert_eq!(store.outbox_head().await.unwrap(), head);
    store.set_outbox_applied("b", positions[2]).await.unwrap();
    store.set_outbox_applied("a", head).await.unwrap();
    assert_eq!(store.outbox_applied(everyone).await.unwrap(), positions[2], "the slowest live node counts");
    assert_eq!(store.outbox_after(0, 10).await.unwrap(), vec![all[3].clone()], "kept for the node behind");
    let later = now_millis() + 60_000;
    assert_eq!(store.outbox_applied(later).await.unwrap(), 0, "nobody alive since then");
    store.set_outbox_applied("b", head).await.unwrap();
    assert!(store.outbox_after(0, 10).await.unwrap().is_empty());
    assert_eq!(store.outbox_head().await.unwrap(), head, "a drained outbox still knows where it ended");
}

async fn writes_survive_a_server_restart(mut backend: impl Backend) {
    let store = backend.open().await;
    store.write_batch(&[envelope("lobby", 1)], &[]).await.unwrap();
    let lease = store.reserve_seq("lobby", 10).await.unwrap();
    backend.restart().await;
    let store = backend.open().await;
    assert_eq!(store.messages("lobby", Page::Latest { limit: 5 }).await.unwrap(), vec![envelope("lobby", 1)]);
    assert_eq!(store.reserve_seq("lobby", 10).await.unwrap(), lease + 10);
}

async fn refresh_tokens_work_once_and_a_replay_is_recognised(backend: impl Backend) {
    let store = backend.open().await;
    let token = |family: &str, expires_at| RefreshToken { user: "alice".into(), family: family.into(), expires_at };
    store.put_refresh_token("h1", &token("f1", 99)).await.unwrap();
    store.put_refresh_token("h2", &token("f1", 199)).await.unwrap();
    store.put_refresh_token("h3", &token("f2", 299)).await.unwrap();
    assert_eq!(store.use_refresh_token("h1").await.unwrap(), Presented::First(token("f1", 99)));
    assert_eq!(store.use_refresh_token("h1").await.unwrap(), Presented::Again(token("f1", 99)));
    assert_eq!(store.use_refresh_token("nope").await.unwrap(), Presented::Unknown);
    assert!(!store.refresh_family_revoked("f1").await.unwrap());
    assert_eq!(store.revoke_refresh_family("f1", 199).await.unwrap(), 2);
    assert_eq!(store.use_refresh_token("h2").await.unwrap(), Presented::Unknown, "revoked with its family");
    assert!(store.refresh_family_revoked("f1").await.unwrap(), "remembered until its tokens expire");
    assert!(!store.refresh_family_revoked("f2").await.unwrap());
    assert_eq!(store.purge_refresh_tokens(300).await.unwrap(), 1, "only f2's token was left");
    assert_eq!(store.use_refresh_token("h3").await.unwrap(), Presented::Unknown);
    assert!(!store.refresh_family_revoked("f1").await.unwrap(), "the revocation expired too");
}

async fn rooms_and_members(backend: impl Backend) {
    let store = backend.open().await;
    store.create_room(&room("lobby", "alice")).await.unwrap();
    assert!(matches!(store.create_room(&room("lobby", "bob")).await, Err(StoreError::Conflict)));
    store.create_room(&room("annex", "bob")).await.unwrap();
    assert_eq!(store.room("lobby").await.unwrap(), Some(room("lobby", "alice")));
    assert_eq!(store.room("none").await.unwrap(), None);
    assert!(store.add_member("lobby", "bob").await.unwrap());
    assert!(!store.add_member("lobby", "bob").await.unwrap(), "adding twice reports no change");
    let ids = |rooms: Vec<Room>| rooms.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(store.rooms_of("bob").await.unwrap()), ["annex", "lobby"]);
    let mut pairs = store.memberships().await.unwrap();
    pairs.sort();
    let expected = [("annex", "bob"), ("lobby", "alice"), ("lobby", "bob")];
    assert_eq!(pairs, expected.map(|(r, u)| (r.to_owned(), u.to_owned())));
    assert!(store.remove_member("lobby", "bob").await.unwrap());
    assert!(!store.remove_member("lobby", "bob").await.unwrap());
    store.write_batch(&[envelope("lobby", 1)], &[]).await.unwrap();
    store.delete_room("lobby").await.unwrap();
    assert_eq!(store.room("lobby").await.unwrap(), None);
    assert!(store.messages("lobby", Page::Latest { limit: 10 }).await.unwrap().is_empty());
    assert_eq!(ids(store.rooms_of("alice").await.unwrap()), Vec::<String>::new());
}

async fn the_directory_lists_public_rooms_by_prefix(backend: impl Backend) {
    let store = backend.open().await;
    for (id, private, direct) in [
        ("lobby", false, false),
        ("lobby-2", false, false),
        ("lob", false, false),
        ("lobby-secret", true, false),
        ("dm.lobby.x", false, true),
        ("other", false, false),
    ] {
        store.create_room(&Room { private, direct, ..room(id, "alice") }).await.unwrap();
    }
    store.write_batch(&[envelope("lobby", 1), envelope("lobby", 2)], &[]).await.unwrap();
    let listed = store.public_rooms("", None, 10).await.unwrap();
    let ids = |listed: &[(Room, Option<i64>)]| listed.iter().map(|(r, _)| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&listed), ["lob", "lobby", "lobby-2", "other"], "private rooms and DMs never listed");
    assert_eq!(listed[1].1, Some(envelope("lobby", 2).ts), "the newest message's time");
    assert_eq!(listed[0].1, None, "a room without messages");
    assert_eq!(ids(&store.public_rooms("lobby", None, 10).await.unwrap()), ["lobby", "lobby-2"]);
    assert_eq!(ids(&store.public_rooms("lob", None, 2).await.unwrap()), ["lob", "lobby"]);
    assert_eq!(ids(&store.public_rooms("lob", Some("lobby"), 2).await.unwrap()), ["lobby-2"]);
    assert!(store.public_rooms("z", None, 10).await.unwrap().is_empty());
}

async fn sequence_reservations_never_overlap(backend: impl Backend) {
    let first = backend.open().await.reserve_seq("lobby", 100).await.unwrap();
    let store = backend.open().await;
    assert_eq!((first, store.reserve_seq("lobby", 100).await.unwrap()), (1, 101));
    assert_eq!(store.reserve_seq("other", 5).await.unwrap(), 1);
    store.create_room(&room("lobby", "alice")).await.unwrap();
    store.delete_room("lobby").await.unwrap();
    assert_eq!(store.reserve_seq("lobby", 10).await.unwrap(), 201, "a re-created room never repeats a seq");
}

async fn unused_sequence_numbers_are_given_back_only_when_nothing_came_after(backend: impl Backend) {
    let store = backend.open().await;
    let first = store.reserve_seq("lobby", 100).await.unwrap();
    assert!(store.return_seq("lobby", first + 3, first + 100).await.unwrap());
    assert_eq!(store.reserve_seq("lobby", 10).await.unwrap(), first + 3, "numbering goes on from the last used");
    assert!(!store.return_seq("lobby", first + 3, first + 10).await.unwrap(), "a later reservation keeps its numbers");
    assert_eq!(store.reserve_seq("lobby", 1).await.unwrap(), first + 13);
    store.create_room(&room("lobby", "alice")).await.unwrap();
    let lease = store.reserve_seq("lobby", 10).await.unwrap();
    store.delete_room("lobby").await.unwrap();
    assert!(!store.return_seq("lobby", lease, lease + 10).await.unwrap(), "never below a deleted room's numbers");
    assert_eq!(store.reserve_seq("lobby", 1).await.unwrap(), lease + 10);
}

async fn late_writes_of_a_deleted_room_stay_hidden(backend: impl Backend) {
    let store = backend.open().await;
    let seqs = |v: Vec<Envelope>| v.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    store.create_room(&room("lobby", "alice")).await.unwrap();
    let first = store.reserve_seq("lobby", 10).await.unwrap();
    store.write_batch(&[envelope("lobby", first)], &[]).await.unwrap();
    store.delete_room("lobby").await.unwrap();
    // numbered before the delete, written after it (a publish in flight)
    store.write_batch(&[envelope("lobby", first + 1)], &[]).await.unwrap();
    store.create_room(&room("lobby", "mallory")).await.unwrap();
    let next = store.reserve_seq("lobby", 10).await.unwrap();
    assert_eq!(next, first + 10, "numbering continues");
    store.write_batch(&[envelope("lobby", next)], &[]).await.unwrap();
    for page in [
        Page::Latest { limit: 10 },
        Page::Before { before: next + 1, limit: 10 },
        Page::After { after: 0, before: None, limit: 10 },
        Page::After { after: 0, before: Some(next + 1), limit: 10 },
    ] {
        assert_eq!(seqs(store.messages("lobby", page).await.unwrap()), [next], "{page:?}");
    }
    assert_eq!(seqs(store.messages_at("lobby", &[first, first + 1, next]).await.unwrap()), [next]);
}

async fn history_pages(backend: impl Backend) {
    let store = backend.open().await;
    let batch: Vec<_> = (1..=10).map(|s| envelope("lobby", s)).collect();
    store.write_batch(&batch, &[]).await.unwrap();
    let mut replayed = envelope("lobby", 3);
    replayed.body = "replayed".into();
    store.write_batch(&[replayed, envelope("lobby", 11)], &[]).await.unwrap();

    let seqs = |v: Vec<Envelope>| v.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(store.messages("lobby", Page::Latest { limit: 3 }).await.unwrap()), [11, 10, 9]);
    assert_eq!(seqs(store.messages("lobby", Page::Before { before: 4, limit: 5 }).await.unwrap()), [3, 2, 1]);
    let after = Page::After { after: 8, before: None, limit: 5 };
    assert_eq!(seqs(store.messages("lobby", after).await.unwrap()), [9, 10, 11]);
    let window = Page::After { after: 2, before: Some(4), limit: 5 };
    assert_eq!(store.messages("lobby", window).await.unwrap(), vec![envelope("lobby", 3)], "the first copy stands");
    assert!(store.messages("other", Page::Latest { limit: 5 }).await.unwrap().is_empty());
    let picked = store.messages_at("lobby", &[9, 3, 42, 9]).await.unwrap();
    assert_eq!(picked, vec![envelope("lobby", 3), envelope("lobby", 9)], "kept ones, in seq order, once each");
    assert!(store.messages_at("other", &[3]).await.unwrap().is_empty());

    let mut rich = envelope("lobby", 12);
    let photo = media("photo", "lobby", "alice", 1234, 1).attachment();
    let pdf = Attachment {
        media: "pdf".into(),
        content_type: "application/pdf".into(),
        size: 9,
        filename: "a.pdf".into(),
        width: None,
        height: None,
    };
    rich.attachments = Some(vec![photo, pdf]);
    rich.reply_to = Some(3);
    let reading = serde_json::json!({"celsius": 21.4, "count": -9_223_372_036_854_775_808i64, "$unit": "C", "a.b": [1, {"c": null}]});
    rich.data = Some(reading.as_object().unwrap().clone());
    rich.mentions = vec!["bob".into(), "carol".into()];
    store.write_batch(&[rich.clone()], &[]).await.unwrap();
    assert_eq!(store.messages("lobby", Page::Latest { limit: 1 }).await.unwrap(), vec![rich]);

    let mut retried = envelope("lobby", 20);
    retried.id = "m5".into();
    let mut from_another_user = envelope("lobby", 21);
    from_another_user.id = "m5".into();
    from_another_user.from = "bob".into();
    store.write_batch(&[retried, from_another_user.clone()], &[]).await.unwrap();
    let newest = store.messages("lobby", Page::After { after: 12, before: None, limit: 5 }).await.unwrap();
    assert_eq!(newest, vec![from_another_user], "a sender's retry (same id) is stored once");
}

async fn retention_prunes_by_age_and_count(backend: impl Backend) {
    let store = backend.open().await;
    for room in ["lobby", "annex"] {
        store.reserve_seq(room, 100).await.unwrap();
        let batch: Vec<_> = (1..=10).map(|s| envelope(room, s)).collect();
        store.write_batch(&batch, &[]).await.unwrap();
    }
    let seqs = |v: Vec<Envelope>| v.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(store.prune(Retention::default()).await.unwrap(), 0, "no limits keep everything");
    // envelope(_, seq) has ts 1_700_000_000_000 + seq: older than seq 4 goes
    let by_age = Retention { older_than: Some(1_700_000_000_004), keep_per_room: None };
    assert_eq!(store.prune(by_age).await.unwrap(), 6);
    assert_eq!(seqs(store.messages("lobby", Page::Before { before: 6, limit: 10 }).await.unwrap()), [5, 4]);
    let by_count = Retention { older_than: None, keep_per_room: Some(3) };
    assert_eq!(store.prune(by_count).await.unwrap(), 8);
    for room in ["lobby", "annex"] {
        assert_eq!(seqs(store.messages(room, Page::Latest { limit: 10 }).await.unwrap()), [10, 9, 8]);
    }
    assert_eq!(store.prune(by_count).await.unwrap(), 0);
}

async fn receipts_keep_the_furthest_read(backend: impl Backend) {
    let store = backend.open().await;
    let receipt = |read_seq| ReceiptStamped { room: "lobby".into(), from: "bob".into(), read_seq, ts: read_seq };
    assert_eq!(store.last_read("lobby", "bob").await.unwrap(), None);
    store.write_batch(&[], &[receipt(5), receipt(3)]).await.unwrap();
    assert_eq!(store.last_read("lobby", "bob").await.unwrap(), Some(5));
    store.write_batch(&[], &[receipt(7)]).await.unwrap();
    assert_eq!(store.last_read("lobby", "bob").await.unwrap(), Some(7));
}

fn media(id: &str, room: &str, uploader: &str, size: u64, created_at: i64) -> Media {
    Media {
        id: id.into(),
        room: room.into(),
        uploader: uploader.into(),
        content_type: "image/png".into(),
        size,
        sha256: "00".repeat(32),
        filename: format!("{id}.png"),
        width: Some(3),
        height: Some(2),
        created_at,
        referenced_by: None,
    }
}

async fn media_records_live_until_swept(backend: impl Backend) {
    let store = backend.open().await;
    store.create_room(&room("lobby", "alice")).await.unwrap();
    store.create_room(&room("attic", "alice")).await.unwrap();
    let (unused, shown, pruned, of_attic) = (
        media("unused", "lobby", "alice", 10, 1_000),
        media("shown", "lobby", "alice", 20, 1_000),
        media("pruned", "lobby", "bob", 40, 1_000),
        media("of-attic", "attic", "alice", 80, 1_000),
    );
    for m in [&unused, &shown, &pruned, &of_attic] {
        store.put_media(m).await.unwrap();
    }
    assert!(matches!(store.put_media(&unused).await, Err(StoreError::Conflict)));
    assert_eq!(store.media("shown").await.unwrap(), Some(shown.clone()));
    assert_eq!(store.media("nothing").await.unwrap(), None);
    assert_eq!(store.media_bytes_of("alice").await.unwrap(), 110);

    // messages 1 and 2 show two uploads; the newest reference is kept
    assert_eq!(store.reserve_seq("lobby", 2).await.unwrap(), 1);
    store.write_batch(&[envelope("lobby", 1), envelope("lobby", 2)], &[]).await.unwrap();
    store.reference_media("shown", 2).await.unwrap();
    store.reference_media("shown", 1).await.unwrap();
    store.reference_media("pruned", 1).await.unwrap();
    assert_eq!(store.media("shown").await.unwrap().unwrap().referenced_by, Some(2));

    let now = roost_protocol::now_millis();
    let sweepable = |unused_before, referenced_before| {
        let store = store.clone();
        async move {
            let mut ids: Vec<String> = store
                .sweepable_media(unused_before, referenced_before, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert!(sweepable(0, 0).await.is_empty(), "nothing is old enough, every room and message is there");
    assert_eq!(sweepable(2_000, 0).await, ["of-attic", "unused"], "never referenced, past the grace");
    store.prune(Retention { older_than: None, keep_per_room: Some(1) }).await.unwrap();
    assert_eq!(sweepable(0, now + 1_000).await, ["pruned"], "its message is gone from history");
    assert_eq!(sweepable(0, 0).await, Vec::<String>::new(), "a reference still on its way is not judged");

    store.delete_room("attic").await.unwrap();
    assert_eq!(store.media("of-attic").await.unwrap(), None, "a deleted room's uploads are gone at once");
    assert_eq!(sweepable(0, 0).await, ["of-attic"]);
    assert!(store.delete_media("of-attic").await.unwrap());
    assert!(!store.delete_media("of-attic").await.unwrap());
    assert_eq!(store.media_bytes_of("alice").await.unwrap(), 30);
}

async fn events_change_their_message_and_a_delete_erases_it(backend: impl Backend) {
    let store = backend.open().await;
    store.create_room(&room("lobby", "alice")).await.unwrap();
    store.put_media(&media("cat", "lobby", "bob", 10, 1_000)).await.unwrap();
    store.put_media(&media("dog", "lobby", "bob", 10, 1_000)).await.unwrap();
    let shows = |media: &[&str]| {
        let attachment = |id: &&str| Attachment {
            media: (*id).into(),
            content_type: "image/png".into(),
            size: 10,
            filename: format!("{id}.png"),
            width: None,
            height: None,
        };
        Some(media.iter().map(attachment).collect::<Vec<_>>())
    };
    let bobs = Envelope {
        from: "bob".into(),
        attachments: shows(&["cat", "dog"]),
        reply_to: Some(1),
        data: serde_json::json!({"secret": 1}).as_object().cloned(),
        mentions: vec!["alice".into()],
        ..envelope("lobby", 2)
    };
    let older = Envelope { attachments: shows(&["dog"]), ..envelope("lobby", 1) };
    let reacted = |on: bool, key: &str, from: &str, seq: i64| Envelope {
        key: Some(key.into()),
        on: Some(on),
        ..event("lobby", seq, MessageKind::Reaction, 2, from)
    };
    let edit =
        |seq: i64, body: &str| Envelope { body: body.into(), ..event("lobby", seq, MessageKind::Edit, 2, "bob") };
    store.write_batch(&[older, bobs], &[]).await.unwrap();
    for seq in [1, 2] {
        store.reference_media(if seq == 1 { "dog" } else { "cat" }, seq).await.unwrap();
    }
    store.reference_media("dog", 2).await.unwrap();
    // two edits in one batch and one replayed: the newest wins
    store.write_batch(&[edit(3, "first fix"), edit(4, "second fix")], &[]).await.unwrap();
    store.write_batch(&[edit(3, "first fix")], &[]).await.unwrap();
    store
        .write_batch(
            &[reacted(true, "👍", "carol", 5), reacted(true, "🎉", "alice", 6), reacted(true, "👍", "alice", 7)],
            &[],
        )
        .await
        .unwrap();
    store.write_batch(&[reacted(false, "🎉", "alice", 8)], &[]).await.unwrap();
    let at = |seq: i64| {
        let store = store.clone();
        async move { store.messages_at("lobby", &[seq]).await.unwrap().pop().expect("stored") }
    };
    let edited = at(2).await;
    assert_eq!((edited.body.as_str(), edited.edited_at), ("second fix", Some(1_700_000_000_004)));
    assert!(!edited.deleted);
    let count = |key: &str, count: u64, me: bool| ReactionCount { seq: 2, key: key.into(), count, me };
    assert_eq!(store.reactions("lobby", &[1, 2], "alice").await.unwrap(), [count("👍", 2, true)]);
    assert_eq!(store.reactions("lobby", &[2], "bob").await.unwrap(), [count("👍", 2, false)]);
    let events = store.messages("lobby", Page::After { after: 2, before: None, limit: 10 }).await.unwrap();
    assert_eq!(events.len(), 6, "events are stored at their own seq");
    assert_eq!((events[5].kind, events[5].target, events[5].on), (MessageKind::Reaction, Some(2), Some(false)));
    let latest = store.messages("lobby", Page::Latest { limit: 10 }).await.unwrap();
    assert_eq!(latest.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 1], "newest-first pages list messages only");
    let before = store.messages("lobby", Page::Before { before: 8, limit: 10 }).await.unwrap();
    assert_eq!(before.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(store.last_seq("lobby").await.unwrap(), 8, "events count");
    assert_eq!(store.last_seq("attic").await.unwrap(), 0);
    assert_eq!(store.unread("carol").await.unwrap(), Vec::<(String, u64)>::new(), "carol is no member");
    store.add_member("lobby", "carol").await.unwrap();
    assert_eq!(store.unread("carol").await.unwrap(), [("lobby".to_owned(), 2)], "events are not unread");

    // the owner deletes bob's message: erased in the store, its edits' text and reactions too
    store.write_batch(&[event("lobby", 9, MessageKind::Delete, 2, "alice")], &[]).await.unwrap();
    let tombstone = at(2).await;
    assert_eq!(
        tombstone,
        Envelope {
            from: "bob".into(),
            body: String::new(),
            deleted: true,
            deleted_by: Some("alice".into()),
            ..envelope("lobby", 2)
        }
    );
    for seq in [3, 4] {
        assert_eq!(at(seq).await.body, "", "an edit keeps no text of a deleted message");
    }
    assert!(store.reactions("lobby", &[2], "alice").await.unwrap().is_empty());
    // nothing changes a tombstone: a late edit leaves no text, a late reaction is not kept
    store.write_batch(&[edit(10, "too late"), reacted(true, "👍", "carol", 11)], &[]).await.unwrap();
    assert_eq!((at(2).await.body, at(10).await.body), (String::new(), String::new()));
    assert!(store.reactions("lobby", &[2], "carol").await.unwrap().is_empty());
    assert_eq!(store.unread("carol").await.unwrap(), [("lobby".to_owned(), 1)], "a tombstone is not unread");

    // "cat" was shown by the deleted message alone: gone at once; "dog" is still shown by message 1
    assert_eq!(store.media("cat").await.unwrap(), None);
    let swept: Vec<String> =
        store.sweepable_media(0, now_millis() + 1_000, 10).await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(swept, ["cat"]);
    assert_eq!(store.media("dog").await.unwrap().unwrap().referenced_by, Some(1));
}

async fn search_finds_current_messages_by_all_their_words(backend: impl Backend) {
    let store = backend.open().await;
    store.create_room(&room("lobby", "alice")).await.unwrap();
    store.create_room(&room("attic", "alice")).await.unwrap();
    store.add_member("lobby", "bob").await.unwrap();
    let said = |room: &str, seq: i64, body: &str| Envelope { body: body.into(), ..envelope(room, seq) };
    store
        .write_batch(
            &[
                said("lobby", 1, "Lunch at noon?"),
                said("lobby", 2, "lunch was great"),
                said("lobby", 3, "café: lunch talk"),
                said("attic", 1, "lunch in the attic"),
                said("attic", 2, "नमस्ते दुनिया, ¹²³ Ǆemal aⓐb cafe\u{301}"),
            ],
            &[],
        )
        .await
        .unwrap();
    let words = |query: &str| roost_store::words(query);
    let in_lobby = |query: &str, before: Option<i64>, limit: u32| {
        let (store, words) = (store.clone(), words(query));
        async move {
            let found = store.search(SearchScope::Room { room: "lobby", before }, &words, limit).await.unwrap();
            found.into_iter().map(|m| m.seq).collect::<Vec<_>>()
        }
    };
    let of = |user: &'static str, query: &str, before: Option<SearchCursor>| {
        let (store, words) = (store.clone(), words(query));
        async move {
            let scope = SearchScope::RoomsOf { user, before: before.as_ref() };
            let found = store.search(scope, &words, 10).await.unwrap();
            found.into_iter().map(|m| format!("{}/{}", m.room, m.seq)).collect::<Vec<_>>()
        }
    };
    assert_eq!(in_lobby("LUNCH", None, 10).await, [3, 2, 1], "newest first, case aside");
    assert_eq!(in_lobby("lunch", None, 2).await, [3, 2]);
    assert_eq!(in_lobby("lunch", Some(2), 10).await, [1]);
    assert_eq!(in_lobby("great lunch", None, 10).await, [2], "every word");
    assert_eq!(in_lobby("café", None, 10).await, [3]);
    assert!(in_lobby("cafe", None, 10).await.is_empty(), "diacritics count");
    assert!(in_lobby("lun", None, 10).await.is_empty(), "whole words");
    for query in ["नमस्ते", "दुनिया", "¹²³", "ǆemal", "aⓐb"] {
        assert_eq!(of("alice", query, None).await, ["attic/2"], "{query}: marks and digits belong to words");
    }
    assert_eq!(of("alice", "café", None).await, ["lobby/3", "attic/2"], "however its accent was typed");
    assert_eq!(of("alice", "lunch", None).await, ["lobby/3", "lobby/2", "lobby/1", "attic/1"], "by time, then room");
    let after_two = SearchCursor { ts: 1_700_000_000_002, room: "lobby".into(), seq: 2 };
    assert_eq!(of("alice", "lunch", Some(after_two)).await, ["lobby/1", "attic/1"]);
    assert_eq!(of("bob", "lunch", None).await, ["lobby/3", "lobby/2", "lobby/1"], "only the reader's rooms");

    // an edit changes what matches, a delete leaves nothing to match, events match nothing
    let edit = Envelope { body: "dinner was great".into(), ..event("lobby", 4, MessageKind::Edit, 2, "alice") };
    let reaction =
        Envelope { key: Some("lunch".into()), on: Some(true), ..event("lobby", 6, MessageKind::Reaction, 1, "bob") };
    store.write_batch(&[edit, event("lobby", 5, MessageKind::Delete, 3, "alice"), reaction], &[]).await.unwrap();
    assert_eq!(in_lobby("lunch", None, 10).await, [1]);
    assert_eq!(in_lobby("dinner", None, 10).await, [2], "the message, not its edit");
    assert!(in_lobby("talk", None, 10).await.is_empty());
    store.remove_member("lobby", "bob").await.unwrap();
    assert!(of("bob", "lunch", None).await.is_empty(), "never a room the reader left");
    store.prune(Retention { older_than: Some(now_millis()), keep_per_room: None }).await.unwrap();
    assert!(in_lobby("dinner", None, 10).await.is_empty(), "pruned messages are found no more");
}

async fn push_registrations_and_notification_settings(backend: impl Backend) {
    let store = backend.open().await;
    let device = |id: &str, device: &str, target: PushTarget| PushDevice {
        id: id.into(),
        user: "alice".into(),
        device: device.into(),
        target,
        created_at: 1,
    };
    let browser = device(
        "d1",
        "laptop",
        PushTarget::Webpush { endpoint: "https://push.example/x".into(), p256dh: "BP".into(), auth: "au".into() },
    );
    let phone = device("d2", "phone", PushTarget::Fcm { token: "old".into() });
    store.put_push_device(&browser).await.unwrap();
    store.put_push_device(&phone).await.unwrap();
    // a rotated token: the same device registers again and replaces what it had
    let rotated = device("d3", "phone", PushTarget::Fcm { token: "new".into() });
    store.put_push_device(&rotated).await.unwrap();
    assert_eq!(store.push_devices_of("alice").await.unwrap(), vec![browser.clone(), rotated]);
    assert!(store.push_devices_of("bob").await.unwrap().is_empty());
    assert!(!store.delete_push_device("bob", "d1").await.unwrap(), "only its user deletes it");
    assert!(store.delete_push_device("alice", "d3").await.unwrap());
    assert_eq!(store.push_devices_of("alice").await.unwrap(), vec![browser]);

    store.create_room(&room("lobby", "alice")).await.unwrap();
    assert_eq!(store.notifications("lobby", "alice").await.unwrap(), None);
    let quiet = Notifications { level: NotificationLevel::Mentions, muted_until: Some(5) };
    store.set_notifications("lobby", "alice", &quiet).await.unwrap();
    store.set_notifications("lobby", "bob", &Notifications::default()).await.unwrap();
    assert_eq!(store.notifications("lobby", "alice").await.unwrap(), Some(quiet));
    let none = Notifications { level: NotificationLevel::None, muted_until: None };
    store.set_notifications("lobby", "alice", &none).await.unwrap();
    assert_eq!(store.notifications("lobby", "alice").await.unwrap(), Some(none));
    store.delete_room("lobby").await.unwrap();
    assert_eq!(store.notifications("lobby", "alice").await.unwrap(), None, "settings go with their room");
}

async fn pushes_are_planned_once_queued_folded_and_survive_a_restart(mut backend: impl Backend) {
    let store = backend.open().await;
    store.create_room(&room("lobby", "alice")).await.unwrap();
    store.add_member("lobby", "bob").await.unwrap();
    let stored: Vec<Envelope> = (1..=3).map(|seq| envelope("lobby", seq)).collect();
    store.write_batch(&stored, &[]).await.unwrap();

    // every stored message starts due, held by its writer for a while; then a claim holds it
    // until its lease runs out
    let now = now_millis();
    assert!(store.claim_push_due(now, now + 100, 5).await.unwrap().is_empty(), "its writer plans it first");
    let t = now + PUSH_DUE_HOLD_MS + 1;
    let first = store.claim_push_due(t, t + 100, 2).await.unwrap();
    assert_eq!(first, stored[..2].to_vec(), "oldest first, at most the limit");
    assert_eq!(store.claim_push_due(t, t + 100, 5).await.unwrap(), stored[2..].to_vec(), "claimed ones are held");
    store.push_planned(&[("lobby".into(), 1), ("lobby".into(), 2)]).await.unwrap();
    let lapsed = store.claim_push_due(t + 101, t + 200, 5).await.unwrap();
    assert_eq!(lapsed, stored[2..].to_vec(), "a lapsed claim comes back");
    store.push_planned(&[("lobby".into(), 3)]).await.unwrap();
    assert!(store.claim_push_due(t + 1_000, t + 2_000, 5).await.unwrap().is_empty(), "planned: due no more");

    let device = PushDevice {
        id: "d1".into(),
        user: "bob".into(),
        device: "phone".into(),
        target: PushTarget::Fcm { token: "t".into() },
        created_at: 1,
    };
    store.put_push_device(&device).await.unwrap();
    assert_eq!(store.push_device("d1").await.unwrap(), Some(device.clone()));
    let job = |seq: i64| PushJob {
        device: "d1".into(),
        room: "lobby".into(),
        user: "bob".into(),
        seq,
        from: "alice".into(),
        ts: seq,
        preview: format!("hello {seq}"),
        urgent: seq == 1,
        not_before: 50 + seq,
        expires_at: 10_000,
        attempts: 0,
    };
    store.queue_push(&job(1)).await.unwrap();
    store.queue_push(&job(3)).await.unwrap();
    store.queue_push(&job(2)).await.unwrap();
    assert_eq!(store.push_queue_depth().await.unwrap(), 1, "one per (device, room)");
    assert!(store.claim_pushes(50, 60, 10).await.unwrap().is_empty(), "waits for its burst");
    backend.restart().await;
    let store = backend.open().await;
    let claimed = store.claim_pushes(51, 60, 10).await.unwrap();
    let folded = PushJob { urgent: true, not_before: 51, ..job(3) };
    assert_eq!(claimed, vec![folded.clone()], "the newest message, the first one's wait and urgency");
    assert!(store.claim_pushes(55, 60, 10).await.unwrap().is_empty(), "held by its sender");

    store.retry_push("d1", "lobby", 70).await.unwrap();
    assert!(store.claim_pushes(65, 80, 10).await.unwrap().is_empty(), "backing off");
    let again = store.claim_pushes(70, 80, 10).await.unwrap();
    assert_eq!(again, vec![PushJob { not_before: 70, attempts: 1, ..folded }]);
    // a message folding in while it is sent: it stays, due at once
    store.queue_push(&job(4)).await.unwrap();
    store.finish_push("d1", "lobby", 3).await.unwrap();
    assert_eq!(store.claim_pushes(71, 90, 10).await.unwrap().iter().map(|j| j.seq).collect::<Vec<_>>(), [4]);
    store.finish_push("d1", "lobby", 4).await.unwrap();
    assert_eq!(store.push_queue_depth().await.unwrap(), 0);

    // unread: others' messages after the reader's receipt
    assert_eq!(store.unread("bob").await.unwrap(), vec![("lobby".to_owned(), 3)]);
    assert!(store.unread("alice").await.unwrap().is_empty(), "her own messages are read");
    store
        .write_batch(&[], &[ReceiptStamped { room: "lobby".into(), from: "bob".into(), read_seq: 2, ts: 5 }])
        .await
        .unwrap();
    assert_eq!(store.unread("bob").await.unwrap(), vec![("lobby".to_owned(), 1)]);

    // a registration its push service says is gone takes its pushes with it
    store.queue_push(&job(5)).await.unwrap();
    store.drop_push_device("d1").await.unwrap();
    assert_eq!((store.push_device("d1").await.unwrap(), store.push_queue_depth().await.unwrap()), (None, 0));
    store.put_push_device(&device).await.unwrap();
    store.queue_push(&job(6)).await.unwrap();
    assert_eq!(store.delete_push_devices_of("bob").await.unwrap(), 1);
    assert_eq!(store.push_queue_depth().await.unwrap(), 0);
    store.put_push_device(&device).await.unwrap();
    store.queue_push(&job(7)).await.unwrap();
    store.delete_room("lobby").await.unwrap();
    assert_eq!(store.push_queue_depth().await.unwrap(), 0, "pushes go with their room");
}

async fn a_lease_has_one_holder_until_it_lapses(backend: impl Backend) {
    let store = backend.open().await;
    let later = now_millis() + 60_000;
    assert!(store.hold_lease("retention", "a", later).await.unwrap(), "nobody held it");
    assert!(!store.hold_lease("retention", "b", later).await.unwrap(), "a holds it");
    assert!(store.hold_lease("retention", "a", later + 1).await.unwrap(), "its holder keeps it");
    assert!(store.hold_lease("sweep", "b", later).await.unwrap(), "another job, another lease");
    assert!(store.hold_lease("sweep", "a", now_millis() - 1).await.is_ok_and(|held| !held));
    assert!(store.hold_lease("sweep", "b", now_millis() - 1).await.unwrap(), "b lets it lapse");
    assert!(store.hold_lease("sweep", "a", later).await.unwrap(), "a lapsed lease goes to whoever asks");
}

/// Runs every contract test against the backend `open` makes.
/// Proves: messages a MongoDB store kept from before search (no `words`) are found once a
/// store of this release has connected to it.
#[tokio::test]
async fn mongo_messages_stored_before_search_are_found_after_the_upgrade() {
    let Some(backend) = mongo().await else { return };
    let client = mongodb::Client::with_uri_str(backend.0.uri()).await.expect("connect to the test server");
    let messages = client.default_database().expect("a database").collection("messages");
    let old = |seq: i64, body: &str| {
        mongodb::bson::doc! {"id": format!("m{seq}"), "room": "lobby", "seq": seq, "from": "alice", "ts": seq, "body": body}
    };
    messages.insert_many([old(1, "lunch at noon"), old(2, "🎉"), old(3, "no lunch today")]).await.expect("insert");
    let store = backend.open().await;
    let found = store.search(SearchScope::Room { room: "lobby", before: None }, &["lunch".into()], 10).await.unwrap();
    assert_eq!(found.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 1]);
}

macro_rules! contract {
    ($backend:ident) => {
        mod $backend {
            macro_rules! run {
                ($test:ident) => {
                    #[tokio::test]
                    async fn $test() {
                        if let Some(backend) = super::$backend().await {
                            super::$test(backend).await;
                        }
                    }
                };
            }
            run!(users);
            run!(bots_are_kept_until_deleted);
            run!(writes_survive_a_server_restart);
            run!(presence_survives_and_resets);
            run!(the_outbox_keeps_order);
            run!(refresh_tokens_work_once_and_a_replay_is_recognised);
            run!(rooms_and_members);
            run!(the_directory_lists_public_rooms_by_prefix);
            run!(sequence_reservations_never_overlap);
            run!(unused_sequence_numbers_are_given_back_only_when_nothing_came_after);
            run!(history_pages);
            run!(late_writes_of_a_deleted_room_stay_hidden);
            run!(receipts_keep_the_furthest_read);
            run!(retention_prunes_by_age_and_count);
            run!(media_records_live_until_swept);
            run!(events_change_their_message_and_a_delete_erases_it);
            run!(search_finds_current_messages_by_all_their_words);
            run!(push_registrations_and_notification_settings);
            run!(pushes_are_planned_once_queued_folded_and_survive_a_restart);
            run!(a_lease_has_one_holder_until_it_lapses);
        }
    };
}

contract!(sqlite);
contract!(mongo);
