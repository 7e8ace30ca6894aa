//! The control API's transports. Both hand requests to the daemon loop as [`crate::daemon::Msg`]
//! and relay its replies; neither touches job state.

pub(crate) mod dbus;
pub(crate) mod socket;

use migrated_ipc::{ErrorKind, Request, Response};
use tokio::sync::{mpsc, oneshot};

use crate::daemon::Msg;

/// Sends a request to the daemon loop and waits for its reply.
pub(crate) async fn call(tx: &mpsc::UnboundedSender<Msg>, request: Request) -> Response {
    let (reply, rx) = oneshot::channel();
    let down = || Response::Error {
        kind: ErrorKind::Internal,
        message: "the daemon is shutting down".into(),
    };
    if tx.send(Msg::Request { request, reply }).is_err() {
        return down();
    }
    rx.await.unwrap_or_else(|_| down())
}
