//! Roost's MQTT broker: its own network edge (TCP, WebSocket) over the embedded rumqttd router.
//!
//! The edge authenticates, authorizes, stamps and times keepalive; the router only routes.

mod codec;
mod config;
mod connection;
mod links;
mod listener;
mod presence;
mod registry;
mod relay;
mod sequencer;
mod stamp;
mod transport;

pub use config::BrokerConfig;
pub use links::router_config;
pub use presence::Presence;
pub use relay::BrokerRelay;

use links::Links;
use listener::Edge;
use roost_auth::{Policy, TokenService};
use roost_history::{IngestHandle, Store, StoreError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("the embedded router refused the server link: {0}")]
    Router(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What the broker needs from the rest of Roost.
pub struct BrokerDeps {
    pub tokens: TokenService,
    pub policy: Policy,
    pub store: Arc<dyn Store>,
    pub ingest: IngestHandle,
}

/// A bound, not yet running broker.
pub struct Broker {
    edge: Arc<Edge>,
    tcp: TcpListener,
    ws: TcpListener,
}

impl Broker {
    /// Spawns the router, opens the server link and binds both listeners. Presence left in the
    /// store by an earlier broker is reset: nobody is connected to this one yet.
    pub async fn bind(config: BrokerConfig, deps: BrokerDeps) -> Result<Self, BrokerError> {
        deps.store.reset_presence().await?;
        let bind = |addr: String| async move {
            TcpListener::bind(&addr).await.map_err(|source| BrokerError::Bind { addr, source })
        };
        let tcp = bind(config.tcp.clone()).await?;
        let ws = bind(config.ws.clone()).await?;
        let links = Links::spawn_router(&config);
        let server = links.server_link().await.map_err(BrokerError::Router)?;
        let presence = Arc::new(Presence::new(server.clone(), deps.store.clone(), deps.policy.clone()));
        let edge = Arc::new(Edge::new(config, deps, links, server, presence));
        Ok(Self { edge, tcp, ws })
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp.local_addr().expect("bound listener has an address")
    }

    pub fn ws_addr(&self) -> SocketAddr {
        self.ws.local_addr().expect("bound listener has an address")
    }

    /// Applies the HTTP API's membership changes and publishes its server messages.
    pub fn relay(&self) -> BrokerRelay {
        BrokerRelay::new(self.edge.policy.membership().clone(), self.edge.server.clone())
    }

    pub fn presence(&self) -> Arc<Presence> {
        self.edge.presence.clone()
    }

    /// Accepts connections until `shutdown` resolves, then closes every connection, waits
    /// (bounded) for them to publish their offline status, and stores the final presence.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        self.edge.clone().run(self.tcp, self.ws, shutdown).await;
        self.edge.presence.flush().await;
    }
}
