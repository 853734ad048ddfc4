//! The edge: shared state of all connections, and the TCP and WebSocket accept loops.

use crate::config::BrokerConfig;
use crate::links::{Links, ServerLink};
use crate::presence::Presence;
use crate::registry::Registry;
use crate::sequencer::Sequencer;
use crate::transport::Transport;
use crate::BrokerDeps;
use roost_auth::{Policy, TokenService};
use roost_history::IngestHandle;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};

/// How long shutdown waits for connections to publish their offline status.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a connection needs.
pub(crate) struct Edge {
    pub(crate) config: BrokerConfig,
    pub(crate) tokens: TokenService,
    pub(crate) policy: Policy,
    pub(crate) ingest: IngestHandle,
    pub(crate) links: Links,
    pub(crate) server: ServerLink,
    pub(crate) presence: Arc<Presence>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) sequencer: Sequencer,
    connections: Arc<AtomicUsize>,
}

/// One of at most `max_connections` connection slots; released on drop.
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Edge {
    pub(crate) fn new(
        config: BrokerConfig,
        deps: BrokerDeps,
        links: Links,
        server: ServerLink,
        presence: Arc<Presence>,
    ) -> Self {
        Self {
            config,
            tokens: deps.tokens,
            policy: deps.policy,
            ingest: deps.ingest,
            links,
            server,
            presence,
            registry: Arc::default(),
            sequencer: Sequencer::new(deps.store),
            connections: Arc::default(),
        }
    }

    /// Takes a connection slot, or `None` when the broker is full.
    pub(crate) fn occupy_slot(&self) -> Option<Slot> {
        let previous = self.connections.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.connections.clone());
        (previous < self.config.max_connections).then_some(slot)
    }

    /// Accepts on both listeners until `shutdown`, then stops every connection.
    pub(crate) async fn run(self: Arc<Self>, tcp: TcpListener, ws: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = tcp.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        connections.spawn(crate::connection::serve(self.clone(), Transport::Tcp(stream)));
                    }
                    Err(e) => warn!(error = %e, "TCP accept failed"),
                },
                accepted = ws.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let edge = self.clone();
                        connections.spawn(async move {
                            match Transport::accept_ws(stream, edge.config.max_packet).await {
                                Ok(transport) => crate::connection::serve(edge, transport).await,
                                Err(e) => tracing::debug!(error = %e, "WebSocket handshake failed"),
                            }
                        });
                    }
                    Err(e) => warn!(error = %e, "WebSocket accept failed"),
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
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
