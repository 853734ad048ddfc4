//! The scenarios. Each returns one JSON report.

mod nodes;
mod presence;
mod push;
mod rooms;

pub(crate) use nodes::nodes;
pub(crate) use presence::presence;
pub(crate) use push::push;
pub(crate) use rooms::rooms;

use crate::stats::{histogram, micros_per, now_ns, payload, percentiles, round2, sent_ns};
use crate::target::Target;
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

/// How long deliveries may stall before the rest counts as lost.
const STALL: Duration = Duration::from_secs(3);

fn qos(level: u8) -> QoS {
    if level == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// Resolves once the run is told to stop (the guard `wait_for` returns is dropped at once).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Shared counters and signals of one run.
#[derive(Clone)]
struct Run {
    delivered: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    subscribed: Arc<AtomicU64>,
    /// Messages sent before this (ns since the epoch) count as the warm-up's; 0: none does.
    steady_from_ns: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
}

impl Run {
    fn new() -> (Self, watch::Sender<bool>) {
        let (stop_tx, stop) = watch::channel(false);
        let zero = || Arc::new(AtomicU64::new(0));
        let run = Self { delivered: zero(), sent: zero(), subscribed: zero(), steady_from_ns: zero(), stop };
        (run, stop_tx)
    }

    /// Waits until `counter` reaches `target` (or `patience` runs out).
    async fn reach(counter: &AtomicU64, target: u64, patience: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        while counter.load(Relaxed) < target {
            anyhow::ensure!(Instant::now() < deadline, "only {} of {target} in {patience:?}", counter.load(Relaxed));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits until `expected` deliveries arrived or they stall; returns when the last came.
    async fn settle(&self, expected: u64) -> Instant {
        let (mut seen, mut last_change) = (self.delivered.load(Relaxed), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.delivered.load(Relaxed);
            if now >= expected {
                return Instant::now();
            }
            if now != seen {
                (seen, last_change) = (now, Instant::now());
            } else if last_change.elapsed() > STALL {
                return last_change;
            }
        }
    }
}

/// What a chat member publishes: on `topic`, every `every` after `phase`, `size` bytes.
struct Publishing {
    topic: String,
    phase: Duration,
    every: Duration,
    size: usize,
}

/// A connected client that has subscribed already (its SUBACK is pending).
fn subscriber(options: MqttOptions, topic: &str, level: u8) -> (AsyncClient, EventLoop) {
    let (client, events) = AsyncClient::new(options, 1000);
    let _ = client.try_subscribe(topic, qos(level));
    (client, events)
}

/// Delivery latencies of the messages sent during the warm-up and after it.
struct Latencies {
    warmup: Histogram<u64>,
    steady: Histogram<u64>,
}

impl Latencies {
    fn new() -> Self {
        Self { warmup: histogram(), steady: histogram() }
    }
}

/// Polls a client's event loop until the run stops, recording delivery latencies, and
/// publishes per `publishing` while `go` is set. The handshake permit is held until the
/// SUBACK, to ramp connections at a bounded concurrency.
async fn member(
    (client, mut events): (AsyncClient, EventLoop),
    publishing: Option<Publishing>,
    mut go: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
    run: Run,
) -> Latencies {
    let mut permit = Some(permit);
    let mut latencies = Latencies::new();
    let (phase, every) =
        publishing.as_ref().map_or((Duration::ZERO, Duration::from_secs(3600)), |p| (p.phase, p.every));
    let mut ticks = tokio::time::interval_at(Instant::now() + phase, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut stop = run.stop.clone();
    loop {
        let active = publishing.is_some() && *go.borrow();
        tokio::select! {
            _ = stopped(&mut stop) => return latencies,
            Ok(()) = go.changed() => {}
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    permit.take();
                    run.subscribed.fetch_add(1, Relaxed);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(sent) = sent_ns(&p.payload) {
                        let warm = sent < run.steady_from_ns.load(Relaxed);
                        let histogram = if warm { &mut latencies.warmup } else { &mut latencies.steady };
                        histogram.saturating_record(now_ns().saturating_sub(sent) / 1000);
                    }
                    run.delivered.fetch_add(1, Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            _ = ticks.tick(), if active => {
                let Some(p) = &publishing else { continue };
                if client.try_publish(&p.topic, QoS::AtMostOnce, false, payload(p.size)).is_ok() {
                    run.sent.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// Merges the histograms the member tasks return.
async fn merged(mut members: JoinSet<Latencies>) -> anyhow::Result<Latencies> {
    let mut all = Latencies::new();
    while let Some(latencies) = members.join_next().await {
        let Latencies { warmup, steady } = latencies?;
        all.warmup.add(warmup)?;
        all.steady.add(steady)?;
    }
    Ok(all)
}

/// Counts the PUBACKs of a publisher's event loop until the run stops.
fn count_acks(
    mut events: EventLoop,
    acks: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::PubAck(_))) => { acks.fetch_add(1, Relaxed); }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    })
}

/// Handshakes in flight at once while ramping.
const RAMP_CONCURRENCY: usize = 200;

pub(crate) async fn fanout(
    target: &Target,
    subscribers: usize,
    messages: usize,
    size: usize,
    level: u8,
) -> anyhow::Result<Value> {
    let room = "bench-fanout";
    let users: Vec<String> = (0..=subscribers).map(|i| format!("f{i}")).collect();
    target.make_rooms(vec![(room.to_owned(), users.clone())]).await?;
    let topic = format!("rooms/{room}/messages");
    let (run, stop) = Run::new();
    let (_go, go) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(RAMP_CONCURRENCY));
    let mut members = JoinSet::new();
    for user in &users[1..] {
        let permit = gate.clone().acquire_owned().await?;
        let client = subscriber(target.options(user, user), &topic, level);
        members.spawn(member(client, None, go.clone(), permit, run.clone()));
    }
    Run::reach(&run.subscribed, subscribers as u64, Duration::from_secs(60)).await?;

    let (publisher, events) = AsyncClient::new(target.options(&users[0], "f0-publisher"), 1000);
    let acks = Arc::new(AtomicU64::new(0));
    let publisher_loop = count_acks(events, acks.clone(), run.stop.clone());
    let start = Instant::now();
    for _ in 0..messages {
        publisher.publish(&topic, qos(level), false, payload(size)).await?;
    }
    let expected = (messages * subscribers) as u64;
    let last = run.settle(expected).await;
    let rss_kib = target.rss_kib();
    let _ = stop.send(true);
    publisher_loop.await?;
    let latencies = merged(members).await?.steady;
    let delivered = run.delivered.load(Relaxed);
    let seconds = (last - start).as_secs_f64().max(1e-9);
    Ok(json!({
        "scenario": "fanout", "qos": level, "subscribers": subscribers, "messages": messages, "size": size,
        "deliveries": delivered, "lost": expected.saturating_sub(delivered),
        "deliveries_per_s": (delivered as f64 / seconds).round(),
        "latency": percentiles(&latencies), "rss_kib": rss_kib,
    }))
}

pub(crate) async fn chat(
    target: &Target,
    rooms: usize,
    members_per_room: usize,
    rate: f64,
    seconds: u64,
    warmup: u64,
    size: usize,
) -> anyhow::Result<Value> {
    let layout = layout("chat", "c", rooms, members_per_room);
    target.make_rooms(layout.clone()).await?;
    let (run, stop) = Run::new();
    let (go_tx, go) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(RAMP_CONCURRENCY));
    let every = Duration::from_secs_f64(1.0 / rate);
    let total = rooms * members_per_room;
    let mut members = JoinSet::new();
    for (index, (room, users)) in
        layout.iter().flat_map(|(room, users)| users.iter().map(move |u| (room, u))).enumerate()
    {
        let topic = format!("rooms/{room}/messages");
        let permit = gate.clone().acquire_owned().await?;
        let client = subscriber(target.options(users, users), &topic, 0);
        let phase = every.mul_f64(index as f64 / total as f64);
        let publishing = Publishing { topic, phase, every, size };
        members.spawn(member(client, Some(publishing), go.clone(), permit, run.clone()));
    }
    let stretch = publish_for(target, &run, &go_tx, total as u64, seconds, warmup, members_per_room).await?;
    let _ = stop.send(true);
    let latencies = merged(members).await?;
    let Stretch { published, expected, delivered, elapsed_s, cpu_s, rss_kib } = stretch;
    Ok(json!({
        "scenario": "chat", "rooms": rooms, "members": members_per_room, "offered_msgs_per_s": total as f64 * rate,
        "published": published, "deliveries": delivered, "lost": expected.saturating_sub(delivered),
        "deliveries_per_s": (delivered as f64 / elapsed_s).round(),
        "latency": percentiles(&latencies.steady), "warmup_s": warmup,
        "latency_warmup": (warmup > 0).then(|| percentiles(&latencies.warmup)), "rss_kib": rss_kib,
        "cpu_s": cpu_s.map(round2), "cpu_us_per_message": cpu_s.map(|cpu| micros_per(cpu, published)),
    }))
}

/// Rooms `{room}-{r}` of members `{member}{r}m{m}`.
fn layout(room: &str, member: &str, rooms: usize, members_per_room: usize) -> Vec<(String, Vec<String>)> {
    (0..rooms)
        .map(|r| (format!("{room}-{r}"), (0..members_per_room).map(|m| format!("{member}{r}m{m}")).collect()))
        .collect()
}

/// What one timed stretch of a chat load measured.
struct Stretch {
    published: u64,
    /// Deliveries due: each message reaches every member of its room, its publisher too.
    expected: u64,
    delivered: u64,
    /// From the start to the last delivery.
    elapsed_s: f64,
    cpu_s: Option<f64>,
    rss_kib: Option<u64>,
}

/// Waits for `subscribers` SUBACKs, lets the members publish for `seconds` (the messages of
/// the first `warmup` counted apart), then waits until every message reached the
/// `members_per_room` members of its room (or deliveries stall).
async fn publish_for(
    target: &Target,
    run: &Run,
    go: &watch::Sender<bool>,
    subscribers: u64,
    seconds: u64,
    warmup: u64,
    members_per_room: usize,
) -> anyhow::Result<Stretch> {
    Run::reach(&run.subscribed, subscribers, Duration::from_secs(300)).await?;
    let cpu_before = target.cpu_seconds();
    let start = Instant::now();
    run.steady_from_ns.store(now_ns() + warmup * 1_000_000_000, Relaxed);
    let _ = go.send(true);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let _ = go.send(false);
    let published = run.sent.load(Relaxed);
    let expected = published * members_per_room as u64;
    let last = run.settle(expected).await;
    let cpu_s = cpu_before.zip(target.cpu_seconds()).map(|(before, after)| after - before);
    Ok(Stretch {
        published,
        expected,
        delivered: run.delivered.load(Relaxed),
        elapsed_s: (last - start).as_secs_f64(),
        cpu_s,
        rss_kib: target.rss_kib(),
    })
}

pub(crate) async fn connections(target: &Target, count: usize, concurrency: usize) -> anyhow::Result<Value> {
    let users: Vec<String> = (0..count).map(|i| format!("k{i}")).collect();
    let watcher = "kwatcher".to_owned();
    // everyone shares the lobby with the watcher, who sees their presence there; each client
    // subscribes to the messages of its own room of 10, as a chat client in the chat scenario
    let lobby = ("conn-lobby".to_owned(), std::iter::once(watcher.clone()).chain(users.clone()).collect());
    let rooms = users.chunks(10).enumerate().map(|(k, members)| (format!("conn-{k}"), members.to_vec()));
    target.make_rooms(std::iter::once(lobby).chain(rooms).collect()).await?;
    // Roost publishes each user's aggregate itself; elsewhere clients publish retained device status
    let filter = if target.is_roost() { "presence/+" } else { "presence/+/+" };
    let (watch_client, mut watch_events) = subscriber(target.options(&watcher, &watcher), filter, 0);
    let online = Arc::new(AtomicU64::new(0));
    let (run, stop) = Run::new();
    let watching = tokio::spawn({
        let (online, mut stop) = (online.clone(), run.stop.clone());
        async move {
            let mut seen = std::collections::HashSet::new();
            loop {
                tokio::select! {
                    _ = stopped(&mut stop) => return watch_client,
                    event = watch_events.poll() => match event {
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let is_online = p.payload.windows(8).any(|w| w == br#""online""#);
                            if is_online && !p.topic.starts_with("presence/kwatcher") && seen.insert(p.topic.clone()) {
                                online.fetch_add(1, Relaxed);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = target.rss_kib();
    let gate = Arc::new(Semaphore::new(concurrency));
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        let permit = gate.clone().acquire_owned().await?;
        let (client, events) = AsyncClient::new(target.options_with_will(user, user), 10);
        // what an idle chat client holds: its room and its inbox (the same topics everywhere)
        let _ = client.try_subscribe(format!("rooms/conn-{}/messages", i / 10), QoS::AtMostOnce);
        let _ = client.try_subscribe(format!("users/{user}/inbox"), QoS::AtMostOnce);
        let announce = (!target.is_roost()).then(|| format!("presence/{user}/{user}"));
        clients.spawn(idle(client, events, announce, permit, connected.clone(), failed.clone(), run.stop.clone()));
    }
    let settled = async {
        while connected.load(Relaxed) + failed.load(Relaxed) < count as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(600), settled).await;
    let ramp = start.elapsed().as_secs_f64();
    let all_online = tokio::time::timeout(
        Duration::from_secs(120),
        Run::reach(&online, connected.load(Relaxed), Duration::from_secs(120)),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|()| start.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = target.rss_kib();
    let _ = stop.send(true);
    while clients.join_next().await.is_some() {}
    drop(watching.await?);
    let held = connected.load(Relaxed);
    let per_connection = rss_before
        .zip(rss_after)
        .map(|(b, a)| (a.saturating_sub(b) as f64 / held.max(1) as f64 * 100.0).round() / 100.0);
    Ok(json!({
        "scenario": "connections", "count": count, "connected": held, "failed": failed.load(Relaxed),
        "connects_per_s": (held as f64 / ramp).round(), "all_online_s": all_online,
        "rss_before_kib": rss_before, "rss_after_kib": rss_after, "kib_per_connection": per_connection,
    }))
}

/// Holds one idle connection until the run stops; announces itself online where the broker
/// does not. A refused or failed handshake is counted and not retried.
async fn idle(
    client: AsyncClient,
    mut events: EventLoop,
    announce: Option<String>,
    permit: OwnedSemaphorePermit,
    connected: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut permit = Some(permit);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    permit.take();
                    connected.fetch_add(1, Relaxed);
                    if let Some(topic) = &announce {
                        let _ = client.try_publish(topic, QoS::AtMostOnce, true, r#"{"status":"online"}"#);
                    }
                }
                Ok(_) => {}
                Err(_) if permit.is_some() => {
                    failed.fetch_add(1, Relaxed);
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

pub(crate) async fn persistence(
    target: &Target,
    messages: usize,
    publishers: usize,
    size: usize,
) -> anyhow::Result<Value> {
    let per_publisher = messages / publishers;
    let rooms: Vec<(String, Vec<String>)> =
        (0..publishers).map(|p| (format!("persist-{p}"), vec![format!("p{p}")])).collect();
    target.make_rooms(rooms.clone()).await?;
    let (run, stop) = Run::new();
    let acks = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    let mut senders = JoinSet::new();
    let start = Instant::now();
    for (room, users) in &rooms {
        let (client, events) = AsyncClient::new(target.options(&users[0], &users[0]), 1000);
        loops.push(count_acks(events, acks.clone(), run.stop.clone()));
        let topic = format!("rooms/{room}/messages");
        senders.spawn(async move {
            for _ in 0..per_publisher {
                client.publish(&topic, QoS::AtLeastOnce, false, payload(size)).await?;
            }
            anyhow::Ok(client)
        });
    }
    let mut clients = Vec::new();
    while let Some(sent) = senders.join_next().await {
        clients.push(sent??);
    }
    let sent = (per_publisher * publishers) as u64;
    let stalled = Run::reach(&acks, sent, Duration::from_secs(600)).await.err().map(|e| e.to_string());
    let seconds = start.elapsed().as_secs_f64();
    let rss_kib = target.rss_kib();
    let _ = stop.send(true);
    for l in loops {
        l.await?;
    }
    let acked = acks.load(Relaxed);
    let mut stored = None;
    if target.is_roost() {
        let mut total = 0;
        for (room, users) in &rooms {
            total += target.history_count(room, &users[0]).await?;
        }
        stored = Some(total);
    }
    Ok(json!({
        "scenario": "persistence", "messages": sent, "publishers": publishers, "acked": acked,
        "acked_per_s": (acked as f64 / seconds).round(), "stored": stored,
        "lost_after_ack": stored.map(|s| acked.saturating_sub(s as u64)), "stalled": stalled, "rss_kib": rss_kib,
    }))
}

/// Requests history pages at `rate` per second for `seconds`, each timed from when it was
/// due, so a slow server cannot hide its queueing (no coordinated omission).
pub(crate) async fn history(
    target: &Target,
    room: &str,
    reader: &str,
    rate: u32,
    seconds: u64,
) -> anyhow::Result<Value> {
    let request =
        target.history_page(room, reader).ok_or_else(|| anyhow::anyhow!("history needs --http and --secret"))?;
    let every = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut requests = JoinSet::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let due = ticks.tick().await;
        let request = request.try_clone().expect("GET requests clone");
        requests.spawn(async move {
            let ok = matches!(request.send().await, Ok(r) if r.status().is_success());
            (due.elapsed(), ok)
        });
    }
    let (mut latencies, mut failed, mut done) = (histogram(), 0_u64, 0_u64);
    while let Some(finished) = requests.join_next().await {
        let (took, ok) = finished?;
        latencies.saturating_record(took.as_micros() as u64);
        failed += u64::from(!ok);
        done += 1;
    }
    Ok(json!({
        "scenario": "history", "offered_per_s": rate, "requests": done, "failed": failed,
        "requests_per_s": (done as f64 / seconds as f64).round(), "latency": percentiles(&latencies),
    }))
}
