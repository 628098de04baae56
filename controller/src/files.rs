//! The file store: where the controller keeps files it must hand back later
//! (shell session recordings now; uploaded JMeter packages and task
//! artifacts next). Built on `object_store` so the same code writes to a
//! local directory (the default, `data_dir/files`) or, later, S3/MinIO.
//!
//! Keys are `/`-separated and made by the controller, never taken from a
//! request. Knows nothing of HTTP; callers stream what they read.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncReadExt;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no such file in the store: {0}")]
    NotFound(String),
    #[error("file store: {0}")]
    Store(#[from] object_store::Error),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct FileStore {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileStore({})", self.store)
    }
}

/// Chunk size of streamed writes: big enough for S3's 5 MiB minimum part.
const PART: usize = 8 * 1024 * 1024;

impl FileStore {
    /// A store in a local directory (created if missing).
    pub fn local(dir: &Path) -> Result<FileStore, FileError> {
        std::fs::create_dir_all(dir).map_err(|source| FileError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(FileStore {
            store: Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true)),
        })
    }

    /// Copies a local file into the store under `key`, streamed (constant
    /// memory whatever its size). Returns its size.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<u64, FileError> {
        let io = |source| FileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let upload = self.store.put_multipart(&Key::from(key)).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            w.wait_for_capacity(2).await?;
            w.write(&buf[..n]);
            total += n as u64;
        }
        w.finish().await?;
        Ok(total)
    }

    /// Stores small contents in one piece.
    pub async fn put_bytes(&self, key: &str, data: Bytes) -> Result<(), FileError> {
        self.store.put(&Key::from(key), data.into()).await?;
        Ok(())
    }

    /// Size and a stream of the contents of `key`.
    pub async fn get(
        &self,
        key: &str,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, object_store::Error>>), FileError> {
        match self.store.get(&Key::from(key)).await {
            Ok(r) => Ok((r.meta.size, r.into_stream())),
            Err(object_store::Error::NotFound { .. }) => Err(FileError::NotFound(key.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Copies `from` to `to` inside the store (server-side where the
    /// backend can).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), FileError> {
        match self.store.copy(&Key::from(from), &Key::from(to)).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(FileError::NotFound(from.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), FileError> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    #[tokio::test]
    async fn files_go_in_streamed_and_come_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::local(&dir.path().join("files")).unwrap();
        let src = dir.path().join("src.bin");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        assert_eq!(
            store.put_file("a/b/c.bin", &src).await.unwrap(),
            data.len() as u64
        );
        let (size, stream) = store.get("a/b/c.bin").await.unwrap();
        assert_eq!(size, data.len() as u64);
        let got: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), data);
        assert!(matches!(
            store.get("nope").await,
            Err(FileError::NotFound(_))
        ));
        store.delete("a/b/c.bin").await.unwrap();
        store.delete("a/b/c.bin").await.unwrap();
        assert!(matches!(
            store.get("a/b/c.bin").await,
            Err(FileError::NotFound(_))
        ));
    }
}
