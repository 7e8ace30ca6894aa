//! What crosses the boundary, as MessagePack with fields by name. Part of the ABI: changing a
//! type here other than by adding an optional field or a variant bumps [`crate::ABI_MAJOR`].
//! The folder and message types are those of `migrated-core`, whose serde shape is frozen for
//! the same reason.

pub use migrated_core::{Account, SettingValue};
use migrated_core::{
    AddressBook, Cause, ContactChanges, ContactData, ErrorKind, FolderInfo, FolderStatus,
    MessageMeta, Namespace, Secret, SourceError,
};
use serde::{Deserialize, Serialize};

/// What a plugin says about itself (`migratectl plugins` shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The name jobs use to pick it (`source.plugin = "gmail"`).
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// One line for administrators.
    pub description: String,
    /// What it migrates.
    pub kinds: Vec<Kind>,
    /// The job settings it accepts under `[source.settings]`.
    #[serde(default)]
    pub settings: Vec<SettingInfo>,
}

/// What a plugin migrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Mail folders and messages.
    Mail,
    /// Address books and contacts.
    Contacts,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Mail => "mail",
            Self::Contacts => "contacts",
        })
    }
}

/// One job setting a plugin accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingInfo {
    /// Its name in `[source.settings]`.
    pub name: String,
    /// `bool`, `text`, or one of a list of words.
    pub kind: SettingKind,
    /// The value when the job says nothing, as text.
    pub default: String,
    /// What it does.
    pub help: String,
}

/// The type of a setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingKind {
    /// `true` or `false`.
    Bool,
    /// Any text.
    Text,
    /// A whole number, zero or more.
    Number,
    /// One of these words.
    Choice(Vec<String>),
}

impl std::fmt::Display for SettingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bool => f.write_str("true|false"),
            Self::Text => f.write_str("text"),
            Self::Number => f.write_str("number"),
            Self::Choice(words) => f.write_str(&words.join("|")),
        }
    }
}

impl SettingInfo {
    /// Checks a value against this setting; the error says what is accepted.
    ///
    /// # Errors
    ///
    /// A message naming the setting and the values it accepts.
    pub fn check(&self, value: &SettingValue) -> Result<(), String> {
        let ok = match (&self.kind, value) {
            (SettingKind::Bool, SettingValue::Bool(_)) => true,
            (SettingKind::Text, SettingValue::Text(_)) => true,
            (SettingKind::Number, SettingValue::Int(n)) => *n >= 0,
            (SettingKind::Choice(words), SettingValue::Text(t)) => words.iter().any(|w| w == t),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "setting {:?} takes {} (default {}): {}",
                self.name, self.kind, self.default, self.help
            ))
        }
    }
}

/// A request from the daemon. Sessions are numbers the plugin hands out in
/// [`Reply::Connected`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Connect and log in. Notes: [`Note::Authenticating`] once the connection is up.
    Connect {
        /// Where and as whom (boxed in memory only: the wire carries the account itself).
        account: Box<Account>,
    },
    /// Every folder with its role and subscription.
    ListFolders {
        /// The session.
        session: u64,
    },
    /// Open a folder read-only.
    OpenFolder {
        /// The session.
        session: u64,
        /// Full name as listed.
        folder: String,
    },
    /// Open a folder read-only knowing its state of the last complete pass; the reply is
    /// [`Reply::OpenedSince`] (ABI 1.5).
    OpenFolderSince {
        /// The session.
        session: u64,
        /// Full name as listed.
        folder: String,
        /// UIDVALIDITY of the last complete pass.
        uid_validity: u32,
        /// HIGHESTMODSEQ of the last complete pass.
        modseq: u64,
    },
    /// Move mode: mark these messages of a folder `\Deleted` and, with `expunge`, remove
    /// them; the reply is [`Reply::Removed`] (ABI 1.5).
    RemoveCopied {
        /// The session.
        session: u64,
        /// Full name as listed.
        folder: String,
        /// UIDs whose copies are confirmed on the destination.
        uids: Vec<u32>,
        /// Remove them (`UID EXPUNGE`), not only mark them.
        expunge: bool,
    },
    /// One page of the open folder's messages. The host stores `cursor` (a UID) in its ledger,
    /// so a listing can resume.
    ListMessages {
        /// The session.
        session: u64,
        /// First UID wanted.
        cursor: u32,
        /// Only messages whose MODSEQ is higher (CONDSTORE), if given.
        changed_since: Option<u64>,
        /// About how many messages the host wants at most.
        limit: u32,
    },
    /// Full bytes of these messages of the open folder, in this order.
    FetchBodies {
        /// The session.
        session: u64,
        /// UIDs.
        uids: Vec<u32>,
    },
    /// Part of one message of the open folder: `len` bytes from `offset`, fewer at its end
    /// (ABI 1.1).
    FetchPart {
        /// The session.
        session: u64,
        /// The message.
        uid: u32,
        /// First byte wanted.
        offset: u64,
        /// Bytes wanted at most.
        len: u32,
    },
    /// Contacts: every address book.
    ListBooks {
        /// The session.
        session: u64,
    },
    /// Contacts: what changed in a book since `cursor` (a sync token the host keeps in its
    /// ledger), or everything without one.
    ListContacts {
        /// The session.
        session: u64,
        /// The book's href.
        book: String,
        /// The sync token of the last run.
        cursor: Option<String>,
    },
    /// Contacts: the vCards of these contacts.
    FetchContacts {
        /// The session.
        session: u64,
        /// The book's href.
        book: String,
        /// The contacts' hrefs.
        hrefs: Vec<String>,
    },
    /// Contacts (ABI 1.6): the OAuth 2 access token the session's requests carry from now on
    /// (`auth = "oauth2"`). The daemon fetches tokens and renews them ahead of their expiry,
    /// and after a request refused with [`Cause::Authentication`]; HTTP sends one with every
    /// request, so the token given at [`Request::Connect`] does not last a session.
    RenewToken {
        /// The session.
        session: u64,
        /// The access token.
        token: Secret,
    },
    /// Log out and forget the session.
    Close {
        /// The session.
        session: u64,
    },
}

/// The plugin's reply to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Request::Connect`].
    Connected {
        /// The session's number.
        session: u64,
        /// The personal namespace.
        namespace: Namespace,
    },
    /// To [`Request::ListFolders`].
    Folders(Vec<FolderInfo>),
    /// To [`Request::OpenFolder`].
    Opened(FolderStatus),
    /// To [`Request::OpenFolderSince`]: the state, and the UIDs expunged since (QRESYNC), or
    /// `None` when the source cannot tell.
    OpenedSince {
        /// The folder's state.
        status: FolderStatus,
        /// UIDs expunged since the given HIGHESTMODSEQ.
        vanished: Option<Vec<u32>>,
    },
    /// To [`Request::RemoveCopied`]: whether the source could.
    Removed(bool),
    /// To [`Request::ListMessages`].
    Messages {
        /// This page.
        items: Vec<MessageMeta>,
        /// Where the next page starts; `None` after the last.
        next: Option<u32>,
    },
    /// To [`Request::FetchBodies`]: `None` for a message that vanished.
    Bodies(Vec<Option<serde_bytes::ByteBuf>>),
    /// To [`Request::FetchPart`]: `None` if the message vanished.
    Part(Option<serde_bytes::ByteBuf>),
    /// To [`Request::ListBooks`].
    Books(Vec<AddressBook>),
    /// To [`Request::ListContacts`].
    Contacts(ContactChanges),
    /// To [`Request::FetchContacts`].
    Cards(Vec<ContactData>),
    /// To [`Request::RenewToken`].
    Renewed,
    /// To [`Request::Close`].
    Closed,
}

impl Request {
    /// The session a request is for (`None` for [`Request::Connect`]).
    pub fn session(&self) -> Option<u64> {
        match self {
            Self::Connect { .. } => None,
            Self::ListFolders { session }
            | Self::OpenFolder { session, .. }
            | Self::OpenFolderSince { session, .. }
            | Self::RemoveCopied { session, .. }
            | Self::ListMessages { session, .. }
            | Self::FetchBodies { session, .. }
            | Self::FetchPart { session, .. }
            | Self::ListBooks { session }
            | Self::ListContacts { session, .. }
            | Self::FetchContacts { session, .. }
            | Self::RenewToken { session, .. }
            | Self::Close { session } => Some(*session),
        }
    }
}

impl Reply {
    /// The reply's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connected { .. } => "Connected",
            Self::Folders(_) => "Folders",
            Self::Opened(_) => "Opened",
            Self::OpenedSince { .. } => "OpenedSince",
            Self::Removed(_) => "Removed",
            Self::Messages { .. } => "Messages",
            Self::Bodies(_) => "Bodies",
            Self::Part(_) => "Part",
            Self::Books(_) => "Books",
            Self::Contacts(_) => "Contacts",
            Self::Cards(_) => "Cards",
            Self::Renewed => "Renewed",
            Self::Closed => "Closed",
        }
    }
}

/// Progress within a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Note {
    /// The connection is up; logging in.
    Authenticating,
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// Whether retrying later can help (network trouble, `NO [UNAVAILABLE]`).
    pub temporary: bool,
    /// What went wrong, with the server's words.
    pub message: String,
    /// What kind of trouble it is, by [`Cause::name`] (ABI 1.2). Plugins built for 1.1 send
    /// none, and a daemon built for 1.1 ignores it. A name as text rather than an enum, so that
    /// a cause added later reads as none on an older daemon instead of failing the decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl From<SourceError> for WireError {
    fn from(e: SourceError) -> Self {
        Self {
            temporary: e.kind == ErrorKind::Temporary,
            message: e.message,
            cause: e.cause.map(|c| c.name().to_owned()),
        }
    }
}

impl From<WireError> for SourceError {
    fn from(e: WireError) -> Self {
        let cause = e.cause.as_deref().and_then(Cause::from_name);
        let error = if e.temporary {
            Self::temporary(e.message)
        } else {
            Self::permanent(e.message)
        };
        error.with_cause(cause)
    }
}

/// Encodes a value as the ABI does.
///
/// # Errors
///
/// Only if a type cannot be represented, which is a bug.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(value).map_err(|e| format!("cannot encode MessagePack: {e}"))
}

/// Decodes a value as the ABI does.
///
/// # Errors
///
/// A message naming what was expected.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("malformed {what} (MessagePack): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed request as ABI 1.1 spelled it, before causes.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct WireErrorV1_1 {
        temporary: bool,
        message: String,
    }

    #[test]
    fn a_cause_crosses_the_boundary_and_older_sides_still_understand_each_other() {
        let sent = SourceError::permanent("refused the login").with_cause(Cause::Authentication);
        let bytes = encode(&WireError::from(sent)).unwrap();
        let got = SourceError::from(decode::<WireError>(&bytes, "error").unwrap());
        assert_eq!(got.cause, Some(Cause::Authentication));
        assert_eq!(got.kind, ErrorKind::Permanent);
        // A 1.1 daemon reads a 1.2 plugin's error, ignoring the cause.
        let old: WireErrorV1_1 = decode(&bytes, "error").unwrap();
        assert_eq!(old.message, "refused the login");
        // A 1.1 plugin's error has no cause.
        let bytes = encode(&WireErrorV1_1 {
            temporary: true,
            message: "timeout".into(),
        })
        .unwrap();
        let got = SourceError::from(decode::<WireError>(&bytes, "error").unwrap());
        assert_eq!((got.kind, got.cause), (ErrorKind::Temporary, None));
        // A cause this daemon does not know yet reads as none.
        let newer = WireError {
            temporary: false,
            message: "x".into(),
            cause: Some("solar-flare".into()),
        };
        let bytes = encode(&newer).unwrap();
        let got = SourceError::from(decode::<WireError>(&bytes, "error").unwrap());
        assert_eq!(got.cause, None);
        // Without a cause nothing more is sent than 1.1 sent.
        let plain = encode(&WireError::from(SourceError::temporary("timeout"))).unwrap();
        assert_eq!(
            plain,
            encode(&WireErrorV1_1 {
                temporary: true,
                message: "timeout".into(),
            })
            .unwrap()
        );
    }

    /// An account as ABI 1.2 spelled it, before administrator logins.
    #[derive(Debug, Serialize, Deserialize)]
    struct AccountV1_2 {
        host: String,
        port: u16,
        security: String,
        ca_file: Option<String>,
        danger_accept_invalid_certs: bool,
        auth: String,
        user: String,
        secret: migrated_core::Secret,
        timeout_secs: u64,
        #[serde(default)]
        settings: std::collections::BTreeMap<String, SettingValue>,
    }

    #[test]
    fn an_administrator_login_crosses_the_boundary_and_a_user_login_is_sent_as_in_1_2() {
        let old = AccountV1_2 {
            host: "h".into(),
            port: 143,
            security: "plain".into(),
            ca_file: None,
            danger_accept_invalid_certs: false,
            auth: "login".into(),
            user: "alice".into(),
            secret: migrated_core::Secret::new("pw"),
            timeout_secs: 5,
            settings: Default::default(),
        };
        // A 1.2 daemon's account reads as a user's login.
        let bytes = encode(&Request::Connect {
            account: Box::new(decode(&encode(&old).unwrap(), "account").unwrap()),
        })
        .unwrap();
        let Request::Connect { account } = decode::<Request>(&bytes, "request").unwrap() else {
            panic!("not a Connect");
        };
        assert_eq!(account.admin_user, None);
        // Without an administrator, this daemon sends what 1.2 sent.
        assert_eq!(encode(&*account).unwrap(), encode(&old).unwrap());
        // With one, it crosses whole.
        let mut admin = *account;
        admin.admin_user = Some("admin".into());
        admin.admin_login = Some("separator".into());
        admin.admin_separator = Some("*".into());
        let got: Account = decode(&encode(&admin).unwrap(), "account").unwrap();
        assert_eq!(
            (
                got.admin_user.as_deref(),
                got.admin_login.as_deref(),
                got.admin_separator.as_deref()
            ),
            (Some("admin"), Some("separator"), Some("*"))
        );
    }
}
