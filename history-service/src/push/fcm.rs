//! Firebase Cloud Messaging, HTTP v1: an OAuth 2 access token got with the service account's
//! signed assertion (RS256), then one `messages:send` per push.

use super::exchange::{seconds_to_live, Answer, Notice, Outcome, ProviderError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use super::PushConfig;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;
use roost_protocol::now_millis;
use roost_store::PushJob;
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The scope a service account asks for to send messages.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// An access token is renewed this long before it expires.
const RENEW_EARLY: Duration = Duration::from_secs(300);

/// The fields of a service account key file that sending needs.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    token_uri: String,
}

#[derive(Deserialize)]
struct Granted {
    access_token: String,
    expires_in: u64,
}

pub(super) struct Fcm {
    client: reqwest::Client,
    account: ServiceAccount,
    key: EncodingKey,
    send_url: String,
    preview: bool,
    /// The access token and when to renew it.
    token: Mutex<Option<(String, Instant)>>,
}

impl Fcm {
    pub(super) fn new(config: &PushConfig) -> Result<Self, ProviderError> {
        let path = config.fcm.service_account.as_ref().expect("FCM is configured");
        let text = std::fs::read_to_string(path).map_err(|e| ProviderError::Fcm(format!("{}: {e}", path.display())))?;
        let account: ServiceAccount =
            serde_json::from_str(&text).map_err(|e| ProviderError::Fcm(format!("not a service account key: {e}")))?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| ProviderError::Fcm(format!("private_key: {e}")))?;
        let client = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT).build()?;
        let send_url =
            format!("{}/v1/projects/{}/messages:send", config.fcm.endpoint.trim_end_matches('/'), account.project_id);
        Ok(Self { client, account, key, send_url, preview: config.preview, token: Mutex::new(None) })
    }

    pub(super) async fn send(&self, token: &str, notice: &Notice, job: &PushJob) -> Outcome {
        let access = match self.access_token().await {
            Ok(access) => access,
            Err(outcome) => return outcome,
        };
        let notice = notice.with_preview(self.preview);
        // FCM data values are strings
        let mut data = json!({"type": notice.kind, "room": notice.room, "seq": notice.seq.to_string(),
            "from": notice.from, "ts": notice.ts.to_string(), "unread": notice.unread.to_string(),
            "badge": notice.badge.to_string()});
        if let Some(preview) = &notice.preview {
            data["preview"] = preview.as_str().into();
        }
        let ttl = seconds_to_live(job);
        let message = json!({"message": {
            "token": token,
            "data": data,
            "android": {"collapse_key": job.room, "priority": if job.urgent { "HIGH" } else { "NORMAL" },
                        "ttl": format!("{ttl}s")},
        }});
        let sent = self
            .client
            .post(&self.send_url)
            .header(AUTHORIZATION, format!("Bearer {access}"))
            .json(&message)
            .send()
            .await;
        let answer = match Answer::of(sent).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        if answer.status == StatusCode::UNAUTHORIZED {
            // the access token was refused: a new one next time
            *self.token.lock().await = None;
            return Outcome::Retry { after: None, why: format!("401: {}", answer.body.trim()) };
        }
        // the token is no longer valid for the app (uninstalled, expired)
        let gone = answer.status == StatusCode::NOT_FOUND || answer.body.contains("UNREGISTERED");
        answer.outcome(gone)
    }

    /// The cached access token, or a new one for a signed assertion.
    async fn access_token(&self) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some((token, renew_at)) = cached.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let now = now_millis() / 1000;
        let claims = json!({"iss": self.account.client_email, "scope": SCOPE, "aud": self.account.token_uri,
                            "iat": now, "exp": now + 3600});
        let header = Header { kid: self.account.private_key_id.clone(), ..Header::new(Algorithm::RS256) };
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Outcome::Failed(format!("signing the assertion: {e}")))?;
        let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)];
        let sent = self.client.post(&self.account.token_uri).form(&form).send().await;
        let answer = Answer::of(sent).await?;
        if !answer.status.is_success() {
            return Err(Outcome::Retry { after: answer.retry_after, why: format!("token: {}", answer.status) });
        }
        let granted: Granted = serde_json::from_str(&answer.body)
            .map_err(|e| Outcome::Retry { after: None, why: format!("token answer: {e}") })?;
        let renew_at = Instant::now() + Duration::from_secs(granted.expires_in).saturating_sub(RENEW_EARLY);
        *cached = Some((granted.access_token.clone(), renew_at));
        Ok(granted.access_token)
    }
}
