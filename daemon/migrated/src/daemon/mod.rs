//! The daemon: one owner of job state, fed by one channel. Control requests, engine progress,
//! finished runs, signals and the retention timer all arrive as [`Msg`]s; only this loop changes
//! a job, so there are no locks around job state and every change is persisted in one place.

mod record;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use migrated_core::{Action, JobSpec, JobStatus, Secret};
use migrated_engine::{
    Connection, ContactsEngine, Engine, EngineError, Event, Phase, Side, Summary,
};
use migrated_ipc::{ErrorKind, EventRow, FolderRow, ItemRow, JobSummary, Request, Response};
use migrated_plugin_api::wire::Kind;
use migrated_store::{FaultKind, Store, StoreError, StoreFault};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::job::{EndpointSpecExt, JobSpecExt};
use migrated_ipc::text::clock;
pub(crate) use record::{JobRecord, RunReport, now};

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
    pub smtp: Option<Arc<crate::notify::Smtp>>,
}

/// What a job reads and writes.
enum Sides {
    /// Mail: a source plugin and an IMAP destination.
    Mail(
        migrated_plugin_api::host::PluginSource,
        migrated_imap::Endpoint,
    ),
    /// Contacts: a contacts plugin and a CardDAV destination.
    Contacts(
        migrated_plugin_api::host::ContactsPluginSource,
        migrated_carddav::DavEndpoint,
    ),
}

/// Everything the loop reacts to.
pub(crate) enum Msg {
    /// A control request, from either transport.
    Request {
        request: Request,
        reply: oneshot::Sender<Response>,
    },
    /// Progress of a running job.
    Engine { id: String, event: Event },
    /// A run ended.
    Finished {
        id: String,
        result: Result<Summary, EngineError>,
    },
    /// SIGTERM/SIGINT: stop every run at a checkpoint, then exit.
    Shutdown,
    /// Retention sweep and status line.
    Tick,
    /// The drop-in directory changed (or SIGHUP): rescan it.
    Rescan,
    /// Time to try the job store again (it could not be written); stale generations are
    /// ignored.
    StoreRetry { generation: u64 },
    /// Something a background task wants in a job's events (an e-mail sent or not).
    Notice {
        id: String,
        level: &'static str,
        message: String,
    },
}

/// An update published to subscribers.
#[derive(Debug, Clone)]
pub(crate) struct Update {
    pub job: JobSummary,
    pub events: Vec<EventRow>,
}

struct Entry {
    record: JobRecord,
    /// Set while a run is in progress: raising it stops the run at a checkpoint.
    stop: Option<migrated_engine::StopSignal>,
    /// Last progress update published (progress is published at most 4 times a second).
    last_publish: std::time::Instant,
    /// The run was stopped because its schedule window ended: it goes back to the queue.
    window_stop: bool,
    /// "Waiting for its window" was said (once per wait).
    window_noted: bool,
    /// The run was stopped because the job store cannot be written: it waits for the store.
    store_stop: bool,
}

/// The daemon's state.
pub(crate) struct Daemon {
    store: Store,
    settings: Settings,
    jobs: HashMap<String, Entry>,
    tx: mpsc::UnboundedSender<Msg>,
    updates: broadcast::Sender<Update>,
    shutting_down: bool,
    /// Drop-in files with errors: `(file, message)`, shown by `list` and logged once.
    dropin_problems: Vec<(String, String)>,
    /// `(file, fingerprint)` of drop-in files whose jobs were deleted (by `delete` or at the
    /// end of the retention period): the same file is not turned into a job again, which
    /// would copy everything a second time. An edited file (new fingerprint) is a new job.
    dropin_consumed: Vec<(String, String)>,
    /// Set while the job store cannot be written: no run starts, waiting jobs continue when
    /// it can be written again.
    store_down: Option<StoreDown>,
    /// Events the store could not take while it was down, oldest first: shown from here and
    /// written when it is back.
    unsaved_events: Vec<(String, EventRow)>,
    /// Jobs whose record the store could not take while it was down.
    unsaved_jobs: HashSet<String>,
    /// Counts store outages and retries, so a stale retry timer does nothing.
    store_generation: u64,
}

/// The job store cannot be written: why, and when it is tried again.
struct StoreDown {
    fault: StoreFault,
    /// The next pause between tries.
    delay: Duration,
}

/// The first pause before the store is tried again after a fault; it doubles up to
/// [`STORE_RETRY_MAX`].
const STORE_RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest pause between two tries of a store that cannot be written.
const STORE_RETRY_MAX: Duration = Duration::from_secs(30);
/// Events kept in memory at most while the store is down.
const UNSAVED_EVENTS_MAX: usize = 10_000;

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

impl Daemon {
    /// Loads every job; jobs that were running when the daemon stopped (SIGTERM or SIGKILL)
    /// are queued again and resume from the ledger.
    pub(crate) fn load(
        store: Store,
        settings: Settings,
        tx: mpsc::UnboundedSender<Msg>,
        updates: broadcast::Sender<Update>,
    ) -> anyhow::Result<Self> {
        let mut jobs = HashMap::new();
        let mut resumed = Vec::new();
        for (id, record) in store.jobs::<JobRecord>()? {
            // Waiting for the store when the daemon stopped: the store opened, so it goes on.
            if record.status.is_running() || record.status == JobStatus::WaitingForStore {
                resumed.push((id.clone(), record.status));
            }
            jobs.insert(
                id,
                Entry {
                    record,
                    stop: None,
                    last_publish: std::time::Instant::now(),
                    window_stop: false,
                    window_noted: false,
                    store_stop: false,
                },
            );
        }
        let mut daemon = Self {
            store,
            settings,
            jobs,
            tx,
            updates,
            shutting_down: false,
            dropin_problems: Vec::new(),
            dropin_consumed: Vec::new(),
            store_down: None,
            unsaved_events: Vec::new(),
            unsaved_jobs: HashSet::new(),
            store_generation: 0,
        };
        daemon.dropin_consumed = daemon.store.setting("dropin-consumed")?.unwrap_or_default();
        for (id, was) in resumed {
            // Running when the daemon stopped (SIGTERM or SIGKILL): queued again; the ledger
            // says what is already copied.
            if let Some(e) = daemon.jobs.get_mut(&id) {
                e.record.status = JobStatus::Queued;
            }
            daemon.persist(&id);
            daemon.event(
                &id,
                "info",
                format!("Resuming after a restart (was {was})."),
            );
        }
        Ok(daemon)
    }

    /// Runs the loop until shutdown completes.
    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        self.sweep();
        self.rescan();
        self.schedule();
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Request { request, reply } => {
                    let response = self.handle(request);
                    let _ = reply.send(response);
                    self.schedule();
                }
                Msg::Engine { id, event } => self.on_engine(&id, event),
                Msg::Notice { id, level, message } => self.event(&id, level, message),
                Msg::Finished { id, result } => {
                    self.on_finished(&id, result);
                    if self.shutting_down && self.running() == 0 {
                        break;
                    }
                    self.schedule();
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
                    self.sweep();
                    self.apply_schedules();
                    self.schedule();
                    self.notify_status();
                }
                Msg::Rescan => {
                    self.rescan();
                    self.schedule();
                }
                Msg::StoreRetry { generation } => {
                    if generation == self.store_generation {
                        self.retry_store();
                    }
                    self.schedule();
                }
            }
        }
        if let Err(e) = self.store.persist() {
            tracing::error!(error = %e, "Store could not be flushed at shutdown.");
        }
        if !self.unsaved_events.is_empty() || !self.unsaved_jobs.is_empty() {
            tracing::warn!(
                events = self.unsaved_events.len(),
                jobs = self.unsaved_jobs.len(),
                "The job store cannot be written: the latest events and job states are lost; the jobs resume from the ledger at the next start."
            );
        }
        tracing::info!("Stopped.");
    }

    fn running(&self) -> usize {
        self.jobs.values().filter(|e| e.stop.is_some()).count()
    }

    /// One line for `systemctl status`.
    pub(crate) fn notify_status(&self) {
        let count = |f: &dyn Fn(JobStatus) -> bool| {
            self.jobs.values().filter(|e| f(e.record.status)).count()
        };
        let line = format!(
            "{} jobs: {} running, {} queued, {} completed, {} failed",
            self.jobs.len(),
            count(&|s| s.is_running()),
            count(&|s| matches!(
                s,
                JobStatus::Queued | JobStatus::WaitingForCredentials | JobStatus::WaitingForStore
            )),
            count(&|s| matches!(s, JobStatus::Completed | JobStatus::CompletedWithErrors)),
            count(&|s| s == JobStatus::Failed)
        );
        let line = match &self.store_down {
            Some(down) => format!(
                "{line}; the job store at {} cannot be written: {}",
                self.store.path(),
                down.fault
            ),
            None => line,
        };
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
    }

    fn find(&self, job: &str) -> Result<String, Response> {
        if self.jobs.contains_key(job) {
            return Ok(job.to_owned());
        }
        let matches: Vec<&String> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.record.spec.name == job)
            .map(|(id, _)| id)
            .collect();
        match matches.as_slice() {
            [id] => Ok((*id).clone()),
            [] => Err(error(
                ErrorKind::NotFound,
                format!("no job with id or name {job:?} (migratectl list shows them)"),
            )),
            _ => Err(error(
                ErrorKind::Invalid,
                format!("several jobs are named {job:?}: use the id"),
            )),
        }
    }

    fn persist(&mut self, id: &str) {
        let Some(entry) = self.jobs.get(id) else {
            return;
        };
        let record = entry.record.clone();
        let store = self.store.clone();
        let result = tokio::task::block_in_place(|| store.put_job(id, &record));
        match result {
            Ok(()) => {
                self.unsaved_jobs.remove(id);
            }
            Err(e) => {
                if e.fault().is_some() {
                    // Saved when the store can be written again.
                    self.unsaved_jobs.insert(id.to_owned());
                } else {
                    tracing::error!(job_id = %id, error = %e, "Job state could not be saved.");
                }
                self.store_failed(&e);
            }
        }
    }

    /// Appends an event to the job's log, the journal and the subscribers.
    fn event(&mut self, id: &str, level: &str, message: String) {
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
        match level {
            "error" => {
                tracing::error!(job_id = %id, job = %entry.record.spec.name, "{}", row.message)
            }
            "warning" => {
                tracing::warn!(job_id = %id, job = %entry.record.spec.name, "{}", row.message)
            }
            _ => tracing::info!(job_id = %id, job = %entry.record.spec.name, "{}", row.message),
        }
        let store = self.store.clone();
        let (sid, r) = (id.to_owned(), row.clone());
        let _ = self.updates.send(Update {
            job: entry.record.summary(),
            events: vec![row],
        });
        // Events wait their turn while earlier ones are unsaved (the store is down).
        if !self.unsaved_events.is_empty() {
            self.keep_unsaved(sid, r);
            return;
        }
        if let Err(e) = tokio::task::block_in_place(|| store.put_event(&sid, r.seq, &r)) {
            if e.fault().is_some() {
                self.keep_unsaved(sid, r);
            } else {
                tracing::error!(job_id = %id, error = %e, "Event could not be saved.");
            }
            self.store_failed(&e);
        }
    }

    /// Keeps an event the store cannot take now, to write it when it can.
    fn keep_unsaved(&mut self, id: String, row: EventRow) {
        if self.unsaved_events.len() >= UNSAVED_EVENTS_MAX {
            self.unsaved_events.remove(0);
        }
        self.unsaved_events.push((id, row));
    }

    fn set_status(&mut self, id: &str, status: JobStatus) {
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
            JobStatus::Completed | JobStatus::CompletedWithErrors | JobStatus::Cancelled
        ) {
            entry.record.finished = Some(now());
            if status == JobStatus::Cancelled || entry.record.erase_at_completion() {
                entry.record.erase_credentials();
            }
        }
        self.persist(id);
        self.event(
            id,
            if status == JobStatus::Failed {
                "error"
            } else {
                "info"
            },
            format!("Status: {status}."),
        );
    }

    fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Hello { .. } | Request::Subscribe { .. } | Request::Test { .. } => error(
                ErrorKind::Invalid,
                "hello, subscribe and test are handled by the transport",
            ),
            Request::Create { spec } => self.create(*spec, None),
            Request::CreateBatch {
                name,
                template,
                csv,
            } => self.create_batch(name, *template, &csv),
            Request::Plugins => self.plugins(),
            Request::ListBatches => Response::Batches {
                batches: self.batches(),
            },
            Request::SetPriority { job, priority } => match self.find(&job) {
                Err(r) => r,
                Ok(id) => {
                    if let Some(e) = self.jobs.get_mut(&id) {
                        e.record.spec.priority = priority;
                    }
                    self.persist(&id);
                    self.event(&id, "info", format!("Priority set to {priority}."));
                    Response::Done {
                        status: self.jobs[&id].record.status,
                    }
                }
            },
            Request::SetTags { job, add, remove } => match self.find(&job) {
                Err(r) => r,
                Ok(id) => {
                    if let Some(bad) = add
                        .iter()
                        .find_map(|t| migrated_core::spec::check_tag(t).err())
                    {
                        return error(ErrorKind::Invalid, bad);
                    }
                    if let Some(e) = self.jobs.get_mut(&id) {
                        let tags = &mut e.record.spec.tags;
                        tags.retain(|t| !remove.contains(t));
                        for t in add {
                            if !tags.contains(&t) {
                                tags.push(t);
                            }
                        }
                        tags.sort();
                    }
                    self.persist(&id);
                    let tags = self.jobs[&id].record.spec.tags.join(", ");
                    self.event(&id, "info", format!("Tags: {tags}."));
                    Response::Job {
                        job: Box::new(self.jobs[&id].record.detail(Vec::new())),
                    }
                }
            },
            Request::Limits {
                max_jobs,
                max_connections_per_host,
            } => {
                if let Some(n) = max_connections_per_host {
                    self.settings.max_connections_per_host = n;
                    tracing::info!(
                        max_connections_per_host = n,
                        "Per-host connection limit changed."
                    );
                }
                if let Some(n) = max_jobs {
                    if n == 0 {
                        return error(
                            ErrorKind::Invalid,
                            "max_jobs must be at least 1 (pause jobs to stop them)",
                        );
                    }
                    self.settings.max_jobs = n;
                    tracing::info!(max_jobs = n, "Global job limit changed.");
                }
                Response::Limits {
                    max_jobs: self.settings.max_jobs,
                    max_connections_per_host: self.settings.max_connections_per_host,
                    running: self.running(),
                }
            }
            Request::BatchStatus { name } => {
                match self.batches().into_iter().find(|b| b.name == name) {
                    None => error(
                        ErrorKind::NotFound,
                        format!("no batch named {name:?} (migratectl batch list shows them)"),
                    ),
                    Some(batch) => {
                        let mut jobs: Vec<JobSummary> = self
                            .jobs
                            .values()
                            .filter(|e| e.record.batch.as_deref() == Some(name.as_str()))
                            .map(|e| e.record.summary())
                            .collect();
                        jobs.sort_by(|a, b| a.name.cmp(&b.name));
                        Response::BatchJobs { batch, jobs }
                    }
                }
            }
            Request::ActBatch { name, action } => {
                let mut ids: Vec<(String, String)> = self
                    .jobs
                    .iter()
                    .filter(|(_, e)| e.record.batch.as_deref() == Some(name.as_str()))
                    .map(|(id, e)| (e.record.spec.name.clone(), id.clone()))
                    .collect();
                if ids.is_empty() {
                    return error(
                        ErrorKind::NotFound,
                        format!("no batch named {name:?} (migratectl batch list shows them)"),
                    );
                }
                ids.sort();
                let results = ids
                    .into_iter()
                    .map(|(job, id)| {
                        let r = match self.act(&id, action) {
                            Response::Done { status } => Ok(status),
                            Response::Error { message, .. } => Err(message),
                            other => Err(format!("{other:?}")),
                        };
                        (job, r)
                    })
                    .collect();
                Response::BatchDone { results }
            }
            Request::List => {
                let mut jobs: Vec<JobSummary> =
                    self.jobs.values().map(|e| e.record.summary()).collect();
                jobs.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
                let problems = self
                    .dropin_problems
                    .iter()
                    .map(|(_, m)| m.clone())
                    .collect();
                Response::Jobs { jobs, problems }
            }
            Request::Status { job } => match self.find(&job) {
                Err(r) => r,
                Ok(id) => {
                    let events = self
                        .events(&id, 0)
                        .into_iter()
                        .rev()
                        .take(20)
                        .rev()
                        .collect();
                    Response::Job {
                        job: Box::new(self.jobs[&id].record.detail(events)),
                    }
                }
            },
            Request::Events { job, after } => match self.find(&job) {
                Err(r) => r,
                Ok(id) => Response::Events {
                    events: self.events(&id, after),
                },
            },
            Request::Act { job, action } => match self.find(&job) {
                Err(r) => r,
                Ok(id) => self.act(&id, action),
            },
            Request::Delta {
                job,
                source_secret,
                destination_secret,
                final_run,
            } => match self.find(&job) {
                Err(r) => r,
                Ok(id) => self.delta(&id, source_secret, destination_secret, final_run),
            },
        }
    }

    fn events(&self, id: &str, after: u64) -> Vec<EventRow> {
        let mut events: Vec<EventRow> = match self.store.events::<EventRow>(id) {
            Ok(v) => v
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| e.seq >= after)
                .collect(),
            Err(e) => {
                if e.fault().is_none() {
                    tracing::error!(job_id = %id, error = %e, "Events could not be read.");
                }
                Vec::new()
            }
        };
        // Those the store could not take yet (it is down).
        events.extend(
            self.unsaved_events
                .iter()
                .filter(|(job, e)| job == id && e.seq >= after)
                .map(|(_, e)| e.clone()),
        );
        events
    }

    /// Every batch with its counts, by name.
    fn batches(&self) -> Vec<migrated_ipc::BatchSummary> {
        let mut by_name: std::collections::BTreeMap<String, migrated_ipc::BatchSummary> =
            Default::default();
        for e in self.jobs.values() {
            let Some(name) = &e.record.batch else {
                continue;
            };
            let b = by_name
                .entry(name.clone())
                .or_insert_with(|| migrated_ipc::BatchSummary {
                    name: name.clone(),
                    ..Default::default()
                });
            b.jobs += 1;
            b.items_done += e.record.run.items_done;
            b.items_total += e.record.run.items_total;
            b.failed += e.record.run.failed.len() as u64;
            let label = e.record.status.label().to_owned();
            match b.statuses.iter_mut().find(|(l, _)| *l == label) {
                Some((_, n)) => *n += 1,
                None => b.statuses.push((label, 1)),
            }
        }
        by_name.into_values().collect()
    }

    /// Creates one job per CSV row. Everything is validated first; a problem anywhere stores
    /// nothing and every problem is reported at once.
    fn create_batch(&mut self, name: String, template: JobSpec, csv: &str) -> Response {
        use migrated_core::batch::{BatchProblem, parse_batch};
        let mut problems = Vec::new();
        if name.trim().is_empty() || name.contains('/') {
            return error(ErrorKind::Invalid, "a batch needs a name without '/'");
        }
        if self
            .jobs
            .values()
            .any(|e| e.record.batch.as_deref() == Some(name.as_str()))
        {
            problems.push(BatchProblem::Exists(name.clone()));
        }
        let rows = match parse_batch(csv) {
            Ok(rows) => rows,
            Err(p) => {
                problems.extend(p);
                Vec::new()
            }
        };
        let mut specs = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut spec = template.clone();
            spec.name = format!("{name}/{}", row.email);
            spec.source.user = row.source_user.clone();
            spec.source.password = Some(row.source_password.clone());
            spec.source.password_file = None;
            spec.destination.user = row
                .destination_user
                .clone()
                .unwrap_or_else(|| row.email.clone());
            spec.destination.password_file = None;
            if let Some(p) = &row.destination_password {
                spec.destination.password = Some(p.clone());
            } else if spec.destination.password.is_none() {
                return error(
                    ErrorKind::Invalid,
                    format!(
                        "row {}: no destination password: add a DestinationPassword column, or give the batch's destination (admin) password",
                        row.row
                    ),
                );
            }
            if self.jobs.values().any(|e| e.record.spec.name == spec.name) {
                problems.push(BatchProblem::Exists(spec.name.clone()));
            }
            specs.push(spec);
        }
        if !problems.is_empty() {
            let message = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            return error(ErrorKind::Invalid, message);
        }
        // Validate the template once (patterns, endpoints) before storing anything.
        if let Some(first) = specs.first()
            && let Err(e) = first.copy_config(&format!("batch {name:?}"))
        {
            return error(ErrorKind::Invalid, format!("{e:#}"));
        }
        let count = specs.len();
        for spec in specs {
            if let Response::Error { kind, message } = self.create(spec, Some(name.clone())) {
                return Response::Error { kind, message };
            }
        }
        tracing::info!(batch = %name, mailboxes = count, "Batch created.");
        Response::Created { id: name }
    }

    fn create(&mut self, spec: JobSpec, batch: Option<String>) -> Response {
        if let Some(down) = &self.store_down {
            return error(
                ErrorKind::Internal,
                format!(
                    "the job store at {} cannot be written ({}): no job is created until it can",
                    self.store.path(),
                    down.fault
                ),
            );
        }
        let place = format!("job {:?}", spec.name);
        if spec.name.trim().is_empty() {
            return error(ErrorKind::Invalid, "the job needs a name (field `name`)");
        }
        for (side, e) in [("source", &spec.source), ("destination", &spec.destination)] {
            if e.user.trim().is_empty() {
                return error(
                    ErrorKind::Invalid,
                    format!("{place}: [{side}] user is missing"),
                );
            }
        }
        if self.jobs.values().any(|e| e.record.spec.name == spec.name) {
            return error(
                ErrorKind::Conflict,
                format!(
                    "a job named {:?} exists already: choose another name or delete it",
                    spec.name
                ),
            );
        }
        // Validate everything that can be checked without a network, before storing anything.
        if let Err(e) = spec.copy_config(&place) {
            return error(ErrorKind::Invalid, format!("{e:#}"));
        }
        if let Err(e) = spec.schedule.validate() {
            return error(ErrorKind::Invalid, format!("{place}: {e}"));
        }
        if let Some(bad) = spec
            .tags
            .iter()
            .find_map(|t| migrated_core::spec::check_tag(t).err())
        {
            return error(ErrorKind::Invalid, format!("{place}: tags: {bad}"));
        }
        if let Some(bad) = spec.notify.iter().find(|a| {
            a.contains(char::is_whitespace) || a.split('@').filter(|p| !p.is_empty()).count() != 2
        }) {
            return error(
                ErrorKind::Invalid,
                format!("{place}: notify: {bad:?} is not an e-mail address"),
            );
        }
        for (side, e) in [("source", &spec.source), ("destination", &spec.destination)] {
            if e.password_file.is_some() {
                return error(
                    ErrorKind::Invalid,
                    format!(
                        "{place}: [{side}] password_file: the client reads the file and sends the secret; the daemon takes no paths"
                    ),
                );
            }
        }
        let kind = match crate::job::source_kind(&spec.source, &self.settings.plugins, &place) {
            Ok(k) => k,
            Err(err) => return error(ErrorKind::Invalid, format!("{err:#}")),
        };
        let mut check = spec.clone();
        for e in [&mut check.source, &mut check.destination] {
            e.password = Some(e.password.take().unwrap_or_else(|| Secret::new("-")));
        }
        let checked = match kind {
            Kind::Mail => crate::job::plugin_source(&check, &self.settings.plugins, &place)
                .and_then(|_| check.destination.endpoint(&place, "destination"))
                .map(|_| ()),
            Kind::Contacts => {
                crate::job::contacts_sides(&check, &self.settings.plugins, &place).map(|_| ())
            }
        };
        if let Err(err) = checked {
            return error(ErrorKind::Invalid, format!("{err:#}"));
        }
        let mut bytes = [0u8; 6];
        if getrandom::fill(&mut bytes).is_err() {
            return error(ErrorKind::Internal, "no randomness for a job id");
        }
        let id: String = format!(
            "j{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let t = now();
        let record = JobRecord {
            id: id.clone(),
            spec,
            status: JobStatus::Queued,
            created: t,
            updated: t,
            finished: None,
            error: None,
            cancel_requested: false,
            run: RunReport::default(),
            next_event: 1,
            batch,
            dropin: None,
            final_delta: false,
        };
        let waiting = !record.has_credentials();
        self.jobs.insert(
            id.clone(),
            Entry {
                record,
                stop: None,
                last_publish: std::time::Instant::now(),
                window_stop: false,
                window_noted: false,
                store_stop: false,
            },
        );
        self.persist(&id);
        self.event(&id, "info", "Job created.".into());
        if waiting {
            self.set_status(&id, JobStatus::WaitingForCredentials);
        }
        Response::Created { id }
    }

    fn act(&mut self, id: &str, action: Action) -> Response {
        let status = self.jobs[id].record.status;
        if status == JobStatus::WaitingForStore && action == Action::Resume {
            // Try the store now rather than at the next retry.
            return match self.try_store() {
                Ok(()) => Response::Done {
                    status: self.jobs[id].record.status,
                },
                Err(fault) => error(
                    ErrorKind::Internal,
                    format!(
                        "the job store at {} still cannot be written ({fault}); the job continues by itself once it can",
                        self.store.path()
                    ),
                ),
            };
        }
        let next = match status.apply(action) {
            Ok(n) => n,
            Err(e) => return error(ErrorKind::Conflict, e.to_string()),
        };
        match action {
            Action::Delete => {
                let store = self.store.clone();
                if let Err(e) = tokio::task::block_in_place(|| store.delete_job(id)) {
                    self.store_failed(&e);
                    return error(
                        ErrorKind::Internal,
                        format!("the job could not be deleted: {e}"),
                    );
                }
                let removed = self.jobs.remove(id);
                if let Some(e) = &removed {
                    self.consume_dropin(&e.record);
                }
                let name = removed.map(|e| e.record.spec.name).unwrap_or_default();
                tracing::info!(job_id = %id, job = %name, "Job deleted with all its data.");
                return Response::Done { status };
            }
            Action::Reset => {
                let store = self.store.clone();
                if let Err(e) = tokio::task::block_in_place(|| store.reset_job(id)) {
                    self.store_failed(&e);
                    return error(
                        ErrorKind::Internal,
                        format!("the job could not be reset: {e}"),
                    );
                }
                if let Some(e) = self.jobs.get_mut(id) {
                    e.record.finished = None;
                    e.record.run = RunReport::default();
                }
                self.event(
                    id,
                    "warning",
                    "Reset: the ledger is cleared; the next run copies everything again.".into(),
                );
            }
            Action::Cancel if next == JobStatus::Stopping => {
                if let Some(e) = self.jobs.get_mut(id) {
                    e.record.cancel_requested = true;
                }
                self.stop_run(id);
            }
            Action::Pause if next == JobStatus::Stopping => self.stop_run(id),
            _ => {}
        }
        self.set_status(id, next);
        if next == JobStatus::Queued && !self.jobs[id].record.has_credentials() {
            self.set_status(id, JobStatus::WaitingForCredentials);
        }
        Response::Done {
            status: self.jobs[id].record.status,
        }
    }

    fn stop_run(&mut self, id: &str) {
        if let Some(stop) = self.jobs.get(id).and_then(|e| e.stop.as_ref()) {
            stop.stop();
        }
    }

    fn delta(
        &mut self,
        id: &str,
        source: Option<Secret>,
        destination: Option<Secret>,
        final_run: bool,
    ) -> Response {
        let status = self.jobs[id].record.status;
        let next = if status == JobStatus::WaitingForCredentials {
            JobStatus::Queued
        } else {
            match status.apply(Action::Delta) {
                Ok(n) => n,
                Err(e) => return error(ErrorKind::Conflict, e.to_string()),
            }
        };
        if let Some(e) = self.jobs.get_mut(id) {
            if source.is_some() {
                e.record.spec.source.password = source;
            }
            if destination.is_some() {
                e.record.spec.destination.password = destination;
            }
            e.record.cancel_requested = false;
            e.record.finished = None;
            e.record.final_delta = final_run;
        }
        if final_run {
            self.event(id, "info", "Final delta requested: no recurring delta after it; credentials are erased when it completes.".into());
        }
        self.persist(id);
        self.set_status(id, next);
        if !self.jobs[id].record.has_credentials() {
            self.set_status(id, JobStatus::WaitingForCredentials);
            return error(
                ErrorKind::Conflict,
                "the job's credentials were erased at completion: give them again (migratectl delta asks for them)",
            );
        }
        Response::Done {
            status: self.jobs[id].record.status,
        }
    }

    /// Starts queued jobs while slots are free, oldest first.
    fn schedule(&mut self) {
        if self.shutting_down || self.store_down.is_some() {
            return;
        }
        // Lower priority numbers first, then the oldest.
        let mut queued: Vec<(u32, u64, String)> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.record.status == JobStatus::Queued && e.stop.is_none())
            .map(|(id, e)| (e.record.spec.priority, e.record.created, id.clone()))
            .collect();
        queued.sort();
        for (_, _, id) in queued {
            if self.running() >= self.settings.max_jobs {
                break;
            }
            if !self.host_has_room(&id) {
                continue;
            }
            let schedule = &self.jobs[&id].record.spec.schedule;
            if !schedule.allows(now()) {
                let opening = schedule.next_opening(now());
                if let Some(e) = self.jobs.get_mut(&id)
                    && !e.window_noted
                {
                    e.window_noted = true;
                    let when = opening.map_or_else(
                        || "no window in the next 8 days".to_owned(),
                        |t| format!("at {} UTC", clock(t)),
                    );
                    self.event(
                        &id,
                        "info",
                        format!("Waiting for its schedule window: it opens {when}."),
                    );
                }
                continue;
            }
            if let Some(e) = self.jobs.get_mut(&id) {
                e.window_noted = false;
            }
            self.start(&id);
        }
    }

    /// On every tick: stop runs whose schedule window ended (they go back to the queue), and
    /// queue the recurring deltas that are due.
    fn apply_schedules(&mut self) {
        let t = now();
        let ending: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, e)| {
                e.stop.is_some() && !e.window_stop && !e.record.spec.schedule.allows(t)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ending {
            if let Some(e) = self.jobs.get_mut(&id) {
                e.window_stop = true;
            }
            self.stop_run(&id);
            self.event(
                &id,
                "info",
                "Its schedule window ended: pausing at the next checkpoint.".into(),
            );
        }
        let due: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, e)| {
                let r = &e.record;
                matches!(
                    r.status,
                    JobStatus::Completed | JobStatus::CompletedWithErrors
                ) && !r.final_delta
                    && r.has_credentials()
                    && match (r.spec.schedule.delta_every_hours, r.finished) {
                        (Some(h), Some(f)) => f + (h * 3600.0) as u64 <= t,
                        _ => false,
                    }
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.event(
                &id,
                "info",
                "Recurring delta: copying what is new since the last run.".into(),
            );
            if let Some(e) = self.jobs.get_mut(&id) {
                e.record.finished = None;
            }
            self.set_status(&id, JobStatus::Queued);
        }
    }

    /// Connections a job opens to each of its hosts: its workers plus the control connection.
    fn connections_of(&self, spec: &JobSpec) -> usize {
        let limit = self.settings.max_connections_per_host;
        let workers = spec.limits.connections.max(1);
        let workers = if limit > 1 {
            workers.min(limit - 1)
        } else {
            workers.min(1)
        };
        workers + 1
    }

    /// Connections a job opens to `host`: per side on that host (source and destination may
    /// be the same host).
    fn connections_to(&self, spec: &JobSpec, host: &str) -> usize {
        let sides =
            usize::from(spec.source.host == host) + usize::from(spec.destination.host == host);
        sides * self.connections_of(spec)
    }

    /// Whether starting the job keeps every host within the per-host connection limit. A job
    /// that alone exceeds it still starts when its hosts are idle (its workers were already
    /// capped to fit).
    fn host_has_room(&self, id: &str) -> bool {
        let limit = self.settings.max_connections_per_host;
        if limit == 0 {
            return true;
        }
        let spec = &self.jobs[id].record.spec;
        [&spec.source.host, &spec.destination.host]
            .iter()
            .all(|host| {
                let used: usize = self
                    .jobs
                    .values()
                    .filter(|e| e.stop.is_some())
                    .map(|e| self.connections_to(&e.record.spec, host))
                    .sum();
                used == 0 || used + self.connections_to(spec, host) <= limit
            })
    }

    /// The plugins loaded and the files skipped.
    fn plugins(&self) -> Response {
        let p = &self.settings.plugins;
        Response::Plugins {
            plugins: p
                .loaded
                .iter()
                .map(|plugin| {
                    let info = plugin.info();
                    migrated_ipc::PluginRow {
                        name: info.name.clone(),
                        version: info.version.clone(),
                        abi: plugin.abi().to_string(),
                        kinds: info.kinds.iter().map(ToString::to_string).collect(),
                        description: info.description.clone(),
                        path: plugin.path().display().to_string(),
                        settings: info
                            .settings
                            .iter()
                            .map(|s| migrated_ipc::PluginSetting {
                                name: s.name.clone(),
                                kind: s.kind.to_string(),
                                default: s.default.clone(),
                                help: s.help.clone(),
                            })
                            .collect(),
                    }
                })
                .collect(),
            rejected: p
                .rejected
                .iter()
                .map(|r| migrated_ipc::RejectedPlugin {
                    path: r.path.display().to_string(),
                    reason: r.reason.clone(),
                })
                .collect(),
        }
    }

    fn start(&mut self, id: &str) {
        let record = self.jobs[id].record.clone();
        let place = format!("job {:?}", record.spec.name);
        let built = (|| -> anyhow::Result<_> {
            let mut config = record.spec.copy_config(&place)?;
            // The ledger is kept under the generated id: names can be addresses.
            config.job_id = record.id.clone();
            config.connections = self.connections_of(&record.spec) - 1;
            config.bandwidth.extend(self.settings.bandwidth.clone());
            config.memory = self.settings.memory.clone();
            let plugins = &self.settings.plugins;
            let sides = match crate::job::source_kind(&record.spec.source, plugins, &place)? {
                Kind::Mail => Sides::Mail(
                    crate::job::plugin_source(&record.spec, plugins, &place)?,
                    record.spec.destination.endpoint(&place, "destination")?,
                ),
                Kind::Contacts => {
                    let (source, destination) =
                        crate::job::contacts_sides(&record.spec, plugins, &place)?;
                    Sides::Contacts(source, destination)
                }
            };
            Ok((config, sides))
        })();
        let (config, sides) = match built {
            Ok(b) => b,
            Err(e) => {
                if let Some(entry) = self.jobs.get_mut(id) {
                    entry.record.error = Some(format!("{e:#}"));
                }
                self.set_status(id, JobStatus::Failed);
                return;
            }
        };
        let tx = self.tx.clone();
        let job = id.to_owned();
        let observer: migrated_engine::Observer = Arc::new(move |event| {
            let _ = tx.send(Msg::Engine {
                id: job.clone(),
                event,
            });
        });
        let store = self.store.clone();
        let (stop, run): (_, std::pin::Pin<Box<dyn Future<Output = _> + Send>>) = match sides {
            Sides::Mail(source, destination) => {
                let engine = Engine::new(source, destination, store, config, observer);
                (
                    engine.stop_handle(),
                    Box::pin(async move { engine.run().await }),
                )
            }
            Sides::Contacts(source, destination) => {
                let engine = ContactsEngine::new(source, destination, store, config, observer);
                (
                    engine.stop_handle(),
                    Box::pin(async move { engine.run().await }),
                )
            }
        };
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.stop = Some(stop);
            entry.record.error = None;
            // A new run's figures; the last verification stays until a run replaces it.
            let run = std::mem::take(&mut entry.record.run);
            entry.record.run.verification = run.verification;
            entry.record.run.verified_at = run.verified_at;
        }
        tracing::info!(job_id = %id, job = %record.spec.name, priority = record.spec.priority, "Job started.");
        self.set_status(id, JobStatus::Connecting);
        let tx = self.tx.clone();
        let job = id.to_owned();
        tokio::spawn(async move {
            let result = run.await;
            let _ = tx.send(Msg::Finished { id: job, result });
        });
    }

    fn on_engine(&mut self, id: &str, event: Event) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        let mut publish = true;
        match event {
            Event::Phase(phase) => {
                let status = match phase {
                    Phase::Connecting => JobStatus::Connecting,
                    Phase::Authenticating => JobStatus::Authenticating,
                    Phase::ScanningFolders => JobStatus::ScanningFolders,
                    Phase::CreatingFolders => JobStatus::CreatingFolders,
                    Phase::Copying => JobStatus::Copying,
                    Phase::Finalizing => JobStatus::Finalizing,
                };
                let current = entry.record.status;
                if current != JobStatus::Stopping && current.can_become(status) {
                    self.set_status(id, status);
                }
                return;
            }
            Event::Connection(side, state) => {
                let (label, slot) = match side {
                    Side::Source => ("Source", &mut entry.record.run.source_connection),
                    Side::Destination => {
                        ("Destination", &mut entry.record.run.destination_connection)
                    }
                };
                *slot = Some(state.label());
                match state {
                    Connection::Authenticated => {
                        self.event(id, "info", format!("{label} connection: logged in."));
                        return;
                    }
                    Connection::Failed(reason) => {
                        self.event(id, "error", format!("{label} connection failed: {reason}"));
                        return;
                    }
                    _ => {}
                }
            }
            Event::Totals { items, bytes, .. } => {
                entry.record.run.items_total = entry.record.run.items_done + items;
                entry.record.run.bytes_total = entry.record.run.bytes_done + bytes;
            }
            Event::Progress {
                folder,
                items_done,
                bytes_done,
            } => {
                entry.record.run.items_done = items_done;
                entry.record.run.bytes_done = bytes_done;
                entry.record.run.current_folder = Some(folder);
                publish = entry.last_publish.elapsed() >= Duration::from_millis(250);
            }
            Event::FolderDone(f) => {
                let row = folder_row(&f);
                match entry
                    .record
                    .run
                    .folders
                    .iter_mut()
                    .find(|r| r.source == row.source)
                {
                    Some(r) => *r = row,
                    None => entry.record.run.folders.push(row),
                }
            }
            Event::Excluded(i) => {
                let msg = format!(
                    "Excluded {} UID {}{} ({} bytes): {}.",
                    i.folder,
                    i.uid,
                    titled(i.subject.as_deref()),
                    i.size,
                    i.reason
                );
                entry.record.run.excluded.push(ItemRow {
                    folder: i.folder,
                    uid: i.uid,
                    size: i.size,
                    message_id: i.message_id,
                    subject: i.subject,
                    reason: i.reason,
                });
                self.event(id, "warning", msg);
                return;
            }
            Event::Failed(i) => {
                let msg = format!(
                    "Refused {} UID {}{}: {}.",
                    i.folder,
                    i.uid,
                    titled(i.subject.as_deref()),
                    i.reason
                );
                entry.record.run.failed.push(ItemRow {
                    folder: i.folder,
                    uid: i.uid,
                    size: i.size,
                    message_id: i.message_id,
                    subject: i.subject,
                    reason: i.reason,
                });
                self.event(id, "warning", msg);
                return;
            }
            Event::Retrying { error, delay } => {
                let msg = format!(
                    "Temporary error, retrying in {:.1} s: {error}",
                    delay.as_secs_f64()
                );
                self.event(id, "warning", msg);
                return;
            }
            Event::Throttled { delay, reason } => {
                let until = now() + delay.as_secs().max(1);
                entry.record.run.throttled_until = Some(until);
                let msg = format!(
                    "Throttled by the server: waiting {:.1} s (until {} UTC), then going on. The server said: {reason}",
                    delay.as_secs_f64(),
                    clock(until)
                );
                self.event(id, "warning", msg);
                return;
            }
        }
        if publish {
            entry.last_publish = std::time::Instant::now();
            let _ = self.updates.send(Update {
                job: entry.record.summary(),
                events: Vec::new(),
            });
        }
    }

    fn on_finished(&mut self, id: &str, result: Result<Summary, EngineError>) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        entry.stop = None;
        let cancel = entry.record.cancel_requested;
        let window_stop = std::mem::take(&mut entry.window_stop);
        let store_stop = std::mem::take(&mut entry.store_stop);
        let paused = entry.record.status == JobStatus::Stopping;
        // The store cannot be written: the job waits for it (unless it was paused, cancelled
        // or the daemon stops: that wins).
        let store_fault = match &result {
            Err(EngineError::Store(e)) => {
                self.store_failed(e);
                e.fault().cloned()
            }
            Err(EngineError::Stopped) if store_stop => {
                self.store_down.as_ref().map(|d| d.fault.clone())
            }
            _ => None,
        };
        if let Some(fault) = store_fault
            && !cancel
            && !paused
            && !self.shutting_down
        {
            self.wait_for_store(id, &fault);
            return;
        }
        let status = match result {
            Err(EngineError::Store(e)) if e.fault().is_some() && cancel => JobStatus::Cancelled,
            Err(EngineError::Store(e)) if e.fault().is_some() && paused => JobStatus::Stopped,
            // The daemon stops: the job resumes at the next start.
            Err(EngineError::Store(e)) if e.fault().is_some() => JobStatus::Queued,
            Ok(summary) => {
                let Some(entry) = self.jobs.get_mut(id) else {
                    return;
                };
                let run = &mut entry.record.run;
                run.duration_secs = summary.duration.as_secs_f64();
                run.items_done = summary.copied;
                run.items_total = run.items_total.max(summary.copied);
                run.bytes_done = summary.bytes;
                run.current_folder = None;
                run.folders = summary.per_folder.iter().map(folder_row).collect();
                let errors = !summary.failed.is_empty()
                    || summary.per_folder.iter().any(|f| f.error.is_some());
                let message = format!(
                    "Run finished: {} messages copied ({:.1} MB), {} already there, {} flag changes, {} excluded, {} failed, in {:.1} s.",
                    summary.copied,
                    summary.bytes as f64 / 1e6,
                    summary.already_copied,
                    summary.flags_updated,
                    summary.excluded.len(),
                    summary.failed.len(),
                    summary.duration.as_secs_f64()
                );
                self.event(id, "info", message);
                let name = self.jobs[id].record.spec.name.clone();
                if !summary.failed.is_empty() {
                    self.event(
                        id,
                        "warning",
                        format!(
                            "{} messages were refused by the destination. What to do: `migratectl report {name}` lists each with the server's words; fix the cause (a size or content the server will not take, its quota) and run `migratectl delta {name}`, which copies only them.",
                            summary.failed.len()
                        ),
                    );
                }
                for f in summary.per_folder.iter().filter(|f| f.error.is_some()) {
                    self.event(
                        id,
                        "error",
                        format!(
                            "Folder {} could not be copied: {}. What to do: create {} on the destination by hand, or rename it with a [folders] rename rule, then run `migratectl delta {name}`.",
                            f.source,
                            f.error.as_deref().unwrap_or(""),
                            f.destination
                        ),
                    );
                }
                if let Some(rows) = &summary.verification {
                    self.verified(id, rows);
                }
                if errors {
                    JobStatus::CompletedWithErrors
                } else {
                    JobStatus::Completed
                }
            }
            Err(EngineError::Stopped) if cancel => JobStatus::Cancelled,
            Err(EngineError::Stopped) if self.shutting_down => JobStatus::Queued,
            Err(EngineError::Stopped) if window_stop => JobStatus::Queued,
            Err(EngineError::Stopped) => JobStatus::Stopped,
            Err(e) => {
                let message = format!("{e}");
                if let Some(entry) = self.jobs.get_mut(id) {
                    entry.record.error = Some(message.clone());
                }
                let name = self.jobs[id].record.spec.name.clone();
                self.event(
                    id,
                    "error",
                    format!(
                        "Run failed: {message}. What to do: {}",
                        what_to_do(&e, &name)
                    ),
                );
                JobStatus::Failed
            }
        };
        if status == JobStatus::Queued {
            // Stopped for a shutdown: queued again, so the next start resumes it.
            if let Some(entry) = self.jobs.get_mut(id) {
                entry.record.status = JobStatus::Queued;
                entry.record.updated = now();
            }
            self.persist(id);
            let message = if window_stop {
                let opening = self.jobs[id].record.spec.schedule.next_opening(now());
                format!(
                    "Paused: its schedule window ended; it resumes {}.",
                    opening.map_or_else(
                        || "when a window opens".to_owned(),
                        |t| format!("at {} UTC", clock(t))
                    )
                )
            } else {
                "Run stopped for shutdown; it resumes when the daemon starts.".to_owned()
            };
            self.event(id, "info", message);
        } else {
            self.set_status(id, status);
            if status.is_finished() {
                self.notify_finished(id);
            }
        }
    }

    /// Good news for a batch: when its last mailbox finishes, an event on every job of it and,
    /// when its jobs name addresses (`notify`), the batch's report by e-mail; a job outside a
    /// batch mails its own report.
    fn notify_finished(&mut self, id: &str) {
        let record = &self.jobs[id].record;
        let in_batch = record.batch.is_some();
        let (subject_name, members): (String, Vec<String>) = match &record.batch {
            Some(batch) => {
                let members: Vec<String> = self
                    .jobs
                    .iter()
                    .filter(|(_, e)| e.record.batch.as_ref() == Some(batch))
                    .map(|(k, _)| k.clone())
                    .collect();
                if members
                    .iter()
                    .any(|m| !self.jobs[m].record.status.is_finished())
                {
                    return;
                }
                (format!("batch {batch}"), members)
            }
            None => (format!("job {}", record.spec.name), vec![id.to_owned()]),
        };
        let mut jobs: Vec<JobSummary> = members
            .iter()
            .map(|m| self.jobs[m].record.summary())
            .collect();
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        let count = |s: JobStatus| jobs.iter().filter(|j| j.status == Some(s)).count();
        let (ok, partly, failed, cancelled) = (
            count(JobStatus::Completed),
            count(JobStatus::CompletedWithErrors),
            count(JobStatus::Failed),
            count(JobStatus::Cancelled),
        );
        let subject = format!(
            "migrated: {subject_name} finished: {ok} completed, {partly} with errors, {failed} failed, {cancelled} cancelled"
        );
        if in_batch {
            let level = if failed + partly > 0 {
                "warning"
            } else {
                "info"
            };
            let what = if failed + partly > 0 {
                " `migratectl report --batch` lists every refused message and error with what to do."
            } else {
                ""
            };
            for m in &members {
                self.event(m, level, format!("Batch finished: {ok} completed, {partly} with errors, {failed} failed, {cancelled} cancelled.{what}"));
            }
        }
        let mut to: Vec<String> = members
            .iter()
            .flat_map(|m| self.jobs[m].record.spec.notify.clone())
            .collect();
        to.sort();
        to.dedup();
        if to.is_empty() {
            return;
        }
        let Some(smtp) = self.settings.smtp.clone() else {
            self.event(
                id,
                "warning",
                format!(
                    "No report e-mailed to {}: the daemon has no --smtp-server.",
                    to.join(", ")
                ),
            );
            return;
        };
        let mut body = format!("{subject}\n\n");
        body.push_str(&format!(
            "{:<28} {:<22} {:>20} {:>8}  ERROR\n",
            "MAILBOX", "STATUS", "MESSAGES", "FAILED"
        ));
        for j in &jobs {
            body.push_str(&format!(
                "{:<28} {:<22} {:>20} {:>8}  {}\n",
                j.name,
                j.status.map(|s| s.label()).unwrap_or(""),
                format!("{}/{}", j.items_done, j.items_total),
                j.failed,
                j.error.as_deref().unwrap_or("")
            ));
        }
        body.push_str(
            "\nEvery refused or excluded message, with the server's words: migratectl report",
        );
        match &self.jobs[id].record.batch {
            Some(batch) => body.push_str(&format!(" --batch {batch}\n")),
            None => body.push_str(&format!(" {}\n", self.jobs[id].record.spec.name)),
        }
        let tx = self.tx.clone();
        let job = id.to_owned();
        tokio::spawn(async move {
            let list = to.join(", ");
            let (level, message) = match smtp.send(to, subject, body).await {
                Ok(()) => ("info", format!("Report e-mailed to {list}.")),
                Err(e) => (
                    "warning",
                    format!(
                        "The report could not be e-mailed to {list}: {e}. Check --smtp-server and the SMTP credentials; `migratectl report` shows the same report."
                    ),
                ),
            };
            let _ = tx.send(Msg::Notice {
                id: job,
                level,
                message,
            });
        });
    }

    /// Diffs the drop-in directory against the jobs made from it: new files become jobs,
    /// changed files update their job's settings for its next run, removed files stop nothing
    /// unless the file said `on_remove = "cancel"`. A file with an error changes nothing and is
    /// reported (once per change) in the journal and in `migratectl list`.
    fn rescan(&mut self) {
        let Some(dir) = self.settings.jobs_dir.clone() else {
            return;
        };
        let found = crate::dropin::scan(&dir);
        let mut problems = Vec::new();
        for d in &found {
            match &d.spec {
                Err(message) => {
                    self.note_problem(&mut problems, &d.file, message.clone());
                }
                Ok(spec) if d.batch_csv.is_some() => {
                    let known = self
                        .jobs
                        .values()
                        .any(|e| e.record.dropin.as_ref().is_some_and(|(f, _)| f == &d.file));
                    if known
                        || self
                            .dropin_consumed
                            .contains(&(d.file.clone(), d.hash.clone()))
                    {
                        continue;
                    }
                    let csv = d.batch_csv.clone().unwrap_or_default();
                    match self.create_batch(spec.name.clone(), spec.clone(), &csv) {
                        Response::Created { id: batch } => {
                            let members: Vec<String> = self
                                .jobs
                                .iter()
                                .filter(|(_, e)| e.record.batch.as_deref() == Some(batch.as_str()))
                                .map(|(id, _)| id.clone())
                                .collect();
                            for id in members {
                                if let Some(e) = self.jobs.get_mut(&id) {
                                    e.record.dropin = Some((d.file.clone(), d.hash.clone()));
                                }
                                self.persist(&id);
                            }
                            tracing::info!(file = %d.file, batch = %batch, "Batch created from a drop-in file.");
                        }
                        Response::Error { message, .. } => {
                            let message =
                                format!("job file {}: {message}", dir.join(&d.file).display());
                            self.note_problem(&mut problems, &d.file, message);
                        }
                        _ => {}
                    }
                }
                Ok(spec) => {
                    let owner = self
                        .jobs
                        .iter()
                        .find(|(_, e)| e.record.dropin.as_ref().is_some_and(|(f, _)| f == &d.file))
                        .map(|(id, e)| (id.clone(), e.record.dropin.clone()));
                    let consumed = self
                        .dropin_consumed
                        .contains(&(d.file.clone(), d.hash.clone()));
                    match owner {
                        None if consumed => {}
                        None => match self.create(spec.clone(), None) {
                            Response::Created { id } => {
                                if let Some(e) = self.jobs.get_mut(&id) {
                                    e.record.dropin = Some((d.file.clone(), d.hash.clone()));
                                }
                                self.persist(&id);
                                self.event(
                                    &id,
                                    "info",
                                    format!("Created from the job file {}.", d.file),
                                );
                            }
                            Response::Error { message, .. } => {
                                let message =
                                    format!("job file {}: {message}", dir.join(&d.file).display());
                                self.note_problem(&mut problems, &d.file, message);
                            }
                            _ => {}
                        },
                        Some((id, Some((_, hash)))) if hash != d.hash => {
                            if let Some(e) = self.jobs.get_mut(&id) {
                                let keep_name = e.record.spec.name.clone();
                                e.record.spec = spec.clone();
                                e.record.spec.name = keep_name;
                                e.record.dropin = Some((d.file.clone(), d.hash.clone()));
                            }
                            self.persist(&id);
                            self.event(&id, "info", format!("Job file {} changed: the new settings apply from the next run.", d.file));
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        let present: std::collections::HashSet<&str> =
            found.iter().map(|d| d.file.as_str()).collect();
        let removed: Vec<(String, String, migrated_core::OnRemove)> = self
            .jobs
            .iter()
            .filter_map(|(id, e)| {
                let (file, _) = e.record.dropin.as_ref()?;
                (!present.contains(file.as_str()))
                    .then(|| (id.clone(), file.clone(), e.record.spec.on_remove))
            })
            .collect();
        for (id, file, on_remove) in removed {
            if let Some(e) = self.jobs.get_mut(&id) {
                e.record.dropin = None;
            }
            self.persist(&id);
            let status = self.jobs[&id].record.status;
            if on_remove == migrated_core::OnRemove::Cancel && status.apply(Action::Cancel).is_ok()
            {
                self.act(&id, Action::Cancel);
                self.event(
                    &id,
                    "info",
                    format!("Job file {file} removed: the job is cancelled, as the file asked."),
                );
            } else {
                self.event(
                    &id,
                    "info",
                    format!(
                        "Job file {file} removed: the job goes on (migratectl delete removes it)."
                    ),
                );
            }
        }
        self.dropin_problems = problems;
    }

    /// Remembers that a deleted job came from a drop-in file, so the file does not make it
    /// again.
    fn consume_dropin(&mut self, record: &JobRecord) {
        let Some(d) = &record.dropin else { return };
        if !self.dropin_consumed.contains(d) {
            self.dropin_consumed.push(d.clone());
            let store = self.store.clone();
            let consumed = self.dropin_consumed.clone();
            if let Err(e) =
                tokio::task::block_in_place(|| store.put_setting("dropin-consumed", &consumed))
            {
                tracing::error!(error = %e, "The list of consumed drop-in files could not be saved.");
                self.store_failed(&e);
            }
        }
    }

    /// Records a drop-in file's problem; logs it unless it was already known (once per change).
    fn note_problem(&self, problems: &mut Vec<(String, String)>, file: &str, message: String) {
        if !self
            .dropin_problems
            .iter()
            .any(|(f, m)| f == file && *m == message)
        {
            tracing::error!(file = %file, "{message}");
        }
        problems.push((file.to_owned(), message));
    }

    /// Deletes jobs whose retention period is over.
    fn sweep(&mut self) {
        if self.store_down.is_some() {
            return;
        }
        let limit = self.settings.retention.as_secs();
        let t = now();
        let expired: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, e)| {
                e.stop.is_none()
                    && e.record
                        .finished
                        .is_some_and(|f| t.saturating_sub(f) >= limit)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let store = self.store.clone();
            match tokio::task::block_in_place(|| store.delete_job(&id)) {
                Ok(()) => {
                    let removed = self.jobs.remove(&id);
                    if let Some(e) = &removed {
                        self.consume_dropin(&e.record);
                    }
                    let name = removed.map(|e| e.record.spec.name).unwrap_or_default();
                    tracing::info!(job_id = %id, job = %name, "Job deleted: its retention period is over.");
                }
                Err(e) => {
                    tracing::error!(job_id = %id, error = %e, "Expired job could not be deleted.");
                    self.store_failed(&e);
                }
            }
        }
    }
}

/// A folder report as the control API carries it.
impl Daemon {
    /// Keeps a run's verification and says in the events (and journal) what it found.
    fn verified(&mut self, id: &str, rows: &[migrated_engine::VerifyRow]) {
        let rows: Vec<migrated_ipc::VerifyRow> = rows
            .iter()
            .map(|r| migrated_ipc::VerifyRow {
                source: r.source.clone(),
                destination: r.destination.clone(),
                source_messages: r.source_messages,
                source_bytes: r.source_bytes,
                destination_messages: r.destination_messages,
                destination_bytes: r.destination_bytes,
                missing: r
                    .missing
                    .iter()
                    .map(|m| ItemRow {
                        folder: r.source.clone(),
                        uid: m.uid,
                        size: m.size,
                        message_id: m.message_id.clone(),
                        subject: m.subject.clone(),
                        reason: m.reason.clone(),
                    })
                    .collect(),
            })
            .collect();
        let missing: usize = rows
            .iter()
            .flat_map(|r| &r.missing)
            .filter(|m| !m.reason.starts_with("excluded"))
            .count();
        let (level, message) = if missing == 0 {
            (
                "info",
                format!(
                    "Verified: all {} folders are on the destination with every message that was not excluded.",
                    rows.len()
                ),
            )
        } else {
            let folders: Vec<String> = rows
                .iter()
                .filter(|r| r.missing.iter().any(|m| !m.reason.starts_with("excluded")))
                .map(|r| {
                    let n = r
                        .missing
                        .iter()
                        .filter(|m| !m.reason.starts_with("excluded"))
                        .count();
                    format!("{} ({n})", r.source)
                })
                .collect();
            (
                "warning",
                format!(
                    "Verified: {missing} messages are not on the destination, in {}. `migratectl report` lists each with the reason.",
                    folders.join(", ")
                ),
            )
        };
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.record.run.verification = rows;
            entry.record.run.verified_at = Some(now());
        }
        self.event(id, level, message);
    }
}

/// The job store failing and coming back: while it cannot be written no run starts, running
/// ones stop, their jobs wait in [`JobStatus::WaitingForStore`], and the store is tried again
/// after [`STORE_RETRY_FIRST`], the pause doubling up to [`STORE_RETRY_MAX`] (`resume` tries at
/// once). Events and job records it could not take are kept and written when it is back.
impl Daemon {
    /// Notes a store error: an I/O fault (disk full, read-only, failing disk, store gone)
    /// makes the daemon wait for the store; other errors are the caller's to report.
    fn store_failed(&mut self, e: &StoreError) {
        let Some(fault) = e.fault() else {
            return;
        };
        match &mut self.store_down {
            Some(down) => {
                if down.fault.kind != fault.kind {
                    down.fault = fault.clone();
                    self.store_fault_changed();
                }
            }
            None => {
                tracing::error!(
                    store = %self.store.path(),
                    "The job store cannot be written: {fault}. Nothing is copied until it can; the daemon tries it again in {} s, then at least every {} s.",
                    STORE_RETRY_FIRST.as_secs(),
                    STORE_RETRY_MAX.as_secs()
                );
                self.store_down = Some(StoreDown {
                    fault: fault.clone(),
                    delay: STORE_RETRY_FIRST,
                });
                // Nothing more is sent until the store works again: every run stops at its
                // next checkpoint and waits for the store.
                for entry in self.jobs.values_mut() {
                    if let Some(stop) = &entry.stop {
                        entry.store_stop = true;
                        stop.stop();
                    }
                }
                self.arm_store_retry();
                self.notify_status();
            }
        }
    }

    /// A run ended because the store cannot be written: the job waits for it.
    fn wait_for_store(&mut self, id: &str, fault: &StoreFault) {
        let name = self.jobs[id].record.spec.name.clone();
        let message = self.store_wait_message(fault, &name);
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.record.error = Some(message.clone());
            // The run's connections are closed; no folder is being copied.
            let run = &mut entry.record.run;
            run.current_folder = None;
            run.source_connection = None;
            run.destination_connection = None;
        }
        self.set_status(id, JobStatus::WaitingForStore);
        self.event(id, "warning", message);
    }

    /// What an administrator reads in the job's error and events while it waits.
    fn store_wait_message(&self, fault: &StoreFault, job: &str) -> String {
        let path = self.store.path();
        let (what, todo) = match fault.kind {
            FaultKind::DiskFull => (
                "The job store's disk is full",
                format!("free space on the file system that holds {path}"),
            ),
            FaultKind::ReadOnly => (
                "The job store's file system is read-only",
                format!(
                    "make the file system that holds {path} writable again (if the kernel made it read-only after an error, check it first: the daemon holds no file of the store open while it waits)"
                ),
            ),
            FaultKind::Missing => (
                "The job store is not there",
                format!("mount the file system that holds {path} again"),
            ),
            FaultKind::Io => (
                "The job store cannot be written",
                format!("check the disk that holds {path} (the kernel log says more)"),
            ),
        };
        format!(
            "{what} ({path}: {}). Nothing more is copied until the store can be written; nothing copied so far is lost or copied twice. What to do: {todo}; the job continues by itself (the daemon tries the store again at least every {} s), or at once with `migratectl resume {job}`.",
            fault.detail,
            STORE_RETRY_MAX.as_secs()
        )
    }

    /// The reason changed (say the disk has room now but the file system is not mounted):
    /// the waiting jobs say so.
    fn store_fault_changed(&mut self) {
        let Some(fault) = self.store_down.as_ref().map(|d| d.fault.clone()) else {
            return;
        };
        tracing::warn!(store = %self.store.path(), "The job store still cannot be written: {fault}.");
        let waiting: Vec<(String, String)> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.record.status == JobStatus::WaitingForStore)
            .map(|(id, e)| (id.clone(), e.record.spec.name.clone()))
            .collect();
        for (id, name) in waiting {
            let message = self.store_wait_message(&fault, &name);
            if let Some(entry) = self.jobs.get_mut(&id) {
                entry.record.error = Some(message.clone());
            }
            self.event(&id, "warning", message);
        }
        self.notify_status();
    }

    /// Sends [`Msg::StoreRetry`] after the current pause.
    fn arm_store_retry(&mut self) {
        self.store_generation += 1;
        let generation = self.store_generation;
        let delay = self
            .store_down
            .as_ref()
            .map_or(STORE_RETRY_FIRST, |d| d.delay);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Msg::StoreRetry { generation });
        });
    }

    /// The retry timer fired: try the store; on failure wait longer.
    fn retry_store(&mut self) {
        if self.store_down.is_none() {
            return;
        }
        if self.running() > 0 {
            // Runs are still stopping; try again shortly.
            self.store_generation += 1;
            let generation = self.store_generation;
            let tx = self.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = tx.send(Msg::StoreRetry { generation });
            });
            return;
        }
        if self.try_store().is_err() {
            if let Some(down) = &mut self.store_down {
                down.delay = (down.delay * 2).min(STORE_RETRY_MAX);
            }
            self.arm_store_retry();
        }
    }

    /// Opens the store again if it can be written; then the waiting jobs continue.
    fn try_store(&mut self) -> Result<(), StoreFault> {
        let current = || StoreFault {
            kind: FaultKind::Io,
            detail: "the runs are still stopping".into(),
        };
        if self.running() > 0 {
            // No run may go on with what it read before the fault.
            return Err(self
                .store_down
                .as_ref()
                .map_or_else(current, |d| d.fault.clone()));
        }
        let store = self.store.clone();
        match tokio::task::block_in_place(|| store.reopen()) {
            Ok(_) => {
                self.store_back();
                match &self.store_down {
                    None => Ok(()),
                    Some(down) => Err(down.fault.clone()),
                }
            }
            Err(e) => {
                let fault = e.fault().cloned().unwrap_or_else(|| StoreFault {
                    kind: FaultKind::Io,
                    detail: e.to_string(),
                });
                match &mut self.store_down {
                    Some(down) if down.fault.kind != fault.kind => {
                        down.fault = fault.clone();
                        self.store_fault_changed();
                    }
                    Some(down) => {
                        tracing::debug!(store = %self.store.path(), "The job store still cannot be written: {fault}.");
                        down.fault = fault.clone();
                    }
                    None => self.store_failed(&e),
                }
                Err(fault)
            }
        }
    }

    /// The store can be written again: what it could not take is written, and the jobs that
    /// waited go back to the queue.
    fn store_back(&mut self) {
        self.store_down = None;
        self.store_generation += 1;
        tracing::info!(store = %self.store.path(), "The job store can be written again; the jobs waiting for it continue.");
        let store = self.store.clone();
        let mut unsaved = std::mem::take(&mut self.unsaved_events).into_iter();
        while let Some((id, row)) = unsaved.next() {
            if let Err(e) = tokio::task::block_in_place(|| store.put_event(&id, row.seq, &row)) {
                self.unsaved_events.push((id, row));
                self.unsaved_events.extend(unsaved);
                self.store_failed(&e);
                return;
            }
        }
        for id in std::mem::take(&mut self.unsaved_jobs) {
            if self.jobs.contains_key(&id) {
                self.persist(&id);
            }
        }
        if self.store_down.is_some() {
            return;
        }
        let waiting: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.record.status == JobStatus::WaitingForStore)
            .map(|(id, _)| id.clone())
            .collect();
        for id in waiting {
            if let Some(entry) = self.jobs.get_mut(&id) {
                entry.record.error = None;
            }
            self.event(
                &id,
                "info",
                "The job store can be written again: the job continues.".into(),
            );
            self.set_status(&id, JobStatus::Queued);
        }
        // Job files that arrived meanwhile could not become jobs.
        self.rescan();
        self.notify_status();
    }
}

pub(crate) fn folder_row(f: &migrated_engine::FolderReport) -> FolderRow {
    FolderRow {
        source: f.source.clone(),
        destination: f.destination.clone(),
        messages: f.messages,
        copied: f.copied,
        already_copied: f.already_copied,
        excluded: f.excluded,
        failed: f.failed,
        error: f.error.clone(),
    }
}

/// The next step for an administrator after a run failed this way.
fn what_to_do(e: &EngineError, job: &str) -> String {
    let text = e.to_string().to_ascii_lowercase();
    let refused_login = matches!(
        e,
        EngineError::Destination(migrated_imap::ImapError::Auth { .. })
    ) || [
        "authenticationfailed",
        "authentication failed",
        "invalid credentials",
        "login failed",
        "http 401",
    ]
    .iter()
    .any(|w| text.contains(w));
    if refused_login {
        let side = if text.starts_with("source") {
            "source"
        } else {
            "destination"
        };
        return format!(
            "the {side} refused the login: check the user and password (or token), then give them again with `migratectl delta {job} --{side}-password-file FILE`."
        );
    }
    match e {
        EngineError::MailboxFull(_) => format!(
            "raise the destination mailbox's quota (or make room in it), then run `migratectl delta {job}`; nothing copied so far is copied again."
        ),
        EngineError::Destination(migrated_imap::ImapError::Tls { .. })
        | EngineError::Destination(migrated_imap::ImapError::NoStartTls { .. }) => format!(
            "the TLS connection was refused: check the host name and port, give the server's CA with ca_file, then `migratectl delta {job}`."
        ),
        EngineError::Store(_) => format!(
            "the job store could not be used (see the error above); once that is fixed, `migratectl resume {job}` continues from the ledger."
        ),
        EngineError::GaveUp { .. } => format!(
            "temporary errors lasted through every pass: check that both servers are up and reachable, then `migratectl delta {job}` resumes where it stopped."
        ),
        _ if e.kind() == migrated_core::ErrorKind::Temporary => format!(
            "the server could not be reached or went away: check host, port and firewall, then `migratectl delta {job}` resumes where it stopped."
        ),
        _ => format!(
            "read the server's words above, correct the job file, and run `migratectl delta {job}`; `migratectl report {job}` shows what was copied."
        ),
    }
}

/// ` ("Subject")` for messages, or nothing.
fn titled(subject: Option<&str>) -> String {
    subject.map(|s| format!(" ({s:?})")).unwrap_or_default()
}
