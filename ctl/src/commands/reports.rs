//! `report [JOB | --batch NAME]`: the totals first (mailboxes by status, messages migrated,
//! copied, excluded and refused, duration, average speed), then per-folder statistics, the
//! verification and every excluded, refused or missing message of one job, one batch or every
//! job, as tables, JSON or CSV; `report --events JOB` gives a mailbox's log (CSV for a
//! spreadsheet, as CodeTwo's per-mailbox logs). `report --merge DIR|FILES` makes one report
//! of the JSON reports of several shards, without a daemon.

use std::process::ExitCode;

use anyhow::bail;
use migrated_ipc::JobDetail;

use crate::ReportFormat;
use crate::control::Control;
use crate::print::print_detail;
use migrated_ipc::report::Totals;

/// The report of a job, a batch's jobs, or all jobs (both left out).
pub(crate) async fn report(
    ctl: &mut Control,
    job: Option<String>,
    batch: Option<String>,
    format: ReportFormat,
) -> anyhow::Result<ExitCode> {
    let ids: Vec<String> = match (job, batch) {
        (Some(job), _) => vec![job],
        (None, Some(name)) => match ctl
            .batch(migrated_ipc::Request::BatchStatus { name })
            .await?
        {
            migrated_ipc::Response::BatchJobs { jobs, .. } => {
                jobs.into_iter().map(|j| j.id).collect()
            }
            other => bail!("unexpected reply: {other:?}"),
        },
        (None, None) => ctl.list().await?.0.into_iter().map(|j| j.id).collect(),
    };
    let mut details = Vec::with_capacity(ids.len());
    for id in ids {
        details.push(ctl.status(&id).await?);
    }
    print_report(&details, format)?;
    Ok(ExitCode::SUCCESS)
}

/// `report --merge DIR|FILES`: the JSON reports of the shards of one batch (a directory's
/// `*.json` files, sorted, or the files given) as one report: every mailbox once, sorted by
/// name, the totals over all of them. A report is the object `report --format json` writes, or
/// the bare array of jobs of earlier releases.
///
/// # Errors
///
/// A file that cannot be read or is not a JSON report, naming it; a mailbox in two reports
/// (two shards copied it: the shards were not given the same plan), naming both files.
pub(crate) fn merge(
    paths: &[std::path::PathBuf],
    format: ReportFormat,
) -> anyhow::Result<ExitCode> {
    print_report(&merged(paths)?, format)?;
    Ok(ExitCode::SUCCESS)
}

/// The jobs of the reports in `paths` (files, or directories of `*.json` files), merged.
fn merged(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<JobDetail>> {
    use anyhow::Context;
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<std::path::PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read the directory {}", p.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|e| e == "json") && f.is_file())
                .collect();
            if found.is_empty() {
                bail!(
                    "{}: no *.json report in it (write each shard's with `migratectl report --batch NAME --format json > FILE`)",
                    p.display()
                );
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let mut reports = Vec::with_capacity(files.len());
    for f in &files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the report {}", f.display()))?;
        let jobs = migrated_ipc::report::read_json(&text).with_context(|| {
            format!(
                "{}: not a JSON report (`migratectl report --batch NAME --format json`)",
                f.display()
            )
        })?;
        reports.push((f.display().to_string(), jobs));
    }
    Ok(migrated_ipc::report::merge(reports)?)
}

/// The report of these jobs in `format`: the totals, then each job.
fn print_report(details: &[JobDetail], format: ReportFormat) -> anyhow::Result<()> {
    match format {
        ReportFormat::Json => println!("{}", migrated_ipc::report::json(details)?),
        ReportFormat::Table => {
            print!("{}", Totals::of(details).text());
            println!();
            for d in details {
                print_detail(d);
                println!();
            }
        }
        ReportFormat::Csv => print!("{}", migrated_ipc::report::csv(details)?),
    }
    Ok(())
}

/// `report --events JOB`: the job's log as a table, JSON, or CSV (job, seq, time UTC, level,
/// message) for a spreadsheet.
pub(crate) async fn events(
    ctl: &mut Control,
    job: &str,
    format: ReportFormat,
) -> anyhow::Result<ExitCode> {
    let name = ctl.status(job).await?.summary.name;
    let events = ctl.events(job).await?;
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&events)?),
        ReportFormat::Table => {
            for e in &events {
                crate::print::print_event(e);
            }
        }
        ReportFormat::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(["job", "seq", "time", "level", "message"])?;
            for e in &events {
                w.write_record([
                    name.as_str(),
                    &e.seq.to_string(),
                    // `YYYY-MM-DD HH:MM:SS` (UTC), which spreadsheets read as a date.
                    &migrated_ipc::text::date_time(e.time),
                    &e.level,
                    &e.message,
                ])?;
            }
            w.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use migrated_ipc::text::date_time as utc;
    use migrated_ipc::{FolderReport, JobDetail, JobSummary};

    fn job(name: &str, copied: u64, bytes: u64) -> JobDetail {
        JobDetail {
            summary: JobSummary {
                name: name.into(),
                status: Some(migrated_core::JobStatus::Completed),
                items_done: copied,
                bytes_done: bytes,
                ..JobSummary::default()
            },
            folders: vec![FolderReport {
                source: "INBOX".into(),
                copied,
                ..FolderReport::default()
            }],
            duration_secs: 1.0,
            ..JobDetail::default()
        }
    }

    #[test]
    fn a_directory_of_an_old_and_a_new_json_report_merges_both_and_names_a_bad_file() {
        let dir = std::env::temp_dir().join(format!("migratectl-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // shard-0 as the previous release wrote it (the bare array), shard-1 as this one does.
        let old = vec![job("bob", 2, 200), job("dave", 4, 400)];
        std::fs::write(
            dir.join("shard-0.json"),
            serde_json::to_string_pretty(&old).unwrap(),
        )
        .unwrap();
        let new = vec![job("alice", 1, 100)];
        std::fs::write(
            dir.join("shard-1.json"),
            migrated_ipc::report::json(&new).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "not a report").unwrap();

        let merged = super::merged(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(merged, [new[0].clone(), old[0].clone(), old[1].clone()]);
        let totals = migrated_ipc::report::Totals::of(&merged);
        assert_eq!((totals.mailboxes, totals.copied, totals.bytes), (3, 7, 700));

        let bad = dir.join("shard-2.json");
        std::fs::write(&bad, r#"{"format": 9, "jobs": []}"#).unwrap();
        let err = format!(
            "{:#}",
            super::merged(std::slice::from_ref(&dir)).unwrap_err()
        );
        assert!(
            err.starts_with(&format!("{}: not a JSON report", bad.display()))
                && err.contains("format 9"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn event_times_read_as_dates_in_a_spreadsheet() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_704_067_200 + 3_723), "2024-01-01 01:02:03");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
    }
}
