//! Host-wide TCP: established connections and retransmitted segments per
//! second, from the `Tcp:` lines of /proc/net/snmp. Per-port states are
//! `ports` (sock_diag), not this.

use std::time::Instant;

use protocol::metrics::TcpStats;

use super::{CollectError, Roots, rate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpCounters {
    pub curr_estab: u64,
    pub out_segs: u64,
    pub retrans_segs: u64,
}

pub fn parse_snmp(text: &str) -> Result<TcpCounters, CollectError> {
    let mut lines = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(header), Some(values)) = (lines.next(), lines.next()) else {
        return Err(CollectError::parse("/proc/net/snmp", "no Tcp: lines"));
    };
    let names: Vec<&str> = header.split_whitespace().skip(1).collect();
    let vals: Vec<&str> = values.split_whitespace().skip(1).collect();
    if names.len() != vals.len() {
        return Err(CollectError::parse(
            "/proc/net/snmp",
            "Tcp: header and values differ in length",
        ));
    }
    let get = |key: &str| -> Result<u64, CollectError> {
        let i = names
            .iter()
            .position(|n| *n == key)
            .ok_or_else(|| CollectError::parse("/proc/net/snmp", format!("no {key}")))?;
        // MaxConn is -1 on Linux; the counters we read are never negative.
        vals[i]
            .parse::<u64>()
            .map_err(|e| CollectError::parse("/proc/net/snmp", format!("{key}: {e}")))
    };
    Ok(TcpCounters {
        curr_estab: get("CurrEstab")?,
        out_segs: get("OutSegs")?,
        retrans_segs: get("RetransSegs")?,
    })
}

#[derive(Debug, Default)]
pub struct TcpCollector {
    prev: Option<(TcpCounters, Instant)>,
}

impl TcpCollector {
    pub fn collect(
        &mut self,
        roots: &Roots,
        now: Instant,
    ) -> Result<Option<TcpStats>, CollectError> {
        let c = parse_snmp(&roots.read_proc("net/snmp")?)?;
        let out = self.prev.map(|(p, at)| {
            let secs = now.duration_since(at).as_secs_f64();
            TcpStats {
                established: u32::try_from(c.curr_estab).unwrap_or(u32::MAX),
                retrans_segs_per_s: rate(c.retrans_segs, p.retrans_segs, secs) as f32,
                out_segs_per_s: rate(c.out_segs, p.out_segs, secs) as f32,
            }
        });
        self.prev = Some((c, now));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture;

    #[test]
    fn real_snmp() {
        let a = parse_snmp(&fixture("net_snmp.1")).unwrap();
        let b = parse_snmp(&fixture("net_snmp.2")).unwrap();
        assert!(b.out_segs >= a.out_segs);
        assert_eq!(a.retrans_segs, 0);
    }

    #[test]
    fn garbage() {
        assert!(parse_snmp("").is_err());
        assert!(parse_snmp("Tcp: A B\nTcp: 1\n").is_err());
        assert!(parse_snmp("Tcp: CurrEstab\nTcp: 1\n").is_err());
        assert!(parse_snmp("Tcp: CurrEstab OutSegs RetransSegs\nTcp: 1 x 3\n").is_err());
    }
}
