//! People: users, their group memberships, login sessions and API tokens.
//!
//! Stores password *hashes* and token *hashes* only; hashing and the
//! decision of who may do what live in [`crate::auth`].

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::model::Name;
use super::{Error, Inventory, Result, unix_now};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    pub created_at: u64,
    /// Ids of the groups the user belongs to.
    pub groups: Vec<i64>,
}

/// Who is asking, as the policy needs to know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: i64,
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    pub groups: Vec<i64>,
}

/// A stored login session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user_id: i64,
    pub csrf: String,
    pub created_at: u64,
    pub last_seen: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiTokenInfo {
    pub name: String,
    pub user: String,
    pub created_at: u64,
    pub last_used: Option<u64>,
}

impl Inventory {
    pub fn user_count(&self) -> Result<u64> {
        self.with(|c| c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
    }

    pub fn create_user(&self, name: &Name, password_hash: &str, admin: bool) -> Result<i64> {
        self.change(|c| {
            c.execute(
                "INSERT INTO users (name, password_hash, admin, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name.as_str(), password_hash, admin, unix_now() as i64],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.extended_code == 2067 => {
                    Error::Conflict(format!("a user named {:?} already exists", name.as_str()))
                }
                e => Error::Sql(e),
            })?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn users(&self) -> Result<Vec<User>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, name, admin, disabled, created_at FROM users ORDER BY name COLLATE NOCASE",
            )?;
            let mut users: Vec<User> = st
                .query_map([], |r| {
                    Ok(User {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        admin: r.get(2)?,
                        disabled: r.get(3)?,
                        created_at: r.get::<_, i64>(4)?.max(0) as u64,
                        groups: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut st = c.prepare("SELECT user_id, group_id FROM memberships")?;
            for row in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
                let (u, g) = row?;
                if let Some(user) = users.iter_mut().find(|x| x.id == u) {
                    user.groups.push(g);
                }
            }
            Ok(users)
        })
    }

    pub fn user(&self, id: i64) -> Result<User> {
        self.users()?
            .into_iter()
            .find(|u| u.id == id)
            .ok_or(Error::NotFound("user"))
    }

    /// Id and password hash of an enabled user, for a login attempt.
    pub fn login_record(&self, name: &str) -> Result<Option<(i64, String)>> {
        self.with(|c| {
            c.query_row(
                "SELECT id, password_hash FROM users WHERE name = ?1 COLLATE NOCASE AND disabled = 0",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    pub fn principal(&self, id: i64) -> Result<Option<Principal>> {
        self.with(|c| {
            let p = c
                .query_row(
                    "SELECT id, name, admin, disabled FROM users WHERE id = ?1",
                    [id],
                    |r| {
                        Ok(Principal {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            admin: r.get(2)?,
                            disabled: r.get(3)?,
                            groups: Vec::new(),
                        })
                    },
                )
                .optional()?;
            let Some(mut p) = p else { return Ok(None) };
            let mut st = c.prepare_cached("SELECT group_id FROM memberships WHERE user_id = ?1")?;
            p.groups = st
                .query_map([id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(p))
        })
    }

    /// Changes a user's flags and, when given, password hash. Disabling a
    /// user or changing their password ends their sessions. The last
    /// enabled admin cannot lose admin rights or be disabled.
    pub fn update_user(
        &self,
        id: i64,
        admin: bool,
        disabled: bool,
        password_hash: Option<&str>,
    ) -> Result<()> {
        self.change(|c| {
            let tx = c.transaction()?;
            let was: Option<(bool, bool)> = tx
                .query_row(
                    "SELECT admin, disabled FROM users WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((was_admin, was_disabled)) = was else {
                return Err(Error::NotFound("user"));
            };
            if was_admin && !was_disabled && (!admin || disabled) && last_admin(&tx, id)? {
                return Err(Error::InUse(
                    "this is the last enabled admin; make another user admin first".into(),
                ));
            }
            tx.execute(
                "UPDATE users SET admin = ?2, disabled = ?3 WHERE id = ?1",
                params![id, admin, disabled],
            )?;
            if let Some(h) = password_hash {
                tx.execute(
                    "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                    params![id, h],
                )?;
            }
            if disabled || password_hash.is_some() {
                tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    pub fn delete_user(&self, id: i64) -> Result<()> {
        self.change(|c| {
            let tx = c.transaction()?;
            let admin: Option<bool> = tx
                .query_row(
                    "SELECT admin AND NOT disabled FROM users WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            match admin {
                None => return Err(Error::NotFound("user")),
                Some(true) if last_admin(&tx, id)? => {
                    return Err(Error::InUse(
                        "this is the last enabled admin; make another user admin first".into(),
                    ));
                }
                Some(_) => {}
            }
            tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Adds a user to a group (again is fine).
    pub fn add_member(&self, group: i64, user: i64) -> Result<()> {
        self.change(|c| {
            c.execute(
                "INSERT OR IGNORE INTO memberships (user_id, group_id) VALUES (?1, ?2)",
                params![user, group],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _) if f.extended_code == 787 => {
                    Error::NotFound("user or group")
                }
                e => Error::Sql(e),
            })?;
            Ok(())
        })
    }

    pub fn remove_member(&self, group: i64, user: i64) -> Result<()> {
        self.change(|c| {
            c.execute(
                "DELETE FROM memberships WHERE user_id = ?1 AND group_id = ?2",
                params![user, group],
            )?;
            Ok(())
        })
    }

    /// Users of a group.
    pub fn members(&self, group: i64) -> Result<Vec<User>> {
        Ok(self
            .users()?
            .into_iter()
            .filter(|u| u.groups.contains(&group))
            .collect())
    }

    // ---- sessions -----------------------------------------------------

    pub fn create_session(&self, token_hash: &str, user: i64, csrf: &str, now: u64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, created_at, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![token_hash, user, csrf, now as i64],
            )
            .map(drop)
        })
    }

    pub fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>> {
        self.with(|c| {
            c.query_row(
                "SELECT user_id, csrf, created_at, last_seen FROM sessions WHERE token_hash = ?1",
                [token_hash],
                |r| {
                    Ok(SessionRecord {
                        user_id: r.get(0)?,
                        csrf: r.get(1)?,
                        created_at: r.get::<_, i64>(2)?.max(0) as u64,
                        last_seen: r.get::<_, i64>(3)?.max(0) as u64,
                    })
                },
            )
            .optional()
        })
    }

    pub fn touch_session(&self, token_hash: &str, now: u64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE sessions SET last_seen = ?2 WHERE token_hash = ?1",
                params![token_hash, now as i64],
            )
            .map(drop)
        })
    }

    pub fn delete_session(&self, token_hash: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])
                .map(drop)
        })
    }

    /// Forgets sessions idle since before `idle_before` or created before
    /// `created_before`.
    pub fn prune_sessions(&self, idle_before: u64, created_before: u64) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "DELETE FROM sessions WHERE last_seen < ?1 OR created_at < ?2",
                params![idle_before as i64, created_before as i64],
            )
        })
    }

    // ---- API tokens ---------------------------------------------------

    pub fn create_api_token(&self, token_hash: &str, user: i64, name: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO api_tokens (token_hash, user_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![token_hash, user, name, unix_now() as i64],
            )
            .map(drop)
        })
    }

    /// The user an API token belongs to (and notes its use).
    pub fn api_token_user(&self, token_hash: &str) -> Result<Option<i64>> {
        self.with(|c| {
            let user: Option<i64> = c
                .query_row(
                    "SELECT user_id FROM api_tokens WHERE token_hash = ?1",
                    [token_hash],
                    |r| r.get(0),
                )
                .optional()?;
            if user.is_some() {
                c.execute(
                    "UPDATE api_tokens SET last_used = ?2 WHERE token_hash = ?1",
                    params![token_hash, unix_now() as i64],
                )?;
            }
            Ok(user)
        })
    }

    pub fn api_tokens(&self) -> Result<Vec<ApiTokenInfo>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT t.name, u.name, t.created_at, t.last_used
                 FROM api_tokens t JOIN users u ON u.id = t.user_id ORDER BY t.created_at",
            )?;
            st.query_map([], |r| {
                Ok(ApiTokenInfo {
                    name: r.get(0)?,
                    user: r.get(1)?,
                    created_at: r.get::<_, i64>(2)?.max(0) as u64,
                    last_used: r.get::<_, Option<i64>>(3)?.map(|v| v.max(0) as u64),
                })
            })?
            .collect()
        })
    }
}

/// True when `id` is the only enabled admin.
fn last_admin(tx: &rusqlite::Transaction<'_>, id: i64) -> rusqlite::Result<bool> {
    let others: i64 = tx.query_row(
        "SELECT COUNT(*) FROM users WHERE admin = 1 AND disabled = 0 AND id != ?1",
        [id],
        |r| r.get(0),
    )?;
    Ok(others == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::{AppIdentifier, parse_user_name};

    #[test]
    fn the_last_admin_stays_and_disabling_ends_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(&dir.path().join("inv.db")).unwrap();
        let a = inv
            .create_user(&parse_user_name("root").unwrap(), "h", true)
            .unwrap();
        assert!(matches!(
            inv.create_user(&parse_user_name("ROOT").unwrap(), "h", false),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            inv.update_user(a, false, false, None),
            Err(Error::InUse(_))
        ));
        assert!(matches!(inv.delete_user(a), Err(Error::InUse(_))));
        let b = inv
            .create_user(&parse_user_name("bob").unwrap(), "h", false)
            .unwrap();
        let g = inv
            .create_group(
                &Name::parse("n", "g").unwrap(),
                &AppIdentifier::parse("").unwrap(),
            )
            .unwrap();
        inv.add_member(g, b).unwrap();
        inv.add_member(g, b).unwrap();
        assert!(matches!(inv.add_member(g, 999), Err(Error::NotFound(_))));
        assert_eq!(inv.principal(b).unwrap().unwrap().groups, vec![g]);
        inv.create_session("t1", b, "c", 10).unwrap();
        assert_eq!(inv.session("t1").unwrap().unwrap().user_id, b);
        inv.update_user(b, false, true, None).unwrap();
        assert!(
            inv.session("t1").unwrap().is_none(),
            "disabled user kept a session"
        );
        assert!(inv.login_record("bob").unwrap().is_none());
        inv.update_user(b, true, false, None).unwrap();
        inv.update_user(a, false, false, None).unwrap();
        inv.delete_user(a).unwrap();
        inv.delete_group(g).unwrap();
        assert!(inv.principal(b).unwrap().unwrap().groups.is_empty());
    }
}
