//! A store written by an earlier release opens with this one and what it was doing goes on:
//! the fixture (tests/fixtures/store-c6e85a1.tar.gz, made by `store_fixture` at commit c6e85a1,
//! before the job record carried a format version) holds a completed job with its report and
//! a job killed with SIGKILL in the middle of its copy, with the mail of both servers as they
//! were at the kill.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, stdout};
use testbed::fixture::Fixture;

fn archive(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn detail(d: &Daemon, job: &str) -> serde_json::Value {
    let out = d.ctl(&["--json", "status", job]);
    assert!(
        out.status.success(),
        "status {job}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_release_before_record_versions_opens_keeps_its_reports_and_resumes_the_cut_copy()
 {
    let base = std::env::temp_dir().join(format!("store-upgrade-{}", std::process::id()));
    let fx = Fixture::open(&archive("store-c6e85a1.tar.gz"), base.join("fixture"))
        .await
        .expect("fixture opens");
    let mut d = Daemon::in_dir(base.join("daemon"));
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(fx.state().join("."))
        .arg(&d.state)
        .status()
        .unwrap();
    assert!(copied.success());
    d.start().await;

    // The completed job: its report as the earlier release wrote it.
    let done = detail(&d, "fixture-done");
    assert_eq!(done["summary"]["status"], "Completed", "{done}");
    assert_eq!(done["summary"]["credentials"], false, "{done}");
    let excluded = done["excluded"].as_array().expect("excluded rows");
    assert_eq!(excluded.len(), 1, "{done}");
    let folder = excluded[0]["folder"].as_str().unwrap();
    assert!(
        fx.mapping("alice")
            .unwrap()
            .iter()
            .any(|(s, _)| s == folder),
        "{done}"
    );
    assert!(excluded[0]["size"].as_u64().unwrap() > 200_000);
    assert!(
        excluded[0]["reason"]
            .as_str()
            .unwrap()
            .contains("200000 bytes"),
        "{done}"
    );
    let folders = done["folders"].as_array().expect("folder rows");
    let listed: u64 = folders
        .iter()
        .map(|f| f["messages"].as_u64().unwrap())
        .sum();
    let copied: u64 = folders.iter().map(|f| f["copied"].as_u64().unwrap()).sum();
    assert_eq!(listed, 40, "{done}");
    assert_eq!(copied, 39, "{done}");
    assert!(done["verified_at"].is_u64(), "{done}");
    let verification = done["verification"].as_array().expect("verification rows");
    let missing: Vec<&serde_json::Value> = verification
        .iter()
        .flat_map(|r| r["missing"].as_array().unwrap())
        .collect();
    assert_eq!(missing.len(), 1, "the excluded message, named: {done}");
    assert_eq!(missing[0]["uid"], excluded[0]["uid"]);

    // The cut job resumes by itself and completes without a duplicate.
    let deadline = Instant::now() + Duration::from_secs(600);
    let cut = loop {
        let cut = detail(&d, "fixture-cut");
        if cut["summary"]["status"] == "Completed" {
            break cut;
        }
        assert!(
            cut["summary"]["status"] != "Failed" && Instant::now() < deadline,
            "fixture-cut did not complete: {cut}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let folders = cut["folders"].as_array().unwrap();
    let this_run: u64 = folders.iter().map(|f| f["copied"].as_u64().unwrap()).sum();
    let before: u64 = folders
        .iter()
        .map(|f| f["already_copied"].as_u64().unwrap())
        .sum();
    assert_eq!(this_run + before, 160, "{cut}");
    assert!(
        before > 0 && this_run > 0,
        "the run went on from the earlier one: {cut}"
    );
    let report = testbed::verify(
        &fx.source.account("bob").unwrap(),
        &fx.destination.account("bob").unwrap(),
        &fx.mapping("bob").unwrap(),
    )
    .await
    .unwrap();
    assert!(report.is_exact(), "destination differs:\n{report}");
    let log = d.log();
    assert!(
        log.contains("Job records brought to this release's format.") && log.contains("jobs=2"),
        "both records were upgraded: {log}"
    );
    assert!(
        !log.contains("does not decode") && !log.contains("ERROR"),
        "{log}"
    );
    d.kill();
    drop(fx);
    let _ = std::fs::remove_dir_all(&base);
}
