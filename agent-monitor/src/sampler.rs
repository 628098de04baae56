//! Turns the collectors into one [`HostSample`] per tick. Each collector's
//! failure becomes a line in `errors`; the others carry on.

use std::time::{Duration, Instant, SystemTime};

use protocol::metrics::HostSample;

use crate::app::AppWatcher;
use crate::collect::cpu::CpuCollector;
use crate::collect::disk::DiskCollector;
use crate::collect::network::NetCollector;
use crate::collect::tcp::TcpCollector;
use crate::collect::{Roots, filesystem, memory};

/// Filesystem sizes change slowly; statvfs on every mount each second
/// would be wasted work (and can block on a dead NFS mount).
const FS_EVERY: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Sampler {
    roots: Roots,
    cpu: CpuCollector,
    disk: DiskCollector,
    net: NetCollector,
    tcp: TcpCollector,
    fs_at: Option<Instant>,
    app: AppWatcher,
}

impl Sampler {
    pub fn new(roots: Roots) -> Sampler {
        Sampler {
            app: AppWatcher::new(roots.clone()),
            roots,
            cpu: CpuCollector::default(),
            disk: DiskCollector::default(),
            net: NetCollector::default(),
            tcp: TcpCollector::default(),
            fs_at: None,
        }
    }

    /// The application identifier to watch (from the controller).
    pub fn set_identifier(&mut self, identifier: Option<String>) {
        self.app.set_identifier(identifier);
    }

    pub fn identifier(&self) -> Option<&str> {
        self.app.identifier()
    }

    /// One sample. Rates need a previous reading, so the very first call
    /// leaves CPU, disk, network and TCP rates empty.
    pub fn sample(&mut self) -> HostSample {
        let now = Instant::now();
        let ts_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut s = HostSample {
            ts_ms,
            ..Default::default()
        };
        let mut errors = Vec::new();
        let mut note = |what: &str, e: &dyn std::fmt::Display| errors.push(format!("{what}: {e}"));
        match self.cpu.collect(&self.roots) {
            Ok(v) => s.cpu = v,
            Err(e) => note("cpu", &e),
        }
        match memory::collect_memory(&self.roots) {
            Ok(v) => s.mem = Some(v),
            Err(e) => note("memory", &e),
        }
        match memory::collect_load(&self.roots) {
            Ok(v) => s.load = Some(v),
            Err(e) => note("load", &e),
        }
        match self.disk.collect(&self.roots, now) {
            Ok(v) => s.disks = v,
            Err(e) => note("disk", &e),
        }
        match self.net.collect(&self.roots, now) {
            Ok(v) => s.nets = v,
            Err(e) => note("network", &e),
        }
        match self.tcp.collect(&self.roots, now) {
            Ok(v) => s.tcp = v,
            Err(e) => note("tcp", &e),
        }
        if self.fs_at.is_none_or(|t| now.duration_since(t) >= FS_EVERY) {
            self.fs_at = Some(now);
            match filesystem::collect_filesystems(&self.roots) {
                Ok(v) => s.filesystems = v,
                Err(e) => note("filesystem", &e),
            }
        }
        match self.app.collect() {
            Ok(v) => s.app = v,
            Err(e) => note("app", &e),
        }
        s.errors = errors;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_samples_are_sane_and_counters_monotonic() {
        let mut sampler = Sampler::new(Roots::default());
        let first = sampler.sample();
        assert!(first.cpu.is_none(), "no rate from one reading");
        assert!(first.mem.is_some() && !first.filesystems.is_empty());
        std::thread::sleep(Duration::from_millis(300));
        let s = sampler.sample();
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        let cpu = s.cpu.unwrap();
        for v in [cpu.busy_pct, cpu.iowait_pct, cpu.user_pct] {
            assert!((0.0..=100.0).contains(&v), "{cpu:?}");
        }
        let mem = s.mem.unwrap();
        assert!(mem.available_bytes <= mem.total_bytes);
        assert!(!s.disks.is_empty());
        for d in &s.disks {
            assert!(d.read_bps >= 0.0 && d.write_bps >= 0.0 && (0.0..=100.0).contains(&d.util_pct));
        }
        for n in &s.nets {
            assert!(n.rx_bps >= 0.0 && n.tx_bps >= 0.0);
        }
        assert!(s.tcp.is_some());
        assert!(
            s.filesystems.is_empty(),
            "filesystems only every few minutes"
        );
        assert!(s.ts_ms > first.ts_ms);
    }

    #[test]
    fn a_broken_proc_fails_only_its_collectors() {
        // A fake /proc where only meminfo exists and stat is garbage.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meminfo"),
            "MemTotal: 1000 kB\nMemFree: 10 kB\nMemAvailable: 20 kB\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("stat"), "garbage\n").unwrap();
        let roots = Roots {
            proc: dir.path().to_path_buf(),
            sys: dir.path().join("sys"),
        };
        let mut sampler = Sampler::new(roots);
        let s = sampler.sample();
        assert_eq!(s.mem.unwrap().available_bytes, 20 * 1024);
        let joined = s.errors.join("\n");
        for what in ["cpu:", "load:", "disk:", "network:", "tcp:"] {
            assert!(joined.contains(what), "{what} missing from {joined}");
        }
    }

    #[test]
    fn an_unreadable_file_is_reported_not_fatal() {
        // A directory where a file is expected fails to read for root too.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("loadavg")).unwrap();
        let roots = Roots {
            proc: dir.path().to_path_buf(),
            sys: dir.path().to_path_buf(),
        };
        let err = memory::collect_load(&roots).unwrap_err();
        assert!(err.to_string().contains("loadavg"), "{err}");
    }
}
