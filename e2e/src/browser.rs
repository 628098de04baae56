//! Tests in a real browser: Debian's Chromium (`/usr/bin/chromium`) driven
//! by playwright-core, the only piece of Playwright whose install downloads
//! nothing (its browser builds are out of reach here).
//!
//! A scenario is a node script in `e2e/browser/*.mjs` built on the helpers
//! of `e2e/browser/lib.mjs` (`launch`, `step`, `expect`, `expectText`,
//! `main`). A Rust test starts whatever the page needs (the controller, ...)
//! and hands the scenario its URLs through the environment:
//!
//! ```text
//! let run = e2e::browser::run_script(&e2e::browser::script("smoke.mjs"), &[("URL", url)]);
//! ```
//!
//! playwright-core comes from `web/node_modules` (`web/package-lock.json`
//! pins it), installed by [`ensure_node_modules`] with `npm ci` when missing
//! or older than the lock file. A failing step leaves a full-page screenshot
//! in `target/browser-screenshots/<script stem>/`, and the failure names it.
//! Chromium or node missing is a test failure that says what to install,
//! never a silent pass.
//!
//! Each run gets [`SCRIPT_TIMEOUT`]. The script is told a shorter one so
//! that it gives up first and screenshots where it hung; the harness then
//! kills its whole process group as a backstop. Two runs of the same script
//! at once would share a screenshot directory: give concurrent scenarios
//! their own script.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The oldest node playwright-core (web/package.json) runs on.
const MIN_NODE_MAJOR: u32 = 20;

/// How long one scenario may take before the harness kills it.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The timeout the script enforces on itself: short enough of
/// [`SCRIPT_TIMEOUT`] to leave time for its screenshot and browser.close().
const SCRIPT_SELF_TIMEOUT: Duration = Duration::from_secs(105);

/// Between SIGTERM (lib.mjs closes Chromium on it) and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The workspace root: the e2e crate lives in `<root>/e2e`.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives inside the workspace")
}

/// `<root>/e2e/browser/<name>`.
pub fn script(name: &str) -> PathBuf {
    workspace_root().join("e2e").join("browser").join(name)
}

/// Checks for Chromium and installs `web/node_modules` (`npm ci`) if
/// playwright-core is missing or the install predates
/// `web/package-lock.json`, once per test process. Panics saying what to
/// install, with npm's output when npm fails.
pub fn ensure_node_modules() {
    static READY: OnceLock<()> = OnceLock::new();
    // get_or_init blocks the other test threads meanwhile, so parallel tests
    // never run two `npm ci` over the same node_modules.
    READY.get_or_init(|| {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: install Debian chromium (apt-get install chromium); scripts/test does"
        );
        check_node();
        let web = workspace_root().join("web");
        if !node_modules_stale(&web) {
            return;
        }
        eprintln!("browser: npm ci in {}", web.display());
        let started = Instant::now();
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&web)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run npm ({e}): install nodejs and npm (apt-get install nodejs npm); scripts/test does"
                )
            });
        assert!(
            out.status.success(),
            "npm ci in {} failed ({}):\n{}{}",
            web.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !node_modules_stale(&web),
            "npm ci in {} succeeded but installed no playwright-core",
            web.display()
        );
        eprintln!("browser: npm ci took {:?}", started.elapsed());
    });
}

/// playwright-core wants node >= 20 but npm only warns about that, and
/// bookworm's own `nodejs` is 18: say so rather than fail obscurely later.
fn check_node() {
    let out = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run node ({e}): install nodejs and npm (apt-get install nodejs npm); scripts/test does"
            )
        });
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= MIN_NODE_MAJOR,
        "node {version} is too old for playwright-core: node >= {MIN_NODE_MAJOR} is needed"
    );
}

/// npm rewrites `node_modules/.package-lock.json` on every install, so one
/// older than `package-lock.json` means a version bump since (a pull, a
/// branch switch) that a plain existence check would test against the old
/// playwright-core.
fn node_modules_stale(web: &Path) -> bool {
    let modules = web.join("node_modules");
    if !modules
        .join("playwright-core")
        .join("package.json")
        .exists()
    {
        return true;
    }
    let mtime = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        mtime(modules.join(".package-lock.json")),
        mtime(web.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => installed < locked,
        _ => true,
    }
}

/// What one `node <script>` did.
#[derive(Debug)]
pub struct BrowserRun {
    pub script: PathBuf,
    pub status: ExitStatus,
    /// Killed by the harness after [`SCRIPT_TIMEOUT`].
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub screenshot_dir: PathBuf,
    /// The screenshots the run left, sorted (steps are numbered).
    pub screenshots: Vec<PathBuf>,
}

impl BrowserRun {
    pub fn passed(&self) -> bool {
        !self.timed_out && self.status.success()
    }
}

impl fmt::Display for BrowserRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.timed_out {
            format!("still running after {SCRIPT_TIMEOUT:?}, killed")
        } else {
            self.status.to_string()
        };
        writeln!(
            f,
            "node {}: {how} (ran {:.1?})",
            self.script.display(),
            self.elapsed
        )?;
        writeln!(f, "----- stdout -----\n{}", self.stdout.trim_end())?;
        writeln!(f, "----- stderr -----\n{}", self.stderr.trim_end())?;
        writeln!(f, "----- screenshots -----")?;
        if self.screenshots.is_empty() {
            writeln!(f, "(none in {})", self.screenshot_dir.display())?;
        }
        for s in &self.screenshots {
            writeln!(f, "{}", s.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for BrowserRun {}

/// Runs a scenario and returns what it did; panics with node's output and
/// the screenshots if it failed or timed out. `env` reaches the script as
/// environment variables (URLs, tokens, ...).
pub fn run_script(script: &Path, env: &[(&str, String)]) -> BrowserRun {
    match try_run_script(script, env) {
        Ok(run) => run,
        Err(run) => panic!("browser scenario failed: {run}"),
    }
}

/// [`run_script`] that hands a failed run back instead of panicking, for a
/// test that expects the failure. Boxed because a run is too large an
/// error to move around by value.
pub fn try_run_script(
    script: &Path,
    env: &[(&str, String)],
) -> Result<BrowserRun, Box<BrowserRun>> {
    ensure_node_modules();
    assert!(script.exists(), "no browser script {}", script.display());
    let stem = script
        .file_stem()
        .expect("script file name")
        .to_string_lossy()
        .into_owned();
    let shots = workspace_root()
        .join("target")
        .join("browser-screenshots")
        .join(stem);
    // Stale screenshots from an earlier run would be blamed on this one.
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", shots.display()));

    let mut cmd = Command::new("node");
    cmd.arg(script)
        // lib.mjs finds playwright-core from its own location; the cwd only
        // makes relative paths a script might use start from web/.
        .current_dir(workspace_root().join("web"))
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM_PATH", CHROMIUM)
        .env(
            "SCRIPT_TIMEOUT_MS",
            SCRIPT_SELF_TIMEOUT.as_millis().to_string(),
        )
        .env("E2E_STDIN_WATCHDOG", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Its own group, so the timeout kill reaches whatever node started.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    // Held open until the end: node exits when it closes, which is how a
    // scenario learns that this test process died without killing it.
    let stdin = child.stdin.take();
    let stdout = Collector::start(child.stdout.take().expect("piped stdout"));
    let stderr = Collector::start(child.stderr.take().expect("piped stderr"));

    let (status, timed_out) = match wait_until(&mut child, started + SCRIPT_TIMEOUT) {
        Some(status) => (status, false),
        None => (kill_group(&mut child), true),
    };
    drop(stdin);
    let elapsed = started.elapsed();

    let mut screenshots: Vec<PathBuf> = std::fs::read_dir(&shots)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    screenshots.sort();
    let run = BrowserRun {
        script: script.to_path_buf(),
        status,
        timed_out,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
        elapsed,
        screenshot_dir: shots,
        screenshots,
    };
    // Shown by `cargo test -- --nocapture` (the step log with timings) and
    // for any test that fails later on.
    eprintln!("{run}");
    if run.passed() {
        Ok(run)
    } else {
        Err(Box::new(run))
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM to node's process group (lib.mjs then closes Chromium),
/// SIGKILL after [`KILL_GRACE`]. Chromium, which playwright starts in a
/// group of its own, exits when node's end of its control pipe closes.
fn kill_group(child: &mut Child) -> ExitStatus {
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGTERM);
    if let Some(status) = wait_until(child, Instant::now() + KILL_GRACE) {
        return status;
    }
    let _ = killpg(group, Signal::SIGKILL);
    child.wait().expect("waiting for killed node")
}

/// Reads a pipe on a thread into a shared buffer, so what was read so far
/// can be taken even if some grandchild keeps the pipe open forever.
struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: JoinHandle<()>,
}

impl Collector {
    fn start(mut pipe: impl Read + Send + 'static) -> Collector {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("output buffer")
                    .write_all(&chunk[..n])
                    .ok();
            }
        });
        Collector { buf, thread }
    }

    fn finish(self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut text =
            String::from_utf8_lossy(&self.buf.lock().expect("output buffer")).into_owned();
        if !self.thread.is_finished() {
            text.push_str("\n(output cut: a process node started still holds the pipe)");
        }
        text
    }
}
