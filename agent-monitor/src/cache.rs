//! The one local action the agent may take on its own, when the user
//! enabled it: drop the page cache when available memory is low (what the
//! original called automatic cache cleaning). Rate-limited, logged each
//! time. Never touches anything else.

use std::time::{Duration, Instant};

use protocol::metrics::MemStats;
use tracing::{info, warn};

/// At most one drop per this long: dropping is expensive for the host's
/// I/O afterwards, and memory rarely recovers in seconds.
const MIN_GAP: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct CacheCleaner {
    below_pct: f32,
    last: Option<Instant>,
    target: std::path::PathBuf,
}

impl CacheCleaner {
    pub fn new(below_pct: f32) -> CacheCleaner {
        CacheCleaner {
            below_pct,
            last: None,
            target: "/proc/sys/vm/drop_caches".into(),
        }
    }

    /// Whether `mem` is low enough to drop now.
    pub fn due(&self, mem: &MemStats, now: Instant) -> bool {
        if mem.total_bytes == 0 {
            return false;
        }
        let avail_pct = mem.available_bytes as f64 / mem.total_bytes as f64 * 100.0;
        avail_pct < f64::from(self.below_pct)
            && self.last.is_none_or(|t| now.duration_since(t) >= MIN_GAP)
    }

    /// Drops the page cache if due; true when it did.
    pub fn check(&mut self, mem: &MemStats) -> bool {
        if !self.due(mem, Instant::now()) {
            return false;
        }
        self.drop_now(mem)
    }

    /// Drops the page cache because the controller asked (a memory-low
    /// alert with cache cleaning on), still at most once per [`MIN_GAP`].
    pub fn requested(&mut self, mem: &MemStats) -> bool {
        if self.last.is_some_and(|t| t.elapsed() < MIN_GAP) {
            info!("page cache drop requested but one was done recently; skipped");
            return false;
        }
        self.drop_now(mem)
    }

    fn drop_now(&mut self, mem: &MemStats) -> bool {
        self.last = Some(Instant::now());
        // "1" frees the page cache only; dentries and inodes stay.
        match std::fs::write(&self.target, "1") {
            Ok(()) => {
                info!(
                    available_mib = mem.available_bytes >> 20,
                    total_mib = mem.total_bytes >> 20,
                    threshold_pct = self.below_pct,
                    "available memory low: dropped the page cache"
                );
                true
            }
            Err(e) => {
                warn!(error = %e, "available memory low but the page cache could not be dropped");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_only_below_the_threshold_and_not_too_often() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = CacheCleaner::new(10.0);
        c.target = dir.path().join("drop_caches");
        let low = MemStats {
            total_bytes: 100,
            available_bytes: 5,
            ..Default::default()
        };
        let fine = MemStats {
            total_bytes: 100,
            available_bytes: 50,
            ..Default::default()
        };
        assert!(!c.check(&fine));
        assert!(c.check(&low));
        assert_eq!(std::fs::read_to_string(&c.target).unwrap(), "1");
        assert!(!c.check(&low), "rate limited");
        assert!(c.due(&low, Instant::now() + MIN_GAP));
        assert!(!c.due(&MemStats::default(), Instant::now()));
        assert!(!c.requested(&fine), "requests are rate limited too");
        let mut fresh = CacheCleaner::new(0.0);
        fresh.target = c.target.clone();
        assert!(
            fresh.requested(&fine),
            "a request drops even above the threshold"
        );
    }
}
