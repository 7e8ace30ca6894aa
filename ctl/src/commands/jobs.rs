//! The commands on single jobs: `create`, `test`, `list`, `tag`, `pause`, `resume`, `cancel`,
//! `delete`, `reset`, `delta`, `priority`, `events` and `credentials`. `status` (and
//! `--follow`) lives in [`super::follow`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use migrated_core::{Action, Secret};

use super::input::{confirm, load_spec, prompt, read_secret_file};
use crate::ListOrder;
use crate::control::Control;
use crate::print::{print_checks, print_event, print_list, print_status};

/// `create FILE`: prints the new job's id.
pub(crate) async fn create(ctl: &mut Control, job: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let id = ctl.create(load_spec(job)?).await?;
    if json {
        println!("{}", serde_json::json!({ "id": id }));
    } else {
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `test FILE`: the connection checks of both sides, then the mailbox's pre-flight line as
/// `batch test` prints it; exit code 1 when a side fails. With `--json`, one object:
/// `checks` (each side's steps) and `preflight` (`rows` and `totals`, as `batch test --json`).
pub(crate) async fn test(ctl: &mut Control, job: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let spec = load_spec(job)?;
    let checks = ctl.test(spec.clone()).await?;
    if json {
        let rows = super::batches::preflight_rows(ctl, spec, None).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "checks": checks,
                "preflight": super::batches::preflight_json(&rows),
            }))?
        );
    } else {
        print_checks(&checks);
        super::batches::preflight(ctl, spec, None, false).await?;
    }
    if checks.iter().any(|c| !c.ok) {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `list`: filtered by tags and statuses here, in the given order; drop-in files with errors
/// after the table.
pub(crate) async fn list(
    ctl: &mut Control,
    tag: &[String],
    status: &[String],
    sort: ListOrder,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (mut jobs, problems) = ctl.list().await?;
    jobs.retain(|j| tag.is_empty() || j.tags.iter().any(|t| tag.contains(t)));
    jobs.retain(|j| {
        status.is_empty()
            || j.status.is_some_and(|s| {
                status.iter().any(|w| {
                    w.eq_ignore_ascii_case(&format!("{s:?}"))
                        || w.eq_ignore_ascii_case(&s.to_string())
                })
            })
    });
    match sort {
        ListOrder::Created => jobs.sort_by_key(|j| j.created),
        ListOrder::Name => jobs.sort_by(|a, b| a.name.cmp(&b.name)),
        ListOrder::Priority => jobs.sort_by_key(|j| (j.priority, j.created)),
        ListOrder::Status => jobs.sort_by_key(|j| (j.status.map(|s| s.to_string()), j.created)),
        ListOrder::Tag => jobs.sort_by(|a, b| {
            (a.tags.is_empty(), a.tags.first(), &a.name).cmp(&(
                b.tags.is_empty(),
                b.tags.first(),
                &b.name,
            ))
        }),
    }
    if json {
        if problems.is_empty() {
            println!("{}", serde_json::to_string_pretty(&jobs)?);
        } else {
            println!(
                "{}",
                serde_json::json!({ "jobs": jobs, "job_file_errors": problems })
            );
        }
    } else {
        print_list(&jobs);
        if !problems.is_empty() {
            println!("\nJob files with errors (nothing was changed for them):");
            for p in &problems {
                println!("  {p}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pause` and `resume`: prints the job's new status.
pub(crate) async fn act(
    ctl: &mut Control,
    job: &str,
    action: Action,
    json: bool,
) -> anyhow::Result<ExitCode> {
    print_status(ctl.act(job, action).await?, json);
    Ok(ExitCode::SUCCESS)
}

/// `cancel`, after a confirmation unless `--yes`.
pub(crate) async fn cancel(
    ctl: &mut Control,
    job: &str,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !yes && !confirm(&format!("Cancel job {job}?"))? {
        return Ok(ExitCode::from(1));
    }
    print_status(ctl.act(job, Action::Cancel).await?, json);
    Ok(ExitCode::SUCCESS)
}

/// `delete`, after a confirmation unless `--yes`.
pub(crate) async fn delete(
    ctl: &mut Control,
    job: &str,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !yes
        && !confirm(&format!(
            "Delete job {job} and all its data (ledger, report, events)?"
        ))?
    {
        return Ok(ExitCode::from(1));
    }
    ctl.act(job, Action::Delete).await?;
    if json {
        println!("{}", serde_json::json!({ "deleted": true }));
    } else {
        println!("Deleted");
    }
    Ok(ExitCode::SUCCESS)
}

/// `reset`, after a confirmation unless `--yes`.
pub(crate) async fn reset(
    ctl: &mut Control,
    job: &str,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let question = format!(
        "Reset job {job}? The next run copies everything again (duplicates unless the destination was emptied)."
    );
    if !yes && !confirm(&question)? {
        return Ok(ExitCode::from(1));
    }
    print_status(ctl.act(job, Action::Reset).await?, json);
    Ok(ExitCode::SUCCESS)
}

/// `delta`: the passwords come from the files given, or are asked for when the job's were
/// erased at completion.
pub(crate) async fn delta(
    ctl: &mut Control,
    job: &str,
    source_password_file: Option<PathBuf>,
    destination_password_file: Option<PathBuf>,
    final_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let detail = ctl.status(job).await?;
    let needs = !detail.summary.credentials;
    let secret = |file: Option<PathBuf>, what: &str| -> anyhow::Result<Option<Secret>> {
        match file {
            Some(f) => Ok(Some(read_secret_file(&f)?)),
            None if needs => Ok(Some(prompt(what)?)),
            None => Ok(None),
        }
    };
    let source = secret(
        source_password_file,
        &format!("source ({})", detail.summary.source),
    )?;
    let destination = secret(
        destination_password_file,
        &format!("destination ({})", detail.summary.destination),
    )?;
    print_status(ctl.delta(job, source, destination, final_run).await?, json);
    Ok(ExitCode::SUCCESS)
}

/// `tag`: adds the tags, or with `--remove` takes them off; prints the job's tags.
pub(crate) async fn tag(
    ctl: &mut Control,
    job: String,
    tags: Vec<String>,
    remove: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (add, remove) = if remove {
        (Vec::new(), tags)
    } else {
        (tags, Vec::new())
    };
    match ctl
        .batch(migrated_ipc::Request::SetTags { job, add, remove })
        .await?
    {
        migrated_ipc::Response::Job { job } => {
            if json {
                println!("{}", serde_json::json!({ "tags": job.summary.tags }));
            } else {
                println!("{}", job.summary.tags.join(" "));
            }
        }
        other => bail!("unexpected reply: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `priority`: prints the job's status.
pub(crate) async fn priority(
    ctl: &mut Control,
    job: String,
    priority: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match ctl
        .batch(migrated_ipc::Request::SetPriority { job, priority })
        .await?
    {
        migrated_ipc::Response::Done { status } => print_status(status, json),
        other => bail!("unexpected reply: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `events`: every event of the job.
pub(crate) async fn events(ctl: &mut Control, job: &str, json: bool) -> anyhow::Result<ExitCode> {
    let events = ctl.events(job).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        for e in &events {
            print_event(e);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `credentials JOB`: gives the secrets from the files given, or asks for both; or
/// `credentials clear JOB --source|--destination`.
pub(crate) async fn credentials(
    ctl: &mut Control,
    args: crate::CredentialsArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use migrated_ipc::{Request, Response};
    let request = match args.clear {
        Some(crate::CredentialsCommand::Clear {
            job,
            source,
            destination,
        }) => {
            if !source && !destination {
                bail!("say which side to clear: --source, --destination or both");
            }
            Request::ClearCredentials {
                job,
                source,
                destination,
            }
        }
        None => {
            let Some(job) = args.job else {
                bail!(
                    "name the job: migratectl credentials JOB (or credentials clear JOB --source)"
                );
            };
            let detail = ctl.status(&job).await?;
            let ask =
                args.source_password_file.is_none() && args.destination_password_file.is_none();
            let secret = |file: Option<PathBuf>, what: &str| -> anyhow::Result<Option<Secret>> {
                match file {
                    Some(f) => Ok(Some(read_secret_file(&f)?)),
                    None if ask => Ok(Some(prompt(what)?)),
                    None => Ok(None),
                }
            };
            Request::SetCredentials {
                source_secret: secret(
                    args.source_password_file,
                    &format!("source ({})", detail.summary.source),
                )?,
                destination_secret: secret(
                    args.destination_password_file,
                    &format!("destination ({})", detail.summary.destination),
                )?,
                job,
            }
        }
    };
    match ctl.batch(request).await? {
        Response::Done { status } => print_status(status, json),
        other => bail!("unexpected reply: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}
