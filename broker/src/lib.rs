//! Roost's MQTT broker: its own network edge (MQTT 3.1.1 and 5 over TCP, TLS, WebSocket) over the
//! embedded rumqttd router.
//!
//! The edge authenticates, authorizes, stamps and times keepalive; the router only routes.

mod acks;
mod background;
mod chat;
mod cluster;
mod codec;
mod config;
mod connection;
mod edge;
mod filters;
mod framed;
mod hub;
mod links;
mod listener;
mod presence;
mod registry;
mod relay;
mod retries;
mod route_tag;
mod sequencer;
mod session;
mod slots;
mod stamp;
mod subscriptions;
mod transport;
mod will;

pub use cluster::{ClusterConfig, ClusterError};
pub use config::BrokerConfig;
pub use edge::BrokerDeps;
pub use links::{router_config, LinkFailed};
pub use presence::Presence;
pub use relay::BrokerRelay;
pub use transport::TlsError;

use background::Background;
use edge::Edge;
use links::Links;
use roost_store::StoreError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use transport::Protocol;

/// How long the background tasks get to finish once the connections are closed.
const BACKGROUND_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("the embedded router refused the server link: {0}")]
    Router(#[from] LinkFailed),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A bound, not yet running broker.
pub struct Broker {
    edge: Arc<Edge>,
    listeners: Vec<(TcpListener, Protocol)>,
}

impl Broker {
    /// Spawns the router, opens the server link, joins the cluster when `cluster.nats` is set,
    /// and binds every configured listener. A lone broker resets the presence an earlier one
    /// left in the store: nobody is connected to it yet (with several nodes others are).
    pub async fn bind(config: BrokerConfig, cluster: &ClusterConfig, deps: BrokerDeps) -> Result<Self, BrokerError> {
        let nats = cluster::NatsLink::connect(cluster).await?;
        if nats.is_none() {
            deps.store.reset_presence().await?;
        }
        let wanted = [
            (Some(config.tcp.clone()), Protocol::Tcp),
            (Some(config.ws.clone()), Protocol::Ws),
            (config.tls.clone(), Protocol::Tls),
            (config.wss.clone(), Protocol::Wss),
        ];
        let mut listeners = Vec::new();
        for (addr, protocol) in wanted {
            if let Some(addr) = addr {
                let listener = TcpListener::bind(&addr).await.map_err(|source| BrokerError::Bind { addr, source })?;
                listeners.push((listener, protocol));
            }
        }
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(transport::tls_acceptor(cert, key)?),
            _ if config.tls.is_some() || config.wss.is_some() => return Err(TlsError::Missing.into()),
            _ => None,
        };
        let links = Links::spawn_router(&config);
        let background = Background::default();
        let server = links.server_link(&background).await?;
        let edge = Arc::new(Edge::new(config, deps, links, server, tls, background, nats));
        Ok(Self { edge, listeners })
    }

    /// Where the listener of `protocol` is bound, when it is configured.
    fn addr(&self, protocol: Protocol) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(_, p)| *p == protocol)
            .map(|(listener, _)| listener.local_addr().expect("bound listener has an address"))
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.addr(Protocol::Tcp).expect("the TCP listener is always bound")
    }

    pub fn ws_addr(&self) -> SocketAddr {
        self.addr(Protocol::Ws).expect("the WebSocket listener is always bound")
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.addr(Protocol::Tls)
    }

    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.addr(Protocol::Wss)
    }

    /// Applies the HTTP API's membership changes and publishes its server messages.
    pub fn relay(&self) -> BrokerRelay {
        BrokerRelay::new(
            self.edge.policy.membership().clone(),
            self.edge.server.clone(),
            self.edge.sequencer.clone(),
            self.edge.hub.clone(),
        )
    }

    pub fn presence(&self) -> Arc<Presence> {
        self.edge.presence.clone()
    }

    /// Accepts connections until `shutdown` resolves, then closes every connection, waits
    /// (bounded) for them to publish their offline status, and stops the background tasks:
    /// the last of them stores the final presence. Unused sequence numbers go back to the store.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        listener::run(self.edge.clone(), self.listeners, shutdown).await;
        self.edge.sequencer.give_back().await;
        self.edge.background.stop(BACKGROUND_STOP_TIMEOUT).await;
    }
}

/// Entry points for the fuzz targets in `broker/fuzz`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::codec::{self, Frame, Version};
    use crate::route_tag::RouteTag;
    use bytes::BytesMut;

    /// Reads `bytes` as a client's socket: the CONNECT probe, then every frame of the version
    /// it picks, each publish's route tag and packet id.
    pub fn read_socket(bytes: &[u8]) {
        let version = if codec::connect_level(bytes) == Some(5) { Version::V5 } else { Version::V311 };
        let mut buf = BytesMut::from(bytes);
        while let Ok(Some(frame)) = codec::next_frame(&mut buf, 64 * 1024, version) {
            if let Frame::Publish { publish, mut properties, .. } = frame {
                let _ = RouteTag::take(&mut properties);
                let _ = codec::outgoing_qos_pkid(&publish);
            }
        }
    }
}
