//! The real `migrated` binary killed with SIGKILL at moments spread over a migration, then run
//! again: the destination ends equal to the source, with no message twice. Once as the one-shot
//! `migrated migrate`, once as the daemon, which must resume the job by itself after each
//! restart.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, binary, job_file, stdout};
use crate::common::pair;
use migrated_core::JobStatus;
use testbed::{CorpusSpec, Dovecot, SplitMix64};

/// Writes a job file whose passwords live in 0600 files beside it.
fn write_job(dir: &Path, src: &Dovecot, dst: &Dovecot, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (name, d) in [("source.pass", src), ("destination.pass", dst)] {
        let p = dir.join(name);
        std::fs::write(&p, format!("{}\n", d.password("alice").unwrap())).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let job = format!(
        r#"id = "crash-test"

[source]
host = "127.0.0.1"
port = {}
security = "plain"
user = "alice"
password_file = "{}"

[destination]
host = "127.0.0.1"
port = {}
security = "plain"
user = "alice"
password_file = "{}"
{extra}"#,
        src.imap_port(),
        dir.join("source.pass").display(),
        dst.imap_port(),
        dir.join("destination.pass").display(),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, job).unwrap();
    path
}

async fn destination_count(dst: &Dovecot) -> u64 {
    let Ok(mut s) = testbed::login(&dst.account("alice").unwrap()).await else {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_then_resume_gives_an_exact_copy_without_duplicates() {
    let p = pair(CorpusSpec {
        seed: 21,
        messages: 3000,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let total = p.corpus.total_messages() as u64;
    let dir = p.store_dir.with_extension("job");
    // Small batches over two connections: many APPENDs in flight when the kill lands.
    let job = write_job(
        &dir,
        &p.src,
        &p.dst,
        "\n[limits]\nconnections = 2\nbatch_messages = 10\n",
    );
    let bin = binary("migrated");
    let mut rng = SplitMix64::new(testbed::fault_seed("one-shot SIGKILL", 0x5eed));
    let mut mid_copy_kills = 0;
    let kills = 6;
    for k in 0..kills {
        let mut child = Command::new(&bin)
            .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
            .args(["migrate", "--quiet", "--job"])
            .arg(&job)
            .arg("--store")
            .arg(&p.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("migrated starts");
        // Kill somewhere in the k-th sixth of the copy, plus a random delay.
        let target = total * (k + 1) / (kills + 1);
        let deadline = Instant::now() + Duration::from_secs(120);
        while destination_count(&p.dst).await < target && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        let finished = child.try_wait().unwrap().is_some();
        child.kill().expect("SIGKILL sent");
        child.wait().unwrap();
        let at_kill = destination_count(&p.dst).await;
        if !finished && at_kill > 0 && at_kill < total {
            mid_copy_kills += 1;
        }
    }
    assert!(
        mid_copy_kills >= 3,
        "only {mid_copy_kills} kills landed in the middle of the copy"
    );

    let status = Command::new(&bin)
        .env("MIGRATED_PLUGINS_DIR", testbed::plugins_dir())
        .args(["migrate", "--quiet", "--job"])
        .arg(&job)
        .arg("--store")
        .arg(&p.store_dir)
        .stdout(Stdio::null())
        .status()
        .expect("migrated runs");
    assert!(status.success(), "the final run completes: {status}");
    p.assert_exact().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_of_the_daemon_each_followed_by_a_restart_that_resumes_the_job_by_itself() {
    let seed = testbed::fault_seed("daemon SIGKILL", 0x5167_c111);
    let mut rng = SplitMix64::new(seed);
    let p = pair(CorpusSpec {
        seed: 22,
        messages: 4000,
        max_attachment: 0,
        size_factor: 0.5,
    })
    .await;
    let total = p.corpus.total_messages() as u64;
    let mut d = Daemon::new(&p);
    d.start().await;
    // Small batches over two connections: APPENDs in flight whenever the kill lands.
    let job = job_file(
        &p,
        &d.state.join("jobs"),
        "alice",
        "[limits]\nconnections = 2\nbatch_messages = 10\n",
    );
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    let started = Instant::now();
    let kills = 20;
    let mut previous = 0u64;
    let mut mid_copy = 0;
    for k in 0..kills {
        if k > 0 {
            d.start().await;
        }
        let restarted = Instant::now();
        // One kill in five at a random moment after the start (connecting, scanning, recovering
        // interrupted APPENDs, or copying); the others once a random share more is copied, plus
        // a random delay.
        let when = if rng.below(5) == 0 {
            let ms = rng.below(800);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            format!("{ms} ms after the start")
        } else {
            let step = total / 150 + rng.below(total / 60 - total / 150);
            let target = (previous + step).min(total);
            while destination_count(&p.dst).await < target {
                assert!(
                    restarted.elapsed() < Duration::from_secs(60),
                    "kill {k}: fewer than {target} messages copied 60 s after the restart\n{}",
                    d.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let ms = rng.below(80);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            format!("{step} more copied, then {ms} ms")
        };
        d.kill();
        let at_kill = destination_count(&p.dst).await;
        let mid = at_kill > previous && at_kill < total;
        mid_copy += usize::from(mid);
        eprintln!(
            "kill {k:>2} ({when}, {:.1?} after the start): {previous} -> {at_kill} of {total} on the destination{}",
            restarted.elapsed(),
            if mid { ", mid-copy" } else { "" }
        );
        previous = at_kill;
    }
    d.start().await;
    let done = d
        .wait_until(&id, "completion", |s| {
            s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    assert_eq!(
        done.status,
        Some(JobStatus::Completed),
        "{done:?}\n{}",
        d.log()
    );
    eprintln!(
        "{kills} kills, {mid_copy} mid-copy; completed {:.1?} after the job was created",
        started.elapsed()
    );
    assert!(
        mid_copy >= 12,
        "only {mid_copy} of {kills} kills landed in the middle of the copy"
    );
    p.assert_exact().await;
}
