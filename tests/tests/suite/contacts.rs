//! Contacts jobs in the daemon: the CardDAV source plugin, loaded from its `.so`, reading one
//! real Radicale server, and the daemon's CardDAV sink writing to another. Every address book
//! arrives with every contact (vCard 3 and 4, photos, groups, non-ASCII names), re-runs and
//! deltas copy only what changed, a SIGKILL mid-copy costs nothing and doubles nothing, and a
//! contact the destination refuses is reported with the server's reply.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::daemon::{Daemon, stdout};
use migrated_core::JobStatus;
use testbed::radicale::{Radicale, RadicaleOptions};
use testbed::vcard::{Contact, big_contact, contacts_corpus};

static DIRS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn daemon() -> Daemon {
    Daemon::in_dir(std::env::temp_dir().join(format!(
        "migrated-contacts-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )))
}

/// A contacts job file from `src` to `dst` (user alice on both), passwords in files beside it.
fn job_file(d: &Daemon, name: &str, src: &Radicale, dst: &Radicale) -> PathBuf {
    let dir = d.state.join("jobs");
    std::fs::create_dir_all(&dir).unwrap();
    let pass = |file: &str, r: &Radicale| {
        let f = dir.join(file);
        std::fs::write(&f, r.password("alice")).unwrap();
        f
    };
    let (s, t) = (pass("src.pass", src), pass("dst.pass", dst));
    let f = dir.join(format!("{name}.toml"));
    std::fs::write(
        &f,
        format!(
            "name = \"{name}\"\n[source]\nplugin = \"carddav\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword_file = \"{}\"\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword_file = \"{}\"\n",
            src.port(),
            s.display(),
            dst.port(),
            t.display()
        ),
    )
    .unwrap();
    f
}

async fn finished(d: &Daemon, id: &str) -> migrated_ipc::JobSummary {
    d.wait_until(id, "the job to finish", |s| {
        s.status.is_some_and(JobStatus::is_finished)
    })
    .await
}

fn delta(d: &Daemon, id: &str) {
    let dir = d.state.join("jobs");
    let out = d.ctl(&[
        "delta",
        id,
        "--source-password-file",
        dir.join("src.pass").to_str().unwrap(),
        "--destination-password-file",
        dir.join("dst.pass").to_str().unwrap(),
    ]);
    assert_eq!(stdout(&out), "Queued");
}

fn uids(r: &Radicale) -> Vec<String> {
    let mut all: Vec<String> = r
        .snapshot("alice")
        .into_values()
        .flat_map(|book| book.into_keys())
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_books_arrive_exactly_and_deltas_copy_only_what_changed() {
    let corpus = contacts_corpus(300, 7);
    let src = Radicale::start(RadicaleOptions::default()).unwrap();
    let dst = Radicale::start(RadicaleOptions::default()).unwrap();
    src.seed(
        "alice",
        &[
            ("family", "Familie Groß", &corpus[..100]),
            ("work", "Arbeit & Co", &corpus[100..250]),
            ("sports", "Sport", &corpus[250..]),
        ],
    );
    let mut d = daemon();
    d.start().await;
    let id = stdout(&d.ctl(&[
        "create",
        job_file(&d, "contacts", &src, &dst).to_str().unwrap(),
    ]));
    let done = finished(&d, &id).await;
    assert_eq!(
        done.status,
        Some(JobStatus::Completed),
        "{done:?}\n{}",
        d.log()
    );
    assert_eq!((done.items_total, done.items_done), (300, 300), "{done:?}");

    // Every book, every contact, byte for byte as the source server holds it.
    let before = src.snapshot("alice");
    assert_eq!(dst.snapshot("alice"), before);
    assert_eq!(before.values().map(|b| b.len()).sum::<usize>(), 300);
    assert!(before.contains_key("Familie Groß") && before.contains_key("Arbeit & Co"));
    let text: String = before
        .values()
        .flat_map(|b| b.values())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    for needle in [
        "山田太郎",
        "Łukasz Żółć",
        "PHOTO;ENCODING=B",
        "X-ADDRESSBOOKSERVER-KIND:group",
        "KIND:group",
        "VERSION:3.0",
        "VERSION:4.0",
    ] {
        assert!(
            text.to_lowercase().contains(&needle.to_lowercase()),
            "{needle} is in the corpus and arrived"
        );
    }

    // The report counts contacts per address book.
    let report: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["report", &id, "--format", "json"]))).unwrap();
    let text = report.to_string();
    assert!(
        text.contains("Arbeit & Co") && text.contains("Sport"),
        "{text}"
    );

    // A delta with nothing new copies nothing.
    delta(&d, &id);
    let again = finished(&d, &id).await;
    assert_eq!(again.status, Some(JobStatus::Completed));
    assert_eq!(again.items_done, 0, "{again:?}");

    // A new contact and a changed one: exactly those two travel.
    let mut changed = corpus[120].clone();
    let original = String::from_utf8(changed.vcard.clone()).unwrap();
    changed.vcard = original
        .replacen(
            "\r\nEND:VCARD",
            "\r\nTITLE:Chefin vom Dienst\r\nEND:VCARD",
            1,
        )
        .into_bytes();
    src.put_contact("alice", "work", &changed.href_name, &changed.vcard);
    let new = big_contact("urn:uuid:00000000-0000-4000-8000-00000000ab12", 3_000);
    src.put_contact("alice", "sports", &new.href_name, &new.vcard);
    delta(&d, &id);
    let third = finished(&d, &id).await;
    assert_eq!(third.status, Some(JobStatus::Completed), "{third:?}");
    assert_eq!(third.items_done, 2, "{third:?}");
    let after = src.snapshot("alice");
    assert_eq!(dst.snapshot("alice"), after);
    assert_eq!(dst.count("alice"), 301);
    assert!(
        String::from_utf8_lossy(&after["Arbeit & Co"][&changed.uid]).contains("Chefin vom Dienst")
    );
    let all = uids(&dst);
    let mut unique = all.clone();
    unique.dedup();
    assert_eq!(all, unique, "no contact twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_in_the_middle_costs_no_contact_and_doubles_none() {
    let corpus = contacts_corpus(900, 11);
    let src = Radicale::start(RadicaleOptions::default()).unwrap();
    let dst = Radicale::start(RadicaleOptions::default()).unwrap();
    src.seed(
        "alice",
        &[
            ("all", "Alle", &corpus[..600]),
            ("more", "Mehr", &corpus[600..]),
        ],
    );
    let mut d = daemon();
    d.start().await;
    let id = stdout(&d.ctl(&["create", job_file(&d, "kill", &src, &dst).to_str().unwrap()]));
    let s = d
        .wait_until(&id, "some contacts copied", |s| s.items_done >= 100)
        .await;
    d.kill();
    let at_kill = dst.count("alice");
    assert!(
        s.status == Some(JobStatus::Copying) && at_kill < 900,
        "killed in the middle: {s:?}, {at_kill} on the destination"
    );
    d.start().await;
    let done = finished(&d, &id).await;
    assert_eq!(
        done.status,
        Some(JobStatus::Completed),
        "{done:?}\n{}",
        d.log()
    );
    assert_eq!(dst.snapshot("alice"), src.snapshot("alice"));
    assert_eq!(uids(&dst).len(), 900, "each contact once");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_the_destination_refuses_is_reported_with_the_servers_reply() {
    let mut corpus: Vec<Contact> = contacts_corpus(20, 3)
        .into_iter()
        .filter(|c| !c.text().contains("PHOTO"))
        .collect();
    let big = big_contact("urn:uuid:00000000-0000-4000-8000-0000000b16b1", 30_000);
    corpus.push(big.clone());
    let src = Radicale::start(RadicaleOptions::default()).unwrap();
    let dst = Radicale::start(RadicaleOptions {
        max_content_length: Some(20_000),
        ..RadicaleOptions::default()
    })
    .unwrap();
    src.seed("alice", &[("book", "Buch", &corpus)]);
    let mut d = daemon();
    d.start().await;
    let id = stdout(&d.ctl(&[
        "create",
        job_file(&d, "refused", &src, &dst).to_str().unwrap(),
    ]));
    let done = finished(&d, &id).await;
    assert_eq!(
        done.status,
        Some(JobStatus::CompletedWithErrors),
        "{done:?}"
    );
    assert_eq!(done.failed, 1);
    assert_eq!(dst.count("alice"), corpus.len() - 1);
    let csv = stdout(&d.ctl(&["report", &id, "--format", "csv"]));
    let row = csv
        .lines()
        .find(|l| l.contains(&big.uid))
        .unwrap_or_else(|| panic!("the refused contact is in the report:\n{csv}"));
    assert!(row.contains("413"), "the server's status: {row}");
    let events = stdout(&d.ctl(&["events", &id]));
    assert!(events.contains("413"), "{events}");
}

/// `migratectl test` of a contacts job: the daemon logs in to both CardDAV servers as a run
/// would, counts the source's address books, contacts and their bytes, and creates nothing; a
/// refused destination password is said in the words Exchange administrators know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_preflight_counts_books_contacts_and_bytes_and_names_a_refused_login() {
    let corpus = contacts_corpus(150, 11);
    let src = Radicale::start(RadicaleOptions::default()).unwrap();
    let dst = Radicale::start(RadicaleOptions::default()).unwrap();
    src.seed(
        "alice",
        &[
            ("family", "Familie", &corpus[..100]),
            ("work", "Arbeit", &corpus[100..]),
        ],
    );
    let mut d = daemon();
    d.start().await;
    let job = job_file(&d, "contacts-check", &src, &dst);
    let out = d.ctl(&["--json", "test", job.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}\n{}", d.log());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (check, side) in v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["source", "destination"])
    {
        assert_eq!(check["side"], side, "{v}");
        assert_eq!(check["ok"], true, "{v}");
    }
    assert!(
        v["checks"][0]["message"]
            .as_str()
            .unwrap()
            .ends_with("2 address books"),
        "{v}"
    );
    let row = &v["preflight"]["rows"][0];
    assert_eq!(row["source_ok"], true, "{v}");
    assert_eq!(row["destination_ok"], true, "{v}");
    assert_eq!(row["folders"], 2, "two address books: {v}");
    assert_eq!(row["messages"], 150, "{v}");
    let sizes: Vec<u64> = src
        .snapshot("alice")
        .values()
        .flat_map(|b| b.values().map(|c| c.len() as u64))
        .collect();
    assert_eq!(row["bytes"], sizes.iter().sum::<u64>(), "the vCards' bytes");
    assert_eq!(row["largest"], *sizes.iter().max().unwrap());
    assert_eq!(row["problems"], serde_json::json!([]), "{v}");
    assert_eq!(v["preflight"]["totals"]["ready"], 1, "{v}");

    // The destination refuses the job's own password: a sign-in problem, exit code 1.
    std::fs::write(d.state.join("jobs/dst.pass"), "not-her-password").unwrap();
    let out = d.ctl(&["--json", "test", job.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["checks"][1]["ok"], false, "{v}");
    let row = &v["preflight"]["rows"][0];
    assert_eq!(
        (row["source_ok"].clone(), row["destination_ok"].clone()),
        (true.into(), false.into()),
        "{v}"
    );
    let problems = row["problems"].to_string();
    assert!(
        problems.contains("destination: We had trouble signing in to this account.")
            && problems.contains("HTTP 401"),
        "{problems}"
    );
    assert!(
        !problems.contains("not-her-password"),
        "no secret in the words"
    );
    assert_eq!(stdout(&d.ctl(&["--json", "list"])), "[]", "nothing created");
    assert_eq!(dst.count("alice"), 0, "nothing written on the destination");
}
