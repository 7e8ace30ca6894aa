//! What a run tells its observer while it works, and the summary it ends with.

use std::sync::Arc;
use std::time::Duration;

use migrated_core::{FolderReport, ItemRow, Phase, PhaseTime, RemovedRow, VerifyRow};

/// Which side of the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Where mail comes from.
    Source,
    /// Where mail goes.
    Destination,
}

/// The state of a side's connection, as users of migration tools see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Opening the connection (TCP, TLS).
    Connecting,
    /// Connected; logging in.
    Authenticating,
    /// Logged in.
    Authenticated,
    /// It failed, in the server's words.
    Failed(String),
}

impl Connection {
    /// The label shown to users.
    pub fn label(&self) -> String {
        match self {
            Self::Connecting => "Connecting".into(),
            Self::Authenticating => "Authenticating".into(),
            Self::Authenticated => "Authenticated".into(),
            Self::Failed(reason) => format!("Failed: {reason}"),
        }
    }
}

/// Events, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new phase began.
    Phase(Phase),
    /// A side's connection changed state (the run's first connections).
    Connection(Side, Connection),
    /// Totals are known (after scanning): items and bytes this run will copy.
    Totals {
        /// Messages to copy.
        items: u64,
        /// Bytes to copy.
        bytes: u64,
        /// Folders.
        folders: u64,
    },
    /// Progress after a batch.
    Progress {
        /// Folder of the batch.
        folder: String,
        /// Messages copied so far in this run (all folders).
        items_done: u64,
        /// Bytes copied so far.
        bytes_done: u64,
    },
    /// A folder finished.
    FolderDone(FolderReport),
    /// A message was excluded (over the size limit).
    Excluded(ItemRow),
    /// A message was refused by the destination.
    Failed(ItemRow),
    /// The server asked to slow down (`NO [THROTTLED]`, "Suggested Backoff Time", overload):
    /// the worker waits `delay` before its next batch.
    Throttled {
        /// How long, as the server suggested when it did.
        delay: Duration,
        /// The server's words.
        reason: String,
    },
    /// A temporary error; the run retries.
    Retrying {
        /// The error.
        error: String,
        /// Wait before the retry.
        delay: Duration,
    },
}

/// Receives events. Called from worker tasks: keep it quick.
pub type Observer = Arc<dyn Fn(Event) + Send + Sync>;

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Folders mapped (containers included).
    pub folders: u64,
    /// Messages copied in this run.
    pub copied: u64,
    /// Bytes copied in this run.
    pub bytes: u64,
    /// Messages found already copied.
    pub already_copied: u64,
    /// Flag changes carried.
    pub flags_updated: u64,
    /// Excluded messages.
    pub excluded: Vec<ItemRow>,
    /// Refused messages.
    pub failed: Vec<ItemRow>,
    /// Messages removed: copies removed from the destination because the source expunged
    /// them (`sync_deletions`), and source messages marked or removed once their copies were
    /// verified (`source_after_copy`); the first [`migrated_core::REMOVED_LISTED_PER_FOLDER`]
    /// of each folder and kind, the folder reports count them all.
    pub removed: Vec<RemovedRow>,
    /// Move mode: source messages marked `\Deleted` or removed once their copies were
    /// verified on the destination.
    pub source_removed: u64,
    /// Per folder.
    pub per_folder: Vec<FolderReport>,
    /// Folders not copied and why (virtual, excluded by a pattern).
    pub skipped_folders: Vec<(String, String)>,
    /// Wall time.
    pub duration: Duration,
    /// Both sides compared folder by folder after a run that changed something; `None` when
    /// nothing changed (the last verification stands).
    pub verification: Option<Vec<VerifyRow>>,
    /// Where the run's time went, phase by phase (mail runs).
    pub timings: Vec<PhaseTime>,
}

impl Summary {
    /// Messages per second over the run.
    pub fn messages_per_second(&self) -> f64 {
        self.copied as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    /// MB/s (10^6 bytes) over the run.
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.duration.as_secs_f64().max(1e-9)
    }
}
