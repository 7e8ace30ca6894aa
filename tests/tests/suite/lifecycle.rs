//! A batch's life from first copy to cutover, against real Dovecots: retention that never
//! sweeps a job still to run and always sweeps a failed one, and every control request
//! answering the same over the socket and over D-Bus.

use std::time::{Duration, Instant};

use migrated_core::{Action, JobStatus};
use migrated_ipc::{Client, Request, Response};
use testbed::CorpusSpec;

use crate::common::daemon::{Daemon, job_file, stdout};
use crate::common::pair;

/// Writes `t` (unix seconds) into a libfaketime clock file.
fn set_clock(clock: &std::path::Path, t: u64) {
    let at = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%d %H:%M:%S"])
        .output()
        .unwrap();
    std::fs::write(clock, at.stdout).unwrap();
}

/// The ids of the jobs the daemon holds.
fn job_ids(d: &Daemon) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["--json", "list"]))).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_a_job_a_delta_queued_again_and_sweeps_a_failed_one() {
    const START: u64 = 1_704_067_200; // 2024-01-01 00:00 UTC
    let p = pair(CorpusSpec {
        seed: 150,
        messages: 40,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    let clock = d.state.join("clock");
    set_clock(&clock, START);
    d.env.extend(testbed::faketime_env(&clock));
    d.start().await;
    let dir = d.state.join("jobs");
    let kept = stdout(&d.ctl(&["create", job_file(&p, &dir, "kept", "").to_str().unwrap()]));
    d.wait_until(&kept, "completion", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    // What `batch delta` does to each job: its credentials were erased at completion, so it
    // waits for them, and is no longer finished.
    let mut c = Client::connect(&d.socket).await.unwrap();
    let r = c
        .call(&Request::Act {
            job: kept.clone(),
            action: Action::Delta,
        })
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Response::Done {
                status: JobStatus::WaitingForCredentials
            }
        ),
        "{r:?}"
    );

    // A job whose source password is wrong fails (and keeps its passwords for a retry).
    let bad = job_file(&p, &d.state.join("bad"), "failing", "");
    std::fs::write(d.state.join("bad/src.pass"), "not-the-password").unwrap();
    let failing = stdout(&d.ctl(&["create", bad.to_str().unwrap()]));
    let failed = d
        .wait_until(&failing, "the failure", |s| {
            s.status == Some(JobStatus::Failed)
        })
        .await;
    assert!(
        failed.credentials,
        "a failed job keeps its credentials until swept"
    );

    // Eight days later (retention: 7): the failed job is swept with its passwords; the job
    // waiting for its delta's credentials is kept with its ledger.
    set_clock(&clock, START + 8 * 86_400);
    let deadline = Instant::now() + Duration::from_secs(120);
    while job_ids(&d).contains(&failing) {
        assert!(
            Instant::now() < deadline,
            "the failed job was never swept:\n{}",
            d.log()
        );
        d.signal("HUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job_ids(&d), std::slice::from_ref(&kept));
    assert!(
        d.log()
            .contains("Job deleted: its retention period is over.")
    );
    let s = d.summary(&kept).await;
    assert_eq!(s.status, Some(JobStatus::WaitingForCredentials));
    // Its credentials given again, the delta finds everything in the ledger: nothing copied.
    let out = d.ctl(&[
        "delta",
        &kept,
        "--source-password-file",
        dir.join("src.pass").to_str().unwrap(),
        "--destination-password-file",
        dir.join("dst.pass").to_str().unwrap(),
    ]);
    assert_eq!(stdout(&out), "Queued");
    let s = d
        .wait_until(&kept, "the delta", |s| {
            s.status == Some(JobStatus::Completed)
        })
        .await;
    assert_eq!(s.items_done, 0, "the ledger survived: nothing copied again");
    p.assert_exact().await;
}

/// `migratectl` over one transport: the socket (no extra argument) or the session bus.
struct Ctl<'a> {
    d: &'a Daemon,
    bus: Option<&'a str>,
}

impl Ctl<'_> {
    fn run(&self, args: &[&str]) -> std::process::Output {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut c = match self.bus {
            None => self.d.ctl_command(args),
            Some(address) => {
                let mut full = vec!["--bus", "session"];
                full.extend_from_slice(args);
                let mut c = self.d.ctl_command(&full);
                c.env("DBUS_SESSION_BUS_ADDRESS", address);
                c
            }
        };
        c.envs(env.iter().copied());
        c.output().unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        serde_json::from_str(&stdout(&self.run(&full))).unwrap()
    }

    async fn wait_status(&self, job: &str, status: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let v = self.json(&["status", job]);
            if v["summary"]["status"] == status {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{job} never reached {status}: {v}\n{}",
                self.d.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The same administrator's session, on one transport: create, list by tag with every field,
/// tags, priority, show and edit, a delta, the final delta, events, report, limits, plugins.
async fn session(p: &crate::common::Pair, ctl: &Ctl<'_>, name: &str) {
    let job = job_file(
        p,
        &ctl.d.state.join(name),
        name,
        "[schedule]\ndelta_every_hours = 24\n",
    );
    let id = stdout(&ctl.run(&["create", job.to_str().unwrap()]));
    let done = ctl.wait_status(&id, "Completed").await;
    assert_eq!(
        done["summary"]["credentials"], true,
        "recurring syncs keep them"
    );
    let tagged = ctl.json(&["tag", &id, "wave-1"]);
    assert_eq!(tagged["tags"], serde_json::json!(["wave-1"]));

    let listed = ctl.json(&["list", "--tag", "wave-1"]);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{name} listed by its tag: {listed}"));
    assert_eq!(row["name"], name);
    assert_eq!(row["tags"], serde_json::json!(["wave-1"]));
    assert!(
        row["source"]
            .as_str()
            .unwrap()
            .starts_with("alice@127.0.0.1")
    );
    assert!(row["created"].as_u64().unwrap() > 0);
    assert_eq!(row["items_total"], row["items_done"]);

    let tagged = ctl.json(&["tag", &id, "vip"]);
    assert_eq!(tagged["tags"], serde_json::json!(["vip", "wave-1"]));
    stdout(&ctl.run(&["priority", &id, "7"]));
    assert_eq!(ctl.json(&["status", &id])["summary"]["priority"], 7);

    // Shown as a job file, secrets only as set; edited from the next run, or refused.
    let shown = stdout(&ctl.run(&["show", &id]));
    assert!(
        shown.contains("[source]") && shown.contains("priority = 7"),
        "{shown}"
    );
    assert!(shown.contains("# password: set (never shown"), "{shown}");
    let secret = p.src.password("alice").unwrap();
    assert!(!shown.contains(secret), "no secret shown");
    let out = ctl.run_with(
        &["edit", &id],
        &[("EDITOR", "sed -i 's/^priority = 7$/priority = 42/'")],
    );
    assert!(
        stdout(&out).contains("Edited: the new settings apply from the job's next run"),
        "{out:?}"
    );
    assert_eq!(ctl.json(&["status", &id])["summary"]["priority"], 42);
    let bad = ctl.run_with(&["edit", &id], &[("EDITOR", "sed -i '1i bogus = 1'")]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 1") && err.contains("bogus") && err.contains("the job is unchanged"),
        "{err}"
    );
    assert_eq!(ctl.json(&["status", &id])["summary"]["priority"], 42);
    assert_eq!(
        ctl.json(&["status", &id])["summary"]["credentials"],
        true,
        "an edit keeps the secrets it does not give"
    );

    assert_eq!(stdout(&ctl.run(&["delta", &id])), "Queued");
    let s = ctl.wait_status(&id, "Completed").await;
    assert_eq!(s["summary"]["items_done"], 0, "nothing new to copy");
    assert_eq!(stdout(&ctl.run(&["delta", "--final", &id])), "Queued");
    let s = ctl.wait_status(&id, "Completed").await;
    assert_eq!(
        s["summary"]["credentials"], false,
        "erased by the final delta"
    );
    let events = stdout(&ctl.run(&["events", &id]));
    assert!(events.contains("Final delta requested"), "{events}");
    let report: serde_json::Value =
        serde_json::from_str(&stdout(&ctl.run(&["report", &id, "--format", "json"]))).unwrap();
    assert!(report.to_string().contains(name), "{report}");
    assert!(stdout(&ctl.run(&["plugins"])).contains("imap"));
    let limits = stdout(&ctl.run(&["limits", "--max-jobs", "4"]));
    assert!(limits.contains('4'), "{limits}");
    assert_eq!(stdout(&ctl.run(&["delete", "--yes", &id])), "Deleted");
    let gone = ctl.run(&["status", &id]);
    assert_eq!(gone.status.code(), Some(3), "no such job any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_request_answers_the_same_over_the_socket_and_dbus() {
    let p = pair(CorpusSpec {
        seed: 151,
        messages: 30,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let bus = crate::dbus::Bus::start_named("lifecycle");
    let mut d = Daemon::new(&p);
    d.env.push(("MIGRATED_BUS".into(), "session".into()));
    d.env
        .push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.address.clone()));
    d.start().await;
    session(&p, &Ctl { d: &d, bus: None }, "over-socket").await;
    // The bus name is owned once the daemon is up; wait for it rather than race it.
    let over_bus = Ctl {
        d: &d,
        bus: Some(&bus.address),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !over_bus.run(&["list"]).status.success() {
        assert!(Instant::now() < deadline, "no D-Bus name:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    session(&p, &over_bus, "over-dbus").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_share_named_endpoints_whose_edit_applies_at_the_next_run() {
    let p = pair(CorpusSpec {
        seed: 152,
        messages: 30,
        max_attachment: 0,
        size_factor: 1.0,
    })
    .await;
    let mut d = Daemon::new(&p);
    d.start().await;
    let dir = d.state.join("endpoints");
    std::fs::create_dir_all(&dir).unwrap();
    let endpoint = |file: &str, port: u16| {
        let f = dir.join(file);
        std::fs::write(
            &f,
            format!("host = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\ntimeout_secs = 5\nmax_migrations = 4\n"),
        )
        .unwrap();
        f
    };
    let old = endpoint("old.toml", p.src.imap_port());
    let new = endpoint("new.toml", p.dst.imap_port());
    for (name, f) in [("old", &old), ("new", &new)] {
        let out = stdout(&d.ctl(&["endpoint", "create", name, "--file", f.to_str().unwrap()]));
        assert!(out.contains("applies from each job's next run"), "{out}");
    }
    // The job names the endpoints and gives only its users and passwords.
    std::fs::write(dir.join("src.pass"), p.src.password("alice").unwrap()).unwrap();
    std::fs::write(dir.join("dst.pass"), p.dst.password("alice").unwrap()).unwrap();
    let job = dir.join("shared.toml");
    std::fs::write(
        &job,
        "name = \"shared\"\n[source]\nendpoint = \"old\"\nuser = \"alice\"\npassword_file = \"src.pass\"\n\
         [destination]\nendpoint = \"new\"\nuser = \"alice\"\npassword_file = \"dst.pass\"\n",
    )
    .unwrap();
    // The pre-flight of a job on endpoints logs in where its runs will.
    let checked = stdout(&d.ctl(&["test", job.to_str().unwrap()]));
    assert!(
        checked.contains("source ok") && checked.contains("destination ok"),
        "{checked}"
    );
    let id = stdout(&d.ctl(&["create", job.to_str().unwrap()]));
    d.wait_until(&id, "completion", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    p.assert_exact().await;
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&d.ctl(&["--json", "endpoint", "list"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    for row in list.as_array().unwrap() {
        assert_eq!(row["jobs"], serde_json::json!(["shared"]), "{row}");
        assert_eq!(row["endpoint"]["max_migrations"], 4);
    }
    let refused = d.ctl(&["endpoint", "delete", "old"]);
    assert_eq!(refused.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("endpoint old is used by shared"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The endpoint edited to a port nothing listens on: the next run uses it, and fails there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let wrong = endpoint("old-wrong.toml", dead_port);
    let out = stdout(&d.ctl(&[
        "endpoint",
        "create",
        "old",
        "--file",
        wrong.to_str().unwrap(),
        "--replace",
    ]));
    assert!(
        out.contains("Changed: it applies from each job's next run (1 jobs use it"),
        "{out}"
    );
    let pass = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    let (sp, dp) = (pass("src.pass"), pass("dst.pass"));
    let delta = [
        "delta",
        id.as_str(),
        "--source-password-file",
        sp.as_str(),
        "--destination-password-file",
        dp.as_str(),
    ];
    assert_eq!(stdout(&d.ctl(&delta)), "Queued");
    let failed = d
        .wait_until(&id, "the run on the edited endpoint", |s| {
            s.status == Some(JobStatus::Failed)
        })
        .await;
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains(&format!("127.0.0.1:{dead_port}"))),
        "{failed:?}"
    );
    // Put right again: the job resumes on it and completes, exact.
    stdout(&d.ctl(&[
        "endpoint",
        "create",
        "old",
        "--file",
        old.to_str().unwrap(),
        "--replace",
    ]));
    assert_eq!(stdout(&d.ctl(&["resume", &id])), "Queued");
    d.wait_until(&id, "completion", |s| {
        s.status == Some(JobStatus::Completed)
    })
    .await;
    p.assert_exact().await;
    stdout(&d.ctl(&["delete", "--yes", &id]));
    assert_eq!(stdout(&d.ctl(&["endpoint", "delete", "old"])), "Deleted");
}
