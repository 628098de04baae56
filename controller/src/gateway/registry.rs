//! The live registry: which agents are connected right now.
//!
//! In memory only; what must survive a restart goes to the inventory. A
//! newer connection of the same agent replaces (and closes) the older one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use certs::{AgentId, Role};
use protocol::{ControllerMsg, Hello};
use quinn::{Connection, VarInt};
use serde::Serialize;
use tokio::sync::mpsc;

/// What the API shows of a connected agent.
#[derive(Debug, Clone, Serialize)]
pub struct LiveAgent {
    pub id: AgentId,
    pub role: Role,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
    pub address: SocketAddr,
    /// Unix milliseconds.
    pub connected_since: u64,
    /// Unix milliseconds.
    pub last_heartbeat: u64,
}

struct Entry {
    view: LiveAgent,
    session: u64,
    conn: Connection,
    tx: mpsc::Sender<ControllerMsg>,
}

#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<AgentId, Entry>>,
    next_session: AtomicU64,
    /// Why the last enrollments with a known token were refused, by token
    /// hash: a deploy waiting for its agent says "token expired" at once
    /// instead of timing out.
    refusals: Mutex<HashMap<String, String>>,
}

/// Refusals remembered; older ones are dropped (the hash map is cleared
/// past this, which only costs a waiting deploy its early answer).
const MAX_REFUSALS: usize = 1024;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("connected", &self.len())
            .finish()
    }
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Registry {
    /// Remembers why an enrollment with the token of this hash was refused.
    pub fn note_refusal(&self, token_hash: &str, reason: &str) {
        let mut r = self.refusals.lock().expect("refusals");
        if r.len() >= MAX_REFUSALS {
            r.clear();
        }
        r.insert(token_hash.to_string(), reason.to_string());
    }

    /// Why the last enrollment with this token was refused, if it was.
    pub fn refusal(&self, token_hash: &str) -> Option<String> {
        self.refusals
            .lock()
            .expect("refusals")
            .get(token_hash)
            .cloned()
    }

    /// Registers a connection; returns its session number, used to
    /// unregister exactly this connection later.
    pub fn insert(
        &self,
        id: &AgentId,
        hello: &Hello,
        address: SocketAddr,
        conn: Connection,
        tx: mpsc::Sender<ControllerMsg>,
    ) -> u64 {
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let now = unix_ms(SystemTime::now());
        let entry = Entry {
            view: LiveAgent {
                id: id.clone(),
                role: hello.role,
                hostname: hello.hostname.clone(),
                os: hello.os.clone(),
                arch: hello.arch.clone(),
                agent_version: hello.agent_version.clone(),
                address,
                connected_since: now,
                last_heartbeat: now,
            },
            session,
            conn,
            tx,
        };
        let old = self
            .entries
            .lock()
            .expect("registry lock")
            .insert(id.clone(), entry);
        if let Some(old) = old {
            old.conn.close(
                VarInt::from_u32(protocol::close::REPLACED),
                b"replaced by a newer connection of the same agent",
            );
        }
        session
    }

    /// Removes the entry if it still belongs to `session`.
    pub fn remove(&self, id: &AgentId, session: u64) -> bool {
        let mut map = self.entries.lock().expect("registry lock");
        if map.get(id).is_some_and(|e| e.session == session) {
            map.remove(id);
            true
        } else {
            false
        }
    }

    pub fn heartbeat(&self, id: &AgentId) {
        if let Some(e) = self.entries.lock().expect("registry lock").get_mut(id) {
            e.view.last_heartbeat = unix_ms(SystemTime::now());
        }
    }

    /// Closes an agent's connection (revocation, shutdown).
    pub fn close(&self, id: &AgentId, code: u32, reason: &str) -> bool {
        let map = self.entries.lock().expect("registry lock");
        match map.get(id) {
            Some(e) => {
                e.conn.close(VarInt::from_u32(code), reason.as_bytes());
                true
            }
            None => false,
        }
    }

    /// Queues a message on an agent's control stream.
    pub fn send(&self, id: &AgentId, msg: ControllerMsg) -> bool {
        let map = self.entries.lock().expect("registry lock");
        map.get(id).is_some_and(|e| e.tx.try_send(msg).is_ok())
    }

    pub fn get(&self, id: &AgentId) -> Option<LiveAgent> {
        let map = self.entries.lock().expect("registry lock");
        map.get(id).map(|e| e.view.clone())
    }

    /// Bytes received on the agent's current connection.
    pub fn rx_bytes(&self, id: &AgentId) -> Option<u64> {
        let map = self.entries.lock().expect("registry lock");
        map.get(id).map(|e| e.conn.stats().udp_rx.bytes)
    }

    pub fn snapshot(&self) -> Vec<LiveAgent> {
        let map = self.entries.lock().expect("registry lock");
        let mut v: Vec<LiveAgent> = map.values().map(|e| e.view.clone()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("registry lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn close_all(&self, code: u32, reason: &str) {
        for e in self.entries.lock().expect("registry lock").values() {
            e.conn.close(VarInt::from_u32(code), reason.as_bytes());
        }
    }
}
