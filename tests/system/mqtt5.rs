//! MQTT 5 at the edge, with Paho clients speaking 5 beside 3.1.1 ones on TCP and WebSocket.

use crate::harness::{next_on, payload, spawn_system, spawn_with, Agent, PATIENCE};
use serde_json::json;
use std::time::Duration;

/// rumqttd bug (a): a v5 PUBLISH with properties delivered to a 3.1.1 subscriber hit
/// `unreachable!()` and poisoned the listener. Here 3.1.1 subscribers on TCP and WebSocket get
/// the message without properties, a v5 subscriber on WebSocket gets them, and new connections
/// still work.
#[tokio::test]
async fn v5_properties_never_reach_311_subscribers_and_harm_nobody() {
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob", "carol", "dave"]).await;
    let mut bob_tcp = system.mosquitto_sub("bob", &["rooms/lobby/messages"]).await;
    let mut carol_ws =
        Agent::online(&system, "carol", json!({"transport": "websockets", "port": system.ws_port})).await;
    assert_eq!(carol_ws.subscribe(&[("rooms/lobby/messages", 1)]).await, vec![1]);
    // MQTT 5 over WebSocket too (rumqttd bug (e) refused it)
    let v5_over_ws = json!({"protocol": 5, "transport": "websockets", "port": system.ws_port});
    let mut dave_v5 = Agent::online(&system, "dave", v5_over_ws).await;
    assert_eq!(dave_v5.subscribe(&[("rooms/lobby/messages", 1)]).await, vec![1]);

    let mut alice = Agent::online(&system, "alice", json!({"protocol": 5})).await;
    let properties = json!({"UserProperty": [["trace", "t-1"]], "ContentType": "application/json",
                            "ResponseTopic": "rooms/lobby/messages", "MessageExpiryInterval": 600});
    alice
        .send(json!({"cmd": "publish", "topic": "rooms/lobby/messages", "payload": r#"{"body":"v5 hello"}"#,
                      "qos": 1, "properties": properties}))
        .await;
    assert_eq!(alice.expect("published").await["rc"], 0);

    assert_eq!(next_on(&mut bob_tcp, "rooms/lobby/messages").await["body"], "v5 hello");
    let over_ws = carol_ws.message_on("rooms/lobby/messages", PATIENCE).await.expect("WebSocket delivery");
    assert_eq!(payload(&over_ws)["from"], "alice");
    assert_eq!(over_ws["properties"], json!({}));
    let v5 = dave_v5.message_on("rooms/lobby/messages", PATIENCE).await.expect("v5 delivery");
    assert_eq!(v5["properties"]["UserProperty"], json!([["trace", "t-1"]]));
    assert_eq!(v5["properties"]["ContentType"], "application/json");
    assert!(v5["properties"]["MessageExpiryInterval"].as_i64().is_some_and(|left| (1..=600).contains(&left)));

    // the listeners still take new connections and deliver
    let mut bob_again = system.mosquitto_sub("bob", &["rooms/lobby/messages"]).await;
    alice.publish("rooms/lobby/messages", r#"{"body":"still here"}"#, 1).await;
    assert_eq!(next_on(&mut bob_again, "rooms/lobby/messages").await["body"], "still here");
}

#[tokio::test]
async fn v5_clients_learn_why_with_reason_codes() {
    let system = spawn_system().await;
    system.room("secret", true, "alice", &[]).await;
    let (_, bad_token) = Agent::connect(&system, "eve", "not-a-token", json!({"protocol": 5})).await;
    assert_eq!(bad_token, 0x86);
    let (_, wrong_user) = Agent::connect(&system, "eve", &system.token("alice", 60), json!({"protocol": 5})).await;
    assert_eq!(wrong_user, 0x87);

    let mut eve = Agent::online(&system, "eve", json!({"protocol": 5, "keepalive": 0})).await;
    assert_eq!(eve.subscribe(&[("rooms/secret/messages", 1), ("sensors/#", 0)]).await, vec![0x87, 0x80]);
    eve.publish("rooms/secret/messages", r#"{"body":"let me in"}"#, 1).await;
    assert_eq!(eve.expect("published").await["rc"], 0x87);
    let mut alice = Agent::online(&system, "alice", json!({"protocol": 5})).await;
    alice.publish("rooms/secret/messages", "not json", 1).await;
    assert_eq!(alice.expect("published").await["rc"], 0x99);
    alice.publish("rooms/secret/messages", r#"{"body":"fine"}"#, 1).await;
    assert_eq!(alice.expect("published").await["rc"], 0);
}

#[tokio::test]
async fn v5_connack_announces_the_server_limits() {
    let system = spawn_with(&[("ROOST_MQTT__KEEPALIVE_MAX", "30")]).await;
    let (agent, rc) = Agent::connect(
        &system,
        "alice",
        &system.token("alice", 60),
        json!({"protocol": 5, "client_id": "", "keepalive": 120}),
    )
    .await;
    assert_eq!(rc, 0);
    let connack = agent.connack();
    assert_eq!(connack["properties"]["ServerKeepAlive"], 30);
    assert!(connack["properties"]["AssignedClientIdentifier"].as_str().is_some_and(|id| id.starts_with("auto-")));
    assert_eq!(connack["properties"]["TopicAliasMaximum"], 64);
    assert_eq!(connack["properties"]["ReceiveMaximum"], 256);
}

#[tokio::test]
async fn v5_takeover_and_shutdown_say_why() {
    let mut system = spawn_system().await;
    let mut first = Agent::online(&system, "alice", json!({"protocol": 5, "client_id": "phone"})).await;
    let _second = Agent::online(&system, "alice", json!({"protocol": 5, "client_id": "phone"})).await;
    assert_eq!(first.expect("disconnected").await["rc"], 0x8E);

    let mut other = Agent::online(&system, "bob", json!({"protocol": 5})).await;
    system.stop_and_restart().await;
    assert_eq!(other.expect("disconnected").await["rc"], 0x8B);
}

/// Operator rules open topics outside the chat, to anonymous clients on listeners that allow
/// them; they never open Roost's own topics.
#[tokio::test]
async fn operator_rules_open_other_topics_never_the_chat() {
    let rules = r#"[{effect="deny",access="subscribe",topic="sensors/private"},{effect="allow",access="all",topic="sensors/#"}]"#;
    let system = spawn_with(&[("ROOST_MQTT__ANONYMOUS", r#"["tcp"]"#), ("ROOST_MQTT__RULES", rules)]).await;
    system.room("lobby", false, "alice", &[]).await;
    let anonymous = json!({"protocol": 5, "user": null});
    let (_, over_ws) = Agent::connect(
        &system,
        "",
        "",
        json!({"protocol": 5, "user": null, "transport": "websockets", "port": system.ws_port}),
    )
    .await;
    assert_eq!(over_ws, 0x86, "anonymous access is per listener");

    let mut reader = Agent::online_as(&system, anonymous.clone()).await;
    let codes =
        reader.subscribe(&[("sensors/#", 1), ("sensors/private", 0), ("rooms/lobby/messages", 0), ("#", 0)]).await;
    assert_eq!(codes, vec![1, 0x80, 0x87, 0x80]);
    let mut sensor = Agent::online_as(&system, anonymous).await;
    let alias = json!({"TopicAlias": 3, "UserProperty": [["unit", "C"]]});
    sensor
        .send(json!({"cmd": "publish", "topic": "sensors/1", "payload": "21.5", "qos": 1, "properties": alias}))
        .await;
    assert_eq!(sensor.expect("published").await["rc"], 0);
    // the alias alone now names sensors/1
    sensor
        .send(json!({"cmd": "publish", "topic": "", "payload": "21.7", "qos": 1, "properties": {"TopicAlias": 3}}))
        .await;
    assert_eq!(sensor.expect("published").await["rc"], 0);
    sensor.publish("sensors/private", "hidden", 1).await;
    assert_eq!(sensor.expect("published").await["rc"], 0);
    sensor.publish("rooms/lobby/messages", r#"{"body":"sneak"}"#, 1).await;
    assert_eq!(sensor.expect("published").await["rc"], 0x87);

    let first = reader.message_on("sensors/1", PATIENCE).await.expect("first reading");
    assert_eq!((first["payload"].as_str(), first["qos"].as_i64()), (Some("21.5"), Some(1)));
    assert_eq!(first["properties"]["UserProperty"], json!([["unit", "C"]]));
    let second = reader.message_on_any(PATIENCE).await.expect("second reading");
    assert_eq!((second["topic"].as_str(), second["payload"].as_str()), (Some("sensors/1"), Some("21.7")));
    assert!(reader.message_on_any(Duration::from_millis(500)).await.is_none(), "sensors/private is denied to readers");
}

/// A will outside the chat, with a delay: a reconnect within the delay cancels it, a client
/// that stays away has it published once the delay has passed.
#[tokio::test]
async fn v5_will_delay_is_cancelled_by_resumption() {
    let rules = r#"[{effect="allow",access="all",topic="devices/%u/#"}]"#;
    let system = spawn_with(&[("ROOST_MQTT__RULES", rules)]).await;
    let mut watcher = Agent::online(&system, "alice", json!({"protocol": 5})).await;
    assert_eq!(watcher.subscribe(&[("devices/alice/#", 1)]).await, vec![1]);
    let will = json!({"topic": "devices/alice/state", "payload": "gone", "qos": 1, "retain": false,
                      "properties": {"WillDelayInterval": 2}});
    let device = json!({"protocol": 5, "client_id": "sensor", "clean": false, "will": will,
                        "properties": {"SessionExpiryInterval": 60}});

    Agent::online(&system, "alice", device.clone()).await.kill().await;
    let back = Agent::online(&system, "alice", device).await;
    assert!(watcher.message_on("devices/alice/state", Duration::from_secs(3)).await.is_none(), "resumed in time");

    back.kill().await;
    let started = std::time::Instant::now();
    let will = watcher.message_on("devices/alice/state", Duration::from_secs(5)).await.expect("the will");
    assert_eq!(will["payload"], "gone");
    assert!(started.elapsed() >= Duration::from_millis(1500), "fired after {:?}", started.elapsed());
}

/// Overlapping filters deliver a publish once, with every matching subscription identifier;
/// no-local keeps a client's own publishes from it.
#[tokio::test]
async fn overlapping_filters_deliver_once_and_no_local_holds() {
    let rules = r#"[{effect="allow",access="all",topic="sensors/#"}]"#;
    let system = spawn_with(&[("ROOST_MQTT__RULES", rules)]).await;
    let mut reader = Agent::online(&system, "alice", json!({"protocol": 5})).await;
    for (filter, id) in [("sensors/#", 2), ("sensors/+", 3)] {
        let options = json!({"qos": 1, "noLocal": true});
        let properties = json!({"SubscriptionIdentifier": id});
        reader
            .send(json!({"cmd": "subscribe", "topics": [[filter, 1]], "options": options, "properties": properties}))
            .await;
        assert_eq!(reader.expect("suback").await["codes"], json!([1]));
    }
    reader.publish("sensors/mine", "own", 1).await;
    let mut sensor = Agent::online(&system, "bob", json!({"protocol": 5})).await;
    sensor.publish("sensors/1", "21.5", 1).await;

    let reading = reader.message_on_any(PATIENCE).await.expect("one reading");
    assert_eq!((reading["topic"].as_str(), reading["payload"].as_str()), (Some("sensors/1"), Some("21.5")));
    let mut ids: Vec<i64> = reading["properties"]["SubscriptionIdentifier"]
        .as_array()
        .expect("identifiers")
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [2, 3]);
    assert!(reader.message_on_any(Duration::from_millis(500)).await.is_none(), "no second copy, no own publish");
}
