//! rumqttd 0.20.0 with no edge in front: the baseline Roost is compared with.
//!
//! Usage: raw-rumqttd PORT. Anonymous MQTT 3.1.1 on 127.0.0.1:PORT, the same router settings
//! as Roost's embedded router, no delay between accepts.

use rumqttd::{Broker, Config, ConnectionSettings, ServerSettings};
use std::collections::HashMap;

fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: raw-rumqttd PORT"))?.parse()?;
    let router = roost_broker::router_config(100_064);
    let server = ServerSettings {
        name: "v4".into(),
        listen: ([127, 0, 0, 1], port).into(),
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 256 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config { id: 0, router, v4: Some(HashMap::from([("v4".to_owned(), server)])), ..Config::default() };
    Broker::new(config).start()?;
    Ok(())
}
