//! What happened: browser shell sessions (who opened which server when, for
//! how long, where the recording is) and the audit log (shell opened,
//! uploads and downloads with path and size, host keys accepted).
//! Append-only from the controller's point of view.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Inventory, Result, unix_now};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShellSessionRecord {
    pub id: String,
    pub server_id: Option<i64>,
    pub server_name: String,
    pub user_name: String,
    pub started_at: u64,
    pub ended_at: Option<u64>,
    pub close_reason: Option<String>,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub duration_secs: Option<f64>,
    /// Key in the file store; none while running or when not recorded.
    pub recording_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: u64,
    pub user_name: String,
    pub action: String,
    pub server_id: Option<i64>,
    pub server_name: Option<String>,
    pub detail: String,
}

fn session_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<ShellSessionRecord> {
    Ok(ShellSessionRecord {
        id: r.get(0)?,
        server_id: r.get(1)?,
        server_name: r.get(2)?,
        user_name: r.get(3)?,
        started_at: r.get::<_, i64>(4)?.max(0) as u64,
        ended_at: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
        close_reason: r.get(6)?,
        bytes_out: r.get::<_, i64>(7)?.max(0) as u64,
        bytes_in: r.get::<_, i64>(8)?.max(0) as u64,
        duration_secs: r.get(9)?,
        recording_key: r.get(10)?,
    })
}

const SESSION_COLS: &str =
    "id, server_id, server_name, user_name, started_at, ended_at, close_reason,
     bytes_out, bytes_in, duration_secs, recording_key";

/// How a session ended, for [`Inventory::end_shell_session`].
#[derive(Debug, Clone)]
pub struct SessionEnd<'a> {
    pub reason: &'a str,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub duration_secs: f64,
    pub recording_key: Option<&'a str>,
}

impl Inventory {
    pub fn audit(
        &self,
        user: &str,
        action: &str,
        server: Option<(i64, &str)>,
        detail: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit (at, user_name, action, server_id, server_name, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    unix_now() as i64,
                    user,
                    action,
                    server.map(|s| s.0),
                    server.map(|s| s.1),
                    detail
                ],
            )
            .map(drop)
        })
    }

    /// The newest entries first; only one server's when given.
    pub fn audit_log(&self, server: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, at, user_name, action, server_id, server_name, detail FROM audit
                 WHERE ?1 IS NULL OR server_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            st.query_map(params![server, limit as i64], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get::<_, i64>(1)?.max(0) as u64,
                    user_name: r.get(2)?,
                    action: r.get(3)?,
                    server_id: r.get(4)?,
                    server_name: r.get(5)?,
                    detail: r.get(6)?,
                })
            })?
            .collect()
        })
    }

    pub fn start_shell_session(&self, id: &str, server: (i64, &str), user: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO shell_sessions (id, server_id, server_name, user_name, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, server.0, server.1, user, unix_now() as i64],
            )
            .map(drop)
        })
    }

    pub fn end_shell_session(&self, id: &str, end: &SessionEnd<'_>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE shell_sessions SET ended_at = ?2, close_reason = ?3, bytes_out = ?4,
                        bytes_in = ?5, duration_secs = ?6, recording_key = ?7
                 WHERE id = ?1",
                params![
                    id,
                    unix_now() as i64,
                    end.reason,
                    end.bytes_out as i64,
                    end.bytes_in as i64,
                    end.duration_secs,
                    end.recording_key
                ],
            )
            .map(drop)
        })
    }

    /// Sessions of a server, newest first.
    pub fn shell_sessions(&self, server: i64, limit: usize) -> Result<Vec<ShellSessionRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {SESSION_COLS} FROM shell_sessions WHERE server_id = ?1
                 ORDER BY started_at DESC, id LIMIT ?2"
            ))?;
            st.query_map(params![server, limit as i64], session_of)?
                .collect()
        })
    }

    pub fn shell_session(&self, id: &str) -> Result<Option<ShellSessionRecord>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {SESSION_COLS} FROM shell_sessions WHERE id = ?1"),
                [id],
                session_of,
            )
            .optional()
        })
    }

    pub fn set_shell_recording(&self, id: &str, key: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE shell_sessions SET recording_key = ?2 WHERE id = ?1",
                params![id, key],
            )
            .map(drop)
        })
    }

    /// Sessions a crash left open: marked ended now.
    pub fn close_dangling_shell_sessions(&self) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "UPDATE shell_sessions SET ended_at = ?1, close_reason = 'controller_restart'
                 WHERE ended_at IS NULL",
                [unix_now() as i64],
            )
        })
    }
}
