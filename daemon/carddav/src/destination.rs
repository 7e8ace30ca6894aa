//! A CardDAV account as the contacts engine's destination: core's [`ContactsDestination`] over
//! [`Client`], speaking core's types (address books and contacts converted once, here). Its
//! calls block, as the client's do.

use migrated_core::{
    AddressBook, ContactData, ContactsDestination, ContactsDestinationSession, DestinationError,
    ErrorKind, Put,
};

use crate::{Client, DavEndpoint, DavError};

impl From<DavError> for DestinationError {
    /// A destination error of the same kind and cause, keeping the server's status and words.
    fn from(e: DavError) -> Self {
        Self {
            kind: if e.is_temporary() {
                ErrorKind::Temporary
            } else {
                ErrorKind::Permanent
            },
            message: e.to_string(),
            cause: e.cause(),
        }
    }
}

/// Connects to a CardDAV account as the destination.
#[derive(Debug, Clone)]
pub struct DavDestination {
    endpoint: DavEndpoint,
}

impl DavDestination {
    /// A destination for this account.
    pub fn new(endpoint: DavEndpoint) -> Self {
        Self { endpoint }
    }
}

/// A CardDAV account with its address-book home found.
#[derive(Debug)]
pub struct DavDestinationSession {
    client: Client,
    home: String,
}

impl ContactsDestination for DavDestination {
    type Session = DavDestinationSession;

    fn connect(&self) -> Result<DavDestinationSession, DestinationError> {
        let client = Client::new(self.endpoint.clone())?;
        let home = client.discover()?;
        Ok(DavDestinationSession { client, home })
    }
}

impl ContactsDestinationSession for DavDestinationSession {
    fn server(&self) -> &str {
        self.client.server()
    }

    fn home(&self) -> &str {
        &self.home
    }

    fn books(&self) -> Result<Vec<AddressBook>, DestinationError> {
        Ok(self
            .client
            .books(&self.home)?
            .into_iter()
            .map(AddressBook::from)
            .collect())
    }

    fn create_book(
        &self,
        href: &str,
        name: &str,
        description: Option<&str>,
    ) -> Result<(), DestinationError> {
        Ok(self.client.create_book(href, name, description)?)
    }

    fn put(&self, href: &str, vcard: &[u8], only_new: bool) -> Result<Put, DestinationError> {
        Ok(self.client.put(href, vcard, only_new)?)
    }

    fn get(&self, href: &str) -> Result<Option<ContactData>, DestinationError> {
        Ok(self.client.get(href)?.map(|c| ContactData {
            href: c.href,
            etag: c.etag,
            vcard: c.data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_kind_and_cause_as_destination_errors() {
        let full = DestinationError::from(DavError::Http {
            server: "https://dav".into(),
            what: "PUT /a.vcf".into(),
            status: 507,
            reply: "Insufficient Storage".into(),
        });
        // A 5xx, so worth a retry, as the client says; and a full account all the same.
        assert!(full.is_over_quota() && full.is_temporary(), "{full:?}");
        assert!(full.message.contains("HTTP 507"), "{}", full.message);
        let busy = DestinationError::from(DavError::Http {
            server: "https://dav".into(),
            what: "PUT /a.vcf".into(),
            status: 503,
            reply: String::new(),
        });
        assert!(busy.is_temporary());
        assert_eq!(busy.cause, Some(migrated_core::Cause::Throttled));
    }
}
