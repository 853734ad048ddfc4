//! Where the bytes of uploads live: one trait and its three stores, files under the data dir
//! (the default), MongoDB GridFS and S3-compatible object storage. The facts about each upload
//! are in the [`Store`](crate::Store).

mod fs;
mod gridfs;
mod s3;

pub use fs::FsBlobs;
pub use gridfs::GridFsBlobs;
pub use s3::{S3Blobs, S3Config};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use std::ops::Range;
use std::path::Path;

/// Why the blob store failed; the message is for logs only.
#[derive(Debug, thiserror::Error)]
#[error("blob store: {0}")]
pub struct BlobError(pub String);

impl From<std::io::Error> for BlobError {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

/// Bytes on their way out of the blob store.
pub type BlobStream = BoxStream<'static, Result<Bytes, BlobError>>;

/// Upload bytes by key. Keys are `[A-Za-z0-9._-]`, chosen by the server.
#[async_trait]
pub trait Blobs: Send + Sync + 'static {
    /// Keeps the file at `spooled` under `key`, taking it: the file is gone afterwards.
    async fn put_file(&self, key: &str, spooled: &Path) -> Result<(), BlobError>;
    /// The bytes of `key` in `range` (all of them without one); `None` when there is no `key`.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<BlobStream>, BlobError>;
    /// Forgets `key`; a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
}
