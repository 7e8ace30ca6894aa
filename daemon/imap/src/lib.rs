//! IMAP client for migrated, over async-imap (tokio) and tokio-rustls.
//!
//! Written once, used by the IMAP destination (core's `MailDestination`, in `destination`) and
//! by the IMAP source plugins. It adds what async-imap leaves out and a migration cannot do
//! without: a timeout on every network call, APPEND that returns APPENDUID and sends
//! LITERAL+/MULTIAPPEND, UID FETCH that checks every UID asked for came back, NAMESPACE, and
//! modified UTF-7 folder names.

pub mod destination;
pub mod endpoint;
pub mod error;
pub mod raw;
pub mod session;
mod stream;
pub mod tls;
pub mod uidset;
pub mod utf7;

pub use destination::{ImapDestination, ImapDestinationSession};
pub use endpoint::{Admin, AdminLogin, AuthMethod, CertCheck, Endpoint, OAuth, Secret, Security};
pub use error::ImapError;
pub use session::{AppendItem, FetchedMeta, FolderEntry, GmailMeta, ImapSession, MailboxState};
