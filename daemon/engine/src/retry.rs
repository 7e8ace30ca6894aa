//! What the mail and contacts engines share around their attempts: a backoff that wakes when
//! the run is asked to stop, and the loop that retries an attempt after a temporary error.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use migrated_core::ErrorKind;

use crate::config::CopyConfig;
use crate::error::EngineError;
use crate::events::{Event, Observer};

/// [`EngineError::Stopped`] once the run is asked to stop.
pub(crate) fn stopping(stop: &AtomicBool) -> Result<(), EngineError> {
    if stop.load(Ordering::Relaxed) {
        Err(EngineError::Stopped)
    } else {
        Ok(())
    }
}

/// Sleeps for a backoff, waking early (with [`EngineError::Stopped`]) when asked to stop.
pub(crate) async fn backoff(stop: &AtomicBool, delay: Duration) -> Result<(), EngineError> {
    let until = Instant::now() + delay;
    while Instant::now() < until {
        stopping(stop)?;
        tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(100))).await;
    }
    stopping(stop)
}

/// Runs `attempt` until it succeeds, fails for good, the run is stopped, or the passes are
/// used up; between attempts a growing pause (everything done so far is in the ledger, so a
/// new attempt resumes from it).
pub(crate) async fn with_retries<T, F, Fut>(
    config: &CopyConfig,
    observer: &Observer,
    stop: &AtomicBool,
    mut attempt: F,
) -> Result<T, EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    let mut delay = config.initial_backoff;
    let mut pass = 1;
    loop {
        match attempt().await {
            Err(e)
                if e.kind() == ErrorKind::Temporary
                    // A failing store is the daemon's to wait for: the run ends at once.
                    && !matches!(e, EngineError::Stopped | EngineError::Store(_))
                    && !stop.load(Ordering::Relaxed)
                    && pass < config.max_passes =>
            {
                tracing::warn!(job = %config.job_id, attempt = pass, error = %e, "Temporary error; the run resumes after a pause.");
                observer(Event::Retrying {
                    error: e.to_string(),
                    delay,
                });
                backoff(stop, delay).await?;
                delay = (delay * 2).min(config.max_backoff);
                pass += 1;
            }
            other => return other,
        }
    }
}
