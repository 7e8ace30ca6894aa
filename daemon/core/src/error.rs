//! Error kinds shared by sources, sinks and the engine: every error says whether a retry can
//! help, and, where one fits, what kind of trouble it is ([`Cause`]), so that the daemon can
//! choose its advice without reading the error's words.

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

/// What kind of trouble an error is, as an administrator would act on it. Errors that fit none
/// (a message refused for its own reasons, a plugin that broke, a setting out of range) have
/// no cause; their words say what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The server refused the login: user, password or token.
    Authentication,
    /// TLS could not be set up: an untrusted or mismatched certificate, or no STARTTLS.
    Tls,
    /// The server could not be reached or went away: refused or reset connections, timeouts,
    /// a closed connection.
    Network,
    /// The mailbox or account is over its quota.
    Quota,
    /// The server asked to slow down (`NO [THROTTLED]`, HTTP 429, a daily limit).
    Throttled,
    /// The server's reply made no sense, or it rejected a command as malformed.
    Protocol,
}

impl Cause {
    /// Every cause, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Authentication,
        Self::Tls,
        Self::Network,
        Self::Quota,
        Self::Throttled,
        Self::Protocol,
    ];

    /// The cause's name on the plugin wire and in logs: `authentication`, `tls`, `network`,
    /// `quota`, `throttled`, `protocol`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Authentication => "authentication",
            Self::Tls => "tls",
            Self::Network => "network",
            Self::Quota => "quota",
            Self::Throttled => "throttled",
            Self::Protocol => "protocol",
        }
    }

    /// The cause `name` stands for; `None` for a name this version does not know (one a newer
    /// plugin sent), which then reads as no cause.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
    /// What kind of trouble it is, when one fits.
    pub cause: Option<Cause>,
}

impl SourceError {
    /// A temporary error: the engine retries it with backoff.
    pub fn temporary(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Temporary,
            message: message.into(),
            cause: None,
        }
    }

    /// A permanent error: the engine records it against the job or the item.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
            cause: None,
        }
    }

    /// The same error, saying what kind of trouble it is.
    #[must_use]
    pub fn with_cause(self, cause: impl Into<Option<Cause>>) -> Self {
        Self {
            cause: cause.into(),
            ..self
        }
    }
}

/// An error reported by a destination (an IMAP or CardDAV server), with the server's own
/// words. The same three things as a [`SourceError`]; a type of its own so that the side an
/// error came from is never lost on its way to the engine's errors.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DestinationError {
    /// Whether a retry can help.
    pub kind: ErrorKind,
    /// What went wrong, naming the server, folder or item, and the server's reply.
    pub message: String,
    /// What kind of trouble it is, when one fits. [`Cause::Quota`] is a full mailbox: the
    /// engine stops the run there instead of refusing message after message.
    pub cause: Option<Cause>,
}

impl DestinationError {
    /// A temporary error: the engine retries it with backoff.
    pub fn temporary(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Temporary,
            message: message.into(),
            cause: None,
        }
    }

    /// A permanent error: the engine records it against the job or the item.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
            cause: None,
        }
    }

    /// The same error, saying what kind of trouble it is.
    #[must_use]
    pub fn with_cause(self, cause: impl Into<Option<Cause>>) -> Self {
        Self {
            cause: cause.into(),
            ..self
        }
    }

    /// Whether a retry can help.
    pub fn is_temporary(&self) -> bool {
        self.kind == ErrorKind::Temporary
    }

    /// Whether the destination said the mailbox or account is over its quota.
    pub fn is_over_quota(&self) -> bool {
        self.cause == Some(Cause::Quota)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_reads_back_from_its_name_and_unknown_names_read_as_none() {
        for cause in Cause::ALL {
            assert_eq!(Cause::from_name(cause.name()), Some(cause));
        }
        assert_eq!(Cause::from_name("solar-flare"), None);
        let e = SourceError::temporary("x").with_cause(Cause::Network);
        assert_eq!(e.cause, Some(Cause::Network));
        assert_eq!(e.to_string(), "x");
    }
}
