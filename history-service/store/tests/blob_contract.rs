//! One contract, every blob store: files under a directory, GridFS on the MongoDB-wire test
//! server, and S3 on a local S3-compatible server (moto).

use futures_util::StreamExt;
use roost_store::{BlobStream, Blobs, FsBlobs, GridFsBlobs, S3Blobs, S3Config};
use std::path::{Path, PathBuf};

// shared with the store contract and the system tests, which use all of it
#[allow(dead_code)]
#[path = "../../../tests/support/mongo.rs"]
mod mongo;
#[path = "../../../tests/support/s3.rs"]
mod s3_server;

/// A blob store and what keeps it alive (a directory, a server).
struct Backend {
    blobs: Box<dyn Blobs>,
    _keep: Box<dyn Send>,
    spool: tempfile::TempDir,
}

async fn fs() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = FsBlobs::open(dir.path().join("blobs")).expect("open");
    // spooled files must be on the blob directory's file system
    let spool = tempfile::tempdir_in(dir.path()).expect("spool dir");
    Some(Backend { blobs: Box::new(blobs), _keep: Box::new(dir), spool })
}

async fn gridfs() -> Option<Backend> {
    let server = mongo::MongoServer::start("the blob contract").await?;
    let blobs = GridFsBlobs::connect(&server.uri()).await.expect("connect");
    Some(Backend { blobs: Box::new(blobs), _keep: Box::new(server), spool: tempfile::tempdir().unwrap() })
}

async fn s3() -> Option<Backend> {
    let server = s3_server::S3Server::start("the blob contract").await?;
    let config = S3Config {
        bucket: s3_server::BUCKET.into(),
        endpoint: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
    };
    let blobs = S3Blobs::new(&config).expect("configure");
    Some(Backend { blobs: Box::new(blobs), _keep: Box::new(server), spool: tempfile::tempdir().unwrap() })
}

fn spooled(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("spool");
    path
}

async fn read(stream: Option<BlobStream>) -> Vec<u8> {
    let mut stream = stream.expect("the blob is there");
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.expect("a chunk"));
    }
    bytes
}

/// Bytes that differ at every offset, spanning several GridFS chunks (255 KiB) and more than one
/// S3 part buffer would hold at once in a small store.
fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|n| (n as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0]).collect()
}

async fn keeps_reads_ranges_and_forgets(backend: Backend) {
    let (blobs, spool) = (&backend.blobs, backend.spool.path());
    let bytes = sample(700_000);
    let file = spooled(spool, "a.part", &bytes);
    blobs.put_file("k1", &file).await.expect("put");
    assert!(!file.exists(), "the spooled file is taken");
    assert!(read(blobs.get("k1", None).await.unwrap()).await == bytes, "whole, byte for byte");
    for range in [0..1, 1000..2000, 261_000..262_000, 699_990..700_000, 5..700_000] {
        let part = read(blobs.get("k1", Some(range.clone())).await.unwrap()).await;
        assert!(part == bytes[range.start as usize..range.end as usize], "{range:?}");
    }
    assert!(blobs.get("nothing", None).await.unwrap().is_none());

    // a key written again (a thumbnail made twice) holds the last bytes
    blobs.put_file("k2", &spooled(spool, "b.part", b"first")).await.unwrap();
    blobs.put_file("k2", &spooled(spool, "c.part", b"second")).await.unwrap();
    assert_eq!(read(blobs.get("k2", None).await.unwrap()).await, b"second");

    blobs.delete("k1").await.unwrap();
    assert!(blobs.get("k1", None).await.unwrap().is_none());
    blobs.delete("k1").await.expect("deleting what is gone is fine");
    assert_eq!(read(blobs.get("k2", None).await.unwrap()).await, b"second", "others stay");
}

macro_rules! contract {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test]
            async fn keeps_reads_ranges_and_forgets() {
                if let Some(backend) = super::$backend().await {
                    super::keeps_reads_ranges_and_forgets(backend).await;
                }
            }
        }
    };
}

contract!(fs);
contract!(gridfs);
contract!(s3);
