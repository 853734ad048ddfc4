//! One subscription for all my rooms (`rooms/+/...`) following membership, and presence that
//! reaches peers only (issue 16).

use crate::harness::{next_on, payload, silent_on, spawn_system, spawn_with, Agent, PATIENCE};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

/// Counter of presence messages handed to sessions, on the broker's `/metrics`.
const PRESENCE_DELIVERIES: &str = "roost_presence_deliveries_total";

/// The room of a `rooms/{room}/...` topic, or the user of a `presence/{user}[/...]` one.
fn second_level(topic: &str) -> &str {
    topic.split('/').nth(1).unwrap_or_default()
}

/// Proves: `rooms/+/messages` delivers from each of 150 rooms and nothing from a room the user is
/// not in, and the wildcard counts as one subscription against `mqtt.max_subscriptions`.
#[tokio::test]
async fn a_member_of_150_rooms_follows_all_of_them_on_one_subscription() {
    let system = spawn_with(&[("ROOST_MQTT__MAX_SUBSCRIPTIONS", "2")]).await;
    let rooms: BTreeSet<String> = (0..150).map(|n| format!("r{n:03}")).collect();
    for room in &rooms {
        system.room(room, false, "own", &["ann"]).await;
    }
    system.room("other", false, "own", &[]).await;

    let mut ann = Agent::online(&system, "ann", json!({})).await;
    let granted = ann.subscribe(&[("rooms/+/messages", 1), ("rooms/r000/typing", 0)]).await;
    assert_eq!(granted, vec![1, 0], "the wildcard for 150 rooms is one of the two subscriptions allowed");
    assert_eq!(ann.subscribe(&[("rooms/r001/typing", 0)]).await, vec![0x80], "the cap still holds");

    let mut own = Agent::online(&system, "own", json!({})).await;
    for room in std::iter::once("other").chain(rooms.iter().map(String::as_str)) {
        own.publish(&format!("rooms/{room}/messages"), &format!(r#"{{"body":"to {room}"}}"#), 1).await;
        assert_eq!(own.expect("published").await["rc"], 0, "{room}");
    }

    let mut seen = BTreeSet::new();
    while seen.len() < rooms.len() {
        let message =
            ann.message_on_any(PATIENCE).await.unwrap_or_else(|| panic!("only {} of 150 rooms delivered", seen.len()));
        let topic = message["topic"].as_str().expect("topic");
        let room = second_level(topic).to_owned();
        assert_eq!(topic, format!("rooms/{room}/messages"));
        assert_ne!(room, "other", "a room ann is not in");
        assert_eq!(payload(&message)["room"], room.as_str());
        assert!(seen.insert(room), "each room's message once: {topic}");
    }
    assert_eq!(seen, rooms);
    assert!(ann.message_on_any(Duration::from_millis(500)).await.is_none(), "nothing more, nothing from other");
}

/// Proves: being added, joining, or having a DM opened while subscribed to `rooms/+/messages`
/// delivers that room's next message without a new SUBSCRIBE (and nothing from before).
#[tokio::test]
async fn a_user_added_while_subscribed_receives_the_rooms_next_message() {
    let system = spawn_system().await;
    let alice = system.register("alice").await;
    let bob = system.register("bob").await;
    system.room("late", true, "alice", &[]).await;
    system.room("open", false, "alice", &[]).await;
    let mut lines = system.mosquitto_sub("bob", &["rooms/+/messages"]).await;
    system.mosquitto_pub("alice", &alice, "rooms/late/messages", r#"{"body":"before bob"}"#, 1).await;

    // added by the owner: once bob's inbox says so, the room's next message reaches him
    let (status, body) =
        system.call("POST", "/v1/rooms/late/members", Some(&alice), Some(json!({"user": "bob"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(next_on(&mut lines, "users/bob/inbox").await["type"], "added_to_room");
    let (code, stderr) =
        system.mosquitto_pub("alice", &alice, "rooms/late/messages", r#"{"body":"welcome bob"}"#, 1).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        next_on(&mut lines, "rooms/late/messages").await["body"],
        "welcome bob",
        "no replay from before bob was in"
    );

    // joined a public room
    let (status, body) = system.call("POST", "/v1/rooms/open/join", Some(&bob), None).await;
    assert_eq!(status, 200, "{body}");
    system.mosquitto_pub("alice", &alice, "rooms/open/messages", r#"{"body":"hi joiner"}"#, 1).await;
    assert_eq!(next_on(&mut lines, "rooms/open/messages").await["body"], "hi joiner");

    // a direct-message room opened by the peer
    let (status, dm) = system.call("POST", "/v1/dms", Some(&alice), Some(json!({"user": "bob"}))).await;
    assert_eq!(status, 201, "{dm}");
    let id = dm["id"].as_str().expect("DM id").to_owned();
    assert_eq!(next_on(&mut lines, "users/bob/inbox").await["type"], "new_dm");
    system.mosquitto_pub("alice", &alice, &format!("rooms/{id}/messages"), r#"{"body":"psst"}"#, 1).await;
    assert_eq!(next_on(&mut lines, &format!("rooms/{id}/messages")).await["body"], "psst");
}

/// Proves: removal by the owner and leaving stop wildcard delivery within 1 s, while a member who
/// stays keeps receiving on the same wildcard.
#[tokio::test]
async fn removal_stops_delivery_within_a_second() {
    let system = spawn_system().await;
    system.room("r", true, "alice", &["bob", "carol", "dave"]).await;
    let alice = system.token("alice", 600);
    let mut bob = system.mosquitto_sub("bob", &["rooms/+/messages"]).await;
    let mut carol = system.mosquitto_sub("carol", &["rooms/+/messages"]).await;
    let mut dave = system.mosquitto_sub("dave", &["rooms/+/messages"]).await;
    system.mosquitto_pub("alice", &alice, "rooms/r/messages", r#"{"body":"all here"}"#, 1).await;
    for lines in [&mut bob, &mut carol, &mut dave] {
        assert_eq!(next_on(lines, "rooms/r/messages").await["body"], "all here");
    }

    let (status, body) = system.call("DELETE", "/v1/rooms/r/members/bob", Some(&alice), None).await;
    assert_eq!(status, 204, "{body}");
    let removed = tokio::time::Instant::now();
    let (status, body) = system.call("POST", "/v1/rooms/r/leave", Some(&system.token("dave", 600)), None).await;
    assert_eq!(status, 204, "{body}");
    tokio::time::sleep_until(removed + Duration::from_secs(1)).await;

    let (code, stderr) =
        system.mosquitto_pub("alice", &alice, "rooms/r/messages", r#"{"body":"members only"}"#, 1).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(next_on(&mut carol, "rooms/r/messages").await["body"], "members only");
    tokio::join!(
        silent_on(&mut bob, "rooms/r/messages", Duration::from_secs(1)),
        silent_on(&mut dave, "rooms/r/messages", Duration::from_secs(1)),
    );
}

/// Waits until `watcher` sees `user`'s aggregate reach `status`, asserting that every presence
/// message it gets meanwhile is about one of `peers` (itself included).
async fn presence_until(watcher: &mut Agent, user: &str, status: &str, peers: &[&str]) {
    loop {
        let message = watcher.message_on_any(PATIENCE).await.unwrap_or_else(|| panic!("{user} never {status}"));
        let topic = message["topic"].as_str().expect("topic");
        assert!(peers.contains(&second_level(topic)), "{topic} is not a peer's: {message}");
        if topic == format!("presence/{user}") && payload(&message)["status"] == status {
            return;
        }
    }
}

/// Proves: `presence/+` delivers changes and retained statuses of users sharing a room only, and a
/// change of a user with no peers is handed to no session at all (by the delivery counter).
#[tokio::test]
async fn presence_reaches_peers_only() {
    let system = spawn_system().await;
    system.room("pair", false, "alice", &["bob"]).await;
    system.room("side", false, "carol", &["dave"]).await;
    let watch = [("presence/+", 0), ("presence/+/+", 0)];
    let mut bob = Agent::online(&system, "bob", json!({"client_id": "bob-phone"})).await;
    assert_eq!(bob.subscribe(&watch).await, vec![0, 0]);
    let mut carol = Agent::online(&system, "carol", json!({"client_id": "carol-phone"})).await;
    assert_eq!(carol.subscribe(&watch).await, vec![0, 0]);

    let mut alice = Agent::online(&system, "alice", json!({"client_id": "alice-phone"})).await;
    presence_until(&mut bob, "alice", "online", &["alice", "bob"]).await;
    alice.send(json!({"cmd": "disconnect"})).await;
    presence_until(&mut bob, "alice", "offline", &["alice", "bob"]).await;
    // carol's own peer, dave, comes online after all that: nothing of alice's (or bob's) came first
    let _dave = Agent::online(&system, "dave", json!({"client_id": "dave-phone"})).await;
    presence_until(&mut carol, "dave", "online", &["carol", "dave"]).await;
    while let Some(message) = bob.message_on_any(Duration::from_millis(300)).await {
        assert!(["alice", "bob"].contains(&second_level(message["topic"].as_str().unwrap())), "{message}");
    }

    // the retained replay on SUBSCRIBE is peers only too: dave's status, never alice's
    let mut again = Agent::online(&system, "carol", json!({"client_id": "carol-laptop"})).await;
    assert_eq!(again.subscribe(&watch).await, vec![0, 0]);
    presence_until(&mut again, "dave", "online", &["carol", "dave"]).await;
    while let Some(message) = again.message_on_any(Duration::from_millis(300)).await {
        assert!(["carol", "dave"].contains(&second_level(message["topic"].as_str().unwrap())), "{message}");
    }

    // a user without peers: connecting and leaving hands nothing to any session
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = system.metric(PRESENCE_DELIVERIES).await.expect("the counter is exported");
    assert!(before > 0.0, "the deliveries above were counted");
    let mut loner = Agent::online(&system, "loner", json!({"client_id": "loner-phone"})).await;
    loner.send(json!({"cmd": "disconnect"})).await;
    loner.expect("disconnected").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(system.metric(PRESENCE_DELIVERIES).await, Some(before), "loner's presence reached a session");
}

/// Proves: MQTT 5 subscription identifier and no-local apply to what `rooms/+/messages` expands
/// to, for rooms held at SUBSCRIBE and rooms joined later.
#[tokio::test]
async fn wildcard_deliveries_carry_the_subscription_identifier() {
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob"]).await;
    system.room("later", false, "alice", &[]).await;
    let mut bob = Agent::online(&system, "bob", json!({"protocol": 5})).await;
    let options = json!({"qos": 1, "noLocal": true});
    let properties = json!({"SubscriptionIdentifier": 7});
    bob.send(
        json!({"cmd": "subscribe", "topics": [["rooms/+/messages", 1]], "options": options, "properties": properties}),
    )
    .await;
    assert_eq!(bob.expect("suback").await["codes"], json!([1]));
    // not waiting for the PUBACK: `expect` would skip a message delivered before it
    bob.publish("rooms/lobby/messages", r#"{"body":"my own"}"#, 1).await;

    let mut alice = Agent::online(&system, "alice", json!({"protocol": 5})).await;
    alice.publish("rooms/lobby/messages", r#"{"body":"hello bob"}"#, 1).await;
    assert_eq!(alice.expect("published").await["rc"], 0);
    let message = bob.message_on_any(PATIENCE).await.expect("lobby delivery");
    assert_eq!(message["topic"], "rooms/lobby/messages");
    assert_eq!(payload(&message)["body"], "hello bob", "no-local kept bob's own message from him");
    assert_eq!(message["properties"]["SubscriptionIdentifier"], json!([7]));

    let (status, body) = system.call("POST", "/v1/rooms/later/join", Some(&system.token("bob", 600)), None).await;
    assert_eq!(status, 200, "{body}");
    alice.publish("rooms/later/messages", r#"{"body":"you joined"}"#, 1).await;
    assert_eq!(alice.expect("published").await["rc"], 0);
    let message = bob.message_on("rooms/later/messages", PATIENCE).await.expect("delivery from a room joined later");
    assert_eq!(message["properties"]["SubscriptionIdentifier"], json!([7]));
}
