//! Start-up: configuration errors name their key; `roost token` mints working tokens.

use crate::harness::{spawn_system, Agent};
use serde_json::json;

#[tokio::test]
async fn a_bad_setting_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (env, value, key) in [
        ("ROOST_MQTT__TCP", "not-an-address", "mqtt.tcp"),
        ("ROOST_HTTP__LISTEN", "localhost", "http.listen"),
        ("ROOST_MQTT__KEEPALIVE_MAX", "0", "mqtt.keepalive_max"),
        ("ROOST_MQTT__KEEPALIVE_MAX", "soon", "keepalive_max"),
        ("ROOST_MQTT__TLS", "127.0.0.1:0", "mqtt.tls"),
        // an empty or short HS256 key would let anyone who guesses it mint tokens
        ("ROOST_AUTH__SECRET", "", "auth.secret"),
        ("ROOST_AUTH__SECRET", "hunter2", "auth.secret"),
        ("ROOST_MEDIA__STORE", "ftp", "media.store"),
        ("ROOST_MEDIA__STORE", "gridfs", "media.store"),
        ("ROOST_MEDIA__STORE", "s3", "media.s3.bucket"),
        ("ROOST_MEDIA__MAX_UPLOAD_SIZE", "0", "media.max_upload_size"),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
            .arg("serve")
            .env("ROOST_DATA_DIR", dir.path())
            .env(env, value)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{env}={value} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
        assert!(stderr.contains(key), "{env}={value}: {stderr}");
    }
}

#[tokio::test]
async fn roost_token_mints_a_token_the_broker_accepts() {
    let system = spawn_system().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["token", "--user", "alice", "--ttl", "60"])
        .env("ROOST_DATA_DIR", system.data_dir())
        .env("ROOST_AUTH__SECRET", &system.secret)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).unwrap();
    assert_eq!(Agent::connect(&system, "alice", token.trim(), json!({})).await.1, 0);
}
