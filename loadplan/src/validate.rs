//! Checks a plan or run settings before they are stored or run, and says
//! what is wrong field by field (`thread_groups[0].controllers[1].samplers[0].port:
//! ...`). Pure: the caller passes the limits and the clock.

use std::collections::HashSet;

use crate::model::{
    Body, CsvDataSet, Extractor, ExtractorKind, HeaderSet, HttpSampler, Load, RunSettings,
    Schedule, TestPlan, ThreadGroup, Variable,
};

/// Ceilings a deployment sets (controller config); the defaults suit one
/// controller driving a few dozen generators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Highest target TPS of one plan, all generators together.
    pub max_tps: f64,
    /// Highest thread count of one plan, all generators together.
    pub max_threads: u32,
    pub max_duration_secs: u32,
    pub max_generators: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tps: 100_000.0,
            max_threads: 20_000,
            max_duration_secs: 7 * 24 * 3600,
            max_generators: 100,
        }
    }
}

/// One thing wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Path of the field, e.g. `run.load.tps` or `thread_groups[1].name`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found, in tree order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Problems(pub Vec<Problem>);

#[derive(Default)]
struct Report {
    problems: Vec<Problem>,
}

impl Report {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn finish(self) -> Result<(), Problems> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(self.problems))
        }
    }
}

const MAX_NAME: usize = 200;
const MAX_TEXT: usize = 1024 * 1024;

/// Checks a plan as stored: every field well-formed and within `limits`,
/// and an automatic schedule not in the past at `now` (unix seconds).
/// A plan may still be empty (being built); see [`check_runnable`].
pub fn check_plan(plan: &TestPlan, limits: &Limits, now: i64) -> Result<(), Problems> {
    let mut r = Report::default();
    name(&mut r, "name", &plan.name);
    text(&mut r, "comment", &plan.comment);
    run(&mut r, "run", &plan.run, limits, now);
    variables(&mut r, "variables", &plan.variables);
    let mut seen = HashSet::new();
    for (i, set) in plan.header_sets.iter().enumerate() {
        let at = format!("header_sets[{i}]");
        header_set(&mut r, &at, set);
        if !seen.insert(set.name.as_str()) {
            r.add(
                format!("{at}.name"),
                format!("\"{}\" is used twice", set.name),
            );
        }
    }
    let mut seen = HashSet::new();
    for (i, group) in plan.thread_groups.iter().enumerate() {
        let at = format!("thread_groups[{i}]");
        thread_group(&mut r, &at, group, plan, limits);
        if !seen.insert(group.name.as_str()) {
            r.add(
                format!("{at}.name"),
                format!("\"{}\" is used twice", group.name),
            );
        }
    }
    r.finish()
}

/// What a run needs beyond a valid plan: something enabled to run and a
/// room to run it in.
pub fn check_runnable(plan: &TestPlan) -> Result<(), Problems> {
    let mut r = Report::default();
    runnable_settings(&mut r, plan);
    let runs_something = plan.thread_groups.iter().any(|g| {
        g.enabled
            && g.controllers
                .iter()
                .any(|c| c.enabled && c.samplers.iter().any(|s| s.enabled))
    });
    if !runs_something {
        r.add(
            "thread_groups",
            "nothing to run: no enabled sampler in an enabled controller of an enabled thread group",
        );
    }
    r.finish()
}

/// What a run needs whatever the plan's kind: enabled, and a room. (An
/// editor plan also needs something enabled to run: [`check_runnable`].)
pub fn check_runnable_settings(plan: &TestPlan) -> Result<(), Problems> {
    let mut r = Report::default();
    runnable_settings(&mut r, plan);
    r.finish()
}

fn runnable_settings(r: &mut Report, plan: &TestPlan) {
    if !plan.enabled {
        r.add("enabled", "the plan is disabled");
    }
    if plan.run.room_id.is_none() {
        r.add("run.room_id", "choose the room of the load generators");
    }
}

/// Checks run settings alone (an uploaded zip has only these).
pub fn check_run(settings: &RunSettings, limits: &Limits, now: i64) -> Result<(), Problems> {
    let mut r = Report::default();
    run(&mut r, "run", settings, limits, now);
    r.finish()
}

fn name(r: &mut Report, at: &str, value: &str) {
    if value.trim().is_empty() {
        r.add(at, "must not be empty");
    } else if value.chars().count() > MAX_NAME {
        r.add(at, format!("at most {MAX_NAME} characters"));
    } else if value.chars().any(char::is_control) {
        r.add(at, "must not contain control characters");
    }
}

fn text(r: &mut Report, at: &str, value: &str) {
    if value.len() > MAX_TEXT {
        r.add(at, format!("at most {} KiB", MAX_TEXT / 1024));
    }
}

/// A JMeter variable name: what `${name}` can refer to.
fn variable_name(r: &mut Report, at: &str, value: &str) {
    if value.is_empty() {
        r.add(at, "must not be empty");
    } else if value.len() > MAX_NAME {
        r.add(at, format!("at most {MAX_NAME} characters"));
    } else if !value
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        r.add(
            at,
            format!("\"{value}\" is not a variable name (letters, digits, _ - . only)"),
        );
    }
}

fn run(r: &mut Report, at: &str, s: &RunSettings, limits: &Limits, now: i64) {
    match s.load {
        Load::Tps { tps } => {
            if !tps.is_finite() || tps <= 0.0 {
                r.add(format!("{at}.load.tps"), "must be a number above 0");
            } else if tps > limits.max_tps {
                r.add(
                    format!("{at}.load.tps"),
                    format!(
                        "{tps} is above this controller's ceiling of {}",
                        limits.max_tps
                    ),
                );
            }
        }
        Load::Threads { threads } => {
            if threads == 0 {
                r.add(format!("{at}.load.threads"), "must be at least 1");
            } else if threads > limits.max_threads {
                r.add(
                    format!("{at}.load.threads"),
                    format!(
                        "{threads} is above this controller's ceiling of {}",
                        limits.max_threads
                    ),
                );
            } else if threads < s.generators {
                r.add(
                    format!("{at}.load.threads"),
                    format!(
                        "{threads} threads cannot be shared by {} generators (each needs one)",
                        s.generators
                    ),
                );
            }
        }
    }
    if s.duration_secs == 0 {
        r.add(format!("{at}.duration_secs"), "must be at least 1 second");
    } else if s.duration_secs > limits.max_duration_secs {
        r.add(
            format!("{at}.duration_secs"),
            format!("at most {} seconds", limits.max_duration_secs),
        );
    }
    if s.generators == 0 {
        r.add(format!("{at}.generators"), "must be at least 1");
    } else if s.generators > limits.max_generators {
        r.add(
            format!("{at}.generators"),
            format!("at most {}", limits.max_generators),
        );
    }
    if let Schedule::Automatic { steps } = &s.schedule {
        let at = format!("{at}.schedule.steps");
        let Some(first) = steps.first() else {
            r.add(
                at,
                "an automatic schedule needs at least one step (its start)",
            );
            return;
        };
        if first.at < now {
            r.add(format!("{at}[0].at"), "the start is in the past");
        }
        if matches!(s.load, Load::Threads { .. }) && steps.len() > 1 {
            r.add(
                at.as_str(),
                "in thread mode a schedule only sets the start; rate steps need TPS mode",
            );
        }
        let end = first.at.saturating_add(i64::from(s.duration_secs));
        for (i, pair) in steps.windows(2).enumerate() {
            if pair[1].at <= pair[0].at {
                r.add(
                    format!("{at}[{}].at", i + 1),
                    "steps must be in time order, each after the one before",
                );
            }
        }
        for (i, step) in steps.iter().enumerate() {
            if step.at >= end {
                r.add(
                    format!("{at}[{i}].at"),
                    "is after the end of the run (start + duration)",
                );
            }
            if step.percent == 0 || step.percent > 1000 {
                r.add(
                    format!("{at}[{i}].percent"),
                    "must be between 1 and 1000 (% of the target)",
                );
            }
        }
    }
}

fn variables(r: &mut Report, at: &str, vars: &[Variable]) {
    let mut seen = HashSet::new();
    for (i, v) in vars.iter().enumerate() {
        variable_name(r, &format!("{at}[{i}].name"), &v.name);
        text(r, &format!("{at}[{i}].value"), &v.value);
        if !seen.insert(v.name.as_str()) {
            r.add(
                format!("{at}[{i}].name"),
                format!("\"{}\" is defined twice", v.name),
            );
        }
    }
}

fn header_set(r: &mut Report, at: &str, set: &HeaderSet) {
    name(r, &format!("{at}.name"), &set.name);
    for (i, h) in set.headers.iter().enumerate() {
        let field = format!("{at}.headers[{i}].name");
        if h.name.is_empty() {
            r.add(field, "must not be empty");
        } else if !h.name.contains("${")
            && !h
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            r.add(field, format!("\"{}\" is not an HTTP header name", h.name));
        }
        if h.value.chars().any(|c| c == '\r' || c == '\n') {
            r.add(
                format!("{at}.headers[{i}].value"),
                "must not contain line breaks",
            );
        }
    }
}

fn thread_group(r: &mut Report, at: &str, g: &ThreadGroup, plan: &TestPlan, limits: &Limits) {
    name(r, &format!("{at}.name"), &g.name);
    text(r, &format!("{at}.comment"), &g.comment);
    if g.ramp_up_secs > limits.max_duration_secs {
        r.add(
            format!("{at}.ramp_up_secs"),
            format!("at most {} seconds", limits.max_duration_secs),
        );
    } else if plan.run.duration_secs > 0 && g.ramp_up_secs > plan.run.duration_secs {
        r.add(
            format!("{at}.ramp_up_secs"),
            format!(
                "{} s of ramp-up is longer than the run ({} s)",
                g.ramp_up_secs, plan.run.duration_secs
            ),
        );
    }
    for (i, csv) in g.csv_data_sets.iter().enumerate() {
        csv_data_set(r, &format!("{at}.csv_data_sets[{i}]"), csv);
    }
    if g.clear_cookies_each_iteration && !g.cookies {
        r.add(
            format!("{at}.clear_cookies_each_iteration"),
            "needs cookies on",
        );
    }
    for (i, c) in g.controllers.iter().enumerate() {
        let at = format!("{at}.controllers[{i}]");
        name(r, &format!("{at}.name"), &c.name);
        for (j, s) in c.samplers.iter().enumerate() {
            sampler(r, &format!("{at}.samplers[{j}]"), s, plan);
        }
    }
}

/// A file name as stored in a task's artifact: one plain component.
pub fn is_plain_file_name(file: &str) -> bool {
    !file.is_empty()
        && file.len() <= 255
        && file != "."
        && file != ".."
        && !file.contains(['/', '\\', '\0'])
        && !file.chars().any(char::is_control)
}

fn csv_data_set(r: &mut Report, at: &str, csv: &CsvDataSet) {
    if csv.file.is_empty() {
        r.add(format!("{at}.file"), "upload a CSV file");
    } else if !is_plain_file_name(&csv.file) {
        r.add(
            format!("{at}.file"),
            format!("\"{}\" is not a plain file name", csv.file),
        );
    }
    if delimiter_char(&csv.delimiter).is_none() {
        r.add(format!("{at}.delimiter"), "one character, or \\t for a tab");
    }
    if csv.variable_names.is_empty() && !csv.ignore_first_line {
        r.add(
            format!("{at}.variable_names"),
            "name the columns, or take the names from the file's first line",
        );
    }
    let mut seen = HashSet::new();
    for (i, v) in csv.variable_names.iter().enumerate() {
        variable_name(r, &format!("{at}.variable_names[{i}]"), v);
        if !seen.insert(v.as_str()) {
            r.add(
                format!("{at}.variable_names[{i}]"),
                format!("\"{v}\" is named twice"),
            );
        }
    }
    if csv.recycle_on_eof && csv.stop_thread_on_eof {
        r.add(
            format!("{at}.stop_thread_on_eof"),
            "has no effect while recycle on EOF is on: choose one",
        );
    }
}

/// The delimiter as JMeter reads it: one character, `\t` spelled out.
pub fn delimiter_char(d: &str) -> Option<char> {
    if d == "\\t" {
        return Some('\t');
    }
    let mut chars = d.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c != '\n' && c != '\r' && c != '"' => Some(c),
        _ => None,
    }
}

/// Checks an uploaded CSV file against its data set's declared delimiter
/// and columns, from its first line: a file written with another delimiter
/// is the usual mistake, and JMeter would silently put whole lines into the
/// first variable.
pub fn check_csv_file(csv: &CsvDataSet, contents: &[u8]) -> Result<(), String> {
    let Some(delim) = delimiter_char(&csv.delimiter) else {
        return Err("the data set's delimiter is not one character".into());
    };
    let text = String::from_utf8_lossy(&contents[..contents.len().min(64 * 1024)]);
    let Some(first) = text.lines().find(|l| !l.trim().is_empty()) else {
        return Err("the file is empty".into());
    };
    let fields = first.split(delim).count();
    let wanted = if csv.ignore_first_line && csv.variable_names.is_empty() {
        0
    } else {
        csv.variable_names.len()
    };
    if wanted > 1 && fields == 1 {
        let other = [',', ';', '\t', '|']
            .into_iter()
            .filter(|&c| c != delim)
            .map(|c| (c, first.split(c).count()))
            .max_by_key(|&(_, n)| n)
            .filter(|&(_, n)| n > 1);
        return Err(match other {
            Some((c, n)) => format!(
                "the first line has no {} but {n} fields separated by {}: is the delimiter {}?",
                show(delim),
                show(c),
                show(c)
            ),
            None => format!(
                "the first line has 1 field with delimiter {}, but {wanted} variables are named",
                show(delim)
            ),
        });
    }
    if wanted > 0 && fields < wanted {
        return Err(format!(
            "the first line has {fields} fields with delimiter {}, but {wanted} variables are named",
            show(delim)
        ));
    }
    Ok(())
}

fn show(c: char) -> String {
    match c {
        '\t' => "tab".into(),
        c => format!("'{c}'"),
    }
}

fn sampler(r: &mut Report, at: &str, s: &HttpSampler, plan: &TestPlan) {
    name(r, &format!("{at}.name"), &s.name);
    let host = s.host.trim();
    if host.is_empty() {
        r.add(format!("{at}.host"), "must not be empty");
    } else if !host.contains("${")
        && (host.contains("://") || host.contains(['/', ' ', '?', '#', '@']))
    {
        r.add(
            format!("{at}.host"),
            format!("\"{host}\": a host name or address only (the protocol, port and path have their own fields)"),
        );
    }
    if !s.port.is_empty() && !s.port.contains("${") {
        match s.port.parse::<u32>() {
            Ok(1..=65535) => {}
            _ => r.add(
                format!("{at}.port"),
                format!("\"{}\" is not a port (1-65535 or a ${{variable}})", s.port),
            ),
        }
    }
    if !s.path.is_empty()
        && !s.path.starts_with('/')
        && !s.path.starts_with("${")
        && !s.path.starts_with("http")
    {
        r.add(format!("{at}.path"), "must start with /");
    }
    if s.path.chars().any(|c| c == ' ' || c.is_control()) {
        r.add(
            format!("{at}.path"),
            "must not contain spaces or control characters (encode them)",
        );
    }
    match &s.body {
        Body::None => {}
        Body::Json { text: t } => text(r, &format!("{at}.body.text"), t),
        Body::Form { fields } => {
            for (i, f) in fields.iter().enumerate() {
                if f.name.is_empty() {
                    r.add(format!("{at}.body.fields[{i}].name"), "must not be empty");
                }
            }
        }
    }
    if let Some(set) = &s.header_set
        && !plan.header_sets.iter().any(|h| &h.name == set)
    {
        r.add(
            format!("{at}.header_set"),
            format!("no header set named \"{set}\" in this plan"),
        );
    }
    if let Some(a) = &s.assertion
        && a.text.is_empty()
    {
        r.add(
            format!("{at}.assertion.text"),
            "what the response must contain, equal or match",
        );
    }
    for (i, e) in s.extractors.iter().enumerate() {
        extractor(r, &format!("{at}.extractors[{i}]"), e);
    }
    if !s.content_encoding.is_empty() && !s.content_encoding.eq_ignore_ascii_case("UTF-8") {
        r.add(
            format!("{at}.content_encoding"),
            "empty (JMeter's default) or UTF-8",
        );
    }
}

fn extractor(r: &mut Report, at: &str, e: &Extractor) {
    variable_name(r, &format!("{at}.variable"), &e.variable);
    if e.expression.is_empty() {
        r.add(format!("{at}.expression"), "must not be empty");
    } else if e.kind == ExtractorKind::JsonPath && !e.expression.starts_with('$') {
        r.add(
            format!("{at}.expression"),
            "a JSON path starts with $ (e.g. $.data.token)",
        );
    }
    // JMeter's JSON extractor splits names, paths and defaults on ';' and
    // fails when the counts differ.
    if e.kind == ExtractorKind::JsonPath {
        for (field, value) in [
            ("variable", &e.variable),
            ("expression", &e.expression),
            ("default", &e.default),
        ] {
            if value.contains(';') {
                r.add(
                    format!("{at}.{field}"),
                    "must not contain ';' (JMeter's JSON extractor splits on it)",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    const NOW: i64 = 1_800_000_000;

    fn plan() -> TestPlan {
        TestPlan {
            name: "checkout".into(),
            run: RunSettings {
                room_id: Some(1),
                ..RunSettings::default()
            },
            header_sets: vec![HeaderSet {
                name: "json".into(),
                headers: vec![Variable {
                    name: "Content-Type".into(),
                    value: "application/json".into(),
                }],
            }],
            thread_groups: vec![ThreadGroup {
                name: "buyers".into(),
                controllers: vec![Controller {
                    name: "flow".into(),
                    samplers: vec![HttpSampler {
                        name: "login".into(),
                        host: "127.0.0.1".into(),
                        port: "${port}".into(),
                        path: "/login".into(),
                        header_set: Some("json".into()),
                        ..HttpSampler::default()
                    }],
                    ..Controller::default()
                }],
                ..ThreadGroup::default()
            }],
            ..TestPlan::default()
        }
    }

    fn fields(p: &TestPlan) -> Vec<String> {
        match check_plan(p, &Limits::default(), NOW) {
            Ok(()) => vec![],
            Err(Problems(v)) => v.into_iter().map(|p| p.field).collect(),
        }
    }

    #[test]
    fn a_good_plan_passes_and_is_runnable() {
        assert_eq!(fields(&plan()), Vec::<String>::new());
        check_runnable(&plan()).unwrap();
    }

    #[test]
    fn bad_rates_durations_and_generators_are_named() {
        for tps in [0.0, -5.0, f64::NAN, f64::INFINITY, 1e9] {
            let mut p = plan();
            p.run.load = Load::Tps { tps };
            assert_eq!(fields(&p), ["run.load.tps"], "tps {tps}");
        }
        let mut p = plan();
        p.run.duration_secs = 0;
        p.run.generators = 0;
        assert_eq!(fields(&p), ["run.duration_secs", "run.generators"]);
        let mut p = plan();
        p.run.load = Load::Threads { threads: 2 };
        p.run.generators = 3;
        let err = check_plan(&p, &Limits::default(), NOW).unwrap_err();
        assert!(err.to_string().contains("cannot be shared by 3"), "{err}");
    }

    #[test]
    fn schedules_must_be_ordered_in_the_future_and_inside_the_run() {
        let mut p = plan();
        let step = |at, percent| ScheduleStep { at, percent };
        p.run.schedule = Schedule::Automatic {
            steps: vec![step(NOW + 10, 50), step(NOW + 30, 100)],
        };
        assert_eq!(fields(&p), Vec::<String>::new());
        p.run.schedule = Schedule::Automatic {
            steps: vec![step(NOW - 10, 50), step(NOW - 20, 0), step(NOW + 5000, 100)],
        };
        assert_eq!(
            fields(&p),
            [
                "run.schedule.steps[0].at",
                "run.schedule.steps[1].at",
                "run.schedule.steps[1].percent",
                "run.schedule.steps[2].at",
            ]
        );
        p.run.schedule = Schedule::Automatic { steps: vec![] };
        assert_eq!(fields(&p), ["run.schedule.steps"]);
        p.run.load = Load::Threads { threads: 5 };
        p.run.schedule = Schedule::Automatic {
            steps: vec![step(NOW + 10, 100), step(NOW + 20, 100)],
        };
        assert_eq!(fields(&p), ["run.schedule.steps"]);
    }

    #[test]
    fn sampler_fields_are_checked_but_variables_pass() {
        let mut p = plan();
        let s = &mut p.thread_groups[0].controllers[0].samplers[0];
        s.host = "http://example.test/x".into();
        s.port = "70000".into();
        s.path = "login".into();
        s.header_set = Some("xml".into());
        s.assertion = Some(Assertion {
            kind: AssertionKind::Contains,
            text: String::new(),
        });
        s.extractors.push(Extractor {
            kind: ExtractorKind::JsonPath,
            expression: "token".into(),
            variable: "tok en".into(),
            default: String::new(),
        });
        s.extractors.push(Extractor {
            kind: ExtractorKind::JsonPath,
            expression: "$.a;$.b".into(),
            variable: "ok".into(),
            default: String::new(),
        });
        s.content_encoding = "latin1".into();
        let at = "thread_groups[0].controllers[0].samplers[0]";
        let want: Vec<String> = [
            "host",
            "port",
            "path",
            "header_set",
            "assertion.text",
            "extractors[0].variable",
            "extractors[0].expression",
            "extractors[1].expression",
            "content_encoding",
        ]
        .iter()
        .map(|f| format!("{at}.{f}"))
        .collect();
        assert_eq!(fields(&p), want);
        let s = &mut p.thread_groups[0].controllers[0].samplers[0];
        *s = HttpSampler {
            name: "${label}".into(),
            host: "${host}".into(),
            port: "${port}".into(),
            path: "${path}".into(),
            ..HttpSampler::default()
        };
        assert_eq!(fields(&p), Vec::<String>::new());
    }

    #[test]
    fn duplicate_names_and_csv_settings_are_refused() {
        let mut p = plan();
        p.thread_groups.push(p.thread_groups[0].clone());
        p.variables = vec![
            Variable {
                name: "a".into(),
                value: "1".into(),
            },
            Variable {
                name: "a".into(),
                value: "2".into(),
            },
        ];
        p.thread_groups[0].csv_data_sets.push(CsvDataSet {
            file: "../users.csv".into(),
            delimiter: ";;".into(),
            variable_names: vec!["user".into(), "user".into()],
            stop_thread_on_eof: true,
            ..CsvDataSet::default()
        });
        assert_eq!(
            fields(&p),
            [
                "variables[1].name",
                "thread_groups[0].csv_data_sets[0].file",
                "thread_groups[0].csv_data_sets[0].delimiter",
                "thread_groups[0].csv_data_sets[0].variable_names[1]",
                "thread_groups[0].csv_data_sets[0].stop_thread_on_eof",
                "thread_groups[1].name",
            ]
        );
    }

    #[test]
    fn a_csv_written_with_another_delimiter_is_named() {
        let csv = CsvDataSet {
            file: "users.csv".into(),
            variable_names: vec!["user".into(), "password".into()],
            ..CsvDataSet::default()
        };
        check_csv_file(&csv, b"alice,secret\nbob,pw\n").unwrap();
        let err = check_csv_file(&csv, b"alice;secret\nbob;pw\n").unwrap_err();
        assert!(err.contains("is the delimiter ';'"), "{err}");
        let err = check_csv_file(&csv, b"alice\nbob\n").unwrap_err();
        assert!(err.contains("2 variables"), "{err}");
        assert!(check_csv_file(&csv, b"").is_err());
        let tabs = CsvDataSet {
            delimiter: "\\t".into(),
            ..csv
        };
        check_csv_file(&tabs, b"alice\tsecret\n").unwrap();
    }

    #[test]
    fn nothing_enabled_is_not_runnable() {
        let mut p = plan();
        p.thread_groups[0].controllers[0].enabled = false;
        p.run.room_id = None;
        let err = check_runnable(&p).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
    }
}
