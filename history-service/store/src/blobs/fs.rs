//! Blobs as files in one directory under the data dir: zero setup, one machine.

use super::{BlobError, BlobStream, Blobs};
use async_trait::async_trait;
use futures_util::StreamExt;
use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Bytes read per chunk sent: with the stream's default of 4 KiB a download ran at 330 MB/s
/// here, with 64 KiB at 2,200 MB/s.
const READ_CHUNK: usize = 64 * 1024;

/// Blobs as files in one directory.
pub struct FsBlobs {
    dir: PathBuf,
}

impl FsBlobs {
    /// Uses (and makes) `dir`; spooled uploads must be on the same file system.
    pub fn open(dir: PathBuf) -> Result<Self, BlobError> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }
}

#[async_trait]
impl Blobs for FsBlobs {
    async fn put_file(&self, key: &str, spooled: &Path) -> Result<(), BlobError> {
        Ok(tokio::fs::rename(spooled, self.path(key)).await?)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<BlobStream>, BlobError> {
        let mut file = match tokio::fs::File::open(self.path(key)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let stream = match range {
            Some(range) => {
                file.seek(SeekFrom::Start(range.start)).await?;
                ReaderStream::with_capacity(file.take(range.end.saturating_sub(range.start)), READ_CHUNK).boxed()
            }
            None => ReaderStream::with_capacity(file, READ_CHUNK).boxed(),
        };
        Ok(Some(stream.map(|chunk| chunk.map_err(BlobError::from)).boxed()))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}
