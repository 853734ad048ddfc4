//! A NATS server (`nats-server`, Debian's 2.9 or any later one) on a free port, which a test
//! can kill and start again on the same port. The binary is `ROOST_NATS_BIN` or `nats-server`
//! on PATH (`.ci/run` installs Debian's).

use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running (or stopped) NATS server; killed when dropped.
pub(crate) struct NatsServer {
    child: Option<Child>,
    port: u16,
}

impl NatsServer {
    pub(crate) async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { child: None, port };
        server.resume().await;
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// kill -9: NATS is gone at once, as when its machine dies.
    pub(crate) async fn kill(&mut self) {
        let mut child = self.child.take().expect("NATS is running");
        child.kill().await.expect("kill nats-server");
    }

    /// Starts the server (again) on the same port and waits until it listens.
    pub(crate) async fn resume(&mut self) {
        assert!(self.child.is_none(), "NATS is already running");
        let binary = std::env::var("ROOST_NATS_BIN").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server runs: apt-get install nats-server, or set ROOST_NATS_BIN");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not listen on {}", self.port);
    }
}
