//! The `rooms` scenario: rooms created, used and deleted in bulk, then the same chat load measured again.

use super::{chat, subscriber};
use crate::stats::{payload, round2};
use crate::target::Target;
use rumqttc::{Event, Packet, QoS, SubscribeReasonCode};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Bytes of the one message each churned room gets, and of the load's messages.
const SIZE: usize = 100;

/// Messages per second each member of the load sends.
const LOAD_RATE: f64 = 1.0;

/// How long a churned room's message may take to come back before it counts as lost.
const PATIENCE: Duration = Duration::from_secs(5);

/// One owner account working through `rooms` one at a time: with its connection subscribed to
/// `rooms/+/messages` it creates each room over HTTP, publishes one message into it (QoS 1),
/// waits for the message to come back and deletes the room. It owns one room at a time, far
/// below `rooms.max_per_user`. Returns the messages that did not come back.
async fn owner(target: Target, owner: String, rooms: Vec<usize>) -> anyhow::Result<u64> {
    let (client, mut events) = subscriber(target.options(&owner, &owner), "rooms/+/messages", 0);
    loop {
        if let Event::Incoming(Packet::SubAck(ack)) = events.poll().await? {
            let granted = ack.return_codes.iter().all(|c| matches!(c, SubscribeReasonCode::Success(_)));
            anyhow::ensure!(granted, "rooms/+/messages refused to {owner}");
            break;
        }
    }
    let (topics, mut delivered) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = topics.send(p.topic);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    let mut lost = 0;
    for index in rooms {
        let room = format!("churn-{index}");
        target.create_room(&owner, &room).await?;
        let topic = format!("rooms/{room}/messages");
        client.publish(&topic, QoS::AtLeastOnce, false, payload(SIZE)).await?;
        let back = async {
            while let Some(received) = delivered.recv().await {
                if received == topic {
                    return true;
                }
            }
            false
        };
        lost += u64::from(!matches!(tokio::time::timeout(PATIENCE, back).await, Ok(true)));
        target.delete_room(&owner, &room).await?;
    }
    reader.abort();
    Ok(lost)
}

/// Creates, uses and deletes the rooms `churn-{churned_before}`.. (`churn` of them) over HTTP
/// and MQTT, `concurrency` at a time, then measures the chat load of `load_rooms` rooms of
/// `load_members` for `seconds` on the same broker (0 rooms churned: the baseline). Roost only.
pub(crate) async fn rooms(
    target: &Target,
    churned_before: usize,
    churn: usize,
    concurrency: usize,
    load_rooms: usize,
    load_members: usize,
    seconds: u64,
) -> anyhow::Result<Value> {
    anyhow::ensure!(target.is_roost(), "the rooms scenario needs Roost (--http and --secret)");
    anyhow::ensure!(concurrency > 0, "--concurrency must be at least 1");
    let start = Instant::now();
    let mut owners = JoinSet::new();
    for worker in 0..concurrency.min(churn) {
        let share = (churned_before + worker..churned_before + churn).step_by(concurrency).collect();
        owners.spawn(owner(target.clone(), format!("churn-owner-{worker}"), share));
    }
    let mut lost = 0;
    while let Some(done) = owners.join_next().await {
        lost += done??;
    }
    let churn_s = start.elapsed().as_secs_f64();
    let load = chat(target, load_rooms, load_members, LOAD_RATE, seconds, 0, SIZE).await?;
    Ok(json!({
        "scenario": "rooms", "rooms_churned": churned_before + churn, "churned_now": churn,
        "churn_s": round2(churn_s), "rooms_per_s": (churn as f64 / churn_s.max(1e-9)).round(), "churn_lost": lost,
        "load": load,
    }))
}
