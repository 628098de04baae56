//! JMeter's .jmx files: made from a plan ([`generate`]), read back into a
//! plan ([`import()`]), and made ready for a run ([`prepare`]).
//!
//! Owns the mapping between the plan model and JMeter 5.6's test elements.
//! Must not: touch files, processes or the network (callers hand in bytes
//! and get bytes back), resolve `${var}` references (they are kept
//! verbatim), or build XML text by hand — every document goes through
//! quick-xml's reader and writer in [`xml`].
//!
//! # What a generated plan looks like
//! One `ThreadGroup` per thread group (disabled ones `enabled="false"`),
//! scheduler on with the run's duration and an endless loop; its CSV data
//! sets (`data/<file>`, resolved by JMeter against the .jmx's directory),
//! a cookie manager, and one `GenericController` per controller holding
//! `HTTPSamplerProxy`s, each with its header set as a `HeaderManager`, a
//! `ResponseAssertion` and JSON / regex extractors. Header sets also live
//! in a disabled Test Fragment named [`HEADER_SETS_FRAGMENT`], so sets no
//! sampler uses survive export and import. What JMeter has no place for
//! (schedule, room, generators, debug) is kept as JSON in the Test Plan's
//! `MyPlatform.run` property; what JMeter has a place for (threads, rate,
//! duration) is read back from JMeter's own elements.
//!
//! # Rate: one schedule for the whole plan
//! In TPS mode every standard thread group gets a Constant Throughput
//! Timer named [`THROUGHPUT_TIMER`] in calcMode 3, "all active threads
//! (shared)": JMeter keeps one schedule for every such timer of the JVM,
//! so the timers together pace the whole plan to the target, whether the
//! groups run together or one after the other (serialize). (calcMode 4
//! keeps one schedule per thread group: with several groups each would
//! run at the full target.) setUp/tearDown groups are not paced. Threads
//! are sized with Little's law, see [`Sizing`].
//!
//! # Run properties (passed by agent-jmeter with `-J`)
//! A prepared .jmx serves every generator of a task; each generator runs it
//! with its own values ([`RunProperties::for_generator`]):
//! - `myplatform.threads` ([`PROP_THREADS`]): threads of each standard
//!   thread group on this generator;
//! - `myplatform.throughput` ([`PROP_THROUGHPUT`]): TPS mode only, samples
//!   per **minute** of the whole plan on this generator (JMeter's unit); the
//!   timers re-read it while running, so setting it live (BeanShell
//!   `setprop`) changes the rate;
//! - `myplatform.duration` ([`PROP_DURATION`]): seconds each thread group
//!   runs (the scheduler is on).
//!
//! Each is written `${__P(name,default)}`, the default being one
//! generator's share of an even split, so the file also runs by hand.

mod generate;
mod import;
mod prepare;
mod xml;

pub use generate::generate;
pub use import::{Imported, Outcome, Unsupported, import};
pub use prepare::{Note, Prepared, RunProperties, prepare};

/// Threads of each standard thread group on one generator.
pub const PROP_THREADS: &str = "myplatform.threads";
/// Samples per minute of the whole plan on one generator (TPS mode).
pub const PROP_THROUGHPUT: &str = "myplatform.throughput";
/// Seconds each thread group runs.
pub const PROP_DURATION: &str = "myplatform.duration";

/// Name of the Constant Throughput Timer MyPlatform adds and updates.
pub const THROUGHPUT_TIMER: &str = "MyPlatform throughput";
/// Name of the disabled Test Fragment holding the plan's header sets.
pub const HEADER_SETS_FRAGMENT: &str = "MyPlatform header sets";
/// Test Plan property holding what JMeter has no element for.
pub const RUN_SETTINGS_PROP: &str = "MyPlatform.run";

/// Largest .jmx read: real plans are kilobytes to a few megabytes.
pub const MAX_JMX_BYTES: usize = 16 * 1024 * 1024;

/// How threads are sized for a target rate (TPS mode).
///
/// Little's law: a group that must deliver `tps` samples per second, each
/// taking `expected_rt_ms`, keeps `tps × rt` requests in flight; threads =
/// ceil(tps × rt × [`HEADROOM`]), at least 1, at most
/// `max_threads_per_generator`. The rate is the group's share of the
/// generator's rate: all of it when groups run consecutively, an even part
/// when they run together; scheduled steps above 100 % size for the
/// highest step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// Expected response time of one sample, milliseconds.
    pub expected_rt_ms: u32,
    /// Ceiling of threads per thread group on one generator.
    pub max_threads_per_generator: u32,
}

/// Spare threads over Little's law: response times vary, and a thread that
/// is late makes the shared timer hand its slot to another.
pub const HEADROOM: f64 = 1.2;

impl Default for Sizing {
    fn default() -> Self {
        Sizing {
            expected_rt_ms: 500,
            // About the most one JMeter with its default 1 GiB heap keeps
            // busy; MISSION.md advises ~1000 requests/s per generator.
            max_threads_per_generator: 1000,
        }
    }
}

impl Sizing {
    /// Threads for one group delivering `tps` samples per second.
    pub fn threads_for(&self, tps: f64) -> u32 {
        let rt = f64::from(self.expected_rt_ms) / 1000.0;
        let wanted = (tps * rt * HEADROOM).ceil();
        let cap = self.max_threads_per_generator.max(1);
        if !wanted.is_finite() || wanted >= f64::from(cap) {
            cap
        } else {
            (wanted as u32).max(1)
        }
    }
}

/// Why a .jmx could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JmxError {
    #[error("the file is {size} bytes; at most {limit} bytes are accepted")]
    TooLarge { size: usize, limit: usize },
    #[error("not UTF-8 text (line {line}, column {column})")]
    NotUtf8 { line: usize, column: usize },
    #[error("malformed XML at line {line}, column {column}: {message}")]
    Xml {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "a DOCTYPE at line {line}, column {column}: JMeter files have none, and \
         entity declarations are refused (they can read local files or expand without bound)"
    )]
    DocType { line: usize, column: usize },
    #[error("the entity &{name}; at line {line}, column {column} is not one of XML's own five")]
    Entity {
        name: String,
        line: usize,
        column: usize,
    },
    #[error("nested deeper than {limit} elements")]
    TooDeep { limit: usize },
    #[error("more than {limit} XML elements")]
    TooManyElements { limit: usize },
    #[error("not a JMeter test plan: {0}")]
    NotJmx(String),
}

/// Line and column (1-based, columns in characters) of byte `offset`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
