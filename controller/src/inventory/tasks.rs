//! Load-test tasks as stored: one row per run with the settings it was
//! started with, its generators and their shares of the rate, every action
//! with who and when, and the per-second results each generator reported
//! per sampler label (the first copy of a second is kept, so an agent
//! re-sending after a reconnect changes nothing).
//!
//! Stores what it is given: the runner (`loadtest::runner`) decides what
//! happens to a task; merging results is `loadtest::results`'.

use loadplan::RunSettings;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Error, Inventory, Result};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for the first step of its automatic schedule.
    Scheduled,
    /// Generators picked, artifact on its way, JMeter starting.
    Starting,
    Running,
    /// Asked to stop; waiting for the generators to end.
    Stopping,
    /// Every generator ended (by itself or stopped).
    Finished,
    /// Nothing ran, or every generator failed.
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Scheduled => "scheduled",
            TaskStatus::Starting => "starting",
            TaskStatus::Running => "running",
            TaskStatus::Stopping => "stopping",
            TaskStatus::Finished => "finished",
            TaskStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> TaskStatus {
        match s {
            "scheduled" => TaskStatus::Scheduled,
            "starting" => TaskStatus::Starting,
            "running" => TaskStatus::Running,
            "stopping" => TaskStatus::Stopping,
            "finished" => TaskStatus::Finished,
            _ => TaskStatus::Failed,
        }
    }

    /// Still going (or about to): generators may be busy with it.
    pub fn is_active(self) -> bool {
        !matches!(self, TaskStatus::Finished | TaskStatus::Failed)
    }
}

/// Where one generator is in a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorStatus {
    Starting,
    Running,
    Stopping,
    Ended,
    Failed,
    /// Out of contact for too long; the others keep their rate.
    Lost,
}

impl GeneratorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GeneratorStatus::Starting => "starting",
            GeneratorStatus::Running => "running",
            GeneratorStatus::Stopping => "stopping",
            GeneratorStatus::Ended => "ended",
            GeneratorStatus::Failed => "failed",
            GeneratorStatus::Lost => "lost",
        }
    }

    fn parse(s: &str) -> GeneratorStatus {
        match s {
            "starting" => GeneratorStatus::Starting,
            "running" => GeneratorStatus::Running,
            "stopping" => GeneratorStatus::Stopping,
            "ended" => GeneratorStatus::Ended,
            "lost" => GeneratorStatus::Lost,
            _ => GeneratorStatus::Failed,
        }
    }

    /// Takes part in the load now (its share counts in the total).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            GeneratorStatus::Starting | GeneratorStatus::Running | GeneratorStatus::Stopping
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredTask {
    pub id: i64,
    pub plan_id: Option<i64>,
    pub plan_name: String,
    pub room_id: Option<i64>,
    /// The run settings the task started with (rate changes are in
    /// `target` and the actions).
    pub settings: RunSettings,
    pub status: TaskStatus,
    /// TPS of the whole task now (TPS mode), or threads (thread mode).
    pub target: f64,
    /// Threads of each thread group on one generator.
    pub threads: u32,
    pub artifact_sha256: Option<String>,
    pub artifact_size: Option<u64>,
    /// Index of the next automatic-schedule step to apply.
    pub next_step: u32,
    pub created_by: String,
    pub created_at: u64,
    pub started_at: Option<u64>,
    /// When the load is planned to end (start + duration).
    pub ends_at: Option<u64>,
    pub ended_at: Option<u64>,
    pub error: Option<String>,
    /// Final totals (see `loadtest::results::Totals`), once over.
    pub totals: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskGenerator {
    pub agent_id: String,
    pub hostname: String,
    pub status: GeneratorStatus,
    /// Its share of the rate, samples per minute (TPS mode).
    pub per_min: Option<f64>,
    pub pid: Option<u32>,
    pub jmeter_version: Option<String>,
    /// Why it failed, ended or was lost.
    pub message: Option<String>,
    pub joined_at: u64,
    pub ended_at: Option<u64>,
    /// Samples the generator said it sent, once it ended.
    pub samples: Option<u64>,
}

impl TaskGenerator {
    /// How actions and messages name it: hosts often share a name.
    pub fn name(&self) -> String {
        generator_name(&self.hostname, &self.agent_id)
    }
}

/// `host (agent id)`.
pub fn generator_name(hostname: &str, agent_id: &str) -> String {
    format!("{hostname} ({agent_id})")
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskAction {
    pub at: u64,
    pub who: String,
    pub action: String,
    /// The task's total target (TPS or threads) from this action on, when
    /// the action changed it: the target line of the charts.
    pub target: Option<f64>,
}

/// One stored second of one label on one generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondRow {
    pub row: i64,
    pub agent_id: String,
    pub sec: i64,
    pub label: String,
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
    pub hist: Vec<u8>,
}

/// What a new task is created with.
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    pub plan_id: i64,
    pub plan_name: &'a str,
    pub room_id: Option<i64>,
    pub settings: &'a RunSettings,
    pub status: TaskStatus,
    pub target: f64,
    pub created_by: &'a str,
    pub now: u64,
}

const TASK_SELECT: &str = "SELECT id, plan_id, plan_name, room_id, settings, status, target,
        threads, artifact_sha256, artifact_size, next_step, created_by, created_at, started_at,
        ends_at, ended_at, error, totals FROM tasks";

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

fn json_err(i: usize, e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

fn task_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredTask> {
    let settings: String = r.get(4)?;
    let totals: Option<String> = r.get(17)?;
    Ok(StoredTask {
        id: r.get(0)?,
        plan_id: r.get(1)?,
        plan_name: r.get(2)?,
        room_id: r.get(3)?,
        settings: serde_json::from_str(&settings).map_err(|e| json_err(4, e))?,
        status: TaskStatus::parse(&r.get::<_, String>(5)?),
        target: r.get(6)?,
        threads: r.get::<_, i64>(7)?.max(0) as u32,
        artifact_sha256: r.get(8)?,
        artifact_size: opt_u64(r.get(9)?),
        next_step: r.get::<_, i64>(10)?.max(0) as u32,
        created_by: r.get(11)?,
        created_at: r.get::<_, i64>(12)?.max(0) as u64,
        started_at: opt_u64(r.get(13)?),
        ends_at: opt_u64(r.get(14)?),
        ended_at: opt_u64(r.get(15)?),
        error: r.get(16)?,
        totals: totals
            .map(|t| serde_json::from_str(&t).map_err(|e| json_err(17, e)))
            .transpose()?,
    })
}

fn generator_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskGenerator> {
    Ok(TaskGenerator {
        agent_id: r.get(0)?,
        hostname: r.get(1)?,
        status: GeneratorStatus::parse(&r.get::<_, String>(2)?),
        per_min: r.get(3)?,
        pid: r.get::<_, Option<i64>>(4)?.map(|p| p.max(0) as u32),
        jmeter_version: r.get(5)?,
        message: r.get(6)?,
        joined_at: r.get::<_, i64>(7)?.max(0) as u64,
        ended_at: opt_u64(r.get(8)?),
        samples: opt_u64(r.get(9)?),
    })
}

impl Inventory {
    pub fn create_task(&self, t: &NewTask<'_>) -> Result<i64> {
        let settings = serde_json::to_string(t.settings)
            .map_err(|e| Error::Conflict(format!("settings not storable: {e}")))?;
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "INSERT INTO tasks (plan_id, plan_name, room_id, settings, status, target,
                    created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    t.plan_id,
                    t.plan_name,
                    t.room_id,
                    settings,
                    t.status.as_str(),
                    t.target,
                    t.created_by,
                    t.now as i64
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO task_actions (task_id, at, who, action) VALUES (?1, ?2, ?3, ?4)",
                params![id, t.now as i64, t.created_by, "created the task"],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    pub fn task(&self, id: i64) -> Result<Option<StoredTask>> {
        self.with(|c| {
            c.query_row(&format!("{TASK_SELECT} WHERE id = ?1"), [id], task_of)
                .optional()
        })
    }

    /// Newest first, at most `limit`.
    pub fn tasks(&self, limit: u32) -> Result<Vec<StoredTask>> {
        self.with(|c| {
            let mut st = c.prepare(&format!("{TASK_SELECT} ORDER BY id DESC LIMIT ?1"))?;
            let rows = st.query_map([limit], task_of)?;
            rows.collect()
        })
    }

    /// Tasks not over yet (the runner's work list after a restart).
    pub fn active_tasks(&self) -> Result<Vec<StoredTask>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "{TASK_SELECT} WHERE status NOT IN ('finished', 'failed') ORDER BY id"
            ))?;
            let rows = st.query_map([], task_of)?;
            rows.collect()
        })
    }

    pub fn delete_task(&self, id: i64) -> Result<()> {
        let n = self.with(|c| c.execute("DELETE FROM tasks WHERE id = ?1", [id]))?;
        if n == 0 {
            return Err(Error::NotFound("task"));
        }
        Ok(())
    }

    /// Sets the status, and `started_at` / `ended_at` when it moves there
    /// for the first time.
    pub fn set_task_status(&self, id: i64, status: TaskStatus, now: u64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE tasks SET status = ?2,
                    started_at = CASE WHEN ?2 = 'running' AND started_at IS NULL THEN ?3 ELSE started_at END,
                    ended_at = CASE WHEN ?2 IN ('finished', 'failed') AND ended_at IS NULL THEN ?3 ELSE ended_at END
                 WHERE id = ?1",
                params![id, status.as_str(), now as i64],
            )
            .map(drop)
        })
    }

    /// Records what a launch decided: artifact, threads per group, the
    /// planned end.
    pub fn set_task_launch(
        &self,
        id: i64,
        sha256: &str,
        size: u64,
        threads: u32,
        ends_at: u64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE tasks SET artifact_sha256 = ?2, artifact_size = ?3, threads = ?4,
                    ends_at = ?5, status = 'starting' WHERE id = ?1",
                params![id, sha256, size as i64, threads, ends_at as i64],
            )
            .map(drop)
        })
    }

    pub fn set_task_target(&self, id: i64, target: f64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE tasks SET target = ?2 WHERE id = ?1",
                params![id, target],
            )
            .map(drop)
        })
    }

    pub fn set_task_error(&self, id: i64, error: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE tasks SET error = ?2 WHERE id = ?1",
                params![id, error],
            )
            .map(drop)
        })
    }

    pub fn set_task_totals(&self, id: i64, totals: &serde_json::Value) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE tasks SET totals = ?2 WHERE id = ?1",
                params![id, totals.to_string()],
            )
            .map(drop)
        })
    }

    /// Moves the schedule on to step `next` if it is still at `from`, with
    /// the action, in one transaction: a step is applied once even across
    /// a restart. False when another call moved it first.
    pub fn advance_task_schedule(
        &self,
        id: i64,
        from: u32,
        next: u32,
        action: &str,
        target: Option<f64>,
        now: u64,
    ) -> Result<bool> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let n = tx.execute(
                "UPDATE tasks SET next_step = ?3 WHERE id = ?1 AND next_step = ?2",
                params![id, from, next],
            )?;
            if n == 1 {
                tx.execute(
                    "INSERT INTO task_actions (task_id, at, who, action, target)
                     VALUES (?1, ?2, 'schedule', ?3, ?4)",
                    params![id, now as i64, action, target],
                )?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
    }

    /// Logs an action; `target` when it set the task's total target.
    pub fn log_task_action(
        &self,
        id: i64,
        who: &str,
        action: &str,
        target: Option<f64>,
        now: u64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO task_actions (task_id, at, who, action, target)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, now as i64, who, action, target],
            )
            .map(drop)
        })
    }

    pub fn task_actions(&self, id: i64) -> Result<Vec<TaskAction>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT at, who, action, target FROM task_actions WHERE task_id = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([id], |r| {
                Ok(TaskAction {
                    at: r.get::<_, i64>(0)?.max(0) as u64,
                    who: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Adds a generator to a task, or puts one that left back in.
    pub fn put_task_generator(
        &self,
        task: i64,
        agent_id: &str,
        hostname: &str,
        per_min: Option<f64>,
        now: u64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO task_generators (task_id, agent_id, hostname, status, per_min, joined_at)
                 VALUES (?1, ?2, ?3, 'starting', ?4, ?5)
                 ON CONFLICT (task_id, agent_id) DO UPDATE SET status = 'starting',
                    per_min = excluded.per_min, pid = NULL, message = NULL, ended_at = NULL, samples = NULL,
                    joined_at = excluded.joined_at",
                params![task, agent_id, hostname, per_min, now as i64],
            )
            .map(drop)
        })
    }

    pub fn task_generators(&self, task: i64) -> Result<Vec<TaskGenerator>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT agent_id, hostname, status, per_min, pid, jmeter_version, message,
                    joined_at, ended_at, samples FROM task_generators WHERE task_id = ?1
                 ORDER BY joined_at, agent_id",
            )?;
            let rows = st.query_map([task], generator_of)?;
            rows.collect()
        })
    }

    /// Agents taking part in any task not over yet, with the task.
    pub fn busy_generators(&self) -> Result<Vec<(String, i64)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT g.agent_id, g.task_id FROM task_generators g JOIN tasks t ON t.id = g.task_id
                 WHERE g.status IN ('starting', 'running', 'stopping', 'lost')
                   AND t.status NOT IN ('finished', 'failed')",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Sets a generator's status (and `ended_at` when it is over); `message`
    /// replaces the old one when given.
    pub fn set_generator_status(
        &self,
        task: i64,
        agent_id: &str,
        status: GeneratorStatus,
        message: Option<&str>,
        now: u64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE task_generators SET status = ?3, message = COALESCE(?4, message),
                    ended_at = CASE WHEN ?3 IN ('ended', 'failed') THEN ?5 ELSE NULL END
                 WHERE task_id = ?1 AND agent_id = ?2",
                params![task, agent_id, status.as_str(), message, now as i64],
            )
            .map(drop)
        })
    }

    pub fn set_generator_started(
        &self,
        task: i64,
        agent_id: &str,
        pid: u32,
        jmeter_version: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE task_generators SET status = 'running', pid = ?3, jmeter_version = ?4
                 WHERE task_id = ?1 AND agent_id = ?2 AND status IN ('starting', 'lost')",
                params![task, agent_id, pid, jmeter_version],
            )
            .map(drop)
        })
    }

    pub fn set_generator_samples(&self, task: i64, agent_id: &str, samples: u64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE task_generators SET samples = ?3 WHERE task_id = ?1 AND agent_id = ?2",
                params![task, agent_id, samples as i64],
            )
            .map(drop)
        })
    }

    /// Samples stored per generator of a task.
    pub fn stored_samples(&self, task: i64) -> Result<std::collections::HashMap<String, u64>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT agent_id, SUM(count) FROM task_seconds WHERE task_id = ?1 GROUP BY agent_id",
            )?;
            let rows = st.query_map([task], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?;
            rows.collect()
        })
    }

    pub fn set_generator_rate(&self, task: i64, agent_id: &str, per_min: f64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE task_generators SET per_min = ?3 WHERE task_id = ?1 AND agent_id = ?2",
                params![task, agent_id, per_min],
            )
            .map(drop)
        })
    }

    /// Stores seconds a generator reported. A second (agent, second, label)
    /// already stored is replaced only by a copy with more samples (a late
    /// piece merged in by the agent), so a replay changes nothing. A
    /// replaced second gets a new row number: live pages see it again.
    /// Returns how many were new or replaced.
    pub fn insert_task_seconds(
        &self,
        task: i64,
        agent_id: &str,
        seconds: &[protocol::load::LabelSecond],
    ) -> Result<usize> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            let mut n = 0;
            {
                let mut old = tx.prepare_cached(
                    "DELETE FROM task_seconds WHERE task_id = ?1 AND agent_id = ?2 AND sec = ?3
                        AND label = ?4 AND count < ?5",
                )?;
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO task_seconds
                        (task_id, agent_id, sec, label, count, errors, bytes, hist)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for s in seconds {
                    old.execute(params![task, agent_id, s.unix_sec, s.label, s.count as i64])?;
                    n += st.execute(params![
                        task,
                        agent_id,
                        s.unix_sec,
                        s.label,
                        s.count as i64,
                        s.errors as i64,
                        s.bytes as i64,
                        s.hist
                    ])?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
    }

    /// Stored seconds of a task with a row number over `after_row`, in
    /// row order (what arrived since the last look). A range scan of the
    /// newest rows (`+task_id` keeps SQLite off the task index, which
    /// would read the whole task).
    pub fn task_seconds_after(&self, task: i64, after_row: i64) -> Result<Vec<SecondRow>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT rowid, agent_id, sec, label, count, errors, bytes, hist FROM task_seconds
                 WHERE rowid > ?2 AND +task_id = ?1 ORDER BY rowid",
            )?;
            let rows = st.query_map(params![task, after_row], second_of)?;
            rows.collect()
        })
    }

    /// Stored seconds of a task within `[from, to]`.
    pub fn task_seconds_between(&self, task: i64, from: i64, to: i64) -> Result<Vec<SecondRow>> {
        self.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT rowid, agent_id, sec, label, count, errors, bytes, hist FROM task_seconds
                 WHERE task_id = ?1 AND sec BETWEEN ?2 AND ?3 ORDER BY sec",
            )?;
            let rows = st.query_map(params![task, from, to], second_of)?;
            rows.collect()
        })
    }
}

fn second_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<SecondRow> {
    Ok(SecondRow {
        row: r.get(0)?,
        agent_id: r.get(1)?,
        sec: r.get(2)?,
        label: r.get(3)?,
        count: r.get::<_, i64>(4)?.max(0) as u64,
        errors: r.get::<_, i64>(5)?.max(0) as u64,
        bytes: r.get::<_, i64>(6)?.max(0) as u64,
        hist: r.get(7)?,
    })
}
