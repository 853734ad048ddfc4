//! Several nodes over NATS (ARCHITECTURE.md, "Several nodes"): MongoDB numbers and stores,
//! NATS carries. Room messages, typing and receipts go to the other nodes that follow the room
//! (`rooms.rs`) and leave each node in `seq` order (`order.rs`); device changes and heartbeats
//! keep every node's presence board whole, and a node cut off from NATS closes its connections
//! (`nodes.rs`). Membership changes and the API's server messages take the store's outbox,
//! which every node follows; nothing here is a protocol of Roost's own beyond subject names.

mod config;
mod nodes;
mod operator;
mod order;
mod rooms;
mod sessions;
mod wire;

pub use config::ClusterConfig;

use crate::background::Background;
use crate::hub::{Hub, Kinds, Message};
use crate::links::ServerLink;
use crate::presence::Presence;
use crate::registry::Registry;
use crate::subscriptions::Subscriptions;
use async_nats::HeaderMap;
use bytes::Bytes;
use nodes::Nodes;
use operator::Operator;
use order::Order;
use rooms::Rooms;
use roost_store::Store;
use rumqttd::protocol::{Publish, PublishProperties};
use sessions::Sessions;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Why this node could not join the cluster.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {url}: {reason}")]
pub struct ClusterError {
    url: String,
    reason: String,
}

/// The longest wait between two attempts to reach NATS again.
const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(500);
/// Messages waiting to be handed to NATS; past that (NATS far behind) they are not carried: the
/// other nodes fetch room messages from the store, the rest is lost as on a dropped connection.
const OUTBOUND: usize = 65_536;

/// What this node hands to NATS, in order, without waiting for it.
#[derive(Clone)]
struct Carrier(mpsc::Sender<(String, HeaderMap, Bytes)>);

impl Carrier {
    fn start(client: async_nats::Client, background: &Background) -> Self {
        let (outbound, mut queued) = mpsc::channel::<(String, HeaderMap, Bytes)>(OUTBOUND);
        background.spawn_until_stop(async move {
            while let Some((subject, headers, payload)) = queued.recv().await {
                if let Err(e) = client.publish_with_headers(subject, headers, payload).await {
                    warn!(error = %e, "a message was not carried to the other nodes");
                }
            }
        });
        Self(outbound)
    }

    fn send(&self, subject: String, headers: HeaderMap, payload: Bytes) {
        if self.0.try_send((subject, headers, payload)).is_err() {
            metrics::counter!("roost_cluster_messages_not_carried_total").increment(1);
        }
    }
}

/// A connection to NATS, made before the edge starts.
pub(crate) struct NatsLink {
    client: async_nats::Client,
    events: mpsc::UnboundedReceiver<async_nats::Event>,
    node: String,
    ttl: Duration,
}

impl NatsLink {
    /// Connects to `config.nats`; `None` when unset (one node).
    pub(crate) async fn connect(config: &ClusterConfig) -> Result<Option<Self>, ClusterError> {
        let Some(url) = &config.nats else { return Ok(None) };
        let node = config.node_name();
        let (events_tx, events) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .name(format!("roost {node}"))
            // a node hears its own messages from its own sessions, never back from NATS
            .no_echo()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| (Duration::from_millis(50) * attempts as u32).min(RECONNECT_DELAY_MAX))
            .event_callback(move |event| {
                let events = events_tx.clone();
                async move {
                    let _ = events.send(event);
                }
            })
            .connect(url.as_str())
            .await
            .map_err(|e| ClusterError { url: url.clone(), reason: e.to_string() })?;
        info!(node, url, "joined the cluster");
        Ok(Some(Self { client, events, node, ttl: config.node_ttl() }))
    }
}

/// This node's part in the cluster.
pub(crate) struct Cluster {
    rooms: Rooms,
    operator: Operator,
    sessions: Sessions,
}

impl Cluster {
    /// Starts carrying between this node and the others over `link`.
    pub(crate) fn start(
        link: NatsLink,
        hub: Arc<Hub>,
        presence: Arc<Presence>,
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        server: ServerLink,
        background: &Background,
    ) -> Self {
        let NatsLink { client, mut events, node, ttl } = link;
        let order = Arc::new(Order::new(hub.clone(), store));
        background.spawn(order.clone().fill_gaps_until(background.stopping()));
        let carrier = Carrier::start(client.clone(), background);
        let rooms = Rooms::start(client.clone(), carrier.clone(), hub, order.clone(), background);
        let operator = Operator::start(client.clone(), carrier, server, background);
        let nodes = Nodes::new(client.clone(), node, ttl, presence, registry.clone());
        let reconnected = nodes.start(background);
        let sessions = Sessions::start(client, registry, nodes.peers_alive(), ttl / 6, background);
        background.spawn_until_stop(async move {
            while let Some(event) = events.recv().await {
                match event {
                    async_nats::Event::Connected => {
                        info!("NATS reached again");
                        // what NATS dropped meanwhile is fetched from the store
                        order.recheck_all();
                        reconnected.notify_one();
                    }
                    async_nats::Event::Disconnected => warn!("NATS lost; reconnecting"),
                    // reconnect attempts fail every few hundred milliseconds while NATS is away
                    other => debug!(event = %other, "NATS"),
                }
            }
        });
        Self { rooms, operator, sessions }
    }

    /// Carries a publish on a topic outside Roost's namespaces (a client's, or its will), as
    /// this node handed it to its own router, to the other nodes' routers.
    pub(crate) fn publish_operator(&self, publish: &Publish, properties: &Option<PublishProperties>) {
        self.operator.publish(publish, properties);
    }

    /// The session `session_id` from the node holding it, which ends its connection there;
    /// `None` when no other node holds it.
    pub(crate) async fn take_session(&self, session_id: &str) -> Option<Subscriptions> {
        self.sessions.take(session_id).await.map(Subscriptions::from_handed_over)
    }

    /// Carries a message this node's client published to the other nodes following `room`,
    /// and delivers it here: a room message (`seq`) in order.
    pub(crate) fn publish_room(&self, room: &str, kind: Kinds, seq: Option<i64>, message: Message) {
        self.rooms.publish(room, kind, seq, message);
    }
}
