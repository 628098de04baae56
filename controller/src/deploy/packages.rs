//! Agent packages the controller can deploy: the tarballs `scripts/dist`
//! builds (`agent-<role>-<version>-linux-<arch>.tar.gz`), kept
//! in one folder (`data_dir/packages`), uploaded there or copied in by
//! hand. Which one fits a server is decided here, from the server's CPU
//! architecture as `uname -m` reports it.

use std::path::{Path, PathBuf};

use certs::Role;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentPackage {
    pub role: Role,
    pub version: String,
    /// Debian's name for the architecture (`amd64`, `arm64`, ...).
    pub arch: String,
    pub file_name: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub size: u64,
}

/// Parses `agent-monitor-0.1.0-linux-amd64.tar.gz`.
pub fn parse_name(name: &str) -> Option<(Role, String, String)> {
    let rest = name.strip_prefix("agent-")?.strip_suffix(".tar.gz")?;
    let (role, rest) = rest.split_once('-')?;
    let role = match role {
        "monitor" => Role::Monitor,
        "jmeter" => Role::Jmeter,
        _ => return None,
    };
    let (version, arch) = rest.rsplit_once("-linux-")?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~'))
    };
    (ok(version) && ok(arch)).then(|| (role, version.to_string(), arch.to_string()))
}

/// The packages in `dir`, newest version first per role and arch.
pub fn scan(dir: &Path) -> std::io::Result<Vec<AgentPackage>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((role, version, arch)) = parse_name(&name) else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        out.push(AgentPackage {
            role,
            version,
            arch,
            file_name: name,
            path: entry.path(),
            size: meta.len(),
        });
    }
    out.sort_by(|a, b| {
        (a.role.to_string(), &a.arch)
            .cmp(&(b.role.to_string(), &b.arch))
            .then_with(|| version_key(&b.version).cmp(&version_key(&a.version)))
    });
    Ok(out)
}

/// `1.10.2` sorts after `1.9.0`.
fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '-', '+', '~'])
        .map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            (digits.parse().unwrap_or(0), p[digits.len()..].to_string())
        })
        .collect()
}

/// Debian's architecture name for what `uname -m` says.
pub fn debian_arch(uname_m: &str) -> Option<&'static str> {
    Some(match uname_m.trim() {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv7" | "armhf" => "armhf",
        "i386" | "i486" | "i586" | "i686" => "i386",
        "ppc64le" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => return None,
    })
}

/// The newest package for `role` that runs on a `uname_m` machine, or the
/// reason there is none.
pub fn pick<'a>(
    packages: &'a [AgentPackage],
    role: Role,
    uname_m: &str,
) -> Result<&'a AgentPackage, String> {
    let Some(arch) = debian_arch(uname_m) else {
        return Err(format!(
            "the server's CPU architecture {uname_m:?} is not one agents are built for"
        ));
    };
    let for_role: Vec<&AgentPackage> = packages.iter().filter(|p| p.role == role).collect();
    if for_role.is_empty() {
        return Err(format!(
            "no agent-{role} package is registered; run scripts/dist and put the tarball in the packages folder (or upload it)"
        ));
    }
    for_role
        .iter()
        .copied()
        .find(|p| p.arch == arch)
        .ok_or_else(|| {
            let have: Vec<&str> = for_role.iter().map(|p| p.arch.as_str()).collect();
            format!(
                "the server is {uname_m} ({arch}) but agent-{role} packages exist only for {}",
                have.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_the_newest_fitting_package_wins() {
        assert_eq!(
            parse_name("agent-monitor-0.1.0-linux-amd64.tar.gz"),
            Some((Role::Monitor, "0.1.0".into(), "amd64".into()))
        );
        for bad in [
            "agent-monitor-0.1.0-linux-amd64.zip",
            "agent-evil-0.1.0-linux-amd64.tar.gz",
            "agent-monitor-0.1.0-linux-.tar.gz",
            "agent-monitor-../x-linux-amd64.tar.gz",
            "other.tar.gz",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "agent-monitor-0.9.0-linux-amd64.tar.gz",
            "agent-monitor-0.10.0-linux-amd64.tar.gz",
            "agent-monitor-0.10.0-linux-arm64.tar.gz",
            "README",
        ] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let pkgs = scan(dir.path()).unwrap();
        assert_eq!(pkgs.len(), 3);
        assert_eq!(
            pick(&pkgs, Role::Monitor, "x86_64").unwrap().version,
            "0.10.0"
        );
        assert_eq!(pick(&pkgs, Role::Monitor, "aarch64").unwrap().arch, "arm64");
        let e = pick(&pkgs, Role::Monitor, "armv7l").unwrap_err();
        assert!(
            e.contains("exist only for amd64, amd64, arm64") || e.contains("only for"),
            "{e}"
        );
        let e = pick(&pkgs, Role::Jmeter, "x86_64").unwrap_err();
        assert!(e.contains("no agent-jmeter package"), "{e}");
        assert!(
            pick(&pkgs, Role::Monitor, "vax")
                .unwrap_err()
                .contains("not one agents")
        );
        assert!(scan(&dir.path().join("missing")).unwrap().is_empty());
    }
}
