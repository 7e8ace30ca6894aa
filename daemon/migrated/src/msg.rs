//! What the manager's loop hears: every control request, engine event, signal, timer and
//! drop-in change becomes one [`Msg`] on one channel; what it publishes to subscribers is an
//! [`Update`]. Here, on its own, so the transports, the drop-in watcher and the loop all depend
//! on this module and none on another.

use migrated_engine::{EngineError, Event, Summary};
use migrated_ipc::{AlertRow, EventRow, JobSummary, Request, Response};
use tokio::sync::oneshot;

/// Everything the loop reacts to.
#[derive(Debug)]
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
    /// Retention sweep, schedule windows, recurring deltas and the status line.
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
    /// Alerts raised since the last update.
    pub alerts: Vec<AlertRow>,
}
