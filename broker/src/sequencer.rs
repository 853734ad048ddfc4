//! Per-room sequence numbers, leased from the store in blocks so the hot path rarely waits
//! on I/O and a crash can only make `seq` jump forward, never repeat.

use roost_store::{retry_until_ok, Store};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use tracing::warn;

/// Sequence numbers reserved per store round trip.
const LEASE: i64 = 1000;

/// Hands out the next `seq` of each room.
pub(crate) struct Sequencer {
    store: Arc<dyn Store>,
    leases: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Range<i64>>>>>,
}

impl Sequencer {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store, leases: Mutex::default() }
    }

    /// The next sequence number of `room`. While the store cannot lease numbers this waits,
    /// retrying with back-off: the publisher gets no PUBACK (and its connection reads nothing
    /// more) until its message can be numbered and stored, never a PUBACK for a dropped message.
    pub(crate) async fn next(&self, room: &str) -> i64 {
        let lease = {
            let mut leases = self.leases.lock().expect("lease map lock");
            // every message passes here: allocate the room's key only the first time
            match leases.get(room) {
                Some(lease) => lease.clone(),
                None => leases.entry(room.to_owned()).or_default().clone(),
            }
        };
        let mut lease = lease.lock().await;
        if lease.is_empty() {
            let first = self.reserve(room).await;
            *lease = first..first + LEASE;
        }
        let seq = lease.start;
        lease.start += 1;
        seq
    }

    /// Drops `room`'s lease (the room was deleted): its next number comes from a new lease.
    pub(crate) fn forget(&self, room: &str) {
        self.leases.lock().expect("lease map lock").remove(room);
    }

    /// Gives the unused part of every lease back to the store (the broker is stopping and
    /// nothing publishes any more), so a graceful restart goes on from the last number used.
    pub(crate) async fn give_back(&self) {
        let leases: Vec<_> = self.leases.lock().expect("lease map lock").drain().collect();
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

    async fn reserve(&self, room: &str) -> i64 {
        let what = format!("cannot lease sequence numbers of room {room}; its publishers wait");
        retry_until_ok(&what, || async {
            let leased = self.store.reserve_seq(room, LEASE).await;
            if leased.is_err() {
                metrics::counter!("roost_seq_lease_failures_total").increment(1);
            }
            leased
        })
        .await
    }
}
