//! A Roost bot with rumqttc: watches a room for sensor readings (`temperature 21.4 C`) and,
//! after every `--every` of them, posts their average. `--once` exits after the first report.
//!
//!     ROOST_USER=averager ROOST_TOKEN=<access token> cargo run -p roost-rust-bot -- --room lab --every 3

use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use std::time::Duration;

struct Options {
    host: String,
    port: u16,
    room: String,
    every: usize,
    once: bool,
}

fn options() -> Options {
    let env = |name: &str, fallback: &str| std::env::var(name).unwrap_or_else(|_| fallback.to_owned());
    let mut options = Options {
        host: env("ROOST_MQTT_HOST", "127.0.0.1"),
        port: env("ROOST_MQTT_PORT", "1883").parse().expect("ROOST_MQTT_PORT is a port"),
        room: "lab".into(),
        every: 3,
        once: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--room" => options.room = args.next().expect("--room ROOM"),
            "--every" => options.every = args.next().and_then(|n| n.parse().ok()).expect("--every N"),
            "--once" => options.once = true,
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

/// The temperature of a reading's body, `temperature 21.4 C`.
fn celsius(body: &str) -> Option<f64> {
    body.strip_prefix("temperature ")?.strip_suffix(" C")?.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options = options();
    let user = std::env::var("ROOST_USER").expect("ROOST_USER");
    let token = std::env::var("ROOST_TOKEN").expect("ROOST_TOKEN");
    let topic = format!("rooms/{}/messages", options.room);

    let mut mqtt = MqttOptions::new(format!("{user}-averager"), options.host.clone(), options.port);
    mqtt.set_credentials(user.clone(), token).set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(mqtt, 16);

    let mut readings = Vec::new();
    loop {
        let event = match events.poll().await {
            Ok(event) => event,
            Err(error) => {
                // rumqttc reconnects on the next poll; a refused CONNECT (bad token) ends the bot
                eprintln!("connection: {error}");
                if matches!(error, rumqttc::ConnectionError::ConnectionRefused(_)) {
                    std::process::exit(1);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match event {
            Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
                client.subscribe(topic.as_str(), QoS::AtLeastOnce).await.expect("client running");
            }
            Event::Incoming(Packet::SubAck(_)) => println!("ready"),
            Event::Incoming(Packet::Publish(publish)) => {
                let Ok(message) = serde_json::from_slice::<Value>(&publish.payload) else { continue };
                let Some(value) = message["body"].as_str().and_then(celsius) else { continue };
                readings.push(value);
                if readings.len() < options.every {
                    continue;
                }
                let average = readings.iter().sum::<f64>() / readings.len() as f64;
                let report = format!("average {average:.1} C over {} readings", readings.len());
                readings.clear();
                let payload = json!({ "body": report }).to_string();
                client.publish(topic.as_str(), QoS::AtLeastOnce, false, payload).await.expect("client running");
                println!("{report}");
                if options.once {
                    client.disconnect().await.expect("client running");
                }
            }
            Event::Outgoing(rumqttc::Outgoing::Disconnect) => return,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::celsius;

    #[test]
    fn reads_the_temperature_of_a_reading() {
        assert_eq!(celsius("temperature 21.4 C"), Some(21.4));
        assert_eq!(celsius("temperature hot"), None);
        assert_eq!(celsius("!ping"), None);
    }
}
