//! Push notifications: the VAPID key, devices registered and replaced, endpoints that would
//! point the server at its own network refused, per-room levels, and delivery to stand-ins for
//! Web Push, FCM and APNs that check what the real services check
//! (`tests/system/py/push_services.py`: VAPID verified, payloads decrypted as a browser does).

use crate::harness::{spawn_on_mongo_with, spawn_with, Agent, System, PATIENCE};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The push services' stand-ins, in a Python process of their own; killed when dropped.
struct PushServices {
    _child: Child,
    http: String,
    apns: String,
    keys: tempfile::TempDir,
    client: reqwest::Client,
}

impl PushServices {
    async fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/py/push_services.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (pip install -r tests/system/py/requirements.txt)");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::time::timeout(PATIENCE, BufReader::new(stdout).lines().next_line())
            .await
            .expect("the push services start in time")
            .expect("readable")
            .expect("a ready line");
        let port = |name: &str| {
            line.split_whitespace().find_map(|f| f.strip_prefix(name)).unwrap_or_else(|| panic!("{name} in {line}"))
        };
        Self {
            http: format!("http://127.0.0.1:{}", port("webpush=")),
            apns: format!("http://127.0.0.1:{}", port("apns=")),
            _child: child,
            keys: tempfile::tempdir().expect("temp dir"),
            client: reqwest::Client::new(),
        }
    }

    async fn control(&self, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_control/{path}", self.http);
        let request = match body {
            Some(body) => self.client.post(url).json(&body),
            None => self.client.get(url),
        };
        let response = request.send().await.expect("push services answer");
        response.json().await.unwrap_or(Value::Null)
    }

    /// The settings that point Roost at the stand-ins, with the key files they hand out.
    async fn settings(&self, coalesce_ms: &str) -> Vec<(String, String)> {
        let account = self.keys.path().join("fcm.json");
        std::fs::write(&account, self.control("fcm", None).await.to_string()).unwrap();
        let apns = self.control("apns", None).await;
        let key = self.keys.path().join("apns.p8");
        std::fs::write(&key, apns["key"].as_str().unwrap()).unwrap();
        [
            ("ROOST_PUSH__WEBPUSH__ALLOW_INSECURE_LOOPBACK", "true".into()),
            ("ROOST_PUSH__COALESCE_MS", coalesce_ms.into()),
            ("ROOST_PUSH__FCM__SERVICE_ACCOUNT", account.display().to_string()),
            ("ROOST_PUSH__FCM__ENDPOINT", self.http.clone()),
            ("ROOST_PUSH__APNS__KEY", key.display().to_string()),
            ("ROOST_PUSH__APNS__KEY_ID", apns["key_id"].as_str().unwrap().into()),
            ("ROOST_PUSH__APNS__TEAM_ID", apns["team_id"].as_str().unwrap().into()),
            ("ROOST_PUSH__APNS__TOPIC", apns["topic"].as_str().unwrap().into()),
            ("ROOST_PUSH__APNS__ENDPOINT", self.apns.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Tells the stand-in which VAPID key Roost signs with.
    async fn trust(&self, system: &System) {
        let (_, config) = system.call("GET", "/v1/client-config", None, None).await;
        self.control("vapid", Some(json!({"key": config["push"]["webpush_vapid_key"]}))).await;
    }

    /// A browser's new push subscription: its id at the stand-in, and its JSON.
    async fn subscribe(&self) -> (String, Value) {
        let subscription = self.control("subscribe", Some(json!({}))).await;
        let id = subscription["endpoint"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
        (id, subscription)
    }

    /// Web Push requests that reached `subscription`.
    async fn webpushes(&self, subscription: &str) -> Vec<Value> {
        let received = self.control("received", None).await;
        assert_eq!(received["errors"], json!([]), "every request passed the services' checks");
        received["webpush"].as_array().unwrap().iter().filter(|p| p["subscription"] == subscription).cloned().collect()
    }

    /// Waits until `subscription` has received `count` requests, then as long again as the
    /// burst window for any more, and returns them all.
    async fn webpushes_settled(&self, subscription: &str, count: usize) -> Vec<Value> {
        self.webpushes_within(subscription, count, PATIENCE).await
    }

    async fn webpushes_within(&self, subscription: &str, count: usize, patience: Duration) -> Vec<Value> {
        let deadline = Instant::now() + patience;
        while self.webpushes(subscription).await.len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        self.webpushes(subscription).await
    }
}

/// Starts the stand-ins and a Roost pointed at them.
async fn push_system(coalesce_ms: &str) -> (PushServices, System) {
    let services = PushServices::start().await;
    let settings = services.settings(coalesce_ms).await;
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let system = spawn_with(&env).await;
    services.trust(&system).await;
    (services, system)
}

async fn register_subscription(system: &System, user: &str, device: &str, subscription: Value) {
    let registration = json!({"device": device, "kind": "webpush", "subscription": subscription});
    let (status, body) = register(system, user, registration).await;
    assert_eq!(status, 201, "{body}");
}

async fn set_level(system: &System, user: &str, setting: Value) -> u16 {
    system.call("PUT", "/v1/rooms/lobby/notifications", Some(&system.token(user, 600)), Some(setting)).await.0
}

/// The names of `user`'s registered devices.
async fn devices_of(system: &System, user: &str) -> Vec<String> {
    let (_, listed) = system.call("GET", "/v1/push/devices", Some(&system.token(user, 600)), None).await;
    listed["devices"].as_array().unwrap().iter().map(|d| d["device"].as_str().unwrap().to_owned()).collect()
}

/// Publishes `bodies` as `user` over one connection and waits for every PUBACK (stored).
async fn say(system: &System, user: &str, room: &str, bodies: &[&str]) {
    let mut agent = Agent::online(system, user, json!({"protocol": 5})).await;
    for body in bodies {
        agent.publish(&format!("rooms/{room}/messages"), &json!({"body": body}).to_string(), 1).await;
    }
    for _ in bodies {
        assert_eq!(agent.expect("published").await["rc"], 0);
    }
    agent.kill().await;
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    bytes
        .chunks(3)
        .flat_map(|chunk| {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            (0..=chunk.len()).map(move |i| ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char)
        })
        .collect()
}

fn webpush(device: &str, endpoint: &str) -> Value {
    let mut p256dh = vec![4u8];
    p256dh.extend((1..=64).map(|n| n as u8));
    json!({"device": device, "kind": "webpush",
           "subscription": {"endpoint": endpoint, "keys": {"p256dh": base64url(&p256dh), "auth": base64url(&[7; 16])}}})
}

async fn register(system: &System, user: &str, registration: Value) -> (u16, Value) {
    system.call("POST", "/v1/push/devices", Some(&system.token(user, 600)), Some(registration)).await
}

/// Proves: the client config carries the VAPID public key, kept across restarts; a device is
/// registered once per (user, device) and a new token replaces the old; only its user lists and
/// deletes it; a revoked sign-in takes the user's registrations with it.
#[tokio::test]
async fn devices_register_once_each_and_the_vapid_key_stays() {
    let mut system = spawn_with(&[]).await;
    let (_, config) = system.call("GET", "/v1/client-config", None, None).await;
    let key = config["push"]["webpush_vapid_key"].as_str().expect("a VAPID key").to_owned();
    assert_eq!(key.len(), 87, "65 bytes, base64url: {key}");
    assert!(key.starts_with('B'), "an uncompressed point (0x04)");

    let (status, browser) = register(&system, "alice", webpush("laptop", "https://8.8.8.8/push/abc")).await;
    assert_eq!(status, 201, "{browser}");
    assert_eq!(
        (browser["kind"].as_str(), browser["endpoint"].as_str()),
        (Some("webpush"), Some("https://8.8.8.8/push/abc"))
    );
    let phone = |token: &str| json!({"device": "phone", "kind": "fcm", "token": token});
    assert_eq!(register(&system, "alice", phone("old-token")).await.0, 201);
    let (_, rotated) = register(&system, "alice", phone("new-token")).await;
    let alice = system.token("alice", 600);
    let (_, listed) = system.call("GET", "/v1/push/devices", Some(&alice), None).await;
    let devices = listed["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 2, "one registration per device: {listed}");
    assert_eq!(devices[1]["token"], "new-token");

    let path = format!("/v1/push/devices/{}", rotated["id"].as_str().unwrap());
    assert_eq!(system.call("DELETE", &path, Some(&system.token("bob", 600)), None).await.0, 404, "not bob's");
    assert_eq!(system.call("DELETE", &path, Some(&alice), None).await.0, 204);
    assert_eq!(system.call("DELETE", &path, Some(&alice), None).await.0, 404);
    let (_, bobs) = system.call("GET", "/v1/push/devices", Some(&system.token("bob", 600)), None).await;
    assert_eq!(bobs, json!({"devices": []}));

    system.stop_and_restart().await;
    let (_, config) = system.call("GET", "/v1/client-config", None, None).await;
    assert_eq!(config["push"]["webpush_vapid_key"], key.as_str(), "kept in the data dir");

    // a refresh token replayed: the sign-in is revoked, and with it every registration of the
    // user, since whoever replayed it could have registered a device of theirs
    let credentials = json!({"username": "erin", "password": "correct horse battery"});
    assert_eq!(system.call("POST", "/v1/auth/register", None, Some(credentials.clone())).await.0, 201);
    let (_, tokens) = system.call("POST", "/v1/auth/login", None, Some(credentials)).await;
    let erin = tokens["access_token"].as_str().unwrap().to_owned();
    let phone = json!({"device": "phone", "kind": "fcm", "token": "t"});
    assert_eq!(system.call("POST", "/v1/push/devices", Some(&erin), Some(phone)).await.0, 201);
    let refresh = json!({"refresh_token": tokens["refresh_token"]});
    assert_eq!(system.call("POST", "/v1/auth/refresh", None, Some(refresh.clone())).await.0, 200);
    assert_eq!(system.call("POST", "/v1/auth/refresh", None, Some(refresh)).await.0, 401, "replayed");
    assert!(devices_of(&system, "erin").await.is_empty(), "forgotten with the sign-in");
}

/// Proves: Web Push endpoints that are not https, or resolve to loopback, private, link-local or
/// metadata addresses, are refused by default; malformed keys and tokens are refused; the test
/// switch admits a local push service only.
#[tokio::test]
async fn endpoints_into_the_servers_own_network_are_refused() {
    let system = spawn_with(&[]).await;
    for endpoint in [
        "http://8.8.8.8/push",
        "https://127.0.0.1/push",
        "http://127.0.0.1:9/push",
        "https://10.0.0.1/push",
        "https://192.168.0.10/push",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/push",
        "https://localhost/push",
        "https://user:pass@8.8.8.8/push",
        "file:///etc/passwd",
    ] {
        let (status, body) = register(&system, "alice", webpush("laptop", endpoint)).await;
        assert_eq!(status, 400, "{endpoint}: {body}");
    }
    let mut short_key = webpush("laptop", "https://8.8.8.8/push");
    short_key["subscription"]["keys"]["auth"] = json!("c2hvcnQ");
    assert_eq!(register(&system, "alice", short_key).await.0, 400);
    assert_eq!(register(&system, "alice", json!({"device": "p", "kind": "apns"})).await.0, 400, "no token");
    assert_eq!(register(&system, "alice", json!({"device": "p", "kind": "apns", "token": "a b"})).await.0, 400);
    assert_eq!(register(&system, "alice", json!({"device": "p", "kind": "mqtt", "token": "x"})).await.0, 422);

    let testing = spawn_with(&[("ROOST_PUSH__WEBPUSH__ALLOW_INSECURE_LOOPBACK", "true")]).await;
    assert_eq!(register(&testing, "alice", webpush("laptop", "http://127.0.0.1:9/push")).await.0, 201);
    assert_eq!(register(&testing, "alice", webpush("laptop", "https://10.0.0.1/push")).await.0, 400, "still");
}

/// Proves: a member's notification level for a room defaults to `all`, can be set to `mentions`
/// or `none` with a mute, and only members see or set it.
#[tokio::test]
async fn members_choose_how_much_of_a_room_is_pushed() {
    let system = spawn_with(&[]).await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let (bob, carol) = (system.token("bob", 600), system.token("carol", 600));
    let (status, setting) = system.call("GET", "/v1/rooms/lobby/notifications", Some(&bob), None).await;
    assert_eq!((status, setting), (200, json!({"level": "all", "muted_until": null})));
    let quiet = json!({"level": "mentions", "muted_until": 1_900_000_000_000i64});
    let (status, _) = system.call("PUT", "/v1/rooms/lobby/notifications", Some(&bob), Some(quiet.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(system.call("GET", "/v1/rooms/lobby/notifications", Some(&bob), None).await.1, quiet);
    let alice = system.token("alice", 600);
    let (_, alices) = system.call("GET", "/v1/rooms/lobby/notifications", Some(&alice), None).await;
    assert_eq!(alices["level"], "all", "each member's own");
    assert_eq!(system.call("GET", "/v1/rooms/lobby/notifications", Some(&carol), None).await.0, 403, "join first");
    let loud = json!({"level": "loud"});
    assert_eq!(system.call("PUT", "/v1/rooms/lobby/notifications", Some(&bob), Some(loud)).await.0, 422);

    // a user's default covers the rooms they set nothing for
    let (_, default) = system.call("GET", "/v1/notifications", Some(&alice), None).await;
    assert_eq!(default, json!({"level": "all", "muted_until": null}));
    let quieter = json!({"level": "none", "muted_until": null});
    assert_eq!(system.call("PUT", "/v1/notifications", Some(&alice), Some(quieter.clone())).await.0, 200);
    assert_eq!(system.call("GET", "/v1/rooms/lobby/notifications", Some(&alice), None).await.1, quieter);
    assert_eq!(system.call("GET", "/v1/rooms/lobby/notifications", Some(&bob), None).await.1, quiet, "his own stays");
}

/// Proves: a member with no device online gets one push per burst per room, carrying the newest
/// message (payload decrypted by the stand-in as a browser would, VAPID verified); members
/// online, the sender and bots get none; `mentions`, `none`, a mute and a user's default are
/// honoured, and a mention is urgent.
#[tokio::test]
async fn offline_members_are_pushed_once_per_burst_as_their_level_allows() {
    let (services, system) = push_system("400").await;
    system.room("lobby", false, "alice", &["bob", "carol", "dave", "erin", "frank"]).await;
    let mut subscriptions = std::collections::HashMap::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let (id, subscription) = services.subscribe().await;
        register_subscription(&system, user, "browser", subscription).await;
        subscriptions.insert(user, id);
    }
    let alice = system.token("alice", 600);
    let (_, bot) =
        system.call("POST", "/v1/bots", Some(&alice), Some(json!({"name": "helper", "rooms": ["lobby"]}))).await;
    let (_, subscription) = services.subscribe().await;
    let bot_registration = json!({"device": "b", "kind": "webpush", "subscription": subscription});
    let bot_token = bot["token"].as_str().unwrap().to_owned();
    let (status, _) = system.call("POST", "/v1/push/devices", Some(&bot_token), Some(bot_registration)).await;
    assert_eq!(status, 403, "bots are never pushed");
    assert_eq!(set_level(&system, "dave", json!({"level": "mentions"})).await, 200);
    assert_eq!(set_level(&system, "erin", json!({"level": "all", "muted_until": 4_102_444_800_000i64})).await, 200);
    let (status, _) = system
        .call("PUT", "/v1/notifications", Some(&system.token("frank", 600)), Some(json!({"level": "none"})))
        .await;
    assert_eq!(status, 200, "frank's default: nothing");
    let _carol_online = Agent::online(&system, "carol", json!({})).await;

    say(&system, "alice", "lobby", &["one", "two", "three"]).await;
    let bobs = services.webpushes_settled(&subscriptions["bob"], 1).await;
    assert_eq!(bobs.len(), 1, "one push for the burst: {bobs:?}");
    let push = &bobs[0];
    let payload = &push["payload"];
    assert_eq!(
        (
            &payload["type"],
            &payload["room"],
            &payload["seq"],
            &payload["from"],
            &payload["unread"],
            &payload["preview"]
        ),
        (&json!("message"), &json!("lobby"), &json!(3), &json!("alice"), &json!(3), &json!("three")),
        "the newest message: {payload}"
    );
    assert!(payload["ts"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(push["urgency"], "normal");
    assert_eq!(push["topic"].as_str().unwrap().len(), 32, "one topic per room: the service keeps the newest");
    assert!(push["ttl"].as_i64().unwrap() > 3600);
    for user in ["alice", "carol", "dave", "erin", "frank"] {
        assert!(services.webpushes(&subscriptions[user]).await.is_empty(), "{user} is not pushed");
    }

    say(&system, "alice", "lobby", &["@dave have a look"]).await;
    let daves = services.webpushes_settled(&subscriptions["dave"], 1).await;
    assert_eq!(daves.len(), 1, "{daves:?}");
    assert_eq!((&daves[0]["payload"]["preview"], &daves[0]["urgency"]), (&json!("@dave have a look"), &json!("high")));
    assert_eq!(daves[0]["payload"]["unread"], 4, "everything after dave's receipt");
    assert_eq!(services.webpushes(&subscriptions["bob"]).await.len(), 2, "a new burst, a new push");
    assert!(services.webpushes(&subscriptions["erin"]).await.is_empty(), "muted");
    assert_eq!(set_level(&system, "bob", json!({"level": "none"})).await, 200);
    say(&system, "alice", "lobby", &["@bob?"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(services.webpushes(&subscriptions["bob"]).await.len(), 2, "none is none, mentions too");
}

/// Proves: a registration whose push service answers 410 is forgotten; 429 with `Retry-After`
/// is tried again no sooner than asked; FCM gets an OAuth assertion-backed, well-formed send
/// without the body (preview off), APNs an HTTP/2 request with a valid provider token, collapse
/// id and badge; FCM `UNREGISTERED` and APNs `BadDeviceToken` registrations are forgotten.
#[tokio::test]
async fn push_services_answers_are_honoured_and_fcm_and_apns_are_reached() {
    let (services, system) = push_system("200").await;
    system.room("lobby", false, "alice", &["bob", "carol", "dave"]).await;
    let (bobs, subscription) = services.subscribe().await;
    register_subscription(&system, "bob", "browser", subscription).await;
    services.control("script", Some(json!({"id": bobs, "status": 410}))).await;
    let (carols, subscription) = services.subscribe().await;
    register_subscription(&system, "carol", "browser", subscription).await;
    services.control("script", Some(json!({"id": carols, "status": 429, "retry_after": "2"}))).await;
    for (device, kind, token) in [
        ("pixel", "fcm", "fcm-dave"),
        ("iphone", "apns", "apns-dave"),
        ("old-pixel", "fcm", "unregistered-token"),
        ("old-iphone", "apns", "bad-token"),
    ] {
        let (status, body) = register(&system, "dave", json!({"device": device, "kind": kind, "token": token})).await;
        assert_eq!(status, 201, "{body}");
    }

    say(&system, "alice", "lobby", &["a secret plan"]).await;
    let carol = services.webpushes_settled(&carols, 2).await;
    assert_eq!(carol.iter().map(|p| p["answered"].as_i64().unwrap()).collect::<Vec<_>>(), [429, 201]);
    let waited = carol[1]["at"].as_f64().unwrap() - carol[0]["at"].as_f64().unwrap();
    assert!(waited >= 1.9, "Retry-After: 2 honoured, waited {waited} s");
    assert_eq!(services.webpushes(&bobs).await.len(), 1);
    assert!(devices_of(&system, "bob").await.is_empty(), "410: forgotten");
    assert_eq!(devices_of(&system, "dave").await, ["iphone", "pixel"], "UNREGISTERED and BadDeviceToken: forgotten");

    let received = services.control("received", None).await;
    assert_eq!(received["errors"], json!([]));
    let fcm = received["fcm"].as_array().unwrap();
    assert_eq!(fcm.len(), 1, "{fcm:?}");
    assert_eq!(fcm[0]["token"], "fcm-dave");
    let data = &fcm[0]["data"];
    assert_eq!(
        (&data["room"], &data["seq"], &data["from"], &data["unread"]),
        (&json!("lobby"), &json!("1"), &json!("alice"), &json!("1"))
    );
    assert!(data.get("preview").is_none(), "Google does not read the body: {data}");
    let apns = received["apns"].as_array().unwrap();
    assert_eq!(apns.len(), 1, "{apns:?}");
    assert_eq!(apns[0]["device"], "apns-dave");
    assert_eq!(apns[0]["headers"]["apns-collapse-id"], "lobby");
    assert_eq!(apns[0]["payload"]["aps"]["badge"], 1);
    assert_eq!(apns[0]["payload"]["aps"]["alert"]["body"], "New message", "Apple does not read the body");
}

/// Proves: a push owed when Roost is killed (-9) right after the PUBACK, while it was being
/// planned, is sent once after the restart; the same on MongoDB, where work a dead process
/// held waits out its lease (SQLite, owned by one process, frees it at once).
#[tokio::test]
async fn a_crash_loses_no_push() {
    let services = PushServices::start().await;
    let settings = services.settings("1500").await;
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut systems = vec![spawn_with(&env).await];
    systems.extend(spawn_on_mongo_with("push after a crash", &env).await);
    for system in &mut systems {
        services.trust(system).await;
        system.room("lobby", false, "alice", &["bob"]).await;
        let (bobs, subscription) = services.subscribe().await;
        register_subscription(system, "bob", "browser", subscription).await;
        say(system, "alice", "lobby", &["still there?"]).await;
        system.crash_and_restart().await;
        services.trust(system).await;
        let pushed = services.webpushes_within(&bobs, 1, Duration::from_secs(45)).await;
        assert_eq!(pushed.len(), 1, "{pushed:?}");
        assert_eq!(pushed[0]["payload"]["preview"], "still there?");
    }
}
