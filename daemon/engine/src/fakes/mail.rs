//! The fake mail source and destination over a shared [`Mailbox`]: the source trait and the
//! destination trait as an IMAP server with UIDPLUS (and MULTIAPPEND unless told otherwise)
//! would answer them, with the faults of [`super::Faults`].

use std::sync::Arc;

use migrated_core::allowance::{DailyAllowance, UploadMeter};
use migrated_core::{
    Append, Cause, DestinationError, Flags, FolderInfo, FolderStatus, MailDestination,
    MailDestinationSession, MessageMeta, Namespace, SourceConnector, SourceError, SourceSession,
};

use super::{Landing, Mailbox, Shared, Stored, lock};

/// The Message-ID header of a body, as a listing shows it.
fn message_id(body: &[u8]) -> Option<String> {
    String::from_utf8_lossy(body)
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID:").map(|v| v.trim().to_owned()))
}

fn status(m: &Mailbox, folder: &str) -> Option<FolderStatus> {
    m.folders.get(folder).map(|f| FolderStatus {
        uid_validity: f.uid_validity,
        uid_next: f.uid_next,
        messages: u32::try_from(f.messages.len()).unwrap_or(u32::MAX),
        highest_modseq: None,
    })
}

fn folders(m: &Mailbox) -> Vec<FolderInfo> {
    m.folders
        .iter()
        .map(|(name, f)| FolderInfo {
            name: name.clone(),
            delimiter: Some(m.delimiter),
            no_select: false,
            special_use: f.special_use,
            subscribed: f.subscribed,
        })
        .collect()
}

fn listing(m: &Mailbox, folder: &str, min_uid: u32) -> Vec<MessageMeta> {
    m.folders
        .get(folder)
        .map(|f| {
            f.messages
                .range(min_uid.max(1)..)
                .map(|(uid, s)| MessageMeta {
                    uid: *uid,
                    size: u32::try_from(s.body.len()).unwrap_or(u32::MAX),
                    flags: s.flags.clone(),
                    internal_date: s.internal_date.clone(),
                    message_id: message_id(&s.body),
                    subject: None,
                    modseq: None,
                    content_key: None,
                    date: None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Takes `bytes` from the cut budget: `true` when the connection breaks here (the fault
/// then clears).
fn cut(m: &mut Mailbox, bytes: u64) -> bool {
    match m.faults.cut_after_bytes {
        Some(left) if bytes > left => {
            m.faults.cut_after_bytes = None;
            m.counts.faults_fired += 1;
            true
        }
        Some(left) => {
            m.faults.cut_after_bytes = Some(left - bytes);
            false
        }
        None => false,
    }
}

/// The bodies of `uids` in `folder`, counted against the cut budget.
fn bodies(m: &mut Mailbox, folder: &str, uids: &[u32]) -> Option<Vec<Option<Vec<u8>>>> {
    let found: Vec<Option<Vec<u8>>> = uids
        .iter()
        .map(|u| {
            m.folders
                .get(folder)
                .and_then(|f| f.messages.get(u))
                .map(|s| s.body.clone())
        })
        .collect();
    let bytes: u64 = found.iter().flatten().map(|b| b.len() as u64).sum();
    if cut(m, bytes) {
        return None;
    }
    m.counts.fetched_bytes += bytes;
    Some(found)
}

/// A mail source over a shared mailbox.
pub(crate) struct FakeSource(pub Shared);

/// A session of a [`FakeSource`].
pub(crate) struct FakeSourceSession {
    mailbox: Shared,
    open: Option<String>,
}

impl SourceConnector for FakeSource {
    type Session = FakeSourceSession;

    async fn connect(&self) -> Result<FakeSourceSession, SourceError> {
        lock(&self.0).counts.connections += 1;
        Ok(FakeSourceSession {
            mailbox: self.0.clone(),
            open: None,
        })
    }
}

impl FakeSourceSession {
    fn open(&self) -> Result<String, SourceError> {
        self.open
            .clone()
            .ok_or_else(|| SourceError::permanent("fake source: no folder open"))
    }
}

impl SourceSession for FakeSourceSession {
    fn namespace(&self) -> Namespace {
        let m = lock(&self.mailbox);
        Namespace {
            prefix: m.prefix.clone(),
            delimiter: m.delimiter,
        }
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, SourceError> {
        Ok(folders(&lock(&self.mailbox)))
    }

    async fn open_folder(&mut self, folder: &str) -> Result<FolderStatus, SourceError> {
        let s = status(&lock(&self.mailbox), folder)
            .ok_or_else(|| SourceError::permanent(format!("fake source: no folder {folder:?}")))?;
        self.open = Some(folder.to_owned());
        Ok(s)
    }

    async fn list_messages(
        &mut self,
        min_uid: u32,
        _changed_since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, SourceError> {
        let folder = self.open()?;
        Ok(listing(&lock(&self.mailbox), &folder, min_uid))
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<Option<Vec<u8>>>, SourceError> {
        let folder = self.open()?;
        bodies(&mut lock(&self.mailbox), &folder, uids).ok_or_else(|| {
            SourceError::temporary("fake source: connection reset during UID FETCH")
                .with_cause(Cause::Network)
        })
    }
}

/// A mail destination over a shared mailbox, with its own upload counter.
pub(crate) struct FakeDestination {
    pub mailbox: Shared,
    /// Whether several messages go in one atomic APPEND.
    pub multiappend: bool,
    /// The daily allowance its sessions report.
    pub allowance: Option<u64>,
    /// Its upload counter (its own: tests do not share one).
    pub counter: Arc<DailyAllowance>,
}

impl FakeDestination {
    /// A destination with MULTIAPPEND and no allowance.
    pub(crate) fn new(mailbox: Shared) -> Self {
        Self {
            mailbox,
            multiappend: true,
            allowance: None,
            counter: Arc::new(DailyAllowance::new()),
        }
    }
}

/// A session of a [`FakeDestination`].
pub(crate) struct FakeDestinationSession {
    mailbox: Shared,
    multiappend: bool,
    allowance: Option<u64>,
    open: Option<String>,
}

impl MailDestination for FakeDestination {
    type Session = FakeDestinationSession;

    async fn connect(&self) -> Result<FakeDestinationSession, DestinationError> {
        lock(&self.mailbox).counts.connections += 1;
        Ok(FakeDestinationSession {
            mailbox: self.mailbox.clone(),
            multiappend: self.multiappend,
            allowance: self.allowance,
            open: None,
        })
    }

    fn upload_meter(&self) -> UploadMeter<'_> {
        UploadMeter {
            account: "alice@fake:993",
            counter: &self.counter,
        }
    }
}

fn no_folder(folder: &str) -> DestinationError {
    DestinationError::permanent(format!(
        "fake:993 refused {folder:?}: NO [NONEXISTENT] no such folder"
    ))
}

fn reset(what: &str) -> DestinationError {
    DestinationError::temporary(format!(
        "fake:993 closed the connection during {what}: connection reset"
    ))
    .with_cause(Cause::Network)
}

impl FakeDestinationSession {
    fn open(&self) -> Result<String, DestinationError> {
        self.open
            .clone()
            .ok_or_else(|| DestinationError::permanent("fake:993: no folder open"))
    }
}

impl MailDestinationSession for FakeDestinationSession {
    fn namespace(&self) -> Namespace {
        let m = lock(&self.mailbox);
        Namespace {
            prefix: m.prefix.clone(),
            delimiter: m.delimiter,
        }
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, DestinationError> {
        Ok(folders(&lock(&self.mailbox)))
    }

    async fn create_folder(
        &mut self,
        folder: &str,
        special_use: Option<migrated_core::SpecialUse>,
    ) -> Result<(), DestinationError> {
        let mut m = lock(&self.mailbox);
        m.create(folder, special_use);
        if let Some(f) = m.folders.get_mut(folder) {
            f.subscribed = false;
        }
        Ok(())
    }

    async fn subscribe(&mut self, folder: &str) -> Result<(), DestinationError> {
        let mut m = lock(&self.mailbox);
        let f = m.folders.get_mut(folder).ok_or_else(|| no_folder(folder))?;
        f.subscribed = true;
        Ok(())
    }

    async fn status(&mut self, folder: &str) -> Result<FolderStatus, DestinationError> {
        status(&lock(&self.mailbox), folder).ok_or_else(|| no_folder(folder))
    }

    async fn open_folder(
        &mut self,
        folder: &str,
        _read_only: bool,
    ) -> Result<FolderStatus, DestinationError> {
        let mut m = lock(&self.mailbox);
        m.opening();
        let s = status(&m, folder).ok_or_else(|| no_folder(folder))?;
        drop(m);
        self.open = Some(folder.to_owned());
        Ok(s)
    }

    async fn list_messages(&mut self, min_uid: u32) -> Result<Vec<MessageMeta>, DestinationError> {
        let folder = self.open()?;
        Ok(listing(&lock(&self.mailbox), &folder, min_uid))
    }

    async fn fetch_bodies(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<Option<Vec<u8>>>, DestinationError> {
        let folder = self.open()?;
        bodies(&mut lock(&self.mailbox), &folder, uids).ok_or_else(|| reset("UID FETCH"))
    }

    fn multiappend(&self) -> bool {
        self.multiappend
    }

    async fn append(
        &mut self,
        folder: &str,
        messages: &[Append<'_>],
    ) -> Result<Option<Vec<u32>>, DestinationError> {
        let mut m = lock(&self.mailbox);
        if !m.folders.contains_key(folder) {
            return Err(no_folder(folder));
        }
        let bytes: u64 = messages.iter().map(|a| a.body.len() as u64).sum();
        // The command never reaches the server whole: nothing is stored.
        if cut(&mut m, bytes) {
            return Err(reset("APPEND"));
        }
        if let Some(quota) = m.faults.quota_bytes
            && m.used_bytes() + bytes > quota
        {
            m.counts.faults_fired += 1;
            return Err(DestinationError::permanent(format!(
                "fake:993 refused APPEND to {folder:?}: NO [OVERQUOTA] Quota exceeded (mailbox \
                 holds {} of {quota} bytes)",
                m.used_bytes()
            ))
            .with_cause(Cause::Quota));
        }
        if let Some(needle) = &m.faults.refuse_containing
            && messages
                .iter()
                .any(|a| a.body.windows(needle.len()).any(|w| w == needle.as_slice()))
        {
            m.counts.refused += 1;
            return Err(DestinationError::permanent(format!(
                "fake:993 refused APPEND to {folder:?}: NO Message contains invalid header"
            )));
        }
        if let Some(opens_left) = m.faults.stored_at_open.take() {
            m.counts.faults_fired += 1;
            m.landing = Some(Landing {
                folder: folder.to_owned(),
                opens_left,
                messages: messages
                    .iter()
                    .map(|a| (a.body.to_vec(), a.flags.clone(), a.internal_date.to_owned()))
                    .collect(),
            });
            return Err(reset("APPEND"));
        }
        let uids: Vec<u32> = messages
            .iter()
            .map(|a| m.add(folder, a.body.to_vec(), a.flags.clone()))
            .collect();
        if let Some(f) = m.folders.get_mut(folder) {
            for (uid, a) in uids.iter().zip(messages) {
                if let Some(s) = f.messages.get_mut(uid) {
                    s.internal_date = a.internal_date.to_owned();
                }
            }
        }
        m.counts.appends += 1;
        m.counts.appended += u32::try_from(uids.len()).unwrap_or(u32::MAX);
        // Stored, but the reply is lost on the way back.
        if m.faults.late_appends > 0 {
            m.faults.late_appends -= 1;
            m.counts.faults_fired += 1;
            return Err(reset("APPEND"));
        }
        Ok(Some(uids))
    }

    async fn copy_messages(
        &mut self,
        uids: &[u32],
        target: &str,
    ) -> Result<Option<Vec<(u32, u32)>>, DestinationError> {
        let from = self.open()?;
        let mut m = lock(&self.mailbox);
        if !m.folders.contains_key(target) {
            return Err(no_folder(target));
        }
        let copies: Vec<(u32, Stored)> = uids
            .iter()
            .filter_map(|u| {
                let s = m.folders.get(&from)?.messages.get(u)?;
                Some((*u, s.clone()))
            })
            .collect();
        Ok(Some(
            copies
                .into_iter()
                .map(|(u, s)| (u, m.add(target, s.body, s.flags)))
                .collect(),
        ))
    }

    async fn store_flags(&mut self, uids: &[u32], flags: &Flags) -> Result<(), DestinationError> {
        let folder = self.open()?;
        let mut m = lock(&self.mailbox);
        let f = m
            .folders
            .get_mut(&folder)
            .ok_or_else(|| no_folder(&folder))?;
        for u in uids {
            if let Some(s) = f.messages.get_mut(u) {
                s.flags = flags.clone();
            }
        }
        Ok(())
    }

    fn upload_allowance(&self) -> Option<u64> {
        self.allowance
    }
}
