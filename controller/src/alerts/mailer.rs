//! Alert email sender: SMTP settings, their validation, and sending one
//! plain-text UTF-8 message to every configured recipient over SMTP (no
//! TLS, STARTTLS, or implicit TLS through rustls with the `ring` provider).
//!
//! It owns: checking the settings (host, port, addresses, credentials) once
//! at [`Mailer::new`], the SMTP conversation, its overall timeout, and turning
//! failures into [`MailError`]s that say what went wrong and with which
//! server.
//!
//! It must not: decide when or whether to alert, retry, queue or
//! de-duplicate (the caller does), nor log, print or put in an error the
//! SMTP password (`Debug` of [`SmtpSettings`] and [`Mailer`] redacts it).
//! It logs nothing itself.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// Seconds allowed for a whole send (connect, TLS, AUTH, the message) when
/// the settings do not say.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

/// How to reach the SMTP server. `Serialize`d with the password in clear
/// (it is configuration); `Debug` never shows it.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// Host name or IP address, e.g. `smtp.example.com` or `127.0.0.1`.
    pub host: String,
    /// Usually 25 or 587 (`none`/`starttls`) or 465 (`tls`).
    pub port: u16,
    pub security: Security,
    /// Both or neither of `username` and `password`.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Sender, e.g. `MyPlatform <alerts@example.com>`.
    pub from: String,
    /// Recipients, each `addr@example.com` or `Name <addr@example.com>`.
    pub to: Vec<String>,
    /// Upper bound for one whole send, in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// Transport security, written `none`, `starttls` or `tls` in settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain SMTP; credentials, if any, are sent unencrypted.
    None,
    /// Plain connection upgraded with STARTTLS; refuses to go on without it.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// Why settings were refused or a send failed. No variant ever holds the
/// password.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid SMTP settings: {0}")]
    InvalidSettings(String),
    #[error("invalid sender address {address:?}: {reason}")]
    InvalidSender { address: String, reason: String },
    #[error("invalid recipient address {address:?}: {reason}")]
    InvalidRecipient { address: String, reason: String },
    #[error("cannot set up TLS for SMTP server {server}: {detail}")]
    TlsSetup { server: String, detail: String },
    #[error("cannot build the message: {0}")]
    Message(String),
    #[error("SMTP server {server} unreachable: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("SMTP server {server} did not complete the send within {secs}s (timeout)")]
    Timeout { server: String, secs: u64 },
    #[error("TLS with SMTP server {server} failed: {detail}")]
    Tls { server: String, detail: String },
    #[error("authentication failed at SMTP server {server}: {detail}")]
    AuthFailed { server: String, detail: String },
    #[error("SMTP server {server} refused the message: {detail}")]
    Rejected { server: String, detail: String },
    #[error("sending through SMTP server {server} failed: {detail}")]
    Failed { server: String, detail: String },
}

/// Sends alert mail with fixed settings. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// `host:port`, for messages.
    server: String,
    security: Security,
    timeout: Duration,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Mailer")
            .field("server", &i.server)
            .field("security", &i.security)
            .field("from", &i.from.to_string())
            .field(
                "to",
                &i.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
            )
            .field("timeout", &i.timeout)
            .finish_non_exhaustive()
    }
}

fn parse_recipient(a: &str) -> Result<Mailbox, MailError> {
    a.trim()
        .parse::<Mailbox>()
        .map_err(|e| MailError::InvalidRecipient {
            address: a.to_owned(),
            reason: e.to_string(),
        })
}

/// Checks recipient addresses the way [`Mailer::new`] does, for a list
/// edited on its own (the alerts page); the first bad one is named.
pub fn check_recipients(to: &[String]) -> Result<(), MailError> {
    to.iter().try_for_each(|a| parse_recipient(a).map(drop))
}

impl Mailer {
    /// Checks the settings and prepares the transport. Connects to nothing:
    /// an unreachable server shows at [`Mailer::send`].
    pub fn new(settings: SmtpSettings) -> Result<Mailer, MailError> {
        let SmtpSettings {
            host,
            port,
            security,
            username,
            password,
            from,
            to,
            timeout_secs,
        } = settings;
        let invalid = |m: String| Err(MailError::InvalidSettings(m));
        if host.trim().is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid(format!("host {host:?} is empty or contains spaces"));
        }
        if port == 0 {
            return invalid("port must be 1-65535".into());
        }
        if timeout_secs == 0 {
            return invalid("timeout_secs must be at least 1".into());
        }
        let from = from
            .trim()
            .parse::<Mailbox>()
            .map_err(|e| MailError::InvalidSender {
                address: from.clone(),
                reason: e.to_string(),
            })?;
        if to.is_empty() {
            return invalid("no recipient (to is empty)".into());
        }
        let to = to
            .iter()
            .map(|a| parse_recipient(a))
            .collect::<Result<Vec<_>, _>>()?;
        let credentials = match (username, password) {
            (None, None) => None,
            (Some(u), Some(p)) if !u.is_empty() => Some(Credentials::new(u, p)),
            (Some(_), Some(_)) => return invalid("username is empty".into()),
            (Some(_), None) => return invalid("username given without password".into()),
            (None, Some(_)) => return invalid("password given without username".into()),
        };

        let server = format_server(&host, port);
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned()).map_err(|e| MailError::TlsSetup {
                server: server.clone(),
                detail: e.to_string(),
            })
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str());
        let builder = match security {
            Security::None => builder.tls(Tls::None),
            Security::Starttls => builder.tls(Tls::Required(tls(&host)?)),
            Security::Tls => builder.tls(Tls::Wrapper(tls(&host)?)),
        };
        let timeout = Duration::from_secs(timeout_secs);
        let mut builder = builder.port(port).timeout(Some(timeout));
        if let Some(c) = credentials {
            builder = builder.credentials(c);
        }
        Ok(Mailer {
            inner: Arc::new(Inner {
                transport: builder.build(),
                from,
                to,
                server,
                security,
                timeout,
            }),
        })
    }

    /// Sends one plain-text UTF-8 message to all recipients (one SMTP
    /// transaction, all of them in `To:`). Line breaks in `subject` become
    /// spaces. Fails within the configured timeout.
    pub async fn send(&self, subject: &str, body: &str) -> Result<(), MailError> {
        let i = &self.inner;
        let subject: String = subject
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut builder = Message::builder()
            .from(i.from.clone())
            .subject(subject)
            .message_id(None)
            .header(ContentType::TEXT_PLAIN);
        for to in &i.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .body(body.to_owned())
            .map_err(|e| MailError::Message(e.to_string()))?;
        match tokio::time::timeout(i.timeout, i.transport.send(message)).await {
            Err(_elapsed) => Err(self.timeout_error()),
            Ok(Err(e)) => Err(self.classify(&e)),
            Ok(Ok(_response)) => Ok(()),
        }
    }

    fn timeout_error(&self) -> MailError {
        MailError::Timeout {
            server: self.inner.server.clone(),
            secs: self.inner.timeout.as_secs(),
        }
    }

    fn classify(&self, e: &lettre::transport::smtp::Error) -> MailError {
        use std::io::ErrorKind as K;
        let server = self.inner.server.clone();
        // lettre's Display names the kind ("Connection error: ...", at times
        // twice); the server in our message says where, so keep the cause.
        let full = e.to_string();
        let mut detail = full.as_str();
        while let Some(rest) = detail.strip_prefix("Connection error: ") {
            detail = rest;
        }
        let detail = detail.to_owned();
        if e.is_timeout() {
            return self.timeout_error();
        }
        if e.is_tls() || caused_by_rustls(e) || (e.is_client() && detail.contains("STARTTLS")) {
            return MailError::Tls { server, detail };
        }
        if let Some(code) = e.status() {
            return match code.to_string().as_str() {
                "530" | "534" | "535" | "538" => MailError::AuthFailed { server, detail },
                _ => MailError::Rejected { server, detail },
            };
        }
        if e.is_client() && detail.contains("authentication mechanism") {
            return MailError::AuthFailed { server, detail };
        }
        // lettre has no `is_connection()`: its Display is what tells.
        if full.starts_with("Connection error")
            || matches!(
                io_error_kind(e),
                Some(K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable)
            )
        {
            return MailError::Unreachable { server, detail };
        }
        MailError::Failed { server, detail }
    }
}

/// The errors `e` was caused by (not `e` itself), looking inside
/// `io::Error`s too (their `source()` skips the error they wrap).
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut next = e.source();
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
        Some(current)
    })
}

fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    causes(e).find_map(|c| c.downcast_ref::<std::io::Error>().map(std::io::Error::kind))
}

fn caused_by_rustls(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|c| c.is::<rustls::Error>())
}

fn format_server(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port: 2525,
            security: Security::None,
            username: Some("alerts".into()),
            password: Some("hunter2-very-secret".into()),
            from: "MyPlatform <alerts@example.com>".into(),
            to: vec!["ops@example.com".into(), "值班 <oncall@example.com>".into()],
            timeout_secs: 10,
        }
    }

    fn err(s: SmtpSettings) -> MailError {
        Mailer::new(s).expect_err("settings should be refused")
    }

    #[test]
    fn good_settings_make_a_mailer_for_every_security_mode() {
        for security in [Security::None, Security::Starttls, Security::Tls] {
            let mut s = settings();
            s.security = security;
            s.host = "smtp.example.com".into();
            Mailer::new(s).unwrap();
        }
        let mut s = settings();
        s.username = None;
        s.password = None;
        Mailer::new(s).unwrap();
    }

    #[test]
    fn a_bad_recipient_is_named_in_the_error() {
        let mut s = settings();
        s.to.push("not an address".into());
        let e = err(s);
        assert!(matches!(e, MailError::InvalidRecipient { .. }), "{e:?}");
        let m = e.to_string();
        assert!(
            m.starts_with("invalid recipient address \"not an address\""),
            "{m}"
        );
    }

    #[test]
    fn a_bad_sender_is_named_in_the_error() {
        for bad in ["", "alerts", "MyPlatform <alerts@>", "a@b@c"] {
            let mut s = settings();
            s.from = bad.into();
            let e = err(s);
            assert!(matches!(e, MailError::InvalidSender { .. }), "{bad}: {e:?}");
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid sender address {bad:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn other_bad_settings_are_refused() {
        type Change = fn(&mut SmtpSettings);
        let cases: [(&str, Change); 6] = [
            ("no recipient", |s| s.to.clear()),
            ("empty", |s| s.host = " ".into()),
            ("port", |s| s.port = 0),
            ("timeout_secs", |s| s.timeout_secs = 0),
            ("without password", |s| s.password = None),
            ("without username", |s| s.username = None),
        ];
        for (want, change) in cases {
            let mut s = settings();
            change(&mut s);
            let m = err(s).to_string();
            assert!(m.starts_with("invalid SMTP settings: "), "{m}");
            assert!(m.contains(want), "{want}: {m}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let s = settings();
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("alerts@example.com"), "{shown}");
        let mailer = Mailer::new(s).unwrap();
        let shown = format!("{mailer:?} {mailer:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1:2525"), "{shown}");
    }

    #[test]
    fn settings_read_from_json_and_toml_with_defaults() {
        let s: SmtpSettings = serde_json::from_str(
            r#"{"host":"smtp.example.com","port":587,"security":"starttls",
                "from":"MyPlatform <alerts@example.com>","to":["ops@example.com"]}"#,
        )
        .unwrap();
        assert_eq!(s.security, Security::Starttls);
        assert_eq!(s.timeout_secs, DEFAULT_TIMEOUT_SECS);
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (None, None));
        let t: SmtpSettings = toml::from_str(
            "host = \"smtp.example.com\"\nport = 465\nsecurity = \"tls\"\n\
             username = \"u\"\npassword = \"p\"\nfrom = \"a@example.com\"\n\
             to = [\"b@example.com\"]\ntimeout_secs = 3\n",
        )
        .unwrap();
        assert_eq!(t.security, Security::Tls);
        assert_eq!(t.timeout_secs, 3);
        let back: SmtpSettings = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        let unknown = serde_json::from_str::<SmtpSettings>(
            r#"{"host":"h","port":25,"security":"none","from":"a@b.c","to":[],"tls":true}"#,
        );
        assert!(unknown.is_err());
        let bad_security = serde_json::from_str::<SmtpSettings>(
            r#"{"host":"h","port":25,"security":"ssl","from":"a@b.c","to":[]}"#,
        );
        assert!(bad_security.is_err());
    }
}
