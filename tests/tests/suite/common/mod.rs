//! Shared set-up of the engine's end-to-end tests: two private Dovecots with different layouts
//! and localized special-use names, a corpus on the source, and the engine pointed at both.

#![allow(dead_code, unreachable_pub)]

pub mod beds;
pub mod daemon;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use migrated_engine::{CopyConfig, Engine, Event, Observer};
use migrated_imap::{AuthMethod, CertCheck, Endpoint, ImapDestination, Secret, Security};
use migrated_plugin_api::host::PluginSource;
use migrated_store::Store;
use testbed::{
    Corpus, CorpusSpec, Dovecot, DovecotOptions, Layout, VerifyReport, english_special_use,
    german_special_use,
};

/// Source (Maildir++, `INBOX.` prefix, German special-use names) and destination (LAYOUT=fs,
/// `/` separator, English names), a corpus on the source, and a fresh store directory.
pub struct Pair {
    pub src: Dovecot,
    pub dst: Dovecot,
    pub corpus: Corpus,
    pub store_dir: PathBuf,
}

static STORES: AtomicU64 = AtomicU64::new(0);

pub async fn pair(spec: CorpusSpec) -> Pair {
    pair_with(spec, None, None).await
}

/// Capabilities of a Dovecot 2.3 without CONDSTORE and QRESYNC.
pub const WITHOUT_CONDSTORE: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY \
    THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN \
    NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS \
    BINARY MOVE LITERAL+ SPECIAL-USE";

/// As [`pair`], with a storage quota (bytes) for the destination user and the source's
/// capabilities replaced.
pub async fn pair_with(
    spec: CorpusSpec,
    quota_bytes: Option<u64>,
    source_capability: Option<&str>,
) -> Pair {
    let src = Dovecot::start(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        imap_capability: source_capability.map(str::to_owned),
        ..DovecotOptions::default()
    })
    .await
    .expect("source Dovecot starts");
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        quota_bytes,
        ..DovecotOptions::default()
    })
    .await
    .expect("destination Dovecot starts");
    let corpus = testbed::write_maildir(&src, "alice", &spec).expect("corpus written");
    let store_dir = std::env::temp_dir().join(format!(
        "migrated-e2e-store-{}-{}",
        std::process::id(),
        STORES.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&store_dir);
    Pair {
        src,
        dst,
        corpus,
        store_dir,
    }
}

/// The account `alice` of an instance, on its plain port without TLS (loopback only).
pub fn endpoint(d: &Dovecot) -> Endpoint {
    Endpoint {
        host: d.host().to_owned(),
        port: d.imap_port(),
        security: Security::Plain,
        cert_check: CertCheck::System,
        auth: AuthMethod::Login,
        user: "alice".into(),
        secret: Secret::new(d.password("alice").expect("alice exists")),
        admin: None,
        oauth: None,
        timeout: Duration::from_secs(30),
    }
}

/// Counts events so tests can check what the engine reported.
#[derive(Default)]
pub struct Recorder {
    pub events: std::sync::Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn observer(self: &Arc<Self>) -> Observer {
        let me = self.clone();
        Arc::new(move |e| me.events.lock().unwrap().push(e))
    }
}

impl Pair {
    pub fn config(&self) -> CopyConfig {
        let mut c = CopyConfig::new("job-alice");
        c.initial_backoff = Duration::from_millis(100);
        c.max_backoff = Duration::from_secs(2);
        c
    }

    pub fn store(&self) -> Store {
        Store::open(
            &self.store_dir,
            migrated_store::StoreKey::from_bytes([42; 32]),
        )
        .expect("store opens")
    }

    pub fn engine(
        &self,
        config: CopyConfig,
        observer: Observer,
    ) -> Engine<PluginSource, ImapDestination> {
        Engine::new(
            testbed::plugins::imap_source(&endpoint(&self.src)),
            ImapDestination::new(endpoint(&self.dst)),
            self.store(),
            config,
            observer,
        )
    }

    pub fn quiet_engine(&self, config: CopyConfig) -> Engine<PluginSource, ImapDestination> {
        self.engine(config, Arc::new(|_| {}))
    }

    /// Verifies every corpus folder against where a correct migration puts it.
    pub async fn verify(&self) -> VerifyReport {
        let mapping = self.corpus.mapping_to(&self.dst);
        testbed::verify(
            &self.src.account("alice").unwrap(),
            &self.dst.account("alice").unwrap(),
            &mapping,
        )
        .await
        .expect("verifier runs")
    }

    pub async fn assert_exact(&self) {
        let report = self.verify().await;
        assert!(
            report.is_exact(),
            "destination differs from source:\n{report}"
        );
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}

pub fn small_corpus(seed: u64) -> CorpusSpec {
    CorpusSpec {
        seed,
        messages: 400,
        max_attachment: 0,
        size_factor: 1.0,
    }
}
