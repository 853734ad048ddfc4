//! Room messages numbered recently, by room, sender and client id: a client's retry of one
//! (the same `id` again after a lost PUBACK) is recognised before it takes a sequence number of
//! its own, so numbering has no hole for it and subscribers do not get it twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The most messages remembered; the oldest go first.
const REMEMBERED: usize = 100_000;

/// Recently numbered messages that carried a client id.
#[derive(Default)]
pub(crate) struct RecentMessages {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seqs: HashMap<String, i64>,
    order: VecDeque<String>,
}

/// One key per message: names and client ids never contain `/`.
fn key(room: &str, from: &str, id: &str) -> String {
    format!("{room}/{from}/{id}")
}

impl RecentMessages {
    /// The seq the message `id` of `from` in `room` was numbered with, if it was recently.
    pub(crate) fn seq_of(&self, room: &str, from: &str, id: &str) -> Option<i64> {
        self.inner.lock().expect("recent messages lock").seqs.get(&key(room, from, id)).copied()
    }

    /// Remembers that the message `id` of `from` in `room` is numbered `seq`.
    pub(crate) fn remember(&self, room: &str, from: &str, id: &str, seq: i64) {
        let mut inner = self.inner.lock().expect("recent messages lock");
        let key = key(room, from, id);
        if inner.seqs.insert(key.clone(), seq).is_none() {
            inner.order.push_back(key);
        }
        while inner.order.len() > REMEMBERED {
            if let Some(oldest) = inner.order.pop_front() {
                inner.seqs.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_known_by_room_sender_and_id_until_it_is_among_the_oldest() {
        let recent = RecentMessages::default();
        recent.remember("lobby", "alice", "c-1", 7);
        assert_eq!(recent.seq_of("lobby", "alice", "c-1"), Some(7));
        assert_eq!(recent.seq_of("lobby", "bob", "c-1"), None, "another sender's id");
        assert_eq!(recent.seq_of("annex", "alice", "c-1"), None, "another room");
        for n in 0..REMEMBERED {
            recent.remember("lobby", "alice", &format!("n{n}"), n as i64);
        }
        assert_eq!(recent.seq_of("lobby", "alice", "c-1"), None, "forgotten, the oldest");
        assert_eq!(recent.seq_of("lobby", "alice", "n1"), Some(1));
    }
}
