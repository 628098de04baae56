//! Metrics arriving from agent-monitor.
//!
//! Owns: de-duplication by batch sequence number (a per-agent high-water
//! mark, persisted, so replays after reconnects or controller restarts are
//! stored once), the newest sample and host facts of every host in memory
//! (overview, `/api/hosts`), and fan-out of accepted batches to subscribers
//! (the metric store and alerts of later work). Knows nothing about QUIC or
//! HTTP.

pub mod codec;
pub mod embedded;
pub mod fields;
pub mod influx;
pub mod score;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use certs::AgentId;
use protocol::metrics::{HostFacts, HostSample};
use serde::Serialize;
use tokio::sync::broadcast;
use tracing::warn;

use crate::inventory::Inventory;
pub use embedded::{EmbeddedStore, Retention, StoreError};
pub use store::MetricStore;

/// A batch accepted for storage.
#[derive(Debug, Clone)]
pub struct Batch {
    pub agent_id: AgentId,
    pub seq: u64,
    pub samples: Vec<HostSample>,
}

#[derive(Debug, Default)]
struct HostState {
    latest: Option<HostSample>,
    facts: Option<HostFacts>,
    /// Highest batch sequence stored.
    hwm: u64,
    persisted_hwm: u64,
    batches: u64,
    duplicates: u64,
    /// Batches the agent reported dropping (its buffer was full).
    dropped_by_agent: u64,
    /// Samples the store refused (clock far off, too old).
    rejected: u64,
}

/// What `/api/hosts` shows of a host's metrics.
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    pub agent_id: AgentId,
    pub facts: Option<HostFacts>,
    pub latest: Option<HostSample>,
    pub last_seq: u64,
    pub batches: u64,
    pub duplicates: u64,
    pub dropped_by_agent: u64,
    pub rejected_samples: u64,
}

/// The outcome of [`Metrics::ingest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Everything up to this seq is stored durably (the cumulative ack).
    pub durable: u64,
    /// The batch had been stored before (a replay).
    pub duplicate: bool,
}

pub struct Metrics {
    hosts: Mutex<HashMap<AgentId, HostState>>,
    inventory: Arc<Inventory>,
    store: MetricStore,
    tx: broadcast::Sender<Arc<Batch>>,
    flush_every: std::time::Duration,
    flushed_at: Mutex<std::time::Instant>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(
        inventory: Arc<Inventory>,
        store: MetricStore,
    ) -> Result<Metrics, crate::inventory::Error> {
        let mut hosts = HashMap::new();
        for (id, hwm, facts) in inventory.metric_state()? {
            hosts.insert(
                id,
                HostState {
                    hwm,
                    persisted_hwm: hwm,
                    facts,
                    ..Default::default()
                },
            );
        }
        let (tx, _) = broadcast::channel(4096);
        Ok(Metrics {
            hosts: Mutex::new(hosts),
            inventory,
            store,
            tx,
            flush_every: std::time::Duration::from_secs(1),
            flushed_at: Mutex::new(std::time::Instant::now()),
        })
    }

    /// Stores a batch unless it was stored before.
    pub fn ingest(
        &self,
        agent_id: &AgentId,
        seq: u64,
        dropped_before: u64,
        samples: Vec<HostSample>,
    ) -> Ingested {
        let mut hosts = self.hosts.lock().expect("metrics lock");
        let h = hosts.entry(agent_id.clone()).or_default();
        if seq <= h.hwm {
            h.duplicates += 1;
            return Ingested {
                durable: h.persisted_hwm,
                duplicate: true,
            };
        }
        // Into the store before the high-water mark moves, under the same
        // lock: a flush never persists a mark ahead of the data.
        for s in &samples {
            match self
                .store
                .append(agent_id.as_str(), s.ts_ms as i64, &fields::flatten(s))
            {
                Ok(_) => {}
                Err(StoreError::Rejected(why)) => {
                    h.rejected += 1;
                    if h.rejected.is_power_of_two() {
                        warn!(%agent_id, rejected = h.rejected, "sample refused: {why}");
                    }
                }
                Err(e) => warn!(%agent_id, error = %e, "metric store write failed"),
            }
        }
        h.hwm = seq;
        h.batches += 1;
        h.dropped_by_agent += dropped_before;
        if let Some(newest) = samples.iter().max_by_key(|s| s.ts_ms)
            && h.latest.as_ref().is_none_or(|l| newest.ts_ms >= l.ts_ms)
        {
            let mut newest = newest.clone();
            // Filesystems are sampled every few minutes; in between the
            // newest sample has none, and the overview would blink "–".
            if newest.filesystems.is_empty()
                && let Some(l) = h.latest.take()
            {
                newest.filesystems = l.filesystems;
            }
            h.latest = Some(newest);
        }
        let durable = h.persisted_hwm;
        drop(hosts);
        // Nobody listening is fine: the newest sample is kept above.
        let _ = self.tx.send(Arc::new(Batch {
            agent_id: agent_id.clone(),
            seq,
            samples,
        }));
        Ingested {
            durable,
            duplicate: false,
        }
    }

    /// How often [`Metrics::flush_if_due`] flushes. Longer is cheaper (each
    /// flush rewrites every open block) and loses nothing: agents keep
    /// what is not acknowledged, and acks wait for the flush.
    pub fn with_flush_every(mut self, every: std::time::Duration) -> Metrics {
        self.flush_every = every;
        self
    }

    /// Flushes when the interval has passed; called every second.
    pub fn flush_if_due(&self) {
        {
            let mut at = self.flushed_at.lock().expect("flush clock lock");
            if at.elapsed() < self.flush_every {
                return;
            }
            *at = std::time::Instant::now();
        }
        self.flush();
    }

    pub fn store(&self) -> &MetricStore {
        &self.store
    }

    /// The highest batch stored durably for an agent (sent at connect so
    /// an agent that lost its buffer continues numbering after it).
    pub fn high_water_mark(&self, agent_id: &AgentId) -> u64 {
        self.hosts
            .lock()
            .expect("metrics lock")
            .get(agent_id)
            .map_or(0, |h| h.persisted_hwm)
    }

    pub fn set_facts(&self, agent_id: &AgentId, facts: HostFacts) {
        if let Err(e) = self.inventory.set_facts(agent_id, &facts) {
            warn!(%agent_id, error = %e, "cannot store host facts");
        }
        self.hosts
            .lock()
            .expect("metrics lock")
            .entry(agent_id.clone())
            .or_default()
            .facts = Some(facts);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.tx.subscribe()
    }

    pub fn hosts(&self) -> Vec<HostView> {
        let hosts = self.hosts.lock().expect("metrics lock");
        let mut v: Vec<HostView> = hosts
            .iter()
            .map(|(id, h)| HostView {
                agent_id: id.clone(),
                facts: h.facts.clone(),
                latest: h.latest.clone(),
                last_seq: h.hwm,
                batches: h.batches,
                duplicates: h.duplicates,
                dropped_by_agent: h.dropped_by_agent,
                rejected_samples: h.rejected,
            })
            .collect();
        v.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        v
    }

    /// Makes what was ingested durable: the store's open blocks, then the
    /// high-water marks they cover. Called every second and at shutdown;
    /// acknowledgements to agents only ever name durable batches.
    pub fn flush(&self) {
        let changed: Vec<(AgentId, u64)> = {
            let hosts = self.hosts.lock().expect("metrics lock");
            hosts
                .iter()
                .filter(|(_, h)| h.hwm != h.persisted_hwm)
                .map(|(id, h)| (id.clone(), h.hwm))
                .collect()
        };
        if changed.is_empty() {
            return;
        }
        if let Err(e) = self.store.flush() {
            warn!(error = %e, "cannot write metric blocks; will retry");
            return;
        }
        match self.inventory.save_metric_seqs(&changed) {
            Ok(()) => {
                let mut hosts = self.hosts.lock().expect("metrics lock");
                for (id, seq) in changed {
                    if let Some(h) = hosts.get_mut(&id) {
                        h.persisted_hwm = h.persisted_hwm.max(seq);
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot persist metric sequence numbers"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_stored_once_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Arc::new(Inventory::open(&dir.path().join("i.db")).unwrap());
        let id = AgentId::generate();
        // Only enrolled agents have a row to persist into.
        let ca = certs::CertificateAuthority::load_or_create(dir.path()).unwrap();
        let (_, csr) = certs::AgentIdentity::new_key_and_csr().unwrap();
        let cert = ca
            .sign_agent(
                &csr,
                &id,
                certs::Role::Monitor,
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        let facts = crate::inventory::AgentFacts {
            hostname: "h",
            os: "o",
            arch: "a",
            agent_version: "v",
        };
        let policy = certs::TokenPolicy {
            role: certs::Role::Monitor,
            group: None,
            room: None,
            expires_at: 0,
            uses_left: 0,
        };
        inv.record_enrollment(
            &cert,
            &facts,
            &policy,
            &certs::JoinToken::generate().hash(),
            "fp",
            1,
        )
        .unwrap();
        let store =
            Arc::new(EmbeddedStore::open(&dir.path().join("m.db"), Retention::default()).unwrap());
        let m = Metrics::new(inv.clone(), MetricStore::Embedded(store.clone())).unwrap();
        let mut rx = m.subscribe();
        let now = embedded::now_ms() as u64;
        let s = |ts: u64| {
            vec![HostSample {
                ts_ms: now - 100_000 + ts,
                mem: Some(protocol::metrics::MemStats {
                    total_bytes: ts,
                    ..Default::default()
                }),
                ..Default::default()
            }]
        };
        let new = |durable| Ingested {
            durable,
            duplicate: false,
        };
        let dup = |durable| Ingested {
            durable,
            duplicate: true,
        };
        assert_eq!(m.ingest(&id, 1, 0, s(10)), new(0), "nothing durable yet");
        assert_eq!(m.ingest(&id, 2, 0, s(20)), new(0));
        assert_eq!(m.ingest(&id, 2, 0, s(20)), dup(0));
        m.flush();
        assert_eq!(
            m.ingest(&id, 1, 0, s(10)),
            dup(2),
            "old duplicate, now durable"
        );
        assert_eq!(
            m.ingest(&id, 5, 2, s(50)),
            new(2),
            "gap after agent-side drops"
        );
        let h = &m.hosts()[0];
        assert_eq!(
            (h.batches, h.duplicates, h.dropped_by_agent, h.last_seq),
            (3, 2, 2, 5)
        );
        assert_eq!(h.latest.as_ref().unwrap().ts_ms, now - 100_000 + 50);
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|b| b.seq)
            .collect();
        assert_eq!(got, vec![1, 2, 5]);
        // A sample from a host whose clock is an hour ahead is counted, not stored.
        m.ingest(&id, 6, 0, s(3_600_000 + 100_000));
        assert_eq!(m.hosts()[0].rejected_samples, 1);
        m.flush();
        drop(m);
        let m = Metrics::new(inv, MetricStore::Embedded(store.clone())).unwrap();
        assert_eq!(m.high_water_mark(&id), 6);
        assert!(
            m.ingest(&id, 5, 0, s(50)).duplicate,
            "still a duplicate after a restart"
        );
        assert_eq!(m.ingest(&id, 7, 0, s(70)), new(6));
        // The samples reached the store.
        let from = (now - 100_000) as i64;
        let r = store
            .query(id.as_str(), &["mem.total_bytes"], from, from + 100, 100)
            .unwrap();
        let values: Vec<f64> = r.series[0].points.iter().map(|p| p.1).collect();
        assert_eq!(values, vec![10.0, 20.0, 50.0, 70.0]);
    }
}
