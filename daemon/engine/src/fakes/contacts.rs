//! A fake contacts source and a fake CardDAV destination, in memory. The destination can lose
//! the reply of a PUT it stored (as a connection cut after the server wrote the contact).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use migrated_core::{
    AddressBook, Cause, ContactChanges, ContactData, ContactRef, ContactsConnector,
    ContactsDestination, ContactsDestinationSession, ContactsSession, DestinationError, Put,
    SourceError,
};

/// A vCard with this UID and name.
pub(crate) fn vcard(uid: &str, name: &str) -> Vec<u8> {
    format!("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:{uid}\r\nFN:{name}\r\nEND:VCARD\r\n").into_bytes()
}

/// A contacts source: books and their contacts, listed in full every time.
#[derive(Clone, Default)]
pub(crate) struct FakeContacts {
    pub books: Vec<(AddressBook, Vec<ContactData>)>,
}

impl ContactsConnector for FakeContacts {
    type Session = FakeContacts;

    async fn connect(&self) -> Result<FakeContacts, SourceError> {
        Ok(self.clone())
    }
}

impl ContactsSession for FakeContacts {
    async fn books(&mut self) -> Result<Vec<AddressBook>, SourceError> {
        Ok(self.books.iter().map(|(b, _)| b.clone()).collect())
    }

    async fn changes(
        &mut self,
        book: &str,
        _token: Option<&str>,
    ) -> Result<ContactChanges, SourceError> {
        let cards = self.cards(book)?;
        Ok(ContactChanges {
            changed: cards
                .iter()
                .map(|c| ContactRef {
                    href: c.href.clone(),
                    etag: c.etag.clone(),
                })
                .collect(),
            removed: Vec::new(),
            token: None,
            complete: true,
        })
    }

    async fn fetch(
        &mut self,
        book: &str,
        hrefs: &[String],
    ) -> Result<Vec<ContactData>, SourceError> {
        let cards = self.cards(book)?;
        Ok(cards
            .iter()
            .filter(|c| hrefs.contains(&c.href))
            .cloned()
            .collect())
    }
}

impl FakeContacts {
    fn cards(&self, book: &str) -> Result<&Vec<ContactData>, SourceError> {
        self.books
            .iter()
            .find(|(b, _)| b.href == book)
            .map(|(_, c)| c)
            .ok_or_else(|| SourceError::permanent(format!("no book {book}")))
    }
}

/// The destination account: books by href, each with its contacts by href.
#[derive(Debug, Default)]
pub(crate) struct DavAccount {
    pub books: BTreeMap<String, (String, BTreeMap<String, Vec<u8>>)>,
    /// The next this many PUTs are stored, but their reply is lost.
    pub late_puts: u32,
    /// PUTs that stored a contact.
    pub stored: u32,
}

/// A CardDAV destination over a shared account, its home `/dav/alice/`.
#[derive(Clone)]
pub(crate) struct FakeDav(pub Arc<Mutex<DavAccount>>);

impl ContactsDestination for FakeDav {
    type Session = FakeDav;

    fn connect(&self) -> Result<FakeDav, DestinationError> {
        Ok(self.clone())
    }
}

fn parent(href: &str) -> &str {
    href.rfind('/').map_or("", |i| &href[..=i])
}

impl FakeDav {
    fn account(&self) -> std::sync::MutexGuard<'_, DavAccount> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ContactsDestinationSession for FakeDav {
    fn server(&self) -> &str {
        "https://dav.fake"
    }

    fn home(&self) -> &str {
        "/dav/alice/"
    }

    fn books(&self) -> Result<Vec<AddressBook>, DestinationError> {
        Ok(self
            .account()
            .books
            .iter()
            .map(|(href, (name, _))| AddressBook {
                href: href.clone(),
                name: name.clone(),
                description: None,
            })
            .collect())
    }

    fn create_book(
        &self,
        href: &str,
        name: &str,
        _description: Option<&str>,
    ) -> Result<(), DestinationError> {
        self.account()
            .books
            .entry(href.to_owned())
            .or_insert_with(|| (name.to_owned(), BTreeMap::new()));
        Ok(())
    }

    fn put(&self, href: &str, vcard: &[u8], only_new: bool) -> Result<Put, DestinationError> {
        let mut a = self.account();
        let late = a.late_puts > 0;
        let Some((_, cards)) = a.books.get_mut(parent(href)) else {
            return Err(DestinationError::permanent(format!(
                "https://dav.fake: PUT {href} answered HTTP 409"
            )));
        };
        if only_new && cards.contains_key(href) {
            return Ok(Put::Exists);
        }
        cards.insert(href.to_owned(), vcard.to_vec());
        a.stored += 1;
        if late {
            a.late_puts -= 1;
            return Err(DestinationError::temporary(format!(
                "https://dav.fake: PUT {href}: connection reset"
            ))
            .with_cause(Cause::Network));
        }
        Ok(Put::Stored(Some(format!("\"{}\"", a.stored))))
    }

    fn get(&self, href: &str) -> Result<Option<ContactData>, DestinationError> {
        let a = self.account();
        Ok(a.books
            .get(parent(href))
            .and_then(|(_, cards)| cards.get(href))
            .map(|v| ContactData {
                href: href.to_owned(),
                etag: "\"0\"".to_owned(),
                vcard: v.clone(),
            }))
    }
}
