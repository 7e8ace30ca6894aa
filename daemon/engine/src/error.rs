//! Errors that end a run, each tagged temporary or permanent, with what kind of trouble it is
//! and which side it came from where that is known.

use migrated_core::{Cause, DestinationError, ErrorKind, SourceError};
use migrated_store::StoreError;

use crate::events::Side;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The source failed.
    #[error("source: {0}")]
    Source(#[from] SourceError),
    /// The destination (IMAP or CardDAV) failed.
    #[error("destination: {0}")]
    Destination(#[from] DestinationError),
    /// The destination mailbox is over its quota: the run stops; raise the quota and resume.
    #[error("destination mailbox full: {0}")]
    MailboxFull(DestinationError),
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
            Self::Destination(e) => e.kind,
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
            Self::Destination(e) => e.cause,
            Self::MailboxFull(_) => Some(Cause::Quota),
            Self::Throttled(_) => Some(Cause::Throttled),
            Self::Store(_) | Self::Stopped | Self::GaveUp { .. } => None,
        }
    }

    /// Which side the error came from, when it came from one.
    pub fn side(&self) -> Option<Side> {
        match self {
            Self::Source(_) => Some(Side::Source),
            Self::Destination(_) | Self::MailboxFull(_) | Self::Throttled(_) => {
                Some(Side::Destination)
            }
            Self::Store(_) | Self::Stopped | Self::GaveUp { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_and_side_of_each_kind_of_error() {
        let refused = DestinationError::permanent(
            "s:993 refused the login of \"alice\": NO [AUTHENTICATIONFAILED] Authentication failed.",
        )
        .with_cause(Cause::Authentication);
        let e = EngineError::from(refused);
        assert_eq!(
            (e.cause(), e.side(), e.kind()),
            (
                Some(Cause::Authentication),
                Some(Side::Destination),
                ErrorKind::Permanent
            )
        );
        let e = EngineError::from(SourceError::temporary("timeout").with_cause(Cause::Network));
        assert_eq!(
            (e.cause(), e.side()),
            (Some(Cause::Network), Some(Side::Source))
        );
        let e = EngineError::from(SourceError::permanent("no such folder"));
        assert_eq!(e.cause(), None);
        let full =
            DestinationError::permanent("s:993 refused APPEND: NO [OVERQUOTA] Quota exceeded")
                .with_cause(Cause::Quota);
        let e = EngineError::MailboxFull(full);
        assert_eq!(
            (e.cause(), e.kind()),
            (Some(Cause::Quota), ErrorKind::Permanent)
        );
        assert!(
            e.to_string().starts_with("destination mailbox full: s:993"),
            "{e}"
        );
        let busy = EngineError::from(DestinationError::temporary("HTTP 503"));
        assert_eq!(busy.kind(), ErrorKind::Temporary);
        assert_eq!(busy.to_string(), "destination: HTTP 503");
        assert_eq!(
            (EngineError::Stopped.cause(), EngineError::Stopped.side()),
            (None, None)
        );
    }
}
