//! The browser tooling itself: Chromium starts and a scenario passes, and a
//! failing scenario is caught with its exit code, its message and a
//! screenshot named after the failing step.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use e2e::browser::{BrowserRun, run_script, script, try_run_script};

// Declaring an icon keeps Chromium from fetching /favicon.ico, whose 404
// would be a console error and fail the scenario.
const INDEX: &str = r#"<!doctype html>
<html><head><title>MyPlatform smoke</title><link rel="icon" href="data:,"></head>
<body><h1>MyPlatform smoke</h1><p id="status">loading</p>
<script>setTimeout(() => { document.getElementById('status').textContent = 'ready'; }, 300);</script>
</body></html>"#;

const BOOM: &str = r#"<!doctype html>
<html><head><title>boom</title><link rel="icon" href="data:,"></head>
<body><p>boom</p><script>throw new Error('boom from the page');</script></body></html>"#;

/// Serves INDEX at `/` and BOOM at `/boom` on a loopback port until the
/// test process exits; returns the base URL.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // One thread per connection: Chromium opens speculative
            // connections that send nothing, which would stall a serial
            // server.
            std::thread::spawn(move || answer(stream));
        }
    });
    url
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = Vec::new();
    let mut chunk = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&chunk[..n]),
        }
    }
    let req = String::from_utf8_lossy(&req);
    let path = req.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/" => ("200 OK", INDEX),
        "/boom" => ("200 OK", BOOM),
        _ => ("404 Not Found", "not found"),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn smoke_scenario_passes_in_chromium() {
    let url = serve();
    let run = run_script(&script("smoke.mjs"), &[("URL", url)]);
    assert!(
        run.stdout.contains("scenario passed"),
        "unexpected output:\n{run}"
    );
    assert!(
        run.screenshots.is_empty(),
        "a passing run left screenshots:\n{run}"
    );
}

fn expect_failure(mode: &str, url: &str) -> Box<BrowserRun> {
    let run = try_run_script(
        &script("fail.mjs"),
        &[("URL", url.to_string()), ("FAIL_MODE", mode.to_string())],
    )
    .expect_err("fail.mjs must fail");
    assert!(!run.timed_out, "it should fail, not hang:\n{run}");
    assert_eq!(run.status.code(), Some(1), "exit status:\n{run}");
    run
}

fn assert_png(path: &PathBuf) {
    let bytes = std::fs::read(path).expect("read screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000,
        "{} is not a PNG screenshot",
        path.display()
    );
}

#[test]
fn failing_scenario_is_reported_with_screenshot() {
    let url = serve();

    // Text that never appears: the step's name, what was there instead and
    // a screenshot named after the step.
    let run = expect_failure("expect", &url);
    assert!(
        run.stderr.contains(r#"step "look for missing text""#)
            && run.stderr.contains(r#"it showed: "ready""#),
        "stderr lacks the failing step and what the page showed:\n{run}"
    );
    let want = run.screenshot_dir.join("02-look-for-missing-text.png");
    assert_eq!(run.screenshots, vec![want.clone()], "{run}");
    assert_png(&want);

    // The page's own script throwing fails the step that loaded it.
    let run = expect_failure("pageerror", &url);
    assert!(
        run.stderr
            .contains("uncaught exception: Error: boom from the page"),
        "stderr lacks the page's exception:\n{run}"
    );
    let want = run
        .screenshot_dir
        .join("01-open-a-page-whose-script-throws.png");
    assert_eq!(run.screenshots, vec![want.clone()], "{run}");
    assert_png(&want);

    // run_script turns the failure into a panic that names the screenshot.
    let panic = std::panic::catch_unwind(|| {
        run_script(
            &script("fail.mjs"),
            &[("URL", url.clone()), ("FAIL_MODE", "expect".to_string())],
        )
    })
    .expect_err("run_script must panic on a failing scenario");
    let message = panic
        .downcast_ref::<String>()
        .expect("panic message is a String");
    assert!(
        message.contains("browser scenario failed")
            && message.contains("02-look-for-missing-text.png"),
        "panic message lacks the screenshot:\n{message}"
    );
}
