//! One JMeter run of one task: unpack, start, steer, stop, report.
//!
//! Owns the task directory's layout ([`TaskDir`]), JMeter's command line
//! (non-GUI, CSV results with autoflush, no UDP listener, the control
//! script of [`crate::control`]), the JVM's life (killed on drop, graceful
//! stop escalating to SIGKILL, a JVM that lingers after "end of run" is
//! killed) and the [`Event`]s a run reports. Must not know the protocol or
//! the controller: a caller turns events into messages later.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loadplan::bundle::{BundleLimits, unpack_file};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::{mpsc, oneshot};

use crate::control::{self, Command, Reply, SamplesPerMin};
use crate::install::Checked;
use crate::results::Second;
use crate::tail::{self, TailStats};

/// What JMeter prints on stdout once the test runs (the engine exists, so
/// a graceful shutdown can reach it).
const STARTED_MARKER: &str = "Starting standalone test";
/// What JMeter prints when every thread group is done.
const END_MARKER: &str = "... end of run";
/// After "end of run", how long the JVM may take to exit before it is
/// killed: threads a plan started (a BeanShell server, a JSR223 thread)
/// keep a JVM alive that has nothing left to do.
const LINGER: Duration = Duration::from_secs(5);
/// How long a command may wait for the script's answer: the script answers
/// in milliseconds once running; JMeter's start takes a few seconds.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);
/// After SIGKILL, the kernel reaps at once; the bound is for a wedged
/// wait.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// JMeter log lines kept in a failure.
const LOG_ERROR_LINES: usize = 20;

/// Files of one task's directory.
#[derive(Debug, Clone)]
pub struct TaskDir {
    pub root: PathBuf,
}

impl TaskDir {
    /// The unpacked artifact.
    pub fn plan(&self) -> PathBuf {
        self.root.join("plan")
    }
    /// JMeter's CSV results: the whole JTL in debug mode, else a file
    /// whose read part is freed as it goes (see [`crate::tail`]).
    pub fn results(&self) -> PathBuf {
        self.root.join("results.csv")
    }
    /// JMeter's log (`-j`), kept for download.
    pub fn log(&self) -> PathBuf {
        self.root.join("jmeter.log")
    }
    /// The JVM's stdout and stderr.
    pub fn output(&self) -> PathBuf {
        self.root.join("jmeter.out")
    }
    pub fn control_script(&self) -> PathBuf {
        self.root.join("control.groovy")
    }
}

/// A task to run.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// The artifact zip (`.jmx` at the top level).
    pub artifact: PathBuf,
    /// The task's own directory (created; must not hold a previous run).
    pub dir: PathBuf,
    /// `-Jname=value` run properties (threads, throughput, duration).
    pub properties: Vec<String>,
    /// Keep the full results CSV as the JTL.
    pub debug: bool,
}

/// How JMeter is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// JVM options before `-jar`.
    pub jvm_args: Vec<String>,
    pub bundle_limits: BundleLimits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // What JMeter's own `bin/jmeter` uses: 1 GiB heap, G1 with
            // short pauses (a pause is a gap in the load).
            jvm_args: [
                "-Xms1g",
                "-Xmx1g",
                "-XX:MaxMetaspaceSize=256m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=100",
                "-XX:G1ReservePercent=20",
                "-Djava.awt.headless=true",
            ]
            .map(String::from)
            .to_vec(),
            bundle_limits: BundleLimits::default(),
        }
    }
}

/// How a JVM exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl From<ExitStatus> for Exit {
    fn from(s: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Exit {
            code: s.code(),
            signal: s.signal(),
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// JMeter finished by itself (its duration passed, or its threads
    /// ended).
    Finished,
    /// Stopped on request, gracefully, within the grace period.
    Stopped,
    /// Stopped on request and killed when the grace period ran out.
    Killed,
    /// "end of run" came but the JVM stayed alive; killed after
    /// [`LINGER`].
    KilledLingering,
}

/// What a run reports, in this order: `Started`, `Second`s, then one
/// `Ended` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started {
        pid: u32,
        jmeter_version: String,
    },
    Second(Second),
    Ended {
        exit: Exit,
        reason: EndReason,
    },
    /// JMeter exited with an error or before its test started (a bad
    /// plan): `log_errors` are the ERROR lines of its log and output.
    Failed {
        exit: Exit,
        message: String,
        log_errors: Vec<String>,
    },
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the task directory {0} already holds a run: give each run a fresh directory")]
    DirInUse(PathBuf),
    #[error("{0}: every run property must be a -Jname=value argument")]
    BadProperty(String),
    #[error("the task artifact cannot be unpacked: {0}")]
    Artifact(#[from] loadplan::bundle::BundleError),
    #[error("{what} {}: {err}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("cannot start {}: {err}", java.display())]
    Spawn { java: PathBuf, err: std::io::Error },
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("the run is over")]
    Gone,
    #[error("JMeter did not acknowledge within {0:?}")]
    NoAck(Duration),
    #[error("JMeter refused: {0}")]
    Refused(String),
}

enum Request {
    Command(Command, oneshot::Sender<Result<(), ControlError>>),
    Stop { grace: Duration },
}

/// How a run ended, with the tailer's figures.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub event: Event,
    pub tail: TailStats,
}

/// A running JMeter. Dropping it kills the JVM.
pub struct Run {
    pub pid: u32,
    pub dir: TaskDir,
    requests: mpsc::Sender<Request>,
    driver: tokio::task::JoinHandle<Outcome>,
}

impl Run {
    /// Unpacks the artifact into `spec.dir` and starts JMeter; events go to
    /// `events` (a slow receiver slows the tailer, never loses a second).
    pub async fn start(
        checked: &Checked,
        spec: TaskSpec,
        opts: &Options,
        events: mpsc::Sender<Event>,
    ) -> Result<Run, StartError> {
        if let Some(bad) = spec.properties.iter().find(|p| !is_property(p)) {
            return Err(StartError::BadProperty(bad.clone()));
        }
        let dir = TaskDir {
            root: spec.dir.clone(),
        };
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |err| StartError::Io { what, path, err }
        };
        std::fs::create_dir_all(&dir.root).map_err(io("cannot create", &dir.root))?;
        if dir.plan().exists() {
            return Err(StartError::DirInUse(dir.root));
        }
        let (artifact, plan, limits) = (spec.artifact.clone(), dir.plan(), opts.bundle_limits);
        let bundle = tokio::task::spawn_blocking(move || unpack_file(&artifact, &plan, &limits))
            .await
            .map_err(|e| StartError::Io {
                what: "unpacking panicked in",
                path: dir.plan(),
                err: std::io::Error::other(e.to_string()),
            })??;
        std::fs::write(dir.control_script(), control::script())
            .map_err(io("cannot write", &dir.control_script()))?;
        let out =
            std::fs::File::create(dir.output()).map_err(io("cannot create", &dir.output()))?;
        let err = out.try_clone().map_err(io("cannot open", &dir.output()))?;

        let mut cmd = Process::new(&checked.install.java);
        cmd.current_dir(&dir.root)
            .args(&opts.jvm_args)
            .arg("-jar")
            .arg(checked.install.launcher())
            .arg("-n")
            .arg("-t")
            .arg(dir.plan().join(&bundle.jmx))
            .arg("-l")
            .arg(dir.results())
            .arg("-j")
            .arg(dir.log())
            .args(jmeter_properties(&dir))
            .args(&spec.properties)
            .stdin(Stdio::piped())
            // stdout carries the control script's answers; stderr goes
            // straight to the file (nothing there is parsed).
            .stdout(Stdio::piped())
            .stderr(err)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|err| StartError::Spawn {
            java: checked.install.java.clone(),
            err,
        })?;
        let pid = child.id().unwrap_or_default();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let _ = events
            .send(Event::Started {
                pid,
                jmeter_version: checked.jmeter_version.clone(),
            })
            .await;
        let (requests, rx) = mpsc::channel(16);
        let driver = tokio::spawn(drive(Driver {
            child,
            stdin,
            stdout,
            out: tokio::fs::File::from_std(out),
            dir: dir.clone(),
            debug: spec.debug,
            events,
            requests: rx,
        }));
        Ok(Run {
            pid,
            dir,
            requests,
            driver,
        })
    }

    /// Sets `myplatform.throughput` inside the running JMeter; returns
    /// once JMeter acknowledged it (the next sample is paced by it).
    pub async fn set_throughput(&self, rate: SamplesPerMin) -> Result<(), ControlError> {
        self.command(Command::Throughput(rate)).await
    }

    async fn command(&self, c: Command) -> Result<(), ControlError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Command(c, tx))
            .await
            .map_err(|_| ControlError::Gone)?;
        match tokio::time::timeout(ACK_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ControlError::Gone),
            Err(_) => Err(ControlError::NoAck(ACK_TIMEOUT)),
        }
    }

    /// Asks JMeter to shut down gracefully (threads finish their current
    /// sample); kills it when `grace` runs out. The end arrives as an
    /// event and from [`Run::wait`].
    pub async fn stop(&self, grace: Duration) -> Result<(), ControlError> {
        self.requests
            .send(Request::Stop { grace })
            .await
            .map_err(|_| ControlError::Gone)
    }

    /// Waits for the end (also sent as the last event).
    pub async fn wait(self) -> Outcome {
        let Run {
            requests, driver, ..
        } = self;
        let outcome = driver.await;
        // Held until here: dropping it tells the driver to kill.
        drop(requests);
        outcome.unwrap_or_else(|e| Outcome {
            event: Event::Failed {
                exit: Exit {
                    code: None,
                    signal: None,
                },
                message: format!("the supervisor failed: {e}"),
                log_errors: Vec::new(),
            },
            tail: TailStats::default(),
        })
    }
}

fn is_property(p: &str) -> bool {
    p.strip_prefix("-J")
        .and_then(|rest| rest.split_once('='))
        .is_some_and(|(name, _)| !name.is_empty())
}

/// JMeter settings every run gets; run properties come after and cannot
/// undo them unless they name the same property (the caller's business).
fn jmeter_properties(dir: &TaskDir) -> Vec<String> {
    let mut p: Vec<String> = [
        // No UDP Shutdown/StopTestNow listener: it binds every interface
        // and accepts anyone's datagram. Stops go through the control
        // script.
        "jmeterengine.nongui.port=0",
        // Exit at the end even if a plan's threads linger.
        "jmeterengine.force.system.exit=true",
        "jmeter.save.saveservice.output_format=csv",
        // Rows reach the file as samples end, not in 8 KiB blocks.
        "jmeter.save.saveservice.autoflush=true",
        "jmeter.save.saveservice.print_field_names=true",
        "jmeter.save.saveservice.default_delimiter=,",
        "jmeter.save.saveservice.timestamp_format=ms",
        // timeStamp is the sample's end: a second is complete once the
        // clock passed it, however long its samples took.
        "sampleresult.timestamp.start=false",
        "jmeter.save.saveservice.time=true",
        "jmeter.save.saveservice.label=true",
        "jmeter.save.saveservice.response_code=true",
        "jmeter.save.saveservice.response_message=true",
        "jmeter.save.saveservice.successful=true",
        "jmeter.save.saveservice.assertion_results_failure_message=true",
        "jmeter.save.saveservice.bytes=true",
        "jmeter.save.saveservice.sent_bytes=true",
        "jmeter.save.saveservice.latency=true",
        "jmeter.save.saveservice.connect_time=true",
        "jmeter.save.saveservice.thread_name=true",
        "jmeter.save.saveservice.thread_counts=true",
        "jmeter.save.saveservice.data_type=false",
        "jmeter.save.saveservice.url=false",
        "jmeter.save.saveservice.idle_time=false",
        // A sample counts once: sub-results (redirects, embedded
        // resources) are inside their parent's time.
        "jmeter.save.saveservice.subresults=false",
        // The 30 s summary lines on stdout are noise beside per-second
        // results.
        "summariser.out=false",
    ]
    .iter()
    .map(|s| format!("-J{s}"))
    .collect();
    p.push(format!(
        "-Jjsr223.init.file={}",
        dir.control_script().display()
    ));
    p
}

struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<tokio::process::ChildStdout>,
    out: tokio::fs::File,
    dir: TaskDir,
    debug: bool,
    events: mpsc::Sender<Event>,
    requests: mpsc::Receiver<Request>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Graceful stop asked; kill at the deadline.
    Stopping,
    /// "end of run" seen; kill at the deadline.
    Ending,
}

/// Sets the tailer's stop flag however the driver ends: if the driver is
/// dropped (its runtime shuts down), a tailer left running would keep the
/// runtime's shutdown waiting for its blocking thread forever.
struct StopTailer(Arc<AtomicBool>);

impl Drop for StopTailer {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

async fn drive(mut d: Driver) -> Outcome {
    let done = Arc::new(AtomicBool::new(false));
    let stop_tailer = StopTailer(done.clone());
    let tailer = {
        let (path, debug, events, done) =
            (d.dir.results(), d.debug, d.events.clone(), done.clone());
        tokio::task::spawn_blocking(move || tail::run(&path, debug, &events, &done))
    };
    let mut lines = d.stdout.take().map(|s| BufReader::new(s).lines());
    let mut pending: Vec<(u64, oneshot::Sender<Result<(), ControlError>>)> = Vec::new();
    let mut seq = 0u64;
    let mut test_started = false;
    let mut phase = Phase::Running;
    let mut reason = EndReason::Finished;
    let mut deadline: Option<Instant> = None;
    let mut output_errors: Vec<String> = Vec::new();
    let mut requests_open = true;
    let status = loop {
        let kill_at = deadline.map(tokio::time::Instant::from_std);
        tokio::select! {
            status = d.child.wait() => break status.ok(),
            line = async { lines.as_mut()?.next_line().await.ok().flatten() }, if lines.is_some() => {
                let Some(line) = line else {
                    lines = None;
                    continue;
                };
                let _ = d.out.write_all(line.as_bytes()).await;
                let _ = d.out.write_all(b"\n").await;
                if line.contains(STARTED_MARKER) {
                    test_started = true;
                } else if line.contains(END_MARKER) && phase != Phase::Ending {
                    phase = Phase::Ending;
                    deadline = Some(Instant::now() + LINGER);
                } else if line.contains("rror") && output_errors.len() < LOG_ERROR_LINES {
                    output_errors.push(line.clone());
                }
                match Reply::parse(&line) {
                    Some(Reply::Ack(n)) => answer(&mut pending, n, Ok(())),
                    Some(Reply::Nak(n, why)) => answer(&mut pending, n, Err(ControlError::Refused(why))),
                    Some(Reply::Ready) | None => {}
                }
            }
            req = d.requests.recv(), if requests_open => match req {
                Some(Request::Command(c, reply)) => {
                    seq += 1;
                    if write_line(&mut d.stdin, &c.line(seq)).await {
                        pending.push((seq, reply));
                    } else {
                        let _ = reply.send(Err(ControlError::Gone));
                    }
                }
                Some(Request::Stop { grace }) => {
                    if phase == Phase::Running {
                        reason = EndReason::Stopped;
                        phase = Phase::Stopping;
                        seq += 1;
                        // Before the test started the engine does not
                        // exist yet and a shutdown would be lost: kill.
                        if !test_started || !write_line(&mut d.stdin, &Command::Shutdown.line(seq)).await {
                            let _ = d.child.start_kill();
                        }
                        deadline = Some(Instant::now() + grace);
                    }
                }
                // The Run was dropped: nobody is left to stop this JVM.
                None => {
                    let _ = d.child.start_kill();
                    reason = EndReason::Killed;
                    requests_open = false;
                }
            },
            _ = async { tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)).await }, if kill_at.is_some() => {
                reason = match phase {
                    Phase::Ending => EndReason::KilledLingering,
                    _ => EndReason::Killed,
                };
                let _ = d.child.start_kill();
                // The next wait() reaps it; bound that wait too.
                match tokio::time::timeout(KILL_WAIT, d.child.wait()).await {
                    Ok(s) => break s.ok(),
                    Err(_) => break None,
                }
            }
        }
    };
    // Whatever is left on stdout (JMeter's last lines) goes to the file.
    if let Some(mut l) = lines {
        let drain = async {
            while let Ok(Some(line)) = l.next_line().await {
                let _ = d.out.write_all(format!("{line}\n").as_bytes()).await;
                if line.contains(STARTED_MARKER) {
                    test_started = true;
                } else if line.contains("rror") && output_errors.len() < LOG_ERROR_LINES {
                    output_errors.push(line);
                }
            }
        };
        // Bounded: a grandchild holding stdout open must not stall the end.
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }
    let _ = d.out.flush().await;
    for (_, reply) in pending.drain(..) {
        let _ = reply.send(Err(ControlError::Gone));
    }
    drop(stop_tailer);
    let tail = tailer.await.unwrap_or_default();
    let exit = status.map_or(
        Exit {
            code: None,
            signal: None,
        },
        Exit::from,
    );
    let by_itself = reason == EndReason::Finished;
    // On request a nonzero exit is ours (a kill); by itself it is JMeter's.
    let failed = by_itself && (exit.code != Some(0) || !test_started);
    let event = if failed {
        let mut log_errors = log_error_lines(&d.dir.log());
        log_errors.extend(output_errors);
        Event::Failed {
            exit,
            message: if test_started {
                format!("JMeter exited with {exit:?} during the test")
            } else {
                format!("JMeter exited with {exit:?} before its test started")
            },
            log_errors,
        }
    } else if let Some(e) = &tail.error {
        Event::Failed {
            exit,
            message: format!("the results could not be read: {e}"),
            log_errors: Vec::new(),
        }
    } else {
        Event::Ended { exit, reason }
    };
    let _ = d.events.send(event.clone()).await;
    Outcome { event, tail }
}

fn answer(
    pending: &mut Vec<(u64, oneshot::Sender<Result<(), ControlError>>)>,
    n: u64,
    r: Result<(), ControlError>,
) {
    if let Some(i) = pending.iter().position(|(s, _)| *s == n) {
        let (_, reply) = pending.swap_remove(i);
        let _ = reply.send(r);
    }
}

async fn write_line(stdin: &mut Option<ChildStdin>, line: &str) -> bool {
    let Some(s) = stdin.as_mut() else {
        return false;
    };
    let ok = s.write_all(line.as_bytes()).await.is_ok() && s.flush().await.is_ok();
    if !ok {
        *stdin = None;
    }
    ok
}

/// The last ERROR lines of JMeter's log, with the line after each (the
/// exception's message is often there).
fn log_error_lines(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(" ERROR ") {
            out.push(l.to_string());
            if let Some(next) = lines.get(i + 1).filter(|n| !n.starts_with("20")) {
                out.push(next.to_string());
            }
        }
    }
    let skip = out.len().saturating_sub(LOG_ERROR_LINES);
    out.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_j_properties_pass() {
        assert!(is_property("-Jmyplatform.threads=2"));
        assert!(is_property("-Jx="));
        for bad in [
            "-R10.0.0.1",
            "-J=1",
            "-Jnovalue",
            "myplatform.threads=2",
            "-X",
        ] {
            assert!(!is_property(bad), "{bad}");
        }
    }

    #[test]
    fn error_lines_of_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("jmeter.log");
        std::fs::write(
            &log,
            "2024-01-01 10:00:00,000 INFO o.a.j.JMeter: fine\n\
             2024-01-01 10:00:01,000 ERROR o.a.j.s.SaveService: Conversion error\n\
             com.thoughtworks.xstream.converters.ConversionException: bad\n\
             2024-01-01 10:00:02,000 INFO o.a.j.JMeter: more\n",
        )
        .unwrap();
        let e = log_error_lines(&log);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[1].contains("ConversionException"));
    }
}
