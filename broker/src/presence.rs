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
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tracing::warn;

#[derive(Default)]
struct UserPresence {
    /// Online devices: client id -> the generation of the connection holding it.
    online: HashMap<String, u64>,
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

/// The presence board: updated by connections, carried to peers by the hub.
pub struct Presence {
    users: Mutex<HashMap<String, UserPresence>>,
    hub: Arc<Hub>,
    unstored: Arc<Unstored>,
    policy: Policy,
}

impl Presence {
    /// A board whose changes are written to `store` in the background, the last of them when
    /// the broker stops.
    pub(crate) fn new(hub: Arc<Hub>, store: Arc<dyn Store>, policy: Policy, background: &Background) -> Self {
        let unstored = Arc::<Unstored>::default();
        background.spawn(unstored.clone().write_behind(store, background.stopping()));
        Self { users: Mutex::default(), hub, unstored, policy }
    }

    /// Connection `generation` of (`user`, `client_id`) is online.
    pub(crate) fn connected(&self, user: &str, client_id: &str, generation: u64) {
        self.update(user, client_id, PresenceStatus::Online, |p| {
            p.online.insert(client_id.to_owned(), generation);
            true
        });
    }

    /// Connection `generation` of (`user`, `client_id`) ended. A connection that was taken over
    /// no longer owns the device, so its end changes nothing.
    pub(crate) fn disconnected(&self, user: &str, client_id: &str, generation: u64) {
        self.update(user, client_id, PresenceStatus::Offline, |p| {
            if p.online.get(client_id) == Some(&generation) {
                p.online.remove(client_id);
                true
            } else {
                false
            }
        });
    }

    /// Applies `change` under the lock and, when it reports a change, publishes the device
    /// status and the aggregate while still holding it, so publishes keep the order of changes.
    fn update(
        &self,
        user: &str,
        client_id: &str,
        status: PresenceStatus,
        change: impl FnOnce(&mut UserPresence) -> bool,
    ) {
        let mut users = self.users.lock().expect("presence lock");
        let presence = users.entry(user.to_owned()).or_default();
        if !change(presence) {
            return;
        }
        let ts = now_millis();
        presence.last_seen = Some(ts);
        let device = DeviceStatus { status, ts: Some(ts) };
        self.hub.publish_presence(user, message(Topic::Device { user, client_id }, to_payload(&device)));
        presence.devices.insert(client_id.to_owned(), device);
        if status == PresenceStatus::Offline {
            presence.forget_old_devices();
        }
        let aggregate = presence.aggregate();
        self.hub.publish_presence(user, message(Topic::Presence(user), to_payload(&aggregate)));
        self.unstored.put(user, aggregate);
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
