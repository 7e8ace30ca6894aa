//! Folders as a server lists them: name, hierarchy separator, SPECIAL-USE role, selectability.

use serde::{Deserialize, Serialize};

/// The role of a folder (RFC 6154 SPECIAL-USE), which lets Sent land in Sent even when the two
/// servers name it differently ("Gesendete Objekte" on one, "Sent" on the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecialUse {
    /// `\All`: a virtual folder holding every message (Gmail's All Mail). Never copied as such.
    All,
    /// `\Archive`.
    Archive,
    /// `\Drafts`.
    Drafts,
    /// `\Flagged`: a virtual folder of flagged messages. Never copied as such.
    Flagged,
    /// `\Junk`.
    Junk,
    /// `\Sent`.
    Sent,
    /// `\Trash`.
    Trash,
}

impl SpecialUse {
    /// Parses a LIST attribute such as `\Sent` (case-insensitive).
    pub fn from_attribute(attribute: &str) -> Option<Self> {
        let name = attribute.strip_prefix('\\')?;
        Some(match name.to_ascii_lowercase().as_str() {
            "all" => Self::All,
            "archive" => Self::Archive,
            "drafts" => Self::Drafts,
            "flagged" => Self::Flagged,
            "junk" => Self::Junk,
            "sent" => Self::Sent,
            "trash" => Self::Trash,
            _ => return None,
        })
    }

    /// The name a destination folder gets when the destination has no folder with this role.
    pub const fn default_name(self) -> &'static str {
        match self {
            Self::All => "All Mail",
            Self::Archive => "Archive",
            Self::Drafts => "Drafts",
            Self::Flagged => "Flagged",
            Self::Junk => "Junk",
            Self::Sent => "Sent",
            Self::Trash => "Trash",
        }
    }

    /// The attribute as IMAP spells it, for `CREATE ... (USE (\Sent))`.
    pub const fn attribute(self) -> &'static str {
        match self {
            Self::All => "\\All",
            Self::Archive => "\\Archive",
            Self::Drafts => "\\Drafts",
            Self::Flagged => "\\Flagged",
            Self::Junk => "\\Junk",
            Self::Sent => "\\Sent",
            Self::Trash => "\\Trash",
        }
    }

    /// Virtual folders that show messages stored elsewhere; copying them would duplicate mail.
    pub const fn is_virtual(self) -> bool {
        matches!(self, Self::All | Self::Flagged)
    }
}

/// One folder of a LIST reply, its name already decoded from modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderInfo {
    /// Full name as the server shows it, prefix included (`INBOX.Sent`).
    pub name: String,
    /// Hierarchy separator, `None` for a flat namespace.
    pub delimiter: Option<char>,
    /// `\Noselect` or `\NonExistent`: a container that holds no messages.
    pub no_select: bool,
    /// SPECIAL-USE role, if the server announced one.
    pub special_use: Option<SpecialUse>,
    /// Whether the user is subscribed to it.
    pub subscribed: bool,
}

/// The personal namespace of a server (RFC 2342): `("INBOX." ".")` on Courier-style servers,
/// `("" "/")` on many others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Prefix of every personal folder except INBOX itself.
    pub prefix: String,
    /// Hierarchy separator.
    pub delimiter: char,
}

impl Default for Namespace {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            delimiter: '/',
        }
    }
}
