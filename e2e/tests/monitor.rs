//! agent-monitor as a user runs it: the `sample` command, and the service
//! reporting to a real controller (`/api/hosts`), following the
//! application the admin sets with `controller agent watch`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{ControllerCli, Proc, bin, get_json, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn mem_total_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    kib * 1024
}

#[test]
fn sample_prints_one_full_sample_without_a_controller() {
    let out = Command::new(bin("agent-monitor"))
        .args(["sample", "--interval", "300ms"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["sample"];
    let busy = s["cpu"]["busy_pct"].as_f64().expect("cpu busy");
    assert!((0.0..=100.0).contains(&busy));
    assert_eq!(s["mem"]["total_bytes"].as_u64(), Some(mem_total_bytes()));
    assert!(s["disks"].as_array().is_some_and(|d| !d.is_empty()), "{s}");
    assert!(s["tcp"]["established"].is_u64());
    assert!(s["errors"].as_array().unwrap().is_empty(), "{s}");
    assert!(v["facts"]["cpu_cores"].as_u64().unwrap() >= 1);
    assert!(!v["facts"]["kernel"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn the_agent_reports_to_a_real_controller() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cli = ControllerCli::new(data.clone());
    let http = cli.http;
    let controller = |args: &[&str]| cli.cmd(args);
    let token = cli.api_token();
    let _server = Proc::spawn("controller", controller(&["serve"]), dir.path());
    let hosts_url = format!("http://127.0.0.1:{http}/api/hosts");
    wait_for("controller up", WAIT, || async {
        get_json(&hosts_url, &token).await
    })
    .await;
    let out = controller(&["token", "create", "--role", "monitor"])
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut cmd = Command::new(bin("agent-monitor"));
    cmd.args(&words[1..])
        .arg("--state-dir")
        .arg(dir.path().join("agent"))
        .args(["--interval", "500ms"]);
    let _agent = Proc::spawn("agent-monitor", cmd, dir.path());

    let host = wait_for("a host with samples and facts", WAIT, || async {
        let v = get_json(&hosts_url, &token).await?;
        let h = v.as_array()?.first()?.clone();
        (h["latest"]["cpu"].is_object() && h["facts"].is_object() && h["last_seq"].as_u64()? >= 3)
            .then_some(h)
    })
    .await;
    assert_eq!(host["connected"], true);
    assert_eq!(
        host["latest"]["mem"]["total_bytes"].as_u64(),
        Some(mem_total_bytes())
    );
    assert_eq!(host["duplicates"], 0);
    assert!(host["link_rx_bytes"].as_u64().unwrap() > 0);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(host["hostname"].as_str(), Some(hostname.trim()));
    let id = host["agent_id"].as_str().unwrap().to_string();

    // The series are stored and queryable, alone and as a group mean.
    let base = format!("http://127.0.0.1:{http}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let from = now - 600_000;
    let q = get_json(
        &format!("{base}/api/hosts/{id}/series?fields=cpu.busy_pct,mem.total_bytes&from={from}"),
        &token,
    )
    .await
    .unwrap();
    assert_eq!(q["resolution"], "raw");
    let cpu = q["series"][0]["points"].as_array().unwrap();
    assert!(cpu.len() >= 2, "{q}");
    assert!(
        cpu.iter()
            .all(|p| (0.0..=100.0).contains(&p[1].as_f64().unwrap()))
    );
    assert_eq!(
        q["series"][1]["points"][0][1].as_f64(),
        Some(mem_total_bytes() as f64)
    );
    let m = get_json(
        &format!("{base}/api/series/mean?field=cpu.busy_pct&max_points=10"),
        &token,
    )
    .await
    .unwrap();
    assert_eq!(m["hosts"], 1);
    assert!(
        !m["result"]["series"][0]["points"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{m}"
    );
    let status = get_json(&format!("{base}/api/metrics/status"), &token)
        .await
        .unwrap();
    assert_eq!(status["backend"], "embedded");
    let bad = e2e::http()
        .get(format!(
            "{base}/api/hosts/{id}/series?fields=cpu.busy_pct&from=10&to=5"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("not after"));

    // The admin points the agent at an application; no agent restart.
    let marker = format!("e2e-app-{}", std::process::id());
    let code = "import socket,time\n\
        s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(16)\n\
        c=[socket.create_connection(s.getsockname()) for _ in range(3)]\n\
        a=[s.accept()[0] for _ in range(3)]\n\
        print(s.getsockname()[1], flush=True)\n\
        time.sleep(60)";
    let mut app = Child(
        Command::new("python3")
            .args(["-c", code, &marker])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let mut port = String::new();
    BufReader::new(app.0.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port: u64 = port.trim().parse().unwrap();
    let out = controller(&["agent", "watch", &id, "--app", &marker])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = u64::from(app.0.id());
    let watched = wait_for("the application's port stats", WAIT, || async {
        let v = get_json(&hosts_url, &token).await?;
        let a = v.as_array()?.first()?["latest"]["app"].clone();
        (a["pid"].as_u64() == Some(pid) && a["ports"].as_array().is_some_and(|p| !p.is_empty()))
            .then_some(a)
    })
    .await;
    let p = &watched["ports"][0];
    assert_eq!(p["port"].as_u64(), Some(port));
    assert_eq!(p["established"].as_u64(), Some(3), "{watched}");

    // Switched to a Java application: heap and GC from hsperfdata.
    let gc_loop = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../agent-monitor/tests/java/GcLoop.java"
    );
    let _jvm = Child(
        Command::new("java")
            .args([gc_loop, "300", "60"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("java (install default-jdk-headless)"),
    );
    let out = controller(&["agent", "watch", &id, "--app", "GcLoop.java"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let jvm = wait_for(
        "JVM heap and a full GC",
        Duration::from_secs(60),
        || async {
            let v = get_json(&hosts_url, &token).await?;
            let j = v.as_array()?.first()?["latest"]["app"]["jvm"].clone();
            (j["heap_used_bytes"].as_u64()? > 0 && j["full_gc_count"].as_u64()? > 0).then_some(j)
        },
    )
    .await;
    assert!(
        jvm["heap_committed_bytes"].as_u64() >= jvm["heap_used_bytes"].as_u64(),
        "{jvm}"
    );
}

/// Kills and reaps a helper process, panics included.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        // A JVM whose stdin closes exits normally and removes its
        // hsperfdata file; SIGKILL would leave the file behind.
        if let Some(stdin) = self.0.stdin.take() {
            drop(stdin);
            for _ in 0..50 {
                if matches!(self.0.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
