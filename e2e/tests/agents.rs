//! The real binaries: the demo command, and the documented way to add an
//! agent (`controller token create` -> install line -> agent), surviving a
//! controller restart and being revoked from the command line.

use std::process::Command;
use std::time::Duration;

use e2e::{ControllerCli, Proc, bin, free_port, get_json, processes_mentioning, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn connected_agents(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["connected"] == true)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// `controller demo` in `dir` on the given loopback ports.
fn demo_cmd(dir: &std::path::Path, http: u16, quic: u16) -> Command {
    let mut cmd = Command::new(bin("controller"));
    cmd.current_dir(dir).env_remove("MYPLATFORM_CONFIG").args([
        "demo",
        "--http",
        &format!("127.0.0.1:{http}"),
        "--gateway",
        &format!("127.0.0.1:{quic}"),
    ]);
    cmd
}

/// An API token for the demo's admin, once the demo has created it.
fn demo_token(data: &std::path::Path) -> Option<String> {
    // Not before: the CLI would initialise the data directory itself,
    // racing the demo for its CA files.
    if !data.join("demo-admin-password").exists() {
        return None;
    }
    let out = Command::new(bin("controller"))
        .env_remove("MYPLATFORM_CONFIG")
        .arg("--data-dir")
        .arg(data)
        .args(["user", "token", "admin", "--label", "e2e"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn the_demo_runs_both_agents_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (http, quic) = (free_port(), free_port());
    let cmd = demo_cmd(dir.path(), http, quic);
    let mut demo = Proc::spawn("demo", cmd, dir.path());
    let token = wait_for("the demo's admin", WAIT, || async {
        demo_token(&dir.path().join("demo-data"))
    })
    .await;
    let url = format!("http://127.0.0.1:{http}/api/agents");
    let agents = wait_for("both demo agents connected", WAIT, || async {
        let v = get_json(&url, &token).await?;
        let c = connected_agents(&v);
        (c.len() == 2).then_some(c)
    })
    .await;
    let mut roles: Vec<&str> = agents.iter().map(|a| a["role"].as_str().unwrap()).collect();
    roles.sort();
    assert_eq!(roles, ["jmeter", "monitor"]);
    let ui = format!("http://127.0.0.1:{http}/");
    assert!(demo.log().contains(&ui), "the demo says where to look");
    // The demo seeds a server for this machine; the monitor agent links to
    // it by address, so the server list shows the agent's facts.
    let password =
        std::fs::read_to_string(dir.path().join("demo-data/demo-admin-password")).unwrap();
    assert!(
        demo.log().contains(password.trim()),
        "the demo shows its admin password"
    );
    let servers_url = format!("http://127.0.0.1:{http}/api/servers");
    let server = wait_for("the demo server with its agent's facts", WAIT, || async {
        let v = get_json(&servers_url, &token).await?;
        let s = v.as_array()?.first()?.clone();
        (s["facts_source"] == "agent" && s["agents"].as_array()?.len() == 2).then_some(s)
    })
    .await;
    assert_eq!(server["name"], "this-machine");
    assert!(server["facts"]["cpu_cores"].as_u64().unwrap() > 0);

    let (status, in_time) = demo.terminate(Duration::from_secs(15));
    assert!(in_time, "demo did not stop on SIGTERM:\n{}", demo.log());
    assert!(
        status.success(),
        "demo exited with {status}:\n{}",
        demo.log()
    );
    let data = dir.path().join("demo-data");
    assert!(
        processes_mentioning(data.to_str().unwrap()).is_empty(),
        "agents left running"
    );

    // A second run reuses the identities: still two agents, no new enrollment.
    let cmd = demo_cmd(dir.path(), http, quic);
    let mut demo = Proc::spawn("demo-again", cmd, dir.path());
    let again = wait_for("demo agents back", WAIT, || async {
        let v = get_json(&url, &token).await?;
        (connected_agents(&v).len() == 2).then_some(v)
    })
    .await;
    assert_eq!(
        again.as_array().unwrap().len(),
        2,
        "re-enrolled instead of reusing: {again}"
    );
    let (status, _) = demo.terminate(Duration::from_secs(15));
    assert!(status.success());
}

#[tokio::test]
async fn an_agent_added_from_the_cli_survives_a_restart_and_is_revoked_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cli = ControllerCli::new(data.clone());
    cli.heartbeat_secs = Some(1);
    let (http, quic) = (cli.http, cli.quic);
    let controller = |args: &[&str]| cli.cmd(args);
    let token = cli.api_token();
    let mut server = Proc::spawn("controller", controller(&["serve"]), dir.path());
    let url = format!("http://127.0.0.1:{http}/api/agents");
    wait_for("controller up", WAIT, || async {
        get_json(&url, &token).await
    })
    .await;

    let out = controller(&["token", "create", "--role", "monitor", "--ttl", "10m"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "agent-monitor", "{line}");
    assert!(
        words.contains(&"--token") && words.contains(&"--ca-pin"),
        "{line}"
    );
    assert!(line.contains(&format!("127.0.0.1:{quic}")), "{line}");

    // Run exactly the printed line, plus a state directory.
    let state = dir.path().join("agent-state");
    let mut cmd = Command::new(bin("agent-monitor"));
    cmd.args(&words[1..]).arg("--state-dir").arg(&state);
    let mut agent = Proc::spawn("agent-monitor", cmd, dir.path());
    let first = wait_for("agent connected", WAIT, || async {
        connected_agents(&get_json(&url, &token).await?)
            .into_iter()
            .next()
    })
    .await;
    let id = first["id"].as_str().unwrap().to_string();

    let list = controller(&["agent", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.contains(&id) && list.contains("online"), "{list}");

    // Restart the controller; the agent comes back by itself, same identity.
    let (status, in_time) = server.terminate(Duration::from_secs(10));
    assert!(
        in_time && status.success(),
        "controller stop: {status}\n{}",
        server.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut server = Proc::spawn("controller-restarted", controller(&["serve"]), dir.path());
    let restarted = std::time::Instant::now();
    let back = wait_for("agent reconnected after restart", WAIT, || async {
        connected_agents(&get_json(&url, &token).await?)
            .into_iter()
            .next()
    })
    .await;
    eprintln!(
        "agent back {:?} after the controller restarted",
        restarted.elapsed()
    );
    assert_eq!(back["id"], first["id"]);
    let all = get_json(&url, &token).await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1, "re-enrolled: {all}");
    assert!(!agent.log().contains("enrolling") || agent.log().matches("enrolling").count() == 1);

    // Revoke from the CLI: the agent is dropped and stops with a clear reason.
    let out = controller(&["agent", "revoke", &id]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = agent
        .wait_timeout(WAIT)
        .expect("revoked agent kept running");
    assert_eq!(status.code(), Some(78), "{}", agent.log());
    assert!(agent.log().contains("revoked"), "{}", agent.log());
    let v = get_json(&url, &token).await.unwrap();
    assert_eq!(v[0]["revoked"], true);
    assert_eq!(v[0]["connected"], false);

    // Unknown ids and bad input on the CLI are clear errors.
    let out = controller(&["agent", "revoke", "ag-0000000000000000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent"));
    let out = controller(&["token", "create", "--role", "admin"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (status, _) = server.terminate(Duration::from_secs(10));
    assert!(status.success());
}
