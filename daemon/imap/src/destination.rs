//! An IMAP account as the engine's mail destination: core's [`MailDestination`] over
//! [`ImapSession`], speaking core's types (each IMAP reply converted once, here), and the
//! provider knowledge a destination reports: Gmail's daily upload allowance, known by its
//! X-GM-EXT-1 capability and counted per account over every job of the process.

use migrated_core::allowance::{DailyAllowance, UploadMeter};
use migrated_core::{
    Append, DestinationError, Flags, FolderInfo, FolderStatus, MailDestination,
    MailDestinationSession, MessageMeta, Namespace, SpecialUse,
};

use crate::endpoint::Endpoint;
use crate::session::{AppendItem, ImapSession};

/// Gmail's daily limit for IMAP uploads per account.
pub const GMAIL_DAILY_UPLOAD: u64 = 500_000_000;

/// Bytes uploaded per destination account and UTC day, over every job of this process.
static UPLOADED: DailyAllowance = DailyAllowance::new();

/// Connects to an IMAP account as the destination.
#[derive(Debug, Clone)]
pub struct ImapDestination {
    endpoint: Endpoint,
    /// `user@host:port`: the account's key in the upload counter.
    account: String,
}

impl ImapDestination {
    /// A destination for this account.
    pub fn new(endpoint: Endpoint) -> Self {
        let account = format!("{}@{}", endpoint.user, endpoint.server());
        Self { endpoint, account }
    }

    /// The account's endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// One session with the destination.
#[derive(Debug)]
pub struct ImapDestinationSession(pub ImapSession);

impl MailDestination for ImapDestination {
    type Session = ImapDestinationSession;

    async fn connect(&self) -> Result<ImapDestinationSession, DestinationError> {
        Ok(ImapDestinationSession(
            ImapSession::connect(&self.endpoint).await?,
        ))
    }

    async fn connect_observed(
        &self,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> Result<ImapDestinationSession, DestinationError> {
        Ok(ImapDestinationSession(
            ImapSession::connect_observed(&self.endpoint, on_login).await?,
        ))
    }

    fn upload_meter(&self) -> UploadMeter<'_> {
        UploadMeter {
            account: &self.account,
            counter: &UPLOADED,
        }
    }
}

impl MailDestinationSession for ImapDestinationSession {
    fn namespace(&self) -> Namespace {
        let (prefix, delimiter) = self.0.namespace();
        Namespace {
            prefix: prefix.to_owned(),
            delimiter,
        }
    }

    async fn list_folders(&mut self) -> Result<Vec<FolderInfo>, DestinationError> {
        Ok(self.0.list().await?.into_iter().map(Into::into).collect())
    }

    async fn create_folder(
        &mut self,
        folder: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<(), DestinationError> {
        Ok(self
            .0
            .create(folder, special_use.map(SpecialUse::attribute))
            .await?)
    }

    async fn subscribe(&mut self, folder: &str) -> Result<(), DestinationError> {
        Ok(self.0.subscribe(folder).await?)
    }

    async fn status(&mut self, folder: &str) -> Result<FolderStatus, DestinationError> {
        Ok(self.0.status(folder).await?)
    }

    async fn open_folder(
        &mut self,
        folder: &str,
        read_only: bool,
    ) -> Result<FolderStatus, DestinationError> {
        Ok(self.0.open(folder, read_only).await?)
    }

    async fn list_messages(&mut self, min_uid: u32) -> Result<Vec<MessageMeta>, DestinationError> {
        let listing = self.0.fetch_meta(min_uid, None).await?;
        Ok(listing.into_iter().map(Into::into).collect())
    }

    async fn fetch_bodies(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<Option<Vec<u8>>>, DestinationError> {
        Ok(self.0.fetch_bodies(uids).await?)
    }

    fn multiappend(&self) -> bool {
        self.0.has("MULTIAPPEND")
    }

    async fn append(
        &mut self,
        folder: &str,
        messages: &[Append<'_>],
    ) -> Result<Option<Vec<u32>>, DestinationError> {
        // One message (a server without MULTIAPPEND gets every message so): no list built.
        if let [m] = messages {
            let flags = m.flags.to_imap_list();
            let item = [AppendItem {
                flags: &flags,
                internal_date: m.internal_date,
                body: m.body,
            }];
            return Ok(self.0.append(folder, &item).await?);
        }
        let flag_lists: Vec<String> = messages.iter().map(|m| m.flags.to_imap_list()).collect();
        let items: Vec<AppendItem<'_>> = messages
            .iter()
            .zip(&flag_lists)
            .map(|(m, flags)| AppendItem {
                flags,
                internal_date: m.internal_date,
                body: m.body,
            })
            .collect();
        Ok(self.0.append(folder, &items).await?)
    }

    async fn copy_messages(
        &mut self,
        uids: &[u32],
        target: &str,
    ) -> Result<Option<Vec<(u32, u32)>>, DestinationError> {
        Ok(self.0.copy(uids, target).await?)
    }

    async fn store_flags(&mut self, uids: &[u32], flags: &Flags) -> Result<(), DestinationError> {
        Ok(self.0.store_flags(uids, &flags.to_imap_list()).await?)
    }

    async fn expunge(&mut self, uids: &[u32]) -> Result<bool, DestinationError> {
        Ok(self.0.uid_expunge(uids).await?)
    }

    fn upload_allowance(&self) -> Option<u64> {
        self.0.has("X-GM-EXT-1").then_some(GMAIL_DAILY_UPLOAD)
    }

    async fn logout(self) {
        self.0.logout().await;
    }
}
