//! Where JMeter and Java are, and whether they run.
//!
//! Owns the lookup (a configured directory, else `JMETER_HOME`; `java` on
//! `PATH`) and [`Install::check`], which runs `java -version` and reads
//! JMeter's version from its launcher jar's manifest (no JVM start, so the
//! check costs milliseconds beyond Java's own). Must not start JMeter or
//! know anything of tasks: the supervisor takes a [`Checked`] install.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long `java -version` may take: a healthy JVM answers in well under
/// a second; a hung one must not hang the agent's start.
const JAVA_VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// JMeter's launcher, relative to its home: what `java -jar` runs.
pub const LAUNCHER: &str = "bin/ApacheJMeter.jar";

/// Why JMeter cannot be used; every message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "no JMeter configured: set the agent's jmeter_home or the JMETER_HOME environment \
         variable to a JMeter 5.x directory (the one holding bin/ApacheJMeter.jar)"
    )]
    NotConfigured,
    #[error(
        "{} is not a JMeter installation: {} is missing (point jmeter_home / JMETER_HOME at \
         the directory holding bin/ApacheJMeter.jar)", home.display(), home.join(LAUNCHER).display()
    )]
    NoLauncher { home: PathBuf },
    #[error("cannot read JMeter's version from {}: {why}", jar.display())]
    BadLauncher { jar: PathBuf, why: String },
    #[error(
        "`java` is not on PATH: install a Java runtime 8 or newer (Debian: apt-get install \
         default-jre-headless)"
    )]
    NoJava,
    #[error("{} does not run: {why}", java.display())]
    JavaBroken { java: PathBuf, why: String },
}

/// A JMeter installation and the `java` that runs it, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub home: PathBuf,
    pub java: PathBuf,
}

/// An installation that ran: what the supervisor needs and Hello reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub install: Install,
    /// `5.6.2`, from the launcher's `Implementation-Version`.
    pub jmeter_version: String,
    /// First line of `java -version`, e.g. `openjdk version "17.0.15" 2025-04-15`.
    pub java_version: String,
}

impl Install {
    /// From the process environment: `configured` wins over `JMETER_HOME`;
    /// `java` is looked up on `PATH`.
    pub fn locate(configured: Option<&Path>) -> Result<Install, InstallError> {
        Install::locate_in(
            configured,
            std::env::var_os("JMETER_HOME"),
            std::env::var_os("PATH"),
        )
    }

    /// [`Install::locate`] with the environment handed in (tests give a
    /// `PATH` without java).
    pub fn locate_in(
        configured: Option<&Path>,
        jmeter_home: Option<OsString>,
        path: Option<OsString>,
    ) -> Result<Install, InstallError> {
        let home = match (configured, jmeter_home) {
            (Some(c), _) => c.to_path_buf(),
            (None, Some(h)) if !h.is_empty() => PathBuf::from(h),
            _ => return Err(InstallError::NotConfigured),
        };
        if !home.join(LAUNCHER).is_file() {
            return Err(InstallError::NoLauncher { home });
        }
        let java = find_on_path("java", path.as_deref()).ok_or(InstallError::NoJava)?;
        Ok(Install { home, java })
    }

    pub fn launcher(&self) -> PathBuf {
        self.home.join(LAUNCHER)
    }

    /// Runs `java -version` and reads JMeter's version.
    pub async fn check(&self) -> Result<Checked, InstallError> {
        let jmeter_version = launcher_version(&self.launcher())?;
        let broken = |why: String| InstallError::JavaBroken {
            java: self.java.clone(),
            why,
        };
        let out = tokio::process::Command::new(&self.java)
            .arg("-version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(JAVA_VERSION_TIMEOUT, out)
            .await
            .map_err(|_| {
                broken(format!(
                    "`java -version` took over {JAVA_VERSION_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| broken(e.to_string()))?;
        // Java prints its version on stderr.
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(broken(format!(
                "`java -version` exited with {}: {}",
                out.status,
                text.trim()
            )));
        }
        let java_version = text
            .lines()
            .find(|l| l.contains("version"))
            .unwrap_or_default()
            .trim()
            .to_string();
        if java_version.is_empty() {
            return Err(broken(format!(
                "`java -version` printed no version: {}",
                text.trim()
            )));
        }
        Ok(Checked {
            install: self.clone(),
            jmeter_version,
            java_version,
        })
    }
}

/// The first executable `name` in the `:`-separated `path`.
fn find_on_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `Implementation-Version` of the jar's manifest.
fn launcher_version(jar: &Path) -> Result<String, InstallError> {
    let bad = |why: String| InstallError::BadLauncher {
        jar: jar.to_path_buf(),
        why,
    };
    let file = std::fs::File::open(jar).map_err(|e| bad(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a jar: {e}")))?;
    let mut manifest = String::new();
    zip.by_name("META-INF/MANIFEST.MF")
        .map_err(|e| bad(format!("no manifest: {e}")))?
        // A manifest is a few hundred bytes: the bound only stops a crafted jar.
        .take(1 << 20)
        .read_to_string(&mut manifest)
        .map_err(|e| bad(format!("unreadable manifest: {e}")))?;
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("Implementation-Version:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad("the manifest has no Implementation-Version".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_configured_says_what_to_set() {
        let e = Install::locate_in(None, None, Some("/usr/bin".into())).unwrap_err();
        assert!(matches!(e, InstallError::NotConfigured));
        assert!(e.to_string().contains("JMETER_HOME"), "{e}");
    }

    #[test]
    fn a_directory_without_the_launcher_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = Install::locate_in(Some(dir.path()), None, Some("/usr/bin".into())).unwrap_err();
        assert!(matches!(e, InstallError::NoLauncher { .. }), "{e}");
        assert!(e.to_string().contains("bin/ApacheJMeter.jar"), "{e}");
    }

    #[test]
    fn the_configured_home_wins_over_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let e = Install::locate_in(
            Some(dir.path()),
            Some("/somewhere/else".into()),
            Some("/usr/bin".into()),
        )
        .unwrap_err();
        let InstallError::NoLauncher { home } = e else {
            panic!("{e}")
        };
        assert_eq!(home, dir.path());
    }

    #[test]
    fn a_path_without_java_is_refused() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("bin")).unwrap();
        std::fs::write(home.path().join(LAUNCHER), b"x").unwrap();
        let empty = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([empty.path()]).unwrap();
        let e = Install::locate_in(Some(home.path()), None, Some(path)).unwrap_err();
        assert!(matches!(e, InstallError::NoJava), "{e}");
    }

    #[tokio::test]
    async fn a_launcher_that_is_no_jar_is_refused_by_check() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("bin")).unwrap();
        std::fs::write(home.path().join(LAUNCHER), b"not a zip").unwrap();
        let install = Install {
            home: home.path().into(),
            java: "/bin/true".into(),
        };
        let e = install.check().await.unwrap_err();
        assert!(matches!(e, InstallError::BadLauncher { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_java_that_fails_is_reported() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("bin")).unwrap();
        let jar = std::fs::File::create(home.path().join(LAUNCHER)).unwrap();
        let mut w = zip::ZipWriter::new(jar);
        w.start_file(
            "META-INF/MANIFEST.MF",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        std::io::Write::write_all(
            &mut w,
            b"Manifest-Version: 1.0\r\nImplementation-Version: 5.6.2\r\n",
        )
        .unwrap();
        w.finish().unwrap();
        let install = Install {
            home: home.path().into(),
            java: "/bin/false".into(),
        };
        let e = install.check().await.unwrap_err();
        assert!(matches!(e, InstallError::JavaBroken { .. }), "{e}");
        assert_eq!(launcher_version(&install.launcher()).unwrap(), "5.6.2");
    }
}
