//! The facts probe: one fixed shell command run over SSH, and the pure
//! parser of its output. Nothing from a user is ever put into the command.
//!
//! The figures follow the agent's own facts collection (kernel release,
//! cores counted by the kernel, whole disks without loop/ram/zram/fd,
//! addresses without loopback) so a server looks the same in the list
//! before and after its agent is installed.

use std::net::IpAddr;
use std::time::Duration;

use super::{Connection, SshError};

/// The whole run, shell start-up included.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The output is a few hundred bytes; a large cap only tolerates chatty
/// login scripts and many addresses.
const PROBE_MAX_OUTPUT: usize = 256 * 1024;

/// First line of the probe's own output. Anything printed before it comes
/// from the user's login scripts and is skipped.
const HEADER: &str = "@@myplatform-probe-v1";
/// Last line; its absence means the output was cut short.
const END: &str = "@@end";

/// What the probe runs. The script is handed to `/bin/sh` in single quotes
/// on one line, so the user's login shell (bash, zsh, fish, csh) passes it
/// through untouched: it must contain no single quote and no newline.
/// Every step tolerates a missing tool, so one gap yields an empty section
/// rather than no facts.
pub const PROBE_COMMAND: &str = concat!(
    "/bin/sh -c '",
    "export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; ",
    "echo @@myplatform-probe-v1; ",
    "echo @@hostname; uname -n; ",
    "echo @@kernel; uname -r; ",
    "echo @@arch; uname -m; ",
    "echo @@os; for f in /etc/os-release /usr/lib/os-release; do ",
    "if [ -r $f ]; then grep ^PRETTY_NAME= $f; break; fi; done; ",
    "echo @@cpu_model; grep -m1 -E \"^(model name|Model|cpu model)[[:space:]]*:\" /proc/cpuinfo; ",
    "echo @@cpu_cores; getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null; ",
    "echo @@memory; grep ^MemTotal: /proc/meminfo; ",
    // /sys/block/*/size is in 512-byte sectors whatever the device's
    // logical block size.
    "echo @@disks; for d in /sys/block/*; do n=${d##*/}; case $n in ",
    "loop*|ram*|zram*|fd*) ;; *) [ -r $d/size ] && echo \"$n $(cat $d/size)\";; esac; done; ",
    "echo @@addresses; ip -o addr show scope global 2>/dev/null || hostname -I 2>/dev/null; ",
    "echo @@end",
    "'"
);

/// Facts about a server read over SSH: the same type the monitor agent
/// reports, so the server list shows either without converting.
pub use protocol::metrics::HostFacts as ProbedFacts;

/// Runs [`PROBE_COMMAND`] on `conn` and parses what it prints.
pub async fn probe(conn: &Connection) -> Result<ProbedFacts, SshError> {
    let out = tokio::time::timeout(PROBE_TIMEOUT, conn.exec(PROBE_COMMAND, PROBE_MAX_OUTPUT))
        .await
        .map_err(|_| SshError::Timeout {
            operation: "reading the server's facts",
            after: PROBE_TIMEOUT,
        })??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    parse_probe_output(&stdout).map_err(|reason| {
        // The server's own complaint ("/bin/sh: not found", a restricted
        // shell's refusal) says more than "no header".
        let stderr = String::from_utf8_lossy(&out.stderr);
        match stderr.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(first) => SshError::ProbeFailed(format!(
                "{reason}; the server said: {}",
                first.chars().take(200).collect::<String>()
            )),
            None => SshError::ProbeFailed(reason),
        }
    })
}

/// Parses the output of [`PROBE_COMMAND`]. Pure, so it is tested on
/// captured text. Hostname, kernel, architecture, core count and memory
/// are required; the other sections may be empty.
pub fn parse_probe_output(text: &str) -> Result<ProbedFacts, String> {
    let sections = split_sections(text)?;
    let section = |name: &str| -> Result<&[&str], String> {
        sections
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, lines)| lines.as_slice())
            .ok_or_else(|| format!("the probe output has no '{name}' section"))
    };
    let first_line = |name: &str, what: &str| -> Result<String, String> {
        section(name)?
            .first()
            .map(|l| l.to_string())
            .ok_or_else(|| format!("the server did not report its {what}"))
    };

    let hostname = first_line("hostname", "host name")?;
    let kernel = first_line("kernel", "kernel release")?;
    let arch = first_line("arch", "architecture")?;
    let os = section("os")?
        .iter()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Linux".to_string());
    let cpu_model = section("cpu_model")?
        .first()
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();

    let cores_text = first_line("cpu_cores", "CPU core count")?;
    let cpu_cores = cores_text
        .parse::<u32>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("cannot read a CPU core count from '{}'", clip(&cores_text)))?;

    let mem_total_bytes = parse_mem_total(section("memory")?)?;
    let disks = parse_disks(section("disks")?)?;
    let addresses = parse_addresses(section("addresses")?);

    Ok(ProbedFacts {
        hostname,
        os,
        kernel,
        arch,
        cpu_model,
        cpu_cores,
        mem_total_bytes,
        disks,
        addresses,
    })
}

/// (name, trimmed non-empty lines) per section, between the header and
/// the end marker.
fn split_sections(text: &str) -> Result<Vec<(&str, Vec<&str>)>, String> {
    let mut lines = text.lines().map(str::trim);
    if !lines.any(|l| l == HEADER) {
        return Err(
            "the probe printed nothing recognisable (is the login shell a POSIX system with \
             /bin/sh?)"
                .to_string(),
        );
    }
    let mut sections: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in lines {
        if line == END {
            return Ok(sections);
        }
        if let Some(name) = line.strip_prefix("@@") {
            sections.push((name, Vec::new()));
        } else if !line.is_empty() {
            match sections.last_mut() {
                Some((_, body)) => body.push(line),
                None => return Err(format!("unexpected probe output '{}'", clip(line))),
            }
        }
    }
    Err("the probe output was cut short".to_string())
}

fn parse_mem_total(lines: &[&str]) -> Result<u64, String> {
    // "MemTotal:       16318480 kB"; the kernel always says kB (KiB).
    let line = lines
        .iter()
        .find(|l| l.starts_with("MemTotal:"))
        .ok_or("the server did not report its memory size (no MemTotal in /proc/meminfo)")?;
    let mut words = line.split_whitespace().skip(1);
    let kib = words.next().and_then(|n| n.parse::<u64>().ok());
    let unit = words.next();
    match (kib, unit) {
        (Some(kib), Some("kB")) if kib > 0 => kib
            .checked_mul(1024)
            .ok_or_else(|| format!("memory size out of range: '{}'", clip(line))),
        _ => Err(format!("cannot read the memory size from '{}'", clip(line))),
    }
}

fn parse_disks(lines: &[&str]) -> Result<Vec<(String, u64)>, String> {
    let mut disks = Vec::new();
    for line in lines {
        let (name, sectors) = line
            .split_once(' ')
            .ok_or_else(|| format!("cannot read a disk from '{}'", clip(line)))?;
        let sectors: u64 = sectors
            .trim()
            .parse()
            .map_err(|_| format!("cannot read the size of disk '{}'", clip(name)))?;
        // Empty card readers and CD drives report 0.
        if sectors > 0 {
            let bytes = sectors
                .checked_mul(512)
                .ok_or_else(|| format!("size of disk '{}' out of range", clip(name)))?;
            disks.push((name.to_string(), bytes));
        }
    }
    disks.sort();
    Ok(disks)
}

/// Lines of `ip -o addr show` ("2: eth0    inet 10.0.0.5/24 brd ...") or
/// the single line of `hostname -I`. Unreadable words are skipped: an
/// address list is a convenience, not worth failing the probe for.
fn parse_addresses(lines: &[&str]) -> Vec<String> {
    let mut found: Vec<IpAddr> = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let candidates: Vec<&str> = match words.iter().position(|w| *w == "inet" || *w == "inet6") {
            Some(i) => words.get(i + 1).copied().into_iter().collect(),
            None => words,
        };
        for word in candidates {
            let addr = word.split('/').next().unwrap_or(word);
            if let Ok(ip) = addr.parse::<IpAddr>()
                && is_reportable(&ip)
                && !found.contains(&ip)
            {
                found.push(ip);
            }
        }
    }
    found.sort();
    found.iter().map(IpAddr::to_string).collect()
}

fn is_reportable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified() && !v4.is_link_local(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && !v6.is_unicast_link_local(),
    }
}

/// Quotes remote text in an error without letting a garbled line flood it.
fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a Debian 12 VM (`PROBE_COMMAND` through sshd), with a
    /// login script that prints a banner first.
    const DEBIAN_VM: &str = "Welcome to the lab!\n\
        @@myplatform-probe-v1\n\
        @@hostname\n\
        vm\n\
        @@kernel\n\
        6.1.0-18-amd64\n\
        @@arch\n\
        x86_64\n\
        @@os\n\
        PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\
        @@cpu_model\n\
        model name\t: AMD EPYC\n\
        @@cpu_cores\n\
        2\n\
        @@memory\n\
        MemTotal:       24597616 kB\n\
        @@disks\n\
        vda 104857600\n\
        sr0 0\n\
        @@addresses\n\
        4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever\n\
        4: eth0    inet6 fd00::2/64 scope global nodad \\       valid_lft forever preferred_lft forever\n\
        @@end\n";

    #[test]
    fn parses_a_debian_vm() {
        let f = parse_probe_output(DEBIAN_VM).unwrap();
        assert_eq!(
            f,
            ProbedFacts {
                hostname: "vm".into(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                kernel: "6.1.0-18-amd64".into(),
                arch: "x86_64".into(),
                cpu_model: "AMD EPYC".into(),
                cpu_cores: 2,
                mem_total_bytes: 24597616 * 1024,
                disks: vec![("vda".into(), 104857600 * 512)],
                addresses: vec!["192.0.2.2".into(), "fd00::2".into()],
            }
        );
    }

    #[test]
    fn minimal_host_without_optional_facts() {
        // A container: no os-release, no model name, no block devices, no
        // `ip`, `hostname -I` listing loopback and link-local too.
        let text = "@@myplatform-probe-v1\n@@hostname\nbox\n@@kernel\n5.15.0\n@@arch\naarch64\n\
                    @@os\n@@cpu_model\n@@cpu_cores\n4\n@@memory\nMemTotal: 1024 kB\n@@disks\n\
                    @@addresses\n10.1.2.3 127.0.0.1 fe80::1 2001:db8::7 10.1.2.3\n@@end\n";
        let f = parse_probe_output(text).unwrap();
        assert_eq!(f.os, "Linux");
        assert_eq!(f.cpu_model, "");
        assert_eq!(f.arch, "aarch64");
        assert_eq!(f.mem_total_bytes, 1024 * 1024);
        assert!(f.disks.is_empty());
        assert_eq!(f.addresses, vec!["10.1.2.3", "2001:db8::7"]);
    }

    #[test]
    fn crlf_and_arm_cpuinfo() {
        let text = DEBIAN_VM
            .replace(
                "model name\t: AMD EPYC",
                "Model\t\t: Raspberry Pi 4 Model B Rev 1.4",
            )
            .replace('\n', "\r\n");
        let f = parse_probe_output(&text).unwrap();
        assert_eq!(f.cpu_model, "Raspberry Pi 4 Model B Rev 1.4");
        assert_eq!(f.hostname, "vm");
    }

    #[test]
    fn disks_are_sorted() {
        let text = DEBIAN_VM.replace("vda 104857600\n", "sdb 2\nnvme0n1 4\nsda 1\n");
        let f = parse_probe_output(&text).unwrap();
        let names: Vec<&str> = f.disks.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["nvme0n1", "sda", "sdb"]);
        assert_eq!(f.disks[0].1, 2048);
    }

    fn err(text: &str) -> String {
        parse_probe_output(text).unwrap_err()
    }

    #[test]
    fn no_header_is_a_clear_error() {
        assert!(err("").contains("nothing recognisable"));
        assert!(err("sh: 1: /bin/sh: not found\n").contains("nothing recognisable"));
    }

    #[test]
    fn truncated_output_is_an_error() {
        let cut = &DEBIAN_VM[..DEBIAN_VM.find("@@disks").unwrap()];
        assert!(err(cut).contains("cut short"), "{}", err(cut));
    }

    #[test]
    fn missing_section_is_named() {
        let text = DEBIAN_VM.replace("@@kernel\n6.1.0-18-amd64\n", "");
        assert_eq!(err(&text), "the probe output has no 'kernel' section");
        let text = DEBIAN_VM.replace("@@memory\n", "");
        assert!(err(&text).contains("'memory'"), "{}", err(&text));
    }

    #[test]
    fn empty_required_section_is_an_error() {
        let text = DEBIAN_VM.replace("@@hostname\nvm\n", "@@hostname\n");
        assert_eq!(err(&text), "the server did not report its host name");
        let text = DEBIAN_VM.replace("MemTotal:       24597616 kB\n", "");
        assert!(err(&text).contains("no MemTotal"), "{}", err(&text));
    }

    #[test]
    fn garbled_numbers_are_errors_not_panics() {
        for (from, to, expect) in [
            (
                "@@cpu_cores\n2\n",
                "@@cpu_cores\ntwo\n",
                "core count from 'two'",
            ),
            (
                "@@cpu_cores\n2\n",
                "@@cpu_cores\n0\n",
                "core count from '0'",
            ),
            (
                "@@cpu_cores\n2\n",
                "@@cpu_cores\n99999999999\n",
                "core count",
            ),
            ("24597616 kB", "lots kB", "memory size"),
            ("24597616 kB", "24597616 MB", "memory size"),
            ("24597616 kB", "99999999999999999999 kB", "memory size"),
            ("24597616 kB", "18446744073709551615 kB", "out of range"),
            ("vda 104857600", "vda many", "size of disk 'vda'"),
            ("vda 104857600", "vda", "cannot read a disk"),
            ("vda 104857600", "vda 18446744073709551615", "out of range"),
        ] {
            let text = DEBIAN_VM.replace(from, to);
            assert!(err(&text).contains(expect), "{to}: {}", err(&text));
        }
    }

    #[test]
    fn long_garbage_is_clipped_in_errors() {
        let junk = "x".repeat(10_000);
        let text = DEBIAN_VM.replace("@@cpu_cores\n2\n", &format!("@@cpu_cores\n{junk}\n"));
        assert!(err(&text).len() < 200);
    }

    #[test]
    fn garbage_addresses_are_skipped() {
        let text = DEBIAN_VM.replace(
            "4: eth0    inet6 fd00::2/64",
            "4: eth0    inet6 not-an-address/64 junk 1.2.3.4.5",
        );
        let f = parse_probe_output(&text).unwrap();
        assert_eq!(f.addresses, vec!["192.0.2.2"]);
    }

    #[test]
    fn command_is_one_line_without_inner_single_quotes() {
        let inner = PROBE_COMMAND
            .strip_prefix("/bin/sh -c '")
            .and_then(|s| s.strip_suffix('\''))
            .unwrap();
        assert!(!inner.contains('\'') && !inner.contains('\n'));
        assert!(inner.contains(HEADER) && inner.ends_with(END));
    }
}
