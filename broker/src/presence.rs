//! Presence: each connection's device status and the per-user aggregate, owned by the server.
//!
//! The router's retained store is bounded per subscribe (rumqttd drops retained messages past
//! its outgoing limit) and RAM-only, so presence state lives here; the edge replays it to new
//! subscribers itself and the hub carries the live changes to peers. Every aggregate change is
//! also written to the store (newest per user, by one writer) for the HTTP API of a split
//! deployment and for last seen across restarts.

use crate::background::Background;
use crate::hub::{Hub, Message};
use roost_auth::Policy;
use roost_protocol::{now_millis, to_payload, DeviceStatus, PresenceAggregate, PresenceStatus, Topic};
use roost_store::{retry_until_ok, PresenceSource, Store};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, Notify};
use tracing::warn;

/// One device of a user, held by a connection on some node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Device {
    pub(crate) user: String,
    pub(crate) client_id: String,
    /// The holding connection's claim generation, on its node.
    pub(crate) generation: u64,
    /// When it connected (ms): of two nodes' connections of one client id the later wins.
    pub(crate) since: i64,
}

/// The connection holding a device: on which node, its claim's generation there, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    node: Arc<str>,
    generation: u64,
    since: i64,
}

impl Holder {
    /// Of two connections of one client id, the later one holds it (ties: the greater node name).
    fn yields_to(&self, other: &Holder) -> bool {
        (self.since, &self.node) < (other.since, &other.node)
    }
}

#[derive(Default)]
struct UserPresence {
    /// Online devices: client id -> the connection holding it.
    online: HashMap<String, Holder>,
    /// Last status of every device seen since start.
    devices: HashMap<String, DeviceStatus>,
    last_seen: Option<i64>,
}

/// Offline devices a user's status keeps, the most recent; older ones are forgotten, so that
/// cycling client ids grows neither the board nor what each peer's `presence/+/+` replays.
const OFFLINE_DEVICES_KEPT: usize = 16;

impl UserPresence {
    fn forget_old_devices(&mut self) {
        let mut offline: Vec<(i64, String)> = self
            .devices
            .iter()
            .filter(|(client_id, _)| !self.online.contains_key(*client_id))
            .map(|(client_id, device)| (device.ts.unwrap_or(0), client_id.clone()))
            .collect();
        if offline.len() <= OFFLINE_DEVICES_KEPT {
            return;
        }
        offline.sort_unstable();
        for (_, client_id) in &offline[..offline.len() - OFFLINE_DEVICES_KEPT] {
            self.devices.remove(client_id);
        }
    }

    fn aggregate(&self) -> PresenceAggregate {
        PresenceAggregate {
            status: if self.online.is_empty() { PresenceStatus::Offline } else { PresenceStatus::Online },
            devices: self.online.len() as u32,
            last_seen: self.last_seen,
        }
    }
}

/// Aggregates not yet in the store: the newest per user, so a burst of changes costs one write.
#[derive(Default)]
struct Unstored {
    latest: Mutex<HashMap<String, PresenceAggregate>>,
    changed: Notify,
}

impl Unstored {
    fn put(&self, user: &str, aggregate: PresenceAggregate) {
        self.latest.lock().expect("unstored presence lock").insert(user.to_owned(), aggregate);
        self.changed.notify_one();
    }

    /// Writes what is pending. An aggregate stays pending until it is stored (or replaced by a
    /// newer one), so a failed or cancelled flush loses nothing.
    async fn flush(&self, store: &dyn Store) -> Result<(), roost_store::StoreError> {
        let pending: Vec<(String, PresenceAggregate)> = self
            .latest
            .lock()
            .expect("unstored presence lock")
            .iter()
            .map(|(user, aggregate)| (user.clone(), aggregate.clone()))
            .collect();
        for (user, aggregate) in pending {
            store.set_presence(&user, &aggregate).await?;
            let mut latest = self.latest.lock().expect("unstored presence lock");
            if latest.get(&user) == Some(&aggregate) {
                latest.remove(&user);
            }
        }
        Ok(())
    }

    /// Stores changes as they come until `stopping`, then what the last connections changed.
    async fn write_behind(self: Arc<Self>, store: Arc<dyn Store>, stopping: impl Future<Output = ()>) {
        let writing = async {
            loop {
                self.changed.notified().await;
                retry_until_ok("cannot store presence", || self.flush(store.as_ref())).await;
            }
        };
        tokio::select! {
            _ = stopping => {}
            _ = writing => {}
        }
        if let Err(e) = self.flush(store.as_ref()).await {
            warn!(error = %e, "presence not stored at shutdown");
        }
    }
}

/// A presence message as the hub carries it.
fn message(topic: Topic<'_>, payload: Vec<u8>) -> Message {
    Message::server(topic.to_string(), payload)
}

/// A device change made on this node, as other nodes are to hear of it.
pub(crate) struct LocalChange {
    pub(crate) online: bool,
    pub(crate) device: Device,
    pub(crate) ts: i64,
}

/// The presence board: updated by connections (this node's and, with several nodes, the
/// others'), carried to peers by the hub.
pub struct Presence {
    users: Mutex<HashMap<String, UserPresence>>,
    hub: Arc<Hub>,
    unstored: Arc<Unstored>,
    policy: Policy,
    /// This node's name.
    node: Arc<str>,
    /// Several nodes: where this node's device changes go, in order.
    changes: OnceLock<mpsc::UnboundedSender<LocalChange>>,
}

impl Presence {
    /// A board whose changes are written to `store` in the background, the last of them when
    /// the broker stops.
    pub(crate) fn new(
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        policy: Policy,
        node: &str,
        background: &Background,
    ) -> Self {
        let unstored = Arc::<Unstored>::default();
        background.spawn(unstored.clone().write_behind(store, background.stopping()));
        Self { users: Mutex::default(), hub, unstored, policy, node: Arc::from(node), changes: OnceLock::new() }
    }

    /// From now on this node's device changes also go to `changes`.
    pub(crate) fn share_changes(&self, changes: mpsc::UnboundedSender<LocalChange>) {
        let _ = self.changes.set(changes);
    }

    /// Connection `generation` of (`user`, `client_id`) is online.
    pub(crate) fn connected(&self, user: &str, client_id: &str, generation: u64) {
        let ts = now_millis();
        let holder = Holder { node: self.node.clone(), generation, since: ts };
        let mut users = self.users.lock().expect("presence lock");
        let presence = users.entry(user.to_owned()).or_default();
        presence.online.insert(client_id.to_owned(), holder);
        self.announce(presence, user, client_id, PresenceStatus::Online, ts, true);
        self.share(true, user, client_id, generation, ts, ts);
    }

    /// Connection `generation` of (`user`, `client_id`) ended. A connection that was taken over
    /// no longer owns the device, so its end changes nothing.
    pub(crate) fn disconnected(&self, user: &str, client_id: &str, generation: u64) {
        let mut users = self.users.lock().expect("presence lock");
        let presence = users.entry(user.to_owned()).or_default();
        let Some(holder) = presence.online.get(client_id) else { return };
        if holder.node != self.node || holder.generation != generation {
            return;
        }
        let since = holder.since;
        presence.online.remove(client_id);
        let ts = now_millis();
        self.announce(presence, user, client_id, PresenceStatus::Offline, ts, true);
        self.share(false, user, client_id, generation, since, ts);
    }

    fn share(&self, online: bool, user: &str, client_id: &str, generation: u64, since: i64, ts: i64) {
        if let Some(changes) = self.changes.get() {
            let device = Device { user: user.to_owned(), client_id: client_id.to_owned(), generation, since };
            let _ = changes.send(LocalChange { online, device, ts });
        }
    }

    /// Node `node` says `device` came online (or went offline) at `ts`. Returns the session
    /// id of this node's connection that the device's new connection takes over, if any.
    pub(crate) fn remote_change(&self, node: &str, online: bool, device: &Device, ts: i64) -> Option<String> {
        let holder = Holder { node: Arc::from(node), generation: device.generation, since: device.since };
        let (user, client_id) = (device.user.as_str(), device.client_id.as_str());
        let mut users = self.users.lock().expect("presence lock");
        let presence = users.entry(user.to_owned()).or_default();
        let current = presence.online.get(client_id);
        if online {
            if current.is_some_and(|current| !current.yields_to(&holder)) {
                return None;
            }
            let taken = current.filter(|current| current.node == self.node).map(|_| format!("{user}:{client_id}"));
            presence.online.insert(client_id.to_owned(), holder);
            self.announce(presence, user, client_id, PresenceStatus::Online, ts, false);
            taken
        } else {
            if current != Some(&holder) {
                return None;
            }
            presence.online.remove(client_id);
            self.announce(presence, user, client_id, PresenceStatus::Offline, ts, false);
            None
        }
    }

    /// Node `node` holds exactly `devices` (its answer to "what do you hold"): devices it no
    /// longer holds go offline, the others come online. Returns the session ids of this node's
    /// connections taken over.
    pub(crate) fn replace_node(&self, node: &str, devices: &[Device]) -> Vec<String> {
        let listed: HashSet<&Device> = devices.iter().collect();
        let gone: Vec<Device> = {
            let users = self.users.lock().expect("presence lock");
            users
                .iter()
                .flat_map(|(user, presence)| {
                    presence.online.iter().filter(|(_, holder)| &*holder.node == node).map(|(client_id, holder)| {
                        Device {
                            user: user.clone(),
                            client_id: client_id.clone(),
                            generation: holder.generation,
                            since: holder.since,
                        }
                    })
                })
                .filter(|held| !listed.contains(held))
                .collect()
        };
        let ts = now_millis();
        for device in &gone {
            self.remote_change(node, false, device, ts);
        }
        devices.iter().filter_map(|device| self.remote_change(node, true, device, device.since)).collect()
    }

    /// Node `node` is gone: every device it held is offline as of `last_seen`, its last sign
    /// of life. Every node does this alike; each stores what it decided.
    pub(crate) fn node_gone(&self, node: &str, last_seen: i64) {
        let mut users = self.users.lock().expect("presence lock");
        for (user, presence) in users.iter_mut() {
            let held: Vec<String> = presence
                .online
                .iter()
                .filter(|(_, holder)| &*holder.node == node)
                .map(|(client_id, _)| client_id.clone())
                .collect();
            for client_id in held {
                presence.online.remove(&client_id);
                self.announce(presence, user, &client_id, PresenceStatus::Offline, last_seen, true);
            }
        }
    }

    /// The devices this node's connections hold.
    pub(crate) fn local_devices(&self) -> Vec<Device> {
        let users = self.users.lock().expect("presence lock");
        users
            .iter()
            .flat_map(|(user, presence)| {
                presence.online.iter().filter(|(_, holder)| holder.node == self.node).map(|(client_id, holder)| {
                    Device {
                        user: user.clone(),
                        client_id: client_id.clone(),
                        generation: holder.generation,
                        since: holder.since,
                    }
                })
            })
            .collect()
    }

    /// Publishes a device's new status and its user's aggregate (under the board's lock, so
    /// publishes keep the order of changes), and queues the aggregate for the store when
    /// `store` (this node decided the change).
    fn announce(
        &self,
        presence: &mut UserPresence,
        user: &str,
        client_id: &str,
        status: PresenceStatus,
        ts: i64,
        store: bool,
    ) {
        presence.last_seen = Some(presence.last_seen.map_or(ts, |seen| seen.max(ts)));
        let device = DeviceStatus { status, ts: Some(ts) };
        self.hub.publish_presence(user, message(Topic::Device { user, client_id }, to_payload(&device)));
        presence.devices.insert(client_id.to_owned(), device);
        if status == PresenceStatus::Offline {
            presence.forget_old_devices();
        }
        let aggregate = presence.aggregate();
        self.hub.publish_presence(user, message(Topic::Presence(user), to_payload(&aggregate)));
        if store {
            self.unstored.put(user, aggregate);
        }
    }

    /// Is `client_id` of `user` connected now?
    pub(crate) fn is_online(&self, user: &str, client_id: &str) -> bool {
        self.users
            .lock()
            .expect("presence lock")
            .get(user)
            .is_some_and(|presence| presence.online.contains_key(client_id))
    }

    /// The current statuses matching `filter` that `viewer` may see: the retained messages a
    /// new subscription receives.
    pub(crate) fn retained(&self, viewer: &str, filter: &str) -> Vec<(String, Vec<u8>)> {
        let mut peers = self.policy.membership().peers_of(viewer);
        peers.insert(viewer.to_owned());
        let users = self.users.lock().expect("presence lock");
        let mut out = Vec::new();
        for (user, presence) in peers.iter().filter_map(|peer| users.get_key_value(peer)) {
            let topic = Topic::Presence(user).to_string();
            if rumqttd::protocol::matches(&topic, filter) {
                out.push((topic, to_payload(&presence.aggregate())));
            }
            for (client_id, device) in &presence.devices {
                let topic = Topic::Device { user, client_id }.to_string();
                if rumqttd::protocol::matches(&topic, filter) {
                    out.push((topic, to_payload(device)));
                }
            }
        }
        out
    }
}

impl PresenceSource for Presence {
    fn presence(&self, user: &str) -> Option<PresenceAggregate> {
        self.users.lock().expect("presence lock").get(user).map(UserPresence::aggregate)
    }
}
