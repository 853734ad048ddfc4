//! The history service: persists stamped room traffic and serves the HTTP API.

pub mod http;
pub mod ingest;
pub mod relay;
pub mod retention;
pub mod store;

pub use http::{ApiConfig, AppState, ClientConfig, PresenceSource};
pub use ingest::{Ingest, IngestHandle, Record};
pub use relay::{Directive, OutboxRelay, Relay};
pub use retention::RetentionPolicy;
pub use store::{
    retry_until_ok, Bot, MongoStore, Page, Presented, RefreshToken, Retention, Room, SqliteStore, Store, StoreError,
};
