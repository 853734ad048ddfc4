//! The history service: the HTTP API (axum) over the store: accounts, rooms, history,
//! presence, bots, health, metrics, OpenAPI, and the browser chat page.

pub mod http;

pub use http::{ApiConfig, AppState, ClientConfig};
