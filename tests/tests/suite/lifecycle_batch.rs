//! The issue-15 "done when" scenario, against two real Dovecots: a three-mailbox batch is
//! pre-flighted (a wrong source password and a destination address that does not exist, each
//! in Exchange's words; nothing created), corrected and pre-flighted clean, copied, synced
//! twice more by its 24-hour incremental syncs while mail arrives (each sync copying only the
//! new mail), completed with a final delta, after which its credentials are gone from the store
//! and no sync runs; credentials are then given back from the CSV in one step, and one side is
//! cleared and given again for one mailbox. A pre-flight of a silent server names host, port and
//! seconds.

use std::time::{Duration, Instant};

use migrated_core::JobStatus;
use testbed::{
    CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use, german_special_use,
};

use crate::common::daemon::{Daemon, stdout};

const START: u64 = 1_704_067_200; // 2024-01-01 00:00 UTC

fn set_clock(clock: &std::path::Path, t: u64) {
    let at = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%d %H:%M:%S"])
        .output()
        .unwrap();
    std::fs::write(clock, at.stdout).unwrap();
}

/// The batch's jobs as `batch status --json` gives them, by name.
fn jobs(d: &Daemon) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["--json", "batch", "status", "staff"]))).unwrap();
    v["jobs"].as_array().cloned().unwrap_or_default()
}

/// How many recurring syncs a job's events tell of.
fn syncs(d: &Daemon, job: &str) -> usize {
    stdout(&d.ctl(&["events", job]))
        .matches("Recurring delta")
        .count()
}

/// Moves the clock to `t` and waits until every job of the batch ran its `n`th recurring sync
/// and completed it; the jobs then.
async fn sync_at(d: &Daemon, clock: &std::path::Path, t: u64, n: usize) -> Vec<serde_json::Value> {
    set_clock(clock, t);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        d.signal("HUP");
        let list = jobs(d);
        let names: Vec<String> = list
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_owned())
            .collect();
        if list.iter().all(|j| j["status"] == "Completed")
            && names.iter().all(|n2| syncs(d, n2) == n)
        {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "sync {n} not done: {list:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two Dovecots for a three-mailbox batch: u1..u3 (passwords `source-N`) on the source,
/// u1..u3@example.org (the batch's shared `dest-secret`) on the destination.
async fn three_mailboxes() -> (Dovecot, Dovecot) {
    let src = Dovecot::start(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        users: (1..=3)
            .map(|i| (format!("u{i}"), format!("source-{i}")))
            .collect(),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: (1..=3)
            .map(|i| (format!("u{i}@example.org"), "dest-secret".to_owned()))
            .collect(),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    (src, dst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_from_preflight_through_incremental_syncs_to_cutover() {
    let (src, dst) = three_mailboxes().await;
    let mut corpora = Vec::new();
    for i in 1..=3u64 {
        let spec = CorpusSpec {
            seed: 1500 + i,
            messages: 40,
            max_attachment: 0,
            size_factor: 1.0,
        };
        corpora.push(testbed::write_maildir(&src, &format!("u{i}"), &spec).unwrap());
    }

    let state =
        std::env::temp_dir().join(format!("migrated-lifecycle-batch-{}", std::process::id()));
    let mut d = Daemon::in_dir(state);
    let clock = d.state.join("clock");
    set_clock(&clock, START);
    d.env.extend(testbed::faketime_env(&clock));
    d.start().await;
    let (dir, template) = d.batch_template(src.imap_port(), dst.imap_port(), "");
    let csv = |name: &str, text: &str| {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f
    };
    let t = template.to_str().unwrap();

    // Pre-flight: u2's password is wrong, u3's address has a typo (no such mailbox there).
    let first = csv(
        "first.csv",
        "EmailAddress,UserName,Password\nu1@example.org,u1,source-1\nu2@example.org,u2,wrong\nu03@example.org,u3,source-3\n",
    );
    let out = d.ctl(&[
        "batch",
        "test",
        "--csv",
        first.to_str().unwrap(),
        "--template",
        t,
    ]);
    assert_eq!(out.status.code(), Some(1), "problems make exit code 1");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("We had trouble signing in to this account. Please confirm that you're using the correct user name and password."),
        "{text}"
    );
    assert!(
        text.contains("A recipient wasn't found for u03@example.org on the target."),
        "{text}"
    );
    assert!(
        text.contains("3 mailboxes: 1 ready, 2 with problems"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &d.ctl(&[
            "--json",
            "batch",
            "test",
            "--csv",
            first.to_str().unwrap(),
            "--template",
            t,
        ])
        .stdout,
    ))
    .unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["mailbox"], "u1@example.org");
    assert_eq!(
        (
            rows[0]["source_ok"].clone(),
            rows[0]["destination_ok"].clone()
        ),
        (true.into(), true.into())
    );
    assert_eq!(rows[0]["messages"], corpora[0].total_messages() as u64);
    let bytes: u64 = corpora[0]
        .folders
        .values()
        .flat_map(|f| f.messages.iter().map(|m| m.size))
        .sum();
    assert_eq!(
        rows[0]["bytes"], bytes,
        "STATUS-level sizes of every folder"
    );
    let largest = corpora[0]
        .folders
        .values()
        .flat_map(|f| f.messages.iter().map(|m| m.size))
        .max()
        .unwrap();
    assert_eq!(rows[0]["largest"], largest);
    assert_eq!(rows[1]["source_ok"], false);
    assert_eq!(rows[2]["destination_ok"], false);
    assert_eq!(v["totals"]["with_problems"], 2);
    // The template's [folders] patterns: what they leave out is counted apart, not as a
    // problem, and not in the messages and bytes to copy.
    let narrowed = csv(
        "narrowed.toml",
        &format!(
            "{}[folders]\nexclude = [\"^Projekte\"]\n",
            std::fs::read_to_string(&template).unwrap()
        ),
    );
    let v: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &d.ctl(&[
            "--json",
            "batch",
            "test",
            "--csv",
            first.to_str().unwrap(),
            "--template",
            narrowed.to_str().unwrap(),
        ])
        .stdout,
    ))
    .unwrap();
    let row = &v["rows"][0];
    let (left_out, kept): (Vec<_>, Vec<_>) = corpora[0].folders.iter().partition(|(name, _)| {
        name.strip_prefix(corpora[0].prefix.as_str())
            .is_some_and(|c| c.starts_with("Projekte"))
    });
    assert!(!left_out.is_empty(), "the corpus has Projekte folders");
    assert_eq!(row["folders_left_out"], left_out.len() as u64, "{v}");
    assert_eq!(row["folders"], kept.len() as u64, "{v}");
    assert_eq!(
        row["messages"],
        kept.iter()
            .map(|(_, f)| f.messages.len() as u64)
            .sum::<u64>(),
        "{v}"
    );
    assert_eq!(row["problems"], serde_json::json!([]), "{v}");
    assert_eq!(
        stdout(&d.ctl(&["--json", "list"])),
        "[]",
        "a pre-flight creates nothing"
    );

    // Corrected: clean, then the batch (24-hour incremental syncs by default).
    let good = csv(
        "staff.csv",
        "EmailAddress,UserName,Password\nu1@example.org,u1,source-1\nu2@example.org,u2,source-2\nu3@example.org,u3,source-3\n",
    );
    let out = d.ctl(&[
        "batch",
        "test",
        "--csv",
        good.to_str().unwrap(),
        "--template",
        t,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("3 mailboxes: 3 ready, 0 with problems"),
        "{text}"
    );
    d.create_batch("staff", &good, &template);
    let done = d
        .wait_batch("staff", 3, |s| s == JobStatus::Completed)
        .await;
    for j in &done {
        assert_eq!(
            j["credentials"], true,
            "kept for the incremental syncs: {j}"
        );
    }
    let exact = |i: usize| {
        let (src, dst, corpus) = (&src, &dst, &corpora[i]);
        async move {
            let user = format!("u{}", i + 1);
            let r = testbed::verify(
                &src.account(&user).unwrap(),
                &dst.account(&format!("{user}@example.org")).unwrap(),
                &corpus.mapping_to(dst),
            )
            .await
            .unwrap();
            assert!(r.is_exact(), "{user}:\n{r}");
        }
    };
    for i in 0..3 {
        exact(i).await;
    }

    // Mail arrives; 25 hours later the incremental sync copies only it. Twice.
    let mut seed = 9000;
    for (round, new) in [(1usize, [2u64, 0, 1]), (2, [1, 3, 0])] {
        for (i, n) in new.iter().enumerate() {
            let acct = src.account(&format!("u{}", i + 1)).unwrap();
            for _ in 0..*n {
                seed += 1;
                testbed::append_message(
                    &acct,
                    "INBOX",
                    &testbed::synthetic_message(seed, 3000),
                    &[],
                    1_600_000_000,
                )
                .await
                .unwrap();
            }
        }
        let list = sync_at(&d, &clock, START + round as u64 * 25 * 3600, round).await;
        for (i, n) in new.iter().enumerate() {
            let j = list
                .iter()
                .find(|j| j["name"] == format!("staff/u{}@example.org", i + 1))
                .unwrap();
            assert_eq!(
                j["items_done"], *n,
                "sync {round} copies the new mail only: {j}"
            );
        }
        for i in 0..3 {
            exact(i).await;
        }
    }

    // The cutover: the final delta of every mailbox, then no credentials and no more syncs.
    let out = stdout(&d.ctl(&["batch", "complete", "staff"]));
    assert_eq!(
        out.lines().filter(|l| l.ends_with("Queued")).count(),
        3,
        "{out}"
    );
    let done = d
        .wait_batch("staff", 3, |s| s == JobStatus::Completed)
        .await;
    for j in &done {
        assert_eq!(j["credentials"], false, "erased by the final delta: {j}");
    }
    // Gone from the store, not only from the daemon's memory: a restart reads them back.
    d.terminate();
    d.start().await;
    for j in jobs(&d) {
        assert_eq!(j["credentials"], false, "after a restart: {j}");
        let events = stdout(&d.ctl(&["events", j["id"].as_str().unwrap()]));
        assert!(events.contains("Final delta requested"), "{events}");
    }
    // Days later no incremental sync runs (checked at the end, after many ticks).
    set_clock(&clock, START + 100 * 3600);
    d.signal("HUP");

    // Given back in one step from the CSV: a delta then finds nothing new.
    let out = stdout(&d.ctl(&[
        "batch",
        "credentials",
        "staff",
        "--csv",
        good.to_str().unwrap(),
        "--template",
        t,
    ]));
    assert_eq!(
        out.lines().filter(|l| l.ends_with("Completed")).count(),
        3,
        "{out}"
    );
    assert!(jobs(&d).iter().all(|j| j["credentials"] == true));
    // One side cleared for one mailbox: it waits for credentials until they are given.
    let u1 = "staff/u1@example.org";
    assert_eq!(
        stdout(&d.ctl(&["credentials", "clear", u1, "--source"])),
        "Waiting for credentials"
    );
    std::fs::write(dir.join("u1.pass"), "source-1").unwrap();
    assert_eq!(
        stdout(&d.ctl(&[
            "credentials",
            u1,
            "--source-password-file",
            dir.join("u1.pass").to_str().unwrap()
        ])),
        "Queued"
    );
    let id = jobs(&d)
        .iter()
        .find(|j| j["name"] == u1)
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .unwrap();
    let s = d
        .wait_until(&id, "the delta after new credentials", |s| {
            s.status == Some(JobStatus::Completed)
        })
        .await;
    assert_eq!(s.items_done, 0, "nothing new since the final delta");
    exact(0).await;
    d.signal("HUP");
    for i in 1..=3 {
        assert_eq!(
            syncs(&d, &format!("staff/u{i}@example.org")),
            2,
            "no incremental sync after the final delta"
        );
    }

    // The batch's report leads with its totals; a mailbox's log is a CSV for a spreadsheet.
    let report = stdout(&d.ctl(&["report", "--batch", "staff"]));
    let total: usize = corpora.iter().map(|c| c.total_messages()).sum::<usize>() + 7;
    let mut lines = report.lines();
    assert_eq!(
        lines.next(),
        Some("Totals: 3 mailboxes (3 Completed)"),
        "{report}"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&format!("  messages migrated {total}; ")),
        "{report}"
    );
    // The JSON report leads with the same totals, as numbers: the table's three lines are
    // them, and they add up the jobs' own counts (the last runs were deltas after the final
    // one: `migrated` counts the mail, `copied` what those runs added).
    let json: serde_json::Value = serde_json::from_str(&stdout(
        &d.ctl(&["report", "--batch", "staff", "--format", "json"]),
    ))
    .unwrap();
    assert_eq!(json["format"], 2, "{json}");
    let t = &json["totals"];
    assert_eq!(t["mailboxes"], 3, "{t}");
    assert_eq!(t["by_status"], serde_json::json!({ "Completed": 3 }), "{t}");
    assert_eq!(t["migrated"], total, "{t}");
    let n = |k: &str| t[k].as_u64().unwrap_or_else(|| panic!("{k} in {t}"));
    let secs = |k: &str| t[k].as_f64().unwrap_or_else(|| panic!("{k} in {t}"));
    let jobs = json["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3, "{json}");
    let sum = |k: &str| {
        jobs.iter()
            .map(|j| j["summary"][k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        [n("copied"), n("copied_bytes"), n("excluded"), n("failed")],
        [
            sum("items_done"),
            sum("bytes_done"),
            sum("excluded"),
            sum("failed")
        ],
        "{t}"
    );
    let durations: f64 = jobs
        .iter()
        .map(|j| j["duration_secs"].as_f64().unwrap())
        .sum();
    assert_eq!(secs("duration_secs"), durations, "{t}");
    assert_eq!(
        report.lines().take(3).collect::<Vec<_>>(),
        [
            "Totals: 3 mailboxes (3 Completed)".to_owned(),
            format!(
                "  messages migrated {}; copied by the last runs {} ({:.1} MB); excluded {}; refused {}",
                n("migrated"),
                n("copied"),
                n("copied_bytes") as f64 / 1e6,
                n("excluded"),
                n("failed")
            ),
            format!(
                "  duration {:.1} s, average {:.2} MB/s (the last runs)",
                secs("duration_secs"),
                secs("average_mb_per_sec")
            ),
        ],
        "the table's totals are the JSON's"
    );
    let csv_text = stdout(&d.ctl(&["report", "--events", u1, "--format", "csv"]));
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["job", "seq", "time", "level", "message"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
    assert!(
        rows.iter()
            .all(|r| &r[0] == u1 && r[2].starts_with("2024-01-0")),
        "{csv_text}"
    );
    assert!(
        rows.iter().any(|r| r[4].contains("Final delta requested")),
        "{csv_text}"
    );
    assert!(
        rows.iter()
            .any(|r| r[4].contains("credentials were cleared")),
        "{csv_text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_of_a_silent_server_names_host_port_and_seconds() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let state =
        std::env::temp_dir().join(format!("migrated-lifecycle-silent-{}", std::process::id()));
    let mut d = Daemon::in_dir(state);
    d.start().await;
    let dir = d.state.join("jobs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p"), "x").unwrap();
    let job = dir.join("silent.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"silent\"\n[source]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\nuser = \"a\"\npassword_file = \"p\"\ntimeout_secs = 2\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\nuser = \"a\"\npassword_file = \"p\"\ntimeout_secs = 2\n"
        ),
    )
    .unwrap();
    let out = d.ctl(&["test", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "The connection to the server 127.0.0.1 timed out: port {port}"
        )) && text.contains("within 2 seconds"),
        "{text}"
    );
    assert_eq!(stdout(&d.ctl(&["--json", "list"])), "[]");
    drop(silent);
}

/// Samples the batch's statuses until `done` holds for all three jobs; returns the most jobs
/// seen running at once.
async fn most_running_until(d: &Daemon, done: impl Fn(&serde_json::Value) -> bool) -> usize {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut most = 0;
    loop {
        let list = jobs(d);
        let running = list
            .iter()
            .filter(|j| {
                serde_json::from_value::<JobStatus>(j["status"].clone())
                    .is_ok_and(JobStatus::is_running)
            })
            .count();
        most = most.max(running);
        if list.len() == 3 && list.iter().all(&done) {
            return most;
        }
        assert!(
            Instant::now() < deadline,
            "the batch did not finish: {list:?}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A named endpoint's limits bound what runs on it, end to end: with `max_migrations = 1` the
/// three mailboxes of a batch copy one after the other; with `max_syncs = 1` their incremental
/// syncs do too; raised, the same syncs run side by side (so the sampling can see overlap).
/// Each copy is paced (`max_mbps`) so that runs would overlap if the limit let them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_migration_and_sync_limits_bound_the_jobs_running_on_it() {
    let (src, dst) = three_mailboxes().await;
    for i in 1..=3u64 {
        let spec = CorpusSpec {
            seed: 1700 + i,
            messages: 15,
            max_attachment: 0,
            size_factor: 1.0,
        };
        testbed::write_maildir(&src, &format!("u{i}"), &spec).unwrap();
    }
    let state =
        std::env::temp_dir().join(format!("migrated-endpoint-limits-{}", std::process::id()));
    let mut d = Daemon::in_dir(state);
    d.start().await;
    let dir = d.state.join("batch");
    std::fs::create_dir_all(&dir).unwrap();
    let endpoint = |migrations: u32, syncs: u32| {
        let f = dir.join(format!("old-{migrations}-{syncs}.toml"));
        std::fs::write(
            &f,
            format!(
                "host = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nmax_migrations = {migrations}\nmax_syncs = {syncs}\n",
                src.imap_port()
            ),
        )
        .unwrap();
        f
    };
    let set_endpoint = |migrations: u32, syncs: u32, replace: bool| {
        let f = endpoint(migrations, syncs);
        let mut args = vec!["endpoint", "create", "old", "--file", f.to_str().unwrap()];
        if replace {
            args.push("--replace");
        }
        let out = d.ctl(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    set_endpoint(1, 1, false);
    std::fs::write(dir.join("admin.pass"), "dest-secret").unwrap();
    let template = dir.join("template.toml");
    std::fs::write(
        &template,
        format!(
            "[source]\nendpoint = \"old\"\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\npassword_file = \"{}\"\n\
             [limits]\nmax_mbps = 0.2\n",
            dst.imap_port(),
            dir.join("admin.pass").display()
        ),
    )
    .unwrap();
    let csv = dir.join("staff.csv");
    std::fs::write(
        &csv,
        "EmailAddress,UserName,Password\nu1@example.org,u1,source-1\nu2@example.org,u2,source-2\nu3@example.org,u3,source-3\n",
    )
    .unwrap();
    d.create_batch("staff", &csv, &template);
    let completed = |j: &serde_json::Value| j["status"] == "Completed";
    let most = most_running_until(&d, completed).await;
    assert_eq!(most, 1, "max_migrations = 1: one mailbox at a time");

    // New mail on every source; the incremental syncs of the batch, one at a time.
    let mut seed = 9500;
    let mut new_mail = || {
        let src = &src;
        seed += 10;
        let first = seed;
        async move {
            for i in 1..=3 {
                let acct = src.account(&format!("u{i}")).unwrap();
                for n in 0..10 {
                    testbed::append_message(
                        &acct,
                        "INBOX",
                        &testbed::synthetic_message(first + n, 40_000),
                        &[],
                        1_600_000_000,
                    )
                    .await
                    .unwrap();
                }
            }
        }
    };
    let synced = |j: &serde_json::Value| j["status"] == "Completed" && j["items_done"] == 10;
    for (migrations, syncs, expected) in [(3, 1, "one"), (3, 3, "several")] {
        set_endpoint(migrations, syncs, true);
        new_mail().await;
        let out = d.ctl(&["batch", "delta", "staff"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let most = most_running_until(&d, synced).await;
        if expected == "one" {
            assert_eq!(most, 1, "max_syncs = 1: one sync at a time");
        } else {
            assert!(
                most >= 2,
                "max_syncs = 3: the syncs ran side by side ({most})"
            );
        }
    }
}
