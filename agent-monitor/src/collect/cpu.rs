//! CPU busy, user, system, iowait and steal percentages from /proc/stat
//! deltas. Owns only the previous counters; no sysinfo, no per-core detail.

use protocol::metrics::CpuStats;

use super::{CollectError, Roots, pct};

/// Cumulative jiffies of the aggregate `cpu` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    pub cores: u32,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        // guest/guest_nice are already inside user/nice.
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }
}

pub fn parse_stat(text: &str) -> Result<CpuTimes, CollectError> {
    let mut times = None;
    let mut cores = 0u32;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse::<u64>())
                .collect::<Result<_, _>>()
                .map_err(|e| CollectError::parse("/proc/stat", e.to_string()))?;
            if v.len() < 4 {
                return Err(CollectError::parse(
                    "/proc/stat",
                    "cpu line has fewer than 4 fields",
                ));
            }
            let f = |i: usize| v.get(i).copied().unwrap_or(0);
            times = Some(CpuTimes {
                user: f(0),
                nice: f(1),
                system: f(2),
                idle: f(3),
                iowait: f(4),
                irq: f(5),
                softirq: f(6),
                steal: f(7),
                cores: 0,
            });
        } else if line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
        {
            cores += 1;
        }
    }
    let mut t = times.ok_or_else(|| CollectError::parse("/proc/stat", "no aggregate cpu line"))?;
    t.cores = cores.max(1);
    Ok(t)
}

/// Percentages between two readings; `None` when no time passed.
pub fn stats_between(prev: &CpuTimes, now: &CpuTimes) -> Option<CpuStats> {
    let total = now.total().checked_sub(prev.total())? as f64;
    if total <= 0.0 {
        return None;
    }
    let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
    let idle = d(now.idle, prev.idle);
    let iowait = d(now.iowait, prev.iowait);
    Some(CpuStats {
        busy_pct: pct(total - idle - iowait, total),
        user_pct: pct(d(now.user, prev.user) + d(now.nice, prev.nice), total),
        system_pct: pct(
            d(now.system, prev.system) + d(now.irq, prev.irq) + d(now.softirq, prev.softirq),
            total,
        ),
        iowait_pct: pct(iowait, total),
        steal_pct: pct(d(now.steal, prev.steal), total),
        cores: now.cores,
    })
}

#[derive(Debug, Default)]
pub struct CpuCollector {
    prev: Option<CpuTimes>,
}

impl CpuCollector {
    /// `Ok(None)` on the first call: a rate needs two readings.
    pub fn collect(&mut self, roots: &Roots) -> Result<Option<CpuStats>, CollectError> {
        let now = parse_stat(&roots.read_proc("stat")?)?;
        let out = self.prev.as_ref().and_then(|p| stats_between(p, &now));
        self.prev = Some(now);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture;

    #[test]
    fn real_stat_files_give_sane_percentages() {
        let a = parse_stat(&fixture("stat.1")).unwrap();
        let b = parse_stat(&fixture("stat.2")).unwrap();
        assert_eq!(a.cores, 2);
        assert_eq!(a.user, 102513);
        let s = stats_between(&a, &b).unwrap();
        for v in [
            s.busy_pct,
            s.user_pct,
            s.system_pct,
            s.iowait_pct,
            s.steal_pct,
        ] {
            assert!((0.0..=100.0).contains(&v), "{s:?}");
        }
        assert!(s.busy_pct + s.iowait_pct <= 100.01);
        assert!(s.busy_pct >= s.user_pct);
    }

    #[test]
    fn exact_percentages() {
        let a = CpuTimes {
            user: 100,
            idle: 100,
            cores: 1,
            ..Default::default()
        };
        let b = CpuTimes {
            user: 150,
            system: 10,
            idle: 130,
            iowait: 10,
            cores: 1,
            ..Default::default()
        };
        let s = stats_between(&a, &b).unwrap();
        assert_eq!(s.busy_pct, 60.0);
        assert_eq!(s.user_pct, 50.0);
        assert_eq!(s.iowait_pct, 10.0);
        assert!(stats_between(&b, &b).is_none());
        // A counter going backwards (reset) never gives nonsense.
        assert!(stats_between(&b, &a).is_none());
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in ["", "cpu x y z", "cpu 1 2", "intr 5\n"] {
            assert!(parse_stat(bad).is_err(), "{bad:?}");
        }
    }
}
