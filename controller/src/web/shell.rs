//! The browser shell's websocket: `GET /api/servers/{id}/shell?cols=&rows=`
//! upgrades to a websocket that carries the terminal. Binary frames are
//! raw terminal bytes both ways (never decoded here); text frames are JSON
//! control messages:
//!
//! - browser -> controller: `{"type":"resize","cols":C,"rows":R}`,
//!   `{"type":"ack","bytes":N}` (output bytes drawn: flow control);
//! - controller -> browser: `{"type":"connected","session":ID,
//!   "host_key_fingerprint":F}`, `{"type":"error","message":M}` (could not
//!   connect), `{"type":"closed","reason":R,"message":M}`.
//!
//! A browser that stops answering pings is treated as gone within
//! [`PONG_TIMEOUT`], which ends the SSH session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::AppState;
use super::caller::ApiCaller;
use super::error::{ApiError, ApiResult};
use crate::auth::{Act, new_secret};
use crate::inventory::{Server, SessionEnd};
use crate::shell::recording::Recorder;
use crate::shell::session::{self, FromClient, SessionConfig, ToClient};
use crate::shell::terminal;
use crate::ssh;

const PING_EVERY: Duration = Duration::from_secs(5);
const PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// Keystrokes and control messages are small; a paste is bounded here.
const MAX_FRAME: usize = 1024 * 1024;

#[derive(Deserialize)]
pub struct ShellQuery {
    cols: Option<u16>,
    rows: Option<u16>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    Resize { cols: u16, rows: u16 },
    Ack { bytes: u64 },
}

fn clamp_size(cols: u16, rows: u16) -> (u16, u16) {
    (cols.clamp(2, 1000), rows.clamp(1, 500))
}

/// A websocket handshake from another site's page carries its Origin;
/// refuse it even though SameSite cookies already keep the session out.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        // Non-browser clients send none.
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority == host)
}

pub async fn shell(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<ShellQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    if !same_origin(&headers) {
        return Err(ApiError::Denied(crate::auth::Denied::Forbidden));
    }
    let server = st.inventory.server(id)?;
    caller.may(Act::SeeServer {
        group: server.group_id,
    })?;
    caller.may(Act::UseServer {
        group: server.group_id,
    })?;
    let cred = st
        .inventory
        .server_credential(id, &st.vault)?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "server {:?} has no stored SSH credential; an admin can add one on its edit page",
                server.name
            ))
        })?;
    let (cols, rows) = clamp_size(q.cols.unwrap_or(80), q.rows.unwrap_or(24));
    let user = caller.subject.name.clone();
    Ok(ws
        .max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| async move {
            run_socket(st, socket, server, cred, user, cols, rows).await;
        })
        .into_response())
}

async fn send_json(socket: &mut WebSocket, v: serde_json::Value) {
    let _ = socket
        .send(Message::Text(Utf8Bytes::from(v.to_string())))
        .await;
}

/// Tells the terminal why it could not connect, then closes.
async fn refuse(mut socket: WebSocket, message: &str) {
    let line = format!("\r\n\x1b[31m{message}\x1b[0m\r\n");
    let _ = socket.send(Message::Binary(line.into_bytes().into())).await;
    send_json(
        &mut socket,
        serde_json::json!({ "type": "error", "message": message }),
    )
    .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1011,
            reason: Utf8Bytes::from_static("could not connect"),
        })))
        .await;
}

async fn run_socket(
    st: AppState,
    mut socket: WebSocket,
    server: Server,
    cred: ssh::Credential,
    user: String,
    cols: u16,
    rows: u16,
) {
    let timeout = Duration::from_secs(st.shell.connect_timeout_secs);
    let conn = match ssh::connect_server(&server, &cred, timeout).await {
        Ok(c) => c,
        Err(e) => {
            info!(server = %server.name, %user, error = %e, "shell: cannot connect");
            refuse(
                socket,
                &format!("cannot open a shell on {}: {e}", server.name),
            )
            .await;
            return;
        }
    };
    if server.host_key.is_none() {
        if let Err(e) = st.inventory.set_host_key(server.id, Some(&conn.host_key())) {
            warn!(error = %e, "storing a host key");
        }
        let _ = st.inventory.audit(
            &user,
            "host_key_trusted",
            Some((server.id, &server.name)),
            &conn.host_key_fingerprint(),
        );
    }
    let fingerprint = conn.host_key_fingerprint();
    let term = match terminal::open(conn, cols, rows).await {
        Ok(t) => t,
        Err(e) => {
            refuse(socket, &format!("the server refused a shell: {e}")).await;
            return;
        }
    };
    let session_id = new_secret("")[..20].to_string();
    send_json(
        &mut socket,
        serde_json::json!({
            "type": "connected", "session": session_id, "host_key_fingerprint": fingerprint,
        }),
    )
    .await;
    let server_ref = (server.id, server.name.as_str());
    if let Err(e) = st
        .inventory
        .start_shell_session(&session_id, server_ref, &user)
    {
        warn!(error = %e, "recording the shell session start");
    }
    let _ = st
        .inventory
        .audit(&user, "shell_open", Some(server_ref), &session_id);
    info!(server = %server.name, %user, session = %session_id, "shell opened");

    let spool = st.shell_spool.join(format!("{session_id}.cast"));
    let title = format!("{} by {user}", server.name);
    let recorder = match Recorder::create(
        &spool,
        cols,
        rows,
        &title,
        crate::inventory::unix_now(),
        st.shell.record_input,
    ) {
        Ok(r) => Some(r),
        Err(e) => {
            warn!(error = %e, path = %spool.display(), "cannot start the recording");
            None
        }
    };

    let (from_tx, from_rx) = mpsc::channel::<FromClient>(64);
    let (to_tx, mut to_rx) = mpsc::channel::<ToClient>(64);
    let (mut sink, mut stream) = socket.split();
    let last_pong = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let pong = last_pong.clone();
    let reader = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(_) => break,
            };
            let forward = match msg {
                Message::Binary(b) => FromClient::Input(b),
                Message::Text(t) => match serde_json::from_str::<Control>(t.as_str()) {
                    Ok(Control::Resize { cols, rows }) => {
                        let (cols, rows) = clamp_size(cols, rows);
                        FromClient::Resize { cols, rows }
                    }
                    Ok(Control::Ack { bytes }) => FromClient::Ack(bytes),
                    Err(e) => {
                        // Garbage from a client ends its session: whatever
                        // sent it is not our page.
                        warn!(error = %e, "shell: malformed control message; closing");
                        break;
                    }
                },
                Message::Pong(_) => {
                    pong.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    continue;
                }
                Message::Ping(_) => continue,
                Message::Close(_) => break,
            };
            if from_tx.send(forward).await.is_err() {
                break;
            }
        }
    });

    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                m = to_rx.recv() => match m {
                    Some(ToClient::Output(b)) => {
                        if sink.send(Message::Binary(b)).await.is_err() {
                            break;
                        }
                    }
                    Some(ToClient::Closed { reason, message }) => {
                        let v = serde_json::json!({
                            "type": "closed", "reason": reason.as_str(), "message": message,
                        });
                        let _ = sink.send(Message::Text(Utf8Bytes::from(v.to_string()))).await;
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code: 1000,
                                reason: Utf8Bytes::from(reason.as_str()),
                            })))
                            .await;
                        break;
                    }
                    None => break,
                },
                _ = ping.tick() => {
                    let since_pong = started.elapsed().as_millis() as u64
                        - last_pong.load(Ordering::Relaxed);
                    if since_pong > PONG_TIMEOUT.as_millis() as u64 {
                        // The browser is gone without a word (network cut,
                        // laptop lid): dropping the receiver ends the session.
                        break;
                    }
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Unblocks a session waiting to send output to a dead browser.
        drop(to_rx);
    });

    let cfg = SessionConfig {
        idle: Duration::from_secs(st.shell.idle_secs),
        ..SessionConfig::default()
    };
    let outcome = session::run(term, &cfg, recorder, from_rx, to_tx).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), writer).await;
    reader.abort();

    let key = format!("recordings/{}/{session_id}.cast", server.id);
    let recording_key = match &outcome.recording {
        Some(_) => match st.files.put_file(&key, &spool).await {
            Ok(_) => {
                let _ = tokio::fs::remove_file(&spool).await;
                Some(key)
            }
            Err(e) => {
                // The spool file stays; it is uploaded at the next start.
                warn!(error = %e, "storing the recording");
                None
            }
        },
        None => {
            let _ = tokio::fs::remove_file(&spool).await;
            None
        }
    };
    if let Some(e) = &outcome.recording_error {
        warn!(session = %session_id, error = %e, "the recording failed");
    }
    let duration = started.elapsed().as_secs_f64();
    let _ = st.inventory.end_shell_session(
        &session_id,
        &SessionEnd {
            reason: outcome.reason.as_str(),
            bytes_out: outcome.bytes_out,
            bytes_in: outcome.bytes_in,
            duration_secs: duration,
            recording_key: recording_key.as_deref(),
        },
    );
    let _ = st.inventory.audit(
        &user,
        "shell_close",
        Some(server_ref),
        &format!(
            "{session_id} {} after {:.0} s, {} bytes out",
            outcome.reason.as_str(),
            duration,
            outcome.bytes_out
        ),
    );
    info!(server = %server.name, %user, session = %session_id, reason = outcome.reason.as_str(), "shell closed");
}

/// A server's shell sessions, newest first (admins: recordings show what
/// was on the screen, passwords typed at prompts included when input
/// recording is on).
pub async fn sessions(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let server = st.inventory.server(id)?;
    caller.may(Act::SeeServer {
        group: server.group_id,
    })?;
    caller.may(Act::SeeOperations)?;
    Ok(axum::Json(st.inventory.shell_sessions(id, 500)?).into_response())
}

/// The asciicast v2 recording of a session, streamed from the file store.
pub async fn recording(
    caller: ApiCaller,
    State(st): State<AppState>,
    Path(session): Path<String>,
) -> ApiResult<Response> {
    caller.may(Act::SeeOperations)?;
    let rec = st
        .inventory
        .shell_session(&session)?
        .ok_or_else(|| ApiError::NotFound("no such session".into()))?;
    let key = rec.recording_key.ok_or_else(|| {
        ApiError::NotFound("this session has no recording (still running, or it failed)".into())
    })?;
    let (size, stream) = st.files.get(&key).await.map_err(|e| match e {
        crate::files::FileError::NotFound(_) => {
            ApiError::NotFound("the recording is missing from the file store".into())
        }
        other => {
            warn!(error = %other, "reading a recording");
            ApiError::Internal("file store unavailable")
        }
    })?;
    let mut r = axum::body::Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-asciicast"),
    );
    h.insert(header::CONTENT_LENGTH, axum::http::HeaderValue::from(size));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_our_own_origin_may_open_a_shell() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h), "non-browser clients send no Origin");
        h.insert(
            header::HOST,
            HeaderValue::from_static("ops.example.com:8080"),
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://ops.example.com:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }
}
