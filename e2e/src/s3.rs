//! A real S3-compatible server for tests: moto (`moto[server]` from PyPI)
//! from the virtualenv scripts/test keeps at `$HOME/.cache/myplatform/moto`
//! (or the `moto_server` named by `E2E_MOTO_SERVER`), on a free loopback
//! port.
//!
//! Moto accepts any credentials until told otherwise: a test creates its
//! buckets and an IAM user ([`MotoServer::create_user`]) first, then
//! [`MotoServer::require_auth`] makes it check signatures, so wrong keys
//! fail as they would on S3 or MinIO.
//!
//! It cannot start -> panic with the reason and its log, never a silent
//! skip. Killed on drop, and by a watchdog `sh` when the test process dies
//! without dropping it. Requests here are plain blocking HTTP/1.0 over
//! loopback (no client library, no TLS).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Moto answers in ~1 s here; a cold start after installation is slower.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct MotoServer {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub port: u16,
    /// How long it took to answer.
    pub started_in: Duration,
    dir: tempfile::TempDir,
    child: Option<Child>,
    watchdog: Option<Child>,
}

/// An access key of an IAM user allowed everything on S3.
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl MotoServer {
    /// Starts moto on a free loopback port with no buckets. Panics with the
    /// reason if it is not installed or does not answer in time.
    pub fn start() -> MotoServer {
        let exe = find_moto_server();
        let dir = tempfile::Builder::new()
            .prefix("e2e-moto-")
            .tempdir()
            .expect("temporary directory for moto");
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log file");
        let err = log.try_clone().expect("moto log file");
        let started = Instant::now();
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        // Kills moto if this process dies without dropping us: `read`
        // returns when the pipe's write end (ours) closes.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#"read -r _; kill -KILL "$1" 2>/dev/null"#)
            .arg("moto-watchdog")
            .arg(child.id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let mut server = MotoServer {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            started_in: Duration::ZERO,
            dir,
            child: Some(child),
            watchdog,
        };
        loop {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                server.child = None;
                panic!(
                    "moto_server exited during start ({status}); its log:\n{}",
                    server.log()
                );
            }
            if matches!(server.request("GET", "/moto-api/", &[], b""), Ok((200, _))) {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "moto_server did not answer on port {port} within {START_TIMEOUT:?}; its log:\n{}",
                    server.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        server.started_in = started.elapsed();
        server
    }

    /// Creates a bucket (before [`MotoServer::require_auth`]).
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = self
            .request("PUT", &format!("/{name}"), &[], b"")
            .unwrap_or_else(|e| panic!("creating bucket {name}: {e}"));
        assert_eq!(status, 200, "creating bucket {name}: {body}");
    }

    /// Whether `bucket/key` exists (asked before
    /// [`MotoServer::require_auth`]).
    pub fn object_exists(&self, bucket: &str, key: &str) -> bool {
        // Anonymous requests meet the bucket's (private) ACL; any
        // credentials pass while signatures are not checked.
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAE2ESETUP/20240101/us-east-1/s3/aws4_request, \
                    SignedHeaders=host, Signature=0";
        match self.request(
            "HEAD",
            &format!("/{bucket}/{key}"),
            &[("Authorization", auth)],
            b"",
        ) {
            Ok((200, _)) => true,
            Ok((404, _)) => false,
            other => panic!("HEAD {bucket}/{key}: {other:?}"),
        }
    }

    /// Creates an IAM user with an access key and a policy allowing `s3:*`
    /// (before [`MotoServer::require_auth`]).
    pub fn create_user(&self, name: &str) -> AccessKey {
        self.create_user_allowed(name, &["s3:*"])
    }

    /// Creates an IAM user with an access key allowed only `actions`
    /// (e.g. `s3:GetObject`; none: everything is denied).
    pub fn create_user_allowed(&self, name: &str, actions: &[&str]) -> AccessKey {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)]);
        let created = self.iam(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        if !actions.is_empty() {
            let actions: Vec<String> = actions.iter().map(|a| format!("{a:?}")).collect();
            let policy = format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{}],"Resource":"*"}}]}}"#,
                actions.join(",")
            );
            self.iam(&[
                ("Action", "PutUserPolicy"),
                ("UserName", name),
                ("PolicyName", "s3"),
                ("PolicyDocument", &policy),
            ]);
        }
        AccessKey {
            id: xml_text(&created, "AccessKeyId"),
            secret: xml_text(&created, "SecretAccessKey"),
        }
    }

    /// From now on requests must be signed with a known access key.
    pub fn require_auth(&self) {
        let (status, body) = self
            .request(
                "POST",
                "/moto-api/reset-auth",
                &[("Content-Type", "text/plain")],
                b"0",
            )
            .expect("POST /moto-api/reset-auth");
        assert_eq!(status, 200, "enabling moto auth: {body}");
    }

    /// moto's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// One IAM call; moto routes it by the service named in the
    /// credential scope (the signature is not checked before
    /// [`MotoServer::require_auth`]).
    fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut body = String::from("Version=2010-05-08");
        for (k, v) in params {
            body.push('&');
            body.push_str(k);
            body.push('=');
            body.push_str(&form_encode(v));
        }
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAE2ESETUP/20240101/us-east-1/iam/aws4_request, \
                    SignedHeaders=host, Signature=0";
        let (status, text) = self
            .request(
                "POST",
                "/",
                &[
                    ("Authorization", auth),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                body.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("IAM {params:?}: {e}"));
        assert_eq!(status, 200, "IAM {params:?}: {text}");
        text
    }

    /// A blocking HTTP/1.0 request to moto: (status, body).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // The watchdog first: it must never outlive moto and then signal a
        // reused pid.
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("----- moto log (last {} lines) -----", tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

/// Where scripts/test installs moto.
pub fn moto_venv() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/myplatform/moto")
}

fn find_moto_server() -> PathBuf {
    if let Ok(p) = std::env::var("E2E_MOTO_SERVER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "E2E_MOTO_SERVER={} is not a file (unset it to use the one scripts/test installs)",
            p.display()
        );
        return p;
    }
    let p = moto_venv().join("bin/moto_server");
    assert!(
        p.is_file(),
        "{} not found: scripts/test installs moto there (python3 -m venv {venv} && \
         {venv}/bin/pip install 'moto[server]'), or set E2E_MOTO_SERVER",
        p.display(),
        venv = moto_venv().display()
    );
    p
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn xml_text(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = xml[start..]
        .find(&format!("</{tag}>"))
        .unwrap_or_else(|| panic!("no </{tag}> in {xml}"));
    xml[start..start + end].to_string()
}
