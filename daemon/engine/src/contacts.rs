//! A contacts job: address books from a contacts source (the CardDAV plugin) into a CardDAV
//! destination. Same lifecycle, events and summary as a mail run; progress is counted in
//! contacts.
//!
//! Exactly once without intents: a new contact is PUT with `If-None-Match: *` under a name
//! derived from its source href, so a PUT repeated after a crash finds its own earlier copy
//! (412, same bytes) instead of making a second one; the ledger records source ETag and
//! destination href and ETag after every batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use migrated_core::contacts::last_segment;
use migrated_core::{
    AddressBook, ContactData, ContactRef, ContactsConnector, ContactsDestination,
    ContactsDestinationSession, ContactsSession, DestinationError, Put,
};
use migrated_store::{ContactRecord, FolderState, JobKey, Store};

use crate::config::CopyConfig;
use crate::error::EngineError;
use crate::events::{Connection, Event, Observer, Side, Summary};
use crate::ledger::store_call;
use crate::retry::Try;
use crate::stop::StopSignal;
use migrated_core::{FolderReport, ItemRow, Phase};

/// Contacts fetched and written per batch (one ledger write each).
const BATCH: usize = 50;

/// Runs contacts jobs from a source `C` to a destination `D`.
pub struct ContactsEngine<C: ContactsConnector + 'static, D: ContactsDestination> {
    source: C,
    /// Shared with the blocking threads its calls run on.
    destination: Arc<D>,
    store: Store,
    config: CopyConfig,
    observer: Observer,
    job: JobKey,
    stop: StopSignal,
}

impl<C: ContactsConnector + 'static, D: ContactsDestination> std::fmt::Debug
    for ContactsEngine<C, D>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactsEngine")
            .field("job", &self.config.job_id)
            .finish_non_exhaustive()
    }
}

/// The destination, on a blocking thread (its calls block, as the CardDAV client's do).
async fn dav<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DestinationError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DestinationError::temporary(format!("CardDAV call ended: {e}")))?
        .map_err(EngineError::from)
}

/// The UID of a vCard, for reports.
fn vcard_uid(vcard: &[u8]) -> Option<String> {
    vcard_property(vcard, "UID")
}

/// A property's value (its first line), for reports: the UID, the full name (FN).
fn vcard_property(vcard: &[u8], property: &str) -> Option<String> {
    String::from_utf8_lossy(vcard).lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let name = name.split(';').next()?;
        name.eq_ignore_ascii_case(property)
            .then(|| value.trim().to_owned())
    })
}

/// The destination name of a contact: its source file name, made safe for a URL path.
fn file_name(source_href: &str) -> String {
    let mut name: String = last_segment(source_href)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.%@+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        name = "contact".to_owned();
    }
    if !name.to_ascii_lowercase().ends_with(".vcf") {
        name.push_str(".vcf");
    }
    name
}

impl<C: ContactsConnector + 'static, D: ContactsDestination> ContactsEngine<C, D> {
    /// An engine for one job.
    pub fn new(
        source: C,
        destination: D,
        store: Store,
        config: CopyConfig,
        observer: Observer,
    ) -> Self {
        let job = store.job_key(&config.job_id);
        Self {
            source,
            destination: Arc::new(destination),
            store,
            config,
            observer,
            job,
            stop: StopSignal::new(),
        }
    }

    /// The signal that stops the run after the batch in flight.
    pub fn stop_handle(&self) -> StopSignal {
        self.stop.clone()
    }

    fn stopping(&self) -> Result<(), EngineError> {
        self.stop.checkpoint()
    }

    /// Runs the job once; a later run copies what is new or changed.
    ///
    /// # Errors
    ///
    /// As for the mail engine's `run`.
    pub async fn run(&self) -> Result<Summary, EngineError> {
        let started = Instant::now();
        crate::retry::run(
            &self.config,
            &self.observer,
            &self.stop,
            || async move { self.attempt(started).await.map(Try::Done) },
            crate::retry::single_pass,
        )
        .await
    }

    async fn attempt(&self, started: Instant) -> Result<Summary, EngineError> {
        let emit = |e| (self.observer)(e);
        emit(Event::Phase(Phase::Connecting));
        emit(Event::Connection(Side::Source, Connection::Connecting));
        emit(Event::Phase(Phase::Authenticating));
        let mut src = match self.source.connect().await {
            Ok(s) => s,
            Err(e) => {
                emit(Event::Connection(
                    Side::Source,
                    Connection::Failed(e.message.clone()),
                ));
                return Err(e.into());
            }
        };
        emit(Event::Connection(Side::Source, Connection::Authenticated));
        emit(Event::Connection(Side::Destination, Connection::Connecting));
        let destination = self.destination.clone();
        let found = dav(move || {
            let client = destination.connect()?;
            let books = client.books()?;
            Ok((client, books))
        })
        .await;
        let (client, dest_books) = match found {
            Ok(f) => f,
            Err(e) => {
                emit(Event::Connection(
                    Side::Destination,
                    Connection::Failed(e.to_string()),
                ));
                return Err(e);
            }
        };
        let client = Arc::new(client);
        let home = client.home().to_owned();
        emit(Event::Connection(
            Side::Destination,
            Connection::Authenticated,
        ));

        emit(Event::Phase(Phase::ScanningFolders));
        let books = src.books().await?;
        // Each source book's destination: an existing book of the same name, else a new one
        // named after the source book's path segment.
        let mut plans: Vec<(AddressBook, String)> = Vec::new();
        for b in &books {
            let dest = match dest_books.iter().find(|d| d.name == b.name) {
                Some(d) => d.href.clone(),
                None => format!(
                    "{}/{}/",
                    home.trim_end_matches('/'),
                    file_name(&b.href).trim_end_matches(".vcf")
                ),
            };
            plans.push((b.clone(), dest));
        }
        emit(Event::Phase(Phase::CreatingFolders));
        for (b, dest) in &plans {
            if !dest_books.iter().any(|d| &d.href == dest) {
                let (c, d, name, description) = (
                    client.clone(),
                    dest.clone(),
                    b.name.clone(),
                    b.description.clone(),
                );
                dav(move || c.create_book(&d, &name, description.as_deref())).await?;
                tracing::info!(job = %self.config.job_id, book = %b.name, href = %dest, "Address book created.");
            }
        }

        // What each book has to copy.
        let mut work = Vec::new();
        let mut total = 0u64;
        for (book, dest) in plans {
            self.stopping()?;
            let folder = self.store.folder_key(self.job, &book.href);
            let (s2, job) = (self.store.clone(), self.job);
            let previous = store_call(move || s2.folder_state(job, folder)).await?;
            let token = previous
                .as_ref()
                .filter(|p| p.destination == dest)
                .and_then(|p| p.sync_token.clone());
            let changes = src.changes(&book.href, token.as_deref()).await?;
            let hrefs: Vec<String> = changes.changed.iter().map(|c| c.href.clone()).collect();
            let s2 = self.store.clone();
            let ledger = store_call(move || s2.contacts(folder, &hrefs)).await?;
            let todo: Vec<ContactRef> = changes
                .changed
                .iter()
                .filter(|c| ledger.get(&c.href).is_none_or(|r| r.source_etag != c.etag))
                .cloned()
                .collect();
            total += todo.len() as u64;
            let report = FolderReport {
                source: book.name.clone(),
                destination: dest.clone(),
                messages: changes.changed.len() as u64,
                already_copied: (changes.changed.len() - todo.len()) as u64,
                ..FolderReport::default()
            };
            work.push((book, dest, folder, changes.token, ledger, todo, report));
        }
        emit(Event::Totals {
            items: total,
            bytes: 0,
            folders: work.len() as u64,
        });
        emit(Event::Phase(Phase::Copying));
        let mut summary = Summary {
            folders: work.len() as u64,
            ..Summary::default()
        };
        let (mut done, mut bytes) = (0u64, 0u64);
        for (book, dest, folder, token, ledger, todo, mut report) in work {
            for chunk in todo.chunks(BATCH) {
                self.stopping()?;
                let hrefs: Vec<String> = chunk.iter().map(|c| c.href.clone()).collect();
                let cards = src.fetch(&book.href, &hrefs).await?;
                let (c, dest2, ledger2) = (client.clone(), dest.clone(), ledger.clone());
                let outcome = dav(move || Ok(write_batch(&*c, &dest2, &ledger2, cards))).await?;
                let records = outcome.records;
                let s2 = self.store.clone();
                let n = records.len() as u64;
                store_call(move || s2.put_contacts(folder, &records)).await?;
                done += n;
                bytes += outcome.bytes;
                report.copied += n;
                for Refused {
                    href,
                    uid,
                    name,
                    size,
                    reason,
                } in outcome.refused
                {
                    report.failed += 1;
                    let item = ItemRow {
                        folder: book.name.clone(),
                        uid: 0,
                        size,
                        message_id: uid.or(Some(href)),
                        subject: name,
                        reason,
                    };
                    tracing::warn!(job = %self.config.job_id, book = %item.folder, contact = ?item.message_id, reason = %item.reason, "Contact refused by the destination.");
                    emit(Event::Failed(item.clone()));
                    summary.failed.push(item);
                }
                emit(Event::Progress {
                    folder: book.name.clone(),
                    items_done: done,
                    bytes_done: bytes,
                });
                if let Some(e) = outcome.temporary {
                    return Err(e.into());
                }
            }
            // The token is the checkpoint: only after a book copied without refusals (a
            // refused contact must be tried again by the next run).
            let state = FolderState {
                source: book.href.clone(),
                destination: dest.clone(),
                sync_token: token.filter(|_| report.failed == 0),
                ..FolderState::default()
            };
            let (s2, job) = (self.store.clone(), self.job);
            store_call(move || s2.put_folder_state(job, folder, &state)).await?;
            tracing::info!(job = %self.config.job_id, book = %book.name, copied = report.copied, failed = report.failed, "Address book done.");
            summary.already_copied += report.already_copied;
            emit(Event::FolderDone(report.clone()));
            summary.per_folder.push(report);
        }
        emit(Event::Phase(Phase::Finalizing));
        summary.copied = done;
        summary.bytes = bytes;
        summary.duration = started.elapsed();
        Ok(summary)
    }
}

/// A contact the destination refused.
struct Refused {
    href: String,
    uid: Option<String>,
    name: Option<String>,
    size: u64,
    /// The server's status and words.
    reason: String,
}

/// What writing a batch came to.
struct Outcome {
    records: Vec<(String, ContactRecord)>,
    bytes: u64,
    refused: Vec<Refused>,
    temporary: Option<DestinationError>,
}

/// PUTs a batch: new contacts only where nothing is (`If-None-Match: *`), changed ones over
/// their earlier copy. Stops at the first temporary error.
fn write_batch<S: ContactsDestinationSession>(
    client: &S,
    book: &str,
    ledger: &HashMap<String, ContactRecord>,
    cards: Vec<ContactData>,
) -> Outcome {
    let mut out = Outcome {
        records: Vec::new(),
        bytes: 0,
        refused: Vec::new(),
        temporary: None,
    };
    for card in cards {
        let size = card.vcard.len() as u64;
        let result = match ledger.get(&card.href) {
            Some(earlier) => client
                .put(&earlier.dest_href, &card.vcard, false)
                .map(|p| (earlier.dest_href.clone(), p)),
            None => put_new(client, book, &card),
        };
        match result {
            Ok((dest_href, Put::Stored(etag))) => {
                out.bytes += size;
                out.records.push((
                    card.href,
                    ContactRecord {
                        dest_href,
                        source_etag: card.etag,
                        dest_etag: etag,
                    },
                ));
            }
            Ok((_, Put::Exists)) => unreachable!("put_new resolves Exists"),
            Err(e) if e.is_temporary() => {
                out.temporary = Some(e);
                break;
            }
            Err(e) => out.refused.push(Refused {
                uid: vcard_uid(&card.vcard),
                name: vcard_property(&card.vcard, "FN"),
                href: card.href,
                size,
                reason: e.to_string(),
            }),
        }
    }
    out
}

/// A contact not in the ledger: PUT under its source file name unless something is there. What
/// is there is this contact when an earlier run stopped after its PUT (same bytes or UID):
/// recorded, not copied again. A different contact of that name keeps its place; this one gets
/// another.
fn put_new<S: ContactsDestinationSession>(
    client: &S,
    book: &str,
    card: &ContactData,
) -> Result<(String, Put), DestinationError> {
    let name = file_name(&card.href);
    let mut href = format!("{book}{name}");
    for attempt in 0..3 {
        match client.put(&href, &card.vcard, true)? {
            Put::Stored(etag) => return Ok((href, Put::Stored(etag))),
            Put::Exists => {
                // This contact, stored by an earlier run that stopped before recording it:
                // the same bytes, or (servers re-serialize vCards) the same UID.
                if let Some(existing) = client.get(&href)?
                    && (existing.vcard == card.vcard
                        || vcard_uid(&card.vcard)
                            .is_some_and(|u| vcard_uid(&existing.vcard).as_deref() == Some(&u)))
                {
                    return Ok((href, Put::Stored(Some(existing.etag))));
                }
                let digest = blake3::hash(&card.vcard).to_hex();
                href = format!(
                    "{book}{}-{}{}.vcf",
                    name.trim_end_matches(".vcf"),
                    &digest.as_str()[..8],
                    if attempt > 0 { "-x" } else { "" }
                );
            }
        }
    }
    Err(DestinationError::permanent(format!(
        "{}: PUT {href}: every name tried for this contact is taken by another",
        client.server()
    ))
    .with_cause(migrated_core::Cause::Protocol))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::TempStore;
    use crate::fakes::contacts::{DavAccount, FakeContacts, FakeDav, vcard};

    #[tokio::test]
    async fn a_put_whose_reply_was_lost_is_recognised_and_not_stored_twice() {
        let book = AddressBook {
            href: "/src/alice/work/".into(),
            name: "Work".into(),
            description: None,
        };
        let cards: Vec<ContactData> = (1..=4)
            .map(|i| ContactData {
                href: format!("/src/alice/work/{i}.vcf"),
                etag: format!("\"e{i}\""),
                vcard: vcard(&format!("urn:uuid:{i}"), &format!("Person {i}")),
            })
            .collect();
        let source = FakeContacts {
            books: vec![(book, cards.clone())],
        };
        let account = Arc::new(std::sync::Mutex::new(DavAccount {
            late_puts: 1,
            ..DavAccount::default()
        }));
        let store = TempStore::new("contacts-late-put");
        let mut config = CopyConfig::new("job-contacts");
        config.initial_backoff = std::time::Duration::from_millis(1);
        config.max_backoff = std::time::Duration::from_millis(2);
        let engine = ContactsEngine::new(
            source.clone(),
            FakeDav(account.clone()),
            store.store.clone(),
            config.clone(),
            Arc::new(|_| {}),
        );
        // The first attempt ends at the lost reply; the next finds that contact in place.
        let summary = engine.run().await.expect("the run completes");
        assert_eq!(summary.copied, 4);
        {
            let a = account.lock().unwrap();
            let (name, stored) = &a.books["/dav/alice/work/"];
            assert_eq!(name, "Work");
            let mut got: Vec<&Vec<u8>> = stored.values().collect();
            got.sort();
            let mut want: Vec<&Vec<u8>> = cards.iter().map(|c| &c.vcard).collect();
            want.sort();
            assert_eq!(got, want, "each contact once, under its own name");
            assert_eq!(a.stored, 4, "no contact was written twice");
        }
        // A later run finds everything in the ledger.
        let summary = ContactsEngine::new(
            source,
            FakeDav(account.clone()),
            store.store.clone(),
            config,
            Arc::new(|_| {}),
        )
        .run()
        .await
        .unwrap();
        assert_eq!((summary.copied, summary.already_copied), (0, 4));
        assert_eq!(account.lock().unwrap().stored, 4);
    }

    #[test]
    fn names_and_uids() {
        assert_eq!(file_name("/a/b/c%20d.vcf"), "c%20d.vcf");
        assert_eq!(file_name("/a/b/x y"), "x_y.vcf");
        assert_eq!(
            vcard_uid(b"BEGIN:VCARD\r\nVERSION:4.0\r\nuid:urn:uuid:1\r\nEND:VCARD\r\n").as_deref(),
            Some("urn:uuid:1")
        );
    }
}
