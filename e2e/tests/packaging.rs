//! Packaging as an operator meets it (packaging/, scripts/dist): the systemd
//! units pass `systemd-analyze verify` and keep the settings the services
//! rely on; the agent-monitor .deb, built by the same script as a release
//! (from the already-built debug binary: no LTO build here), holds what it
//! should; install.sh from its tarball installs into a directory tree, and
//! running it again changes nothing. The portable build (zig, glibc 2.17's
//! symbol versions) of agent-monitor asks for nothing newer and starts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::{Proc, bin};

const NAMES: [&str; 3] = ["agent-monitor", "agent-jmeter", "controller"];
const PIN: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn unit_path(name: &str) -> PathBuf {
    repo().join(format!("packaging/systemd/myplatform-{name}.service"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("utf-8 output")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A unit file as (section, key, value) in file order; a key may repeat.
struct Unit(Vec<(String, String, String)>);

impl Unit {
    fn load(name: &str) -> Unit {
        let text = std::fs::read_to_string(unit_path(name)).unwrap();
        let mut section = String::new();
        let mut entries = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{name}: not key=value: {line}"));
            entries.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
        Unit(entries)
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The value in force: systemd takes the last assignment.
    fn get(&self, key: &str) -> Option<&str> {
        self.all(key).last().copied()
    }

    fn words(&self, key: &str) -> Vec<&str> {
        self.all(key)
            .iter()
            .flat_map(|v| v.split_whitespace())
            .collect()
    }
}

#[test]
fn units_keep_the_settings_the_services_rely_on() {
    for name in NAMES {
        let u = Unit::load(name);
        let ctx = format!("myplatform-{name}.service");
        assert_eq!(u.get("Restart"), Some("on-failure"), "{ctx}");
        assert!(
            u.words("RestartPreventExitStatus").contains(&"78"),
            "{ctx}: exit 78 must not restart"
        );
        assert!(u.get("RestartSec").is_some(), "{ctx}");
        let exec = u.get("ExecStart").expect("ExecStart");
        let argv: Vec<&str> = exec.split_whitespace().collect();
        assert_eq!(argv[0], format!("/usr/bin/{name}"), "{ctx}");
        let config = format!("/etc/myplatform/{name}.toml");
        assert!(
            argv.windows(2).any(|w| w == ["--config", config.as_str()]),
            "{ctx}: {exec}"
        );
        assert_eq!(
            u.get("StateDirectory"),
            Some(format!("myplatform/{name}").as_str()),
            "{ctx}"
        );
        if name != "controller" {
            // The unit's ReadWritePaths come from StateDirectory=; the agent
            // must write exactly there whatever its config file says.
            let state = format!("/var/lib/myplatform/{name}");
            assert!(
                argv.windows(2)
                    .any(|w| w == ["--state-dir", state.as_str()]),
                "{ctx}: {exec}"
            );
        }
        assert_eq!(u.get("StateDirectoryMode"), Some("0700"), "{ctx}");
        assert_eq!(u.get("NoNewPrivileges"), Some("yes"), "{ctx}");
        assert_eq!(u.get("ProtectSystem"), Some("strict"), "{ctx}");
        assert!(
            u.words("SystemCallFilter").contains(&"@system-service"),
            "{ctx}"
        );
        assert_eq!(
            u.get("DynamicUser"),
            None,
            "{ctx}: state must keep its owner"
        );
        assert!(
            u.0.iter()
                .any(|(s, k, v)| s == "Install" && k == "WantedBy" && v == "multi-user.target"),
            "{ctx}"
        );
        match name {
            "agent-monitor" => {
                // Root (drop_caches needs euid 0) with two capabilities.
                assert_eq!(u.get("User"), None, "{ctx}");
                let mut caps = u.words("CapabilityBoundingSet");
                caps.sort_unstable();
                assert_eq!(caps, ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"], "{ctx}");
                assert!(
                    matches!(u.get("PrivateTmp"), None | Some("no")),
                    "{ctx}: hsperfdata in /tmp"
                );
                assert_eq!(
                    u.get("ProtectHome"),
                    Some("read-only"),
                    "{ctx}: statvfs of the real /home"
                );
                assert_eq!(u.get("ProtectProc"), None, "{ctx}: reads every process");
                assert_eq!(
                    u.get("ProcSubset"),
                    None,
                    "{ctx}: reads /proc/meminfo, /proc/net"
                );
                assert_eq!(u.get("PrivateNetwork"), None, "{ctx}");
                assert!(
                    u.words("RestrictAddressFamilies").contains(&"AF_NETLINK"),
                    "{ctx}: sock_diag"
                );
                if u.get("ProtectKernelTunables") == Some("yes") {
                    assert!(
                        u.words("ReadWritePaths")
                            .iter()
                            .any(|p| p.trim_start_matches('-') == "/proc/sys/vm/drop_caches"),
                        "{ctx}: the page-cache drop needs drop_caches writable"
                    );
                }
            }
            _ => {
                let user = format!("myplatform-{name}");
                assert_eq!(u.get("User"), Some(user.as_str()), "{ctx}");
                assert_eq!(u.get("Group"), Some(user.as_str()), "{ctx}");
                assert_eq!(u.get("PrivateTmp"), Some("yes"), "{ctx}");
                assert_eq!(u.get("ProtectHome"), Some("yes"), "{ctx}");
            }
        }
        if name == "agent-jmeter" {
            assert_ne!(
                u.get("MemoryDenyWriteExecute"),
                Some("yes"),
                "{ctx}: the JMeter JVM's JIT"
            );
        }
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    // scripts/test installs Debian's systemd when this is missing; it needs
    // no running systemd.
    assert!(
        on_path("systemd-analyze"),
        "systemd-analyze not found: install Debian's systemd package (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    for name in NAMES {
        // verify checks that ExecStart's binary exists: point it at the
        // built one, in a copy with the same unit name.
        let text = std::fs::read_to_string(unit_path(name)).unwrap();
        let shipped = format!("ExecStart=/usr/bin/{name} ");
        assert!(text.contains(&shipped), "{name}: {shipped}");
        let built = format!("ExecStart={} ", bin(name).display());
        let copy = dir.path().join(format!("myplatform-{name}.service"));
        std::fs::write(&copy, text.replace(&shipped, &built)).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Unknown keys and bad values are only warnings: any output fails.
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify myplatform-{name}.service: {}\n{stderr}",
            out.status
        );
    }
}

/// scripts/dist for agent-monitor only, from the binary the e2e harness
/// built (no LTO build in a test), into `out`.
fn dist_agent_monitor(out: &Path) {
    let binary = bin("agent-monitor");
    let profile_dir = binary.parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(p) => p,
        None => panic!("{}", profile_dir.display()),
    };
    let started = Instant::now();
    run(Command::new(repo().join("scripts/dist"))
        .args([
            "--only",
            "agent-monitor",
            "--profile",
            profile,
            "--no-build",
            "--out",
        ])
        .arg(out)
        .env("CARGO_TARGET_DIR", target_dir));
    eprintln!(
        "scripts/dist --only agent-monitor --profile {profile}: {:?}",
        started.elapsed()
    );
}

#[test]
fn agent_monitor_deb_and_tarball() {
    let version = env!("CARGO_PKG_VERSION");
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_string();
    let out = tempfile::tempdir().unwrap();
    dist_agent_monitor(out.path());

    // --- the .deb ---
    let deb = out
        .path()
        .join(format!("myplatform-agent-monitor_{version}_{arch}.deb"));
    assert!(deb.is_file(), "{} missing", deb.display());
    let listing = stdout(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let entry = |path: &str| -> (String, String) {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" .{path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        (f[0].to_string(), f[1].to_string())
    };
    for (path, perms) in [
        ("/usr/bin/agent-monitor", "-rwxr-xr-x"),
        (
            "/lib/systemd/system/myplatform-agent-monitor.service",
            "-rw-r--r--",
        ),
        // Holds the join token once filled in, and the agent runs as root.
        ("/etc/myplatform/agent-monitor.toml", "-rw-------"),
        (
            "/usr/share/doc/myplatform-agent-monitor/copyright",
            "-rw-r--r--",
        ),
    ] {
        assert_eq!(
            entry(path),
            (perms.to_string(), "root/root".to_string()),
            "{path}"
        );
    }

    let info = stdout(Command::new("dpkg-deb").arg("-I").arg(&deb));
    for script in ["postinst", "prerm", "postrm"] {
        // dpkg-deb -I marks executable control files with `*`.
        assert!(
            info.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() >= 6 && f[4] == "*" && f[5] == script
            }),
            "{script} missing or not executable:\n{info}"
        );
    }
    let conffiles = stdout(
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&deb)
            .arg("conffiles"),
    );
    assert_eq!(conffiles.trim(), "/etc/myplatform/agent-monitor.toml");
    let field = |name: &str| {
        stdout(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name))
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "myplatform-agent-monitor");
    assert_eq!(field("Version"), version);
    assert_eq!(field("Architecture"), arch);
    let depends = field("Depends");
    assert!(depends.starts_with("libc6 (>= 2."), "{depends}");

    // The files are the ones in the repository, the scripts valid sh.
    let x = out.path().join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(x.join("DEBIAN")));
    assert_eq!(
        std::fs::read(x.join("lib/systemd/system/myplatform-agent-monitor.service")).unwrap(),
        std::fs::read(unit_path("agent-monitor")).unwrap()
    );
    assert_eq!(
        std::fs::metadata(x.join("usr/bin/agent-monitor"))
            .unwrap()
            .len(),
        std::fs::metadata(bin("agent-monitor")).unwrap().len()
    );
    for script in ["postinst", "prerm", "postrm"] {
        let p = x.join("DEBIAN").join(script);
        assert_eq!(mode(&p), 0o755, "{script}");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            !text.contains('@'),
            "{script}: template placeholder left:\n{text}"
        );
        run(Command::new("sh").arg("-n").arg(&p));
    }

    // Only where lintian is installed already (not added for this test).
    if on_path("lintian") {
        // Errors only. Unstripped on purpose: the dist profile keeps symbols
        // for backtraces (and this test packages a debug build). Warnings
        // left: systemctl instead of deb-systemd-helper (so the scripts need
        // nothing beyond systemd), the 0600 conffile (the token).
        run(Command::new("lintian")
            .args([
                "--fail-on",
                "error",
                "--suppress-tags",
                "unstripped-binary-or-object",
            ])
            .arg(&deb));
    } else {
        eprintln!("lintian not installed: skipped (it is not a test dependency)");
    }

    // --- the tarball and its install.sh ---
    let dir = format!("agent-monitor-{version}-linux-{arch}");
    let tarball = out.path().join(format!("{dir}.tar.gz"));
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(out.path()));
    let unpacked = out.path().join(&dir);
    for f in [
        "agent-monitor",
        "myplatform-agent-monitor.service",
        "agent-monitor.toml",
        "install.sh",
        "README",
    ] {
        assert!(unpacked.join(f).is_file(), "{f} not in {dir}.tar.gz");
    }
    let sums = std::fs::read_to_string(out.path().join("SHA256SUMS")).unwrap();
    run(Command::new("sha256sum")
        .arg("--check")
        .arg("--quiet")
        .arg("SHA256SUMS")
        .current_dir(out.path()));
    assert_eq!(sums.lines().count(), 2, "{sums}");

    let prefix = out.path().join("root");
    std::fs::create_dir(&prefix).unwrap();
    let install = |args: &[&str]| -> Output {
        Command::new(unpacked.join("install.sh"))
            .arg("--prefix")
            .arg(&prefix)
            .args(args)
            .env_remove("MYPLATFORM_TOKEN")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let o = install(args);
        assert!(
            o.status.success(),
            "install.sh {args:?}: {}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let args = [
        "--controller",
        "127.0.0.1:7443",
        "--token",
        "mpt_PackagingTest-1",
        "--ca-pin",
        PIN,
    ];
    ok(&args);

    let installed_bin = prefix.join("usr/local/bin/agent-monitor");
    let unit = prefix.join("etc/systemd/system/myplatform-agent-monitor.service");
    let conf = prefix.join("etc/myplatform/agent-monitor.toml");
    let state = prefix.join("var/lib/myplatform/agent-monitor");
    assert_eq!(mode(&installed_bin), 0o755);
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(mode(&state), 0o700);
    assert!(
        std::fs::read_to_string(&unit).unwrap().contains(
            "ExecStart=/usr/local/bin/agent-monitor --config /etc/myplatform/agent-monitor.toml"
        ),
        "the unit runs the binary where install.sh put it"
    );
    // The token is a secret: owner-only, and never for a moment otherwise.
    assert_eq!(mode(&conf), 0o600);
    // `key = "value"` lines; that the agent accepts them is checked below.
    let read_conf = || -> Vec<(String, String)> {
        std::fs::read_to_string(&conf)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (k, v) = l.split_once(" = ").unwrap_or_else(|| panic!("{l}"));
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect()
    };
    let expect = |token: &str| {
        vec![
            ("controller".to_string(), "127.0.0.1:7443".to_string()),
            ("token".to_string(), token.to_string()),
            ("ca_pin".to_string(), PIN.to_string()),
        ]
    };
    assert_eq!(read_conf(), expect("mpt_PackagingTest-1"));

    // Again with the same arguments: nothing changes.
    let snapshot = |p: &Path| (std::fs::read(p).unwrap(), mode(p));
    let before: Vec<_> = [&installed_bin, &unit, &conf]
        .iter()
        .map(|p| snapshot(p))
        .collect();
    ok(&args);
    let after: Vec<_> = [&installed_bin, &unit, &conf]
        .iter()
        .map(|p| snapshot(p))
        .collect();
    assert!(before == after, "a second run changed the installed files");
    assert_eq!(mode(&state), 0o700);
    let leftovers: Vec<_> = walk(&prefix)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".new"))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Without values the config stays; one new value keeps the others.
    ok(&[]);
    assert_eq!(snapshot(&conf), before[2]);
    ok(&["--token", "mpt_Second"]);
    assert_eq!(read_conf(), expect("mpt_Second"));
    assert_eq!(mode(&conf), 0o600);

    // A value that would break out of the TOML string is refused, and the
    // config is left as it was.
    let kept = snapshot(&conf);
    for bad in [
        ["--controller", "x\"\ninjected = \"1:7443"],
        ["--ca-pin", "sha256:nothex"],
        ["--token", "mpt_a b"],
    ] {
        let o = install(&bad);
        assert!(!o.status.success(), "install.sh accepted {bad:?}");
        assert_eq!(snapshot(&conf), kept, "{bad:?}");
    }

    // The agent takes the written config (its parser denies unknown keys
    // and checks the pin): it remembers the controller in its state
    // directory before the first connection attempt.
    let agent_state = out.path().join("agent-state");
    let mut cmd = Command::new(&installed_bin);
    cmd.arg("--config")
        .arg(&conf)
        .arg("--state-dir")
        .arg(&agent_state);
    let mut agent = Proc::spawn("agent-monitor", cmd, out.path());
    let remembered = agent_state.join("link.toml");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !remembered.exists() {
        if let Some(status) = agent.try_wait() {
            panic!(
                "agent-monitor exited with the installed config: {status}\n{}",
                agent.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "agent-monitor did not start:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::fs::read_to_string(&remembered)
            .unwrap()
            .contains("127.0.0.1:7443")
    );
    agent.terminate(Duration::from_secs(5));
}

/// The cargo target directory this test was built in:
/// `<target>/<profile>/deps/<test>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("test executable in <target>/<profile>/deps")
        .to_path_buf()
}

/// `2.17` as (2, 17), for comparing glibc versions.
fn glibc_version(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// `scripts/dist --portable` for agent-monitor, with the quick `linkcheck`
/// profile (no optimisation, no debug info: how it links is the same as a
/// shipping build's). The tarball keeps the name the controller picks
/// packages by; its binary needs no glibc symbol version above 2.17 and
/// nothing but glibc, and it starts.
#[test]
fn portable_agent_monitor_needs_glibc_2_17_at_most() {
    let version = env!("CARGO_PKG_VERSION");
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_string();
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let dist = Command::new(repo().join("scripts/dist"))
        .args([
            "--portable",
            "--only",
            "agent-monitor",
            "--profile",
            "linkcheck",
            "--out",
        ])
        .arg(out.path())
        // Its own target directory (zig's caches go inside it): nothing to
        // share with the native builds, whose lock the other tests need.
        .env("CARGO_TARGET_DIR", target_dir().join("portable-test"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        dist.status.success(),
        "scripts/dist --portable: {} (cargo-zigbuild and zig come from PyPI, \
         packaging/requirements-zig.txt; scripts/test installs them)\n{}{}",
        dist.status,
        String::from_utf8_lossy(&dist.stdout),
        String::from_utf8_lossy(&dist.stderr)
    );
    eprintln!(
        "scripts/dist --portable --only agent-monitor --profile linkcheck: {:?}",
        started.elapsed()
    );

    let dir = format!("agent-monitor-{version}-linux-{arch}");
    run(Command::new("tar")
        .arg("-xzf")
        .arg(out.path().join(format!("{dir}.tar.gz")))
        .arg("-C")
        .arg(out.path()));
    let unpacked = out.path().join(&dir);
    let binary = unpacked.join("agent-monitor");

    // Every versioned glibc symbol it asks the dynamic loader for.
    let symbols = stdout(Command::new("objdump").arg("-T").arg(&binary));
    let mut versions: Vec<&str> = symbols
        .split_whitespace()
        // `(GLIBC_2.17)`, or without the parentheses in older binutils.
        .filter_map(|w| w.trim_matches(['(', ')']).strip_prefix("GLIBC_"))
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    versions.sort_by_key(|v| glibc_version(v));
    versions.dedup();
    let newest = *versions
        .last()
        .expect("no GLIBC_ symbol versions: not linked to glibc?");
    assert!(
        glibc_version(newest) <= (2, 17),
        "the portable agent-monitor needs GLIBC_{newest} (all: {versions:?})"
    );
    // Nothing but glibc's own libraries (zig links its unwinder in, so not
    // even libgcc_s).
    let headers = stdout(Command::new("objdump").arg("-p").arg(&binary));
    let needed: Vec<&str> = headers
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(str::trim)
        .collect();
    for lib in &needed {
        assert!(
            [
                "libc.so.",
                "libm.so.",
                "libpthread.so.",
                "libdl.so.",
                "librt.so.",
                "ld-linux"
            ]
            .iter()
            .any(|g| lib.starts_with(g)),
            "the portable agent-monitor needs {lib} (all: {needed:?})"
        );
    }

    let said = stdout(Command::new(&binary).arg("--version"));
    assert_eq!(said.trim(), format!("agent-monitor {version}"));

    // What the tarball and the .deb tell the host: the real minimum.
    let readme = std::fs::read_to_string(unpacked.join("README")).unwrap();
    assert!(readme.contains("Needs glibc 2.17 or newer"), "{readme}");
    assert!(readme.contains("Build: portable"), "{readme}");
    let install = std::fs::read_to_string(unpacked.join("install.sh")).unwrap();
    assert!(
        install.lines().any(|l| l == "GLIBC_MIN=2.17"),
        "install.sh does not check for glibc 2.17"
    );
    let deb = out
        .path()
        .join(format!("myplatform-agent-monitor_{version}_{arch}.deb"));
    let depends = stdout(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"));
    assert!(depends.starts_with("libc6 (>= 2.17)"), "{depends}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
