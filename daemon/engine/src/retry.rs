//! The retry policy of a run, and the one loop that applies it for the mail and contacts
//! engines.
//!
//! A run is made of attempts, and an attempt of passes:
//!
//! - An **attempt** starts from nothing: it connects, scans, creates folders, then makes its
//!   first pass. An attempt that fails with a temporary error (one that running again later can
//!   cure; a failing store and a stop excepted) is started over after a pause, up to
//!   `max_passes` attempts. [`EngineError::GaveUp`] is such an error: an attempt whose passes
//!   are used up is followed by a fresh attempt.
//! - A **pass** copies what the ledger says is left. A pass that leaves batches undone after
//!   temporary errors is followed by another pass of the same attempt after a pause, up to
//!   `max_passes` passes; passes that only met servers asking to slow down do not count, so
//!   a long throttle makes the job wait, not fail. When they are used up the attempt fails
//!   with [`EngineError::GaveUp`].
//!
//! Pauses start at `initial_backoff` and double up to `max_backoff`: one schedule for the
//! attempts of a run, one for the passes of an attempt. Every pause is told to the observer
//! as [`Event::Retrying`] and ends at once when the run is asked to stop. Everything done so
//! far is in the ledger, so whatever follows a pause resumes from it.
//!
//! Connections are retried with the same pauses (see `mail/connect.rs`), and a worker pauses
//! after a failed batch as [`batch_pause`] says.

use std::future::Future;
use std::time::Duration;

use migrated_core::ErrorKind;

use crate::config::CopyConfig;
use crate::error::EngineError;
use crate::events::{Event, Observer};
use crate::stop::StopSignal;

/// Sleeps for a backoff, ending at once (with [`EngineError::Stopped`]) when the run is asked
/// to stop.
pub(crate) async fn backoff(stop: &StopSignal, delay: Duration) -> Result<(), EngineError> {
    stop.unless_stopped(tokio::time::sleep(delay)).await
}

/// Growing pauses: the first is `initial_backoff`, each next one twice the last, at most
/// `max_backoff`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// The schedule a job's settings give.
    pub(crate) fn new(config: &CopyConfig) -> Self {
        Self {
            next: config.initial_backoff,
            max: config.max_backoff,
        }
    }

    /// The next pause.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.max);
        delay
    }
}

/// What one attempt or pass came to, when it did not fail.
pub(crate) enum Try<T, S> {
    /// The run is complete.
    Done(T),
    /// The pass left work undone after temporary errors (in the order met): another pass,
    /// starting from `S`, copies it.
    Again(S, Vec<String>),
}

/// Where a run stands against its limits: the pure half of [`run`].
#[derive(Debug)]
struct Policy {
    max_passes: u32,
    /// The attempt under way, from 1.
    attempt: u32,
    attempt_pauses: Backoff,
    /// The pass under way in this attempt, from 1.
    pass: u32,
    /// Passes of this attempt that only met servers asking to slow down.
    throttled_passes: u32,
    pass_pauses: Backoff,
    /// For a fresh attempt's pauses.
    fresh: Backoff,
    /// Attempts that failed only because a server asked to slow down for a time it said
    /// (Exchange's "Suggested Backoff Time"): they do not count against the limit.
    throttled_attempts: u32,
}

/// The longest pause the servers asked for in these errors ("Suggested Backoff Time"), at
/// most a day.
fn asked_pause<'a>(errors: impl IntoIterator<Item = &'a str>) -> Option<Duration> {
    errors
        .into_iter()
        .filter_map(|e| server_backoff(e).flatten())
        .max()
        .map(|d| d.min(Duration::from_secs(86_400)))
}

/// What follows a pass that left work undone.
#[derive(Debug, PartialEq)]
enum AfterPass {
    /// Another pass after `delay`; `last` is the last error met.
    Again { delay: Duration, last: String },
    /// The passes are used up.
    GaveUp(String),
}

impl Policy {
    fn new(config: &CopyConfig) -> Self {
        let fresh = Backoff::new(config);
        Self {
            max_passes: config.max_passes,
            attempt: 1,
            attempt_pauses: fresh.clone(),
            pass: 1,
            throttled_passes: 0,
            pass_pauses: fresh.clone(),
            fresh,
            throttled_attempts: 0,
        }
    }

    /// A pass ended with `errors` (not empty).
    fn after_pass(&mut self, errors: &[String]) -> AfterPass {
        let last = errors.last().cloned().unwrap_or_default();
        if errors.iter().all(|e| server_backoff(e).is_some()) {
            self.throttled_passes += 1;
        }
        if self.pass - self.throttled_passes >= self.max_passes {
            return AfterPass::GaveUp(last);
        }
        self.pass += 1;
        // At least as long as a server asked.
        let delay = self.pass_pauses.next_delay();
        let asked = asked_pause(errors.iter().map(String::as_str));
        AfterPass::Again {
            delay: asked.map_or(delay, |a| a.max(delay)),
            last,
        }
    }

    /// An attempt failed with `error`: the pause before the next attempt, or `None` when the
    /// run ends with this error.
    fn after_attempt(&mut self, error: &EngineError, stopped: bool) -> Option<Duration> {
        // A server that said how long to wait (a throttled listing or login on Exchange) is
        // waited for that long, and the attempt is not counted: a long throttle makes the job
        // wait, not fail. A daily allowance (`Throttled`) is the daemon's to wait for.
        let asked = match error {
            EngineError::Source(_) | EngineError::Destination(_) => {
                asked_pause([error.to_string().as_str()])
            }
            _ => None,
        };
        let retried = error.kind() == ErrorKind::Temporary
            // A failing store is the daemon's to wait for: the run ends at once.
            && !matches!(error, EngineError::Stopped | EngineError::Store(_))
            && !stopped
            && (asked.is_some() || self.attempt - self.throttled_attempts < self.max_passes);
        if !retried {
            return None;
        }
        if asked.is_some() {
            self.throttled_attempts += 1;
        }
        self.attempt += 1;
        self.pass = 1;
        self.throttled_passes = 0;
        self.pass_pauses = self.fresh.clone();
        let delay = self.attempt_pauses.next_delay();
        Some(asked.map_or(delay, |a| a.max(delay)))
    }
}

/// Runs a job under the policy: `start` makes a fresh attempt (its first pass included),
/// `next` another pass from where the last one left. Returns what the run came to: done, or
/// the error that ended it.
pub(crate) async fn run<T, S, Start, StartFut, Next, NextFut>(
    config: &CopyConfig,
    observer: &Observer,
    stop: &StopSignal,
    mut start: Start,
    mut next: Next,
) -> Result<T, EngineError>
where
    Start: FnMut() -> StartFut,
    StartFut: Future<Output = Result<Try<T, S>, EngineError>>,
    Next: FnMut(S) -> NextFut,
    NextFut: Future<Output = Result<Try<T, S>, EngineError>>,
{
    let mut policy = Policy::new(config);
    let mut resume = None;
    loop {
        let tried = match resume.take() {
            None => start().await,
            Some(state) => next(state).await,
        };
        let error = match tried {
            Ok(Try::Done(done)) => return Ok(done),
            Ok(Try::Again(state, errors)) => match policy.after_pass(&errors) {
                AfterPass::Again { delay, last } => {
                    observer(Event::Retrying {
                        error: last.clone(),
                        delay,
                    });
                    tracing::warn!(job = %config.job_id, pass = policy.pass - 1, error = %last, "Temporary errors; another pass follows.");
                    backoff(stop, delay).await?;
                    resume = Some(state);
                    continue;
                }
                AfterPass::GaveUp(last) => EngineError::GaveUp {
                    passes: policy.pass,
                    last,
                },
            },
            Err(e) => e,
        };
        let attempt = policy.attempt;
        let Some(delay) = policy.after_attempt(&error, stop.is_stopped()) else {
            return Err(error);
        };
        tracing::warn!(job = %config.job_id, attempt, error = %error, "Temporary error; the run resumes after a pause.");
        observer(Event::Retrying {
            error: error.to_string(),
            delay,
        });
        backoff(stop, delay).await?;
    }
}

/// A run whose attempts make a single pass (contacts): the `next` of [`run`].
pub(crate) async fn single_pass<T>(
    never: std::convert::Infallible,
) -> Result<Try<T, std::convert::Infallible>, EngineError> {
    match never {}
}

/// How long a worker pauses after its batch failed, the `failures`-th time in a row: as long
/// as the server asked (up to a day) when it asked to slow down, else a pause doubling from
/// `initial_backoff`, at most `max_backoff` (five minutes at least when the server asked
/// without saying how long).
pub(crate) fn batch_pause(
    config: &CopyConfig,
    failures: u32,
    throttled: Option<Option<Duration>>,
) -> Duration {
    let growing = config.initial_backoff * 2u32.saturating_pow(failures.clamp(1, 6) - 1);
    match throttled {
        // The server's own figure is obeyed (Gmail's daily limits last hours), up to a day;
        // without one, the pause grows to five minutes.
        Some(Some(d)) => d.min(Duration::from_secs(86_400)),
        Some(None) => growing.min(config.max_backoff.max(Duration::from_secs(300))),
        None => growing.min(config.max_backoff),
    }
}

/// Whether a server's reply asks to slow down, and for how long if it says: Office 365's
/// "Suggested Backoff Time: N milliseconds", `NO [THROTTLED]`, `[UNAVAILABLE]`, a BYE for
/// overload.
pub(crate) fn server_backoff(message: &str) -> Option<Option<Duration>> {
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
            Duration::from_millis(n)
        } else {
            Duration::from_secs(n)
        })
    });
    Some(hint)
}

#[cfg(test)]
mod tests;
