//! The commands about the daemon rather than a job: `plugins` (what it loaded and skipped)
//! and `limits` (how many jobs and connections it runs at once).

use std::process::ExitCode;

use anyhow::bail;

use crate::control::Control;
use crate::print::print_plugins;

/// `limits`: shows them, and changes those given.
pub(crate) async fn limits(
    ctl: &mut Control,
    max_jobs: Option<usize>,
    max_connections_per_host: Option<usize>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match ctl
        .batch(migrated_ipc::Request::Limits {
            max_jobs,
            max_connections_per_host,
        })
        .await?
    {
        migrated_ipc::Response::Limits {
            max_jobs,
            max_connections_per_host,
            running,
        } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "max_jobs": max_jobs,
                        "max_connections_per_host": max_connections_per_host,
                        "running": running
                    })
                );
            } else {
                println!(
                    "max jobs  {max_jobs}\nper host  {max_connections_per_host} connections (0: no limit)\nrunning   {running}"
                );
            }
        }
        other => bail!("unexpected reply: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `plugins`: exit code 1 when none is loaded (no job can run).
pub(crate) async fn plugins(ctl: &mut Control, json: bool) -> anyhow::Result<ExitCode> {
    match ctl.batch(migrated_ipc::Request::Plugins).await? {
        migrated_ipc::Response::Plugins { plugins, rejected } => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "plugins": plugins, "rejected": rejected })
                    )?
                );
            } else {
                print_plugins(&plugins, &rejected);
            }
            if plugins.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        other => bail!("unexpected reply: {other:?}"),
    }
    Ok(ExitCode::SUCCESS)
}
