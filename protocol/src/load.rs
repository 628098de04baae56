//! Load-test messages between the controller and agent-jmeter.
//!
//! The controller owns tasks; a generator (one agent-jmeter) runs its share
//! of one task at a time and reports on it. Rates on the wire are samples
//! per minute, the unit of JMeter's Constant Throughput Timer, so nothing
//! converts twice.
//!
//! Flow of one run on one generator:
//! 1. controller -> `StartTask` on the control stream;
//! 2. agent opens a bidirectional stream, sends `FetchArtifact`; the
//!    controller answers `ArtifactChunk`s then finishes the stream (or sends
//!    `Rejected` on it); the agent checks size and SHA-256;
//! 3. agent -> `TaskEvent::Started`, then `TaskSeconds` on a bulk stream
//!    once per second, then `TaskEvent::Ended` or `TaskEvent::Failed`;
//! 4. `SetRate` / `StopTask` at any time, answered by `TaskEvent`s.
//!
//! After every (re)connection the agent sends `GeneratorStatus`: what it
//! can run and which tasks it runs or ran lately, so a restarted controller
//! picks up where it was; it re-sends its recent `TaskSeconds` (the
//! controller keeps the first copy of each).
//!
//! Only the wire shapes live here; no behaviour.

use serde::{Deserialize, Serialize};

/// Task ids are the controller's; agents only echo them.
pub type TaskId = u64;

/// Largest artifact chunk on the wire (under the bulk frame cap).
pub const ARTIFACT_CHUNK: usize = 1024 * 1024;
/// Largest file chunk (JMeter log, JTL) on the wire.
pub const FILE_CHUNK: usize = 1024 * 1024;

/// What an agent-jmeter can run, and what it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorStatus {
    /// JMeter and java as checked at the agent's start, or why not usable.
    pub jmeter: Result<JmeterInfo, String>,
    /// Tasks running here, and tasks that ended recently (so an end the
    /// controller missed while it was away still reaches it).
    pub tasks: Vec<TaskState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JmeterInfo {
    pub jmeter_version: String,
    pub java_version: String,
    /// Where JMeter is (`JMETER_HOME`), for the operator.
    pub home: String,
}

/// One task as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub task_id: TaskId,
    pub phase: TaskPhase,
    /// The rate JMeter runs at now (TPS mode), samples per minute.
    pub per_min: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskPhase {
    /// Fetching the artifact or starting the JVM.
    Starting,
    Running {
        pid: u32,
    },
    /// The last event the run reported (`Ended` or `Failed`).
    Over(TaskEvent),
}

/// Controller -> agent: run a share of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartTask {
    pub task_id: TaskId,
    /// Hex SHA-256 of the artifact zip the agent fetches.
    pub sha256: String,
    pub size: u64,
    /// `-Jname=value` run properties (threads, duration, rate). The agent
    /// refuses anything else and any name of its own fixed settings.
    pub properties: Vec<String>,
    /// Keep the whole JTL for download.
    pub debug: bool,
}

/// Something that happened to a task on a generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskEvent {
    /// JMeter runs.
    Started { pid: u32, jmeter_version: String },
    /// A `SetRate` took effect inside JMeter (acknowledged by it).
    RateSet { per_min: f64 },
    /// A `SetRate` or `StopTask` could not be carried out.
    Refused { reason: String },
    /// JMeter ended: `reason` is one of finished, stopped, killed,
    /// killed-lingering; `exit` is the JVM's status as text; `samples`
    /// counts every sample of the run sent in `TaskSeconds`, so the
    /// controller knows when the last of them (on another stream) arrived.
    Ended {
        reason: String,
        exit: String,
        samples: u64,
    },
    /// The run could not start or JMeter failed (bad artifact, checksum,
    /// no java, JMeter error): what the operator needs to fix it.
    Failed {
        message: String,
        log_errors: Vec<String>,
    },
}

/// One second of one sampler label on one generator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSecond {
    /// Unix second the samples ended in.
    pub unix_sec: i64,
    pub label: String,
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
    /// Elapsed times (ms), HDR histogram V2 serialization (not deflated).
    pub hist: Vec<u8>,
}

/// Files of a task a generator keeps for download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskFile {
    /// jmeter.log
    Log,
    /// The full results (debug runs only).
    Jtl,
}

impl TaskFile {
    pub fn file_name(self) -> &'static str {
        match self {
            TaskFile::Log => "jmeter.log",
            TaskFile::Jtl => "results.jtl",
        }
    }
}
