//! Administrators logging in on behalf of users, against two real Dovecots with a master
//! passdb (`master = yes`, `auth_master_user_separator = *`): CSV batches whose rows give no
//! password, copied exact with only the administrator's password on disk, in both forms
//! (SASL PLAIN with an authorization identity, and the `user*admin` login name) on the
//! source and on the destination; and a mailbox the administrator may not open, refused with
//! the server's words while the others of its batch complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::daemon::{Daemon, stdout};
use testbed::{
    Corpus, CorpusSpec, Dovecot, DovecotOptions, Layout, MasterUser, english_special_use,
    german_special_use,
};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "the-admin-secret-7q2";
/// The destination password every destination user shares when the source side is the one
/// under test (the batch's destination logs in as EmailAddress with it).
const DEST_SHARED: &str = "dest-shared-9k1";

static RUNS: AtomicU64 = AtomicU64::new(0);

/// Users `{k}u1..{k}u3` for each batch `k`, on the source as they are and on the destination
/// as addresses.
fn users(batches: &[&str]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|k| (1..=3).map(move |i| format!("{k}u{i}")))
        .collect()
}

struct Bed {
    src: Dovecot,
    dst: Dovecot,
    corpora: Vec<(String, Corpus)>,
    daemon: Daemon,
    dir: PathBuf,
}

async fn bed(batches: &[&str], refused_on_source: &[&str], dest_own: &[&str]) -> Bed {
    let names = users(batches);
    let master = |refused: &[&str]| MasterUser {
        user: ADMIN.into(),
        password: ADMIN_PASSWORD.into(),
        refused: refused.iter().map(|s| (*s).to_owned()).collect(),
    };
    let src = Dovecot::start(DovecotOptions {
        layout: Layout::MaildirPlusPlus,
        special_use: german_special_use(),
        users: names
            .iter()
            .map(|u| (u.clone(), format!("own-source-{u}")))
            .collect(),
        master: Some(master(refused_on_source)),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let dst = Dovecot::start(DovecotOptions {
        layout: Layout::Fs,
        special_use: english_special_use(),
        users: names
            .iter()
            .map(|u| {
                let batch = &u[..u.len() - 2];
                let pw = if dest_own.contains(&batch) {
                    format!("own-dest-{u}")
                } else {
                    DEST_SHARED.to_owned()
                };
                (format!("{u}@example.org"), pw)
            })
            .collect(),
        master: Some(master(&[])),
        ..DovecotOptions::default()
    })
    .await
    .unwrap();
    let mut corpora = Vec::new();
    for (i, u) in names.iter().enumerate() {
        let spec = CorpusSpec {
            seed: 700 + i as u64,
            messages: 25,
            max_attachment: 0,
            size_factor: 1.0,
        };
        corpora.push((u.clone(), testbed::write_maildir(&src, u, &spec).unwrap()));
    }
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let mut daemon = Daemon::in_dir(
        std::env::temp_dir().join(format!("migrated-admin-logins-{}-{n}", std::process::id())),
    );
    daemon.start().await;
    let dir = daemon.state.join("batches");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("admin.pass"), ADMIN_PASSWORD).unwrap();
    std::fs::write(dir.join("dest.pass"), DEST_SHARED).unwrap();
    Bed {
        src,
        dst,
        corpora,
        daemon,
        dir,
    }
}

impl Bed {
    fn endpoint(d: &Dovecot) -> String {
        format!(
            "host = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n",
            d.imap_port()
        )
    }

    /// Creates batch `k`: the administrator on `side` in `form`, the other side with the
    /// users' own credentials (in the CSV for the source, the shared password file for the
    /// destination).
    fn create(&self, k: &str, side: &str, form: &str) {
        let admin = format!(
            "admin_user = \"{ADMIN}\"\nadmin_login = \"{form}\"\nadmin_password_file = \"{}\"\n",
            self.dir.join("admin.pass").display()
        );
        let (source, destination) = if side == "source" {
            (
                format!("{}{admin}", Self::endpoint(&self.src)),
                format!(
                    "{}password_file = \"{}\"\n",
                    Self::endpoint(&self.dst),
                    self.dir.join("dest.pass").display()
                ),
            )
        } else {
            (
                Self::endpoint(&self.src),
                format!("{}{admin}", Self::endpoint(&self.dst)),
            )
        };
        let template = self.dir.join(format!("{k}.toml"));
        std::fs::write(
            &template,
            format!("[source]\n{source}[destination]\n{destination}"),
        )
        .unwrap();
        // Exchange's columns; with a source administrator the Password column is left out,
        // with a destination administrator the rows give the source's own password and no
        // destination password.
        let mut csv = String::from(if side == "source" {
            "EmailAddress,UserName\n"
        } else {
            "EmailAddress,UserName,Password\n"
        });
        for i in 1..=3 {
            let u = format!("{k}u{i}");
            if side == "source" {
                csv.push_str(&format!("{u}@example.org,{u}\n"));
            } else {
                csv.push_str(&format!("{u}@example.org,{u},own-source-{u}\n"));
            }
        }
        let file = self.dir.join(format!("{k}.csv"));
        std::fs::write(&file, csv).unwrap();
        self.daemon.create_batch(k, &file, &template);
    }

    /// Waits until every job of batch `k` has finished; their summaries.
    async fn finished(&self, k: &str) -> Vec<serde_json::Value> {
        self.daemon
            .wait_batch(k, 3, migrated_core::JobStatus::is_finished)
            .await
    }

    async fn assert_exact(&self, user: &str) {
        let corpus = &self.corpora.iter().find(|(u, _)| u == user).unwrap().1;
        let report = testbed::verify(
            &self.src.account(user).unwrap(),
            &self.dst.account(&format!("{user}@example.org")).unwrap(),
            &corpus.mapping_to(&self.dst),
        )
        .await
        .unwrap();
        assert!(report.is_exact(), "{user}:\n{report}");
    }
}

/// No file the daemon was given holds a user's own password of the administrator's side.
fn assert_only_the_admins_password_on_disk(dir: &Path, side_users: &[String], prefix: &str) {
    for f in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        for u in side_users {
            assert!(
                !text.contains(&format!("{prefix}{u}")),
                "{u}'s password on disk"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_copy_exact_with_only_the_admins_password_in_both_forms_on_both_sides() {
    let cases = [
        ("ssp", "source", "sasl-plain"),
        ("ssep", "source", "separator"),
        ("dsp", "destination", "sasl-plain"),
        ("dsep", "destination", "separator"),
    ];
    let batches: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let b = bed(&batches, &[], &["dsp", "dsep"]).await;
    for (k, side, form) in cases {
        b.create(k, side, form);
    }
    for (k, side, form) in cases {
        let jobs = b.finished(k).await;
        for j in &jobs {
            assert_eq!(
                j["status"],
                "Completed",
                "batch {k} ({side}, {form}): {j}\n{}",
                b.daemon.log()
            );
        }
        for i in 1..=3 {
            b.assert_exact(&format!("{k}u{i}")).await;
        }
    }
    // The users' own passwords of the administrator's side were never written for the daemon.
    let source_admin: Vec<String> = users(&["ssp", "ssep"]);
    let destination_admin: Vec<String> = users(&["dsp", "dsep"]);
    assert_only_the_admins_password_on_disk(&b.dir, &source_admin, "own-source-");
    assert_only_the_admins_password_on_disk(&b.dir, &destination_admin, "own-dest-");
    // Each mailbox was opened by the master user on the administrator's side: Dovecot logged
    // the master logins there.
    let (src_log, dst_log) = (b.src.log_text(), b.dst.log_text());
    for (log, users) in [(&src_log, &source_admin), (&dst_log, &destination_admin)] {
        for u in users {
            let user = if log == &dst_log {
                format!("{u}@example.org")
            } else {
                u.clone()
            };
            assert!(
                log.contains(&format!("Master user logging in as {user}\n")),
                "no master login as {user}:\n{}",
                log.lines()
                    .filter(|l| l.contains("auth"))
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_the_admin_may_not_open_fails_with_the_servers_words_and_the_others_complete() {
    let b = bed(&["r"], &["ru2"], &[]).await;
    b.create("r", "source", "separator");
    let jobs = b.finished("r").await;
    for j in &jobs {
        let name = j["name"].as_str().unwrap();
        if name == "r/ru2@example.org" {
            assert_eq!(j["status"], "Failed", "{j}");
            let error = j["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("refused the login of \"admin\" on behalf of \"ru2\"")
                    && error.contains("[AUTHENTICATIONFAILED] Authentication failed."),
                "{error}"
            );
            let events = stdout(&b.daemon.ctl(&["events", j["id"].as_str().unwrap()]));
            assert!(
                events.contains("refused the administrator's login on behalf of the user"),
                "{events}"
            );
        } else {
            assert_eq!(j["status"], "Completed", "{j}\n{}", b.daemon.log());
        }
    }
    b.assert_exact("ru1").await;
    b.assert_exact("ru3").await;
}
