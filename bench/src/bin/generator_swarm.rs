//! Many simulated load generators in one process against one controller:
//! what merging per-second results costs the controller.
//!
//! Every simulated generator is the real agent link (`protocol::Link`,
//! role jmeter, identity in memory) and speaks agent-jmeter's side of the
//! load protocol: `GeneratorStatus` (JMeter usable) at every connect;
//! on `StartTask` it fetches the artifact like agent-jmeter (and drops
//! it), answers `Started`, then once a second sends `TaskSeconds` (one
//! frame per generator: `--labels` labels, each an HDR V2 histogram of
//! `--samples` elapsed times) on one bulk stream; `SetRate` is answered
//! with `RateSet`, `StopTask` with `Ended`. No JMeter runs.
//!
//! The swarm links the generators to one server of a load-testing room,
//! runs ONE task on all of them, and reads the controller's CPU (utime +
//! stime of its pid) over a window without any client, then over a window
//! with one client reading the task's live stream (`/api/tasks/{id}/live`,
//! what an open task page costs), in thirds to show a trend. Run it
//! through `bench/loadtest.sh`, which starts the controller.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use myplatform_bench::{ProcStat, TICKS_PER_SEC, poll, proc_stat};
use protocol::load::{
    GeneratorStatus, JmeterInfo, LabelSecond, TaskEvent, TaskId, TaskPhase, TaskState,
};
use protocol::{AgentMsg, BulkStream, ControllerMsg, IdentityStore, Link, LinkConfig, LinkHandle};
use protocol::{LinkState, Role};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Args {
    /// Controller QUIC address.
    #[arg(long)]
    controller: String,
    /// A jmeter join token with at least `--generators` uses.
    #[arg(long)]
    token: String,
    #[arg(long)]
    ca_pin: protocol::CaPin,
    /// The controller's web address, `http://127.0.0.1:port`.
    #[arg(long)]
    api: String,
    /// An admin's API token (`controller user token`).
    #[arg(long)]
    api_token: String,
    /// The controller's pid, for RSS and CPU.
    #[arg(long)]
    controller_pid: u32,
    /// Number of simulated generators.
    #[arg(long, default_value_t = 100)]
    generators: usize,
    /// Sampler labels each generator reports every second.
    #[arg(long, default_value_t = 5)]
    labels: usize,
    /// Samples in each label's histogram every second.
    #[arg(long, default_value_t = 20)]
    samples: u64,
    /// Seconds after all run before measuring.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds measured without any client.
    #[arg(long, default_value_t = 10)]
    quiet: u64,
    /// Seconds measured with one client on the live stream.
    #[arg(long, default_value_t = 30)]
    hold: u64,
    /// Client UDP sockets shared by the generators.
    #[arg(long, default_value_t = 16)]
    sockets: usize,
    /// Generators enrolling at once.
    #[arg(long, default_value_t = 250)]
    enroll_wave: usize,
}

/// CPU of `pid` (cores) between two reads `secs` apart.
fn cores(a: &ProcStat, b: &ProcStat, secs: f64) -> f64 {
    b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_SEC / secs
}

/// What every simulated generator shares.
struct Shared {
    info: JmeterInfo,
    labels: Vec<String>,
    /// Encoded one-second histograms to pick from (cheap for the swarm,
    /// varied for the controller).
    pool: Vec<Vec<u8>>,
    samples: u64,
    sent_samples: AtomicU64,
    sent_frames: AtomicU64,
    send_errors: AtomicU64,
    artifact_bytes: AtomicU64,
    started: AtomicU64,
}

/// `n` histograms of `samples` elapsed times each, skewed like a web
/// service (most 5-50 ms, a tail to ~1 s), V2-encoded as agent-jmeter does.
fn histogram_pool(n: usize, samples: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let mut h = Histogram::<u64>::new(3).expect("3 significant digits are valid");
            for _ in 0..samples {
                let u = fastrand::f64();
                let ms = 5.0 + 995.0 * u.powi(6) + 45.0 * fastrand::f64();
                h.record(ms as u64).expect("auto-resizing histogram");
            }
            let mut out = Vec::new();
            V2Serializer::new()
                .serialize(&h, &mut out)
                .expect("V2 serialization");
            out
        })
        .collect()
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// One simulated generator: answers the controller until the link stops.
async fn generator(
    link: LinkHandle,
    mut rx: mpsc::Receiver<ControllerMsg>,
    shared: Arc<Shared>,
    phase: Duration,
) {
    let running: Arc<std::sync::Mutex<Option<(TaskId, CancellationToken)>>> = Arc::default();
    // GeneratorStatus after every (re)connection, as agent-jmeter does.
    {
        let (link, shared, running) = (link.clone(), shared.clone(), running.clone());
        tokio::spawn(async move {
            let mut state = link.state();
            let mut last = 0;
            loop {
                let epoch = match &*state.borrow_and_update() {
                    LinkState::Connected { epoch, .. } => Some(*epoch),
                    LinkState::Stopped => return,
                    _ => None,
                };
                if let Some(e) = epoch
                    && e != last
                {
                    last = e;
                    let tasks = running
                        .lock()
                        .expect("running")
                        .as_ref()
                        .map(|(id, _)| TaskState {
                            task_id: *id,
                            phase: TaskPhase::Running { pid: 4242 },
                            per_min: None,
                        })
                        .into_iter()
                        .collect();
                    let _ = link.send(AgentMsg::GeneratorStatus(GeneratorStatus {
                        jmeter: Ok(shared.info.clone()),
                        tasks,
                    }));
                }
                if state.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    while let Some(msg) = rx.recv().await {
        match msg {
            ControllerMsg::StartTask(st) => {
                let mut r = running.lock().expect("running");
                if r.is_some() {
                    continue; // a re-sent start
                }
                let cancel = CancellationToken::new();
                *r = Some((st.task_id, cancel.clone()));
                tokio::spawn(run_task(
                    link.clone(),
                    st.task_id,
                    shared.clone(),
                    cancel,
                    phase,
                ));
            }
            ControllerMsg::SetRate { task_id, per_min } => {
                let _ = link.send(AgentMsg::TaskEvent {
                    task_id,
                    event: TaskEvent::RateSet { per_min },
                });
            }
            ControllerMsg::StopTask { task_id } => {
                let taken = running.lock().expect("running").take();
                if let Some((_, cancel)) = taken {
                    cancel.cancel();
                }
                let _ = link.send(AgentMsg::TaskEvent {
                    task_id,
                    event: TaskEvent::Ended {
                        reason: "stopped".into(),
                        exit: "exit 0".into(),
                        // Not counted here: the controller waits for none.
                        samples: 0,
                    },
                });
            }
            _ => {}
        }
    }
}

/// Fetches the artifact, says Started, then sends one `TaskSeconds` per
/// second (at this generator's phase within the second) until cancelled.
async fn run_task(
    link: LinkHandle,
    task_id: TaskId,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    phase: Duration,
) {
    match fetch_artifact(&link, task_id).await {
        Ok(n) => {
            shared.artifact_bytes.fetch_add(n, Ordering::Relaxed);
        }
        Err(message) => {
            let _ = link.send(AgentMsg::TaskEvent {
                task_id,
                event: TaskEvent::Failed {
                    message,
                    log_errors: Vec::new(),
                },
            });
            return;
        }
    }
    let _ = link.send(AgentMsg::TaskEvent {
        task_id,
        event: TaskEvent::Started {
            pid: 4242,
            jmeter_version: shared.info.jmeter_version.clone(),
        },
    });
    shared.started.fetch_add(1, Ordering::Relaxed);
    let mut stream: Option<BulkStream> = None;
    loop {
        let now = unix_now();
        let next = now.as_secs() + 1;
        let at = Duration::from_secs(next) + phase;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(at.saturating_sub(now)) => {}
        }
        let sec = next as i64 - 1;
        let seconds: Vec<LabelSecond> = shared
            .labels
            .iter()
            .map(|label| LabelSecond {
                unix_sec: sec,
                label: label.clone(),
                count: shared.samples,
                errors: 0,
                bytes: shared.samples * 620,
                hist: shared.pool[fastrand::usize(..shared.pool.len())].clone(),
            })
            .collect();
        if stream.is_none() {
            match link.open_stream().await {
                Ok(s) => stream = Some(s),
                Err(_) => {
                    shared.send_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        match s.send(&AgentMsg::TaskSeconds { task_id, seconds }).await {
            Ok(()) => {
                shared.sent_samples.fetch_add(
                    shared.samples * shared.labels.len() as u64,
                    Ordering::Relaxed,
                );
                shared.sent_frames.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                shared.send_errors.fetch_add(1, Ordering::Relaxed);
                stream = None;
            }
        }
    }
    if let Some(s) = stream {
        s.finish();
    }
}

/// The task's artifact as agent-jmeter asks for it; its size.
async fn fetch_artifact(link: &LinkHandle, task_id: TaskId) -> Result<u64, String> {
    let mut req = link
        .request(&AgentMsg::FetchArtifact { task_id })
        .await
        .map_err(|e| e.to_string())?;
    let mut n = 0u64;
    loop {
        let next = tokio::time::timeout(
            Duration::from_secs(30),
            req.next(protocol::frame::MAX_BULK_FRAME),
        )
        .await
        .map_err(|_| "the artifact stalled".to_string())?
        .map_err(|e| e.to_string())?;
        match next {
            Some(ControllerMsg::ArtifactChunk { data }) => n += data.len() as u64,
            Some(ControllerMsg::Rejected { reason }) => return Err(reason),
            Some(other) => return Err(format!("unexpected on the artifact stream: {other:?}")),
            None => return Ok(n),
        }
    }
}

/// The controller's JSON API as the admin.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        match rb.send().await {
            Ok(r) => {
                let st = r.status().as_u16();
                (st, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({ "error": e.to_string() })),
        }
    }

    async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let (st, v) = self.call(method, path, body).await;
        if st != want {
            bail!("{path}: HTTP {st}: {v}");
        }
        Ok(v)
    }
}

/// What the live client saw.
#[derive(Default)]
struct Live {
    bytes: u64,
    series: u64,
    task: u64,
    /// Size of the first `series` event (the whole series so far) and when
    /// its end arrived after the request.
    first_series_bytes: u64,
    first_series_at: Option<Duration>,
}

/// Reads the task's live stream until cancelled.
async fn live_client(api: Arc<Api>, id: i64, stop: CancellationToken) -> Live {
    let mut live = Live::default();
    let asked = Instant::now();
    // Bytes of the event being read, and whether it is a series event.
    let (mut event_bytes, mut in_series) = (0u64, false);
    let resp = api
        .http
        .get(format!("{}/api/tasks/{id}/live", api.base))
        .bearer_auth(&api.token)
        .send()
        .await;
    let Ok(mut resp) = resp else {
        return live;
    };
    let mut partial = String::new();
    loop {
        let chunk = tokio::select! {
            _ = stop.cancelled() => break,
            c = resp.chunk() => c,
        };
        let Ok(Some(chunk)) = chunk else { break };
        live.bytes += chunk.len() as u64;
        partial.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = partial.find('\n') {
            let line: String = partial.drain(..=i).collect();
            event_bytes += line.len() as u64;
            if line.starts_with("event: series") {
                live.series += 1;
                in_series = true;
            } else if line.starts_with("event: task") {
                live.task += 1;
            } else if line == "\n" {
                // The end of an event.
                if in_series && live.first_series_at.is_none() {
                    live.first_series_bytes = event_bytes;
                    live.first_series_at = Some(asked.elapsed());
                }
                event_bytes = 0;
                in_series = false;
            }
        }
    }
    live
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    certs::tls::install_default_provider();
    let n = args.generators;
    #[allow(clippy::disallowed_methods)] // the provider is installed just above
    let http = reqwest::Client::new();
    let api = Arc::new(Api {
        base: args.api.trim_end_matches('/').to_string(),
        token: args.api_token.clone(),
        http,
    });
    let peer: std::net::SocketAddr = tokio::net::lookup_host(&args.controller)
        .await?
        .next()
        .context("controller address")?;
    let endpoints: Vec<quinn::Endpoint> = (0..args.sockets.max(1))
        .map(|_| protocol::endpoint::client_for(peer))
        .collect::<Result<_, _>>()?;
    let me = std::process::id();
    let shared = Arc::new(Shared {
        info: JmeterInfo {
            jmeter_version: "5.6.2".into(),
            java_version: "17.0.15".into(),
            home: "/opt/apache-jmeter-5.6.2".into(),
        },
        labels: (1..=args.labels).map(|i| format!("label-{i}")).collect(),
        pool: histogram_pool(256, args.samples),
        samples: args.samples,
        sent_samples: AtomicU64::new(0),
        sent_frames: AtomicU64::new(0),
        send_errors: AtomicU64::new(0),
        artifact_bytes: AtomicU64::new(0),
        started: AtomicU64::new(0),
    });

    // A load-testing room with one server all generators are linked to.
    let g = api
        .expect(
            Method::POST,
            "/api/groups",
            Some(json!({"name": "swarm"})),
            201,
        )
        .await?;
    let room = api
        .expect(
            Method::POST,
            "/api/rooms",
            Some(json!({"name": "swarm", "purpose": "load_testing"})),
            201,
        )
        .await?["id"]
        .as_i64()
        .context("room id")?;
    let server = api
        .expect(
            Method::POST,
            "/api/servers",
            Some(
                json!({"name": "loadbox", "group_id": g["id"], "room_id": room,
                        "address": "127.0.0.1", "ssh_port": 22, "ssh_user": "root"}),
            ),
            201,
        )
        .await?["id"]
        .as_i64()
        .context("server id")?;

    // Enroll and connect, in waves.
    let shutdown = CancellationToken::new();
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(n);
    let mut links = Vec::with_capacity(n);
    for wave in (0..n).collect::<Vec<_>>().chunks(args.enroll_wave.max(1)) {
        let mut handles = Vec::new();
        for &i in wave {
            let mut cfg = LinkConfig::new(
                args.controller.clone(),
                IdentityStore::memory(),
                Role::Jmeter,
            );
            cfg.endpoint = Some(endpoints[i % endpoints.len()].clone());
            cfg.token = Some(args.token.clone());
            cfg.ca_pin = Some(args.ca_pin.clone());
            let (h, rx, t) = Link::spawn(cfg, shutdown.clone());
            let phase = Duration::from_millis(fastrand::u64(0..1000));
            tokio::spawn(generator(h.clone(), rx, shared.clone(), phase));
            handles.push(h);
            links.push(t);
        }
        for h in &handles {
            match tokio::time::timeout(Duration::from_secs(120), h.connected()).await {
                Ok(Some((id, _))) => ids.push(id.to_string()),
                Ok(None) => bail!("a generator's link stopped while enrolling"),
                Err(_) => bail!(
                    "a generator is not connected after 120 s: {:?}",
                    *h.state().borrow()
                ),
            }
        }
    }
    let enrolled = t0.elapsed();
    let t1 = Instant::now();
    for id in &ids {
        api.expect(
            Method::PUT,
            &format!("/api/servers/{server}/agents/{id}"),
            None,
            200,
        )
        .await?;
    }
    let linked = t1.elapsed();
    poll(
        "every generator idle in the room",
        Duration::from_secs(120),
        Duration::from_millis(250),
        || async {
            let (st, v) = api
                .call(Method::GET, &format!("/api/rooms/{room}/generators"), None)
                .await;
            let idle = v
                .as_array()
                .map(|a| a.iter().filter(|g| g["state"] == "idle").count())
                .unwrap_or(0);
            (st == 200 && idle >= n).then_some(())
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = proc_stat(args.controller_pid)?;

    // One task on all of them; 20 samples x labels per second each.
    let samplers: Vec<Value> = shared
        .labels
        .iter()
        .map(|l| json!({"name": l, "host": "127.0.0.1", "port": "9", "path": "/"}))
        .collect();
    let tps = (n as u64 * args.samples * args.labels as u64) as f64;
    let plan = json!({
        "name": format!("swarm {n}"),
        "run": {"load": {"type": "tps", "tps": tps}, "duration_secs": 3600,
                "room_id": room, "generators": n},
        "thread_groups": [{"name": "g", "controllers": [{"name": "c", "samplers": samplers}]}]
    });
    let plan = api
        .expect(Method::POST, "/api/plans", Some(plan), 201)
        .await?["id"]
        .as_i64()
        .context("plan id")?;
    let t2 = Instant::now();
    let id = api
        .expect(Method::POST, &format!("/api/plans/{plan}/run"), None, 201)
        .await?["id"]
        .as_i64()
        .context("task id")?;
    let run_returned = t2.elapsed();
    poll(
        "every generator running",
        Duration::from_secs(180),
        Duration::from_millis(250),
        || async {
            let (st, v) = api
                .call(Method::GET, &format!("/api/tasks/{id}"), None)
                .await;
            let running = v["generators"]
                .as_array()
                .map(|a| a.iter().filter(|g| g["status"] == "running").count())
                .unwrap_or(0);
            (st == 200 && running >= n).then_some(())
        },
    )
    .await?;
    let all_running = t2.elapsed();
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    // Window 1: no client.
    let c0 = proc_stat(args.controller_pid)?;
    let m0 = proc_stat(me)?;
    let f0 = shared.sent_frames.load(Ordering::Relaxed);
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.quiet)).await;
    let quiet_secs = w0.elapsed().as_secs_f64();
    let c1 = proc_stat(args.controller_pid)?;
    let m1 = proc_stat(me)?;
    let f1 = shared.sent_frames.load(Ordering::Relaxed);

    // Window 2: one client on the live stream, in thirds.
    let first_event_run_secs = t2.elapsed().as_secs_f64();
    let stop_live = CancellationToken::new();
    let live = tokio::spawn(live_client(api.clone(), id, stop_live.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut marks = vec![(
        Instant::now(),
        proc_stat(args.controller_pid)?,
        proc_stat(me)?,
        shared.sent_frames.load(Ordering::Relaxed),
    )];
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs_f64(args.hold as f64 / 3.0)).await;
        marks.push((
            Instant::now(),
            proc_stat(args.controller_pid)?,
            proc_stat(me)?,
            shared.sent_frames.load(Ordering::Relaxed),
        ));
    }
    stop_live.cancel();
    let live = live.await.unwrap_or_default();
    let (live_bytes, live_series, live_task) = (live.bytes, live.series, live.task);
    let (a, b) = (&marks[0], &marks[3]);
    let hold_secs = b.0.duration_since(a.0).as_secs_f64();
    let cpu_live = cores(&a.1, &b.1, hold_secs);
    let my_live = cores(&a.2, &b.2, hold_secs);
    let thirds: Vec<f64> = marks
        .windows(2)
        .map(|w| {
            cores(
                &w[0].1,
                &w[1].1,
                w[1].0.duration_since(w[0].0).as_secs_f64(),
            )
        })
        .collect();
    let cpu_quiet = cores(&c0, &c1, quiet_secs);
    let my_quiet = cores(&m0, &m1, quiet_secs);
    let frames_quiet = (f1 - f0) as f64 / quiet_secs;
    let frames_live = (b.3 - a.3) as f64 / hold_secs;

    // Stop; the task closes once every generator said Ended.
    let t3 = Instant::now();
    api.expect(Method::POST, &format!("/api/tasks/{id}/stop"), None, 200)
        .await?;
    let stop_returned = t3.elapsed();
    let done = poll(
        "the task finished",
        Duration::from_secs(180),
        Duration::from_millis(100),
        || async {
            let (st, v) = api
                .call(Method::GET, &format!("/api/tasks/{id}"), None)
                .await;
            (st == 200 && v["task"]["status"] == "finished").then_some(v)
        },
    )
    .await?;
    let finished = t3.elapsed();
    // Seconds in flight at the stop still count in the totals.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let done = api
        .call(Method::GET, &format!("/api/tasks/{id}"), None)
        .await
        .1
        .get("task")
        .cloned()
        .unwrap_or(done["task"].clone());
    let stored = done["totals"]["samples"].as_u64().unwrap_or(0);
    let sent = shared.sent_samples.load(Ordering::Relaxed);
    let end = proc_stat(args.controller_pid)?;

    let label_secs = (n * args.labels) as f64;
    println!(
        "generators                     {n} ({} labels x {} samples per second each)",
        args.labels, args.samples
    );
    println!(
        "enroll+connect                 {:.2} s; linking to the server {:.2} s",
        enrolled.as_secs_f64(),
        linked.as_secs_f64()
    );
    println!(
        "run -> all running             {:.2} s (POST returned after {:.2} s; {} artifact bytes fetched)",
        all_running.as_secs_f64(),
        run_returned.as_secs_f64(),
        shared.artifact_bytes.load(Ordering::Relaxed)
    );
    println!(
        "TaskSeconds frames             {frames_quiet:.0}/s quiet, {frames_live:.0}/s with the live client ({} send errors)",
        shared.send_errors.load(Ordering::Relaxed)
    );
    println!(
        "controller CPU, no client      {:.1} % of one core over {quiet_secs:.0} s = {:.3} % per generator, {:.1} ms per 1000 label-seconds",
        cpu_quiet * 100.0,
        cpu_quiet * 100.0 / n as f64,
        cpu_quiet * 1e6 / label_secs
    );
    println!(
        "controller CPU, 1 live client  {:.1} % of one core over {hold_secs:.0} s = {:.3} % per generator, {:.1} ms per 1000 label-seconds",
        cpu_live * 100.0,
        cpu_live * 100.0 / n as f64,
        cpu_live * 1e6 / label_secs
    );
    println!(
        "  by third of the window       {}",
        thirds
            .iter()
            .map(|c| format!("{:.1} %", c * 100.0))
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    println!(
        "  controller RSS by third      {:.1} MiB (start of the quiet window) -> {}",
        c0.rss_kib as f64 / 1024.0,
        marks
            .iter()
            .map(|m| format!("{:.1} MiB", m.1.rss_kib as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" -> ")
    );
    println!(
        "live stream                    {:.1} KB/s, {live_series} series + {live_task} task events",
        live_bytes as f64 / 1000.0 / (hold_secs + 2.0)
    );
    println!(
        "  first series event           {:.1} KB (every second so far, {:.0} s of the run), complete {:.2} s after the request",
        live.first_series_bytes as f64 / 1000.0,
        first_event_run_secs,
        live.first_series_at.map_or(f64::NAN, |d| d.as_secs_f64())
    );
    println!(
        "controller RSS                 {:.1} MiB idle (generators connected) -> {:.1} MiB running -> {:.1} MiB after",
        idle.rss_kib as f64 / 1024.0,
        b.1.rss_kib as f64 / 1024.0,
        end.rss_kib as f64 / 1024.0
    );
    println!(
        "swarm (client) CPU             {:.1} % quiet, {:.1} % with the live client",
        my_quiet * 100.0,
        my_live * 100.0
    );
    println!(
        "stop -> finished               {:.2} s (POST returned after {:.2} s)",
        finished.as_secs_f64(),
        stop_returned.as_secs_f64()
    );
    println!("samples stored / sent          {stored} / {sent}");
    println!(
        "ROW | {n} | {:.1} | {:.1} | {:.3} | {:.1} | {} | {:.0} -> {:.0} | {:.1} | {:.1} | {:.2} | {} |",
        cpu_quiet * 100.0,
        cpu_live * 100.0,
        cpu_live * 100.0 / n as f64,
        cpu_live * 1e6 / label_secs,
        thirds
            .iter()
            .map(|c| format!("{:.0}", c * 100.0))
            .collect::<Vec<_>>()
            .join("/"),
        idle.rss_kib as f64 / 1024.0,
        b.1.rss_kib as f64 / 1024.0,
        live_bytes as f64 / 1000.0 / (hold_secs + 2.0),
        my_live * 100.0,
        finished.as_secs_f64(),
        if stored == sent {
            "all".to_string()
        } else {
            format!("{stored}/{sent}")
        }
    );

    shutdown.cancel();
    for t in links {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    Ok(())
}
