//! Installing and removing agents over SSH ("Deploy monitoring", "Deploy
//! load generator", "Stop" on the server list).
//!
//! A deploy is a job of named steps whose progress the page polls: connect
//! with the stored credential, check OS and CPU architecture against the
//! registered packages (`packages`), check free disk, upload the package,
//! unpack it, run its `install.sh` with a fresh single-use join token and
//! the CA pin (the same script a person runs for a manual install), then
//! wait until the new agent is connected. Removal runs the installed
//! `uninstall.sh`, which stops the agent and deletes every file listed in
//! the manifest the install wrote, then revokes the agent's certificate.
//! Both are idempotent: `install.sh` replaces what a previous (or half
//! finished) install left.
//!
//! Nothing a person typed reaches the remote shell: the commands are
//! fixed, and the few values in them (the install root from the
//! configuration, the package's file name, the token, the pin) are quoted
//! with [`sh_quote`].

pub mod packages;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certs::Role;
use serde::{Deserialize, Serialize};

use crate::inventory::{Inventory, Server};
use crate::shell::transfer::{self, FileName, RemotePath};
use crate::ssh::{self, Connection, Credential};

/// `[deploy]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeploySettings {
    /// Where agents are installed on servers. `/` installs system-wide
    /// (needs root over SSH); anything else installs under that directory
    /// (files, config and state all inside it).
    pub root: String,
    /// How long a deploy waits for the new agent to connect.
    pub connect_wait_secs: u64,
    /// How long the single-use join token a deploy hands to the new agent
    /// stays valid; a token leaked from a half-done deploy is worth little
    /// after that.
    pub token_ttl_secs: u64,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            root: "/".into(),
            connect_wait_secs: 60,
            token_ttl_secs: 600,
        }
    }
}

/// Quotes `s` for a POSIX shell: the result is one word whatever `s`
/// holds (no NUL: callers pass validated values).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub state: StepState,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Deploy,
    Remove,
}

/// A deploy or removal as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    pub server_id: i64,
    pub server_name: String,
    pub role: Role,
    pub action: Action,
    pub user: String,
    pub steps: Vec<Step>,
    pub finished: bool,
    pub ok: bool,
    pub error: Option<String>,
    /// The agent installed (deploy) or revoked (remove).
    pub agent_id: Option<String>,
}

const DEPLOY_STEPS: [&str; 7] = [
    "connect over SSH",
    "check OS and CPU architecture",
    "check free disk",
    "upload the package",
    "unpack",
    "install, configure and start",
    "wait for the agent to connect",
];
const REMOVE_STEPS: [&str; 3] = [
    "connect over SSH",
    "stop the agent and remove its files",
    "revoke the agent's certificate",
];

/// Running and finished jobs, newest kept, in memory (the audit log keeps
/// the outcome).
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<HashMap<String, Job>>,
}

impl Jobs {
    pub fn get(&self, id: &str) -> Option<Job> {
        self.jobs.lock().expect("jobs").get(id).cloned()
    }

    fn insert(&self, job: Job) {
        let mut jobs = self.jobs.lock().expect("jobs");
        if jobs.len() > 1000 {
            jobs.retain(|_, j| !j.finished);
        }
        jobs.insert(job.id.clone(), job);
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Some(j) = self.jobs.lock().expect("jobs").get_mut(id) {
            f(j);
        }
    }

    /// Whether a job for this server is running (one at a time per server).
    pub fn busy(&self, server: i64) -> bool {
        self.jobs
            .lock()
            .expect("jobs")
            .values()
            .any(|j| j.server_id == server && !j.finished)
    }
}

/// What a deploy needs from the rest of the controller.
#[derive(Clone)]
pub struct Deployer {
    pub inventory: Arc<Inventory>,
    pub registry: Arc<crate::gateway::Registry>,
    /// Revokes (and disconnects) removed agents.
    pub gateway_handle: Arc<crate::gateway::Gateway>,
    pub settings: DeploySettings,
    pub packages_dir: PathBuf,
    /// `host:port` agents dial.
    pub gateway: String,
    pub ca_pin: String,
    pub jobs: Arc<Jobs>,
    pub connect_timeout: Duration,
}

/// The error of one step, shown on the page.
type StepResult<T> = Result<T, String>;

impl Deployer {
    /// Starts a job in the background and returns its id.
    pub fn start(
        &self,
        server: Server,
        cred: Credential,
        role: Role,
        action: Action,
        user: &str,
    ) -> Result<String, String> {
        if self.jobs.busy(server.id) {
            return Err(format!(
                "a deploy or removal on {} is still running",
                server.name
            ));
        }
        let id = crate::auth::new_secret("")[..16].to_string();
        let names: &[&'static str] = match action {
            Action::Deploy => &DEPLOY_STEPS,
            Action::Remove => &REMOVE_STEPS,
        };
        self.jobs.insert(Job {
            id: id.clone(),
            server_id: server.id,
            server_name: server.name.clone(),
            role,
            action,
            user: user.to_string(),
            steps: names
                .iter()
                .map(|n| Step {
                    name: n,
                    state: StepState::Pending,
                    detail: String::new(),
                })
                .collect(),
            finished: false,
            ok: false,
            error: None,
            agent_id: None,
        });
        let me = self.clone();
        let job = id.clone();
        let user = user.to_string();
        tokio::spawn(async move {
            let r = match action {
                Action::Deploy => me.deploy(&job, &server, &cred, role).await,
                Action::Remove => me.remove(&job, &server, &cred, role).await,
            };
            let what = match action {
                Action::Deploy => "agent_deploy",
                Action::Remove => "agent_remove",
            };
            let detail = match &r {
                Ok(agent) => format!("{role} ok {}", agent.as_deref().unwrap_or("")),
                Err(e) => format!("{role} failed: {e}"),
            };
            let _ = me
                .inventory
                .audit(&user, what, Some((server.id, &server.name)), &detail);
            me.jobs.update(&job, |j| {
                j.finished = true;
                j.ok = r.is_ok();
                match r {
                    Ok(agent) => j.agent_id = agent,
                    Err(e) => j.error = Some(e),
                }
            });
        });
        Ok(id)
    }

    /// Runs step `i` of job `job`, recording its state and detail.
    async fn step<T>(
        &self,
        job: &str,
        i: usize,
        fut: impl std::future::Future<Output = StepResult<(T, String)>>,
    ) -> StepResult<T> {
        self.jobs
            .update(job, |j| j.steps[i].state = StepState::Running);
        let r = fut.await;
        self.jobs.update(job, |j| match &r {
            Ok((_, detail)) => {
                j.steps[i].state = StepState::Done;
                j.steps[i].detail = detail.clone();
            }
            Err(e) => {
                j.steps[i].state = StepState::Failed;
                j.steps[i].detail = e.clone();
                for s in &mut j.steps[i + 1..] {
                    s.state = StepState::Skipped;
                }
            }
        });
        r.map(|(t, _)| t)
    }

    async fn connect(
        &self,
        server: &Server,
        cred: &Credential,
    ) -> StepResult<(Connection, String)> {
        let conn = ssh::connect_server(server, cred, self.connect_timeout)
            .await
            .map_err(|e| e.to_string())?;
        if server.host_key.is_none() {
            let _ = self
                .inventory
                .set_host_key(server.id, Some(&conn.host_key()));
        }
        let detail = format!("{}@{}", server.ssh_user, conn.endpoint());
        Ok((conn, detail))
    }

    /// Runs a fixed command; its output is the step's detail on failure.
    async fn run(conn: &Connection, command: &str) -> StepResult<String> {
        let out = tokio::time::timeout(Duration::from_secs(300), conn.exec(command, 1 << 20))
            .await
            .map_err(|_| "the command did not finish within 5 minutes".to_string())?
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        match out.exit_status {
            Some(0) => Ok(stdout),
            other => Err(format!(
                "{}{}(exit {})",
                if stderr.is_empty() { &stdout } else { &stderr },
                if stderr.is_empty() && stdout.is_empty() {
                    ""
                } else {
                    " "
                },
                other.map_or("unknown".to_string(), |c| c.to_string())
            )),
        }
    }

    fn root(&self) -> String {
        self.settings.root.trim_end_matches('/').to_string()
    }

    /// The removal script install.sh writes beside its manifest (see
    /// packaging/install.sh).
    fn uninstall_script(&self, role: Role) -> String {
        format!(
            "{}/var/lib/myplatform/agent-{role}-uninstall.sh",
            self.root()
        )
    }

    async fn deploy(
        &self,
        job: &str,
        server: &Server,
        cred: &Credential,
        role: Role,
    ) -> StepResult<Option<String>> {
        let conn = self.step(job, 0, self.connect(server, cred)).await?;
        let pkg = self
            .step(job, 1, async {
                let uname = Self::run(&conn, "uname -sm").await?;
                let mut parts = uname.split_whitespace();
                let (os, machine) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if os != "Linux" {
                    return Err(format!("agents run on Linux; the server runs {os:?}"));
                }
                let all = packages::scan(&self.packages_dir).map_err(|e| e.to_string())?;
                let pkg = packages::pick(&all, role, machine)?.clone();
                // An agent installed some other way (the .deb, or copied by
                // hand) would end up running twice: refuse and say where.
                let root = self.root();
                let probe = format!(
                    "for f in {deb} {bin}; do [ -e \"$f\" ] && echo \"$f\"; done; [ -e {manifest} ] && echo ours; true",
                    deb = sh_quote(&format!("{root}/usr/bin/agent-{role}")),
                    bin = sh_quote(&format!("{root}/usr/local/bin/agent-{role}")),
                    manifest = sh_quote(&format!("{root}/var/lib/myplatform/agent-{role}.manifest")),
                );
                let found = Self::run(&conn, &probe).await?;
                let ours = found.lines().any(|l| l == "ours");
                if let Some(other) = found.lines().find(|l| *l != "ours")
                    && (!ours || other.ends_with(&format!("/usr/bin/agent-{role}")))
                {
                    return Err(format!(
                        "agent-{role} is already installed on this server outside the controller ({other}); remove it (dpkg -r myplatform-agent-{role}, or its uninstall script) or leave it: it can be linked to this server as it is"
                    ));
                }
                Ok((pkg.clone(), format!("Linux {machine}: {}", pkg.file_name)))
            })
            .await?;
        let root = self.root();
        let root_dir = if root.is_empty() {
            "/".to_string()
        } else {
            root.clone()
        };
        let staging = format!("{root}/var/tmp/myplatform-deploy");
        self.step(job, 2, async {
            let cmd = format!(
                "mkdir -p {s} && df -Pk {s} | awk 'NR==2 {{print $4}}'",
                s = sh_quote(&staging)
            );
            let free_kib: u64 = Self::run(&conn, &cmd)
                .await?
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .ok_or("cannot read the free space (df)")?;
            // Unpacked binary plus the tarball plus headroom for state.
            let need_kib = pkg.size * 4 / 1024 + 64 * 1024;
            if free_kib < need_kib {
                return Err(format!(
                    "not enough free disk under {root_dir}: {} MiB free, {} MiB needed",
                    free_kib / 1024,
                    need_kib / 1024
                ));
            }
            Ok(((), format!("{} MiB free", free_kib / 1024)))
        })
        .await?;
        self.step(job, 3, async {
            let dir = RemotePath::parse(&staging).map_err(|e| e.to_string())?;
            let name = FileName::parse(&pkg.file_name).map_err(|e| e.to_string())?;
            let file = tokio::fs::File::open(&pkg.path)
                .await
                .map_err(|e| format!("reading {}: {e}", pkg.path.display()))?;
            let body = tokio_util::io::ReaderStream::new(file);
            let n = transfer::upload(&conn, &dir, &name, body, |_| {})
                .await
                .map_err(|e| e.to_string())?;
            Ok(((), format!("{n} bytes")))
        })
        .await?;
        let unpacked = format!("{staging}/agent-{role}");
        self.step(job, 4, async {
            let cmd = format!(
                "rm -rf {u} && mkdir -p {u} && tar -xzf {t} -C {u} --strip-components=1 && ls {u}",
                u = sh_quote(&unpacked),
                t = sh_quote(&format!("{staging}/{}", pkg.file_name))
            );
            let listing = Self::run(&conn, &cmd).await?;
            Ok(((), listing.replace('\n', " ")))
        })
        .await?;
        // A fresh single-use token per deploy: a redeploy after any failure
        // brings a new one.
        let token = crate::gateway::create_token(
            &self.inventory,
            role,
            1,
            Duration::from_secs(self.settings.token_ttl_secs.max(1)),
            Some(server.group.clone()),
            Some(server.room.clone()),
        )
        .map_err(|e| e.to_string())?;
        let token_hash = token.token.hash();
        let installed_at = crate::metrics::embedded::now_ms().max(0) as u64;
        self.step(job, 5, async {
            // The token through the environment: argv is visible to every
            // user of the server.
            let cmd = format!(
                "cd {u} && MYPLATFORM_TOKEN={t} sh ./install.sh --supervise --prefix {p} --controller {c} --ca-pin {k}",
                u = sh_quote(&unpacked),
                p = sh_quote(&root_dir),
                c = sh_quote(&self.gateway),
                t = sh_quote(token.token.expose_secret()),
                k = sh_quote(&self.ca_pin),
            );
            let out = Self::run(&conn, &cmd).await?;
            let _ = Self::run(&conn, &format!("rm -rf {}", sh_quote(&staging))).await;
            let last = out.lines().last().unwrap_or("").to_string();
            Ok(((), last))
        })
        .await?;
        let wait = Duration::from_secs(self.settings.connect_wait_secs);
        let agent = self
            .step(job, 6, async {
                let deadline = Instant::now() + wait;
                loop {
                    // A first install enrolls with the new token; a
                    // reinstall keeps the agent's identity and reconnects.
                    if let Ok(Some(id)) = self.inventory.agent_of_token(&token_hash)
                        && self.registry.get(&id).is_some()
                    {
                        let _ = self.inventory.link_agent(&id, Some(server.id));
                        return Ok((id.to_string(), format!("{id} enrolled and connected")));
                    }
                    if let Some(id) = self.reconnected(server.id, role, installed_at) {
                        return Ok((id.clone(), format!("{id} reconnected")));
                    }
                    if let Some(reason) = self.registry.refusal(&token_hash.0) {
                        return Err(format!(
                            "the controller refused the agent's enrollment: {reason}. Deploy again: every deploy brings a fresh token"
                        ));
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "the agent did not connect within {}; check that the server can reach the controller at {} (UDP) and the agent's log",
                            humantime::format_duration(wait),
                            self.gateway
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
            .await?;
        conn.disconnect().await;
        Ok(Some(agent))
    }

    /// An agent of `role` on this server that connected after `since_ms`.
    fn reconnected(&self, server: i64, role: Role, since_ms: u64) -> Option<String> {
        let linked: Vec<certs::AgentId> = self
            .inventory
            .agents()
            .ok()?
            .into_iter()
            .filter(|a| a.server_id == Some(server) && a.role == role && a.revoked_at.is_none())
            .map(|a| a.id)
            .collect();
        self.registry
            .snapshot()
            .into_iter()
            .find(|l| linked.contains(&l.id) && l.connected_since >= since_ms)
            .map(|l| l.id.to_string())
    }

    async fn remove(
        &self,
        job: &str,
        server: &Server,
        cred: &Credential,
        role: Role,
    ) -> StepResult<Option<String>> {
        let conn = self.step(job, 0, self.connect(server, cred)).await?;
        self.step(job, 1, async {
            let script = self.uninstall_script(role);
            let cmd = format!(
                "if [ -f {s} ]; then sh {s}; else echo 'nothing installed'; fi",
                s = sh_quote(&script)
            );
            let out = Self::run(&conn, &cmd).await?;
            Ok(((), out.lines().last().unwrap_or("").to_string()))
        })
        .await?;
        conn.disconnect().await;
        let revoked = self
            .step(job, 2, async {
                let mut ids = Vec::new();
                for a in server
                    .agents
                    .iter()
                    .filter(|a| a.role == role.to_string() && !a.revoked)
                {
                    if let Ok(id) = a.id.parse::<certs::AgentId>() {
                        self.gateway_handle
                            .revoke(&id)
                            .map_err(|e| format!("revoking {id}: {e}"))?;
                        ids.push(a.id.clone());
                    }
                }
                let detail = if ids.is_empty() {
                    "no agent of this role was linked".to_string()
                } else {
                    format!("revoked {}", ids.join(", "))
                };
                Ok((ids.first().cloned(), detail))
            })
            .await?;
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_makes_one_word_of_anything() {
        assert_eq!(sh_quote("abc"), "'abc'");
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
        let evil = "x'; rm -rf / #$(reboot)`id`";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh_quote(evil)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), evil);
    }
}
