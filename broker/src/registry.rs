//! Sessions by link id: which connection holds each one (takeover stops the holder and waits
//! for its teardown), the state of sessions that outlive their connection, and the wills
//! waiting out their delay.

use crate::subscriptions::Subscriptions;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

struct Entry {
    generation: u64,
    kick: Arc<Notify>,
    ended: oneshot::Receiver<()>,
}

/// A session kept after its connection ended, until `expires_at`.
struct Saved {
    subscriptions: Subscriptions,
    expires_at: Option<Instant>,
}

/// What the registry knows of a session a connection asks for.
pub(crate) enum Stored {
    /// No session: the router holds no state for the link id either.
    None,
    /// A live session to resume.
    Live(Subscriptions),
    /// A session that expired: the router may still hold its state.
    Expired,
}

/// What becomes of a will waiting out its delay.
pub(crate) enum WillFate {
    /// The session was resumed: the will never fires.
    Cancel,
    /// The session ended early (a clean start took the client id): publish now.
    PublishNow,
}

#[derive(Default)]
pub(crate) struct Registry {
    live: Mutex<HashMap<String, Entry>>,
    saved: Mutex<HashMap<String, Saved>>,
    wills: Mutex<HashMap<String, oneshot::Sender<WillFate>>>,
    generations: AtomicU64,
    shutting_down: AtomicBool,
}

/// A connection's claim on its link id; dropping it releases the id and wakes a waiting
/// successor, so drop it only after the connection's teardown.
pub(crate) struct Claim {
    registry: Arc<Registry>,
    link_id: String,
    pub(crate) generation: u64,
    pub(crate) kicked: Arc<Notify>,
    _ended: oneshot::Sender<()>,
}

impl Registry {
    /// Claims `link_id`, stopping and awaiting the connection that held it.
    pub(crate) async fn claim(self: &Arc<Self>, link_id: &str) -> Claim {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let kicked = Arc::new(Notify::new());
        let (ended_tx, ended_rx) = oneshot::channel();
        let entry = Entry { generation, kick: kicked.clone(), ended: ended_rx };
        let previous = self.live.lock().expect("registry lock").insert(link_id.to_owned(), entry);
        if let Some(previous) = previous {
            previous.kick.notify_one();
            let _ = previous.ended.await;
        }
        Claim { registry: self.clone(), link_id: link_id.to_owned(), generation, kicked, _ended: ended_tx }
    }

    /// Stops every connection (shutdown).
    pub(crate) fn kick_all(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        for entry in self.live.lock().expect("registry lock").values() {
            entry.kick.notify_one();
        }
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Keeps a session whose connection ended for `expiry` (`None`: for ever).
    pub(crate) fn save(&self, link_id: &str, subscriptions: Subscriptions, expiry: Option<Duration>) {
        let saved = Saved { subscriptions, expires_at: expiry.map(|expiry| Instant::now() + expiry) };
        self.saved.lock().expect("registry lock").insert(link_id.to_owned(), saved);
    }

    /// Takes the session saved for `link_id`.
    pub(crate) fn take(&self, link_id: &str) -> Stored {
        match self.saved.lock().expect("registry lock").remove(link_id) {
            None => Stored::None,
            Some(saved) if saved.expires_at.is_some_and(|at| at <= Instant::now()) => Stored::Expired,
            Some(saved) => Stored::Live(saved.subscriptions),
        }
    }

    /// Holds a delayed will; it is published by `publish` after `delay` unless [`Registry::settle_will`]
    /// decides otherwise first.
    pub(crate) fn defer_will(
        self: &Arc<Self>,
        link_id: &str,
        delay: Duration,
        publish: impl FnOnce() + Send + 'static,
    ) {
        let (fate_tx, fate) = oneshot::channel();
        self.wills.lock().expect("registry lock").insert(link_id.to_owned(), fate_tx);
        let registry = self.clone();
        let link_id = link_id.to_owned();
        tokio::spawn(async move {
            let fate = tokio::time::timeout(delay, fate).await;
            if !matches!(fate, Ok(Ok(WillFate::Cancel))) {
                publish();
            }
            if fate.is_err() {
                registry.wills.lock().expect("registry lock").remove(&link_id);
            }
        });
    }

    /// A new connection took `link_id`: a will still waiting fires now, unless the session
    /// was resumed.
    pub(crate) fn settle_will(&self, link_id: &str, resumed: bool) {
        if let Some(fate) = self.wills.lock().expect("registry lock").remove(link_id) {
            let _ = fate.send(if resumed { WillFate::Cancel } else { WillFate::PublishNow });
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut live = self.registry.live.lock().expect("registry lock");
        if live.get(&self.link_id).is_some_and(|e| e.generation == self.generation) {
            live.remove(&self.link_id);
        }
    }
}
