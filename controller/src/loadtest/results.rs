//! Per-second load-test results merged across labels and generators.
//!
//! Generators report each second per sampler label with an HDR histogram
//! of elapsed milliseconds; here histograms are added, so a percentile over
//! several generators is the percentile of all their samples (to the
//! histogram's 3 significant digits), never an average of percentiles.
//! Pure: rows in, points out; storage is `inventory::tasks`'.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use serde::{Deserialize, Serialize};

use crate::inventory::SecondRow;

/// One second of a task (or of one generator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub sec: i64,
    /// Samples that ended in this second (= TPS).
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
    pub mean_ms: f64,
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

/// The merged series of a task and of each of its generators.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    pub total: Vec<Point>,
    pub generators: BTreeMap<String, Vec<Point>>,
}

/// Whole-run figures, kept on the task once it is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub samples: u64,
    pub errors: u64,
    pub bytes: u64,
    /// Seconds from the first to the last second with samples.
    pub secs: u64,
    pub tps: f64,
    pub error_pct: f64,
    pub mean_ms: f64,
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
    pub labels: Vec<LabelTotals>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelTotals {
    pub label: String,
    pub samples: u64,
    pub errors: u64,
    pub mean_ms: f64,
    pub p90_ms: u64,
    pub p99_ms: u64,
}

/// Counts and a histogram being summed.
#[derive(Debug, Clone)]
pub struct Acc {
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
    pub hist: Histogram<u64>,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            count: 0,
            errors: 0,
            bytes: 0,
            // 3 significant digits, auto-resizing: what the agents send.
            hist: Histogram::new(3).unwrap_or_else(|_| unreachable!("3 digits are valid")),
        }
    }
}

impl Acc {
    /// Adds one row; a histogram that does not decode (or cannot be added)
    /// still counts its samples, and says so once in the log.
    pub fn add(&mut self, row: &SecondRow) {
        self.count += row.count;
        self.errors += row.errors;
        self.bytes += row.bytes;
        match decode(&row.hist) {
            Ok(h) => {
                if let Err(e) = self.hist.add(&h) {
                    tracing::warn!(agent = %row.agent_id, sec = row.sec, error = ?e, "histogram not added");
                }
            }
            Err(e) => {
                tracing::warn!(agent = %row.agent_id, sec = row.sec, error = %e, "bad histogram")
            }
        }
    }

    pub fn point(&self, sec: i64) -> Point {
        let h = &self.hist;
        let empty = h.is_empty();
        let q = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        Point {
            sec,
            count: self.count,
            errors: self.errors,
            bytes: self.bytes,
            mean_ms: if empty { 0.0 } else { h.mean() },
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: if empty { 0 } else { h.max() },
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<Histogram<u64>, String> {
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("{e:?}"))
}

/// Points per second over all rows, and per generator.
pub fn series(rows: &[SecondRow]) -> Series {
    let mut total: BTreeMap<i64, Acc> = BTreeMap::new();
    let mut per: BTreeMap<&str, BTreeMap<i64, Acc>> = BTreeMap::new();
    for r in rows {
        total.entry(r.sec).or_default().add(r);
        per.entry(&r.agent_id)
            .or_default()
            .entry(r.sec)
            .or_default()
            .add(r);
    }
    let points = |m: BTreeMap<i64, Acc>| m.into_iter().map(|(s, a)| a.point(s)).collect();
    Series {
        total: points(total),
        generators: per
            .into_iter()
            .map(|(a, m)| (a.to_string(), points(m)))
            .collect(),
    }
}

/// Totals of every row.
pub fn totals(rows: &[SecondRow]) -> Totals {
    let mut all = Acc::default();
    let mut labels: BTreeMap<&str, Acc> = BTreeMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for r in rows {
        all.add(r);
        labels.entry(&r.label).or_default().add(r);
        if r.count > 0 {
            first = first.min(r.sec);
            last = last.max(r.sec);
        }
    }
    let secs = if first <= last {
        (last - first + 1) as u64
    } else {
        0
    };
    let p = all.point(0);
    Totals {
        samples: all.count,
        errors: all.errors,
        bytes: all.bytes,
        secs,
        tps: if secs > 0 {
            all.count as f64 / secs as f64
        } else {
            0.0
        },
        error_pct: if all.count > 0 {
            100.0 * all.errors as f64 / all.count as f64
        } else {
            0.0
        },
        mean_ms: p.mean_ms,
        p50_ms: p.p50_ms,
        p90_ms: p.p90_ms,
        p95_ms: p.p95_ms,
        p99_ms: p.p99_ms,
        max_ms: p.max_ms,
        labels: labels
            .into_iter()
            .map(|(l, a)| {
                let p = a.point(0);
                LabelTotals {
                    label: l.to_string(),
                    samples: a.count,
                    errors: a.errors,
                    mean_ms: p.mean_ms,
                    p90_ms: p.p90_ms,
                    p99_ms: p.p99_ms,
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use hdrhistogram::serialization::Serializer;

    fn row(agent: &str, sec: i64, label: &str, values: &[u64]) -> SecondRow {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in values {
            h.record(*v).unwrap();
        }
        let mut hist = Vec::new();
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(&h, &mut hist)
            .unwrap();
        SecondRow {
            row: 0,
            agent_id: agent.into(),
            sec,
            label: label.into(),
            count: values.len() as u64,
            errors: values.iter().filter(|v| **v > 100).count() as u64,
            bytes: 10 * values.len() as u64,
            hist,
        }
    }

    #[test]
    fn percentiles_come_from_all_samples_not_from_averaging() {
        // Generator a: 99 fast samples; b: 1 fast, 99 slow. Averaging the
        // two p50s would say ~(1+200)/2; the union's p50 is in between the
        // two populations' boundary: 100 fast of 199... exactly 1 ms.
        let fast: Vec<u64> = vec![1; 99];
        let mut slow: Vec<u64> = vec![200; 99];
        slow.push(1);
        let rows = vec![row("a", 10, "x", &fast), row("b", 10, "x", &slow)];
        let s = series(&rows);
        assert_eq!(s.total.len(), 1);
        let p = &s.total[0];
        assert_eq!(p.count, 199);
        assert_eq!(p.p50_ms, 1);
        assert_eq!(p.p90_ms, 200);
        assert_eq!(p.errors, 99);
        assert_eq!(s.generators["a"][0].p99_ms, 1);
        assert_eq!(s.generators["b"][0].p50_ms, 200);
    }

    #[test]
    fn totals_span_the_seconds_with_samples() {
        let rows = vec![
            row("a", 10, "x", &[5, 6]),
            row("a", 12, "y", &[7]),
            row("b", 11, "x", &[1000]),
        ];
        let t = totals(&rows);
        assert_eq!(t.samples, 4);
        assert_eq!(t.secs, 3);
        assert!((t.tps - 4.0 / 3.0).abs() < 1e-9);
        assert_eq!(t.labels.len(), 2);
        assert_eq!(t.max_ms, 1000);
        assert_eq!(t.errors, 1);
    }

    #[test]
    fn a_bad_histogram_still_counts_its_samples() {
        let mut r = row("a", 1, "x", &[5]);
        r.hist = vec![1, 2, 3];
        let s = series(&[r]);
        assert_eq!(s.total[0].count, 1);
        assert_eq!(s.total[0].p99_ms, 0);
    }
}
