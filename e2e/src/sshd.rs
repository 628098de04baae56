//! A real OpenSSH server for tests: Debian's `openssh-server`
//! (`/usr/sbin/sshd`; `apt-get install openssh-server`), or the binary named
//! by `E2E_SSHD`.
//!
//! [`SshServer::start`] creates a throwaway local user (`mpt` + random
//! suffix) with a random password, an ed25519 client key pair whose public
//! half is in `~/.ssh/authorized_keys`, and a fresh ed25519 host key, then
//! runs `sshd -D -e` on a free loopback port with its own config, pid file
//! and log in a temporary directory, allowing only that user. It waits
//! until sshd listens and answers with an SSH banner. It cannot start ->
//! panic with the reason and sshd's log, never a silent skip.
//!
//! Runs as root (useradd, sshd). Several servers may run at once, from
//! parallel tests or test processes: users, ports and files are unique, and
//! the passwd-database tools are serialised in-process and retried across
//! processes.
//!
//! Drop kills sshd and the user's processes and removes the user (`userdel
//! -r`) and the files; a watchdog `sh` does the same if the test process
//! dies without dropping (its standard input, a pipe from this process,
//! closes). The waits here block the calling thread, at most
//! [`START_TIMEOUT`] or [`STOP_GRACE`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const START_TIMEOUT: Duration = Duration::from_secs(20);
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where sshd keeps its privilege-separation chroot. Shared with any other
/// sshd on the machine: create it if missing, never remove it.
const PRIVSEP_DIR: &str = "/run/sshd";

/// useradd, chpasswd and userdel take the passwd/shadow lock and fail
/// instead of waiting when another holds it: one at a time in this process,
/// retried against other processes.
static ACCOUNTS: Mutex<()> = Mutex::new(());

pub struct SshServer {
    /// Always `127.0.0.1`.
    pub address: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The client key (ed25519, unencrypted) whose public half is in the
    /// user's authorized_keys, in OpenSSH PEM form.
    pub private_key_openssh: String,
    /// `ssh-ed25519 AAAA...` of that key.
    pub public_key_openssh: String,
    pub home: PathBuf,
    sshd: PathBuf,
    dir: tempfile::TempDir,
    uid: u32,
    /// Lines put ahead of the defaults (sshd takes a keyword's first value).
    extra_config: String,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl SshServer {
    /// Creates the user and keys and starts sshd. Panics with the reason
    /// (and sshd's log) if any step fails.
    pub fn start() -> SshServer {
        let sshd = find_sshd();
        std::fs::create_dir_all(PRIVSEP_DIR)
            .unwrap_or_else(|e| panic!("cannot create {PRIVSEP_DIR}: {e} (tests run as root)"));
        let dir = tempfile::Builder::new()
            .prefix("e2e-sshd-")
            .tempdir()
            .expect("temporary directory for sshd");
        // The user's home is inside: they must be able to traverse to it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod sshd temp dir");
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).expect("sshd key directory");
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))
            .expect("chmod sshd key directory");
        keygen(&keys.join("host_ed25519"), "e2e-host");
        keygen(&keys.join("client_ed25519"), "e2e-client");
        let private_key_openssh =
            std::fs::read_to_string(keys.join("client_ed25519")).expect("read client key");
        let public_key_openssh = key_line(&keys.join("client_ed25519.pub"));

        let home = dir.path().join("home");
        let password = random_hex(12);
        let user = create_user(&home, &password);
        let mut server = SshServer {
            address: "127.0.0.1".to_string(),
            port: 0,
            user,
            password,
            private_key_openssh,
            public_key_openssh,
            home,
            sshd,
            dir,
            uid: 0,
            extra_config: String::new(),
            child: None,
            watchdog: None,
        };
        // From here on, Drop removes the user even if a step panics.
        let (uid, gid) = (id(&server.user, "-u"), id(&server.user, "-g"));
        server.uid = uid;
        let ssh_dir = server.home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).expect("~/.ssh");
        let auth_keys = ssh_dir.join("authorized_keys");
        std::fs::write(&auth_keys, format!("{}\n", server.public_key_openssh))
            .expect("write authorized_keys");
        for p in [&ssh_dir, &auth_keys] {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown ~/.ssh");
        }
        std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod ~/.ssh");
        std::fs::set_permissions(&auth_keys, std::fs::Permissions::from_mode(0o600))
            .expect("chmod authorized_keys");

        // The port is free when asked but may be taken before sshd binds
        // it (another test asking at the same moment): then try another.
        for attempt in 1.. {
            server.port = free_tcp_port();
            match server.spawn() {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
                Err(log) => panic!(
                    "sshd did not start on 127.0.0.1:{}; its log:\n{log}",
                    server.port
                ),
            }
        }
        server
    }

    /// The server's host public key line, `ssh-ed25519 AAAA...` (no
    /// comment).
    pub fn host_public_key(&self) -> String {
        key_line(&self.keys_dir().join("host_ed25519.pub"))
    }

    /// Replaces the host key with a new one and restarts sshd on the same
    /// port: what a reinstalled server looks like to a client.
    pub fn regenerate_host_key_and_restart(&mut self) {
        self.stop();
        let key = self.keys_dir().join("host_ed25519");
        for p in [key.clone(), key.with_extension("pub")] {
            std::fs::remove_file(&p).unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
        }
        keygen(&key, "e2e-host");
        self.restart();
    }

    /// Restarts sshd with `extra` (sshd_config lines) in front of the
    /// defaults, which it overrides: e.g. `"PasswordAuthentication no"`.
    pub fn reconfigure(&mut self, extra: &str) {
        self.extra_config = extra.to_string();
        self.restart();
    }

    /// Starts sshd again on the same port after [`SshServer::stop`].
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn() {
            panic!(
                "sshd did not restart on 127.0.0.1:{}; its log:\n{log}",
                self.port
            );
        }
    }

    /// Stops sshd (SIGTERM, SIGKILL after [`STOP_GRACE`]); connections to
    /// the port are then refused. The user and keys stay. Sessions already
    /// open are ended too, as on a rebooting server.
    pub fn stop(&mut self) {
        self.kill_watchdog();
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // sshd -D leaves per-connection processes running when it exits.
        self.kill_user_processes();
    }

    /// sshd's output so far (all runs).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// Writes the config for the current port, starts sshd and waits until
    /// it serves. `Err(log)` when it exits or does not answer in time.
    fn spawn(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        // `UsePAM no`: sshd then checks the password against /etc/shadow
        // itself, which is what chpasswd wrote. PAM works too on this
        // machine, but pam_unix delays every failed password by ~2-4 s and
        // Debian's pam_loginuid session module refuses logins in
        // containers without audit capability. A test that wants PAM (e.g.
        // keyboard-interactive) passes `UsePAM yes` to `reconfigure`.
        let config = format!(
            "{extra}\n\
             ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {keys}/host_ed25519\n\
             PidFile {d}/sshd.pid\n\
             AllowUsers {user}\n\
             PermitRootLogin no\n\
             PasswordAuthentication yes\n\
             PubkeyAuthentication yes\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             AuthorizedKeysFile .ssh/authorized_keys\n\
             StrictModes no\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             X11Forwarding no\n\
             MaxStartups 100:30:200\n\
             LogLevel VERBOSE\n\
             Subsystem sftp internal-sftp\n",
            port = self.port,
            keys = self.keys_dir().display(),
            d = d.display(),
            user = self.user,
            extra = self.extra_config,
        );
        let config_path = d.join("sshd_config");
        std::fs::write(&config_path, config).expect("write sshd_config");
        let log_start = std::fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("sshd log file");
        let err = log.try_clone().expect("sshd log file");
        let child = Command::new(&self.sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (apt-get install openssh-server)",
                    self.sshd.display()
                )
            });
        let pid = child.id();
        self.child = Some(child);
        // Kills sshd and removes the user and files if this process dies
        // without dropping us: `read` returns when the pipe's write end
        // (ours) closes.
        self.watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                r#"read -r _; kill -KILL "$1"; pkill -KILL -U "$2"; userdel -f -r "$2"; rm -rf -- "$3""#,
            )
            .arg("sshd-watchdog")
            .arg(pid.to_string())
            .arg(&self.user)
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        self.wait_ready(log_start)
    }

    fn wait_ready(&mut self, log_start: usize) -> Result<(), String> {
        let listening = format!("Server listening on 127.0.0.1 port {}", self.port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let log = self.log().get(log_start..).unwrap_or_default().to_string();
            if let Some(status) = exited {
                self.child = None;
                self.kill_watchdog();
                return Err(format!("(sshd exited: {status})\n{log}"));
            }
            // The log line proves it is our sshd on the port, the banner
            // that it already serves.
            if log.contains(&listening) && ssh_banner(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!("(no SSH banner within {START_TIMEOUT:?})\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn kill_watchdog(&mut self) {
        // Before sshd goes: the watchdog must never outlive it and then
        // signal a reused pid.
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// Only processes of this throwaway user's uid, never root's: the
    /// per-connection sshd monitors exit by themselves once their session
    /// processes are gone.
    fn kill_user_processes(&self) {
        if self.uid == 0 {
            return;
        }
        for _ in 0..50 {
            let pids = processes_of_uid(self.uid);
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
        let _guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let removed = retry_accounts(|| Command::new("userdel").arg("-r").arg(&self.user).output());
        if let Err(e) = removed {
            // -f also removes a user whose processes we could not see go.
            let forced = Command::new("userdel")
                .args(["-f", "-r"])
                .arg(&self.user)
                .output();
            if !forced.is_ok_and(|o| o.status.success()) {
                eprintln!("cannot remove test user {}: {e}", self.user);
            }
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("----- sshd log (last {} lines) -----", tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

fn find_sshd() -> PathBuf {
    if let Ok(p) = std::env::var("E2E_SSHD") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "E2E_SSHD={} is not a file (unset it to use /usr/sbin/sshd)",
            p.display()
        );
        return p;
    }
    let p = PathBuf::from("/usr/sbin/sshd");
    assert!(
        p.is_file(),
        "/usr/sbin/sshd not found: install it with `apt-get install openssh-server` \
         (or set E2E_SSHD)"
    );
    p
}

/// A fresh unencrypted ed25519 key pair at `path` and `path.pub`.
fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen: {e} (apt-get install openssh-client)"));
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `type base64` of a `.pub` file, without the comment.
fn key_line(pub_path: &Path) -> String {
    let text = std::fs::read_to_string(pub_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", pub_path.display()));
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    assert_eq!(words.len(), 2, "not a public key: {}", pub_path.display());
    words.join(" ")
}

/// Creates a user with a unique name, home `home` and `password`; returns
/// the name.
fn create_user(home: &Path, password: &str) -> String {
    let _guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..10 {
        let user = format!("mpt{}", random_hex(5));
        let out = retry_accounts(|| {
            Command::new("useradd")
                .arg("-m")
                .arg("-d")
                .arg(home)
                .args(["-s", "/bin/bash"])
                .arg(&user)
                .output()
        });
        match out {
            Ok(()) => {}
            // 9: the name is taken (a leftover of a killed run): pick another.
            Err(e) if e.contains("exit status: 9") => continue,
            Err(e) => panic!("useradd {user} failed (tests run as root): {e}"),
        }
        let set = retry_accounts(|| {
            let mut child = Command::new("chpasswd")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                writeln!(stdin, "{user}:{password}")?;
            }
            child.wait_with_output()
        });
        if let Err(e) = set {
            let _ = Command::new("userdel").arg("-r").arg(&user).output();
            panic!("chpasswd for {user} failed: {e}");
        }
        return user;
    }
    panic!("no free test user name after 10 tries");
}

/// Runs an account tool, retrying while another process holds the
/// passwd/shadow/group lock. `Err` carries the status and stderr.
fn retry_accounts(
    mut run: impl FnMut() -> std::io::Result<std::process::Output>,
) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..50 {
        let out = run().map_err(|e| format!("cannot run: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        last = format!("{}: {}", out.status, stderr.trim());
        if !(stderr.contains("lock") || stderr.contains("try again")) {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

fn id(user: &str, flag: &str) -> u32 {
    let out = Command::new("id")
        .arg(flag)
        .arg(user)
        .output()
        .expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {flag} {user}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn processes_of_uid(uid: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        // "Uid:\treal\teffective\tsaved\tfs"
        let owned = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .is_some_and(|ids| ids.split_whitespace().any(|id| id == uid.to_string()));
        if owned {
            pids.push(pid);
        }
    }
    pids
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A free loopback TCP port at the time of asking.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind loopback")
        .port()
}

/// Whether something on the port greets with an SSH identification line.
fn ssh_banner(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 8];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"SSH-2.0-")
}
