//! A real SMTP server for tests: Python's aiosmtpd (`pip install aiosmtpd`)
//! on 127.0.0.1, run from `smtp_server.py`. It records every message it
//! accepts as one JSON line; [`SmtpServer::messages`] reads them back with
//! subject and body decoded (RFC 2047, quoted-printable, base64, charset)
//! by Python's `email` package, line ends normalised to `\n`.
//!
//! It cannot start -> panic with the reason (never a silent skip). It is
//! killed on drop, and exits by itself when the test process dies (its
//! standard input closes). The waits here block the calling thread: call
//! them after the send they wait for has completed, or from
//! `spawn_blocking`.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = include_str!("smtp_server.py");
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One message as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// Envelope sender (`MAIL FROM`), e.g. `alerts@example.com`.
    pub from: String,
    /// Envelope recipients (`RCPT TO`), in order.
    pub to: Vec<String>,
    /// Decoded `Subject:`.
    pub subject: String,
    /// Decoded text/plain body, `\n` line ends.
    pub body: String,
}

/// A running (or stopped, see [`SmtpServer::stop`]) aiosmtpd on
/// `127.0.0.1:port`.
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    auth: Option<(String, String)>,
    python: String,
}

impl SmtpServer {
    /// The controller's `[alerts.smtp]` for this server: plain SMTP, no
    /// AUTH, from `alerts@myplatform.test` to `to`, 3 s per send.
    pub fn settings(&self, to: &str) -> controller::alerts::mailer::SmtpSettings {
        controller::alerts::mailer::SmtpSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            security: controller::alerts::mailer::Security::None,
            username: None,
            password: None,
            from: "MyPlatform <alerts@myplatform.test>".into(),
            to: vec![to.into()],
            timeout_secs: 3,
        }
    }

    /// Starts a server on a free port that accepts any sender and recipient
    /// without AUTH. Panics with the reason if it cannot start.
    pub fn start() -> SmtpServer {
        Self::launch(None)
    }

    /// Like [`SmtpServer::start`], but AUTH (PLAIN or LOGIN, over plain
    /// text) with exactly this user and password is required.
    pub fn start_with_auth(user: &str, password: &str) -> SmtpServer {
        Self::launch(Some((user.to_owned(), password.to_owned())))
    }

    fn launch(auth: Option<(String, String)>) -> SmtpServer {
        let python = std::env::var("E2E_PYTHON").unwrap_or_else(|_| "python3".into());
        check_aiosmtpd(&python);
        let dir = tempfile::Builder::new()
            .prefix("e2e-smtp-")
            .tempdir()
            .expect("temporary directory for the SMTP server");
        std::fs::write(dir.path().join("smtp_server.py"), SCRIPT).expect("write smtp_server.py");
        let mut server = SmtpServer {
            port: 0,
            dir,
            child: None,
            auth,
            python,
        };
        server.spawn(0);
        server
    }

    /// Kills the server (connections are then refused on `port`). Received
    /// messages stay readable.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (stops it first if it is
    /// running). Messages received before are kept.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn(self.port);
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let raw = match std::fs::read_to_string(self.messages_path()) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("cannot read {}: {e}", self.messages_path().display()),
        };
        // A line still being written has no '\n' yet: leave it for later.
        let complete = raw.rfind('\n').map_or("", |end| &raw[..end]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse_mail)
            .collect()
    }

    /// Waits until at least `n` messages have arrived and returns all of
    /// them. Panics, listing what did arrive, after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "SMTP server on port {} received {} of {n} messages within {timeout:?}: \
                     {got:#?}\n----- smtp server log -----\n{}",
                    self.port,
                    got.len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's own output (aiosmtpd's log, Python tracebacks).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("server.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn messages_path(&self) -> PathBuf {
        self.dir.path().join("messages.jsonl")
    }

    fn spawn(&mut self, port: u16) {
        let ready = self.dir.path().join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("SMTP server log file");
        let mut cmd = Command::new(&self.python);
        cmd.arg(self.dir.path().join("smtp_server.py"))
            .arg(port.to_string())
            .arg(self.messages_path())
            .arg(&ready);
        if let Some((user, password)) = &self.auth {
            cmd.arg(user).arg(password);
        }
        // stdin stays open (held in `Child`) for the server's lifetime; the
        // server exits when it closes, so a killed test leaves no server.
        cmd.stdin(Stdio::piped())
            .stdout(log.try_clone().expect("SMTP server log file"))
            .stderr(log);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the SMTP server ({}): {e}", self.python));
        let deadline = Instant::now() + START_TIMEOUT;
        let bound = loop {
            if let Ok(s) = std::fs::read_to_string(&ready)
                && let Ok(p) = s.trim().parse::<u16>()
            {
                break p;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "SMTP server (aiosmtpd) on 127.0.0.1:{port} exited at start with {status}:\n{}",
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "SMTP server (aiosmtpd) on 127.0.0.1:{port} not ready within {START_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            port == 0 || bound == port,
            "SMTP server bound {bound}, asked for {port}"
        );
        self.port = bound;
        self.child = Some(child);
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("----- smtp server log -----\n{}", self.log());
        }
    }
}

fn check_aiosmtpd(python: &str) {
    let out = Command::new(python)
        .args(["-c", "import aiosmtpd"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("{python} not found ({e}); the SMTP test server needs Python 3 with aiosmtpd")
        });
    if !out.status.success() {
        panic!(
            "aiosmtpd missing: pip install aiosmtpd ({python}: {})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        );
    }
}

fn parse_mail(line: &str) -> ReceivedMail {
    let v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("bad record from the SMTP server ({e}): {line}"));
    let text = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("record without {k}: {line}"))
            .to_owned()
    };
    ReceivedMail {
        from: text("from"),
        to: v["to"]
            .as_array()
            .unwrap_or_else(|| panic!("record without to: {line}"))
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_owned())
            .collect(),
        subject: text("subject"),
        body: text("body"),
    }
}
