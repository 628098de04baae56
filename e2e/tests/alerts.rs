//! Alerts end to end: a real agent-monitor (in-process) feeds a controller
//! whose rule is bound to fire; the mail goes to a real SMTP server
//! (aiosmtpd). With the SMTP server down the alert is kept as `pending`,
//! retried, and delivered once it is back, exactly once.

use std::time::Duration;

use controller::alerts::rules::AlertRules;
use e2e::inproc::{settings, start_controller, start_monitor};
use e2e::smtp::SmtpServer;
use e2e::{get_json, wait_for};

// Multi-threaded: the SMTP harness waits by blocking, and the controller
// must keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alert_is_mailed_and_survives_an_smtp_outage() {
    let mut smtp = SmtpServer::start();
    smtp.stop();

    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "127.0.0.1:0".parse().unwrap());
    // Available memory is always below 100 % of total: fires after 1 s.
    s.alerts.rules = AlertRules {
        cpu_busy_above_pct: None,
        mem_available_below_pct: Some(100.0),
        mem_for_secs: 1,
        full_gc_min_interval_secs: None,
        silent_after_secs: None,
        ..AlertRules::default()
    };
    s.alerts.smtp = Some(smtp.settings("ops@myplatform.test"));
    s.alerts.mail_retry_secs = 1;
    let ctl = start_controller(&s).await;

    let state = tempfile::tempdir().unwrap();
    let _agent = start_monitor(
        &ctl,
        ctl.gateway_addr,
        state.path(),
        Duration::from_millis(250),
    );

    let url = format!("http://{}/api/alerts", ctl.http_addr);
    let token = e2e::inproc::api_token(&ctl);
    let pending = wait_for(
        "a pending alert while SMTP is down",
        Duration::from_secs(30),
        || async {
            let v = get_json(&url, &token).await?;
            let h = v["history"].as_array()?.first()?.clone();
            (h["mail_state"] == "pending" && h["mail_tries"].as_u64()? >= 1).then_some(v)
        },
    )
    .await;
    let alert = &pending["history"][0];
    assert_eq!(alert["kind"], "memory_low");
    assert_eq!(alert["firing"], true);
    assert!(
        alert["mail_error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{alert}"
    );
    assert_eq!(pending["firing"][0]["kind"], "memory_low");

    smtp.restart();
    assert!(
        smtp.is_running(),
        "SMTP server did not come back:\n{}",
        smtp.log()
    );
    let mails = smtp.wait_for(1, Duration::from_secs(60));
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0]
            .subject
            .starts_with("[MyPlatform] ALERT memory_low on "),
        "{}",
        mails[0].subject
    );
    assert!(
        mails[0].body.contains("memory") || mails[0].body.contains("Memory"),
        "{}",
        mails[0].body
    );
    assert_eq!(mails[0].to, vec!["ops@myplatform.test".to_string()]);
    wait_for("the alert marked sent", Duration::from_secs(10), || async {
        let v = get_json(&url, &token).await?;
        (v["history"][0]["mail_state"] == "sent").then_some(())
    })
    .await;
    // Fired once per episode: no second mail while it lasts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 1);
    ctl.stop().await;
}
