//! The Copying phase: a pass's batches shared out over `connections` workers, each with its own
//! sessions on both sides. A worker that meets a temporary error leaves the batch for the next
//! pass and pauses (as long as the server asked, when it says); a full mailbox or a store
//! failure ends the pass for every worker.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use migrated_core::{ErrorKind, MailDestination, SourceConnector};

use super::batch::UidBound;
use super::scan::PassPlan;
use super::{Batch, Engine, FolderWork};
use crate::error::EngineError;
use crate::events::Event;
use crate::retry::{batch_pause, server_backoff};
use migrated_core::Phase;

impl<C: SourceConnector + 'static, D: MailDestination + 'static> Engine<C, D> {
    /// Copies a pass's batches: uploads first, then the messages placed from other folders'
    /// uploads. Folders with nothing to copy are complete at once. Returns the folders' work
    /// and the temporary errors met.
    pub(super) async fn copy_pass(
        &self,
        planned: PassPlan,
    ) -> Result<(Arc<Vec<FolderWork>>, Vec<String>), EngineError> {
        let PassPlan {
            work,
            queue,
            deferred,
        } = planned;
        let work = Arc::new(work);
        // Folders with nothing to copy are complete now.
        for w in work.iter() {
            if w.pending.load(Ordering::Relaxed) == 0 {
                self.finish_folder(w).await?;
            }
        }
        let mut temporary = if queue.is_empty() && deferred.is_empty() {
            Vec::new()
        } else {
            (self.shared.observer)(Event::Phase(Phase::Copying));
            self.copy_batches(work.clone(), queue).await?
        };
        if !deferred.is_empty() {
            self.stopping()?;
            temporary.extend(self.copy_batches(work.clone(), deferred).await?);
        }
        Ok((work, temporary))
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
        let mut dst: Option<D::Session> = None;
        let mut open: Option<usize> = None;
        let mut bounds: HashMap<usize, UidBound> = HashMap::new();
        let mut consecutive_failures = 0u32;
        loop {
            if sh.stop.is_stopped() {
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
                // Stopped while waiting, before anything was announced or sent: the batch is
                // left for the next run, its folder without a checkpoint.
                Err(EngineError::Stopped) => return Ok(()),
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
                    let throttled = server_backoff(&message);
                    let delay = batch_pause(&sh.config, consecutive_failures, throttled);
                    if throttled.is_some() {
                        (sh.observer)(Event::Throttled {
                            delay,
                            reason: message.clone(),
                        });
                    }
                    if self.backoff(delay).await.is_err() {
                        return Ok(());
                    }
                }
            }
            if w.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.finish_folder(w).await?;
            }
        }
    }
}
