//! Reads the hsperfdata of real JVMs running tests/java/GcLoop.java, the way
//! the monitor agent does. Needs `java` (JDK 11+) on PATH and fails, never
//! skips, without it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use agent_monitor::collect::jvm::{JvmError, is_java, read_jvm};

/// Bound on every wait. Single-file source launch compiles GcLoop first,
/// which takes a few seconds on a busy machine.
const WAIT: Duration = Duration::from_secs(30);
/// How often GcLoop calls System.gc().
const GC_INTERVAL_MS: &str = "300";
/// Backstop: GcLoop also exits when this process dies (its stdin closes),
/// and after this long in any case.
const JVM_LIFETIME_S: &str = "120";

fn require_java() {
    let install = "these tests start a real JVM: install a JDK 11+ \
                   (Debian/Ubuntu: apt-get install -y default-jdk-headless) \
                   or put its bin/ directory on PATH";
    match Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("`java -version` failed ({status}); {install}"),
        Err(e) => panic!("`java` not found on PATH ({e}); {install}"),
    }
}

/// A running GcLoop; stopped and reaped on drop, panics included.
struct Jvm {
    child: Child,
    lines: Receiver<String>,
}

impl Jvm {
    fn start(flags: &[&str]) -> Jvm {
        require_java();
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/java/GcLoop.java");
        let mut child = Command::new("java")
            .args(flags)
            .arg(source)
            .args([GC_INTERVAL_MS, JVM_LIFETIME_S])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn java");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        // Keeps draining after the test stops listening so the JVM never
        // blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let jvm = Jvm { child, lines };
        jvm.wait_for_line("ready");
        jvm
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_for_line(&self, want: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line == want => return,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("JVM {} did not print {want:?} within {WAIT:?}", self.pid())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("JVM {} exited before printing {want:?}", self.pid())
                }
            }
        }
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        // Closing stdin makes GcLoop exit normally, which removes its
        // hsperfdata file; SIGKILL would leave it behind in /tmp.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn counters_move(flags: &[&str]) {
    let started = Instant::now();
    let jvm = Jvm::start(flags);
    let pid = jvm.pid();
    let ready = started.elapsed();
    assert!(is_java(pid), "is_java({pid}) for a running java");

    let t = Instant::now();
    let first = read_jvm(pid).unwrap_or_else(|e| panic!("read_jvm({pid}) {flags:?}: {e}"));
    let read_cost = t.elapsed();
    // heap_used is checked after the GCs below: on JDK 25, Serial and
    // Parallel publish eden's use only at GC time, so before the first GC
    // it can read 0.
    assert!(
        first.heap_committed_bytes >= first.heap_used_bytes,
        "{first:?}"
    );
    assert!(
        first.heap_max_bytes >= first.heap_committed_bytes,
        "{first:?}"
    );

    // Reads a few seconds apart, then polled: GcLoop collects every 300 ms,
    // but a loaded machine may stall it.
    let t = Instant::now();
    thread::sleep(Duration::from_secs(2));
    let second = loop {
        let s = read_jvm(pid).unwrap_or_else(|e| panic!("second read_jvm({pid}): {e}"));
        if s.full_gc_count > first.full_gc_count || t.elapsed() > WAIT {
            break s;
        }
        thread::sleep(Duration::from_millis(250));
    };
    assert!(
        second.full_gc_count > first.full_gc_count,
        "full GC count did not move in {WAIT:?}: {first:?} then {second:?}"
    );
    assert!(second.full_gc_time_ms > first.full_gc_time_ms, "{second:?}");
    // GcLoop's retained 4 MB survive every GC.
    assert!(second.heap_used_bytes > 0, "{second:?}");
    assert!(
        second.heap_committed_bytes >= second.heap_used_bytes,
        "{second:?}"
    );
    eprintln!(
        "{flags:?}: ready after {ready:?}, read in {read_cost:?}, \
         full GCs {} -> {} over {:?}; {second:?}",
        first.full_gc_count,
        second.full_gc_count,
        t.elapsed()
    );
}

#[test]
fn default_collector_counters_move() {
    counters_move(&[]);
}

#[test]
fn serial_collector_counters_move() {
    counters_move(&["-XX:+UseSerialGC"]);
}

#[test]
fn perf_data_disabled_is_reported() {
    let jvm = Jvm::start(&["-XX:-UsePerfData"]);
    let pid = jvm.pid();
    assert!(is_java(pid));
    match read_jvm(pid) {
        Err(e @ JvmError::PerfDataDisabled { .. }) => {
            assert!(e.to_string().contains("-XX:-UsePerfData"), "{e}")
        }
        other => panic!("want PerfDataDisabled for -XX:-UsePerfData, got {other:?}"),
    }
}

#[test]
fn non_jvm_and_missing_processes() {
    let me = std::process::id();
    assert!(!is_java(me));
    match read_jvm(me) {
        Err(JvmError::NoPerfData { pid, .. }) => assert_eq!(pid, me),
        other => panic!("want NoPerfData for the test process, got {other:?}"),
    }
    // Above any pid_max Linux allows (2^22).
    match read_jvm(u32::MAX) {
        Err(JvmError::ProcessNotFound { pid: u32::MAX }) => {}
        other => panic!("want ProcessNotFound, got {other:?}"),
    }
    assert!(!is_java(u32::MAX));
}
