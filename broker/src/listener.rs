//! The edge: shared state of all connections, and the TCP and WebSocket accept loops.

use crate::config::BrokerConfig;
use crate::filters::RouterFilters;
use crate::links::{Links, ServerLink};
use crate::presence::Presence;
use crate::registry::Registry;
use crate::sequencer::Sequencer;
use crate::slots::Slots;
use crate::transport::{Protocol, Transport};
use crate::BrokerDeps;
use roost_auth::rate::TokenBucket;
use roost_auth::{Policy, TokenService};
use roost_store::IngestHandle;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// Accepts connections on `listener` and hands them over with their protocol.
async fn accept_loop(listener: TcpListener, protocol: Protocol, accepted: mpsc::Sender<(TcpStream, Protocol)>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                if accepted.send((stream, protocol)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(?protocol, error = %e, "accept failed");
                // e.g. out of descriptors: do not spin
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// How long shutdown waits for connections to publish their offline status.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How often saved sessions past their expiry are let go.
const EXPIRY_SWEEP: Duration = Duration::from_secs(1);

/// Everything a connection needs.
pub(crate) struct Edge {
    pub(crate) config: BrokerConfig,
    pub(crate) tokens: TokenService,
    pub(crate) policy: Policy,
    pub(crate) ingest: IngestHandle,
    pub(crate) links: Links,
    pub(crate) server: ServerLink,
    pub(crate) presence: Arc<Presence>,
    /// Present when a TLS or WSS listener is configured.
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) registry: Arc<Registry>,
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
        presence: Arc<Presence>,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        Self {
            connect_budget: config.max_connect_rate.map(|rate| Mutex::new(TokenBucket::new(rate))),
            router_filters: Arc::new(RouterFilters::new(config.max_filters_per_user)),
            slots: Arc::new(Slots::new(
                config.max_connections,
                config.max_connections_per_user,
                config.max_connections_per_bot,
            )),
            config,
            tokens: deps.tokens,
            policy: deps.policy,
            ingest: deps.ingest,
            links,
            server,
            presence,
            tls,
            registry: Arc::default(),
            sequencer: Arc::new(Sequencer::new(deps.store)),
            last_message_id: AtomicU64::new(0),
        }
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
    async fn release_router_session(self: Arc<Self>, router_id: String) {
        match self.links.clear(&router_id).await {
            Ok(()) => self.registry.give_back(router_id),
            Err(e) => warn!(router_id, error = %e, "router kept an expired session"),
        }
    }

    /// Accepts on every listener until `shutdown`, then stops every connection.
    pub(crate) async fn run(
        self: Arc<Self>,
        listeners: Vec<(TcpListener, Protocol)>,
        shutdown: impl Future<Output = ()>,
    ) {
        let (accepted_tx, mut accepted) = mpsc::channel(64);
        let mut acceptors = JoinSet::new();
        for (listener, protocol) in listeners {
            acceptors.spawn(accept_loop(listener, protocol, accepted_tx.clone()));
        }
        let mut connections = JoinSet::new();
        let mut expiry_sweep = tokio::time::interval(EXPIRY_SWEEP);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = expiry_sweep.tick() => {
                    for router_id in self.registry.expire() {
                        connections.spawn(self.clone().release_router_session(router_id));
                    }
                }
                Some((stream, protocol)) = accepted.recv() => {
                    let edge = self.clone();
                    connections.spawn(async move {
                        // handshakes count against the CONNECT deadline: a silent socket goes
                        let handshake = Transport::accept(stream, protocol, edge.tls.as_ref(), edge.config.max_packet);
                        match tokio::time::timeout(edge.config.connect_timeout, handshake).await {
                            Ok(Ok(transport)) => crate::connection::serve(edge, transport, protocol).await,
                            Ok(Err(e)) => debug!(?protocol, error = %e, "handshake failed"),
                            Err(_) => debug!(?protocol, "handshake timed out"),
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        acceptors.abort_all();
        info!(connections = connections.len(), "broker stopping");
        self.registry.kick_all();
        if tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            warn!("connections did not close in time");
            connections.abort_all();
        }
    }
}
