//! agent-monitor: the binary. `agent-monitor [options]` runs the agent;
//! `agent-monitor sample` prints what it sees and exits.

use std::process::ExitCode;
use std::time::Duration;

use agent_monitor::collect::{Roots, facts};
use agent_monitor::monitor::{MonitorConfig, run};
use agent_monitor::sampler::Sampler;
use clap::{Parser, Subcommand};
use protocol::cli::{LinkArgs, run_until_signal};
use protocol::{IdentityStore, Role};
use tracing::error;

#[derive(Debug, Parser)]
#[command(name = "agent-monitor", version, about = "MyPlatform monitor agent")]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    link: LinkArgs,
    /// Sampling interval.
    #[arg(long, global = true, default_value = "1s", env = "MYPLATFORM_INTERVAL")]
    interval: humantime::Duration,
    /// Disk buffer for samples the controller has not acknowledged, in MiB
    /// (about 1 KiB per sample: 64 MiB holds most of a day at 1 s).
    #[arg(long, default_value_t = 64, env = "MYPLATFORM_SPOOL_MAX_MB")]
    spool_max_mb: u64,
    /// Drop the page cache when available memory falls below this percent
    /// of total (off unless given).
    #[arg(long, env = "MYPLATFORM_DROP_CACHES_BELOW_PCT")]
    drop_caches_below_pct: Option<f32>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print one full sample and the host facts as JSON, then exit. Needs no
    /// controller.
    Sample {
        /// Also watch the process whose command line contains this.
        #[arg(long)]
        app: Option<String>,
    },
}

// One thread: the agent does little per second, and every extra thread
// costs memory and wake-ups on the host it watches.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    protocol::cli::init_logging();
    let args = Args::parse();
    if let Some(Cmd::Sample { app }) = args.cmd {
        return sample(app, args.interval.into());
    }
    let interval: Duration = args.interval.into();
    if interval < Duration::from_millis(100) {
        eprintln!("error: --interval must be at least 100ms");
        return ExitCode::from(protocol::cli::EXIT_REFUSED);
    }
    let cfg = match args.link.resolve(Role::Monitor, env!("CARGO_PKG_VERSION")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(protocol::cli::EXIT_REFUSED);
        }
    };
    let IdentityStore::Dir(state_dir) = &cfg.identity else {
        unreachable!("the command line always uses a state directory")
    };
    let monitor = MonitorConfig {
        interval,
        spool_dir: state_dir.join("spool"),
        spool_max_bytes: args.spool_max_mb.max(1) << 20,
        drop_caches_below_pct: args.drop_caches_below_pct,
        roots: Roots::default(),
    };
    run_until_signal(cfg, move |link, rx, shutdown| async move {
        if let Err(e) = run(monitor, link, rx, shutdown).await {
            error!("{e}");
        }
    })
    .await
}

fn sample(app: Option<String>, interval: Duration) -> ExitCode {
    let roots = Roots::default();
    let mut sampler = Sampler::new(roots.clone());
    sampler.set_identifier(app);
    sampler.sample();
    std::thread::sleep(interval.min(Duration::from_secs(5)));
    let sample = sampler.sample();
    let facts = facts::collect_facts(&roots).map_err(|e| e.to_string());
    let out = serde_json::json!({ "facts": facts.as_ref().ok(), "facts_error": facts.err(), "sample": sample });
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    ExitCode::SUCCESS
}
