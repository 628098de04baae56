//! Filesystem usage of real (block-backed) filesystems, from the mount
//! table and statvfs. Sizes change slowly, so the sampler runs this every
//! few minutes, not every tick. Pseudo filesystems (proc, tmpfs, overlay
//! layers, ...) and bind mounts of the same device are left out.

use std::collections::HashSet;
use std::path::Path;

use protocol::metrics::FsStats;

use super::{CollectError, Roots};

const REAL_FS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "vfat", "exfat", "f2fs", "jfs", "reiserfs",
    "ntfs", "ntfs3",
];

/// (device, mount point, fs type) of real filesystems, first mount of each
/// device only. Octal escapes in mount points (`\040` for space) decoded.
pub fn parse_mounts(text: &str) -> Vec<(String, String, String)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || !REAL_FS.contains(&f[2]) {
            continue;
        }
        if seen.insert(f[0].to_string()) {
            out.push((f[0].to_string(), unescape(f[1]), f[2].to_string()));
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn collect_filesystems(roots: &Roots) -> Result<Vec<FsStats>, CollectError> {
    let mounts = parse_mounts(&roots.read_proc("self/mounts")?);
    let mut out = Vec::with_capacity(mounts.len());
    for (_, mount, fstype) in mounts {
        // A mount that vanished or hangs is skipped, not fatal.
        let Ok(st) = nix::sys::statvfs::statvfs(Path::new(&mount)) else {
            continue;
        };
        let frag = st.fragment_size();
        let total = st.blocks() * frag;
        let free = st.blocks_free() * frag;
        let avail = st.blocks_available() * frag;
        out.push(FsStats {
            mount,
            fstype,
            total_bytes: total,
            used_bytes: total.saturating_sub(free),
            avail_bytes: avail,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_keep_real_filesystems_once() {
        let text = "proc /proc proc rw 0 0\n/dev/vda / ext4 rw 0 0\n/dev/vda /bind ext4 rw 0 0\n\
                    tmpfs /tmp tmpfs rw 0 0\n/dev/sdb1 /data\\040disk xfs rw 0 0\nshort\n";
        let m = parse_mounts(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].1, "/data disk");
    }

    #[test]
    fn live_root_filesystem() {
        let fs = collect_filesystems(&Roots::default()).unwrap();
        for f in &fs {
            assert!(
                f.used_bytes <= f.total_bytes && f.avail_bytes <= f.total_bytes,
                "{f:?}"
            );
        }
    }
}
