//! The agent's main loop: sample every interval, write each batch to the
//! spool first, stream the spool to the controller in order, trim it on
//! acks, send host facts at every (re)connection and when they change, and
//! follow the controller's `Watch` (application identifier).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::frame;
use protocol::metrics::HostFacts;
use protocol::{AgentMsg, ControllerMsg, LinkHandle, LinkState};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cache::CacheCleaner;
use crate::collect::{Roots, facts};
use crate::sampler::Sampler;
use crate::spool::Spool;

/// Host facts are re-read this often and sent if they changed.
const FACTS_EVERY: Duration = Duration::from_secs(600);
/// Batches read from the spool per write burst.
const REPLAY_CHUNK: usize = 256;

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub interval: Duration,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// Drop the page cache when available memory falls below this percent.
    pub drop_caches_below_pct: Option<f32>,
    pub roots: Roots,
}

pub async fn run(
    cfg: MonitorConfig,
    link: LinkHandle,
    mut from_controller: mpsc::Receiver<ControllerMsg>,
    shutdown: CancellationToken,
) -> Result<(), crate::spool::SpoolError> {
    let spool = Arc::new(Mutex::new(Spool::open(
        &cfg.spool_dir,
        cfg.spool_max_bytes,
    )?));
    let wake = Arc::new(Notify::new());
    let pusher = tokio::spawn(push(
        link.clone(),
        spool.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
    let facts_sender = tokio::spawn(send_facts(
        link.clone(),
        cfg.roots.clone(),
        shutdown.clone(),
    ));

    let mut sampler = Sampler::new(cfg.roots.clone());
    let mut cleaner = cfg.drop_caches_below_pct.map(CacheCleaner::new);
    // Drops the controller asks for; shares the rate limit when both are on.
    let mut last_mem = None;
    sampler.sample(); // primes the counters rates are computed from
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {
                let sample = sampler.sample();
                if let (Some(c), Some(mem)) = (cleaner.as_mut(), sample.mem.as_ref()) {
                    c.check(mem);
                }
                last_mem = sample.mem;
                let mut s = spool.lock().expect("spool lock");
                let dropped_before = s.take_dropped_unreported();
                s.append(|seq| {
                    frame::encode(&AgentMsg::MetricBatch { seq, dropped_before, samples: vec![sample] })
                        .expect("a sample always encodes")
                });
                drop(s);
                wake.notify_one();
            }
            msg = from_controller.recv() => match msg {
                Some(ControllerMsg::MetricAck { seq }) => spool.lock().expect("spool lock").ack(seq),
                Some(ControllerMsg::Watch { identifier }) => {
                    if identifier.as_deref() != sampler.identifier() {
                        info!(?identifier, "application identifier changed");
                        sampler.set_identifier(identifier);
                    }
                }
                Some(ControllerMsg::DropCaches) => {
                    let mem = last_mem.unwrap_or_default();
                    cleaner.get_or_insert_with(|| CacheCleaner::new(0.0)).requested(&mem);
                }
                Some(other) => debug!(?other, "ignored controller message"),
                None => break,
            },
        }
    }
    pusher.abort();
    facts_sender.abort();
    Ok(())
}

/// Streams unacknowledged batches, oldest first, on one bulk stream per
/// connection. After a reconnection it starts again from the first batch
/// the controller has not acknowledged; the controller drops repeats.
async fn push(
    link: LinkHandle,
    spool: Arc<Mutex<Spool>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut state = link.state();
    loop {
        let Some((_, epoch)) = (tokio::select! {
            _ = shutdown.cancelled() => return,
            c = link.connected() => c,
        }) else {
            return;
        };
        let mut stream = match link.open_stream().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "cannot open the metrics stream yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut next = spool.lock().expect("spool lock").acked() + 1;
        'conn: loop {
            let batch = spool
                .lock()
                .expect("spool lock")
                .read_from(next, REPLAY_CHUNK);
            if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = wake.notified() => continue 'conn,
                    _ = state.wait_for(|s| !matches!(s, LinkState::Connected { epoch: e, .. } if *e == epoch)) => break 'conn,
                }
            }
            for (seq, framed) in batch {
                if let Err(e) = stream.send_encoded(&framed).await {
                    warn!(error = %e, seq, "metrics stream broken; resending after reconnection");
                    break 'conn;
                }
                next = seq + 1;
            }
        }
    }
}

/// Sends host facts at each new connection and whenever they change.
async fn send_facts(link: LinkHandle, roots: Roots, shutdown: CancellationToken) {
    let mut state = link.state();
    let mut last_sent: Option<(u64, HostFacts)> = None;
    let mut refresh = tokio::time::interval(FACTS_EVERY);
    loop {
        let epoch = match &*state.borrow_and_update() {
            LinkState::Connected { epoch, .. } => Some(*epoch),
            _ => None,
        };
        if let Some(epoch) = epoch {
            match facts::collect_facts(&roots) {
                Ok(f) => {
                    let changed = last_sent
                        .as_ref()
                        .is_none_or(|(e, old)| *e != epoch || *old != f);
                    if changed && link.send(AgentMsg::HostFacts(f.clone())).is_ok() {
                        last_sent = Some((epoch, f));
                    }
                }
                Err(e) => warn!(error = %e, "cannot read host facts"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = state.changed() => if r.is_err() { return },
            _ = refresh.tick() => {}
        }
    }
}
