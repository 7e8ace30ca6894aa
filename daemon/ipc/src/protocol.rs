//! Requests and replies of the control API (version 1).

use migrated_core::{Action, FolderReport, ItemRow, JobSpec, JobStatus, Secret, VerifyRow};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{EndpointRow, PreflightRow};

/// Protocol version. A daemon refuses clients of another version with a message naming both.
pub const PROTOCOL_VERSION: u32 = 1;

/// Jobs at most in one page of [`Request::List`]: a page of summaries stays far under the
/// socket's frame limit ([`crate::framing::MAX_FRAME`]) and D-Bus's message limit.
pub const MAX_PAGE: usize = 5000;

/// A request. Jobs are named by id or by their unique name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// First message on a socket.
    Hello {
        /// The client's [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// Creates a job (secrets inline: the client read them from a prompt, stdin or a file).
    Create {
        /// The job.
        spec: Box<JobSpec>,
    },
    /// Lists the jobs, oldest first: every job (no `limit`), or one page of at most `limit`
    /// jobs after the cursor `after` (the `next` of the previous page; `None`: from the
    /// start). A client without the paging fields gets the whole list, as before they were.
    List {
        /// Where the page starts: the previous page's `next`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Jobs at most in the page (1 to [`MAX_PAGE`]); `None`: every job.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// One job in detail.
    Status {
        /// Id or name.
        job: String,
    },
    /// Pause, resume, cancel or delete.
    Act {
        /// Id or name.
        job: String,
        /// What to do.
        action: Action,
    },
    /// Runs the job again for what is new or changed, with new credentials if they were erased.
    Delta {
        /// Id or name.
        job: String,
        /// New source secret, if any.
        source_secret: Option<Secret>,
        /// New destination secret, if any.
        destination_secret: Option<Secret>,
        /// The final delta (cutover): no recurring delta after it.
        #[serde(default)]
        final_run: bool,
    },
    /// A job's events after a sequence number.
    Events {
        /// Id or name.
        job: String,
        /// Only events with a higher sequence number.
        after: u64,
    },
    /// Checks both endpoints of a job spec (connection, TLS, login, folder list) without
    /// creating anything.
    Test {
        /// The job to check.
        spec: Box<JobSpec>,
    },
    /// Changes a job's priority (lower starts first).
    SetPriority {
        /// Id or name.
        job: String,
        /// New priority.
        priority: u32,
    },
    /// Adds and removes tags of a job; replies with the job's summary.
    SetTags {
        /// Id or name.
        job: String,
        /// Tags to add.
        add: Vec<String>,
        /// Tags to remove.
        remove: Vec<String>,
    },
    /// Reads, and with a value changes, how many jobs run at once.
    Limits {
        /// New global limit.
        max_jobs: Option<usize>,
        /// New per-host connection limit (0: none).
        #[serde(default)]
        max_connections_per_host: Option<usize>,
    },
    /// Creates a batch: one job per CSV row, from a template (endpoints, folders, limits).
    CreateBatch {
        /// Unique batch name.
        name: String,
        /// Endpoints, folders and limits shared by every mailbox; the destination secret, if
        /// any, is the admin/proxy secret used where a row has no DestinationPassword.
        template: Box<JobSpec>,
        /// The CSV text.
        csv: String,
    },
    /// Every batch with its counts.
    ListBatches,
    /// The source plugins loaded and those skipped.
    Plugins,
    /// The mailboxes (jobs) of a batch.
    BatchStatus {
        /// Batch name.
        name: String,
    },
    /// Applies an action to every job of a batch.
    ActBatch {
        /// Batch name.
        name: String,
        /// What to do.
        action: Action,
    },
    /// A delta of every job of a batch; with `final_run`, the final one (the cutover, what
    /// `batch complete` asks): credentials are erased as each completes.
    DeltaBatch {
        /// Batch name.
        name: String,
        /// The final delta.
        #[serde(default)]
        final_run: bool,
    },
    /// Gives a job its credentials again (the sides given); a job waiting for them is queued.
    SetCredentials {
        /// Id or name.
        job: String,
        /// The source's login secret (the administrator's for an `admin_user` side).
        source_secret: Option<Secret>,
        /// The destination's login secret.
        destination_secret: Option<Secret>,
    },
    /// Erases one side's credentials (or both); the job waits for credentials.
    ClearCredentials {
        /// Id or name.
        job: String,
        /// Erase the source's.
        source: bool,
        /// Erase the destination's.
        destination: bool,
    },
    /// Gives every job of a batch its credentials again from a CSV in the batch's format
    /// (rows matched by EmailAddress); jobs waiting for them are queued.
    BatchCredentials {
        /// Batch name.
        name: String,
        /// The source secret for rows without a Password (an administrator's, from the
        /// template the client read), if given.
        source_secret: Option<Secret>,
        /// The destination secret for rows without DestinationPassword (the template's
        /// password file, read by the client), if given.
        destination_secret: Option<Secret>,
        /// The CSV text.
        csv: String,
    },
    /// Pre-flight: logs in to both sides of every mailbox (a batch's CSV rows with its
    /// template, or the template alone as one job) and counts what a copy would do; nothing is
    /// created. Answered with [`Response::Preflight`].
    Preflight {
        /// The batch template, or the job.
        template: Box<JobSpec>,
        /// The batch's CSV text; `None`: the template is one job.
        csv: Option<String>,
    },
    /// A job's settings, without secrets ([`Response::Settings`]).
    Show {
        /// Id or name.
        job: String,
    },
    /// Replaces a job's settings from its next run (checked as a new job is; secrets not
    /// given are kept).
    Edit {
        /// Id or name.
        job: String,
        /// The new settings.
        spec: Box<JobSpec>,
    },
    /// Creates a named endpoint, or with `replace` changes one (applied from each job's next
    /// run). Answered with [`Response::Endpoints`] (that endpoint).
    EndpointCreate {
        /// The endpoint, its secrets inline (read by the client from its files).
        endpoint: Box<migrated_core::NamedEndpoint>,
        /// Replace an endpoint of that name.
        #[serde(default)]
        replace: bool,
    },
    /// Every named endpoint ([`Response::Endpoints`]).
    EndpointList,
    /// One named endpoint ([`Response::Endpoints`]).
    EndpointShow {
        /// Its name.
        name: String,
    },
    /// Deletes a named endpoint no job uses (refused naming the jobs that do).
    EndpointDelete {
        /// Its name.
        name: String,
    },
    /// The alerts kept with the jobs (Good news and Bad news), oldest first; each filter given
    /// narrows the list. Answered with [`Response::Alerts`].
    Alerts {
        /// Only the jobs of this batch.
        #[serde(default)]
        batch: Option<String>,
        /// Only this job (id or name).
        #[serde(default)]
        job: Option<String>,
        /// Only good or only bad news.
        #[serde(default)]
        level: Option<AlertLevel>,
    },
    /// Clears one alert (by its id) or, with no id, every alert. Answered with
    /// [`Response::Cleared`].
    ClearAlerts {
        /// The alert's id; `None`: all of them.
        #[serde(default)]
        id: Option<String>,
    },
    /// The CSV report of one job, a batch's jobs, or every job (both left out), exactly as
    /// `migratectl report --format csv` writes it ([`crate::report::csv`]). Answered with
    /// [`Response::Report`].
    ReportCsv {
        /// Id or name.
        #[serde(default)]
        job: Option<String>,
        /// Batch name.
        #[serde(default)]
        batch: Option<String>,
    },
    /// What the jobs copied over the last hour, one sample per job every ten seconds while it
    /// runs (kept in the daemon's memory: a restart starts afresh). Answered with
    /// [`Response::Throughput`].
    Throughput {
        /// Id or name; `None` for every job.
        #[serde(default)]
        job: Option<String>,
    },
    /// Streams [`Response::Update`] for one job (or all) until the client hangs up.
    Subscribe {
        /// Id or name; `None` for all jobs.
        job: Option<String>,
    },
}

/// What went wrong, for exit codes and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request itself is wrong (unknown field, bad value).
    Invalid,
    /// No such job.
    NotFound,
    /// The job's status does not allow it.
    Conflict,
    /// The caller may not do this.
    Denied,
    /// The daemon failed (store, I/O).
    Internal,
}

/// A reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Hello`].
    Hello {
        /// The daemon's protocol version.
        version: u32,
        /// The daemon's package version.
        daemon: String,
    },
    /// A job was created.
    Created {
        /// Its id.
        id: String,
    },
    /// Every job, or one page of them.
    Jobs {
        /// Summaries, oldest first.
        jobs: Vec<JobSummary>,
        /// Drop-in files with errors, each naming file, line and field.
        #[serde(default)]
        problems: Vec<String>,
        /// A paged list with more jobs after this page: the cursor to ask the next page with
        /// (`after`). `None`: the list is complete.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// One job.
    Job {
        /// Details.
        job: Box<JobDetail>,
    },
    /// An action was applied.
    Done {
        /// The job's status now.
        status: JobStatus,
    },
    /// Events.
    Events {
        /// Oldest first.
        events: Vec<EventRow>,
    },
    /// Outcome of [`Request::Test`].
    Tested {
        /// One row per side.
        checks: Vec<CheckRow>,
    },
    /// The limits now.
    Limits {
        /// Jobs that may run at once.
        max_jobs: usize,
        /// Connections at most to one host (0: none).
        max_connections_per_host: usize,
        /// Jobs running.
        running: usize,
    },
    /// The plugins loaded, and the files in the plugin directory that were skipped.
    Plugins {
        /// Loaded, by name.
        plugins: Vec<PluginRow>,
        /// Skipped, with the reason.
        rejected: Vec<RejectedPlugin>,
    },
    /// Every batch.
    Batches {
        /// Name and counts.
        batches: Vec<BatchSummary>,
    },
    /// A batch's jobs.
    BatchJobs {
        /// The batch.
        batch: BatchSummary,
        /// Its jobs.
        jobs: Vec<JobSummary>,
    },
    /// Outcome of an action on a batch, per job.
    BatchDone {
        /// `(job name, status after, or why it was refused)`.
        results: Vec<(String, Result<JobStatus, String>)>,
    },
    /// Outcome of [`Request::Preflight`]: one row per mailbox, in the CSV's order.
    Preflight {
        /// The mailboxes.
        rows: Vec<PreflightRow>,
    },
    /// A job's settings (no secret in them) and which secrets are set.
    Settings {
        /// The settings as a job file holds them, secrets erased.
        spec: Box<JobSpec>,
        /// `(section.field, set)` of each secret, e.g. `("source.password", true)`.
        secrets: Vec<(String, bool)>,
    },
    /// Named endpoints, secrets erased, each with the jobs that use it.
    Endpoints {
        /// By name.
        endpoints: Vec<EndpointRow>,
    },
    /// A job changed (subscriptions).
    Update {
        /// Its summary now.
        job: Box<JobSummary>,
        /// Events since the last update.
        events: Vec<EventRow>,
        /// Alerts raised since the last update.
        #[serde(default)]
        alerts: Vec<AlertRow>,
    },
    /// Alerts, oldest first ([`Request::Alerts`]).
    Alerts {
        /// The alerts.
        alerts: Vec<AlertRow>,
    },
    /// A CSV report ([`Request::ReportCsv`]).
    Report {
        /// The CSV text.
        csv: String,
    },
    /// The throughput history of jobs ([`Request::Throughput`]).
    Throughput {
        /// Per job, oldest job first.
        jobs: Vec<JobThroughput>,
    },
    /// How many alerts [`Request::ClearAlerts`] cleared.
    Cleared {
        /// Alerts cleared.
        count: u64,
    },
    /// The request failed.
    Error {
        /// What kind of failure.
        kind: ErrorKind,
        /// What went wrong and what to do.
        message: String,
    },
}

/// Why a request was refused: the kind (for exit codes) and the words for the administrator,
/// naming what to do. The daemon's handlers return it; on the wire it is [`Response::Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What went wrong and what to do.
    pub message: String,
}

impl ControlError {
    /// A refusal of this kind, in these words.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ControlError {}

impl From<ControlError> for Response {
    fn from(e: ControlError) -> Self {
        Self::Error {
            kind: e.kind,
            message: e.message,
        }
    }
}

/// A job at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Generated id.
    pub id: String,
    /// The administrator's name for it.
    pub name: String,
    /// Status.
    pub status: Option<JobStatus>,
    /// Priority (lower starts first).
    #[serde(default)]
    pub priority: u32,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `user@host:port` of the source.
    pub source: String,
    /// `user@host:port` of the destination.
    pub destination: String,
    /// Messages to copy in the current or last run.
    pub items_total: u64,
    /// Messages copied in the current or last run.
    pub items_done: u64,
    /// Bytes to copy.
    pub bytes_total: u64,
    /// Bytes copied.
    pub bytes_done: u64,
    /// Folder being copied.
    pub current_folder: Option<String>,
    /// Unix time of creation.
    pub created: u64,
    /// Unix time of the last status change.
    pub updated: u64,
    /// The last error, in the server's words, with what to do.
    pub error: Option<String>,
    /// Excluded messages in the last run.
    pub excluded: u64,
    /// Failed messages in the last run.
    pub failed: u64,
    /// The source connection: Connecting, Authenticating, Authenticated or Failed with the
    /// server's words.
    #[serde(default)]
    pub source_connection: Option<String>,
    /// The destination connection, likewise.
    #[serde(default)]
    pub destination_connection: Option<String>,
    /// Throttled by a server until this unix time.
    #[serde(default)]
    pub throttled_until: Option<u64>,
    /// The store holds the job's credentials (erased at completion unless deltas recur).
    #[serde(default)]
    pub credentials: bool,
}

/// A batch at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// Name.
    pub name: String,
    /// Mailboxes.
    pub jobs: u64,
    /// Jobs per status label.
    pub statuses: Vec<(String, u64)>,
    /// Messages copied (last runs).
    pub items_done: u64,
    /// Messages to copy (last runs).
    pub items_total: u64,
    /// Messages refused.
    pub failed: u64,
}

/// One side of an endpoint check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRow {
    /// `source` or `destination`.
    pub side: String,
    /// `user@host:port`.
    pub endpoint: String,
    /// Whether connection and login worked.
    pub ok: bool,
    /// What was found (folders, capabilities) or what failed, in the server's words.
    pub message: String,
    /// The SHA-256 fingerprint of the certificate the server presented over TLS, exactly as
    /// the endpoint's `tls_fingerprint` takes it (`sha256:AB:CD:…`), for the administrator to
    /// confirm with the server's administrator and pin. Also given when the certificate was
    /// refused; `None` without TLS or when the handshake did not get that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
}

/// A job's event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    /// Sequence number within the job.
    pub seq: u64,
    /// Unix time.
    pub time: u64,
    /// `info`, `warning` or `error`.
    pub level: String,
    /// What happened.
    pub message: String,
}

/// Good news (a mailbox or batch finished) or bad news (something needs a person).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    /// Good news.
    #[default]
    Good,
    /// Bad news.
    Bad,
}

impl AlertLevel {
    /// `good` or `bad`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Bad => "bad",
        }
    }
}

/// An alert: Good news or Bad news about a job, kept with the job (and swept with it) until
/// cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRow {
    /// `JOBID:N`, unique in the daemon.
    pub id: String,
    /// Unix time.
    pub time: u64,
    /// The job's id.
    pub job: String,
    /// The job's name.
    pub job_name: String,
    /// The job's batch, if any.
    #[serde(default)]
    pub batch: Option<String>,
    /// Good or bad news.
    pub level: AlertLevel,
    /// What happened, as a key (`mailbox_finished`, `batch_finished`, `login_refused`,
    /// `mailbox_full`, `messages_refused`, `folder_failed`, `job_failed`, `throttled`).
    pub kind: String,
    /// What happened, in words.
    pub message: String,
    /// What to do (empty for good news).
    #[serde(default)]
    pub what_to_do: String,
}

/// A job in detail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    /// The summary.
    pub summary: JobSummary,
    /// Per folder, from the current or last run.
    pub folders: Vec<FolderReport>,
    /// Excluded messages of the last run.
    pub excluded: Vec<ItemRow>,
    /// Failed messages of the last run.
    pub failed: Vec<ItemRow>,
    /// Duration of the last run, seconds.
    pub duration_secs: f64,
    /// The latest events.
    pub events: Vec<EventRow>,
    /// Both sides compared folder by folder after the last run that changed something.
    #[serde(default)]
    pub verification: Vec<VerifyRow>,
    /// When that verification ran (unix time).
    #[serde(default)]
    pub verified_at: Option<u64>,
    /// Where the last mail run's time went, phase by phase.
    #[serde(default)]
    pub timings: Vec<migrated_core::PhaseTime>,
    /// Messages the last run removed (`sync_deletions` on the destination, `source_after_copy`
    /// on the source): the first [`Self::removed_listed_per_folder`] of each folder and side;
    /// the folder rows (`removed`, `source_removed`) count them all.
    #[serde(default)]
    pub removed: Vec<migrated_core::RemovedRow>,
    /// How many removed messages are listed at most per folder and side.
    #[serde(default)]
    pub removed_listed_per_folder: u64,
}

/// What one job copied over the last hour ([`Request::Throughput`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobThroughput {
    /// The job's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Oldest first.
    pub samples: Vec<ThroughputSample>,
}

/// What a job copied in one interval of a run (ten seconds, the last one of a run shorter).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThroughputSample {
    /// When the interval ended (unix time, seconds).
    pub time: f64,
    /// Its length in seconds.
    pub secs: f64,
    /// Messages (or contacts) copied in it.
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A loaded source plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRow {
    /// The name jobs give as `source.plugin`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The plugin ABI it was built for (`major.minor`).
    pub abi: String,
    /// `mail`, `contacts`.
    pub kinds: Vec<String>,
    /// One line about it.
    pub description: String,
    /// The file it was loaded from.
    pub path: String,
    /// The job settings it accepts under `[source.settings]`.
    pub settings: Vec<PluginSetting>,
}

/// A setting a plugin accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSetting {
    /// Its name.
    pub name: String,
    /// What it takes (`true|false`, `text`, `a|b|c`).
    pub kind: String,
    /// Its default.
    pub default: String,
    /// What it does.
    pub help: String,
}

/// A file of the plugin directory that was not loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedPlugin {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_request_without_paging_fields_reads_and_writes_as_before() {
        let old: Request = serde_json::from_str(r#"{"request":"list"}"#).unwrap();
        assert!(matches!(
            old,
            Request::List {
                after: None,
                limit: None
            }
        ));
        let whole = Request::List {
            after: None,
            limit: None,
        };
        assert_eq!(
            serde_json::to_string(&whole).unwrap(),
            r#"{"request":"list"}"#
        );
        let paged: Request =
            serde_json::from_str(r#"{"request":"list","after":"c","limit":10}"#).unwrap();
        assert!(matches!(
            paged,
            Request::List { after: Some(a), limit: Some(10) } if a == "c"
        ));
        // A reply without `next` (an older daemon's) is a complete list.
        let reply: Response = serde_json::from_str(r#"{"reply":"jobs","jobs":[]}"#).unwrap();
        assert!(matches!(reply, Response::Jobs { next: None, .. }));
    }
}
