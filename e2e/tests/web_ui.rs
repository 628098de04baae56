//! The web UI in real headless Chromium against the real controller
//! binary, served under a URL prefix as behind a reverse proxy: the admin
//! builds the inventory through the pages, a user then sees only their
//! group (scenario in `e2e/browser/inventory.mjs`; screenshots of a failing
//! step land in `target/browser-screenshots/inventory/`).

use std::time::Duration;

use e2e::browser::{run_script, script};
use e2e::sshd::SshServer;
use e2e::{ControllerCli, Proc, wait_for};

/// `controller serve` under `prefix` ("" for the root), once it answers;
/// returns the process and the base URL.
async fn serve(cli: &ControllerCli, dir: &std::path::Path, prefix: &str) -> (Proc, String) {
    let mut cmd = cli.cmd(&["serve"]);
    if !prefix.is_empty() {
        cmd.env("MYPLATFORM_WEB__PREFIX", prefix);
    }
    let server = Proc::spawn("controller", cmd, dir);
    let base = cli.url(prefix);
    let health = format!("{base}/healthz");
    wait_for("controller up", Duration::from_secs(30), || async {
        e2e::http()
            .get(&health)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    (server, base)
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_builds_the_inventory_and_a_user_sees_only_their_group() {
    let dir = tempfile::tempdir().unwrap();
    let cli = ControllerCli::new(dir.path().join("data"));
    cli.add_user("root", "root password 123", true);
    let (server, base) = serve(&cli, dir.path(), "/ops").await;
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
    let (_server, base) = serve(&cli, dir.path(), "").await;
    let http = e2e::http();
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

#[tokio::test(flavor = "multi_thread")]
async fn the_plan_editor_builds_checks_saves_and_imports_plans() {
    let dir = tempfile::tempdir().unwrap();
    let cli = ControllerCli::new(dir.path().join("data"));
    cli.add_user("root", "root password 123", true);
    let token = cli.api_token();
    let (_server, base) = serve(&cli, dir.path(), "").await;
    let (st, _) = e2e::api(
        &base,
        &token,
        reqwest::Method::POST,
        "/api/rooms",
        Some(serde_json::json!({"name": "lt", "purpose": "load_testing"})),
    )
    .await;
    assert_eq!(st, 201);
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "alice,secret\nbob,hunter2\n").unwrap();
    let data = e2e::browser::workspace_root().join("loadplan/tests/data");
    let jmx = data.join("plugins-and-pacing.jmx");
    let zip_path = dir.path().join("shop.zip");
    {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        for (name, file) in [("shop.jmx", "shop-gui-5.6.jmx"), ("users.csv", "users.csv")] {
            w.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(&std::fs::read(data.join(file)).unwrap())
                .unwrap();
        }
        w.finish().unwrap();
    }
    let run = run_script(
        &script("plans.mjs"),
        &[
            ("URL", base.clone()),
            ("ADMIN_NAME", "root".into()),
            ("ADMIN_PASSWORD", "root password 123".into()),
            ("CSV_PATH", csv.display().to_string()),
            ("JMX_PATH", jmx.display().to_string()),
            ("ZIP_PATH", zip_path.display().to_string()),
        ],
    );
    eprintln!("{}", run.stdout);
    let id = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("PLAN_ID="))
        .expect("the scenario prints the plan id")
        .trim()
        .to_string();
    // What the pages saved is what the API holds.
    let (_, got) = e2e::api(
        &base,
        &token,
        reqwest::Method::GET,
        &format!("/api/plans/{id}"),
        None,
    )
    .await;
    let plan = &got["plan"];
    assert_eq!(got["revision"], 4, "{got:#}");
    assert_eq!(
        plan["run"]["load"],
        serde_json::json!({"type": "tps", "tps": 25.0})
    );
    assert_eq!(
        plan["run"]["schedule"]["steps"].as_array().unwrap().len(),
        2
    );
    let groups = plan["thread_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1]["name"], "buyers (copy)");
    let sampler = &groups[0]["controllers"][0]["samplers"][0];
    assert_eq!(sampler["host"], "${host}");
    assert_eq!(sampler["header_set"], "json");
    assert_eq!(sampler["body"]["text"], "{\"user\":\"${user}\"}");
    assert_eq!(sampler["assertion"]["kind"], "contains");
    assert_eq!(
        groups[0]["csv_data_sets"][0]["variable_names"],
        serde_json::json!(["user", "password"])
    );
    assert_eq!(got["files"][0]["name"], "users.csv");
}
