//! The control API's transports. Both hand requests to the daemon loop as [`crate::msg::Msg`]
//! and relay its replies; neither touches job state.

pub(crate) mod dbus;
pub(crate) mod preflight;
pub(crate) mod socket;

use migrated_core::JobSpec;
use migrated_imap::ImapSession;
use migrated_ipc::{CheckRow, ErrorKind, Request, Response};
use tokio::sync::{mpsc, oneshot};

use crate::msg::Msg;

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

/// Answers one request the same way on every transport: the loop answers each (the checks
/// that log in to servers, `Test` and `Preflight`, on tasks of their own, with the named
/// endpoints applied). `Hello` and `Subscribe` are the socket's own framing and are refused.
pub(crate) async fn answer(tx: &mpsc::UnboundedSender<Msg>, request: Request) -> Response {
    match request {
        Request::Hello { .. } | Request::Subscribe { .. } => Response::Error {
            kind: ErrorKind::Invalid,
            message: "hello and subscribe belong to the socket; on D-Bus, follow the Progress and JobEvent signals".into(),
        },
        request => call(tx, request).await,
    }
}

/// Checks both endpoints of a spec: connect, TLS, login, list folders (address books for a
/// contacts job). Touches no job. Each TLS side's row carries the fingerprint of the
/// certificate its server presented, in the form `tls_fingerprint` takes, refused or not.
pub(crate) async fn test_endpoints(spec: &JobSpec) -> Response {
    use crate::job::EndpointSpecExt;
    let place = format!("job {:?}", spec.name);
    if spec.source.plugin.as_deref() == Some("carddav") {
        return preflight::test_dav_endpoints(spec, place).await;
    }
    let mut checks = Vec::new();
    for (side, e) in [("source", &spec.source), ("destination", &spec.destination)] {
        let endpoint_label = format!(
            "{}@{}:{}",
            e.user,
            e.host,
            e.port
                .map_or_else(|| "default".to_owned(), |p| p.to_string())
        );
        let row = match e.endpoint(&place, side) {
            Err(err) => CheckRow {
                side: side.into(),
                endpoint: endpoint_label,
                ok: false,
                message: format!("{err:#}"),
                tls_fingerprint: None,
            },
            Ok(endpoint) => match ImapSession::connect(&endpoint).await {
                Err(err) => CheckRow {
                    side: side.into(),
                    endpoint: endpoint_label,
                    ok: false,
                    message: err.to_string(),
                    tls_fingerprint: match &err {
                        migrated_imap::ImapError::Tls { certificate, .. } => certificate.clone(),
                        _ => None,
                    },
                },
                Ok(mut session) => {
                    let tls_fingerprint = session.certificate().map(str::to_owned);
                    let message = match session.list().await {
                        Ok(folders) => {
                            let (prefix, sep) = session.namespace();
                            let caps: Vec<&str> = [
                                "MULTIAPPEND",
                                "LITERAL+",
                                "UIDPLUS",
                                "CONDSTORE",
                                "SPECIAL-USE",
                                "COMPRESS=DEFLATE",
                            ]
                            .into_iter()
                            .filter(|c| session.has(c))
                            .collect();
                            format!(
                                "logged in; {} folders, namespace {prefix:?} separator {sep:?}; offers {}",
                                folders.len(),
                                caps.join(" ")
                            )
                        }
                        Err(err) => err.to_string(),
                    };
                    session.logout().await;
                    CheckRow {
                        side: side.into(),
                        endpoint: endpoint_label,
                        ok: true,
                        message,
                        tls_fingerprint,
                    }
                }
            },
        };
        checks.push(row);
    }
    Response::Tested { checks }
}
