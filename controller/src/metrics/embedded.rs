//! The embedded metric store, the default: no service to run.
//!
//! Per host, samples accumulate in an open 10-minute raw block (one
//! timestamp column, one value column per field). When a window closes the
//! block is compressed ([`super::codec`]) into a SQLite BLOB and rolled up
//! into the host's open per-minute block (avg/min/max/last per field),
//! which in turn rolls into an hourly block at the end of each day. Open
//! blocks are written back every [`EmbeddedStore::flush`] (each second) so
//! a crash loses at most that much, and the gateway acknowledges batches
//! to agents only after that. Retention is per resolution; pruning deletes
//! whole blocks in small transactions so writes never wait long.
//!
//! Queries pick the finest resolution that keeps a chart under its point
//! budget and that retention still holds, read sealed blocks plus the open
//! ones (rolled up on the fly), and bucket further if needed.
//!
//! Knows hosts only by id: groups and rooms are resolved by the caller at
//! query time, so moving a host never splits its series.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::codec::{self, Block, Column};

/// Samples further in the future than this are refused (clock trouble).
const MAX_FUTURE_MS: i64 = 5 * 60_000;
/// See [`EmbeddedStore::pick_resolution`].
const OVERSAMPLE: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    Raw,
    Minute,
    Hour,
}

impl Resolution {
    fn code(self) -> i64 {
        match self {
            Resolution::Raw => 0,
            Resolution::Minute => 1,
            Resolution::Hour => 2,
        }
    }

    /// Span of one stored block.
    fn block_ms(self) -> i64 {
        match self {
            Resolution::Raw => 600_000,
            Resolution::Minute => 86_400_000,
            Resolution::Hour => 30 * 86_400_000,
        }
    }

    /// Spacing of points (raw: the usual 1 s sampling).
    pub fn step_ms(self) -> i64 {
        match self {
            Resolution::Raw => 1_000,
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
        }
    }

    fn coarser(self) -> Option<Resolution> {
        match self {
            Resolution::Raw => Some(Resolution::Minute),
            Resolution::Minute => Some(Resolution::Hour),
            Resolution::Hour => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub raw_days: u32,
    pub minute_days: u32,
    pub hour_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw_days: 3,
            minute_days: 30,
            hour_days: 365,
        }
    }
}

impl Retention {
    pub fn of(&self, r: Resolution) -> i64 {
        let days = match r {
            Resolution::Raw => self.raw_days,
            Resolution::Minute => self.minute_days,
            Resolution::Hour => self.hour_days,
        };
        i64::from(days) * 86_400_000
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metric database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored block unreadable: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("{0}")]
    Rejected(String),
    #[error("bad query: {0}")]
    BadQuery(String),
}

/// What happened to an appended sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored,
    /// Not newer than what the host already has (a replay): ignored.
    Duplicate,
}

/// Series answering a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    pub resolution: Resolution,
    /// Spacing of the returned points.
    pub step_ms: i64,
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub field: String,
    /// (Unix ms, value). For rollups the value is the bucket's average.
    pub points: Vec<(i64, f64)>,
}

/// A block being filled.
#[derive(Debug, Clone)]
struct OpenBlock {
    start: i64,
    ts: Vec<i64>,
    cols: Vec<Column>,
    index: HashMap<String, usize>,
    dirty: bool,
}

impl OpenBlock {
    fn new(start: i64) -> OpenBlock {
        OpenBlock {
            start,
            ts: Vec::new(),
            cols: Vec::new(),
            index: HashMap::new(),
            dirty: true,
        }
    }

    fn from_block(start: i64, b: Block) -> OpenBlock {
        let index = b
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        OpenBlock {
            start,
            ts: b.ts,
            cols: b.columns,
            index,
            dirty: false,
        }
    }

    fn push(&mut self, ts: i64, fields: &[(String, f64)]) {
        let n = self.ts.len();
        self.ts.push(ts);
        for c in &mut self.cols {
            c.values.push(f64::NAN);
        }
        for (name, v) in fields {
            let i = match self.index.get(name) {
                Some(i) => *i,
                None => {
                    self.cols.push(Column {
                        name: name.clone(),
                        values: vec![f64::NAN; n + 1],
                    });
                    self.index.insert(name.clone(), self.cols.len() - 1);
                    self.cols.len() - 1
                }
            };
            self.cols[i].values[n] = *v;
        }
        self.dirty = true;
    }

    fn append_block(&mut self, b: &Block) {
        for (row, ts) in b.ts.iter().enumerate() {
            self.push(*ts, &row_fields(b, row));
        }
    }

    fn to_block(&self) -> Block {
        Block {
            ts: self.ts.clone(),
            columns: self.cols.clone(),
        }
    }
}

/// The present (non-NaN) fields of one row of a block.
fn row_fields(b: &Block, row: usize) -> Vec<(String, f64)> {
    b.columns
        .iter()
        .filter(|c| !c.values[row].is_nan())
        .map(|c| (c.name.clone(), c.values[row]))
        .collect()
}

/// Aggregates a block into buckets of `step` ms. Raw columns `x` become
/// `x:avg`, `x:min`, `x:max`, `x:last`; columns that already are rollups
/// (`x:avg`, ...) are combined by their own kind (mean of means, min of
/// mins, ...). Missing values (NaN) are skipped; an empty bucket stays out.
fn rollup(b: &Block, step: i64) -> Block {
    let mut buckets: Vec<(i64, usize, usize)> = Vec::new(); // (start, first row, end row)
    for (row, ts) in b.ts.iter().enumerate() {
        let start = ts - ts.rem_euclid(step);
        match buckets.last_mut() {
            Some(last) if last.0 == start => last.2 = row + 1,
            _ => buckets.push((start, row, row + 1)),
        }
    }
    let ts: Vec<i64> = buckets.iter().map(|b| b.0).collect();
    let mut columns = Vec::new();
    for c in &b.columns {
        let kinds: &[&str] = match c.name.rsplit_once(':') {
            Some((_, k)) if ["avg", "min", "max", "last"].contains(&k) => &[""],
            _ => &["avg", "min", "max", "last"],
        };
        for kind in kinds {
            let (name, kind) = if kind.is_empty() {
                let k = c.name.rsplit_once(':').map_or("avg", |x| x.1);
                (c.name.clone(), k)
            } else {
                (format!("{}:{kind}", c.name), *kind)
            };
            let values = buckets
                .iter()
                .map(|&(_, a, z)| {
                    let mut vals = c.values[a..z].iter().copied().filter(|v| !v.is_nan());
                    match kind {
                        "min" => vals.fold(f64::NAN, f64::min),
                        "max" => vals.fold(f64::NAN, f64::max),
                        "last" => vals.next_back().unwrap_or(f64::NAN),
                        _ => {
                            let (sum, n) = vals.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
                            if n == 0 { f64::NAN } else { sum / f64::from(n) }
                        }
                    }
                })
                .collect();
            columns.push(Column { name, values });
        }
    }
    Block { ts, columns }
}

#[derive(Debug, Default)]
struct HostBlocks {
    open: HashMap<Resolution, OpenBlock>,
    last_ts: i64,
}

pub struct EmbeddedStore {
    db: Mutex<Connection>,
    hosts: Mutex<HashMap<String, HostBlocks>>,
    retention: Retention,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const ALL: [Resolution; 3] = [Resolution::Raw, Resolution::Minute, Resolution::Hour];

impl EmbeddedStore {
    /// Opens (or creates) the store and reloads the blocks that were open.
    pub fn open(path: &Path, retention: Retention) -> Result<EmbeddedStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS metric_blocks (
                host     TEXT NOT NULL,
                res      INTEGER NOT NULL,
                start_ms INTEGER NOT NULL,
                end_ms   INTEGER NOT NULL,
                sealed   INTEGER NOT NULL,
                data     BLOB NOT NULL,
                PRIMARY KEY (host, res, start_ms)
             ) WITHOUT ROWID;",
        )?;
        let mut hosts: HashMap<String, HostBlocks> = HashMap::new();
        {
            let mut st = conn
                .prepare("SELECT host, res, start_ms, data FROM metric_blocks WHERE sealed = 0")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })?;
            for row in rows {
                let (host, res, start, data) = row?;
                let Some(res) = ALL.into_iter().find(|r| r.code() == res) else {
                    continue;
                };
                let block = codec::decode(&data)?;
                let h = hosts.entry(host).or_default();
                if res == Resolution::Raw {
                    h.last_ts = h.last_ts.max(block.ts.last().copied().unwrap_or(0));
                }
                h.open.insert(res, OpenBlock::from_block(start, block));
            }
        }
        // Hosts whose open raw block was sealed still know their newest point.
        {
            let mut st = conn.prepare(
                "SELECT host, MAX(end_ms) FROM metric_blocks WHERE res = 0 AND sealed = 1 GROUP BY host",
            )?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (host, end) = row?;
                let h = hosts.entry(host).or_default();
                h.last_ts = h.last_ts.max(end - 1);
            }
        }
        Ok(EmbeddedStore {
            db: Mutex::new(conn),
            hosts: Mutex::new(hosts),
            retention,
        })
    }

    /// Adds one sample's fields. Refuses timestamps too far in the future
    /// or older than raw retention; ignores what is not newer than the
    /// host's newest sample (replays).
    pub fn append(
        &self,
        host: &str,
        ts: i64,
        fields: &[(String, f64)],
    ) -> Result<Appended, StoreError> {
        let now = now_ms();
        if ts > now + MAX_FUTURE_MS {
            return Err(StoreError::Rejected(format!(
                "sample of {host} is {} s in the future (check the host's clock)",
                (ts - now) / 1000
            )));
        }
        if ts < now - self.retention.of(Resolution::Raw) {
            return Err(StoreError::Rejected(format!(
                "sample of {host} is older than the raw retention ({} days)",
                self.retention.raw_days
            )));
        }
        let mut hosts = self.hosts.lock().expect("store lock");
        let h = hosts.entry(host.to_string()).or_default();
        if ts <= h.last_ts {
            return Ok(Appended::Duplicate);
        }
        h.last_ts = ts;
        let mut sealed = Vec::new();
        let fields: Vec<(String, f64)> = fields
            .iter()
            .filter(|(_, v)| v.is_finite())
            .cloned()
            .collect();
        push_at(h, Resolution::Raw, ts, &fields, &mut sealed);
        drop(hosts);
        if !sealed.is_empty() {
            let mut db = self.db.lock().expect("store db lock");
            let tx = db.transaction()?;
            for (res, block) in sealed {
                write_block(&tx, host, res, &block, true)?;
            }
            tx.commit()?;
        }
        Ok(Appended::Stored)
    }

    /// Writes every changed open block, so a restart resumes them.
    pub fn flush(&self) -> Result<(), StoreError> {
        let dirty: Vec<(String, Resolution, OpenBlock)> = {
            let mut hosts = self.hosts.lock().expect("store lock");
            let mut v = Vec::new();
            for (host, h) in hosts.iter_mut() {
                for (res, b) in h.open.iter_mut() {
                    if b.dirty {
                        b.dirty = false;
                        v.push((host.clone(), *res, b.clone()));
                    }
                }
            }
            v
        };
        if dirty.is_empty() {
            return Ok(());
        }
        let mut db = self.db.lock().expect("store db lock");
        let tx = db.transaction()?;
        for (host, res, b) in &dirty {
            write_block(&tx, host, *res, b, false)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes blocks past their resolution's retention; returns how many.
    pub fn prune(&self, now: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        for res in ALL {
            let cutoff = now - self.retention.of(res);
            loop {
                // Small transactions: a writer never waits long behind us.
                let db = self.db.lock().expect("store db lock");
                let deleted = db.execute(
                    "DELETE FROM metric_blocks WHERE (host, res, start_ms) IN
                       (SELECT host, res, start_ms FROM metric_blocks WHERE res = ?1 AND sealed = 1 AND end_ms <= ?2 LIMIT 500)",
                    params![res.code(), cutoff],
                )?;
                n += deleted;
                if deleted < 500 {
                    break;
                }
            }
        }
        Ok(n)
    }

    /// Total size of the stored blocks, in bytes.
    pub fn stored_bytes(&self) -> Result<u64, StoreError> {
        let db = self.db.lock().expect("store db lock");
        Ok(db.query_row(
            "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM metric_blocks",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// The resolution a chart of `max_points` over [from, to) should use.
    /// A finer resolution is kept while it has at most [`OVERSAMPLE`] times
    /// the budget: its points are then averaged into buckets, which keeps
    /// detail a coarser rollup would lose (an hour at 2 000 points is 2 s
    /// buckets of raw data, not 60 minute averages).
    pub fn pick_resolution(&self, from: i64, to: i64, max_points: usize, now: i64) -> Resolution {
        let span = (to - from).max(1);
        let budget = max_points as i64 * OVERSAMPLE;
        let mut res = Resolution::Raw;
        while span / res.step_ms() > budget || from < now - self.retention.of(res) {
            match res.coarser() {
                Some(c) => res = c,
                None => break,
            }
        }
        res
    }

    /// Fields of one host over [from, to), at most `max_points` each.
    pub fn query(
        &self,
        host: &str,
        fields: &[&str],
        from: i64,
        to: i64,
        max_points: usize,
    ) -> Result<QueryResult, StoreError> {
        check_range(from, to, max_points)?;
        let res = self.pick_resolution(from, to, max_points, now_ms());
        let blocks = self.blocks(host, res, from, to)?;
        let col_name = |f: &str| {
            if res == Resolution::Raw {
                f.to_string()
            } else {
                format!("{f}:avg")
            }
        };
        let step = bucket_step(from, to, max_points, res);
        let series = fields
            .iter()
            .map(|f| {
                let name = col_name(f);
                let mut points = Vec::new();
                for b in &blocks {
                    if let Some(c) = b.columns.iter().find(|c| c.name == name) {
                        for (t, v) in b.ts.iter().zip(&c.values) {
                            if *t >= from && *t < to && !v.is_nan() {
                                points.push((*t, *v));
                            }
                        }
                    }
                }
                Series {
                    field: f.to_string(),
                    points: bucket(points, step, res.step_ms()),
                }
            })
            .collect();
        Ok(QueryResult {
            resolution: res,
            step_ms: step.max(res.step_ms()),
            series,
        })
    }

    /// The mean of each of `fields` over `hosts` per bucket: each host's
    /// bucket mean first, then their mean, so one host sampling faster does
    /// not weigh more. Hosts without data in a bucket are left out of it.
    /// Each host's blocks are read once for all the fields.
    pub fn query_mean(
        &self,
        hosts: &[&str],
        fields: &[&str],
        from: i64,
        to: i64,
        max_points: usize,
    ) -> Result<QueryResult, StoreError> {
        check_range(from, to, max_points)?;
        let res = self.pick_resolution(from, to, max_points, now_ms());
        let step = bucket_step(from, to, max_points, res).max(res.step_ms());
        let mut sums: Vec<std::collections::BTreeMap<i64, (f64, u32)>> =
            vec![Default::default(); fields.len()];
        for host in hosts {
            let r = self.query(host, fields, from, to, max_points)?;
            for (sum, series) in sums.iter_mut().zip(r.series) {
                for (t, v) in bucket(series.points, step, step) {
                    let e = sum.entry(t).or_default();
                    e.0 += v;
                    e.1 += 1;
                }
            }
        }
        let series = fields
            .iter()
            .zip(sums)
            .map(|(field, sum)| Series {
                field: field.to_string(),
                points: sum
                    .into_iter()
                    .map(|(t, (s, n))| (t, s / f64::from(n)))
                    .collect(),
            })
            .collect();
        Ok(QueryResult {
            resolution: res,
            step_ms: step,
            series,
        })
    }

    /// Decoded blocks of `host` at `res` overlapping [from, to), oldest
    /// first, including the open data rolled up to `res`.
    fn blocks(
        &self,
        host: &str,
        res: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<Block>, StoreError> {
        let mut out = Vec::new();
        {
            let db = self.db.lock().expect("store db lock");
            let mut st = db.prepare_cached(
                "SELECT data FROM metric_blocks WHERE host = ?1 AND res = ?2 AND sealed = 1
                 AND start_ms < ?4 AND end_ms > ?3 ORDER BY start_ms",
            )?;
            let rows = st.query_map(params![host, res.code(), from, to], |r| {
                r.get::<_, Vec<u8>>(0)
            })?;
            for data in rows {
                out.push(codec::decode(&data?)?);
            }
        }
        let hosts = self.hosts.lock().expect("store lock");
        if let Some(h) = hosts.get(host) {
            // Finer open data, rolled up step by step to `res`.
            let mut carried: Option<Block> = None;
            for r in ALL {
                let mut b = match h.open.get(&r) {
                    Some(o) => o.to_block(),
                    None => Block {
                        ts: Vec::new(),
                        columns: Vec::new(),
                    },
                };
                if let Some(c) = carried.take() {
                    let mut ob = OpenBlock::from_block(0, b);
                    ob.append_block(&c);
                    b = ob.to_block();
                }
                if r == res {
                    out.push(b);
                    break;
                }
                let next = r.coarser().expect("res is coarser");
                carried = Some(rollup(&b, next.step_ms()));
            }
        }
        Ok(out)
    }
}

/// Pushes a row into the host's open block at `res`, sealing (and rolling
/// up) the block it leaves behind.
fn push_at(
    h: &mut HostBlocks,
    res: Resolution,
    ts: i64,
    fields: &[(String, f64)],
    sealed: &mut Vec<(Resolution, OpenBlock)>,
) {
    let start = ts - ts.rem_euclid(res.block_ms());
    if let Some(open) = h.open.get(&res)
        && open.start != start
    {
        let old = h.open.remove(&res).expect("present");
        if let Some(next) = res.coarser() {
            let up = rollup(&old.to_block(), next.step_ms());
            for (row, t) in up.ts.iter().enumerate() {
                push_at(h, next, *t, &row_fields(&up, row), sealed);
            }
        }
        sealed.push((res, old));
    }
    h.open
        .entry(res)
        .or_insert_with(|| OpenBlock::new(start))
        .push(ts, fields);
}

fn write_block(
    tx: &rusqlite::Transaction<'_>,
    host: &str,
    res: Resolution,
    b: &OpenBlock,
    sealed: bool,
) -> Result<(), StoreError> {
    let data = codec::encode(&b.to_block())?;
    tx.execute(
        "INSERT OR REPLACE INTO metric_blocks (host, res, start_ms, end_ms, sealed, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![host, res.code(), b.start, b.start + res.block_ms(), sealed, data],
    )?;
    Ok(())
}

pub(crate) fn check_range(from: i64, to: i64, max_points: usize) -> Result<(), StoreError> {
    if to <= from {
        return Err(StoreError::BadQuery(format!(
            "end ({to}) is not after start ({from})"
        )));
    }
    if max_points == 0 || max_points > 100_000 {
        return Err(StoreError::BadQuery(
            "max_points must be between 1 and 100000".into(),
        ));
    }
    Ok(())
}

/// Bucket width for a range: buckets are aligned to multiples of the step
/// (so a refreshed chart gets the same buckets), which can split the range
/// into one more bucket than `span / step`, hence `max_points - 1`. Steps
/// over a second are whole seconds.
pub(crate) fn bucket_step(from: i64, to: i64, max_points: usize, res: Resolution) -> i64 {
    let n = (max_points as i64 - 1).max(1);
    let mut step = (to - from + n - 1) / n;
    if step > 1000 {
        step = (step + 999) / 1000 * 1000;
    }
    step.max(res.step_ms())
}

/// Means per `step`-aligned bucket, when points are denser than `step`.
fn bucket(points: Vec<(i64, f64)>, step: i64, native: i64) -> Vec<(i64, f64)> {
    if step <= native {
        return points;
    }
    let mut out: Vec<(i64, f64, u32)> = Vec::new();
    for (t, v) in points {
        let b = t - t.rem_euclid(step);
        match out.last_mut() {
            Some(last) if last.0 == b => {
                last.1 += v;
                last.2 += 1;
            }
            _ => out.push((b, v, 1)),
        }
    }
    out.into_iter()
        .map(|(t, s, n)| (t, s / f64::from(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(i: i64) -> Vec<(String, f64)> {
        vec![
            ("cpu.busy_pct".into(), (i % 100) as f64),
            ("mem.available_bytes".into(), 1e9 + (i * 4096) as f64),
        ]
    }

    /// `n` samples at 1 s ending a minute before now, on a minute boundary.
    fn window(n: i64) -> (i64, i64) {
        let end = now_ms() - 60_000;
        let end = end - end.rem_euclid(60_000);
        (end - n * 1000, end)
    }

    #[test]
    fn raw_points_round_trip_through_seal_flush_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let (from, to) = window(1500); // 25 minutes: crosses raw block windows
        {
            let s = EmbeddedStore::open(&path, Retention::default()).unwrap();
            for i in 0..1500 {
                assert_eq!(
                    s.append("h1", from + i * 1000, &fields(i)).unwrap(),
                    Appended::Stored
                );
            }
            assert_eq!(
                s.append("h1", from, &fields(0)).unwrap(),
                Appended::Duplicate
            );
            s.flush().unwrap();
        }
        let s = EmbeddedStore::open(&path, Retention::default()).unwrap();
        assert_eq!(
            s.append("h1", to - 1000, &fields(0)).unwrap(),
            Appended::Duplicate,
            "replay after restart"
        );
        let r = s
            .query("h1", &["cpu.busy_pct", "nope"], from, to, 2000)
            .unwrap();
        assert_eq!(r.resolution, Resolution::Raw);
        let pts = &r.series[0].points;
        assert_eq!(pts.len(), 1500);
        assert_eq!(pts[0], (from, 0.0));
        assert_eq!(pts[1499], (from + 1_499_000, 99.0));
        assert!(r.series[1].points.is_empty());
        assert!(
            s.query("h2", &["cpu.busy_pct"], from, to, 2000)
                .unwrap()
                .series[0]
                .points
                .is_empty()
        );
    }

    #[test]
    fn long_ranges_use_rollups_that_average_correctly() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("m.db"), Retention::default()).unwrap();
        let (from, to) = window(3 * 3600);
        for i in 0..3 * 3600 {
            s.append("h", from + i * 1000, &fields(i)).unwrap();
        }
        let r = s.query("h", &["cpu.busy_pct"], from, to, 500).unwrap();
        assert_eq!(r.resolution, Resolution::Minute);
        let pts = &r.series[0].points;
        assert!(pts.len() <= 500, "{}", pts.len());
        // An hour at 2000 points: raw data in 2 s buckets, not 60 minutes.
        let hour = s
            .query("h", &["cpu.busy_pct"], to - 3_600_000, to, 2000)
            .unwrap();
        assert_eq!(hour.resolution, Resolution::Raw);
        assert_eq!(hour.step_ms, 2000);
        let n = hour.series[0].points.len();
        assert!((1800..=1801).contains(&n), "{n}");
        // Each bucket is the mean of the raw points inside it.
        for &(t, v) in &hour.series[0].points[..50] {
            let inside: Vec<f64> = (0..3 * 3600)
                .filter(|i| {
                    (t..t + hour.step_ms).contains(&(from + i * 1000))
                        && from + i * 1000 >= to - 3_600_000
                })
                .map(|i| (i % 100) as f64)
                .collect();
            let mean = inside.iter().sum::<f64>() / inside.len() as f64;
            assert!((v - mean).abs() < 1e-9, "bucket {t}: {v} vs {mean}");
        }
        // Minute k holds i = 60k..60k+59; (i % 100) averages computed directly:
        let expect = |k: i64| (60 * k..60 * k + 60).map(|i| (i % 100) as f64).sum::<f64>() / 60.0;
        let first_minute = s
            .query("h", &["cpu.busy_pct"], from, from + 60 * 60_000 * 3, 200)
            .unwrap();
        assert_eq!(first_minute.resolution, Resolution::Minute);
        let p = &first_minute.series[0].points;
        assert_eq!(p[0].0, from);
        assert!((p[0].1 - expect(0)).abs() < 1e-9);
        assert!((p[7].1 - expect(7)).abs() < 1e-9);
        // Raw still answers short ranges inside it.
        let raw = s
            .query("h", &["cpu.busy_pct"], from, from + 120_000, 2000)
            .unwrap();
        assert_eq!(raw.resolution, Resolution::Raw);
        assert_eq!(raw.series[0].points.len(), 120);
    }

    #[test]
    fn group_means_weigh_hosts_equally() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("m.db"), Retention::default()).unwrap();
        let (from, to) = window(600);
        for i in 0..600 {
            s.append("a", from + i * 1000, &[("cpu.busy_pct".into(), 10.0)])
                .unwrap();
            if i % 2 == 0 {
                s.append("b", from + i * 1000, &[("cpu.busy_pct".into(), 30.0)])
                    .unwrap();
            }
        }
        let r = s
            .query_mean(&["a", "b", "c"], &["cpu.busy_pct"], from, to, 10)
            .unwrap();
        let pts = &r.series[0].points;
        assert!((9..=10).contains(&pts.len()), "{}", pts.len());
        assert!(pts.iter().all(|(_, v)| (*v - 20.0).abs() < 1e-9), "{pts:?}");
    }

    #[test]
    fn bad_samples_and_bad_queries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("m.db"), Retention::default()).unwrap();
        let now = now_ms();
        assert!(
            matches!(s.append("h", now + 3_600_000, &fields(1)), Err(StoreError::Rejected(m)) if m.contains("future"))
        );
        assert!(
            matches!(s.append("h", now - 10 * 86_400_000, &fields(1)), Err(StoreError::Rejected(m)) if m.contains("older"))
        );
        s.append(
            "h",
            now,
            &[
                ("x".into(), f64::NAN),
                ("y".into(), f64::INFINITY),
                ("z".into(), 1.0),
            ],
        )
        .unwrap();
        let r = s
            .query("h", &["x", "y", "z"], now - 1000, now + 1000, 10)
            .unwrap();
        assert!(r.series[0].points.is_empty() && r.series[1].points.is_empty());
        assert_eq!(r.series[2].points, vec![(now, 1.0)]);
        assert!(matches!(
            s.query("h", &["z"], now, now - 1, 10),
            Err(StoreError::BadQuery(_))
        ));
        assert!(matches!(
            s.query("h", &["z"], now, now + 1, 0),
            Err(StoreError::BadQuery(_))
        ));
        let ten_years = 10 * 365 * 86_400_000;
        let r = s
            .query("h", &["z"], now - ten_years, now + 1000, 2000)
            .unwrap();
        assert_eq!(r.resolution, Resolution::Hour);
    }

    #[test]
    fn pruning_removes_only_expired_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("m.db"), Retention::default()).unwrap();
        let (from, _) = window(1800);
        for i in 0..1800 {
            s.append("h", from + i * 1000, &fields(i)).unwrap();
        }
        s.flush().unwrap();
        assert_eq!(s.prune(now_ms()).unwrap(), 0);
        let before = s.stored_bytes().unwrap();
        assert!(before > 0);
        // Four days later the raw blocks are past their 3-day retention.
        assert!(s.prune(now_ms() + 4 * 86_400_000).unwrap() >= 2);
        assert!(s.stored_bytes().unwrap() < before);
    }
}
