//! End-to-end tests of the copy engine against two real Dovecot servers.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::common::{Recorder, WITHOUT_CONDSTORE, endpoint, pair, pair_with, small_corpus};
use migrated_core::{ErrorKind, MappingRules};
use migrated_engine::{EngineError, Event};
use testbed::CorpusSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_the_corpus_exactly_and_a_second_run_copies_nothing() {
    // Several thousand messages, heavy-tailed sizes and one 20 MiB attachment.
    let p = pair(CorpusSpec {
        seed: 7,
        messages: 3000,
        max_attachment: 20 * 1024 * 1024,
        size_factor: 1.0,
    })
    .await;
    let total = p.corpus.total_messages() as u64;
    let recorder = Arc::new(Recorder::default());
    let summary = p
        .engine(p.config(), recorder.observer())
        .run()
        .await
        .expect("first run");
    assert_eq!(summary.copied, total, "every message copied once");
    assert!(
        summary.failed.is_empty() && summary.excluded.is_empty(),
        "{summary:?}"
    );
    assert_eq!(summary.bytes, p.corpus.total_bytes());
    p.assert_exact().await;

    // Progress is monotonic and ends at the totals announced before copying.
    let events = recorder.events.lock().unwrap().clone();
    let announced: u64 = events
        .iter()
        .filter_map(|e| match e {
            Event::Totals { items, .. } => Some(*items),
            _ => None,
        })
        .sum();
    assert_eq!(announced, total);
    let progress: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { items_done, .. } => Some(*items_done),
            _ => None,
        })
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back"
    );
    assert_eq!(progress.last().copied(), Some(total));

    let again = p.quiet_engine(p.config()).run().await.expect("second run");
    assert_eq!(again.copied, 0, "a second run copies nothing");
    assert_eq!(again.already_copied, total);
    p.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_tree_special_use_subscriptions_and_containers_are_mapped() {
    let p = pair(small_corpus(11)).await;
    p.quiet_engine(p.config()).run().await.expect("run");
    p.assert_exact().await;

    let mut s = testbed::login(&p.src.account("alice").unwrap())
        .await
        .unwrap();
    let mut d = testbed::login(&p.dst.account("alice").unwrap())
        .await
        .unwrap();
    let dst_listed = d.list_folders().await.unwrap();
    let dst_folders: BTreeSet<String> = dst_listed.iter().map(|f| f.name.clone()).collect();

    // Localized special-use folders land in the destination's folders of the same role.
    let roles = d.special_use_folders().await.unwrap();
    for (role, name) in [
        ("\\Sent", "Sent"),
        ("\\Trash", "Trash"),
        ("\\Drafts", "Drafts"),
        ("\\Junk", "Junk"),
        ("\\Archive", "Archive"),
    ] {
        assert!(
            roles
                .iter()
                .any(|(n, r)| n == name && r.eq_ignore_ascii_case(role)),
            "{role} is {name}: {roles:?}"
        );
    }
    // Containers of the source are containers (\Noselect) on the destination.
    assert!(
        !p.corpus.containers.is_empty(),
        "the corpus has a container folder"
    );
    for c in &p.corpus.containers {
        let dest = c.strip_prefix("INBOX.").unwrap_or(c).replace('.', "/");
        assert!(
            dst_folders.contains(&dest),
            "container {c} is {dest} on the destination: {dst_folders:?}"
        );
        let listed = dst_listed.iter().find(|f| f.name == dest).unwrap();
        assert!(
            !listed.selectable(),
            "container {c} became a selectable folder {dest} on the destination: {listed:?}"
        );
    }
    // Subscriptions follow the mapping.
    let mapping: std::collections::HashMap<String, String> =
        p.corpus.mapping_to(&p.dst).into_iter().collect();
    let dst_subscribed: BTreeSet<String> =
        d.subscribed_folders().await.unwrap().into_iter().collect();
    let src_subscribed = s.subscribed_folders().await.unwrap();
    assert!(!src_subscribed.is_empty());
    for f in src_subscribed {
        if let Some(target) = mapping.get(&f) {
            assert!(
                dst_subscribed.contains(target),
                "{f} subscribed as {target}: {dst_subscribed:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_exclude_and_rename_rules_apply() {
    let p = pair(small_corpus(12)).await;
    let mut config = p.config();
    config.rules = MappingRules::compile(
        &[],
        &["^Spam$".into()],
        &[("^Projekte".into(), "Archiv-Alt/Projekte".into())],
    )
    .unwrap();
    let summary = p.quiet_engine(config).run().await.expect("run");
    assert!(
        summary
            .skipped_folders
            .iter()
            .any(|(n, r)| n == "INBOX.Spam" && r.contains("exclude")),
        "{:?}",
        summary.skipped_folders
    );
    let mut d = testbed::login(&p.dst.account("alice").unwrap())
        .await
        .unwrap();
    let names: Vec<String> = d
        .list_folders()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("Archiv-Alt/Projekte")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("Projekte")),
        "{names:?}"
    );
    let junk = d.examine("Junk").await.unwrap();
    assert_eq!(junk, 0, "the excluded folder's messages were not copied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_excluded_and_reported() {
    let p = pair(CorpusSpec {
        seed: 13,
        messages: 300,
        max_attachment: 3 * 1024 * 1024,
        size_factor: 1.0,
    })
    .await;
    let limit = 1024 * 1024;
    let mut config = p.config();
    config.max_message_size = limit;
    let big: Vec<(String, u64, Option<String>)> = p
        .corpus
        .folders
        .iter()
        .flat_map(|(name, f)| {
            f.messages
                .iter()
                .filter(|m| m.size > limit)
                .map(move |m| (name.clone(), m.size, m.message_id.clone()))
        })
        .collect();
    assert!(!big.is_empty(), "the corpus has messages over 1 MiB");
    let summary = p.quiet_engine(config).run().await.expect("run");
    assert_eq!(summary.excluded.len(), big.len(), "{:?}", summary.excluded);
    for (folder, size, message_id) in &big {
        assert!(
            summary.excluded.iter().any(|e| &e.folder == folder
                && e.size == *size
                && &e.message_id == message_id
                && e.uid > 0),
            "{folder} {size} {message_id:?} listed in {:?}",
            summary.excluded
        );
    }
    let report = p.verify().await;
    assert_eq!(
        report
            .folders
            .iter()
            .map(|f| f.missing.len())
            .sum::<usize>(),
        big.len(),
        "{report}"
    );
    for f in &report.folders {
        assert!(
            f.missing.iter().all(|m| m.size > limit),
            "only the large ones are missing: {report}"
        );
        assert!(f.extra.is_empty() && f.mismatched.is_empty(), "{report}");
    }

    // The limit raised: the delta copies what was excluded, although nothing changed on the
    // source (Dovecot offers CONDSTORE, so UIDNEXT and HIGHESTMODSEQ say "unchanged").
    let mut raised = p.config();
    raised.max_message_size = 64 * 1024 * 1024;
    let delta = p.quiet_engine(raised.clone()).run().await.expect("delta");
    assert_eq!(delta.copied, big.len() as u64, "{:?}", delta.excluded);
    assert!(delta.excluded.is_empty());
    p.assert_exact().await;
    let again = p.quiet_engine(raised).run().await.expect("no-op delta");
    assert_eq!(again.copied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_copies_new_mail_and_carries_flag_changes() {
    delta_test(pair(small_corpus(14)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_condstore_a_delta_compares_flags_one_by_one() {
    let p = pair_with(small_corpus(19), None, Some(WITHOUT_CONDSTORE)).await;
    let s = migrated_imap::ImapSession::connect(&endpoint(&p.src))
        .await
        .unwrap();
    assert!(
        !s.has("CONDSTORE"),
        "the source plays a server without CONDSTORE"
    );
    s.logout().await;
    delta_test(p).await;
}

async fn delta_test(p: crate::common::Pair) {
    p.quiet_engine(p.config()).run().await.expect("first run");
    p.assert_exact().await;

    let acct = p.src.account("alice").unwrap();
    let mut s = testbed::login(&acct).await.unwrap();
    let inbox = s.folder_messages("INBOX").await.unwrap();
    let changed: Vec<u32> = inbox.iter().take(5).map(|m| m.uid).collect();
    for uid in &changed {
        s.store_flags("INBOX", *uid, &["\\Flagged", "\\Answered", "$Delta"])
            .await
            .unwrap();
    }
    s.logout().await.unwrap();
    let new = testbed::synthetic_message(99, 5000);
    testbed::append_message(&acct, "INBOX", &new, &["\\Seen"], 1_600_000_000)
        .await
        .unwrap();

    let summary = p.quiet_engine(p.config()).run().await.expect("delta");
    assert_eq!(summary.copied, 1, "only the new message is copied");
    assert_eq!(summary.flags_updated, changed.len() as u64);
    p.assert_exact().await;

    let again = p.quiet_engine(p.config()).run().await.expect("no-op delta");
    assert_eq!((again.copied, again.flags_updated), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_change_on_either_side_costs_neither_loss_nor_duplicates() {
    let p = pair(small_corpus(15)).await;
    p.quiet_engine(p.config()).run().await.expect("first run");
    for (d, folder) in [
        (&p.src, "INBOX"),
        (&p.dst, "INBOX"),
        (&p.src, "INBOX.Gesendete Objekte"),
        (&p.dst, "Archive"),
    ] {
        d.doveadm(&[
            "mailbox",
            "update",
            "-u",
            "alice",
            "--uid-validity",
            "4242",
            folder,
        ])
        .expect("uidvalidity changed");
    }
    let acct = p.src.account("alice").unwrap();
    testbed::append_message(
        &acct,
        "INBOX",
        &testbed::synthetic_message(5, 3000),
        &[],
        1_500_000_000,
    )
    .await
    .unwrap();
    let summary = p
        .quiet_engine(p.config())
        .run()
        .await
        .expect("run after the change");
    assert_eq!(summary.copied, 1, "only the new message: {summary:?}");
    p.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_permanent_error() {
    let p = pair(CorpusSpec {
        seed: 16,
        messages: 10,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut source = endpoint(&p.src);
    source.secret = migrated_imap::Secret::new("not-the-password-Xy7");
    let engine = migrated_engine::Engine::new(
        testbed::plugins::imap_source(&source),
        migrated_imap::ImapDestination::new(endpoint(&p.dst)),
        p.store(),
        p.config(),
        Arc::new(|_| {}),
    );
    let err = engine.run().await.expect_err("login refused");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    let text = err.to_string();
    assert!(matches!(err, EngineError::Source(_)), "{text}");
    assert!(text.contains("refused the login of \"alice\""), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", p.src.imap_port())),
        "names the server: {text}"
    );
    assert!(
        text.contains("AUTHENTICATIONFAILED") || text.contains("Authentication failed"),
        "quotes the server: {text}"
    );
    assert!(
        !text.contains("not-the-password-Xy7"),
        "never shows the secret: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_disconnects_are_retried_without_loss_or_duplicates() {
    let p = pair(CorpusSpec {
        seed: 17,
        messages: 1500,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut config = p.config();
    config.batch_messages = 10;
    let recorder = Arc::new(Recorder::default());
    let engine = p.engine(config, recorder.observer());
    let kicker = async {
        // Drop every connection on both sides a few times while the copy runs.
        for _ in 0..4 {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let _ = p.dst.doveadm(&["kick", "alice"]);
            let _ = p.src.doveadm(&["kick", "alice"]);
        }
    };
    let (summary, ()) = tokio::join!(engine.run(), kicker);
    let summary = summary.expect("the run survives disconnects");
    drop(engine);
    let retries = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Retrying { .. }))
        .count();
    assert!(retries > 0, "the disconnects hit the run (no retry seen)");
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    p.assert_exact().await;
    let again = p.quiet_engine(p.config()).run().await.expect("re-run");
    assert_eq!(again.copied, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_destination_mailbox_stops_the_job_which_finishes_once_the_quota_is_raised() {
    // A destination quota of 2 MB: the first messages fit, then the mailbox is full.
    let mut p = pair_with(small_corpus(18), Some(2_000_000), None).await;
    assert!(
        p.corpus.total_bytes() > 4_000_000,
        "the corpus exceeds the quota"
    );
    let recorder = Arc::new(Recorder::default());
    let err = p
        .engine(p.config(), recorder.observer())
        .run()
        .await
        .expect_err("a full mailbox stops the run");
    let message = err.to_string();
    assert!(
        message.starts_with("destination mailbox full")
            && (message.contains("Quota exceeded") || message.contains("OVERQUOTA")),
        "the server's words: {message}"
    );
    assert_eq!(
        err.kind(),
        ErrorKind::Permanent,
        "retrying cannot help: {message}"
    );
    let copied = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Progress { items_done, .. } => Some(*items_done),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    assert!(copied > 0, "the messages that fit were copied first");
    assert!(
        recorder
            .events
            .lock()
            .unwrap()
            .iter()
            .all(|e| !matches!(e, Event::Failed(_))),
        "nothing is recorded as refused: the messages wait for room"
    );
    // Room on the destination: the job resumes and finishes, copying nothing twice.
    p.dst.set_quota(100_000_000).unwrap();
    let summary = p
        .quiet_engine(p.config())
        .run()
        .await
        .expect("finishes once the quota is raised");
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(
        summary.copied + copied,
        p.corpus.total_messages() as u64,
        "the second run copies exactly what the first could not"
    );
    p.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandwidth_limit_is_never_exceeded() {
    let p = pair(CorpusSpec {
        seed: 20,
        messages: 400,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let limit = 2_000_000u64; // 2 MB/s
    let mut config = p.config();
    config
        .bandwidth
        .push(Arc::new(migrated_engine::RateLimit::new(limit)));
    let recorder = Arc::new(Recorder::default());
    let started = Arc::new(std::sync::Mutex::new(None));
    let s2 = started.clone();
    let inner = recorder.observer();
    let observer: migrated_engine::Observer = Arc::new(move |e| {
        if matches!(e, Event::Phase(migrated_core::Phase::Copying)) {
            s2.lock().unwrap().get_or_insert(std::time::Instant::now());
        }
        inner(e);
    });
    let summary = p.engine(config, observer).run().await.expect("run");
    let copying = started
        .lock()
        .unwrap()
        .expect("a copy phase")
        .elapsed()
        .as_secs_f64();
    let rate = summary.bytes as f64 / copying;
    assert!(
        summary.bytes > 8_000_000,
        "enough bytes to measure: {}",
        summary.bytes
    );
    // The copy never goes faster than the limit (the bucket starts empty and holds one
    // second's worth). How close it comes to the limit depends on how fast this shared
    // machine's servers are, so that is not asserted here: the limiter's own test
    // (throttle::tests, on tokio's paused clock) shows it holds the rate exactly.
    assert!(
        rate <= limit as f64 * 1.1,
        "{rate:.0} B/s against a limit of {limit} B/s"
    );
    p.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_throttles_makes_the_job_wait_then_finish() {
    let p = pair(small_corpus(21)).await;
    // The first three APPENDs get Office 365's answer.
    let reply = "NO [THROTTLED] Request is throttled. Suggested Backoff Time: 1200 milliseconds";
    let proxy = testbed::fault::AppendFaultProxy::start(p.dst.imap_port(), 3, reply)
        .await
        .unwrap();
    let mut destination = endpoint(&p.dst);
    destination.port = proxy.port();
    let recorder = Arc::new(Recorder::default());
    let engine = migrated_engine::Engine::new(
        testbed::plugins::imap_source(&endpoint(&p.src)),
        migrated_imap::ImapDestination::new(destination),
        p.store(),
        p.config(),
        recorder.observer(),
    );
    let started = std::time::Instant::now();
    let summary = engine
        .run()
        .await
        .expect("the job finishes despite the throttling");
    drop(engine);
    assert_eq!(proxy.refused.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(
        summary.failed.is_empty(),
        "throttled messages are not failures: {:?}",
        summary.failed
    );
    let throttles: Vec<std::time::Duration> = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Throttled { delay, reason } => {
                assert!(reason.contains("THROTTLED"), "{reason}");
                Some(*delay)
            }
            _ => None,
        })
        .collect();
    assert!(!throttles.is_empty(), "the throttling was reported");
    assert!(
        throttles
            .iter()
            .all(|d| *d == std::time::Duration::from_millis(1200)),
        "the server's suggested backoff is obeyed: {throttles:?}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1200),
        "the job waited"
    );
    p.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_upload_allowance_makes_the_job_wait_for_the_next_day_instead_of_failing() {
    let p = pair(CorpusSpec {
        seed: 44,
        messages: 300,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut config = p.config();
    config.daily_upload = Some(1_000_000);
    config.max_passes = 2;
    config.connections = 1;
    let throttles = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = throttles.clone();
    let engine = p.engine(
        config,
        Arc::new(move |e| {
            if let Event::Throttled { delay, reason } = e {
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                seen.lock().unwrap().push((delay, reason, at));
            }
        }),
    );
    let stop = engine.stop_handle();
    let run = tokio::spawn(async move { engine.run().await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while throttles.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no throttle within 60 s"
        );
        assert!(!run.is_finished(), "the run ended instead of waiting");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Longer than two passes with their backoffs: a throttled job waits, it does not give up.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(!run.is_finished(), "a throttled job must wait, not fail");
    let (delay, reason, at) = throttles.lock().unwrap()[0].clone();
    let to_midnight = 86_400 - at % 86_400;
    assert!(
        delay.as_secs() <= to_midnight + 1 && delay.as_secs() + 2 >= to_midnight,
        "waits until 00:00 UTC ({to_midnight} s): {delay:?}"
    );
    assert!(
        reason.contains("daily upload allowance is 1 MB"),
        "{reason}"
    );
    stop.stop();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .expect("stops promptly when asked")
        .unwrap();
    assert!(matches!(ended, Err(EngineError::Stopped)), "{ended:?}");
    let report = p.verify().await;
    let total = p.corpus.total_messages();
    let missing = report.missing_count();
    assert!(
        missing > 0 && missing < total,
        "part of the mailbox before the allowance ran out: {missing} of {total} missing"
    );
    assert_eq!(report.extra_count(), 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_expunged_and_added_on_the_source_during_a_run_cost_nothing_and_double_nothing() {
    let p = pair(CorpusSpec {
        seed: 45,
        messages: 300,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut config = p.config();
    // Slow enough (about 5 s) for the source to change while the copy runs.
    config
        .bandwidth
        .push(Arc::new(migrated_engine::RateLimit::new(1_500_000)));
    config.connections = 2;
    let recorder = Arc::new(Recorder::default());
    let engine = p.engine(config, recorder.observer());
    let run = tokio::spawn(async move { engine.run().await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Progress { .. }))
    {
        assert!(std::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // While it copies: the newest five INBOX messages expunged, five new ones delivered.
    let src = p.src.account("alice").unwrap();
    let mut s = testbed::login(&src).await.unwrap();
    let inbox = p
        .src
        .prefix()
        .trim_end_matches(p.src.separator())
        .to_owned();
    let inbox = if inbox.is_empty() {
        "INBOX".to_owned()
    } else {
        inbox
    };
    let mut before = s.folder_messages(&inbox).await.unwrap();
    before.sort_by_key(|m| m.uid);
    let expunged: Vec<blake3::Hash> = before.iter().rev().take(5).map(|m| m.body_hash).collect();
    for m in before.iter().rev().take(5) {
        s.expunge_uid(&inbox, m.uid).await.unwrap();
    }
    for i in 0..5 {
        let body = format!(
            "From: late@example.com\r\nSubject: arrived during the run {i}\r\nMessage-ID: <during-{i}@x>\r\n\r\nhello {i}\r\n"
        );
        testbed::append_message(
            &src,
            &inbox,
            body.as_bytes(),
            &["\\Seen"],
            1_700_000_000 + i,
        )
        .await
        .unwrap();
    }
    run.await
        .unwrap()
        .expect("the run copes with a changing source");
    // A delta picks up whatever arrived after the listing.
    p.quiet_engine(p.config()).run().await.expect("delta");

    let report = p.verify().await;
    assert_eq!(report.missing_count(), 0, "nothing lost:\n{report}");
    for f in &report.folders {
        assert!(f.mismatched.is_empty(), "{report}");
        for x in &f.extra {
            assert!(!x.duplicate, "no message twice:\n{report}");
            assert!(
                expunged.contains(&x.body_hash),
                "the only extras are messages expunged after they were copied:\n{report}"
            );
        }
    }
}
