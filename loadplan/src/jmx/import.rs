//! .jmx -> plan: reads what the plan model can hold from any JMeter file
//! and lists the rest.
//!
//! Owns the mapping back from JMeter's elements, and the decisions for
//! files MyPlatform did not write: samplers directly under a thread group
//! go into a generated controller, other controllers become simple ones,
//! nested controllers are flattened into their outermost one, header
//! managers and HTTP Request Defaults above a sampler are applied to it,
//! plan-level cookie managers, CSV data sets and variables are applied to
//! every thread group. Every such change and every element left out is
//! reported as an [`Unsupported`] with its path in JMeter's tree. Must not
//! drop anything silently, nor guess values it cannot read (a `${var}`
//! where the model wants a number is reported, not invented).

use std::fmt;

use serde::Serialize;

use super::generate::{
    TEST_TYPE_CONTAINS, TEST_TYPE_EQUALS, TEST_TYPE_MATCHES, TEST_TYPE_NOT, TEST_TYPE_OR,
    TEST_TYPE_SUBSTRING,
};
use super::xml::{Element, parse};
use super::{HEADER_SETS_FRAGMENT, JmxError, PROP_THREADS, RUN_SETTINGS_PROP, THROUGHPUT_TIMER};
use crate::model::{
    Assertion, AssertionKind, Body, Controller, CsvDataSet, Extractor, ExtractorKind, HeaderSet,
    HttpSampler, Load, Method, Protocol, RunSettings, Sharing, TestPlan, ThreadGroup, Variable,
};

/// A plan read from a .jmx, and what of the file it does not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub plan: TestPlan,
    pub unsupported: Vec<Unsupported>,
}

/// One element (or setting) of the file the plan does not hold as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unsupported {
    /// Where in JMeter's tree, e.g. `Test Plan / Users / JSR223 Sampler "calc"`.
    pub path: String,
    pub outcome: Outcome,
    /// What happened and why, for the user.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not in the plan at all.
    LeftOut,
    /// In the plan, but moved, converted or with settings lost.
    Changed,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.outcome {
            Outcome::LeftOut => "left out",
            Outcome::Changed => "changed",
        };
        write!(f, "{}: {what}: {}", self.path, self.message)
    }
}

/// Reads a .jmx into a plan. Malformed or hostile XML (DOCTYPE, entities,
/// oversize) is an error; everything readable becomes plan, the rest is
/// listed in [`Imported::unsupported`].
pub fn import(bytes: &[u8]) -> Result<Imported, JmxError> {
    let root = parse(bytes)?;
    if root.name != "jmeterTestPlan" {
        return Err(JmxError::NotJmx(format!(
            "the root element is <{}>, not <jmeterTestPlan>",
            root.name
        )));
    }
    let top = root
        .elements()
        .find(|e| e.name == "hashTree")
        .ok_or_else(|| JmxError::NotJmx("no hashTree under <jmeterTestPlan>".into()))?;
    let pairs = top.tree_pairs();
    let Some(&(plan_el, plan_tree)) = pairs.first() else {
        return Err(JmxError::NotJmx("the file has no Test Plan".into()));
    };
    if plan_el.testclass() != "TestPlan" {
        return Err(JmxError::NotJmx(format!(
            "the tree starts with {}, not a Test Plan",
            label(plan_el)
        )));
    }
    let mut cx = Importer::default();
    for &(extra, _) in &pairs[1..] {
        cx.left_out(&[], extra, "beside the Test Plan, where JMeter ignores it");
    }
    let plan = cx.plan(plan_el, plan_tree);
    Ok(Imported {
        plan,
        unsupported: cx.notes,
    })
}

/// Why a disabled config element, assertion or extractor is not imported:
/// the model has no switch for it.
const DISABLED: &str = "disabled in the file (MyPlatform has no switch for it)";

#[derive(Default)]
struct Importer {
    notes: Vec<Unsupported>,
    header_sets: Vec<HeaderSet>,
}

/// What applies to the samplers below a point of the tree.
#[derive(Clone)]
struct Scope<'a> {
    /// Names of the elements above, from the Test Plan down.
    path: Vec<String>,
    /// Header managers, outermost first.
    headers: Vec<&'a Element>,
    /// HTTP Request Defaults, outermost first.
    defaults: Vec<&'a Element>,
    enabled: bool,
}

/// Thread counts, duration and rate as the thread groups have them.
#[derive(Default)]
struct LoadSeen {
    threads: Vec<(String, Option<u32>)>,
    durations: Vec<(String, Option<u32>)>,
    throughput_per_min: Option<f64>,
}

impl Importer {
    fn note(&mut self, path: &[String], outcome: Outcome, message: impl Into<String>) {
        self.notes.push(Unsupported {
            path: path.join(" / "),
            outcome,
            message: message.into(),
        });
    }

    fn changed(&mut self, path: &[String], message: impl Into<String>) {
        self.note(path, Outcome::Changed, message);
    }

    fn left_out(&mut self, above: &[String], e: &Element, why: &str) {
        let mut path = above.to_vec();
        path.push(label(e));
        let disabled = if e.enabled() || why == DISABLED {
            ""
        } else {
            " (disabled)"
        };
        self.note(&path, Outcome::LeftOut, format!("{why}{disabled}"));
    }

    fn plan(&mut self, el: &Element, tree: Option<&Element>) -> TestPlan {
        let name = el.testname().to_string();
        let root_path = vec![name.clone()];
        let mut plan = TestPlan {
            name,
            comment: el.prop_str("TestPlan.comments").unwrap_or_default(),
            teardown_on_shutdown: el
                .prop_bool("TestPlan.tearDown_on_shutdown")
                .unwrap_or(false),
            serialize_thread_groups: el
                .prop_bool("TestPlan.serialize_threadgroups")
                .unwrap_or(false),
            run: RunSettings::default(),
            variables: arguments(el.prop("TestPlan.user_defined_variables")),
            enabled: el.enabled(),
            thread_groups: Vec::new(),
            header_sets: Vec::new(),
        };
        let saved_run = match el.prop_str(RUN_SETTINGS_PROP) {
            Some(json) => match serde_json::from_str::<RunSettings>(&json) {
                Ok(run) => Some(run),
                Err(e) => {
                    self.changed(
                        &root_path,
                        format!("MyPlatform's run settings in the file are unreadable ({e}); defaults used"),
                    );
                    None
                }
            },
            None => None,
        };
        if el.prop_bool("TestPlan.functional_mode") == Some(true) {
            self.changed(
                &root_path,
                "functional test mode is off in MyPlatform (it saves every response)",
            );
        }
        if el
            .prop_str("TestPlan.user_define_classpath")
            .is_some_and(|c| !c.trim().is_empty())
        {
            self.changed(
                &root_path,
                "the extra classpath is left out: put jars in an uploaded JMeter zip instead",
            );
        }

        let pairs = tree.map(Element::tree_pairs).unwrap_or_default();
        // Plan-level configuration applies to every thread group, wherever
        // it sits among them: read it first.
        let mut scope = Scope {
            path: root_path.clone(),
            headers: Vec::new(),
            defaults: Vec::new(),
            enabled: true,
        };
        let mut plan_cookies: Option<bool> = None;
        let mut plan_csv: Vec<CsvDataSet> = Vec::new();
        for &(e, sub) in &pairs {
            let class = short_class(e);
            if class == "TestFragmentController" && e.testname() == HEADER_SETS_FRAGMENT {
                self.header_set_fragment(sub);
                continue;
            }
            if !e.enabled() && (is_config(e) || class == "Arguments") {
                self.left_out(&root_path, e, DISABLED);
                continue;
            }
            match class {
                "HeaderManager" => {
                    scope.headers.push(e);
                    self.changed(
                        &path_to(&root_path, e),
                        "applied to every sampler of every thread group (samplers carry their header set)",
                    );
                }
                "ConfigTestElement" if is_http_defaults(e) => {
                    scope.defaults.push(e);
                    self.http_defaults_note(&path_to(&root_path, e), e);
                }
                "CookieManager" => {
                    let p = path_to(&root_path, e);
                    plan_cookies = Some(self.cookie_manager(&p, e));
                    self.changed(&p, "applied to every thread group");
                }
                "CSVDataSet" => {
                    let p = path_to(&root_path, e);
                    plan_csv.push(self.csv(&p, e));
                    self.changed(
                        &p,
                        "copied into every thread group (JMeter shares the file the same way)",
                    );
                }
                "Arguments" => {
                    plan.variables.extend(arguments(Some(e)));
                    self.changed(
                        &path_to(&root_path, e),
                        "its variables were added to the Test Plan's (JMeter reads them all at the start)",
                    );
                }
                _ => {}
            }
        }

        let mut load = LoadSeen::default();
        for &(e, sub) in &pairs {
            let class = short_class(e);
            if class == "TestFragmentController" && e.testname() == HEADER_SETS_FRAGMENT {
                continue;
            }
            if matches!(
                class,
                "HeaderManager" | "CookieManager" | "CSVDataSet" | "Arguments"
            ) || (class == "ConfigTestElement" && is_http_defaults(e))
            {
                continue;
            }
            if class == "SetupThreadGroup" || class == "PostThreadGroup" {
                self.left_out(
                    &root_path,
                    e,
                    "setUp and tearDown thread groups are not part of a MyPlatform plan; \
                     upload the .jmx as a JMeter zip to keep them",
                );
            } else if is_thread_group(e) {
                let g = self.thread_group(e, sub, &scope, &mut load, plan_cookies, &plan_csv);
                plan.thread_groups.push(g);
            } else {
                self.left_out(&root_path, e, &why_unsupported(e, "the Test Plan"));
            }
        }
        plan.header_sets = std::mem::take(&mut self.header_sets);
        plan.run = self.run_settings(&root_path, saved_run, &load);
        plan
    }

    fn header_set_fragment(&mut self, tree: Option<&Element>) {
        for (e, _) in tree.map(Element::tree_pairs).unwrap_or_default() {
            if short_class(e) == "HeaderManager" {
                let set = HeaderSet {
                    name: e.testname().to_string(),
                    headers: headers(e),
                };
                if !self.header_sets.iter().any(|s| s.name == set.name) {
                    self.header_sets.push(set);
                }
            }
        }
    }

    /// Run settings: the saved ones for what JMeter has no place for; the
    /// thread groups and timers for threads, rate and duration (they win
    /// when someone edited the file in JMeter).
    fn run_settings(
        &mut self,
        plan_path: &[String],
        saved: Option<RunSettings>,
        load: &LoadSeen,
    ) -> RunSettings {
        let mut run = saved.clone().unwrap_or_default();
        if let Some(per_min) = load.throughput_per_min {
            let tps = per_min / 60.0;
            run.load = match saved.map(|s| s.load) {
                // The saved value is the exact one the user typed; the
                // timer holds it times 60, rounded to six decimals.
                Some(Load::Tps { tps: saved })
                    if (saved * 60.0 - per_min).abs() <= 1e-6 + 1e-9 * per_min =>
                {
                    Load::Tps { tps: saved }
                }
                _ => Load::Tps { tps },
            };
        } else {
            let known: Vec<u32> = load.threads.iter().filter_map(|(_, t)| *t).collect();
            if let Some(&first) = known.first() {
                if known.iter().any(|&t| t != first) {
                    let all: Vec<String> = load
                        .threads
                        .iter()
                        .map(|(g, t)| format!("{g}: {}", t.map_or("?".into(), |t| t.to_string())))
                        .collect();
                    self.changed(
                        plan_path,
                        format!(
                            "the thread groups have different thread counts ({}); MyPlatform runs \
                             each enabled group with the same count: {first}",
                            all.join(", ")
                        ),
                    );
                }
                run.load = Load::Threads { threads: first };
            } else if !load.threads.is_empty() {
                let threads = match run.load {
                    Load::Threads { threads } => threads,
                    Load::Tps { .. } => 1,
                };
                self.changed(
                    plan_path,
                    format!("no thread count could be read; thread mode with {threads} threads"),
                );
                run.load = Load::Threads { threads };
            }
        }
        if let Some(&(_, Some(secs))) = load.durations.iter().find(|(_, d)| d.is_some()) {
            run.duration_secs = secs;
        } else if !load.durations.is_empty() {
            self.changed(
                plan_path,
                format!(
                    "no thread group has a duration MyPlatform can read; the run lasts {} s",
                    run.duration_secs
                ),
            );
        }
        run
    }

    fn thread_group<'a>(
        &mut self,
        e: &'a Element,
        tree: Option<&'a Element>,
        plan_scope: &Scope<'a>,
        load: &mut LoadSeen,
        plan_cookies: Option<bool>,
        plan_csv: &[CsvDataSet],
    ) -> ThreadGroup {
        let path = path_to(&plan_scope.path, e);
        let here = {
            let mut p = plan_scope.path.clone();
            p.push(e.testname().to_string());
            p
        };
        let mut g = ThreadGroup {
            name: e.testname().to_string(),
            comment: e.prop_str("TestPlan.comments").unwrap_or_default(),
            ramp_up_secs: 0,
            csv_data_sets: plan_csv.to_vec(),
            cookies: plan_cookies.is_some(),
            clear_cookies_each_iteration: plan_cookies.unwrap_or(false),
            enabled: e.enabled(),
            controllers: Vec::new(),
        };
        let standard = short_class(e) == "ThreadGroup";
        if !standard {
            self.changed(
                &path,
                format!(
                    "imported as a standard Thread Group: the schedule of {} is lost",
                    short_class(e)
                ),
            );
        }
        match e
            .prop_str("ThreadGroup.ramp_time")
            .map(|r| r.trim().to_string())
        {
            None => {}
            Some(r) if r.is_empty() => {}
            Some(r) => match r.parse::<u32>() {
                Ok(n) => g.ramp_up_secs = n,
                Err(_) => self.changed(
                    &path,
                    format!("ramp-up \"{r}\" is not a number of seconds; 0 used"),
                ),
            },
        }
        if let Some(on_error) = e.prop_str("ThreadGroup.on_sample_error") {
            let action = match on_error.trim() {
                "" | "continue" => None,
                "startnextloop" => Some("start the next iteration"),
                "stopthread" => Some("stop the thread"),
                "stoptest" => Some("stop the test"),
                "stoptestnow" => Some("stop the test now"),
                _ => Some("do something else"),
            };
            if let Some(action) = action {
                self.changed(
                    &path,
                    format!("after a sampler error JMeter would {action}; MyPlatform continues"),
                );
            }
        }
        if e.prop_str("ThreadGroup.delay")
            .is_some_and(|d| !matches!(d.trim(), "" | "0"))
        {
            self.changed(&path, "the start delay is left out");
        }
        if e.enabled() {
            let threads = e
                .prop_str("ThreadGroup.num_threads")
                .and_then(|t| self.count(&path, "thread count", &t));
            load.threads.push((g.name.clone(), threads));
            let scheduler = e.prop_bool("ThreadGroup.scheduler").unwrap_or(false);
            let duration = if scheduler {
                e.prop_str("ThreadGroup.duration")
                    .and_then(|d| self.count(&path, "duration", &d))
                    .filter(|&d| d > 0)
            } else {
                let loops = e
                    .prop("ThreadGroup.main_controller")
                    .and_then(|m| m.prop_str("LoopController.loops"))
                    .unwrap_or_default();
                self.changed(
                    &path,
                    format!(
                        "it runs {} without a duration; MyPlatform runs every group for the run's duration",
                        match loops.trim() {
                            "-1" => "forever".to_string(),
                            "1" => "one iteration".to_string(),
                            l => format!("{l} iterations"),
                        }
                    ),
                );
                None
            };
            load.durations.push((g.name.clone(), duration));
        }

        let pairs = tree.map(Element::tree_pairs).unwrap_or_default();
        let mut scope = plan_scope.clone();
        scope.path = here.clone();
        scope.enabled = true;
        for &(c, _) in &pairs {
            let class = short_class(c);
            if !c.enabled() && is_config(c) {
                continue;
            }
            match class {
                "HeaderManager" => {
                    scope.headers.push(c);
                    self.changed(
                        &path_to(&here, c),
                        "applied to every sampler of the thread group (samplers carry their header set)",
                    );
                }
                "ConfigTestElement" if is_http_defaults(c) => {
                    scope.defaults.push(c);
                    self.http_defaults_note(&path_to(&here, c), c);
                }
                _ => {}
            }
        }
        let mut loose: Option<Controller> = None;
        for &(c, sub) in &pairs {
            let class = short_class(c);
            let cpath = path_to(&here, c);
            match class {
                _ if !c.enabled() && is_config(c) => self.left_out(&here, c, DISABLED),
                "HeaderManager" => {}
                "ConfigTestElement" if is_http_defaults(c) => {}
                "ConstantThroughputTimer" if c.testname() == THROUGHPUT_TIMER => {
                    if let Some(t) = c.prop_str("throughput") {
                        match throughput_value(&t) {
                            Some(v) if v > 0.0 => {
                                load.throughput_per_min.get_or_insert(v);
                            }
                            _ => self.changed(
                                &cpath,
                                format!("throughput \"{t}\" is not a number; TPS left as saved"),
                            ),
                        }
                    }
                }
                "CSVDataSet" => {
                    let csv = self.csv(&cpath, c);
                    g.csv_data_sets.push(csv);
                }
                "CookieManager" => {
                    g.clear_cookies_each_iteration = self.cookie_manager(&cpath, c);
                    g.cookies = true;
                }
                "Arguments" => {
                    self.left_out(
                        &here,
                        c,
                        "User Defined Variables belong on the Test Plan in MyPlatform; add them there",
                    );
                }
                _ if is_http_sampler(c) => {
                    if loose.is_none() {
                        let name = unique_controller_name(&g.controllers, "Requests");
                        self.changed(
                            &cpath,
                            format!("samplers directly under the thread group were put into a generated controller \"{name}\""),
                        );
                        loose = Some(Controller {
                            name,
                            enabled: true,
                            samplers: Vec::new(),
                        });
                    }
                    let s = self.sampler(c, sub, &scope);
                    if let Some(l) = loose.as_mut() {
                        l.samplers.push(s);
                    }
                }
                _ if is_controller(c) => {
                    if let Some(l) = loose.take() {
                        g.controllers.push(l);
                    }
                    if let Some(ctl) = self.controller(c, sub, &scope) {
                        g.controllers.push(ctl);
                    }
                }
                "ConstantThroughputTimer" => {
                    let rate = c
                        .prop_str("throughput")
                        .and_then(|t| throughput_value(&t))
                        .map(|per_min| {
                            format!(
                                " (it asked for {}/s)",
                                super::generate::number(per_min / 60.0)
                            )
                        })
                        .unwrap_or_default();
                    self.left_out(
                        &here,
                        c,
                        &format!("in TPS mode MyPlatform paces the plan itself: set the plan's target TPS{rate}"),
                    );
                }
                _ => self.left_out(&here, c, &why_unsupported(c, "a thread group")),
            }
        }
        if let Some(l) = loose.take() {
            g.controllers.push(l);
        }
        g
    }

    /// A number of threads or seconds; `${__P(name,default)}` gives its
    /// default. Anything else is reported and read as unknown.
    fn count(&mut self, path: &[String], what: &str, value: &str) -> Option<u32> {
        let v = value.trim();
        if let Ok(n) = v.parse::<u32>() {
            return Some(n);
        }
        if let Some((name, default)) = property_reference(v)
            && let Ok(n) = default.trim().parse::<u32>()
        {
            if name != PROP_THREADS && !name.starts_with("myplatform.") {
                self.changed(
                    path,
                    format!("{what} comes from property {name}; its default {n} is used"),
                );
            }
            return Some(n);
        }
        self.changed(
            path,
            format!("{what} \"{v}\" is not a number MyPlatform can read"),
        );
        None
    }

    fn controller<'a>(
        &mut self,
        e: &'a Element,
        tree: Option<&'a Element>,
        outer: &Scope<'a>,
    ) -> Option<Controller> {
        let path = path_to(&outer.path, e);
        let class = short_class(e);
        if matches!(class, "ModuleController" | "IncludeController") {
            self.left_out(
                &outer.path,
                e,
                "it runs samplers from elsewhere, which MyPlatform cannot follow",
            );
            return None;
        }
        if class != "GenericController" {
            self.changed(
                &path,
                format!(
                    "imported as a simple controller: its {} behaviour is lost",
                    kind(class)
                ),
            );
        }
        let mut ctl = Controller {
            name: e.testname().to_string(),
            enabled: e.enabled(),
            samplers: Vec::new(),
        };
        let mut scope = outer.clone();
        scope.path.push(e.testname().to_string());
        self.controller_content(tree, &mut scope, &mut ctl.samplers, e.testname());
        Some(ctl)
    }

    /// The samplers under a controller, nested controllers flattened into
    /// it in order (a disabled one disables its samplers).
    fn controller_content<'a>(
        &mut self,
        tree: Option<&'a Element>,
        scope: &mut Scope<'a>,
        out: &mut Vec<HttpSampler>,
        outermost: &str,
    ) {
        let pairs = tree.map(Element::tree_pairs).unwrap_or_default();
        for &(c, _) in &pairs {
            if !c.enabled() {
                continue;
            }
            match short_class(c) {
                "HeaderManager" => {
                    scope.headers.push(c);
                    self.changed(
                        &path_to(&scope.path, c),
                        "applied to every sampler of the controller (samplers carry their header set)",
                    );
                }
                "ConfigTestElement" if is_http_defaults(c) => {
                    scope.defaults.push(c);
                    self.http_defaults_note(&path_to(&scope.path, c), c);
                }
                _ => {}
            }
        }
        for &(c, sub) in &pairs {
            let class = short_class(c);
            match class {
                _ if !c.enabled() && is_config(c) => self.left_out(&scope.path, c, DISABLED),
                "HeaderManager" => {}
                "ConfigTestElement" if is_http_defaults(c) => {}
                _ if is_http_sampler(c) => {
                    let mut s = self.sampler(c, sub, scope);
                    s.enabled = s.enabled && scope.enabled;
                    out.push(s);
                }
                _ if is_controller(c)
                    && !matches!(class, "ModuleController" | "IncludeController") =>
                {
                    let mut inner = scope.clone();
                    inner.path.push(c.testname().to_string());
                    inner.enabled = scope.enabled && c.enabled();
                    let kind_note = if class == "GenericController" {
                        String::new()
                    } else {
                        format!("; its {} behaviour is lost", kind(class))
                    };
                    self.changed(
                        &path_to(&scope.path, c),
                        format!(
                            "nested controller: its samplers were moved into \"{outermost}\"{kind_note}"
                        ),
                    );
                    self.controller_content(sub, &mut inner, out, outermost);
                }
                _ => self.left_out(&scope.path, c, &why_unsupported(c, "a controller")),
            }
        }
    }

    fn sampler<'a>(
        &mut self,
        e: &'a Element,
        tree: Option<&'a Element>,
        scope: &Scope<'a>,
    ) -> HttpSampler {
        let path = path_to(&scope.path, e);
        let field = |name: &str| -> String {
            let own = e.prop_str(name).unwrap_or_default();
            if !own.is_empty() {
                return own;
            }
            // The innermost HTTP Request Defaults with a value wins.
            scope
                .defaults
                .iter()
                .rev()
                .filter_map(|d| d.prop_str(name))
                .find(|v| !v.is_empty())
                .unwrap_or_default()
        };
        let mut s = HttpSampler {
            name: e.testname().to_string(),
            enabled: e.enabled(),
            host: field("HTTPSampler.domain"),
            port: field("HTTPSampler.port"),
            path: field("HTTPSampler.path"),
            content_encoding: field("HTTPSampler.contentEncoding"),
            ..HttpSampler::default()
        };
        let protocol = field("HTTPSampler.protocol");
        s.protocol = match protocol.trim().to_ascii_lowercase().as_str() {
            "" | "http" => Protocol::Http,
            "https" => Protocol::Https,
            other => {
                self.changed(
                    &path,
                    format!("protocol \"{other}\" is not http or https; http used"),
                );
                Protocol::Http
            }
        };
        let method = e.prop_str("HTTPSampler.method").unwrap_or_default();
        s.method = match method.trim().to_ascii_uppercase().as_str() {
            "" | "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => {
                self.changed(
                    &path,
                    format!("method \"{other}\" is not one MyPlatform sends; GET used"),
                );
                Method::Get
            }
        };
        s.body = self.body(&path, e);
        self.sampler_settings(&path, e);

        // Header managers in scope merge, the nearest winning per name
        // (as JMeter merges them); the sampler's own is the nearest.
        let pairs = tree.map(Element::tree_pairs).unwrap_or_default();
        let own: Vec<&Element> = pairs
            .iter()
            .map(|&(c, _)| c)
            .filter(|c| short_class(c) == "HeaderManager" && c.enabled())
            .collect();
        let managers: Vec<&Element> = scope.headers.iter().copied().chain(own).collect();
        if !managers.is_empty() {
            s.header_set = Some(self.header_set_for(&managers));
        }
        for &(c, _) in &pairs {
            let class = short_class(c);
            match class {
                "HeaderManager" if c.enabled() => {}
                _ if !c.enabled() => self.left_out(&path, c, DISABLED),
                "ResponseAssertion" => {
                    if let Some(a) = self.assertion(&path, c) {
                        if s.assertion.is_some() {
                            self.left_out(
                                &path,
                                c,
                                "a sampler has one assertion in MyPlatform; the first is kept",
                            );
                        } else {
                            s.assertion = Some(a);
                        }
                    }
                }
                "JSONPostProcessor" => {
                    let xs = self.json_extractor(&path, c);
                    s.extractors.extend(xs);
                }
                "RegexExtractor" => {
                    if let Some(x) = self.regex_extractor(&path, c) {
                        s.extractors.push(x);
                    }
                }
                _ => self.left_out(&path, c, &why_unsupported(c, "a sampler")),
            }
        }
        s
    }

    fn body(&mut self, path: &[String], e: &Element) -> Body {
        let args: Vec<&Element> = e
            .prop("HTTPsampler.Arguments")
            .and_then(|a| a.prop("Arguments.arguments"))
            .map(|c| c.elements().filter(|x| x.name == "elementProp").collect())
            .unwrap_or_default();
        if e.prop_bool("HTTPSampler.postBodyRaw") == Some(true) {
            // JMeter sends the values one after the other.
            let text: String = args
                .iter()
                .map(|a| a.prop_str("Argument.value").unwrap_or_default())
                .collect();
            return Body::Json { text };
        }
        let mut fields = Vec::new();
        for a in args {
            let name = a
                .prop_str("Argument.name")
                .or_else(|| a.get_attr("name").map(str::to_string))
                .unwrap_or_default();
            let value = a.prop_str("Argument.value").unwrap_or_default();
            if name.is_empty() {
                self.changed(
                    path,
                    "an argument without a name is left out (JMeter skips it too)",
                );
                continue;
            }
            // Not "always encode": the user typed it URL-encoded; the model
            // holds plain values that JMeter encodes.
            let encoded = a.prop_bool("HTTPArgument.always_encode") == Some(false);
            let (name, value) = if encoded {
                match (url_decode(&name), url_decode(&value)) {
                    (Some(n), Some(v)) => (n, v),
                    _ => {
                        self.changed(
                            path,
                            format!("argument \"{name}\" is marked as already URL-encoded but does not decode; sent as typed, encoded once more"),
                        );
                        (name, value)
                    }
                }
            } else {
                (name, value)
            };
            fields.push(Variable { name, value });
        }
        if fields.is_empty() {
            Body::None
        } else {
            Body::Form { fields }
        }
    }

    /// Sampler settings the model has no field for.
    fn sampler_settings(&mut self, path: &[String], e: &Element) {
        let on = |name: &str| e.prop_bool(name) == Some(true);
        let set = |name: &str| e.prop_str(name).is_some_and(|v| !v.trim().is_empty());
        if e.prop_bool("HTTPSampler.follow_redirects") == Some(false)
            || on("HTTPSampler.auto_redirects")
        {
            self.changed(
                path,
                "MyPlatform follows redirects itself (\"follow redirects\")",
            );
        }
        if on("HTTPSampler.DO_MULTIPART_POST") {
            self.changed(
                path,
                "multipart/form-data is left out: the form is sent URL-encoded",
            );
        }
        let files = e
            .prop("HTTPsampler.Files")
            .and_then(|f| f.prop("HTTPFileArgs.files"))
            .is_some_and(|c| c.elements().next().is_some());
        if files {
            self.changed(path, "file uploads are left out");
        }
        if on("HTTPSampler.image_parser") {
            self.changed(path, "downloading embedded resources is left out");
        }
        if set("HTTPSampler.connect_timeout") || set("HTTPSampler.response_timeout") {
            self.changed(path, "connect and response timeouts are left out");
        }
        if set("HTTPSampler.proxyHost") {
            self.changed(path, "the proxy server is left out");
        }
        if set("HTTPSampler.ipSource") {
            self.changed(path, "the source address is left out");
        }
    }

    /// A name for the header managers a sampler sees: an existing set with
    /// the same name and headers, or a new set.
    fn header_set_for(&mut self, managers: &[&Element]) -> String {
        let mut merged: Vec<Variable> = Vec::new();
        for m in managers {
            for h in headers(m) {
                match merged
                    .iter_mut()
                    .find(|x| x.name.eq_ignore_ascii_case(&h.name))
                {
                    Some(x) => *x = h,
                    None => merged.push(h),
                }
            }
        }
        let names: Vec<&str> = managers
            .iter()
            .map(|m| m.testname())
            .filter(|n| !n.trim().is_empty())
            .collect();
        let base = if names.is_empty() {
            "Headers".to_string()
        } else {
            names.join(" + ")
        };
        let mut name = base.clone();
        let mut n = 1;
        loop {
            match self.header_sets.iter().find(|s| s.name == name) {
                Some(s) if s.headers == merged => return name,
                Some(_) => {
                    n += 1;
                    name = format!("{base} ({n})");
                }
                None => {
                    self.header_sets.push(HeaderSet {
                        name: name.clone(),
                        headers: merged,
                    });
                    return name;
                }
            }
        }
    }

    fn http_defaults_note(&mut self, path: &[String], e: &Element) {
        let mut msg = "its server, port, protocol, path and encoding were copied into the samplers in its scope that leave them empty".to_string();
        let has_args = e
            .prop("HTTPsampler.Arguments")
            .and_then(|a| a.prop("Arguments.arguments"))
            .is_some_and(|c| c.elements().next().is_some());
        if has_args {
            msg.push_str("; its parameters are left out");
        }
        self.changed(path, msg);
    }

    /// Whether cookies are cleared each iteration.
    fn cookie_manager(&mut self, path: &[String], e: &Element) -> bool {
        let predefined = e
            .prop("CookieManager.cookies")
            .is_some_and(|c| c.elements().next().is_some());
        if predefined {
            self.changed(path, "its predefined cookies are left out");
        }
        e.prop_bool("CookieManager.clearEachIteration")
            .unwrap_or(false)
    }

    fn csv(&mut self, path: &[String], e: &Element) -> CsvDataSet {
        let filename = e.prop_str("filename").unwrap_or_default();
        let file = filename
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        if filename != format!("data/{file}") {
            self.changed(
                path,
                format!("file \"{filename}\" becomes data/{file}: upload {file} with the plan"),
            );
        }
        let delimiter = match e.prop_str("delimiter") {
            Some(d) if !d.is_empty() => d,
            _ => ",".to_string(),
        };
        let share = e.prop_str("shareMode").unwrap_or_default();
        let sharing = match share.trim() {
            "" | "shareMode.all" | "All threads" => Sharing::AllThreads,
            "shareMode.group" | "Current thread group" => Sharing::CurrentThreadGroup,
            "shareMode.thread" | "Current thread" => Sharing::CurrentThread,
            other => {
                self.changed(
                    path,
                    format!("sharing by identifier \"{other}\" becomes sharing with all threads"),
                );
                Sharing::AllThreads
            }
        };
        if e.prop_bool("quotedData") == Some(true) {
            self.changed(
                path,
                "quoted data is off in MyPlatform: quotes are read as part of values",
            );
        }
        if let Some(enc) = e.prop_str("fileEncoding")
            && !enc.trim().is_empty()
            && !enc.trim().eq_ignore_ascii_case("UTF-8")
        {
            self.changed(path, format!("file encoding {enc} becomes UTF-8"));
        }
        CsvDataSet {
            file,
            variable_names: e
                .prop_str("variableNames")
                .unwrap_or_default()
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect(),
            delimiter,
            ignore_first_line: e.prop_bool("ignoreFirstLine").unwrap_or(false),
            recycle_on_eof: e.prop_bool("recycle").unwrap_or(true),
            stop_thread_on_eof: e.prop_bool("stopThread").unwrap_or(false),
            sharing,
        }
    }

    fn assertion(&mut self, path: &[String], e: &Element) -> Option<Assertion> {
        let field = e.prop_str("Assertion.test_field").unwrap_or_default();
        if field != "Assertion.response_data" {
            let what = match field.as_str() {
                "Assertion.response_code" => "the response code",
                "Assertion.response_message" => "the response message",
                "Assertion.response_headers" => "the response headers",
                "Assertion.request_headers" => "the request headers",
                "Assertion.request_data" => "the request data",
                "Assertion.response_data_as_document" => "the response as a document",
                _ => "the URL",
            };
            self.left_out(
                path,
                e,
                &format!("it checks {what}; MyPlatform checks the response body"),
            );
            return None;
        }
        let ty: i64 = e
            .prop_str("Assertion.test_type")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(TEST_TYPE_CONTAINS);
        if ty & (TEST_TYPE_NOT | TEST_TYPE_OR) != 0 {
            self.left_out(path, e, "\"not\" and \"or\" checks are not in MyPlatform");
            return None;
        }
        if e.prop_bool("Assertion.assume_success") == Some(true) {
            self.left_out(path, e, "it ignores the status, which MyPlatform does not");
            return None;
        }
        let strings: Vec<String> = e
            .prop("Asserion.test_strings")
            .map(|c| c.elements().map(Element::text_content).collect())
            .unwrap_or_default();
        let [text] = strings.as_slice() else {
            self.left_out(
                path,
                e,
                &format!("it has {} patterns; MyPlatform checks one", strings.len()),
            );
            return None;
        };
        // JMeter's order of precedence when several type bits are set.
        let kind = if ty & TEST_TYPE_CONTAINS != 0 {
            AssertionKind::Contains
        } else if ty & TEST_TYPE_EQUALS != 0 {
            AssertionKind::Equals
        } else if ty & TEST_TYPE_SUBSTRING != 0 {
            if text.contains(|c: char| "\\^$.|?*+()[]{}".contains(c)) {
                self.left_out(
                    path,
                    e,
                    "a substring check with regular expression characters: MyPlatform's \"contains\" is a regular expression",
                );
                return None;
            }
            AssertionKind::Contains
        } else if ty & TEST_TYPE_MATCHES != 0 {
            AssertionKind::Matches
        } else {
            self.left_out(path, e, &format!("unknown test type {ty}"));
            return None;
        };
        if e.prop_str("Assertion.custom_message")
            .is_some_and(|m| !m.is_empty())
        {
            self.changed(&path_to(path, e), "its custom failure message is left out");
        }
        Some(Assertion {
            kind,
            text: text.clone(),
        })
    }

    fn json_extractor(&mut self, path: &[String], e: &Element) -> Vec<Extractor> {
        let split = |name: &str| -> Vec<String> {
            e.prop_str(name)
                .unwrap_or_default()
                .split(';')
                .map(str::to_string)
                .collect()
        };
        let names = split("JSONPostProcessor.referenceNames");
        let exprs = split("JSONPostProcessor.jsonPathExprs");
        let defaults = split("JSONPostProcessor.defaultValues");
        let matches = split("JSONPostProcessor.match_numbers");
        if names.len() != exprs.len() {
            self.left_out(
                path,
                e,
                &format!("{} variables for {} JSON paths", names.len(), exprs.len()),
            );
            return Vec::new();
        }
        let epath = path_to(path, e);
        if e.prop_bool("JSONPostProcessor.compute_concat") == Some(true) {
            self.changed(&epath, "\"compute concatenation\" is left out");
        }
        let mut out = Vec::new();
        for (i, (name, expr)) in names.iter().zip(&exprs).enumerate() {
            let m = matches.get(i).or(matches.first()).map_or("", |m| m.trim());
            if m != "1" {
                self.changed(
                    &epath,
                    format!("match number \"{m}\" of {name}: MyPlatform takes the first match"),
                );
            }
            out.push(Extractor {
                kind: ExtractorKind::JsonPath,
                expression: expr.trim().to_string(),
                variable: name.trim().to_string(),
                default: defaults.get(i).cloned().unwrap_or_default(),
            });
        }
        out
    }

    fn regex_extractor(&mut self, path: &[String], e: &Element) -> Option<Extractor> {
        let source = e.prop_str("RegexExtractor.useHeaders").unwrap_or_default();
        let epath = path_to(path, e);
        match source.trim() {
            "" | "false" => {}
            "unescaped" => self.changed(
                &epath,
                "it read the unescaped body; MyPlatform reads the body as is",
            ),
            other => {
                let what = match other {
                    "true" => "the response headers",
                    "request_headers" => "the request headers",
                    "URL" => "the URL",
                    "code" => "the response code",
                    "message" => "the response message",
                    "as_document" => "the body as a document",
                    _ => "something other than the body",
                };
                self.left_out(
                    path,
                    e,
                    &format!("it reads {what}; MyPlatform reads the body"),
                );
                return None;
            }
        }
        let template = e.prop_str("RegexExtractor.template").unwrap_or_default();
        if template.trim() != "$1$" {
            self.left_out(
                path,
                e,
                &format!("template \"{template}\": MyPlatform takes the first group ($1$)"),
            );
            return None;
        }
        let m = e
            .prop_str("RegexExtractor.match_number")
            .unwrap_or_default();
        match m.trim() {
            "1" => {}
            "" | "0" => self.changed(&epath, "a random match becomes the first match"),
            other => {
                self.left_out(
                    path,
                    e,
                    &format!("match number {other}: MyPlatform takes the first match"),
                );
                return None;
            }
        }
        Some(Extractor {
            kind: ExtractorKind::Regex,
            expression: e.prop_str("RegexExtractor.regex").unwrap_or_default(),
            variable: e.prop_str("RegexExtractor.refname").unwrap_or_default(),
            default: e.prop_str("RegexExtractor.default").unwrap_or_default(),
        })
    }
}

pub(crate) fn path_to(above: &[String], e: &Element) -> Vec<String> {
    let mut p = above.to_vec();
    p.push(label(e));
    p
}

/// `JSR223 Sampler "calc"`: the kind as JMeter's menus name it, and the name.
pub(crate) fn label(e: &Element) -> String {
    let class = short_class(e);
    let k = if class == "ConfigTestElement" && is_http_defaults(e) {
        "HTTP Request Defaults"
    } else {
        kind(class)
    };
    format!("{k} \"{}\"", e.testname())
}

/// The class name without its package (plugins write full names).
pub(crate) fn short_class(e: &Element) -> &str {
    let c = e.testclass();
    c.rsplit('.').next().unwrap_or(c)
}

pub(crate) fn kind(class: &str) -> &str {
    match class {
        "TestPlan" => "Test Plan",
        "ThreadGroup" => "Thread Group",
        "SetupThreadGroup" => "setUp Thread Group",
        "PostThreadGroup" => "tearDown Thread Group",
        "HTTPSamplerProxy" | "HTTPSampler" | "HTTPSampler2" => "HTTP Request",
        "GenericController" => "Simple Controller",
        "LoopController" => "Loop Controller",
        "TransactionController" => "Transaction Controller",
        "IfController" => "If Controller",
        "WhileController" => "While Controller",
        "ForeachController" => "ForEach Controller",
        "OnceOnlyController" => "Once Only Controller",
        "ThroughputController" => "Throughput Controller",
        "InterleaveControl" => "Interleave Controller",
        "RandomController" => "Random Controller",
        "RandomOrderController" => "Random Order Controller",
        "SwitchController" => "Switch Controller",
        "RunTime" => "Runtime Controller",
        "ModuleController" => "Module Controller",
        "IncludeController" => "Include Controller",
        "TestFragmentController" => "Test Fragment",
        "CriticalSectionController" => "Critical Section Controller",
        "RecordingController" => "Recording Controller",
        "JSR223Sampler" => "JSR223 Sampler",
        "BeanShellSampler" => "BeanShell Sampler",
        "DebugSampler" => "Debug Sampler",
        "TestAction" => "Flow Control Action",
        "JDBCSampler" => "JDBC Request",
        "ConstantTimer" => "Constant Timer",
        "UniformRandomTimer" => "Uniform Random Timer",
        "GaussianRandomTimer" => "Gaussian Random Timer",
        "PoissonRandomTimer" => "Poisson Random Timer",
        "ConstantThroughputTimer" => "Constant Throughput Timer",
        "PreciseThroughputTimer" => "Precise Throughput Timer",
        "SyncTimer" => "Synchronizing Timer",
        "ResultCollector" => "Listener",
        "Summariser" => "Generate Summary Results",
        "BackendListener" => "Backend Listener",
        "CSVDataSet" => "CSV Data Set Config",
        "CookieManager" => "HTTP Cookie Manager",
        "HeaderManager" => "HTTP Header Manager",
        "CacheManager" => "HTTP Cache Manager",
        "AuthManager" => "HTTP Authorization Manager",
        "DNSCacheManager" => "DNS Cache Manager",
        "ConfigTestElement" => "Config Element",
        "Arguments" => "User Defined Variables",
        "ResponseAssertion" => "Response Assertion",
        "JSONPathAssertion" => "JSON Assertion",
        "DurationAssertion" => "Duration Assertion",
        "SizeAssertion" => "Size Assertion",
        "JSONPostProcessor" => "JSON Extractor",
        "RegexExtractor" => "Regular Expression Extractor",
        "BoundaryExtractor" => "Boundary Extractor",
        "XPath2Extractor" | "XPathExtractor" => "XPath Extractor",
        "HtmlExtractor" => "CSS Selector Extractor",
        "JSR223PreProcessor" => "JSR223 PreProcessor",
        "JSR223PostProcessor" => "JSR223 PostProcessor",
        "BeanShellPreProcessor" => "BeanShell PreProcessor",
        "BeanShellPostProcessor" => "BeanShell PostProcessor",
        "DebugPostProcessor" => "Debug PostProcessor",
        "JSR223Assertion" => "JSR223 Assertion",
        "JSR223Listener" => "JSR223 Listener",
        other => other,
    }
}

pub(crate) fn is_thread_group(e: &Element) -> bool {
    short_class(e).ends_with("ThreadGroup")
}

fn is_http_sampler(e: &Element) -> bool {
    matches!(
        short_class(e),
        "HTTPSamplerProxy" | "HTTPSampler" | "HTTPSampler2"
    )
}

fn is_controller(e: &Element) -> bool {
    let c = short_class(e);
    (c.ends_with("Controller") && c != "TestFragmentController")
        || matches!(c, "InterleaveControl" | "RunTime")
}

fn is_http_defaults(e: &Element) -> bool {
    e.get_attr("guiclass")
        .is_some_and(|g| g.ends_with("HttpDefaultsGui"))
}

fn is_config(e: &Element) -> bool {
    matches!(
        short_class(e),
        "HeaderManager" | "CookieManager" | "CSVDataSet" | "ConfigTestElement" | "Arguments"
    )
}

/// Why an element is left out, in words a user can act on.
fn why_unsupported(e: &Element, place: &str) -> String {
    let class = short_class(e);
    let k = kind(class);
    if class.ends_with("Timer") {
        "timers are not part of a MyPlatform plan: in TPS mode MyPlatform paces the plan itself"
            .into()
    } else if matches!(class, "ResultCollector" | "Summariser" | "BackendListener")
        || class.ends_with("Listener")
        || class.ends_with("Visualizer")
    {
        "listeners are not part of a MyPlatform plan: the platform collects the results".into()
    } else if class.ends_with("Sampler") || class == "TestAction" {
        format!(
            "only HTTP requests are in a MyPlatform plan ({k}); upload the .jmx as a JMeter zip to run it as is"
        )
    } else if class.ends_with("Assertion") {
        format!(
            "only response assertions on a sampler are in a MyPlatform plan ({k} under {place})"
        )
    } else if class.ends_with("Extractor") || class.ends_with("PostProcessor") {
        format!(
            "only JSON and regular expression extractors on a sampler are in a MyPlatform plan ({k} under {place})"
        )
    } else if class.ends_with("PreProcessor") {
        "pre-processors are not in a MyPlatform plan".into()
    } else if class == "CSVDataSet" || class == "CookieManager" {
        format!("a {k} under {place} is not in a MyPlatform plan; put it on the thread group")
    } else {
        format!("a {k} under {place} is not in a MyPlatform plan")
    }
}

/// Name/value pairs of an `Arguments` element property or element.
fn arguments(e: Option<&Element>) -> Vec<Variable> {
    e.and_then(|a| a.prop("Arguments.arguments"))
        .map(|c| {
            c.elements()
                .filter(|x| x.name == "elementProp")
                .map(|x| Variable {
                    name: x
                        .prop_str("Argument.name")
                        .or_else(|| x.get_attr("name").map(str::to_string))
                        .unwrap_or_default(),
                    value: x.prop_str("Argument.value").unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn headers(e: &Element) -> Vec<Variable> {
    e.prop("HeaderManager.headers")
        .map(|c| {
            c.elements()
                .map(|h| Variable {
                    name: h.prop_str("Header.name").unwrap_or_default(),
                    value: h.prop_str("Header.value").unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn unique_controller_name(existing: &[Controller], base: &str) -> String {
    let mut name = base.to_string();
    let mut n = 1;
    while existing.iter().any(|c| c.name == name) {
        n += 1;
        name = format!("{base} {n}");
    }
    name
}

/// `${__P(name,default)}` or `${__property(name,,default)}` ->
/// (name, default).
pub(crate) fn property_reference(v: &str) -> Option<(&str, &str)> {
    let inner = v.strip_prefix("${")?.strip_suffix('}')?;
    if let Some(args) = inner.strip_prefix("__P(").and_then(|a| a.strip_suffix(')')) {
        let (name, default) = args.split_once(',').unwrap_or((args, ""));
        return Some((name.trim(), default));
    }
    if let Some(args) = inner
        .strip_prefix("__property(")
        .and_then(|a| a.strip_suffix(')'))
    {
        let mut parts = args.splitn(3, ',');
        let name = parts.next()?;
        let _var = parts.next();
        return Some((name.trim(), parts.next().unwrap_or("")));
    }
    None
}

/// A Constant Throughput Timer's samples per minute: a number, or the
/// default of a property reference.
pub(crate) fn throughput_value(v: &str) -> Option<f64> {
    let v = v.trim();
    v.parse::<f64>()
        .ok()
        .or_else(|| property_reference(v).and_then(|(_, d)| d.trim().parse().ok()))
        .filter(|x: &f64| x.is_finite())
}

/// URL-decoding as Java's `URLDecoder` (`+` is a space); `None` when a
/// `%` escape is broken or the bytes are not UTF-8.
fn url_decode(s: &str) -> Option<String> {
    if !s.contains(['%', '+']) {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_references_and_url_decoding() {
        assert_eq!(
            property_reference("${__P(myplatform.threads,12)}"),
            Some(("myplatform.threads", "12"))
        );
        assert_eq!(property_reference("${__P(x)}"), Some(("x", "")));
        assert_eq!(
            property_reference("${__property(users,,5)}"),
            Some(("users", "5"))
        );
        assert_eq!(property_reference("12"), None);
        assert_eq!(
            throughput_value("${__P(myplatform.throughput,600)}"),
            Some(600.0)
        );
        assert_eq!(throughput_value("90.5"), Some(90.5));
        assert_eq!(url_decode("a%20b+c"), Some("a b c".into()));
        assert_eq!(url_decode("${x}"), Some("${x}".into()));
        assert_eq!(url_decode("100%"), None);
    }
}
