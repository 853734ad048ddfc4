//! The push services a registration names (Web Push, FCM, APNs), each reached as configured.

use super::apns::Apns;
use super::exchange::{Notice, Outcome, ProviderError};
use super::fcm::Fcm;
use super::webpush::WebPush;
use super::PushConfig;
use roost_auth::VapidKey;
use roost_store::{PushJob, PushTarget};

/// The services, each reached as configured.
pub(super) struct Providers {
    webpush: WebPush,
    fcm: Option<Fcm>,
    apns: Option<Apns>,
}

impl Providers {
    pub(super) fn new(config: &PushConfig, vapid: VapidKey) -> Result<Self, ProviderError> {
        Ok(Self {
            webpush: WebPush::new(vapid, config.webpush.clone())?,
            fcm: config.fcm.service_account.as_ref().map(|_| Fcm::new(config)).transpose()?,
            apns: config.apns.key.as_ref().map(|_| Apns::new(config)).transpose()?,
        })
    }

    /// Sends `notice` to the device `target` names; returns the provider's name and the outcome.
    pub(super) async fn send(&self, target: &PushTarget, notice: &Notice, job: &PushJob) -> (&'static str, Outcome) {
        match target {
            PushTarget::Webpush { endpoint, p256dh, auth } => {
                ("webpush", self.webpush.send(endpoint, p256dh, auth, notice, job).await)
            }
            PushTarget::Fcm { token } => match &self.fcm {
                Some(fcm) => ("fcm", fcm.send(token, notice, job).await),
                None => ("fcm", Outcome::Failed("FCM is not configured (push.fcm.service_account)".into())),
            },
            PushTarget::Apns { token } => match &self.apns {
                Some(apns) => ("apns", apns.send(token, notice, job).await),
                None => ("apns", Outcome::Failed("APNs is not configured (push.apns.key)".into())),
            },
        }
    }
}
