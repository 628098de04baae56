//! The web UI and JSON API over real HTTP against an in-process controller:
//! the permission matrix (every route x anonymous / user in the group /
//! user outside it / admin, with the exact status), CSRF, sessions, the
//! login rate limit, bad input, credentials never leaving the controller,
//! the URL prefix and HTTPS.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use controller::Controller;
use controller::config::Settings;
use reqwest::Method;
use serde_json::{Value, json};

const SERVER_PASSWORD: &str = "S3cr3t-Pa55word!-never-shown";

fn settings(dir: &Path) -> Settings {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    s.gateway.listen = "127.0.0.1:0".parse().unwrap();
    s.web.listen = "127.0.0.1:0".parse().unwrap();
    s
}

async fn start(s: &Settings) -> Controller {
    certs::tls::install_default_provider();
    Controller::start(s).await.unwrap()
}

fn client() -> reqwest::Client {
    certs::tls::install_default_provider();
    #[allow(clippy::disallowed_methods)] // the provider is installed just above
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A logged-in browser: its session cookie and CSRF token.
#[derive(Clone, Debug)]
struct Session {
    cookie: String,
    csrf: String,
}

struct Web {
    base: String,
    http: reqwest::Client,
}

impl Web {
    fn new(addr: SocketAddr, prefix: &str) -> Web {
        Web {
            base: format!("http://{addr}{prefix}"),
            http: client(),
        }
    }

    async fn login(&self, name: &str, password: &str) -> Session {
        let r = self
            .http
            .post(format!("{}/api/session", self.base))
            .json(&json!({ "name": name, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login of {name}");
        let cookie = set_cookie(&r, "mp_session").expect("session cookie");
        let body: Value = r.json().await.unwrap();
        Session {
            cookie,
            csrf: body["csrf"].as_str().unwrap().to_string(),
        }
    }

    /// A request as `who` (None: anonymous), with the CSRF header when
    /// logged in.
    async fn call(
        &self,
        who: Option<&Session>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(s) = who {
            rb = rb
                .header("Cookie", format!("mp_session={}", s.cookie))
                .header("X-CSRF-Token", &s.csrf);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        rb.send().await.unwrap()
    }

    async fn json(&self, who: &Session, method: Method, path: &str, body: Option<&Value>) -> Value {
        let r = self.call(Some(who), method.clone(), path, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    async fn text(&self, who: &Session, path: &str) -> String {
        self.call(Some(who), Method::GET, path, None)
            .await
            .text()
            .await
            .unwrap()
    }
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_string())
        })
}

fn set_cookie_attrs(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_default()
        .to_string()
}

fn add_user(ctl: &Controller, name: &str, password: &str, admin: bool) -> i64 {
    controller::auth::create_user(
        &ctl.inventory,
        &controller::inventory::model::parse_user_name(name).unwrap(),
        password,
        admin,
    )
    .unwrap()
}

/// The estate every test starts from: groups A and B (alice in A, bob in
/// B), a room, server `sa` in A (with a password) and `sb` in B.
struct World {
    ctl: Controller,
    web: Web,
    admin: Session,
    alice: Session,
    bob: Session,
    ga: i64,
    gb: i64,
    room: i64,
    sa: i64,
    sb: i64,
    alice_id: i64,
    bob_id: i64,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(&settings(dir.path())).await;
    add_user(&ctl, "root", "admin password 1", true);
    let alice_id = add_user(&ctl, "alice", "alice password", false);
    let bob_id = add_user(&ctl, "bob", "bob password 1", false);
    let web = Web::new(ctl.http_addr, "");
    let admin = web.login("root", "admin password 1").await;
    let ga = web
        .json(
            &admin,
            Method::POST,
            "/api/groups",
            Some(&json!({"name": "A", "app_identifier": "shop-api"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let gb = web
        .json(
            &admin,
            Method::POST,
            "/api/groups",
            Some(&json!({"name": "B"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let room = web
        .json(
            &admin,
            Method::POST,
            "/api/rooms",
            Some(&json!({"name": "R1", "purpose": "application"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let server = |name: &str, g: i64, addr: &str| {
        json!({
            "name": name, "group_id": g, "room_id": room, "address": addr,
            // Port 1: nothing listens, so a probe fails fast (502).
            "ssh_port": 1, "ssh_user": "ops",
            "credential": {"kind": "password", "secret": SERVER_PASSWORD},
        })
    };
    let sa = web
        .json(
            &admin,
            Method::POST,
            "/api/servers",
            Some(&server("sa", ga, "127.0.0.1")),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let sb = web
        .json(
            &admin,
            Method::POST,
            "/api/servers",
            Some(&server("sb", gb, "127.0.0.2")),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    web.json(
        &admin,
        Method::PUT,
        &format!("/api/groups/{ga}/members/{alice_id}"),
        None,
    )
    .await;
    web.json(
        &admin,
        Method::PUT,
        &format!("/api/groups/{gb}/members/{bob_id}"),
        None,
    )
    .await;
    let alice = web.login("alice", "alice password").await;
    let bob = web.login("bob", "bob password 1").await;
    World {
        ctl,
        web,
        admin,
        alice,
        bob,
        ga,
        gb,
        room,
        sa,
        sb,
        alice_id,
        bob_id,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_each_kind_of_caller_exactly() {
    let w = world().await;
    let web = &w.web;
    let admin = &w.admin;
    // Victims for the destructive rows, so each row changes only itself.
    // Alice belongs to the victim group and to the membership group, so
    // she sees them (403 on change) while bob does not (404).
    let vg = web
        .json(
            admin,
            Method::POST,
            "/api/groups",
            Some(&json!({"name": "victim"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    web.json(
        admin,
        Method::PUT,
        &format!("/api/groups/{vg}/members/{}", w.alice_id),
        None,
    )
    .await;
    let vr = web
        .json(
            admin,
            Method::POST,
            "/api/rooms",
            Some(&json!({"name": "victim", "purpose": "middleware"})),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let vs = web
        .json(
            admin,
            Method::POST,
            "/api/servers",
            Some(
                &json!({"name": "victim", "group_id": w.ga, "room_id": w.room,
                         "address": "10.9.9.9", "ssh_user": "ops"}),
            ),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let carol = add_user(&w.ctl, "carol", "carol password", false);
    let vu = add_user(&w.ctl, "victim", "victim password", false);
    let (ga, sa, sb, room) = (w.ga, w.sa, w.sb, w.room);
    let deploy_monitor = json!({"role": "monitor"});
    let bad_role = json!({"role": "database"});

    let group_body = json!({"name": "A", "app_identifier": "shop-api"});
    let new_group = json!({"name": "new group"});
    let room_body = json!({"name": "R1", "purpose": "application"});
    let new_room = json!({"name": "new room", "purpose": "load_testing"});
    let server_body = json!({"name": "sa", "group_id": ga, "room_id": room, "address": "127.0.0.1",
                             "ssh_port": 1, "ssh_user": "ops"});
    let new_server = json!({"name": "new server", "group_id": ga, "room_id": room,
                            "address": "10.1.1.1", "ssh_user": "ops"});
    let new_user = json!({"name": "dave", "password": "dave password"});
    let user_update = json!({"admin": false, "disabled": false});
    let unnamed_plan = json!({"name": ""});
    let bad_rules = json!({"cpu_busy_above_pct": 150.0});
    let bad_recipients = json!({"recipients": ["not an address"]});

    use Method as M;
    // (method, path, body, [anonymous, alice (in group A), bob (not), admin])
    let rows: Vec<(Method, String, Option<&Value>, [u16; 4])> = vec![
        // pages
        (M::GET, "/".into(), None, [303, 303, 303, 303]),
        (M::GET, "/login".into(), None, [200, 303, 303, 303]),
        (M::GET, "/servers".into(), None, [303, 200, 200, 200]),
        (M::GET, "/servers/new".into(), None, [303, 403, 403, 200]),
        (
            M::GET,
            format!("/servers/{sa}/edit"),
            None,
            [303, 403, 404, 200],
        ),
        (
            M::GET,
            "/servers/999999/edit".into(),
            None,
            [303, 404, 404, 404],
        ),
        (M::GET, "/groups".into(), None, [303, 403, 403, 200]),
        (M::GET, format!("/groups/{ga}"), None, [303, 403, 404, 200]),
        (
            M::GET,
            format!("/servers/{sa}/terminal"),
            None,
            [303, 200, 404, 200],
        ),
        (
            M::GET,
            format!("/servers/{sa}/sessions"),
            None,
            [303, 403, 404, 200],
        ),
        (
            M::GET,
            "/sessions/nosuchsession".into(),
            None,
            [303, 403, 403, 404],
        ),
        (M::GET, "/rooms".into(), None, [303, 403, 403, 200]),
        (M::GET, "/users".into(), None, [303, 403, 403, 200]),
        // load-test plans: every signed-in user
        (M::GET, "/plans".into(), None, [303, 200, 200, 200]),
        (M::GET, "/plans/999999".into(), None, [303, 404, 404, 404]),
        (M::GET, "/api/plans".into(), None, [401, 200, 200, 200]),
        (
            M::GET,
            "/api/plans/999999".into(),
            None,
            [401, 404, 404, 404],
        ),
        (
            M::POST,
            "/api/plans".into(),
            Some(&unnamed_plan),
            [401, 422, 422, 422],
        ),
        // load-test tasks: every signed-in user
        (M::GET, "/tasks".into(), None, [303, 200, 200, 200]),
        (M::GET, "/tasks/999999".into(), None, [303, 404, 404, 404]),
        (M::GET, "/api/tasks".into(), None, [401, 200, 200, 200]),
        (
            M::GET,
            "/api/tasks/999999".into(),
            None,
            [401, 404, 404, 404],
        ),
        (
            M::POST,
            "/api/plans/999999/run".into(),
            None,
            [401, 404, 404, 404],
        ),
        (
            M::POST,
            "/api/tasks/999999/stop".into(),
            None,
            [401, 404, 404, 404],
        ),
        (
            M::GET,
            "/api/tasks/999999/series".into(),
            None,
            [401, 404, 404, 404],
        ),
        (
            M::GET,
            "/api/tasks/999999/live".into(),
            None,
            [401, 404, 404, 404],
        ),
        (
            M::GET,
            "/api/rooms/999999/generators".into(),
            None,
            [401, 200, 200, 200],
        ),
        (M::GET, "/static/app.js".into(), None, [200, 200, 200, 200]),
        (
            M::GET,
            "/static/vendor/uPlot.iife.min.js".into(),
            None,
            [200, 200, 200, 200],
        ),
        (M::GET, "/static/nope.js".into(), None, [404, 404, 404, 404]),
        (M::GET, "/healthz".into(), None, [200, 200, 200, 200]),
        (M::GET, "/no/such/page".into(), None, [404, 404, 404, 404]),
        // session
        (M::GET, "/api/session".into(), None, [401, 200, 200, 200]),
        // groups
        (M::GET, "/api/groups".into(), None, [401, 200, 200, 200]),
        (
            M::POST,
            "/api/groups".into(),
            Some(&new_group),
            [401, 403, 403, 201],
        ),
        (
            M::GET,
            format!("/api/groups/{ga}"),
            None,
            [401, 200, 404, 200],
        ),
        (
            M::PUT,
            format!("/api/groups/{ga}"),
            Some(&group_body),
            [401, 403, 404, 200],
        ),
        (
            M::DELETE,
            format!("/api/groups/{vg}"),
            None,
            [401, 403, 404, 204],
        ),
        (
            M::GET,
            format!("/api/groups/{ga}/members"),
            None,
            [401, 403, 404, 200],
        ),
        (
            M::PUT,
            format!("/api/groups/{ga}/members/{carol}"),
            None,
            [401, 403, 404, 204],
        ),
        (
            M::DELETE,
            format!("/api/groups/{ga}/members/{carol}"),
            None,
            [401, 403, 404, 204],
        ),
        // rooms
        (M::GET, "/api/rooms".into(), None, [401, 200, 200, 200]),
        (
            M::POST,
            "/api/rooms".into(),
            Some(&new_room),
            [401, 403, 403, 201],
        ),
        (
            M::GET,
            format!("/api/rooms/{room}"),
            None,
            [401, 200, 200, 200],
        ),
        (
            M::PUT,
            format!("/api/rooms/{room}"),
            Some(&room_body),
            [401, 403, 403, 200],
        ),
        (
            M::DELETE,
            format!("/api/rooms/{vr}"),
            None,
            [401, 403, 403, 204],
        ),
        // servers
        (M::GET, "/api/servers".into(), None, [401, 200, 200, 200]),
        (
            M::POST,
            "/api/servers".into(),
            Some(&new_server),
            [401, 403, 403, 201],
        ),
        (
            M::GET,
            format!("/api/servers/{sa}"),
            None,
            [401, 200, 404, 200],
        ),
        (
            M::GET,
            "/api/servers/999999".into(),
            None,
            [401, 404, 404, 404],
        ),
        (
            M::PUT,
            format!("/api/servers/{sa}"),
            Some(&server_body),
            [401, 403, 404, 200],
        ),
        (
            M::DELETE,
            format!("/api/servers/{vs}"),
            None,
            [401, 403, 404, 204],
        ),
        (
            M::POST,
            format!("/api/servers/{sa}/probe"),
            None,
            [401, 502, 404, 502],
        ),
        (
            M::DELETE,
            format!("/api/servers/{sa}/host-key"),
            None,
            [401, 403, 404, 204],
        ),
        (
            M::PUT,
            format!("/api/servers/{sa}/agents/nosuchagent"),
            None,
            [401, 403, 404, 404],
        ),
        // the shell and files (sa's SSH port is closed: 502 once allowed);
        // a plain GET is not a websocket handshake (400) once logged in
        (
            M::GET,
            format!("/api/servers/{sa}/shell"),
            None,
            [401, 400, 400, 400],
        ),
        (
            M::GET,
            format!("/api/servers/{sa}/sessions"),
            None,
            [401, 403, 404, 200],
        ),
        (
            M::GET,
            "/api/recordings/nosuchsession".into(),
            None,
            [401, 403, 403, 404],
        ),
        (
            M::GET,
            format!("/api/servers/{sa}/files?path=/etc/hostname"),
            None,
            [401, 502, 404, 502],
        ),
        (
            M::GET,
            format!("/api/servers/{sa}/files?path=relative"),
            None,
            [401, 422, 404, 422],
        ),
        (
            M::POST,
            format!("/api/servers/{sa}/files?dir=/tmp"),
            None,
            [401, 400, 400, 400],
        ),
        // agent deployment (the jobs run and fail in the background: the
        // servers' SSH ports are closed)
        (
            M::POST,
            format!("/api/servers/{sa}/deploy"),
            Some(&deploy_monitor),
            [401, 403, 404, 202],
        ),
        (
            M::POST,
            format!("/api/servers/{sb}/undeploy"),
            Some(&deploy_monitor),
            [401, 404, 403, 202],
        ),
        (
            M::POST,
            format!("/api/servers/{sb}/deploy"),
            Some(&bad_role),
            [401, 404, 403, 422],
        ),
        (
            M::GET,
            "/api/jobs/nosuchjob".into(),
            None,
            [401, 403, 403, 404],
        ),
        (M::GET, "/api/packages".into(), None, [401, 403, 403, 200]),
        (M::POST, "/api/packages".into(), None, [401, 400, 400, 400]),
        (
            M::GET,
            "/packages/agent-monitor-9-linux-amd64.tar.gz".into(),
            None,
            [404, 404, 404, 404],
        ),
        (M::GET, "/jobs/nosuchjob".into(), None, [303, 403, 403, 404]),
        (M::GET, "/api/tokens".into(), None, [401, 403, 403, 200]),
        (
            M::POST,
            "/api/tokens".into(),
            Some(&deploy_monitor),
            [401, 403, 403, 201],
        ),
        (M::GET, "/tokens".into(), None, [303, 403, 403, 200]),
        // users
        (M::GET, "/api/users".into(), None, [401, 403, 403, 200]),
        (
            M::POST,
            "/api/users".into(),
            Some(&new_user),
            [401, 403, 403, 201],
        ),
        (
            M::GET,
            format!("/api/users/{carol}"),
            None,
            [401, 403, 403, 200],
        ),
        (
            M::PUT,
            format!("/api/users/{carol}"),
            Some(&user_update),
            [401, 403, 403, 200],
        ),
        (
            M::DELETE,
            format!("/api/users/{vu}"),
            None,
            [401, 403, 403, 204],
        ),
        // monitoring
        (M::GET, "/api/agents".into(), None, [401, 403, 403, 200]),
        (M::GET, "/api/hosts".into(), None, [401, 200, 200, 200]),
        (
            M::GET,
            "/api/hosts/nosuchhost/series?fields=cpu.busy_pct".into(),
            None,
            [401, 404, 404, 200],
        ),
        (
            M::GET,
            "/api/series/mean?field=cpu.busy_pct".into(),
            None,
            [401, 200, 200, 200],
        ),
        (M::GET, "/api/alerts".into(), None, [401, 200, 200, 200]),
        (
            M::GET,
            "/api/alerts/settings".into(),
            None,
            [401, 403, 403, 200],
        ),
        (
            M::PUT,
            "/api/alerts/rules".into(),
            Some(&bad_rules),
            [401, 403, 403, 422],
        ),
        (
            M::PUT,
            "/api/alerts/recipients".into(),
            Some(&bad_recipients),
            [401, 403, 403, 422],
        ),
        (
            M::POST,
            "/api/alerts/test-mail".into(),
            None,
            [401, 403, 403, 409],
        ),
        (M::GET, "/overview".into(), None, [303, 403, 403, 200]),
        (M::GET, "/monitor".into(), None, [303, 200, 200, 200]),
        (M::GET, "/alerts".into(), None, [303, 200, 200, 200]),
        (
            M::GET,
            "/api/metrics/status".into(),
            None,
            [401, 403, 403, 200],
        ),
        (
            M::GET,
            "/api/no/such/route".into(),
            None,
            [404, 404, 404, 404],
        ),
    ];
    let callers: [(&str, Option<&Session>); 4] = [
        ("anonymous", None),
        ("alice (in group)", Some(&w.alice)),
        ("bob (not in group)", Some(&w.bob)),
        ("admin", Some(admin)),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, expected) in &rows {
        for ((who, session), want) in callers.iter().zip(expected) {
            let r = web.call(*session, method.clone(), path, *body).await;
            let got = r.status().as_u16();
            if got != *want {
                let text = r.text().await.unwrap_or_default();
                wrong.push(format!(
                    "{method} {path} as {who}: got {got}, want {want} ({text})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn users_see_only_their_groups_and_never_a_credential() {
    let w = world().await;
    let web = &w.web;
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(web.json(&w.alice, Method::GET, "/api/servers", None).await),
        ["sa"]
    );
    assert_eq!(
        names(web.json(&w.bob, Method::GET, "/api/servers", None).await),
        ["sb"]
    );
    let r = web
        .call(
            Some(&w.alice),
            Method::GET,
            &format!("/api/servers/{}", w.sb),
            None,
        )
        .await;
    assert_eq!(r.status(), 404, "alice reached a server outside her groups");
    assert_eq!(
        names(web.json(&w.admin, Method::GET, "/api/servers", None).await),
        ["sa", "sb"]
    );
    assert_eq!(
        names(web.json(&w.alice, Method::GET, "/api/groups", None).await),
        ["A"]
    );
    let page = web.text(&w.alice, "/servers").await;
    assert!(page.contains("data-server=\"sa\"") && !page.contains("data-server=\"sb\""));
    assert!(
        !page.contains("href=\"/users\""),
        "a user sees admin navigation"
    );
    // Filters.
    let only_b = web
        .json(
            &w.admin,
            Method::GET,
            &format!("/api/servers?group={}", w.gb),
            None,
        )
        .await;
    assert_eq!(names(only_b), ["sb"]);
    let page = web
        .text(&w.admin, &format!("/servers?group={}&room=", w.ga))
        .await;
    assert!(page.contains("data-server=\"sa\"") && !page.contains("data-server=\"sb\""));

    // Moving bob into A shows him sa on his next request (no re-login).
    web.json(
        &w.admin,
        Method::PUT,
        &format!("/api/groups/{}/members/{}", w.ga, w.bob_id),
        None,
    )
    .await;
    assert_eq!(
        names(web.json(&w.bob, Method::GET, "/api/servers", None).await),
        ["sa", "sb"]
    );

    // The credential: never in a response or page, never in clear on disk.
    let s = web
        .json(
            &w.admin,
            Method::GET,
            &format!("/api/servers/{}", w.sa),
            None,
        )
        .await;
    assert_eq!(s["credential_kind"], "password");
    let mut seen = String::new();
    for who in [&w.admin, &w.alice] {
        for path in [
            "/api/servers".to_string(),
            format!("/api/servers/{}", w.sa),
            "/servers".to_string(),
        ] {
            seen.push_str(&web.text(who, &path).await);
        }
    }
    seen.push_str(&web.text(&w.admin, &format!("/servers/{}/edit", w.sa)).await);
    assert!(seen.contains("sa"));
    assert!(
        !seen.contains(SERVER_PASSWORD),
        "the server password reached a client"
    );
    // ... but the controller itself can use it.
    assert_eq!(
        w.ctl
            .inventory
            .server_credential(w.sa, &w.ctl.vault)
            .unwrap(),
        Some(controller::inventory::model::Credential::Password(
            SERVER_PASSWORD.into()
        ))
    );
    let dir = w._dir.path().to_path_buf();
    w.ctl.stop().await;
    for f in ["inventory.db", "inventory.db-wal"] {
        let bytes = std::fs::read(dir.join(f)).unwrap_or_default();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(
            !hay.contains(SERVER_PASSWORD),
            "{f} holds the password in clear"
        );
        assert!(
            !hay.contains("alice password"),
            "{f} holds a login password in clear"
        );
    }
    let key = dir.join("master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let w = world().await;
    let web = &w.web;
    let a = &w.admin;
    let post = |path: &'static str, body: Value| async move {
        let r = web.call(Some(a), Method::POST, path, Some(&body)).await;
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let server = |name: &str, addr: &str, port: i64| {
        json!({"name": name, "group_id": w.ga, "room_id": w.room, "address": addr,
               "ssh_port": port, "ssh_user": "ops"})
    };
    let cases: Vec<(&'static str, Value, u16, &str)> = vec![
        ("/api/groups", json!({"name": ""}), 422, "must not be empty"),
        (
            "/api/groups",
            json!({"name": "   "}),
            422,
            "must not be empty",
        ),
        (
            "/api/groups",
            json!({"name": "x".repeat(65)}),
            422,
            "at most 64",
        ),
        (
            "/api/groups",
            json!({"name": "a", "app_identifier": "x"}),
            422,
            "at least 2",
        ),
        ("/api/groups", json!({"name": "a\u{0}b"}), 422, "control"),
        ("/api/groups", json!({"name": "A"}), 409, "already exists"),
        (
            "/api/groups",
            json!({"name": "C", "app_identifier": "shop-api"}),
            409,
            "identifier",
        ),
        ("/api/groups", json!({"name": 5}), 422, "invalid type"),
        (
            "/api/rooms",
            json!({"name": "R2", "purpose": "kitchen"}),
            422,
            "not a room purpose",
        ),
        (
            "/api/rooms",
            json!({"name": "r1", "purpose": "middleware"}),
            409,
            "already exists",
        ),
        (
            "/api/servers",
            server("s1", "999.1.1.1", 22),
            422,
            "not a valid IP",
        ),
        (
            "/api/servers",
            server("s1", "10.0.0", 22),
            422,
            "not a valid IP",
        ),
        (
            "/api/servers",
            server("s1", "bad host!", 22),
            422,
            "neither an IP",
        ),
        (
            "/api/servers",
            server("s1", "10.0.0.1", 0),
            422,
            "not a port",
        ),
        (
            "/api/servers",
            server("s1", "10.0.0.1", 70000),
            422,
            "not a port",
        ),
        (
            "/api/servers",
            server("SA", "10.0.0.1", 22),
            409,
            "already exists",
        ),
        ("/api/servers", server("s1", "127.0.0.1", 1), 409, "address"),
        (
            "/api/servers",
            json!({"name": "s1", "group_id": 999, "room_id": w.room, "address": "10.0.0.1", "ssh_user": "u"}),
            422,
            "no such group",
        ),
        (
            "/api/servers",
            json!({"name": "s1", "group_id": w.ga, "room_id": w.room, "address": "10.0.0.1", "ssh_user": "u",
                   "credential": {"kind": "private_key", "secret": "not a key"}}),
            422,
            "private key",
        ),
        (
            "/api/servers",
            json!({"name": "s1", "group_id": w.ga, "room_id": w.room, "address": "10.0.0.1", "ssh_user": "u",
                   "credential": {"kind": "token", "secret": "x"}}),
            422,
            "not a credential kind",
        ),
        (
            "/api/users",
            json!({"name": "eve", "password": "short"}),
            422,
            "at least 10",
        ),
        (
            "/api/users",
            json!({"name": "e v e", "password": "long enough pw"}),
            422,
            "only letters",
        ),
        (
            "/api/users",
            json!({"name": "ALICE", "password": "long enough pw"}),
            409,
            "already exists",
        ),
    ];
    let mut wrong = Vec::new();
    for (path, body, want, needle) in cases {
        let (got, v) = post(path, body.clone()).await;
        let msg = v["error"].as_str().unwrap_or("").to_string();
        if got != want || !msg.contains(needle) {
            wrong.push(format!(
                "POST {path} {body}: got {got} {msg:?}, want {want} containing {needle:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Malformed bodies.
    let raw = |ct: Option<&'static str>, body: &'static str| {
        let mut rb = web
            .http
            .post(format!("{}/api/groups", web.base))
            .header("Cookie", format!("mp_session={}", a.cookie))
            .header("X-CSRF-Token", &a.csrf)
            .body(body);
        if let Some(ct) = ct {
            rb = rb.header("Content-Type", ct);
        }
        rb.send()
    };
    assert_eq!(
        raw(Some("application/json"), "{not json")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(raw(None, "{\"name\":\"x\"}").await.unwrap().status(), 415);

    // Nothing of the above was stored.
    let groups = web.json(a, Method::GET, "/api/groups", None).await;
    assert_eq!(groups.as_array().unwrap().len(), 2);
    let servers = web.json(a, Method::GET, "/api/servers", None).await;
    assert_eq!(servers.as_array().unwrap().len(), 2);

    // In use: refused with the reason.
    let r = web
        .call(
            Some(a),
            Method::DELETE,
            &format!("/api/groups/{}", w.ga),
            None,
        )
        .await;
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("still has 1 server"));
    let r = web
        .call(
            Some(a),
            Method::DELETE,
            &format!("/api/rooms/{}", w.room),
            None,
        )
        .await;
    assert_eq!(r.status(), 409);
    let me = web.json(a, Method::GET, "/api/session", None).await["user"]["id"]
        .as_i64()
        .unwrap();
    let r = web
        .call(Some(a), Method::DELETE, &format!("/api/users/{me}"), None)
        .await;
    assert_eq!(r.status(), 409);
    let r = web
        .call(
            Some(a),
            Method::PUT,
            &format!("/api/users/{me}"),
            Some(&json!({"admin": false, "disabled": false})),
        )
        .await;
    assert_eq!(r.status(), 409, "the last admin demoted themselves");

    // Markup and SQL in names are data: stored as typed, escaped on pages.
    let evil = "<script>alert('x')</script>";
    let sql = "x'); DROP TABLE servers; --";
    let g = web
        .json(a, Method::POST, "/api/groups", Some(&json!({"name": evil})))
        .await;
    assert_eq!(g["name"], evil);
    let s = web
        .json(
            a,
            Method::POST,
            "/api/servers",
            Some(&server(sql, "10.7.7.7", 22)),
        )
        .await;
    assert_eq!(s["name"], sql);
    for path in [
        "/servers",
        "/groups",
        &format!("/groups/{}", g["id"]),
        "/users",
    ] {
        let page = web.text(a, path).await;
        assert!(
            !page.contains("<script>alert"),
            "{path} renders markup from a name"
        );
    }
    let page = web.text(a, "/groups").await;
    assert!(page.contains("&lt;script&gt;"), "escaped name missing");
    assert_eq!(
        web.json(a, Method::GET, "/api/servers", None)
            .await
            .as_array()
            .unwrap()
            .len(),
        3,
        "the SQL in a name did something"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn csrf_sessions_logout_and_the_login_rate_limit() {
    let w = world().await;
    let web = &w.web;
    let body = json!({"name": "X1"});
    let post = |cookie: &str, csrf: Option<&str>| {
        let mut rb = web
            .http
            .post(format!("{}/api/groups", web.base))
            .header("Cookie", format!("mp_session={cookie}"))
            .json(&body);
        if let Some(c) = csrf {
            rb = rb.header("X-CSRF-Token", c);
        }
        rb.send()
    };
    // A forged or missing CSRF token is refused; the session's own works.
    assert_eq!(post(&w.admin.cookie, None).await.unwrap().status(), 403);
    assert_eq!(
        post(&w.admin.cookie, Some("forged"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(&w.admin.cookie, Some(&w.alice.csrf))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(&w.admin.cookie, Some(&w.admin.csrf))
            .await
            .unwrap()
            .status(),
        201
    );

    // API tokens need no CSRF token (browsers never send them by themselves).
    let root = w
        .ctl
        .inventory
        .users()
        .unwrap()
        .into_iter()
        .find(|u| u.name == "root")
        .unwrap();
    let token = controller::auth::create_api_token(&w.ctl.inventory, root.id, "t").unwrap();
    let r = web
        .http
        .post(format!("{}/api/groups", web.base))
        .bearer_auth(&token)
        .json(&json!({"name": "X2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = web
        .http
        .get(format!("{}/api/servers", web.base))
        .bearer_auth("mpa_0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The login form: a forged form token is refused.
    let r = web
        .http
        .post(format!("{}/login", web.base))
        .header("Cookie", "mp_login=abc")
        .form(&[
            ("name", "root"),
            ("password", "admin password 1"),
            ("csrf", "abd"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, "mp_session").is_none());
    // With the form's own token it logs in, with a strict, HttpOnly cookie.
    let form = web
        .http
        .get(format!("{}/login", web.base))
        .send()
        .await
        .unwrap();
    let login_cookie = set_cookie(&form, "mp_login").unwrap();
    let html = form.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let r = web
        .http
        .post(format!("{}/login", web.base))
        .header("Cookie", format!("mp_login={login_cookie}"))
        .form(&[
            ("name", "root"),
            ("password", "admin password 1"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let attrs = set_cookie_attrs(&r, "mp_session");
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict"),
        "{attrs}"
    );
    assert!(
        !attrs.contains("Secure"),
        "Secure on plain HTTP would drop the cookie"
    );

    // Logout ends the session on the server, not only in the browser.
    let r = web
        .call(Some(&w.bob), Method::DELETE, "/api/session", None)
        .await;
    assert_eq!(r.status(), 204);
    let r = web
        .call(Some(&w.bob), Method::GET, "/api/servers", None)
        .await;
    assert_eq!(r.status(), 401);
    // ... and the logout form needs the CSRF token too.
    let r = web
        .http
        .post(format!("{}/logout", web.base))
        .header("Cookie", format!("mp_session={}", w.alice.cookie))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = web
        .http
        .post(format!("{}/logout", web.base))
        .header("Cookie", format!("mp_session={}", w.alice.cookie))
        .form(&[("csrf", w.alice.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        web.call(Some(&w.alice), Method::GET, "/api/session", None)
            .await
            .status(),
        401
    );

    // An expired session: the API says so, pages send to the login page.
    let s = web.login("bob", "bob password 1").await;
    w.ctl
        .inventory
        .touch_session(&controller::auth::secret_hash(&s.cookie), 1)
        .unwrap();
    let r = web.call(Some(&s), Method::GET, "/api/servers", None).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("expired"));
    let s = web.login("bob", "bob password 1").await;
    w.ctl
        .inventory
        .touch_session(&controller::auth::secret_hash(&s.cookie), 1)
        .unwrap();
    let r = web.call(Some(&s), Method::GET, "/servers", None).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?expired=1");

    // A disabled user's sessions end at once.
    let s = web.login("bob", "bob password 1").await;
    web.json(
        &w.admin,
        Method::PUT,
        &format!("/api/users/{}", w.bob_id),
        Some(&json!({"admin": false, "disabled": true})),
    )
    .await;
    assert_eq!(
        web.call(Some(&s), Method::GET, "/api/servers", None)
            .await
            .status(),
        401
    );

    // Five wrong passwords, then even the right one waits.
    for _ in 0..5 {
        let r = web
            .http
            .post(format!("{}/api/session", web.base))
            .json(&json!({"name": "alice", "password": "wrong password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = web
        .http
        .post(format!("{}/api/session", web.base))
        .json(&json!({"name": "alice", "password": "alice password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_prefix_is_honoured_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.web.prefix = "/ops".into();
    let ctl = start(&s).await;
    add_user(&ctl, "root", "admin password 1", true);
    let web = Web::new(ctl.http_addr, "/ops");
    let http = client();
    let at = |p: &str| format!("http://{}{p}", ctl.http_addr);
    assert_eq!(
        http.get(at("/ops/login")).send().await.unwrap().status(),
        200
    );
    assert_eq!(http.get(at("/login")).send().await.unwrap().status(), 404);
    let r = http.get(at("/ops/servers")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/ops/login");
    let admin = web.login("root", "admin password 1").await;
    let r = http
        .post(format!("{}/api/session", web.base))
        .json(&json!({"name": "root", "password": "admin password 1"}))
        .send()
        .await
        .unwrap();
    assert!(set_cookie_attrs(&r, "mp_session").contains("Path=/ops;"));
    let page = web.text(&admin, "/servers").await;
    assert!(page.contains("href=\"/ops/static/app.css"));
    assert!(page.contains("action=\"/ops/logout\""));
    assert!(page.contains("<meta name=\"prefix\" content=\"/ops\">"));
    ctl.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_serves_the_ui_with_secure_cookies() {
    use rustls_pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("ui.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("ui.key"), key.serialize_pem()).unwrap();
    let mut s = settings(&dir.path().join("data"));
    s.web.tls = Some(controller::config::TlsFiles {
        cert: dir.path().join("ui.crt"),
        key: dir.path().join("ui.key"),
    });
    let ctl = start(&s).await;
    add_user(&ctl, "root", "admin password 1", true);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let request = |req: String| {
        let connector = connector.clone();
        let addr = ctl.http_addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut tls = connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            tls.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).to_string()
        }
    };
    let r = request("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into())
        .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let body = r#"{"name":"root","password":"admin password 1"}"#;
    let r = request(format!(
        "POST /api/session HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let cookie_line = r
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: mp_session=")
        })
        .unwrap();
    assert!(cookie_line.contains("; Secure"), "{cookie_line}");
    // Plain HTTP to the TLS port gets nothing useful.
    let mut tcp = tokio::net::TcpStream::connect(ctl.http_addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
    ctl.stop().await;
}
