//! The controller's embedded metric store against a real InfluxDB 1.x, on
//! the same generated host data, in one run.
//!
//! Simulated hosts produce `protocol::metrics::HostSample`s the way
//! agent-monitor does (CPU percentages from whole jiffies as f32, memory in
//! kB-granular bytes, bursty disk and network rates divided by a jittery
//! elapsed time, integer TCP counts, load averages with two decimals that
//! change every 5 s, filesystems every 5 min, a few fields absent), turned
//! into fields by the controller's own `fields::flatten`. Timestamps end
//! "now", since the store refuses samples older than raw retention.
//!
//! Measures, for both backends:
//! - ingest: the embedded store fed directly on this thread (append only,
//!   and append plus the controller's once-a-second `flush` per simulated
//!   second); InfluxDB fed through the controller's `InfluxStore` client
//!   and through raw line protocol POSTs in parallel, wall time until all
//!   are written, plus influxd's own CPU time;
//! - bytes per value on disk after a simulated day;
//! - query time (median of several runs) for 24 h of one host and a group
//!   mean over many hosts for 1 h and 24 h.
//!
//! Run it through `bench/store.sh`, which starts influxd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use controller::metrics::embedded::{EmbeddedStore, Retention, now_ms};
use controller::metrics::fields::flatten;
use controller::metrics::influx::{InfluxSettings, InfluxStore, Row};
use controller::metrics::store::MetricStore;
use protocol::metrics::{
    AppStats, CpuStats, DiskStats, FsStats, HostSample, LoadAvg, MemStats, NetStats, PortStats,
    TcpStats,
};

#[derive(Debug, Parser)]
struct Args {
    /// InfluxDB 1.x base URL.
    #[arg(long, env = "INFLUX_URL")]
    influx_url: String,
    /// influxd's `[data] dir` (per-database subdirectories are measured).
    #[arg(long)]
    influx_data_dir: PathBuf,
    /// influxd's `[data] wal-dir`.
    #[arg(long)]
    influx_wal_dir: PathBuf,
    /// influxd's pid, for its CPU time.
    #[arg(long)]
    influxd_pid: Option<u32>,
    /// Where the embedded stores' SQLite files go.
    #[arg(long)]
    work_dir: PathBuf,
    /// Hosts of the ingest test.
    #[arg(long, env = "INGEST_HOSTS", default_value_t = 1000)]
    ingest_hosts: usize,
    /// Simulated minutes of the ingest test (1 s steps).
    #[arg(long, env = "INGEST_MINUTES", default_value_t = 10)]
    ingest_minutes: u64,
    /// Hosts of the "day" data (bytes per value, queries).
    #[arg(long, env = "DAY_HOSTS", default_value_t = 100)]
    day_hosts: usize,
    /// Simulated hours of the "day" data (1 s steps).
    #[arg(long, env = "DAY_HOURS", default_value_t = 24)]
    day_hours: u64,
    /// Hosts the group means average over (at most DAY_HOSTS).
    #[arg(long, env = "GROUP_HOSTS", default_value_t = 100)]
    group_hosts: usize,
    /// Embedded flush every this many simulated seconds while loading the
    /// day data (the controller flushes every second; that only costs time
    /// here, it changes no stored byte).
    #[arg(long, env = "DAY_FLUSH_SECS", default_value_t = 60)]
    day_flush_secs: u64,
    /// Timed runs per query (after one warm-up); the median is shown.
    #[arg(long, env = "RUNS", default_value_t = 7)]
    runs: usize,
    /// Rows per write request of the InfluxStore client (its default).
    #[arg(long, env = "INFLUX_BATCH", default_value_t = 5000)]
    influx_batch: usize,
    /// Lines per raw line-protocol POST.
    #[arg(long, env = "RAW_BATCH", default_value_t = 10_000)]
    raw_batch: usize,
    /// Raw line-protocol POSTs in flight at once.
    #[arg(long, env = "RAW_PARALLEL", default_value_t = 2)]
    raw_parallel: usize,
    /// Skip the InfluxStore-client ingest (raw line protocol only).
    #[arg(long, env = "SKIP_CLIENT_INGEST")]
    skip_client_ingest: bool,
    /// Longest wait for InfluxDB to snapshot its WAL and fully compact.
    #[arg(long, env = "COMPACT_TIMEOUT", default_value_t = 300)]
    compact_timeout: u64,
}

// ---------------------------------------------------------------------------
// Simulated hosts.

const DAY_MS: f64 = 86_400_000.0;

/// One simulated host: slowly wandering state, deterministic per index.
struct Host {
    id: String,
    rng: fastrand::Rng,
    phase_ms: i64,
    cores: u32,
    /// Mean busy fraction, its daily swing and the current burst.
    base_busy: f64,
    swing: f64,
    burst_left: u32,
    burst_busy: f64,
    steal: bool,
    mem_total_kb: u64,
    avail_kb: u64,
    cached_kb: u64,
    swap_total_kb: u64,
    swap_free_kb: u64,
    load: [f64; 3],
    disks: Vec<Disk>,
    nic_speed: Option<u32>,
    net_base: f64,
    net_burst_left: u32,
    tcp_est: u32,
    filesystems: Vec<(String, u64, u64)>,
    app_port: Option<u16>,
    app_est: u32,
    app_tw: u32,
    tick: u64,
}

struct Disk {
    name: String,
    burst_left: u32,
    burst_bytes: u64,
}

impl Host {
    fn new(index: usize) -> Host {
        let mut rng = fastrand::Rng::with_seed(0x5eed_0000 + index as u64);
        let cores = [2, 4, 4, 8, 8, 16, 32][rng.usize(..7)];
        let mem_gib = [4u64, 8, 16, 16, 32, 64][rng.usize(..6)];
        // MemTotal is a little under the installed size.
        let mem_total_kb = mem_gib * 1024 * 1024 - rng.u64(90_000..260_000);
        let ndisks = if rng.u8(..4) == 0 { 2 } else { 1 };
        let disks = ["vda", "vdb"][..ndisks]
            .iter()
            .map(|n| Disk {
                name: n.to_string(),
                burst_left: 0,
                burst_bytes: 0,
            })
            .collect();
        let root_total = [20u64, 40, 80, 200][rng.usize(..4)] << 30;
        let mut filesystems = vec![(
            "/".to_string(),
            root_total,
            root_total / 100 * rng.u64(15..70),
        )];
        if ndisks == 2 {
            let t = 500u64 << 30;
            filesystems.push(("/var/lib/data".into(), t, t / 100 * rng.u64(5..90)));
        }
        let swap = rng.u8(..3) == 0;
        Host {
            id: format!("bench-{index:05}-{:08x}", rng.u32(..)),
            phase_ms: rng.i64(0..1000),
            cores,
            base_busy: 0.02 + rng.f64() * 0.4,
            swing: rng.f64() * 0.25,
            burst_left: 0,
            burst_busy: 0.0,
            steal: rng.u8(..5) == 0,
            mem_total_kb,
            avail_kb: mem_total_kb / 100 * rng.u64(30..90),
            cached_kb: mem_total_kb / 100 * rng.u64(10..40),
            swap_total_kb: if swap { 2 * 1024 * 1024 } else { 0 },
            swap_free_kb: if swap {
                2 * 1024 * 1024 - rng.u64(0..200_000)
            } else {
                0
            },
            load: [0.0; 3],
            disks,
            nic_speed: if rng.u8(..3) == 0 { Some(1000) } else { None },
            net_base: 2_000.0 + rng.f64() * 200_000.0,
            net_burst_left: 0,
            tcp_est: rng.u32(5..400),
            filesystems,
            app_port: if rng.u8(..4) == 0 { Some(8080) } else { None },
            app_est: rng.u32(1..200),
            app_tw: rng.u32(0..50),
            tick: 0,
            rng,
        }
    }

    /// Timestamp of step `i` (1 s steps from `start`, a few ms of jitter).
    fn ts(&mut self, start: i64, i: u64) -> i64 {
        start + self.phase_ms + i as i64 * 1000 + self.rng.i64(0..4)
    }

    fn sample(&mut self, ts_ms: i64) -> HostSample {
        let rng = &mut self.rng;
        self.tick += 1;
        // The agent divides counter deltas by the elapsed Instant time.
        let secs = 1.0 + (rng.f64() - 0.3) * 0.004;
        let day = (ts_ms as f64 / DAY_MS).fract();
        let diurnal = (std::f64::consts::TAU * (day - 0.35)).sin();

        // CPU: whole jiffies (USER_HZ 100 per core), percentages as f32.
        if self.burst_left > 0 {
            self.burst_left -= 1;
        } else if rng.u16(..600) == 0 {
            self.burst_left = rng.u32(5..120);
            self.burst_busy = 0.5 + rng.f64() * 0.5;
        }
        let target = if self.burst_left > 0 {
            self.burst_busy
        } else {
            self.base_busy + self.swing * diurnal.max(-0.8)
        };
        let busy_frac = (target + (rng.f64() - 0.5) * 0.08).clamp(0.0, 1.0);
        let total = (100.0 * f64::from(self.cores) * secs).round() as u64 + rng.u64(0..2);
        let busy = (total as f64 * busy_frac).round() as u64;
        let iowait = (rng.u64(0..3) * total / 200).min(total - busy);
        let steal = if self.steal {
            rng.u64(0..3).min(busy)
        } else {
            0
        };
        let system = ((busy - steal) as f64 * (0.15 + rng.f64() * 0.2)).round() as u64;
        let user = busy - steal - system;
        // The agent rounds percentages to two decimals and rates to whole units.
        let pct = |part: u64| {
            (((part as f64 / total as f64) * 100.0).clamp(0.0, 100.0) * 100.0).round() as f32
                / 100.0
        };
        let cpu = CpuStats {
            busy_pct: pct(busy),
            user_pct: pct(user),
            system_pct: pct(system),
            iowait_pct: pct(iowait),
            steal_pct: pct(steal),
            cores: self.cores,
        };

        // Memory: kB from /proc/meminfo, as bytes; wanders and reverts.
        let target_avail = self.mem_total_kb as f64 * (0.75 - 0.5 * busy_frac);
        let step = rng.i64(-800..=800) + ((target_avail - self.avail_kb as f64) * 0.002) as i64;
        self.avail_kb = (self.avail_kb as i64 + step * 4)
            .clamp(100_000, self.mem_total_kb as i64 - 50_000) as u64;
        if rng.u8(..10) == 0 {
            self.cached_kb = (self.cached_kb + rng.u64(0..64) * 4).min(self.avail_kb);
        }
        let free_kb = self.avail_kb.saturating_sub(self.cached_kb * 9 / 10);
        if self.swap_total_kb > 0 && rng.u16(..3000) == 0 {
            self.swap_free_kb = self.swap_free_kb.saturating_sub(rng.u64(0..4000) * 4);
        }
        let mem = MemStats {
            total_bytes: self.mem_total_kb * 1024,
            free_bytes: free_kb * 1024,
            available_bytes: self.avail_kb * 1024,
            cached_bytes: self.cached_kb * 1024,
            swap_total_bytes: self.swap_total_kb * 1024,
            swap_free_bytes: self.swap_free_kb * 1024,
        };

        // Load: the kernel recomputes every 5 s; /proc shows 2 decimals.
        if self.tick % 5 == 1 {
            let running = busy_frac * f64::from(self.cores) + rng.f64() * 0.5;
            for (l, period) in self.load.iter_mut().zip([60.0, 300.0, 900.0]) {
                let e = f64::exp(-5.0 / period);
                *l = *l * e + running * (1.0 - e);
            }
        }
        let two = |x: f64| ((x * 100.0).round() / 100.0) as f32;
        let load = LoadAvg {
            one: two(self.load[0]),
            five: two(self.load[1]),
            fifteen: two(self.load[2]),
        };

        // Disks: journal commits every 5 s, rare reads, occasional bursts.
        let tick = self.tick;
        let disks = self
            .disks
            .iter_mut()
            .map(|d| {
                if d.burst_left > 0 {
                    d.burst_left -= 1;
                } else if rng.u16(..900) == 0 {
                    d.burst_left = rng.u32(3..90);
                    d.burst_bytes = rng.u64(2_000..50_000) * 4096;
                }
                let mut write = if tick.is_multiple_of(5) {
                    rng.u64(1..40) * 4096
                } else {
                    0
                };
                let mut read = if rng.u8(..20) == 0 {
                    rng.u64(1..16) * 4096
                } else {
                    0
                };
                let mut io_ms = (write + read) / 400_000 + u64::from(write + read > 0);
                if d.burst_left > 0 {
                    let b = d.burst_bytes / 512 * rng.u64(80..120) / 100 * 512;
                    if rng.bool() {
                        write += b;
                    } else {
                        read += b;
                    }
                    io_ms = rng.u64(300..1000);
                }
                DiskStats {
                    name: d.name.clone(),
                    read_bps: (read as f64 / secs).round(),
                    write_bps: (write as f64 / secs).round(),
                    util_pct: ((io_ms as f64 / (secs * 1000.0)) * 100.0).clamp(0.0, 100.0) as f32,
                }
            })
            .collect();

        // Network: a wandering base rate with bursts; bytes / elapsed.
        if self.net_burst_left > 0 {
            self.net_burst_left -= 1;
        } else if rng.u16(..1200) == 0 {
            self.net_burst_left = rng.u32(2..60);
        }
        let level = if self.net_burst_left > 0 { 300.0 } else { 1.0 };
        let rx_bytes = (self.net_base * level * (0.5 + rng.f64())) as u64;
        let tx_bytes = (self.net_base * level * 0.3 * (0.5 + rng.f64())) as u64;
        let (rx_bps, tx_bps) = (
            (rx_bytes as f64 / secs).round(),
            (tx_bytes as f64 / secs).round(),
        );
        let util_pct = self.nic_speed.map(|s| {
            let capacity = f64::from(s) * 1_000_000.0 / 8.0;
            (((rx_bps.max(tx_bps) / capacity) * 100.0).clamp(0.0, 100.0) * 100.0).round() as f32
                / 100.0
        });
        let nets = vec![NetStats {
            name: "eth0".into(),
            rx_bps,
            tx_bps,
            speed_mbps: self.nic_speed,
            util_pct,
        }];

        // TCP: integer connection count, per-second segment rates as f32.
        self.tcp_est = (self.tcp_est as i64 + rng.i64(-2..=2)).max(1) as u32;
        let out_segs = (rx_bytes + tx_bytes) / 1200 + rng.u64(0..20);
        let retrans = if rng.u8(..50) == 0 { rng.u64(1..4) } else { 0 };
        // A collector failing now and then leaves its part out.
        let tcp = (rng.u16(..2000) != 0).then(|| TcpStats {
            established: self.tcp_est,
            retrans_segs_per_s: (retrans as f64 / secs) as f32,
            out_segs_per_s: (out_segs as f64 / secs) as f32,
        });

        // Filesystems: only every 5 minutes, like the agent.
        let filesystems = if self.tick % 300 == 1 {
            self.filesystems
                .iter_mut()
                .map(|(mount, total, used)| {
                    *used = (*used + rng.u64(0..5000) * 4096).min(*total);
                    let reserved = *total / 20;
                    FsStats {
                        mount: mount.clone(),
                        fstype: "ext4".into(),
                        total_bytes: *total,
                        used_bytes: *used,
                        avail_bytes: total.saturating_sub(*used + reserved),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };

        let app = self.app_port.map(|port| {
            self.app_est = (self.app_est as i64 + rng.i64(-3..=3)).max(0) as u32;
            self.app_tw = (self.app_tw as i64 + rng.i64(-2..=2)).max(0) as u32;
            let close_wait = u32::from(rng.u8(..100) == 0);
            AppStats {
                identifier: "app".into(),
                pid: Some(4242),
                ports: vec![PortStats {
                    port,
                    total: self.app_est + self.app_tw + close_wait + 1,
                    established: self.app_est,
                    time_wait: self.app_tw,
                    close_wait,
                }],
                jvm: None,
                jvm_error: None,
            }
        });

        HostSample {
            ts_ms: ts_ms as u64,
            cpu: Some(cpu),
            mem: Some(mem),
            load: Some(load),
            disks,
            filesystems,
            nets,
            tcp,
            app,
            errors: Vec::new(),
        }
    }
}

/// The rows of step `i` of every host.
fn step_rows(hosts: &mut [Host], start: i64, i: u64) -> Vec<Row> {
    hosts
        .iter_mut()
        .map(|h| {
            let ts = h.ts(start, i);
            let s = h.sample(ts);
            Row {
                host: h.id.clone(),
                ts_ms: ts,
                fields: flatten(&s),
            }
        })
        .collect()
}

fn values_of(rows: &[Row]) -> u64 {
    rows.iter().map(|r| r.fields.len() as u64).sum()
}

/// Span of the embedded store's raw blocks.
const RAW_BLOCK_MS: i64 = 600_000;

/// Start of data of `secs` seconds that ends a few seconds before now.
fn start_for(secs: u64) -> i64 {
    now_ms() - secs as i64 * 1000 - 5_000
}

// ---------------------------------------------------------------------------
// InfluxDB helpers: raw line protocol, queries, sizes, CPU.

/// Line protocol as the controller's client writes it (measurement `host`,
/// tag `host`, one float field per metric; names here need no escaping).
fn encode_line(out: &mut String, r: &Row) {
    use std::fmt::Write as _;
    let _ = write!(out, "host,host={}", r.host);
    for (i, (k, v)) in r.fields.iter().enumerate() {
        let _ = write!(out, "{}{k}={v}", if i == 0 { ' ' } else { ',' });
    }
    let _ = writeln!(out, " {}", r.ts_ms);
}

/// Raw line-protocol writer: POSTs of `batch` lines, `parallel` in flight.
struct RawWriter {
    http: reqwest::Client,
    url: String,
    body: String,
    lines: usize,
    batch: usize,
    parallel: usize,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
}

impl RawWriter {
    fn new(base: &str, db: &str, batch: usize, parallel: usize) -> RawWriter {
        RawWriter {
            // main installed the crypto provider first thing.
            #[allow(clippy::disallowed_methods)]
            http: reqwest::Client::new(),
            url: format!("{base}/write?db={db}&precision=ms"),
            body: String::new(),
            lines: 0,
            batch,
            parallel: parallel.max(1),
            tasks: tokio::task::JoinSet::new(),
        }
    }

    async fn push(&mut self, rows: &[Row]) -> anyhow::Result<()> {
        for r in rows {
            encode_line(&mut self.body, r);
            self.lines += 1;
            if self.lines >= self.batch {
                self.send().await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self) -> anyhow::Result<()> {
        if self.lines == 0 {
            return Ok(());
        }
        while self.tasks.len() >= self.parallel {
            self.tasks.join_next().await.expect("tasks")??;
        }
        let body = std::mem::take(&mut self.body);
        self.lines = 0;
        let req = self.http.post(&self.url).body(body);
        self.tasks.spawn(async move {
            let resp = req.send().await?;
            let status = resp.status();
            if !status.is_success() {
                bail!("InfluxDB write: {status}: {}", resp.text().await?);
            }
            Ok(())
        });
        Ok(())
    }

    async fn finish(mut self) -> anyhow::Result<()> {
        self.send().await?;
        while let Some(r) = self.tasks.join_next().await {
            r??;
        }
        Ok(())
    }
}

async fn influx_statement(base: &str, q: &str) -> anyhow::Result<()> {
    let mut url = reqwest::Url::parse(&format!("{base}/query"))?;
    url.query_pairs_mut().append_pair("q", q);
    #[allow(clippy::disallowed_methods)] // main installed the provider
    let resp = reqwest::Client::new().post(url).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() || text.contains("\"error\"") {
        bail!("InfluxDB {q:?}: {status} {text}");
    }
    Ok(())
}

/// Bytes of the files under `dir`: apparent (`du -sb`) and allocated
/// (`du -s`; InfluxDB preallocates sparse series-file segments).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Usage {
    apparent: u64,
    allocated: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            apparent: self.apparent + o.apparent,
            allocated: self.allocated + o.allocated,
        }
    }
}

fn file_usage(p: &Path) -> Usage {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map_or(Usage::default(), |m| Usage {
        apparent: m.len(),
        allocated: m.blocks() * 512,
    })
}

/// Usage of the files under `dir`; TSM files (and compaction temporaries)
/// are listed in `tsm`.
fn dir_usage(dir: &Path, tsm: &mut Vec<(PathBuf, u64)>) -> Usage {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Usage::default();
    };
    let mut n = Usage::default();
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        let p = e.path();
        if md.is_dir() {
            n = n + dir_usage(&p, tsm);
        } else {
            n = n + file_usage(&p);
            if p.extension().is_some_and(|x| x == "tsm" || x == "tmp") {
                tsm.push((p, md.len()));
            }
        }
    }
    n
}

struct InfluxSize {
    data: Usage,
    wal: Usage,
    tsm_files: usize,
    tsm_bytes: u64,
    compacted: bool,
    waited: Duration,
}

/// Waits until the WAL of `db` is snapshotted into TSM and every shard is
/// fully compacted (one TSM generation, nothing changing for 15 s), or the
/// timeout; then its size.
fn wait_compacted(args: &Args, db: &str) -> InfluxSize {
    let started = Instant::now();
    let mut last: Vec<(PathBuf, u64)> = Vec::new();
    let mut stable_since = Instant::now();
    loop {
        let mut tsm = Vec::new();
        let data = dir_usage(&args.influx_data_dir.join(db), &mut tsm);
        let wal = dir_usage(&args.influx_wal_dir.join(db), &mut Vec::new());
        tsm.sort();
        if tsm != last {
            last = tsm.clone();
            stable_since = Instant::now();
        }
        // One generation per shard directory: TSM files are named
        // GGGGGGGGG-SSSSSSSSS.tsm; a full compaction leaves one generation.
        let mut generations: BTreeMap<PathBuf, std::collections::BTreeSet<String>> =
            BTreeMap::new();
        let mut temp = false;
        for (p, _) in &tsm {
            temp |= p.extension().is_some_and(|x| x == "tmp");
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let gen_ = name.split('-').next().unwrap_or_default().to_string();
            generations
                .entry(p.parent().unwrap_or(Path::new("")).to_path_buf())
                .or_default()
                .insert(gen_);
        }
        let one_gen = !tsm.is_empty() && !temp && generations.values().all(|g| g.len() == 1);
        let compacted =
            one_gen && wal.apparent == 0 && stable_since.elapsed() >= Duration::from_secs(15);
        let waited = started.elapsed();
        if compacted || waited >= Duration::from_secs(args.compact_timeout) {
            return InfluxSize {
                data,
                wal,
                tsm_files: tsm.len(),
                tsm_bytes: tsm.iter().map(|t| t.1).sum(),
                compacted,
                waited,
            };
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// utime + stime of `pid`, in seconds.
fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The time, in ms, of `f` over `runs` runs after one warm-up: median.
fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    let n = times.len();
    let mid = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2
    };
    mid.as_secs_f64() * 1000.0
}

/// Where the embedded store's raw bytes go: each column of the sealed raw
/// blocks of up to 5 hosts encoded alone (minus the block with no column),
/// summed by field name; (name, bytes, values), costliest first.
fn field_costs(c: &rusqlite::Connection) -> anyhow::Result<Vec<(String, u64, u64)>> {
    use controller::metrics::codec::{Block, decode, encode};
    let mut st = c.prepare(
        "SELECT data FROM metric_blocks WHERE res = 0 AND sealed = 1 AND host IN
           (SELECT DISTINCT host FROM metric_blocks ORDER BY host LIMIT 5)",
    )?;
    let mut by: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let b = decode(&r.get::<_, Vec<u8>>(0)?)?;
        let empty = Block {
            ts: b.ts.clone(),
            columns: Vec::new(),
        };
        let base = encode(&empty)?.len() as u64;
        for col in &b.columns {
            let one = Block {
                ts: b.ts.clone(),
                columns: vec![col.clone()],
            };
            let n = col.values.iter().filter(|v| !v.is_nan()).count() as u64;
            let bytes = (encode(&one)?.len() as u64).saturating_sub(base);
            let e = by.entry(col.name.clone()).or_default();
            e.0 += bytes;
            e.1 += n;
        }
    }
    let mut v: Vec<(String, u64, u64)> = by
        .into_iter()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(k, (b, n))| (k, b, n))
        .collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    Ok(v)
}

// ---------------------------------------------------------------------------
// Output.

struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    fn row(&mut self, what: &str, emb: String, inf: String, cmp: String, goal: &str) {
        self.rows.push([what.into(), emb, inf, cmp, goal.into()]);
    }

    fn print(&self) {
        let head = [
            "measure",
            "embedded",
            "InfluxDB 1.6",
            "embedded vs InfluxDB",
            "goal (embedded)",
        ];
        let mut w = head.map(str::len);
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = w[i] - c.chars().count();
                if i == 0 || i == 4 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
                s.push_str("  ");
            }
            println!("{}", s.trim_end());
        };
        line(head);
        line(w.map(|n| "-".repeat(n)).each_ref().map(String::as_str));
        for r in &self.rows {
            line(r.each_ref().map(String::as_str));
        }
    }
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else {
        format!("{:.0} k/s", v / 1e3)
    }
}

/// "3.1x faster" / "2.0x slower" for a higher-is-better pair.
fn higher_better(emb: f64, inf: f64, more: &str, less: &str) -> String {
    if emb >= inf {
        format!("{:.1}x {more}", emb / inf)
    } else {
        format!("{:.1}x {less}", inf / emb)
    }
}

// ---------------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    // reqwest (InfluxDB writes here) takes the process's rustls provider.
    certs::tls::install_default_provider();
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    std::fs::create_dir_all(&args.work_dir)?;
    let mut table = Table { rows: Vec::new() };
    let mut notes: Vec<String> = Vec::new();
    let influxd_pid = args.influxd_pid;

    // ---- Ingest -----------------------------------------------------------
    // From the start of a 10-minute raw block, plus one step: open blocks
    // grow from empty (the steady-state average size for whole blocks) and
    // every host seals and rolls up one block per 10 minutes.
    let secs = args.ingest_minutes * 60 + 1;
    eprintln!(
        "[ingest] generating {} hosts x {} s ...",
        args.ingest_hosts, secs
    );
    let start = start_for(secs).div_euclid(RAW_BLOCK_MS) * RAW_BLOCK_MS;
    let mut hosts: Vec<Host> = (0..args.ingest_hosts).map(Host::new).collect();
    let steps: Vec<Vec<Row>> = (0..secs).map(|i| step_rows(&mut hosts, start, i)).collect();
    drop(hosts);
    let values: u64 = steps.iter().map(|s| values_of(s)).sum();
    let samples = args.ingest_hosts as u64 * secs;
    eprintln!(
        "[ingest] {values} values ({:.1} fields per sample); embedded store ...",
        values as f64 / samples as f64
    );

    let store = EmbeddedStore::open(&args.work_dir.join("ingest.db"), Retention::default())?;
    let (mut t_append, mut t_flush) = (Duration::ZERO, Duration::ZERO);
    // The controller flushes every `metrics.flush_secs` (default 10).
    for (i, rows) in steps.iter().enumerate() {
        let t = Instant::now();
        for r in rows {
            store.append(&r.host, r.ts_ms, &r.fields)?;
        }
        t_append += t.elapsed();
        if i % 10 == 9 {
            let t = Instant::now();
            store.flush()?;
            t_flush += t.elapsed();
        }
    }
    drop(store);
    let emb_append = values as f64 / t_append.as_secs_f64();
    let emb_total = values as f64 / (t_append + t_flush).as_secs_f64();

    // Raw line protocol, the InfluxDB best case.
    let mut raw_rate = None;
    if args.raw_parallel > 0 {
        eprintln!(
            "[ingest] InfluxDB, raw line protocol ({} lines per POST, {} in flight) ...",
            args.raw_batch, args.raw_parallel
        );
        let (wall, cpu) = rt.block_on(async {
            influx_statement(&args.influx_url, "CREATE DATABASE ingest_raw").await?;
            let cpu0 = cpu_secs(influxd_pid);
            let t = Instant::now();
            let mut w = RawWriter::new(
                &args.influx_url,
                "ingest_raw",
                args.raw_batch,
                args.raw_parallel,
            );
            for rows in &steps {
                w.push(rows).await?;
            }
            w.finish().await?;
            let wall = t.elapsed();
            let cpu = cpu_secs(influxd_pid).zip(cpu0).map(|(a, b)| a - b);
            influx_statement(&args.influx_url, "DROP DATABASE ingest_raw").await?;
            anyhow::Ok((wall, cpu))
        })?;
        raw_rate = Some((values as f64 / wall.as_secs_f64(), cpu));
    }

    // The controller's own client (one request in flight, batches of 5000).
    let mut client_rate = None;
    if !args.skip_client_ingest {
        eprintln!(
            "[ingest] InfluxDB through the controller's InfluxStore client (batch {}) ...",
            args.influx_batch
        );
        let (wall, cpu, lost) = rt.block_on(async {
            let mut s = InfluxSettings::new(args.influx_url.clone(), "ingest_client");
            s.batch_rows = args.influx_batch;
            s.queue_rows = (args.influx_batch * 20).max(100_000);
            let client = InfluxStore::connect(s.clone()).await?;
            let cpu0 = cpu_secs(influxd_pid);
            let t = Instant::now();
            // As the controller does: MetricStore::append per sample.
            let ms = MetricStore::Influx(client.clone());
            for rows in steps {
                // Backpressure: the queue drops its oldest rows when full.
                while client.stats().queued + rows.len() > s.queue_rows {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                for r in rows {
                    ms.append(&r.host, r.ts_ms, &r.fields)?;
                }
            }
            if !client.flush(Duration::from_secs(1800)).await {
                bail!("InfluxStore client did not drain in 30 min");
            }
            let wall = t.elapsed();
            let cpu = cpu_secs(influxd_pid).zip(cpu0).map(|(a, b)| a - b);
            let lost = client.stats().lost;
            influx_statement(&args.influx_url, "DROP DATABASE ingest_client").await?;
            anyhow::Ok((wall, cpu, lost))
        })?;
        if lost > 0 {
            notes.push(format!("InfluxStore client lost {lost} rows"));
        }
        client_rate = Some((values as f64 / wall.as_secs_f64(), cpu));
    } else {
        drop(steps);
    }

    let goal_ingest = ">= 1 M values/s";
    let best_influx = [raw_rate, client_rate]
        .into_iter()
        .flatten()
        .map(|r| r.0)
        .fold(0.0, f64::max);
    let cmp = |emb: f64| {
        if best_influx > 0.0 {
            higher_better(emb, best_influx, "faster", "slower")
        } else {
            "-".into()
        }
    };
    let influx_best_s = if best_influx > 0.0 {
        rate(best_influx)
    } else {
        "-".into()
    };
    let ingest_label = format!(
        "ingest, {} hosts x {} min, values/s",
        args.ingest_hosts, args.ingest_minutes
    );
    table.row(
        &format!("{ingest_label}: append only"),
        rate(emb_append),
        influx_best_s.clone(),
        cmp(emb_append),
        goal_ingest,
    );
    table.row(
        &format!("{ingest_label}: append + flush every 10 s"),
        rate(emb_total),
        influx_best_s,
        cmp(emb_total),
        goal_ingest,
    );
    if let Some((r, cpu)) = raw_rate {
        table.row(
            &format!(
                "  InfluxDB raw line protocol ({}x{} lines in flight)",
                args.raw_parallel, args.raw_batch
            ),
            "".into(),
            rate(r),
            cpu.map_or("-".into(), |c| {
                format!("{} per influxd CPU-s", rate(values as f64 / c))
            }),
            "",
        );
    }
    if let Some((r, cpu)) = client_rate {
        table.row(
            &format!(
                "  InfluxDB via controller InfluxStore (batch {})",
                args.influx_batch
            ),
            "".into(),
            rate(r),
            cpu.map_or("-".into(), |c| {
                format!("{} per influxd CPU-s", rate(values as f64 / c))
            }),
            "",
        );
    }
    notes.push(format!(
        "ingest: {} s from a 10-min block boundary; embedded = one thread, {} values ({:.1} per sample); flush time {:.2} s of {:.2} s. InfluxDB = wall time until written, on its own cores (influxd may use both; the generator is idle then).",
        secs,
        values,
        values as f64 / samples as f64,
        t_flush.as_secs_f64(),
        (t_append + t_flush).as_secs_f64(),
    ));

    // ---- A day of data: bytes per value, then queries --------------------
    let day_secs = args.day_hours * 3600;
    eprintln!(
        "[day] {} hosts x {} h into both stores (embedded directly, InfluxDB raw line protocol) ...",
        args.day_hosts, args.day_hours
    );
    let day_start = start_for(day_secs);
    let db_path = args.work_dir.join("day.db");
    let store = EmbeddedStore::open(&db_path, Retention::default())?;
    let mut hosts: Vec<Host> = (0..args.day_hosts).map(Host::new).collect();
    let ids: Vec<String> = hosts.iter().map(|h| h.id.clone()).collect();
    let t_day = Instant::now();
    let (day_values, emb_day_time) = rt.block_on(async {
        influx_statement(&args.influx_url, "CREATE DATABASE day").await?;
        let mut w = RawWriter::new(&args.influx_url, "day", args.raw_batch, args.raw_parallel);
        let mut values = 0u64;
        let mut emb = Duration::ZERO;
        for i in 0..day_secs {
            let rows = step_rows(&mut hosts, day_start, i);
            values += values_of(&rows);
            let t = Instant::now();
            for r in &rows {
                store.append(&r.host, r.ts_ms, &r.fields)?;
            }
            if (i + 1) % args.day_flush_secs.max(1) == 0 {
                store.flush()?;
            }
            emb += t.elapsed();
            w.push(&rows).await?;
            if i % 3600 == 3599 {
                eprintln!(
                    "[day]   {} h loaded ({:.0} s)",
                    (i + 1) / 3600,
                    t_day.elapsed().as_secs_f64()
                );
            }
        }
        store.flush()?;
        w.finish().await?;
        anyhow::Ok((values, emb))
    })?;
    drop(hosts);
    eprintln!(
        "[day] {day_values} values loaded in {:.0} s (embedded part {:.0} s); waiting for InfluxDB to compact ...",
        t_day.elapsed().as_secs_f64(),
        emb_day_time.as_secs_f64()
    );

    // Embedded: blob bytes, and the SQLite file after a checkpoint.
    let blob_bytes = store.stored_bytes()?;
    let (raw_blob, file, free_pages, page_size, per_field) = {
        let c = rusqlite::Connection::open(&db_path)?;
        c.busy_timeout(Duration::from_secs(10))?;
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let raw: i64 = c.query_row(
            "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM metric_blocks WHERE res = 0",
            [],
            |r| r.get(0),
        )?;
        let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let ps: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let mut f = file_usage(&db_path);
        for ext in ["db-wal", "db-shm"] {
            f = f + file_usage(&db_path.with_extension(ext));
        }
        (raw as u64, f, free as u64, ps as u64, field_costs(&c)?)
    };
    let isz = wait_compacted(&args, "day");
    let influx_du = isz.data + isz.wal;
    let dv = day_values as f64;
    let goal_bytes = "<= 1.5 B/value (InfluxDB earlier: 2.94)";
    let day_label = format!(
        "disk, {} hosts x {} h ({:.1} M values)",
        args.day_hosts,
        args.day_hours,
        dv / 1e6
    );
    let per = |b: u64| format!("{:.3}", b as f64 / dv);
    let smaller = |e: u64, i: u64| higher_better(i as f64, e as f64, "smaller", "larger");
    table.row(
        &format!("{day_label}: B/value on disk (du)"),
        per(file.allocated),
        per(influx_du.allocated),
        smaller(file.allocated, influx_du.allocated),
        goal_bytes,
    );
    table.row(
        "  B/value of the data (block BLOBs incl. rollups | TSM files)",
        per(blob_bytes),
        per(isz.tsm_bytes),
        smaller(blob_bytes, isz.tsm_bytes),
        "",
    );
    table.row(
        "  B/value, embedded raw blocks only (no rollups) | TSM files",
        per(raw_blob),
        per(isz.tsm_bytes),
        smaller(raw_blob, isz.tsm_bytes),
        "",
    );
    table.row(
        "  total on disk (du)",
        format!("{:.1} MB", file.allocated as f64 / 1e6),
        format!("{:.1} MB", influx_du.allocated as f64 / 1e6),
        "".into(),
        "",
    );
    notes.push(format!(
        "disk: embedded = SQLite file after PRAGMA wal_checkpoint(TRUNCATE), {:.1} MB apparent ({} free pages = {:.1} MB inside; blocks flushed every {} simulated s while loading). InfluxDB = data/day + wal/day: du {:.1} MB, du -sb {:.1} MB (sparse preallocated _series segments), {} TSM files, WAL {} B, {} after {:.0} s (store.sh shortens cache-snapshot-write-cold-duration to 5 s and compact-full-write-cold-duration to 15 s).",
        file.apparent as f64 / 1e6,
        free_pages,
        (free_pages * page_size) as f64 / 1e6,
        args.day_flush_secs,
        influx_du.allocated as f64 / 1e6,
        influx_du.apparent as f64 / 1e6,
        isz.tsm_files,
        isz.wal.apparent,
        if isz.compacted {
            "fully compacted (one TSM generation per shard, nothing changing for 15 s)"
        } else {
            "NOT fully compacted (timeout)"
        },
        isz.waited.as_secs_f64()
    ));
    let total_field: u64 = per_field.iter().map(|f| f.1).sum();
    let top: Vec<String> = per_field
        .iter()
        .take(6)
        .map(|(name, bytes, n)| {
            format!(
                "{name} {:.2} B/value ({:.0}%)",
                *bytes as f64 / *n as f64,
                100.0 * *bytes as f64 / total_field.max(1) as f64
            )
        })
        .collect();
    notes.push(format!(
        "embedded raw bytes by field (each column encoded alone, sealed raw blocks of up to 5 hosts), costliest: {}",
        top.join(", ")
    ));

    // ---- Queries -----------------------------------------------------------
    let to = day_start + day_secs as i64 * 1000;
    let runs = args.runs.max(1);
    let one_host = ids[0].as_str();
    let fields = [
        "cpu.busy_pct",
        "mem.used_pct",
        "net.rx_bps",
        "disk.util_pct",
    ];
    let group: Vec<String> = ids.iter().take(args.group_hosts).cloned().collect();
    let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    let influx = rt.block_on(InfluxStore::connect(InfluxSettings::new(
        args.influx_url.clone(),
        "day",
    )))?;
    let store = std::sync::Arc::new(store);
    let backends = [
        MetricStore::Embedded(store.clone()),
        MetricStore::Influx(influx),
    ];
    let goal_query = "< 50 ms (one host, 24 h)";
    let span_h = args.day_hours.min(24) as i64;
    let mut cases: Vec<(String, i64, bool)> = vec![
        (
            format!(
                "query, 1 host x {} fields, {span_h} h, <= 2000 points",
                fields.len()
            ),
            span_h * 3_600_000,
            false,
        ),
        (
            format!("query, mean of {} hosts, 1 h, <= 2000 points", group.len()),
            3_600_000,
            true,
        ),
        (
            format!(
                "query, mean of {} hosts, {span_h} h, <= 2000 points",
                group.len()
            ),
            span_h * 3_600_000,
            true,
        ),
    ];
    if span_h <= 1 {
        cases.pop();
    }
    for (label, span, is_group) in cases {
        eprintln!("[query] {label} ...");
        let from = to - span;
        // Each backend as the controller queries it (MetricStore).
        let mut measured = Vec::new();
        for b in &backends {
            measured.push(rt.block_on(async {
                let mut times = Vec::new();
                let mut last = None;
                for run in 0..=runs {
                    let t = Instant::now();
                    let r = if is_group {
                        b.query_mean(&group, &["cpu.busy_pct".to_string()], from, to, 2000)
                            .await?
                    } else {
                        b.query(one_host, &fields, from, to, 2000).await?
                    };
                    let el = t.elapsed();
                    if run > 0 {
                        times.push(el);
                    }
                    last = Some(r);
                }
                let r = last.expect("one run");
                let points: usize = r.series.iter().map(|s| s.points.len()).sum();
                anyhow::Ok((times, r.step_ms, points))
            })?);
        }
        let (inf_times, inf_step, inf_points) = measured.pop().expect("influx");
        let (emb_times, emb_step, emb_points) = measured.pop().expect("embedded");
        let (e, i) = (median_ms(emb_times), median_ms(inf_times));
        table.row(
            &label,
            format!("{e:.1} ms"),
            format!("{i:.1} ms"),
            higher_better(1.0 / e, 1.0 / i, "faster", "slower"),
            if is_group { "" } else { goal_query },
        );
        notes.push(format!(
            "{label}: embedded step {} s, {emb_points} points; InfluxDB step {} s, {inf_points} points",
            emb_step as f64 / 1000.0,
            inf_step as f64 / 1000.0,
        ));
    }
    notes.push(format!(
        "queries: median of {runs} runs after one warm-up; both through the controller's MetricStore (embedded: in-process via spawn_blocking, it reads minute rollups; InfluxDB: InfluxStore client, HTTP + JSON, mean over raw points per step)."
    ));

    println!();
    println!("== store-bench: embedded metric store vs InfluxDB 1.6.7, same data, one run ==");
    table.print();
    println!();
    for n in &notes {
        println!("- {n}");
    }
    Ok(())
}
