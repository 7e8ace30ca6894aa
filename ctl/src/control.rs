//! The two transports behind one face: the Unix socket (default) and D-Bus (`--bus`).

use std::path::Path;

use futures_util::StreamExt;
use migrated_core::{Action, JobSpec, JobStatus, Secret};
use migrated_ipc::dbus::ManagerProxy;
use migrated_ipc::{
    CheckRow, Client, ClientError, ErrorKind, EventRow, JobDetail, JobSummary, Request, Response,
    Subscription,
};

/// Which bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Bus {
    /// The system bus (the system service).
    System,
    /// The session bus (a user instance).
    Session,
}

/// A connection to the daemon.
pub(crate) enum Control {
    Socket(Client),
    Bus(ManagerProxy<'static>),
}

/// D-Bus errors named `org.migrated.Error.*` carry the same kinds as the socket's.
fn bus_error(e: zbus::Error) -> anyhow::Error {
    if let zbus::Error::MethodError(name, message, _) = &e {
        let kind = match name.as_str().rsplit('.').next() {
            Some("NotFound") => Some(ErrorKind::NotFound),
            Some("Conflict") => Some(ErrorKind::Conflict),
            Some("Invalid") => Some(ErrorKind::Invalid),
            Some("Denied") | Some("AccessDenied") => Some(ErrorKind::Denied),
            Some("Internal") => Some(ErrorKind::Internal),
            _ => None,
        };
        if let Some(kind) = kind {
            return ClientError::Daemon {
                kind,
                message: message.clone().unwrap_or_default(),
            }
            .into();
        }
    }
    anyhow::anyhow!("D-Bus: {e}")
}

fn unexpected(r: Response) -> anyhow::Error {
    anyhow::anyhow!("unexpected reply from the daemon: {r:?}")
}

fn status_of(label: &str) -> anyhow::Result<JobStatus> {
    JobStatus::from_label(label)
        .ok_or_else(|| anyhow::anyhow!("unknown status {label:?} from the daemon"))
}

impl Control {
    pub(crate) async fn connect(socket: &Path, bus: Option<Bus>) -> anyhow::Result<Self> {
        match bus {
            None => Ok(Self::Socket(Client::connect(socket).await?)),
            Some(b) => {
                let conn = match b {
                    Bus::System => zbus::Connection::system().await,
                    Bus::Session => zbus::Connection::session().await,
                }
                .map_err(|e| ClientError::Connect {
                    path: format!("the {b:?} bus"),
                    source: std::io::Error::other(e.to_string()),
                })?;
                let proxy = ManagerProxy::new(&conn).await.map_err(bus_error)?;
                Ok(Self::Bus(proxy))
            }
        }
    }

    async fn call(&mut self, request: Request) -> anyhow::Result<Response> {
        match self {
            Self::Socket(c) => Ok(c.call(&request).await?),
            Self::Bus(_) => unreachable!("socket only"),
        }
    }

    pub(crate) async fn create(&mut self, spec: JobSpec) -> anyhow::Result<String> {
        match self {
            Self::Bus(p) => p
                .create_job(&serde_json::to_string(&spec)?)
                .await
                .map_err(bus_error),
            Self::Socket(_) => match self
                .call(Request::Create {
                    spec: Box::new(spec),
                })
                .await?
            {
                Response::Created { id } => Ok(id),
                r => Err(unexpected(r)),
            },
        }
    }

    pub(crate) async fn test(&mut self, spec: JobSpec) -> anyhow::Result<Vec<CheckRow>> {
        match self {
            Self::Bus(p) => Ok(serde_json::from_str(
                &p.test_job(&serde_json::to_string(&spec)?)
                    .await
                    .map_err(bus_error)?,
            )?),
            Self::Socket(_) => match self
                .call(Request::Test {
                    spec: Box::new(spec),
                })
                .await?
            {
                Response::Tested { checks } => Ok(checks),
                r => Err(unexpected(r)),
            },
        }
    }

    /// Jobs, and drop-in files with errors (the socket reports them; D-Bus does not yet).
    pub(crate) async fn list(&mut self) -> anyhow::Result<(Vec<JobSummary>, Vec<String>)> {
        match self {
            Self::Bus(p) => Ok((
                p.list_jobs()
                    .await
                    .map_err(bus_error)?
                    .into_iter()
                    .map(|(id, name, status, items_done, items_total, failed)| {
                        Ok(JobSummary {
                            id,
                            name,
                            status: Some(status_of(&status)?),
                            items_done,
                            items_total,
                            failed,
                            ..JobSummary::default()
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
                Vec::new(),
            )),
            Self::Socket(_) => match self.call(Request::List).await? {
                Response::Jobs { jobs, problems } => Ok((jobs, problems)),
                r => Err(unexpected(r)),
            },
        }
    }

    pub(crate) async fn status(&mut self, job: &str) -> anyhow::Result<JobDetail> {
        match self {
            Self::Bus(p) => Ok(serde_json::from_str(
                &p.status(job).await.map_err(bus_error)?,
            )?),
            Self::Socket(_) => match self.call(Request::Status { job: job.into() }).await? {
                Response::Job { job } => Ok(*job),
                r => Err(unexpected(r)),
            },
        }
    }

    pub(crate) async fn act(&mut self, job: &str, action: Action) -> anyhow::Result<JobStatus> {
        match self {
            Self::Bus(p) => {
                let label = match action {
                    Action::Pause => p.pause(job).await,
                    Action::Resume => p.resume(job).await,
                    Action::Cancel => p.cancel(job).await,
                    Action::Delete => p.delete(job).await,
                    Action::Reset => p.reset(job).await,
                    Action::Delta => p.delta(job, "", "").await,
                }
                .map_err(bus_error)?;
                status_of(&label)
            }
            Self::Socket(_) => match self
                .call(Request::Act {
                    job: job.into(),
                    action,
                })
                .await?
            {
                Response::Done { status } => Ok(status),
                r => Err(unexpected(r)),
            },
        }
    }

    pub(crate) async fn delta(
        &mut self,
        job: &str,
        source: Option<Secret>,
        destination: Option<Secret>,
        final_run: bool,
    ) -> anyhow::Result<JobStatus> {
        match self {
            Self::Bus(_) if final_run => anyhow::bail!(
                "a final delta is requested on the control socket only for now: leave out --bus"
            ),
            Self::Bus(p) => {
                let s = source.as_ref().map_or("", Secret::expose);
                let d = destination.as_ref().map_or("", Secret::expose);
                status_of(&p.delta(job, s, d).await.map_err(bus_error)?)
            }
            Self::Socket(_) => {
                match self
                    .call(Request::Delta {
                        job: job.into(),
                        source_secret: source,
                        destination_secret: destination,
                        final_run,
                    })
                    .await?
                {
                    Response::Done { status } => Ok(status),
                    r => Err(unexpected(r)),
                }
            }
        }
    }

    /// Batch, priority and limit requests, over either transport.
    pub(crate) async fn batch(&mut self, request: Request) -> anyhow::Result<Response> {
        let p = match self {
            Self::Socket(c) => return Ok(c.call(&request).await?),
            Self::Bus(p) => p,
        };
        let internal = |e: serde_json::Error| anyhow::anyhow!("D-Bus reply: {e}");
        Ok(match request {
            Request::SetTags { job, add, remove } => {
                let add: Vec<&str> = add.iter().map(String::as_str).collect();
                let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
                p.set_tags(&job, &add, &remove).await.map_err(bus_error)?;
                Response::Job {
                    job: Box::new(serde_json::from_str(
                        &p.status(&job).await.map_err(bus_error)?,
                    )?),
                }
            }
            Request::SetPriority { job, priority } => Response::Done {
                status: status_of(&p.set_priority(&job, priority).await.map_err(bus_error)?)?,
            },
            Request::Limits {
                max_jobs,
                max_connections_per_host,
            } => {
                let v = |o: Option<usize>| o.map_or(-1, |n| n as i64);
                let (max_jobs, per_host, running) = p
                    .set_limits(v(max_jobs), v(max_connections_per_host))
                    .await
                    .map_err(bus_error)?;
                Response::Limits {
                    max_jobs: max_jobs as usize,
                    max_connections_per_host: per_host as usize,
                    running: running as usize,
                }
            }
            Request::CreateBatch {
                name,
                template,
                csv,
            } => Response::Created {
                id: p
                    .create_batch(&name, &serde_json::to_string(&template)?, &csv)
                    .await
                    .map_err(bus_error)?,
            },
            Request::Plugins => {
                let v: serde_json::Value =
                    serde_json::from_str(&p.plugins().await.map_err(bus_error)?)
                        .map_err(internal)?;
                Response::Plugins {
                    plugins: serde_json::from_value(v["plugins"].clone()).map_err(internal)?,
                    rejected: serde_json::from_value(v["rejected"].clone()).map_err(internal)?,
                }
            }
            Request::ListBatches => Response::Batches {
                batches: serde_json::from_str(&p.list_batches().await.map_err(bus_error)?)
                    .map_err(internal)?,
            },
            Request::BatchStatus { name } => {
                let v: serde_json::Value =
                    serde_json::from_str(&p.batch_status(&name).await.map_err(bus_error)?)
                        .map_err(internal)?;
                Response::BatchJobs {
                    batch: serde_json::from_value(v["batch"].clone()).map_err(internal)?,
                    jobs: serde_json::from_value(v["jobs"].clone()).map_err(internal)?,
                }
            }
            Request::ActBatch { name, action } => {
                let action = serde_json::to_value(action)?
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                Response::BatchDone {
                    results: serde_json::from_str(
                        &p.batch_action(&name, &action).await.map_err(bus_error)?,
                    )
                    .map_err(internal)?,
                }
            }
            other => anyhow::bail!("{other:?} is not a batch, priority or limits request"),
        })
    }

    pub(crate) async fn events(&mut self, job: &str) -> anyhow::Result<Vec<EventRow>> {
        match self {
            Self::Bus(p) => Ok(p
                .events(job, 0)
                .await
                .map_err(bus_error)?
                .into_iter()
                .map(|(seq, time, level, message)| EventRow {
                    seq,
                    time,
                    level,
                    message,
                })
                .collect()),
            Self::Socket(_) => match self
                .call(Request::Events {
                    job: job.into(),
                    after: 0,
                })
                .await?
            {
                Response::Events { events } => Ok(events),
                r => Err(unexpected(r)),
            },
        }
    }

    /// Updates of one job: the socket's subscription, or the Progress and JobEvent signals.
    pub(crate) async fn follow(self, socket: &Path, id: &str) -> anyhow::Result<Updates> {
        match self {
            Self::Socket(_) => Ok(Updates::Socket(
                Client::connect(socket)
                    .await?
                    .subscribe(Some(id.to_owned()))
                    .await?,
            )),
            Self::Bus(p) => {
                let progress = p.receive_progress().await.map_err(bus_error)?;
                let events = p.receive_job_event().await.map_err(bus_error)?;
                Ok(Updates::Bus(Box::new(BusUpdates {
                    id: id.to_owned(),
                    progress,
                    events,
                    last: None,
                })))
            }
        }
    }
}

/// A stream of `(summary, new events)`.
pub(crate) enum Updates {
    Socket(Subscription),
    Bus(Box<BusUpdates>),
}

/// The signal streams of one job.
pub(crate) struct BusUpdates {
    id: String,
    progress: migrated_ipc::dbus::ProgressStream,
    events: migrated_ipc::dbus::JobEventStream,
    last: Option<JobSummary>,
}

impl Updates {
    pub(crate) async fn next(&mut self) -> anyhow::Result<(JobSummary, Vec<EventRow>)> {
        match self {
            Self::Socket(s) => loop {
                if let Response::Update { job, events } = s.next().await? {
                    return Ok((*job, events));
                }
            },
            Self::Bus(b) => loop {
                let BusUpdates {
                    id,
                    progress,
                    events,
                    last,
                } = b.as_mut();
                tokio::select! {
                    p = progress.next() => {
                        let p = p.ok_or_else(|| anyhow::anyhow!("the bus connection closed"))?;
                        let a = p.args()?;
                        if a.id() != id {
                            continue;
                        }
                        let summary = JobSummary {
                            id: a.id().to_string(),
                            name: a.name().to_string(),
                            status: JobStatus::from_label(a.status()),
                            items_done: *a.items_done(),
                            items_total: *a.items_total(),
                            bytes_done: *a.bytes_done(),
                            bytes_total: *a.bytes_total(),
                            current_folder: Some(a.folder().to_string()).filter(|f| !f.is_empty()),
                            ..JobSummary::default()
                        };
                        *last = Some(summary.clone());
                        return Ok((summary, Vec::new()));
                    }
                    e = events.next() => {
                        let e = e.ok_or_else(|| anyhow::anyhow!("the bus connection closed"))?;
                        let a = e.args()?;
                        if a.id() != id {
                            continue;
                        }
                        let row = EventRow { seq: *a.seq(), time: 0, level: a.level().to_string(), message: a.message().to_string() };
                        let summary = last.clone().unwrap_or_else(|| JobSummary { id: id.clone(), ..JobSummary::default() });
                        return Ok((summary, vec![row]));
                    }
                }
            },
        }
    }
}
