//! The two transports behind one face: the Unix socket (default) and D-Bus (`--bus`).

use std::path::Path;

use futures_util::StreamExt;
use migrated_core::{Action, JobSpec, JobStatus, Secret};
use migrated_ipc::dbus::ManagerProxy;
use migrated_ipc::{
    CheckRow, Client, ClientError, ErrorKind, EventRow, JobDetail, JobSummary, Request, Response,
    Subscription,
};

/// Jobs asked for at once by [`Control::list`].
const LIST_PAGE: usize = 1000;

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

    /// Sends one request and returns the daemon's answer: over the socket as a frame, over
    /// D-Bus through the `Call` member, which the daemon answers with the same handler, so
    /// every command works the same on both.
    pub(crate) async fn call(&mut self, request: Request) -> anyhow::Result<Response> {
        match self {
            Self::Socket(c) => Ok(c.call(&request).await?),
            Self::Bus(p) => {
                let reply = p
                    .call(&serde_json::to_string(&request)?)
                    .await
                    .map_err(bus_error)?;
                match serde_json::from_str(&reply)
                    .map_err(|e| anyhow::anyhow!("D-Bus reply: {e}"))?
                {
                    Response::Error { kind, message } => {
                        Err(ClientError::Daemon { kind, message }.into())
                    }
                    r => Ok(r),
                }
            }
        }
    }

    pub(crate) async fn create(&mut self, spec: JobSpec) -> anyhow::Result<String> {
        match self
            .call(Request::Create {
                spec: Box::new(spec),
            })
            .await?
        {
            Response::Created { id } => Ok(id),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) async fn test(&mut self, spec: JobSpec) -> anyhow::Result<Vec<CheckRow>> {
        match self
            .call(Request::Test {
                spec: Box::new(spec),
            })
            .await?
        {
            Response::Tested { checks } => Ok(checks),
            r => Err(unexpected(r)),
        }
    }

    /// Jobs, and drop-in files with errors, asked for page by page (a daemon of 50,000 jobs
    /// never builds one reply of them all; an older daemon answers the first page with every
    /// job and no cursor).
    pub(crate) async fn list(&mut self) -> anyhow::Result<(Vec<JobSummary>, Vec<String>)> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = Request::List {
                after: after.take(),
                limit: Some(LIST_PAGE),
            };
            match self.call(page).await? {
                Response::Jobs {
                    jobs,
                    problems,
                    next,
                } => {
                    all.extend(jobs);
                    match next {
                        Some(cursor) => after = Some(cursor),
                        None => return Ok((all, problems)),
                    }
                }
                r => return Err(unexpected(r)),
            }
        }
    }

    pub(crate) async fn status(&mut self, job: &str) -> anyhow::Result<JobDetail> {
        match self.call(Request::Status { job: job.into() }).await? {
            Response::Job { job } => Ok(*job),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) async fn act(&mut self, job: &str, action: Action) -> anyhow::Result<JobStatus> {
        match self
            .call(Request::Act {
                job: job.into(),
                action,
            })
            .await?
        {
            Response::Done { status } => Ok(status),
            r => Err(unexpected(r)),
        }
    }

    pub(crate) async fn delta(
        &mut self,
        job: &str,
        source: Option<Secret>,
        destination: Option<Secret>,
        final_run: bool,
    ) -> anyhow::Result<JobStatus> {
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

    /// Batch, priority and limit requests (any request), over either transport.
    pub(crate) async fn batch(&mut self, request: Request) -> anyhow::Result<Response> {
        self.call(request).await
    }

    pub(crate) async fn events(&mut self, job: &str) -> anyhow::Result<Vec<EventRow>> {
        match self
            .call(Request::Events {
                job: job.into(),
                after: 0,
            })
            .await?
        {
            Response::Events { events } => Ok(events),
            r => Err(unexpected(r)),
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
                if let Response::Update { job, events, .. } = s.next().await? {
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
