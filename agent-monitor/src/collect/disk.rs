//! Disk read/write bytes per second and utilisation (io_ticks) per whole
//! disk, from /proc/diskstats deltas. Partitions, loop, ram and zram
//! devices are left out: they double-count or are not disks.

use std::collections::HashMap;
use std::time::Instant;

use protocol::metrics::DiskStats;

use super::{CollectError, Roots, pct, rate};

/// diskstats always counts 512-byte sectors, whatever the device's size.
const SECTOR: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskCounters {
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Milliseconds the device had I/O in flight.
    pub io_ticks_ms: u64,
}

/// Every device line: name -> counters.
pub fn parse_diskstats(text: &str) -> Result<Vec<(String, DiskCounters)>, CollectError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 {
            if line.trim().is_empty() {
                continue;
            }
            return Err(CollectError::parse(
                "/proc/diskstats",
                format!("short line {line:?}"),
            ));
        }
        let n = |i: usize| {
            f[i].parse::<u64>()
                .map_err(|e| CollectError::parse("/proc/diskstats", format!("{e} in {line:?}")))
        };
        out.push((
            f[2].to_string(),
            DiskCounters {
                read_bytes: n(5)? * SECTOR,
                write_bytes: n(9)? * SECTOR,
                io_ticks_ms: n(12)?,
            },
        ));
    }
    Ok(out)
}

pub fn is_whole_disk(name: &str, in_sys_block: bool) -> bool {
    in_sys_block
        && !["loop", "ram", "zram", "fd"]
            .iter()
            .any(|p| name.starts_with(p))
}

#[derive(Debug, Default)]
pub struct DiskCollector {
    prev: HashMap<String, DiskCounters>,
    /// Whether a device name is a whole disk, looked up once per name.
    whole: HashMap<String, bool>,
    at: Option<Instant>,
}

impl DiskCollector {
    pub fn collect(&mut self, roots: &Roots, now: Instant) -> Result<Vec<DiskStats>, CollectError> {
        let all = parse_diskstats(&roots.read_proc("diskstats")?)?;
        let secs = self.at.map(|t| now.duration_since(t).as_secs_f64());
        let mut out = Vec::new();
        let mut next = HashMap::with_capacity(self.prev.len());
        for (name, c) in all {
            let whole = *self.whole.entry(name.clone()).or_insert_with(|| {
                is_whole_disk(&name, roots.sys.join("block").join(&name).exists())
            });
            if !whole {
                continue;
            }
            if let (Some(secs), Some(p)) = (secs, self.prev.get(&name)) {
                out.push(stats_between(&name, p, &c, secs));
            }
            next.insert(name, c);
        }
        self.prev = next;
        self.at = Some(now);
        Ok(out)
    }
}

pub fn stats_between(name: &str, prev: &DiskCounters, now: &DiskCounters, secs: f64) -> DiskStats {
    DiskStats {
        name: name.to_string(),
        read_bps: rate(now.read_bytes, prev.read_bytes, secs),
        write_bps: rate(now.write_bytes, prev.write_bytes, secs),
        util_pct: pct(
            now.io_ticks_ms.saturating_sub(prev.io_ticks_ms) as f64,
            secs * 1000.0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture;

    #[test]
    fn real_diskstats_see_the_write_between_captures() {
        // Between the two captures, 50 MiB were written with O_DIRECT.
        let a = parse_diskstats(&fixture("diskstats.1")).unwrap();
        let b = parse_diskstats(&fixture("diskstats.2")).unwrap();
        let get = |v: &[(String, DiskCounters)]| v.iter().find(|(n, _)| n == "vda").unwrap().1;
        let s = stats_between("vda", &get(&a), &get(&b), 1.0);
        assert!(s.write_bps >= 50.0 * 1024.0 * 1024.0, "{s:?}");
        assert!((0.0..=100.0).contains(&s.util_pct));
        assert!(a.iter().any(|(n, _)| n == "loop0"));
        assert!(!is_whole_disk("loop0", true) && !is_whole_disk("zram0", true));
        assert!(is_whole_disk("vda", true) && !is_whole_disk("vda1", false));
    }

    #[test]
    fn resets_and_garbage() {
        let hi = DiskCounters {
            read_bytes: 10,
            write_bytes: 10,
            io_ticks_ms: 10,
        };
        let lo = DiskCounters {
            read_bytes: 0,
            write_bytes: 0,
            io_ticks_ms: 0,
        };
        let s = stats_between("d", &hi, &lo, 1.0);
        assert_eq!((s.read_bps, s.write_bps, s.util_pct), (0.0, 0.0, 0.0));
        let s = stats_between(
            "d",
            &lo,
            &DiskCounters {
                io_ticks_ms: 5000,
                ..lo
            },
            1.0,
        );
        assert_eq!(s.util_pct, 100.0, "util is capped");
        assert!(parse_diskstats("8 0 sda 1 2").is_err());
        assert!(parse_diskstats("8 0 sda 0 0 x 0 0 0 0 0 0 0 0 0 0 0").is_err());
        assert!(parse_diskstats("").unwrap().is_empty());
    }
}
