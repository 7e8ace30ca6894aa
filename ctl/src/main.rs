//! `migratectl`: drives the migrated daemon over its control socket or D-Bus, in the habits
//! of systemctl.
//!
//! Exit codes: 0 success; 1 failure (for `status --follow`: the job failed); 2 usage error;
//! 3 no such job; 4 the job's status does not allow it; 5 permission denied; 6 the daemon
//! cannot be reached.

mod commands;
mod control;
mod print;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commands::{alerts, authorize, batches, daemon, endpoints, follow, jobs, reports, settings};
use control::Control;
use migrated_core::Action;
use migrated_ipc::{ClientError, ErrorKind};

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
        /// Read the source password from this file (the administrator's, when the source
        /// logs in with admin_user).
        #[arg(long)]
        source_password_file: Option<PathBuf>,
        /// Read the destination password from this file (the administrator's, when the
        /// destination logs in with admin_user).
        #[arg(long)]
        destination_password_file: Option<PathBuf>,
        /// The final delta (cutover): no recurring delta after it, credentials erased at its end.
        #[arg(long = "final")]
        final_run: bool,
    },
    /// Gives a job its credentials again (`credentials JOB`), or clears one side's
    /// (`credentials clear JOB --source|--destination`: the job waits for credentials).
    Credentials(CredentialsArgs),
    /// Prints a job's settings as a job file (secrets never shown: only whether each is set).
    Show {
        /// Job id or name.
        job: String,
    },
    /// Edits a job's settings in $VISUAL or $EDITOR; they apply from the job's next run, or
    /// the change is refused with the line and field and the job stays unchanged.
    Edit {
        /// Job id or name.
        job: String,
    },
    /// Named endpoints: connections kept by name that jobs and templates share.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Shows the alerts (Good news and Bad news) kept with the jobs, oldest first, or with
    /// `alerts clear ID|--all` clears them.
    Alerts(AlertsArgs),
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
        /// The log of this job (one row per event; `--format csv` for a spreadsheet).
        #[arg(long, value_name = "JOB", conflicts_with_all = ["job", "batch"])]
        events: Option<String>,
        /// One report of several shards (needs no daemon): the JSON reports
        /// (`report --batch NAME --format json`) of every shard, as files or a directory of
        /// `*.json` files (this release's or an earlier one's bare array), merged into one
        /// batch report (totals over every mailbox, mailboxes, failures).
        #[arg(long, value_name = "DIR|FILE", num_args = 1.., conflicts_with_all = ["job", "batch", "events"])]
        merge: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
    /// Many mailboxes at once: a CSV file (EmailAddress,UserName,Password as Exchange Online,
    /// optionally DestinationUserName,DestinationPassword) and a template with the endpoints.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Authorizes a personal mailbox with OAuth 2 (the device authorization grant, RFC 8628):
    /// prints a page and a code for the user to enter, waits for their consent and writes the
    /// refresh token (mode 0600) to the side's `refresh_token_file`, or to --out. Needs no
    /// daemon; then `migratectl create JOBFILE` (or `delta JOB --SIDE-password-file FILE`).
    Authorize {
        /// The job file whose [source.oauth2] or [destination.oauth2] names the provider and
        /// client.
        job: PathBuf,
        /// Which side to authorize.
        #[arg(long, value_enum, default_value = "source")]
        side: authorize::Side,
        /// Where to write the refresh token, instead of the side's refresh_token_file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// How long to wait for the user's consent, in seconds.
        #[arg(long, default_value_t = 900)]
        wait_secs: u64,
    },
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Prints the manual page (roff): `migratectl man | man -l -`.
    Man,
}

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

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    /// Readable tables.
    Table,
    /// One JSON object: `{"format": 2, "totals": {..}, "jobs": [..]}`.
    Json,
    /// One CSV table (RFC 4180): a row per folder and per excluded or refused message.
    Csv,
}

/// `credentials JOB [--source-password-file F] [--destination-password-file F]`, or
/// `credentials clear JOB --source|--destination`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct CredentialsArgs {
    #[command(subcommand)]
    clear: Option<CredentialsCommand>,
    /// Job id or name.
    job: Option<String>,
    /// Read the source password from this file (the administrator's, when the source logs
    /// in with admin_user). Without either file, both are asked for.
    #[arg(long)]
    source_password_file: Option<PathBuf>,
    /// Read the destination password from this file.
    #[arg(long)]
    destination_password_file: Option<PathBuf>,
}

/// `alerts [--batch B] [--job J] [--level good|bad]` or `alerts clear ID|--all`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AlertsArgs {
    #[command(subcommand)]
    clear: Option<AlertsCommand>,
    /// Only the jobs of this batch.
    #[arg(long)]
    batch: Option<String>,
    /// Only this job (id or name).
    #[arg(long)]
    job: Option<String>,
    /// Only Good news or only Bad news.
    #[arg(long, value_enum)]
    level: Option<AlertLevelArg>,
}

/// Good news or Bad news.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AlertLevelArg {
    /// Good news.
    Good,
    /// Bad news.
    Bad,
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// Clears one alert by its id (`migratectl alerts` shows them), or all with --all.
    Clear {
        /// The alert's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Clear every alert.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum EndpointCommand {
    /// Saves a connection by name from an endpoint file (a `[source]` table's fields without
    /// `user`, plus `max_migrations` and `max_syncs`); with --replace changes one, applied from
    /// each job's next run.
    Create {
        /// The endpoint's name.
        name: String,
        /// The endpoint file (TOML).
        #[arg(long)]
        file: PathBuf,
        /// Change the endpoint of that name.
        #[arg(long)]
        replace: bool,
    },
    /// Lists the endpoints with their limits and how many jobs use them.
    List,
    /// Shows one endpoint and the jobs that use it (secrets only as set or not).
    Show {
        /// The endpoint's name.
        name: String,
    },
    /// Deletes an endpoint; refused while jobs use it, naming them.
    Delete {
        /// The endpoint's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum CredentialsCommand {
    /// Erases one side's credentials (or both): the job waits for credentials until
    /// `migratectl credentials JOB` gives them again.
    Clear {
        /// Job id or name.
        job: String,
        /// Clear the source's.
        #[arg(long)]
        source: bool,
        /// Clear the destination's.
        #[arg(long)]
        destination: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BatchCommand {
    /// Pre-flight: logs in to both sides of every row (several at once) and prints one line
    /// per mailbox (logins, folders, messages and bytes to copy, the largest message, what the
    /// size limit excludes, problems) and the totals; creates nothing. Exit code 1 when a
    /// mailbox has a problem.
    Test {
        /// The CSV file.
        #[arg(long)]
        csv: PathBuf,
        /// The batch template (as for `batch create`).
        #[arg(long)]
        template: PathBuf,
    },
    /// Splits a batch over N daemons (`migrated --shard K/N`): pre-scans every row as `test`
    /// does (the daemon logs in to both sides and counts every folder's messages and bytes),
    /// balances the shards by bytes (largest mailbox first onto the least loaded shard) and
    /// writes NAME.plan.csv (every row with its `Shard`, for every daemon) and NAME.shard-K.csv
    /// (mode 0600: they hold the CSV's passwords); prints each shard's expected makespan.
    /// Exit code 1, nothing written, when a mailbox has a problem.
    Plan {
        /// The CSV file.
        #[arg(long)]
        csv: PathBuf,
        /// The batch template (as for `batch create`).
        #[arg(long)]
        template: PathBuf,
        /// Shards (daemons) to split it over.
        #[arg(long)]
        shards: usize,
        /// Where to write the files (default: beside the CSV).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Megabytes (10^6 bytes) per second one shard moves, for the makespan (BENCHMARKS.md
        /// has what one daemon moved here).
        #[arg(long, default_value_t = 50.0)]
        mbps: f64,
    },
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
    /// Runs every job of a batch again (delta); with --final, the final delta (as `complete`).
    Delta {
        /// Batch name.
        name: String,
        /// The final delta (cutover): no incremental sync after it, credentials erased as
        /// each mailbox completes.
        #[arg(long = "final")]
        final_run: bool,
    },
    /// Completes a batch (the cutover): the final delta of every mailbox; after it no
    /// incremental sync runs and the credentials are erased.
    Complete {
        /// Batch name.
        name: String,
    },
    /// Gives every mailbox of a batch its credentials again in one step, from a CSV in the
    /// batch's format (rows matched by EmailAddress); mailboxes waiting for them are queued.
    Credentials {
        /// Batch name.
        name: String,
        /// The CSV file (EmailAddress, UserName, Password[, DestinationPassword]).
        #[arg(long)]
        csv: PathBuf,
        /// The batch's template, for its password files (the destination's admin/proxy
        /// secret, a source administrator's): rows without a password of their own get them.
        #[arg(long)]
        template: Option<PathBuf>,
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

/// Connects (unless the command needs no daemon) and runs the command.
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
        Command::Report { merge, format, .. } if !merge.is_empty() => {
            return reports::merge(merge, *format);
        }
        Command::Authorize {
            job,
            side,
            out,
            wait_secs,
        } => {
            let (job, side, out) = (job.clone(), *side, out.clone());
            let wait = std::time::Duration::from_secs(*wait_secs);
            tokio::task::spawn_blocking(move || authorize::run(&job, side, out.as_deref(), wait))
                .await??;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let path = socket_path(cli.socket);
    let json = cli.json;
    let bus = cli.bus;
    let mut ctl = Control::connect(&path, bus).await?;
    match cli.command {
        Command::Completions { .. } | Command::Man | Command::Authorize { .. } => {
            unreachable!("handled above")
        }
        Command::Create { job } => jobs::create(&mut ctl, &job, json).await,
        Command::Test { job } => jobs::test(&mut ctl, &job, json).await,
        Command::List { tag, status, sort } => {
            jobs::list(&mut ctl, &tag, &status, sort, json).await
        }
        Command::Status { job, follow } => {
            follow::status(ctl, &job, follow, &path, bus, json).await
        }
        Command::Pause { job } => jobs::act(&mut ctl, &job, Action::Pause, json).await,
        Command::Resume { job } => jobs::act(&mut ctl, &job, Action::Resume, json).await,
        Command::Cancel { job, yes } => jobs::cancel(&mut ctl, &job, yes, json).await,
        Command::Delete { job, yes } => jobs::delete(&mut ctl, &job, yes, json).await,
        Command::Reset { job, yes } => jobs::reset(&mut ctl, &job, yes, json).await,
        Command::Delta {
            job,
            source_password_file,
            destination_password_file,
            final_run,
        } => {
            jobs::delta(
                &mut ctl,
                &job,
                source_password_file,
                destination_password_file,
                final_run,
                json,
            )
            .await
        }
        Command::Batch(b) => batches::run(&mut ctl, b, json).await,
        Command::Credentials(c) => jobs::credentials(&mut ctl, c, json).await,
        Command::Report {
            events: Some(job),
            format,
            ..
        } => reports::events(&mut ctl, &job, format).await,
        Command::Report {
            job, batch, format, ..
        } => reports::report(&mut ctl, job, batch, format).await,
        Command::Tag { job, tags, remove } => jobs::tag(&mut ctl, job, tags, remove, json).await,
        Command::Priority { job, priority } => jobs::priority(&mut ctl, job, priority, json).await,
        Command::Limits {
            max_jobs,
            max_connections_per_host,
        } => daemon::limits(&mut ctl, max_jobs, max_connections_per_host, json).await,
        Command::Plugins => daemon::plugins(&mut ctl, json).await,
        Command::Events { job } => jobs::events(&mut ctl, &job, json).await,
        Command::Alerts(a) => alerts::run(&mut ctl, a, json).await,
        Command::Endpoint(c) => endpoints::run(&mut ctl, c, json).await,
        Command::Show { job } => settings::show(&mut ctl, &job, json).await,
        Command::Edit { job } => settings::edit(&mut ctl, &job, json).await,
    }
}
