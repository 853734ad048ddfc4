//! Limits on password work: login and registration attempts per client address, login
//! attempts per user name from one address and from all; past them the answer is 429 with
//! `Retry-After`.

use super::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use roost_auth::rate::KeyedBuckets;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// A user name takes this many times its per-address budget from all addresses together: one
/// address cannot lock a user out, many addresses guessing together are still slowed.
const USER_ACROSS_ADDRESSES: u32 = 10;

/// Attempt budgets of the password endpoints.
pub struct AuthThrottle {
    per_address: KeyedBuckets,
    per_user_and_address: KeyedBuckets,
    per_user: KeyedBuckets,
    /// The TCP peer is a reverse proxy: the client is the last address it added to
    /// `X-Forwarded-For`.
    trust_forwarded_for: bool,
}

impl AuthThrottle {
    /// `per_address` login and registration attempts a minute from one client address,
    /// `per_user` login attempts a minute on one user name from one address (each at least 1).
    pub fn new(per_address: u32, per_user: u32, trust_forwarded_for: bool) -> Self {
        Self {
            per_address: KeyedBuckets::per_minute(per_address),
            per_user_and_address: KeyedBuckets::per_minute(per_user),
            per_user: KeyedBuckets::per_minute(per_user.saturating_mul(USER_ACROSS_ADDRESSES)),
            trust_forwarded_for,
        }
    }

    /// Counts an attempt from the client.
    pub(crate) fn attempt_from(&self, client: &ClientAddress) -> Result<(), ApiError> {
        self.per_address.try_take(&self.key_of(client)).map_err(ApiError::rate_limited)
    }

    /// Counts a login attempt on `user` from the client.
    pub(crate) fn attempt_on(&self, user: &str, client: &ClientAddress) -> Result<(), ApiError> {
        self.per_user_and_address
            .try_take(&format!("{user} {}", self.key_of(client)))
            .map_err(ApiError::rate_limited)?;
        self.per_user.try_take(user).map_err(ApiError::rate_limited)
    }

    /// The client's address as limits count it: an IPv6 client by its /64, which one host
    /// usually holds whole.
    fn key_of(&self, client: &ClientAddress) -> String {
        let forwarded = self.trust_forwarded_for.then_some(client.forwarded).flatten();
        match forwarded.or(client.peer) {
            Some(IpAddr::V6(v6)) => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
            Some(v4) => v4.to_string(),
            None => "unknown".to_owned(),
        }
    }
}

/// Where the request came from: the TCP peer (the server loop records it) and the last
/// address of `X-Forwarded-For`, used only when the peer is trusted to have set it.
pub(crate) struct ClientAddress {
    peer: Option<IpAddr>,
    forwarded: Option<IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .last()
            .and_then(|address| address.trim().parse().ok());
        Ok(Self { peer, forwarded })
    }
}
