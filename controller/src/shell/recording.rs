//! Session recordings in asciicast v2 (the asciinema format): a JSON header
//! line, then one `[seconds, code, data]` line per event: `"o"` output,
//! `"i"` input (only when input recording is switched on: it captures
//! passwords typed at prompts), `"r"` resize as `"COLSxROWS"`.
//!
//! The terminal stream is bytes; asciicast wants strings. A multi-byte
//! character split across two reads is carried over to the next event
//! instead of being mangled, and bytes that are not UTF-8 become U+FFFD in
//! the recording only (the live terminal gets the bytes untouched).
//! Knows nothing of SSH or HTTP: the bridge feeds it.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

#[derive(Serialize)]
struct Header<'a> {
    version: u8,
    width: u16,
    height: u16,
    timestamp: u64,
    title: &'a str,
    env: Env,
}

#[derive(Serialize)]
struct Env {
    #[serde(rename = "TERM")]
    term: &'static str,
}

/// What a finished recording holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub duration_secs: f64,
    pub output_bytes: u64,
}

pub struct Recorder {
    out: BufWriter<std::fs::File>,
    started: Instant,
    carry_out: Vec<u8>,
    carry_in: Vec<u8>,
    record_input: bool,
    output_bytes: u64,
}

impl Recorder {
    /// Starts a recording file at `path` (created, never overwritten).
    pub fn create(
        path: &Path,
        cols: u16,
        rows: u16,
        title: &str,
        unix_start: u64,
        record_input: bool,
    ) -> io::Result<Recorder> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let header = Header {
            version: 2,
            width: cols,
            height: rows,
            timestamp: unix_start,
            title,
            env: Env {
                term: "xterm-256color",
            },
        };
        serde_json::to_writer(&mut out, &header)?;
        out.write_all(b"\n")?;
        Ok(Recorder {
            out,
            started: Instant::now(),
            carry_out: Vec::new(),
            carry_in: Vec::new(),
            record_input,
            output_bytes: 0,
        })
    }

    fn event(&mut self, code: &str, data: &str) -> io::Result<()> {
        let t = self.started.elapsed().as_secs_f64();
        // Microseconds are what asciinema itself writes.
        let line = serde_json::to_string(&(round6(t), code, data))?;
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")
    }

    pub fn output(&mut self, data: &[u8]) -> io::Result<()> {
        self.output_bytes += data.len() as u64;
        let text = take_utf8(&mut self.carry_out, data);
        if text.is_empty() {
            return Ok(());
        }
        self.event("o", &text)
    }

    pub fn input(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.record_input {
            return Ok(());
        }
        let text = take_utf8(&mut self.carry_in, data);
        if text.is_empty() {
            return Ok(());
        }
        self.event("i", &text)
    }

    pub fn resize(&mut self, cols: u16, rows: u16) -> io::Result<()> {
        self.event("r", &format!("{cols}x{rows}"))
    }

    /// Writes what is buffered (a crash then loses at most what came after).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn finish(mut self) -> io::Result<Summary> {
        if !self.carry_out.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.carry_out)).into_owned();
            self.event("o", &rest)?;
        }
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok(Summary {
            duration_secs: self.started.elapsed().as_secs_f64(),
            output_bytes: self.output_bytes,
        })
    }
}

fn round6(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

/// Decodes `carry ++ data` as UTF-8: returns the text up to the last
/// complete character and keeps an incomplete trailing sequence (at most
/// 3 bytes) in `carry` for the next call. Invalid bytes become U+FFFD.
pub fn take_utf8(carry: &mut Vec<u8>, data: &[u8]) -> String {
    carry.extend_from_slice(data);
    let mut out = String::with_capacity(carry.len());
    let mut rest: &[u8] = carry;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).expect("checked valid"));
                match e.error_len() {
                    // Invalid bytes: replace and go on after them.
                    Some(n) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &bad[n..];
                    }
                    // An incomplete character at the end: keep it.
                    None => {
                        rest = bad;
                        break;
                    }
                }
            }
        }
    }
    let keep = rest.to_vec();
    *carry = keep;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_reads_are_kept_whole() {
        let text = "héllo 世界 🙂 ok";
        let bytes = text.as_bytes();
        // Every split point, including inside each multi-byte character.
        for cut in 0..=bytes.len() {
            let mut carry = Vec::new();
            let mut s = take_utf8(&mut carry, &bytes[..cut]);
            s.push_str(&take_utf8(&mut carry, &bytes[cut..]));
            assert_eq!(s, text, "cut at {cut}");
            assert!(carry.is_empty());
        }
        // One byte at a time.
        let mut carry = Vec::new();
        let s: String = bytes.iter().map(|b| take_utf8(&mut carry, &[*b])).collect();
        assert_eq!(s, text);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut carry = Vec::new();
        assert_eq!(take_utf8(&mut carry, b"a\xffb\xc3"), "a\u{fffd}b");
        assert_eq!(carry, b"\xc3");
        assert_eq!(take_utf8(&mut carry, b"\xa9"), "é");
        assert_eq!(take_utf8(&mut carry, b"\xe4\x28"), "\u{fffd}(");
    }

    #[test]
    fn a_recording_is_valid_asciicast_v2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast");
        let mut r =
            Recorder::create(&path, 80, 24, "web-1 by alice", 1_700_000_000, false).unwrap();
        r.output("prompt$ ".as_bytes()).unwrap();
        r.input(b"secret\r").unwrap();
        r.output(&"世".as_bytes()[..2]).unwrap();
        r.output(&"世".as_bytes()[2..]).unwrap();
        r.resize(120, 40).unwrap();
        let sum = r.finish().unwrap();
        assert_eq!(sum.output_bytes, 8 + 3);
        assert!(
            Recorder::create(&path, 80, 24, "again", 0, false).is_err(),
            "overwrote a recording"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 80);
        assert_eq!(lines[0]["height"], 24);
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "prompt$ ");
        assert_eq!(lines[2][2], "世");
        assert_eq!(lines[3][1], "r");
        assert_eq!(lines[3][2], "120x40");
        assert_eq!(lines.len(), 4, "input was recorded although off: {text}");
        assert!(!text.contains("secret"));
        let t: Vec<f64> = lines[1..].iter().map(|l| l[0].as_f64().unwrap()).collect();
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "time goes back: {t:?}");
    }
}
