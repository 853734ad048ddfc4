//! Each room in `seq` order on this node. Messages of a room reach a node from its own
//! sessions and from other nodes in any order (each node numbers its publishes and carries them
//! at once); a gate per followed room delivers them in order, holds a later one while an
//! earlier one is missing, and after [`GAP_WAIT`] fetches what is missing from the store (NATS
//! carries at most once). A number still missing after [`GAP_SKIP`] was never stored (its node
//! died between numbering and storing) and is passed over; should it come after all, it is
//! delivered late rather than lost.

use crate::hub::{Hub, Kinds, Message};
use roost_protocol::{to_payload, Envelope, Topic};
use roost_store::{Page, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, warn};

/// How long a gap is waited for before it is fetched from the store.
const GAP_WAIT: Duration = Duration::from_millis(200);
/// How long a gap is waited for before it is passed over.
const GAP_SKIP: Duration = Duration::from_secs(1);
/// How often gaps are looked for.
const TICK: Duration = Duration::from_millis(50);
/// Numbers passed over (or just below where a gate started) that are still delivered should
/// they come; older ones are forgotten.
const HOLES_KEPT: usize = 256;
/// Numbers below a new gate's start that count as not delivered: messages stored just before
/// a node began following a room may still be on their way to it.
const START_HOLES: i64 = 64;
/// Messages fetched per fill.
const FILL_LIMIT: u32 = 1000;

#[derive(Default)]
struct Gate {
    /// The next number to deliver; `None` until the gate knows where the room is.
    next: Option<i64>,
    /// Messages after a missing one.
    waiting: BTreeMap<i64, Message>,
    /// Numbers below `next` never delivered.
    holes: BTreeSet<i64>,
    /// Since when the first of `waiting` has waited.
    gap_since: Option<Instant>,
    /// Everything after `next - 1` is to be fetched from the store (NATS reconnected).
    recheck: bool,
    filling: bool,
}

impl Gate {
    fn offer(&mut self, seq: i64, message: Message, deliver: &mut impl FnMut(Message)) {
        let Some(next) = self.next else {
            self.waiting.insert(seq, message);
            return;
        };
        if seq == next {
            deliver(message);
            self.next = Some(next + 1);
            self.drain(deliver);
        } else if seq > next {
            self.waiting.insert(seq, message);
            self.gap_since.get_or_insert_with(Instant::now);
        } else if self.holes.remove(&seq) {
            deliver(message);
        }
    }

    /// Delivers the waiting messages that are next.
    fn drain(&mut self, deliver: &mut impl FnMut(Message)) {
        let Some(mut next) = self.next else { return };
        while let Some(entry) = self.waiting.first_entry() {
            if *entry.key() > next {
                break;
            }
            let seq = *entry.key();
            let message = entry.remove();
            if seq == next {
                deliver(message);
                next += 1;
            } else if self.holes.remove(&seq) {
                deliver(message);
            }
        }
        self.next = Some(next);
        self.gap_since = if self.waiting.is_empty() { None } else { Some(self.gap_since.unwrap_or_else(Instant::now)) };
    }

    /// The gate starts after `last`, the newest number stored when it began.
    fn start_after(&mut self, last: i64, deliver: &mut impl FnMut(Message)) {
        self.next = Some(last + 1);
        self.holes.extend((last + 1 - START_HOLES).max(1)..=last);
        self.drain(deliver);
    }

    /// Passes over every number missing before the first waiting message.
    fn skip_gap(&mut self, deliver: &mut impl FnMut(Message)) {
        let (Some(next), Some(&first)) = (self.next, self.waiting.keys().next()) else { return };
        debug!(from = next, to = first - 1, "sequence numbers never stored; passed over");
        metrics::counter!("roost_cluster_seqs_passed_over_total").increment((first - next) as u64);
        self.holes.extend(next..first);
        while self.holes.len() > HOLES_KEPT {
            self.holes.pop_first();
        }
        self.next = Some(first);
        self.gap_since = None;
        self.drain(deliver);
    }

    /// What to fetch from the store now: messages after the first argument, before the second.
    fn fill_due(&mut self) -> Option<(i64, Option<i64>)> {
        let next = self.next?;
        let due = self.recheck || self.gap_since.is_some_and(|since| since.elapsed() >= GAP_WAIT);
        if !due || self.filling {
            return None;
        }
        let before = if std::mem::take(&mut self.recheck) { None } else { self.waiting.keys().next().copied() };
        self.filling = true;
        Some((next - 1, before))
    }
}

/// The gates of the rooms this node follows.
pub(super) struct Order {
    gates: Mutex<HashMap<String, Gate>>,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
}

fn message_of(envelope: &Envelope) -> Message {
    Message::server(Topic::Messages(&envelope.room).to_string(), to_payload(envelope))
}

impl Order {
    pub(super) fn new(hub: Arc<Hub>, store: Arc<dyn Store>) -> Self {
        Self { gates: Mutex::default(), hub, store }
    }

    fn deliverer<'a>(&'a self, room: &'a str) -> impl FnMut(Message) + 'a {
        move |message| {
            self.hub.publish_room(room, Kinds::MESSAGES, message);
        }
    }

    /// This node began following `room`: its gate starts after the newest stored message.
    pub(super) fn begin(self: &Arc<Self>, room: &str) {
        self.gates.lock().expect("order lock").entry(room.to_owned()).or_default();
        let order = self.clone();
        let room = room.to_owned();
        tokio::spawn(async move {
            let last = loop {
                match order.store.last_seq(&room).await {
                    Ok(last) => break last,
                    Err(e) => {
                        warn!(room, error = %e, "cannot read where a room is; its messages wait");
                        tokio::time::sleep(GAP_SKIP).await;
                    }
                }
            };
            let mut gates = order.gates.lock().expect("order lock");
            if let Some(gate) = gates.get_mut(&room).filter(|gate| gate.next.is_none()) {
                gate.start_after(last, &mut order.deliverer(&room));
            }
        });
    }

    /// This node no longer follows `room`.
    pub(super) fn end(&self, room: &str) {
        self.gates.lock().expect("order lock").remove(room);
    }

    /// Message `seq` of `room`, from this node or another: delivered in order.
    pub(super) fn offer(&self, room: &str, seq: i64, message: Message) {
        let mut gates = self.gates.lock().expect("order lock");
        match gates.get_mut(room) {
            Some(gate) => gate.offer(seq, message, &mut self.deliverer(room)),
            // nobody here follows the room
            None => drop(message),
        }
    }

    /// What was published in `room` before this node's subscription took effect is fetched.
    pub(super) fn recheck(&self, room: &str) {
        if let Some(gate) = self.gates.lock().expect("order lock").get_mut(room) {
            gate.recheck = true;
        }
    }

    /// NATS reconnected: what it may have dropped meanwhile is fetched for every room.
    pub(super) fn recheck_all(&self) {
        for gate in self.gates.lock().expect("order lock").values_mut() {
            gate.recheck = true;
        }
    }

    /// Fills gaps from the store until `stopping`.
    pub(super) async fn fill_gaps_until(self: Arc<Self>, stopping: impl Future<Output = ()>) {
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                _ = &mut stopping => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let due: Vec<(String, i64, Option<i64>)> = {
                let mut gates = self.gates.lock().expect("order lock");
                gates.iter_mut().filter_map(|(room, gate)| gate.fill_due().map(|(a, b)| (room.clone(), a, b))).collect()
            };
            for (room, after, before) in due {
                let order = self.clone();
                tokio::spawn(async move { order.fill(&room, after, before).await });
            }
        }
    }

    async fn fill(&self, room: &str, after: i64, before: Option<i64>) {
        let page = Page::After { after, before, limit: FILL_LIMIT };
        let found = match self.store.messages(room, page).await {
            Ok(found) => found,
            Err(e) => {
                warn!(room, error = %e, "cannot fetch missing messages; trying again");
                Vec::new()
            }
        };
        let mut gates = self.gates.lock().expect("order lock");
        let Some(gate) = gates.get_mut(room) else { return };
        gate.filling = false;
        metrics::counter!("roost_cluster_gap_fills_total").increment(1);
        let mut deliver = self.deliverer(room);
        for envelope in &found {
            gate.offer(envelope.seq, message_of(envelope), &mut deliver);
        }
        if gate.gap_since.is_some_and(|since| since.elapsed() >= GAP_SKIP) {
            gate.skip_gap(&mut deliver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: i64) -> Message {
        Message::server("rooms/lobby/messages", seq.to_string())
    }

    fn run(gate: &mut Gate, seqs: &[i64]) -> Vec<i64> {
        let mut delivered = Vec::new();
        let mut deliver = |m: Message| delivered.push(std::str::from_utf8(&m.payload).unwrap().parse().unwrap());
        for &seq in seqs {
            gate.offer(seq, message(seq), &mut deliver);
        }
        delivered
    }

    #[test]
    fn messages_leave_in_order_and_once() {
        let mut gate = Gate { next: Some(1), ..Gate::default() };
        assert_eq!(run(&mut gate, &[1, 3, 4, 2, 2, 5]), vec![1, 2, 3, 4, 5]);
        assert!(gate.gap_since.is_none());
    }

    #[test]
    fn a_gate_waits_for_where_the_room_is() {
        let mut gate = Gate::default();
        assert!(run(&mut gate, &[12, 11]).is_empty());
        let mut delivered = Vec::new();
        gate.start_after(9, &mut |m: Message| delivered.push(m.payload));
        assert!(delivered.is_empty(), "10 is still awaited");
        assert!(gate.gap_since.is_some());
        assert_eq!(run(&mut gate, &[10, 9, 9]), vec![10, 11, 12, 9], "9, stored just before it began: delivered once");
        assert!(gate.gap_since.is_none());
    }

    #[test]
    fn a_gap_never_filled_is_passed_over_and_a_late_one_still_delivered() {
        let mut gate = Gate { next: Some(1), ..Gate::default() };
        assert_eq!(run(&mut gate, &[1, 4]), vec![1]);
        assert!(gate.gap_since.is_some());
        let mut delivered = Vec::new();
        gate.skip_gap(&mut |m: Message| delivered.push(m.payload));
        assert_eq!(delivered, vec!["4"]);
        assert_eq!(run(&mut gate, &[3, 5, 3]), vec![3, 5]);
    }
}
