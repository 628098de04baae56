//! The web UI in real headless Chromium against the real controller
//! binary, served under a URL prefix as behind a reverse proxy: the admin
//! builds the inventory through the pages, a user then sees only their
//! group (scenario in `e2e/browser/inventory.mjs`; screenshots of a failing
//! step land in `target/browser-screenshots/inventory/`).

use std::time::Duration;

use e2e::browser::{run_script, script};
use e2e::sshd::SshServer;
use e2e::{ControllerCli, Proc, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn admin_builds_the_inventory_and_a_user_sees_only_their_group() {
    let dir = tempfile::tempdir().unwrap();
    let cli = ControllerCli::new(dir.path().join("data"));
    cli.add_user("root", "root password 123", true);
    let mut cmd = cli.cmd(&["serve"]);
    cmd.env("MYPLATFORM_WEB__PREFIX", "/ops");
    let server = Proc::spawn("controller", cmd, dir.path());
    let base = cli.url("/ops");
    let health = format!("{base}/healthz");
    wait_for("controller up", Duration::from_secs(30), || async {
        reqwest::get(&health)
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let run = run_script(
        &script("inventory.mjs"),
        &[
            ("URL", base),
            ("ADMIN_NAME", "root".into()),
            ("ADMIN_PASSWORD", "root password 123".into()),
        ],
    );
    eprintln!("{}", run.stdout);
    // Nothing secret in the controller's log either.
    let log = server.log();
    assert!(
        !log.contains("root password 123"),
        "a login password in the log"
    );
    assert!(
        !log.contains("server-password-9f3k"),
        "a server password in the log"
    );
    assert!(log.contains("login"), "logins are logged:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_terminal_page_types_into_a_real_shell_and_reads_the_screen() {
    let sshd = tokio::task::spawn_blocking(SshServer::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cli = ControllerCli::new(dir.path().join("data"));
    cli.add_user("root", "root password 123", true);
    let token = cli.api_token();
    let _server = Proc::spawn("controller", cli.cmd(&["serve"]), dir.path());
    let base = cli.url("");
    let health = format!("{base}/healthz");
    wait_for("controller up", Duration::from_secs(30), || async {
        reqwest::get(&health)
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let g: serde_json::Value = post("/api/groups", serde_json::json!({"name": "g"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r: serde_json::Value = post(
        "/api/rooms",
        serde_json::json!({"name": "r", "purpose": "application"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let s: serde_json::Value = post(
        "/api/servers",
        serde_json::json!({"name": "web-1", "group_id": g["id"], "room_id": r["id"],
            "address": sshd.address, "ssh_port": sshd.port, "ssh_user": sshd.user,
            "credential": {"kind": "private_key", "secret": sshd.private_key_openssh}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let run = run_script(
        &script("terminal.mjs"),
        &[
            ("URL", base.clone()),
            ("ADMIN_NAME", "root".into()),
            ("ADMIN_PASSWORD", "root password 123".into()),
            ("SERVER_ID", s["id"].to_string()),
        ],
    );
    eprintln!("{}", run.stdout);
}
