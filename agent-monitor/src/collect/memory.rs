//! Memory (/proc/meminfo) and load average (/proc/loadavg). Stateless.

use protocol::metrics::{LoadAvg, MemStats};

use super::{CollectError, Roots};

pub fn parse_meminfo(text: &str) -> Result<MemStats, CollectError> {
    let mut m = MemStats::default();
    let mut have_total = false;
    let mut have_available = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(kib) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = kib * 1024;
        match key {
            "MemTotal" => {
                m.total_bytes = bytes;
                have_total = true;
            }
            "MemFree" => m.free_bytes = bytes,
            "MemAvailable" => {
                m.available_bytes = bytes;
                have_available = true;
            }
            "Cached" => m.cached_bytes = bytes,
            "SwapTotal" => m.swap_total_bytes = bytes,
            "SwapFree" => m.swap_free_bytes = bytes,
            _ => {}
        }
    }
    if !have_total {
        return Err(CollectError::parse("/proc/meminfo", "no MemTotal"));
    }
    if !have_available {
        // Kernels before 3.14: the classic estimate.
        m.available_bytes = m.free_bytes + m.cached_bytes;
    }
    Ok(m)
}

pub fn parse_loadavg(text: &str) -> Result<LoadAvg, CollectError> {
    let mut f = text.split_whitespace().map(|v| v.parse::<f32>());
    match (f.next(), f.next(), f.next()) {
        (Some(Ok(one)), Some(Ok(five)), Some(Ok(fifteen))) => Ok(LoadAvg { one, five, fifteen }),
        _ => Err(CollectError::parse("/proc/loadavg", format!("{text:?}"))),
    }
}

pub fn collect_memory(roots: &Roots) -> Result<MemStats, CollectError> {
    parse_meminfo(&roots.read_proc("meminfo")?)
}

pub fn collect_load(roots: &Roots) -> Result<LoadAvg, CollectError> {
    parse_loadavg(&roots.read_proc("loadavg")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture;

    #[test]
    fn real_meminfo_and_loadavg() {
        let m = parse_meminfo(&fixture("meminfo.1")).unwrap();
        assert!(m.total_bytes > 1 << 30);
        assert!(m.available_bytes <= m.total_bytes && m.free_bytes <= m.total_bytes);
        assert!(m.available_bytes >= m.free_bytes);
        let l = parse_loadavg(&fixture("loadavg.1")).unwrap();
        assert!(l.one >= 0.0 && l.fifteen >= 0.0);
    }

    #[test]
    fn old_kernels_and_garbage() {
        let m = parse_meminfo("MemTotal: 100 kB\nMemFree: 10 kB\nCached: 5 kB\n").unwrap();
        assert_eq!(m.available_bytes, 15 * 1024);
        assert!(parse_meminfo("").is_err());
        assert!(parse_meminfo("MemFree: x kB").is_err());
        assert!(parse_loadavg("1.0 oops").is_err());
    }
}
