//! What a run carries over (issue 18), against two real Dovecots: the `[filter]` of a job
//! file (dates, sizes, flags), what a changed filter lets in at the next delta, what the
//! client sends for a delta (CHANGEDSINCE and QRESYNC with them, a plain listing without),
//! and source deletions mirrored with `sync_deletions` (and not without).

use std::collections::BTreeMap;

use testbed::{Account, Dovecot, DovecotOptions, FaultPlan, FaultProxy};

use crate::common::WITHOUT_CONDSTORE;
use crate::common::beds::{job_dir, migrate, write_job};
use crate::common::daemon::{Daemon, stdout};

/// 1 June 2019, 1 June 2021 and 1 January 2018 (UTC), as unix seconds.
const Y2019: i64 = 1_559_347_200;
const Y2021: i64 = 1_622_505_600;

/// A small message with a Message-ID `<id@carry.test>`, a `Date:` header and `pad` bytes of
/// body.
fn message(id: &str, date_header: &str, pad: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Alice <alice@carry.test>\r\nTo: Bob <bob@carry.test>\r\nSubject: {id}\r\n\
         Date: {date_header}\r\nMessage-ID: <{id}@carry.test>\r\n\r\n"
    )
    .into_bytes();
    for i in 0..pad {
        m.push(if i % 72 == 71 { b'\n' } else { b'x' });
    }
    m.extend_from_slice(b"\r\n");
    m
}

async fn two_dovecots() -> (Dovecot, Dovecot, Account, Account) {
    two_dovecots_with(None).await
}

/// As [`two_dovecots`], the source announcing `capability` after login when given.
async fn two_dovecots_with(capability: Option<&str>) -> (Dovecot, Dovecot, Account, Account) {
    let src = Dovecot::start(DovecotOptions {
        imap_capability: capability.map(str::to_owned),
        ..DovecotOptions::default()
    })
    .await
    .expect("source Dovecot starts");
    let dst = Dovecot::start(DovecotOptions::default())
        .await
        .expect("destination Dovecot starts");
    let (s, d) = (src.account("alice").unwrap(), dst.account("alice").unwrap());
    (src, dst, s, d)
}

/// Message-ID local parts in a folder, each with how many times it is there.
async fn ids_in(acct: &Account, folder: &str) -> BTreeMap<String, usize> {
    let mut s = testbed::login(acct).await.expect("login");
    let mut out = BTreeMap::new();
    for m in s.folder_messages(folder).await.expect("listing") {
        let id = m.message_id.unwrap_or_default();
        let id = id
            .trim_matches(['<', '>'])
            .trim_end_matches("@carry.test")
            .to_owned();
        *out.entry(id).or_insert(0) += 1;
    }
    s.logout().await.unwrap();
    out
}

fn once(ids: &[&str]) -> BTreeMap<String, usize> {
    ids.iter().map(|i| ((*i).to_owned(), 1)).collect()
}

/// The `excluded` lines of a run's summary, by Message-ID local part.
fn excluded_lines(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("excluded "))
        .map(|l| {
            let id = l
                .split("Message-ID <")
                .nth(1)
                .and_then(|r| r.split('@').next())
                .unwrap_or_default()
                .to_owned();
            let reason = l.split_once(">: ").map(|(_, r)| r).unwrap_or_default();
            (id, reason.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_by_date_size_and_flag_excludes_with_its_rule_and_a_changed_filter_copies_the_rest_once()
 {
    let (_src, _dst, s, d) = two_dovecots().await;
    let recent = "Tue, 1 Jun 2021 00:00:00 +0000";
    for (id, date_header, pad, flags, received) in [
        ("old", "Sat, 1 Jun 2019 00:00:00 +0000", 100, &[][..], Y2019),
        ("recent", recent, 100, &["\\Seen"][..], Y2021),
        ("large", recent, 60_000, &[][..], Y2021),
        ("deleted", recent, 100, &["\\Deleted"][..], Y2021),
        // Received in 2021, written (says its Date: header) in 2018.
        (
            "backdated",
            "Mon, 1 Jan 2018 00:00:00 +0000",
            100,
            &[][..],
            Y2021,
        ),
    ] {
        testbed::append_message(&s, "INBOX", &message(id, date_header, pad), flags, received)
            .await
            .expect("message appended");
    }
    let dir = job_dir("carry-filter");
    let store = dir.join("store");
    let filter =
        "\n[filter]\nsince = \"2020-01-01\"\nmax_size = 50000\nexclude_flags = [\"\\\\Deleted\"]\n";
    let job = write_job(&dir, &s, &d, filter);

    let first = migrate(&job, &store);
    assert!(first.success, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(
        ids_in(&d, "INBOX").await,
        once(&["backdated", "recent"]),
        "only what the filter lets in is copied"
    );
    let excluded = excluded_lines(&first.stdout);
    assert_eq!(
        excluded.keys().map(String::as_str).collect::<Vec<_>>(),
        ["deleted", "large", "old"],
        "{}",
        first.stdout
    );
    assert_eq!(
        excluded["old"],
        "filtered out by [filter] since = \"2020-01-01\" (received 2019-06-01 00:00 UTC)"
    );
    assert!(
        excluded["large"].starts_with("filtered out by [filter] max_size = 50000 ("),
        "{}",
        excluded["large"]
    );
    assert_eq!(
        excluded["deleted"],
        "filtered out by [filter] exclude_flags (\\Deleted is set)"
    );
    assert!(
        first.stdout.contains(" 2 messages copied (") && first.stdout.contains(" 3 excluded, "),
        "the summary counts the excluded:\n{}",
        first.stdout
    );
    let row = first
        .stdout
        .lines()
        .find(|l| l.starts_with("INBOX "))
        .expect("INBOX row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[2..6],
        ["5", "2", "0", "3"],
        "the folder's row: messages, copied, before, excluded: {row}"
    );

    // A wider filter, by the Date: header: "large" now passes, "backdated" would not but is
    // copied already and stays. The delta copies "large", once.
    let filter = "\n[filter]\nsince = \"2020-01-01\"\ndate_from = \"header\"\nexclude_flags = [\"\\\\Deleted\"]\n";
    let job = write_job(&dir, &s, &d, filter);
    let second = migrate(&job, &store);
    assert!(second.success, "{}\n{}", second.stdout, second.stderr);
    assert_eq!(second.counts(), (1, 2), "{}", second.stdout);
    assert_eq!(
        ids_in(&d, "INBOX").await,
        once(&["backdated", "large", "recent"])
    );
    let excluded = excluded_lines(&second.stdout);
    assert_eq!(
        excluded.keys().map(String::as_str).collect::<Vec<_>>(),
        ["deleted", "old"],
        "{}",
        second.stdout
    );
    assert_eq!(
        excluded["old"],
        "filtered out by [filter] since = \"2020-01-01\" (Date: header 2019-06-01 00:00 UTC)"
    );

    // The same filter again: nothing new.
    let third = migrate(&job, &store);
    assert!(third.success, "{}\n{}", third.stdout, third.stderr);
    assert_eq!(third.counts().0, 0, "{}", third.stdout);
    assert_eq!(
        ids_in(&d, "INBOX").await,
        once(&["backdated", "large", "recent"])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_is_refused_naming_the_file_and_field_and_nothing_is_copied() {
    let (_src, _dst, s, d) = two_dovecots().await;
    testbed::append_message(
        &s,
        "INBOX",
        &message("one", "Tue, 1 Jun 2021 00:00:00 +0000", 10),
        &[],
        Y2021,
    )
    .await
    .unwrap();
    let dir = job_dir("carry-bad-filter");
    let job = write_job(&dir, &s, &d, "\n[filter]\nsince = \"2024-02-30\"\n");
    let run = migrate(&job, &dir.join("store"));
    assert!(!run.success);
    assert!(
        run.stderr.contains(&format!(
            "job file {}: [filter] since: \"2024-02-30\" is not a date",
            job.display()
        )),
        "{}",
        run.stderr
    );
    let job = write_job(&dir, &s, &d, "\n[filter]\nmax_age = 30\n");
    let run = migrate(&job, &dir.join("store"));
    assert!(!run.success);
    assert!(
        run.stderr.contains("max_age") && run.stderr.contains("line "),
        "an unknown field is named with its line: {}",
        run.stderr
    );
    assert!(ids_in(&d, "INBOX").await.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Five messages `m1`..`m5` in the source's INBOX, received in 2021.
async fn five_messages(s: &Account) {
    for i in 1..=5 {
        let m = message(&format!("m{i}"), "Tue, 1 Jun 2021 00:00:00 +0000", 50 * i);
        testbed::append_message(s, "INBOX", &m, &[], Y2021)
            .await
            .expect("message appended");
    }
}

/// The source's account as seen through a recording proxy.
fn through(acct: &Account, proxy: &FaultProxy) -> Account {
    Account {
        port: proxy.port(),
        ..acct.clone()
    }
}

/// A first run, then on the source a new message and a flag change, then a delta: returns the
/// lines the client sent the source during the delta (through a recording proxy).
async fn delta_wire(capability: Option<&str>, name: &str) -> Vec<String> {
    let (src, _dst, s, d) = two_dovecots_with(capability).await;
    five_messages(&s).await;
    let proxy = FaultProxy::start("source", src.imap_port(), &FaultPlan::new(0))
        .await
        .unwrap();
    let dir = job_dir(name);
    let store = dir.join("store");
    let job = write_job(&dir, &through(&s, &proxy), &d, "");
    let first = migrate(&job, &store);
    assert!(first.success, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(first.counts(), (5, 0));

    let mut session = testbed::login(&s).await.unwrap();
    let uid = session.folder_messages("INBOX").await.unwrap()[0].uid;
    session
        .store_flags("INBOX", uid, &["\\Flagged"])
        .await
        .unwrap();
    session.logout().await.unwrap();
    testbed::append_message(
        &s,
        "INBOX",
        &message("m6", "Tue, 1 Jun 2021 00:00:00 +0000", 10),
        &[],
        Y2021,
    )
    .await
    .unwrap();

    let before = proxy.client_lines().len();
    let delta = migrate(&job, &store);
    assert!(delta.success, "{}\n{}", delta.stdout, delta.stderr);
    assert_eq!(delta.counts(), (1, 5), "{}", delta.stdout);
    assert!(
        delta.stdout.contains(" 1 flag changes,"),
        "the flag change is carried: {}",
        delta.stdout
    );
    let flagged = ids_flagged(&d).await;
    assert_eq!(flagged, ["m1"], "the flag arrived on the destination");
    let _ = std::fs::remove_dir_all(&dir);
    proxy.client_lines().split_off(before)
}

/// Message-ID local parts of the destination INBOX's `\Flagged` messages.
async fn ids_flagged(acct: &Account) -> Vec<String> {
    let mut s = testbed::login(acct).await.unwrap();
    let mut out: Vec<String> = s
        .folder_messages("INBOX")
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.flags.iter().any(|f| f == "\\Flagged"))
        .filter_map(|m| m.message_id)
        .map(|id| {
            id.trim_matches(['<', '>'])
                .trim_end_matches("@carry.test")
                .to_owned()
        })
        .collect();
    out.sort();
    s.logout().await.unwrap();
    out
}

/// The listing FETCHes of the planning pass: those before the verification, which opens each
/// folder again without QRESYNC parameters (`EXAMINE ... (CONDSTORE)`) and lists it whole.
fn listing_fetches(lines: &[String]) -> Vec<&String> {
    let verification = lines
        .iter()
        .position(|l| l.contains(" EXAMINE ") && l.ends_with(" (CONDSTORE)"))
        .unwrap_or(lines.len());
    lines[..verification]
        .iter()
        .filter(|l| l.contains(" UID FETCH ") && l.contains("RFC822.SIZE"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_against_condstore_and_qresync_sends_changedsince_and_qresync_parameters() {
    let lines = delta_wire(None, "carry-wire-qresync").await;
    let all = lines.join("\n");
    assert!(
        lines.iter().any(|l| l.ends_with(" ENABLE QRESYNC")),
        "QRESYNC is enabled:\n{all}"
    );
    let examine = lines
        .iter()
        .find(|l| l.contains(" EXAMINE \"INBOX\""))
        .unwrap_or_else(|| panic!("the delta opens INBOX:\n{all}"));
    let params = examine
        .split_once(" (QRESYNC (")
        .map(|(_, p)| p.trim_end_matches(')').split(' ').collect::<Vec<_>>())
        .unwrap_or_else(|| panic!("INBOX is opened with QRESYNC parameters: {examine}"));
    assert!(
        params.len() == 2 && params.iter().all(|p| p.parse::<u64>().is_ok_and(|n| n > 0)),
        "(UIDVALIDITY HIGHESTMODSEQ) of the last pass: {examine}"
    );
    let fetches = listing_fetches(&lines);
    assert!(!fetches.is_empty(), "a listing FETCH:\n{all}");
    for f in &fetches {
        let changed = f
            .split_once("(CHANGEDSINCE ")
            .and_then(|(_, m)| m.trim_end_matches(')').parse::<u64>().ok())
            .unwrap_or_else(|| panic!("the delta lists with CHANGEDSINCE: {f}"));
        assert_eq!(
            changed.to_string(),
            params[1],
            "CHANGEDSINCE is the HIGHESTMODSEQ of the last pass: {f} / {examine}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_against_a_source_without_condstore_compares_uids_in_a_plain_listing() {
    let lines = delta_wire(Some(WITHOUT_CONDSTORE), "carry-wire-plain").await;
    let all = lines.join("\n");
    assert!(
        !all.contains("QRESYNC") && !all.contains("CONDSTORE") && !all.contains("CHANGEDSINCE"),
        "nothing of CONDSTORE or QRESYNC is sent:\n{all}"
    );
    let fetches = listing_fetches(&lines);
    assert!(
        fetches.iter().any(|f| f.contains(" UID FETCH 1:")),
        "the whole folder is listed, from UID 1:\n{all}"
    );
}

/// A first run with `extra` in the job file, the destination holding a message of its own
/// (`native`, marked `\Deleted` by its user after the run); then `m2` and `m4` expunged on the
/// source and a delta. Returns the delta and the destination INBOX's messages by Message-ID.
/// What a delta through the daemon came to: the job's summary after it, and the messages its
/// report lists as removed, from `migratectl report --format json` and from `--format csv`.
struct Delta {
    summary: migrated_ipc::JobSummary,
    json: Vec<Removed>,
    csv: Vec<Removed>,
    /// The folder rows' `removed` and `source_removed` (JSON, then CSV).
    counts: [(u64, u64); 2],
}

/// A removed message as a report lists it: folder, source UID, destination folder and UID,
/// Message-ID, size, INTERNALDATE (unix seconds), and what was done (JSON's `removal`, or the
/// CSV's `reason`).
type Removed = (String, u32, String, u32, String, u64, i64, String);

/// The daemon's job `id`, run to its end: its summary.
async fn run_to_end(d: &Daemon, id: &str) -> migrated_ipc::JobSummary {
    d.wait_until(id, "the run to finish", |s| {
        s.status.is_some_and(migrated_core::JobStatus::is_finished)
    })
    .await
}

/// A delta of the daemon's job `id`, its credentials given again from the job's files.
async fn daemon_delta(d: &Daemon, id: &str, dir: &std::path::Path) -> migrated_ipc::JobSummary {
    let out = d.ctl(&[
        "delta",
        id,
        "--source-password-file",
        dir.join("source.pass").to_str().unwrap(),
        "--destination-password-file",
        dir.join("destination.pass").to_str().unwrap(),
    ]);
    // Queued when the reply comes: finished again means the delta ran.
    assert_eq!(stdout(&out), "Queued");
    run_to_end(d, id).await
}

/// `DD-Mon-YYYY HH:MM:SS +ZZZZ` (an IMAP INTERNALDATE) as unix seconds.
fn internal_date(text: &str) -> i64 {
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let bad = || panic!("not an INTERNALDATE: {text:?}");
    let parts: Vec<&str> = text.trim().split([' ', '-', ':']).collect();
    let [day, mon, year, h, m, sec, zone] = parts[..] else {
        bad()
    };
    let n = |v: &str| v.parse::<i64>().unwrap_or_else(|_| bad());
    let month = months
        .iter()
        .position(|x| *x == mon)
        .unwrap_or_else(|| bad()) as i64
        + 1;
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (n(year) - 1, month + 9)
    } else {
        (n(year), month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + n(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let z = n(&zone[1..]);
    let offset = (z / 100 * 3600 + z % 100 * 60) * if zone.starts_with('-') { -1 } else { 1 };
    days * 86_400 + n(h) * 3600 + n(m) * 60 + n(sec) - offset
}

/// The removed messages job `id`'s report lists, in JSON and in CSV, and its folder counts.
fn removed_in_report(d: &Daemon, id: &str) -> ([Vec<Removed>; 2], [(u64, u64); 2]) {
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["report", id, "--format", "json"]))).unwrap();
    let job = &json["jobs"][0];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut from_json: Vec<Removed> = job["removed"]
        .as_array()
        .expect("a removed list")
        .iter()
        .map(|r| {
            (
                text(&r["folder"]),
                r["uid"].as_u64().unwrap() as u32,
                text(&r["destination"]),
                r["dest_uid"].as_u64().unwrap() as u32,
                text(&r["message_id"]),
                r["size"].as_u64().unwrap(),
                internal_date(r["date"].as_str().expect("a date")),
                text(&r["removal"]),
            )
        })
        .collect();
    let sum = |key: &str| {
        job["folders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f[key].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let json_counts = (sum("removed"), sum("source_removed"));
    let csv_text = stdout(&d.ctl(&["report", id, "--format", "csv"]));
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let head = reader.headers().unwrap().clone();
    let col = |n: &str| {
        head.iter()
            .position(|h| h == n)
            .unwrap_or_else(|| panic!("column {n}"))
    };
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let mut from_csv: Vec<Removed> = rows
        .iter()
        .filter(|r| &r[col("record")] == "removed")
        .map(|r| {
            (
                r[col("folder")].to_owned(),
                r[col("uid")].parse().unwrap(),
                r[col("destination")].to_owned(),
                r[col("dest_uid")].parse().unwrap(),
                r[col("message_id")].to_owned(),
                r[col("size")].parse().unwrap(),
                internal_date(&r[col("date")]),
                r[col("reason")].to_owned(),
            )
        })
        .collect();
    let csv_sum = |key: &str| {
        rows.iter()
            .filter(|r| &r[col("record")] == "folder")
            .map(|r| r[col(key)].parse::<u64>().unwrap_or(0))
            .sum::<u64>()
    };
    let csv_counts = (csv_sum("removed"), csv_sum("source_removed"));
    from_json.sort();
    from_csv.sort();
    ([from_json, from_csv], [json_counts, csv_counts])
}

/// Source messages `ids` of INBOX as a report lists them once removed: folder, source UID,
/// destination folder and UID (their copies, by Message-ID), Message-ID, size, INTERNALDATE,
/// and `how` (JSON, CSV).
async fn expected_removed(
    s: &Account,
    d: &Account,
    ids: &[&str],
    how: [&str; 2],
) -> [Vec<Removed>; 2] {
    let listing = |acct: Account| async move {
        let mut session = testbed::login(&acct).await.unwrap();
        let l = session.folder_messages("INBOX").await.unwrap();
        session.logout().await.unwrap();
        l
    };
    let (source, dest) = (listing(s.clone()).await, listing(d.clone()).await);
    let mut out = [Vec::new(), Vec::new()];
    for (k, kind) in how.iter().enumerate() {
        for id in ids {
            let mid = format!("<{id}@carry.test>");
            let m = source
                .iter()
                .find(|m| m.message_id.as_deref() == Some(&mid))
                .unwrap_or_else(|| panic!("{id} on the source"));
            let copy = dest
                .iter()
                .find(|c| c.message_id.as_deref() == Some(&mid))
                .unwrap_or_else(|| panic!("{id}'s copy on the destination"));
            out[k].push((
                "INBOX".to_owned(),
                m.uid,
                "INBOX".to_owned(),
                copy.uid,
                mid,
                m.size,
                m.internaldate,
                (*kind).to_owned(),
            ));
        }
        out[k].sort();
    }
    out
}

const MIRRORED: [&str; 2] = [
    "destination-expunged",
    "expunged on the source: its copy was removed from the destination (sync_deletions)",
];

/// A first run through the daemon, then on the source m2 and m4 expunged and on the
/// destination its own message marked \Deleted, then a delta: what it came to, the
/// destination INBOX by Message-ID, the lines the client sent the source during the delta,
/// and the report rows m2 and m4 would have as removed messages.
async fn deletion_delta(
    capability: Option<&str>,
    name: &str,
    extra: &str,
) -> (
    Delta,
    BTreeMap<String, usize>,
    Vec<String>,
    [Vec<Removed>; 2],
) {
    let (src, _dst, s, d) = two_dovecots_with(capability).await;
    five_messages(&s).await;
    testbed::append_message(
        &d,
        "INBOX",
        &message("native", "Tue, 1 Jun 2021 00:00:00 +0000", 10),
        &[],
        Y2021,
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start("source", src.imap_port(), &FaultPlan::new(0))
        .await
        .unwrap();
    let dir = job_dir(name);
    let job = write_job(&dir, &through(&s, &proxy), &d, "");
    top_level(&job, extra);
    let mut daemon = Daemon::in_dir(dir.join("daemon"));
    daemon.start().await;
    let id = stdout(&daemon.ctl(&["create", job.to_str().unwrap()]));
    let first = run_to_end(&daemon, &id).await;
    assert_eq!(
        first.status,
        Some(migrated_core::JobStatus::Completed),
        "{first:?}\n{}",
        daemon.log()
    );
    assert_eq!(first.items_done, 5, "{first:?}");

    let mut ds = testbed::login(&d).await.unwrap();
    let native = ds
        .folder_messages("INBOX")
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some("<native@carry.test>"))
        .unwrap()
        .uid;
    ds.store_flags("INBOX", native, &["\\Deleted"])
        .await
        .unwrap();
    ds.logout().await.unwrap();
    let expected = expected_removed(&s, &d, &["m2", "m4"], MIRRORED).await;
    let mut ss = testbed::login(&s).await.unwrap();
    for m in ss.folder_messages("INBOX").await.unwrap() {
        let id = m.message_id.unwrap_or_default();
        if id == "<m2@carry.test>" || id == "<m4@carry.test>" {
            ss.expunge_uid("INBOX", m.uid).await.unwrap();
        }
    }
    ss.logout().await.unwrap();

    let before = proxy.client_lines().len();
    let summary = daemon_delta(&daemon, &id, &dir).await;
    assert_eq!(
        summary.status,
        Some(migrated_core::JobStatus::Completed),
        "{summary:?}\n{}",
        daemon.log()
    );
    let ([json, csv], counts) = removed_in_report(&daemon, &id);
    let ids = ids_in(&d, "INBOX").await;
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    (
        Delta {
            summary,
            json,
            csv,
            counts,
        },
        ids,
        proxy.client_lines().split_off(before),
        expected,
    )
}

/// Puts `lines` at the top of a job file, before its first section.
fn top_level(job: &std::path::Path, lines: &str) {
    let text = std::fs::read_to_string(job).unwrap();
    let (head, rest) = text.split_once('\n').unwrap();
    std::fs::write(job, format!("{head}\n{lines}{rest}")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_deletions_are_mirrored_with_sync_deletions_through_qresync_and_the_destinations_own_mail_stays()
 {
    let (delta, ids, lines, expected) =
        deletion_delta(None, "carry-deletions-qresync", "sync_deletions = true\n").await;
    assert_eq!(
        ids,
        once(&["m1", "m3", "m5", "native"]),
        "the copies of m2 and m4 are gone, the destination's own message (even marked \\Deleted) stays"
    );
    assert_eq!(
        delta.json, expected[0],
        "the JSON report lists exactly m2 and m4 as removed"
    );
    assert_eq!(
        delta.csv, expected[1],
        "the CSV report lists exactly m2 and m4 as removed"
    );
    assert_eq!(delta.counts, [(2, 0), (2, 0)], "the folder rows count them");
    assert!(
        lines.iter().any(|l| l.contains(" (QRESYNC (")),
        "the source's VANISHED told: {lines:?}"
    );
    assert!(
        !listing_fetches(&lines)
            .iter()
            .any(|f| !f.contains("CHANGEDSINCE")),
        "no whole listing was needed: {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_deletions_are_mirrored_by_uid_comparison_without_qresync() {
    let (delta, ids, lines, expected) = deletion_delta(
        Some(WITHOUT_CONDSTORE),
        "carry-deletions-plain",
        "sync_deletions = true\n",
    )
    .await;
    assert_eq!(ids, once(&["m1", "m3", "m5", "native"]));
    assert_eq!(delta.json, expected[0], "the JSON report lists m2 and m4");
    assert_eq!(delta.csv, expected[1], "the CSV report lists m2 and m4");
    assert_eq!(delta.counts, [(2, 0), (2, 0)]);
    assert!(!lines.join("\n").contains("QRESYNC"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_deletions_are_not_mirrored_by_default() {
    let (delta, ids, _, _) = deletion_delta(None, "carry-deletions-default", "").await;
    assert_eq!(ids, once(&["m1", "m2", "m3", "m4", "m5", "native"]));
    assert!(delta.json.is_empty(), "{:?}", delta.json);
    assert!(delta.csv.is_empty(), "{:?}", delta.csv);
    assert_eq!(delta.counts, [(0, 0), (0, 0)]);
    assert_eq!(delta.summary.items_done, 0, "{:?}", delta.summary);
}

/// Flags of the destination INBOX's messages by Message-ID local part.
async fn flags_by_id(acct: &Account) -> BTreeMap<String, Vec<String>> {
    let mut s = testbed::login(acct).await.unwrap();
    let out = s
        .folder_messages("INBOX")
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            let id = m.message_id.unwrap_or_default();
            let id = id.trim_matches(['<', '>']).trim_end_matches("@carry.test");
            (id.to_owned(), m.flags)
        })
        .collect();
    s.logout().await.unwrap();
    out
}

/// Sets the flags of the INBOX message `<id@carry.test>`.
async fn set_flags(acct: &Account, id: &str, flags: &[&str]) {
    let mut s = testbed::login(acct).await.unwrap();
    let uid = s
        .folder_messages("INBOX")
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.message_id.as_deref() == Some(&format!("<{id}@carry.test>")))
        .unwrap()
        .uid;
    s.store_flags("INBOX", uid, flags).await.unwrap();
    s.logout().await.unwrap();
}

/// After a first run: `m1` gets `\Answered` on the source only, `m2` `\Flagged` on the
/// destination only, `m3` `\Answered` on the source and `\Flagged` on the destination; then a
/// delta under `flag_conflicts = policy` (none: the default). Returns the destination's flags
/// of m1, m2 and m3 after it, and checks that another delta changes nothing.
async fn flags_on_both_sides(policy: Option<&str>, name: &str) -> [Vec<String>; 3] {
    let (_src, _dst, s, d) = two_dovecots().await;
    five_messages(&s).await;
    let dir = job_dir(name);
    let store = dir.join("store");
    let job = write_job(&dir, &s, &d, "");
    if let Some(p) = policy {
        top_level(&job, &format!("flag_conflicts = \"{p}\"\n"));
    }
    let first = migrate(&job, &store);
    assert!(first.success, "{}\n{}", first.stdout, first.stderr);
    set_flags(&s, "m1", &["\\Answered"]).await;
    set_flags(&d, "m2", &["\\Flagged"]).await;
    set_flags(&s, "m3", &["\\Answered"]).await;
    set_flags(&d, "m3", &["\\Flagged"]).await;
    let delta = migrate(&job, &store);
    assert!(delta.success, "{}\n{}", delta.stdout, delta.stderr);
    let flags = flags_by_id(&d).await;
    let again = migrate(&job, &store);
    assert!(again.success, "{}\n{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains(" 0 flag changes,"),
        "a second delta changes nothing: {}",
        again.stdout
    );
    assert_eq!(flags_by_id(&d).await, flags, "and the flags stay");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(flags["m4"], Vec::<String>::new());
    ["m1", "m2", "m3"].map(|id| flags[id].clone())
}

fn list(flags: &[&str]) -> Vec<String> {
    flags.iter().map(|f| (*f).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_changed_on_both_sides_keep_every_flag_under_the_default_union() {
    let [m1, m2, m3] = flags_on_both_sides(None, "carry-flags-union").await;
    assert_eq!(m1, list(&["\\Answered"]), "the source's change is carried");
    assert_eq!(m2, list(&["\\Flagged"]), "the destination's change is kept");
    assert_eq!(m3, list(&["\\Answered", "\\Flagged"]), "a conflict: both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_changed_on_both_sides_follow_the_source_under_flag_conflicts_source() {
    let [m1, m2, m3] = flags_on_both_sides(Some("source"), "carry-flags-source").await;
    assert_eq!(m1, list(&["\\Answered"]));
    assert_eq!(
        m2,
        list(&["\\Flagged"]),
        "a change on the destination only stays"
    );
    assert_eq!(m3, list(&["\\Answered"]), "a conflict: the source's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_changed_on_both_sides_follow_the_destination_under_flag_conflicts_destination() {
    let [m1, m2, m3] = flags_on_both_sides(Some("destination"), "carry-flags-destination").await;
    assert_eq!(
        m1,
        list(&["\\Answered"]),
        "a change on the source only is carried"
    );
    assert_eq!(m2, list(&["\\Flagged"]));
    assert_eq!(m3, list(&["\\Flagged"]), "a conflict: the destination's");
}

/// `n` messages `k1`..`kn` in the source's INBOX, over one session.
async fn many_messages(s: &Account, n: usize) -> Vec<String> {
    let mut session = testbed::login(s).await.unwrap();
    let mut ids = Vec::new();
    for i in 1..=n {
        let id = format!("k{i}");
        let m = message(&id, "Tue, 1 Jun 2021 00:00:00 +0000", 200 + 37 * i);
        session
            .append("INBOX", &m, &[], Some(Y2021))
            .await
            .expect("message appended");
        ids.push(id);
    }
    session.logout().await.unwrap();
    ids
}

/// The INBOX counts of both sides once the destination's count holds still (an APPEND the
/// killed process had sent may still be landing).
async fn settled(s: &Account, d: &Account) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut last = ids_in(d, "INBOX").await;
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let now = ids_in(d, "INBOX").await;
        if now == last {
            break;
        }
        last = now;
    }
    (ids_in(s, "INBOX").await, last)
}

/// No message on neither side, none twice on the destination, none gone from the source
/// without its copy.
fn assert_nothing_lost(
    ids: &[String],
    src: &BTreeMap<String, usize>,
    dst: &BTreeMap<String, usize>,
    when: &str,
) {
    for id in ids {
        let (on_src, on_dst) = (
            src.get(id).copied().unwrap_or(0),
            dst.get(id).copied().unwrap_or(0),
        );
        assert!(
            on_dst <= 1,
            "{when}: {id} is {on_dst} times on the destination"
        );
        assert!(on_src <= 1, "{when}: {id} is {on_src} times on the source");
        assert!(
            on_src + on_dst >= 1,
            "{when}: {id} is on neither side (source {src:?}, destination {dst:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_run_killed_at_random_moments_loses_nothing_and_removes_only_what_was_copied() {
    let (_src, _dst, s, d) = two_dovecots().await;
    let ids = many_messages(&s, 60).await;
    let dir = job_dir("carry-move");
    let store = dir.join("store");
    let job = write_job(
        &dir,
        &s,
        &d,
        "\n[limits]\nconnections = 1\nbatch_messages = 5\n",
    );
    top_level(&job, "source_after_copy = \"expunge\"\n");
    let seed = testbed::fault_seed(
        "carry-move",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let mut rng = testbed::SplitMix64::new(seed);
    for kill in 1..=5 {
        let delay = std::time::Duration::from_millis(100 + rng.below(2400));
        let mut child = std::process::Command::new(crate::common::daemon::binary("migrated"))
            .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
            .args(["migrate", "--quiet", "--job"])
            .arg(&job)
            .arg("--store")
            .arg(&store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("migrated starts");
        tokio::time::sleep(delay).await;
        let ended = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        child.wait().unwrap();
        let (on_src, on_dst) = settled(&s, &d).await;
        eprintln!(
            "kill {kill} after {delay:?}{}: {} on the source, {} on the destination",
            if ended { " (the run had ended)" } else { "" },
            on_src.len(),
            on_dst.len()
        );
        assert_nothing_lost(
            &ids,
            &on_src,
            &on_dst,
            &format!("after kill {kill} (seed {seed:#x})"),
        );
    }
    let last = migrate(&job, &store);
    assert!(last.success, "{}\n{}", last.stdout, last.stderr);
    let (on_src, on_dst) = settled(&s, &d).await;
    assert_nothing_lost(&ids, &on_src, &on_dst, "at the end");
    assert_eq!(
        on_dst,
        once(&ids.iter().map(String::as_str).collect::<Vec<_>>()),
        "every message on the destination exactly once (seed {seed:#x})"
    );
    assert!(
        on_src.is_empty(),
        "the source is empty once everything was copied: {on_src:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_deleted_marks_the_source_after_the_copy_and_the_mark_is_not_carried() {
    let (_src, _dst, s, d) = two_dovecots().await;
    five_messages(&s).await;
    let dir = job_dir("carry-flag-deleted");
    let job = write_job(&dir, &s, &d, "");
    top_level(&job, "source_after_copy = \"flag-deleted\"\n");
    let mut daemon = Daemon::in_dir(dir.join("daemon"));
    daemon.start().await;
    let id = stdout(&daemon.ctl(&["create", job.to_str().unwrap()]));
    let first = run_to_end(&daemon, &id).await;
    assert_eq!(
        first.status,
        Some(migrated_core::JobStatus::Completed),
        "{first:?}\n{}",
        daemon.log()
    );
    let mut ss = testbed::login(&s).await.unwrap();
    let source = ss.folder_messages("INBOX").await.unwrap();
    ss.logout().await.unwrap();
    assert_eq!(
        source.len(),
        5,
        "flag-deleted leaves the messages on the source"
    );
    assert!(
        source
            .iter()
            .all(|m| m.flags.iter().any(|f| f == "\\Deleted"))
    );
    let expected = expected_removed(
        &s,
        &d,
        &["m1", "m2", "m3", "m4", "m5"],
        [
            "source-flagged-deleted",
            "marked \\Deleted on the source after its copy was verified (source_after_copy = flag-deleted)",
        ],
    )
    .await;
    let ([json, csv], counts) = removed_in_report(&daemon, &id);
    assert_eq!(json, expected[0], "the JSON report lists the five marked");
    assert_eq!(csv, expected[1], "the CSV report lists the five marked");
    assert_eq!(counts, [(0, 5), (0, 5)], "the folder rows count them");

    let again = daemon_delta(&daemon, &id, &dir).await;
    assert_eq!(again.status, Some(migrated_core::JobStatus::Completed));
    let report: serde_json::Value =
        serde_json::from_str(&stdout(&daemon.ctl(&["report", &id, "--format", "json"]))).unwrap();
    let flag_changes: u64 = report["jobs"][0]["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flags_updated"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(flag_changes, 0, "{report}");
    let ([json, csv], counts) = removed_in_report(&daemon, &id);
    assert!(
        json.is_empty() && csv.is_empty(),
        "the delta marked nothing again: {json:?} {csv:?}"
    );
    assert_eq!(counts, [(0, 0), (0, 0)]);
    let flags = flags_by_id(&d).await;
    assert_eq!(flags.len(), 5);
    assert!(
        flags.values().all(|f| !f.iter().any(|x| x == "\\Deleted")),
        "the copies are not marked deleted: {flags:?}"
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_mode_is_refused_for_gmail_sources_and_with_sync_deletions() {
    let (_src, _dst, s, d) = two_dovecots().await;
    let dir = job_dir("carry-move-refused");
    let job = write_job(&dir, &s, &d, "");
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replacen("[source]\n", "[source]\nplugin = \"gmail\"\n", 1),
    )
    .unwrap();
    top_level(&job, "source_after_copy = \"expunge\"\n");
    let run = migrate(&job, &dir.join("store"));
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("source_after_copy: refused for a Gmail source"),
        "{}",
        run.stderr
    );
    let job = write_job(&dir, &s, &d, "");
    top_level(
        &job,
        "source_after_copy = \"expunge\"\nsync_deletions = true\n",
    );
    let run = migrate(&job, &dir.join("store"));
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("source_after_copy: cannot be used with sync_deletions"),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}
