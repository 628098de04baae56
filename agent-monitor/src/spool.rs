//! The agent's on-disk buffer of metric batches not yet acknowledged by the
//! controller, so nothing is lost while the controller or the network is
//! down, nor across an agent restart.
//!
//! Batches are appended as records to segment files of about 1 MiB
//! (`<first seq>.seg`): `[u32 len][u64 seq][encoded frame]`. The controller's
//! cumulative ack removes whole segments; when the total size passes the
//! cap, the oldest segment goes first and its unacknowledged batches are
//! counted as dropped. A torn record at the tail (crash mid-write) ends the
//! segment. If the disk refuses writes (full, read-only), batches are kept
//! in memory under the same cap until it accepts them again.
//!
//! It stores opaque encoded frames and knows nothing of what is in them.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

const SEGMENT_BYTES: u64 = 1 << 20;
/// The newest records are also kept in memory up to this size, so sending a
/// fresh batch never re-reads a segment file; the disk is read only to
/// replay after an outage.
const RECENT_BYTES: usize = 256 << 10;
const ACKED_FILE: &str = "acked";
const HEADER: usize = 12;
const ACKED_SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug)]
struct Segment {
    first: u64,
    last: u64,
    bytes: u64,
    path: PathBuf,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    cap_bytes: u64,
    segments: VecDeque<Segment>,
    current: Option<File>,
    /// Records the disk refused, oldest first.
    memory: VecDeque<(u64, Vec<u8>)>,
    /// Copies of the newest records written to disk, oldest first.
    recent: VecDeque<(u64, Vec<u8>)>,
    recent_bytes: usize,
    memory_bytes: u64,
    next_seq: u64,
    acked: u64,
    /// Batches dropped since start because the cap was reached.
    dropped: u64,
    /// Dropped batches not yet reported to the controller.
    dropped_unreported: u64,
    disk_failing: bool,
    acked_saved_at: Option<std::time::Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn seg_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// Records of a segment's bytes: (seq, frame). Stops at a torn tail.
pub fn parse_records(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(h) = bytes.get(at..at + HEADER) {
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let seq = u64::from_be_bytes(h[4..12].try_into().expect("8 bytes"));
        let Some(frame) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        out.push((seq, frame));
        at += HEADER + len;
    }
    out
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering what a previous run
    /// left: unacknowledged batches and the sequence counter.
    pub fn open(dir: &Path, cap_bytes: u64) -> Result<Spool, SpoolError> {
        let dir_err = |source| SpoolError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        let acked = std::fs::read_to_string(dir.join(ACKED_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(dir_err)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        names.sort();
        let mut segments = VecDeque::new();
        let mut next_seq = acked + 1;
        for path in names {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "unreadable spool segment skipped");
                    continue;
                }
            };
            let recs = parse_records(&bytes);
            let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            next_seq = next_seq.max(last.0 + 1);
            segments.push_back(Segment {
                first: first.0,
                last: last.0,
                bytes: bytes.len() as u64,
                path,
            });
        }
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            cap_bytes: cap_bytes.max(SEGMENT_BYTES),
            segments,
            current: None,
            memory: VecDeque::new(),
            memory_bytes: 0,
            recent: VecDeque::new(),
            recent_bytes: 0,
            next_seq,
            acked,
            dropped: 0,
            dropped_unreported: 0,
            disk_failing: false,
            acked_saved_at: None,
        };
        spool.remove_acked_segments();
        let pending = spool.next_seq - 1 - spool.acked.min(spool.next_seq - 1);
        if pending > 0 {
            info!(
                pending,
                "spool holds batches from before; they will be sent first"
            );
        }
        Ok(spool)
    }

    /// The sequence number the next batch will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes the count of drops not yet told to the controller.
    pub fn take_dropped_unreported(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_unreported)
    }

    /// Bytes held on disk and in memory.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum::<u64>() + self.memory_bytes
    }

    /// Appends a batch built by `frame_for(seq)`; returns its seq.
    pub fn append(&mut self, frame_for: impl FnOnce(u64) -> Vec<u8>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = frame_for(seq);
        // Anything already in memory must reach disk first, to keep order.
        self.flush_memory();
        if self.memory.is_empty() {
            match self.write_record(seq, &frame) {
                Ok(()) => {
                    if self.disk_failing {
                        info!("spool disk writable again");
                        self.disk_failing = false;
                    }
                }
                Err(e) => {
                    if !self.disk_failing {
                        warn!(dir = %self.dir.display(), error = %e, "spool disk write failed; buffering in memory");
                        self.disk_failing = true;
                    }
                    self.push_memory(seq, frame);
                }
            }
        } else {
            self.push_memory(seq, frame);
        }
        self.enforce_cap();
        seq
    }

    fn push_memory(&mut self, seq: u64, frame: Vec<u8>) {
        self.memory_bytes += (frame.len() + HEADER) as u64;
        self.memory.push_back((seq, frame));
    }

    fn flush_memory(&mut self) {
        while let Some((seq, frame)) = self.memory.front() {
            let (seq, len) = (*seq, frame.len());
            let frame = frame.clone();
            if self.write_record(seq, &frame).is_err() {
                return;
            }
            self.memory.pop_front();
            self.memory_bytes -= (len + HEADER) as u64;
        }
    }

    fn write_record(&mut self, seq: u64, frame: &[u8]) -> std::io::Result<()> {
        let need_new = match self.segments.back() {
            None => true,
            Some(s) => {
                self.current.is_none() || s.bytes + (frame.len() + HEADER) as u64 > SEGMENT_BYTES
            }
        };
        if need_new {
            let path = self.dir.join(seg_name(seq));
            let f = OpenOptions::new().create(true).append(true).open(&path)?;
            self.current = Some(f);
            self.segments.push_back(Segment {
                first: seq,
                last: seq,
                bytes: 0,
                path,
            });
        }
        let mut rec = Vec::with_capacity(HEADER + frame.len());
        rec.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        rec.extend_from_slice(&seq.to_be_bytes());
        rec.extend_from_slice(frame);
        let f = self.current.as_mut().expect("segment open");
        if let Err(e) = f.write_all(&rec) {
            // A partial record would be torn; start a fresh segment next time.
            // An empty file left behind is removed at the next open.
            self.current = None;
            if self.segments.back().is_some_and(|s| s.bytes == 0) {
                self.segments.pop_back();
            }
            return Err(e);
        }
        let s = self.segments.back_mut().expect("segment open");
        s.last = seq;
        s.bytes += rec.len() as u64;
        self.recent_bytes += frame.len();
        self.recent.push_back((seq, frame.to_vec()));
        while self.recent_bytes > RECENT_BYTES
            && let Some((_, f)) = self.recent.pop_front()
        {
            self.recent_bytes -= f.len();
        }
        Ok(())
    }

    fn enforce_cap(&mut self) {
        while self.bytes() > self.cap_bytes {
            let lost = if self.segments.len() > 1
                || (self.segments.len() == 1 && !self.memory.is_empty())
            {
                let s = self.segments.pop_front().expect("non-empty");
                let _ = std::fs::remove_file(&s.path);
                if self.segments.is_empty() {
                    self.current = None;
                }
                s.last.saturating_sub(s.first.max(self.acked + 1)) + u64::from(s.last > self.acked)
            } else if let Some((seq, frame)) = self.memory.pop_front() {
                self.memory_bytes -= (frame.len() + HEADER) as u64;
                u64::from(seq > self.acked)
            } else {
                break;
            };
            if lost > 0 {
                self.dropped += lost;
                self.dropped_unreported += lost;
                warn!(
                    lost,
                    total_dropped = self.dropped,
                    "spool full: oldest unacknowledged batches dropped"
                );
            }
        }
    }

    /// Records the controller's cumulative ack. An ack beyond what we ever
    /// numbered means our buffer was lost (state directory restored or
    /// wiped): continue numbering after the controller's, or every new
    /// batch would look like a replay to it.
    pub fn ack(&mut self, seq: u64) {
        if seq <= self.acked {
            return;
        }
        if seq >= self.next_seq {
            warn!(
                controller = seq,
                ours = self.next_seq - 1,
                "controller has newer batches than this spool; continuing after them"
            );
            self.next_seq = seq + 1;
        }
        self.acked = seq;
        // Persisting every ack would cost a file write and a rename each
        // second; after a restart, batches acked since the last save are
        // sent again and the controller drops them as repeats.
        if self
            .acked_saved_at
            .is_none_or(|t| t.elapsed() >= ACKED_SAVE_EVERY)
        {
            self.save_acked();
        }
        self.remove_acked_segments();
        while self.memory.front().is_some_and(|(s, _)| *s <= seq) {
            let (_, f) = self.memory.pop_front().expect("checked");
            self.memory_bytes -= (f.len() + HEADER) as u64;
        }
    }

    fn save_acked(&mut self) {
        let tmp = self.dir.join("acked.tmp");
        if std::fs::write(&tmp, self.acked.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, self.dir.join(ACKED_FILE));
        }
        self.acked_saved_at = Some(std::time::Instant::now());
    }

    fn remove_acked_segments(&mut self) {
        // Never the segment being appended to.
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.last <= self.acked)
        {
            let s = self.segments.pop_front().expect("checked");
            let _ = std::fs::remove_file(&s.path);
        }
    }

    /// Up to `max` batches with seq >= `from`, in order: (seq, frame).
    pub fn read_from(&self, from: u64, max: usize) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        // Batches dropped by the cap are gone: start at the oldest kept.
        let from = from.max(self.segments.front().map_or(from, |s| s.first));
        let in_recent = self.recent.front().is_some_and(|(first, _)| *first <= from);
        if in_recent {
            for (seq, frame) in &self.recent {
                if *seq >= from && out.len() < max {
                    out.push((*seq, frame.clone()));
                }
            }
        } else {
            self.read_disk(from, max, &mut out);
        }
        let from = out.last().map_or(from, |(s, _)| s + 1);
        for (seq, frame) in &self.memory {
            if *seq >= from && out.len() < max {
                out.push((*seq, frame.clone()));
            }
        }
        out
    }

    fn read_disk(&self, from: u64, max: usize, out: &mut Vec<(u64, Vec<u8>)>) {
        for s in &self.segments {
            if s.last < from || out.len() >= max {
                continue;
            }
            let mut bytes = Vec::with_capacity(s.bytes as usize);
            if File::open(&s.path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .is_err()
            {
                continue;
            }
            for (seq, frame) in parse_records(&bytes) {
                if seq >= from && out.len() < max {
                    out.push((seq, frame.to_vec()));
                }
            }
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.save_acked();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, size: usize) -> Vec<u8> {
        let mut v = seq.to_le_bytes().to_vec();
        v.resize(size, 0xab);
        v
    }

    fn seqs(s: &Spool, from: u64) -> Vec<u64> {
        s.read_from(from, usize::MAX)
            .into_iter()
            .map(|(q, _)| q)
            .collect()
    }

    #[test]
    fn batches_survive_a_restart_and_acks_trim() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 8 << 20).unwrap();
        for _ in 0..10 {
            s.append(|q| frame(q, 100));
        }
        assert_eq!(seqs(&s, 1), (1..=10).collect::<Vec<_>>());
        s.ack(4);
        drop(s);
        let mut s = Spool::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(s.acked(), 4);
        assert_eq!(s.next_seq(), 11);
        assert_eq!(seqs(&s, 5), (5..=10).collect::<Vec<_>>());
        let got = s.read_from(7, 1);
        assert_eq!(got[0].1, frame(7, 100));
        s.ack(10);
        s.ack(3); // stale acks are ignored
        assert_eq!(s.acked(), 10);
        // The controller knows more than we do: our buffer was lost.
        s.ack(100);
        assert_eq!(s.append(|q| frame(q, 10)), 101);
    }

    #[test]
    fn the_cap_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 2 << 20).unwrap();
        // ~5 MiB of 10 KiB batches into a 2 MiB spool.
        for _ in 0..500 {
            s.append(|q| frame(q, 10_000));
        }
        assert!(s.bytes() <= 2 << 20, "{}", s.bytes());
        assert!(s.dropped() > 250, "{}", s.dropped());
        let left = seqs(&s, 1);
        assert_eq!(*left.last().unwrap(), 500);
        assert_eq!(
            left.len() as u64 + s.dropped(),
            500,
            "every batch kept or counted"
        );
        let w: Vec<u64> = left.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(w.iter().all(|d| *d == 1), "kept batches are contiguous");
        assert_eq!(s.take_dropped_unreported(), s.dropped());
        assert_eq!(s.take_dropped_unreported(), 0);
    }

    #[test]
    fn fresh_batches_come_from_memory_and_old_ones_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 64 << 20).unwrap();
        for _ in 0..100 {
            s.append(|q| frame(q, 10_000));
        }
        // ~1 MB written, 256 KiB of it recent: both paths agree.
        assert!(s.recent.len() < 100 && !s.recent.is_empty());
        assert_eq!(seqs(&s, 1), (1..=100).collect::<Vec<_>>());
        assert_eq!(seqs(&s, 95), (95..=100).collect::<Vec<_>>());
        assert_eq!(
            s.read_from(60, 3).iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![60, 61, 62]
        );
        assert_eq!(s.read_from(99, 10)[1].1, frame(100, 10_000));
    }

    #[test]
    fn a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 8 << 20).unwrap();
        for _ in 0..3 {
            s.append(|q| frame(q, 50));
        }
        drop(s);
        let seg = dir.path().join(seg_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0, 0, 1, 0, 0, 0]).unwrap();
        let mut s = Spool::open(dir.path(), 8 << 20).unwrap();
        assert_eq!(seqs(&s, 1), vec![1, 2, 3]);
        assert_eq!(s.append(|q| frame(q, 50)), 4);
        assert!(parse_records(&[1, 2, 3]).is_empty());
        assert!(parse_records(&[0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 5]).is_empty());
    }

    #[test]
    fn a_full_disk_buffers_in_memory_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 2 << 20).unwrap();
        s.append(|q| frame(q, 100));
        // Every new segment will be /dev/full: writes fail with ENOSPC.
        s.current = None;
        for q in 2..20 {
            std::os::unix::fs::symlink("/dev/full", dir.path().join(seg_name(q))).unwrap();
        }
        for _ in 2..=5 {
            s.append(|q| frame(q, 100));
        }
        assert!(s.disk_failing);
        assert_eq!(
            seqs(&s, 1),
            vec![1, 2, 3, 4, 5],
            "nothing lost while the disk is full"
        );
        for q in 2..20 {
            let _ = std::fs::remove_file(dir.path().join(seg_name(q)));
        }
        s.append(|q| frame(q, 100));
        assert!(!s.disk_failing);
        assert!(s.memory.is_empty());
        assert_eq!(seqs(&s, 1), vec![1, 2, 3, 4, 5, 6]);
        drop(s);
        let s = Spool::open(dir.path(), 2 << 20).unwrap();
        assert_eq!(
            seqs(&s, 1),
            vec![1, 2, 3, 4, 5, 6],
            "and it all reached the disk"
        );
    }
}
