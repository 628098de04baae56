//! agent-monitor as a user runs it: the `sample` command, and the service
//! reporting to a real controller (`/api/hosts`), following the
//! application the admin sets with `controller agent watch`.

use std::process::Command;
use std::time::Duration;

use e2e::{Proc, bin, free_port, get_json, wait_for};

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
    let (http, quic) = (free_port(), free_port());
    let controller = |args: &[&str]| {
        let mut c = Command::new(bin("controller"));
        c.env_remove("MYPLATFORM_CONFIG")
            .env("MYPLATFORM_DATA_DIR", &data)
            .env("MYPLATFORM_GATEWAY__LISTEN", format!("127.0.0.1:{quic}"))
            .env("MYPLATFORM_WEB__LISTEN", format!("127.0.0.1:{http}"))
            .args(args);
        c
    };
    let _server = Proc::spawn("controller", controller(&["serve"]), dir.path());
    let hosts_url = format!("http://127.0.0.1:{http}/api/hosts");
    wait_for("controller up", WAIT, || async {
        get_json(&hosts_url).await
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
        let v = get_json(&hosts_url).await?;
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
}
