//! Load-test plans as stored: each plan is one JSON document (the
//! [`loadplan::TestPlan`] tree the editor edits as a whole) with a revision
//! number, so every save is validated whole and two editors cannot
//! silently overwrite each other. Uploaded JMeter zips are plans of kind
//! `upload`: the same run settings, plus the stored zip. Files a plan uses
//! (CSV data) are listed here; their contents live in the file store.
//!
//! Stores what it is given: validation is `loadplan::validate`, permission
//! is `auth::policy`.

use loadplan::TestPlan;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Error, FOREIGN_KEY, Inventory, Result, UNIQUE, constraint, unix_now};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Built in the editor; the JMX is generated from it.
    Editor,
    /// An uploaded JMeter zip with run settings.
    Upload,
}

impl PlanKind {
    fn as_str(self) -> &'static str {
        match self {
            PlanKind::Editor => "editor",
            PlanKind::Upload => "upload",
        }
    }
}

/// The stored zip of an uploaded plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredBundle {
    /// Key in the file store.
    #[serde(skip)]
    pub key: String,
    /// The .jmx inside it.
    pub jmx: String,
    pub sha256: String,
    pub bytes: u64,
    /// What else the zip holds, with sizes.
    pub files: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredPlan {
    pub id: i64,
    pub kind: PlanKind,
    pub revision: i64,
    pub plan: TestPlan,
    pub bundle: Option<StoredBundle>,
    pub created_by: String,
    pub created_at: u64,
    pub updated_by: String,
    pub updated_at: u64,
}

/// A data file a plan uses (a CSV data set's file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanFile {
    pub name: String,
    #[serde(skip)]
    pub key: String,
    pub bytes: u64,
    pub sha256: String,
    pub uploaded_at: u64,
}

const PLAN_SELECT: &str = "SELECT id, kind, revision, doc, bundle_key, bundle_jmx, bundle_sha256,
        bundle_bytes, bundle_files, created_by, created_at, updated_by, updated_at FROM plans";

fn plan_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredPlan> {
    let doc: String = r.get(3)?;
    let plan: TestPlan = serde_json::from_str(&doc).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let kind = match r.get::<_, String>(1)?.as_str() {
        "upload" => PlanKind::Upload,
        _ => PlanKind::Editor,
    };
    let bundle = match r.get::<_, Option<String>>(4)? {
        Some(key) => {
            let files: String = r.get(8)?;
            Some(StoredBundle {
                key,
                jmx: r.get(5)?,
                sha256: r.get(6)?,
                bytes: r.get::<_, i64>(7)?.max(0) as u64,
                files: serde_json::from_str(&files).unwrap_or_default(),
            })
        }
        None => None,
    };
    Ok(StoredPlan {
        id: r.get(0)?,
        kind,
        revision: r.get(2)?,
        plan,
        bundle,
        created_by: r.get(9)?,
        created_at: r.get::<_, i64>(10)?.max(0) as u64,
        updated_by: r.get(11)?,
        updated_at: r.get::<_, i64>(12)?.max(0) as u64,
    })
}

fn write_error(e: rusqlite::Error, plan: &TestPlan) -> Error {
    match constraint(&e) {
        Some(UNIQUE) => Error::Conflict(format!("a plan named {:?} exists already", plan.name)),
        Some(FOREIGN_KEY) => Error::NotFound("room"),
        _ => Error::Sql(e),
    }
}

fn doc(plan: &TestPlan) -> Result<String> {
    serde_json::to_string(plan).map_err(|e| Error::Conflict(format!("plan not storable: {e}")))
}

impl Inventory {
    /// Stores a new plan (validated by the caller); returns its id.
    pub fn create_plan(
        &self,
        kind: PlanKind,
        plan: &TestPlan,
        bundle: Option<&StoredBundle>,
        user: &str,
    ) -> Result<i64> {
        let text = doc(plan)?;
        let files = bundle
            .map(|b| serde_json::to_string(&b.files).unwrap_or_else(|_| "[]".into()))
            .unwrap_or_else(|| "[]".into());
        self.change(|c| {
            let now = unix_now() as i64;
            c.execute(
                "INSERT INTO plans (name, kind, revision, doc, room_id, bundle_key, bundle_jmx,
                    bundle_sha256, bundle_bytes, bundle_files, created_by, created_at, updated_by, updated_at)
                 VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10, ?11)",
                params![
                    plan.name,
                    kind.as_str(),
                    text,
                    plan.run.room_id,
                    bundle.map(|b| &b.key),
                    bundle.map(|b| &b.jmx),
                    bundle.map(|b| &b.sha256),
                    bundle.map(|b| b.bytes as i64),
                    files,
                    user,
                    now
                ],
            )
            .map_err(|e| write_error(e, plan))?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn plan(&self, id: i64) -> Result<Option<StoredPlan>> {
        self.with(|c| {
            c.query_row(&format!("{PLAN_SELECT} WHERE id = ?1"), [id], plan_of)
                .optional()
        })
    }

    /// Every plan, by name.
    pub fn plans(&self) -> Result<Vec<StoredPlan>> {
        self.with(|c| {
            let mut st = c.prepare(&format!("{PLAN_SELECT} ORDER BY name COLLATE NOCASE"))?;
            let rows = st.query_map([], plan_of)?;
            rows.collect::<rusqlite::Result<_>>()
        })
    }

    /// Replaces a plan's document if it is still at `revision` (the one
    /// the editor loaded); returns the new revision. A stale revision is a
    /// conflict that names who saved in between.
    pub fn update_plan(&self, id: i64, revision: i64, plan: &TestPlan, user: &str) -> Result<i64> {
        let text = doc(plan)?;
        self.change(|c| {
            let tx = c.unchecked_transaction()?;
            let current: Option<(i64, String)> = tx
                .query_row(
                    "SELECT revision, updated_by FROM plans WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((current, by)) = current else {
                return Err(Error::NotFound("plan"));
            };
            if current != revision {
                return Err(Error::Conflict(format!(
                    "the plan changed since you opened it (revision {current}, saved by {by}); reload it and apply your change again"
                )));
            }
            tx.execute(
                "UPDATE plans SET name = ?2, doc = ?3, room_id = ?4, revision = revision + 1,
                    updated_by = ?5, updated_at = ?6 WHERE id = ?1",
                params![id, plan.name, text, plan.run.room_id, user, unix_now() as i64],
            )
            .map_err(|e| write_error(e, plan))?;
            tx.commit()?;
            Ok(current + 1)
        })
    }

    /// Deletes a plan and its file list; returns the file-store keys the
    /// caller should delete (the bundle and data files).
    pub fn delete_plan(&self, id: i64) -> Result<Vec<String>> {
        self.change(|c| {
            let tx = c.unchecked_transaction()?;
            let bundle: Option<Option<String>> = tx
                .query_row("SELECT bundle_key FROM plans WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(bundle) = bundle else {
                return Err(Error::NotFound("plan"));
            };
            let mut keys: Vec<String> = {
                let mut st = tx.prepare("SELECT file_key FROM plan_files WHERE plan_id = ?1")?;
                st.query_map([id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            keys.extend(bundle);
            tx.execute("DELETE FROM plans WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(keys)
        })
    }

    pub fn plan_files(&self, plan: i64) -> Result<Vec<PlanFile>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT name, file_key, bytes, sha256, uploaded_at FROM plan_files
                 WHERE plan_id = ?1 ORDER BY name",
            )?;
            let rows = st.query_map([plan], |r| {
                Ok(PlanFile {
                    name: r.get(0)?,
                    key: r.get(1)?,
                    bytes: r.get::<_, i64>(2)?.max(0) as u64,
                    sha256: r.get(3)?,
                    uploaded_at: r.get::<_, i64>(4)?.max(0) as u64,
                })
            })?;
            rows.collect::<rusqlite::Result<_>>()
        })
    }

    /// Records (or replaces) a plan's data file; returns the key of the
    /// file it replaced, for the caller to delete from the store.
    pub fn put_plan_file(&self, plan: i64, file: &PlanFile) -> Result<Option<String>> {
        self.change(|c| {
            let tx = c.unchecked_transaction()?;
            let old: Option<String> = tx
                .query_row(
                    "SELECT file_key FROM plan_files WHERE plan_id = ?1 AND name = ?2",
                    params![plan, file.name],
                    |r| r.get(0),
                )
                .optional()?;
            tx.execute(
                "INSERT INTO plan_files (plan_id, name, file_key, bytes, sha256, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (plan_id, name) DO UPDATE SET file_key = ?3, bytes = ?4, sha256 = ?5, uploaded_at = ?6",
                params![
                    plan,
                    file.name,
                    file.key,
                    file.bytes as i64,
                    file.sha256,
                    file.uploaded_at as i64
                ],
            )
            .map_err(|e| match constraint(&e) {
                Some(FOREIGN_KEY) => Error::NotFound("plan"),
                _ => Error::Sql(e),
            })?;
            tx.commit()?;
            Ok(old.filter(|k| k != &file.key))
        })
    }

    /// Forgets a data file; returns its key for the caller to delete.
    pub fn delete_plan_file(&self, plan: i64, name: &str) -> Result<String> {
        self.change(|c| {
            let key: Option<String> = c
                .query_row(
                    "DELETE FROM plan_files WHERE plan_id = ?1 AND name = ?2 RETURNING file_key",
                    params![plan, name],
                    |r| r.get(0),
                )
                .optional()?;
            key.ok_or(Error::NotFound("file"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_versioned_documents_with_files() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(&dir.path().join("i.db")).unwrap();
        let mut plan = TestPlan {
            name: "checkout".into(),
            ..TestPlan::default()
        };
        let id = inv
            .create_plan(PlanKind::Editor, &plan, None, "alice")
            .unwrap();
        assert!(matches!(
            inv.create_plan(PlanKind::Editor, &plan, None, "bob"),
            Err(Error::Conflict(m)) if m.contains("exists already")
        ));
        plan.comment = "v2".into();
        assert_eq!(inv.update_plan(id, 1, &plan, "bob").unwrap(), 2);
        let stale = inv.update_plan(id, 1, &plan, "carol").unwrap_err();
        assert!(stale.to_string().contains("saved by bob"), "{stale}");
        let got = inv.plan(id).unwrap().unwrap();
        assert_eq!(got.plan.comment, "v2");
        assert_eq!((got.revision, got.updated_by.as_str()), (2, "bob"));

        plan.run.room_id = Some(999);
        assert!(matches!(
            inv.update_plan(id, 2, &plan, "bob"),
            Err(Error::NotFound("room"))
        ));

        let f = |key: &str| PlanFile {
            name: "users.csv".into(),
            key: key.into(),
            bytes: 10,
            sha256: "ab".into(),
            uploaded_at: 1,
        };
        assert_eq!(inv.put_plan_file(id, &f("k1")).unwrap(), None);
        assert_eq!(inv.put_plan_file(id, &f("k2")).unwrap(), Some("k1".into()));
        assert_eq!(inv.plan_files(id).unwrap().len(), 1);
        assert_eq!(inv.delete_plan(id).unwrap(), vec!["k2".to_string()]);
        assert!(inv.plan(id).unwrap().is_none());
        assert!(inv.plan_files(id).unwrap().is_empty());
    }
}
