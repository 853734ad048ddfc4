//! Live sessions by link id, for takeover: a second connection with the same client id stops
//! the first and waits until it has published its offline status.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Notify};

struct Entry {
    generation: u64,
    kick: Arc<Notify>,
    ended: oneshot::Receiver<()>,
}

/// Which connection holds each link id.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<String, Entry>>,
    generations: AtomicU64,
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
        let previous = self.sessions.lock().expect("registry lock").insert(link_id.to_owned(), entry);
        if let Some(previous) = previous {
            previous.kick.notify_one();
            let _ = previous.ended.await;
        }
        Claim { registry: self.clone(), link_id: link_id.to_owned(), generation, kicked, _ended: ended_tx }
    }

    /// Stops every connection (shutdown).
    pub(crate) fn kick_all(&self) {
        for entry in self.sessions.lock().expect("registry lock").values() {
            entry.kick.notify_one();
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut sessions = self.registry.sessions.lock().expect("registry lock");
        if sessions.get(&self.link_id).is_some_and(|e| e.generation == self.generation) {
            sessions.remove(&self.link_id);
        }
    }
}
