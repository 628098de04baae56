//! A controller and agent-monitor running inside the test process, for
//! tests that must see the controller's internals (every batch it accepts,
//! across restarts) or drive it through settings the binaries would read
//! from a file. The code is the binaries' own; only the process boundary
//! is missing.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use agent_monitor::collect::Roots;
use agent_monitor::monitor::{MonitorConfig, run};
use controller::Controller;
use controller::config::Settings;
use controller::gateway::create_token;
use protocol::{Backoff, IdentityStore, Link, LinkConfig, Role};
use tokio_util::sync::CancellationToken;

/// Settings for a test controller: data in `dir`, loopback ports (0 =
/// any), heartbeats every second.
pub fn settings(dir: &Path, gateway: SocketAddr) -> Settings {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    s.gateway.listen = gateway;
    s.gateway.heartbeat_secs = 1;
    s.web.listen = "127.0.0.1:0".parse().expect("loopback address");
    s
}

/// Starts a controller, retrying while the previous one's UDP socket (same
/// address, after a restart) is still being released.
pub async fn start_controller(settings: &Settings) -> Controller {
    certs::tls::install_default_provider();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match Controller::start(settings).await {
            Ok(c) => return c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("controller start: {e:#}"),
        }
    }
}

/// An admin API token for an in-process controller (a fresh admin user
/// each call).
pub fn api_token(ctl: &Controller) -> String {
    let name = format!("e2e-admin-{}", fastrand_suffix());
    let name = controller::inventory::model::parse_user_name(&name).expect("valid name");
    let id = controller::auth::create_user(&ctl.inventory, &name, "e2e admin password", true)
        .expect("creating a test admin");
    controller::auth::create_api_token(&ctl.inventory, id, "e2e").expect("creating a token")
}

fn fastrand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running in-process agent-monitor; stopped on drop.
pub struct MonitorAgent {
    shutdown: CancellationToken,
}

impl Drop for MonitorAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Link settings of a monitor agent that enrolls with `ctl` (dialling
/// `dial`) using a fresh one-use join token, and reconnects quickly.
pub fn monitor_link_config(
    ctl: &Controller,
    dial: SocketAddr,
    identity: IdentityStore,
) -> LinkConfig {
    let t = create_token(
        &ctl.inventory,
        Role::Monitor,
        1,
        Duration::from_secs(600),
        None,
        None,
    )
    .expect("join token");
    let mut cfg = LinkConfig::new(dial.to_string(), identity, Role::Monitor);
    cfg.token = Some(t.token.expose_secret().into());
    cfg.ca_pin = Some(ctl.ca.pin());
    cfg.backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    cfg
}

/// Enrolls an agent-monitor with `ctl` (dialling `dial`, which may be a
/// proxy in front of it) and runs it, sampling every `interval`.
pub fn start_monitor(
    ctl: &Controller,
    dial: SocketAddr,
    state: &Path,
    interval: Duration,
) -> MonitorAgent {
    let cfg = monitor_link_config(ctl, dial, IdentityStore::Dir(state.to_path_buf()));
    let shutdown = CancellationToken::new();
    let (link, rx, _task) = Link::spawn(cfg, shutdown.clone());
    let monitor = MonitorConfig {
        interval,
        spool_dir: state.join("spool"),
        spool_max_bytes: 16 << 20,
        drop_caches_below_pct: None,
        roots: Roots::default(),
    };
    tokio::spawn(run(monitor, link, rx, shutdown.clone()));
    MonitorAgent { shutdown }
}
