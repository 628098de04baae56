//! The controller's SSH client against a real sshd (`e2e::sshd`). Needs root and
//! openssh-server; a missing sshd fails the tests, it never skips them.

use std::time::{Duration, Instant};

use controller::ssh::{
    self, Connection, Credential, HostKeyCheck, SshError, Target, connect, probe,
};
use e2e::sshd::SshServer;

const TIMEOUT: Duration = Duration::from_secs(10);

fn target(s: &SshServer) -> Target {
    Target {
        address: s.address.clone(),
        port: s.port,
        user: s.user.clone(),
    }
}

async fn login(s: &SshServer) -> Connection {
    connect(
        &target(s),
        &Credential::Password(s.password.clone()),
        HostKeyCheck::TrustOnFirstUse,
        TIMEOUT,
    )
    .await
    .expect("password login")
}

/// `SshServer::start` blocks (user creation, sshd start-up); off the
/// runtime's threads.
async fn start_server() -> SshServer {
    tokio::task::spawn_blocking(SshServer::start)
        .await
        .expect("sshd start")
}

#[tokio::test]
async fn password_login_runs_a_command() {
    let server = start_server().await;
    let conn = login(&server).await;
    let out = conn.exec("echo hi", 1024).await.unwrap();
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(out.stderr, b"");
    assert_eq!(out.exit_status, Some(0));

    let out = conn
        .exec("echo err >&2; whoami; exit 3", 1024)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", server.user)
    );
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_status, Some(3));

    // Standard input is closed, so a command reading it ends.
    let out = tokio::time::timeout(TIMEOUT, conn.exec("cat; echo done", 1024))
        .await
        .expect("cat must see EOF")
        .unwrap();
    assert_eq!(out.stdout, b"done\n");

    // Killed by a signal: no exit status.
    let out = conn.exec("kill -9 $$", 1024).await.unwrap();
    assert_eq!(out.exit_status, None);
    conn.disconnect().await;
}

#[tokio::test]
async fn key_login() {
    let server = start_server().await;
    let conn = connect(
        &target(&server),
        &Credential::PrivateKey(server.private_key_openssh.clone()),
        HostKeyCheck::TrustOnFirstUse,
        TIMEOUT,
    )
    .await
    .expect("key login");
    let out = conn.exec("echo key", 1024).await.unwrap();
    assert_eq!(out.stdout, b"key\n");
    assert!(
        server.log().contains("Accepted publickey"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn wrong_password_and_wrong_user_are_auth_failed() {
    let server = start_server().await;
    let err = connect(
        &target(&server),
        &Credential::Password("not-the-password".into()),
        HostKeyCheck::TrustOnFirstUse,
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SshError::AuthFailed { user } if *user == server.user),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("SSH authentication failed for user {}", server.user)
    );
    assert!(!err.to_string().contains("not-the-password"));

    // A key that is not in authorized_keys.
    let other = start_server().await;
    let err = connect(
        &target(&server),
        &Credential::PrivateKey(other.private_key_openssh.clone()),
        HostKeyCheck::TrustOnFirstUse,
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err:?}");
}

#[tokio::test]
async fn closed_port_is_unreachable_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = Target {
        address: "127.0.0.1".into(),
        port,
        user: "nobody".into(),
    };
    let started = Instant::now();
    let err = connect(
        &t,
        &Credential::Password("x".into()),
        HostKeyCheck::TrustOnFirstUse,
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match &err {
        SshError::Unreachable { endpoint, .. } => {
            assert_eq!(*endpoint, format!("127.0.0.1:{port}"))
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("cannot reach 127.0.0.1:{port}: "))
    );
}

#[tokio::test]
async fn silent_server_is_a_timeout() {
    // Accepts TCP, never speaks SSH.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let (_sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let t = Target {
        address: "127.0.0.1".into(),
        port,
        user: "nobody".into(),
    };
    let started = Instant::now();
    let err = connect(
        &t,
        &Credential::Password("x".into()),
        HostKeyCheck::TrustOnFirstUse,
        Duration::from_millis(500),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    hold.abort();
}

#[tokio::test]
async fn unknown_host_name_is_unreachable() {
    let t = Target {
        address: "no-such-host.invalid".into(),
        port: 22,
        user: "nobody".into(),
    };
    let err = connect(
        &t,
        &Credential::Password("x".into()),
        HostKeyCheck::TrustOnFirstUse,
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SshError::Unreachable { endpoint, .. } if endpoint == "no-such-host.invalid:22"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_trust_on_first_use_then_pinned() {
    let mut server = start_server().await;
    let conn = login(&server).await;
    let first = conn.host_key();
    assert_eq!(first, server.host_public_key());
    let fp = conn.host_key_fingerprint();
    assert_eq!(ssh::fingerprint_of(&first).unwrap(), fp);
    let keygen = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(first.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let keygen = String::from_utf8_lossy(&keygen.stdout);
    assert!(
        keygen.contains(&fp),
        "ssh-keygen says {keygen}, we say {fp}"
    );
    conn.disconnect().await;

    // The stored key, with a comment as a user might paste it.
    let conn = connect(
        &target(&server),
        &Credential::Password(server.password.clone()),
        HostKeyCheck::Expect(format!("{first} root@somewhere")),
        TIMEOUT,
    )
    .await
    .expect("expected key matches");
    assert_eq!(conn.host_key(), first);
    conn.disconnect().await;

    tokio::task::block_in_place(|| server.regenerate_host_key_and_restart());
    assert_ne!(server.host_public_key(), first);
    let err = connect(
        &target(&server),
        &Credential::Password(server.password.clone()),
        HostKeyCheck::Expect(first.clone()),
        TIMEOUT,
    )
    .await
    .unwrap_err();
    let new_fp = ssh::fingerprint_of(&server.host_public_key()).unwrap();
    match &err {
        SshError::HostKeyChanged {
            expected_fingerprint,
            presented_fingerprint,
        } => {
            assert_eq!(*expected_fingerprint, fp);
            assert_eq!(*presented_fingerprint, new_fp);
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("changed") && msg.contains("administrator"),
        "{msg}"
    );
    // Refused before authenticating: the password never went to the
    // impostor.
    assert!(!server.log().contains("Failed password"));

    // Accepting the new key (TOFU again) works.
    let conn = login(&server).await;
    assert_eq!(conn.host_key(), server.host_public_key());
}

#[tokio::test]
async fn stored_host_key_garbage_is_rejected_before_connecting() {
    let t = Target {
        address: "127.0.0.1".into(),
        port: 1,
        user: "nobody".into(),
    };
    let err = connect(
        &t,
        &Credential::Password("x".into()),
        HostKeyCheck::Expect("ssh-ed25519 nonsense".into()),
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::InvalidStoredHostKey), "{err:?}");
}

#[tokio::test]
async fn garbage_private_key_is_bad_key() {
    let server = start_server().await;
    let junk = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecretgarbage\n-----END OPENSSH PRIVATE KEY-----\n";
    for text in [junk, "", "hello", &server.public_key_openssh] {
        let err = connect(
            &target(&server),
            &Credential::PrivateKey(text.to_string()),
            HostKeyCheck::TrustOnFirstUse,
            TIMEOUT,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SshError::BadKey), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("secretgarbage") && !shown.contains("AAAA"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn output_cap() {
    let server = start_server().await;
    let conn = login(&server).await;
    let err = conn
        .exec("head -c 100000 /dev/zero", 10_000)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SshError::OutputTooLarge { limit: 10_000 }),
        "{err:?}"
    );
    // stderr counts too.
    let err = conn
        .exec("head -c 5000 /dev/zero >&2; head -c 6000 /dev/zero", 10_000)
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::OutputTooLarge { .. }), "{err:?}");
    // Exactly at the limit is fine, and the connection is still usable.
    let out = conn.exec("head -c 10000 /dev/zero", 10_000).await.unwrap();
    assert_eq!(out.stdout.len(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_exec_and_server_shutdown() {
    let mut server = start_server().await;
    let conn = login(&server).await;
    // A caller's timeout drops the exec; the connection stays usable.
    let r = tokio::time::timeout(Duration::from_millis(300), conn.exec("sleep 30", 1024)).await;
    assert!(r.is_err());
    assert_eq!(conn.exec("echo ok", 64).await.unwrap().stdout, b"ok\n");

    user_processes_gone(&server, "sleep 30").await;

    // Over the output cap, the command is ended too.
    let err = conn
        .exec("yes | head -c 5000; sleep 31", 1000)
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::OutputTooLarge { .. }), "{err:?}");
    user_processes_gone(&server, "sleep 31").await;

    tokio::task::block_in_place(|| server.stop());
    let err = conn.exec("echo gone", 64).await.unwrap_err();
    assert!(matches!(err, SshError::Disconnected), "{err:?}");
    assert!(conn.is_closed());
}

/// Waits until no process of the test user runs `command`.
async fn user_processes_gone(server: &SshServer, command: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ps = std::process::Command::new("ps")
            .args(["-u", &server.user, "-o", "args="])
            .output()
            .expect("ps");
        let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
        if !ps.lines().any(|l| l.trim() == command) {
            return;
        }
        assert!(Instant::now() < deadline, "'{command}' still runs:\n{ps}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_interactive_password() {
    // Many distributions ship `PasswordAuthentication no` and take the
    // password through PAM's keyboard-interactive prompt instead.
    let mut server = start_server().await;
    tokio::task::block_in_place(|| {
        server
            .reconfigure("PasswordAuthentication no\nKbdInteractiveAuthentication yes\nUsePAM yes")
    });
    let conn = login(&server).await;
    assert_eq!(conn.exec("echo kbd", 64).await.unwrap().stdout, b"kbd\n");
    assert!(
        server.log().contains("Accepted keyboard-interactive"),
        "{}",
        server.log()
    );
    let err = connect(
        &target(&server),
        &Credential::Password("wrong".into()),
        HostKeyCheck::TrustOnFirstUse,
        Duration::from_secs(20),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err:?}");
}

#[tokio::test]
async fn rsa_keys_in_openssh_and_pem_form() {
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, format) in [("rsa_openssh", "RFC4716"), ("rsa_pem", "PEM")] {
        let path = dir.path().join(name);
        let status = std::process::Command::new("ssh-keygen")
            .args([
                "-q", "-t", "rsa", "-b", "2048", "-N", "", "-m", format, "-f",
            ])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let mut keys = std::fs::OpenOptions::new()
            .append(true)
            .open(server.home.join(".ssh/authorized_keys"))
            .unwrap();
        std::io::Write::write_all(&mut keys, public.as_bytes()).unwrap();
        let private = std::fs::read_to_string(&path).unwrap();
        let conn = connect(
            &target(&server),
            &Credential::PrivateKey(private),
            HostKeyCheck::TrustOnFirstUse,
            TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(conn.exec("echo rsa", 64).await.unwrap().stdout, b"rsa\n");
    }
}

#[tokio::test]
async fn probe_reads_sane_facts() {
    let server = start_server().await;
    let conn = login(&server).await;
    let f = probe(&conn).await.unwrap();
    assert!(f.cpu_cores > 0 && f.mem_total_bytes > 0, "{f:?}");
    assert_eq!(f.arch, std::env::consts::ARCH);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(f.hostname, hostname.trim());
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(f.kernel, release.trim());
    assert_eq!(
        f.cpu_cores as usize,
        std::thread::available_parallelism().unwrap().get()
    );
    if let Ok(os_release) = std::fs::read_to_string("/etc/os-release") {
        assert!(os_release.contains(&f.os), "{f:?}");
    }
    assert!(
        f.disks
            .iter()
            .all(|(n, b)| !n.starts_with("loop") && *b > 0),
        "{f:?}"
    );
    assert!(f.addresses.iter().all(|a| !a.starts_with("127.")), "{f:?}");
}

/// Several servers in one process at once: unique users and ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_servers() {
    let servers: Vec<SshServer> =
        futures_join(4, || tokio::task::spawn_blocking(SshServer::start)).await;
    let mut users: Vec<&str> = servers.iter().map(|s| s.user.as_str()).collect();
    let mut ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    users.sort();
    users.dedup();
    ports.sort();
    ports.dedup();
    assert_eq!((users.len(), ports.len()), (4, 4));
    for s in &servers {
        let conn = login(s).await;
        let out = conn.exec("whoami", 64).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), s.user);
    }
    let names: Vec<String> = servers.iter().map(|s| s.user.clone()).collect();
    drop(servers);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    for n in names {
        assert!(!passwd.contains(&format!("{n}:")), "{n} was not removed");
    }
}

async fn futures_join<F>(n: usize, mut f: impl FnMut() -> tokio::task::JoinHandle<F>) -> Vec<F> {
    let handles: Vec<_> = (0..n).map(|_| f()).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
