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

/// Answers one request the same way on every transport: the checks that log in to servers
/// run here (they do not hold up the loop), everything else is the loop's. `Hello` and
/// `Subscribe` are the socket's own framing and are refused here.
pub(crate) async fn answer(tx: &mpsc::UnboundedSender<Msg>, request: Request) -> Response {
    match request {
        Request::Test { spec } => test_endpoints(&spec).await,
        Request::Preflight { template, csv } => preflight_request(tx, *template, csv).await,
        Request::Hello { .. } | Request::Subscribe { .. } => Response::Error {
            kind: ErrorKind::Invalid,
            message: "hello and subscribe belong to the socket; on D-Bus, follow the Progress and JobEvent signals".into(),
        },
        request => call(tx, request).await,
    }
}

/// A pre-flight of a batch (its CSV rows with the template) or of one job, with as many
/// mailboxes at once as the daemon runs jobs at once.
async fn preflight_request(
    tx: &mpsc::UnboundedSender<Msg>,
    template: JobSpec,
    csv: Option<String>,
) -> Response {
    let mailboxes = match csv {
        None => vec![preflight::Mailbox {
            spec: template,
            shared_destination: false,
        }],
        Some(csv) => {
            let name = "preflight";
            match crate::manager::batch_specs(name, &template, &csv) {
                Err(e) => return e.into(),
                Ok((_, problems)) if !problems.is_empty() => {
                    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                    return Response::Error {
                        kind: ErrorKind::Invalid,
                        message: lines.join("\n"),
                    };
                }
                Ok((members, _)) => members
                    .into_iter()
                    .map(|m| {
                        let mut spec = m.spec;
                        // The mailbox as the CSV names it, without the placeholder batch name.
                        spec.name = spec.name[name.len() + 1..].to_owned();
                        preflight::Mailbox {
                            spec,
                            shared_destination: m.shared_destination,
                        }
                    })
                    .collect(),
            }
        }
    };
    let concurrent = match call(
        tx,
        Request::Limits {
            max_jobs: None,
            max_connections_per_host: None,
        },
    )
    .await
    {
        Response::Limits { max_jobs, .. } => max_jobs,
        _ => 4,
    };
    preflight::run(mailboxes, concurrent).await
}

/// Checks both endpoints of a spec: connect, TLS, login, list folders. Touches no job.
pub(crate) async fn test_endpoints(spec: &JobSpec) -> Response {
    use crate::job::EndpointSpecExt;
    let place = format!("job {:?}", spec.name);
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
            },
            Ok(endpoint) => match ImapSession::connect(&endpoint).await {
                Err(err) => CheckRow {
                    side: side.into(),
                    endpoint: endpoint_label,
                    ok: false,
                    message: err.to_string(),
                },
                Ok(mut session) => {
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
                    }
                }
            },
        };
        checks.push(row);
    }
    Response::Tested { checks }
}
