//! The embedded rumqttd router and the local links into it: one per client connection, plus
//! the server's own link for presence, room events and inbox notices.

use crate::background::Background;
use crate::config::BrokerConfig;
use rumqttd::local::{LinkBuilder, LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet, Publish, PublishProperties};
use rumqttd::{Notification, Router, RouterConfig};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::warn;

/// A link into the router: sender, receiver and the router's CONNACK notification.
pub(crate) type Link = (LinkTx, LinkRx, Notification);

type Factory = dyn Fn(&str, bool) -> Result<Link, Box<LinkError>> + Send + Sync;

/// Why the router gave no link.
#[derive(Debug, thiserror::Error)]
pub enum LinkFailed {
    #[error("the router refused the link: {0}")]
    Refused(#[from] Box<LinkError>),
    #[error("building the link failed: {0}")]
    Builder(#[from] tokio::task::JoinError),
}

/// The embedded router's settings: 1 MiB x 10 log segments per filter, 200 outgoing packets
/// per read. Public so the benchmark's raw rumqttd runs the very same router.
pub fn router_config(max_connections: usize) -> RouterConfig {
    RouterConfig {
        max_connections,
        max_outgoing_packet_count: 200,
        max_segment_size: 1024 * 1024,
        max_segment_count: 10,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}

/// Builds links into the router. The router's sender type is private to rumqttd, so it lives
/// captured in a closure.
#[derive(Clone)]
pub(crate) struct Links {
    factory: Arc<Factory>,
}

/// The link id the server's own link uses; sessions' link ids start with `link:`.
const SERVER_LINK_ID: &str = "roost-server";

impl Links {
    /// Spawns the router thread, sized for `config`.
    pub(crate) fn spawn_router(config: &BrokerConfig) -> Self {
        // one slot for the server link, a margin for connections in takeover
        let router = router_config(config.max_connections + 64);
        let router_tx = Router::new(0, router).spawn();
        let factory = move |id: &str, clean: bool| {
            LinkBuilder::new(id, router_tx.clone()).clean_session(clean).build().map_err(Box::new)
        };
        Self { factory: Arc::new(factory) }
    }

    /// Builds a link; the router answers synchronously, so this runs on the blocking pool.
    pub(crate) async fn build(&self, id: String, clean: bool) -> Result<Link, LinkFailed> {
        let factory = self.factory.clone();
        Ok(tokio::task::spawn_blocking(move || factory(&id, clean)).await??)
    }

    /// Clears the session state the router keeps for `id`: a clean link in its place, ended.
    pub(crate) async fn clear(&self, id: &str) -> Result<(), LinkFailed> {
        let (mut tx, _, _) = self.build(id.to_owned(), true).await?;
        Ok(send_batch(&mut tx, [router_disconnect()]).await.map_err(Box::new)?)
    }

    /// Opens the server link and the tasks that feed and drain it until the broker stops.
    pub(crate) async fn server_link(&self, background: &Background) -> Result<ServerLink, LinkFailed> {
        let (tx, rx, _) = self.build(SERVER_LINK_ID.to_owned(), true).await?;
        let (queue, outbox) = mpsc::unbounded_channel();
        background.spawn_until_stop(drain_server_link(rx));
        background.spawn(feed_server_link(tx, outbox, background.stopping()));
        Ok(ServerLink { queue })
    }
}

/// Queues publishes of the server into the router, in order. Cheap to clone; never blocks.
#[derive(Clone)]
pub(crate) struct ServerLink {
    queue: mpsc::UnboundedSender<(Publish, Option<PublishProperties>)>,
}

impl ServerLink {
    pub(crate) fn publish(&self, topic: String, payload: Vec<u8>) {
        self.publish_with(crate::codec::publish(topic, payload, false), None);
    }

    /// Publishes on a client's behalf (its will), with its properties.
    pub(crate) fn publish_with(&self, publish: Publish, properties: Option<PublishProperties>) {
        let _ = self.queue.send((publish, properties));
    }
}

/// The server link subscribes to nothing; its notifications are drained so the router never
/// parks it.
async fn drain_server_link(mut rx: LinkRx) {
    while let Ok(notification) = rx.next().await {
        if matches!(notification, Some(Notification::Unschedule)) && rx.wake().await.is_err() {
            break;
        }
    }
}

/// Moves queued publishes into the router, one router notification per batch, until
/// `stopping`; then what was queued before it.
async fn feed_server_link(
    mut tx: LinkTx,
    mut outbox: mpsc::UnboundedReceiver<(Publish, Option<PublishProperties>)>,
    stopping: impl Future<Output = ()>,
) {
    tokio::pin!(stopping);
    let mut batch = Vec::new();
    let mut stopped = false;
    loop {
        let received = tokio::select! {
            _ = &mut stopping, if !stopped => {
                // what is queued still goes; nothing after it
                outbox.close();
                stopped = true;
                continue;
            }
            received = outbox.recv_many(&mut batch, 256) => received,
        };
        if received == 0 {
            return;
        }
        if let Err(e) =
            send_batch(&mut tx, batch.drain(..).map(|(publish, properties)| Packet::Publish(publish, properties))).await
        {
            warn!(error = %e, "router refused the server link's publishes");
            return;
        }
    }
}

/// Hands `packets` to the router with a single notification.
pub(crate) async fn send_batch(tx: &mut LinkTx, packets: impl IntoIterator<Item = Packet>) -> Result<(), LinkError> {
    let mut packets: Vec<Packet> = packets.into_iter().collect();
    let Some(last) = packets.pop() else { return Ok(()) };
    tx.buffer().extend(packets);
    tx.send(last).await.map(drop)
}

/// The packet that releases a link in the router.
pub(crate) fn router_disconnect() -> Packet {
    Packet::Disconnect(Disconnect { reason_code: DisconnectReasonCode::NormalDisconnection }, None)
}
