//! The `nodes` scenario: chat rooms spread over the nodes of a Roost cluster, latency measured
//! apart for subscribers on the publisher's node and on the other nodes.

use super::{layout, member, merged, publish_for, subscriber, Publishing, Run, Stretch, RAMP_CONCURRENCY};
use crate::stats::{micros_per, percentiles, round2};
use crate::target::Target;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub(crate) async fn nodes(
    target: &Target,
    rooms: usize,
    members_per_room: usize,
    rate: f64,
    seconds: u64,
    size: usize,
) -> anyhow::Result<Value> {
    let layout = layout("nodes", "n", rooms, members_per_room);
    target.make_rooms(layout.clone()).await?;
    // with one node the same members publish as with two: every other one
    let spread = target.nodes().max(2);
    let (run, stop) = Run::new();
    let (go_tx, go) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(RAMP_CONCURRENCY));
    let every = Duration::from_secs_f64(1.0 / rate);
    let total = rooms * members_per_room;
    let publishers = rooms * members_per_room.div_ceil(spread);
    let (mut same_node, mut other_nodes) = (JoinSet::new(), JoinSet::new());
    for (room, users) in &layout {
        for (m, user) in users.iter().enumerate() {
            let topic = format!("rooms/{room}/messages");
            let node = m % target.nodes();
            let permit = gate.clone().acquire_owned().await?;
            let client = subscriber(target.options_on(node, user, user), &topic, 0);
            let phase = every.mul_f64(m as f64 / members_per_room as f64);
            let publishing = (m % spread == 0).then_some(Publishing { topic, phase, every, size });
            let members = if node == 0 { &mut same_node } else { &mut other_nodes };
            members.spawn(member(client, publishing, go.clone(), permit, run.clone()));
        }
    }
    let stretch = publish_for(target, &run, &go_tx, total as u64, seconds, 0, members_per_room).await?;
    let batches = target.metric("roost_seq_batch_size_count").await;
    let gap_fills = target.metric("roost_cluster_gap_fills_total").await;
    // the mean, from the summary's sum and count: its quantiles cover only the last minute or so
    let reserving = target.metric("roost_seq_reservation_seconds_sum").await;
    let reservation_ms = reserving.zip(batches).map(|(sum, count)| round2(sum * 1000.0 / count.max(1.0)));
    let _ = stop.send(true);
    let (same, other) = (merged(same_node).await?.steady, merged(other_nodes).await?.steady);
    let Stretch { published, expected, delivered, elapsed_s, cpu_s, rss_kib } = stretch;
    Ok(json!({
        "scenario": "nodes", "nodes": target.nodes(), "rooms": rooms, "members": members_per_room,
        "offered_msgs_per_s": publishers as f64 * rate,
        "published": published, "deliveries": delivered, "lost": expected.saturating_sub(delivered),
        "deliveries_per_s": (delivered as f64 / elapsed_s).round(),
        "latency_same_node": percentiles(&same),
        "latency_other_node": (target.nodes() > 1).then(|| percentiles(&other)),
        "messages_per_seq_reservation": batches.map(|count| round2(published as f64 / count.max(1.0))),
        "seq_reservation_mean_ms": reservation_ms, "gap_fills": gap_fills,
        "rss_kib": rss_kib, "cpu_s": cpu_s.map(round2),
        "cpu_us_per_message": cpu_s.map(|cpu| micros_per(cpu, published)),
    }))
}
