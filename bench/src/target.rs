//! The broker under test: its MQTT port, and for Roost the HTTP API and token minting.

use roost_auth::TokenService;
use rumqttc::{LastWill, MqttOptions, QoS};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Roost's HTTP API and signing key.
struct Roost {
    http: String,
    tokens: TokenService,
    client: reqwest::Client,
}

/// A broker to load.
#[derive(Clone)]
pub(crate) struct Target {
    /// The MQTT port of each node (one but for a Roost cluster).
    ports: Vec<u16>,
    roost: Option<Arc<Roost>>,
    /// The process of each node, when known.
    pids: Vec<u32>,
}

/// HTTP requests in flight while setting up rooms.
const SETUP_CONCURRENCY: usize = 32;

impl Target {
    pub(crate) fn new(ports: Vec<u16>, http: Option<String>, secret: Option<&str>, pids: Vec<u32>) -> Self {
        let roost = http.zip(secret).map(|(http, secret)| {
            Arc::new(Roost {
                http,
                tokens: TokenService::new(&SecretString::from(secret.to_owned())),
                client: reqwest::Client::new(),
            })
        });
        Self { ports, roost, pids }
    }

    /// How many nodes the broker runs on.
    pub(crate) fn nodes(&self) -> usize {
        self.ports.len()
    }

    pub(crate) fn is_roost(&self) -> bool {
        self.roost.is_some()
    }

    /// Connection options for `user` (credentials on Roost) with client id `client_id`.
    pub(crate) fn options(&self, user: &str, client_id: &str) -> MqttOptions {
        self.options_on(0, user, client_id)
    }

    /// The same, connecting to node `node`.
    pub(crate) fn options_on(&self, node: usize, user: &str, client_id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", self.ports[node]);
        options.set_keep_alive(Duration::from_secs(60));
        options.set_max_packet_size(1 << 20, 1 << 20);
        options.set_inflight(100);
        if let Some(roost) = &self.roost {
            options.set_credentials(user, roost.tokens.issue(user, 24 * 3600));
        }
        options
    }

    /// Options with the presence will the brief asks of every client.
    pub(crate) fn options_with_will(&self, user: &str, client_id: &str) -> MqttOptions {
        let mut options = self.options(user, client_id);
        let topic = format!("presence/{user}/{client_id}");
        options.set_last_will(LastWill::new(topic, r#"{"status":"offline"}"#, QoS::AtMostOnce, true));
        options
    }

    /// Creates each room with its members (the first one owns it), `SETUP_CONCURRENCY` requests
    /// in flight. Nothing to do on anonymous brokers.
    pub(crate) async fn make_rooms(&self, rooms: Vec<(String, Vec<String>)>) -> anyhow::Result<()> {
        let Some(roost) = &self.roost else { return Ok(()) };
        let limit = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
        let mut creates = JoinSet::new();
        for (room, members) in &rooms {
            let (roost, limit, owner, room) = (roost.clone(), limit.clone(), members[0].clone(), room.clone());
            creates.spawn(async move {
                let _permit = limit.acquire_owned().await?;
                roost.create_room(&owner, &room).await
            });
        }
        while let Some(created) = creates.join_next().await {
            created??;
        }
        let joins = rooms.into_iter().flat_map(|(room, members)| {
            members.into_iter().skip(1).map(move |member| (member, format!("/v1/rooms/{room}/join"), None))
        });
        self.each_post(joins).await
    }

    /// POSTs each `(user, path, body)` as its user, `SETUP_CONCURRENCY` at once (Roost only).
    pub(crate) async fn each_post(
        &self,
        posts: impl IntoIterator<Item = (String, String, Option<serde_json::Value>)>,
    ) -> anyhow::Result<()> {
        let Some(roost) = &self.roost else { return Ok(()) };
        let limit = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
        let mut requests = JoinSet::new();
        for (user, path, body) in posts {
            let (roost, limit) = (roost.clone(), limit.clone());
            requests.spawn(async move {
                let _permit = limit.acquire_owned().await?;
                roost.post(&user, &path, body).await
            });
        }
        while let Some(done) = requests.join_next().await {
            done??;
        }
        Ok(())
    }

    /// Creates `room` owned by `owner` (Roost only).
    pub(crate) async fn create_room(&self, owner: &str, room: &str) -> anyhow::Result<()> {
        let Some(roost) = &self.roost else { anyhow::bail!("creating rooms needs --http and --secret") };
        roost.create_room(owner, room).await
    }

    /// Deletes `room` as its owner `owner` (Roost only).
    pub(crate) async fn delete_room(&self, owner: &str, room: &str) -> anyhow::Result<()> {
        let Some(roost) = &self.roost else { anyhow::bail!("deleting rooms needs --http and --secret") };
        let path = format!("/v1/rooms/{room}");
        let response = roost
            .client
            .delete(format!("{}{path}", roost.http))
            .bearer_auth(roost.tokens.issue(owner, 3600))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "DELETE {path} as {owner}: {}", response.status());
        Ok(())
    }

    /// Messages stored in `room`, read back page by page over HTTP (Roost only).
    pub(crate) async fn history_count(&self, room: &str, reader: &str) -> anyhow::Result<usize> {
        let Some(roost) = &self.roost else { return Ok(0) };
        let token = roost.tokens.issue(reader, 3600);
        let (mut after, mut count) = (0_i64, 0);
        loop {
            let url = format!("{}/v1/rooms/{room}/messages?after={after}&limit=500", roost.http);
            let page: serde_json::Value =
                roost.client.get(url).bearer_auth(&token).send().await?.error_for_status()?.json().await?;
            let messages = page["messages"].as_array().cloned().unwrap_or_default();
            let Some(last) = messages.last() else { return Ok(count) };
            after = last["seq"].as_i64().unwrap_or_default();
            count += messages.len();
        }
    }

    /// A client and URL for pages of `room` read as `reader` (Roost only).
    pub(crate) fn history_page(&self, room: &str, reader: &str) -> Option<reqwest::RequestBuilder> {
        let roost = self.roost.as_ref()?;
        let url = format!("{}/v1/rooms/{room}/messages?limit=50", roost.http);
        Some(roost.client.get(url).bearer_auth(roost.tokens.issue(reader, 3600)))
    }

    /// Resident memory of the broker (every node) in KiB, when its pids are known.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        self.pids.iter().map(|&pid| crate::stats::rss_kib(pid)).sum()
    }

    /// CPU seconds the broker (every node) has used so far, when its pids are known.
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        self.pids.iter().map(|&pid| crate::stats::cpu_seconds(pid)).sum()
    }

    /// The value of Roost's metric `name` (no labels) on the first node's `/metrics`.
    pub(crate) async fn metric(&self, name: &str) -> Option<f64> {
        let roost = self.roost.as_ref()?;
        let text = roost.client.get(format!("{}/metrics", roost.http)).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }
}

impl Roost {
    /// `POST /v1/rooms` as `owner`, who becomes its owner and first member.
    async fn create_room(&self, owner: &str, room: &str) -> anyhow::Result<()> {
        self.post(owner, "/v1/rooms", Some(serde_json::json!({"name": room}))).await
    }

    async fn post(&self, user: &str, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<()> {
        let mut request = self.client.post(format!("{}{path}", self.http)).bearer_auth(self.tokens.issue(user, 3600));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        // 409: the room exists from an earlier run on the same data dir
        if !response.status().is_success() && response.status() != reqwest::StatusCode::CONFLICT {
            anyhow::bail!("POST {path} as {user}: {}", response.status());
        }
        Ok(())
    }
}
