//! The one harness for tests that start real processes: the controller and
//! agent binaries now, and later sshd, JMeter, InfluxDB, an S3 server, an
//! SMTP server and Chromium. Tests live in `e2e/tests/`.
//! `synthetic` is a monitored host speaking the real agent protocol with
//! samples a test chooses (dashboards checked against known numbers).
//!
//! A service a test needs and cannot start is a test failure with the
//! reason, never a silent pass.

pub mod browser;
pub mod influx;
pub mod inproc;
pub mod jmeter;
pub mod loadlab;
pub mod s3;
pub mod smtp;
pub mod sshd;
pub mod synthetic;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Directory of the workspace's binaries, built once per test run so a
/// `cargo test -p e2e` never runs stale agents.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable in target/<profile>/deps")
            .to_path_buf();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "controller",
            "-p",
            "agent-monitor",
            "-p",
            "agent-jmeter",
        ]);
        if release {
            cmd.arg("--release");
        }
        // `cargo test` runs this process with the test crate's own
        // variables (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...). Build scripts
        // that watch them (ring's does) would see a change and rebuild
        // everything above them here, then again in the next outer build.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_EXE_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&key.as_ref())
            {
                cmd.env_remove(key.as_ref());
            }
        }
        let status = cmd
            .status()
            .expect("running cargo build for the e2e binaries");
        assert!(status.success(), "cargo build of the binaries failed");
        dir
    })
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// A free loopback port (TCP and UDP both free at the time of asking).
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The `controller` binary configured through the environment the way an
/// operator would: data directory and loopback ports. `cmd(args)` builds
/// one invocation (`serve`, `token create ...`, `agent revoke ...`).
pub struct ControllerCli {
    pub data_dir: PathBuf,
    pub http: u16,
    pub quic: u16,
    pub heartbeat_secs: Option<u32>,
    api_token: OnceLock<String>,
}

impl ControllerCli {
    pub fn new(data_dir: PathBuf) -> ControllerCli {
        ControllerCli {
            data_dir,
            http: free_port(),
            quic: free_port(),
            heartbeat_secs: None,
            api_token: OnceLock::new(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("controller"));
        c.env_remove("MYPLATFORM_CONFIG")
            .env("MYPLATFORM_DATA_DIR", &self.data_dir)
            .env(
                "MYPLATFORM_GATEWAY__LISTEN",
                format!("127.0.0.1:{}", self.quic),
            )
            .env("MYPLATFORM_WEB__LISTEN", format!("127.0.0.1:{}", self.http))
            .args(args);
        if let Some(h) = self.heartbeat_secs {
            c.env("MYPLATFORM_GATEWAY__HEARTBEAT_SECS", h.to_string());
        }
        c
    }

    /// An admin's API token, made once through the CLI the way an operator
    /// would (`user add`, `user token`); works before or while serving.
    pub fn api_token(&self) -> String {
        self.api_token
            .get_or_init(|| {
                let mut add = self.cmd(&["user", "add", "e2e-admin", "--admin"]);
                let out = add.output().expect("running controller user add");
                assert!(
                    out.status.success(),
                    "controller user add failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let out = self
                    .cmd(&["user", "token", "e2e-admin"])
                    .output()
                    .expect("running controller user token");
                assert!(
                    out.status.success(),
                    "controller user token failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8(out.stdout)
                    .expect("token is text")
                    .trim()
                    .to_string()
            })
            .clone()
    }

    /// Adds a web UI user through the CLI (`user add --password-stdin`).
    pub fn add_user(&self, name: &str, password: &str, admin: bool) {
        use std::io::Write;
        let mut args = vec!["user", "add", name, "--password-stdin"];
        if admin {
            args.push("--admin");
        }
        let mut child = self
            .cmd(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running controller user add");
        writeln!(child.stdin.take().expect("stdin"), "{password}").expect("writing the password");
        let out = child.wait_with_output().expect("controller user add");
        assert!(
            out.status.success(),
            "controller user add {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `http://127.0.0.1:<http>` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }
}

/// A child process whose output goes to a log file, killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns the status and whether
    /// it stopped within the grace period.
    pub fn terminate(&mut self, grace: Duration) -> (ExitStatus, bool) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        match self.wait_timeout(grace) {
            Some(s) => (s, true),
            None => {
                let _ = self.child.kill();
                (self.child.wait().expect("wait after kill"), false)
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("----- {} log -----\n{}", self.name, self.log());
        }
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTP client for tests. reqwest has rustls without a bundled crypto
/// provider (the workspace's is ring): building a client in a process that
/// has not installed one panics, so this installs it first.
pub fn http() -> reqwest::Client {
    certs::tls::install_default_provider();
    #[allow(clippy::disallowed_methods)] // the provider is installed just above
    reqwest::Client::new()
}

/// GET a JSON document as the holder of API token `token`; `None` while
/// the server is not answering (or answers an error).
pub async fn get_json(url: &str, token: &str) -> Option<serde_json::Value> {
    let resp = http().get(url).bearer_auth(token).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// A JSON API call as the holder of `token`: the status and the body
/// (`Null` when it is not JSON).
pub async fn api(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut rb = http()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.expect("the controller answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// `curl` with the API token (multipart uploads, which reqwest is built
/// without here); returns (HTTP status, body).
pub fn curl(token: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .args(args)
        .output()
        .expect("curl (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Processes whose command line mentions `needle` (to prove none is left).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let me = std::process::id();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if pid == me {
                continue;
            }
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains(needle) {
                    found.push(pid);
                }
            }
        }
    }
    found
}

/// A loopback UDP relay between one client and a server, which a test can
/// cut (drop every datagram both ways) and restore: a network outage
/// without touching the machine's network.
pub struct UdpProxy {
    pub addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpProxy {
    pub async fn start(server: std::net::SocketAddr) -> UdpProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::net::UdpSocket;
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("proxy bind"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("proxy bind"));
        back.connect(server).await.expect("proxy connect");
        let addr = front.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let client = Arc::new(std::sync::Mutex::new(None));
        let (f, b, c, cl) = (front.clone(), back.clone(), cut.clone(), client.clone());
        let up = async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = f.recv_from(&mut buf).await {
                *cl.lock().expect("client lock") = Some(from);
                if !c.load(Ordering::Relaxed) {
                    let _ = b.send(&buf[..n]).await;
                }
            }
        };
        let (f, b, c) = (front, back, cut.clone());
        let down = async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = b.recv(&mut buf).await {
                let to = *client.lock().expect("client lock");
                if let Some(to) = to
                    && !c.load(Ordering::Relaxed)
                {
                    let _ = f.send_to(&buf[..n], to).await;
                }
            }
        };
        let task = tokio::spawn(async move {
            tokio::join!(up, down);
        });
        UdpProxy { addr, cut, task }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
