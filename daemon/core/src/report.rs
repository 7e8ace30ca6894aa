//! What a run reports, in one vocabulary for the engine that finds it, the store that keeps it
//! and the control API that shows it: the phases users of migration tools know, a folder's
//! figures, an item (message or contact) that was not copied and why, and a folder compared on
//! both sides after a run, and where the run's time went.
//!
//! The store keeps these in its job records and the control API serializes the same types,
//! so their serde names are a stored format: add fields with `#[serde(default)]`, never rename.

use serde::{Deserialize, Serialize};

use crate::JobStatus;

/// The phases of a run, as the job's status names them while it runs.
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

impl Phase {
    /// The label users see (the status's).
    pub fn label(self) -> &'static str {
        JobStatus::from(self).label()
    }
}

impl From<Phase> for JobStatus {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Connecting => Self::Connecting,
            Phase::Authenticating => Self::Authenticating,
            Phase::ScanningFolders => Self::ScanningFolders,
            Phase::CreatingFolders => Self::CreatingFolders,
            Phase::Copying => Self::Copying,
            Phase::Finalizing => Self::Finalizing,
        }
    }
}

/// One folder (or address book) of a run: what the source holds and what became of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderReport {
    /// Source name.
    pub source: String,
    /// Destination name.
    pub destination: String,
    /// Messages on the source when listed.
    pub messages: u64,
    /// Their bytes.
    #[serde(default)]
    pub bytes: u64,
    /// Copied in this run.
    pub copied: u64,
    /// Already copied by an earlier run.
    pub already_copied: u64,
    /// Flag changes carried.
    #[serde(default)]
    pub flags_updated: u64,
    /// Excluded (over the size limit, or left out by the filter).
    pub excluded: u64,
    /// Refused by the destination.
    pub failed: u64,
    /// Copies removed from the destination because the source expunged them
    /// (`sync_deletions`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub removed: u64,
    /// Source messages marked `\Deleted` or expunged once their copies were verified on the
    /// destination (`source_after_copy`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub source_removed: u64,
    /// Why the folder could not be copied at all, if so.
    pub error: Option<String>,
    /// Why the folder arrived under another name than its rules give it, if so (the
    /// destination refused that name and `[folders] unrepresentable = "replace"` gave it the
    /// one in `destination`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A message (or contact) that was not copied: excluded, refused, or missing at verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRow {
    /// Source folder (or address book).
    pub folder: String,
    /// Source UID (0 for a contact).
    pub uid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Message-ID, if any.
    pub message_id: Option<String>,
    /// Subject (decoded), or a contact's full name.
    #[serde(default)]
    pub subject: Option<String>,
    /// Why, in the server's words or the rule's.
    pub reason: String,
}

/// How many removed messages a report lists per folder (per kind of removal): the first ones,
/// in the order they were removed. The folder rows count them all ([`FolderReport::removed`],
/// [`FolderReport::source_removed`]), so a move of a large mailbox keeps a record of a
/// bounded size.
pub const REMOVED_LISTED_PER_FOLDER: usize = 1000;

/// What became of a removed message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Removal {
    /// Its copy was expunged from the destination because the source expunged the message
    /// (`sync_deletions`).
    #[default]
    DestinationExpunged,
    /// Expunged from the source once its copy was verified (`source_after_copy = "expunge"`).
    SourceExpunged,
    /// Marked `\Deleted` on the source once its copy was verified
    /// (`source_after_copy = "flag-deleted"`).
    SourceFlaggedDeleted,
}

impl Removal {
    /// The words of reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::DestinationExpunged => {
                "expunged on the source: its copy was removed from the destination (sync_deletions)"
            }
            Self::SourceExpunged => {
                "expunged from the source after its copy was verified (source_after_copy = expunge)"
            }
            Self::SourceFlaggedDeleted => {
                "marked \\Deleted on the source after its copy was verified (source_after_copy = flag-deleted)"
            }
        }
    }
}

/// A message a run removed, as an administrator identifies it (never its body): one side's
/// folder and UID, the other side's, and what the message was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedRow {
    /// Source folder.
    pub folder: String,
    /// Destination folder.
    pub destination: String,
    /// Source UID.
    pub uid: u32,
    /// UID of the copy on the destination.
    pub dest_uid: u32,
    /// Message-ID, if known.
    #[serde(default)]
    pub message_id: Option<String>,
    /// Size in bytes (RFC822.SIZE), 0 when unknown.
    #[serde(default)]
    pub size: u64,
    /// INTERNALDATE as the server gave it, if known.
    #[serde(default)]
    pub date: Option<String>,
    /// What was done.
    #[serde(default)]
    pub removal: Removal,
}

impl RemovedRow {
    /// Whether it was removed from the source (move mode) rather than the destination.
    pub fn from_source(&self) -> bool {
        self.removal != Removal::DestinationExpunged
    }
}

/// Adds `rows` to the removed messages `list`, keeping at most
/// [`REMOVED_LISTED_PER_FOLDER`] of each folder and side: the first ones stay listed, the
/// folder reports count the rest.
pub fn list_removed(list: &mut Vec<RemovedRow>, rows: impl IntoIterator<Item = RemovedRow>) {
    let mut listed: std::collections::HashMap<(String, bool), usize> =
        std::collections::HashMap::new();
    for r in list.iter() {
        *listed
            .entry((r.folder.clone(), r.from_source()))
            .or_default() += 1;
    }
    for row in rows {
        let n = listed
            .entry((row.folder.clone(), row.from_source()))
            .or_default();
        if *n < REMOVED_LISTED_PER_FOLDER {
            *n += 1;
            list.push(row);
        }
    }
}

/// One folder compared on both sides after a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRow {
    /// Source folder.
    pub source: String,
    /// Destination folder.
    pub destination: String,
    /// Messages in the source folder.
    pub source_messages: u64,
    /// Their bytes (RFC822.SIZE).
    pub source_bytes: u64,
    /// Messages in the destination folder.
    pub destination_messages: u64,
    /// Their bytes.
    pub destination_bytes: u64,
    /// Source messages not on the destination, with why as far as the ledger knows.
    pub missing: Vec<ItemRow>,
}

/// Where a run's wall time went: one phase of its profile (`connect`, `scan`, `folders`,
/// `copy`, `finalize`, `verify`), summed over the run's passes and retries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    /// The phase.
    pub phase: String,
    /// Seconds spent in it.
    pub secs: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_the_running_statuses() {
        assert_eq!(JobStatus::from(Phase::Copying), JobStatus::Copying);
        assert_eq!(Phase::ScanningFolders.label(), "Scanning folders");
    }

    #[test]
    fn the_removed_list_keeps_the_first_of_each_folder_and_side() {
        let row = |folder: &str, uid: u32, removal: Removal| RemovedRow {
            folder: folder.into(),
            uid,
            removal,
            ..RemovedRow::default()
        };
        let mut list = Vec::new();
        let n = REMOVED_LISTED_PER_FOLDER as u32;
        list_removed(
            &mut list,
            (1..=n + 5).map(|u| row("INBOX", u, Removal::SourceExpunged)),
        );
        list_removed(&mut list, [row("INBOX", 7, Removal::DestinationExpunged)]);
        list_removed(&mut list, [row("INBOX", n + 9, Removal::SourceExpunged)]);
        list_removed(&mut list, [row("Sent", 1, Removal::SourceExpunged)]);
        assert_eq!(list.len(), REMOVED_LISTED_PER_FOLDER + 2);
        assert_eq!(
            list[REMOVED_LISTED_PER_FOLDER - 1].uid,
            n,
            "the first ones stay"
        );
        assert_eq!(list[REMOVED_LISTED_PER_FOLDER].uid, 7);
        assert_eq!(list[REMOVED_LISTED_PER_FOLDER + 1].folder, "Sent");
    }

    #[test]
    fn a_folder_row_of_the_earlier_wire_form_reads_with_zero_bytes_and_flags() {
        // The control API's FolderRow before the vocabulary was one: no bytes, no flags_updated.
        let old = "source = \"INBOX\"\ndestination = \"INBOX\"\nmessages = 3\ncopied = 2\n\
            already_copied = 1\nexcluded = 0\nfailed = 0\n";
        let row: FolderReport = toml::from_str(old).unwrap();
        assert_eq!(row.messages, 3);
        assert_eq!((row.bytes, row.flags_updated), (0, 0));
    }
}
