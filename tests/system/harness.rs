//! Boots a real Roost (`roost serve`, or split `roost broker` + `roost history`) on ephemeral
//! ports with its own data dir and store, and drives it with real clients: HTTP (reqwest),
//! mosquitto_pub/mosquitto_sub, and Eclipse Paho (Python).

use roost_auth::TokenService;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

#[path = "../support/nats.rs"]
mod nats_support;
#[path = "../support/s3.rs"]
mod s3_support;
#[path = "../support/mongo.rs"]
mod support;
pub(crate) use nats_support::NatsServer;
pub(crate) use s3_support::{S3Server, BUCKET};
pub(crate) use support::MongoServer;

/// Line-wise stdout of a client process.
pub(crate) type Output = Lines<BufReader<ChildStdout>>;

/// How long a test waits for something that should happen.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// A running Roost: `roost serve`, or `roost broker` + `roost history` (split), on the
/// embedded store or on a MongoDB-wire test server of its own.
pub(crate) struct System {
    /// `roost serve`, or `roost broker` when split.
    roost: Child,
    /// `roost history` when split.
    history: Option<Child>,
    mongo: Option<MongoServer>,
    data_dir: tempfile::TempDir,
    /// Settings every (re)start gets: the store, extra settings, and the ports once bound.
    env: Vec<(String, String)>,
    pub(crate) secret: String,
    pub(crate) mqtt_port: u16,
    pub(crate) ws_port: u16,
    /// MQTT over TLS and over secure WebSocket, when configured.
    pub(crate) tls_port: Option<u16>,
    pub(crate) wss_port: Option<u16>,
    pub(crate) http: String,
    client: reqwest::Client,
}

/// Starts `roost <verb>` with the test's data dir, key and settings (ephemeral ports unless
/// `env` fixes them) and returns it with its ready line.
async fn launch(verb: &str, data_dir: &Path, secret: &str, env: &[(String, String)]) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roost"));
    command
        .arg(verb)
        .env("ROOST_DATA_DIR", data_dir)
        .env("ROOST_MQTT__TCP", "127.0.0.1:0")
        .env("ROOST_MQTT__WS", "127.0.0.1:0")
        .env("ROOST_HTTP__LISTEN", "127.0.0.1:0")
        .env("ROOST_AUTH__SECRET", secret)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
        .kill_on_drop(true);
    let mut child = command.spawn().expect("roost starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let ready = tokio::time::timeout(PATIENCE, BufReader::new(stdout).lines().next_line())
        .await
        .unwrap_or_else(|_| panic!("roost {verb} prints its addresses in time"))
        .expect("stdout readable")
        .unwrap_or_else(|| panic!("roost {verb} printed a ready line"));
    (child, ready)
}

/// The value of `name` (e.g. `mqtt=`) in a ready line such as
/// `roost ready mqtt=127.0.0.1:P ws=ws://127.0.0.1:P/mqtt http=http://127.0.0.1:P`.
fn ready_field(ready: &str, name: &str) -> String {
    optional_field(ready, name).unwrap_or_else(|| panic!("{name} in {ready}"))
}

fn optional_field(ready: &str, name: &str) -> Option<String> {
    ready.split_whitespace().find_map(|f| f.strip_prefix(name)).map(str::to_owned)
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().trim_end_matches("/mqtt").parse().unwrap()
}

/// Boots a fresh all-in-one system on the embedded store.
pub(crate) async fn spawn_system() -> System {
    spawn_with(&[]).await
}

/// Boots a fresh all-in-one system on the embedded store with extra `ROOST_*` settings.
pub(crate) async fn spawn_with(env: &[(&str, &str)]) -> System {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    boot(None, env, false, None).await
}

/// Boots one node of several (`roost serve`, or `split` the pair `roost broker` and `roost
/// history`): `env` names the shared store, NATS and the node; `secret` is the cluster's key.
pub(crate) async fn spawn_node(secret: &str, env: Vec<(String, String)>, split: bool) -> System {
    boot(None, env, split, Some(secret.to_owned())).await
}

/// Boots a fresh all-in-one system on a MongoDB-wire server of its own; `None` when skipped.
pub(crate) async fn spawn_on_mongo(what: &str) -> Option<System> {
    spawn_on_mongo_with(what, &[]).await
}

/// The same, with extra `ROOST_*` settings.
pub(crate) async fn spawn_on_mongo_with(what: &str, env: &[(&str, &str)]) -> Option<System> {
    let mongo = MongoServer::start(what).await?;
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Some(boot(Some(mongo), env, false, None).await)
}

/// Boots `roost broker` and `roost history` sharing a MongoDB-wire server; `None` when skipped.
pub(crate) async fn spawn_split(what: &str) -> Option<System> {
    let mongo = MongoServer::start(what).await?;
    Some(boot(Some(mongo), Vec::new(), true, None).await)
}

async fn boot(
    mongo: Option<MongoServer>,
    mut env: Vec<(String, String)>,
    split: bool,
    secret: Option<String>,
) -> System {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let secret = secret.unwrap_or_else(roost_auth::tokens::random_secret);
    if let Some(mongo) = &mongo {
        env.push(("ROOST_STORE__URI".into(), mongo.uri()));
    }
    let (roost, ready) = launch(if split { "broker" } else { "serve" }, data_dir.path(), &secret, &env).await;
    let (mqtt, ws) = (ready_field(&ready, "mqtt="), ready_field(&ready, "ws="));
    let tls_port = optional_field(&ready, "tls=").map(|a| port_of(&a));
    let wss_port = optional_field(&ready, "wss=").map(|a| port_of(&a));
    let (history, http) = if split {
        let (history, ready) = launch("history", data_dir.path(), &secret, &env).await;
        (Some(history), ready_field(&ready, "http="))
    } else {
        (None, ready_field(&ready, "http="))
    };
    let (mqtt_port, ws_port) = (port_of(&mqtt), port_of(&ws));
    env.extend([
        ("ROOST_MQTT__TCP".into(), format!("127.0.0.1:{mqtt_port}")),
        ("ROOST_MQTT__WS".into(), format!("127.0.0.1:{ws_port}")),
        ("ROOST_HTTP__LISTEN".into(), format!("127.0.0.1:{}", port_of(&http))),
    ]);
    for (key, port) in [("ROOST_MQTT__TLS", tls_port), ("ROOST_MQTT__WSS", wss_port)] {
        if let Some(port) = port {
            env.push((key.into(), format!("127.0.0.1:{port}")));
        }
    }
    let client = reqwest::Client::new();
    System { roost, history, mongo, data_dir, env, secret, mqtt_port, ws_port, tls_port, wss_port, http, client }
}

/// kill -9.
async fn crash(child: &mut Child) {
    child.start_kill().expect("kill roost");
    let _ = child.wait().await;
}

/// SIGTERM, asserting a clean exit within the drain timeouts.
async fn terminate(child: &mut Child) {
    let pid = child.id().expect("roost is running").to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("roost exits in time");
    assert!(exit.expect("exit status").success(), "roost exits 0 on SIGTERM");
}

impl System {
    /// kill -9 every Roost process, then start them again on the same data and ports.
    pub(crate) async fn crash_and_restart(&mut self) {
        crash(&mut self.roost).await;
        if let Some(history) = &mut self.history {
            crash(history).await;
        }
        self.restart().await;
    }

    /// SIGTERM every Roost process, asserting clean exits, then start them again.
    pub(crate) async fn stop_and_restart(&mut self) {
        terminate(&mut self.roost).await;
        if let Some(history) = &mut self.history {
            terminate(history).await;
        }
        self.restart().await;
    }

    async fn restart(&mut self) {
        let verb = if self.history.is_some() { "broker" } else { "serve" };
        self.roost = launch(verb, self.data_dir.path(), &self.secret, &self.env).await.0;
        if self.history.is_some() {
            self.history = Some(launch("history", self.data_dir.path(), &self.secret, &self.env).await.0);
        }
    }

    /// kill -9 `roost serve` (or the broker), leaving it down.
    pub(crate) async fn kill(&mut self) {
        crash(&mut self.roost).await;
    }

    /// Sends `signal` (`STOP`, `CONT`) to `roost serve` (or the broker).
    pub(crate) async fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status().await;
        assert!(status.expect("kill runs").success());
    }

    /// kill -9 the broker of a split system and start it again after `down`.
    pub(crate) async fn crash_broker_for(&mut self, down: Duration) {
        assert!(self.history.is_some(), "only a split system has a broker of its own");
        crash(&mut self.roost).await;
        tokio::time::sleep(down).await;
        self.roost = launch("broker", self.data_dir.path(), &self.secret, &self.env).await.0;
    }

    /// kill -9 the history service of a split system and start it again after `down`.
    pub(crate) async fn crash_history_for(&mut self, down: Duration) {
        let history = self.history.as_mut().expect("a split system");
        crash(history).await;
        tokio::time::sleep(down).await;
        self.history = Some(launch("history", self.data_dir.path(), &self.secret, &self.env).await.0);
    }

    /// The MongoDB-wire server of this system.
    pub(crate) fn mongo(&mut self) -> &mut MongoServer {
        self.mongo.as_mut().expect("a system on MongoDB")
    }

    /// Every field the store keeps of message (or event) `seq` of `room`, read from the store
    /// itself, not through Roost; `null` when there is none.
    pub(crate) async fn stored_row(&self, room: &str, seq: i64) -> Value {
        match &self.mongo {
            Some(mongo) => {
                use mongodb::bson::{doc, Document};
                let client = mongodb::Client::with_uri_str(mongo.uri()).await.expect("connect to the test server");
                let messages = client.default_database().expect("a database").collection::<Document>("messages");
                let found = messages.find_one(doc! {"room": room, "seq": seq}).await.expect("read messages");
                found.map_or(Value::Null, |doc| mongodb::bson::Bson::Document(doc).into_relaxed_extjson())
            }
            None => {
                use rusqlite::{OpenFlags, OptionalExtension};
                let path = self.data_dir().join("roost.db");
                let db = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
                let mut select = db.prepare("SELECT * FROM messages WHERE room = ?1 AND seq = ?2").expect("select");
                let names: Vec<String> = select.column_names().into_iter().map(str::to_owned).collect();
                let row = select.query_row(rusqlite::params![room, seq], |row| {
                    let field = |i: usize| -> rusqlite::Result<Value> {
                        Ok(match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Value::Null,
                            rusqlite::types::ValueRef::Integer(n) => json!(n),
                            rusqlite::types::ValueRef::Real(x) => json!(x),
                            rusqlite::types::ValueRef::Text(text) => json!(String::from_utf8_lossy(text)),
                            rusqlite::types::ValueRef::Blob(bytes) => json!(bytes),
                        })
                    };
                    names.iter().enumerate().map(|(i, name)| Ok((name.clone(), field(i)?))).collect()
                });
                row.optional().expect("read messages").map_or(Value::Null, Value::Object)
            }
        }
    }

    /// The process id of `roost serve` (or `roost broker` when split).
    pub(crate) fn pid(&self) -> u32 {
        self.roost.id().expect("roost is running")
    }

    /// The HTTP API's `host:port`, for raw sockets.
    pub(crate) fn http_address(&self) -> &str {
        self.http.trim_start_matches("http://")
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.data_dir.path().to_owned()
    }

    /// An access token for `user`, signed with this system's key.
    pub(crate) fn token(&self, user: &str, ttl_secs: u64) -> String {
        TokenService::new(&SecretString::from(self.secret.clone())).issue(user, ttl_secs)
    }

    /// Sends a request; returns status and JSON body (`Value::Null` when empty).
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method.parse().expect("method"), format!("{}{}", self.http, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    /// The value of the metric `name` (no labels) on `/metrics`; `None` until it is first
    /// recorded (a counter that never counted).
    pub(crate) async fn metric(&self, name: &str) -> Option<f64> {
        let (_, metrics) = self.call("GET", "/metrics", None, None).await;
        let metrics = metrics.as_str().unwrap_or_default().to_owned();
        metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// Registers `user` and returns its access token.
    pub(crate) async fn register(&self, user: &str) -> String {
        let credentials = json!({"username": user, "password": "correct horse"});
        let (status, body) = self.call("POST", "/v1/auth/register", None, Some(credentials.clone())).await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self.call("POST", "/v1/auth/login", None, Some(credentials)).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().expect("access token").to_owned()
    }

    /// `owner` creates room `name`; `members` join (public) or are registered and added by the
    /// owner (private).
    pub(crate) async fn room(&self, name: &str, private: bool, owner: &str, members: &[&str]) {
        let (status, body) = self
            .call("POST", "/v1/rooms", Some(&self.token(owner, 600)), Some(json!({"name": name, "private": private})))
            .await;
        assert_eq!(status, 201, "{body}");
        for member in members {
            let (status, body) = if private {
                self.register(member).await;
                let add = json!({"user": member});
                self.call("POST", &format!("/v1/rooms/{name}/members"), Some(&self.token(owner, 600)), Some(add)).await
            } else {
                self.call("POST", &format!("/v1/rooms/{name}/join"), Some(&self.token(member, 600)), None).await
            };
            assert_eq!(status, 200, "{body}");
        }
    }

    /// The room's history as `user` sees it.
    pub(crate) async fn history(&self, room: &str, user: &str, query: &str) -> Vec<Value> {
        let (status, body) =
            self.call("GET", &format!("/v1/rooms/{room}/messages{query}"), Some(&self.token(user, 600)), None).await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().expect("messages").clone()
    }

    /// `user`'s presence aggregate as `viewer` sees it over HTTP.
    pub(crate) async fn presence(&self, user: &str, viewer: &str) -> Value {
        let (status, body) =
            self.call("GET", &format!("/v1/users/{user}/presence"), Some(&self.token(viewer, 600)), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Runs `mosquitto_pub` as `user`; returns (exit code, stderr).
    pub(crate) async fn mosquitto_pub(
        &self,
        user: &str,
        token: &str,
        topic: &str,
        payload: &str,
        qos: u8,
    ) -> (i32, String) {
        let output = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.mqtt_port.to_string(), "-u", user, "-P", token])
            .args(["-t", topic, "-m", payload, "-q", &qos.to_string()])
            .output()
            .await
            .expect("mosquitto_pub runs (apt install mosquitto-clients)");
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// Starts `mosquitto_sub -v` as `user` on `topics` plus the user's inbox, and waits until
    /// its subscriptions are active (a probe publish comes back as an inbox notice).
    pub(crate) async fn mosquitto_sub(&self, user: &str, topics: &[&str]) -> Output {
        let token = self.token(user, 600);
        let inbox = format!("users/{user}/inbox");
        let mut command = Command::new("mosquitto_sub");
        command
            .args(["-h", "127.0.0.1", "-p", &self.mqtt_port.to_string(), "-u", user, "-P", &token, "-v", "-q", "1"])
            .kill_on_drop(true)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for topic in topics.iter().chain([&inbox.as_str()]) {
            command.args(["-t", topic]);
        }
        let mut child = command.spawn().expect("mosquitto_sub runs (apt install mosquitto-clients)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        tokio::spawn(async move { child.wait().await });
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "mosquitto_sub never became ready");
            self.mosquitto_pub(user, &token, "probe/ready", "{}", 0).await;
            if let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await {
                if line.starts_with(&inbox) && line.contains("probe/ready") {
                    return lines;
                }
                panic!("unexpected line before ready: {line}");
            }
        }
    }
}

/// Runs `count` 3.1.1 clients of `user` one after another, each with a client id of its own,
/// subscribing to `topics` (tests/system/py/churn.py).
pub(crate) async fn churn(system: &System, user: &str, count: usize, persistent: bool, topics: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/py/churn.py");
    let output = Command::new("python3")
        .arg(script)
        .args(["127.0.0.1", &system.mqtt_port.to_string(), user, &system.token(user, 600), &count.to_string()])
        .arg(if persistent { "persistent" } else { "clean" })
        .args(topics)
        .output()
        .await
        .expect("python3 runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("done {count}"), "{output:?}");
}

/// The payload of the next `mosquitto_sub -v` line on `topic`, skipping other topics and
/// leftover readiness probes; `None` when the subscriber is gone.
async fn line_on(lines: &mut Output, topic: &str) -> Option<String> {
    let prefix = format!("{topic} ");
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(payload) = line.strip_prefix(&prefix) {
            if !payload.contains("probe/ready") {
                return Some(payload.to_owned());
            }
        }
    }
    None
}

/// The JSON payload of the next message on `topic`.
pub(crate) async fn next_on(lines: &mut Output, topic: &str) -> Value {
    match tokio::time::timeout(PATIENCE, line_on(lines, topic)).await {
        Ok(Some(payload)) => serde_json::from_str(&payload).expect("JSON payload"),
        Ok(None) => panic!("mosquitto_sub ended waiting for {topic}"),
        Err(_) => panic!("nothing on {topic}"),
    }
}

/// Asserts that no message on `topic` arrives within `window`.
pub(crate) async fn silent_on(lines: &mut Output, topic: &str, window: Duration) {
    if let Ok(Some(payload)) = tokio::time::timeout(window, line_on(lines, topic)).await {
        panic!("expected nothing on {topic}, got: {payload}");
    }
}

/// A Paho client in a Python process, driven by JSON commands (tests/system/py/agent.py).
pub(crate) struct Agent {
    child: Child,
    stdin: ChildStdin,
    events: Output,
    connack: Value,
}

impl Agent {
    /// Starts the agent and connects it as `user` with `password`; `extra` adds connect options
    /// (client_id, keepalive, will, transport, port).
    pub(crate) async fn connect(system: &System, user: &str, password: &str, extra: Value) -> (Agent, i64) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/py/agent.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let stdin = child.stdin.take().expect("stdin");
        let events = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut agent = Agent { child, stdin, events, connack: Value::Null };
        let mut connect = json!({"cmd": "connect", "host": "127.0.0.1", "port": system.mqtt_port, "user": user, "password": password});
        for (key, value) in extra.as_object().cloned().unwrap_or_default() {
            connect[key] = value;
        }
        agent.send(connect).await;
        agent.connack = agent.expect("connack").await;
        let rc = agent.connack["rc"].as_i64().expect("rc");
        (agent, rc)
    }

    /// The CONNACK event, with its MQTT 5 properties.
    pub(crate) fn connack(&self) -> &Value {
        &self.connack
    }

    /// Connects without credentials (`extra` carries `"user": null`) and asserts success.
    pub(crate) async fn online_as(system: &System, extra: Value) -> Agent {
        let (agent, rc) = Agent::connect(system, "", "", extra).await;
        assert_eq!(rc, 0, "CONNACK");
        agent
    }

    /// Connects and asserts success.
    pub(crate) async fn online(system: &System, user: &str, extra: Value) -> Agent {
        let (agent, rc) = Agent::connect(system, user, &system.token(user, 600), extra).await;
        assert_eq!(rc, 0, "CONNACK for {user}");
        agent
    }

    pub(crate) async fn send(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("agent stdin");
        self.stdin.flush().await.expect("agent stdin");
    }

    /// The next event of `kind`, skipping others.
    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        let wait = async {
            loop {
                let line = self.events.next_line().await.expect("readable").expect("agent still running");
                let event: Value = serde_json::from_str(&line).expect("agent JSON");
                if event["event"] == kind {
                    return event;
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait).await.unwrap_or_else(|_| panic!("no {kind} event"))
    }

    /// The next message on `topic` (skipping others), within `patience`.
    pub(crate) async fn message_on(&mut self, topic: &str, patience: Duration) -> Option<Value> {
        self.next_message(Some(topic), patience).await
    }

    /// The next message on any topic, within `patience`.
    pub(crate) async fn message_on_any(&mut self, patience: Duration) -> Option<Value> {
        self.next_message(None, patience).await
    }

    async fn next_message(&mut self, topic: Option<&str>, patience: Duration) -> Option<Value> {
        let wait = async {
            loop {
                let line = self.events.next_line().await.ok().flatten()?;
                let event: Value = serde_json::from_str(&line).expect("agent JSON");
                if event["event"] == "message" && topic.is_none_or(|t| event["topic"] == t) {
                    return Some(event);
                }
            }
        };
        tokio::time::timeout(patience, wait).await.ok().flatten()
    }

    /// Subscribes and returns the SUBACK codes.
    pub(crate) async fn subscribe(&mut self, topics: &[(&str, u8)]) -> Vec<i64> {
        self.send(json!({"cmd": "subscribe", "topics": topics})).await;
        let suback = self.expect("suback").await;
        suback["codes"].as_array().expect("codes").iter().map(|c| c.as_i64().unwrap()).collect()
    }

    pub(crate) async fn publish(&mut self, topic: &str, payload: &str, qos: u8) {
        self.send(json!({"cmd": "publish", "topic": topic, "payload": payload, "qos": qos})).await;
    }

    /// kill -9 of the client process.
    pub(crate) async fn kill(mut self) {
        self.child.start_kill().expect("kill agent");
        let _ = self.child.wait().await;
    }
}

/// Parses a message event's JSON payload.
pub(crate) fn payload(event: &Value) -> Value {
    serde_json::from_str(event["payload"].as_str().expect("payload")).expect("JSON payload")
}
