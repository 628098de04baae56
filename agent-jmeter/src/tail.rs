//! Following JMeter's results file while it is written.
//!
//! Owns the read loop: every [`POLL`] it reads what JMeter appended, feeds
//! [`crate::results`], and emits each second once the clock is
//! [`SECOND_GRACE`] past its end. Outside debug mode it frees the part of
//! the file already read by punching a hole in it
//! (`fallocate(PUNCH_HOLE)`): the file keeps its length and JMeter keeps
//! appending, but the disk holds only the unread tail, with no race
//! against JMeter's writes (truncating or renaming would lose rows
//! written between the last read and the cut). Must not parse CSV itself
//! nor know the process: it stops when the supervisor says the JVM ended.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::results::{Aggregator, ResultsParser};
use crate::supervisor::Event;

/// How often the file is read: 5 Hz keeps a second's results < 0.5 s late
/// at a negligible cost (one read of what was appended).
pub const POLL: Duration = Duration::from_millis(200);
/// How long after a second's end its rows may still arrive (autoflush
/// writes each row as its sample ends; this covers scheduling jitter).
pub const SECOND_GRACE: Duration = Duration::from_millis(300);
/// Free the read part once this much accumulated: fewer syscalls, and
/// disk use stays under about twice this.
pub const PUNCH_EVERY: u64 = 4 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

/// What the tailer did, for the supervisor's report.
#[derive(Debug, Clone, Default)]
pub struct TailStats {
    pub bytes: u64,
    pub samples: u64,
    pub seconds_emitted: u64,
    /// Rows that were not samples.
    pub skipped: u64,
    /// Time spent reading and parsing (not sleeping).
    pub busy: Duration,
    /// Bytes freed by hole punching.
    pub punched: u64,
    /// Why reading stopped early (a header without the needed columns).
    pub error: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Follows `path` until `done` is set (the JVM exited), then reads what is
/// left and emits every remaining second. Blocking: run it on its own
/// thread.
pub fn run(path: &Path, debug: bool, events: &mpsc::Sender<Event>, done: &AtomicBool) -> TailStats {
    let mut stats = TailStats::default();
    let mut parser = ResultsParser::default();
    let mut agg = Aggregator::default();
    let mut file: Option<File> = None;
    let mut offset = 0u64;
    let mut punched_to = 0u64;
    let mut punch_ok = !debug;
    let mut buf = vec![0u8; CHUNK];
    let emit = |seconds: Vec<crate::results::Second>, stats: &mut TailStats| {
        for s in seconds {
            stats.seconds_emitted += 1;
            // A closed receiver: nobody listens any more, keep reading
            // so the run still ends cleanly.
            let _ = events.blocking_send(Event::Second(s));
        }
    };
    loop {
        // Read after seeing `done`, so the last rows are never missed.
        let finishing = done.load(Ordering::Acquire);
        let started = Instant::now();
        if file.is_none() {
            // JMeter creates the file when the test starts. Opened for
            // writing too: punching a hole needs a writable descriptor
            // (nothing is ever written through it).
            file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .ok();
        }
        if let Some(f) = file.as_mut() {
            // One pass reads what is there now; bounded by the file's
            // growth during the pass, which JMeter's rate bounds.
            loop {
                let n = match f.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                if n == 0 {
                    break;
                }
                offset += n as u64;
                stats.bytes += n as u64;
                if stats.error.is_none() {
                    let r = parser.feed(&buf[..n], |s| {
                        stats.samples += 1;
                        agg.add(s);
                    });
                    if let Err(e) = r {
                        stats.error = Some(e);
                    }
                }
            }
            if punch_ok && offset - punched_to >= PUNCH_EVERY {
                let to = offset & !4095;
                match punch(f, to) {
                    Ok(()) => {
                        stats.punched = to;
                        punched_to = to;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "cannot free the read part of {} ({e}): it grows until the run ends",
                            path.display()
                        );
                        punch_ok = false;
                    }
                }
                // The position is unchanged by punching; re-seek anyway
                // to be independent of the file system.
                let _ = f.seek(SeekFrom::Start(offset));
            }
        }
        stats.skipped = parser.skipped;
        if finishing {
            let rest = agg.take_all();
            emit(rest, &mut stats);
            stats.busy += started.elapsed();
            return stats;
        }
        let cutoff =
            (now_ms() - i64::try_from(SECOND_GRACE.as_millis()).unwrap_or(0)).div_euclid(1000);
        let ready = agg.take_before(cutoff);
        emit(ready, &mut stats);
        stats.busy += started.elapsed();
        std::thread::sleep(POLL);
    }
}

/// Frees `[0, to)` of `f` on disk, keeping its length.
fn punch(f: &File, to: u64) -> nix::Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    let len = i64::try_from(to).unwrap_or(i64::MAX);
    fallocate(
        f.as_fd(),
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        0,
        len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;

    /// A writer appends rows for ~1.5 s while the tailer follows; every
    /// row is counted once, and outside debug mode the file's blocks stay
    /// bounded while its length grows.
    #[test]
    fn follows_appends_and_frees_what_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.csv");
        let done = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = mpsc::channel(100_000);
        let tailer = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || run(&path, false, &tx, &done))
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"timeStamp,elapsed,label,success,bytes,failureMessage\n")
            .unwrap();
        let pad = "x".repeat(200);
        let start = now_ms();
        let mut rows = 0u64;
        let mut max_blocks = 0;
        for i in 0..60_000u64 {
            // A row split across two writes, as a partial flush would.
            write!(
                f,
                "{},{},\"lab,el\",true,10,\"{pad}",
                start + (i % 1500) as i64,
                i % 100
            )
            .unwrap();
            f.write_all(b"\"\n").unwrap();
            rows += 1;
            if i % 5_000 == 0 {
                std::thread::sleep(Duration::from_millis(100));
                max_blocks = max_blocks.max(std::fs::metadata(&path).unwrap().blocks());
            }
        }
        std::thread::sleep(Duration::from_millis(400));
        done.store(true, Ordering::Release);
        let stats = tailer.join().unwrap();
        let mut counted = 0;
        while let Ok(Event::Second(s)) = rx.try_recv() {
            counted += s.count;
        }
        assert_eq!(counted, rows);
        assert_eq!(stats.samples, rows);
        let meta = std::fs::metadata(&path).unwrap();
        eprintln!(
            "{} bytes written, {} freed, {} KiB on disk at the end (max seen {} KiB), busy {:?}",
            meta.len(),
            stats.punched,
            meta.blocks() / 2,
            max_blocks / 2,
            stats.busy
        );
        assert!(stats.punched > 0, "nothing freed");
        assert!(meta.blocks() * 512 < meta.len() / 2, "disk use not bounded");
    }
}
