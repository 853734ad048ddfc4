//! Per-room sequence numbers. One node leases them from the store in blocks, so the hot path
//! rarely waits on I/O and a crash can only make `seq` jump forward, never repeat. Several
//! nodes cannot share blocks (they would interleave), so each reserves exactly what it needs:
//! per room, while one reservation is in flight the room's new publishes wait and the next
//! reservation takes them all at once (a group commit). A lone node takes a room's first
//! block as soon as one of its sessions follows the room, before the room's first message.

use crate::hub::RoomInterest;
use roost_store::{retry_until_ok, Store};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// Sequence numbers reserved per store round trip by a lone node.
const LEASE: i64 = 1000;

/// A room's block of numbers: the next to hand out up to the end of what was reserved.
type Lease = Arc<tokio::sync::Mutex<Range<i64>>>;

/// How numbers are reserved.
enum Numbering {
    /// One node: blocks of [`LEASE`] per room.
    Leased(Mutex<HashMap<String, Lease>>),
    /// Several nodes: exactly the numbers wanted, per room.
    Exact(Mutex<HashMap<String, Batch>>),
}

/// A room's publishes waiting for numbers, and whether a reservation is in flight for it.
#[derive(Default)]
struct Batch {
    waiting: Vec<oneshot::Sender<i64>>,
    reserving: bool,
}

/// Hands out the next `seq` of each room.
pub(crate) struct Sequencer {
    store: Arc<dyn Store>,
    numbering: Numbering,
    /// The leases went back to the store (the broker is stopping): none is taken ahead any more.
    given_back: AtomicBool,
}

impl Sequencer {
    /// Numbers for a lone node (`shared` false) or one of several.
    pub(crate) fn new(store: Arc<dyn Store>, shared: bool) -> Self {
        let numbering = if shared { Numbering::Exact(Mutex::default()) } else { Numbering::Leased(Mutex::default()) };
        Self { store, numbering, given_back: AtomicBool::new(false) }
    }

    /// The next sequence number of `room`. While the store cannot reserve numbers this waits,
    /// retrying with back-off: the publisher gets no PUBACK (and its connection reads nothing
    /// more) until its message can be numbered and stored, never a PUBACK for a dropped message.
    pub(crate) async fn next(self: &Arc<Self>, room: &str) -> i64 {
        match &self.numbering {
            Numbering::Leased(leases) => {
                let lease = Self::lease_of(leases, room);
                let mut lease = lease.lock().await;
                self.refill(room, &mut lease).await;
                let seq = lease.start;
                lease.start += 1;
                seq
            }
            Numbering::Exact(batches) => loop {
                let (number, numbered) = oneshot::channel();
                let reserve = {
                    let mut batches = batches.lock().expect("batch map lock");
                    let batch = batches.entry(room.to_owned()).or_default();
                    batch.waiting.push(number);
                    !std::mem::replace(&mut batch.reserving, true)
                };
                if reserve {
                    // on a task of its own: the publish that started it may be abandoned
                    tokio::spawn(self.clone().reserve_waiting(room.to_owned()));
                }
                if let Ok(seq) = numbered.await {
                    return seq;
                }
            },
        }
    }

    /// A lone node: takes the first lease of each room its sessions begin to follow, one room
    /// after another, so that a room's first message does not wait on the store.
    pub(crate) async fn lease_ahead(self: Arc<Self>, mut interest: mpsc::UnboundedReceiver<RoomInterest>) {
        let Numbering::Leased(leases) = &self.numbering else { return };
        while let Some(change) = interest.recv().await {
            let RoomInterest::Followed(room) = change else { continue };
            if self.given_back.load(Ordering::Acquire) {
                return;
            }
            let lease = Self::lease_of(leases, &room);
            self.refill(&room, &mut *lease.lock().await).await;
        }
    }

    fn lease_of(leases: &Mutex<HashMap<String, Lease>>, room: &str) -> Lease {
        let mut leases = leases.lock().expect("lease map lock");
        // every message passes here: allocate the room's key only the first time
        match leases.get(room) {
            Some(lease) => lease.clone(),
            None => leases.entry(room.to_owned()).or_default().clone(),
        }
    }

    /// Reserves a new block for `room` once its lease is used up.
    async fn refill(&self, room: &str, lease: &mut Range<i64>) {
        if lease.is_empty() {
            let first = self.reserve(room, LEASE).await;
            *lease = first..first + LEASE;
        }
    }

    /// Reserves numbers for `room`'s waiting publishes, batch after batch, until none wait.
    async fn reserve_waiting(self: Arc<Self>, room: String) {
        let Numbering::Exact(batches) = &self.numbering else { return };
        loop {
            let waiting = {
                let mut batches = batches.lock().expect("batch map lock");
                let batch = batches.get_mut(&room).expect("a reserving room has a batch");
                if batch.waiting.is_empty() {
                    batches.remove(&room);
                    return;
                }
                std::mem::take(&mut batch.waiting)
            };
            let first = self.reserve(&room, waiting.len() as i64).await;
            metrics::histogram!("roost_seq_batch_size").record(waiting.len() as f64);
            for (seq, number) in (first..).zip(waiting) {
                // a publish abandoned meanwhile leaves its number unused: a gap, never a repeat
                let _ = number.send(seq);
            }
        }
    }

    /// Drops `room`'s lease (the room was deleted): its next number comes from a new lease.
    pub(crate) fn forget(&self, room: &str) {
        if let Numbering::Leased(leases) = &self.numbering {
            leases.lock().expect("lease map lock").remove(room);
        }
    }

    /// Gives the unused part of every lease back to the store (the broker is stopping and
    /// nothing publishes any more), so a graceful restart goes on from the last number used.
    pub(crate) async fn give_back(&self) {
        let Numbering::Leased(leases) = &self.numbering else { return };
        self.given_back.store(true, Ordering::Release);
        let leases: Vec<_> = leases.lock().expect("lease map lock").drain().collect();
        for (room, lease) in leases {
            let mut lease = lease.lock().await;
            if lease.is_empty() {
                continue;
            }
            if let Err(e) = self.store.return_seq(&room, lease.start, lease.end).await {
                warn!(room, error = %e, "unused sequence numbers not given back; the room's next number jumps");
            }
            lease.start = lease.end;
        }
    }

    async fn reserve(&self, room: &str, count: i64) -> i64 {
        let what = format!("cannot reserve sequence numbers of room {room}; its publishers wait");
        let started = std::time::Instant::now();
        let first = retry_until_ok(&what, || async {
            let reserved = self.store.reserve_seq(room, count).await;
            if reserved.is_err() {
                metrics::counter!("roost_seq_lease_failures_total").increment(1);
            }
            reserved
        })
        .await;
        metrics::histogram!("roost_seq_reservation_seconds").record(started.elapsed().as_secs_f64());
        first
    }
}
