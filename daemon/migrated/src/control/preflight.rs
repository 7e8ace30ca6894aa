//! Pre-flight (`migratectl batch test`, `migratectl test`): logs in to both sides of every
//! mailbox, several at once (as many as the daemon runs jobs at once), and counts what a first
//! copy would do: folders, messages and bytes, the largest message and what the size limit
//! would exclude. Nothing is created and no job is touched. Problems are said in the words
//! Exchange administrators know from its migration batches where one fits, followed by the
//! server's own reply.
//!
//! The daemon runs the checks, not migratectl: the daemon holds the plugins and the network
//! access a migration will use, so a pre-flight that passes here logs in from where the copy
//! will. The loop builds the mailboxes (a batch's rows, named endpoints applied) and hands
//! them to a task of their own, so it goes on answering while the logins run.

use std::sync::Arc;

use migrated_core::mapping::canonical_path;
use migrated_core::{JobSpec, MappingRules, Namespace};
use migrated_imap::{ImapError, ImapSession};
use migrated_ipc::{ErrorKind, PreflightRow, Response};
use tokio::sync::Semaphore;

use crate::job::EndpointSpecExt;

mod contacts;

pub(crate) use contacts::test_endpoints as test_dav_endpoints;

/// A mailbox to check: its job, and whether the destination logs in with the batch's shared
/// secret (a refused login then means the mailbox does not exist there).
pub(crate) struct Mailbox {
    pub spec: JobSpec,
    pub shared_destination: bool,
}

/// Checks every mailbox, at most `concurrent` at once; the rows in the order given.
pub(crate) async fn run(mailboxes: Vec<Mailbox>, concurrent: usize) -> Response {
    let gate = Arc::new(Semaphore::new(concurrent.max(1)));
    let tasks: Vec<_> = mailboxes
        .into_iter()
        .map(|m| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _slot = gate.acquire_owned().await;
                check(&m).await
            })
        })
        .collect();
    let mut rows = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(row) => rows.push(row),
            Err(e) => {
                return Response::Error {
                    kind: ErrorKind::Internal,
                    message: format!("a pre-flight check failed: {e}"),
                };
            }
        }
    }
    Response::Preflight { rows }
}

fn label(e: &migrated_core::EndpointSpec) -> String {
    format!(
        "{}@{}:{}",
        e.user,
        e.host,
        e.port
            .map_or_else(|| "default".to_owned(), |p| p.to_string())
    )
}

/// One mailbox: both logins, then the source's folders and sizes.
async fn check(m: &Mailbox) -> PreflightRow {
    let spec = &m.spec;
    let mut row = PreflightRow {
        mailbox: spec.name.clone(),
        source: label(&spec.source),
        destination: label(&spec.destination),
        size_limit: spec.limits.max_message_size,
        ..PreflightRow::default()
    };
    let place = format!("job {:?}", spec.name);
    let plugin = spec.source.plugin.as_deref().unwrap_or("imap");
    if plugin == "carddav" {
        return contacts::check(m, row, place).await;
    }
    if spec.source.path.is_some() || (plugin != "imap" && plugin != "gmail") {
        row.problems.push(format!(
            "pre-flight checks IMAP, Gmail and CardDAV sources; the {plugin:?} plugin's logins are checked by `migratectl test` on one job file"
        ));
        return row;
    }
    let rules = match spec.folders.rules() {
        Ok(r) => r,
        Err(e) => {
            row.problems.push(format!("{place}: [folders] {e}"));
            return row;
        }
    };
    // The destination first: a mailbox that does not exist there is the commonest problem.
    match login(&spec.destination, &place, "destination").await {
        Ok(s) => {
            row.destination_ok = true;
            s.logout().await;
        }
        Err(e) => row.problems.push(destination_words(
            &e,
            &spec.destination.user,
            m.shared_destination || spec.destination.is_admin_login(),
        )),
    }
    let mut source = match login(&spec.source, &place, "source").await {
        Ok(s) => s,
        Err(e) => {
            row.problems.push(source_words(&e, &spec.source.user));
            return row;
        }
    };
    row.source_ok = true;
    // A Gmail source reads All Mail once whatever the label folders: patterns apply to what
    // the labels become, so its folders are counted as listed.
    let rules = (plugin == "imap").then_some(&rules);
    if let Err(e) = count(&mut source, rules, &mut row).await {
        row.problems
            .push(format!("listing the source mailbox failed: {e}"));
    }
    source.logout().await;
    row
}

/// Why a login failed, before or after the connection.
enum LoginError {
    /// The job file's endpoint is wrong (a missing password, say).
    Spec(String),
    /// The server or the network.
    Imap(ImapError),
}

async fn login(
    e: &migrated_core::EndpointSpec,
    place: &str,
    side: &str,
) -> Result<ImapSession, LoginError> {
    let endpoint = e
        .endpoint(place, side)
        .map_err(|e| LoginError::Spec(format!("{e:#}")))?;
    ImapSession::connect(&endpoint)
        .await
        .map_err(LoginError::Imap)
}

/// Folders, messages and sizes of the source (EXAMINE and one UID FETCH of the sizes per
/// folder: read-only, nothing marked as read). With `rules`, the folders the job's include and
/// exclude patterns leave out are counted apart, as a copy would leave them.
async fn count(
    s: &mut ImapSession,
    rules: Option<&MappingRules>,
    row: &mut PreflightRow,
) -> Result<(), ImapError> {
    let folders = s.list().await?;
    let (prefix, delimiter) = s.namespace();
    let ns = Namespace {
        prefix: prefix.to_owned(),
        delimiter,
    };
    for f in folders.iter().filter(|f| !f.no_select) {
        if let Some(rules) = rules
            && rules
                .left_out(&canonical_path(&f.name, f.delimiter, &ns))
                .is_some()
        {
            row.folders_left_out += 1;
            continue;
        }
        s.open(&f.name, true).await?;
        let listing = s.fetch_meta(1, None).await?;
        row.folders += 1;
        for m in &listing {
            let size = u64::from(m.size);
            row.messages += 1;
            row.bytes += size;
            row.largest = row.largest.max(size);
            if size > row.size_limit {
                row.excluded += 1;
                row.excluded_bytes += size;
            }
        }
    }
    if row.excluded > 0 {
        row.problems.push(format!(
            "{} messages ({:.1} MB) are larger than the size limit of {:.1} MB and will be skipped (max_message_size in [limits] raises it; the destination must accept them)",
            row.excluded,
            row.excluded_bytes as f64 / 1e6,
            row.size_limit as f64 / 1e6
        ));
    }
    Ok(())
}

/// A network problem, said as Exchange says it where one fits.
fn network_words(e: &ImapError) -> Option<String> {
    match e {
        ImapError::Timeout {
            server,
            what,
            after,
        } => {
            let (host, port) = server.rsplit_once(':').unwrap_or((server, "?"));
            Some(format!(
                "The connection to the server {host} timed out: port {port}, no answer to {what} within {} seconds. Check the host name, the port and that a firewall lets us through.",
                after.as_secs()
            ))
        }
        ImapError::Connect { server, source } => {
            let (host, port) = server.rsplit_once(':').unwrap_or((server, "?"));
            Some(format!(
                "The connection to the server {host} could not be completed: port {port}: {source}. Check the host name and the port."
            ))
        }
        ImapError::Tls { .. } | ImapError::NoStartTls { .. } => Some(format!(
            "The connection to the server could not be secured: {e}"
        )),
        _ => None,
    }
}

fn source_words(e: &LoginError, user: &str) -> String {
    match e {
        LoginError::Spec(m) => format!("source: {m}"),
        LoginError::Imap(ImapError::Auth { reply, .. }) => {
            format!(
                "source: We had trouble signing in to this account. Please confirm that you're using the correct user name and password. (The server said to {user}: {reply})"
            )
        }
        LoginError::Imap(i) => {
            format!(
                "source: {}",
                network_words(i).unwrap_or_else(|| i.to_string())
            )
        }
    }
}

/// `shared`: the destination logged in with a secret every mailbox of the batch shares (or
/// as an administrator), so the secret is right for the others and the mailbox is missing.
fn destination_words(e: &LoginError, user: &str, shared: bool) -> String {
    match e {
        LoginError::Spec(m) => format!("destination: {m}"),
        LoginError::Imap(ImapError::Auth { reply, .. }) if shared => {
            format!(
                "destination: A recipient wasn't found for {user} on the target. Create the mailbox there, or check the batch's destination password. (The server said: {reply})"
            )
        }
        LoginError::Imap(ImapError::Auth { reply, .. }) => format!(
            "destination: We had trouble signing in to this account. Please confirm that you're using the correct user name and password. (The server said to {user}: {reply})"
        ),
        LoginError::Imap(i) => format!(
            "destination: {}",
            network_words(i).unwrap_or_else(|| i.to_string())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_timeout_names_host_port_and_seconds() {
        let e = ImapError::Timeout {
            server: "imap.old.example:993".into(),
            what: "the greeting".into(),
            after: Duration::from_secs(30),
        };
        assert_eq!(
            network_words(&e).unwrap(),
            "The connection to the server imap.old.example timed out: port 993, no answer to the greeting within 30 seconds. Check the host name, the port and that a firewall lets us through."
        );
    }

    #[test]
    fn a_refused_login_with_the_batch_secret_is_a_recipient_not_found_on_the_target() {
        let refused = || {
            LoginError::Imap(ImapError::Auth {
                server: "new:143".into(),
                user: "carol@new.example".into(),
                admin: None,
                reply: "NO [AUTHENTICATIONFAILED] Authentication failed.".into(),
            })
        };
        assert!(
            destination_words(&refused(), "carol@new.example", true).starts_with(
                "destination: A recipient wasn't found for carol@new.example on the target."
            )
        );
        // The row's own password refused: that is a sign-in problem, not a missing mailbox.
        assert!(
            destination_words(&refused(), "carol@new.example", false)
                .starts_with("destination: We had trouble signing in to this account.")
        );
        assert!(
            source_words(&refused(), "carol").starts_with(
                "source: We had trouble signing in to this account. Please confirm that you're using the correct user name and password."
            )
        );
    }
}
