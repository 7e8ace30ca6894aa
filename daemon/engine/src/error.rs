//! Errors that end a run, each tagged temporary or permanent.

use migrated_core::{ErrorKind, SourceError};
use migrated_imap::ImapError;
use migrated_store::StoreError;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The source failed.
    #[error("source: {0}")]
    Source(#[from] SourceError),
    /// The destination failed.
    #[error("destination: {0}")]
    Destination(#[from] ImapError),
    /// The CardDAV destination failed.
    #[error("destination: {message}")]
    Contacts {
        /// Whether a retry can help.
        kind: ErrorKind,
        /// What went wrong, with the server's status and words.
        message: String,
    },
    /// The destination mailbox is over its quota: the run stops; raise the quota and resume.
    #[error("destination mailbox full: {0}")]
    MailboxFull(ImapError),
    /// A daily allowance is used up; the run waits for the next day.
    #[error("{0}")]
    Throttled(String),
    /// The job store failed; nothing more is sent until it works again.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The run was asked to stop; everything copied so far is in the ledger.
    #[error("stopped on request")]
    Stopped,
    /// Temporary errors persisted through every pass.
    #[error("gave up after {passes} passes; last error: {last}")]
    GaveUp {
        /// Passes made.
        passes: u32,
        /// The last temporary error.
        last: String,
    },
}

impl EngineError {
    /// Whether running the job again later can succeed without a change by the administrator.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Source(e) => e.kind,
            Self::Destination(e) if e.is_temporary() => ErrorKind::Temporary,
            Self::Destination(_) => ErrorKind::Permanent,
            Self::Contacts { kind, .. } => *kind,
            Self::MailboxFull(_) => ErrorKind::Permanent,
            Self::Store(_) | Self::GaveUp { .. } | Self::Stopped | Self::Throttled(_) => {
                ErrorKind::Temporary
            }
        }
    }
}

impl From<migrated_carddav::DavError> for EngineError {
    fn from(e: migrated_carddav::DavError) -> Self {
        Self::Contacts {
            kind: if e.is_temporary() {
                ErrorKind::Temporary
            } else {
                ErrorKind::Permanent
            },
            message: e.to_string(),
        }
    }
}
