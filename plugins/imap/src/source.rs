//! The generic IMAP source: the engine's source calls on an IMAP account.

use migrated_core::{
    FolderInfo, FolderStatus, MessageMeta, Namespace, SourceConnector, SourceError, SourceSession,
};
use migrated_imap::{Endpoint, ImapSession};

/// Connects to an IMAP account as a source.
#[derive(Debug, Clone)]
pub struct ImapSource {
    endpoint: Endpoint,
}

impl ImapSource {
    /// A source for this account.
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }
}

/// One read-only session with the source.
#[derive(Debug)]
pub struct ImapSourceSession {
    imap: ImapSession,
    /// UIDNEXT of the open folder: listing pages stop there.
    uid_next: u32,
    /// UIDs per listing page, widened when UIDs are sparse.
    span: u32,
}

impl ImapSourceSession {
    fn new(imap: ImapSession) -> Self {
        Self {
            imap,
            uid_next: 0,
            span: 0,
        }
    }
}

impl SourceConnector for ImapSource {
    type Session = ImapSourceSession;

    async fn connect(&self) -> Result<ImapSourceSession, SourceError> {
        ImapSession::connect(&self.endpoint)
            .await
            .map(ImapSourceSession::new)
            .map_err(SourceError::from)
    }

    async fn connect_observed(
        &self,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> Result<ImapSourceSession, SourceError> {
        ImapSession::connect_observed(&self.endpoint, on_login)
            .await
            .map(ImapSourceSession::new)
            .map_err(SourceError::from)
    }
}

impl SourceSession for ImapSourceSession {
    fn namespace(&self) -> Namespace {
        let (prefix, delimiter) = self.imap.namespace();
        Namespace {
            prefix: prefix.to_owned(),
            delimiter,
        }
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, SourceError> {
        let entries = self.imap.list().await.map_err(SourceError::from)?;
        Ok(entries.into_iter().map(FolderInfo::from).collect())
    }

    async fn open_folder(&mut self, folder: &str) -> Result<FolderStatus, SourceError> {
        let s = self
            .imap
            .open(folder, true)
            .await
            .map_err(SourceError::from)?;
        self.uid_next = s.uid_next;
        self.span = 0;
        Ok(s)
    }

    async fn open_folder_since(
        &mut self,
        folder: &str,
        uid_validity: u32,
        modseq: u64,
    ) -> Result<(FolderStatus, Option<Vec<u32>>), SourceError> {
        let (s, vanished) = self
            .imap
            .examine_since(folder, uid_validity, modseq)
            .await
            .map_err(SourceError::from)?;
        self.uid_next = s.uid_next;
        self.span = 0;
        Ok((s, vanished))
    }

    async fn remove_copied(
        &mut self,
        folder: &str,
        uids: &[u32],
        expunge: bool,
    ) -> Result<bool, SourceError> {
        self.imap
            .open(folder, false)
            .await
            .map_err(SourceError::from)?;
        if expunge {
            self.imap.uid_expunge(uids).await.map_err(SourceError::from)
        } else {
            self.imap
                .flag_deleted(uids)
                .await
                .map_err(SourceError::from)?;
            Ok(true)
        }
    }

    async fn list_messages(
        &mut self,
        min_uid: u32,
        changed_since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, SourceError> {
        let list = self
            .imap
            .fetch_meta(min_uid, changed_since)
            .await
            .map_err(SourceError::from)?;
        Ok(list.into_iter().map(MessageMeta::from).collect())
    }

    async fn list_messages_page(
        &mut self,
        min_uid: u32,
        changed_since: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<MessageMeta>, Option<u32>), SourceError> {
        let min = min_uid.max(1);
        // A CONDSTORE listing is small by nature (what changed), and a folder opened without
        // UIDNEXT cannot be cut by UID: one page.
        if changed_since.is_some() || self.uid_next == 0 {
            return Ok((self.list_messages(min, changed_since).await?, None));
        }
        if min >= self.uid_next {
            return Ok((Vec::new(), None));
        }
        let limit = limit.max(1);
        if self.span == 0 {
            self.span = limit;
        }
        let last = self.uid_next - 1;
        let max = min.saturating_add(self.span - 1).min(last);
        let list = self
            .imap
            .fetch_meta_range(min, Some(max), None)
            .await
            .map_err(SourceError::from)?;
        // UIDs are often sparse (expunged mail): widen the window until pages fill up.
        let got = u32::try_from(list.len()).unwrap_or(u32::MAX);
        if got < limit / 4 {
            self.span = self.span.saturating_mul(4);
        } else if got > limit.saturating_mul(2) {
            self.span = (self.span / 2).max(1);
        }
        let next = (max < last).then(|| max + 1);
        Ok((list.into_iter().map(MessageMeta::from).collect(), next))
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<Option<Vec<u8>>>, SourceError> {
        self.imap
            .fetch_bodies(uids)
            .await
            .map_err(SourceError::from)
    }

    async fn fetch_body_part(
        &mut self,
        uid: u32,
        offset: u64,
        len: u32,
    ) -> Result<Option<Vec<u8>>, SourceError> {
        self.imap
            .fetch_body_part(uid, offset, len)
            .await
            .map_err(SourceError::from)
    }
}
