//! `batch plan` (in [`super::plan`]), `batch create|list|status|pause|resume|delta|complete|credentials|cancel|delete`: many
//! mailboxes at once, one job per CSV row; the actions on a batch act on each of its jobs and
//! report each result.

use std::process::ExitCode;

use anyhow::{Context, bail};
use migrated_core::Action;

use super::input::{confirm, load_template};
use crate::BatchCommand;
use crate::control::Control;
use crate::print::{print_batches, print_list};

/// Runs a batch command; exit code 4 when the daemon refused the action for some job.
pub(crate) async fn run(
    ctl: &mut Control,
    command: BatchCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use migrated_ipc::{Request, Response};
    let act = |name: String, action: Action| Request::ActBatch { name, action };
    let request = match command {
        BatchCommand::Test { csv, template } => {
            let text = std::fs::read_to_string(&csv)
                .with_context(|| format!("cannot read CSV file {}", csv.display()))?;
            let template = load_template(&template)?;
            return preflight(ctl, template, Some(text), json).await;
        }
        BatchCommand::Plan {
            csv,
            template,
            shards,
            out,
            mbps,
        } => {
            let args = super::plan::PlanArgs {
                csv,
                template,
                shards,
                out,
                mbps,
            };
            return super::plan::plan(ctl, args, json).await;
        }
        BatchCommand::Create {
            name,
            csv,
            template,
        } => {
            let text = std::fs::read_to_string(&csv)
                .with_context(|| format!("cannot read CSV file {}", csv.display()))?;
            let template = load_template(&template)?;
            Request::CreateBatch {
                name,
                template: Box::new(template),
                csv: text,
            }
        }
        BatchCommand::List => Request::ListBatches,
        BatchCommand::Status { name } => Request::BatchStatus { name },
        BatchCommand::Pause { name } => act(name, Action::Pause),
        BatchCommand::Resume { name } => act(name, Action::Resume),
        BatchCommand::Delta { name, final_run } => Request::DeltaBatch { name, final_run },
        BatchCommand::Complete { name } => Request::DeltaBatch {
            name,
            final_run: true,
        },
        BatchCommand::Credentials {
            name,
            csv,
            template,
        } => {
            let text = std::fs::read_to_string(&csv)
                .with_context(|| format!("cannot read CSV file {}", csv.display()))?;
            let template = template.as_deref().map(load_template).transpose()?;
            let secret =
                |e: Option<&migrated_core::EndpointSpec>| e.and_then(|e| e.login_secret().cloned());
            Request::BatchCredentials {
                name,
                source_secret: secret(template.as_ref().map(|t| &t.source)),
                destination_secret: secret(template.as_ref().map(|t| &t.destination)),
                csv: text,
            }
        }
        BatchCommand::Cancel { name, yes } => {
            if !yes && !confirm(&format!("Cancel every job of batch {name}?"))? {
                return Ok(ExitCode::from(1));
            }
            act(name, Action::Cancel)
        }
        BatchCommand::Delete { name, yes } => {
            if !yes && !confirm(&format!("Delete every job of batch {name} and their data?"))? {
                return Ok(ExitCode::from(1));
            }
            act(name, Action::Delete)
        }
    };
    match ctl.batch(request).await? {
        Response::Created { id } => {
            if json {
                println!("{}", serde_json::json!({ "batch": id }));
            } else {
                println!("{id}");
            }
        }
        Response::Batches { batches } => {
            if json {
                println!("{}", serde_json::to_string_pretty(&batches)?);
            } else {
                print_batches(&batches);
            }
        }
        Response::BatchJobs { batch, jobs } => {
            if json {
                println!("{}", serde_json::json!({ "batch": batch, "jobs": jobs }));
            } else {
                print_list(&jobs);
            }
        }
        Response::BatchDone { results } => {
            let refused = results.iter().filter(|(_, r)| r.is_err()).count();
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                for (job, r) in &results {
                    match r {
                        Ok(s) => println!("{job:<40} {s}"),
                        Err(e) => println!("{job:<40} refused: {e}"),
                    }
                }
            }
            if refused > 0 {
                return Ok(ExitCode::from(4));
            }
        }
        other => bail!("unexpected reply: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The daemon's pre-flight of a batch's rows (or of the template as one job).
pub(crate) async fn preflight_rows(
    ctl: &mut Control,
    template: migrated_core::JobSpec,
    csv: Option<String>,
) -> anyhow::Result<Vec<migrated_ipc::PreflightRow>> {
    use migrated_ipc::{Request, Response};
    match ctl
        .batch(Request::Preflight {
            template: Box::new(template),
            csv,
        })
        .await?
    {
        Response::Preflight { rows } => Ok(rows),
        other => bail!("unexpected reply: {other:?}"),
    }
}

/// The pre-flight's rows and totals as JSON.
pub(crate) fn preflight_json(rows: &[migrated_ipc::PreflightRow]) -> serde_json::Value {
    let totals = crate::print::preflight_totals(rows);
    serde_json::json!({ "rows": rows, "totals": totals.to_json() })
}

/// Runs a pre-flight and prints its rows and totals; exit code 1 when a mailbox has a problem.
pub(crate) async fn preflight(
    ctl: &mut Control,
    template: migrated_core::JobSpec,
    csv: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let rows = preflight_rows(ctl, template, csv).await?;
    let totals = crate::print::preflight_totals(&rows);
    if json {
        println!("{}", serde_json::to_string_pretty(&preflight_json(&rows))?);
    } else {
        crate::print::print_preflight(&rows, &totals);
    }
    Ok(if rows.iter().all(|r| r.problems.is_empty()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
