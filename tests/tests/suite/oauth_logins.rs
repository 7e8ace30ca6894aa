//! OAuth 2 logins end to end: the daemon obtaining and renewing tokens from the test bed's
//! authorization server (`testbed::oauth`), real Dovecots whose oauth2 passdb checks them
//! against its introspection endpoint, and the Gmail emulator checking them in-process.
//!
//! - A copy that lasts several token lifetimes (2 s each) from a Gmail emulator that ends a
//!   session whose token expired, to a Dovecot taking tokens only: exact, no failed message,
//!   tokens renewed along the way.
//! - A batch of three Workspace-style mailboxes from one service-account key (RFC 7523), rows
//!   without passwords.
//! - A refresh token revoked before the run: Waiting for credentials with what to do; a new
//!   one from `migratectl authorize` (the device grant, RFC 8628) and `migratectl delta` resume
//!   it to an exact copy.
//! - Microsoft 365 application access (client credentials): a batch whose destination logs
//!   in with the application's token for each mailbox; the mailbox it was not granted fails
//!   with the server's words and waits for credentials, the others complete.
//! - Contacts through a CardDAV front that takes bearer tokens as Google's CardDAV API does
//!   (`testbed::bearer_dav`, before real Radicales) on both sides: an address-book copy across
//!   several token lifetimes, and with tokens killed early, finishes exact; a revoked refresh
//!   token waits for credentials and `migratectl delta` with a new one completes it.
//! - No token, refresh token, client secret or key in argv, the log, the events or the store's
//!   files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, files_under, stdout};
use migrated_core::JobStatus;
use testbed::bearer_dav::{BearerDav, CARDDAV_SCOPE};
use testbed::gmail::{GmailEmulator, GmailOptions, SAMPLE_ADDRESS, sample_mailbox};
use testbed::oauth::{
    AppAccess, GMAIL_SCOPE, OAuthOptions, OAuthServer, OUTLOOK_APP_SCOPE, ServiceAccountOptions,
};
use testbed::radicale::{Radicale, RadicaleOptions};
use testbed::vcard::contacts_corpus;
use testbed::{
    Corpus, CorpusSpec, Dovecot, DovecotOAuth2, DovecotOptions, Layout, MasterUser,
    english_special_use, german_special_use,
};

const CLIENT: &str = "migrated-e2e.apps.example";
const CLIENT_SECRET: &str = "client-secret-e2e-5v8q";

static RUNS: AtomicU64 = AtomicU64::new(0);

fn daemon_dir(what: &str) -> PathBuf {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("migrated-oauth-{what}-{}-{n}", std::process::id()))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, text).unwrap();
    f
}

fn plain(port: u16) -> String {
    format!("host = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\n")
}

/// The `[side.oauth2]` table of a refresh-token grant at the test server.
fn refresh_grant(side: &str, server: &OAuthServer, secret: &Path, refresh: &Path) -> String {
    refresh_grant_for(side, server, secret, refresh, GMAIL_SCOPE)
}

/// The same, asking for `scope`.
fn refresh_grant_for(
    side: &str,
    server: &OAuthServer,
    secret: &Path,
    refresh: &Path,
    scope: &str,
) -> String {
    format!(
        "auth = \"oauth2\"\n[{side}.oauth2]\ntoken_url = \"{}\"\ndevice_authorization_url = \"{}\"\nscope = \"{scope}\"\nclient_id = \"{CLIENT}\"\nclient_secret_file = \"{}\"\nrefresh_token_file = \"{}\"\n",
        server.token_url(),
        server.device_authorization_url(),
        secret.display(),
        refresh.display()
    )
}

/// A corpus of `messages` for each user on `src`, seeded from `seed`.
fn corpora(src: &Dovecot, users: &[impl AsRef<str>], seed: u64, messages: usize) -> Vec<Corpus> {
    users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let spec = CorpusSpec {
                seed: seed + i as u64,
                messages,
                max_attachment: 0,
                size_factor: 1.0,
            };
            testbed::write_maildir(src, u.as_ref(), &spec).unwrap()
        })
        .collect()
}

/// The copy of `from`'s mailbox on `src` to `to`'s on `dst` is exact.
async fn assert_exact(src: &Dovecot, from: &str, dst: &Dovecot, to: &str, corpus: &Corpus) {
    let report = testbed::verify(
        &src.account(from).unwrap(),
        &dst.account(to).unwrap(),
        &corpus.mapping_to(dst),
    )
    .await
    .unwrap();
    assert!(report.is_exact(), "{from}:\n{report}");
}

/// None of `secrets` in the daemon's argv, its log, the job's events or any file of its state
/// directory (the store's are sealed).
fn assert_sealed(d: &Daemon, job: &str, secrets: &[&str]) {
    let argv = std::fs::read(format!("/proc/{}/cmdline", d.pid())).unwrap();
    let log = d.log();
    let events = stdout(&d.ctl(&["events", job]));
    for s in secrets {
        assert!(!s.is_empty());
        let needle = s.as_bytes();
        assert!(
            !argv.windows(needle.len()).any(|w| w == needle),
            "a secret in argv"
        );
        assert!(!log.contains(s), "a secret in the log:\n{log}");
        assert!(!events.contains(s), "a secret in the events:\n{events}");
        for f in files_under(&d.state) {
            // The credential files the test wrote for the daemon's jobs hold them, by design.
            if f.extension()
                .is_some_and(|e| e == "secret" || e == "refresh" || e == "json")
            {
                continue;
            }
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a secret in {}",
                f.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_across_several_token_lifetimes_finishes_exact_with_no_failed_message() {
    long_copy(Duration::from_secs(2), None).await;
}

/// Tokens the provider kills long before their announced hour (as a password reset or an
/// admin's "sign out" does): only the servers' refusals tell the daemon, which must then fetch
/// new ones instead of trusting its clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_the_provider_kills_early_are_replaced_when_the_servers_refuse_them() {
    long_copy(Duration::from_secs(3600), Some(Duration::from_secs(2))).await;
}

/// A copy throttled to last about ten seconds, with tokens living `lifetime` (or killed every
/// `kill_every`), from a Gmail emulator that ends sessions whose token died to a Dovecot that
/// takes tokens only.
async fn long_copy(lifetime: Duration, kill_every: Option<Duration>) {
    let server = OAuthServer::start(OAuthOptions {
        access_token_lifetime: lifetime,
        ..OAuthOptions::default()
    })
    .unwrap();
    server.register_client(CLIENT, CLIENT_SECRET);
    let messages = sample_mailbox(120);
    let bytes: usize = messages.iter().map(|m| m.body.len()).sum();
    let gmail = GmailEmulator::start_with(
        SAMPLE_ADDRESS,
        "not-a-token",
        messages.clone(),
        GmailOptions {
            oauth: Some(server.handle()),
            bye_on_token_expiry: true,
            ..GmailOptions::default()
        },
    )
    .await
    .unwrap();
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: vec![("alice".into(), "alice-own-password".into())],
        oauth2: Some(DovecotOAuth2::new(&server.handle())),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let mut d = Daemon::in_dir(daemon_dir("lifetimes"));
    d.start().await;
    let dir = d.state.join("jobs");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = write(&dir, "client.secret", CLIENT_SECRET);
    let src_rt = server.issue_refresh_token(CLIENT, SAMPLE_ADDRESS, GMAIL_SCOPE);
    let dst_rt = server.issue_refresh_token(CLIENT, "alice", GMAIL_SCOPE);
    let src_file = write(&dir, "src.refresh", &src_rt);
    let dst_file = write(&dir, "dst.refresh", &dst_rt);
    // Throttled so that the run lasts about five token lifetimes.
    let mbps = bytes as f64 / 1_000_000.0 / 10.0;
    let job = write(
        &dir,
        "lifetimes.toml",
        &format!(
            "name = \"lifetimes\"\n[source]\nplugin = \"gmail\"\n{}user = \"{SAMPLE_ADDRESS}\"\n{}\
             [source.settings]\nlabels = \"keywords\"\n\
             [destination]\n{}user = \"alice\"\n{}\
             [limits]\nmax_mbps = {mbps}\n",
            plain(gmail.port()),
            refresh_grant("source", &server, &secret, &src_file),
            plain(dst.imap_port()),
            refresh_grant("destination", &server, &secret, &dst_file),
        ),
    );
    let started = Instant::now();
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    let killer = kill_every.map(|every| {
        let handle = server.handle();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                handle.expire_access_tokens();
            }
        })
    });
    let done = d
        .wait_until(&id, "the job to finish", |s| {
            s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    let took = started.elapsed();
    if let Some(k) = killer {
        k.abort();
    }
    assert_eq!(
        done.status,
        Some(JobStatus::Completed),
        "{done:?}\n{}",
        d.log()
    );
    assert_eq!(done.items_done as usize, messages.len());
    // Every message once at the destination.
    let mut s = testbed::login(&dst.account("alice").unwrap())
        .await
        .unwrap();
    let mut hashes = Vec::new();
    for folder in s.list_folders().await.unwrap() {
        if folder
            .attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("\\Noselect"))
        {
            continue;
        }
        for m in s.folder_messages(&folder.name).await.unwrap() {
            hashes.push(m.body_hash);
        }
    }
    hashes.sort_by_key(|h| *h.as_bytes());
    let mut expected: Vec<_> = messages.iter().map(|m| blake3::hash(&m.body)).collect();
    expected.sort_by_key(|h| *h.as_bytes());
    assert_eq!(hashes, expected, "each message exactly once");
    // The run outlived its tokens, and new ones were fetched on the way.
    let lifetimes = took.as_secs_f64() / kill_every.unwrap_or(lifetime).as_secs_f64();
    let c = server.counters();
    assert!(
        lifetimes >= 3.0,
        "the run took {took:?}: too short to outlive tokens"
    );
    assert!(
        c.refresh_grants >= 4,
        "only {} refreshes over {lifetimes:.1} token lifetimes: {c:?}",
        c.refresh_grants
    );
    assert_sealed(&d, &id, &[CLIENT_SECRET, &src_rt, &dst_rt]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_three_workspace_mailboxes_copies_from_one_service_account_key() {
    let server = OAuthServer::start(OAuthOptions::default()).unwrap();
    let users: Vec<String> = (1..=3).map(|i| format!("staff{i}@example.com")).collect();
    // The source takes tokens only for its users (Workspace); the destination takes its
    // administrator on behalf of them, so no file holds any user's password.
    let src = Dovecot::start(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        users: users
            .iter()
            .map(|u| (u.clone(), format!("unused-{u}")))
            .collect(),
        oauth2: Some(DovecotOAuth2::new(&server.handle())),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: users
            .iter()
            .map(|u| (u.clone(), format!("unused-{u}")))
            .collect(),
        master: Some(MasterUser {
            user: "admin".into(),
            password: "dest-admin-3k9".into(),
            refused: Vec::new(),
        }),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let corpora = corpora(&src, &users, 900, 20);
    let mut d = Daemon::in_dir(daemon_dir("service-account"));
    d.start().await;
    let dir = d.state.join("batches");
    std::fs::create_dir_all(&dir).unwrap();
    let key = server
        .register_service_account(
            &dir,
            ServiceAccountOptions {
                users: Some(users.clone()),
                ..ServiceAccountOptions::gmail("migration@project.iam.gserviceaccount.com")
            },
        )
        .unwrap();
    let key_text = std::fs::read_to_string(&key.path).unwrap();
    let admin_pass = write(&dir, "admin.secret", "dest-admin-3k9");
    let template = write(
        &dir,
        "staff.toml",
        &format!(
            "[source]\n{}auth = \"oauth2\"\n[source.oauth2]\ngrant = \"service-account\"\nmechanism = \"xoauth2\"\nscope = \"{GMAIL_SCOPE}\"\nservice_account_key_file = \"{}\"\n\
             [destination]\n{}admin_user = \"admin\"\nadmin_password_file = \"{}\"\n",
            plain(src.imap_port()),
            key.path.display(),
            plain(dst.imap_port()),
            admin_pass.display()
        ),
    );
    let mut csv = String::from("EmailAddress,UserName\n");
    for u in &users {
        csv.push_str(&format!("{u},{u}\n"));
    }
    let csv = write(&dir, "staff.csv", &csv);
    d.create_batch("staff", &csv, &template);
    let jobs = d.wait_batch("staff", 3, JobStatus::is_finished).await;
    for j in &jobs {
        assert_eq!(j["status"], "Completed", "{j}\n{}", d.log());
    }
    for (u, corpus) in users.iter().zip(&corpora) {
        assert_exact(&src, u, &dst, u, corpus).await;
    }
    let c = server.counters();
    assert!(
        c.jwt_bearer_grants >= 3,
        "one token per mailbox at least: {c:?}"
    );
    assert_eq!(c.refresh_grants + c.client_credentials_grants, 0, "{c:?}");
    // The key's private part, whole or any line of it, is nowhere in clear.
    let private: Vec<&str> = key_text
        .lines()
        .filter(|l| l.len() > 40 && !l.contains("BEGIN") && !l.contains("END"))
        .collect();
    let probe: Vec<&str> = private.iter().take(3).copied().collect();
    let id = jobs[0]["id"].as_str().unwrap().to_owned();
    assert_sealed(&d, &id, &probe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_waits_for_credentials_and_resumes_after_delta_with_a_new_one() {
    let server = OAuthServer::start(OAuthOptions::default()).unwrap();
    server.register_client(CLIENT, CLIENT_SECRET);
    let src = Dovecot::start(DovecotOptions {
        users: vec![("alice".into(), "alice-unused".into())],
        oauth2: Some(DovecotOAuth2::new(&server.handle())),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        users: vec![("alice".into(), "alice-dest-7m2".into())],
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let corpus = corpora(&src, &["alice"], 77, 30).remove(0);
    let mut d = Daemon::in_dir(daemon_dir("revoked"));
    d.start().await;
    let dir = d.state.join("jobs");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = write(&dir, "client.secret", CLIENT_SECRET);
    let old = server.issue_refresh_token(CLIENT, "alice", GMAIL_SCOPE);
    let old_file = write(&dir, "old.refresh", &old);
    let dst_pass = write(&dir, "dst.secret", "alice-dest-7m2");
    let job = write(
        &dir,
        "alice.toml",
        &format!(
            "name = \"alice\"\n[source]\n{}user = \"alice\"\n{}[destination]\n{}user = \"alice\"\npassword_file = \"{}\"\n",
            plain(src.imap_port()),
            refresh_grant("source", &server, &secret, &old_file),
            plain(dst.imap_port()),
            dst_pass.display()
        ),
    );
    // The user revokes the access (a password change, "remove access" in their account).
    assert!(server.revoke_refresh_token(&old));
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    let waiting = d
        .wait_until(&id, "the job to wait for credentials", |s| {
            s.status == Some(JobStatus::WaitingForCredentials)
                || s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    assert_eq!(
        waiting.status,
        Some(JobStatus::WaitingForCredentials),
        "{waiting:?}\n{}",
        d.log()
    );
    let events = stdout(&d.ctl(&["events", &id]));
    assert!(
        events.contains("invalid_grant")
            && events.contains("refresh token")
            && events.contains("migratectl authorize")
            && events.contains(&format!("migratectl delta {}", "alice")),
        "{events}"
    );

    // A new refresh token by the device grant: migratectl prints a code, the user approves it.
    let new_file = dir.join("new.refresh");
    let authorize = d
        .ctl_command(&[
            "authorize",
            job.to_str().unwrap(),
            "--side",
            "source",
            "--out",
            new_file.to_str().unwrap(),
            "--wait-secs",
            "60",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(code) = server.pending_user_codes().pop() {
            break code;
        }
        assert!(Instant::now() < deadline, "no device code asked for");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(server.approve_device(&code, "alice"));
    let out = authorize.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    // The code as users type it (the bed lists it without its dash).
    assert!(
        said.replace('-', "").contains(&code) && said.contains(&server.verification_url()),
        "{said}"
    );
    let new = std::fs::read_to_string(&new_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(new, old);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&new_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = d.ctl(&[
        "delta",
        &id,
        "--source-password-file",
        new_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = d
        .wait_until(&id, "the job to finish", |s| {
            s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    assert_eq!(
        done.status,
        Some(JobStatus::Completed),
        "{done:?}\n{}",
        d.log()
    );
    assert_exact(&src, "alice", &dst, "alice", &corpus).await;
    assert_sealed(&d, &id, &[CLIENT_SECRET, &old, &new]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applications_token_opens_each_granted_mailbox_and_a_mailbox_not_granted_waits() {
    let server = OAuthServer::start(OAuthOptions::default()).unwrap();
    const APP: &str = "00000000-0000-4000-8000-00000000app1";
    const APP_SECRET: &str = "app-secret-m365-2w7";
    server.register_client(APP, APP_SECRET);
    let users = ["ann", "ben", "cat"];
    let src = Dovecot::start(DovecotOptions {
        users: users
            .iter()
            .map(|u| ((*u).to_owned(), format!("src-{u}-pw")))
            .collect(),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    // Exchange Online: the application's service principal has FullAccess to ann and ben.
    let mail = |u: &str| format!("{u}@contoso.example");
    let granted = AppAccess::Mailboxes(vec![mail("ann"), mail("ben")]);
    server.grant_app_access(APP, granted.clone());
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        users: users
            .iter()
            .map(|u| (mail(u), format!("dst-{u}-pw")))
            .collect(),
        oauth2: Some(DovecotOAuth2::new(&server.handle()).with_app_access(granted)),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let corpora = corpora(&src, &users, 950, 15);
    let mut d = Daemon::in_dir(daemon_dir("application"));
    d.start().await;
    let dir = d.state.join("batches");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = write(&dir, "app.secret", APP_SECRET);
    let template = write(
        &dir,
        "m365.toml",
        &format!(
            "[source]\n{}[destination]\n{}auth = \"oauth2\"\n[destination.oauth2]\ngrant = \"client-credentials\"\ntoken_url = \"{}\"\nscope = \"{OUTLOOK_APP_SCOPE}\"\nclient_id = \"{APP}\"\nclient_secret_file = \"{}\"\n",
            plain(src.imap_port()),
            plain(dst.imap_port()),
            server.token_url(),
            secret.display()
        ),
    );
    let mut csv = String::from("EmailAddress,UserName,Password\n");
    for u in users {
        csv.push_str(&format!("{},{u},src-{u}-pw\n", mail(u)));
    }
    let csv = write(&dir, "m365.csv", &csv);
    d.create_batch("m365", &csv, &template);
    let jobs = d
        .wait_batch("m365", 3, |s| {
            s.is_finished() || s == JobStatus::WaitingForCredentials
        })
        .await;
    for j in &jobs {
        let name = j["name"].as_str().unwrap();
        let expected = if name.ends_with("/cat@contoso.example") {
            "WaitingForCredentials"
        } else {
            "Completed"
        };
        assert_eq!(j["status"], expected, "{j}\n{}", d.log());
    }
    for (u, corpus) in users.iter().zip(&corpora).take(2) {
        assert_exact(&src, u, &dst, &mail(u), corpus).await;
    }
    let cat = jobs
        .iter()
        .find(|j| {
            j["name"]
                .as_str()
                .unwrap()
                .ends_with("/cat@contoso.example")
        })
        .unwrap();
    let events = stdout(&d.ctl(&["events", cat["id"].as_str().unwrap()]));
    assert!(
        events.contains("refused the login of \"cat@contoso.example\"")
            && events.contains("AUTHENTICATIONFAILED")
            && events.contains("IMAP.AccessAsApp"),
        "{events}"
    );
    let c = server.counters();
    assert!(c.client_credentials_grants >= 1, "{c:?}");
    assert_eq!(c.refresh_grants + c.jwt_bearer_grants, 0, "{c:?}");
    assert_sealed(&d, cat["id"].as_str().unwrap(), &[APP_SECRET]);
}

/// Two Radicales (alice on each), the source seeded with `n` contacts in three books, each
/// behind a bearer CardDAV front checking tokens at `server`.
struct DavPair {
    src: Radicale,
    dst: Radicale,
    src_front: BearerDav,
    dst_front: BearerDav,
}

impl DavPair {
    fn start(server: &OAuthServer, n: usize, seed: u64) -> Self {
        let corpus = contacts_corpus(n, seed);
        let src = Radicale::start(RadicaleOptions::default()).unwrap();
        let dst = Radicale::start(RadicaleOptions::default()).unwrap();
        let (a, b) = (n / 3, 2 * n / 3);
        src.seed(
            "alice",
            &[
                ("family", "Familie", &corpus[..a]),
                ("work", "Arbeit & Co", &corpus[a..b]),
                ("sports", "Sport", &corpus[b..]),
            ],
        );
        let src_front = BearerDav::start(&src, &server.introspection_url()).unwrap();
        let dst_front = BearerDav::start(&dst, &server.introspection_url()).unwrap();
        Self {
            src,
            dst,
            src_front,
            dst_front,
        }
    }

    /// A contacts job between the fronts, each side with its refresh-token file.
    fn job(
        &self,
        dir: &Path,
        name: &str,
        server: &OAuthServer,
        secret: &Path,
        (src_rt, dst_rt): (&Path, &Path),
    ) -> PathBuf {
        write(
            dir,
            &format!("{name}.toml"),
            &format!(
                "name = \"{name}\"\n[source]\nplugin = \"carddav\"\n{}user = \"alice\"\n{}\
                 [destination]\n{}user = \"alice\"\n{}",
                plain(self.src_front.port()),
                refresh_grant_for("source", server, secret, src_rt, CARDDAV_SCOPE),
                plain(self.dst_front.port()),
                refresh_grant_for("destination", server, secret, dst_rt, CARDDAV_SCOPE),
            ),
        )
    }

    /// Every book and contact of the source at the destination, byte for byte as Radicale
    /// serves them, and nothing else.
    fn assert_exact(&self, n: usize) {
        let before = self.src.snapshot("alice");
        assert_eq!(before.values().map(|b| b.len()).sum::<usize>(), n);
        assert_eq!(self.dst.snapshot("alice"), before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_book_copy_through_bearer_carddav_across_several_token_lifetimes_finishes_exact()
{
    contacts_copy(Duration::from_secs(1), None).await;
}

/// Tokens killed long before their announced hour: only the fronts' 401 invalid_token tell
/// the daemon (the plugin's requests and the sink's), which fetches new ones and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carddav_tokens_killed_early_are_replaced_when_the_server_answers_invalid_token() {
    contacts_copy(Duration::from_secs(3600), Some(Duration::from_millis(700))).await;
}

async fn contacts_copy(lifetime: Duration, kill_every: Option<Duration>) {
    const N: usize = 150;
    let server = OAuthServer::start(OAuthOptions {
        access_token_lifetime: lifetime,
        ..OAuthOptions::default()
    })
    .unwrap();
    server.register_client(CLIENT, CLIENT_SECRET);
    let pair = DavPair::start(&server, N, 31);
    // The destination's requests (one PUT per contact, one after another) take 30 ms more
    // each: the copy lasts at least 4.5 s, several token lifetimes, on any machine.
    pair.dst_front.set_delay(Duration::from_millis(30));
    let mut d = Daemon::in_dir(daemon_dir("carddav-lifetimes"));
    d.start().await;
    let dir = d.state.join("jobs");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = write(&dir, "client.secret", CLIENT_SECRET);
    let src_rt = server.issue_refresh_token(CLIENT, "alice", CARDDAV_SCOPE);
    let dst_rt = server.issue_refresh_token(CLIENT, "alice", CARDDAV_SCOPE);
    let src_file = write(&dir, "src.refresh", &src_rt);
    let dst_file = write(&dir, "dst.refresh", &dst_rt);
    let job = pair.job(&dir, "contacts", &server, &secret, (&src_file, &dst_file));
    let started = Instant::now();
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    let killer = kill_every.map(|every| {
        let handle = server.handle();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                handle.expire_access_tokens();
            }
        })
    });
    let done = d
        .wait_until(&id, "the job to finish", |s| {
            s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    let took = started.elapsed();
    if let Some(k) = killer {
        k.abort();
    }
    assert_eq!(
        done.status,
        Some(JobStatus::Completed),
        "{done:?}\n{}",
        d.log()
    );
    assert_eq!((done.items_total, done.items_done), (N as u64, N as u64));
    pair.assert_exact(N);
    // Every request carried a token (none went without), the run outlived its tokens and new
    // ones were fetched on the way.
    let (s, t) = (pair.src_front.counters(), pair.dst_front.counters());
    assert_eq!((s.no_token, t.no_token), (0, 0), "{s:?} {t:?}");
    assert!(s.forwarded > 0 && t.forwarded as usize >= N, "{s:?} {t:?}");
    let lifetimes = took.as_secs_f64() / kill_every.unwrap_or(lifetime).as_secs_f64();
    assert!(
        lifetimes >= 3.0,
        "the run took {took:?}: too short to outlive tokens"
    );
    let c = server.counters();
    assert!(
        c.refresh_grants >= 4,
        "only {} refreshes over {lifetimes:.1} token lifetimes: {c:?}",
        c.refresh_grants
    );
    if kill_every.is_some() {
        // The servers' refusals, not the clock, made the daemon renew.
        assert!(
            s.invalid_token + t.invalid_token >= 1,
            "no token was refused: {s:?} {t:?}"
        );
    }
    assert_sealed(&d, &id, &[CLIENT_SECRET, &src_rt, &dst_rt]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_carddav_refresh_token_waits_for_credentials_and_delta_with_a_new_one_completes()
{
    const N: usize = 30;
    let server = OAuthServer::start(OAuthOptions::default()).unwrap();
    server.register_client(CLIENT, CLIENT_SECRET);
    let pair = DavPair::start(&server, N, 47);
    let mut d = Daemon::in_dir(daemon_dir("carddav-revoked"));
    d.start().await;
    let dir = d.state.join("jobs");
    std::fs::create_dir_all(&dir).unwrap();
    let secret = write(&dir, "client.secret", CLIENT_SECRET);
    let src_rt = server.issue_refresh_token(CLIENT, "alice", CARDDAV_SCOPE);
    let old = server.issue_refresh_token(CLIENT, "alice", CARDDAV_SCOPE);
    let src_file = write(&dir, "src.refresh", &src_rt);
    let old_file = write(&dir, "old.refresh", &old);
    let job = pair.job(&dir, "book", &server, &secret, (&src_file, &old_file));
    // The user takes the destination's access away.
    assert!(server.revoke_refresh_token(&old));
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    let waiting = d
        .wait_until(&id, "the job to wait for credentials", |s| {
            s.status == Some(JobStatus::WaitingForCredentials)
                || s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    assert_eq!(
        waiting.status,
        Some(JobStatus::WaitingForCredentials),
        "{waiting:?}\n{}",
        d.log()
    );
    let events = stdout(&d.ctl(&["events", &id]));
    assert!(
        events.contains("invalid_grant")
            && events.contains("refresh token")
            && events.contains("--side destination")
            && events.contains("migratectl delta book --destination-password-file"),
        "{events}"
    );
    assert_eq!(
        pair.dst.count("alice"),
        0,
        "nothing written without a token"
    );
    // While it waits, its sealed record holds the source's refresh token and the client's
    // secret: never in clear.
    assert_sealed(&d, &id, &[CLIENT_SECRET, &src_rt, &old]);

    let new = server.issue_refresh_token(CLIENT, "alice", CARDDAV_SCOPE);
    let new_file = write(&dir, "new.refresh", &new);
    let out = d.ctl(&[
        "delta",
        &id,
        "--destination-password-file",
        new_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = d
        .wait_until(&id, "the job to finish", |s| {
            s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    assert_eq!(
        done.status,
        Some(JobStatus::Completed),
        "{done:?}\n{}",
        d.log()
    );
    pair.assert_exact(N);
    assert_sealed(&d, &id, &[CLIENT_SECRET, &src_rt, &old, &new]);
}
