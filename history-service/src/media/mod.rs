//! Uploads to rooms: taken in as a stream (size and quota checked as the bytes come, the type
//! sniffed from them, images cleaned), kept in the blob store with their facts in the store,
//! served to members or by signed URL, and swept when nothing shows them any more.

mod images;
mod kinds;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use roost_auth::tokens::hex;
use roost_auth::{MembershipView, UrlSigner};
use roost_protocol::now_millis;
use roost_store::{BlobError, BlobStream, Blobs, Media, S3Config, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

pub(crate) use kinds::safe_inline;

/// The `[media]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaConfig {
    /// Where the bytes live: `fs` (files under the data dir), `gridfs` (the MongoDB of
    /// `store.uri`) or `s3` (`[media.s3]`).
    pub store: String,
    /// Bytes one upload may have (`ROOST_MEDIA__MAX_UPLOAD_SIZE`); past it: 413.
    pub max_upload_size: u64,
    /// Types accepted, as sniffed from the bytes; others: 415.
    pub allowed_types: Vec<String>,
    /// Bytes of uploads one user may keep at once; past it: 413.
    pub quota_per_user: u64,
    /// Seconds an upload no message shows is kept.
    pub unused_ttl: u64,
    /// Seconds between sweeps of uploads nothing shows any more.
    pub sweep_interval: u64,
    /// Seconds a signed URL works.
    pub url_ttl: u64,
    /// Pixels an image may have (decompression bombs are refused before decoding).
    pub max_pixels: u64,
    /// The bucket and its server, for `store = "s3"`.
    pub s3: S3Config,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            store: "fs".into(),
            max_upload_size: 25 * 1024 * 1024,
            allowed_types: kinds::default_allowed(),
            quota_per_user: 1024 * 1024 * 1024,
            unused_ttl: 24 * 3600,
            sweep_interval: 60,
            url_ttl: 3600,
            max_pixels: 50_000_000,
            s3: S3Config::default(),
        }
    }
}

/// Thumbnail boxes served: a request gets the smallest that holds it, so the cache stays small.
const THUMBNAIL_SIZES: [u32; 4] = [96, 320, 640, 1280];
/// How long after a message referenced an upload its absence from history means it was pruned
/// (not still on its way to the store).
const REFERENCE_GRACE_MS: i64 = 60_000;
/// Uploads swept per round.
const SWEEP_BATCH: u32 = 500;

/// Why an upload or a download failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no such upload")]
    NotFound,
    #[error("an upload is at most {0} bytes")]
    TooLarge(u64),
    #[error("uploads of one user keep at most {0} bytes")]
    OverQuota(u64),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    BadImage(String),
    #[error("the upload was cut off: {0}")]
    Body(String),
    #[error("only the uploader deletes an upload, and only while no message shows it")]
    NotDeletable,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blobs(#[from] BlobError),
    #[error("spooling the upload: {0}")]
    Spool(#[from] std::io::Error),
}

/// An upload as its response and its signed URL show it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub media: Media,
    /// Path and query of a URL that serves it without a bearer header until it expires.
    pub url: String,
}

/// The uploads service.
#[derive(Clone)]
pub struct Uploads {
    inner: Arc<Inner>,
}

struct Inner {
    config: MediaConfig,
    store: Arc<dyn Store>,
    blobs: Arc<dyn Blobs>,
    membership: Arc<MembershipView>,
    signer: UrlSigner,
    /// Where uploads are written while they arrive (same file system as the fs blob store).
    spool: PathBuf,
}

/// A file being written, removed when dropped unless the blob store has taken it already.
struct Spooled {
    path: PathBuf,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Uploads {
    pub fn new(
        config: MediaConfig,
        store: Arc<dyn Store>,
        blobs: Arc<dyn Blobs>,
        membership: Arc<MembershipView>,
        signer: UrlSigner,
        spool: PathBuf,
    ) -> Result<Self, std::io::Error> {
        std::fs::create_dir_all(&spool)?;
        Ok(Self { inner: Arc::new(Inner { config, store, blobs, membership, signer, spool }) })
    }

    /// Takes in the upload `body` of `user` (a member of `room`) to `room`.
    pub async fn upload<S, E>(
        &self,
        user: &str,
        room: &str,
        filename: &str,
        declared: Option<&str>,
        body: S,
    ) -> Result<Stored, MediaError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let config = &self.inner.config;
        let used = self.inner.store.media_bytes_of(user).await?;
        let allowance = config.quota_per_user.saturating_sub(used);
        let id = uuid::Uuid::now_v7().simple().to_string();
        let spooled = Spooled { path: self.inner.spool.join(format!("{id}.part")) };
        let (head, mut sha256, mut size) = match spool(body, &spooled.path, config.max_upload_size, allowance).await {
            Err(MediaError::OverQuota(_)) => return Err(MediaError::OverQuota(config.quota_per_user)),
            spooled => spooled?,
        };
        let content_type =
            kinds::sniff(&head).ok_or_else(|| MediaError::Unsupported("the file's type is not recognised".into()))?;
        if !config.allowed_types.iter().any(|allowed| allowed == content_type) {
            return Err(MediaError::Unsupported(format!("{content_type} is not accepted here")));
        }
        if !kinds::agrees(declared, content_type) {
            return Err(MediaError::Unsupported(format!(
                "declared {}, but the bytes are {content_type}",
                declared.unwrap_or_default()
            )));
        }
        let (mut width, mut height) = (None, None);
        if images::is_image(content_type) {
            let bytes = tokio::fs::read(&spooled.path).await?;
            let (max_pixels, kind) = (config.max_pixels, content_type.to_owned());
            let cleaned = tokio::task::spawn_blocking(move || images::clean(&bytes, &kind, max_pixels))
                .await
                .map_err(|e| MediaError::BadImage(e.to_string()))?
                .map_err(|e| MediaError::BadImage(e.to_string()))?;
            if let Some(bytes) = cleaned.bytes {
                (sha256, size) = (hex(&Sha256::digest(&bytes)), bytes.len() as u64);
                tokio::fs::write(&spooled.path, bytes).await?;
            }
            (width, height) = (Some(cleaned.width), Some(cleaned.height));
        }
        let media = Media {
            id: id.clone(),
            room: room.to_owned(),
            uploader: user.to_owned(),
            content_type: content_type.to_owned(),
            size,
            sha256,
            filename: filename.to_owned(),
            width,
            height,
            created_at: now_millis(),
            referenced_by: None,
        };
        self.inner.blobs.put_file(&id, &spooled.path).await?;
        if let Err(e) = self.inner.store.put_media(&media).await {
            let _ = self.inner.blobs.delete(&id).await;
            return Err(e.into());
        }
        info!(%user, %room, id, content_type, size, "upload stored");
        Ok(self.stored(media))
    }

    fn stored(&self, media: Media) -> Stored {
        let expires = now_millis() / 1000 + i64::try_from(self.inner.config.url_ttl).unwrap_or(i64::MAX / 2);
        let signature = self.inner.signer.sign(&media.id, expires);
        let url = format!("/v1/media/{}?exp={expires}&sig={signature}", media.id);
        Stored { media, url }
    }

    /// The upload `id`, when `reader` is a member of its room.
    pub async fn for_member(&self, id: &str, reader: &str) -> Result<Media, MediaError> {
        let media = self.inner.store.media(id).await?.ok_or(MediaError::NotFound)?;
        // not a member: as if there were no such upload, ids say nothing of others' rooms
        if self.inner.membership.is_member(&media.room, reader) {
            Ok(media)
        } else {
            Err(MediaError::NotFound)
        }
    }

    /// The upload `id`, when `signature` is the server's for it and has not expired.
    pub async fn by_signature(&self, id: &str, expires: i64, signature: &str) -> Result<Media, MediaError> {
        if !self.inner.signer.verify(id, expires, signature, now_millis() / 1000) {
            return Err(MediaError::NotFound);
        }
        self.inner.store.media(id).await?.ok_or(MediaError::NotFound)
    }

    /// The bytes of `media` in `range`.
    pub async fn bytes(&self, media: &Media, range: Option<Range<u64>>) -> Result<BlobStream, MediaError> {
        self.inner.blobs.get(&media.id, range).await?.ok_or(MediaError::NotFound)
    }

    /// A thumbnail of the image `media` fitting `width` x `height`, made once per size and kept;
    /// returns its bytes and type.
    pub async fn thumbnail(&self, media: &Media, width: u32, height: u32) -> Result<(Bytes, &'static str), MediaError> {
        if !images::is_image(&media.content_type) {
            return Err(MediaError::Unsupported("only images have thumbnails".into()));
        }
        let wanted = width.max(height);
        let size = THUMBNAIL_SIZES.into_iter().find(|&size| size >= wanted).unwrap_or(THUMBNAIL_SIZES[3]);
        for kind in ["image/jpeg", "image/png"] {
            if let Some(cached) = self.inner.blobs.get(&thumbnail_key(&media.id, size, kind), None).await? {
                return Ok((collect(cached).await?, kind));
            }
        }
        let original = collect(self.bytes(media, None).await?).await?;
        let (kind, max_pixels) = (media.content_type.clone(), self.inner.config.max_pixels);
        let (bytes, made) = tokio::task::spawn_blocking(move || images::thumbnail(&original, &kind, size, max_pixels))
            .await
            .map_err(|e| MediaError::BadImage(e.to_string()))?
            .map_err(|e| MediaError::BadImage(e.to_string()))?;
        let spooled = Spooled { path: self.inner.spool.join(format!("{}.thumb", uuid::Uuid::now_v7().simple())) };
        tokio::fs::write(&spooled.path, &bytes).await?;
        self.inner.blobs.put_file(&thumbnail_key(&media.id, size, made), &spooled.path).await?;
        Ok((Bytes::from(bytes), made))
    }

    /// Deletes the upload `id` of `user` that no message shows.
    pub async fn delete(&self, id: &str, user: &str) -> Result<(), MediaError> {
        let media = self.for_member(id, user).await?;
        if media.uploader != user || media.referenced_by.is_some() {
            return Err(MediaError::NotDeletable);
        }
        self.forget(&media).await
    }

    /// Removes the bytes, thumbnails included, then the record.
    async fn forget(&self, media: &Media) -> Result<(), MediaError> {
        self.inner.blobs.delete(&media.id).await?;
        for size in THUMBNAIL_SIZES {
            for kind in ["image/jpeg", "image/png"] {
                self.inner.blobs.delete(&thumbnail_key(&media.id, size, kind)).await?;
            }
        }
        self.inner.store.delete_media(&media.id).await?;
        Ok(())
    }

    /// Deletes, every `media.sweep_interval` until `stopped`, the uploads nothing shows any
    /// more: unused past `media.unused_ttl`, of deleted rooms, or whose message history no
    /// longer keeps.
    pub async fn sweep_until(self, holder: String, stopped: impl Future<Output = ()>) {
        tokio::pin!(stopped);
        let interval = Duration::from_secs(self.inner.config.sweep_interval);
        let mut every = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = every.tick() => {}
            }
            // several processes on one store: one sweeps, for two rounds at a time
            let until = now_millis() + 2 * i64::try_from(interval.as_millis()).unwrap_or(i64::MAX / 4);
            match self.inner.store.hold_lease("media-sweep", &holder, until).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    warn!(error = %e, "the upload sweep could not take its lease; trying again next round");
                    continue;
                }
            }
            if let Err(e) = self.sweep().await {
                warn!(error = %e, "sweeping uploads failed; trying again next round");
            }
        }
    }

    /// One sweep; returns how many uploads went.
    pub async fn sweep(&self) -> Result<usize, MediaError> {
        let now = now_millis();
        let unused_before = now - i64::try_from(self.inner.config.unused_ttl.saturating_mul(1000)).unwrap_or(i64::MAX);
        let due = self.inner.store.sweepable_media(unused_before, now - REFERENCE_GRACE_MS, SWEEP_BATCH).await?;
        for media in &due {
            self.forget(media).await?;
        }
        if !due.is_empty() {
            info!(count = due.len(), "uploads swept");
        }
        Ok(due.len())
    }
}

fn thumbnail_key(id: &str, size: u32, kind: &str) -> String {
    let extension = if kind == "image/png" { "png" } else { "jpg" };
    format!("{id}.thumb{size}.{extension}")
}

async fn collect(mut stream: BlobStream) -> Result<Bytes, MediaError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(Bytes::from(bytes))
}

/// Writes `body` to `path` as it arrives, refusing it once past `max` bytes or `allowance`;
/// returns its first bytes (for sniffing), its digest and its size.
async fn spool<S, E>(mut body: S, path: &Path, max: u64, allowance: u64) -> Result<(Vec<u8>, String, u64), MediaError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut file = tokio::fs::File::create(path).await?;
    let (mut head, mut hash, mut size) = (Vec::new(), Sha256::new(), 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| MediaError::Body(e.to_string()))?;
        size += chunk.len() as u64;
        if size > max {
            return Err(MediaError::TooLarge(max));
        }
        if size > allowance {
            return Err(MediaError::OverQuota(allowance));
        }
        if head.len() < kinds::SNIFF_BYTES {
            head.extend_from_slice(&chunk[..chunk.len().min(kinds::SNIFF_BYTES - head.len())]);
        }
        hash.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok((head, hex(&hash.finalize()), size))
}
