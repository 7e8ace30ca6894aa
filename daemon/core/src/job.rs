//! Jobs: what a job asks for ([`JobSpec`], as job files and the control API give it) and its
//! lifecycle ([`JobStatus`]), an explicit state machine that refuses illegal moves with a
//! message saying what to do instead.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The statuses users of migration tools know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    /// Waiting for a free slot.
    Queued,
    /// Credentials are missing (erased after completion, or never given): `delta` with new
    /// credentials continues it.
    WaitingForCredentials,
    /// The job store cannot be written (its disk is full, its file system read-only): nothing
    /// is copied until it can; the job then continues by itself (`resume` tries at once).
    WaitingForStore,
    /// Opening connections.
    Connecting,
    /// Logging in.
    Authenticating,
    /// Listing folders and messages.
    ScanningFolders,
    /// Creating folders on the destination.
    CreatingFolders,
    /// Copying messages.
    Copying,
    /// Writing final checkpoints.
    Finalizing,
    /// Everything copied.
    Completed,
    /// Done, but some items were refused or some folders could not be created.
    CompletedWithErrors,
    /// Stopped by an error that needs the administrator.
    Failed,
    /// Asked to stop; finishing the batches in flight.
    Stopping,
    /// Paused by the administrator; `resume` continues.
    Stopped,
    /// Cancelled; its data stays until deleted or the retention period ends.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 15] = [
        Self::Queued,
        Self::WaitingForCredentials,
        Self::WaitingForStore,
        Self::Connecting,
        Self::Authenticating,
        Self::ScanningFolders,
        Self::CreatingFolders,
        Self::Copying,
        Self::Finalizing,
        Self::Completed,
        Self::CompletedWithErrors,
        Self::Failed,
        Self::Stopping,
        Self::Stopped,
        Self::Cancelled,
    ];

    /// A run is in progress (a worker owns the job).
    pub const fn is_running(self) -> bool {
        matches!(
            self,
            Self::Connecting
                | Self::Authenticating
                | Self::ScanningFolders
                | Self::CreatingFolders
                | Self::Copying
                | Self::Finalizing
                | Self::Stopping
        )
    }

    /// No run is in progress and none will start by itself.
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::CompletedWithErrors
                | Self::Failed
                | Self::Stopped
                | Self::Cancelled
        )
    }

    /// The name shown to users.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Queued => "Queued",
            Self::WaitingForCredentials => "Waiting for credentials",
            Self::WaitingForStore => "Waiting for the store",
            Self::Connecting => "Connecting",
            Self::Authenticating => "Authenticating",
            Self::ScanningFolders => "Scanning folders",
            Self::CreatingFolders => "Creating folders",
            Self::Copying => "Copying",
            Self::Finalizing => "Finalizing",
            Self::Completed => "Completed",
            Self::CompletedWithErrors => "Completed with errors",
            Self::Failed => "Failed",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Cancelled => "Cancelled",
        }
    }

    /// The status named by its label (as D-Bus carries it).
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.label() == label)
    }

    /// Whether the daemon may move a job from `self` to `next` on its own (engine progress,
    /// end of a run, restart).
    pub fn can_become(self, next: Self) -> bool {
        use JobStatus::*;
        match (self, next) {
            (a, b) if a == b => true,
            (Queued | WaitingForCredentials, Connecting | WaitingForCredentials | Queued) => true,
            // The run's phases, in order (a retry goes back to connecting).
            // The engine reports Authenticating only where the source can tell login from
            // connect; otherwise scanning follows connecting directly.
            (Connecting, Authenticating | ScanningFolders | Failed) => true,
            (Authenticating, ScanningFolders | Failed) => true,
            (ScanningFolders, CreatingFolders | Copying | Finalizing) => true,
            (CreatingFolders, ScanningFolders | Copying | Finalizing) => true,
            (Copying, ScanningFolders | Finalizing) => true,
            (Finalizing, Completed | CompletedWithErrors) => true,
            // Waiting for credentials: an OAuth 2 grant the provider refused mid-run.
            (s, Connecting | Failed | Stopping | WaitingForStore | WaitingForCredentials)
                if s.is_running() && s != Stopping =>
            {
                true
            }
            // The store can be written again: the job goes back to the queue.
            (WaitingForStore, Queued) => true,
            (Stopping, Stopped | Cancelled | Completed | CompletedWithErrors | Failed) => true,
            // A daemon restarted after a crash resumes what was running.
            (s, Queued) if s.is_running() => true,
            _ => false,
        }
    }

    /// What an administrator's action does to a job in this status: the status to move to,
    /// or why it is refused.
    ///
    /// # Errors
    ///
    /// [`IllegalAction`] naming the status and what to do instead.
    pub fn apply(self, action: Action) -> Result<Self, IllegalAction> {
        use JobStatus::*;
        let refuse = |hint: &'static str| {
            Err(IllegalAction {
                action,
                status: self,
                hint,
            })
        };
        match action {
            Action::Pause => match self {
                Queued | WaitingForCredentials | WaitingForStore => Ok(Stopped),
                s if s.is_running() && s != Stopping => Ok(Stopping),
                Stopping | Stopped => refuse("it is already stopping or stopped"),
                _ => refuse("only a queued or running job can be paused"),
            },
            Action::Resume => match self {
                // Waiting for the store: the daemon tries the store at once.
                Stopped | Failed | WaitingForStore => Ok(Queued),
                _ => refuse("only a stopped or failed job can be resumed"),
            },
            Action::Cancel => match self {
                Queued | WaitingForCredentials | WaitingForStore | Stopped | Failed => {
                    Ok(Cancelled)
                }
                s if s.is_running() => Ok(Stopping),
                _ => {
                    refuse("a completed or cancelled job has nothing to cancel; delete it instead")
                }
            },
            Action::Delete => match self {
                s if s.is_running() => {
                    refuse("cancel it first (migratectl cancel), then delete it")
                }
                s => Ok(s),
            },
            Action::Reset => match self {
                s if s.is_running() => refuse("pause or cancel it first, then reset it"),
                Queued | WaitingForCredentials | WaitingForStore => {
                    refuse("pause it first, then reset it")
                }
                _ => Ok(Stopped),
            },
            Action::Delta => match self {
                Completed | CompletedWithErrors | Stopped | Failed | Cancelled => Ok(Queued),
                s if s.is_running() => {
                    refuse("a run is in progress; run the delta when it has finished")
                }
                WaitingForStore => refuse(
                    "it continues by itself once the job store can be written; `resume` tries the store now",
                ),
                _ => refuse("the job is already queued"),
            },
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What an administrator can ask of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Stop after the batches in flight; `resume` continues.
    Pause,
    /// Continue a stopped or failed job.
    Resume,
    /// Stop for good.
    Cancel,
    /// Remove the job and all its data.
    Delete,
    /// Run again, copying what is new or changed.
    Delta,
    /// Forget what was copied (the ledger): the next run copies everything again, as when the
    /// destination mailbox was emptied. The job stays stopped until resumed.
    Reset,
}

/// An action the job's status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action:?} a job that is {status}: {hint}")]
pub struct IllegalAction {
    /// What was asked.
    pub action: Action,
    /// The job's status.
    pub status: JobStatus,
    /// What to do instead.
    pub hint: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_while_running_is_refused_with_what_to_do() {
        let err = JobStatus::Copying.apply(Action::Delete).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot Delete a job that is Copying: cancel it first (migratectl cancel), then delete it"
        );
        assert_eq!(
            JobStatus::Completed.apply(Action::Delete),
            Ok(JobStatus::Completed)
        );
    }

    #[test]
    fn pause_resume_cancel_and_delta_follow_the_lifecycle() {
        assert_eq!(
            JobStatus::Copying.apply(Action::Pause),
            Ok(JobStatus::Stopping)
        );
        assert_eq!(
            JobStatus::Queued.apply(Action::Pause),
            Ok(JobStatus::Stopped)
        );
        assert_eq!(
            JobStatus::Stopped.apply(Action::Resume),
            Ok(JobStatus::Queued)
        );
        assert!(JobStatus::Completed.apply(Action::Resume).is_err());
        assert_eq!(
            JobStatus::Copying.apply(Action::Cancel),
            Ok(JobStatus::Stopping)
        );
        assert_eq!(
            JobStatus::Stopped.apply(Action::Cancel),
            Ok(JobStatus::Cancelled)
        );
        assert!(JobStatus::Cancelled.apply(Action::Cancel).is_err());
        assert_eq!(
            JobStatus::Completed.apply(Action::Delta),
            Ok(JobStatus::Queued)
        );
        assert!(JobStatus::Copying.apply(Action::Delta).is_err());
        assert_eq!(
            JobStatus::Completed.apply(Action::Reset),
            Ok(JobStatus::Stopped)
        );
        assert!(
            JobStatus::Copying
                .apply(Action::Reset)
                .unwrap_err()
                .to_string()
                .contains("pause or cancel it first")
        );
    }

    #[test]
    fn the_daemon_moves_jobs_only_along_the_lifecycle() {
        use JobStatus::*;
        let run = [
            Queued,
            Connecting,
            Authenticating,
            ScanningFolders,
            CreatingFolders,
            Copying,
            Finalizing,
            Completed,
        ];
        assert!(
            run.windows(2).all(|w| w[0].can_become(w[1])),
            "a normal run"
        );
        assert!(Copying.can_become(Stopping) && Stopping.can_become(Stopped));
        assert!(Copying.can_become(Queued), "resumed after a daemon crash");
        assert!(!Completed.can_become(Copying));
        assert!(!Cancelled.can_become(Queued));
        assert!(!Queued.can_become(Completed));
        assert!(Copying.can_become(WaitingForStore) && WaitingForStore.can_become(Queued));
        assert!(!WaitingForStore.can_become(Copying));
        assert_eq!(WaitingForStore.apply(Action::Resume), Ok(Queued));
        assert_eq!(WaitingForStore.apply(Action::Pause), Ok(Stopped));
        assert!(!WaitingForStore.is_running() && !WaitingForStore.is_finished());
        for s in JobStatus::ALL {
            assert!(s.can_become(s));
        }
    }
}
