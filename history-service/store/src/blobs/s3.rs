//! Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph, R2...) through `object_store`:
//! shared by every node, sized by the provider.

use super::{BlobError, BlobStream, Blobs};
use async_trait::async_trait;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// The `[media.s3]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Config {
    /// The bucket; it must exist.
    pub bucket: String,
    /// Unset: AWS for `region`; set for any other provider, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Unset: from the environment (`AWS_ACCESS_KEY_ID`...) or the instance's role.
    pub access_key_id: Option<String>,
    #[serde(skip_serializing)]
    pub secret_access_key: Option<String>,
    /// Allows an `http://` endpoint (a local server); never for a real provider.
    pub allow_http: bool,
}

/// Blobs as objects under `media/` in one bucket.
pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
}

fn failed(e: impl std::fmt::Display) -> BlobError {
    BlobError(e.to_string())
}

fn object(key: &str) -> ObjectPath {
    ObjectPath::from(format!("media/{key}"))
}

impl S3Blobs {
    pub fn new(config: &S3Config) -> Result<Self, BlobError> {
        // path-style requests: a local server has no per-bucket host names
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(false);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        }
        Ok(Self { store: Arc::new(builder.build().map_err(failed)?) })
    }
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put_file(&self, key: &str, spooled: &Path) -> Result<(), BlobError> {
        // one PUT for small files, a multipart upload past the buffer: never the whole file held
        let mut writer = BufWriter::new(self.store.clone(), object(key));
        let mut file = tokio::fs::File::open(spooled).await?;
        if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
            let _ = writer.abort().await;
            return Err(e.into());
        }
        writer.shutdown().await?;
        Ok(tokio::fs::remove_file(spooled).await?)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<BlobStream>, BlobError> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        match self.store.get_opts(&object(key), options).await {
            Ok(result) => Ok(Some(result.into_stream().map(|chunk| chunk.map_err(failed)).boxed())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&object(key)).await {
            Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }
}
