//! A synthetic monitored host: the real agent link (`protocol::Link`,
//! enrolled with a join token, identity kept in memory) sending host facts
//! and metric batches the test chooses, so dashboards can be checked
//! against known numbers (`score = 0.5*cpu + 0.3*io + 0.2*net`).
//!
//! ```text
//! let mut h = SyntheticHost::enroll(&ctl, "web-1").await;
//! h.send(&(0..2000).map(|i| sample(t0 + i * 1000, 80.0, 10.0, 5.0, 50.0)).collect::<Vec<_>>()).await;
//! // stored: the controller acknowledged every batch
//! ```
//!
//! Batches go in order on one bulk stream per connection, numbered from
//! the controller's high-water mark, like agent-monitor's spool: batches not
//! yet acknowledged are kept and sent again after a reconnection (the
//! controller drops repeats). Dropping the host disconnects it.
//!
//! The controller acknowledges what it has flushed, every
//! `metrics.flush_secs` (10 s by default): a test that waits for its
//! samples to be stored sets it to 1.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use controller::Controller;
use protocol::metrics::{
    AppStats, CpuStats, DiskStats, FsStats, HostFacts, HostSample, LoadAvg, MemStats, NetStats,
    PortStats, TcpStats,
};
use protocol::{
    AgentMsg, Backoff, BulkStream, ControllerMsg, IdentityStore, Link, LinkHandle, LinkState, frame,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Samples per batch (one frame; a few hundred keeps frames small).
pub const BATCH: usize = 300;

/// Total memory of every synthetic host: 8 GiB.
pub const MEM_TOTAL_BYTES: u64 = 8 << 30;

/// How long [`SyntheticHost::send`] waits for the controller's ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// One synthetic host connected to a controller; disconnected on drop.
pub struct SyntheticHost {
    /// `ag-…`, as the controller knows it.
    pub agent_id: String,
    pub hostname: String,
    link: LinkHandle,
    /// The bulk stream and the connection epoch it belongs to.
    stream: Option<(u64, BulkStream)>,
    /// Highest batch the controller acknowledged as durable (`None` until
    /// the first ack, which the controller sends at every connection).
    acked: watch::Receiver<Option<u64>>,
    /// Encoded batches not acknowledged yet, oldest first.
    pending: VecDeque<(u64, Vec<u8>)>,
    next_seq: u64,
    /// Timestamp of the newest sample sent (Unix ms), 0 before any.
    pub last_ts_ms: u64,
    shutdown: CancellationToken,
}

impl SyntheticHost {
    /// Enrolls with a fresh join token (role monitor) on `ctl`, connects,
    /// and sends host facts naming `hostname`. Panics if it is not
    /// connected within 20 s.
    pub async fn enroll(ctl: &Controller, hostname: &str) -> SyntheticHost {
        let mut cfg =
            crate::inproc::monitor_link_config(ctl, ctl.gateway_addr, IdentityStore::memory());
        cfg.backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        let shutdown = CancellationToken::new();
        let (link, mut rx, _task) = Link::spawn(cfg, shutdown.clone());
        let (ack_tx, acked) = watch::channel(None::<u64>);
        // Reads everything the controller sends, so the link never blocks;
        // keeps the highest ack.
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if let ControllerMsg::MetricAck { seq } = msg {
                    ack_tx.send_modify(|a| *a = Some(a.map_or(seq, |old| old.max(seq))));
                }
            }
        });
        let (agent_id, _) = tokio::time::timeout(Duration::from_secs(20), link.connected())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "synthetic host {hostname} not connected after 20 s: {:?}",
                    *link.state().borrow()
                )
            })
            .unwrap_or_else(|| panic!("synthetic host {hostname}: the link stopped"));
        let mut host = SyntheticHost {
            agent_id: agent_id.to_string(),
            hostname: hostname.to_string(),
            link,
            stream: None,
            acked,
            pending: VecDeque::new(),
            next_seq: 1,
            last_ts_ms: 0,
            shutdown,
        };
        host.ensure_stream().await;
        host
    }

    fn facts(&self) -> HostFacts {
        HostFacts {
            hostname: self.hostname.clone(),
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.1.0-synthetic".into(),
            arch: "x86_64".into(),
            cpu_model: "Synthetic CPU".into(),
            cpu_cores: 4,
            mem_total_bytes: MEM_TOTAL_BYTES,
            disks: vec![("sda".into(), 100 << 30)],
            // Its own address, outside the range tests give servers: the
            // controller links an unlinked agent to the one server whose
            // address it reports, and a shared one would link hosts whose
            // server was deleted to another host's server.
            addresses: vec![format!("198.51.100.{}", 1 + name_byte(&self.hostname))],
        }
    }

    /// The epoch of the live connection, if connected.
    fn epoch(&self) -> Option<u64> {
        match &*self.link.state().borrow() {
            LinkState::Connected { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }

    /// A bulk stream on the live connection (waiting for one). On a new
    /// connection: waits for the controller's first ack (its high-water
    /// mark), sends the facts, and re-sends every batch not acknowledged.
    async fn ensure_stream(&mut self) {
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            assert!(
                Instant::now() < deadline,
                "synthetic host {}: no connection within {ACK_TIMEOUT:?}: {:?}",
                self.hostname,
                *self.link.state().borrow()
            );
            let live = self.epoch();
            if live.is_some() && self.stream.as_ref().map(|(e, _)| *e) == live {
                return;
            }
            self.stream = None;
            let Some((_, epoch)) = self.link.connected().await else {
                panic!("synthetic host {}: the link stopped", self.hostname);
            };
            // The controller's mark arrives first on every connection.
            let mut acked = self.acked.clone();
            if tokio::time::timeout(Duration::from_secs(5), acked.wait_for(|a| a.is_some()))
                .await
                .is_err()
            {
                continue;
            }
            self.trim();
            let hwm = self.acked.borrow().unwrap_or(0);
            self.next_seq = self.next_seq.max(hwm + 1);
            if self.link.send(AgentMsg::HostFacts(self.facts())).is_err() {
                continue;
            }
            let Ok(mut stream) = self.link.open_stream().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut ok = true;
            for (_, framed) in &self.pending {
                if stream.send_encoded(framed).await.is_err() {
                    ok = false;
                    break;
                }
            }
            if ok {
                self.stream = Some((epoch, stream));
            }
        }
    }

    /// Forgets the batches the controller acknowledged.
    fn trim(&mut self) {
        let acked = self.acked.borrow().unwrap_or(0);
        while self.pending.front().is_some_and(|(seq, _)| *seq <= acked) {
            self.pending.pop_front();
        }
    }

    /// Sends `samples` (in batches of [`BATCH`]) without waiting for the
    /// controller to store them.
    pub async fn push(&mut self, samples: &[HostSample]) {
        for chunk in samples.chunks(BATCH) {
            let seq = self.next_seq;
            self.next_seq += 1;
            let framed = frame::encode(&AgentMsg::MetricBatch {
                seq,
                dropped_before: 0,
                samples: chunk.to_vec(),
            })
            .expect("a batch encodes");
            self.pending.push_back((seq, framed));
            if let Some(ts) = chunk.iter().map(|s| s.ts_ms).max() {
                self.last_ts_ms = self.last_ts_ms.max(ts);
            }
            self.ensure_stream().await;
            let (_, stream) = self.stream.as_mut().expect("a stream");
            let framed = &self.pending.back().expect("just pushed").1;
            if stream.send_encoded(framed).await.is_err() {
                // Sent again with the rest after the reconnection.
                self.stream = None;
            }
        }
        self.trim();
    }

    /// Sends `samples` and waits until the controller has acknowledged
    /// them as stored (durably: a query sees them).
    pub async fn send(&mut self, samples: &[HostSample]) {
        self.push(samples).await;
        self.wait_stored().await;
    }

    /// Waits until every batch sent so far is acknowledged. The controller
    /// acks only every few batches, and names what is flushed (each
    /// second): a batch sent again is answered at once, so the newest one
    /// is repeated until the ack covers it.
    pub async fn wait_stored(&mut self) {
        let Some(target) = self.next_seq.checked_sub(1).filter(|s| *s > 0) else {
            return;
        };
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut acked = self.acked.clone();
        loop {
            if acked.borrow_and_update().is_some_and(|a| a >= target) {
                self.trim();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "synthetic host {}: batch {target} not acknowledged within {ACK_TIMEOUT:?} (acked {:?})",
                self.hostname,
                *acked.borrow()
            );
            let _ = tokio::time::timeout(Duration::from_millis(300), acked.changed()).await;
            if acked.borrow().is_some_and(|a| a >= target) {
                continue;
            }
            self.ensure_stream().await;
            self.trim();
            if let Some((_, last)) = self.pending.back() {
                let last = last.clone();
                let (_, stream) = self.stream.as_mut().expect("a stream");
                if stream.send_encoded(&last).await.is_err() {
                    self.stream = None;
                }
            }
        }
    }

    /// Disconnects (the same as dropping it).
    pub fn disconnect(self) {}
}

impl Drop for SyntheticHost {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A sample with exactly these percentages: CPU busy, the one disk's
/// utilisation (io), the one interface's utilisation (net, link speed
/// 1 Gbit/s) and memory in use (100 − available/total, total 8 GiB).
/// Fixed around them: iowait 2 % (less when CPU is near 100), disk R 1.5
/// MiB/s W 2 KiB/s, net ↓ 1 MiB/s ↑ 512 B/s, TCP 120 established and 0.5
/// retransmits/s, one filesystem `/` 71 % used. No application (see
/// [`with_app_port`]).
pub fn sample(
    ts_ms: u64,
    cpu_pct: f32,
    io_pct: f32,
    net_pct: f32,
    mem_used_pct: f32,
) -> HostSample {
    let used = (MEM_TOTAL_BYTES as f64 * f64::from(mem_used_pct) / 100.0).round() as u64;
    let available = MEM_TOTAL_BYTES - used.min(MEM_TOTAL_BYTES);
    let fs_total: u64 = 100 << 30;
    let fs_used: u64 = 71 << 30;
    HostSample {
        ts_ms,
        cpu: Some(CpuStats {
            busy_pct: cpu_pct,
            user_pct: cpu_pct * 0.75,
            system_pct: cpu_pct * 0.25,
            iowait_pct: (100.0 - cpu_pct).clamp(0.0, 2.0),
            steal_pct: 0.0,
            cores: 4,
        }),
        mem: Some(MemStats {
            total_bytes: MEM_TOTAL_BYTES,
            free_bytes: available / 2,
            available_bytes: available,
            cached_bytes: available / 2,
            swap_total_bytes: 0,
            swap_free_bytes: 0,
        }),
        load: Some(LoadAvg {
            one: cpu_pct / 25.0,
            five: cpu_pct / 25.0,
            fifteen: cpu_pct / 25.0,
        }),
        disks: vec![DiskStats {
            name: "sda".into(),
            read_bps: 1.5 * 1024.0 * 1024.0,
            write_bps: 2048.0,
            util_pct: io_pct,
        }],
        filesystems: vec![FsStats {
            mount: "/".into(),
            fstype: "ext4".into(),
            total_bytes: fs_total,
            used_bytes: fs_used,
            avail_bytes: fs_total - fs_used,
        }],
        nets: vec![NetStats {
            name: "eth0".into(),
            rx_bps: 1024.0 * 1024.0,
            tx_bps: 512.0,
            speed_mbps: Some(1000),
            util_pct: Some(net_pct),
        }],
        tcp: Some(TcpStats {
            established: 120,
            retrans_segs_per_s: 0.5,
            out_segs_per_s: 100.0,
        }),
        app: None,
        errors: Vec::new(),
    }
}

/// `s` with an application listening on `port`: 12 connections, 9
/// established, 2 in TIME_WAIT, 1 in CLOSE_WAIT.
pub fn with_app_port(mut s: HostSample, port: u16) -> HostSample {
    s.app = Some(AppStats {
        identifier: "synthetic-app".into(),
        pid: Some(4242),
        ports: vec![PortStats {
            port,
            total: 12,
            established: 9,
            time_wait: 2,
            close_wait: 1,
        }],
        jvm: None,
        jvm_error: None,
    });
    s
}

/// `n` samples one second apart ending at `end_ms` (inclusive), all with
/// the same percentages (see [`sample`]).
pub fn history(end_ms: u64, n: u64, cpu: f32, io: f32, net: f32, mem: f32) -> Vec<HostSample> {
    (0..n)
        .map(|i| sample(end_ms - (n - 1 - i) * 1000, cpu, io, net, mem))
        .collect()
}

/// The score the controller must compute for those percentages.
pub fn score(cpu: f64, io: f64, net: f64) -> f64 {
    0.5 * cpu + 0.3 * io + 0.2 * net
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// A byte from a host name (0..=250), for per-host test addresses.
fn name_byte(name: &str) -> u8 {
    (name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 251) as u8
}
