//! Distributed load tests with real parts, timed: the controller, real
//! agent-jmeter processes and real JMeter 5.6 (e2e's `LoadLab`), against a
//! target on 127.0.0.1 that answers after a random delay (1-200 ms, a few
//! per cent 2-5 s) and counts requests in 100 ms buckets of wall-clock
//! time.
//!
//! One task (TPS mode, debug mode, `--generators` generators) gives, in turn:
//! 1. rate accuracy: per 1 s bucket at the target over `--measure` s,
//!    `--warmup` s after every generator's status became running (its JVM
//!    was spawned);
//! 2. TPS change to effect: from `POST .../rate` returning to the end of
//!    the first 100 ms bucket whose rolling 1 s count is within 10 % of
//!    the new rate, for `--changes` changes and then a deep cut and back;
//!    the agents' logs say when JMeter acknowledged each;
//! 3. hot-attach: from `POST .../generators` returning to the first
//!    request of the NEW generator at the target (its requests carry its
//!    own `myplatform.duration`, the run time left, in the query string);
//! 4. merged percentiles: the task's totals after the stop against the
//!    exact percentiles (rank ceil(q n)) of every JTL row of every
//!    generator.
//!
//! Then the peer: ONE stock JMeter (`bin/jmeter -n`) runs the same run
//! files (`GET /api/plans/{id}/run-files`) at the same total rate, as the
//! original platform's users did by hand; its rate accuracy is measured
//! the same way, `--warmup` s after its first request.
//!
//! Run it through `bench/loadtest.sh`; it is an example so that e2e finds
//! the release binaries beside it (see bench/Cargo.toml).

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use e2e::loadlab::LoadLab;
use myplatform_bench::poll;
use reqwest::Method as M;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// Target rate of the task (and of the stock JMeter run), all together.
    #[arg(long, env = "LOAD_TPS", default_value_t = 100.0)]
    tps: f64,
    /// Generators the task starts on (one more is started to hot-attach).
    #[arg(long, env = "LOAD_GENERATORS", default_value_t = 2)]
    generators: u32,
    /// Seconds skipped before measuring the rate.
    #[arg(long, env = "LOAD_WARMUP", default_value_t = 10)]
    warmup: u64,
    /// Seconds whose rate is measured.
    #[arg(long, env = "LOAD_MEASURE", default_value_t = 60)]
    measure: u64,
    /// Rate changes (x1.5, x0.75, x1.4, x0.6, x1, then again).
    #[arg(long, env = "LOAD_CHANGES", default_value_t = 5)]
    changes: usize,
    /// After the changes, cut the rate to this share of `--tps` and raise
    /// it back (0: skip): reported apart, see `Change::slots_ms`.
    #[arg(long, env = "LOAD_DEEP_CUT", default_value_t = 0.2)]
    deep_cut: f64,
    /// The target answers after a uniform random delay in [min, max] ms.
    #[arg(long, env = "TARGET_DELAY_MIN_MS", default_value_t = 1)]
    delay_min_ms: u64,
    #[arg(long, env = "TARGET_DELAY_MAX_MS", default_value_t = 200)]
    delay_max_ms: u64,
    /// This share of requests is slow instead: uniform in [2000, 5000] ms,
    /// so the high percentiles lie where a 3-digit HDR histogram has
    /// 2-4 ms buckets (below 2048 ms every value is exact).
    #[arg(long, env = "TARGET_SLOW_SHARE", default_value_t = 0.03)]
    slow_share: f64,
    /// Skip the stock JMeter run.
    #[arg(long, env = "LOAD_NO_PEER")]
    no_peer: bool,
}

/// The task's run time: far beyond what the bench needs; it is stopped.
const TASK_SECS: u32 = 1800;
/// The rate changes, as multiples of `--tps`.
const CHANGES: [f64; 5] = [1.5, 0.75, 1.4, 0.6, 1.0];
/// "At the new rate": the rolling 1 s count within this share of it.
const EFFECT_BAND: f64 = 0.10;
/// Delays of the target's slow answers, ms.
const SLOW_MS: (u64, u64) = (2000, 5000);
/// Bucket width at the target.
const BUCKET_MS: i64 = 100;

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---- the target -------------------------------------------------------------

#[derive(Default)]
struct Counts {
    /// Requests per 100 ms bucket (unix ms / 100), every source.
    buckets: BTreeMap<i64, u64>,
    /// First arrival (unix ms) per value of the `d` query parameter.
    first: HashMap<String, i64>,
}

/// An HTTP server on 127.0.0.1: counts each request on arrival, then
/// answers "ok" after a random delay.
struct Target {
    port: u16,
    counts: Arc<Mutex<Counts>>,
}

impl Target {
    async fn start(min_ms: u64, max_ms: u64, slow_share: f64) -> anyhow::Result<Target> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let counts: Arc<Mutex<Counts>> = Arc::default();
        let c = counts.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let c = c.clone();
            async move {
                let now = unix_ms();
                let tag = uri
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .find_map(|p| p.strip_prefix("d="))
                    .unwrap_or("")
                    .to_string();
                {
                    let mut c = c.lock().expect("counts");
                    *c.buckets.entry(now / BUCKET_MS).or_default() += 1;
                    c.first.entry(tag).or_insert(now);
                }
                let delay = if fastrand::f64() < slow_share {
                    fastrand::u64(SLOW_MS.0..=SLOW_MS.1)
                } else {
                    fastrand::u64(min_ms..=max_ms.max(min_ms))
                };
                tokio::time::sleep(Duration::from_millis(delay)).await;
                "ok"
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Target { port, counts })
    }

    /// Requests in each whole second of `[from, to)` (unix seconds).
    fn per_second(&self, from: i64, to: i64) -> Vec<u64> {
        let c = self.counts.lock().expect("counts");
        let per = 1000 / BUCKET_MS;
        (from..to)
            .map(|s| {
                c.buckets
                    .range(s * per..(s + 1) * per)
                    .map(|(_, n)| n)
                    .sum()
            })
            .collect()
    }

    /// Requests in the 1 s ending with bucket `b` (b-9..=b).
    fn rolling(&self, b: i64) -> u64 {
        let c = self.counts.lock().expect("counts");
        c.buckets
            .range(b - (1000 / BUCKET_MS - 1)..=b)
            .map(|(_, n)| n)
            .sum()
    }

    /// Largest |rolling 1 s count - tps| / tps over buckets `[from, to)`.
    fn max_deviation(&self, from: i64, to: i64, tps: f64) -> f64 {
        (from..to)
            .map(|b| (self.rolling(b) as f64 - tps).abs() / tps)
            .fold(0.0, f64::max)
    }

    fn first(&self, tag: &str) -> Option<i64> {
        self.counts.lock().expect("counts").first.get(tag).copied()
    }

    /// The first arrival of any tag not in `known`: (tag, unix ms).
    fn first_other(&self, known: &[String]) -> Option<(String, i64)> {
        let c = self.counts.lock().expect("counts");
        c.first
            .iter()
            .filter(|(t, _)| !known.contains(t))
            .min_by_key(|(_, at)| **at)
            .map(|(t, at)| (t.clone(), *at))
    }

    /// Waits (at most `within`) for the first complete bucket ending after
    /// `since_ms` whose rolling 1 s count is within `band` of `tps`; the
    /// ms from `since_ms` to that bucket's end.
    async fn reaches(&self, since_ms: i64, tps: f64, band: f64, within: Duration) -> Option<i64> {
        let deadline = Instant::now() + within;
        let mut b = since_ms / BUCKET_MS;
        loop {
            let done = unix_ms() / BUCKET_MS; // buckets before this are complete
            while b < done {
                let n = self.rolling(b) as f64;
                if (n - tps).abs() <= tps * band {
                    return Some((b + 1) * BUCKET_MS - since_ms);
                }
                b += 1;
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(BUCKET_MS as u64)).await;
        }
    }
}

// ---- figures ----------------------------------------------------------------

/// Rate accuracy of whole seconds against a target rate.
#[derive(Debug, Clone)]
struct Accuracy {
    seconds: usize,
    mean_rate: f64,
    mean_abs_pct: f64,
    p95_abs_pct: f64,
    /// Signed error of the worst second, and its count.
    worst_pct: f64,
    worst_count: u64,
    within5: f64,
}

fn accuracy(counts: &[u64], tps: f64) -> Accuracy {
    let errs: Vec<f64> = counts
        .iter()
        .map(|&n| (n as f64 - tps) / tps * 100.0)
        .collect();
    let mut abs: Vec<f64> = errs.iter().map(|e| e.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let n = abs.len().max(1);
    let (wi, worst) = errs
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, e)| (i, *e))
        .unwrap_or((0, 0.0));
    Accuracy {
        seconds: counts.len(),
        mean_rate: counts.iter().sum::<u64>() as f64 / n as f64,
        mean_abs_pct: abs.iter().sum::<f64>() / n as f64,
        p95_abs_pct: abs[((0.95 * n as f64).ceil() as usize).clamp(1, n) - 1],
        worst_pct: worst,
        worst_count: counts.get(wi).copied().unwrap_or(0),
        within5: abs.iter().filter(|e| **e <= 5.0).count() as f64 / n as f64,
    }
}

/// Value at rank ceil(q n) of sorted `v` (HdrHistogram's definition).
fn exact_quantile(v: &[u64], q: f64) -> u64 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

/// Unix ms of a tracing line's RFC 3339 UTC timestamp
/// (`2026-11-27T18:35:41.123456Z ...`).
fn log_time_ms(line: &str) -> Option<i64> {
    let ts = line.split_whitespace().next()?;
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60 * 1000 + ss * 1000 + ms)
}

/// Times (unix ms) of log lines of `log` containing all of `needles`.
fn log_times(log: &str, needles: &[&str]) -> Vec<i64> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .filter_map(log_time_ms)
        .collect()
}

// ---- the API ----------------------------------------------------------------

async fn call(lab: &LoadLab, method: M, path: &str, body: Option<Value>) -> (u16, Value) {
    lab.call(method, path, body).await
}

async fn expect(
    lab: &LoadLab,
    method: M,
    path: &str,
    body: Option<Value>,
    want: u16,
) -> anyhow::Result<Value> {
    let (st, v) = call(lab, method, path, body).await;
    if st != want {
        bail!("{path}: HTTP {st}: {v}");
    }
    Ok(v)
}

async fn get_bytes(lab: &LoadLab, path: &str) -> anyhow::Result<Vec<u8>> {
    let r = e2e::http()
        .get(format!("{}{path}", lab.base))
        .bearer_auth(&lab.token)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("{path}: HTTP {}", r.status());
    }
    Ok(r.bytes().await?.to_vec())
}

async fn sleep_until_ms(at: i64) {
    let now = unix_ms();
    if at > now {
        tokio::time::sleep(Duration::from_millis((at - now) as u64)).await;
    }
}

fn agents_of(task: &Value) -> Vec<String> {
    task["generators"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g["agent_id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

// ---- the parts --------------------------------------------------------------

struct Change {
    from: f64,
    to: f64,
    /// Part of the deep cut (reported apart).
    deep: bool,
    /// When the API call returned (unix ms).
    returned: i64,
    /// API return -> at the new rate (ms), if within 10 s.
    effect_ms: Option<i64>,
    /// API return -> the last generator's "rate set" log line (ms).
    ack_ms: Option<i64>,
    /// Largest deviation of the rolling 1 s count from the new rate in
    /// the 3 s after reaching it (share of the rate).
    after: Option<f64>,
}

impl Change {
    /// JMeter's Constant Throughput Timer in "all active threads (shared)"
    /// mode hands each thread that enters it the next free slot of one
    /// schedule: with `threads` threads waiting, slots are taken up to
    /// `threads` old intervals ahead, and they run at the old spacing
    /// after a change. An upper bound of that lag (every thread waiting),
    /// ms, with `gens` generators sharing the old rate.
    fn slots_ms(&self, threads: u64, gens: usize) -> f64 {
        threads as f64 / (self.from / gens.max(1) as f64) * 1000.0
    }

    /// Ms a rolling 1 s window needs to come within the band if the rate
    /// stepped at once from `from` to `to`: the window's own lag.
    fn window_lag_ms(&self) -> f64 {
        let step = (self.from - self.to).abs();
        if step <= 0.0 {
            return 0.0;
        }
        ((step - EFFECT_BAND * self.to) / step).max(0.0) * 1000.0
    }
}

struct Attach {
    /// How long the POST itself took.
    post_ms: i64,
    first_request_ms: Option<i64>,
    start_task_ms: Option<i64>,
    jvm_spawned_ms: Option<i64>,
    running_ms: Option<i64>,
    in_series_ms: Option<i64>,
    /// Lowest rolling 1 s total from the attach to 1 s after the new
    /// generator's first request, as a share of the target.
    dip: Option<f64>,
    /// API return -> the rolling 1 s total back within 10 %.
    back_ms: Option<i64>,
}

struct Percentiles {
    rows: usize,
    samples: u64,
    /// (name, merged, exact)
    values: Vec<(&'static str, u64, u64)>,
}

struct Ours {
    /// Threads per thread group on each generator (the task's sizing).
    threads: u64,
    start_to_first_request_ms: Option<i64>,
    accuracy: Accuracy,
    changes: Vec<Change>,
    attach: Attach,
    percentiles: Percentiles,
    plan: i64,
}

async fn ours(args: &Args, lab: &LoadLab, target: &Target) -> anyhow::Result<Ours> {
    let tag = TASK_SECS.to_string();
    let plan = json!({
        "name": "bench rate",
        "run": {"load": {"type": "tps", "tps": args.tps}, "duration_secs": TASK_SECS,
                "room_id": lab.room, "generators": args.generators, "debug": true},
        "thread_groups": [{"name": "g", "controllers": [{"name": "c", "samplers": [
            {"name": "hit", "host": "127.0.0.1", "port": target.port.to_string(),
             "path": "/hit?d=${__P(myplatform.duration,0)}"}
        ]}]}]
    });
    let plan = expect(lab, M::POST, "/api/plans", Some(plan), 201).await?["id"]
        .as_i64()
        .context("plan id")?;
    let posted = unix_ms();
    let id = expect(lab, M::POST, &format!("/api/plans/{plan}/run"), None, 201).await?["id"]
        .as_i64()
        .context("task id")?;
    let want = args.generators as usize;
    poll(
        "every generator running",
        Duration::from_secs(90),
        Duration::from_millis(100),
        || async {
            let t = lab.task(id).await;
            let n = t["generators"]
                .as_array()?
                .iter()
                .filter(|g| g["status"] == "running")
                .count();
            (n >= want).then_some(())
        },
    )
    .await?;
    let running = unix_ms();
    let threads = lab.task(id).await["task"]["threads"].as_u64().unwrap_or(0);
    let first = poll(
        "the first request",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async { target.first(&tag) },
    )
    .await?;
    eprintln!(
        "task {id} running on {want} generators {:.1} s after the run call, first request after {:.1} s",
        (running - posted) as f64 / 1000.0,
        (first - posted) as f64 / 1000.0
    );

    // 1. Rate accuracy.
    let from = running.div_euclid(1000) + 1 + args.warmup as i64;
    let to = from + args.measure as i64;
    sleep_until_ms(to * 1000 + 1200).await;
    let acc = accuracy(&target.per_second(from, to), args.tps);
    eprintln!(
        "rate accuracy: mean |error| {:.2} %, within 5 %: {:.0} %",
        acc.mean_abs_pct,
        acc.within5 * 100.0
    );

    // 2. Rate changes.
    let mut changes = Vec::new();
    let mut current = args.tps;
    let mut steps: Vec<(f64, bool)> = (0..args.changes)
        .map(|k| (args.tps * CHANGES[k % CHANGES.len()], false))
        .collect();
    if args.deep_cut > 0.0 {
        steps.push((args.tps * args.deep_cut, true));
        steps.push((args.tps, true));
    }
    for (to, deep) in steps {
        let to = to.round().max(1.0);
        expect(
            lab,
            M::POST,
            &format!("/api/tasks/{id}/rate"),
            Some(json!({ "tps": to })),
            200,
        )
        .await?;
        let returned = unix_ms();
        let effect = target
            .reaches(returned, to, EFFECT_BAND, Duration::from_secs(10))
            .await;
        eprintln!(
            "TPS {current} -> {to}: {}",
            effect.map_or("not within 10 s".into(), |ms| format!("{ms} ms"))
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = effect.map(|ms| {
            let b = (returned + ms) / BUCKET_MS; // the bucket after the one at the rate
            target.max_deviation(b, b + 3000 / BUCKET_MS, to)
        });
        changes.push(Change {
            from: current,
            to,
            deep,
            returned,
            effect_ms: effect,
            ack_ms: None,
            after,
        });
        current = to;
    }
    let before = agents_of(&lab.task(id).await);

    // 3. Hot-attach.
    let known: Vec<String> = {
        let c = target.counts.lock().expect("counts");
        c.first.keys().cloned().collect()
    };
    let posted_attach = unix_ms();
    let v = expect(
        lab,
        M::POST,
        &format!("/api/tasks/{id}/generators"),
        None,
        200,
    )
    .await?;
    let attached = unix_ms();
    let new_agent = agents_of(&v)
        .into_iter()
        .find(|a| !before.contains(a))
        .context("the attached generator")?;
    let mut a = Attach {
        post_ms: attached - posted_attach,
        first_request_ms: None,
        start_task_ms: None,
        jvm_spawned_ms: None,
        running_ms: None,
        in_series_ms: None,
        dip: None,
        back_ms: None,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tick = 0u32;
    while Instant::now() < deadline
        && (a.first_request_ms.is_none() || a.running_ms.is_none() || a.in_series_ms.is_none())
    {
        if a.first_request_ms.is_none()
            && let Some((_, at)) = target.first_other(&known)
        {
            a.first_request_ms = Some(at - attached);
        }
        if a.running_ms.is_none() && tick.is_multiple_of(2) {
            let t = lab.task(id).await;
            let up = t["generators"].as_array().is_some_and(|g| {
                g.iter()
                    .any(|g| g["agent_id"] == new_agent.as_str() && g["status"] == "running")
            });
            if up {
                a.running_ms = Some(unix_ms() - attached);
            }
        }
        if a.in_series_ms.is_none() && tick.is_multiple_of(3) {
            let (_, s) = call(lab, M::GET, &format!("/api/tasks/{id}/series"), None).await;
            let has = s["generators"][&new_agent]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["count"].as_u64() > Some(0)));
            if has {
                a.in_series_ms = Some(unix_ms() - attached);
            }
        }
        tick += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(first) = a.first_request_ms {
        let since = attached + first;
        sleep_until_ms(since + 1200).await;
        let (b0, b1) = (attached / BUCKET_MS, (since + 1000) / BUCKET_MS);
        a.dip = (b0..b1)
            .map(|b| target.rolling(b) as f64 / current)
            .reduce(f64::min);
        a.back_ms = target
            .reaches(since, current, EFFECT_BAND, Duration::from_secs(30))
            .await
            .map(|ms| ms + first);
    }
    if let Some(g) = lab.generators.iter().find(|g| g.id == new_agent) {
        let log = g.proc.log();
        a.start_task_ms = log_times(&log, &["starting task"])
            .first()
            .map(|t| t - attached);
        a.jvm_spawned_ms = log_times(&log, &["JMeter started"])
            .first()
            .map(|t| t - attached);
    }
    eprintln!(
        "hot-attach: first request of the new generator after {:?} ms",
        a.first_request_ms
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    // JMeter's acknowledgements of the rate changes, from the logs of the
    // generators that ran them: the i-th "rate set" line of each is the
    // i-th change (the start's rate is a -J property, not a "rate set";
    // the attach's re-split comes after); a change is acknowledged when
    // the later of them is.
    let acks: Vec<Vec<i64>> = lab
        .generators
        .iter()
        .filter(|g| before.contains(&g.id))
        .map(|g| log_times(&g.proc.log(), &["rate set"]))
        .collect();
    for (i, c) in changes.iter_mut().enumerate() {
        let times: Option<Vec<i64>> = acks.iter().map(|t| t.get(i).copied()).collect();
        c.ack_ms = times
            .and_then(|t| t.into_iter().max())
            .map(|t| t - c.returned);
    }

    // 4. Stop; merged percentiles against every JTL row.
    expect(lab, M::POST, &format!("/api/tasks/{id}/stop"), None, 200).await?;
    let done = lab
        .wait_status(id, "finished", Duration::from_secs(90))
        .await;
    poll(
        "no JMeter left",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { lab.java_processes().is_empty().then_some(()) },
    )
    .await?;
    let totals = &done["task"]["totals"];
    let mut elapsed = Vec::new();
    for agent in agents_of(&done) {
        let jtl = get_bytes(lab, &format!("/api/tasks/{id}/generators/{agent}/jtl")).await?;
        for row in e2e::jmeter::parse_jtl(&String::from_utf8_lossy(&jtl)) {
            if let Some(ms) = row.get("elapsed").and_then(|e| e.parse::<u64>().ok()) {
                elapsed.push(ms);
            }
        }
    }
    elapsed.sort_unstable();
    if elapsed.is_empty() {
        bail!("no JTL rows");
    }
    let mut values: Vec<(&'static str, u64, u64)> =
        [("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99)]
            .iter()
            .map(|(name, q)| {
                let merged = totals[format!("{name}_ms")].as_u64().unwrap_or(0);
                (*name, merged, exact_quantile(&elapsed, *q))
            })
            .collect();
    values.push((
        "max",
        totals["max_ms"].as_u64().unwrap_or(0),
        elapsed.last().copied().unwrap_or(0),
    ));
    Ok(Ours {
        threads,
        start_to_first_request_ms: Some(first - posted),
        accuracy: acc,
        changes,
        attach: a,
        percentiles: Percentiles {
            rows: elapsed.len(),
            samples: totals["samples"].as_u64().unwrap_or(0),
            values,
        },
        plan,
    })
}

struct Peer {
    accuracy: Accuracy,
    threads: u32,
    /// Spawn -> first request at the target.
    boot_ms: i64,
}

/// Children of `pid` (from /proc), to end a shell script's JVM.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// ONE stock JMeter: `bin/jmeter -n` on the plan's run files at the same
/// total rate (threads sized as the controller would for one generator).
async fn peer(args: &Args, lab: &LoadLab, target: &Target, plan: i64) -> anyhow::Result<Peer> {
    let zip = get_bytes(lab, &format!("/api/plans/{plan}/run-files")).await?;
    let dir = lab.dir.path().join("stock");
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree)?;
    let zip_path = dir.join("run.zip");
    std::fs::write(&zip_path, &zip)?;
    let bundle = loadplan::bundle::unpack_file(&zip_path, &tree, &Default::default())?;
    let threads = loadplan::jmx::Sizing::default().threads_for(args.tps);
    let secs = args.warmup + args.measure + 3;
    let tag = secs.to_string();
    let out = std::fs::File::create(dir.join("jmeter.out"))?;
    let mut cmd = Command::new(lab.jmeter.home.join("bin").join("jmeter"));
    cmd.current_dir(&tree)
        .arg("-n")
        .arg("-t")
        .arg(tree.join(&bundle.jmx))
        .arg("-l")
        .arg(dir.join("results.jtl"))
        .arg("-j")
        .arg(dir.join("jmeter.log"))
        // No UDP shutdown listener on every interface: loopback only.
        .arg("-Jjmeterengine.nongui.port=0")
        .arg(format!("-Jmyplatform.throughput={}", args.tps * 60.0))
        .arg(format!("-Jmyplatform.threads={threads}"))
        .arg(format!("-Jmyplatform.duration={secs}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let spawned = unix_ms();
    let mut child = cmd.spawn().context("bin/jmeter")?;
    let result = async {
        let first = poll(
            "the stock JMeter's first request",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || async { target.first(&tag) },
        )
        .await?;
        let from = first.div_euclid(1000) + 1 + args.warmup as i64;
        let to = from + args.measure as i64;
        sleep_until_ms(to * 1000 + 1200).await;
        Ok::<_, anyhow::Error>(Peer {
            accuracy: accuracy(&target.per_second(from, to), args.tps),
            threads,
            boot_ms: first - spawned,
        })
    }
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            for p in children_of(child.id()) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(p.to_string())
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    result
}

// ---- output -------------------------------------------------------------------

fn secs(ms: Option<i64>) -> String {
    ms.map_or("-".into(), |ms| format!("{:.2}", ms as f64 / 1000.0))
}

fn pct(v: f64) -> String {
    format!("{v:.2} %")
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("x{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn report(args: &Args, o: &Ours, p: Option<&Peer>) {
    let a = &o.accuracy;
    println!();
    println!(
        "== load-bench: {} TPS on {} agent-jmeter generators (JMeter 5.6.2), target delays {}-{} ms ({:.0} % {}-{} ms), {} s measured {} s after start ==",
        args.tps,
        args.generators,
        args.delay_min_ms,
        args.delay_max_ms,
        args.slow_share * 100.0,
        SLOW_MS.0,
        SLOW_MS.1,
        args.measure,
        args.warmup
    );
    println!(
        "run call -> first request at the target: {} s; stock JMeter spawn -> first request: {} s{}",
        secs(o.start_to_first_request_ms),
        secs(p.map(|p| p.boot_ms)),
        p.map(|p| format!(" ({} threads, sized for one generator)", p.threads))
            .unwrap_or_default()
    );
    let gens = args.generators as usize;
    for (i, c) in o.changes.iter().enumerate() {
        println!(
            "rate change {}{}: {} -> {} TPS: JMeter acknowledged after {} s, at the new rate after {} s (a step at the ack: {} s, the 1 s window's lag; {} threads' timer slots at the old rate: up to {:.2} s more), then within {} of it for 3 s",
            i + 1,
            if c.deep { " (deep cut)" } else { "" },
            c.from,
            c.to,
            secs(c.ack_ms),
            secs(c.effect_ms),
            secs(c.ack_ms.map(|a| a + c.window_lag_ms() as i64)),
            o.threads,
            c.slots_ms(o.threads, gens) / 1000.0,
            c.after.map_or("-".into(), |d| pct(d * 100.0)),
        );
    }
    let t = &o.attach;
    println!(
        "hot-attach (the POST took {} s): StartTask at the agent {} s, JVM spawned {} s (the agent's \"JMeter started\"), generator status running {} s, first request at the target {} s, its first second in /series {} s, total back within 10 % {} s (all after POST returned)",
        secs(Some(t.post_ms)),
        secs(t.start_task_ms),
        secs(t.jvm_spawned_ms),
        secs(t.running_ms),
        secs(t.first_request_ms),
        secs(t.in_series_ms),
        secs(t.back_ms)
    );
    println!();
    println!("| figure | ours | stock JMeter (1 JVM) | ours/stock | goal |");
    println!("| --- | ---: | ---: | ---: | --- |");
    let peer_acc = p.map(|p| &p.accuracy);
    let row = |name: &str, ours: f64, stock: Option<f64>, goal: &str| {
        println!(
            "| {name} | {} | {} | {} | {goal} |",
            pct(ours),
            stock.map_or("-".into(), pct),
            stock.map_or("-".into(), |s| ratio(ours, s))
        );
    };
    row(
        "rate, mean abs error per 1 s bucket",
        a.mean_abs_pct,
        peer_acc.map(|p| p.mean_abs_pct),
        "",
    );
    row(
        "rate, p95 abs error per 1 s bucket",
        a.p95_abs_pct,
        peer_acc.map(|p| p.p95_abs_pct),
        "±5 % per 1 s bucket",
    );
    println!(
        "| rate, worst second | {:+.1} % ({}/s) | {} | | |",
        a.worst_pct,
        a.worst_count,
        peer_acc.map_or("-".into(), |p| format!(
            "{:+.1} % ({}/s)",
            p.worst_pct, p.worst_count
        ))
    );
    println!(
        "| rate, seconds within ±5 % | {:.0} % of {} | {} | | ±5 %: {} |",
        a.within5 * 100.0,
        a.seconds,
        peer_acc.map_or("-".into(), |p| format!(
            "{:.0} % of {}",
            p.within5 * 100.0,
            p.seconds
        )),
        if a.within5 >= 1.0 { "met" } else { "not met" }
    );
    println!(
        "| rate, mean over the window | {:.2}/s | {} | | |",
        a.mean_rate,
        peer_acc.map_or("-".into(), |p| format!("{:.2}/s", p.mean_rate))
    );
    let regular: Vec<&Change> = o.changes.iter().filter(|c| !c.deep).collect();
    let eff: Vec<f64> = regular
        .iter()
        .filter_map(|c| c.effect_ms)
        .map(|m| m as f64 / 1000.0)
        .collect();
    let missed = regular.len() - eff.len();
    let max = eff.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "| TPS change -> rolling 1 s at the target within 10 %, median / max of {} | {:.2} / {:.2} s{} | | | ≤ 2 s: {} |",
        regular.len(),
        median(&eff),
        max,
        if missed > 0 {
            format!(" ({missed} not within 10 s)")
        } else {
            String::new()
        },
        if missed == 0 && max <= 2.0 {
            "met"
        } else {
            "not met"
        }
    );
    for c in o.changes.iter().filter(|c| c.deep) {
        println!(
            "| TPS change, deep cut and back: {} -> {} | {} s | | | ≤ 2 s: {} |",
            c.from,
            c.to,
            secs(c.effect_ms),
            match c.effect_ms {
                Some(ms) if ms <= 2000 => "met",
                _ => "not met",
            }
        );
    }
    let acks: Vec<f64> = o
        .changes
        .iter()
        .filter_map(|c| c.ack_ms)
        .map(|m| m as f64 / 1000.0)
        .collect();
    println!(
        "| TPS change -> JMeter acknowledged (agent log), median / max | {:.2} / {:.2} s | | | |",
        median(&acks),
        acks.iter().copied().fold(f64::NAN, f64::max)
    );
    println!(
        "| hot-attach -> first request of the new generator | {} s | | | ≤ 10 s: {} |",
        secs(t.first_request_ms),
        match t.first_request_ms {
            Some(ms) if ms <= 10_000 => "met",
            _ => "not met",
        }
    );
    if let Some(d) = t.dip {
        println!(
            "| hot-attach: lowest rolling 1 s total while the new generator boots | {:.0} % of the target | | | |",
            d * 100.0
        );
    }
    let pc = &o.percentiles;
    for (name, merged, exact) in &pc.values {
        let err = if *exact > 0 {
            (*merged as f64 - *exact as f64).abs() / *exact as f64 * 100.0
        } else {
            0.0
        };
        let goal = match (*name, err <= 0.1) {
            ("max", _) => "",
            (_, true) => "≤ 0.1 %: met",
            (_, false) => "≤ 0.1 %: not met",
        };
        println!(
            "| merged {name} vs exact ({} JTL rows, {} samples merged) | {merged} ms vs {exact} ms: {err:.3} % | | | {goal} |",
            pc.rows, pc.samples,
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.changes == 0 || args.measure == 0 || args.generators == 0 {
        bail!("--changes, --measure and --generators must be at least 1");
    }
    let target = Target::start(args.delay_min_ms, args.delay_max_ms, args.slow_share).await?;
    let started = Instant::now();
    let lab = LoadLab::start(args.generators as usize + 1).await;
    eprintln!(
        "lab up with {} generators after {:.1} s",
        lab.generators.len(),
        started.elapsed().as_secs_f64()
    );
    let o = ours(&args, &lab, &target).await?;
    let p = if args.no_peer {
        None
    } else {
        Some(peer(&args, &lab, &target, o.plan).await?)
    };
    report(&args, &o, p.as_ref());
    Ok(())
}
