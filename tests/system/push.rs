//! Push registrations and notification settings (issue 18, first part): the VAPID key, devices
//! registered and replaced, endpoints that would point the server at its own network refused,
//! and per-room levels.

use crate::harness::{spawn_with, System};
use serde_json::{json, Value};

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
/// deletes it.
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
}
