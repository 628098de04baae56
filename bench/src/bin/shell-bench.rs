//! The browser shell against its peers, side by side against one sshd:
//! our websocket (the controller's `GET /api/servers/{id}/shell`), OpenSSH's
//! own client (`ssh -tt` through pipes), and webssh (PyPI, tornado +
//! paramiko, whose page talks JSON over a websocket).
//!
//! Subcommands (each appends JSON lines to `--results`; `report` turns
//! them into the table):
//! - `echo`: one byte typed into `cat` under `stty -echo -icanon`, so it
//!   comes back exactly once, from cat; round trip per keystroke, the
//!   three transports interleaved keystroke by keystroke so that noise
//!   from the shared machine falls on all of them alike;
//! - `bulk`: ~100 MB of base64 printed by the shell, read to an end
//!   marker; rounds interleaved the same way;
//! - `download`: one big file through the controller (curl, as a script or
//!   a browser would fetch it) vs `scp`, sampling the controller's VmRSS
//!   every 100 ms;
//! - `report`: the table, with ratios and the project's goals.
//!
//! Our client behaves like the page (controller/web/static/terminal.js):
//! binary frames are terminal bytes, and consumed output is acknowledged
//! in batches of 64 KiB (the page also flushes after 20 ms; here an echo
//! acknowledges before the next keystroke, which is the same traffic).
//! Every wait has a deadline and every loop a count.
//!
//! Run it through `bench/shell.sh`, which starts sshd, the controller and
//! wssh.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// As the page: acknowledge once this much output is consumed.
const ACK_BATCH: u64 = 64 * 1024;
/// Opening a shell (SSH handshake, login shell start) and the first prompt.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// One keystroke's echo: far above any plausible round trip, so only a
/// lost byte trips it.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);
/// Quiet time after a sync marker: whatever the shell still prints then
/// (prompt, bracketed-paste toggles) must not count as the next reply.
const SETTLE: Duration = Duration::from_millis(300);
const READY: &[u8] = b"__READY__\r\n";

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Keystroke echo round trips through each transport.
    Echo {
        #[command(flatten)]
        targets: Targets,
        /// Keystrokes per transport.
        #[arg(long, default_value_t = 500)]
        count: usize,
        /// Pause between keystrokes (a typist never sends back to back).
        #[arg(long, default_value_t = 5)]
        gap_ms: u64,
    },
    /// Bulk PTY output through each transport.
    Bulk {
        #[command(flatten)]
        targets: Targets,
        /// Random bytes fed to base64 (printed output is 4/3 of it plus
        /// line ends).
        #[arg(long, default_value_t = 75_000_000)]
        raw_bytes: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Limit for one run.
        #[arg(long, default_value_t = 180)]
        timeout_secs: u64,
    },
    /// SFTP download through the controller (curl) vs scp, with the
    /// controller's RSS.
    Download(DownloadArgs),
    /// The table of everything in `--results`.
    Report {
        #[arg(long)]
        results: PathBuf,
    },
}

#[derive(clap::Args, Clone)]
struct Targets {
    /// The controller's shell websocket without query,
    /// `ws://127.0.0.1:P/api/servers/ID/shell`.
    #[arg(long)]
    ours_url: String,
    /// API token for the controller (env: kept out of `ps`).
    #[arg(long, env = "BENCH_TOKEN", hide_env_values = true)]
    token: String,
    /// wssh's base URL, `http://127.0.0.1:P`.
    #[arg(long)]
    webssh_url: String,
    #[arg(long)]
    ssh_port: u16,
    #[arg(long)]
    ssh_user: String,
    /// Password of that user (webssh logs in with it).
    #[arg(long, env = "BENCH_SSH_PASSWORD", hide_env_values = true)]
    ssh_password: String,
    /// Client key whose public half is in the user's authorized_keys.
    #[arg(long)]
    ssh_key: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "ours,openssh,webssh")]
    only: Vec<Kind>,
    /// JSON lines are appended here.
    #[arg(long)]
    results: PathBuf,
}

#[derive(clap::Args)]
struct DownloadArgs {
    /// `http://127.0.0.1:P/api/servers/ID/files?path=/abs/file`.
    #[arg(long)]
    url: String,
    #[arg(long, env = "BENCH_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long)]
    controller_pid: u32,
    #[arg(long)]
    ssh_port: u16,
    #[arg(long)]
    ssh_user: String,
    #[arg(long)]
    ssh_key: PathBuf,
    /// The file's absolute path on the server.
    #[arg(long)]
    remote_path: String,
    /// Its size in bytes (checked against what curl received).
    #[arg(long)]
    size: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Limit for one transfer.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    #[arg(long)]
    results: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Kind {
    Ours,
    Openssh,
    Webssh,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Openssh => "openssh",
            Kind::Webssh => "webssh",
        }
    }
}

/// One open interactive shell, whatever carries it.
struct Shell {
    kind: Kind,
    io: Io,
}

enum Io {
    Ours {
        ws: Ws,
        unacked: u64,
    },
    Webssh {
        ws: Ws,
    },
    Openssh {
        child: Child,
        stdin: ChildStdin,
        stdout: ChildStdout,
        buf: Box<[u8]>,
    },
}

impl Shell {
    async fn open(kind: Kind, t: &Targets) -> anyhow::Result<Shell> {
        let io = tokio::time::timeout(OPEN_TIMEOUT, open_io(kind, t))
            .await
            .with_context(|| format!("{}: no shell within {OPEN_TIMEOUT:?}", kind.name()))??;
        Ok(Shell { kind, io })
    }

    async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match &mut self.io {
            Io::Ours { ws, .. } => ws.send(Message::binary(bytes.to_vec())).await?,
            Io::Webssh { ws } => {
                // webssh's page sends `{"data": "..."}` text; the worker
                // hands the string to paramiko's channel as is.
                let text = std::str::from_utf8(bytes).context("webssh takes text only")?;
                ws.send(Message::text(json!({ "data": text }).to_string()))
                    .await?
            }
            Io::Openssh { stdin, .. } => {
                stdin.write_all(bytes).await?;
                stdin.flush().await?;
            }
        }
        Ok(())
    }

    /// The next piece of terminal output into `out` (cleared first);
    /// `false` when the shell is gone.
    async fn recv(&mut self, out: &mut Vec<u8>) -> anyhow::Result<bool> {
        out.clear();
        match &mut self.io {
            Io::Openssh { stdout, buf, .. } => {
                let n = stdout.read(buf).await?;
                out.extend_from_slice(&buf[..n]);
                Ok(n > 0)
            }
            Io::Ours { ws, unacked } => loop {
                let Some(msg) = ws.next().await else {
                    return Ok(false);
                };
                match msg? {
                    Message::Binary(b) => {
                        out.extend_from_slice(&b);
                        *unacked += b.len() as u64;
                        if *unacked >= ACK_BATCH {
                            send_ack(ws, unacked).await?;
                        }
                        return Ok(true);
                    }
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(t.as_str())?;
                        match v["type"].as_str() {
                            Some("closed") => return Ok(false),
                            Some("error") => bail!("controller: {}", v["message"]),
                            _ => continue,
                        }
                    }
                    Message::Close(_) => return Ok(false),
                    // tungstenite answers pings by itself.
                    _ => continue,
                }
            },
            Io::Webssh { ws } => loop {
                let Some(msg) = ws.next().await else {
                    return Ok(false);
                };
                match msg? {
                    Message::Binary(b) => {
                        out.extend_from_slice(&b);
                        return Ok(true);
                    }
                    Message::Text(t) => {
                        out.extend_from_slice(t.as_bytes());
                        return Ok(true);
                    }
                    Message::Close(_) => return Ok(false),
                    _ => continue,
                }
            },
        }
    }

    /// Acknowledges all consumed output now (ours only): the page does so
    /// 20 ms after drawing, long before a person types the next key.
    async fn flush_ack(&mut self) -> anyhow::Result<()> {
        if let Io::Ours { ws, unacked } = &mut self.io
            && *unacked > 0
        {
            send_ack(ws, unacked).await?;
        }
        Ok(())
    }

    /// Reads until `marker` has been seen in the output or `deadline`;
    /// returns the bytes read, the marker's included.
    async fn read_until(&mut self, marker: &[u8], deadline: Instant) -> anyhow::Result<u64> {
        let mut finder = Finder::new(marker);
        let mut chunk = Vec::with_capacity(64 * 1024);
        let mut total = 0u64;
        loop {
            let open = tokio::time::timeout_at(deadline.into(), self.recv(&mut chunk))
                .await
                .with_context(|| {
                    format!(
                        "{}: no {:?} in the output by the deadline ({total} bytes read)",
                        self.kind.name(),
                        String::from_utf8_lossy(marker)
                    )
                })??;
            if !open {
                bail!(
                    "{}: the shell closed before {:?}",
                    self.kind.name(),
                    String::from_utf8_lossy(marker)
                );
            }
            total += chunk.len() as u64;
            if finder.feed(&chunk) {
                return Ok(total);
            }
        }
    }

    /// Discards output until the shell has been quiet for [`SETTLE`]
    /// (bounded by a count: a shell that never stops is an error).
    async fn settle(&mut self) -> anyhow::Result<()> {
        let mut chunk = Vec::new();
        for _ in 0..1000 {
            match tokio::time::timeout(SETTLE, self.recv(&mut chunk)).await {
                Err(_) => return self.flush_ack().await,
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => bail!("{}: the shell closed", self.kind.name()),
                Ok(Err(e)) => return Err(e),
            }
        }
        bail!("{}: the shell never went quiet", self.kind.name())
    }

    /// Sends a command and waits for its `__READY__` line, then for quiet.
    /// The typed line carries `__REA''DY__`, which the terminal echoes as
    /// typed: only the command's output matches.
    async fn sync(&mut self, command: &str) -> anyhow::Result<()> {
        let line = format!("{command}; echo __REA''DY__\r");
        self.send(line.as_bytes()).await?;
        self.read_until(READY, Instant::now() + OPEN_TIMEOUT)
            .await?;
        self.settle().await
    }

    async fn close(self) {
        match self.io {
            Io::Ours { mut ws, .. } | Io::Webssh { mut ws } => {
                let _ = tokio::time::timeout(Duration::from_secs(3), ws.close(None)).await;
            }
            Io::Openssh { mut child, .. } => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
            }
        }
    }
}

async fn send_ack(ws: &mut Ws, unacked: &mut u64) -> anyhow::Result<()> {
    let ack = json!({ "type": "ack", "bytes": *unacked }).to_string();
    ws.send(Message::text(ack)).await?;
    *unacked = 0;
    Ok(())
}

async fn open_io(kind: Kind, t: &Targets) -> anyhow::Result<Io> {
    match kind {
        Kind::Ours => {
            let url = format!("{}?cols=80&rows=24", t.ours_url);
            let mut req = url.as_str().into_client_request()?;
            req.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {}", t.token))?,
            );
            // TCP_NODELAY, as every browser sets it.
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
                .await
                .context("ours: websocket handshake")?;
            // The controller connects to sshd before it says `connected`.
            loop {
                let msg = ws
                    .next()
                    .await
                    .context("ours: closed before `connected`")??;
                if let Message::Text(t) = msg {
                    let v: Value = serde_json::from_str(t.as_str())?;
                    match v["type"].as_str() {
                        Some("connected") => break,
                        Some("error") => bail!("ours: {}", v["message"]),
                        _ => {}
                    }
                }
            }
            Ok(Io::Ours { ws, unacked: 0 })
        }
        Kind::Webssh => {
            // webssh's page: a form POST to `/` makes the SSH connection
            // and answers `{"id", "status", "encoding"}`; the websocket
            // `/ws?id=` then attaches to it (within wssh's --delay, 3 s).
            certs::tls::install_default_provider();
            #[allow(clippy::disallowed_methods)] // the provider is installed just above
            let http = reqwest::Client::new();
            let port = t.ssh_port.to_string();
            let form = [
                ("hostname", "127.0.0.1"),
                ("port", port.as_str()),
                ("username", t.ssh_user.as_str()),
                ("password", t.ssh_password.as_str()),
                ("term", "xterm-256color"),
            ];
            let v: Value = http
                .post(format!("{}/", t.webssh_url))
                .form(&form)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let Some(id) = v["id"].as_str() else {
                bail!("webssh refused: {}", v["status"]);
            };
            let ws_url = format!(
                "{}/ws?id={id}",
                t.webssh_url.replacen("http://", "ws://", 1)
            );
            let (ws, _) = tokio_tungstenite::connect_async_with_config(ws_url, None, true)
                .await
                .context("webssh: websocket handshake")?;
            Ok(Io::Webssh { ws })
        }
        Kind::Openssh => {
            // -tt: a PTY on the server although our stdin is a pipe, so
            // the remote side is the same login shell on a terminal; no
            // local terminal means no local line discipline in the way.
            let mut child = Command::new("ssh")
                .args(["-tt", "-q", "-F", "/dev/null"])
                .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
                .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
                .arg("-i")
                .arg(&t.ssh_key)
                .args(["-p", &t.ssh_port.to_string()])
                .arg(format!("{}@127.0.0.1", t.ssh_user))
                .env("TERM", "xterm-256color")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot run ssh (apt-get install openssh-client)")?;
            let stdin = child.stdin.take().context("ssh stdin")?;
            let stdout = child.stdout.take().context("ssh stdout")?;
            Ok(Io::Openssh {
                child,
                stdin,
                stdout,
                buf: vec![0u8; 64 * 1024].into_boxed_slice(),
            })
        }
    }
}

/// Finds a marker in a stream of chunks, also across chunk boundaries.
struct Finder {
    marker: Vec<u8>,
    tail: Vec<u8>,
}

impl Finder {
    fn new(marker: &[u8]) -> Finder {
        Finder {
            marker: marker.to_vec(),
            tail: Vec::new(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> bool {
        let keep = self.marker.len().saturating_sub(1);
        // Only the boundary region is searched twice, never the whole
        // 100 MB.
        let head = &chunk[..chunk.len().min(keep)];
        let mut seam = std::mem::take(&mut self.tail);
        seam.extend_from_slice(head);
        if contains(&seam, &self.marker) || contains(chunk, &self.marker) {
            return true;
        }
        if chunk.len() >= keep {
            self.tail = chunk[chunk.len() - keep..].to_vec();
        } else {
            let start = seam.len().saturating_sub(keep);
            self.tail = seam[start..].to_vec();
        }
        false
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn append(results: &Path, v: &Value) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(results)
        .with_context(|| format!("opening {}", results.display()))?;
    writeln!(f, "{v}")?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 50.0)
}

async fn echo(t: &Targets, count: usize, gap: Duration) -> anyhow::Result<()> {
    let mut shells = Vec::new();
    for &kind in &t.only {
        let mut sh = Shell::open(kind, t).await?;
        // Only cat answers now, once per byte: no echo from the terminal,
        // no line buffering.
        sh.sync("stty -echo -icanon min 1 time 0").await?;
        sh.send(b"exec cat\r").await?;
        sh.settle().await?;
        shells.push(sh);
    }
    let mut rtts: Vec<Vec<f64>> = vec![Vec::with_capacity(count); shells.len()];
    let mut chunk = Vec::new();
    for i in 0..count {
        let c = b'a' + (i % 26) as u8;
        for (sh, samples) in shells.iter_mut().zip(rtts.iter_mut()) {
            sh.flush_ack().await?;
            tokio::time::sleep(gap).await;
            let t0 = Instant::now();
            sh.send(&[c]).await?;
            let mut got = Vec::new();
            while got.is_empty() {
                let open = tokio::time::timeout(ECHO_TIMEOUT, sh.recv(&mut chunk))
                    .await
                    .with_context(|| {
                        format!("{}: keystroke {i} never came back", sh.kind.name())
                    })??;
                if !open {
                    bail!("{}: the shell closed during the echo test", sh.kind.name());
                }
                got.extend_from_slice(&chunk);
            }
            let rtt = t0.elapsed();
            if got != [c] {
                bail!(
                    "{}: typed {:?}, got {:?} (expected exactly one echo from cat)",
                    sh.kind.name(),
                    c as char,
                    String::from_utf8_lossy(&got)
                );
            }
            samples.push(ms(rtt));
        }
    }
    for (sh, mut samples) in shells.into_iter().zip(rtts) {
        samples.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        println!(
            "echo  {:8} n={} p50 {p50:.3} ms  p99 {p99:.3} ms  mean {mean:.3} ms  max {:.3} ms",
            sh.kind.name(),
            samples.len(),
            samples.last().copied().unwrap_or(f64::NAN)
        );
        append(
            &t.results,
            &json!({
                "kind": "echo", "transport": sh.kind.name(), "n": samples.len(),
                "p50_ms": p50, "p99_ms": p99, "mean_ms": mean,
            }),
        )?;
        sh.close().await;
    }
    Ok(())
}

async fn bulk(t: &Targets, raw_bytes: u64, rounds: usize, limit: Duration) -> anyhow::Result<()> {
    let mut rates: BTreeMap<Kind, Vec<f64>> = BTreeMap::new();
    for round in 1..=rounds {
        for &kind in &t.only {
            let mut sh = Shell::open(kind, t).await?;
            sh.sync("true").await?;
            // The typed line holds `__EN''D__`; only the output has it
            // whole, and base64 never prints an underscore.
            let cmd = format!("head -c {raw_bytes} /dev/urandom | base64; echo __EN''D__\r");
            let t0 = Instant::now();
            sh.send(cmd.as_bytes()).await?;
            let bytes = sh.read_until(b"__END__", t0 + limit).await?;
            let secs = t0.elapsed().as_secs_f64();
            sh.close().await;
            let rate = bytes as f64 / secs / 1e6;
            println!(
                "bulk  {:8} round {round}: {bytes} bytes in {secs:.2} s = {rate:.1} MB/s",
                kind.name()
            );
            rates.entry(kind).or_default().push(rate);
            // The controller stores the session's recording (~1.1x the
            // output) when it ends: let that finish before the next run.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    for (kind, r) in rates {
        append(
            &t.results,
            &json!({ "kind": "bulk", "transport": kind.name(), "mb_s": r, "median_mb_s": median(&r) }),
        )?;
    }
    Ok(())
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time of all the process's threads in ns (schedstat: ns resolution,
/// not the 10 ms ticks of /proc/PID/stat).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

async fn download(a: &DownloadArgs) -> anyhow::Result<()> {
    // VmRSS every 100 ms for the whole run; the windows below pick the
    // baseline (idle, just before) and the peak (during the transfers).
    let samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let sampler = {
        let samples = samples.clone();
        let pid = a.controller_pid;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            // Bounded: the task is aborted at the end; this caps it anyway
            // (an hour of samples).
            for _ in 0..36_000 {
                tick.tick().await;
                let Some(kib) = vm_rss_kib(pid) else { break };
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((Instant::now(), kib));
            }
        })
    };
    let idle_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_to = Instant::now();

    let limit = Duration::from_secs(a.timeout_secs);
    let mut ours = Vec::new();
    let mut scp = Vec::new();
    let mut windows = Vec::new();
    let mut cpu_per_gb = Vec::new();
    for round in 1..=a.rounds {
        let cpu0 = cpu_ns(a.controller_pid);
        let t0 = Instant::now();
        // The token goes in on stdin (`-H @-`), not on the command line.
        let mut curl = Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                "-H",
                "@-",
            ])
            .arg(&a.url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run curl")?;
        let mut stdin = curl.stdin.take().context("curl stdin")?;
        stdin
            .write_all(format!("Authorization: Bearer {}\n", a.token).as_bytes())
            .await?;
        drop(stdin);
        let out = tokio::time::timeout(limit, curl.wait_with_output())
            .await
            .context("curl did not finish in time")??;
        let secs = t0.elapsed().as_secs_f64();
        windows.push((t0, Instant::now()));
        let cpu = (cpu_ns(a.controller_pid) - cpu0) as f64 / 1e9;
        let got: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if !out.status.success() || got != a.size {
            bail!("curl: {} after {got} of {} bytes", out.status, a.size);
        }
        let rate = a.size as f64 / secs / 1e6;
        cpu_per_gb.push(cpu / (a.size as f64 / 1e9));
        println!(
            "download ours   round {round}: {secs:.2} s = {rate:.1} MB/s (controller CPU {cpu:.2} s)"
        );
        ours.push(rate);
        tokio::time::sleep(Duration::from_secs(1)).await;

        let t0 = Instant::now();
        let mut cmd = Command::new("scp");
        cmd.args(["-q", "-F", "/dev/null", "-o", "BatchMode=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "LogLevel=ERROR", "-i"])
            .arg(&a.ssh_key)
            .args(["-P", &a.ssh_port.to_string()])
            .arg(format!("{}@127.0.0.1:{}", a.ssh_user, a.remote_path))
            .arg("/dev/null")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(limit, cmd.output())
            .await
            .context("scp did not finish in time")??;
        let secs = t0.elapsed().as_secs_f64();
        // scp (SFTP mode) truncates its target after the last byte, which
        // /dev/null refuses: harmless, and the only complaint expected.
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            if !line.contains("ftruncate") {
                eprintln!("scp: {line}");
            }
        }
        if !out.status.success() {
            bail!("scp: {}", out.status);
        }
        let rate = a.size as f64 / secs / 1e6;
        println!("download scp    round {round}: {secs:.2} s = {rate:.1} MB/s");
        scp.push(rate);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sampler.abort();
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let in_window = |from: Instant, to: Instant| {
        samples
            .iter()
            .filter(move |(t, _)| *t >= from && *t <= to)
            .map(|(_, k)| *k)
    };
    let baseline = in_window(idle_from, idle_to).max().unwrap_or(0);
    let peak = windows
        .iter()
        .flat_map(|&(from, to)| in_window(from, to))
        .max()
        .unwrap_or(0);
    let during: usize = windows.iter().map(|&(f, t)| in_window(f, t).count()).sum();
    println!(
        "controller VmRSS: baseline {:.1} MiB, peak while streaming {:.1} MiB ({during} samples)",
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    append(
        &a.results,
        &json!({
            "kind": "download", "size": a.size,
            "ours_mb_s": ours, "scp_mb_s": scp,
            "ours_median_mb_s": median(&ours), "scp_median_mb_s": median(&scp),
            "rss_baseline_kib": baseline, "rss_peak_kib": peak, "rss_samples": during,
            "controller_cpu_s_per_gb": median(&cpu_per_gb),
        }),
    )?;
    Ok(())
}

/// The project's goals (bench/README.md).
const ECHO_SLACK_MS: f64 = 0.15;
const BULK_MIN_RATIO: f64 = 0.9;
const DOWNLOAD_MIN_RATIO: f64 = 0.8;
/// "Flat": the peak stays within this of the baseline however big the
/// file (a buffer per transfer, not per byte).
const FLAT_MIB: f64 = 20.0;

fn report(results: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(results)
        .with_context(|| format!("reading {}", results.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let get = |kind: &str, transport: &str, field: &str| {
        lines
            .iter()
            .find(|v| v["kind"] == kind && v["transport"] == transport)
            .and_then(|v| v[field].as_f64())
            .unwrap_or(f64::NAN)
    };
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!(
        "{:24} {:>9} {:>9} {:>9} {:>13} {:>12}",
        "", "ours", "OpenSSH", "webssh", "ours/OpenSSH", "ours/webssh"
    );
    for (label, kind, field) in [
        ("echo p50 (ms)", "echo", "p50_ms"),
        ("echo p99 (ms)", "echo", "p99_ms"),
        ("bulk output (MB/s)", "bulk", "median_mb_s"),
    ] {
        let (o, s, w) = (
            get(kind, "ours", field),
            get(kind, "openssh", field),
            get(kind, "webssh", field),
        );
        println!(
            "{label:24} {o:9.3} {s:9.3} {w:9.3} {:>13} {:>12}",
            format!("x{:.2}", o / s),
            format!("x{:.2}", o / w)
        );
    }
    let dl = lines.iter().find(|v| v["kind"] == "download");
    if let Some(d) = dl {
        let f = |k: &str| d[k].as_f64().unwrap_or(f64::NAN);
        let (o, s) = (f("ours_median_mb_s"), f("scp_median_mb_s"));
        println!();
        println!("{:24} {:>9} {:>9} {:>13}", "", "ours", "scp", "ours/scp");
        println!(
            "{:24} {o:9.1} {s:9.1} {:>13}",
            format!("download {:.2} GiB (MB/s)", f("size") / 1073741824.0),
            format!("x{:.2}", o / s)
        );
        println!(
            "controller VmRSS: baseline {:.1} MiB, peak while streaming {:.1} MiB (+{:.1} MiB, {} samples at 100 ms); controller CPU {:.2} s per GB",
            f("rss_baseline_kib") / 1024.0,
            f("rss_peak_kib") / 1024.0,
            (f("rss_peak_kib") - f("rss_baseline_kib")) / 1024.0,
            d["rss_samples"],
            f("controller_cpu_s_per_gb"),
        );
    }
    println!();
    println!("goals:");
    let (o, s) = (
        get("echo", "ours", "p50_ms"),
        get("echo", "openssh", "p50_ms"),
    );
    println!(
        "  echo p50 within {ECHO_SLACK_MS} ms of OpenSSH's: +{:.3} ms -> {}",
        o - s,
        verdict(o - s <= ECHO_SLACK_MS)
    );
    let (o, s) = (
        get("bulk", "ours", "median_mb_s"),
        get("bulk", "openssh", "median_mb_s"),
    );
    println!(
        "  bulk output >= {BULK_MIN_RATIO}x OpenSSH's: x{:.2} -> {}",
        o / s,
        verdict(o / s >= BULK_MIN_RATIO)
    );
    if let Some(d) = dl {
        let f = |k: &str| d[k].as_f64().unwrap_or(f64::NAN);
        let ratio = f("ours_median_mb_s") / f("scp_median_mb_s");
        let growth = (f("rss_peak_kib") - f("rss_baseline_kib")) / 1024.0;
        println!(
            "  download >= {DOWNLOAD_MIN_RATIO}x scp's: x{ratio:.2} -> {}; memory flat (peak within {FLAT_MIB} MiB of baseline): +{growth:.1} MiB -> {}",
            verdict(ratio >= DOWNLOAD_MIN_RATIO),
            verdict(growth <= FLAT_MIB)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Echo {
            targets,
            count,
            gap_ms,
        } => echo(&targets, count, Duration::from_millis(gap_ms)).await,
        Cmd::Bulk {
            targets,
            raw_bytes,
            rounds,
            timeout_secs,
        } => {
            bulk(
                &targets,
                raw_bytes,
                rounds,
                Duration::from_secs(timeout_secs),
            )
            .await
        }
        Cmd::Download(a) => download(&a).await,
        Cmd::Report { results } => report(&results),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_marker_split_across_chunks() {
        let mut f = Finder::new(b"__END__");
        assert!(!f.feed(b"AAAA__E"));
        assert!(!f.feed(b"N"));
        assert!(f.feed(b"D__\r\n"));
        let mut f = Finder::new(b"__END__");
        assert!(!f.feed(b"__EN''D__"));
        assert!(f.feed(b"xx__END__"));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }
}
