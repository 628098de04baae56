//! JMeter zips: checking an uploaded one (exactly one `.jmx` at its top
//! level plus the files it uses, nothing that could escape or explode on
//! unpacking), unpacking one safely, and writing the one zip a task runs
//! (its artifact).
//!
//! Owns the zip rules, their limits ([`BundleLimits`]) and the artifact
//! layout: the `.jmx` at the top, CSV files of generated plans under
//! [`DATA_DIR`] (the generated JMX names them [`data_path`]). Must not trust
//! what a zip declares (names, modes, sizes) without checking it against
//! what decompression really yields, must not follow a symlink while
//! unpacking, and knows nothing of where zips are stored or how they
//! arrive: callers hand in readers and paths.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, mkdirat};
use serde::{Deserialize, Serialize};
use zip::read::ZipFileEntry;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipReadOptions, ZipWriter};

/// Name of the test plan in an artifact made from a plan.
pub const ARTIFACT_JMX: &str = "test.jmx";
/// Folder of an artifact that holds a generated plan's CSV files.
pub const DATA_DIR: &str = "data";

/// Where a generated plan's CSV file lies in its artifact, relative to the
/// `.jmx` (JMeter resolves relative CSV paths against the plan's folder):
/// what the generated JMX names and [`write_artifact`] is given.
pub fn data_path(file: &str) -> String {
    format!("{DATA_DIR}/{file}")
}

/// Ceilings on one zip. The defaults allow any sensible test (a plan and a
/// few hundred MB of CSV) and refuse bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BundleLimits {
    /// Entries (files and folders).
    pub max_files: usize,
    /// Bytes all files unpack to, together.
    pub max_total_bytes: u64,
    /// Unpacked size over compressed size of one file. Text (XML, CSV)
    /// deflates 3-20:1; deflate cannot exceed ~1030:1, which bombs use.
    pub max_ratio: u64,
    /// Files up to this size are exempt from `max_ratio`: a small file of
    /// repeated rows compresses far better than 200:1 and harms nobody.
    pub ratio_exempt_bytes: u64,
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits {
            max_files: 10_000,
            max_total_bytes: 1 << 30,
            max_ratio: 200,
            ratio_exempt_bytes: 1 << 20,
        }
    }
}

/// What a checked zip holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// The test plan, at the top level (`test.jmx`).
    pub jmx: String,
    /// Every file with its unpacked size, the `.jmx` included, in zip
    /// order; `/`-separated relative paths without `.` or empty parts.
    pub files: Vec<(String, u64)>,
    /// Sum of the sizes.
    pub total_bytes: u64,
}

/// The artifact a task runs, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// SHA-256 of the zip file, lower-case hex.
    pub sha256: String,
    /// Size of the zip file in bytes.
    pub size: u64,
}

/// Why a zip is refused; each message tells the user what to change.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a zip file, or a damaged one ({0})")]
    NotZip(String),
    #[error("{name}: damaged zip entry ({reason})")]
    Corrupt { name: String, reason: String },
    #[error("the zip holds no .jmx file: put the test plan (.jmx) at the zip's top level")]
    NoJmx,
    #[error("the test plan {0} is inside a folder: put the .jmx at the zip's top level")]
    JmxNotAtTop(String),
    #[error(
        "everything is inside the folder \"{folder}/\" (the test plan is {jmx}): \
         zip the folder's contents, not the folder"
    )]
    NestedFolder { folder: String, jmx: String },
    #[error("the zip holds {} .jmx files at its top level ({}): keep exactly one", .0.len(), .0.join(", "))]
    SeveralJmx(Vec<String>),
    #[error("{0}: absolute paths are not allowed in the zip")]
    Absolute(String),
    #[error("{0}: \"..\" in a path is not allowed (it would unpack outside the folder)")]
    ParentDir(String),
    #[error(
        "{0}: backslashes are not allowed in names (zip paths use /, and a \\ may become a \
         folder separator when unpacked)"
    )]
    Backslash(String),
    #[error("{name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("{0}: symbolic links are not allowed in the zip")]
    Symlink(String),
    #[error("{0}: special files (devices, pipes, sockets) are not allowed in the zip")]
    Special(String),
    #[error("{0}: the name appears twice in the zip")]
    Duplicate(String),
    #[error("the zip lists the same name twice")]
    DuplicateUnnamed,
    #[error("{0}: is both a file and a folder in the zip")]
    FileAndFolder(String),
    #[error(
        "{0}: encrypted (password-protected) entries are not supported: zip without a password"
    )]
    Encrypted(String),
    #[error(
        "{name}: compressed with {method}, which is not supported: use deflate (the usual) or none"
    )]
    Compression { name: String, method: String },
    #[error("the zip holds {count} entries, more than the limit of {limit}")]
    TooManyFiles { count: usize, limit: usize },
    #[error("the files unpack to more than {}, the limit", human(*.limit))]
    TooBig { limit: u64 },
    #[error("{name}: unpacks to more than {limit} times its compressed size (a zip bomb?)")]
    Ratio { name: String, limit: u64 },
    #[error(
        "{name}: holds more data than its header declares ({declared} bytes): the zip is \
         damaged or crafted"
    )]
    LongerThanDeclared { name: String, declared: u64 },
    #[error("{name}: holds {actual} bytes, its header declares {declared}: the zip is damaged")]
    ShorterThanDeclared {
        name: String,
        declared: u64,
        actual: u64,
    },
    #[error("entries of the zip share their data (a crafted zip bomb)")]
    Overlapping,
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

/// `1 GiB`, `512 MiB`, `1500 bytes`: limits as people set them.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

fn io_err(path: impl std::fmt::Display) -> impl FnOnce(io::Error) -> BundleError {
    move |source| BundleError::Io {
        path: path.to_string(),
        source,
    }
}

fn errno_err(path: impl std::fmt::Display) -> impl FnOnce(Errno) -> BundleError {
    move |e| BundleError::Io {
        path: path.to_string(),
        source: io::Error::from(e),
    }
}

/// Checks the zip `reader` holds and decompresses every file once (into
/// nothing), so sizes and checksums are the real ones.
pub fn check<R: Read + Seek>(reader: R, limits: &BundleLimits) -> Result<Bundle, BundleError> {
    let mut zip = open_zip(reader)?;
    let survey = survey(&mut zip, limits)?;
    verify(&mut zip, &survey, limits)?;
    Ok(survey.bundle)
}

/// [`check`] on a file.
pub fn check_file(path: &Path, limits: &BundleLimits) -> Result<Bundle, BundleError> {
    let file = File::open(path).map_err(io_err(path.display()))?;
    check(io::BufReader::new(file), limits)
}

/// Unpacks a zip into `dest` (created if missing) after checking all of
/// it, so a refused zip writes nothing. Files are created new (never over
/// an existing one, never through a symlink) with mode 0644, folders 0755,
/// whatever the zip says. If writing fails halfway (disk full), `dest`
/// holds part of the files: callers unpack into a fresh folder and remove
/// it on error.
pub fn unpack<R: Read + Seek>(
    reader: R,
    dest: &Path,
    limits: &BundleLimits,
) -> Result<Bundle, BundleError> {
    let mut zip = open_zip(reader)?;
    let survey = survey(&mut zip, limits)?;
    verify(&mut zip, &survey, limits)?;
    std::fs::create_dir_all(dest).map_err(io_err(dest.display()))?;
    // Everything below is opened relative to this descriptor with
    // O_NOFOLLOW: a symlink planted in `dest` is an error, not a way out.
    let root = open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_err(dest.display()))?;
    for dir in &survey.dirs {
        open_dirs(&root, dir, dest)?;
    }
    let mut total = 0;
    for entry in &survey.files {
        let (parent, file_name) = match entry.name.rsplit_once('/') {
            Some((dir, file)) => (Some(open_dirs(&root, dir, dest)?), file),
            None => (None, entry.name.as_str()),
        };
        let at = dest.join(&entry.name);
        let fd = openat(
            parent.as_ref().map_or(root.as_fd(), |p| p.as_fd()),
            file_name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(errno_err(at.display()))?;
        let mut out = io::BufWriter::with_capacity(256 * 1024, File::from(fd));
        total += copy_entry(&mut zip, entry, limits, total, &mut out)?;
        out.flush().map_err(io_err(at.display()))?;
    }
    Ok(survey.bundle)
}

/// [`unpack`] from a zip file.
pub fn unpack_file(zip: &Path, dest: &Path, limits: &BundleLimits) -> Result<Bundle, BundleError> {
    let file = File::open(zip).map_err(io_err(zip.display()))?;
    unpack(io::BufReader::new(file), dest, limits)
}

/// Opens (creating as needed) the folders of `rel` under `root`, one
/// component at a time and never through a symlink.
fn open_dirs(root: &OwnedFd, rel: &str, dest: &Path) -> Result<OwnedFd, BundleError> {
    let mut current: Option<OwnedFd> = None;
    let mut so_far = PathBuf::from(dest);
    for part in rel.split('/') {
        so_far.push(part);
        let at = current.as_ref().map_or(root.as_fd(), |c| c.as_fd());
        match mkdirat(at, part, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(errno_err(so_far.display())(e)),
        }
        let next = openat(
            at,
            part,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            // What exists there is a symlink (ELOOP) or a file (ENOTDIR).
            Errno::ELOOP | Errno::ENOTDIR => BundleError::Io {
                path: so_far.display().to_string(),
                source: io::Error::other("exists and is not a folder (a symlink?): not followed"),
            },
            e => errno_err(so_far.display())(e),
        })?;
        current = Some(next);
    }
    current.ok_or_else(|| BundleError::BadName {
        name: rel.to_string(),
        why: "empty folder name",
    })
}

/// Writes the zip a task runs to `dest` (through `dest.part`, renamed when
/// complete): the plan as `jmx_name` at the top level, then `files` under
/// their relative names (a generated plan's CSV files as
/// [`data_path`]). The same inputs give the same bytes (fixed timestamps),
/// so the same digest. The result passes [`check`] with `limits`.
pub fn write_artifact<I, R>(
    dest: &Path,
    jmx_name: &str,
    jmx: &[u8],
    files: I,
    limits: &BundleLimits,
) -> Result<Artifact, BundleError>
where
    I: IntoIterator<Item = (String, R)>,
    R: Read,
{
    let part = {
        let mut name = dest.file_name().unwrap_or_default().to_os_string();
        name.push(".part");
        dest.with_file_name(name)
    };
    let result = write_part(&part, jmx_name, jmx, files, limits).and_then(|()| {
        std::fs::rename(&part, dest).map_err(io_err(dest.display()))?;
        digest(dest)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

fn write_part<I, R>(
    part: &Path,
    jmx_name: &str,
    jmx: &[u8],
    files: I,
    limits: &BundleLimits,
) -> Result<(), BundleError>
where
    I: IntoIterator<Item = (String, R)>,
    R: Read,
{
    match parse_name(jmx_name)? {
        Some((ref n, false)) if !n.contains('/') && is_jmx(n) => {}
        _ => {
            return Err(BundleError::BadName {
                name: jmx_name.to_string(),
                why: "the test plan must be a .jmx file name without folders",
            });
        }
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(part)
        .map_err(io_err(part.display()))?;
    let mut w = ZipWriter::new(io::BufWriter::with_capacity(256 * 1024, file));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o644)
        // Fixed, so an artifact's digest depends on its contents only.
        .last_modified_time(DateTime::default())
        .large_file(limits.max_total_bytes >= u64::from(u32::MAX));
    let zip_err = |e: zip::result::ZipError| BundleError::Io {
        path: part.display().to_string(),
        source: io::Error::other(e),
    };
    let mut seen = HashSet::from([jmx_name.to_string()]);
    let mut dirs = HashSet::new();
    let mut count = 1usize;
    let mut total = jmx.len() as u64;
    if total > limits.max_total_bytes {
        return Err(BundleError::TooBig {
            limit: limits.max_total_bytes,
        });
    }
    w.start_file(jmx_name, options).map_err(zip_err)?;
    w.write_all(jmx).map_err(io_err(part.display()))?;
    for (name, mut reader) in files {
        let Some((normal, false)) = parse_name(&name)? else {
            return Err(BundleError::BadName {
                name,
                why: "not a file name",
            });
        };
        if !normal.contains('/') && is_jmx(&normal) {
            return Err(BundleError::SeveralJmx(vec![
                jmx_name.to_string(),
                normal.clone(),
            ]));
        }
        if dirs.contains(&normal) {
            return Err(BundleError::FileAndFolder(normal));
        }
        if !seen.insert(normal.clone()) {
            return Err(BundleError::Duplicate(normal));
        }
        for (i, _) in normal.match_indices('/') {
            let dir = &normal[..i];
            if seen.contains(dir) {
                return Err(BundleError::FileAndFolder(dir.to_string()));
            }
            dirs.insert(dir.to_string());
        }
        count += 1;
        if count > limits.max_files {
            return Err(BundleError::TooManyFiles {
                count,
                limit: limits.max_files,
            });
        }
        w.start_file(normal.as_str(), options).map_err(zip_err)?;
        total += copy_limited(
            &mut reader,
            &mut w,
            &normal,
            Budget {
                total_before: total,
                max_total: limits.max_total_bytes,
                max_entry: u64::MAX,
                ratio: None,
            },
        )?;
    }
    let out = w.finish().map_err(zip_err)?;
    let file = out
        .into_inner()
        .map_err(|e| io_err(part.display())(e.into_error()))?;
    file.sync_all().map_err(io_err(part.display()))
}

/// SHA-256 and size of a written file.
fn digest(path: &Path) -> Result<Artifact, BundleError> {
    let mut file = File::open(path).map_err(io_err(path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path.display())(e)),
        };
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    let sha256 = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Artifact { sha256, size })
}

fn open_zip<R: Read + Seek>(reader: R) -> Result<ZipArchive<R>, BundleError> {
    ZipArchive::new(reader).map_err(|e| BundleError::NotZip(e.to_string()))
}

/// One file of a zip, as checked by [`survey`].
struct Entry {
    index: usize,
    /// Normalised path (see [`Bundle::files`]).
    name: String,
    declared: u64,
    compressed: u64,
}

struct Survey {
    bundle: Bundle,
    files: Vec<Entry>,
    /// Explicit folder entries (empty folders must unpack too).
    dirs: Vec<String>,
}

/// Everything that can be checked without decompressing: names, types,
/// flags, counts, declared sizes, the one `.jmx`.
fn survey<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    limits: &BundleLimits,
) -> Result<Survey, BundleError> {
    if zip.len() > limits.max_files {
        return Err(BundleError::TooManyFiles {
            count: zip.len(),
            limit: limits.max_files,
        });
    }
    // The archive indexes entries by name and keeps one per name; only
    // the count gives the duplicate away.
    if zip.has_duplicate_names() {
        return Err(BundleError::DuplicateUnnamed);
    }
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut file_names = HashSet::new();
    let mut dir_names = HashSet::new();
    let mut declared_total = 0u64;
    for index in 0..zip.len() {
        let entry = zip
            .by_index_data(index)
            .map_err(|e| BundleError::NotZip(e.to_string()))?;
        let raw = entry.name().map_err(|e| BundleError::Corrupt {
            name: String::from_utf8_lossy(entry.name_raw()).into_owned(),
            reason: e.to_string(),
        })?;
        let Some((name, is_dir)) = parse_name(&raw)? else {
            continue;
        };
        check_kind(&entry, &name, is_dir)?;
        if entry.encrypted() {
            return Err(BundleError::Encrypted(name));
        }
        for (i, _) in name.match_indices('/') {
            dir_names.insert(name[..i].to_string());
        }
        if is_dir {
            if dir_names.insert(name.clone()) && !is_mac_metadata(&name) {
                dirs.push(name);
            }
            continue;
        }
        if !file_names.insert(name.clone()) {
            return Err(BundleError::Duplicate(name));
        }
        if is_mac_metadata(&name) {
            // Finder's "Compress" adds resource forks under __MACOSX/:
            // not the user's files, and not unpacked.
            continue;
        }
        match entry.compression() {
            CompressionMethod::Stored | CompressionMethod::Deflated => {}
            other => {
                return Err(BundleError::Compression {
                    name,
                    method: method_name(other),
                });
            }
        }
        let (declared, compressed) = (entry.size(), entry.compressed_size());
        declared_total = declared_total.saturating_add(declared);
        if declared_total > limits.max_total_bytes {
            return Err(BundleError::TooBig {
                limit: limits.max_total_bytes,
            });
        }
        if declared > ratio_cap(compressed, limits) {
            return Err(BundleError::Ratio {
                name,
                limit: limits.max_ratio,
            });
        }
        files.push(Entry {
            index,
            name,
            declared,
            compressed,
        });
    }
    if let Some(clash) = file_names.iter().find(|f| dir_names.contains(*f)) {
        return Err(BundleError::FileAndFolder(clash.clone()));
    }
    let jmx = find_jmx(&files)?;
    // Entries whose data overlap (one block referenced many times) are the
    // non-recursive zip bomb; the sizes alone do not show it.
    if zip
        .has_overlapping_entries()
        .map_err(|e| BundleError::NotZip(e.to_string()))?
    {
        return Err(BundleError::Overlapping);
    }
    Ok(Survey {
        bundle: Bundle {
            jmx,
            files: files.iter().map(|e| (e.name.clone(), e.declared)).collect(),
            total_bytes: declared_total,
        },
        files,
        dirs,
    })
}

/// `bzip2`, `method 77`. zip built without a method only keeps its
/// number, through a deprecated accessor.
#[allow(deprecated)]
fn method_name(method: CompressionMethod) -> String {
    let code = method.to_u16();
    match CompressionMethod::name_from_u16(code) {
        "Unknown" => format!("method {code}"),
        known => known.to_lowercase(),
    }
}

fn is_mac_metadata(name: &str) -> bool {
    name == "__MACOSX" || name.starts_with("__MACOSX/")
}

fn is_jmx(name: &str) -> bool {
    // Bytes, not a str slice: four bytes from the end may split a character.
    let b = name.as_bytes();
    b.len() > 4 && b[b.len() - 4..].eq_ignore_ascii_case(b".jmx")
}

/// The one `.jmx` at the top level, or why there is none.
fn find_jmx(files: &[Entry]) -> Result<String, BundleError> {
    let top: Vec<String> = files
        .iter()
        .filter(|e| !e.name.contains('/') && is_jmx(&e.name))
        .map(|e| e.name.clone())
        .collect();
    match top.len() {
        1 => return Ok(top.into_iter().next().unwrap_or_default()),
        0 => {}
        _ => return Err(BundleError::SeveralJmx(top)),
    }
    let Some(nested) = files.iter().find(|e| is_jmx(&e.name)) else {
        return Err(BundleError::NoJmx);
    };
    // Everything in one folder: the user zipped the folder itself.
    let folder = nested.name.split('/').next().unwrap_or_default();
    let inside = format!("{folder}/");
    if files.iter().all(|e| e.name.starts_with(&inside)) {
        return Err(BundleError::NestedFolder {
            folder: folder.to_string(),
            jmx: nested.name.clone(),
        });
    }
    Err(BundleError::JmxNotAtTop(nested.name.clone()))
}

/// Refuses symlinks and special files. The file type sits in the upper
/// half of the external attributes when a Unix tool made the zip; other
/// systems leave it zero, and some extractors honour it regardless of the
/// "made by" system, so any non-zero type is checked.
fn check_kind(entry: &ZipFileEntry<'_>, name: &str, is_dir: bool) -> Result<(), BundleError> {
    const S_IFMT: u32 = 0o170_000;
    const S_IFLNK: u32 = 0o120_000;
    const S_IFREG: u32 = 0o100_000;
    const S_IFDIR: u32 = 0o040_000;
    let modes = [
        entry.unix_mode().unwrap_or(0),
        entry.external_attributes() >> 16,
    ];
    for mode in modes {
        match mode & S_IFMT {
            0 => {}
            S_IFLNK => return Err(BundleError::Symlink(name.to_string())),
            S_IFREG if !is_dir => {}
            S_IFDIR if is_dir => {}
            S_IFREG | S_IFDIR => {
                return Err(BundleError::BadName {
                    name: name.to_string(),
                    why: "its type (file or folder) contradicts its name",
                });
            }
            _ => return Err(BundleError::Special(name.to_string())),
        }
    }
    Ok(())
}

/// Checks an entry name and normalises it: `Some((path, is_folder))`, or
/// `None` for a name that means "this folder" (`./`). Refuses what could
/// land outside the destination on any system: absolute paths (also
/// `C:`), `..`, backslashes (a separator on Windows and for some
/// extractors), control characters.
fn parse_name(raw: &str) -> Result<Option<(String, bool)>, BundleError> {
    let refuse = |why| {
        Err(BundleError::BadName {
            name: raw.to_string(),
            why,
        })
    };
    if raw.is_empty() {
        return refuse("empty name");
    }
    if raw.contains('\\') {
        return Err(BundleError::Backslash(raw.to_string()));
    }
    if raw.chars().any(char::is_control) {
        return refuse("control characters in the name");
    }
    let b = raw.as_bytes();
    if raw.starts_with('/') || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') {
        return Err(BundleError::Absolute(raw.to_string()));
    }
    let is_dir = raw.ends_with('/');
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(BundleError::ParentDir(raw.to_string())),
            p if p.len() > 255 => return refuse("a part of the path is longer than 255 bytes"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return if is_dir {
            Ok(None)
        } else {
            refuse("not a file name")
        };
    }
    Ok(Some((parts.join("/"), is_dir)))
}

fn ratio_cap(compressed: u64, limits: &BundleLimits) -> u64 {
    compressed
        .saturating_mul(limits.max_ratio)
        .max(limits.ratio_exempt_bytes)
}

/// Decompresses every file into nothing: the real sizes and checksums.
fn verify<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    survey: &Survey,
    limits: &BundleLimits,
) -> Result<(), BundleError> {
    let mut total = 0;
    for entry in &survey.files {
        total += copy_entry(zip, entry, limits, total, &mut io::sink())?;
    }
    Ok(())
}

/// Decompresses one file into `out` under the limits; its size.
fn copy_entry<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    entry: &Entry,
    limits: &BundleLimits,
    total_before: u64,
    out: &mut dyn Write,
) -> Result<u64, BundleError> {
    let options = ZipReadOptions::new().enforce_header_consistency(true);
    let mut reader = zip
        .by_index_with_options(entry.index, options)
        .map_err(|e| BundleError::Corrupt {
            name: entry.name.clone(),
            reason: e.to_string(),
        })?;
    let n = copy_limited(
        &mut reader,
        out,
        &entry.name,
        Budget {
            total_before,
            max_total: limits.max_total_bytes,
            max_entry: entry.declared,
            ratio: Some((ratio_cap(entry.compressed, limits), limits.max_ratio)),
        },
    )?;
    if n < entry.declared {
        return Err(BundleError::ShorterThanDeclared {
            name: entry.name.clone(),
            declared: entry.declared,
            actual: n,
        });
    }
    Ok(n)
}

/// What one copy may still produce.
struct Budget {
    /// Bytes of earlier files.
    total_before: u64,
    max_total: u64,
    /// The size the entry declares: more is a lie.
    max_entry: u64,
    /// (cap in bytes, the ratio it came from).
    ratio: Option<(u64, u64)>,
}

/// Copies `reader` to `out`, counting what decompression really yields and
/// stopping at the first byte over a limit, whatever the headers said.
fn copy_limited(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    name: &str,
    budget: Budget,
) -> Result<u64, BundleError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = match reader.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(name, budget.max_entry, e)),
        };
        n += got as u64;
        if budget.total_before.saturating_add(n) > budget.max_total {
            return Err(BundleError::TooBig {
                limit: budget.max_total,
            });
        }
        if n > budget.max_entry {
            return Err(BundleError::LongerThanDeclared {
                name: name.to_string(),
                declared: budget.max_entry,
            });
        }
        if let Some((cap, ratio)) = budget.ratio
            && n > cap
        {
            return Err(BundleError::Ratio {
                name: name.to_string(),
                limit: ratio,
            });
        }
        out.write_all(&buf[..got])
            .map_err(|source| BundleError::Io {
                path: name.to_string(),
                source,
            })?;
    }
}

fn read_error(name: &str, declared: u64, e: io::Error) -> BundleError {
    let reason = e.to_string();
    // The zip reader itself stops at the declared size; its message is the
    // only thing that tells this apart from other damage.
    if reason.contains("declared uncompressed size") {
        return BundleError::LongerThanDeclared {
            name: name.to_string(),
            declared,
        };
    }
    BundleError::Corrupt {
        name: name.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counting copy holds the line whatever the reader yields: here a
    /// reader that is not a zip entry at all, so no header bounds it.
    #[test]
    fn the_counting_copy_stops_at_the_first_byte_over() {
        let budget = |total_before, max_total, max_entry, ratio| Budget {
            total_before,
            max_total,
            max_entry,
            ratio,
        };
        let mut out = Vec::new();
        let mut endless = io::repeat(7);
        let e = copy_limited(
            &mut endless,
            &mut out,
            "x",
            budget(0, 1 << 20, u64::MAX, None),
        )
        .unwrap_err();
        assert!(
            matches!(e, BundleError::TooBig { limit } if limit == 1 << 20),
            "{e}"
        );
        assert!(out.len() <= 1 << 20, "wrote {} bytes", out.len());

        // Earlier files count against the total.
        out.clear();
        let e = copy_limited(
            &mut io::repeat(7).take(600),
            &mut out,
            "x",
            budget(500, 1000, u64::MAX, None),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the files unpack to more than 1000 bytes, the limit"
        );

        out.clear();
        let e = copy_limited(
            &mut io::repeat(7).take(5000),
            &mut out,
            "big.csv",
            budget(0, u64::MAX, 100, None),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "big.csv: holds more data than its header declares (100 bytes): the zip is damaged or crafted"
        );
        assert!(out.len() <= 100);

        out.clear();
        let e = copy_limited(
            &mut io::repeat(0).take(3 << 20),
            &mut out,
            "zeros.csv",
            budget(0, u64::MAX, u64::MAX, Some((2 << 20, 200))),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "zeros.csv: unpacks to more than 200 times its compressed size (a zip bomb?)"
        );
        assert!(out.len() <= 2 << 20);

        out.clear();
        let n = copy_limited(
            &mut io::repeat(1).take(1000),
            &mut out,
            "ok.csv",
            budget(0, 1000, 1000, Some((1000, 200))),
        )
        .unwrap();
        assert_eq!((n, out.len()), (1000, 1000));
    }

    #[test]
    fn limits_read_as_people_write_them() {
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(512 << 20), "512 MiB");
        assert_eq!(human(1500), "1500 bytes");
        let l: BundleLimits = serde_json::from_str(r#"{"max_files": 10}"#).unwrap();
        assert_eq!(l.max_files, 10);
        assert_eq!(l.max_ratio, BundleLimits::default().max_ratio);
        assert!(serde_json::from_str::<BundleLimits>(r#"{"max_file": 10}"#).is_err());
    }
}
