//! The controller's inventory in SQLite: for now join tokens and enrolled
//! agents (later also users, groups, rooms, servers).
//!
//! One connection, WAL mode, schema migrations in code ([`MIGRATIONS`]),
//! applied in order at open. Knows nothing about QUIC or HTTP; other
//! processes (the `controller token`/`agent` commands) open the same file,
//! and the running controller notices their changes through
//! [`Inventory::data_version`].

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use certs::{AgentId, CertifiedAgent, JoinToken, Role, TokenHash, TokenPolicy, TokenRefusal};
use protocol::metrics::HostFacts;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

mod estate;
mod journal;
pub mod model;
mod people;
mod plans;
mod tasks;

pub use estate::{CredentialChange, Group, LinkedAgent, Room, Server, ServerInput};
pub use journal::{AuditEntry, SessionEnd, ShellSessionRecord};
pub use people::{ApiTokenInfo, Principal, SessionRecord, User};
pub use plans::{PlanFile, PlanKind, StoredBundle, StoredPlan};
pub use tasks::{
    GeneratorStatus, NewTask, SecondRow, StoredTask, TaskAction, TaskGenerator, TaskStatus,
    generator_name,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Invalid(#[from] model::Invalid),
    /// The name (or address) is taken; the message says by what.
    #[error("{0}")]
    Conflict(String),
    /// Refused because something still depends on it; the message says what.
    #[error("{0}")]
    InUse(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error("database {path} is from a newer controller (schema {found}, this one knows {known})")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SQLite's extended result code for a UNIQUE violation.
const UNIQUE: i32 = 2067;
/// ... and for a FOREIGN KEY violation.
const FOREIGN_KEY: i32 = 787;

/// The extended result code of a failed statement, if it failed in SQLite.
fn constraint(e: &rusqlite::Error) -> Option<i32> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.extended_code),
        _ => None,
    }
}

/// Each entry moves the schema one version up. Never edit a shipped entry;
/// add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: tokens and agents
    "CREATE TABLE join_tokens (
        hash        TEXT PRIMARY KEY,
        role        TEXT NOT NULL,
        group_name  TEXT,
        room_name   TEXT,
        expires_at  INTEGER NOT NULL,
        uses_left   INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
     );
     CREATE TABLE agents (
        id              TEXT PRIMARY KEY,
        role            TEXT NOT NULL,
        hostname        TEXT NOT NULL,
        os              TEXT NOT NULL,
        arch            TEXT NOT NULL,
        agent_version   TEXT NOT NULL,
        group_name      TEXT,
        room_name       TEXT,
        cert_serial     TEXT NOT NULL,
        cert_not_after  INTEGER NOT NULL,
        enrolled_at     INTEGER NOT NULL,
        last_seen       INTEGER,
        last_address    TEXT,
        online          INTEGER NOT NULL DEFAULT 0,
        revoked_at      INTEGER
     );",
    // 2: metrics state and the application to watch
    "ALTER TABLE agents ADD COLUMN metric_seq INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE agents ADD COLUMN facts TEXT;
     ALTER TABLE agents ADD COLUMN app_identifier TEXT;",
    // 3: alerts and their mail
    "CREATE TABLE alerts (
        id          INTEGER PRIMARY KEY,
        host        TEXT NOT NULL,
        kind        TEXT NOT NULL,
        firing      INTEGER NOT NULL,
        at_ms       INTEGER NOT NULL,
        message     TEXT NOT NULL,
        mail_state  TEXT NOT NULL,
        mail_error  TEXT,
        mail_tries  INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX alerts_pending ON alerts (mail_state) WHERE mail_state = 'pending';",
    // 4: recognising an enrollment retry (same token, same key)
    "ALTER TABLE agents ADD COLUMN enroll_token_hash TEXT;
     ALTER TABLE agents ADD COLUMN enroll_key_fp TEXT;",
    // 5: people and the estate: users, groups, rooms, servers, sessions
    "CREATE TABLE users (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        admin         INTEGER NOT NULL DEFAULT 0,
        disabled      INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL
     );
     CREATE TABLE groups (
        id             INTEGER PRIMARY KEY,
        name           TEXT NOT NULL UNIQUE COLLATE NOCASE,
        app_identifier TEXT NOT NULL DEFAULT '',
        created_at     INTEGER NOT NULL
     );
     CREATE UNIQUE INDEX groups_app_identifier ON groups (app_identifier)
        WHERE app_identifier != '';
     CREATE TABLE rooms (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
        purpose     TEXT NOT NULL CHECK (purpose IN ('application', 'middleware', 'load_testing')),
        created_at  INTEGER NOT NULL
     );
     CREATE TABLE servers (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE COLLATE NOCASE,
        group_id        INTEGER NOT NULL REFERENCES groups (id),
        room_id         INTEGER NOT NULL REFERENCES rooms (id),
        address         TEXT NOT NULL,
        ssh_port        INTEGER NOT NULL,
        ssh_user        TEXT NOT NULL,
        credential_kind TEXT,
        credential      BLOB,
        host_key        TEXT,
        facts           TEXT,
        probed_at       INTEGER,
        created_at      INTEGER NOT NULL,
        UNIQUE (address, ssh_port)
     );
     CREATE INDEX servers_group ON servers (group_id);
     CREATE INDEX servers_room ON servers (room_id);
     CREATE TABLE memberships (
        user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        group_id  INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        PRIMARY KEY (user_id, group_id)
     );
     CREATE TABLE sessions (
        token_hash  TEXT PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL
     );
     CREATE TABLE api_tokens (
        token_hash  TEXT PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        last_used   INTEGER
     );
     ALTER TABLE agents ADD COLUMN server_id INTEGER REFERENCES servers (id) ON DELETE SET NULL;",
    // 6: browser shell sessions and the audit log. Names are copied, not
    // referenced: the record outlives a deleted server or user.
    "CREATE TABLE shell_sessions (
        id             TEXT PRIMARY KEY,
        server_id      INTEGER,
        server_name    TEXT NOT NULL,
        user_name      TEXT NOT NULL,
        started_at     INTEGER NOT NULL,
        ended_at       INTEGER,
        close_reason   TEXT,
        bytes_out      INTEGER NOT NULL DEFAULT 0,
        bytes_in       INTEGER NOT NULL DEFAULT 0,
        duration_secs  REAL,
        recording_key  TEXT
     );
     CREATE INDEX shell_sessions_server ON shell_sessions (server_id, started_at);
     CREATE TABLE audit (
        id           INTEGER PRIMARY KEY,
        at           INTEGER NOT NULL,
        user_name    TEXT NOT NULL,
        action       TEXT NOT NULL,
        server_id    INTEGER,
        server_name  TEXT,
        detail       TEXT NOT NULL DEFAULT ''
     );
     CREATE INDEX audit_at ON audit (at);",
    // 7: load-test plans (one JSON document per plan, see plans.rs) and the
    // data files they use. room_id mirrors the document's room so a room in
    // use cannot be deleted.
    "CREATE TABLE plans (
        id             INTEGER PRIMARY KEY,
        name           TEXT NOT NULL UNIQUE COLLATE NOCASE,
        kind           TEXT NOT NULL CHECK (kind IN ('editor', 'upload')),
        revision       INTEGER NOT NULL,
        doc            TEXT NOT NULL,
        room_id        INTEGER REFERENCES rooms (id),
        bundle_key     TEXT,
        bundle_jmx     TEXT,
        bundle_sha256  TEXT,
        bundle_bytes   INTEGER,
        bundle_files   TEXT NOT NULL DEFAULT '[]',
        created_by     TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        updated_by     TEXT NOT NULL,
        updated_at     INTEGER NOT NULL
     );
     CREATE TABLE plan_files (
        plan_id      INTEGER NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        file_key     TEXT NOT NULL,
        bytes        INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        uploaded_at  INTEGER NOT NULL,
        PRIMARY KEY (plan_id, name)
     );",
    // 8: load-test tasks (see tasks.rs): one row per run, its generators,
    // who did what, and per-second results per generator and label.
    "CREATE TABLE tasks (
        id               INTEGER PRIMARY KEY,
        plan_id          INTEGER REFERENCES plans (id) ON DELETE SET NULL,
        plan_name        TEXT NOT NULL,
        room_id          INTEGER REFERENCES rooms (id) ON DELETE SET NULL,
        settings         TEXT NOT NULL,
        status           TEXT NOT NULL,
        target           REAL NOT NULL,
        threads          INTEGER NOT NULL DEFAULT 0,
        artifact_sha256  TEXT,
        artifact_size    INTEGER,
        next_step        INTEGER NOT NULL DEFAULT 0,
        created_by       TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        started_at       INTEGER,
        ends_at          INTEGER,
        ended_at         INTEGER,
        error            TEXT,
        totals           TEXT
     );
     CREATE INDEX tasks_status ON tasks (status);
     CREATE TABLE task_generators (
        task_id          INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        agent_id         TEXT NOT NULL,
        hostname         TEXT NOT NULL,
        status           TEXT NOT NULL,
        per_min          REAL,
        pid              INTEGER,
        jmeter_version   TEXT,
        message          TEXT,
        joined_at        INTEGER NOT NULL,
        ended_at         INTEGER,
        samples          INTEGER,
        PRIMARY KEY (task_id, agent_id)
     );
     CREATE TABLE task_actions (
        id       INTEGER PRIMARY KEY,
        task_id  INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        at       INTEGER NOT NULL,
        who      TEXT NOT NULL,
        action   TEXT NOT NULL,
        target   REAL
     );
     CREATE INDEX task_actions_task ON task_actions (task_id);
     CREATE TABLE task_seconds (
        task_id   INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        agent_id  TEXT NOT NULL,
        sec       INTEGER NOT NULL,
        label     TEXT NOT NULL,
        count     INTEGER NOT NULL,
        errors    INTEGER NOT NULL,
        bytes     INTEGER NOT NULL,
        hist      BLOB NOT NULL,
        UNIQUE (task_id, agent_id, sec, label)
     );
     CREATE INDEX task_seconds_sec ON task_seconds (task_id, sec);",
    // 9: settings changed at run time through the UI (alert rules, alert
    // recipients), each one JSON document that overrides the file's value.
    "CREATE TABLE settings (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        updated_by TEXT NOT NULL
     );",
];

/// A known (enrolled) agent as stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KnownAgent {
    pub id: AgentId,
    pub role: Role,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub group: Option<String>,
    pub room: Option<String>,
    pub enrolled_at: u64,
    pub last_seen: Option<u64>,
    pub last_address: Option<String>,
    pub revoked_at: Option<u64>,
    pub cert_not_after: u64,
    /// Connected to the controller (as the controller last recorded it).
    pub online: bool,
    /// The inventory server this agent runs on, once linked (by address
    /// or by an admin). Its group and room then come from that server.
    pub server_id: Option<i64>,
}

/// What the agent said about itself, as the inventory records it.
#[derive(Debug, Clone)]
pub struct AgentFacts<'a> {
    pub hostname: &'a str,
    pub os: &'a str,
    pub arch: &'a str,
    pub agent_version: &'a str,
}

pub struct Inventory {
    conn: Mutex<Connection>,
    /// Bumped by every change made through this handle: SQLite's
    /// `data_version` only moves for other connections' commits.
    local_changes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory").finish_non_exhaustive()
    }
}

fn role_of(s: String) -> rusqlite::Result<Role> {
    s.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

/// A token policy from `SELECT role, group_name, room_name, expires_at, uses_left`.
fn policy_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenPolicy> {
    Ok(TokenPolicy {
        role: role_of(r.get(0)?)?,
        group: r.get(1)?,
        room: r.get(2)?,
        expires_at: r.get::<_, i64>(3)?.max(0) as u64,
        uses_left: r.get(4)?,
    })
}

fn id_of(s: String) -> rusqlite::Result<AgentId> {
    s.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

impl Inventory {
    pub fn open(path: &Path) -> Result<Inventory> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let inv = Inventory {
            conn: Mutex::new(conn),
            local_changes: std::sync::atomic::AtomicU64::new(0),
        };
        inv.migrate(path)?;
        Ok(inv)
    }

    fn migrate(&self, path: &Path) -> Result<()> {
        let mut conn = self.conn.lock().expect("inventory lock");
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(Error::TooNew {
                path: path.display().to_string(),
                found: version,
                known,
            });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().expect("inventory lock");
        Ok(f(&mut conn)?)
    }

    /// Changes whenever another connection (another process) commits.
    pub fn data_version(&self) -> Result<i64> {
        self.with(|c| c.query_row("PRAGMA data_version", [], |r| r.get(0)))
    }

    /// Changes whenever anyone changed the inventory: another process
    /// (`data_version`) or this one (the web UI editing groups, servers).
    pub fn change_stamp(&self) -> Result<(i64, u64)> {
        Ok((
            self.data_version()?,
            self.local_changes
                .load(std::sync::atomic::Ordering::Relaxed),
        ))
    }

    /// Like [`Inventory::with`], for a change others should notice.
    fn change<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().expect("inventory lock");
        let r = f(&mut conn);
        self.local_changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r
    }

    pub fn create_token(&self, token: &JoinToken, policy: &TokenPolicy, now: u64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO join_tokens (hash, role, group_name, room_name, expires_at, uses_left, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    token.hash().0,
                    policy.role.as_str(),
                    policy.group,
                    policy.room,
                    policy.expires_at as i64,
                    policy.uses_left,
                    now as i64
                ],
            )
            .map(drop)
        })
    }

    pub fn token_policy(&self, hash: &TokenHash) -> Result<Option<TokenPolicy>> {
        self.with(|c| {
            c.query_row(
                "SELECT role, group_name, room_name, expires_at, uses_left FROM join_tokens WHERE hash = ?1",
                [&hash.0],
                policy_of,
            )
            .optional()
        })
    }

    /// Checks the token for an agent of `role` and, if it admits it, takes
    /// one use, atomically: two agents racing for a single-use token cannot
    /// both win.
    pub fn consume_token(
        &self,
        token: &JoinToken,
        role: Role,
        now: u64,
    ) -> Result<Result<TokenPolicy, TokenRefusal>> {
        let hash = token.hash();
        let mut conn = self.conn.lock().expect("inventory lock");
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let policy = tx
            .query_row(
                "SELECT role, group_name, room_name, expires_at, uses_left FROM join_tokens WHERE hash = ?1",
                [&hash.0],
                policy_of,
            )
            .optional()?;
        let Some(policy) = policy else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        if let Err(refusal) = policy.admit(role, now) {
            return Ok(Err(refusal));
        }
        tx.execute(
            "UPDATE join_tokens SET uses_left = uses_left - 1 WHERE hash = ?1",
            [&hash.0],
        )?;
        tx.commit()?;
        Ok(Ok(policy))
    }

    /// Unused, unexpired tokens: (role, group, room, expires_at, uses_left).
    pub fn live_tokens(&self, now: u64) -> Result<Vec<TokenPolicy>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT role, group_name, room_name, expires_at, uses_left FROM join_tokens
                 WHERE uses_left > 0 AND expires_at > ?1 ORDER BY created_at",
            )?;
            st.query_map([now as i64], policy_of)?.collect()
        })
    }

    pub fn record_enrollment(
        &self,
        cert: &CertifiedAgent,
        facts: &AgentFacts<'_>,
        policy: &TokenPolicy,
        token: &TokenHash,
        key_fp: &str,
        now: u64,
    ) -> Result<()> {
        let not_after = unix_secs(cert.not_after);
        self.with(|c| {
            c.execute(
                "INSERT INTO agents (id, role, hostname, os, arch, agent_version, group_name, room_name,
                                     cert_serial, cert_not_after, enrolled_at, enroll_token_hash, enroll_key_fp)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    cert.agent_id.as_str(),
                    cert.role.as_str(),
                    facts.hostname,
                    facts.os,
                    facts.arch,
                    facts.agent_version,
                    policy.group,
                    policy.room,
                    cert.serial,
                    not_after as i64,
                    now as i64,
                    token.0,
                    key_fp
                ],
            )
            .map(drop)
        })
    }

    /// The agent that enrolled with this token and this key since `since`
    /// (Unix s) and is not revoked: an agent retrying after it lost the
    /// controller's answer.
    /// The agent that enrolled with this token, if any (a deploy waits for
    /// the agent it installed this way).
    pub fn agent_of_token(&self, token: &TokenHash) -> Result<Option<AgentId>> {
        self.with(|c| {
            c.query_row(
                "SELECT id FROM agents WHERE enroll_token_hash = ?1 AND revoked_at IS NULL
                 ORDER BY enrolled_at DESC LIMIT 1",
                [&token.0],
                |r| id_of(r.get(0)?),
            )
            .optional()
        })
    }

    pub fn enrolled_with(
        &self,
        token: &TokenHash,
        key_fp: &str,
        since: u64,
    ) -> Result<Option<(AgentId, Role)>> {
        self.with(|c| {
            c.query_row(
                "SELECT id, role FROM agents WHERE enroll_token_hash = ?1 AND enroll_key_fp = ?2
                   AND revoked_at IS NULL AND enrolled_at >= ?3",
                params![token.0, key_fp, since as i64],
                |r| Ok((id_of(r.get(0)?)?, role_of(r.get(1)?)?)),
            )
            .optional()
        })
    }

    /// A new certificate for an existing agent.
    pub fn record_reissue(&self, cert: &CertifiedAgent) -> Result<()> {
        let not_after = unix_secs(cert.not_after);
        self.with(|c| {
            c.execute(
                "UPDATE agents SET cert_serial = ?2, cert_not_after = ?3 WHERE id = ?1",
                params![cert.agent_id.as_str(), cert.serial, not_after as i64],
            )
            .map(drop)
        })
    }

    /// On each (re)connection: the agent may have been upgraded or renamed.
    pub fn record_connect(
        &self,
        id: &AgentId,
        facts: &AgentFacts<'_>,
        address: &str,
        now: u64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE agents SET hostname = ?2, os = ?3, arch = ?4, agent_version = ?5,
                                   last_seen = ?6, last_address = ?7, online = 1
                 WHERE id = ?1",
                params![
                    id.as_str(),
                    facts.hostname,
                    facts.os,
                    facts.arch,
                    facts.agent_version,
                    now as i64,
                    address
                ],
            )
            .map(drop)
        })?;
        // An agent's address is known now: it may match a server.
        self.auto_link_agents().map(drop)
    }

    pub fn record_disconnect(&self, id: &AgentId, now: u64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE agents SET last_seen = ?2, online = 0 WHERE id = ?1",
                params![id.as_str(), now as i64],
            )
            .map(drop)
        })
    }

    /// At start-up nobody is connected yet, whatever a crash left behind.
    pub fn reset_online(&self) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE agents SET online = 0 WHERE online != 0", [])
                .map(drop)
        })
    }

    pub fn agents(&self) -> Result<Vec<KnownAgent>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT a.id, a.role, a.hostname, a.os, a.arch, a.agent_version,
                        COALESCE(g.name, a.group_name), COALESCE(r.name, a.room_name),
                        a.enrolled_at, a.last_seen, a.last_address, a.revoked_at,
                        a.cert_not_after, a.online, a.server_id
                 FROM agents a
                 LEFT JOIN servers s ON s.id = a.server_id
                 LEFT JOIN groups g ON g.id = s.group_id
                 LEFT JOIN rooms r ON r.id = s.room_id
                 ORDER BY a.enrolled_at, a.id",
            )?;
            st.query_map([], |r| {
                Ok(KnownAgent {
                    id: id_of(r.get(0)?)?,
                    role: role_of(r.get(1)?)?,
                    hostname: r.get(2)?,
                    os: r.get(3)?,
                    arch: r.get(4)?,
                    agent_version: r.get(5)?,
                    group: r.get(6)?,
                    room: r.get(7)?,
                    enrolled_at: r.get::<_, i64>(8)?.max(0) as u64,
                    last_seen: r.get::<_, Option<i64>>(9)?.map(|v| v.max(0) as u64),
                    last_address: r.get(10)?,
                    revoked_at: r.get::<_, Option<i64>>(11)?.map(|v| v.max(0) as u64),
                    cert_not_after: r.get::<_, i64>(12)?.max(0) as u64,
                    online: r.get::<_, i64>(13)? != 0,
                    server_id: r.get(14)?,
                })
            })?
            .collect()
        })
    }

    /// Marks an agent revoked; false when no such agent exists.
    pub fn revoke(&self, id: &AgentId, now: u64) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                params![id.as_str(), now as i64],
            )?;
            Ok(n > 0)
        })
    }

    pub fn revoked_ids(&self) -> Result<HashSet<AgentId>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id FROM agents WHERE revoked_at IS NOT NULL")?;
            st.query_map([], |r| id_of(r.get(0)?))?.collect()
        })
    }
}

impl Inventory {
    /// Per agent: the highest metric batch stored and the last host facts.
    pub fn metric_state(&self) -> Result<Vec<(AgentId, u64, Option<HostFacts>)>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT id, metric_seq, facts FROM agents")?;
            st.query_map([], |r| {
                let facts: Option<String> = r.get(2)?;
                Ok((
                    id_of(r.get(0)?)?,
                    r.get::<_, i64>(1)?.max(0) as u64,
                    facts.and_then(|f| serde_json::from_str(&f).ok()),
                ))
            })?
            .collect()
        })
    }

    pub fn save_metric_seqs(&self, seqs: &[(AgentId, u64)]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "UPDATE agents SET metric_seq = MAX(metric_seq, ?2) WHERE id = ?1",
                )?;
                for (id, seq) in seqs {
                    st.execute(params![id.as_str(), *seq as i64])?;
                }
            }
            tx.commit()
        })
    }

    pub fn set_facts(&self, id: &AgentId, facts: &HostFacts) -> Result<()> {
        let json = serde_json::to_string(facts).expect("facts serialize");
        self.with(|c| {
            c.execute(
                "UPDATE agents SET facts = ?2 WHERE id = ?1",
                params![id.as_str(), json],
            )
            .map(drop)
        })?;
        self.auto_link_agents().map(drop)
    }

    /// Sets (or clears) an agent-monitor's own application identifier,
    /// which overrides its group's; false when the agent is unknown.
    pub fn set_app_identifier(&self, id: &AgentId, identifier: Option<&str>) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE agents SET app_identifier = ?2 WHERE id = ?1",
                params![id.as_str(), identifier],
            )?;
            Ok(n > 0)
        })
    }

    pub fn app_identifier(&self, id: &AgentId) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT COALESCE(a.app_identifier, NULLIF(g.app_identifier, ''))
                 FROM agents a
                 LEFT JOIN servers s ON s.id = a.server_id
                 LEFT JOIN groups g ON g.id = s.group_id
                 WHERE a.id = ?1",
                [id.as_str()],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
        })
    }
}

/// An alert as stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoredAlert {
    pub id: i64,
    pub host: String,
    pub kind: String,
    /// True when the episode started, false when it cleared.
    pub firing: bool,
    pub at_ms: i64,
    pub message: String,
    /// `pending` (not sent yet, retried), `sent`, `failed` (gave up),
    /// `off` (no SMTP configured), `stale` (an old event replayed late).
    pub mail_state: String,
    pub mail_error: Option<String>,
    pub mail_tries: u32,
}

impl Inventory {
    pub fn insert_alert(
        &self,
        host: &str,
        kind: &str,
        firing: bool,
        at_ms: i64,
        message: &str,
        mail_state: &str,
    ) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO alerts (host, kind, firing, at_ms, message, mail_state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![host, kind, firing, at_ms, message, mail_state],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn set_alert_mail(&self, id: i64, state: &str, error: Option<&str>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE alerts SET mail_state = ?2, mail_error = ?3, mail_tries = mail_tries + 1 WHERE id = ?1",
                params![id, state, error],
            )
            .map(drop)
        })
    }

    /// Newest first.
    pub fn alerts(&self, limit: usize, only_pending: bool) -> Result<Vec<StoredAlert>> {
        self.with(|c| {
            let sql = if only_pending {
                "SELECT id, host, kind, firing, at_ms, message, mail_state, mail_error, mail_tries FROM alerts
                 WHERE mail_state = 'pending' ORDER BY id LIMIT ?1"
            } else {
                "SELECT id, host, kind, firing, at_ms, message, mail_state, mail_error, mail_tries FROM alerts
                 ORDER BY id DESC LIMIT ?1"
            };
            let mut st = c.prepare(sql)?;
            st.query_map([limit as i64], |r| {
                Ok(StoredAlert {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    kind: r.get(2)?,
                    firing: r.get(3)?,
                    at_ms: r.get(4)?,
                    message: r.get(5)?,
                    mail_state: r.get(6)?,
                    mail_error: r.get(7)?,
                    mail_tries: r.get(8)?,
                })
            })?
            .collect()
        })
    }
}

impl Inventory {
    /// A setting stored by [`Inventory::set_setting`], as its JSON text.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    /// Stores a setting (JSON text) over any previous value.
    pub fn set_setting(&self, key: &str, value: &str, by: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET value = ?2, updated_at = ?3, updated_by = ?4",
                params![key, value, unix_now() as i64, by],
            )
            .map(drop)
        })
    }
}

fn unix_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(uses: u32) -> TokenPolicy {
        TokenPolicy {
            role: Role::Monitor,
            group: Some("shop".into()),
            room: None,
            expires_at: 1_000,
            uses_left: uses,
        }
    }

    #[test]
    fn migrations_apply_once_and_refuse_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.db");
        Inventory::open(&path).unwrap();
        Inventory::open(&path).unwrap();
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        drop(c);
        assert!(matches!(Inventory::open(&path), Err(Error::TooNew { .. })));
    }

    #[test]
    fn tokens_are_stored_hashed_and_used_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.db");
        let inv = Inventory::open(&path).unwrap();
        let t = JoinToken::generate();
        inv.create_token(&t, &policy(2), 1).unwrap();
        assert_eq!(
            inv.consume_token(&t, Role::Monitor, 10).unwrap(),
            Ok(policy(2))
        );
        assert_eq!(
            inv.consume_token(&t, Role::Jmeter, 10)
                .unwrap()
                .unwrap_err(),
            TokenRefusal::WrongRole {
                token: Role::Monitor,
                agent: Role::Jmeter
            }
        );
        assert!(inv.consume_token(&t, Role::Monitor, 10).unwrap().is_ok());
        assert_eq!(
            inv.consume_token(&t, Role::Monitor, 10).unwrap(),
            Err(TokenRefusal::UsedUp)
        );
        assert_eq!(
            inv.consume_token(&JoinToken::generate(), Role::Monitor, 10)
                .unwrap(),
            Err(TokenRefusal::Unknown)
        );
        let t2 = JoinToken::generate();
        inv.create_token(&t2, &policy(1), 1).unwrap();
        assert_eq!(
            inv.consume_token(&t2, Role::Monitor, 1_000).unwrap(),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(inv.live_tokens(10).unwrap().len(), 1);
        drop(inv);
        let raw = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            let hay = String::from_utf8_lossy(&bytes);
            assert!(!hay.contains(t.expose_secret()), "token stored in clear");
        }
    }

    #[test]
    fn agents_are_recorded_revoked_and_seen_by_other_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.db");
        let inv = Inventory::open(&path).unwrap();
        let ca = certs::CertificateAuthority::load_or_create(dir.path()).unwrap();
        let (_, csr) = certs::AgentIdentity::new_key_and_csr().unwrap();
        let id = AgentId::generate();
        let cert = ca
            .sign_agent(&csr, &id, Role::Monitor, Duration::from_secs(60))
            .unwrap();
        let facts = AgentFacts {
            hostname: "web1",
            os: "Debian",
            arch: "x86_64",
            agent_version: "0.1",
        };
        inv.record_enrollment(
            &cert,
            &facts,
            &policy(1),
            &JoinToken::generate().hash(),
            "fp",
            5,
        )
        .unwrap();
        inv.record_connect(&id, &facts, "127.0.0.1:5000", 6)
            .unwrap();
        let agents = inv.agents().unwrap();
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].group.as_deref(), Some("shop"));
        assert_eq!(agents[0].last_seen, Some(6));
        assert!(agents[0].online);
        inv.reset_online().unwrap();
        assert!(!inv.agents().unwrap()[0].online);

        let v0 = inv.data_version().unwrap();
        let other = Inventory::open(&path).unwrap();
        assert!(other.revoke(&id, 7).unwrap());
        assert!(!other.revoke(&AgentId::generate(), 7).unwrap());
        assert_ne!(
            inv.data_version().unwrap(),
            v0,
            "another process's change went unnoticed"
        );
        assert!(inv.revoked_ids().unwrap().contains(&id));
    }
}
