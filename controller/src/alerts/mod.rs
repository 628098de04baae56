//! Alerts: rules evaluated centrally on every arriving sample ([`rules`]),
//! each episode start and end stored, and mailed ([`mailer`]) with retries
//! while the SMTP server is down (the alert stays `pending`, visible, and
//! is sent when the server is back). Knows nothing about QUIC or HTTP.

pub mod mailer;
pub mod rules;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::inventory::{Inventory, StoredAlert};
use crate::metrics::Metrics;
use mailer::{Mailer, SmtpSettings};
use rules::{AlertEngine, AlertEvent, AlertKind, AlertRules};

/// Events older than this when they are produced (a backlog replayed after
/// an outage) are stored but not mailed: the news is stale.
const STALE_MS: i64 = 10 * 60_000;
/// After this many failed attempts a mail is given up (`failed`).
const MAX_TRIES: u32 = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    pub rules: AlertRules,
    /// Where alert mail goes; none configured = alerts are only listed.
    pub smtp: Option<SmtpSettings>,
    /// How often unsent mail is retried.
    pub mail_retry_secs: u64,
    /// When a memory-low alert fires, tell the host's agent to drop its
    /// page cache (what the original called automatic cache cleaning).
    pub drop_caches_on_memory_low: bool,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            rules: AlertRules::default(),
            smtp: None,
            mail_retry_secs: 30,
            drop_caches_on_memory_low: false,
        }
    }
}

pub struct Alerts {
    engine: Mutex<AlertEngine>,
    inventory: Arc<Inventory>,
    metrics: Arc<Metrics>,
    mailer: Option<Mailer>,
    retry: Duration,
    drop_caches: Option<Arc<crate::gateway::Registry>>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts").finish_non_exhaustive()
    }
}

fn kind_name(k: AlertKind) -> &'static str {
    match k {
        AlertKind::CpuHigh => "cpu_high",
        AlertKind::MemoryLow => "memory_low",
        AlertKind::FullGcFrequent => "full_gc_frequent",
        AlertKind::HostSilent => "host_silent",
    }
}

impl Alerts {
    /// `registry` reaches the agents (for cache cleaning).
    pub fn new(
        settings: &AlertSettings,
        inventory: Arc<Inventory>,
        metrics: Arc<Metrics>,
        registry: Arc<crate::gateway::Registry>,
    ) -> Result<Alerts, String> {
        settings
            .rules
            .validate()
            .map_err(|e| format!("alerts.rules: {e}"))?;
        let mailer = match &settings.smtp {
            Some(s) => Some(Mailer::new(s.clone()).map_err(|e| format!("alerts.smtp: {e}"))?),
            None => None,
        };
        Ok(Alerts {
            engine: Mutex::new(AlertEngine::new(settings.rules.clone())),
            inventory,
            metrics,
            mailer,
            retry: Duration::from_secs(settings.mail_retry_secs.max(1)),
            drop_caches: settings.drop_caches_on_memory_low.then_some(registry),
        })
    }

    /// Episodes open now: (host, kind, since ms).
    pub fn firing(&self) -> Vec<(String, AlertKind, u64)> {
        self.engine.lock().expect("alert engine lock").firing()
    }

    pub fn list(&self, limit: usize) -> Result<Vec<StoredAlert>, crate::inventory::Error> {
        self.inventory.alerts(limit, false)
    }

    /// Evaluates samples as they arrive and silence once a second, and
    /// retries unsent mail, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut batches = self.metrics.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut retry = tokio::time::interval(self.retry);
        loop {
            let events = tokio::select! {
                _ = shutdown.cancelled() => return,
                b = batches.recv() => match b {
                    Ok(batch) => {
                        let mut engine = self.engine.lock().expect("alert engine lock");
                        batch.samples.iter().flat_map(|s| engine.observe(batch.agent_id.as_str(), s)).collect()
                    }
                    Err(RecvError::Lagged(n)) => {
                        warn!(skipped = n, "alert evaluation fell behind; some samples were not evaluated");
                        Vec::new()
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    let now = crate::metrics::embedded::now_ms() as u64;
                    self.engine.lock().expect("alert engine lock").tick(now)
                }
                _ = retry.tick() => {
                    self.retry_pending().await;
                    Vec::new()
                }
            };
            for e in events {
                self.record(e).await;
            }
        }
    }

    fn hostname(&self, agent_id: &str) -> String {
        self.metrics
            .hosts()
            .into_iter()
            .find(|h| h.agent_id.as_str() == agent_id)
            .and_then(|h| h.facts.map(|f| f.hostname))
            .unwrap_or_else(|| agent_id.to_string())
    }

    async fn record(&self, e: AlertEvent) {
        let now = crate::metrics::embedded::now_ms();
        let state = match &self.mailer {
            None => "off",
            Some(_) if (e.at_ms as i64) < now - STALE_MS => "stale",
            Some(_) => "pending",
        };
        let kind = kind_name(e.kind);
        info!(host = %e.host, kind, firing = e.firing, "{}", e.message);
        if e.firing
            && e.kind == AlertKind::MemoryLow
            && let Some(registry) = &self.drop_caches
            && let Ok(id) = e.host.parse::<certs::AgentId>()
            && registry.send(&id, protocol::ControllerMsg::DropCaches)
        {
            info!(host = %e.host, "asked the agent to drop its page cache");
        }
        let id = match self.inventory.insert_alert(
            &e.host,
            kind,
            e.firing,
            e.at_ms as i64,
            &e.message,
            state,
        ) {
            Ok(id) => id,
            Err(err) => {
                warn!(error = %err, "cannot store an alert");
                return;
            }
        };
        if state == "pending" {
            self.send(id, &e.host, kind, e.firing, &e.message).await;
        }
    }

    async fn send(&self, id: i64, host: &str, kind: &str, firing: bool, message: &str) {
        let Some(mailer) = &self.mailer else { return };
        let name = self.hostname(host);
        let subject = format!(
            "[MyPlatform] {} {kind} on {name}",
            if firing { "ALERT" } else { "RESOLVED" }
        );
        let body = format!("{message}\n\nhost: {name} ({host})\n");
        let (state, error) = match mailer.send(&subject, &body).await {
            Ok(()) => ("sent", None),
            Err(e) => {
                warn!(alert = id, error = %e, "alert mail not sent; will retry");
                ("pending", Some(e.to_string()))
            }
        };
        if let Err(e) = self.inventory.set_alert_mail(id, state, error.as_deref()) {
            warn!(error = %e, "cannot record the mail state of an alert");
        }
    }

    async fn retry_pending(&self) {
        let pending = match self.inventory.alerts(100, true) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot list unsent alerts");
                return;
            }
        };
        for a in pending {
            if a.mail_tries >= MAX_TRIES {
                let _ = self
                    .inventory
                    .set_alert_mail(a.id, "failed", a.mail_error.as_deref());
                continue;
            }
            self.send(a.id, &a.host, &a.kind, a.firing, &a.message)
                .await;
        }
    }
}
