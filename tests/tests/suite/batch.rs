//! CSV batches against two real Dovecots with fifty users each: every CSV error reported at
//! once with nothing stored, a batch in the Exchange format migrated exactly under a global
//! concurrency limit counted on the Dovecot side, and batch-wide actions.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, stdout};
use testbed::{
    CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use, german_special_use,
};

const USERS: usize = 50;

fn users(prefix: &str, suffix: &str, password: &dyn Fn(usize) -> String) -> Vec<(String, String)> {
    (1..=USERS)
        .map(|i| (format!("{prefix}{i:02}{suffix}"), password(i)))
        .collect()
}

/// Users logged in to a Dovecot right now (`doveadm who`).
fn connected_users(d: &Dovecot) -> HashSet<String> {
    d.doveadm(&["who", "-1"])
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_batch_migrates_every_mailbox_within_the_concurrency_limit() {
    let src = Dovecot::start(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        users: users("u", "", &|i| format!("source-{i}")),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    // Destination logins are the addresses (EmailAddress), all with the admin-set password.
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: users("u", "@example.org", &|_| "dest-secret".into()),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let mut corpora = Vec::new();
    for i in 1..=USERS {
        let spec = CorpusSpec {
            seed: 100 + i as u64,
            messages: 60,
            max_attachment: 0,
            size_factor: 1.0,
        };
        corpora.push(testbed::write_maildir(&src, &format!("u{i:02}"), &spec).unwrap());
    }

    // A daemon that runs at most 3 mailboxes at once.
    let fake_pair = crate::common::pair(CorpusSpec {
        seed: 1,
        messages: 1,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&fake_pair);
    d.args = vec!["--max-jobs".into(), "3".into()];
    d.start().await;
    let (dir, template) = d.batch_template(src.imap_port(), dst.imap_port(), "");
    let csv = |name: &str, text: &str| {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f
    };
    let create = |name: &str, file: &std::path::Path| {
        d.ctl(&[
            "batch",
            "create",
            name,
            "--csv",
            file.to_str().unwrap(),
            "--template",
            template.to_str().unwrap(),
        ])
    };

    // Every CSV error, with its message, and nothing stored.
    let cases = [
        ("empty.csv", "", vec!["Upload file can't be empty"]),
        (
            "missing.csv",
            "EmailAddress,Password\nu01@example.org,x\n",
            vec!["Column \"UserName\" is missing from the CSV file."],
        ),
        (
            "rows.csv",
            "EmailAddress,UserName,Password\nu01@example.org,u01\nbad address,u02,p\nu03@example.org,u03,p\nU03@example.org,u04,p\n",
            vec![
                "Row 2 has the wrong number of columns. Expected number: 3. Actual number: 2.",
                "Row 3: EmailAddress \"bad address\" is not an email address",
                "Row 5: mailbox U03@example.org is already in row 4.",
            ],
        ),
    ];
    for (file, text, needles) in cases {
        let out = create("broken", &csv(file, text));
        assert!(!out.status.success(), "{file} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{file}: {n:?} not in {err}");
        }
    }
    let mut big = String::from("EmailAddress,UserName,Password\n");
    for i in 0..50_001 {
        big.push_str(&format!("x{i}@example.org,x{i},p\n"));
    }
    let out = create("huge", &csv("huge.csv", &big));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("The CSV file contains more than 50,000 rows")
    );
    assert_eq!(
        stdout(&d.ctl(&["--json", "list"])),
        "[]",
        "nothing stored by a refused batch"
    );

    // The real batch, in the Exchange format.
    let mut text = String::from("EmailAddress,UserName,Password\n");
    for i in 1..=USERS {
        text.push_str(&format!("u{i:02}@example.org,u{i:02},source-{i}\n"));
    }
    let file = csv("staff.csv", &text);
    assert_eq!(stdout(&create("staff", &file)), "staff");
    let again = create("staff", &file);
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("The migration batch staff already exists.")
    );

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut most = 0;
    loop {
        most = most.max(connected_users(&src).len());
        let list: serde_json::Value =
            serde_json::from_str(&stdout(&d.ctl(&["--json", "batch", "list"]))).unwrap();
        let statuses = list[0]["statuses"].as_array().cloned().unwrap_or_default();
        if statuses.len() == 1 && statuses[0][0] == "Completed" && statuses[0][1] == USERS as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "batch not done: {list}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        most <= 3,
        "at most 3 mailboxes at once on the source, saw {most}"
    );
    assert!(
        most >= 2,
        "the batch ran mailboxes in parallel (saw {most})"
    );

    for (i, corpus) in corpora.iter().enumerate() {
        let user = format!("u{:02}", i + 1);
        let report = testbed::verify(
            &src.account(&user).unwrap(),
            &dst.account(&format!("{user}@example.org")).unwrap(),
            &corpus.mapping_to(&dst),
        )
        .await
        .unwrap();
        assert!(report.is_exact(), "{user}:\n{report}");
    }
    let status = stdout(&d.ctl(&["batch", "status", "staff"]));
    assert!(
        status.contains("staff/u07@example.org") && status.contains(&format!("{USERS} jobs")),
        "{status}"
    );
    let out = stdout(&d.ctl(&["batch", "delete", "--yes", "staff"]));
    assert_eq!(out.lines().count(), USERS, "{out}");
    assert_eq!(stdout(&d.ctl(&["--json", "batch", "list"])), "[]");
}
