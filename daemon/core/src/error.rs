//! Error kinds shared by sources, sinks and the engine: every error says whether a retry can help.

use std::fmt;

/// Whether retrying the same operation later can succeed.
///
/// The retry loop matches on this, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A dropped connection, a timeout, `NO [UNAVAILABLE]`, `BYE`: retry with backoff.
    Temporary,
    /// Authentication refused, a message refused by the server: retrying will not help.
    Permanent,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Temporary => "temporary",
            Self::Permanent => "permanent",
        })
    }
}

/// An error reported by a source, with the server's own words where there were some.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    /// Whether a retry can help.
    pub kind: ErrorKind,
    /// What went wrong, naming the server, folder or item, and the server's reply.
    pub message: String,
}

impl SourceError {
    /// A temporary error: the engine retries it with backoff.
    pub fn temporary(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Temporary,
            message: message.into(),
        }
    }

    /// A permanent error: the engine records it against the job or the item.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }
}
