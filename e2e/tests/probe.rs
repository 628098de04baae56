//! "Probe" from the server list against a real sshd: the controller logs in
//! with the stored (sealed) credential, reads OS/CPU/memory/disk, trusts
//! the host key on first use, and refuses a changed key until an admin
//! forgets the old one.

use controller::inventory::model::parse_user_name;
use e2e::inproc::{settings, start_controller};
use e2e::sshd::SshServer;
use serde_json::{Value, json};

async fn call(
    http: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn probing_over_ssh_fills_the_server_list_and_pins_the_host_key() {
    let mut sshd = tokio::task::spawn_blocking(SshServer::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start_controller(&settings(dir.path(), "127.0.0.1:0".parse().unwrap())).await;
    let token = e2e::inproc::api_token(&ctl);
    let base = format!("http://{}", ctl.http_addr);
    let http = e2e::http();
    use reqwest::Method as M;
    let (_, g) = call(
        &http,
        &token,
        M::POST,
        format!("{base}/api/groups"),
        Some(json!({"name": "g"})),
    )
    .await;
    let (_, r) = call(
        &http,
        &token,
        M::POST,
        format!("{base}/api/rooms"),
        Some(json!({"name": "r", "purpose": "middleware"})),
    )
    .await;
    let (address, port, user) = (sshd.address.clone(), sshd.port, sshd.user.clone());
    let server = |name: &str, cred: Value| {
        json!({"name": name, "group_id": g["id"], "room_id": r["id"], "address": address,
               "ssh_port": port, "ssh_user": user, "credential": cred})
    };
    let (st, s) = call(
        &http,
        &token,
        M::POST,
        format!("{base}/api/servers"),
        Some(server(
            "by-password",
            json!({"kind": "password", "secret": sshd.password}),
        )),
    )
    .await;
    assert_eq!(st, 201, "{s}");
    let id = s["id"].as_i64().unwrap();
    assert_eq!(s["facts"], Value::Null);

    let probe = format!("{base}/api/servers/{id}/probe");
    let (st, s) = call(&http, &token, M::POST, probe.clone(), None).await;
    assert_eq!(st, 200, "{s}");
    assert_eq!(s["facts_source"], "probe");
    assert!(s["facts"]["cpu_cores"].as_u64().unwrap() >= 1);
    assert!(s["facts"]["mem_total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(s["facts"]["arch"], std::env::consts::ARCH);
    assert!(!s["facts"]["os"].as_str().unwrap().is_empty());
    assert_eq!(
        s["host_key"].as_str().unwrap().trim(),
        sshd.host_public_key().trim()
    );
    assert!(s["probed_at"].as_u64().is_some());

    // A key credential works too (a second server entry on another port is
    // refused as a duplicate address, so change the first one's credential).
    let mut key_body = server(
        "by-password",
        json!({"kind": "private_key", "secret": sshd.private_key_openssh}),
    );
    key_body["name"] = json!("by-key");
    let (st, _) = call(
        &http,
        &token,
        M::PUT,
        format!("{base}/api/servers/{id}"),
        Some(key_body),
    )
    .await;
    assert_eq!(st, 200);
    let (st, s) = call(&http, &token, M::POST, probe.clone(), None).await;
    assert_eq!(st, 200, "{s}");

    // The machine was "reinstalled": its host key changed. Refused, with
    // the reason, and the stored key stays.
    let old_key = s["host_key"].clone();
    tokio::task::block_in_place(|| sshd.regenerate_host_key_and_restart());
    let (st, e) = call(&http, &token, M::POST, probe.clone(), None).await;
    assert_eq!(st, 502, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("host key") && msg.contains("changed"), "{msg}");
    let (_, s) = call(
        &http,
        &token,
        M::GET,
        format!("{base}/api/servers/{id}"),
        None,
    )
    .await;
    assert_eq!(s["host_key"], old_key);

    // The admin accepts the new key by forgetting the old one.
    let (st, _) = call(
        &http,
        &token,
        M::DELETE,
        format!("{base}/api/servers/{id}/host-key"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, s) = call(&http, &token, M::POST, probe.clone(), None).await;
    assert_eq!(st, 200, "{s}");
    assert_eq!(
        s["host_key"].as_str().unwrap().trim(),
        sshd.host_public_key().trim()
    );

    // A wrong password is a clear refusal, not a hang.
    let (st, _) = call(
        &http,
        &token,
        M::PUT,
        format!("{base}/api/servers/{id}"),
        Some(server(
            "by-key",
            json!({"kind": "password", "secret": "wrong"}),
        )),
    )
    .await;
    assert_eq!(st, 200);
    let (st, e) = call(&http, &token, M::POST, probe.clone(), None).await;
    assert_eq!(st, 502);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{e}"
    );

    // A user of another group cannot probe it (it does not exist for them).
    let other = controller::auth::create_user(
        &ctl.inventory,
        &parse_user_name("outsider").unwrap(),
        "outsider password",
        false,
    )
    .unwrap();
    let t = controller::auth::create_api_token(&ctl.inventory, other, "t").unwrap();
    let (st, _) = call(&http, &t, M::POST, probe, None).await;
    assert_eq!(st, 404);
    ctl.stop().await;
}
