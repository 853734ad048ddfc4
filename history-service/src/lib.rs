//! The history service: the HTTP API (axum) over the store, and the rooms and uploads services
//! behind it.

pub mod http;
pub mod media;
mod rooms;

pub use http::{ApiConfig, AppState, ClientConfig};
