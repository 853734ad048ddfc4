//! The `presence` scenario: users in rooms of ten reconnecting in turn, and what each presence change costs the broker.

use super::{stopped, Run, RAMP_CONCURRENCY};
use crate::stats::{histogram, micros_per, percentiles, round2};
use crate::target::Target;
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, SubscribeFilter, SubscribeReasonCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Members of each room: users 10k..10k+9 share room k.
const ROOM_SIZE: usize = 10;

/// How long a reconnecting user stays away, so that its offline is applied before its online
/// (without a gap the new connection could take the old one over, one change instead of two).
const AWAY: Duration = Duration::from_millis(100);

/// Keepalive of the scenario's clients: longer than a run, so no PINGREQ adds to the broker's
/// CPU time and the churn window counts presence work only (Roost clamps to `keepalive_max`,
/// 300 s by default).
const KEEPALIVE: Duration = Duration::from_secs(300);

/// What the users subscribe to: every peer's aggregate, and every room of theirs.
const FILTERS: [&str; 2] = ["presence/+", "rooms/+/+"];

/// When each user last went away (DISCONNECT sent) and came back (CONNACK read), in ns since
/// the run began; 0: not yet. Peers time the aggregates they receive from these.
struct Clocks {
    start: Instant,
    away: Vec<AtomicU64>,
    back: Vec<AtomicU64>,
}

impl Clocks {
    fn new(users: usize) -> Self {
        let zeros = || (0..users).map(|_| AtomicU64::new(0)).collect();
        Self { start: Instant::now(), away: zeros(), back: zeros() }
    }

    fn now(&self) -> u64 {
        (self.start.elapsed().as_nanos() as u64).max(1)
    }

    /// Microseconds from the change of `user` that a peer's aggregate (`online` or offline),
    /// received now, reports; `None` for a user not made to reconnect yet (the ramp's changes).
    fn latency_us(&self, user: usize, online: bool) -> Option<u64> {
        let away = self.away[user].load(Relaxed);
        if away == 0 {
            return None;
        }
        let now = self.now();
        if !online {
            return Some(now.saturating_sub(away) / 1000);
        }
        // the broker sends the CONNACK, then the aggregate: a peer may read the aggregate before
        // the reconnecting client has read its CONNACK, which counts as no delay
        let back = self.back[user].load(Relaxed);
        Some(if back > away { now.saturating_sub(back) / 1000 } else { 0 })
    }
}

/// The user whose aggregate `topic` is (`presence/u{index}`, not a device topic) and whether
/// `payload` says online.
fn aggregate(topic: &str, payload: &[u8]) -> Option<(usize, bool)> {
    let user = topic.strip_prefix("presence/u")?.parse().ok()?;
    Some((user, payload.windows(8).any(|w| w == br#""online""#)))
}

/// Counters and signals shared by the users of one run.
struct Shared {
    clocks: Clocks,
    latencies: Mutex<Histogram<u64>>,
    subscribed: AtomicU64,
    /// Filters the broker refused (a build that does not know `rooms/+/+` refuses it).
    refused: AtomicU64,
    departures: AtomicU64,
    returns: AtomicU64,
    /// Peers' aggregates received for the changes caused.
    deliveries: AtomicU64,
    errors: AtomicU64,
}

/// One user: connects and subscribes, records the peers' aggregates it receives, and at each
/// `turn` goes away (DISCONNECT) for `AWAY` and connects again, until the run stops.
async fn user(
    index: usize,
    options: MqttOptions,
    turn: Arc<Notify>,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let filters = FILTERS.map(|f| SubscribeFilter::new(f.to_owned(), QoS::AtMostOnce));
    let mut permit = Some(permit);
    let mut returning = false;
    loop {
        let (client, mut events) = AsyncClient::new(options.clone(), 10);
        let _ = client.try_subscribe_many(filters.clone());
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                () = turn.notified() => break,
                event = events.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) if returning => {
                        shared.clocks.back[index].store(shared.clocks.now(), Relaxed);
                        shared.returns.fetch_add(1, Relaxed);
                        returning = false;
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        if permit.take().is_some() {
                            shared.subscribed.fetch_add(1, Relaxed);
                            let refused = ack.return_codes.iter().filter(|c| **c == SubscribeReasonCode::Failure);
                            shared.refused.fetch_add(refused.count() as u64, Relaxed);
                        }
                    }
                    // a new subscription's replay is retained; live changes are not
                    Ok(Event::Incoming(Packet::Publish(p))) if !p.retain => {
                        let heard = aggregate(&p.topic, &p.payload).filter(|(peer, _)| *peer != index);
                        if let Some(latency) = heard.and_then(|(peer, online)| shared.clocks.latency_us(peer, online)) {
                            shared.latencies.lock().expect("latency lock").saturating_record(latency.max(1));
                            shared.deliveries.fetch_add(1, Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        shared.errors.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        shared.clocks.away[index].store(shared.clocks.now(), Relaxed);
        shared.departures.fetch_add(1, Relaxed);
        let _ = client.try_disconnect();
        let sent =
            async { while !matches!(events.poll().await, Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)) {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), sent).await;
        drop(events); // closes the socket
        returning = true;
        tokio::select! {
            _ = stopped(&mut stop) => return,
            () = tokio::time::sleep(AWAY) => {}
        }
    }
}

/// Waits until `counter` has not moved for `quiet`.
async fn quiet(counter: &AtomicU64, quiet: Duration) {
    let (mut seen, mut since) = (counter.load(Relaxed), Instant::now());
    while since.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = counter.load(Relaxed);
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
    }
}

/// `users` users in rooms of ten, all connected with `presence/+` and `rooms/+/+`; for
/// `seconds`, `percent` of them per second (round robin) disconnect and connect again. Reports
/// the presence changes caused, the broker's CPU time over that window and per change, and
/// the latency from a change (DISCONNECT sent, CONNACK read) to a peer reading the aggregate.
pub(crate) async fn presence(target: &Target, users: usize, percent: f64, seconds: u64) -> anyhow::Result<Value> {
    anyhow::ensure!(users > 0 && percent > 0.0, "--users and --percent must be above 0");
    let names: Vec<String> = (0..users).map(|i| format!("u{i}")).collect();
    let layout = names.chunks(ROOM_SIZE).enumerate().map(|(k, members)| (format!("presence-{k}"), members.to_vec()));
    target.make_rooms(layout.collect()).await?;
    let shared = Arc::new(Shared {
        clocks: Clocks::new(users),
        latencies: Mutex::new(histogram()),
        subscribed: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        departures: AtomicU64::new(0),
        returns: AtomicU64::new(0),
        deliveries: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let (stop_tx, stop) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(RAMP_CONCURRENCY));
    let turns: Vec<Arc<Notify>> = (0..users).map(|_| Arc::new(Notify::new())).collect();
    let mut tasks = JoinSet::new();
    for (index, name) in names.iter().enumerate() {
        let mut options = target.options(name, name);
        options.set_keep_alive(KEEPALIVE);
        let permit = gate.clone().acquire_owned().await?;
        tasks.spawn(user(index, options, turns[index].clone(), permit, shared.clone(), stop.clone()));
    }
    Run::reach(&shared.subscribed, users as u64, Duration::from_secs(300)).await?;
    // the ramp's own presence changes reach the peers, then the broker idles
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_before = target.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = idle_before.zip(target.cpu_seconds()).map(|(before, after)| (after - before) / 2.0);

    let cpu_before = target.cpu_seconds();
    let start = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(100.0 / (users as f64 * percent)));
    let mut next = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        ticks.tick().await;
        turns[next % users].notify_one();
        next += 1;
    }
    // every user sent away is back, and its peers have heard
    let departures = shared.departures.load(Relaxed);
    let back = Run::reach(&shared.returns, departures, Duration::from_secs(60)).await.err().map(|e| e.to_string());
    quiet(&shared.deliveries, Duration::from_millis(300)).await;
    let window = start.elapsed().as_secs_f64();
    let cpu_s = cpu_before.zip(target.cpu_seconds()).map(|(before, after)| after - before);
    let rss_kib = target.rss_kib();
    // read before the users stop: their closing connections make offline changes of their own,
    // which peers still listening would time from each user's departure in the window
    let latency = percentiles(&shared.latencies.lock().expect("latency lock"));
    let deliveries = shared.deliveries.load(Relaxed);
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}

    let (departures, returns) = (shared.departures.load(Relaxed), shared.returns.load(Relaxed));
    // each departure changes the device and the aggregate to offline, each return both to online
    let changes = 2 * (departures + returns);
    Ok(json!({
        "scenario": "presence", "users": users, "room_size": ROOM_SIZE, "percent_per_s": percent, "seconds": seconds,
        "refused_filters": shared.refused.load(Relaxed), "departures": departures, "returns": returns,
        "not_back": back, "presence_changes": changes, "aggregate_deliveries": deliveries,
        "connection_errors": shared.errors.load(Relaxed), "window_s": round2(window),
        "cpu_s": cpu_s.map(round2), "cpu_us_per_change": cpu_s.map(|cpu| micros_per(cpu, changes)),
        "idle_cpu_ms_per_s": idle.map(|cpu| round2(cpu * 1000.0)),
        "latency": latency, "rss_kib": rss_kib,
    }))
}
