//! Load-test plans through the JSON API of an in-process controller: a
//! plan is created, saved over its revision (a stale save is refused),
//! given a CSV file that must match its data set's delimiter, exported as
//! .jmx and imported back, copied with its files, and deleted with them.
//! Bad input gets the field and the reason: TPS <= 0 or over the ceiling,
//! duration 0, a schedule in the past, a file no data set can use, a
//! hostile .jmx, a 2 GB upload.

use std::path::Path;

use e2e::{api, curl};
use reqwest::Method as M;
use serde_json::{Value, json};

fn plan_body(name: &str, room: i64) -> Value {
    json!({
        "name": name,
        "comment": "checkout flow",
        "run": {"load": {"type": "tps", "tps": 50.0}, "duration_secs": 120, "room_id": room, "generators": 2},
        "variables": [{"name": "host", "value": "127.0.0.1"}],
        "header_sets": [{"name": "json", "headers": [{"name": "Content-Type", "value": "application/json"}]}],
        "thread_groups": [{
            "name": "buyers",
            "ramp_up_secs": 10,
            "controllers": [{
                "name": "flow",
                "samplers": [
                    {"name": "login", "host": "${host}", "port": "8080", "path": "/login", "method": "POST",
                     "body": {"type": "json", "text": "{\"user\":\"${user}\"}"}, "header_set": "json",
                     "extractors": [{"kind": "json_path", "expression": "$.token", "variable": "token"}]},
                    {"name": "cart", "host": "${host}", "port": "8080", "path": "/cart/${token}",
                     "assertion": {"kind": "contains", "text": "items"}}
                ]
            }]
        }]
    })
}

fn problems(v: &Value) -> Vec<String> {
    v["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["field"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn files_under(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_are_edited_checked_exported_imported_copied_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = e2e::inproc::settings(&dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
    s.loadtest.max_tps = 1000.0;
    s.loadtest.max_data_file_mib = 1;
    let ctl = e2e::inproc::start_controller(&s).await;
    let token = e2e::inproc::api_token(&ctl);
    let base = format!("http://{}", ctl.http_addr);
    let (st, room) = api(
        &base,
        &token,
        M::POST,
        "/api/rooms",
        Some(json!({"name": "lt", "purpose": "load_testing"})),
    )
    .await;
    assert_eq!(st, 201, "{room}");
    let room = room["id"].as_i64().unwrap();

    // Bad run settings: each named by its field.
    for (run, field, says) in [
        (
            json!({"load": {"type": "tps", "tps": 0.0}}),
            "run.load.tps",
            "above 0",
        ),
        (
            json!({"load": {"type": "tps", "tps": -3.0}}),
            "run.load.tps",
            "above 0",
        ),
        (
            json!({"load": {"type": "tps", "tps": 5000.0}}),
            "run.load.tps",
            "ceiling of 1000",
        ),
        (
            json!({"duration_secs": 0}),
            "run.duration_secs",
            "at least 1",
        ),
        (
            json!({"schedule": {"type": "automatic", "steps": [{"at": 1_000_000, "percent": 100}]}}),
            "run.schedule.steps[0].at",
            "in the past",
        ),
    ] {
        let mut body = plan_body("bad", room);
        for (k, v) in run.as_object().unwrap() {
            body["run"][k] = v.clone();
        }
        let (st, v) = api(&base, &token, M::POST, "/api/plans", Some(body)).await;
        assert_eq!(st, 422, "{run}: {v}");
        assert_eq!(problems(&v), [field], "{v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{v}");
    }
    let (st, v) = api(
        &base,
        &token,
        M::POST,
        "/api/plans",
        Some(json!({"name": "x", "bogus": 1})),
    )
    .await;
    assert_eq!(st, 422, "unknown field: {v}");

    // Create, then save over the revision; a stale save is refused.
    let (st, v) = api(
        &base,
        &token,
        M::POST,
        "/api/plans",
        Some(plan_body("checkout", room)),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (st, v) = api(
        &base,
        &token,
        M::POST,
        "/api/plans",
        Some(plan_body("Checkout", room)),
    )
    .await;
    assert_eq!(st, 409, "same name, other case: {v}");
    let (_, got) = api(&base, &token, M::GET, &format!("/api/plans/{id}"), None).await;
    assert_eq!(got["revision"], 1);
    let mut plan = got["plan"].clone();
    plan["comment"] = json!("second version");
    let (st, v) = api(
        &base,
        &token,
        M::PUT,
        &format!("/api/plans/{id}"),
        Some(json!({"revision": 1, "plan": plan})),
    )
    .await;
    assert_eq!((st, v["revision"].as_i64()), (200, Some(2)), "{v}");
    let (st, v) = api(
        &base,
        &token,
        M::PUT,
        &format!("/api/plans/{id}"),
        Some(json!({"revision": 1, "plan": plan})),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("changed since you opened it"),
        "{v}"
    );

    // A CSV data set needs its file uploaded, in the delimiter it declares.
    plan["thread_groups"][0]["csv_data_sets"] = json!([{
        "file": "users.csv", "variable_names": ["user", "password"], "delimiter": ","
    }]);
    let save = |plan: &Value, revision: i64| {
        let (base, token, plan) = (base.clone(), token.clone(), plan.clone());
        async move {
            api(
                &base,
                &token,
                M::PUT,
                &format!("/api/plans/{id}"),
                Some(json!({"revision": revision, "plan": plan})),
            )
            .await
        }
    };
    let (st, v) = save(&plan, 2).await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no file \"users.csv\" uploaded"),
        "{v}"
    );
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "alice;secret\nbob;hunter2\n").unwrap();
    let files_url = format!("{base}/api/plans/{id}/files");
    let (st, body) = curl(
        &token,
        &["-F", &format!("file=@{}", csv.display()), &files_url],
    );
    assert_eq!(st, 201, "{body}");
    let (st, v) = save(&plan, 2).await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("is the delimiter ';'"),
        "{v}"
    );
    std::fs::write(&csv, "alice,secret\nbob,hunter2\n").unwrap();
    let (st, body) = curl(
        &token,
        &["-F", &format!("file=@{}", csv.display()), &files_url],
    );
    assert_eq!(st, 201, "{body}");
    let (st, v) = save(&plan, 2).await;
    assert_eq!(st, 200, "{v}");
    // Now the data set declares ','; a ';' file is refused on upload too.
    std::fs::write(&csv, "alice;secret\n").unwrap();
    let (st, body) = curl(
        &token,
        &["-F", &format!("file=@{}", csv.display()), &files_url],
    );
    assert_eq!(st, 422, "{body}");
    let (st, body) = curl(
        &token,
        &[
            "-F",
            &format!("file=@{};filename=../evil.csv", csv.display()),
            &files_url,
        ],
    );
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("not a plain file name"), "{body}");
    // 2 GB (sparse: no disk used here) against a 1 MiB limit: refused
    // while streaming, nothing kept.
    let big = dir.path().join("big.csv");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let (st, body) = curl(
        &token,
        &["-F", &format!("file=@{}", big.display()), &files_url],
    );
    assert_eq!(st, 413, "2 GB upload: {body}");
    let (_, got) = api(&base, &token, M::GET, &format!("/api/plans/{id}"), None).await;
    let names: Vec<&str> = got["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["users.csv"]);
    assert_eq!(
        files_under(&s.data_dir.join("spool/uploads")),
        0,
        "spooled upload left behind"
    );
    let (st, body) = curl(&token, &["-X", "DELETE", &format!("{files_url}/users.csv")]);
    assert_eq!(st, 422, "a file in use cannot go: {body}");

    // Export as .jmx and import back: the same tree, the file still to upload.
    let r = e2e::http()
        .get(format!("{base}/api/plans/{id}/jmx"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let jmx = r.text().await.unwrap();
    assert!(
        jmx.contains("HTTPSamplerProxy") && jmx.contains("${host}"),
        "{jmx}"
    );
    let jmx_file = dir.path().join("checkout.jmx");
    std::fs::write(&jmx_file, &jmx).unwrap();
    let (st, body) = curl(
        &token,
        &[
            "-F",
            &format!("file=@{}", jmx_file.display()),
            &format!("{base}/api/plans/import"),
        ],
    );
    assert_eq!(st, 201, "{body}");
    let imported: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(imported["name"], "checkout (imported)");
    let notes = imported["notes"].to_string();
    assert!(notes.contains("upload users.csv"), "{notes}");
    let (_, back) = api(
        &base,
        &token,
        M::GET,
        &format!("/api/plans/{}", imported["id"]),
        None,
    )
    .await;
    assert_eq!(back["plan"]["thread_groups"], got["plan"]["thread_groups"]);
    assert_eq!(back["plan"]["header_sets"], got["plan"]["header_sets"]);

    // Hostile or broken .jmx: refused with the reason.
    for (content, says) in [
        (
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><jmeterTestPlan>&e;</jmeterTestPlan>",
            "DOCTYPE",
        ),
        (
            "<jmeterTestPlan><hashTree></jmeterTestPlan>",
            "malformed XML at line",
        ),
    ] {
        std::fs::write(&jmx_file, content).unwrap();
        let (st, body) = curl(
            &token,
            &[
                "-F",
                &format!("file=@{}", jmx_file.display()),
                &format!("{base}/api/plans/import"),
            ],
        );
        assert_eq!(st, 422, "{body}");
        assert!(body.contains(says), "{body}");
    }

    // Copy: a new plan with its own copy of the files.
    let (st, copy) = api(
        &base,
        &token,
        M::POST,
        &format!("/api/plans/{id}/copy"),
        None,
    )
    .await;
    assert_eq!(st, 201, "{copy}");
    assert_eq!(copy["name"], "checkout (copy)");
    let (_, c) = api(
        &base,
        &token,
        M::GET,
        &format!("/api/plans/{}", copy["id"]),
        None,
    )
    .await;
    assert_eq!(c["files"][0]["name"], "users.csv");
    assert_eq!(c["files"][0]["sha256"], got["files"][0]["sha256"]);

    // The list shows every plan with its room's generators.
    let (_, list) = api(&base, &token, M::GET, "/api/plans", None).await;
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap();
    assert_eq!(row["room"], "lt");
    assert_eq!(
        row["room_generators"],
        json!({"installed": 0, "connected": 0})
    );

    // A room plans run in cannot be deleted.
    let (st, v) = api(
        &base,
        &token,
        M::DELETE,
        &format!("/api/rooms/{room}"),
        None,
    )
    .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("load-test plan"),
        "{v}"
    );

    // Delete: the plans and their stored files are gone.
    let store = s.data_dir.join("files/plans");
    assert!(files_under(&store) >= 2);
    for p in [
        id,
        copy["id"].as_i64().unwrap(),
        imported["id"].as_i64().unwrap(),
    ] {
        let (st, v) = api(&base, &token, M::DELETE, &format!("/api/plans/{p}"), None).await;
        assert_eq!(st, 204, "{v}");
    }
    assert_eq!(
        files_under(&store),
        0,
        "stored files left after deleting the plans"
    );
    let (st, _) = api(&base, &token, M::GET, &format!("/api/plans/{id}"), None).await;
    assert_eq!(st, 404);
    let (st, v) = api(
        &base,
        &token,
        M::DELETE,
        &format!("/api/rooms/{room}"),
        None,
    )
    .await;
    assert_eq!(st, 204, "{v}");
    ctl.stop().await;
}
