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
        /// The SHA-256 fingerprint of the certificate the server presented, when the
        /// handshake got that far (as `tls_fingerprint` takes it).
        certificate: Option<String>,
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
    #[error("{server} refused the login of {}: {reply}", who(user, admin.as_deref()))]
    Auth {
        /// `host:port`.
        server: String,
        /// The login name, the mailbox's user (never the password).
        user: String,
        /// The administrator who logged in on behalf of `user`, if one did.
        admin: Option<String>,
        /// The server's reply.
        reply: String,
    },
    /// No OAuth 2 access token could be had to log in with.
    #[error("no access token to log in to {server} as {user:?}: {error}")]
    Token {
        /// `host:port`.
        server: String,
        /// The mailbox's user.
        user: String,
        /// The token endpoint's refusal or failure.
        error: migrated_core::TokenError,
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

/// Exchange Online's throttling reply, which carries no response code: `Request is throttled.
/// Suggested Backoff Time: 299609 milliseconds` (after NO, or BAD followed by BYE).
fn exchange_throttled(reply: &str) -> bool {
    let r = reply.to_ascii_uppercase();
    r.contains("REQUEST IS THROTTLED") || r.contains("SUGGESTED BACKOFF TIME")
}

/// Who logged in, for messages: `"alice"`, or `"admin" on behalf of "alice"`.
pub fn who(user: &str, admin: Option<&str>) -> String {
    match admin {
        None => format!("{user:?}"),
        Some(a) => format!("{a:?} on behalf of {user:?}"),
    }
}

impl ImapError {
    /// Whether retrying later can succeed: network trouble, timeouts, BYE, the response codes
    /// servers use for overload (`UNAVAILABLE`, `THROTTLED`, `INUSE`), and Exchange Online's
    /// throttling, which has no code and comes as a NO or a BAD (`Request is throttled.
    /// Suggested Backoff Time: N milliseconds`). Refused logins and refused messages are
    /// permanent.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Closed { .. } => true,
            Self::Token { error, .. } => error.is_temporary(),
            Self::No { reply, .. } => {
                let r = reply.to_ascii_uppercase();
                ["[UNAVAILABLE]", "[THROTTLED]", "[INUSE]", "[SERVERBUG]"]
                    .iter()
                    .any(|c| r.contains(c))
                    || exchange_throttled(reply)
            }
            Self::Bad { reply, .. } => exchange_throttled(reply),
            Self::Tls { .. }
            | Self::NoStartTls { .. }
            | Self::Auth { .. }
            | Self::Protocol { .. } => false,
        }
    }

    /// Whether the server said the mailbox is over quota.
    pub fn is_over_quota(&self) -> bool {
        matches!(self, Self::No { reply, .. } if reply.to_ascii_uppercase().contains("OVERQUOTA"))
    }

    /// What kind of trouble this is: from the variant, and for a tagged NO from its response
    /// code (RFC 5530). A NO without a telling code has none: the server refused that one
    /// command, in its own words.
    pub fn cause(&self) -> Option<migrated_core::Cause> {
        use migrated_core::Cause;
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Closed { .. } => {
                Some(Cause::Network)
            }
            Self::Tls { .. } | Self::NoStartTls { .. } => Some(Cause::Tls),
            Self::Auth { .. } => Some(Cause::Authentication),
            Self::Token { error, .. } => error.cause,
            Self::Bad { reply, .. } if exchange_throttled(reply) => Some(Cause::Throttled),
            Self::Bad { .. } | Self::Protocol { .. } => Some(Cause::Protocol),
            Self::No { reply, .. } => {
                let r = reply.to_ascii_uppercase();
                if r.contains("[OVERQUOTA]") {
                    Some(Cause::Quota)
                } else if r.contains("[THROTTLED]")
                    || r.contains("[UNAVAILABLE]")
                    || exchange_throttled(reply)
                {
                    Some(Cause::Throttled)
                } else if r.contains("[AUTHENTICATIONFAILED]")
                    || r.contains("[AUTHORIZATIONFAILED]")
                    || r.contains("[EXPIRED]")
                {
                    Some(Cause::Authentication)
                } else {
                    None
                }
            }
        }
    }
}

impl From<ImapError> for migrated_core::SourceError {
    /// A source error of the same kind, keeping the server's words.
    fn from(e: ImapError) -> Self {
        let error = if e.is_temporary() {
            Self::temporary(e.to_string())
        } else {
            Self::permanent(e.to_string())
        };
        error.with_cause(e.cause())
    }
}

impl From<ImapError> for migrated_core::DestinationError {
    /// A destination error of the same kind, keeping the server's words; any reply that says
    /// OVERQUOTA is a full mailbox ([`migrated_core::Cause::Quota`]), with or without its
    /// brackets.
    fn from(e: ImapError) -> Self {
        let error = if e.is_temporary() {
            Self::temporary(e.to_string())
        } else {
            Self::permanent(e.to_string())
        };
        let cause = if e.is_over_quota() {
            Some(migrated_core::Cause::Quota)
        } else {
            e.cause()
        };
        error.with_cause(cause)
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
        // Exchange Online throttles with no response code, after NO or BAD.
        let o365 = "Request is throttled. Suggested Backoff Time: 299609 milliseconds";
        assert!(no(o365).is_temporary());
        assert_eq!(no(o365).cause(), Some(migrated_core::Cause::Throttled));
        let bad = ImapError::Bad {
            server: "outlook.office365.com:993".into(),
            command: "UID FETCH".into(),
            reply: o365.into(),
        };
        assert!(bad.is_temporary());
        assert_eq!(bad.cause(), Some(migrated_core::Cause::Throttled));
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
            admin: None,
            reply: "[AUTHENTICATIONFAILED]".into(),
        };
        assert!(!auth.is_temporary());
    }

    #[test]
    fn causes_come_from_the_variant_and_the_response_code() {
        use migrated_core::{Cause, SourceError};
        assert_eq!(no("[OVERQUOTA] Quota exceeded").cause(), Some(Cause::Quota));
        assert_eq!(no("[THROTTLED] Slow down").cause(), Some(Cause::Throttled));
        assert_eq!(
            no("[UNAVAILABLE] Try later").cause(),
            Some(Cause::Throttled)
        );
        assert_eq!(
            no("[AUTHENTICATIONFAILED] Invalid credentials").cause(),
            Some(Cause::Authentication)
        );
        assert_eq!(no("Message too large").cause(), None);
        let timeout = ImapError::Timeout {
            server: "s".into(),
            what: "FETCH".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.cause(), Some(Cause::Network));
        let tls = ImapError::Tls {
            server: "s".into(),
            reason: "unknown issuer".into(),
            certificate: None,
        };
        // The cause travels with the error into a source or destination error.
        let d = migrated_core::DestinationError::from(ImapError::Tls {
            server: "s".into(),
            reason: "unknown issuer".into(),
            certificate: None,
        });
        assert_eq!((d.cause, d.is_temporary()), (Some(Cause::Tls), false));
        let full = migrated_core::DestinationError::from(no("[OVERQUOTA] Quota exceeded"));
        assert!(full.is_over_quota() && !full.is_temporary(), "{full:?}");
        assert!(full.message.contains("Quota exceeded"));
        let e = SourceError::from(tls);
        assert_eq!(e.cause, Some(Cause::Tls));
        assert!(e.message.contains("unknown issuer"));
    }
}
