//! The edge: the state every connection shares (settings, tokens, policy, the router's links,
//! presence, sessions, sequence numbers, connection slots, the router's filters).

use crate::background::Background;
use crate::chat::Chat;
use crate::cluster::{Cluster, NatsLink};
use crate::config::BrokerConfig;
use crate::filters::RouterFilters;
use crate::hub::{Hub, Kinds, Message};
use crate::links::{Links, ServerLink};
use crate::presence::Presence;
use crate::registry::Registry;
use crate::sequencer::Sequencer;
use crate::slots::Slots;
use crate::subscriptions::Subscriptions;
use roost_auth::rate::TokenBucket;
use roost_auth::{Policy, TokenService};
use roost_store::{IngestHandle, Store};
use rumqttd::protocol::{Publish, PublishProperties};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsAcceptor;
use tracing::warn;

/// What the broker needs from the rest of Roost.
pub struct BrokerDeps {
    pub tokens: TokenService,
    pub policy: Policy,
    pub store: Arc<dyn Store>,
    pub ingest: IngestHandle,
    /// This node's name (`cluster.node`).
    pub node: String,
}

/// Everything a connection needs.
pub(crate) struct Edge {
    pub(crate) config: BrokerConfig,
    pub(crate) tokens: TokenService,
    pub(crate) policy: Policy,
    /// The chat pipeline every publish on Roost's own topics goes through.
    pub(crate) chat: Chat,
    pub(crate) links: Links,
    pub(crate) server: ServerLink,
    /// The routing of Roost's own topics.
    pub(crate) hub: Arc<Hub>,
    /// Several nodes: this node's part.
    cluster: Option<Cluster>,
    pub(crate) presence: Arc<Presence>,
    /// Present when a TLS or WSS listener is configured.
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) registry: Arc<Registry>,
    /// The background tasks, stopped and awaited with the broker.
    pub(crate) background: Background,
    pub(crate) sequencer: Arc<Sequencer>,
    pub(crate) slots: Arc<Slots>,
    pub(crate) router_filters: Arc<RouterFilters>,
    last_message_id: AtomicU64,
    /// CONNECTs the edge may still accept now (`None`: no limit).
    connect_budget: Option<Mutex<TokenBucket>>,
}

impl Edge {
    pub(crate) fn new(
        config: BrokerConfig,
        deps: BrokerDeps,
        links: Links,
        server: ServerLink,
        tls: Option<TlsAcceptor>,
        background: Background,
        nats: Option<NatsLink>,
    ) -> Self {
        let hub = Arc::new(Hub::new(deps.policy.membership().clone()));
        let presence =
            Arc::new(Presence::new(hub.clone(), deps.store.clone(), deps.policy.clone(), &deps.node, &background));
        let clustered = nats.is_some();
        let sequencer = Arc::new(Sequencer::new(deps.store.clone(), clustered));
        if !clustered {
            // several nodes watch the rooms followed for NATS instead, and reserve per message
            background.spawn_until_stop(sequencer.clone().lease_ahead(hub.watch_rooms()));
        }
        let registry = Arc::new(Registry::new(background.clone()));
        let cluster = nats.map(|link| {
            let (store, presence, registry) = (deps.store.clone(), presence.clone(), registry.clone());
            Cluster::start(link, hub.clone(), presence, registry, store, server.clone(), &background)
        });
        let router_filters = Arc::new(RouterFilters::new(config.max_filters_per_user));
        Self {
            connect_budget: config.max_connect_rate.map(|rate| Mutex::new(TokenBucket::new(rate))),
            chat: Chat::new(deps.policy.clone(), sequencer.clone(), deps.ingest, hub.clone(), deps.store, clustered),
            hub,
            cluster,
            router_filters,
            slots: Arc::new(Slots::new(
                config.max_connections,
                config.max_connections_per_user,
                config.max_connections_per_bot,
            )),
            config,
            tokens: deps.tokens,
            policy: deps.policy,
            links,
            server,
            presence,
            tls,
            registry,
            background,
            sequencer,
            last_message_id: AtomicU64::new(0),
        }
    }

    /// Hands a message published in `room` by a client of this node to the sessions following
    /// it, here and, with several nodes, on the others; a room message (`seq`) in order.
    pub(crate) fn publish_room(&self, room: &str, kind: Kinds, seq: Option<i64>, message: Message) {
        match &self.cluster {
            Some(cluster) => cluster.publish_room(room, kind, seq, message),
            None => {
                self.hub.publish_room(room, kind, message);
            }
        }
    }

    /// With several nodes, hands a publish on an operator's topic that this node's router got
    /// (from a client, or its will) to the other nodes' routers.
    pub(crate) fn carry_operator(&self, publish: &Publish, properties: &Option<PublishProperties>) {
        if let Some(cluster) = &self.cluster {
            cluster.publish_operator(publish, properties);
        }
    }

    /// With several nodes, the kept session `session_id` from the node holding it (which ends
    /// the connection holding it there).
    pub(crate) async fn session_elsewhere(&self, session_id: &str) -> Option<Subscriptions> {
        self.cluster.as_ref()?.take_session(session_id).await
    }

    /// Takes one CONNECT from the edge's budget; false when the connect rate is exceeded.
    pub(crate) fn admit_connect(&self) -> bool {
        self.connect_budget.as_ref().is_none_or(|budget| budget.lock().expect("connect budget lock").take())
    }

    /// A number no other publish through this edge carries.
    pub(crate) fn next_message_id(&self) -> u64 {
        self.last_message_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Clears what the router keeps of an expired session and recycles its link id.
    pub(crate) async fn release_router_session(self: Arc<Self>, router_id: String) {
        match self.links.clear(&router_id).await {
            Ok(()) => self.registry.give_back(router_id),
            Err(e) => warn!(router_id, error = %e, "router kept an expired session"),
        }
    }
}
