//! Limits on password work: login and registration attempts per client address, login
//! attempts per user name; past them the answer is 429 with `Retry-After`.

use super::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use roost_auth::rate::KeyedBuckets;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Attempt budgets of the password endpoints.
pub struct AuthThrottle {
    per_address: KeyedBuckets,
    per_user: KeyedBuckets,
}

impl AuthThrottle {
    /// `per_address` login and registration attempts a minute from one client address,
    /// `per_user` login attempts a minute on one user name (each at least 1).
    pub fn new(per_address: u32, per_user: u32) -> Self {
        Self { per_address: KeyedBuckets::per_minute(per_address), per_user: KeyedBuckets::per_minute(per_user) }
    }

    /// Counts an attempt from `address`.
    pub(crate) fn attempt_from(&self, address: ClientAddress) -> Result<(), ApiError> {
        self.per_address.try_take(&address.0.to_string()).map_err(ApiError::rate_limited)
    }

    /// Counts a login attempt on `user`: guessing one account's password from many addresses
    /// is slowed as much as from one.
    pub(crate) fn attempt_on(&self, user: &str) -> Result<(), ApiError> {
        self.per_user.try_take(user).map_err(ApiError::rate_limited)
    }
}

/// The address of the client that sent the request (the TCP peer; the server loop records it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddress(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
        Ok(Self(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}
