//! The journal: the one owner of the job store on the manager's side. It writes job records,
//! events and settings, keeps what the store could not take while it is down (to write it when
//! it is back), and tracks the outage itself: its reason and the pause before the next try.
//! It decides nothing about jobs: when an outage begins or its reason changes it says so
//! ([`Outage`]) and the manager stops runs or tells the waiting jobs.
//!
//! fjall is synchronous, so every store call runs on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]), never on the thread that runs the manager's loop. The
//! loop awaits each call before it goes on: writes keep their order, and a reply or event
//! that says something is stored goes out only after it is.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use migrated_ipc::EventRow;
use migrated_store::{FaultKind, Store, StoreError, StoreFault};

use crate::record::JobRecord;

/// The first pause before the store is tried again after a fault; it doubles up to
/// [`RETRY_MAX`].
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest pause between two tries of a store that cannot be written.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(30);
/// Events kept in memory at most while the store is down.
const UNSAVED_EVENTS_MAX: usize = 10_000;

/// What a store error meant for the outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outage {
    /// The store could be written until now: it cannot.
    Began(StoreFault),
    /// It still cannot, for another reason than before (say the disk has room now but the
    /// file system is read-only).
    Changed(StoreFault),
}

/// The store cannot be written: why, and when it is tried again.
#[derive(Debug)]
struct Down {
    fault: StoreFault,
    /// The next pause between tries.
    delay: Duration,
}

/// The store, and what it owes while it cannot be written.
#[derive(Debug)]
pub(crate) struct Journal {
    store: Store,
    down: Option<Down>,
    /// Events the store could not take while it was down, oldest first: shown from here and
    /// written when it is back.
    unsaved_events: VecDeque<(String, EventRow)>,
    /// Jobs whose record the store could not take while it was down.
    unsaved_jobs: HashSet<String>,
    /// Counts outages and retries, so a stale retry timer does nothing.
    generation: u64,
}

/// A write that failed: the error (for the caller to report when it is not a fault, which the
/// journal keeps to write later) and what it meant for the outage.
#[derive(Debug)]
pub(crate) struct Failed {
    pub error: StoreError,
    pub outage: Option<Outage>,
}

/// The result of a write.
pub(crate) type Written = Result<(), Box<Failed>>;

impl Journal {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            down: None,
            unsaved_events: VecDeque::new(),
            unsaved_jobs: HashSet::new(),
            generation: 0,
        }
    }

    /// The store, for reads and for the engines (which write the ledger themselves).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Where the store lives, for messages.
    pub(crate) fn path(&self) -> String {
        self.store.path().to_string()
    }

    /// Why the store cannot be written, while it cannot.
    pub(crate) fn fault(&self) -> Option<&StoreFault> {
        self.down.as_ref().map(|d| &d.fault)
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.is_some()
    }

    /// The current retry generation: a retry timer armed with an older one is stale.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// A new generation (a retry timer is armed, or the outage ended), returned.
    pub(crate) fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// The pause before the next try.
    pub(crate) fn retry_delay(&self) -> Duration {
        self.down.as_ref().map_or(RETRY_FIRST, |d| d.delay)
    }

    /// Whether anything waits to be written.
    pub(crate) fn owes(&self) -> (usize, usize) {
        (self.unsaved_events.len(), self.unsaved_jobs.len())
    }

    /// Runs a store call on the blocking pool and waits for it: the store is synchronous
    /// (fjall), and the loop's thread goes on with other tasks meanwhile.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Store) -> T + Send + 'static) -> T {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(value) => value,
            // A panic in the store call is the caller's, as if it had run here.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a job store call was cancelled: {e}"),
        }
    }

    /// Notes a store error: an I/O fault (disk full, read-only, failing disk, store gone)
    /// begins an outage or changes its reason; other errors are the caller's to report.
    pub(crate) fn failed(&mut self, e: &StoreError) -> Option<Outage> {
        let fault = e.fault()?;
        match &mut self.down {
            Some(down) if down.fault.kind != fault.kind => {
                down.fault = fault.clone();
                Some(Outage::Changed(fault.clone()))
            }
            Some(_) => None,
            None => {
                tracing::error!(
                    store = %self.store.path(),
                    "The job store cannot be written: {fault}. Nothing is copied until it can; the daemon tries it again in {} s, then at least every {} s.",
                    RETRY_FIRST.as_secs(),
                    RETRY_MAX.as_secs()
                );
                self.down = Some(Down {
                    fault: fault.clone(),
                    delay: RETRY_FIRST,
                });
                Some(Outage::Began(fault.clone()))
            }
        }
    }

    /// Writes a job's record (kept to write later if the store is down).
    pub(crate) async fn save_job(&mut self, id: &str, record: &JobRecord) -> Written {
        let (key, record) = (id.to_owned(), record.clone());
        match self.blocking(move |s| s.put_job(&key, &record)).await {
            Ok(()) => {
                self.unsaved_jobs.remove(id);
                Ok(())
            }
            Err(e) => {
                if e.fault().is_some() {
                    // Saved when the store can be written again.
                    self.unsaved_jobs.insert(id.to_owned());
                }
                Err(self.failure(e))
            }
        }
    }

    /// Writes an event (kept to write later if the store is down or earlier ones wait).
    pub(crate) async fn save_event(&mut self, id: &str, row: EventRow) -> Written {
        // Events wait their turn while earlier ones are unsaved (the store is down).
        if !self.unsaved_events.is_empty() {
            self.keep_unsaved(id.to_owned(), row);
            return Ok(());
        }
        let (key, stored) = (id.to_owned(), row.clone());
        match self
            .blocking(move |s| s.put_event(&key, stored.seq, &stored))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                if e.fault().is_some() {
                    self.keep_unsaved(id.to_owned(), row);
                }
                Err(self.failure(e))
            }
        }
    }

    fn failure(&mut self, error: StoreError) -> Box<Failed> {
        let outage = self.failed(&error);
        Box::new(Failed { error, outage })
    }

    fn keep_unsaved(&mut self, id: String, row: EventRow) {
        if self.unsaved_events.len() >= UNSAVED_EVENTS_MAX {
            self.unsaved_events.pop_front();
        }
        self.unsaved_events.push_back((id, row));
    }

    /// A job's events from `after` on: those stored, then those waiting to be.
    pub(crate) async fn events(&self, id: &str, after: u64) -> Vec<EventRow> {
        let key = id.to_owned();
        let stored = self.blocking(move |s| s.events::<EventRow>(&key)).await;
        let mut events: Vec<EventRow> = match stored {
            Ok(v) => v
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| e.seq >= after)
                .collect(),
            Err(e) => {
                if e.fault().is_none() {
                    tracing::error!(job_id = %id, error = %e, "Events could not be read.");
                }
                Vec::new()
            }
        };
        events.extend(
            self.unsaved_events
                .iter()
                .filter(|(job, e)| job == id && e.seq >= after)
                .map(|(_, e)| e.clone()),
        );
        events
    }

    /// Deletes a job with its ledger and events.
    pub(crate) async fn delete_job(&mut self, id: &str) -> Written {
        let key = id.to_owned();
        let result = self.blocking(move |s| s.delete_job(&key)).await;
        result.map_err(|e| self.failure(e))
    }

    /// Clears a job's ledger.
    pub(crate) async fn reset_job(&mut self, id: &str) -> Written {
        let key = id.to_owned();
        let result = self.blocking(move |s| s.reset_job(&key)).await;
        result.map_err(|e| self.failure(e))
    }

    /// Writes a daemon-wide setting.
    pub(crate) async fn save_setting<T>(&mut self, name: &str, value: T) -> Written
    where
        T: serde::Serialize + Send + 'static,
    {
        let key = name.to_owned();
        let result = self.blocking(move |s| s.put_setting(&key, &value)).await;
        result.map_err(|e| self.failure(e))
    }

    /// Flushes the store at shutdown and says what could not be written.
    pub(crate) async fn close(&self) {
        if let Err(e) = self.blocking(Store::persist).await {
            tracing::error!(error = %e, "Store could not be flushed at shutdown.");
        }
        let (events, jobs) = self.owes();
        if events > 0 || jobs > 0 {
            tracing::warn!(
                events,
                jobs,
                "The job store cannot be written: the latest events and job states are lost; the jobs resume from the ledger at the next start."
            );
        }
    }

    /// Opens the store again. On success the outage is over: the events it could not take
    /// are written and the jobs whose records wait are returned, for the manager to write from
    /// its current state. On failure, the reason and what it meant for the outage (writing the
    /// waiting events can begin a new one).
    pub(crate) async fn reopen(&mut self) -> Result<Vec<String>, (StoreFault, Option<Outage>)> {
        if let Err(e) = self.blocking(Store::reopen).await {
            let fault = current_fault(&e);
            let outage = match &mut self.down {
                Some(down) if down.fault.kind != fault.kind => {
                    down.fault = fault.clone();
                    Some(Outage::Changed(fault.clone()))
                }
                Some(down) => {
                    tracing::debug!(store = %self.store.path(), "The job store still cannot be written: {fault}.");
                    down.fault = fault.clone();
                    None
                }
                None => self.failed(&e),
            };
            return Err((fault, outage));
        }
        self.down = None;
        self.generation += 1;
        tracing::info!(store = %self.store.path(), "The job store can be written again; the jobs waiting for it continue.");
        while let Some((id, row)) = self.unsaved_events.pop_front() {
            let (key, stored) = (id.clone(), row.clone());
            let written = self
                .blocking(move |s| s.put_event(&key, stored.seq, &stored))
                .await;
            if let Err(e) = written {
                self.unsaved_events.push_front((id, row));
                let outage = self.failed(&e);
                return Err((current_fault(&e), outage));
            }
        }
        Ok(std::mem::take(&mut self.unsaved_jobs).into_iter().collect())
    }

    /// A try failed: wait twice as long next time, up to [`RETRY_MAX`].
    pub(crate) fn back_off(&mut self) {
        if let Some(down) = &mut self.down {
            down.delay = (down.delay * 2).min(RETRY_MAX);
        }
    }
}

/// The fault behind a store error, or an I/O fault naming the error.
fn current_fault(e: &StoreError) -> StoreFault {
    e.fault().cloned().unwrap_or_else(|| StoreFault {
        kind: FaultKind::Io,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> EventRow {
        EventRow {
            seq,
            time: 0,
            level: "info".into(),
            message: format!("event {seq}"),
        }
    }

    // A current-thread runtime: a store call that blocked the loop's own thread
    // (`block_in_place`) would panic here.
    #[tokio::test(flavor = "current_thread")]
    async fn store_calls_run_off_the_loop_thread_in_order_and_are_read_back() {
        let dir = std::env::temp_dir().join(format!("migrated-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, migrated_store::StoreKey::from_bytes([3; 32])).unwrap();
        let mut journal = Journal::new(store);
        for seq in 0..50 {
            journal.save_event("j1", event(seq)).await.unwrap();
        }
        journal.save_setting("probe", vec![1_u32, 2]).await.unwrap();
        let seqs: Vec<u64> = journal
            .events("j1", 10)
            .await
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (10..50).collect::<Vec<_>>());
        assert_eq!(journal.owes(), (0, 0));
        journal.delete_job("j1").await.unwrap();
        assert!(journal.events("j1", 0).await.is_empty());
        journal.close().await;
        drop(journal);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
