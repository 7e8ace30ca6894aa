//! Where a Gmail message goes, from its labels: pure rules, tested without a server.

use std::collections::BTreeMap;

use migrated_core::{SettingValue, SourceError};

/// The job's label policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// One folder per label (true) or labels as keywords (false).
    pub folders: bool,
    /// Keep `\Important`.
    pub important: bool,
    /// Folder for mail with no label.
    pub archive: String,
    /// Gmail's daily IMAP download limit, bytes.
    pub daily_download: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            folders: true,
            important: false,
            archive: "Archive".to_owned(),
            daily_download: 2_500_000_000,
        }
    }
}

/// The virtual folder names used for the system labels: the engine maps them by role.
pub(crate) const INBOX: &str = "INBOX";
/// The folder of `\Important` when kept.
pub(crate) const IMPORTANT: &str = "Important";

/// The folders a message is shown in, given the names of the Sent and Drafts folders.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Names<'a> {
    pub sent: &'a str,
    pub drafts: &'a str,
}

impl Policy {
    /// Reads `[source.settings]` (already checked by the daemon against the declared ones).
    ///
    /// # Errors
    ///
    /// Permanent, naming the setting, for a value of the wrong type.
    pub fn from_settings(settings: &BTreeMap<String, SettingValue>) -> Result<Self, SourceError> {
        let mut p = Self::default();
        for (name, value) in settings {
            match (name.as_str(), value) {
                ("labels", SettingValue::Text(t)) if t == "folders" => p.folders = true,
                ("labels", SettingValue::Text(t)) if t == "keywords" => p.folders = false,
                ("important", SettingValue::Bool(b)) => p.important = *b,
                ("daily_download_mb", SettingValue::Int(mb)) if *mb >= 0 => {
                    p.daily_download = u64::try_from(*mb).unwrap_or(0).saturating_mul(1_000_000);
                }
                ("archive_folder", SettingValue::Text(t)) if !t.trim().is_empty() => {
                    p.archive = t.trim().to_owned();
                }
                _ => {
                    return Err(SourceError::permanent(format!(
                        "setting {name:?}: {value:?} is not accepted"
                    )));
                }
            }
        }
        Ok(p)
    }

    /// The folders a message with these labels appears in, each once, in a stable order.
    pub(crate) fn folders_of(&self, labels: &[String], names: Names<'_>) -> Vec<String> {
        let has = |l: &str| labels.iter().any(|x| x.eq_ignore_ascii_case(l));
        if !self.folders {
            let primary = if has("\\Draft") {
                names.drafts
            } else if has("\\Inbox") {
                INBOX
            } else if has("\\Sent") {
                names.sent
            } else {
                self.archive.as_str()
            };
            return vec![primary.to_owned()];
        }
        let mut out: Vec<String> = Vec::new();
        let mut add = |f: &str| {
            if !out.iter().any(|o| o == f) {
                out.push(f.to_owned());
            }
        };
        if has("\\Inbox") {
            add(INBOX);
        }
        if has("\\Sent") {
            add(names.sent);
        }
        if has("\\Draft") {
            add(names.drafts);
        }
        if self.important && has("\\Important") {
            add(IMPORTANT);
        }
        for l in labels.iter().filter(|l| !l.starts_with('\\')) {
            add(l);
        }
        if out.is_empty() {
            out.push(self.archive.clone());
        }
        out
    }

    /// The keywords a message gets (keyword policy: its user labels; `$Important` if kept).
    pub(crate) fn keywords_of(&self, labels: &[String]) -> Vec<String> {
        if self.folders {
            return Vec::new();
        }
        let mut out: Vec<String> = labels
            .iter()
            .filter(|l| !l.starts_with('\\'))
            .map(|l| keyword(l))
            .collect();
        if self.important && labels.iter().any(|l| l.eq_ignore_ascii_case("\\Important")) {
            out.push("$Important".to_owned());
        }
        out
    }
}

/// A label as an IMAP keyword: an atom, so non-ASCII is written in modified UTF-7 and spaces
/// and the characters an atom cannot hold become `_` (`Überweisungen` → `&ANw-berweisungen`,
/// `My Label` → `My_Label`).
pub fn keyword(label: &str) -> String {
    migrated_imap::utf7::encode(label)
        .chars()
        .map(|c| match c {
            ' ' | '(' | ')' | '{' | '%' | '*' | '"' | '\\' | ']' => '_',
            c if c.is_ascii_control() => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: Names<'static> = Names {
        sent: "[Gmail]/Sent Mail",
        drafts: "[Gmail]/Drafts",
    };

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn folders_policy_places_a_message_under_each_label_once() {
        let p = Policy::default();
        assert_eq!(
            p.folders_of(
                &labels(&["\\Inbox", "\\Important", "Work/Projects", "\\Starred"]),
                NAMES
            ),
            ["INBOX", "Work/Projects"]
        );
        assert_eq!(p.folders_of(&labels(&[]), NAMES), ["Archive"]);
        assert_eq!(
            p.folders_of(&labels(&["\\Important", "\\Starred"]), NAMES),
            ["Archive"]
        );
        assert_eq!(
            p.folders_of(&labels(&["\\Sent", "\\Inbox", "Überweisungen"]), NAMES),
            ["INBOX", "[Gmail]/Sent Mail", "Überweisungen"]
        );
        let keep = Policy {
            important: true,
            ..Policy::default()
        };
        assert_eq!(
            keep.folders_of(&labels(&["\\Important"]), NAMES),
            ["Important"]
        );
    }

    #[test]
    fn keyword_policy_gives_one_folder_and_keywords() {
        let p = Policy {
            folders: false,
            important: true,
            archive: "Old".into(),
            ..Policy::default()
        };
        let l = labels(&["\\Inbox", "\\Sent", "My Label", "日本", "\\Important"]);
        assert_eq!(p.folders_of(&l, NAMES), ["INBOX"]);
        assert_eq!(p.keywords_of(&l), ["My_Label", "&ZeVnLA-", "$Important"]);
        assert_eq!(p.folders_of(&labels(&["Work"]), NAMES), ["Old"]);
        assert_eq!(
            p.folders_of(&labels(&["\\Draft", "\\Inbox"]), NAMES),
            ["[Gmail]/Drafts"]
        );
    }

    #[test]
    fn settings_are_read() {
        let mut s = BTreeMap::new();
        s.insert("labels".to_owned(), SettingValue::Text("keywords".into()));
        s.insert(
            "archive_folder".to_owned(),
            SettingValue::Text(" Alt ".into()),
        );
        let p = Policy::from_settings(&s).unwrap();
        assert!(!p.folders);
        assert_eq!(p.archive, "Alt");
        s.insert("labels".to_owned(), SettingValue::Text("tags".into()));
        assert!(Policy::from_settings(&s).is_err());
    }
}
