//! Sessions by session id (`user:client id`): which connection holds each one (takeover stops
//! the holder and waits for its teardown), the state of sessions that outlive their connection
//! until they expire, the wills waiting out their delay, and the router link ids sessions use.
//!
//! rumqttd keeps a record of every link id it ever saw (its graveyard) and frees none, so link
//! ids are not derived from client ids: they are recycled, and the router holds at most one
//! record per session that was alive or saved at the same time.

use crate::background::Background;
use crate::subscriptions::{Subscription, Subscriptions};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

struct Entry {
    generation: u64,
    kick: Arc<Kick>,
    ended: oneshot::Receiver<()>,
}

/// What stops a connection from outside, and why.
#[derive(Default)]
pub(crate) struct Kick {
    notify: Notify,
    /// The server goes away (shutdown, fence) rather than another connection taking over;
    /// set before the notification, so the reason is the one given when kicked, and once set
    /// it stays: a takeover after it does not make a closing server's kick a takeover.
    server_going: AtomicBool,
}

impl Kick {
    fn stop(&self, server_going: bool) {
        self.server_going.fetch_or(server_going, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Resolves when the connection is to stop; true when the server is going away.
    pub(crate) async fn stopped(&self) -> bool {
        self.notify.notified().await;
        self.server_going.load(Ordering::Relaxed)
    }
}

/// A session kept after its connection ended, until `expires_at`.
struct Saved {
    subscriptions: Subscriptions,
    router_id: String,
    expires_at: Option<Instant>,
}

/// What the registry knows of a session a connection asks for, with the router link id the
/// connection is to use.
pub(crate) enum Stored {
    /// No session: a link id the router holds no session state for.
    None(String),
    /// A live session to resume on its link id.
    Live(Subscriptions, String),
    /// A session that expired: the router may still hold its state under the link id.
    Expired(String),
}

/// Saved sessions by session id, and the same sessions by expiry, soonest first.
#[derive(Default)]
struct SavedSessions {
    by_id: HashMap<String, Saved>,
    expiries: BTreeSet<(Instant, String)>,
}

impl SavedSessions {
    fn remove(&mut self, session_id: &str) -> Option<Saved> {
        let saved = self.by_id.remove(session_id)?;
        if let Some(at) = saved.expires_at {
            self.expiries.remove(&(at, session_id.to_owned()));
        }
        metrics::gauge!("roost_mqtt_saved_sessions").set(self.by_id.len() as f64);
        Some(saved)
    }
}

/// Router link ids: handed out, given back, handed out again.
#[derive(Default)]
struct RouterIds {
    free: Vec<String>,
    issued: usize,
}

/// What becomes of a will waiting out its delay.
pub(crate) enum WillFate {
    /// The session was resumed: the will never fires.
    Cancel,
    /// The session ended early (a clean start took the client id): publish now.
    PublishNow,
}

pub(crate) struct Registry {
    /// Where deferred wills wait.
    background: Background,
    live: Mutex<HashMap<String, Entry>>,
    saved: Mutex<SavedSessions>,
    router_ids: Mutex<RouterIds>,
    wills: Mutex<HashMap<String, oneshot::Sender<WillFate>>>,
    generations: AtomicU64,
    /// Several nodes: cut off from the others, this node holds no connection.
    fenced: AtomicBool,
}

/// A connection's claim on its link id; dropping it releases the id and wakes a waiting
/// successor, so drop it only after the connection's teardown.
pub(crate) struct Claim {
    registry: Arc<Registry>,
    pub(crate) session_id: String,
    pub(crate) generation: u64,
    pub(crate) kicked: Arc<Kick>,
    _ended: oneshot::Sender<()>,
}

impl Registry {
    pub(crate) fn new(background: Background) -> Self {
        Self {
            background,
            live: Mutex::default(),
            saved: Mutex::default(),
            router_ids: Mutex::default(),
            wills: Mutex::default(),
            generations: AtomicU64::default(),
            fenced: AtomicBool::default(),
        }
    }

    /// Claims `session_id`, stopping and awaiting the connection that held it.
    pub(crate) async fn claim(self: &Arc<Self>, session_id: &str) -> Claim {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let kicked = Arc::new(Kick::default());
        let (ended_tx, ended_rx) = oneshot::channel();
        let entry = Entry { generation, kick: kicked.clone(), ended: ended_rx };
        let previous = self.live.lock().expect("registry lock").insert(session_id.to_owned(), entry);
        if let Some(previous) = previous {
            previous.kick.stop(false);
            let _ = previous.ended.await;
        }
        Claim { registry: self.clone(), session_id: session_id.to_owned(), generation, kicked, _ended: ended_tx }
    }

    /// Stops every connection (shutdown).
    pub(crate) fn kick_all(&self) {
        for entry in self.live.lock().expect("registry lock").values() {
            entry.kick.stop(true);
        }
    }

    /// Stops the connection holding `session_id`: a connection on another node took it over.
    pub(crate) fn kick(&self, session_id: &str) {
        if let Some(entry) = self.live.lock().expect("registry lock").get(session_id) {
            entry.kick.stop(false);
        }
    }

    /// Cut off from the other nodes: every connection stops and CONNECTs are refused until
    /// [`Registry::unfence`].
    pub(crate) fn fence(&self) {
        self.fenced.store(true, Ordering::Relaxed);
        for entry in self.live.lock().expect("registry lock").values() {
            entry.kick.stop(true);
        }
    }

    pub(crate) fn unfence(&self) {
        self.fenced.store(false, Ordering::Relaxed);
    }

    pub(crate) fn fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    /// Ends a session's connection: a session `kept` (its subscriptions, its expiry) is saved
    /// with its router link id; otherwise the link id, its link ended clean, goes back.
    pub(crate) fn release(&self, session_id: &str, router_id: String, kept: Option<(Subscriptions, Duration)>) {
        match kept {
            Some((subscriptions, expiry)) => self.save(session_id, subscriptions, router_id, expiry),
            None => self.give_back(router_id),
        }
    }

    fn save(&self, session_id: &str, subscriptions: Subscriptions, router_id: String, expiry: Duration) {
        let expires_at = Instant::now().checked_add(expiry);
        let mut saved = self.saved.lock().expect("registry lock");
        if let Some(at) = expires_at {
            saved.expiries.insert((at, session_id.to_owned()));
        }
        saved.by_id.insert(session_id.to_owned(), Saved { subscriptions, router_id, expires_at });
        metrics::gauge!("roost_mqtt_saved_sessions").set(saved.by_id.len() as f64);
    }

    /// Hands session `session_id` to a connection on another node: ends the connection holding
    /// it here (if any, as a takeover) and returns the subscriptions of the session kept, if it
    /// was. Its router state is cleared, and its link id recycled, by the next expiry sweep.
    pub(crate) async fn hand_over(self: &Arc<Self>, session_id: &str) -> Option<Vec<(String, Subscription)>> {
        if self.live.lock().expect("registry lock").contains_key(session_id) {
            drop(self.claim(session_id).await);
        }
        let mut saved = self.saved.lock().expect("registry lock");
        let kept = saved.remove(session_id)?;
        let subscriptions = kept.subscriptions.iter().map(|(filter, s)| (filter.clone(), s.clone())).collect();
        let now = Instant::now();
        saved.expiries.insert((now, session_id.to_owned()));
        let expired =
            Saved { subscriptions: Subscriptions::default(), router_id: kept.router_id, expires_at: Some(now) };
        saved.by_id.insert(session_id.to_owned(), expired);
        Some(subscriptions)
    }

    /// Takes the session saved for `session_id`, or a fresh router link id.
    pub(crate) fn take(&self, session_id: &str) -> Stored {
        let saved = self.saved.lock().expect("registry lock").remove(session_id);
        match saved {
            None => Stored::None(self.lend_router_id()),
            Some(saved) if saved.expires_at.is_some_and(|at| at <= Instant::now()) => Stored::Expired(saved.router_id),
            Some(saved) => Stored::Live(saved.subscriptions, saved.router_id),
        }
    }

    /// Forgets the saved sessions that have expired and returns their router link ids, whose
    /// router state the caller clears before giving them back.
    pub(crate) fn expire(&self) -> Vec<String> {
        let mut saved = self.saved.lock().expect("registry lock");
        let later = saved.expiries.split_off(&(Instant::now(), String::new()));
        let due = std::mem::replace(&mut saved.expiries, later);
        due.into_iter().filter_map(|(_, session_id)| saved.remove(&session_id)).map(|s| s.router_id).collect()
    }

    /// A router link id the router holds no session state for.
    fn lend_router_id(&self) -> String {
        let mut ids = self.router_ids.lock().expect("registry lock");
        ids.free.pop().unwrap_or_else(|| {
            ids.issued += 1;
            metrics::gauge!("roost_mqtt_router_link_ids").set(ids.issued as f64);
            format!("link:{}", ids.issued)
        })
    }

    /// Gives back a router link id whose link has ended without session state in the router.
    pub(crate) fn give_back(&self, router_id: String) {
        self.router_ids.lock().expect("registry lock").free.push(router_id);
    }

    /// Holds a delayed will; it is published by `publish` after `delay` unless [`Registry::settle_will`]
    /// decides otherwise first.
    pub(crate) fn defer_will(
        self: &Arc<Self>,
        session_id: &str,
        delay: Duration,
        publish: impl FnOnce() + Send + 'static,
    ) {
        let (fate_tx, fate) = oneshot::channel();
        self.wills.lock().expect("registry lock").insert(session_id.to_owned(), fate_tx);
        let registry = self.clone();
        let session_id = session_id.to_owned();
        // a will still waiting when the broker stops goes with its session: nobody is
        // connected to receive it, and the router's retained state ends with the process
        self.background.spawn_until_stop(async move {
            let fate = tokio::time::timeout(delay, fate).await;
            if !matches!(fate, Ok(Ok(WillFate::Cancel))) {
                publish();
            }
            if fate.is_err() {
                registry.wills.lock().expect("registry lock").remove(&session_id);
            }
        });
    }

    /// A new connection took `session_id`: a will still waiting fires now, unless the session
    /// was resumed.
    pub(crate) fn settle_will(&self, session_id: &str, resumed: bool) {
        if let Some(fate) = self.wills.lock().expect("registry lock").remove(session_id) {
            let _ = fate.send(if resumed { WillFate::Cancel } else { WillFate::PublishNow });
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut live = self.registry.live.lock().expect("registry lock");
        if live.get(&self.session_id).is_some_and(|e| e.generation == self.generation) {
            live.remove(&self.session_id);
        }
    }
}
