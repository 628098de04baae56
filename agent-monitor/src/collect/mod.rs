//! Collectors: one file per source, each a pure parser over the text or
//! bytes the kernel gives plus a thin I/O shell. A collector keeps only the
//! previous counters it needs for rates. A failing collector returns its
//! error; the [`crate::sampler`] records it and carries on with the others.
//!
//! Collectors read under a [`Roots`] (normally `/proc` and `/sys`) so tests
//! can point them at captured fixtures.

pub mod cpu;
pub mod disk;
pub mod facts;
pub mod filesystem;
pub mod jvm;
pub mod memory;
pub mod network;
pub mod ports;
pub mod process;
pub mod tcp;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {what}: {detail}")]
    Parse { what: &'static str, detail: String },
}

impl CollectError {
    pub fn parse(what: &'static str, detail: impl Into<String>) -> CollectError {
        CollectError::Parse {
            what,
            detail: detail.into(),
        }
    }
}

/// Where the kernel's files are.
#[derive(Debug, Clone)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
        }
    }
}

impl Roots {
    pub fn read_proc(&self, rel: &str) -> Result<String, CollectError> {
        read(&self.proc.join(rel))
    }

    pub fn read_sys(&self, rel: &str) -> Result<String, CollectError> {
        read(&self.sys.join(rel))
    }
}

pub fn read(path: &Path) -> Result<String, CollectError> {
    std::fs::read_to_string(path).map_err(|source| CollectError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Rate of a counter that may have wrapped or been reset (then 0), rounded
/// to a whole unit per second: the sampling interval's jitter makes finer
/// digits noise, and round numbers compress several times better in the
/// controller's store.
pub(crate) fn rate(now: u64, prev: u64, secs: f64) -> f64 {
    if secs <= 0.0 || now < prev {
        0.0
    } else {
        ((now - prev) as f64 / secs).round()
    }
}

/// A percentage, 0..=100, to two decimals (for the same reason as `rate`).
pub(crate) fn pct(part: f64, whole: f64) -> f32 {
    if whole <= 0.0 {
        0.0
    } else {
        round2(((part / whole) * 100.0).clamp(0.0, 100.0))
    }
}

pub(crate) fn round2(v: f64) -> f32 {
    ((v * 100.0).round() / 100.0) as f32
}

/// Path of a test fixture (tests only).
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/proc")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
