//! The real `migrated` binary killed with SIGKILL at moments spread over a migration, then run
//! again: the destination ends equal to the source, with no message twice.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pair;
use testbed::{CorpusSpec, Dovecot, SplitMix64};

/// The `migrated` binary next to this test's target directory (`cargo build --bins` first).
pub fn migrated_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let bin = dir.join("migrated");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        bin.display()
    );
    bin
}

/// Writes a job file whose passwords live in 0600 files beside it.
pub fn write_job(dir: &Path, src: &Dovecot, dst: &Dovecot, extra: &str) -> PathBuf {
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
    let bin = migrated_binary();
    let mut rng = SplitMix64::new(0x5eed);
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
