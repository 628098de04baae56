//! `controller demo`: everything on one machine with no external service.
//!
//! Starts a controller with embedded defaults in a local data directory,
//! creates join tokens itself and starts one agent-monitor and one
//! agent-jmeter as child processes (the binaries next to this one). A
//! second run reuses the same identities. Ctrl-C stops the agents, then the
//! controller.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use certs::{AgentIdentity, Role};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::config::Settings;
use crate::gateway::create_token;
use crate::startup::Controller;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// HTTP address of the web UI and API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// UDP address of the agent gateway.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub gateway: SocketAddr,
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating the controller binary")?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found next to the controller; build all binaries first: cargo build --release --workspace",
            path.display()
        );
    }
    Ok(path)
}

/// File in the demo's data directory holding the demo admin's password,
/// so every run can show it (a demo convenience; `serve` never stores it).
const DEMO_PASSWORD_FILE: &str = "demo-admin-password";

/// First run: an admin user, a group, a room and this machine as a server,
/// so the monitor agent links to it and the server list shows its facts,
/// and a small load-test plan for the JMeter agent.
/// Returns the admin password.
fn seed(ctl: &Controller, data_dir: &std::path::Path) -> anyhow::Result<String> {
    use crate::inventory::model::{AppIdentifier, Name, RoomPurpose, ServerAddr};
    use crate::inventory::{CredentialChange, ServerInput};
    let file = data_dir.join(DEMO_PASSWORD_FILE);
    let inv = &ctl.inventory;
    if let Some(pw) = crate::auth::ensure_first_admin(inv)? {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("writing {}", file.display()))?;
        std::io::Write::write_all(&mut f, pw.as_bytes())?;
    }
    if inv.groups()?.is_empty() && inv.rooms()?.is_empty() {
        let g = inv.create_group(&Name::parse("name", "demo")?, &AppIdentifier::parse("")?)?;
        let r = inv.create_room(&Name::parse("name", "local")?, RoomPurpose::Application)?;
        inv.create_server(
            &ServerInput {
                name: Name::parse("name", "this-machine")?,
                group_id: g,
                room_id: r,
                address: ServerAddr::parse("127.0.0.1")?,
                ssh_port: 22,
                ssh_user: Name::parse("SSH user", "root")?,
                credential: CredentialChange::Keep,
            },
            &ctl.vault,
        )?;
        // A load test to try at once: the demo's JMeter agent links to
        // this-machine, so it is a load generator of the room. It loads
        // the controller's own health check, lightly.
        let plan: loadplan::TestPlan = serde_json::from_value(serde_json::json!({
            "name": "demo: health check",
            "comment": "20 requests/s for 2 minutes on this machine's JMeter agent (needs JMeter: see README)",
            "run": {"load": {"type": "tps", "tps": 20.0}, "duration_secs": 120, "room_id": r,
                    "generators": 1},
            "thread_groups": [{"name": "users", "controllers": [{"name": "check", "samplers": [
                {"name": "healthz", "host": "127.0.0.1", "port": ctl.http_addr.port().to_string(),
                 "path": "/healthz"}
            ]}]}]
        }))
        .context("the demo plan")?;
        loadplan::validate::check_runnable(&plan)
            .map_err(|p| anyhow::anyhow!("the demo plan: {p}"))?;
        inv.create_plan(crate::inventory::PlanKind::Editor, &plan, None, "admin")?;
    }
    Ok(std::fs::read_to_string(&file)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "(set before this demo; see `controller user passwd admin`)".into()))
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    // The demo runs wherever it is started, in ./demo-data, unless the
    // configuration or --data-dir says otherwise.
    let mut settings = Settings::load(None)?;
    if settings.data_dir == Settings::default().data_dir {
        settings.data_dir = PathBuf::from("demo-data");
    }
    settings.gateway.listen = args.gateway;
    settings.web.listen = args.http;
    settings.gateway.heartbeat_secs = 2;
    let data_dir = std::path::absolute(&settings.data_dir)?;
    settings.data_dir = data_dir.clone();

    let ctl = Controller::start(&settings).await?;
    let password = seed(&ctl, &data_dir)?;
    let mut children: Vec<(&str, Child)> = Vec::new();
    for (role, name) in [
        (Role::Monitor, "agent-monitor"),
        (Role::Jmeter, "agent-jmeter"),
    ] {
        let state_dir = data_dir.join(name);
        let mut cmd = Command::new(sibling_binary(name)?);
        cmd.arg("--controller")
            .arg(ctl.gateway_addr.to_string())
            .arg("--state-dir")
            .arg(&state_dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if AgentIdentity::load(&state_dir)?.is_none() {
            let t = create_token(
                &ctl.inventory,
                role,
                1,
                Duration::from_secs(600),
                None,
                None,
            )?;
            // Through the environment, not argv: other users can read argv.
            cmd.env("MYPLATFORM_TOKEN", t.token.expose_secret())
                .env("MYPLATFORM_CA_PIN", ctl.ca.pin().as_str());
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        children.push((name, child));
    }

    println!();
    println!(
        "MyPlatform demo is running (data in {})",
        data_dir.display()
    );
    println!(
        "  web UI:      http://{}/  (user admin, password {password})",
        ctl.http_addr
    );
    println!(
        "  API:         http://{}/api/servers (same login, or an API token:",
        ctl.http_addr
    );
    println!(
        "               controller --data-dir {} user token admin)",
        data_dir.display()
    );
    println!("  gateway:     {} (QUIC, mutual TLS)", ctl.gateway_addr);
    println!("  CA pin:      {}", ctl.ca.pin());
    println!("Press Ctrl-C to stop.");
    println!();

    tokio::select! {
        _ = wait_for_signal() => {}
        (name, status) = first_exit(&mut children) => {
            eprintln!("{name} exited unexpectedly ({status}); stopping the demo");
        }
    }
    for (_, child) in &children {
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for (name, child) in &mut children {
        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("{name} did not stop in 5 s; killing it");
                let _ = child.kill().await;
            }
        }
    }
    ctl.stop().await;
    println!("demo stopped");
    Ok(())
}

async fn first_exit<'a>(children: &mut [(&'a str, Child)]) -> (&'a str, String) {
    let waits = children.iter_mut().map(|(name, c)| {
        let name = *name;
        Box::pin(async move {
            let status = c
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            (name, status)
        })
    });
    futures_select_all(waits).await
}

/// The first of several futures to finish.
async fn futures_select_all<F, T>(futs: impl Iterator<Item = F>) -> T
where
    F: std::future::Future<Output = T> + Unpin,
{
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
