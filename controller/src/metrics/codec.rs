//! Compression codec of the embedded metric store.
//!
//! Owns: turning one column block (the samples of one host over a time
//! window) into bytes and back, bit-exactly, and refusing input it cannot
//! trust. Knows nothing about SQLite, hosts, agents or time windows: which
//! block holds what, and where the bytes go, is the store's business. Must
//! not panic or allocate without bound on any input, since stored blobs
//! outlive the code that wrote them and may be damaged on disk.
//!
//! # Format (version 1)
//!
//! ```text
//! u8       version = 1
//! ...      exactly one zstd frame, content size and checksum recorded,
//!          holding the payload below (any level decodes)
//! ```
//!
//! Payload; `varint` is unsigned LEB128 (at most 10 bytes), `zz` is zigzag
//! (0, -1, 1, -2, … → 0, 1, 2, 3, …), integer arithmetic wraps at 64 bits:
//!
//! ```text
//! varint   n                points, <= MAX_POINTS
//! varint   c                columns, <= MAX_COLUMNS, n * c <= MAX_VALUES
//! c times  varint len, len bytes of UTF-8 column name (len <= MAX_NAME_LEN)
//! n times  zz varint        ts[0], then ts[1] - ts[0], then for i >= 2 the
//!                           delta of deltas (ts[i] - ts[i-1]) - (ts[i-1] - ts[i-2])
//! c times  column:
//!   u8 tag
//!   tag 0 (XOR)       Gorilla bit stream, most significant bit first, zero
//!                     padded to a byte. Each value's bits are XORed with the
//!                     previous value's (the first with 0):
//!                       '0'                          XOR is 0: same value
//!                       '10' + W bits                XOR's meaningful bits fit
//!                                                    the current window
//!                       '11' + 6 bits leading zeros
//!                            + 6 bits (length - 1)
//!                            + length bits           new window
//!                     The window starts as 0 leading zeros, length 64.
//!   tag 1 (decimal)   u8 d (0..=6), then n times zz varint delta of k (the
//!                     first against 0); value = k as f64 / 10^d
//!   tag 2 (decimal32) like tag 1; value = ((k as f32) / (10^d as f32)) as f64
//! ```
//!
//! The encoder picks a decimal tag for a column only when every value comes
//! back bit-identical from some `k`; otherwise XOR, which is exact for any
//! bit pattern (NaN payloads, -0.0, infinities).

use std::io;

/// First byte of every encoded block.
pub const VERSION: u8 = 1;
/// Most timestamps one block may hold.
pub const MAX_POINTS: usize = 1 << 20;
/// Most columns one block may hold.
pub const MAX_COLUMNS: usize = 4096;
/// Most values (points × columns) one block may hold; bounds what a decode
/// may allocate.
pub const MAX_VALUES: usize = 1 << 22;
/// Longest column name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Most bytes a payload may decompress to. Decode allocates at most this
/// much before it has read a single value, so it is what a hostile blob can
/// cost us.
const MAX_PAYLOAD: usize = 64 << 20;
// Every block that passes `validate` must fit: 10 bytes is the longest
// varint and exceeds the longest XOR record (2 + 12 + 64 bits).
const _: () = assert!(
    10 * MAX_VALUES + 10 * MAX_POINTS + MAX_COLUMNS * (MAX_NAME_LEN + 4) + 20 <= MAX_PAYLOAD
);

/// On simulated hosts level 3 gives 0.96 B/value at ~85 M values/s encode;
/// 9 gives 0.93 at 36 M, 19 gives 0.91 at 6 M. Ingest keeps the headroom;
/// the level is not part of the format, so cold blocks may be recompressed
/// harder later and still decode here.
const ZSTD_LEVEL: i32 = 3;

const TAG_XOR: u8 = 0;
const TAG_DECIMAL: u8 = 1;
const TAG_DECIMAL32: u8 = 2;

/// Literals rather than `powi`, whose rounding Rust leaves unspecified:
/// decode must rebuild exactly the value encode checked.
const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];
const POW10_F32: [f32; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// A column block: the samples of ONE host over a time window (e.g. 10
/// minutes at 1 s). `ts` are Unix milliseconds, strictly increasing. Every
/// column has `ts.len()` values; a missing value is `f64::NAN` (e.g. a host
/// without a JVM), and round-trips bit-exactly.
///
/// `PartialEq` compares floats by value, so NaN columns never compare equal:
/// compare `to_bits()` where that matters.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub ts: Vec<i64>,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: Vec<f64>,
}

/// From [`encode`], a caller bug: the block breaks its invariants or the
/// limits. From [`decode`], bytes that are damaged, not a block, or written
/// by a newer format version.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("timestamps not strictly increasing at index {index}")]
    TimestampsNotIncreasing { index: usize },
    #[error("column {column:?} has {got} values for {expected} timestamps")]
    LengthMismatch {
        column: String,
        expected: usize,
        got: usize,
    },
    #[error("{got} points exceed the limit of {max}")]
    TooManyPoints { got: u64, max: usize },
    #[error("{got} columns exceed the limit of {max}")]
    TooManyColumns { got: u64, max: usize },
    #[error("{got} values exceed the limit of {max}")]
    TooManyValues { got: u64, max: usize },
    #[error("column name of {got} bytes exceeds the limit of {max}")]
    NameTooLong { got: u64, max: usize },
    #[error("empty input")]
    Empty,
    #[error("unsupported block format version {0}")]
    UnsupportedVersion(u8),
    #[error("zstd: {0}")]
    Zstd(#[source] io::Error),
    #[error("corrupt block: {0}")]
    Corrupt(&'static str),
}

/// Encodes `block`; refuses blocks that break the invariants of [`Block`]
/// or the limits, so that everything stored can be decoded again.
pub fn encode(block: &Block) -> Result<Vec<u8>, CodecError> {
    validate(block)?;
    let n = block.ts.len();
    let mut w = Vec::with_capacity(16 + n * (2 + 2 * block.columns.len()));
    put_varint(&mut w, n as u64);
    put_varint(&mut w, block.columns.len() as u64);
    for c in &block.columns {
        put_varint(&mut w, c.name.len() as u64);
        w.extend_from_slice(c.name.as_bytes());
    }
    encode_ts(&mut w, &block.ts);
    for c in &block.columns {
        encode_column(&mut w, &c.values);
    }
    debug_assert!(w.len() <= MAX_PAYLOAD);

    let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(CodecError::Zstd)?;
    // Four bytes a block buys detection of damage on disk, which the
    // payload alone would often decode into plausible wrong numbers.
    zstd.include_checksum(true).map_err(CodecError::Zstd)?;
    let frame = zstd.compress(&w).map_err(CodecError::Zstd)?;
    let mut out = Vec::with_capacity(1 + frame.len());
    out.push(VERSION);
    out.extend_from_slice(&frame);
    Ok(out)
}

/// Decodes what [`encode`] produced. Any other input gives an error, never a
/// panic, and costs at most `MAX_PAYLOAD` plus the decoded block in memory.
pub fn decode(bytes: &[u8]) -> Result<Block, CodecError> {
    let (&version, frame) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != VERSION {
        return Err(CodecError::UnsupportedVersion(version));
    }
    // The frame header states the payload size; checking it before
    // decompressing is what keeps a small hostile blob from making us
    // allocate or inflate without bound.
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .map_err(|_| CodecError::Corrupt("bad zstd frame header"))?
        .ok_or(CodecError::Corrupt("zstd frame without content size"))?;
    if size > MAX_PAYLOAD as u64 {
        return Err(CodecError::Corrupt("payload larger than the limit"));
    }
    match zstd::zstd_safe::find_frame_compressed_size(frame) {
        Ok(len) if len == frame.len() => {}
        _ => return Err(CodecError::Corrupt("not exactly one zstd frame")),
    }
    let mut payload = Vec::with_capacity(size as usize);
    zstd::bulk::Decompressor::new()
        .map_err(CodecError::Zstd)?
        .decompress_to_buffer(frame, &mut payload)
        .map_err(CodecError::Zstd)?;
    if payload.len() as u64 != size {
        return Err(CodecError::Corrupt("payload size differs from its header"));
    }
    decode_payload(&payload)
}

fn validate(block: &Block) -> Result<(), CodecError> {
    let n = block.ts.len();
    if n > MAX_POINTS {
        return Err(CodecError::TooManyPoints {
            got: n as u64,
            max: MAX_POINTS,
        });
    }
    if block.columns.len() > MAX_COLUMNS {
        return Err(CodecError::TooManyColumns {
            got: block.columns.len() as u64,
            max: MAX_COLUMNS,
        });
    }
    let values = n as u64 * block.columns.len() as u64;
    if values > MAX_VALUES as u64 {
        return Err(CodecError::TooManyValues {
            got: values,
            max: MAX_VALUES,
        });
    }
    if let Some(i) = block.ts.windows(2).position(|w| w[0] >= w[1]) {
        return Err(CodecError::TimestampsNotIncreasing { index: i + 1 });
    }
    for c in &block.columns {
        if c.name.len() > MAX_NAME_LEN {
            return Err(CodecError::NameTooLong {
                got: c.name.len() as u64,
                max: MAX_NAME_LEN,
            });
        }
        if c.values.len() != n {
            return Err(CodecError::LengthMismatch {
                column: c.name.clone(),
                expected: n,
                got: c.values.len(),
            });
        }
    }
    Ok(())
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(w: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        w.push(v as u8 | 0x80);
        v >>= 7;
    }
    w.push(v as u8);
}

/// Byte-aligned varints rather than Gorilla's bit-packed buckets: zstd
/// entropy-codes the jitter bytes, which bit packing hides from it (measured
/// 0.961 against 0.976 B/value overall).
fn encode_ts(w: &mut Vec<u8>, ts: &[i64]) {
    let mut prev = 0i64;
    let mut prev_delta = 0i64;
    for (i, &t) in ts.iter().enumerate() {
        let v = match i {
            0 => t,
            1 => {
                prev_delta = t.wrapping_sub(prev);
                prev_delta
            }
            _ => {
                let delta = t.wrapping_sub(prev);
                let dod = delta.wrapping_sub(prev_delta);
                prev_delta = delta;
                dod
            }
        };
        put_varint(w, zigzag(v));
        prev = t;
    }
}

/// Our agents send f32 percentages rounded to 2 decimals and integer counts
/// widened to f64. As XOR records those cost ~28 bits per noisy percentage;
/// as the varint delta of the underlying integer about half that, and the
/// bytes zstd sees are far more regular (0.96 against 1.39 B/value overall
/// on simulated hosts). Other columns keep Gorilla XOR, exact for any bits.
fn encode_column(w: &mut Vec<u8>, values: &[f64]) {
    if let Some((tag, d)) = find_decimal(values) {
        w.push(tag);
        w.push(d as u8);
        let mut prev = 0i64;
        for &v in values {
            let k = decimal_k(v, d);
            put_varint(w, zigzag(k.wrapping_sub(prev)));
            prev = k;
        }
    } else {
        w.push(TAG_XOR);
        let mut bits = BitWriter::new(w);
        xor_encode(&mut bits, values);
        bits.finish();
    }
}

fn decimal_k(v: f64, d: u32) -> i64 {
    // `as` saturates and maps NaN to 0; such a k fails the round-trip check.
    (v * POW10[d as usize]).round() as i64
}

fn decimal_value(tag: u8, k: i64, d: u32) -> f64 {
    if tag == TAG_DECIMAL {
        k as f64 / POW10[d as usize]
    } else {
        f64::from(k as f32 / POW10_F32[d as usize])
    }
}

/// The smallest scale at which every value is rebuilt bit-identically, so
/// the integers stay small. NaN, infinities and -0.0 never qualify.
fn find_decimal(values: &[f64]) -> Option<(u8, u32)> {
    if values.is_empty() {
        return None;
    }
    (0..POW10.len() as u32)
        .flat_map(|d| [(TAG_DECIMAL, d), (TAG_DECIMAL32, d)])
        .find(|&(tag, d)| {
            values
                .iter()
                .all(|&v| decimal_value(tag, decimal_k(v, d), d).to_bits() == v.to_bits())
        })
}

fn xor_encode(out: &mut BitWriter, values: &[f64]) {
    let mut prev = 0u64;
    let mut win_lz = 0u32;
    let mut win_len = 64u32;
    for v in values {
        let bits = v.to_bits();
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            out.write(0, 1);
            continue;
        }
        let lz = x.leading_zeros();
        let tz = x.trailing_zeros();
        let len = 64 - lz - tz;
        let win_tz = 64 - win_lz - win_len;
        // Plain Gorilla reuses any window that fits; reusing one more than
        // 12 bits wider than needed costs more than the 12-bit header of a
        // new one.
        if lz >= win_lz && tz >= win_tz && win_len <= len + 12 {
            out.write(0b10, 2);
            out.write(x >> win_tz, win_len);
        } else {
            out.write(0b11, 2);
            out.write(u64::from(lz), 6);
            out.write(u64::from(len - 1), 6);
            out.write(x >> tz, len);
            win_lz = lz;
            win_len = len;
        }
    }
}

fn xor_decode(r: &mut Reader, n: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    let mut prev = 0u64;
    let mut win_lz = 0u32;
    let mut win_len = 64u32;
    for _ in 0..n {
        if r.bits(1)? == 1 {
            if r.bits(1)? == 1 {
                let lz = r.bits(6)? as u32;
                let len = r.bits(6)? as u32 + 1;
                if lz + len > 64 {
                    return Err(CodecError::Corrupt("XOR window beyond 64 bits"));
                }
                win_lz = lz;
                win_len = len;
            }
            prev ^= r.bits(win_len)? << (64 - win_lz - win_len);
        }
        out.push(f64::from_bits(prev));
    }
    Ok(())
}

struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Pending bits, fewer than 8 between calls; u128 so that one call can
    /// add 64 without splitting.
    acc: u128,
    pending: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            pending: 0,
        }
    }

    /// Appends the low `count` (<= 64) bits of `v`.
    fn write(&mut self, v: u64, count: u32) {
        let v = u128::from(v) & ((1u128 << count) - 1);
        self.acc = (self.acc << count) | v;
        self.pending += count;
        while self.pending >= 8 {
            self.pending -= 8;
            self.out.push((self.acc >> self.pending) as u8);
        }
        self.acc &= (1u128 << self.pending) - 1;
    }

    fn finish(self) {
        if self.pending > 0 {
            self.out.push((self.acc << (8 - self.pending)) as u8);
        }
    }
}

const TRUNCATED: CodecError = CodecError::Corrupt("payload ends early");

/// Reads bytes and bit streams from one payload; every read is bounds
/// checked and fails with [`TRUNCATED`] rather than panicking.
struct Reader<'a> {
    data: &'a [u8],
    /// Position in bits; byte reads happen only at byte boundaries.
    bit: usize,
}

impl<'a> Reader<'a> {
    fn remaining_bits(&self) -> usize {
        self.data.len() * 8 - self.bit
    }

    fn align(&mut self) {
        self.bit = self.bit.div_ceil(8) * 8;
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self.data.get(self.bit / 8).ok_or(TRUNCATED)?;
        self.bit += 8;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(CodecError::Corrupt("varint beyond 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CodecError::Corrupt("varint beyond 64 bits"))
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        let start = self.bit / 8;
        let end = start.checked_add(len).ok_or(TRUNCATED)?;
        let s = self.data.get(start..end).ok_or(TRUNCATED)?;
        self.bit = end * 8;
        Ok(s)
    }

    /// Reads `count` (1..=64) bits, most significant first.
    fn bits(&mut self, count: u32) -> Result<u64, CodecError> {
        let end = self.bit + count as usize;
        if count == 0 || end > self.data.len() * 8 {
            return Err(TRUNCATED);
        }
        let (first, last) = (self.bit / 8, (end - 1) / 8);
        let acc = self.data[first..=last]
            .iter()
            .fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
        let shift = (last - first + 1) * 8 - self.bit % 8 - count as usize;
        self.bit = end;
        Ok(((acc >> shift) & ((1u128 << count) - 1)) as u64)
    }
}

fn decode_payload(payload: &[u8]) -> Result<Block, CodecError> {
    let mut r = Reader {
        data: payload,
        bit: 0,
    };
    let n = r.varint()?;
    if n > MAX_POINTS as u64 {
        return Err(CodecError::TooManyPoints {
            got: n,
            max: MAX_POINTS,
        });
    }
    let ncol = r.varint()?;
    if ncol > MAX_COLUMNS as u64 {
        return Err(CodecError::TooManyColumns {
            got: ncol,
            max: MAX_COLUMNS,
        });
    }
    if n * ncol > MAX_VALUES as u64 {
        return Err(CodecError::TooManyValues {
            got: n * ncol,
            max: MAX_VALUES,
        });
    }
    let (n, ncol) = (n as usize, ncol as usize);
    // Every timestamp and value takes at least one bit, so counts the
    // payload cannot hold are refused before they size an allocation.
    if n * (ncol + 1) > r.remaining_bits() {
        return Err(TRUNCATED);
    }

    let mut names = Vec::with_capacity(ncol);
    for _ in 0..ncol {
        let len = r.varint()?;
        if len > MAX_NAME_LEN as u64 {
            return Err(CodecError::NameTooLong {
                got: len,
                max: MAX_NAME_LEN,
            });
        }
        let name = std::str::from_utf8(r.bytes(len as usize)?)
            .map_err(|_| CodecError::Corrupt("column name is not UTF-8"))?;
        names.push(name.to_owned());
    }

    let mut ts: Vec<i64> = Vec::with_capacity(n);
    let mut prev_delta = 0i64;
    for i in 0..n {
        let v = unzigzag(r.varint()?);
        let t = match i {
            0 => v,
            _ => {
                let delta = if i == 1 {
                    v
                } else {
                    prev_delta.wrapping_add(v)
                };
                prev_delta = delta;
                let prev = ts[i - 1];
                let t = prev.wrapping_add(delta);
                if t <= prev {
                    return Err(CodecError::Corrupt("timestamps not strictly increasing"));
                }
                t
            }
        };
        ts.push(t);
    }

    let mut columns = Vec::with_capacity(ncol);
    for name in names {
        let mut values = Vec::with_capacity(n);
        match r.u8()? {
            TAG_XOR => {
                xor_decode(&mut r, n, &mut values)?;
                r.align();
            }
            tag @ (TAG_DECIMAL | TAG_DECIMAL32) => {
                let d = u32::from(r.u8()?);
                if d as usize >= POW10.len() {
                    return Err(CodecError::Corrupt("decimal scale out of range"));
                }
                let mut k = 0i64;
                for _ in 0..n {
                    k = k.wrapping_add(unzigzag(r.varint()?));
                    values.push(decimal_value(tag, k, d));
                }
            }
            _ => return Err(CodecError::Corrupt("unknown column encoding")),
        }
        columns.push(Column { name, values });
    }
    if r.remaining_bits() != 0 {
        return Err(CodecError::Corrupt("trailing bytes after the last column"));
    }
    Ok(Block { ts, columns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::catch_unwind;

    /// splitmix64: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn unit(&mut self) -> f64 {
            (self.u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.u64() % (hi - lo + 1) as u64) as i64
        }
        fn noise(&mut self) -> f64 {
            (0..4).map(|_| self.unit()).sum::<f64>() - 2.0
        }
    }

    /// A percentage as our agent sends it: 2 decimals, f32, widened.
    fn pct(x: f64) -> f64 {
        f64::from(((x.clamp(0.0, 100.0) * 100.0).round() / 100.0) as f32)
    }

    fn block(ts: Vec<i64>, cols: Vec<(&str, Vec<f64>)>) -> Block {
        Block {
            ts,
            columns: cols
                .into_iter()
                .map(|(name, values)| Column {
                    name: name.to_owned(),
                    values,
                })
                .collect(),
        }
    }

    /// One host at 1 s ± 5 ms: noisy percentages, memory in pages, bursty
    /// I/O, counters, load averages, constants, a JVM sawtooth, no GPU.
    fn host(seed: u64, points: usize) -> Block {
        let mut r = Rng(seed);
        let t0 = 1_760_000_000_000 + r.range(0, 999);
        let ts = (0..points as i64)
            .map(|i| t0 + i * 1000 + r.range(-5, 5))
            .collect();
        let names = [
            "cpu_busy_pct",
            "cpu_user_pct",
            "cpu_iowait_pct",
            "cpu_steal_pct",
            "mem_used_bytes",
            "mem_cached_bytes",
            "mem_available_bytes",
            "swap_used_bytes",
            "disk_read_bytes_per_s",
            "disk_write_bytes_per_s",
            "net_rx_bytes_per_s",
            "net_tx_bytes_per_s",
            "tcp_established",
            "tcp_time_wait",
            "load1",
            "load5",
            "load15",
            "tcp_listen_ports",
            "udp_listen_ports",
            "procs_total",
            "jvm_heap_used_bytes",
            "jvm_gc_count",
            "jvm_threads",
            "gpu_util_pct",
            "gpu_mem_used_bytes",
        ];
        let mut cols = vec![Vec::with_capacity(points); names.len()];
        let (mut used, mut cached) = (1_500_000i64, 800_000i64);
        let (mut est, mut tw, mut procs) = (150i64, 40i64, 310i64);
        let mut load = [1.2f64, 1.0, 0.9];
        let (mut heap, mut gcs, mut burst) = (300e6f64, 17.0, 0);
        for i in 0..points {
            let busy = 25.0 + 15.0 * (i as f64 / 120.0).sin() + 6.0 * r.noise();
            let iowait = if r.unit() < 0.05 { 8.0 } else { 0.3 } * r.unit();
            used += (r.noise() * 80.0) as i64;
            cached += r.range(0, 30) * i64::from(r.unit() < 0.2);
            burst = if burst == 0 && r.unit() < 0.05 {
                r.range(1, 8)
            } else {
                (burst - 1).max(0)
            };
            let disk = if burst > 0 {
                r.range(0, 5000) * 4096
            } else {
                0
            };
            let net = if burst > 0 {
                r.range(1_000_000, 50_000_000)
            } else {
                r.range(2_000, 30_000)
            };
            est = (est + r.range(-3, 3) * i64::from(r.unit() < 0.3)).max(0);
            tw = (tw + r.range(-4, 4)).clamp(0, 200);
            procs += r.range(-2, 2) * i64::from(r.unit() < 0.2);
            if i % 5 == 0 {
                let running = busy.max(0.0) / 100.0 * 8.0;
                for (l, a) in load.iter_mut().zip([0.92, 0.983, 0.994]) {
                    *l = *l * a + running * (1.0 - a);
                }
            }
            heap += 10e6 + 3e6 * r.noise();
            if heap > 1.8e9 {
                heap = 250e6 + 20e6 * r.unit();
                gcs += 1.0;
            }
            let row = [
                pct(busy),
                pct(busy * 0.7 + r.noise()),
                pct(iowait),
                if r.unit() < 0.03 {
                    pct(0.1 * r.unit())
                } else {
                    0.0
                },
                used as f64 * 4096.0,
                cached as f64 * 4096.0,
                17_179_869_184.0 - (used + cached / 2) as f64 * 4096.0,
                134_217_728.0,
                (disk / 3) as f64,
                disk as f64,
                net as f64,
                (net / 7) as f64,
                est as f64,
                tw as f64,
                pct(load[0]),
                pct(load[1]),
                pct(load[2]),
                12.0,
                4.0,
                procs as f64,
                (heap as i64 / 8 * 8) as f64,
                gcs,
                87.0,
                f64::NAN,
                f64::NAN,
            ];
            for (c, v) in cols.iter_mut().zip(row) {
                c.push(v);
            }
        }
        block(ts, names.into_iter().zip(cols).collect())
    }

    fn assert_same(a: &Block, b: &Block) {
        assert_eq!(a.ts, b.ts);
        assert_eq!(a.columns.len(), b.columns.len());
        for (x, y) in a.columns.iter().zip(&b.columns) {
            assert_eq!(x.name, y.name);
            let xb: Vec<u64> = x.values.iter().map(|v| v.to_bits()).collect();
            let yb: Vec<u64> = y.values.iter().map(|v| v.to_bits()).collect();
            assert_eq!(xb, yb, "column {}", x.name);
        }
    }

    fn round_trip(b: &Block) -> Vec<u8> {
        let bytes = encode(b).unwrap();
        assert_same(b, &decode(&bytes).unwrap());
        bytes
    }

    /// Wraps a hand-made payload as encode would, to reach the payload
    /// parser past the zstd checksum.
    fn wrap(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend(zstd::bulk::compress(payload, 1).unwrap());
        out
    }

    fn payload_of(bytes: &[u8]) -> Vec<u8> {
        zstd::bulk::decompress(&bytes[1..], MAX_PAYLOAD).unwrap()
    }

    #[test]
    fn empty_blocks_round_trip() {
        round_trip(&block(vec![], vec![]));
        round_trip(&block(vec![], vec![("a", vec![]), ("", vec![])]));
        round_trip(&block(vec![1, 2, 3], vec![]));
    }

    #[test]
    fn one_point_round_trips() {
        for v in [
            0.0,
            -0.0,
            1.5,
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE / 4.0,
        ] {
            round_trip(&block(vec![1_760_000_000_000], vec![("x", vec![v])]));
        }
        round_trip(&block(vec![i64::MIN], vec![("x", vec![42.0])]));
    }

    #[test]
    fn realistic_hosts_round_trip_within_budget() {
        let (mut bytes, mut values) = (0, 0);
        for seed in 0..5 {
            let b = host(seed, 600);
            bytes += round_trip(&b).len();
            values += b.ts.len() * b.columns.len();
        }
        let per_value = bytes as f64 / values as f64;
        // The store's budget is 1.5; this data measures ~0.95.
        assert!(per_value < 1.2, "{per_value} bytes per value");
    }

    #[test]
    fn agent_values_take_the_decimal_encodings() {
        let b = host(7, 60);
        let payload = payload_of(&encode(&b).unwrap());
        let mut r = Reader {
            data: &payload,
            bit: 0,
        };
        let (n, ncol) = (r.varint().unwrap() as usize, r.varint().unwrap() as usize);
        for _ in 0..ncol {
            let len = r.varint().unwrap() as usize;
            r.bytes(len).unwrap();
        }
        for _ in 0..n {
            r.varint().unwrap();
        }
        let mut tags = Vec::new();
        for c in &b.columns {
            let tag = r.u8().unwrap();
            tags.push((c.name.as_str(), tag));
            if tag == TAG_XOR {
                let mut v = Vec::new();
                xor_decode(&mut r, n, &mut v).unwrap();
                r.align();
            } else {
                r.u8().unwrap();
                for _ in 0..n {
                    r.varint().unwrap();
                }
            }
        }
        assert!(tags.contains(&("cpu_busy_pct", TAG_DECIMAL32)), "{tags:?}");
        assert!(tags.contains(&("mem_used_bytes", TAG_DECIMAL)), "{tags:?}");
        assert!(tags.contains(&("gpu_util_pct", TAG_XOR)), "{tags:?}");
    }

    #[test]
    fn jittered_and_gapped_timestamps_round_trip() {
        let mut r = Rng(1);
        let mut t = 1_760_000_000_000i64;
        let mut ts = Vec::new();
        for i in 0..3000 {
            t += 1000 + r.range(-7, 7);
            if i % 700 == 699 {
                t += 5 * 3_600_000 + r.range(0, 999); // host offline for hours
            }
            ts.push(t);
        }
        let values = (0..ts.len()).map(|i| i as f64).collect();
        round_trip(&block(ts, vec![("x", values)]));
        // Deltas that overflow i64 must still come back, through wrapping.
        round_trip(&block(vec![i64::MIN, -1, 0, 1, i64::MAX], vec![]));
        round_trip(&block(vec![i64::MIN, i64::MAX], vec![]));
    }

    #[test]
    fn special_values_round_trip() {
        let quiet_payload = f64::from_bits(0x7ff8_0000_dead_beef);
        let signalling = f64::from_bits(0x7ff0_0000_0000_0001);
        let neg_nan = f64::from_bits(0xfff8_0000_0000_0000);
        let f32_nan = f64::from(f32::from_bits(0x7fc0_1234));
        let specials = vec![
            f64::NAN,
            quiet_payload,
            signalling,
            neg_nan,
            f32_nan,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::EPSILON,
        ];
        let n = specials.len();
        let ts: Vec<i64> = (0..n as i64).collect();
        round_trip(&block(
            ts.clone(),
            vec![
                ("specials", specials.clone()),
                ("all_nan", vec![f64::NAN; n]),
                ("payload_nan", vec![quiet_payload; n]),
                ("neg_zero", vec![-0.0; n]),
                (
                    "half_nan",
                    (0..n)
                        .map(|i| if i % 2 == 0 { 12.5 } else { f64::NAN })
                        .collect(),
                ),
                (
                    "ints_then_nan",
                    (0..n)
                        .map(|i| if i < n - 1 { i as f64 } else { f64::NAN })
                        .collect(),
                ),
            ],
        ));
    }

    #[test]
    fn decimal_lookalikes_round_trip() {
        let n = 9;
        let ts: Vec<i64> = (0..n as i64).collect();
        let cols = vec![
            (
                "f32_pct",
                (0..n).map(|i| f64::from(i as f32 * 11.11)).collect(),
            ),
            (
                "f64_2dp",
                (0..n).map(|i| (i as f64 * 1111.0 + 7.0) / 100.0).collect(),
            ),
            ("near_miss", (0..n).map(|i| i as f64 * 0.1 + 0.2).collect()),
            (
                "one_ulp_off",
                (0..n)
                    .map(|i| f64::from_bits((i as f64 / 100.0).to_bits() + 1))
                    .collect(),
            ),
            (
                "huge_ints",
                (0..n).map(|i| 2f64.powi(62) - (i * 1024) as f64).collect(),
            ),
            (
                "beyond_i64",
                (0..n).map(|i| 1e19 * (i + 1) as f64).collect(),
            ),
            (
                "big_and_negative",
                (0..n)
                    .map(|i| if i % 2 == 0 { -9.0e15 } else { 9.0e15 })
                    .collect(),
            ),
            ("seven_decimals", (0..n).map(|i| i as f64 * 1e-7).collect()),
            (
                "subnormal_f32",
                (0..n)
                    .map(|i| f64::from(f32::from_bits(i as u32 + 1)))
                    .collect(),
            ),
        ];
        round_trip(&block(ts, cols));
    }

    #[test]
    fn random_bit_patterns_round_trip() {
        let mut r = Rng(2);
        let n = 2000;
        let ts: Vec<i64> = (0..n as i64).map(|i| i * 997).collect();
        let random = (0..n).map(|_| f64::from_bits(r.u64())).collect();
        let random_f32 = (0..n)
            .map(|_| f64::from(f32::from_bits(r.u64() as u32)))
            .collect();
        let sparse = (0..n)
            .map(|_| f64::from_bits(r.u64() & r.u64() & r.u64()))
            .collect();
        round_trip(&block(
            ts,
            vec![
                ("random", random),
                ("random_f32", random_f32),
                ("sparse", sparse),
            ],
        ));
    }

    #[test]
    fn constant_columns_round_trip_small() {
        let n = 600;
        let ts: Vec<i64> = (0..n as i64).map(|i| i * 1000).collect();
        let b = block(
            ts,
            vec![
                ("zero", vec![0.0; n]),
                ("ports", vec![12.0; n]),
                ("pi", vec![std::f64::consts::PI; n]),
                ("nan", vec![f64::NAN; n]),
            ],
        );
        let bytes = round_trip(&b);
        assert!(bytes.len() < 100, "{} bytes", bytes.len());
    }

    #[test]
    fn encode_refuses_invalid_blocks() {
        let err = encode(&block(vec![1, 2, 2], vec![])).unwrap_err();
        assert!(
            matches!(err, CodecError::TimestampsNotIncreasing { index: 2 }),
            "{err}"
        );
        let err = encode(&block(vec![5, 4], vec![])).unwrap_err();
        assert!(
            matches!(err, CodecError::TimestampsNotIncreasing { index: 1 }),
            "{err}"
        );
        let err = encode(&block(vec![1, 2], vec![("x", vec![1.0])])).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::LengthMismatch {
                    expected: 2,
                    got: 1,
                    ..
                }
            ),
            "{err}"
        );
        let long = "n".repeat(MAX_NAME_LEN + 1);
        let err = encode(&block(vec![1], vec![(&long, vec![1.0])])).unwrap_err();
        assert!(matches!(err, CodecError::NameTooLong { .. }), "{err}");
        round_trip(&block(vec![1], vec![(&long[1..], vec![1.0])]));
        let ts: Vec<i64> = (0..=MAX_POINTS as i64).collect();
        let err = encode(&block(ts, vec![])).unwrap_err();
        assert!(matches!(err, CodecError::TooManyPoints { .. }), "{err}");
        let many = vec![("c", vec![]); MAX_COLUMNS + 1];
        let err = encode(&block(vec![], many)).unwrap_err();
        assert!(matches!(err, CodecError::TooManyColumns { .. }), "{err}");
        let ts: Vec<i64> = (0..MAX_POINTS as i64).collect();
        let wide = vec![("c", vec![0.0; MAX_POINTS]); MAX_VALUES / MAX_POINTS + 1];
        let err = encode(&block(ts, wide)).unwrap_err();
        assert!(matches!(err, CodecError::TooManyValues { .. }), "{err}");
    }

    #[test]
    fn decode_refuses_bad_headers() {
        assert!(matches!(decode(&[]), Err(CodecError::Empty)));
        let mut bytes = encode(&host(3, 10)).unwrap();
        bytes[0] = 2;
        assert!(matches!(
            decode(&bytes),
            Err(CodecError::UnsupportedVersion(2))
        ));
        bytes[0] = VERSION;
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(CodecError::Corrupt(_))));

        let mut huge = Vec::new();
        put_varint(&mut huge, 1 << 40);
        put_varint(&mut huge, 1);
        let err = decode(&wrap(&huge)).unwrap_err();
        assert!(
            matches!(err, CodecError::TooManyPoints { got, .. } if got == 1 << 40),
            "{err}"
        );

        // Counts within the limits but more than the payload can hold.
        let mut lying = Vec::new();
        put_varint(&mut lying, MAX_POINTS as u64);
        put_varint(&mut lying, 4);
        assert!(matches!(decode(&wrap(&lying)), Err(CodecError::Corrupt(_))));
        let mut too_many = Vec::new();
        put_varint(&mut too_many, MAX_POINTS as u64);
        put_varint(&mut too_many, MAX_COLUMNS as u64);
        assert!(matches!(
            decode(&wrap(&too_many)),
            Err(CodecError::TooManyValues { .. })
        ));

        // A frame header claiming 1 GiB is refused before any allocation.
        let mut bomb = vec![VERSION, 0x28, 0xb5, 0x2f, 0xfd, 0x80, 0x50];
        bomb.extend_from_slice(&(1u32 << 30).to_le_bytes());
        bomb.extend_from_slice(&[0; 8]);
        let err = decode(&bomb).unwrap_err();
        assert!(
            matches!(err, CodecError::Corrupt("payload larger than the limit")),
            "{err}"
        );

        // A frame that records no size is refused too: its size is unknown
        // until it has been inflated.
        let mut zstd = zstd::bulk::Compressor::new(3).unwrap();
        zstd.include_contentsize(false).unwrap();
        let mut bytes = vec![VERSION];
        bytes.extend(
            zstd.compress(&payload_of(&encode(&host(3, 10)).unwrap()))
                .unwrap(),
        );
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(err, CodecError::Corrupt("zstd frame without content size")),
            "{err}"
        );
    }

    #[test]
    fn decode_refuses_bad_payloads() {
        let good = payload_of(&encode(&host(4, 3)).unwrap());
        assert!(decode(&wrap(&good)).is_ok());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            decode(&wrap(&trailing)),
            Err(CodecError::Corrupt(_))
        ));
        for len in 0..good.len() {
            let err = decode(&wrap(&good[..len])).unwrap_err();
            assert!(matches!(err, CodecError::Corrupt(_)), "length {len}: {err}");
        }
        for (payload, why) in [
            (vec![2, 0, 5, 0], "equal timestamps"),
            (vec![0, 1, 1, 0xff], "name not UTF-8"),
            (vec![1, 1, 0, 0, 9], "unknown tag"),
            (vec![1, 1, 0, 0, TAG_DECIMAL, 7, 0], "scale"),
            (
                vec![1, 1, 0, 0, TAG_XOR, 0b1100_0001, 0b1111_1100],
                "window",
            ),
            (
                vec![
                    1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                ],
                "varint",
            ),
        ] {
            let err = decode(&wrap(&payload)).unwrap_err();
            assert!(matches!(err, CodecError::Corrupt(_)), "{why}: {err}");
        }
    }

    #[test]
    fn truncation_at_every_length_is_an_error() {
        let bytes = encode(&host(5, 600)).unwrap();
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn damaged_input_never_panics() {
        let mut r = Rng(6);
        let bytes = encode(&host(6, 40)).unwrap();
        let payload = payload_of(&bytes);
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            let result = catch_unwind(|| decode(&b).is_ok());
            assert!(result.is_ok(), "panic with bit {i} of the block flipped");
        }
        // zstd's checksum stops most damage above; this reaches the parser.
        for i in 0..payload.len() * 8 {
            let mut p = payload.clone();
            p[i / 8] ^= 1 << (i % 8);
            let b = wrap(&p);
            assert!(
                catch_unwind(|| decode(&b)).is_ok(),
                "panic with payload bit {i} flipped"
            );
        }
        for _ in 0..2000 {
            let len = r.range(0, 300) as usize;
            let mut noise: Vec<u8> = (0..len).map(|_| r.u64() as u8).collect();
            assert!(catch_unwind(|| decode(&noise).is_err()).unwrap());
            if let Some(first) = noise.first_mut() {
                *first = VERSION;
            }
            assert!(catch_unwind(|| decode(&noise).is_err()).unwrap());
            let b = wrap(&noise);
            assert!(
                catch_unwind(|| decode(&b)).is_ok(),
                "panic on payload {noise:?}"
            );
        }
    }
}
