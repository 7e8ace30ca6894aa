//! Cyrus IMAP 3.6 (Debian 12's, unpacked: see `testbed::cyrus`): the test bed itself in both
//! namespace modes, and migrations from it to Dovecot (exact, killed with SIGKILL and resumed,
//! a delta that copies nothing).
//!
//! What Cyrus imposes, named by the tests: the missing parents of a folder are created as real
//! (selectable, empty) folders, so a Cyrus source has no `\Noselect` containers; 8-bit header
//! bytes become `X` on APPEND unless `munge8bit: no` (the source bed keeps them).

use std::time::Instant;

use testbed::{
    CorpusSpec, Cyrus, CyrusOptions, Dovecot, DovecotOptions, Layout, english_special_use, login,
    write_imap,
};

use crate::common::beds::{endpoint_of, job_dir, killed_and_resumed, migrate, write_job};
use crate::common::daemon::Daemon;
use crate::dovecot_testbed::assert_reads_back;

fn spec(seed: u64, messages: usize) -> CorpusSpec {
    CorpusSpec {
        seed,
        messages,
        max_attachment: 300_000,
        size_factor: 0.5,
    }
}

fn source_options(alt_namespace: bool) -> CyrusOptions {
    CyrusOptions {
        alt_namespace,
        munge8bit: false,
        ..CyrusOptions::default()
    }
}

async fn testbed_holds_the_corpus(alt_namespace: bool) {
    let t = Instant::now();
    let cyrus = Cyrus::start(source_options(alt_namespace))
        .await
        .expect("Cyrus starts");
    eprintln!("Cyrus started in {:?}", t.elapsed());
    let acct = cyrus.account("alice").unwrap();
    let t = Instant::now();
    let written = write_imap(&cyrus, &acct, &spec(71, 80))
        .await
        .expect("corpus appended");
    eprintln!(
        "{} messages appended in {:?}",
        written.corpus.total_messages(),
        t.elapsed()
    );
    assert!(
        written.refused_folders.is_empty(),
        "{:?}",
        written.refused_folders
    );
    assert!(
        written.refused_messages.is_empty(),
        "{:?}",
        written.refused_messages
    );
    let corpus = &written.corpus;
    let (p, sep) = if alt_namespace {
        ("", "/")
    } else {
        ("INBOX.", ".")
    };
    for name in ["Projekte/Übersicht/2019", "Post 📬 日本", "Zürich & Genève"] {
        let name = format!("{p}{}", name.replace('/', sep));
        assert!(
            corpus.folders.contains_key(&name),
            "{name}: {:?}",
            corpus.folders.keys()
        );
    }
    // Cyrus made the parents real folders: no containers.
    assert!(corpus.containers.is_empty(), "{:?}", corpus.containers);
    let parent = format!("{p}Projekte{sep}Übersicht");
    assert!(corpus.folders[&parent].messages.is_empty());

    let mut s = login(&acct).await.expect("login");
    assert_reads_back(&mut s, corpus).await.unwrap();
    let special: std::collections::BTreeSet<(String, String)> =
        s.special_use_folders().await.unwrap().into_iter().collect();
    let want: std::collections::BTreeSet<(String, String)> = english_special_use()
        .into_iter()
        .map(|(n, a)| (format!("{p}{n}"), a))
        .collect();
    assert_eq!(special, want);
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
async fn testbed_cyrus_holds_the_corpus_in_the_standard_namespace() {
    testbed_holds_the_corpus(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testbed_cyrus_holds_the_corpus_in_the_alternate_namespace() {
    testbed_holds_the_corpus(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyrus_to_dovecot_is_exact_resumes_after_sigkill_and_a_delta_copies_nothing() {
    cyrus_to_dovecot(false, 72).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyrus_in_the_alternate_namespace_to_dovecot_is_exact_and_resumes_after_sigkill() {
    cyrus_to_dovecot(true, 75).await;
}

async fn cyrus_to_dovecot(alt_namespace: bool, seed: u64) {
    let started = Instant::now();
    let (cyrus, dovecot) = tokio::join!(
        Cyrus::start(source_options(alt_namespace)),
        Dovecot::start(DovecotOptions {
            layout: Layout::Fs,
            special_use: english_special_use(),
            ..DovecotOptions::default()
        })
    );
    let (cyrus, dovecot) = (
        cyrus.expect("Cyrus starts"),
        dovecot.expect("Dovecot starts"),
    );
    let src = cyrus.account("alice").unwrap();
    let dst = dovecot.account("alice").unwrap();
    let written = write_imap(&cyrus, &src, &spec(seed, 300))
        .await
        .expect("corpus appended");
    assert!(
        written.refused_messages.is_empty(),
        "{:?}",
        written.refused_messages
    );
    let corpus = &written.corpus;
    let total = corpus.total_messages() as u64;

    let t = Instant::now();
    let (dir, job, store, at_kill, resumed) = killed_and_resumed(
        &format!("cyrus-to-dovecot-{alt_namespace}"),
        &src,
        &dst,
        corpus,
    )
    .await;
    assert!(resumed.success, "{}\n{}", resumed.stdout, resumed.stderr);
    let (copied, already) = resumed.counts();
    eprintln!(
        "killed at {at_kill} of {total}; the resumed run copied {copied}, found {already} \
         ({:?} for both runs)",
        t.elapsed()
    );
    assert_eq!(copied + already, total, "{}", resumed.stdout);
    let report = testbed::verify(&src, &dst, &corpus.mapping_to(&dovecot))
        .await
        .unwrap();
    assert!(report.is_exact(), "Cyrus -> Dovecot differs:\n{report}");

    let delta = migrate(&job, &store);
    assert!(delta.success, "{}\n{}", delta.stdout, delta.stderr);
    assert_eq!(delta.counts(), (0, total), "{}", delta.stdout);
    eprintln!("Cyrus -> Dovecot test: {:?} in all", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Dovecot (Maildir++, English special-use names) with a corpus, and an empty Cyrus.
async fn dovecot_and_cyrus(
    munge8bit: bool,
    alt_namespace: bool,
    seed: u64,
) -> (Dovecot, Cyrus, testbed::Corpus) {
    let (dovecot, cyrus) = tokio::join!(
        Dovecot::start(DovecotOptions {
            layout: Layout::MaildirPlusPlus,
            special_use: english_special_use(),
            ..DovecotOptions::default()
        }),
        Cyrus::start(CyrusOptions {
            munge8bit,
            alt_namespace,
            ..CyrusOptions::default()
        })
    );
    let (dovecot, cyrus) = (
        dovecot.expect("Dovecot starts"),
        cyrus.expect("Cyrus starts"),
    );
    let corpus = testbed::write_maildir(&dovecot, "alice", &spec(seed, 300)).expect("corpus");
    (dovecot, cyrus, corpus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_cyrus_is_exact_with_munge8bit_off_and_resumes_after_sigkill() {
    dovecot_to_cyrus(false, 73).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_cyrus_in_the_alternate_namespace_is_exact_and_resumes_after_sigkill() {
    dovecot_to_cyrus(true, 76).await;
}

async fn dovecot_to_cyrus(alt_namespace: bool, seed: u64) {
    let started = Instant::now();
    let (dovecot, cyrus, corpus) = dovecot_and_cyrus(false, alt_namespace, seed).await;
    let src = dovecot.account("alice").unwrap();
    let dst = cyrus.account("alice").unwrap();
    let total = corpus.total_messages() as u64;
    let (dir, job, store, at_kill, resumed) = killed_and_resumed(
        &format!("dovecot-to-cyrus-{alt_namespace}"),
        &src,
        &dst,
        &corpus,
    )
    .await;
    assert!(resumed.success, "{}\n{}", resumed.stdout, resumed.stderr);
    let (copied, already) = resumed.counts();
    eprintln!("killed at {at_kill} of {total}; the resumed run copied {copied}, found {already}");
    assert_eq!(copied + already, total, "{}", resumed.stdout);
    let report = testbed::verify(&src, &dst, &corpus.mapping_to(&cyrus))
        .await
        .unwrap();
    assert!(report.is_exact(), "Dovecot -> Cyrus differs:\n{report}");
    let delta = migrate(&job, &store);
    assert!(delta.success, "{}\n{}", delta.stdout, delta.stderr);
    assert_eq!(delta.counts(), (0, total), "{}", delta.stdout);
    eprintln!("Dovecot -> Cyrus test: {:?} in all", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_to_cyrus_as_shipped_replaces_8bit_header_bytes_and_nothing_else() {
    let (dovecot, cyrus, corpus) = dovecot_and_cyrus(true, false, 74).await;
    let src = dovecot.account("alice").unwrap();
    let dst = cyrus.account("alice").unwrap();
    let dir = job_dir("dovecot-to-cyrus-munge");
    let job = write_job(&dir, &src, &dst, "");
    let run = migrate(&job, &dir.join("store"));
    eprintln!("{}\n{}", run.stdout, run.stderr);
    let report = testbed::verify(&src, &dst, &corpus.mapping_to(&cyrus))
        .await
        .unwrap();
    // Cyrus's munge8bit (on by default) stores every 8-bit byte of a header as 'X': those
    // messages arrive with other bytes of the same length; nothing else differs.
    let mut munged = 0;
    let mut s_src = login(&src).await.unwrap();
    let mut s_dst = login(&dst).await.unwrap();
    for f in &report.folders {
        assert!(f.dst_exists && f.mismatched.is_empty(), "{report}");
        assert_eq!(f.missing.len(), f.extra.len(), "{report}");
        let mut twins = f.extra.clone();
        for m in &f.missing {
            let pos = twins
                .iter()
                .position(|e| e.message_id == m.message_id && e.size == m.size)
                .unwrap_or_else(|| panic!("no munged twin of {m:?}\n{report}"));
            let twin = twins.remove(pos);
            let a = s_src.message_bytes(&f.src_folder, m.src_uid).await.unwrap();
            let b = s_dst
                .message_bytes(&f.dst_folder, twin.dst_uid)
                .await
                .unwrap();
            assert_eq!(a.len(), b.len());
            let header_end = a
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(a.len());
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                if x != y {
                    assert!(
                        *x >= 0x80 && *y == b'X',
                        "{}: byte {i} is {x:#x} -> {y:#x}, not an 8-bit byte made 'X'",
                        f.src_folder
                    );
                    // In the message's header, or the header of one of its MIME parts.
                    let line_start = a[..i]
                        .iter()
                        .rposition(|c| *c == b'\n')
                        .map_or(0, |p| p + 1);
                    let line = &a[line_start..i];
                    assert!(
                        i < header_end
                            || line.contains(&b':')
                            || line.starts_with(b" ")
                            || line.starts_with(b"\t"),
                        "{}: byte {i} replaced outside a header line",
                        f.src_folder
                    );
                }
            }
            munged += 1;
        }
    }
    s_src.logout().await.unwrap();
    s_dst.logout().await.unwrap();
    assert!(
        munged > 0,
        "the corpus has 8-bit headers, Cyrus munged none?\n{report}"
    );
    eprintln!(
        "{munged} of {} messages had their 8-bit header bytes replaced",
        corpus.total_messages()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An administrator on the Cyrus side: a CSV batch of three Dovecot mailboxes copied into
/// Cyrus by `mailadmin` (in `proxyservers`) logging in with SASL PLAIN on behalf of each user,
/// so only the administrator's Cyrus password is on disk; and the same batch with an
/// administrator Cyrus does not let act for others fails each row with Cyrus's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_into_cyrus_by_an_administrator_on_behalf_of_three_users_is_exact() {
    const ADMIN_PASSWORD: &str = "cyrus-admin-secret-4t8";
    let users: Vec<String> = (1..=3).map(|i| format!("cu{i}")).collect();
    let mut cyrus_users: Vec<(String, String)> = users
        .iter()
        .map(|u| (u.clone(), format!("own-cyrus-{u}")))
        .collect();
    cyrus_users.push(("mailadmin".into(), ADMIN_PASSWORD.into()));
    cyrus_users.push(("helpdesk".into(), "helpdesk-secret-2w6".into()));
    let (dovecot, cyrus) = tokio::join!(
        Dovecot::start(DovecotOptions {
            layout: Layout::MaildirPlusPlus,
            special_use: english_special_use(),
            users: users
                .iter()
                .map(|u| (u.clone(), format!("own-source-{u}")))
                .collect(),
            ..DovecotOptions::default()
        }),
        Cyrus::start(CyrusOptions {
            users: cyrus_users,
            munge8bit: false,
            proxy_servers: vec!["mailadmin".into()],
            ..CyrusOptions::default()
        })
    );
    let (dovecot, cyrus) = (
        dovecot.expect("Dovecot starts"),
        cyrus.expect("Cyrus starts"),
    );
    let corpora: Vec<testbed::Corpus> = users
        .iter()
        .enumerate()
        .map(|(i, u)| testbed::write_maildir(&dovecot, u, &spec(780 + i as u64, 20)).unwrap())
        .collect();

    let mut daemon = Daemon::in_dir(
        std::env::temp_dir().join(format!("migrated-cyrus-admin-{}", std::process::id())),
    );
    daemon.start().await;
    let dir = daemon.state.join("batches");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mailadmin.pass"), ADMIN_PASSWORD).unwrap();
    std::fs::write(dir.join("helpdesk.pass"), "helpdesk-secret-2w6").unwrap();
    // Exchange's columns: the source's own password in the row, the Cyrus user named in
    // DestinationUserName, no destination password.
    let mut csv = String::from("EmailAddress,UserName,Password,DestinationUserName\n");
    for u in &users {
        csv.push_str(&format!("{u}@example.org,{u},own-source-{u},{u}\n"));
    }
    let csv_file = dir.join("cyrus.csv");
    std::fs::write(&csv_file, csv).unwrap();
    for admin in ["mailadmin", "helpdesk"] {
        let template = dir.join(format!("{admin}.toml"));
        std::fs::write(
            &template,
            format!(
                "[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
                 [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
                 admin_user = \"{admin}\"\nadmin_login = \"sasl-plain\"\n\
                 admin_password_file = \"{}\"\n",
                dovecot.imap_port(),
                cyrus.imap_port(),
                dir.join(format!("{admin}.pass")).display()
            ),
        )
        .unwrap();
        daemon.create_batch(admin, &csv_file, &template);
        let jobs = daemon
            .wait_batch(admin, 3, migrated_core::JobStatus::is_finished)
            .await;
        for j in &jobs {
            if admin == "mailadmin" {
                assert_eq!(j["status"], "Completed", "{j}\n{}", daemon.log());
            } else {
                // Cyrus lets only `proxyservers` act for others: each row fails with its words.
                assert_eq!(j["status"], "Failed", "{j}");
                let error = j["error"].as_str().unwrap_or_default();
                assert!(
                    error.contains("refused the login of \"helpdesk\" on behalf of \"cu"),
                    "{error}"
                );
            }
        }
        if admin == "helpdesk" {
            let error = jobs[0]["error"].as_str().unwrap_or_default().to_owned();
            eprintln!("Cyrus refused the helpdesk: {error}");
        }
    }
    for (u, corpus) in users.iter().zip(&corpora) {
        let report = testbed::verify(
            &dovecot.account(u).unwrap(),
            &cyrus.account(u).unwrap(),
            &corpus.mapping_to(&cyrus),
        )
        .await
        .unwrap();
        assert!(
            report.is_exact(),
            "{u}: Dovecot -> Cyrus differs:\n{report}\n{}",
            daemon.log()
        );
    }
    // The users' own Cyrus passwords were never written for the daemon.
    for f in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(
            !text.contains("own-cyrus-"),
            "a user's Cyrus password on disk"
        );
    }
}

/// Cyrus refuses a message whose header has a line without a colon ("Message contains invalid
/// header"). The refusal is said in the administrator's terms (Cyrus's reply quoted, the
/// message to be fixed at the source, munge8bit named), and counted: three deltas send it and
/// are refused, the third records it as refused for good, and the fourth does not send it but
/// reports it as refused for good, with the count and the reply. `reset` clears the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_cyrus_refuses_three_times_the_same_way_is_refused_for_good_and_not_sent_again() {
    let (dovecot, cyrus) = tokio::join!(
        Dovecot::start(DovecotOptions::default()),
        Cyrus::start(CyrusOptions::default())
    );
    let (dovecot, cyrus) = (
        dovecot.expect("Dovecot starts"),
        cyrus.expect("Cyrus starts"),
    );
    let src = dovecot.account("alice").unwrap();
    let dst = cyrus.account("alice").unwrap();
    let good =
        b"From: a@example.org\r\nSubject: fine\r\nMessage-ID: <good@example.org>\r\n\r\nbody\r\n";
    let bad = b"From: a@example.org\r\nSubject: broken\r\nMessage-ID: <bad@example.org>\r\nThis line has no colon\r\n\r\nbody\r\n";
    let mut s = login(&src).await.unwrap();
    s.append("INBOX", good, &[], None).await.unwrap();
    s.append("INBOX", bad, &[], None).await.unwrap();
    s.logout().await.unwrap();
    let dir = job_dir("cyrus-refused-for-good");
    let store_dir = dir.join("store");
    let run = || async {
        let store =
            migrated_store::Store::open(&store_dir, migrated_store::StoreKey::from_bytes([42; 32]))
                .unwrap();
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let engine = migrated_engine::Engine::new(
            testbed::plugins::imap_source(&endpoint_of(&src)),
            migrated_imap::ImapDestination::new(endpoint_of(&dst)),
            store.clone(),
            migrated_engine::CopyConfig::new("job-cyrus-refused"),
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
        let announced = events.lock().unwrap().clone();
        let folder = store.folder_key(store.job_key("job-cyrus-refused"), "INBOX");
        let counted: Vec<u32> = store
            .refusals(folder)
            .unwrap()
            .values()
            .map(|r| r.count)
            .collect();
        (summary, announced, counted)
    };
    for n in 1..=4u32 {
        let (summary, announced, counted) = run().await;
        assert_eq!(summary.failed.len(), 1, "run {n}: {:?}", summary.failed);
        let reason = &summary.failed[0].reason;
        eprintln!("run {n}: {reason}");
        assert_eq!(summary.failed[0].subject.as_deref(), Some("broken"));
        assert_eq!(
            announced.iter().map(|i| &i.reason).collect::<Vec<_>>(),
            [reason],
            "the event says the same"
        );
        // Cyrus's reply quoted, what would change it named.
        assert!(
            reason.contains("Message contains invalid header"),
            "{reason}"
        );
        assert!(
            reason.contains("fixed at the source") && reason.contains("munge8bit: no"),
            "{reason}"
        );
        match n {
            1 | 2 => assert!(
                reason.contains(&format!("refused {n} of 3 times")),
                "{reason}"
            ),
            3 => assert!(
                reason.contains("refused for good: refused 3 times in a row"),
                "{reason}"
            ),
            _ => assert!(
                reason.starts_with(
                    "refused for good, not sent again: the destination refused it 3 times in a row"
                ) && reason.contains("migratectl reset"),
                "{reason}"
            ),
        }
        // Sent and refused by runs 1 to 3; the fourth did not send it (a refusal would have
        // made the count 4).
        assert_eq!(counted, [n.min(3)], "run {n}");
        assert_eq!(
            summary.copied,
            u64::from(n == 1),
            "the good message, once: {summary:?}"
        );
    }
    let store =
        migrated_store::Store::open(&store_dir, migrated_store::StoreKey::from_bytes([42; 32]))
            .unwrap();
    store.reset_job("job-cyrus-refused").unwrap();
    let folder = store.folder_key(store.job_key("job-cyrus-refused"), "INBOX");
    assert!(
        store.refusals(folder).unwrap().is_empty(),
        "reset forgets the count"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
