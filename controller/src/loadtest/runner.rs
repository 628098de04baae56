//! The runner: turns plans into tasks running on load generators
//! (agent-jmeter) and keeps them going.
//!
//! Owns what happens to a task: picking idle generators of the plan's room,
//! splitting the rate across them (re-split on every change, attach and
//! stop), the automatic schedule, noticing lost generators, and the final
//! totals. The database is the truth: every decision is stored before it
//! is sent, and a generator that reconnects (or a controller that
//! restarted) is brought back in line with it. Who may call this is
//! `auth::policy`'s business; the wire is `gateway`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loadplan::jmx::RunProperties;
use loadplan::{Load, Schedule};
use protocol::ControllerMsg;
use protocol::load::{GeneratorStatus as AgentStatus, JmeterInfo, StartTask, TaskEvent, TaskFile};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{PlanError, Plans, results};
use crate::gateway::Registry;
use crate::inventory::{
    self, GeneratorStatus, Inventory, NewTask, StoredTask, TaskAction, TaskGenerator, TaskStatus,
    unix_now,
};

/// A generator out of contact this long is marked lost.
const LOST_AFTER_SECS: u64 = 20;
/// How long past its planned end a task may run before it is stopped, and
/// a lost generator may still come back before the task is closed.
const OVERRUN_SECS: u64 = 60;
/// How long a file upload may pause before it is given up.
const FILE_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a task whose generators all ended waits for the seconds they
/// announced (they come on another stream than the end).
const LATE_SECONDS_WAIT: u64 = 10;
/// A hot-attached generator needs this much run time left to be worth it.
const MIN_ATTACH_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The request makes no sense (a TPS of 0, a thread-mode rate change).
    #[error("{0}")]
    Invalid(String),
    /// Not possible now (not enough idle generators, the task is over).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
    #[error("{0}")]
    Io(String),
}

/// A generator as the task pages show it beside a task: who could join.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub agent_id: String,
    pub hostname: String,
    pub server: String,
    /// idle, busy (task id), offline, or unusable (why).
    pub state: String,
    pub busy_task: Option<i64>,
    pub problem: Option<String>,
    pub jmeter_version: Option<String>,
}

impl Candidate {
    /// How actions and messages name it: hosts often share a name.
    pub fn name(&self) -> String {
        crate::inventory::generator_name(&self.hostname, &self.agent_id)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskDetail {
    pub task: StoredTask,
    pub generators: Vec<TaskGenerator>,
    pub actions: Vec<TaskAction>,
    /// Whether the run is in TPS mode (rate changes possible).
    pub tps_mode: bool,
}

struct FileWait {
    agent_id: String,
    chunks: mpsc::Sender<Result<(Vec<u8>, bool), String>>,
}

#[derive(Default)]
struct State {
    /// What each connected generator said it can run.
    jmeter: HashMap<String, Result<JmeterInfo, String>>,
    /// Generators with active tasks that are out of contact, since when.
    away: HashMap<String, u64>,
    files: HashMap<u64, FileWait>,
    next_request: u64,
    /// Tasks known to be active (refreshed every tick, a task leaves it
    /// when it closes): arriving seconds need no database look-up to know
    /// whether the totals must be redone.
    active: std::collections::HashSet<i64>,
    /// Tasks whose generators all ended, waiting for their last seconds.
    closing: std::collections::HashSet<i64>,
}

pub struct Runner {
    inventory: Arc<Inventory>,
    registry: Arc<Registry>,
    plans: Plans,
    dir: PathBuf,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

fn per_min_of(tps: f64) -> f64 {
    tps * 60.0
}

fn fmt_tps(tps: f64) -> String {
    let r = (tps * 100.0).round() / 100.0;
    format!("{r}")
}

impl Runner {
    /// `dir` keeps each task's artifact and fetched files.
    pub fn new(
        inventory: Arc<Inventory>,
        registry: Arc<Registry>,
        plans: Plans,
        dir: PathBuf,
    ) -> Runner {
        let (changed, _) = watch::channel(0);
        Runner {
            inventory,
            registry,
            plans,
            dir,
            state: Mutex::new(State::default()),
            changed,
        }
    }

    /// Bumped on every change to any task (status, generators, seconds):
    /// live pages wait on it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn task_dir(&self, id: i64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// The artifact (the exact JMeter files) of a task.
    pub fn artifact_file(&self, id: i64) -> PathBuf {
        self.task_dir(id).join("artifact.zip")
    }

    fn log(&self, id: i64, who: &str, action: &str) {
        self.log_target(id, who, action, None);
    }

    /// Logs an action that set the task's total target.
    fn log_target(&self, id: i64, who: &str, action: &str, target: Option<f64>) {
        info!(task = id, who, action, "task action");
        if let Err(e) = self
            .inventory
            .log_task_action(id, who, action, target, unix_now())
        {
            warn!(task = id, error = %e, "cannot log a task action");
        }
    }

    fn task(&self, id: i64) -> Result<StoredTask, TaskError> {
        self.inventory.task(id)?.ok_or(TaskError::NotFound("task"))
    }

    pub fn detail(&self, id: i64) -> Result<TaskDetail, TaskError> {
        let task = self.task(id)?;
        let tps_mode = matches!(task.settings.load, Load::Tps { .. });
        Ok(TaskDetail {
            generators: self.inventory.task_generators(id)?,
            actions: self.inventory.task_actions(id)?,
            task,
            tps_mode,
        })
    }

    pub fn list(&self, limit: u32) -> Result<Vec<StoredTask>, TaskError> {
        Ok(self.inventory.tasks(limit)?)
    }

    /// The merged per-second series of a task.
    pub fn series(&self, id: i64) -> Result<results::Series, TaskError> {
        self.task(id)?;
        let rows = self
            .inventory
            .task_seconds_between(id, i64::MIN, i64::MAX)?;
        Ok(results::series(&rows))
    }

    /// Every load generator of a room and whether it could take part now.
    pub fn candidates(&self, room_id: i64) -> Result<Vec<Candidate>, TaskError> {
        let busy: HashMap<String, i64> = self.inventory.busy_generators()?.into_iter().collect();
        let state = self.state.lock().expect("runner state");
        let mut out = Vec::new();
        for server in self.inventory.servers(None)? {
            if server.room_id != room_id {
                continue;
            }
            for a in server
                .agents
                .iter()
                .filter(|a| a.role == "jmeter" && !a.revoked)
            {
                let live = self.registry.get(&a.id.parse().map_err(TaskError::Io)?);
                let jmeter = state.jmeter.get(&a.id);
                let (st, problem) = match (&live, jmeter, busy.get(&a.id)) {
                    (None, _, _) => ("offline", None),
                    (Some(_), _, Some(_)) => ("busy", None),
                    (Some(_), Some(Err(e)), None) => ("unusable", Some(e.clone())),
                    (Some(_), None, None) => (
                        "unusable",
                        Some("has not reported whether it can run JMeter yet".to_string()),
                    ),
                    (Some(_), Some(Ok(_)), None) => ("idle", None),
                };
                out.push(Candidate {
                    agent_id: a.id.clone(),
                    hostname: live
                        .as_ref()
                        .map(|l| l.hostname.clone())
                        .unwrap_or_else(|| server.name.clone()),
                    server: server.name.clone(),
                    state: st.to_string(),
                    busy_task: busy.get(&a.id).copied(),
                    problem,
                    jmeter_version: jmeter
                        .and_then(|j| j.as_ref().ok())
                        .map(|j| j.jmeter_version.clone()),
                });
            }
        }
        out.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        Ok(out)
    }

    /// Picks `n` idle generators of `room`, or says why there are not
    /// enough.
    fn pick(&self, room_id: i64, n: usize) -> Result<Vec<Candidate>, TaskError> {
        let all = self.candidates(room_id)?;
        let idle: Vec<Candidate> = all.iter().filter(|c| c.state == "idle").cloned().collect();
        if idle.len() >= n {
            return Ok(idle.into_iter().take(n).collect());
        }
        let mut why = Vec::new();
        for c in &all {
            match c.state.as_str() {
                "offline" => why.push(format!("{} is not connected", c.name())),
                "busy" => why.push(format!(
                    "{} runs task {}",
                    c.name(),
                    c.busy_task.unwrap_or_default()
                )),
                "unusable" => why.push(format!(
                    "{} cannot run JMeter: {}",
                    c.name(),
                    c.problem.as_deref().unwrap_or("")
                )),
                _ => {}
            }
        }
        Err(TaskError::Conflict(format!(
            "needs {n} idle load generator(s) in the plan's room, {} idle of {} installed{}",
            idle.len(),
            all.len(),
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join("; "))
            }
        )))
    }

    /// Starts a task from plan `plan_id`: builds its artifact, then runs it
    /// now (manual) or waits for the first step of its schedule.
    pub async fn start(&self, plan_id: i64, who: &str) -> Result<i64, TaskError> {
        let stored = self.plans.get(plan_id)?;
        let settings = stored.plan.run.clone();
        let room = settings.room_id.ok_or_else(|| {
            TaskError::Invalid("the plan has no room: choose where its generators are".into())
        })?;
        let now = unix_now();
        loadplan::validate::check_run(&settings, &self.plans.settings.limits(), now as i64)
            .map_err(|p| TaskError::Plan(PlanError::Problems(p)))?;
        let scheduled = matches!(settings.schedule, Schedule::Automatic { .. });
        if !scheduled {
            // Fail before anything is stored when it cannot run.
            self.pick(room, settings.generators.max(1) as usize)?;
        }
        let target = match settings.load {
            Load::Tps { tps } => tps,
            Load::Threads { threads } => f64::from(threads),
        };
        let id = self.inventory.create_task(&NewTask {
            plan_id,
            plan_name: &stored.plan.name,
            room_id: Some(room),
            settings: &settings,
            status: if scheduled {
                TaskStatus::Scheduled
            } else {
                TaskStatus::Starting
            },
            target,
            created_by: who,
            now,
        })?;
        let built = async {
            let dir = self.task_dir(id);
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| TaskError::Io(format!("{}: {e}", dir.display())))?;
            self.plans
                .build_artifact(plan_id, &self.artifact_file(id))
                .await
                .map_err(TaskError::from)
        }
        .await;
        let files = match built {
            Ok(f) => f,
            Err(e) => {
                self.fail_task(id, &format!("the run files could not be built: {e}"));
                return Err(e);
            }
        };
        let threads = files.run.first().map(|p| p.threads).unwrap_or(1);
        self.inventory
            .set_task_launch(id, &files.sha256, files.size, threads, 0)?;
        if scheduled {
            self.inventory
                .set_task_status(id, TaskStatus::Scheduled, now)?;
            self.log(id, who, "scheduled the task");
        } else if let Err(e) = self.launch(id, 100, who, &files.run) {
            self.fail_task(id, &e.to_string());
            return Err(e);
        }
        self.notify();
        Ok(id)
    }

    fn fail_task(&self, id: i64, why: &str) {
        let _ = self.inventory.set_task_error(id, why);
        let _ = self
            .inventory
            .set_task_status(id, TaskStatus::Failed, unix_now());
        self.log(id, "controller", &format!("failed: {why}"));
        self.notify();
    }

    /// Picks generators and sends them the task at `percent` of its target.
    fn launch(
        &self,
        id: i64,
        percent: u32,
        who: &str,
        run: &[RunProperties],
    ) -> Result<(), TaskError> {
        let task = self.task(id)?;
        let room = task.room_id.ok_or_else(|| {
            TaskError::Conflict("the task's room was deleted; nothing can run it".into())
        })?;
        let n = task.settings.generators.max(1) as usize;
        let picked = self.pick(room, n)?;
        let now = unix_now();
        let duration = u64::from(task.settings.duration_secs);
        let (sha, size) = (
            task.artifact_sha256.clone().unwrap_or_default(),
            task.artifact_size.unwrap_or_default(),
        );
        self.inventory
            .set_task_launch(id, &sha, size, task.threads, now + duration)?;
        let share = match task.settings.load {
            Load::Tps { tps } => Some(per_min_of(tps * f64::from(percent) / 100.0) / n as f64),
            Load::Threads { .. } => None,
        };
        let mut names = Vec::new();
        for (i, c) in picked.iter().enumerate() {
            self.inventory
                .put_task_generator(id, &c.agent_id, &c.hostname, share, now)?;
            let props = RunProperties {
                threads: run.get(i).map(|p| p.threads).unwrap_or(task.threads),
                throughput_per_min: share,
                duration_secs: task.settings.duration_secs,
            };
            self.send_start(&task, &c.agent_id, &props);
            names.push(c.name());
        }
        let what = match share {
            Some(s) => format!(
                "started on {} at {} TPS ({} TPS each)",
                names.join(", "),
                fmt_tps(s * n as f64 / 60.0),
                fmt_tps(s / 60.0)
            ),
            None => format!(
                "started on {} with {} threads per thread group on each",
                names.join(", "),
                run.first().map(|p| p.threads).unwrap_or(task.threads)
            ),
        };
        let target = task.target * f64::from(percent) / 100.0;
        if percent != 100 {
            self.inventory.set_task_target(id, target)?;
        }
        self.log_target(id, who, &what, Some(target));
        Ok(())
    }

    /// Sends a generator its start: the task's artifact with `props`.
    fn send_start(&self, task: &StoredTask, agent: &str, props: &RunProperties) {
        let msg = ControllerMsg::StartTask(StartTask {
            task_id: task.id as u64,
            sha256: task.artifact_sha256.clone().unwrap_or_default(),
            size: task.artifact_size.unwrap_or_default(),
            properties: props.to_args(),
            debug: task.settings.debug,
        });
        if !self.send(agent, msg) {
            let _ = self.inventory.set_generator_status(
                task.id,
                agent,
                GeneratorStatus::Failed,
                Some("not reachable when the task was sent"),
                unix_now(),
            );
        }
    }

    /// Starts a generator into a running task (hot-attach, or a start
    /// that never arrived) for the time the run has left.
    fn start_for_the_rest(&self, task: &StoredTask, agent: &str, per_min: Option<f64>, now: u64) {
        let left = task.ends_at.unwrap_or(now).saturating_sub(now).max(1);
        let props = RunProperties {
            threads: task.threads,
            throughput_per_min: per_min,
            duration_secs: u32::try_from(left).unwrap_or(u32::MAX),
        };
        self.send_start(task, agent, &props);
    }

    fn send(&self, agent: &str, msg: ControllerMsg) -> bool {
        match agent.parse() {
            Ok(id) => self.registry.send(&id, msg),
            Err(_) => false,
        }
    }

    fn running_task(&self, id: i64) -> Result<StoredTask, TaskError> {
        let task = self.task(id)?;
        match task.status {
            TaskStatus::Starting | TaskStatus::Running => Ok(task),
            TaskStatus::Scheduled => Err(TaskError::Conflict(
                "the task waits for its scheduled start".into(),
            )),
            s => Err(TaskError::Conflict(format!("the task is {}", s.as_str()))),
        }
    }

    fn check_tps(&self, tps: f64) -> Result<(), TaskError> {
        let max = self.plans.settings.max_tps;
        if !(tps.is_finite() && tps > 0.0 && tps <= max) {
            return Err(TaskError::Invalid(format!(
                "TPS must be more than 0 and at most {max} (this controller's limit); got {tps}"
            )));
        }
        Ok(())
    }

    fn tps_task(&self, id: i64) -> Result<StoredTask, TaskError> {
        let task = self.running_task(id)?;
        if !matches!(task.settings.load, Load::Tps { .. }) {
            return Err(TaskError::Invalid(
                "this task runs a fixed number of threads; rate changes need a TPS-mode plan"
                    .into(),
            ));
        }
        Ok(task)
    }

    /// Generators of a task taking part now.
    fn active(&self, id: i64) -> Result<Vec<TaskGenerator>, TaskError> {
        Ok(self
            .inventory
            .task_generators(id)?
            .into_iter()
            .filter(|g| {
                matches!(
                    g.status,
                    GeneratorStatus::Starting | GeneratorStatus::Running
                )
            })
            .collect())
    }

    /// Splits `tps` evenly over the active generators and sends it.
    fn split(&self, id: i64, tps: f64, gens: &[TaskGenerator]) -> Result<f64, TaskError> {
        if gens.is_empty() {
            return Err(TaskError::Conflict(
                "no generator of the task is running".into(),
            ));
        }
        let each = per_min_of(tps) / gens.len() as f64;
        for g in gens {
            self.inventory.set_generator_rate(id, &g.agent_id, each)?;
            self.send(
                &g.agent_id,
                ControllerMsg::SetRate {
                    task_id: id as u64,
                    per_min: each,
                },
            );
        }
        self.inventory.set_task_target(id, tps)?;
        Ok(each / 60.0)
    }

    /// Changes the task's total rate, split over its running generators.
    pub fn set_rate(&self, id: i64, tps: f64, who: &str) -> Result<(), TaskError> {
        self.check_tps(tps)?;
        let task = self.tps_task(id)?;
        let gens = self.active(id)?;
        let each = self.split(id, tps, &gens)?;
        self.log_target(
            id,
            who,
            &format!(
                "changed TPS to {} ({} TPS on each of {} generators){}",
                fmt_tps(tps),
                fmt_tps(each),
                gens.len(),
                self.thread_warning(&task, each)
            ),
            Some(tps),
        );
        self.notify();
        Ok(())
    }

    /// Threads are sized when a task starts (Little's law on the plan's
    /// rate and `expected_rt_ms`); a rate far above it may need more
    /// than they can give at the response times measured now. Said in the
    /// action, never refused: the estimate is rough.
    fn thread_warning(&self, task: &StoredTask, per_generator: f64) -> String {
        let now = unix_now() as i64;
        let Ok(rows) = self
            .inventory
            .task_seconds_between(task.id, now - 6, now - 1)
        else {
            return String::new();
        };
        let mut acc = results::Acc::default();
        for r in &rows {
            acc.add(r);
        }
        let mean_ms = acc.point(0).mean_ms;
        if acc.count == 0 || mean_ms <= 0.0 || task.threads == 0 {
            return String::new();
        }
        let capacity = f64::from(task.threads) * 1000.0 / mean_ms;
        if per_generator <= capacity * 0.8 {
            return String::new();
        }
        format!(
            "; warning: {} threads per thread group deliver about {} TPS at the {:.0} ms mean response time of the last seconds",
            task.threads,
            fmt_tps(capacity),
            mean_ms
        )
    }

    /// Changes one generator's rate; the task's total follows.
    pub fn set_generator_rate(
        &self,
        id: i64,
        agent: &str,
        tps: f64,
        who: &str,
    ) -> Result<(), TaskError> {
        self.check_tps(tps)?;
        self.tps_task(id)?;
        let gens = self.active(id)?;
        let Some(g) = gens.iter().find(|g| g.agent_id == agent) else {
            return Err(TaskError::Conflict(
                "that generator is not running this task".into(),
            ));
        };
        self.inventory
            .set_generator_rate(id, agent, per_min_of(tps))?;
        self.send(
            agent,
            ControllerMsg::SetRate {
                task_id: id as u64,
                per_min: per_min_of(tps),
            },
        );
        let total: f64 = gens
            .iter()
            .map(|o| {
                if o.agent_id == agent {
                    tps
                } else {
                    o.per_min.unwrap_or(0.0) / 60.0
                }
            })
            .sum();
        self.inventory.set_task_target(id, total)?;
        self.log_target(
            id,
            who,
            &format!(
                "changed the TPS of {} to {} (task total {})",
                g.name(),
                fmt_tps(tps),
                fmt_tps(total)
            ),
            Some(total),
        );
        self.notify();
        Ok(())
    }

    /// Starts another idle generator of the room into a running task and
    /// re-splits the rate (hot-attach). Returns the generator's agent id.
    pub fn attach(&self, id: i64, agent: Option<&str>, who: &str) -> Result<String, TaskError> {
        let task = self.running_task(id)?;
        let room = task
            .room_id
            .ok_or_else(|| TaskError::Conflict("the task's room was deleted".into()))?;
        let now = unix_now();
        let left = task.ends_at.unwrap_or(now).saturating_sub(now);
        if left < MIN_ATTACH_SECS {
            return Err(TaskError::Conflict(format!(
                "the run ends in {left} s; nothing to attach to"
            )));
        }
        let candidates = self.candidates(room)?;
        let c = match agent {
            Some(a) => candidates
                .into_iter()
                .find(|c| c.agent_id == a)
                .ok_or_else(|| {
                    TaskError::Conflict("that generator is not in the task's room".into())
                })?,
            None => self.pick(room, 1)?.remove(0),
        };
        if c.state != "idle" {
            return Err(TaskError::Conflict(format!(
                "{} is {}{}",
                c.name(),
                c.state,
                c.problem
                    .as_deref()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default()
            )));
        }
        let gens = self.active(id)?;
        let tps_mode = matches!(task.settings.load, Load::Tps { .. });
        let each = tps_mode.then(|| per_min_of(task.target) / (gens.len() + 1) as f64);
        self.inventory
            .put_task_generator(id, &c.agent_id, &c.hostname, each, now)?;
        // TPS mode: the others keep their share until the new one sends
        // (`settle_attach`), so the total never dips while its JMeter
        // boots; it runs over by one share for about a second instead.
        if each.is_none() {
            self.inventory
                .set_task_target(id, task.target + f64::from(task.threads))?;
        }
        self.start_for_the_rest(&task, &c.agent_id, each, now);
        let what = match each {
            Some(e) => format!(
                "attached {} ({} TPS on each of {} generators once it sends)",
                c.name(),
                fmt_tps(e / 60.0),
                gens.len() + 1
            ),
            None => format!("attached {} with {} threads", c.name(), task.threads),
        };
        let target = match each {
            Some(_) => None,
            None => Some(task.target + f64::from(task.threads)),
        };
        self.log_target(id, who, &what, target);
        self.notify();
        Ok(c.agent_id)
    }

    /// After a hot-attach the shares add up to more than the target until
    /// the new generator sends: once every running generator has samples
    /// in the last seconds, the target is split evenly again. Stored
    /// shares are the state, so this also completes after a restart.
    fn settle_attach(&self, task: &StoredTask) {
        if task.status != TaskStatus::Running || !matches!(task.settings.load, Load::Tps { .. }) {
            return;
        }
        let Ok(gens) = self.active(task.id) else {
            return;
        };
        let shares: f64 = gens.iter().map(|g| g.per_min.unwrap_or(0.0)).sum();
        if gens.is_empty() || shares <= per_min_of(task.target) * 1.001 {
            return;
        }
        let now = unix_now() as i64;
        let Ok(rows) = self.inventory.task_seconds_between(task.id, now - 3, now) else {
            return;
        };
        let sending: std::collections::HashSet<&str> = rows
            .iter()
            .filter(|r| r.count > 0)
            .map(|r| r.agent_id.as_str())
            .collect();
        if !gens.iter().all(|g| sending.contains(g.agent_id.as_str())) {
            return;
        }
        if let Ok(each) = self.split(task.id, task.target, &gens) {
            self.log(
                task.id,
                "controller",
                &format!(
                    "all {} generators send: {} TPS on each",
                    gens.len(),
                    fmt_tps(each)
                ),
            );
            self.notify();
        }
    }

    /// Stops one generator; the others take over its share (TPS mode).
    pub fn stop_generator(&self, id: i64, agent: &str, who: &str) -> Result<(), TaskError> {
        let task = self.running_task(id)?;
        let gens = self.active(id)?;
        let Some(g) = gens.iter().find(|g| g.agent_id == agent) else {
            return Err(TaskError::Conflict(
                "that generator is not running this task".into(),
            ));
        };
        self.inventory.set_generator_status(
            id,
            agent,
            GeneratorStatus::Stopping,
            None,
            unix_now(),
        )?;
        self.send(agent, ControllerMsg::StopTask { task_id: id as u64 });
        let rest: Vec<TaskGenerator> = gens
            .iter()
            .filter(|o| o.agent_id != agent)
            .cloned()
            .collect();
        let what = if matches!(task.settings.load, Load::Tps { .. }) && !rest.is_empty() {
            let each = self.split(id, task.target, &rest)?;
            format!(
                "stopped {} ({} TPS on each of the {} left)",
                g.name(),
                fmt_tps(each),
                rest.len()
            )
        } else {
            format!("stopped {}", g.name())
        };
        self.log(id, who, &what);
        self.notify();
        Ok(())
    }

    /// Stops the whole task (or cancels it before its scheduled start).
    pub fn stop(&self, id: i64, who: &str) -> Result<(), TaskError> {
        let task = self.task(id)?;
        let now = unix_now();
        match task.status {
            TaskStatus::Scheduled => {
                self.inventory
                    .set_task_status(id, TaskStatus::Finished, now)?;
                self.log(id, who, "cancelled the task before its scheduled start");
            }
            TaskStatus::Starting | TaskStatus::Running | TaskStatus::Stopping => {
                self.inventory
                    .set_task_status(id, TaskStatus::Stopping, now)?;
                for g in self.inventory.task_generators(id)? {
                    if g.status.is_active() {
                        self.inventory.set_generator_status(
                            id,
                            &g.agent_id,
                            GeneratorStatus::Stopping,
                            None,
                            now,
                        )?;
                        self.send(&g.agent_id, ControllerMsg::StopTask { task_id: id as u64 });
                    }
                }
                self.log(id, who, "stopped the task");
                self.check_over(id);
            }
            TaskStatus::Finished | TaskStatus::Failed => {
                return Err(TaskError::Conflict(format!(
                    "the task is {} already",
                    task.status.as_str()
                )));
            }
        }
        self.notify();
        Ok(())
    }

    /// Deletes a task that is over, with its files.
    pub async fn delete(&self, id: i64) -> Result<(), TaskError> {
        let task = self.task(id)?;
        if task.status.is_active() {
            return Err(TaskError::Conflict(
                "the task is still active: stop it first".into(),
            ));
        }
        self.inventory.delete_task(id)?;
        let _ = tokio::fs::remove_dir_all(self.task_dir(id)).await;
        self.notify();
        Ok(())
    }

    /// Closes a task once no generator takes part any more, with its
    /// totals.
    fn check_over(&self, id: i64) {
        let Ok(task) = self.task(id) else { return };
        if !task.status.is_active() || task.status == TaskStatus::Scheduled {
            return;
        }
        let Ok(gens) = self.inventory.task_generators(id) else {
            return;
        };
        if gens.iter().any(|g| g.status.is_active()) {
            return;
        }
        let now = unix_now();
        let lost = gens.iter().any(|g| g.status == GeneratorStatus::Lost);
        if lost && now < task.ends_at.unwrap_or(0) + OVERRUN_SECS {
            // A lost generator may still come back while the run lasts.
            return;
        }
        // The last seconds travel on another stream than the end: wait
        // (a little) until every sample a generator announced is stored.
        let stored = self.inventory.stored_samples(id).unwrap_or_default();
        let missing = gens.iter().any(|g| {
            g.samples
                .is_some_and(|n| stored.get(&g.agent_id).copied().unwrap_or(0) < n)
                && now < g.ended_at.unwrap_or(0) + LATE_SECONDS_WAIT
        });
        {
            let mut st = self.state.lock().expect("runner state");
            if missing {
                st.closing.insert(id);
                return;
            }
            st.closing.remove(&id);
        }
        let ran = gens
            .iter()
            .any(|g| g.status == GeneratorStatus::Ended || g.pid.is_some());
        let status = if ran {
            TaskStatus::Finished
        } else {
            TaskStatus::Failed
        };
        if !ran {
            let why = gens
                .iter()
                .find_map(|g| g.message.clone())
                .unwrap_or_else(|| "no generator ran it".into());
            let _ = self.inventory.set_task_error(id, &why);
        }
        self.state.lock().expect("runner state").active.remove(&id);
        self.store_totals(id);
        let _ = self.inventory.set_task_status(id, status, now);
        self.log(
            id,
            "controller",
            &format!("the task is {}", status.as_str()),
        );
        self.notify();
    }

    fn store_totals(&self, id: i64) {
        match self.inventory.task_seconds_between(id, i64::MIN, i64::MAX) {
            Ok(rows) => {
                let totals = results::totals(&rows);
                if let Ok(v) = serde_json::to_value(&totals) {
                    let _ = self.inventory.set_task_totals(id, &v);
                }
            }
            Err(e) => warn!(task = id, error = %e, "cannot compute totals"),
        }
    }

    // ---- from the gateway -------------------------------------------

    /// A generator (re)connected and said what it can run and runs.
    pub fn on_status(&self, agent: &str, status: AgentStatus) {
        {
            let mut st = self.state.lock().expect("runner state");
            st.jmeter.insert(agent.to_string(), status.jmeter.clone());
            st.away.remove(agent);
        }
        let reported: HashMap<i64, &protocol::load::TaskState> =
            status.tasks.iter().map(|t| (t.task_id as i64, t)).collect();
        let active = self.inventory.active_tasks().unwrap_or_default();
        let now = unix_now();
        let mut mine = Vec::new();
        for task in &active {
            let Ok(gens) = self.inventory.task_generators(task.id) else {
                continue;
            };
            let Some(g) = gens.into_iter().find(|g| g.agent_id == agent) else {
                continue;
            };
            mine.push(task.id);
            if !(g.status.is_active() || g.status == GeneratorStatus::Lost) {
                continue;
            }
            match reported.get(&task.id).map(|t| (&t.phase, t.per_min)) {
                Some((protocol::load::TaskPhase::Running { pid }, per_min)) => {
                    if g.status == GeneratorStatus::Lost {
                        let _ = self.inventory.set_generator_status(
                            task.id,
                            agent,
                            GeneratorStatus::Running,
                            Some(""),
                            now,
                        );
                        self.log(task.id, "controller", &format!("{} is back", g.name()));
                    } else if g.status == GeneratorStatus::Starting {
                        let _ = self.inventory.set_generator_started(
                            task.id,
                            agent,
                            *pid,
                            g.jmeter_version.as_deref().unwrap_or(""),
                        );
                    }
                    if g.status == GeneratorStatus::Stopping || task.status == TaskStatus::Stopping
                    {
                        self.send(
                            agent,
                            ControllerMsg::StopTask {
                                task_id: task.id as u64,
                            },
                        );
                    } else if let (Some(want), Some(have)) = (g.per_min, per_min)
                        && (want - have).abs() > want * 0.001
                    {
                        // A change made while it was away.
                        self.send(
                            agent,
                            ControllerMsg::SetRate {
                                task_id: task.id as u64,
                                per_min: want,
                            },
                        );
                    }
                }
                Some((protocol::load::TaskPhase::Starting, _)) => {}
                Some((protocol::load::TaskPhase::Over(ev), _)) => {
                    self.on_event(agent, task.id as u64, ev.clone());
                }
                None => match g.status {
                    GeneratorStatus::Starting => {
                        // The start never reached it: send it again.
                        self.start_for_the_rest(task, agent, g.per_min, now);
                    }
                    _ => {
                        let _ = self.inventory.set_generator_status(
                            task.id,
                            agent,
                            GeneratorStatus::Failed,
                            Some("the generator restarted; its JMeter run is gone"),
                            now,
                        );
                        self.log(
                            task.id,
                            "controller",
                            &format!("{} restarted and no longer runs the task", g.name()),
                        );
                        self.check_over(task.id);
                    }
                },
            }
        }
        // Runs the controller no longer wants (stopped while it was away).
        for t in &status.tasks {
            if matches!(t.phase, protocol::load::TaskPhase::Running { .. })
                && !mine.contains(&(t.task_id as i64))
            {
                self.send(agent, ControllerMsg::StopTask { task_id: t.task_id });
            }
        }
        self.notify();
    }

    pub fn on_event(&self, agent: &str, task_id: u64, event: TaskEvent) {
        let id = task_id as i64;
        let Ok(gens) = self.inventory.task_generators(id) else {
            return;
        };
        let Some(g) = gens.into_iter().find(|g| g.agent_id == agent) else {
            warn!(
                task = id,
                agent, "event for a task this generator is not part of"
            );
            return;
        };
        let now = unix_now();
        match event {
            TaskEvent::Started {
                pid,
                jmeter_version,
            } => {
                let _ = self
                    .inventory
                    .set_generator_started(id, agent, pid, &jmeter_version);
                if let Ok(t) = self.task(id)
                    && t.status == TaskStatus::Starting
                {
                    let _ = self.inventory.set_task_status(id, TaskStatus::Running, now);
                }
            }
            TaskEvent::RateSet { .. } => {}
            TaskEvent::Refused { reason } => {
                self.log(id, &g.name(), &format!("refused: {reason}"));
            }
            TaskEvent::Ended {
                reason,
                exit,
                samples,
            } => {
                if g.status.is_active() || g.status == GeneratorStatus::Lost {
                    let msg = format!("JMeter {reason} ({exit})");
                    let _ = self.inventory.set_generator_samples(id, agent, samples);
                    let _ = self.inventory.set_generator_status(
                        id,
                        agent,
                        GeneratorStatus::Ended,
                        Some(&msg),
                        now,
                    );
                    self.log(id, &g.name(), &msg);
                    self.check_over(id);
                }
            }
            TaskEvent::Failed {
                message,
                log_errors,
            } => {
                if g.status.is_active() || g.status == GeneratorStatus::Lost {
                    let mut msg = message;
                    if let Some(first) = log_errors.first() {
                        msg = format!("{msg} — {first}");
                    }
                    let _ = self.inventory.set_generator_status(
                        id,
                        agent,
                        GeneratorStatus::Failed,
                        Some(&msg),
                        now,
                    );
                    self.log(id, &g.name(), &format!("failed: {msg}"));
                    if g.pid.is_none() {
                        self.take_over_share(id);
                    }
                    self.check_over(id);
                }
            }
        }
        self.notify();
    }

    /// A generator that never ran gives its share back: the running ones
    /// split the task's target again (a lost one keeps its share: it may
    /// still be sending).
    fn take_over_share(&self, id: i64) {
        let Ok(task) = self.task(id) else { return };
        if !matches!(task.settings.load, Load::Tps { .. })
            || !matches!(task.status, TaskStatus::Starting | TaskStatus::Running)
        {
            return;
        }
        let Ok(gens) = self.active(id) else { return };
        if gens.is_empty() {
            return;
        }
        if let Ok(each) = self.split(id, task.target, &gens) {
            self.log(
                id,
                "controller",
                &format!(
                    "{} TPS on each of the {} running generator(s)",
                    fmt_tps(each),
                    gens.len()
                ),
            );
        }
    }

    pub fn on_seconds(&self, agent: &str, task_id: u64, seconds: &[protocol::load::LabelSecond]) {
        match self
            .inventory
            .insert_task_seconds(task_id as i64, agent, seconds)
        {
            Ok(n) if n > 0 => {
                // Seconds that arrive after the end (another stream than
                // the end's) still count in the totals.
                let id = task_id as i64;
                if self
                    .state
                    .lock()
                    .expect("runner state")
                    .closing
                    .contains(&id)
                {
                    self.check_over(id);
                }
                let known_active = self
                    .state
                    .lock()
                    .expect("runner state")
                    .active
                    .contains(&id);
                if !known_active
                    && let Ok(Some(t)) = self.inventory.task(id)
                    && !t.status.is_active()
                {
                    self.store_totals(id);
                }
                self.notify();
            }
            Ok(_) => {}
            Err(e) => warn!(task = task_id, agent, error = %e, "cannot store task seconds"),
        }
    }

    pub fn on_disconnect(&self, agent: &str) {
        let busy = self
            .inventory
            .busy_generators()
            .unwrap_or_default()
            .into_iter()
            .any(|(a, _)| a == agent);
        let mut st = self.state.lock().expect("runner state");
        st.jmeter.remove(agent);
        if busy {
            st.away.insert(agent.to_string(), unix_now());
        }
        st.files.retain(|_, w| w.agent_id != agent);
    }

    /// The artifact a generator asks for, if it is one of the task's.
    pub fn artifact_for(&self, agent: &str, task_id: u64) -> Result<PathBuf, String> {
        let id = task_id as i64;
        let gens = self
            .inventory
            .task_generators(id)
            .map_err(|e| e.to_string())?;
        match gens.iter().find(|g| g.agent_id == agent) {
            Some(g) if g.status.is_active() => {}
            Some(_) => return Err(format!("task {id} is over for this generator")),
            None => return Err(format!("this generator is not part of task {id}")),
        }
        let path = self.artifact_file(id);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("task {id} has no artifact"))
        }
    }

    /// A part of a file asked for with [`Runner::fetch_file`].
    pub async fn on_file_chunk(&self, agent: &str, request: u64, data: Vec<u8>, last: bool) {
        let tx = {
            let st = self.state.lock().expect("runner state");
            match st.files.get(&request) {
                Some(w) if w.agent_id == agent => Some(w.chunks.clone()),
                _ => None,
            }
        };
        if let Some(tx) = tx {
            let _ = tx.send(Ok((data, last))).await;
        }
    }

    pub fn on_file_missing(&self, agent: &str, request: u64, reason: String) {
        let st = self.state.lock().expect("runner state");
        if let Some(w) = st.files.get(&request)
            && w.agent_id == agent
        {
            let _ = w.chunks.try_send(Err(reason));
        }
    }

    /// Fetches a file of a task from one of its generators (its JMeter log,
    /// or the JTL of a debug run) into the task's folder.
    pub async fn fetch_file(
        &self,
        id: i64,
        agent: &str,
        file: TaskFile,
    ) -> Result<PathBuf, TaskError> {
        let task = self.task(id)?;
        if file == TaskFile::Jtl && !task.settings.debug {
            return Err(TaskError::Conflict(
                "the JTL is kept only for tasks run in debug mode".into(),
            ));
        }
        let gens = self.inventory.task_generators(id)?;
        if !gens.iter().any(|g| g.agent_id == agent) {
            return Err(TaskError::NotFound("generator of this task"));
        }
        let (tx, mut rx) = mpsc::channel(8);
        let request = {
            let mut st = self.state.lock().expect("runner state");
            st.next_request += 1;
            let r = st.next_request;
            st.files.insert(
                r,
                FileWait {
                    agent_id: agent.to_string(),
                    chunks: tx,
                },
            );
            r
        };
        let result = async {
            if !self.send(
                agent,
                ControllerMsg::SendFile {
                    request,
                    task_id: id as u64,
                    file,
                },
            ) {
                return Err(TaskError::Conflict(
                    "the generator is not connected; its files are on it".into(),
                ));
            }
            let dir = self.task_dir(id).join("files");
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| TaskError::Io(e.to_string()))?;
            let path = dir.join(format!("{agent}-{}", file.file_name()));
            let part = path.with_extension("part");
            receive(&mut rx, &part).await?;
            tokio::fs::rename(&part, &path)
                .await
                .map_err(|e| TaskError::Io(e.to_string()))?;
            Ok(path)
        }
        .await;
        self.state
            .lock()
            .expect("runner state")
            .files
            .remove(&request);
        result
    }

    /// Once a second: applies due schedule steps, marks generators lost,
    /// stops overrunning tasks, closes tasks whose lost generators never
    /// came back.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        {
            // After a restart every generator of an active task must
            // report in again within the lost delay.
            let now = unix_now();
            let mut st = self.state.lock().expect("runner state");
            for (agent, _) in self.inventory.busy_generators().unwrap_or_default() {
                st.away.entry(agent).or_insert(now);
            }
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.tick();
        }
    }

    fn tick(&self) {
        let now = unix_now();
        let lost: Vec<String> = {
            let mut st = self.state.lock().expect("runner state");
            let gone: Vec<String> = st
                .away
                .iter()
                .filter(|(_, since)| now.saturating_sub(**since) >= LOST_AFTER_SECS)
                .map(|(a, _)| a.clone())
                .collect();
            for a in &gone {
                st.away.remove(a);
            }
            gone
        };
        for agent in lost {
            self.mark_lost(&agent, now);
        }
        let active = self.inventory.active_tasks().unwrap_or_default();
        self.state.lock().expect("runner state").active = active.iter().map(|t| t.id).collect();
        let closing: Vec<i64> = self
            .state
            .lock()
            .expect("runner state")
            .closing
            .iter()
            .copied()
            .collect();
        for id in closing {
            self.check_over(id);
        }
        for task in active {
            self.schedule_step(&task, now);
            self.settle_attach(&task);
            if let Some(end) = task.ends_at
                && end > 0
                && now > end + OVERRUN_SECS
            {
                let gens = self.inventory.task_generators(task.id).unwrap_or_default();
                if gens.iter().any(|g| g.status.is_active()) {
                    if task.status != TaskStatus::Stopping {
                        let _ = self.stop(task.id, "controller");
                        self.log(task.id, "controller", "the run overran its duration");
                    }
                } else {
                    self.check_over(task.id);
                }
            }
        }
    }

    fn mark_lost(&self, agent: &str, now: u64) {
        for task in self.inventory.active_tasks().unwrap_or_default() {
            let gens = self.inventory.task_generators(task.id).unwrap_or_default();
            if let Some(g) = gens
                .iter()
                .find(|g| g.agent_id == agent && g.status.is_active())
            {
                let _ = self.inventory.set_generator_status(
                    task.id,
                    agent,
                    GeneratorStatus::Lost,
                    Some(&format!("no contact for {LOST_AFTER_SECS} s")),
                    now,
                );
                self.log(
                    task.id,
                    "controller",
                    &format!(
                        "{} lost (no contact for {LOST_AFTER_SECS} s); the others keep their rate",
                        g.name()
                    ),
                );
                self.check_over(task.id);
            }
        }
        self.notify();
    }

    fn schedule_step(&self, task: &StoredTask, now: u64) {
        let Schedule::Automatic { steps } = &task.settings.schedule else {
            return;
        };
        let from = task.next_step as usize;
        let Some((i, step)) = steps
            .iter()
            .enumerate()
            .skip(from)
            .rfind(|(_, s)| s.at <= now as i64)
        else {
            return;
        };
        let skipped = i - from;
        let step_target = match task.settings.load {
            Load::Tps { tps } => Some(tps * f64::from(step.percent) / 100.0),
            Load::Threads { .. } => None,
        };
        let action = format!(
            "step {} of {}: {}% of the target{}",
            i + 1,
            steps.len(),
            step.percent,
            if skipped > 0 {
                format!(" ({skipped} earlier step(s) passed while the controller was away)")
            } else {
                String::new()
            }
        );
        match self.inventory.advance_task_schedule(
            task.id,
            from as u32,
            i as u32 + 1,
            &action,
            step_target,
            now,
        ) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warn!(task = task.id, error = %e, "cannot advance the schedule");
                return;
            }
        }
        let result = if task.status == TaskStatus::Scheduled {
            let run = vec![
                RunProperties {
                    threads: task.threads,
                    throughput_per_min: None,
                    duration_secs: task.settings.duration_secs,
                };
                task.settings.generators.max(1) as usize
            ];
            self.launch(task.id, step.percent, "schedule", &run)
        } else if let Load::Tps { tps } = task.settings.load {
            let target = tps * f64::from(step.percent) / 100.0;
            self.active(task.id)
                .and_then(|gens| self.split(task.id, target, &gens).map(drop))
        } else {
            Ok(())
        };
        if let Err(e) = result {
            if task.status == TaskStatus::Scheduled {
                self.fail_task(task.id, &format!("the scheduled start failed: {e}"));
            } else {
                self.log(task.id, "schedule", &format!("step not applied: {e}"));
            }
        }
        self.notify();
    }
}

/// Writes the chunks of one file upload to `path`.
async fn receive(
    rx: &mut mpsc::Receiver<Result<(Vec<u8>, bool), String>>,
    path: &Path,
) -> Result<(), TaskError> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(|e| TaskError::Io(format!("{}: {e}", path.display())))?;
    loop {
        match tokio::time::timeout(FILE_CHUNK_TIMEOUT, rx.recv()).await {
            Err(_) => {
                return Err(TaskError::Conflict(
                    "the generator stopped sending the file".into(),
                ));
            }
            Ok(None) => {
                return Err(TaskError::Conflict(
                    "the generator disconnected while sending the file".into(),
                ));
            }
            Ok(Some(Err(reason))) => return Err(TaskError::Conflict(reason)),
            Ok(Some(Ok((data, last)))) => {
                f.write_all(&data)
                    .await
                    .map_err(|e| TaskError::Io(e.to_string()))?;
                if last {
                    f.flush().await.map_err(|e| TaskError::Io(e.to_string()))?;
                    return Ok(());
                }
            }
        }
    }
}
