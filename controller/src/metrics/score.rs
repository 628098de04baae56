//! The load score that orders and colours hosts on the overview and the
//! visualisation's server list: 0.5 × CPU % + 0.3 × IO % + 0.2 × network %
//! (the weights 5, 3, 2 of MISSION.md), ties broken by memory in use.
//!
//! Pure: a sample in, numbers out. It must not read the clock or know who
//! is looking; the web layer decides what a caller may see.

use std::cmp::Ordering;

use protocol::metrics::HostSample;
use serde::Serialize;

/// One host's score and the percentages it was made from (all 0..=100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub value: f64,
    /// Colour step: the score rounded to tens, 0 ..= 10.
    pub step: u8,
    /// CPU busy (everything but idle and iowait).
    pub cpu_pct: f64,
    /// The busiest disk's utilisation (io_ticks).
    pub io_pct: f64,
    /// The busiest interface against its link speed; `None` when no
    /// interface knows its speed (it then counts as 0 in the score).
    pub net_pct: Option<f64>,
    /// Memory in use: 100 − available/total. 0 when unknown.
    pub mem_pct: f64,
}

/// Values outside 0..=100 (a collector glitch) or not finite count as
/// their nearest bound, so one bad number cannot push a host off the scale.
fn pct(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

impl Score {
    pub fn of(s: &HostSample) -> Score {
        let cpu_pct = pct(s.cpu.map_or(0.0, |c| f64::from(c.busy_pct)));
        let io_pct = pct(f64::from(s.disk_total().util_pct));
        let net_pct = s.net_total().util_pct.map(|u| pct(f64::from(u)));
        let mem_pct = s.mem.filter(|m| m.total_bytes > 0).map_or(0.0, |m| {
            pct(100.0 * (1.0 - m.available_bytes as f64 / m.total_bytes as f64))
        });
        let value = 0.5 * cpu_pct + 0.3 * io_pct + 0.2 * net_pct.unwrap_or(0.0);
        // Two decimals: what is shown, so equal-looking scores tie.
        let value = (value * 100.0).round() / 100.0;
        Score {
            value,
            step: step(value),
            cpu_pct,
            io_pct,
            net_pct,
            mem_pct,
        }
    }
}

/// The colour step of a score, one of 11 (0 idle ..= 10 saturated): step
/// k covers [10k − 5, 10k + 5).
pub fn step(value: f64) -> u8 {
    (pct(value) / 10.0).round() as u8
}

/// Busiest first: by score, then by memory in use; hosts without a score
/// (no sample yet) last.
pub fn busiest_first(a: Option<&Score>, b: Option<&Score>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b
            .value
            .total_cmp(&a.value)
            .then(b.mem_pct.total_cmp(&a.mem_pct)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::metrics::{CpuStats, DiskStats, MemStats, NetStats};

    fn sample(cpu: f32, io: f32, net: Option<f32>, mem_used: f64) -> HostSample {
        let total = 8u64 << 30;
        HostSample {
            cpu: Some(CpuStats {
                busy_pct: cpu,
                ..Default::default()
            }),
            mem: Some(MemStats {
                total_bytes: total,
                available_bytes: (total as f64 * (1.0 - mem_used / 100.0)) as u64,
                ..Default::default()
            }),
            disks: vec![
                DiskStats {
                    name: "sda".into(),
                    util_pct: io / 2.0,
                    ..Default::default()
                },
                DiskStats {
                    name: "sdb".into(),
                    util_pct: io,
                    ..Default::default()
                },
            ],
            nets: vec![NetStats {
                name: "eth0".into(),
                util_pct: net,
                speed_mbps: net.map(|_| 1000),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn weights_five_three_two_on_percentages() {
        let s = Score::of(&sample(80.0, 10.0, Some(5.0), 50.0));
        assert_eq!(s.value, 44.0);
        assert_eq!(s.step, 4);
        assert_eq!((s.cpu_pct, s.io_pct, s.net_pct), (80.0, 10.0, Some(5.0)));
        assert!((s.mem_pct - 50.0).abs() < 1e-6);
        // The busiest disk counts, not the sum or the mean.
        assert_eq!(Score::of(&sample(0.0, 90.0, None, 0.0)).value, 27.0);
        // Unknown link speed: net counts as 0 and is reported unknown.
        let s = Score::of(&sample(20.0, 90.0, None, 0.0));
        assert_eq!((s.value, s.net_pct), (37.0, None));
    }

    #[test]
    fn eleven_steps_and_bad_numbers_stay_on_the_scale() {
        assert_eq!(step(0.0), 0);
        assert_eq!(step(4.99), 0);
        assert_eq!(step(5.0), 1);
        assert_eq!(step(94.9), 9);
        assert_eq!(step(95.0), 10);
        assert_eq!(step(100.0), 10);
        assert_eq!(step(f64::NAN), 0);
        let s = Score::of(&sample(250.0, f32::NAN, Some(-3.0), 50.0));
        assert_eq!((s.cpu_pct, s.io_pct, s.net_pct), (100.0, 0.0, Some(0.0)));
        assert_eq!(s.step, 5);
        // No memory data: 0 %, not NaN.
        let none = Score::of(&HostSample::default());
        assert_eq!((none.value, none.mem_pct, none.step), (0.0, 0.0, 0));
    }

    #[test]
    fn busiest_first_then_memory_then_no_data() {
        let a = Score::of(&sample(80.0, 10.0, Some(5.0), 10.0)); // 44
        let b = Score::of(&sample(20.0, 90.0, None, 10.0)); // 37
        let c = Score::of(&sample(20.0, 90.0, None, 70.0)); // 37, more memory
        let mut v = [None, Some(b), Some(a), Some(c)];
        v.sort_by(|x, y| busiest_first(x.as_ref(), y.as_ref()));
        let order: Vec<Option<(f64, i64)>> = v
            .iter()
            .map(|s| s.map(|s| (s.value, s.mem_pct.round() as i64)))
            .collect();
        assert_eq!(
            order,
            vec![Some((44.0, 10)), Some((37.0, 70)), Some((37.0, 10)), None]
        );
    }
}
