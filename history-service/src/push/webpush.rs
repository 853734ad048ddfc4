//! Web Push (RFC 8030): the notice encrypted for the browser (RFC 8291, aes128gcm), the request
//! signed for its push service (RFC 8292, VAPID), posted to the subscription's endpoint.

use super::endpoint::{self, Names, PublicOnly};
use super::exchange::{seconds_to_live, Answer, Notice, Outcome, ProviderError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use super::WebPushConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use roost_auth::VapidKey;
use roost_protocol::now_millis;
use roost_store::PushJob;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a VAPID token is valid (push services refuse more than 24 h), and how long before
/// it expires a new one is signed: one signature per push service an hour, not one per push.
const VAPID_VALIDITY_SECS: i64 = 12 * 3600;
const VAPID_RENEW_SECS: i64 = 11 * 3600;
/// Push service origins whose token is kept; past it the cache starts over.
const MAX_ORIGINS: usize = 1024;

pub(super) struct WebPush {
    client: reqwest::Client,
    vapid: VapidKey,
    config: WebPushConfig,
    /// The `Authorization` per push service origin, and when it is signed again (seconds).
    authorizations: Mutex<HashMap<String, (String, i64)>>,
}

impl WebPush {
    pub(super) fn new(vapid: VapidKey, config: WebPushConfig) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicOnly { allow_insecure_loopback: config.allow_insecure_loopback }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self { client, vapid, config, authorizations: Mutex::new(HashMap::new()) })
    }

    /// The VAPID `Authorization` for the push service at `origin`, signed anew when the one
    /// kept is an hour from expiring.
    fn authorization(&self, origin: String, now_secs: i64) -> String {
        let mut kept = self.authorizations.lock().expect("authorizations lock");
        if let Some((header, renew_at)) = kept.get(&origin) {
            if now_secs < *renew_at {
                return header.clone();
            }
        }
        if kept.len() >= MAX_ORIGINS {
            kept.clear();
        }
        let header = self.vapid.authorization(&origin, now_secs + VAPID_VALIDITY_SECS, &self.config.subject);
        kept.insert(origin, (header.clone(), now_secs + VAPID_RENEW_SECS));
        header
    }

    pub(super) async fn send(
        &self,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        notice: &Notice,
        job: &PushJob,
    ) -> Outcome {
        // checked again (a name by the client's resolver, at connecting): what was public at
        // registration may not be now
        let url = match endpoint::check(endpoint, self.config.allow_insecure_loopback, Names::LeaveToResolver).await {
            Ok(url) => url,
            Err(e) => return Outcome::Gone(e.to_string()),
        };
        let keys = URL_SAFE_NO_PAD.decode(p256dh.trim_end_matches('=')).ok().and_then(|key| {
            let auth: [u8; 16] = URL_SAFE_NO_PAD.decode(auth.trim_end_matches('=')).ok()?.try_into().ok()?;
            Some((p256::PublicKey::from_sec1_bytes(&key).ok()?, auth))
        });
        let Some((browser_key, auth)) = keys else {
            return Outcome::Gone("the subscription's keys are not a P-256 key and a 16-byte secret".into());
        };
        let payload = serde_json::to_vec(&notice.with_preview(self.config.preview)).expect("notices serialize");
        let auth = web_push_native::Auth::from(auth);
        let encrypted = match web_push_native::encrypt(payload, &browser_key, &auth) {
            Ok(encrypted) => encrypted,
            Err(e) => return Outcome::Failed(format!("encrypting: {e}")),
        };
        let now = now_millis();
        let ttl = seconds_to_live(job);
        let authorization = self.authorization(endpoint::origin(&url), now / 1000);
        let sent = self
            .client
            .post(url)
            .header("TTL", ttl)
            .header("Urgency", if job.urgent { "high" } else { "normal" })
            .header("Topic", topic(&job.room))
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(AUTHORIZATION, authorization)
            .body(encrypted)
            .send()
            .await;
        match Answer::of(sent).await {
            // 404 and 410: the subscription expired or was withdrawn
            Ok(answer) => {
                let gone = matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::GONE);
                answer.outcome(gone)
            }
            Err(outcome) => outcome,
        }
    }
}

/// The `Topic` of a room's pushes: a push service keeps only the newest of one topic for a
/// device that is off. At most 32 characters of the base64url alphabet (RFC 8030 5.4), and
/// the room's name is not shown to the push service.
fn topic(room: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(room.as_bytes()))[..32].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_32_url_safe_characters_per_room() {
        let (a, b) = (topic("lobby"), topic("kitchen"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
        assert_eq!(a, topic("lobby"));
    }
}
