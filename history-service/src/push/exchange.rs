//! One exchange with a push service: what a push tells (`Notice`), and what the service's answer
//! means for it (`Answer`, `Outcome`).

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use roost_store::PushJob;
use serde::Serialize;
use std::time::Duration;

/// How long one request to a push service may take, connecting included.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a push service's answer read (its error, for the log).
const MAX_ANSWER: usize = 16 * 1024;
/// Characters of the body a preview carries.
const PREVIEW_CHARS: usize = 120;

/// Why a push service cannot be used as configured.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("push.fcm.service_account: {0}")]
    Fcm(String),
    #[error("push.apns: {0}")]
    Apns(String),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What one push tells a device of: the newest message of a room.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Notice {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) room: String,
    pub(super) seq: i64,
    pub(super) from: String,
    pub(super) ts: i64,
    /// Messages of others in the room after the reader's receipt.
    pub(super) unread: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) preview: Option<String>,
    /// Unread messages in all the reader's rooms (the app icon's badge).
    #[serde(skip)]
    pub(super) badge: u64,
}

impl Notice {
    pub(super) fn new(job: &PushJob, unread: u64, badge: u64) -> Self {
        Self {
            kind: "message",
            room: job.room.clone(),
            seq: job.seq,
            from: job.from.clone(),
            ts: job.ts,
            unread,
            preview: Some(job.preview.clone()).filter(|p| !p.is_empty()),
            badge,
        }
    }

    /// The notice as sent to a service that may (`true`) or may not read the message.
    pub(super) fn with_preview(&self, preview: bool) -> Self {
        Self { preview: self.preview.clone().filter(|_| preview), ..self.clone() }
    }
}

/// What is left of `job`'s time to live, in seconds: the `TTL` a push service keeps it for.
pub(super) fn seconds_to_live(job: &PushJob) -> i64 {
    ((job.expires_at - roost_protocol::now_millis()) / 1000).max(0)
}

/// The start of a message body, as a preview shows it.
pub(super) fn preview(body: &str) -> String {
    let mut chars = body.chars();
    let start: String = chars.by_ref().take(PREVIEW_CHARS).collect();
    if chars.next().is_some() {
        format!("{start}…")
    } else {
        start
    }
}

/// What became of one attempt.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The push service took it.
    Sent,
    /// The registration is no more (expired subscription, uninstalled app): forget it.
    Gone(String),
    /// Try again later: after `after` when the service said so.
    Retry { after: Option<Duration>, why: String },
    /// The service refused this push for good.
    Failed(String),
}

/// A push service's answer: its status, what it said (at most 16 KiB of it), and when it
/// asked to be tried again.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: String,
    pub(super) retry_after: Option<Duration>,
}

impl Answer {
    /// Reads the answer to a request; a request that got none is retried.
    pub(super) async fn of(sent: reqwest::Result<reqwest::Response>) -> Result<Self, Outcome> {
        let mut response = sent.map_err(|e| Outcome::Retry { after: None, why: e.to_string() })?;
        let (status, retry_after) = (response.status(), retry_after(response.headers()));
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER - body.len())]),
                _ => break,
            }
        }
        Ok(Self { status, body: String::from_utf8_lossy(&body).into_owned(), retry_after })
    }

    /// The outcome when the service's own signs of a gone registration (`gone`) are absent:
    /// success sent, 429 and 5xx retried, anything else failed.
    pub(super) fn outcome(self, gone: bool) -> Outcome {
        let said = format!("{}: {}", self.status, self.body.trim());
        if self.status.is_success() {
            Outcome::Sent
        } else if gone {
            Outcome::Gone(said)
        } else if self.status == StatusCode::TOO_MANY_REQUESTS || self.status.is_server_error() {
            Outcome::Retry { after: self.retry_after, why: said }
        } else {
            Outcome::Failed(said)
        }
    }
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => httpdate::parse_http_date(value)
            .ok()
            .map(|when| when.duration_since(std::time::SystemTime::now()).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_the_start_of_the_body() {
        assert_eq!(preview("short"), "short");
        let long = "é".repeat(200);
        assert_eq!(preview(&long).chars().count(), PREVIEW_CHARS + 1, "cut on a character, marked");
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        headers.insert(RETRY_AFTER, later.parse().unwrap());
        assert!(retry_after(&headers).is_some_and(|d| d > Duration::from_secs(100)));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
