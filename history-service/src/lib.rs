//! The history service: the HTTP API (axum) over the store, and the rooms service behind it.

pub mod http;
mod rooms;

pub use http::{ApiConfig, AppState, ClientConfig};
