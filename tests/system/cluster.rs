//! Several nodes: `roost serve` processes sharing a MongoDB-wire server and a NATS server, each
//! named by `cluster.node`. What holds on one node holds across them.

use crate::durability;
use crate::harness::{next_on, payload, silent_on, spawn_node, Agent, MongoServer, NatsServer, System, PATIENCE};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A node's time to live in these tests (seconds).
const TTL: u64 = 3;

/// Nodes sharing one store and one NATS server.
struct Cluster {
    nodes: Vec<System>,
    nats: NatsServer,
    _mongo: MongoServer,
}

/// Boots `count` nodes (`roost serve`); `None` when MongoDB tests are skipped.
async fn cluster(what: &str, count: usize) -> Option<Cluster> {
    cluster_of(what, &vec![false; count], &[]).await
}

/// Boots a node per entry of `split`: `roost serve`, or (true) a split pair; each with the
/// settings `extra` too.
async fn cluster_of(what: &str, split: &[bool], extra: &[(&str, &str)]) -> Option<Cluster> {
    let mongo = MongoServer::start(what).await?;
    let nats = NatsServer::start().await;
    let secret = roost_auth::tokens::random_secret();
    let mut nodes = Vec::new();
    for (n, &split) in split.iter().enumerate() {
        let mut env = vec![
            ("ROOST_STORE__URI".to_owned(), mongo.uri()),
            ("ROOST_CLUSTER__NATS".to_owned(), nats.url()),
            ("ROOST_CLUSTER__NODE".to_owned(), format!("node-{n}")),
            ("ROOST_CLUSTER__NODE_TTL".to_owned(), TTL.to_string()),
        ];
        env.extend(extra.iter().map(|(key, value)| (key.to_string(), value.to_string())));
        nodes.push(spawn_node(&secret, env, split).await);
    }
    Some(Cluster { nodes, nats, _mongo: mongo })
}

/// The next message on `topic` whose payload satisfies `wanted`, within `patience`.
async fn wait_for(agent: &mut Agent, topic: &str, patience: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + patience;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = agent.message_on(topic, left).await.unwrap_or_else(|| panic!("nothing wanted on {topic}"));
        let body = payload(&message);
        if wanted(&body) {
            return body;
        }
    }
}

#[tokio::test]
async fn a_publish_on_one_node_reaches_every_kind_of_subscriber_on_another() {
    let Some(cluster) = cluster("cross-node delivery", 2).await else { return };
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.room("lobby", false, "alice", &["bob"]).await;
    // the events of these joins are still on their way through the outbox
    tokio::time::sleep(Duration::from_millis(500)).await;
    let topics = ["rooms/lobby/messages", "rooms/lobby/typing", "rooms/lobby/receipts", "rooms/lobby/events"];
    let mut bob = b.mosquitto_sub("bob", &topics).await;

    let alice = a.token("alice", 600);
    a.mosquitto_pub("alice", &alice, "rooms/lobby/messages", r#"{"id":"m-1","body":"across"}"#, 1).await;
    let message = next_on(&mut bob, "rooms/lobby/messages").await;
    assert_eq!((message["from"].as_str(), message["seq"].as_i64()), (Some("alice"), Some(1)), "{message}");
    assert_eq!(message["body"], "across");
    assert!(message["ts"].as_i64().unwrap() > 0, "stamped with server time");
    a.mosquitto_pub("alice", &alice, "rooms/lobby/typing", r#"{"typing":true}"#, 0).await;
    assert_eq!(next_on(&mut bob, "rooms/lobby/typing").await["from"], "alice");
    a.mosquitto_pub("alice", &alice, "rooms/lobby/receipts", r#"{"read_seq":1}"#, 0).await;
    assert_eq!(next_on(&mut bob, "rooms/lobby/receipts").await["read_seq"], 1);

    // the API of either node: events and inbox notices reach every node through the outbox
    a.register("carol").await;
    let (status, _) = a.call("POST", "/v1/rooms/lobby/join", Some(&a.token("carol", 600)), None).await;
    assert_eq!(status, 200);
    let event = next_on(&mut bob, "rooms/lobby/events").await;
    assert_eq!(event["user"], "carol", "{event}");
    a.room("backroom", true, "alice", &[]).await;
    a.register("bob").await;
    let added = json!({"user": "bob"});
    assert_eq!(a.call("POST", "/v1/rooms/backroom/members", Some(&alice), Some(added)).await.0, 200);
    let notice = next_on(&mut bob, "users/bob/inbox").await;
    assert_eq!(notice["room"], "backroom", "{notice}");
    // history from either node
    assert_eq!(b.history("lobby", "bob", "").await, vec![message]);
}

/// Publishes `count` QoS 1 messages `{label}-{n}` as `user` through `node`, one client.
async fn publish_lines(node: &System, user: &str, room: &str, label: &str, count: usize) {
    use tokio::io::AsyncWriteExt;
    let lines: String = (0..count).map(|n| format!("{{\"id\":\"{label}-{n}\",\"body\":\"{label} {n}\"}}\n")).collect();
    let mut publisher = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &node.mqtt_port.to_string(), "-u", user, "-P", &node.token(user, 600)])
        .args(["-t", &format!("rooms/{room}/messages"), "-q", "1", "-l"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_pub runs");
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).await.unwrap();
    drop(stdin);
    assert!(publisher.wait().await.unwrap().success());
}

#[tokio::test]
async fn a_split_pair_is_a_node_like_any_other() {
    let Some(cluster) = cluster_of("a split pair as a node", &[false, true], &[]).await else { return };
    let (a, split) = (&cluster.nodes[0], &cluster.nodes[1]);
    // a room made through the split pair's API, in force on the all-in-one node
    split.room("lobby", false, "alice", &["bob"]).await;
    let mut bob = split.mosquitto_sub("bob", &["rooms/lobby/messages"]).await;
    let mut alice = a.mosquitto_sub("alice", &["rooms/lobby/messages"]).await;
    let token = a.token("alice", 600);
    a.mosquitto_pub("alice", &token, "rooms/lobby/messages", r#"{"body":"to the split broker"}"#, 1).await;
    split.mosquitto_pub("bob", &split.token("bob", 600), "rooms/lobby/messages", r#"{"body":"back"}"#, 1).await;
    for lines in [&mut bob, &mut alice] {
        let first = next_on(lines, "rooms/lobby/messages").await;
        let second = next_on(lines, "rooms/lobby/messages").await;
        assert_eq!((first["seq"].as_i64(), second["seq"].as_i64()), (Some(1), Some(2)));
        assert_eq!((first["from"].as_str(), second["from"].as_str()), (Some("alice"), Some("bob")));
    }
    // presence of a user on the all-in-one node, read by the split pair's API from the store
    let _alice_desk = Agent::online(a, "alice", json!({"client_id": "alice-desk"})).await;
    let deadline = Instant::now() + PATIENCE;
    while split.presence("alice", "bob").await["status"] != "online" {
        assert!(Instant::now() < deadline, "the split API sees alice online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_operators_topics_and_wills_reach_every_node() {
    let rules = r#"[{effect="allow",access="all",topic="devices/%u/#"}]"#;
    let Some(cluster) =
        cluster_of("operator topics across nodes", &[false, false], &[("ROOST_MQTT__RULES", rules)]).await
    else {
        return;
    };
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut watcher = Agent::online(b, "alice", json!({"protocol": 5})).await;
    assert_eq!(watcher.subscribe(&[("devices/alice/#", 1)]).await, vec![1]);
    let mut sensor = Agent::online(a, "alice", json!({"protocol": 5, "client_id": "sensor"})).await;
    let temperature = json!({"cmd": "publish", "topic": "devices/alice/temp", "payload": "21.5", "qos": 1,
                             "retain": true, "properties": {"UserProperty": [["unit", "C"]]}});
    sensor.send(temperature).await;
    assert_eq!(sensor.expect("published").await["rc"], 0);
    let reading = watcher.message_on("devices/alice/temp", PATIENCE).await.expect("carried to the other node");
    assert_eq!(reading["payload"], "21.5");
    assert_eq!(reading["properties"]["UserProperty"], json!([["unit", "C"]]), "{reading}");
    // the other node's router keeps it retained, too
    let mut later = Agent::online(b, "alice", json!({"protocol": 5})).await;
    assert_eq!(later.subscribe(&[("devices/alice/temp", 0)]).await, vec![0]);
    let retained = later.message_on("devices/alice/temp", PATIENCE).await.expect("retained on the other node");
    assert_eq!((retained["payload"].as_str(), retained["retain"].as_bool()), (Some("21.5"), Some(true)));
    // and a will on node A fires on node B
    let will = json!({"topic": "devices/alice/state", "payload": "gone", "qos": 1, "retain": false});
    let device = Agent::online(a, "alice", json!({"protocol": 5, "client_id": "probe", "will": will})).await;
    device.kill().await;
    let gone = watcher.message_on("devices/alice/state", PATIENCE).await.expect("the will, on the other node");
    assert_eq!(gone["payload"], "gone");
}

#[tokio::test]
async fn publishers_on_two_nodes_make_one_order_without_repeats() {
    let Some(cluster) = cluster("one order across nodes", 2).await else { return };
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.room("lobby", false, "alice", &["bob"]).await;
    a.room("other", false, "alice", &["bob"]).await;
    let mut on_a = a.mosquitto_sub("alice", &["rooms/lobby/messages"]).await;
    let mut on_b = b.mosquitto_sub("bob", &["rooms/lobby/messages"]).await;
    const EACH: usize = 150;
    tokio::join!(
        publish_lines(a, "alice", "lobby", "a", EACH),
        publish_lines(b, "bob", "lobby", "b", EACH),
        publish_lines(a, "alice", "other", "o", EACH),
    );
    let mut seen = Vec::new();
    for lines in [&mut on_a, &mut on_b] {
        let mut order = Vec::new();
        for _ in 0..2 * EACH {
            let message = next_on(lines, "rooms/lobby/messages").await;
            order.push((message["seq"].as_i64().unwrap(), message["id"].as_str().unwrap().to_owned()));
        }
        seen.push(order);
    }
    assert_eq!(seen[0], seen[1], "subscribers on both nodes see one order");
    let seqs: Vec<i64> = seen[0].iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=2 * EACH as i64).collect::<Vec<_>>(), "seq order, +1 each, no repeat");
    let history = b.history("lobby", "bob", &format!("?after=0&limit={}", 2 * EACH)).await;
    let stored: Vec<(i64, String)> =
        history.iter().map(|m| (m["seq"].as_i64().unwrap(), m["id"].as_str().unwrap().to_owned())).collect();
    assert_eq!(stored, seen[0], "every acknowledged message stored once, as delivered");
    let other = a.history("other", "alice", &format!("?after=0&limit={}", 2 * EACH)).await;
    let other_seqs: Vec<i64> = other.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(other_seqs, (1..=EACH as i64).collect::<Vec<_>>(), "the third room numbers on its own");
}

/// alice on the first node, with messages it acknowledged; bob on the second watches her.
async fn alice_online_on_a_bob_watching_on_b(cluster: &Cluster) -> (Agent, Agent, Vec<Value>) {
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.room("lobby", false, "alice", &["bob"]).await;
    let mut alice = Agent::online(a, "alice", json!({"client_id": "alice-phone", "protocol": 5})).await;
    for n in 0..5 {
        alice.publish("rooms/lobby/messages", &format!(r#"{{"id":"k-{n}","body":"acked {n}"}}"#), 1).await;
        assert_eq!(alice.expect("published").await["rc"], 0);
    }
    let mut bob = Agent::online(b, "bob", json!({"client_id": "bob-laptop"})).await;
    assert_eq!(bob.subscribe(&[("presence/+", 0)]).await, vec![0]);
    let online = wait_for(&mut bob, "presence/alice", PATIENCE, |p| p["status"] == "online").await;
    assert_eq!(online["devices"], 1, "alice on the other node is in bob's replay");
    (alice, bob, b.history("lobby", "bob", "?after=0").await)
}

#[tokio::test]
async fn a_node_killed_takes_its_users_offline_everywhere_and_loses_no_acknowledged_message() {
    let Some(mut cluster) = cluster("a node dies", 2).await else { return };
    let (_alice, mut bob, stored) = alice_online_on_a_bob_watching_on_b(&cluster).await;
    assert_eq!(stored.len(), 5);
    cluster.nodes[0].kill().await;
    let killed = Instant::now();
    let offline =
        wait_for(&mut bob, "presence/alice", Duration::from_secs(TTL + 2), |p| p["status"] == "offline").await;
    assert!(killed.elapsed() < Duration::from_secs(TTL + 2), "offline after {:?}", killed.elapsed());
    assert_eq!(offline["devices"], 0);
    assert!(offline["last_seen"].as_i64().unwrap() > 0);
    let b = &cluster.nodes[1];
    assert_eq!(b.presence("alice", "bob").await["status"], "offline", "over HTTP too");
    let ids: Vec<&str> = stored.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["k-0", "k-1", "k-2", "k-3", "k-4"], "every acknowledged message is in history");
}

#[tokio::test]
async fn a_node_stopped_past_its_time_to_live_is_fenced_and_leaves_no_ghost() {
    let Some(cluster) = cluster("a node stalls", 2).await else { return };
    let (mut alice, mut bob, _) = alice_online_on_a_bob_watching_on_b(&cluster).await;
    let a = &cluster.nodes[0];
    a.signal("STOP").await;
    wait_for(&mut bob, "presence/alice", Duration::from_secs(TTL + 2), |p| p["status"] == "offline").await;
    a.signal("CONT").await;
    let closed = alice.expect("disconnected").await;
    assert_eq!(closed["rc"], 0x8B, "the stalled node closes its connections: {closed}");
    // before Paho reconnects on its own
    alice.kill().await;
    // no ghost: alice stays offline on both nodes once the stalled one is back
    tokio::time::sleep(Duration::from_secs(TTL)).await;
    for node in &cluster.nodes {
        assert_eq!(node.presence("alice", "bob").await["status"], "offline");
    }
    // and it serves again
    let mut again = Agent::online(a, "alice", json!({"client_id": "alice-phone"})).await;
    wait_for(&mut bob, "presence/alice", PATIENCE, |p| p["status"] == "online").await;
    again.send(json!({"cmd": "disconnect"})).await;
}

#[tokio::test]
async fn a_client_id_taken_on_another_node_ends_the_first_connection_and_its_session_moves() {
    let Some(cluster) = cluster("takeover across nodes", 2).await else { return };
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.room("lobby", false, "alice", &["bob"]).await;
    let kept = json!({"client_id": "alice-phone", "protocol": 5, "clean": false, "properties": {"SessionExpiryInterval": 3600}});
    let mut first = Agent::online(a, "alice", kept.clone()).await;
    assert_eq!(first.subscribe(&[("rooms/lobby/messages", 1)]).await, vec![1]);
    let mut bob = Agent::online(b, "bob", json!({})).await;
    assert_eq!(bob.subscribe(&[("presence/+", 0)]).await, vec![0]);
    wait_for(&mut bob, "presence/alice", PATIENCE, |p| p["status"] == "online").await;

    let mut second = Agent::online(b, "alice", kept).await;
    assert_eq!(second.connack()["session_present"], true, "the session moved from the other node");
    let taken = first.expect("disconnected").await;
    assert_eq!(taken["rc"], 0x8E, "session taken over: {taken}");
    first.kill().await;
    bob.publish("rooms/lobby/messages", r#"{"body":"still subscribed?"}"#, 1).await;
    let message = second.message_on("rooms/lobby/messages", PATIENCE).await.expect("its subscription came along");
    assert_eq!(payload(&message)["body"], "still subscribed?");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in &cluster.nodes {
        let presence = node.presence("alice", "bob").await;
        assert_eq!((presence["status"].as_str(), presence["devices"].as_i64()), (Some("online"), Some(1)));
    }
}

#[tokio::test]
async fn removal_and_bot_revocation_through_one_node_apply_on_every_node() {
    let Some(cluster) = cluster("membership across nodes", 2).await else { return };
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.room("lobby", false, "alice", &[]).await;
    // a join answered by node A is in force on node B
    let (status, _) = a.call("POST", "/v1/rooms/lobby/join", Some(&a.token("bob", 600)), None).await;
    assert_eq!(status, 200);
    let mut bob = b.mosquitto_sub("bob", &["rooms/lobby/messages"]).await;
    let alice = a.token("alice", 600);
    a.mosquitto_pub("alice", &alice, "rooms/lobby/messages", r#"{"body":"welcome"}"#, 1).await;
    assert_eq!(next_on(&mut bob, "rooms/lobby/messages").await["body"], "welcome");
    assert_eq!(a.call("DELETE", "/v1/rooms/lobby/members/bob", Some(&alice), None).await.0, 204);
    let removed = Instant::now();
    a.mosquitto_pub("alice", &alice, "rooms/lobby/messages", r#"{"body":"after removal"}"#, 1).await;
    assert!(removed.elapsed() < Duration::from_secs(1));
    silent_on(&mut bob, "rooms/lobby/messages", Duration::from_secs(1)).await;

    let (status, made) =
        a.call("POST", "/v1/bots", Some(&alice), Some(json!({"name": "sensor-1", "rooms": ["lobby"]}))).await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_owned();
    let (mut bot, rc) = Agent::connect(b, "sensor-1", &token, json!({"protocol": 5})).await;
    assert_eq!(rc, 0);
    assert_eq!(a.call("DELETE", "/v1/bots/sensor-1", Some(&alice), None).await.0, 204);
    assert_eq!(bot.expect("disconnected").await["rc"], 0x87, "revoked through A, disconnected on B");
    assert_eq!(Agent::connect(b, "sensor-1", &token, json!({"protocol": 5})).await.1, 0x86);
}

#[tokio::test]
async fn nats_down_for_ten_seconds_loses_no_acknowledged_message_and_presence_comes_back() {
    let Some(mut cluster) = cluster("a NATS outage", 2).await else { return };
    durability::prepare(&cluster.nodes[0]).await;
    // 500 messages a second in all, one retrying publisher on each node
    let senders: Vec<_> = durability::SENDERS
        .iter()
        .zip(&cluster.nodes)
        .map(|(user, node)| durability::start_sender(node, node.mqtt_port, user, 250, 16))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.nats.kill().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    cluster.nats.resume().await;
    let acknowledged = durability::acknowledged(senders).await;
    durability::assert_stored_exactly_once_in_order(&cluster.nodes[1], &acknowledged).await;

    // presence is whole again: a user on one node is online on the other
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let _alice = Agent::online(a, "alice", json!({"client_id": "alice-after"})).await;
    let deadline = Instant::now() + PATIENCE;
    while b.presence("alice", "bob").await["status"] != "online" {
        assert!(Instant::now() < deadline, "presence rebuilt after the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Debian's HAProxy in TCP mode in front of the nodes' MQTT listeners, checking each every
/// 300 ms; killed when dropped.
struct Balancer {
    _process: tokio::process::Child,
    _config: tempfile::NamedTempFile,
    port: u16,
}

impl Balancer {
    async fn start(nodes: &[System]) -> Self {
        use std::io::Write;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(n, node)| format!("    server node-{n} 127.0.0.1:{} check\n", node.mqtt_port))
            .collect();
        let mut config = tempfile::NamedTempFile::new().unwrap();
        write!(
            config,
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\n\
             \n    retries 3\n    option redispatch\n\
             frontend mqtt\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n    default-server inter 300ms fall 1 rise 2\n{servers}"
        )
        .unwrap();
        let process = tokio::process::Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(config.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("haproxy runs (apt-get install haproxy)");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { _process: process, _config: config, port };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("haproxy did not listen on {port}");
    }
}

#[tokio::test]
async fn clients_behind_a_load_balancer_move_to_a_live_node_and_lose_nothing() {
    let Some(mut cluster) = cluster("a node behind HAProxy dies", 2).await else { return };
    durability::prepare(&cluster.nodes[0]).await;
    let balancer = Balancer::start(&cluster.nodes).await;
    let senders: Vec<_> = durability::SENDERS
        .iter()
        .map(|user| durability::start_sender(&cluster.nodes[1], balancer.port, user, 200, 10))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.nodes[0].kill().await;
    let acknowledged = durability::acknowledged(senders).await;
    assert_eq!(acknowledged.len(), 2 * 2000, "every message acknowledged, through the node left");
    durability::assert_stored_exactly_once_in_order(&cluster.nodes[1], &acknowledged).await;
}
