//! Operations endpoints: health, Prometheus metrics, and the OpenAPI document of the whole API.

use super::error::ErrorBody;
use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(prometheus))
}

/// Serves `document` at `/openapi.json`.
pub(super) fn openapi_route(document: utoipa::openapi::OpenApi) -> Router<AppState> {
    Router::new().route("/openapi.json", get(move || async move { Json(document) }))
}

/// The OpenAPI document of the whole API: its info and bearer scheme around `operations` (the
/// paths and schemas each handler file registered beside its routes), every operation with the
/// errors common to its kind.
pub(super) fn document(operations: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi().merge_from(operations);
    CommonErrors.modify(&mut document);
    document
}

/// A store that does not answer a ping within this is reported unavailable.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `degraded` while the store cannot be reached.
    status: &'static str,
    store: &'static str,
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(Health { status: "ok", store: "ok" })),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "degraded", store: "unavailable" })),
    }
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
pub(crate) async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The errors any operation of a kind can answer, added to each so the document lists every
/// status the server sends: the extractors' refusals (bad JSON, wrong content type, a body
/// too large, a missing token) and an unavailable store.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder};
        let error = |description: &str| {
            let body = utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")));
            RefOr::T(ResponseBuilder::new().description(description).content("application/json", body.build()).build())
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete].into_iter().flatten() {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let mut add = |status: &str, description: &str| {
                    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error(description));
                };
                if secured {
                    add("401", "missing, invalid, expired or revoked bearer token");
                    add("503", "the store is unavailable; retry later");
                }
                if operation.request_body.is_some() {
                    add("400", "the body is not JSON");
                    add("413", "the body is too large");
                    add("415", "the body is not application/json");
                    add("422", "the JSON does not match the schema");
                    add("503", "the store is unavailable; retry later");
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Roost", description = "Chat messaging and presence over MQTT: accounts, rooms, history, presence."),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;
