//! Sessions moving between nodes. A client resuming its session (`clean_start = false`) on a
//! node that does not hold it asks every other live node; the one that does ends the connection
//! holding it (a takeover) and hands over its subscriptions.

use super::wire;
use crate::background::Background;
use crate::registry::Registry;
use crate::subscriptions::Subscription;
use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// A session's subscriptions, or `None` from a node that does not hold it.
type Answer = Option<Vec<(String, Subscription)>>;

pub(super) struct Sessions {
    client: Client,
    /// Other nodes alive now, as the heartbeats say.
    peers: Arc<AtomicUsize>,
    /// How long the other nodes get to answer.
    patience: Duration,
}

impl Sessions {
    pub(super) fn start(
        client: Client,
        registry: Arc<Registry>,
        peers: Arc<AtomicUsize>,
        patience: Duration,
        background: &Background,
    ) -> Self {
        background.spawn_until_stop(answer(client.clone(), registry));
        Self { client, peers, patience }
    }

    /// The subscriptions of `session_id` as the node holding it hands them over; `None` when
    /// no other node holds it (or none answered in time).
    pub(super) async fn take(&self, session_id: &str) -> Answer {
        let expected = self.peers.load(Ordering::Relaxed);
        if expected == 0 {
            return None;
        }
        let inbox = self.client.new_inbox();
        let mut answers = self.client.subscribe(inbox.clone()).await.ok()?;
        let asked = Bytes::from(session_id.to_owned());
        self.client.publish_with_reply(wire::SESSIONS, inbox, asked).await.ok()?;
        let collect = async {
            for _ in 0..expected {
                let answer = answers.next().await?;
                if let Ok(Some(subscriptions)) = serde_json::from_slice::<Answer>(&answer.payload) {
                    return Some(subscriptions);
                }
            }
            None
        };
        tokio::time::timeout(self.patience, collect).await.ok().flatten()
    }
}

/// Answers the other nodes' requests for sessions: each node answers, the one holding the
/// session with its subscriptions.
async fn answer(client: Client, registry: Arc<Registry>) {
    let mut requests = match client.subscribe(wire::SESSIONS).await {
        Ok(requests) => requests,
        Err(e) => return warn!(error = %e, "cannot answer for sessions; they will not move between nodes"),
    };
    while let Some(request) = requests.next().await {
        let (Some(reply), Ok(session_id)) = (request.reply, String::from_utf8(request.payload.to_vec())) else {
            continue;
        };
        let (client, registry) = (client.clone(), registry.clone());
        tokio::spawn(async move {
            let answer: Answer = registry.hand_over(&session_id).await;
            let payload = serde_json::to_vec(&answer).expect("subscriptions serialize");
            if let Err(e) = client.publish(reply, payload.into()).await {
                warn!(error = %e, "cannot hand a session over");
            }
        });
    }
}
