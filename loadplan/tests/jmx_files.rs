//! Import, generate and prepare on .jmx files written by hand in the
//! formats JMeter writes (tests/data/): one as the 5.6 GUI saves it, one
//! in the older layout with `enabled="true"` everywhere and a structure
//! MyPlatform does not have, one with plugins and timers. JMeter itself
//! loads the first two (the third needs the plugin); e2e/tests/jmx_jmeter.rs
//! runs them.

use loadplan::jmx::{Imported, Outcome, Sizing, generate, import, prepare};
use loadplan::{AssertionKind, Body, ExtractorKind, Load, Method, RunSettings, Sharing};

fn read(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn imported(name: &str) -> Imported {
    import(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Paths of the notes with `outcome`, in order.
fn paths(i: &Imported, outcome: Outcome) -> Vec<&str> {
    i.unsupported
        .iter()
        .filter(|u| u.outcome == outcome)
        .map(|u| u.path.as_str())
        .collect()
}

#[test]
fn every_file_imports_and_regenerates_stably() {
    for name in [
        "shop-gui-5.6.jmx",
        "legacy-structure.jmx",
        "plugins-and-pacing.jmx",
    ] {
        let first = generate(&imported(name).plan);
        let again = import(&first).unwrap();
        assert_eq!(again.unsupported, vec![], "{name}");
        let second = generate(&again.plan);
        assert_eq!(
            String::from_utf8(second).unwrap(),
            String::from_utf8(first).unwrap(),
            "{name}: generate(import(x)) is not stable"
        );
    }
}

#[test]
fn a_plan_saved_by_the_jmeter_gui_comes_in_whole_where_the_model_allows() {
    let i = imported("shop-gui-5.6.jmx");
    let p = &i.plan;
    assert_eq!(p.name, "Shop");
    assert!(p.teardown_on_shutdown);
    assert_eq!(p.variables.len(), 2);
    assert_eq!(p.variables[0].value, "${__P(host,shop.example)}");
    assert_eq!(p.run.load, Load::Threads { threads: 2 });
    let [g] = p.thread_groups.as_slice() else {
        panic!("one thread group: {:?}", p.thread_groups);
    };
    assert_eq!((g.name.as_str(), g.ramp_up_secs), ("Customers", 1));
    assert!(g.cookies && !g.clear_cookies_each_iteration);
    assert_eq!(g.csv_data_sets[0].file, "users.csv");
    assert_eq!(g.csv_data_sets[0].variable_names, ["user", "password"]);
    let names: Vec<_> = g.controllers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Login flow", "Browse"]);

    let login = &g.controllers[0].samplers[0];
    // HTTP Request Defaults filled what the sampler left empty.
    assert_eq!(
        (login.host.as_str(), login.port.as_str()),
        ("${host}", "${port}")
    );
    assert_eq!(login.content_encoding, "UTF-8");
    assert_eq!(login.method, Method::Post);
    assert!(matches!(&login.body, Body::Json { text } if text.contains("\"${user}\"")));
    // A substring check without regex characters is a "contains".
    let a = login.assertion.as_ref().unwrap();
    assert_eq!(
        (a.kind, a.text.as_str()),
        (AssertionKind::Contains, "token")
    );
    assert_eq!(login.extractors[0].variable, "token");
    // The group's headers merged with the sampler's, the sampler's Accept
    // winning as in JMeter.
    let set = p
        .header_sets
        .iter()
        .find(|s| Some(&s.name) == login.header_set.as_ref())
        .unwrap();
    let headers: Vec<_> = set
        .headers
        .iter()
        .map(|h| format!("{}: {}", h.name, h.value))
        .collect();
    assert_eq!(
        headers,
        [
            "Accept: */*",
            "User-Agent: shop-test",
            "Content-Type: application/json"
        ]
    );

    let orders = &g.controllers[0].samplers[1];
    // "already encoded" values are decoded: JMeter encodes model values.
    assert!(matches!(&orders.body, Body::Form { fields } if fields[0].value == "open or paid"));
    assert_eq!(orders.extractors[0].kind, ExtractorKind::Regex);
    assert_eq!(orders.extractors[0].default, "0");
    let browse = &g.controllers[1].samplers;
    assert_eq!(browse.len(), 2);
    assert_eq!(
        browse[0].assertion.as_ref().unwrap().kind,
        AssertionKind::Equals
    );
    assert!(!browse[1].enabled, "the disabled sampler stays disabled");

    assert_eq!(
        paths(&i, Outcome::LeftOut),
        [
            "Shop / Customers / Login flow / HTTP Request \"POST /login\" / Response Assertion \"Status 200\"",
            "Shop / Customers / Login flow / HTTP Request \"GET /orders\" / Constant Timer \"Think time\"",
            "Shop / Customers / Browse / JSR223 Sampler \"calc\"",
            "Shop / Customers / Listener \"View Results Tree\"",
        ]
    );
    let changed = paths(&i, Outcome::Changed);
    for want in [
        "Shop / Thread Group \"Customers\"",
        "Shop / Customers / HTTP Request Defaults \"HTTP Request Defaults\"",
        "Shop / Customers / HTTP Header Manager \"HTTP Header Manager\"",
        "Shop / Customers / CSV Data Set Config \"Users\"",
        "Shop / Customers / Transaction Controller \"Login flow\"",
    ] {
        assert!(changed.contains(&want), "{want} not in {changed:#?}");
    }
    let text: Vec<String> = i.unsupported.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("JSR223 Sampler \"calc\": left out: only HTTP requests")),
        "{text:#?}"
    );
}

#[test]
fn another_structure_is_flattened_and_every_change_is_named() {
    let i = imported("legacy-structure.jmx");
    let p = &i.plan;
    assert!(p.serialize_thread_groups);
    let vars: Vec<_> = p.variables.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        vars,
        ["base", "lang"],
        "the UDV config element joins the plan's"
    );
    assert_eq!(p.run.load, Load::Threads { threads: 10 });
    assert_eq!(p.run.duration_secs, 300);
    let names: Vec<_> = p.thread_groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["Readers", "Writers"]);
    let readers = &p.thread_groups[0];
    assert!(!p.thread_groups[1].enabled);
    // Plan-level cookie manager and CSV data set are on every group.
    for g in &p.thread_groups {
        assert!(g.cookies && g.clear_cookies_each_iteration);
        assert_eq!(g.csv_data_sets[0].file, "accounts.csv");
        assert_eq!(g.csv_data_sets[0].delimiter, "|");
        assert_eq!(g.csv_data_sets[0].sharing, Sharing::CurrentThread);
    }
    let controllers: Vec<(&str, Vec<&str>)> = readers
        .controllers
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.samplers.iter().map(|s| s.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        controllers,
        [
            ("Requests", vec!["health"]),
            ("Repeat 3 times", vec!["list", "detail", "rare"]),
            ("Requests 2", vec!["upload"]),
        ]
    );
    let repeat = &readers.controllers[1].samplers;
    assert!(repeat[0].enabled && repeat[1].enabled);
    assert!(!repeat[2].enabled, "under a disabled If Controller");
    // Two JSON paths in one extractor become two extractors.
    let x: Vec<_> = repeat[1]
        .extractors
        .iter()
        .map(|x| {
            (
                x.variable.as_str(),
                x.expression.as_str(),
                x.default.as_str(),
            )
        })
        .collect();
    assert_eq!(x, [("a", "$.a", "x"), ("b", "$.b", "y")]);
    // The plan-level header manager reaches every sampler.
    assert!(
        p.thread_groups
            .iter()
            .flat_map(|g| &g.controllers)
            .flat_map(|c| &c.samplers)
            .all(|s| s.header_set.as_deref() == Some("Common headers"))
    );
    // Raw body parts are concatenated, as JMeter sends them.
    let create = &p.thread_groups[1].controllers[0].samplers[0];
    assert!(matches!(&create.body, Body::Json { text } if text == "{\"name\": \"x\"}"));

    assert_eq!(
        paths(&i, Outcome::LeftOut),
        [
            "Legacy / Uniform Random Timer \"Jitter\"",
            "Legacy / setUp Thread Group \"Prepare data\"",
            "Legacy / Readers / Repeat 3 times / inner / HTTP Request \"detail\" / Regular Expression Extractor \"etag\"",
            "Legacy / Readers / Debug Sampler \"debug\"",
            "Legacy / Readers / Response Assertion \"No errors\"",
            "Legacy / Readers / Module Controller \"reuse\"",
            "Legacy / tearDown Thread Group \"Cleanup\"",
            "Legacy / Listener \"Summary Report\"",
        ]
    );
    let messages: Vec<String> = i.unsupported.iter().map(ToString::to_string).collect();
    for want in [
        "Legacy / Readers / HTTP Request \"health\": changed: samplers directly under the thread group were put into a generated controller \"Requests\"",
        "Legacy / Readers / Loop Controller \"Repeat 3 times\": changed: imported as a simple controller: its Loop Controller behaviour is lost",
        "Legacy / Readers / Repeat 3 times / Simple Controller \"inner\": changed: nested controller: its samplers were moved into \"Repeat 3 times\"",
        "Legacy / HTTP Cookie Manager \"HTTP Cookie Manager\": changed: its predefined cookies are left out",
        "Legacy / CSV Data Set Config \"Accounts\": changed: file \"/home/qa/data/accounts.csv\" becomes data/accounts.csv: upload accounts.csv with the plan",
        "Legacy / Writers / write / HTTP Request \"create\": changed: method \"PROPPATCH\" is not one MyPlatform sends; GET used",
        "Legacy / Readers / HTTP Request \"upload\": changed: file uploads are left out",
    ] {
        assert!(
            messages.iter().any(|m| m == want),
            "{want}\nnot in {messages:#?}"
        );
    }
}

#[test]
fn plugins_timers_and_unusual_assertions_are_listed() {
    let i = imported("plugins-and-pacing.jmx");
    let p = &i.plan;
    // The plugin thread group has no thread count; the standard one's
    // comes from its property default.
    assert_eq!(p.run.load, Load::Threads { threads: 4 });
    let find = &p.thread_groups[0].controllers[0].samplers[0];
    // "either" (or), "two patterns" and "price" (substring with regex
    // characters) are left out; "matches" is the first one kept.
    let a = find.assertion.as_ref().unwrap();
    assert_eq!(
        (a.kind, a.text.as_str()),
        (AssertionKind::Matches, "\\{.*\\}")
    );
    let left: Vec<_> = paths(&i, Outcome::LeftOut)
        .into_iter()
        .map(|p| p.rsplit(" / ").next().unwrap())
        .collect();
    assert_eq!(
        left,
        [
            "Response Assertion \"either\"",
            "Response Assertion \"two patterns\"",
            "Response Assertion \"price\"",
            "Response Assertion \"second\"",
            "JSON Assertion \"has items\"",
            "Boundary Extractor \"between\"",
            "Regular Expression Extractor \"second group\"",
            "Constant Throughput Timer \"Pace\"",
            "Gaussian Random Timer \"Think\"",
            "Precise Throughput Timer \"Precise\"",
        ]
    );
    let pace = i
        .unsupported
        .iter()
        .find(|u| u.path.ends_with("\"Pace\""))
        .unwrap();
    assert!(
        pace.message.contains("it asked for 2/s"),
        "{}",
        pace.message
    );
}

#[test]
fn prepare_keeps_uploaded_plans_and_reports_what_else_sets_the_pace() {
    let settings = RunSettings {
        load: Load::Tps { tps: 50.0 },
        duration_secs: 30,
        ..RunSettings::default()
    };
    let sizing = Sizing::default();

    let p = prepare(&read("plugins-and-pacing.jmx"), &settings, &sizing).unwrap();
    let notes: Vec<String> = p.notes.iter().map(ToString::to_string).collect();
    assert_eq!(p.sized_groups, 1, "{notes:#?}");
    for want in [
        "Paced / UltimateThreadGroup \"Stepping users\": MyPlatform cannot set the threads or duration of this kind of thread group (UltimateThreadGroup): it runs as the file says",
        "Paced / Thread Group \"Browsers\": Constant Throughput Timer \"Pace\" also paces its samplers: the lower of its rate and the target wins",
        "Paced / Thread Group \"Browsers\": Gaussian Random Timer \"Think\" adds waiting time to its samplers",
        "Paced / Thread Group \"Browsers\" / Simple Controller \"pages\" / HTTP Request \"home\": Precise Throughput Timer \"Precise\" also paces",
    ] {
        assert!(
            notes.iter().any(|n| n.starts_with(want)),
            "{want}\nnot in {notes:#?}"
        );
    }
    let s = String::from_utf8(p.jmx.clone()).unwrap();
    // Two groups share 50/s: 25/s × 0.5 s × 1.2 = 15 threads.
    assert!(s.contains(
        "<stringProp name=\"ThreadGroup.num_threads\">${__P(myplatform.threads,15)}</stringProp>"
    ));
    assert_eq!(s.matches("${__P(myplatform.throughput,3000)}").count(), 2);
    // The user's own timer and everything else is kept.
    assert!(s.contains("testname=\"Pace\""));
    assert!(s.contains("<collectionProp name=\"ultimatethreadgroupdata\">"));
    assert!(s.contains("<value>120.0</value>"));

    let p = prepare(&read("legacy-structure.jmx"), &settings, &sizing).unwrap();
    let notes: Vec<String> = p.notes.iter().map(ToString::to_string).collect();
    assert!(
        notes[0].starts_with(
            "Legacy: Uniform Random Timer \"Jitter\" adds waiting time to every thread group"
        ),
        "{notes:#?}"
    );
    let s = String::from_utf8(p.jmx).unwrap();
    // setUp / tearDown groups are neither paced nor sized; the disabled
    // "Writers" is left as it was.
    assert_eq!(s.matches("MyPlatform throughput").count(), 1);
    assert_eq!(s.matches("${__P(myplatform.threads,").count(), 1);
    assert!(s.contains("<stringProp name=\"ThreadGroup.num_threads\">3</stringProp>"));

    // The GUI file runs a fixed number of loops: the run's duration rules.
    let threads = RunSettings {
        load: Load::Threads { threads: 4 },
        generators: 2,
        ..settings
    };
    let p = prepare(&read("shop-gui-5.6.jmx"), &threads, &sizing).unwrap();
    let notes: Vec<String> = p.notes.iter().map(ToString::to_string).collect();
    assert_eq!(
        notes,
        [
            "Shop / Thread Group \"Customers\": its loop count (2) now is \"infinite\": the run's duration ends it"
        ]
    );
    assert_eq!(
        p.properties(0).to_args(),
        ["-Jmyplatform.threads=2", "-Jmyplatform.duration=30"]
    );
}
