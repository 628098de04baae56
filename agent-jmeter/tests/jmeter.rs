//! The supervisor with a real JMeter 5.6 against a recording HTTP server
//! on 127.0.0.1: a rate change shows in the server's per-second counts;
//! per-second histograms merge to the JTL's p99; nothing of the JVM
//! listens beyond loopback; stops (graceful, dropped, by duration) leave no
//! process; a bad plan fails with JMeter's error lines. JMeter comes from
//! `scripts/jmeter` or JMETER_HOME (e2e's harness); without it these tests
//! fail and say how to get it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_jmeter::control::SamplesPerMin;
use agent_jmeter::install::{Checked, Install};
use agent_jmeter::results::{Second, new_histogram};
use agent_jmeter::supervisor::{EndReason, Event, Options, Run, TaskSpec};
use e2e::jmeter::{JMeter, Reply, TargetServer};
use loadplan::jmx::{Sizing, generate, prepare};
use loadplan::*;
use tokio::sync::mpsc;

/// Far above any run here; reached only when something hangs.
const EVENT_TIMEOUT: Duration = Duration::from_secs(90);

/// One JVM at a time: on this 2-core machine parallel JMeter runs starve
/// each other, and these tests watch rates and process lifetimes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// JMeter and java, checked; holding the guard serialises the JMeter tests.
async fn checked() -> (Checked, tokio::sync::MutexGuard<'static, ()>) {
    let serial = SERIAL.lock().await;
    let home = tokio::task::spawn_blocking(JMeter::find)
        .await
        .unwrap()
        .home;
    let checked = Install::locate(Some(&home))
        .expect("JMeter and java")
        .check()
        .await
        .expect("JMeter and java run");
    (checked, serial)
}

/// A test-sized JVM: the default 1 GiB heap times parallel tests is too
/// much for this machine.
fn options() -> Options {
    Options {
        jvm_args: ["-Xms64m", "-Xmx256m", "-Djava.awt.headless=true"]
            .map(String::from)
            .to_vec(),
        ..Options::default()
    }
}

/// A TPS plan with one sampler `hit` on `port`, prepared and written as a
/// task artifact; returns it with generator 0's -J properties.
fn artifact(dir: &Path, port: u16, tps: f64, duration_secs: u32) -> (PathBuf, Vec<String>) {
    let plan = TestPlan {
        name: "rate".into(),
        thread_groups: vec![ThreadGroup {
            name: "g".into(),
            cookies: false,
            controllers: vec![Controller {
                name: "c".into(),
                enabled: true,
                samplers: vec![HttpSampler {
                    name: "hit".into(),
                    host: "127.0.0.1".into(),
                    port: port.to_string(),
                    path: "/hit".into(),
                    ..HttpSampler::default()
                }],
            }],
            ..ThreadGroup::default()
        }],
        ..TestPlan::default()
    };
    let settings = RunSettings {
        load: Load::Tps { tps },
        duration_secs,
        generators: 1,
        ..RunSettings::default()
    };
    // Room for twice the rate: the test doubles it.
    let sizing = Sizing {
        expected_rt_ms: 200,
        max_threads_per_generator: 50,
    };
    let prepared = prepare(&generate(&plan), &settings, &sizing).unwrap();
    let mut args = prepared.properties(0).to_args();
    for a in &mut args {
        if a.starts_with("-Jmyplatform.threads=") {
            *a = "-Jmyplatform.threads=10".into();
        }
    }
    let zip = dir.join("artifact.zip");
    loadplan::bundle::write_artifact(
        &zip,
        loadplan::bundle::ARTIFACT_JMX,
        &prepared.jmx,
        Vec::<(String, &[u8])>::new(),
        &Default::default(),
    )
    .unwrap();
    (zip, args)
}

/// A run of [`artifact`]'s plan against a fresh target answering "OK".
struct RateRun {
    server: TargetServer,
    task: PathBuf,
    run: Run,
    rx: mpsc::Receiver<Event>,
    /// Holds the task directory.
    _dir: tempfile::TempDir,
}

impl RateRun {
    async fn start(checked: &Checked, tps: f64, duration_secs: u32, debug: bool) -> RateRun {
        let server = TargetServer::start(Arc::new(|_| Reply::text("OK")));
        let dir = tempfile::tempdir().unwrap();
        let (zip, args) = artifact(dir.path(), server.port(), tps, duration_secs);
        let task = dir.path().join("task");
        let (tx, rx) = mpsc::channel(1000);
        let spec = TaskSpec {
            artifact: zip,
            dir: task.clone(),
            properties: args,
            debug,
        };
        let run = Run::start(checked, spec, &options(), tx).await.unwrap();
        RateRun {
            server,
            task,
            run,
            rx,
            _dir: dir,
        }
    }
}

/// Waits (at most 60 s: JMeter's start) for the target's first request.
async fn until_load_flows(server: &TargetServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.requests().is_empty() {
        assert!(Instant::now() < deadline, "no request within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn next(rx: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(EVENT_TIMEOUT, rx.recv())
        .await
        .expect("an event in time")
        .expect("the event channel open")
}

/// Events until the end, seconds collected.
async fn until_end(rx: &mut mpsc::Receiver<Event>, seconds: &mut Vec<Second>) -> Event {
    loop {
        match next(rx).await {
            Event::Second(s) => seconds.push(s),
            e => return e,
        }
    }
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(&needle) {
            found.push(pid);
        }
    }
    found
}

/// Every socket of `pid` (`ss -tuap`): `(state, local address)`.
fn sockets_of(pid: u32) -> Vec<(String, String)> {
    let out = std::process::Command::new("ss")
        .args(["-H", "-t", "-u", "-a", "-n", "-p"])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let tag = format!("pid={pid},");
    text.lines()
        .filter(|l| l.contains(&tag))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].to_string(), f[4].to_string())
        })
        .collect()
}

fn is_loopback(addr: &str) -> bool {
    addr.starts_with("127.") || addr.starts_with("[::1]") || addr.starts_with("[::ffff:127.")
}

/// Per-second request counts of the server, seconds from `t0`.
fn per_second(server: &TargetServer, t0: Instant, secs: usize) -> Vec<usize> {
    let mut b = vec![0; secs];
    for r in server.requests() {
        if let Some(d) = r.at.checked_duration_since(t0)
            && let Some(c) = b.get_mut(d.as_secs() as usize)
        {
            *c += 1;
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_change_takes_effect_and_histograms_merge_to_the_jtl_p99() {
    let (checked, _serial) = checked().await;
    let RateRun {
        server,
        task,
        run,
        mut rx,
        _dir,
    } = RateRun::start(&checked, 20.0, 16, true).await;
    let Event::Started {
        pid,
        jmeter_version,
    } = next(&mut rx).await
    else {
        panic!("Started first")
    };
    assert_eq!(jmeter_version, checked.jmeter_version);
    assert_eq!(pid, run.pid);

    // Wait until load flows, then give it 4 s at 20/s.
    let mut seconds = Vec::new();
    until_load_flows(&server).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Nothing of the JVM may be reachable from another host.
    let sockets = sockets_of(pid);
    eprintln!("sockets of the JVM: {sockets:?}");
    assert!(!sockets.is_empty(), "ss shows the JVM's connections");
    for (state, local) in &sockets {
        assert!(
            is_loopback(local),
            "the JVM has a {state} socket on {local}: reachable beyond loopback"
        );
    }

    let asked = Instant::now();
    run.set_throughput(SamplesPerMin::per_sec(40.0).unwrap())
        .await
        .unwrap();
    let acked = asked.elapsed();
    // Per 1 s sliding window after the change: when does it reach 36/s?
    let mut effect = None;
    let check_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < check_until && effect.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        let window = server
            .requests()
            .iter()
            .filter(|r| r.at > asked && now.duration_since(r.at) <= Duration::from_secs(1))
            .count();
        if window >= 36 {
            effect = Some(now.duration_since(asked));
        }
    }
    let before = per_second(&server, asked - Duration::from_secs(4), 4);
    eprintln!(
        "rate change 20/s -> 40/s: acknowledged in {acked:?}; a 1 s window at >= 36 after {effect:?}; \
         per second before {before:?}"
    );
    let effect = effect.expect("40/s within 5 s of the change");
    assert!(effect < Duration::from_secs(4), "{effect:?}");
    // The last 3 s before the change (the first may hold JMeter's start);
    // the total, not each second: this machine is shared and noisy.
    let last3: usize = before[1..].iter().sum();
    assert!((45..=75).contains(&last3), "20/s before: {before:?}");

    // The run ends by itself when its duration passes.
    let end = until_end(&mut rx, &mut seconds).await;
    let after = per_second(&server, asked, 6);
    eprintln!("per second from the change on: {after:?}");
    assert!(
        after[2..].iter().all(|c| (34..=46).contains(c)),
        "40/s after the change: {after:?}"
    );
    let outcome = run.wait().await;
    assert_eq!(outcome.event, end);
    let Event::Ended { exit, reason } = end else {
        panic!("{end:?}; log:\n{}", read(&task.join("jmeter.log")))
    };
    assert_eq!((exit.code, reason), (Some(0), EndReason::Finished));
    assert!(
        processes_mentioning(&task).is_empty(),
        "a process of the task is left"
    );

    // The seconds add up to the JTL (debug keeps it whole), and their
    // merged histogram gives the JTL's p99 within HDR precision.
    let jtl = e2e::jmeter::parse_jtl(&read(&task.join("results.csv")));
    let total: u64 = seconds.iter().map(|s| s.count).sum();
    assert_eq!(total as usize, jtl.len());
    assert_eq!(total as usize, server.requests().len());
    let mut merged = new_histogram();
    for s in &seconds {
        assert_eq!(s.label, "hit");
        merged.add(s.histogram().unwrap()).unwrap();
    }
    let mut exact: Vec<u64> = jtl.iter().map(|r| r["elapsed"].parse().unwrap()).collect();
    exact.sort_unstable();
    let rank = ((0.99 * exact.len() as f64).ceil() as usize).max(1) - 1;
    let p99 = merged.value_at_quantile(0.99);
    assert!(
        merged.equivalent(p99, exact[rank]),
        "merged p99 {p99} vs JTL p99 {}",
        exact[rank]
    );
    let hist_bytes: usize = seconds.iter().map(|s| s.hist.len()).sum();
    eprintln!(
        "{} samples in {} seconds, p99 {p99} ms (JTL {}); histograms {} B/second on average; tailer busy {:?} for {} bytes",
        total,
        seconds.len(),
        exact[rank],
        hist_bytes / seconds.len().max(1),
        outcome.tail.busy,
        outcome.tail.bytes
    );
    assert!(task.join("jmeter.log").is_file());
}

/// A raise after a deep cut: without the control script pulling the
/// shared schedule back, every waiting thread holds a slot at the cut
/// rate's spacing (10 threads at 4/s: 2.5 s of slots) and the raise waits
/// for all of them.
#[tokio::test(flavor = "multi_thread")]
async fn a_raise_after_a_deep_cut_does_not_wait_for_the_old_slots() {
    let (checked, _serial) = checked().await;
    let RateRun {
        server,
        task,
        run,
        mut rx,
        _dir,
    } = RateRun::start(&checked, 40.0, 20, false).await;
    until_load_flows(&server).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.set_throughput(SamplesPerMin::per_sec(4.0).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let asked = Instant::now();
    run.set_throughput(SamplesPerMin::per_sec(40.0).unwrap())
        .await
        .unwrap();
    let mut effect = None;
    let check_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < check_until && effect.is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let window = server
            .requests()
            .iter()
            .filter(|r| r.at > asked && now.duration_since(r.at) <= Duration::from_secs(1))
            .count();
        if window >= 36 {
            effect = Some(now.duration_since(asked));
        }
    }
    let around = per_second(&server, asked - Duration::from_secs(3), 6);
    eprintln!("4/s -> 40/s: a 1 s window at >= 36 after {effect:?}; per second {around:?}");
    let cut: usize = around[..3].iter().sum();
    assert!((6..=18).contains(&cut), "4/s before the raise: {around:?}");
    let effect = effect.expect("40/s within 6 s of the raise");
    // About 1.5 s with the schedule pulled back to 0.5 s ahead (plus the
    // 1 s window itself); 3.4 s without. Generous: a noisy machine.
    assert!(effect < Duration::from_millis(2600), "{effect:?}");
    run.stop(Duration::from_secs(10)).await.unwrap();
    let _ = until_end(&mut rx, &mut Vec::new()).await;
    let log = read(&task.join("jmeter.log"));
    assert!(!log.contains("cannot reset"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_ends_the_run_and_leaves_no_process() {
    let (checked, _serial) = checked().await;
    let RateRun {
        server,
        task,
        run,
        mut rx,
        _dir,
    } = RateRun::start(&checked, 10.0, 600, false).await;
    let mut seconds = Vec::new();
    // A second of results shows the test runs.
    loop {
        match next(&mut rx).await {
            Event::Started { .. } => {}
            Event::Second(s) => {
                seconds.push(s);
                break;
            }
            e => panic!("{e:?}"),
        }
    }
    let asked = Instant::now();
    run.stop(Duration::from_secs(10)).await.unwrap();
    let end = until_end(&mut rx, &mut seconds).await;
    let took = asked.elapsed();
    eprintln!("graceful stop: {end:?} after {took:?}");
    let Event::Ended { reason, exit } = end else {
        panic!("{end:?}")
    };
    assert_eq!(reason, EndReason::Stopped);
    assert_eq!(exit.code, Some(0));
    assert!(took < Duration::from_secs(10), "{took:?}");
    let _ = run.wait().await;
    assert!(processes_mentioning(&task).is_empty());
    let total: u64 = seconds.iter().map(|s| s.count).sum();
    assert_eq!(total as usize, server.requests().len());
    // JMeter's end, on its output; its log is kept.
    assert!(read(&task.join("jmeter.out")).contains("end of run"));
    assert!(read(&task.join("jmeter.log")).contains("Running the test"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_run_kills_its_jvm() {
    let (checked, _serial) = checked().await;
    // The target stays up while the run is dropped.
    let RateRun {
        server: _server,
        task,
        run,
        mut rx,
        _dir,
    } = RateRun::start(&checked, 5.0, 600, false).await;
    let Event::Started { pid, .. } = next(&mut rx).await else {
        panic!("Started first")
    };
    // The JVM is there (its command line can take a moment to read back
    // right after the start).
    let seen = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&task).contains(&pid) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            Instant::now() < seen,
            "JVM {pid} not found: {:?}; events: {:?}",
            String::from_utf8_lossy(&cmdline),
            rx.try_recv()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(run);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&task).is_empty() {
        assert!(Instant::now() < deadline, "the JVM outlived its Run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_plan_fails_with_jmeters_errors() {
    let (checked, _serial) = checked().await;
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("bad.zip");
    loadplan::bundle::write_artifact(
        &zip,
        "test.jmx",
        b"<?xml version=\"1.0\"?><jmeterTestPlan><hashTree><NoSuchElement/></hashTree></jmeterTestPlan>",
        Vec::<(String, &[u8])>::new(),
        &Default::default(),
    )
    .unwrap();
    let task = dir.path().join("task");
    let (tx, mut rx) = mpsc::channel(100);
    let spec = TaskSpec {
        artifact: zip,
        dir: task.clone(),
        properties: vec![],
        debug: false,
    };
    let run = Run::start(&checked, spec, &options(), tx).await.unwrap();
    assert!(matches!(next(&mut rx).await, Event::Started { .. }));
    let end = until_end(&mut rx, &mut Vec::new()).await;
    eprintln!("bad plan: {end:#?}");
    let Event::Failed {
        message,
        log_errors,
        ..
    } = end
    else {
        panic!("{end:?}")
    };
    assert!(message.contains("before its test started"), "{message}");
    assert!(!log_errors.is_empty());
    let _ = run.wait().await;
    assert!(processes_mentioning(&task).is_empty());
}

#[tokio::test]
async fn a_rate_change_on_a_finished_run_says_so() {
    // No JMeter needed: the "JVM" is `true`, which exits at once.
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("a.zip");
    loadplan::bundle::write_artifact(
        &zip,
        "test.jmx",
        b"<jmeterTestPlan/>",
        Vec::<(String, &[u8])>::new(),
        &Default::default(),
    )
    .unwrap();
    let checked = Checked {
        install: Install {
            home: home.path().into(),
            java: "/bin/true".into(),
        },
        jmeter_version: "5.6.2".into(),
        java_version: "none".into(),
    };
    let (tx, mut rx) = mpsc::channel(100);
    let spec = TaskSpec {
        artifact: zip,
        dir: dir.path().join("task"),
        properties: vec!["-Jmyplatform.threads=1".into()],
        debug: false,
    };
    let run = Run::start(&checked, spec, &options(), tx).await.unwrap();
    let _ = next(&mut rx).await;
    let end = until_end(&mut rx, &mut Vec::new()).await;
    assert!(matches!(end, Event::Failed { .. }), "{end:?}");
    let r = run
        .set_throughput(SamplesPerMin::per_sec(1.0).unwrap())
        .await;
    assert!(r.is_err());
    // The same directory twice is refused: a run's files are its own.
    let (tx, _rx) = mpsc::channel(100);
    let again = TaskSpec {
        artifact: dir.path().join("a.zip"),
        dir: dir.path().join("task"),
        properties: vec![],
        debug: false,
    };
    let e = Run::start(&checked, again, &options(), tx)
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("already holds a run"), "{e}");
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// One thread, one JSR223 sample labelled with a comma and quotes, whose
/// response message spans two lines; the script leaves a non-daemon
/// thread behind, as a BeanShell server does, which keeps the JVM alive
/// after "end of run".
const LINGERING_PLAN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<jmeterTestPlan version="1.2" properties="5.0" jmeter="5.6.2">
  <hashTree>
    <TestPlan guiclass="TestPlanGui" testclass="TestPlan" testname="linger">
      <elementProp name="TestPlan.user_defined_variables" elementType="Arguments" guiclass="ArgumentsPanel" testclass="Arguments">
        <collectionProp name="Arguments.arguments"/>
      </elementProp>
    </TestPlan>
    <hashTree>
      <ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="g">
        <intProp name="ThreadGroup.num_threads">1</intProp>
        <intProp name="ThreadGroup.ramp_time">0</intProp>
        <stringProp name="ThreadGroup.on_sample_error">continue</stringProp>
        <elementProp name="ThreadGroup.main_controller" elementType="LoopController" guiclass="LoopControlPanel" testclass="LoopController">
          <stringProp name="LoopController.loops">1</stringProp>
          <boolProp name="LoopController.continue_forever">false</boolProp>
        </elementProp>
      </ThreadGroup>
      <hashTree>
        <JSR223Sampler guiclass="TestBeanGUI" testclass="JSR223Sampler" testname="spawn, &quot;q&quot;">
          <stringProp name="scriptLanguage">groovy</stringProp>
          <stringProp name="cacheKey">true</stringProp>
          <stringProp name="script">def t = new Thread({ Thread.sleep(600000) } as Runnable, "lingerer")
t.setDaemon(false)
t.start()
SampleResult.setSuccessful(false)
SampleResult.setResponseMessage("first line\nsecond, \"line\"")
SampleResult.setResponseData("12345", "UTF-8")</stringProp>
        </JSR223Sampler>
        <hashTree/>
      </hashTree>
    </hashTree>
  </hashTree>
</jmeterTestPlan>
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_jvm_that_lingers_after_the_end_of_run_is_killed() {
    let (checked, _serial) = checked().await;
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("linger.zip");
    loadplan::bundle::write_artifact(
        &zip,
        "test.jmx",
        LINGERING_PLAN.as_bytes(),
        Vec::<(String, &[u8])>::new(),
        &Default::default(),
    )
    .unwrap();
    let task = dir.path().join("task");
    let (tx, mut rx) = mpsc::channel(100);
    let spec = TaskSpec {
        artifact: zip,
        dir: task.clone(),
        // JMeter's own remedy switched off, to test ours.
        properties: vec!["-Jjmeterengine.force.system.exit=false".into()],
        debug: false,
    };
    let run = Run::start(&checked, spec, &options(), tx).await.unwrap();
    let started = Instant::now();
    assert!(matches!(next(&mut rx).await, Event::Started { .. }));
    let mut seconds = Vec::new();
    let end = until_end(&mut rx, &mut seconds).await;
    eprintln!("lingering JVM: {end:?} after {:?}", started.elapsed());
    let Event::Ended { reason, exit } = end else {
        panic!("{end:?}; output:\n{}", read(&task.join("jmeter.out")))
    };
    assert_eq!(reason, EndReason::KilledLingering);
    assert_eq!(exit.signal, Some(9));
    let _ = run.wait().await;
    assert!(processes_mentioning(&task).is_empty());
    // The quoted label and the two-line message came through the CSV.
    assert_eq!(seconds.len(), 1, "{seconds:?}");
    let s = &seconds[0];
    assert_eq!(
        (s.label.as_str(), s.count, s.errors, s.bytes),
        ("spawn, \"q\"", 1, 1, 5)
    );
}
