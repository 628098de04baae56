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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use certs::AgentId;
use protocol::metrics::{HostFacts, HostSample};
use serde::Serialize;
use tokio::sync::broadcast;
use tracing::warn;

use crate::inventory::Inventory;

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
}

pub struct Metrics {
    hosts: Mutex<HashMap<AgentId, HostState>>,
    inventory: Arc<Inventory>,
    tx: broadcast::Sender<Arc<Batch>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(inventory: Arc<Inventory>) -> Result<Metrics, crate::inventory::Error> {
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
            tx,
        })
    }

    /// Accepts a batch unless it was stored before; returns the cumulative
    /// ack (everything up to it is stored).
    pub fn ingest(
        &self,
        agent_id: &AgentId,
        seq: u64,
        dropped_before: u64,
        samples: Vec<HostSample>,
    ) -> u64 {
        let mut hosts = self.hosts.lock().expect("metrics lock");
        let h = hosts.entry(agent_id.clone()).or_default();
        if seq <= h.hwm {
            h.duplicates += 1;
            return h.hwm;
        }
        h.hwm = seq;
        h.batches += 1;
        h.dropped_by_agent += dropped_before;
        if let Some(newest) = samples.iter().max_by_key(|s| s.ts_ms)
            && h.latest.as_ref().is_none_or(|l| newest.ts_ms >= l.ts_ms)
        {
            h.latest = Some(newest.clone());
        }
        let ack = h.hwm;
        drop(hosts);
        // Nobody listening is fine: the newest sample is kept above.
        let _ = self.tx.send(Arc::new(Batch {
            agent_id: agent_id.clone(),
            seq,
            samples,
        }));
        ack
    }

    /// The highest batch stored for an agent (sent at connect so an agent
    /// that lost its buffer continues numbering after it).
    pub fn high_water_mark(&self, agent_id: &AgentId) -> u64 {
        self.hosts
            .lock()
            .expect("metrics lock")
            .get(agent_id)
            .map_or(0, |h| h.hwm)
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
            })
            .collect();
        v.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        v
    }

    /// Persists high-water marks that moved. Called every second and at
    /// shutdown: after a crash at most that much is stored twice, which the
    /// store's idempotent writes absorb.
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
        inv.record_enrollment(&cert, &facts, &policy, 1).unwrap();
        let m = Metrics::new(inv.clone()).unwrap();
        let mut rx = m.subscribe();
        let s = |ts| {
            vec![HostSample {
                ts_ms: ts,
                ..Default::default()
            }]
        };
        assert_eq!(m.ingest(&id, 1, 0, s(10)), 1);
        assert_eq!(m.ingest(&id, 2, 0, s(20)), 2);
        assert_eq!(m.ingest(&id, 2, 0, s(20)), 2, "duplicate");
        assert_eq!(m.ingest(&id, 1, 0, s(10)), 2, "old duplicate");
        assert_eq!(m.ingest(&id, 5, 2, s(50)), 5, "gap after agent-side drops");
        let h = &m.hosts()[0];
        assert_eq!(
            (h.batches, h.duplicates, h.dropped_by_agent, h.last_seq),
            (3, 2, 2, 5)
        );
        assert_eq!(h.latest.as_ref().unwrap().ts_ms, 50);
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|b| b.seq)
            .collect();
        assert_eq!(got, vec![1, 2, 5]);
        m.flush();
        drop(m);
        let m = Metrics::new(inv).unwrap();
        assert_eq!(m.high_water_mark(&id), 5);
        assert_eq!(
            m.ingest(&id, 5, 0, s(50)),
            5,
            "still a duplicate after a restart"
        );
        assert_eq!(m.ingest(&id, 6, 0, s(60)), 6);
    }
}
