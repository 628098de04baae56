//! Alert rules: deciding, from the samples hosts send and from time
//! passing, when an alert episode starts and when it ends.
//!
//! It owns: the rule settings ([`AlertRules`]) and their validation, and the
//! per-host episode state of [`AlertEngine`] (streaks, hysteresis, full GC
//! counter history, silence), turned into exactly one [`AlertEvent`] when an
//! episode starts and one when it ends.
//!
//! It must not: send mail, store anything, log, read the clock, or know
//! HTTP/QUIC. The caller feeds it samples and ticks and decides what the
//! events are worth; a controller restart therefore starts with no episodes.
//!
//! Decisions the callers can rely on:
//!
//! - Durations of the sample rules ("above for N s", the full GC window) are
//!   measured on sample timestamps, so a spool replayed after a reconnection
//!   is judged as it happened; its events carry past `at_ms` values.
//! - Silence is measured on the clock `tick` is given, never on sample
//!   timestamps alone: an agent clock off by an hour must neither hide nor
//!   fake silence. A sample's timestamp is trusted only within the span
//!   between the previous tick and the current one.
//! - A sample whose `ts_ms` is not newer than the last one accepted for its
//!   host (out of order, or a resend) is ignored by the sample rules, but it
//!   still proves the host is talking, so it ends a silence episode.
//! - Missing or non-finite values (no `cpu`, no `mem`, zero total memory,
//!   NaN) are skipped: they neither extend nor break a streak, but a gap
//!   between usable values longer than the rule's window resets the streak.
//!   They never end an open episode either: not knowing is not recovery.
//! - Full GC: see [`AlertRules::full_gc_min_interval_secs`]. A sample without
//!   JVM data is skipped and the counter history kept, so a brief hsperfdata
//!   failure loses nothing; a lower count or another pid afterwards starts a
//!   new baseline.
//! - A rule removed (or made unusable) by [`AlertEngine::set_rules`] ends its
//!   open episodes at that host's next sample or the next tick, whichever
//!   comes first. A changed threshold applies to open episodes too.

use std::collections::{BTreeMap, VecDeque};

use protocol::metrics::{AppStats, HostSample, MemStats};

/// Percentage points a value must come back past its threshold before its
/// episode ends, so that a value hovering at the threshold does not flap.
pub const HYSTERESIS_PCT: f64 = 5.0;

/// A full GC episode ends after this many windows (3/2) without a full GC.
/// More than one window, so that GCs spaced right around the window do not
/// flap; less than two, so that one GC per two windows (clearly fine) ends
/// an old episode.
const GC_QUIET_WINDOWS_NUM: u64 = 3;
const GC_QUIET_WINDOWS_DEN: u64 = 2;

/// When to alert. Missing fields take the [`Default`]; a rule set to `null`
/// is off.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// CPU busy percent (0..=100) that must be exceeded...
    pub cpu_busy_above_pct: Option<f32>,
    /// ...by every sample for this long. Must be longer than the agents'
    /// sample interval: a gap between samples longer than this resets the
    /// streak.
    pub cpu_for_secs: u64,
    /// Available memory, percent of total, that must be undercut...
    pub mem_available_below_pct: Option<f32>,
    /// ...by every sample for this long (same caveat as `cpu_for_secs`).
    pub mem_for_secs: u64,
    /// Alert when full GCs come more often than once per this many seconds.
    /// It fires only when the counter proves it: a rise of at least 2 between
    /// two samples at most this far apart, or more generally a rise of `n`
    /// over a gap of at most `(n - 1)` windows. Two GCs slightly closer than
    /// the window can go unnoticed by up to one sample interval; a GC every
    /// other window never fires.
    pub full_gc_min_interval_secs: Option<u64>,
    /// Alert when a host has sent nothing for this long. Call
    /// [`AlertEngine::tick`] much more often than this.
    pub silent_after_secs: Option<u64>,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            cpu_busy_above_pct: Some(90.0),
            cpu_for_secs: 60,
            mem_available_below_pct: Some(10.0),
            mem_for_secs: 30,
            full_gc_min_interval_secs: Some(60),
            silent_after_secs: Some(120),
        }
    }
}

impl AlertRules {
    /// Every problem, joined by `; `, so a settings form can show them all.
    /// The engine does not require valid rules: an unusable threshold (NaN)
    /// is treated as an absent rule, and nothing panics.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut pct = |name: &str, value: Option<f32>, for_name: &str, for_secs: u64| {
            let Some(v) = value else { return };
            if !(0.0..=100.0).contains(&v) {
                problems.push(format!("{name} must be within 0..=100, not {v}"));
            }
            if for_secs == 0 {
                problems.push(format!("{for_name} must be > 0 when {name} is set"));
            }
        };
        pct(
            "cpu_busy_above_pct",
            self.cpu_busy_above_pct,
            "cpu_for_secs",
            self.cpu_for_secs,
        );
        pct(
            "mem_available_below_pct",
            self.mem_available_below_pct,
            "mem_for_secs",
            self.mem_for_secs,
        );
        for (name, value) in [
            ("full_gc_min_interval_secs", self.full_gc_min_interval_secs),
            ("silent_after_secs", self.silent_after_secs),
        ] {
            if value == Some(0) {
                problems.push(format!("{name} must be > 0 (or null to turn it off)"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    fn cpu(&self) -> Option<Level> {
        Level::new(self.cpu_busy_above_pct, self.cpu_for_secs, Direction::Above)
    }

    fn mem(&self) -> Option<Level> {
        Level::new(
            self.mem_available_below_pct,
            self.mem_for_secs,
            Direction::Below,
        )
    }

    /// Zero would mean "more often than never", which nothing can satisfy,
    /// and would end episodes at once; treating it as off is the same thing
    /// without the special cases.
    fn gc_window_ms(&self) -> Option<u64> {
        self.full_gc_min_interval_secs
            .filter(|&s| s > 0)
            .map(secs_to_ms)
    }

    /// Zero would fire at every tick and clear at every sample.
    fn silent_after_ms(&self) -> Option<u64> {
        self.silent_after_secs.filter(|&s| s > 0).map(secs_to_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    CpuHigh,
    MemoryLow,
    FullGcFrequent,
    HostSilent,
}

/// The start (`firing`) or end of one episode of one kind on one host.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertEvent {
    pub host: String,
    pub kind: AlertKind,
    pub firing: bool,
    /// The sample's `ts_ms` for events of [`AlertEngine::observe`], the
    /// `now_ms` of [`AlertEngine::tick`] for its own.
    pub at_ms: u64,
    /// For people: what was seen and the rule it broke or meets again.
    pub message: String,
}

/// Episode state of every host that has sent a sample since it was created
/// or forgotten. Hosts that never sent anything are unknown here and are
/// never reported silent.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    rules: AlertRules,
    hosts: BTreeMap<String, HostState>,
    last_tick_ms: Option<u64>,
}

impl AlertEngine {
    pub fn new(rules: AlertRules) -> AlertEngine {
        AlertEngine {
            rules,
            hosts: BTreeMap::new(),
            last_tick_ms: None,
        }
    }

    pub fn rules(&self) -> &AlertRules {
        &self.rules
    }

    /// Open episodes keep going under the new rules; those whose rule is gone
    /// end at the host's next sample or the next tick.
    pub fn set_rules(&mut self, rules: AlertRules) {
        self.rules = rules;
    }

    /// A sample arrived for `host`. Returns the episode starts and ends it
    /// causes, at most one per kind.
    pub fn observe(&mut self, host: &str, sample: &HostSample) -> Vec<AlertEvent> {
        if !self.hosts.contains_key(host) {
            self.hosts.insert(host.to_owned(), HostState::default());
        }
        let Some(state) = self.hosts.get_mut(host) else {
            return Vec::new();
        };
        let rules = &self.rules;
        let ts = sample.ts_ms;
        let in_order = state.last_ts_ms.is_none_or(|last| ts > last);
        let mut out = Vec::new();
        let mut ev = Emitter {
            host,
            // An ignored old sample must not date an event before the
            // episode it ends.
            at_ms: state.last_ts_ms.map_or(ts, |last| last.max(ts)),
            out: &mut out,
        };

        state.silence.heard(ts);
        if state.silence.firing_since.take().is_some() {
            ev.emit(AlertKind::HostSilent, false, "Host sends data again".into());
        }
        state.drop_removed_rules(rules, &mut ev);
        if !in_order {
            return out;
        }
        state.last_ts_ms = Some(ts);

        if let Some(level) = rules.cpu()
            && let Some(cpu) = &sample.cpu
            && cpu.busy_pct.is_finite()
        {
            let busy = f64::from(cpu.busy_pct);
            match state.cpu.step(&level, ts, busy) {
                Step::Nothing => {}
                Step::Started { for_ms } => ev.emit(
                    AlertKind::CpuHigh,
                    true,
                    format!(
                        "CPU busy {busy:.1} % for {} (threshold {} % for {})",
                        fmt_ms(for_ms),
                        fmt_pct(level.threshold),
                        fmt_ms(level.window_ms),
                    ),
                ),
                Step::Ended => ev.emit(
                    AlertKind::CpuHigh,
                    false,
                    format!(
                        "CPU busy {busy:.1} %, back at or below {} % (threshold {} %)",
                        fmt_pct(level.clear_at()),
                        fmt_pct(level.threshold),
                    ),
                ),
            }
        }

        if let Some(level) = rules.mem()
            && let Some(mem) = &sample.mem
            && let Some(avail) = available_pct(mem)
        {
            let amounts = format!(
                "{} of {}",
                fmt_bytes(mem.available_bytes),
                fmt_bytes(mem.total_bytes)
            );
            match state.mem.step(&level, ts, avail) {
                Step::Nothing => {}
                Step::Started { for_ms } => ev.emit(
                    AlertKind::MemoryLow,
                    true,
                    format!(
                        "Memory available {avail:.1} % ({amounts}) for {} (threshold {} % for {})",
                        fmt_ms(for_ms),
                        fmt_pct(level.threshold),
                        fmt_ms(level.window_ms),
                    ),
                ),
                Step::Ended => ev.emit(
                    AlertKind::MemoryLow,
                    false,
                    format!(
                        "Memory available {avail:.1} % ({amounts}), back at or above {} % (threshold {} %)",
                        fmt_pct(level.clear_at()),
                        fmt_pct(level.threshold),
                    ),
                ),
            }
        }

        if let Some(window_ms) = rules.gc_window_ms()
            && let Some(app) = &sample.app
            && let Some(jvm) = &app.jvm
        {
            let rule = format!(
                "(threshold: more often than once per {})",
                fmt_ms(window_ms)
            );
            match state.gc.step(window_ms, ts, app.pid, jvm.full_gc_count) {
                GcStep::Nothing => {}
                GcStep::Started { rise, over_ms } => ev.emit(
                    AlertKind::FullGcFrequent,
                    true,
                    format!(
                        "{}: {rise} full GCs within {} {rule}",
                        jvm_label(app),
                        fmt_ms(over_ms)
                    ),
                ),
                GcStep::Ended { quiet_ms } => ev.emit(
                    AlertKind::FullGcFrequent,
                    false,
                    format!(
                        "{}: no full GC for {} {rule}",
                        jvm_label(app),
                        fmt_ms(quiet_ms)
                    ),
                ),
            }
        }
        out
    }

    /// Time passed: reports hosts silent for `silent_after_secs` (once per
    /// episode; the host's next sample ends it) and ends episodes whose rule
    /// was removed. `now_ms` is the caller's clock, in Unix milliseconds like
    /// the samples.
    pub fn tick(&mut self, now_ms: u64) -> Vec<AlertEvent> {
        // `min` keeps the bounds ordered if the caller's clock stepped back.
        let earliest = self.last_tick_ms.unwrap_or(0).min(now_ms);
        self.last_tick_ms = Some(now_ms);
        let mut out = Vec::new();
        for (host, state) in &mut self.hosts {
            let mut ev = Emitter {
                host,
                at_ms: now_ms,
                out: &mut out,
            };
            state.drop_removed_rules(&self.rules, &mut ev);
            let silence = &mut state.silence;
            // The sample arrived after the previous tick and by this one, so
            // that is all its timestamp can tell on our clock.
            if let Some(ts) = silence.unticked_ts_ms.take() {
                silence.heard_at_ms = Some(ts.min(now_ms).max(earliest));
            }
            let Some(after_ms) = self.rules.silent_after_ms() else {
                continue;
            };
            if silence.firing_since.is_some() || silence.unticked_ts_ms.is_some() {
                continue;
            }
            if let Some(heard) = silence.heard_at_ms {
                let quiet_ms = now_ms.saturating_sub(heard);
                if quiet_ms >= after_ms {
                    silence.firing_since = Some(now_ms);
                    ev.emit(
                        AlertKind::HostSilent,
                        true,
                        format!(
                            "No data from host for {} (threshold {})",
                            fmt_ms(quiet_ms),
                            fmt_ms(after_ms)
                        ),
                    );
                }
            }
        }
        out
    }

    /// The host was deleted: its episodes vanish without events.
    pub fn forget_host(&mut self, host: &str) {
        self.hosts.remove(host);
    }

    /// Open episodes with the `at_ms` of their start, by host then kind.
    pub fn firing(&self) -> Vec<(String, AlertKind, u64)> {
        let mut open = Vec::new();
        for (host, state) in &self.hosts {
            for (kind, since) in [
                (AlertKind::CpuHigh, state.cpu.firing_since),
                (AlertKind::MemoryLow, state.mem.firing_since),
                (AlertKind::FullGcFrequent, state.gc.firing_since),
                (AlertKind::HostSilent, state.silence.firing_since),
            ] {
                if let Some(since) = since {
                    open.push((host.clone(), kind, since));
                }
            }
        }
        open
    }
}

struct Emitter<'a> {
    host: &'a str,
    at_ms: u64,
    out: &'a mut Vec<AlertEvent>,
}

impl Emitter<'_> {
    fn emit(&mut self, kind: AlertKind, firing: bool, message: String) {
        self.out.push(AlertEvent {
            host: self.host.to_owned(),
            kind,
            firing,
            at_ms: self.at_ms,
            message,
        });
    }
}

#[derive(Debug, Clone, Default)]
struct HostState {
    last_ts_ms: Option<u64>,
    cpu: LevelState,
    mem: LevelState,
    gc: GcState,
    silence: Silence,
}

impl HostState {
    /// Also forgets streaks and counter history of removed rules, so a rule
    /// turned back on starts from scratch rather than from stale state.
    fn drop_removed_rules(&mut self, rules: &AlertRules, ev: &mut Emitter<'_>) {
        if rules.cpu().is_none() {
            if self.cpu.firing_since.is_some() {
                ev.emit(AlertKind::CpuHigh, false, "CPU rule removed".into());
            }
            self.cpu = LevelState::default();
        }
        if rules.mem().is_none() {
            if self.mem.firing_since.is_some() {
                ev.emit(AlertKind::MemoryLow, false, "Memory rule removed".into());
            }
            self.mem = LevelState::default();
        }
        if rules.gc_window_ms().is_none() {
            if self.gc.firing_since.is_some() {
                ev.emit(
                    AlertKind::FullGcFrequent,
                    false,
                    "Full GC rule removed".into(),
                );
            }
            self.gc = GcState::default();
        }
        if rules.silent_after_ms().is_none() && self.silence.firing_since.take().is_some() {
            ev.emit(AlertKind::HostSilent, false, "Silence rule removed".into());
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Above,
    Below,
}

/// A percentage rule: "value beyond `threshold` for `window_ms`".
#[derive(Debug, Clone, Copy)]
struct Level {
    threshold: f64,
    window_ms: u64,
    direction: Direction,
}

impl Level {
    fn new(threshold: Option<f32>, for_secs: u64, direction: Direction) -> Option<Level> {
        let threshold = threshold.filter(|t| t.is_finite())?;
        Some(Level {
            threshold: f64::from(threshold),
            window_ms: secs_to_ms(for_secs),
            direction,
        })
    }

    fn breached(&self, v: f64) -> bool {
        match self.direction {
            Direction::Above => v > self.threshold,
            Direction::Below => v < self.threshold,
        }
    }

    /// Clamped to 0..=100 so that a threshold near an end can still clear.
    fn clear_at(&self) -> f64 {
        match self.direction {
            Direction::Above => (self.threshold - HYSTERESIS_PCT).max(0.0),
            Direction::Below => (self.threshold + HYSTERESIS_PCT).min(100.0),
        }
    }

    fn recovered(&self, v: f64) -> bool {
        match self.direction {
            Direction::Above => v <= self.clear_at(),
            Direction::Below => v >= self.clear_at(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct LevelState {
    /// `ts_ms` of the first and of the latest sample of the current run of
    /// breaching values.
    streak: Option<(u64, u64)>,
    firing_since: Option<u64>,
}

enum Step {
    Nothing,
    Started { for_ms: u64 },
    Ended,
}

impl LevelState {
    /// `ts` is newer than any earlier call's and `v` is finite.
    fn step(&mut self, level: &Level, ts: u64, v: f64) -> Step {
        if self.firing_since.is_some() {
            if level.recovered(v) {
                self.firing_since = None;
                self.streak = None;
                return Step::Ended;
            }
            return Step::Nothing;
        }
        if !level.breached(v) {
            self.streak = None;
            return Step::Nothing;
        }
        // A longer gap could hide a dip, so the run cannot be called
        // continuous across it.
        let start = match self.streak {
            Some((start, last)) if ts.saturating_sub(last) <= level.window_ms => start,
            _ => ts,
        };
        self.streak = Some((start, ts));
        let for_ms = ts.saturating_sub(start);
        if for_ms >= level.window_ms {
            self.firing_since = Some(ts);
            Step::Started { for_ms }
        } else {
            Step::Nothing
        }
    }
}

#[derive(Debug, Clone, Default)]
struct GcState {
    baseline: Option<GcBaseline>,
    firing_since: Option<u64>,
}

/// The full GC counter of one JVM process.
#[derive(Debug, Clone)]
struct GcBaseline {
    pid: Option<u32>,
    /// `(ts_ms, full_gc_count)` of the samples within the window, plus the
    /// newest one before it (for rises across a gap). Counts never decrease
    /// here: a decrease starts a new baseline.
    history: VecDeque<(u64, u64)>,
    /// `ts_ms` of the latest sample where the count rose, or of the start of
    /// the baseline: nothing is known about GCs before it.
    quiet_since_ms: u64,
}

enum GcStep {
    Nothing,
    Started { rise: u64, over_ms: u64 },
    Ended { quiet_ms: u64 },
}

impl GcState {
    /// `ts` is newer than any earlier call's.
    fn step(&mut self, window_ms: u64, ts: u64, pid: Option<u32>, count: u64) -> GcStep {
        let same_jvm = self.baseline.as_ref().is_some_and(|b| {
            b.pid == pid && b.history.back().is_some_and(|&(_, last)| count >= last)
        });
        let witness = match &mut self.baseline {
            Some(b) if same_jvm => {
                if b.history.back().is_some_and(|&(_, last)| count > last) {
                    b.quiet_since_ms = ts;
                }
                // Counts only grow, so the oldest entry inside the window has
                // the largest rise; only it and the one before the window
                // (checked across a gap) can be witnesses.
                let witness = b.history.iter().take(2).find_map(|&(t, c)| {
                    let rise = count - c;
                    let over_ms = ts.saturating_sub(t);
                    // `rise` GCs happened within `over_ms`, so two of them
                    // were less than `over_ms / (rise - 1)` apart.
                    (rise >= 2 && over_ms <= (rise - 1).saturating_mul(window_ms))
                        .then_some((rise, over_ms))
                });
                b.history.push_back((ts, count));
                let horizon = ts.saturating_sub(window_ms);
                while b.history.len() > 1 && b.history[1].0 < horizon {
                    b.history.pop_front();
                }
                witness
            }
            // New JVM, or first sight: its count says nothing about rate yet.
            // An open episode stays open until this JVM proves quiet.
            _ => {
                self.baseline = Some(GcBaseline {
                    pid,
                    history: VecDeque::from([(ts, count)]),
                    quiet_since_ms: ts,
                });
                None
            }
        };
        if self.firing_since.is_none() {
            if let Some((rise, over_ms)) = witness {
                self.firing_since = Some(ts);
                return GcStep::Started { rise, over_ms };
            }
            return GcStep::Nothing;
        }
        let quiet_ms = self
            .baseline
            .as_ref()
            .map_or(0, |b| ts.saturating_sub(b.quiet_since_ms));
        if quiet_ms >= window_ms.saturating_mul(GC_QUIET_WINDOWS_NUM) / GC_QUIET_WINDOWS_DEN {
            self.firing_since = None;
            return GcStep::Ended { quiet_ms };
        }
        GcStep::Nothing
    }
}

#[derive(Debug, Clone, Default)]
struct Silence {
    /// Newest `ts_ms` among samples that arrived since the last tick.
    unticked_ts_ms: Option<u64>,
    /// On the tick clock: when the host was last known to be sending.
    heard_at_ms: Option<u64>,
    firing_since: Option<u64>,
}

impl Silence {
    fn heard(&mut self, ts: u64) {
        self.unticked_ts_ms = Some(self.unticked_ts_ms.map_or(ts, |u| u.max(ts)));
    }
}

/// `None` when the sample cannot say (no total, or counters not finite).
fn available_pct(mem: &MemStats) -> Option<f64> {
    if mem.total_bytes == 0 {
        return None;
    }
    // Multiplying first keeps round percentages exact.
    let pct = mem.available_bytes as f64 * 100.0 / mem.total_bytes as f64;
    pct.is_finite().then_some(pct)
}

fn secs_to_ms(secs: u64) -> u64 {
    secs.saturating_mul(1000)
}

fn jvm_label(app: &AppStats) -> String {
    match app.pid {
        Some(pid) => format!("JVM of {:?} (pid {pid})", app.identifier),
        None => format!("JVM of {:?}", app.identifier),
    }
}

/// Thresholds as people type them: `90`, `92.5`.
fn fmt_pct(v: f64) -> String {
    let s = format!("{v:.1}");
    match s.strip_suffix(".0") {
        Some(whole) => whole.to_owned(),
        None => s,
    }
}

fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{} s", ms / 1000)
    }
}

fn fmt_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    const GIB: f64 = MIB * 1024.0;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::metrics::{CpuStats, JvmStats};

    const GIB: u64 = 1 << 30;
    /// Decimal, so that whole percentages are whole bytes.
    const MEM_TOTAL: u64 = 16_000_000_000;

    fn cpu(ts_ms: u64, busy_pct: f32) -> HostSample {
        HostSample {
            ts_ms,
            cpu: Some(CpuStats {
                busy_pct,
                cores: 4,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn mem(ts_ms: u64, avail_pct: u64) -> HostSample {
        HostSample {
            ts_ms,
            mem: Some(MemStats {
                total_bytes: MEM_TOTAL,
                available_bytes: MEM_TOTAL / 100 * avail_pct,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn gc(ts_ms: u64, pid: u32, full_gc_count: u64) -> HostSample {
        HostSample {
            ts_ms,
            app: Some(AppStats {
                identifier: "shop".into(),
                pid: Some(pid),
                jvm: Some(JvmStats {
                    full_gc_count,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn only(f: impl FnOnce(&mut AlertRules)) -> AlertRules {
        let mut r = AlertRules {
            cpu_busy_above_pct: None,
            mem_available_below_pct: None,
            full_gc_min_interval_secs: None,
            silent_after_secs: None,
            ..AlertRules::default()
        };
        f(&mut r);
        r
    }

    fn cpu_rules() -> AlertRules {
        only(|r| r.cpu_busy_above_pct = Some(90.0))
    }

    fn gc_rules() -> AlertRules {
        only(|r| r.full_gc_min_interval_secs = Some(60))
    }

    fn silent_rules() -> AlertRules {
        only(|r| r.silent_after_secs = Some(120))
    }

    /// `(kind, firing, at_ms)` of each event, to compare compactly.
    fn brief(events: &[AlertEvent]) -> Vec<(AlertKind, bool, u64)> {
        events.iter().map(|e| (e.kind, e.firing, e.at_ms)).collect()
    }

    /// Feeds samples in order, returning all events.
    fn feed(
        engine: &mut AlertEngine,
        host: &str,
        samples: impl IntoIterator<Item = HostSample>,
    ) -> Vec<AlertEvent> {
        samples
            .into_iter()
            .flat_map(|s| engine.observe(host, &s))
            .collect()
    }

    // --- rules and their serde form ---

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let r = AlertRules::default();
        assert_eq!(r.cpu_busy_above_pct, Some(90.0));
        assert_eq!(r.cpu_for_secs, 60);
        assert_eq!(r.mem_available_below_pct, Some(10.0));
        assert_eq!(r.mem_for_secs, 30);
        assert_eq!(r.full_gc_min_interval_secs, Some(60));
        assert_eq!(r.silent_after_secs, Some(120));
        assert_eq!(r.validate(), Ok(()));
    }

    #[test]
    fn validate_reports_every_problem() {
        let r = AlertRules {
            cpu_busy_above_pct: Some(101.0),
            cpu_for_secs: 0,
            mem_available_below_pct: Some(f32::NAN),
            mem_for_secs: 30,
            full_gc_min_interval_secs: Some(0),
            silent_after_secs: Some(0),
        };
        let err = r.validate().unwrap_err();
        for needle in [
            "cpu_busy_above_pct must be within 0..=100",
            "cpu_for_secs must be > 0",
            "mem_available_below_pct must be within 0..=100",
            "full_gc_min_interval_secs must be > 0",
            "silent_after_secs must be > 0",
        ] {
            assert!(err.contains(needle), "{needle:?} missing from {err:?}");
        }
        assert!(!err.contains("mem_for_secs"), "{err}");
        assert!(
            AlertRules {
                cpu_busy_above_pct: Some(-0.5),
                ..AlertRules::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn validate_accepts_bounds_and_zero_secs_of_rules_that_are_off() {
        let r = AlertRules {
            cpu_busy_above_pct: Some(0.0),
            mem_available_below_pct: Some(100.0),
            ..AlertRules::default()
        };
        assert_eq!(r.validate(), Ok(()));
        let off = AlertRules {
            cpu_busy_above_pct: None,
            cpu_for_secs: 0,
            mem_available_below_pct: None,
            mem_for_secs: 0,
            full_gc_min_interval_secs: None,
            silent_after_secs: None,
        };
        assert_eq!(off.validate(), Ok(()));
    }

    #[test]
    fn serde_fills_defaults_null_turns_off_unknown_is_rejected() {
        let r: AlertRules = serde_json::from_str("{}").unwrap();
        assert_eq!(r, AlertRules::default());
        let r: AlertRules =
            serde_json::from_str(r#"{"cpu_busy_above_pct": null, "mem_for_secs": 5}"#).unwrap();
        assert_eq!(r.cpu_busy_above_pct, None);
        assert_eq!(r.mem_for_secs, 5);
        assert_eq!(r.silent_after_secs, Some(120));
        assert!(serde_json::from_str::<AlertRules>(r#"{"cpu_above": 5}"#).is_err());
        let back: AlertRules =
            serde_json::from_str(&serde_json::to_string(&AlertRules::default()).unwrap()).unwrap();
        assert_eq!(back, AlertRules::default());
    }

    #[test]
    fn kinds_and_events_serialize_in_snake_case() {
        assert_eq!(
            serde_json::to_string(&AlertKind::FullGcFrequent).unwrap(),
            r#""full_gc_frequent""#
        );
        let k: AlertKind = serde_json::from_str(r#""host_silent""#).unwrap();
        assert_eq!(k, AlertKind::HostSilent);
        let e = AlertEvent {
            host: "h".into(),
            kind: AlertKind::CpuHigh,
            firing: true,
            at_ms: 5,
            message: "m".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"host":"h","kind":"cpu_high","firing":true,"at_ms":5,"message":"m"}"#
        );
    }

    // --- CPU ---

    #[test]
    fn cpu_fires_once_after_the_window_with_the_numbers() {
        let mut e = AlertEngine::new(cpu_rules());
        let mut events = feed(&mut e, "h", (0..6).map(|i| cpu(i * 10_000, 97.5)));
        assert!(events.is_empty(), "{events:?}");
        events = e.observe("h", &cpu(62_000, 97.5));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, true, 62_000)]);
        assert_eq!(events[0].host, "h");
        assert_eq!(
            events[0].message,
            "CPU busy 97.5 % for 62 s (threshold 90 % for 60 s)"
        );
        // No repeat while the episode lasts, however long.
        let more = feed(&mut e, "h", (7..100).map(|i| cpu(i * 10_000, 99.0)));
        assert!(more.is_empty(), "{more:?}");
        assert_eq!(e.firing(), [("h".into(), AlertKind::CpuHigh, 62_000)]);
    }

    #[test]
    fn cpu_fires_exactly_at_the_window() {
        let mut e = AlertEngine::new(cpu_rules());
        let events = feed(&mut e, "h", (0..=60).map(|i| cpu(i * 1000, 95.0)));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, true, 60_000)]);
    }

    #[test]
    fn cpu_at_the_threshold_is_not_above_it() {
        let mut e = AlertEngine::new(cpu_rules());
        let events = feed(&mut e, "h", (0..200).map(|i| cpu(i * 1000, 90.0)));
        assert!(events.is_empty());
    }

    #[test]
    fn cpu_dip_inside_the_window_restarts_the_streak() {
        let mut e = AlertEngine::new(cpu_rules());
        let mut samples: Vec<_> = (0..50).map(|i| cpu(i * 1000, 95.0)).collect();
        samples.push(cpu(50_000, 89.0));
        samples.extend((51..=110).map(|i| cpu(i * 1000, 95.0)));
        let events = feed(&mut e, "h", samples);
        // 51 s .. 110 s is only 59 s.
        assert!(events.is_empty(), "{events:?}");
        let events = e.observe("h", &cpu(111_000, 95.0));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, true, 111_000)]);
    }

    #[test]
    fn a_gap_longer_than_the_window_resets_the_streak() {
        let mut e = AlertEngine::new(cpu_rules());
        // 0 and 61 s: above at both ends, but nobody knows about between.
        assert!(e.observe("h", &cpu(0, 95.0)).is_empty());
        assert!(e.observe("h", &cpu(61_000, 95.0)).is_empty());
        let events = feed(&mut e, "h", (62..=121).map(|i| cpu(i * 1000, 95.0)));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, true, 121_000)]);
    }

    #[test]
    fn a_gap_equal_to_the_window_keeps_the_streak() {
        let mut e = AlertEngine::new(cpu_rules());
        assert!(e.observe("h", &cpu(0, 95.0)).is_empty());
        let events = e.observe("h", &cpu(60_000, 95.0));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, true, 60_000)]);
    }

    #[test]
    fn out_of_order_and_repeated_samples_are_ignored() {
        let mut e = AlertEngine::new(cpu_rules());
        feed(&mut e, "h", (10..40).map(|i| cpu(i * 1000, 95.0)));
        // An old dip must not break the streak, a resend must not count.
        assert!(e.observe("h", &cpu(5_000, 10.0)).is_empty());
        assert!(e.observe("h", &cpu(39_000, 10.0)).is_empty());
        let events = feed(&mut e, "h", (40..=70).map(|i| cpu(i * 1000, 95.0)));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, true, 70_000)]);
        // Nor can an old low sample end the episode.
        assert!(e.observe("h", &cpu(1_000, 0.0)).is_empty());
        assert_eq!(e.firing().len(), 1);
    }

    #[test]
    fn an_old_sample_cannot_start_a_streak_either() {
        let mut e = AlertEngine::new(AlertRules {
            cpu_for_secs: 1,
            ..cpu_rules()
        });
        assert!(e.observe("h", &cpu(100_000, 10.0)).is_empty());
        assert!(e.observe("h", &cpu(1_000, 99.0)).is_empty());
        assert!(e.observe("h", &cpu(2_000, 99.0)).is_empty());
    }

    #[test]
    fn cpu_clears_only_past_the_hysteresis_margin() {
        let mut e = AlertEngine::new(cpu_rules());
        feed(&mut e, "h", (0..=60).map(|i| cpu(i * 1000, 95.0)));
        assert_eq!(e.firing().len(), 1);
        // Below the threshold but within the margin: still the same episode.
        let events = feed(
            &mut e,
            "h",
            [cpu(61_000, 89.0), cpu(62_000, 85.1), cpu(63_000, 92.0)],
        );
        assert!(events.is_empty(), "{events:?}");
        let events = e.observe("h", &cpu(64_000, 85.0));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, false, 64_000)]);
        assert_eq!(
            events[0].message,
            "CPU busy 85.0 %, back at or below 85 % (threshold 90 %)"
        );
        assert!(e.firing().is_empty());
        // A new episode needs a whole new window.
        let events = feed(&mut e, "h", (65..124).map(|i| cpu(i * 1000, 95.0)));
        assert!(events.is_empty(), "{events:?}");
        let events = e.observe("h", &cpu(125_000, 95.0));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, true, 125_000)]);
    }

    #[test]
    fn a_low_threshold_can_still_clear() {
        let mut e = AlertEngine::new(AlertRules {
            cpu_busy_above_pct: Some(2.0),
            cpu_for_secs: 1,
            ..cpu_rules()
        });
        feed(&mut e, "h", [cpu(0, 50.0), cpu(1000, 50.0)]);
        assert_eq!(e.firing().len(), 1);
        let events = e.observe("h", &cpu(2000, 0.0));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, false, 2000)]);
    }

    #[test]
    fn unusable_cpu_values_never_fire_nor_break_nor_clear() {
        let mut e = AlertEngine::new(cpu_rules());
        let junk = || {
            [f32::NAN, f32::INFINITY, f32::NEG_INFINITY]
                .map(|v| cpu(0, v))
                .into_iter()
                .chain([HostSample::default()])
        };
        let mut t = 0;
        let mut at = |s: HostSample| {
            t += 1000;
            HostSample { ts_ms: t, ..s }
        };
        let all_junk: Vec<_> = (0..100).flat_map(|_| junk()).map(&mut at).collect();
        assert!(feed(&mut e, "h", all_junk).is_empty());

        // Junk in the middle of a streak neither extends nor breaks it.
        let mut e = AlertEngine::new(cpu_rules());
        let mut samples = vec![cpu(0, 95.0)];
        samples.extend(junk().enumerate().map(|(i, s)| HostSample {
            ts_ms: 10_000 * (i as u64 + 1),
            ..s
        }));
        samples.push(cpu(50_000, 95.0));
        assert!(feed(&mut e, "h", samples).is_empty());
        let events = e.observe("h", &cpu(60_000, 95.0));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, true, 60_000)]);
        // Not knowing is not recovering.
        let later: Vec<_> = junk()
            .enumerate()
            .map(|(i, s)| HostSample {
                ts_ms: 61_000 + i as u64,
                ..s
            })
            .collect();
        assert!(feed(&mut e, "h", later).is_empty());
        assert_eq!(e.firing().len(), 1);
    }

    #[test]
    fn zero_for_secs_fires_on_the_first_sample_above() {
        let mut e = AlertEngine::new(AlertRules {
            cpu_for_secs: 0,
            ..cpu_rules()
        });
        let events = e.observe("h", &cpu(7, 95.0));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, true, 7)]);
    }

    // --- memory ---

    #[test]
    fn memory_fires_after_its_window_and_clears_with_hysteresis() {
        let mut e = AlertEngine::new(only(|r| r.mem_available_below_pct = Some(10.0)));
        let events = feed(&mut e, "h", (0..=6).map(|i| mem(i * 5000, 6)));
        assert_eq!(brief(&events), [(AlertKind::MemoryLow, true, 30_000)]);
        assert_eq!(
            events[0].message,
            "Memory available 6.0 % (916 MiB of 14.9 GiB) for 30 s (threshold 10 % for 30 s)"
        );
        // 10 % and 14 % are within the margin.
        assert!(feed(&mut e, "h", [mem(35_000, 10), mem(40_000, 14)]).is_empty());
        let events = e.observe("h", &mem(45_000, 15));
        assert_eq!(brief(&events), [(AlertKind::MemoryLow, false, 45_000)]);
        assert_eq!(
            events[0].message,
            "Memory available 15.0 % (2.2 GiB of 14.9 GiB), back at or above 15 % (threshold 10 %)"
        );
    }

    #[test]
    fn memory_at_the_threshold_is_not_below_it() {
        let mut e = AlertEngine::new(only(|r| r.mem_available_below_pct = Some(10.0)));
        assert!(feed(&mut e, "h", (0..100).map(|i| mem(i * 1000, 10))).is_empty());
    }

    #[test]
    fn unusable_memory_never_fires() {
        let mut e = AlertEngine::new(only(|r| {
            r.mem_available_below_pct = Some(10.0);
            r.mem_for_secs = 0;
        }));
        let broken = [
            MemStats::default(),
            MemStats {
                total_bytes: 0,
                available_bytes: 5,
                ..Default::default()
            },
        ];
        let samples = (0..100u64).map(|i| HostSample {
            ts_ms: i * 1000,
            mem: if i % 3 == 0 {
                None
            } else {
                Some(broken[(i % 2) as usize])
            },
            ..Default::default()
        });
        assert!(feed(&mut e, "h", samples).is_empty());
        // More available than total is odd but not low.
        let odd = HostSample {
            ts_ms: 200_000,
            mem: Some(MemStats {
                total_bytes: 10,
                available_bytes: u64::MAX,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(e.observe("h", &odd).is_empty());
    }

    // --- full GC ---

    #[test]
    fn one_full_gc_per_two_minutes_never_fires() {
        let mut e = AlertEngine::new(gc_rules());
        let samples = (0..3600u64).map(|s| gc(s * 1000, 7, 100 + s / 120));
        assert!(feed(&mut e, "h", samples).is_empty());
        // Nor with sparse samples that each see one more GC.
        let mut e = AlertEngine::new(gc_rules());
        let samples = (0..100u64).map(|i| gc(i * 70_000, 7, i));
        assert!(feed(&mut e, "h", samples).is_empty());
    }

    #[test]
    fn exactly_once_per_window_is_not_more_often() {
        let mut e = AlertEngine::new(gc_rules());
        let samples = (0..600u64).map(|s| gc(s * 1000, 7, s / 60));
        assert!(feed(&mut e, "h", samples).is_empty());
    }

    #[test]
    fn two_full_gcs_inside_the_window_fire_once() {
        let mut e = AlertEngine::new(gc_rules());
        // GCs seen at 10 s and 40 s, samples every 5 s.
        let count = |t: u64| u64::from(t >= 10) + u64::from(t >= 40);
        let events = feed(&mut e, "h", (0..=12).map(|i| gc(i * 5000, 7, count(i * 5))));
        assert_eq!(brief(&events), [(AlertKind::FullGcFrequent, true, 40_000)]);
        assert_eq!(
            events[0].message,
            r#"JVM of "shop" (pid 7): 2 full GCs within 40 s (threshold: more often than once per 60 s)"#
        );
        // More GCs: same episode.
        let more = feed(&mut e, "h", (13..=20).map(|i| gc(i * 5000, 7, 2 + i)));
        assert!(more.is_empty(), "{more:?}");
    }

    #[test]
    fn a_rise_of_two_between_samples_inside_the_window_fires() {
        let mut e = AlertEngine::new(gc_rules());
        assert!(e.observe("h", &gc(0, 7, 5)).is_empty());
        let events = e.observe("h", &gc(60_000, 7, 7));
        assert_eq!(brief(&events), [(AlertKind::FullGcFrequent, true, 60_000)]);
    }

    #[test]
    fn a_rise_of_two_across_a_longer_gap_proves_nothing() {
        let mut e = AlertEngine::new(gc_rules());
        assert!(e.observe("h", &gc(0, 7, 5)).is_empty());
        assert!(e.observe("h", &gc(60_001, 7, 7)).is_empty());
        assert!(e.firing().is_empty());
    }

    #[test]
    fn a_large_rise_across_a_gap_proves_frequency() {
        let mut e = AlertEngine::new(gc_rules());
        assert!(e.observe("h", &gc(0, 7, 5)).is_empty());
        // 6 GCs within 300.001 s: the shortest of five intervals may be
        // 60.0002 s.
        assert!(e.observe("h", &gc(300_001, 7, 11)).is_empty());
        let mut e = AlertEngine::new(gc_rules());
        assert!(e.observe("h", &gc(0, 7, 5)).is_empty());
        // 7 GCs within 300 s: some two are less than 60 s apart.
        let events = e.observe("h", &gc(300_000, 7, 12));
        assert_eq!(brief(&events), [(AlertKind::FullGcFrequent, true, 300_000)]);
        assert!(events[0].message.contains("7 full GCs within 300 s"));
    }

    #[test]
    fn a_counter_going_down_is_a_new_jvm() {
        let mut e = AlertEngine::new(gc_rules());
        // Against the old JVM's 40, the new one's counts mean nothing.
        let events = feed(&mut e, "h", [gc(0, 7, 40), gc(10_000, 7, 1)]);
        assert!(events.is_empty());
        let events = e.observe("h", &gc(20_000, 7, 2));
        assert!(events.is_empty(), "one GC since the restart");
        let events = e.observe("h", &gc(30_000, 7, 3));
        assert_eq!(brief(&events), [(AlertKind::FullGcFrequent, true, 30_000)]);
    }

    #[test]
    fn a_new_pid_is_a_new_jvm_even_with_a_higher_count() {
        let mut e = AlertEngine::new(gc_rules());
        assert!(e.observe("h", &gc(0, 7, 1)).is_empty());
        assert!(e.observe("h", &gc(10_000, 8, 9)).is_empty());
        assert!(e.observe("h", &gc(20_000, 8, 10)).is_empty());
        assert!(e.firing().is_empty());
    }

    #[test]
    fn jvm_gone_for_a_while_keeps_the_history() {
        let mut e = AlertEngine::new(gc_rules());
        let no_jvm = |ts_ms| HostSample {
            ts_ms,
            app: Some(AppStats {
                identifier: "shop".into(),
                pid: Some(7),
                jvm: None,
                jvm_error: Some("perf data disabled".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let no_app = |ts_ms| HostSample {
            ts_ms,
            ..Default::default()
        };
        let events = feed(
            &mut e,
            "h",
            [gc(0, 7, 3), no_jvm(10_000), no_app(20_000), no_jvm(30_000)],
        );
        assert!(events.is_empty());
        let events = e.observe("h", &gc(40_000, 7, 5));
        assert_eq!(brief(&events), [(AlertKind::FullGcFrequent, true, 40_000)]);
        // While firing, losing the JVM neither ends nor repeats the episode.
        let events = feed(&mut e, "h", (5..50).map(|i| no_app(i * 10_000)));
        assert!(events.is_empty());
        assert_eq!(e.firing().len(), 1);
    }

    #[test]
    fn full_gc_clears_after_one_and_a_half_windows_without_one() {
        let mut e = AlertEngine::new(gc_rules());
        feed(&mut e, "h", [gc(0, 7, 0), gc(10_000, 7, 2)]);
        assert_eq!(e.firing().len(), 1);
        // Quiet for 89 s: not yet.
        assert!(feed(&mut e, "h", (2..=9).map(|i| gc(i * 10_000 + 9_000, 7, 2))).is_empty());
        let events = e.observe("h", &gc(100_000, 7, 2));
        assert_eq!(
            brief(&events),
            [(AlertKind::FullGcFrequent, false, 100_000)]
        );
        assert_eq!(
            events[0].message,
            r#"JVM of "shop" (pid 7): no full GC for 90 s (threshold: more often than once per 60 s)"#
        );
        // One GC later does not restart the episode.
        assert!(e.observe("h", &gc(110_000, 7, 3)).is_empty());
    }

    #[test]
    fn full_gc_every_seventy_seconds_keeps_an_episode_open() {
        let mut e = AlertEngine::new(gc_rules());
        feed(&mut e, "h", [gc(0, 7, 0), gc(10_000, 7, 2)]);
        // Fine by the rule, but inside the hysteresis band.
        let samples = (2..300u64).map(|s| gc(s * 5000, 7, 2 + (s * 5 - 10) / 70));
        assert!(feed(&mut e, "h", samples).is_empty());
        assert_eq!(e.firing().len(), 1);
    }

    #[test]
    fn a_restarted_jvm_ends_the_episode_only_once_it_is_quiet() {
        let mut e = AlertEngine::new(gc_rules());
        feed(&mut e, "h", [gc(0, 7, 0), gc(10_000, 7, 2)]);
        assert!(e.observe("h", &gc(20_000, 8, 0)).is_empty());
        assert!(e.observe("h", &gc(100_000, 8, 0)).is_empty());
        let events = e.observe("h", &gc(110_000, 8, 0));
        assert_eq!(
            brief(&events),
            [(AlertKind::FullGcFrequent, false, 110_000)]
        );
    }

    #[test]
    fn full_gc_message_without_a_pid() {
        let mut e = AlertEngine::new(gc_rules());
        let no_pid = |ts_ms, n| {
            let mut s = gc(ts_ms, 0, n);
            if let Some(app) = &mut s.app {
                app.pid = None;
            }
            s
        };
        let events = feed(&mut e, "h", [no_pid(0, 0), no_pid(500, 2)]);
        assert_eq!(
            events[0].message,
            r#"JVM of "shop": 2 full GCs within 500 ms (threshold: more often than once per 60 s)"#
        );
    }

    // --- silence ---

    #[test]
    fn a_silent_host_fires_once_and_clears_on_its_next_sample() {
        let mut e = AlertEngine::new(silent_rules());
        assert!(e.observe("h", &cpu(1_000, 1.0)).is_empty());
        assert!(e.tick(60_000).is_empty());
        assert!(e.tick(120_999).is_empty());
        let events = e.tick(121_000);
        assert_eq!(brief(&events), [(AlertKind::HostSilent, true, 121_000)]);
        assert_eq!(
            events[0].message,
            "No data from host for 120 s (threshold 120 s)"
        );
        assert!(e.tick(500_000).is_empty());
        assert_eq!(e.firing(), [("h".into(), AlertKind::HostSilent, 121_000)]);
        let events = e.observe("h", &cpu(501_000, 1.0));
        assert_eq!(brief(&events), [(AlertKind::HostSilent, false, 501_000)]);
        assert!(e.firing().is_empty());
        // Heard again: a fresh silence is needed.
        assert!(e.tick(502_000).is_empty());
        assert!(e.tick(620_999).is_empty());
        assert_eq!(
            brief(&e.tick(621_000)),
            [(AlertKind::HostSilent, true, 621_000)]
        );
    }

    #[test]
    fn a_host_that_keeps_sending_is_never_silent() {
        let mut e = AlertEngine::new(silent_rules());
        for s in 0..1000u64 {
            assert!(e.observe("h", &cpu(s * 1000, 1.0)).is_empty());
            if s % 5 == 0 {
                assert!(e.tick(s * 1000 + 500).is_empty());
            }
        }
    }

    #[test]
    fn agent_clock_skew_neither_fakes_nor_hides_silence() {
        const HOUR: u64 = 3_600_000;
        let now0 = 10 * HOUR;
        // Behind by an hour, yet sending every second.
        let mut e = AlertEngine::new(silent_rules());
        e.tick(now0);
        for s in 1..=600u64 {
            e.observe("late", &cpu(now0 - HOUR + s * 1000, 1.0));
            assert!(e.tick(now0 + s * 1000).is_empty());
        }
        // Ahead by an hour, then silent.
        let mut e = AlertEngine::new(silent_rules());
        e.tick(now0);
        e.observe("early", &cpu(now0 + HOUR, 1.0));
        assert!(e.tick(now0 + 1000).is_empty());
        assert!(e.tick(now0 + 120_999).is_empty());
        assert_eq!(
            brief(&e.tick(now0 + 121_000)),
            [(AlertKind::HostSilent, true, now0 + 121_000)]
        );
    }

    #[test]
    fn an_out_of_order_sample_still_proves_the_host_is_alive() {
        let mut e = AlertEngine::new(silent_rules());
        e.observe("h", &cpu(100_000, 1.0));
        e.tick(100_000);
        assert_eq!(e.tick(220_000).len(), 1);
        let events = e.observe("h", &cpu(50_000, 1.0));
        assert_eq!(brief(&events), [(AlertKind::HostSilent, false, 100_000)]);
    }

    #[test]
    fn unknown_hosts_are_never_silent_and_a_backward_clock_does_not_panic() {
        let mut e = AlertEngine::new(silent_rules());
        assert!(e.tick(1_000_000).is_empty());
        e.observe("h", &cpu(999_000, 1.0));
        assert!(e.tick(10).is_empty());
        assert!(e.tick(0).is_empty());
        assert_eq!(e.tick(u64::MAX).len(), 1);
    }

    // --- rule changes, forgetting, several hosts ---

    #[test]
    fn removing_a_rule_mid_episode_clears_on_the_next_sample() {
        let mut e = AlertEngine::new(AlertRules::default());
        feed(&mut e, "h", (0..=60).map(|i| cpu(i * 1000, 95.0)));
        assert_eq!(e.firing().len(), 1);
        e.set_rules(AlertRules {
            cpu_busy_above_pct: None,
            ..AlertRules::default()
        });
        assert!(e.firing().len() == 1, "takes effect on the next sample");
        let events = e.observe("h", &cpu(61_000, 99.0));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, false, 61_000)]);
        assert_eq!(events[0].message, "CPU rule removed");
        assert!(e.firing().is_empty());
        // Back on: its streak starts from scratch.
        e.set_rules(AlertRules::default());
        assert!(feed(&mut e, "h", (62..121).map(|i| cpu(i * 1000, 95.0))).is_empty());
        assert_eq!(e.observe("h", &cpu(122_000, 95.0)).len(), 1);
    }

    #[test]
    fn removing_rules_clears_at_the_next_tick_for_every_host() {
        let mut e = AlertEngine::new(AlertRules::default());
        for host in ["a", "b"] {
            feed(&mut e, host, (0..=60).map(|i| cpu(i * 1000, 95.0)));
        }
        e.tick(70_000);
        assert_eq!(e.tick(300_000).len(), 2, "both silent");
        assert_eq!(e.firing().len(), 4);
        e.set_rules(AlertRules {
            cpu_busy_above_pct: Some(f32::NAN),
            silent_after_secs: None,
            ..AlertRules::default()
        });
        let events = e.tick(301_000);
        let mut got: Vec<_> = events
            .iter()
            .map(|ev| (ev.host.as_str(), ev.kind, ev.firing))
            .collect();
        got.sort_by_key(|&(h, k, _)| (h, k as u8));
        assert_eq!(
            got,
            [
                ("a", AlertKind::CpuHigh, false),
                ("a", AlertKind::HostSilent, false),
                ("b", AlertKind::CpuHigh, false),
                ("b", AlertKind::HostSilent, false),
            ]
        );
        assert!(e.firing().is_empty());
        assert!(e.tick(302_000).is_empty());
    }

    #[test]
    fn a_changed_threshold_applies_to_the_open_episode() {
        let mut e = AlertEngine::new(cpu_rules());
        feed(&mut e, "h", (0..=60).map(|i| cpu(i * 1000, 95.0)));
        e.set_rules(AlertRules {
            cpu_busy_above_pct: Some(70.0),
            ..cpu_rules()
        });
        // 80 would have cleared the old episode (<= 85), not under 70.
        assert!(e.observe("h", &cpu(61_000, 80.0)).is_empty());
        let events = e.observe("h", &cpu(62_000, 65.0));
        assert_eq!(brief(&events), [(AlertKind::CpuHigh, false, 62_000)]);
    }

    #[test]
    fn a_longer_window_applies_to_a_running_streak() {
        let mut e = AlertEngine::new(cpu_rules());
        feed(&mut e, "h", (0..50).map(|i| cpu(i * 1000, 95.0)));
        e.set_rules(AlertRules {
            cpu_for_secs: 100,
            ..cpu_rules()
        });
        assert!(feed(&mut e, "h", (50..100).map(|i| cpu(i * 1000, 95.0))).is_empty());
        assert_eq!(e.observe("h", &cpu(100_000, 95.0)).len(), 1);
    }

    #[test]
    fn forget_host_drops_its_episodes_silently() {
        let mut e = AlertEngine::new(AlertRules::default());
        feed(&mut e, "gone", (0..=60).map(|i| cpu(i * 1000, 95.0)));
        feed(&mut e, "kept", (0..=60).map(|i| cpu(i * 1000, 95.0)));
        e.tick(61_000);
        e.forget_host("gone");
        e.forget_host("never-seen");
        assert_eq!(e.firing(), [("kept".into(), AlertKind::CpuHigh, 60_000)]);
        // Not reported silent, and back as new it needs a whole window.
        assert_eq!(
            e.tick(1_000_000)
                .iter()
                .map(|ev| ev.host.as_str())
                .collect::<Vec<_>>(),
            ["kept"]
        );
        assert!(feed(&mut e, "gone", (0..60).map(|i| cpu(i * 1000, 95.0))).is_empty());
    }

    #[test]
    fn hosts_do_not_share_state() {
        let mut e = AlertEngine::new(cpu_rules());
        for i in 0..=60 {
            let ts = i * 1000;
            e.observe("busy", &cpu(ts, 95.0));
            // An older timestamp on another host is not out of order.
            assert!(e.observe("idle", &cpu(ts / 2, 5.0)).is_empty());
        }
        assert_eq!(e.firing(), [("busy".into(), AlertKind::CpuHigh, 60_000)]);
    }

    #[test]
    fn one_sample_can_start_several_kinds_in_a_fixed_order() {
        let mut e = AlertEngine::new(AlertRules {
            cpu_for_secs: 1,
            mem_for_secs: 1,
            ..AlertRules::default()
        });
        let both = |ts_ms: u64, n: u64| HostSample {
            cpu: cpu(ts_ms, 99.0).cpu,
            mem: mem(ts_ms, 1).mem,
            ..gc(ts_ms, 1, n)
        };
        e.observe("h", &both(0, 0));
        let events = e.observe("h", &both(1000, 2));
        assert_eq!(
            brief(&events),
            [
                (AlertKind::CpuHigh, true, 1000),
                (AlertKind::MemoryLow, true, 1000),
                (AlertKind::FullGcFrequent, true, 1000),
            ]
        );
    }

    // --- property: episodes alternate ---

    /// xorshift64*: deterministic and dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        fn maybe<T>(&mut self, v: T) -> Option<T> {
            self.chance(80).then_some(v)
        }
    }

    fn random_sample(rng: &mut Rng, ts_ms: u64, pid: u32, gc_count: u64) -> HostSample {
        let pct = |rng: &mut Rng| match rng.below(20) {
            0 => f32::NAN,
            1 => f32::INFINITY,
            // Clustered around the thresholds to exercise hysteresis.
            _ => rng.below(1000) as f32 / 10.0,
        };
        let total = [0, 1, 16 * GIB][rng.below(3) as usize];
        HostSample {
            ts_ms,
            cpu: rng.chance(90).then(|| CpuStats {
                busy_pct: if rng.chance(50) {
                    85.0 + pct(rng) / 10.0
                } else {
                    pct(rng)
                },
                ..Default::default()
            }),
            mem: rng.chance(90).then(|| MemStats {
                total_bytes: total,
                available_bytes: total / 100 * rng.below(25),
                ..Default::default()
            }),
            app: rng.chance(90).then(|| AppStats {
                identifier: "app".into(),
                pid: Some(pid),
                jvm: rng.chance(90).then_some(JvmStats {
                    full_gc_count: gc_count,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn random_rules(rng: &mut Rng) -> AlertRules {
        let (cpu, mem) = (80.0 + rng.below(20) as f32, rng.below(20) as f32);
        let (gc, silent) = (rng.below(60), rng.below(60));
        AlertRules {
            cpu_busy_above_pct: rng.maybe(cpu),
            cpu_for_secs: rng.below(30),
            mem_available_below_pct: rng.maybe(mem),
            mem_for_secs: rng.below(30),
            full_gc_min_interval_secs: rng.maybe(gc),
            silent_after_secs: rng.maybe(silent),
        }
    }

    #[test]
    fn random_streams_alternate_fire_and_clear_per_host_and_kind() {
        const HOSTS: [&str; 3] = ["a", "b", "c"];
        // Starts and ends per kind over all seeds, to show every rule took
        // part.
        let mut seen = [[0u32; 2]; 4];
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut engine = AlertEngine::new(random_rules(&mut rng));
            // What the events said so far: open episodes and their start.
            let mut open: BTreeMap<(String, u8), (AlertKind, u64)> = BTreeMap::new();
            let mut ts = [0u64; 3];
            let mut gc = [0u64; 3];
            let mut pid = [1u32; 3];
            let mut now = 0u64;
            for step in 0..3000 {
                let h = rng.below(3) as usize;
                let events = match rng.below(100) {
                    0..=1 => {
                        engine.set_rules(random_rules(&mut rng));
                        Vec::new()
                    }
                    2 => {
                        engine.forget_host(HOSTS[h]);
                        open.retain(|(host, _), _| host != HOSTS[h]);
                        Vec::new()
                    }
                    3..=14 => {
                        now += rng.below(40_000);
                        engine.tick(now)
                    }
                    _ => {
                        match rng.below(50) {
                            0 => ts[h] = ts[h].saturating_sub(rng.below(20_000)),
                            1 => ts[h] += 120_000,
                            _ => ts[h] += 1 + rng.below(3000),
                        }
                        match rng.below(40) {
                            0 => gc[h] = gc[h].saturating_sub(rng.below(5)),
                            1 => pid[h] += 1,
                            _ => gc[h] += u64::from(rng.chance(15)) * (1 + rng.below(2)),
                        }
                        let sample = random_sample(&mut rng, ts[h], pid[h], gc[h]);
                        let events = engine.observe(HOSTS[h], &sample);
                        assert!(events.iter().all(|e| e.host == HOSTS[h]));
                        events
                    }
                };
                for ev in events {
                    let key = (ev.host.clone(), ev.kind as u8);
                    seen[ev.kind as usize][usize::from(ev.firing)] += 1;
                    if ev.firing {
                        let before = open.insert(key, (ev.kind, ev.at_ms));
                        assert!(
                            before.is_none(),
                            "seed {seed} step {step}: fired twice: {ev:?}"
                        );
                    } else {
                        assert!(
                            open.remove(&key).is_some(),
                            "seed {seed} step {step}: cleared without firing: {ev:?}"
                        );
                    }
                    assert!(!ev.message.is_empty());
                }
                let expected: Vec<_> = open
                    .iter()
                    .map(|((h, _), (k, since))| (h.clone(), *k, *since))
                    .collect();
                let mut actual = engine.firing();
                actual.sort_by_key(|(h, k, _)| (h.clone(), *k as u8));
                assert_eq!(actual, expected, "seed {seed} step {step}");
            }
        }
        assert!(
            seen.iter().flatten().all(|&n| n >= 100),
            "[[ends, starts]; kinds]: {seen:?}"
        );
    }
}
