//! The manager: the one owner of job state, fed by one channel. Control requests, engine
//! progress, finished runs, signals, timers and drop-in changes all arrive as [`Msg`]s; only
//! this loop changes a job, so there are no locks around job state. What to do is decided by
//! pure modules ([`crate::scheduler`], [`crate::retention`], [`crate::dropin::reconcile`]);
//! every write to the store goes through the [`Journal`].
//!
//! The loop's parts, one concern each:
//! - [`requests`]: the control API, each request answered `Result<Response, ControlError>`;
//! - [`intake`]: creating jobs and batches (validation before anything is stored);
//! - [`actions`]: pause, resume, cancel, delete, reset, delta;
//! - [`credentials`]: credentials given again (a job, a batch from its CSV) or cleared;
//! - [`settings`]: a job's settings shown without secrets and edited;
//! - [`endpoints`]: named endpoints, applied to the jobs that name them;
//! - [`runs`]: starting runs and following them (engine events, the end of a run);
//! - [`reports`]: what a finished run or batch says (verification, e-mailed reports);
//! - [`alerts`]: Good news and Bad news kept with the jobs, listed, cleared and mailed;
//! - [`housekeeping`]: applying the scheduler, retention and the drop-in directory;
//! - [`outage`]: the job store failing and coming back.

mod actions;
mod alerts;
mod credentials;
mod endpoints;
mod housekeeping;
mod intake;
mod jobs;
mod outage;
mod reports;
mod requests;
mod runs;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use migrated_core::JobStatus;
use migrated_ipc::{ControlError, ErrorKind, EventRow};
use migrated_store::Store;
use tokio::sync::{broadcast, mpsc};

use crate::journal::{Journal, Outage, Written};
use crate::msg::{Msg, Update};
use crate::record::{JobRecord, now};

/// Settings of the daemon.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Jobs running at once.
    pub max_jobs: usize,
    /// How long finished jobs are kept.
    pub retention: Duration,
    /// The drop-in directory, if any.
    pub jobs_dir: Option<std::path::PathBuf>,
    /// The bandwidth limit all jobs share, if any.
    pub bandwidth: Option<Arc<migrated_engine::RateLimit>>,
    /// Message bytes held in memory at once over all running jobs.
    pub memory: Arc<migrated_engine::MemoryBudget>,
    /// Connections at most to one host (source or destination) over all running jobs; 0 for
    /// no limit. A job uses its `connections` plus one control connection per side.
    pub max_connections_per_host: usize,
    /// The source plugins loaded at start.
    pub plugins: Arc<migrated_plugin_api::host::Plugins>,
    /// Where completion reports are mailed from, if configured.
    pub smtp: Option<Arc<crate::email::Smtp>>,
    /// Which alerts are kept and mailed, how many per job, and the mailer.
    pub alerts: crate::alerts::AlertSettings,
    /// This daemon's shard (`--shard K/N`): it takes only its rows of each batch, and its
    /// share of each per-host budget. `None`: every row, the whole budgets.
    pub shard: Option<migrated_core::shard::Shard>,
}

impl Settings {
    /// Connections to one host this daemon may open: the limit, or with shards its share.
    pub(crate) fn per_host(&self) -> usize {
        match self.shard {
            Some(s) => s.share(self.max_connections_per_host),
            None => self.max_connections_per_host,
        }
    }
}

/// Raising it stops a run at its next checkpoint.
type StopHandle = migrated_engine::StopSignal;

/// A job and what the loop knows of its run.
struct Entry {
    record: JobRecord,
    /// Set while a run is in progress.
    stop: Option<StopHandle>,
    /// Last progress update published (progress is published at most 4 times a second).
    last_publish: std::time::Instant,
    /// The run was stopped because its schedule window ended: it goes back to the queue.
    window_stop: bool,
    /// "Waiting for its window" was said (once per wait).
    window_noted: bool,
    /// Found outside its schedule window: not looked at by the scheduler before this unix
    /// time (when the window opens; cleared when the job's settings change). See
    /// [`crate::scheduler::closed_until`].
    window_closed_until: Option<u64>,
    /// The run was stopped because the job store cannot be written: it waits for the store.
    store_stop: bool,
    /// What its runs copied over the last hour, for a page opened late.
    throughput: crate::throughput::History,
}

impl Entry {
    fn new(record: JobRecord) -> Self {
        Self {
            record,
            stop: None,
            last_publish: std::time::Instant::now(),
            window_stop: false,
            window_noted: false,
            window_closed_until: None,
            store_stop: false,
            throughput: crate::throughput::History::default(),
        }
    }
}

/// The daemon's state.
pub(crate) struct Manager {
    journal: Journal,
    settings: Settings,
    jobs: jobs::Jobs,
    tx: mpsc::UnboundedSender<Msg>,
    updates: broadcast::Sender<Update>,
    shutting_down: bool,
    /// Drop-in files with errors: `(file, message)`, shown by `list` and logged once.
    dropin_problems: Vec<(String, String)>,
    /// `(file, fingerprint)` of drop-in files whose jobs were deleted: see
    /// [`crate::dropin::reconcile`].
    dropin_consumed: Vec<(String, String)>,
    /// Named endpoints, by name (kept sealed in the store).
    endpoints: std::collections::BTreeMap<String, migrated_core::NamedEndpoint>,
}

impl Manager {
    /// Loads every job; jobs that were running when the daemon stopped (SIGTERM or SIGKILL)
    /// are queued again and resume from the ledger.
    pub(crate) async fn load(
        store: Store,
        settings: Settings,
        tx: mpsc::UnboundedSender<Msg>,
        updates: broadcast::Sender<Update>,
    ) -> anyhow::Result<Self> {
        // fjall is synchronous: the reads run on the blocking pool.
        let reader = store.clone();
        let (records, dropin_consumed, endpoints) =
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let records = reader.jobs::<JobRecord>()?;
                let consumed: Vec<(String, String)> =
                    reader.setting("dropin-consumed")?.unwrap_or_default();
                let endpoints: Vec<migrated_core::NamedEndpoint> =
                    reader.setting("endpoints")?.unwrap_or_default();
                Ok((records, consumed, endpoints))
            })
            .await??;
        let mut jobs = jobs::Jobs::default();
        let mut resumed = Vec::new();
        let mut upgraded = Vec::new();
        for (id, mut record) in records {
            if record.upgrade()? {
                upgraded.push(id.clone());
            }
            // Records written before Failed counted as finished, or when a delta left a
            // queued job marked finished: retention counts from the same moment as before.
            record.finished = crate::retention::finished_at(
                record.status,
                record.finished.unwrap_or(record.updated),
            );
            // Waiting for the store when the daemon stopped: the store opened, so it goes on.
            if record.status.is_running() || record.status == JobStatus::WaitingForStore {
                resumed.push((id.clone(), record.status));
            }
            jobs.insert(id, Entry::new(record));
        }
        let endpoints = endpoints.into_iter().map(|e| (e.name.clone(), e)).collect();
        let mut manager = Self {
            journal: Journal::new(store),
            settings,
            jobs,
            tx,
            updates,
            shutting_down: false,
            dropin_problems: Vec::new(),
            dropin_consumed,
            endpoints,
        };
        for id in &upgraded {
            manager.persist(id).await;
        }
        if !upgraded.is_empty() {
            tracing::info!(
                jobs = upgraded.len(),
                format = crate::record::RECORD_VERSION,
                "Job records brought to this release's format."
            );
        }
        for (id, was) in resumed {
            // The ledger says what is already copied.
            if let Some(e) = manager.jobs.get_mut(&id) {
                e.record.status = JobStatus::Queued;
            }
            manager.persist(&id).await;
            manager
                .event(
                    &id,
                    "info",
                    format!("Resuming after a restart (was {was})."),
                )
                .await;
        }
        Ok(manager)
    }

    /// Runs the loop until shutdown completes.
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        self.sweep().await;
        self.rescan().await;
        self.schedule().await;
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Request {
                    request: migrated_ipc::Request::Preflight { template, csv },
                    reply,
                } => {
                    // The logins run on a task of their own; the loop goes on.
                    match self.preflight_mailboxes(*template, csv) {
                        Ok(mailboxes) => {
                            let concurrent = self.settings.max_jobs;
                            tokio::spawn(async move {
                                let response =
                                    crate::control::preflight::run(mailboxes, concurrent).await;
                                let _ = reply.send(response);
                            });
                        }
                        Err(e) => {
                            let _ = reply.send(e.into());
                        }
                    }
                }
                Msg::Request {
                    request: migrated_ipc::Request::Test { mut spec },
                    reply,
                } => match self.apply_endpoints(&mut spec) {
                    Ok(()) => {
                        tokio::spawn(async move {
                            let _ = reply.send(crate::control::test_endpoints(&spec).await);
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(e.into());
                    }
                },
                Msg::Request { request, reply } => {
                    // A request that only reads changes nothing the scheduler decides on.
                    let reads_only = requests::reads_only(&request);
                    let response = self.handle(request).await.unwrap_or_else(Into::into);
                    let _ = reply.send(response);
                    if !reads_only {
                        self.schedule().await;
                    }
                }
                Msg::Engine { id, event } => self.on_engine(&id, event).await,
                Msg::Notice { id, level, message } => self.event(&id, level, message).await,
                Msg::Finished { id, result } => {
                    self.on_finished(&id, result).await;
                    if self.shutting_down && self.running() == 0 {
                        break;
                    }
                    self.schedule().await;
                }
                Msg::Shutdown => {
                    if self.shutting_down {
                        continue;
                    }
                    tracing::info!(
                        running = self.running(),
                        "Stopping: every run stops at its next checkpoint."
                    );
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                    self.shutting_down = true;
                    for entry in self.jobs.values() {
                        if let Some(stop) = &entry.stop {
                            stop.stop();
                        }
                    }
                    if self.running() == 0 {
                        break;
                    }
                }
                Msg::Tick => {
                    self.sweep().await;
                    self.apply_schedules().await;
                    self.schedule().await;
                    self.notify_status();
                }
                Msg::Rescan => {
                    self.rescan().await;
                    self.schedule().await;
                }
                Msg::StoreRetry { generation } => {
                    if generation == self.journal.generation() {
                        self.retry_store().await;
                    }
                    self.schedule().await;
                }
            }
        }
        self.journal.close().await;
        tracing::info!("Stopped.");
    }

    fn running(&mut self) -> usize {
        self.jobs.fresh().running_count()
    }

    /// One line for `systemctl status`.
    pub(crate) fn notify_status(&mut self) {
        let jobs = self.jobs.fresh();
        let count = |statuses: &[JobStatus]| statuses.iter().map(|s| jobs.count(*s)).sum::<usize>();
        let running: Vec<JobStatus> = JobStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.is_running())
            .collect();
        let line = format!(
            "{} jobs: {} running, {} queued, {} completed, {} failed",
            jobs.jobs().len(),
            count(&running),
            count(&[
                JobStatus::Queued,
                JobStatus::WaitingForCredentials,
                JobStatus::WaitingForStore
            ]),
            count(&[JobStatus::Completed, JobStatus::CompletedWithErrors]),
            count(&[JobStatus::Failed])
        );
        let line = match self.journal.fault() {
            Some(fault) => format!(
                "{line}; the job store at {} cannot be written: {fault}",
                self.journal.path()
            ),
            None => line,
        };
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
    }

    /// The job with this id, or the one job with this name.
    fn find(&mut self, job: &str) -> Result<String, ControlError> {
        if self.jobs.contains_key(job) {
            return Ok(job.to_owned());
        }
        match self.jobs.fresh().named(job).as_slice() {
            [id] => Ok((*id).to_owned()),
            [] => Err(ControlError::new(
                ErrorKind::NotFound,
                format!("no job with id or name {job:?} (migratectl list shows them)"),
            )),
            _ => Err(ControlError::new(
                ErrorKind::Invalid,
                format!("several jobs are named {job:?}: use the id"),
            )),
        }
    }

    /// Writes a job's record.
    async fn persist(&mut self, id: &str) {
        let Some(entry) = self.jobs.get(id) else {
            return;
        };
        let written = self.journal.save_job(id, &entry.record).await;
        self.written(written, |e| {
            tracing::error!(job_id = %id, error = %e, "Job state could not be saved.");
        })
        .await;
    }

    /// Reacts to a write's result: a plain error is reported by `report`; a store fault (which
    /// the journal keeps to write later) may begin an outage or change its reason.
    async fn written(
        &mut self,
        written: Written,
        report: impl FnOnce(&migrated_store::StoreError),
    ) {
        if let Err(failed) = written {
            if failed.error.fault().is_none() {
                report(&failed.error);
            }
            // Boxed: an outage's events are written through here too.
            Box::pin(self.outage(failed.outage)).await;
        }
    }

    /// Appends an event to the job's log, the journal and the subscribers.
    async fn event(&mut self, id: &str, level: &str, message: String) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        let row = EventRow {
            seq: entry.record.next_event,
            time: now(),
            level: level.into(),
            message,
        };
        entry.record.next_event += 1;
        let name = &entry.record.spec.name;
        match level {
            "error" => tracing::error!(job_id = %id, job = %name, "{}", row.message),
            "warning" => tracing::warn!(job_id = %id, job = %name, "{}", row.message),
            _ => tracing::info!(job_id = %id, job = %name, "{}", row.message),
        }
        let _ = self.updates.send(Update {
            job: entry.record.summary(),
            events: vec![row.clone()],
            alerts: Vec::new(),
        });
        let written = self.journal.save_event(id, row).await;
        self.written(written, |e| {
            tracing::error!(job_id = %id, error = %e, "Event could not be saved.");
        })
        .await;
    }

    async fn set_status(&mut self, id: &str, status: JobStatus) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        let from = entry.record.status;
        if from == status {
            return;
        }
        entry.record.status = status;
        entry.record.updated = now();
        if matches!(
            status,
            JobStatus::Completed | JobStatus::CompletedWithErrors
        ) {
            entry.record.completed_once = true;
        }
        // Queued again or waiting: not finished, or retention would sweep it with its ledger.
        entry.record.finished = crate::retention::finished_at(status, now());
        let completed = matches!(
            status,
            JobStatus::Completed | JobStatus::CompletedWithErrors
        );
        if status == JobStatus::Cancelled || (completed && entry.record.erase_at_completion()) {
            entry.record.erase_credentials();
        }
        if status == JobStatus::Queued {
            // An endpoint edited since the last run applies from this one.
            self.refresh_endpoints(id);
        }
        self.persist(id).await;
        let level = if status == JobStatus::Failed {
            "error"
        } else {
            "info"
        };
        self.event(id, level, format!("Status: {status}.")).await;
    }

    /// Asks a job's run, if any, to stop at its next checkpoint.
    fn stop_run(&mut self, id: &str) {
        if let Some(stop) = self.jobs.get(id).and_then(|e| e.stop.as_ref()) {
            stop.stop();
        }
    }

    /// Reacts to what a store error meant for the outage.
    async fn outage(&mut self, outage: Option<Outage>) {
        match outage {
            None => {}
            Some(Outage::Began(_)) => self.store_down(),
            Some(Outage::Changed(_)) => self.store_fault_changed().await,
        }
    }
}
