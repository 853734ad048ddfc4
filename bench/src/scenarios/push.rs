//! The `push` scenario: members with no device online, each with a browser registered, get
//! one Web Push per room message; a local push service counts them as they arrive (Roost).

use crate::target::Target;
use axum::routing::post;
use rumqttc::{Event, Packet, QoS};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A browser's P-256 public key: every registration encrypts to it (only the cost counts here).
const BROWSER_KEY: &str = "BALg0KK1DCk3D86dQcN80Na3t5P1bAYNPpvrWdfBnmf1e4eWwYpi3i4YOgDPsZZNoqcaaAwgwgvHCSKvLbjcRtc";

/// How long the pushes may take to arrive in all.
const PATIENCE: Duration = Duration::from_secs(300);

/// What the push service saw: pushes, and when the last one came.
#[derive(Default)]
struct Received {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

/// `rooms` rooms of `members`: one sender, a member of all, publishes one message into each;
/// every other member (offline, one registered browser each) is owed one push per room.
/// Needs Roost started with `push.webpush.allow_insecure_loopback` and `push.coalesce_ms = 0`.
pub(crate) async fn push(target: &Target, rooms: usize, members: usize) -> anyhow::Result<Value> {
    anyhow::ensure!(target.is_roost(), "the push scenario needs Roost");
    let received = Arc::new(Received::default());
    let counting = received.clone();
    let service = axum::Router::new().route(
        "/push/{device}",
        post(move || {
            let counting = counting.clone();
            async move {
                counting.count.fetch_add(1, Relaxed);
                *counting.last.lock().expect("lock") = Some(Instant::now());
                axum::http::StatusCode::CREATED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}/push", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, service).await });

    let member = |room: usize, n: usize| format!("pm{room}-{n}");
    let layout = (0..rooms)
        .map(|room| {
            let people = std::iter::once("sender".to_owned()).chain((1..members).map(|n| member(room, n))).collect();
            (format!("push-{room}"), people)
        })
        .collect();
    target.make_rooms(layout).await?;
    let users: Vec<String> = (0..rooms).flat_map(|room| (1..members).map(move |n| member(room, n))).collect();
    target
        .each_post(users.iter().map(|user| {
            let registration = json!({"device": "browser", "kind": "webpush", "subscription": {
                "endpoint": format!("{endpoint}/{user}"), "keys": {"p256dh": BROWSER_KEY, "auth": "AAECAwQFBgcICQoLDA0ODw"}}});
            (user.clone(), "/v1/push/devices".to_owned(), Some(registration))
        }))
        .await?;

    let cpu_before = target.cpu_seconds();
    let (client, mut events) = rumqttc::AsyncClient::new(target.options("sender", "push-sender"), 1000);
    tokio::spawn(async move {
        while events.poll().await.is_ok_and(|e| !matches!(e, Event::Incoming(Packet::Disconnect))) {}
    });
    let started = Instant::now();
    for room in 0..rooms {
        client.publish(format!("rooms/push-{room}/messages"), QoS::AtLeastOnce, false, r#"{"body":"wake up"}"#).await?;
    }
    let expected = (rooms * (members - 1)) as u64;
    while received.count.load(Relaxed) < expected && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = target.cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
    let last = received.last.lock().expect("lock").unwrap_or(started);
    // a push planned twice would come later: counted, not timed
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pushes = received.count.load(Relaxed);
    let seconds = last.duration_since(started).as_secs_f64();
    Ok(json!({
        "scenario": "push", "rooms": rooms, "members": members, "pushes": pushes, "expected": expected,
        "seconds": crate::stats::round2(seconds), "pushes_per_s": crate::stats::round2(pushes.min(expected) as f64 / seconds),
        "cpu_ms_per_push": cpu.map(|cpu| crate::stats::round2(cpu * 1000.0 / pushes.clamp(1, expected) as f64)),
        "rss_mib": target.rss_kib().map(|kib| kib / 1024),
    }))
}
