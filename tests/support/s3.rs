//! A local S3-compatible server (moto's, from PyPI: `pip install 'moto[server]'`, which
//! `.ci/run` does) on a free port with one bucket. Only `ROOST_SKIP_S3=1` skips, loudly.

use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The bucket every test server has.
pub(crate) const BUCKET: &str = "roost-media";

/// A running server; killed when dropped.
pub(crate) struct S3Server {
    _child: Child,
    port: u16,
}

impl S3Server {
    /// Starts a server and makes [`BUCKET`], or `None` (said loudly) when `ROOST_SKIP_S3=1`.
    pub(crate) async fn start(what: &str) -> Option<Self> {
        if std::env::var("ROOST_SKIP_S3").as_deref() == Ok("1") {
            eprintln!("!!! ROOST_SKIP_S3=1: {what} on S3 is SKIPPED !!!");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server runs (pip install 'moto[server]', or ROOST_SKIP_S3=1)");
        let server = Self { _child: child, port };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // a signed request, as any S3 client makes; moto ships boto3
        let create = format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', \
             aws_secret_access_key='test', region_name='us-east-1').create_bucket(Bucket='{BUCKET}')",
            server.endpoint()
        );
        let made = Command::new("python3").args(["-c", &create]).output().await.expect("python3 runs");
        assert!(made.status.success(), "creating the bucket: {}", String::from_utf8_lossy(&made.stderr));
        Some(server)
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
