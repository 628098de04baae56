//! A real InfluxDB for tests: Debian's `influxdb` package (`influxd`, 1.x;
//! `apt-get install influxdb`), or the binary named by `E2E_INFLUXD`.
//!
//! [`InfluxServer::start`] runs `influxd run` on free loopback ports (HTTP
//! and the RPC bind address), with meta, data and WAL in a temporary
//! directory, reporting and the internal monitor store off, and waits for
//! `/ping`. It cannot start -> panic with the reason and its log, never a
//! silent skip. [`InfluxServer::stop`] and [`InfluxServer::restart`] keep
//! the ports and the data, to test "InfluxDB down".
//!
//! influxd is killed on drop (also while a test panics, then its log is
//! printed), and by a watchdog `sh` when the test process dies without
//! dropping it (the watchdog's standard input, a pipe from this process,
//! closes). The waits here block the calling thread, at most
//! [`START_TIMEOUT`] or [`STOP_GRACE`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const START_TIMEOUT: Duration = Duration::from_secs(30);
pub const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct InfluxServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    influxd: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl InfluxServer {
    /// Starts influxd with an empty data directory. Panics with the reason
    /// if it is not installed or does not answer `/ping` in time.
    pub fn start() -> InfluxServer {
        let influxd = find_influxd();
        let dir = tempfile::Builder::new()
            .prefix("e2e-influx-")
            .tempdir()
            .expect("temporary directory for InfluxDB");
        let port = crate::free_port();
        let mut rpc_port = crate::free_port();
        while rpc_port == port {
            rpc_port = crate::free_port();
        }
        let d = dir.path().display();
        let config = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{d}/meta"

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false

[continuous_queries]
  enabled = false
"#
        );
        std::fs::write(dir.path().join("influxdb.conf"), config).expect("write influxdb.conf");
        let mut server = InfluxServer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            influxd,
            dir,
            child: None,
            watchdog: None,
        };
        server.spawn();
        server
    }

    /// Stops influxd (SIGTERM, SIGKILL after [`STOP_GRACE`]): connections
    /// to `url` are then refused. The data stays for [`InfluxServer::restart`].
    pub fn stop(&mut self) {
        self.kill_watchdog();
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts influxd again on the same ports with the same data (stopping
    /// it first if it runs).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Whether influxd runs (started and not stopped or exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// influxd's output so far (all runs).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("influxd.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("influxd log file");
        let err = log.try_clone().expect("influxd log file");
        let child = Command::new(&self.influxd)
            .arg("run")
            .arg("-config")
            .arg(self.dir.path().join("influxdb.conf"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (apt-get install influxdb)",
                    self.influxd.display()
                )
            });
        let pid = child.id();
        self.child = Some(child);
        // Kills influxd if this process dies without dropping us: `read`
        // returns when the pipe's write end (ours) closes.
        self.watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#"read -r _; kill -KILL "$1" 2>/dev/null"#)
            .arg("influxd-watchdog")
            .arg(pid.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                self.kill_watchdog();
                panic!(
                    "influxd exited during start ({status}); its log:\n{}",
                    self.log()
                );
            }
            if ping(self.port) {
                return;
            }
            if Instant::now() >= deadline {
                let log = self.log();
                self.kill_now();
                panic!(
                    "influxd did not answer /ping on port {} within {START_TIMEOUT:?}; its log:\n{log}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_watchdog(&mut self) {
        // Before influxd goes: the watchdog must never outlive it and then
        // signal a reused pid.
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    fn kill_now(&mut self) {
        self.kill_watchdog();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for InfluxServer {
    fn drop(&mut self) {
        self.kill_now();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("----- influxd log (last {} lines) -----", tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

fn find_influxd() -> PathBuf {
    if let Ok(p) = std::env::var("E2E_INFLUXD") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "E2E_INFLUXD={} is not a file (unset it to use influxd from PATH)",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("influxd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "influxd not found in PATH: install InfluxDB 1.x with \
                 `apt-get install influxdb` (or set E2E_INFLUXD)"
            )
        })
}

/// `GET /ping` answered with a 2xx (influxd 1.x: 204).
fn ping(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).is_err() {
        return false;
    }
    // "HTTP/1.x 2.."
    head.starts_with(b"HTTP/1.") && head[9] == b'2'
}
