//! An interactive shell on a server: a login shell with a PTY on an SSH
//! connection. Bytes pass through untouched (no decoding), so nothing is
//! lost when a character straddles two reads.
//!
//! Backpressure is the channel's: russh hands received data over a bounded
//! queue, so a reader that stops reading stops the SSH window, and the
//! server's output waits on the server.

use russh::client::Msg;

use crate::ssh::{Connection, SshError};

/// Terminal type announced to the server: what xterm.js emulates.
const TERM: &str = "xterm-256color";

/// An open shell. The session loop splits the channel into its read and
/// write halves (russh does not name those types, so they live only in
/// that loop).
pub struct Terminal {
    pub(crate) channel: russh::Channel<Msg>,
    pub(crate) conn: Connection,
}

/// Opens a login shell with a PTY of `cols` x `rows`.
pub async fn open(conn: Connection, cols: u16, rows: u16) -> Result<Terminal, SshError> {
    let channel = conn
        .handle()
        .channel_open_session()
        .await
        .map_err(|e| conn.lost_or(e))?;
    channel
        .request_pty(true, TERM, u32::from(cols), u32::from(rows), 0, 0, &[])
        .await
        .map_err(|e| conn.lost_or(e))?;
    channel
        .request_shell(true)
        .await
        .map_err(|e| conn.lost_or(e))?;
    Ok(Terminal { channel, conn })
}
