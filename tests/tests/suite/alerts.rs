//! Alerts: when the last mailbox of a batch finishes, every job of the batch says so in its
//! events, and the batch's report goes by e-mail through a real SMTP server from Debian
//! (aiosmtpd, on loopback) to the addresses the batch's template names.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, stdout};
use migrated_core::JobStatus;
use testbed::CorpusSpec;

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
    let (src, dst) = crate::common::beds::two_mailbox_pair(500, 20, 1.0).await;
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

/// `migratectl --json alerts ARGS` as JSON rows.
fn alerts(d: &Daemon, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--json", "alerts"];
    all.extend_from_slice(args);
    let v: serde_json::Value = serde_json::from_str(&stdout(&d.ctl(&all))).unwrap();
    v.as_array().expect("a list of alerts").clone()
}

/// The messages whose subject starts so, parsed.
fn mails_starting(smtp: &SmtpServer, subject: &str) -> Vec<String> {
    smtp.messages()
        .into_iter()
        .filter(|m| {
            mail_parser::MessageParser::default()
                .parse(m.as_bytes())
                .and_then(|p| p.subject().map(|s| s.starts_with(subject)))
                .unwrap_or(false)
        })
        .collect()
}

async fn wait_for_mails(d: &Daemon, smtp: &SmtpServer, subject: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = mails_starting(smtp, subject);
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{count} e-mails {subject:?} not there within 120 s (found {})\n{}",
            found.len(),
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_kept_with_the_job_listed_by_filter_mailed_to_to_cc_bcc_and_cleared() {
    let p = crate::common::pair(CorpusSpec {
        seed: 31,
        messages: 3,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    let smtp = SmtpServer::start(&d.state);
    d.args = [
        "--smtp-server",
        &format!("127.0.0.1:{}", smtp.port),
        "--smtp-security",
        "plain",
        "--smtp-from",
        "migrated@example.org",
        "--alert-to",
        "admin@example.org",
        "--alert-cc",
        "helpdesk@example.org",
        "--alert-bcc",
        "audit@example.org",
        "--alert-bad-news",
        "immediate",
        // A digest every 3 seconds stands for the hourly one.
        "--alert-digest-minutes",
        "0.05",
        "--alerts-per-job",
        "2",
    ]
    .map(str::to_owned)
    .to_vec();
    d.start().await;
    let jobs = d.state.join("jobs");
    let good = crate::common::daemon::job_file(&p, &jobs, "good", "");
    let good_id = stdout(&d.ctl(&["create", good.to_str().unwrap()]));
    d.wait_until(&good_id, "completion", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    // migratectl read the password when it created the job: the next file may say another.
    let wrong = crate::common::daemon::job_file(&p, &jobs, "wrong", "");
    std::fs::write(jobs.join("src.pass"), "not-the-password").unwrap();
    let wrong_id = stdout(&d.ctl(&["create", wrong.to_str().unwrap()]));
    // Three refused logins: three Bad news mails at once, two alerts kept (--alerts-per-job).
    for run in 1..=3 {
        wait_for_mails(&d, &smtp, "migrated: Bad news: wrong", run).await;
        d.wait_until(&wrong_id, "the run to fail", |s| {
            s.status == Some(JobStatus::Failed)
        })
        .await;
        if run < 3 {
            stdout(&d.ctl(&["resume", "wrong"]));
        }
    }
    let kept = alerts(&d, &["--job", "wrong"]);
    assert_eq!(kept.len(), 2, "the oldest goes beyond 2: {kept:?}");
    let ids: Vec<&str> = kept.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [format!("{wrong_id}:1"), format!("{wrong_id}:2")]);
    for a in &kept {
        assert_eq!(
            (
                a["level"].as_str(),
                a["kind"].as_str(),
                a["job_name"].as_str()
            ),
            (Some("bad"), Some("login_refused"), Some("wrong")),
            "{a}"
        );
        assert!(
            a["what_to_do"]
                .as_str()
                .unwrap()
                .contains("migratectl delta wrong --source-password-file FILE"),
            "{a}"
        );
    }
    let good_news = alerts(&d, &["--level", "good"]);
    assert_eq!(good_news.len(), 1, "{good_news:?}");
    assert_eq!(good_news[0]["kind"], "mailbox_finished");
    assert_eq!(good_news[0]["job"], good_id.as_str());
    assert!(
        good_news[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Mailbox finished: 3 messages copied"),
        "{}",
        good_news[0]
    );
    assert_eq!(alerts(&d, &["--level", "bad"]), kept);
    assert_eq!(
        alerts(&d, &["--job", "good", "--level", "bad"]),
        Vec::<serde_json::Value>::new()
    );
    let table = stdout(&d.ctl(&["alerts"]));
    assert!(
        table.contains(&format!("{wrong_id}:2")) && table.contains("What to do: "),
        "{table}"
    );

    // The Bad news mail: To and Cc in its headers, Bcc in the envelope only.
    let bad = wait_for_mails(&d, &smtp, "migrated: Bad news: wrong", 3).await;
    let parsed = mail_parser::MessageParser::default()
        .parse(bad[0].as_bytes())
        .unwrap();
    let addresses = |a: Option<&mail_parser::Address>| -> Vec<String> {
        a.map(|a| {
            a.iter()
                .filter_map(|a| a.address())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
    };
    assert_eq!(addresses(parsed.to()), ["admin@example.org"]);
    assert_eq!(addresses(parsed.cc()), ["helpdesk@example.org"]);
    assert!(parsed.header("Bcc").is_none(), "{}", bad[0]);
    let envelope = parsed.header_raw("X-RcptTo").unwrap_or_default();
    for to in [
        "admin@example.org",
        "helpdesk@example.org",
        "audit@example.org",
    ] {
        assert!(envelope.contains(to), "{to} in the envelope: {envelope}");
    }
    let body = parsed.body_text(0).unwrap().into_owned();
    assert!(
        body.contains("What to do: ") && body.contains("login_refused"),
        "{body}"
    );
    // The Good news goes in the digest.
    let digest = wait_for_mails(&d, &smtp, "migrated: digest:", 1).await;
    let parsed = mail_parser::MessageParser::default()
        .parse(digest[0].as_bytes())
        .unwrap();
    let body = parsed.body_text(0).unwrap().into_owned();
    assert!(
        body.contains("Good news") && body.contains("Mailbox finished: 3 messages copied"),
        "{body}"
    );
    assert!(
        !body.contains("login_refused"),
        "Bad news went at once: {body}"
    );

    // Kept in the store: a restart lists the same.
    d.terminate();
    d.start().await;
    assert_eq!(alerts(&d, &["--job", "wrong"]), kept);
    // Swept with the job.
    stdout(&d.ctl(&["delete", "good", "--yes"]));
    assert!(alerts(&d, &["--level", "good"]).is_empty());
    // Cleared one by one, then all.
    let first = kept[0]["id"].as_str().unwrap();
    assert_eq!(
        stdout(&d.ctl(&["alerts", "clear", first])),
        "1 alerts cleared."
    );
    assert_eq!(alerts(&d, &[]), kept[1..].to_vec());
    let again = d.ctl(&["alerts", "clear", first]);
    assert_eq!(again.status.code(), Some(3), "no such alert any more");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("migratectl alerts"),
        "{again:?}"
    );
    let cleared: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["--json", "alerts", "clear", "--all"]))).unwrap();
    assert_eq!(cleared["cleared"], 1);
    assert!(alerts(&d, &[]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_is_bad_news_and_only_the_kinds_shown_are_kept() {
    // A destination quota of 2 MB and a corpus of more than 4 MB: the mailbox fills up.
    let p = crate::common::pair_with(crate::common::small_corpus(18), Some(2_000_000), None).await;
    let mut d = Daemon::new(&p);
    d.args = vec!["--alert-kinds-shown".into(), "mailbox_full".into()];
    d.start().await;
    let jobs = d.state.join("jobs");
    let full = crate::common::daemon::job_file(&p, &jobs, "full", "");
    let full_id = stdout(&d.ctl(&["create", full.to_str().unwrap()]));
    d.wait_until(&full_id, "the run to fail", |s| {
        s.status == Some(JobStatus::Failed)
    })
    .await;
    let wrong = crate::common::daemon::job_file(&p, &jobs, "wrong", "");
    std::fs::write(jobs.join("src.pass"), "not-the-password").unwrap();
    let wrong_id = stdout(&d.ctl(&["create", wrong.to_str().unwrap()]));
    d.wait_until(&wrong_id, "the run to fail", |s| {
        s.status == Some(JobStatus::Failed)
    })
    .await;
    let events = stdout(&d.ctl(&["events", "wrong"]));
    assert!(events.contains("Run failed"), "{events}");
    let all = alerts(&d, &[]);
    assert_eq!(all.len(), 1, "a refused login is not a kind shown: {all:?}");
    let a = &all[0];
    assert_eq!(
        (a["kind"].as_str(), a["level"].as_str(), a["job"].as_str()),
        (Some("mailbox_full"), Some("bad"), Some(full_id.as_str())),
        "{a}"
    );
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .contains("destination mailbox full"),
        "the server's words: {a}"
    );
    assert!(!a["what_to_do"].as_str().unwrap().is_empty(), "{a}");
}
