//! What a run tells its observer while it works, and the summary it ends with.

use std::sync::Arc;
use std::time::Duration;

/// The phases users of migration tools know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening connections.
    Connecting,
    /// Connected to the source; logging in.
    Authenticating,
    /// Listing folders and messages, resolving interrupted APPENDs.
    ScanningFolders,
    /// Creating missing destination folders and subscriptions.
    CreatingFolders,
    /// Copying messages and flags.
    Copying,
    /// Writing final checkpoints.
    Finalizing,
}

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

/// A message over the size limit, not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludedItem {
    /// Source folder.
    pub folder: String,
    /// Source UID.
    pub uid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Message-ID, if any.
    pub message_id: Option<String>,
    /// Subject, if any.
    pub subject: Option<String>,
    /// Why it was excluded.
    pub reason: String,
}

/// A message the destination refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedItem {
    /// Source folder.
    pub folder: String,
    /// Source UID.
    pub uid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Message-ID, if any.
    pub message_id: Option<String>,
    /// Subject, if any.
    pub subject: Option<String>,
    /// The server's words.
    pub reason: String,
}

/// A message the verification did not find on the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingItem {
    /// Source UID.
    pub uid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Message-ID, if any.
    pub message_id: Option<String>,
    /// Subject, if any.
    pub subject: Option<String>,
    /// Why it is not there, as far as the ledger knows.
    pub reason: String,
}

/// One folder compared on both sides after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyRow {
    /// Source name.
    pub source: String,
    /// Destination name.
    pub destination: String,
    /// Messages in the source folder.
    pub source_messages: u64,
    /// Their bytes (RFC822.SIZE).
    pub source_bytes: u64,
    /// Messages in the destination folder.
    pub destination_messages: u64,
    /// Their bytes.
    pub destination_bytes: u64,
    /// Source messages not on the destination.
    pub missing: Vec<MissingItem>,
}

/// Per-folder outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderReport {
    /// Source name.
    pub source: String,
    /// Destination name.
    pub destination: String,
    /// Messages on the source when listed.
    pub messages: u64,
    /// Bytes on the source when listed.
    pub bytes: u64,
    /// Copied in this run.
    pub copied: u64,
    /// Already copied by an earlier run.
    pub already_copied: u64,
    /// Flag changes carried.
    pub flags_updated: u64,
    /// Excluded (too large).
    pub excluded: u64,
    /// Refused by the destination.
    pub failed: u64,
    /// Why the folder could not be copied at all, if so.
    pub error: Option<String>,
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
    /// A message was excluded.
    Excluded(ExcludedItem),
    /// A message was refused.
    Failed(FailedItem),
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
    pub excluded: Vec<ExcludedItem>,
    /// Refused messages.
    pub failed: Vec<FailedItem>,
    /// Per folder.
    pub per_folder: Vec<FolderReport>,
    /// Folders not copied and why (virtual, excluded by a pattern).
    pub skipped_folders: Vec<(String, String)>,
    /// Wall time.
    pub duration: Duration,
    /// Both sides compared folder by folder after a run that changed something; `None` when
    /// nothing changed (the last verification stands).
    pub verification: Option<Vec<VerifyRow>>,
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
