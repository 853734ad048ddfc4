//! Uploads (issue 17): in over HTTP, sniffed and cleaned, out to members with ranges and signed
//! URLs, attached to messages by id.

use crate::harness::{next_on, spawn_on_mongo_with, spawn_with, Agent, S3Server, System, BUCKET};
use image::{DynamicImage, GenericImageView, ImageFormat, RgbImage};
use serde_json::{json, Value};
use std::io::Cursor;
use std::time::Duration;
use tokio::process::Command;

/// `user` uploads `bytes` declared as `content_type` to `room`: status and JSON body.
async fn upload(
    system: &System,
    user: &str,
    room: &str,
    filename: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/rooms/{room}/media?filename={filename}", system.http))
        .bearer_auth(system.token(user, 600))
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("upload request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// GET `path` with `headers`, as `user` when given: status, headers and bytes.
async fn fetch(
    system: &System,
    path: &str,
    user: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", system.http));
    if let Some(user) = user {
        request = request.bearer_auth(system.token(user, 600));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("download request");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.bytes().await.expect("body").to_vec())
}

fn pdf() -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend((0..300_000u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 24) as u8));
    bytes.extend_from_slice(b"\n%%EOF\n");
    bytes
}

fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let image = DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 90])));
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// A JPEG of `width` x `height` whose EXIF says "rotate 90 degrees clockwise" and carries a
/// GPS position (latitude reference N), as a phone camera writes it.
fn photo_with_gps(width: u32, height: u32) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&[0, 2]); // IFD0: two entries
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]); // Orientation = 6
    tiff.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 38]); // GPS IFD at 38
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    tiff.extend_from_slice(&[0, 1]); // GPS IFD: one entry
    tiff.extend_from_slice(&[0x00, 0x01, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]); // GPSLatitudeRef = N
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let jpeg = encoded(width, height, ImageFormat::Jpeg);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
    out.extend(app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Proves: a PDF comes back byte for byte to members only (others 404), with a range (206), its
/// ETag (304), the safety headers, and through its signed URL without a header until it expires.
#[tokio::test]
async fn a_pdf_round_trips_to_members_with_ranges_and_signed_urls() {
    let system = spawn_with(&[("ROOST_MEDIA__URL_TTL", "3")]).await;
    system.room("lobby", false, "alice", &["bob"]).await;
    system.room("attic", false, "carol", &[]).await;
    let original = pdf();
    let (status, uploaded) =
        upload(&system, "alice", "lobby", "Q3 report.pdf", "application/pdf", original.clone()).await;
    assert_eq!(status, 201, "{uploaded}");
    assert_eq!(uploaded["content_type"], "application/pdf");
    assert_eq!(uploaded["size"], original.len());
    assert_eq!(uploaded["filename"], "Q3 report.pdf");
    let id = uploaded["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/media/{id}");

    let (status, headers, bytes) = fetch(&system, &path, Some("bob"), &[]).await;
    assert_eq!(status, 200);
    assert!(bytes == original, "byte for byte");
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-security-policy"], "sandbox");
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment;"), "a PDF downloads");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(fetch(&system, &path, Some("bob"), &[("if-none-match", &etag)]).await.0, 304);

    let (status, headers, part) = fetch(&system, &path, Some("bob"), &[("range", "bytes=1000-1999")]).await;
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], format!("bytes 1000-1999/{}", original.len()).as_str());
    assert!(part == original[1000..2000]);
    let (status, _, tail) = fetch(&system, &path, Some("bob"), &[("range", "bytes=-7")]).await;
    assert_eq!((status, tail.as_slice()), (206, &b"\n%%EOF\n"[..]));
    assert_eq!(fetch(&system, &path, Some("bob"), &[("range", "bytes=99999999-")]).await.0, 416);

    assert_eq!(fetch(&system, &path, Some("carol"), &[]).await.0, 404, "not a member of lobby");
    assert_eq!(fetch(&system, &path, None, &[]).await.0, 401);
    let signed = uploaded["url"].as_str().expect("signed url");
    let (status, _, bytes) = fetch(&system, signed, None, &[]).await;
    assert_eq!(status, 200, "a signed URL needs no header");
    assert!(bytes == original);
    // a browser's form (past axum's 2 MB default body limit): the file part's name and type stand in for the query and the header
    let form = system.data_dir().join("form notes.txt");
    std::fs::write(&form, "notes\n".repeat(500_000)).unwrap();
    let curl = Command::new("curl")
        .args(["-s", "-H", &format!("authorization: Bearer {}", system.token("alice", 600)), "-F"])
        .arg(format!("file=@{};type=text/plain", form.display()))
        .arg(format!("{}/v1/rooms/lobby/media", system.http))
        .output()
        .await
        .expect("curl runs");
    let answer: Value = serde_json::from_slice(&curl.stdout).expect("JSON");
    assert_eq!(
        (answer["filename"].as_str(), answer["size"].as_u64()),
        (Some("form notes.txt"), Some(3_000_000)),
        "{answer}"
    );
    let forged = format!("{}0", signed.trim_end_matches(|c: char| c.is_ascii_hexdigit()));
    assert_eq!(fetch(&system, &forged, None, &[]).await.0, 404);
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    assert_eq!(fetch(&system, signed, None, &[]).await.0, 404, "expired");
}

/// Proves: a phone photo is turned upright and loses its EXIF block (GPS with it); thumbnails fit
/// the box asked for and are never larger than the image.
#[tokio::test]
async fn photos_lose_their_gps_and_get_thumbnails() {
    let system = spawn_with(&[]).await;
    system.room("lobby", false, "alice", &[]).await;
    let photo = photo_with_gps(400, 200);
    assert!(photo.windows(6).any(|w| w == b"Exif\0\0"), "the upload has EXIF");
    let (status, uploaded) = upload(&system, "alice", "lobby", "IMG_0001.jpg", "image/jpeg", photo).await;
    assert_eq!(status, 201, "{uploaded}");
    assert_eq!((uploaded["width"].as_u64(), uploaded["height"].as_u64()), (Some(200), Some(400)), "upright");
    let id = uploaded["id"].as_str().unwrap();

    let (status, headers, stored) = fetch(&system, &format!("/v1/media/{id}"), Some("alice"), &[]).await;
    assert_eq!(status, 200);
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("inline;"), "photos show in place");
    assert!(!stored.windows(4).any(|w| w == b"Exif"), "no EXIF left, so no GPS");
    let stored = image::load_from_memory(&stored).expect("a JPEG still");
    assert_eq!(stored.dimensions(), (200, 400));
    assert_eq!(uploaded["size"], headers["content-length"].to_str().unwrap().parse::<u64>().unwrap());

    let (status, headers, thumb) =
        fetch(&system, &format!("/v1/media/{id}/thumbnail?width=96&height=96"), Some("alice"), &[]).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (200, "image/jpeg"));
    assert_eq!(image::load_from_memory(&thumb).unwrap().dimensions(), (48, 96));
    let (_, _, big) =
        fetch(&system, &format!("/v1/media/{id}/thumbnail?width=1000&height=1000"), Some("alice"), &[]).await;
    assert_eq!(image::load_from_memory(&big).unwrap().dimensions(), (200, 400), "never upscaled");
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Proves: past `media.max_upload_size` the upload is refused with 413 as it streams in (the
/// server's memory does not grow by its size), a type that is not what the bytes are is 415,
/// and a file type not accepted is 415.
#[tokio::test]
async fn oversized_and_disguised_uploads_are_refused() {
    let system = spawn_with(&[("ROOST_MEDIA__MAX_UPLOAD_SIZE", "1048576")]).await;
    system.room("lobby", false, "alice", &[]).await;
    let big = system.data_dir().join("big.bin");
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.resize(64 * 1024 * 1024, b'x');
    std::fs::write(&big, bytes).unwrap();
    let before = resident_kib(system.pid());
    let curl = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "content-type: application/pdf"])
        .args(["-H", &format!("authorization: Bearer {}", system.token("alice", 600))])
        .arg("--data-binary")
        .arg(format!("@{}", big.display()))
        .arg(format!("{}/v1/rooms/lobby/media?filename=big.pdf", system.http))
        .output()
        .await
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "413");
    let grown = resident_kib(system.pid()).saturating_sub(before);
    assert!(grown < 16 * 1024, "RSS grew {grown} KiB for a 64 MiB upload refused at 1 MiB");

    let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>".to_vec();
    let (status, body) = upload(&system, "alice", "lobby", "cat.png", "image/png", html).await;
    assert_eq!((status, body["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "{body}");
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
    assert_eq!(upload(&system, "alice", "lobby", "a.out", "application/octet-stream", elf).await.0, 415);
    let text = "h\u{e9}llo, plain text\n".as_bytes().to_vec();
    let (status, body) = upload(&system, "alice", "lobby", "note.txt", "text/plain; charset=utf-8", text).await;
    assert_eq!((status, body["content_type"].as_str()), (201, Some("text/plain")), "{body}");
    // as for its history: a public room says "join first", a private one does not exist
    assert_eq!(upload(&system, "bob", "lobby", "x.txt", "text/plain", b"hi".to_vec()).await.0, 403, "not a member");
}

/// Proves: a message naming an upload of its room is delivered and stored with the upload's
/// facts; one naming another room's upload, or none, is refused (MQTT 5: 0x99); an upload is
/// deleted by its uploader only while no message shows it.
#[tokio::test]
async fn messages_attach_uploads_of_their_own_room_only() {
    let system = spawn_with(&[]).await;
    system.room("lobby", false, "alice", &["bob"]).await;
    system.room("attic", false, "alice", &[]).await;
    let (_, picture) = upload(&system, "alice", "lobby", "cat.png", "image/png", encoded(3, 2, ImageFormat::Png)).await;
    let (_, elsewhere) =
        upload(&system, "alice", "attic", "dog.png", "image/png", encoded(3, 2, ImageFormat::Png)).await;
    let (_, spare) = upload(&system, "alice", "lobby", "spare.txt", "text/plain", b"spare".to_vec()).await;
    let mut bob = system.mosquitto_sub("bob", &["rooms/lobby/messages"]).await;
    let mut alice = Agent::online(&system, "alice", json!({"protocol": 5})).await;

    let message = json!({"body": "look", "attachments": [{"media": picture["id"]}]}).to_string();
    alice.publish("rooms/lobby/messages", &message, 1).await;
    assert_eq!(alice.expect("published").await["rc"], 0);
    let delivered = next_on(&mut bob, "rooms/lobby/messages").await;
    let expected = json!([{"media": picture["id"], "content_type": "image/png", "size": picture["size"],
        "filename": "cat.png", "width": 3, "height": 2}]);
    assert_eq!(delivered["attachments"], expected);
    assert_eq!(system.history("lobby", "bob", "").await, vec![delivered]);

    for media in [elsewhere["id"].clone(), json!("no-such-upload")] {
        let message = json!({"body": "x", "attachments": [{"media": media}]}).to_string();
        alice.publish("rooms/lobby/messages", &message, 1).await;
        assert_eq!(alice.expect("published").await["rc"], 0x99, "{media}");
    }
    assert_eq!(system.history("lobby", "bob", "").await.len(), 1, "the refused ones are not stored");

    let alice_token = system.token("alice", 600);
    let bob_token = system.token("bob", 600);
    let path = |upload: &Value| format!("/v1/media/{}", upload["id"].as_str().unwrap());
    assert_eq!(system.call("DELETE", &path(&picture), Some(&alice_token), None).await.0, 403, "a message shows it");
    assert_eq!(system.call("DELETE", &path(&spare), Some(&bob_token), None).await.0, 403, "not bob's");
    assert_eq!(system.call("DELETE", &path(&spare), Some(&alice_token), None).await.0, 204);
    assert_eq!(fetch(&system, &path(&spare), Some("alice"), &[]).await.0, 404);
}

/// A PDF in and out, whole and by range, on `system`; its bytes are not under the data dir.
async fn round_trip_elsewhere(system: &System) {
    system.room("lobby", false, "alice", &["bob"]).await;
    let original = pdf();
    let (status, uploaded) = upload(system, "alice", "lobby", "a.pdf", "application/pdf", original.clone()).await;
    assert_eq!(status, 201, "{uploaded}");
    let path = format!("/v1/media/{}", uploaded["id"].as_str().unwrap());
    let (status, _, bytes) = fetch(system, &path, Some("bob"), &[]).await;
    assert!(status == 200 && bytes == original, "{status}: byte for byte");
    let (status, _, part) = fetch(system, &path, Some("bob"), &[("range", "bytes=261000-262999")]).await;
    assert!(status == 206 && part == original[261_000..263_000], "{status}: a range across chunks");
    assert!(!system.data_dir().join("media/blobs").exists(), "nothing kept under the data dir");
    assert_eq!(system.call("DELETE", &path, Some(&system.token("alice", 60)), None).await.0, 204);
    assert_eq!(fetch(system, &path, Some("bob"), &[]).await.0, 404);
}

/// Proves: with `media.store = "gridfs"` uploads live in the MongoDB of `store.uri`.
#[tokio::test]
async fn uploads_live_in_gridfs() {
    let Some(system) = spawn_on_mongo_with("uploads in GridFS", &[("ROOST_MEDIA__STORE", "gridfs")]).await else {
        return;
    };
    round_trip_elsewhere(&system).await;
}

/// Proves: with `media.store = "s3"` uploads live in the bucket (a local S3-compatible server).
#[tokio::test]
async fn uploads_live_in_s3() {
    let Some(s3) = S3Server::start("uploads in S3").await else { return };
    let endpoint = s3.endpoint();
    let system = spawn_with(&[
        ("ROOST_MEDIA__STORE", "s3"),
        ("ROOST_MEDIA__S3__BUCKET", BUCKET),
        ("ROOST_MEDIA__S3__ENDPOINT", &endpoint),
        ("ROOST_MEDIA__S3__REGION", "us-east-1"),
        ("ROOST_MEDIA__S3__ACCESS_KEY_ID", "test"),
        ("ROOST_MEDIA__S3__SECRET_ACCESS_KEY", "test"),
        ("ROOST_MEDIA__S3__ALLOW_HTTP", "true"),
    ])
    .await;
    round_trip_elsewhere(&system).await;
}

/// Files in the data dir's blob store.
fn blob_files(system: &System) -> usize {
    std::fs::read_dir(system.data_dir().join("media/blobs")).map_or(0, Iterator::count)
}

/// Proves: an upload no message shows goes after `media.unused_ttl`; one a message shows stays;
/// a deleted room's uploads are gone at once and their bytes at the next sweep.
#[tokio::test]
async fn unused_uploads_and_deleted_rooms_uploads_are_swept() {
    let system = spawn_with(&[("ROOST_MEDIA__UNUSED_TTL", "1"), ("ROOST_MEDIA__SWEEP_INTERVAL", "1")]).await;
    system.room("lobby", false, "alice", &[]).await;
    system.room("attic", false, "alice", &[]).await;
    let (_, unused) = upload(&system, "alice", "lobby", "unused.txt", "text/plain", b"unused".to_vec()).await;
    let (_, shown) = upload(&system, "alice", "lobby", "shown.txt", "text/plain", b"shown".to_vec()).await;
    let (_, of_attic) = upload(&system, "alice", "attic", "attic.txt", "text/plain", b"attic".to_vec()).await;
    for (room, upload) in [("lobby", &shown), ("attic", &of_attic)] {
        let message = json!({"body": "", "attachments": [{"media": upload["id"]}]}).to_string();
        let (code, stderr) = system
            .mosquitto_pub("alice", &system.token("alice", 60), &format!("rooms/{room}/messages"), &message, 1)
            .await;
        assert_eq!(code, 0, "{stderr}");
    }
    assert_eq!(blob_files(&system), 3);
    let path = |upload: &Value| format!("/v1/media/{}", upload["id"].as_str().unwrap());
    let (status, _) = system.call("DELETE", "/v1/rooms/attic", Some(&system.token("alice", 60)), None).await;
    assert_eq!(status, 204);
    assert_eq!(fetch(&system, &path(&of_attic), Some("alice"), &[]).await.0, 404, "gone with its room at once");

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while blob_files(&system) > 1 {
        assert!(std::time::Instant::now() < deadline, "{} blobs left", blob_files(&system));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fetch(&system, &path(&unused), Some("alice"), &[]).await.0, 404, "unused past its ttl");
    assert_eq!(fetch(&system, &path(&shown), Some("alice"), &[]).await.0, 200, "a message shows it");
}
