//! The generator: this agent's side of the load-test protocol
//! ([`protocol::load`]), on top of the supervisor.
//!
//! Owns the task state machine (starting: fetching and checking the
//! artifact, starting JMeter; running; over), the task directories under
//! the work dir (`task-<id>`, the newest [`KEEP_TASK_DIRS`] kept), which
//! run properties a task may set (`-Jmyplatform.*` only), the results
//! buffer replayed after every reconnection, and the order the controller
//! relies on:
//! - at every new link epoch, the buffered seconds first, then
//!   `GeneratorStatus`;
//! - a run's last `TaskSeconds` written before its `Ended`/`Failed`: a
//!   terminal event goes out only when every second before it was written
//!   on a stream; otherwise the next epoch's `GeneratorStatus` (sent after
//!   the replay) carries it.
//!
//! One actor ([`run`]) owns the state. Controller messages, supervisor
//! events, the answers of work it spawns (fetching, rate changes) and a 1 s
//! tick arrive as inputs, so nothing inside it waits on JMeter or the
//! network. A second task, the pusher, owns the results stream and the
//! messages whose order depends on it.
//!
//! Must not start processes or parse results (the supervisor does), nor
//! know how the link connects.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use protocol::frame::MAX_BULK_FRAME;
use protocol::load::{
    FILE_CHUNK, GeneratorStatus, JmeterInfo, LabelSecond, StartTask, TaskEvent, TaskFile, TaskId,
    TaskPhase, TaskState,
};
use protocol::{AgentMsg, BulkStream, ControllerMsg, LinkHandle, LinkState};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::control::SamplesPerMin;
use crate::install::Checked;
use crate::results::Second;
use crate::supervisor::{ControlError, EndReason, Event, Exit, Options, Run, TaskDir, TaskSpec};

/// Task directories kept under the work dir, the newest one included.
pub const KEEP_TASK_DIRS: usize = 5;
/// Seconds of results a task keeps for the replay after a reconnection.
pub const REPLAY_SECS: i64 = 600;
/// How long an ended task stays in `GeneratorStatus` (with its seconds)
/// once its end reached the controller.
pub const ENDED_KEPT: Duration = Duration::from_secs(600);
/// Grace of a `StopTask` before JMeter is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Grace of a run when the agent stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Bound on the agent's stop: the grace, the supervisor's kill wait and
/// its drain of JMeter's output fit well within it.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for the next part of an artifact.
const FETCH_IDLE: Duration = Duration::from_secs(60);
/// Estimated bytes of one `TaskSeconds` frame, far under the bulk cap.
const BATCH_BYTES: usize = 4 << 20;
/// The names a task's run properties may have: the plan's own knobs.
/// JMeter's settings (`jmeterengine.*`, `jmeter.save.*`, ...) are the
/// supervisor's and must not be overridden by a task.
pub const PROPERTY_PREFIX: &str = "myplatform.";
/// In a task directory: the fetched artifact, and the supervisor's run
/// directory.
const ARTIFACT: &str = "artifact.zip";
const RUN_DIR: &str = "run";

/// What the generator is built from.
#[derive(Debug, Clone)]
pub struct Config {
    /// JMeter as checked at the agent's start, or why it cannot run (the
    /// agent connects anyway and says so in `GeneratorStatus`).
    pub jmeter: Result<Checked, String>,
    /// Task directories go here (`task-<id>`).
    pub work_dir: PathBuf,
    pub options: Options,
}

/// Runs the generator until `shutdown`: answers the controller's
/// messages, reports tasks, and on shutdown stops a running JMeter with
/// [`SHUTDOWN_GRACE`] and waits for its end (bounded), so no JVM is left.
pub async fn run(
    cfg: Config,
    link: LinkHandle,
    mut from_controller: mpsc::Receiver<ControllerMsg>,
    shutdown: CancellationToken,
) {
    if let Err(e) = std::fs::create_dir_all(&cfg.work_dir) {
        warn!(dir = %cfg.work_dir.display(), error = %e, "cannot create the work directory; tasks will fail");
    }
    let (inputs, mut inputs_rx) = mpsc::channel(1024);
    let (push, push_rx) = mpsc::unbounded_channel();
    let pusher = tokio::spawn(push_loop(link.clone(), push_rx, inputs.clone()));
    let mut g = Generator {
        tasks: Tasks::new(cfg.jmeter, cfg.work_dir),
        options: cfg.options,
        link: link.clone(),
        inputs,
        push,
        epoch: None,
    };
    let mut state = link.state();
    let first = state.borrow_and_update().clone();
    g.on_link(&first);
    let mut link_alive = true;
    let mut controller_open = true;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop_by: Option<tokio::time::Instant> = None;
    loop {
        if stop_by.is_some() && g.tasks.active().is_none() {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled(), if stop_by.is_none() => {
                g.stop_all();
                stop_by = Some(tokio::time::Instant::now() + SHUTDOWN_LIMIT);
            }
            _ = async { tokio::time::sleep_until(stop_by.unwrap_or_else(tokio::time::Instant::now)).await }, if stop_by.is_some() => {
                warn!("JMeter did not end within {SHUTDOWN_LIMIT:?} of the stop; killing it");
                break;
            }
            msg = from_controller.recv(), if controller_open && stop_by.is_none() => match msg {
                Some(m) => g.on_controller(m),
                None => controller_open = false,
            },
            Some(input) = inputs_rx.recv() => g.on_input(input),
            _ = tick.tick() => g.on_tick(Instant::now()),
            r = state.changed(), if link_alive => match r {
                Ok(()) => {
                    let s = state.borrow_and_update().clone();
                    g.on_link(&s);
                }
                Err(_) => link_alive = false,
            },
        }
    }
    pusher.abort();
    // Any Run still held is dropped here, which kills its JVM.
}

/// Inputs of the actor other than the controller's messages and ticks.
enum Input {
    /// From a run's supervisor.
    Run(TaskId, Event),
    /// The artifact was fetched and JMeter started, or why not.
    StartDone(TaskId, Result<Run, StartFailure>),
    RateDone {
        task_id: TaskId,
        per_min: f64,
        result: Result<(), ControlError>,
    },
    /// The end of these tasks reached the controller (their `Ended` /
    /// `Failed`, or a `GeneratorStatus` carrying it).
    Reported(Vec<TaskId>),
    /// Seconds were lost on a connection that is still up: replay them and
    /// the status now rather than at the next reconnection.
    Resync,
}

enum StartFailure {
    /// A stop came before JMeter started.
    Stopped,
    Failed(String),
}

/// What the pusher sends, in this order.
enum Push {
    Seconds {
        task_id: TaskId,
        seconds: Vec<LabelSecond>,
    },
    /// A terminal `TaskEvent`: sent once every second before it is written.
    End { task_id: TaskId, msg: AgentMsg },
    /// A new epoch: every buffered second, then the status.
    Replay {
        epoch: u64,
        seconds: Vec<(TaskId, Vec<LabelSecond>)>,
        status: GeneratorStatus,
    },
}

/// One task as this generator knows it.
struct Task {
    /// `work_dir/task-<id>`.
    dir: PathBuf,
    debug: bool,
    phase: Phase,
    /// Set once JMeter started for it.
    pid: Option<u32>,
    /// The rate JMeter runs at (TPS mode): the start property, then the
    /// last acknowledged `SetRate`.
    per_min: Option<f64>,
    run: Option<Arc<Run>>,
    /// Cancels the artifact fetch.
    cancel: CancellationToken,
    /// A stop asked before the run existed: applied once it does.
    stop_grace: Option<Duration>,
    /// A `SetRate` that came before the run existed: applied once it does.
    pending_rate: Option<SamplesPerMin>,
    /// The last [`REPLAY_SECS`] seconds, in arrival order.
    seconds: VecDeque<LabelSecond>,
    /// Samples in every second so far (told with the end).
    samples: u64,
    newest: i64,
    /// Arrived since the last batch.
    unsent: Vec<LabelSecond>,
}

enum Phase {
    /// Fetching, starting or running (`Task::pid` tells which).
    Active,
    Over {
        event: TaskEvent,
        /// When its end reached the controller.
        reported: Option<Instant>,
    },
}

impl Task {
    fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Over { .. })
    }

    /// Still reported in `GeneratorStatus` (and its seconds kept).
    fn in_window(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Over {
                reported: Some(at), ..
            } => now.duration_since(at) < ENDED_KEPT,
            _ => true,
        }
    }

    /// Keeps `s`; a late piece of a second already kept is merged into it
    /// and the whole second is sent again (the controller keeps the copy
    /// with the most samples, so re-sends and replays never double).
    fn add_second(&mut self, s: LabelSecond) {
        self.newest = self.newest.max(s.unix_sec);
        self.samples += s.count;
        if let Some(kept) = self
            .seconds
            .iter_mut()
            .rev()
            .find(|k| k.unix_sec == s.unix_sec && k.label == s.label)
        {
            merge_second(kept, &s);
            let whole = kept.clone();
            self.unsent
                .retain(|u| !(u.unix_sec == whole.unix_sec && u.label == whole.label));
            self.unsent.push(whole);
            return;
        }
        self.unsent.push(s.clone());
        self.seconds.push_back(s);
        while self
            .seconds
            .front()
            .is_some_and(|f| f.unix_sec <= self.newest.saturating_sub(REPLAY_SECS))
        {
            self.seconds.pop_front();
        }
    }
}

/// How to answer a `StartTask`.
#[derive(Debug)]
enum Decision {
    /// A re-sent `StartTask` of a task that runs or ran here.
    Ignore,
    /// Answer `Failed` with this message.
    Refuse(String),
    Start(Checked),
}

/// The tasks of this generator, and the decisions made from them alone
/// (no link, no processes).
struct Tasks {
    jmeter: Result<Checked, String>,
    work_dir: PathBuf,
    map: BTreeMap<TaskId, Task>,
}

impl Tasks {
    fn new(jmeter: Result<Checked, String>, work_dir: PathBuf) -> Tasks {
        Tasks {
            jmeter,
            work_dir,
            map: BTreeMap::new(),
        }
    }

    fn task_dir(&self, id: TaskId) -> PathBuf {
        self.work_dir.join(format!("task-{id}"))
    }

    /// The task starting or running here, if any.
    fn active(&self) -> Option<TaskId> {
        self.map
            .iter()
            .find(|(_, t)| !t.is_over())
            .map(|(id, _)| *id)
    }

    fn decide(&self, st: &StartTask) -> Decision {
        let id = st.task_id;
        if let Some(t) = self.map.get(&id)
            && (!t.is_over() || t.pid.is_some())
        {
            return Decision::Ignore;
        }
        if let Some(running) = self.active() {
            return Decision::Refuse(format!("this generator already runs task {running}"));
        }
        if !self.map.contains_key(&id) {
            let output = TaskDir {
                root: self.task_dir(id).join(RUN_DIR),
            }
            .output();
            if output.exists() {
                return Decision::Refuse(format!(
                    "task {id} already ran on this generator (before the agent restarted; see {}): \
                     a task runs once per generator",
                    self.task_dir(id).display()
                ));
            }
        }
        if let Err(e) = check_properties(&st.properties) {
            return Decision::Refuse(e);
        }
        match &self.jmeter {
            Ok(c) => Decision::Start(c.clone()),
            Err(e) => Decision::Refuse(format!("this generator cannot run JMeter: {e}")),
        }
    }

    /// Registers a task that starts now.
    fn begin(&mut self, st: &StartTask) -> &mut Task {
        let task = Task {
            dir: self.task_dir(st.task_id),
            debug: st.debug,
            phase: Phase::Active,
            pid: None,
            per_min: initial_rate(&st.properties),
            run: None,
            cancel: CancellationToken::new(),
            stop_grace: None,
            pending_rate: None,
            seconds: VecDeque::new(),
            samples: 0,
            newest: i64::MIN,
            unsent: Vec::new(),
        };
        self.map.insert(st.task_id, task);
        self.map.get_mut(&st.task_id).expect("just inserted")
    }

    fn status(&self, now: Instant) -> GeneratorStatus {
        GeneratorStatus {
            jmeter: self.jmeter.as_ref().map(jmeter_info).map_err(Clone::clone),
            tasks: self
                .map
                .iter()
                .filter(|(_, t)| t.in_window(now))
                .map(|(id, t)| TaskState {
                    task_id: *id,
                    phase: match (&t.phase, t.pid) {
                        (Phase::Over { event, .. }, _) => TaskPhase::Over(event.clone()),
                        (_, Some(pid)) => TaskPhase::Running { pid },
                        (_, None) => TaskPhase::Starting,
                    },
                    per_min: t.per_min,
                })
                .collect(),
        }
    }

    /// Every buffered second per task in time order, for a new epoch; the
    /// unsent ones are among them.
    fn replay(&mut self) -> Vec<(TaskId, Vec<LabelSecond>)> {
        let mut out = Vec::new();
        for (id, t) in &mut self.map {
            t.unsent.clear();
            if !t.seconds.is_empty() {
                let mut s: Vec<LabelSecond> = t.seconds.iter().cloned().collect();
                s.sort_by_key(|s| s.unix_sec);
                out.push((*id, s));
            }
        }
        out
    }

    fn reported(&mut self, ids: &[TaskId], now: Instant) {
        for id in ids {
            if let Some(Task {
                phase: Phase::Over { reported, .. },
                ..
            }) = self.map.get_mut(id)
            {
                reported.get_or_insert(now);
            }
        }
    }

    /// Drops the seconds of ended tasks out of their window.
    fn expire(&mut self, now: Instant) {
        for t in self.map.values_mut() {
            if !t.in_window(now) && !t.seconds.is_empty() {
                t.seconds = VecDeque::new();
            }
        }
    }

    /// Forgets pruned tasks whose window is over.
    fn forget(&mut self, pruned: &[TaskId], now: Instant) {
        self.map
            .retain(|id, t| !pruned.contains(id) || t.in_window(now));
    }

    /// Where a task's file is, or why it cannot be sent.
    fn file(&self, id: TaskId, file: TaskFile) -> Result<PathBuf, String> {
        let dir = TaskDir {
            root: self.task_dir(id).join(RUN_DIR),
        };
        match (file, self.map.get(&id)) {
            (TaskFile::Log, _) => Ok(dir.log()),
            (TaskFile::Jtl, Some(t)) if t.debug => Ok(dir.results()),
            (TaskFile::Jtl, Some(_)) => Err(format!(
                "task {id} did not run in debug mode: only debug runs keep their results (JTL)"
            )),
            (TaskFile::Jtl, None) => Err(format!(
                "task {id} is not known to this generator (any more): its results (JTL) cannot be sent"
            )),
        }
    }
}

/// The actor's state and its handles.
struct Generator {
    tasks: Tasks,
    options: Options,
    link: LinkHandle,
    inputs: mpsc::Sender<Input>,
    push: mpsc::UnboundedSender<Push>,
    epoch: Option<u64>,
}

impl Generator {
    fn on_link(&mut self, s: &LinkState) {
        let LinkState::Connected { epoch, .. } = s else {
            return;
        };
        if self.epoch == Some(*epoch) {
            return;
        }
        self.epoch = Some(*epoch);
        self.replay(*epoch);
    }

    /// Every buffered second, then the status, for this epoch.
    fn replay(&mut self, epoch: u64) {
        let seconds = self.tasks.replay();
        let status = self.tasks.status(Instant::now());
        self.push(Push::Replay {
            epoch,
            seconds,
            status,
        });
    }

    fn on_controller(&mut self, msg: ControllerMsg) {
        match msg {
            ControllerMsg::StartTask(st) => self.start(st),
            ControllerMsg::SetRate { task_id, per_min } => self.set_rate(task_id, per_min),
            ControllerMsg::StopTask { task_id } => self.stop(task_id, STOP_GRACE),
            ControllerMsg::SendFile {
                request,
                task_id,
                file,
            } => {
                let path = self.tasks.file(task_id, file);
                let what = format!("{} of task {task_id}", file.file_name());
                tokio::spawn(send_file(self.link.clone(), request, what, path));
            }
            other => debug!(?other, "ignored controller message"),
        }
    }

    fn start(&mut self, st: StartTask) {
        let id = st.task_id;
        let checked = match self.tasks.decide(&st) {
            Decision::Ignore => {
                info!(
                    task_id = id,
                    "StartTask of a task that runs or ran here: ignored"
                );
                return;
            }
            Decision::Refuse(message) => {
                warn!(task_id = id, "task refused: {message}");
                self.event(id, failed(message));
                return;
            }
            Decision::Start(c) => c,
        };
        info!(
            task_id = id,
            size = st.size,
            debug = st.debug,
            "starting task"
        );
        match stale_task_dirs(&self.tasks.work_dir, KEEP_TASK_DIRS - 1, id) {
            Ok(stale) => {
                let ids: Vec<TaskId> = stale.iter().map(|(id, _)| *id).collect();
                self.tasks.forget(&ids, Instant::now());
                if !stale.is_empty() {
                    tokio::task::spawn_blocking(move || remove_dirs(&stale));
                }
            }
            Err(e) => warn!(error = %e, "cannot list the old task directories"),
        }
        let task = self.tasks.begin(&st);
        let job = StartJob {
            link: self.link.clone(),
            checked,
            options: self.options.clone(),
            dir: task.dir.clone(),
            cancel: task.cancel.clone(),
            inputs: self.inputs.clone(),
            st,
        };
        tokio::spawn(starter(job));
    }

    fn set_rate(&mut self, task_id: TaskId, per_min: f64) {
        let refuse = |reason: String| TaskEvent::Refused { reason };
        let inputs = self.inputs.clone();
        let task = match self.tasks.map.get_mut(&task_id) {
            None => Err(refuse(format!(
                "task {task_id} does not run on this generator"
            ))),
            Some(t) if t.is_over() => Err(refuse(format!("task {task_id} is over"))),
            Some(t) => Ok(t),
        };
        let rate = SamplesPerMin::new(per_min).map_err(refuse);
        match task.and_then(|t| rate.map(|rate| (t, rate))) {
            Err(e) => self.event(task_id, e),
            Ok((t, rate)) => match &t.run {
                Some(run) => rate_job(inputs, task_id, run.clone(), rate),
                // Applied (and answered) once JMeter runs.
                None => t.pending_rate = Some(rate),
            },
        }
    }

    fn stop(&mut self, task_id: TaskId, grace: Duration) {
        let Some(t) = self.tasks.map.get_mut(&task_id) else {
            self.event(
                task_id,
                TaskEvent::Refused {
                    reason: format!("task {task_id} does not run on this generator"),
                },
            );
            return;
        };
        if t.is_over() {
            debug!(task_id, "StopTask of a task that is over: nothing to do");
            return;
        }
        info!(task_id, ?grace, "stopping task");
        match &t.run {
            Some(run) => {
                let run = run.clone();
                tokio::spawn(async move {
                    let _ = run.stop(grace).await;
                });
            }
            None => {
                t.cancel.cancel();
                t.stop_grace = Some(grace);
            }
        }
    }

    fn stop_all(&mut self) {
        let active: Vec<TaskId> = self
            .tasks
            .map
            .iter()
            .filter(|(_, t)| !t.is_over())
            .map(|(id, _)| *id)
            .collect();
        for id in active {
            self.stop(id, SHUTDOWN_GRACE);
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Run(id, ev) => self.on_run_event(id, ev),
            Input::StartDone(id, Ok(run)) => {
                let Some(t) = self.tasks.map.get_mut(&id) else {
                    return;
                };
                if t.is_over() {
                    return;
                }
                let run = Arc::new(run);
                t.run = Some(run.clone());
                if let Some(grace) = t.stop_grace {
                    tokio::spawn(async move {
                        let _ = run.stop(grace).await;
                    });
                } else if let Some(rate) = t.pending_rate.take() {
                    rate_job(self.inputs.clone(), id, run, rate);
                }
            }
            Input::StartDone(id, Err(StartFailure::Stopped)) => self.end(
                id,
                TaskEvent::Ended {
                    reason: "stopped".into(),
                    exit: "not started".into(),
                    samples: 0,
                },
            ),
            Input::StartDone(id, Err(StartFailure::Failed(message))) => {
                self.end(id, failed(message));
            }
            Input::RateDone {
                task_id,
                per_min,
                result,
            } => match result {
                Ok(()) => {
                    if let Some(t) = self.tasks.map.get_mut(&task_id) {
                        t.per_min = Some(per_min);
                    }
                    info!(task_id, per_min, "rate set");
                    self.event(task_id, TaskEvent::RateSet { per_min });
                }
                Err(e) => self.event(
                    task_id,
                    TaskEvent::Refused {
                        reason: format!("the rate of task {task_id} was not changed: {e}"),
                    },
                ),
            },
            Input::Reported(ids) => self.tasks.reported(&ids, Instant::now()),
            Input::Resync => {
                if let Some(epoch) = self.epoch {
                    self.replay(epoch);
                }
            }
        }
    }

    fn on_run_event(&mut self, id: TaskId, ev: Event) {
        match ev {
            Event::Started {
                pid,
                jmeter_version,
            } => {
                if let Some(t) = self.tasks.map.get_mut(&id) {
                    t.pid = Some(pid);
                }
                info!(task_id = id, pid, "JMeter started");
                self.event(
                    id,
                    TaskEvent::Started {
                        pid,
                        jmeter_version,
                    },
                );
            }
            Event::Second(s) => {
                if let Some(t) = self.tasks.map.get_mut(&id) {
                    t.add_second(label_second(s));
                }
            }
            Event::Ended { exit, reason } => self.end(
                id,
                TaskEvent::Ended {
                    reason: reason_text(reason).into(),
                    exit: exit_text(exit),
                    // Filled in by `end` from the task's count.
                    samples: 0,
                },
            ),
            Event::Failed {
                message,
                log_errors,
                ..
            } => self.end(
                id,
                TaskEvent::Failed {
                    message,
                    log_errors,
                },
            ),
        }
    }

    /// A task is over: its last seconds, then its event, go to the pusher.
    fn end(&mut self, task_id: TaskId, mut event: TaskEvent) {
        let Some(t) = self.tasks.map.get_mut(&task_id) else {
            return;
        };
        if t.is_over() {
            return;
        }
        if let TaskEvent::Ended { samples, .. } = &mut event {
            *samples = t.samples;
        }
        match &event {
            TaskEvent::Failed { message, .. } => warn!(task_id, "task failed: {message}"),
            other => info!(task_id, ?other, "task over"),
        }
        t.phase = Phase::Over {
            event: event.clone(),
            reported: None,
        };
        t.run = None;
        if !t.debug {
            // Outside debug mode the results file only fed the tailer.
            let results = TaskDir {
                root: t.dir.join(RUN_DIR),
            }
            .results();
            let _ = std::fs::remove_file(results);
        }
        let seconds = std::mem::take(&mut t.unsent);
        if !seconds.is_empty() {
            self.push(Push::Seconds { task_id, seconds });
        }
        self.push(Push::End {
            task_id,
            msg: AgentMsg::TaskEvent { task_id, event },
        });
    }

    fn on_tick(&mut self, now: Instant) {
        let batches: Vec<(TaskId, Vec<LabelSecond>)> = self
            .tasks
            .map
            .iter_mut()
            .filter(|(_, t)| !t.unsent.is_empty())
            .map(|(id, t)| (*id, std::mem::take(&mut t.unsent)))
            .collect();
        for (task_id, seconds) in batches {
            self.push(Push::Seconds { task_id, seconds });
        }
        self.tasks.expire(now);
    }

    /// A non-terminal event, or an answer, on the control stream.
    fn event(&self, task_id: TaskId, event: TaskEvent) {
        if let Err(e) = self.link.send(AgentMsg::TaskEvent { task_id, event }) {
            warn!(task_id, error = %e, "cannot queue a task event; the next GeneratorStatus carries the task's state");
        }
    }

    fn push(&self, p: Push) {
        // The pusher lives as long as the actor.
        let _ = self.push.send(p);
    }
}

/// Sets the rate inside JMeter; the answer comes back as an input.
fn rate_job(inputs: mpsc::Sender<Input>, task_id: TaskId, run: Arc<Run>, rate: SamplesPerMin) {
    tokio::spawn(async move {
        let result = run.set_throughput(rate).await;
        let _ = inputs
            .send(Input::RateDone {
                task_id,
                per_min: rate.get(),
                result,
            })
            .await;
    });
}

/// Sends results on one long-lived bulk stream (reopened for each epoch,
/// or after an error), and the messages that must follow them.
async fn push_loop(
    link: LinkHandle,
    mut rx: mpsc::UnboundedReceiver<Push>,
    inputs: mpsc::Sender<Input>,
) {
    let mut stream: Option<(u64, BulkStream)> = None;
    // Some seconds were not written: terminal events wait for the next
    // epoch's replay and status.
    let mut gap = false;
    while let Some(p) = rx.recv().await {
        match p {
            Push::Seconds { task_id, seconds } => {
                if !write_seconds(&link, &mut stream, task_id, &seconds).await {
                    gap = true;
                }
            }
            Push::End { task_id, msg } => {
                if current_epoch(&link).is_none() {
                    debug!(
                        task_id,
                        "task end withheld until the next connection's status"
                    );
                    continue;
                }
                if gap {
                    // The status after the replay carries the end.
                    debug!(
                        task_id,
                        "seconds were lost: replaying before the task's end"
                    );
                    let _ = inputs.send(Input::Resync).await;
                    continue;
                }
                match link.send(msg) {
                    Ok(()) => {
                        let _ = inputs.send(Input::Reported(vec![task_id])).await;
                    }
                    Err(e) => {
                        warn!(task_id, error = %e, "cannot queue the task's end; the next GeneratorStatus carries it");
                    }
                }
            }
            Push::Replay {
                epoch,
                seconds,
                status,
            } => {
                // A newer epoch has a replay of its own coming.
                if current_epoch(&link) != Some(epoch) {
                    continue;
                }
                let mut written = true;
                for (task_id, s) in &seconds {
                    if !write_seconds(&link, &mut stream, *task_id, s).await {
                        written = false;
                        break;
                    }
                }
                if !written || current_epoch(&link) != Some(epoch) {
                    gap = true;
                    continue;
                }
                gap = false;
                let over: Vec<TaskId> = status
                    .tasks
                    .iter()
                    .filter(|t| matches!(t.phase, TaskPhase::Over(_)))
                    .map(|t| t.task_id)
                    .collect();
                match link.send(AgentMsg::GeneratorStatus(status)) {
                    Ok(()) => {
                        let _ = inputs.send(Input::Reported(over)).await;
                    }
                    Err(e) => warn!(error = %e, "cannot queue the generator status"),
                }
            }
        }
    }
}

fn current_epoch(link: &LinkHandle) -> Option<u64> {
    match &*link.state().borrow() {
        LinkState::Connected { epoch, .. } => Some(*epoch),
        _ => None,
    }
}

/// Writes `seconds` on the epoch's stream; false when they did not go out
/// (not connected, or the stream broke: the replay delivers them).
async fn write_seconds(
    link: &LinkHandle,
    stream: &mut Option<(u64, BulkStream)>,
    task_id: TaskId,
    seconds: &[LabelSecond],
) -> bool {
    let Some(epoch) = current_epoch(link) else {
        return false;
    };
    if stream.as_ref().is_none_or(|(e, _)| *e != epoch) {
        if let Some((_, old)) = stream.take() {
            old.finish();
        }
        match link.open_stream().await {
            Ok(s) => *stream = Some((epoch, s)),
            Err(e) => {
                debug!(error = %e, "cannot open the results stream");
                return false;
            }
        }
    }
    let Some((_, s)) = stream.as_mut() else {
        return false;
    };
    for batch in batches(seconds) {
        let msg = AgentMsg::TaskSeconds {
            task_id,
            seconds: batch,
        };
        if let Err(e) = s.send(&msg).await {
            warn!(task_id, error = %e, "results stream broken; the seconds are re-sent after the next connection");
            *stream = None;
            return false;
        }
    }
    true
}

/// `seconds` cut into frames of at most about [`BATCH_BYTES`].
fn batches(seconds: &[LabelSecond]) -> Vec<Vec<LabelSecond>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for s in seconds {
        let size = s.hist.len() + s.label.len() + 64;
        if !cur.is_empty() && bytes + size > BATCH_BYTES {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(s.clone());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct StartJob {
    link: LinkHandle,
    checked: Checked,
    options: Options,
    st: StartTask,
    dir: PathBuf,
    cancel: CancellationToken,
    inputs: mpsc::Sender<Input>,
}

async fn starter(job: StartJob) {
    let (id, inputs) = (job.st.task_id, job.inputs.clone());
    let r = start_run(job).await;
    let _ = inputs.send(Input::StartDone(id, r)).await;
}

/// Fetches and checks the artifact, then starts JMeter. Its events go to
/// the actor as they come (`Started` may arrive before `StartDone`).
async fn start_run(job: StartJob) -> Result<Run, StartFailure> {
    let StartJob {
        link,
        checked,
        options,
        st,
        dir,
        cancel,
        inputs,
    } = job;
    let id = st.task_id;
    fresh_dir(&dir).map_err(StartFailure::Failed)?;
    let limit = artifact_limit(&options);
    let artifact = tokio::select! {
        _ = cancel.cancelled() => return Err(StartFailure::Stopped),
        r = fetch(&link, &st, &dir, limit) => r.map_err(StartFailure::Failed)?,
    };
    if cancel.is_cancelled() {
        return Err(StartFailure::Stopped);
    }
    let (tx, mut rx) = mpsc::channel(256);
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if inputs.send(Input::Run(id, ev)).await.is_err() {
                break;
            }
        }
    });
    let spec = TaskSpec {
        artifact,
        dir: dir.join(RUN_DIR),
        properties: st.properties,
        debug: st.debug,
    };
    Run::start(&checked, spec, &options, tx)
        .await
        .map_err(|e| StartFailure::Failed(e.to_string()))
}

/// Empties `dir` (what a start that failed before JMeter ran left) and
/// creates it.
fn fresh_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot empty {}: {e}", dir.display())),
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// The largest artifact zip accepted: what the bundle may unpack to, plus
/// the zip's own headers (well under 1 KiB per entry).
fn artifact_limit(opts: &Options) -> u64 {
    let l = &opts.bundle_limits;
    l.max_total_bytes
        .saturating_add((l.max_files as u64).saturating_mul(1024))
}

async fn fetch(
    link: &LinkHandle,
    st: &StartTask,
    dir: &Path,
    limit: u64,
) -> Result<PathBuf, String> {
    if st.size > limit {
        return Err(format!(
            "the task artifact is {} bytes, over this generator's limit of {limit}; nothing was run",
            st.size
        ));
    }
    let mut w = ArtifactWriter::create(&dir.join(ARTIFACT), st.size, &st.sha256)?;
    let mut req = link
        .request(&AgentMsg::FetchArtifact {
            task_id: st.task_id,
        })
        .await
        .map_err(|e| format!("cannot ask the controller for the task artifact: {e}"))?;
    loop {
        let next = tokio::time::timeout(FETCH_IDLE, req.next(MAX_BULK_FRAME))
            .await
            .map_err(|_| {
                format!(
                    "the controller sent nothing of the task artifact for {}s ({} of {} bytes arrived)",
                    FETCH_IDLE.as_secs(),
                    w.received,
                    st.size
                )
            })?
            .map_err(|e| format!("fetching the task artifact failed: {e}"))?;
        match next {
            Some(msg) => w.accept(msg)?,
            None => return w.finish(),
        }
    }
}

/// Writes an artifact as it arrives, hashing it; the file gets its name
/// only once its size and SHA-256 match, and is deleted otherwise, so a
/// bad artifact leaves nothing that could run.
struct ArtifactWriter {
    path: PathBuf,
    part: PathBuf,
    file: std::fs::File,
    digest: ring::digest::Context,
    received: u64,
    size: u64,
    sha256: String,
    done: bool,
}

impl ArtifactWriter {
    fn create(path: &Path, size: u64, sha256: &str) -> Result<ArtifactWriter, String> {
        let part = path.with_extension("zip.part");
        let file = std::fs::File::create(&part)
            .map_err(|e| format!("cannot create {}: {e}", part.display()))?;
        Ok(ArtifactWriter {
            path: path.to_path_buf(),
            part,
            file,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            received: 0,
            size,
            sha256: sha256.trim().to_string(),
            done: false,
        })
    }

    /// One answer on the artifact stream.
    fn accept(&mut self, msg: ControllerMsg) -> Result<(), String> {
        match msg {
            ControllerMsg::ArtifactChunk { data } => self.write(&data),
            ControllerMsg::Rejected { reason } => Err(format!(
                "the controller cannot send the task artifact: {reason}"
            )),
            other => {
                let mut text = format!("{other:?}");
                text.truncate(100);
                Err(format!("unexpected answer to the artifact request: {text}"))
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let n = data.len() as u64;
        if self.received.saturating_add(n) > self.size {
            return Err(format!(
                "the controller sent more than the announced {} bytes of the task artifact; nothing was run",
                self.size
            ));
        }
        self.file
            .write_all(data)
            .map_err(|e| format!("cannot write {}: {e}", self.part.display()))?;
        self.digest.update(data);
        self.received += n;
        Ok(())
    }

    /// Checks size and checksum; the artifact's path when both match.
    fn finish(mut self) -> Result<PathBuf, String> {
        if self.received != self.size {
            return Err(format!(
                "the task artifact is incomplete: {} of {} bytes arrived; nothing was run",
                self.received, self.size
            ));
        }
        let got = hex(self.digest.clone().finish().as_ref());
        if !got.eq_ignore_ascii_case(&self.sha256) {
            return Err(format!(
                "the task artifact failed its checksum: expected {}, got {got} ({} bytes); nothing was run",
                self.sha256, self.received
            ));
        }
        let io = |e: std::io::Error| format!("cannot save {}: {e}", self.path.display());
        self.file.sync_all().map_err(io)?;
        std::fs::rename(&self.part, &self.path).map_err(io)?;
        self.done = true;
        Ok(self.path.clone())
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Refuses any run property but `-Jmyplatform.<name>=<value>`: JMeter's
/// own settings are fixed by the supervisor, and a later `-J` of the same
/// name would override them (e.g. `-Jjmeterengine.nongui.port=4445`
/// would open the UDP stop listener again).
pub fn check_properties(props: &[String]) -> Result<(), String> {
    for p in props {
        let ok = p
            .strip_prefix("-J")
            .and_then(|rest| rest.split_once('='))
            .and_then(|(name, _)| name.strip_prefix(PROPERTY_PREFIX))
            .is_some_and(|rest| !rest.is_empty());
        if !ok {
            return Err(format!(
                "the run property {p:?} is refused: a task may only set \
                 -J{PROPERTY_PREFIX}<name>=<value> properties (JMeter's own settings are the agent's)"
            ));
        }
    }
    Ok(())
}

/// The start rate of a TPS run, from its properties.
fn initial_rate(props: &[String]) -> Option<f64> {
    let key = format!("-J{}=", loadplan::jmx::PROP_THROUGHPUT);
    props
        .iter()
        .find_map(|p| p.strip_prefix(&key))
        .and_then(|v| v.parse().ok())
}

/// Task directories under `work_dir` beyond the `keep` newest (by
/// modification time, then id), never the one of `except`.
fn stale_task_dirs(
    work_dir: &Path,
    keep: usize,
    except: TaskId,
) -> std::io::Result<Vec<(TaskId, PathBuf)>> {
    let mut dirs = Vec::new();
    for e in std::fs::read_dir(work_dir)? {
        let e = e?;
        let id = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("task-"))
            .and_then(|n| n.parse::<TaskId>().ok());
        let Some(id) = id.filter(|id| *id != except) else {
            continue;
        };
        // Not followed: a symlink is no task directory.
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            dirs.push((mtime, id, e.path()));
        }
    }
    dirs.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    Ok(dirs
        .into_iter()
        .skip(keep)
        .map(|(_, id, p)| (id, p))
        .collect())
}

fn remove_dirs(dirs: &[(TaskId, PathBuf)]) {
    for (id, d) in dirs {
        match std::fs::remove_dir_all(d) {
            Ok(()) => debug!(task_id = id, "removed an old task directory"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(dir = %d.display(), error = %e, "cannot remove an old task directory"),
        }
    }
}

/// Sends a task file as `FileChunk`s on a stream of its own (the file as
/// it is now, for a running task), or `FileMissing`.
async fn send_file(link: LinkHandle, request: u64, what: String, path: Result<PathBuf, String>) {
    let missing = |reason: String| {
        if let Err(e) = link.send(AgentMsg::FileMissing { request, reason }) {
            warn!(request, error = %e, "cannot queue FileMissing");
        }
    };
    let path = match path {
        Ok(p) => p,
        Err(reason) => return missing(reason),
    };
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return missing(format!(
                "{what} does not exist on this generator (JMeter has not started, or the task's directory was removed)"
            ));
        }
        Err(e) => return missing(format!("cannot read {what}: {e}")),
    };
    let len = match f.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return missing(format!("cannot read {what}: {e}")),
    };
    let mut stream = match link.open_stream().await {
        Ok(s) => s,
        Err(e) => return missing(format!("cannot send {what}: {e}")),
    };
    let mut sent = 0u64;
    loop {
        let want = usize::try_from(len - sent).map_or(FILE_CHUNK, |r| r.min(FILE_CHUNK));
        let mut data = vec![0u8; want];
        let n = match read_full(&mut f, &mut data).await {
            Ok(n) => n,
            Err(e) => return missing(format!("reading {what} failed after {sent} bytes: {e}")),
        };
        data.truncate(n);
        sent += n as u64;
        // A file that shrank ends early.
        let last = n < want || sent >= len;
        let msg = AgentMsg::FileChunk {
            request,
            data,
            last,
        };
        if let Err(e) = stream.send(&msg).await {
            warn!(request, error = %e, "sending {what} failed");
            return;
        }
        if last {
            break;
        }
    }
    stream.finish();
}

async fn read_full(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn jmeter_info(c: &Checked) -> JmeterInfo {
    JmeterInfo {
        jmeter_version: c.jmeter_version.clone(),
        java_version: c.java_version.clone(),
        home: c.install.home.display().to_string(),
    }
}

fn failed(message: String) -> TaskEvent {
    TaskEvent::Failed {
        message,
        log_errors: Vec::new(),
    }
}

/// Adds `piece` to `kept` (same second and label): counts sum,
/// histograms merge. A histogram that cannot be read keeps the other.
fn merge_second(kept: &mut LabelSecond, piece: &LabelSecond) {
    kept.count += piece.count;
    kept.errors += piece.errors;
    kept.bytes += piece.bytes;
    let read = |b: &[u8]| {
        hdrhistogram::serialization::Deserializer::new()
            .deserialize::<u64, _>(&mut &b[..])
            .ok()
    };
    let Some(b) = read(&piece.hist) else { return };
    match read(&kept.hist) {
        Some(mut a) => {
            // Decoded histograms do not grow by themselves.
            a.auto(true);
            if a.add(&b).is_ok() {
                kept.hist = crate::results::encode(&a);
            }
        }
        None => kept.hist = piece.hist.clone(),
    }
}

fn label_second(s: Second) -> LabelSecond {
    LabelSecond {
        unix_sec: s.unix_sec,
        label: s.label,
        count: s.count,
        errors: s.errors,
        bytes: s.bytes,
        hist: s.hist,
    }
}

/// `Ended.reason` on the wire.
fn reason_text(r: EndReason) -> &'static str {
    match r {
        EndReason::Finished => "finished",
        EndReason::Stopped => "stopped",
        EndReason::Killed => "killed",
        EndReason::KilledLingering => "killed-lingering",
    }
}

/// `Ended.exit` on the wire: `exit 0`, `signal 9`.
fn exit_text(e: Exit) -> String {
    match (e.code, e.signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::Install;

    fn checked() -> Checked {
        Checked {
            install: Install {
                home: "/opt/jmeter".into(),
                java: "/usr/bin/java".into(),
            },
            jmeter_version: "5.6.2".into(),
            java_version: "openjdk version \"17\"".into(),
        }
    }

    fn start_task(task_id: TaskId) -> StartTask {
        StartTask {
            task_id,
            sha256: "00".into(),
            size: 1,
            properties: vec![
                "-Jmyplatform.threads=2".into(),
                "-Jmyplatform.throughput=1200".into(),
            ],
            debug: false,
        }
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
    }

    fn chunk(data: &[u8]) -> ControllerMsg {
        ControllerMsg::ArtifactChunk {
            data: data.to_vec(),
        }
    }

    fn second(unix_sec: i64) -> LabelSecond {
        LabelSecond {
            unix_sec,
            label: "hit".into(),
            count: 1,
            errors: 0,
            bytes: 10,
            hist: vec![1, 2, 3],
        }
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn only_myplatform_properties_pass() {
        check_properties(&[
            "-Jmyplatform.threads=2".into(),
            "-Jmyplatform.throughput=1200.5".into(),
            "-Jmyplatform.duration=".into(),
        ])
        .unwrap();
        for bad in [
            "-Jjmeterengine.nongui.port=1",
            "-Jjmeter.save.saveservice.output_format=xml",
            "-Jjsr223.init.file=/tmp/x.groovy",
            "-Jmyplatform.=1",
            "-Jmyplatformx=1",
            "-Jmyplatform.threads",
            "-Dmyplatform.threads=2",
            "-Gmyplatform.threads=2",
            "myplatform.threads=2",
        ] {
            let props = vec!["-Jmyplatform.threads=2".to_string(), bad.to_string()];
            let e = check_properties(&props).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn a_refused_property_is_answered_with_failed_naming_it() {
        let tasks = Tasks::new(Ok(checked()), "/nonexistent".into());
        let mut st = start_task(3);
        st.properties.push("-Jjmeterengine.nongui.port=1".into());
        let Decision::Refuse(m) = tasks.decide(&st) else {
            panic!("not refused")
        };
        assert!(m.contains("-Jjmeterengine.nongui.port=1"), "{m}");
    }

    #[test]
    fn a_wrong_checksum_fails_and_leaves_nothing_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"PK\x03\x04 not the artifact the controller announced";
        let expected = sha256_hex(b"the real artifact");
        let mut w =
            ArtifactWriter::create(&dir.path().join(ARTIFACT), data.len() as u64, &expected)
                .unwrap();
        w.accept(chunk(&data[..10])).unwrap();
        w.accept(chunk(&data[10..])).unwrap();
        let message = w.finish().unwrap_err();
        assert_eq!(
            failed(message),
            TaskEvent::Failed {
                message: format!(
                    "the task artifact failed its checksum: expected {expected}, got {} ({} bytes); \
                     nothing was run",
                    sha256_hex(data),
                    data.len()
                ),
                log_errors: vec![],
            }
        );
        assert!(
            names_in(dir.path()).is_empty(),
            "{:?}",
            names_in(dir.path())
        );
    }

    #[test]
    fn a_matching_artifact_is_saved_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 3000];
        let path = dir.path().join(ARTIFACT);
        // The controller's hex may come in capitals.
        let sha = sha256_hex(&data).to_uppercase();
        let mut w = ArtifactWriter::create(&path, 3000, &sha).unwrap();
        for part in data.chunks(1024) {
            w.accept(chunk(part)).unwrap();
        }
        assert_eq!(w.finish().unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(names_in(dir.path()), [ARTIFACT]);
    }

    #[test]
    fn more_or_fewer_bytes_than_announced_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ARTIFACT);
        let mut w = ArtifactWriter::create(&path, 4, &sha256_hex(b"abcd")).unwrap();
        let e = w.accept(chunk(b"abcde")).unwrap_err();
        assert!(e.contains("more than the announced 4 bytes"), "{e}");
        drop(w);
        let mut w = ArtifactWriter::create(&path, 4, &sha256_hex(b"abcd")).unwrap();
        w.accept(chunk(b"abc")).unwrap();
        let e = w.finish().unwrap_err();
        assert!(e.contains("3 of 4 bytes"), "{e}");
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn a_rejection_on_the_artifact_stream_fails_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ArtifactWriter::create(&dir.path().join(ARTIFACT), 4, "x").unwrap();
        let e = w
            .accept(ControllerMsg::Rejected {
                reason: "task 3 was deleted".into(),
            })
            .unwrap_err();
        assert!(e.ends_with("task 3 was deleted"), "{e}");
        drop(w);
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn a_second_task_is_refused_while_one_runs_and_resends_are_ignored() {
        let mut tasks = Tasks::new(Ok(checked()), "/nonexistent".into());
        assert!(matches!(tasks.decide(&start_task(1)), Decision::Start(_)));
        tasks.begin(&start_task(1));
        let Decision::Refuse(m) = tasks.decide(&start_task(2)) else {
            panic!("not refused")
        };
        assert_eq!(m, "this generator already runs task 1");
        assert!(matches!(tasks.decide(&start_task(1)), Decision::Ignore));

        // JMeter ran, then the task ended: a re-sent start is ignored, a
        // new task may start.
        let t = tasks.map.get_mut(&1).unwrap();
        t.pid = Some(42);
        t.phase = Phase::Over {
            event: failed("x".into()),
            reported: None,
        };
        assert!(matches!(tasks.decide(&start_task(1)), Decision::Ignore));
        assert!(matches!(tasks.decide(&start_task(2)), Decision::Start(_)));

        // A task that failed before JMeter ran may be tried again.
        tasks.map.get_mut(&1).unwrap().pid = None;
        assert!(matches!(tasks.decide(&start_task(1)), Decision::Start(_)));
    }

    #[test]
    fn without_jmeter_a_task_is_refused_with_the_reason() {
        let tasks = Tasks::new(Err("`java` is not on PATH".into()), "/nonexistent".into());
        let Decision::Refuse(m) = tasks.decide(&start_task(1)) else {
            panic!("not refused")
        };
        assert_eq!(m, "this generator cannot run JMeter: `java` is not on PATH");
        let status = tasks.status(Instant::now());
        assert_eq!(status.jmeter, Err("`java` is not on PATH".into()));
        assert!(status.tasks.is_empty());
    }

    #[test]
    fn a_task_that_ran_before_a_restart_is_not_run_again() {
        let work = tempfile::tempdir().unwrap();
        let tasks = Tasks::new(Ok(checked()), work.path().into());
        let run = work.path().join("task-9").join(RUN_DIR);
        std::fs::create_dir_all(&run).unwrap();
        assert!(matches!(tasks.decide(&start_task(9)), Decision::Start(_)));
        std::fs::write(run.join("jmeter.out"), b"").unwrap();
        let Decision::Refuse(m) = tasks.decide(&start_task(9)) else {
            panic!("not refused")
        };
        assert!(m.contains("task 9 already ran"), "{m}");
    }

    #[test]
    fn only_the_newest_task_dirs_are_kept() {
        let work = tempfile::tempdir().unwrap();
        let base = SystemTime::now() - Duration::from_secs(3600);
        // Ids and ages disagree on purpose: age decides.
        for (id, age_rank) in [(1, 5), (2, 6), (3, 0), (4, 1), (5, 2), (6, 3), (7, 4)] {
            let d = work.path().join(format!("task-{id}"));
            std::fs::create_dir_all(d.join(RUN_DIR)).unwrap();
            std::fs::write(d.join(ARTIFACT), b"zip").unwrap();
            std::fs::File::open(&d)
                .unwrap()
                .set_modified(base + Duration::from_secs(60 * age_rank))
                .unwrap();
        }
        std::fs::create_dir(work.path().join("not-a-task")).unwrap();
        std::fs::write(work.path().join("task-99"), b"a file").unwrap();
        // Task 8 starts: it and the four newest others stay.
        let stale = stale_task_dirs(work.path(), KEEP_TASK_DIRS - 1, 8).unwrap();
        let mut ids: Vec<TaskId> = stale.iter().map(|(id, _)| *id).collect();
        ids.sort();
        assert_eq!(ids, [3, 4, 5]);
        remove_dirs(&stale);
        fresh_dir(&work.path().join("task-8")).unwrap();
        assert_eq!(
            names_in(work.path()),
            [
                "not-a-task",
                "task-1",
                "task-2",
                "task-6",
                "task-7",
                "task-8",
                "task-99"
            ]
        );
    }

    #[test]
    fn pruned_tasks_are_forgotten_once_out_of_their_window() {
        let mut tasks = Tasks::new(Ok(checked()), "/nonexistent".into());
        let now = Instant::now();
        for id in [1, 2] {
            tasks.begin(&start_task(id)).phase = Phase::Over {
                event: failed("x".into()),
                reported: None,
            };
        }
        tasks.reported(&[1], now);
        tasks.forget(&[1, 2], now + ENDED_KEPT);
        // 1 was reported ten minutes ago; 2's end has not reached the
        // controller yet.
        assert_eq!(tasks.map.keys().copied().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn status_has_running_and_recently_ended_tasks() {
        let mut tasks = Tasks::new(Ok(checked()), "/nonexistent".into());
        let now = Instant::now();
        tasks.begin(&start_task(1));
        let status = tasks.status(now);
        assert_eq!(status.jmeter.as_ref().unwrap().jmeter_version, "5.6.2");
        assert_eq!(status.jmeter.as_ref().unwrap().home, "/opt/jmeter");
        assert_eq!(
            status.tasks,
            [TaskState {
                task_id: 1,
                phase: TaskPhase::Starting,
                per_min: Some(1200.0)
            }]
        );
        tasks.map.get_mut(&1).unwrap().pid = Some(42);
        assert_eq!(
            tasks.status(now).tasks[0].phase,
            TaskPhase::Running { pid: 42 }
        );
        let ended = TaskEvent::Ended {
            reason: "finished".into(),
            exit: "exit 0".into(),
            samples: 1,
        };
        let t = tasks.map.get_mut(&1).unwrap();
        t.phase = Phase::Over {
            event: ended.clone(),
            reported: None,
        };
        t.add_second(second(100));
        // Not reported yet: listed however long ago it ended.
        let later = now + ENDED_KEPT * 3;
        assert_eq!(tasks.status(later).tasks[0].phase, TaskPhase::Over(ended));
        tasks.reported(&[1], now);
        assert_eq!(tasks.status(now + ENDED_KEPT / 2).tasks.len(), 1);
        tasks.expire(now + ENDED_KEPT / 2);
        assert_eq!(tasks.replay().len(), 1);
        assert!(tasks.status(later).tasks.is_empty());
        tasks.expire(later);
        assert!(tasks.replay().is_empty());
    }

    #[test]
    fn a_late_piece_with_slower_samples_merges_into_its_second() {
        let piece = |values: &[u64]| {
            let mut h = crate::results::new_histogram();
            for v in values {
                h.record(*v).unwrap();
            }
            LabelSecond {
                unix_sec: 7,
                label: "hit".into(),
                count: values.len() as u64,
                errors: 0,
                bytes: 0,
                hist: crate::results::encode(&h),
            }
        };
        let mut kept = piece(&[3, 4]);
        merge_second(&mut kept, &piece(&[90_000]));
        let h = hdrhistogram::serialization::Deserializer::new()
            .deserialize::<u64, _>(&mut &kept.hist[..])
            .unwrap();
        assert_eq!((kept.count, h.len(), h.min()), (3, 3, 3));
        assert!((h.max() as f64 - 90_000.0).abs() <= 90.0, "{}", h.max());
    }

    #[test]
    fn the_last_ten_minutes_of_seconds_are_kept_and_replayed_in_order() {
        let mut tasks = Tasks::new(Ok(checked()), "/nonexistent".into());
        let t = tasks.begin(&start_task(1));
        for s in 0..700 {
            t.add_second(second(s));
        }
        // A late piece of an earlier second joins it, and the whole second
        // goes out again (once).
        t.add_second(second(650));
        assert_eq!(t.unsent.len(), 700);
        assert_eq!(t.unsent.last().unwrap().unix_sec, 650);
        assert_eq!(t.unsent.last().unwrap().count, 2);
        let replay = tasks.replay();
        let (id, seconds) = &replay[0];
        assert_eq!(*id, 1);
        assert_eq!(seconds.len(), REPLAY_SECS as usize);
        assert_eq!(seconds[0].unix_sec, 100);
        assert!(seconds.windows(2).all(|w| w[0].unix_sec < w[1].unix_sec));
        assert_eq!(seconds.iter().find(|s| s.unix_sec == 650).unwrap().count, 2);
        // What the replay carries is no longer waiting for the next batch.
        assert!(tasks.map[&1].unsent.is_empty());
    }

    #[test]
    fn batches_stay_far_under_the_frame_cap() {
        let mut big = second(1);
        big.hist = vec![0; 1 << 20];
        let seconds = vec![big; 10];
        let b = batches(&seconds);
        assert!(b.len() > 1);
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 10);
        for batch in &b {
            let framed = protocol::frame::encode(&AgentMsg::TaskSeconds {
                task_id: 1,
                seconds: batch.clone(),
            })
            .unwrap();
            assert!(framed.len() < MAX_BULK_FRAME);
        }
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn files_a_task_keeps() {
        let mut tasks = Tasks::new(Ok(checked()), "/w".into());
        tasks.begin(&start_task(1));
        let mut debug = start_task(2);
        debug.debug = true;
        tasks.begin(&debug);
        assert_eq!(
            tasks.file(1, TaskFile::Log).unwrap(),
            Path::new("/w/task-1/run/jmeter.log")
        );
        assert!(
            tasks
                .file(1, TaskFile::Jtl)
                .unwrap_err()
                .contains("debug mode")
        );
        assert_eq!(
            tasks.file(2, TaskFile::Jtl).unwrap(),
            Path::new("/w/task-2/run/results.csv")
        );
        assert!(tasks.file(3, TaskFile::Jtl).is_err());
    }

    #[test]
    fn ends_on_the_wire() {
        let exit = |code, signal| Exit { code, signal };
        assert_eq!(exit_text(exit(Some(0), None)), "exit 0");
        assert_eq!(exit_text(exit(None, Some(9))), "signal 9");
        assert_eq!(exit_text(exit(None, None)), "unknown");
        assert_eq!(reason_text(EndReason::KilledLingering), "killed-lingering");
        assert_eq!(reason_text(EndReason::Finished), "finished");
        assert_eq!(initial_rate(&start_task(1).properties), Some(1200.0));
        assert_eq!(initial_rate(&[]), None);
    }
}
