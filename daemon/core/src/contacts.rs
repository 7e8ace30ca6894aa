//! The contacts source traits: what the contacts engine needs from an address-book source. The
//! CardDAV plugin implements them behind the plugin ABI, the daemon's adapter by calling it.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::SourceError;

/// An address book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressBook {
    /// Where it is (an href on the source server): its identity in the ledger.
    pub href: String,
    /// Its display name.
    pub name: String,
    /// Its description, if any.
    #[serde(default)]
    pub description: Option<String>,
}

/// A contact as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRef {
    /// Its href on the source.
    pub href: String,
    /// Its ETag: changes when the contact does.
    pub etag: String,
}

/// A contact with its vCard, unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactData {
    /// Its href on the source.
    pub href: String,
    /// Its ETag.
    pub etag: String,
    /// The vCard (3.0 or 4.0), photos included, as the source holds it.
    #[serde(with = "serde_bytes")]
    pub vcard: Vec<u8>,
}

/// What changed in a book since a sync token, or all of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactChanges {
    /// New or changed contacts (all of them when `complete`).
    pub changed: Vec<ContactRef>,
    /// Contacts removed since the token.
    #[serde(default)]
    pub removed: Vec<String>,
    /// The token for the next run (stored in the ledger), if the source offers one.
    #[serde(default)]
    pub token: Option<String>,
    /// A full listing (no token, or the token was refused): anything not in it is gone.
    pub complete: bool,
}

/// The last path segment of an href, without a trailing slash: `/alice/work/` is `work`. The
/// destination name of a contact and of an address book is made from it.
pub fn last_segment(href: &str) -> String {
    href.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Opens sessions to an address-book source.
pub trait ContactsConnector: Send + Sync {
    /// One session.
    type Session: ContactsSession;

    /// Connects and authenticates (finds the address-book home).
    ///
    /// # Errors
    ///
    /// Temporary for network trouble, permanent for refused credentials.
    fn connect(&self) -> impl Future<Output = Result<Self::Session, SourceError>> + Send;
}

/// One session with an address-book source.
pub trait ContactsSession: Send {
    /// Every address book.
    ///
    /// # Errors
    ///
    /// As for [`ContactsConnector::connect`].
    fn books(&mut self) -> impl Future<Output = Result<Vec<AddressBook>, SourceError>> + Send;

    /// The contacts of a book: with the token of an earlier run, what changed since; without
    /// one, or when the source refuses it, all of them (`complete`).
    ///
    /// # Errors
    ///
    /// As for [`ContactsConnector::connect`].
    fn changes(
        &mut self,
        book: &str,
        token: Option<&str>,
    ) -> impl Future<Output = Result<ContactChanges, SourceError>> + Send;

    /// The vCards of these contacts of a book; one that vanished meanwhile is left out.
    ///
    /// # Errors
    ///
    /// As for [`ContactsConnector::connect`].
    fn fetch(
        &mut self,
        book: &str,
        hrefs: &[String],
    ) -> impl Future<Output = Result<Vec<ContactData>, SourceError>> + Send;

    /// An OAuth 2 session: the access token the next requests carry. HTTP sends a token with
    /// every request, so the caller renews it ahead of its expiry and after a request refused
    /// with [`crate::Cause::Authentication`]. By default nothing: a source that logs in once.
    fn renew_token(&mut self, token: crate::Secret) {
        let _ = token;
    }
}
