//! Retention: which finished jobs are deleted now, and why. A job is kept for the retention
//! period (`--retention-days`, 7 by default) from the moment it finished (Completed, Completed
//! with errors, Cancelled or Failed); a job with a run in progress, or queued or waiting for
//! one, is not finished, and neither is a completed job whose recurring syncs still have to
//! run (until its final delta). Pure: the manager passes the jobs and the time, and deletes
//! what this names.

use std::time::Duration;

use migrated_core::JobStatus;

/// When a job that moves to `status` at `now` counts as finished, for retention: a final
/// status (Completed, Completed with errors, Cancelled, Failed) starts the retention period;
/// any other (queued again for a delta, waiting for credentials, stopped, running) ends it,
/// so a job that will run again is never deleted with the ledger its next run needs.
pub(crate) fn finished_at(status: JobStatus, now: u64) -> Option<u64> {
    matches!(
        status,
        JobStatus::Completed
            | JobStatus::CompletedWithErrors
            | JobStatus::Cancelled
            | JobStatus::Failed
    )
    .then_some(now)
}

/// A job as retention sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kept<'a> {
    pub id: &'a str,
    /// When it finished, if it did.
    pub finished: Option<u64>,
    /// A run is in progress (a delta of a finished job, say).
    pub running: bool,
    /// Recurring syncs are still to run (no final delta yet): the job is not done.
    pub syncs_pending: bool,
}

/// A job whose retention period is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expired {
    pub id: String,
    /// Why, for the journal.
    pub reason: String,
}

/// The jobs to delete at `now`.
pub(crate) fn expired<'a>(
    jobs: impl IntoIterator<Item = Kept<'a>>,
    retention: Duration,
    now: u64,
) -> Vec<Expired> {
    let limit = retention.as_secs();
    let mut out: Vec<Expired> = jobs
        .into_iter()
        .filter(|j| !j.running && !j.syncs_pending)
        .filter_map(|j| {
            let finished = j.finished?;
            let age = now.saturating_sub(finished);
            (age >= limit).then(|| Expired {
                id: j.id.to_owned(),
                reason: format!(
                    "finished {:.1} days ago; finished jobs are kept {:.1} days",
                    age as f64 / 86_400.0,
                    limit as f64 / 86_400.0
                ),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const WEEK: Duration = Duration::from_secs(7 * DAY);

    fn ids(e: &[Expired]) -> Vec<&str> {
        e.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn a_job_finished_longer_ago_than_the_retention_period_expires_with_the_reason() {
        let now = 100 * DAY;
        let jobs = [
            Kept {
                id: "old",
                finished: Some(now - 8 * DAY),
                running: false,
                syncs_pending: false,
            },
            Kept {
                id: "exactly",
                finished: Some(now - 7 * DAY),
                running: false,
                syncs_pending: false,
            },
            Kept {
                id: "recent",
                finished: Some(now - 6 * DAY),
                running: false,
                syncs_pending: false,
            },
        ];
        let e = expired(jobs, WEEK, now);
        assert_eq!(ids(&e), ["exactly", "old"]);
        assert_eq!(
            e[1].reason,
            "finished 8.0 days ago; finished jobs are kept 7.0 days"
        );
    }

    #[test]
    fn unfinished_and_running_jobs_never_expire() {
        let jobs = [
            Kept {
                id: "queued",
                finished: None,
                running: false,
                syncs_pending: false,
            },
            Kept {
                id: "recurring-delta",
                finished: Some(0),
                running: true,
                syncs_pending: false,
            },
        ];
        assert!(expired(jobs, WEEK, 1000 * DAY).is_empty());
    }

    #[test]
    fn a_completed_job_with_recurring_syncs_to_run_is_kept_until_its_final_delta() {
        let jobs = [Kept {
            id: "weekly",
            finished: Some(0),
            running: false,
            syncs_pending: true,
        }];
        assert!(expired(jobs, WEEK, 1000 * DAY).is_empty());
    }

    #[test]
    fn a_failed_job_is_finished_and_a_job_queued_again_or_waiting_is_not() {
        for s in [
            JobStatus::Completed,
            JobStatus::CompletedWithErrors,
            JobStatus::Cancelled,
            JobStatus::Failed,
        ] {
            assert_eq!(finished_at(s, 7), Some(7), "{s}");
        }
        // What `batch delta` and `delta` lead to: the retention period ends.
        for s in [
            JobStatus::Queued,
            JobStatus::WaitingForCredentials,
            JobStatus::WaitingForStore,
            JobStatus::Stopped,
            JobStatus::Connecting,
            JobStatus::Copying,
        ] {
            assert_eq!(finished_at(s, 7), None, "{s}");
        }
    }

    #[test]
    fn a_retention_of_zero_deletes_every_finished_job_at_once() {
        let jobs = [Kept {
            id: "done",
            finished: Some(5),
            running: false,
            syncs_pending: false,
        }];
        assert_eq!(ids(&expired(jobs, Duration::ZERO, 5)), ["done"]);
    }
}
