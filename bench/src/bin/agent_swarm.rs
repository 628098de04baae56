//! Many simulated agents in one process against one controller.
//!
//! Every simulated agent is the real agent link (`protocol::Link`) with its
//! identity kept in memory: it enrolls with the shared join token, connects
//! with mutual TLS and heartbeats at the controller's interval. Reports the
//! handshake rate, and the controller's RSS per connected agent and CPU at
//! steady state (read from /proc of the controller's pid). Run it through
//! `bench/agents.sh`, which starts the controller.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use myplatform_bench::{TICKS_PER_SEC, proc_stat};
use protocol::{IdentityStore, Link, LinkConfig, Role};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
struct Args {
    /// Controller QUIC address.
    #[arg(long)]
    controller: String,
    #[arg(long)]
    token: String,
    #[arg(long)]
    ca_pin: protocol::CaPin,
    /// Number of simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Client UDP sockets shared by the agents.
    #[arg(long, default_value_t = 16)]
    sockets: usize,
    /// Seconds of steady state to measure.
    #[arg(long, default_value_t = 30)]
    hold: u64,
    /// Agents enrolling at once. A fleet enrolls gradually; an all-at-once
    /// herd of first enrollments would time some out and burn token uses.
    #[arg(long, default_value_t = 500)]
    enroll_wave: usize,
    /// The controller's pid, for RSS and CPU.
    #[arg(long)]
    controller_pid: u32,
}

async fn connect_all(
    args: &Args,
    stores: &[IdentityStore],
    endpoints: &[quinn::Endpoint],
    with_token: bool,
    wave: usize,
) -> anyhow::Result<(
    Vec<tokio::task::JoinHandle<Result<(), protocol::LinkError>>>,
    CancellationToken,
    Duration,
)> {
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in stores.chunks(wave.max(1)) {
        let mut handles = Vec::new();
        let first = tasks.len();
        for store in chunk {
            let i = tasks.len();
            let mut cfg = LinkConfig::new(args.controller.clone(), store.clone(), Role::Monitor);
            cfg.endpoint = Some(endpoints[i % endpoints.len()].clone());
            if with_token {
                cfg.token = Some(args.token.clone());
                cfg.ca_pin = Some(args.ca_pin.clone());
            }
            let (h, rx, t) = Link::spawn(cfg, shutdown.clone());
            // Drain controller messages so the link never blocks.
            tokio::spawn(async move {
                let mut rx = rx;
                while rx.recv().await.is_some() {}
            });
            handles.push(h);
            tasks.push(t);
        }
        wait_connected(&handles, &mut tasks[first..]).await?;
    }
    Ok((tasks, shutdown, started.elapsed()))
}

async fn wait_connected(
    handles: &[protocol::LinkHandle],
    tasks: &mut [tokio::task::JoinHandle<Result<(), protocol::LinkError>>],
) -> anyhow::Result<()> {
    for (i, h) in handles.iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(300), h.connected()).await;
        match r {
            Ok(Some(_)) => {}
            Ok(None) => {
                let why = (&mut tasks[i]).await;
                bail!("an agent stopped: {why:?}")
            }
            Err(_) => bail!(
                "an agent is not connected after 300 s: {:?}",
                *h.state().borrow()
            ),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    certs::tls::install_default_provider();
    let n = args.agents;
    let peer: std::net::SocketAddr = tokio::net::lookup_host(&args.controller)
        .await?
        .next()
        .context("controller address")?;
    let endpoints: Vec<quinn::Endpoint> = (0..args.sockets)
        .map(|_| protocol::endpoint::client_for(peer))
        .collect::<Result<_, _>>()?;
    let base = proc_stat(args.controller_pid)?;
    let me = std::process::id();

    // Phase 1: enroll and connect (two handshakes each: enrollment, mTLS).
    let stores: Vec<IdentityStore> = (0..n).map(|_| IdentityStore::memory()).collect();
    let (tasks, shutdown, enroll_took) =
        connect_all(&args, &stores, &endpoints, true, args.enroll_wave.max(1)).await?;
    shutdown.cancel();
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Phase 2: reconnect the enrolled agents at once (mTLS handshake only),
    // as after a controller restart.
    let (tasks, shutdown, connect_took) =
        connect_all(&args, &stores, &endpoints, false, n.max(1)).await?;

    // Phase 3: steady state with heartbeats.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s0 = proc_stat(args.controller_pid)?;
    let m0 = proc_stat(me)?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.hold)).await;
    let s1 = proc_stat(args.controller_pid)?;
    let m1 = proc_stat(me)?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (s1.cpu_ticks - s0.cpu_ticks) as f64 / TICKS_PER_SEC / secs;
    let my_cpu = (m1.cpu_ticks - m0.cpu_ticks) as f64 / TICKS_PER_SEC / secs;
    let rss_per_agent = (s1.rss_kib.saturating_sub(base.rss_kib)) as f64 / n as f64;

    println!("agents                         {n}");
    println!(
        "enroll+connect                 {:.2} s  ({:.0} agents/s, 2 handshakes each)",
        enroll_took.as_secs_f64(),
        n as f64 / enroll_took.as_secs_f64()
    );
    println!(
        "reconnect (mTLS)               {:.2} s  ({:.0} connections/s)",
        connect_took.as_secs_f64(),
        n as f64 / connect_took.as_secs_f64()
    );
    println!(
        "controller RSS idle            {:.1} MiB",
        base.rss_kib as f64 / 1024.0
    );
    println!(
        "controller RSS with agents     {:.1} MiB",
        s1.rss_kib as f64 / 1024.0
    );
    println!("controller RSS per agent       {rss_per_agent:.1} KiB");
    println!(
        "controller CPU, steady 1 Hz    {:.1} % of one core over {secs:.0} s ({:.1} us per heartbeat)",
        cpu * 100.0,
        cpu * 1e6 / n as f64
    );
    println!(
        "swarm (client) CPU            {:.1} % of one core",
        my_cpu * 100.0
    );

    shutdown.cancel();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
