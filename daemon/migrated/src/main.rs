//! `migrated`: the migration daemon. Without a subcommand it runs as a service (system or
//! `--user` instance) owning its jobs and serving the control API; `migrated migrate --job FILE`
//! runs one job in the foreground.

mod alerts;
mod control;
mod dropin;
mod email;
mod job;
mod journal;
mod manager;
mod msg;
mod oneshot;
mod paths;
mod record;
mod retention;
mod scheduler;
mod throughput;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use migrated_store::{Store, StoreKey};

/// Migrates mailboxes between IMAP servers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    daemon: DaemonArgs,
}

/// The service (no subcommand).
#[derive(Debug, clap::Args)]
struct DaemonArgs {
    /// Run as a user instance: state in $XDG_STATE_HOME/migrated, socket in $XDG_RUNTIME_DIR.
    #[arg(long)]
    user: bool,
    /// State directory (store and key file).
    #[arg(long, env = "MIGRATED_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Control socket path.
    #[arg(long, env = "MIGRATED_SOCKET")]
    socket: Option<PathBuf>,
    /// D-Bus: `system`, `session` or `none`. Default: the system bus for the service, the
    /// session bus for `--user`; a bus that cannot be reached then only costs a warning (the
    /// socket still serves). Named explicitly, it must work.
    #[arg(long, env = "MIGRATED_BUS", value_enum)]
    bus: Option<control::dbus::Bus>,
    /// Drop-in job files directory. Default: $CONFIGURATION_DIRECTORY/jobs.d or
    /// /etc/migrated/jobs.d; $XDG_CONFIG_HOME/migrated/jobs.d for --user.
    #[arg(long, env = "MIGRATED_JOBS_DIR")]
    jobs_dir: Option<PathBuf>,
    /// SMTP server for completion reports (`host[:port]`); jobs name the recipients (`notify`).
    #[arg(long, env = "MIGRATED_SMTP_SERVER")]
    smtp_server: Option<String>,
    /// How to reach it.
    #[arg(long, value_enum, default_value_t = email::SmtpSecurity::Starttls)]
    smtp_security: email::SmtpSecurity,
    /// SMTP login, if the server wants one; the password is read from --smtp-password-file or
    /// $CREDENTIALS_DIRECTORY/smtp-password.
    #[arg(long)]
    smtp_user: Option<String>,
    /// File holding the SMTP password (first line).
    #[arg(long)]
    smtp_password_file: Option<PathBuf>,
    /// Sender address of the reports.
    #[arg(long, default_value = "migrated@localhost")]
    smtp_from: String,
    /// Source plugins directory: every `*.so` in it is loaded at start. Default:
    /// /usr/lib/migrated/plugins, or the shipped plugins beside `migrated` when it runs from a
    /// cargo build tree (target/debug, target/release).
    #[arg(long, global = true, env = "MIGRATED_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// Bandwidth limit shared by all jobs, megabytes (10^6 bytes) per second.
    #[arg(long)]
    max_mbps: Option<f64>,
    /// Connections at most to one host over all running jobs (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_connections_per_host: usize,
    /// Jobs running at once.
    #[arg(long, default_value_t = 20)]
    max_jobs: usize,
    /// Message bytes held in memory at once over all running jobs, MiB. Each batch of messages
    /// counts its size from fetch until appended; a message larger than this travels alone.
    #[arg(long, default_value_t = 64)]
    memory_budget_mb: u64,
    /// Days a completed or cancelled job (record and report) is kept.
    #[arg(long, default_value_t = 7.0)]
    retention_days: f64,
    /// Alert kinds kept with the jobs and listed (comma-separated); the others are only
    /// events. Default: all.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = alerts::AlertKind::ALL)]
    alert_kinds_shown: Vec<alerts::AlertKind>,
    /// Alert kinds e-mailed (comma-separated; only kinds also shown). Default: all.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = alerts::AlertKind::ALL)]
    alert_kinds_mailed: Vec<alerts::AlertKind>,
    /// Alerts kept per job at most; the oldest go first (0: none kept).
    #[arg(long, default_value_t = 100)]
    alerts_per_job: usize,
    /// Addresses alerts are e-mailed to (To; comma-separated or repeated). Needs
    /// --smtp-server.
    #[arg(long, value_delimiter = ',')]
    alert_to: Vec<String>,
    /// Addresses in copy (Cc).
    #[arg(long, value_delimiter = ',')]
    alert_cc: Vec<String>,
    /// Addresses in blind copy (Bcc: in the envelope only).
    #[arg(long, value_delimiter = ',')]
    alert_bcc: Vec<String>,
    /// Bad news e-mailed at once (one message each) or in the digest with the Good news.
    #[arg(long, value_enum, default_value_t = alerts::BadNewsMail::Immediate)]
    alert_bad_news: alerts::BadNewsMail,
    /// Minutes between two digests (60: hourly, 1440: daily); a digest goes only when it
    /// has something.
    #[arg(long, default_value_t = 60.0)]
    alert_digest_minutes: f64,
    /// This daemon's shard `K/N` (K from 0): of every batch it takes only its rows (the
    /// `Shard` column of a plan, else a stable hash of the mailbox), and of every per-host
    /// budget (--max-connections-per-host, an endpoint's max_migrations and max_syncs) its
    /// share, the budget divided by N. Default: every row, the whole budgets.
    #[arg(long, env = "MIGRATED_SHARD")]
    shard: Option<String>,
    /// The number of shards, when each daemon's index comes from Kubernetes:
    /// `JOB_COMPLETION_INDEX` (an Indexed Job), else the hostname's ordinal suffix (a
    /// StatefulSet's pod `migrated-2`).
    #[arg(long, env = "MIGRATED_SHARDS")]
    shards: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one job in the foreground until it is done. Run it again for a delta: only what is
    /// new or changed is copied.
    Migrate {
        /// The job file (TOML).
        #[arg(long)]
        job: PathBuf,
        /// The job store directory (ledger that prevents duplicates).
        #[arg(
            long,
            env = "MIGRATED_STORE",
            default_value = "/var/lib/migrated/store"
        )]
        store: PathBuf,
        /// The store key file, created (mode 0600) when missing. Default: the store path with
        /// `.key` appended. `$CREDENTIALS_DIRECTORY/store-key` wins when systemd passes it.
        #[arg(long, env = "MIGRATED_KEY_FILE")]
        key_file: Option<PathBuf>,
        /// Print no progress lines.
        #[arg(long)]
        quiet: bool,
        /// After the summary, print where the run's time went, phase by phase (connect, scan,
        /// folders, copy, finalize, verify).
        #[arg(long)]
        timings: bool,
    },
}

/// Keeps glibc from holding freed message buffers: by default its threshold for serving an
/// allocation with its own mapping grows to the largest block freed (up to 32 MiB), after
/// which bodies of several MB come from the heap and their pages stay with the process.
/// Fixing the threshold at its initial 128 KiB returns every large buffer to the system when
/// it is freed: peak RSS of the 20,000-message benchmark fell from 84 MB to 57 MB.
/// glibc's own `MALLOC_MMAP_THRESHOLD_` in the environment takes precedence.
#[allow(unsafe_code)]
fn tune_allocator() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; it is called first thing in main,
    // before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_logging(if cli.command.is_none() {
        "info"
    } else {
        "warn"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The journal when systemd connected stderr to it (`JOURNAL_STREAM`), with structured fields
/// such as `JOB_ID`; plain lines on stderr otherwise.
fn init_logging(default: &str) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIGRATED_LOG")
        .unwrap_or_else(|_| default.into());
    let journald = std::env::var_os("JOURNAL_STREAM").and_then(|_| tracing_journald::layer().ok());
    match journald {
        Some(layer) => tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

async fn serve(args: DaemonArgs) -> anyhow::Result<std::process::ExitCode> {
    let paths = paths::Paths::resolve(
        args.user,
        args.state_dir.clone(),
        args.socket.clone(),
        args.jobs_dir.clone(),
    )?;
    let shard = shard_of(&args)?;
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let key = StoreKey::load(credentials.as_deref(), &paths.key_file)?;
    std::fs::create_dir_all(&paths.store).with_context(|| {
        format!(
            "cannot create the store directory {}",
            paths.store.display()
        )
    })?;
    let store_path = paths.store.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_path, key)).await??;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (updates, _) = tokio::sync::broadcast::channel(1024);
    let plugins = std::sync::Arc::new(load_plugins(args.plugins_dir.as_deref()));
    let smtp = match &args.smtp_server {
        None => None,
        Some(server) => {
            let (host, port) = email::Smtp::parse_server(server, args.smtp_security);
            let file = args.smtp_password_file.clone().or_else(|| {
                std::env::var_os("CREDENTIALS_DIRECTORY")
                    .map(|d| PathBuf::from(d).join("smtp-password"))
                    .filter(|p| p.exists())
            });
            let password = match file {
                Some(f) => Some(migrated_core::Secret::new(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("--smtp-password-file {}", f.display()))?
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                )),
                None => None,
            };
            Some(std::sync::Arc::new(email::Smtp {
                host,
                port,
                security: args.smtp_security,
                user: args.smtp_user.clone(),
                password,
                from: args.smtp_from.clone(),
            }))
        }
    };
    let settings = manager::Settings {
        max_jobs: args.max_jobs.max(1),
        retention: std::time::Duration::from_secs_f64(args.retention_days.max(0.0) * 86_400.0),
        jobs_dir: Some(paths.jobs_dir.clone()).filter(|d| d.is_dir()),
        bandwidth: args
            .max_mbps
            .filter(|m| *m > 0.0 && m.is_finite())
            .map(|m| std::sync::Arc::new(migrated_engine::RateLimit::new((m * 1e6) as u64))),
        max_connections_per_host: args.max_connections_per_host,
        memory: std::sync::Arc::new(migrated_engine::MemoryBudget::new(
            args.memory_budget_mb.saturating_mul(1024 * 1024),
        )),
        alerts: alerts::AlertSettings {
            shown: args.alert_kinds_shown.clone(),
            mailed: args.alert_kinds_mailed.clone(),
            max_per_job: args.alerts_per_job,
            mailer: None,
        },
        plugins,
        smtp,
        shard,
    };
    let mut settings = settings;
    let recipients = email::Recipients {
        to: args.alert_to.clone(),
        cc: args.alert_cc.clone(),
        bcc: args.alert_bcc.clone(),
    };
    match (&settings.smtp, recipients.is_empty()) {
        (Some(smtp), false) => {
            let minutes = args.alert_digest_minutes;
            if !(minutes.is_finite() && minutes > 0.0) {
                anyhow::bail!(
                    "--alert-digest-minutes {minutes}: give a number of minutes above 0 (60: hourly, 1440: daily)"
                );
            }
            settings.alerts.mailer = Some(alerts::start(alerts::Mailing {
                smtp: smtp.clone(),
                recipients,
                bad: args.alert_bad_news,
                digest_every: std::time::Duration::from_secs_f64(minutes * 60.0),
            }));
        }
        (None, false) => anyhow::bail!(
            "--alert-to, --alert-cc or --alert-bcc needs --smtp-server (the server alerts are mailed through)"
        ),
        _ => {}
    }
    if let Some(shard) = shard {
        tracing::info!(shard = %shard, "Running one shard: its rows of every batch, its share of every per-host budget.");
    }
    if settings.jobs_dir.is_none() {
        tracing::info!(dir = %paths.jobs_dir.display(), "No drop-in directory: job files are not watched.");
    }
    let settings_jobs_dir = settings.jobs_dir.clone();
    let mut state = manager::Manager::load(store, settings, tx.clone(), updates.clone()).await?;
    let listener = control::socket::bind(&paths.socket)?;
    tokio::spawn(control::socket::serve(
        listener,
        tx.clone(),
        updates.clone(),
        control::socket::Access::current(),
    ));
    let bus = args.bus.unwrap_or(if args.user {
        control::dbus::Bus::Session
    } else {
        control::dbus::Bus::System
    });
    let _bus = match control::dbus::serve(bus, tx.clone(), updates.clone()).await {
        Ok(conn) => conn,
        Err(e) if args.bus.is_none() => {
            tracing::warn!(error = %format!("{e:#}"), "D-Bus is not available; the control socket still serves.");
            None
        }
        Err(e) => return Err(e),
    };

    let signals = tx.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        loop {
            let msg = tokio::select! {
                _ = term.recv() => msg::Msg::Shutdown,
                _ = int.recv() => msg::Msg::Shutdown,
                _ = hup.recv() => {
                    // SIGHUP: rescan the drop-in directory, and sweep expired jobs now.
                    if signals.send(msg::Msg::Tick).is_err() {
                        return;
                    }
                    msg::Msg::Rescan
                }
            };
            if signals.send(msg).is_err() {
                return;
            }
        }
    });
    let ticks = tx.clone();
    let watchdog = sd_notify::watchdog_enabled();
    tokio::spawn(async move {
        // Schedules, retention and the status line every 30 s (SIGHUP: at once); more often
        // when systemd's watchdog wants to hear from us.
        let base = std::time::Duration::from_secs(30);
        let period = watchdog.map_or(base, |w| (w / 2).min(base));
        let mut interval = tokio::time::interval(period);
        loop {
            interval.tick().await;
            if watchdog.is_some() {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            if ticks.send(msg::Msg::Tick).is_err() {
                return;
            }
        }
    });

    let _watcher = match &settings_jobs_dir {
        Some(dir) => match dropin::watch(dir, tx.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "The drop-in directory cannot be watched; SIGHUP rescans it.");
                None
            }
        },
        None => None,
    };
    state.notify_status();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(store = %paths.store.display(), socket = %paths.socket.display(), "Ready.");
    state.run(rx).await;
    let _ = std::fs::remove_file(&paths.socket);
    Ok(std::process::ExitCode::SUCCESS)
}

/// The daemon's shard from `--shard`, or `--shards` with Kubernetes' index.
fn shard_of(args: &DaemonArgs) -> anyhow::Result<Option<migrated_core::shard::Shard>> {
    let index = std::env::var("JOB_COMPLETION_INDEX").ok();
    let hostname = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned());
    migrated_core::shard::Shard::from_settings(
        args.shard.as_deref(),
        args.shards,
        index.as_deref(),
        hostname.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Loads the source plugins (from `dir`, else from where [`paths::plugin_files`] finds them),
/// saying in the log what was loaded and what was skipped and why.
fn load_plugins(dir: Option<&std::path::Path>) -> migrated_plugin_api::host::Plugins {
    let files = paths::plugin_files(dir, std::env::current_exe().ok().as_deref());
    let dir = files.dir();
    match files.load() {
        Ok(plugins) => {
            for p in &plugins.loaded {
                let info = p.info();
                tracing::info!(plugin = %info.name, version = %info.version, abi = %p.abi(), path = %p.path().display(), "Plugin loaded.");
            }
            for r in &plugins.rejected {
                tracing::warn!(path = %r.path.display(), reason = %r.reason, "Plugin skipped.");
            }
            if plugins.loaded.is_empty() {
                tracing::error!(dir = %dir.display(), "No source plugin loaded: no job can run until one is installed there and the daemon restarted.");
            }
            plugins
        }
        Err(e) => {
            tracing::error!(error = %e, "No source plugin loaded: no job can run.");
            migrated_plugin_api::host::Plugins::default()
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let Some(command) = cli.command else {
        return serve(cli.daemon).await;
    };
    match command {
        Command::Migrate {
            job,
            store,
            key_file,
            quiet,
            timings,
        } => {
            oneshot::migrate(
                &job,
                store,
                key_file,
                quiet,
                timings,
                cli.daemon.plugins_dir.as_deref(),
            )
            .await
        }
    }
}
