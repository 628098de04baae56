//! Host facts for the server list: OS, kernel, CPU, memory, disks,
//! addresses. Read once at start and re-sent only when they change.

use protocol::metrics::HostFacts;

use super::{CollectError, Roots};

pub fn parse_cpuinfo(text: &str) -> (String, u32) {
    let mut model = String::new();
    let mut cores = 0;
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim();
            if k == "processor" {
                cores += 1;
            } else if model.is_empty() && (k == "model name" || k == "Model" || k == "cpu model") {
                model = v.trim().to_string();
            }
        }
    }
    (model, cores)
}

pub fn collect_facts(roots: &Roots) -> Result<HostFacts, CollectError> {
    let (cpu_model, cores) = parse_cpuinfo(&roots.read_proc("cpuinfo")?);
    let mem = super::memory::collect_memory(roots)?;
    let trimmed =
        |r: Result<String, CollectError>| r.map(|s| s.trim().to_string()).unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| protocol::messages::os_release_pretty_name(&s))
        .unwrap_or_else(|| "Linux".into());
    let mut disks = Vec::new();
    if let Ok(entries) = std::fs::read_dir(roots.sys.join("block")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !super::disk::is_whole_disk(&name, true) {
                continue;
            }
            let sectors = trimmed(roots.read_sys(&format!("block/{name}/size")));
            if let Ok(s) = sectors.parse::<u64>()
                && s > 0
            {
                disks.push((name, s * 512));
            }
        }
    }
    disks.sort();
    Ok(HostFacts {
        hostname: trimmed(roots.read_proc("sys/kernel/hostname")),
        os,
        kernel: trimmed(roots.read_proc("sys/kernel/osrelease")),
        arch: std::env::consts::ARCH.to_string(),
        cpu_model,
        cpu_cores: cores.max(1),
        mem_total_bytes: mem.total_bytes,
        disks,
        addresses: local_addresses(roots),
    })
}

/// Global IPv4 addresses from /proc/net/fib_trie's local entries (no
/// netlink, no `ip` fork).
fn local_addresses(roots: &Roots) -> Vec<String> {
    let Ok(text) = roots.read_proc("net/fib_trie") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut last_ip: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(ip) = t.strip_prefix("|-- ") {
            last_ip = Some(ip);
        } else if t.contains("/32 host LOCAL")
            && let Some(ip) = last_ip
            && !ip.starts_with("127.")
            && !out.iter().any(|x| x == ip)
        {
            out.push(ip.to_string());
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::fixture;

    #[test]
    fn cpuinfo_model_and_live_facts() {
        let (model, cores) = parse_cpuinfo(&fixture("cpuinfo.head"));
        assert!(!model.is_empty() && cores >= 1);
        let f = collect_facts(&Roots::default()).unwrap();
        assert!(!f.hostname.is_empty() && !f.kernel.is_empty());
        assert!(f.cpu_cores >= 1 && f.mem_total_bytes > 0);
    }
}
