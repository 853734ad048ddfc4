//! Presence: device statuses, the per-user aggregate, every way a connection can end.

use crate::harness::{payload, spawn_system, Agent, System, PATIENCE};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Waits for the aggregate on `presence/{user}` to reach `status` and returns it with the time
/// it took from `since`.
async fn aggregate(watcher: &mut Agent, user: &str, status: &str, since: Instant) -> (Value, Duration) {
    let topic = format!("presence/{user}");
    loop {
        let message = watcher.message_on(&topic, PATIENCE).await.unwrap_or_else(|| panic!("{user} never {status}"));
        let aggregate = payload(&message);
        if aggregate["status"] == status {
            return (aggregate, since.elapsed());
        }
    }
}

/// alice and bob share a room; alice watches presence.
async fn watched(system: &System) -> Agent {
    system.room("lobby", false, "alice", &["bob"]).await;
    let mut alice = Agent::online(system, "alice", json!({})).await;
    assert_eq!(alice.subscribe(&[("presence/+", 0), ("presence/+/+", 0)]).await, vec![0, 0]);
    alice
}

fn device(client_id: &str) -> Value {
    json!({"client_id": client_id, "will": {"topic": format!("presence/bob/{client_id}"), "payload": "{\"status\":\"offline\"}"}})
}

#[tokio::test]
async fn every_way_of_leaving_ends_offline_within_a_second() {
    let system = spawn_system().await;
    let mut alice = watched(&system).await;
    for ending in ["disconnect", "exit", "kill"] {
        let mut bob = Agent::online(&system, "bob", device("phone")).await;
        let (online, _) = aggregate(&mut alice, "bob", "online", Instant::now()).await;
        assert_eq!(online["devices"], 1);
        let left = Instant::now();
        match ending {
            "disconnect" => bob.send(json!({"cmd": "disconnect"})).await,
            "exit" => bob.send(json!({"cmd": "exit"})).await,
            _ => bob.kill().await,
        }
        let (offline, took) = aggregate(&mut alice, "bob", "offline", left).await;
        assert!(took < Duration::from_secs(1), "{ending}: offline after {took:?}");
        assert_eq!(offline["devices"], 0);
        assert!(offline["last_seen"].as_i64().unwrap() > 0);
        let http = system.presence("bob", "alice").await;
        assert_eq!((http["status"].as_str(), http["devices"].as_i64()), (Some("offline"), Some(0)), "{ending}");
    }
}

#[tokio::test]
async fn a_graceful_stop_stores_when_each_user_was_last_seen() {
    let mut system = spawn_system().await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let _bob = Agent::online(&system, "bob", device("phone")).await;
    // the board marks a device online just after its CONNACK
    let connected = Instant::now();
    while system.presence("bob", "alice").await["status"] != "online" {
        assert!(connected.elapsed() < PATIENCE, "bob never online");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stopping = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // the stop closes bob's connection; the broker's last act stores his offline status
    system.stop_and_restart().await;
    let stored = system.presence("bob", "alice").await;
    assert_eq!(stored["status"], "offline");
    let last_seen = stored["last_seen"].as_i64().unwrap();
    assert!(
        last_seen >= stopping,
        "last seen {last_seen} is when bob connected, not when the broker stopped ({stopping})"
    );
}

#[tokio::test]
async fn a_frozen_client_in_a_busy_room_goes_offline_by_its_keepalive() {
    let system = spawn_system().await;
    let mut alice = watched(&system).await;
    let mut bob = Agent::online(&system, "bob", json!({"client_id": "phone", "keepalive": 2})).await;
    assert_eq!(bob.subscribe(&[("rooms/lobby/messages", 0)]).await, vec![0]);
    aggregate(&mut alice, "bob", "online", Instant::now()).await;
    // bob's last packet: a QoS 1 publish, acknowledged, then silence
    bob.publish("rooms/lobby/typing", r#"{"typing":true}"#, 1).await;
    bob.expect("published").await;
    let frozen = Instant::now();
    bob.send(json!({"cmd": "freeze"})).await;
    bob.expect("frozen").await;
    let busy = tokio::spawn({
        let token = system.token("alice", 60);
        let port = system.mqtt_port;
        async move {
            for n in 0..40 {
                let _ = tokio::process::Command::new("mosquitto_pub")
                    .args(["-p", &port.to_string(), "-u", "alice", "-P", &token, "-t", "rooms/lobby/messages"])
                    .args(["-m", &format!(r#"{{"body":"tick {n}"}}"#)])
                    .output()
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let (_, took) = aggregate(&mut alice, "bob", "offline", frozen).await;
    busy.abort();
    // keepalive 2 s: the edge allows 1.5x = 3 s of silence, timed from the last packet read
    assert!(took < Duration::from_millis(3600), "offline after {took:?}");
    assert!(took >= Duration::from_millis(2500), "offline too early: {took:?}");
}

#[tokio::test]
async fn takeover_closes_the_old_connection_and_presence_stays_right() {
    let system = spawn_system().await;
    let mut alice = watched(&system).await;
    let mut first = Agent::online(&system, "bob", device("phone")).await;
    aggregate(&mut alice, "bob", "online", Instant::now()).await;
    let second = Agent::online(&system, "bob", device("phone")).await;
    first.expect("disconnected").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = system.presence("bob", "alice").await;
    assert_eq!((http["status"].as_str(), http["devices"].as_i64()), (Some("online"), Some(1)));

    // the taken-over connection's end changed nothing; the new one's end counts
    let left = Instant::now();
    second.kill().await;
    let (offline, took) = aggregate(&mut alice, "bob", "offline", left).await;
    assert!(took < Duration::from_secs(1));
    assert_eq!(offline["devices"], 0);
}

#[tokio::test]
async fn two_devices_one_leaves_still_online() {
    let system = spawn_system().await;
    let mut alice = watched(&system).await;
    let phone = Agent::online(&system, "bob", device("phone")).await;
    let _laptop = Agent::online(&system, "bob", device("laptop")).await;
    loop {
        let (aggregate, _) = aggregate(&mut alice, "bob", "online", Instant::now()).await;
        if aggregate["devices"] == 2 {
            break;
        }
    }
    phone.kill().await;
    let device = alice.message_on("presence/bob/phone", PATIENCE).await.expect("phone status");
    assert_eq!(payload(&device)["status"], "offline");
    let (still, _) = aggregate(&mut alice, "bob", "online", Instant::now()).await;
    assert_eq!(still["devices"], 1);
    assert_eq!(system.presence("bob", "alice").await["status"], "online");
}

#[tokio::test]
async fn a_subscriber_receives_all_500_retained_statuses() {
    let system = spawn_system().await;
    let users: Vec<String> = (0..500).map(|n| format!("user{n:03}")).collect();
    system.room("crowd", false, "watcher", &users.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let accounts: Vec<(String, String)> = users.iter().map(|u| (u.clone(), system.token(u, 600))).collect();
    // Paho's select() loop cannot watch file descriptors past 1024: 200 clients per process
    let mut crowds = Vec::new();
    for chunk in accounts.chunks(200) {
        crowds.push(connect_crowd(&system, chunk).await);
    }

    let mut watcher = Agent::online(&system, "watcher", json!({})).await;
    assert_eq!(watcher.subscribe(&[("presence/+", 1)]).await, vec![1]);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 500 {
        let message = watcher
            .message_on_any(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("only {} statuses", seen.len()));
        let topic = message["topic"].as_str().unwrap().to_owned();
        if topic != "presence/watcher" {
            assert_eq!(message["retain"], true, "{topic}");
            assert_eq!(payload(&message)["status"], "online");
            seen.insert(topic);
        }
    }
    drop(crowds);
}

/// A Python process holding one Paho connection per account until its stdin closes.
struct Crowd {
    _process: tokio::process::Child,
    _stdin: tokio::process::ChildStdin,
}

/// Starts a crowd and waits until all its accounts are connected.
async fn connect_crowd(system: &System, accounts: &[(String, String)]) -> Crowd {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/py/crowd.py");
    let mut crowd = tokio::process::Command::new("python3")
        .arg(script)
        .args(["127.0.0.1", &system.mqtt_port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut stdin = crowd.stdin.take().unwrap();
    stdin.write_all(format!("{}\n", json!(accounts)).as_bytes()).await.unwrap();
    let mut lines = BufReader::new(crowd.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(PATIENCE, lines.next_line()).await.expect("crowd connects in time");
    assert_eq!(ready.unwrap(), Some(format!("connected {}", accounts.len())));
    Crowd { _process: crowd, _stdin: stdin }
}
