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
use crate::print::{print_detail, status_label};

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
/// name, the totals over all of them.
///
/// # Errors
///
/// A file that cannot be read or is not a JSON report, naming it; a mailbox in two reports
/// (two shards copied it: the shards were not given the same plan), naming both files.
pub(crate) fn merge(
    paths: &[std::path::PathBuf],
    format: ReportFormat,
) -> anyhow::Result<ExitCode> {
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
    let mut details: Vec<JobDetail> = Vec::new();
    let mut from: std::collections::HashMap<String, std::path::PathBuf> =
        std::collections::HashMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the report {}", f.display()))?;
        let part: Vec<JobDetail> = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a JSON report (`migratectl report --batch NAME --format json`)",
                f.display()
            )
        })?;
        for d in part {
            if let Some(first) = from.get(&d.summary.name) {
                bail!(
                    "mailbox {} is in {} and in {}: each mailbox belongs to one shard (give every daemon the same batch file, or the same plan)",
                    d.summary.name,
                    first.display(),
                    f.display()
                );
            }
            from.insert(d.summary.name.clone(), f.clone());
            details.push(d);
        }
    }
    details.sort_by(|a, b| a.summary.name.cmp(&b.summary.name));
    print_report(&details, format)?;
    Ok(ExitCode::SUCCESS)
}

/// The report of these jobs in `format`: the totals, then each job.
fn print_report(details: &[JobDetail], format: ReportFormat) -> anyhow::Result<()> {
    let totals = Totals::of(details);
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&details)?),
        ReportFormat::Table => {
            totals.print();
            println!();
            for d in details {
                print_detail(d);
                println!();
            }
        }
        ReportFormat::Csv => write_csv_report(&totals, details)?,
    }
    Ok(())
}

/// The CSV report: one row per folder and per excluded or refused message.
fn write_csv_report(totals: &Totals, details: &[JobDetail]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(std::io::stdout());
    w.write_record([
        "record",
        "job",
        "status",
        "folder",
        "destination",
        "messages",
        "copied",
        "already_copied",
        "excluded",
        "failed",
        "uid",
        "size",
        "message_id",
        "reason",
        "subject",
    ])?;
    // The totals first: `messages` migrated, `copied` by the last runs (`size` their bytes).
    w.write_record([
        "totals",
        &format!("{} mailboxes", totals.mailboxes),
        &totals.statuses(),
        "",
        "",
        &totals.migrated.to_string(),
        &totals.copied.to_string(),
        "",
        &totals.excluded.to_string(),
        &totals.failed.to_string(),
        "",
        &totals.bytes.to_string(),
        "",
        &totals.speed(),
        "",
    ])?;
    for d in details {
        let s = &d.summary;
        let status = status_label(s);
        for f in &d.folders {
            w.write_record([
                "folder",
                &s.name,
                &status,
                &f.source,
                &f.destination,
                &f.messages.to_string(),
                &f.copied.to_string(),
                &f.already_copied.to_string(),
                &f.excluded.to_string(),
                &f.failed.to_string(),
                "",
                "",
                "",
                f.error.as_deref().unwrap_or(""),
                "",
            ])?;
        }
        for (kind, items) in [("excluded", &d.excluded), ("failed", &d.failed)] {
            for i in items {
                w.write_record([
                    kind,
                    &s.name,
                    &status,
                    &i.folder,
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    &i.uid.to_string(),
                    &i.size.to_string(),
                    i.message_id.as_deref().unwrap_or(""),
                    &i.reason,
                    i.subject.as_deref().unwrap_or(""),
                ])?;
            }
        }
        // The verification: a row per folder (source count in `messages`, destination count in
        // `copied`), then a row per message missing on the destination.
        for v in &d.verification {
            let reason = format!(
                "source {} messages, {} bytes; destination {} messages, {} bytes",
                v.source_messages, v.source_bytes, v.destination_messages, v.destination_bytes
            );
            w.write_record([
                "verified",
                &s.name,
                &status,
                &v.source,
                &v.destination,
                &v.source_messages.to_string(),
                &v.destination_messages.to_string(),
                "",
                "",
                &v.missing.len().to_string(),
                "",
                &v.source_bytes.to_string(),
                "",
                &reason,
                "",
            ])?;
            for i in &v.missing {
                w.write_record([
                    "missing",
                    &s.name,
                    &status,
                    &i.folder,
                    &v.destination,
                    "",
                    "",
                    "",
                    "",
                    "",
                    &i.uid.to_string(),
                    &i.size.to_string(),
                    i.message_id.as_deref().unwrap_or(""),
                    &i.reason,
                    i.subject.as_deref().unwrap_or(""),
                ])?;
            }
        }
    }
    w.flush()?;
    Ok(())
}

/// What a batch (or every job) comes to, for the first lines of a report.
#[derive(Debug, Default)]
struct Totals {
    mailboxes: usize,
    /// `(status, mailboxes)`, in the order first seen.
    by_status: Vec<(String, usize)>,
    /// Messages on the destination from any run (copied now or before, by the ledger).
    migrated: u64,
    /// Messages and bytes copied by each mailbox's last run.
    copied: u64,
    bytes: u64,
    excluded: u64,
    failed: u64,
    /// Seconds of the last runs, added up.
    duration: f64,
}

impl Totals {
    fn of(details: &[JobDetail]) -> Self {
        let mut t = Self {
            mailboxes: details.len(),
            ..Self::default()
        };
        for d in details {
            let status = status_label(&d.summary);
            match t.by_status.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => t.by_status.push((status, 1)),
            }
            t.migrated += d
                .folders
                .iter()
                .map(|f| f.copied + f.already_copied)
                .sum::<u64>();
            t.copied += d.summary.items_done;
            t.bytes += d.summary.bytes_done;
            t.excluded += d.summary.excluded;
            t.failed += d.summary.failed;
            t.duration += d.duration_secs;
        }
        t
    }

    fn statuses(&self) -> String {
        self.by_status
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn speed(&self) -> String {
        let avg = if self.duration > 0.0 {
            self.bytes as f64 / 1e6 / self.duration
        } else {
            0.0
        };
        format!("duration {:.1} s, average {avg:.2} MB/s", self.duration)
    }

    fn print(&self) {
        println!("Totals: {} mailboxes ({})", self.mailboxes, self.statuses());
        println!(
            "  messages migrated {}; copied by the last runs {} ({:.1} MB); excluded {}; refused {}",
            self.migrated,
            self.copied,
            self.bytes as f64 / 1e6,
            self.excluded,
            self.failed
        );
        println!("  {} (the last runs)", self.speed());
    }
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

    #[test]
    fn event_times_read_as_dates_in_a_spreadsheet() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_704_067_200 + 3_723), "2024-01-01 01:02:03");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
    }
}
