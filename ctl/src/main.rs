//! `migratectl`: drives the migrated daemon over its control socket or D-Bus, in the habits
//! of systemctl.
//!
//! Exit codes: 0 success; 1 failure (for `status --follow`: the job failed); 2 usage error;
//! 3 no such job; 4 the job's status does not allow it; 5 permission denied; 6 the daemon
//! cannot be reached.

mod control;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use control::Control;
use migrated_core::{Action, JobSpec, JobStatus, Secret};
use migrated_ipc::text::clock;
use migrated_ipc::{ClientError, ErrorKind, EventRow, JobDetail, JobSummary};

/// Controls the migrated daemon.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// The daemon's control socket. Default: $MIGRATED_SOCKET, else /run/migrated/migrated.sock
    /// when it exists, else $XDG_RUNTIME_DIR/migrated/migrated.sock (a user instance).
    #[arg(long, global = true, env = "MIGRATED_SOCKET")]
    socket: Option<PathBuf>,
    /// Talk D-Bus instead of the socket: `system` (the system service) or `session` (a user
    /// instance).
    #[arg(long, global = true, env = "MIGRATECTL_BUS", value_enum)]
    bus: Option<control::Bus>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates a job from a job file. Passwords come from the file's `password_file` (read here,
    /// by you, not by the daemon) or are asked for; never from the command line.
    Create {
        /// The job file (TOML).
        job: PathBuf,
    },
    /// Checks a job file's two endpoints (connection, TLS, login, folders) without creating
    /// anything. Exit code 1 when a side fails.
    Test {
        /// The job file (TOML).
        job: PathBuf,
    },
    /// Lists jobs, with filters and an order.
    List {
        /// Only jobs with this tag (repeat: jobs with any of them).
        #[arg(long)]
        tag: Vec<String>,
        /// Only jobs in this status (`Copying`, `Failed`, ...; repeat for several).
        #[arg(long)]
        status: Vec<String>,
        /// Order: name, status, priority, tag or created (default).
        #[arg(long, value_enum, default_value_t = ListOrder::Created)]
        sort: ListOrder,
    },
    /// Adds tags to a job, or with --remove takes them off.
    Tag {
        /// Job id or name.
        job: String,
        /// The tags.
        #[arg(required = true)]
        tags: Vec<String>,
        /// Remove these tags instead.
        #[arg(long)]
        remove: bool,
    },
    /// Shows a job: status, progress, folders, latest events.
    Status {
        /// Job id or name.
        job: String,
        /// Keep following the job until it finishes.
        #[arg(long, short)]
        follow: bool,
    },
    /// Pauses a job after the batches in flight.
    Pause {
        /// Job id or name.
        job: String,
    },
    /// Resumes a stopped or failed job.
    Resume {
        /// Job id or name.
        job: String,
    },
    /// Cancels a job.
    Cancel {
        /// Job id or name.
        job: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Deletes a job and all its data (ledger, report, events).
    Delete {
        /// Job id or name.
        job: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Forgets what a job copied (its ledger): the next run copies everything again, as after
    /// the destination mailbox was emptied. The job stays stopped until `resume`.
    Reset {
        /// Job id or name.
        job: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Runs a job again, copying what is new or changed. Asks for the passwords when they were
    /// erased at completion.
    Delta {
        /// Job id or name.
        job: String,
        /// Read the source password from this file.
        #[arg(long)]
        source_password_file: Option<PathBuf>,
        /// Read the destination password from this file.
        #[arg(long)]
        destination_password_file: Option<PathBuf>,
        /// The final delta (cutover): no recurring delta after it, credentials erased at its end.
        #[arg(long = "final")]
        final_run: bool,
    },
    /// Shows a job's events.
    Events {
        /// Job id or name.
        job: String,
    },
    /// Changes a job's priority: lower numbers start first (default 100).
    Priority {
        /// Job id or name.
        job: String,
        /// The new priority.
        priority: u32,
    },
    /// Lists the source plugins the daemon loaded (name, version, ABI, kinds, the job settings
    /// each accepts) and the files of its plugin directory it skipped, with the reason.
    Plugins,
    /// Shows, and with --max-jobs changes, how many jobs run at once.
    Limits {
        /// New global limit.
        #[arg(long)]
        max_jobs: Option<usize>,
        /// New per-host connection limit (0: none).
        #[arg(long)]
        max_connections_per_host: Option<usize>,
    },
    /// A report of one job, one batch, or every job: per-folder statistics and every excluded
    /// or refused message with the reason, as a table, JSON or CSV.
    Report {
        /// Job id or name (all jobs when left out).
        job: Option<String>,
        /// Every job of this batch.
        #[arg(long, conflicts_with = "job")]
        batch: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
    /// Many mailboxes at once: a CSV file (EmailAddress,UserName,Password as Exchange Online,
    /// optionally DestinationUserName,DestinationPassword) and a template with the endpoints.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Prints the manual page (roff): `migratectl man | man -l -`.
    Man,
}

/// Report formats.
/// How `list` orders jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ListOrder {
    /// Oldest first.
    Created,
    /// By name.
    Name,
    /// Lowest priority number (starts first) first.
    Priority,
    /// By status.
    Status,
    /// By first tag; untagged last.
    Tag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    /// Readable tables.
    Table,
    /// One JSON document.
    Json,
    /// One CSV table (RFC 4180): a row per folder and per excluded or refused message.
    Csv,
}

#[derive(Debug, Subcommand)]
enum BatchCommand {
    /// Creates a batch: one job per CSV row. Every problem of the file is reported at once and
    /// nothing is stored then.
    Create {
        /// Batch name.
        name: String,
        /// The CSV file.
        #[arg(long)]
        csv: PathBuf,
        /// A job file without users: endpoints, folders, limits; `password_file` in
        /// [destination] is the admin/proxy secret used where a row has no DestinationPassword.
        #[arg(long)]
        template: PathBuf,
    },
    /// Lists batches with their counts.
    List,
    /// Shows a batch's mailboxes.
    Status {
        /// Batch name.
        name: String,
    },
    /// Pauses every job of a batch.
    Pause {
        /// Batch name.
        name: String,
    },
    /// Resumes every job of a batch.
    Resume {
        /// Batch name.
        name: String,
    },
    /// Runs every job of a batch again (delta).
    Delta {
        /// Batch name.
        name: String,
    },
    /// Cancels every job of a batch.
    Cancel {
        /// Batch name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Deletes every job of a batch and their data.
    Delete {
        /// Batch name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("migratectl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("migratectl: {e:#}");
            let code = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Daemon {
                    kind: ErrorKind::NotFound,
                    ..
                }) => 3,
                Some(ClientError::Daemon {
                    kind: ErrorKind::Conflict,
                    ..
                }) => 4,
                Some(ClientError::Daemon {
                    kind: ErrorKind::Denied,
                    ..
                }) => 5,
                Some(ClientError::Connect { .. }) => 6,
                _ => 1,
            };
            ExitCode::from(code)
        }
    }
}

fn socket_path(given: Option<PathBuf>) -> PathBuf {
    if let Some(p) = given {
        return p;
    }
    let system = PathBuf::from("/run/migrated/migrated.sock");
    if system.exists() {
        return system;
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .map_or(system, |d| PathBuf::from(d).join("migrated/migrated.sock"))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Generated from the CLI definition: no daemon needed.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "migratectl", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut std::io::stdout())?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let path = socket_path(cli.socket);
    let json = cli.json;
    let bus = cli.bus;
    let mut ctl = Control::connect(&path, bus).await?;
    match cli.command {
        Command::Completions { .. } | Command::Man => unreachable!("handled above"),
        Command::Create { job } => {
            let id = ctl.create(load_spec(&job)?).await?;
            if json {
                println!("{}", serde_json::json!({ "id": id }));
            } else {
                println!("{id}");
            }
        }
        Command::Test { job } => {
            let checks = ctl.test(load_spec(&job)?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                for c in &checks {
                    println!(
                        "{:<12} {:<40} {}  {}",
                        c.side,
                        c.endpoint,
                        if c.ok { "OK" } else { "FAILED" },
                        c.message
                    );
                }
            }
            if checks.iter().any(|c| !c.ok) {
                return Ok(ExitCode::from(1));
            }
        }
        Command::List { tag, status, sort } => {
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
                ListOrder::Status => {
                    jobs.sort_by_key(|j| (j.status.map(|s| s.to_string()), j.created))
                }
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
        }
        Command::Status { job, follow } => {
            let detail = ctl.status(&job).await?;
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
            let updates = ctl.follow(&path, &id).await?;
            let reconnect = || {
                let (path, id) = (path.clone(), id.clone());
                async move {
                    let mut c = Control::connect(&path, bus).await?;
                    let detail = c.status(&id).await?;
                    let updates = c.follow(&path, &id).await?;
                    anyhow::Ok((detail, updates))
                }
            };
            return follow_job(updates, json, seen, reconnect).await;
        }
        Command::Pause { job } => print_status(ctl.act(&job, Action::Pause).await?, json),
        Command::Resume { job } => print_status(ctl.act(&job, Action::Resume).await?, json),
        Command::Cancel { job, yes } => {
            if !yes && !confirm(&format!("Cancel job {job}?"))? {
                return Ok(ExitCode::from(1));
            }
            print_status(ctl.act(&job, Action::Cancel).await?, json);
        }
        Command::Delete { job, yes } => {
            if !yes
                && !confirm(&format!(
                    "Delete job {job} and all its data (ledger, report, events)?"
                ))?
            {
                return Ok(ExitCode::from(1));
            }
            ctl.act(&job, Action::Delete).await?;
            if json {
                println!("{}", serde_json::json!({ "deleted": true }));
            } else {
                println!("Deleted");
            }
        }
        Command::Reset { job, yes } => {
            let question = format!(
                "Reset job {job}? The next run copies everything again (duplicates unless the destination was emptied)."
            );
            if !yes && !confirm(&question)? {
                return Ok(ExitCode::from(1));
            }
            print_status(ctl.act(&job, Action::Reset).await?, json);
        }
        Command::Delta {
            job,
            source_password_file,
            destination_password_file,
            final_run,
        } => {
            let detail = ctl.status(&job).await?;
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
            print_status(ctl.delta(&job, source, destination, final_run).await?, json);
        }
        Command::Batch(b) => return batch(&mut ctl, b, json).await,
        Command::Report { job, batch, format } => {
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
        }
        Command::Tag { job, tags, remove } => {
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
        }
        Command::Priority { job, priority } => {
            match ctl
                .batch(migrated_ipc::Request::SetPriority { job, priority })
                .await?
            {
                migrated_ipc::Response::Done { status } => print_status(status, json),
                other => bail!("unexpected reply: {other:?}"),
            }
        }
        Command::Limits {
            max_jobs,
            max_connections_per_host,
        } => match ctl
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
        },
        Command::Plugins => match ctl.batch(migrated_ipc::Request::Plugins).await? {
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
        },
        Command::Events { job } => {
            let events = ctl.events(&job).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&events)?);
            } else {
                for e in &events {
                    print_event(e);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn batch(ctl: &mut Control, command: BatchCommand, json: bool) -> anyhow::Result<ExitCode> {
    use migrated_ipc::{Request, Response};
    let act = |name: String, action: Action| Request::ActBatch { name, action };
    let request = match command {
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
        BatchCommand::Delta { name } => act(name, Action::Delta),
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
                println!(
                    "{:<20} {:>6} {:>22} {:>8}  STATUSES",
                    "BATCH", "JOBS", "MESSAGES", "FAILED"
                );
                for b in &batches {
                    let statuses: Vec<String> =
                        b.statuses.iter().map(|(s, n)| format!("{n} {s}")).collect();
                    println!(
                        "{:<20} {:>6} {:>22} {:>8}  {}",
                        b.name,
                        b.jobs,
                        format!("{}/{}", b.items_done, b.items_total),
                        b.failed,
                        statuses.join(", ")
                    );
                }
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

/// A batch template: a job file without users; the destination's `password_file` (the
/// admin/proxy secret) is read here.
fn load_template(path: &Path) -> anyhow::Result<JobSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read template {}", path.display()))?;
    let mut spec: JobSpec =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("template {}: {e}", path.display()))?;
    for e in [&mut spec.source, &mut spec.destination] {
        if let Some(file) = e.password_file.take() {
            e.password = Some(read_secret_file(&file)?);
        }
    }
    Ok(spec)
}

fn exit_for(status: Option<JobStatus>) -> ExitCode {
    match status {
        Some(JobStatus::Failed) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

fn print_status(status: JobStatus, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "status": status }));
    } else {
        println!("{status}");
    }
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} Confirmation needed: pass --yes when not running in a terminal");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn read_secret_file(path: &Path) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    Ok(Secret::new(text.lines().next().unwrap_or("").to_owned()))
}

fn prompt(what: &str) -> anyhow::Result<Secret> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "the password for the {what} is needed: give it in a password file (never on the command line)"
        );
    }
    let p = rpassword::prompt_password(format!("Password for the {what}: "))?;
    Ok(Secret::new(p))
}

/// Reads a job file; `password_file`s are read here, as the user running migratectl, and
/// replaced by the secret, which travels to the daemon over the socket only.
fn load_spec(path: &Path) -> anyhow::Result<JobSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read job file {}", path.display()))?;
    let mut spec: JobSpec =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("job file {}: {e}", path.display()))?;
    for (side, e) in [
        ("source", &mut spec.source),
        ("destination", &mut spec.destination),
    ] {
        if let Some(file) = e.password_file.take() {
            if e.password.is_some() {
                bail!(
                    "job file {}: [{side}]: give password_file or password, not both",
                    path.display()
                );
            }
            e.password =
                Some(read_secret_file(&file).with_context(|| {
                    format!("job file {}: [{side}] password_file", path.display())
                })?);
        } else if e.password.is_none() {
            e.password = Some(prompt(&format!("{side} ({}@{})", e.user, e.host))?);
        }
    }
    Ok(spec)
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1_000_000_000 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

fn bar(done: u64, total: u64, width: usize) -> String {
    let frac = if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = (frac * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        "-".repeat(width - filled),
        frac * 100.0
    )
}

fn status_label(s: &JobSummary) -> String {
    s.status
        .map_or_else(|| "unknown".to_owned(), |s| s.to_string())
}

fn print_list(jobs: &[JobSummary]) {
    println!(
        "{:<14} {:<20} {:<24} {:>22} {:>8} {:>4}  TAGS",
        "ID", "NAME", "STATUS", "MESSAGES", "FAILED", "PRIO"
    );
    for j in jobs {
        println!(
            "{:<14} {:<20} {:<24} {:>22} {:>8} {:>4}  {}",
            j.id,
            j.name,
            status_label(j),
            format!("{}/{}", j.items_done, j.items_total),
            j.failed,
            j.priority,
            j.tags.join(" ")
        );
    }
    println!("\n{} jobs", jobs.len());
}

fn print_detail(d: &JobDetail) {
    let s = &d.summary;
    println!("job          {} ({})", s.id, s.name);
    println!("status       {}", status_label(s));
    let state = |c: &Option<String>| c.as_deref().map(|c| format!("  ({c})")).unwrap_or_default();
    println!("source       {}{}", s.source, state(&s.source_connection));
    println!(
        "destination  {}{}",
        s.destination,
        state(&s.destination_connection)
    );
    println!(
        "progress     {}  {} / {} messages  {} / {}",
        bar(s.items_done, s.items_total, 30),
        s.items_done,
        s.items_total,
        human_bytes(s.bytes_done),
        human_bytes(s.bytes_total)
    );
    if let Some(f) = &s.current_folder {
        println!("folder       {f}");
    }
    if d.duration_secs > 0.0 {
        println!(
            "last run     {}, {:.0} messages/min, {:.1} MB/s",
            human_duration(d.duration_secs),
            s.items_done as f64 * 60.0 / d.duration_secs,
            s.bytes_done as f64 / 1e6 / d.duration_secs
        );
    }
    if let Some(t) = s.throttled_until {
        println!("throttled    by the server until {} UTC", clock(t));
    }
    if let Some(e) = &s.error {
        println!("error        {e}");
    }
    if !d.folders.is_empty() {
        print!("\n{}", migrated_ipc::text::folder_table(&d.folders));
    }
    if !d.verification.is_empty() {
        let missing: usize = d.verification.iter().map(|v| v.missing.len()).sum();
        let excluded: usize = d
            .verification
            .iter()
            .flat_map(|v| &v.missing)
            .filter(|m| m.reason.starts_with("excluded"))
            .count();
        println!(
            "\nverification {} ({}): {}",
            d.verified_at.map(clock).unwrap_or_default(),
            if missing == excluded {
                "exact"
            } else {
                "incomplete"
            },
            match (missing, excluded) {
                (0, _) => "every source message is on the destination".to_owned(),
                (m, e) if m == e => {
                    format!("every source message is on the destination but the {e} excluded")
                }
                (m, e) => format!(
                    "{} messages missing on the destination (and {e} excluded)",
                    m - e
                ),
            }
        );
        println!(
            "  {:<28} {:>9} {:>10} {:>9} {:>10}  DESTINATION",
            "FOLDER", "SOURCE", "BYTES", "DEST", "BYTES"
        );
        for v in &d.verification {
            println!(
                "  {:<28} {:>9} {:>10} {:>9} {:>10}  {}",
                v.source,
                v.source_messages,
                human_bytes(v.source_bytes),
                v.destination_messages,
                human_bytes(v.destination_bytes),
                v.destination
            );
            for i in &v.missing {
                println!(
                    "  missing   UID {} {} Message-ID {}{}: {}",
                    i.uid,
                    human_bytes(i.size),
                    i.message_id.as_deref().unwrap_or("none"),
                    i.subject
                        .as_deref()
                        .map(|s| format!(" Subject {s:?}"))
                        .unwrap_or_default(),
                    i.reason
                );
            }
        }
    }
    for i in &d.excluded {
        println!(
            "excluded  {} UID {} {} Message-ID {}{}: {}",
            i.folder,
            i.uid,
            human_bytes(i.size),
            i.message_id.as_deref().unwrap_or("none"),
            i.subject
                .as_deref()
                .map(|s| format!(" Subject {s:?}"))
                .unwrap_or_default(),
            i.reason
        );
    }
    for i in &d.failed {
        println!(
            "failed    {} UID {} {} Message-ID {}{}: {}",
            i.folder,
            i.uid,
            human_bytes(i.size),
            i.message_id.as_deref().unwrap_or("none"),
            i.subject
                .as_deref()
                .map(|s| format!(" Subject {s:?}"))
                .unwrap_or_default(),
            i.reason
        );
    }
    if !d.events.is_empty() {
        println!();
        for e in &d.events {
            print_event(e);
        }
    }
}

fn print_event(e: &EventRow) {
    println!("#{:<5} {:<8} {}", e.seq, e.level, e.message);
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

/// The plugin table: one line per plugin, its settings under it, then the skipped files.
fn print_plugins(plugins: &[migrated_ipc::PluginRow], rejected: &[migrated_ipc::RejectedPlugin]) {
    println!(
        "{:<12} {:<9} {:<5} {:<14} DESCRIPTION",
        "PLUGIN", "VERSION", "ABI", "KINDS"
    );
    for p in plugins {
        println!(
            "{:<12} {:<9} {:<5} {:<14} {}",
            p.name,
            p.version,
            p.abi,
            p.kinds.join(","),
            p.description
        );
        for s in &p.settings {
            println!(
                "    setting {} = {} (default {}): {}",
                s.name, s.kind, s.default, s.help
            );
        }
        println!("    from {}", p.path);
    }
    if plugins.is_empty() {
        println!("(no plugin loaded: no job can run)");
    }
    for r in rejected {
        println!("skipped {}: {}", r.path, r.reason);
    }
}

/// `42s`, `3m05s`, `2h10m`, for the ETA.
fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}
