//! Push notifications to members who are offline: where each user's devices are reached, how
//! much of each room they want pushed, and the delivery that plans and sends the pushes.

mod apns;
mod delivery;
mod endpoint;
mod exchange;
mod fcm;
mod providers;
mod webpush;

pub use delivery::Delivery;
pub use endpoint::EndpointError;
pub use exchange::ProviderError;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use roost_protocol::now_millis;
use roost_store::{Notifications, PushDevice, PushTarget, Store, StoreError};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The `[push]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PushConfig {
    /// Seconds a push is tried, and kept by a push service for a device that is off.
    pub ttl: u64,
    /// Milliseconds a push waits for more messages of its room, to tell of them in one.
    pub coalesce_ms: u64,
    /// Whether FCM and APNs pushes carry the start of the body (Google and Apple can read it).
    pub preview: bool,
    pub webpush: WebPushConfig,
    pub fcm: FcmConfig,
    pub apns: ApnsConfig,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            ttl: 24 * 3600,
            coalesce_ms: 1000,
            preview: false,
            webpush: WebPushConfig::default(),
            fcm: FcmConfig::default(),
            apns: ApnsConfig::default(),
        }
    }
}

/// The `[push.webpush]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebPushConfig {
    /// The VAPID private key (base64url of the P-256 scalar); unset: generated once into the
    /// data dir (`vapid.key`).
    #[serde(skip_serializing)]
    pub vapid_private_key: Option<SecretString>,
    /// Who runs this server, told to push services in every request (`mailto:` or `https:`).
    pub subject: String,
    /// Whether Web Push payloads carry the start of the body (only the device can read them).
    pub preview: bool,
    /// When not empty, the only push service origins (`https://host[:port]`) registrations may name.
    pub allowed_origins: Vec<String>,
    /// Admits `http://` and loopback endpoints: for tests with a local push service only.
    pub allow_insecure_loopback: bool,
}

impl Default for WebPushConfig {
    fn default() -> Self {
        Self {
            vapid_private_key: None,
            subject: "mailto:postmaster@localhost".into(),
            preview: true,
            allowed_origins: Vec::new(),
            allow_insecure_loopback: false,
        }
    }
}

/// The `[push.fcm]` section: Firebase Cloud Messaging (HTTP v1), off until `service_account`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FcmConfig {
    /// The service account's JSON key file, as the Firebase console gives it.
    pub service_account: Option<std::path::PathBuf>,
    /// Where FCM is (tests point it at a local stand-in).
    pub endpoint: String,
}

impl Default for FcmConfig {
    fn default() -> Self {
        Self { service_account: None, endpoint: "https://fcm.googleapis.com".into() }
    }
}

/// The `[push.apns]` section: Apple Push Notification service with token authentication, off
/// until `key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ApnsConfig {
    /// The `.p8` signing key file from the Apple developer account.
    pub key: Option<std::path::PathBuf>,
    /// The key's id, and the team it belongs to.
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// Where APNs is: `https://api.push.apple.com`, `https://api.sandbox.push.apple.com` for
    /// development builds, or a local stand-in in tests (HTTP/2 either way).
    pub endpoint: String,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        Self {
            key: None,
            key_id: String::new(),
            team_id: String::new(),
            topic: String::new(),
            endpoint: "https://api.push.apple.com".into(),
        }
    }
}

/// Longest FCM or APNs token, and device name, accepted.
const MAX_TOKEN: usize = 4096;
const MAX_DEVICE: usize = 128;

/// Why a registration or setting is refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("no such device registration")]
    NoDevice,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A registration as a client sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Registration {
    /// The client's name for the device (e.g. its MQTT client id); registering it again
    /// replaces what it had.
    #[schema(min_length = 1, max_length = 128)]
    pub device: String,
    pub kind: Kind,
    /// `webpush`: the browser's `PushSubscription` as JSON.
    pub subscription: Option<Subscription>,
    /// `fcm`, `apns`: the device token.
    #[schema(min_length = 1, max_length = 4096)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Webpush,
    Fcm,
    Apns,
}

/// A browser's `PushSubscription.toJSON()`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Subscription {
    pub endpoint: String,
    pub keys: SubscriptionKeys,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key, base64url (65 bytes, uncompressed).
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url.
    pub auth: String,
}

/// Registrations and notification settings.
#[derive(Clone)]
pub struct Push {
    store: Arc<dyn Store>,
    config: PushConfig,
}

impl Push {
    pub fn new(store: Arc<dyn Store>, config: PushConfig) -> Self {
        Self { store, config }
    }

    /// Registers a device of `user`, replacing the registration it had.
    pub async fn register(&self, user: &str, registration: Registration) -> Result<PushDevice, PushError> {
        let device = registration.device.trim();
        if device.is_empty() || device.len() > MAX_DEVICE || device.chars().any(char::is_control) {
            return Err(PushError::Invalid(format!("device is 1 to {MAX_DEVICE} printable characters")));
        }
        let target = match (registration.kind, registration.subscription, registration.token) {
            (Kind::Webpush, Some(subscription), None) => self.webpush_target(subscription).await?,
            (Kind::Fcm | Kind::Apns, None, Some(token)) => {
                let token = token.trim().to_owned();
                if token.is_empty() || token.len() > MAX_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(PushError::Invalid(format!("token is 1 to {MAX_TOKEN} printable characters")));
                }
                if registration.kind == Kind::Fcm {
                    PushTarget::Fcm { token }
                } else {
                    PushTarget::Apns { token }
                }
            }
            (Kind::Webpush, ..) => return Err(PushError::Invalid("webpush takes a subscription, no token".into())),
            _ => return Err(PushError::Invalid("fcm and apns take a token, no subscription".into())),
        };
        let device = PushDevice {
            id: uuid::Uuid::now_v7().simple().to_string(),
            user: user.to_owned(),
            device: device.to_owned(),
            target,
            created_at: now_millis(),
        };
        self.store.put_push_device(&device).await?;
        Ok(device)
    }

    async fn webpush_target(&self, subscription: Subscription) -> Result<PushTarget, PushError> {
        let decoded = |field: &str, value: &str, len: usize| match URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')) {
            Ok(bytes) if bytes.len() == len => Ok(()),
            _ => Err(PushError::Invalid(format!("keys.{field} is {len} bytes, base64url"))),
        };
        decoded("p256dh", &subscription.keys.p256dh, 65)?;
        decoded("auth", &subscription.keys.auth, 16)?;
        let endpoint = endpoint::check(
            &subscription.endpoint,
            self.config.webpush.allow_insecure_loopback,
            endpoint::Names::Resolve,
        )
        .await?;
        let allowed = &self.config.webpush.allowed_origins;
        if !allowed.is_empty()
            && !allowed.iter().any(|origin| origin.trim_end_matches('/') == endpoint::origin(&endpoint))
        {
            return Err(PushError::Invalid("the endpoint's push service is not one this server sends to".into()));
        }
        Ok(PushTarget::Webpush {
            endpoint: endpoint.into(),
            p256dh: subscription.keys.p256dh,
            auth: subscription.keys.auth,
        })
    }

    pub async fn devices(&self, user: &str) -> Result<Vec<PushDevice>, PushError> {
        Ok(self.store.push_devices_of(user).await?)
    }

    /// Forgets every registration of `user`: their sign-in was stolen (a refresh token came
    /// back twice), and whoever stole it may have registered a device of theirs.
    pub async fn forget_devices_of(&self, user: &str) -> Result<u64, PushError> {
        Ok(self.store.delete_push_devices_of(user).await?)
    }

    pub async fn unregister(&self, user: &str, id: &str) -> Result<(), PushError> {
        if self.store.delete_push_device(user, id).await? {
            Ok(())
        } else {
            Err(PushError::NoDevice)
        }
    }

    /// `user`'s setting for `room` (a member's), the default when they made none.
    pub async fn notifications(&self, room: &str, user: &str) -> Result<Notifications, PushError> {
        Ok(setting_of(self.store.as_ref(), room, user).await?)
    }

    pub async fn set_notifications(&self, room: &str, user: &str, setting: Notifications) -> Result<(), PushError> {
        Ok(self.store.set_notifications(room, user, &setting).await?)
    }

    /// `user`'s default for the rooms they set nothing for (`all` until they choose).
    pub async fn default_notifications(&self, user: &str) -> Result<Notifications, PushError> {
        Ok(self.store.notifications(EVERY_ROOM, user).await?.unwrap_or_default())
    }

    pub async fn set_default_notifications(&self, user: &str, setting: Notifications) -> Result<(), PushError> {
        Ok(self.store.set_notifications(EVERY_ROOM, user, &setting).await?)
    }
}

/// The room name a user's default setting is kept under: no room has it (names are 1 to 64
/// characters).
const EVERY_ROOM: &str = "";

/// What `user` wants pushed of `room`: their setting for it, else their default, else `all`.
pub(crate) async fn setting_of(store: &dyn Store, room: &str, user: &str) -> Result<Notifications, StoreError> {
    match store.notifications(room, user).await? {
        Some(setting) => Ok(setting),
        None => Ok(store.notifications(EVERY_ROOM, user).await?.unwrap_or_default()),
    }
}
