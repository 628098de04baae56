//! Load tests as the controller keeps them: plans built in the editor and
//! uploaded JMeter zips, with their run settings and data files, checked
//! against this controller's limits before anything is stored.
//!
//! Owns the rules that span the database and the file store (a data file
//! must exist before a CSV data set uses it, and must match the delimiter
//! it declares; deleting a plan deletes its files). The plan model,
//! validation and JMeter files are `loadplan`'s; who may do what is
//! `auth::policy`'s; HTTP is `web`'s. Running plans on generators is
//! [`runner`]'s; merging their per-second results is [`results`]'.

pub mod results;
pub mod runner;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use futures_util::TryStreamExt;
use loadplan::{Problem, Problems, TestPlan};
use serde::{Deserialize, Serialize};

use crate::files::{FileError, FileStore};
use crate::inventory::{self, Inventory, PlanFile, PlanKind, StoredPlan};

/// `[loadtest]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadTestSettings {
    /// Highest target TPS of one plan, all generators together.
    pub max_tps: f64,
    /// Highest thread count of one plan, all generators together.
    pub max_threads: u32,
    pub max_duration_secs: u32,
    pub max_generators: u32,
    /// Largest data file (CSV) a plan may carry, MiB.
    pub max_data_file_mib: u64,
    /// Largest uploaded JMeter zip, MiB (compressed; the unpacked size has
    /// its own ceiling in `zip`).
    pub max_upload_mib: u64,
    /// What an uploaded JMeter zip may unpack to (files, bytes, ratio).
    pub zip: loadplan::bundle::BundleLimits,
    /// Expected response time of one request, ms: sizes the threads of a
    /// TPS-mode run (Little's law, with 20 % headroom).
    pub expected_rt_ms: u32,
    /// Ceiling of threads per thread group on one generator.
    pub max_threads_per_generator: u32,
}

impl Default for LoadTestSettings {
    fn default() -> Self {
        let l = loadplan::Limits::default();
        LoadTestSettings {
            max_tps: l.max_tps,
            max_threads: l.max_threads,
            max_duration_secs: l.max_duration_secs,
            max_generators: l.max_generators,
            max_data_file_mib: 256,
            max_upload_mib: 512,
            zip: loadplan::bundle::BundleLimits::default(),
            expected_rt_ms: loadplan::jmx::Sizing::default().expected_rt_ms,
            max_threads_per_generator: loadplan::jmx::Sizing::default().max_threads_per_generator,
        }
    }
}

impl LoadTestSettings {
    pub fn sizing(&self) -> loadplan::jmx::Sizing {
        loadplan::jmx::Sizing {
            expected_rt_ms: self.expected_rt_ms,
            max_threads_per_generator: self.max_threads_per_generator,
        }
    }

    pub fn limits(&self) -> loadplan::Limits {
        loadplan::Limits {
            max_tps: self.max_tps,
            max_threads: self.max_threads,
            max_duration_secs: self.max_duration_secs,
            max_generators: self.max_generators,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The plan or settings are wrong, field by field.
    #[error(transparent)]
    Problems(#[from] Problems),
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
    #[error(transparent)]
    Files(#[from] FileError),
    /// A zip refused, or a task artifact that could not be built.
    #[error(transparent)]
    Bundle(#[from] loadplan::bundle::BundleError),
    #[error("JMeter file: {0}")]
    Jmx(#[from] loadplan::jmx::JmxError),
    #[error("{0}")]
    Io(String),
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError::Problems(Problems(vec![Problem {
        field: field.into(),
        message: message.into(),
    }]))
}

/// A built task artifact: its digest, what preparing it noticed, and the
/// `-J` arguments of each generator.
#[derive(Debug, Clone, Serialize)]
pub struct RunFiles {
    pub sha256: String,
    pub size: u64,
    pub notes: Vec<loadplan::jmx::Note>,
    pub properties: Vec<Vec<String>>,
    /// The same per generator, as values (the runner re-splits them).
    #[serde(skip)]
    pub run: Vec<loadplan::jmx::RunProperties>,
}

/// Something a .jmx import left out or changed, for the user.
#[derive(Debug, Clone, Serialize)]
pub struct ImportNote {
    pub path: String,
    pub outcome: loadplan::jmx::Outcome,
    pub message: String,
}

/// How many load generators a room has: connected ones are free to run
/// (until tasks exist to make them busy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RoomGenerators {
    pub installed: u32,
    pub connected: u32,
}

/// Plans and their files.
#[derive(Clone)]
pub struct Plans {
    pub inventory: Arc<Inventory>,
    pub files: FileStore,
    pub settings: Arc<LoadTestSettings>,
}

fn now() -> i64 {
    inventory::unix_now() as i64
}

impl Plans {
    /// Checks a plan against the limits, the clock and the data files it
    /// names (which must be uploaded, and match their data sets).
    async fn check(&self, id: Option<i64>, plan: &TestPlan) -> Result<(), PlanError> {
        loadplan::validate::check_plan(plan, &self.settings.limits(), now())?;
        let files: HashMap<String, PlanFile> = match id {
            Some(id) => self
                .inventory
                .plan_files(id)?
                .into_iter()
                .map(|f| (f.name.clone(), f))
                .collect(),
            None => HashMap::new(),
        };
        let mut problems = Vec::new();
        for (g, group) in plan.thread_groups.iter().enumerate() {
            for (d, set) in group.csv_data_sets.iter().enumerate() {
                let field = format!("thread_groups[{g}].csv_data_sets[{d}].file");
                let Some(file) = files.get(&set.file) else {
                    problems.push(Problem {
                        field,
                        message: format!("no file {:?} uploaded to this plan", set.file),
                    });
                    continue;
                };
                let head = self.head(&file.key).await?;
                if let Err(message) = loadplan::validate::check_csv_file(set, &head) {
                    problems.push(Problem {
                        field,
                        message: format!("{}: {message}", set.file),
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(problems).into())
        }
    }

    /// The first 64 KiB of a stored file: enough for a CSV's first lines.
    async fn head(&self, key: &str) -> Result<Vec<u8>, FileError> {
        let (_, mut stream) = self.files.get(key).await?;
        let mut head = Vec::new();
        while head.len() < 64 * 1024 {
            match stream.try_next().await? {
                Some(chunk) => head.extend_from_slice(&chunk),
                None => break,
            }
        }
        Ok(head)
    }

    pub async fn create(&self, plan: &TestPlan, user: &str) -> Result<i64, PlanError> {
        self.check(None, plan).await?;
        Ok(self
            .inventory
            .create_plan(PlanKind::Editor, plan, None, user)?)
    }

    /// Imports a .jmx as a new plan. The plan is checked like any other,
    /// except that the data files its CSV data sets name are still to be
    /// uploaded; what the import left out or changed, and what is missing,
    /// comes back as notes for the user.
    pub async fn import(
        &self,
        jmx: &[u8],
        file_name: &str,
        user: &str,
    ) -> Result<(i64, TestPlan, Vec<ImportNote>), PlanError> {
        let imported =
            loadplan::jmx::import(jmx).map_err(|e| problem("file", format!("{file_name}: {e}")))?;
        let mut plan = imported.plan;
        let mut notes: Vec<ImportNote> = imported
            .unsupported
            .iter()
            .map(|u| ImportNote {
                path: u.path.clone(),
                outcome: u.outcome,
                message: u.message.clone(),
            })
            .collect();
        let note = |path: &str, message: String| ImportNote {
            path: path.to_string(),
            outcome: loadplan::jmx::Outcome::Changed,
            message,
        };
        if plan.name.trim().is_empty() {
            plan.name = file_name.trim_end_matches(".jmx").to_string();
        }
        let free = self.unused_name(&plan.name, Some("imported"))?;
        if free != plan.name {
            let base = std::mem::replace(&mut plan.name, free);
            notes.push(note(
                "Test Plan",
                format!(
                    "a plan named {base:?} exists: this one is named {:?}",
                    plan.name
                ),
            ));
        }
        if let Some(room) = plan.run.room_id
            && !self.inventory.rooms()?.iter().any(|r| r.id == room)
        {
            plan.run.room_id = None;
            notes.push(note(
                "Test Plan",
                "the room the file names does not exist here: choose one".into(),
            ));
        }
        if let loadplan::Schedule::Automatic { steps } = &plan.run.schedule
            && steps.first().is_some_and(|s| s.at < now())
        {
            plan.run.schedule = loadplan::Schedule::Manual;
            notes.push(note(
                "Test Plan",
                "its automatic schedule is in the past: the plan starts as manual".into(),
            ));
        }
        loadplan::validate::check_plan(&plan, &self.settings.limits(), now())?;
        for g in &plan.thread_groups {
            for set in &g.csv_data_sets {
                notes.push(note(
                    &format!("Test Plan / {} / CSV Data Set", g.name),
                    format!("upload {} to this plan before running it", set.file),
                ));
            }
        }
        let id = self
            .inventory
            .create_plan(PlanKind::Editor, &plan, None, user)?;
        Ok((id, plan, notes))
    }

    /// `base` if no plan has that name (names compare without case), else
    /// the first free of "base (word)", "base (word 2)", ... (or "base (2)",
    /// ... without a word).
    fn unused_name(&self, base: &str, word: Option<&str>) -> Result<String, PlanError> {
        let taken: Vec<String> = self
            .inventory
            .plans()?
            .into_iter()
            .map(|p| p.plan.name.to_lowercase())
            .collect();
        let free = |name: &String| !taken.contains(&name.to_lowercase());
        if free(&base.to_string()) {
            return Ok(base.to_string());
        }
        Ok((2..)
            .map(|n| match word {
                Some(w) if n == 2 => format!("{base} ({w})"),
                Some(w) => format!("{base} ({w} {})", n - 1),
                None => format!("{base} ({n})"),
            })
            .find(free)
            .expect("an unused name"))
    }

    /// Takes an uploaded JMeter zip (spooled at `path`) as a new plan of
    /// its own with default run settings, after checking it (one .jmx at
    /// the top, nothing escaping, within the limits).
    pub async fn upload(
        &self,
        path: &Path,
        file_name: &str,
        len: u64,
        sha256: &str,
        user: &str,
    ) -> Result<(i64, StoredPlan), PlanError> {
        let limits = self.settings.zip;
        let checked = path.to_path_buf();
        let bundle =
            tokio::task::spawn_blocking(move || loadplan::bundle::check_file(&checked, &limits))
                .await
                .map_err(|e| PlanError::Io(format!("checking the zip: {e}")))?
                .map_err(|e| problem("file", format!("{file_name}: {e}")))?;
        let stem = file_name.trim_end_matches(".zip").trim();
        let stem = if stem.is_empty() { "upload" } else { stem };
        let name = self.unused_name(stem, None)?;
        let plan = TestPlan {
            name: name.chars().take(200).collect(),
            ..TestPlan::default()
        };
        let stored = inventory::StoredBundle {
            key: bundle_key(),
            jmx: bundle.jmx.clone(),
            sha256: sha256.to_string(),
            bytes: len,
            files: bundle
                .files
                .iter()
                .filter(|(n, _)| *n != bundle.jmx)
                .cloned()
                .collect(),
        };
        self.files.put_file(&stored.key, path).await?;
        let id = match self
            .inventory
            .create_plan(PlanKind::Upload, &plan, Some(&stored), user)
        {
            Ok(id) => id,
            Err(e) => {
                let _ = self.files.delete(&stored.key).await;
                return Err(e.into());
            }
        };
        Ok((id, self.get(id)?))
    }

    /// Builds the one zip a run of plan `id` executes into `dest`: the
    /// prepared .jmx (rate, threads and duration as `-J` properties, see
    /// `loadplan::jmx`) with every file it reads. A plan from the editor
    /// is generated and gets its data files under `data/`; an uploaded
    /// zip is unpacked (checked again), prepared and repacked as it was.
    pub async fn build_artifact(&self, id: i64, dest: &Path) -> Result<RunFiles, PlanError> {
        let stored = self.get(id)?;
        match stored.kind {
            PlanKind::Editor => loadplan::validate::check_runnable(&stored.plan)?,
            PlanKind::Upload => loadplan::validate::check_runnable_settings(&stored.plan)?,
        }
        let work = tempfile::tempdir_in(dest.parent().unwrap_or(Path::new(".")))
            .map_err(|e| PlanError::Io(format!("a work folder for the artifact: {e}")))?;
        let (jmx_name, jmx, files): (String, Vec<u8>, Vec<(String, std::path::PathBuf)>) =
            match &stored.bundle {
                None => {
                    let mut files = Vec::new();
                    for f in self.inventory.plan_files(id)? {
                        let local = work.path().join(format!("data-{}", files.len()));
                        self.files.get_to_file(&f.key, &local).await?;
                        files.push((loadplan::bundle::data_path(&f.name), local));
                    }
                    (
                        loadplan::bundle::ARTIFACT_JMX.to_string(),
                        loadplan::jmx::generate(&stored.plan),
                        files,
                    )
                }
                Some(b) => {
                    let zip = work.path().join("upload.zip");
                    self.files.get_to_file(&b.key, &zip).await?;
                    let tree = work.path().join("tree");
                    std::fs::create_dir(&tree)
                        .map_err(|e| PlanError::Io(format!("{}: {e}", tree.display())))?;
                    let limits = self.settings.zip;
                    let (z, t) = (zip.clone(), tree.clone());
                    let bundle = tokio::task::spawn_blocking(move || {
                        loadplan::bundle::unpack_file(&z, &t, &limits)
                    })
                    .await
                    .map_err(|e| PlanError::Io(format!("unpacking: {e}")))??;
                    let jmx = std::fs::read(tree.join(&bundle.jmx))
                        .map_err(|e| PlanError::Io(format!("{}: {e}", bundle.jmx)))?;
                    let files = bundle
                        .files
                        .iter()
                        .filter(|(n, _)| *n != bundle.jmx)
                        .map(|(n, _)| (n.clone(), tree.join(n)))
                        .collect();
                    (bundle.jmx, jmx, files)
                }
            };
        let prepared = loadplan::jmx::prepare(&jmx, &stored.plan.run, &self.settings.sizing())?;
        let generators = stored.plan.run.generators.max(1);
        let run: Vec<_> = (0..generators).map(|i| prepared.properties(i)).collect();
        let properties = run.iter().map(|p| p.to_args()).collect();
        let limits = self.settings.zip;
        let dest = dest.to_path_buf();
        let notes = prepared.notes.clone();
        let artifact = tokio::task::spawn_blocking(move || {
            let mut readers = Vec::new();
            for (name, path) in files {
                let f = std::fs::File::open(&path)
                    .map_err(|e| PlanError::Io(format!("{}: {e}", path.display())))?;
                readers.push((name, f));
            }
            Ok::<_, PlanError>(loadplan::bundle::write_artifact(
                &dest,
                &jmx_name,
                &prepared.jmx,
                readers,
                &limits,
            )?)
        })
        .await
        .map_err(|e| PlanError::Io(format!("writing the artifact: {e}")))??;
        Ok(RunFiles {
            sha256: artifact.sha256,
            size: artifact.size,
            notes,
            properties,
            run,
        })
    }

    /// Saves an edited plan over `revision`; returns the new revision.
    pub async fn save(
        &self,
        id: i64,
        revision: i64,
        plan: &TestPlan,
        user: &str,
    ) -> Result<i64, PlanError> {
        let stored = self.get(id)?;
        if stored.kind == PlanKind::Upload && !plan.thread_groups.is_empty() {
            return Err(problem(
                "thread_groups",
                "an uploaded JMeter zip runs its own .jmx: only its run settings can change",
            ));
        }
        self.check(Some(id), plan).await?;
        Ok(self.inventory.update_plan(id, revision, plan, user)?)
    }

    pub fn get(&self, id: i64) -> Result<StoredPlan, PlanError> {
        self.inventory
            .plan(id)?
            .ok_or(PlanError::Inventory(inventory::Error::NotFound("plan")))
    }

    /// A copy of a plan with its data files, named "<name> (copy)" (or
    /// "(copy 2)", ... when taken).
    pub async fn copy(&self, id: i64, user: &str) -> Result<i64, PlanError> {
        let stored = self.get(id)?;
        let mut plan = stored.plan.clone();
        plan.name = self.unused_name(&stored.plan.name, Some("copy"))?;
        // A schedule in the past would make the copy unsavable; a copy
        // starts as manual.
        plan.run.schedule = loadplan::Schedule::Manual;
        let bundle = match &stored.bundle {
            Some(b) => {
                let key = bundle_key();
                self.files.copy(&b.key, &key).await?;
                Some(inventory::StoredBundle { key, ..b.clone() })
            }
            None => None,
        };
        let new = self
            .inventory
            .create_plan(stored.kind, &plan, bundle.as_ref(), user)?;
        for f in self.inventory.plan_files(id)? {
            let key = data_key(new);
            self.files.copy(&f.key, &key).await?;
            self.inventory.put_plan_file(new, &PlanFile { key, ..f })?;
        }
        Ok(new)
    }

    pub async fn delete(&self, id: i64) -> Result<(), PlanError> {
        for key in self.inventory.delete_plan(id)? {
            // The row is gone; a file left behind is only wasted space.
            if let Err(e) = self.files.delete(&key).await {
                tracing::warn!(%key, error = %e, "could not delete a deleted plan's file");
            }
        }
        Ok(())
    }

    /// Stores an uploaded data file (already on local disk, `len` bytes,
    /// `sha256` hex) under `name` for plan `id`, after checking it against
    /// every CSV data set of the plan that uses that name.
    pub async fn put_data_file(
        &self,
        id: i64,
        name: &str,
        path: &Path,
        len: u64,
        sha256: &str,
    ) -> Result<PlanFile, PlanError> {
        if !loadplan::validate::is_plain_file_name(name) {
            return Err(problem(
                "file",
                format!("{name:?} is not a plain file name"),
            ));
        }
        let stored = self.get(id)?;
        if stored.kind == PlanKind::Upload {
            return Err(problem(
                "file",
                "an uploaded JMeter zip carries its own files: upload a new zip instead",
            ));
        }
        let head = read_head(path).await?;
        for group in &stored.plan.thread_groups {
            for set in group.csv_data_sets.iter().filter(|s| s.file == name) {
                loadplan::validate::check_csv_file(set, &head)
                    .map_err(|m| problem("file", format!("{name}: {m}")))?;
            }
        }
        let key = data_key(id);
        self.files.put_file(&key, path).await?;
        let file = PlanFile {
            name: name.to_string(),
            key,
            bytes: len,
            sha256: sha256.to_string(),
            uploaded_at: inventory::unix_now(),
        };
        match self.inventory.put_plan_file(id, &file) {
            Ok(Some(old)) => {
                let _ = self.files.delete(&old).await;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = self.files.delete(&file.key).await;
                return Err(e.into());
            }
        }
        Ok(file)
    }

    /// Removes a data file no data set uses.
    pub async fn delete_data_file(&self, id: i64, name: &str) -> Result<(), PlanError> {
        let stored = self.get(id)?;
        let users: Vec<String> = stored
            .plan
            .thread_groups
            .iter()
            .filter(|g| g.csv_data_sets.iter().any(|s| s.file == name))
            .map(|g| g.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(problem(
                "file",
                format!(
                    "{name} is used by the CSV data set of {}; remove it there first",
                    users.join(", ")
                ),
            ));
        }
        let key = self.inventory.delete_plan_file(id, name)?;
        let _ = self.files.delete(&key).await;
        Ok(())
    }

    /// Load generators per room id: installed (enrolled, not revoked) and
    /// connected now.
    pub fn generators(&self, registry: &crate::gateway::Registry) -> HashMap<i64, RoomGenerators> {
        let connected: std::collections::HashSet<String> = registry
            .snapshot()
            .into_iter()
            .map(|a| a.id.to_string())
            .collect();
        let mut out: HashMap<i64, RoomGenerators> = HashMap::new();
        for server in self.inventory.servers(None).unwrap_or_default() {
            for a in server
                .agents
                .iter()
                .filter(|a| a.role == "jmeter" && !a.revoked)
            {
                let e = out.entry(server.room_id).or_default();
                e.installed += 1;
                if connected.contains(&a.id) {
                    e.connected += 1;
                }
            }
        }
        out
    }
}

/// A new file-store key for an uploaded zip.
pub fn bundle_key() -> String {
    format!("plans/bundles/{}.zip", &crate::auth::new_secret("")[..24])
}

fn data_key(plan: i64) -> String {
    format!(
        "plans/{plan}/data/{}",
        crate::auth::new_secret("")[..20].to_owned()
    )
}

async fn read_head(path: &Path) -> Result<Vec<u8>, FileError> {
    use tokio::io::AsyncReadExt;
    let io = |source| FileError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = tokio::fs::File::open(path).await.map_err(io)?;
    let mut head = Vec::with_capacity(64 * 1024);
    f.take(64 * 1024).read_to_end(&mut head).await.map_err(io)?;
    Ok(head)
}
