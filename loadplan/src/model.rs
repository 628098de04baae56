//! The plan model: a JMeter test plan reduced to the tree MyPlatform edits
//! (TestPlan -> ThreadGroup -> Controller -> HttpSampler, with header sets,
//! CSV data sets, cookies, variables, assertions and extractors), plus the
//! run settings an uploaded JMeter zip shares with a plan.
//!
//! Plain data with serde: the controller stores it, the JSON API and the
//! pages exchange it, `jmx` turns it into a .jmx and back. Text fields keep
//! `${var}` references verbatim; nothing here resolves them.

use serde::{Deserialize, Serialize};

/// A whole plan as the editor shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestPlan {
    pub name: String,
    pub comment: String,
    /// JMeter's "Run tearDown Thread Groups after shutdown of main threads".
    pub teardown_on_shutdown: bool,
    /// JMeter's "Run Thread Groups consecutively".
    pub serialize_thread_groups: bool,
    pub run: RunSettings,
    /// User-defined variables of the test plan, in order.
    pub variables: Vec<Variable>,
    pub enabled: bool,
    pub thread_groups: Vec<ThreadGroup>,
    /// Header sets samplers refer to by name.
    pub header_sets: Vec<HeaderSet>,
}

impl Default for TestPlan {
    fn default() -> Self {
        TestPlan {
            name: String::new(),
            comment: String::new(),
            teardown_on_shutdown: true,
            serialize_thread_groups: false,
            run: RunSettings::default(),
            variables: Vec::new(),
            enabled: true,
            thread_groups: Vec::new(),
            header_sets: Vec::new(),
        }
    }
}

/// How a plan or an uploaded zip runs: what a task is started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    pub load: Load,
    /// How long the load runs, ramp-up included.
    pub duration_secs: u32,
    pub schedule: Schedule,
    /// Inventory id of the room whose load generators run it.
    pub room_id: Option<i64>,
    /// How many generators of that room take part.
    pub generators: u32,
    /// Keep a JTL of every request (downloadable), not only the summaries.
    pub debug: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            load: Load::Tps { tps: 10.0 },
            duration_secs: 60,
            schedule: Schedule::Manual,
            room_id: None,
            generators: 1,
            debug: false,
        }
    }
}

/// The run type: a fixed number of threads, or a target rate that the
/// platform holds with a Constant Throughput Timer (threads sized for it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Load {
    /// Threads of every enabled thread group, summed over all generators.
    Threads { threads: u32 },
    /// Samples per second of the whole plan, summed over all generators.
    Tps { tps: f64 },
}

/// Manual: a person starts and stops the task. Automatic: the steps start
/// it, change its rate and it stops `duration_secs` after the first step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    Manual,
    Automatic { steps: Vec<ScheduleStep> },
}

/// From `at` on, the load is `percent` of the target (TPS mode; in thread
/// mode only one step, the start, is allowed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleStep {
    /// Unix time, seconds.
    pub at: i64,
    pub percent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThreadGroup {
    pub name: String,
    pub comment: String,
    pub ramp_up_secs: u32,
    pub csv_data_sets: Vec<CsvDataSet>,
    /// An HTTP Cookie Manager for the group: cookies set by responses go
    /// back with later requests of the same thread.
    pub cookies: bool,
    /// Start every iteration with no cookies.
    pub clear_cookies_each_iteration: bool,
    pub enabled: bool,
    pub controllers: Vec<Controller>,
}

impl Default for ThreadGroup {
    fn default() -> Self {
        ThreadGroup {
            name: String::new(),
            comment: String::new(),
            ramp_up_secs: 0,
            csv_data_sets: Vec::new(),
            cookies: true,
            clear_cookies_each_iteration: false,
            enabled: true,
            controllers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvDataSet {
    /// The file's name inside the task's artifact (`data/<file>`), as the
    /// user uploaded it; the controller keeps the contents.
    pub file: String,
    /// Variable names, in column order.
    pub variable_names: Vec<String>,
    /// One character, or `\t`.
    pub delimiter: String,
    /// The first line names the columns (and `variable_names` may be empty).
    pub ignore_first_line: bool,
    pub recycle_on_eof: bool,
    pub stop_thread_on_eof: bool,
    pub sharing: Sharing,
}

impl Default for CsvDataSet {
    fn default() -> Self {
        CsvDataSet {
            file: String::new(),
            variable_names: Vec::new(),
            delimiter: ",".into(),
            ignore_first_line: false,
            recycle_on_eof: true,
            stop_thread_on_eof: false,
            sharing: Sharing::AllThreads,
        }
    }
}

/// JMeter's CSV Data Set "Sharing mode".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    #[default]
    AllThreads,
    CurrentThreadGroup,
    CurrentThread,
}

/// A Simple Controller: a named, switchable list of samplers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Controller {
    pub name: String,
    pub enabled: bool,
    pub samplers: Vec<HttpSampler>,
}

impl Default for Controller {
    fn default() -> Self {
        Controller {
            name: String::new(),
            enabled: true,
            samplers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSampler {
    /// The sampler's label: results are reported per label.
    pub name: String,
    pub protocol: Protocol,
    pub host: String,
    /// Empty: the protocol's default. Otherwise a number or a `${var}`.
    pub port: String,
    pub path: String,
    pub method: Method,
    pub body: Body,
    /// Name of one of the plan's header sets.
    pub header_set: Option<String>,
    pub assertion: Option<Assertion>,
    pub extractors: Vec<Extractor>,
    /// Empty (JMeter's default) or `UTF-8`.
    pub content_encoding: String,
    pub enabled: bool,
}

impl Default for HttpSampler {
    fn default() -> Self {
        HttpSampler {
            name: String::new(),
            protocol: Protocol::Http,
            host: String::new(),
            port: String::new(),
            path: "/".into(),
            method: Method::Get,
            body: Body::None,
            header_set: None,
            assertion: None,
            extractors: Vec::new(),
            content_encoding: String::new(),
            enabled: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Http,
    Https,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
        }
    }
}

/// The request's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    #[default]
    None,
    /// A raw body sent as is (JMeter's "Body Data"); usually JSON.
    Json { text: String },
    /// Name/value pairs: the query string for GET, a form body otherwise.
    Form { fields: Vec<Variable> },
}

/// A Response Assertion on the response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    pub kind: AssertionKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssertionKind {
    Contains,
    Equals,
    /// The whole body matches the regular expression.
    Matches,
}

/// A post-processor that reads the response and sets `variable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extractor {
    pub kind: ExtractorKind,
    /// A JSON path (`$.token`) or a regular expression with one group.
    pub expression: String,
    pub variable: String,
    /// Value when nothing matches.
    #[serde(default)]
    pub default: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractorKind {
    JsonPath,
    Regex,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderSet {
    pub name: String,
    pub headers: Vec<Variable>,
}
