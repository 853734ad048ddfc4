//! TLS: MQTT over TLS (mosquitto clients) and over secure WebSocket (Paho), one certificate.

use crate::harness::{payload, spawn_with, Agent, System, PATIENCE};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM files in a temp dir.
struct Certificate {
    dir: tempfile::TempDir,
}

impl Certificate {
    fn new() -> Self {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), generated.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), generated.key_pair.serialize_pem()).unwrap();
        Self { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

async fn spawn_tls(certificate: &Certificate) -> System {
    let (cert, key) = (certificate.cert(), certificate.key());
    spawn_with(&[
        ("ROOST_MQTT__TLS", "127.0.0.1:0"),
        ("ROOST_MQTT__WSS", "127.0.0.1:0"),
        ("ROOST_MQTT__TLS_CERT", cert.to_str().unwrap()),
        ("ROOST_MQTT__TLS_KEY", key.to_str().unwrap()),
        ("ROOST_MQTT__CONNECT_TIMEOUT", "1"),
    ])
    .await
}

#[tokio::test]
async fn mqtt_over_tls_and_secure_websocket_carry_the_chat() {
    let certificate = Certificate::new();
    let system = spawn_tls(&certificate).await;
    system.room("lobby", false, "alice", &["bob"]).await;
    let (tls_port, wss_port) = (system.tls_port.expect("tls listener"), system.wss_port.expect("wss listener"));

    // bob listens in a browser-like client: Paho over wss://, verifying the certificate
    let wss = json!({"transport": "websockets", "port": wss_port, "tls_ca": certificate.cert()});
    let mut bob = Agent::online(&system, "bob", wss).await;
    assert_eq!(bob.subscribe(&[("rooms/lobby/messages", 1)]).await, vec![1]);

    // alice talks from mosquitto_pub over TLS (hostname verified against the certificate)
    let output = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &tls_port.to_string(), "--cafile", certificate.cert().to_str().unwrap()])
        .args(["-u", "alice", "-P", &system.token("alice", 60), "-q", "1"])
        .args(["-t", "rooms/lobby/messages", "-m", r#"{"body":"over TLS"}"#])
        .output()
        .await
        .expect("mosquitto_pub runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let received = payload(&bob.message_on("rooms/lobby/messages", PATIENCE).await.expect("delivered over wss"));
    assert_eq!((received["from"].as_str(), received["body"].as_str()), (Some("alice"), Some("over TLS")));

    // a client that trusts another certificate gets no connection
    let other = Certificate::new();
    let untrusted = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &tls_port.to_string(), "--cafile", other.cert().to_str().unwrap()])
        .args(["-C", "1", "-W", "3"])
        .args(["-u", "alice", "-P", &system.token("alice", 60), "-t", "rooms/lobby/messages"])
        .output()
        .await
        .expect("mosquitto_sub runs");
    assert!(!untrusted.status.success(), "an unverified TLS connection was accepted");

    // the plain listeners keep working beside the TLS ones
    let mut watcher = system.mosquitto_sub("alice", &["rooms/lobby/messages"]).await;
    bob.publish("rooms/lobby/messages", r#"{"body":"back over wss"}"#, 1).await;
    let line = tokio::time::timeout(PATIENCE, watcher.next_line()).await.unwrap().unwrap().unwrap();
    assert!(line.contains("back over wss"), "{line}");
}

#[tokio::test]
async fn a_socket_that_never_completes_a_handshake_is_closed_after_the_connect_timeout() {
    let certificate = Certificate::new();
    let system = spawn_tls(&certificate).await;
    for port in [system.tls_port.unwrap(), system.wss_port.unwrap(), system.ws_port, system.mqtt_port] {
        let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let opened = Instant::now();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "port {port}: still open after 5 s");
        assert!(opened.elapsed() >= Duration::from_millis(900), "port {port}: closed before the timeout");
    }
    // plaintext MQTT on the TLS port is not a TLS handshake: closed, and the broker stays up
    let mut confused = tokio::net::TcpStream::connect(("127.0.0.1", system.tls_port.unwrap())).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut confused, b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00").await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), confused.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the TLS port kept a plaintext client open");
    assert!(!answer.starts_with(&[0x20]), "a plaintext CONNECT got a CONNACK on the TLS port");
    let (code, stderr) = system.mosquitto_pub("alice", &system.token("alice", 60), "users/alice/inbox", "{}", 0).await;
    assert_eq!(code, 0, "{stderr}");
}
