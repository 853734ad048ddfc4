//! Persistence under both halves of Roost: the store contract and its two stores (embedded
//! SQLite, MongoDB), the blob stores of uploads, the ingest that batches stamped traffic into
//! it, retention, and the outbox that carries the HTTP API's changes to the broker.

mod blobs;
mod contract;
mod ingest;
mod mongo;
mod outbox;
mod presence;
mod relay;
mod retention;
mod sqlite;
mod words;

pub use blobs::{BlobError, BlobStream, Blobs, FsBlobs, GridFsBlobs, S3Blobs, S3Config};
pub use contract::{
    retry_until_ok, Bot, Media, NotificationLevel, Notifications, Page, Presented, PushDevice, PushJob, PushTarget,
    ReactionCount, RefreshToken, Retention, Room, SearchCursor, SearchScope, Store, StoreError,
    OUTBOX_FOLLOWER_KEEP_MS, PUSH_DUE_HOLD_MS, UNREAD_CAP,
};
pub use ingest::{Ingest, IngestHandle, Record};
pub use mongo::MongoStore;
pub use outbox::Directive;
pub use presence::{PresenceReader, PresenceSource};
pub use relay::{OutboxRelay, Relay};
pub use retention::RetentionPolicy;
pub use sqlite::SqliteStore;
pub use words::words;
