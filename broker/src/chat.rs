//! The chat pipeline: what becomes of a publish on one of Roost's own topics. It is authorized
//! against membership, validated, its attachments expanded from the room's uploads (or, for an
//! edit, delete or reaction, its target checked), stamped
//! with its sender and time, numbered and handed to the
//! ingest (room messages), and comes back as the payload to fan out through the router. The
//! ingest then reports every stored message to whoever listens
//! (`IngestHandle::stored_messages`: the seam push notifications and other nodes attach to).

use crate::hub::{Hub, Kinds};
use crate::retries::RecentMessages;
use crate::sequencer::Sequencer;
use crate::stamp::{self, Accepted, Invalid, Rejection};
use roost_auth::{Decision, Policy};
use roost_protocol::{to_payload, Attachment, AttachmentRef, ClientMessage, Envelope, MessageKind, Topic};
use roost_store::{retry_until_ok, IngestHandle, Record, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How often, and how far apart, a cluster node asks the store for the message a reply answers
/// or an event changes before refusing it: another node may have delivered it before storing it.
const TARGET_ASKS: u32 = 10;
const TARGET_WAIT: Duration = Duration::from_millis(200);

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

    /// The message `seq` of `room` as the store holds it, unless it is an event or deleted: one
    /// a reply answers or an event changes. A message a client could have seen was handed to
    /// the ingest before it was delivered, so one the store does not have yet is waited for
    /// (`settled`: the caller waited for the ingest already); in a cluster another node's
    /// message can arrive here before that node has stored it, so the store is asked again for
    /// a while.
    async fn stored_message(&self, room: &str, seq: i64, settled: bool) -> Option<Envelope> {
        let wanted = [seq];
        for ask in 1..=TARGET_ASKS {
            let found = retry_until_ok("looking up a message", || self.store.messages_at(room, &wanted)).await;
            if let Some(message) = found.into_iter().next() {
                // an event, or a tombstone, is nothing to answer or change
                return Some(message).filter(Envelope::is_live_message);
            }
            match ask {
                1 if !settled => self.ingest.written().await,
                _ if self.clustered => tokio::time::sleep(TARGET_WAIT).await,
                _ => return None,
            }
        }
        None
    }

    /// Whether `user` may apply `event` to its target now, and for a reaction whether it adds
    /// its key (true) or takes it back (false). The caller waited for the ingest to write what
    /// it holds, so the target shows the events before this one (an edit after a delete is
    /// refused).
    async fn check_event(&self, user: &str, room: &str, event: &ClientMessage) -> Result<Option<bool>, Invalid> {
        let seq = event.target.expect("events name their target");
        let Some(target) = self.stored_message(room, seq, true).await else {
            return Err(Invalid::new(Rejection::InvalidTarget, format!("target {seq} names no message of this room")));
        };
        match event.kind {
            MessageKind::Edit if target.from != user => {
                Err(Invalid::new(Rejection::Forbidden, "only its sender edits a message"))
            }
            MessageKind::Delete if target.from != user && !self.owns(room, user).await => {
                Err(Invalid::new(Rejection::Forbidden, "only its sender or the room's owner deletes a message"))
            }
            MessageKind::Reaction => {
                let key = event.key.as_deref().expect("reactions carry their key");
                let wanted = [seq];
                let reactions = retry_until_ok("reading reactions", || self.store.reactions(room, &wanted, user)).await;
                let mine = reactions.iter().any(|reaction| reaction.key == key && reaction.me);
                let known = reactions.iter().any(|reaction| reaction.key == key);
                if !known && reactions.len() >= stamp::MAX_REACTION_KEYS {
                    return Err(Invalid::new(
                        Rejection::TooManyReactions,
                        format!("a message carries at most {} different reactions", stamp::MAX_REACTION_KEYS),
                    ));
                }
                Ok(Some(!mine))
            }
            _ => Ok(None),
        }
    }

    /// True when `user` owns `room`: the owner deletes anyone's messages. In a direct-message
    /// room neither user has owner powers, whoever opened it.
    async fn owns(&self, room: &str, user: &str) -> bool {
        let found = retry_until_ok("looking up a room's owner", || self.store.room(room)).await;
        found.is_some_and(|found| found.owner == user && !found.direct)
    }

    /// True when the store holds an event of `user` in `room` with client id `id`: a retry this
    /// node does not remember (sent first to another node, or before a restart), applied once
    /// already and not to be checked and applied again.
    async fn stored_before(&self, room: &str, user: &str, id: Option<&str>) -> bool {
        let Some(id) = id else { return false };
        retry_until_ok("looking up a retried event", || self.store.message_with_id(room, user, id)).await.is_some()
    }

    /// A room message or event of `user`: its attachments expanded, its reply or target
    /// checked, numbered, stamped and handed to the ingest.
    async fn room_message(&self, user: &str, room: &str, mut message: ClientMessage) -> Outcome {
        let attachments = match self.attachments(room, message.attachments.take().as_deref()).await {
            Ok(attachments) => attachments,
            Err(invalid) => return Outcome::Refused(invalid),
        };
        if let Some(target) = message.reply_to {
            if self.stored_message(room, target, false).await.is_none() {
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
        let reaction_on = match message.kind {
            MessageKind::Message => None,
            _ => {
                self.ingest.written().await;
                if self.stored_before(room, user, client_id.as_deref()).await {
                    let (done, stored) = oneshot::channel();
                    let _ = done.send(());
                    return Outcome::Again { stored };
                }
                match self.check_event(user, room, &message).await {
                    Ok(on) => on,
                    Err(invalid) => return Outcome::Refused(invalid),
                }
            }
        };
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
        let mut envelope = stamp::envelope(room, user, seq, message, attachments, is_member);
        envelope.on = reaction_on;
        let payload = to_payload(&envelope);
        metrics::counter!("roost_messages_total").increment(1);
        let stored = self.ingest.submit_confirmed(Record::Message(envelope)).await;
        Outcome::Deliver { payload, seq: Some(seq), stored: Some(stored) }
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
            (Accepted::Message(message), Some(room)) => self.room_message(user, room, message).await,
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
