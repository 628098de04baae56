//! agent-jmeter: Runs JMeter load for the MyPlatform controller. The JMeter supervisor arrives with the load-test work; for now it enrolls, stays connected and heartbeats.
//!
//! It must never fake work it does not do yet.

use std::process::ExitCode;

use clap::Parser;
use protocol::Role;
use protocol::cli::{LinkArgs, run_until_signal};
use tracing::debug;

#[derive(Debug, Parser)]
#[command(name = "agent-jmeter", version, about = "MyPlatform jmeter agent")]
struct Args {
    #[command(flatten)]
    link: LinkArgs,
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
    run_until_signal(cfg, |_link, mut from_controller, shutdown| async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                msg = from_controller.recv() => match msg {
                    Some(m) => debug!(?m, "message from the controller"),
                    None => return,
                },
            }
        }
    })
    .await
}
