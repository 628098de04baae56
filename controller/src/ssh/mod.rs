//! SSH client connections from the controller to managed servers.
//!
//! Owns: opening a connection to a server, checking its host key (trust on
//! first use, or a key pinned earlier), logging in with the stored
//! credential (password or OpenSSH private key), running one-shot commands
//! with a cap on their output, and the facts probe ([`probe`]) that fills
//! the server list before any agent is installed. The open
//! [`client::Handle`] stays reachable inside the crate so interactive shells
//! (PTY) and SFTP can be opened on the same connection.
//!
//! Must not: speak HTTP or touch the database. The caller passes in the host
//! key it knows ([`HostKeyCheck`]) and stores the one the connection
//! returns ([`Connection::host_key`]); deciding to accept a changed key is an
//! administrator's act, made elsewhere. Secrets (passwords, private keys)
//! never appear in `Debug`, `Display`, errors or logs.
//!
//! russh pins pre-release crates (ssh-key 0.7 rc); its types stay inside
//! this module so an upgrade touches one place.

mod probe;

pub use probe::{PROBE_COMMAND, ProbedFacts, parse_probe_output, probe};

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::client;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect, MethodKind};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Connect timeout a caller can use when the user gave none: long enough
/// for a slow login over a WAN (PAM, DNS lookups by sshd), short enough
/// that "add server" does not look hung.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A peer that stops answering is noticed after about
/// `KEEPALIVE_INTERVAL * (KEEPALIVE_MAX + 1)`. Without keepalives a server
/// that vanished (power loss, network cut) keeps a shell or an exec waiting
/// forever, since TCP alone never reports it.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const KEEPALIVE_MAX: usize = 3;

/// Keyboard-interactive rounds we answer before giving up; servers that
/// use it for a plain password need one or two.
const MAX_KBD_INTERACTIVE_ROUNDS: usize = 4;

/// How the controller logs in: the inventory's credential type (its
/// `Debug` never prints the secret).
pub use crate::inventory::model::Credential;

/// Where to connect and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub address: String,
    pub port: u16,
    pub user: String,
}

impl Target {
    /// `address:port`, with IPv6 literals bracketed, for messages.
    pub fn endpoint(&self) -> String {
        if self.address.contains(':') && !self.address.starts_with('[') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// What the caller knows about the server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// No key stored yet: accept what the server presents and return it
    /// for storing.
    TrustOnFirstUse,
    /// The stored key, one OpenSSH public key line
    /// (`ssh-ed25519 AAAA... [comment]`). Any other key is refused.
    Expect(String),
}

/// Output of a finished command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `None` when the command was killed by a signal or the server sent no
    /// status.
    pub exit_status: Option<u32>,
}

/// Why an SSH operation failed. The messages are meant for the user who
/// added the server; none contains a credential.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// No TCP connection: refused, timed out, name not resolved.
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("SSH authentication failed for user {user}")]
    AuthFailed { user: String },
    #[error(
        "the server's SSH host key has changed (expected {expected_fingerprint}, the server \
         presented {presented_fingerprint}); an administrator must accept the new key before \
         the controller connects again"
    )]
    HostKeyChanged {
        expected_fingerprint: String,
        presented_fingerprint: String,
    },
    /// The stored host key (what [`HostKeyCheck::Expect`] carries) is not an
    /// OpenSSH public key line.
    #[error("the stored SSH host key is not a valid OpenSSH public key")]
    InvalidStoredHostKey,
    /// Deliberately without the parser's detail: it could quote key text.
    #[error(
        "the SSH private key cannot be read: expected an unencrypted private key in OpenSSH \
         (\"BEGIN OPENSSH PRIVATE KEY\") or PEM format"
    )]
    BadKey,
    #[error("{operation} timed out after {}", fmt_duration(*.after))]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    /// The connection ended under us (server shut down, keepalives
    /// unanswered).
    #[error("the SSH connection was closed")]
    Disconnected,
    #[error("SSH protocol error: {0}")]
    Protocol(String),
    #[error("the command's output exceeded the limit of {limit} bytes")]
    OutputTooLarge { limit: usize },
    /// The facts probe ran but its output could not be understood.
    #[error("cannot read the server's facts: {0}")]
    ProbeFailed(String),
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// SHA-256 fingerprint of an OpenSSH public key line, as `ssh-keygen -l`
/// prints it (`SHA256:...`), for showing a stored key to an administrator.
pub fn fingerprint_of(openssh_public_key: &str) -> Result<String, SshError> {
    Ok(fingerprint(&parse_public_key(openssh_public_key)?))
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn parse_public_key(line: &str) -> Result<PublicKey, SshError> {
    PublicKey::from_openssh(line.trim()).map_err(|_| SshError::InvalidStoredHostKey)
}

/// Parsed before any network traffic, so a broken stored key fails fast
/// and the same way whether or not the server is up.
fn parse_private_key(text: &str) -> Result<PrivateKey, SshError> {
    russh::keys::decode_secret_key(text, None).map_err(|_| SshError::BadKey)
}

/// Errors the connection task can end with: russh's own, or our refusal of
/// the host key, which must reach [`connect`] with both fingerprints.
#[derive(Debug)]
pub(crate) enum HandlerError {
    Russh(russh::Error),
    HostKeyChanged {
        expected_fingerprint: String,
        presented_fingerprint: String,
    },
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Russh(e)
    }
}

impl From<HandlerError> for SshError {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Russh(e) => from_russh(e),
            HandlerError::HostKeyChanged {
                expected_fingerprint,
                presented_fingerprint,
            } => SshError::HostKeyChanged {
                expected_fingerprint,
                presented_fingerprint,
            },
        }
    }
}

fn from_russh(e: russh::Error) -> SshError {
    match e {
        russh::Error::Disconnect
        | russh::Error::HUP
        | russh::Error::SendError
        | russh::Error::KeepaliveTimeout
        | russh::Error::InactivityTimeout => SshError::Disconnected,
        other => SshError::Protocol(other.to_string()),
    }
}

/// The russh client handler: checks the host key and remembers the one
/// accepted so [`connect`] can return it.
pub(crate) struct ClientHandler {
    /// The key every key exchange must present. Set from the caller's
    /// stored key, or by the first exchange under trust-on-first-use, so a
    /// re-key on a long-lived connection cannot switch keys either.
    pinned: Option<PublicKey>,
    accepted: Arc<OnceLock<PublicKey>>,
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        presented: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // We advertise no certificate algorithms, so a certificate is not
        // expected; if one comes, its bare key is what gets pinned.
        let presented = presented.public_key();
        if let Some(pinned) = &self.pinned
            && pinned.key_data() != presented.key_data()
        {
            return Err(HandlerError::HostKeyChanged {
                expected_fingerprint: fingerprint(pinned),
                presented_fingerprint: fingerprint(&presented),
            });
        }
        // Without the comment: the stored line must be the same whatever a
        // caller or the server appended.
        let bare = PublicKey::new(presented.key_data().clone(), "");
        self.pinned = Some(bare.clone());
        let _ = self.accepted.set(bare);
        Ok(true)
    }
}

fn client_config(expected: Option<&PublicKey>) -> client::Config {
    let mut preferred = russh::Preferred::default();
    if let Some(expected) = expected {
        // A server with several host keys presents the first type in our
        // list that it has; put the stored key's type first so it presents
        // that key instead of another one we would take for a change (the
        // same ordering OpenSSH derives from known_hosts).
        let wanted = expected.algorithm();
        let mut order: Vec<Algorithm> = preferred
            .key
            .iter()
            .filter(|a| same_key_type(a, &wanted))
            .cloned()
            .collect();
        order.extend(
            preferred
                .key
                .iter()
                .filter(|a| !same_key_type(a, &wanted))
                .cloned(),
        );
        preferred.key = order.into();
    }
    client::Config {
        preferred,
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        // Interactive shells come later on this connection; Nagle would add
        // latency to every keystroke.
        nodelay: true,
        ..Default::default()
    }
}

fn same_key_type(a: &Algorithm, b: &Algorithm) -> bool {
    match (a, b) {
        // One RSA key signs with any of the hashes.
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    }
}

/// An authenticated SSH connection to one server. Dropping it closes the
/// connection; [`Connection::disconnect`] does so politely.
pub struct Connection {
    handle: client::Handle<ClientHandler>,
    endpoint: String,
    host_key: String,
    host_key_fingerprint: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("host_key_fingerprint", &self.host_key_fingerprint)
            .finish_non_exhaustive()
    }
}

/// Opens a connection to `target`, checks the host key against `known` and
/// logs in with `cred`. `timeout` bounds everything up to a logged-in
/// connection: TCP connect, key exchange and authentication.
pub async fn connect(
    target: &Target,
    cred: &Credential,
    known: HostKeyCheck,
    timeout: Duration,
) -> Result<Connection, SshError> {
    let expected = match &known {
        HostKeyCheck::TrustOnFirstUse => None,
        HostKeyCheck::Expect(line) => Some(parse_public_key(line)?),
    };
    let auth = match cred {
        Credential::Password(p) => Auth::Password(p),
        Credential::PrivateKey(text) => Auth::Key(Arc::new(parse_private_key(text)?)),
    };
    let endpoint = target.endpoint();
    let deadline = Instant::now() + timeout;

    let tcp = match tokio::time::timeout_at(
        deadline,
        TcpStream::connect((target.address.as_str(), target.port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(SshError::Unreachable {
                endpoint,
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(SshError::Unreachable {
                endpoint,
                reason: format!("no answer within {}", fmt_duration(timeout)),
            });
        }
    };

    let accepted = Arc::new(OnceLock::new());
    let handler = ClientHandler {
        pinned: expected,
        accepted: accepted.clone(),
    };
    let config = Arc::new(client_config(handler.pinned.as_ref()));
    let login = async {
        let mut handle = client::connect_stream(config, tcp, handler).await?;
        authenticate(&mut handle, &target.user, auth).await?;
        Ok::<_, SshError>(handle)
    };
    let handle = tokio::time::timeout_at(deadline, login)
        .await
        .map_err(|_| SshError::Timeout {
            operation: "SSH handshake and login",
            after: timeout,
        })??;

    let key = accepted
        .get()
        .ok_or_else(|| SshError::Protocol("the server presented no host key".into()))?;
    let host_key = key
        .to_openssh()
        .map_err(|e| SshError::Protocol(format!("cannot encode the server's host key: {e}")))?;
    let host_key_fingerprint = fingerprint(key);
    tracing::debug!(
        endpoint,
        user = target.user,
        host_key = host_key_fingerprint,
        "SSH connection established"
    );
    Ok(Connection {
        handle,
        endpoint,
        host_key,
        host_key_fingerprint,
    })
}

enum Auth<'a> {
    Password(&'a str),
    Key(Arc<PrivateKey>),
}

async fn authenticate(
    handle: &mut client::Handle<ClientHandler>,
    user: &str,
    auth: Auth<'_>,
) -> Result<(), SshError> {
    let failed = || SshError::AuthFailed {
        user: user.to_string(),
    };
    match auth {
        Auth::Password(password) => {
            match handle
                .authenticate_password(user, password)
                .await
                .map_err(from_russh)?
            {
                client::AuthResult::Success => Ok(()),
                client::AuthResult::Failure {
                    remaining_methods, ..
                } if remaining_methods.contains(&MethodKind::KeyboardInteractive) => {
                    // Servers with `PasswordAuthentication no` often still take
                    // the password through PAM's keyboard-interactive prompt.
                    keyboard_interactive(handle, user, password).await
                }
                client::AuthResult::Failure { .. } => Err(failed()),
            }
        }
        Auth::Key(key) => {
            let hash = if key.algorithm().is_rsa() {
                // Without server-sig-algs, SHA-256 still beats the SHA-1
                // `ssh-rsa` that current OpenSSH refuses.
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(from_russh)?
                    .unwrap_or(Some(HashAlg::Sha256))
            } else {
                None
            };
            let result = handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
                .await
                .map_err(from_russh)?;
            if result.success() {
                Ok(())
            } else {
                Err(failed())
            }
        }
    }
}

async fn keyboard_interactive(
    handle: &mut client::Handle<ClientHandler>,
    user: &str,
    password: &str,
) -> Result<(), SshError> {
    use client::KeyboardInteractiveAuthResponse as R;
    let failed = || SshError::AuthFailed {
        user: user.to_string(),
    };
    let mut response = handle
        .authenticate_keyboard_interactive_start(user, None)
        .await
        .map_err(from_russh)?;
    for _ in 0..MAX_KBD_INTERACTIVE_ROUNDS {
        match response {
            R::Success => return Ok(()),
            R::Failure { .. } => return Err(failed()),
            R::InfoRequest { prompts, .. } => {
                // Only a single hidden prompt can be the password; an echoed
                // prompt or several (OTP, password change) need a person.
                if prompts.len() > 1 || prompts.iter().any(|p| p.echo) {
                    return Err(failed());
                }
                let answers = prompts.iter().map(|_| password.to_string()).collect();
                response = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(from_russh)?;
            }
        }
    }
    Err(failed())
}

/// Ends an abandoned exec (output cap, or the caller's timeout dropping
/// the future). Closing the channel alone leaves the command running on
/// the server (sshd waits for it), so it is sent SIGTERM first: a chance to
/// clean up, unlike SIGKILL in the middle of, say, a package install.
struct CloseOnDrop(Option<russh::Channel<client::Msg>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(channel) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = channel.signal(russh::Sig::TERM).await;
                let _ = channel.close().await;
            });
        }
    }
}

impl Connection {
    /// The server's host key as one OpenSSH public key line
    /// (`ssh-ed25519 AAAA...`), for the caller to store and pass back in
    /// [`HostKeyCheck::Expect`].
    pub fn host_key(&self) -> String {
        self.host_key.clone()
    }

    /// `SHA256:...` of the host key, as `ssh-keygen -l` prints it.
    pub fn host_key_fingerprint(&self) -> String {
        self.host_key_fingerprint.clone()
    }

    /// `address:port` this connection goes to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The russh handle, for opening PTY shells and SFTP on this
    /// connection.
    pub(crate) fn handle(&self) -> &client::Handle<ClientHandler> {
        &self.handle
    }

    /// Whether the connection has ended (server gone, keepalives
    /// unanswered).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs `command` through the login user's shell, without a PTY and
    /// with empty standard input, and collects its output. Fails with
    /// [`SshError::OutputTooLarge`] once stdout and stderr together exceed
    /// `max_output` bytes; the command is then sent SIGTERM and its channel
    /// closed.
    ///
    /// There is no time limit here: a command may legitimately run long.
    /// Wrap the call in `tokio::time::timeout` to bound it; dropping the
    /// future ends the command the same way.
    pub async fn exec(&self, command: &str, max_output: usize) -> Result<ExecOutput, SshError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.lost_or(e))?;
        let mut guard = CloseOnDrop(Some(channel));
        let Some(channel) = guard.0.as_mut() else {
            return Err(SshError::Disconnected);
        };
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.lost_or(e))?;
        // Commands that read standard input would otherwise wait forever.
        channel.eof().await.map_err(|e| self.lost_or(e))?;

        let mut out = ExecOutput::default();
        let mut closed = false;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                // Extended data type 1 is stderr (RFC 4254 5.2), the only
                // one defined.
                ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
                ChannelMsg::Failure => {
                    return Err(SshError::Protocol(
                        "the server refused to run the command".into(),
                    ));
                }
                ChannelMsg::Close => {
                    closed = true;
                    break;
                }
                _ => {}
            }
            if out.stdout.len() + out.stderr.len() > max_output {
                return Err(SshError::OutputTooLarge { limit: max_output });
            }
        }
        if !closed && self.handle.is_closed() {
            return Err(SshError::Disconnected);
        }
        // The server closed the channel itself: nothing left to close.
        guard.0 = None;
        Ok(out)
    }

    /// Ends the connection with an SSH disconnect message.
    pub async fn disconnect(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }

    pub(crate) fn lost_or(&self, e: russh::Error) -> SshError {
        if self.handle.is_closed() {
            SshError::Disconnected
        } else {
            from_russh(e)
        }
    }
}

/// Connects to an inventory server as its record says: its address, port
/// and user, checking the host key it trusted before or, when it has none
/// yet, trusting the first one (the caller stores [`Connection::host_key`]).
pub async fn connect_server(
    server: &crate::inventory::Server,
    cred: &Credential,
    timeout: Duration,
) -> Result<Connection, SshError> {
    let target = Target {
        address: server.address.clone(),
        port: server.ssh_port,
        user: server.ssh_user.clone(),
    };
    let check = match &server.host_key {
        Some(k) => HostKeyCheck::Expect(k.clone()),
        None => HostKeyCheck::TrustOnFirstUse,
    };
    connect(&target, cred, check, timeout).await
}

/// Probes an inventory server once: logs in with its stored credential and
/// reads its facts. Returns the facts and the host key to keep.
pub async fn probe_server(
    server: &crate::inventory::Server,
    cred: &Credential,
) -> Result<(ProbedFacts, String), SshError> {
    let conn = connect_server(server, cred, DEFAULT_CONNECT_TIMEOUT).await?;
    let facts = probe(&conn).await;
    let key = conn.host_key();
    conn.disconnect().await;
    Ok((facts?, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller runs these on spawned tasks and shares one
    /// connection between them.
    #[allow(dead_code)]
    fn futures_are_send(conn: &Connection, target: &Target, cred: &Credential) {
        fn send<T: Send>(_: T) {}
        fn shared<T: Send + Sync>() {}
        shared::<Connection>();
        send(connect(
            target,
            cred,
            HostKeyCheck::TrustOnFirstUse,
            Duration::ZERO,
        ));
        send(conn.exec("true", 1));
        send(probe(conn));
    }

    #[test]
    fn credential_debug_hides_secrets() {
        let p = format!("{:?}", Credential::Password("hunter2".into()));
        let k = format!("{:?}", Credential::PrivateKey("-----BEGIN SECRET".into()));
        assert!(!p.contains("hunter2") && p.contains("redacted"));
        assert!(!k.contains("SECRET") && k.contains("redacted"));
    }

    #[test]
    fn bad_private_key_is_bad_key_without_echo() {
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-base64!!\n-----END OPENSSH PRIVATE KEY-----\n";
        let err = parse_private_key(text).unwrap_err();
        assert!(matches!(err, SshError::BadKey));
        assert!(!err.to_string().contains("not-base64"));
    }

    #[test]
    fn stored_host_key_parse_and_fingerprint() {
        // From `ssh-keygen -t ed25519`; fingerprint from `ssh-keygen -lf`.
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBYXQK/1wZT+FMtEiIawI5IzEfOjcEwttymCOtjs9C1u test";
        assert_eq!(
            fingerprint_of(line).unwrap(),
            "SHA256:/DV/+hpVhHrwJyGgP3KRlSTFUYBCkasSqr35v/QMZuo"
        );
        assert!(matches!(
            fingerprint_of("ssh-ed25519 garbage"),
            Err(SshError::InvalidStoredHostKey)
        ));
    }

    #[test]
    fn endpoint_brackets_ipv6() {
        let t = |a: &str| Target {
            address: a.into(),
            port: 22,
            user: "u".into(),
        };
        assert_eq!(t("10.0.0.1").endpoint(), "10.0.0.1:22");
        assert_eq!(t("::1").endpoint(), "[::1]:22");
        assert_eq!(t("host.example").endpoint(), "host.example:22");
    }

    #[test]
    fn expected_key_type_is_offered_first() {
        let key = PublicKey::from_openssh(
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBO4saUTNZ6Cgt0GzqiIOPsMt1MMIpUnMDYXJUEUI5oT2sW3LoXhz/525bOwS8M8KrZy+8i6zBfAi9qNOeplW0L0=",
        )
        .unwrap();
        let cfg = client_config(Some(&key));
        assert_eq!(cfg.preferred.key[0], key.algorithm());
        assert_eq!(
            cfg.preferred.key.len(),
            russh::Preferred::default().key.len()
        );
        assert_eq!(cfg.keepalive_interval, Some(KEEPALIVE_INTERVAL));
    }

    #[test]
    fn timeout_message_reads_well() {
        let e = SshError::Timeout {
            operation: "SSH handshake and login",
            after: Duration::from_secs(10),
        };
        assert_eq!(e.to_string(), "SSH handshake and login timed out after 10s");
    }
}
