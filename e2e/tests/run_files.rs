//! The run files of a plan, from the controller's API to a real JMeter 5.6:
//! an editor plan with a CSV data file and an uploaded JMeter zip are each
//! built into one artifact (prepared .jmx + every file it reads), checked
//! against their digest, unpacked, and run with the `-J` properties the
//! controller gives for generator 0; the requests arrive as designed. And
//! the zips the upload must refuse, each with its reason.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2e::jmeter::{JMeter, Recorded, Reply, TargetServer};
use e2e::{api, curl};
use reqwest::Method as M;
use serde_json::{Value, json};

const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// Zip entries: name and contents.
type Entries<'a> = Vec<(&'a str, &'a [u8])>;

fn zip_of(path: &Path, entries: &[(&str, &[u8])]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
}

/// Downloads the run files of `plan`, checks their digest, unpacks them
/// into `dir`; returns the -J arguments of generator 0.
async fn fetch_run_files(base: &str, token: &str, plan: i64, dir: &Path) -> Vec<String> {
    let r = e2e::http()
        .get(format!("{base}/api/plans/{plan}/run-files"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sha = r.headers()["x-checksum-sha256"]
        .to_str()
        .unwrap()
        .to_string();
    let body = r.bytes().await.unwrap();
    let got = ring::digest::digest(&ring::digest::SHA256, &body);
    let hex: String = got.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, sha, "the run files are not what their digest says");
    let zip = dir.join("run.zip");
    std::fs::write(&zip, &body).unwrap();
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    loadplan::bundle::unpack_file(&zip, &tree, &Default::default()).expect("run files unpack");
    let (st, prep) = api(
        base,
        token,
        M::POST,
        &format!("/api/plans/{plan}/prepare"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{prep}");
    assert_eq!(
        prep["sha256"],
        sha.as_str(),
        "the same plan builds the same bytes"
    );
    prep["properties"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_files_of_a_plan_and_of_an_upload_run_in_jmeter() {
    let jmeter = tokio::task::spawn_blocking(JMeter::find).await.unwrap();
    let server = TargetServer::start(Arc::new(|r: &Recorded| match r.path.as_str() {
        "/login" => {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            Reply::json(&format!(
                r#"{{"token":"t-{}"}}"#,
                body["user"].as_str().unwrap_or("?")
            ))
        }
        "/orders" => Reply::json(r#"{"order": 17}"#),
        _ => Reply::text("ok"),
    }));
    let dir = tempfile::tempdir().unwrap();
    let mut s = e2e::inproc::settings(&dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
    s.loadtest.max_upload_mib = 1;
    let ctl = e2e::inproc::start_controller(&s).await;
    let token = e2e::inproc::api_token(&ctl);
    let base = format!("http://{}", ctl.http_addr);
    let (_, room) = api(
        &base,
        &token,
        M::POST,
        "/api/rooms",
        Some(json!({"name": "lt", "purpose": "load_testing"})),
    )
    .await;
    let room = room["id"].as_i64().unwrap();

    // An editor plan: 2 threads for 3 s, each iteration one CSV row.
    let plan = json!({
        "name": "hello",
        "run": {"load": {"type": "threads", "threads": 2}, "duration_secs": 3, "room_id": room},
        "thread_groups": [{"name": "g", "controllers": [{"name": "c", "samplers": [
            {"name": "hello", "host": "127.0.0.1", "port": server.port().to_string(), "path": "/hello?u=${user}"}
        ]}]}]
    });
    let (st, v) = api(&base, &token, M::POST, "/api/plans", Some(plan.clone())).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "alice\nbob\ncarol\n").unwrap();
    let (st, body) = curl(
        &token,
        &[
            "-F",
            &format!("file=@{}", csv.display()),
            &format!("{base}/api/plans/{id}/files"),
        ],
    );
    assert_eq!(st, 201, "{body}");
    let mut with_csv = plan.clone();
    with_csv["thread_groups"][0]["csv_data_sets"] =
        json!([{"file": "users.csv", "variable_names": ["user"]}]);
    let (st, v) = api(
        &base,
        &token,
        M::PUT,
        &format!("/api/plans/{id}"),
        Some(json!({"revision": 1, "plan": with_csv})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let work = dir.path().join("editor");
    std::fs::create_dir_all(&work).unwrap();
    let args = fetch_run_files(&base, &token, id, &work).await;
    assert!(
        args.contains(&"-Jmyplatform.threads=2".to_string()),
        "{args:?}"
    );
    assert!(work.join("tree/test.jmx").is_file() && work.join("tree/data/users.csv").is_file());
    let run = tokio::task::spawn_blocking({
        let (jmeter, work, args) = (jmeter.clone(), work.clone(), args.clone());
        move || jmeter.run(&work, &work.join("tree/test.jmx"), &args, RUN_TIMEOUT)
    })
    .await
    .unwrap();
    let users: std::collections::HashSet<String> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/hello")
        .flat_map(|r| r.query_pairs())
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        users,
        ["alice", "bob", "carol"].map(String::from).into(),
        "{:?}",
        run.elapsed
    );
    let threads: std::collections::HashSet<&String> = run
        .samples
        .iter()
        .filter_map(|s| s.get("threadName"))
        .collect();
    assert_eq!(threads.len(), 2, "{threads:?}");

    // An uploaded zip: JMeter's own GUI-saved plan with its CSV, run with
    // the rate, threads and duration the controller sets.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadplan/tests/data");
    let jmx = std::fs::read(data.join("shop-gui-5.6.jmx")).unwrap();
    let users = std::fs::read(data.join("users.csv")).unwrap();
    let good = dir.path().join("shop.zip");
    zip_of(&good, &[("shop.jmx", &jmx), ("users.csv", &users)]);
    let upload_url = format!("{base}/api/plans/upload");
    let (st, body) = curl(
        &token,
        &["-F", &format!("file=@{}", good.display()), &upload_url],
    );
    assert_eq!(st, 201, "{body}");
    let up: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(up["name"], "shop");
    assert_eq!(up["bundle"]["jmx"], "shop.jmx");
    let uid = up["id"].as_i64().unwrap();
    let (_, got) = api(&base, &token, M::GET, &format!("/api/plans/{uid}"), None).await;
    let mut p = got["plan"].clone();
    p["run"] =
        json!({"load": {"type": "threads", "threads": 3}, "duration_secs": 3, "room_id": room});
    let (st, v) = api(
        &base,
        &token,
        M::PUT,
        &format!("/api/plans/{uid}"),
        Some(json!({"revision": 1, "plan": p.clone()})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // Its tree is the zip's: the editor cannot add to it.
    let mut grown = p.clone();
    grown["thread_groups"] = with_csv["thread_groups"].clone();
    let (st, v) = api(
        &base,
        &token,
        M::PUT,
        &format!("/api/plans/{uid}"),
        Some(json!({"revision": 2, "plan": grown})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    let work = dir.path().join("upload");
    std::fs::create_dir_all(&work).unwrap();
    let mut args = fetch_run_files(&base, &token, uid, &work).await;
    args.push("-Jhost=127.0.0.1".into());
    args.push(format!("-Jport={}", server.port()));
    let before = server
        .requests()
        .iter()
        .filter(|r| r.path == "/login")
        .count();
    let run = tokio::task::spawn_blocking({
        let (jmeter, work) = (jmeter.clone(), work.clone());
        move || jmeter.run(&work, &work.join("tree/shop.jmx"), &args, RUN_TIMEOUT)
    })
    .await
    .unwrap();
    let logins = server
        .requests()
        .iter()
        .filter(|r| r.path == "/login")
        .count()
        - before;
    let threads: std::collections::HashSet<&String> = run
        .samples
        .iter()
        .filter_map(|s| s.get("threadName"))
        .collect();
    assert_eq!(threads.len(), 3, "{threads:?}");
    assert!(logins > 3, "{logins} logins from the uploaded plan");
    let r = e2e::http()
        .get(format!("{base}/api/plans/{uid}/bundle"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        std::fs::read(&good).unwrap().as_slice()
    );

    // Zips the upload refuses, each with its reason; nothing is stored.
    let plans_before = api(&base, &token, M::GET, "/api/plans", None)
        .await
        .1
        .as_array()
        .unwrap()
        .len();
    let cases: Vec<(&str, Entries, &str)> = vec![
        (
            "two.zip",
            vec![("a.jmx", &jmx[..]), ("b.jmx", &jmx[..])],
            "a.jmx",
        ),
        ("none.zip", vec![("users.csv", &users[..])], "no .jmx"),
        (
            "folder.zip",
            vec![("shop/shop.jmx", &jmx[..]), ("shop/users.csv", &users[..])],
            "not the folder",
        ),
        (
            "slip.zip",
            vec![("shop.jmx", &jmx[..]), ("../evil.csv", &users[..])],
            "..",
        ),
        (
            "abs.zip",
            vec![("shop.jmx", &jmx[..]), ("/etc/evil.csv", &users[..])],
            "absolute",
        ),
    ];
    for (name, entries, says) in cases {
        let path = dir.path().join(name);
        zip_of(&path, &entries);
        let (st, body) = curl(
            &token,
            &["-F", &format!("file=@{}", path.display()), &upload_url],
        );
        assert_eq!(st, 422, "{name}: {body}");
        assert!(body.contains(says), "{name}: {body}");
    }
    let not_zip = dir.path().join("plan.zip");
    std::fs::write(&not_zip, b"<jmeterTestPlan/>").unwrap();
    let (st, body) = curl(
        &token,
        &["-F", &format!("file=@{}", not_zip.display()), &upload_url],
    );
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("not a zip"), "{body}");
    // A zip bomb: 64 MiB of zeros deflate to ~64 KiB.
    let bomb = dir.path().join("bomb.zip");
    let zeros = vec![0u8; 64 << 20];
    zip_of(&bomb, &[("shop.jmx", &jmx[..]), ("zeros.csv", &zeros[..])]);
    let (st, body) = curl(
        &token,
        &["-F", &format!("file=@{}", bomb.display()), &upload_url],
    );
    assert_eq!(st, 422, "{body}");
    // 2 GB (sparse) against a 1 MiB limit: refused while streaming.
    let big = dir.path().join("big.zip");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let (st, body) = curl(
        &token,
        &["-F", &format!("file=@{}", big.display()), &upload_url],
    );
    assert_eq!(st, 413, "2 GB upload: {body}");
    let plans_after = api(&base, &token, M::GET, "/api/plans", None)
        .await
        .1
        .as_array()
        .unwrap()
        .len();
    assert_eq!(plans_before, plans_after, "a refused zip became a plan");
    ctl.stop().await;
}
