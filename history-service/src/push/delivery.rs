//! Delivery: stored messages become queued pushes (the planner), queued pushes go to the push
//! services (the sender). Both work from the store under leases, so a restart loses nothing
//! and several processes never send one push twice.

use super::exchange::{preview, Notice, Outcome, ProviderError};
use super::providers::Providers;
use super::{setting_of, PushConfig};
use futures_util::StreamExt;
use roost_auth::{MembershipView, VapidKey};
use roost_protocol::{now_millis, Envelope};
use roost_store::{NotificationLevel, PresenceReader, PushJob, Store, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tracing::{debug, info, warn};

/// How often the store is looked at for due work when nothing wakes the planner.
const POLL: Duration = Duration::from_millis(250);
/// How long the planner lets stored messages gather after the first (pushes wait for their
/// burst longer than this anyway).
const GATHER: Duration = Duration::from_millis(100);
/// Messages planned, and pushes sent, per round trip to the store.
const BATCH: u32 = 256;
/// Pushes in flight at once.
const CONCURRENCY: usize = 32;
/// How long a claim holds: past it, the work is anyone's (its holder died). Planning a batch
/// takes milliseconds; a send may take its whole request timeout.
const PLAN_LEASE_MS: i64 = 5_000;
const SEND_LEASE_MS: i64 = 30_000;
/// The first back-off after a failed attempt, doubled per attempt up to the longest.
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// Plans and sends pushes; cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    store: Arc<dyn Store>,
    membership: Arc<MembershipView>,
    presence: PresenceReader,
    config: Arc<PushConfig>,
    providers: Arc<Providers>,
}

impl Delivery {
    pub fn new(
        store: Arc<dyn Store>,
        membership: Arc<MembershipView>,
        presence: PresenceReader,
        config: PushConfig,
        vapid: VapidKey,
    ) -> Result<Self, ProviderError> {
        let providers = Arc::new(Providers::new(&config, vapid)?);
        Ok(Self { store, membership, presence, config: Arc::new(config), providers })
    }

    /// Plans and sends until `stopped` resolves. `stored`, when the ingest runs in this
    /// process, hands the planner what it stores; without it (split) the store is polled and
    /// a message is planned once its writer's hold lapses.
    pub async fn run_until(self, stored: Option<broadcast::Receiver<Envelope>>, stopped: impl Future<Output = ()>) {
        let planner = self.clone().plan_forever(stored);
        let sender = self.send_forever();
        tokio::select! {
            _ = stopped => {}
            _ = planner => {}
            _ = sender => {}
        }
        info!("push delivery stopped");
    }

    async fn plan_forever(self, mut stored: Option<broadcast::Receiver<Envelope>>) {
        loop {
            // what this process stores, planned as it comes (its marks are held for it)
            let mut written = Vec::new();
            match stored.as_mut() {
                Some(receiver) => match tokio::time::timeout(POLL, receiver.recv()).await {
                    Ok(Ok(first)) => {
                        // a moment for more to come: one store transaction per batch, not per message
                        tokio::time::sleep(GATHER).await;
                        written = drain(receiver, first);
                    }
                    // the ingest stopped: from here the store is polled
                    Ok(Err(RecvError::Closed)) => stored = None,
                    // nothing for a while, or missed ones, claimed once their hold lapses
                    Ok(Err(RecvError::Lagged(_))) | Err(_) => {}
                },
                None => tokio::time::sleep(POLL).await,
            }
            if let Err(e) = self.plan_all(&written, now_millis()).await {
                warn!(error = %e, "planning pushes; they are claimed again once their hold lapses");
            }
            // what nobody planned in time: stored by another process, or by one that died, or
            // missed here. Not while this process's own are still queued: their holds may have
            // lapsed behind a backlog, and planned twice they could be pushed twice
            if stored.as_ref().is_some_and(|stored| !stored.is_empty()) {
                continue;
            }
            loop {
                match self.plan_due().await {
                    Ok(planned) if planned == BATCH as usize => continue,
                    Ok(_) => break,
                    Err(e) => {
                        warn!(error = %e, "planning pushes");
                        break;
                    }
                }
            }
        }
    }

    async fn send_forever(self) {
        loop {
            match self.send_due().await {
                Ok(sent) if sent == BATCH as usize => continue,
                Ok(_) => {}
                Err(e) => warn!(error = %e, "claiming pushes"),
            }
            if let Ok(depth) = self.store.push_queue_depth().await {
                metrics::gauge!("roost_push_queue_depth").set(depth as f64);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Claims the stored messages nobody planned in time and plans them; returns how many.
    async fn plan_due(&self) -> Result<usize, StoreError> {
        let now = now_millis();
        let messages = self.store.claim_push_due(now, now + PLAN_LEASE_MS, BATCH).await?;
        self.plan_all(&messages, now).await?;
        Ok(messages.len())
    }

    /// Queues the pushes of `messages` and marks them planned.
    async fn plan_all(&self, messages: &[Envelope], now: i64) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        for message in messages {
            self.plan(message, now).await?;
        }
        let planned: Vec<(String, i64)> = messages.iter().map(|m| (m.room.clone(), m.seq)).collect();
        self.store.push_planned(&planned).await?;
        debug!(messages = planned.len(), "pushes planned");
        Ok(())
    }

    /// Queues a push of `message` on every registered device of each member owed one: not the
    /// sender, not a bot, nobody with a device online, and only as their setting allows. Edits,
    /// deletes, reactions and deleted messages notify nobody.
    async fn plan(&self, message: &Envelope, now: i64) -> Result<(), StoreError> {
        if !message.is_live_message() {
            return Ok(());
        }
        let mut direct = None;
        for user in self.membership.members(&message.room) {
            if user == message.from || self.membership.is_bot(&user) || self.presence.is_online(&user).await? {
                continue;
            }
            let devices = self.store.push_devices_of(&user).await?;
            if devices.is_empty() {
                continue;
            }
            let mentioned = message.mentions.contains(&user);
            let setting = setting_of(self.store.as_ref(), &message.room, &user).await?;
            let wanted = match setting.level {
                NotificationLevel::All => true,
                NotificationLevel::Mentions => mentioned,
                NotificationLevel::None => false,
            };
            if !wanted || setting.muted_until.is_some_and(|until| until > now) {
                continue;
            }
            let direct = match direct {
                Some(direct) => direct,
                None => *direct.insert(self.store.room(&message.room).await?.is_some_and(|room| room.direct)),
            };
            for device in devices {
                let job = PushJob {
                    device: device.id,
                    room: message.room.clone(),
                    user: user.clone(),
                    seq: message.seq,
                    from: message.from.clone(),
                    ts: message.ts,
                    preview: preview(&message.body),
                    urgent: direct || mentioned,
                    not_before: now + self.config.coalesce_ms as i64,
                    expires_at: message.ts + self.config.ttl as i64 * 1000,
                    attempts: 0,
                };
                self.store.queue_push(&job).await?;
            }
        }
        Ok(())
    }

    /// Sends the pushes that are due; returns how many it claimed.
    async fn send_due(&self) -> Result<usize, StoreError> {
        let now = now_millis();
        let jobs = self.store.claim_pushes(now, now + SEND_LEASE_MS, BATCH).await?;
        let claimed = jobs.len();
        if claimed > 0 {
            debug!(pushes = claimed, "sending pushes");
        }
        futures_util::stream::iter(jobs).for_each_concurrent(CONCURRENCY, |job| self.deliver(job)).await;
        Ok(claimed)
    }

    /// One attempt at `job`, and what follows from its outcome.
    async fn deliver(&self, job: PushJob) {
        let (provider, outcome) = match self.attempt(&job).await {
            Ok(Attempt::Tried(provider, outcome)) => (provider, outcome),
            Ok(Attempt::Moot(why)) => {
                metrics::counter!("roost_push_skipped_total", "reason" => why).increment(1);
                if let Err(e) = self.store.finish_push(&job.device, &job.room, job.seq).await {
                    warn!(error = %e, "settling a push; its lease runs out and it is claimed again");
                }
                return;
            }
            Err(e) => {
                // the store is away: the lease runs out and the push is claimed again
                warn!(error = %e, "sending a push");
                return;
            }
        };
        let settled = match outcome {
            Outcome::Sent => {
                metrics::counter!("roost_push_sent_total", "provider" => provider).increment(1);
                let latency = (now_millis() - job.ts).max(0) as f64 / 1000.0;
                metrics::histogram!("roost_push_delivery_seconds", "provider" => provider).record(latency);
                self.store.finish_push(&job.device, &job.room, job.seq).await
            }
            Outcome::Gone(why) => {
                info!(provider, device = job.device, user = job.user, why, "push registration gone; forgotten");
                metrics::counter!("roost_push_registrations_dropped_total", "provider" => provider).increment(1);
                self.store.drop_push_device(&job.device).await
            }
            Outcome::Retry { after, why } => {
                let backoff = after.unwrap_or_else(|| BACKOFF_FIRST * 2u32.saturating_pow(job.attempts.min(16)));
                let not_before = now_millis() + backoff.min(BACKOFF_MAX).as_millis() as i64;
                if not_before >= job.expires_at {
                    warn!(provider, device = job.device, why, "push given up: its time to live ran out");
                    metrics::counter!("roost_push_failed_total", "provider" => provider, "reason" => "expired")
                        .increment(1);
                    self.store.finish_push(&job.device, &job.room, job.seq).await
                } else {
                    metrics::counter!("roost_push_retries_total", "provider" => provider).increment(1);
                    self.store.retry_push(&job.device, &job.room, not_before).await
                }
            }
            Outcome::Failed(why) => {
                warn!(provider, device = job.device, why, "push refused");
                metrics::counter!("roost_push_failed_total", "provider" => provider, "reason" => "refused")
                    .increment(1);
                self.store.finish_push(&job.device, &job.room, job.seq).await
            }
        };
        if let Err(e) = settled {
            warn!(error = %e, "settling a push; its lease runs out and it is claimed again");
        }
    }

    /// Sends `job` unless it has become moot: expired, its user left the room, came online,
    /// read the room or muted it since it was planned, or its registration is gone.
    async fn attempt(&self, job: &PushJob) -> Result<Attempt, StoreError> {
        let moot = |why: &'static str| Ok(Attempt::Moot(why));
        let now = now_millis();
        if job.expires_at <= now {
            return moot("expired");
        }
        if !self.membership.is_member(&job.room, &job.user) || self.presence.is_online(&job.user).await? {
            return moot("online or left");
        }
        let setting = setting_of(self.store.as_ref(), &job.room, &job.user).await?;
        if setting.level == NotificationLevel::None || setting.muted_until.is_some_and(|until| until > now) {
            return moot("silenced");
        }
        let Some(device) = self.store.push_device(&job.device).await? else {
            return moot("unregistered");
        };
        let unread = self.store.unread(&job.user).await?;
        let in_room = unread.iter().find(|(room, _)| *room == job.room).map_or(0, |(_, count)| *count);
        if in_room == 0 {
            return moot("read");
        }
        let badge = unread.iter().map(|(_, count)| count).sum();
        let (provider, outcome) = self.providers.send(&device.target, &Notice::new(job, in_room, badge), job).await;
        Ok(Attempt::Tried(provider, outcome))
    }
}

/// What became of a claimed push.
enum Attempt {
    /// Not sent: no longer owed (the reason, a metric label).
    Moot(&'static str),
    /// Sent to this provider, with this outcome.
    Tried(&'static str, Outcome),
}

/// `first` and the stored messages already waiting behind it, up to a batch.
fn drain(stored: &mut broadcast::Receiver<Envelope>, first: Envelope) -> Vec<Envelope> {
    let mut batch = vec![first];
    while batch.len() < BATCH as usize {
        match stored.try_recv() {
            Ok(message) => batch.push(message),
            Err(TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    batch
}
