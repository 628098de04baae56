//! Plan -> .jmx: builds JMeter 5.6's test element tree for a plan and
//! writes it with [`super::xml::write`].
//!
//! Owns the choice of elements and properties (see the module doc of
//! `jmx` for the shape). Must not read anything back or decide run-time
//! values per generator: that is `prepare`'s.

use super::xml::{
    Element, bool_prop, collection_prop, hash_tree, int_prop, long_prop, string_prop, write,
};
use super::{HEADER_SETS_FRAGMENT, RUN_SETTINGS_PROP, Sizing, THROUGHPUT_TIMER};
use crate::model::{
    Assertion, AssertionKind, Body, Controller, CsvDataSet, Extractor, ExtractorKind, HeaderSet,
    HttpSampler, Load, Protocol, RunSettings, Schedule, Sharing, TestPlan, ThreadGroup, Variable,
};

/// JMeter version the files are written for (and tested with).
pub(crate) const JMETER_VERSION: &str = "5.6.2";
/// Where CSV files sit, relative to the .jmx (JMeter resolves relative
/// paths against the directory of the plan it runs).
pub(crate) const DATA_DIR: &str = "data/";

/// ConstantThroughputTimer calcMode: "all active threads (shared)". One
/// schedule for all timers of the JVM in this mode (see the `jmx` doc).
pub(crate) const CALC_MODE_ALL_SHARED: i64 = 3;

/// ResponseAssertion test types (bit flags in JMeter's ResponseAssertion).
pub(crate) const TEST_TYPE_MATCHES: i64 = 1;
pub(crate) const TEST_TYPE_CONTAINS: i64 = 2;
pub(crate) const TEST_TYPE_NOT: i64 = 4;
pub(crate) const TEST_TYPE_EQUALS: i64 = 8;
pub(crate) const TEST_TYPE_SUBSTRING: i64 = 16;
pub(crate) const TEST_TYPE_OR: i64 = 32;

/// The .jmx of `plan`, runnable as is by JMeter 5.6 in non-GUI mode, as
/// one JMeter running the whole load: thread mode runs `threads` threads
/// per enabled group; TPS mode paces the plan to its target with threads
/// sized by [`Sizing::default`]. `${var}` references are written verbatim.
pub fn generate(plan: &TestPlan) -> Vec<u8> {
    write(&document(plan))
}

pub(crate) fn document(plan: &TestPlan) -> Element {
    let mut plan_tree = Vec::new();
    if !plan.header_sets.is_empty() {
        // Disabled, so JMeter removes it before running; it is only where
        // the sets are kept (samplers carry their own copies).
        plan_tree.push(Element::test_element(
            "TestFragmentController",
            "TestFragmentControllerGui",
            HEADER_SETS_FRAGMENT,
            false,
        ));
        let mut sets = Vec::new();
        for set in &plan.header_sets {
            sets.push(header_manager(set));
            sets.push(hash_tree(vec![]));
        }
        plan_tree.push(hash_tree(sets));
    }
    let together = groups_together(plan);
    for group in &plan.thread_groups {
        plan_tree.push(thread_group(group, &plan.run, together));
        plan_tree.push(hash_tree(thread_group_tree(group, plan)));
    }
    Element::new("jmeterTestPlan")
        .attr("version", "1.2")
        .attr("properties", "5.0")
        .attr("jmeter", JMETER_VERSION)
        .child(hash_tree(vec![test_plan(plan), hash_tree(plan_tree)]))
}

/// How many groups share the plan's rate at once: all enabled ones, or one
/// at a time when they run consecutively.
fn groups_together(plan: &TestPlan) -> usize {
    if plan.serialize_thread_groups {
        1
    } else {
        plan.thread_groups
            .iter()
            .filter(|g| g.enabled)
            .count()
            .max(1)
    }
}

/// The highest share of the target a schedule asks for (1.0 = 100 %).
pub(crate) fn peak_factor(run: &RunSettings) -> f64 {
    match &run.schedule {
        Schedule::Automatic { steps } => steps
            .iter()
            .map(|s| f64::from(s.percent) / 100.0)
            .fold(1.0, f64::max),
        Schedule::Manual => 1.0,
    }
}

/// A rate as JMeter reads it (`Double.parseDouble`): at most six
/// decimals (0.1/s × 60 is 6.000000000000001 in binary), integral values
/// without a fraction.
pub(crate) fn number(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn test_plan(plan: &TestPlan) -> Element {
    let run = serde_json::to_string(&plan.run).unwrap_or_default();
    Element::test_element("TestPlan", "TestPlanGui", &plan.name, plan.enabled)
        .child(string_prop("TestPlan.comments", &plan.comment))
        .child(bool_prop("TestPlan.functional_mode", false))
        .child(bool_prop(
            "TestPlan.tearDown_on_shutdown",
            plan.teardown_on_shutdown,
        ))
        .child(bool_prop(
            "TestPlan.serialize_threadgroups",
            plan.serialize_thread_groups,
        ))
        .child(arguments(
            "TestPlan.user_defined_variables",
            "ArgumentsPanel",
            &plan.variables,
        ))
        .child(string_prop("TestPlan.user_define_classpath", ""))
        .child(string_prop(RUN_SETTINGS_PROP, &run))
}

/// User-defined variables: an `Arguments` element property.
fn arguments(prop: &str, guiclass: &str, vars: &[Variable]) -> Element {
    let items = vars
        .iter()
        .map(|v| {
            Element::new("elementProp")
                .attr("name", &v.name)
                .attr("elementType", "Argument")
                .child(string_prop("Argument.name", &v.name))
                .child(string_prop("Argument.value", &v.value))
                .child(string_prop("Argument.metadata", "="))
        })
        .collect();
    Element::new("elementProp")
        .attr("name", prop)
        .attr("elementType", "Arguments")
        .attr("guiclass", guiclass)
        .attr("testclass", "Arguments")
        .attr("testname", "User Defined Variables")
        .child(collection_prop("Arguments.arguments", items))
}

fn thread_group(g: &ThreadGroup, run: &RunSettings, together: usize) -> Element {
    let threads = match run.load {
        Load::Threads { threads } => threads,
        Load::Tps { tps } => {
            Sizing::default().threads_for(tps * peak_factor(run) / together as f64)
        }
    };
    let mut e = Element::test_element("ThreadGroup", "ThreadGroupGui", &g.name, g.enabled);
    if !g.comment.is_empty() {
        e = e.child(string_prop("TestPlan.comments", &g.comment));
    }
    e.child(int_prop("ThreadGroup.num_threads", i64::from(threads)))
        .child(int_prop("ThreadGroup.ramp_time", i64::from(g.ramp_up_secs)))
        .child(bool_prop("ThreadGroup.same_user_on_next_iteration", true))
        .child(string_prop("ThreadGroup.on_sample_error", "continue"))
        .child(main_controller())
        .child(bool_prop("ThreadGroup.scheduler", true))
        .child(long_prop(
            "ThreadGroup.duration",
            i64::from(run.duration_secs),
        ))
        .child(long_prop("ThreadGroup.delay", 0))
}

/// The thread group's loop: endless, the scheduler's duration ends it.
pub(crate) fn main_controller() -> Element {
    Element::new("elementProp")
        .attr("name", "ThreadGroup.main_controller")
        .attr("elementType", "LoopController")
        .attr("guiclass", "LoopControlPanel")
        .attr("testclass", "LoopController")
        .attr("testname", "Loop Controller")
        .child(int_prop("LoopController.loops", -1))
        // Absent means true in 5.6; a thread group's loop must say false.
        .child(bool_prop("LoopController.continue_forever", false))
}

fn thread_group_tree(g: &ThreadGroup, plan: &TestPlan) -> Vec<Element> {
    let mut out = Vec::new();
    if let Load::Tps { tps } = plan.run.load {
        out.push(throughput_timer(&number(tps * 60.0)));
        out.push(hash_tree(vec![]));
    }
    for csv in &g.csv_data_sets {
        out.push(csv_data_set(csv));
        out.push(hash_tree(vec![]));
    }
    if g.cookies {
        out.push(cookie_manager(g.clear_cookies_each_iteration));
        out.push(hash_tree(vec![]));
    }
    for c in &g.controllers {
        out.push(controller(c));
        let mut samplers = Vec::new();
        for s in &c.samplers {
            samplers.push(sampler(s));
            samplers.push(hash_tree(sampler_tree(s, plan)));
        }
        out.push(hash_tree(samplers));
    }
    out
}

/// MyPlatform's Constant Throughput Timer; `throughput` in samples per
/// minute of the whole plan (a number, or a `${__P(..)}` reference).
pub(crate) fn throughput_timer(throughput: &str) -> Element {
    Element::test_element(
        "ConstantThroughputTimer",
        "TestBeanGUI",
        THROUGHPUT_TIMER,
        true,
    )
    .child(int_prop("calcMode", CALC_MODE_ALL_SHARED))
    // A string property, not JMeter's doubleProp, so it can hold a
    // function that JMeter re-evaluates while running.
    .child(string_prop("throughput", throughput))
}

fn csv_data_set(csv: &CsvDataSet) -> Element {
    let share = match csv.sharing {
        Sharing::AllThreads => "shareMode.all",
        Sharing::CurrentThreadGroup => "shareMode.group",
        Sharing::CurrentThread => "shareMode.thread",
    };
    Element::test_element("CSVDataSet", "TestBeanGUI", &csv.file, true)
        .child(string_prop("delimiter", &csv.delimiter))
        .child(string_prop("fileEncoding", "UTF-8"))
        .child(string_prop("filename", &format!("{DATA_DIR}{}", csv.file)))
        .child(bool_prop("ignoreFirstLine", csv.ignore_first_line))
        .child(bool_prop("quotedData", false))
        .child(bool_prop("recycle", csv.recycle_on_eof))
        .child(string_prop("shareMode", share))
        .child(bool_prop("stopThread", csv.stop_thread_on_eof))
        // JMeter splits the names on commas whatever the delimiter.
        .child(string_prop("variableNames", &csv.variable_names.join(",")))
}

fn cookie_manager(clear_each_iteration: bool) -> Element {
    Element::test_element("CookieManager", "CookiePanel", "HTTP Cookie Manager", true)
        .child(collection_prop("CookieManager.cookies", vec![]))
        .child(bool_prop(
            "CookieManager.clearEachIteration",
            clear_each_iteration,
        ))
        .child(bool_prop("CookieManager.controlledByThreadGroup", false))
}

fn controller(c: &Controller) -> Element {
    Element::test_element(
        "GenericController",
        "LogicControllerGui",
        &c.name,
        c.enabled,
    )
}

fn sampler(s: &HttpSampler) -> Element {
    let protocol = match s.protocol {
        Protocol::Http => "http",
        Protocol::Https => "https",
    };
    let (raw, args) = match &s.body {
        Body::None => (false, vec![]),
        Body::Json { text } => (
            true,
            vec![
                Element::new("elementProp")
                    .attr("name", "")
                    .attr("elementType", "HTTPArgument")
                    .child(bool_prop("HTTPArgument.always_encode", false))
                    .child(string_prop("Argument.value", text))
                    .child(string_prop("Argument.metadata", "=")),
            ],
        ),
        Body::Form { fields } => (
            false,
            fields
                .iter()
                .map(|f| {
                    // always_encode: the value is sent as typed, JMeter
                    // URL-encodes it (query string and form body alike).
                    Element::new("elementProp")
                        .attr("name", &f.name)
                        .attr("elementType", "HTTPArgument")
                        .child(bool_prop("HTTPArgument.always_encode", true))
                        .child(string_prop("Argument.value", &f.value))
                        .child(string_prop("Argument.metadata", "="))
                        .child(bool_prop("HTTPArgument.use_equals", true))
                        .child(string_prop("Argument.name", &f.name))
                })
                .collect(),
        ),
    };
    let mut arguments = Element::new("elementProp")
        .attr("name", "HTTPsampler.Arguments")
        .attr("elementType", "Arguments");
    if !raw {
        arguments = arguments
            .attr("guiclass", "HTTPArgumentsPanel")
            .attr("testclass", "Arguments")
            .attr("testname", "User Defined Variables");
    }
    let arguments = arguments.child(collection_prop("Arguments.arguments", args));
    Element::test_element("HTTPSamplerProxy", "HttpTestSampleGui", &s.name, s.enabled)
        .child(string_prop("HTTPSampler.domain", &s.host))
        .child(string_prop("HTTPSampler.port", &s.port))
        .child(string_prop("HTTPSampler.protocol", protocol))
        .child(string_prop(
            "HTTPSampler.contentEncoding",
            &s.content_encoding,
        ))
        .child(string_prop("HTTPSampler.path", &s.path))
        .child(string_prop("HTTPSampler.method", s.method.as_str()))
        .child(bool_prop("HTTPSampler.follow_redirects", true))
        .child(bool_prop("HTTPSampler.auto_redirects", false))
        .child(bool_prop("HTTPSampler.use_keepalive", true))
        .child(bool_prop("HTTPSampler.DO_MULTIPART_POST", false))
        .child(bool_prop("HTTPSampler.postBodyRaw", raw))
        .child(arguments)
}

fn sampler_tree(s: &HttpSampler, plan: &TestPlan) -> Vec<Element> {
    let mut out = Vec::new();
    if let Some(set) = s
        .header_set
        .as_ref()
        .and_then(|name| plan.header_sets.iter().find(|h| &h.name == name))
    {
        out.push(header_manager(set));
        out.push(hash_tree(vec![]));
    }
    if let Some(a) = &s.assertion {
        out.push(assertion(a));
        out.push(hash_tree(vec![]));
    }
    for x in &s.extractors {
        out.push(extractor(x));
        out.push(hash_tree(vec![]));
    }
    out
}

fn header_manager(set: &HeaderSet) -> Element {
    let headers = set
        .headers
        .iter()
        .map(|h| {
            Element::new("elementProp")
                .attr("name", "")
                .attr("elementType", "Header")
                .child(string_prop("Header.name", &h.name))
                .child(string_prop("Header.value", &h.value))
        })
        .collect();
    Element::test_element("HeaderManager", "HeaderPanel", &set.name, true)
        .child(collection_prop("HeaderManager.headers", headers))
}

fn assertion(a: &Assertion) -> Element {
    let test_type = match a.kind {
        AssertionKind::Contains => TEST_TYPE_CONTAINS,
        AssertionKind::Equals => TEST_TYPE_EQUALS,
        AssertionKind::Matches => TEST_TYPE_MATCHES,
    };
    Element::test_element(
        "ResponseAssertion",
        "AssertionGui",
        "Response Assertion",
        true,
    )
    .child(collection_prop(
        // JMeter's spelling.
        "Asserion.test_strings",
        vec![string_prop(&java_hash(&a.text).to_string(), &a.text)],
    ))
    .child(string_prop("Assertion.custom_message", ""))
    .child(string_prop(
        "Assertion.test_field",
        "Assertion.response_data",
    ))
    .child(bool_prop("Assertion.assume_success", false))
    .child(int_prop("Assertion.test_type", test_type))
}

/// Java's `String.hashCode`: JMeter names each test string by it.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)))
}

fn extractor(x: &Extractor) -> Element {
    match x.kind {
        ExtractorKind::JsonPath => Element::test_element(
            "JSONPostProcessor",
            "JSONPostProcessorGui",
            "JSON Extractor",
            true,
        )
        .child(string_prop("JSONPostProcessor.referenceNames", &x.variable))
        .child(string_prop(
            "JSONPostProcessor.jsonPathExprs",
            &x.expression,
        ))
        .child(string_prop("JSONPostProcessor.match_numbers", "1"))
        .child(string_prop("JSONPostProcessor.defaultValues", &x.default))
        .child(bool_prop("JSONPostProcessor.compute_concat", false)),
        ExtractorKind::Regex => Element::test_element(
            "RegexExtractor",
            "RegexExtractorGui",
            "Regular Expression Extractor",
            true,
        )
        .child(string_prop("RegexExtractor.useHeaders", "false"))
        .child(string_prop("RegexExtractor.refname", &x.variable))
        .child(string_prop("RegexExtractor.regex", &x.expression))
        .child(string_prop("RegexExtractor.template", "$1$"))
        .child(string_prop("RegexExtractor.default", &x.default))
        // Without it JMeter leaves the variable alone when nothing matches
        // and the default is empty; the model says "set it to the default".
        .child(bool_prop(
            "RegexExtractor.default_empty_value",
            x.default.is_empty(),
        ))
        .child(string_prop("RegexExtractor.match_number", "1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_java() {
        // "hello".hashCode() == 99162322, "".hashCode() == 0
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(java_hash(""), 0);
        // Overflowing: "<h1>Example Domain</h1>" is -868354929 in
        // JMeter's own template (build-web-test-plan.jmx).
        assert_eq!(java_hash("<h1>Example Domain</h1>"), -868_354_929);
    }

    #[test]
    fn numbers_are_written_as_java_parses_them() {
        assert_eq!(number(600.0), "600");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1200.25), "1200.25");
    }
}
