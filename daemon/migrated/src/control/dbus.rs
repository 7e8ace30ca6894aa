//! The D-Bus transport: `org.migrated.Manager1` (documented in `migrated_ipc::dbus`), a thin
//! adapter that turns calls into requests for the daemon loop and updates into signals.

// The Progress signal has one argument per figure, as D-Bus clients expect; the code the
// interface macro generates for it trips this lint.
#![allow(clippy::too_many_arguments)]

use migrated_core::{Action, JobSpec, Secret};
use migrated_ipc::dbus::{BUS_NAME, OBJECT_PATH};
use migrated_ipc::{ErrorKind, Request, Response};
use tokio::sync::{broadcast, mpsc};
use zbus::object_server::SignalEmitter;

use super::call;
use crate::msg::{Msg, Update};

/// Errors as D-Bus names them.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.migrated.Error")]
pub(crate) enum ControlError {
    /// A transport failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// Bad request.
    Invalid(String),
    /// No such job.
    NotFound(String),
    /// The job's status does not allow it.
    Conflict(String),
    /// Not allowed.
    Denied(String),
    /// The daemon failed.
    Internal(String),
}

fn failed(kind: ErrorKind, message: String) -> ControlError {
    match kind {
        ErrorKind::Invalid => ControlError::Invalid(message),
        ErrorKind::NotFound => ControlError::NotFound(message),
        ErrorKind::Conflict => ControlError::Conflict(message),
        ErrorKind::Denied => ControlError::Denied(message),
        ErrorKind::Internal => ControlError::Internal(message),
    }
}

/// The exported object.
pub(crate) struct Manager {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Manager {
    async fn request(&self, request: Request) -> Result<Response, ControlError> {
        match call(&self.tx, request).await {
            Response::Error { kind, message } => Err(failed(kind, message)),
            r => Ok(r),
        }
    }

    async fn act(&self, job: String, action: Action) -> Result<String, ControlError> {
        match self.request(Request::Act { job, action }).await? {
            Response::Done { status } => Ok(status.to_string()),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    async fn delta_run(
        &self,
        job: String,
        source_secret: String,
        destination_secret: String,
        final_run: bool,
    ) -> Result<String, ControlError> {
        let secret = |s: String| (!s.is_empty()).then(|| Secret::new(s));
        let request = Request::Delta {
            final_run,
            job,
            source_secret: secret(source_secret),
            destination_secret: secret(destination_secret),
        };
        match self.request(request).await? {
            Response::Done { status } => Ok(status.to_string()),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    async fn clear(&self, id: Option<String>) -> Result<u64, ControlError> {
        match self.request(Request::ClearAlerts { id }).await? {
            Response::Cleared { count } => Ok(count),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    async fn jobs(&self) -> Result<Vec<migrated_ipc::JobSummary>, ControlError> {
        let whole = Request::List {
            after: None,
            limit: None,
        };
        match self.request(whole).await? {
            Response::Jobs { jobs, .. } => Ok(jobs),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }
}

#[zbus::interface(name = "org.migrated.Manager1")]
impl Manager {
    /// Any control request as JSON (a [`Request`]), answered as the socket answers it: the
    /// [`Response`] as JSON, errors included. `migratectl --bus` sends every command this way.
    async fn call(&self, request: &str) -> Result<String, ControlError> {
        let request: Request = serde_json::from_str(request)
            .map_err(|e| ControlError::Invalid(format!("request: {e}")))?;
        serde_json::to_string(&super::answer(&self.tx, request).await)
            .map_err(|e| ControlError::Internal(e.to_string()))
    }

    /// The final delta (the cutover): as `Delta`, and the credentials are erased when it
    /// completes; no recurring delta after it.
    async fn final_delta(
        &self,
        job: String,
        source_secret: String,
        destination_secret: String,
    ) -> Result<String, ControlError> {
        self.delta_run(job, source_secret, destination_secret, true)
            .await
    }

    /// Creates a job from its JSON spec; returns its id.
    async fn create_job(&self, spec: &str) -> Result<String, ControlError> {
        let spec: JobSpec = serde_json::from_str(spec)
            .map_err(|e| ControlError::Invalid(format!("job spec: {e}")))?;
        match self
            .request(Request::Create {
                spec: Box::new(spec),
            })
            .await?
        {
            Response::Created { id } => Ok(id),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Checks both endpoints of a JSON spec without creating anything; the checks as JSON.
    async fn test_job(&self, spec: &str) -> Result<String, ControlError> {
        let spec: JobSpec = serde_json::from_str(spec)
            .map_err(|e| ControlError::Invalid(format!("job spec: {e}")))?;
        match self
            .request(Request::Test {
                spec: Box::new(spec),
            })
            .await?
        {
            Response::Tested { checks } => {
                serde_json::to_string(&checks).map_err(|e| ControlError::Internal(e.to_string()))
            }
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// `(id, name, status, done, total, failed)` of every job.
    async fn list_jobs(
        &self,
    ) -> Result<Vec<(String, String, String, u64, u64, u64)>, ControlError> {
        Ok(self
            .jobs()
            .await?
            .into_iter()
            .map(|j| {
                let status = j.status.map(|s| s.to_string()).unwrap_or_default();
                (j.id, j.name, status, j.items_done, j.items_total, j.failed)
            })
            .collect())
    }

    /// One page of the jobs, oldest first: at most `limit` (1 to 5,000) after the cursor
    /// `after` (empty: from the start). Returns the page's summaries as JSON and the cursor of
    /// the next page (empty: the list is complete).
    async fn list_page(&self, after: String, limit: u32) -> Result<(String, String), ControlError> {
        let request = Request::List {
            after: (!after.is_empty()).then_some(after),
            limit: Some(limit as usize),
        };
        match self.request(request).await? {
            Response::Jobs { jobs, next, .. } => Ok((
                serde_json::to_string(&jobs).map_err(|e| ControlError::Internal(e.to_string()))?,
                next.unwrap_or_default(),
            )),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// The job in detail, as JSON.
    async fn status(&self, job: String) -> Result<String, ControlError> {
        match self.request(Request::Status { job }).await? {
            Response::Job { job } => {
                serde_json::to_string(&job).map_err(|e| ControlError::Internal(e.to_string()))
            }
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Pauses a job after the batches in flight.
    async fn pause(&self, job: String) -> Result<String, ControlError> {
        self.act(job, Action::Pause).await
    }

    /// Resumes a stopped or failed job.
    async fn resume(&self, job: String) -> Result<String, ControlError> {
        self.act(job, Action::Resume).await
    }

    /// Cancels a job.
    async fn cancel(&self, job: String) -> Result<String, ControlError> {
        self.act(job, Action::Cancel).await
    }

    /// Deletes a job and all its data.
    async fn delete(&self, job: String) -> Result<String, ControlError> {
        self.act(job, Action::Delete).await
    }

    /// Forgets what a job copied; it stays stopped until resumed.
    async fn reset(&self, job: String) -> Result<String, ControlError> {
        self.act(job, Action::Reset).await
    }

    /// Runs a job again; empty secrets keep the stored ones.
    async fn delta(
        &self,
        job: String,
        source_secret: String,
        destination_secret: String,
    ) -> Result<String, ControlError> {
        self.delta_run(job, source_secret, destination_secret, false)
            .await
    }

    /// Changes a job's priority; returns its status.
    async fn set_priority(&self, job: String, priority: u32) -> Result<String, ControlError> {
        match self.request(Request::SetPriority { job, priority }).await? {
            Response::Done { status } => Ok(status.to_string()),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Adds and removes a job's tags; returns them.
    async fn set_tags(
        &self,
        job: String,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<Vec<String>, ControlError> {
        match self.request(Request::SetTags { job, add, remove }).await? {
            Response::Job { job } => Ok(job.summary.tags),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Reads and changes the limits (-1 keeps a value): `(max jobs, per host, running)`.
    async fn set_limits(
        &self,
        max_jobs: i64,
        max_connections_per_host: i64,
    ) -> Result<(u32, u32, u32), ControlError> {
        let keep = |v: i64| usize::try_from(v).ok();
        match self
            .request(Request::Limits {
                max_jobs: keep(max_jobs),
                max_connections_per_host: keep(max_connections_per_host),
            })
            .await?
        {
            Response::Limits {
                max_jobs,
                max_connections_per_host,
                running,
            } => Ok((
                max_jobs as u32,
                max_connections_per_host as u32,
                running as u32,
            )),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Creates a batch from a JSON template and the CSV text; returns its name.
    async fn create_batch(
        &self,
        name: String,
        template: &str,
        csv: String,
    ) -> Result<String, ControlError> {
        let template: JobSpec = serde_json::from_str(template)
            .map_err(|e| ControlError::Invalid(format!("template: {e}")))?;
        match self
            .request(Request::CreateBatch {
                name,
                template: Box::new(template),
                csv,
            })
            .await?
        {
            Response::Created { id } => Ok(id),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Every batch, as JSON.
    async fn list_batches(&self) -> Result<String, ControlError> {
        match self.request(Request::ListBatches).await? {
            Response::Batches { batches } => {
                serde_json::to_string(&batches).map_err(|e| ControlError::Internal(e.to_string()))
            }
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// A batch and its jobs, as JSON.
    async fn batch_status(&self, name: String) -> Result<String, ControlError> {
        match self.request(Request::BatchStatus { name }).await? {
            Response::BatchJobs { batch, jobs } => {
                serde_json::to_string(&serde_json::json!({ "batch": batch, "jobs": jobs }))
                    .map_err(|e| ControlError::Internal(e.to_string()))
            }
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// The plugins loaded and the files skipped, as JSON.
    async fn plugins(&self) -> Result<String, ControlError> {
        match self.request(Request::Plugins).await? {
            Response::Plugins { plugins, rejected } => serde_json::to_string(
                &serde_json::json!({ "plugins": plugins, "rejected": rejected }),
            )
            .map_err(|e| ControlError::Internal(e.to_string())),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Applies `Pause`, `Resume`, `Cancel`, `Delete`, `Delta` or `Reset` to every job of a batch.
    async fn batch_action(&self, name: String, action: String) -> Result<String, ControlError> {
        let action: Action = serde_json::from_value(serde_json::Value::String(action.clone()))
            .map_err(|_| {
                ControlError::Invalid(format!(
                    "{action:?} is not one of Pause, Resume, Cancel, Delete, Delta, Reset"
                ))
            })?;
        match self.request(Request::ActBatch { name, action }).await? {
            Response::BatchDone { results } => {
                serde_json::to_string(&results).map_err(|e| ControlError::Internal(e.to_string()))
            }
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// The alerts as JSON ([`migrated_ipc::AlertRow`]s, oldest first); empty strings do not
    /// filter: a batch, a job (id or name), a level (`good` or `bad`).
    async fn alerts(
        &self,
        batch: String,
        job: String,
        level: String,
    ) -> Result<String, ControlError> {
        let request = migrated_ipc::dbus::alerts_request(batch, job, &level)
            .map_err(ControlError::Invalid)?;
        match self.request(request).await? {
            Response::Alerts { alerts } => {
                serde_json::to_string(&alerts).map_err(|e| ControlError::Internal(e.to_string()))
            }
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Clears one alert by its id; returns how many were cleared (1).
    async fn clear_alert(&self, id: String) -> Result<u64, ControlError> {
        self.clear(Some(id)).await
    }

    /// Clears every alert; returns how many were cleared.
    async fn clear_alerts(&self) -> Result<u64, ControlError> {
        self.clear(None).await
    }

    /// `(seq, time, level, message)` of the job's events after `after`.
    async fn events(
        &self,
        job: String,
        after: u64,
    ) -> Result<Vec<(u64, u64, String, String)>, ControlError> {
        match self.request(Request::Events { job, after }).await? {
            Response::Events { events } => Ok(events
                .into_iter()
                .map(|e| (e.seq, e.time, e.level, e.message))
                .collect()),
            other => Err(ControlError::Internal(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Jobs in the store (read when asked: no change signal).
    #[zbus(property(emits_changed_signal = "false"))]
    async fn job_count(&self) -> u32 {
        self.jobs().await.map(|j| j.len() as u32).unwrap_or(0)
    }

    /// Jobs running (read when asked: no change signal).
    #[zbus(property(emits_changed_signal = "false"))]
    async fn running_count(&self) -> u32 {
        self.jobs()
            .await
            .map(|j| {
                j.iter()
                    .filter(|j| j.status.is_some_and(|s| s.is_running()))
                    .count() as u32
            })
            .unwrap_or(0)
    }

    /// The daemon's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    /// Progress of a job.
    #[allow(clippy::too_many_arguments)]
    #[zbus(signal)]
    async fn progress(
        emitter: &SignalEmitter<'_>,
        id: &str,
        status: &str,
        items_done: u64,
        items_total: u64,
        bytes_done: u64,
        bytes_total: u64,
        folder: &str,
        name: &str,
    ) -> zbus::Result<()>;

    /// An alert raised (Good news or Bad news).
    #[zbus(signal)]
    async fn alert(
        emitter: &SignalEmitter<'_>,
        id: &str,
        job: &str,
        level: &str,
        kind: &str,
        message: &str,
        what_to_do: &str,
    ) -> zbus::Result<()>;

    /// An event of a job.
    #[zbus(signal)]
    async fn job_event(
        emitter: &SignalEmitter<'_>,
        id: &str,
        level: &str,
        seq: u64,
        message: &str,
    ) -> zbus::Result<()>;
}

/// Which bus to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Bus {
    /// The system bus (system service).
    System,
    /// The session bus (user instance, tests).
    Session,
    /// No D-Bus: the socket only.
    None,
}

/// Connects to the bus, owns the name, exports the object and turns updates into signals.
///
/// # Errors
///
/// When the bus cannot be reached or the name is not ours to own (the policy file).
pub(crate) async fn serve(
    bus: Bus,
    tx: mpsc::UnboundedSender<Msg>,
    updates: broadcast::Sender<Update>,
) -> anyhow::Result<Option<zbus::Connection>> {
    let builder = match bus {
        Bus::None => return Ok(None),
        Bus::System => zbus::connection::Builder::system(),
        Bus::Session => zbus::connection::Builder::session(),
    };
    let mut rx = updates.subscribe();
    let conn = builder
        .name(BUS_NAME)
        .serve_at(OBJECT_PATH, Manager { tx })
        .build()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "D-Bus ({bus:?} bus): cannot own {BUS_NAME}: {e} (is the policy file installed?)"
            )
        })?;
    let emitter = SignalEmitter::new(&conn, OBJECT_PATH)?.into_owned();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(u) => {
                    let j = &u.job;
                    let status = j.status.map(|s| s.to_string()).unwrap_or_default();
                    let folder = j.current_folder.clone().unwrap_or_default();
                    let _ = Manager::progress(
                        &emitter,
                        &j.id,
                        &status,
                        j.items_done,
                        j.items_total,
                        j.bytes_done,
                        j.bytes_total,
                        &folder,
                        &j.name,
                    )
                    .await;
                    for e in &u.events {
                        let _ =
                            Manager::job_event(&emitter, &j.id, &e.level, e.seq, &e.message).await;
                    }
                    for a in &u.alerts {
                        let _ = Manager::alert(
                            &emitter,
                            &a.id,
                            &a.job,
                            a.level.as_str(),
                            &a.kind,
                            &a.message,
                            &a.what_to_do,
                        )
                        .await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(Some(conn))
}
