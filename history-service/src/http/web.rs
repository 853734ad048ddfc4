//! The browser chat page: its assets, built by build.rs from web/ and embedded, and the MQTT
//! endpoints it connects to.

use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

macro_rules! asset {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/web/", $file)).as_slice()
    };
}

/// Path, content type and contents of every asset.
const ASSETS: [(&str, &str, &[u8]); 5] = [
    ("/", "text/html; charset=utf-8", asset!("index.html")),
    ("/assets/app.js", "text/javascript; charset=utf-8", asset!("app.js")),
    ("/assets/style.css", "text/css; charset=utf-8", asset!("style.css")),
    ("/assets/mqtt.esm.js", "text/javascript; charset=utf-8", asset!("mqtt.esm.js")),
    // at the root: a service worker controls the pages under its own path
    ("/sw.js", "text/javascript; charset=utf-8", asset!("sw.js")),
];

pub(super) fn routes() -> OpenApiRouter<AppState> {
    let pages = ASSETS.into_iter().fold(OpenApiRouter::new(), |router, (path, content_type, body)| {
        router.route(path, get(move || async move { ([(header::CONTENT_TYPE, content_type)], body) }))
    });
    pages.routes(routes!(client_config))
}

/// Where browsers reach the broker: MQTT over WebSocket on the page's own host.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ClientConfig {
    /// Port of MQTT over WebSocket (`ws://HOST:PORT/mqtt`).
    pub ws_port: Option<u16>,
    /// Port of MQTT over secure WebSocket (`wss://HOST:PORT/mqtt`), when configured.
    pub wss_port: Option<u16>,
    pub push: PushKeys,
}

/// What a client needs to register for pushes.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct PushKeys {
    /// The server's VAPID public key (base64url, uncompressed P-256): a browser's
    /// `applicationServerKey`.
    pub webpush_vapid_key: String,
}

#[utoipa::path(get, path = "/v1/client-config", responses((status = 200, body = ClientConfig)))]
pub(crate) async fn client_config(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.config.client.clone())
}
