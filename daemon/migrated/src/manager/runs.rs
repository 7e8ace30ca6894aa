//! Runs: starting one (the engine for its kind, its settings from the job and the daemon's
//! limits), following its events into the job's record, and what its end means for the job's
//! status, with what to do next when it failed.

use std::sync::Arc;
use std::time::Duration;

use migrated_core::JobStatus;
use migrated_engine::{Connection, ContactsEngine, Engine, EngineError, Event, Side, Summary};
use migrated_ipc::AlertLevel;
use migrated_ipc::text::clock;
use migrated_plugin_api::wire::Kind;

use super::Manager;
use crate::alerts::AlertKind;
use crate::job::{EndpointSpecExt, JobSpecExt};
use crate::msg::{Msg, Update};
use crate::record::now;

/// What a job reads and writes.
enum Sides {
    /// Mail: a source plugin and an IMAP destination.
    Mail(
        migrated_plugin_api::host::PluginSource,
        migrated_imap::Endpoint,
    ),
    /// Contacts: a contacts plugin and a CardDAV destination.
    Contacts(
        migrated_plugin_api::host::ContactsPluginSource,
        migrated_carddav::DavEndpoint,
    ),
}

impl Manager {
    pub(super) async fn start(&mut self, id: &str) {
        let record = self.jobs[id].record.clone();
        let place = format!("job {:?}", record.spec.name);
        let built = (|| -> anyhow::Result<_> {
            let mut config = record.spec.copy_config(&place)?;
            // The ledger is kept under the generated id: names can be addresses.
            config.job_id = record.id.clone();
            // The per-host limit may leave room for fewer workers than the job asks for.
            let per_host = crate::scheduler::connections_of(
                record.spec.limits.connections,
                self.settings.per_host(),
            );
            config.connections = config.connections.min(per_host - 1);
            config.bandwidth.extend(self.settings.bandwidth.clone());
            config.memory = self.settings.memory.clone();
            let plugins = &self.settings.plugins;
            let sides = match crate::job::source_kind(&record.spec.source, plugins, &place)? {
                Kind::Mail => Sides::Mail(
                    crate::job::plugin_source(
                        &record.spec,
                        plugins,
                        &place,
                        crate::job::Credentials::Needed,
                    )?,
                    record.spec.destination.endpoint(&place, "destination")?,
                ),
                Kind::Contacts => {
                    let (source, destination) = crate::job::contacts_sides(
                        &record.spec,
                        plugins,
                        &place,
                        crate::job::Credentials::Needed,
                    )?;
                    Sides::Contacts(source, destination)
                }
            };
            Ok((config, sides))
        })();
        let (config, sides) = match built {
            Ok(b) => b,
            Err(e) => {
                if let Some(entry) = self.jobs.get_mut(id) {
                    entry.record.error = Some(format!("{e:#}"));
                }
                self.set_status(id, JobStatus::Failed).await;
                return;
            }
        };
        let tx = self.tx.clone();
        let job = id.to_owned();
        let observer: migrated_engine::Observer = Arc::new(move |event| {
            let _ = tx.send(Msg::Engine {
                id: job.clone(),
                event,
            });
        });
        let store = self.journal.store().clone();
        let (stop, run): (_, std::pin::Pin<Box<dyn Future<Output = _> + Send>>) = match sides {
            Sides::Mail(source, destination) => {
                let destination = migrated_imap::ImapDestination::new(destination);
                let engine = Engine::new(source, destination, store, config, observer);
                (
                    engine.stop_handle(),
                    Box::pin(async move { engine.run().await }),
                )
            }
            Sides::Contacts(source, destination) => {
                let destination = migrated_carddav::DavDestination::new(destination);
                let engine = ContactsEngine::new(source, destination, store, config, observer);
                (
                    engine.stop_handle(),
                    Box::pin(async move { engine.run().await }),
                )
            }
        };
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.stop = Some(stop);
            entry.record.error = None;
            // A new run's figures; the last verification stays until a run replaces it.
            let run = std::mem::take(&mut entry.record.run);
            entry.record.run.verification = run.verification;
            entry.record.run.verified_at = run.verified_at;
            entry.throughput.start(crate::throughput::now());
        }
        tracing::info!(job_id = %id, job = %record.spec.name, priority = record.spec.priority, "Job started.");
        self.set_status(id, JobStatus::Connecting).await;
        let tx = self.tx.clone();
        let job = id.to_owned();
        tokio::spawn(async move {
            let result = run.await;
            let _ = tx.send(Msg::Finished { id: job, result });
        });
    }

    pub(super) async fn on_engine(&mut self, id: &str, event: Event) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        let mut publish = true;
        match event {
            Event::Phase(phase) => {
                let status = JobStatus::from(phase);
                let current = entry.record.status;
                if current != JobStatus::Stopping && current.can_become(status) {
                    self.set_status(id, status).await;
                }
                return;
            }
            Event::Connection(side, state) => {
                let (label, slot) = match side {
                    Side::Source => ("Source", &mut entry.record.run.source_connection),
                    Side::Destination => {
                        ("Destination", &mut entry.record.run.destination_connection)
                    }
                };
                *slot = Some(state.label());
                match state {
                    Connection::Authenticated => {
                        self.event(id, "info", format!("{label} connection: logged in."))
                            .await;
                        return;
                    }
                    Connection::Failed(reason) => {
                        self.event(id, "error", format!("{label} connection failed: {reason}"))
                            .await;
                        return;
                    }
                    _ => {}
                }
            }
            Event::Totals { items, bytes, .. } => {
                entry.record.run.items_total = entry.record.run.items_done + items;
                entry.record.run.bytes_total = entry.record.run.bytes_done + bytes;
            }
            Event::Progress {
                folder,
                items_done,
                bytes_done,
            } => {
                entry.record.run.items_done = items_done;
                entry.record.run.bytes_done = bytes_done;
                entry.record.run.current_folder = Some(folder);
                entry
                    .throughput
                    .progress(crate::throughput::now(), items_done, bytes_done);
                publish = entry.last_publish.elapsed() >= Duration::from_millis(250);
            }
            Event::FolderDone(f) => {
                let row = f;
                match entry
                    .record
                    .run
                    .folders
                    .iter_mut()
                    .find(|r| r.source == row.source)
                {
                    Some(r) => *r = row,
                    None => entry.record.run.folders.push(row),
                }
            }
            Event::Excluded(i) => {
                let msg = format!(
                    "Excluded {} UID {}{} ({} bytes): {}.",
                    i.folder,
                    i.uid,
                    titled(i.subject.as_deref()),
                    i.size,
                    i.reason
                );
                entry.record.run.excluded.push(i);
                self.event(id, "warning", msg).await;
                return;
            }
            Event::Failed(i) => {
                let msg = format!(
                    "Refused {} UID {}{}: {}.",
                    i.folder,
                    i.uid,
                    titled(i.subject.as_deref()),
                    i.reason
                );
                entry.record.run.failed.push(i);
                self.event(id, "warning", msg).await;
                return;
            }
            Event::Retrying { error, delay } => {
                let msg = format!(
                    "Temporary error, retrying in {:.1} s: {error}",
                    delay.as_secs_f64()
                );
                self.event(id, "warning", msg).await;
                return;
            }
            Event::Throttled { delay, reason } => {
                let until = now() + delay.as_secs().max(1);
                entry.record.run.throttled_until = Some(until);
                let msg = format!(
                    "Throttled by the server: waiting {:.1} s (until {} UTC), then going on. The server said: {reason}",
                    delay.as_secs_f64(),
                    clock(until)
                );
                self.event(id, "warning", msg).await;
                if delay >= crate::alerts::THROTTLED_LONG {
                    self.alert(
                        id,
                        AlertKind::Throttled,
                        AlertLevel::Bad,
                        format!(
                            "Throttled by the server for {} minutes: {reason}",
                            delay.as_secs() / 60
                        ),
                        "nothing, the job goes on by itself; if it happens often, lower the job's `connections` or `max_mbps`, or run it in a schedule window outside the server's busy hours".into(),
                    ).await;
                }
                return;
            }
        }
        if publish {
            entry.last_publish = std::time::Instant::now();
            let _ = self.updates.send(Update {
                job: entry.record.summary(),
                events: Vec::new(),
                alerts: Vec::new(),
            });
        }
    }

    pub(super) async fn on_finished(&mut self, id: &str, result: Result<Summary, EngineError>) {
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        entry.stop = None;
        // The run's last throughput sample: what it copied in all, however it ended.
        let (items, bytes) = match &result {
            Ok(s) => (s.copied, s.bytes),
            Err(_) => (entry.record.run.items_done, entry.record.run.bytes_done),
        };
        entry
            .throughput
            .finish(crate::throughput::now(), items, bytes);
        let cancel = entry.record.cancel_requested;
        let window_stop = std::mem::take(&mut entry.window_stop);
        let store_stop = std::mem::take(&mut entry.store_stop);
        let paused = entry.record.status == JobStatus::Stopping;
        // The store cannot be written: the job waits for it (unless it was paused, cancelled
        // or the daemon stops: that wins).
        let store_fault = match &result {
            Err(EngineError::Store(e)) => {
                let outage = self.journal.failed(e);
                self.outage(outage).await;
                e.fault().cloned()
            }
            Err(EngineError::Stopped) if store_stop => self.journal.fault().cloned(),
            _ => None,
        };
        if let Some(fault) = store_fault
            && !cancel
            && !paused
            && !self.shutting_down
        {
            self.wait_for_store(id, &fault).await;
            return;
        }
        let status = match result {
            Err(EngineError::Store(e)) if e.fault().is_some() && cancel => JobStatus::Cancelled,
            Err(EngineError::Store(e)) if e.fault().is_some() && paused => JobStatus::Stopped,
            // The daemon stops: the job resumes at the next start.
            Err(EngineError::Store(e)) if e.fault().is_some() => JobStatus::Queued,
            Ok(summary) => {
                let Some(entry) = self.jobs.get_mut(id) else {
                    return;
                };
                let run = &mut entry.record.run;
                run.duration_secs = summary.duration.as_secs_f64();
                run.timings = summary.timings.clone();
                run.items_done = summary.copied;
                run.items_total = run.items_total.max(summary.copied);
                run.bytes_done = summary.bytes;
                run.current_folder = None;
                run.folders = summary.per_folder.clone();
                run.removed = summary.removed.clone();
                let errors = !summary.failed.is_empty()
                    || summary.per_folder.iter().any(|f| f.error.is_some());
                let message = format!(
                    "Run finished: {} messages copied ({:.1} MB), {} already there, {} flag changes, {} excluded, {} failed, in {:.1} s.",
                    summary.copied,
                    summary.bytes as f64 / 1e6,
                    summary.already_copied,
                    summary.flags_updated,
                    summary.excluded.len(),
                    summary.failed.len(),
                    summary.duration.as_secs_f64()
                );
                self.event(id, "info", message).await;
                let name = self.jobs[id].record.spec.name.clone();
                if !summary.failed.is_empty() {
                    let what = format!(
                        "`migratectl report {name}` lists each with the server's words; fix the cause (a size or content the server will not take, its quota) and run `migratectl delta {name}`, which copies only them"
                    );
                    self.event(
                        id,
                        "warning",
                        format!(
                            "{} messages were refused by the destination. What to do: {what}.",
                            summary.failed.len()
                        ),
                    )
                    .await;
                    let full = summary.failed.iter().any(|i| says_quota(&i.reason));
                    let (kind, message) = if full {
                        (
                            AlertKind::MailboxFull,
                            format!(
                                "The destination mailbox is full: {} messages were refused by its quota.",
                                summary.failed.len()
                            ),
                        )
                    } else {
                        (
                            AlertKind::MessagesRefused,
                            format!(
                                "{} messages were refused by the destination.",
                                summary.failed.len()
                            ),
                        )
                    };
                    self.alert(id, kind, AlertLevel::Bad, message, what).await;
                }
                for f in summary.per_folder.iter().filter(|f| f.error.is_some()) {
                    let what = format!(
                        "create {} on the destination by hand, or rename it with a [folders] rename rule, then run `migratectl delta {name}`",
                        f.destination
                    );
                    let message = format!(
                        "Folder {} could not be copied: {}.",
                        f.source,
                        f.error.as_deref().unwrap_or("")
                    );
                    self.event(id, "error", format!("{message} What to do: {what}."))
                        .await;
                    self.alert(id, AlertKind::FolderFailed, AlertLevel::Bad, message, what)
                        .await;
                }
                if !errors {
                    self.alert(
                        id,
                        AlertKind::MailboxFinished,
                        AlertLevel::Good,
                        format!(
                            "Mailbox finished: {} messages copied ({:.1} MB), {} already there, in {:.1} s.",
                            summary.copied,
                            summary.bytes as f64 / 1e6,
                            summary.already_copied,
                            summary.duration.as_secs_f64()
                        ),
                        String::new(),
                    ).await;
                }
                if let Some(rows) = summary.verification.clone() {
                    self.verified(id, rows).await;
                }
                if errors {
                    JobStatus::CompletedWithErrors
                } else {
                    JobStatus::Completed
                }
            }
            Err(EngineError::Stopped) if cancel => JobStatus::Cancelled,
            Err(EngineError::Stopped) if self.shutting_down => JobStatus::Queued,
            Err(EngineError::Stopped) if window_stop => JobStatus::Queued,
            Err(EngineError::Stopped) => JobStatus::Stopped,
            Err(e) => {
                let message = format!("{e}");
                if let Some(entry) = self.jobs.get_mut(id) {
                    entry.record.error = Some(message.clone());
                }
                let spec = &self.jobs[id].record.spec;
                let endpoint = match e.side() {
                    Some(Side::Source) => &spec.source,
                    _ => &spec.destination,
                };
                let oauth = endpoint
                    .oauth_grant()
                    .filter(|_| e.cause() == Some(migrated_core::Cause::Authentication))
                    .map(|o| o.grant);
                if let Some(grant) = oauth {
                    // A refused OAuth 2 grant (a revoked refresh token, a delegation taken
                    // away) needs new credentials, not a retry: the job waits for them.
                    let contacts = matches!(
                        crate::job::source_kind(&spec.source, &self.settings.plugins, "job"),
                        Ok(Kind::Contacts)
                    );
                    let advice = oauth_advice(grant, e.side(), &spec.name, contacts);
                    self.event(
                        id,
                        "error",
                        format!("Waiting for credentials: {message}. What to do: {advice}"),
                    )
                    .await;
                    self.alert(
                        id,
                        AlertKind::LoginRefused,
                        AlertLevel::Bad,
                        format!("Waiting for credentials: {message}."),
                        advice,
                    )
                    .await;
                    JobStatus::WaitingForCredentials
                } else {
                    let advice = what_to_do(&e, &spec.name, endpoint.is_admin_login());
                    self.event(
                        id,
                        "error",
                        format!("Run failed: {message}. What to do: {advice}"),
                    )
                    .await;
                    let kind = if e.cause() == Some(migrated_core::Cause::Authentication) {
                        AlertKind::LoginRefused
                    } else if says_quota(&message) {
                        AlertKind::MailboxFull
                    } else {
                        AlertKind::JobFailed
                    };
                    self.alert(
                        id,
                        kind,
                        AlertLevel::Bad,
                        format!("Run failed: {message}."),
                        advice,
                    )
                    .await;
                    JobStatus::Failed
                }
            }
        };
        if status == JobStatus::Queued {
            // Stopped for a shutdown: queued again, so the next start resumes it.
            if let Some(entry) = self.jobs.get_mut(id) {
                entry.record.status = JobStatus::Queued;
                entry.record.updated = now();
            }
            self.persist(id).await;
            let message = if window_stop {
                let opening = self.jobs[id].record.spec.schedule.next_opening(now());
                format!(
                    "Paused: its schedule window ended; it resumes {}.",
                    opening.map_or_else(
                        || "when a window opens".to_owned(),
                        |t| format!("at {} UTC", clock(t))
                    )
                )
            } else {
                "Run stopped for shutdown; it resumes when the daemon starts.".to_owned()
            };
            self.event(id, "info", message).await;
        } else {
            self.set_status(id, status).await;
            if status.is_finished() {
                self.notify_finished(id).await;
            }
        }
    }
}

/// The next step for an administrator after a run failed this way; `admin`: the side the
/// error came from logs in as an administrator on behalf of the user.
fn what_to_do(e: &EngineError, job: &str, admin: bool) -> String {
    use migrated_core::Cause;
    // Chosen by the error's cause, which the IMAP and CardDAV clients and the plugins (ABI
    // 1.2) give, and by the side it came from; never by reading the server's words.
    let side = match e.side() {
        Some(Side::Source) => "source",
        _ => "destination",
    };
    match (e, e.cause()) {
        (_, Some(Cause::Authentication)) if admin => format!(
            "the {side} refused the administrator's login on behalf of the user: check that admin_user may log in as this user there (a Dovecot master passdb, a Cyrus admin, the server's proxy-authorization rights) and its password, then `migratectl delta {job}` (with `--{side}-password-file FILE` holding the administrator's password if it changed)."
        ),
        (_, Some(Cause::Authentication)) => format!(
            "the {side} refused the login: check the user and password (or token), then give them again with `migratectl delta {job} --{side}-password-file FILE`."
        ),
        (_, Some(Cause::Quota)) => format!(
            "raise the {side} mailbox's quota (or make room in it), then run `migratectl delta {job}`; nothing copied so far is copied again."
        ),
        (_, Some(Cause::Tls)) => format!(
            "the TLS connection to the {side} was refused: check the host name and port, give the server's CA with ca_file, then `migratectl delta {job}`."
        ),
        (_, Some(Cause::Throttled)) => format!(
            "the {side} kept asking to slow down: lower [limits] connections or max_mbps (or wait for its daily allowance), then `migratectl delta {job}` resumes where it stopped."
        ),
        (EngineError::Store(_), _) => format!(
            "the job store could not be used (see the error above); once that is fixed, `migratectl resume {job}` continues from the ledger."
        ),
        (EngineError::GaveUp { .. }, _) => format!(
            "temporary errors lasted through every pass: check that both servers are up and reachable, then `migratectl delta {job}` resumes where it stopped."
        ),
        (_, Some(Cause::Network)) => format!(
            "the {side} could not be reached or went away: check host, port and firewall, then `migratectl delta {job}` resumes where it stopped."
        ),
        _ if e.kind() == migrated_core::ErrorKind::Temporary => format!(
            "the server could not be reached or went away: check host, port and firewall, then `migratectl delta {job}` resumes where it stopped."
        ),
        _ => format!(
            "read the server's words above, correct the job file, and run `migratectl delta {job}`; `migratectl report {job}` shows what was copied."
        ),
    }
}

/// Whether a server's words say a mailbox is over its quota (RFC 5530 `OVERQUOTA`, or the
/// word in a server's own text).
fn says_quota(words: &str) -> bool {
    let w = words.to_ascii_lowercase();
    w.contains("quota") || w.contains("mailbox full")
}

/// What to do when a side's OAuth 2 grant was refused; `contacts`: a contacts job (CardDAV
/// on both sides).
fn oauth_advice(
    grant: migrated_core::Grant,
    side: Option<Side>,
    job: &str,
    contacts: bool,
) -> String {
    let side = match side {
        Some(Side::Source) => "source",
        _ => "destination",
    };
    let scope = if contacts {
        migrated_core::oauth2::GOOGLE_CARDDAV_SCOPE
    } else {
        "https://mail.google.com/"
    };
    match grant {
        migrated_core::Grant::RefreshToken => format!(
            "the provider no longer honours the {side}'s refresh token (revoked, expired, or the user's password changed): get a new one with `migratectl authorize JOBFILE --side {side} --out FILE` (or from the provider's console), then `migratectl delta {job} --{side}-password-file FILE`; nothing copied so far is copied again."
        ),
        migrated_core::Grant::ServiceAccount => format!(
            "check that the service account's key is still valid and that domain-wide delegation (Google Admin console, Security > API controls) lists its client id with the scope {scope} for this user's domain; give a new key with `migratectl delta {job} --{side}-password-file KEYFILE` if it changed."
        ),
        migrated_core::Grant::ClientCredentials => format!(
            "check the application's client secret and that it is granted {} with a service principal that has FullAccess to this mailbox (Exchange Online); give a new secret with `migratectl delta {job} --{side}-password-file FILE` if it changed.",
            if contacts {
                "the scope its CardDAV server asks for"
            } else {
                "IMAP.AccessAsApp"
            }
        ),
    }
}

/// ` ("Subject")` for messages, or nothing.
fn titled(subject: Option<&str>) -> String {
    subject.map(|s| format!(" ({s:?})")).unwrap_or_default()
}

#[cfg(test)]
mod tests;
