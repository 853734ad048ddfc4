//! What chat users expect beyond sending (issue 21): replies and mentions, the directory of
//! public rooms.

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
