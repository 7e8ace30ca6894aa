//! Asking a run to stop: a signal raised once (pause, cancel, shutdown, a full store) that the
//! run checks at its checkpoints and awaits in its waits, so a pause, a throttled wait or a
//! wait for the memory budget ends as soon as the signal is raised instead of at a next poll.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use crate::error::EngineError;

/// Stops a run at its next checkpoint: workers finish the batch in flight (the ledger records
/// it, or the intent announced before its APPEND lets the next run find it) and take no new
/// one; every wait ends at once. The run then ends with [`EngineError::Stopped`].
///
/// Once raised it stays raised. Clones share one signal: the daemon keeps one, the run the
/// other.
#[derive(Debug, Clone)]
pub struct StopSignal {
    /// `true` once raised. The signal holds the sender, so the channel never closes while
    /// anyone can still wait on it.
    raised: Arc<watch::Sender<bool>>,
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSignal {
    /// A signal not raised yet.
    pub fn new() -> Self {
        Self {
            raised: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Raises the signal: the run stops at its next checkpoint.
    pub fn stop(&self) {
        self.raised.send_replace(true);
    }

    /// Whether the signal is raised.
    pub fn is_stopped(&self) -> bool {
        *self.raised.borrow()
    }

    /// Completes once the signal is raised (at once if it is already).
    pub async fn stopped(&self) {
        let mut raised = self.raised.subscribe();
        // An error would mean the sender is gone, but `self` holds it.
        let _ = raised.wait_for(|raised| *raised).await;
    }

    /// [`EngineError::Stopped`] once the signal is raised: a checkpoint.
    pub(crate) fn checkpoint(&self) -> Result<(), EngineError> {
        if self.is_stopped() {
            Err(EngineError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Waits for `wait` unless the signal is raised first (or already): then
    /// [`EngineError::Stopped`] and `wait` is dropped. Only for waits that hold nothing the
    /// ledger has to know about.
    pub(crate) async fn unless_stopped<F: Future>(
        &self,
        wait: F,
    ) -> Result<F::Output, EngineError> {
        self.checkpoint()?;
        tokio::select! {
            biased;
            () = self.stopped() => Err(EngineError::Stopped),
            out = wait => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::memory::MemoryBudget;

    #[tokio::test(start_paused = true)]
    async fn a_clone_raised_later_wakes_the_waiter_at_that_moment() {
        let stop = StopSignal::new();
        assert!(!stop.is_stopped());
        let raiser = stop.clone();
        let began = tokio::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1234)).await;
            raiser.stop();
        });
        stop.stopped().await;
        assert!(stop.is_stopped());
        assert_eq!(began.elapsed(), Duration::from_millis(1234));
        // Raised stays raised: a later wait ends at once.
        stop.stopped().await;
        assert!(matches!(stop.checkpoint(), Err(EngineError::Stopped)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_the_memory_budget_ends_when_the_run_is_stopped() {
        let budget = MemoryBudget::new(1024 * 1024);
        let held = budget.take(1024 * 1024).await;
        let stop = StopSignal::new();
        let raiser = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            raiser.stop();
        });
        let began = tokio::time::Instant::now();
        let waited = stop.unless_stopped(budget.take(1)).await;
        assert!(matches!(waited, Err(EngineError::Stopped)));
        assert_eq!(began.elapsed(), Duration::from_secs(3));
        drop(held);
        // Once raised, nothing more is waited for, even what would not wait.
        assert!(stop.unless_stopped(budget.take(1)).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_ends_first_gives_its_result() {
        let stop = StopSignal::new();
        let out = stop
            .unless_stopped(async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                7
            })
            .await;
        assert_eq!(out.unwrap(), 7);
    }
}
