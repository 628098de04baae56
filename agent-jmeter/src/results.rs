//! JMeter's CSV results turned into per-second, per-label summaries.
//!
//! Owns the incremental CSV reader ([`CsvReader`]: bytes in any chunking,
//! complete records out; quoted fields may hold commas, quotes and line
//! breaks), the row model ([`Sample`]), and the aggregation into
//! [`Second`]s with an HDR histogram of elapsed milliseconds. Pure: no
//! files, clocks or processes (the tailer feeds bytes and says what time
//! it is), so tests feed captured text.
//!
//! # Histogram encoding
//! [`Second::hist`] is HdrHistogram's plain V2 encoding (its own zig-zag
//! LEB128 run-length form of the counts, readable by every HdrHistogram
//! port). Not V2+deflate: a one-second histogram holds tens of distinct
//! values and encodes to tens of bytes, which zlib's header and checksum
//! make larger, not smaller, while costing CPU on every second.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// Significant digits of every histogram: 0.1 % relative precision.
pub const SIGFIG: u8 = 3;

/// One sampler label's results in one second (by JMeter's `timeStamp`,
/// the sample's end). A second may arrive in more than one piece when a
/// row is written late (after the second was emitted): consumers add
/// pieces of the same `(unix_sec, label)` (counts sum, histograms merge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Second {
    pub unix_sec: i64,
    pub label: String,
    pub count: u64,
    pub errors: u64,
    pub bytes: u64,
    /// Elapsed milliseconds, HdrHistogram V2 (see the module doc).
    pub hist: Vec<u8>,
}

impl Second {
    /// The decoded histogram.
    pub fn histogram(&self) -> Result<Histogram<u64>, String> {
        Deserializer::new()
            .deserialize(&mut self.hist.as_slice())
            .map_err(|e| format!("bad histogram: {e:?}"))
    }
}

/// An empty histogram of elapsed ms, auto-resizing (a sample can take
/// minutes).
pub fn new_histogram() -> Histogram<u64> {
    // SIGFIG is within hdrhistogram's 0..=5.
    Histogram::new(SIGFIG).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
}

/// V2 bytes of `h`.
pub fn encode(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec only fails on counts the V2 format cannot hold,
    // which a u64 histogram of one second never has.
    let _ = V2Serializer::new().serialize(h, &mut out);
    out
}

/// Incremental CSV (RFC 4180 as JMeter writes it: `"` quotes a field, `""`
/// inside is one quote). Keeps the state of a partial record between
/// [`CsvReader::feed`] calls, so a record cut anywhere (even between two
/// quotes) completes with the next bytes.
#[derive(Debug, Default)]
pub struct CsvReader {
    field: Vec<u8>,
    record: Vec<String>,
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Plain,
    Quoted,
    /// A `"` inside quotes: the end of quoting, or the first of `""`.
    QuoteInQuoted,
}

/// Longest field kept: a response message is short; a runaway field
/// (a file that is not CSV) must not grow memory without bound.
const MAX_FIELD: usize = 64 * 1024;

impl CsvReader {
    /// Parses `bytes`, calling `record` for every completed record.
    pub fn feed(&mut self, bytes: &[u8], mut record: impl FnMut(Vec<String>)) {
        for &b in bytes {
            match (self.state, b) {
                (State::Quoted, b'"') => self.state = State::QuoteInQuoted,
                (State::Quoted, _) => self.push(b),
                (State::QuoteInQuoted, b'"') => {
                    self.push(b'"');
                    self.state = State::Quoted;
                }
                (State::Plain, b'"') if self.field.is_empty() => {
                    self.state = State::Quoted;
                }
                (State::QuoteInQuoted | State::Plain, b',') => {
                    self.end_field();
                    self.state = State::Plain;
                }
                (State::QuoteInQuoted | State::Plain, b'\n') => {
                    self.end_field();
                    self.state = State::Plain;
                    record(std::mem::take(&mut self.record));
                }
                (State::QuoteInQuoted | State::Plain, b'\r') => {}
                (State::QuoteInQuoted | State::Plain, _) => {
                    self.push(b);
                    self.state = State::Plain;
                }
            }
        }
    }

    fn push(&mut self, b: u8) {
        if self.field.len() < MAX_FIELD {
            self.field.push(b);
        }
    }

    fn end_field(&mut self) {
        let f = std::mem::take(&mut self.field);
        self.record.push(String::from_utf8_lossy(&f).into_owned());
    }
}

/// One result row: what the summaries need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds since the epoch (JMeter's `timeStamp`).
    pub timestamp_ms: i64,
    pub elapsed_ms: u64,
    pub label: String,
    pub success: bool,
    pub bytes: u64,
}

/// Column positions, from the header row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    timestamp: usize,
    elapsed: usize,
    label: usize,
    success: usize,
    bytes: usize,
}

impl Columns {
    /// From JMeter's header row; the error names what is missing.
    pub fn from_header(header: &[String]) -> Result<Columns, String> {
        let at = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| format!("the results CSV has no {name} column: {header:?}"))
        };
        Ok(Columns {
            timestamp: at("timeStamp")?,
            elapsed: at("elapsed")?,
            label: at("label")?,
            success: at("success")?,
            bytes: at("bytes")?,
        })
    }

    /// The sample of `row`, or `None` for a row that is not one (too
    /// short, or numbers that are not numbers).
    pub fn sample(&self, mut row: Vec<String>) -> Option<Sample> {
        let num = |i: usize| row.get(i).and_then(|v| v.trim().parse::<i64>().ok());
        let timestamp_ms = num(self.timestamp)?;
        let elapsed_ms = u64::try_from(num(self.elapsed)?).ok()?;
        let bytes = u64::try_from(num(self.bytes)?).unwrap_or(0);
        let success = row.get(self.success)? == "true";
        let label = std::mem::take(row.get_mut(self.label)?);
        Some(Sample {
            timestamp_ms,
            elapsed_ms,
            label,
            success,
            bytes,
        })
    }
}

#[derive(Debug)]
struct Acc {
    count: u64,
    errors: u64,
    bytes: u64,
    hist: Histogram<u64>,
}

/// Samples grouped by (second, label) until the second is complete.
#[derive(Debug, Default)]
pub struct Aggregator {
    open: BTreeMap<(i64, String), Acc>,
}

impl Aggregator {
    pub fn add(&mut self, s: Sample) {
        let sec = s.timestamp_ms.div_euclid(1000);
        let acc = self.open.entry((sec, s.label)).or_insert_with(|| Acc {
            count: 0,
            errors: 0,
            bytes: 0,
            hist: new_histogram(),
        });
        acc.count += 1;
        acc.errors += u64::from(!s.success);
        acc.bytes = acc.bytes.saturating_add(s.bytes);
        // `record` grows the histogram to the value; `saturating_record`
        // would clamp it to the current (tiny) maximum instead.
        if acc.hist.record(s.elapsed_ms).is_err() {
            acc.hist.saturating_record(s.elapsed_ms);
        }
    }

    /// Emits and forgets every second before `unix_sec` (exclusive), in
    /// time then label order.
    pub fn take_before(&mut self, unix_sec: i64) -> Vec<Second> {
        let later = self.open.split_off(&(unix_sec, String::new()));
        let done = std::mem::replace(&mut self.open, later);
        done.into_iter()
            .map(|((unix_sec, label), a)| Second {
                unix_sec,
                label,
                count: a.count,
                errors: a.errors,
                bytes: a.bytes,
                hist: encode(&a.hist),
            })
            .collect()
    }

    /// Emits everything (the run ended).
    pub fn take_all(&mut self) -> Vec<Second> {
        self.take_before(i64::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// CSV bytes to samples: the header first, then rows.
#[derive(Debug, Default)]
pub struct ResultsParser {
    csv: CsvReader,
    columns: Option<Columns>,
    /// Rows that were not samples (kept count for the log).
    pub skipped: u64,
}

impl ResultsParser {
    /// Parses `bytes`; samples go to `sample`. Err when the header lacks
    /// a needed column (the run's CSV settings are wrong: nothing later
    /// can be read).
    pub fn feed(&mut self, bytes: &[u8], mut sample: impl FnMut(Sample)) -> Result<(), String> {
        let mut bad_header = None;
        let (columns, skipped) = (&mut self.columns, &mut self.skipped);
        self.csv.feed(bytes, |row| match columns {
            None if bad_header.is_none() => match Columns::from_header(&row) {
                Ok(c) => *columns = Some(c),
                Err(e) => bad_header = Some(e),
            },
            None => {}
            Some(c) => match c.sample(row) {
                Some(s) => sample(s),
                None => *skipped += 1,
            },
        });
        bad_header.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "timeStamp,elapsed,label,responseCode,responseMessage,success,failureMessage,bytes\n";

    fn all_records(text: &[u8], chunk: usize) -> Vec<Vec<String>> {
        let mut r = CsvReader::default();
        let mut out = Vec::new();
        for c in text.chunks(chunk) {
            r.feed(c, |rec| out.push(rec));
        }
        out
    }

    #[test]
    fn quoted_fields_survive_any_chunking() {
        let text = b"a,b,c\n1,\"x, \"\"y\"\"\nz\",3\r\n4,,\"\"\n";
        let whole = all_records(text, text.len());
        assert_eq!(
            whole,
            vec![
                vec!["a", "b", "c"],
                vec!["1", "x, \"y\"\nz", "3"],
                vec!["4", "", ""],
            ]
        );
        for chunk in 1..text.len() {
            assert_eq!(all_records(text, chunk), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn a_partial_last_line_waits_for_its_end() {
        let mut r = CsvReader::default();
        let mut out = Vec::new();
        r.feed(b"a,b\n1,\"2", |rec| out.push(rec));
        assert_eq!(out.len(), 1);
        r.feed(b"\"\n", |rec| out.push(rec));
        assert_eq!(out[1], vec!["1", "2"]);
    }

    #[test]
    fn seconds_per_label_with_errors_bytes_and_histograms() {
        let text = format!(
            "{HEADER}1000500,10,home,200,OK,true,,100\n\
             1000900,30,\"log, in\",500,\"Internal\nError\",false,\"boom, \"\"really\"\"\",7\n\
             1000999,20,home,200,OK,true,,100\n\
             1001000,5,home,200,OK,true,,1\n\
             garbage\n"
        );
        let mut p = ResultsParser::default();
        let mut agg = Aggregator::default();
        p.feed(text.as_bytes(), |s| agg.add(s)).unwrap();
        assert_eq!(p.skipped, 1);
        let first = agg.take_before(1001);
        assert_eq!(first.len(), 2);
        assert_eq!(
            (
                first[0].label.as_str(),
                first[0].count,
                first[0].errors,
                first[0].bytes
            ),
            ("home", 2, 0, 200)
        );
        assert_eq!(
            (first[1].label.as_str(), first[1].count, first[1].errors),
            ("log, in", 1, 1)
        );
        let h = first[0].histogram().unwrap();
        assert_eq!((h.len(), h.min(), h.max()), (2, 10, 20));
        let rest = agg.take_all();
        assert_eq!((rest.len(), rest[0].unix_sec, rest[0].count), (1, 1001, 1));
        assert!(agg.is_empty());
    }

    #[test]
    fn slow_samples_keep_their_time() {
        let mut agg = Aggregator::default();
        for elapsed in [5, 150, 2047, 2048, 3500, 4999, 600_000] {
            agg.add(Sample {
                timestamp_ms: 1_000_500,
                elapsed_ms: elapsed,
                label: "slow".into(),
                success: true,
                bytes: 1,
            });
        }
        let s = agg.take_all();
        let h = s[0].histogram().unwrap();
        assert_eq!(h.len(), 7);
        assert_eq!(h.min(), 5);
        // 3 significant digits: within 0.1 %.
        for (q, want) in [
            (0.5, 2048.0),
            (0.7, 3500.0),
            (0.8, 4999.0),
            (1.0, 600_000.0),
        ] {
            let got = h.value_at_quantile(q) as f64;
            assert!((got - want).abs() <= want * 0.001, "q{q}: {got} vs {want}");
        }
    }

    #[test]
    fn a_header_without_the_needed_columns_is_an_error() {
        let mut p = ResultsParser::default();
        let e = p.feed(b"timeStamp,label\n1,a\n", |_| {}).unwrap_err();
        assert!(e.contains("elapsed"), "{e}");
    }

    #[test]
    fn a_second_round_trips_through_serde_compactly() {
        let mut h = new_histogram();
        for v in [3, 5, 5, 8, 120, 121, 900, 4000] {
            h.record(v).unwrap();
        }
        let s = Second {
            unix_sec: 1_700_000_000,
            label: "home".into(),
            count: 8,
            errors: 0,
            bytes: 800,
            hist: encode(&h),
        };
        assert!(s.hist.len() < 100, "{} bytes", s.hist.len());
        let wire = bincode::serde::encode_to_vec(&s, bincode::config::standard()).unwrap();
        let (back, _): (Second, usize) =
            bincode::serde::decode_from_slice(&wire, bincode::config::standard()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.histogram().unwrap(), h);
    }
}
