//! The estate: project groups, server rooms, servers, and which enrolled
//! agent runs on which server.
//!
//! Stores what it is given and refuses what would break the inventory
//! (duplicates, dangling references, deleting what is in use). It does not
//! decide who may change what: that is [`crate::auth::policy`]. A server's
//! credential goes in and out only sealed by the [`Vault`].

use std::collections::HashMap;

use protocol::metrics::HostFacts;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::model::{AppIdentifier, Credential, Name, RoomPurpose, ServerAddr};
use super::{Error, FOREIGN_KEY, Inventory, Result, UNIQUE, constraint, unix_now};
use crate::vault::Vault;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Group {
    pub id: i64,
    pub name: String,
    /// Finds the group's application process on its servers; empty if none.
    pub app_identifier: String,
    pub servers: u32,
    pub members: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Room {
    pub id: i64,
    pub name: String,
    pub purpose: RoomPurpose,
    pub servers: u32,
}

/// An agent running on a server.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LinkedAgent {
    pub id: String,
    pub role: String,
    pub online: bool,
    pub revoked: bool,
}

/// A server as anyone may see it: never its credential, only its kind.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Server {
    pub id: i64,
    pub name: String,
    pub group_id: i64,
    pub group: String,
    pub room_id: i64,
    pub room: String,
    pub address: String,
    pub ssh_port: u16,
    pub ssh_user: String,
    /// `password`, `private_key`, or none stored.
    pub credential_kind: Option<String>,
    /// The SSH host key trusted on first use (OpenSSH public key line).
    pub host_key: Option<String>,
    /// From the monitor agent when one runs there, else from the last SSH
    /// probe.
    pub facts: Option<HostFacts>,
    /// `agent` or `probe`.
    pub facts_source: Option<&'static str>,
    /// Unix seconds of the last SSH probe.
    pub probed_at: Option<u64>,
    pub agents: Vec<LinkedAgent>,
    pub created_at: u64,
}

/// What an admin may change about a server's credential.
#[derive(Debug, Clone)]
pub enum CredentialChange {
    Keep,
    Clear,
    Set(Credential),
}

/// A validated server form.
#[derive(Debug, Clone)]
pub struct ServerInput {
    pub name: Name,
    pub group_id: i64,
    pub room_id: i64,
    pub address: ServerAddr,
    pub ssh_port: u16,
    pub ssh_user: Name,
    pub credential: CredentialChange,
}

/// Maps a UNIQUE violation to a conflict with the given message.
fn unique_as(e: rusqlite::Error, msg: impl FnOnce() -> String) -> Error {
    if constraint(&e) == Some(UNIQUE) {
        Error::Conflict(msg())
    } else {
        Error::Sql(e)
    }
}

const SERVER_SELECT: &str = "SELECT s.id, s.name, s.group_id, g.name, s.room_id, r.name, s.address,
        s.ssh_port, s.ssh_user, s.credential_kind, s.host_key, s.facts, s.probed_at, s.created_at
     FROM servers s JOIN groups g ON g.id = s.group_id JOIN rooms r ON r.id = s.room_id";

fn server_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Server> {
    let facts: Option<String> = r.get(11)?;
    let facts: Option<HostFacts> = facts.and_then(|f| serde_json::from_str(&f).ok());
    Ok(Server {
        id: r.get(0)?,
        name: r.get(1)?,
        group_id: r.get(2)?,
        group: r.get(3)?,
        room_id: r.get(4)?,
        room: r.get(5)?,
        address: r.get(6)?,
        ssh_port: r.get::<_, i64>(7)?.clamp(0, 65535) as u16,
        ssh_user: r.get(8)?,
        credential_kind: r.get(9)?,
        host_key: r.get(10)?,
        facts_source: facts.as_ref().map(|_| "probe"),
        facts,
        probed_at: r.get::<_, Option<i64>>(12)?.map(|v| v.max(0) as u64),
        agents: Vec::new(),
        created_at: r.get::<_, i64>(13)?.max(0) as u64,
    })
}

/// Adds linked agents to servers, and prefers a monitor agent's facts over
/// a probe's (the agent's are current).
fn attach_agents(c: &Connection, servers: &mut [Server]) -> rusqlite::Result<()> {
    let mut st = c.prepare(
        "SELECT server_id, id, role, online, revoked_at IS NOT NULL, facts
         FROM agents WHERE server_id IS NOT NULL ORDER BY enrolled_at",
    )?;
    let mut by_server: HashMap<i64, Vec<(LinkedAgent, Option<String>)>> = HashMap::new();
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            LinkedAgent {
                id: r.get(1)?,
                role: r.get(2)?,
                online: r.get::<_, i64>(3)? != 0,
                revoked: r.get(4)?,
            },
            r.get::<_, Option<String>>(5)?,
        ))
    })? {
        let (sid, agent, facts) = row?;
        by_server.entry(sid).or_default().push((agent, facts));
    }
    for s in servers {
        for (agent, facts) in by_server.remove(&s.id).unwrap_or_default() {
            if agent.role == "monitor"
                && !agent.revoked
                && let Some(f) = facts.and_then(|f| serde_json::from_str(&f).ok())
            {
                s.facts = Some(f);
                s.facts_source = Some("agent");
            }
            s.agents.push(agent);
        }
    }
    Ok(())
}

impl Inventory {
    // ---- groups -------------------------------------------------------

    pub fn groups(&self) -> Result<Vec<Group>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT g.id, g.name, g.app_identifier,
                        (SELECT COUNT(*) FROM servers s WHERE s.group_id = g.id),
                        (SELECT COUNT(*) FROM memberships m WHERE m.group_id = g.id)
                 FROM groups g ORDER BY g.name COLLATE NOCASE",
            )?;
            st.query_map([], |r| {
                Ok(Group {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    app_identifier: r.get(2)?,
                    servers: r.get(3)?,
                    members: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    pub fn group(&self, id: i64) -> Result<Group> {
        self.groups()?
            .into_iter()
            .find(|g| g.id == id)
            .ok_or(Error::NotFound("group"))
    }

    pub fn create_group(&self, name: &Name, app: &AppIdentifier) -> Result<i64> {
        self.change(|c| {
            c.execute(
                "INSERT INTO groups (name, app_identifier, created_at) VALUES (?1, ?2, ?3)",
                params![name.as_str(), app.as_str(), unix_now() as i64],
            )
            .map_err(|e| group_conflict(c, e, name, app))?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Renames a group or changes its application identifier. Its servers'
    /// monitor agents pick up a new identifier without a restart.
    pub fn update_group(&self, id: i64, name: &Name, app: &AppIdentifier) -> Result<()> {
        self.change(|c| {
            let n = c
                .execute(
                    "UPDATE groups SET name = ?2, app_identifier = ?3 WHERE id = ?1",
                    params![id, name.as_str(), app.as_str()],
                )
                .map_err(|e| group_conflict(c, e, name, app))?;
            if n == 0 {
                return Err(Error::NotFound("group"));
            }
            Ok(())
        })
    }

    /// Deletes a group with no servers (its memberships go with it).
    pub fn delete_group(&self, id: i64) -> Result<()> {
        self.change(|c| delete_without_servers(c, Holder::Group, id))
    }

    // ---- rooms --------------------------------------------------------

    pub fn rooms(&self) -> Result<Vec<Room>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT r.id, r.name, r.purpose,
                        (SELECT COUNT(*) FROM servers s WHERE s.room_id = r.id)
                 FROM rooms r ORDER BY r.name COLLATE NOCASE",
            )?;
            st.query_map([], |r| {
                let purpose: String = r.get(2)?;
                Ok(Room {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    purpose: purpose.parse().map_err(|e: super::model::Invalid| {
                        rusqlite::Error::FromSqlConversionFailure(
                            2,
                            rusqlite::types::Type::Text,
                            e.to_string().into(),
                        )
                    })?,
                    servers: r.get(3)?,
                })
            })?
            .collect()
        })
    }

    pub fn room(&self, id: i64) -> Result<Room> {
        self.rooms()?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or(Error::NotFound("room"))
    }

    pub fn create_room(&self, name: &Name, purpose: RoomPurpose) -> Result<i64> {
        self.change(|c| {
            c.execute(
                "INSERT INTO rooms (name, purpose, created_at) VALUES (?1, ?2, ?3)",
                params![name.as_str(), purpose.as_str(), unix_now() as i64],
            )
            .map_err(|e| {
                unique_as(e, || {
                    format!("a room named {:?} already exists", name.as_str())
                })
            })?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn update_room(&self, id: i64, name: &Name, purpose: RoomPurpose) -> Result<()> {
        self.change(|c| {
            let n = c
                .execute(
                    "UPDATE rooms SET name = ?2, purpose = ?3 WHERE id = ?1",
                    params![id, name.as_str(), purpose.as_str()],
                )
                .map_err(|e| {
                    unique_as(e, || {
                        format!("a room named {:?} already exists", name.as_str())
                    })
                })?;
            if n == 0 {
                return Err(Error::NotFound("room"));
            }
            Ok(())
        })
    }

    pub fn delete_room(&self, id: i64) -> Result<()> {
        self.change(|c| delete_without_servers(c, Holder::Room, id))
    }

    // ---- servers ------------------------------------------------------

    /// All servers, or only those of the given groups.
    pub fn servers(&self, only_groups: Option<&[i64]>) -> Result<Vec<Server>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "{SERVER_SELECT} ORDER BY g.name COLLATE NOCASE, s.name COLLATE NOCASE"
            ))?;
            let mut all: Vec<Server> = st
                .query_map([], server_of)?
                .collect::<rusqlite::Result<_>>()?;
            if let Some(groups) = only_groups {
                all.retain(|s| groups.contains(&s.group_id));
            }
            attach_agents(c, &mut all)?;
            Ok(all)
        })
    }

    pub fn server(&self, id: i64) -> Result<Server> {
        self.with(|c| {
            let s = c
                .query_row(&format!("{SERVER_SELECT} WHERE s.id = ?1"), [id], server_of)
                .optional()?;
            let Some(s) = s else {
                return Ok(None);
            };
            let mut one = [s];
            attach_agents(c, &mut one)?;
            let [s] = one;
            Ok(Some(s))
        })?
        .ok_or(Error::NotFound("server"))
    }

    pub fn create_server(&self, input: &ServerInput, vault: &Vault) -> Result<i64> {
        let sealed = match &input.credential {
            CredentialChange::Set(c) => Some((c.kind(), vault.seal(&c.to_bytes()))),
            CredentialChange::Keep | CredentialChange::Clear => None,
        };
        let id = self.change(|c| {
            c.execute(
                "INSERT INTO servers (name, group_id, room_id, address, ssh_port, ssh_user,
                                      credential_kind, credential, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    input.name.as_str(),
                    input.group_id,
                    input.room_id,
                    input.address.as_str(),
                    input.ssh_port,
                    input.ssh_user.as_str(),
                    sealed.as_ref().map(|s| s.0),
                    sealed.as_ref().map(|s| s.1.as_slice()),
                    unix_now() as i64,
                ],
            )
            .map_err(|e| server_conflict(e, input))?;
            Ok(c.last_insert_rowid())
        })?;
        self.auto_link_agents()?;
        Ok(id)
    }

    /// Updates a server. A changed address forgets the trusted host key
    /// (it belongs to the old machine) and the probed facts.
    pub fn update_server(&self, id: i64, input: &ServerInput, vault: &Vault) -> Result<()> {
        self.change(|c| {
            let tx = c.transaction()?;
            let old: Option<(String, i64)> = tx
                .query_row(
                    "SELECT address, ssh_port FROM servers WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((old_addr, old_port)) = old else {
                return Err(Error::NotFound("server"));
            };
            tx.execute(
                "UPDATE servers SET name = ?2, group_id = ?3, room_id = ?4, address = ?5,
                        ssh_port = ?6, ssh_user = ?7 WHERE id = ?1",
                params![
                    id,
                    input.name.as_str(),
                    input.group_id,
                    input.room_id,
                    input.address.as_str(),
                    input.ssh_port,
                    input.ssh_user.as_str(),
                ],
            )
            .map_err(|e| server_conflict(e, input))?;
            if old_addr != input.address.as_str() || old_port != i64::from(input.ssh_port) {
                tx.execute(
                    "UPDATE servers SET host_key = NULL, facts = NULL, probed_at = NULL
                     WHERE id = ?1",
                    [id],
                )?;
            }
            match &input.credential {
                CredentialChange::Keep => {}
                CredentialChange::Clear => {
                    tx.execute(
                        "UPDATE servers SET credential_kind = NULL, credential = NULL WHERE id = ?1",
                        [id],
                    )?;
                }
                CredentialChange::Set(cred) => {
                    tx.execute(
                        "UPDATE servers SET credential_kind = ?2, credential = ?3 WHERE id = ?1",
                        params![id, cred.kind(), vault.seal(&cred.to_bytes())],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })?;
        self.auto_link_agents().map(drop)
    }

    /// Deletes a server; its agents stay enrolled but unlinked.
    pub fn delete_server(&self, id: i64) -> Result<()> {
        self.change(|c| {
            let n = c.execute("DELETE FROM servers WHERE id = ?1", [id])?;
            if n == 0 {
                return Err(Error::NotFound("server"));
            }
            Ok(())
        })
    }

    /// The stored credential, unsealed: only for the controller's own SSH
    /// connections, never for a response.
    pub fn server_credential(&self, id: i64, vault: &Vault) -> Result<Option<Credential>> {
        let sealed: Option<Vec<u8>> = self
            .with(|c| {
                c.query_row("SELECT credential FROM servers WHERE id = ?1", [id], |r| {
                    r.get::<_, Option<Vec<u8>>>(0)
                })
                .optional()
            })?
            .ok_or(Error::NotFound("server"))?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plain = vault.open(&sealed)?;
        Credential::from_bytes(&plain)
            .map(Some)
            .ok_or(Error::Vault(crate::vault::VaultError::Unseal))
    }

    /// Records what an SSH probe found, and the host key it trusted.
    pub fn record_probe(&self, id: i64, facts: &HostFacts, host_key: &str) -> Result<()> {
        let json = serde_json::to_string(facts).expect("facts serialize");
        self.change(|c| {
            let n = c.execute(
                "UPDATE servers SET facts = ?2, probed_at = ?3, host_key = COALESCE(host_key, ?4)
                 WHERE id = ?1",
                params![id, json, unix_now() as i64, host_key],
            )?;
            if n == 0 {
                return Err(Error::NotFound("server"));
            }
            Ok(())
        })
    }

    /// Replaces the trusted host key (an admin accepted a new one) or
    /// forgets it (`None`: trust the next one presented).
    pub fn set_host_key(&self, id: i64, host_key: Option<&str>) -> Result<()> {
        self.change(|c| {
            let n = c.execute(
                "UPDATE servers SET host_key = ?2 WHERE id = ?1",
                params![id, host_key],
            )?;
            if n == 0 {
                return Err(Error::NotFound("server"));
            }
            Ok(())
        })
    }

    /// Links an agent to a server (or unlinks it with `None`).
    pub fn link_agent(&self, agent: &certs::AgentId, server: Option<i64>) -> Result<()> {
        self.change(|c| {
            let n = c
                .execute(
                    "UPDATE agents SET server_id = ?2 WHERE id = ?1",
                    params![agent.as_str(), server],
                )
                .map_err(|e| {
                    if constraint(&e) == Some(FOREIGN_KEY) {
                        Error::NotFound("server")
                    } else {
                        Error::Sql(e)
                    }
                })?;
            if n == 0 {
                return Err(Error::NotFound("agent"));
            }
            Ok(())
        })
    }

    /// Links every unlinked, unrevoked agent to the one server whose address
    /// is the agent's connection address, one of its reported addresses, or
    /// its host name. Ambiguous matches stay unlinked (an admin decides).
    /// Returns how many were linked.
    pub fn auto_link_agents(&self) -> Result<usize> {
        self.change(|c| {
            let servers: Vec<(i64, String)> = {
                let mut st = c.prepare("SELECT id, address FROM servers")?;
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            if servers.is_empty() {
                return Ok(0);
            }
            let agents: Vec<(String, String, Option<String>, Option<String>)> = {
                let mut st = c.prepare(
                    "SELECT id, hostname, last_address, facts FROM agents
                     WHERE server_id IS NULL AND revoked_at IS NULL",
                )?;
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut linked = 0;
            for (id, hostname, last_address, facts) in agents {
                let mut names: Vec<String> = vec![hostname.to_ascii_lowercase()];
                if let Some(a) = last_address.as_deref().and_then(ip_of_socket_addr) {
                    names.push(a);
                }
                if let Some(f) = facts.and_then(|f| serde_json::from_str::<HostFacts>(&f).ok()) {
                    names.push(f.hostname.to_ascii_lowercase());
                    names.extend(f.addresses.iter().map(|a| strip_prefix_len(a)));
                }
                let matches: Vec<i64> = servers
                    .iter()
                    .filter(|(_, addr)| names.iter().any(|n| n == addr))
                    .map(|(sid, _)| *sid)
                    .collect();
                if let [sid] = matches[..] {
                    c.execute(
                        "UPDATE agents SET server_id = ?2 WHERE id = ?1",
                        params![id, sid],
                    )?;
                    linked += 1;
                }
            }
            Ok(linked)
        })
    }
}

/// What servers belong to: a group or a room. Deleting one that still
/// holds servers is refused with the reason.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    Group,
    Room,
}

fn delete_without_servers(c: &Connection, holder: Holder, id: i64) -> Result<()> {
    // Table and column names come from this enum, never from input.
    let (noun, table, column) = match holder {
        Holder::Group => ("group", "groups", "group_id"),
        Holder::Room => ("room", "rooms", "room_id"),
    };
    let (name, servers): (String, i64) = c
        .query_row(
            &format!(
                "SELECT name, (SELECT COUNT(*) FROM servers WHERE {column} = ?1)
                 FROM {table} WHERE id = ?1"
            ),
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or(Error::NotFound(noun))?;
    if servers > 0 {
        return Err(Error::InUse(format!(
            "{noun} {name:?} still has {servers} server(s); move or delete them first"
        )));
    }
    if holder == Holder::Room {
        let plans: i64 =
            c.query_row("SELECT COUNT(*) FROM plans WHERE room_id = ?1", [id], |r| {
                r.get(0)
            })?;
        if plans > 0 {
            return Err(Error::InUse(format!(
                "room {name:?} is where {plans} load-test plan(s) run; choose another room in them first"
            )));
        }
    }
    c.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])?;
    Ok(())
}

/// `10.0.0.5/24` -> `10.0.0.5` (agents report interface addresses with
/// their prefix length).
fn strip_prefix_len(a: &str) -> String {
    a.split('/').next().unwrap_or(a).to_ascii_lowercase()
}

fn ip_of_socket_addr(a: &str) -> Option<String> {
    a.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical().to_string())
}

fn group_conflict(c: &Connection, e: rusqlite::Error, name: &Name, app: &AppIdentifier) -> Error {
    if constraint(&e) != Some(UNIQUE) {
        return Error::Sql(e);
    }
    let name_taken: bool = c
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM groups WHERE name = ?1 COLLATE NOCASE)",
            [name.as_str()],
            |r| r.get(0),
        )
        .unwrap_or(true);
    if name_taken {
        Error::Conflict(format!("a group named {:?} already exists", name.as_str()))
    } else {
        Error::Conflict(format!(
            "another group already uses the application identifier {:?}",
            app.as_str()
        ))
    }
}

fn server_conflict(e: rusqlite::Error, input: &ServerInput) -> Error {
    match constraint(&e) {
        Some(UNIQUE) if e.to_string().contains("servers.name") => Error::Conflict(format!(
            "a server named {:?} already exists",
            input.name.as_str()
        )),
        Some(UNIQUE) => Error::Conflict(format!(
            "another server already has the address {}:{}",
            input.address.as_str(),
            input.ssh_port
        )),
        Some(FOREIGN_KEY) => Error::Invalid(super::model::Invalid::new(
            "group/room",
            "no such group or room",
        )),
        _ => Error::Sql(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::parse_port;

    fn inv() -> (tempfile::TempDir, Inventory, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(&dir.path().join("inv.db")).unwrap();
        let vault = Vault::load_or_create(dir.path()).unwrap();
        (dir, inv, vault)
    }

    fn name(s: &str) -> Name {
        Name::parse("name", s).unwrap()
    }

    fn input(n: &str, g: i64, r: i64, addr: &str) -> ServerInput {
        ServerInput {
            name: name(n),
            group_id: g,
            room_id: r,
            address: ServerAddr::parse(addr).unwrap(),
            ssh_port: parse_port(22).unwrap(),
            ssh_user: name("ops"),
            credential: CredentialChange::Set(Credential::Password("s3cret-pw".into())),
        }
    }

    #[test]
    fn duplicates_dangling_references_and_deleting_what_is_in_use_are_refused() {
        let (_d, inv, vault) = inv();
        let app = AppIdentifier::parse("shop-api").unwrap();
        let g = inv.create_group(&name("Shop"), &app).unwrap();
        let e = inv.create_group(&name("shop"), &AppIdentifier::parse("").unwrap());
        assert!(
            matches!(e, Err(Error::Conflict(ref m)) if m.contains("named")),
            "{e:?}"
        );
        let e = inv.create_group(&name("Other"), &app);
        assert!(
            matches!(e, Err(Error::Conflict(ref m)) if m.contains("identifier")),
            "{e:?}"
        );
        let r = inv
            .create_room(&name("R1"), RoomPurpose::Application)
            .unwrap();
        assert!(matches!(
            inv.create_room(&name("r1"), RoomPurpose::Middleware),
            Err(Error::Conflict(_))
        ));
        let s = inv
            .create_server(&input("web1", g, r, "10.0.0.1"), &vault)
            .unwrap();
        assert!(matches!(
            inv.create_server(&input("WEB1", g, r, "10.0.0.2"), &vault),
            Err(Error::Conflict(ref m)) if m.contains("named")
        ));
        assert!(matches!(
            inv.create_server(&input("web2", g, r, "10.0.0.1"), &vault),
            Err(Error::Conflict(ref m)) if m.contains("address")
        ));
        assert!(matches!(
            inv.create_server(&input("web3", 999, r, "10.0.0.3"), &vault),
            Err(Error::Invalid(_))
        ));
        let e = inv.delete_group(g).unwrap_err();
        assert!(e.to_string().contains("still has 1 server"), "{e}");
        assert!(matches!(inv.delete_room(r), Err(Error::InUse(_))));
        assert_eq!(inv.group(g).unwrap().servers, 1);

        assert_eq!(
            inv.server_credential(s, &vault).unwrap(),
            Some(Credential::Password("s3cret-pw".into()))
        );
        let seen = inv.server(s).unwrap();
        assert_eq!(seen.credential_kind.as_deref(), Some("password"));
        inv.delete_server(s).unwrap();
        assert!(matches!(inv.server(s), Err(Error::NotFound("server"))));
        inv.delete_group(g).unwrap();
        inv.delete_room(r).unwrap();
    }

    #[test]
    fn a_changed_address_forgets_the_host_key_and_credentials_can_be_kept() {
        let (_d, inv, vault) = inv();
        let g = inv
            .create_group(&name("g"), &AppIdentifier::parse("").unwrap())
            .unwrap();
        let r = inv
            .create_room(&name("r"), RoomPurpose::Middleware)
            .unwrap();
        let s = inv
            .create_server(&input("a", g, r, "10.0.0.1"), &vault)
            .unwrap();
        inv.set_host_key(s, Some("ssh-ed25519 AAAA")).unwrap();
        let mut same = input("a2", g, r, "10.0.0.1");
        same.credential = CredentialChange::Keep;
        inv.update_server(s, &same, &vault).unwrap();
        let now = inv.server(s).unwrap();
        assert_eq!(now.host_key.as_deref(), Some("ssh-ed25519 AAAA"));
        assert_eq!(now.credential_kind.as_deref(), Some("password"));
        let mut moved = input("a2", g, r, "10.0.0.9");
        moved.credential = CredentialChange::Clear;
        inv.update_server(s, &moved, &vault).unwrap();
        let now = inv.server(s).unwrap();
        assert_eq!(now.host_key, None);
        assert_eq!(now.credential_kind, None);
        assert_eq!(inv.server_credential(s, &vault).unwrap(), None);
    }

    fn enroll(
        inv: &Inventory,
        dir: &std::path::Path,
        hostname: &str,
        addr: &str,
    ) -> certs::AgentId {
        let ca = certs::CertificateAuthority::load_or_create(dir).unwrap();
        let (_, csr) = certs::AgentIdentity::new_key_and_csr().unwrap();
        let id = certs::AgentId::generate();
        let cert = ca
            .sign_agent(
                &csr,
                &id,
                certs::Role::Monitor,
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        let facts = crate::inventory::AgentFacts {
            hostname,
            os: "Debian",
            arch: "x86_64",
            agent_version: "0.1",
        };
        let policy = certs::TokenPolicy {
            role: certs::Role::Monitor,
            group: None,
            room: None,
            expires_at: 1_000,
            uses_left: 1,
        };
        inv.record_enrollment(
            &cert,
            &facts,
            &policy,
            &certs::JoinToken::generate().hash(),
            "fp",
            5,
        )
        .unwrap();
        inv.record_connect(&id, &facts, addr, 6).unwrap();
        id
    }

    #[test]
    fn agents_link_to_their_server_and_watch_its_group_application() {
        let (d, inv, vault) = inv();
        let g = inv
            .create_group(&name("shop"), &AppIdentifier::parse("shop-api").unwrap())
            .unwrap();
        let r = inv
            .create_room(&name("r"), RoomPurpose::Application)
            .unwrap();
        let s = inv
            .create_server(&input("web1", g, r, "10.0.0.5"), &vault)
            .unwrap();
        let a = enroll(&inv, d.path(), "web1.internal", "10.0.0.5:40000");
        let b = enroll(&inv, d.path(), "elsewhere", "10.0.0.99:40000");
        inv.set_facts(&a, &HostFacts::default()).unwrap();
        let by_id = |id: &certs::AgentId| {
            inv.agents()
                .unwrap()
                .into_iter()
                .find(|x| &x.id == id)
                .unwrap()
        };
        assert_eq!(by_id(&a).server_id, Some(s));
        assert_eq!(by_id(&a).group.as_deref(), Some("shop"));
        assert_eq!(by_id(&b).server_id, None);
        assert_eq!(inv.server(s).unwrap().agents.len(), 1);

        // The group's identifier applies; the agent's own overrides it; a
        // change of the group is a change others notice.
        assert_eq!(inv.app_identifier(&a).unwrap().as_deref(), Some("shop-api"));
        assert_eq!(inv.app_identifier(&b).unwrap(), None);
        inv.set_app_identifier(&a, Some("own")).unwrap();
        assert_eq!(inv.app_identifier(&a).unwrap().as_deref(), Some("own"));
        inv.set_app_identifier(&a, None).unwrap();
        let before = inv.change_stamp().unwrap();
        inv.update_group(g, &name("shop"), &AppIdentifier::parse("shop-v2").unwrap())
            .unwrap();
        assert_ne!(inv.change_stamp().unwrap(), before);
        assert_eq!(inv.app_identifier(&a).unwrap().as_deref(), Some("shop-v2"));

        // A server created later links the waiting agent; an agent that
        // matches two servers (same address, two SSH ports) stays unlinked.
        let mut one = input("db1", g, r, "10.0.0.99");
        one.ssh_port = 22;
        let db1 = inv.create_server(&one, &vault).unwrap();
        assert_eq!(by_id(&b).server_id, Some(db1));
        let mut two = input("db2", g, r, "10.0.0.99");
        two.ssh_port = 2222;
        inv.create_server(&two, &vault).unwrap();
        let c = enroll(&inv, d.path(), "db-twin", "10.0.0.77:40000");
        let facts = HostFacts {
            hostname: "db-twin".into(),
            addresses: vec!["10.0.0.99/24".into()],
            ..HostFacts::default()
        };
        inv.set_facts(&c, &facts).unwrap();
        assert_eq!(
            by_id(&c).server_id,
            None,
            "linked although two servers match"
        );

        // Deleting the server unlinks its agent and keeps it enrolled.
        inv.delete_server(s).unwrap();
        assert_eq!(by_id(&a).server_id, None);
    }
}
