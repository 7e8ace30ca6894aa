//! Reading from a CardDAV server: discovery of the address-book home, the address books, the
//! contacts (PROPFIND with ETags, `sync-collection` changes, `addressbook-multiget`, GET).

use super::xml::{self, Book, Card, Item};
use super::{
    Changes, Client, DavError, PROPFIND_BOOKS, PROPFIND_ETAGS, PROPFIND_HOME, PROPFIND_PRINCIPAL,
    crlf, escape, last_segment,
};

impl Client {
    /// Finds the address-book home: from the configured path, or from `/.well-known/carddav`
    /// (following its redirects), then the current user's principal and its
    /// `addressbook-home-set`.
    ///
    /// # Errors
    ///
    /// [`DavError`], with what was missing.
    pub fn discover(&self) -> Result<String, DavError> {
        let mut start = if self.endpoint.path == "/" {
            "/.well-known/carddav".to_owned()
        } else {
            self.endpoint.path.clone()
        };
        let mut principal = None;
        for _ in 0..5 {
            let (status, headers, body) = self.send(
                "PROPFIND",
                &start,
                &[
                    ("Depth", "0"),
                    ("Content-Type", "application/xml; charset=utf-8"),
                ],
                Some(PROPFIND_PRINCIPAL.as_bytes()),
            )?;
            if (300..400).contains(&status) {
                let location = headers
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| {
                        self.protocol(
                            &format!("PROPFIND {start}"),
                            "a redirect without Location".into(),
                        )
                    })?;
                start = location
                    .strip_prefix(&self.endpoint.origin)
                    .unwrap_or(location)
                    .to_owned();
                continue;
            }
            if status == 404 && start == "/.well-known/carddav" {
                // No well-known URI: try the root.
                start = "/".to_owned();
                continue;
            }
            let what = format!("PROPFIND {start}");
            let (_, body) = self.check(what.clone(), (status, headers, body))?;
            let responses = xml::multistatus(&body).map_err(|d| self.protocol(&what, d))?;
            principal = responses.iter().find_map(|r| r.principal.clone());
            break;
        }
        let principal = principal.ok_or_else(|| {
            self.protocol(
                "discovery",
                format!(
                    "no current-user-principal from {}{}; give the address-book home as the endpoint's path",
                    self.endpoint.origin, self.endpoint.path
                ),
            )
        })?;
        let responses = self.propfind(&principal, "0", PROPFIND_HOME)?;
        responses
            .iter()
            .find_map(|r| r.home.clone())
            .ok_or_else(|| {
                self.protocol(
                    &format!("PROPFIND {principal}"),
                    "no addressbook-home-set: is this a CardDAV server?".into(),
                )
            })
    }

    /// The address books under a home.
    ///
    /// # Errors
    ///
    /// [`DavError`].
    pub fn books(&self, home: &str) -> Result<Vec<Book>, DavError> {
        Ok(self
            .propfind(home, "1", PROPFIND_BOOKS)?
            .into_iter()
            .filter(|r| r.addressbook)
            .map(|r| Book {
                name: r
                    .display_name
                    .clone()
                    .unwrap_or_else(|| last_segment(&r.href)),
                description: r.description,
                sync_token: r.sync_token,
                href: r.href,
            })
            .collect())
    }

    /// Every contact of a book with its ETag.
    ///
    /// # Errors
    ///
    /// [`DavError`].
    pub fn items(&self, book: &str) -> Result<Vec<Item>, DavError> {
        Ok(self
            .propfind(book, "1", PROPFIND_ETAGS)?
            .into_iter()
            .filter(|r| !r.collection && r.etag.is_some())
            .map(|r| Item {
                etag: r.etag.unwrap_or_default(),
                href: r.href,
            })
            .collect())
    }

    /// Changes since `token` (RFC 6578); with an empty token, everything.
    ///
    /// # Errors
    ///
    /// [`DavError`]; a 403/409 `valid-sync-token` failure means the token expired: list again.
    pub fn sync(&self, book: &str, token: &str) -> Result<Changes, DavError> {
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#,
            escape(token)
        );
        let what = format!("REPORT sync-collection {book}");
        let reply = self.send(
            "REPORT",
            book,
            &[
                ("Depth", "1"),
                ("Content-Type", "application/xml; charset=utf-8"),
            ],
            Some(body.as_bytes()),
        )?;
        let (_, body) = self.check(what.clone(), reply)?;
        let (responses, token) =
            xml::multistatus_with_token(&body).map_err(|d| self.protocol(&what, d))?;
        let mut changes = Changes {
            token: token.unwrap_or_default(),
            ..Changes::default()
        };
        for r in responses {
            if r.gone {
                changes.removed.push(r.href);
            } else if let Some(etag) = r.etag {
                changes.changed.push(Item { href: r.href, etag });
            }
        }
        Ok(changes)
    }

    /// The vCards of these contacts of a book (`addressbook-multiget`), in the server's order;
    /// an href the server no longer has is left out.
    ///
    /// # Errors
    ///
    /// [`DavError`].
    pub fn multiget(&self, book: &str, hrefs: &[String]) -> Result<Vec<Card>, DavError> {
        if hrefs.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = String::from(
            r#"<?xml version="1.0" encoding="utf-8"?><c:addressbook-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"><d:prop><d:getetag/><c:address-data/></d:prop>"#,
        );
        for h in hrefs {
            body.push_str("<d:href>");
            body.push_str(&escape(h));
            body.push_str("</d:href>");
        }
        body.push_str("</c:addressbook-multiget>");
        let what = format!("REPORT addressbook-multiget {book}");
        let reply = self.send(
            "REPORT",
            book,
            &[
                ("Depth", "1"),
                ("Content-Type", "application/xml; charset=utf-8"),
            ],
            Some(body.as_bytes()),
        )?;
        let (_, body) = self.check(what.clone(), reply)?;
        Ok(xml::multistatus(&body)
            .map_err(|d| self.protocol(&what, d))?
            .into_iter()
            .filter_map(|r| {
                Some(Card {
                    data: crlf(&r.address_data?),
                    etag: r.etag.unwrap_or_default(),
                    href: r.href,
                })
            })
            .collect())
    }

    /// One contact, or `None` if it is not there.
    ///
    /// # Errors
    ///
    /// [`DavError`].
    pub fn get(&self, href: &str) -> Result<Option<Card>, DavError> {
        let reply = self.send("GET", href, &[], None)?;
        if reply.0 == 404 {
            return Ok(None);
        }
        let (headers, body) = self.check(format!("GET {href}"), reply)?;
        Ok(Some(Card {
            href: href.to_owned(),
            etag: headers
                .get("etag")
                .and_then(|e| e.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            data: body,
        }))
    }
}
