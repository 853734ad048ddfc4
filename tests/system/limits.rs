//! Limits: a connection ends when its token expires; subscriptions, publish and connect rates are capped.

use crate::harness::{churn, payload, spawn_system, spawn_with, Agent, System, PATIENCE};
use serde_json::json;
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_connection_ends_when_its_token_expires_and_a_fresh_token_reconnects() {
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let mut alice = Agent::online(&system, "alice", json!({})).await;
    assert_eq!(alice.subscribe(&[("presence/bob", 0)]).await, vec![0]);

    let connected = Instant::now();
    let (mut bob, rc) = Agent::connect(&system, "bob", &system.token("bob", 2), json!({"client_id": "phone"})).await;
    assert_eq!(rc, 0);
    let online = payload(&alice.message_on("presence/bob", PATIENCE).await.expect("bob online"));
    assert_eq!(online["status"], "online");
    bob.expect("disconnected").await;
    let lived = connected.elapsed();
    assert!(lived <= Duration::from_millis(3500), "the connection outlived its token: {lived:?}");
    let offline = payload(&alice.message_on("presence/bob", PATIENCE).await.expect("bob offline"));
    assert_eq!(offline["status"], "offline");

    let (_bob, rc) = Agent::connect(&system, "bob", &system.token("bob", 600), json!({"client_id": "phone"})).await;
    assert_eq!(rc, 0, "a refreshed token connects again");
}

#[tokio::test]
async fn subscriptions_per_connection_are_capped() {
    let system = spawn_with(&[("ROOST_MQTT__MAX_SUBSCRIPTIONS", "2")]).await;
    system.room("lobby", false, "alice", &[]).await;
    let mut alice = Agent::online(&system, "alice", json!({})).await;
    let granted =
        alice.subscribe(&[("rooms/lobby/messages", 1), ("rooms/lobby/typing", 0), ("rooms/lobby/events", 0)]).await;
    assert_eq!(granted, vec![1, 0, 0x80], "the third subscription is over the cap");
    assert_eq!(alice.subscribe(&[("rooms/lobby/typing", 0)]).await, vec![0], "renewing a held one is fine");
    assert_eq!(alice.subscribe(&[("rooms/lobby/receipts", 0)]).await, vec![0x80]);
}

#[tokio::test]
async fn a_connection_publishing_faster_than_the_limit_is_disconnected_and_others_are_not() {
    let system = spawn_with(&[("ROOST_MQTT__MAX_PUBLISH_RATE", "20")]).await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let mut bob = Agent::online(&system, "bob", json!({})).await;
    assert_eq!(bob.subscribe(&[("rooms/lobby/messages", 0)]).await, vec![0]);
    let mut alice = Agent::online(&system, "alice", json!({})).await;
    for n in 0..100 {
        alice.publish("rooms/lobby/messages", &format!(r#"{{"body":"flood {n}"}}"#), 0).await;
    }
    alice.expect("disconnected").await;

    // bob, well within the limit, keeps chatting
    for n in 0..5 {
        bob.publish("rooms/lobby/messages", &format!(r#"{{"body":"calm {n}"}}"#), 0).await;
    }
    let mut calm = 0;
    while let Some(message) = bob.message_on("rooms/lobby/messages", Duration::from_secs(2)).await {
        calm += usize::from(payload(&message)["body"].as_str().unwrap().starts_with("calm"));
    }
    assert_eq!(calm, 5);
}

#[tokio::test]
async fn connects_beyond_the_connect_rate_are_refused_with_a_reason() {
    let system = spawn_with(&[("ROOST_MQTT__MAX_CONNECT_RATE", "1")]).await;
    let token = system.token("alice", 60);
    let mut codes = Vec::new();
    for _ in 0..6 {
        let (agent, rc) = Agent::connect(&system, "alice", &token, json!({"protocol": 5})).await;
        codes.push(rc);
        agent.kill().await;
    }
    assert_eq!(codes[0], 0, "{codes:?}");
    assert!(codes.contains(&0x9F), "a burst past one CONNECT per second is refused: {codes:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, rc) = Agent::connect(&system, "alice", &token, json!({})).await;
    assert_eq!(rc, 0, "the budget refills");
}

/// rumqttd keeps 10 MiB per filter and drops what a subscriber has not read by then (brief bug g).
#[tokio::test]
async fn a_subscriber_too_slow_for_the_router_is_disconnected_or_counted_never_silently_short() {
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob", "carol"]).await;
    let mut bob = Agent::online(&system, "bob", json!({"protocol": 5})).await;
    assert_eq!(bob.subscribe(&[("rooms/lobby/messages", 1)]).await, vec![1]);
    let mut carol = Agent::online(&system, "carol", json!({})).await;
    assert_eq!(carol.subscribe(&[("rooms/lobby/messages", 0)]).await, vec![0]);
    for reader in [&mut bob, &mut carol] {
        reader.send(json!({"cmd": "freeze"})).await;
        reader.expect("frozen").await;
    }

    // 600 messages of 40 kB: 24 MB through the room while bob and carol read nothing
    let mut alice = Agent::online(&system, "alice", json!({})).await;
    let filler = "x".repeat(40_000);
    for n in 0..600 {
        alice.publish("rooms/lobby/messages", &format!(r#"{{"body":"{n} {filler}"}}"#), 1).await;
    }
    for _ in 0..600 {
        assert_eq!(alice.expect("published").await["rc"], 0);
    }
    for reader in [&mut bob, &mut carol] {
        reader.send(json!({"cmd": "thaw"})).await;
    }

    let told = bob.expect("disconnected").await;
    assert_eq!(told["rc"], 0x97, "the QoS 1 subscriber learns it lost messages: {told}");
    let skipped = system.metric("roost_mqtt_messages_skipped_total").await.expect("skipped messages counted");
    assert!(skipped > 0.0, "{skipped}");

    // carol, at QoS 0, stays connected and gets what comes next
    while carol.message_on("rooms/lobby/messages", Duration::from_secs(2)).await.is_some() {}
    alice.publish("rooms/lobby/messages", r#"{"body":"after"}"#, 1).await;
    let after = carol.message_on("rooms/lobby/messages", PATIENCE).await.expect("carol still subscribed");
    assert_eq!(payload(&after)["body"], Value::from("after"));
}

/// How many link ids the edge has handed to the router.
async fn link_ids(system: &System) -> f64 {
    system.metric("roost_mqtt_router_link_ids").await.expect("link ids recorded")
}

/// rumqttd bug (f): the router keeps a record of every client id it ever saw, and the edge kept
/// persistent sessions until their client id came back.
#[tokio::test]
async fn ended_and_expired_sessions_give_back_what_they_held() {
    let system = spawn_with(&[("ROOST_MQTT__SESSION_EXPIRY_MAX", "5")]).await;
    system.room("lobby", false, "alice", &["bob"]).await;

    // a thousand page loads, each with a client id of its own, cost the router a few link ids
    churn(&system, "bob", 1000, false, &[]).await;
    assert!(link_ids(&system).await <= 10.0);

    // persistent sessions are kept until they expire
    let phone = json!({"client_id": "bob-phone", "clean": false});
    let mut bob = Agent::online(&system, "bob", phone.clone()).await;
    assert_eq!(bob.subscribe(&[("users/bob/inbox", 1)]).await, vec![1]);
    bob.send(json!({"cmd": "disconnect"})).await;
    bob.expect("disconnected").await;
    let bob = Agent::online(&system, "bob", phone.clone()).await;
    assert_eq!(bob.connack()["session_present"], true, "resumed within the expiry");
    bob.kill().await;
    churn(&system, "bob", 200, true, &["rooms/lobby/messages"]).await;
    assert!(system.metric("roost_mqtt_saved_sessions").await >= Some(200.0));
    let issued = link_ids(&system).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(system.metric("roost_mqtt_saved_sessions").await, Some(0.0));

    // a recycled link id carries nothing of its expired session: the router forwards carol
    // nothing of the room the session before her subscribed to
    let mut carol = Agent::online(&system, "carol", json!({"client_id": "carol-phone", "clean": false})).await;
    system
        .mosquitto_pub("alice", &system.token("alice", 60), "rooms/lobby/messages", r#"{"body":"members only"}"#, 1)
        .await;
    assert!(carol.message_on_any(Duration::from_secs(2)).await.is_none(), "a recycled link id leaked a subscription");
    assert_eq!(system.metric("roost_mqtt_unheld_forwards_total").await, None, "the router forwarded nothing");
    let bob = Agent::online(&system, "bob", phone).await;
    assert_eq!(bob.connack()["session_present"], false, "3.1.1 persistent sessions end after session_expiry_max");
    churn(&system, "carol", 200, true, &[]).await;
    assert!(link_ids(&system).await <= issued + 2.0);

    // an MQTT 5 client asking for longer is told what it got
    let long = json!({"protocol": 5, "client_id": "bob-tablet", "clean": false, "properties": {"SessionExpiryInterval": 3600}});
    let tablet = Agent::online(&system, "bob", long).await;
    assert_eq!(tablet.connack()["properties"]["SessionExpiryInterval"], 5);
}
