//! Topic rules enforced at the edge, each attacked.

use crate::harness::{next_on, payload, silent_on, spawn_system, Agent, PATIENCE};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn non_members_cannot_subscribe_or_publish() {
    let system = spawn_system().await;
    system.room("secret", true, "alice", &["bob"]).await;
    let mut eve = Agent::online(&system, "eve", json!({})).await;
    let codes = eve
        .subscribe(&[
            ("rooms/secret/messages", 1),
            ("#", 0),
            ("rooms/+/messages", 0),
            ("$share/x/rooms/+/messages", 0),
            ("rooms/secret/+", 0),
            ("users/bob/inbox", 0),
            ("$SYS/#", 0),
            ("presence/+", 0),
        ])
        .await;
    // rooms/+/messages means "every room I am a member of": granted, and eve is in none
    assert_eq!(codes, vec![128, 128, 0, 128, 128, 128, 128, 0]);

    let mut bob = system.mosquitto_sub("bob", &["rooms/secret/messages"]).await;
    let alice = system.token("alice", 60);
    system.mosquitto_pub("alice", &alice, "rooms/secret/messages", r#"{"body":"members only"}"#, 1).await;
    assert_eq!(next_on(&mut bob, "rooms/secret/messages").await["body"], "members only");
    assert!(eve.message_on("rooms/secret/messages", Duration::from_millis(500)).await.is_none());
    // presence/+ was granted, but delivers only users eve shares a room with: nobody
    let alice_presence = eve.message_on_any(Duration::from_millis(300)).await;
    assert!(alice_presence.as_ref().is_none_or(|m| m["topic"] == "presence/eve"), "{alice_presence:?}");

    // eve's publish into the room is dropped and she is told why
    let mut eve_inbox = system.mosquitto_sub("eve", &[]).await;
    system.mosquitto_pub("eve", &system.token("eve", 60), "rooms/secret/messages", r#"{"body":"let me in"}"#, 1).await;
    assert_eq!(next_on(&mut eve_inbox, "users/eve/inbox").await["code"], "not_member");
    silent_on(&mut bob, "rooms/secret/messages", Duration::from_millis(500)).await;
    assert_eq!(system.history("secret", "alice", "").await.len(), 1);
}

#[tokio::test]
async fn presence_and_server_topics_belong_to_their_owner() {
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let mut alice = Agent::online(&system, "alice", json!({})).await;
    let topics = [("presence/alice/+", 0), ("presence/alice", 0), ("rooms/lobby/+", 0), ("users/alice/inbox", 0)];
    assert_eq!(alice.subscribe(&topics).await, vec![0, 0, 0, 0]);
    let mut bob = Agent::online(&system, "bob", json!({})).await;
    let mut bob_inbox_codes = Vec::new();
    assert_eq!(bob.subscribe(&[("users/bob/inbox", 0)]).await, vec![0]);
    for (topic, body) in [
        ("presence/alice/fake", r#"{"status":"online"}"#),
        ("presence/alice", r#"{"status":"online","devices":9,"last_seen":1}"#),
        ("rooms/lobby/events", r#"{"type":"deleted","room":"lobby","by":"alice","ts":1}"#),
        ("users/alice/inbox", r#"{"type":"phish"}"#),
    ] {
        bob.publish(topic, body, 1).await;
        // the notice may come before or after the PUBACK: both orders are valid MQTT
        let notice = payload(&bob.message_on("users/bob/inbox", PATIENCE).await.expect("bob is told"));
        bob_inbox_codes.push(notice["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(bob_inbox_codes, ["forbidden"; 4]);
    // bob's next publish travels behind the forgeries: everything alice got before it is in hand
    bob.publish("rooms/lobby/typing", r#"{"typing":true}"#, 1).await;
    loop {
        let message = alice.message_on_any(PATIENCE).await.expect("the sentinel arrives");
        let (topic, body) = (message["topic"].as_str().unwrap(), payload(&message));
        if topic == "rooms/lobby/typing" {
            break;
        }
        assert_ne!(topic, "presence/alice/fake");
        assert_ne!(topic, "rooms/lobby/events", "{body}");
        assert_ne!(topic, "users/alice/inbox", "{body}");
        assert_ne!(body["devices"], 9, "forged aggregate delivered: {body}");
    }

    // a will on someone else's presence topic is refused at CONNECT
    let will =
        json!({"client_id": "phone", "will": {"topic": "presence/alice/phone", "payload": "{\"status\":\"offline\"}"}});
    assert_eq!(
        Agent::connect(&system, "bob", &system.token("bob", 60), will).await.1,
        0x87,
        "3.1.1 refusal 0x05, as Paho reports it"
    );
    let own =
        json!({"client_id": "phone", "will": {"topic": "presence/bob/phone", "payload": "{\"status\":\"offline\"}"}});
    assert_eq!(Agent::connect(&system, "bob", &system.token("bob", 60), own).await.1, 0);
}

#[tokio::test]
async fn a_removed_member_stops_receiving_within_a_second() {
    let system = spawn_system().await;
    system.room("secret", true, "alice", &["bob"]).await;
    let mut bob = Agent::online(&system, "bob", json!({})).await;
    assert_eq!(bob.subscribe(&[("rooms/secret/messages", 1)]).await, vec![1]);
    let alice = system.token("alice", 60);
    system.mosquitto_pub("alice", &alice, "rooms/secret/messages", r#"{"body":"before"}"#, 1).await;
    assert!(bob.message_on("rooms/secret/messages", Duration::from_secs(5)).await.is_some());

    let removed = Instant::now();
    let (status, _) = system.call("DELETE", "/v1/rooms/secret/members/bob", Some(&alice), None).await;
    assert_eq!(status, 204);
    system.mosquitto_pub("alice", &alice, "rooms/secret/messages", r#"{"body":"after"}"#, 1).await;
    assert!(removed.elapsed() < Duration::from_secs(1));
    assert!(bob.message_on("rooms/secret/messages", Duration::from_secs(1)).await.is_none());
    // and re-subscribing is refused
    assert_eq!(bob.subscribe(&[("rooms/secret/messages", 1)]).await, vec![128]);
    // an added member can subscribe at once
    system.register("carol").await;
    let mut carol = Agent::online(&system, "carol", json!({})).await;
    let add = json!({"user": "carol"});
    assert_eq!(system.call("POST", "/v1/rooms/secret/members", Some(&alice), Some(add)).await.0, 200);
    assert_eq!(carol.subscribe(&[("rooms/secret/messages", 1)]).await, vec![1]);
}
