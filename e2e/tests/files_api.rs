//! Upload and download through the controller's HTTP API (curl as the
//! client, as a person scripting it would) against a real sshd: a 200 MB
//! file both ways, byte-exact; several files in one upload with a result
//! each; and the refusals: bad paths, a directory, no permission, a name
//! with `../`, transfers switched off, a user outside the group.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use controller::inventory::model::parse_user_name;
use e2e::inproc::{settings, start_controller};
use e2e::sshd::SshServer;
use serde_json::{Value, json};

fn sha256_file(p: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(p).unwrap();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    hex(ctx.finish().as_ref())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

use e2e::curl;

#[tokio::test(flavor = "multi_thread")]
async fn files_go_up_and_down_through_the_api() {
    let sshd = tokio::task::spawn_blocking(SshServer::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start_controller(&settings(dir.path(), "127.0.0.1:0".parse().unwrap())).await;
    let token = e2e::inproc::api_token(&ctl);
    let base = format!("http://{}", ctl.http_addr);
    let http = e2e::http();
    let post = |path: String, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let g: Value = post("/api/groups".into(), json!({"name": "g"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r: Value = post(
        "/api/rooms".into(),
        json!({"name": "r", "purpose": "application"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let s: Value = post(
        "/api/servers".into(),
        json!({"name": "web-1", "group_id": g["id"], "room_id": r["id"], "address": sshd.address,
               "ssh_port": sshd.port, "ssh_user": sshd.user,
               "credential": {"kind": "password", "secret": sshd.password}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = s["id"].as_i64().unwrap();
    let files = format!("{base}/api/servers/{id}/files");
    let home = sshd.home.display().to_string();

    // 200 MB of pseudo-random data, written in chunks.
    let big = dir.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let mut rng = fastrand::Rng::with_seed(42);
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..200 {
            rng.fill(&mut chunk);
            f.write_all(&chunk).unwrap();
        }
    }
    let want = sha256_file(&big);
    let small = dir.path().join("notes; $(touch pwned).txt");
    std::fs::write(&small, "hello\n").unwrap();

    let t = Instant::now();
    let (code, body) = tokio::task::block_in_place(|| {
        curl(
            &token,
            &[
                "-F",
                &format!("file=@{}", big.display()),
                "-F",
                &format!("file=@\"{}\"", small.display()),
                &format!("{files}?dir={home}"),
            ],
        )
    });
    let up_secs = t.elapsed().as_secs_f64();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["files"][0]["bytes"], 200 * 1024 * 1024);
    assert_eq!(v["files"][1]["ok"], true, "{v}");
    assert!(
        sshd.home.join("notes; $(touch pwned).txt").exists(),
        "the odd name was not kept"
    );
    assert!(!sshd.home.join("pwned").exists() && !Path::new("pwned").exists());

    let out = dir.path().join("back.bin");
    let t = Instant::now();
    let (code, _) = tokio::task::block_in_place(|| {
        curl(
            &token,
            &[
                "-o",
                out.to_str().unwrap(),
                &format!("{files}?path={home}/big.bin"),
            ],
        )
    });
    let down_secs = t.elapsed().as_secs_f64();
    assert_eq!(code, 200);
    assert_eq!(sha256_file(&out), want, "the download differs");
    eprintln!(
        "200 MiB through the controller (debug build): up {:.0} MB/s, down {:.0} MB/s",
        209.7 / up_secs,
        209.7 / down_secs
    );

    // Refusals, each with its reason.
    let no_write = "/usr";
    let small = dir.path().join("plain.txt");
    std::fs::write(&small, "hello\n").unwrap();
    let cases: Vec<(Vec<String>, u16, &str)> = vec![
        (vec![format!("{files}?path=relative/x")], 422, "absolute"),
        (
            vec![format!("{files}?path={home}/nope")],
            404,
            "does not exist",
        ),
        (vec![format!("{files}?path={home}")], 422, "is a directory"),
        (vec![format!("{files}?path={home}/../x")], 422, ".."),
        (
            vec![
                "-F".into(),
                format!("file=@{}", small.display()),
                format!("{files}?dir=tmp"),
            ],
            422,
            "absolute",
        ),
        (
            vec![
                "-F".into(),
                format!("file=@{}", small.display()),
                format!("{files}?dir={home}/nope"),
            ],
            422,
            "does not exist",
        ),
        (
            vec![
                "-F".into(),
                format!("file=@{}", small.display()),
                format!("{files}?dir={no_write}"),
            ],
            422,
            "permission denied",
        ),
        (
            vec![
                "-F".into(),
                format!("file=@{};filename=../evil.txt", small.display()),
                format!("{files}?dir={home}"),
            ],
            422,
            "evil",
        ),
    ];
    for (args, want_code, needle) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, body) = tokio::task::block_in_place(|| curl(&token, &a));
        assert_eq!(code, want_code, "{args:?}: {body}");
        assert!(body.contains(needle), "{args:?}: {body}");
    }
    assert!(
        !sshd.home.join("evil.txt").exists()
            && !sshd.home.parent().unwrap().join("evil.txt").exists()
    );

    // The audit log has who moved what, with sizes.
    let audit = ctl.inventory.audit_log(Some(id), 50).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "upload" && a.detail.contains("big.bin (209715200 bytes)"))
    );
    assert!(
        audit
            .iter()
            .any(|a| a.action == "download" && a.detail.contains("209715200"))
    );

    // A user outside the group: the server does not exist for them.
    let bob = controller::auth::create_user(
        &ctl.inventory,
        &parse_user_name("bob").unwrap(),
        "bob password",
        false,
    )
    .unwrap();
    let bob = controller::auth::create_api_token(&ctl.inventory, bob, "t").unwrap();
    let (code, _) =
        tokio::task::block_in_place(|| curl(&bob, &[&format!("{files}?path={home}/big.bin")]));
    assert_eq!(code, 404);
    ctl.stop().await;

    // Switched off: refused for everyone, with the reason.
    let mut s2 = settings(dir.path(), "127.0.0.1:0".parse().unwrap());
    s2.shell.transfers = false;
    let ctl = start_controller(&s2).await;
    let files = format!("http://{}/api/servers/{id}/files", ctl.http_addr);
    let (code, body) =
        tokio::task::block_in_place(|| curl(&token, &[&format!("{files}?path={home}/big.bin")]));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("switched off"));
    ctl.stop().await;
}
