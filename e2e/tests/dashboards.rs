//! Monitoring dashboards end to end (issue 10): one in-process controller,
//! synthetic hosts speaking the real agent protocol with known samples
//! (`e2e::synthetic`), so every score, order and average is known in
//! advance. The JSON API is checked here (order, scores, filters,
//! permissions, averages, retention, bad parameters, alert settings with a
//! real SMTP server and a restart); the pages in Chromium
//! (`e2e/browser/monitoring.mjs`, screenshots of a failing step in
//! `target/browser-screenshots/monitoring/`), which also prints the frame
//! time of 2 000-point charts being redrawn (reported, not asserted).

use std::collections::BTreeSet;
use std::time::Duration;

use controller::alerts::mailer::SmtpSettings;
use controller::alerts::rules::AlertRules;
use e2e::inproc::{api_token, settings, start_controller};
use e2e::smtp::SmtpServer;
use e2e::synthetic::{SyntheticHost, now_ms, sample, score, with_app_port};
use e2e::{api, wait_for};
use reqwest::Method as M;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Seconds of 1 s history each host with data sends (ending now): a full
/// hour, so the default 1 h chart is full (1 800 points of 2 s), and the
/// 1 999 s custom range of the frame-time measurement has 1 s points.
const HISTORY_SECS: u64 = 3700;
const ADMIN: &str = "root";
const ADMIN_PASSWORD: &str = "root password 123";
const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "alice password 123";
const DAY_MS: i64 = 86_400_000;
const PREFIX: &str = "/ops";
/// The application port web-1's samples carry (the ports chart).
const APP_PORT: u16 = 8080;

/// One synthetic host of the estate and what it sends.
struct Spec {
    name: &'static str,
    /// Server it is linked to: (server name, group, room).
    server: (&'static str, &'static str, &'static str),
    /// cpu, io, net, mem-used percentages; `None` = never sends a sample.
    load: Option<(f32, f32, f32, f32)>,
}

const SPECS: &[Spec] = &[
    // score 53 (step 5)
    Spec {
        name: "web-1",
        server: ("web-1", "web", "r1"),
        load: Some((90.0, 20.0, 10.0, 50.0)),
    },
    // score 28 (step 3)
    Spec {
        name: "web-2",
        server: ("web-2", "web", "r1"),
        load: Some((20.0, 60.0, 0.0, 25.0)),
    },
    // score 40 (step 4)
    Spec {
        name: "db-1",
        server: ("db-1", "db", "r1"),
        load: Some((40.0, 40.0, 40.0, 60.0)),
    },
    // score 100 (step 10); its server is deleted after it sent data.
    Spec {
        name: "old-1",
        server: ("web-old", "web", "r1"),
        load: Some((100.0, 100.0, 100.0, 10.0)),
    },
    // score 10 (step 1); disconnects after sending: silent.
    Spec {
        name: "gone-1",
        server: ("db-2", "db", "r2"),
        load: Some((10.0, 10.0, 10.0, 30.0)),
    },
    // enrolled, never sends a sample.
    Spec {
        name: "fresh-1",
        server: ("db-3", "db", "r2"),
        load: None,
    },
];

fn spec(name: &str) -> &'static Spec {
    SPECS.iter().find(|s| s.name == name).expect("a host spec")
}

fn expected_score(name: &str) -> Option<f64> {
    spec(name)
        .load
        .map(|(c, i, n, _)| score(f64::from(c), f64::from(i), f64::from(n)))
}

fn step_of(v: f64) -> u64 {
    (v / 10.0).round().clamp(0.0, 10.0) as u64
}

/// What host `name` sends at `ts_ms` (`None` for a host without data).
fn host_sample(name: &str, ts_ms: u64) -> Option<protocol::metrics::HostSample> {
    let (c, i, n, m) = spec(name).load?;
    let s = sample(ts_ms, c, i, n, m);
    Some(if name == "web-1" {
        with_app_port(s, APP_PORT)
    } else {
        s
    })
}

/// Samples of host `name` over `n` seconds ending at `end_ms`.
fn host_history(name: &str, end_ms: u64, n: u64) -> Vec<protocol::metrics::HostSample> {
    (0..n)
        .filter_map(|k| host_sample(name, end_ms - (n - 1 - k) * 1000))
        .collect()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|h| h["agent_id"].as_str().expect("agent_id").to_string())
        .collect()
}

fn points(v: &Value) -> Vec<(i64, f64)> {
    v["points"]
        .as_array()
        .unwrap_or_else(|| panic!("points in {v}"))
        .iter()
        .map(|p| (p[0].as_i64().expect("ts"), p[1].as_f64().expect("value")))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.01
}

/// GET as the holder of `token`: status and body.
async fn get(base: &str, token: &str, path: &str) -> (u16, Value) {
    api(base, token, M::GET, path, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitoring_dashboards_show_known_hosts_in_order() {
    let started = std::time::Instant::now();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "127.0.0.1:0".parse().unwrap());
    // Batches are acknowledged once flushed: every second, not every 10.
    s.metrics.flush_secs = 1;
    // No rule fires on its own: the only mail is the test mail.
    s.alerts.rules = AlertRules {
        cpu_busy_above_pct: None,
        mem_available_below_pct: None,
        full_gc_min_interval_secs: None,
        silent_after_secs: None,
        ..AlertRules::default()
    };
    s.alerts.smtp = Some(SmtpSettings {
        timeout_secs: 5,
        ..smtp.settings("file@myplatform.test")
    });
    // Under a URL prefix, as behind a reverse proxy: every link and
    // request the pages make must carry it.
    s.web.prefix = PREFIX.into();
    let ctl = start_controller(&s).await;
    let base = format!("http://{}{PREFIX}", ctl.http_addr);
    let token = api_token(&ctl);

    // Users: the browser's admin, and alice in group web only.
    let user = |name: &str, password: &str, admin: bool| {
        let n = controller::inventory::model::parse_user_name(name).unwrap();
        controller::auth::create_user(&ctl.inventory, &n, password, admin).unwrap()
    };
    user(ADMIN, ADMIN_PASSWORD, true);
    let alice_id = user(ALICE, ALICE_PASSWORD, false);
    let alice = controller::auth::create_api_token(&ctl.inventory, alice_id, "e2e").unwrap();

    // Estate: groups, rooms, servers.
    let mut group_ids = std::collections::HashMap::new();
    for g in ["web", "db", "empty"] {
        let (st, v) = api(
            &base,
            &token,
            M::POST,
            "/api/groups",
            Some(json!({"name": g})),
        )
        .await;
        assert!(st == 200 || st == 201, "group {g}: {st} {v}");
        group_ids.insert(g, v["id"].as_i64().unwrap());
    }
    let mut room_ids = std::collections::HashMap::new();
    for r in ["r1", "r2"] {
        let (st, v) = api(
            &base,
            &token,
            M::POST,
            "/api/rooms",
            Some(json!({"name": r, "purpose": "application"})),
        )
        .await;
        assert!(st == 200 || st == 201, "room {r}: {st} {v}");
        room_ids.insert(r, v["id"].as_i64().unwrap());
    }
    let (st, v) = api(
        &base,
        &token,
        M::PUT,
        &format!("/api/groups/{}/members/{alice_id}", group_ids["web"]),
        None,
    )
    .await;
    assert!(st < 300, "alice into web: {st} {v}");

    // The hosts: enrolled over the real protocol, each linked to its server.
    let mut hosts = Vec::new();
    let mut server_ids = std::collections::HashMap::new();
    for (i, sp) in SPECS.iter().enumerate() {
        let h = SyntheticHost::enroll(&ctl, sp.name).await;
        let (server, group, room) = sp.server;
        let (st, v) = api(
            &base,
            &token,
            M::POST,
            "/api/servers",
            Some(
                json!({"name": server, "group_id": group_ids[group], "room_id": room_ids[room],
                        "address": format!("192.0.2.{}", 10 + i), "ssh_user": "root"}),
            ),
        )
        .await;
        assert_eq!(st, 201, "server {server}: {v}");
        let sid = v["id"].as_i64().unwrap();
        server_ids.insert(server, sid);
        let (st, v) = api(
            &base,
            &token,
            M::PUT,
            &format!("/api/servers/{sid}/agents/{}", h.agent_id),
            None,
        )
        .await;
        assert_eq!(st, 200, "link {} to {server}: {v}", sp.name);
        hosts.push(h);
    }
    let by_name: std::collections::HashMap<&'static str, String> = SPECS
        .iter()
        .zip(&hosts)
        .map(|(sp, h)| (sp.name, h.agent_id.clone()))
        .collect();
    let names: std::collections::HashMap<String, &'static str> =
        by_name.iter().map(|(n, id)| (id.clone(), *n)).collect();
    let id_of = |name: &str| -> String { by_name[name].clone() };
    let name_of = |id: &str| names.get(id).copied().unwrap_or("?");

    // History: HISTORY_SECS samples a second apart, the same instants on
    // every host, ending on the last whole second.
    let end_ms = now_ms() / 1000 * 1000 - 1000;
    let t0 = std::time::Instant::now();
    futures_util::future::join_all(hosts.iter_mut().filter_map(|h| {
        spec(&h.hostname).load.map(|_| {
            let samples = host_history(&h.hostname, end_ms, HISTORY_SECS);
            async move { h.send(&samples).await }
        })
    }))
    .await;
    eprintln!(
        "sent {HISTORY_SECS} s of history for 5 hosts in {:?}",
        t0.elapsed()
    );

    // Up to now: a host whose newest sample is 30 s old counts as silent.
    futures_util::future::join_all(hosts.iter_mut().map(|h| catch_up(h, true))).await;

    // gone-1 stops reporting; web-old is deleted (old-1 keeps its data).
    let gone_pos = hosts.iter().position(|h| h.hostname == "gone-1").unwrap();
    hosts.remove(gone_pos).disconnect();
    let (st, v) = api(
        &base,
        &token,
        M::DELETE,
        &format!("/api/servers/{}", server_ids["web-old"]),
        None,
    )
    .await;
    assert_eq!(st, 204, "deleting web-old: {v}");
    let gone = id_of("gone-1");
    wait_for(
        "gone-1 no longer connected",
        Duration::from_secs(15),
        || async {
            let (_, v) = get(&base, &token, "/api/hosts").await;
            v.as_array()?
                .iter()
                .find(|h| h["agent_id"] == gone.as_str())
                .filter(|h| h["connected"] == false)
                .map(|_| ())
        },
    )
    .await;

    // ---- /api/hosts: order, scores, steps ----------------------------------
    let expected_order: Vec<String> = ["old-1", "web-1", "db-1", "web-2", "gone-1", "fresh-1"]
        .iter()
        .map(|n| id_of(n))
        .collect();
    let (st, all) = get(&base, &token, "/api/hosts").await;
    assert_eq!(st, 200, "{all}");
    assert_eq!(
        ids(&all),
        expected_order,
        "host order (names: {:?})",
        ids(&all).iter().map(|i| name_of(i)).collect::<Vec<_>>()
    );
    for h in all.as_array().unwrap() {
        let id = h["agent_id"].as_str().unwrap();
        let name = name_of(id);
        assert_eq!(h["hostname"], name, "{h}");
        match expected_score(name) {
            Some(want) => {
                let got = &h["score"];
                assert!(
                    close(got["value"].as_f64().unwrap_or(-1.0), want),
                    "{name}: score {got}, want {want}"
                );
                assert_eq!(got["step"].as_u64(), Some(step_of(want)), "{name}: {got}");
                let (c, i, n, m) = spec(name).load.unwrap();
                assert!(
                    close(got["cpu_pct"].as_f64().unwrap(), f64::from(c)),
                    "{got}"
                );
                assert!(
                    close(got["io_pct"].as_f64().unwrap(), f64::from(i)),
                    "{got}"
                );
                assert!(
                    close(got["net_pct"].as_f64().unwrap(), f64::from(n)),
                    "{got}"
                );
                assert!(
                    close(got["mem_pct"].as_f64().unwrap(), f64::from(m)),
                    "{got}"
                );
                assert!(h["latest"]["cpu"].is_object(), "{name}: {h}");
                assert!(h["age_ms"].as_u64().is_some(), "{name}: {h}");
            }
            None => {
                assert!(h["score"].is_null(), "{name}: {h}");
                assert!(h["latest"].is_null(), "{name}: {h}");
                assert!(h["age_ms"].is_null(), "{name}: {h}");
            }
        }
        let connected = name != "gone-1";
        assert_eq!(h["connected"], connected, "{name}: {h}");
        if name == "gone-1" {
            assert_eq!(h["silent"], true, "a disconnected host is silent: {h}");
        }
        if ["web-1", "web-2", "db-1", "old-1"].contains(&name) {
            assert_eq!(h["silent"], false, "{name}: {h}");
        }
        let (server, group, room) = spec(name).server;
        if name == "old-1" {
            assert!(
                h["group"].is_null() && h["server_id"].is_null(),
                "old-1's server was deleted: {h}"
            );
        } else {
            assert_eq!(h["group"], group, "{name}: {h}");
            assert_eq!(h["room"], room, "{name}: {h}");
            assert_eq!(h["server_name"], server, "{name}: {h}");
            assert_eq!(h["server_id"].as_i64(), Some(server_ids[server]), "{h}");
        }
    }

    // Filters by group and room.
    let web = vec![id_of("web-1"), id_of("web-2")];
    let db = vec![id_of("db-1"), id_of("gone-1"), id_of("fresh-1")];
    for (query, want) in [
        ("group=web", web.clone()),
        ("group=db", db.clone()),
        ("room=r2", db[1..].to_vec()),
        ("group=web&room=r1", web.clone()),
        ("group=web&room=r2", vec![]),
        ("group=empty", vec![]),
        ("group=nosuchgroup", vec![]),
    ] {
        let (st, v) = get(&base, &token, &format!("/api/hosts?{query}")).await;
        assert_eq!(st, 200, "{query}: {v}");
        assert_eq!(ids(&v), want, "/api/hosts?{query}");
    }

    // alice sees group web only.
    let (st, v) = get(&base, &alice, "/api/hosts").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(ids(&v), web, "alice's hosts");
    let (st, v) = get(&base, &alice, "/api/hosts?group=db").await;
    assert_eq!((st, ids(&v)), (200, vec![]), "alice asking for group db");
    // The last 601 samples (from and end both included).
    let from = end_ms as i64 - 600_000;
    let to = end_ms as i64 + 1000;
    const N: usize = 601;
    let series_path = |id: &str, fields: &str| {
        format!("/api/hosts/{id}/series?fields={fields}&from={from}&to={to}&max_points=2000")
    };
    let (st, v) = get(&base, &alice, &series_path(&id_of("db-1"), "cpu.busy_pct")).await;
    assert_eq!(st, 404, "alice reading db-1's series: {v}");
    let (st, v) = get(&base, &alice, &series_path(&id_of("old-1"), "cpu.busy_pct")).await;
    assert_eq!(st, 404, "alice reading old-1 (no server) series: {v}");
    let (st, v) = get(&base, &alice, &series_path(&id_of("web-1"), "cpu.busy_pct")).await;
    assert_eq!(st, 200, "alice reading web-1's series: {v}");
    assert_eq!(points(&v["series"][0]).len(), N, "alice: web-1's points");

    // One host's series: exact values, one point a second.
    let (st, v) = get(
        &base,
        &token,
        &series_path(&id_of("web-1"), "cpu.busy_pct,disk.util_pct,mem.used_pct"),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["resolution"], "raw", "{v}");
    assert_eq!(v["step_ms"], 1000, "{v}");
    assert!(v["notice"].is_null(), "{}", v["notice"]);
    for (i, want) in [(0, 90.0), (1, 20.0), (2, 50.0)] {
        let p = points(&v["series"][i]);
        assert_eq!(p.len(), N, "{}", v["series"][i]["field"]);
        assert!(
            p.iter()
                .all(|(t, x)| close(*x, want) && *t >= from && *t < to),
            "{}: {:?}",
            v["series"][i]["field"],
            &p[..3]
        );
    }

    // The group average: web-1 and web-2 only (old-1's server is gone).
    let mean_path = |q: &str| {
        format!(
            "/api/series/mean?fields=cpu.busy_pct,mem.used_pct&{q}&from={from}&to={to}&max_points=2000"
        )
    };
    let (st, v) = get(&base, &token, &mean_path("group=web")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["hosts"], 2, "{v}");
    let host_ids: BTreeSet<String> = v["host_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("host_ids in {v}"))
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    assert_eq!(host_ids, web.iter().cloned().collect(), "{v}");
    let cpu = points(&v["result"]["series"][0]);
    assert_eq!(
        cpu.len(),
        N,
        "mean cpu points, step {}",
        v["result"]["step_ms"]
    );
    assert!(
        cpu.iter().all(|(_, x)| close(*x, 55.0)),
        "mean cpu of web must be (90+20)/2, old-1 (100) must not count: {:?}",
        &cpu[..3]
    );
    let mem = points(&v["result"]["series"][1]);
    assert!(
        !mem.is_empty() && mem.iter().all(|(_, x)| close(*x, 37.5)),
        "mean mem of web: {:?}",
        &mem[..mem.len().min(3)]
    );
    let (st, v) = get(&base, &alice, &mean_path("")).await;
    assert_eq!(
        (st, v["hosts"].as_u64()),
        (200, Some(2)),
        "alice's mean: {v}"
    );
    let (st, v) = get(&base, &token, &mean_path("group=db&room=r1")).await;
    assert_eq!((st, v["hosts"].as_u64()), (200, Some(1)), "db/r1 mean: {v}");
    assert!(
        points(&v["result"]["series"][0])
            .iter()
            .all(|(_, x)| close(*x, 40.0)),
        "{v}"
    );

    // A server moved to another group counts there at once, with all of
    // its history, and no agent restarts (the original needed one). Moved
    // back afterwards: the pages below expect it in web.
    let move_web2 = |group: &'static str| {
        let body = json!({"name": "web-2", "group_id": group_ids[group], "room_id": room_ids["r1"],
                          "address": "192.0.2.11", "ssh_user": "root"});
        let path = format!("/api/servers/{}", server_ids["web-2"]);
        let (base, token) = (base.clone(), token.clone());
        async move {
            let (st, v) = api(&base, &token, M::PUT, &path, Some(body)).await;
            assert_eq!(st, 200, "moving web-2 to {group}: {v}");
        }
    };
    move_web2("db").await;
    let (_, v) = get(&base, &token, "/api/hosts?group=db&room=r1").await;
    assert_eq!(
        ids(&v),
        vec![id_of("db-1"), id_of("web-2")],
        "db/r1 after the move"
    );
    let (_, v) = get(&base, &token, &mean_path("group=db&room=r1")).await;
    let moved = points(&v["result"]["series"][0]);
    assert!(
        v["hosts"] == 2 && moved.len() == N && moved.iter().all(|(_, x)| close(*x, 30.0)),
        "db/r1 mean over the whole range after the move must be (40+20)/2: {} points, first {:?}",
        moved.len(),
        moved.first()
    );
    let (_, v) = get(&base, &token, &mean_path("group=web")).await;
    assert!(
        v["hosts"] == 1
            && points(&v["result"]["series"][0])
                .iter()
                .all(|(_, x)| close(*x, 90.0)),
        "web after web-2 left: {v}"
    );
    let (st, _) = get(&base, &alice, &series_path(&id_of("web-2"), "cpu.busy_pct")).await;
    assert_eq!(st, 404, "alice no longer sees web-2 once it is in db");
    move_web2("web").await;
    let (_, v) = get(&base, &token, "/api/hosts?group=web").await;
    assert_eq!(ids(&v), web, "web-2 back in web");

    // An empty group: no hosts, empty series, no error.
    let (st, v) = get(&base, &token, &mean_path("group=empty")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["hosts"], 0, "{v}");
    let series = v["result"]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        series
            .iter()
            .all(|s| s["points"].as_array().is_some_and(|p| p.is_empty())),
        "{v}"
    );

    // A host that never sent a sample: empty points.
    let (st, v) = get(
        &base,
        &token,
        &series_path(&id_of("fresh-1"), "cpu.busy_pct"),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(points(&v["series"][0]).is_empty(), "{v}");

    // The deleted server's host: its data is still there for an admin.
    let (st, v) = get(&base, &token, &series_path(&id_of("old-1"), "cpu.busy_pct")).await;
    assert_eq!(st, 200, "{v}");
    let p = points(&v["series"][0]);
    assert!(
        p.len() == N && p.iter().all(|(_, x)| close(*x, 100.0)),
        "old-1 after its server was deleted: {} points",
        p.len()
    );

    // A range beyond retention (365 days): clamped, said so, data shown.
    let now = now_ms() as i64;
    let far = now - 400 * DAY_MS;
    for (who, path) in [
        (
            "host",
            format!(
                "/api/hosts/{}/series?fields=cpu.busy_pct&from={far}&to={now}&max_points=500",
                id_of("web-1")
            ),
        ),
        (
            "mean",
            format!(
                "/api/series/mean?fields=cpu.busy_pct&group=web&from={far}&to={now}&max_points=500"
            ),
        ),
    ] {
        let (st, v) = get(&base, &token, &path).await;
        assert_eq!(st, 200, "{who}: {v}");
        assert!(
            v["notice"].as_str().is_some_and(|n| !n.is_empty()),
            "{who}: a notice for a range beyond retention: {v}"
        );
        let got_from = v["from"].as_i64().unwrap_or(far);
        assert!(
            got_from >= now - 366 * DAY_MS && got_from > far,
            "{who}: from {got_from} not clamped (asked {far})"
        );
        let result = if who == "mean" { &v["result"] } else { &v };
        let p = points(&result["series"][0]);
        assert!(
            !p.is_empty(),
            "{who}: data still shown beyond retention: {result}"
        );
        let want = if who == "mean" { 55.0 } else { 90.0 };
        assert!(
            p.iter().all(|(_, x)| (x - want).abs() < 0.5),
            "{who}: {p:?}"
        );
    }

    // Bad parameters: refused with 400, never a 500; an unknown field is
    // just an empty series.
    let web1 = id_of("web-1");
    for path in [
        format!("/api/hosts/{web1}/series?fields=cpu.busy_pct&from=2000&to=1000"),
        format!("/api/hosts/{web1}/series?fields=cpu.busy_pct&from=1000&to=1000"),
        format!("/api/hosts/{web1}/series?fields=cpu.busy_pct&max_points=0"),
        format!("/api/hosts/{web1}/series?fields=cpu.busy_pct&from=abc"),
        format!("/api/hosts/{web1}/series?fields=cpu.busy_pct&max_points=-5"),
        format!("/api/hosts/{web1}/series?fields=cpu.busy_pct&to=1e99x"),
        "/api/series/mean?fields=cpu.busy_pct&group=web&from=2000&to=1000".to_string(),
        "/api/series/mean?fields=cpu.busy_pct&group=web&max_points=0".to_string(),
        "/api/series/mean?fields=cpu.busy_pct&group=web&from=yesterday".to_string(),
    ] {
        let (st, v) = get(&base, &token, &path).await;
        assert_eq!(st, 400, "{path}: {v}");
    }
    for path in [
        format!("/api/hosts/{web1}/series?fields=no.such_field&from={from}&to={to}&max_points=100"),
        format!(
            "/api/series/mean?fields=no.such_field&group=web&from={from}&to={to}&max_points=100"
        ),
    ] {
        let (st, v) = get(&base, &token, &path).await;
        assert_eq!(st, 200, "{path}: {v}");
        let series = if v["result"].is_object() {
            &v["result"]["series"]
        } else {
            &v["series"]
        };
        assert!(points(&series[0]).is_empty(), "{path}: {v}");
    }

    // ---- alert settings ---------------------------------------------------
    let (st, before) = get(&base, &token, "/api/alerts/settings").await;
    assert_eq!(st, 200, "{before}");
    assert!(
        before["smtp"]["port"].as_u64() == Some(u64::from(smtp.port)),
        "{before}"
    );
    assert!(
        !before.to_string().contains("password\":\""),
        "no password in the settings: {before}"
    );
    let mut bad = before["rules"].clone();
    bad["cpu_busy_above_pct"] = json!(150.0);
    bad["cpu_for_secs"] = json!(0);
    let (st, v) = api(&base, &token, M::PUT, "/api/alerts/rules", Some(bad)).await;
    assert_eq!(st, 422, "invalid rules: {v}");
    let err = v["error"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains("cpu_busy_above_pct") || err.contains("150"),
        "names the threshold: {err}"
    );
    assert!(
        err.contains("cpu_for_secs") && err.contains(';'),
        "names the duration too: {err}"
    );
    let (_, after) = get(&base, &token, "/api/alerts/settings").await;
    assert_eq!(after["rules"], before["rules"], "nothing changed");
    let rules = json!({
        "cpu_busy_above_pct": null, "cpu_for_secs": 90,
        "mem_available_below_pct": 5.0, "mem_for_secs": 45,
        "full_gc_min_interval_secs": 120, "silent_after_secs": null,
    });
    let (st, v) = api(
        &base,
        &token,
        M::PUT,
        "/api/alerts/rules",
        Some(rules.clone()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, rules, "the stored rules are returned");
    let (_, after) = get(&base, &token, "/api/alerts/settings").await;
    assert_eq!(after["rules"], rules, "{after}");

    let (st, v) = api(
        &base,
        &token,
        M::PUT,
        "/api/alerts/recipients",
        Some(json!({"recipients": ["ops@myplatform.test", "not-an-address"]})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("not-an-address")),
        "names the bad address: {v}"
    );
    let (_, after) = get(&base, &token, "/api/alerts/settings").await;
    assert_eq!(after["recipients"], before["recipients"], "nothing changed");
    let recipients = json!(["ops@myplatform.test", "dev@myplatform.test"]);
    let (st, v) = api(
        &base,
        &token,
        M::PUT,
        "/api/alerts/recipients",
        Some(json!({ "recipients": recipients })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["recipients"], recipients, "{v}");
    let (st, v) = api(&base, &token, M::POST, "/api/alerts/test-mail", None).await;
    assert_eq!(st, 200, "test mail: {v}");
    assert_eq!(v["sent_to"], recipients, "{v}");
    let mails = test_mails(&smtp, 1).await;
    assert_eq!(
        mails[0].to,
        vec!["ops@myplatform.test", "dev@myplatform.test"],
        "{mails:#?}"
    );

    // A user may not read or change alert settings.
    for (method, path, body) in [
        (M::GET, "/api/alerts/settings", None),
        (M::PUT, "/api/alerts/rules", Some(rules.clone())),
        (
            M::PUT,
            "/api/alerts/recipients",
            Some(json!({"recipients": ["x@myplatform.test"]})),
        ),
        (M::POST, "/api/alerts/test-mail", None),
    ] {
        let (st, v) = api(&base, &alice, method.clone(), path, body).await;
        assert!(st == 403 || st == 404, "alice {method} {path}: {st} {v}");
    }
    let (st, v) = get(&base, &alice, "/api/alerts").await;
    assert_eq!(st, 200, "alice lists alerts: {v}");
    let (_, after) = get(&base, &token, "/api/alerts/settings").await;
    assert_eq!(after["rules"], rules, "alice changed nothing");
    assert_eq!(smtp.messages().len(), 1, "alice sent no mail");
    eprintln!("API checks done at {:?}", started.elapsed());

    // ---- the pages in Chromium ---------------------------------------------
    // New samples every second meanwhile (the pages must pick them up).
    let stop = CancellationToken::new();
    let feeder = tokio::spawn(feed(hosts, stop.clone()));
    let custom_to = end_ms as i64 - 600_000;
    let custom_from = custom_to - 900_000;
    assert!(end_ms - HISTORY_SECS * 1000 < custom_from as u64 && HISTORY_SECS >= 2000);
    let browser_recipients = ["web-team@myplatform.test", "ops@myplatform.test"];
    let expect = json!({
        "order": expected_order,
        "names": expected_order.iter().map(|i| name_of(i)).collect::<Vec<_>>(),
        "steps": expected_order.iter().map(|i| expected_score(name_of(i)).map(step_of)).collect::<Vec<_>>(),
        "scores": expected_order.iter().map(|i| expected_score(name_of(i)).map(|s| format!("{s:.1}"))).collect::<Vec<_>>(),
        "silent": [id_of("gone-1")],
        "no_data": [id_of("fresh-1")],
        "web": web,
        "web1": id_of("web-1"),
        "web1_cpu": 90.0,
        "mean_cpu_web": 55.0,
        "history_end": end_ms,
        "custom_from": custom_from,
        "custom_to": custom_to,
        "far_from": now - 400 * DAY_MS,
        "smtp_host": "127.0.0.1",
        "rule_field": "mem_for_secs",
        "rule_value": "40",
        "recipients": browser_recipients,
        "web1_card": {
            "cpu": "CPU 90.0 % (iowait 2.0 %)",
            "io": "IO 20.0 % · R 1.5 MiB/s W 2.0 KiB/s",
            "net": "Net 10.0 % · ↓ 1.0 MiB/s ↑ 512 B/s",
            "mem": "Mem 50.0 %",
            "disk": "Disk 71.0 % (/)",
            "tcp": "TCP 120 · retrans 0.5/s",
        },
    });
    let env = [
        ("URL", base.clone()),
        ("ADMIN_NAME", ADMIN.to_string()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
        ("USER_NAME", ALICE.to_string()),
        ("USER_PASSWORD", ALICE_PASSWORD.to_string()),
        ("EXPECT", expect.to_string()),
    ];
    let run = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        e2e::browser::run_script(&e2e::browser::script("monitoring.mjs"), &env)
    })
    .await
    .expect("the browser run");
    for line in run.stdout.lines().filter(|l| l.contains("FRAME-TIME")) {
        eprintln!("{}", line.trim());
    }
    assert!(
        run.stdout.contains("FRAME-TIME"),
        "the scenario reports frame times"
    );
    stop.cancel();
    let hosts = feeder.await.expect("the feeder");

    // The browser's test mail went to the recipients it set.
    let mails = test_mails(&smtp, 2).await;
    assert_eq!(mails[1].to, browser_recipients, "{mails:#?}");

    // ---- restart: the settings changed at run time survive -----------------
    drop(hosts);
    let mut want_rules = rules.clone();
    want_rules["mem_for_secs"] = json!(40);
    ctl.stop().await;
    s.alerts.smtp = None;
    let ctl = start_controller(&s).await;
    let base = format!("http://{}{PREFIX}", ctl.http_addr);
    let (st, v) = get(&base, &token, "/api/alerts/settings").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["rules"], want_rules, "rules after a restart: {v}");
    assert_eq!(v["recipients"], json!(browser_recipients), "{v}");
    assert!(v["smtp"].is_null(), "{v}");
    let (st, v) = api(&base, &token, M::POST, "/api/alerts/test-mail", None).await;
    assert_eq!(st, 409, "test mail without an SMTP server: {v}");
    assert!(v["error"].is_string(), "{v}");
    ctl.stop().await;
    eprintln!("dashboards test took {:?}", started.elapsed());
}

/// Test mails (alert mails filtered out) once at least `n` arrived.
async fn test_mails(smtp: &SmtpServer, n: usize) -> Vec<e2e::smtp::ReceivedMail> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<_> = smtp
            .messages()
            .into_iter()
            .filter(|m| !m.subject.starts_with("[MyPlatform] ALERT"))
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} test mails expected, got {got:#?}\n{}",
            smtp.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends one sample a second for every host that has data, until `stop`;
/// hands the hosts back.
async fn feed(mut hosts: Vec<SyntheticHost>, stop: CancellationToken) -> Vec<SyntheticHost> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return hosts,
            _ = tick.tick() => {}
        }
        for h in hosts.iter_mut() {
            catch_up(h, false).await;
        }
    }
}

/// Sends host `h` a sample for every whole second since its newest one up
/// to now (at most a minute's worth), so its series has no gap; `wait`:
/// until stored.
async fn catch_up(h: &mut SyntheticHost, wait: bool) {
    let now = now_ms() / 1000 * 1000;
    let first = (h.last_ts_ms + 1000).max(now.saturating_sub(60_000));
    let samples: Vec<_> = (first..=now)
        .step_by(1000)
        .filter_map(|ts| host_sample(&h.hostname, ts))
        .collect();
    if samples.is_empty() {
        return;
    }
    if wait {
        h.send(&samples).await;
    } else {
        h.push(&samples).await;
    }
}
