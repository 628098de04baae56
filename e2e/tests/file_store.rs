//! The file store against both backends: one round trip (a streamed
//! multi-part put of a file over 8 MiB, get, delete, not found) on a local
//! directory and on a real S3 server (moto, see `e2e::s3`), and the
//! startup check refusing an S3 store it cannot use, with the reason.

use std::time::{Duration, Instant};

use bytes::Bytes;
use controller::files::{FileError, FileSettings, FileStore, S3Settings};
use e2e::s3::{AccessKey, MotoServer};
use futures_util::TryStreamExt;

fn s3_settings(moto: &MotoServer, bucket: &str, key: &AccessKey) -> S3Settings {
    s3_settings_for(&moto.endpoint, bucket, key)
}

fn s3_settings_for(endpoint: &str, bucket: &str, key: &AccessKey) -> S3Settings {
    S3Settings {
        endpoint: Some(endpoint.to_string()),
        bucket: bucket.into(),
        region: "us-east-1".into(),
        prefix: String::new(),
        access_key_id: key.id.clone(),
        secret_access_key: key.secret.clone(),
        allow_http: true,
    }
}

/// What moto accepts before `require_auth`.
fn any_key() -> AccessKey {
    AccessKey {
        id: "AKIAE2ETEST".into(),
        secret: "e2e-secret".into(),
    }
}

async fn read_all(store: &FileStore, key: &str) -> (u64, Vec<u8>) {
    let (size, stream) = store.get(key).await.expect("get");
    let chunks: Vec<Bytes> = stream.try_collect().await.expect("read stream");
    (size, chunks.concat())
}

/// The round trip every backend must pass.
async fn round_trip(store: &FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    // Over one 8 MiB part: at least two parts, the last one short.
    let data: Vec<u8> = (0..9_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let t = Instant::now();
    assert_eq!(
        store.put_file("runs/7/artifact.zip", &src).await.unwrap(),
        data.len() as u64
    );
    eprintln!("{store:?}: put {} bytes in {:?}", data.len(), t.elapsed());
    let (size, got) = read_all(store, "runs/7/artifact.zip").await;
    assert_eq!(size, data.len() as u64);
    assert!(got == data, "contents differ");

    store
        .put_bytes(
            "recordings/1/a.cast",
            Bytes::from_static(b"{\"version\": 2}\n"),
        )
        .await
        .unwrap();
    assert_eq!(
        read_all(store, "recordings/1/a.cast").await,
        (15, b"{\"version\": 2}\n".to_vec())
    );

    assert!(matches!(
        store.get("runs/7/nope.zip").await,
        Err(FileError::NotFound(k)) if k == "runs/7/nope.zip"
    ));
    store.delete("runs/7/artifact.zip").await.unwrap();
    // Deleting what is gone is fine (a retried cleanup).
    store.delete("runs/7/artifact.zip").await.unwrap();
    assert!(matches!(
        store.get("runs/7/artifact.zip").await,
        Err(FileError::NotFound(_))
    ));
    store.delete("recordings/1/a.cast").await.unwrap();
}

#[tokio::test]
async fn local_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(&FileSettings::default(), &dir.path().join("files"))
        .await
        .expect("local store");
    round_trip(&store).await;
    // The startup probe left nothing behind.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn s3_round_trip() {
    let moto = MotoServer::start();
    eprintln!("moto answered after {:?}", moto.started_in);
    moto.create_bucket("files");
    let mut settings = s3_settings(&moto, "files", &any_key());
    let t = Instant::now();
    let store = FileStore::open(
        &FileSettings::S3(settings.clone()),
        std::path::Path::new("/nonexistent"),
    )
    .await
    .expect("S3 store");
    eprintln!("startup check took {:?}", t.elapsed());
    round_trip(&store).await;

    // With a prefix, keys land under it.
    settings.prefix = "ctl-1/files".into();
    let store = FileStore::open(
        &FileSettings::S3(settings),
        std::path::Path::new("/nonexistent"),
    )
    .await
    .expect("S3 store with prefix");
    store
        .put_bytes("a/b.txt", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert!(moto.object_exists("files", "ctl-1/files/a/b.txt"));
    assert!(!moto.object_exists("files", "a/b.txt"));
    assert_eq!(read_all(&store, "a/b.txt").await.1, b"x");
}

/// The startup check's verdict on `settings`, as `Controller::start`
/// reports it.
async fn refusal(settings: S3Settings) -> String {
    let t = Instant::now();
    let r = FileStore::open(
        &FileSettings::S3(settings),
        std::path::Path::new("/nonexistent"),
    )
    .await;
    let e = match r {
        Ok(s) => panic!("{s:?} accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}: {e}",
        t.elapsed()
    );
    eprintln!("refused in {:?}: {e}", t.elapsed());
    e
}

#[tokio::test]
async fn s3_startup_check_names_what_is_wrong() {
    let moto = MotoServer::start();
    moto.create_bucket("present");
    let key = moto.create_user("myplatform");
    let reader = moto.create_user_allowed("reader", &["s3:GetObject", "s3:ListBucket"]);
    moto.require_auth();
    let endpoint = moto.endpoint.clone();
    let good = s3_settings(&moto, "present", &key);
    FileStore::open(
        &FileSettings::S3(good.clone()),
        std::path::Path::new("/nonexistent"),
    )
    .await
    .expect("the right key works once moto checks signatures");

    let wrong_secret = S3Settings {
        secret_access_key: format!("{}x", key.secret),
        ..good.clone()
    };
    let e = refusal(wrong_secret.clone()).await;
    assert_eq!(
        e,
        format!(
            "S3 bucket \"present\" at {endpoint}: the secret key is wrong \
             (files.secret_access_key): the server refused the request signature"
        )
    );
    assert!(!e.contains(&key.secret));

    let unknown_key = S3Settings {
        access_key_id: "AKIANOBODYKNOWS00000".into(),
        ..good.clone()
    };
    assert_eq!(
        refusal(unknown_key).await,
        format!(
            "S3 bucket \"present\" at {endpoint}: the server does not know the access key \
             (files.access_key_id)"
        )
    );

    let read_only = S3Settings {
        access_key_id: reader.id.clone(),
        secret_access_key: reader.secret.clone(),
        ..good.clone()
    };
    assert_eq!(
        refusal(read_only).await,
        format!(
            "S3 bucket \"present\" at {endpoint}: access denied: the key may not write and \
             delete objects in this bucket"
        )
    );

    let missing = S3Settings {
        bucket: "absent".into(),
        ..good.clone()
    };
    assert_eq!(
        refusal(missing).await,
        format!(
            "S3 bucket \"absent\" at {endpoint}: the bucket does not exist (create it, or fix \
             files.bucket)"
        )
    );

    // Nothing listens there.
    let down = S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{}", e2e::free_port())),
        ..good.clone()
    };
    let e = refusal(down.clone()).await;
    assert!(
        e.starts_with(&format!(
            "S3 bucket \"present\" at {}: cannot connect to the endpoint (",
            down.endpoint.as_deref().unwrap()
        )),
        "{e}"
    );

    // The controller refuses to start, saying why; the secret comes from
    // the environment as an operator would give it.
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "data_dir = {:?}\n[web]\nlisten = \"127.0.0.1:0\"\n[gateway]\nlisten = \"127.0.0.1:0\"\n\
         [files]\nbackend = \"s3\"\nendpoint = {endpoint:?}\nallow_http = true\n\
         bucket = \"present\"\naccess_key_id = {:?}\n",
        dir.path().display(),
        key.id
    );
    let env = |secret: &str| {
        vec![(
            "MYPLATFORM_FILES__SECRET_ACCESS_KEY".to_string(),
            secret.to_string(),
        )]
    };
    let settings = controller::config::Settings::from_parts(
        &toml,
        "test.toml",
        &env(&wrong_secret.secret_access_key),
    )
    .expect("settings");
    let e = match controller::Controller::start(&settings).await {
        Ok(_) => panic!("started with a wrong secret key"),
        Err(e) => format!("{e:#}"),
    };
    assert_eq!(
        e,
        format!(
            "opening the file store: S3 bucket \"present\" at {endpoint}: the secret key is \
             wrong (files.secret_access_key): the server refused the request signature"
        )
    );
    let settings = controller::config::Settings::from_parts(&toml, "test.toml", &env(&key.secret))
        .expect("settings");
    let ctl = controller::Controller::start(&settings)
        .await
        .expect("starts with the right key");
    ctl.stop().await;
}

/// An endpoint that accepts connections and never answers (a hung proxy):
/// the check gives up on its own deadline instead of the store's retries.
#[tokio::test]
async fn s3_startup_check_gives_up_on_a_silent_endpoint() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let settings = S3Settings {
        endpoint: Some(endpoint.clone()),
        ..s3_settings_for(&endpoint, "b", &any_key())
    };
    let e = refusal(settings).await;
    assert_eq!(
        e,
        format!("S3 bucket \"b\" at {endpoint}: no answer within 10s")
    );
    drop(listener);
}
