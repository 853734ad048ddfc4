//! Accounts, tokens, and CONNECT authentication.

use crate::harness::{spawn_system, Agent};
use serde_json::json;

#[tokio::test]
async fn register_login_refresh_and_connect() {
    let system = spawn_system().await;
    let credentials = json!({"username": "alice", "password": "correct horse"});
    assert_eq!(system.call("POST", "/v1/auth/register", None, Some(credentials.clone())).await.0, 201);
    let (status, body) = system.call("POST", "/v1/auth/register", None, Some(credentials.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")));
    let (status, wrong) =
        system.call("POST", "/v1/auth/login", None, Some(json!({"username": "alice", "password": "nope nope"}))).await;
    assert_eq!((status, wrong["error"]["code"].as_str()), (401, Some("unauthorized")));

    let (status, tokens) = system.call("POST", "/v1/auth/login", None, Some(credentials)).await;
    assert_eq!(status, 200);
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_u64().unwrap() > 0);
    let refresh = json!({"refresh_token": tokens["refresh_token"]});
    let (status, renewed) = system.call("POST", "/v1/auth/refresh", None, Some(refresh.clone())).await;
    assert_eq!(status, 200);
    assert_ne!(renewed["refresh_token"], tokens["refresh_token"]);
    // refresh tokens rotate: the used one is dead
    assert_eq!(system.call("POST", "/v1/auth/refresh", None, Some(refresh)).await.0, 401);

    let access = renewed["access_token"].as_str().unwrap();
    let (_agent, rc) = Agent::connect(&system, "alice", access, json!({})).await;
    assert_eq!(rc, 0);
}

#[tokio::test]
async fn bad_tokens_get_connack_codes() {
    let system = spawn_system().await;
    let valid = system.token("alice", 600);
    let expired = system.token("alice", 0);
    let other_key =
        roost_auth::TokenService::new(&secrecy::SecretString::from("another key".to_owned())).issue("alice", 600);
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", valid.split('.').nth(1).unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    for (what, token) in
        [("expired", &expired), ("wrongly signed", &other_key), ("alg none", &alg_none), ("garbage", &"x".to_owned())]
    {
        let (code, stderr) = system.mosquitto_pub("alice", token, "rooms/lobby/messages", "{}", 0).await;
        assert_ne!(code, 0, "{what} token accepted");
        assert!(stderr.contains("bad user name or password"), "{what}: {stderr}");
    }
    // alice's valid token presented as bob
    let (code, stderr) = system.mosquitto_pub("bob", &valid, "rooms/lobby/messages", "{}", 0).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("not authorised"), "{stderr}");
    // Paho reports 3.1.1 refusals 0x04 / 0x05 as their MQTT 5 equivalents 0x86 / 0x87
    assert_eq!(Agent::connect(&system, "alice", &expired, json!({})).await.1, 0x86);
    assert_eq!(Agent::connect(&system, "bob", &valid, json!({})).await.1, 0x87);
    assert_eq!(Agent::connect(&system, "alice", &valid, json!({})).await.1, 0);
}

#[tokio::test]
async fn http_errors_are_json_and_never_500() {
    let system = spawn_system().await;
    let (status, body) = system.call("GET", "/v1/rooms", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (status, body) = system
        .call("POST", "/v1/auth/register", None, Some(json!({"username": "Bad Name", "password": "long enough"})))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "bad_json");
    let (status, body) =
        system.call("GET", "/v1/rooms/nope/messages?limit=abc", Some(&system.token("alice", 60)), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")));
    let (status, body) = system.call("GET", "/v1/rooms/nope/messages", Some(&system.token("alice", 60)), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) = system.call("GET", "/v2/nothing", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, body) = system.call("PUT", "/v1/auth/login", None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    let (status, health) = system.call("GET", "/healthz", None, None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, spec) = system.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/v1/rooms/{id}/messages"]["get"].is_object());
}
