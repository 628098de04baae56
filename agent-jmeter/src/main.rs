//! agent-jmeter: runs JMeter load for the MyPlatform controller. It
//! enrolls, stays connected, and runs the tasks the controller gives it
//! through the JMeter supervisor (see the library's `generator`).
//!
//! JMeter and java are checked once at start; when they are unusable the
//! agent still connects and tells the controller why, so the operator sees
//! it in one place.

use std::path::PathBuf;
use std::process::ExitCode;

use agent_jmeter::generator::{self, Config};
use agent_jmeter::install::Install;
use agent_jmeter::supervisor::Options;
use clap::Parser;
use protocol::cli::{LinkArgs, run_until_signal};
use protocol::{IdentityStore, Role};
use tracing::{info, warn};

#[derive(Debug, Parser)]
#[command(name = "agent-jmeter", version, about = "MyPlatform jmeter agent")]
struct Args {
    #[command(flatten)]
    link: LinkArgs,
    /// JMeter 5.x directory (the one holding bin/ApacheJMeter.jar)
    /// [default: $JMETER_HOME].
    #[arg(long, env = "MYPLATFORM_JMETER_HOME")]
    jmeter_home: Option<PathBuf>,
    /// Where task directories go (artifact, JMeter log, results); the five
    /// newest are kept [default: <state dir>/tasks].
    #[arg(long, env = "MYPLATFORM_WORK_DIR")]
    work_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    protocol::cli::init_logging();
    let args = Args::parse();
    let cfg = match args.link.resolve(Role::Jmeter, env!("CARGO_PKG_VERSION")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(protocol::cli::EXIT_REFUSED);
        }
    };
    let IdentityStore::Dir(state_dir) = &cfg.identity else {
        unreachable!("the command line always uses a state directory")
    };
    let work_dir = args.work_dir.unwrap_or_else(|| state_dir.join("tasks"));
    if let Err(e) = std::fs::create_dir_all(&work_dir) {
        eprintln!(
            "error: cannot create the work directory {}: {e}",
            work_dir.display()
        );
        return ExitCode::from(protocol::cli::EXIT_REFUSED);
    }
    let jmeter = match Install::locate(args.jmeter_home.as_deref()) {
        Ok(install) => install.check().await,
        Err(e) => Err(e),
    };
    match &jmeter {
        Ok(c) => info!(
            jmeter = %c.jmeter_version,
            java = %c.java_version,
            home = %c.install.home.display(),
            "JMeter is usable"
        ),
        Err(e) => warn!("JMeter cannot run here; tasks will be refused: {e}"),
    }
    let config = Config {
        jmeter: jmeter.map_err(|e| e.to_string()),
        work_dir,
        options: Options::default(),
    };
    run_until_signal(cfg, move |link, rx, shutdown| {
        generator::run(config, link, rx, shutdown)
    })
    .await
}
