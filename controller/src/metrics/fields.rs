//! The names under which a sample's numbers are stored and queried.
//!
//! One flat namespace per host: `cpu.busy_pct`, `mem.available_bytes`,
//! `disk.util_pct` (busiest disk) and `disk.<dev>.read_bps`, `net.rx_bps`
//! (all interfaces) and `net.<if>.util_pct`, `tcp.established`,
//! `app.port.<port>.close_wait`, `jvm.heap_used_bytes`, `fs.<mount>.used_bytes`.
//! Only finite values are kept: NaN or infinity from a broken collector is
//! dropped here, once, for every store.

use protocol::metrics::HostSample;

fn push(out: &mut Vec<(String, f64)>, name: String, v: f64) {
    if v.is_finite() {
        out.push((name, v));
    }
}

/// Every field of a sample with its value.
pub fn flatten(s: &HostSample) -> Vec<(String, f64)> {
    let mut o = Vec::with_capacity(48);
    if let Some(c) = &s.cpu {
        push(&mut o, "cpu.busy_pct".into(), f64::from(c.busy_pct));
        push(&mut o, "cpu.user_pct".into(), f64::from(c.user_pct));
        push(&mut o, "cpu.system_pct".into(), f64::from(c.system_pct));
        push(&mut o, "cpu.iowait_pct".into(), f64::from(c.iowait_pct));
        push(&mut o, "cpu.steal_pct".into(), f64::from(c.steal_pct));
    }
    if let Some(m) = &s.mem {
        push(&mut o, "mem.total_bytes".into(), m.total_bytes as f64);
        push(&mut o, "mem.free_bytes".into(), m.free_bytes as f64);
        push(
            &mut o,
            "mem.available_bytes".into(),
            m.available_bytes as f64,
        );
        push(&mut o, "mem.cached_bytes".into(), m.cached_bytes as f64);
        push(
            &mut o,
            "mem.swap_free_bytes".into(),
            m.swap_free_bytes as f64,
        );
        if m.total_bytes > 0 {
            // Derived, so rounded like the agent's percentages (two
            // decimals): full precision here costs bytes and means nothing.
            let used = 100.0 * (1.0 - m.available_bytes as f64 / m.total_bytes as f64);
            push(
                &mut o,
                "mem.used_pct".into(),
                (used * 100.0).round() / 100.0,
            );
        }
    }
    if let Some(l) = &s.load {
        push(&mut o, "load.1".into(), f64::from(l.one));
        push(&mut o, "load.5".into(), f64::from(l.five));
        push(&mut o, "load.15".into(), f64::from(l.fifteen));
    }
    if !s.disks.is_empty() {
        let t = s.disk_total();
        push(&mut o, "disk.read_bps".into(), t.read_bps);
        push(&mut o, "disk.write_bps".into(), t.write_bps);
        push(&mut o, "disk.util_pct".into(), f64::from(t.util_pct));
        for d in &s.disks {
            push(&mut o, format!("disk.{}.read_bps", d.name), d.read_bps);
            push(&mut o, format!("disk.{}.write_bps", d.name), d.write_bps);
            push(
                &mut o,
                format!("disk.{}.util_pct", d.name),
                f64::from(d.util_pct),
            );
        }
    }
    if !s.nets.is_empty() {
        let t = s.net_total();
        push(&mut o, "net.rx_bps".into(), t.rx_bps);
        push(&mut o, "net.tx_bps".into(), t.tx_bps);
        if let Some(u) = t.util_pct {
            push(&mut o, "net.util_pct".into(), f64::from(u));
        }
        for n in &s.nets {
            push(&mut o, format!("net.{}.rx_bps", n.name), n.rx_bps);
            push(&mut o, format!("net.{}.tx_bps", n.name), n.tx_bps);
            if let Some(u) = n.util_pct {
                push(&mut o, format!("net.{}.util_pct", n.name), f64::from(u));
            }
        }
    }
    if let Some(t) = &s.tcp {
        push(&mut o, "tcp.established".into(), f64::from(t.established));
        push(
            &mut o,
            "tcp.retrans_segs_per_s".into(),
            f64::from(t.retrans_segs_per_s),
        );
        push(
            &mut o,
            "tcp.out_segs_per_s".into(),
            f64::from(t.out_segs_per_s),
        );
    }
    for f in &s.filesystems {
        push(
            &mut o,
            format!("fs.{}.used_bytes", f.mount),
            f.used_bytes as f64,
        );
        push(
            &mut o,
            format!("fs.{}.avail_bytes", f.mount),
            f.avail_bytes as f64,
        );
    }
    if let Some(a) = &s.app {
        for p in &a.ports {
            push(
                &mut o,
                format!("app.port.{}.total", p.port),
                f64::from(p.total),
            );
            push(
                &mut o,
                format!("app.port.{}.established", p.port),
                f64::from(p.established),
            );
            push(
                &mut o,
                format!("app.port.{}.time_wait", p.port),
                f64::from(p.time_wait),
            );
            push(
                &mut o,
                format!("app.port.{}.close_wait", p.port),
                f64::from(p.close_wait),
            );
        }
        if let Some(j) = &a.jvm {
            push(
                &mut o,
                "jvm.heap_used_bytes".into(),
                j.heap_used_bytes as f64,
            );
            push(
                &mut o,
                "jvm.heap_committed_bytes".into(),
                j.heap_committed_bytes as f64,
            );
            push(&mut o, "jvm.heap_max_bytes".into(), j.heap_max_bytes as f64);
            push(&mut o, "jvm.young_gc_count".into(), j.young_gc_count as f64);
            push(&mut o, "jvm.young_gc_time_ms".into(), j.young_gc_time_ms);
            push(&mut o, "jvm.full_gc_count".into(), j.full_gc_count as f64);
            push(&mut o, "jvm.full_gc_time_ms".into(), j.full_gc_time_ms);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::metrics::*;

    #[test]
    fn names_values_and_non_finite_numbers() {
        let s = HostSample {
            cpu: Some(CpuStats {
                busy_pct: 12.5,
                iowait_pct: f32::NAN,
                ..Default::default()
            }),
            mem: Some(MemStats {
                total_bytes: 100,
                available_bytes: 25,
                ..Default::default()
            }),
            disks: vec![DiskStats {
                name: "vda".into(),
                read_bps: f64::INFINITY,
                write_bps: 3.0,
                util_pct: 40.0,
            }],
            app: Some(AppStats {
                ports: vec![PortStats {
                    port: 8080,
                    total: 3,
                    established: 2,
                    time_wait: 1,
                    close_wait: 0,
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let f = flatten(&s);
        let get = |n: &str| f.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
        assert_eq!(get("cpu.busy_pct"), Some(12.5));
        assert_eq!(get("cpu.iowait_pct"), None, "NaN dropped");
        assert_eq!(get("disk.vda.read_bps"), None, "inf dropped");
        assert_eq!(get("disk.read_bps"), None, "a sum with inf is inf, dropped");
        assert_eq!(get("disk.util_pct"), Some(40.0));
        assert_eq!(get("mem.used_pct"), Some(75.0));
        assert_eq!(get("app.port.8080.established"), Some(2.0));
        assert!(f.iter().all(|(_, v)| v.is_finite()));
    }
}
