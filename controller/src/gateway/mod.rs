//! The controller's side of the agent link: the QUIC endpoint, enrollment,
//! agent sessions and the live [`registry`].
//!
//! Every connection runs in its own task; a misbehaving peer (no
//! certificate, wrong version, garbage, oversized frames) gets a clear
//! refusal and its connection closed, and nothing else notices. Agent
//! messages are routed from here to the stores; this module never decides
//! permissions and knows nothing about HTTP.

mod enroll;
pub mod registry;

pub use enroll::{NewToken, create_token, install_command};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certs::{AgentId, CertificateAuthority, RevocationList};
use protocol::frame::{self, FrameError, MAX_BULK_FRAME, MAX_CONTROL_FRAME};
use protocol::{
    ALPN_AGENT, ALPN_ENROLL, AgentMsg, ControllerMsg, Hello, PROTOCOL_VERSION, close,
    peek_protocol_version,
};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::GatewaySettings;
use crate::inventory::{AgentFacts, Inventory, unix_now};
use crate::loadtest::runner::Runner;
use crate::metrics::Metrics;
pub use registry::{LiveAgent, Registry};

/// Metric batches between two acks (see `dispatch`).
const ACK_EVERY: u64 = 5;
/// How long a peer has to send its first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How often other processes' changes (revocations, watched applications)
/// are looked for, and metric sequence numbers persisted.
const INVENTORY_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Endpoint(#[from] protocol::endpoint::EndpointError),
    #[error(transparent)]
    Certs(#[from] certs::Error),
    #[error(transparent)]
    Inventory(#[from] crate::inventory::Error),
}

struct Shared {
    inventory: Arc<Inventory>,
    runner: Arc<Runner>,
    metrics: Arc<Metrics>,
    ca: Arc<CertificateAuthority>,
    registry: Arc<Registry>,
    revoked: RevocationList,
    heartbeat_secs: u32,
    cert_validity: Duration,
}

pub struct Gateway {
    endpoint: Endpoint,
    shared: Arc<Shared>,
}

impl Gateway {
    /// `registry` is made by the caller, who also gives it to `runner`.
    pub fn bind(
        settings: &GatewaySettings,
        inventory: Arc<Inventory>,
        ca: Arc<CertificateAuthority>,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
        runner: Arc<Runner>,
    ) -> Result<Gateway, Error> {
        inventory.reset_online()?;
        let revoked = RevocationList::default();
        revoked.replace(inventory.revoked_ids()?);
        let tls = certs::tls::controller_config(&ca, revoked.clone(), &[ALPN_AGENT, ALPN_ENROLL])?;
        let endpoint = protocol::endpoint::server(settings.listen, tls)?;
        Ok(Gateway {
            endpoint,
            shared: Arc::new(Shared {
                inventory,
                runner,
                metrics,
                ca,
                registry,
                revoked,
                heartbeat_secs: settings.heartbeat_secs,
                cert_validity: Duration::from_secs(u64::from(settings.agent_cert_days) * 86_400),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.shared.registry.clone()
    }

    /// Revokes an agent: stored, refused at the next handshake, and its live
    /// connection dropped now. False when the agent is unknown.
    pub fn revoke(&self, id: &AgentId) -> Result<bool, Error> {
        revoke(&self.shared, id)
    }

    /// Serves until `shutdown`, then closes every connection.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        tasks.spawn(watch_inventory(self.shared.clone(), shutdown.clone()));
        info!(addr = %self.local_addr(), "agent gateway listening (QUIC)");
        loop {
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => break,
                i = self.endpoint.accept() => match i {
                    Some(i) => i,
                    None => break,
                },
            };
            let shared = self.shared.clone();
            tasks.spawn(async move {
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(conn) => handle_connection(shared, conn).await,
                    Err(e) => debug!(%remote, error = %e, "handshake failed"),
                }
            });
        }
        self.shared
            .registry
            .close_all(close::SHUTDOWN, "controller shutting down");
        self.endpoint.close(
            VarInt::from_u32(close::SHUTDOWN),
            b"controller shutting down",
        );
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            tasks.wait().await;
            self.endpoint.wait_idle().await;
        })
        .await;
        info!("agent gateway stopped");
    }
}

fn revoke(shared: &Shared, id: &AgentId) -> Result<bool, Error> {
    if !shared.inventory.revoke(id, unix_now())? {
        return Ok(false);
    }
    shared.revoked.insert(id.clone());
    if shared
        .registry
        .close(id, close::REVOKED, "certificate revoked")
    {
        info!(agent_id = %id, "revoked agent disconnected");
    }
    Ok(true)
}

/// Tells an agent-monitor which application to watch (it ignores a repeat).
fn send_watch(shared: &Shared, id: &AgentId) {
    match shared.inventory.app_identifier(id) {
        Ok(identifier) => {
            shared
                .registry
                .send(id, ControllerMsg::Watch { identifier });
        }
        Err(e) => warn!(agent_id = %id, error = %e, "cannot read the watched application"),
    }
}

/// Picks up revocations made by other processes (`controller agent revoke`)
/// and changed application identifiers (a group edited in the web UI).
async fn watch_inventory(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut seen = shared.inventory.change_stamp().ok();
    let mut tick = tokio::time::interval(INVENTORY_POLL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                shared.metrics.flush();
                return;
            }
            _ = tick.tick() => {}
        }
        shared.metrics.flush_if_due();
        let now = shared.inventory.change_stamp().ok();
        if now == seen {
            continue;
        }
        seen = now;
        for agent in shared.registry.snapshot() {
            if agent.role == certs::Role::Monitor {
                send_watch(&shared, &agent.id);
            }
        }
        match shared.inventory.revoked_ids() {
            Ok(ids) => {
                for id in shared.revoked.replace(ids) {
                    if shared
                        .registry
                        .close(&id, close::REVOKED, "certificate revoked")
                    {
                        info!(agent_id = %id, "revoked agent disconnected");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot reload revocations"),
        }
    }
}

async fn handle_connection(shared: Arc<Shared>, conn: Connection) {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    match alpn.as_deref() {
        Some(ALPN_AGENT) => agent_session(shared, conn).await,
        Some(ALPN_ENROLL) => enroll::handle(shared, conn).await,
        _ => refuse(&conn, None, close::REJECTED, "unknown application protocol").await,
    }
}

/// Tells the peer why, then closes. The reason travels in the QUIC close
/// frame (reliable) and, when a stream is open, as a `Rejected` frame.
async fn refuse(conn: &Connection, send: Option<&mut SendStream>, code: u32, reason: &str) {
    warn!(remote = %conn.remote_address(), reason, "refusing connection");
    if let Some(send) = send {
        let msg = ControllerMsg::Rejected {
            reason: reason.to_string(),
        };
        let _ =
            tokio::time::timeout(Duration::from_millis(500), frame::write_frame(send, &msg)).await;
    }
    conn.close(VarInt::from_u32(code), reason.as_bytes());
}

/// Accepts the control stream and reads `Hello`, checking the version
/// before decoding the rest.
async fn accept_hello(conn: &Connection) -> Result<(SendStream, RecvStream, Hello), String> {
    let (send, mut recv) = tokio::time::timeout(FIRST_FRAME_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| "no control stream opened in time".to_string())?
        .map_err(|e| format!("connection lost before Hello: {e}"))?;
    let raw = tokio::time::timeout(
        FIRST_FRAME_TIMEOUT,
        frame::read_raw_frame(&mut recv, MAX_CONTROL_FRAME),
    )
    .await
    .map_err(|_| "no Hello in time".to_string())?
    .map_err(|e| format!("bad first frame: {e}"))?
    .ok_or_else(|| "stream closed before Hello".to_string())?;
    match peek_protocol_version(&raw) {
        Some(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "protocol version mismatch: agent speaks v{v}, controller speaks v{PROTOCOL_VERSION}; install an agent of the controller's version"
            ));
        }
        None => return Err("the first frame must be Hello".into()),
    }
    match frame::decode::<AgentMsg>(&raw) {
        Ok(AgentMsg::Hello(h)) => Ok((send, recv, h)),
        Ok(_) => Err("the first frame must be Hello".into()),
        Err(e) => Err(format!("bad Hello: {e}")),
    }
}

async fn agent_session(shared: Arc<Shared>, conn: Connection) {
    let remote = conn.remote_address();
    let chain = conn.peer_identity().and_then(|i| {
        i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()
    });
    let Some(chain) = chain else {
        refuse(
            &conn,
            None,
            close::REJECTED,
            "a client certificate is required on myplatform/1; enroll with a join token first",
        )
        .await;
        return;
    };
    let (agent_id, role) = match certs::tls::peer_agent(&chain) {
        Ok(x) => x,
        Err(e) => {
            refuse(
                &conn,
                None,
                close::REJECTED,
                &format!("unusable certificate: {e}"),
            )
            .await;
            return;
        }
    };
    if shared.revoked.contains(&agent_id) {
        refuse(&conn, None, close::REVOKED, "certificate revoked").await;
        return;
    }
    let (mut send, mut recv, hello) = match accept_hello(&conn).await {
        Ok(x) => x,
        Err(reason) => {
            refuse(&conn, None, close::REJECTED, &reason).await;
            return;
        }
    };
    if hello.agent_id.as_ref() != Some(&agent_id) || hello.role != role {
        let reason = format!(
            "Hello says {:?}/{} but the certificate is for {agent_id}/{role}",
            hello.agent_id, hello.role
        );
        refuse(&conn, Some(&mut send), close::REJECTED, &reason).await;
        return;
    }
    let welcome = ControllerMsg::Welcome {
        protocol_version: PROTOCOL_VERSION,
        controller_version: env!("CARGO_PKG_VERSION").to_string(),
        heartbeat_secs: shared.heartbeat_secs,
    };
    if frame::write_frame(&mut send, &welcome).await.is_err() {
        return;
    }
    let facts = AgentFacts {
        hostname: &hello.hostname,
        os: &hello.os,
        arch: &hello.arch,
        agent_version: &hello.agent_version,
    };
    if let Err(e) =
        shared
            .inventory
            .record_connect(&agent_id, &facts, &remote.to_string(), unix_now())
    {
        warn!(%agent_id, error = %e, "cannot record the connection");
    }

    let (tx, mut rx) = mpsc::channel::<ControllerMsg>(256);
    let session = shared
        .registry
        .insert(&agent_id, &hello, remote, conn.clone(), tx.clone());
    info!(%agent_id, %role, hostname = %hello.hostname, %remote, "agent connected");
    if role == certs::Role::Monitor {
        // Where its numbering stands here (an agent that lost its buffer
        // continues after it), and what to watch.
        let _ = tx.try_send(ControllerMsg::MetricAck {
            seq: shared.metrics.high_water_mark(&agent_id),
        });
        send_watch(&shared, &agent_id);
    }

    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if frame::write_frame(&mut send, &msg).await.is_err() {
                break;
            }
        }
        let _ = send.finish();
    });
    let bulk = tokio::spawn(accept_bulk(
        shared.clone(),
        conn.clone(),
        agent_id.clone(),
        tx.clone(),
    ));
    let requests = tokio::spawn(accept_requests(
        shared.clone(),
        conn.clone(),
        agent_id.clone(),
    ));

    let end = loop {
        match frame::read_frame::<_, AgentMsg>(&mut recv, MAX_CONTROL_FRAME).await {
            Ok(Some(msg)) => {
                if let Err(reason) = dispatch(&shared, &agent_id, msg, &tx) {
                    refuse(&conn, None, close::PROTOCOL_ERROR, &reason).await;
                    break reason;
                }
            }
            Ok(None) => break "control stream closed by the agent".to_string(),
            Err(FrameError::Io(e)) => {
                break conn
                    .close_reason()
                    .map_or_else(|| e.to_string(), |c| c.to_string());
            }
            Err(e) => {
                let reason = format!("control stream: {e}");
                refuse(&conn, None, close::PROTOCOL_ERROR, &reason).await;
                break reason;
            }
        }
    };
    bulk.abort();
    requests.abort();
    writer.abort();
    // A replaced session leaves the record to its successor.
    if shared.registry.remove(&agent_id, session) {
        if let Err(e) = shared.inventory.record_disconnect(&agent_id, unix_now()) {
            warn!(%agent_id, error = %e, "cannot record last contact");
        }
        if role == certs::Role::Jmeter {
            shared.runner.on_disconnect(&agent_id.to_string());
        }
    }
    info!(%agent_id, reason = %end, "agent disconnected");
}

/// Bulk data arrives on unidirectional streams of its own; answers go on the
/// control stream.
async fn accept_bulk(
    shared: Arc<Shared>,
    conn: Connection,
    agent_id: AgentId,
    tx: mpsc::Sender<ControllerMsg>,
) {
    while let Ok(mut recv) = conn.accept_uni().await {
        let shared = shared.clone();
        let agent_id = agent_id.clone();
        let tx = tx.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            loop {
                match frame::read_frame::<_, AgentMsg>(&mut recv, MAX_BULK_FRAME).await {
                    Ok(Some(AgentMsg::FileChunk {
                        request,
                        data,
                        last,
                    })) => {
                        // Waits for the writer: a file arrives no faster
                        // than it is stored.
                        shared
                            .runner
                            .on_file_chunk(&agent_id.to_string(), request, data, last)
                            .await;
                    }
                    Ok(Some(msg)) => {
                        if let Err(reason) = dispatch(&shared, &agent_id, msg, &tx) {
                            refuse(&conn, None, close::PROTOCOL_ERROR, &reason).await;
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(FrameError::Io(_)) => return,
                    Err(e) => {
                        refuse(
                            &conn,
                            None,
                            close::PROTOCOL_ERROR,
                            &format!("bulk stream: {e}"),
                        )
                        .await;
                        return;
                    }
                }
            }
        });
    }
}

/// Requests an agent makes on bidirectional streams of its own: today
/// only fetching a task artifact, sent in chunks on the same stream.
async fn accept_requests(shared: Arc<Shared>, conn: Connection, agent_id: AgentId) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let shared = shared.clone();
        let agent_id = agent_id.clone();
        tokio::spawn(async move {
            let first = tokio::time::timeout(
                FIRST_FRAME_TIMEOUT,
                frame::read_frame::<_, AgentMsg>(&mut recv, MAX_CONTROL_FRAME),
            )
            .await;
            let answer = match first {
                Ok(Ok(Some(AgentMsg::FetchArtifact { task_id }))) => {
                    shared.runner.artifact_for(&agent_id.to_string(), task_id)
                }
                Ok(Ok(Some(_))) => Err("this stream takes FetchArtifact only".to_string()),
                Ok(Err(e)) => Err(format!("bad request: {e}")),
                Ok(Ok(None)) | Err(_) => return,
            };
            match answer {
                Ok(path) => {
                    if let Err(e) = send_artifact(&mut send, &path).await {
                        warn!(%agent_id, error = %e, "sending an artifact failed");
                    }
                }
                Err(reason) => {
                    warn!(%agent_id, reason, "artifact request refused");
                    let _ =
                        frame::write_frame(&mut send, &ControllerMsg::Rejected { reason }).await;
                }
            }
            let _ = send.finish();
        });
    }
}

async fn send_artifact(send: &mut SendStream, path: &std::path::Path) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; protocol::load::ARTIFACT_CHUNK];
    loop {
        let n = f.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        let msg = ControllerMsg::ArtifactChunk {
            data: buf[..n].to_vec(),
        };
        frame::write_frame(send, &msg)
            .await
            .map_err(|e| e.to_string())?;
    }
}

/// Routes one agent message. `Err` is a protocol violation.
fn dispatch(
    shared: &Shared,
    agent_id: &AgentId,
    msg: AgentMsg,
    tx: &mpsc::Sender<ControllerMsg>,
) -> Result<(), String> {
    match msg {
        AgentMsg::Heartbeat { seq } => {
            shared.registry.heartbeat(agent_id);
            // A full queue means the agent is not reading; the ack is
            // advisory, so dropping it is harmless.
            let _ = tx.try_send(ControllerMsg::HeartbeatAck { seq });
            Ok(())
        }
        AgentMsg::MetricBatch {
            seq,
            dropped_before,
            samples,
        } => {
            let r = shared
                .metrics
                .ingest(agent_id, seq, dropped_before, samples);
            // Acks are cumulative and name only durable batches, so one
            // every few batches is enough: each ack is a packet both ways on
            // every host. A repeat is answered at once so a replaying agent
            // moves on.
            if r.duplicate || seq % ACK_EVERY == 0 {
                let _ = tx.try_send(ControllerMsg::MetricAck { seq: r.durable });
            }
            Ok(())
        }
        AgentMsg::HostFacts(facts) => {
            shared.metrics.set_facts(agent_id, facts);
            Ok(())
        }
        AgentMsg::GeneratorStatus(status) => {
            shared.runner.on_status(&agent_id.to_string(), status);
            Ok(())
        }
        AgentMsg::TaskEvent { task_id, event } => {
            shared
                .runner
                .on_event(&agent_id.to_string(), task_id, event);
            Ok(())
        }
        AgentMsg::TaskSeconds { task_id, seconds } => {
            shared
                .runner
                .on_seconds(&agent_id.to_string(), task_id, &seconds);
            Ok(())
        }
        AgentMsg::FileMissing { request, reason } => {
            shared
                .runner
                .on_file_missing(&agent_id.to_string(), request, reason);
            Ok(())
        }
        AgentMsg::FileChunk { .. } => Err("FileChunk belongs on a bulk stream".into()),
        AgentMsg::FetchArtifact { .. } => Err("FetchArtifact opens a stream of its own".into()),
        AgentMsg::Hello(_) => Err("Hello is only valid as the first frame".into()),
        AgentMsg::Enroll { .. } => Err("Enroll is only valid on the enrollment protocol".into()),
    }
}
