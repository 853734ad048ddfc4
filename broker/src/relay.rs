//! The broker's end of the relay: directives from the HTTP API applied to the membership view
//! and published, handed over in-process (`roost serve`) or read from the store's outbox (split).

use crate::hub::{Hub, Kinds, Message};
use crate::links::ServerLink;
use crate::sequencer::Sequencer;
use async_trait::async_trait;
use roost_auth::MembershipView;
use roost_protocol::Topic;
use roost_store::{Directive, Relay, Store, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How often the broker looks for new outbox entries; a membership change made over HTTP waits
/// for the broker (see `OutboxRelay`), so this is latency added to those calls.
const OUTBOX_POLL: Duration = Duration::from_millis(20);
/// How long a missing outbox position is waited for before it is taken as never written
/// (a writer that reserved it and failed).
const OUTBOX_GAP_WAIT: Duration = Duration::from_secs(2);
/// Entries read per poll.
const OUTBOX_PAGE: u32 = 256;
/// How often a follower records itself in the store even when nothing changed: the API waits
/// only for brokers that recorded themselves within the node time to live.
const OUTBOX_ALIVE_EVERY: Duration = Duration::from_secs(1);

/// Applies directives in the order given.
#[derive(Clone)]
pub struct BrokerRelay {
    view: Arc<MembershipView>,
    server: ServerLink,
    sequencer: Arc<Sequencer>,
    hub: Arc<Hub>,
}

impl BrokerRelay {
    pub(crate) fn new(view: Arc<MembershipView>, server: ServerLink, sequencer: Arc<Sequencer>, hub: Arc<Hub>) -> Self {
        Self { view, server, sequencer, hub }
    }

    fn apply(&self, directive: Directive) {
        // a room without members does not exist (an owner cannot leave): its first admission
        // is a room created anew
        let created = matches!(&directive, Directive::Admit { room, .. } if self.view.members(room).is_empty());
        let closed_members = match &directive {
            Directive::CloseRoom { room } => self.view.members(room),
            _ => Vec::new(),
        };
        directive.apply_to(&self.view);
        match &directive {
            // a deleted room's lease goes; the store then raises its floor over every number
            // leased. A room created under the name numbers from a lease taken after that, above
            // the floor, even if a publish in flight for the deleted one leased meanwhile.
            Directive::CloseRoom { room } => {
                self.sequencer.forget(room);
                for user in &closed_members {
                    self.hub.left(room, user);
                }
            }
            Directive::Admit { room, user } => {
                if created {
                    self.sequencer.forget(room);
                }
                self.hub.joined(room, user);
            }
            Directive::Dismiss { room, user } => self.hub.left(room, user),
            Directive::RevokeBot { bot } => self.hub.revoked(bot),
            Directive::EnrollBot { .. } => {}
            Directive::Publish { topic, payload } => self.publish(topic, payload),
        }
    }

    /// A server message: room events and inbox notices through the hub, to the sessions that
    /// follow them; anything else through the router.
    fn publish(&self, topic: &str, payload: &str) {
        let message = || Message::server(topic.to_owned(), payload.to_owned());
        match Topic::parse(topic) {
            Some(Topic::Events(room)) => {
                self.hub.publish_room(room, Kinds::EVENTS, message());
            }
            Some(Topic::Inbox(user)) => {
                self.hub.publish_inbox(user, message());
            }
            _ => self.server.publish(topic.to_owned(), payload.as_bytes().to_vec()),
        }
    }

    /// Applies the outbox entries after position `from` until `shutdown` (split deployment,
    /// several nodes), recording how far broker `node` got. Read `from` before loading the
    /// membership view, so that no change falls between them.
    pub async fn follow_outbox(
        self,
        store: Arc<dyn Store>,
        node: String,
        from: i64,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut applied = from;
        info!(position = applied, "following the outbox");
        let mut gap_since: Option<Instant> = None;
        let mut unreadable = false;
        // entries up to `from` count as applied: the view was loaded after them
        let mut recorded: Option<(i64, Instant)> = None;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(OUTBOX_POLL) => {}
            }
            let entries = match store.outbox_after(applied, OUTBOX_PAGE).await {
                Ok(entries) => entries,
                Err(e) => {
                    if !std::mem::replace(&mut unreadable, true) {
                        warn!(error = %e, "cannot read the outbox; membership changes wait");
                    }
                    continue;
                }
            };
            if std::mem::take(&mut unreadable) {
                info!("reading the outbox again");
            }
            for (position, directive) in entries {
                if position != applied + 1 {
                    let since = *gap_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < OUTBOX_GAP_WAIT {
                        break;
                    }
                    warn!(from = applied + 1, to = position - 1, "outbox positions never written; skipped");
                }
                gap_since = None;
                self.apply(directive);
                applied = position;
            }
            let due = recorded.is_none_or(|(position, at)| position != applied || at.elapsed() >= OUTBOX_ALIVE_EVERY);
            if due {
                match store.set_outbox_applied(&node, applied).await {
                    Ok(()) => recorded = Some((applied, Instant::now())),
                    Err(e) => warn!(error = %e, position = applied, "cannot record the applied outbox position"),
                }
            }
        }
    }
}

#[async_trait]
impl Relay for BrokerRelay {
    async fn relay(&self, directive: Directive) -> Result<(), StoreError> {
        self.apply(directive);
        Ok(())
    }
}
