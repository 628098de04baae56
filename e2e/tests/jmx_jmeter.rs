//! Generated, imported and prepared .jmx files run in a real JMeter 5.6
//! against a recording HTTP server on 127.0.0.1; the requests must arrive
//! as the plan says. JMeter comes from `scripts/jmeter` (or
//! JMETER_HOME); without it these tests fail and say so.
//!
//! Each test is one JMeter run (a JVM start costs seconds), bounded by
//! CSV files that stop their threads at the end, or by a few seconds of
//! duration; the test harness runs them in parallel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use e2e::jmeter::{JMeter, Recorded, Reply, TargetServer};
use loadplan::jmx::{Sizing, generate, import, prepare};
use loadplan::*;

/// Far above any of these runs; reached only when something hangs.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

fn var(name: &str, value: &str) -> Variable {
    Variable {
        name: name.into(),
        value: value.into(),
    }
}

/// `<tmp>/plan/plan.jmx` and its data files in `<tmp>/plan/data/`. JMeter
/// runs in `<tmp>`, so `data/x.csv` only works if JMeter resolves it
/// against the plan's directory, as MyPlatform's artifacts need.
fn write_plan(dir: &Path, jmx: &[u8], data: &[(&str, &[u8])]) -> PathBuf {
    let plan_dir = dir.join("plan");
    std::fs::create_dir_all(plan_dir.join("data")).unwrap();
    for (name, contents) in data {
        std::fs::write(plan_dir.join("data").join(name), contents).unwrap();
    }
    let path = plan_dir.join("plan.jmx");
    std::fs::write(&path, jmx).unwrap();
    path
}

fn sampler(name: &str, method: Method, path: &str) -> HttpSampler {
    HttpSampler {
        name: name.into(),
        host: "${host}".into(),
        port: "${port}".into(),
        path: path.into(),
        method,
        ..HttpSampler::default()
    }
}

/// Two thread groups of one thread each, ended by their CSV files (stop
/// thread on EOF): "shop" logs in, reads a profile with what the login
/// returned, and posts a form three times (one CSV row each); "visitor"
/// visits two pages with fresh cookies per iteration; disabled elements
/// everywhere must stay silent.
fn functional_plan(port: u16) -> TestPlan {
    let shop = ThreadGroup {
        name: "shop".into(),
        csv_data_sets: vec![CsvDataSet {
            file: "users.csv".into(),
            variable_names: vec!["user".into(), "password".into()],
            delimiter: ";".into(),
            recycle_on_eof: false,
            stop_thread_on_eof: true,
            ..CsvDataSet::default()
        }],
        cookies: true,
        clear_cookies_each_iteration: false,
        controllers: vec![
            Controller {
                name: "flow".into(),
                enabled: true,
                samplers: vec![
                    HttpSampler {
                        body: Body::Json {
                            text: r#"{"user":"${user}","password":"${password}","note":"é"}"#
                                .into(),
                        },
                        header_set: Some("json".into()),
                        content_encoding: "UTF-8".into(),
                        assertion: Some(Assertion {
                            kind: AssertionKind::Contains,
                            text: r#""token":"t-"#.into(),
                        }),
                        extractors: vec![
                            Extractor {
                                kind: ExtractorKind::JsonPath,
                                expression: "$.token".into(),
                                variable: "token".into(),
                                default: "NO_TOKEN".into(),
                            },
                            Extractor {
                                kind: ExtractorKind::Regex,
                                expression: r#""id":(\d+)"#.into(),
                                variable: "uid".into(),
                                default: "NO_ID".into(),
                            },
                        ],
                        ..sampler("login", Method::Post, "/login")
                    },
                    HttpSampler {
                        body: Body::Form {
                            fields: vec![var("a", "1"), var("b", "x y&z")],
                        },
                        header_set: Some("auth".into()),
                        assertion: Some(Assertion {
                            kind: AssertionKind::Equals,
                            text: "profile".into(),
                        }),
                        ..sampler("profile", Method::Get, "/users/${uid}/profile")
                    },
                    HttpSampler {
                        body: Body::Form {
                            fields: vec![var("name", "${user}"), var("note", "a&b c")],
                        },
                        // Fails on purpose: the body is "updated".
                        assertion: Some(Assertion {
                            kind: AssertionKind::Matches,
                            text: "^nope$".into(),
                        }),
                        ..sampler("update", Method::Post, "/update")
                    },
                    HttpSampler {
                        enabled: false,
                        ..sampler("off sampler", Method::Get, "/disabled-sampler")
                    },
                ],
            },
            Controller {
                name: "off".into(),
                enabled: false,
                samplers: vec![sampler(
                    "in off controller",
                    Method::Get,
                    "/disabled-controller",
                )],
            },
        ],
        ..ThreadGroup::default()
    };
    let visitor = ThreadGroup {
        name: "visitor".into(),
        csv_data_sets: vec![CsvDataSet {
            file: "pages.tsv".into(),
            variable_names: vec![],
            delimiter: "\\t".into(),
            ignore_first_line: true,
            recycle_on_eof: false,
            stop_thread_on_eof: true,
            sharing: Sharing::CurrentThreadGroup,
        }],
        cookies: true,
        clear_cookies_each_iteration: true,
        controllers: vec![Controller {
            name: "pages".into(),
            enabled: true,
            samplers: vec![
                HttpSampler {
                    body: Body::Form {
                        fields: vec![var("lang", "${lang}")],
                    },
                    ..sampler("visit", Method::Get, "/visit/${page}")
                },
                sampler("again", Method::Get, "/again"),
            ],
        }],
        ..ThreadGroup::default()
    };
    let idle = ThreadGroup {
        name: "idle".into(),
        enabled: false,
        controllers: vec![Controller {
            name: "c".into(),
            enabled: true,
            samplers: vec![sampler("in off group", Method::Get, "/disabled-group")],
        }],
        ..ThreadGroup::default()
    };
    TestPlan {
        name: "functional".into(),
        run: RunSettings {
            load: Load::Threads { threads: 1 },
            // A bound only: the CSV files end the threads within seconds.
            duration_secs: 60,
            ..RunSettings::default()
        },
        variables: vec![
            var("host", "127.0.0.1"),
            var("port", &port.to_string()),
            var("env", "staging"),
        ],
        header_sets: vec![
            HeaderSet {
                name: "json".into(),
                headers: vec![
                    var("Content-Type", "application/json"),
                    var("X-User", "${user}"),
                    var("X-Env", "${env}"),
                ],
            },
            HeaderSet {
                name: "auth".into(),
                headers: vec![var("Authorization", "Bearer ${token}")],
            },
        ],
        thread_groups: vec![shop, visitor, idle],
        ..TestPlan::default()
    }
}

/// Ids and cookie values are 100 + the request's arrival number.
fn functional_target() -> TargetServer {
    TargetServer::start(Arc::new(move |r: &Recorded| {
        let n = r.seq + 100;
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/login") => {
                let body: serde_json::Value =
                    serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
                let user = body["user"].as_str().unwrap_or("?").to_string();
                Reply::json(&format!(r#"{{"token":"t-{user}","id":{n}}}"#))
                    .with_header("Set-Cookie", &format!("sid={user}-{n}; Path=/"))
            }
            ("GET", p) if p.starts_with("/users/") => Reply::text("profile"),
            ("POST", "/update") => Reply::text("updated"),
            ("GET", p) if p.starts_with("/visit/") => {
                Reply::text("visited").with_header("Set-Cookie", &format!("vid=v{n}; Path=/"))
            }
            _ => Reply::text("OK"),
        }
    }))
}

fn on(requests: &[Recorded], path_prefix: &str) -> Vec<Recorded> {
    requests
        .iter()
        .filter(|r| r.path.starts_with(path_prefix))
        .cloned()
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_generated_plan_sends_what_it_says() {
    let jmeter = JMeter::find();
    let server = functional_target();
    let plan = functional_plan(server.port());
    validate::check_plan(&plan, &Limits::default(), 0).expect("a valid plan");
    let dir = tempfile::tempdir().unwrap();
    let jmx = write_plan(
        dir.path(),
        &generate(&plan),
        &[
            ("users.csv", "alice;pw1\nbob;pw 2\ncarol;pw3\n".as_bytes()),
            ("pages.tsv", b"page\tlang\nhome\ten\nabout\tfr\n"),
        ],
    );
    let run = jmeter.run(dir.path(), &jmx, &[], RUN_TIMEOUT);
    eprintln!("functional JMeter run: {:?}", run.elapsed);
    let all = server.requests();
    let seen: Vec<String> = all
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();

    // Disabled thread group, controller and sampler send nothing; the CSV
    // files end both threads: 3 × 3 + 2 × 2 requests.
    assert!(on(&all, "/disabled").is_empty(), "{seen:#?}");
    assert_eq!(all.len(), 13, "{seen:#?}");

    let logins = on(&all, "/login");
    let profiles = on(&all, "/users/");
    let updates = on(&all, "/update");
    assert_eq!((logins.len(), profiles.len(), updates.len()), (3, 3, 3));
    let rows = [("alice", "pw1"), ("bob", "pw 2"), ("carol", "pw3")];
    let mut previous_sid: Option<String> = None;
    for (i, (user, password)) in rows.iter().enumerate() {
        let login = &logins[i];
        // One CSV row per iteration, ';' honoured; the JSON body as written
        // with ${vars} resolved, UTF-8 as the content encoding says.
        let body: serde_json::Value = serde_json::from_str(&login.body_text()).unwrap();
        assert_eq!(body["user"], *user);
        assert_eq!(body["password"], *password);
        assert_eq!(body["note"], "é");
        // The header set, with variables resolved.
        assert!(
            login
                .header("Content-Type")
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(login.header("X-User"), Some(*user));
        assert_eq!(login.header("X-Env"), Some("staging"));
        // Cookies are kept across iterations in this group.
        assert_eq!(login.cookie("sid"), previous_sid, "login {i}");

        let id = 100 + login.seq;
        let sid = format!("{user}-{id}");
        let profile = &profiles[i];
        // Regex extractor -> path, JSON extractor -> header.
        assert_eq!(profile.path, format!("/users/{id}/profile"));
        assert_eq!(
            profile.header("Authorization"),
            Some(format!("Bearer t-{user}").as_str())
        );
        assert_eq!(profile.query_pairs(), pairs(&[("a", "1"), ("b", "x y&z")]));
        assert_eq!(profile.cookie("sid"), Some(sid.clone()));
        assert_eq!(
            profile.header("X-User"),
            None,
            "only the sampler's own header set"
        );

        let update = &updates[i];
        assert_eq!(update.method, "POST");
        assert!(
            update
                .header("Content-Type")
                .unwrap()
                .starts_with("application/x-www-form-urlencoded"),
            "{:?}",
            update.headers
        );
        assert_eq!(update.form(), pairs(&[("name", user), ("note", "a&b c")]));
        previous_sid = Some(sid);
    }

    let visits = on(&all, "/visit/");
    let agains = on(&all, "/again");
    assert_eq!(visits.len(), 2);
    assert_eq!(visits[0].path, "/visit/home");
    assert_eq!(visits[0].query_pairs(), pairs(&[("lang", "en")]));
    assert_eq!(visits[1].path, "/visit/about");
    assert_eq!(visits[1].query_pairs(), pairs(&[("lang", "fr")]));
    // Cleared each iteration: the second visit does not bring the first's.
    assert_eq!(visits[1].cookie("vid"), None);
    for (visit, again) in visits.iter().zip(&agains) {
        assert!(visit.cookies().is_empty(), "{:?}", visit.headers);
        let id = 100 + visit.seq;
        assert_eq!(again.cookie("vid"), Some(format!("v{id}")));
    }

    // The assertions: contains and equals pass, the matches one fails.
    assert_eq!(run.successes("login"), [true; 3]);
    assert_eq!(run.successes("profile"), [true; 3]);
    assert_eq!(run.successes("update"), [false; 3]);
    let failure = &run.samples_of("update")[0]["failureMessage"];
    assert!(failure.contains("nope"), "{failure}");
    assert_eq!(run.successes("visit"), [true; 2]);
}

#[test]
fn a_prepared_plan_holds_the_target_rate_over_two_thread_groups() {
    let jmeter = JMeter::find();
    let server = TargetServer::start(Arc::new(|_| Reply::text("OK")));
    let group = |name: &str| ThreadGroup {
        name: name.into(),
        cookies: false,
        controllers: vec![Controller {
            name: "c".into(),
            enabled: true,
            samplers: vec![sampler(name, Method::Get, &format!("/tps/{name}"))],
        }],
        ..ThreadGroup::default()
    };
    let plan = TestPlan {
        name: "rate".into(),
        variables: vec![
            var("host", "127.0.0.1"),
            var("port", &server.port().to_string()),
        ],
        thread_groups: vec![group("a"), group("b")],
        // Saved with another rate and duration: the run's -J values win.
        run: RunSettings {
            load: Load::Tps { tps: 2.0 },
            duration_secs: 600,
            ..RunSettings::default()
        },
        ..TestPlan::default()
    };
    let settings = RunSettings {
        load: Load::Tps { tps: 20.0 },
        duration_secs: 8,
        generators: 1,
        ..RunSettings::default()
    };
    let sizing = Sizing {
        expected_rt_ms: 100,
        max_threads_per_generator: 50,
    };
    let prepared = prepare(&generate(&plan), &settings, &sizing).unwrap();
    assert_eq!(prepared.notes, vec![]);
    let props = prepared.properties(0);
    // 10/s per group × 0.1 s × 1.2 -> 2 threads each.
    assert_eq!(props.threads, 2);
    assert_eq!(props.throughput_per_min, Some(1200.0));
    // The file's defaults are another run's: only -J makes this one.
    let other = RunSettings {
        load: Load::Tps { tps: 3.0 },
        duration_secs: 120,
        ..settings.clone()
    };
    let file = prepare(&generate(&plan), &other, &sizing).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jmx = write_plan(dir.path(), &file.jmx, &[]);
    let run = jmeter.run(dir.path(), &jmx, &props.to_args(), RUN_TIMEOUT);
    let requests = server.requests();
    let a = on(&requests, "/tps/a").len();
    let b = on(&requests, "/tps/b").len();
    let total = requests.len();
    let span = match (requests.first(), requests.last()) {
        (Some(f), Some(l)) => l.at.duration_since(f.at),
        _ => Duration::ZERO,
    };
    eprintln!(
        "TPS run: {total} requests ({a} + {b}) in {span:?} of load, {:?} with JMeter's start; target 20/s for 8 s",
        run.elapsed
    );
    // One schedule for the whole plan: 160 in 8 s, give or take.
    assert!((120..=200).contains(&total), "{total} requests");
    assert!(a >= 30 && b >= 30, "both groups share the rate: {a} + {b}");
    // The duration came from -J (8 s), not the file (120 s).
    assert!(
        span >= Duration::from_secs(6) && span <= Duration::from_secs(10),
        "{span:?}"
    );
}

/// The GUI-saved file of loadplan's tests, with the users file beside it.
fn shop_files() -> (Vec<u8>, Vec<u8>) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadplan/tests/data");
    (
        std::fs::read(data.join("shop-gui-5.6.jmx")).unwrap(),
        std::fs::read(data.join("users.csv")).unwrap(),
    )
}

fn shop_target() -> TargetServer {
    TargetServer::start(Arc::new(|r: &Recorded| match r.path.as_str() {
        "/login" => {
            let body: serde_json::Value =
                serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
            Reply::json(&format!(
                r#"{{"token":"t-{}"}}"#,
                body["user"].as_str().unwrap_or("?")
            ))
        }
        "/orders" => Reply::json(r#"{"order": 17}"#),
        "/orders/17" => Reply::text("order 17"),
        _ => Reply::text("?"),
    }))
}

fn by_path(requests: &[Recorded]) -> HashMap<String, Vec<Recorded>> {
    let mut m: HashMap<String, Vec<Recorded>> = HashMap::new();
    for r in requests {
        m.entry(r.path.clone()).or_default().push(r.clone());
    }
    m
}

#[test]
fn a_gui_saved_plan_runs_after_import_and_generate() {
    let jmeter = JMeter::find();
    let server = shop_target();
    let (jmx, users) = shop_files();
    let mut plan = import(&jmx).unwrap().plan;
    // What a user would set in the editor: a short run.
    plan.run.duration_secs = 3;
    let dir = tempfile::tempdir().unwrap();
    let path = write_plan(dir.path(), &generate(&plan), &[("users.csv", &users)]);
    let args = vec![
        "-Jhost=127.0.0.1".to_string(),
        format!("-Jport={}", server.port()),
    ];
    let run = jmeter.run(dir.path(), &path, &args, RUN_TIMEOUT);
    eprintln!("imported GUI plan JMeter run: {:?}", run.elapsed);
    let m = by_path(&server.requests());
    let (logins, orders, order) = (&m["/login"], &m["/orders"], &m["/orders/17"]);
    assert!(!logins.is_empty() && !orders.is_empty() && !order.is_empty());
    assert!(!m.contains_key("/old"), "the disabled sampler stays off");
    for l in logins {
        // Group headers merged with the sampler's, the sampler's Accept
        // winning.
        assert_eq!(l.header("Accept"), Some("*/*"));
        assert_eq!(l.header("User-Agent"), Some("shop-test"));
        assert_eq!(l.header("Content-Type"), Some("application/json"));
    }
    for o in orders {
        let q = o.query_pairs();
        assert_eq!(
            q[0],
            ("status".into(), "open or paid".into()),
            "{}",
            o.query
        );
        let user = &q[1].1;
        assert!(user == "alice" || user == "bob", "{q:?}");
        assert_eq!(
            o.header("Authorization"),
            Some(format!("Bearer t-{user}").as_str())
        );
        assert_eq!(o.header("Accept"), Some("application/json"));
    }
    // The regex extractor's id reached the path, and the equals assertion
    // with ${orderId} holds.
    assert!(run.successes("GET /orders/{id}").iter().all(|&s| s));
    assert!(run.successes("POST /login").iter().all(|&s| s));
}

#[test]
fn an_uploaded_gui_plan_runs_prepared_for_its_duration() {
    let jmeter = JMeter::find();
    let server = shop_target();
    let (jmx, users) = shop_files();
    let settings = RunSettings {
        load: Load::Threads { threads: 3 },
        duration_secs: 3,
        ..RunSettings::default()
    };
    let prepared = prepare(&jmx, &settings, &Sizing::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The uploaded file names users.csv beside itself.
    let plan_dir = dir.path().join("plan");
    std::fs::create_dir_all(&plan_dir).unwrap();
    std::fs::write(plan_dir.join("users.csv"), &users).unwrap();
    std::fs::write(plan_dir.join("upload.jmx"), &prepared.jmx).unwrap();
    let mut args = prepared.properties(0).to_args();
    args.push("-Jhost=127.0.0.1".into());
    args.push(format!("-Jport={}", server.port()));
    let run = jmeter.run(dir.path(), &plan_dir.join("upload.jmx"), &args, RUN_TIMEOUT);
    eprintln!("prepared GUI plan JMeter run: {:?}", run.elapsed);
    let requests = server.requests();
    let threads: std::collections::HashSet<&String> = run
        .samples
        .iter()
        .filter_map(|s| s.get("threadName"))
        .collect();
    // 3 threads from -J; the file's 2 loops no longer end it: with a
    // 300 ms think time per iteration, 3 s makes several iterations each.
    assert_eq!(threads.len(), 3, "{threads:?}");
    let logins = requests.iter().filter(|r| r.path == "/login").count();
    assert!(logins > 6, "{logins} logins in 3 s with 3 threads");
    // The JSR223 sampler of the uploaded file ran too: all of JMeter stays.
    assert!(!run.samples_of("calc").is_empty());
}
