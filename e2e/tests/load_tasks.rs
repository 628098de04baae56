//! Distributed load tests with real parts: the controller binary, real
//! agent-jmeter processes running real JMeter 5.6, and an HTTP target on
//! 127.0.0.1 counting requests per second (see `e2e::loadlab`).
//!
//! Rates are checked against the target's own counts with the issue's
//! tolerance (10 % per second after ramp-up); speed itself is measured in
//! `bench/`, not here. The tests run one at a time: each runs up to three
//! JVMs, and two such tests side by side on two cores skew each other's
//! rates.

use std::time::{Duration, Instant};

use e2e::loadlab::{LoadLab, RateTarget, unix_secs};
use e2e::wait_for;
use reqwest::Method as M;
use serde_json::{Value, json};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Checks that every second of `[from, to)` at the target is within 10 %
/// of `tps`; returns the counts for the message.
fn assert_rate(target: &RateTarget, from: u64, to: u64, tps: f64, what: &str) {
    let counts = target.per_second(from, to);
    let bad: Vec<&(u64, u64)> = counts
        .iter()
        .filter(|(_, n)| (*n as f64 - tps).abs() > tps * 0.10)
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: target {tps}/s, seconds off by more than 10 %: {bad:?} (all: {counts:?})"
    );
}

/// Waits until the target has had `tps` (±10 %) for 2 whole seconds;
/// returns the first second after that.
async fn settled(target: &RateTarget, tps: f64, within: Duration) -> u64 {
    wait_for(&format!("{tps}/s at the target"), within, || async {
        let now = unix_secs();
        let last = target.per_second(now - 2, now);
        last.iter()
            .all(|(_, n)| (*n as f64 - tps).abs() <= tps * 0.10)
            .then_some(now)
    })
    .await
}

fn p99_exact(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    // HdrHistogram's value_at_quantile: the value at rank ceil(q * n).
    let rank = ((0.99 * v.len() as f64).ceil() as usize).max(1);
    v[rank - 1]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_runs_on_two_generators_changes_rate_attaches_a_third_and_stops() {
    let _one = ONE_AT_A_TIME.lock().await;
    // One answer in 30 takes 2.5 s: the p99 is a slow one, far above
    // the histograms' initial range.
    let target = RateTarget::start_slow(30, Duration::from_millis(2500));
    let lab = LoadLab::start(3).await;
    let plan = lab.tps_plan("steady", &target, 40.0, 180, 2).await;
    // Debug mode keeps every generator's JTL for the percentile check.
    lab.set_run(plan, |run| run["debug"] = json!(true)).await;

    let started = Instant::now();
    let id = lab.run_plan(plan).await;
    let t = lab
        .wait_status(id, "running", Duration::from_secs(60))
        .await;
    let gens = t["generators"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "{t}");
    for g in gens {
        assert!(
            (g["per_min"].as_f64().unwrap() - 1200.0).abs() < 1e-6,
            "{g}"
        );
    }
    let from = settled(&target, 40.0, Duration::from_secs(60)).await;
    eprintln!("40/s reached {:?} after the start", started.elapsed());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_rate(&target, from, from + 5, 40.0, "two generators at 40/s");

    // Change the rate for all: in effect within 2 s.
    let (st, v) = lab
        .call(
            M::POST,
            &format!("/api/tasks/{id}/rate"),
            Some(json!({"tps": 80})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let changed = unix_secs();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_rate(
        &target,
        changed + 2,
        changed + 6,
        80.0,
        "after the change to 80/s",
    );

    // Hot-attach the third: the total stays on target.
    let (st, v) = lab
        .call(M::POST, &format!("/api/tasks/{id}/generators"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    let attached = Instant::now();
    let third = wait_for(
        "the third generator running",
        Duration::from_secs(60),
        || async {
            let t = lab.task(id).await;
            let gens = t["generators"].as_array()?.clone();
            (gens.len() == 3 && gens.iter().all(|g| g["status"] == "running")).then_some(gens)
        },
    )
    .await;
    eprintln!(
        "the third generator ran {:?} after attach",
        attached.elapsed()
    );
    // Once the third sends, the rate is split over all three.
    wait_for(
        "the rate split over three",
        Duration::from_secs(30),
        || async {
            let t = lab.task(id).await;
            t["generators"]
                .as_array()?
                .iter()
                .all(|g| (g["per_min"].as_f64().unwrap_or(0.0) - 1600.0).abs() < 1e-6)
                .then_some(())
        },
    )
    .await;
    let newest = third
        .iter()
        .find(|g| !gens.iter().any(|o| o["agent_id"] == g["agent_id"]))
        .unwrap()["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Its first samples reach the merged series.
    wait_for(
        "the third generator's samples",
        Duration::from_secs(30),
        || async {
            let (_, s) = lab
                .call(M::GET, &format!("/api/tasks/{id}/series"), None)
                .await;
            s["generators"][&newest]
                .as_array()
                .filter(|a| a.iter().any(|p| p["count"].as_u64() > Some(0)))
                .map(drop)
        },
    )
    .await;
    let from = settled(&target, 80.0, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_rate(&target, from, from + 4, 80.0, "three generators at 80/s");

    // Stop all: finished, totals, no JVM left.
    let (st, v) = lab
        .call(M::POST, &format!("/api/tasks/{id}/stop"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    let done = lab
        .wait_status(id, "finished", Duration::from_secs(60))
        .await;
    let totals = &done["task"]["totals"];
    assert!(totals["samples"].as_u64().unwrap() > 500, "{done}");
    assert_eq!(totals["errors"], 0, "{done}");
    wait_for("no JMeter left", Duration::from_secs(20), || async {
        lab.java_processes().is_empty().then_some(())
    })
    .await;
    let actions: Vec<String> = done["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{}: {}",
                a["who"].as_str().unwrap(),
                a["action"].as_str().unwrap()
            )
        })
        .collect();
    let has = |s: &str| actions.iter().any(|a| a.contains(s));
    assert!(has("e2e-admin: changed TPS to 80"), "{actions:#?}");
    assert!(has("e2e-admin: attached"), "{actions:#?}");
    assert!(has("e2e-admin: stopped the task"), "{actions:#?}");

    // The merged p99 is the p99 of every generator's samples together.
    let mut elapsed = Vec::new();
    for g in done["generators"].as_array().unwrap() {
        let agent = g["agent_id"].as_str().unwrap();
        let r = e2e::http()
            .get(format!(
                "{}/api/tasks/{id}/generators/{agent}/jtl",
                lab.base
            ))
            .bearer_auth(&lab.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        for row in e2e::jmeter::parse_jtl(&text) {
            elapsed.push(row["elapsed"].parse::<u64>().unwrap());
        }
    }
    assert_eq!(elapsed.len() as u64, totals["samples"].as_u64().unwrap());
    let exact = p99_exact(elapsed);
    let merged = totals["p99_ms"].as_u64().unwrap();
    assert!(exact >= 2500, "the slow answers are the p99: {exact} ms");
    assert!(
        (merged as f64 - exact as f64).abs() <= exact as f64 * 0.001,
        "merged p99 {merged} ms, exact {exact} ms"
    );

    // The JMeter log of a generator, fetched from it; the exact run files.
    let agent = done["generators"][0]["agent_id"].as_str().unwrap();
    let r = e2e::http()
        .get(format!(
            "{}/api/tasks/{id}/generators/{agent}/log",
            lab.base
        ))
        .bearer_auth(&lab.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("JMeter"));
    let r = e2e::http()
        .get(format!("{}/api/tasks/{id}/artifact", lab.base))
        .bearer_auth(&lab.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-checksum-sha256"].to_str().unwrap(),
        done["task"]["artifact_sha256"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_restart_mid_run_keeps_the_load_the_results_and_the_schedule() {
    let _one = ONE_AT_A_TIME.lock().await;
    let target = RateTarget::start();
    let mut lab = LoadLab::start(2).await;
    let plan = lab.tps_plan("scheduled", &target, 30.0, 120, 2).await;
    let start = unix_secs() as i64 + 5;
    lab.set_run(plan, |run| {
        run["schedule"] = json!({"type": "automatic", "steps": [
            {"at": start, "percent": 100},
            {"at": start + 25, "percent": 200},
        ]});
    })
    .await;
    let id = lab.run_plan(plan).await;
    assert_eq!(lab.task(id).await["task"]["status"], "scheduled");
    lab.wait_status(id, "running", Duration::from_secs(60))
        .await;
    let from = settled(&target, 30.0, Duration::from_secs(60)).await;

    // Down from before the second step to after it.
    let down_at = unix_secs();
    lab.restart_controller(Duration::from_secs(
        (start as u64 + 25).saturating_sub(down_at) + 3,
    ))
    .await;
    let up_at = unix_secs();
    assert!(
        up_at > start as u64 + 25,
        "the step passed while it was down"
    );
    // The load went on at 30/s while the controller was away.
    assert_rate(
        &target,
        from,
        start as u64 + 25,
        30.0,
        "while the controller was down",
    );
    // The step missed while down is applied once, late: 60/s.
    let from = settled(&target, 60.0, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_rate(&target, from, from + 3, 60.0, "after the missed step");
    let t = lab.task(id).await;
    let steps: Vec<&Value> = t["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"].as_str().unwrap().starts_with("step 2 of 2"))
        .collect();
    assert_eq!(steps.len(), 1, "the second step applied once: {t}");
    assert!(
        t["generators"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["status"] == "running"),
        "{t}"
    );

    // Results of the seconds the controller was down were re-sent.
    let (_, s) = lab
        .call(M::GET, &format!("/api/tasks/{id}/series"), None)
        .await;
    let secs: std::collections::BTreeSet<i64> = s["total"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["count"].as_u64() > Some(0))
        .map(|p| p["sec"].as_i64().unwrap())
        .collect();
    let missing: Vec<i64> = (down_at as i64..up_at as i64)
        .filter(|s| !secs.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "seconds lost over the restart: {missing:?}"
    );

    let (st, _) = lab
        .call(M::POST, &format!("/api/tasks/{id}/stop"), None)
        .await;
    assert_eq!(st, 200);
    lab.wait_status(id, "finished", Duration::from_secs(60))
        .await;
    wait_for("no JMeter left", Duration::from_secs(20), || async {
        lab.java_processes().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_a_bad_artifact_and_a_lost_generator() {
    let _one = ONE_AT_A_TIME.lock().await;
    let target = RateTarget::start();
    let mut lab = LoadLab::start(1).await;
    // A generator whose JMeter path is wrong reports why it cannot run.
    let bad_home = lab.dir.path().join("no-jmeter-here");
    let bad = lab.add_generator_with(&bad_home).await;
    let c = lab.candidates(lab.room).await;
    let bad_view = c.iter().find(|g| g["agent_id"] == bad.as_str()).unwrap();
    assert!(
        bad_view["problem"]
            .as_str()
            .unwrap()
            .contains("no-jmeter-here"),
        "{bad_view}"
    );
    // And one without java.
    let no_java = lab.add_generator_without_java().await;
    let c = lab.candidates(lab.room).await;
    let view = c
        .iter()
        .find(|g| g["agent_id"] == no_java.as_str())
        .unwrap();
    assert!(
        view["problem"]
            .as_str()
            .unwrap()
            .contains("`java` is not on PATH"),
        "{view}"
    );

    // Not enough idle generators: a clear refusal, nothing started.
    let two = lab.tps_plan("needs-two", &target, 10.0, 60, 2).await;
    let (st, v) = lab
        .call(M::POST, &format!("/api/plans/{two}/run"), None)
        .await;
    assert_eq!(st, 409, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("needs 2 idle load generator"), "{msg}");
    assert!(msg.contains("cannot run JMeter"), "{msg}");
    let (_, tasks) = lab.call(M::GET, "/api/tasks", None).await;
    assert_eq!(tasks.as_array().unwrap().len(), 0, "{tasks}");

    // A schedule whose start passed since the plan was saved.
    let late = lab.tps_plan("late", &target, 10.0, 60, 1).await;
    lab.set_run(late, |run| {
        run["schedule"] =
            json!({"type": "automatic", "steps": [{"at": unix_secs() + 2, "percent": 100}]});
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (st, v) = lab
        .call(M::POST, &format!("/api/plans/{late}/run"), None)
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(v.to_string().contains("the start is in the past"), "{v}");

    // One generator runs; bad rate changes are refused and change nothing.
    let one = lab.tps_plan("one", &target, 20.0, 120, 1).await;
    let id = lab.run_plan(one).await;
    let t = lab
        .wait_status(id, "running", Duration::from_secs(60))
        .await;
    let runner = t["generators"][0]["agent_id"].as_str().unwrap().to_string();
    wait_for(
        "the generator's first results",
        Duration::from_secs(30),
        || async {
            let (_, s) = lab
                .call(M::GET, &format!("/api/tasks/{id}/series"), None)
                .await;
            (!s["total"].as_array()?.is_empty()).then_some(())
        },
    )
    .await;
    for bad_rate in [json!({"tps": 0}), json!({"tps": -5}), json!({"tps": 1e12})] {
        let (st, v) = lab
            .call(
                M::POST,
                &format!("/api/tasks/{id}/rate"),
                Some(bad_rate.clone()),
            )
            .await;
        assert_eq!(st, 422, "{bad_rate}: {v}");
        assert!(v["error"].as_str().unwrap().contains("TPS must be"), "{v}");
    }
    let (st, _) = lab
        .call(
            M::POST,
            &format!("/api/tasks/{id}/rate"),
            Some(json!({"tps": "fast"})),
        )
        .await;
    assert_eq!(st, 422);
    assert_eq!(lab.task(id).await["task"]["target"], 20.0);
    // No idle usable generator to attach.
    let (st, v) = lab
        .call(M::POST, &format!("/api/tasks/{id}/generators"), None)
        .await;
    assert_eq!(st, 409, "{v}");

    // An artifact that no longer matches its checksum: the generator
    // attached now refuses to run it.
    let ok2 = lab.add_generator().await;
    let artifact = lab.cli.data_dir.join(format!("tasks/{id}/artifact.zip"));
    let mut bytes = std::fs::read(&artifact).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();
    let (st, v) = lab
        .call(
            M::POST,
            &format!("/api/tasks/{id}/generators"),
            Some(json!({"agent_id": ok2})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let failed = wait_for(
        "the attached generator refuses",
        Duration::from_secs(30),
        || async {
            let t = lab.task(id).await;
            t["generators"]
                .as_array()?
                .iter()
                .find(|g| g["agent_id"] == ok2.as_str() && g["status"] == "failed")
                .cloned()
        },
    )
    .await;
    assert!(
        failed["message"].as_str().unwrap().contains("checksum"),
        "{failed}"
    );
    // Its share went back to the one that runs.
    wait_for(
        "the share back on the runner",
        Duration::from_secs(10),
        || async {
            let t = lab.task(id).await;
            t["generators"]
                .as_array()?
                .iter()
                .any(|g| g["agent_id"] == runner.as_str() && g["per_min"] == 1200.0)
                .then_some(())
        },
    )
    .await;

    // The running generator's agent dies: lost after a while, the task
    // says so; when the agent comes back without the run, it is closed.
    let i = lab.generators.iter().position(|g| g.id == runner).unwrap();
    let pid = lab.generators[i].proc.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let lost = wait_for(
        "the generator marked lost",
        Duration::from_secs(60),
        || async {
            let t = lab.task(id).await;
            t["generators"]
                .as_array()?
                .iter()
                .find(|g| g["agent_id"] == runner.as_str() && g["status"] == "lost")
                .cloned()
        },
    )
    .await;
    assert!(
        lost["message"].as_str().unwrap().contains("no contact"),
        "{lost}"
    );
    // Its orphaned JMeter halts by itself (the control script's watchdog).
    wait_for(
        "the orphaned JMeter gone",
        Duration::from_secs(60),
        || async { lab.java_processes().is_empty().then_some(()) },
    )
    .await;
    let mut cmd = std::process::Command::new(e2e::bin("agent-jmeter"));
    cmd.arg("--state-dir")
        .arg(&lab.generators[i].state_dir)
        .arg("--jmeter-home")
        .arg(&lab.jmeter.home);
    let _back = e2e::Proc::spawn("agent-jmeter-back", cmd, lab.dir.path());
    let t = lab
        .wait_status(id, "finished", Duration::from_secs(60))
        .await;
    let g = t["generators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["agent_id"] == runner.as_str())
        .unwrap()
        .clone();
    assert_eq!(g["status"], "failed", "{t}");
    assert!(g["message"].as_str().unwrap().contains("restarted"), "{g}");
    assert!(t["task"]["totals"]["samples"].as_u64().unwrap() > 0, "{t}");

    // An uploaded JMeter zip runs too, here in thread mode: the threads
    // are fixed, so a rate change is refused.
    let editor = lab.tps_plan("for-export", &target, 10.0, 60, 1).await;
    let jmx = e2e::http()
        .get(format!("{}/api/plans/{editor}/jmx", lab.base))
        .bearer_auth(&lab.token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let zip_path = lab.dir.path().join("uploaded.zip");
    {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        w.start_file("uploaded.jmx", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(&jmx).unwrap();
        w.finish().unwrap();
    }
    let (st, body) = e2e::curl(
        &lab.token,
        &[
            "-F",
            &format!("file=@{}", zip_path.display()),
            &format!("{}/api/plans/upload", lab.base),
        ],
    );
    assert_eq!(st, 201, "{body}");
    let threads = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    lab.set_run(threads, |run| {
        *run = json!({"load": {"type": "threads", "threads": 2}, "duration_secs": 60,
                            "room_id": lab.room, "generators": 1});
    })
    .await;
    let id = lab.run_plan(threads).await;
    let t = lab
        .wait_status(id, "running", Duration::from_secs(60))
        .await;
    assert!(
        t["actions"]
            .to_string()
            .contains("2 threads per thread group"),
        "{t}"
    );
    let before = target.total();
    wait_for(
        "the uploaded plan's requests",
        Duration::from_secs(30),
        || async { (target.total() > before + 20).then_some(()) },
    )
    .await;
    let (st, v) = lab
        .call(
            M::POST,
            &format!("/api/tasks/{id}/rate"),
            Some(json!({"tps": 5})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("fixed number of threads"),
        "{v}"
    );
    let (st, _) = lab
        .call(M::POST, &format!("/api/tasks/{id}/stop"), None)
        .await;
    assert_eq!(st, 200);
    lab.wait_status(id, "finished", Duration::from_secs(60))
        .await;
    let (st, v) = lab.call(M::DELETE, &format!("/api/tasks/{id}"), None).await;
    assert_eq!(st, 204, "{v}");
    let (st, _) = lab.call(M::GET, &format!("/api/tasks/{id}"), None).await;
    assert_eq!(st, 404);
}

/// The task pages in real headless Chromium against a live run: the Run
/// button's refusal, the live chart, a rate change, hot-attach and stop
/// (scenario in `e2e/browser/tasks.mjs`).
#[tokio::test(flavor = "multi_thread")]
async fn the_task_pages_steer_a_live_run_in_chromium() {
    let _one = ONE_AT_A_TIME.lock().await;
    let target = RateTarget::start();
    let lab = LoadLab::start(3).await;
    lab.cli.add_user("root", "root password 123", true);
    let plan = lab.tps_plan("live", &target, 20.0, 180, 2).await;
    let bad = lab.tps_plan("too-big", &target, 20.0, 60, 2).await;
    let id = lab.run_plan(plan).await;
    lab.wait_status(id, "running", Duration::from_secs(60))
        .await;
    let base = lab.base.clone();
    let run = tokio::task::spawn_blocking(move || {
        e2e::browser::run_script(
            &e2e::browser::script("tasks.mjs"),
            &[
                ("URL", base),
                ("ADMIN_NAME", "root".into()),
                ("ADMIN_PASSWORD", "root password 123".into()),
                ("TASK_ID", id.to_string()),
                ("PLAN_ID", plan.to_string()),
                ("BAD_PLAN_ID", bad.to_string()),
                ("NEW_TPS", "30".into()),
            ],
        )
    })
    .await
    .unwrap();
    eprintln!("{}", run.stdout);
    let t = lab
        .wait_status(id, "finished", Duration::from_secs(60))
        .await;
    assert!(
        t["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["who"] == "root"
                && a["action"]
                    .as_str()
                    .unwrap()
                    .starts_with("changed TPS to 30")),
        "{t}"
    );
    wait_for("no JMeter left", Duration::from_secs(20), || async {
        lab.java_processes().is_empty().then_some(())
    })
    .await;
}
