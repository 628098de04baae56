//! The messages agents and the controller exchange.
//!
//! Compatibility rules (tested in `tests` below): `AgentMsg::Hello` stays
//! variant 0 with `protocol_version` as its first field, and
//! `ControllerMsg::Welcome` / `ControllerMsg::Rejected` stay variants 0 and 1,
//! so peers of different versions can always tell each other why they
//! disagree instead of failing to decode.

use certs::{AgentId, Role};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 2;

/// ALPN of enrolled agents: a client certificate is required.
pub const ALPN_AGENT: &[u8] = b"myplatform/1";
/// ALPN used once to trade a join token and a CSR for a certificate.
pub const ALPN_ENROLL: &[u8] = b"myplatform-enroll/1";

/// QUIC application close codes. The close reason carries the human text.
pub mod close {
    /// Normal shutdown of either side; reconnect later.
    pub const SHUTDOWN: u32 = 0;
    /// The peer refused us for a reason retrying will not fix.
    pub const REJECTED: u32 = 1;
    /// The agent's certificate was revoked.
    pub const REVOKED: u32 = 2;
    /// A newer connection of the same agent replaced this one.
    pub const REPLACED: u32 = 3;
    /// A malformed, oversized or unexpected frame.
    pub const PROTOCOL_ERROR: u32 = 4;
}

/// First frame on every connection, from the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    /// `None` while enrolling.
    pub agent_id: Option<AgentId>,
    pub role: Role,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub agent_version: String,
}

impl Hello {
    /// A Hello describing this machine.
    pub fn local(role: Role, agent_id: Option<AgentId>, agent_version: &str) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_id,
            role,
            hostname: local_hostname(),
            os: local_os(),
            arch: std::env::consts::ARCH.to_string(),
            agent_version: agent_version.to_string(),
        }
    }
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn local_os() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| os_release_pretty_name(&s))
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

/// `PRETTY_NAME` from /etc/os-release contents.
pub fn os_release_pretty_name(contents: &str) -> Option<String> {
    contents.lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

/// Agent -> controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentMsg {
    Hello(Hello),
    /// On the enrollment ALPN, right after `Hello`.
    Enroll {
        token: String,
        csr_pem: String,
    },
    /// Liveness, on the control stream every `heartbeat_secs`.
    Heartbeat {
        seq: u64,
    },
    /// Host facts (agent-monitor), at connect and when they change.
    HostFacts(crate::metrics::HostFacts),
    /// Samples on the metrics stream. `seq` counts batches per agent from 1
    /// and survives agent restarts; the controller acks with `MetricAck`
    /// and ignores a `seq` it already stored (replays after reconnects).
    MetricBatch {
        seq: u64,
        /// Batches the agent dropped before this one because its buffer
        /// was full while the controller was unreachable.
        dropped_before: u64,
        samples: Vec<crate::metrics::HostSample>,
    },
    /// agent-jmeter, after every connect and when it changes.
    GeneratorStatus(crate::load::GeneratorStatus),
    /// agent-jmeter: something happened to a task run here.
    TaskEvent {
        task_id: crate::load::TaskId,
        event: crate::load::TaskEvent,
    },
    /// agent-jmeter, on a bulk stream: per-second results, in time order.
    /// Re-sent after a reconnect; the controller keeps the first copy.
    TaskSeconds {
        task_id: crate::load::TaskId,
        seconds: Vec<crate::load::LabelSecond>,
    },
    /// agent-jmeter, first frame of a bidirectional stream it opens: send
    /// me this task's artifact (`ControllerMsg::ArtifactChunk`s follow).
    FetchArtifact {
        task_id: crate::load::TaskId,
    },
    /// agent-jmeter, on a bulk stream: part of a file the controller asked
    /// for with `SendFile`; `last` ends it.
    FileChunk {
        request: u64,
        data: Vec<u8>,
        last: bool,
    },
    /// agent-jmeter: the file of a `SendFile` cannot be sent.
    FileMissing {
        request: u64,
        reason: String,
    },
}

/// Controller -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControllerMsg {
    Welcome {
        protocol_version: u32,
        controller_version: String,
        heartbeat_secs: u32,
    },
    /// Final: the connection closes after it; retrying will not help.
    Rejected {
        reason: String,
    },
    Enrolled {
        agent_id: AgentId,
        cert_pem: String,
        ca_pem: String,
    },
    HeartbeatAck {
        seq: u64,
    },
    /// Every metric batch up to and including `seq` is stored.
    MetricAck {
        seq: u64,
    },
    /// What agent-monitor should watch: the application identifier of the
    /// host's group (`ps -ef | grep <identifier>`), or nothing. Sent at
    /// connect and whenever it changes; no agent restart needed.
    Watch {
        identifier: Option<String>,
    },
    /// Drop the page cache now (available memory is low and the admin
    /// enabled cache cleaning for alerts). The agent rate-limits it.
    DropCaches,
    /// agent-jmeter: run a share of a task.
    StartTask(crate::load::StartTask),
    /// agent-jmeter: the task's rate on this generator, samples per minute.
    SetRate {
        task_id: crate::load::TaskId,
        per_min: f64,
    },
    /// agent-jmeter: stop the task (graceful, then killed).
    StopTask {
        task_id: crate::load::TaskId,
    },
    /// On an artifact stream: the next part of the artifact. The stream's
    /// end is the artifact's end.
    ArtifactChunk {
        data: Vec<u8>,
    },
    /// agent-jmeter: upload a task file as `AgentMsg::FileChunk`s tagged
    /// with `request`.
    SendFile {
        request: u64,
        task_id: crate::load::TaskId,
        file: crate::load::TaskFile,
    },
}

/// Reads the protocol version out of an encoded `AgentMsg::Hello` (or
/// `ControllerMsg::Welcome`) frame payload without decoding the rest, so a
/// peer of another version gets a clear answer.
pub fn peek_protocol_version(payload: &[u8]) -> Option<u32> {
    let (variant, version): (u32, u32) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard())
            .ok()?
            .0;
    (variant == 0).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    fn hello(v: u32) -> Hello {
        Hello {
            protocol_version: v,
            agent_id: Some(AgentId::generate()),
            role: Role::Monitor,
            hostname: "h".into(),
            os: "Debian".into(),
            arch: "x86_64".into(),
            agent_version: "0.1.0".into(),
        }
    }

    #[test]
    fn version_is_readable_from_any_hello_or_welcome() {
        for v in [1, 2, 99, u32::MAX] {
            let payload = frame::encode_payload(&AgentMsg::Hello(hello(v))).unwrap();
            assert_eq!(peek_protocol_version(&payload), Some(v));
            let welcome = ControllerMsg::Welcome {
                protocol_version: v,
                controller_version: "x".into(),
                heartbeat_secs: 5,
            };
            let payload = frame::encode_payload(&welcome).unwrap();
            assert_eq!(peek_protocol_version(&payload), Some(v));
        }
        let hb = frame::encode_payload(&AgentMsg::Heartbeat { seq: 3 }).unwrap();
        assert_eq!(peek_protocol_version(&hb), None);
        assert_eq!(peek_protocol_version(&[]), None);
    }

    #[test]
    fn rejected_stays_variant_one() {
        let payload = frame::encode_payload(&ControllerMsg::Rejected {
            reason: "no".into(),
        })
        .unwrap();
        assert_eq!(payload[0], 1);
    }

    #[test]
    fn pretty_name_is_read_from_os_release() {
        let s = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_release_pretty_name(s).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os_release_pretty_name("ID=x"), None);
    }
}
