//! The file store: where the controller keeps files it must hand back later
//! (shell session recordings now; uploaded JMeter packages and task
//! artifacts next). Built on `object_store` so the same code writes to a
//! local directory (the default, `data_dir/files`) or an S3 bucket (AWS,
//! MinIO, Ceph: path-style requests), chosen by `[files]` in the
//! configuration ([`FileSettings`]).
//!
//! Keys are `/`-separated and made by the controller, never taken from a
//! request. Knows nothing of HTTP; callers stream what they read. Never
//! prints a secret: the settings' `Debug` redacts them and errors name the
//! bucket and endpoint only.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

/// `[files]`: which backend holds the files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum FileSettings {
    /// `data_dir/files`. (A struct variant: a unit one would accept and
    /// ignore S3 keys given with `backend = "local"`.)
    Local {},
    /// A bucket of an S3-compatible service.
    S3(S3Settings),
}

/// `[files]` with `backend = "s3"`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Base URL of the service (`https://minio.example.com:9000`); none:
    /// AWS S3 in `region`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Must exist; the controller does not create it.
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Keys start with `prefix/` (e.g. one bucket, several controllers).
    #[serde(default)]
    pub prefix: String,
    pub access_key_id: String,
    /// Best given as `MYPLATFORM_FILES__SECRET_ACCESS_KEY`, not in the file.
    pub secret_access_key: String,
    /// Allow an `http://` endpoint (a MinIO on the same host or network).
    #[serde(default)]
    pub allow_http: bool,
}

impl Default for FileSettings {
    fn default() -> Self {
        FileSettings::Local {}
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Settings {
    /// What is wrong with these settings, for the configuration loader.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(e) = &self.endpoint {
            if e.starts_with("http://") {
                if !self.allow_http {
                    return Err(format!(
                        "files.endpoint {e} is plain http: set files.allow_http = true to \
                         allow it (a trusted local network only)"
                    ));
                }
            } else if !e.starts_with("https://") {
                return Err(format!(
                    "files.endpoint {e:?} must start with https:// (or http://)"
                ));
            }
        }
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return Err("files.bucket must name a bucket (no slashes)".into());
        }
        if self.region.is_empty() {
            return Err("files.region must not be empty".into());
        }
        let p = &self.prefix;
        if !p.is_empty()
            && (p.starts_with('/')
                || p.ends_with('/')
                || p.split('/').any(|c| c.is_empty() || c == "." || c == ".."))
        {
            return Err(format!(
                "files.prefix {p:?} must look like name or a/b (no leading or trailing slash, no . or ..)"
            ));
        }
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return Err(
                "files.access_key_id and files.secret_access_key are required for S3".into(),
            );
        }
        Ok(())
    }

    /// `S3 bucket "b" at http://host:9000 (prefix "p")`, for messages.
    fn describe(&self) -> String {
        let at = self
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS {}", self.region));
        let mut s = format!("S3 bucket {:?} at {at}", self.bucket);
        if !self.prefix.is_empty() {
            s.push_str(&format!(" (prefix {:?})", self.prefix));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no such file in the store: {0}")]
    NotFound(String),
    /// The store cannot be used (the startup check failed).
    #[error("{store}: {reason}")]
    Unusable { store: String, reason: String },
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
    /// Where, for messages (`local directory /x`, `S3 bucket "b" at ...`).
    describe: Arc<str>,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileStore({})", self.describe)
    }
}

/// Chunk size of streamed writes: big enough for S3's 5 MiB minimum part.
const PART: usize = 8 * 1024 * 1024;
/// The startup check gives up this soon on an endpoint that does not
/// answer (the store's own retries would wait minutes).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the startup check writes (and deletes) its object.
const PROBE_DIR: &str = ".myplatform-probe";

impl FileStore {
    /// The store `settings` name (`local_dir` for the local backend),
    /// checked: a probe object is written and deleted, so a store that is
    /// unreachable, refuses the credentials, lacks the bucket or may not
    /// be written fails here with the reason, not at the first upload.
    pub async fn open(settings: &FileSettings, local_dir: &Path) -> Result<FileStore, FileError> {
        match settings {
            FileSettings::Local {} => {
                let store = FileStore::local(local_dir)?;
                store.probe(&store).await?;
                Ok(store)
            }
            FileSettings::S3(s3) => {
                // Few retries for the check: a wrong endpoint should fail
                // in seconds.
                let quick = FileStore::s3(
                    s3,
                    RetryConfig {
                        backoff: BackoffConfig::default(),
                        max_retries: 2,
                        retry_timeout: PROBE_TIMEOUT,
                    },
                )?;
                let store = FileStore::s3(s3, RetryConfig::default())?;
                store.probe(&quick).await?;
                Ok(store)
            }
        }
    }

    /// A store in a local directory (created if missing), unchecked.
    pub fn local(dir: &Path) -> Result<FileStore, FileError> {
        std::fs::create_dir_all(dir).map_err(|source| FileError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(FileStore {
            store: Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true)),
            describe: format!("local directory {}", dir.display()).into(),
        })
    }

    /// A store in an S3 bucket, unchecked (no request is made).
    pub fn s3(settings: &S3Settings, retry: RetryConfig) -> Result<FileStore, FileError> {
        let describe = settings.describe();
        // object_store's HTTP client is reqwest with rustls and no
        // bundled provider: it takes the process default, ring.
        certs::tls::install_default_provider();
        // `new()`, not `from_env()`: the configuration is the one source,
        // AWS_* variables of the environment do not leak in.
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_allow_http(settings.allow_http)
            .with_virtual_hosted_style_request(false)
            .with_retry(retry)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_allow_http(settings.allow_http),
            );
        if let Some(endpoint) = &settings.endpoint {
            b = b.with_endpoint(endpoint);
        }
        let s3 = b.build().map_err(|e| FileError::Unusable {
            store: describe.clone(),
            reason: e.to_string(),
        })?;
        let store: Arc<dyn ObjectStore> = if settings.prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(PrefixStore::new(s3, settings.prefix.as_str()))
        };
        Ok(FileStore {
            store,
            describe: describe.into(),
        })
    }

    /// Writes and deletes a small object through `via` (this store, or
    /// the same one with fewer retries), explaining a failure.
    async fn probe(&self, via: &FileStore) -> Result<(), FileError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let key = Key::from(format!("{PROBE_DIR}/{}-{nanos}", std::process::id()));
        let unusable = |e: object_store::Error| FileError::Unusable {
            store: self.describe.to_string(),
            reason: explain(&e),
        };
        let check = async {
            via.store
                .put(&key, Bytes::from_static(b"probe").into())
                .await
                .map_err(unusable)?;
            via.store.delete(&key).await.map_err(unusable)
        };
        match tokio::time::timeout(PROBE_TIMEOUT, check).await {
            Ok(r) => r,
            Err(_) => Err(FileError::Unusable {
                store: self.describe.to_string(),
                reason: format!("no answer within {PROBE_TIMEOUT:?}"),
            }),
        }
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
        let copied: Result<(), FileError> = async {
            loop {
                let n = file.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    return Ok(());
                }
                w.wait_for_capacity(2).await?;
                w.write(&buf[..n]);
                total += n as u64;
            }
        }
        .await;
        if let Err(e) = copied {
            // An S3 upload left open keeps its parts (and their cost)
            // until a lifecycle rule removes them.
            let _ = w.abort().await;
            return Err(e);
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

    /// Writes the contents of `key` to the local file `path` (created or
    /// truncated), streamed; returns its size.
    pub async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64, FileError> {
        use futures_util::TryStreamExt;
        use tokio::io::AsyncWriteExt;
        let io = |source| FileError::Io {
            path: path.display().to_string(),
            source,
        };
        let (_, mut stream) = self.get(key).await?;
        let mut f = tokio::fs::File::create(path).await.map_err(io)?;
        let mut n = 0u64;
        while let Some(chunk) = stream.try_next().await? {
            n += chunk.len() as u64;
            f.write_all(&chunk).await.map_err(io)?;
        }
        f.flush().await.map_err(io)?;
        Ok(n)
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

/// What a failed probe means for the operator. S3 error codes come in the
/// response body, which object_store puts in the error's text.
fn explain(e: &object_store::Error) -> String {
    let text = e.to_string();
    let code = |c: &str| text.contains(c);
    if code("NoSuchBucket") {
        return "the bucket does not exist (create it, or fix files.bucket)".into();
    }
    if code("InvalidAccessKeyId") {
        return "the server does not know the access key (files.access_key_id)".into();
    }
    if code("SignatureDoesNotMatch") {
        return "the secret key is wrong (files.secret_access_key): the server refused the \
                request signature"
            .into();
    }
    if code("AccessDenied") || matches!(e, object_store::Error::PermissionDenied { .. }) {
        return "access denied: the key may not write and delete objects in this bucket".into();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<HttpError>()
            && matches!(h.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout)
        {
            // The innermost cause says it best ("Connection refused").
            let mut root: &dyn std::error::Error = h;
            while let Some(next) = root.source() {
                root = next;
            }
            return format!("cannot connect to the endpoint ({root})");
        }
        source = err.source();
    }
    text
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
