//! Errors that end a run, each tagged temporary or permanent, with what kind of trouble it is
//! and which side it came from where that is known.

use migrated_core::{Cause, ErrorKind, SourceError};
use migrated_imap::ImapError;
use migrated_store::StoreError;

use crate::events::Side;

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
        /// What kind of trouble it is, when one fits.
        cause: Option<Cause>,
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

    /// What kind of trouble ended the run, so that advice can be chosen without reading the
    /// message: a refused login, TLS, the network, a full mailbox, throttling, a server that
    /// makes no sense. A source plugin's error carries the cause the plugin gave (none from
    /// plugins of ABI 1.1). `None` when no single cause fits: a store failure (its own
    /// variant says so), a stop, [`EngineError::GaveUp`] (the last error's words are in it),
    /// or an error the server explained only in words.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Self::Source(e) => e.cause,
            Self::Destination(e) => e.cause(),
            Self::Contacts { cause, .. } => *cause,
            Self::MailboxFull(_) => Some(Cause::Quota),
            Self::Throttled(_) => Some(Cause::Throttled),
            Self::Store(_) | Self::Stopped | Self::GaveUp { .. } => None,
        }
    }

    /// Which side the error came from, when it came from one.
    pub fn side(&self) -> Option<Side> {
        match self {
            Self::Source(_) => Some(Side::Source),
            Self::Destination(_)
            | Self::Contacts { .. }
            | Self::MailboxFull(_)
            | Self::Throttled(_) => Some(Side::Destination),
            Self::Store(_) | Self::Stopped | Self::GaveUp { .. } => None,
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
            cause: e.cause(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_and_side_of_each_kind_of_error() {
        let refused = migrated_imap::ImapError::Auth {
            server: "s:993".into(),
            user: "alice".into(),
            admin: None,
            reply: "NO [AUTHENTICATIONFAILED] Authentication failed.".into(),
        };
        let e = EngineError::from(refused);
        assert_eq!(
            (e.cause(), e.side()),
            (Some(Cause::Authentication), Some(Side::Destination))
        );
        let e = EngineError::from(SourceError::temporary("timeout").with_cause(Cause::Network));
        assert_eq!(
            (e.cause(), e.side()),
            (Some(Cause::Network), Some(Side::Source))
        );
        let e = EngineError::from(SourceError::permanent("no such folder"));
        assert_eq!(e.cause(), None);
        let full = migrated_imap::ImapError::No {
            server: "s:993".into(),
            command: "APPEND".into(),
            reply: "NO [OVERQUOTA] Quota exceeded".into(),
        };
        assert_eq!(EngineError::MailboxFull(full).cause(), Some(Cause::Quota));
        let dav = migrated_carddav::DavError::Http {
            server: "https://dav".into(),
            what: "PROPFIND /".into(),
            status: 401,
            reply: String::new(),
        };
        let e = EngineError::from(dav);
        assert_eq!(
            (e.cause(), e.side()),
            (Some(Cause::Authentication), Some(Side::Destination))
        );
        assert_eq!(
            (EngineError::Stopped.cause(), EngineError::Stopped.side()),
            (None, None)
        );
    }
}
