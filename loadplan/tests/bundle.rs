//! Uploaded zips and task artifacts through the public API: good zips made
//! with the zip writer, evil ones with the writer where it can make them
//! and byte by byte where it refuses to (lying sizes, duplicate names,
//! encryption flags, shared data).

use std::io::{Cursor, Read, Write};
use std::path::Path;

use loadplan::bundle::{self, Bundle, BundleLimits};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

const JMX: &[u8] = b"<?xml version=\"1.0\"?><jmeterTestPlan version=\"1.2\"/>";

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

/// A zip of these files, made the way a zip tool would.
fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    zip_with(files, deflated())
}

fn zip_with(files: &[(&str, &[u8])], options: SimpleFileOptions) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        if name.ends_with('/') {
            w.add_directory(*name, options).unwrap();
        } else {
            w.start_file(*name, options).unwrap();
            w.write_all(data).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

fn check(zip: &[u8]) -> Result<Bundle, String> {
    check_with(zip, &BundleLimits::default())
}

fn check_with(zip: &[u8], limits: &BundleLimits) -> Result<Bundle, String> {
    bundle::check(Cursor::new(zip), limits).map_err(|e| e.to_string())
}

#[track_caller]
fn refused(zip: &[u8], want: &str) {
    refused_with(zip, &BundleLimits::default(), want);
}

#[track_caller]
fn refused_with(zip: &[u8], limits: &BundleLimits, want: &str) {
    match check_with(zip, limits) {
        Ok(b) => panic!("accepted, wanted {want:?}: {b:?}"),
        Err(e) => assert_eq!(e, want),
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One entry of a zip written byte by byte: whatever the headers say.
#[derive(Clone)]
struct Raw {
    name: &'static str,
    /// Stored as is (already compressed if `method` says so).
    data: Vec<u8>,
    method: u16,
    flags: u16,
    crc: u32,
    /// Declared uncompressed size.
    size: u32,
    /// Upper 16 bits: Unix mode.
    external: u32,
    /// Entry's local header is this earlier entry's (shared data).
    same_offset_as: Option<usize>,
}

impl Raw {
    fn stored(name: &'static str, data: &[u8]) -> Raw {
        Raw {
            name,
            data: data.to_vec(),
            method: 0,
            flags: 0,
            crc: crc32(data),
            size: data.len() as u32,
            external: 0o100_644 << 16,
            same_offset_as: None,
        }
    }
}

fn raw_zip(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for e in entries {
        if let Some(i) = e.same_offset_as {
            offsets.push(offsets[i]);
            continue;
        }
        offsets.push(out.len() as u32);
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend(20u16.to_le_bytes()); // version needed
        out.extend(e.flags.to_le_bytes());
        out.extend(e.method.to_le_bytes());
        out.extend(0u16.to_le_bytes()); // time
        out.extend(0x21u16.to_le_bytes()); // date: 1980-01-01
        out.extend(e.crc.to_le_bytes());
        out.extend((e.data.len() as u32).to_le_bytes());
        out.extend(e.size.to_le_bytes());
        out.extend((e.name.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes()); // extra
        out.extend(e.name.as_bytes());
        out.extend(&e.data);
    }
    let cd_start = out.len() as u32;
    for (e, offset) in entries.iter().zip(&offsets) {
        let e = match e.same_offset_as {
            Some(i) => Raw {
                name: e.name,
                ..entries[i].clone()
            },
            None => e.clone(),
        };
        out.extend(0x0201_4b50u32.to_le_bytes());
        out.extend(0x031eu16.to_le_bytes()); // made by: Unix, 3.0
        out.extend(20u16.to_le_bytes());
        out.extend(e.flags.to_le_bytes());
        out.extend(e.method.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(0x21u16.to_le_bytes());
        out.extend(e.crc.to_le_bytes());
        out.extend((e.data.len() as u32).to_le_bytes());
        out.extend(e.size.to_le_bytes());
        out.extend((e.name.len() as u16).to_le_bytes());
        out.extend([0u8; 8]); // extra, comment, disk, internal attributes
        out.extend(e.external.to_le_bytes());
        out.extend(offset.to_le_bytes());
        out.extend(e.name.as_bytes());
    }
    let cd_len = out.len() as u32 - cd_start;
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend(cd_len.to_le_bytes());
    out.extend(cd_start.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// `data` deflated as the zip writer does it, with its CRC.
fn deflate(data: &[u8]) -> (Vec<u8>, u32) {
    let zip = zip_of(&[("x", data)]);
    let mut archive = ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut raw = archive.by_index_raw(0).unwrap();
    let crc = raw.crc32();
    let mut out = Vec::new();
    raw.read_to_end(&mut out).unwrap();
    (out, crc)
}

#[test]
fn a_good_zip_lists_its_plan_and_files() {
    let csv = b"user,pass\nalice,1\nbob,2\n";
    let zip = zip_of(&[
        ("data/", b""),
        ("data/users.csv", csv),
        ("Login Test.jmx", JMX),
        ("lib/readme.txt", b"hello"),
    ]);
    let b = check(&zip).unwrap();
    assert_eq!(b.jmx, "Login Test.jmx");
    assert_eq!(
        b.files,
        vec![
            ("data/users.csv".to_string(), csv.len() as u64),
            ("Login Test.jmx".to_string(), JMX.len() as u64),
            ("lib/readme.txt".to_string(), 5),
        ]
    );
    assert_eq!(b.total_bytes, (csv.len() + JMX.len() + 5) as u64);

    // Stored (uncompressed) entries, `./` prefixes, a folder entry for the
    // top, macOS Finder's resource forks, an empty file: all fine.
    let zip = zip_with(
        &[
            ("./", b""),
            ("./test.jmx", JMX),
            ("./data//users.csv", csv),
            ("empty.txt", b""),
            ("__MACOSX/", b""),
            ("__MACOSX/._test.jmx", b"\0\x05\x16\x07"),
        ],
        SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
    );
    let b = check(&zip).unwrap();
    assert_eq!(b.jmx, "test.jmx");
    let names: Vec<&str> = b.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["test.jmx", "data/users.csv", "empty.txt"]);
}

#[test]
fn a_file_path_works_like_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.zip");
    std::fs::write(&path, zip_of(&[("t.jmx", JMX)])).unwrap();
    let b = bundle::check_file(&path, &BundleLimits::default()).unwrap();
    assert_eq!(b.jmx, "t.jmx");
    let e = bundle::check_file(&dir.path().join("gone.zip"), &BundleLimits::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("gone.zip") && e.contains("No such file"), "{e}");
}

#[test]
fn not_a_zip_or_a_damaged_one() {
    let e = check(b"PK\x03\x04 this is not really a zip").unwrap_err();
    assert!(e.starts_with("not a zip file, or a damaged one ("), "{e}");
    let e = check(&[]).unwrap_err();
    assert!(e.starts_with("not a zip file, or a damaged one ("), "{e}");
    let e = check(JMX).unwrap_err();
    assert!(e.starts_with("not a zip file, or a damaged one ("), "{e}");

    // Truncated: the central directory is gone.
    let good = zip_of(&[("t.jmx", JMX), ("d.csv", &[b'x'; 5000])]);
    let e = check(&good[..good.len() / 2]).unwrap_err();
    assert!(e.starts_with("not a zip file, or a damaged one ("), "{e}");

    // One flipped byte in stored data: the checksum says so.
    let mut zip = raw_zip(&[Raw::stored("t.jmx", JMX), Raw::stored("d.csv", b"a,b,c\n")]);
    let at = zip.windows(6).position(|w| w == b"a,b,c\n").unwrap();
    zip[at] = b'z';
    assert_eq!(
        check(&zip).unwrap_err(),
        "d.csv: damaged zip entry (Invalid checksum)"
    );
}

#[test]
fn exactly_one_plan_at_the_top() {
    refused(
        &zip_of(&[("users.csv", b"a\n")]),
        "the zip holds no .jmx file: put the test plan (.jmx) at the zip's top level",
    );
    refused(
        &zip_of(&[("a.jmx", JMX), ("b.JMX", JMX), ("x.csv", b"1")]),
        "the zip holds 2 .jmx files at its top level (a.jmx, b.JMX): keep exactly one",
    );
    refused(
        &zip_of(&[
            ("plan/", b""),
            ("plan/test.jmx", JMX),
            ("plan/data/users.csv", b"a\n"),
            ("__MACOSX/plan/._test.jmx", b"x"),
        ]),
        "everything is inside the folder \"plan/\" (the test plan is plan/test.jmx): \
         zip the folder's contents, not the folder",
    );
    refused(
        &zip_of(&[("users.csv", b"a\n"), ("plans/test.jmx", JMX)]),
        "the test plan plans/test.jmx is inside a folder: put the .jmx at the zip's top level",
    );
    // Names are UTF-8 (or CP437 from old tools), not just ASCII.
    let b = check(&zip_of(&[("Prüfung€€.jmx", JMX), ("données€€.csv", b"1")])).unwrap();
    assert_eq!(b.jmx, "Prüfung€€.jmx");
    refused(
        &zip_of(&[("€€", b"1")]),
        "the zip holds no .jmx file: put the test plan (.jmx) at the zip's top level",
    );
    // A .jmx in a folder beside the one at the top is just a file.
    let b = check(&zip_of(&[("main.jmx", JMX), ("old/main.jmx", JMX)])).unwrap();
    assert_eq!(b.jmx, "main.jmx");
}

#[test]
fn names_that_escape_are_refused() {
    let with = |name: &'static str| raw_zip(&[Raw::stored("t.jmx", JMX), Raw::stored(name, b"x")]);
    refused(
        &with("/etc/cron.d/evil"),
        "/etc/cron.d/evil: absolute paths are not allowed in the zip",
    );
    refused(
        &with("C:/Windows/evil.dll"),
        "C:/Windows/evil.dll: absolute paths are not allowed in the zip",
    );
    refused(
        &with("../evil.csv"),
        "../evil.csv: \"..\" in a path is not allowed (it would unpack outside the folder)",
    );
    refused(
        &with("data/../../evil.csv"),
        "data/../../evil.csv: \"..\" in a path is not allowed (it would unpack outside the folder)",
    );
    refused(
        &with("data/sub/.."),
        "data/sub/..: \"..\" in a path is not allowed (it would unpack outside the folder)",
    );
    refused(
        &with("..\\..\\evil.csv"),
        "..\\..\\evil.csv: backslashes are not allowed in names (zip paths use /, and a \\ may \
         become a folder separator when unpacked)",
    );
    refused(
        &with("data\\users.csv"),
        "data\\users.csv: backslashes are not allowed in names (zip paths use /, and a \\ may \
         become a folder separator when unpacked)",
    );
    refused(
        &with("bad\nname.csv"),
        "\"bad\\nname.csv\": control characters in the name",
    );
    refused(&with("./."), "\"./.\": not a file name");
    let long: &'static str = Box::leak(format!("{}.csv", "x".repeat(300)).into_boxed_str());
    refused(
        &with(long),
        &format!("{long:?}: a part of the path is longer than 255 bytes"),
    );
}

#[test]
fn links_and_special_files_are_refused() {
    // What `zip -y` makes of a symlink.
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("t.jmx", deflated()).unwrap();
    w.write_all(JMX).unwrap();
    w.add_symlink("users.csv", "/etc/shadow", deflated())
        .unwrap();
    let zip = w.finish().unwrap().into_inner();
    refused(&zip, "users.csv: symbolic links are not allowed in the zip");

    // The same, byte by byte, and as a folder.
    let link = |name: &'static str| Raw {
        external: 0o120_777 << 16,
        ..Raw::stored(name, b"/etc")
    };
    refused(
        &raw_zip(&[Raw::stored("t.jmx", JMX), link("data")]),
        "data: symbolic links are not allowed in the zip",
    );
    refused(
        &raw_zip(&[Raw::stored("t.jmx", JMX), link("data/")]),
        "data: symbolic links are not allowed in the zip",
    );
    for (mode, what) in [
        (0o010_644, "fifo"),
        (0o020_644, "char device"),
        (0o140_644, "socket"),
    ] {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("t.jmx", deflated()).unwrap();
        w.write_all(JMX).unwrap();
        w.start_file("dev", deflated().external_attributes(mode << 16))
            .unwrap();
        let zip = w.finish().unwrap().into_inner();
        let e = check(&zip).unwrap_err();
        assert!(
            e == "dev: special files (devices, pipes, sockets) are not allowed in the zip",
            "{what}: {e}"
        );
    }
    // A file whose mode says folder.
    let odd = Raw {
        external: 0o040_755 << 16,
        ..Raw::stored("users.csv", b"x")
    };
    refused(
        &raw_zip(&[Raw::stored("t.jmx", JMX), odd]),
        "\"users.csv\": its type (file or folder) contradicts its name",
    );
}

#[test]
fn duplicates_and_clashes_are_refused() {
    refused(
        &raw_zip(&[
            Raw::stored("t.jmx", JMX),
            Raw::stored("users.csv", b"a"),
            Raw::stored("users.csv", b"b"),
        ]),
        "the zip lists the same name twice",
    );
    refused(
        &raw_zip(&[
            Raw::stored("t.jmx", JMX),
            Raw::stored("data/users.csv", b"a"),
            Raw::stored("./data//users.csv", b"b"),
        ]),
        "data/users.csv: the name appears twice in the zip",
    );
    refused(
        &raw_zip(&[
            Raw::stored("t.jmx", JMX),
            Raw::stored("data", b"a"),
            Raw::stored("data/users.csv", b"b"),
        ]),
        "data: is both a file and a folder in the zip",
    );
}

#[test]
fn encryption_and_unknown_compression_are_refused() {
    let encrypted = Raw {
        flags: 1,
        ..Raw::stored("users.csv", b"0123456789ab-secret")
    };
    refused(
        &raw_zip(&[Raw::stored("t.jmx", JMX), encrypted]),
        "users.csv: encrypted (password-protected) entries are not supported: zip without a password",
    );
    let bzip2 = Raw {
        method: 12,
        ..Raw::stored("users.csv", b"BZh9...")
    };
    refused(
        &raw_zip(&[Raw::stored("t.jmx", JMX), bzip2]),
        "users.csv: compressed with bzip2, which is not supported: use deflate (the usual) or none",
    );
}

#[test]
fn counts_and_sizes_have_limits() {
    let limits = BundleLimits {
        max_files: 5,
        max_total_bytes: 1 << 20,
        ..BundleLimits::default()
    };
    let files: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("{i}.csv"), vec![b'1'])).collect();
    let mut with_plan: Vec<(&str, &[u8])> = vec![("t.jmx", JMX)];
    with_plan.extend(files.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    refused_with(
        &zip_of(&with_plan),
        &limits,
        "the zip holds 6 entries, more than the limit of 5",
    );
    check_with(&zip_of(&with_plan[..5]), &limits).unwrap();

    // Honest sizes over the total: refused from the headers already.
    let noise: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    refused_with(
        &zip_of(&[("t.jmx", JMX), ("a.bin", &noise), ("b.bin", &noise)]),
        &limits,
        "the files unpack to more than 1 MiB, the limit",
    );
    check_with(&zip_of(&[("t.jmx", JMX), ("a.bin", &noise)]), &limits).unwrap();
}

#[test]
fn a_zip_bomb_is_refused_by_its_ratio() {
    let zeros = vec![0u8; 5 << 20];
    refused(
        &zip_of(&[("t.jmx", JMX), ("zeros.csv", &zeros)]),
        "zeros.csv: unpacks to more than 200 times its compressed size (a zip bomb?)",
    );
    // Below the exempt size a high ratio is fine.
    let small = vec![b','; 512 << 10];
    check(&zip_of(&[("t.jmx", JMX), ("commas.csv", &small)])).unwrap();
    // A looser ratio lets the same file through.
    let loose = BundleLimits {
        max_ratio: 2000,
        ..BundleLimits::default()
    };
    check_with(&zip_of(&[("t.jmx", JMX), ("zeros.csv", &zeros)]), &loose).unwrap();
}

#[test]
fn a_header_that_understates_the_size_is_caught_while_decompressing() {
    // 16 MiB of zeros deflate to ~16 KiB; the headers claim 100 bytes, so
    // the declared total and ratio are harmless and only decompression
    // can tell.
    let big = vec![0u8; 16 << 20];
    let (deflated, crc) = deflate(&big);
    let liar = Raw {
        method: 8,
        crc,
        size: 100,
        data: deflated,
        ..Raw::stored("users.csv", b"")
    };
    let zip = raw_zip(&[Raw::stored("t.jmx", JMX), liar]);
    let limits = BundleLimits {
        max_total_bytes: 1 << 20,
        ..BundleLimits::default()
    };
    refused_with(
        &zip,
        &limits,
        "users.csv: holds more data than its header declares (100 bytes): the zip is damaged or crafted",
    );
    // Overstating is caught too (and the checksum no longer matches).
    let (deflated, crc) = deflate(b"a,b\n");
    let boaster = Raw {
        method: 8,
        crc,
        size: 1000,
        data: deflated,
        ..Raw::stored("users.csv", b"")
    };
    refused(
        &raw_zip(&[Raw::stored("t.jmx", JMX), boaster]),
        "users.csv: holds 4 bytes, its header declares 1000: the zip is damaged",
    );
}

#[test]
fn entries_sharing_their_data_are_refused() {
    let shared = Raw {
        same_offset_as: Some(1),
        ..Raw::stored("b.csv", b"")
    };
    refused(
        &raw_zip(&[
            Raw::stored("t.jmx", JMX),
            Raw::stored("a.csv", b"1,2,3"),
            shared,
        ]),
        "entries of the zip share their data (a crafted zip bomb)",
    );
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &p, out);
            } else if ft.is_symlink() {
                out.push(format!("{rel} ->"));
            } else {
                out.push(rel);
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

#[test]
fn unpack_writes_what_check_listed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("task-1");
    let csv: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("user{i},{i}\n").into_bytes())
        .collect();
    let zip = zip_with(
        &[
            ("test.jmx", JMX),
            ("data/users.csv", &csv),
            ("empty/", b""),
            ("__MACOSX/._test.jmx", b"x"),
        ],
        // Whatever modes the zip asks for, files come out 0644.
        deflated().unix_permissions(0o4777),
    );
    let b = bundle::unpack(Cursor::new(&zip), &dest, &BundleLimits::default()).unwrap();
    assert_eq!(b, check(&zip).unwrap());
    assert_eq!(
        tree(&dest),
        ["data/", "data/users.csv", "empty/", "test.jmx"]
    );
    assert_eq!(std::fs::read(dest.join("data/users.csv")).unwrap(), csv);
    assert_eq!(std::fs::read(dest.join("test.jmx")).unwrap(), JMX);
    let mode = std::fs::metadata(dest.join("test.jmx"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7000, 0, "no setuid/setgid/sticky: {mode:o}");
    assert_eq!(mode & 0o111, 0, "not executable: {mode:o}");

    // Again into the same folder: nothing is overwritten.
    std::fs::write(dest.join("test.jmx"), b"mine").unwrap();
    let e = bundle::unpack(Cursor::new(&zip), &dest, &BundleLimits::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("task-1/test.jmx") && e.contains("exists"), "{e}");
    assert_eq!(std::fs::read(dest.join("test.jmx")).unwrap(), b"mine");
}

#[test]
fn unpack_never_writes_outside_its_folder() {
    // The temp dir's parent is where `../../x` would land; the names are
    // unique so no one else's file is at stake.
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().parent().unwrap().to_path_buf();
    let tag = format!(
        "zipslip-{}-{}",
        std::process::id(),
        dir.path().display().to_string().len()
    );
    let up1: &'static str = Box::leak(format!("../{tag}-1").into_boxed_str());
    let up2: &'static str = Box::leak(format!("../../{tag}-2").into_boxed_str());
    let abs: &'static str = Box::leak(format!("{}/{tag}-3", parent.display()).into_boxed_str());
    let dest = dir.path().join("dest");
    let before = tree(dir.path());
    for evil in [
        raw_zip(&[Raw::stored("t.jmx", JMX), Raw::stored(up1, b"x")]),
        raw_zip(&[Raw::stored("t.jmx", JMX), Raw::stored(up2, b"x")]),
        raw_zip(&[Raw::stored("t.jmx", JMX), Raw::stored(abs, b"x")]),
        raw_zip(&[
            Raw::stored("t.jmx", JMX),
            Raw {
                external: 0o120_777 << 16,
                ..Raw::stored("link", b"..")
            },
            Raw::stored("link/x", b"x"),
        ]),
    ] {
        let e = bundle::unpack(Cursor::new(&evil), &dest, &BundleLimits::default());
        assert!(e.is_err());
    }
    // Refused before anything was created, dest included.
    assert_eq!(tree(dir.path()), before);
    for n in 1..=3 {
        assert!(!parent.join(format!("{tag}-{n}")).exists());
        assert!(!dir.path().join(format!("{tag}-{n}")).exists());
    }

    // A symlink already in dest is not followed.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("data")).unwrap();
    std::os::unix::fs::symlink(outside.join("t.jmx"), dest.join("t.jmx")).unwrap();
    let zip = zip_of(&[("data/users.csv", b"a\n"), ("t.jmx", JMX)]);
    let e = bundle::unpack(Cursor::new(&zip), &dest, &BundleLimits::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("dest/data") && e.contains("not followed"), "{e}");
    let zip = zip_of(&[("t.jmx", JMX)]);
    let e = bundle::unpack(Cursor::new(&zip), &dest, &BundleLimits::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("dest/t.jmx") && e.contains("exists"), "{e}");
    assert!(tree(&outside).is_empty(), "{:?}", tree(&outside));
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn an_artifact_holds_the_plan_and_its_data_and_names_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let users = b"alice,1\nbob,2\n".to_vec();
    let big: Vec<u8> = (0..9_000_000u32).map(|i| (i % 253) as u8).collect();
    let files = || {
        vec![
            (bundle::data_path("users.csv"), Cursor::new(users.clone())),
            (bundle::data_path("big.bin"), Cursor::new(big.clone())),
        ]
    };
    let limits = BundleLimits::default();
    let path = dir.path().join("task-7.zip");
    let a = bundle::write_artifact(&path, bundle::ARTIFACT_JMX, JMX, files(), &limits).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(a.size, bytes.len() as u64);
    assert_eq!(a.sha256, sha256_hex(&bytes));
    assert!(!dir.path().join("task-7.zip.part").exists());

    let b = bundle::check_file(&path, &limits).unwrap();
    assert_eq!(b.jmx, "test.jmx");
    assert_eq!(
        b.files,
        vec![
            ("test.jmx".to_string(), JMX.len() as u64),
            ("data/users.csv".to_string(), users.len() as u64),
            ("data/big.bin".to_string(), big.len() as u64),
        ]
    );
    let out = dir.path().join("run");
    bundle::unpack_file(&path, &out, &limits).unwrap();
    assert_eq!(std::fs::read(out.join("data/big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(out.join("test.jmx")).unwrap(), JMX);

    // Same inputs, same bytes: the digest identifies what ran.
    let again = dir.path().join("again.zip");
    let b2 = bundle::write_artifact(&again, bundle::ARTIFACT_JMX, JMX, files(), &limits).unwrap();
    assert_eq!(a, b2);
    // An uploaded plan keeps its own name and layout.
    let own = dir.path().join("own.zip");
    bundle::write_artifact(
        &own,
        "Checkout.jmx",
        JMX,
        [("users.csv".to_string(), Cursor::new(users.clone()))],
        &limits,
    )
    .unwrap();
    assert_eq!(
        bundle::check_file(&own, &limits).unwrap().jmx,
        "Checkout.jmx"
    );
}

#[test]
fn an_artifact_refuses_what_check_would() {
    let dir = tempfile::tempdir().unwrap();
    let limits = BundleLimits::default();
    let write = |jmx_name: &str, files: Vec<(&str, &[u8])>, limits: &BundleLimits| {
        let path = dir.path().join("a.zip");
        let r = bundle::write_artifact(
            &path,
            jmx_name,
            JMX,
            files
                .into_iter()
                .map(|(n, d)| (n.to_string(), Cursor::new(d))),
            limits,
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(leftovers.is_empty() || r.is_ok(), "left {leftovers:?}");
        let _ = std::fs::remove_file(&path);
        r.map(|_| ()).map_err(|e| e.to_string())
    };
    assert_eq!(
        write("plan/test.jmx", vec![], &limits).unwrap_err(),
        "\"plan/test.jmx\": the test plan must be a .jmx file name without folders"
    );
    assert_eq!(
        write("test.jmx", vec![("other.jmx", b"x")], &limits).unwrap_err(),
        "the zip holds 2 .jmx files at its top level (test.jmx, other.jmx): keep exactly one"
    );
    assert_eq!(
        write("test.jmx", vec![("../x.csv", b"x")], &limits).unwrap_err(),
        "../x.csv: \"..\" in a path is not allowed (it would unpack outside the folder)"
    );
    assert_eq!(
        write(
            "test.jmx",
            vec![("data/a.csv", b"x"), ("data//a.csv", b"y")],
            &limits
        )
        .unwrap_err(),
        "data/a.csv: the name appears twice in the zip"
    );
    assert_eq!(
        write(
            "test.jmx",
            vec![("data", b"x"), ("data/a.csv", b"y")],
            &limits
        )
        .unwrap_err(),
        "data: is both a file and a folder in the zip"
    );
    let small = BundleLimits {
        max_total_bytes: 1000,
        ..limits
    };
    assert_eq!(
        write("test.jmx", vec![("data/a.csv", &[b'x'; 2000])], &small).unwrap_err(),
        "the files unpack to more than 1000 bytes, the limit"
    );
    write("test.jmx", vec![("data/a.csv", b"x")], &limits).unwrap();
}

/// The generated JMX names its CSV files where the artifact puts them:
/// JMeter, started in the unpacked folder, finds them.
#[test]
fn generated_csv_paths_match_the_artifact_layout() {
    use loadplan::{CsvDataSet, TestPlan, ThreadGroup};
    let plan = TestPlan {
        name: "csv".into(),
        thread_groups: vec![ThreadGroup {
            name: "users".into(),
            csv_data_sets: vec![CsvDataSet {
                file: "users.csv".into(),
                variable_names: vec!["user".into()],
                delimiter: ",".into(),
                ..CsvDataSet::default()
            }],
            ..ThreadGroup::default()
        }],
        ..TestPlan::default()
    };
    let jmx = loadplan::jmx::generate(&plan);
    let text = String::from_utf8(jmx.clone()).unwrap();
    let named = format!(
        "<stringProp name=\"filename\">{}</stringProp>",
        bundle::data_path("users.csv")
    );
    assert!(text.contains(&named), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("task.zip");
    let files = [(
        bundle::data_path("users.csv"),
        Cursor::new(b"alice\n".to_vec()),
    )];
    bundle::write_artifact(
        &zip,
        bundle::ARTIFACT_JMX,
        &jmx,
        files,
        &BundleLimits::default(),
    )
    .unwrap();
    let run = dir.path().join("run");
    let b = bundle::unpack_file(&zip, &run, &BundleLimits::default()).unwrap();
    assert_eq!(run.join(&b.jmx), run.join("test.jmx"));
    assert_eq!(
        std::fs::read(run.join("data/users.csv")).unwrap(),
        b"alice\n"
    );
}
