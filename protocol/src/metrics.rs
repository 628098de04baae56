//! Host metrics as they travel from agent-monitor to the controller.
//!
//! Plain data: units are in the field names (`_pct` is 0..=100, `_bps` is
//! bytes per second, `_bytes` is bytes). Rates are computed on the agent
//! from counter deltas, so a sample stands on its own. A collector that
//! failed leaves its part empty and says why in `errors`.

use serde::{Deserialize, Serialize};

/// One sampling instant of one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HostSample {
    /// Unix milliseconds.
    pub ts_ms: u64,
    pub cpu: Option<CpuStats>,
    pub mem: Option<MemStats>,
    pub load: Option<LoadAvg>,
    /// Whole disks (no partitions, loop or ram devices).
    pub disks: Vec<DiskStats>,
    /// Filesystems; filled every few minutes, empty in between.
    pub filesystems: Vec<FsStats>,
    /// Interfaces other than loopback.
    pub nets: Vec<NetStats>,
    pub tcp: Option<TcpStats>,
    /// The application process of the host's group, when one is set.
    pub app: Option<AppStats>,
    /// `collector: reason` for each collector that failed this tick.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct CpuStats {
    /// Everything but idle and iowait.
    pub busy_pct: f32,
    pub user_pct: f32,
    pub system_pct: f32,
    pub iowait_pct: f32,
    pub steal_pct: f32,
    pub cores: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct MemStats {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub available_bytes: u64,
    pub cached_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LoadAvg {
    pub one: f32,
    pub five: f32,
    pub fifteen: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DiskStats {
    pub name: String,
    pub read_bps: f64,
    pub write_bps: f64,
    /// Time the device was busy (io_ticks), 0..=100.
    pub util_pct: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FsStats {
    pub mount: String,
    pub fstype: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub avail_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NetStats {
    pub name: String,
    pub rx_bps: f64,
    pub tx_bps: f64,
    /// Link speed in Mbit/s; `None` when the kernel does not know it
    /// (virtual interfaces, some VMs), and then utilisation is `None` too.
    pub speed_mbps: Option<u32>,
    /// max(rx, tx) against the link speed, 0..=100.
    pub util_pct: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct TcpStats {
    /// Connections in ESTABLISHED or CLOSE_WAIT (CurrEstab).
    pub established: u32,
    pub retrans_segs_per_s: f32,
    pub out_segs_per_s: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AppStats {
    /// The identifier it was found by.
    pub identifier: String,
    /// `None` when no process matches the identifier right now.
    pub pid: Option<u32>,
    pub ports: Vec<PortStats>,
    pub jvm: Option<JvmStats>,
    /// Why `jvm` is empty for a Java process (perf data disabled, ...).
    pub jvm_error: Option<String>,
}

/// TCP connections on one listening port of the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PortStats {
    pub port: u16,
    /// Every connection whose local port is this port, LISTEN excluded.
    pub total: u32,
    pub established: u32,
    pub time_wait: u32,
    pub close_wait: u32,
}

/// JVM memory and GC, from the hsperfdata file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct JvmStats {
    pub heap_used_bytes: u64,
    pub heap_committed_bytes: u64,
    pub heap_max_bytes: u64,
    pub young_gc_count: u64,
    pub young_gc_time_ms: f64,
    pub full_gc_count: u64,
    pub full_gc_time_ms: f64,
}

/// What the server list shows about a host. Sent at connect and on change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HostFacts {
    pub hostname: String,
    /// e.g. "Debian GNU/Linux 12 (bookworm)".
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpu_model: String,
    pub cpu_cores: u32,
    pub mem_total_bytes: u64,
    /// (name, size in bytes) of whole disks.
    pub disks: Vec<(String, u64)>,
    pub addresses: Vec<String>,
}

/// Host-wide disk figures derived from the per-device ones: bytes summed,
/// utilisation of the busiest device (a host is as I/O-bound as its
/// busiest disk; an average would hide one saturated disk among idle ones).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct DiskTotal {
    pub read_bps: f64,
    pub write_bps: f64,
    pub util_pct: f32,
}

/// Host-wide network figures: bytes summed, utilisation of the busiest
/// interface whose speed is known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct NetTotal {
    pub rx_bps: f64,
    pub tx_bps: f64,
    pub util_pct: Option<f32>,
}

impl HostSample {
    pub fn disk_total(&self) -> DiskTotal {
        self.disks
            .iter()
            .fold(DiskTotal::default(), |t, d| DiskTotal {
                read_bps: t.read_bps + d.read_bps,
                write_bps: t.write_bps + d.write_bps,
                util_pct: t.util_pct.max(d.util_pct),
            })
    }

    pub fn net_total(&self) -> NetTotal {
        self.nets.iter().fold(NetTotal::default(), |t, n| NetTotal {
            rx_bps: t.rx_bps + n.rx_bps,
            tx_bps: t.tx_bps + n.tx_bps,
            util_pct: match (t.util_pct, n.util_pct) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_bytes_and_take_the_busiest_device() {
        let s = HostSample {
            disks: vec![
                DiskStats {
                    name: "sda".into(),
                    read_bps: 10.0,
                    write_bps: 1.0,
                    util_pct: 90.0,
                },
                DiskStats {
                    name: "sdb".into(),
                    read_bps: 5.0,
                    write_bps: 2.0,
                    util_pct: 10.0,
                },
            ],
            nets: vec![
                NetStats {
                    name: "eth0".into(),
                    rx_bps: 1.0,
                    tx_bps: 2.0,
                    speed_mbps: None,
                    util_pct: None,
                },
                NetStats {
                    name: "eth1".into(),
                    rx_bps: 3.0,
                    tx_bps: 4.0,
                    speed_mbps: Some(1000),
                    util_pct: Some(7.0),
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            s.disk_total(),
            DiskTotal {
                read_bps: 15.0,
                write_bps: 3.0,
                util_pct: 90.0
            }
        );
        assert_eq!(
            s.net_total(),
            NetTotal {
                rx_bps: 4.0,
                tx_bps: 6.0,
                util_pct: Some(7.0)
            }
        );
        assert_eq!(HostSample::default().net_total().util_pct, None);
    }
}
