//! Files to and from a managed server over SFTP, on an open
//! [`Connection`].
//!
//! Owns: the names of remote places as types that only hold valid values
//! ([`RemotePath`], [`FileName`]); uploads, which land atomically (written
//! to a hidden temporary sibling, then renamed over the final name, so a
//! failed or interrupted upload never leaves a partial file under the real
//! name); downloads, streamed as they arrive; and SFTP status codes turned
//! into errors a person can act on ([`TransferError`]). Each transfer runs on
//! an SFTP channel of its own, so abandoning one (dropping its future or
//! stream) ends only that channel, and the server then closes its handles.
//! Memory stays bounded whatever the file size: a fixed number of requests
//! of a fixed size are in flight, pipelined, since one request per round
//! trip would make throughput a matter of latency.
//!
//! Must not: know HTTP (the web layer turns a request body into a byte
//! stream and a [`Download`] into a response), or pass a path or a file name
//! to a shell: everything travels as SFTP requests, so `a;b $(reboot)` is
//! only a name.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, FuturesOrdered, FuturesUnordered};
use futures_util::{Stream, StreamExt};
use ring::rand::{SecureRandom, SystemRandom};
use russh::ChannelMsg;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::protocol::{Data, FileAttributes, OpenFlags, Packet, StatusCode};

use crate::ssh::{Connection, SshError};

/// Longest path accepted, in bytes: Linux's `PATH_MAX`.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest file name accepted, in bytes: `NAME_MAX` of Linux file systems.
pub const MAX_NAME_BYTES: usize = 255;

/// Read and write size when the server does not state its limits: within
/// the 34000-byte packets the SFTP draft asks every server to accept.
const FALLBACK_IO_LEN: u32 = 32 * 1024;
/// Largest read or write we send, whatever the server allows. OpenSSH
/// allows exactly this (256 KiB packets less room for headers); bigger
/// requests would only hold more memory per transfer.
const MAX_IO_LEN: u32 = 255 * 1024;
/// Biggest packet we accept from the server: a full read reply fits.
const MAX_PACKET_LEN: u32 = 256 * 1024;
/// Requests in flight per transfer (so at most this many times
/// [`MAX_IO_LEN`] buffered). Enough to keep OpenSSH's 2 MiB channel window
/// full with the server still busy on the previous requests; more only
/// queues inside the SSH layer.
const READS_IN_FLIGHT: usize = 16;
const WRITES_IN_FLIGHT: usize = 16;
/// How long one SFTP request may go unanswered. Generous: with every
/// request in flight it must cover ~4 MiB on a slow link, and a server that
/// vanished is noticed sooner by the connection's keepalives.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on removing an upload's temporary file after a failure, so a hung
/// server does not hold the error back from the user.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// OpenSSH's rename that replaces an existing target atomically
/// (`rename(2)`); plain SFTP rename refuses an existing target.
const POSIX_RENAME: &str = "posix-rename@openssh.com";
const LIMITS: &str = "limits@openssh.com";

/// Longest part of a refused input quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 80;

/// Why a path or file name was refused. The message quotes the input
/// (escaped, shortened) and says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {quoted}: {reason}")]
pub struct InvalidPath {
    what: &'static str,
    quoted: String,
    reason: &'static str,
}

impl InvalidPath {
    fn new(what: &'static str, input: &str, reason: &'static str) -> InvalidPath {
        let mut shown: String = input.chars().take(MAX_QUOTED_CHARS).collect();
        if shown.len() < input.len() {
            shown.push('…');
        }
        InvalidPath {
            what,
            // Debug-escaped: a line break or NUL shows as `\n` or `\0`
            // instead of breaking the message apart.
            quoted: format!("{shown:?}"),
            reason,
        }
    }

    /// What is wrong, without the input: "the path must be absolute (start
    /// with /)".
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// An absolute path on a managed server: starts with `/`, at most
/// [`MAX_PATH_BYTES`] bytes, no NUL, no line break, no `..` component.
/// Repeated slashes, `.` components and a trailing slash are dropped
/// (`//srv/./app/` is `/srv/app`); nothing else changes.
///
/// `..` is refused rather than resolved: on the server it would go through
/// symbolic links, so the path shown to the user would not be the one
/// acted on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemotePath(String);

impl RemotePath {
    pub fn parse(input: &str) -> Result<RemotePath, InvalidPath> {
        let bad = |reason| Err(InvalidPath::new("path", input, reason));
        if input.is_empty() {
            return bad("the path is empty");
        }
        if !input.starts_with('/') {
            return bad("the path must be absolute (start with /)");
        }
        if input.contains('\0') {
            return bad("the path cannot contain a NUL character");
        }
        if input.contains(['\n', '\r']) {
            return bad("the path cannot contain a line break");
        }
        if input.len() > MAX_PATH_BYTES {
            return bad("the path is longer than 4096 bytes");
        }
        let mut normal = String::with_capacity(input.len());
        for component in input.split('/') {
            match component {
                "" | "." => {}
                ".." => return bad("the path cannot contain a .. component"),
                c => {
                    normal.push('/');
                    normal.push_str(c);
                }
            }
        }
        if normal.is_empty() {
            normal.push('/');
        }
        Ok(RemotePath(normal))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component (`"app.jar"` for `/srv/app.jar`); empty for `/`.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// `name` inside this directory, if the result is not too long.
    pub fn join(&self, name: &FileName) -> Result<RemotePath, InvalidPath> {
        let joined = self.child(name.as_str());
        if joined.len() > MAX_PATH_BYTES {
            return Err(InvalidPath::new(
                "path",
                &joined,
                "the path is longer than 4096 bytes",
            ));
        }
        Ok(RemotePath(joined))
    }

    fn child(&self, name: &str) -> String {
        if self.0 == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.0)
        }
    }
}

impl FromStr for RemotePath {
    type Err = InvalidPath;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RemotePath::parse(s)
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RemotePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// One path component on a managed server: not empty, not `.` or `..`, no
/// `/`, no NUL, no line break, at most [`MAX_NAME_BYTES`] bytes. Anything
/// else is kept exactly as given (spaces, quotes, `;$()|&<>`): it only ever
/// travels inside SFTP requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileName(String);

impl FileName {
    pub fn parse(input: &str) -> Result<FileName, InvalidPath> {
        let bad = |reason| Err(InvalidPath::new("file name", input, reason));
        if input.is_empty() {
            return bad("the file name is empty");
        }
        if input == "." || input == ".." {
            return bad("a file name cannot be . or ..");
        }
        if input.contains('/') {
            return bad("a file name cannot contain /");
        }
        if input.contains('\0') {
            return bad("a file name cannot contain a NUL character");
        }
        if input.contains(['\n', '\r']) {
            return bad("a file name cannot contain a line break");
        }
        if input.len() > MAX_NAME_BYTES {
            return bad("the file name is longer than 255 bytes");
        }
        Ok(FileName(input.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for FileName {
    type Err = InvalidPath;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileName::parse(s)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a transfer failed. Messages are for the person who asked for the
/// transfer and name the path involved.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    InvalidPath(#[from] InvalidPath),
    #[error("{path} does not exist on the server")]
    NotFound { path: String },
    #[error("{path} is not a directory")]
    NotADirectory { path: String },
    /// `hint` says what to do instead (it differs between upload and
    /// download).
    #[error("{path} is a directory; {hint}")]
    IsADirectory { path: String, hint: &'static str },
    /// A device, pipe or socket: reading one could block the server's SFTP
    /// process or never end.
    #[error("{path} is not a regular file (devices, pipes and sockets cannot be downloaded)")]
    NotARegularFile { path: String },
    #[error("permission denied on the server: {path}")]
    PermissionDenied { path: String },
    #[error("no space left on the server (or quota exceeded) while writing {path}")]
    NoSpace { path: String },
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("SFTP: {0}")]
    Protocol(String),
    /// The upload's data stopped (the browser went away, the request body
    /// broke off); the message is the source's own.
    #[error("the upload was interrupted: {0}")]
    SourceFailed(String),
}

const HINT_DOWNLOAD: &str = "give the path of a file";
const HINT_UPLOAD: &str = "a file cannot replace it; choose another name";

/// A file being downloaded: its size and name, known before the first
/// byte, and its content.
pub struct Download {
    /// The size when the download started. Exactly this many bytes come out
    /// of `stream`; a file that shrinks meanwhile ends it with an error, one
    /// that grows is cut at this size.
    pub size: u64,
    /// The last component of the path.
    pub name: String,
    /// The content in order, in chunks of up to 255 KiB. Dropping it ends
    /// the download and its SFTP channel.
    pub stream: BoxStream<'static, Result<Bytes, TransferError>>,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Uploads `body` as `dir/name` and returns the number of bytes written.
///
/// `dir` must exist and be a directory. An existing regular file called
/// `name` is replaced (its permission bits carry over, as with scp); an
/// existing directory is not; a symbolic link is replaced, not followed. The data goes to a hidden temporary sibling
/// (`.<name>.mp-part-<random>`) that is renamed over `name` once complete;
/// if anything fails, or the returned future is dropped, the temporary file
/// is removed (best effort: not if the connection itself is gone).
///
/// `progress` is called with the number of bytes the server has confirmed
/// so far, each time that grows. Memory use is bounded by the in-flight
/// window (16 × 255 KiB) plus one item of `body`.
pub async fn upload<S, E>(
    conn: &Connection,
    dir: &RemotePath,
    name: &FileName,
    mut body: S,
    mut progress: impl FnMut(u64),
) -> Result<u64, TransferError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: fmt::Display,
{
    let target = dir.join(name)?;
    let lost = || conn.is_closed();
    let sftp = Sftp::open(conn).await?;

    let dir_attrs = sftp
        .raw
        .stat(dir.as_str())
        .await
        .map_err(|e| sftp_error(e, dir.as_str(), Step::Check, lost()))?
        .attrs;
    if file_type(&dir_attrs).is_some_and(|t| t != S_IFDIR) {
        return Err(TransferError::NotADirectory {
            path: dir.to_string(),
        });
    }
    let replaced_mode = match sftp.raw.stat(target.as_str()).await {
        Ok(existing) if file_type(&existing.attrs) == Some(S_IFDIR) => {
            return Err(TransferError::IsADirectory {
                path: target.to_string(),
                hint: HINT_UPLOAD,
            });
        }
        // Without setuid/setgid/sticky: those were granted to the old
        // content, not to whatever is uploaded now.
        Ok(existing) => existing.attrs.permissions.map(|p| p & 0o777),
        Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => None,
        Err(e) => return Err(sftp_error(e, target.as_str(), Step::Check, lost())),
    };

    let temp = dir.child(&temp_name(name)?);
    let attrs = FileAttributes {
        // None: the server's default (0666 less its umask), as for a new
        // file from scp.
        permissions: replaced_mode,
        ..FileAttributes::empty()
    };
    // EXCLUDE: never write into a file someone else created under that name.
    let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE;
    let handle = sftp
        .raw
        .open(temp.as_str(), flags, attrs)
        .await
        .map_err(|e| sftp_error(e, dir.as_str(), Step::Create, lost()))?
        .handle;
    let mut temp = TempFile {
        raw: sftp.raw.clone(),
        path: temp,
        handle: Some(handle.clone()),
        armed: true,
    };

    let result = async {
        let written = write_body(&sftp, &handle, &mut body, &mut progress)
            .await
            .map_err(|e| match e {
                Failed::Source(e) => e,
                Failed::Sftp(e) => sftp_error(e, target.as_str(), Step::Write, lost()),
            })?;
        temp.handle = None;
        // Some file systems (NFS) report write errors only at close.
        sftp.raw
            .close(handle)
            .await
            .map_err(|e| sftp_error(e, target.as_str(), Step::Write, lost()))?;
        sftp.rename(&temp.path, target.as_str())
            .await
            .map_err(|e| sftp_error(e, target.as_str(), Step::Rename, lost()))?;
        Ok(written)
    }
    .await;
    match result {
        Ok(written) => {
            temp.armed = false;
            tracing::debug!(
                endpoint = conn.endpoint(),
                path = target.as_str(),
                bytes = written,
                "upload finished"
            );
            Ok(written)
        }
        Err(e) => {
            temp.discard().await;
            Err(e)
        }
    }
}

/// Opens `path` for reading and returns its size, name and content stream.
/// Fails before any byte if `path` is missing, unreadable, a directory, or
/// not a regular file.
pub async fn download(conn: &Connection, path: &RemotePath) -> Result<Download, TransferError> {
    let lost = || conn.is_closed();
    let sftp = Sftp::open(conn).await?;
    let p = path.as_str();
    // Checked before opening: opening a pipe would block the server's SFTP
    // process until a writer appears.
    let attrs = sftp
        .raw
        .stat(p)
        .await
        .map_err(|e| sftp_error(e, p, Step::Check, lost()))?
        .attrs;
    check_regular_file(&attrs, p)?;
    let handle = sftp
        .raw
        .open(p, OpenFlags::READ, FileAttributes::empty())
        .await
        .map_err(|e| sftp_error(e, p, Step::Open, lost()))?
        .handle;
    // The file opened may have replaced the one just checked: its own
    // attributes give the size to announce.
    let attrs = sftp
        .raw
        .fstat(handle.as_str())
        .await
        .map_err(|e| sftp_error(e, p, Step::Check, lost()))?
        .attrs;
    check_regular_file(&attrs, p)?;
    let size = attrs.size.ok_or_else(|| {
        TransferError::Protocol(format!("the server did not report the size of {p}"))
    })?;

    let reader = Reader {
        raw: sftp.raw,
        handle: Arc::from(handle),
        path: p.to_string(),
        read_len: sftp.read_len,
        size,
        requested: 0,
        in_flight: FuturesOrdered::new(),
    };
    let stream = futures_util::stream::unfold(Some(reader), |state| async move {
        let mut reader = state?;
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
            // Dropping the reader closes the SFTP session, and with it the
            // file on the server.
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(Download {
        size,
        name: path.file_name().to_string(),
        stream: Box::pin(stream),
    })
}

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

/// The type bits of a file's mode, if the server sent them. Compared whole:
/// russh-sftp's `is_dir()` tests single bits and so also says yes for
/// sockets and block devices, whose type codes contain the directory bit.
fn file_type(attrs: &FileAttributes) -> Option<u32> {
    attrs.permissions.map(|mode| mode & S_IFMT)
}

/// A server that sends no type leaves the decision to its own open.
fn check_regular_file(attrs: &FileAttributes, path: &str) -> Result<(), TransferError> {
    match file_type(attrs) {
        None | Some(S_IFREG) => Ok(()),
        Some(S_IFDIR) => Err(TransferError::IsADirectory {
            path: path.to_string(),
            hint: HINT_DOWNLOAD,
        }),
        Some(_) => Err(TransferError::NotARegularFile {
            path: path.to_string(),
        }),
    }
}

/// `.<name>.mp-part-<16 hex>`: hidden, recognisable, unique, and within
/// [`MAX_NAME_BYTES`] (a long name is shortened in the temporary name only).
fn temp_name(name: &FileName) -> Result<String, TransferError> {
    let mut random = [0u8; 8];
    SystemRandom::new().fill(&mut random).map_err(|_| {
        TransferError::Protocol("no random numbers for a temporary file name".into())
    })?;
    let suffix = format!(".mp-part-{}", hex::encode(random));
    let name = name.as_str();
    let mut keep = name.len().min(MAX_NAME_BYTES - 1 - suffix.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    Ok(format!(".{}{suffix}", &name[..keep]))
}

/// What was being done when the server said no: picks the error and words
/// the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Start,
    Check,
    Open,
    Create,
    Read,
    Write,
    Rename,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Step::Start => "start SFTP for",
            Step::Check => "look up",
            Step::Open => "open",
            Step::Create => "create a file in",
            Step::Read => "read",
            Step::Write => "write",
            Step::Rename => "move the uploaded file into place at",
        }
    }
}

/// Maps an SFTP failure on `path` to what the user should hear. `lost`:
/// whether the SSH connection is known to have closed.
fn sftp_error(e: SftpError, path: &str, step: Step, lost: bool) -> TransferError {
    let path = path.to_string();
    match e {
        SftpError::Status(s) => match s.status_code {
            StatusCode::NoSuchFile => TransferError::NotFound { path },
            StatusCode::PermissionDenied => TransferError::PermissionDenied { path },
            // OpenSSH's server reports ENOSPC and EDQUOT, like every errno
            // without a code of its own, as the generic failure, with a
            // message that does not tell them apart. Writing to a file
            // already open, a full disk or quota is by far the likeliest
            // cause (an I/O error the rarest).
            StatusCode::Failure if step == Step::Write => TransferError::NoSpace { path },
            StatusCode::Eof if step == Step::Read => {
                TransferError::Protocol(format!("{path} became shorter while it was downloaded"))
            }
            // Pseudo-codes a client generates for itself.
            StatusCode::NoConnection | StatusCode::ConnectionLost => {
                TransferError::Ssh(SshError::Disconnected)
            }
            StatusCode::OpUnsupported => TransferError::Protocol(format!(
                "the server does not support what is needed to {} {path}",
                step.verb()
            )),
            // BadMessage is what OpenSSH answers for ENAMETOOLONG and
            // EINVAL; its message (and the code's name) is all there is.
            StatusCode::Ok | StatusCode::Eof | StatusCode::Failure | StatusCode::BadMessage => {
                let said = if s.error_message.trim().is_empty() {
                    s.status_code.to_string()
                } else {
                    s.error_message.trim().to_string()
                };
                TransferError::Protocol(format!(
                    "the server could not {} {path}: {said}",
                    step.verb()
                ))
            }
        },
        SftpError::Timeout => TransferError::Ssh(SshError::Timeout {
            operation: "an SFTP request",
            after: REQUEST_TIMEOUT,
        }),
        // The SFTP channel broke: usually because the connection did.
        SftpError::IO(_) | SftpError::UnexpectedBehavior(_) if lost => {
            TransferError::Ssh(SshError::Disconnected)
        }
        SftpError::IO(_) | SftpError::UnexpectedBehavior(_) => TransferError::Protocol(format!(
            "the SFTP session ended while trying to {} {path} ({e})",
            step.verb()
        )),
        SftpError::Limited(_) | SftpError::UnexpectedPacket => TransferError::Protocol(format!(
            "unexpected answer from the server while trying to {} {path}: {e}",
            step.verb()
        )),
    }
}

fn russh_error(conn: &Connection, e: russh::Error) -> TransferError {
    if conn.is_closed() {
        TransferError::Ssh(SshError::Disconnected)
    } else {
        TransferError::Ssh(SshError::Protocol(e.to_string()))
    }
}

/// One SFTP session on its own channel, with what the server offers.
struct Sftp {
    raw: Arc<RawSftpSession>,
    read_len: u32,
    write_len: u32,
    posix_rename: bool,
}

impl Sftp {
    async fn open(conn: &Connection) -> Result<Sftp, TransferError> {
        let mut channel = conn
            .handle()
            .channel_open_session()
            .await
            .map_err(|e| russh_error(conn, e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| russh_error(conn, e))?;
        // Waited for: a server without SFTP refuses the subsystem, and a
        // session started regardless would only end in a timeout.
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) => {
                    return Err(TransferError::Protocol(
                        "the server does not offer SFTP (no sftp subsystem in its sshd \
                         configuration)"
                            .into(),
                    ));
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    return Err(if conn.is_closed() {
                        TransferError::Ssh(SshError::Disconnected)
                    } else {
                        TransferError::Protocol(
                            "the server closed the SFTP channel before it started".into(),
                        )
                    });
                }
                Some(_) => {}
            }
        }
        let config = russh_sftp::client::Config {
            max_packet_len: MAX_PACKET_LEN,
            request_timeout_secs: REQUEST_TIMEOUT.as_secs(),
            ..Default::default()
        };
        let mut raw = RawSftpSession::new_with_config(channel.into_stream(), config);
        let version = raw
            .init()
            .await
            .map_err(|e| sftp_error(e, conn.endpoint(), Step::Start, conn.is_closed()))?;
        let offers = |name: &str, v: &str| version.extensions.get(name).is_some_and(|x| x == v);
        let (mut read_len, mut write_len) = (FALLBACK_IO_LEN, FALLBACK_IO_LEN);
        // A server that advertises limits but cannot tell them gets the
        // conservative sizes rather than a failed transfer.
        if offers(LIMITS, "1")
            && let Ok(limits) = raw.limits().await
        {
            let limits = Limits::from(limits);
            // Headers (type, id, handle, offset, length) need room too.
            let packet_room = limits.packet_len.map(|p| p.saturating_sub(1024));
            let pick = |len: Option<u64>| {
                len.or(packet_room)
                    .map_or(FALLBACK_IO_LEN, |l| l.min(u64::from(MAX_IO_LEN)) as u32)
                    .max(1)
            };
            read_len = pick(limits.read_len);
            write_len = pick(limits.write_len);
            // russh-sftp checks requests against these itself.
            raw.set_limits(limits);
        }
        let posix_rename = offers(POSIX_RENAME, "1");
        tracing::debug!(
            endpoint = conn.endpoint(),
            read_len,
            write_len,
            posix_rename,
            "SFTP session started"
        );
        Ok(Sftp {
            raw: Arc::new(raw),
            read_len,
            write_len,
            posix_rename,
        })
    }

    /// Renames `from` to `to`, replacing `to` if it exists.
    async fn rename(&self, from: &str, to: &str) -> Result<(), SftpError> {
        if self.posix_rename {
            let reply = self
                .raw
                .extended(POSIX_RENAME, rename_request(from, to))
                .await?;
            match reply {
                Packet::Status(s) if s.status_code == StatusCode::Ok => return Ok(()),
                // Offered but refused (OpenSSH's `sftp-server -P
                // posix-rename`): the plain way below does the same, only
                // not atomically. A genuine permission problem fails there
                // too.
                Packet::Status(s)
                    if matches!(
                        s.status_code,
                        StatusCode::PermissionDenied | StatusCode::OpUnsupported
                    ) => {}
                Packet::Status(s) => return Err(SftpError::Status(s)),
                _ => return Err(SftpError::UnexpectedPacket),
            }
        }
        // Plain SFTP rename refuses an existing target (OpenSSH implements
        // it with link(2)), so the old file goes first: for a moment
        // neither exists, but a partial file is never seen under `to`.
        match self.raw.remove(to).await {
            Ok(_) => {}
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {}
            Err(e) => return Err(e),
        }
        self.raw.rename(from, to).await.map(|_| ())
    }
}

/// The body of `posix-rename@openssh.com`: two SFTP strings.
fn rename_request(from: &str, to: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + from.len() + to.len());
    for s in [from, to] {
        // Paths are at most a few KiB (RemotePath), far below u32::MAX.
        body.extend_from_slice(&(s.len() as u32).to_be_bytes());
        body.extend_from_slice(s.as_bytes());
    }
    body
}

/// An upload's temporary file until it is renamed into place. Dropped while
/// still armed (the upload's future was dropped mid-way), it removes the
/// file from a spawned task, so an interrupted upload leaves nothing behind
/// either as long as the connection lives.
struct TempFile {
    raw: Arc<RawSftpSession>,
    path: String,
    /// Open handle, until closed.
    handle: Option<String>,
    armed: bool,
}

impl TempFile {
    async fn discard(mut self) {
        self.armed = false;
        remove_temp(self.raw.clone(), self.path.clone(), self.handle.take()).await;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(remove_temp(
                self.raw.clone(),
                std::mem::take(&mut self.path),
                self.handle.take(),
            ));
        }
    }
}

async fn remove_temp(raw: Arc<RawSftpSession>, path: String, handle: Option<String>) {
    let work = async {
        if let Some(handle) = handle {
            let _ = raw.close(handle).await;
        }
        raw.remove(path.as_str()).await
    };
    match tokio::time::timeout(CLEANUP_TIMEOUT, work).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(path, error = %e, "cannot remove an upload's temporary file"),
        Err(_) => tracing::warn!(path, "no answer removing an upload's temporary file"),
    }
}

/// Why writing stopped: the body's fault, or the server's.
enum Failed {
    Source(TransferError),
    Sftp(SftpError),
}

/// Writes all of `body` at offset 0 onwards with up to [`WRITES_IN_FLIGHT`]
/// writes of `write_len` bytes outstanding. Returns the bytes confirmed.
async fn write_body<S, E>(
    sftp: &Sftp,
    handle: &str,
    body: &mut S,
    progress: &mut impl FnMut(u64),
) -> Result<u64, Failed>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: fmt::Display,
{
    let chunk = sftp.write_len as usize;
    let mut in_flight = FuturesUnordered::new();
    let mut offset = 0u64;
    let mut confirmed = 0u64;
    // The next write, filling up to `chunk` bytes: browsers send small
    // pieces, and one request per piece would waste round trips.
    let mut pending: Vec<u8> = Vec::with_capacity(chunk);
    // What is left of the body's latest item; taken only as fast as writes
    // go out, so a huge item does not turn into a huge queue.
    let mut input = Bytes::new();
    let mut body_done = false;
    loop {
        while in_flight.len() < WRITES_IN_FLIGHT {
            let take = (chunk - pending.len()).min(input.len());
            pending.extend_from_slice(&input.split_to(take));
            let full = pending.len() == chunk;
            let last = body_done && !pending.is_empty();
            if !full && !last {
                break;
            }
            let data = std::mem::replace(&mut pending, Vec::with_capacity(chunk));
            let len = data.len() as u64;
            in_flight.push(write_at(&sftp.raw, handle, offset, data));
            offset += len;
        }
        if body_done && in_flight.is_empty() {
            return Ok(confirmed);
        }
        let want_input = !body_done && input.is_empty();
        tokio::select! {
            // Confirmations first: they make room, and a server error
            // should stop the upload before more of the body is read.
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                confirmed += done.map_err(Failed::Sftp)?;
                progress(confirmed);
            }
            item = body.next(), if want_input => match item {
                Some(Ok(bytes)) => input = bytes,
                Some(Err(e)) => {
                    return Err(Failed::Source(TransferError::SourceFailed(e.to_string())));
                }
                None => body_done = true,
            },
            // Not reached: with nothing in flight the loop above has taken
            // all input, so more is wanted or the body is done.
            else => {
                return Err(Failed::Sftp(SftpError::UnexpectedBehavior(
                    "upload stalled".into(),
                )));
            }
        }
    }
}

fn write_at<'a>(
    raw: &'a RawSftpSession,
    handle: &'a str,
    offset: u64,
    data: Vec<u8>,
) -> impl Future<Output = Result<u64, SftpError>> + Send + 'a {
    let len = data.len() as u64;
    async move { raw.write(handle, offset, data).await.map(|_| len) }
}

type ReadReply = (u64, u32, Result<Data, SftpError>);

/// A download in progress: reads ahead up to [`READS_IN_FLIGHT`] requests,
/// delivering in file order.
struct Reader {
    raw: Arc<RawSftpSession>,
    handle: Arc<str>,
    path: String,
    read_len: u32,
    size: u64,
    /// Offset of the next read to send.
    requested: u64,
    in_flight: FuturesOrdered<std::pin::Pin<Box<dyn Future<Output = ReadReply> + Send>>>,
}

impl Reader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, TransferError> {
        // Reads are sent only as the consumer takes chunks, so a slow
        // consumer holds at most READS_IN_FLIGHT replies.
        while self.in_flight.len() < READS_IN_FLIGHT && self.requested < self.size {
            let len = (self.size - self.requested).min(u64::from(self.read_len)) as u32;
            let (raw, handle, offset) = (self.raw.clone(), self.handle.clone(), self.requested);
            self.in_flight.push_back(Box::pin(async move {
                (offset, len, raw.read(&*handle, offset, len).await)
            }));
            self.requested += u64::from(len);
        }
        let Some((offset, len, reply)) = self.in_flight.next().await else {
            return Ok(None);
        };
        let mut data = reply.map_err(|e| self.error(e))?.data;
        // The protocol lets a server answer with less than asked (OpenSSH
        // does not for regular files): fetch the rest before anything
        // later, so bytes stay in order.
        while data.len() < len as usize {
            let got = data.len() as u32;
            let more = self
                .raw
                .read(&*self.handle, offset + u64::from(got), len - got)
                .await
                .map_err(|e| self.error(e))?
                .data;
            if more.is_empty() {
                return Err(self.error(SftpError::UnexpectedBehavior("empty read reply".into())));
            }
            data.extend_from_slice(&more);
        }
        if data.len() > len as usize {
            return Err(TransferError::Protocol(format!(
                "the server sent more data than asked for while reading {}",
                self.path
            )));
        }
        Ok(Some(Bytes::from(data)))
    }

    fn error(&self, e: SftpError) -> TransferError {
        // No connection handle here to ask whether it closed: a broken
        // session is reported as such.
        sftp_error(e, &self.path, Step::Read, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh_sftp::protocol::Status;

    /// The web layer runs transfers on spawned tasks.
    #[allow(dead_code)]
    fn futures_are_send(conn: &Connection, dir: &RemotePath, name: &FileName) {
        fn send<T: Send>(_: T) {}
        let body = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
        send(upload(conn, dir, name, body, |_| {}));
        send(download(conn, dir));
    }

    fn path_err(s: &str) -> String {
        RemotePath::parse(s).unwrap_err().reason().to_string()
    }

    fn name_err(s: &str) -> String {
        FileName::parse(s).unwrap_err().reason().to_string()
    }

    #[test]
    fn remote_paths() {
        for (input, normal) in [
            ("/", "/"),
            ("/srv/app.jar", "/srv/app.jar"),
            ("//srv/./app/", "/srv/app"),
            ("/.", "/"),
            ("/srv/...", "/srv/..."),
            ("/srv/..hidden", "/srv/..hidden"),
            ("/a b/c;d$(e)|f", "/a b/c;d$(e)|f"),
        ] {
            let p = RemotePath::parse(input).unwrap();
            assert_eq!(p.as_str(), normal, "{input}");
            assert_eq!(input.parse::<RemotePath>().unwrap(), p);
        }
        assert_eq!(path_err(""), "the path is empty");
        assert_eq!(
            path_err("srv/app"),
            "the path must be absolute (start with /)"
        );
        assert_eq!(path_err("~/x"), "the path must be absolute (start with /)");
        assert_eq!(
            path_err("/srv/../etc"),
            "the path cannot contain a .. component"
        );
        assert_eq!(path_err("/.."), "the path cannot contain a .. component");
        assert_eq!(
            path_err("/srv/a\nb"),
            "the path cannot contain a line break"
        );
        assert_eq!(
            path_err("/srv/a\rb"),
            "the path cannot contain a line break"
        );
        assert_eq!(
            path_err("/srv/a\0b"),
            "the path cannot contain a NUL character"
        );
        let longest = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert!(RemotePath::parse(&longest).is_ok());
        assert_eq!(
            path_err(&format!("{longest}a")),
            "the path is longer than 4096 bytes"
        );
    }

    #[test]
    fn path_errors_quote_the_input_safely() {
        let e = RemotePath::parse("etc/passwd").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid path \"etc/passwd\": the path must be absolute (start with /)"
        );
        let e = RemotePath::parse("/a\nb").unwrap_err().to_string();
        assert!(e.contains(r#""/a\nb""#) && !e.contains('\n'), "{e}");
        let e = FileName::parse(&"x".repeat(300)).unwrap_err().to_string();
        assert!(e.len() < 200 && e.contains('…'), "{e}");
        let e: TransferError = FileName::parse("..").unwrap_err().into();
        assert_eq!(
            e.to_string(),
            "invalid file name \"..\": a file name cannot be . or .."
        );
    }

    #[test]
    fn file_names() {
        for literal in [
            "app.jar",
            "a;b $(touch pwned)|c.txt",
            "it's \"quoted\" & <redirected> `ticked` *",
            " leading space",
            "-rf",
            "...",
            ".hidden",
            "naïve ünïcode ✓",
        ] {
            assert_eq!(FileName::parse(literal).unwrap().as_str(), literal);
        }
        assert_eq!(name_err(""), "the file name is empty");
        assert_eq!(name_err("."), "a file name cannot be . or ..");
        assert_eq!(name_err(".."), "a file name cannot be . or ..");
        assert_eq!(name_err("../etc/passwd"), "a file name cannot contain /");
        assert_eq!(name_err("a/b"), "a file name cannot contain /");
        assert_eq!(name_err("a\nb"), "a file name cannot contain a line break");
        assert_eq!(
            name_err("a\0b"),
            "a file name cannot contain a NUL character"
        );
        assert!(FileName::parse(&"n".repeat(255)).is_ok());
        assert_eq!(
            name_err(&"n".repeat(256)),
            "the file name is longer than 255 bytes"
        );
        // Bytes, not characters: 128 two-byte characters are 256 bytes.
        assert_eq!(
            name_err(&"é".repeat(128)),
            "the file name is longer than 255 bytes"
        );
    }

    #[test]
    fn join_and_file_name() {
        let name = FileName::parse("x;y").unwrap();
        let root = RemotePath::parse("/").unwrap();
        assert_eq!(root.join(&name).unwrap().as_str(), "/x;y");
        assert_eq!(root.file_name(), "");
        let dir = RemotePath::parse("/srv/app/").unwrap();
        let joined = dir.join(&name).unwrap();
        assert_eq!(joined.as_str(), "/srv/app/x;y");
        assert_eq!(joined.file_name(), "x;y");
        let deep = RemotePath::parse(&format!("/{}", "d".repeat(MAX_PATH_BYTES - 2))).unwrap();
        assert!(deep.join(&name).is_err());
    }

    #[test]
    fn temp_names_are_hidden_unique_and_short_enough() {
        let name = FileName::parse("app.jar").unwrap();
        let (a, b) = (temp_name(&name).unwrap(), temp_name(&name).unwrap());
        assert!(
            a.starts_with(".app.jar.mp-part-") && a.len() == 1 + 7 + 9 + 16,
            "{a}"
        );
        assert_ne!(a, b);
        // A name at the limit, with multi-byte characters across the cut.
        let long = FileName::parse(&format!("{}{}", "a", "é".repeat(127))).unwrap();
        let t = temp_name(&long).unwrap();
        assert!(t.len() <= MAX_NAME_BYTES, "{}", t.len());
        assert!(FileName::parse(&t).is_ok());
    }

    #[test]
    fn posix_rename_request_is_two_sftp_strings() {
        assert_eq!(
            rename_request("/d/.t", "/d/t"),
            b"\0\0\0\x05/d/.t\0\0\0\x04/d/t".to_vec()
        );
    }

    fn status(code: StatusCode, message: &str) -> SftpError {
        SftpError::Status(Status {
            id: 1,
            status_code: code,
            error_message: message.into(),
            language_tag: "en".into(),
        })
    }

    #[test]
    fn status_codes_map_to_errors_for_people() {
        let map = |code, step| sftp_error(status(code, "Failure"), "/srv/f", step, false);
        assert!(matches!(
            map(StatusCode::NoSuchFile, Step::Check),
            TransferError::NotFound { path } if path == "/srv/f"
        ));
        assert!(matches!(
            map(StatusCode::PermissionDenied, Step::Create),
            TransferError::PermissionDenied { .. }
        ));
        let full = map(StatusCode::Failure, Step::Write);
        assert!(matches!(full, TransferError::NoSpace { .. }));
        assert_eq!(
            full.to_string(),
            "no space left on the server (or quota exceeded) while writing /srv/f"
        );
        // Elsewhere the generic failure stays generic, with the server's
        // words.
        let e = map(StatusCode::Failure, Step::Rename);
        assert!(matches!(e, TransferError::Protocol(_)));
        assert!(e.to_string().contains("/srv/f: Failure"), "{e}");
        assert!(matches!(
            map(StatusCode::ConnectionLost, Step::Read),
            TransferError::Ssh(SshError::Disconnected)
        ));
        assert!(
            map(StatusCode::Eof, Step::Read)
                .to_string()
                .contains("became shorter")
        );
        assert!(matches!(
            sftp_error(SftpError::Timeout, "/x", Step::Read, false),
            TransferError::Ssh(SshError::Timeout { .. })
        ));
        let closed = || SftpError::UnexpectedBehavior("session closed".into());
        assert!(matches!(
            sftp_error(closed(), "/x", Step::Write, true),
            TransferError::Ssh(SshError::Disconnected)
        ));
        assert!(matches!(
            sftp_error(closed(), "/x", Step::Write, false),
            TransferError::Protocol(_)
        ));
    }

    #[test]
    fn file_types_compare_the_whole_type_field() {
        let attrs = |mode| FileAttributes {
            permissions: Some(mode),
            ..FileAttributes::empty()
        };
        assert!(check_regular_file(&attrs(0o100644), "/f").is_ok());
        assert!(matches!(
            check_regular_file(&attrs(0o040755), "/d"),
            Err(TransferError::IsADirectory { .. })
        ));
        // Socket and block device: their type codes include the directory
        // bit, which russh-sftp's own is_dir() mistakes for a directory.
        for mode in [0o140755, 0o060644, 0o010644, 0o020644] {
            assert!(matches!(
                check_regular_file(&attrs(mode), "/s"),
                Err(TransferError::NotARegularFile { .. })
            ));
        }
    }
}
