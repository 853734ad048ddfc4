//! Room messages: stamping, delivery, history, bad payloads, restarts, WebSocket.

use crate::harness::{next_on, payload, silent_on, spawn_system, spawn_with, Agent, PATIENCE};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn members_receive_the_stamped_envelope_and_history_returns_it() {
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let mut bob = system.mosquitto_sub("bob", &["rooms/lobby/messages"]).await;

    let forged = r#"{"id":"m-1","body":"hello bob","from":"mallory","seq":999,"ts":1}"#;
    let (code, stderr) =
        system.mosquitto_pub("alice", &system.token("alice", 60), "rooms/lobby/messages", forged, 1).await;
    assert_eq!(code, 0, "{stderr}");
    let live = next_on(&mut bob, "rooms/lobby/messages").await;
    assert_eq!(live["from"], "alice", "the sender is the authenticated user");
    assert_eq!(live["seq"], 1);
    assert_eq!(live["room"], "lobby");
    assert_eq!(live["id"], "m-1");
    assert_eq!(live["body"], "hello bob");
    assert!(live["ts"].as_i64().unwrap() > 1_700_000_000_000, "server time in ms");

    let second = r#"{"body":"again","reply_to":1}"#;
    system.mosquitto_pub("alice", &system.token("alice", 60), "rooms/lobby/messages", second, 1).await;
    let live2 = next_on(&mut bob, "rooms/lobby/messages").await;
    assert_eq!(live2["seq"], 2);
    assert_eq!(live2["reply_to"], 1);
    // history shows a reply with the message it answers
    let mut listed2 = live2.clone();
    listed2["quote"] = json!({"seq": 1, "from": "alice", "body": "hello bob"});

    // QoS 1 PUBACK means stored: history has both, exactly as delivered
    assert_eq!(system.history("lobby", "bob", "").await, vec![listed2.clone(), live.clone()]);
    assert_eq!(system.history("lobby", "bob", "?after=0").await, vec![live.clone(), listed2.clone()]);
    assert_eq!(system.history("lobby", "bob", "?before=2").await, vec![live]);
    assert_eq!(system.history("lobby", "bob", "?after=1&limit=5").await, vec![listed2]);
}

#[tokio::test]
async fn a_retried_message_keeps_its_number_and_is_delivered_once() {
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let mut bob = system.mosquitto_sub("bob", &["rooms/lobby/messages"]).await;
    let mut alice = Agent::online(&system, "alice", json!({"protocol": 5})).await;
    // the same client id twice (a retry after a lost PUBACK, from a fresh client), then the next
    for body in [r#"{"id":"c-1","body":"one"}"#, r#"{"id":"c-1","body":"one"}"#, r#"{"id":"c-2","body":"two"}"#] {
        alice.publish("rooms/lobby/messages", body, 1).await;
        assert_eq!(alice.expect("published").await["rc"], 0, "acknowledged: stored");
    }
    let one = next_on(&mut bob, "rooms/lobby/messages").await;
    let two = next_on(&mut bob, "rooms/lobby/messages").await;
    assert_eq!((one["id"].as_str(), two["id"].as_str()), (Some("c-1"), Some("c-2")), "delivered once each");
    assert_eq!(two["seq"].as_i64(), one["seq"].as_i64().map(|seq| seq + 1), "the retry took no number");
    assert_eq!(system.history("lobby", "bob", "?after=0").await, vec![one, two]);
}

#[tokio::test]
async fn invalid_and_oversized_payloads_are_neither_delivered_nor_stored() {
    let system = spawn_with(&[("ROOST_MQTT__MAX_PAYLOAD", "1024")]).await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let mut bob = system.mosquitto_sub("bob", &["rooms/lobby/#", "rooms/lobby/messages"]).await;
    let mut alice = system.mosquitto_sub("alice", &[]).await;
    let token = system.token("alice", 60);

    let oversized = json!({"body": "x".repeat(2000)}).to_string();
    for (bad, code) in [
        ("not json", "invalid_payload"),
        (r#"{"body":""}"#, "empty_message"),
        (oversized.as_str(), "payload_too_large"),
    ] {
        system.mosquitto_pub("alice", &token, "rooms/lobby/messages", bad, 1).await;
        let notice = next_on(&mut alice, "users/alice/inbox").await;
        assert_eq!(notice["type"], "rejected");
        assert_eq!(notice["code"], code, "{notice}");
        assert_eq!(notice["topic"], "rooms/lobby/messages");
    }
    system.mosquitto_pub("alice", &token, "rooms/lobby/typing", r#"{"typing":"yes"}"#, 0).await;
    assert_eq!(next_on(&mut alice, "users/alice/inbox").await["code"], "invalid_payload");
    silent_on(&mut bob, "rooms/lobby/messages", Duration::from_millis(500)).await;
    assert!(system.history("lobby", "bob", "").await.is_empty());

    // the connection and the room keep working
    system.mosquitto_pub("alice", &token, "rooms/lobby/messages", r#"{"body":"fine"}"#, 1).await;
    assert_eq!(next_on(&mut bob, "rooms/lobby/messages").await["seq"], 1);
}

#[tokio::test]
async fn typing_and_receipts_are_stamped() {
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let mut bob = system.mosquitto_sub("bob", &["rooms/lobby/typing", "rooms/lobby/receipts"]).await;
    let token = system.token("alice", 60);
    system.mosquitto_pub("alice", &token, "rooms/lobby/typing", r#"{"typing":true,"from":"eve"}"#, 0).await;
    let typing = next_on(&mut bob, "rooms/lobby/typing").await;
    assert_eq!((typing["from"].as_str(), typing["typing"].as_bool()), (Some("alice"), Some(true)));
    system.mosquitto_pub("alice", &token, "rooms/lobby/receipts", r#"{"read_seq":3}"#, 1).await;
    let receipt = next_on(&mut bob, "rooms/lobby/receipts").await;
    assert_eq!((receipt["from"].as_str(), receipt["read_seq"].as_i64()), (Some("alice"), Some(3)));
}

#[tokio::test]
async fn unread_counts_others_messages_after_the_last_receipt() {
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let (alice, bob) = (system.token("alice", 60), system.token("bob", 60));
    for (user, token, body) in
        [("bob", &bob, "one"), ("bob", &bob, "two"), ("bob", &bob, "three"), ("alice", &alice, "mine")]
    {
        let (code, _) =
            system.mosquitto_pub(user, token, "rooms/lobby/messages", &format!(r#"{{"body":"{body}"}}"#), 1).await;
        assert_eq!(code, 0);
    }
    let unread = || async { system.call("GET", "/v1/rooms/lobby/unread", Some(&alice), None).await };
    assert_eq!(unread().await, (200, json!({"last_read": null, "unread": 3, "capped": false})));

    system.mosquitto_pub("alice", &alice, "rooms/lobby/receipts", r#"{"read_seq":2}"#, 1).await;
    let deadline = Instant::now() + PATIENCE;
    while unread().await.1["last_read"] != 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(unread().await, (200, json!({"last_read": 2, "unread": 1, "capped": false})), "seq 3 is bob's, 4 hers");
    system.register("carol").await;
    let carol = system.token("carol", 60);
    assert_eq!(system.call("GET", "/v1/rooms/lobby/unread", Some(&carol), None).await.0, 403, "members only");
}

#[tokio::test]
async fn sequence_and_history_survive_a_crash() {
    let mut system = spawn_system().await;
    system.room("lobby", false, "alice", &[]).await;
    let token = system.token("alice", 600);
    for n in 0..3 {
        let (code, _) =
            system.mosquitto_pub("alice", &token, "rooms/lobby/messages", &format!(r#"{{"body":"{n}"}}"#), 1).await;
        assert_eq!(code, 0);
    }
    let before = system.history("lobby", "alice", "").await;
    assert_eq!(before.len(), 3);

    system.crash_and_restart().await;
    assert_eq!(system.history("lobby", "alice", "").await, before, "history intact after kill -9");
    let mut alice = system.mosquitto_sub("alice", &["rooms/lobby/messages"]).await;
    system.mosquitto_pub("alice", &token, "rooms/lobby/messages", r#"{"body":"after"}"#, 1).await;
    let after = next_on(&mut alice, "rooms/lobby/messages").await;
    assert!(after["seq"].as_i64().unwrap() > 3, "seq never goes back: {after}");
    assert_eq!(system.history("lobby", "alice", "?limit=1").await, vec![after]);
}

#[tokio::test]
async fn sigterm_flushes_accepted_messages_and_numbering_goes_on() {
    let mut system = spawn_system().await;
    system.room("lobby", false, "alice", &[]).await;
    let lines: String = (0..300).map(|n| format!("{{\"body\":\"burst {n}\"}}\n")).collect();
    let mut publisher = tokio::process::Command::new("mosquitto_pub")
        .args(["-p", &system.mqtt_port.to_string(), "-u", "alice", "-P", &system.token("alice", 60)])
        .args(["-t", "rooms/lobby/messages", "-q", "0", "-l"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_pub runs");
    let mut stdin = publisher.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, lines.as_bytes()).await.unwrap();
    drop(stdin);
    assert!(publisher.wait().await.unwrap().success());

    system.stop_and_restart().await;
    let stored = system.history("lobby", "alice", "?after=0&limit=500").await;
    let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>(), "every QoS 0 message published before SIGTERM is stored");
    let token = system.token("alice", 60);
    system.mosquitto_pub("alice", &token, "rooms/lobby/messages", r#"{"body":"after the restart"}"#, 1).await;
    let next = system.history("lobby", "alice", "?limit=1").await;
    assert_eq!(next[0]["seq"], 301, "a graceful restart goes on from the last number used, no jump");
}

#[tokio::test]
async fn websocket_carries_the_same_flow() {
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let ws = json!({"transport": "websockets", "port": system.ws_port});
    let mut bob = Agent::online(&system, "bob", ws.clone()).await;
    assert_eq!(bob.subscribe(&[("rooms/lobby/messages", 1), ("#", 0)]).await, vec![1, 128]);
    let mut alice = Agent::online(&system, "alice", ws).await;
    alice.publish("rooms/lobby/messages", r#"{"body":"over websocket"}"#, 1).await;
    alice.expect("published").await;
    let message = bob.message_on("rooms/lobby/messages", PATIENCE).await.expect("delivered over WebSocket");
    let envelope = payload(&message);
    assert_eq!((envelope["from"].as_str(), envelope["seq"].as_i64()), (Some("alice"), Some(1)));
    assert_eq!(system.history("lobby", "bob", "").await, vec![envelope]);
}

#[tokio::test]
async fn garbage_on_the_wire_harms_nobody() {
    use tokio::io::AsyncWriteExt;
    let system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let mut bob = system.mosquitto_sub("bob", &["rooms/lobby/messages"]).await;
    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\n\r\n",
        &[0x10, 0xff, 0xff, 0xff, 0xff, 0x01],
        &[0x10, 0x0c, 0x00, 0x04, b'M', b'Q'],
        &[0x30, 0x05, 0x00, 0x01, b'a', b'x', b'y'],
    ];
    for bytes in garbage {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", system.mqtt_port)).await.unwrap();
        socket.write_all(bytes).await.unwrap();
    }
    let (code, stderr) = system
        .mosquitto_pub("alice", &system.token("alice", 60), "rooms/lobby/messages", r#"{"body":"still here"}"#, 1)
        .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(next_on(&mut bob, "rooms/lobby/messages").await["body"], "still here");
}

#[tokio::test]
async fn retention_keeps_the_newest_messages_of_each_room() {
    let system = spawn_with(&[("ROOST_RETENTION__MAX_MESSAGES", "3"), ("ROOST_RETENTION__INTERVAL", "1")]).await;
    system.room("lobby", false, "alice", &[]).await;
    let token = system.token("alice", 60);
    for n in 1..=5 {
        let (code, _) =
            system.mosquitto_pub("alice", &token, "rooms/lobby/messages", &format!(r#"{{"body":"{n}"}}"#), 1).await;
        assert_eq!(code, 0);
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let seqs: Vec<i64> =
            system.history("lobby", "alice", "?after=0").await.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        if seqs == [3, 4, 5] {
            break;
        }
        assert_eq!(seqs, [1, 2, 3, 4, 5], "before pruning everything is there; after, the newest three");
        assert!(std::time::Instant::now() < deadline, "retention never pruned: {seqs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
