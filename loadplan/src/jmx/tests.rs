//! Round trips of the model through .jmx, and prepare, without JMeter
//! (e2e/tests/jmx_jmeter.rs runs the files in a real JMeter).

use super::*;
use crate::model::*;

fn var(name: &str, value: &str) -> Variable {
    Variable {
        name: name.into(),
        value: value.into(),
    }
}

/// Every field of the model away from its default somewhere.
pub(crate) fn rich_plan() -> TestPlan {
    let sampler = |name: &str| HttpSampler {
        name: name.into(),
        host: "${host}".into(),
        port: "8080".into(),
        path: format!("/api/{name}?q=${{q}}&x=<1>"),
        ..HttpSampler::default()
    };
    TestPlan {
        name: "Checkout & \"friends\"".into(),
        comment: "Line one\nline two\r\nwith <markup> & 'quotes'\ttab".into(),
        teardown_on_shutdown: false,
        serialize_thread_groups: true,
        run: RunSettings {
            load: Load::Tps { tps: 0.1 },
            duration_secs: 90,
            schedule: Schedule::Automatic {
                steps: vec![
                    ScheduleStep {
                        at: 1_900_000_000,
                        percent: 50,
                    },
                    ScheduleStep {
                        at: 1_900_000_030,
                        percent: 150,
                    },
                ],
            },
            room_id: Some(7),
            generators: 3,
            debug: true,
        },
        variables: vec![
            var("host", "127.0.0.1"),
            var("q", "a b&c"),
            var("empty", ""),
        ],
        enabled: false,
        header_sets: vec![
            HeaderSet {
                name: "json".into(),
                headers: vec![
                    var("Content-Type", "application/json; charset=UTF-8"),
                    var("X-Trace", "${__UUID()}"),
                ],
            },
            HeaderSet {
                name: "unused".into(),
                headers: vec![var("Accept", "*/*")],
            },
            HeaderSet {
                name: "empty".into(),
                headers: vec![],
            },
        ],
        thread_groups: vec![
            ThreadGroup {
                name: "buyers".into(),
                comment: "buys things".into(),
                ramp_up_secs: 10,
                csv_data_sets: vec![
                    CsvDataSet {
                        file: "users.csv".into(),
                        variable_names: vec!["user".into(), "password".into()],
                        delimiter: ";".into(),
                        ignore_first_line: true,
                        recycle_on_eof: false,
                        stop_thread_on_eof: true,
                        sharing: Sharing::CurrentThreadGroup,
                    },
                    CsvDataSet {
                        file: "ids.tsv".into(),
                        variable_names: vec![],
                        delimiter: "\\t".into(),
                        ignore_first_line: true,
                        recycle_on_eof: true,
                        stop_thread_on_eof: false,
                        sharing: Sharing::CurrentThread,
                    },
                ],
                cookies: true,
                clear_cookies_each_iteration: true,
                enabled: true,
                controllers: vec![
                    Controller {
                        name: "login".into(),
                        enabled: true,
                        samplers: vec![
                            HttpSampler {
                                protocol: Protocol::Https,
                                port: String::new(),
                                method: Method::Post,
                                body: Body::Json {
                                    text: "{\"user\": \"${user}\",\n \"pw\": \"é<&>\"}".into(),
                                },
                                header_set: Some("json".into()),
                                assertion: Some(Assertion {
                                    kind: AssertionKind::Contains,
                                    text: "\"token\":\\s*\"".into(),
                                }),
                                extractors: vec![
                                    Extractor {
                                        kind: ExtractorKind::JsonPath,
                                        expression: "$.token".into(),
                                        variable: "token".into(),
                                        default: "NO_TOKEN".into(),
                                    },
                                    Extractor {
                                        kind: ExtractorKind::Regex,
                                        expression: "id=(\\d+)".into(),
                                        variable: "id".into(),
                                        default: String::new(),
                                    },
                                ],
                                content_encoding: "UTF-8".into(),
                                ..sampler("login")
                            },
                            HttpSampler {
                                method: Method::Put,
                                body: Body::Form {
                                    fields: vec![var("a", "1 2"), var("b&", "${id}"), var("c", "")],
                                },
                                header_set: Some("empty".into()),
                                assertion: Some(Assertion {
                                    kind: AssertionKind::Equals,
                                    text: "OK".into(),
                                }),
                                enabled: false,
                                ..sampler("update")
                            },
                        ],
                    },
                    Controller {
                        name: "browse".into(),
                        enabled: false,
                        samplers: vec![
                            HttpSampler {
                                method: Method::Delete,
                                assertion: Some(Assertion {
                                    kind: AssertionKind::Matches,
                                    text: "^\\{.*\\}$".into(),
                                }),
                                ..sampler("remove")
                            },
                            HttpSampler {
                                method: Method::Patch,
                                ..sampler("patch")
                            },
                            HttpSampler {
                                method: Method::Head,
                                ..sampler("head")
                            },
                            HttpSampler {
                                method: Method::Options,
                                path: String::new(),
                                ..sampler("options")
                            },
                        ],
                    },
                    Controller {
                        name: "empty".into(),
                        enabled: true,
                        samplers: vec![],
                    },
                ],
            },
            ThreadGroup {
                name: "idle".into(),
                cookies: false,
                enabled: false,
                ..ThreadGroup::default()
            },
        ],
    }
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn a_rich_plan_comes_back_equal_and_regenerates_byte_identical() {
    let plan = rich_plan();
    crate::validate::check_plan(&plan, &crate::Limits::default(), 1_800_000_000)
        .expect("the rich plan is valid");
    let jmx = generate(&plan);
    let back = import(&jmx).unwrap();
    assert_eq!(back.unsupported, vec![], "{}", text(&jmx));
    assert_eq!(back.plan, plan);
    assert_eq!(generate(&back.plan), jmx);
}

#[test]
fn thread_mode_and_defaults_round_trip_too() {
    for plan in [
        TestPlan::default(),
        TestPlan {
            run: RunSettings {
                load: Load::Threads { threads: 25 },
                ..RunSettings::default()
            },
            ..rich_plan()
        },
        TestPlan {
            run: RunSettings {
                load: Load::Tps { tps: 1234.5678 },
                ..RunSettings::default()
            },
            serialize_thread_groups: false,
            ..rich_plan()
        },
    ] {
        let jmx = generate(&plan);
        let back = import(&jmx).unwrap();
        assert_eq!(back.unsupported, vec![]);
        assert_eq!(back.plan, plan);
        assert_eq!(generate(&back.plan), jmx);
    }
}

#[test]
fn variables_are_kept_verbatim_and_markup_escaped() {
    let jmx = generate(&rich_plan());
    let s = text(&jmx);
    assert!(s.contains("<stringProp name=\"HTTPSampler.domain\">${host}</stringProp>"));
    assert!(s.contains("/api/login?q=${q}&amp;x=&lt;1&gt;"));
    assert!(s.contains(
        "{&quot;user&quot;: &quot;${user}&quot;,\n &quot;pw&quot;: &quot;é&lt;&amp;&gt;&quot;}"
    ));
    assert!(s.contains("testname=\"Checkout &amp; &quot;friends&quot;\""));
    // \r would be lost to XML's line-end normalisation without a reference.
    assert!(s.contains("line two&#13;\n"));
    assert!(s.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<jmeterTestPlan version=\"1.2\" properties=\"5.0\" jmeter=\"5.6.2\">\n  <hashTree>\n    <TestPlan guiclass=\"TestPlanGui\""));
}

#[test]
fn generated_elements_use_jmeters_constants() {
    let s = String::from_utf8(generate(&rich_plan())).unwrap();
    for want in [
        "<intProp name=\"Assertion.test_type\">2</intProp>",
        "<intProp name=\"Assertion.test_type\">8</intProp>",
        "<intProp name=\"Assertion.test_type\">1</intProp>",
        "<stringProp name=\"shareMode\">shareMode.group</stringProp>",
        "<stringProp name=\"shareMode\">shareMode.thread</stringProp>",
        "<stringProp name=\"filename\">data/users.csv</stringProp>",
        "<stringProp name=\"variableNames\">user,password</stringProp>",
        "<stringProp name=\"delimiter\">\\t</stringProp>",
        "<boolProp name=\"HTTPSampler.postBodyRaw\">true</boolProp>",
        "<stringProp name=\"RegexExtractor.template\">$1$</stringProp>",
        "<boolProp name=\"CookieManager.clearEachIteration\">true</boolProp>",
        "<intProp name=\"calcMode\">3</intProp>",
        "<stringProp name=\"throughput\">6</stringProp>",
        "<boolProp name=\"TestPlan.serialize_threadgroups\">true</boolProp>",
        "<GenericController guiclass=\"LogicControllerGui\" testclass=\"GenericController\" testname=\"browse\" enabled=\"false\"/>",
        "<ThreadGroup guiclass=\"ThreadGroupGui\" testclass=\"ThreadGroup\" testname=\"idle\" enabled=\"false\">",
    ] {
        assert!(s.contains(want), "missing {want}");
    }
}

#[test]
fn hostile_and_broken_files_are_refused_with_reasons() {
    let xxe = br#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE jmeterTestPlan [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<jmeterTestPlan version="1.2"><hashTree><TestPlan guiclass="TestPlanGui" testclass="TestPlan" testname="&xxe;"/></hashTree></jmeterTestPlan>"#;
    let err = import(xxe).unwrap_err();
    assert_eq!(err, JmxError::DocType { line: 2, column: 1 });
    assert!(
        err.to_string().contains("entity declarations are refused"),
        "{err}"
    );

    let laughs = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<jmeterTestPlan><hashTree><TestPlan guiclass="TestPlanGui" testclass="TestPlan" testname="&lol2;"/></hashTree></jmeterTestPlan>"#;
    assert!(matches!(
        import(laughs),
        Err(JmxError::DocType { line: 2, .. })
    ));

    // An entity used without a declaration is refused too.
    let undeclared = b"<jmeterTestPlan><hashTree><TestPlan guiclass=\"TestPlanGui\" testclass=\"TestPlan\" testname=\"x\"><stringProp name=\"TestPlan.comments\">&xxe;</stringProp></TestPlan></hashTree></jmeterTestPlan>";
    assert!(matches!(import(undeclared), Err(JmxError::Entity { .. })));

    let broken = b"<jmeterTestPlan>\n  <hashTree>\n    <TestPlan guiclass=\"TestPlanGui\" testclass=\"TestPlan\" testname=\"x\">\n  </hashTree>\n</jmeterTestPlan>";
    let err = import(broken).unwrap_err();
    match &err {
        JmxError::Xml { line, .. } => assert_eq!(*line, 4, "{err}"),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().starts_with("malformed XML at line 4"),
        "{err}"
    );

    let too_big = vec![b' '; MAX_JMX_BYTES + 1];
    assert!(matches!(import(&too_big), Err(JmxError::TooLarge { .. })));
    assert!(matches!(import(b"<html/>"), Err(JmxError::NotJmx(_))));
    assert!(matches!(
        import(b"<jmeterTestPlan><hashTree/></jmeterTestPlan>"),
        Err(JmxError::NotJmx(_))
    ));
}

fn count(s: &str, needle: &str) -> usize {
    s.matches(needle).count()
}

#[test]
fn prepare_sets_properties_and_one_timer_per_group_in_tps_mode() {
    let mut plan = rich_plan();
    plan.enabled = true;
    plan.serialize_thread_groups = false;
    plan.thread_groups[1].enabled = true;
    let settings = RunSettings {
        load: Load::Tps { tps: 300.0 },
        duration_secs: 120,
        generators: 2,
        schedule: Schedule::Manual,
        ..RunSettings::default()
    };
    let sizing = Sizing {
        expected_rt_ms: 200,
        max_threads_per_generator: 1000,
    };
    let p = prepare(&generate(&plan), &settings, &sizing).unwrap();
    let s = text(&p.jmx);
    assert_eq!(p.sized_groups, 2);
    // 150/s per generator, 75/s per group, × 0.2 s × 1.2 = 18 threads.
    assert_eq!(count(s, "${__P(myplatform.threads,18)}"), 2, "{s}");
    assert_eq!(count(s, "${__P(myplatform.duration,120)}"), 2);
    assert_eq!(count(s, "${__P(myplatform.throughput,9000)}"), 2);
    assert_eq!(count(s, "testname=\"MyPlatform throughput\""), 2);
    assert_eq!(
        p.properties(1),
        RunProperties {
            threads: 18,
            throughput_per_min: Some(9000.0),
            duration_secs: 120
        }
    );
    assert_eq!(
        p.properties(0).to_args(),
        [
            "-Jmyplatform.threads=18",
            "-Jmyplatform.duration=120",
            "-Jmyplatform.throughput=9000"
        ]
    );
    // Preparing again updates instead of adding; the plan reads back.
    let again = prepare(&p.jmx, &settings, &sizing).unwrap();
    assert_eq!(again.jmx, p.jmx);
    let back = import(&p.jmx).unwrap();
    assert_eq!(back.unsupported, vec![]);
    assert_eq!(back.plan.run.load, Load::Tps { tps: 150.0 });

    // Thread mode takes MyPlatform's timers out again.
    let threads = RunSettings {
        load: Load::Threads { threads: 5 },
        generators: 2,
        ..settings.clone()
    };
    let t = prepare(&p.jmx, &threads, &sizing).unwrap();
    let s = text(&t.jmx);
    assert_eq!(count(s, "MyPlatform throughput"), 0);
    assert_eq!(count(s, "${__P(myplatform.threads,3)}"), 2);
    assert_eq!(t.properties(0).threads, 3);
    assert_eq!(t.properties(1).threads, 2);
    assert_eq!(t.properties(1).throughput_per_min, None);
}

#[test]
fn serialized_groups_each_get_the_whole_rate_and_steps_size_for_the_peak() {
    let mut plan = rich_plan();
    plan.enabled = true;
    plan.thread_groups[1].enabled = true;
    let settings = RunSettings {
        load: Load::Tps { tps: 100.0 },
        generators: 1,
        schedule: Schedule::Automatic {
            steps: vec![
                ScheduleStep {
                    at: 1,
                    percent: 100,
                },
                ScheduleStep {
                    at: 2,
                    percent: 200,
                },
            ],
        },
        ..RunSettings::default()
    };
    let sizing = Sizing {
        expected_rt_ms: 100,
        max_threads_per_generator: 20,
    };
    let p = prepare(&generate(&plan), &settings, &sizing).unwrap();
    // 200/s at the peak × 0.1 s × 1.2 = 24, capped at 20.
    assert_eq!(p.properties(0).threads, 20);
    let sizing = Sizing {
        max_threads_per_generator: 1000,
        ..sizing
    };
    let p = prepare(&generate(&plan), &settings, &sizing).unwrap();
    assert_eq!(p.properties(0).threads, 24);
}

#[test]
fn little_s_law_rounds_up_and_stays_within_bounds() {
    let s = Sizing {
        expected_rt_ms: 500,
        max_threads_per_generator: 100,
    };
    assert_eq!(s.threads_for(0.1), 1);
    assert_eq!(s.threads_for(10.0), 6);
    assert_eq!(s.threads_for(10.1), 7);
    assert_eq!(s.threads_for(1e9), 100);
    assert_eq!(s.threads_for(f64::NAN), 100);
}

#[test]
fn prepare_refuses_a_plan_with_nothing_to_run() {
    let plan = rich_plan(); // its only enabled group... is "buyers"
    let mut off = plan.clone();
    for g in &mut off.thread_groups {
        g.enabled = false;
    }
    let err = prepare(&generate(&off), &plan.run, &Sizing::default()).unwrap_err();
    assert!(matches!(err, JmxError::NotJmx(_)), "{err}");
}

#[test]
fn a_header_set_edited_in_jmeter_becomes_its_own_set() {
    let plan = rich_plan();
    let jmx = String::from_utf8(generate(&plan)).unwrap();
    // Someone changed the login sampler's copy of "json" in the GUI.
    let edited = jmx.replacen(
        "<stringProp name=\"Header.value\">${__UUID()}</stringProp>",
        "<stringProp name=\"Header.value\">fixed</stringProp>",
        2,
    );
    let edited = edited.replacen("fixed", "${__UUID()}", 1);
    let back = import(edited.as_bytes()).unwrap();
    assert_eq!(back.unsupported, vec![]);
    let login = &back.plan.thread_groups[0].controllers[0].samplers[0];
    assert_eq!(login.header_set.as_deref(), Some("json (2)"));
    let names: Vec<_> = back
        .plan
        .header_sets
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["json", "unused", "empty", "json (2)"]);
    assert_eq!(back.plan.header_sets[3].headers[1].value, "fixed");
}

#[test]
fn disabled_config_elements_are_listed_and_crlf_with_a_bom_reads() {
    let jmx = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<jmeterTestPlan version=\"1.2\">\r\n<hashTree>\r\n\
<TestPlan guiclass=\"TestPlanGui\" testclass=\"TestPlan\" testname=\"P\">\r\n\
<stringProp name=\"TestPlan.comments\">a\r\nb</stringProp></TestPlan>\r\n<hashTree>\r\n\
<ThreadGroup guiclass=\"ThreadGroupGui\" testclass=\"ThreadGroup\" testname=\"G\">\r\n\
<stringProp name=\"ThreadGroup.num_threads\">3</stringProp></ThreadGroup>\r\n<hashTree>\r\n\
<HeaderManager guiclass=\"HeaderPanel\" testclass=\"HeaderManager\" testname=\"off\" enabled=\"false\"/><hashTree/>\r\n\
<GenericController guiclass=\"LogicControllerGui\" testclass=\"GenericController\" testname=\"C\"/><hashTree>\r\n\
<CookieManager guiclass=\"CookiePanel\" testclass=\"CookieManager\" testname=\"jar\" enabled=\"false\"/><hashTree/>\r\n\
<HTTPSamplerProxy guiclass=\"HttpTestSampleGui\" testclass=\"HTTPSamplerProxy\" testname=\"S\"/><hashTree/>\r\n\
</hashTree></hashTree></hashTree></hashTree></jmeterTestPlan>\r\n";
    let i = import(jmx.as_bytes()).unwrap();
    assert_eq!(i.plan.comment, "a\nb", "XML reads CRLF as LF");
    assert_eq!(i.plan.run.load, Load::Threads { threads: 3 });
    let s = &i.plan.thread_groups[0].controllers[0].samplers[0];
    assert_eq!(s.header_set, None);
    let left: Vec<String> = i
        .unsupported
        .iter()
        .filter(|u| u.outcome == Outcome::LeftOut)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        left,
        [
            "P / G / HTTP Header Manager \"off\": left out: disabled in the file (MyPlatform has no switch for it)",
            "P / G / C / HTTP Cookie Manager \"jar\": left out: disabled in the file (MyPlatform has no switch for it)",
        ]
    );
}
