//! Messages as a source lists them, before their bodies are fetched.

use serde::{Deserialize, Serialize};

/// A message's flags and keywords, normalized: sorted, deduplicated, `\Recent` removed (a client
/// cannot set it, and a server sets it by itself on the destination).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flags(Vec<String>);

impl Flags {
    /// Normalizes flags as read from a server. System flags are case-insensitive in IMAP, so they
    /// are spelled the canonical way; keywords keep their case.
    pub fn new<I, S>(flags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut v: Vec<String> = flags
            .into_iter()
            .filter_map(|f| {
                let f = f.as_ref();
                if let Some(system) = f.strip_prefix('\\') {
                    let canonical = match system.to_ascii_lowercase().as_str() {
                        "seen" => "\\Seen",
                        "answered" => "\\Answered",
                        "flagged" => "\\Flagged",
                        "deleted" => "\\Deleted",
                        "draft" => "\\Draft",
                        // \Recent is session state; \* and unknown system flags cannot be stored.
                        _ => return None,
                    };
                    Some(canonical.to_owned())
                } else if f.is_empty() {
                    None
                } else {
                    Some(f.to_owned())
                }
            })
            .collect();
        v.sort();
        v.dedup();
        Self(v)
    }

    /// The flags as strings.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A parenthesized IMAP flag list: `(\Seen $Forwarded)`.
    pub fn to_imap_list(&self) -> String {
        format!("({})", self.0.join(" "))
    }

    /// A short fingerprint stored in the ledger, so that a later run can tell whether the flags
    /// changed on the source without keeping the flag names (which may be personal) in clear.
    pub fn fingerprint(&self) -> u64 {
        let mut h = Fnv64::default();
        for f in &self.0 {
            h.write(f.as_bytes());
            h.write(&[0]);
        }
        h.0
    }
}

/// FNV-1a: a tiny, stable, non-cryptographic hash. Flag fingerprints only detect change; nothing
/// is trusted on them.
pub(crate) struct Fnv64(pub(crate) u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// One message of a source folder as listed before copying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// UID in the source folder.
    pub uid: u32,
    /// RFC822.SIZE in bytes.
    pub size: u32,
    /// Flags and keywords.
    pub flags: Flags,
    /// INTERNALDATE exactly as the server sent it (`"17-Jul-1996 02:44:25 -0700"`), so the
    /// destination receives the same instant and zone.
    pub internal_date: String,
    /// The Message-ID header's value, if the message has one.
    pub message_id: Option<String>,
    /// The Subject, decoded, for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// MODSEQ when the source offers CONDSTORE.
    pub modseq: Option<u64>,
    /// The same message seen in several folders carries the same key (Gmail's X-GM-MSGID for
    /// a message with several labels). The engine uploads such a message once and places it
    /// in the other folders with a server-side `UID COPY` on the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_key: Option<String>,
    /// The `Date:` header as seconds since the epoch, when the source read it (for
    /// `[filter] date_from = "header"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_normalized_and_recent_is_dropped() {
        let f = Flags::new(["\\SEEN", "$Forwarded", "\\Recent", "\\Seen", "Projekt-X"]);
        assert_eq!(f.as_slice(), ["$Forwarded", "Projekt-X", "\\Seen"]);
        assert_eq!(f.to_imap_list(), "($Forwarded Projekt-X \\Seen)");
    }

    #[test]
    fn fingerprint_changes_with_the_flags() {
        let a = Flags::new(["\\Seen"]);
        let b = Flags::new(["\\Seen", "\\Flagged"]);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), Flags::new(["\\seen"]).fingerprint());
    }
}
