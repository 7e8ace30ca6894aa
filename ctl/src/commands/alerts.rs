//! `alerts`: the Good news and Bad news the daemon keeps with the jobs, listed with filters or
//! cleared.

use std::process::ExitCode;

use anyhow::bail;
use migrated_ipc::{AlertLevel, Request, Response};

use crate::control::Control;
use crate::{AlertLevelArg, AlertsArgs, AlertsCommand};

/// Lists the alerts (oldest first) or clears one or all.
pub(crate) async fn run(
    ctl: &mut Control,
    args: AlertsArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(AlertsCommand::Clear { id, all }) = args.clear {
        let id = if all { None } else { id };
        let Response::Cleared { count } = ctl.call(Request::ClearAlerts { id }).await? else {
            bail!("unexpected reply to clear alerts");
        };
        if json {
            println!("{}", serde_json::json!({ "cleared": count }));
        } else {
            println!("{count} alerts cleared.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let level = args.level.map(|l| match l {
        AlertLevelArg::Good => AlertLevel::Good,
        AlertLevelArg::Bad => AlertLevel::Bad,
    });
    let request = Request::Alerts {
        batch: args.batch,
        job: args.job,
        level,
    };
    let Response::Alerts { alerts } = ctl.call(request).await? else {
        bail!("unexpected reply to alerts");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&alerts)?);
        return Ok(ExitCode::SUCCESS);
    }
    if alerts.is_empty() {
        println!("No alerts.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<19} {:<4} {:<28} {:<16} MESSAGE",
        "ID", "TIME (UTC)", "NEWS", "JOB", "KIND"
    );
    for a in &alerts {
        println!(
            "{:<20} {:<19} {:<4} {:<28} {:<16} {}",
            a.id,
            migrated_ipc::text::date_time(a.time),
            a.level.as_str(),
            a.job_name,
            a.kind,
            a.message
        );
        if !a.what_to_do.is_empty() {
            println!("{:<20} What to do: {}", "", a.what_to_do);
        }
    }
    Ok(ExitCode::SUCCESS)
}
