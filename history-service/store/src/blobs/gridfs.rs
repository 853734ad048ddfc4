//! Blobs in MongoDB GridFS (bucket `fs`), beside the store's collections: one place to back up,
//! shared by every node.

use super::{BlobError, BlobStream, Blobs};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::io::AsyncWriteExt;
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{ErrorKind, GridFsErrorKind};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::IndexOptions;
use mongodb::{Client, Database, IndexModel};
use std::ops::Range;
use std::path::Path;
use tokio::io::AsyncReadExt;

/// Bytes read from the spooled file per write into the upload stream.
const COPY_CHUNK: usize = 256 * 1024;

/// Blobs in the GridFS bucket `fs` of one database, the file id being the key.
pub struct GridFsBlobs {
    db: Database,
    bucket: GridFsBucket,
}

fn failed(e: impl std::fmt::Display) -> BlobError {
    BlobError(e.to_string())
}

impl GridFsBlobs {
    /// Connects to `uri` (its database, or `roost`) and makes the bucket's indexes.
    pub async fn connect(uri: &str) -> Result<Self, BlobError> {
        let client = Client::with_uri_str(uri).await.map_err(failed)?;
        let db = client.default_database().unwrap_or_else(|| client.database("roost"));
        // the driver would make the chunks index on the first upload, but not unique; made here,
        // a chunk written twice (a retried write) is refused instead of read twice
        let unique = IndexOptions::builder().unique(true).build();
        db.collection::<Document>("fs.chunks")
            .create_index(IndexModel::builder().keys(doc! {"files_id": 1, "n": 1}).options(unique).build())
            .await
            .map_err(failed)?;
        db.collection::<Document>("fs.files")
            .create_index(IndexModel::builder().keys(doc! {"filename": 1, "uploadDate": 1}).build())
            .await
            .map_err(failed)?;
        let bucket = db.gridfs_bucket(None);
        Ok(Self { db, bucket })
    }
}

fn not_found(e: &mongodb::error::Error) -> bool {
    matches!(e.kind.as_ref(), ErrorKind::GridFs(GridFsErrorKind::FileNotFound { .. }))
}

#[async_trait]
impl Blobs for GridFsBlobs {
    async fn put_file(&self, key: &str, spooled: &Path) -> Result<(), BlobError> {
        // a key is written again only for a thumbnail made twice at once: the last one stands
        self.delete(key).await?;
        let mut file = tokio::fs::File::open(spooled).await?;
        let mut upload = self.bucket.open_upload_stream(key).id(Bson::String(key.to_owned())).await.map_err(failed)?;
        let mut buffer = vec![0; COPY_CHUNK];
        loop {
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            if let Err(e) = upload.write_all(&buffer[..read]).await {
                let _ = upload.abort().await;
                return Err(e.into());
            }
        }
        upload.close().await?;
        Ok(tokio::fs::remove_file(spooled).await?)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<BlobStream>, BlobError> {
        let files = self.db.collection::<Document>("fs.files");
        let Some(file) = files.find_one(doc! {"_id": key}).await.map_err(failed)? else { return Ok(None) };
        let length =
            u64::try_from(file.get_i64("length").or_else(|_| file.get_i32("length").map(i64::from)).map_err(failed)?)
                .map_err(failed)?;
        let chunk = u64::try_from(file.get_i32("chunkSize").map_err(failed)?).map_err(failed)?.max(1);
        let Range { start, end } = range.unwrap_or(0..length);
        let end = end.min(length);
        if start >= end {
            return Ok(Some(futures_util::stream::empty().boxed()));
        }
        // GridFS has no ranges of its own: only the chunks holding the range are read
        let (first, last) = (start / chunk, (end - 1) / chunk);
        let chunks = self
            .db
            .collection::<Document>("fs.chunks")
            .find(doc! {"files_id": key, "n": {"$gte": first as i64, "$lte": last as i64}})
            .sort(doc! {"n": 1})
            .await
            .map_err(failed)?;
        let stream = chunks.map_err(failed).and_then(move |chunk_doc| async move {
            let n = u64::try_from(chunk_doc.get_i32("n").map_err(failed)?).map_err(failed)?;
            let data = chunk_doc.get_binary_generic("data").map_err(failed)?;
            let base = n * chunk;
            let from = usize::try_from(start.saturating_sub(base)).map_err(failed)?;
            let to = usize::try_from((end - base).min(data.len() as u64)).map_err(failed)?;
            Ok(Bytes::copy_from_slice(data.get(from..to).ok_or_else(|| failed("a chunk shorter than its file says"))?))
        });
        Ok(Some(stream.boxed()))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.bucket.delete(Bson::String(key.to_owned())).await {
            Err(e) if !not_found(&e) => Err(failed(e)),
            _ => Ok(()),
        }
    }
}
