//! An acknowledgement means stored: under steady QoS 1 traffic from clients that retry what
//! was not acknowledged, kill or stop a part of Roost and check that every acknowledged message
//! is in history exactly once, in order per room.

use crate::harness::{spawn_on_mongo, spawn_split, spawn_system, System, PATIENCE};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) const SENDERS: [&str; 2] = ["alice", "bob"];
const ROOMS: [&str; 4] = ["r0", "r1", "r2", "r3"];
/// Messages per second per sender: 2,000/s in all.
const RATE: u32 = 1000;

/// Registers the senders and puts them in every room.
pub(crate) async fn prepare(system: &System) {
    for user in SENDERS {
        system.register(user).await;
    }
    for room in ROOMS {
        system.room(room, false, SENDERS[0], &SENDERS[1..]).await;
    }
}

/// Starts one retrying publisher (tests/system/py/sender.py) per sender.
fn start_senders(system: &System, seconds: u32) -> Vec<Child> {
    SENDERS.iter().map(|user| start_sender(system, system.mqtt_port, user, RATE, seconds)).collect()
}

/// Starts a retrying publisher (tests/system/py/sender.py) as `user` on MQTT `port` (the
/// system's, or a load balancer's in front of it): `rate` messages a second over every room
/// for `seconds`.
pub(crate) fn start_sender(system: &System, port: u16, user: &str, rate: u32, seconds: u32) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/py/sender.py");
    Command::new("python3")
        .arg(&script)
        .args(["127.0.0.1", &port.to_string(), user, &system.token(user, 3600)])
        .args([ROOMS.join(","), rate.to_string(), seconds.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs")
}

/// Waits for the senders to finish and returns the ids they had acknowledged.
pub(crate) async fn acknowledged(senders: Vec<Child>) -> Vec<String> {
    let mut ids = Vec::new();
    for mut sender in senders {
        let stdout = sender.stdout.take().expect("piped stdout");
        let line = tokio::time::timeout(Duration::from_secs(240), BufReader::new(stdout).lines().next_line())
            .await
            .expect("sender finishes")
            .expect("readable")
            .expect("sender printed its report");
        let report: Value = serde_json::from_str(&line).expect("JSON report");
        assert_eq!(report["unacked"], 0, "every message was acknowledged in the end: {}", report["unacked"]);
        assert_eq!(report["acked"].as_array().unwrap().len() as u64, report["sent"].as_u64().unwrap());
        eprintln!("sender: {} sent, {} reconnects", report["sent"], report["reconnects"]);
        ids.extend(report["acked"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()));
    }
    ids
}

/// Every acknowledged id is in history exactly once, and each room's history keeps each
/// sender's order.
pub(crate) async fn assert_stored_exactly_once_in_order(system: &System, acknowledged: &[String]) {
    let mut seen = HashSet::new();
    for room in ROOMS {
        let mut after = 0;
        let mut last_of_sender: HashMap<String, u64> = HashMap::new();
        loop {
            let page = system.history(room, SENDERS[0], &format!("?after={after}&limit=500")).await;
            let Some(last) = page.last() else { break };
            after = last["seq"].as_i64().unwrap();
            for message in &page {
                let id = message["id"].as_str().unwrap().to_owned();
                let (sender, n) = id.rsplit_once('-').unwrap();
                let n: u64 = n.parse().unwrap();
                if let Some(previous) = last_of_sender.insert(sender.to_owned(), n) {
                    assert!(previous < n, "{room}: {sender}'s message {n} stored after {previous}");
                }
                assert!(seen.insert(id.clone()), "{id} is stored twice");
            }
        }
    }
    let missing: Vec<_> = acknowledged.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages are not stored, e.g. {:?}",
        missing.len(),
        &missing[..3.min(missing.len())]
    );
}

/// `/healthz` status code.
async fn health(system: &System) -> u16 {
    system.call("GET", "/healthz", None, None).await.0
}

/// Runs the senders for `seconds`, lets `failure` strike `after` into it, then checks that
/// every acknowledged message is stored exactly once, in order.
async fn under_load(mut system: System, seconds: u32, after: Duration, failure: impl AsyncFnOnce(&mut System)) {
    prepare(&system).await;
    let senders = start_senders(&system, seconds);
    tokio::time::sleep(after).await;
    failure(&mut system).await;
    let acknowledged = acknowledged(senders).await;
    assert_stored_exactly_once_in_order(&system, &acknowledged).await;
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn embedded_all_in_one_killed_under_load_keeps_every_acknowledged_message() {
    under_load(spawn_system().await, 8, 3 * SECOND, async |system| system.crash_and_restart().await).await;
}

#[tokio::test]
async fn mongodb_all_in_one_killed_under_load_keeps_every_acknowledged_message() {
    let Some(system) = spawn_on_mongo("the all-in-one kill test").await else { return };
    under_load(system, 8, 3 * SECOND, async |system| system.crash_and_restart().await).await;
}

#[tokio::test]
async fn split_broker_killed_under_load_keeps_every_acknowledged_message() {
    let Some(system) = spawn_split("the broker kill test").await else { return };
    under_load(system, 8, 3 * SECOND, async |system| system.crash_broker_for(SECOND).await).await;
}

#[tokio::test]
async fn split_history_killed_for_ten_seconds_loses_nothing() {
    let Some(system) = spawn_split("the history kill test").await else { return };
    under_load(system, 15, 2 * SECOND, async |system| system.crash_history_for(10 * SECOND).await).await;
}

#[tokio::test]
async fn mongodb_stopped_for_thirty_seconds_holds_acknowledgements_and_loses_nothing() {
    let Some(system) = spawn_split("the store outage test").await else { return };
    assert_eq!(health(&system).await, 200);
    under_load(system, 10, 3 * SECOND, async |system| {
        system.mongo().stop().await;
        let outage = tokio::time::Instant::now();
        let mut degraded = false;
        while outage.elapsed() < 30 * SECOND {
            degraded |= health(system).await == 503;
            tokio::time::sleep(SECOND).await;
        }
        assert!(degraded, "/healthz reports the outage");
        system.mongo().resume().await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while health(system).await != 200 {
            assert!(tokio::time::Instant::now() < deadline, "/healthz recovers");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}
