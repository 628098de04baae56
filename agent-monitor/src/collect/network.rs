//! Network rx/tx bytes per second per interface (/proc/net/dev deltas) and
//! utilisation against the link speed from /sys/class/net/<if>/speed.
//!
//! When the kernel does not know the speed (virtio, bridges, tunnels report
//! -1 or refuse the read), `speed_mbps` and `util_pct` are `None` rather
//! than a guess. Loopback is left out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::metrics::NetStats;

use super::{CollectError, Roots, rate};

/// Link speeds rarely change; re-read them this often.
const SPEED_REFRESH: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

pub fn parse_net_dev(text: &str) -> Result<Vec<(String, NetCounters)>, CollectError> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            return Err(CollectError::parse(
                "/proc/net/dev",
                format!("no ':' in {line:?}"),
            ));
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 16 {
            return Err(CollectError::parse(
                "/proc/net/dev",
                format!("short line {line:?}"),
            ));
        }
        let n = |i: usize| {
            f[i].parse::<u64>()
                .map_err(|e| CollectError::parse("/proc/net/dev", format!("{e} in {line:?}")))
        };
        out.push((
            name.trim().to_string(),
            NetCounters {
                rx_bytes: n(0)?,
                tx_bytes: n(8)?,
            },
        ));
    }
    Ok(out)
}

/// The content of a `speed` file: Mbit/s, or `None` when unknown.
pub fn parse_speed(text: &str) -> Option<u32> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|&s| s > 0)
        .and_then(|s| u32::try_from(s).ok())
}

pub fn stats_between(
    name: &str,
    prev: &NetCounters,
    now: &NetCounters,
    secs: f64,
    speed_mbps: Option<u32>,
) -> NetStats {
    let rx_bps = rate(now.rx_bytes, prev.rx_bytes, secs);
    let tx_bps = rate(now.tx_bytes, prev.tx_bytes, secs);
    let util_pct = speed_mbps.map(|s| {
        let capacity = f64::from(s) * 1_000_000.0 / 8.0;
        // Full duplex: the busier direction is the utilisation.
        super::round2(((rx_bps.max(tx_bps) / capacity) * 100.0).clamp(0.0, 100.0))
    });
    NetStats {
        name: name.to_string(),
        rx_bps,
        tx_bps,
        speed_mbps,
        util_pct,
    }
}

#[derive(Debug, Default)]
pub struct NetCollector {
    prev: HashMap<String, NetCounters>,
    speeds: HashMap<String, Option<u32>>,
    speeds_at: Option<Instant>,
    at: Option<Instant>,
}

impl NetCollector {
    pub fn collect(&mut self, roots: &Roots, now: Instant) -> Result<Vec<NetStats>, CollectError> {
        let all = parse_net_dev(&roots.read_proc("net/dev")?)?;
        if self
            .speeds_at
            .is_none_or(|t| now.duration_since(t) >= SPEED_REFRESH)
        {
            self.speeds.clear();
            self.speeds_at = Some(now);
        }
        let secs = self.at.map(|t| now.duration_since(t).as_secs_f64());
        let mut out = Vec::new();
        let mut next = HashMap::with_capacity(self.prev.len());
        for (name, c) in all {
            if name == "lo" {
                continue;
            }
            let speed = *self.speeds.entry(name.clone()).or_insert_with(|| {
                roots
                    .read_sys(&format!("class/net/{name}/speed"))
                    .ok()
                    .and_then(|s| parse_speed(&s))
            });
            if let (Some(secs), Some(p)) = (secs, self.prev.get(&name)) {
                out.push(stats_between(&name, p, &c, secs, speed));
            }
            next.insert(name, c);
        }
        self.prev = next;
        self.at = Some(now);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture;

    #[test]
    fn real_net_dev() {
        let a = parse_net_dev(&fixture("net_dev.1")).unwrap();
        let b = parse_net_dev(&fixture("net_dev.2")).unwrap();
        assert!(a.iter().any(|(n, _)| n == "lo"));
        let eth = |v: &[(String, NetCounters)]| v.iter().find(|(n, _)| n == "eth0").unwrap().1;
        let s = stats_between("eth0", &eth(&a), &eth(&b), 1.0, None);
        assert!(s.rx_bps >= 0.0 && s.util_pct.is_none());
    }

    #[test]
    fn utilisation_against_link_speed() {
        let p = NetCounters {
            rx_bytes: 0,
            tx_bytes: 0,
        };
        let n = NetCounters {
            rx_bytes: 62_500_000,
            tx_bytes: 1_000,
        };
        let s = stats_between("eth0", &p, &n, 1.0, Some(1000));
        assert_eq!(s.util_pct, Some(50.0));
        assert_eq!(parse_speed("-1\n"), None);
        assert_eq!(parse_speed("10000\n"), Some(10000));
        assert_eq!(parse_speed("garbage"), None);
        assert!(parse_net_dev("h\nh\neth0 1 2 3\n").is_err());
    }
}
