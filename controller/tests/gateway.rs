//! The agent link against a real controller on loopback: enrollment,
//! mutual TLS, restarts, revocation, and every kind of bad input the issue
//! names. Each refusal is asserted, and after each one a good agent still
//! gets through.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use certs::{AgentIdentity, CaPin, CertificateAuthority, JoinToken, Role};
use controller::Controller;
use controller::config::Settings;
use controller::gateway::create_token;
use controller::inventory::Inventory;
use controller::startup::INVENTORY_FILE;
use protocol::frame;
use protocol::{
    ALPN_AGENT, ALPN_ENROLL, AgentMsg, Backoff, ControllerMsg, Hello, IdentityStore, Link,
    LinkConfig, LinkError, LinkHandle, LinkState, close,
};
use quinn::ConnectionError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);

fn settings(dir: &Path, gateway: SocketAddr) -> Settings {
    let mut s = Settings {
        data_dir: dir.to_path_buf(),
        ..Settings::default()
    };
    s.gateway.listen = gateway;
    s.gateway.heartbeat_secs = 1;
    s.web.listen = "127.0.0.1:0".parse().unwrap();
    s
}

async fn start(dir: &Path) -> Controller {
    Controller::start(&settings(dir, "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
}

/// Starts a controller again on the same data directory and address. The
/// old endpoint's socket is released asynchronously, so binding may need a
/// moment.
async fn restart(dir: &Path, addr: SocketAddr) -> Controller {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match Controller::start(&settings(dir, addr)).await {
            Ok(c) => return c,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("restart: {e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot restart: {e:#}"),
        }
    }
}

fn token(ctl: &Controller, role: Role, uses: u32, ttl: Duration) -> JoinToken {
    create_token(&ctl.inventory, role, uses, ttl, None, None)
        .unwrap()
        .token
}

struct Agent {
    handle: LinkHandle,
    task: JoinHandle<Result<(), LinkError>>,
    shutdown: CancellationToken,
    _rx: tokio::sync::mpsc::Receiver<ControllerMsg>,
}

fn link_config(addr: SocketAddr, store: IdentityStore, role: Role) -> LinkConfig {
    let mut cfg = LinkConfig::new(addr.to_string(), store, role);
    cfg.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    cfg
}

fn spawn(cfg: LinkConfig) -> Agent {
    let shutdown = CancellationToken::new();
    let (handle, rx, task) = Link::spawn(cfg, shutdown.clone());
    Agent {
        handle,
        task,
        shutdown,
        _rx: rx,
    }
}

fn enrolling(ctl: &Controller, state: &Path, role: Role) -> Agent {
    let mut cfg = link_config(
        ctl.gateway_addr,
        IdentityStore::Dir(state.to_path_buf()),
        role,
    );
    cfg.token = Some(
        token(ctl, role, 1, Duration::from_secs(600))
            .expose_secret()
            .to_string(),
    );
    cfg.ca_pin = Some(ctl.ca.pin());
    spawn(cfg)
}

async fn connected(agent: &Agent) -> (certs::AgentId, u64) {
    tokio::time::timeout(WAIT, agent.handle.connected())
        .await
        .expect("agent did not connect in time")
        .expect("link stopped instead of connecting")
}

/// The link must give up by itself with a fatal error.
async fn fatal(agent: Agent) -> LinkError {
    tokio::time::timeout(WAIT, agent.task)
        .await
        .expect("link kept retrying instead of stopping")
        .unwrap()
        .expect_err("link ended without an error")
}

async fn stop(agent: Agent) {
    agent.shutdown.cancel();
    let r = tokio::time::timeout(WAIT, agent.task)
        .await
        .unwrap()
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
}

/// A good agent still enrolls and connects: the controller survived.
async fn still_serving(ctl: &Controller) {
    let dir = tempfile::tempdir().unwrap();
    let a = enrolling(ctl, dir.path(), Role::Monitor);
    let (id, _) = connected(&a).await;
    assert!(ctl.registry.get(&id).is_some());
    stop(a).await;
}

async fn raw_connect(addr: SocketAddr, tls: rustls::ClientConfig) -> quinn::Connection {
    let ep = protocol::endpoint::client_for(addr).unwrap();
    let cfg = protocol::endpoint::client_config(tls).unwrap();
    ep.connect_with(cfg, addr, certs::tls::SERVER_NAME)
        .unwrap()
        .await
        .unwrap()
}

/// (application close code, reason) the controller closed with.
async fn closed_with(conn: &quinn::Connection) -> (u32, String) {
    match tokio::time::timeout(WAIT, conn.closed()).await.unwrap() {
        ConnectionError::ApplicationClosed(ac) => (
            ac.error_code.into_inner() as u32,
            String::from_utf8_lossy(&ac.reason).into_owned(),
        ),
        other => panic!("unexpected close: {other}"),
    }
}

fn hello(id: Option<certs::AgentId>, role: Role) -> AgentMsg {
    AgentMsg::Hello(Hello::local(role, id, "test"))
}

/// An enrolled identity, for tests that speak raw QUIC.
async fn enrolled_identity(ctl: &Controller) -> AgentIdentity {
    let store = IdentityStore::memory();
    let mut cfg = link_config(ctl.gateway_addr, store.clone(), Role::Monitor);
    cfg.token = Some(
        token(ctl, Role::Monitor, 1, Duration::from_secs(60))
            .expose_secret()
            .into(),
    );
    cfg.ca_pin = Some(ctl.ca.pin());
    let a = spawn(cfg);
    connected(&a).await;
    stop(a).await;
    store.load().unwrap().unwrap()
}

fn init() {
    certs::tls::install_default_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,controller=info,protocol=info")
        .with_test_writer()
        .try_init();
}

#[tokio::test]
async fn agents_enroll_connect_heartbeat_and_show_in_the_api() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    let s1 = tempfile::tempdir().unwrap();
    let s2 = tempfile::tempdir().unwrap();
    let mon = enrolling(&ctl, s1.path(), Role::Monitor);
    let jm = enrolling(&ctl, s2.path(), Role::Jmeter);
    let (mon_id, _) = connected(&mon).await;
    let (jm_id, _) = connected(&jm).await;
    assert_ne!(mon_id, jm_id);
    // Key and certificate stored 0600 in the state directory.
    use std::os::unix::fs::PermissionsExt;
    for f in ["agent.key", "agent.crt"] {
        let mode = std::fs::metadata(s1.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let first = ctl.registry.get(&mon_id).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = ctl.registry.get(&mon_id).unwrap();
    assert!(
        later.last_heartbeat > first.last_heartbeat,
        "no heartbeat arrived"
    );

    let url = format!("http://{}/api/agents", ctl.http_addr);
    let admin = controller::auth::create_user(
        &ctl.inventory,
        &controller::inventory::model::parse_user_name("gw-admin").unwrap(),
        "gateway test admin",
        true,
    )
    .unwrap();
    let token = controller::auth::create_api_token(&ctl.inventory, admin, "t").unwrap();
    #[allow(clippy::disallowed_methods)] // Controller::start installed the provider
    let body: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = body.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for a in list {
        assert_eq!(a["connected"], true, "{a}");
        assert_eq!(a["revoked"], false);
        assert!(a["hostname"].as_str().is_some_and(|h| !h.is_empty()));
        assert_eq!(a["arch"], std::env::consts::ARCH);
        assert!(a["last_heartbeat"].as_u64().unwrap() >= a["connected_since"].as_u64().unwrap());
    }
    let roles: Vec<&str> = list.iter().map(|a| a["role"].as_str().unwrap()).collect();
    assert!(roles.contains(&"monitor") && roles.contains(&"jmeter"));

    // Bulk data goes on streams of its own and is routed like control data.
    mon.handle
        .send_bulk(&[AgentMsg::Heartbeat { seq: 1000 }])
        .await
        .unwrap();

    stop(mon).await;
    stop(jm).await;
    // Disconnections show, and the agents stay known.
    tokio::time::sleep(Duration::from_millis(300)).await;
    #[allow(clippy::disallowed_methods)] // Controller::start installed the provider
    let body: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body.as_array()
            .unwrap()
            .iter()
            .all(|a| a["connected"] == false)
    );
    ctl.stop().await;
}

#[tokio::test]
async fn a_restarted_controller_gets_its_agents_back_without_reenrollment() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    let addr = ctl.gateway_addr;
    let state = tempfile::tempdir().unwrap();
    let agent = enrolling(&ctl, state.path(), Role::Monitor);
    let (id, epoch) = connected(&agent).await;
    assert_eq!(epoch, 1);
    ctl.stop().await;

    // The agent notices and retries.
    let mut st = agent.handle.state();
    tokio::time::timeout(
        WAIT,
        st.wait_for(|s| matches!(s, LinkState::Connecting { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let ctl = restart(dir.path(), addr).await;
    let started = std::time::Instant::now();
    let mut st = agent.handle.state();
    let back = tokio::time::timeout(
        WAIT,
        st.wait_for(|s| matches!(s, LinkState::Connected { epoch, .. } if *epoch > 1)),
    )
    .await
    .expect("agent did not come back")
    .unwrap()
    .clone();
    eprintln!("agent back {:?} after the restart", started.elapsed());
    assert!(matches!(back, LinkState::Connected { agent_id, .. } if agent_id == id));
    // Same identity, no second enrollment (the token was single-use anyway).
    let agents = ctl.inventory.agents().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].id, id);
    assert!(ctl.registry.get(&id).is_some());
    stop(agent).await;
    ctl.stop().await;
}

#[tokio::test]
async fn no_certificate_on_the_agent_protocol_is_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    // Trusts the controller, presents no certificate, asks for the agent ALPN.
    let tls = certs::tls::enrollment_config(&ctl.ca.pin(), ALPN_AGENT).unwrap();
    let conn = raw_connect(ctl.gateway_addr, tls).await;
    if let Ok((mut send, _recv)) = conn.open_bi().await {
        let _ = frame::write_frame(&mut send, &hello(None, Role::Monitor)).await;
    }
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::REJECTED);
    assert!(
        reason.contains("client certificate is required"),
        "{reason}"
    );
    assert!(ctl.registry.is_empty());
    still_serving(&ctl).await;
    ctl.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = CertificateAuthority::load_or_create(other_dir.path()).unwrap();
    let (key, csr) = AgentIdentity::new_key_and_csr().unwrap();
    let forged_id = certs::AgentId::generate();
    let forged = other
        .sign_agent(&csr, &forged_id, Role::Monitor, Duration::from_secs(3600))
        .unwrap();
    // It trusts the real controller but holds a certificate of another CA.
    let ident = AgentIdentity::from_enrollment(
        key,
        forged.cert_pem,
        ctl.ca.cert_pem().into(),
        &ctl.ca.pin(),
    )
    .unwrap();
    let store = IdentityStore::memory();
    if let IdentityStore::Memory(m) = &store {
        *m.lock().unwrap() = Some(ident);
    }
    let agent = spawn(link_config(ctl.gateway_addr, store, Role::Monitor));
    let mut st = agent.handle.state();
    let s = tokio::time::timeout(
        WAIT,
        st.wait_for(|s| matches!(s, LinkState::Connecting { attempt, .. } if *attempt >= 2)),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    eprintln!("refused as expected: {s:?}");
    assert!(ctl.registry.get(&forged_id).is_none());
    assert!(!matches!(
        *agent.handle.state().borrow(),
        LinkState::Connected { .. }
    ));
    agent.shutdown.cancel();
    let _ = agent.task.await;
    still_serving(&ctl).await;
    ctl.stop().await;
}

#[tokio::test]
async fn revoking_drops_the_live_agent_and_refuses_its_next_handshake() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    let state = tempfile::tempdir().unwrap();
    let agent = enrolling(&ctl, state.path(), Role::Jmeter);
    let (id, _) = connected(&agent).await;

    // Revoke from another process's connection, as `controller agent revoke` does.
    let cli = Inventory::open(&dir.path().join(INVENTORY_FILE)).unwrap();
    assert!(cli.revoke(&id, controller::inventory::unix_now()).unwrap());
    let err = fatal(agent).await;
    assert!(matches!(err, LinkError::Revoked), "{err}");
    assert!(ctl.registry.get(&id).is_none());

    // The same certificate again: refused at the handshake.
    let again = spawn(link_config(
        ctl.gateway_addr,
        IdentityStore::Dir(state.path().to_path_buf()),
        Role::Jmeter,
    ));
    let err = fatal(again).await;
    assert!(matches!(err, LinkError::Revoked), "{err}");

    // And after a controller restart too.
    let addr = ctl.gateway_addr;
    ctl.stop().await;
    let ctl = restart(dir.path(), addr).await;
    let again = spawn(link_config(
        ctl.gateway_addr,
        IdentityStore::Dir(state.path().to_path_buf()),
        Role::Jmeter,
    ));
    assert!(matches!(fatal(again).await, LinkError::Revoked));

    // The in-process path drops a live agent too.
    let s2 = tempfile::tempdir().unwrap();
    let other = enrolling(&ctl, s2.path(), Role::Monitor);
    let (other_id, _) = connected(&other).await;
    assert!(ctl.revoke(&other_id).unwrap());
    assert!(matches!(fatal(other).await, LinkError::Revoked));
    still_serving(&ctl).await;
    ctl.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = link_config(
        ctl.gateway_addr,
        IdentityStore::Dir(state.path().into()),
        Role::Monitor,
    );
    cfg.token = Some(
        token(&ctl, Role::Monitor, 5, Duration::ZERO)
            .expose_secret()
            .into(),
    );
    cfg.ca_pin = Some(ctl.ca.pin());
    let err = fatal(spawn(cfg)).await;
    assert!(
        matches!(&err, LinkError::Rejected(r) if r.contains("expired")),
        "{err}"
    );
    assert!(AgentIdentity::load(state.path()).unwrap().is_none());
    assert!(ctl.inventory.agents().unwrap().is_empty());
    still_serving(&ctl).await;
    ctl.stop().await;
}

#[tokio::test]
async fn a_single_use_token_works_once() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    let t = token(&ctl, Role::Monitor, 1, Duration::from_secs(600));
    let mk = |state: &Path| {
        let mut cfg = link_config(
            ctl.gateway_addr,
            IdentityStore::Dir(state.into()),
            Role::Monitor,
        );
        cfg.token = Some(t.expose_secret().into());
        cfg.ca_pin = Some(ctl.ca.pin());
        spawn(cfg)
    };
    let s1 = tempfile::tempdir().unwrap();
    let s2 = tempfile::tempdir().unwrap();
    let first = mk(s1.path());
    connected(&first).await;
    let err = fatal(mk(s2.path())).await;
    assert!(
        matches!(&err, LinkError::Rejected(r) if r.contains("no uses left")),
        "{err}"
    );
    // A token for the other role is refused too.
    let mut cfg = link_config(ctl.gateway_addr, IdentityStore::memory(), Role::Jmeter);
    cfg.token = Some(
        token(&ctl, Role::Monitor, 3, Duration::from_secs(60))
            .expose_secret()
            .into(),
    );
    cfg.ca_pin = Some(ctl.ca.pin());
    let err = fatal(spawn(cfg)).await;
    assert!(
        matches!(&err, LinkError::Rejected(r) if r.contains("monitor agents")),
        "{err}"
    );
    // So is a token the controller never issued.
    let mut cfg = link_config(ctl.gateway_addr, IdentityStore::memory(), Role::Monitor);
    cfg.token = Some(JoinToken::generate().expose_secret().into());
    cfg.ca_pin = Some(ctl.ca.pin());
    assert!(matches!(fatal(spawn(cfg)).await, LinkError::Rejected(r) if r.contains("unknown")));
    assert_eq!(ctl.inventory.agents().unwrap().len(), 1);
    stop(first).await;
    ctl.stop().await;
}

#[tokio::test]
async fn a_wrong_ca_pin_makes_the_agent_refuse_the_controller() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    let t = token(&ctl, Role::Monitor, 1, Duration::from_secs(600));
    let mut cfg = link_config(ctl.gateway_addr, IdentityStore::memory(), Role::Monitor);
    cfg.token = Some(t.expose_secret().into());
    cfg.ca_pin = Some(CaPin::of(b"some other CA"));
    let err = fatal(spawn(cfg)).await;
    match &err {
        LinkError::PinMismatch(m) => {
            assert!(m.contains("CA pin mismatch"), "{m}");
            assert!(
                m.contains(ctl.ca.pin().as_str()),
                "says which CA it saw: {m}"
            );
        }
        other => panic!("expected a pin mismatch, got {other}"),
    }
    // The token was never sent, so it still works.
    let mut cfg = link_config(ctl.gateway_addr, IdentityStore::memory(), Role::Monitor);
    cfg.token = Some(t.expose_secret().into());
    cfg.ca_pin = Some(ctl.ca.pin());
    let a = spawn(cfg);
    connected(&a).await;
    stop(a).await;
    ctl.stop().await;
}

#[tokio::test]
async fn a_protocol_version_mismatch_is_refused_clearly_without_retries() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    // Enrollment by a newer agent.
    let mut cfg = link_config(ctl.gateway_addr, IdentityStore::memory(), Role::Monitor);
    cfg.token = Some(
        token(&ctl, Role::Monitor, 1, Duration::from_secs(60))
            .expose_secret()
            .into(),
    );
    cfg.ca_pin = Some(ctl.ca.pin());
    cfg.protocol_version = 99;
    let err = fatal(spawn(cfg)).await;
    assert!(
        matches!(&err, LinkError::Rejected(r) if r.contains("protocol version mismatch") && r.contains("v99")),
        "{err}"
    );
    // An enrolled agent of another version.
    let ident = enrolled_identity(&ctl).await;
    let store = IdentityStore::memory();
    if let IdentityStore::Memory(m) = &store {
        *m.lock().unwrap() = Some(ident);
    }
    let mut cfg = link_config(ctl.gateway_addr, store, Role::Monitor);
    cfg.protocol_version = protocol::PROTOCOL_VERSION + 1;
    let started = std::time::Instant::now();
    let err = fatal(spawn(cfg)).await;
    assert!(
        matches!(&err, LinkError::Rejected(r) if r.contains("protocol version mismatch")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no quick stop: {:?}",
        started.elapsed()
    );
    still_serving(&ctl).await;
    ctl.stop().await;
}

#[tokio::test]
async fn oversized_frames_and_garbage_close_only_the_offender() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    let ident = enrolled_identity(&ctl).await;
    let mtls = || certs::tls::agent_config(&ident, ALPN_AGENT).unwrap();

    // A healthy agent that must stay connected throughout.
    let s = tempfile::tempdir().unwrap();
    let bystander = enrolling(&ctl, s.path(), Role::Jmeter);
    let (bystander_id, _) = connected(&bystander).await;

    // 1. Random bytes instead of Hello.
    let conn = raw_connect(ctl.gateway_addr, mtls()).await;
    let (mut send, _r) = conn.open_bi().await.unwrap();
    let junk: Vec<u8> = (0..64).map(|_| fastrand_byte()).collect();
    let mut framed = (junk.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&junk);
    send.write_all(&framed).await.unwrap();
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::REJECTED, "{reason}");
    assert!(reason.contains("Hello"), "{reason}");

    // 2. A proper Hello, then a frame claiming 100 MB.
    let conn = raw_connect(ctl.gateway_addr, mtls()).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    frame::write_frame(
        &mut send,
        &hello(Some(ident.agent_id.clone()), Role::Monitor),
    )
    .await
    .unwrap();
    let welcome: ControllerMsg = frame::read_frame(&mut recv, frame::MAX_CONTROL_FRAME)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(welcome, ControllerMsg::Welcome { .. }));
    send.write_all(&(100u32 << 20).to_be_bytes()).await.unwrap();
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::PROTOCOL_ERROR);
    assert!(reason.contains("exceeds"), "{reason}");

    // 3. A proper Hello, then garbage on the control stream.
    let conn = raw_connect(ctl.gateway_addr, mtls()).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    frame::write_frame(
        &mut send,
        &hello(Some(ident.agent_id.clone()), Role::Monitor),
    )
    .await
    .unwrap();
    let _: ControllerMsg = frame::read_frame(&mut recv, frame::MAX_CONTROL_FRAME)
        .await
        .unwrap()
        .unwrap();
    send.write_all(&[0, 0, 0, 3, 0xee, 0xee, 0xee])
        .await
        .unwrap();
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::PROTOCOL_ERROR);
    assert!(reason.contains("malformed"), "{reason}");

    // 4. Garbage on a bulk stream.
    let conn = raw_connect(ctl.gateway_addr, mtls()).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    frame::write_frame(
        &mut send,
        &hello(Some(ident.agent_id.clone()), Role::Monitor),
    )
    .await
    .unwrap();
    let _: ControllerMsg = frame::read_frame(&mut recv, frame::MAX_CONTROL_FRAME)
        .await
        .unwrap()
        .unwrap();
    let mut bulk = conn.open_uni().await.unwrap();
    bulk.write_all(&[0, 0, 0, 2, 0x7f, 0x7f]).await.unwrap();
    bulk.finish().unwrap();
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::PROTOCOL_ERROR);
    assert!(reason.contains("bulk"), "{reason}");

    // 5. Random bytes on the enrollment protocol, and a Hello that lies
    // about who it is.
    let tls = certs::tls::enrollment_config(&ctl.ca.pin(), ALPN_ENROLL).unwrap();
    let conn = raw_connect(ctl.gateway_addr, tls).await;
    let (mut send, _r) = conn.open_bi().await.unwrap();
    send.write_all(&framed).await.unwrap();
    let (code, _) = closed_with(&conn).await;
    assert_eq!(code, close::REJECTED);
    let conn = raw_connect(ctl.gateway_addr, mtls()).await;
    let (mut send, _r) = conn.open_bi().await.unwrap();
    frame::write_frame(
        &mut send,
        &hello(Some(certs::AgentId::generate()), Role::Monitor),
    )
    .await
    .unwrap();
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::REJECTED);
    assert!(reason.contains("certificate is for"), "{reason}");

    // The bystander never noticed.
    let live = ctl.registry.get(&bystander_id).expect("bystander dropped");
    assert!(matches!(
        *bystander.handle.state().borrow(),
        LinkState::Connected { epoch: 1, .. }
    ));
    assert_eq!(live.id, bystander_id);
    still_serving(&ctl).await;
    stop(bystander).await;
    ctl.stop().await;
}

#[tokio::test]
async fn a_bad_csr_is_refused_without_burning_the_token() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    let t = token(&ctl, Role::Monitor, 1, Duration::from_secs(600));
    let tls = certs::tls::enrollment_config(&ctl.ca.pin(), ALPN_ENROLL).unwrap();
    let conn = raw_connect(ctl.gateway_addr, tls).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    frame::write_frame(&mut send, &hello(None, Role::Monitor))
        .await
        .unwrap();
    let enroll = AgentMsg::Enroll {
        token: t.expose_secret().into(),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            .into(),
    };
    frame::write_frame(&mut send, &enroll).await.unwrap();
    let reply: Option<ControllerMsg> = frame::read_frame(&mut recv, frame::MAX_CONTROL_FRAME)
        .await
        .unwrap_or(None);
    if let Some(m) = reply {
        assert!(
            matches!(m, ControllerMsg::Rejected { ref reason } if reason.contains("signing request")),
            "{m:?}"
        );
    }
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, close::REJECTED);
    assert!(reason.contains("signing request"), "{reason}");
    let policy = ctl.inventory.token_policy(&t.hash()).unwrap().unwrap();
    assert_eq!(policy.uses_left, 1);
    ctl.stop().await;
}

fn fastrand_byte() -> u8 {
    // Random but never a valid Hello: variant 0 needs a first byte of 0.
    loop {
        let b = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 251) as u8;
        if b != 0 {
            return b;
        }
    }
}

#[tokio::test]
async fn an_enrollment_retried_with_the_same_key_gets_the_same_identity_without_a_second_use() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ctl = start(dir.path()).await;
    let t = token(&ctl, Role::Monitor, 1, Duration::from_secs(600));
    let (_, csr) = AgentIdentity::new_key_and_csr().unwrap();
    let enroll = |csr: String| {
        let pin = ctl.ca.pin();
        let secret = t.expose_secret().to_string();
        let addr = ctl.gateway_addr;
        async move {
            let tls = certs::tls::enrollment_config(&pin, ALPN_ENROLL).unwrap();
            let conn = raw_connect(addr, tls).await;
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            frame::write_frame(&mut send, &hello(None, Role::Monitor))
                .await
                .unwrap();
            frame::write_frame(
                &mut send,
                &AgentMsg::Enroll {
                    token: secret,
                    csr_pem: csr,
                },
            )
            .await
            .unwrap();
            let reply: Option<ControllerMsg> =
                frame::read_frame(&mut recv, frame::MAX_CONTROL_FRAME)
                    .await
                    .unwrap_or(None);
            conn.close(0u32.into(), b"done");
            reply
        }
    };
    // The answer to the first attempt is "lost": the agent tries again.
    let first = enroll(csr.clone()).await;
    let second = enroll(csr).await;
    let id_of = |m: Option<ControllerMsg>| match m {
        Some(ControllerMsg::Enrolled { agent_id, .. }) => agent_id,
        other => panic!("not enrolled: {other:?}"),
    };
    assert_eq!(id_of(first), id_of(second));
    assert_eq!(ctl.inventory.agents().unwrap().len(), 1);
    // Another key with the single-use token: refused.
    let (_, other_csr) = AgentIdentity::new_key_and_csr().unwrap();
    match enroll(other_csr).await {
        Some(ControllerMsg::Rejected { reason }) => {
            assert!(reason.contains("no uses left"), "{reason}")
        }
        None => {}
        other => panic!("a second agent enrolled: {other:?}"),
    }
    assert_eq!(ctl.inventory.agents().unwrap().len(), 1);
    ctl.stop().await;
}
