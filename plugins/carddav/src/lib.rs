//! The CardDAV source plugin of migrated: finds the address-book home (well-known URI,
//! principal, `addressbook-home-set`), lists every address book, reads contacts with
//! `addressbook-multiget`, and with the sync token of the last run only what changed
//! (`sync-collection`, RFC 6578). vCards travel unchanged, photos included. With
//! `auth = "oauth2"` every request carries the bearer token the daemon last gave the session
//! (ABI 1.6 `RenewToken`); a 401 is an authentication error the daemon answers with a new one.

use std::sync::Arc;

use migrated_carddav::{Client, DavEndpoint, DavError};
use migrated_core::{
    Account, AddressBook, ContactChanges, ContactData, ContactRef, ContactsConnector,
    ContactsSession, SourceError,
};
use migrated_plugin_api::plugin::ContactsPlugin;
use migrated_plugin_api::wire::{Info, Kind};

/// Contacts fetched per multiget.
const MULTIGET: usize = 100;

/// The plugin.
#[derive(Debug)]
pub struct CardDavPlugin;

impl ContactsPlugin for CardDavPlugin {
    type Connector = CardDavSource;

    fn info() -> Info {
        Info {
            name: "carddav".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "CardDAV address books (RFC 6352): discovery, multiget, sync-collection \
                          deltas; vCard 3 and 4 unchanged"
                .to_owned(),
            kinds: vec![Kind::Contacts],
            settings: Vec::new(),
        }
    }

    fn connector(account: Account) -> Result<CardDavSource, SourceError> {
        DavEndpoint::from_account(&account)
            .map(|endpoint| CardDavSource { endpoint })
            .map_err(SourceError::permanent)
    }
}

migrated_plugin_api::export_contacts_plugin!(CardDavPlugin);

fn source_error(e: DavError) -> SourceError {
    let error = if e.is_temporary() {
        SourceError::temporary(e.to_string())
    } else {
        SourceError::permanent(e.to_string())
    };
    error.with_cause(e.cause())
}

/// Runs a blocking CardDAV call off the plugin's async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DavError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SourceError::temporary(format!("CardDAV call ended: {e}")))?
        .map_err(source_error)
}

/// Connects to a CardDAV account.
#[derive(Debug, Clone)]
pub struct CardDavSource {
    endpoint: DavEndpoint,
}

/// One session: the client and the address-book home it found.
#[derive(Debug)]
pub struct CardDavSession {
    client: Arc<Client>,
    home: String,
}

impl ContactsConnector for CardDavSource {
    type Session = CardDavSession;

    async fn connect(&self) -> Result<CardDavSession, SourceError> {
        let endpoint = self.endpoint.clone();
        let (client, home) = blocking(move || {
            let client = Client::new(endpoint)?;
            let home = client.discover()?;
            Ok((client, home))
        })
        .await?;
        Ok(CardDavSession {
            client: Arc::new(client),
            home,
        })
    }
}

impl ContactsSession for CardDavSession {
    async fn books(&mut self) -> Result<Vec<AddressBook>, SourceError> {
        let (client, home) = (self.client.clone(), self.home.clone());
        let books = blocking(move || client.books(&home)).await?;
        Ok(books.into_iter().map(AddressBook::from).collect())
    }

    async fn changes(
        &mut self,
        book: &str,
        token: Option<&str>,
    ) -> Result<ContactChanges, SourceError> {
        let (client, book, token) = (
            self.client.clone(),
            book.to_owned(),
            token.map(str::to_owned),
        );
        blocking(move || {
            if let Some(t) = token.filter(|t| !t.is_empty()) {
                match client.sync(&book, &t) {
                    Ok(c) => {
                        return Ok(ContactChanges {
                            changed: refs(c.changed),
                            removed: c.removed,
                            token: Some(c.token).filter(|t| !t.is_empty()),
                            complete: false,
                        });
                    }
                    // An expired or unknown token (RFC 6578: 403/409 valid-sync-token): list all.
                    Err(e) if matches!(e.status(), Some(403 | 409 | 410)) => {}
                    Err(e) => return Err(e),
                }
            }
            // A first run: everything, with a token for next time when the server has one.
            match client.sync(&book, "") {
                Ok(c) => Ok(ContactChanges {
                    changed: refs(c.changed),
                    removed: Vec::new(),
                    token: Some(c.token).filter(|t| !t.is_empty()),
                    complete: true,
                }),
                Err(e) if !e.is_temporary() => Ok(ContactChanges {
                    changed: refs(client.items(&book)?),
                    removed: Vec::new(),
                    token: None,
                    complete: true,
                }),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn fetch(
        &mut self,
        book: &str,
        hrefs: &[String],
    ) -> Result<Vec<ContactData>, SourceError> {
        let (client, book, hrefs) = (self.client.clone(), book.to_owned(), hrefs.to_vec());
        blocking(move || {
            let mut out = Vec::with_capacity(hrefs.len());
            for chunk in hrefs.chunks(MULTIGET) {
                for card in client.multiget(&book, chunk)? {
                    out.push(ContactData {
                        href: card.href,
                        etag: card.etag,
                        vcard: card.data,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    fn renew_token(&mut self, token: migrated_core::Secret) {
        self.client.renew_token(token);
    }
}

fn refs(items: Vec<migrated_carddav::Item>) -> Vec<ContactRef> {
    items
        .into_iter()
        .map(|i| ContactRef {
            href: i.href,
            etag: i.etag,
        })
        .collect()
}
