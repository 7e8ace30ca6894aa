//! Courier-IMAP 5 (Debian 12's, unpacked: see `testbed::courier`): the test bed itself, and
//! migrations from it to Dovecot (exact, killed with SIGKILL and resumed, a delta that copies
//! nothing).
//!
//! What Courier imposes, named by the tests: a folder name with a character outside the Basic
//! Multilingual Plane cannot be created (the corpus's `Post 📬 日本`), so a Courier source never
//! holds one; there is no SPECIAL-USE, so `Sent`, `Trash`... are folders by name only.

use std::time::Instant;

use testbed::{
    CorpusSpec, Courier, CourierOptions, Dovecot, DovecotOptions, Layout, english_special_use,
    login, write_imap,
};

use crate::common::beds::{assert_containers, endpoint_of, killed_and_resumed, migrate, write_job};
use crate::dovecot_testbed::assert_reads_back;

const EMOJI_FOLDER: &str = "INBOX.Post 📬 日本";

fn spec(seed: u64, messages: usize) -> CorpusSpec {
    CorpusSpec {
        seed,
        messages,
        max_attachment: 300_000,
        size_factor: 0.5,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testbed_courier_holds_the_corpus_and_shows_courier_s_names_and_limits() {
    let t = Instant::now();
    let courier = Courier::start(CourierOptions::default())
        .await
        .expect("Courier starts");
    eprintln!("Courier started in {:?}", t.elapsed());
    let acct = courier.account("alice").unwrap();

    let t = Instant::now();
    let written = write_imap(&courier, &acct, &spec(61, 80))
        .await
        .expect("corpus appended");
    eprintln!(
        "{} messages appended in {:?}",
        written.corpus.total_messages(),
        t.elapsed()
    );
    // The emoji folder is refused, in Courier's words; nothing else is.
    assert_eq!(
        written
            .refused_folders
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>(),
        [EMOJI_FOLDER],
        "{:?}",
        written.refused_folders
    );
    assert!(
        written.refused_folders[0]
            .1
            .contains("Error in IMAP command"),
        "{:?}",
        written.refused_folders
    );
    assert!(
        written.refused_messages.is_empty(),
        "{:?}",
        written.refused_messages
    );
    let corpus = &written.corpus;
    assert!(corpus.folders.contains_key("INBOX.Projekte.Übersicht.2019"));
    assert!(corpus.folders.contains_key("INBOX.Zürich & Genève"));
    // Parents created for a child are \Noselect containers on Courier.
    assert_eq!(
        corpus.containers,
        ["INBOX.Kunden", "INBOX.Projekte.Übersicht"]
    );
    assert!(corpus.folders.values().all(|f| f.special_use.is_none()));

    let mut s = login(&acct).await.expect("login");
    assert_reads_back(&mut s, corpus).await.unwrap();
    let caps = s.raw().capabilities().await.expect("CAPABILITY");
    for missing in [
        "LITERAL+",
        "MULTIAPPEND",
        "SPECIAL-USE",
        "CONDSTORE",
        "MOVE",
    ] {
        assert!(!caps.has_str(missing), "Courier announces {missing}");
    }
    assert!(caps.has_str("UIDPLUS") && caps.has_str("IMAP4rev1"));
    s.logout().await.unwrap();

    let report = testbed::verify(&acct, &acct, &corpus.identity_mapping())
        .await
        .unwrap();
    assert!(report.is_exact(), "{report}");

    let mut wrong = acct.clone();
    wrong.password = "wrong".to_owned();
    assert!(login(&wrong).await.is_err(), "a wrong password is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn courier_to_dovecot_is_exact_resumes_after_sigkill_and_a_delta_copies_nothing() {
    let started = Instant::now();
    let (courier, dovecot) = tokio::join!(
        Courier::start(CourierOptions::default()),
        Dovecot::start(DovecotOptions {
            layout: Layout::Fs,
            special_use: english_special_use(),
            ..DovecotOptions::default()
        })
    );
    let (courier, dovecot) = (
        courier.expect("Courier starts"),
        dovecot.expect("Dovecot starts"),
    );
    let src = courier.account("alice").unwrap();
    let dst = dovecot.account("alice").unwrap();
    let written = write_imap(&courier, &src, &spec(62, 300))
        .await
        .expect("corpus appended");
    let corpus = &written.corpus;
    let total = corpus.total_messages() as u64;

    let t = Instant::now();
    let (dir, job, store, at_kill, resumed) =
        killed_and_resumed("courier-to-dovecot", &src, &dst, corpus).await;
    assert!(resumed.success, "{}\n{}", resumed.stdout, resumed.stderr);
    let (copied, already) = resumed.counts();
    eprintln!(
        "killed at {at_kill} of {total}; the resumed run copied {copied}, found {already} \
         ({:?} for both runs)",
        t.elapsed()
    );
    assert_eq!(copied + already, total, "{}", resumed.stdout);
    let mapping = corpus.mapping_to(&dovecot);
    let report = testbed::verify(&src, &dst, &mapping).await.unwrap();
    assert!(report.is_exact(), "Courier -> Dovecot differs:\n{report}");
    // Courier's containers stay containers.
    assert_containers(
        &dst,
        &["Kunden".to_owned(), "Projekte/Übersicht".to_owned()],
    )
    .await;

    let delta = migrate(&job, &store);
    assert!(delta.success, "{}\n{}", delta.stdout, delta.stderr);
    assert_eq!(delta.counts(), (0, total), "{}", delta.stdout);
    eprintln!("Courier -> Dovecot test: {:?} in all", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_courier_is_exact_but_for_the_folder_courier_refuses_and_resumes_after_sigkill()
{
    let started = Instant::now();
    let (dovecot, courier) = tokio::join!(
        Dovecot::start(DovecotOptions {
            layout: Layout::MaildirPlusPlus,
            special_use: english_special_use(),
            ..DovecotOptions::default()
        }),
        Courier::start(CourierOptions::default())
    );
    let (dovecot, courier) = (
        dovecot.expect("Dovecot starts"),
        courier.expect("Courier starts"),
    );
    let corpus = testbed::write_maildir(&dovecot, "alice", &spec(63, 300)).expect("corpus");
    let src = dovecot.account("alice").unwrap();
    let dst = courier.account("alice").unwrap();
    let total = corpus.total_messages() as u64;
    let refused = corpus.folders[EMOJI_FOLDER].messages.len() as u64;
    assert!(refused > 0);
    let (dir, job, store, _, resumed) =
        killed_and_resumed("dovecot-to-courier", &src, &dst, &corpus).await;
    eprintln!("{}\n{}", resumed.stdout, resumed.stderr);
    // Courier refuses the emoji folder: the run says so and fails; everything else arrives.
    assert!(!resumed.success, "a refused folder fails the run");
    assert!(resumed.stdout.contains("Post 📬 日本") || resumed.stderr.contains("Post 📬 日本"));
    // ...and which rename rule would give it a name Courier can store.
    assert!(
        resumed
            .stdout
            .contains("rename = [{ from = '^Post 📬 日本$', to = 'Post _ 日本' }]"),
        "{}",
        resumed.stdout
    );
    let (copied, already) = resumed.counts();
    assert_eq!(copied + already, total - refused, "{}", resumed.stdout);
    // The emoji folder's messages are failed, not forgotten: in the summary line and its row.
    assert_eq!(resumed.failed(), refused, "{}", resumed.stdout);
    let row = resumed
        .stdout
        .lines()
        .find(|l| l.starts_with("INBOX.Post"))
        .expect("a row for the refused folder");
    let numbers: Vec<&str> = row
        .split_whitespace()
        .filter(|w| w.parse::<u64>().is_ok())
        .collect();
    assert_eq!(
        numbers,
        [
            refused.to_string(),
            "0".into(),
            "0".into(),
            "0".into(),
            refused.to_string()
        ],
        "MESSAGES COPIED BEFORE EXCLUDED FAILED: {row}"
    );
    let mapping: Vec<(String, String)> = corpus
        .mapping_to(&courier)
        .into_iter()
        .filter(|(s, _)| s != EMOJI_FOLDER)
        .collect();
    let report = testbed::verify(&src, &dst, &mapping).await.unwrap();
    assert!(report.is_exact(), "Dovecot -> Courier differs:\n{report}");
    assert_containers(&dst, &corpus.containers).await;
    let delta = migrate(&job, &store);
    assert_eq!(delta.counts(), (0, total - refused), "{}", delta.stdout);
    assert_eq!(delta.failed(), refused, "{}", delta.stdout);

    // The engine's summary, folder report and verification say the same.
    let store = migrated_store::Store::open(
        &dir.join("engine-store"),
        migrated_store::StoreKey::from_bytes([42; 32]),
    )
    .unwrap();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let engine = migrated_engine::Engine::new(
        testbed::plugins::imap_source(&endpoint_of(&src)),
        migrated_imap::ImapDestination::new(endpoint_of(&dst)),
        store,
        migrated_engine::CopyConfig::new("job-courier"),
        {
            let events = events.clone();
            std::sync::Arc::new(move |e| {
                if let migrated_engine::Event::Failed(i) = e {
                    events.lock().unwrap().push(i);
                }
            })
        },
    );
    let summary = engine.run().await.expect("the run ends with a summary");
    let failed: Vec<_> = summary
        .failed
        .iter()
        .filter(|f| f.folder == EMOJI_FOLDER)
        .collect();
    assert_eq!(failed.len() as u64, refused, "{:?}", summary.failed);
    assert!(
        failed
            .iter()
            .all(|f| f.reason.contains("refused to create its folder"))
    );
    // Announced as failed items too: what the daemon's record and report list.
    let announced = events
        .lock()
        .unwrap()
        .iter()
        .filter(|f: &&migrated_core::ItemRow| f.folder == EMOJI_FOLDER)
        .count();
    assert_eq!(announced as u64, refused);
    let row = summary
        .per_folder
        .iter()
        .find(|r| r.source == EMOJI_FOLDER)
        .unwrap();
    assert_eq!((row.messages, row.failed), (refused, refused), "{row:?}");
    assert!(row.error.is_some());
    let verified = summary
        .verification
        .expect("a run with a folder error verifies");
    let vrow = verified
        .iter()
        .find(|r| r.source == EMOJI_FOLDER)
        .expect("a verification row");
    assert_eq!(
        (
            vrow.source_messages,
            vrow.destination_messages,
            vrow.missing.len() as u64
        ),
        (refused, 0, refused)
    );

    // The proposed rule, pasted into the job file, works: the folder arrives renamed, exact.
    let job = write_job(
        &dir,
        &src,
        &dst,
        "\n[folders]\nrename = [{ from = '^Post 📬 日本$', to = 'Post _ 日本' }]\n",
    );
    let renamed = migrate(&job, &dir.join("store"));
    assert!(renamed.success, "{}\n{}", renamed.stdout, renamed.stderr);
    assert_eq!(
        renamed.counts(),
        (refused, total - refused),
        "{}",
        renamed.stdout
    );
    assert_eq!(renamed.failed(), 0, "{}", renamed.stdout);
    let report = testbed::verify(
        &src,
        &dst,
        &[(EMOJI_FOLDER.to_owned(), "INBOX.Post _ 日本".to_owned())],
    )
    .await
    .unwrap();
    assert!(report.is_exact(), "{report}");
    eprintln!("Dovecot -> Courier test: {:?} in all", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_courier_with_unrepresentable_replace_brings_the_emoji_folder_under_a_name_courier_holds()
 {
    let started = Instant::now();
    let (dovecot, courier) = tokio::join!(
        Dovecot::start(DovecotOptions {
            layout: Layout::MaildirPlusPlus,
            special_use: english_special_use(),
            ..DovecotOptions::default()
        }),
        Courier::start(CourierOptions::default())
    );
    let (dovecot, courier) = (
        dovecot.expect("Dovecot starts"),
        courier.expect("Courier starts"),
    );
    let corpus = testbed::write_maildir(&dovecot, "alice", &spec(64, 120)).expect("corpus");
    let src = dovecot.account("alice").unwrap();
    let dst = courier.account("alice").unwrap();
    let total = corpus.total_messages() as u64;
    let emoji = corpus.folders[EMOJI_FOLDER].messages.len() as u64;
    assert!(emoji > 0);
    let dir = std::env::temp_dir().join(format!("courier-replace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // A replacement no server could be trusted with is refused before anything runs, naming
    // the field.
    let bad = write_job(
        &dir,
        &src,
        &dst,
        "\n[folders]\nunrepresentable = \"replace\"\nreplacement = \".\"\n",
    );
    let refused = migrate(&bad, &dir.join("bad-store"));
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("[folders]")
            && refused.stderr.contains("replacement = \".\"")
            && refused.stderr.contains("hierarchy separator"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        crate::common::beds::message_count(&dst).await,
        0,
        "nothing was copied"
    );

    let job = write_job(
        &dir,
        &src,
        &dst,
        "\n[folders]\nunrepresentable = \"replace\"\n",
    );
    let store = dir.join("store");
    let run = migrate(&job, &store);
    eprintln!("{}\n{}", run.stdout, run.stderr);
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.counts(), (total, 0), "{}", run.stdout);
    assert_eq!(run.failed(), 0, "{}", run.stdout);
    // The folder's row says under which name it arrived, and why.
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("INBOX.Post"))
        .expect("a row for the emoji folder");
    assert!(row.contains("INBOX.Post _ 日本"), "{row}");
    assert!(
        row.contains("renamed: arrived as \"INBOX.Post _ 日本\": the destination refused \"INBOX.Post 📬 日本\"")
            && row.contains("unrepresentable = \"replace\""),
        "{row}"
    );
    let numbers: Vec<&str> = row
        .split_whitespace()
        .filter(|w| w.parse::<u64>().is_ok())
        .collect();
    assert_eq!(
        numbers[..5],
        [
            emoji.to_string(),
            emoji.to_string(),
            "0".into(),
            "0".into(),
            "0".into()
        ],
        "MESSAGES COPIED BEFORE EXCLUDED FAILED: {row}"
    );
    let mapping: Vec<(String, String)> = corpus
        .mapping_to(&courier)
        .into_iter()
        .map(|(s, d)| {
            if s == EMOJI_FOLDER {
                (s, "INBOX.Post _ 日本".to_owned())
            } else {
                (s, d)
            }
        })
        .collect();
    let report = testbed::verify(&src, &dst, &mapping).await.unwrap();
    assert!(report.is_exact(), "Dovecot -> Courier differs:\n{report}");

    // A delta meets the same refusal, finds the replaced folder and copies nothing more.
    let delta = migrate(&job, &store);
    assert!(delta.success, "{}\n{}", delta.stdout, delta.stderr);
    assert_eq!(delta.counts(), (0, total), "{}", delta.stdout);
    assert_eq!(delta.failed(), 0, "{}", delta.stdout);
    assert!(
        delta
            .stdout
            .lines()
            .any(|l| l.starts_with("INBOX.Post") && l.contains("renamed: arrived as")),
        "{}",
        delta.stdout
    );
    let report = testbed::verify(&src, &dst, &mapping).await.unwrap();
    assert!(report.is_exact(), "after the delta:\n{report}");
    eprintln!("Courier replace test: {:?} in all", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}
