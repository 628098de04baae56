//! A load-testing lab on this machine: the real `controller serve`, a room
//! with one server (127.0.0.1), N real `agent-jmeter` processes enrolled
//! with a join token and linked to that server, real JMeter 5.6, and a
//! [`RateTarget`] HTTP server that counts requests per second.
//!
//! The controller can be restarted mid-run; agents are separate processes
//! and keep running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use crate::jmeter::JMeter;
use crate::{ControllerCli, Proc, api, bin, wait_for};

const WAIT: Duration = Duration::from_secs(60);

pub struct Generator {
    pub proc: Proc,
    pub id: String,
    pub state_dir: PathBuf,
}

pub struct LoadLab {
    pub cli: ControllerCli,
    pub controller: Option<Proc>,
    pub token: String,
    pub base: String,
    pub room: i64,
    pub server: i64,
    pub jmeter: JMeter,
    pub generators: Vec<Generator>,
    restarts: u32,
    /// Last: the processes above print their logs from it when dropped.
    pub dir: tempfile::TempDir,
}

impl LoadLab {
    /// The controller plus `n` connected generators able to run JMeter.
    pub async fn start(n: usize) -> LoadLab {
        let jmeter = tokio::task::spawn_blocking(JMeter::find)
            .await
            .expect("finding JMeter");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cli = ControllerCli::new(dir.path().join("data"));
        cli.heartbeat_secs = Some(1);
        let token = cli.api_token();
        let base = cli.url("");
        let mut lab = LoadLab {
            dir,
            cli,
            controller: None,
            token,
            base,
            room: 0,
            server: 0,
            jmeter,
            generators: Vec::new(),
            restarts: 0,
        };
        lab.start_controller().await;
        let (st, g) = lab
            .call(Method::POST, "/api/groups", Some(json!({"name": "load"})))
            .await;
        assert_eq!(st, 201, "{g}");
        let (st, r) = lab
            .call(
                Method::POST,
                "/api/rooms",
                Some(json!({"name": "lab", "purpose": "load_testing"})),
            )
            .await;
        assert_eq!(st, 201, "{r}");
        lab.room = r["id"].as_i64().expect("room id");
        let (st, s) = lab
            .call(
                Method::POST,
                "/api/servers",
                Some(
                    json!({"name": "loadbox", "group_id": g["id"], "room_id": lab.room,
                            "address": "127.0.0.1", "ssh_port": 22, "ssh_user": "root"}),
                ),
            )
            .await;
        assert_eq!(st, 201, "{s}");
        lab.server = s["id"].as_i64().expect("server id");
        for _ in 0..n {
            lab.add_generator().await;
        }
        lab
    }

    pub async fn start_controller(&mut self) {
        let name = if self.restarts == 0 {
            "controller".to_string()
        } else {
            format!("controller-{}", self.restarts)
        };
        self.restarts += 1;
        let proc = Proc::spawn(&name, self.cli.cmd(&["serve"]), self.dir.path());
        self.controller = Some(proc);
        let url = format!("{}/api/tasks", self.base);
        let token = self.token.clone();
        wait_for("controller up", WAIT, || async {
            crate::get_json(&url, &token).await
        })
        .await;
    }

    /// Stops the controller (SIGTERM) and starts it again on the same data.
    pub async fn restart_controller(&mut self, down_for: Duration) {
        if let Some(mut c) = self.controller.take() {
            let (status, in_time) = c.terminate(Duration::from_secs(15));
            assert!(
                in_time && status.success(),
                "controller stop: {status}\n{}",
                c.log()
            );
        }
        tokio::time::sleep(down_for).await;
        self.start_controller().await;
    }

    pub fn controller_log(&self) -> String {
        self.controller
            .as_ref()
            .map(|c| c.log())
            .unwrap_or_default()
    }

    /// Enrolls one more agent-jmeter, links it to the lab's server and
    /// waits until it is an idle generator of the room.
    pub async fn add_generator(&mut self) -> String {
        self.add_generator_with(&self.jmeter.home.clone()).await
    }

    /// As [`LoadLab::add_generator`], with JMeter looked for in `home`
    /// (a bad path makes a generator that cannot run JMeter).
    pub async fn add_generator_with(&mut self, home: &Path) -> String {
        let usable = home == self.jmeter.home;
        self.add_generator_env(home, usable, &[]).await
    }

    /// A generator whose `PATH` has no `java` (it cannot run JMeter).
    pub async fn add_generator_without_java(&mut self) -> String {
        let empty = self.dir.path().join("empty-path");
        std::fs::create_dir_all(&empty).expect("an empty PATH directory");
        let home = self.jmeter.home.clone();
        self.add_generator_env(&home, false, &[("PATH", empty.display().to_string())])
            .await
    }

    async fn add_generator_env(
        &mut self,
        home: &Path,
        usable: bool,
        env: &[(&str, String)],
    ) -> String {
        let out = self
            .cli
            .cmd(&["token", "create", "--role", "jmeter", "--ttl", "10m"])
            .output()
            .expect("controller token create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8(out.stdout).expect("install line");
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], "agent-jmeter", "{line}");
        let i = self.generators.len();
        let state = self.dir.path().join(format!("gen-{i}"));
        let mut cmd = std::process::Command::new(bin("agent-jmeter"));
        cmd.args(&words[1..])
            .arg("--state-dir")
            .arg(&state)
            .arg("--jmeter-home")
            .arg(home)
            .env_remove("JMETER_HOME")
            .env("RUST_LOG", "info,agent_jmeter=debug,quinn=warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let proc = Proc::spawn(&format!("agent-jmeter-{i}"), cmd, self.dir.path());
        let id = wait_for("the generator enrolled", WAIT, || async {
            let dir = std::fs::read_dir(&state).ok()?;
            let _ = dir;
            let agents = crate::get_json(&format!("{}/api/agents", self.base), &self.token).await?;
            let known: Vec<String> = self.generators.iter().map(|g| g.id.clone()).collect();
            agents
                .as_array()?
                .iter()
                .filter(|a| a["role"] == "jmeter" && a["connected"] == true)
                .map(|a| a["id"].as_str().unwrap_or_default().to_string())
                .find(|id| !known.contains(id))
        })
        .await;
        let (st, v) = self
            .call(
                Method::PUT,
                &format!("/api/servers/{}/agents/{id}", self.server),
                None,
            )
            .await;
        assert_eq!(st, 200, "linking the generator: {v}");
        let want = if usable { "idle" } else { "unusable" };
        let room = self.room;
        wait_for("the generator reported in", WAIT, || async {
            let c = self.candidates(room).await;
            c.iter()
                .any(|g| g["agent_id"] == id.as_str() && g["state"] == want)
                .then_some(())
        })
        .await;
        self.generators.push(Generator {
            proc,
            id: id.clone(),
            state_dir: state,
        });
        id
    }

    /// The room's generators as a task page shows them (via a plan-less
    /// route: the candidates of any task of the room; before any task,
    /// read from a throwaway view).
    pub async fn candidates(&self, room: i64) -> Vec<Value> {
        let (st, v) = self
            .call(Method::GET, &format!("/api/rooms/{room}/generators"), None)
            .await;
        if st == 200 {
            v.as_array().cloned().unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        api(&self.base, &self.token, method, path, body).await
    }

    /// A TPS-mode plan of one thread group hitting `target` for
    /// `duration_secs` on `generators` generators of the lab's room.
    pub async fn tps_plan(
        &self,
        name: &str,
        target: &RateTarget,
        tps: f64,
        duration_secs: u32,
        generators: u32,
    ) -> i64 {
        let plan = json!({
            "name": name,
            "run": {"load": {"type": "tps", "tps": tps}, "duration_secs": duration_secs,
                    "room_id": self.room, "generators": generators},
            "thread_groups": [{"name": "g", "controllers": [{"name": "c", "samplers": [
                {"name": "hit", "host": "127.0.0.1", "port": target.port().to_string(), "path": "/hit"}
            ]}]}]
        });
        let (st, v) = self.call(Method::POST, "/api/plans", Some(plan)).await;
        assert_eq!(st, 201, "{v}");
        v["id"].as_i64().expect("plan id")
    }

    /// Changes a plan's run settings (`doc["run"]`) through the API.
    pub async fn set_run(&self, plan: i64, change: impl FnOnce(&mut Value)) {
        let path = format!("/api/plans/{plan}");
        let (st, p) = self.call(Method::GET, &path, None).await;
        assert_eq!(st, 200, "{p}");
        let mut doc = p["plan"].clone();
        change(&mut doc["run"]);
        let body = json!({"revision": p["revision"], "plan": doc});
        let (st, v) = self.call(Method::PUT, &path, Some(body)).await;
        assert_eq!(st, 200, "{v}");
    }

    /// Runs a plan; the new task's id.
    pub async fn run_plan(&self, plan: i64) -> i64 {
        let (st, v) = self
            .call(Method::POST, &format!("/api/plans/{plan}/run"), None)
            .await;
        assert_eq!(st, 201, "{v}");
        v["id"].as_i64().expect("task id")
    }

    pub async fn task(&self, id: i64) -> Value {
        let (st, v) = self
            .call(Method::GET, &format!("/api/tasks/{id}"), None)
            .await;
        assert_eq!(st, 200, "{v}");
        v
    }

    /// Waits until the task's status is `status`.
    pub async fn wait_status(&self, id: i64, status: &str, within: Duration) -> Value {
        wait_for(&format!("task {id} {status}"), within, || async {
            let (st, v) = self
                .call(Method::GET, &format!("/api/tasks/{id}"), None)
                .await;
            (st == 200 && v["task"]["status"] == status).then_some(v)
        })
        .await
    }

    /// Agent-jmeter processes whose JMeter (java) children are alive.
    pub fn java_processes(&self) -> Vec<u32> {
        crate::processes_mentioning(self.dir.path().to_str().unwrap_or("/nonexistent"))
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.contains("ApacheJMeter"))
                    .unwrap_or(false)
            })
            .collect()
    }
}

/// An HTTP server on 127.0.0.1 that answers every request at once with a
/// small body and counts requests per wall-clock second.
pub struct RateTarget {
    inner: crate::jmeter::TargetServer,
    counts: Arc<Mutex<BTreeMap<u64, u64>>>,
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RateTarget {
    pub fn start() -> RateTarget {
        Self::start_slow(0, Duration::ZERO)
    }

    /// Every `every`-th request (0: none) is answered after `delay`.
    pub fn start_slow(every: u64, delay: Duration) -> RateTarget {
        let counts: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
        let c = counts.clone();
        let n = std::sync::atomic::AtomicU64::new(0);
        let inner = crate::jmeter::TargetServer::start_counting(Arc::new(move |_| {
            *c.lock().expect("counts").entry(unix_secs()).or_default() += 1;
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let reply = crate::jmeter::Reply::text("ok");
            if every > 0 && i.is_multiple_of(every) {
                reply.after(delay)
            } else {
                reply
            }
        }));
        RateTarget { inner, counts }
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    /// Requests per second in `[from, to)`, missing seconds as 0.
    pub fn per_second(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let c = self.counts.lock().expect("counts");
        (from..to)
            .map(|s| (s, c.get(&s).copied().unwrap_or(0)))
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.counts.lock().expect("counts").values().sum()
    }
}
