//! Alerts: when the last mailbox of a batch finishes, every job of the batch says so in its
//! events, and the batch's report goes by e-mail through a real SMTP server from Debian
//! (aiosmtpd, on loopback) to the addresses the batch's template names.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, stdout};
use migrated_core::JobStatus;
use testbed::{CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use};

/// Debian's aiosmtpd (python3-aiosmtpd) on a free loopback port, storing mail in a maildir.
struct SmtpServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl SmtpServer {
    fn start(dir: &Path) -> Self {
        assert!(
            Path::new("/usr/lib/python3/dist-packages/aiosmtpd").exists(),
            "python3-aiosmtpd is missing: scripts/deps installs it"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = dir.join("maildir");
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            maildir,
        }
    }

    /// The messages received, as text.
    fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            for e in std::fs::read_dir(self.maildir.join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                out.push(String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned());
            }
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_batch_says_so_and_its_report_arrives_by_e_mail() {
    let users = |suffix: &str, password: &str| -> Vec<(String, String)> {
        (1..=2)
            .map(|i| (format!("u{i}{suffix}"), password.to_owned()))
            .collect()
    };
    let src = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: users("", "source-secret"),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: users("@example.org", "dest-secret"),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    for i in 1..=2 {
        let spec = CorpusSpec {
            seed: 500 + i,
            messages: 20,
            max_attachment: 0,
            size_factor: 1.0,
        };
        testbed::write_maildir(&src, &format!("u{i}"), &spec).unwrap();
    }
    let mut d = Daemon::in_dir(
        std::env::temp_dir().join(format!("migrated-alerts-{}", std::process::id())),
    );
    let smtp = SmtpServer::start(&d.state);
    d.args = vec![
        "--smtp-server".into(),
        format!("127.0.0.1:{}", smtp.port),
        "--smtp-security".into(),
        "plain".into(),
        "--smtp-from".into(),
        "migrated@example.org".into(),
    ];
    d.start().await;
    let (dir, template) = d.batch_template(
        src.imap_port(),
        dst.imap_port(),
        "notify = [\"admin@example.org\", \"helpdesk@example.org\"]\n",
    );
    let csv = dir.join("wave.csv");
    std::fs::write(
        &csv,
        "EmailAddress,UserName,Password\nu1@example.org,u1,source-secret\nu2@example.org,u2,source-secret\n",
    )
    .unwrap();
    stdout(&d.ctl(&[
        "batch",
        "create",
        "wave-1",
        "--csv",
        csv.to_str().unwrap(),
        "--template",
        template.to_str().unwrap(),
    ]));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mail = loop {
        if let Some(m) = smtp.messages().into_iter().next() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no report e-mail within 120 s\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        smtp.messages().len(),
        1,
        "one report for the batch, not one per mailbox"
    );
    // Read it as a mail client does: decoded headers and body.
    let parsed = mail_parser::MessageParser::default()
        .parse(mail.as_bytes())
        .expect("a valid message");
    let subject = parsed.subject().unwrap_or_default();
    assert!(
        subject.starts_with("migrated: batch wave-1 finished: 2 completed, 0 with errors"),
        "{subject}"
    );
    let to: Vec<&str> = parsed
        .to()
        .unwrap()
        .iter()
        .filter_map(|a| a.address())
        .collect();
    assert_eq!(to, ["admin@example.org", "helpdesk@example.org"]);
    assert_eq!(
        parsed.from().unwrap().first().unwrap().address(),
        Some("migrated@example.org")
    );
    let body = parsed.body_text(0).expect("a text body").into_owned();
    assert!(body.contains("migratectl report --batch wave-1"), "{body}");
    for mailbox in ["wave-1/u1@example.org", "wave-1/u2@example.org"] {
        let line = body
            .lines()
            .find(|l| l.starts_with(mailbox))
            .unwrap_or_else(|| panic!("{mailbox} in the report:\n{body}"));
        assert!(
            line.contains("Completed") && line.contains("20/20"),
            "{line}"
        );
    }
    for job in ["wave-1/u1@example.org", "wave-1/u2@example.org"] {
        let s = d
            .wait_until(job, "completion", |s| {
                s.status == Some(JobStatus::Completed)
            })
            .await;
        assert_eq!(s.items_done, 20);
        let events = stdout(&d.ctl(&["events", job]));
        assert!(
            events.contains("Batch finished: 2 completed, 0 with errors"),
            "{events}"
        );
    }
    let events = stdout(&d.ctl(&["events", "wave-1/u2@example.org"]))
        + &stdout(&d.ctl(&["events", "wave-1/u1@example.org"]));
    assert!(
        events.contains("Report e-mailed to admin@example.org, helpdesk@example.org."),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_an_alert_that_says_what_to_do() {
    let p = crate::common::pair(CorpusSpec {
        seed: 9,
        messages: 3,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let jobs = d.state.join("jobs");
    let job = crate::common::daemon::job_file(&p, &jobs, "wrong", "");
    // The source password file says something else than the server knows.
    std::fs::write(jobs.join("src.pass"), "not-the-password").unwrap();
    let text = std::fs::read_to_string(&job).unwrap();
    assert!(text.contains("src.pass"), "{text}");
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    let s = d
        .wait_until(&id, "the job to fail", |s| {
            s.status == Some(JobStatus::Failed)
        })
        .await;
    assert!(
        s.source_connection
            .as_deref()
            .unwrap_or("")
            .starts_with("Failed"),
        "{s:?}"
    );
    let events = stdout(&d.ctl(&["events", &id]));
    let alert = events
        .lines()
        .find(|l| l.contains("Run failed"))
        .unwrap_or_else(|| panic!("no alert:\n{events}"));
    assert!(
        alert.contains("What to do: the source refused the login")
            && alert.contains("migratectl delta wrong --source-password-file FILE"),
        "{alert}"
    );
    assert!(
        d.log().contains("Run failed"),
        "the alert is in the journal too"
    );
}
