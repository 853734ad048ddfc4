//! Apple Push Notification service with token authentication: a provider token (ES256, signed
//! with the team's `.p8` key) on every request, over HTTP/2.

use super::exchange::{Answer, Notice, Outcome, ProviderError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use super::PushConfig;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;
use roost_protocol::now_millis;
use roost_store::PushJob;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A provider token is made again after this long (Apple refuses one older than an hour, and
/// one made more often than every 20 minutes).
const TOKEN_LIFETIME: Duration = Duration::from_secs(40 * 60);
/// Longest `apns-collapse-id` Apple accepts.
const MAX_COLLAPSE_ID: usize = 64;

pub(super) struct Apns {
    client: reqwest::Client,
    key: EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    endpoint: String,
    preview: bool,
    /// The provider token and when it was made.
    token: Mutex<Option<(String, Instant)>>,
}

impl Apns {
    pub(super) fn new(config: &PushConfig) -> Result<Self, ProviderError> {
        let apns = &config.apns;
        let path = apns.key.as_ref().expect("APNs is configured");
        let pem = std::fs::read(path).map_err(|e| ProviderError::Apns(format!("key {}: {e}", path.display())))?;
        let key = EncodingKey::from_ec_pem(&pem).map_err(|e| ProviderError::Apns(format!("key: {e}")))?;
        for (field, value) in [("key_id", &apns.key_id), ("team_id", &apns.team_id), ("topic", &apns.topic)] {
            if value.is_empty() {
                return Err(ProviderError::Apns(format!("{field} is needed with a key")));
            }
        }
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            client,
            key,
            key_id: apns.key_id.clone(),
            team_id: apns.team_id.clone(),
            topic: apns.topic.clone(),
            endpoint: apns.endpoint.trim_end_matches('/').to_owned(),
            preview: config.preview,
            token: Mutex::new(None),
        })
    }

    pub(super) async fn send(&self, device_token: &str, notice: &Notice, job: &PushJob) -> Outcome {
        let provider_token = match self.provider_token().await {
            Ok(token) => token,
            Err(e) => return Outcome::Failed(format!("signing the provider token: {e}")),
        };
        let notice = notice.with_preview(self.preview);
        let alert = json!({"title": notice.from, "body": notice.preview.as_deref().unwrap_or("New message")});
        let body = json!({
            "aps": {"alert": alert, "badge": notice.badge, "sound": "default", "thread-id": notice.room},
            "type": notice.kind, "room": notice.room, "seq": notice.seq, "from": notice.from, "ts": notice.ts,
            "unread": notice.unread,
        });
        let collapse_id: String = job.room.chars().take(MAX_COLLAPSE_ID).collect();
        let sent = self
            .client
            .post(format!("{}/3/device/{device_token}", self.endpoint))
            .header(AUTHORIZATION, format!("bearer {provider_token}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", if job.urgent { "10" } else { "5" })
            .header("apns-expiration", (job.expires_at / 1000).to_string())
            .header("apns-collapse-id", collapse_id)
            .json(&body)
            .send()
            .await;
        let answer = match Answer::of(sent).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        if answer.status == StatusCode::FORBIDDEN && answer.body.contains("ExpiredProviderToken") {
            // made anew next time
            *self.token.lock().await = None;
            return Outcome::Retry { after: None, why: "403: ExpiredProviderToken".into() };
        }
        // the app was removed from the device, or the token is not one of this app's
        let gone = answer.status == StatusCode::GONE
            || (answer.status == StatusCode::BAD_REQUEST
                && (answer.body.contains("BadDeviceToken") || answer.body.contains("DeviceTokenNotForTopic")));
        answer.outcome(gone)
    }

    /// The provider token, made again once it is 40 minutes old.
    async fn provider_token(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let mut cached = self.token.lock().await;
        if let Some((token, made)) = cached.as_ref() {
            if made.elapsed() < TOKEN_LIFETIME {
                return Ok(token.clone());
            }
        }
        let header = Header { kid: Some(self.key_id.clone()), ..Header::new(Algorithm::ES256) };
        let claims = json!({"iss": self.team_id, "iat": now_millis() / 1000});
        let token = jsonwebtoken::encode(&header, &claims, &self.key)?;
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }
}
