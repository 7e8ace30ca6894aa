//! What the end-to-end tests against other servers (Courier, Cyrus) share: a job file between
//! two accounts, the one-shot `migrated migrate` run, killed with SIGKILL mid-copy, resumed
//! and run again, and the counts its summary line gives.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testbed::Account;

use crate::common::daemon::binary;

/// A job file from `src` to `dst` (plain IMAP on loopback), passwords in 0600 files beside it.
pub fn write_job(dir: &Path, src: &Account, dst: &Account, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut sides = String::new();
    for (section, acct) in [("source", src), ("destination", dst)] {
        let p = dir.join(format!("{section}.pass"));
        std::fs::write(&p, format!("{}\n", acct.password)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        sides.push_str(&format!(
            "\n[{section}]\nhost = \"{}\"\nport = {}\nsecurity = \"plain\"\nuser = \"{}\"\npassword_file = \"{}\"\n",
            acct.host,
            acct.port,
            acct.user,
            p.display()
        ));
    }
    let path = dir.join("job.toml");
    std::fs::write(&path, format!("id = \"beds\"\n{sides}{extra}")).unwrap();
    path
}

/// What one `migrated migrate` run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The number of failed messages from the summary line.
    pub fn failed(&self) -> u64 {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.contains(" failed, in "))
            .unwrap_or_else(|| panic!("no summary line in:\n{}", self.stdout));
        let head = &line[..line.find(" failed, in ").unwrap()];
        head.rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap()
    }

    /// (copied, already there) from the summary line.
    pub fn counts(&self) -> (u64, u64) {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.contains(" messages copied ("))
            .unwrap_or_else(|| panic!("no summary line in:\n{}\n{}", self.stdout, self.stderr));
        let number_before = |word: &str| -> u64 {
            let head = &line[..line
                .find(word)
                .unwrap_or_else(|| panic!("{word:?} in {line}"))];
            head.trim_end()
                .rsplit([' ', ','])
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a number before {word:?} in {line}"))
        };
        (
            number_before(" messages copied"),
            number_before(" already there"),
        )
    }
}

/// Runs `migrated migrate` to its end.
pub fn migrate(job: &Path, store: &Path) -> Run {
    let out = Command::new(binary("migrated"))
        .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
        .args(["migrate", "--quiet", "--job"])
        .arg(job)
        .arg("--store")
        .arg(store)
        .output()
        .expect("migrated runs");
    Run {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Messages in every selectable folder of `acct` (0 when the login fails).
pub async fn message_count(acct: &Account) -> u64 {
    let Ok(mut s) = testbed::login(acct).await else {
        return 0;
    };
    let mut total = 0;
    for f in s.list_folders().await.unwrap_or_default() {
        if f.selectable() {
            total += u64::from(s.examine(&f.name).await.unwrap_or(0));
        }
    }
    let _ = s.logout().await;
    total
}

/// Starts `migrated migrate`, kills it with SIGKILL once `dst`'s INBOX (copied first, and the
/// largest folder of the corpus) holds at least `at` messages, and returns how many messages
/// the whole account held just after. Panics if the run ended before.
pub async fn kill_mid_copy(job: &Path, store: &Path, dst: &Account, at: u64) -> u64 {
    let mut child = Command::new(binary("migrated"))
        .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
        .args(["migrate", "--quiet", "--job"])
        .arg(job)
        .arg("--store")
        .arg(store)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(store.with_extension("killed.err")).unwrap())
        .spawn()
        .expect("migrated starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    // One session, one EXAMINE per look: cheap enough to look often on a busy machine.
    let mut watch = testbed::login(dst).await.expect("login to watch the copy");
    while u64::from(watch.examine("INBOX").await.expect("EXAMINE INBOX")) < at {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {at} messages were on the destination:\n{}",
            std::fs::read_to_string(store.with_extension("killed.err")).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "fewer than {at} messages after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL sent");
    child.wait().unwrap();
    let _ = watch.logout().await;
    // The server may still be storing an APPEND whose literal the killed process had sent
    // (Courier takes a few milliseconds after the client is gone): the resume starts at
    // once, as a restarted daemon does, and must wait for it itself (the engine's recovery
    // looks until the folder holds still).
    message_count(dst).await
}

/// A job from `src` to `dst` in a fresh directory named `name` (one connection, batches of 5, so
/// the kill lands mid-copy), killed with SIGKILL once half of the corpus's INBOX is on `dst`,
/// then run again. Returns the job's directory, job file and store, the count at the kill
/// (asserted below the corpus's total) and the resumed run.
pub async fn killed_and_resumed(
    name: &str,
    src: &Account,
    dst: &Account,
    corpus: &testbed::Corpus,
) -> (PathBuf, PathBuf, PathBuf, u64, Run) {
    let total = corpus.total_messages() as u64;
    let dir = job_dir(name);
    let job = write_job(
        &dir,
        src,
        dst,
        "\n[limits]\nconnections = 1\nbatch_messages = 5\n",
    );
    let store = dir.join("store");
    let half_inbox = corpus.folders["INBOX"].messages.len() as u64 / 2;
    let at_kill = kill_mid_copy(&job, &store, dst, half_inbox).await;
    assert!(
        at_kill < total,
        "the kill landed after the copy ({at_kill} of {total})"
    );
    let resumed = migrate(&job, &store);
    (dir, job, store, at_kill, resumed)
}

/// A fresh directory for a job's files and store.
pub fn job_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("migrated-beds-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts that each of `names` is listed on `acct` as a container (`\Noselect`), not as a
/// folder.
pub async fn assert_containers(acct: &Account, names: &[String]) {
    let mut s = testbed::login(acct).await.expect("login");
    let listed = s.list_folders().await.expect("LIST");
    for name in names {
        let f = listed
            .iter()
            .find(|f| &f.name == name)
            .unwrap_or_else(|| panic!("container {name} is not listed: {listed:?}"));
        assert!(!f.selectable(), "container {name} became a folder: {f:?}");
    }
    s.logout().await.expect("logout");
}

/// The engine's endpoint for a test-bed account (plain IMAP on loopback, LOGIN).
pub fn endpoint_of(acct: &Account) -> migrated_imap::Endpoint {
    migrated_imap::Endpoint {
        host: acct.host.clone(),
        port: acct.port,
        security: migrated_imap::Security::Plain,
        cert_check: migrated_imap::CertCheck::System,
        auth: migrated_imap::AuthMethod::Login,
        user: acct.user.clone(),
        secret: migrated_imap::Secret::new(&acct.password),
        admin: None,
        oauth: None,
        timeout: Duration::from_secs(30),
    }
}

/// Two Dovecots (Fs layout, English special-use names) for a two-mailbox batch: users `u1`
/// and `u2` on the source (password `source-secret`), each with a corpus of `messages`
/// (seeds `seed + 1` and `seed + 2`, scaled by `size_factor`), and `u1@example.org`,
/// `u2@example.org` on the destination (password `dest-secret`).
pub async fn two_mailbox_pair(
    seed: u64,
    messages: usize,
    size_factor: f64,
) -> (testbed::Dovecot, testbed::Dovecot) {
    use testbed::{CorpusSpec, Dovecot, DovecotOptions, Layout, english_special_use};
    let users = |suffix: &str, password: &str| -> Vec<(String, String)> {
        (1..=2)
            .map(|i| (format!("u{i}{suffix}"), password.to_owned()))
            .collect()
    };
    let options = |users| DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users,
        ..DovecotOptions::default()
    };
    let src = Dovecot::start(options(users("", "source-secret")))
        .await
        .unwrap();
    let dst = Dovecot::start(options(users("@example.org", "dest-secret")))
        .await
        .unwrap();
    for i in 1..=2 {
        let spec = CorpusSpec {
            seed: seed + i,
            messages,
            max_attachment: 0,
            size_factor,
        };
        testbed::write_maildir(&src, &format!("u{i}"), &spec).unwrap();
    }
    (src, dst)
}
