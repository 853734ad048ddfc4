//! What chat users expect beyond sending (issue 21): edits, deletes and reactions, replies and
//! mentions, the directory of public rooms.

use crate::harness::{next_on, spawn_on_mongo, spawn_system, Agent, System};
use serde_json::{json, Value};

/// The names on one directory page, and its `next`.
async fn directory_page(system: &System, query: &str) -> (Vec<String>, Option<String>) {
    let (status, body) =
        system.call("GET", &format!("/v1/rooms/public{query}"), Some(&system.token("carol", 600)), None).await;
    assert_eq!(status, 200, "{body}");
    let names = body["rooms"].as_array().expect("rooms").iter().map(|room| room["id"].as_str().unwrap().to_owned());
    (names.collect(), body["next"].as_str().map(str::to_owned))
}

/// Proves: the directory lists public rooms by name prefix with member counts and the time of
/// the newest message, in pages of 50 chained by `next`; private rooms and DMs never appear,
/// not even to their members; a bad `q` is a 400; the name `public` cannot be taken.
async fn the_directory_lists_public_rooms_only(system: System) {
    system.room("lobby", false, "alice", &["bob"]).await;
    system.room("lobby-secret", true, "alice", &["bob"]).await; // registers bob, whom a DM needs
    system.room("games", false, "bob", &[]).await;
    let (status, body) =
        system.call("POST", "/v1/dms", Some(&system.token("alice", 600)), Some(json!({"user": "bob"}))).await;
    assert_eq!(status, 201, "{body}");
    let (code, err) =
        system.mosquitto_pub("bob", &system.token("bob", 600), "rooms/lobby/messages", r#"{"body":"hi"}"#, 1).await;
    assert_eq!(code, 0, "{err}");
    let stored = system.history("lobby", "bob", "").await[0]["ts"].as_i64().expect("stored message");

    let (status, body) = system.call("GET", "/v1/rooms/public", Some(&system.token("alice", 600)), None).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<&Value> = body["rooms"].as_array().expect("rooms").iter().collect();
    let names: Vec<&str> = listed.iter().map(|room| room["id"].as_str().unwrap()).collect();
    assert_eq!(names, ["games", "lobby"], "no private room, no DM, even for their members: {body}");
    assert_eq!(listed[1]["members"], 2);
    assert_eq!(listed[1]["owner"], "alice");
    assert_eq!(listed[1]["last_activity"], stored, "the newest message's time");
    assert_eq!(listed[0]["last_activity"], listed[0]["created_at"], "a silent room: its creation");
    assert!(body.get("next").is_none(), "one page: {body}");

    assert_eq!(directory_page(&system, "?q=LOB").await.0, ["lobby"], "prefix, case aside");
    assert!(directory_page(&system, "?q=lobby-s").await.0.is_empty(), "the private room stays hidden");
    for bad in ["?q=a%2Fb", "?q=%2B", "?cursor=..%2Fx"] {
        let (status, body) =
            system.call("GET", &format!("/v1/rooms/public{bad}"), Some(&system.token("carol", 600)), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = system.call("GET", "/v1/rooms/public", None, None).await;
    assert_eq!(status, 401, "members of the service only");

    for n in 0..60 {
        system.room(&format!("page-{n:02}"), false, "dave", &[]).await;
    }
    let (first, next) = directory_page(&system, "?q=page-").await;
    assert_eq!(first.len(), 50);
    let next = next.expect("a second page");
    let (second, last) = directory_page(&system, &format!("?q=page-&cursor={next}")).await;
    assert_eq!(second, (50..60).map(|n| format!("page-{n:02}")).collect::<Vec<_>>());
    assert!(last.is_none());

    let (status, body) =
        system.call("POST", "/v1/rooms", Some(&system.token("alice", 600)), Some(json!({"name": "public"}))).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn the_directory_lists_public_rooms_only_on_sqlite() {
    the_directory_lists_public_rooms_only(spawn_system().await).await;
}

#[tokio::test]
async fn the_directory_lists_public_rooms_only_on_mongo() {
    let Some(system) = spawn_on_mongo("the room directory").await else { return };
    the_directory_lists_public_rooms_only(system).await;
}

/// Proves: a reply must answer a message of its own room: one naming a seq the room does not
/// hold (never given, or another room's) is refused (MQTT 5: 0x99) and neither delivered nor
/// stored; one sent right behind its target (QoS 0, not yet stored) is taken. History shows a
/// reply with the message it quotes. Mentions are the room's members the message names
/// (`@name`, `data.mentions`), found once at stamping, delivered and stored with it.
async fn replies_answer_messages_of_their_room_and_mentions_name_members(system: System) {
    system.room("lobby", false, "alice", &["bob", "carol"]).await;
    system.room("annex", false, "alice", &[]).await;
    let mut bob = system.mosquitto_sub("bob", &["rooms/lobby/messages"]).await;
    let mut alice = Agent::online(&system, "alice", json!({"protocol": 5})).await;
    for n in 1..=3 {
        alice.publish("rooms/annex/messages", &format!(r#"{{"body":"annex {n}"}}"#), 1).await;
        assert_eq!(alice.expect("published").await["rc"], 0);
    }

    let question = r#"{"body":"lunch @bob, @dave? cc @Carol.","data":{"mentions":["alice","bob"]}}"#;
    alice.publish("rooms/lobby/messages", question, 0).await;
    alice.expect("published").await; // QoS 0: sent
    alice.publish("rooms/lobby/messages", r#"{"body":"well?","reply_to":1}"#, 1).await;
    assert_eq!(alice.expect("published").await["rc"], 0, "the target, numbered just before, is found");
    let asked = next_on(&mut bob, "rooms/lobby/messages").await;
    assert_eq!(asked["mentions"], json!(["alice", "bob", "carol"]), "members only, sorted, once: {asked}");
    let reply = next_on(&mut bob, "rooms/lobby/messages").await;
    assert_eq!((reply["seq"].as_i64(), reply["reply_to"].as_i64()), (Some(2), Some(1)));
    assert!(reply.get("mentions").is_none(), "none: {reply}");

    for target in [3, 99, 0] {
        alice.publish("rooms/lobby/messages", &format!(r#"{{"body":"re","reply_to":{target}}}"#), 1).await;
        assert_eq!(alice.expect("published").await["rc"], 0x99, "reply_to {target}");
    }
    let (code, _) = system
        .mosquitto_pub("bob", &system.token("bob", 60), "rooms/lobby/messages", r#"{"body":"sure","reply_to":2}"#, 1)
        .await;
    assert_eq!(code, 0);
    let answer = next_on(&mut bob, "rooms/lobby/messages").await;
    assert_eq!(answer["seq"], 3, "the refused replies took no number: {answer}");

    let history = system.history("lobby", "carol", "?after=0").await;
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(history[0]["mentions"], asked["mentions"], "stored with its mentions");
    assert!(history[0].get("quote").is_none());
    assert_eq!(history[1]["quote"], json!({"seq": 1, "from": "alice", "body": asked["body"]}));
    assert_eq!(history[2]["quote"], json!({"seq": 2, "from": "alice", "body": "well?"}));
}

#[tokio::test]
async fn replies_answer_messages_of_their_room_and_mentions_name_members_on_sqlite() {
    replies_answer_messages_of_their_room_and_mentions_name_members(spawn_system().await).await;
}

#[tokio::test]
async fn replies_answer_messages_of_their_room_and_mentions_name_members_on_mongo() {
    let Some(system) = spawn_on_mongo("replies and mentions").await else { return };
    replies_answer_messages_of_their_room_and_mentions_name_members(system).await;
}

/// `agent` publishes `payload` on `room`'s messages (QoS 1, MQTT 5): the PUBACK's reason code.
async fn publish_rc(agent: &mut Agent, room: &str, payload: Value) -> i64 {
    agent.publish(&format!("rooms/{room}/messages"), &payload.to_string(), 1).await;
    agent.expect("published").await["rc"].as_i64().expect("a reason code")
}

const NOT_AUTHORIZED: i64 = 0x87;
const PAYLOAD_FORMAT_INVALID: i64 = 0x99;
const QUOTA_EXCEEDED: i64 = 0x97;

/// Proves: edits, deletes and reactions are numbered and delivered like messages and change the
/// message they target. Only the sender edits; the sender or the room's owner deletes, and a
/// delete erases the body, attachments, data and the text of the edits in the store itself (read
/// bypassing Roost), drops the reactions and takes the upload it alone showed; a tombstone
/// cannot be edited, reacted to or deleted again. Reactions toggle, are counted per key with
/// whether the reader gave it, and are capped at 20 keys a message. Refusals take no seq.
async fn edits_deletes_and_reactions_change_their_message(system: System) {
    system.room("lobby", false, "alice", &["bob", "carol"]).await;
    let mut carol = system.mosquitto_sub("carol", &["rooms/lobby/messages"]).await;
    let mut alice = Agent::online(&system, "alice", json!({"protocol": 5})).await;
    let mut bob = Agent::online(&system, "bob", json!({"protocol": 5})).await;
    let mut carol_says = Agent::online(&system, "carol", json!({"protocol": 5})).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/rooms/lobby/media?filename=plan.txt", system.http))
        .bearer_auth(system.token("bob", 600))
        .header("content-type", "text/plain")
        .body("the secret plan, attached")
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);
    let upload: Value = response.json().await.expect("upload JSON");
    let media = upload["id"].as_str().expect("an upload id").to_owned();

    let plan = json!({"body": "the secret plan", "attachments": [{"media": media}], "data": {"code": "tiger"}});
    assert_eq!(publish_rc(&mut bob, "lobby", plan).await, 0);
    assert_eq!(publish_rc(&mut alice, "lobby", json!({"body": "hi all"})).await, 0);
    let edit = json!({"type": "edit", "target": 1, "body": "the secret plan, v2"});
    assert_eq!(publish_rc(&mut bob, "lobby", edit).await, 0);
    let foreign_edit = json!({"type": "edit", "target": 1, "body": "alice was here"});
    assert_eq!(publish_rc(&mut alice, "lobby", foreign_edit).await, NOT_AUTHORIZED, "only the sender edits");
    assert_eq!(
        publish_rc(&mut bob, "lobby", json!({"type": "edit", "target": 9, "body": "x"})).await,
        PAYLOAD_FORMAT_INVALID
    );
    let reaction = |key: &str, target: i64| json!({"type": "reaction", "target": target, "key": key});
    assert_eq!(publish_rc(&mut bob, "lobby", reaction("👍", 2)).await, 0);
    assert_eq!(publish_rc(&mut carol_says, "lobby", reaction("👍", 2)).await, 0);
    assert_eq!(publish_rc(&mut alice, "lobby", reaction("🎉", 2)).await, 0);
    assert_eq!(publish_rc(&mut bob, "lobby", reaction("👍", 2)).await, 0, "a toggle: bob takes his back");
    assert_eq!(publish_rc(&mut bob, "lobby", reaction("👍", 3)).await, PAYLOAD_FORMAT_INVALID, "an event is no target");

    let mut seen = Vec::new();
    for _ in 1..=7 {
        seen.push(next_on(&mut carol, "rooms/lobby/messages").await);
    }
    let seqs: Vec<i64> = seen.iter().map(|envelope| envelope["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7], "events take the next seq, refusals none");
    assert_eq!(
        (seen[2]["type"].as_str(), seen[2]["target"].as_i64(), seen[2]["from"].as_str()),
        (Some("edit"), Some(1), Some("bob"))
    );
    assert_eq!(seen[2]["body"], "the secret plan, v2");
    assert_eq!((seen[3]["key"].as_str(), seen[3]["on"].as_bool()), (Some("👍"), Some(true)));
    assert_eq!((seen[6]["key"].as_str(), seen[6]["on"].as_bool()), (Some("👍"), Some(false)));

    let (status, page) = system.call("GET", "/v1/rooms/lobby/messages", Some(&system.token("carol", 60)), None).await;
    assert_eq!((status, &page["through"]), (200, &json!(7)), "current through the newest event: {page}");
    let history = page["messages"].as_array().expect("messages");
    assert_eq!(history.len(), 2, "the newest messages, events folded in, not listed: {history:?}");
    let (plan, hi) = (&history[1], &history[0]);
    assert_eq!(plan["body"], "the secret plan, v2");
    let recovered = system.history("lobby", "carol", "?after=2").await;
    let kinds: Vec<&str> = recovered.iter().map(|event| event["type"].as_str().unwrap_or("message")).collect();
    assert_eq!(kinds, ["edit", "reaction", "reaction", "reaction", "reaction"], "after= lists the events too");
    assert_eq!(plan["edited_at"], seen[2]["ts"]);
    assert_eq!(hi["reactions"], json!([{"key": "👍", "count": 1, "me": true}, {"key": "🎉", "count": 1, "me": false}]));
    let as_bob = system.history("lobby", "bob", "?before=3&limit=1").await;
    assert_eq!(as_bob[0]["reactions"][0], json!({"key": "👍", "count": 1, "me": false}), "me is the reader's");
    // a retry is the first publish again: a new payload under a used id is not looked at
    assert_eq!(publish_rc(&mut carol_says, "lobby", json!({"id": "c-1", "body": "hi"})).await, 0);
    let swapped = json!({"id": "c-1", "type": "delete", "target": 1});
    assert_eq!(publish_rc(&mut carol_says, "lobby", swapped).await, 0, "taken as the retry it claims to be");
    assert_eq!(system.history("lobby", "carol", "?before=2").await[0]["body"], "the secret plan, v2");
    assert_eq!(next_on(&mut carol, "rooms/lobby/messages").await["body"], "hi");
    let (status, unread) = system.call("GET", "/v1/rooms/lobby/unread", Some(&system.token("carol", 60)), None).await;
    assert_eq!((status, &unread["unread"]), (200, &json!(2)), "events are not unread: {unread}");

    // carol is neither sender nor owner; alice owns the room and deletes bob's message
    assert_eq!(publish_rc(&mut carol_says, "lobby", json!({"type": "delete", "target": 1})).await, NOT_AUTHORIZED);
    assert_eq!(publish_rc(&mut alice, "lobby", json!({"type": "delete", "target": 1})).await, 0);
    let deleted = next_on(&mut carol, "rooms/lobby/messages").await;
    assert_eq!(
        (deleted["seq"].as_i64(), deleted["type"].as_str(), deleted["from"].as_str()),
        (Some(9), Some("delete"), Some("alice"))
    );
    for gone in [
        json!({"type": "edit", "target": 1, "body": "v3"}),
        json!({"type": "delete", "target": 1}),
        reaction("👍", 1),
        json!({"body": "re", "reply_to": 1}),
    ] {
        let refused = publish_rc(&mut bob, "lobby", gone.clone()).await;
        assert_eq!(refused, PAYLOAD_FORMAT_INVALID, "a tombstone takes nothing: {gone}");
    }
    let tombstone = &system.history("lobby", "carol", "?before=2").await[0];
    assert_eq!(
        tombstone.as_object().unwrap().keys().map(String::as_str).collect::<std::collections::BTreeSet<_>>(),
        ["body", "deleted", "deleted_by", "from", "id", "room", "seq", "ts"].into_iter().collect(),
        "{tombstone}"
    );
    assert_eq!(
        (&tombstone["deleted"], &tombstone["deleted_by"], &tombstone["body"]),
        (&json!(true), &json!("alice"), &json!(""))
    );
    let stored = system.stored_row("lobby", 1).await;
    let text = stored.to_string();
    assert!(
        !text.contains("secret") && !text.contains("tiger") && !text.contains(&media),
        "erased in the store: {stored}"
    );
    let stored_edit = system.stored_row("lobby", 3).await;
    assert!(!stored_edit.to_string().contains("secret"), "the edit's text too: {stored_edit}");
    let (status, _) = system.call("GET", &format!("/v1/media/{media}"), Some(&system.token("carol", 60)), None).await;
    assert_eq!(status, 404, "the upload only it showed is gone");

    // whoever opened a DM has no owner powers in it
    system.register("bob").await;
    let (status, dm) =
        system.call("POST", "/v1/dms", Some(&system.token("alice", 60)), Some(json!({"user": "bob"}))).await;
    assert_eq!(status, 201, "{dm}");
    let dm = dm["id"].as_str().expect("the DM's id").to_owned();
    assert_eq!(publish_rc(&mut bob, &dm, json!({"body": "just us"})).await, 0);
    assert_eq!(publish_rc(&mut alice, &dm, json!({"type": "delete", "target": 1})).await, NOT_AUTHORIZED);

    // 20 different keys on a message, not 21; a key already given still toggles
    for n in 0..18 {
        assert_eq!(publish_rc(&mut bob, "lobby", reaction(&format!("k{n}"), 2)).await, 0, "key {n}");
    }
    assert_eq!(publish_rc(&mut bob, "lobby", reaction("k-one-too-many", 2)).await, QUOTA_EXCEEDED);
    assert_eq!(publish_rc(&mut carol_says, "lobby", reaction("🎉", 2)).await, 0);
    let hi = &system.history("lobby", "carol", "?before=3&limit=1").await[0];
    assert_eq!(hi["reactions"].as_array().map(Vec::len), Some(20), "{hi}");
    assert_eq!(hi["reactions"][1], json!({"key": "🎉", "count": 2, "me": true}));
}

#[tokio::test]
async fn edits_deletes_and_reactions_change_their_message_on_sqlite() {
    edits_deletes_and_reactions_change_their_message(spawn_system().await).await;
}

#[tokio::test]
async fn edits_deletes_and_reactions_change_their_message_on_mongo() {
    let Some(system) = spawn_on_mongo("edits, deletes and reactions").await else { return };
    edits_deletes_and_reactions_change_their_message(system).await;
}

/// `user` searches `path` (`/v1/search?...` or `/v1/rooms/{id}/search?...`): the status, the
/// `room/seq` of each message found and the `next` cursor.
async fn search(system: &System, user: &str, path: &str) -> (u16, Vec<String>, Option<String>) {
    let (status, body) = system.call("GET", path, Some(&system.token(user, 600)), None).await;
    let found = body["messages"].as_array().into_iter().flatten();
    let found = found.map(|m| format!("{}/{}", m["room"].as_str().unwrap(), m["seq"])).collect();
    (status, found, body["next"].as_str().map(str::to_owned))
}

/// Proves: search finds messages by all their words (whole words, case aside) in one room or
/// across every room the reader is a member of, newest first, in pages chained by `next`;
/// an edited message by its new text, never an event, never a deleted message, never a room
/// the reader is not (or no longer) in; a query without words is a 400.
async fn search_finds_what_was_said_in_the_readers_rooms(system: System) {
    system.room("lobby", false, "alice", &["bob"]).await;
    system.room("attic", true, "alice", &[]).await;
    let mut alice = Agent::online(&system, "alice", json!({"protocol": 5})).await;
    for (room, body) in [
        ("lobby", "Pizza for lunch?"),
        ("attic", "secret pizza stash"),
        ("lobby", "no pizza, sushi"),
        ("lobby", "pizza party friday"),
        ("attic", "the attic pizza oven"),
    ] {
        assert_eq!(publish_rc(&mut alice, room, json!({ "body": body })).await, 0);
        // a millisecond apart at least: across rooms, results come by time
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let (status, found, next) = search(&system, "bob", "/v1/rooms/lobby/search?q=PIZZA&limit=2").await;
    assert_eq!((status, found, next.as_deref()), (200, vec!["lobby/3".into(), "lobby/2".into()], Some("2")));
    let (_, found, next) = search(&system, "bob", "/v1/rooms/lobby/search?q=pizza&limit=2&before=2").await;
    assert_eq!((found, next), (vec!["lobby/1".to_owned()], None));
    assert_eq!(search(&system, "bob", "/v1/rooms/lobby/search?q=pizza%20sushi").await.1, ["lobby/2"], "every word");
    assert!(search(&system, "bob", "/v1/rooms/lobby/search?q=pizz").await.1.is_empty(), "whole words");
    assert_eq!(search(&system, "bob", "/v1/rooms/attic/search?q=pizza").await.0, 404, "not bob's room");

    let everywhere: Vec<String> = ["attic/2", "lobby/3", "lobby/2", "attic/1", "lobby/1"].map(String::from).into();
    let (status, found, next) = search(&system, "alice", "/v1/search?q=pizza&limit=3").await;
    assert_eq!((status, &found[..]), (200, &everywhere[..3]), "newest first across rooms");
    let (_, rest, last) = search(&system, "alice", &format!("/v1/search?q=pizza&before={}", next.unwrap())).await;
    assert_eq!((&rest[..], last), (&everywhere[3..], None));
    assert_eq!(search(&system, "bob", "/v1/search?q=pizza").await.1, ["lobby/3", "lobby/2", "lobby/1"], "bob's rooms");

    let edit = json!({"type": "edit", "target": 1, "body": "Calzone for lunch?"});
    assert_eq!(publish_rc(&mut alice, "lobby", edit).await, 0);
    assert_eq!(publish_rc(&mut alice, "lobby", json!({"type": "delete", "target": 3})).await, 0);
    assert_eq!(search(&system, "bob", "/v1/search?q=pizza").await.1, ["lobby/2"], "edited and deleted ones no more");
    assert_eq!(search(&system, "bob", "/v1/search?q=calzone").await.1, ["lobby/1"], "the message, not its edit");
    for bad in ["", "?q=", "?q=%F0%9F%8E%89", "?q=a%20b%20c%20d%20e%20f%20g%20h%20i", "?q=x&limit=0", "?q=x&before=x"] {
        assert_eq!(search(&system, "bob", &format!("/v1/search{bad}")).await.0, 400, "{bad}");
    }

    let (status, _) = system.call("POST", "/v1/rooms/lobby/leave", Some(&system.token("bob", 60)), None).await;
    assert_eq!(status, 204);
    assert!(search(&system, "bob", "/v1/search?q=pizza").await.1.is_empty(), "never a room bob left");
    assert_eq!(search(&system, "bob", "/v1/rooms/lobby/search?q=pizza").await.0, 403, "public: join to search it");
}

#[tokio::test]
async fn search_finds_what_was_said_in_the_readers_rooms_on_sqlite() {
    search_finds_what_was_said_in_the_readers_rooms(spawn_system().await).await;
}

#[tokio::test]
async fn search_finds_what_was_said_in_the_readers_rooms_on_mongo() {
    let Some(system) = spawn_on_mongo("search").await else { return };
    search_finds_what_was_said_in_the_readers_rooms(system).await;
}
