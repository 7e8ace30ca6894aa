//! The daemon end to end over its Unix socket: jobs created with migratectl, followed, paused,
//! resumed, cancelled and deleted; the daemon killed with SIGKILL mid-copy and stopped with
//! SIGTERM, each time resuming by itself; secrets absent from the store; an unprivileged client
//! refused; a wrong store key refused without touching the store.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use crate::common::daemon::{Daemon, binary, files_under, job_file, stdout};
use crate::common::pair;
use migrated_core::JobStatus;
use testbed::CorpusSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_sigkill_and_sigterm_of_the_daemon_and_completes_exactly() {
    let p = pair(CorpusSpec {
        seed: 31,
        messages: 3000,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let job = job_file(
        &p,
        &d.state.join("jobs"),
        "alice",
        "[limits]\nconnections = 2\nbatch_messages = 10\n",
    );
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    assert!(id.starts_with('j'), "{id}");
    let total = p.corpus.total_messages() as u64;

    // SIGKILL in the middle of the copy.
    let s = d
        .wait_until(&id, "a third copied", |s| s.items_done >= total / 3)
        .await;
    assert_eq!(s.status, Some(JobStatus::Copying));
    d.kill();
    d.start().await;
    // It resumes by itself; then SIGTERM stops it at a checkpoint within seconds.
    d.wait_until(&id, "copying again", |s| {
        s.status == Some(JobStatus::Copying) && s.items_done > 0
    })
    .await;
    let (status, took) = d.terminate();
    assert!(
        status.success(),
        "clean exit after SIGTERM: {status}\n{}",
        d.log()
    );
    assert!(took < Duration::from_secs(10), "stopped in {took:?}");
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
    p.assert_exact().await;

    // Status over the CLI, as JSON.
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["--json", "status", "alice"]))).unwrap();
    assert_eq!(json["summary"]["status"], "Completed");
    assert!(json["folders"].as_array().is_some_and(|f| !f.is_empty()));

    // No secret in the store after completion: not in clear, and not in the record either.
    let password = p.src.password("alice").unwrap().to_owned();
    for f in files_under(&d.state.join("store")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "{} holds the password",
            f.display()
        );
    }

    // Delete removes the job and its data.
    let out = stdout(&d.ctl(&["delete", "--yes", "alice"]));
    assert_eq!(out, "Deleted");
    let list = stdout(&d.ctl(&["--json", "list"]));
    assert_eq!(list, "[]");
    let (status, _) = d.terminate();
    assert!(status.success());
    let key = migrated_store::StoreKey::load(None, &d.state.join("store.key")).unwrap();
    let store = migrated_store::Store::open(&d.state.join("store"), key).unwrap();
    assert!(store.jobs::<serde_json::Value>().unwrap().is_empty());
    let folder = store.folder_key(store.job_key(&id), "INBOX");
    assert!(
        store.items(folder).unwrap().is_empty(),
        "the ledger of a deleted job is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_cancel_and_illegal_actions() {
    let p = pair(CorpusSpec {
        seed: 32,
        messages: 4000,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let job = job_file(
        &p,
        &d.state.join("jobs"),
        "bob",
        "[limits]\nconnections = 1\nbatch_messages = 5\n",
    );
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    d.wait_until(&id, "copying", |s| {
        s.status == Some(JobStatus::Copying) && s.items_done > 0
    })
    .await;

    // Delete while running is refused with what to do, exit code 4.
    let out = d.ctl(&["delete", "--yes", &id]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cancel it first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(stdout(&d.ctl(&["pause", &id])), "Stopping");
    let stopped = d
        .wait_until(&id, "stopped", |s| s.status == Some(JobStatus::Stopped))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        d.summary(&id).await.items_done,
        stopped.items_done,
        "nothing copied while paused"
    );
    assert_eq!(stdout(&d.ctl(&["resume", &id])), "Queued");
    d.wait_until(&id, "copying again", |s| {
        s.status == Some(JobStatus::Copying)
    })
    .await;
    assert_eq!(stdout(&d.ctl(&["cancel", "--yes", &id])), "Stopping");
    d.wait_until(&id, "cancelled", |s| s.status == Some(JobStatus::Cancelled))
        .await;
    let report = p.verify().await;
    assert_eq!(
        report.extra_count(),
        0,
        "no duplicates after pause, resume and cancel: {report}"
    );

    // A second job copies the rest with the same ledger? No: a job's ledger is its own. The
    // cancelled job's delta picks up where it stopped, with the passwords given again.
    let pass = d.state.join("jobs/src.pass");
    let dpass = d.state.join("jobs/dst.pass");
    let out = d.ctl(&[
        "delta",
        &id,
        "--source-password-file",
        pass.to_str().unwrap(),
        "--destination-password-file",
        dpass.to_str().unwrap(),
    ]);
    assert_eq!(stdout(&out), "Queued");
    let done = d
        .wait_until(&id, "completion", |s| {
            s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    assert_eq!(done.status, Some(JobStatus::Completed));
    p.assert_exact().await;
    let events = stdout(&d.ctl(&["events", &id]));
    for needle in [
        "Job created.",
        "Status: Stopped.",
        "Status: Cancelled.",
        "Status: Completed.",
    ] {
        assert!(events.contains(needle), "{needle} in\n{events}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprivileged_client_is_refused_on_the_socket() {
    let p = pair(CorpusSpec {
        seed: 33,
        messages: 5,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    assert_eq!(
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .map(|l| l.split_whitespace().nth(1) == Some("0")),
        Some(true),
        "this test switches users and must run as root"
    );
    // Let `nobody` reach the socket file, so the refusal comes from the peer-credential check.
    for dir in [d.state.as_path(), d.socket.parent().unwrap()] {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let out = Command::new(binary("migratectl"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("list")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied: uid 65534"), "{err}");
    // Root is served.
    stdout(&d.ctl(&["list"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_store_key_stops_start_up_and_leaves_the_store_untouched() {
    let p = pair(CorpusSpec {
        seed: 34,
        messages: 5,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let job = job_file(&p, &d.state.join("jobs"), "carol", "");
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    d.wait_until(&id, "completion", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    d.terminate();

    let key_file = d.state.join("store.key");
    let original = std::fs::read(&key_file).unwrap();
    std::fs::write(&key_file, "00".repeat(32)).unwrap();
    let out = d.command().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be opened with this key") && err.contains("Nothing was changed"),
        "{err}"
    );

    std::fs::write(&key_file, original).unwrap();
    d.start().await;
    let s = d.summary(&id).await;
    assert_eq!(s.status, Some(JobStatus::Completed), "the job is intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_checks_endpoints_and_finished_jobs_go_after_the_retention_period() {
    let p = pair(CorpusSpec {
        seed: 35,
        messages: 5,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.args = vec!["--retention-days".into(), "0.00002".into()]; // about 1.7 s
    d.start().await;
    let dir = d.state.join("jobs");
    let job = job_file(&p, &dir, "dave", "");
    let out = stdout(&d.ctl(&["test", job.to_str().unwrap()]));
    assert!(
        out.lines().filter(|l| l.contains(" OK ")).count() == 2,
        "{out}"
    );
    assert!(
        out.contains("MULTIAPPEND") && out.contains("separator"),
        "{out}"
    );
    std::fs::write(dir.join("dst.pass"), "wrong-password").unwrap();
    let bad = d.ctl(&["test", job.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        text.contains("destination")
            && text.contains("FAILED")
            && text.contains("refused the login"),
        "{text}"
    );
    assert_eq!(
        stdout(&d.ctl(&["--json", "list"])),
        "[]",
        "test creates nothing"
    );

    std::fs::write(dir.join("dst.pass"), p.dst.password("alice").unwrap()).unwrap();
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    d.wait_until(&id, "completion", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.signal("HUP"); // a sweep now instead of at the next tick
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stdout(&d.ctl(&["--json", "list"])) != "[]" {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired job was not deleted:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.log().contains("retention period is over"), "{}", d.log());
}

#[test]
fn migratectl_generates_completions_and_a_man_page() {
    let out = Command::new(binary("migratectl"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("migratectl") && text.contains("delta"),
        "{text}"
    );
    let out = Command::new(binary("migratectl"))
        .arg("man")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(".TH migratectl"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_systemd_ready_status_watchdog_and_stopping() {
    let p = pair(CorpusSpec {
        seed: 36,
        messages: 5,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    let path = d.state.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    d.env
        .push(("NOTIFY_SOCKET".into(), path.display().to_string()));
    d.env.push(("WATCHDOG_USEC".into(), "1000000".into()));
    d.start().await;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(seen.contains("READY=1")
        && seen.contains("STATUS=0 jobs")
        && seen.contains("WATCHDOG=1"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "systemd was not told: {seen}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    d.terminate();
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_forgets_the_ledger_and_statuses_include_authenticating() {
    let p = pair(CorpusSpec {
        seed: 37,
        messages: 40,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let dir = d.state.join("jobs");
    let job = job_file(&p, &dir, "erin", "");
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    d.wait_until(&id, "completion", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    let events = stdout(&d.ctl(&["events", &id]));
    let order = [
        "Status: Connecting.",
        "Status: Authenticating.",
        "Status: Scanning folders.",
        "Status: Copying.",
        "Status: Completed.",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|n| events.find(n).unwrap_or_else(|| panic!("{n} in\n{events}")))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "statuses in lifecycle order:\n{events}"
    );

    // Reset while running is refused; after completion the ledger is forgotten.
    assert_eq!(stdout(&d.ctl(&["reset", "--yes", &id])), "Stopped");
    let src = dir.join("src.pass");
    let dst = dir.join("dst.pass");
    let out = d.ctl(&[
        "delta",
        &id,
        "--source-password-file",
        src.to_str().unwrap(),
        "--destination-password-file",
        dst.to_str().unwrap(),
    ]);
    assert_eq!(stdout(&out), "Queued");
    let s = d
        .wait_until(&id, "the second run", |s| {
            s.status == Some(JobStatus::Completed)
        })
        .await;
    assert_eq!(
        s.items_done,
        p.corpus.total_messages() as u64,
        "everything copied again after the reset"
    );
    let report = p.verify().await;
    assert_eq!(
        report.extra_count(),
        p.corpus.total_messages(),
        "one extra copy of each message: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_start_by_priority_and_the_limit_changes_at_run_time() {
    let p = pair(CorpusSpec {
        seed: 38,
        messages: 1500,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.args = vec!["--max-jobs".into(), "1".into()];
    d.start().await;
    let dir = d.state.join("jobs");
    // A long job holds the only slot while the others queue.
    let first = job_file(
        &p,
        &dir,
        "first",
        "[limits]\nconnections = 1\nbatch_messages = 5\n",
    );
    let first_id = stdout(&d.ctl(&["create", first.to_str().unwrap()]));
    for (name, priority) in [("low", 30), ("high", 10), ("middle", 20)] {
        let f = job_file(&p, &dir, name, "[folders]\ninclude = [\"^Spam$\"]\n");
        // Top-level keys go before the first table.
        let text = std::fs::read_to_string(&f).unwrap();
        std::fs::write(&f, format!("priority = {priority}\n{text}")).unwrap();
        stdout(&d.ctl(&["create", f.to_str().unwrap()]));
    }
    // Changed while waiting: "low" jumps ahead.
    assert_eq!(stdout(&d.ctl(&["priority", "low", "5"])), "Queued");
    assert!(
        stdout(&d.ctl(&["list"])).contains("Queued"),
        "the others wait for the slot"
    );
    assert!(stdout(&d.ctl(&["limits"])).contains("max jobs  1"));
    d.wait_until(&first_id, "the long job", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (done, list) = d.all_completed();
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jobs did not finish: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = d.log();
    let order: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Job started."))
        .filter_map(|l| {
            l.split("job=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
        })
        .collect();
    assert_eq!(order, ["first", "low", "high", "middle"], "{log}");
    assert!(stdout(&d.ctl(&["limits", "--max-jobs", "4"])).contains("max jobs  4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_host_connection_limit_is_never_exceeded() {
    let p = pair(CorpusSpec {
        seed: 39,
        messages: 600,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    // Each job opens 2 workers + 1 control connection to each server, both on 127.0.0.1:
    // 6 connections to the host, so at most 2 jobs fit in 12.
    d.args = vec!["--max-connections-per-host".into(), "12".into()];
    d.start().await;
    let dir = d.state.join("jobs");
    let mut ids = Vec::new();
    for name in ["h1", "h2", "h3", "h4"] {
        let f = job_file(
            &p,
            &dir,
            name,
            "[limits]\nconnections = 2\nbatch_messages = 5\n",
        );
        ids.push(stdout(&d.ctl(&["create", f.to_str().unwrap()])));
    }
    let connections = |dovecot: &testbed::Dovecot| {
        dovecot
            .doveadm(&["who", "-1"])
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    let (mut most_src, mut most_dst) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        most_src = most_src.max(connections(&p.src));
        most_dst = most_dst.max(connections(&p.dst));
        let (done, list) = d.all_completed();
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jobs did not finish: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Source and destination share 127.0.0.1 here, so the limit covers both servers together.
    assert!(
        most_src + most_dst <= 12,
        "at most 12 connections to the host: saw {most_src} + {most_dst}"
    );
    assert!(
        most_src > 3,
        "two jobs ran in parallel within the limit (saw {most_src} on the source)"
    );
    let limits = stdout(&d.ctl(&["limits", "--max-connections-per-host", "24"]));
    assert!(limits.contains("per host  24 connections"), "{limits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_windows_pause_and_resume_and_deltas_recur_until_the_final_one() {
    const MONDAY: u64 = 1_704_067_200; // 2024-01-01 00:00 UTC
    let p = pair(CorpusSpec {
        seed: 40,
        messages: 1500,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    // The daemon's wall clock is moved from outside: libfaketime (LD_PRELOAD) reads the time
    // from a file on every call; monotonic time (timers, timeouts) stays real. SIGHUP makes
    // the daemon look at its schedules at once instead of at its next 30 s tick.
    let clock = d.state.join("clock");
    let set = |t: u64| {
        let at = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%d %H:%M:%S"])
            .output()
            .unwrap();
        std::fs::write(&clock, at.stdout).unwrap();
    };
    set(MONDAY + 10 * 3600);
    d.env.extend(testbed::faketime_env(&clock));
    d.start().await;
    let ticks = {
        let pid = d.pid().to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = tokio::process::Command::new("kill")
                    .args(["-HUP", &pid])
                    .status()
                    .await;
            }
        })
    };
    let dir = d.state.join("jobs");
    let schedule = "[limits]\nconnections = 1\nbatch_messages = 5\n\
                    [schedule]\ndelta_every_hours = 1\nwindows = [{ days = [\"Mon\"], from = \"09:00\", to = \"11:00\" }]\n";
    let job = job_file(&p, &dir, "nightly", schedule);
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    d.wait_until(&id, "copying in the window", |s| {
        s.status == Some(JobStatus::Copying) && s.items_done > 0
    })
    .await;

    // The window ends: the job pauses at a checkpoint and waits in the queue.
    set(MONDAY + 11 * 3600 + 1800);
    let paused = d
        .wait_until(&id, "paused by the window", |s| {
            s.status == Some(JobStatus::Queued)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = d.summary(&id).await;
    assert_eq!(
        (still.status, still.items_done),
        (Some(JobStatus::Queued), paused.items_done),
        "nothing runs outside the window"
    );
    let events = stdout(&d.ctl(&["events", &id]));
    assert!(
        events.contains("Paused: its schedule window ended; it resumes at 09:00:00 UTC."),
        "{events}"
    );

    // Next Monday's window: it resumes and completes.
    set(MONDAY + 7 * 86_400 + 9 * 3600 + 1800);
    d.wait_until(&id, "completion", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    p.assert_exact().await;

    // An hour later, still in the window: the recurring delta copies the new message.
    let acct = p.src.account("alice").unwrap();
    testbed::append_message(
        &acct,
        "INBOX",
        &testbed::synthetic_message(77, 4000),
        &[],
        1_600_000_000,
    )
    .await
    .unwrap();
    set(MONDAY + 7 * 86_400 + 10 * 3600 + 2700);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !stdout(&d.ctl(&["events", &id])).contains("Recurring delta") {
        assert!(
            std::time::Instant::now() < deadline,
            "no recurring delta:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = d
        .wait_until(&id, "the delta", |s| s.status == Some(JobStatus::Completed))
        .await;
    assert_eq!(s.items_done, 1, "the delta copied the new message only");
    p.assert_exact().await;

    // The final delta ends the recurrence and erases the credentials.
    assert_eq!(stdout(&d.ctl(&["delta", "--final", &id])), "Queued");
    d.wait_until(&id, "the final delta", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    set(MONDAY + 14 * 86_400 + 10 * 3600);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = stdout(&d.ctl(&["events", &id]));
    assert_eq!(events.matches("Recurring delta").count(), 1, "{events}");
    assert!(events.contains("Final delta requested"), "{events}");
    let again = d.ctl(&["delta", &id]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("password"),
        "credentials erased after the final delta"
    );
    ticks.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csv_report_lists_folders_and_excluded_messages() {
    let p = pair(CorpusSpec {
        seed: 42,
        messages: 300,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let job = job_file(
        &p,
        &d.state.join("jobs"),
        "rita",
        "[limits]\nmax_message_size = 100000\n",
    );
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    let done = d
        .wait_until(&id, "completion", |s| {
            s.status == Some(JobStatus::Completed)
        })
        .await;
    assert!(done.excluded > 0, "the corpus has messages over 100 kB");

    let csv_text = stdout(&d.ctl(&["report", "--format", "csv"]));
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .expect("a standard CSV reader reads the report");
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let excluded: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| &r[col("record")] == "excluded")
        .collect();
    assert_eq!(excluded.len() as u64, done.excluded);
    for r in &excluded {
        // The subject, decoded: the corpus writes some as RFC 2047 encoded words.
        let subject = &r[col("subject")];
        assert!(!subject.is_empty() && !subject.contains("=?"), "{r:?}");
        assert!(r[col("uid")].parse::<u32>().unwrap() > 0);
        assert!(r[col("size")].parse::<u64>().unwrap() > 100_000);
        assert!(r[col("reason")].contains("larger than"), "{r:?}");
        assert_eq!(&r[col("job")], "rita");
    }
    let detail: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["--json", "status", &id]))).unwrap();
    let folders = rows
        .iter()
        .filter(|r| &r[col("record")] == "folder")
        .count();
    assert_eq!(folders, detail["folders"].as_array().unwrap().len());
    let copied: u64 = rows
        .iter()
        .filter(|r| &r[col("record")] == "folder")
        .map(|r| r[col("copied")].parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        copied, done.items_done,
        "the report's counts add up to what was copied"
    );

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["report", "rita", "--format", "json"]))).unwrap();
    assert_eq!(json["format"], 2, "{json}");
    assert_eq!(json["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(json["totals"]["mailboxes"], 1, "{json}");
    let table = stdout(&d.ctl(&["report", "rita"]));
    assert!(table.contains("SOURCE FOLDER"), "{table}");
    assert!(
        table.contains("messages/min") && table.contains("MB/s"),
        "average speed in the report: {table}"
    );

    // The verification after the run: every folder compared on both sides, the excluded
    // messages named as missing with the reason.
    let verified: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| &r[col("record")] == "verified")
        .collect();
    assert_eq!(verified.len(), folders, "one verification row per folder");
    let count = |r: &csv::StringRecord, c: &str| r[col(c)].parse::<u64>().unwrap();
    let source_total: u64 = verified.iter().map(|r| count(r, "messages")).sum();
    let dest_total: u64 = verified.iter().map(|r| count(r, "copied")).sum();
    assert_eq!(source_total as usize, p.corpus.total_messages());
    assert_eq!(dest_total, done.items_done);
    let missing: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| &r[col("record")] == "missing")
        .collect();
    assert_eq!(missing.len() as u64, done.excluded);
    assert!(
        missing
            .iter()
            .all(|r| r[col("reason")].contains("excluded"))
    );
    let table = stdout(&d.ctl(&["report", "rita"]));
    assert!(
        table.contains("verification")
            && table.contains("(exact): every source message is on the destination but the"),
        "{table}"
    );

    // A message deleted on the destination is found by the next run that changes something.
    let mut dst = testbed::login(&p.dst.account("alice").unwrap())
        .await
        .unwrap();
    let victim = dst.folder_messages("INBOX").await.unwrap()[0].clone();
    dst.expunge_uid("INBOX", victim.uid).await.unwrap();
    testbed::append_message(
        &p.src.account("alice").unwrap(),
        "INBOX",
        b"From: a@example.com\r\nSubject: late\r\nMessage-ID: <late@x>\r\n\r\nlate\r\n",
        &[],
        1_700_000_000,
    )
    .await
    .unwrap();
    let jobs = d.state.join("jobs");
    let out = d.ctl(&[
        "delta",
        &id,
        "--source-password-file",
        jobs.join("src.pass").to_str().unwrap(),
        "--destination-password-file",
        jobs.join("dst.pass").to_str().unwrap(),
    ]);
    assert_eq!(stdout(&out), "Queued");
    d.wait_until(&id, "the delta", |s| {
        s.status.is_some_and(JobStatus::is_finished)
    })
    .await;
    let detail: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["--json", "status", &id]))).unwrap();
    let inbox = detail["verification"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["destination"] == "INBOX")
        .expect("INBOX verified")
        .clone();
    let gone: Vec<&serde_json::Value> = inbox["missing"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["reason"]
                .as_str()
                .unwrap()
                .contains("no longer on the destination")
        })
        .collect();
    assert_eq!(gone.len(), 1, "{inbox}");
    assert_eq!(
        gone[0]["message_id"].as_str(),
        victim.message_id.as_deref(),
        "the deleted message is named"
    );
    let events = stdout(&d.ctl(&["events", &id]));
    assert!(
        events.contains("messages are not on the destination"),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_filter_and_sort_the_job_list() {
    let p = pair(CorpusSpec {
        seed: 61,
        messages: 5,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let jobs = d.state.join("jobs");
    let tagged = |name: &str, tags: &str| {
        let f = job_file(&p, &jobs, name, "");
        let text = std::fs::read_to_string(&f).unwrap().replacen(
            "[source]\n",
            &format!("tags = {tags}\n[source]\n"),
            1,
        );
        std::fs::write(&f, text).unwrap();
        f
    };
    let bad = tagged("bad", "[\"no spaces please\"]");
    let out = d.ctl(&["create", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("tags: tag \"no spaces please\""),
        "{err}"
    );
    for (name, tags) in [
        ("erin", "[]"),
        ("carol", "[\"vip\", \"wave-1\"]"),
        ("dave", "[]"),
    ] {
        stdout(&d.ctl(&["create", tagged(name, tags).to_str().unwrap()]));
    }
    stdout(&d.ctl(&["priority", "dave", "5"]));
    assert_eq!(stdout(&d.ctl(&["tag", "dave", "vip"])), "vip");
    assert_eq!(
        stdout(&d.ctl(&["tag", "carol", "wave-1", "--remove"])),
        "vip"
    );
    let out = d.ctl(&["tag", "erin", "a,b"]);
    assert!(!out.status.success());

    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--json", "list"];
        all.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&stdout(&d.ctl(&all))).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&["--tag", "vip", "--sort", "name"]),
        ["carol", "dave"]
    );
    assert_eq!(names(&["--sort", "name"]), ["carol", "dave", "erin"]);
    assert_eq!(names(&["--sort", "priority"])[0], "dave");
    assert_eq!(names(&["--sort", "tag"]).last().unwrap(), "erin");
    let table = stdout(&d.ctl(&["list", "--tag", "vip"]));
    assert!(table.contains("TAGS") && table.contains("vip"), "{table}");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (done, list) = d.all_completed();
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jobs did not complete: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(names(&["--status", "completed"]).len(), 3);
    assert!(names(&["--status", "failed"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follow_shows_an_eta_and_carries_on_when_the_daemon_restarts() {
    let p = pair(CorpusSpec {
        seed: 62,
        messages: 300,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let job = job_file(
        &p,
        &d.state.join("jobs"),
        "follow",
        "[limits]\nmax_mbps = 1\n",
    );
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    let follower = Command::new(binary("migratectl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["status", "--follow", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    d.wait_until(&id, "copying under way", |s| {
        s.status == Some(JobStatus::Copying) && s.items_done > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    d.start().await;
    let out = tokio::task::spawn_blocking(move || follower.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}\n{text}");
    assert!(
        err.contains("reconnecting") && err.contains("Reconnected."),
        "{err}"
    );
    assert!(text.contains("ETA "), "{text}");
    assert!(
        text.lines().last().unwrap_or("").starts_with("Completed"),
        "{text}"
    );
    p.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_argv_logs_events_status_or_store_and_no_core_dumps() {
    let p = pair(CorpusSpec {
        seed: 63,
        messages: 120,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.env.push(("MIGRATED_LOG".into(), "debug".into()));
    d.start().await;
    // A third job (created after the other two, set up first so that the three run
    // together) copies contacts with OAuth 2 on both sides, through CardDAV fronts that
    // take bearer tokens (as Google's CardDAV API) before real Radicales: its refresh tokens
    // and client secret are sealed like any password.
    let oauth = testbed::OAuthServer::start(testbed::OAuthOptions::default()).unwrap();
    let (client, client_secret) = ("secrets-trial.apps.example", "dav-client-secret-8r3");
    oauth.register_client(client, client_secret);
    let dav = |n: usize| {
        let r = testbed::radicale::Radicale::start(testbed::radicale::RadicaleOptions::default())
            .unwrap();
        if n > 0 {
            let corpus = testbed::vcard::contacts_corpus(n, 65);
            r.seed("alice", &[("friends", "Friends", &corpus)]);
        }
        let front = testbed::bearer_dav::BearerDav::start(&r, &oauth.introspection_url()).unwrap();
        (r, front)
    };
    let ((_dav_src, dav_src_front), (dav_dst, dav_dst_front)) = (dav(150), dav(0));
    let scope = testbed::bearer_dav::CARDDAV_SCOPE;
    let refresh = [
        oauth.issue_refresh_token(client, "alice", scope),
        oauth.issue_refresh_token(client, "alice", scope),
    ];
    std::fs::create_dir_all(d.state.join("jobs")).unwrap();
    let client_file = d.state.join("jobs/dav-client.pass");
    std::fs::write(&client_file, client_secret).unwrap();
    let dav_side = |port: u16, name: &str, rt: &str| {
        let rt_file = d.state.join(format!("jobs/dav-{name}.pass"));
        std::fs::write(&rt_file, rt).unwrap();
        format!(
            "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\nuser = \"alice\"\nauth = \"oauth2\"\n\
             [{name}.oauth2]\ntoken_url = \"{}\"\nscope = \"{scope}\"\nclient_id = \"{client}\"\n\
             client_secret_file = \"{}\"\nrefresh_token_file = \"{}\"\n",
            oauth.token_url(),
            client_file.display(),
            rt_file.display()
        )
    };
    let dav_job = d.state.join("jobs/dav-secrets.toml");
    std::fs::write(
        &dav_job,
        format!(
            "name = \"dav-secrets\"\n[source]\nplugin = \"carddav\"\n{}[destination]\n{}",
            dav_side(dav_src_front.port(), "source", &refresh[0]),
            dav_side(dav_dst_front.port(), "destination", &refresh[1])
        ),
    )
    .unwrap();
    let job = job_file(
        &p,
        &d.state.join("jobs"),
        "secrets",
        "[limits]\nmax_mbps = 2\n",
    );
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    // A second job logs in as an administrator on both sides (SASL PLAIN on the source, the
    // `alice*admin` name on the destination), against Dovecots with a master passdb.
    let admin_password = "admin-pw-never-shown-5x";
    let master = || {
        Some(testbed::MasterUser {
            user: "admin".into(),
            password: admin_password.into(),
            refused: Vec::new(),
        })
    };
    let msrc = testbed::Dovecot::start(testbed::DovecotOptions {
        master: master(),
        ..testbed::DovecotOptions::default()
    })
    .await
    .unwrap();
    let mdst = testbed::Dovecot::start(testbed::DovecotOptions {
        layout: testbed::Layout::Fs,
        master: master(),
        ..testbed::DovecotOptions::default()
    })
    .await
    .unwrap();
    testbed::write_maildir(
        &msrc,
        "alice",
        &CorpusSpec {
            seed: 64,
            messages: 120,
            max_attachment: 0,
            size_factor: 1.0,
        },
    )
    .unwrap();
    let admin_file = d.state.join("jobs/admin.pass");
    std::fs::write(&admin_file, admin_password).unwrap();
    let admin_job = d.state.join("jobs/admin-secrets.toml");
    let side = |port: u16, form: &str| {
        format!(
            "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\nuser = \"alice\"\nadmin_user = \"admin\"\nadmin_login = \"{form}\"\nadmin_password_file = \"{}\"\n",
            admin_file.display()
        )
    };
    std::fs::write(
        &admin_job,
        format!(
            "name = \"admin-secrets\"\n[source]\n{}[destination]\n{}[limits]\nmax_mbps = 2\n",
            side(msrc.imap_port(), "sasl-plain"),
            side(mdst.imap_port(), "separator")
        ),
    )
    .unwrap();
    let admin_id = stdout(&d.ctl(&["create", admin_job.to_str().unwrap()]));
    let dav_id = stdout(&d.ctl(&["create", dav_job.to_str().unwrap()]));
    let passwords = [
        p.src.password("alice").unwrap().to_owned(),
        p.dst.password("alice").unwrap().to_owned(),
        admin_password.to_owned(),
        client_secret.to_owned(),
        refresh[0].clone(),
        refresh[1].clone(),
    ];
    let holds = |bytes: &[u8]| {
        passwords
            .iter()
            .any(|pw| bytes.windows(pw.len()).any(|w| w == pw.as_bytes()))
    };
    // While it runs: not in the daemon's command line or environment (what `ps` shows).
    d.wait_until(&id, "copying", |s| s.status == Some(JobStatus::Copying))
        .await;
    let pid = d.pid();
    for what in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{what}")).unwrap();
        assert!(!holds(&bytes), "/proc/{pid}/{what} holds a password");
    }
    let ps = Command::new("ps")
        .args(["axww", "-o", "args"])
        .output()
        .unwrap();
    assert!(!holds(&ps.stdout), "ps shows a password");
    // While the administrator's job runs, its sealed record holds the administrator's
    // password: never in clear in the store's files.
    d.wait_until(&admin_id, "copying", |s| {
        s.status == Some(JobStatus::Copying)
    })
    .await;
    for f in files_under(&d.state.join("store")) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(!holds(&bytes), "{} holds a password", f.display());
    }
    // And while the contacts job runs (its record holds both refresh tokens, sealed).
    d.wait_until(&dav_id, "copying", |s| {
        s.status == Some(JobStatus::Copying) || s.status.is_some_and(JobStatus::is_finished)
    })
    .await;
    for f in files_under(&d.state.join("store")) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(!holds(&bytes), "{} holds a password", f.display());
    }
    for id in [&id, &admin_id, &dav_id] {
        d.wait_until(id, "completion", |s| s.status == Some(JobStatus::Completed))
            .await;
    }
    assert_eq!(
        dav_dst.count("alice"),
        150,
        "the contacts job copied every contact"
    );
    assert!(
        oauth.counters().refresh_grants >= 2,
        "{:?}",
        oauth.counters()
    );
    // Not in the journal-bound log (debug level), the events, the status or the report.
    assert!(!d.log().is_empty());
    assert!(!holds(d.log().as_bytes()), "the log holds a password");
    for args in [
        vec!["events", id.as_str()],
        vec!["--json", "status", id.as_str()],
        vec!["events", admin_id.as_str()],
        vec!["--json", "status", admin_id.as_str()],
        vec!["events", dav_id.as_str()],
        vec!["--json", "status", dav_id.as_str()],
        vec!["report", "--format", "csv"],
        vec!["--json", "list"],
    ] {
        let out = stdout(&d.ctl(&args));
        assert!(
            !holds(out.as_bytes()),
            "migratectl {args:?} shows a password"
        );
    }
    // Not in any file of the store, sealed or not.
    for f in files_under(&d.state.join("store")) {
        assert!(
            !holds(&std::fs::read(&f).unwrap()),
            "{} holds a password",
            f.display()
        );
    }
    // Core dumps are off where the package runs the daemon.
    for unit in [
        "packaging/systemd/migrated.service",
        "packaging/systemd/user/migrated.service",
    ] {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(unit),
        )
        .unwrap();
        assert!(text.lines().any(|l| l.trim() == "LimitCORE=0"), "{unit}");
    }
}

/// What a job copied over time, as the control API keeps it: samples (socket and D-Bus share
/// the request) whose sums are the run's progress, within the run's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throughput_history_has_samples_that_add_up_to_the_progress_of_the_run() {
    let p = pair(CorpusSpec {
        seed: 43,
        messages: 300,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let job = job_file(&p, &d.state.join("jobs"), "tess", "");
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    let done = d
        .wait_until(&id, "completion", |s| {
            s.status == Some(JobStatus::Completed)
        })
        .await;
    assert!(done.items_done > 0 && done.bytes_done > 0, "{done:?}");
    let mut c = migrated_ipc::Client::connect(&d.socket).await.unwrap();
    let reply = c
        .call(&migrated_ipc::Request::Throughput {
            job: Some("tess".into()),
        })
        .await
        .unwrap();
    let migrated_ipc::Response::Throughput { jobs } = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].id.as_str(), jobs[0].name.as_str()),
        (id.as_str(), "tess")
    );
    let samples = &jobs[0].samples;
    assert!(!samples.is_empty(), "a finished run has its samples");
    assert_eq!(
        samples.iter().map(|s| s.items).sum::<u64>(),
        done.items_done,
        "{samples:?}"
    );
    assert_eq!(
        samples.iter().map(|s| s.bytes).sum::<u64>(),
        done.bytes_done,
        "{samples:?}"
    );
    let ended = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut last = started;
    for s in samples {
        assert!(
            s.time >= last && s.time <= ended,
            "in order, within the run: {samples:?}"
        );
        last = s.time;
    }
    // Every job when none is named: the same one here.
    let reply = c
        .call(&migrated_ipc::Request::Throughput { job: None })
        .await
        .unwrap();
    let migrated_ipc::Response::Throughput { jobs: all } = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(all, jobs);
}
