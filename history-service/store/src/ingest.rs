//! Ingest: stamped messages and receipts go to the store in batches; each submitter learns
//! when its record is durable, so the broker can hold a QoS 1 PUBACK until then.

use crate::contract::{retry_until_ok, Store};
use roost_protocol::{Envelope, ReceiptStamped};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::info;

/// The most records written in one store transaction.
const MAX_BATCH: usize = 512;

/// Stored messages a slow listener of [`IngestHandle::stored_messages`] may fall behind by
/// before it misses some (it is told how many).
const STORED_BACKLOG: usize = 4096;

/// What the ingest persists.
#[derive(Debug, Clone)]
// nearly every record is a message: boxing them would cost an allocation each for nothing
#[allow(clippy::large_enum_variant)]
pub enum Record {
    Message(Envelope),
    Receipt(ReceiptStamped),
}

/// A record to store, or none: a marker confirmed once everything queued before it is stored.
struct Submission {
    record: Option<Record>,
    stored: Option<oneshot::Sender<()>>,
}

/// Sending side of the ingest; cheap to clone. The ingest stops once every handle is dropped.
#[derive(Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Submission>,
    stored: broadcast::Sender<Envelope>,
}

/// The ingest worker: owns the receiving side and the store.
pub struct Ingest {
    rx: mpsc::Receiver<Submission>,
    store: Arc<dyn Store>,
    stored: broadcast::Sender<Envelope>,
}

impl Ingest {
    /// A worker with room for `capacity` queued records, and its handle.
    pub fn new(store: Arc<dyn Store>, capacity: usize) -> (Self, IngestHandle) {
        let (tx, rx) = mpsc::channel(capacity);
        let (stored, _) = broadcast::channel(STORED_BACKLOG);
        (Self { rx, store, stored: stored.clone() }, IngestHandle { tx, stored })
    }

    /// Writes batches until every handle is dropped and the queue is drained. A failed write
    /// is retried with back-off: accepted records are never dropped.
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while self.rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let (mut messages, mut receipts) = (Vec::new(), Vec::new());
            let mut confirmations = Vec::new();
            for submission in batch.drain(..) {
                match submission.record {
                    Some(Record::Message(m)) => messages.push(m),
                    Some(Record::Receipt(r)) => receipts.push(r),
                    None => {}
                }
                confirmations.extend(submission.stored);
            }
            if !messages.is_empty() || !receipts.is_empty() {
                let what = format!("{} records not stored", messages.len() + receipts.len());
                retry_until_ok(&what, || async {
                    let written = self.store.write_batch(&messages, &receipts).await;
                    if written.is_err() {
                        metrics::counter!("roost_ingest_write_failures_total").increment(1);
                    }
                    written
                })
                .await;
            }
            metrics::counter!("roost_ingest_messages_total").increment(messages.len() as u64);
            for stored in confirmations {
                let _ = stored.send(());
            }
            for message in messages {
                // nobody listening is fine: the store has it
                let _ = self.stored.send(message);
            }
        }
        info!("ingest drained");
    }
}

impl IngestHandle {
    /// Queues `record`, waiting for room in the queue (back-pressure on the publisher).
    pub async fn submit(&self, record: Record) {
        let _ = self.tx.send(Submission { record: Some(record), stored: None }).await;
    }

    /// Every room message from now on, once it is stored (a client's retry of one already
    /// stored may come again: the store keeps one copy, listeners should key on room and seq).
    pub fn stored_messages(&self) -> broadcast::Receiver<Envelope> {
        self.stored.subscribe()
    }

    /// Queues `record` and returns a receiver that resolves once it is stored.
    pub async fn submit_confirmed(&self, record: Record) -> oneshot::Receiver<()> {
        let (stored, confirmed) = oneshot::channel();
        let _ = self.tx.send(Submission { record: Some(record), stored: Some(stored) }).await;
        confirmed
    }

    /// Resolves once every record queued before this call is stored.
    pub async fn written(&self) {
        let (stored, confirmed) = oneshot::channel();
        let _ = self.tx.send(Submission { record: None, stored: Some(stored) }).await;
        let _ = confirmed.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Page, SqliteStore};

    #[tokio::test]
    async fn a_stored_message_is_confirmed_then_reported_to_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("roost.db")).unwrap());
        let (ingest, handle) = Ingest::new(store.clone(), 16);
        let mut stored = handle.stored_messages();
        let worker = tokio::spawn(ingest.run());
        let envelope = Envelope {
            id: "m1".into(),
            room: "lobby".into(),
            seq: 1,
            from: "alice".into(),
            ts: 5,
            body: "hi".into(),
            attachments: None,
            reply_to: None,
            data: None,
            ..Envelope::default()
        };
        handle.submit_confirmed(Record::Message(envelope.clone())).await.await.expect("confirmed");
        assert_eq!(stored.recv().await.expect("reported"), envelope);
        assert_eq!(store.messages("lobby", Page::Latest { limit: 5 }).await.unwrap(), vec![envelope]);
        drop(handle);
        worker.await.unwrap();
    }
}
