//! The Gmail source: folders derived from labels, All Mail read once per session.

use std::collections::HashMap;

use migrated_core::{
    Flags, FolderInfo, FolderStatus, MessageMeta, Namespace, SourceConnector, SourceError,
    SourceSession, SpecialUse,
};
use migrated_imap::{Endpoint, FolderEntry, GmailMeta, ImapError, ImapSession};

use crate::labels::{IMPORTANT, INBOX, Names, Policy};

fn source_error(e: ImapError) -> SourceError {
    if e.is_temporary() {
        SourceError::temporary(e.to_string())
    } else {
        SourceError::permanent(e.to_string())
    }
}

/// Connects to a Gmail account.
#[derive(Debug, Clone)]
pub struct GmailSource {
    endpoint: Endpoint,
    policy: Policy,
}

impl GmailSource {
    /// A source for this account and label policy.
    pub fn new(endpoint: Endpoint, policy: Policy) -> Self {
        Self { endpoint, policy }
    }

    fn session(&self, imap: ImapSession) -> Result<GmailSession, SourceError> {
        if !imap.has("X-GM-EXT-1") {
            return Err(SourceError::permanent(format!(
                "{} does not offer X-GM-EXT-1: it is not Gmail; use plugin \"imap\" for it",
                self.endpoint.server()
            )));
        }
        Ok(GmailSession {
            imap,
            policy: self.policy.clone(),
            layout: None,
            all: None,
            open: None,
        })
    }
}

impl SourceConnector for GmailSource {
    type Session = GmailSession;

    async fn connect(&self) -> Result<GmailSession, SourceError> {
        let imap = ImapSession::connect(&self.endpoint)
            .await
            .map_err(source_error)?;
        self.session(imap)
    }

    async fn connect_observed(
        &self,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> Result<GmailSession, SourceError> {
        let imap = ImapSession::connect_observed(&self.endpoint, on_login)
            .await
            .map_err(source_error)?;
        self.session(imap)
    }
}

/// Gmail's own folders, found by role.
#[derive(Debug, Clone)]
struct Layout {
    all_mail: String,
    sent: String,
    drafts: String,
    /// Trash and Spam: not in All Mail, read as they are.
    real: Vec<FolderInfo>,
    /// User label folders as listed.
    labels: Vec<FolderEntry>,
    delimiter: char,
}

/// What is open.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Opened {
    Real,
    Virtual(String),
}

/// One session with Gmail.
#[derive(Debug)]
pub struct GmailSession {
    imap: ImapSession,
    policy: Policy,
    layout: Option<Layout>,
    /// All Mail, listed once per session.
    all: Option<Vec<GmailMeta>>,
    open: Option<Opened>,
}

impl GmailSession {
    async fn layout(&mut self) -> Result<Layout, SourceError> {
        if let Some(l) = &self.layout {
            return Ok(l.clone());
        }
        let entries = self.imap.list().await.map_err(source_error)?;
        let role = |r: &str| {
            entries
                .iter()
                .find(|e| {
                    e.special_use
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(r))
                })
                .map(|e| e.name.clone())
        };
        let Some(all_mail) = role("\\All") else {
            return Err(SourceError::permanent(
                "no folder has the \\All role (All Mail): enable \"Show in IMAP\" for All Mail \
                 in Gmail's settings, Labels tab",
            ));
        };
        let delimiter = entries.iter().find_map(|e| e.delimiter).unwrap_or('/');
        // The container of Gmail's own folders (`[Gmail]`, `[Google Mail]`): the parent of
        // All Mail.
        let system_parent = all_mail
            .rsplit_once(delimiter)
            .map(|(p, _)| p.to_owned())
            .unwrap_or_default();
        let mut real = Vec::new();
        let mut labels = Vec::new();
        for e in &entries {
            let r = e
                .special_use
                .as_deref()
                .and_then(SpecialUse::from_attribute);
            match r {
                Some(SpecialUse::Trash | SpecialUse::Junk) => real.push(FolderInfo {
                    name: e.name.clone(),
                    delimiter: e.delimiter,
                    no_select: e.no_select,
                    special_use: r,
                    subscribed: e.subscribed,
                }),
                _ if e.special_use.is_some() => {}
                _ if e.name.eq_ignore_ascii_case("INBOX") || e.name == system_parent => {}
                _ => labels.push(e.clone()),
            }
        }
        let layout = Layout {
            sent: role("\\Sent").unwrap_or_else(|| format!("{system_parent}{delimiter}Sent Mail")),
            drafts: role("\\Drafts").unwrap_or_else(|| format!("{system_parent}{delimiter}Drafts")),
            all_mail,
            real,
            labels,
            delimiter,
        };
        self.layout = Some(layout.clone());
        Ok(layout)
    }

    /// All Mail's messages, read once per session.
    async fn all_mail(&mut self) -> Result<&[GmailMeta], SourceError> {
        if self.all.is_none() {
            let layout = self.layout().await?;
            if self.open != Some(Opened::Virtual(String::new())) {
                self.imap
                    .open(&layout.all_mail, true)
                    .await
                    .map_err(source_error)?;
                self.open = Some(Opened::Virtual(String::new()));
            }
            let list = self.imap.gmail_meta(1, None).await.map_err(source_error)?;
            self.all = Some(list);
        }
        Ok(self.all.as_deref().unwrap_or_default())
    }

    fn meta(&self, m: &GmailMeta) -> MessageMeta {
        let mut flags = m.meta.flags.clone();
        if m.labels.iter().any(|l| l.eq_ignore_ascii_case("\\Starred")) {
            flags.push("\\Flagged".to_owned());
        }
        flags.extend(self.policy.keywords_of(&m.labels));
        MessageMeta {
            uid: m.meta.uid,
            size: m.meta.size,
            flags: Flags::new(&flags),
            internal_date: m.meta.internal_date.clone(),
            message_id: m.meta.message_id.clone(),
            modseq: None,
            // With one folder per label, the same message is in several folders: one upload.
            content_key: self.policy.folders.then(|| format!("gm:{}", m.msgid)),
        }
    }
}

fn names(layout: &Layout) -> Names<'_> {
    Names {
        sent: &layout.sent,
        drafts: &layout.drafts,
    }
}

impl SourceSession for GmailSession {
    fn namespace(&self) -> Namespace {
        let (prefix, delimiter) = self.imap.namespace();
        Namespace {
            prefix: prefix.to_owned(),
            delimiter,
        }
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, SourceError> {
        let layout = self.layout().await?;
        let policy = self.policy.clone();
        let mut folders: Vec<FolderInfo> = Vec::new();
        let mut add = |name: &str, role: Option<SpecialUse>, no_select: bool, subscribed: bool| {
            if !folders.iter().any(|f| f.name == name) {
                folders.push(FolderInfo {
                    name: name.to_owned(),
                    delimiter: Some(layout.delimiter),
                    no_select,
                    special_use: role,
                    subscribed,
                });
            }
        };
        add(INBOX, None, false, true);
        add(&layout.sent, Some(SpecialUse::Sent), false, true);
        add(&layout.drafts, Some(SpecialUse::Drafts), false, true);
        if policy.folders {
            if policy.important {
                add(IMPORTANT, None, false, true);
            }
            for l in &layout.labels {
                add(&l.name, None, l.no_select, l.subscribed);
            }
        }
        // Labels on messages that LIST did not show (hidden from IMAP in Gmail's settings).
        let used: Vec<String> = {
            let all = self.all_mail().await?;
            let mut seen: HashMap<String, ()> = HashMap::new();
            for m in all {
                for f in policy.folders_of(&m.labels, names(&layout)) {
                    seen.insert(f, ());
                }
            }
            seen.into_keys().collect()
        };
        let mut used = used;
        used.sort();
        let archive_role = Some(SpecialUse::Archive);
        for f in used {
            let role = if f == policy.archive {
                archive_role
            } else {
                None
            };
            add(&f, role, false, true);
        }
        for r in &layout.real {
            add(&r.name, r.special_use, r.no_select, r.subscribed);
        }
        Ok(folders)
    }

    async fn open_folder(&mut self, folder: &str) -> Result<FolderStatus, SourceError> {
        let layout = self.layout().await?;
        if layout.real.iter().any(|r| r.name == folder) {
            let s = self.imap.open(folder, true).await.map_err(source_error)?;
            self.open = Some(Opened::Real);
            return Ok(FolderStatus {
                uid_validity: s.uid_validity,
                uid_next: s.uid_next,
                messages: s.messages,
                highest_modseq: None,
            });
        }
        let s = self
            .imap
            .open(&layout.all_mail, true)
            .await
            .map_err(source_error)?;
        self.open = Some(Opened::Virtual(folder.to_owned()));
        let messages = match &self.all {
            Some(all) => all
                .iter()
                .filter(|m| {
                    self.policy
                        .folders_of(&m.labels, names(&layout))
                        .iter()
                        .any(|f| f == folder)
                })
                .count(),
            None => 0,
        };
        Ok(FolderStatus {
            // The folder is a view of All Mail: its UIDs are All Mail's.
            uid_validity: s.uid_validity,
            uid_next: s.uid_next,
            messages: u32::try_from(messages).unwrap_or(u32::MAX),
            // Label changes must be seen: no shortcut over an unchanged MODSEQ.
            highest_modseq: None,
        })
    }

    async fn list_messages(
        &mut self,
        min_uid: u32,
        _changed_since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, SourceError> {
        let folder = match &self.open {
            Some(Opened::Real) => {
                let list = self
                    .imap
                    .gmail_meta(min_uid, None)
                    .await
                    .map_err(source_error)?;
                return Ok(list.iter().map(|m| self.meta(m)).collect());
            }
            Some(Opened::Virtual(f)) => f.clone(),
            None => return Err(SourceError::permanent("no folder open")),
        };
        let layout = self.layout().await?;
        self.all_mail().await?;
        // Listing All Mail left it open under an empty name: the folder asked for is still
        // the one open for fetching (both are All Mail).
        self.open = Some(Opened::Virtual(folder.clone()));
        let all = self.all.as_deref().unwrap_or_default();
        Ok(all
            .iter()
            .filter(|m| m.meta.uid >= min_uid)
            .filter(|m| {
                self.policy
                    .folders_of(&m.labels, names(&layout))
                    .contains(&folder)
            })
            .map(|m| self.meta(m))
            .collect())
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<Option<Vec<u8>>>, SourceError> {
        self.imap.fetch_bodies(uids).await.map_err(source_error)
    }
}
