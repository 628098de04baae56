//! The browser shell's websocket against a real sshd: commands and output
//! byte for byte (multi-byte UTF-8 split across reads included), resize,
//! recording, idle timeout, a vanished browser, flow control under a
//! flood, host key change, wrong password, a server that is down, garbage
//! frames, and who may open a shell at all.

use std::time::{Duration, Instant};

use controller::Controller;
use controller::inventory::model::parse_user_name;
use e2e::api;
use e2e::inproc::{settings, start_controller};
use e2e::sshd::SshServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    ctl: Controller,
    base: String,
    admin: String,
    server: i64,
    group: i64,
    room: i64,
    _dir: tempfile::TempDir,
}

async fn setup(sshd: &SshServer, idle_secs: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "127.0.0.1:0".parse().unwrap());
    s.shell.idle_secs = idle_secs;
    let ctl = start_controller(&s).await;
    let admin = e2e::inproc::api_token(&ctl);
    let base = format!("http://{}", ctl.http_addr);
    use reqwest::Method as M;
    let (_, g) = api(
        &base,
        &admin,
        M::POST,
        "/api/groups",
        Some(json!({"name": "g"})),
    )
    .await;
    let (_, r) = api(
        &base,
        &admin,
        M::POST,
        "/api/rooms",
        Some(json!({"name": "r", "purpose": "application"})),
    )
    .await;
    let (st, srv) = api(
        &base,
        &admin,
        M::POST,
        "/api/servers",
        Some(json!({"name": "web-1", "group_id": g["id"], "room_id": r["id"], "address": sshd.address,
                    "ssh_port": sshd.port, "ssh_user": sshd.user,
                    "credential": {"kind": "password", "secret": sshd.password}})),
    )
    .await;
    assert_eq!(st, 201, "{srv}");
    Setup {
        ctl,
        base,
        admin,
        server: srv["id"].as_i64().unwrap(),
        group: g["id"].as_i64().unwrap(),
        room: r["id"].as_i64().unwrap(),
        _dir: dir,
    }
}

/// Opens the shell websocket; `Err(status)` when the handshake is refused.
async fn open(
    s: &Setup,
    server: i64,
    token: Option<&str>,
    cols: u16,
    rows: u16,
    origin: Option<&str>,
) -> Result<Ws, u16> {
    let url = format!(
        "ws://{}/api/servers/{server}/shell?cols={cols}&rows={rows}",
        s.ctl.http_addr
    );
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("websocket: {e}"),
    }
}

/// Reads until a text message of `kind` arrives; returns it with the
/// binary output seen before it.
async fn until_text(ws: &mut Ws, kind: &str) -> (Value, Vec<u8>) {
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {kind:?} message within {WAIT:?}; output: {}",
                    String::from_utf8_lossy(&out)
                )
            })
            .unwrap_or_else(|| {
                panic!(
                    "socket ended before {kind:?}; output: {}",
                    String::from_utf8_lossy(&out)
                )
            })
            .unwrap();
        match msg {
            Message::Binary(b) => out.extend_from_slice(&b),
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == kind {
                    return (v, out);
                }
                assert_ne!(v["type"], "error", "unexpected error: {v}");
            }
            _ => {}
        }
    }
}

/// Reads output (acknowledging it, as the page does) until `needle`
/// appears; returns everything read.
async fn until_output(ws: &mut Ws, needle: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !out.windows(needle.len()).any(|w| w == needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{:?} not seen within {WAIT:?}; got: {}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&out)
                )
            })
            .expect("socket ended")
            .unwrap();
        match msg {
            Message::Binary(b) => {
                out.extend_from_slice(&b);
                ack(ws, b.len()).await;
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_ne!(
                    v["type"],
                    "closed",
                    "closed early: {v}; output: {}",
                    String::from_utf8_lossy(&out)
                );
            }
            _ => {}
        }
    }
    out
}

async fn ack(ws: &mut Ws, n: usize) {
    ws.send(Message::Text(
        json!({"type": "ack", "bytes": n}).to_string().into(),
    ))
    .await
    .unwrap();
}

async fn type_in(ws: &mut Ws, s: &str) {
    ws.send(Message::Binary(s.as_bytes().to_vec().into()))
        .await
        .unwrap();
}

/// The bytes between two marker lines printed by `printf`.
fn between<'a>(out: &'a [u8], start: &[u8], end: &[u8]) -> &'a [u8] {
    let a = out
        .windows(start.len())
        .position(|w| w == start)
        .expect("start marker")
        + start.len();
    let b = a + out[a..]
        .windows(end.len())
        .position(|w| w == end)
        .expect("end marker");
    &out[a..b]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_runs_commands_byte_for_byte_resizes_and_is_recorded() {
    let sshd = tokio::task::spawn_blocking(SshServer::start).await.unwrap();
    let s = setup(&sshd, 600).await;
    let mut ws = open(&s, s.server, Some(&s.admin), 100, 30, None)
        .await
        .unwrap();
    let (hello, _) = until_text(&mut ws, "connected").await;
    assert!(
        hello["host_key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );

    type_in(&mut ws, "stty -echo; printf '\\001READY\\001\\n'\r").await;
    until_output(&mut ws, b"\x01READY\x01").await;
    // 20 000 x "世界🙂" (10 bytes each): 200 kB, so SSH packet and
    // websocket frame boundaries fall inside characters many times.
    type_in(
        &mut ws,
        "printf '\\001S\\001'; for i in $(seq 20000); do printf '世界🙂'; done; printf '\\001E\\001'\r",
    )
    .await;
    let out = until_output(&mut ws, b"\x01E\x01").await;
    let got = between(&out, b"\x01S\x01", b"\x01E\x01");
    assert_eq!(got.len(), 200_000);
    assert!(
        got == "世界🙂".repeat(20_000).as_bytes(),
        "bytes changed on the way"
    );

    type_in(&mut ws, "printf '\\001Z%s\\001' \"$(stty size)\"\r").await;
    let out = until_output(&mut ws, b"\x01Z30 100\x01").await;
    assert!(!out.is_empty());
    ws.send(Message::Text(
        json!({"type": "resize", "cols": 132, "rows": 43})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    type_in(&mut ws, "printf '\\001Z%s\\001' \"$(stty size)\"\r").await;
    until_output(&mut ws, b"\x01Z43 132\x01").await;

    type_in(&mut ws, "exit\r").await;
    let (closed, _) = until_text(&mut ws, "closed").await;
    assert_eq!(closed["reason"], "exit", "{closed}");

    // The session is listed and its recording replays what was shown.
    use reqwest::Method as M;
    let sessions = e2e::wait_for("the session's recording", WAIT, || async {
        let (_, v) = api(
            &s.base,
            &s.admin,
            M::GET,
            &format!("/api/servers/{}/sessions", s.server),
            None,
        )
        .await;
        let first = v.as_array()?.first()?.clone();
        first["recording_key"].is_string().then_some(first)
    })
    .await;
    assert_eq!(sessions["close_reason"], "exit");
    assert!(sessions["bytes_out"].as_u64().unwrap() >= 200_000);
    let r = e2e::http()
        .get(format!(
            "{}/api/recordings/{}",
            s.base,
            sessions["id"].as_str().unwrap()
        ))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cast = r.text().await.unwrap();
    let mut lines = cast.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        (
            header["version"].as_u64(),
            header["width"].as_u64(),
            header["height"].as_u64()
        ),
        (Some(2), Some(100), Some(30))
    );
    let events: Vec<Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let shown: String = events
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert!(
        shown.contains(&"世界🙂".repeat(20_000)),
        "the recording lost characters"
    );
    assert!(events.iter().any(|e| e[1] == "r" && e[2] == "132x43"));
    assert!(
        !events.iter().any(|e| e[1] == "i"),
        "input recorded although off"
    );
    // The audit log names who opened which server.
    let audit = s.ctl.inventory.audit_log(Some(s.server), 10).unwrap();
    assert!(audit.iter().any(|a| a.action == "shell_open"));
    assert!(
        audit
            .iter()
            .any(|a| a.action == "shell_close" && a.detail.contains("exit"))
    );
    s.ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_waits_for_the_browser_and_ctrl_c_still_gets_through() {
    let sshd = tokio::task::spawn_blocking(SshServer::start).await.unwrap();
    let s = setup(&sshd, 600).await;
    let mut ws = open(&s, s.server, Some(&s.admin), 80, 24, None)
        .await
        .unwrap();
    until_text(&mut ws, "connected").await;
    type_in(&mut ws, "stty -echo; printf '\\001READY\\001\\n'\r").await;
    until_output(&mut ws, b"\x01READY\x01").await;
    // Endless output; we read without acknowledging.
    type_in(&mut ws, "cat /dev/zero | base64\r").await;
    let mut unacked = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            Err(_) => break, // the controller stopped sending: flow control
            Ok(Some(Ok(Message::Binary(b)))) => unacked += b.len(),
            Ok(other) => panic!("unexpected {other:?}"),
        }
        assert!(
            unacked < 8 * 1024 * 1024,
            "{unacked} bytes sent without acknowledgement"
        );
    }
    assert!(unacked >= 1024 * 1024, "stalled early at {unacked} bytes");
    // Ctrl-C goes through while the output waits, then everything drains.
    type_in(&mut ws, "\x03").await;
    ack(&mut ws, unacked).await;
    type_in(&mut ws, "printf '\\001DONE\\001'\r").await;
    until_output(&mut ws, b"\x01DONE\x01").await;
    s.ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_close_and_a_vanished_browser_ends_the_ssh_session() {
    let sshd = tokio::task::spawn_blocking(SshServer::start).await.unwrap();
    let s = setup(&sshd, 2).await;
    let mut ws = open(&s, s.server, Some(&s.admin), 80, 24, None)
        .await
        .unwrap();
    until_text(&mut ws, "connected").await;
    let t = Instant::now();
    let (closed, _) = until_text(&mut ws, "closed").await;
    assert_eq!(closed["reason"], "idle");
    assert!(
        closed["message"]
            .as_str()
            .unwrap()
            .contains("session closed (idle)")
    );
    assert!(t.elapsed() < Duration::from_secs(10));

    // A browser that disappears (socket dropped without a close frame):
    // the user's processes on the server end within seconds.
    let ws = open(&s, s.server, Some(&s.admin), 80, 24, None)
        .await
        .unwrap();
    let procs = || {
        let out = std::process::Command::new("pgrep")
            .args(["-u", &sshd.user])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    e2e::wait_for("the shell on the server", WAIT, || async {
        (procs() > 0).then_some(())
    })
    .await;
    drop(ws);
    e2e::wait_for("the shell gone from the server", WAIT, || async {
        (procs() == 0).then_some(())
    })
    .await;
    s.ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_clear_and_never_hang() {
    let mut sshd = tokio::task::spawn_blocking(SshServer::start).await.unwrap();
    let s = setup(&sshd, 600).await;
    use reqwest::Method as M;

    // Who may open a shell.
    assert_eq!(
        open(&s, s.server, None, 80, 24, None).await.err(),
        Some(401)
    );
    let outsider = controller::auth::create_user(
        &s.ctl.inventory,
        &parse_user_name("bob").unwrap(),
        "bob password",
        false,
    )
    .unwrap();
    let bob = controller::auth::create_api_token(&s.ctl.inventory, outsider, "t").unwrap();
    assert_eq!(
        open(&s, s.server, Some(&bob), 80, 24, None).await.err(),
        Some(404)
    );
    s.ctl.inventory.add_member(s.group, outsider).unwrap();
    assert!(
        open(&s, s.server, Some(&bob), 80, 24, None).await.is_ok(),
        "a member was refused"
    );
    assert_eq!(
        open(
            &s,
            s.server,
            Some(&s.admin),
            80,
            24,
            Some("http://evil.example")
        )
        .await
        .err(),
        Some(403)
    );
    assert_eq!(
        open(&s, 999_999, Some(&s.admin), 80, 24, None).await.err(),
        Some(404)
    );

    // First use pins the host key; a changed key is refused with the reason.
    let mut ws = open(&s, s.server, Some(&s.admin), 80, 24, None)
        .await
        .unwrap();
    until_text(&mut ws, "connected").await;
    drop(ws);
    let (_, srv) = api(
        &s.base,
        &s.admin,
        M::GET,
        &format!("/api/servers/{}", s.server),
        None,
    )
    .await;
    assert!(srv["host_key"].is_string());
    tokio::task::block_in_place(|| sshd.regenerate_host_key_and_restart());
    let mut ws = open(&s, s.server, Some(&s.admin), 80, 24, None)
        .await
        .unwrap();
    let (err, shown) = until_text(&mut ws, "error").await;
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains("host key") && msg.contains("changed"), "{msg}");
    assert!(
        String::from_utf8_lossy(&shown).contains("changed"),
        "the terminal does not say why"
    );

    // Wrong password, and a server that is down: a message, fast. (The
    // wrong-password entry names the same sshd as "localhost".)
    let bad = |name: &str, address: &str, port: u16, secret: &str| {
        json!({"name": name, "group_id": s.group, "room_id": s.room, "address": address,
               "ssh_port": port, "ssh_user": sshd.user, "credential": {"kind": "password", "secret": secret}})
    };
    let (st, wrong) = api(
        &s.base,
        &s.admin,
        M::POST,
        "/api/servers",
        Some(bad("wrong-pw", "localhost", sshd.port, "nope")),
    )
    .await;
    assert_eq!(st, 201, "{wrong}");
    let wrong_id = wrong["id"].as_i64().unwrap();
    let t = Instant::now();
    let mut ws = open(&s, wrong_id, Some(&s.admin), 80, 24, None)
        .await
        .unwrap();
    let (err, _) = until_text(&mut ws, "error").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{err}"
    );
    let (_, down) = api(
        &s.base,
        &s.admin,
        M::POST,
        "/api/servers",
        Some(bad("down", "127.0.0.1", 1, "x")),
    )
    .await;
    let mut ws = open(
        &s,
        down["id"].as_i64().unwrap(),
        Some(&s.admin),
        80,
        24,
        None,
    )
    .await
    .unwrap();
    let (err, _) = until_text(&mut ws, "error").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("cannot open a shell on down"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "refusals took {:?}",
        t.elapsed()
    );

    // A garbage control frame ends that session, not the controller.
    api(
        &s.base,
        &s.admin,
        M::DELETE,
        &format!("/api/servers/{}/host-key", s.server),
        None,
    )
    .await;
    let (st, _) = api(
        &s.base,
        &s.admin,
        M::PUT,
        &format!("/api/servers/{}", s.server),
        Some(
            json!({"name": "web-1", "group_id": s.group, "room_id": s.room, "address": sshd.address,
                    "ssh_port": sshd.port, "ssh_user": sshd.user,
                    "credential": {"kind": "password", "secret": sshd.password}}),
        ),
    )
    .await;
    assert_eq!(st, 200);
    let mut ws = open(&s, s.server, Some(&s.admin), 80, 24, None)
        .await
        .unwrap();
    until_text(&mut ws, "connected").await;
    ws.send(Message::Text("{not json".into())).await.unwrap();
    let (closed, _) = until_text(&mut ws, "closed").await;
    assert_eq!(closed["reason"], "client_gone");
    let mut ws = open(&s, s.server, Some(&s.admin), 80, 24, None)
        .await
        .unwrap();
    until_text(&mut ws, "connected").await;
    s.ctl.stop().await;
}
