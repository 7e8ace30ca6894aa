//! Drop-in job files: a file with an error is reported with file, line and field and changes
//! nothing; an editor's atomic save creates the job, which migrates exactly; an edit updates its
//! settings; removing the file stops nothing.

use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, stdout};
use crate::common::pair;
use migrated_core::JobStatus;
use testbed::CorpusSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_in_files_create_update_and_leave_jobs() {
    let p = pair(CorpusSpec {
        seed: 51,
        messages: 80,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    let dir = d.state.join("jobs.d");
    std::fs::create_dir_all(&dir).unwrap();
    d.args = vec!["--jobs-dir".into(), dir.display().to_string()];
    d.start().await;
    let wait_for = |what: &str, f: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = stdout(&d.ctl(&["list"]));
            if f(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{out}\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // An error names the file, the line and the field, and creates nothing.
    std::fs::write(
        dir.join("bad.toml"),
        "name = \"bad\"\n[source]\nhost = \"h\"\nprot = 143\n",
    )
    .unwrap();
    let out = wait_for("the error", &|o| o.contains("bad.toml"));
    assert!(
        out.contains("Job files with errors") && out.contains("line 4") && out.contains("prot"),
        "{out}"
    );
    assert!(out.contains("0 jobs"), "{out}");

    // Atomic save of a good file (temporary file, then rename); the password sits beside it.
    std::fs::write(dir.join("alice.pass"), p.src.password("alice").unwrap()).unwrap();
    let job = |extra: &str| {
        format!(
            "name = \"alice\"\n[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword_file = \"alice.pass\"\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword = \"{}\"\n{extra}",
            p.src.imap_port(),
            p.dst.imap_port(),
            p.dst.password("alice").unwrap()
        )
    };
    let save = |name: &str, text: String| {
        let tmp = dir.join(format!(".{name}.swp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    };
    save("alice.toml", job(""));
    wait_for("the job", &|o| o.contains("alice") && o.contains("1 jobs"));
    let id = {
        let list: serde_json::Value =
            serde_json::from_str(&stdout(&d.ctl(&["--json", "list"]))).unwrap_or_default();
        let jobs = list.get("jobs").cloned().unwrap_or(list);
        jobs[0]["id"].as_str().unwrap().to_owned()
    };
    d.wait_until(&id, "completion", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    p.assert_exact().await;

    // An edit updates the settings for the next run; fixing the bad file clears its error.
    save("alice.toml", job("[limits]\nconnections = 2\n"));
    std::fs::remove_file(dir.join("bad.toml")).unwrap();
    wait_for("the error to go", &|o| !o.contains("bad.toml"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stdout(&d.ctl(&["events", &id])).contains("Job file alice.toml changed") {
        assert!(Instant::now() < deadline, "edit not seen:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Removing the file stops nothing: the job stays, with an event saying so.
    std::fs::remove_file(dir.join("alice.toml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stdout(&d.ctl(&["events", &id])).contains("Job file alice.toml removed: the job goes on")
    {
        assert!(Instant::now() < deadline, "removal not seen:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stdout(&d.ctl(&["list"])).contains("1 jobs"));
    assert!(
        d.log().contains("bad.toml"),
        "the error went to the journal/log too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_in_batch_file_with_a_csv_beside_it_becomes_a_batch() {
    let p = pair(CorpusSpec {
        seed: 52,
        messages: 40,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    let dir = d.state.join("jobs.d");
    std::fs::create_dir_all(&dir).unwrap();
    d.args = vec!["--jobs-dir".into(), dir.display().to_string()];
    d.start().await;
    std::fs::write(
        dir.join("staff.csv"),
        format!(
            "EmailAddress,UserName,Password,DestinationUserName,DestinationPassword\nalice@example.org,alice,{},alice,{}\n",
            p.src.password("alice").unwrap(),
            p.dst.password("alice").unwrap()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("staff.toml"),
        format!(
            "batch = \"staff.csv\"\n[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n\
             [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n",
            p.src.imap_port(),
            p.dst.imap_port()
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list: serde_json::Value =
            serde_json::from_str(&stdout(&d.ctl(&["--json", "batch", "list"]))).unwrap();
        if list[0]["name"] == "staff" && list[0]["statuses"][0][0] == "Completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch did not complete: {list}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.assert_exact().await;
    assert!(stdout(&d.ctl(&["batch", "status", "staff"])).contains("staff/alice@example.org"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_drop_in_job_is_not_made_again_from_the_same_file() {
    let p = pair(CorpusSpec {
        seed: 53,
        messages: 20,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    let dir = d.state.join("jobs.d");
    std::fs::create_dir_all(&dir).unwrap();
    d.args = vec!["--jobs-dir".into(), dir.display().to_string()];
    d.start().await;
    let text = format!(
        "name = \"carol\"\n[source]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword = \"{}\"\n\
         [destination]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"alice\"\npassword = \"{}\"\n",
        p.src.imap_port(),
        p.src.password("alice").unwrap(),
        p.dst.imap_port(),
        p.dst.password("alice").unwrap()
    );
    std::fs::write(dir.join("carol.toml"), &text).unwrap();
    wait_jobs(&d, 1);
    assert_eq!(stdout(&d.ctl(&["delete", "--yes", "carol"])), "Deleted");
    // A rescan, and a restart, do not bring it back: that would copy everything again.
    d.signal("HUP");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(stdout(&d.ctl(&["--json", "list"])), "[]");
    d.terminate();
    d.start().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stdout(&d.ctl(&["--json", "list"])),
        "[]",
        "remembered across restarts"
    );
    p.assert_exact().await;
    // An edited file is a new request.
    std::fs::write(dir.join("carol.toml"), format!("{text}# edited\n")).unwrap();
    wait_jobs(&d, 1);
}

/// Waits until the daemon has exactly `n` jobs, all completed.
fn wait_jobs(d: &Daemon, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list: serde_json::Value =
            serde_json::from_str(&stdout(&d.ctl(&["--json", "list"]))).unwrap();
        let jobs = list.as_array().cloned().unwrap_or_default();
        if jobs.len() == n && jobs.iter().all(|j| j["status"] == "Completed") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} completed jobs: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
