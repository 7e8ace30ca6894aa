//! Pre-flight of a CardDAV mailbox: both logins through the daemon's CardDAV client (service
//! discovery, as a run starts), then the source's address books, contacts and their bytes.
//! Read-only: PROPFIND and `addressbook-multiget`, nothing written on either side.

use migrated_carddav::{Client, DavError};
use migrated_core::JobSpec;
use migrated_ipc::{CheckRow, ErrorKind, PreflightRow, Response};

use super::Mailbox;
use crate::job::{Credentials, dav_endpoints};

/// Contacts per `addressbook-multiget` when measuring the source's bytes.
const MULTIGET: usize = 100;

/// Checks one contacts mailbox; its blocking HTTP runs on a blocking thread.
pub(super) async fn check(m: &Mailbox, mut row: PreflightRow, place: String) -> PreflightRow {
    let (source, destination) = match dav_endpoints(&m.spec, &place, Credentials::Needed) {
        Ok(sides) => sides,
        Err(e) => {
            row.problems.push(format!("{e:#}"));
            return row;
        }
    };
    let shared = m.shared_destination || m.spec.destination.is_admin_login();
    let (source_user, destination_user) =
        (m.spec.source.user.clone(), m.spec.destination.user.clone());
    let fallback = row.clone();
    tokio::task::spawn_blocking(move || {
        match Client::new(destination).and_then(|c| c.discover()) {
            Ok(_) => row.destination_ok = true,
            Err(e) => row
                .problems
                .push(destination_words(&e, &destination_user, shared)),
        }
        let counted = Client::new(source).and_then(|c| {
            let home = c.discover()?;
            row.source_ok = true;
            count(&c, &home, &mut row)
        });
        if let Err(e) = counted {
            row.problems.push(if row.source_ok {
                format!("listing the source address books failed: {e}")
            } else {
                source_words(&e, &source_user)
            });
        }
        row
    })
    .await
    .unwrap_or_else(|e| {
        let mut row = fallback;
        row.problems
            .push(format!("the CardDAV pre-flight check failed: {e}"));
        row
    })
}

/// `migratectl test` of a contacts job: each side's service discovery (the login) and its
/// address books, as the connection checks of a mail job list folders.
pub(crate) async fn test_endpoints(spec: &JobSpec, place: String) -> Response {
    let label = |e: &migrated_core::EndpointSpec| {
        format!(
            "{}@{}:{}",
            e.user,
            e.host,
            e.port
                .map_or_else(|| "default".to_owned(), |p| p.to_string())
        )
    };
    let labels = [label(&spec.source), label(&spec.destination)];
    let sides = match dav_endpoints(spec, &place, Credentials::Needed) {
        Ok((s, d)) => [s, d],
        Err(e) => {
            return Response::Tested {
                checks: vec![CheckRow {
                    side: "job".into(),
                    endpoint: labels.join(" -> "),
                    ok: false,
                    message: format!("{e:#}"),
                    tls_fingerprint: None,
                }],
            };
        }
    };
    let checks = tokio::task::spawn_blocking(move || {
        sides
            .into_iter()
            .zip(labels)
            .zip(["source", "destination"])
            .map(|((endpoint, label), side)| {
                let (found, tls_fingerprint) = match Client::new(endpoint) {
                    Err(e) => (Err(e), None),
                    Ok(c) => {
                        let found = c.discover().and_then(|home| {
                            let books = c.books(&home)?.len();
                            Ok((home, books))
                        });
                        // Refused or not, the certificate the server showed.
                        (found, c.certificate())
                    }
                };
                let (ok, message) = match found {
                    Ok((home, books)) => (
                        true,
                        format!(
                            "logged in (CardDAV); address-book home {home}, {books} address books"
                        ),
                    ),
                    Err(e) => (false, e.to_string()),
                };
                CheckRow {
                    side: side.into(),
                    endpoint: label,
                    ok,
                    message,
                    tls_fingerprint,
                }
            })
            .collect::<Vec<_>>()
    })
    .await;
    match checks {
        Ok(checks) => Response::Tested { checks },
        Err(e) => Response::Error {
            kind: ErrorKind::Internal,
            message: format!("the CardDAV check failed: {e}"),
        },
    }
}

/// Address books as folders, contacts as messages, vCard bytes as bytes.
fn count(c: &Client, home: &str, row: &mut PreflightRow) -> Result<(), DavError> {
    for book in c.books(home)? {
        row.folders += 1;
        let hrefs: Vec<String> = c.items(&book.href)?.into_iter().map(|i| i.href).collect();
        for chunk in hrefs.chunks(MULTIGET) {
            for card in c.multiget(&book.href, chunk)? {
                let size = card.data.len() as u64;
                row.messages += 1;
                row.bytes += size;
                row.largest = row.largest.max(size);
            }
        }
    }
    Ok(())
}

/// No answer, said as Exchange says it; `None` when the server answered.
fn network_words(e: &DavError) -> Option<String> {
    match e {
        DavError::Network {
            server,
            what,
            detail,
        } => Some(format!(
            "The connection to the server {server} could not be completed: {what}: {detail}. Check the URL, the port and that a firewall lets us through."
        )),
        _ => None,
    }
}

fn refused(e: &DavError) -> bool {
    matches!(e.status(), Some(401 | 403))
}

fn source_words(e: &DavError, user: &str) -> String {
    if refused(e) {
        format!(
            "source: We had trouble signing in to this account. Please confirm that you're using the correct user name and password. (The server said to {user}: {e})"
        )
    } else {
        format!(
            "source: {}",
            network_words(e).unwrap_or_else(|| e.to_string())
        )
    }
}

/// `shared`: the destination secret is the batch's (or an administrator's), so a refusal
/// means the account is missing there.
fn destination_words(e: &DavError, user: &str, shared: bool) -> String {
    match (refused(e), shared) {
        (true, true) => format!(
            "destination: A recipient wasn't found for {user} on the target. Create the account there, or check the batch's destination password. (The server said: {e})"
        ),
        (true, false) => format!(
            "destination: We had trouble signing in to this account. Please confirm that you're using the correct user name and password. (The server said to {user}: {e})"
        ),
        _ => format!(
            "destination: {}",
            network_words(e).unwrap_or_else(|| e.to_string())
        ),
    }
}
