//! `report [JOB | --batch NAME]`: per-folder statistics, the verification and every excluded,
//! refused or missing message of one job, one batch or every job, as tables, JSON or CSV.

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
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&details)?),
        ReportFormat::Table => {
            for d in &details {
                print_detail(d);
                println!();
            }
        }
        ReportFormat::Csv => write_csv_report(&details)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The CSV report: one row per folder and per excluded or refused message.
fn write_csv_report(details: &[JobDetail]) -> anyhow::Result<()> {
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
