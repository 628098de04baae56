//! The application process of the host's group: found by its identifier
//! (`ps -ef | grep <identifier>`, without forking ps), its listening ports,
//! per-port TCP states (sock_diag) and, for Java, its JVM (hsperfdata).
//!
//! The process and its ports are looked up again only when the process is
//! gone or every few seconds, not on every tick; the identifier can change
//! at any time (the controller sends it) without a restart.

use std::time::{Duration, Instant};

use protocol::metrics::AppStats;

use crate::collect::Roots;
use crate::collect::jvm;
use crate::collect::ports::{self, SockDiag, TcpState};
use crate::collect::process;

/// How often to look for a process that is not running.
const SEARCH_EVERY: Duration = Duration::from_secs(5);
/// How often to re-read which ports the process listens on.
const PORTS_EVERY: Duration = Duration::from_secs(10);
/// After a JVM read fails (perf data disabled, file missing), how long to
/// report that error before looking again: each look lists directories.
const JVM_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct AppWatcher {
    roots: Roots,
    identifier: Option<String>,
    pid: Option<u32>,
    java: bool,
    ports: Vec<u16>,
    ports_at: Option<Instant>,
    searched_at: Option<Instant>,
    diag: Option<SockDiag>,
    jvm_failed: Option<(Instant, String)>,
}

impl AppWatcher {
    pub fn new(roots: Roots) -> AppWatcher {
        AppWatcher {
            roots,
            identifier: None,
            pid: None,
            java: false,
            ports: Vec::new(),
            ports_at: None,
            searched_at: None,
            diag: None,
            jvm_failed: None,
        }
    }

    pub fn identifier(&self) -> Option<&str> {
        self.identifier.as_deref()
    }

    pub fn set_identifier(&mut self, identifier: Option<String>) {
        let identifier = identifier.filter(|i| !i.trim().is_empty());
        if identifier != self.identifier {
            self.identifier = identifier;
            self.forget();
        }
    }

    fn forget(&mut self) {
        self.pid = None;
        self.java = false;
        self.ports.clear();
        self.ports_at = None;
        self.searched_at = None;
        self.jvm_failed = None;
    }

    pub fn collect(&mut self) -> Result<Option<AppStats>, String> {
        let Some(identifier) = self.identifier.clone() else {
            return Ok(None);
        };
        let now = Instant::now();
        if let Some(pid) = self.pid
            && !process::process_matches(&self.roots.proc, pid, &identifier)
        {
            self.forget();
        }
        if self.pid.is_none()
            && self
                .searched_at
                .is_none_or(|t| now.duration_since(t) >= SEARCH_EVERY)
        {
            self.searched_at = Some(now);
            self.pid = process::find_process(&self.roots.proc, &identifier, std::process::id());
            if let Some(pid) = self.pid {
                self.java = jvm::is_java(pid);
            }
        }
        let mut out = AppStats {
            identifier,
            pid: self.pid,
            ..Default::default()
        };
        let Some(pid) = self.pid else {
            return Ok(Some(out));
        };
        if self.diag.is_none() {
            self.diag = Some(SockDiag::new().map_err(|e| format!("sock_diag: {e}"))?);
        }
        let diag = self.diag.as_mut().expect("just set");
        if self
            .ports_at
            .is_none_or(|t| now.duration_since(t) >= PORTS_EVERY)
        {
            self.ports_at = Some(now);
            let listening = diag
                .tcp_sockets(ports::state_mask(&[TcpState::Listen]))
                .map_err(|e| format!("sock_diag: {e}"))?;
            match process::socket_inodes(&self.roots.proc, pid) {
                Ok(inodes) => self.ports = ports::listening_ports(&listening, &inodes),
                // Exited between the check and now: next tick searches again.
                Err(e) => return Err(format!("process {pid}: {e}")),
            }
        }
        if !self.ports.is_empty() {
            let states = ports::state_mask(&[
                TcpState::Established,
                TcpState::SynRecv,
                TcpState::FinWait1,
                TcpState::FinWait2,
                TcpState::TimeWait,
                TcpState::CloseWait,
                TcpState::LastAck,
                TcpState::Closing,
            ]);
            let socks = diag
                .tcp_sockets(states)
                .map_err(|e| format!("sock_diag: {e}"))?;
            out.ports = ports::count_ports(&socks, &self.ports);
        }
        if self.java {
            match &self.jvm_failed {
                Some((at, why)) if now.duration_since(*at) < JVM_RETRY => {
                    out.jvm_error = Some(why.clone());
                }
                _ => match jvm::read_jvm(pid) {
                    Ok(j) => {
                        out.jvm = Some(j);
                        self.jvm_failed = None;
                    }
                    Err(e) => {
                        out.jvm_error = Some(e.to_string());
                        self.jvm_failed = Some((now, e.to_string()));
                    }
                },
            }
        }
        Ok(Some(out))
    }
}
