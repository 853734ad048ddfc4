//! The nodes of the cluster and their devices. Each node publishes its device changes (numbered
//! within its run) and a heartbeat carrying how many it published; every node applies the
//! others' changes to its own presence board, asks a node for all its devices when it missed
//! one, and takes a node silent past the time to live for dead: its devices go offline
//! everywhere, as of its last heartbeat. A node that cannot reach NATS for half the time to live
//! closes its connections and refuses new ones until it can, so no client stays on a node the
//! others took for dead.

use super::wire::{self, DeviceChange, Heartbeat, Snapshot};
use crate::background::Background;
use crate::presence::{LocalChange, Presence};
use crate::registry::Registry;
use async_nats::Client;
use futures_util::StreamExt;
use roost_protocol::now_millis;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::{info, warn};

/// How often dead nodes are looked for.
const LIVENESS_TICK: Duration = Duration::from_millis(250);

/// What this node knows of another.
struct Peer {
    epoch: u64,
    /// Device changes of its run applied here.
    seen: u64,
    heard: Instant,
    /// Its last heartbeat's time (ms): its users' last seen should it die.
    last_ts: i64,
}

pub(super) struct Nodes {
    client: Client,
    node: String,
    /// This run of the node: another run of the same name starts its changes again.
    epoch: u64,
    ttl: Duration,
    presence: Arc<Presence>,
    registry: Arc<Registry>,
    /// Device changes this run published.
    published: AtomicU64,
    /// Other nodes alive now.
    peers_alive: Arc<AtomicUsize>,
}

impl Nodes {
    pub(super) fn new(
        client: Client,
        node: String,
        ttl: Duration,
        presence: Arc<Presence>,
        registry: Arc<Registry>,
    ) -> Arc<Self> {
        let epoch = uuid::Uuid::new_v4().as_u64_pair().0;
        let peers_alive = Arc::default();
        Arc::new(Self { client, node, epoch, ttl, presence, registry, published: AtomicU64::new(0), peers_alive })
    }

    /// How many other nodes are alive now, kept current.
    pub(super) fn peers_alive(&self) -> Arc<AtomicUsize> {
        self.peers_alive.clone()
    }

    /// Starts the heartbeat, the publishing of this node's device changes and the following of
    /// the others'. Returns what to notify when NATS is reached again.
    pub(super) fn start(self: &Arc<Self>, background: &Background) -> Arc<Notify> {
        let (changes_tx, changes) = mpsc::unbounded_channel();
        self.presence.share_changes(changes_tx);
        let reconnected = Arc::new(Notify::new());
        background.spawn_until_stop(self.clone().publish_changes(changes));
        background.spawn_until_stop(self.clone().beat());
        background.spawn_until_stop(self.clone().follow(reconnected.clone()));
        reconnected
    }

    async fn publish_changes(self: Arc<Self>, mut changes: mpsc::UnboundedReceiver<LocalChange>) {
        while let Some(LocalChange { online, device, ts }) = changes.recv().await {
            let n = self.published.load(Ordering::Relaxed) + 1;
            let change = DeviceChange { node: self.node.clone(), epoch: self.epoch, n, online, device, ts };
            let payload = serde_json::to_vec(&change).expect("device changes serialize");
            if let Err(e) = self.client.publish(wire::PRESENCE, payload.into()).await {
                warn!(error = %e, "a device change was not published; the others will ask");
            }
            self.published.store(n, Ordering::Relaxed);
        }
    }

    /// Heartbeats, and the fence: cut off for half the time to live, this node stops serving.
    async fn beat(self: Arc<Self>) {
        let every = self.ttl / 6;
        let mut contact = Instant::now();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            // checked first: a node that was stopped learns it was cut off before anything else
            if contact.elapsed() > self.ttl / 2 && !self.registry.fenced() {
                warn!(
                    node = self.node,
                    silent_ms = contact.elapsed().as_millis() as u64,
                    "cut off from the cluster: closing every connection"
                );
                metrics::counter!("roost_cluster_fenced_total").increment(1);
                self.registry.fence();
            }
            let heartbeat = Heartbeat {
                node: self.node.clone(),
                epoch: self.epoch,
                changes: self.published.load(Ordering::Relaxed),
                ts: now_millis(),
            };
            let payload = serde_json::to_vec(&heartbeat).expect("heartbeats serialize");
            let sent = async {
                self.client.publish(wire::HEARTBEAT, payload.into()).await.ok()?;
                self.client.flush().await.ok()
            };
            if tokio::time::timeout(every, sent).await.is_ok_and(|sent| sent.is_some()) {
                contact = Instant::now();
                if self.registry.fenced() {
                    info!(node = self.node, "in touch with the cluster again: accepting connections");
                    self.registry.unfence();
                }
            }
        }
    }

    /// Applies the other nodes' changes and heartbeats, answers for this node's devices, and
    /// takes silent nodes for dead.
    async fn follow(self: Arc<Self>, reconnected: Arc<Notify>) {
        let subscribed = async {
            let changes = self.client.subscribe(wire::PRESENCE).await?;
            let heartbeats = self.client.subscribe(wire::HEARTBEAT).await?;
            let asked = self.client.subscribe(wire::snapshot_subject(&self.node)).await?;
            Ok::<_, async_nats::SubscribeError>((changes, heartbeats, asked))
        };
        let (mut changes, mut heartbeats, mut asked) = match subscribed.await {
            Ok(subscriptions) => subscriptions,
            Err(e) => return warn!(error = %e, "cannot follow the other nodes' presence"),
        };
        let mut peers: HashMap<String, Peer> = HashMap::new();
        let (answers_tx, mut answers) = mpsc::unbounded_channel::<(String, Snapshot)>();
        let mut liveness = tokio::time::interval(LIVENESS_TICK);
        loop {
            tokio::select! {
                Some(carried) = changes.next() => {
                    let Ok(change) = serde_json::from_slice::<DeviceChange>(&carried.payload) else { continue };
                    if change.node == self.node {
                        continue;
                    }
                    let peer = peers.entry(change.node.clone()).or_insert_with(|| Peer {
                        epoch: change.epoch,
                        seen: 0,
                        heard: Instant::now(),
                        last_ts: change.ts,
                    });
                    if peer.epoch != change.epoch {
                        // another run of the node: what its earlier run held is replaced
                        *peer = Peer { epoch: change.epoch, seen: 0, ..*peer };
                        self.ask(&change.node, answers_tx.clone());
                    }
                    if change.n > peer.seen {
                        if change.n > peer.seen + 1 {
                            self.ask(&change.node, answers_tx.clone());
                        }
                        peer.seen = change.n;
                        if let Some(taken) = self.presence.remote_change(&change.node, change.online, &change.device, change.ts) {
                            self.registry.kick(&taken);
                        }
                    }
                }
                Some(carried) = heartbeats.next() => {
                    let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(&carried.payload) else { continue };
                    if heartbeat.node == self.node {
                        continue;
                    }
                    let known = peers.get(&heartbeat.node).is_some_and(|peer| peer.epoch == heartbeat.epoch);
                    let peer = peers.entry(heartbeat.node.clone()).or_insert_with(|| Peer {
                        epoch: heartbeat.epoch,
                        seen: 0,
                        heard: Instant::now(),
                        last_ts: heartbeat.ts,
                    });
                    peer.heard = Instant::now();
                    peer.last_ts = heartbeat.ts;
                    if !known {
                        *peer = Peer { epoch: heartbeat.epoch, seen: 0, ..*peer };
                    }
                    if !known || heartbeat.changes != peer.seen {
                        self.ask(&heartbeat.node, answers_tx.clone());
                    }
                }
                Some(request) = asked.next() => {
                    if let Some(reply) = request.reply {
                        let payload = serde_json::to_vec(&self.snapshot()).expect("snapshots serialize");
                        if let Err(e) = self.client.publish(reply, payload.into()).await {
                            warn!(error = %e, "cannot answer for this node's devices");
                        }
                    }
                }
                Some((node, snapshot)) = answers.recv() => {
                    let Some(peer) = peers.get_mut(&node) else { continue };
                    if peer.epoch != snapshot.epoch {
                        continue;
                    }
                    peer.seen = snapshot.changes;
                    for taken in self.presence.replace_node(&node, &snapshot.devices) {
                        self.registry.kick(&taken);
                    }
                }
                _ = liveness.tick() => {
                    let dead: Vec<String> =
                        peers.iter().filter(|(_, peer)| peer.heard.elapsed() > self.ttl).map(|(node, _)| node.clone()).collect();
                    for node in dead {
                        let peer = peers.remove(&node).expect("a dead peer is known");
                        warn!(node, "node silent past its time to live: its devices go offline");
                        metrics::counter!("roost_cluster_nodes_lost_total").increment(1);
                        self.presence.node_gone(&node, peer.last_ts);
                    }
                }
                _ = reconnected.notified() => {
                    // changes may have been dropped while NATS was away: ask every node
                    for node in peers.keys() {
                        self.ask(node, answers_tx.clone());
                    }
                }
            }
            self.peers_alive.store(peers.len(), Ordering::Relaxed);
        }
    }

    /// This node's devices, as of the changes it published.
    fn snapshot(&self) -> Snapshot {
        let changes = self.published.load(Ordering::Relaxed);
        Snapshot { epoch: self.epoch, changes, devices: self.presence.local_devices() }
    }

    /// Asks `node` for all its devices; the answer comes on `answers`.
    fn ask(&self, node: &str, answers: mpsc::UnboundedSender<(String, Snapshot)>) {
        let client = self.client.clone();
        let (node, timeout) = (node.to_owned(), self.ttl / 2);
        tokio::spawn(async move {
            let asked = client.request(wire::snapshot_subject(&node), bytes::Bytes::new());
            match tokio::time::timeout(timeout, asked).await {
                Ok(Ok(answer)) => match serde_json::from_slice::<Snapshot>(&answer.payload) {
                    Ok(snapshot) => {
                        let _ = answers.send((node, snapshot));
                    }
                    Err(e) => warn!(node, error = %e, "unreadable device list"),
                },
                Ok(Err(e)) => warn!(node, error = %e, "a node did not answer for its devices"),
                Err(_) => warn!(node, "a node did not answer for its devices in time"),
            }
        });
    }
}
