//! The HTTP API (axum): auth, rooms, history, presence, health, metrics and OpenAPI, and the
//! browser chat page.

mod auth;
mod bots;
mod error;
mod history;
mod media;
mod ops;
mod presence;
mod push;
mod rooms;
mod search;
mod server;
mod throttle;
mod web;

pub use error::ApiError;
pub use server::{serve, HttpConfig};
pub use throttle::AuthThrottle;
pub use web::{ClientConfig, PushKeys};

use crate::media::Uploads;
use crate::push::Push;
use crate::rooms::Rooms;
use axum::extract::FromRef;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use roost_auth::passwords::PasswordPool;
use roost_auth::{MembershipView, TokenService};
use roost_store::Relay;
use roost_store::{PresenceReader, Store};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

/// Token lifetimes the API hands out, and where browsers reach the broker.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub client: ClientConfig,
    /// Rooms one user may own at once.
    pub max_rooms_per_user: usize,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub tokens: TokenService,
    pub membership: Arc<MembershipView>,
    pub relay: Arc<dyn Relay>,
    pub presence: PresenceReader,
    pub metrics: PrometheusHandle,
    pub config: ApiConfig,
    /// Hashing threads of their own for register and login.
    pub passwords: PasswordPool,
    pub throttle: Arc<AuthThrottle>,
    pub uploads: Uploads,
    pub push: Push,
}

impl FromRef<AppState> for Push {
    fn from_ref(state: &AppState) -> Self {
        state.push.clone()
    }
}

impl FromRef<AppState> for Uploads {
    fn from_ref(state: &AppState) -> Self {
        state.uploads.clone()
    }
}

impl FromRef<AppState> for Rooms {
    fn from_ref(state: &AppState) -> Self {
        Rooms::new(state.store.clone(), state.membership.clone(), state.relay.clone(), state.config.max_rooms_per_user)
    }
}

/// The complete API router, serving its OpenAPI document at `/openapi.json`.
pub fn router(state: AppState) -> Router {
    let (api, document) = api();
    api.merge(ops::openapi_route(document))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
}

/// Every route of the API and the OpenAPI document of its operations: each handler file
/// registers an operation with its route, so the document lists exactly the paths served.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, operations) = OpenApiRouter::new()
        .merge(auth::routes())
        .merge(bots::routes())
        .merge(rooms::routes())
        .merge(history::routes())
        .merge(search::routes())
        .merge(media::routes())
        .merge(push::routes())
        .merge(presence::routes())
        .merge(ops::routes())
        .merge(web::routes())
        .split_for_parts();
    (router, ops::document(operations))
}
