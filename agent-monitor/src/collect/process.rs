//! Finding the application's process by an identifier string, and the socket
//! inodes it holds, from /proc.
//!
//! Owns: matching command lines the way `ps -ef | grep <identifier>` did, and
//! reading a process's fd links. Must not: fork `ps`/`grep`, or panic when a
//! process exits while being read (routine on a busy host: such a process is
//! skipped, or the error returned). Linux only.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Pid of the application process: the first process (lowest pid) whose
/// command line (argv joined by spaces) contains `identifier`, like the
/// original `ps -ef | grep <identifier>`; never `exclude` (our own pid, whose
/// own argv may well contain the identifier) and never a process whose argv[0]
/// is grep. An empty identifier matches nothing rather than pid 1.
/// `proc_root` is normally "/proc" (a parameter so tests can use a fixture).
///
/// This reads every process's cmdline; a caller polling every second should
/// keep the pid and re-check it with [`process_matches`] instead.
pub fn find_process(proc_root: &Path, identifier: &str, exclude: u32) -> Option<u32> {
    if identifier.is_empty() {
        return None;
    }
    let mut pids: Vec<u32> = fs::read_dir(proc_root)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // read_dir order is not pid order once pids wrap around.
    pids.sort_unstable();
    let mut buf = Vec::with_capacity(4096);
    pids.into_iter()
        .filter(|&pid| pid != exclude)
        .find(|&pid| cmdline_matches(proc_root, pid, identifier, &mut buf))
}

/// Whether `pid` still exists and its command line still contains
/// `identifier` (cheap re-check of a pid found earlier: pids get reused).
pub fn process_matches(proc_root: &Path, pid: u32, identifier: &str) -> bool {
    !identifier.is_empty() && cmdline_matches(proc_root, pid, identifier, &mut Vec::new())
}

fn cmdline_matches(proc_root: &Path, pid: u32, identifier: &str, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let path = proc_root.join(pid.to_string()).join("cmdline");
    // Vanished (or unreadable) processes are simply not candidates.
    if File::open(path)
        .and_then(|mut f| f.read_to_end(buf))
        .is_err()
    {
        return false;
    }
    // Kernel threads and zombies have an empty cmdline.
    while buf.last() == Some(&0) {
        buf.pop();
    }
    if buf.is_empty() {
        return false;
    }
    let argv0 = buf.split(|&b| b == 0).next().unwrap_or_default();
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
    if base == b"grep" {
        return false;
    }
    for b in buf.iter_mut() {
        if *b == 0 {
            *b = b' ';
        }
    }
    let needle = identifier.as_bytes();
    buf.windows(needle.len()).any(|w| w == needle)
}

/// Socket inodes the process holds (from /proc/<pid>/fd/* links "socket:[N]").
/// Reading another user's process needs CAP_SYS_PTRACE-like rights (EACCES
/// otherwise). A process that exits mid-read gives Err, not a panic.
pub fn socket_inodes(proc_root: &Path, pid: u32) -> io::Result<HashSet<u64>> {
    let fd_dir = proc_root.join(pid.to_string()).join("fd");
    let mut inodes = HashSet::new();
    for entry in fs::read_dir(&fd_dir)? {
        let entry = entry?;
        match fs::read_link(entry.path()) {
            Ok(target) => {
                if let Some(inode) = parse_socket_link(target.as_os_str().as_bytes()) {
                    inodes.insert(inode);
                }
            }
            // One fd closed between readdir and readlink is routine; the whole
            // process gone is not, and the caller must hear about it rather
            // than get a silently partial set.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::metadata(&fd_dir)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(inodes)
}

fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn fake_proc(procs: &[(u32, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, cmdline) in procs {
            let p = dir.path().join(pid.to_string());
            fs::create_dir(&p).unwrap();
            fs::write(p.join("cmdline"), cmdline).unwrap();
        }
        // Things /proc has that are not processes.
        fs::create_dir(dir.path().join("sys")).unwrap();
        fs::write(dir.path().join("uptime"), "1.0 1.0\n").unwrap();
        symlink("1", dir.path().join("self")).unwrap();
        dir
    }

    #[test]
    fn finds_lowest_matching_pid_in_numeric_order() {
        // 1000 sorts before 200 as a string; the answer must be by number.
        let root = fake_proc(&[
            (1000, b"java\0-jar\0app.jar\0"),
            (200, b"java\0-Dname=app.jar\0x\0"),
            (1, b"/sbin/init\0"),
        ]);
        assert_eq!(find_process(root.path(), "app.jar", 0), Some(200));
        // argv is joined by spaces, so an identifier may span arguments.
        assert_eq!(find_process(root.path(), "-jar app.jar", 0), Some(1000));
    }

    #[test]
    fn skips_grep_self_empty_and_vanished() {
        let root = fake_proc(&[
            (10, b"grep\0--color\0myapp\0"),
            (11, b"/usr/bin/grep\0myapp\0"),
            (12, b"monitor\0--identifier\0myapp\0"),
            (13, b""), // kernel thread or zombie
            (14, b"/opt/myapp/bin/server\0"),
        ]);
        // A pid directory without cmdline: the process exited mid-scan.
        fs::create_dir(root.path().join("9")).unwrap();
        assert_eq!(find_process(root.path(), "myapp", 12), Some(14));
        assert_eq!(find_process(root.path(), "myapp", 0), Some(12));
        assert_eq!(find_process(root.path(), "nothing-like-this", 0), None);
        assert_eq!(find_process(root.path(), "", 0), None);
        assert!(process_matches(root.path(), 14, "myapp"));
        assert!(!process_matches(root.path(), 14, "other"));
        assert!(!process_matches(root.path(), 99, "myapp"));
    }

    #[test]
    fn cmdline_without_nuls_and_non_utf8() {
        // setproctitle-style rewritten cmdline, and bytes that are not UTF-8.
        let root = fake_proc(&[(5, b"nginx: master process \xff\xfe"), (6, b"\xffapp\0")]);
        assert_eq!(find_process(root.path(), "master process", 0), Some(5));
        assert_eq!(find_process(root.path(), "app", 0), Some(6));
    }

    #[test]
    fn missing_proc_root_is_none() {
        let p = PathBuf::from("/nonexistent/proc/root");
        assert_eq!(find_process(&p, "x", 0), None);
    }

    #[test]
    fn socket_inodes_from_fd_links() {
        let root = fake_proc(&[(7, b"app\0")]);
        let fd = root.path().join("7").join("fd");
        fs::create_dir(&fd).unwrap();
        for (n, target) in [
            ("0", "/dev/null"),
            ("1", "pipe:[555]"),
            ("3", "socket:[12345]"),
            ("4", "socket:[4294967296]"),
            ("5", "socket:[12345]"),
            ("6", "socket:[]"),
            ("7", "socket:[12x]"),
            ("8", "anon_inode:[eventpoll]"),
        ] {
            symlink(target, fd.join(n)).unwrap();
        }
        let got = socket_inodes(root.path(), 7).unwrap();
        assert_eq!(got, HashSet::from([12345, 4294967296]));
    }

    #[test]
    fn socket_inodes_of_missing_process_is_err() {
        let root = fake_proc(&[]);
        let err = socket_inodes(root.path(), 4242).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn socket_link_parsing() {
        assert_eq!(parse_socket_link(b"socket:[1]"), Some(1));
        assert_eq!(parse_socket_link(b"socket:[+1]"), None);
        assert_eq!(parse_socket_link(b"socket:[99999999999999999999999]"), None);
        assert_eq!(parse_socket_link(b"socket:[1"), None);
        assert_eq!(parse_socket_link(b""), None);
    }
}
