//! `status JOB` and `status JOB --follow`: the job's detail, then (following) a progress line
//! redrawn in a terminal, the events as they come, an ETA, and a reconnection when the daemon
//! restarts; the exit code says how the job ended.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use migrated_core::JobStatus;
use migrated_ipc::JobDetail;
use migrated_ipc::text::clock;

use crate::control::{self, Bus, Control};
use crate::print::{bar, human_bytes, human_duration, print_detail, print_event, status_label};

/// `status`: the detail once, or with `follow` until the job finishes (exit code 1 when it
/// failed). Following needs a connection of its own, so this takes the control connection.
pub(crate) async fn status(
    mut ctl: Control,
    job: &str,
    follow: bool,
    path: &Path,
    bus: Option<Bus>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let detail = ctl.status(job).await?;
    if !follow {
        if json {
            println!("{}", serde_json::to_string_pretty(&detail)?);
        } else {
            print_detail(&detail);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        print_detail(&detail);
        println!();
    }
    if detail.summary.status.is_some_and(|s| s.is_finished()) {
        return Ok(exit_for(detail.summary.status));
    }
    let seen = if json {
        0
    } else {
        detail.events.iter().map(|e| e.seq).max().unwrap_or(0)
    };
    let id = detail.summary.id.clone();
    let updates = ctl.follow(path, &id).await?;
    let reconnect = || {
        let (path, id) = (path.to_owned(), id.clone());
        async move {
            let mut c = Control::connect(&path, bus).await?;
            let detail = c.status(&id).await?;
            let updates = c.follow(&path, &id).await?;
            anyhow::Ok((detail, updates))
        }
    };
    follow_job(updates, json, seen, reconnect).await
}

fn exit_for(status: Option<JobStatus>) -> ExitCode {
    match status {
        Some(JobStatus::Failed) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// Follows a job until it finishes: a progress line (redrawn in a terminal) and the events as
/// they come. Exit code 0 when it completes, 1 when it fails.
async fn follow_job<F, Fut>(
    mut updates: control::Updates,
    json: bool,
    mut seen: u64,
    reconnect: F,
) -> anyhow::Result<ExitCode>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(JobDetail, control::Updates)>>,
{
    let tty = std::io::stdout().is_terminal() && !json;
    let mut last_line = String::new();
    // When copying began and how far it was: the rate since then gives the ETA.
    let mut copy_start: Option<(std::time::Instant, u64)> = None;
    loop {
        let (job, mut events) = match updates.next().await {
            Ok(u) => u,
            Err(e) => {
                // The daemon restarted (or the bus dropped us): follow it again, showing what
                // happened meanwhile, for up to two minutes.
                if tty {
                    println!();
                }
                eprintln!("Lost the daemon ({e}); reconnecting...");
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                let (detail, fresh) = loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    match reconnect().await {
                        Ok(r) => break r,
                        Err(e) if std::time::Instant::now() >= deadline => {
                            return Err(e.context("the daemon did not come back within 2 minutes"));
                        }
                        Err(_) => {}
                    }
                };
                eprintln!("Reconnected.");
                updates = fresh;
                copy_start = None;
                (detail.summary, detail.events)
            }
        };
        // Events already shown (the status printed first, or an earlier update) are not
        // repeated.
        events.retain(|e| e.seq > seen);
        seen = events.iter().map(|e| e.seq).max().unwrap_or(seen).max(seen);

        if json {
            println!("{}", serde_json::json!({ "job": job, "events": events }));
        } else {
            for e in &events {
                if tty {
                    print!("\r\x1b[2K");
                }
                print_event(e);
            }
            let throttled = job
                .throttled_until
                .map(|t| format!(" (throttled until {} UTC)", clock(t)))
                .unwrap_or_default();
            if job.status == Some(JobStatus::Copying) && copy_start.is_none() {
                copy_start = Some((std::time::Instant::now(), job.items_done));
            }
            let eta = match copy_start {
                Some((t, start)) if job.items_done > start && job.items_done < job.items_total => {
                    let rate =
                        (job.items_done - start) as f64 / t.elapsed().as_secs_f64().max(0.001);
                    let left = (job.items_total - job.items_done) as f64 / rate;
                    format!("  ETA {}", human_duration(left))
                }
                _ => String::new(),
            };
            let line = format!(
                "{:<22} {} {}/{} messages {} / {}{eta}{}{throttled}",
                status_label(&job),
                bar(job.items_done, job.items_total, 24),
                job.items_done,
                job.items_total,
                human_bytes(job.bytes_done),
                human_bytes(job.bytes_total),
                job.current_folder
                    .as_deref()
                    .map(|f| format!("  {f}"))
                    .unwrap_or_default()
            );
            if tty {
                print!("\r\x1b[2K{line}");
                std::io::stdout().flush()?;
            } else if line != last_line {
                println!("{line}");
            }
            last_line = line;
        }
        if let Some(status) = job.status
            && (status.is_finished() || status == JobStatus::WaitingForCredentials)
        {
            if tty {
                println!();
            }
            return Ok(exit_for(Some(status)));
        }
    }
}
