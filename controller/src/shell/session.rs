//! One browser shell session: the loop between a terminal on a server and
//! the browser that shows it, with the idle timeout, flow control and the
//! recording. The browser side arrives as two channels ([`FromClient`] in,
//! [`ToClient`] out), so this loop knows nothing of websockets.
//!
//! Flow control: the browser acknowledges the output bytes its terminal has
//! drawn; with more than [`SessionConfig::window`] bytes unacknowledged the
//! loop stops reading the server, so a flood (`cat /dev/urandom | base64`)
//! neither grows memory here nor buries the page, and Ctrl-C still gets
//! through (input is always read).

use std::time::{Duration, Instant};

use bytes::Bytes;
use russh::ChannelMsg;
use tokio::sync::mpsc;

use super::recording::{Recorder, Summary};
use super::terminal::Terminal;

/// What the browser sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromClient {
    /// Keystrokes (or pasted text), raw bytes.
    Input(Bytes),
    Resize {
        cols: u16,
        rows: u16,
    },
    /// This many more output bytes were drawn.
    Ack(u64),
}

/// What the browser is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToClient {
    Output(Bytes),
    Closed {
        reason: CloseReason,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Nothing typed and nothing printed for the idle limit.
    Idle,
    /// The shell ended (`exit`, Ctrl-D) with this status, if known.
    Exit(Option<u32>),
    /// The server or the connection to it went away.
    ServerGone,
    /// The browser went away (tab closed, network lost).
    ClientGone,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::Exit(_) => "exit",
            CloseReason::ServerGone => "server_gone",
            CloseReason::ClientGone => "client_gone",
        }
    }

    /// The line the terminal shows at the end.
    pub fn message(self, idle: Duration) -> String {
        match self {
            CloseReason::Idle => format!(
                "session closed (idle): nothing typed or shown for {}",
                humantime::format_duration(idle)
            ),
            CloseReason::Exit(Some(code)) => format!("session closed: the shell exited ({code})"),
            CloseReason::Exit(None) => "session closed: the shell exited".into(),
            CloseReason::ServerGone => {
                "session closed: the connection to the server was lost".into()
            }
            CloseReason::ClientGone => "session closed: the browser went away".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub idle: Duration,
    /// Unacknowledged output bytes before reading the server pauses.
    pub window: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle: Duration::from_secs(600),
            window: 2 * 1024 * 1024,
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub reason: CloseReason,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub recording: Option<Summary>,
    /// Why the recording failed, if it did (the session itself went on).
    pub recording_error: Option<String>,
}

/// Runs the session until the shell ends, the browser goes, or it idles
/// out; tells the browser why (a last [`ToClient::Closed`]) and closes the
/// SSH connection.
pub async fn run(
    term: Terminal,
    cfg: &SessionConfig,
    mut recorder: Option<Recorder>,
    mut from_client: mpsc::Receiver<FromClient>,
    to_client: mpsc::Sender<ToClient>,
) -> Outcome {
    let Terminal { channel, conn } = term;
    let (mut server, writer) = channel.split();
    let mut last_activity = Instant::now();
    let mut unacked: u64 = 0;
    let mut bytes_out = 0u64;
    let mut bytes_in = 0u64;
    let mut exit_status = None;
    let mut recording_error = None;
    let mut record = |r: &mut Option<Recorder>,
                      f: &dyn Fn(&mut Recorder) -> std::io::Result<()>| {
        if let Some(rec) = r.as_mut()
            && let Err(e) = f(rec)
        {
            // A full disk must not end the shell; the recording stops.
            recording_error.get_or_insert_with(|| e.to_string());
            *r = None;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        let may_read = unacked < cfg.window;
        tokio::select! {
            msg = server.wait(), if may_read => match msg {
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    last_activity = Instant::now();
                    let n = data.len() as u64;
                    unacked += n;
                    bytes_out += n;
                    record(&mut recorder, &|r| r.output(&data));
                    if to_client.send(ToClient::Output(Bytes::copy_from_slice(&data))).await.is_err() {
                        break CloseReason::ClientGone;
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status: s }) => exit_status = Some(s),
                Some(ChannelMsg::Eof) => {}
                Some(ChannelMsg::Close) => break CloseReason::Exit(exit_status),
                None => {
                    break if exit_status.is_some() {
                        CloseReason::Exit(exit_status)
                    } else {
                        CloseReason::ServerGone
                    };
                }
                Some(_) => {}
            },
            m = from_client.recv() => match m {
                None => break CloseReason::ClientGone,
                Some(FromClient::Input(data)) => {
                    last_activity = Instant::now();
                    bytes_in += data.len() as u64;
                    record(&mut recorder, &|r| r.input(&data));
                    if writer.data_bytes(data).await.is_err() {
                        break CloseReason::ServerGone;
                    }
                }
                Some(FromClient::Resize { cols, rows }) => {
                    record(&mut recorder, &|r| r.resize(cols, rows));
                    if writer.window_change(u32::from(cols), u32::from(rows), 0, 0).await.is_err() {
                        break CloseReason::ServerGone;
                    }
                }
                Some(FromClient::Ack(n)) => unacked = unacked.saturating_sub(n),
            },
            _ = tick.tick() => {
                if last_activity.elapsed() >= cfg.idle {
                    break CloseReason::Idle;
                }
                record(&mut recorder, &|r| r.flush());
            }
        }
    };
    let message = reason.message(cfg.idle);
    // Best effort and bounded: the browser may be the one that is gone.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        to_client.send(ToClient::Closed { reason, message }),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), writer.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.disconnect()).await;
    let recording = match recorder.map(Recorder::finish) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            recording_error.get_or_insert_with(|| e.to_string());
            None
        }
        None => None,
    };
    Outcome {
        reason,
        bytes_out,
        bytes_in,
        recording,
        recording_error,
    }
}
