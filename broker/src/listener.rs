//! The accept loops: TCP, TLS, WebSocket and secure WebSocket listeners handing sockets to
//! connections, the sweep of expired sessions, and the drain at shutdown.

use crate::connection;
use crate::edge::Edge;
use crate::transport::{Protocol, Transport};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
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

/// Accepts on every listener until `shutdown`, then stops every connection.
pub(crate) async fn run(edge: Arc<Edge>, listeners: Vec<(TcpListener, Protocol)>, shutdown: impl Future<Output = ()>) {
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
                for router_id in edge.registry.expire() {
                    connections.spawn(edge.clone().release_router_session(router_id));
                }
            }
            Some((stream, protocol)) = accepted.recv() => {
                let edge = edge.clone();
                connections.spawn(async move {
                    // handshakes count against the CONNECT deadline: a silent socket goes
                    let handshake = Transport::accept(stream, protocol, edge.tls.as_ref(), edge.config.max_packet);
                    match tokio::time::timeout(edge.config.connect_timeout, handshake).await {
                        Ok(Ok(transport)) => connection::serve(edge, transport, protocol).await,
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
    edge.registry.kick_all();
    if tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        warn!("connections did not close in time");
        connections.abort_all();
    }
}
