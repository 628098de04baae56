//! The InfluxDB metric store against a real InfluxDB 1.x (`influxd`, see
//! `e2e::influx`) and against a fake HTTP server that fails on purpose.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use controller::metrics::influx::*;
use e2e::influx::InfluxServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// 2023-11-14T22:14:00Z, a whole minute, so 60 s buckets start on rows.
const T0: i64 = 1_700_000_040_000;
const FLUSH: Duration = Duration::from_secs(30);

fn settings(url: &str) -> InfluxSettings {
    InfluxSettings::new(url, "metrics")
}

fn cpu(host: usize, i: usize) -> f64 {
    // Multiples of 0.25: every sum and mean below is exact.
    host as f64 * 1000.0 + i as f64 * 0.25 + (i % 7) as f64
}

fn mem(i: usize) -> f64 {
    50.0 + (i % 10) as f64
}

fn fast(j: usize) -> f64 {
    5000.0 + (j % 4) as f64 * 2.0
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn values(points: &[Point]) -> Vec<f64> {
    points.iter().map(|p| p.value).collect()
}

async fn count(store: &InfluxStore, host: &str, field: &str, to_ms: i64) -> usize {
    let r = store
        .query_host(host, &[field], T0 - 1, to_ms, None)
        .await
        .expect("count query");
    r[0].1.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_round_trip_with_means_escaping_and_rejects() {
    let server = InfluxServer::start();
    let store = InfluxStore::connect(settings(&server.url))
        .await
        .expect("connect");

    // Three hosts over 10 minutes at 1 s, sent as agents would (a minute
    // at a time); web-3 has NaN and infinite values.
    let hosts = ["web-1", "web-2", "web-3"];
    for minute in 0..10 {
        let mut rows = Vec::new();
        for (h, host) in hosts.iter().enumerate() {
            for i in minute * 60..(minute + 1) * 60 {
                let mut c = cpu(h, i);
                let mut m = mem(i);
                if h == 2 {
                    match i % 100 {
                        5 => c = f64::NAN,
                        7 => (c, m) = (f64::NAN, f64::NAN),
                        _ if i == 9 => c = f64::INFINITY,
                        _ => {}
                    }
                }
                rows.push(Row {
                    host: host.to_string(),
                    ts_ms: T0 + i as i64 * 1000,
                    fields: vec![("cpu.busy_pct".into(), c), ("mem.used_pct".into(), m)],
                });
            }
        }
        store.write(rows);
    }
    // A host sampling twice as often.
    store.write(
        (0..1200)
            .map(|j| Row {
                host: "db-1".into(),
                ts_ms: T0 + j as i64 * 500,
                fields: vec![("cpu.busy_pct".into(), fast(j))],
            })
            .collect(),
    );
    assert!(store.flush(FLUSH).await, "flush: {:?}", store.stats());
    let st = store.stats();
    assert_eq!(
        (st.queued, st.written, st.lost),
        (0, 3 * 600 - 6 + 1200, 0),
        "{st:?}"
    );
    let end = T0 + 599_000;

    // Raw, exactly.
    let raw = store
        .query_host("web-1", &["cpu.busy_pct", "mem.used_pct"], T0, end, None)
        .await
        .expect("raw query");
    assert_eq!(raw.len(), 2);
    assert_eq!(raw[0].0, "cpu.busy_pct");
    assert_eq!(raw[1].0, "mem.used_pct");
    let want: Vec<Point> = (0..600)
        .map(|i| Point {
            ts_ms: T0 + i as i64 * 1000,
            value: cpu(0, i),
        })
        .collect();
    assert_eq!(raw[0].1, want);
    assert_eq!(values(&raw[1].1), (0..600).map(mem).collect::<Vec<_>>());

    // A sub-range, both ends included.
    let part = store
        .query_host("web-2", &["cpu.busy_pct"], T0 + 10_000, T0 + 19_000, None)
        .await
        .unwrap();
    assert_eq!(
        values(&part[0].1),
        (10..20).map(|i| cpu(1, i)).collect::<Vec<_>>()
    );

    // 60 s means.
    let means = store
        .query_host(
            "web-2",
            &["cpu.busy_pct", "mem.used_pct"],
            T0,
            end,
            Some(60_000),
        )
        .await
        .expect("mean query");
    let want: Vec<Point> = (0..10)
        .map(|b| Point {
            ts_ms: T0 + b as i64 * 60_000,
            value: mean(
                &(b * 60..(b + 1) * 60)
                    .map(|i| cpu(1, i))
                    .collect::<Vec<_>>(),
            ),
        })
        .collect();
    assert_eq!(means[0].1, want);
    assert!(
        means[1].1.iter().all(|p| p.value == 54.5),
        "{:?}",
        means[1].1
    );

    // NaN and infinity skipped; a row with no finite field skipped whole.
    let w3 = store
        .query_host("web-3", &["cpu.busy_pct", "mem.used_pct"], T0, end, None)
        .await
        .unwrap();
    assert_eq!(w3[0].1.len(), 600 - 6 - 6 - 1);
    assert_eq!(w3[1].1.len(), 600 - 6);
    assert!(w3[0].1.iter().all(|p| p.value.is_finite()));
    assert!(!w3[1].1.iter().any(|p| p.ts_ms == T0 + 7_000));
    assert!(w3[1].1.iter().any(|p| p.ts_ms == T0 + 5_000));

    // Mean over hosts: per host and bucket first, then across hosts.
    let across = store
        .query_hosts_mean(&["web-1", "db-1"], "cpu.busy_pct", T0, end, 60_000)
        .await
        .expect("hosts mean");
    assert_eq!(across.len(), 10);
    for (b, p) in across.iter().enumerate() {
        let a: Vec<f64> = (b * 60..(b + 1) * 60).map(|i| cpu(0, i)).collect();
        let d: Vec<f64> = (b * 120..(b + 1) * 120)
            .filter(|j| T0 + *j as i64 * 500 <= end)
            .map(fast)
            .collect();
        let want = (mean(&a) + mean(&d)) / 2.0;
        let pooled = (a.iter().sum::<f64>() + d.iter().sum::<f64>()) / (a.len() + d.len()) as f64;
        assert_eq!(p.ts_ms, T0 + b as i64 * 60_000);
        assert!(
            (p.value - want).abs() < 1e-9,
            "bucket {b}: {} != {want}",
            p.value
        );
        assert!(
            (p.value - pooled).abs() > 1.0,
            "bucket {b} weighed by samples"
        );
    }
    // Unknown and duplicate hosts change nothing; no hosts, no points.
    let again = store
        .query_hosts_mean(
            &["web-1", "db-1", "web-1", "nobody"],
            "cpu.busy_pct",
            T0,
            end,
            60_000,
        )
        .await
        .unwrap();
    assert_eq!(again, across);
    assert!(
        store
            .query_hosts_mean(&[], "cpu.busy_pct", T0, end, 60_000)
            .await
            .unwrap()
            .is_empty()
    );

    // Names that need escaping, in line protocol and in InfluxQL.
    let odd_host = r#"it's "odd", a\b = 1;DROP DATABASE metrics"#;
    let odd_fields = [
        "disk.vda.read_bps",
        "app.port.8080.close_wait",
        "with space, comma=equals",
        r#"quote"double'single"#,
        r"back\slash",
        r#"x") FROM "host"; DROP DATABASE "metrics"#,
    ];
    store.write(vec![Row {
        host: odd_host.into(),
        ts_ms: T0,
        fields: odd_fields
            .iter()
            .enumerate()
            .map(|(k, f)| (f.to_string(), k as f64 + 0.5))
            .collect(),
    }]);
    assert!(store.flush(FLUSH).await);
    let odd = store
        .query_host(odd_host, &odd_fields, T0, T0, None)
        .await
        .expect("query of odd names");
    for (k, (name, points)) in odd.iter().enumerate() {
        assert_eq!(name, odd_fields[k]);
        assert_eq!(
            points,
            &vec![Point {
                ts_ms: T0,
                value: k as f64 + 0.5
            }],
            "{name}"
        );
    }
    let odd_mean = store
        .query_hosts_mean(&[odd_host], odd_fields[3], T0, T0, 1000)
        .await
        .unwrap();
    assert_eq!(
        odd_mean,
        vec![Point {
            ts_ms: T0,
            value: 3.5
        }]
    );
    // Injection attempts find nothing and harm nothing.
    for evil in [
        "web-1' OR 'a'='a",
        r"web-1\' OR 'a'='a",
        "x'; DROP DATABASE metrics; SELECT '",
        "web-1\" OR \"host\" =~ /.*/ --",
    ] {
        let r = store
            .query_host(evil, &["cpu.busy_pct"], T0, end, None)
            .await
            .unwrap_or_else(|e| panic!("{evil}: {e}"));
        assert!(r[0].1.is_empty(), "{evil} matched {} points", r[0].1.len());
        let r = store
            .query_hosts_mean(&[evil], "cpu.busy_pct", T0, end, 60_000)
            .await
            .unwrap();
        assert!(r.is_empty(), "{evil}");
    }
    let r = store
        .query_host(
            "web-1",
            &[r#"cpu.busy_pct"; DROP DATABASE "metrics"#],
            T0,
            end,
            None,
        )
        .await
        .unwrap();
    assert!(r[0].1.is_empty());
    assert_eq!(
        count(&store, "web-1", "cpu.busy_pct", end).await,
        600,
        "data still there"
    );
    assert!(matches!(
        store
            .query_host("web-1", &["cpu.busy_pct"], T0, end, Some(0))
            .await,
        Err(InfluxError::BadQuery(_))
    ));

    // A row InfluxDB rejects (field type conflict) is dropped and counted;
    // the rest of its batch arrives.
    let conflict = e2e::http()
        .post(format!("{}/write?db=metrics&precision=ms", server.url))
        .body(format!("host,host=legacy typed=1i {T0}"))
        .send()
        .await
        .expect("direct write");
    assert_eq!(conflict.status().as_u16(), 204);
    let lost_before = store.stats().lost;
    store.write(
        (0..10)
            .map(|i| Row {
                host: "mixed".into(),
                ts_ms: T0 + i * 1000,
                fields: if i % 3 == 0 {
                    vec![("typed".into(), 1.5), ("ok".into(), i as f64)]
                } else {
                    vec![("ok".into(), i as f64)]
                },
            })
            .collect(),
    );
    assert!(store.flush(FLUSH).await);
    let st = store.stats();
    assert_eq!(st.lost - lost_before, 4, "{st:?}");
    assert!(
        st.last_error
            .as_deref()
            .unwrap_or("")
            .contains("field type conflict"),
        "{st:?}"
    );
    let ok = store
        .query_host("mixed", &["ok"], T0, T0 + 9000, None)
        .await
        .unwrap();
    assert_eq!(values(&ok[0].1), vec![1.0, 2.0, 4.0, 5.0, 7.0, 8.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_queues_then_delivers_and_overflow_is_counted() {
    let mut server = InfluxServer::start();
    let mut s = settings(&server.url);
    s.queue_rows = 1000;
    s.batch_rows = 100;
    let store = InfluxStore::connect(s).await.expect("connect");
    let rows = |host: &str, from: usize, n: usize| -> Vec<Row> {
        (from..from + n)
            .map(|i| Row {
                host: host.into(),
                ts_ms: T0 + i as i64 * 1000,
                fields: vec![("v".into(), i as f64)],
            })
            .collect()
    };

    // Down: writes queue up, the caller sees no error and no wait.
    server.stop();
    for k in 0..3 {
        let t = Instant::now();
        store.write(rows("out-1", k * 100, 100));
        assert!(t.elapsed() < Duration::from_millis(500), "write blocked");
        assert_eq!(store.stats().queued, (k + 1) * 100);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().retries < 2 {
        assert!(Instant::now() < deadline, "no retries: {:?}", store.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = store.stats();
    assert_eq!((st.queued, st.written, st.lost), (300, 0, 0), "{st:?}");
    assert!(
        st.last_error
            .as_deref()
            .unwrap_or("")
            .contains("unreachable"),
        "{st:?}"
    );
    assert!(!store.flush(Duration::from_millis(200)).await);

    // A query while down fails fast and says why.
    let t = Instant::now();
    let err = store
        .query_host("out-1", &["v"], T0, T0 + 1_000_000, None)
        .await
        .expect_err("query against a stopped InfluxDB");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let msg = err.to_string();
    assert!(matches!(err, InfluxError::Unreachable { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!("InfluxDB at {} unreachable: ", server.url)),
        "{msg}"
    );

    // Back: everything arrives, once.
    server.restart();
    assert!(store.flush(FLUSH).await, "not flushed: {:?}", store.stats());
    let got = store
        .query_host("out-1", &["v"], T0, T0 + 1_000_000, None)
        .await
        .unwrap();
    assert_eq!(
        values(&got[0].1),
        (0..300).map(|i| i as f64).collect::<Vec<_>>()
    );
    let st = store.stats();
    assert_eq!((st.queued, st.written, st.lost), (0, 300, 0), "{st:?}");

    // Down again, and more than the queue holds: the excess is counted
    // exactly and the newest rows arrive.
    server.stop();
    for k in 0..10 {
        store.write(rows("out-2", k * 250, 250));
    }
    let st = store.stats();
    assert_eq!((st.queued, st.lost), (1000, 1500), "{st:?}");
    server.restart();
    assert!(store.flush(FLUSH).await, "not flushed: {:?}", store.stats());
    let got = store
        .query_host("out-2", &["v"], T0, T0 + 10_000_000, None)
        .await
        .unwrap();
    assert_eq!(got[0].1.len(), 1000);
    // At most one batch of old rows may have been kept in flight.
    let newest: Vec<f64> = (1600..2500).map(|i| i as f64).collect();
    assert_eq!(values(&got[0].1)[100..], newest[..]);
    let st = store.stats();
    assert_eq!((st.queued, st.written, st.lost), (0, 1300, 1500), "{st:?}");
}

/// A minimal HTTP/1.1 server: `/ping` 204, `/query` an empty result,
/// `/write` answers from `writes` in turn (then 204), recording bodies.
async fn fake_influx(writes: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(std::collections::VecDeque::from(writes)));
    let recorded = bodies.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (bodies, answers) = (recorded.clone(), answers.clone());
            tokio::spawn(async move {
                let mut sock = BufReader::new(sock);
                loop {
                    let mut request_line = String::new();
                    if sock.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if sock.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if sock.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let path = request_line.split(' ').nth(1).unwrap_or("");
                    let (status, text) = if path.starts_with("/ping") {
                        (204, String::new())
                    } else if path.starts_with("/query") {
                        (200, r#"{"results":[{"statement_id":0}]}"#.to_string())
                    } else if path.starts_with("/write") {
                        bodies
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&body).into_owned());
                        let next = answers.lock().unwrap().pop_front();
                        match next {
                            Some((s, t)) => (s, t.to_string()),
                            None => (204, String::new()),
                        }
                    } else {
                        (404, "not found".to_string())
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        text.len()
                    );
                    let out = sock.get_mut();
                    if out.write_all(head.as_bytes()).await.is_err()
                        || out.write_all(text.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, bodies)
}

#[tokio::test]
async fn server_errors_are_retried_in_order() {
    let (url, bodies) =
        fake_influx(vec![(500, r#"{"error":"engine on fire"}"#), (503, "busy")]).await;
    let store = InfluxStore::connect(settings(&url)).await.expect("connect");
    let rows: Vec<Row> = (0..7)
        .map(|i| Row {
            host: "h".into(),
            ts_ms: T0 + i,
            fields: vec![("v".into(), i as f64)],
        })
        .collect();
    store.write(rows);
    assert!(
        store.flush(Duration::from_secs(10)).await,
        "{:?}",
        store.stats()
    );
    let st = store.stats();
    assert_eq!((st.written, st.retries, st.lost), (7, 2, 0), "{st:?}");
    assert_eq!(
        st.last_error.as_deref(),
        Some(r#"InfluxDB answered 503: busy"#),
        "{st:?}"
    );
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    let want: String = (0..7)
        .map(|i| format!("host,host=h v={i} {}\n", T0 + i))
        .collect();
    assert_eq!(bodies[0], want);
}

#[tokio::test]
async fn connect_to_nothing_fails_clearly() {
    let port = e2e::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    let err = InfluxStore::connect(settings(&url))
        .await
        .expect_err("nothing listens");
    assert!(t.elapsed() < Duration::from_secs(5));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("InfluxDB at {url} unreachable: ")),
        "{msg}"
    );
    assert!(msg.contains("onnection refused"), "{msg}");
    let err = InfluxStore::connect(settings("https://127.0.0.1:8086"))
        .await
        .expect_err("https");
    assert!(err.to_string().contains("only plain http://"), "{err}");
}

/// The controller configured with `metrics.influxdb`: a real agent's samples
/// land in InfluxDB and the same series API answers from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_can_use_influxdb_as_its_metric_store() {
    use e2e::inproc::{settings, start_controller, start_monitor};

    let server = InfluxServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "127.0.0.1:0".parse().unwrap());
    s.metrics.influxdb = Some(InfluxSettings::new(server.url.clone(), "myplatform_e2e"));
    let ctl = start_controller(&s).await;
    assert!(
        !dir.path().join("metrics.db").exists(),
        "embedded store not used"
    );
    let state = tempfile::tempdir().unwrap();
    let _agent = start_monitor(
        &ctl,
        ctl.gateway_addr,
        state.path(),
        Duration::from_millis(250),
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = format!("http://{}", ctl.http_addr);
    let token = e2e::inproc::api_token(&ctl);
    let id = e2e::wait_for("a host", Duration::from_secs(20), || async {
        let v = e2e::get_json(&format!("{base}/api/hosts"), &token).await?;
        v.as_array()?.first()?["agent_id"]
            .as_str()
            .map(String::from)
    })
    .await;
    let url = format!(
        "{base}/api/hosts/{id}/series?fields=mem.total_bytes&from={}",
        now - 60_000
    );
    let q = e2e::wait_for("points in InfluxDB", Duration::from_secs(30), || async {
        let v = e2e::get_json(&url, &token).await?;
        (v["series"][0]["points"].as_array()?.len() >= 4).then_some(v)
    })
    .await;
    assert_eq!(q["resolution"], "raw");
    let mean = e2e::get_json(
        &format!(
            "{base}/api/series/mean?field=mem.total_bytes&from={}&max_points=5",
            now - 60_000
        ),
        &token,
    )
    .await
    .unwrap();
    assert_eq!(mean["hosts"], 1);
    let status = e2e::get_json(&format!("{base}/api/metrics/status"), &token)
        .await
        .unwrap();
    assert_eq!(status["backend"], "influxdb");
    assert!(
        status["influxdb"]["written"].as_u64().unwrap() >= 4,
        "{status}"
    );
    assert_eq!(status["influxdb"]["lost"], 0);
    let total = q["series"][0]["points"][0][1].as_f64().unwrap();
    assert!(
        mean["result"]["series"][0]["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p[1].as_f64() == Some(total))
    );
    ctl.stop().await;
}
