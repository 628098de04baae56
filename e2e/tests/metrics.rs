//! Zero loss: every metric batch agent-monitor makes reaches the controller
//! exactly once, through a controller outage of 30 s and through a network
//! cut long enough to kill the QUIC connection. Controller and agent run
//! in-process here (same code as the binaries) so the test can see every
//! batch the controller accepts, across controller restarts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use controller::Controller;
use e2e::inproc::{settings, start_controller, start_monitor};
use e2e::{UdpProxy, wait_for};

const INTERVAL: Duration = Duration::from_millis(200);

/// Records the seq of every batch the controller accepts.
fn record(ctl: &Controller, seen: Arc<Mutex<Vec<u64>>>) {
    let mut rx = ctl.metrics.subscribe();
    tokio::spawn(async move {
        while let Ok(b) = rx.recv().await {
            seen.lock().unwrap().push(b.seq);
        }
    });
}

fn max_seen(seen: &Mutex<Vec<u64>>) -> u64 {
    seen.lock().unwrap().iter().copied().max().unwrap_or(0)
}

/// Exactly 1..=max, each once, in order.
fn assert_exactly_once(seen: &Mutex<Vec<u64>>) -> u64 {
    let v = seen.lock().unwrap().clone();
    let max = v.iter().copied().max().unwrap_or(0);
    let expected: Vec<u64> = (1..=max).collect();
    assert_eq!(v, expected, "batches lost, doubled or out of order");
    max
}

async fn wait_past(seen: &Arc<Mutex<Vec<u64>>>, target: u64, what: &str) {
    let s = seen.clone();
    wait_for(what, Duration::from_secs(60), || {
        let s = s.clone();
        async move { (max_seen(&s) >= target).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_controller_down_for_30_seconds_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let ctl = start_controller(&settings(dir.path(), "127.0.0.1:0".parse().unwrap())).await;
    let addr = ctl.gateway_addr;
    let seen = Arc::new(Mutex::new(Vec::new()));
    record(&ctl, seen.clone());
    let _agent = start_monitor(&ctl, addr, state.path(), INTERVAL);
    wait_past(&seen, 10, "first batches").await;

    ctl.stop().await;
    let before = max_seen(&seen);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let ctl = start_controller(&settings(dir.path(), addr)).await;
    record(&ctl, seen.clone());
    // 30 s at 5 batches/s were made while it was down.
    wait_past(
        &seen,
        before + 150 + 10,
        "the outage's batches and new ones",
    )
    .await;
    let total = assert_exactly_once(&seen);
    eprintln!("{total} batches, {before} before the outage, each exactly once");
    let host = &ctl.metrics.hosts()[0];
    assert_eq!(host.dropped_by_agent, 0);
    assert!(host.latest.as_ref().unwrap().cpu.is_some());
    assert!(host.facts.is_some(), "facts sent after reconnecting");
    ctl.stop().await;
}

#[tokio::test]
async fn a_network_cut_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let ctl = start_controller(&settings(dir.path(), "127.0.0.1:0".parse().unwrap())).await;
    let proxy = UdpProxy::start(ctl.gateway_addr).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    record(&ctl, seen.clone());
    let _agent = start_monitor(&ctl, proxy.addr, state.path(), INTERVAL);
    wait_past(&seen, 10, "first batches").await;

    // Longer than the QUIC idle timeout: the connection dies on both sides.
    proxy.set_cut(true);
    tokio::time::sleep(protocol::endpoint::IDLE_TIMEOUT + Duration::from_secs(4)).await;
    let during = max_seen(&seen);
    let agent_id = ctl.metrics.hosts()[0].agent_id.clone();
    assert!(
        ctl.registry.get(&agent_id).is_none(),
        "the controller noticed the cut"
    );
    proxy.set_cut(false);
    wait_past(&seen, during + 120, "the cut's batches and new ones").await;
    let total = assert_exactly_once(&seen);
    eprintln!("{total} batches, {during} before the cut was noticed, each exactly once");
    ctl.stop().await;
}
