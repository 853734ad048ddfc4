//! Room traffic between nodes: what this node's clients publish goes to the room's subject;
//! a node subscribes to a room's subject only while one of its sessions follows the room
//! (interest-based, as the hub's room index says) and hands what arrives to its sessions.

use super::order::Order;
use super::{wire, Carrier};
use crate::background::Background;
use crate::hub::{Hub, Kinds, Message, RoomInterest};
use async_nats::Client;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::AbortHandle;
use tracing::warn;

/// When a new subscription looks in the store once more, for messages published before it took
/// effect that their node had not stored yet the first time.
const LATE_RECHECK: Duration = Duration::from_millis(500);

pub(super) struct Rooms {
    carrier: Carrier,
    hub: Arc<Hub>,
    order: Arc<Order>,
}

impl Rooms {
    pub(super) fn start(
        client: Client,
        carrier: Carrier,
        hub: Arc<Hub>,
        order: Arc<Order>,
        background: &Background,
    ) -> Self {
        background.spawn_until_stop(follow(client, hub.clone(), order.clone()));
        Self { carrier, hub, order }
    }

    pub(super) fn publish(&self, room: &str, kind: Kinds, seq: Option<i64>, message: Message) {
        let kind_name = if kind == Kinds::MESSAGES {
            "messages"
        } else if kind == Kinds::TYPING {
            "typing"
        } else {
            "receipts"
        };
        let headers = wire::headers_of(&message, seq);
        self.carrier.send(wire::room_subject(room, kind_name), headers, message.payload.clone());
        match seq {
            Some(seq) => self.order.offer(room, seq, message),
            None => {
                self.hub.publish_room(room, kind, message);
            }
        }
    }
}

/// Subscribes to the subject of every room this node's sessions follow, while they do.
async fn follow(client: Client, hub: Arc<Hub>, order: Arc<Order>) {
    let mut interest = hub.watch_rooms();
    let mut followed: HashMap<String, AbortHandle> = HashMap::new();
    while let Some(change) = interest.recv().await {
        match change {
            RoomInterest::Followed(room) => {
                order.begin(&room);
                let task = tokio::spawn(receive(client.clone(), room.clone(), hub.clone(), order.clone()));
                if let Some(earlier) = followed.insert(room, task.abort_handle()) {
                    earlier.abort();
                }
            }
            RoomInterest::Unfollowed(room) => {
                // dropping the subscription unsubscribes
                if let Some(task) = followed.remove(&room) {
                    task.abort();
                }
                order.end(&room);
            }
        }
    }
    for task in followed.into_values() {
        task.abort();
    }
}

/// What other nodes publish in `room`, to this node's sessions.
async fn receive(client: Client, room: String, hub: Arc<Hub>, order: Arc<Order>) {
    let mut subscription = match client.subscribe(wire::room_filter(&room)).await {
        Ok(subscription) => subscription,
        Err(e) => return warn!(room, error = %e, "cannot follow a room on NATS; its messages come from the store"),
    };
    // once NATS has the subscription, what was published before it (and stored by now, or
    // a moment later) is fetched from the store
    let _ = client.flush().await;
    order.recheck(&room);
    let later = (order.clone(), room.clone());
    tokio::spawn(async move {
        tokio::time::sleep(LATE_RECHECK).await;
        later.0.recheck(&later.1);
    });
    while let Some(carried) = subscription.next().await {
        let Some((_, kind_name, kind)) = wire::room_of(&carried.subject) else { continue };
        let topic = format!("rooms/{room}/{kind_name}");
        let (seq, message) = wire::message_from(topic, carried.payload, carried.headers.as_ref());
        match seq {
            Some(seq) if kind == Kinds::MESSAGES => order.offer(&room, seq, message),
            _ => {
                hub.publish_room(&room, kind, message);
            }
        }
    }
}
