//! The Gmail source: folders derived from labels, All Mail read once per session.

use std::collections::HashMap;

use migrated_core::{
    Flags, FolderInfo, FolderStatus, MessageMeta, Namespace, SourceConnector, SourceError,
    SourceSession, SpecialUse,
};
use migrated_imap::{Endpoint, FolderEntry, GmailMeta, ImapSession};

use crate::labels::{IMPORTANT, INBOX, Names, Policy};

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
            user: self.endpoint.user.clone(),
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
            .map_err(SourceError::from)?;
        self.session(imap)
    }

    async fn connect_observed(
        &self,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> Result<GmailSession, SourceError> {
        let imap = ImapSession::connect_observed(&self.endpoint, on_login)
            .await
            .map_err(SourceError::from)?;
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

/// All Mail as listed, and which of its messages each folder shows (worked out once, not per
/// folder and call).
#[derive(Debug)]
struct AllMail {
    messages: Vec<GmailMeta>,
    by_folder: HashMap<String, Vec<usize>>,
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
    /// The account, for its daily download allowance.
    user: String,
    policy: Policy,
    layout: Option<Layout>,
    /// All Mail, listed once per session.
    all: Option<AllMail>,
    open: Option<Opened>,
}

impl GmailSession {
    async fn layout(&mut self) -> Result<Layout, SourceError> {
        if let Some(l) = &self.layout {
            return Ok(l.clone());
        }
        let entries = self.imap.list().await.map_err(SourceError::from)?;
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
    async fn all_mail(&mut self) -> Result<&AllMail, SourceError> {
        if self.all.is_none() {
            let layout = self.layout().await?;
            if self.open != Some(Opened::Virtual(String::new())) {
                self.imap
                    .open(&layout.all_mail, true)
                    .await
                    .map_err(SourceError::from)?;
                self.open = Some(Opened::Virtual(String::new()));
            }
            let messages = self
                .imap
                .gmail_meta(1, None)
                .await
                .map_err(SourceError::from)?;
            let mut by_folder: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, m) in messages.iter().enumerate() {
                for f in self.policy.folders_of(&m.labels, names(&layout)) {
                    by_folder.entry(f).or_default().push(i);
                }
            }
            self.all = Some(AllMail {
                messages,
                by_folder,
            });
        }
        match &self.all {
            Some(all) => Ok(all),
            None => unreachable!("listed above"),
        }
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
            subject: m.meta.subject.clone(),
            modseq: None,
            // With one folder per label, the same message is in several folders: one upload.
            content_key: self.policy.folders.then(|| format!("gm:{}", m.msgid)),
            date: m.meta.date,
        }
    }
}

/// Bytes downloaded per account and UTC day, over every session of this process. Gmail allows
/// 2,500 MB of IMAP downloads per account and day; past that it locks IMAP access for hours.
static DOWNLOADED: migrated_core::allowance::DailyAllowance =
    migrated_core::allowance::DailyAllowance::new();

/// Refuses to download more today once the account's daily limit is used: a temporary error
/// in Gmail's and Office 365's words, which the engine waits out (the job shows Throttled
/// until 00:00 UTC) instead of failing.
fn daily_allowance(user: &str, limit: u64) -> Result<(), SourceError> {
    DOWNLOADED.check(user, limit).map_err(|(used, rest)| {
        SourceError::temporary(format!(
            "NO [THROTTLED] {user} has downloaded {:.0} MB today, Gmail's daily IMAP limit is {:.0} MB; \
             the job continues at 00:00 UTC. Suggested Backoff Time: {rest} seconds",
            used as f64 / 1e6,
            limit as f64 / 1e6
        ))
        .with_cause(migrated_core::Cause::Throttled)
    })
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
        let mut used: Vec<String> = self.all_mail().await?.by_folder.keys().cloned().collect();
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
            let s = self
                .imap
                .open(folder, true)
                .await
                .map_err(SourceError::from)?;
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
            .map_err(SourceError::from)?;
        self.open = Some(Opened::Virtual(folder.to_owned()));
        let messages = self
            .all
            .as_ref()
            .and_then(|all| all.by_folder.get(folder))
            .map_or(0, Vec::len);
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
                    .map_err(SourceError::from)?;
                return Ok(list.iter().map(|m| self.meta(m)).collect());
            }
            Some(Opened::Virtual(f)) => f.clone(),
            None => return Err(SourceError::permanent("no folder open")),
        };
        self.all_mail().await?;
        // Listing All Mail left it open under an empty name: the folder asked for is still
        // the one open for fetching (both are All Mail).
        self.open = Some(Opened::Virtual(folder.clone()));
        let Some(all) = &self.all else {
            unreachable!("listed above")
        };
        Ok(all
            .by_folder
            .get(&folder)
            .into_iter()
            .flatten()
            .map(|&i| &all.messages[i])
            .filter(|m| m.meta.uid >= min_uid)
            .map(|m| self.meta(m))
            .collect())
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<Option<Vec<u8>>>, SourceError> {
        let user = self.user.clone();
        daily_allowance(&user, self.policy.daily_download)?;
        let bodies = self
            .imap
            .fetch_bodies(uids)
            .await
            .map_err(SourceError::from)?;
        let bytes: u64 = bodies.iter().flatten().map(|b| b.len() as u64).sum();
        DOWNLOADED.count(&user, bytes);
        Ok(bodies)
    }

    async fn fetch_body_part(
        &mut self,
        uid: u32,
        offset: u64,
        len: u32,
    ) -> Result<Option<Vec<u8>>, SourceError> {
        let user = self.user.clone();
        daily_allowance(&user, self.policy.daily_download)?;
        let part = self
            .imap
            .fetch_body_part(uid, offset, len)
            .await
            .map_err(SourceError::from)?;
        DOWNLOADED.count(&user, part.as_ref().map_or(0, |p| p.len() as u64));
        Ok(part)
    }
}
