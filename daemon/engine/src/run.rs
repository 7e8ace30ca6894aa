//! One run of a job: connect, scan, map, create folders, plan, copy in parallel, checkpoint.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use migrated_core::mapping::map_folders;
use migrated_core::planner::{LedgerEntry, PlanOptions, batches, plan_folder};
use migrated_core::{
    ErrorKind, FolderInfo, FolderPlan, MessageMeta, Namespace, SourceConnector, SourceSession,
    SpecialUse,
};
use migrated_imap::{AppendItem, Endpoint, ImapError, ImapSession};
use migrated_store::{FolderKey, FolderState, Intent, ItemRecord, JobKey, Store};

use crate::config::CopyConfig;
use crate::error::EngineError;
use crate::events::{
    Connection, Event, ExcludedItem, FailedItem, FolderReport, MissingItem, Observer, Phase, Side,
    Summary, VerifyRow,
};
use crate::recovery::{rekey_destination, rekey_source, resolve_intents, store_call};

/// Runs copy jobs. Cheap to clone; one engine can run one job at a time per `run` call.
pub struct Engine<C: SourceConnector + 'static> {
    shared: Arc<Shared<C>>,
}

impl<C: SourceConnector + 'static> std::fmt::Debug for Engine<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("job", &self.shared.config.job_id)
            .finish_non_exhaustive()
    }
}

struct Shared<C> {
    source: C,
    destination: Endpoint,
    store: Store,
    config: CopyConfig,
    observer: Observer,
    job: JobKey,
    items_done: AtomicU64,
    bytes_done: AtomicU64,
    excluded: Mutex<Vec<ExcludedItem>>,
    failed: Mutex<Vec<FailedItem>>,
    /// Set to stop the run after the batches in flight (pause, cancel, shutdown).
    stop: Arc<AtomicBool>,
    /// Set when the destination mailbox is full: workers take no new batch.
    stop_after_full: AtomicBool,
    /// `user@host:port` of the destination: the key of its daily upload allowance.
    upload_account: String,
}

/// One folder's work in a pass.
struct FolderWork {
    plan: FolderPlan,
    key: FolderKey,
    source_uid_validity: u32,
    /// Source state at listing time: becomes the checkpoint when every batch succeeded.
    checkpoint: FolderState,
    /// Batches not yet finished; the folder is complete when it reaches zero with no failure.
    pending: AtomicU64,
    incomplete: std::sync::atomic::AtomicBool,
    report: Mutex<FolderReport>,
}

/// A lower bound of the UIDs the destination gives the next messages appended to a folder.
#[derive(Debug, Clone, Copy)]
struct UidBound {
    uid_validity: u32,
    uid_next: u32,
}

/// A batch of messages of one folder.
struct Batch {
    folder: usize,
    messages: Vec<MessageMeta>,
    /// Messages stored in another folder too (same content key): run after every upload
    /// batch, placed with `UID COPY` on the destination from where the upload put them.
    deferred: bool,
}

impl<C: SourceConnector + 'static> Engine<C> {
    /// An engine for one job.
    pub fn new(
        source: C,
        destination: Endpoint,
        store: Store,
        config: CopyConfig,
        observer: Observer,
    ) -> Self {
        let job = store.job_key(&config.job_id);
        let upload_account = format!("{}@{}", destination.user, destination.server());
        Self {
            shared: Arc::new(Shared {
                source,
                destination,
                store,
                config,
                observer,
                job,
                items_done: AtomicU64::new(0),
                bytes_done: AtomicU64::new(0),
                excluded: Mutex::new(Vec::new()),
                failed: Mutex::new(Vec::new()),
                stop: Arc::new(AtomicBool::new(false)),
                stop_after_full: AtomicBool::new(false),
                upload_account,
            }),
        }
    }

    /// A flag that stops the run when set: workers finish their batch (so the ledger records
    /// it) and take no new one; the run then ends with [`EngineError::Stopped`].
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.shared.stop.clone()
    }

    /// Sleeps for a backoff, waking early (with [`EngineError::Stopped`]) when asked to stop.
    async fn backoff(&self, delay: std::time::Duration) -> Result<(), EngineError> {
        crate::retry::backoff(&self.shared.stop, delay).await
    }

    fn stopping(&self) -> Result<(), EngineError> {
        crate::retry::stopping(&self.shared.stop)
    }

    /// Runs the job once: a first run copies everything, a later run (delta) copies what is new
    /// and carries flag changes.
    ///
    /// # Errors
    ///
    /// [`EngineError`] when the job cannot go on: refused login, store failure, or temporary
    /// errors through every pass. Refused messages do not end the run; they are in the summary.
    pub async fn run(&self) -> Result<Summary, EngineError> {
        let sh = &self.shared;
        let started = Instant::now();
        sh.stop_after_full.store(false, Ordering::Relaxed);
        sh.items_done.store(0, Ordering::Relaxed);
        sh.bytes_done.store(0, Ordering::Relaxed);
        crate::retry::with_retries(&sh.config, &sh.observer, &sh.stop, || self.attempt(started))
            .await
    }

    async fn attempt(&self, started: Instant) -> Result<Summary, EngineError> {
        let sh = &self.shared;
        if let Ok(mut v) = sh.excluded.lock() {
            v.clear();
        }
        if let Ok(mut v) = sh.failed.lock() {
            v.clear();
        }
        let emit = |e| (sh.observer)(e);

        emit(Event::Phase(Phase::Connecting));
        let observer = sh.observer.clone();
        emit(Event::Connection(Side::Source, Connection::Connecting));
        let src = self
            .connect_source(Some(Box::new(move || {
                observer(Event::Phase(Phase::Authenticating));
                observer(Event::Connection(Side::Source, Connection::Authenticating));
            })))
            .await;
        let mut src = match src {
            Ok(s) => s,
            Err(e) => {
                emit(Event::Connection(
                    Side::Source,
                    Connection::Failed(e.to_string()),
                ));
                return Err(e);
            }
        };
        emit(Event::Connection(Side::Source, Connection::Authenticated));
        emit(Event::Connection(Side::Destination, Connection::Connecting));
        let observer = sh.observer.clone();
        let dst = self
            .connect_destination(Some(Box::new(move || {
                observer(Event::Connection(
                    Side::Destination,
                    Connection::Authenticating,
                ));
            })))
            .await;
        let mut dst = match dst {
            Ok(d) => d,
            Err(e) => {
                emit(Event::Connection(
                    Side::Destination,
                    Connection::Failed(e.to_string()),
                ));
                return Err(e);
            }
        };
        emit(Event::Connection(
            Side::Destination,
            Connection::Authenticated,
        ));

        emit(Event::Phase(Phase::ScanningFolders));
        let source_folders = src.list_folders().await?;
        let source_ns = src.namespace();
        let dest_entries = dst.list().await?;
        let (prefix, delimiter) = dst.namespace();
        let dest_ns = Namespace {
            prefix: prefix.to_owned(),
            delimiter,
        };
        let dest_folders: Vec<FolderInfo> = dest_entries
            .iter()
            .map(|e| FolderInfo {
                name: e.name.clone(),
                delimiter: e.delimiter,
                no_select: e.no_select,
                special_use: e
                    .special_use
                    .as_deref()
                    .and_then(SpecialUse::from_attribute),
                subscribed: e.subscribed,
            })
            .collect();
        let mapping = map_folders(
            &source_folders,
            &source_ns,
            &dest_folders,
            &dest_ns,
            &sh.config.rules,
        );
        for (name, reason) in &mapping.skipped {
            tracing::info!(job = %sh.config.job_id, folder = %name, reason = %reason, "Folder skipped.");
        }

        emit(Event::Phase(Phase::CreatingFolders));
        let existing: HashSet<&str> = dest_entries
            .iter()
            .filter(|e| !e.no_select)
            .map(|e| e.name.as_str())
            .collect();
        let subscribed: HashSet<&str> = dest_entries
            .iter()
            .filter(|e| e.subscribed)
            .map(|e| e.name.as_str())
            .collect();
        let mut folder_errors: HashMap<String, String> = HashMap::new();
        for plan in &mapping.folders {
            if !plan.destination.eq_ignore_ascii_case("INBOX")
                && !existing.contains(plan.destination.as_str())
            {
                let usage = plan.create_with_use.map(SpecialUse::attribute);
                if let Err(e) = dst.create(&plan.destination, usage).await {
                    if e.is_temporary() {
                        return Err(e.into());
                    }
                    tracing::error!(job = %sh.config.job_id, folder = %plan.destination, error = %e, "Folder could not be created.");
                    folder_errors.insert(plan.source.clone(), e.to_string());
                    continue;
                }
                tracing::info!(job = %sh.config.job_id, folder = %plan.destination, "Folder created.");
            }
            if sh.config.subscriptions
                && plan.subscribed
                && !subscribed.contains(plan.destination.as_str())
            {
                dst.subscribe(&plan.destination).await?;
            }
        }

        let mut summary = Summary {
            folders: mapping.folders.len() as u64,
            skipped_folders: mapping.skipped.clone(),
            ..Summary::default()
        };
        let mut reports: HashMap<String, FolderReport> = HashMap::new();
        let mut last_error = String::new();
        let mut backoff = sh.config.initial_backoff;
        let mut pass = 0;
        // Passes that only met servers asking to slow down: they do not count against the
        // limit, so a long throttle makes the job wait, not fail.
        let mut throttled_passes = 0;
        loop {
            pass += 1;
            if pass > 1 {
                emit(Event::Phase(Phase::ScanningFolders));
                src = self.connect_source(None).await?;
                dst = self.connect_destination(None).await?;
            }
            let mut work = Vec::new();
            let mut queue = VecDeque::new();
            let mut deferred_queue = VecDeque::new();
            // Content keys some folder of this pass uploads: other folders copy them after.
            let mut uploading: HashSet<String> = HashSet::new();
            let (mut total_items, mut total_bytes) = (0u64, 0u64);
            for plan in &mapping.folders {
                if plan.container_only || folder_errors.contains_key(&plan.source) {
                    continue;
                }
                self.stopping()?;
                let prepared = self
                    .prepare_folder(&mut src, &mut dst, plan, pass == 1)
                    .await?;
                let (folder_work, messages) = prepared;
                let index = work.len();
                total_items += messages.len() as u64;
                total_bytes += messages.iter().map(|m| u64::from(m.size)).sum::<u64>();
                let (upload, later) = self
                    .split_placed(folder_work.key, messages, &mut uploading)
                    .await?;
                let mut pending = 0;
                for (list, deferred, q) in [
                    (upload, false, &mut queue),
                    (later, true, &mut deferred_queue),
                ] {
                    // The listing is moved into its batches, not copied: a folder of 100,000
                    // messages is held once.
                    let sizes: Vec<usize> =
                        batches(&list, sh.config.batch_messages, sh.config.batch_bytes)
                            .iter()
                            .map(|b| b.len())
                            .collect();
                    let mut list = list.into_iter();
                    for n in sizes {
                        pending += 1;
                        q.push_back(Batch {
                            folder: index,
                            messages: list.by_ref().take(n).collect(),
                            deferred,
                        });
                    }
                }
                folder_work.pending.store(pending, Ordering::Relaxed);
                work.push(folder_work);
            }
            emit(Event::Totals {
                items: total_items,
                bytes: total_bytes,
                folders: mapping.folders.len() as u64,
            });

            let work = Arc::new(work);
            // Folders with nothing to copy are complete now.
            for w in work.iter() {
                if w.pending.load(Ordering::Relaxed) == 0 {
                    self.finish_folder(w).await?;
                }
            }
            let mut temporary = if queue.is_empty() && deferred_queue.is_empty() {
                Vec::new()
            } else {
                emit(Event::Phase(Phase::Copying));
                self.copy_batches(work.clone(), queue).await?
            };
            if !deferred_queue.is_empty() {
                self.stopping()?;
                temporary.extend(self.copy_batches(work.clone(), deferred_queue).await?);
            }
            self.stopping()?;
            for w in work.iter() {
                let mut report = w.report.lock().map(|r| r.clone()).unwrap_or_default();
                let entry = reports.entry(w.plan.source.clone()).or_default();
                if pass > 1 {
                    // Later passes only add what they copied.
                    report.already_copied = entry.already_copied;
                    report.excluded = entry.excluded;
                    report.copied += entry.copied;
                    report.failed += entry.failed;
                    report.flags_updated += entry.flags_updated;
                }
                *entry = report;
            }
            if temporary.is_empty() {
                break;
            }
            last_error = temporary.last().cloned().unwrap_or_default();
            if temporary.iter().all(|e| server_backoff(e).is_some()) {
                throttled_passes += 1;
            }
            if pass - throttled_passes >= sh.config.max_passes {
                return Err(EngineError::GaveUp {
                    passes: pass,
                    last: last_error,
                });
            }
            emit(Event::Retrying {
                error: last_error.clone(),
                delay: backoff,
            });
            tracing::warn!(job = %sh.config.job_id, pass, error = %last_error, "Temporary errors; another pass follows.");
            self.backoff(backoff).await?;
            backoff = (backoff * 2).min(sh.config.max_backoff);
        }
        let _ = last_error;

        emit(Event::Phase(Phase::Finalizing));
        for plan in &mapping.folders {
            let mut report = reports
                .remove(&plan.source)
                .unwrap_or_else(|| FolderReport {
                    source: plan.source.clone(),
                    destination: plan.destination.clone(),
                    ..FolderReport::default()
                });
            if let Some(e) = folder_errors.get(&plan.source) {
                report.error = Some(e.clone());
            }
            summary.already_copied += report.already_copied;
            summary.flags_updated += report.flags_updated;
            summary.per_folder.push(report);
        }
        summary.copied = sh.items_done.load(Ordering::Relaxed);
        summary.bytes = sh.bytes_done.load(Ordering::Relaxed);
        summary.excluded = sh.excluded.lock().map(|v| v.clone()).unwrap_or_default();
        summary.failed = sh.failed.lock().map(|v| v.clone()).unwrap_or_default();
        let changed = summary.copied
            + summary.flags_updated
            + summary.excluded.len() as u64
            + summary.failed.len() as u64;
        if changed > 0 || summary.per_folder.iter().any(|f| f.error.is_some()) {
            self.stopping()?;
            summary.verification = Some(
                self.verify(
                    &mut src,
                    &mut dst,
                    &mapping.folders,
                    &folder_errors,
                    &summary,
                )
                .await?,
            );
        }
        summary.duration = started.elapsed();
        drop(src);
        dst.logout().await;
        Ok(summary)
    }
}

/// What appending one message came to.
enum Appended {
    /// On the destination, with its UID when the server has UIDPLUS.
    Stored(Option<u32>),
    /// Refused for good, in the server's words.
    Refused(String),
    /// Not sent (a temporary error came first).
    NotSent,
}

impl<C: SourceConnector + 'static> Engine<C> {
    /// Connects to the source with retries; `on_login` (first connection of a run) reports the
    /// Authenticating phase.
    async fn connect_source(
        &self,
        on_login: Option<Box<dyn Fn() + Send + Sync>>,
    ) -> Result<C::Session, EngineError> {
        let sh = &self.shared;
        let mut delay = sh.config.initial_backoff;
        let mut attempt = 1;
        let on_login = on_login.map(Arc::new);
        loop {
            let connected = match &on_login {
                Some(f) => {
                    let f = f.clone();
                    sh.source.connect_observed(Box::new(move || f())).await
                }
                None => sh.source.connect().await,
            };
            match connected {
                Ok(s) => return Ok(s),
                Err(e) if e.kind == ErrorKind::Temporary && attempt < sh.config.max_passes => {
                    (sh.observer)(Event::Retrying {
                        error: e.to_string(),
                        delay,
                    });
                    self.backoff(delay).await?;
                    delay = (delay * 2).min(sh.config.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Connects to the destination with retries; `on_login` reports when login begins.
    async fn connect_destination(
        &self,
        on_login: Option<Box<dyn Fn() + Send + Sync>>,
    ) -> Result<ImapSession, EngineError> {
        let sh = &self.shared;
        let mut delay = sh.config.initial_backoff;
        let mut attempt = 1;
        loop {
            let connected = match &on_login {
                Some(f) => ImapSession::connect_observed(&sh.destination, f).await,
                None => ImapSession::connect(&sh.destination).await,
            };
            match connected {
                Ok(s) => return Ok(s),
                Err(e) if e.is_temporary() && attempt < sh.config.max_passes => {
                    (sh.observer)(Event::Retrying {
                        error: format!("destination: {e}"),
                        delay,
                    });
                    self.backoff(delay).await?;
                    delay = (delay * 2).min(sh.config.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Scans one folder: UIDVALIDITY checks, interrupted APPENDs, listing, plan, flag updates.
    /// Returns the folder's work and the messages to copy.
    async fn prepare_folder(
        &self,
        src: &mut C::Session,
        dst: &mut ImapSession,
        plan: &FolderPlan,
        first_pass: bool,
    ) -> Result<(FolderWork, Vec<MessageMeta>), EngineError> {
        let sh = &self.shared;
        let store = &sh.store;
        let key = store.folder_key(sh.job, &plan.source);
        let status = src.open_folder(&plan.source).await?;
        let dest_status = dst.status(&plan.destination).await?;
        let (s2, job) = (store.clone(), sh.job);
        let previous = store_call(move || s2.folder_state(job, key)).await?;
        let s2 = store.clone();
        let mut items = store_call(move || s2.items(key)).await?;

        let mut checkpoint_valid = previous.is_some();
        if let Some(prev) = &previous {
            if prev.source_uid_validity != status.uid_validity {
                checkpoint_valid = false;
                if !items.is_empty() {
                    rekey_source(src, store, key, &mut items).await?;
                }
            }
            if prev.destination_uid_validity != dest_status.uid_validity {
                checkpoint_valid = false;
                if !items.is_empty() {
                    rekey_destination(dst, &plan.destination, store, key, &mut items).await?;
                }
            }
        }
        let mut state = FolderState {
            source: plan.source.clone(),
            destination: plan.destination.clone(),
            source_uid_validity: status.uid_validity,
            destination_uid_validity: dest_status.uid_validity,
            source_uid_next: 0,
            highest_modseq: None,
            sync_token: None,
        };
        if checkpoint_valid && let Some(prev) = &previous {
            state.source_uid_next = prev.source_uid_next;
            state.highest_modseq = prev.highest_modseq;
        }
        if previous.as_ref() != Some(&state) {
            let (s2, st) = (store.clone(), state.clone());
            store_call(move || s2.put_folder_state(job, key, &st)).await?;
        }

        let s2 = store.clone();
        let intents = store_call(move || s2.intents(key)).await?;
        let had_intents = !intents.is_empty();
        if had_intents {
            resolve_intents(dst, &plan.destination, store, key, intents, &mut items).await?;
        }

        let checkpoint = FolderState {
            source_uid_next: status.uid_next,
            highest_modseq: status.highest_modseq,
            ..state.clone()
        };
        let mut report = FolderReport {
            source: plan.source.clone(),
            destination: plan.destination.clone(),
            messages: u64::from(status.messages),
            already_copied: items.len() as u64,
            ..FolderReport::default()
        };
        let work = |report| FolderWork {
            plan: plan.clone(),
            key,
            source_uid_validity: status.uid_validity,
            checkpoint: checkpoint.clone(),
            pending: AtomicU64::new(0),
            incomplete: std::sync::atomic::AtomicBool::new(false),
            report: Mutex::new(report),
        };

        // Nothing changed since the last complete pass: UIDNEXT and HIGHESTMODSEQ say so.
        let unchanged = !had_intents
            && state.source_uid_next != 0
            && state.source_uid_next == status.uid_next
            && state.highest_modseq.is_some()
            && state.highest_modseq == status.highest_modseq;
        if unchanged {
            report.bytes = 0;
            return Ok((work(report), Vec::new()));
        }
        // With CONDSTORE, only what changed since the last complete pass (new messages have a
        // higher MODSEQ too); otherwise everything, and flags are compared one by one.
        let changed_since = if had_intents || state.source_uid_next == 0 {
            None
        } else {
            state.highest_modseq
        };
        let listing = src.list_messages(1, changed_since).await?;
        if changed_since.is_none() {
            report.bytes = listing.iter().map(|m| u64::from(m.size)).sum();
        }
        let ledger: HashMap<u32, LedgerEntry> = items
            .iter()
            .map(|(uid, r)| {
                (
                    *uid,
                    LedgerEntry {
                        dest_uid: r.dest_uid,
                        flags_fingerprint: r.flags_fingerprint,
                    },
                )
            })
            .collect();
        let options = PlanOptions {
            max_message_size: sh.config.max_message_size,
            sync_flags: sh.config.sync_flags,
        };
        let steps = plan_folder(&listing, &ledger, &options);

        if first_pass {
            for m in &steps.excluded {
                let item = ExcludedItem {
                    folder: plan.source.clone(),
                    uid: m.uid,
                    size: u64::from(m.size),
                    message_id: m.message_id.clone(),
                    subject: m.subject.clone(),
                    reason: format!(
                        "larger than the limit of {} bytes",
                        sh.config.max_message_size
                    ),
                };
                tracing::warn!(job = %sh.config.job_id, folder = %item.folder, uid = item.uid, size = item.size, "Message excluded: too large.");
                (sh.observer)(Event::Excluded(item.clone()));
                if let Ok(mut v) = sh.excluded.lock() {
                    v.push(item);
                }
            }
            report.excluded = steps.excluded.len() as u64;
        }

        if !steps.flag_updates.is_empty() {
            let mut by_flags: HashMap<String, Vec<(u32, u32, u64)>> = HashMap::new();
            for (src_uid, dest_uid, flags) in &steps.flag_updates {
                if *dest_uid != 0 {
                    by_flags.entry(flags.to_imap_list()).or_default().push((
                        *src_uid,
                        *dest_uid,
                        flags.fingerprint(),
                    ));
                }
            }
            dst.open(&plan.destination, false).await?;
            let mut updated = Vec::new();
            for (flags, group) in &by_flags {
                let uids: Vec<u32> = group.iter().map(|g| g.1).collect();
                dst.store_flags(&uids, flags).await?;
                for (src_uid, dest_uid, fp) in group {
                    if let Some(rec) = items.get(src_uid) {
                        updated.push((
                            *src_uid,
                            ItemRecord {
                                dest_uid: *dest_uid,
                                flags_fingerprint: *fp,
                                ..*rec
                            },
                        ));
                    }
                }
            }
            report.flags_updated = updated.len() as u64;
            let s2 = store.clone();
            store_call(move || s2.commit(key, None, &updated)).await?;
            tracing::info!(job = %sh.config.job_id, folder = %plan.source, count = report.flags_updated, "Flag changes carried.");
        }
        Ok((work(report), steps.copy))
    }

    /// Writes the folder's checkpoint after a pass that left nothing undone.
    async fn finish_folder(&self, w: &FolderWork) -> Result<(), EngineError> {
        let sh = &self.shared;
        let report = w.report.lock().map(|r| r.clone()).unwrap_or_default();
        let mut state = w.checkpoint.clone();
        if w.incomplete.load(Ordering::Relaxed) || report.failed > 0 {
            // Failed messages must be listed again by the next run: no shortcut checkpoint.
            state.source_uid_next = 0;
            state.highest_modseq = None;
        }
        let (s2, job, key) = (sh.store.clone(), sh.job, w.key);
        store_call(move || s2.put_folder_state(job, key, &state)).await?;
        tracing::info!(job = %sh.config.job_id, folder = %report.source, copied = report.copied, failed = report.failed, "Folder done.");
        (sh.observer)(Event::FolderDone(report));
        Ok(())
    }

    /// Runs the batches over `connections` workers. Returns the temporary errors met (their
    /// batches are left for the next pass); a store error ends the run.
    async fn copy_batches(
        &self,
        work: Arc<Vec<FolderWork>>,
        queue: VecDeque<Batch>,
    ) -> Result<Vec<String>, EngineError> {
        let sh = &self.shared;
        let queue = Arc::new(Mutex::new(queue));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..sh.config.connections.max(1) {
            let engine = Self {
                shared: self.shared.clone(),
            };
            let (work, queue, errors) = (work.clone(), queue.clone(), errors.clone());
            tasks.spawn(async move { engine.worker(worker, work, queue, errors).await });
        }
        let mut fatal = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => fatal = fatal.or(Some(e)),
                Err(e) => {
                    fatal = fatal.or(Some(EngineError::GaveUp {
                        passes: 0,
                        last: format!("worker failed: {e}"),
                    }))
                }
            }
        }
        if let Some(e) = fatal {
            return Err(e);
        }
        let errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
        Ok(errors)
    }

    async fn worker(
        &self,
        id: usize,
        work: Arc<Vec<FolderWork>>,
        queue: Arc<Mutex<VecDeque<Batch>>>,
        errors: Arc<Mutex<Vec<String>>>,
    ) -> Result<(), EngineError> {
        let sh = &self.shared;
        let mut src: Option<C::Session> = None;
        let mut dst: Option<ImapSession> = None;
        let mut open: Option<usize> = None;
        let mut bounds: HashMap<usize, UidBound> = HashMap::new();
        let mut consecutive_failures = 0u32;
        loop {
            if sh.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if sh.stop_after_full.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some(batch) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                return Ok(());
            };
            let w = &work[batch.folder];
            let result = self
                .copy_batch(&mut src, &mut dst, &mut open, &mut bounds, w, &batch)
                .await;
            match result {
                Ok(()) => consecutive_failures = 0,
                Err(EngineError::Store(e)) => return Err(EngineError::Store(e)),
                // A full mailbox takes nothing more: the run stops; other workers stop at
                // their next batch.
                Err(e @ EngineError::MailboxFull(_)) => {
                    sh.stop_after_full.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                Err(e) => {
                    w.incomplete.store(true, Ordering::Relaxed);
                    let message = e.to_string();
                    if e.kind() == ErrorKind::Permanent {
                        tracing::error!(job = %sh.config.job_id, folder = %w.plan.source, error = %message, "Batch failed.");
                        if let Ok(mut r) = w.report.lock() {
                            r.error = Some(message.clone());
                        }
                    } else {
                        tracing::warn!(job = %sh.config.job_id, worker = id, folder = %w.plan.source, error = %message, "Temporary error; the batch is left for the next pass.");
                    }
                    if let Ok(mut v) = errors.lock() {
                        v.push(message.clone());
                    }
                    // Sessions may be broken: reconnect for the next batch, after a pause that
                    // grows while failures repeat, or as long as the server asked.
                    src = None;
                    dst = None;
                    open = None;
                    consecutive_failures += 1;
                    if let Some(hint) = server_backoff(&message) {
                        // The server's own figure is obeyed (Gmail's daily limits last hours),
                        // up to a day; without one, the pause grows to five minutes.
                        let delay = match hint {
                            Some(d) => d.min(std::time::Duration::from_secs(86_400)),
                            None => (sh.config.initial_backoff
                                * 2u32.saturating_pow(consecutive_failures.min(6) - 1))
                            .min(
                                sh.config
                                    .max_backoff
                                    .max(std::time::Duration::from_secs(300)),
                            ),
                        };
                        (sh.observer)(Event::Throttled {
                            delay,
                            reason: message.clone(),
                        });
                        if self.backoff(delay).await.is_err() {
                            return Ok(());
                        }
                        if w.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                            self.finish_folder(w).await?;
                        }
                        continue;
                    }
                    let delay = sh.config.initial_backoff
                        * 2u32.saturating_pow(consecutive_failures.min(6) - 1);
                    if self
                        .backoff(delay.min(sh.config.max_backoff))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
            if w.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.finish_folder(w).await?;
            }
        }
    }

    async fn copy_batch(
        &self,
        src: &mut Option<C::Session>,
        dst: &mut Option<ImapSession>,
        open: &mut Option<usize>,
        bounds: &mut HashMap<usize, UidBound>,
        w: &FolderWork,
        batch: &Batch,
    ) -> Result<(), EngineError> {
        let sh = &self.shared;
        let mut messages: Vec<&MessageMeta> = batch.messages.iter().collect();
        if batch.deferred {
            messages = self.copy_placed(dst, w, messages).await?;
            if messages.is_empty() {
                return Ok(());
            }
        }
        if src.is_none() {
            *src = Some(sh.source.connect().await?);
            *open = None;
        }
        let Some(s) = src.as_mut() else {
            unreachable!("connected above")
        };
        if *open != Some(batch.folder) {
            let status = s.open_folder(&w.plan.source).await?;
            if status.uid_validity != w.source_uid_validity {
                return Err(EngineError::Source(migrated_core::SourceError::temporary(
                    format!(
                        "UIDVALIDITY of {:?} changed during the run; the folder is planned again",
                        w.plan.source
                    ),
                )));
            }
            *open = Some(batch.folder);
        }
        // The bodies of this batch count against the memory budget until they are appended.
        let held: u64 = messages.iter().map(|m| u64::from(m.size)).sum();
        let _held = sh.config.memory.take(held).await;
        // Large messages are read in parts into one buffer, the others in one FETCH.
        let part = sh.config.part_bytes.max(64 * 1024);
        let whole: Vec<u32> = messages
            .iter()
            .filter(|m| m.size <= part)
            .map(|m| m.uid)
            .collect();
        let mut fetched = s.fetch_bodies(&whole).await?.into_iter();
        let mut bodies = Vec::with_capacity(messages.len());
        for m in &messages {
            bodies.push(if m.size <= part {
                fetched.next().flatten()
            } else {
                fetch_in_parts(s, m.uid, m.size, part).await?
            });
        }
        let present: Vec<(&MessageMeta, Vec<u8>, [u8; 32])> = messages
            .into_iter()
            .zip(bodies)
            .filter_map(|(m, b)| {
                b.map(|b| {
                    let h = *blake3::hash(&b).as_bytes();
                    (m, b, h)
                })
            })
            .collect();
        if present.is_empty() {
            return Ok(());
        }

        if dst.is_none() {
            *dst = Some(ImapSession::connect(&sh.destination).await?);
            bounds.clear();
        }
        let Some(d) = dst.as_mut() else {
            unreachable!("connected above")
        };
        // A daily allowance on the destination account (Gmail: 500 MB): checked before
        // anything is announced or sent.
        let account = &sh.upload_account;
        let daily = sh.config.daily_upload.or_else(|| {
            d.has("X-GM-EXT-1")
                .then_some(crate::throttle::GMAIL_DAILY_UPLOAD)
        });
        if let Some(limit) = daily {
            crate::throttle::daily_upload_allowance(account, limit)
                .map_err(EngineError::Throttled)?;
        }
        // Where this batch's UIDs will start, at the latest: STATUS once per folder and
        // connection, then the UID after the last one APPENDUID named. Any lower bound serves
        // the intent; a STATUS per batch made a maildir server rescan a large folder's
        // directory for every batch while other connections appended to it.
        let bound = match bounds.get(&batch.folder) {
            Some(b) => *b,
            None => {
                let st = d.status(&w.plan.destination).await?;
                UidBound {
                    uid_validity: st.uid_validity,
                    uid_next: st.uid_next,
                }
            }
        };
        let intent = Intent {
            dest_uid_validity: bound.uid_validity,
            dest_uid_next: bound.uid_next,
            items: present
                .iter()
                .map(|(m, _, h)| (m.uid, m.flags.fingerprint(), *h))
                .collect(),
        };
        let (s2, key) = (sh.store.clone(), w.key);
        let seq = store_call(move || s2.begin_intent(key, &intent)).await?;

        let batch_bytes: u64 = present.iter().map(|(_, b, _)| b.len() as u64).sum();
        for limit in &sh.config.bandwidth {
            limit.take(batch_bytes).await;
        }

        let (outcomes, temporary) = append_all(d, &w.plan.destination, &present).await;
        // Without UIDPLUS or after an error: STATUS again next time.
        let unnamed = outcomes.iter().any(|o| matches!(o, Appended::Stored(None)));
        if temporary.is_some() || unnamed {
            bounds.remove(&batch.folder);
        } else {
            let last = outcomes
                .iter()
                .filter_map(|o| match o {
                    Appended::Stored(Some(uid)) => Some(*uid),
                    _ => None,
                })
                .max();
            let uid_next = last.map_or(bound.uid_next, |u| u.saturating_add(1).max(bound.uid_next));
            bounds.insert(batch.folder, UidBound { uid_next, ..bound });
        }
        if daily.is_some() {
            let sent: u64 = present
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, Appended::Stored(_)))
                .map(|((_, b, _), _)| b.len() as u64)
                .sum();
            crate::throttle::count_upload(account, sent);
        }
        let mut records = Vec::new();
        let mut placements = Vec::new();
        let (mut copied, mut bytes, mut failed) = (0u64, 0u64, 0u64);
        for ((m, _, h), outcome) in present.iter().zip(&outcomes) {
            match outcome {
                Appended::Stored(uid) => {
                    if let (Some(k), Some(_)) = (&m.content_key, uid) {
                        placements.push((k.clone(), m.uid));
                    }
                    records.push((
                        m.uid,
                        ItemRecord {
                            dest_uid: uid.unwrap_or(0),
                            flags_fingerprint: m.flags.fingerprint(),
                            hash: *h,
                        },
                    ));
                    copied += 1;
                    bytes += u64::from(m.size);
                }
                Appended::Refused(reason) => {
                    failed += 1;
                    let item = FailedItem {
                        folder: w.plan.source.clone(),
                        uid: m.uid,
                        size: u64::from(m.size),
                        message_id: m.message_id.clone(),
                        subject: m.subject.clone(),
                        reason: reason.clone(),
                    };
                    tracing::warn!(job = %sh.config.job_id, folder = %item.folder, uid = item.uid, reason = %item.reason, "Message refused by the destination.");
                    (sh.observer)(Event::Failed(item.clone()));
                    if let Ok(mut v) = sh.failed.lock() {
                        v.push(item);
                    }
                }
                Appended::NotSent => {}
            }
        }
        // With a temporary error the intent stays: the next pass finds on the destination what
        // arrived before the connection broke.
        let done_intent = if temporary.is_none() { Some(seq) } else { None };
        let (s2, job) = (sh.store.clone(), sh.job);
        store_call(move || s2.commit_placed(key, done_intent, &records, Some((job, &placements))))
            .await?;
        if let Ok(mut r) = w.report.lock() {
            r.copied += copied;
            r.failed += failed;
        }
        let items_done = sh.items_done.fetch_add(copied, Ordering::Relaxed) + copied;
        let bytes_done = sh.bytes_done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        (sh.observer)(Event::Progress {
            folder: w.plan.source.clone(),
            items_done,
            bytes_done,
        });
        match temporary {
            Some(e) if e.is_over_quota() => Err(EngineError::MailboxFull(e)),
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

impl<C: SourceConnector + 'static> Engine<C> {
    /// Compares both sides folder by folder (counts and bytes from fresh listings) and names
    /// every source message that is not on the destination, with what the ledger knows of it.
    async fn verify(
        &self,
        src: &mut C::Session,
        dst: &mut ImapSession,
        plans: &[FolderPlan],
        folder_errors: &HashMap<String, String>,
        summary: &Summary,
    ) -> Result<Vec<VerifyRow>, EngineError> {
        let sh = &self.shared;
        let mut rows = Vec::new();
        for plan in plans {
            if plan.container_only || folder_errors.contains_key(&plan.source) {
                continue;
            }
            src.open_folder(&plan.source).await?;
            let source = src.list_messages(1, None).await?;
            dst.open(&plan.destination, true).await?;
            let destination = dst.fetch_meta(1, None).await?;
            let present: HashSet<u32> = destination.iter().map(|m| m.uid).collect();
            let key = sh.store.folder_key(sh.job, &plan.source);
            let s2 = sh.store.clone();
            let items = store_call(move || s2.items(key)).await?;
            let mut row = VerifyRow {
                source: plan.source.clone(),
                destination: plan.destination.clone(),
                source_messages: source.len() as u64,
                source_bytes: source.iter().map(|m| u64::from(m.size)).sum(),
                destination_messages: destination.len() as u64,
                destination_bytes: destination.iter().map(|m| u64::from(m.size)).sum(),
                missing: Vec::new(),
            };
            for m in &source {
                let reason = match items.get(&m.uid) {
                    // Without UIDPLUS the copy's UID is unknown: the counts speak for it.
                    Some(r) if r.dest_uid == 0 || present.contains(&r.dest_uid) => continue,
                    Some(r) => format!(
                        "copied as UID {}, but no longer on the destination (deleted there?); \
                         run `migratectl reset` and a delta to copy it again",
                        r.dest_uid
                    ),
                    None => {
                        let said = |items: &[FailedItem]| {
                            items
                                .iter()
                                .find(|f| f.folder == plan.source && f.uid == m.uid)
                                .map(|f| f.reason.clone())
                        };
                        if let Some(why) = said(&summary.failed) {
                            format!("refused by the destination: {why}")
                        } else if summary
                            .excluded
                            .iter()
                            .any(|x| x.folder == plan.source && x.uid == m.uid)
                            || u64::from(m.size) > sh.config.max_message_size
                        {
                            format!(
                                "excluded: larger than the limit of {} bytes",
                                sh.config.max_message_size
                            )
                        } else {
                            "not copied yet (arrived during the run?): the next delta copies it"
                                .to_owned()
                        }
                    }
                };
                row.missing.push(MissingItem {
                    uid: m.uid,
                    size: u64::from(m.size),
                    message_id: m.message_id.clone(),
                    subject: m.subject.clone(),
                    reason,
                });
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Splits a folder's messages into those it uploads and those stored by another folder
    /// (same content key, as Gmail shows one message under each of its labels): the latter
    /// are copied on the destination after the uploads.
    async fn split_placed(
        &self,
        folder: FolderKey,
        messages: Vec<MessageMeta>,
        uploading: &mut HashSet<String>,
    ) -> Result<(Vec<MessageMeta>, Vec<MessageMeta>), EngineError> {
        if messages.iter().all(|m| m.content_key.is_none()) {
            return Ok((messages, Vec::new()));
        }
        let (store, job) = (self.shared.store.clone(), self.shared.job);
        let keys: Vec<Option<String>> = messages.iter().map(|m| m.content_key.clone()).collect();
        let placed: Vec<bool> = store_call(move || {
            keys.iter()
                .map(|k| match k {
                    Some(k) => Ok(store.placement(job, k)?.is_some_and(|(f, _)| f != folder)),
                    None => Ok(false),
                })
                .collect::<Result<Vec<bool>, migrated_store::StoreError>>()
        })
        .await?;
        let (mut upload, mut later) = (Vec::new(), Vec::new());
        for (m, placed) in messages.into_iter().zip(placed) {
            match &m.content_key {
                Some(k) if placed || !uploading.insert(k.clone()) => later.push(m),
                _ => upload.push(m),
            }
        }
        Ok((upload, later))
    }

    /// Places messages already stored in another destination folder into this one with
    /// `UID COPY` (nothing is uploaded again), under an intent like an APPEND. Returns the
    /// messages that must be uploaded after all (no usable earlier copy).
    async fn copy_placed<'m>(
        &self,
        dst: &mut Option<ImapSession>,
        w: &FolderWork,
        messages: Vec<&'m MessageMeta>,
    ) -> Result<Vec<&'m MessageMeta>, EngineError> {
        let sh = &self.shared;
        let (store, job) = (sh.store.clone(), sh.job);
        let keys: Vec<Option<String>> = messages.iter().map(|m| m.content_key.clone()).collect();
        let own = w.key;
        // For each message: the destination folder, its UIDVALIDITY, and the ledger entry of
        // the earlier copy.
        let found = store_call(move || {
            let mut out = Vec::new();
            for k in &keys {
                let mut hit = None;
                if let Some(k) = k
                    && let Some((folder, uid)) = store.placement(job, k)?
                    && folder != own
                    && let Some(rec) = store.item(folder, uid)?
                    && rec.dest_uid != 0
                    && let Some(state) = store.folder_state(job, folder)?
                {
                    hit = Some((state.destination, state.destination_uid_validity, rec));
                }
                out.push(hit);
            }
            Ok::<_, migrated_store::StoreError>(out)
        })
        .await?;
        let mut upload = Vec::new();
        let mut groups: HashMap<(String, u32), Vec<(&MessageMeta, ItemRecord)>> = HashMap::new();
        for (m, hit) in messages.into_iter().zip(found) {
            match hit {
                Some((folder, validity, rec)) if folder != w.plan.destination => {
                    groups.entry((folder, validity)).or_default().push((m, rec));
                }
                _ => upload.push(m),
            }
        }
        if groups.is_empty() {
            return Ok(upload);
        }
        if dst.is_none() {
            *dst = Some(ImapSession::connect(&sh.destination).await?);
        }
        let Some(d) = dst.as_mut() else {
            unreachable!("connected above")
        };
        for ((from, validity), group) in groups {
            let opened = d.open(&from, true).await?;
            if opened.uid_validity != validity {
                // The earlier copies were renumbered: upload instead.
                upload.extend(group.iter().map(|(m, _)| *m));
                continue;
            }
            let target = d.status(&w.plan.destination).await?;
            let intent = Intent {
                dest_uid_validity: target.uid_validity,
                dest_uid_next: target.uid_next,
                items: group
                    .iter()
                    .map(|(m, rec)| (m.uid, rec.flags_fingerprint, rec.hash))
                    .collect(),
            };
            let (s2, key) = (sh.store.clone(), w.key);
            let seq = store_call(move || s2.begin_intent(key, &intent)).await?;
            let uids: Vec<u32> = group.iter().map(|(_, rec)| rec.dest_uid).collect();
            let pairs = d.copy(&uids, &w.plan.destination).await?;
            let new_uid: HashMap<u32, u32> = pairs.unwrap_or_default().into_iter().collect();
            let mut records = Vec::with_capacity(group.len());
            let mut restamp: HashMap<String, Vec<u32>> = HashMap::new();
            for (m, rec) in &group {
                let dest_uid = new_uid.get(&rec.dest_uid).copied().unwrap_or(0);
                records.push((
                    m.uid,
                    ItemRecord {
                        dest_uid,
                        flags_fingerprint: m.flags.fingerprint(),
                        hash: rec.hash,
                    },
                ));
                if dest_uid != 0 && m.flags.fingerprint() != rec.flags_fingerprint {
                    restamp
                        .entry(m.flags.to_imap_list())
                        .or_default()
                        .push(dest_uid);
                }
            }
            if !restamp.is_empty() {
                // The copy carries the first copy's flags; this folder's message says otherwise.
                d.open(&w.plan.destination, false).await?;
                for (flags, uids) in &restamp {
                    d.store_flags(uids, flags).await?;
                }
            }
            let s2 = sh.store.clone();
            store_call(move || s2.commit(key, Some(seq), &records)).await?;
            let (n, bytes) = (
                group.len() as u64,
                group.iter().map(|(m, _)| u64::from(m.size)).sum::<u64>(),
            );
            if let Ok(mut r) = w.report.lock() {
                r.copied += n;
            }
            let items_done = sh.items_done.fetch_add(n, Ordering::Relaxed) + n;
            let bytes_done = sh.bytes_done.fetch_add(bytes, Ordering::Relaxed) + bytes;
            (sh.observer)(Event::Progress {
                folder: w.plan.source.clone(),
                items_done,
                bytes_done,
            });
            tracing::debug!(job = %sh.config.job_id, from = %from, to = %w.plan.destination, count = n, "Copied on the destination.");
        }
        Ok(upload)
    }
}

/// Reads one message in parts of `part` bytes into a buffer of its announced size, so that it
/// exists once in memory rather than in a reply, its copy and its encoding. `None` if it
/// vanished.
async fn fetch_in_parts<S: SourceSession>(
    s: &mut S,
    uid: u32,
    size: u32,
    part: u32,
) -> Result<Option<Vec<u8>>, migrated_core::SourceError> {
    let mut body: Vec<u8> = Vec::with_capacity(size as usize);
    loop {
        let Some(chunk) = s.fetch_body_part(uid, body.len() as u64, part).await? else {
            return Ok(None);
        };
        if body.is_empty() && chunk.len() > part as usize {
            // A source without parts sent the whole message.
            return Ok(Some(chunk));
        }
        body.extend_from_slice(&chunk);
        if chunk.len() != part as usize {
            return Ok(Some(body));
        }
    }
}

/// Appends a batch: one MULTIAPPEND when the destination offers it, then one by one if the batch
/// was refused, to find the message the server will not take. Stops at the first temporary
/// error and returns it.
async fn append_all(
    d: &mut ImapSession,
    folder: &str,
    messages: &[(&MessageMeta, Vec<u8>, [u8; 32])],
) -> (Vec<Appended>, Option<ImapError>) {
    let flag_lists: Vec<String> = messages
        .iter()
        .map(|(m, _, _)| m.flags.to_imap_list())
        .collect();
    let items: Vec<AppendItem<'_>> = messages
        .iter()
        .zip(&flag_lists)
        .map(|((m, body, _), flags)| AppendItem {
            flags,
            internal_date: &m.internal_date,
            body,
        })
        .collect();
    if items.len() > 1 && d.has("MULTIAPPEND") {
        match d.append(folder, &items).await {
            Ok(Some(uids)) => {
                return (
                    uids.into_iter()
                        .map(|u| Appended::Stored(Some(u)))
                        .collect(),
                    None,
                );
            }
            Ok(None) => return (items.iter().map(|_| Appended::Stored(None)).collect(), None),
            // A full mailbox refuses everything that follows: the run stops there.
            Err(e) if e.is_temporary() || e.is_over_quota() => {
                return (items.iter().map(|_| Appended::NotSent).collect(), Some(e));
            }
            Err(e) => tracing::debug!(folder, error = %e, "Batch refused; appending one by one."),
        }
    }
    let mut outcomes = Vec::with_capacity(items.len());
    for item in &items {
        match d.append(folder, std::slice::from_ref(item)).await {
            Ok(uids) => outcomes.push(Appended::Stored(uids.and_then(|u| u.first().copied()))),
            Err(e) if e.is_temporary() || e.is_over_quota() => {
                while outcomes.len() < items.len() {
                    outcomes.push(Appended::NotSent);
                }
                return (outcomes, Some(e));
            }
            Err(e) => outcomes.push(Appended::Refused(e.to_string())),
        }
    }
    (outcomes, None)
}

/// Whether a server's reply asks to slow down, and for how long if it says: Office 365's
/// "Suggested Backoff Time: N milliseconds", `NO [THROTTLED]`, `[UNAVAILABLE]`, a BYE for
/// overload.
fn server_backoff(message: &str) -> Option<Option<std::time::Duration>> {
    let upper = message.to_ascii_uppercase();
    let throttled = [
        "THROTTLED",
        "SUGGESTED BACKOFF TIME",
        "[UNAVAILABLE]",
        "TOO MANY",
        "OVERLOAD",
        "TRY AGAIN LATER",
    ]
    .iter()
    .any(|w| upper.contains(w));
    if !throttled {
        return None;
    }
    let hint = upper.find("SUGGESTED BACKOFF TIME").and_then(|i| {
        let rest = upper[i..].split_once(':')?.1.trim_start();
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits.parse().ok()?;
        let unit = rest[digits.len()..].trim_start();
        Some(if unit.starts_with("MILLI") || unit.starts_with("MS") {
            std::time::Duration::from_millis(n)
        } else {
            std::time::Duration::from_secs(n)
        })
    });
    Some(hint)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use migrated_core::{FolderInfo, FolderStatus, MessageMeta, Namespace, SourceError};

    /// A source holding one message, recording the parts asked for; `parts: false` behaves as
    /// a source without parts (the trait's default).
    struct OneMessage {
        body: Vec<u8>,
        parts: bool,
        asked: Vec<(u64, u32)>,
    }

    impl migrated_core::SourceSession for OneMessage {
        fn namespace(&self) -> Namespace {
            Namespace::default()
        }
        async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, SourceError> {
            Ok(Vec::new())
        }
        async fn open_folder(&mut self, _: &str) -> Result<FolderStatus, SourceError> {
            Ok(FolderStatus::default())
        }
        async fn list_messages(
            &mut self,
            _: u32,
            _: Option<u64>,
        ) -> Result<Vec<MessageMeta>, SourceError> {
            Ok(Vec::new())
        }
        async fn fetch_bodies(
            &mut self,
            uids: &[u32],
        ) -> Result<Vec<Option<Vec<u8>>>, SourceError> {
            Ok(uids
                .iter()
                .map(|u| (*u == 7).then(|| self.body.clone()))
                .collect())
        }
        async fn fetch_body_part(
            &mut self,
            uid: u32,
            offset: u64,
            len: u32,
        ) -> Result<Option<Vec<u8>>, SourceError> {
            self.asked.push((offset, len));
            if !self.parts || uid != 7 {
                return migrated_core::source::whole_from(self, uid, offset).await;
            }
            let start = (offset as usize).min(self.body.len());
            let end = (start + len as usize).min(self.body.len());
            Ok(Some(self.body[start..end].to_vec()))
        }
    }

    #[tokio::test]
    async fn a_large_message_is_read_in_parts_into_one_buffer() {
        let body: Vec<u8> = (0..250_000u32).map(|i| (i % 251) as u8).collect();
        for (size, parts) in [(250_000, true), (200_000, true), (250_000, false)] {
            let mut s = OneMessage {
                body: body.clone(),
                parts,
                asked: Vec::new(),
            };
            // The announced size may be wrong: the parts decide where the message ends.
            let got = super::fetch_in_parts(&mut s, 7, size, 100_000)
                .await
                .unwrap();
            assert_eq!(got.as_deref(), Some(&body[..]));
            let expected: &[(u64, u32)] = if parts {
                &[(0, 100_000), (100_000, 100_000), (200_000, 100_000)]
            } else {
                &[(0, 100_000)]
            };
            assert_eq!(s.asked, expected);
        }
        // An exact multiple of the part size ends with an empty part.
        let mut s = OneMessage {
            body: body[..200_000].to_vec(),
            parts: true,
            asked: Vec::new(),
        };
        let got = super::fetch_in_parts(&mut s, 7, 200_000, 100_000)
            .await
            .unwrap();
        assert_eq!(got.map(|b| b.len()), Some(200_000));
        assert_eq!(s.asked.len(), 3);
        // A message that vanished is None.
        let got = super::fetch_in_parts(&mut s, 8, 10, 100_000).await.unwrap();
        assert_eq!(got, None);
    }

    #[test]
    fn server_backoff_hints_are_read() {
        let o365 = "NO [THROTTLED] Request is throttled. Suggested Backoff Time: 1500 milliseconds";
        assert_eq!(
            super::server_backoff(o365),
            Some(Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            super::server_backoff("NO [UNAVAILABLE] try later"),
            Some(None)
        );
        assert_eq!(
            super::server_backoff("Suggested Backoff Time: 3 seconds"),
            Some(Some(Duration::from_secs(3)))
        );
        assert_eq!(super::server_backoff("NO [OVERQUOTA] full"), None);
        let bye = "127.0.0.1:143 closed the connection during APPEND: BYE Server overloaded, try again later";
        assert_eq!(super::server_backoff(bye), Some(None));
        assert_eq!(
            super::server_backoff("closed the connection during FETCH: BYE Disconnected by admin"),
            None
        );
    }
}
