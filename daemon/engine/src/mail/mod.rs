//! One run of a mail job, in the phases its status names: connect, scan, create folders, copy,
//! finalize, verify. This module holds the engine and the order of the phases: an attempt
//! connects, scans and creates folders, then makes passes (scan, copy) until one leaves
//! nothing undone and the run is finalized; `crate::retry` decides when a failed pass or
//! attempt is tried again. Each phase lives in its own file. The destination is any
//! `MailDestination`: what a provider allows (a daily upload allowance) it reports itself.
//!
//! | file          | phase                                                                  |
//! |---------------|------------------------------------------------------------------------|
//! | `connect.rs`  | Connecting, Authenticating: both sides, with retries                   |
//! | `scan.rs`     | Scanning folders: listing, mapping, and each pass's plan per folder    |
//! | `folders.rs`  | Creating folders: missing destination folders and subscriptions        |
//! | `copy.rs`     | Copying: the workers and their pauses                                  |
//! | `batch.rs`    | Copying: one batch fetched, announced, appended and recorded           |
//! | `placed.rs`   | Copying: messages another folder uploaded, copied on the destination   |
//! | `finalize.rs` | Finalizing: folder checkpoints and the summary                         |
//! | `verify.rs`   | Verifying: both sides compared after a run that changed something      |
//! | `recovery.rs` | (within scanning) interrupted APPENDs and UIDVALIDITY changes          |

mod batch;
mod connect;
mod copy;
mod finalize;
mod folders;
mod placed;
mod recovery;
mod scan;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use migrated_core::{FolderPlan, MailDestination, Mapping, MessageMeta, SourceConnector};
use migrated_store::{FolderKey, FolderState, JobKey, Store};

use crate::config::CopyConfig;
use crate::error::EngineError;
use crate::events::{Event, Observer, Summary};
use crate::stop::StopSignal;
use migrated_core::{FolderReport, ItemRow, Phase, RemovedRow};

/// Runs copy jobs from a source `C` to a destination `D`. Cheap to clone; one engine can run
/// one job at a time per `run` call.
pub struct Engine<C: SourceConnector + 'static, D: MailDestination + 'static> {
    shared: Arc<Shared<C, D>>,
}

impl<C: SourceConnector + 'static, D: MailDestination + 'static> std::fmt::Debug for Engine<C, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("job", &self.shared.config.job_id)
            .finish_non_exhaustive()
    }
}

struct Shared<C, D> {
    source: C,
    destination: D,
    store: Store,
    config: CopyConfig,
    observer: Observer,
    job: JobKey,
    items_done: AtomicU64,
    bytes_done: AtomicU64,
    excluded: Mutex<Vec<ItemRow>>,
    failed: Mutex<Vec<ItemRow>>,
    /// Copies removed from the destination because the source expunged them (the first
    /// ones of each folder: [`migrated_core::REMOVED_LISTED_PER_FOLDER`]).
    removed: Mutex<Vec<RemovedRow>>,
    /// Raised to stop the run after the batches in flight (pause, cancel, shutdown).
    stop: StopSignal,
    /// Set when the destination mailbox is full: workers take no new batch.
    stop_after_full: AtomicBool,
    /// Where the run's time goes.
    clock: Arc<crate::timings::PhaseClock>,
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
    /// The refusals counted for the folder's messages when it was listed: a message refused
    /// again adds one (with the same reply), one stored at last is forgotten.
    refusals: HashMap<u32, migrated_store::Refusal>,
}

/// The folders of a run, once mapped and created.
struct Mapped {
    mapping: Mapping,
    /// Why a folder could not be created, by source folder: it is reported, not copied.
    folder_errors: HashMap<String, String>,
}

/// What a pass starts from: the attempt's sessions and folders, and the folder reports of
/// its earlier passes.
struct Passes<S, T> {
    src: S,
    dst: T,
    mapped: Mapped,
    reports: HashMap<String, FolderReport>,
    /// This pass, from 1 in each attempt.
    pass: u32,
    /// When the run began.
    started: Instant,
}

/// What an attempt or pass of a mail run comes to.
type Try<S, T> = crate::retry::Try<Summary, Passes<S, T>>;

/// A batch of messages of one folder.
struct Batch {
    folder: usize,
    messages: Vec<MessageMeta>,
    /// Messages stored in another folder too (same content key): run after every upload
    /// batch, placed with `UID COPY` on the destination from where the upload put them.
    deferred: bool,
}

impl<C: SourceConnector + 'static, D: MailDestination + 'static> Engine<C, D> {
    /// An engine for one job.
    pub fn new(
        source: C,
        destination: D,
        store: Store,
        config: CopyConfig,
        observer: Observer,
    ) -> Self {
        let job = store.job_key(&config.job_id);
        // Every phase change marks the profile on its way to the observer.
        let clock = Arc::new(crate::timings::PhaseClock::default());
        let marks = clock.clone();
        let observer: Observer = Arc::new(move |e: Event| {
            if let Event::Phase(p) = &e {
                marks.mark(crate::timings::name(*p));
            }
            observer(e);
        });
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
                removed: Mutex::new(Vec::new()),
                stop: StopSignal::new(),
                stop_after_full: AtomicBool::new(false),
                clock,
            }),
        }
    }

    /// The signal that stops the run: workers finish their batch (so the ledger records it)
    /// and take no new one, waits end at once; the run then ends with
    /// [`EngineError::Stopped`].
    pub fn stop_handle(&self) -> StopSignal {
        self.shared.stop.clone()
    }

    /// Sleeps for a backoff, waking early (with [`EngineError::Stopped`]) when asked to stop.
    async fn backoff(&self, delay: std::time::Duration) -> Result<(), EngineError> {
        crate::retry::backoff(&self.shared.stop, delay).await
    }

    /// [`EngineError::Stopped`] once the run is asked to stop: a checkpoint.
    fn stopping(&self) -> Result<(), EngineError> {
        self.shared.stop.checkpoint()
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
        sh.clock.reset();
        sh.items_done.store(0, Ordering::Relaxed);
        sh.bytes_done.store(0, Ordering::Relaxed);
        crate::retry::run(
            &sh.config,
            &sh.observer,
            &sh.stop,
            || self.attempt(started),
            |passes| self.pass(passes),
        )
        .await
    }

    /// A fresh attempt: connects, scans, creates folders, and makes the first pass.
    async fn attempt(&self, started: Instant) -> Result<Try<C::Session, D::Session>, EngineError> {
        let sh = &self.shared;
        if let Ok(mut v) = sh.excluded.lock() {
            v.clear();
        }
        if let Ok(mut v) = sh.failed.lock() {
            v.clear();
        }
        if let Ok(mut v) = sh.removed.lock() {
            v.clear();
        }
        let (mut src, mut dst) = self.connect().await?;
        let (mut mapping, dest_entries) = self.scan(&mut src, &mut dst).await?;
        let folder_errors = self
            .create_folders(&mut dst, &mut mapping.folders, &dest_entries)
            .await?;
        self.pass(Passes {
            src,
            dst,
            mapped: Mapped {
                mapping,
                folder_errors,
            },
            reports: HashMap::new(),
            pass: 1,
            started,
        })
        .await
    }

    /// One pass: plans every folder against the ledger and copies what is left. Done (with the
    /// run's summary) when nothing was left undone; else the state the next pass starts from.
    async fn pass(
        &self,
        mut run: Passes<C::Session, D::Session>,
    ) -> Result<Try<C::Session, D::Session>, EngineError> {
        if run.pass > 1 {
            (self.shared.observer)(Event::Phase(Phase::ScanningFolders));
            run.src = self.connect_source(None).await?;
            run.dst = self.connect_destination(None).await?;
        }
        let planned = self
            .plan_pass(&mut run.src, &mut run.dst, &run.mapped, run.pass == 1)
            .await?;
        let (work, temporary) = self.copy_pass(planned).await?;
        self.stopping()?;
        finalize::merge_reports(&mut run.reports, &work, run.pass);
        if !temporary.is_empty() {
            run.pass += 1;
            return Ok(crate::retry::Try::Again(run, temporary));
        }
        let Passes {
            src,
            dst,
            mapped,
            reports,
            started,
            ..
        } = run;
        let summary = self.finalize(src, dst, &mapped, reports, started).await?;
        Ok(crate::retry::Try::Done(summary))
    }
}
