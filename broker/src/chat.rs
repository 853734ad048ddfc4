//! The chat pipeline: what becomes of a publish on one of Roost's own topics. It is authorized
//! against membership, validated, its attachments expanded from the room's uploads, stamped
//! with its sender and time, numbered and handed to the
//! ingest (room messages), and comes back as the payload to fan out through the router. The
//! ingest then reports every stored message to whoever listens
//! (`IngestHandle::stored_messages`: the seam push notifications and other nodes attach to).

use crate::hub::{Hub, Kinds};
use crate::retries::RecentMessages;
use crate::sequencer::Sequencer;
use crate::stamp::{self, Accepted, Invalid, Rejection};
use roost_auth::{Decision, Policy};
use roost_protocol::{to_payload, Attachment, AttachmentRef, Topic};
use roost_store::{retry_until_ok, IngestHandle, Record, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How often, and how far apart, a cluster node asks the store for the message a reply answers
/// before refusing the reply: another node may have delivered it before storing it.
const REPLY_TARGET_ASKS: u32 = 10;
const REPLY_TARGET_WAIT: Duration = Duration::from_millis(200);

/// What the pipeline made of a publish.
pub(crate) enum Outcome {
    /// Fan `payload` out on the publish's topic; for a room message (numbered `seq`), `stored`
    /// resolves once the store has it (the QoS 1 PUBACK waits for it).
    Deliver { payload: Vec<u8>, seq: Option<i64>, stored: Option<oneshot::Receiver<()>> },
    /// A client's retry of a room message numbered and delivered before: nothing to deliver
    /// again; `stored` resolves once the store has it (it keeps one copy).
    Again { stored: oneshot::Receiver<()> },
    /// Accepted, and there is nothing to deliver (typing in a room nobody follows).
    Dropped,
    /// Refused: neither delivered nor stored.
    Refused(Invalid),
}

/// The chat rules and the parts they use.
pub(crate) struct Chat {
    policy: Policy,
    sequencer: Arc<Sequencer>,
    ingest: IngestHandle,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    recent: RecentMessages,
    /// One of several nodes: who follows a room elsewhere is not known here.
    clustered: bool,
}

impl Chat {
    pub(crate) fn new(
        policy: Policy,
        sequencer: Arc<Sequencer>,
        ingest: IngestHandle,
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        clustered: bool,
    ) -> Self {
        Self { policy, sequencer, ingest, hub, store, recent: RecentMessages::default(), clustered }
    }

    /// The uploads `refs` names, each an upload to `room`, as a message shows them.
    async fn attachments(
        &self,
        room: &str,
        refs: Option<&[AttachmentRef]>,
    ) -> Result<Option<Vec<Attachment>>, Invalid> {
        let Some(refs) = refs.filter(|refs| !refs.is_empty()) else { return Ok(None) };
        let mut attachments = Vec::with_capacity(refs.len());
        for AttachmentRef { media } in refs {
            let found = retry_until_ok("looking up an attachment", || self.store.media(media)).await;
            // another room's upload reads as no upload: ids say nothing of rooms one is not in
            match found.filter(|found| found.room == room) {
                Some(found) => attachments.push(found.attachment()),
                None => return Err(Invalid::new(Rejection::UnknownMedia, format!("no upload {media} in this room"))),
            }
        }
        Ok(Some(attachments))
    }

    /// Records that message `seq` shows `attachments`, so their uploads are kept while it is.
    async fn reference(&self, attachments: Option<&[Attachment]>, seq: i64) {
        for attachment in attachments.into_iter().flatten() {
            retry_until_ok("referencing an attachment", || self.store.reference_media(&attachment.media, seq)).await;
        }
    }

    /// True when `room` holds message `seq`, the one a reply answers. A message a client could
    /// have seen was handed to the ingest before it was delivered, so one the store does not
    /// have yet is waited for; in a cluster another node's message can arrive here before that
    /// node has stored it, so the store is asked again for a while.
    async fn holds(&self, room: &str, seq: i64) -> bool {
        let wanted = [seq];
        for ask in 1..=REPLY_TARGET_ASKS {
            let found = retry_until_ok("looking up a replied message", || self.store.messages_at(room, &wanted)).await;
            if !found.is_empty() {
                return true;
            }
            match ask {
                1 => self.ingest.written().await,
                _ if self.clustered => tokio::time::sleep(REPLY_TARGET_WAIT).await,
                _ => return false,
            }
        }
        false
    }

    /// Runs `payload`, published by (`user`, `client_id`) on `topic`, through the pipeline.
    pub(crate) async fn publish(&self, user: &str, client_id: &str, topic: &Topic<'_>, payload: &[u8]) -> Outcome {
        match self.policy.publish(user, client_id, topic) {
            Decision::Allow => {}
            Decision::Forbidden => {
                return Outcome::Refused(Invalid::new(Rejection::Forbidden, "you may not publish on this topic"))
            }
            Decision::NotMember => return Outcome::Refused(Invalid::not_member()),
        }
        let accepted = match stamp::validate(topic, payload) {
            Ok(accepted) => accepted,
            Err(invalid) => return Outcome::Refused(invalid),
        };
        match (accepted, topic.room()) {
            (Accepted::Message(mut message), Some(room)) => {
                let attachments = match self.attachments(room, message.attachments.take().as_deref()).await {
                    Ok(attachments) => attachments,
                    Err(invalid) => return Outcome::Refused(invalid),
                };
                if let Some(target) = message.reply_to {
                    if !self.holds(room, target).await {
                        return Outcome::Refused(Invalid::new(
                            Rejection::InvalidReplyTo,
                            format!("reply_to {target} names no message of this room"),
                        ));
                    }
                }
                let is_member = |name: &str| self.policy.membership().is_member(room, name);
                let client_id = message.id.clone();
                if let Some(seq) = client_id.as_deref().and_then(|id| self.recent.seq_of(room, user, id)) {
                    // the same message again: its number and delivery stand, the store keeps it once
                    let again = stamp::envelope(room, user, seq, message, attachments, is_member);
                    metrics::counter!("roost_messages_retried_total").increment(1);
                    return Outcome::Again { stored: self.ingest.submit_confirmed(Record::Message(again)).await };
                }
                let seq = self.sequencer.next(room).await;
                // the room was deleted while this waited for its number (its lease is gone): the
                // message belongs to no room, and never to one re-created under the name
                if !self.policy.membership().is_member(room, user) {
                    return Outcome::Refused(Invalid::not_member());
                }
                if let Some(id) = &client_id {
                    self.recent.remember(room, user, id, seq);
                }
                self.reference(attachments.as_deref(), seq).await;
                let envelope = stamp::envelope(room, user, seq, message, attachments, is_member);
                let payload = to_payload(&envelope);
                metrics::counter!("roost_messages_total").increment(1);
                let stored = self.ingest.submit_confirmed(Record::Message(envelope)).await;
                Outcome::Deliver { payload, seq: Some(seq), stored: Some(stored) }
            }
            // typing in a room nobody follows goes nowhere
            (Accepted::Typing(_), Some(room)) if !self.clustered && !self.hub.follows_room(room, Kinds::TYPING) => {
                Outcome::Dropped
            }
            (Accepted::Typing(typing), Some(room)) => {
                Outcome::Deliver { payload: stamp::typing(room, user, typing), seq: None, stored: None }
            }
            (Accepted::Receipt(receipt), Some(room)) => {
                let receipt = stamp::receipt(room, user, receipt);
                let payload = to_payload(&receipt);
                self.ingest.submit(Record::Receipt(receipt)).await;
                Outcome::Deliver { payload, seq: None, stored: None }
            }
            (Accepted::Device(status), _) => {
                Outcome::Deliver { payload: stamp::device(status), seq: None, stored: None }
            }
            _ => Outcome::Dropped,
        }
    }
}
