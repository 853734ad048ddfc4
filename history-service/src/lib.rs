//! The history service: the HTTP API (axum) over the store, and the rooms, uploads and push
//! services behind it.

pub mod http;
pub mod media;
pub mod push;
mod rooms;

pub use http::{ApiConfig, AppState, ClientConfig, PushKeys};
