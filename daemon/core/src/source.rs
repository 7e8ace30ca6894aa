//! The source trait: what the engine needs from any mail source. Plugins implement it behind the
//! C table of `migrated-plugin-api`; the daemon's adapter implements it by calling that table.

use std::future::Future;

use crate::error::SourceError;
use crate::folder::{FolderInfo, Namespace};
use crate::message::MessageMeta;

/// The state of a folder that tells whether anything changed since the last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct FolderStatus {
    /// UIDVALIDITY: when it changes, every UID the ledger holds for the folder is void.
    pub uid_validity: u32,
    /// The UID the next message will get.
    pub uid_next: u32,
    /// Number of messages.
    pub messages: u32,
    /// HIGHESTMODSEQ when the server offers CONDSTORE.
    pub highest_modseq: Option<u64>,
}

/// Opens sessions to a source. The engine opens several to copy folders in parallel.
pub trait SourceConnector: Send + Sync {
    /// One connection to the source.
    type Session: SourceSession;

    /// Connects and authenticates.
    ///
    /// # Errors
    ///
    /// Temporary for network trouble, permanent for refused credentials, with the server's words.
    fn connect(&self) -> impl Future<Output = Result<Self::Session, SourceError>> + Send;

    /// As [`SourceConnector::connect`], calling `on_login` when the connection is up and the
    /// login begins. Sources that cannot tell the two apart need not override it.
    ///
    /// # Errors
    ///
    /// As for [`SourceConnector::connect`].
    fn connect_observed(
        &self,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> impl Future<Output = Result<Self::Session, SourceError>> + Send {
        drop(on_login);
        self.connect()
    }
}

/// One session with a source.
pub trait SourceSession: Send {
    /// The personal namespace (prefix and separator).
    fn namespace(&self) -> Namespace;

    /// Lists every folder with its role and subscription.
    ///
    /// # Errors
    ///
    /// As for [`SourceConnector::connect`].
    fn list_folders(&mut self)
    -> impl Future<Output = Result<Vec<FolderInfo>, SourceError>> + Send;

    /// Opens a folder read-only and returns its state.
    ///
    /// # Errors
    ///
    /// Permanent if the folder does not exist.
    fn open_folder(
        &mut self,
        folder: &str,
    ) -> impl Future<Output = Result<FolderStatus, SourceError>> + Send;

    /// Opens a folder read-only as [`SourceSession::open_folder`] does, telling the source the
    /// folder's UIDVALIDITY and HIGHESTMODSEQ at the end of the last complete pass. A source
    /// that can (IMAP with QRESYNC) returns the UIDs expunged since then; `None` means it cannot
    /// tell (no QRESYNC, or the UIDVALIDITY changed) and the caller compares UIDs itself. The
    /// default opens the folder and says `None`.
    ///
    /// # Errors
    ///
    /// As for [`SourceSession::open_folder`].
    fn open_folder_since(
        &mut self,
        folder: &str,
        uid_validity: u32,
        modseq: u64,
    ) -> impl Future<Output = Result<(FolderStatus, Option<Vec<u32>>), SourceError>> + Send {
        let _ = (uid_validity, modseq);
        async move { Ok((self.open_folder(folder).await?, None)) }
    }

    /// Move mode: marks these messages of `folder` `\Deleted` and, with `expunge`, removes
    /// exactly them (`UID EXPUNGE`), after their copies were confirmed on the destination.
    /// Returns whether the source could; the default cannot (`Ok(false)`). The folder is left
    /// selected read-write: open it again before listing.
    ///
    /// # Errors
    ///
    /// As for [`SourceSession::open_folder`].
    fn remove_copied(
        &mut self,
        folder: &str,
        uids: &[u32],
        expunge: bool,
    ) -> impl Future<Output = Result<bool, SourceError>> + Send {
        let _ = (folder, uids, expunge);
        async { Ok(false) }
    }

    /// Lists the messages of the open folder with UID >= `min_uid`; with `changed_since`, only
    /// those whose MODSEQ is higher (CONDSTORE).
    ///
    /// # Errors
    ///
    /// As for [`SourceConnector::connect`].
    fn list_messages(
        &mut self,
        min_uid: u32,
        changed_since: Option<u64>,
    ) -> impl Future<Output = Result<Vec<MessageMeta>, SourceError>> + Send;

    /// One page of [`SourceSession::list_messages`]: at most about `limit` messages with UID >=
    /// `min_uid`, and the UID to continue from, `None` after the last page. Sources that can
    /// bound a listing (IMAP by UID ranges) override it; the default lists everything at once.
    ///
    /// # Errors
    ///
    /// As for [`SourceSession::list_messages`].
    fn list_messages_page(
        &mut self,
        min_uid: u32,
        changed_since: Option<u64>,
        limit: u32,
    ) -> impl Future<Output = Result<(Vec<MessageMeta>, Option<u32>), SourceError>> + Send {
        let _ = limit;
        async move { Ok((self.list_messages(min_uid, changed_since).await?, None)) }
    }

    /// Fetches the full bytes of the given messages of the open folder, in the order asked.
    /// A message that vanished (expunged meanwhile) is `None`.
    ///
    /// # Errors
    ///
    /// As for [`SourceConnector::connect`].
    fn fetch_bodies(
        &mut self,
        uids: &[u32],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, SourceError>> + Send;

    /// Part of one message of the open folder: the bytes from `offset`, at most `len` of them
    /// (fewer at the end of the message; none past it), so that a large message can be read in
    /// parts and held once. `None` if the message vanished.
    ///
    /// A source that cannot read parts may return everything from `offset` to the end, more
    /// than `len`: the caller then knows it has the rest. The default does that, fetching the
    /// whole message each time.
    ///
    /// # Errors
    ///
    /// As for [`SourceSession::fetch_bodies`].
    fn fetch_body_part(
        &mut self,
        uid: u32,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, SourceError>> + Send {
        let _ = len;
        whole_from(self, uid, offset)
    }
}

/// What [`SourceSession::fetch_body_part`] does for a source without parts: the whole message
/// is fetched and the bytes from `offset` returned.
///
/// # Errors
///
/// As for [`SourceSession::fetch_bodies`].
pub async fn whole_from<S: SourceSession + ?Sized>(
    session: &mut S,
    uid: u32,
    offset: u64,
) -> Result<Option<Vec<u8>>, SourceError> {
    let body = session.fetch_bodies(&[uid]).await?.pop().flatten();
    Ok(body.map(|b| {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
        if start == 0 { b } else { b[start..].to_vec() }
    }))
}
