//! What the benchmark programs share: a process's CPU and memory from
//! /proc, and waiting for a condition with a deadline. Measures nothing
//! itself.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A process's CPU time (user + system, in clock ticks) and resident set.
pub struct ProcStat {
    pub cpu_ticks: u64,
    pub rss_kib: u64,
}

/// Linux reports /proc times in USER_HZ, 100 on every mainstream build.
pub const TICKS_PER_SEC: f64 = 100.0;

pub fn proc_stat(pid: u32) -> anyhow::Result<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14, 15.
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu_ticks = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS")?
        .parse()?;
    Ok(ProcStat { cpu_ticks, rss_kib })
}

/// Polls `f` every `every` until it gives `Some`, at most `within`.
pub async fn poll<T, F, Fut>(
    what: &str,
    within: Duration,
    every: Duration,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}
