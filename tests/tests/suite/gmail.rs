//! The Gmail source plugin, loaded from its `.so`, reading the Gmail emulator (X-GM-EXT-1) and
//! writing to a real Dovecot: one folder per label with each message uploaded once, or one copy
//! with labels as keywords; re-runs and label changes add no duplicates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::common::daemon::{Daemon, stdout};
use crate::common::pair;
use migrated_core::{Account, JobStatus, SettingValue};
use migrated_engine::{CopyConfig, Engine};
use migrated_imap::{AuthMethod, CertCheck, Endpoint, Secret, Security};
use migrated_plugin_api::host::{Plugin, PluginSource};
use migrated_store::{Store, StoreKey};
use testbed::gmail::{GmailEmulator, GmailMessage, Locale, SAMPLE_ADDRESS, sample_mailbox};
use testbed::{CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use};

const PASSWORD: &str = "gmail-secret";

fn gmail_plugin() -> Arc<Plugin> {
    static PLUGIN: OnceLock<Arc<Plugin>> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let path = testbed::plugins_dir().join("libmigrated_plugin_gmail.so");
            Arc::new(Plugin::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        })
        .clone()
}

fn gmail_account(e: &GmailEmulator, settings: &[(&str, SettingValue)]) -> Account {
    let mut account = Account::from(&Endpoint {
        host: e.host().to_owned(),
        port: e.port(),
        security: Security::Plain,
        cert_check: CertCheck::System,
        auth: AuthMethod::Login,
        user: SAMPLE_ADDRESS.to_owned(),
        secret: Secret::new(PASSWORD),
        admin: None,
        oauth: None,
        timeout: Duration::from_secs(30),
    });
    account.settings = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    account
}

async fn destination() -> Dovecot {
    Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        ..DovecotOptions::default()
    })
    .await
    .expect("destination Dovecot starts")
}

/// Where a message must land with one folder per label, on a destination with English
/// special-use names.
fn expected_folders(m: &GmailMessage) -> Vec<String> {
    if m.has_label("\\Trash") {
        return vec!["Trash".into()];
    }
    if m.has_label("\\Spam") {
        return vec!["Junk".into()];
    }
    let mut out = Vec::new();
    for (label, folder) in [
        ("\\Inbox", "INBOX"),
        ("\\Sent", "Sent"),
        ("\\Draft", "Drafts"),
    ] {
        if m.has_label(label) {
            out.push(folder.to_owned());
        }
    }
    out.extend(m.labels.iter().filter(|l| !l.starts_with('\\')).cloned());
    if out.is_empty() {
        out.push("Archive".into());
    }
    out
}

/// Body hashes per destination folder, every selectable folder included.
async fn destination_contents(dst: &Dovecot) -> BTreeMap<String, Vec<blake3::Hash>> {
    let mut s = testbed::login(&dst.account("alice").unwrap())
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for f in s.list_folders().await.unwrap() {
        if !f.selectable() {
            continue;
        }
        let mut hashes: Vec<blake3::Hash> = s
            .folder_messages(&f.name)
            .await
            .unwrap()
            .iter()
            .map(|m| m.body_hash)
            .collect();
        hashes.sort_by_key(|h| *h.as_bytes());
        out.insert(f.name, hashes);
    }
    out
}

fn expected_contents(messages: &[GmailMessage]) -> BTreeMap<String, Vec<blake3::Hash>> {
    let mut out: BTreeMap<String, Vec<blake3::Hash>> = BTreeMap::new();
    for m in messages {
        for f in expected_folders(m) {
            out.entry(f).or_default().push(blake3::hash(&m.body));
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|h| *h.as_bytes());
    }
    out
}

/// Distinct message files (inodes) in a maildir tree: a message copied on the server with
/// `UID COPY` is a hard link of the first copy, an uploaded one is a file of its own.
fn stored_files(maildir: &Path) -> usize {
    let mut inodes = HashSet::new();
    let mut stack = vec![maildir.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if dir.file_name().is_some_and(|n| n == "cur" || n == "new") {
                inodes.insert((meta.dev(), meta.ino()));
            }
        }
    }
    inodes.len()
}

fn assert_no_gmail_only_folders(contents: &BTreeMap<String, Vec<blake3::Hash>>) {
    for name in contents.keys() {
        for bad in [
            "All Mail",
            "Alle Nachrichten",
            "Important",
            "Wichtig",
            "Starred",
            "Markiert",
            "[Gmail]",
        ] {
            assert!(
                !name.contains(bad),
                "{name:?} is a copy of Gmail's own folder: {:?}",
                contents.keys()
            );
        }
    }
}

fn engine(
    e: &GmailEmulator,
    dst: &Dovecot,
    store: &Path,
    settings: &[(&str, SettingValue)],
) -> Engine<PluginSource, migrated_imap::ImapDestination> {
    let mut config = CopyConfig::new("gmail-job");
    config.initial_backoff = Duration::from_millis(100);
    config.max_backoff = Duration::from_secs(2);
    Engine::new(
        PluginSource::new(gmail_plugin(), gmail_account(e, settings)),
        migrated_imap::ImapDestination::new(crate::common::endpoint(dst)),
        Store::open(store, StoreKey::from_bytes([7; 32])).expect("store opens"),
        config,
        Arc::new(|_| {}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_become_folders_each_message_is_uploaded_once_and_deltas_add_no_duplicates() {
    let messages = sample_mailbox(150);
    let gmail = GmailEmulator::start(SAMPLE_ADDRESS, PASSWORD, messages.clone())
        .await
        .unwrap();
    let dst = destination().await;
    let store = std::env::temp_dir().join(format!("migrated-gmail-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);

    let summary = engine(&gmail, &dst, &store, &[])
        .run()
        .await
        .expect("run completes");
    let expected = expected_contents(&messages);
    let contents = destination_contents(&dst).await;
    assert_no_gmail_only_folders(&contents);
    for (folder, hashes) in &expected {
        assert_eq!(
            contents.get(folder),
            Some(hashes),
            "folder {folder:?}: destination differs from the labels"
        );
    }
    // Nested and non-ASCII labels made it, as folders of their own.
    for label in [
        "Work/Projects",
        "Überweisungen",
        "日本",
        "My Label",
        "Archive",
    ] {
        assert!(
            contents.get(label).is_some_and(|h| !h.is_empty()),
            "{label}: {:?}",
            contents.keys()
        );
    }
    let placements: usize = expected.values().map(Vec::len).sum();
    assert_eq!(summary.copied as usize, placements, "{summary:?}");
    // One file per Gmail message on the destination: every further label is a server-side copy.
    let maildir = dst.maildir("alice");
    assert_eq!(stored_files(&maildir), messages.len());
    assert!(
        placements > messages.len() + 20,
        "the sample has many multi-label messages"
    );

    // Starred mail is flagged on the destination.
    let mut s = testbed::login(&dst.account("alice").unwrap())
        .await
        .unwrap();
    let starred: HashSet<blake3::Hash> = messages
        .iter()
        .filter(|m| m.has_label("\\Starred") && !m.has_label("\\Trash") && !m.has_label("\\Spam"))
        .map(|m| blake3::hash(&m.body))
        .collect();
    assert!(!starred.is_empty());
    let mut flagged_seen = 0;
    for folder in contents.keys() {
        for m in s.folder_messages(folder).await.unwrap() {
            if starred.contains(&m.body_hash) {
                assert!(m.flags.iter().any(|f| f == "\\Flagged"), "{folder}: {m:?}");
                flagged_seen += 1;
            }
        }
    }
    assert!(flagged_seen >= starred.len());

    // A second run copies nothing.
    let again = engine(&gmail, &dst, &store, &[]).run().await.unwrap();
    assert_eq!(again.copied, 0, "{again:?}");
    assert_eq!(destination_contents(&dst).await, contents);

    // Gmail changes: a label added to an archived message, a new message with three labels.
    let archived = messages
        .iter()
        .find(|m| expected_folders(m) == ["Archive"])
        .expect("the sample has archived mail");
    assert!(gmail.add_label(archived.msgid, "Work"));
    let mut new = messages[0].clone();
    new.msgid = 9_000_000_000_000_000_001;
    new.labels = vec!["\\Inbox".into(), "Work".into(), "Überweisungen".into()];
    new.body = b"From: a@example.com\r\nTo: me@example.com\r\nSubject: new\r\nMessage-ID: <new@x>\r\n\r\nnew\r\n".to_vec();
    gmail.add_message(new.clone());
    let delta = engine(&gmail, &dst, &store, &[]).run().await.unwrap();
    assert_eq!(
        delta.copied, 4,
        "Work for the relabelled message, three for the new one"
    );
    let after = destination_contents(&dst).await;
    for (folder, hashes) in &after {
        let unique: HashSet<_> = hashes.iter().collect();
        assert_eq!(unique.len(), hashes.len(), "duplicates in {folder}");
    }
    let h = blake3::hash(&new.body);
    for folder in ["INBOX", "Work", "Überweisungen"] {
        assert!(after[folder].contains(&h), "{folder}");
    }
    assert!(after["Work"].contains(&blake3::hash(&archived.body)));
    assert_eq!(
        stored_files(&maildir),
        messages.len() + 1,
        "only the new message was uploaded"
    );
    let _ = std::fs::remove_dir_all(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_job_with_labels_as_keywords_copies_each_message_once_from_a_localized_gmail() {
    let messages = sample_mailbox(80);
    let gmail =
        GmailEmulator::start_localized(SAMPLE_ADDRESS, PASSWORD, messages.clone(), Locale::German)
            .await
            .unwrap();
    let p = pair(CorpusSpec {
        seed: 5,
        messages: 0,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let jobs = d.state.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let pass = |name: &str, secret: &str| {
        let f = jobs.join(name);
        std::fs::write(&f, secret).unwrap();
        f
    };
    let (s, t) = (
        pass("gmail.pass", PASSWORD),
        pass("dst.pass", p.dst.password("alice").unwrap()),
    );
    let job = jobs.join("gmail.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"gmail\"\n[source]\nplugin = \"gmail\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"{SAMPLE_ADDRESS}\"\npassword_file = \"{}\"\n\
             [source.settings]\nlabels = \"keywords\"\nimportant = true\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword_file = \"{}\"\n",
            gmail.port(),
            s.display(),
            p.dst.imap_port(),
            t.display()
        ),
    )
    .unwrap();
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    let done = d
        .wait_until(&id, "the Gmail job to finish", |s| {
            matches!(s.status, Some(JobStatus::Completed | JobStatus::Failed))
        })
        .await;
    assert_eq!(
        done.status,
        Some(JobStatus::Completed),
        "{done:?}\n{}",
        d.log()
    );

    let contents = destination_contents(&p.dst).await;
    assert_no_gmail_only_folders(&contents);
    let total: usize = contents.values().map(Vec::len).sum();
    assert_eq!(total, messages.len(), "one copy per message: {contents:?}");
    assert_eq!(done.items_done as usize, messages.len());
    let mut s = testbed::login(&p.dst.account("alice").unwrap())
        .await
        .unwrap();
    let mut keywords: HashMap<blake3::Hash, Vec<String>> = HashMap::new();
    for folder in contents.keys() {
        for m in s.folder_messages(folder).await.unwrap() {
            keywords.insert(m.body_hash, m.flags);
        }
    }
    for m in &messages {
        let flags = &keywords[&blake3::hash(&m.body)];
        for (label, keyword) in [
            ("My Label", "My_Label"),
            ("Überweisungen", "&ANw-berweisungen"),
            ("Work/Projects", "Work/Projects"),
            ("\\Important", "$Important"),
        ] {
            assert_eq!(
                m.has_label(label),
                flags.iter().any(|f| f == keyword),
                "{label} on message {}: {flags:?}",
                m.msgid
            );
        }
    }
    // Localized special folders were found by role.
    assert!(contents.get("Trash").is_some_and(|h| !h.is_empty()));
    assert!(contents.get("Sent").is_some_and(|h| !h.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmails_daily_download_limit_makes_the_job_wait_for_the_next_day_instead_of_failing() {
    const USER: &str = "limited@example.com";
    let mut messages = sample_mailbox(40);
    // Three messages of about 600 KB: more than the 1 MB allowance of this test.
    let filler: Vec<u8> = std::iter::repeat_n(b"x".repeat(76), 8_000)
        .flat_map(|l| l.into_iter().chain(*b"\r\n"))
        .collect();
    for m in messages.iter_mut().take(3) {
        m.body.extend_from_slice(&filler);
    }
    let gmail = GmailEmulator::start(USER, PASSWORD, messages.clone())
        .await
        .unwrap();
    let dst = destination().await;
    let store = std::env::temp_dir().join(format!("migrated-gmail-limit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let mut account = gmail_account(&gmail, &[("daily_download_mb", SettingValue::Int(1))]);
    account.user = USER.to_owned();
    let throttles = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = throttles.clone();
    let mut config = CopyConfig::new("gmail-limit");
    config.initial_backoff = Duration::from_millis(100);
    config.max_backoff = Duration::from_secs(1);
    config.max_passes = 2;
    let engine = Engine::new(
        PluginSource::new(gmail_plugin(), account),
        migrated_imap::ImapDestination::new(crate::common::endpoint(&dst)),
        Store::open(&store, StoreKey::from_bytes([8; 32])).unwrap(),
        config,
        Arc::new(move |e| {
            if let migrated_engine::Event::Throttled { delay, reason } = e {
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
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while throttles.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no throttle within 60 s"
        );
        assert!(!run.is_finished(), "the run ended instead of waiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Longer than the job's passes and backoffs allow: it waits, it does not give up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!run.is_finished(), "a throttled job must wait, not fail");
    let (delay, reason, at) = throttles.lock().unwrap()[0].clone();
    let to_midnight = 86_400 - at % 86_400;
    assert!(
        delay.as_secs() <= to_midnight + 1 && delay.as_secs() + 2 >= to_midnight,
        "waits until 00:00 UTC ({to_midnight} s): {delay:?}"
    );
    assert!(
        reason.contains("daily IMAP limit is 1 MB") && reason.contains(USER),
        "{reason}"
    );
    stop.stop();
    let ended = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("stops promptly when asked")
        .unwrap();
    assert!(
        matches!(ended, Err(migrated_engine::EngineError::Stopped)),
        "{ended:?}"
    );
    let copied: usize = destination_contents(&dst)
        .await
        .values()
        .map(Vec::len)
        .sum();
    assert!(
        copied > 0 && copied < messages.len(),
        "{copied} copied before the limit"
    );
    let _ = std::fs::remove_dir_all(&store);
}
