//! The agent side of the agent <-> controller link, shared by both agents.
//!
//! [`Link::spawn`] runs one task that: enrolls if the agent has no
//! certificate yet (token + CA pin), connects with mutual TLS, sends `Hello`
//! and waits for `Welcome` (quinn reports a connection as up before the
//! controller has even looked at our certificate, so only `Welcome` counts),
//! then keeps one control stream with heartbeats. It reconnects with jittered
//! exponential backoff, and stops for good only on a refusal retrying cannot
//! fix (rejected, revoked, wrong CA pin) so a misconfigured agent never
//! hammers the controller.
//!
//! The link moves messages; it does not buffer application data across
//! disconnections. Callers that must not lose data (metric batches) keep
//! their own buffer and replay on the next [`LinkState::Connected`] epoch.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certs::{AgentId, AgentIdentity, CaPin, Role};
use quinn::{Connection, ConnectionError, Endpoint, TransportErrorCode, VarInt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::frame::{self, FrameError, MAX_CONTROL_FRAME};
use crate::messages::{
    ALPN_AGENT, ALPN_ENROLL, AgentMsg, ControllerMsg, Hello, PROTOCOL_VERSION, close,
    peek_protocol_version,
};
use crate::{endpoint, tls_pin_mismatch};

/// How long the controller has to answer `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS alert "certificate_revoked".
const ALERT_CERTIFICATE_REVOKED: u8 = 44;

/// Reconnect delays: `initial * 2^attempt`, capped at `max`, each drawn at
/// random from its upper half so a fleet restarting together spreads out.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        let half = base / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Where the agent keeps its identity.
#[derive(Debug, Clone)]
pub enum IdentityStore {
    /// Files in a state directory (what real agents use).
    Dir(PathBuf),
    /// In memory only (benchmarks simulating thousands of agents).
    Memory(Arc<Mutex<Option<AgentIdentity>>>),
}

impl IdentityStore {
    pub fn memory() -> IdentityStore {
        IdentityStore::Memory(Arc::new(Mutex::new(None)))
    }

    pub fn load(&self) -> Result<Option<AgentIdentity>, LinkError> {
        match self {
            IdentityStore::Dir(d) => Ok(AgentIdentity::load(d)?),
            IdentityStore::Memory(m) => Ok(m.lock().expect("identity lock").clone()),
        }
    }

    fn save(&self, id: &AgentIdentity) -> Result<(), LinkError> {
        match self {
            IdentityStore::Dir(d) => Ok(id.save(d)?),
            IdentityStore::Memory(m) => {
                *m.lock().expect("identity lock") = Some(id.clone());
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `host:port` of the controller's QUIC endpoint.
    pub controller: String,
    pub identity: IdentityStore,
    pub role: Role,
    pub agent_version: String,
    /// Needed only until the agent is enrolled.
    pub token: Option<String>,
    /// Needed only until the agent is enrolled.
    pub ca_pin: Option<CaPin>,
    pub backoff: Backoff,
    /// Share one UDP socket among many links (benchmarks); `None` makes one.
    pub endpoint: Option<Endpoint>,
    /// Overridable only so tests can play an agent of another version.
    pub protocol_version: u32,
}

impl LinkConfig {
    pub fn new(controller: impl Into<String>, identity: IdentityStore, role: Role) -> LinkConfig {
        LinkConfig {
            controller: controller.into(),
            identity,
            role,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            token: None,
            ca_pin: None,
            backoff: Backoff::default(),
            endpoint: None,
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Starting,
    Enrolling,
    Connecting {
        attempt: u32,
        last_error: Option<String>,
    },
    /// `epoch` grows by one at each successful (re)connection.
    Connected {
        agent_id: AgentId,
        epoch: u64,
    },
    Stopped,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("the controller refused this agent: {0}")]
    Rejected(String),
    #[error(
        "this agent's certificate was revoked; remove its state directory and enroll again with a new token"
    )]
    Revoked,
    #[error(
        "the agent is not enrolled and has no join token and CA pin: run it with --token and --ca-pin from `controller token create`"
    )]
    NotEnrolled,
    #[error("the controller is not the one the install line names: {0}")]
    PinMismatch(String),
    #[error("agent identity: {0}")]
    Identity(Arc<certs::Error>),
    #[error("{0}")]
    Connection(String),
}

impl From<certs::Error> for LinkError {
    fn from(e: certs::Error) -> Self {
        LinkError::Identity(Arc::new(e))
    }
}

impl LinkError {
    /// Whether retrying could help.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, LinkError::Connection(_))
    }
}

impl From<FrameError> for LinkError {
    fn from(e: FrameError) -> Self {
        LinkError::Connection(e.to_string())
    }
}

impl From<ConnectionError> for LinkError {
    fn from(e: ConnectionError) -> Self {
        classify_close(&e)
    }
}

impl From<quinn::WriteError> for LinkError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => classify_close(&c),
            other => LinkError::Connection(other.to_string()),
        }
    }
}

fn classify_close(e: &ConnectionError) -> LinkError {
    match e {
        ConnectionError::ApplicationClosed(ac) => {
            let reason = String::from_utf8_lossy(&ac.reason).into_owned();
            match u32::try_from(ac.error_code.into_inner()).unwrap_or(u32::MAX) {
                close::REJECTED => LinkError::Rejected(reason),
                close::REVOKED => LinkError::Revoked,
                _ => LinkError::Connection(format!("controller closed the connection: {reason}")),
            }
        }
        ConnectionError::ConnectionClosed(cc)
            if cc.error_code == TransportErrorCode::crypto(ALERT_CERTIFICATE_REVOKED) =>
        {
            LinkError::Revoked
        }
        ConnectionError::TransportError(te) if te.reason.contains(tls_pin_mismatch()) => {
            LinkError::PinMismatch(te.reason.clone())
        }
        other => LinkError::Connection(other.to_string()),
    }
}

/// Sending half handed to the agent's application.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    control: mpsc::Sender<AgentMsg>,
    conn: watch::Receiver<Option<Connection>>,
    state: watch::Receiver<LinkState>,
}

impl LinkHandle {
    pub fn state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Waits until connected (or the link stopped); returns the epoch.
    pub async fn connected(&self) -> Option<(AgentId, u64)> {
        let mut rx = self.state.clone();
        loop {
            match &*rx.borrow_and_update() {
                LinkState::Connected { agent_id, epoch } => {
                    return Some((agent_id.clone(), *epoch));
                }
                LinkState::Stopped => return None,
                _ => {}
            }
            rx.changed().await.ok()?;
        }
    }

    /// Queues a message for the control stream. Messages queued while
    /// disconnected go out after the next reconnection; a full queue refuses.
    pub fn send(&self, msg: AgentMsg) -> Result<(), LinkError> {
        self.control
            .try_send(msg)
            .map_err(|e| LinkError::Connection(format!("control queue: {e}")))
    }

    /// Sends messages on a new stream of their own, so a large upload never
    /// delays the control stream. Fails when not connected.
    pub async fn send_bulk(&self, msgs: &[AgentMsg]) -> Result<(), LinkError> {
        let conn = self
            .conn
            .borrow()
            .clone()
            .ok_or_else(|| LinkError::Connection("not connected".into()))?;
        let mut s = conn.open_uni().await?;
        for m in msgs {
            s.write_all(&frame::encode(m)?).await?;
        }
        s.finish()
            .map_err(|e| LinkError::Connection(e.to_string()))?;
        Ok(())
    }
}

/// A long-lived stream of bulk frames in order (e.g. metric batches),
/// separate from the control stream.
#[derive(Debug)]
pub struct BulkStream {
    send: quinn::SendStream,
}

impl BulkStream {
    pub async fn send(&mut self, msg: &AgentMsg) -> Result<(), LinkError> {
        self.send_encoded(&frame::encode(msg)?).await
    }

    /// Writes a frame already encoded with [`frame::encode`] (e.g. read back
    /// from an on-disk buffer), without decoding it again.
    pub async fn send_encoded(&mut self, framed: &[u8]) -> Result<(), LinkError> {
        self.send.write_all(framed).await?;
        Ok(())
    }

    pub fn finish(mut self) {
        let _ = self.send.finish();
    }
}

impl LinkHandle {
    /// Opens a bulk stream on the live connection.
    pub async fn open_stream(&self) -> Result<BulkStream, LinkError> {
        let conn = self
            .conn
            .borrow()
            .clone()
            .ok_or_else(|| LinkError::Connection("not connected".into()))?;
        Ok(BulkStream {
            send: conn.open_uni().await?,
        })
    }
}

/// A request of the agent's own on a bidirectional stream (fetching a task
/// artifact): one message out, framed answers back until the controller
/// finishes the stream.
#[derive(Debug)]
pub struct Request {
    recv: quinn::RecvStream,
}

impl Request {
    /// The next answer, `None` at the stream's end. Frames over `max`
    /// bytes are refused.
    pub async fn next(&mut self, max: usize) -> Result<Option<ControllerMsg>, LinkError> {
        Ok(frame::read_frame(&mut self.recv, max).await?)
    }
}

impl LinkHandle {
    /// Sends `msg` on a new bidirectional stream and returns the way to
    /// read its answers. Fails when not connected.
    pub async fn request(&self, msg: &AgentMsg) -> Result<Request, LinkError> {
        let conn = self
            .conn
            .borrow()
            .clone()
            .ok_or_else(|| LinkError::Connection("not connected".into()))?;
        let (mut send, recv) = conn.open_bi().await?;
        send.write_all(&frame::encode(msg)?).await?;
        send.finish()
            .map_err(|e| LinkError::Connection(e.to_string()))?;
        Ok(Request { recv })
    }
}

pub struct Link;

impl Link {
    /// Starts the link. Controller messages other than heartbeat acks arrive
    /// on the returned receiver; the join handle ends with `Ok` after
    /// `shutdown`, or with a fatal [`LinkError`].
    pub fn spawn(
        cfg: LinkConfig,
        shutdown: CancellationToken,
    ) -> (
        LinkHandle,
        mpsc::Receiver<ControllerMsg>,
        JoinHandle<Result<(), LinkError>>,
    ) {
        let (control_tx, control_rx) = mpsc::channel(1024);
        let (in_tx, in_rx) = mpsc::channel(1024);
        let (conn_tx, conn_rx) = watch::channel(None);
        let (state_tx, state_rx) = watch::channel(LinkState::Starting);
        let handle = LinkHandle {
            control: control_tx,
            conn: conn_rx,
            state: state_rx,
        };
        let mut runner = Runner {
            cfg,
            control_rx,
            in_tx,
            conn_tx,
            state_tx,
            shutdown,
            endpoint: None,
            enroll_key: None,
        };
        let task = tokio::spawn(async move {
            let r = runner.run().await;
            runner.conn_tx.send_replace(None);
            runner.state_tx.send_replace(LinkState::Stopped);
            if let Err(e) = &r {
                error!(error = %e, "agent link stopped");
            }
            r
        });
        (handle, in_rx, task)
    }
}

struct Runner {
    cfg: LinkConfig,
    control_rx: mpsc::Receiver<AgentMsg>,
    in_tx: mpsc::Sender<ControllerMsg>,
    conn_tx: watch::Sender<Option<Connection>>,
    state_tx: watch::Sender<LinkState>,
    shutdown: CancellationToken,
    endpoint: Option<Endpoint>,
    enroll_key: Option<(String, String)>,
}

enum SessionEnd {
    Shutdown,
    /// Connected, then lost: retry promptly.
    Lost(LinkError),
}

impl Runner {
    async fn run(&mut self) -> Result<(), LinkError> {
        let mut attempt = 0u32;
        let identity = loop {
            if let Some(id) = self.cfg.identity.load()? {
                break id;
            }
            self.state_tx.send_replace(LinkState::Enrolling);
            match self.enroll().await {
                Ok(id) => break id,
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    warn!(error = %e, attempt, "enrollment failed; will retry");
                    if self.pause(attempt).await {
                        return Ok(());
                    }
                    attempt += 1;
                }
            }
        };
        info!(agent_id = %identity.agent_id, "agent identity loaded");
        let mut epoch = 0u64;
        let mut attempt = 0u32;
        let mut last_error = None;
        loop {
            self.state_tx.send_replace(LinkState::Connecting {
                attempt,
                last_error: last_error.clone(),
            });
            match self.session(&identity, epoch + 1).await {
                Ok(SessionEnd::Shutdown) => return Ok(()),
                Ok(SessionEnd::Lost(e)) => {
                    epoch += 1;
                    warn!(error = %e, "lost the controller; reconnecting");
                    attempt = 0;
                    last_error = Some(e.to_string());
                }
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    if attempt == 0 {
                        warn!(error = %e, "cannot reach the controller; retrying with backoff");
                    } else {
                        debug!(error = %e, attempt, "connect attempt failed");
                    }
                    last_error = Some(e.to_string());
                }
            }
            self.conn_tx.send_replace(None);
            if self.pause(attempt).await {
                return Ok(());
            }
            attempt = attempt.saturating_add(1);
        }
    }

    /// Sleeps before the next attempt; true when asked to shut down.
    async fn pause(&self, attempt: u32) -> bool {
        let d = self.cfg.backoff.delay(attempt);
        tokio::select! {
            _ = self.shutdown.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    async fn resolve(&mut self) -> Result<(SocketAddr, Endpoint), LinkError> {
        let addr = tokio::net::lookup_host(&self.cfg.controller)
            .await
            .map_err(|e| LinkError::Connection(format!("resolve {}: {e}", self.cfg.controller)))?
            .next()
            .ok_or_else(|| {
                LinkError::Connection(format!("{} has no address", self.cfg.controller))
            })?;
        if let Some(ep) = &self.cfg.endpoint {
            return Ok((addr, ep.clone()));
        }
        if self.endpoint.is_none() {
            self.endpoint =
                Some(endpoint::client_for(addr).map_err(|e| LinkError::Connection(e.to_string()))?);
        }
        Ok((addr, self.endpoint.clone().expect("endpoint just set")))
    }

    async fn connect(&mut self, tls: rustls::ClientConfig) -> Result<Connection, LinkError> {
        let (addr, ep) = self.resolve().await?;
        let cfg = endpoint::client_config(tls).map_err(|e| LinkError::Connection(e.to_string()))?;
        let connecting = ep
            .connect_with(cfg, addr, certs::tls::SERVER_NAME)
            .map_err(|e| LinkError::Connection(e.to_string()))?;
        Ok(connecting.await?)
    }

    fn hello(&self, agent_id: Option<AgentId>) -> AgentMsg {
        let mut h = Hello::local(self.cfg.role, agent_id, &self.cfg.agent_version);
        h.protocol_version = self.cfg.protocol_version;
        AgentMsg::Hello(h)
    }

    async fn enroll(&mut self) -> Result<AgentIdentity, LinkError> {
        let (Some(token), Some(pin)) = (self.cfg.token.clone(), self.cfg.ca_pin.clone()) else {
            return Err(LinkError::NotEnrolled);
        };
        info!(controller = %self.cfg.controller, "enrolling with the controller");
        // One key for every attempt: if the controller enrolled us but its
        // answer was lost, the retry with the same key gets the same
        // identity instead of spending the token again.
        if self.enroll_key.is_none() {
            self.enroll_key = Some(AgentIdentity::new_key_and_csr()?);
        }
        let (key_pem, csr_pem) = self.enroll_key.clone().expect("just set");
        let tls = certs::tls::enrollment_config(&pin, ALPN_ENROLL)?;
        let conn = self.connect(tls).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = self.hello(None);
        frame::write_frame(&mut send, &hello).await?;
        frame::write_frame(&mut send, &AgentMsg::Enroll { token, csr_pem }).await?;
        let reply = tokio::time::timeout(
            HELLO_TIMEOUT,
            frame::read_frame::<_, ControllerMsg>(&mut recv, MAX_CONTROL_FRAME),
        )
        .await
        .map_err(|_| LinkError::Connection("controller did not answer the enrollment".into()))?;
        let reply = match reply {
            Ok(r) => r,
            // The close frame (with its reason) may beat the data.
            Err(e) => {
                return Err(conn
                    .close_reason()
                    .map(|c| classify_close(&c))
                    .unwrap_or(e.into()));
            }
        };
        let identity = match reply {
            Some(ControllerMsg::Enrolled {
                agent_id,
                cert_pem,
                ca_pem,
            }) => {
                let id = AgentIdentity::from_enrollment(key_pem, cert_pem, ca_pem, &pin)?;
                if id.agent_id != agent_id {
                    return Err(LinkError::Rejected(
                        "the controller's certificate names another agent".into(),
                    ));
                }
                id
            }
            Some(ControllerMsg::Rejected { reason }) => return Err(LinkError::Rejected(reason)),
            Some(other) => {
                return Err(LinkError::Connection(format!(
                    "unexpected reply to enrollment: {other:?}"
                )));
            }
            None => {
                return Err(conn
                    .close_reason()
                    .map(|c| classify_close(&c))
                    .unwrap_or(LinkError::Connection("enrollment stream closed".into())));
            }
        };
        self.cfg.identity.save(&identity)?;
        conn.close(VarInt::from_u32(close::SHUTDOWN), b"enrolled");
        info!(agent_id = %identity.agent_id, "enrolled");
        Ok(identity)
    }

    /// One connection's life. `Err` means it never got to `Welcome`.
    async fn session(
        &mut self,
        identity: &AgentIdentity,
        epoch: u64,
    ) -> Result<SessionEnd, LinkError> {
        let tls = certs::tls::agent_config(identity, ALPN_AGENT)?;
        let shutdown = self.shutdown.clone();
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
            c = self.connect(tls) => c?,
        };
        let (mut send, mut recv) = conn.open_bi().await?;
        frame::write_frame(&mut send, &self.hello(Some(identity.agent_id.clone()))).await?;
        let first = tokio::time::timeout(
            HELLO_TIMEOUT,
            frame::read_raw_frame(&mut recv, MAX_CONTROL_FRAME),
        )
        .await
        .map_err(|_| LinkError::Connection("controller did not answer Hello".into()));
        let first = match first? {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => {
                // Refusals arrive as a close frame; give it a moment to land.
                let reason = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
                return Err(match reason {
                    Ok(c) => classify_close(&c),
                    Err(_) => LinkError::Connection("control stream closed before Welcome".into()),
                });
            }
        };
        let heartbeat = match frame::decode::<ControllerMsg>(&first) {
            Ok(ControllerMsg::Welcome { heartbeat_secs, .. }) => {
                Duration::from_secs(u64::from(heartbeat_secs.max(1)))
            }
            Ok(ControllerMsg::Rejected { reason }) => return Err(LinkError::Rejected(reason)),
            Ok(other) => {
                return Err(LinkError::Connection(format!(
                    "expected Welcome, got {other:?}"
                )));
            }
            Err(e) => {
                let theirs = peek_protocol_version(&first);
                return Err(LinkError::Rejected(match theirs {
                    Some(v) => format!(
                        "controller speaks protocol v{v}, this agent v{}; install matching versions",
                        self.cfg.protocol_version
                    ),
                    None => format!("undecodable answer to Hello: {e}"),
                }));
            }
        };
        info!(agent_id = %identity.agent_id, epoch, "connected to the controller");
        self.conn_tx.send_replace(Some(conn.clone()));
        self.state_tx.send_replace(LinkState::Connected {
            agent_id: identity.agent_id.clone(),
            epoch,
        });

        // Reading is not cancel-safe, so a task of its own feeds a channel.
        let (frames_tx, mut frames_rx) = mpsc::channel::<Result<ControllerMsg, FrameError>>(64);
        let reader = tokio::spawn(async move {
            loop {
                let r = frame::read_frame::<_, ControllerMsg>(&mut recv, MAX_CONTROL_FRAME).await;
                let end = !matches!(r, Ok(Some(_)));
                let item = match r {
                    Ok(Some(m)) => Ok(m),
                    Ok(None) => break,
                    Err(e) => Err(e),
                };
                if frames_tx.send(item).await.is_err() || end {
                    break;
                }
            }
        });
        let _reader_guard = AbortOnDrop(reader);
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    conn.close(VarInt::from_u32(close::SHUTDOWN), b"agent stopping");
                    return Ok(SessionEnd::Shutdown);
                }
                _ = ticker.tick() => {
                    seq += 1;
                    if let Err(e) = frame::write_frame(&mut send, &AgentMsg::Heartbeat { seq }).await {
                        return Ok(SessionEnd::Lost(self.lost(&conn, e.into()).await?));
                    }
                }
                Some(msg) = self.control_rx.recv() => {
                    if let Err(e) = frame::write_frame(&mut send, &msg).await {
                        return Ok(SessionEnd::Lost(self.lost(&conn, e.into()).await?));
                    }
                }
                item = frames_rx.recv() => match item {
                    Some(Ok(ControllerMsg::HeartbeatAck { .. })) => {}
                    Some(Ok(ControllerMsg::Rejected { reason })) => return Err(LinkError::Rejected(reason)),
                    Some(Ok(msg)) => {
                        if self.in_tx.send(msg).await.is_err() {
                            debug!("application dropped its receiver");
                        }
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "bad frame from the controller");
                        conn.close(VarInt::from_u32(close::PROTOCOL_ERROR), e.to_string().as_bytes());
                        return Ok(SessionEnd::Lost(e.into()));
                    }
                    None => {
                        let e = LinkError::Connection("control stream closed".into());
                        return Ok(SessionEnd::Lost(self.lost(&conn, e).await?));
                    }
                },
                c = conn.closed() => {
                    let e = classify_close(&c);
                    if e.is_fatal() {
                        return Err(e);
                    }
                    return Ok(SessionEnd::Lost(e));
                }
            }
        }
    }

    /// After a failed read or write, the close reason says whether it was
    /// fatal; wait briefly for it.
    async fn lost(&self, conn: &Connection, fallback: LinkError) -> Result<LinkError, LinkError> {
        let reason = match conn.close_reason() {
            Some(c) => Some(c),
            None => tokio::time::timeout(Duration::from_millis(500), conn.closed())
                .await
                .ok(),
        };
        match reason.map(|c| classify_close(&c)) {
            Some(e) if e.is_fatal() => Err(e),
            Some(e) => Ok(e),
            None => Ok(fallback),
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jitters_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        };
        for attempt in 0..40 {
            let d = b.delay(attempt);
            let base = (Duration::from_millis(100) * (1u32 << attempt.min(20))).min(b.max);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| b.delay(5)).collect();
        assert!(samples.len() > 1, "no jitter");
    }
}
