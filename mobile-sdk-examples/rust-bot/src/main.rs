//! A Roost bot with rumqttc: watches a room for sensor readings (messages with
//! `"data":{"celsius":21.4}`) and, after every `--every` of them, posts their average. Edits,
//! deletes and reactions share the topic (with a `type`); they are never readings.
//! `--once` exits after the first report.
//!
//!     ROOST_USER=averager ROOST_TOKEN=<bot token> cargo run -p roost-rust-bot -- --room lab --every 3

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

/// The reading a room envelope carries: a message's `data.celsius`. Chat messages have none, and
/// events (`"type":"edit"|"delete"|"reaction"`, PROTOCOL.md 4) are not readings.
fn reading(envelope: &Value) -> Option<f64> {
    if envelope.get("type").is_some() {
        return None;
    }
    envelope["data"]["celsius"].as_f64()
}

/// The average of `readings` as a room message: a line for people, the numbers in `data`.
fn average_message(readings: &[f64]) -> Value {
    let average = readings.iter().sum::<f64>() / readings.len() as f64;
    json!({
        "body": format!("average {average:.1} C over {} readings", readings.len()),
        "data": { "celsius": average, "readings": readings.len() },
    })
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
                let Some(value) = reading(&message) else { continue };
                readings.push(value);
                if readings.len() < options.every {
                    continue;
                }
                let report = average_message(&readings);
                readings.clear();
                client
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, report.to_string())
                    .await
                    .expect("client running");
                println!("{}", report["body"].as_str().expect("a body"));
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
    use super::{average_message, reading};
    use serde_json::json;

    #[test]
    fn the_average_goes_out_for_people_and_for_machines() {
        assert_eq!(
            average_message(&[21.0, 22.0, 23.5]),
            json!({"body": "average 22.2 C over 3 readings", "data": {"celsius": 22.166666666666668, "readings": 3}})
        );
    }

    #[test]
    fn only_messages_are_readings() {
        assert_eq!(reading(&json!({"seq": 4, "body": "21.5 C", "data": {"celsius": 21.5}})), Some(21.5));
        assert_eq!(reading(&json!({"seq": 5, "body": "lunch?"})), None);
        assert_eq!(reading(&json!({"seq": 6, "type": "edit", "target": 4, "body": "21.6 C"})), None);
        assert_eq!(reading(&json!({"seq": 7, "type": "reaction", "target": 4, "key": "👍", "on": true})), None);
    }
}
