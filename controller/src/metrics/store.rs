//! The metric store the rest of the controller uses: the embedded store
//! (default) or InfluxDB, chosen by configuration. Both answer the same
//! queries with the same shapes; callers never know which one it is.

use std::sync::Arc;

use super::embedded::{
    EmbeddedStore, QueryResult, Resolution, Series, StoreError, bucket_step, check_range, now_ms,
};
use super::influx::{InfluxError, InfluxStore, Row};

/// Samples further in the future than this are refused (clock trouble).
const MAX_FUTURE_MS: i64 = 5 * 60_000;

#[derive(Clone)]
pub enum MetricStore {
    Embedded(Arc<EmbeddedStore>),
    Influx(InfluxStore),
}

impl std::fmt::Debug for MetricStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MetricStore::Embedded(_) => "MetricStore::Embedded",
            MetricStore::Influx(_) => "MetricStore::Influx",
        })
    }
}

fn influx_err(e: InfluxError) -> StoreError {
    StoreError::Rejected(format!("InfluxDB: {e}"))
}

impl MetricStore {
    /// Adds one sample's fields (already finite; see `fields::flatten`).
    pub fn append(
        &self,
        host: &str,
        ts_ms: i64,
        fields: &[(String, f64)],
    ) -> Result<(), StoreError> {
        match self {
            MetricStore::Embedded(s) => s.append(host, ts_ms, fields).map(drop),
            MetricStore::Influx(s) => {
                if ts_ms > now_ms() + MAX_FUTURE_MS {
                    return Err(StoreError::Rejected(format!(
                        "sample of {host} is in the future (check the host's clock)"
                    )));
                }
                // Queued; the writer retries and counts what a full queue drops.
                s.write(vec![Row {
                    host: host.to_string(),
                    ts_ms,
                    fields: fields.to_vec(),
                }]);
                Ok(())
            }
        }
    }

    /// Makes appended data durable (embedded). InfluxDB rows are durable
    /// once queued, within the queue's bound.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self {
            MetricStore::Embedded(s) => s.flush(),
            MetricStore::Influx(_) => Ok(()),
        }
    }

    pub async fn query(
        &self,
        host: &str,
        fields: &[String],
        from: i64,
        to: i64,
        max_points: usize,
    ) -> Result<QueryResult, StoreError> {
        check_range(from, to, max_points)?;
        match self {
            MetricStore::Embedded(s) => {
                let (s, host, fields) = (s.clone(), host.to_string(), fields.to_vec());
                tokio::task::spawn_blocking(move || {
                    let names: Vec<&str> = fields.iter().map(String::as_str).collect();
                    s.query(&host, &names, from, to, max_points)
                })
                .await
                .map_err(|e| StoreError::Rejected(e.to_string()))?
            }
            MetricStore::Influx(s) => {
                let (resolution, step) = influx_step(from, to, max_points);
                let names: Vec<&str> = fields.iter().map(String::as_str).collect();
                let got = s
                    .query_host(host, &names, from, to, step)
                    .await
                    .map_err(influx_err)?;
                let series = fields
                    .iter()
                    .map(|f| Series {
                        field: f.clone(),
                        points: got
                            .iter()
                            .find(|(n, _)| n == f)
                            .map(|(_, p)| p.iter().map(|p| (p.ts_ms, p.value)).collect())
                            .unwrap_or_default(),
                    })
                    .collect();
                Ok(QueryResult {
                    resolution,
                    step_ms: step.unwrap_or(1000),
                    series,
                })
            }
        }
    }

    /// The mean of each field over `hosts` (see
    /// [`EmbeddedStore::query_mean`]), one series per field.
    pub async fn query_mean(
        &self,
        hosts: &[String],
        fields: &[String],
        from: i64,
        to: i64,
        max_points: usize,
    ) -> Result<QueryResult, StoreError> {
        check_range(from, to, max_points)?;
        match self {
            MetricStore::Embedded(s) => {
                let (s, hosts, fields) = (s.clone(), hosts.to_vec(), fields.to_vec());
                tokio::task::spawn_blocking(move || {
                    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
                    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                    s.query_mean(&names, &fields, from, to, max_points)
                })
                .await
                .map_err(|e| StoreError::Rejected(e.to_string()))?
            }
            MetricStore::Influx(s) => {
                let (resolution, step) = influx_step(from, to, max_points);
                let step = step.unwrap_or(1000);
                let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
                let mut series = Vec::with_capacity(fields.len());
                for field in fields {
                    let pts = s
                        .query_hosts_mean(&names, field, from, to, step)
                        .await
                        .map_err(influx_err)?;
                    series.push(Series {
                        field: field.clone(),
                        points: pts.iter().map(|p| (p.ts_ms, p.value)).collect(),
                    });
                }
                Ok(QueryResult {
                    resolution,
                    step_ms: step,
                    series,
                })
            }
        }
    }
}

/// What `/api/metrics/status` shows: which store, and for InfluxDB its
/// write queue (rows waiting, retried, lost when the queue overflowed).
#[derive(Debug, serde::Serialize)]
pub struct StoreStatus {
    pub backend: &'static str,
    pub stored_bytes: Option<u64>,
    pub influxdb: Option<super::influx::WriterStats>,
}

impl MetricStore {
    pub fn status(&self) -> StoreStatus {
        match self {
            MetricStore::Embedded(s) => StoreStatus {
                backend: "embedded",
                stored_bytes: s.stored_bytes().ok(),
                influxdb: None,
            },
            MetricStore::Influx(s) => StoreStatus {
                backend: "influxdb",
                stored_bytes: None,
                influxdb: Some(s.stats()),
            },
        }
    }
}

/// Raw points when they fit the budget, else means over whole seconds.
fn influx_step(from: i64, to: i64, max_points: usize) -> (Resolution, Option<i64>) {
    let span = to - from;
    if span / 1000 <= max_points as i64 {
        return (Resolution::Raw, None);
    }
    let step = bucket_step(from, to, max_points, Resolution::Raw);
    let res = if step >= 3_600_000 {
        Resolution::Hour
    } else {
        Resolution::Minute
    };
    (res, Some(step))
}
