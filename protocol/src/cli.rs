//! What both agent binaries share on the command line: where the controller
//! is, how to enroll, where the identity lives, and a main loop that stops
//! cleanly on SIGINT/SIGTERM and exits with a clear message when the
//! controller refuses the agent for good.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use certs::{CaPin, Role};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::{ControllerMsg, IdentityStore, Link, LinkConfig, LinkHandle};

/// Exit status for a refusal retrying cannot fix (sysexits EX_CONFIG), so a
/// service manager can be told not to restart in a loop.
pub const EXIT_REFUSED: u8 = 78;

const REMEMBERED: &str = "link.toml";

#[derive(Debug, Clone, clap::Args)]
pub struct LinkArgs {
    /// Controller QUIC address, host:port. Needed the first time; remembered
    /// in the state directory afterwards.
    #[arg(long, env = "MYPLATFORM_CONTROLLER")]
    pub controller: Option<String>,
    /// Join token from `controller token create` (first start only).
    #[arg(long, env = "MYPLATFORM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// SHA-256 pin of the controller's CA, sha256:<hex> (first start only).
    #[arg(long, env = "MYPLATFORM_CA_PIN")]
    pub ca_pin: Option<CaPin>,
    /// Where the agent keeps its key and certificate
    /// [default: /var/lib/myplatform/agent-<role>].
    #[arg(long, env = "MYPLATFORM_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// TOML file with any of: controller, token, ca_pin, state_dir.
    /// Command-line options and environment variables win over it.
    #[arg(long, env = "MYPLATFORM_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    controller: Option<String>,
    token: Option<String>,
    ca_pin: Option<CaPin>,
    state_dir: Option<PathBuf>,
}

fn read_toml(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl LinkArgs {
    /// Merges options, config file and remembered state into a link config.
    pub fn resolve(self, role: Role, agent_version: &str) -> Result<LinkConfig, String> {
        let file = match &self.config {
            Some(p) => read_toml(p)?,
            None => FileConfig::default(),
        };
        let state_dir = self
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(format!("/var/lib/myplatform/agent-{role}")));
        let remembered_path = state_dir.join(REMEMBERED);
        let controller = match self.controller.or(file.controller) {
            Some(c) => {
                std::fs::create_dir_all(&state_dir)
                    .map_err(|e| format!("{}: {e}", state_dir.display()))?;
                let remembered = FileConfig {
                    controller: Some(c.clone()),
                    ..Default::default()
                };
                let text = toml::to_string(&remembered).map_err(|e| e.to_string())?;
                std::fs::write(&remembered_path, text)
                    .map_err(|e| format!("{}: {e}", remembered_path.display()))?;
                c
            }
            None if remembered_path.exists() => read_toml(&remembered_path)?
                .controller
                .ok_or_else(|| format!("{} names no controller", remembered_path.display()))?,
            None => {
                return Err(
                    "no controller address: pass --controller host:port (see `controller token create`)".into(),
                );
            }
        };
        let mut cfg = LinkConfig::new(controller, IdentityStore::Dir(state_dir), role);
        cfg.agent_version = agent_version.to_string();
        cfg.token = self.token.or(file.token);
        cfg.ca_pin = self.ca_pin.or(file.ca_pin);
        Ok(cfg)
    }
}

/// Runs the link and the agent's own work until SIGINT/SIGTERM.
/// `work` gets the link handle, the controller's messages and a shutdown
/// token, and should return when the token is cancelled.
pub async fn run_until_signal<F, Fut>(cfg: LinkConfig, work: F) -> ExitCode
where
    F: FnOnce(LinkHandle, mpsc::Receiver<ControllerMsg>, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    certs::tls::install_default_provider();
    let shutdown = CancellationToken::new();
    let (handle, rx, link) = Link::spawn(cfg, shutdown.clone());
    let work = tokio::spawn(work(handle, rx, shutdown.clone()));
    let mut link = link;
    let result = tokio::select! {
        r = &mut link => Some(r),
        _ = terminate() => None,
    };
    shutdown.cancel();
    let result = match result {
        Some(r) => r,
        None => {
            info!("stopping");
            link.await
        }
    };
    let _ = work.await;
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(e) => {
            error!("link task failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` as `level[,target=level...]` (default
/// `info,quinn=warn`). Uses tracing's `Targets` rather than `EnvFilter`:
/// no regex engine in a binary that runs on every host.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| "info,quinn=warn".parse().expect("valid default filter"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

async fn terminate() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
