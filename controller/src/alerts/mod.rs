//! Alerts: rules evaluated centrally on every arriving sample ([`rules`]),
//! each episode start and end stored, and mailed ([`mailer`]) with retries
//! while the SMTP server is down (the alert stays `pending`, visible, and
//! is sent when the server is back). Knows nothing about QUIC or HTTP.
//!
//! The rules and the recipients can be changed at run time (the alerts
//! page): they are stored in the inventory and then override the settings
//! file's, across restarts. The SMTP server itself (and its password) stays
//! in the settings file only.

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
const MAX_RECIPIENTS: usize = 50;
/// Inventory setting keys of what the alerts page changes.
const RULES_KEY: &str = "alerts.rules";
const RECIPIENTS_KEY: &str = "alerts.recipients";

/// A stored setting, when there is one that parses; a bad one is logged
/// and the settings file's value used instead.
fn stored<T: serde::de::DeserializeOwned>(inventory: &Inventory, key: &str) -> Option<T> {
    match inventory.setting(key) {
        Ok(Some(json)) => match serde_json::from_str(&json) {
            Ok(v) => Some(v),
            Err(e) => {
                warn!(key, error = %e, "stored setting unreadable; using the settings file's");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            warn!(key, error = %e, "cannot read a stored setting; using the settings file's");
            None
        }
    }
}

fn build_mailer(
    smtp: Option<&SmtpSettings>,
    to: &[String],
) -> Result<Option<Mailer>, mailer::MailError> {
    match smtp {
        Some(s) if !to.is_empty() => Mailer::new(SmtpSettings {
            to: to.to_vec(),
            ..s.clone()
        })
        .map(Some),
        _ => Ok(None),
    }
}

#[derive(Clone)]
struct MailTarget {
    recipients: Vec<String>,
    /// `None`: no SMTP server, or nobody to mail.
    mailer: Option<Mailer>,
}

/// A change from the alerts page that was refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] crate::inventory::Error),
}

/// Why a test mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum TestMailError {
    #[error("no SMTP server is configured (settings file, [alerts.smtp])")]
    NoSmtp,
    #[error("no recipient is set")]
    NoRecipients,
    #[error(transparent)]
    Failed(mailer::MailError),
}

/// The SMTP server as the alerts page shows it: never its credentials.
#[derive(Debug, Clone, Serialize)]
pub struct SmtpView {
    pub host: String,
    pub port: u16,
    pub security: mailer::Security,
    pub from: String,
}

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
    /// The SMTP server of the settings file, if any.
    smtp: Option<SmtpSettings>,
    /// Who alert mail goes to, and the mailer built for them: one lock, so
    /// a send never pairs one list with another's mailer.
    mail: Mutex<MailTarget>,
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
        // Checked even when stored recipients replace its `to`: a broken
        // file should be found at start, not at the first alert.
        if let Some(s) = &settings.smtp {
            Mailer::new(s.clone()).map_err(|e| format!("alerts.smtp: {e}"))?;
        }
        let rules = stored::<AlertRules>(&inventory, RULES_KEY)
            .filter(|r| r.validate().is_ok())
            .unwrap_or_else(|| settings.rules.clone());
        let recipients = stored::<Vec<String>>(&inventory, RECIPIENTS_KEY)
            .filter(|r| mailer::check_recipients(r).is_ok())
            .unwrap_or_else(|| {
                settings
                    .smtp
                    .as_ref()
                    .map(|s| s.to.clone())
                    .unwrap_or_default()
            });
        let mailer = build_mailer(settings.smtp.as_ref(), &recipients)
            .map_err(|e| format!("alerts.smtp: {e}"))?;
        Ok(Alerts {
            engine: Mutex::new(AlertEngine::new(rules)),
            inventory,
            metrics,
            smtp: settings.smtp.clone(),
            mail: Mutex::new(MailTarget { recipients, mailer }),
            retry: Duration::from_secs(settings.mail_retry_secs.max(1)),
            drop_caches: settings.drop_caches_on_memory_low.then_some(registry),
        })
    }

    fn mailer(&self) -> Option<Mailer> {
        self.mail.lock().expect("mail lock").mailer.clone()
    }

    /// The rules in force.
    pub fn rules(&self) -> AlertRules {
        self.engine
            .lock()
            .expect("alert engine lock")
            .rules()
            .clone()
    }

    /// Checks, stores and applies new rules (open episodes are judged by
    /// them from the next sample on).
    pub fn set_rules(&self, rules: AlertRules, by: &str) -> Result<AlertRules, SettingsError> {
        rules.validate().map_err(SettingsError::Invalid)?;
        let json =
            serde_json::to_string(&rules).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        self.inventory.set_setting(RULES_KEY, &json, by)?;
        self.engine
            .lock()
            .expect("alert engine lock")
            .set_rules(rules.clone());
        info!(by, rules = %json, "alert rules changed");
        Ok(rules)
    }

    /// Whether a memory-low alert asks the host to drop its page cache.
    pub fn drops_caches(&self) -> bool {
        self.drop_caches.is_some()
    }

    /// Who alert mail goes to.
    pub fn recipients(&self) -> Vec<String> {
        self.mail.lock().expect("mail lock").recipients.clone()
    }

    /// Checks, stores and applies a new recipient list (blank entries and
    /// repeats dropped). An empty list means alerts are only listed.
    pub fn set_recipients(&self, to: Vec<String>, by: &str) -> Result<Vec<String>, SettingsError> {
        let mut clean: Vec<String> = Vec::new();
        for a in to.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            if !clean.iter().any(|c| c == a) {
                clean.push(a.to_owned());
            }
        }
        if clean.len() > MAX_RECIPIENTS {
            return Err(SettingsError::Invalid(format!(
                "at most {MAX_RECIPIENTS} recipients, not {}",
                clean.len()
            )));
        }
        mailer::check_recipients(&clean).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        let mailer = build_mailer(self.smtp.as_ref(), &clean)
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        let json =
            serde_json::to_string(&clean).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        self.inventory.set_setting(RECIPIENTS_KEY, &json, by)?;
        *self.mail.lock().expect("mail lock") = MailTarget {
            recipients: clean.clone(),
            mailer,
        };
        info!(by, recipients = clean.len(), "alert recipients changed");
        Ok(clean)
    }

    /// The SMTP server alert mail goes through, without its credentials.
    pub fn smtp(&self) -> Option<SmtpView> {
        self.smtp.as_ref().map(|s| SmtpView {
            host: s.host.clone(),
            port: s.port,
            security: s.security,
            from: s.from.clone(),
        })
    }

    /// Sends a test message to the recipients now; the list on success.
    pub async fn test_mail(&self, by: &str) -> Result<Vec<String>, TestMailError> {
        if self.smtp.is_none() {
            return Err(TestMailError::NoSmtp);
        }
        let target = self.mail.lock().expect("mail lock").clone();
        let Some(mailer) = target.mailer else {
            return Err(TestMailError::NoRecipients);
        };
        let body = format!(
            "This is a test message from MyPlatform, sent by {by} from the alerts page.\n\nAlert mail (CPU high, memory low, frequent full GC, silent hosts) will reach this address.\n"
        );
        mailer
            .send("[MyPlatform] test message", &body)
            .await
            .map_err(TestMailError::Failed)?;
        info!(by, "test mail sent");
        Ok(target.recipients)
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
        let state = match self.mailer() {
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
        let Some(mailer) = self.mailer() else { return };
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
