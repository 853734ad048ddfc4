//! Ingest: stamped messages and receipts go to the store in batches; each submitter learns
//! when its record is durable, so the broker can hold a QoS 1 PUBACK until then.

use crate::contract::{retry_until_ok, Store};
use roost_protocol::{Envelope, ReceiptStamped};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

/// The most records written in one store transaction.
const MAX_BATCH: usize = 512;

/// What the ingest persists.
#[derive(Debug, Clone)]
pub enum Record {
    Message(Envelope),
    Receipt(ReceiptStamped),
}

struct Submission {
    record: Record,
    stored: Option<oneshot::Sender<()>>,
}

/// Sending side of the ingest; cheap to clone. The ingest stops once every handle is dropped.
#[derive(Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Submission>,
}

/// The ingest worker: owns the receiving side and the store.
pub struct Ingest {
    rx: mpsc::Receiver<Submission>,
    store: Arc<dyn Store>,
}

impl Ingest {
    /// A worker with room for `capacity` queued records, and its handle.
    pub fn new(store: Arc<dyn Store>, capacity: usize) -> (Self, IngestHandle) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { rx, store }, IngestHandle { tx })
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
                    Record::Message(m) => messages.push(m),
                    Record::Receipt(r) => receipts.push(r),
                }
                confirmations.extend(submission.stored);
            }
            let what = format!("{} records not stored", messages.len() + receipts.len());
            retry_until_ok(&what, || async {
                let written = self.store.write_batch(&messages, &receipts).await;
                if written.is_err() {
                    metrics::counter!("roost_ingest_write_failures_total").increment(1);
                }
                written
            })
            .await;
            metrics::counter!("roost_ingest_messages_total").increment(messages.len() as u64);
            for stored in confirmations {
                let _ = stored.send(());
            }
        }
        info!("ingest drained");
    }
}

impl IngestHandle {
    /// Queues `record`, waiting for room in the queue (back-pressure on the publisher).
    pub async fn submit(&self, record: Record) {
        let _ = self.tx.send(Submission { record, stored: None }).await;
    }

    /// Queues `record` and returns a receiver that resolves once it is stored.
    pub async fn submit_confirmed(&self, record: Record) -> oneshot::Receiver<()> {
        let (stored, confirmed) = oneshot::channel();
        let _ = self.tx.send(Submission { record, stored: Some(stored) }).await;
        confirmed
    }
}
