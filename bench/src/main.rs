//! `loadgen`: drives any MQTT 3.1.1 broker with rumqttc and prints one JSON line of results.
//!
//! Against Roost it authenticates (tokens minted with the server's secret) and creates the
//! rooms over HTTP; against mosquitto or raw rumqttd it connects anonymously. Every payload is
//! a Roost message `{"body":"<send time ns> <padding>"}`, so the same bytes are valid everywhere
//! and the receiver reads the send time from the body for publish->deliver latency.

mod scenarios;
mod stats;
mod target;

use clap::{Parser, Subcommand};
use target::Target;

#[derive(Parser)]
#[command(about = "MQTT load generator for Roost, mosquitto and raw rumqttd")]
struct Cli {
    /// The broker's MQTT port on 127.0.0.1 (repeated: each node of a Roost cluster).
    #[arg(long, required = true)]
    port: Vec<u16>,
    /// Roost's HTTP API, e.g. http://127.0.0.1:8080; with --secret makes this a Roost run.
    #[arg(long, requires = "secret")]
    http: Option<String>,
    /// Roost's HS256 secret, to mint tokens.
    #[arg(long, env = "ROOST_AUTH__SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The broker's process id, to report its CPU and resident memory (repeated: each node).
    #[arg(long)]
    pid: Vec<u32>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// One publisher, many subscribers on one room, as fast as the broker takes it.
    Fanout {
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        qos: u8,
    },
    /// Rooms whose members take turns between the nodes (member m on node m % nodes); the
    /// members on the first node publish at a fixed rate, every member is subscribed; latency
    /// reported apart for subscribers on the publisher's node and on the others.
    Nodes {
        #[arg(long, default_value_t = 200)]
        rooms: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Messages per second per publishing member.
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// Rooms of members, each member publishing at a fixed rate and subscribed to its room.
    Chat {
        #[arg(long, default_value_t = 1000)]
        rooms: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Messages per second per member.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Seconds at the start whose messages' latencies are reported apart (`latency_warmup`).
        #[arg(long, default_value_t = 5)]
        warmup: u64,
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// Ramp to many idle clients (Roost: with presence wills) and hold them.
    Connections {
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
    },
    /// Roost's history API at a fixed request rate (open loop), e.g. after `persistence`.
    History {
        #[arg(long, default_value = "persist-0")]
        room: String,
        /// A member of the room, to read as.
        #[arg(long, default_value = "p0")]
        reader: String,
        /// Requests per second.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Users in rooms of ten, all online on `presence/+` and `rooms/+/+`, a share of them
    /// reconnecting every second: the broker's CPU time per presence change (Roost).
    Presence {
        #[arg(long, default_value_t = 2000)]
        users: usize,
        /// Users reconnecting per second, in percent of all (round robin).
        #[arg(long, default_value_t = 2.0)]
        percent: f64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Rooms created, used and deleted over HTTP, then a fixed chat load measured (Roost).
    Rooms {
        /// Rooms to create, use (one message) and delete before the load; 0: the baseline.
        #[arg(long, default_value_t = 0)]
        churn: usize,
        /// Rooms earlier runs churned on this broker: names go on from there, the report counts them.
        #[arg(long, default_value_t = 0)]
        churned_before: usize,
        /// Rooms in flight at once, each worked through by its own owner account.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The load: rooms of `load_members`, each member sending 1 msg/s for `seconds`.
        #[arg(long, default_value_t = 100)]
        load_rooms: usize,
        #[arg(long, default_value_t = 10)]
        load_members: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Offline members with a registered browser each, one message per room: Web Push
    /// requests per second to a local push service (Roost, `push.coalesce_ms = 0`).
    Push {
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        #[arg(long, default_value_t = 100)]
        members: usize,
    },
    /// QoS 1 messages through the broker, then (Roost) counted back from history.
    Persistence {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 10)]
        publishers: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let target = Target::new(cli.port, cli.http, cli.secret.as_deref(), cli.pid);
    let report = match cli.scenario {
        Scenario::Fanout { subscribers, messages, size, qos } => {
            scenarios::fanout(&target, subscribers, messages, size, qos).await?
        }
        Scenario::Nodes { rooms, members, rate, seconds, size } => {
            scenarios::nodes(&target, rooms, members, rate, seconds, size).await?
        }
        Scenario::Chat { rooms, members, rate, seconds, warmup, size } => {
            scenarios::chat(&target, rooms, members, rate, seconds, warmup, size).await?
        }
        Scenario::Connections { count, concurrency } => scenarios::connections(&target, count, concurrency).await?,
        Scenario::History { room, reader, rate, seconds } => {
            scenarios::history(&target, &room, &reader, rate, seconds).await?
        }
        Scenario::Presence { users, percent, seconds } => scenarios::presence(&target, users, percent, seconds).await?,
        Scenario::Rooms { churn, churned_before, concurrency, load_rooms, load_members, seconds } => {
            scenarios::rooms(&target, churned_before, churn, concurrency, load_rooms, load_members, seconds).await?
        }
        Scenario::Push { rooms, members } => scenarios::push(&target, rooms, members).await?,
        Scenario::Persistence { messages, publishers, size } => {
            scenarios::persistence(&target, messages, publishers, size).await?
        }
    };
    println!("{report}");
    Ok(())
}
