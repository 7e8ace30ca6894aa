//! The job store failing and coming back, as the jobs see it: while it cannot be written no
//! run starts, running ones stop, their jobs wait in [`JobStatus::WaitingForStore`], and the
//! store is tried again after [`crate::journal::RETRY_FIRST`], the pause doubling up to [`RETRY_MAX`] (`resume`
//! tries at once). The [`crate::journal`] keeps what the store could not take and writes it
//! when it is back.

use std::time::Duration;

use migrated_core::JobStatus;
use migrated_store::{FaultKind, StoreFault};

use super::Manager;
use crate::journal::RETRY_MAX;
use crate::msg::Msg;

impl Manager {
    /// An outage began: nothing more is sent until the store works again, so every run stops
    /// at its next checkpoint and waits for the store.
    pub(super) fn store_down(&mut self) {
        for entry in self.jobs.values_mut() {
            if let Some(stop) = &entry.stop {
                entry.store_stop = true;
                stop.stop();
            }
        }
        self.arm_store_retry();
        self.notify_status();
    }

    /// A run ended because the store cannot be written: the job waits for it.
    pub(super) async fn wait_for_store(&mut self, id: &str, fault: &StoreFault) {
        let name = self.jobs[id].record.spec.name.clone();
        let message = self.store_wait_message(fault, &name);
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.record.error = Some(message.clone());
            // The run's connections are closed; no folder is being copied.
            let run = &mut entry.record.run;
            run.current_folder = None;
            run.source_connection = None;
            run.destination_connection = None;
        }
        self.set_status(id, JobStatus::WaitingForStore).await;
        self.event(id, "warning", message).await;
    }

    /// What an administrator reads in the job's error and events while it waits.
    fn store_wait_message(&self, fault: &StoreFault, job: &str) -> String {
        let path = self.journal.path();
        let (what, todo) = match fault.kind {
            FaultKind::DiskFull => (
                "The job store's disk is full",
                format!("free space on the file system that holds {path}"),
            ),
            FaultKind::ReadOnly => (
                "The job store's file system is read-only",
                format!(
                    "make the file system that holds {path} writable again (if the kernel made it read-only after an error, check it first: the daemon holds no file of the store open while it waits)"
                ),
            ),
            FaultKind::Missing => (
                "The job store is not there",
                format!("mount the file system that holds {path} again"),
            ),
            FaultKind::Io => (
                "The job store cannot be written",
                format!("check the disk that holds {path} (the kernel log says more)"),
            ),
        };
        format!(
            "{what} ({path}: {}). Nothing more is copied until the store can be written; nothing copied so far is lost or copied twice. What to do: {todo}; the job continues by itself (the daemon tries the store again at least every {} s), or at once with `migratectl resume {job}`.",
            fault.detail,
            RETRY_MAX.as_secs()
        )
    }

    /// The reason changed (say the disk has room now but the file system is not mounted):
    /// the waiting jobs say so.
    pub(super) async fn store_fault_changed(&mut self) {
        let Some(fault) = self.journal.fault().cloned() else {
            return;
        };
        tracing::warn!(store = %self.journal.path(), "The job store still cannot be written: {fault}.");
        let waiting: Vec<(String, String)> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.record.status == JobStatus::WaitingForStore)
            .map(|(id, e)| (id.clone(), e.record.spec.name.clone()))
            .collect();
        for (id, name) in waiting {
            let message = self.store_wait_message(&fault, &name);
            if let Some(entry) = self.jobs.get_mut(&id) {
                entry.record.error = Some(message.clone());
            }
            self.event(&id, "warning", message).await;
        }
        self.notify_status();
    }

    /// Sends [`Msg::StoreRetry`] after the current pause.
    fn arm_store_retry(&mut self) {
        let delay = self.journal.retry_delay();
        self.retry_after(delay);
    }

    fn retry_after(&mut self, delay: Duration) {
        let generation = self.journal.next_generation();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Msg::StoreRetry { generation });
        });
    }

    /// The retry timer fired: try the store; on failure wait longer.
    pub(super) async fn retry_store(&mut self) {
        if !self.journal.is_down() {
            return;
        }
        if self.running() > 0 {
            // Runs are still stopping; try again shortly.
            self.retry_after(Duration::from_millis(500));
            return;
        }
        if self.try_store().await.is_err() {
            self.journal.back_off();
            self.arm_store_retry();
        }
    }

    /// Opens the store again if it can be written; then the waiting jobs continue.
    pub(super) async fn try_store(&mut self) -> Result<(), StoreFault> {
        if self.running() > 0 {
            // No run may go on with what it read before the fault.
            return Err(self.journal.fault().cloned().unwrap_or_else(|| StoreFault {
                kind: FaultKind::Io,
                detail: "the runs are still stopping".into(),
            }));
        }
        match self.journal.reopen().await {
            Ok(unsaved_jobs) => {
                self.store_back(unsaved_jobs).await;
                match self.journal.fault() {
                    None => Ok(()),
                    Some(fault) => Err(fault.clone()),
                }
            }
            Err((fault, outage)) => {
                self.outage(outage).await;
                Err(fault)
            }
        }
    }

    /// The store can be written again: the records it could not take are written, and the
    /// jobs that waited go back to the queue.
    async fn store_back(&mut self, unsaved_jobs: Vec<String>) {
        for id in unsaved_jobs {
            if self.jobs.contains_key(&id) {
                self.persist(&id).await;
            }
        }
        if self.journal.is_down() {
            return;
        }
        let waiting: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.record.status == JobStatus::WaitingForStore)
            .map(|(id, _)| id.clone())
            .collect();
        for id in waiting {
            if let Some(entry) = self.jobs.get_mut(&id) {
                entry.record.error = None;
            }
            self.event(
                &id,
                "info",
                "The job store can be written again: the job continues.".into(),
            )
            .await;
            self.set_status(&id, JobStatus::Queued).await;
        }
        // Job files that arrived meanwhile could not become jobs. Boxed: a rescan may act on
        // a job, and an action may try the store.
        Box::pin(self.rescan()).await;
        self.notify_status();
    }
}
