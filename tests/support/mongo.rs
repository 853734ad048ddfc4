//! A MongoDB-wire test server (`secantusd-rs`) on a free port with its own storage dir, which
//! a test can stop and start again. Shared by the store contract and the system tests.
//!
//! The binary is found in `ROOST_MONGO_BIN`, where `.ci/run` installs it
//! (`~/.cache/roost-mongo/bin`), or on PATH. Only `ROOST_SKIP_MONGO=1` skips, loudly.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running (or stopped) test server; killed when dropped.
pub(crate) struct MongoServer {
    child: Option<Child>,
    storage: tempfile::TempDir,
    port: u16,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ROOST_MONGO_BIN") {
        return path.into();
    }
    let installed = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/roost-mongo/bin/secantusd-rs"));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("secantusd-rs"));
    installed
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .expect("secantusd-rs not found: run .ci/run's install step, set ROOST_MONGO_BIN, or ROOST_SKIP_MONGO=1")
}

impl MongoServer {
    /// Starts a fresh server, or `None` (said loudly) when `ROOST_SKIP_MONGO=1`.
    pub(crate) async fn start(what: &str) -> Option<Self> {
        if std::env::var("ROOST_SKIP_MONGO").as_deref() == Ok("1") {
            eprintln!("!!! ROOST_SKIP_MONGO=1: {what} on MongoDB is SKIPPED !!!");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { child: None, storage: tempfile::tempdir().expect("temp dir"), port };
        server.resume().await;
        Some(server)
    }

    /// The URI of database `roost` on this server.
    pub(crate) fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/roost?directConnection=true&serverSelectionTimeoutMS=5000", self.port)
    }

    /// Stops the server the way an operator would (SIGTERM) and waits for it to exit.
    pub(crate) async fn stop(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        let pid = child.id().expect("running server has a pid").to_string();
        Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs");
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
            child.kill().await.expect("kill -9 the server");
        }
    }

    /// Starts the server (again) on the same port and storage, and waits until it listens.
    pub(crate) async fn resume(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--cache-size", "64M", "--storage-path"])
            .arg(self.storage.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start secantusd-rs");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("secantusd-rs did not listen on {}", self.port);
    }
}
