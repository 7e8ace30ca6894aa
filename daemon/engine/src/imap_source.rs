//! The generic IMAP source (moves behind the plugin ABI in a later issue).

use migrated_core::{
    Flags, FolderInfo, FolderStatus, MessageMeta, Namespace, SourceConnector, SourceError,
    SourceSession, SpecialUse,
};
use migrated_imap::{Endpoint, ImapSession};

use crate::error::source_error;

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
pub struct ImapSourceSession(ImapSession);

impl SourceConnector for ImapSource {
    type Session = ImapSourceSession;

    async fn connect(&self) -> Result<ImapSourceSession, SourceError> {
        ImapSession::connect(&self.endpoint)
            .await
            .map(ImapSourceSession)
            .map_err(source_error)
    }

    async fn connect_observed(
        &self,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> Result<ImapSourceSession, SourceError> {
        ImapSession::connect_observed(&self.endpoint, on_login)
            .await
            .map(ImapSourceSession)
            .map_err(source_error)
    }
}

impl SourceSession for ImapSourceSession {
    fn namespace(&self) -> Namespace {
        let (prefix, delimiter) = self.0.namespace();
        Namespace {
            prefix: prefix.to_owned(),
            delimiter,
        }
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, SourceError> {
        let entries = self.0.list().await.map_err(source_error)?;
        Ok(entries
            .into_iter()
            .map(|e| FolderInfo {
                special_use: e
                    .special_use
                    .as_deref()
                    .and_then(SpecialUse::from_attribute),
                name: e.name,
                delimiter: e.delimiter,
                no_select: e.no_select,
                subscribed: e.subscribed,
            })
            .collect())
    }

    async fn open_folder(&mut self, folder: &str) -> Result<FolderStatus, SourceError> {
        let s = self.0.open(folder, true).await.map_err(source_error)?;
        Ok(FolderStatus {
            uid_validity: s.uid_validity,
            uid_next: s.uid_next,
            messages: s.messages,
            highest_modseq: s.highest_modseq,
        })
    }

    async fn list_messages(
        &mut self,
        min_uid: u32,
        changed_since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, SourceError> {
        let list = self
            .0
            .fetch_meta(min_uid, changed_since)
            .await
            .map_err(source_error)?;
        Ok(list
            .into_iter()
            .map(|m| MessageMeta {
                uid: m.uid,
                size: m.size,
                flags: Flags::new(&m.flags),
                internal_date: m.internal_date,
                message_id: m.message_id,
                modseq: m.modseq,
            })
            .collect())
    }

    async fn fetch_bodies(&mut self, uids: &[u32]) -> Result<Vec<Option<Vec<u8>>>, SourceError> {
        self.0.fetch_bodies(uids).await.map_err(source_error)
    }
}
