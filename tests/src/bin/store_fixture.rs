//! Writes a store fixture: a daemon's state directory as this build leaves it, with the mail of
//! both servers it talks to, so that a later release's test (tests/suite/store_upgrade.rs) can
//! open the store, check what it kept and resume the job it was copying.
//!
//! `store_fixture OUT.tar.gz` (run from a debug build: the daemon, migratectl and the plugins
//! are taken from beside this binary). Inside the archive:
//!
//! - `state/`: the daemon's state directory (store and key);
//! - `source/<user>/`, `destination/<user>/`: the users' Dovecot homes;
//! - `mapping-<user>.json`: source folder -> destination folder, for the verifier.
//!
//! Two jobs: `fixture-done` (alice) completed, with a message excluded by the size limit and
//! its verification; `fixture-cut` (bob) killed with SIGKILL in the middle of its copy. The
//! servers listen on the fixed ports in [`testbed::fixture`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use testbed::fixture::{self, FIXTURE_USERS};
use testbed::{CorpusSpec, Dovecot};

fn beside_me(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("binary directory")?.join(name);
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build --workspace` first",
            bin.display()
        );
    }
    Ok(bin)
}

fn ctl(ctl: &Path, socket: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(ctl)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "migratectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn status(ctl_bin: &Path, socket: &Path, job: &str) -> Result<serde_json::Value> {
    let text = ctl(ctl_bin, socket, &["--json", "status", job])?;
    Ok(serde_json::from_str(&text)?)
}

async fn count(dst: &Dovecot, user: &str) -> u64 {
    let Ok(mut s) = testbed::login(&dst.account(user).unwrap()).await else {
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: store_fixture OUT.tar.gz")?;
    let out = std::path::absolute(out)?;
    let daemon_bin = beside_me("migrated")?;
    let ctl_bin = beside_me("migratectl")?;

    let mut src = Dovecot::start(fixture::source_options()).await?;
    let mut dst = Dovecot::start(fixture::destination_options()).await?;
    let done_corpus = testbed::write_maildir(
        &src,
        "alice",
        &CorpusSpec {
            seed: 61,
            messages: 40,
            max_attachment: 220_000,
            size_factor: 0.3,
        },
    )?;
    let cut_corpus = testbed::write_maildir(
        &src,
        "bob",
        &CorpusSpec {
            seed: 62,
            messages: 160,
            max_attachment: 0,
            size_factor: 0.2,
        },
    )?;

    let work = std::env::temp_dir().join(format!("store-fixture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let state = work.join("state");
    std::fs::create_dir_all(&state)?;
    let socket = work.join("migrated.sock");
    let mut daemon = Command::new(&daemon_bin)
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(&socket)
        .args(["--bus", "none"])
        .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        if Instant::now() > deadline {
            bail!("the daemon did not listen");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let jobs = work.join("jobs");
    std::fs::create_dir_all(&jobs)?;
    let done_file = fixture::job_file(
        &jobs,
        "fixture-done",
        "alice",
        "\n[limits]\nmax_message_size = 200000\n",
    )?;
    ctl(&ctl_bin, &socket, &["create", done_file.to_str().unwrap()])?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = status(&ctl_bin, &socket, "fixture-done")?;
        if s["summary"]["status"] == "Completed" && s["verified_at"].is_u64() {
            if s["excluded"].as_array().is_none_or(Vec::is_empty) {
                bail!("the size limit excluded nothing: {s}");
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("fixture-done did not complete: {s}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Slow enough (one connection, small batches, 2 Mbit/s) that the kill lands mid-copy.
    let cut_file = fixture::job_file(
        &jobs,
        "fixture-cut",
        "bob",
        "\n[limits]\nconnections = 1\nbatch_messages = 5\nmax_mbps = 2.0\n",
    )?;
    ctl(&ctl_bin, &socket, &["create", cut_file.to_str().unwrap()])?;
    let total = cut_corpus.total_messages() as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while count(&dst, "bob").await < total / 3 {
        if Instant::now() > deadline {
            bail!("fixture-cut copied too little");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.kill()?;
    daemon.wait()?;
    let at_kill = count(&dst, "bob").await;
    if at_kill >= total {
        bail!("fixture-cut finished before the kill ({at_kill} of {total})");
    }
    src.stop();
    dst.stop();

    let stage = work.join("stage");
    std::fs::create_dir_all(stage.join("source"))?;
    std::fs::create_dir_all(stage.join("destination"))?;
    copy_tree(&state, &stage.join("state"))?;
    for user in FIXTURE_USERS {
        copy_tree(
            &src.dir().join("home").join(user.0),
            &stage.join("source").join(user.0),
        )?;
        copy_tree(
            &dst.dir().join("home").join(user.0),
            &stage.join("destination").join(user.0),
        )?;
    }
    for (user, corpus) in [("alice", &done_corpus), ("bob", &cut_corpus)] {
        std::fs::write(
            stage.join(format!("mapping-{user}.json")),
            serde_json::to_string_pretty(&corpus.mapping_to(&dst))?,
        )?;
    }
    let tar = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-czf",
        ])
        .arg(&out)
        .arg("-C")
        .arg(&stage)
        .arg(".")
        .status()?;
    if !tar.success() {
        bail!("tar failed: {tar}");
    }
    std::fs::remove_dir_all(&work)?;
    println!(
        "{}: fixture-done completed, fixture-cut killed at {at_kill} of {total} messages",
        out.display()
    );
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    if !status.success() {
        bail!("cp -a {} {}: {status}", from.display(), to.display());
    }
    Ok(())
}
