//! The split deployment: `roost broker` and `roost history` as two processes sharing MongoDB.

use crate::harness::{next_on, silent_on, spawn_split, Agent, System, PATIENCE};
use serde_json::json;
use std::time::{Duration, Instant};

/// How soon a membership change made over HTTP must reach the broker.
const MEMBERSHIP_PROPAGATION: Duration = Duration::from_secs(1);

#[tokio::test]
async fn split_processes_chat_propagate_membership_and_serve_history() {
    let Some(system) = spawn_split("the split deployment test").await else { return };
    system.register("alice").await;
    system.register("bob").await;
    system.room("lobby", false, "alice", &[]).await;
    // a second shared room keeps bob's presence visible to alice after his removal from lobby
    system.room("annex", false, "alice", &["bob"]).await;
    let mut alice = system.mosquitto_sub("alice", &["rooms/lobby/messages", "rooms/lobby/events"]).await;

    // bob joins over HTTP (history process); the broker learns it through the store's outbox
    let joined_at = Instant::now();
    let (status, body) = system.call("POST", "/v1/rooms/lobby/join", Some(&system.token("bob", 60)), None).await;
    assert_eq!(status, 200, "{body}");
    let event = next_on(&mut alice, "rooms/lobby/events").await;
    assert_eq!((event["type"].as_str(), event["user"].as_str()), (Some("joined"), Some("bob")));
    assert!(joined_at.elapsed() < MEMBERSHIP_PROPAGATION, "join reached the broker in {:?}", joined_at.elapsed());

    let mut bob = Agent::online(&system, "bob", json!({"client_id": "phone"})).await;
    assert_eq!(bob.subscribe(&[("rooms/lobby/messages", 1)]).await, vec![1], "bob is a member at the broker");
    bob.publish("rooms/lobby/messages", r#"{"id":"b1","body":"hi from bob"}"#, 1).await;
    bob.expect("published").await;
    let live = next_on(&mut alice, "rooms/lobby/messages").await;
    assert_eq!((live["from"].as_str(), live["seq"].as_i64()), (Some("bob"), Some(1)));
    assert_eq!(
        system.history("lobby", "alice", "").await,
        vec![live],
        "the history process serves what the broker stored"
    );

    // presence is written by the broker and served by the history process
    let online = wait_for_presence(&system, "bob", "online").await;
    assert_eq!(online["devices"], 1);

    // removal cuts bob off at the broker within the propagation bound
    let removed_at = Instant::now();
    let (status, body) =
        system.call("DELETE", "/v1/rooms/lobby/members/bob", Some(&system.token("alice", 60)), None).await;
    assert_eq!(status, 204, "{body}");
    let event = next_on(&mut alice, "rooms/lobby/events").await;
    assert_eq!((event["type"].as_str(), event["user"].as_str()), (Some("removed"), Some("bob")));
    assert!(removed_at.elapsed() < MEMBERSHIP_PROPAGATION, "removal reached the broker in {:?}", removed_at.elapsed());
    system.mosquitto_pub("alice", &system.token("alice", 60), "rooms/lobby/messages", r#"{"body":"secret"}"#, 1).await;
    assert_eq!(next_on(&mut alice, "rooms/lobby/messages").await["body"], "secret");
    let leaked = bob.message_on("rooms/lobby/messages", Duration::from_millis(500)).await;
    assert!(leaked.as_ref().is_none_or(|m| !m["payload"].as_str().unwrap().contains("secret")), "removed: {leaked:?}");
    bob.publish("rooms/lobby/messages", r#"{"body":"still here?"}"#, 1).await;
    silent_on(&mut alice, "rooms/lobby/messages", Duration::from_millis(500)).await;

    bob.kill().await;
    let offline = wait_for_presence(&system, "bob", "offline").await;
    assert!(offline["last_seen"].as_i64().unwrap() >= online["last_seen"].as_i64().unwrap());
}

/// Polls `user`'s presence over HTTP until it reads `status`.
async fn wait_for_presence(system: &System, user: &str, status: &str) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let presence = system.presence(user, "alice").await;
        if presence["status"] == status {
            return presence;
        }
        assert!(Instant::now() < deadline, "{user} never became {status}: {presence}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
