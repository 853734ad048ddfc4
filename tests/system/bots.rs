//! Bot accounts: made by a room owner for rooms it owns, confined to them, revoked at once.

use crate::harness::{next_on, spawn_system, Agent};
use serde_json::json;

#[tokio::test]
async fn a_bot_posts_in_its_rooms_only_and_revoking_it_disconnects_it() {
    let system = spawn_system().await;
    system.register("alice").await;
    system.room("lab", false, "alice", &[]).await;
    system.room("lounge", false, "bob", &["alice"]).await;
    let alice = system.token("alice", 600);
    let bots = |body| async { system.call("POST", "/v1/bots", Some(&alice), Some(body)).await };

    assert_eq!(bots(json!({"name": "sensor-1", "rooms": ["lounge"]})).await.0, 403, "bob owns the lounge");
    assert_eq!(bots(json!({"name": "alice", "rooms": ["lab"]})).await.0, 409, "a user's name");
    let (status, made) = bots(json!({"name": "sensor-1", "rooms": ["lab"]})).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!((made["owner"].as_str(), made["rooms"].clone()), (Some("alice"), json!(["lab"])));
    let token = made["token"].as_str().unwrap().to_owned();

    // it posts readings as normal messages, stamped with its name
    let mut watcher = system.mosquitto_sub("alice", &["rooms/lab/messages"]).await;
    let v5 = json!({"protocol": 5});
    let (mut bot, rc) = Agent::connect(&system, "sensor-1", &token, v5.clone()).await;
    assert_eq!(rc, 0);
    bot.publish("rooms/lab/messages", r#"{"body":"21.5 C","data":{"celsius":21.5,"probe":{"id":7}}}"#, 1).await;
    assert_eq!(bot.expect("published").await["rc"], 0);
    let reading = next_on(&mut watcher, "rooms/lab/messages").await;
    assert_eq!((reading["from"].as_str(), reading["body"].as_str()), (Some("sensor-1"), Some("21.5 C")));
    assert_eq!(reading["data"], json!({"celsius": 21.5, "probe": {"id": 7}}));
    // data every store can keep as sent, or a refusal (0x99) before it is delivered or stored
    bot.publish("rooms/lab/messages", r#"{"body":"overflow","data":{"count":18446744073709551615}}"#, 1).await;
    assert_eq!(bot.expect("published").await["rc"], 0x99);
    let (_, history) = system.call("GET", "/v1/rooms/lab/messages", Some(&alice), None).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(history["messages"][0]["data"], reading["data"]);

    // and nothing else: no other room, no joining, no login with a password
    assert_eq!(bot.subscribe(&[("rooms/lounge/messages", 1)]).await, vec![0x87]);
    assert_eq!(system.call("POST", "/v1/rooms/lounge/join", Some(&token), None).await.0, 403);
    assert_eq!(system.call("POST", "/v1/rooms", Some(&token), Some(json!({"name": "mine"}))).await.0, 403);
    let login = json!({"username": "sensor-1", "password": "!bot"});
    assert_eq!(system.call("POST", "/v1/auth/login", None, Some(login)).await.0, 401);
    assert_eq!(system.call("GET", "/v1/rooms/lab/messages", Some(&token), None).await.0, 200, "it reads its rooms");

    // only its owner revokes it; revoking ends its connection and its token
    let bob = system.token("bob", 600);
    assert_eq!(system.call("DELETE", "/v1/bots/sensor-1", Some(&bob), None).await.0, 404);
    assert_eq!(system.call("DELETE", "/v1/bots/sensor-1", Some(&alice), None).await.0, 204);
    assert_eq!(bot.expect("disconnected").await["rc"], 0x87, "told why");
    assert_eq!(Agent::connect(&system, "sensor-1", &token, v5).await.1, 0x86, "the token no longer connects");
    assert_eq!(system.call("GET", "/v1/rooms/lab/messages", Some(&token), None).await.0, 401);
    assert_eq!(system.call("GET", "/v1/rooms/lab", Some(&alice), None).await.1["members"], json!(["alice"]));
}
