//! Errors of the IMAP client, each with the server's own words and whether a retry can help.

use std::time::Duration;

/// An IMAP failure. Messages name the server and the command, and quote the server's reply.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// TCP connect failed.
    #[error("cannot connect to {server}: {source}")]
    Connect {
        /// `host:port`.
        server: String,
        /// The system's reason.
        source: std::io::Error,
    },
    /// TLS handshake or certificate failure.
    #[error("TLS with {server} failed: {reason}")]
    Tls {
        /// `host:port`.
        server: String,
        /// rustls' reason, e.g. an unknown issuer.
        reason: String,
    },
    /// The server refused to upgrade to TLS; the password was not sent.
    #[error(
        "{server} does not offer STARTTLS (it answered {reply:?}); the password was not sent. \
         Use implicit TLS, or set security = \"plain\" only on a trusted network"
    )]
    NoStartTls {
        /// `host:port`.
        server: String,
        /// What the server said.
        reply: String,
    },
    /// The server did not answer in time.
    #[error("{server} did not answer {what} within {} s", .after.as_secs())]
    Timeout {
        /// `host:port`.
        server: String,
        /// The command waited for.
        what: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// Authentication refused.
    #[error("{server} refused the login of {user:?}: {reply}")]
    Auth {
        /// `host:port`.
        server: String,
        /// The login name (never the password).
        user: String,
        /// The server's reply.
        reply: String,
    },
    /// A tagged NO.
    #[error("{server} refused {command}: {reply}")]
    No {
        /// `host:port`.
        server: String,
        /// The command, without literals or secrets.
        command: String,
        /// The server's reply, response code included.
        reply: String,
    },
    /// A tagged BAD.
    #[error("{server} rejected {command} as malformed: {reply}")]
    Bad {
        /// `host:port`.
        server: String,
        /// The command.
        command: String,
        /// The server's reply.
        reply: String,
    },
    /// The server said BYE or closed the connection.
    #[error("{server} closed the connection during {command}: {reply}")]
    Closed {
        /// `host:port`.
        server: String,
        /// The command in progress.
        command: String,
        /// BYE text, or the I/O error.
        reply: String,
    },
    /// The server's reply did not make sense.
    #[error("{server} sent an unexpected reply to {command}: {detail}")]
    Protocol {
        /// `host:port`.
        server: String,
        /// The command in progress.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

impl ImapError {
    /// Whether retrying later can succeed: network trouble, timeouts, BYE and the response codes
    /// servers use for overload (`UNAVAILABLE`, `THROTTLED`, `INUSE`). Refused logins and
    /// refused messages are permanent.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Closed { .. } => true,
            Self::No { reply, .. } => {
                let r = reply.to_ascii_uppercase();
                ["[UNAVAILABLE]", "[THROTTLED]", "[INUSE]", "[SERVERBUG]"]
                    .iter()
                    .any(|c| r.contains(c))
            }
            Self::Tls { .. }
            | Self::NoStartTls { .. }
            | Self::Auth { .. }
            | Self::Bad { .. }
            | Self::Protocol { .. } => false,
        }
    }

    /// Whether the server said the mailbox is over quota.
    pub fn is_over_quota(&self) -> bool {
        matches!(self, Self::No { reply, .. } if reply.to_ascii_uppercase().contains("OVERQUOTA"))
    }
}

impl From<ImapError> for migrated_core::SourceError {
    /// A source error of the same kind, keeping the server's words.
    fn from(e: ImapError) -> Self {
        if e.is_temporary() {
            Self::temporary(e.to_string())
        } else {
            Self::permanent(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(reply: &str) -> ImapError {
        ImapError::No {
            server: "s:143".into(),
            command: "APPEND".into(),
            reply: reply.into(),
        }
    }

    #[test]
    fn overload_replies_are_temporary_and_refusals_permanent() {
        assert!(no("[UNAVAILABLE] Try again later").is_temporary());
        assert!(no("[THROTTLED] Too many commands").is_temporary());
        assert!(no("[INUSE] Mailbox locked").is_temporary());
        assert!(!no("[OVERQUOTA] Quota exceeded").is_temporary());
        assert!(no("[OVERQUOTA] Quota exceeded").is_over_quota());
        assert!(!no("Message too large").is_temporary());
        let bye = ImapError::Closed {
            server: "s".into(),
            command: "FETCH".into(),
            reply: "BYE overload".into(),
        };
        assert!(bye.is_temporary());
        let auth = ImapError::Auth {
            server: "s".into(),
            user: "u".into(),
            reply: "[AUTHENTICATIONFAILED]".into(),
        };
        assert!(!auth.is_temporary());
    }
}
