//! The retry loop against scripted attempts and passes, on tokio's paused clock: which errors
//! retry, the pauses, the limits, the events.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use migrated_core::SourceError;
use tokio::time::Instant;

use super::*;

/// Three passes, pauses from 1 s doubling up to 4 s.
fn config() -> CopyConfig {
    let mut c = CopyConfig::new("retry-test");
    c.max_passes = 3;
    c.initial_backoff = Duration::from_secs(1);
    c.max_backoff = Duration::from_secs(4);
    c
}

/// `Retrying` events as (error, delay in seconds).
type Seen = Arc<Mutex<Vec<(String, u64)>>>;

/// An observer keeping the `Retrying` events.
fn recorder() -> (Observer, Seen) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let observer: Observer = Arc::new(move |e| {
        if let Event::Retrying { error, delay } = e {
            kept.lock().unwrap().push((error, delay.as_secs()));
        }
    });
    (observer, seen)
}

fn secs(seen: &Mutex<Vec<(String, u64)>>) -> Vec<u64> {
    seen.lock().unwrap().iter().map(|(_, d)| *d).collect()
}

#[tokio::test(start_paused = true)]
async fn passes_that_leave_work_are_retried_then_the_attempt_starts_over_until_the_run_gives_up() {
    let (observer, seen) = recorder();
    let stop = StopSignal::new();
    let (starts, nexts) = (AtomicU32::new(0), AtomicU32::new(0));
    let left = || vec!["destination: connection reset".to_owned()];
    let began = Instant::now();
    let ended: Result<(), _> = run(
        &config(),
        &observer,
        &stop,
        || {
            starts.fetch_add(1, Ordering::Relaxed);
            async { Ok(Try::Again((), left())) }
        },
        |()| {
            nexts.fetch_add(1, Ordering::Relaxed);
            async { Ok(Try::Again((), left())) }
        },
    )
    .await;
    match ended {
        Err(EngineError::GaveUp { passes, last }) => {
            assert_eq!(passes, 3);
            assert_eq!(last, "destination: connection reset");
        }
        other => panic!("{other:?}"),
    }
    // Three attempts of three passes each.
    assert_eq!(starts.load(Ordering::Relaxed), 3);
    assert_eq!(nexts.load(Ordering::Relaxed), 6);
    // Each attempt's passes pause 1 s, 2 s; the attempts pause 1 s, then 2 s.
    assert_eq!(secs(&seen), [1, 2, 1, 1, 2, 2, 1, 2]);
    let events = seen.lock().unwrap();
    assert_eq!(events[0].0, "destination: connection reset");
    assert_eq!(
        events[2].0,
        "gave up after 3 passes; last error: destination: connection reset"
    );
    assert_eq!(began.elapsed(), Duration::from_secs(12));
}

#[tokio::test(start_paused = true)]
async fn passes_that_only_met_throttling_do_not_count_against_the_limit() {
    let (observer, seen) = recorder();
    let stop = StopSignal::new();
    let (starts, nexts) = (AtomicU32::new(0), AtomicU32::new(0));
    let throttled = || vec!["NO [THROTTLED] slow down".to_owned()];
    let mut config = config();
    config.max_passes = 2;
    let ended = run(
        &config,
        &observer,
        &stop,
        || {
            starts.fetch_add(1, Ordering::Relaxed);
            async { Ok(Try::Again((), throttled())) }
        },
        |()| {
            let n = nexts.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                Ok(if n < 5 {
                    Try::Again((), throttled())
                } else {
                    Try::Done(n)
                })
            }
        },
    )
    .await;
    assert_eq!(ended.unwrap(), 5);
    // Six passes of one attempt, though the limit is two.
    assert_eq!(starts.load(Ordering::Relaxed), 1);
    assert_eq!(secs(&seen), [1, 2, 4, 4, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_pass_with_an_error_that_is_not_throttling_counts() {
    let (observer, seen) = recorder();
    let stop = StopSignal::new();
    let mut config = config();
    config.max_passes = 1;
    let mixed = || vec!["NO [THROTTLED] slow down".to_owned(), "timeout".to_owned()];
    let ended: Result<(), _> = run(
        &config,
        &observer,
        &stop,
        || async { Ok(Try::Again((), mixed())) },
        |()| async { Ok(Try::Again((), mixed())) },
    )
    .await;
    assert!(
        matches!(&ended, Err(EngineError::GaveUp { passes: 1, last }) if last == "timeout"),
        "{ended:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_starts_over_and_the_last_error_ends_the_run() {
    let (observer, seen) = recorder();
    let stop = StopSignal::new();
    let starts = AtomicU32::new(0);
    let began = Instant::now();
    let ended: Result<(), _> = run(
        &config(),
        &observer,
        &stop,
        || {
            starts.fetch_add(1, Ordering::Relaxed);
            async { Err(SourceError::temporary("connection refused").into()) }
        },
        single_pass,
    )
    .await;
    assert!(
        matches!(&ended, Err(EngineError::Source(e)) if e.message == "connection refused"),
        "{ended:?}"
    );
    assert_eq!(starts.load(Ordering::Relaxed), 3);
    let events = seen.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            ("source: connection refused".to_owned(), 1),
            ("source: connection refused".to_owned(), 2)
        ]
    );
    assert_eq!(began.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_later_attempt_can_succeed() {
    let (observer, seen) = recorder();
    let stop = StopSignal::new();
    let starts = AtomicU32::new(0);
    let ended = run(
        &config(),
        &observer,
        &stop,
        || {
            let n = starts.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                if n < 3 {
                    Err(SourceError::temporary("connection refused").into())
                } else {
                    Ok(Try::Done(n))
                }
            }
        },
        single_pass,
    )
    .await;
    assert_eq!(ended.unwrap(), 3);
    assert_eq!(secs(&seen), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_a_failing_store_and_a_stop_end_the_run_at_once() {
    let errors: [fn() -> EngineError; 3] = [
        || SourceError::permanent("AUTHENTICATIONFAILED").into(),
        || {
            EngineError::Store(migrated_store::StoreError::Corrupt {
                path: "/store".into(),
                what: "item",
                detail: "bad".into(),
            })
        },
        || EngineError::Stopped,
    ];
    for error in errors {
        let (observer, seen) = recorder();
        let stop = StopSignal::new();
        let starts = AtomicU32::new(0);
        let began = Instant::now();
        let ended: Result<(), _> = run(
            &config(),
            &observer,
            &stop,
            || {
                starts.fetch_add(1, Ordering::Relaxed);
                async move { Err(error()) }
            },
            single_pass,
        )
        .await;
        assert_eq!(ended.unwrap_err().to_string(), error().to_string());
        assert_eq!(starts.load(Ordering::Relaxed), 1);
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(began.elapsed(), Duration::ZERO);
    }
}

#[test]
fn a_worker_pauses_longer_while_its_batches_keep_failing() {
    let c = config();
    let pauses: Vec<u64> = (1..=8)
        .map(|n| batch_pause(&c, n, None).as_secs())
        .collect();
    assert_eq!(pauses, [1, 2, 4, 4, 4, 4, 4, 4]);
    // A server asking to slow down without a figure: up to five minutes.
    let throttled: Vec<u64> = (1..=8)
        .map(|n| batch_pause(&c, n, Some(None)).as_secs())
        .collect();
    assert_eq!(throttled, [1, 2, 4, 8, 16, 32, 32, 32]);
    // Its own figure is obeyed, up to a day.
    let said = Some(Some(Duration::from_secs(7200)));
    assert_eq!(batch_pause(&c, 1, said), Duration::from_secs(7200));
    let said = Some(Some(Duration::from_secs(200_000)));
    assert_eq!(batch_pause(&c, 1, said), Duration::from_secs(86_400));
}

#[test]
fn server_backoff_hints_are_read() {
    let o365 = "NO [THROTTLED] Request is throttled. Suggested Backoff Time: 1500 milliseconds";
    assert_eq!(
        server_backoff(o365),
        Some(Some(Duration::from_millis(1500)))
    );
    assert_eq!(server_backoff("NO [UNAVAILABLE] try later"), Some(None));
    assert_eq!(
        server_backoff("Suggested Backoff Time: 3 seconds"),
        Some(Some(Duration::from_secs(3)))
    );
    assert_eq!(server_backoff("NO [OVERQUOTA] full"), None);
    let bye =
        "127.0.0.1:143 closed the connection during APPEND: BYE Server overloaded, try again later";
    assert_eq!(server_backoff(bye), Some(None));
    assert_eq!(
        server_backoff("closed the connection during FETCH: BYE Disconnected by admin"),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_ends_a_pause_at_once() {
    let (observer, seen) = recorder();
    let stop = StopSignal::new();
    let mut config = config();
    config.initial_backoff = Duration::from_secs(600);
    config.max_backoff = Duration::from_secs(600);
    let raiser = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1050)).await;
        raiser.stop();
    });
    let began = Instant::now();
    let ended: Result<(), _> = run(
        &config,
        &observer,
        &stop,
        || async { Err(SourceError::temporary("connection refused").into()) },
        single_pass,
    )
    .await;
    assert!(matches!(ended, Err(EngineError::Stopped)), "{ended:?}");
    assert_eq!(secs(&seen), [600]);
    // Not at a next poll: the moment the stop came.
    assert_eq!(began.elapsed(), Duration::from_millis(1050));
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_a_pass_ends_the_run_with_the_error_met_and_no_retry() {
    let (observer, seen) = recorder();
    let stop = StopSignal::new();
    let ended: Result<(), _> = run(
        &config(),
        &observer,
        &stop,
        || {
            stop.stop();
            async { Err(SourceError::temporary("connection refused").into()) }
        },
        single_pass,
    )
    .await;
    assert!(
        matches!(&ended, Err(EngineError::Source(e)) if e.message == "connection refused"),
        "{ended:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
    // A pass that left work stopped its pause at once: the run is stopped.
    let ended: Result<(), _> = run(
        &config(),
        &observer,
        &stop,
        || async { Ok(Try::Again((), vec!["timeout".to_owned()])) },
        |()| async { Ok(Try::Done(())) },
    )
    .await;
    assert!(matches!(ended, Err(EngineError::Stopped)), "{ended:?}");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_a_server_throttled_for_a_said_time_waits_that_long_and_is_not_counted() {
    let (observer, seen) = recorder();
    let stop = StopSignal::new();
    let starts = AtomicU32::new(0);
    // Exchange Online throttles the listing five times (more than max_passes), then lets it
    // through.
    let ended: Result<&str, _> = run(
        &config(),
        &observer,
        &stop,
        || {
            let n = starts.fetch_add(1, Ordering::Relaxed);
            async move {
                if n < 5 {
                    Err(EngineError::Source(SourceError::temporary(
                        "s:143 refused UID FETCH (listing): Request is throttled. Suggested \
                         Backoff Time: 7000 milliseconds",
                    )))
                } else {
                    Ok(Try::Done("copied"))
                }
            }
        },
        |()| async { Ok(Try::Done("copied")) },
    )
    .await;
    assert_eq!(ended.unwrap(), "copied");
    assert_eq!(starts.load(Ordering::Relaxed), 6);
    // The server's 7 s each time, longer than the run's own pauses (1, 2, 4, 4, 4 s).
    assert_eq!(secs(&seen), [7, 7, 7, 7, 7]);
}
