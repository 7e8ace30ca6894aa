//! Issue 20: one batch run by three daemons on this machine as one migration, as the replicas
//! of a StatefulSet run it. Each daemon has its own state directory and its shard (given as
//! `--shard K/N`, as an Indexed Job's `JOB_COMPLETION_INDEX`, and as a StatefulSet pod's
//! hostname). The batch is planned first (`batch plan`: every row pre-scanned, split by bytes
//! into a plan with a `Shard` column), and the plan with its template then arrives in the one
//! drop-in directory all three watch (the ConfigMap). Against the same two Dovecots: every
//! mailbox is copied by exactly one daemon, the one the plan names; one daemon is SIGKILLed
//! mid-copy and, restarted, resumes its shard to an exact copy; the three JSON reports merged by
//! `report --merge` are their union, in every format. (Rows without a plan go by a hash of the
//! mailbox: `migrated_core::shard`'s unit tests.)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use migrated_core::JobStatus;
use testbed::{
    CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use, german_special_use,
};

use crate::common::beds::message_count;
use crate::common::daemon::{Daemon, stdout};

const USERS: usize = 9;
const SHARDS: usize = 3;

fn mailbox(i: usize) -> String {
    format!("u{i}@example.org")
}

/// The names of the batch's jobs in a daemon.
fn names(jobs: &[serde_json::Value]) -> BTreeSet<String> {
    jobs.iter()
        .map(|j| j["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_copy_each_mailbox_once_resume_after_a_sigkill_and_merge_one_report() {
    let src = Dovecot::start(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        users: (1..=USERS)
            .map(|i| (format!("u{i}"), format!("source-{i}")))
            .collect(),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: (1..=USERS)
            .map(|i| (mailbox(i), format!("dest-{i}")))
            .collect(),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let mut corpora = Vec::new();
    for i in 1..=USERS {
        // Sizes from small to large, so that the plan has something to balance.
        let spec = CorpusSpec {
            seed: 2000 + i as u64,
            messages: 20 * i,
            max_attachment: 0,
            size_factor: 0.5,
        };
        corpora.push(testbed::write_maildir(&src, &format!("u{i}"), &spec).unwrap());
    }

    // The batch and its template; small batches over two connections, so that APPENDs are in
    // flight when the kill lands.
    let base = std::env::temp_dir().join(format!("migrated-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let input = base.join("input");
    let jobs_d = base.join("jobs.d");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&jobs_d).unwrap();
    let mut csv = String::from("EmailAddress,UserName,Password,DestinationPassword\n");
    for i in 1..=USERS {
        csv.push_str(&format!("{},u{i},source-{i},dest-{i}\n", mailbox(i)));
    }
    std::fs::write(input.join("staff.csv"), csv).unwrap();
    let template = format!(
        "[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
         [limits]\nconnections = 2\nbatch_messages = 10\n",
        src.imap_port(),
        dst.imap_port()
    );
    std::fs::write(input.join("template.toml"), &template).unwrap();

    // Three daemons, each told its shard another way, watching one drop-in directory.
    let mut daemons: Vec<Daemon> = (0..SHARDS)
        .map(|k| {
            let mut d = Daemon::in_dir(base.join(format!("shard-{k}")));
            d.args = vec!["--jobs-dir".into(), jobs_d.display().to_string()];
            d.env_remove = vec!["JOB_COMPLETION_INDEX".into()];
            match k {
                0 => d.args.extend(["--shard".into(), format!("0/{SHARDS}")]),
                1 => {
                    d.env_remove.clear();
                    d.env.push(("MIGRATED_SHARDS".into(), SHARDS.to_string()));
                    d.env.push(("JOB_COMPLETION_INDEX".into(), "1".into()));
                }
                _ => {
                    d.env.push(("MIGRATED_SHARDS".into(), SHARDS.to_string()));
                    d.env.push(("HOSTNAME".into(), format!("migrated-{k}")));
                }
            }
            d
        })
        .collect();
    for d in &mut daemons {
        d.start().await;
    }

    // The plan: every row pre-scanned by a daemon, split by bytes.
    let plan_dir = base.join("plan");
    let out = daemons[0].ctl(&[
        "--json",
        "batch",
        "plan",
        "--csv",
        input.join("staff.csv").to_str().unwrap(),
        "--template",
        input.join("template.toml").to_str().unwrap(),
        "--shards",
        &SHARDS.to_string(),
        "--out",
        plan_dir.to_str().unwrap(),
    ]);
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let shard_bytes: Vec<u64> = plan["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(shard_bytes.len(), SHARDS, "{plan}");
    assert_eq!(plan["mailboxes"], USERS, "{plan}");
    assert_eq!(
        shard_bytes.iter().sum::<u64>(),
        plan["bytes"].as_u64().unwrap()
    );
    let largest = plan["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["largest_mailbox_bytes"].as_u64().unwrap())
        .max()
        .unwrap();
    // Largest first onto the least loaded: the fullest shard was the emptiest before its last
    // mailbox, so it exceeds the emptiest by at most one mailbox.
    let (max, min) = (
        *shard_bytes.iter().max().unwrap(),
        *shard_bytes.iter().min().unwrap(),
    );
    assert!(min > 0 && max - min <= largest, "{plan}");
    let messages: u64 = corpora.iter().map(|c| c.total_messages() as u64).sum();
    let planned_messages: u64 = plan["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(
        planned_messages, messages,
        "the pre-scan counted every message"
    );
    // The plan file: every row with its shard, private as it holds passwords; each shard's
    // file holds its rows.
    let plan_csv = plan_dir.join("staff.plan.csv");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&plan_csv).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let rows_of = |path: &std::path::Path| -> Vec<(String, String)> {
        csv::Reader::from_path(path)
            .unwrap()
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_owned(), r[4].to_owned())
            })
            .collect()
    };
    let planned = rows_of(&plan_csv);
    assert_eq!(planned.len(), USERS);
    let expected: Vec<BTreeSet<String>> = (0..SHARDS)
        .map(|k| {
            let mine: BTreeSet<String> = planned
                .iter()
                .filter(|(_, s)| *s == format!("{k}/{SHARDS}"))
                .map(|(m, _)| format!("staff/{m}"))
                .collect();
            let file: BTreeSet<String> = rows_of(&plan_dir.join(format!("staff.shard-{k}.csv")))
                .into_iter()
                .map(|(m, _)| format!("staff/{m}"))
                .collect();
            assert_eq!(file, mine, "staff.shard-{k}.csv holds shard {k}'s rows");
            mine
        })
        .collect();

    // The shard with the most mailboxes is killed mid-copy, then started again. Its copy is
    // paced so the kill lands mid-copy on any machine: each job's rate is set so that the
    // victim's largest mailbox takes about ten seconds.
    let victim = (0..SHARDS).max_by_key(|k| expected[*k].len()).unwrap();
    let victim_largest = plan["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shard"] == format!("{victim}/{SHARDS}"))
        .and_then(|s| s["largest_mailbox_bytes"].as_u64())
        .unwrap();
    let max_mbps = victim_largest as f64 / 1e6 / 10.0;

    // The ConfigMap arrives: the plan and its template in the drop-in directory of all three.
    std::fs::copy(&plan_csv, jobs_d.join("staff.csv")).unwrap();
    std::fs::write(
        jobs_d.join("staff.toml"),
        format!("batch = \"staff.csv\"\n{template}max_mbps = {max_mbps}\n"),
    )
    .unwrap();
    let victims: Vec<usize> = (1..=USERS)
        .filter(|i| expected[victim].contains(&format!("staff/{}", mailbox(*i))))
        .collect();
    let victim_total: u64 = victims
        .iter()
        .map(|i| corpora[i - 1].total_messages() as u64)
        .sum();
    let copied = || async {
        let mut n = 0;
        for i in &victims {
            n += message_count(&dst.account(&mailbox(*i)).unwrap()).await;
        }
        n
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while copied().await < victim_total / 5 {
        assert!(
            Instant::now() < deadline,
            "shard {victim} copied too little in 300 s\n{}",
            daemons[victim].log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemons[victim].kill();
    let at_kill = copied().await;
    eprintln!("shard {victim} killed with {at_kill} of {victim_total} messages copied");
    assert!(
        at_kill < victim_total,
        "the kill landed mid-copy: {at_kill} of {victim_total} messages were on the destination"
    );
    daemons[victim].start().await;

    let mut all = BTreeSet::new();
    for (k, d) in daemons.iter().enumerate() {
        let jobs = d
            .wait_batch("staff", expected[k].len(), |s| s == JobStatus::Completed)
            .await;
        let got = names(&jobs);
        assert_eq!(got, expected[k], "shard {k} took the rows its plan names");
        assert!(all.is_disjoint(&got), "shard {k} took another's mailbox");
        all.extend(got);
    }
    assert_eq!(all.len(), USERS, "every mailbox is in exactly one shard");
    assert!(
        daemons[victim]
            .log()
            .contains("Running one shard: its rows of every batch"),
        "{}",
        daemons[victim].log()
    );

    // Copied exactly once: nothing missing, nothing twice, on every mailbox.
    for (i, corpus) in corpora.iter().enumerate() {
        let report = testbed::verify(
            &src.account(&format!("u{}", i + 1)).unwrap(),
            &dst.account(&mailbox(i + 1)).unwrap(),
            &corpus.mapping_to(&dst),
        )
        .await
        .unwrap();
        assert!(report.is_exact(), "{}:\n{report}", mailbox(i + 1));
    }

    // One report of the three: the union of theirs. Shard 0's is written as the previous
    // release wrote it, the bare array of its jobs: it merges as well.
    let reports = base.join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    let mut union: Vec<serde_json::Value> = Vec::new();
    for (k, d) in daemons.iter().enumerate() {
        let text = stdout(&d.ctl(&["report", "--batch", "staff", "--format", "json"]));
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["format"], 2, "{text}");
        assert_eq!(report["totals"]["mailboxes"], expected[k].len(), "{text}");
        let part = report["jobs"].as_array().unwrap().clone();
        assert_eq!(part.len(), expected[k].len());
        let file = if k == 0 {
            serde_json::to_string_pretty(&part).unwrap()
        } else {
            text
        };
        std::fs::write(reports.join(format!("shard-{k}.json")), file).unwrap();
        union.extend(part);
    }
    union.sort_by(|a, b| {
        a["summary"]["name"]
            .as_str()
            .cmp(&b["summary"]["name"].as_str())
    });
    let merge = |args: &[&str]| {
        let mut full = vec!["report", "--merge"];
        full.extend_from_slice(args);
        daemons[0].ctl(&full)
    };
    let dir = reports.to_str().unwrap();
    let merged: serde_json::Value =
        serde_json::from_str(&stdout(&merge(&[dir, "--format", "json"]))).unwrap();
    assert_eq!(merged["format"], 2, "{merged}");
    assert_eq!(
        merged["jobs"].as_array().unwrap(),
        &union,
        "the merged report is the union of the shards'"
    );
    let totals = &merged["totals"];
    assert_eq!(totals["mailboxes"], USERS, "{totals}");
    assert_eq!(
        totals["by_status"],
        serde_json::json!({ "Completed": USERS })
    );
    assert_eq!(totals["migrated"], messages, "{totals}");
    let files: Vec<String> = (0..SHARDS)
        .map(|k| {
            reports
                .join(format!("shard-{k}.json"))
                .display()
                .to_string()
        })
        .collect();
    let listed: Vec<&str> = files.iter().map(String::as_str).collect();
    let mut args = listed.clone();
    args.extend(["--format", "json"]);
    let from_files: serde_json::Value = serde_json::from_str(&stdout(&merge(&args))).unwrap();
    assert_eq!(from_files, merged, "files given one by one merge the same");

    let table = stdout(&merge(&[dir]));
    assert!(
        table.starts_with(&format!("Totals: {USERS} mailboxes ({USERS} Completed)")),
        "{table}"
    );
    assert!(
        table.contains(&format!("messages migrated {messages};")),
        "{table}"
    );
    for name in &all {
        assert!(table.contains(name.as_str()), "{name} in {table}");
    }
    let csv = stdout(&merge(&[dir, "--format", "csv"]));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(&rows[0][0], "totals");
    assert_eq!(&rows[0][1], format!("{USERS} mailboxes"));
    assert_eq!(&rows[0][5], messages.to_string());
    let folder_rows: BTreeSet<String> = rows
        .iter()
        .filter(|r| &r[0] == "folder")
        .map(|r| r[1].to_owned())
        .collect();
    assert_eq!(
        folder_rows, all,
        "a folder row for every mailbox of every shard"
    );

    // A mailbox in two reports is refused, naming it and both files.
    std::fs::copy(&files[victim], reports.join("again.json")).unwrap();
    let out = merge(&[dir]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[victim]).unwrap()).unwrap();
    // The bare array (shard 0) or the report's jobs.
    let again = again.get("jobs").unwrap_or(&again);
    let twice = again[0]["summary"]["name"].as_str().unwrap();
    assert!(
        err.contains(twice)
            && err.contains("again.json")
            && err.contains("each mailbox belongs to one shard"),
        "{err}"
    );

    drop(daemons);
    let _ = std::fs::remove_dir_all(&base);
}
