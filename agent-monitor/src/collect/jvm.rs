//! JVM heap and GC figures for the monitor agent, read from the HotSpot
//! hsperfdata file (`/tmp/hsperfdata_<user>/<pid>`, the same source as jstat).
//!
//! Owns: finding that file (also inside containers), parsing it, and turning
//! its counters into [`JvmStats`]. Must not: fork jstat/jcmd, attach to the
//! JVM, write or lock the file (the JVM owns it and maps it shared), or panic
//! on any bytes it is given.
//!
//! How each field is computed (counter names checked on JDK 17 and 25 files
//! in `tests/fixtures/hsperfdata`; generations 0 and 1 are the heap,
//! metaspace and class space live under `sun.gc.metaspace.*` and are left out):
//! - `heap_used_bytes`: sum of `sun.gc.generation.{0,1}.space.N.used`
//!   (eden, s0, s1, old). Only as fresh as the JVM keeps it: on JDK 25,
//!   Serial and Parallel publish eden's use only at GC time (jstat shows
//!   EU 0 too), so there it misses what was allocated since the last GC.
//! - `heap_committed_bytes`: `sun.gc.generation.0.capacity` +
//!   `sun.gc.generation.1.capacity`. JDK 17's G1 pads each reported capacity
//!   by 8 bytes, so there it reads up to 32 bytes high.
//! - `heap_max_bytes`: Serial, Parallel and CMS reserve young and old
//!   separately, so it is the sum of `sun.gc.generation.{0,1}.maxCapacity`.
//!   They are recognised by their `sun.gc.policy.name`, which has the form
//!   `<young>:<old>` ("Copy:MSC", "ParScav:MSC"). G1 ("GarbageFirst"), ZGC
//!   and Shenandoah (no policy name) report the whole heap in every
//!   generation, so summing would double it: the old generation's
//!   `maxCapacity` is used instead.
//! - `young_gc_*`: `sun.gc.collector.0.invocations` / `.time`; `full_gc_*`:
//!   `sun.gc.collector.1.invocations` / `.time`. These are jstat's YGC and
//!   FGC. For G1 collector.0 is "G1 young collection pauses" (young and
//!   mixed), collector.1 "G1 full collection pauses"; collector.2 ("G1
//!   concurrent cycle pauses", remark and cleanup) is not a full GC and is
//!   not reported. ZGC has no collector 1 (full count stays 0); Shenandoah's
//!   "Shenandoah full" counts every stop-the-world pause, as jstat shows.
//!   Times are ticks of `sun.os.hrt.frequency` per second.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use protocol::metrics::JvmStats;

#[derive(Debug, thiserror::Error)]
pub enum JvmError {
    #[error("process {pid} not found")]
    ProcessNotFound { pid: u32 },
    #[error("perf data disabled ({flag}) for JVM {pid}: it has no hsperfdata file")]
    PerfDataDisabled { pid: u32, flag: &'static str },
    #[error(
        "no hsperfdata file for pid {pid} under {}: not a JVM, JVM still starting, \
         or perf data disabled (-XX:-UsePerfData / -XX:+PerfDisableSharedMem, \
         e.g. in JAVA_TOOL_OPTIONS)",
        tmp.display()
    )]
    NoPerfData { pid: u32, tmp: PathBuf },
    #[error("permission denied reading {}: run the agent as root or as the JVM's user", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("hsperfdata truncated: needs {needed} bytes, has {len}")]
    Truncated { needed: usize, len: usize },
    #[error("not an hsperfdata file: magic {found:#010x}, expected 0xcafec0c0")]
    BadMagic { found: u32 },
    #[error("hsperfdata byte order {0} is neither 0 (big endian) nor 1 (little endian)")]
    BadByteOrder(u8),
    #[error("unsupported hsperfdata version {major}.{minor} (only 2.0 is supported)")]
    UnsupportedVersion { major: u8, minor: u8 },
    #[error("JVM still starting: its hsperfdata is not marked accessible yet")]
    NotAccessible,
    #[error("malformed hsperfdata header: {0}")]
    BadHeader(&'static str),
    #[error("malformed hsperfdata entry at offset {offset}: {reason}")]
    BadEntry { offset: usize, reason: &'static str },
    #[error("counter {0} missing from hsperfdata (JVM still starting, or unsupported GC)")]
    MissingCounter(&'static str),
    #[error("counter {name} has invalid value {value}")]
    BadValue { name: &'static str, value: i64 },
}

const MAGIC: [u8; 4] = [0xca, 0xfe, 0xc0, 0xc0];
const PROLOGUE_LEN: usize = 32;
/// entry_length, name_offset, vector_length (3 x i32), four type bytes, data_offset (i32).
const ENTRY_HEADER_LEN: usize = 20;
const TYPE_LONG: u8 = b'J';
const TYPE_BYTE: u8 = b'B';

const HRT_FREQUENCY: &str = "sun.os.hrt.frequency";
const GENERATION_CAPACITY: &str = "sun.gc.generation.{0,1}.capacity";

/// Big or little endian as the prologue says; every multi-byte read goes
/// through here so no read can slice past the end.
#[derive(Clone, Copy)]
struct Bytes<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl<'a> Bytes<'a> {
    fn array<const N: usize>(self, at: usize) -> Option<[u8; N]> {
        self.bytes.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn i32(self, at: usize) -> Option<i32> {
        let b = self.array(at)?;
        Some(if self.little {
            i32::from_le_bytes(b)
        } else {
            i32::from_be_bytes(b)
        })
    }

    fn i64(self, at: usize) -> Option<i64> {
        let b = self.array(at)?;
        Some(if self.little {
            i64::from_le_bytes(b)
        } else {
            i64::from_be_bytes(b)
        })
    }

    fn u8(self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }
}

/// The counters this module reads; everything else is skipped by name.
#[derive(Clone, Copy)]
enum Counter {
    HrtFrequency,
    PolicyName,
    CollectorCount(usize),
    CollectorTime(usize),
    GenCapacity(usize),
    GenMaxCapacity(usize),
    SpaceUsed,
}

fn classify(name: &[u8]) -> Option<Counter> {
    if name == HRT_FREQUENCY.as_bytes() {
        return Some(Counter::HrtFrequency);
    }
    if name == b"sun.gc.policy.name" {
        return Some(Counter::PolicyName);
    }
    // Only indexes 0 and 1 matter: the young/old collectors and
    // generations are all JvmStats has room for (generation 2 was PermGen on
    // JDK 8, not heap).
    if let Some(rest) = name.strip_prefix(b"sun.gc.collector.") {
        let (index, field) = split_index(rest).filter(|(i, _)| *i < 2)?;
        return match field {
            b".invocations" => Some(Counter::CollectorCount(index)),
            b".time" => Some(Counter::CollectorTime(index)),
            _ => None,
        };
    }
    let rest = name.strip_prefix(b"sun.gc.generation.")?;
    let (generation, field) = split_index(rest).filter(|(g, _)| *g < 2)?;
    match field {
        b".capacity" => Some(Counter::GenCapacity(generation)),
        b".maxCapacity" => Some(Counter::GenMaxCapacity(generation)),
        _ => {
            // Every space of the generation counts (eden, s0, s1 / old).
            let (_, field) = split_index(field.strip_prefix(b".space.")?)?;
            (field == b".used").then_some(Counter::SpaceUsed)
        }
    }
}

/// Splits `"12.time"` into (12, ".time").
fn split_index(s: &[u8]) -> Option<(usize, &[u8])> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = s.split_at_checked(digits).filter(|_| digits > 0)?;
    let n = number.iter().try_fold(0usize, |n, d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })?;
    Some((n, rest))
}

#[derive(Default)]
struct Raw {
    hrt_frequency: Option<i64>,
    separate_generations: bool,
    collector_count: [i64; 2],
    collector_ticks: [i64; 2],
    gen_capacity: [Option<i64>; 2],
    gen_max: [Option<i64>; 2],
    used: u64,
}

/// Turns the bytes of an hsperfdata file into [`JvmStats`]. Pure; never
/// panics, whatever the input.
pub fn parse_hsperfdata(bytes: &[u8]) -> Result<JvmStats, JvmError> {
    let raw = scan(bytes)?;
    let frequency = match raw.hrt_frequency {
        None => return Err(JvmError::MissingCounter(HRT_FREQUENCY)),
        Some(f) if f <= 0 => {
            return Err(JvmError::BadValue {
                name: HRT_FREQUENCY,
                value: f,
            });
        }
        Some(f) => f as f64,
    };
    if raw.gen_capacity.iter().all(Option::is_none) {
        return Err(JvmError::MissingCounter(GENERATION_CAPACITY));
    }
    let [young_max, old_max] = raw.gen_max.map(|m| m.map(non_negative));
    let heap_max_bytes = if raw.separate_generations {
        young_max.unwrap_or(0).saturating_add(old_max.unwrap_or(0))
    } else {
        old_max.or(young_max).unwrap_or(0)
    };
    let ms = |ticks: i64| non_negative(ticks) as f64 * 1000.0 / frequency;
    Ok(JvmStats {
        heap_used_bytes: raw.used,
        heap_committed_bytes: raw
            .gen_capacity
            .iter()
            .map(|c| non_negative(c.unwrap_or(0)))
            .fold(0, u64::saturating_add),
        heap_max_bytes,
        young_gc_count: non_negative(raw.collector_count[0]),
        young_gc_time_ms: ms(raw.collector_ticks[0]),
        full_gc_count: non_negative(raw.collector_count[1]),
        full_gc_time_ms: ms(raw.collector_ticks[1]),
    })
}

fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// One pass over the prologue and entries, keeping only the counters we use.
fn scan(bytes: &[u8]) -> Result<Raw, JvmError> {
    let len = bytes.len();
    if len < PROLOGUE_LEN {
        return Err(JvmError::Truncated {
            needed: PROLOGUE_LEN,
            len,
        });
    }
    let head = Bytes {
        bytes,
        little: false,
    };
    let magic = head.array::<4>(0).unwrap_or_default();
    if magic != MAGIC {
        return Err(JvmError::BadMagic {
            found: u32::from_be_bytes(magic),
        });
    }
    let field = |at| head.u8(at).unwrap_or_default();
    let little = match field(4) {
        0 => false,
        1 => true,
        other => return Err(JvmError::BadByteOrder(other)),
    };
    let (major, minor) = (field(5), field(6));
    if (major, minor) != (2, 0) {
        return Err(JvmError::UnsupportedVersion { major, minor });
    }
    if field(7) == 0 {
        return Err(JvmError::NotAccessible);
    }
    let head = Bytes { bytes, little };
    let header_i32 = |at| head.i32(at).unwrap_or_default();
    let used = usize::try_from(header_i32(8))
        .ok()
        .filter(|u| *u >= PROLOGUE_LEN)
        .ok_or(JvmError::BadHeader("used size is smaller than the header"))?;
    if used > len {
        return Err(JvmError::Truncated { needed: used, len });
    }
    let entry_offset = usize::try_from(header_i32(24))
        .ok()
        .filter(|o| (PROLOGUE_LEN..=used).contains(o))
        .ok_or(JvmError::BadHeader("entry offset outside the used area"))?;
    let num_entries =
        u32::try_from(header_i32(28)).map_err(|_| JvmError::BadHeader("negative entry count"))?;

    // Entries live in bytes[..used]; restricting the view to that slice
    // bounds every read below by the used area, not the file size.
    let data = Bytes {
        bytes: bytes.get(..used).unwrap_or_default(),
        little,
    };
    let mut raw = Raw::default();
    let mut at = entry_offset;
    // Each step moves at least ENTRY_HEADER_LEN forward, so this ends even
    // if num_entries lies.
    for _ in 0..num_entries {
        // Like jstat: the used area ending, or a zeroed entry the JVM has
        // reserved but not filled yet, ends the list.
        if at == used {
            break;
        }
        let bad = |reason| JvmError::BadEntry { offset: at, reason };
        let entry_len = data
            .i32(at)
            .ok_or_else(|| bad("entry header extends past the used area"))?;
        if entry_len == 0 {
            break;
        }
        let entry_len = usize::try_from(entry_len)
            .ok()
            .filter(|l| *l >= ENTRY_HEADER_LEN)
            .ok_or_else(|| bad("entry length smaller than its header"))?;
        let end = at
            .checked_add(entry_len)
            .filter(|e| *e <= used)
            .ok_or_else(|| bad("entry extends past the used area"))?;
        let entry = Bytes {
            bytes: data.bytes.get(at..end).unwrap_or_default(),
            little,
        };
        let offset_in_entry = |pos| {
            entry
                .i32(pos)
                .and_then(|o| usize::try_from(o).ok())
                .unwrap_or(usize::MAX)
        };
        let name_offset = offset_in_entry(4);
        let vector_length = entry.i32(8).unwrap_or_default();
        let data_type = entry.u8(12).unwrap_or_default();
        let data_offset = offset_in_entry(16);
        if !(ENTRY_HEADER_LEN..entry_len).contains(&name_offset)
            || !(name_offset..=entry_len).contains(&data_offset)
        {
            return Err(bad("name or data offset outside the entry"));
        }
        let name_area = entry
            .bytes
            .get(name_offset..data_offset)
            .unwrap_or_default();
        let name = name_area
            .iter()
            .position(|b| *b == 0)
            .and_then(|nul| name_area.get(..nul))
            .ok_or_else(|| bad("counter name not NUL-terminated"))?;

        if let Some(counter) = classify(name) {
            let value = entry.bytes.get(data_offset..).unwrap_or_default();
            if let Counter::PolicyName = counter {
                // A string: a byte vector, NUL-padded.
                let n = usize::try_from(vector_length).unwrap_or(0);
                let text = value.get(..n).filter(|_| data_type == TYPE_BYTE);
                let text = text.ok_or_else(|| bad("sun.gc.policy.name is not a string"))?;
                raw.separate_generations = text.iter().take_while(|b| **b != 0).any(|b| *b == b':');
            } else {
                let v = Some(entry)
                    .filter(|_| data_type == TYPE_LONG && vector_length == 0)
                    .and_then(|e| e.i64(data_offset))
                    .ok_or_else(|| bad("GC counter is not a 64-bit integer"))?;
                raw.record(counter, v);
            }
        }
        at = end;
    }
    Ok(raw)
}

impl Raw {
    fn record(&mut self, counter: Counter, v: i64) {
        match counter {
            Counter::HrtFrequency => self.hrt_frequency = Some(v),
            Counter::CollectorCount(i) => set(&mut self.collector_count, i, v),
            Counter::CollectorTime(i) => set(&mut self.collector_ticks, i, v),
            Counter::GenCapacity(g) => set(&mut self.gen_capacity, g, Some(v)),
            Counter::GenMaxCapacity(g) => set(&mut self.gen_max, g, Some(v)),
            Counter::SpaceUsed => self.used = self.used.saturating_add(non_negative(v)),
            Counter::PolicyName => {}
        }
    }
}

fn set<T>(slots: &mut [T; 2], i: usize, v: T) {
    if let Some(slot) = slots.get_mut(i) {
        *slot = v;
    }
}

/// Finds, reads and parses the hsperfdata file of JVM `pid`.
///
/// Costs one read of a ~32 KB file when the JVM runs as a user named in its
/// own `/etc/passwd`; otherwise (or when the file is missing) it also lists
/// the process's `/tmp`, so do not retry a [`JvmError::PerfDataDisabled`] or
/// [`JvmError::NoPerfData`] pid every second.
pub fn read_jvm(pid: u32) -> Result<JvmStats, JvmError> {
    let path = locate(pid)?;
    let bytes = fs::read(&path).map_err(|e| io_error(pid, path.clone(), e))?;
    parse_hsperfdata(&bytes)
}

fn io_error(pid: u32, path: PathBuf, source: io::Error) -> JvmError {
    match source.kind() {
        io::ErrorKind::PermissionDenied => JvmError::PermissionDenied { path },
        // The JVM exited between locate and read; say so rather than ENOENT.
        io::ErrorKind::NotFound if !Path::new(&format!("/proc/{pid}")).exists() => {
            JvmError::ProcessNotFound { pid }
        }
        _ => JvmError::Io { path, source },
    }
}

/// The file sits in the JVM's own mount namespace, named after its pid in
/// its own pid namespace: `/proc/<pid>/root/tmp/hsperfdata_<user>/<nspid>`.
/// (HotSpot always uses /tmp here, never java.io.tmpdir.)
fn locate(pid: u32) -> Result<PathBuf, JvmError> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let uid = match fs::metadata(&proc_dir) {
        Ok(m) => m.uid(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(JvmError::ProcessNotFound { pid });
        }
        Err(e) => return Err(io_error(pid, proc_dir, e)),
    };
    let status = fs::read_to_string(proc_dir.join("status"))
        .map_err(|e| io_error(pid, proc_dir.join("status"), e))?;
    let ns_pid = parse_ns_pid(&status).unwrap_or(pid).to_string();
    let root = proc_dir.join("root");
    let tmp = root.join("tmp");

    let passwd = fs::read_to_string(root.join("etc/passwd"))
        .or_else(|_| fs::read_to_string("/etc/passwd"))
        .unwrap_or_default();
    if let Some(user) = passwd_user(&passwd, uid) {
        let path = tmp.join(format!("hsperfdata_{user}")).join(&ns_pid);
        if path.is_file() {
            return Ok(path);
        }
    }
    if let Some(flag) =
        perf_data_disabled_by(&fs::read(proc_dir.join("cmdline")).unwrap_or_default())
    {
        return Err(JvmError::PerfDataDisabled { pid, flag });
    }
    // User namespaces map uids, so the name may not resolve: look in every
    // hsperfdata_* directory, preferring a file owned by the process's uid.
    let mut found: Option<(PathBuf, bool)> = None;
    let dir = match fs::read_dir(&tmp) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(JvmError::NoPerfData { pid, tmp });
        }
        Err(e) => return Err(io_error(pid, tmp, e)),
    };
    for dent in dir.flatten() {
        if !dent.file_name().as_bytes().starts_with(b"hsperfdata_") {
            continue;
        }
        let path = dent.path().join(&ns_pid);
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        let owned = meta.uid() == uid;
        if meta.is_file() && found.as_ref().is_none_or(|(_, o)| !o && owned) {
            found = Some((path, owned));
        }
    }
    found
        .map(|(p, _)| p)
        .ok_or(JvmError::NoPerfData { pid, tmp })
}

/// Last `NSpid:` value: the pid as the process's own namespace sees it.
fn parse_ns_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

fn passwd_user(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid = fields.nth(1)?.parse::<u32>().ok()?;
        (entry_uid == uid && !name.is_empty()).then_some(name)
    })
}

/// Which flag on the command line switched the file off; the last of
/// `-XX:±UsePerfData` wins, as in HotSpot.
fn perf_data_disabled_by(cmdline: &[u8]) -> Option<&'static str> {
    let mut use_perf_data = true;
    let mut shared_mem_disabled = false;
    for arg in cmdline.split(|b| *b == 0) {
        match arg {
            b"-XX:-UsePerfData" => use_perf_data = false,
            b"-XX:+UsePerfData" => use_perf_data = true,
            b"-XX:+PerfDisableSharedMem" => shared_mem_disabled = true,
            b"-XX:-PerfDisableSharedMem" => shared_mem_disabled = false,
            _ => {}
        }
    }
    if !use_perf_data {
        Some("-XX:-UsePerfData")
    } else if shared_mem_disabled {
        Some("-XX:+PerfDisableSharedMem")
    } else {
        None
    }
}

/// Whether `pid` runs the `java` launcher. /proc/<pid>/exe needs ptrace
/// rights (root or same user); cmdline is world-readable, so it is the
/// fallback.
pub fn is_java(pid: u32) -> bool {
    if let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) {
        // A JDK upgraded under a running JVM leaves "java (deleted)".
        let name = exe.file_name().map(OsStr::as_bytes).unwrap_or_default();
        if name == b"java" || name == b"java (deleted)" {
            return true;
        }
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let arg0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    arg0 == b"java" || arg0.ends_with(b"/java")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from real JVMs on the dev machine; see the README next to them.
    const G1_JDK17: &[u8] = include_bytes!("../../tests/fixtures/hsperfdata/g1-jdk17.hsperfdata");
    const G1_JDK25: &[u8] = include_bytes!("../../tests/fixtures/hsperfdata/g1-jdk25.hsperfdata");
    const SERIAL_JDK17: &[u8] =
        include_bytes!("../../tests/fixtures/hsperfdata/serial-jdk17.hsperfdata");
    const PARALLEL_JDK17: &[u8] =
        include_bytes!("../../tests/fixtures/hsperfdata/parallel-jdk17.hsperfdata");
    const SHENANDOAH_JDK17: &[u8] =
        include_bytes!("../../tests/fixtures/hsperfdata/shenandoah-jdk17.hsperfdata");
    const ZGC_JDK17: &[u8] = include_bytes!("../../tests/fixtures/hsperfdata/zgc-jdk17.hsperfdata");
    const ZGC_JDK25: &[u8] = include_bytes!("../../tests/fixtures/hsperfdata/zgc-jdk25.hsperfdata");

    const ALL: [(&str, &[u8]); 7] = [
        ("g1-jdk17", G1_JDK17),
        ("g1-jdk25", G1_JDK25),
        ("serial-jdk17", SERIAL_JDK17),
        ("parallel-jdk17", PARALLEL_JDK17),
        ("shenandoah-jdk17", SHENANDOAH_JDK17),
        ("zgc-jdk17", ZGC_JDK17),
        ("zgc-jdk25", ZGC_JDK25),
    ];

    /// 6320816128: MaxHeapSize chosen by ergonomics on the 24 GB capture host.
    const MAX_HEAP: u64 = 6_320_816_128;

    fn stats(
        used: u64,
        committed: u64,
        max: u64,
        young: u64,
        young_ms: f64,
        full: u64,
        full_ms: f64,
    ) -> JvmStats {
        JvmStats {
            heap_used_bytes: used,
            heap_committed_bytes: committed,
            heap_max_bytes: max,
            young_gc_count: young,
            young_gc_time_ms: young_ms,
            full_gc_count: full,
            full_gc_time_ms: full_ms,
        }
    }

    fn assert_stats(name: &str, got: JvmStats, want: JvmStats) {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(
            close(got.young_gc_time_ms, want.young_gc_time_ms)
                && close(got.full_gc_time_ms, want.full_gc_time_ms),
            "{name}: got {got:?}, want {want:?}"
        );
        let ints = |s: JvmStats| {
            (
                s.heap_used_bytes,
                s.heap_committed_bytes,
                s.heap_max_bytes,
                s.young_gc_count,
                s.full_gc_count,
            )
        };
        assert_eq!(ints(got), ints(want), "{name}: got {got:?}, want {want:?}");
    }

    // Expected values are jstat's own reading of the same files
    // (`jstat -J-Djstat.showUnsupported=true -snap file:///<fixture>`).
    #[test]
    fn g1_jdk17_after_system_gc() {
        let s = parse_hsperfdata(G1_JDK17).unwrap();
        // old 11097656 + eden/s0/s1 0; capacities 33554456 + 25165832
        // (each padded by 8 bytes per space); max is the old generation's.
        let want = stats(
            11_097_656,
            58_720_288,
            MAX_HEAP + 8,
            11,
            14.42246,
            3,
            18.894377,
        );
        assert_stats("g1-jdk17", s, want);
    }

    #[test]
    fn g1_jdk25_has_no_capacity_padding() {
        let s = parse_hsperfdata(G1_JDK25).unwrap();
        let want = stats(7_782_200, 29_360_128, MAX_HEAP, 13, 16.526762, 3, 25.687013);
        assert_stats("g1-jdk25", s, want);
    }

    #[test]
    fn serial_sums_young_and_old_maxima() {
        let s = parse_hsperfdata(SERIAL_JDK17).unwrap();
        // used 2065208 eden + 7280936 old; max 2106916864 + 4213899264.
        let want = stats(9_346_144, 396_427_264, MAX_HEAP, 3, 8.618287, 3, 17.181162);
        assert_stats("serial-jdk17", s, want);
    }

    #[test]
    fn parallel_sums_young_and_old_maxima() {
        let s = parse_hsperfdata(PARALLEL_JDK17).unwrap();
        // used 1942264 eden + 7203048 old; max 2106589184 + 4214226944.
        let want = stats(9_145_312, 396_361_728, MAX_HEAP, 6, 9.576936, 3, 20.105656);
        assert_stats("parallel-jdk17", s, want);
    }

    #[test]
    fn concurrent_collectors_do_not_double_the_max() {
        let want = [
            // "Shenandoah full" counts every pause; jstat shows FGC 36 too.
            (
                SHENANDOAH_JDK17,
                stats(16_761_176, 16_777_216, MAX_HEAP, 0, 0.0, 36, 52.861591),
            ),
            // No generation 0 and no collectors 0/1 at all.
            (
                ZGC_JDK17,
                stats(46_137_344, 396_361_728, MAX_HEAP, 0, 0.0, 0, 0.0),
            ),
            // Both generations report the whole heap as their maximum.
            (
                ZGC_JDK25,
                stats(10_485_760, 396_361_728, MAX_HEAP, 0, 0.0, 0, 0.0),
            ),
        ];
        for (bytes, want) in want {
            assert_stats("concurrent", parse_hsperfdata(bytes).unwrap(), want);
        }
    }

    fn used_of(bytes: &[u8]) -> usize {
        i32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize
    }

    fn put_i32(bytes: &mut [u8], at: usize, v: i32) {
        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Offset of the entry called `name` (fixtures are little endian).
    fn entry_of(bytes: &[u8], name: &str) -> usize {
        let rd = |at: usize| i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let mut at = rd(24);
        for _ in 0..rd(28) {
            let n = &bytes[at + rd(at + 4)..];
            if &n[..n.iter().position(|b| *b == 0).unwrap()] == name.as_bytes() {
                return at;
            }
            at += rd(at);
        }
        panic!("no entry {name}");
    }

    #[test]
    fn every_header_prefix_is_truncated() {
        for len in 0..PROLOGUE_LEN {
            match parse_hsperfdata(&G1_JDK17[..len]) {
                Err(JvmError::Truncated { needed: 32, len: l }) if l == len => {}
                other => panic!("prefix {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn cut_inside_the_entries_is_truncated() {
        for (name, bytes) in ALL {
            let used = used_of(bytes);
            for len in (PROLOGUE_LEN..used).step_by(61).chain([used - 1]) {
                match parse_hsperfdata(&bytes[..len]) {
                    Err(JvmError::Truncated { needed, len: l }) if needed == used && l == len => {}
                    other => panic!("{name} cut at {len}: {other:?}"),
                }
            }
            // Past `used` the file is only spare room.
            let whole = parse_hsperfdata(bytes).unwrap();
            assert_eq!(parse_hsperfdata(&bytes[..used]).unwrap(), whole, "{name}");
        }
    }

    #[test]
    fn wrong_magic() {
        let mut b = G1_JDK17.to_vec();
        b[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let e = parse_hsperfdata(&b).unwrap_err();
        assert!(
            matches!(e, JvmError::BadMagic { found: 0xdead_beef }),
            "{e:?}"
        );
        assert!(e.to_string().contains("0xdeadbeef"), "{e}");
    }

    #[test]
    fn unknown_byte_order() {
        let mut b = G1_JDK17.to_vec();
        b[4] = 7;
        assert!(matches!(
            parse_hsperfdata(&b),
            Err(JvmError::BadByteOrder(7))
        ));
    }

    #[test]
    fn unsupported_versions() {
        for (major, minor) in [(1, 0), (2, 1), (3, 0), (0, 0)] {
            let mut b = G1_JDK17.to_vec();
            b[5] = major;
            b[6] = minor;
            let e = parse_hsperfdata(&b).unwrap_err();
            assert!(
                matches!(e, JvmError::UnsupportedVersion { major: a, minor: i } if a == major && i == minor),
                "{e:?}"
            );
            assert!(e.to_string().contains("only 2.0 is supported"), "{e}");
        }
    }

    #[test]
    fn not_yet_accessible() {
        let mut b = G1_JDK17.to_vec();
        b[7] = 0;
        assert!(matches!(parse_hsperfdata(&b), Err(JvmError::NotAccessible)));
    }

    #[test]
    fn bad_header_fields() {
        let cases = [
            (8, 16),
            (8, -1),
            (24, 8),
            (24, 1 << 20),
            (24, -32),
            (28, -1),
        ];
        for (at, v) in cases {
            let mut b = G1_JDK17.to_vec();
            put_i32(&mut b, at, v);
            let r = parse_hsperfdata(&b);
            assert!(
                matches!(r, Err(JvmError::BadHeader(_))),
                "field {at} = {v}: {r:?}"
            );
        }
        let mut b = G1_JDK17.to_vec();
        put_i32(&mut b, 8, 1 << 20);
        let r = parse_hsperfdata(&b);
        assert!(
            matches!(
                r,
                Err(JvmError::Truncated {
                    needed: 0x10_0000,
                    len: 32768
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn entry_offsets_outside_the_entry_or_file() {
        let first = entry_of(G1_JDK17, "sun.rt._sync_Inflations");
        let freq = entry_of(G1_JDK17, HRT_FREQUENCY);
        let cases = [
            // (entry, field, value)
            (first, 0, 4),           // length smaller than the header
            (first, 0, -8),          // negative length
            (first, 0, 40_000),      // past the file
            (first, 0, i32::MAX),    // past everything, no overflow
            (first, 4, 0),           // name inside the header
            (first, 4, 56),          // name at the very end
            (first, 4, i32::MAX),    // name far outside
            (first, 4, -1),          // negative name offset
            (first, 16, 8),          // data before the name
            (first, 16, 1 << 24),    // data far outside
            (freq, 16, 0x7fff_fff0), // a wanted counter pointing outside
        ];
        for (entry, field, v) in cases {
            let mut b = G1_JDK17.to_vec();
            put_i32(&mut b, entry + field, v);
            match parse_hsperfdata(&b) {
                Err(JvmError::BadEntry { offset, .. }) if offset == entry => {}
                other => panic!("entry {entry} field {field} = {v}: {other:?}"),
            }
        }
        // A wanted counter whose 8-byte value would cross the entry's end.
        let mut b = G1_JDK17.to_vec();
        let freq_len = i32::from_le_bytes(b[freq..freq + 4].try_into().unwrap());
        put_i32(&mut b, freq + 16, freq_len - 4);
        match parse_hsperfdata(&b) {
            Err(JvmError::BadEntry { offset, .. }) if offset == freq => {}
            other => panic!("value crossing the entry end: {other:?}"),
        }
        // The last entry running past `used` (but not the file).
        let mut b = G1_JDK17.to_vec();
        let used = used_of(&b);
        put_i32(&mut b, 8, used as i32 - 8);
        assert!(matches!(
            parse_hsperfdata(&b),
            Err(JvmError::BadEntry { .. })
        ));
    }

    #[test]
    fn wanted_counter_with_wrong_type() {
        let freq = entry_of(G1_JDK17, HRT_FREQUENCY);
        let mut b = G1_JDK17.to_vec();
        b[freq + 12] = TYPE_BYTE;
        let e = parse_hsperfdata(&b).unwrap_err();
        assert!(
            matches!(e, JvmError::BadEntry { offset, .. } if offset == freq),
            "{e:?}"
        );
    }

    #[test]
    fn name_without_nul() {
        let first = entry_of(G1_JDK17, "sun.rt._sync_Inflations");
        let mut b = G1_JDK17.to_vec();
        // Data right after the name's last character: no room for its NUL.
        put_i32(
            &mut b,
            first + 16,
            20 + "sun.rt._sync_Inflations".len() as i32,
        );
        let e = parse_hsperfdata(&b).unwrap_err();
        assert!(
            matches!(e, JvmError::BadEntry { offset, .. } if offset == first),
            "{e:?}"
        );
    }

    #[test]
    fn zeroed_entry_ends_the_list_and_missing_counters_are_named() {
        // An entry the JVM reserved but has not filled yet reads as zeros.
        let mut b = G1_JDK17.to_vec();
        put_i32(&mut b, 32, 0);
        let e = parse_hsperfdata(&b).unwrap_err();
        assert!(
            matches!(e, JvmError::MissingCounter(HRT_FREQUENCY)),
            "{e:?}"
        );

        let mut b = G1_JDK17.to_vec();
        let freq = entry_of(&b, HRT_FREQUENCY);
        b[freq + 20] = b'x'; // rename the counter
        assert!(matches!(
            parse_hsperfdata(&b),
            Err(JvmError::MissingCounter(HRT_FREQUENCY))
        ));

        let mut b = G1_JDK17.to_vec();
        for g in ["0", "1"] {
            let at = entry_of(&b, &format!("sun.gc.generation.{g}.capacity"));
            b[at + 20] = b'x';
        }
        let e = parse_hsperfdata(&b).unwrap_err();
        assert!(
            matches!(e, JvmError::MissingCounter(GENERATION_CAPACITY)),
            "{e:?}"
        );
    }

    #[test]
    fn zero_frequency_is_rejected() {
        let mut b = G1_JDK17.to_vec();
        let freq = entry_of(&b, HRT_FREQUENCY);
        let data = freq + i32::from_le_bytes(b[freq + 16..freq + 20].try_into().unwrap()) as usize;
        b[data..data + 8].copy_from_slice(&0i64.to_le_bytes());
        let e = parse_hsperfdata(&b).unwrap_err();
        assert!(matches!(e, JvmError::BadValue { value: 0, .. }), "{e:?}");
    }

    #[test]
    fn entry_count_is_only_an_upper_bound() {
        // A lying count must neither loop nor read past `used`.
        let mut b = G1_JDK17.to_vec();
        put_i32(&mut b, 28, i32::MAX);
        assert_eq!(
            parse_hsperfdata(&b).unwrap(),
            parse_hsperfdata(G1_JDK17).unwrap()
        );
        put_i32(&mut b, 28, 0);
        assert!(matches!(
            parse_hsperfdata(&b),
            Err(JvmError::MissingCounter(_))
        ));
    }

    /// Rewrites a little-endian fixture as a big-endian JVM would have
    /// written it (s390x, SPARC).
    fn to_big_endian(le: &[u8]) -> Vec<u8> {
        let mut b = le.to_vec();
        let swap = |b: &mut Vec<u8>, at: usize, n: usize| b[at..at + n].reverse();
        let rd = |b: &[u8], at: usize| i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        b[4] = 0;
        for at in [8, 12, 24, 28] {
            swap(&mut b, at, 4);
        }
        swap(&mut b, 16, 8);
        let mut at = rd(&b, 24) as usize;
        for _ in 0..rd(&b, 28) {
            for field in [0, 4, 8, 16] {
                swap(&mut b, at + field, 4);
            }
            if b[at + 12] == TYPE_LONG && rd(&b, at + 8) == 0 {
                let data = at + rd(&b, at + 16) as usize;
                swap(&mut b, data, 8);
            }
            at += rd(&b, at) as usize;
        }
        b
    }

    #[test]
    fn big_endian_files_parse_the_same() {
        for (name, bytes) in ALL {
            let be = to_big_endian(bytes);
            assert_eq!(
                parse_hsperfdata(&be).unwrap(),
                parse_hsperfdata(bytes).unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn flipped_bytes_never_panic() {
        // Every bit of the prologue, then random flips over the entries.
        for at in 0..PROLOGUE_LEN {
            for bit in 0..8 {
                let mut b = G1_JDK17.to_vec();
                b[at] ^= 1 << bit;
                let _ = parse_hsperfdata(&b);
            }
        }
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (_, fixture) in ALL {
            let span = used_of(fixture) + 64;
            for _ in 0..3000 {
                let mut b = fixture.to_vec();
                for _ in 0..=next() % 4 {
                    let at = (next() as usize) % span;
                    b[at] ^= (next() as u8) | 1;
                }
                let cut = if next() % 8 == 0 {
                    (next() as usize) % b.len()
                } else {
                    b.len()
                };
                let _ = parse_hsperfdata(&b[..cut]);
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        for len in [0, 1, 31, 32, 33, 100, 4096] {
            let _ = parse_hsperfdata(&vec![0xff; len]);
            let mut b = vec![0; len];
            if len >= 8 {
                b[..8].copy_from_slice(&[0xca, 0xfe, 0xc0, 0xc0, 1, 2, 0, 1]);
            }
            let _ = parse_hsperfdata(&b);
        }
    }

    #[test]
    fn counter_names() {
        assert!(matches!(
            classify(b"sun.gc.collector.1.time"),
            Some(Counter::CollectorTime(1))
        ));
        assert!(classify(b"sun.gc.collector.2.time").is_none());
        assert!(classify(b"sun.gc.collector.10.time").is_none());
        assert!(classify(b"sun.gc.generation.2.capacity").is_none());
        assert!(matches!(
            classify(b"sun.gc.generation.0.space.12.used"),
            Some(Counter::SpaceUsed)
        ));
        assert!(classify(b"sun.gc.generation.0.space.0.capacity").is_none());
        assert!(classify(b"sun.gc.generation.0.space..used").is_none());
        assert!(classify(b"sun.gc.generation.99999999999999999999999.capacity").is_none());
    }

    #[test]
    fn ns_pid_is_the_innermost() {
        assert_eq!(
            parse_ns_pid("Name:\tjava\nNSpid:\t4242\t7\nNSpgid:\t1\n"),
            Some(7)
        );
        assert_eq!(parse_ns_pid("Name:\tjava\nNSpid:\t4242\n"), Some(4242));
        assert_eq!(parse_ns_pid("Name:\tjava\nPid:\t4242\n"), None);
    }

    #[test]
    fn passwd_lookup() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # comment\n\
                      broken\n\
                      app:x:1000:1000::/home/app:/bin/sh\n";
        assert_eq!(passwd_user(passwd, 0), Some("root"));
        assert_eq!(passwd_user(passwd, 1000), Some("app"));
        assert_eq!(passwd_user(passwd, 1001), None);
    }

    #[test]
    fn perf_data_flags_last_one_wins() {
        let cmd = |args: &[&str]| args.join("\0").into_bytes();
        assert_eq!(
            perf_data_disabled_by(&cmd(&["java", "-jar", "a.jar"])),
            None
        );
        assert_eq!(
            perf_data_disabled_by(&cmd(&["java", "-XX:-UsePerfData", "Main"])),
            Some("-XX:-UsePerfData")
        );
        assert_eq!(
            perf_data_disabled_by(&cmd(&["java", "-XX:-UsePerfData", "-XX:+UsePerfData"])),
            None
        );
        assert_eq!(
            perf_data_disabled_by(&cmd(&["java", "-XX:+PerfDisableSharedMem"])),
            Some("-XX:+PerfDisableSharedMem")
        );
    }

    #[test]
    fn this_test_process_is_not_java() {
        assert!(!is_java(std::process::id()));
    }
}
