//! "Deploy monitoring" and "Stop" against a real sshd: the controller
//! uploads the locally built agent package (made by `scripts/dist`, the
//! same path as a release) into a directory of the test's own, installs and
//! starts it (a supervised process: no systemd here), waits for it to
//! enroll and report, deploys again (idempotent), then removes it: no
//! installed file remains and the certificate is revoked. And the
//! refusals: wrong password, a package for another architecture, no free
//! disk, an unreachable host, a join token that expires during the deploy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::api;
use e2e::inproc::{settings, start_controller};
use e2e::sshd::SshServer;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// The agent-monitor tarball, built by scripts/dist from the debug binary.
fn package(out: &Path) -> PathBuf {
    e2e::bin("agent-monitor");
    let root = e2e::browser::workspace_root();
    let st = Command::new(root.join("scripts/dist"))
        .args([
            "--only",
            "agent-monitor",
            "--profile",
            "dev",
            "--no-build",
            "--out",
        ])
        .arg(out)
        .current_dir(root)
        .status()
        .expect("running scripts/dist");
    assert!(st.success(), "scripts/dist failed");
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy().ends_with(".tar.gz")
                && p.to_string_lossy().contains("agent-monitor-")
        })
        .expect("an agent-monitor tarball in the dist output")
}

/// Starts a deploy or removal and waits for it to finish; returns the job.
async fn run_job(base: &str, token: &str, server: i64, what: &str) -> Value {
    let (st, v) = api(
        base,
        token,
        reqwest::Method::POST,
        &format!("/api/servers/{server}/{what}"),
        Some(json!({"role": "monitor"})),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    let job = v["job"].as_str().unwrap().to_string();
    e2e::wait_for("the job to finish", WAIT, || async {
        let (_, j) = api(
            base,
            token,
            reqwest::Method::GET,
            &format!("/api/jobs/{job}"),
            None,
        )
        .await;
        (j["finished"] == true).then_some(j)
    })
    .await
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_report_redeploy_and_remove_leave_nothing_behind() {
    let sshd = tokio::task::spawn_blocking(SshServer::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = sshd.home.join("install");
    std::fs::create_dir_all(&root).unwrap();
    let status = Command::new("chown")
        .arg(format!("{}:", sshd.user))
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());

    let mut s = settings(&dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
    s.deploy.root = root.display().to_string();
    s.deploy.connect_wait_secs = 60;
    let pkgs = s.data_dir.join("packages");
    std::fs::create_dir_all(&pkgs).unwrap();
    let tarball = tokio::task::spawn_blocking({
        let out = dir.path().join("dist");
        move || package(&out)
    })
    .await
    .unwrap();
    std::fs::copy(&tarball, pkgs.join(tarball.file_name().unwrap())).unwrap();
    let ctl = start_controller(&s).await;
    let token = e2e::inproc::api_token(&ctl);
    let base = format!("http://{}", ctl.http_addr);
    use reqwest::Method as M;
    let (_, g) = api(
        &base,
        &token,
        M::POST,
        "/api/groups",
        Some(json!({"name": "g"})),
    )
    .await;
    let (_, r) = api(
        &base,
        &token,
        M::POST,
        "/api/rooms",
        Some(json!({"name": "r", "purpose": "application"})),
    )
    .await;
    let server_body = |secret: &str| {
        json!({"name": "web-1", "group_id": g["id"], "room_id": r["id"], "address": sshd.address,
               "ssh_port": sshd.port, "ssh_user": sshd.user,
               "credential": {"kind": "password", "secret": secret}})
    };
    let (st, srv) = api(
        &base,
        &token,
        M::POST,
        "/api/servers",
        Some(server_body(&sshd.password)),
    )
    .await;
    assert_eq!(st, 201, "{srv}");
    let id = srv["id"].as_i64().unwrap();

    // What a deploy interrupted half way leaves: a half-uploaded package, a
    // half-unpacked directory, a config without its token, a stale pid file.
    // The deploy below must end in one working installation anyway.
    let leftovers = [
        (
            "var/tmp/myplatform-deploy/agent-monitor-0.1.0-linux-amd64.tar.gz",
            &b"\x1f\x8b half"[..],
        ),
        (
            "var/tmp/myplatform-deploy/agent-monitor/install.sh",
            &b"exit 1"[..],
        ),
        (
            "etc/myplatform/agent-monitor.toml",
            &b"controller = \"127.0.0.1:1\"\n"[..],
        ),
        ("var/lib/myplatform/agent-monitor.pid", &b"999999"[..]),
    ];
    for (path, content) in leftovers {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:", sshd.user))
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());

    // Deploy: every step done, the agent connected and reporting.
    let job = run_job(&base, &token, id, "deploy").await;
    assert_eq!(job["ok"], true, "{job:#}");
    assert!(
        job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "done"),
        "{job:#}"
    );
    let agent = job["agent_id"].as_str().unwrap().to_string();
    e2e::wait_for("the deployed agent's samples", WAIT, || async {
        let (_, hosts) = api(&base, &token, M::GET, "/api/hosts", None).await;
        hosts
            .as_array()?
            .iter()
            .find(|h| h["agent_id"] == agent.as_str() && h["latest"]["cpu"].is_object())
            .cloned()
    })
    .await;
    let (_, srv) = api(&base, &token, M::GET, &format!("/api/servers/{id}"), None).await;
    assert_eq!(srv["agents"][0]["id"], agent.as_str(), "not linked: {srv}");

    // Again: one working installation, the same agent.
    let again = run_job(&base, &token, id, "deploy").await;
    assert_eq!(again["ok"], true, "{again:#}");
    let connected: Vec<_> = ctl
        .registry
        .snapshot()
        .into_iter()
        .filter(|a| a.role == certs::Role::Monitor)
        .collect();
    assert_eq!(connected.len(), 1, "two agents after a second deploy");

    // Remove: nothing installed remains, the certificate is revoked.
    let installed = files_under(&root);
    assert!(!installed.is_empty());
    let gone = run_job(&base, &token, id, "undeploy").await;
    assert_eq!(gone["ok"], true, "{gone:#}");
    let left = files_under(&root);
    assert!(left.is_empty(), "files left after removal: {left:?}");
    let a = ctl
        .inventory
        .agents()
        .unwrap()
        .into_iter()
        .find(|a| a.id.as_str() == agent)
        .unwrap();
    assert!(a.revoked_at.is_some(), "the agent was not revoked");
    e2e::wait_for("the agent process gone", WAIT, || async {
        e2e::processes_mentioning(root.to_str().unwrap())
            .is_empty()
            .then_some(())
    })
    .await;

    // Refusals, each with the step that failed and why.
    let (_, srv) = api(
        &base,
        &token,
        M::PUT,
        &format!("/api/servers/{id}"),
        Some(server_body("wrong")),
    )
    .await;
    assert_eq!(srv["name"], "web-1");
    let bad = run_job(&base, &token, id, "deploy").await;
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["steps"][0]["state"], "failed");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{bad:#}"
    );
    api(
        &base,
        &token,
        M::PUT,
        &format!("/api/servers/{id}"),
        Some(server_body(&sshd.password)),
    )
    .await;

    // Only a package for another architecture.
    let name = tarball.file_name().unwrap().to_string_lossy().to_string();
    let other = name
        .replace("-amd64.", "-riscv64.")
        .replace("-arm64.", "-riscv64.");
    std::fs::rename(pkgs.join(&name), pkgs.join(&other)).unwrap();
    let bad = run_job(&base, &token, id, "deploy").await;
    assert_eq!(bad["steps"][1]["state"], "failed", "{bad:#}");
    assert!(
        bad["error"].as_str().unwrap().contains("only for riscv64"),
        "{bad:#}"
    );
    std::fs::rename(pkgs.join(&other), pkgs.join(&name)).unwrap();

    // No free disk: the install root on a 1 MiB tmpfs.
    let small = sshd.home.join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap()
        .success();
    assert!(mounted, "cannot mount a tmpfs for the full-disk case");
    Command::new("chown")
        .arg(format!("{}:", sshd.user))
        .arg(&small)
        .status()
        .unwrap();
    ctl.stop().await;
    let mut s2 = s.clone();
    s2.deploy.root = small.display().to_string();
    let ctl = start_controller(&s2).await;
    let base = format!("http://{}", ctl.http_addr);
    let bad = run_job(&base, &token, id, "deploy").await;
    let _ = Command::new("umount").arg(&small).status();
    assert_eq!(bad["steps"][2]["state"], "failed", "{bad:#}");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("not enough free disk"),
        "{bad:#}"
    );

    // An agent installed by hand (here: a binary where the .deb puts it)
    // is not installed a second time.
    let deb_bin = small
        .parent()
        .unwrap()
        .join("install/usr/bin/agent-monitor");
    ctl.stop().await;
    let ctl = start_controller(&s).await;
    let base = format!("http://{}", ctl.http_addr);
    std::fs::create_dir_all(deb_bin.parent().unwrap()).unwrap();
    std::fs::write(&deb_bin, b"#!/bin/sh\n").unwrap();
    let bad = run_job(&base, &token, id, "deploy").await;
    std::fs::remove_file(&deb_bin).unwrap();
    assert_eq!(bad["steps"][1]["state"], "failed", "{bad:#}");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("already installed on this server outside the controller"),
        "{bad:#}"
    );

    // An unreachable host.
    let (_, down) = api(
        &base,
        &token,
        M::POST,
        "/api/servers",
        Some(json!({"name": "down", "group_id": g["id"], "room_id": r["id"], "address": "127.0.0.1",
                    "ssh_port": 1, "ssh_user": "x", "credential": {"kind": "password", "secret": "x"}})),
    )
    .await;
    let bad = run_job(&base, &token, down["id"].as_i64().unwrap(), "deploy").await;
    assert_eq!(bad["steps"][0]["state"], "failed", "{bad:#}");
    ctl.stop().await;

    // A join token that expires during the deploy (a slow host: install.sh
    // takes longer than the token lives): the deploy fails at once with the
    // reason instead of waiting out connect_wait_secs; Stop cleans up, and
    // a deploy with a normal token lifetime ends in one working install.
    let slow = slow_package(&pkgs.join(&name), &dir.path().join("slow"));
    std::fs::copy(&slow, pkgs.join(&name)).unwrap();
    let mut s3 = s.clone();
    s3.deploy.token_ttl_secs = 1;
    let ctl = start_controller(&s3).await;
    let base = format!("http://{}", ctl.http_addr);
    let bad = run_job(&base, &token, id, "deploy").await;
    assert_eq!(bad["steps"][6]["state"], "failed", "{bad:#}");
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.contains("refused the agent's enrollment") && error.contains("expired"),
        "{bad:#}"
    );
    std::fs::copy(&tarball, pkgs.join(&name)).unwrap();
    let gone = run_job(&base, &token, id, "undeploy").await;
    assert_eq!(gone["ok"], true, "{gone:#}");
    assert!(files_under(&root).is_empty(), "{:?}", files_under(&root));
    ctl.stop().await;
    let ctl = start_controller(&s).await;
    let base = format!("http://{}", ctl.http_addr);
    let good = run_job(&base, &token, id, "deploy").await;
    assert_eq!(good["ok"], true, "{good:#}");
    let gone = run_job(&base, &token, id, "undeploy").await;
    assert_eq!(gone["ok"], true, "{gone:#}");
    e2e::wait_for("the agent process gone", WAIT, || async {
        e2e::processes_mentioning(root.to_str().unwrap())
            .is_empty()
            .then_some(())
    })
    .await;
    ctl.stop().await;
}

/// `tarball` repacked with an install.sh that first sleeps 3 s: a host
/// slow enough for a short-lived token to expire before the agent enrolls.
fn slow_package(tarball: &Path, work: &Path) -> PathBuf {
    let tree = work.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let ok = Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(&tree)
        .status()
        .unwrap()
        .success();
    assert!(ok, "unpacking {}", tarball.display());
    let top = std::fs::read_dir(&tree).unwrap().next().unwrap().unwrap();
    let install = top.path().join("install.sh");
    let script = std::fs::read_to_string(&install).unwrap();
    let (shebang, rest) = script.split_once('\n').unwrap();
    std::fs::write(&install, format!("{shebang}\nsleep 3\n{rest}")).unwrap();
    let out = work.join(tarball.file_name().unwrap());
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(&tree)
        .arg(top.file_name())
        .status()
        .unwrap()
        .success();
    assert!(ok, "repacking");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_one_line_install_downloads_checks_the_package_and_enrolls() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
    let pkgs = s.data_dir.join("packages");
    std::fs::create_dir_all(&pkgs).unwrap();
    let tarball = tokio::task::spawn_blocking({
        let out = dir.path().join("dist");
        move || package(&out)
    })
    .await
    .unwrap();
    std::fs::copy(&tarball, pkgs.join(tarball.file_name().unwrap())).unwrap();
    let ctl = start_controller(&s).await;
    let token = e2e::inproc::api_token(&ctl);
    let base = format!("http://{}", ctl.http_addr);
    let (st, v) = api(
        &base,
        &token,
        reqwest::Method::POST,
        "/api/tokens",
        Some(json!({"role": "monitor"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let line = v["install_lines"][0]["command"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(line.contains("sha256sum -c"), "{line}");
    let (st, bad) = api(
        &base,
        &token,
        reqwest::Method::POST,
        "/api/tokens",
        Some(json!({"role": "monitor", "uses": 0})),
    )
    .await;
    assert_eq!(st, 422, "{bad}");

    // Run it as a host would, but into a directory of ours and without
    // sudo (the test is root already; systemd does not run here).
    let host = dir.path().join("host");
    let root = host.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let cmd = format!(
        "{} --prefix {} --supervise",
        line.replacen("sudo ", "", 1),
        root.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .current_dir(&host)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the install line failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    e2e::wait_for("the hand-installed agent connected", WAIT, || async {
        ctl.registry
            .snapshot()
            .into_iter()
            .find(|a| a.role == certs::Role::Monitor)
    })
    .await;
    // A tampered package is refused by the line's checksum.
    let name = tarball.file_name().unwrap();
    std::fs::write(pkgs.join(name), b"not the package").unwrap();
    let other = dir.path().join("host2");
    std::fs::create_dir_all(&other).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .current_dir(&other)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a tampered package was installed");
    // Clean up the supervised agent.
    let uninstall = root.join("var/lib/myplatform/agent-monitor-uninstall.sh");
    let st = Command::new("sh").arg(&uninstall).status().unwrap();
    assert!(st.success());
    ctl.stop().await;
}
