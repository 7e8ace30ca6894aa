//! The destination traits: what the engines need from where mail and contacts go. The IMAP
//! crate implements [`MailDestination`], the CardDAV crate [`ContactsDestination`]; the
//! engine's unit tests implement both in memory. Everything a destination says is in core's
//! types ([`FolderInfo`], [`FolderStatus`], [`MessageMeta`], [`AddressBook`], [`ContactData`]),
//! each client converting its own once at its boundary.
//!
//! Provider knowledge stays with the destination: a daily upload allowance (Gmail's) is a
//! capability its session reports ([`MailDestinationSession::upload_allowance`]), counted on
//! the meter its connector gives ([`MailDestination::upload_meter`]).

use std::future::Future;

use crate::allowance::UploadMeter;
use crate::contacts::{AddressBook, ContactData};
use crate::error::DestinationError;
use crate::folder::{FolderInfo, Namespace, SpecialUse};
use crate::message::{Flags, MessageMeta};
use crate::source::FolderStatus;

/// Opens sessions to a mail destination. The engine opens one per worker.
pub trait MailDestination: Send + Sync {
    /// One connection to the destination.
    type Session: MailDestinationSession;

    /// Connects and authenticates.
    ///
    /// # Errors
    ///
    /// Temporary for network trouble, permanent for refused credentials (with
    /// [`crate::Cause::Authentication`]), with the server's words.
    fn connect(&self) -> impl Future<Output = Result<Self::Session, DestinationError>> + Send;

    /// As [`MailDestination::connect`], calling `on_login` when the connection is up and the
    /// login begins. Destinations that cannot tell the two apart need not override it.
    ///
    /// # Errors
    ///
    /// As for [`MailDestination::connect`].
    fn connect_observed(
        &self,
        on_login: Box<dyn FnOnce() + Send>,
    ) -> impl Future<Output = Result<Self::Session, DestinationError>> + Send {
        drop(on_login);
        self.connect()
    }

    /// Where the bytes this account receives are counted per UTC day, for a daily upload
    /// allowance (the job's own, or the one a session reports).
    fn upload_meter(&self) -> UploadMeter<'_>;
}

/// One message to append: its flags, INTERNALDATE and bytes, borrowed from the copy in hand.
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    /// Flags and keywords to set.
    pub flags: &'a Flags,
    /// INTERNALDATE exactly as the source sent it.
    pub internal_date: &'a str,
    /// The message, byte for byte.
    pub body: &'a [u8],
}

/// One session with a mail destination. A session has at most one folder open; the calls
/// that say "the open folder" act on the last one [`MailDestinationSession::open_folder`]
/// opened.
pub trait MailDestinationSession: Send {
    /// The personal namespace (prefix and separator).
    fn namespace(&self) -> Namespace;

    /// Lists every folder with its role and subscription.
    ///
    /// # Errors
    ///
    /// As for [`MailDestination::connect`].
    fn list_folders(
        &mut self,
    ) -> impl Future<Output = Result<Vec<FolderInfo>, DestinationError>> + Send;

    /// Creates a folder, with its role where the destination can set one. A folder that
    /// already exists is not an error.
    ///
    /// # Errors
    ///
    /// Permanent when the destination refuses (a name it does not allow), with its words.
    fn create_folder(
        &mut self,
        folder: &str,
        special_use: Option<SpecialUse>,
    ) -> impl Future<Output = Result<(), DestinationError>> + Send;

    /// Subscribes to a folder.
    ///
    /// # Errors
    ///
    /// As for [`MailDestination::connect`].
    fn subscribe(
        &mut self,
        folder: &str,
    ) -> impl Future<Output = Result<(), DestinationError>> + Send;

    /// The state of a folder that need not be open (IMAP STATUS).
    ///
    /// # Errors
    ///
    /// Permanent if the folder does not exist.
    fn status(
        &mut self,
        folder: &str,
    ) -> impl Future<Output = Result<FolderStatus, DestinationError>> + Send;

    /// Opens a folder, read-only to read from it, read-write to change flags in it, and
    /// returns its state.
    ///
    /// # Errors
    ///
    /// Permanent if the folder does not exist.
    fn open_folder(
        &mut self,
        folder: &str,
        read_only: bool,
    ) -> impl Future<Output = Result<FolderStatus, DestinationError>> + Send;

    /// Lists the messages of the open folder with UID >= `min_uid`.
    ///
    /// # Errors
    ///
    /// As for [`MailDestination::connect`].
    fn list_messages(
        &mut self,
        min_uid: u32,
    ) -> impl Future<Output = Result<Vec<MessageMeta>, DestinationError>> + Send;

    /// Fetches the full bytes of messages of the open folder, in the order asked; a message
    /// that is not there is `None`.
    ///
    /// # Errors
    ///
    /// As for [`MailDestination::connect`].
    fn fetch_bodies(
        &mut self,
        uids: &[u32],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, DestinationError>> + Send;

    /// Whether [`MailDestinationSession::append`] of several messages is one atomic command
    /// (IMAP MULTIAPPEND): a refused message then refuses all of them, and the caller
    /// appends one by one to find it.
    fn multiappend(&self) -> bool;

    /// Appends messages to a folder; returns their new UIDs in order, or `None` when the
    /// destination does not say them (IMAP without UIDPLUS).
    ///
    /// # Errors
    ///
    /// Temporary when the connection broke: what was sent may have been stored all the same
    /// (the ledger's intent covers that). [`crate::Cause::Quota`] for a full mailbox;
    /// otherwise permanent with the destination's reason (size, date...).
    fn append(
        &mut self,
        folder: &str,
        messages: &[Append<'_>],
    ) -> impl Future<Output = Result<Option<Vec<u32>>, DestinationError>> + Send;

    /// Copies messages of the open folder into `target` on the destination, without sending
    /// them again. Returns `(UID here, UID in target)` pairs, or `None` when the destination
    /// does not say them.
    ///
    /// # Errors
    ///
    /// As for [`MailDestinationSession::append`].
    fn copy_messages(
        &mut self,
        uids: &[u32],
        target: &str,
    ) -> impl Future<Output = Result<Option<Vec<(u32, u32)>>, DestinationError>> + Send;

    /// Sets (replaces) the flags of messages of the open folder.
    ///
    /// # Errors
    ///
    /// As for [`MailDestination::connect`].
    fn store_flags(
        &mut self,
        uids: &[u32],
        flags: &Flags,
    ) -> impl Future<Output = Result<(), DestinationError>> + Send;

    /// Removes exactly these messages of the open folder (opened read-write), never another
    /// one: for `sync_deletions`. `Ok(false)` when the destination cannot remove messages by
    /// UID (IMAP without UIDPLUS); the default says so.
    ///
    /// # Errors
    ///
    /// As for [`MailDestination::connect`].
    fn expunge(
        &mut self,
        uids: &[u32],
    ) -> impl Future<Output = Result<bool, DestinationError>> + Send {
        let _ = uids;
        async { Ok(false) }
    }

    /// The bytes per UTC day the provider lets this account receive, when the session can
    /// tell (Gmail: 500 MB). The default: none known.
    fn upload_allowance(&self) -> Option<u64> {
        None
    }

    /// Ends the session politely; errors are ignored, the session ends anyway.
    fn logout(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async move { drop(self) }
    }
}

/// The outcome of writing a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Stored; the new ETag when the destination sent one.
    Stored(Option<String>),
    /// Only a new contact was asked for and something is there already.
    Exists,
}

/// Opens sessions to an address-book destination. Its calls block (the CardDAV client is
/// synchronous): the engine makes them on a blocking thread.
pub trait ContactsDestination: Send + Sync + 'static {
    /// One session.
    type Session: ContactsDestinationSession;

    /// Connects and finds the address-book home.
    ///
    /// # Errors
    ///
    /// Temporary for network trouble, permanent for refused credentials, with the server's
    /// words.
    fn connect(&self) -> Result<Self::Session, DestinationError>;
}

/// One session with an address-book destination; calls block, and may be made from several
/// threads.
pub trait ContactsDestinationSession: Send + Sync + 'static {
    /// The server, for messages (`https://host:port`).
    fn server(&self) -> &str;

    /// Where new address books are created (a path ending in `/`).
    fn home(&self) -> &str;

    /// The address books in the home.
    ///
    /// # Errors
    ///
    /// As for [`ContactsDestination::connect`].
    fn books(&self) -> Result<Vec<AddressBook>, DestinationError>;

    /// Creates an address book at `href`; an existing one is not an error.
    ///
    /// # Errors
    ///
    /// As for [`ContactsDestination::connect`].
    fn create_book(
        &self,
        href: &str,
        name: &str,
        description: Option<&str>,
    ) -> Result<(), DestinationError>;

    /// Writes a vCard at `href` unchanged; with `only_new`, only where nothing is (an existing
    /// contact is [`Put::Exists`], never overwritten).
    ///
    /// # Errors
    ///
    /// Permanent for a refused contact, with the server's status and words.
    fn put(&self, href: &str, vcard: &[u8], only_new: bool) -> Result<Put, DestinationError>;

    /// The contact at `href`, `None` if nothing is there.
    ///
    /// # Errors
    ///
    /// As for [`ContactsDestination::connect`].
    fn get(&self, href: &str) -> Result<Option<ContactData>, DestinationError>;
}
