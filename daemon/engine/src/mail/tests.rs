//! The mail engine against in-memory fakes (`crate::fakes`) and a real store in a temporary
//! directory: resume, recovery of APPENDs in doubt, UIDVALIDITY changes, placement, a full
//! mailbox, cuts, and a provider's upload allowance. No server, no timing.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use migrated_core::{Cause, ErrorKind, Flags, SpecialUse};

use super::Engine;
use crate::config::CopyConfig;
use crate::error::EngineError;
use crate::events::{Event, Observer, Side};
use crate::fakes::{FakeDestination, FakeSource, Mailbox, Shared, TempStore, body, lock};
use crate::stop::StopSignal;

type TestEngine = Engine<FakeSource, FakeDestination>;

/// One connection, batches of 5, pauses of a millisecond.
fn config() -> CopyConfig {
    let mut c = CopyConfig::new("job-alice");
    c.connections = 1;
    c.batch_messages = 5;
    c.initial_backoff = Duration::from_millis(1);
    c.max_backoff = Duration::from_millis(2);
    c
}

fn engine(src: &Shared, dst: FakeDestination, store: &TempStore, c: CopyConfig) -> TestEngine {
    engine_observed(src, dst, store, c, Arc::new(|_| {}))
}

fn engine_observed(
    src: &Shared,
    dst: FakeDestination,
    store: &TempStore,
    c: CopyConfig,
    observer: Observer,
) -> TestEngine {
    Engine::new(
        FakeSource(src.clone()),
        dst,
        store.store.clone(),
        c,
        observer,
    )
}

/// An observer that raises the run's stop when `when` says so, once the engine exists.
fn stopping_when(
    when: impl Fn(&Event) -> bool + Send + Sync + 'static,
) -> (Observer, Arc<OnceLock<StopSignal>>) {
    let stop: Arc<OnceLock<StopSignal>> = Arc::new(OnceLock::new());
    let s = stop.clone();
    let observer: Observer = Arc::new(move |e| {
        if when(&e)
            && let Some(stop) = s.get()
        {
            stop.stop();
        }
    });
    (observer, stop)
}

/// A source whose INBOX holds `n` messages, and an empty destination with an INBOX.
fn inbox_pair(n: u32) -> (Shared, Shared) {
    let src = Mailbox::new("", '/')
        .with_messages("INBOX", n, 100)
        .shared();
    let dst = Mailbox::new("", '/').folder("INBOX", None).shared();
    (src, dst)
}

/// Asserts the destination folder holds exactly the source folder's messages, each once.
/// The next run, with the default settings, completes; the destination's INBOX is then an
/// exact copy of the source's and `appended` messages were appended over all runs (none
/// twice). Its summary.
async fn next_run_completes_exactly(
    src: &Shared,
    dst: &Shared,
    store: &TempStore,
    appended: u32,
) -> crate::events::Summary {
    let summary = engine(src, FakeDestination::new(dst.clone()), store, config())
        .run()
        .await
        .expect("the next run completes");
    assert_exact(src, "INBOX", dst, "INBOX");
    assert_eq!(
        lock(dst).counts.appended,
        appended,
        "nothing appended twice"
    );
    summary
}

fn assert_exact(src: &Shared, from: &str, dst: &Shared, to: &str) {
    let mut want = lock(src).bodies(from);
    let mut got = lock(dst).bodies(to);
    want.sort();
    got.sort();
    let n = got.len();
    got.dedup();
    assert_eq!(got.len(), n, "{to}: a message is there twice");
    assert_eq!(got, want, "{to} holds {n} messages, {from} {}", want.len());
}

#[tokio::test]
async fn a_run_stopped_midway_resumes_with_the_rest_and_copies_nothing_twice() {
    let (src, dst) = inbox_pair(40);
    let store = TempStore::new("resume");
    let (observer, stop) =
        stopping_when(|e| matches!(e, Event::Progress { items_done, .. } if *items_done >= 10));
    let first = engine_observed(
        &src,
        FakeDestination::new(dst.clone()),
        &store,
        config(),
        observer,
    );
    let _ = stop.set(first.stop_handle());
    let ended = first.run().await;
    assert!(matches!(ended, Err(EngineError::Stopped)), "{ended:?}");
    let after_first = lock(&dst).bodies("INBOX").len();
    assert!(
        (10..40).contains(&after_first),
        "{after_first} copied before the stop"
    );

    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .expect("the second run completes");
    assert_eq!(summary.copied, 40 - after_first as u64);
    assert_eq!(summary.already_copied, after_first as u64);
    assert_exact(&src, "INBOX", &dst, "INBOX");
    assert_eq!(
        lock(&dst).counts.appended,
        40,
        "every message appended once"
    );
    let rows = summary.verification.expect("a run that copied verifies");
    assert!(rows.iter().all(|r| r.missing.is_empty()), "{rows:?}");

    // A third run finds nothing to do.
    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    assert_eq!((summary.copied, summary.already_copied), (0, 40));
    assert_eq!(lock(&dst).counts.appended, 40);
}

/// A file system the kernel stopped after an error can come back, once checked, without the
/// last write the store had synced: the records (and the intent) of the last batch are gone
/// while its messages are on the destination. The next run finds them by content.
#[tokio::test]
async fn messages_whose_record_the_store_lost_are_found_by_content_and_not_copied_again() {
    let (src, dst) = inbox_pair(40);
    let store = TempStore::new("lost-records");
    let (observer, stop) =
        stopping_when(|e| matches!(e, Event::Progress { items_done, .. } if *items_done >= 15));
    let first = engine_observed(
        &src,
        FakeDestination::new(dst.clone()),
        &store,
        config(),
        observer,
    );
    let _ = stop.set(first.stop_handle());
    let ended = first.run().await;
    assert!(matches!(ended, Err(EngineError::Stopped)), "{ended:?}");
    let after_first = lock(&dst).bodies("INBOX").len();
    assert!((15..40).contains(&after_first), "{after_first} copied");

    // The store loses the records of the last batch (5 messages, the highest destination UIDs).
    let key = store
        .store
        .folder_key(store.store.job_key("job-alice"), "INBOX");
    let mut records: Vec<_> = store.store.items(key).unwrap().into_iter().collect();
    records.sort_by_key(|(_, r)| r.dest_uid);
    records.truncate(records.len() - 5);
    store.store.replace_items(key, &records).unwrap();

    let summary = next_run_completes_exactly(&src, &dst, &store, 40).await;
    assert_eq!(summary.copied, 40 - after_first as u64);
    assert_eq!(summary.already_copied, after_first as u64);
    assert_eq!(store.store.items(key).unwrap().len(), 40);
}

#[tokio::test]
async fn an_append_whose_reply_was_lost_is_found_on_the_destination_and_not_sent_again() {
    let (src, dst) = inbox_pair(20);
    lock(&dst).faults.late_appends = 1;
    let store = TempStore::new("late-append");
    // One pass: the batch in doubt is left to the next run, its intent in the store.
    let mut c = config();
    c.max_passes = 1;
    let ended = engine(&src, FakeDestination::new(dst.clone()), &store, c)
        .run()
        .await;
    assert!(
        matches!(&ended, Err(EngineError::GaveUp { last, .. }) if last.contains("connection reset")),
        "{ended:?}"
    );
    assert_eq!(lock(&dst).counts.faults_fired, 1);
    // The lost reply's batch landed all the same: everything is on the destination.
    assert_exact(&src, "INBOX", &dst, "INBOX");
    let key = store
        .store
        .folder_key(store.store.job_key("job-alice"), "INBOX");
    assert_eq!(
        store.store.intents(key).unwrap().len(),
        1,
        "one batch in doubt"
    );

    let summary = next_run_completes_exactly(&src, &dst, &store, 20).await;
    assert_eq!((summary.copied, summary.already_copied), (0, 20));
    assert!(store.store.intents(key).unwrap().is_empty());
}

#[tokio::test]
async fn an_append_in_doubt_is_found_after_the_destination_renumbered_its_folder() {
    let (src, dst) = inbox_pair(10);
    let store = TempStore::new("late-append-renumbered");
    engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    // Ten more; their batch lands but its reply is lost, and the run stops there.
    for n in 11..=20 {
        let b = body("INBOX", n, 100);
        lock(&src).add("INBOX", b, Default::default());
    }
    lock(&dst).faults.late_appends = 1;
    let mut c = config();
    c.max_passes = 1;
    let ended = engine(&src, FakeDestination::new(dst.clone()), &store, c)
        .run()
        .await;
    assert!(ended.is_err(), "{ended:?}");
    let key = store
        .store
        .folder_key(store.store.job_key("job-alice"), "INBOX");
    assert_eq!(
        store.store.intents(key).unwrap().len(),
        1,
        "one batch in doubt"
    );
    // The server rebuilds its index (Courier after an unclean stop, say) and five recorded
    // copies are gone: the batch in doubt now has UIDs the ledger recorded for others.
    let gone: Vec<Vec<u8>> = (1..=5).map(|i| body("INBOX", i, 100)).collect();
    {
        let mut d = lock(&dst);
        let inbox = d.folders.get_mut("INBOX").unwrap();
        inbox.messages.retain(|_, m| !gone.contains(&m.body));
        d.renumber("INBOX", 1);
    }
    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    assert_exact(&src, "INBOX", &dst, "INBOX");
    assert_eq!((summary.copied, summary.already_copied), (5, 15));
}

#[tokio::test]
async fn an_append_the_server_was_still_storing_when_the_run_stopped_is_found_not_sent_again() {
    let (src, dst) = inbox_pair(20);
    // The batch's reply is lost and the server stores it only after the next look at the
    // folder: a resume that looked once would miss it and send it again.
    lock(&dst).faults.stored_at_open = Some(2);
    let store = TempStore::new("still-storing");
    let mut c = config();
    c.max_passes = 1;
    c.connections = 1;
    c.batch_messages = 100;
    let ended = engine(&src, FakeDestination::new(dst.clone()), &store, c)
        .run()
        .await;
    assert!(ended.is_err(), "{ended:?}");
    assert_eq!(lock(&dst).counts.faults_fired, 1);
    assert_eq!(lock(&dst).counts.appended, 0, "not stored yet");

    let summary = next_run_completes_exactly(&src, &dst, &store, 20).await;
    assert_eq!((summary.copied, summary.already_copied), (0, 20));
}

#[tokio::test]
async fn a_lost_append_reply_within_a_run_is_resolved_by_the_next_pass() {
    let (src, dst) = inbox_pair(23);
    lock(&dst).faults.late_appends = 2;
    let store = TempStore::new("late-append-pass");
    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .expect("the run completes in a later pass");
    assert_eq!(lock(&dst).counts.faults_fired, 2);
    assert_exact(&src, "INBOX", &dst, "INBOX");
    assert_eq!(lock(&dst).counts.appended, 23);
    let rows = summary.verification.expect("a run that copied verifies");
    assert!(rows.iter().all(|r| r.missing.is_empty()), "{rows:?}");
}

#[tokio::test]
async fn a_source_uidvalidity_change_rekeys_the_ledger_by_content_and_copies_only_new_mail() {
    let (src, dst) = inbox_pair(20);
    let store = TempStore::new("src-validity");
    engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    {
        let mut s = lock(&src);
        s.renumber("INBOX", 500);
        s.add("INBOX", body("INBOX", 21, 100), Flags::default());
        s.add("INBOX", body("INBOX", 22, 100), Flags::default());
    }
    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    assert_eq!((summary.copied, summary.already_copied), (2, 20));
    assert_exact(&src, "INBOX", &dst, "INBOX");
    assert_eq!(lock(&dst).counts.appended, 22);
}

#[tokio::test]
async fn a_destination_uidvalidity_change_finds_the_copies_by_content_and_recopies_what_is_gone() {
    let (src, dst) = inbox_pair(20);
    let store = TempStore::new("dst-validity");
    engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    let gone = body("INBOX", 7, 100);
    {
        let mut d = lock(&dst);
        d.renumber("INBOX", 1);
        let inbox = d.folders.get_mut("INBOX").unwrap();
        inbox.messages.retain(|_, m| m.body != gone);
    }
    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    assert_eq!((summary.copied, summary.already_copied), (1, 19));
    assert_exact(&src, "INBOX", &dst, "INBOX");
    let rows = summary.verification.unwrap();
    assert!(rows.iter().all(|r| r.missing.is_empty()), "{rows:?}");
}

#[tokio::test]
async fn folders_land_where_the_mapping_puts_them() {
    let src = Mailbox::new("INBOX.", '.')
        .with_messages("INBOX", 3, 10)
        .with_messages("INBOX.Gesendete Objekte", 2, 10)
        .with_messages("INBOX.Projekte.Übersicht", 2, 10)
        .with_messages("INBOX.Papierkorb", 1, 10)
        .with_messages("INBOX.Alle", 4, 10);
    let src = {
        let mut s = src;
        let role =
            |s: &mut Mailbox, f: &str, r| s.folders.get_mut(f).unwrap().special_use = Some(r);
        role(&mut s, "INBOX.Gesendete Objekte", SpecialUse::Sent);
        role(&mut s, "INBOX.Papierkorb", SpecialUse::Trash);
        role(&mut s, "INBOX.Alle", SpecialUse::All);
        s.shared()
    };
    let dst = Mailbox::new("", '/')
        .folder("INBOX", None)
        .folder("Sent Items", Some(SpecialUse::Sent))
        .shared();
    let store = TempStore::new("placement");
    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    assert_exact(&src, "INBOX", &dst, "INBOX");
    assert_exact(&src, "INBOX.Gesendete Objekte", &dst, "Sent Items");
    assert_exact(&src, "INBOX.Projekte.Übersicht", &dst, "Projekte/Übersicht");
    assert_exact(&src, "INBOX.Papierkorb", &dst, "Trash");
    let d = lock(&dst);
    let trash = &d.folders["Trash"];
    assert_eq!(trash.special_use, Some(SpecialUse::Trash));
    assert!(trash.subscribed, "subscriptions are copied");
    // The virtual folder is skipped, its messages not copied a second time.
    assert!(
        summary
            .skipped_folders
            .iter()
            .any(|(f, why)| f == "INBOX.Alle" && why.contains("\\All")),
        "{:?}",
        summary.skipped_folders
    );
    assert_eq!(d.counts.appended, 8);
    assert_eq!(summary.copied, 8);
}

#[tokio::test]
async fn a_full_mailbox_ends_the_run_with_the_quota_error_and_a_later_run_copies_the_rest() {
    let (src, dst) = inbox_pair(30);
    let one = body("INBOX", 1, 100).len() as u64;
    lock(&dst).faults.quota_bytes = Some(12 * one);
    let store = TempStore::new("quota");
    let ended = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await;
    let Err(e @ EngineError::MailboxFull(cause)) = &ended else {
        panic!("{ended:?}");
    };
    assert_eq!(cause.cause, Some(Cause::Quota));
    assert!(
        cause.message.contains("NO [OVERQUOTA] Quota exceeded"),
        "{cause}"
    );
    assert_eq!(
        (e.cause(), e.side(), e.kind()),
        (
            Some(Cause::Quota),
            Some(Side::Destination),
            ErrorKind::Permanent
        )
    );
    // Two batches of five fit; the third was refused whole and nothing after it was sent.
    assert_eq!(lock(&dst).bodies("INBOX").len(), 10);

    lock(&dst).faults.quota_bytes = None;
    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    assert_eq!((summary.copied, summary.already_copied), (20, 10));
    assert_exact(&src, "INBOX", &dst, "INBOX");
    assert_eq!(lock(&dst).counts.appended, 30);
}

#[tokio::test]
async fn a_message_refused_three_times_the_same_way_is_not_sent_again_until_a_reset() {
    let (src, dst) = inbox_pair(8);
    lock(&dst).faults.refuse_containing = Some(b"<7.INBOX@fake.example>".to_vec());
    let store = TempStore::new("refused-for-good");
    let mut sent = Vec::new();
    let mut reasons = Vec::new();
    for _ in 0..4 {
        let before = lock(&dst).counts.refused;
        let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
            .run()
            .await
            .unwrap();
        sent.push(lock(&dst).counts.refused - before);
        assert_eq!(summary.failed.len(), 1, "{:?}", summary.failed);
        assert_eq!(summary.failed[0].uid, 7);
        reasons.push(summary.failed[0].reason.clone());
    }
    // Sent (and refused) by each of the first three runs, not by the fourth.
    assert!(sent[..3].iter().all(|n| *n > 0) && sent[3] == 0, "{sent:?}");
    assert!(
        reasons[0].contains("refused 1 of 3 times"),
        "{}",
        reasons[0]
    );
    assert!(reasons[2].contains("refused for good"), "{}", reasons[2]);
    assert!(
        reasons[3].starts_with("refused for good, not sent again")
            && reasons[3].contains("NO Message contains invalid header")
            && reasons[3].contains("fixed at the source"),
        "{}",
        reasons[3]
    );
    assert_eq!(lock(&dst).bodies("INBOX").len(), 7);
    // Fixed on the server side and the job reset: the message is sent again and arrives.
    lock(&dst).faults.refuse_containing = None;
    store.store.reset_job("job-alice").unwrap();
    lock(&dst)
        .folders
        .get_mut("INBOX")
        .unwrap()
        .messages
        .clear();
    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_exact(&src, "INBOX", &dst, "INBOX");
}

#[tokio::test]
async fn connections_cut_mid_copy_are_retried_and_the_copy_ends_exact() {
    let (src, dst) = inbox_pair(60);
    let one = body("INBOX", 1, 100).len() as u64;
    lock(&src).faults.cut_after_bytes = Some(17 * one);
    lock(&dst).faults.cut_after_bytes = Some(33 * one);
    let store = TempStore::new("cuts");
    let mut c = config();
    c.connections = 3;
    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, c)
        .run()
        .await
        .expect("the run completes despite the cuts");
    assert_eq!(lock(&src).counts.faults_fired, 1);
    assert_eq!(lock(&dst).counts.faults_fired, 1);
    assert_exact(&src, "INBOX", &dst, "INBOX");
    // A cut APPEND stored nothing: every message was appended exactly once.
    assert_eq!(lock(&dst).counts.appended, 60);
    assert_eq!(summary.copied, 60);
    let rows = summary.verification.unwrap();
    assert!(rows.iter().all(|r| r.missing.is_empty()), "{rows:?}");
}

#[tokio::test]
async fn without_multiappend_messages_go_one_by_one_and_arrive_once() {
    let (src, dst) = inbox_pair(12);
    let store = TempStore::new("single-append");
    let mut destination = FakeDestination::new(dst.clone());
    destination.multiappend = false;
    engine(&src, destination, &store, config())
        .run()
        .await
        .unwrap();
    assert_exact(&src, "INBOX", &dst, "INBOX");
    assert_eq!(lock(&dst).counts.appends, 12);
}

#[tokio::test]
async fn an_upload_allowance_the_destination_reports_throttles_the_run() {
    let one = body("INBOX", 1, 100).len() as u64;
    for reported in [true, false] {
        let (src, dst) = inbox_pair(30);
        let store = TempStore::new("allowance");
        let mut destination = FakeDestination::new(dst.clone());
        let mut c = config();
        // Reached after two batches of five, checked before the third.
        let limit = 8 * one;
        if reported {
            destination.allowance = Some(limit);
        } else {
            // The job's own allowance, on a destination that reports none.
            c.daily_upload = Some(limit);
        }
        let counter = destination.counter.clone();
        let reasons = Arc::new(Mutex::new(Vec::new()));
        let seen = reasons.clone();
        let (observer, stop) = stopping_when(move |e| {
            if let Event::Throttled { reason, delay } = e {
                seen.lock().unwrap().push((reason.clone(), *delay));
                return true;
            }
            false
        });
        let run = engine_observed(&src, destination, &store, c, observer);
        let _ = stop.set(run.stop_handle());
        let ended = run.run().await;
        assert!(matches!(ended, Err(EngineError::Stopped)), "{ended:?}");
        let reasons = reasons.lock().unwrap();
        let (reason, delay) = reasons.first().expect("the run was throttled");
        assert!(
            reason.contains("alice@fake:993 has received")
                && reason.contains("daily upload allowance"),
            "{reason}"
        );
        assert!(*delay > Duration::ZERO && *delay <= Duration::from_secs(86_400));
        assert_eq!(lock(&dst).bodies("INBOX").len(), 10);
        let used = counter.check("alice@fake:993", 0).unwrap_err().0;
        let sent = lock(&dst).used_bytes();
        assert_eq!(
            used, sent,
            "what was sent is counted on the destination's meter"
        );
    }
}

#[tokio::test]
async fn a_run_profiles_its_time_by_phase_in_the_order_the_phases_ran() {
    let (src, dst) = inbox_pair(12);
    let store = TempStore::new("timings");
    let summary = engine(&src, FakeDestination::new(dst.clone()), &store, config())
        .run()
        .await
        .unwrap();
    let phases: Vec<&str> = summary.timings.iter().map(|t| t.phase.as_str()).collect();
    assert_eq!(
        phases,
        ["connect", "scan", "folders", "copy", "finalize", "verify"]
    );
    assert!(summary.timings.iter().all(|t| t.secs >= 0.0));
    // A run that changes nothing does not verify.
    let again = engine(&src, FakeDestination::new(dst), &store, config())
        .run()
        .await
        .unwrap();
    assert!(!again.timings.iter().any(|t| t.phase == "verify"));
}
