//! The client examples of `mobile-sdk-examples/` (Python, C, Rust, Node) in one scenario against
//! a live Roost, watched by a mosquitto_sub observer.

use crate::harness::{next_on, spawn_system, Output, System, PATIENCE};
use image::{ImageFormat, RgbImage};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mobile-sdk-examples")
}

/// `command` with the connection settings every example reads, as `user` with `token`.
fn example(system: &System, user: &str, token: &str, program: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env("ROOST_USER", user)
        .env("ROOST_TOKEN", token)
        .env("ROOST_MQTT_HOST", "127.0.0.1")
        .env("ROOST_MQTT_PORT", system.mqtt_port.to_string())
        .env("ROOST_MQTT_URL", format!("mqtt://127.0.0.1:{}", system.mqtt_port))
        .env("ROOST_HTTP", &system.http)
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The token of a new bot for room `lab`, made by its owner.
async fn bot_token(system: &System, owner_token: &str, name: &str) -> String {
    let bot = json!({"name": name, "rooms": ["lab"]});
    let (status, made) = system.call("POST", "/v1/bots", Some(owner_token), Some(bot)).await;
    assert_eq!(status, 201, "{made}");
    made["token"].as_str().expect("a bot token").to_owned()
}

/// Starts `command` and waits for the `ready` line it prints once subscribed.
async fn start_ready(mut command: Command, what: &str) -> (Child, Output) {
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{what} starts: {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(PATIENCE * 4, lines.next_line()).await;
    assert!(matches!(ready, Ok(Ok(Some(ref line))) if line == "ready"), "{what} never became ready: {ready:?}");
    (child, lines)
}

/// The next line of `out` that contains `text` (earlier ones skipped); panics after PATIENCE.
async fn line_with(out: &mut Output, text: &str, what: &str) -> String {
    let wanted = async {
        while let Some(line) = out.next_line().await.expect("a line") {
            if line.contains(text) {
                return line;
            }
        }
        panic!("{what} ended without a line containing {text:?}")
    };
    tokio::time::timeout(PATIENCE, wanted).await.unwrap_or_else(|_| panic!("{what} never printed {text:?}"))
}

/// Runs a build step of an example; panics with its output when it fails.
async fn build(command: &mut Command, what: &str) {
    let output = command.output().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(output.status.success(), "{what} failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn the_python_c_rust_and_node_examples_chat_with_each_other() {
    let node_modules = examples().join("node/node_modules");
    assert!(node_modules.is_dir(), "run `npm ci --prefix mobile-sdk-examples/node` first (.ci/run does)");
    let built = tempfile::tempdir().unwrap();
    build(
        Command::new("make").arg("-C").arg(examples().join("c-bot")).arg(format!("OUT={}", built.path().display())),
        "building c-bot (apt-get install libpaho-mqtt-dev)",
    )
    .await;
    // a target dir of its own: the one `cargo test` runs from stays locked while tests run
    let rust_target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/examples");
    build(
        Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "roost-rust-bot"])
            .env("CARGO_TARGET_DIR", &rust_target),
        "building rust-bot",
    )
    .await;

    let system = spawn_system().await;
    system.register("lena").await;
    system.room("lab", false, "lena", &["carol", "observer"]).await;
    let lena = system.token("lena", 600);
    let (helper, sensor, averager) = (
        bot_token(&system, &lena, "helper").await,
        bot_token(&system, &lena, "sensor-1").await,
        bot_token(&system, &lena, "averager").await,
    );
    let mut observer = system.mosquitto_sub("observer", &["rooms/lab/messages"]).await;

    // files to send: the Python bot a text file (--send-file), the Node client a small PNG (--file)
    let (notes, dot) = (built.path().join("notes.txt"), built.path().join("dot.png"));
    std::fs::write(&notes, "lab notes\n").unwrap();
    RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 60, y as u8 * 80, 90]))
        .save_with_format(&dot, ImageFormat::Png)
        .unwrap();

    let mut python = example(&system, "helper", &helper, "python3");
    python.arg(examples().join("python-bot/bot.py")).args(["--room", "lab", "--send-file"]).arg(&notes);
    let (python, mut python_out) = start_ready(python, "python-bot").await;
    let mut rust = example(&system, "averager", &averager, rust_target.join("debug/roost-rust-bot").to_str().unwrap());
    rust.args(["--room", "lab", "--every", "3", "--once"]);
    let (mut rust, mut rust_out) = start_ready(rust, "rust-bot").await;

    let sensor = example(&system, "sensor-1", &sensor, built.path().join("sensor").to_str().unwrap())
        .args(["--room", "lab", "--count", "3", "--every", "0.2"])
        .output()
        .await
        .expect("sensor runs");
    assert!(sensor.status.success(), "sensor: {}", String::from_utf8_lossy(&sensor.stdout));
    let report = tokio::time::timeout(PATIENCE, rust_out.next_line()).await.expect("rust-bot reports in time");
    let report = report.unwrap().expect("a report line");
    assert!(report.starts_with("average ") && report.ends_with(" C over 3 readings"), "{report}");
    assert!(tokio::time::timeout(PATIENCE, rust.wait()).await.expect("rust-bot exits after --once").unwrap().success());

    let node = example(&system, "carol", &system.token("carol", 600), "node")
        .arg(examples().join("node/chat.mjs"))
        .args(["--room", "lab", "--send", "!ping", "--until", "pong @carol", "--timeout", "20"])
        .output()
        .await
        .expect("node runs");
    let printed = String::from_utf8_lossy(&node.stdout);
    assert!(node.status.success(), "node: {printed}{}", String::from_utf8_lossy(&node.stderr));
    assert!(printed.contains("helper: pong @carol"), "{printed}");

    // uploads: carol sends a PNG as an attachment and asks the Python bot for its report, a
    // text file it generates, uploads and attaches; each side prints what it received
    let node = example(&system, "carol", &system.token("carol", 600), "node")
        .arg(examples().join("node/chat.mjs"))
        .args(["--room", "lab", "--file"])
        .arg(&dot)
        .args(["--send", "!report", "--until", "report for @carol", "--timeout", "20"])
        .output()
        .await
        .expect("node runs");
    let printed = String::from_utf8_lossy(&node.stdout);
    assert!(node.status.success(), "node: {printed}{}", String::from_utf8_lossy(&node.stderr));
    assert!(printed.contains("carol: dot.png\n  attachment dot.png (image/png, "), "{printed}");
    assert!(printed.contains(" bytes, 4x3) media "), "{printed}");
    assert!(printed.contains("helper: report for @carol\n  attachment report.txt (text/plain, "), "{printed}");
    let got = line_with(&mut python_out, "carol: attachment dot.png", "python-bot").await;
    assert!(got.contains("(image/png, ") && got.starts_with("lab ["), "{got}");

    // the observer saw the whole conversation, carol's ping before the bot's pong, the average
    // of the readings' data in the averager's, and the attachments expanded from the uploads
    let mut seen = Vec::new();
    while seen.len() < 10 {
        seen.push(next_on(&mut observer, "rooms/lab/messages").await);
    }
    let said: Vec<String> =
        seen.iter().map(|m| format!("{}: {}", m["from"].as_str().unwrap(), m["body"].as_str().unwrap())).collect();
    let celsius = |m: &Value| m["data"]["celsius"].as_f64();
    let readings: Vec<f64> = seen.iter().filter(|m| m["from"] == "sensor-1").filter_map(celsius).collect();
    assert_eq!(readings.len(), 3, "{seen:?}");
    let average = seen.iter().find(|m| m["from"] == "averager").expect("the average");
    assert_eq!(average["body"].as_str(), Some(report.as_str()));
    assert_eq!(average["data"]["readings"], 3);
    assert!((celsius(average).unwrap() - readings.iter().sum::<f64>() / 3.0).abs() < 1e-9, "{average}");
    let ping = said.iter().position(|m| m == "carol: !ping").expect("carol's ping");
    let pong = said.iter().position(|m| m == "helper: pong @carol").expect("the bot's pong");
    assert!(ping < pong, "{said:?}");
    let attached = |from: &str, body: &str| {
        let message = seen.iter().find(|m| m["from"] == from && m["body"] == body);
        let attachments = message.unwrap_or_else(|| panic!("{from}: {body} in {said:?}"))["attachments"].clone();
        assert_eq!(attachments.as_array().map(Vec::len), Some(1), "{attachments}");
        attachments[0].clone()
    };
    let sent_notes = attached("helper", "notes.txt");
    assert_eq!(
        (&sent_notes["filename"], &sent_notes["content_type"], &sent_notes["size"]),
        (&json!("notes.txt"), &json!("text/plain"), &json!(10)),
        "{sent_notes}"
    );
    let sent_dot = attached("carol", "dot.png");
    assert_eq!(
        (&sent_dot["content_type"], &sent_dot["width"], &sent_dot["height"]),
        (&json!("image/png"), &json!(4), &json!(3)),
        "{sent_dot}"
    );
    let sent_report = attached("helper", "report for @carol");
    assert_eq!(
        (&sent_report["filename"], &sent_report["content_type"]),
        (&json!("report.txt"), &json!("text/plain")),
        "{sent_report}"
    );
    // a member downloads the generated report with the bearer header: carol's three messages
    // were counted before her !report
    let media = sent_report["media"].as_str().expect("a media id");
    let (status, text) = system.call("GET", &format!("/v1/media/{media}"), Some(&lena), None).await;
    assert_eq!(status, 200, "{text}");
    let text = text.as_str().expect("the report's text");
    assert!(text.contains("carol\t3\n") && text.contains("sensor-1\t3\n"), "{text:?}");
    assert_eq!(sent_report["size"].as_u64(), Some(text.len() as u64));
    drop(python);
}
