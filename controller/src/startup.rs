//! Builds the whole controller from [`Settings`]: `main` and the tests call
//! the same [`Controller::start`], the tests on port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use certs::CertificateAuthority;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::auth::{Auth, SessionLimits};
use crate::config::Settings;
use crate::files::FileStore;
use crate::gateway::{Gateway, Registry};
use crate::inventory::Inventory;
use crate::metrics::influx::InfluxStore;
use crate::metrics::{EmbeddedStore, MetricStore, Metrics};
use crate::vault::Vault;
use crate::web;

/// File name of the inventory inside the data directory.
pub const INVENTORY_FILE: &str = "inventory.db";
/// File name of the embedded metric store inside the data directory.
pub const METRICS_FILE: &str = "metrics.db";
/// Agent packages the controller deploys (`scripts/dist` tarballs).
pub const PACKAGES_DIR: &str = "packages";
/// The local file store inside the data directory.
pub const FILES_DIR: &str = "files";
/// Live shell recordings, until the session ends and they move to the file
/// store.
pub const RECORDING_SPOOL_DIR: &str = "spool/recordings";
/// Task artifacts and files fetched from generators.
pub const TASKS_DIR: &str = "tasks";
/// How often expired metric blocks are pruned.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Opens what the data directory holds (creating it on first start).
pub fn open_data_dir(
    settings: &Settings,
) -> anyhow::Result<(Arc<Inventory>, Arc<CertificateAuthority>)> {
    let dir = &settings.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let ca = CertificateAuthority::load_or_create(dir).context("loading the controller CA")?;
    let inventory = Inventory::open(&dir.join(INVENTORY_FILE)).context("opening the inventory")?;
    Ok((Arc::new(inventory), Arc::new(ca)))
}

async fn prune(store: MetricStore, shutdown: CancellationToken) {
    let MetricStore::Embedded(store) = store else {
        return;
    };
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = store.clone();
        let r =
            tokio::task::spawn_blocking(move || s.prune(crate::metrics::embedded::now_ms())).await;
        match r {
            Ok(Ok(n)) if n > 0 => tracing::info!(blocks = n, "expired metric blocks pruned"),
            Ok(Err(e)) => tracing::warn!(error = %e, "pruning metric blocks failed"),
            _ => {}
        }
    }
}

/// Recordings of sessions a crash interrupted are still in the spool:
/// store them (the session record learns where).
async fn store_spooled_recordings(
    inventory: Arc<Inventory>,
    files: FileStore,
    spool: std::path::PathBuf,
) {
    let Ok(mut dir) = tokio::fs::read_dir(&spool).await else {
        return;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        let path = entry.path();
        let Some(id) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let Ok(Some(rec)) = inventory.shell_session(&id) else {
            continue;
        };
        let key = format!("recordings/{}/{id}.cast", rec.server_id.unwrap_or(0));
        match files.put_file(&key, &path).await {
            Ok(_) => {
                let _ = inventory.set_shell_recording(&id, &key);
                let _ = tokio::fs::remove_file(&path).await;
                tracing::info!(session = %id, "stored the recording of an interrupted session");
            }
            Err(e) => tracing::warn!(session = %id, error = %e, "storing a spooled recording"),
        }
    }
}

/// Forgets expired login sessions now and then.
async fn prune_sessions(auth: Arc<Auth>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = auth.prune() {
            tracing::warn!(error = %e, "pruning sessions failed");
        }
    }
}

/// A running controller.
pub struct Controller {
    pub gateway_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub inventory: Arc<Inventory>,
    pub ca: Arc<CertificateAuthority>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub alerts: Arc<Alerts>,
    pub vault: Arc<Vault>,
    shutdown: CancellationToken,
    gateway: Arc<Gateway>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    pub async fn start(settings: &Settings) -> anyhow::Result<Controller> {
        certs::tls::install_default_provider();
        let (inventory, ca) = open_data_dir(settings)?;
        let store = match &settings.metrics.influxdb {
            Some(influx) => MetricStore::Influx(
                InfluxStore::connect(influx.clone())
                    .await
                    .with_context(|| format!("connecting to InfluxDB at {}", influx.url))?,
            ),
            None => MetricStore::Embedded(Arc::new(
                EmbeddedStore::open(
                    &settings.data_dir.join(METRICS_FILE),
                    settings.metrics.retention.clone(),
                )
                .context("opening the metric store")?,
            )),
        };
        // Before anything listens or runs: an unusable store (S3 down,
        // wrong key, no bucket) refuses the start with the reason.
        let files = FileStore::open(&settings.files, &settings.data_dir.join(FILES_DIR))
            .await
            .context("opening the file store")?;
        let metrics = Arc::new(
            Metrics::new(inventory.clone(), store.clone())
                .context("loading metric state")?
                .with_flush_every(std::time::Duration::from_secs(u64::from(
                    settings.metrics.flush_secs,
                ))),
        );
        let registry = Arc::new(Registry::default());
        let plans = crate::loadtest::Plans {
            inventory: inventory.clone(),
            files: files.clone(),
            settings: Arc::new(settings.loadtest.clone()),
        };
        let runner = Arc::new(crate::loadtest::runner::Runner::new(
            inventory.clone(),
            registry.clone(),
            plans.clone(),
            settings.data_dir.join(TASKS_DIR),
        ));
        let gateway = Gateway::bind(
            &settings.gateway,
            inventory.clone(),
            ca.clone(),
            metrics.clone(),
            registry.clone(),
            runner.clone(),
        )
        .with_context(|| format!("binding the agent gateway on {}", settings.gateway.listen))?;
        let listener = tokio::net::TcpListener::bind(settings.web.listen)
            .await
            .with_context(|| format!("binding HTTP on {}", settings.web.listen))?;
        let http_addr = listener.local_addr()?;
        let gateway_addr = gateway.local_addr();
        let shutdown = CancellationToken::new();
        let gateway = Arc::new(gateway);
        let g = gateway.clone();
        let s = shutdown.clone();
        let gateway_task = tokio::spawn(g.run(s));
        let alerts = Arc::new(
            Alerts::new(
                &settings.alerts,
                inventory.clone(),
                metrics.clone(),
                registry.clone(),
            )
            .map_err(anyhow::Error::msg)?,
        );
        let w = &settings.web;
        let tls = match &w.tls {
            Some(t) => Some(web::serve::tls_config(&t.cert, &t.key)?),
            None => None,
        };
        let auth = Arc::new(Auth::new(
            inventory.clone(),
            SessionLimits {
                idle: std::time::Duration::from_secs(u64::from(w.session_idle_minutes) * 60),
                max_age: std::time::Duration::from_secs(u64::from(w.session_max_hours) * 3600),
            },
        ));
        let vault = Arc::new(
            Vault::load_or_create(&settings.data_dir).context("loading the credential key")?,
        );
        let shell_spool = settings.data_dir.join(RECORDING_SPOOL_DIR);
        std::fs::create_dir_all(&shell_spool)
            .with_context(|| format!("creating {}", shell_spool.display()))?;
        // Spooled uploads of a previous run were never stored: drop them.
        let upload_spool = web::plans::upload_spool_dir(&settings.data_dir);
        let _ = std::fs::remove_dir_all(&upload_spool);
        std::fs::create_dir_all(&upload_spool)
            .with_context(|| format!("creating {}", upload_spool.display()))?;
        inventory.close_dangling_shell_sessions()?;
        tokio::spawn(store_spooled_recordings(
            inventory.clone(),
            files.clone(),
            shell_spool.clone(),
        ));
        let state = web::AppState {
            alerts: alerts.clone(),
            inventory: inventory.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            auth: auth.clone(),
            vault: vault.clone(),
            web: Arc::new(web::WebConfig {
                prefix: w.prefix.clone(),
                secure_cookies: w.secure_cookies || tls.is_some(),
                retention: settings.metrics.retention.clone(),
            }),
            templates: Arc::new(web::assets::Templates::load(&w.prefix)?),
            session_max_age: u64::from(w.session_max_hours) * 3600,
            deployer: crate::deploy::Deployer {
                inventory: inventory.clone(),
                registry: registry.clone(),
                gateway_handle: gateway.clone(),
                settings: settings.deploy.clone(),
                packages_dir: settings.data_dir.join(PACKAGES_DIR),
                gateway: settings.advertised_gateway_for(gateway_addr),
                ca_pin: ca.pin().as_str().to_string(),
                jobs: Default::default(),
                connect_timeout: std::time::Duration::from_secs(
                    settings.shell.connect_timeout_secs,
                ),
            },
            shell: Arc::new(settings.shell.clone()),
            shell_spool: shell_spool.clone(),
            files: files.clone(),
            plans,
            runner: runner.clone(),
            upload_spool,
        };
        let web_task = tokio::spawn(web::serve(listener, state, tls, shutdown.clone()));
        let sessions_task = tokio::spawn(prune_sessions(auth, shutdown.clone()));
        let prune_task = tokio::spawn(prune(store, shutdown.clone()));
        // (InfluxDB applies its own retention policies.)
        let alerts_task = tokio::spawn(alerts.clone().run(shutdown.clone()));
        let runner_task = tokio::spawn(runner.clone().run(shutdown.clone()));
        Ok(Controller {
            gateway_addr,
            http_addr,
            inventory,
            ca,
            registry,
            metrics,
            shutdown,
            gateway,
            alerts,
            vault,
            tasks: vec![
                gateway_task,
                web_task,
                prune_task,
                alerts_task,
                sessions_task,
                runner_task,
            ],
        })
    }

    pub fn revoke(&self, id: &certs::AgentId) -> anyhow::Result<bool> {
        Ok(self.gateway.revoke(id)?)
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops serving and waits for every task to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
