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
    /// Users of the web UI and API.
    #[command(subcommand)]
    User(UserCmd),
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

#[derive(Debug, Subcommand)]
enum UserCmd {
    /// Add a user. The password is read from stdin with --password-stdin,
    /// else generated and printed once.
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Set a user's password (read from stdin with --password-stdin, else
    /// generated and printed once); ends their sessions.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Issue an API token for scripts (`Authorization: Bearer <token>`),
    /// printed once.
    Token {
        name: String,
        /// What the token is for, shown in `user tokens`.
        #[arg(long, default_value = "cli")]
        label: String,
    },
    /// List API tokens (never the secrets).
    Tokens,
}

/// The password from stdin (first line), or a generated one that the
/// caller prints.
fn password_input(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        controller::inventory::model::check_password(&pw)?;
        Ok((pw, false))
    } else {
        Ok((controller::auth::generate_password(), true))
    }
}

fn user_id(inventory: &controller::inventory::Inventory, name: &str) -> anyhow::Result<i64> {
    inventory
        .users()?
        .into_iter()
        .find(|u| u.name.eq_ignore_ascii_case(name))
        .map(|u| u.id)
        .with_context(|| format!("no user {name:?}"))
}

fn run_user(cli: &Cli, cmd: &UserCmd) -> anyhow::Result<()> {
    let s = settings(cli)?;
    let (inventory, _) = open_data_dir(&s)?;
    match cmd {
        UserCmd::Add {
            name,
            admin,
            password_stdin,
        } => {
            let n = controller::inventory::model::parse_user_name(name)?;
            let (pw, generated) = password_input(*password_stdin)?;
            controller::auth::create_user(&inventory, &n, &pw, *admin)?;
            eprintln!("user {n} added{}", if *admin { " (admin)" } else { "" });
            if generated {
                println!("{pw}");
            }
        }
        UserCmd::List => {
            let groups: std::collections::HashMap<i64, String> = inventory
                .groups()?
                .into_iter()
                .map(|g| (g.id, g.name))
                .collect();
            println!("{:<24} {:<6} {:<9} GROUPS", "NAME", "ADMIN", "DISABLED");
            for u in inventory.users()? {
                let g: Vec<&str> = u
                    .groups
                    .iter()
                    .filter_map(|g| groups.get(g))
                    .map(String::as_str)
                    .collect();
                println!(
                    "{:<24} {:<6} {:<9} {}",
                    u.name,
                    u.admin,
                    u.disabled,
                    g.join(",")
                );
            }
        }
        UserCmd::Passwd {
            name,
            password_stdin,
        } => {
            let id = user_id(&inventory, name)?;
            let u = inventory.user(id)?;
            let (pw, generated) = password_input(*password_stdin)?;
            inventory.update_user(
                id,
                u.admin,
                u.disabled,
                Some(&controller::auth::hash_password(&pw)),
            )?;
            eprintln!("password of {} changed; their sessions ended", u.name);
            if generated {
                println!("{pw}");
            }
        }
        UserCmd::Token { name, label } => {
            let id = user_id(&inventory, name)?;
            let t = controller::auth::create_api_token(&inventory, id, label)?;
            eprintln!(
                "API token for {name} (shown once; send as `Authorization: Bearer <token>`):"
            );
            println!("{t}");
        }
        UserCmd::Tokens => {
            println!("{:<16} {:<24} LAST USED", "LABEL", "USER");
            for t in inventory.api_tokens()? {
                let used = t.last_used.map_or("never".to_string(), |u| {
                    format!(
                        "{} ago",
                        humantime::format_duration(Duration::from_secs(
                            unix_now().saturating_sub(u)
                        ))
                    )
                });
                println!("{:<16} {:<24} {used}", t.name, t.user);
            }
        }
    }
    Ok(())
}

/// Creates the first admin on a fresh data directory and shows its
/// password once, on the terminal (not in the log).
pub fn announce_first_admin(inventory: &controller::inventory::Inventory) -> anyhow::Result<()> {
    if let Some(pw) = controller::auth::ensure_first_admin(inventory)? {
        eprintln!(
            "\n  first start: created web UI user `admin` with password\n\n      {pw}\n\n  (shown once; change it on the Users page or with `controller user passwd admin`)\n"
        );
    }
    Ok(())
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
            announce_first_admin(&ctl.inventory)?;
            let scheme = if s.web.tls.is_some() { "https" } else { "http" };
            eprintln!(
                "controller running: agents -> {} (advertised as {}), web UI -> {scheme}://{}{}/",
                ctl.gateway_addr,
                s.advertised_gateway(),
                ctl.http_addr,
                s.web.prefix
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
        Cmd::User(cmd) => run_user(&cli, cmd),
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
