//! Unit tests of [`super`].

use super::*;
use migrated_core::{FolderReport, JobStatus, Removal, RemovedRow};

/// A finished job: `copied` messages of `bytes` bytes copied by its last run of `secs`
/// seconds, `before` copied by earlier runs, `excluded` and `failed` left out.
fn finished(name: &str, status: JobStatus, n: [u64; 5], secs: f64) -> JobDetail {
    let [copied, before, bytes, excluded, failed] = n;
    JobDetail {
        summary: JobSummary {
            name: name.into(),
            status: Some(status),
            items_done: copied,
            bytes_done: bytes,
            excluded,
            failed,
            ..JobSummary::default()
        },
        folders: vec![FolderReport {
            source: "INBOX".into(),
            destination: "INBOX".into(),
            copied,
            already_copied: before,
            excluded,
            failed,
            ..FolderReport::default()
        }],
        duration_secs: secs,
        ..JobDetail::default()
    }
}

fn value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn the_json_report_is_its_format_the_totals_the_csv_leads_with_and_the_jobs() {
    let jobs = [
        finished(
            "bob",
            JobStatus::CompletedWithErrors,
            [7, 0, 2_000_000, 0, 2],
            4.0,
        ),
        finished("alice", JobStatus::Completed, [10, 5, 4_000_000, 1, 0], 2.0),
        finished("carol", JobStatus::Completed, [3, 1, 0, 0, 0], 0.0),
    ];
    let report = value(&json(&jobs).unwrap());
    assert_eq!(report["format"], 2, "{report}");
    assert_eq!(
        report["totals"],
        serde_json::json!({
            "mailboxes": 3,
            "by_status": { "Completed": 2, "Completed with errors": 1 },
            "migrated": 26,
            "copied": 20,
            "copied_bytes": 6_000_000,
            "excluded": 1,
            "failed": 2,
            "duration_secs": 6.0,
            "average_mb_per_sec": 1.0,
        })
    );
    assert_eq!(
        report["jobs"],
        serde_json::to_value(&jobs).unwrap(),
        "the jobs as they are"
    );
    // The statuses in the order first seen (bob's first), as the table's first line.
    let text = json(&jobs).unwrap();
    let at = |key: &str| text.find(&format!("\"{key}\": ")).unwrap();
    assert!(at("Completed with errors") < at("Completed"), "{text}");

    // The same numbers as the CSV's totals row and the table's first lines.
    let csv_text = csv(&jobs).unwrap();
    let mut r = ::csv::Reader::from_reader(csv_text.as_bytes());
    let head = r.headers().unwrap().clone();
    let totals = r.records().next().unwrap().unwrap();
    let cell = |n: &str| totals[head.iter().position(|h| h == n).unwrap()].to_owned();
    let t = &report["totals"];
    assert_eq!(cell("record"), "totals");
    assert_eq!(cell("job"), format!("{} mailboxes", t["mailboxes"]));
    assert_eq!(cell("status"), "1 Completed with errors, 2 Completed");
    assert_eq!(cell("messages"), t["migrated"].to_string());
    assert_eq!(cell("copied"), t["copied"].to_string());
    assert_eq!(cell("size"), t["copied_bytes"].to_string());
    assert_eq!(cell("excluded"), t["excluded"].to_string());
    assert_eq!(cell("failed"), t["failed"].to_string());
    assert_eq!(cell("reason"), "duration 6.0 s, average 1.00 MB/s");
    assert_eq!(
        Totals::of(&jobs).text(),
        "Totals: 3 mailboxes (1 Completed with errors, 2 Completed)\n  messages migrated 26; copied by the last runs 20 (6.0 MB); excluded 1; refused 2\n  duration 6.0 s, average 1.00 MB/s (the last runs)\n"
    );
}

#[test]
fn an_old_bare_array_and_a_new_report_merge_into_one_report_with_totals_over_both() {
    let old = vec![
        finished("dave", JobStatus::Completed, [4, 0, 1_000_000, 0, 0], 1.0),
        finished("bob", JobStatus::Failed, [1, 0, 500_000, 0, 3], 1.0),
    ];
    // As the previous release wrote it: the bare array.
    let old_text = serde_json::to_string_pretty(&old).unwrap();
    assert!(value(&old_text).is_array());
    let new = vec![finished(
        "alice",
        JobStatus::Completed,
        [10, 2, 2_500_000, 1, 0],
        3.0,
    )];
    let new_text = json(&new).unwrap();
    assert_eq!(read_json(&old_text).unwrap(), old);
    assert_eq!(read_json(&new_text).unwrap(), new);

    let merged = merge([
        ("shard-0.json".to_owned(), read_json(&old_text).unwrap()),
        ("shard-1.json".to_owned(), read_json(&new_text).unwrap()),
    ])
    .unwrap();
    let report = value(&json(&merged).unwrap());
    assert_eq!(report["format"], 2);
    let names: Vec<&str> = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["summary"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["alice", "bob", "dave"],
        "every mailbox once, by name"
    );
    assert_eq!(report["jobs"][0], serde_json::to_value(&new[0]).unwrap());
    assert_eq!(report["jobs"][1], serde_json::to_value(&old[1]).unwrap());
    assert_eq!(report["jobs"][2], serde_json::to_value(&old[0]).unwrap());
    assert_eq!(
        report["totals"],
        serde_json::json!({
            "mailboxes": 3,
            "by_status": { "Completed": 2, "Failed": 1 },
            "migrated": 17,
            "copied": 15,
            "copied_bytes": 4_000_000,
            "excluded": 1,
            "failed": 3,
            "duration_secs": 5.0,
            "average_mb_per_sec": 0.8,
        }),
        "recomputed over the merged set, not taken from the new file"
    );
    // A merged report reads back as its jobs.
    assert_eq!(read_json(&json(&merged).unwrap()).unwrap(), merged);
}

#[test]
fn a_mailbox_in_two_reports_is_refused_naming_it_and_both() {
    let one = || {
        vec![finished(
            "alice",
            JobStatus::Completed,
            [1, 0, 1, 0, 0],
            1.0,
        )]
    };
    let err = merge([("a.json".to_owned(), one()), ("b.json".to_owned(), one())])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "mailbox alice is in a.json and in b.json: each mailbox belongs to one shard"
        ),
        "{err}"
    );
}

#[test]
fn a_report_of_an_unknown_format_or_shape_is_refused_saying_why() {
    let later = read_json(r#"{"format": 3, "jobs": []}"#)
        .unwrap_err()
        .to_string();
    assert!(
        later.starts_with("format 3, which this migratectl does not read"),
        "{later}"
    );
    let other = read_json(r#"{"jobs": []}"#).unwrap_err().to_string();
    assert!(other.contains("without a `format` number"), "{other}");
    let broken = read_json(r#"{"format": 2, "jobs": [{"summary": 1}]}"#)
        .unwrap_err()
        .to_string();
    assert!(broken.contains("line 1 column"), "where: {broken}");
    let garbage = read_json("totals").unwrap_err().to_string();
    assert!(garbage.contains("at line 1 column"), "where: {garbage}");
}

#[test]
fn the_csv_report_has_a_row_per_removed_message_with_both_uids() {
    let detail = JobDetail {
        summary: JobSummary {
            name: "alice".into(),
            ..JobSummary::default()
        },
        folders: vec![FolderReport {
            source: "INBOX".into(),
            destination: "INBOX".into(),
            removed: 1,
            ..FolderReport::default()
        }],
        removed: vec![RemovedRow {
            folder: "INBOX".into(),
            destination: "INBOX".into(),
            uid: 4,
            dest_uid: 9,
            message_id: Some("<m4@x>".into()),
            size: 120,
            date: Some("01-Jun-2021 00:00:00 +0000".into()),
            removal: Removal::DestinationExpunged,
        }],
        ..JobDetail::default()
    };
    let text = csv(&[detail]).unwrap();
    let mut r = ::csv::Reader::from_reader(text.as_bytes());
    let head = r.headers().unwrap().clone();
    let col = |n: &str| head.iter().position(|h| h == n).unwrap();
    let rows: Vec<_> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(&rows[1][col("removed")], "1");
    let removed = &rows[2];
    assert_eq!(&removed[col("record")], "removed");
    assert_eq!(
        (&removed[col("uid")], &removed[col("dest_uid")]),
        ("4", "9")
    );
    assert_eq!(&removed[col("message_id")], "<m4@x>");
    assert_eq!(&removed[col("date")], "01-Jun-2021 00:00:00 +0000");
}
