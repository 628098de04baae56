//! `controller`: serve, manage join tokens and agents, or run the demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use certs::{AgentId, Role};
use clap::{Parser, Subcommand};
use controller::gateway::{create_token, install_command};
use controller::inventory::unix_now;
use controller::startup::open_data_dir;
use controller::{Controller, Settings, demo};

#[derive(Debug, Parser)]
#[command(name = "controller", version, about = "MyPlatform controller")]
struct Cli {
    /// Configuration file (TOML); default $MYPLATFORM_CONFIG, else built-in defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Overrides `data_dir` of the configuration.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the controller.
    Serve,
    /// Join tokens for new agents.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Enrolled agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Local demo: a controller plus one monitor and one JMeter agent on this
    /// machine, in ./demo-data. Ctrl-C stops everything.
    Demo(demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Create a token and print the agent install command.
    Create {
        #[arg(long)]
        role: Role,
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it stays valid (e.g. 30m, 24h, 7d).
        #[arg(long, default_value = "24h")]
        ttl: humantime::Duration,
        /// Group the enrolled servers join.
        #[arg(long)]
        group: Option<String>,
        /// Server room the enrolled servers join.
        #[arg(long)]
        room: Option<String>,
    },
    /// List unexpired tokens with uses left (never the secrets).
    List,
}

#[derive(Debug, Subcommand)]
enum AgentCmd {
    /// List enrolled agents.
    List,
    /// Revoke an agent's certificate; a running controller drops it within a second.
    Revoke { id: AgentId },
    /// Set the application a monitor agent watches: the process whose
    /// command line contains IDENTIFIER (its ports, TCP states, JVM). A
    /// running agent picks it up within seconds, no restart.
    Watch {
        id: AgentId,
        /// Part of the application's command line, e.g. "shop-service.jar".
        #[arg(long, conflicts_with = "clear", required_unless_present = "clear")]
        app: Option<String>,
        /// Stop watching any application.
        #[arg(long)]
        clear: bool,
    },
}

fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let mut s = Settings::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        s.data_dir = d.clone();
    }
    Ok(s)
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.cmd {
        Cmd::Serve => {
            init_logging();
            let s = settings(&cli)?;
            let ctl = Controller::start(&s).await?;
            eprintln!(
                "controller running: agents -> {} (advertised as {}), API -> http://{}/api/agents",
                ctl.gateway_addr,
                s.advertised_gateway(),
                ctl.http_addr
            );
            demo::wait_for_signal().await;
            ctl.stop().await;
            Ok(())
        }
        Cmd::Demo(args) => {
            init_logging();
            demo::run(args).await
        }
        Cmd::Token(TokenCmd::Create {
            role,
            uses,
            ttl,
            group,
            room,
        }) => {
            anyhow::ensure!(*uses >= 1, "--uses must be at least 1");
            let s = settings(&cli)?;
            let (inventory, ca) = open_data_dir(&s)?;
            let ttl: Duration = (*ttl).into();
            let t = create_token(&inventory, *role, *uses, ttl, group.clone(), room.clone())?;
            eprintln!(
                "token for {uses} {role} agent(s), valid for {}; run on the new host:",
                humantime::format_duration(ttl)
            );
            println!(
                "{}",
                install_command(*role, &s.advertised_gateway(), &t.token, &ca.pin())
            );
            Ok(())
        }
        Cmd::Token(TokenCmd::List) => {
            let s = settings(&cli)?;
            let (inventory, _) = open_data_dir(&s)?;
            let now = unix_now();
            println!(
                "{:<8} {:>5} {:<12} {:<12} EXPIRES IN",
                "ROLE", "USES", "GROUP", "ROOM"
            );
            for t in inventory.live_tokens(now)? {
                println!(
                    "{:<8} {:>5} {:<12} {:<12} {}",
                    t.role,
                    t.uses_left,
                    t.group.as_deref().unwrap_or("-"),
                    t.room.as_deref().unwrap_or("-"),
                    humantime::format_duration(Duration::from_secs(
                        t.expires_at.saturating_sub(now)
                    ))
                );
            }
            Ok(())
        }
        Cmd::Agent(AgentCmd::List) => {
            let s = settings(&cli)?;
            let (inventory, _) = open_data_dir(&s)?;
            println!(
                "{:<19} {:<7} {:<20} {:<8} {:<9} {:<10} LAST SEEN",
                "ID", "ROLE", "HOSTNAME", "ARCH", "VERSION", "STATE"
            );
            let now = unix_now();
            for a in inventory.agents()? {
                let state = if a.revoked_at.is_some() {
                    "revoked"
                } else if a.online {
                    "online"
                } else {
                    "offline"
                };
                let seen = a
                    .last_seen
                    .map(|t| {
                        format!(
                            "{} ago",
                            humantime::format_duration(Duration::from_secs(now.saturating_sub(t)))
                        )
                    })
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{:<19} {:<7} {:<20} {:<8} {:<9} {:<10} {seen}",
                    a.id, a.role, a.hostname, a.arch, a.agent_version, state
                );
            }
            Ok(())
        }
        Cmd::Agent(AgentCmd::Watch { id, app, clear }) => {
            let s = settings(&cli)?;
            let (inventory, _) = open_data_dir(&s)?;
            let app = if *clear {
                None
            } else {
                app.as_deref().map(str::trim)
            };
            anyhow::ensure!(app != Some(""), "--app must not be empty");
            let found = inventory.set_app_identifier(id, app)?;
            anyhow::ensure!(found, "no agent {id} in {}", s.data_dir.display());
            match app {
                Some(a) => println!("{id} watches processes matching {a:?}"),
                None => println!("{id} watches no application"),
            }
            Ok(())
        }
        Cmd::Agent(AgentCmd::Revoke { id }) => {
            let s = settings(&cli)?;
            let (inventory, _) = open_data_dir(&s)?;
            let found = inventory.revoke(id, unix_now()).context("revoking")?;
            anyhow::ensure!(found, "no agent {id} in {}", s.data_dir.display());
            println!("revoked {id}; a running controller disconnects it within a second");
            Ok(())
        }
    }
}
