//! Exchange Online / Microsoft 365 as a source, in the Gmail emulator's spirit (no Exchange
//! runs here): the emulator read by the generic IMAP plugin, with Exchange's throttling
//! ([`testbed::gmail::Throttle`]: `NO Request is throttled. Suggested Backoff Time: N
//! milliseconds`, no response code) and, like Exchange, no CONDSTORE.
//!
//! Not emulated: Exchange's capability list and LIST shape, its BAD-then-BYE form of the
//! throttling reply, its per-user connection limit, and a destination's 35 MB limit.

use std::sync::Arc;
use std::time::Duration;

use migrated_engine::{CopyConfig, Engine, Event};
use migrated_imap::ImapDestination;
use migrated_store::{Store, StoreKey};
use testbed::gmail::{GmailEmulator, GmailOptions, SAMPLE_ADDRESS, Throttle, sample_mailbox};
use testbed::{Account, Dovecot, DovecotOptions, Layout, Tls, english_special_use};

use crate::common::beds::endpoint_of;

const PASSWORD: &str = "exchange-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_exchange_like_source_is_copied_exact_after_waiting_each_suggested_backoff() {
    let backoff = Duration::from_millis(400);
    let emulator = GmailEmulator::start_with(
        SAMPLE_ADDRESS,
        PASSWORD,
        sample_mailbox(40),
        GmailOptions {
            throttle: Some(Throttle { every: 4, backoff }),
            ..GmailOptions::default()
        },
    )
    .await
    .expect("emulator starts");
    let dovecot = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        ..DovecotOptions::default()
    })
    .await
    .expect("Dovecot starts");
    let src = Account {
        host: emulator.host().to_owned(),
        port: emulator.port(),
        user: SAMPLE_ADDRESS.to_owned(),
        password: PASSWORD.to_owned(),
        tls: Tls::Plain,
    };
    let dst = dovecot.account("alice").unwrap();
    let dir = std::env::temp_dir().join(format!("exchange-throttle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let throttled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let engine = |observer: migrated_engine::Observer| {
        let mut config = CopyConfig::new("job-exchange");
        // One connection: every command after a throttled one is this worker's, so the
        // emulator's log tells whether it waited.
        config.connections = 1;
        config.batch_messages = 5;
        config.initial_backoff = Duration::from_millis(50);
        Engine::new(
            testbed::plugins::imap_source(&endpoint_of(&src)),
            ImapDestination::new(endpoint_of(&dst)),
            Store::open(&dir.join("store"), StoreKey::from_bytes([42; 32])).expect("store"),
            config,
            observer,
        )
    };
    let summary = engine({
        let throttled = throttled.clone();
        Arc::new(move |e| {
            if let Event::Throttled { delay, reason } = e {
                throttled.lock().unwrap().push((delay, reason));
            }
        })
    })
    .run()
    .await
    .expect("the throttled copy finishes");
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);

    // The emulator throttled body fetches several times, and no command came back before the
    // suggested time was over.
    let log = emulator.throttle_log();
    let windows = log.iter().filter(|t| !t.early).count();
    assert!(windows >= 2, "{log:?}");
    assert!(
        log.iter().all(|t| !t.early),
        "a command came early: {log:?}"
    );
    assert!(log.iter().all(|t| t.command == "UID FETCH"), "{log:?}");
    // The engine said so, each time, with the server's figure as its pause.
    let told = throttled.lock().unwrap().clone();
    assert_eq!(told.len(), windows, "{told:?}");
    assert!(
        told.iter().all(|(delay, reason)| *delay == backoff
            && reason.contains("Request is throttled. Suggested Backoff Time: 400 milliseconds")),
        "{told:?}"
    );

    // Exact, folder by folder, read back without throttling.
    emulator.set_throttle(None);
    let mapping: Vec<(String, String)> = summary
        .per_folder
        .iter()
        // `[Gmail]` is the one container (\Noselect): nothing to read.
        .filter(|f| f.source != "[Gmail]")
        .map(|f| (f.source.clone(), f.destination.clone()))
        .collect();
    assert!(mapping.len() > 2, "{mapping:?}");
    let report = testbed::verify(&src, &dst, &mapping).await.unwrap();
    assert!(report.is_exact(), "emulator -> Dovecot differs:\n{report}");
    let copied = summary.copied;
    assert_eq!(
        copied,
        summary.per_folder.iter().map(|f| f.messages).sum::<u64>()
    );

    // No CONDSTORE: a delta lists the folders whole and copies nothing.
    let before = emulator.throttle_log().len();
    let delta = engine(Arc::new(|_| {})).run().await.expect("delta");
    assert_eq!((delta.copied, delta.already_copied), (0, copied));
    assert_eq!(emulator.throttle_log().len(), before);
    let _ = std::fs::remove_dir_all(&dir);
}
