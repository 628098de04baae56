//! The alert mailer against a real SMTP server (aiosmtpd): a UTF-8 subject
//! and body arrive intact for every recipient; a server that is down or
//! silent gives a clear error within the timeout and sending works again
//! once it is back; AUTH failures say so without the password; bad
//! addresses fail at `Mailer::new`.

use std::time::{Duration, Instant};

use controller::alerts::mailer::{MailError, Mailer, Security, SmtpSettings};
use e2e::smtp::SmtpServer;

const WAIT: Duration = Duration::from_secs(10);

fn settings(port: u16) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: None,
        password: None,
        from: "MyPlatform <alerts@example.com>".into(),
        to: vec![
            "ops@example.com".into(),
            "值班工程师 <oncall@example.org>".into(),
        ],
        timeout_secs: 10,
    }
}

#[tokio::test]
async fn a_chinese_alert_with_a_long_line_reaches_both_recipients_intact() {
    let smtp = SmtpServer::start();
    let mailer = Mailer::new(settings(smtp.port)).unwrap();
    let subject =
        "【严重】主机 web-01 的 CPU 使用率已连续 5 分钟高于 95%（当前 97.3%）— MyPlatform 告警 🔥";
    let long_line = format!(
        "最近日志：{}",
        "kernel: 磁盘 /var 空间不足 (disk /var is full) ".repeat(40)
    );
    assert!(long_line.len() > 1500);
    let body = format!(
        "主机：web-01 (10.0.0.7)\n指标：CPU 使用率 97.3% > 95%\n\n{long_line}\n\
         .\n.. a line of dots and trailing spaces   \n\n-- \nMyPlatform 监控平台\n"
    );
    mailer.send(subject, &body).await.unwrap();

    let got = smtp.wait_for(1, WAIT);
    assert_eq!(got.len(), 1, "{got:#?}");
    let m = &got[0];
    assert_eq!(m.from, "alerts@example.com");
    assert_eq!(m.to, ["ops@example.com", "oncall@example.org"]);
    assert_eq!(m.subject, subject);
    assert_eq!(m.body, body);
}

#[tokio::test]
async fn smtp_down_is_a_clear_error_within_the_timeout_and_sending_resumes_after_restart() {
    let mut smtp = SmtpServer::start();
    let port = smtp.port;
    let mailer = Mailer::new(SmtpSettings {
        timeout_secs: 3,
        ..settings(port)
    })
    .unwrap();
    mailer.send("before", "server up").await.unwrap();

    smtp.stop();
    let started = Instant::now();
    let err = mailer.send("while down", "lost").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4), "{err}");
    assert!(matches!(err, MailError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("SMTP server 127.0.0.1:{port} unreachable: ")),
        "{msg}"
    );

    smtp.restart();
    assert_eq!(smtp.port, port);
    mailer.send("after", "server back").await.unwrap();
    let subjects: Vec<_> = smtp
        .wait_for(2, WAIT)
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(subjects, ["before", "after"]);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_instead_of_hanging() {
    // The kernel completes the TCP handshake (backlog) but nobody ever
    // sends the SMTP greeting.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mailer = Mailer::new(SmtpSettings {
        timeout_secs: 1,
        ..settings(port)
    })
    .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), mailer.send("s", "b"))
        .await
        .expect("send must give up by itself")
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    assert!(matches!(err, MailError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    drop(silent);
}

#[tokio::test]
async fn auth_is_used_and_a_wrong_password_is_reported_without_revealing_it() {
    let smtp = SmtpServer::start_with_auth("alerts", "right-pass-42");
    let with = |password: &str| SmtpSettings {
        username: Some("alerts".into()),
        password: Some(password.into()),
        ..settings(smtp.port)
    };

    let err = Mailer::new(with("wrong-pass-17"))
        .unwrap()
        .send("s", "b")
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::AuthFailed { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("authentication failed"), "{shown}");
    assert!(!shown.contains("wrong-pass-17"), "{shown}");

    let anonymous = Mailer::new(settings(smtp.port)).unwrap();
    let err = anonymous.send("s", "b").await.unwrap_err();
    assert!(matches!(err, MailError::AuthFailed { .. }), "{err:?}");

    Mailer::new(with("right-pass-42"))
        .unwrap()
        .send("authenticated", "ok")
        .await
        .unwrap();
    let got = smtp.wait_for(1, WAIT);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].subject, "authenticated");
}

#[test]
fn a_bad_recipient_address_fails_at_construction() {
    let mut s = settings(2525);
    s.to.push("ops at example dot com".into());
    let err = Mailer::new(s).unwrap_err();
    assert!(matches!(err, MailError::InvalidRecipient { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("invalid recipient address \"ops at example dot com\""),
        "{err}"
    );
}
